"""fusion.blend: ordering a reranked head by RRF of its fused rank and its rerank rank."""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.fusion import RouteList, rrf
from hybridsearch.fusion.blend import BLEND_K, blend_head


def test_weight_zero_is_the_rerankers_order_with_its_own_scores():
    scores = np.array([0.2, 0.9, 0.5, 0.9])
    order, by = blend_head(scores, 0.0)
    assert order.tolist() == [1, 3, 2, 0]  # the tie (0.9) keeps fused order
    assert by.tolist() == scores.tolist()


def test_hand_computed_blend():
    # head in fused order a, b, c; the reranker ranks c, a, b
    order, by = blend_head([0.5, 0.1, 0.8], 1.0, k=60)
    expected = {0: 1 / 61 + 1 / 62, 1: 1 / 62 + 1 / 63, 2: 1 / 63 + 1 / 61}
    assert by.tolist() == pytest.approx([expected[i] for i in range(3)])
    assert order.tolist() == [0, 2, 1]  # a: 1/61+1/62 beats c: 1/63+1/61


def test_equals_rrf_of_the_two_rankings():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, 40))
        scores = rng.random(n)
        w = float(rng.choice([0.25, 0.5, 1.0, 2.0, 7.0]))
        order, by = blend_head(scores, w)
        ids = [f"d{i}" for i in range(n)]
        ce_order = np.argsort(-scores, kind="stable")
        fused = RouteList("fused", ids, np.arange(n, 0, -1, dtype=np.float64))
        reranker = RouteList("rerank", [ids[i] for i in ce_order], np.sort(scores)[::-1])
        reference = rrf([fused, reranker], k=BLEND_K, weights=[w, 1.0])
        ref = dict(zip(reference.ids, reference.scores, strict=True))
        assert by.tolist() == pytest.approx([ref[d] for d in ids])
        assert sorted(by[order].tolist(), reverse=True) == by[order].tolist()


def test_a_large_fused_weight_keeps_fused_order_and_ties_stay_stable():
    assert blend_head([0.1, 0.2, 0.3, 0.4], 1000.0)[0].tolist() == [0, 1, 2, 3]
    # fused 1 / rerank 2 and fused 2 / rerank 1 tie at weight 1: fused order wins
    assert blend_head([0.4, 0.6], 1.0)[0].tolist() == [0, 1]


def test_empty_head():
    order, by = blend_head([], 1.0)
    assert order.tolist() == [] and by.tolist() == []


@pytest.mark.parametrize(
    "args, message",
    [
        (([0.1, float("nan")], 1.0), "rerank_scores must be finite"),
        (([[0.1]], 1.0), "one-dimensional"),
        (([0.1], -1.0), "fused_weight must be finite and >= 0"),
        (([0.1], float("inf")), "fused_weight must be finite"),
        (([0.1], True), "fused_weight must be a number"),
        (([0.1], 1.0, -5), "k must be finite and >= 0"),
    ],
)
def test_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        blend_head(*args)
