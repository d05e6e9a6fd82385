"""benchmarks/bench_cascade.py's replay (step 3) on stored scores: it is pure, so synthetic scores
and timings exercise exactly what the real run does after its model steps."""

from __future__ import annotations

import argparse
import random

import numpy as np
import pytest

from benchmarks import bench_cascade, harness

EXITS = [2, 4, 6]


def stored_run(queries: int = 6, depth: int = 12, seed: int = 5) -> tuple[dict, dict]:
    """What step 2 stores: per query the fused ids, their tokens and logits at every exit, and
    per-segment batch timings (ms linear in pairs and tokens, so the fitted model is exact)."""
    rng = random.Random(seed)
    data = {"exits": EXITS, "queries": {}, "timings": []}
    qrels = {}
    for q in range(queries):
        ids = [f"q{q}d{i}" for i in range(depth)]
        final = [rng.gauss(0, 1) for _ in ids]
        data["queries"][f"q{q}"] = {
            "ids": ids,
            "tokens": [rng.randint(60, 190) for _ in ids],
            # Earlier exits are noisier versions of the last.
            "logits": {
                "2": [x + rng.gauss(0, 2) for x in final],
                "4": [x + rng.gauss(0, 0.5) for x in final],
                "6": final,
            },
        }
        qrels[f"q{q}"] = {ids[rng.randrange(depth)]: 1}
    for start, end in ((0, 2), (2, 4), (4, 6)):
        for _ in range(40):
            pairs = rng.randint(1, 16)
            tokens = pairs * rng.randint(60, 190)
            data["timings"].append([start, end, pairs, tokens, 5.0 + 3.0 * pairs + 0.02 * tokens])
    return data, qrels


def replay_args(tmp_path, **overrides) -> argparse.Namespace:
    args = dict(
        depth=12,
        queries=0,
        keep=[3],
        screen_layers="all 4",
        screen_weights=[0.0, 2.0],
        targets=[1.1, 3.0],
        fusion_weight=[0.0, 1.0],
        seed=1,
        plot=True,
        out=tmp_path,
    )
    args.update(overrides)
    return argparse.Namespace(**args)


class _Beir:
    def __init__(self, qrels):
        self.qrels = {"test": qrels}


def test_fixed_depth_rows_score_the_full_models_order_of_the_first_n(tmp_path):
    data, qrels = stored_run()
    args = replay_args(tmp_path)
    result = bench_cascade.replay(args, _Beir(qrels), data)
    fixed = {r["mode"]: r for r in result["rows"] if r["mode"].startswith("ce@") and r["fusion_weight"] == 0.0}
    assert sorted(fixed, key=lambda m: int(m[3:])) == ["ce@5", "ce@10"]  # depths over --depth (12) are left out
    for n in (5, 10):
        expected = []
        for q, item in data["queries"].items():
            final = np.asarray(item["logits"]["6"])
            head = sorted(range(n), key=lambda i: -final[i])
            ranking = [item["ids"][i] for i in head] + item["ids"][n:]
            expected.append(bench_cascade.ndcg10(ranking, qrels[q]))
        assert fixed[f"ce@{n}"]["ndcg10"] == pytest.approx(float(np.mean(expected)))
    # Deeper costs more under the fitted latency model, at the median and at p95.
    assert fixed["ce@5"]["predicted_ms_p95"] < fixed["ce@10"]["predicted_ms_p95"]
    assert fixed["ce@5"]["predicted_ms_median"] <= fixed["ce@5"]["predicted_ms_p95"]


def test_every_row_has_a_p95_and_the_plots_are_written(tmp_path):
    data, qrels = stored_run()
    args = replay_args(tmp_path)
    result = bench_cascade.replay(args, _Beir(qrels), data)
    assert all(r["predicted_ms_p95"] >= r["predicted_ms_median"] - 1e-9 for r in result["rows"])
    modes = {r["mode"] for r in result["rows"]}
    assert {
        "auto",
        "cascade-keep3",
        "cascade-keep3-at4",
        "cascade-keep3-sw2",
        "cascade-keep3-at4-sw2",
        "cascade-cross-fitted",
        "ce@5",
        "ce@10",
    } <= modes
    bench_cascade.plot(args, result, tmp_path / "pareto.png")
    for fw in ("0", "1"):
        png = tmp_path / f"pareto-fw{fw}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = bench_cascade.render(
        argparse.Namespace(**{**vars(args), "max_length": 192}),
        {**data, "machine": harness.machine_info(), "seconds": 1.0},
        {"groups": 1, "negatives": 7, "epochs": 1, "loss": {}},
        result,
    )
    assert "| 0 | fixed | CE@5 |" in report and "(pareto-fw1.png)" in report


def test_a_model_trained_with_exits_is_used_as_it_is_and_added_heads_are_not(tmp_path):
    import json

    from hybridsearch.rerank.early_exit import CONFIG_FILE, FORMAT

    def model(name, trained, key_exits):
        d = tmp_path / name
        d.mkdir()
        (d / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "exit_layers": EXITS, "trained": trained}))
        key = {"examples": 9, **({"exits": key_exits} if key_exits else {})}
        (d / "training_info.json").write_text(
            json.dumps(
                {
                    "key": key,
                    "examples": 9,
                    "negatives": 3,
                    "epochs": 2,
                    "epoch_losses": [1.5, 0.9],
                    "train_seconds": 12.0,
                }
            )
        )
        return d

    joint = bench_cascade.jointly_trained(model("joint", True, EXITS))
    assert joint == {
        "joint": True,
        "exits": EXITS,
        "groups": 9,
        "negatives": 3,
        "epochs": 2,
        "loss": [1.5, 0.9],
        "train_seconds": 12.0,
    }
    # heads this script fitted on a plain reranker, or heads never trained: step 1 (re)fits them
    assert bench_cascade.jointly_trained(model("added", True, None)) is None
    assert bench_cascade.jointly_trained(model("untrained", False, EXITS)) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert bench_cascade.jointly_trained(plain) is None


def test_survivors_are_picked_by_the_exit_blended_with_the_fused_rank():
    ids = [f"d{i}" for i in range(6)]
    # The exit likes the last two best; the fused order is d0..d5; the final model prefers d0.
    screen = np.array([0.1, 0.0, -0.1, -0.2, 5.0, 4.0])
    final = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0])
    alone = bench_cascade.ranking_of(ids, 6, 2, screen, final, 0.0, screen_weight=0.0)
    assert alone[:2] == ["d4", "d5"]  # survivors by the exit alone, then ordered by the final logits
    # Blended at a weight large enough, the fused rank decides which two survive.
    blended = bench_cascade.ranking_of(ids, 6, 2, screen, final, 0.0, screen_weight=1000.0)
    assert blended[:2] == ["d0", "d1"]
    # the same selection as the service's (engine.rerank_stage.Reranker.cascade_pass)
    from hybridsearch.fusion.blend import blend_head

    for w in (0.0, 0.5, 2.0):
        kept = sorted(blend_head(screen, w)[0][:2].tolist())
        assert set(bench_cascade.ranking_of(ids, 6, 2, screen, final, 0.0, screen_weight=w)[:2]) == {
            ids[i] for i in kept
        }
    assert sorted(alone) == sorted(ids) and sorted(blended) == sorted(ids)


def test_the_cross_fitted_choice_is_made_on_the_other_fold():
    # "a" is best on every query of fold 0, "b" on fold 1: each fold gets the other's winner.
    n = 20
    fold, _ = bench_cascade.cross_fitted({"a": [0.0] * n, "b": [0.0] * n}, ["a", "b"], seed=3)
    runs = {"a": [1.0 if f == 0 else 0.0 for f in fold], "b": [1.0 if f == 1 else 0.0 for f in fold]}
    again, chosen = bench_cascade.cross_fitted(runs, ["a", "b"], seed=3)
    assert (again == fold).all() and sorted(np.bincount(fold).tolist()) == [10, 10]
    assert chosen == ["b", "a"]  # fold 0 is scored with the choice of fold 1 and vice versa


def test_the_cross_fitted_row_is_in_the_replay_and_its_figures_are_its_choices(tmp_path):
    data, qrels = stored_run(queries=10)
    args = replay_args(tmp_path, targets=[1.1])
    result = bench_cascade.replay(args, _Beir(qrels), data)
    by_mode = {(r["fusion_weight"], r["mode"]): r for r in result["rows"]}
    for fw in (0.0, 1.0):
        row = by_mode[(fw, "cascade-cross-fitted")]
        assert len(row["chosen"]) == 2 and all(
            name.startswith("cascade-keep") and (fw, name) in by_mode for name in row["chosen"]
        )
        assert 0 <= row["cascades"] <= 10 and row["vs_auto"]["n"] == 10
        assert row["predicted_ms_median"] <= row["predicted_ms_p95"]
        if row["chosen"][0] == row["chosen"][1]:  # one choice for both folds: exactly that variant's figure
            assert row["ndcg10"] == pytest.approx(by_mode[(fw, row["chosen"][0])]["ndcg10"])
