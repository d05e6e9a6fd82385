"""benchmarks/bench_chunks.py at CI size: a tiny BEIR collection, a fused list file, the tiny reranker."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from benchmarks import bench_chunks, paired

_WORDS = "protein expression cancer cells gene regulation stem immune response viral infection mice brain memory sleep diet".split()


def write_case(root: Path) -> tuple[Path, Path]:
    """A BEIR folder (long and short documents, 3 judged test queries) and a DBSF-shaped pass file."""
    rng = random.Random(3)
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [
        {
            "_id": f"d{i}",
            "title": f"title {i}",
            "text": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 120))),
        }
        for i in range(12)
    ]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": " ".join(rng.sample(_WORDS, 3))} for i in range(3)]
    (beir / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{3 * i + 2}\t1\n" for i in range(3))
    )
    fused = root / "dbsf.c1.jsonl"
    lines = [json.dumps({"meta": {"split": "test"}})]
    for q in queries:
        lines.append(json.dumps({"qid": q["_id"], "ids": [d["_id"] for d in rng.sample(docs, len(docs))]}))
    fused.write_text("\n".join(lines) + "\n")
    return beir, fused


def test_bench_chunks_runs_end_to_end_and_caches_its_scores(tmp_path, tiny_reranker_dir, capsys):
    beir, fused = write_case(tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = [
        "--data",
        str(beir),
        "--fused",
        str(fused),
        "--reranker",
        str(tiny_reranker_dir),
        "--max-length",
        "32",
        "--depths",
        "2",
        "5",
        "--chunk-overlap",
        "4",
        "--max-chunks",
        "3",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--bootstrap",
        "100",
        "--threads",
        "1",
    ]
    assert bench_chunks.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    assert [e["depth"] for e in result["table"]] == [2, 5] and result["config"]["queries"] == 3
    for e in result["table"]:
        assert e["chunks_pairs"] >= e["depth"] and e["chunks_tokens"] >= e["truncate_tokens"]
        assert (
            e["paired_alone"]["n"] == 3
            and e["paired_alone"]["wins"] + e["paired_alone"]["losses"] + e["paired_alone"]["ties"] == 3
        )
        assert 0.0 <= e["truncate_alone"] <= 1.0 and 0.0 <= e["chunks_blended"] <= 1.0
    assert set(result["per_query"]["chunks@5/alone"]) == {"q0", "q1", "q2"}
    assert "| 5 |" in (out / "results.md").read_text()
    # every query's scores are cached for a resumed run, both modes, sliced at the depths
    rows = [json.loads(line) for line in next(cache.glob("scores-*.jsonl")).read_text().splitlines()]
    assert sorted(r["qid"] for r in rows) == ["q0", "q1", "q2"]
    assert all(
        len(r[mode]["raw"]) == 5 and len(r[mode]["slice_ms"]) == 2 for r in rows for mode in ("truncate", "chunks")
    )


def test_a_deeper_run_scores_only_the_slices_past_the_cached_ones(tmp_path, tiny_reranker_dir, monkeypatch):
    beir, fused = write_case(tmp_path)
    common = [
        "--data",
        str(beir),
        "--fused",
        str(fused),
        "--reranker",
        str(tiny_reranker_dir),
        "--max-length",
        "32",
        "--chunk-overlap",
        "4",
        "--max-chunks",
        "3",
        "--bootstrap",
        "100",
        "--threads",
        "1",
    ]
    shallow, fresh = tmp_path / "shallow", tmp_path / "fresh"
    assert (
        bench_chunks.main(common + ["--depths", "2", "5", "--out", str(tmp_path / "o1"), "--cache-dir", str(shallow)])
        == 0
    )
    scored: list[int] = []
    real = bench_chunks.score_query

    def counting(backend, query, texts, bounds, done=None):
        row = real(backend, query, texts, bounds, done)
        scored.append(len(row["raw"]) - (len(done["raw"]) if done else 0))
        return row

    monkeypatch.setattr(bench_chunks, "score_query", counting)
    assert (
        bench_chunks.main(
            common + ["--depths", "2", "5", "9", "--out", str(tmp_path / "o2"), "--cache-dir", str(shallow)]
        )
        == 0
    )
    assert scored == [4] * 6  # 3 queries x 2 modes, candidates 5..8 only
    scored.clear()
    assert (
        bench_chunks.main(common + ["--depths", "5", "--out", str(tmp_path / "o3"), "--cache-dir", str(shallow)]) == 0
    )
    assert scored == []  # a shallower run reads the deeper rows
    monkeypatch.setattr(bench_chunks, "score_query", real)
    assert (
        bench_chunks.main(
            common + ["--depths", "2", "5", "9", "--out", str(tmp_path / "o4"), "--cache-dir", str(fresh)]
        )
        == 0
    )

    def last_rows(cache):
        rows = {}
        for line in next(cache.glob("scores-*.jsonl")).read_text().splitlines():
            row = json.loads(line)
            rows[row["qid"]] = row
        return rows

    extended, scratch = last_rows(shallow), last_rows(fresh)
    for qid, row in scratch.items():
        assert extended[qid]["bounds"] == row["bounds"] == [2, 5, 9]
        for mode in ("truncate", "chunks"):
            assert extended[qid][mode]["raw"] == pytest.approx(row[mode]["raw"], abs=1e-5)
            assert extended[qid][mode]["windows"] == row[mode]["windows"] and len(extended[qid][mode]["slice_ms"]) == 3
    deep = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert deep["per_query"]["chunks@9/alone"] == pytest.approx(
        json.loads((tmp_path / "o4" / "results.json").read_text())["per_query"]["chunks@9/alone"], abs=1e-9
    )


def test_paired_comparison_counts_wins_and_losses():
    a = {"q1": 0.5, "q2": 0.5, "q3": 0.5, "q4": 0.5}
    b = {"q1": 0.7, "q2": 0.6, "q3": 0.5, "q4": 0.4}
    p = paired.paired(a, b, rounds=500, seed=0)
    assert (p["wins"], p["losses"], p["ties"], p["n"]) == (2, 1, 1, 4)
    assert p["mean"] == pytest.approx(0.05)
    assert p["ci95"][0] <= p["mean"] <= p["ci95"][1]
    assert p["sign_p"] == pytest.approx(1.0)


def test_the_service_order_keeps_the_tail_in_fused_order():
    fused = ["a", "b", "c", "d"]
    assert bench_chunks.ordered(fused, [0.1, 0.9, 0.5], 2, 0.0) == ["b", "a", "c", "d"]
    assert bench_chunks.ordered(fused, [0.1, 0.9, 0.5], 3, 0.0) == ["b", "c", "a", "d"]
