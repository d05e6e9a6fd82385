"""The `hsearch` command line as the README writes it."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml

from hybridsearch.engine.api_keys import ApiKeyStore
from hybridsearch.engine.cli import main
from hybridsearch.engine.config import load_settings


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
    from hybridsearch.engine import cli

    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    # a command's line starts at the margin, its name then two or more spaces
    listed = [line.split()[0] for line in cli.__doc__.splitlines() if re.match(r"[a-z][\w-]*\s{2,}\S", line)]
    assert listed == list(commands)


def test_search_output_names_the_rerank_plan_windows_and_times(capsys):
    from hybridsearch.engine.cli import print_hits
    from hybridsearch.v1 import hybridsearch_pb2 as pb

    reply = pb.SearchResponse(
        hits=[pb.Hit(id="d1", text="癌细胞 protein", score=0.5, fused_score=0.4, rerank_score=2.0)]
    )
    reply.rerank.CopyFrom(
        pb.RerankDecision(
            mode=pb.AUTO,
            depth_chosen=40,
            depth_scored=40,
            chunks_scored=52,
            reason="auto depth 40",
            predicted_ms=120.0,
            actual_ms=98.5,
            cost_units=3100,
            plan="score 40 to layer 2, keep 10, finish them to layer 6",
        )
    )
    print_hits(reply)
    out = capsys.readouterr().out
    assert (
        "rerank: AUTO depth 40, scored 40, 52 windows (auto depth 40); predicted 120.0 ms, actual 98.5 ms; cost 3100 tokens"
        in out
    )
    assert "rerank plan: score 40 to layer 2, keep 10, finish them to layer 6" in out
    # One window per document (no chunks): the count is not repeated.
    reply.rerank.chunks_scored = 40
    reply.rerank.plan = ""
    print_hits(reply)
    out = capsys.readouterr().out
    assert "windows" not in out and "rerank plan" not in out


# ---------------------------------------------------------------- shared options anywhere


def _leaf_parsers(parser, path=()):
    """Every command line's last parser: (words, parser), e.g. (("collections", "list"), <parser>)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaf_parsers(child, (*path, name))


def test_every_nested_action_takes_the_connection_options_of_its_command():
    from hybridsearch.engine import cli

    checked = 0
    for path, leaf in _leaf_parsers(cli.build_parser()):
        if path[0] in ("collections", "tenant"):
            options = {s for a in leaf._actions for s in a.option_strings}
            assert {"--target", "--tenant", "--api-key"} <= options, path
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize(
    "argv",
    [
        ["collections", "list", "--target", "h:1", "--api-key", "k"],
        ["collections", "--target", "h:1", "--api-key", "k", "list"],
        ["collections", "--target", "h:0", "list", "--target", "h:1", "--api-key", "k"],
        ["tenant", "get", "acme", "--target", "h:1", "--api-key", "k"],
        ["search", "--collection", "c", "q", "--target", "h:1", "--api-key", "k"],
    ],
)
def test_connection_options_are_accepted_before_or_after_the_action(argv):
    from hybridsearch.engine import cli

    args = cli.build_parser().parse_args(argv)
    assert args.target == "h:1" and args.api_key == "k"


def test_an_option_given_before_the_action_is_not_reset_by_the_actions_default():
    from hybridsearch.engine import cli

    args = cli.build_parser().parse_args(["collections", "--target", "h:7", "list"])
    assert args.target == "h:7"


def test_collections_list_with_target_after_the_action_talks_to_that_server(server, capsys):
    server.client("cli-tenant").create_collection("cli_target", "")
    assert main(["collections", "list", "--target", server.target, "--tenant", "cli-tenant"]) == 0
    assert "cli_target" in capsys.readouterr().out


# ---------------------------------------------------------------- --no-title on ingest as on bench


def _beir_corpus(tmp_path) -> Path:
    rows = [
        {"_id": "d1", "title": "熊猫 Pandas", "text": "大熊猫 eat bamboo."},
        {"_id": "d2", "title": "", "text": "no title here"},
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return tmp_path


def test_read_documents_indexes_title_and_text_or_the_text_alone(tmp_path):
    from hybridsearch.engine.cli import read_documents

    folder = _beir_corpus(tmp_path)
    with_title = list(read_documents(folder))
    without = list(read_documents(folder, title=False))
    assert [d["text"] for d in with_title] == ["熊猫 Pandas. 大熊猫 eat bamboo.", "no title here"]
    assert [d["text"] for d in without] == ["大熊猫 eat bamboo.", "no title here"]
    # the title stays in the metadata either way
    assert with_title[0]["metadata"] == without[0]["metadata"] == {"title": "熊猫 Pandas"}


def test_ingest_and_bench_take_the_same_no_title_option():
    from benchmarks.beir_bench import add_arguments
    from hybridsearch.engine import cli

    ingest = cli.build_parser().parse_args(["ingest", "--collection", "c", "corpus", "--no-title"])
    assert ingest.title is False
    assert cli.build_parser().parse_args(["ingest", "--collection", "c", "corpus"]).title is True

    def help_of(parser):
        return next(a.help for a in parser._actions if "--no-title" in a.option_strings)

    ingest_parser = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "ingest"
    ]
    assert help_of(ingest_parser) == help_of(add_arguments(argparse.ArgumentParser()))


def test_ingest_no_title_writes_the_text_alone_through_a_server(server, tmp_path, capsys):
    folder = _beir_corpus(tmp_path)
    client = server.client("notitle")
    client.create_collection("notitle", "")
    assert (
        main(
            [
                "ingest",
                "--collection",
                "notitle",
                str(folder),
                "--no-title",
                "--target",
                server.target,
                "--tenant",
                "notitle",
            ]
        )
        == 0
    )
    hits = client.search("notitle", "bamboo", 5).hits
    assert {h.id: h.text for h in hits}["d1"] == "大熊猫 eat bamboo."
