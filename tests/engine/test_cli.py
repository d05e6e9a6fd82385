"""The `hsearch` command line as the README writes it."""
from __future__ import annotations

import yaml

from engine.api_keys import ApiKeyStore
from engine.cli import main
from engine.config import load_settings


def test_keys_create_takes_config_after_the_subcommand_as_the_readme_writes_it(tmp_path, capsys):
    """Issue 15, finding 7: `hsearch keys create ... --config config.yaml` failed."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    assert main(["keys", "create", "--tenant", "ops", "--role", "operator", "--config", str(config)]) == 0
    secret = capsys.readouterr().out.strip()
    assert main(["keys", "--config", str(config), "create", "--tenant", "ops", "--role", "write"]) == 0
    capsys.readouterr()
    store = ApiKeyStore(load_settings(str(config)).state_path)
    assert sorted(r.role for r in store.list("ops")) == ["operator", "write"]
    assert store.verify(secret).tenant == "ops"
    assert main(["keys", "list", "--tenant", "ops", "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("\tops\t") == 2


def test_the_module_docstring_lists_every_subcommand_in_order():
    import argparse

    import engine.cli

    commands = next(a for a in engine.cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    listed = [line.split()[0] for line in engine.cli.__doc__.splitlines() if line.startswith("    ") and line[4] != " "]
    assert listed == list(commands)


def test_search_output_names_the_rerank_plan_windows_and_times(capsys):
    from engine.cli import print_hits
    from hybridsearch.v1 import hybridsearch_pb2 as pb

    reply = pb.SearchResponse(hits=[pb.Hit(id="d1", text="癌细胞 protein", score=0.5, fused_score=0.4, rerank_score=2.0)])
    reply.rerank.CopyFrom(pb.RerankDecision(mode=pb.AUTO, depth_chosen=40, depth_scored=40, chunks_scored=52, reason="auto depth 40",
                                            predicted_ms=120.0, actual_ms=98.5, cost_units=3100,
                                            plan="score 40 to layer 2, keep 10, finish them to layer 6"))
    print_hits(reply)
    out = capsys.readouterr().out
    assert "rerank: AUTO depth 40, scored 40, 52 windows (auto depth 40); predicted 120.0 ms, actual 98.5 ms; cost 3100 tokens" in out
    assert "rerank plan: score 40 to layer 2, keep 10, finish them to layer 6" in out
    # One window per document (no chunks): the count is not repeated.
    reply.rerank.chunks_scored = 40
    reply.rerank.plan = ""
    print_hits(reply)
    out = capsys.readouterr().out
    assert "windows" not in out and "rerank plan" not in out
