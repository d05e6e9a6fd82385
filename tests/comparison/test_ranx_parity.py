"""Our fusion against ranx's (AmenRa/ranx), on random candidate lists with fixed seeds.

ranx facts this relies on (ranx 0.3.x source): `rrf` gives ``1 / (k + i + 1)`` to the
i-th document of each run (0-based, runs sorted by score) and sums; `wsum` sums
``w_r * score`` with 0 for a document absent from a run; ``min-max`` is
``(s - min) / max(max - min, 1e-9)``; ``zmuv`` is ``(s - mean) / max(std, 1e-9)`` with
numpy's population std (ddof=0).
"""

import numpy as np
import pytest

from hybridsearch.fusion import RouteList, rrf, weighted

ranx = pytest.importorskip("ranx")

SEED = 20240611
N_QUERIES = 200


def random_routes(rng, n_docs=150):
    """Two routes over an overlapping pool; lengths 1..60 with distinct random scores."""
    routes = []
    for name in ("dense", "sparse"):
        length = int(rng.integers(2, 61))
        ids = [f"doc{j}" for j in rng.choice(n_docs, length, replace=False)]
        scale = 1.0 if name == "dense" else 25.0
        scores = np.sort(rng.normal(size=length) * scale)[::-1]
        routes.append(RouteList(name, ids, scores))
    return routes


def to_ranx_runs(cases):
    """One ranx Run per route, one query per case."""
    runs = []
    for route_index in range(2):
        run = {
            f"q{q}": dict(zip(routes[route_index].ids, routes[route_index].scores.tolist(), strict=True))
            for q, routes in enumerate(cases)
        }
        runs.append(ranx.Run(run))
    return runs


def assert_same_fusion(ours, theirs_docs, atol=1e-9):
    theirs = dict(theirs_docs)
    assert set(ours.ids) == set(theirs)
    np.testing.assert_allclose(ours.scores, [theirs[i] for i in ours.ids], rtol=0, atol=atol)
    # Same order apart from ties: ranx's scores, read in our order, never increase.
    theirs_in_our_order = np.array([theirs[i] for i in ours.ids])
    assert (np.diff(theirs_in_our_order) <= atol).all()


@pytest.fixture(scope="module")
def cases():
    # One ranx call fuses every query at once, which keeps this module fast.
    rng = np.random.default_rng(SEED)
    return [random_routes(rng) for _ in range(N_QUERIES)]


@pytest.fixture(scope="module")
def runs(cases):
    return to_ranx_runs(cases)


@pytest.mark.parametrize("k", [60, 1, 10])
def test_rrf_matches_ranx_rrf(cases, runs, k):
    fused = ranx.fuse(runs, norm=None, method="rrf", params={"k": k})
    for q, routes in enumerate(cases):
        assert_same_fusion(rrf(routes, k=k), fused[f"q{q}"].items())


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.8, 0.2), (1.0, 3.0)])
def test_weighted_min_max_matches_ranx_wsum_min_max(cases, runs, weights):
    fused = ranx.fuse(runs, norm="min-max", method="wsum", params={"weights": list(weights)})
    for q, routes in enumerate(cases):
        ours = weighted(routes, weights=weights, normalizer="min_max")
        assert_same_fusion(ours, fused[f"q{q}"].items())


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.3, 0.7)])
def test_weighted_z_score_matches_ranx_wsum_zmuv(cases, runs, weights):
    fused = ranx.fuse(runs, norm="zmuv", method="wsum", params={"weights": list(weights)})
    for q, routes in enumerate(cases):
        ours = weighted(routes, weights=weights, normalizer="z_score")
        assert_same_fusion(ours, fused[f"q{q}"].items())


def test_weighted_none_matches_ranx_wsum_without_normalisation(cases, runs):
    fused = ranx.fuse(runs, norm=None, method="wsum", params={"weights": [0.6, 0.4]})
    for q, routes in enumerate(cases):
        ours = weighted(routes, weights=[0.6, 0.4], normalizer="none")
        assert_same_fusion(ours, fused[f"q{q}"].items())
