"""The SciFact benchmark harness at CI size: a 300-document BEIR folder, tiny models, a few modes.

Runs `benchmarks.beir_bench` end to end through the real gRPC service (in this process,
Milvus Lite, the tiny dense-bm25 profile and the tiny FlagReranker), and checks its bad-input
errors and that an interrupted run resumes from its caches. The full run is a documented
command (benchmarks/README.md), not part of CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import beir_bench

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
N_QUERIES = 12


def write_beir(root: Path, n_queries: int = N_QUERIES) -> Path:
    """A BEIR folder from samples/: 300 SciFact abstracts, n test queries, 3 unjudged queries."""
    (root / "qrels").mkdir(parents=True)
    docs = [json.loads(line) for line in (SAMPLES / "scifact-300.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (SAMPLES / "queries.jsonl").read_text().splitlines()][:n_queries]
    with open(root / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d["id"], "title": "", "text": d["text"]}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for q in queries:
            f.write(json.dumps({"_id": q["id"], "text": q["text"]}) + "\n")
        for i, text in enumerate(
            ["protein expression in cancer cells", "vitamin d and bone density", "immune response to infection"]
        ):
            f.write(json.dumps({"_id": f"warm{i}", "text": text}) + "\n")
    with open(root / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            for doc_id in q["relevant"]:
                f.write(f"{q['id']}\t{doc_id}\t1\n")
    return root


def bench_argv(beir: Path, work: Path, tiny_m3_dir: Path, tiny_reranker_dir: Path, *extra: str) -> list[str]:
    return [
        "--data",
        str(beir),
        "--cache",
        str(work / "cache"),
        "--runs",
        str(work / "runs"),
        "--out",
        str(work / "results"),
        "--in-process",
        "--profile-model",
        str(tiny_m3_dir),
        "--profile-kind",
        "dense-bm25",
        "--profile-max-length",
        "128",
        "--reranker",
        str(tiny_reranker_dir),
        "--reranker-kind",
        "flag",
        "--reranker-max-length",
        "128",
        "--fusions",
        "rrf",
        "weighted-min_max",
        "--depths",
        "5",
        "--auto-from-depths",
        "5",
        "--clients",
        "1",
        "2",
        "--concurrent-queries",
        "6",
        "--concurrent-queries-rerank",
        "4",
        "--max-load-wait",
        "0",
        "--warmup",
        "1",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir):
    work = tmp_path_factory.mktemp("scifact-bench")
    beir = write_beir(work / "beir")
    argv = bench_argv(beir, work, tiny_m3_dir, tiny_reranker_dir)
    results = beir_bench.run(beir_bench.parse_args(argv), "test")
    return work, beir, argv, results


def test_small_run_writes_table_plot_and_json_with_metrics_in_range(first_run):
    work, _, _, results = first_run
    out = work / "results"
    assert results["complete"]
    for name in ("results.md", "results.json", "pareto.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    keys = [m["key"] for m in saved["modes"]]
    best = saved["best_fusion"]
    assert best in ("rrf", "weighted-min_max")
    assert keys[:4] == ["dense", "sparse", "rrf", "weighted-min_max"]
    assert f"ce5@{best}" in keys
    assert any(k.startswith("auto") for k in keys)
    for mode in saved["modes"]:
        for metric in ("ndcg@10", "recall@100", "mrr@10"):
            assert 0.0 <= mode["quality"][metric] <= 1.0, (mode["key"], metric)
        assert mode["latency"]["1"]["queries"] == N_QUERIES
        assert mode["latency"]["2"]["queries"] == (6 if mode["spec"]["rerank"] == "off" else 4)
        for clients in ("1", "2"):
            lat = mode["latency"][clients]["rtt_ms"]
            assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    ce = next(m for m in saved["modes"] if m["key"] == f"ce5@{best}")
    assert ce["cost"]["mean_depth"] == 5
    assert ce["cost"]["tokens_per_1k"] > 0
    assert ce["cost"]["money_per_1k"] == pytest.approx(ce["cost"]["tokens_per_1k"] * 0.02 / 1e6)
    fusion_only = next(m for m in saved["modes"] if m["key"] == best)
    assert fusion_only["cost"]["tokens_per_1k"] == 0
    auto = next(m for m in saved["modes"] if m["family"] == "auto")
    assert 0.0 <= auto["latency"]["1"]["server_within_target"] <= 1.0
    table = (out / "results.md").read_text()
    assert "| mode | nDCG@10 | Recall@100 | MRR@10 |" in table
    assert "CE@5 on" in table and "AUTO, target" in table
    assert saved["goals"]["cross_encoder_adds"]["per_depth"][0]["depth"] == 5
    # the served order blends fused and rerank ranks (default fusion_weight 1); the
    # reranker-alone order is scored from the same answers
    assert saved["config"]["reranker"]["fusion_weight"] == 1.0
    assert 0.0 <= ce["quality_rerank_alone"]["ndcg@10"] <= 1.0
    assert "ndcg10_rerank_alone" in saved["goals"]["cross_encoder_adds"]["per_depth"][0]
    assert "reranker order alone (same scores)" in table and "RRF of fused rank x1" in table


def test_rerank_alone_orders_reranked_hits_by_their_scores_and_keeps_the_rest():
    records = {
        "q1": {"ids": ["a", "b", "c", "d"], "rerank_scores": [0.2, 0.9, 0.5, None]},
        "q2": {"ids": ["x", "y"], "rerank_scores": None},
    }
    alone = beir_bench.rerank_alone(records)
    assert alone["q1"]["ids"] == ["b", "c", "a", "d"]
    assert alone["q2"]["ids"] == ["x", "y"]
    assert records["q1"]["ids"] == ["a", "b", "c", "d"]  # the input is left alone


def test_single_route_modes_return_that_routes_order(first_run):
    """Dense only / sparse only are WEIGHTED, normaliser NONE, the other route weighted 0."""
    work, _, _, results = first_run
    run_dir = Path(results["config"]["run_cache"])
    for route in ("dense", "sparse"):
        rows = [json.loads(line) for line in (run_dir / f"{route}.c1.jsonl").read_text().splitlines()[1:]]
        assert len(rows) == N_QUERIES
        assert all(row["ids"] and row["cost_units"] == 0 for row in rows)


def test_rerun_skips_finished_modes_and_resumes_an_interrupted_one(first_run):
    work, _, argv, first = first_run
    run_dir = Path(first["config"]["run_cache"])
    again = beir_bench.run(beir_bench.parse_args(argv), "test")
    assert again["complete"]
    assert set(again["ran_queries"].values()) == {0}  # nothing re-run, the service not even started

    # Interrupt the RRF pass: drop its last 4 queries and leave a torn line behind.
    path = run_dir / "rrf.c1.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-4]) + '\n{"qid": "torn', encoding="utf-8")
    resumed = beir_bench.run(beir_bench.parse_args(argv), "test")
    assert resumed["ran_queries"]["rrf.c1"] == 4
    assert sum(resumed["ran_queries"].values()) == 4
    assert len(path.read_text().splitlines()) == N_QUERIES + 1  # header + one line per query


def _error_of(capsys, beir: Path, work: Path) -> str:
    code = beir_bench.main(
        [
            "--data",
            str(beir),
            "--cache",
            str(work / "cache"),
            "--runs",
            str(work / "runs"),
            "--out",
            str(work / "out"),
            "--no-progress",
        ]
    )
    assert code == 2
    return capsys.readouterr().err


def test_missing_file_is_named(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")
    (beir / "queries.jsonl").unlink()
    err = _error_of(capsys, beir, tmp_path)
    assert "queries.jsonl" in err and "missing" in err


def test_qrels_naming_an_unknown_document_names_file_and_line(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")
    with open(beir / "qrels" / "test.tsv", "a") as f:
        f.write("440\tno-such-doc\t1\n")
    n = len((beir / "qrels" / "test.tsv").read_text().splitlines())
    err = _error_of(capsys, beir, tmp_path)
    assert f"test.tsv:{n}:" in err and "no-such-doc" in err


def test_qrels_naming_an_unknown_query_names_file_and_line(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")
    with open(beir / "qrels" / "test.tsv", "a") as f:
        f.write("no-such-query\t6784372\t1\n")
    n = len((beir / "qrels" / "test.tsv").read_text().splitlines())
    err = _error_of(capsys, beir, tmp_path)
    assert f"test.tsv:{n}:" in err and "no-such-query" in err


def test_empty_split_is_named(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    err = _error_of(capsys, beir, tmp_path)
    assert "test.tsv" in err and "empty" in err


def test_hsearch_bench_reports_bad_input_with_exit_code_2(tmp_path, capfd):
    """`hsearch bench` runs benchmarks/beir_bench.py in a child process (the package does not
    import benchmarks/): its arguments, exit code and messages come through unchanged."""
    from hybridsearch.engine.cli import main

    beir = write_beir(tmp_path / "beir")
    (beir / "corpus.jsonl").write_text('{"_id": "1", "text": "ok"}\nnot json\n')
    code = main(
        [
            "bench",
            "--data",
            str(beir),
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 2
    assert "corpus.jsonl:2:" in capfd.readouterr().err


def test_the_service_package_does_not_import_the_benchmarks():
    import subprocess
    import sys

    probe = "import sys, engine.cli, engine.server, training.hard_negatives; print(sorted(m for m in sys.modules if m.startswith('benchmarks')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_reranker_without_a_train_split_says_what_to_do(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")  # qrels/test.tsv only
    err = _error_of(capsys, beir, tmp_path)
    assert "no trained cross-encoder" in err and "train.tsv is missing" in err and "--reranker DIR" in err


def test_reranker_is_never_trained_on_the_evaluated_split(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")
    code = beir_bench.main(
        [
            "--data",
            str(beir),
            "--cache",
            str(tmp_path / "cache"),
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            "--train-split",
            "test",
        ]
    )
    assert code == 2
    assert "--train-split 'test' is the evaluated --split" in capsys.readouterr().err


def test_no_train_stops_with_the_missing_reranker_named(tmp_path, capsys):
    beir = write_beir(tmp_path / "beir")
    code = beir_bench.main(
        [
            "--data",
            str(beir),
            "--cache",
            str(tmp_path / "cache"),
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            "--no-train",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "cache" / "reranker") in err and "hsearch train-reranker" in err


def test_replaying_a_cross_encoder_pass_offline_gives_the_served_quality(first_run, tmp_path):
    """benchmarks.replay_depths orders the head as the service does: replaying the CE@5
    pass from its cached scores gives the nDCG@10 the bench measured through gRPC."""
    from benchmarks import replay_depths

    work, beir, _, results = first_run
    run_dir = Path(results["config"]["run_cache"])
    best = results["best_fusion"]
    queries = replay_depths.load_replay(run_dir, best, depth=5)
    assert len(queries) == N_QUERIES
    qrels = beir_bench.load_workload(beir_bench.parse_args(["--data", str(beir)])).qrels
    replayed = replay_depths.replay(queries, qrels, fusion_weight=results["config"]["reranker"]["fusion_weight"])
    served = next(m for m in results["modes"] if m["key"] == f"ce5@{best}")
    fusion_only = next(m for m in results["modes"] if m["key"] == best)
    assert replayed["fixed"][5] == pytest.approx(served["quality"]["ndcg@10"])
    assert replayed["fusion"] == pytest.approx(fusion_only["quality"]["ndcg@10"])
    assert sum(g["queries"] for g in replayed["groups"]) == N_QUERIES
    out = tmp_path / "replay"
    assert (
        replay_depths.main(
            ["--run-dir", str(run_dir), "--data", str(beir), "--base", best, "--depth", "5", "--out", str(out)]
        )
        == 0
    )
    text = out.with_suffix(".md").read_text()
    assert "| nDCG@10, FIXED n |" in text and "Recommended for this model" in text
    assert json.loads(out.with_suffix(".json").read_text())["fixed"]["5"] == pytest.approx(served["quality"]["ndcg@10"])


def test_replay_recommends_skipping_where_reranking_hurts_and_the_depth_that_pays():
    import numpy as np

    from benchmarks.replay_depths import ReplayQuery, replay

    docs = ["a", "b", "c", "d", "e"]
    queries = {
        # routes agree and fusion is right; the reranker puts the relevant document last
        "agree": ReplayQuery(["r"] + docs, np.array([0.1, 0.9, 0.8, 0.7, 0.6, 0.5]), top_agree=True),
        # routes disagree; the relevant document is third and the reranker finds it
        "disagree": ReplayQuery(
            ["a", "b", "r", "c", "d", "e"], np.array([0.2, 0.3, 0.9, 0.1, 0.1, 0.1]), top_agree=False
        ),
    }
    qrels = {"agree": {"r": 1}, "disagree": {"r": 1}}
    result = replay(queries, qrels, fusion_weight=0.0, depths=(1, 3, 5))
    agree, disagree = result["groups"]
    assert agree["gain"][3] < 0 < disagree["gain"][3]
    assert result["recommended"]["skip_when_routes_agree"] and result["recommended"]["auto_max_depth"] == 3
    assert result["recommended"]["ndcg10"] == pytest.approx(1.0)
    assert result["skip_mean_depth"][3] == pytest.approx(1.5)


def test_dev_split_holds_out_a_seeded_fifth_of_train(tmp_path):
    from benchmarks import replay_depths

    beir = write_beir(tmp_path / "beir")
    train = (beir / "qrels" / "test.tsv").read_text()
    (beir / "qrels" / "train.tsv").write_text(train)
    for out in (tmp_path / "a", tmp_path / "b"):
        assert replay_depths.main(["--make-dev-split", str(out), "--data", str(beir)]) == 0
    fit, dev = ((tmp_path / "a" / "qrels" / f"{s}.tsv").read_text().splitlines()[1:] for s in ("train-fit", "dev"))

    def qid(row):
        return row.split("\t")[0]

    assert {qid(r) for r in fit}.isdisjoint({qid(r) for r in dev})
    assert sorted(fit + dev) == sorted(train.splitlines()[1:])
    assert len({qid(r) for r in dev}) == N_QUERIES // 5
    assert (tmp_path / "b" / "qrels" / "dev.tsv").read_text() == (tmp_path / "a" / "qrels" / "dev.tsv").read_text()
