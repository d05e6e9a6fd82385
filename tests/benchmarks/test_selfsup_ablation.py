"""benchmarks/selfsup_ablation.py on the files train-reranker's evaluation leaves: fused lists and
per-model scores. The replay is pure, so the files are written here as the command writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import selfsup_ablation

RANKED_META = {"format": "hsearch-ranked/1", "split": "dev", "depth": 5, "fusion": "rrf"}


def write_case(root: Path) -> tuple[Path, Path]:
    """A BEIR folder with 4 dev queries whose relevant document is 4th of 5 fused, and the cache."""
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{q}{i}", "title": "", "text": f"文档 document {q} {i}"} for q in range(4) for i in range(5)]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{q}", "text": f"查询 query {q}"}, ensure_ascii=False) + "\n" for q in range(4))
    )
    (beir / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{q}\td{q}3\t1\n" for q in range(4))
    )
    cache = root / "cache"
    cache.mkdir()
    rows = [{"meta": RANKED_META}] + [{"qid": f"q{q}", "ids": [f"d{q}{i}" for i in range(5)]} for q in range(4)]
    (cache / "ranked-dev-top5.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return beir, cache


def write_model(root: Path, name: str, scores: list[float], ranked_meta: dict = RANKED_META, queries: int = 4) -> Path:
    folder = root / name
    folder.mkdir()
    rows = [{"meta": {"model_hash": name, "max_length": 32, "ranked": ranked_meta}}] + [
        {"qid": f"q{q}", "scores": scores} for q in range(queries)
    ]
    (folder / "eval-dev-top5.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "training_info.json").write_text(
        json.dumps({"examples": 10, "epoch_losses": [1.0, 0.5], "train_seconds": 3.0})
    )
    return folder


def run(tmp_path, *models: str, extra=()) -> dict:
    beir, cache = write_case(tmp_path)
    argv = [
        "--beir",
        str(beir),
        "--split",
        "dev",
        "--cache",
        str(cache),
        "--depth",
        "5",
        "--bootstrap",
        "200",
        "--out",
        str(tmp_path / "out"),
        *[a for m in models for a in ("--model", m)],
        *extra,
    ]
    assert selfsup_ablation.main(argv) == 0
    return json.loads((tmp_path / "out" / "results.json").read_text())


def test_a_reranker_that_finds_the_relevant_document_beats_fusion_and_the_baseline(tmp_path):
    weak = write_model(tmp_path, "weak", [5.0, 4.0, 3.0, 2.0, 1.0])  # keeps the fused order
    strong = write_model(tmp_path, "strong", [0.0, 0.0, 0.0, 9.0, 0.0])  # the relevant 4th goes first
    result = run(tmp_path, f"weak={weak}", f"strong={strong}")
    assert result["baseline"] == "weak" and result["queries"] == 4
    rows = {(r["model"], r["fusion_weight"], r["depth"]): r for r in result["rows"]}
    alone = rows[("strong", 0.0, 5)]
    assert alone["ndcg10"] == pytest.approx(1.0)
    assert rows[("weak", 0.0, 5)]["ndcg10"] == pytest.approx(result["fusion_ndcg10"])  # same order as fusion
    assert alone["vs_baseline"]["wins"] == 4 and alone["vs_baseline"]["mean"] > 0
    assert "vs_baseline" not in rows[("weak", 0.0, 5)]
    # Blended with the fused rank, the 4th of 5 rises but not to first.
    assert result["fusion_ndcg10"] < rows[("strong", 1.0, 5)]["ndcg10"] < 1.0
    report = (tmp_path / "out" / "results.md").read_text()
    assert "| 0 | 5 | strong | 1.0000 |" in report and "(baseline)" in report


def test_scores_of_other_fused_lists_are_refused_by_name(tmp_path):
    other = write_model(tmp_path, "other", [1.0] * 5, ranked_meta={**RANKED_META, "fusion": "dbsf"})
    with pytest.raises(SystemExit, match="other fused lists than these; evaluate it again, or pass --score"):
        run(tmp_path, f"other={other}")


def test_an_interrupted_evaluation_is_named(tmp_path):
    cut = write_model(tmp_path, "cut", [1.0] * 5, queries=2)
    with pytest.raises(SystemExit, match="2 dev queries have no scores .*pass --score"):
        run(tmp_path, f"cut={cut}")


def test_an_unknown_baseline_is_named(tmp_path):
    model = write_model(tmp_path, "m", [1.0] * 5)
    with pytest.raises(SystemExit, match="--baseline 'x'"):
        run(tmp_path, f"m={model}", extra=("--baseline", "x"))


def test_a_bench_pass_is_scored_with_the_real_reranker_and_the_scores_are_kept(tmp_path, tiny_reranker_dir):
    import shutil

    beir, _ = write_case(tmp_path)
    run_dir = tmp_path / "run-abc"
    run_dir.mkdir()
    rows = [{"meta": {"format": "hsearch-scifact-bench/1", "split": "dev", "mode": {"key": "dbsf", "label": "DBSF"}}}]
    rows += [{"qid": f"q{q}", "ids": [f"d{q}{i}" for i in (4, 3, 2, 1, 0)], "rtt_ms": 1.0} for q in range(4)]
    (run_dir / "dbsf.c1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "tiny"
    shutil.copytree(tiny_reranker_dir, model)
    argv = [
        "--beir",
        str(beir),
        "--split",
        "dev",
        "--fused",
        str(run_dir / "dbsf.c1.jsonl"),
        "--depth",
        "3",
        "--score",
        "--bootstrap",
        "100",
        "--out",
        str(tmp_path / "out"),
        "--model",
        f"tiny={model}",
    ]
    assert selfsup_ablation.main(argv) == 0
    stored = model / "eval-dev-run-abc-dbsf-top3.jsonl"
    lines = stored.read_text().splitlines()
    assert len(lines) == 5 and all(
        len(json.loads(line)["scores"]) == 3 for line in lines[1:]
    )  # the pass cut to --depth
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    # A second run reads the stored scores (same answer) instead of scoring again.
    before = stored.stat().st_mtime_ns
    assert selfsup_ablation.main(argv) == 0
    assert stored.stat().st_mtime_ns == before
    assert json.loads((tmp_path / "out" / "results.json").read_text())["rows"] == first["rows"]
    assert "fused (DBSF) top 3" in (tmp_path / "out" / "results.md").read_text()
    # Without --score, stored scores of the same lists are enough.
    assert selfsup_ablation.main([a for a in argv if a != "--score"]) == 0
