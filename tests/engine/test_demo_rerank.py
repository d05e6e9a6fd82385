"""`hsearch demo --rerank` end to end, made tiny: the demo's profiles point at the tiny BGE-M3-format
model and its backbone (--rerank-base) at the tiny cross-encoder, so training takes seconds. The
first run trains a reranker on self-supervised pairs from the samples and shows OFF, FIXED and AUTO
for both tenant budgets; the second reuses the cached model."""

from __future__ import annotations

import re

import pytest
import yaml

from hybridsearch.engine.cli import DEMO_BUDGETS, DEMO_FIXED_DEPTH, demo_reranker_dir, main

DECISION = re.compile(
    r"^  (?P<tenant>demo-\S+)\s+(?P<mode>OFF|FIXED|AUTO)\s+depth\s+(?P<chosen>\d+) chosen,\s+(?P<scored>\d+) scored\s+"
    r"predicted\s+(?P<predicted>[\d.]+) ms, actual\s+(?P<actual>[\d.]+) ms\s+tokens\s+(?P<tokens>\d+)"
)


def decisions(out: str) -> list[dict]:
    """Every printed decision with its query and the reason line under it."""
    lines = out.splitlines()
    found, query = [], None
    for i, line in enumerate(lines):
        if line.startswith("query ("):
            query = line.split(": ", 1)[1]
        m = DECISION.match(line)
        if m:
            row = {
                k: (int(v) if k in ("chosen", "scored", "tokens") else float(v) if k in ("predicted", "actual") else v)
                for k, v in m.groupdict().items()
            }
            found.append({**row, "query": query, "reason": lines[i + 1].strip(), "line": line})
    return found


@pytest.fixture
def demo_args(tmp_path, tiny_m3_dir, tiny_reranker_dir):
    config = tmp_path / "demo.yaml"
    tiny = {"kind": "dense-bm25", "model": str(tiny_m3_dir), "max_length": 128}
    # The demo's own profile names, on the tiny model (the Chinese one keeps a Chinese analyzer).
    config.write_text(
        yaml.safe_dump(
            {"profiles": {"minilm-bm25": tiny, "e5-small": {**tiny, "analyzer": {"type": "jieba", "bigrams": True}}}}
        )
    )
    data = tmp_path / "data"
    return data, [
        "demo",
        "--rerank",
        "--config",
        str(config),
        "--data-dir",
        str(data),
        "--rerank-base",
        str(tiny_reranker_dir),
        "--rerank-pairs",
        "24",
        "--queries",
        "1",
    ]


def check(out: str) -> list[dict]:
    rows = decisions(out)
    queries = list(dict.fromkeys(r["query"] for r in rows))
    assert len(queries) == 3 and "吊钟花花朵通常是什么颜色？" in queries  # one English, one Chinese, one mixed
    assert len(rows) == 3 * len(DEMO_BUDGETS) * 3
    tight, generous = (DEMO_BUDGETS[t] for t in ("demo-tight", "demo-generous"))
    for query in queries:
        got = {(r["tenant"], r["mode"]): r for r in rows if r["query"] == query}
        assert set(got) == {(t, m) for t in DEMO_BUDGETS for m in ("OFF", "FIXED", "AUTO")}
        for r in got.values():
            assert "degraded" not in r["reason"], r
            assert r["scored"] <= r["chosen"]
        for tenant in DEMO_BUDGETS:
            off = got[tenant, "OFF"]
            assert (off["chosen"], off["scored"], off["tokens"]) == (0, 0, 0) and off["reason"].startswith(
                "fusion only: rerank mode OFF"
            )
        # FIXED: the generous tenant reranks exactly the depth asked for; the tight one within its token cap.
        fixed = got["demo-generous", "FIXED"]
        assert fixed["chosen"] == fixed["scored"] == DEMO_FIXED_DEPTH and fixed["tokens"] > 0 and fixed["actual"] > 0
        assert fixed["reason"].startswith(f"fixed depth {DEMO_FIXED_DEPTH}")
        fixed_tight = got["demo-tight", "FIXED"]
        assert 0 < fixed_tight["chosen"] <= DEMO_FIXED_DEPTH and fixed_tight["tokens"] <= tight["max_cost_per_query"]
        if fixed_tight["chosen"] < DEMO_FIXED_DEPTH:
            assert f"cost cap {tight['max_cost_per_query']} tokens/query" in fixed_tight["reason"]
        # AUTO: the policy's choice, bounded by each budget; the generous one goes at least as deep.
        auto_tight, auto_generous = got["demo-tight", "AUTO"], got["demo-generous", "AUTO"]
        assert auto_tight["tokens"] <= tight["max_cost_per_query"] and auto_tight["chosen"] <= tight["max_depth"]
        assert auto_tight["chosen"] <= auto_generous["chosen"] <= generous["max_depth"]
        assert auto_generous["chosen"] > 0 and auto_generous["reason"].startswith(
            f"auto depth {auto_generous['chosen']}: bound by"
        )
    return rows


def test_demo_rerank_trains_once_then_shows_each_decision(demo_args, capsys):
    data, argv = demo_args
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "no demo reranker in" in err and "reranker trained in" in err and "training groups" in err
    assert "demo-tight\tmode=OFF\tdepth=0..20\ttarget_ms=" in out and "demo-generous\tmode=OFF\tdepth=0..30" in out
    check(out)
    info = demo_reranker_dir(data) / "training_info.json"
    before = (info.stat().st_mtime_ns, info.read_text())

    # A second run reuses the cached model: no retraining, no mining, the same decisions shown.
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "using the demo reranker cached in" in err
    assert "no demo reranker" not in err and "training groups" not in err and "reranker trained in" not in err
    assert (info.stat().st_mtime_ns, info.read_text()) == before
    check(out)


def test_the_demo_trains_from_the_multilingual_base_with_its_table_frozen():
    """The demo's default backbone reads Chinese (multilingual-e5-small); with it the word
    embeddings stay frozen and bfloat16 is used only where the CPU has it natively."""
    from hybridsearch.engine.cli import build_parser
    from hybridsearch.training.self_supervised import DEMO_BASE, DEMO_RECIPE, demo_recipe

    assert DEMO_BASE == "e5-small"
    assert build_parser().parse_args(["demo", "--rerank"]).rerank_base in (
        DEMO_BASE,
        __import__("os").environ.get("HSEARCH_DEMO_RERANK_BASE"),
    )
    e5 = demo_recipe("e5-small", native_bf16=False)
    assert e5.freeze_embeddings and not e5.bf16 and e5.max_length == DEMO_RECIPE.max_length
    assert demo_recipe("e5-small", native_bf16=True).bf16
    assert demo_recipe("minilm", native_bf16=True) == DEMO_RECIPE
