"""Our DBSF against qdrant-client's `distribution_based_score_fusion` (its local mode).

qdrant-client mirrors the server's `Fusion::Dbsf` (`lib/segment/src/common/score_fusion.rs`):
sample std, ``mean -/+ 3 std`` limits, no clamping, 0.5 for a single point or zero
variance. qdrant-client is in the test extras, so this runs wherever the suite does.
"""

import numpy as np
import pytest
from qdrant_client.http import models as qdrant_models
from qdrant_client.hybrid import fusion as qdrant_fusion

from hybridsearch.fusion import RouteList, dbsf


def random_routes(rng):
    routes = []
    for name, scale in (("dense", 1.0), ("sparse", 30.0)):
        length = int(rng.integers(0, 41))
        ids = [f"{j:08x}-0000-0000-0000-000000000000" for j in rng.choice(120, length, replace=False)]
        scores = np.sort(rng.normal(size=length) * scale)[::-1]
        if length and rng.random() < 0.1:
            # A constant route: every point gets 0.5. The value is exact in binary so that
            # qdrant-client's float64 mean is exact too; for values like 0.1 its variance
            # comes out a hair above 0 and it scores them 0.67, where the server's
            # Welford pass (mean of equal values is exact) gives 0.5 as we do.
            scores[:] = 2.0
        routes.append(RouteList(name, ids, scores))
    return routes


def to_points(route):
    return [
        qdrant_models.ScoredPoint(id=doc_id, version=0, score=float(score))
        for doc_id, score in zip(route.ids, route.scores, strict=True)
    ]


@pytest.mark.parametrize("seed", range(20))
def test_dbsf_matches_qdrant_client_dbsf(seed):
    routes = random_routes(np.random.default_rng(seed))
    theirs = qdrant_fusion.distribution_based_score_fusion([to_points(r) for r in routes], limit=1000)
    ours = dbsf(routes)
    theirs_by_id = {str(p.id): p.score for p in theirs}
    assert set(ours.ids) == set(theirs_by_id)
    np.testing.assert_allclose(ours.scores, [theirs_by_id[i] for i in ours.ids], rtol=0, atol=1e-9)
    np.testing.assert_allclose(sorted(ours.scores, reverse=True), [p.score for p in theirs], atol=1e-9)


def test_dbsf_matches_qdrant_client_on_single_point_and_empty_routes():
    uid = "00000000-0000-0000-0000-{:012x}".format
    routes = [
        RouteList("dense", [uid(1), uid(2), uid(3)], np.array([0.9, 0.4, 0.2])),
        RouteList("sparse", [uid(3)], np.array([17.0])),
        RouteList("bm25", [], np.array([])),
    ]
    theirs = qdrant_fusion.distribution_based_score_fusion([to_points(r) for r in routes], limit=10)
    ours = dbsf(routes)
    assert ours.ids == [str(p.id) for p in theirs]
    np.testing.assert_allclose(ours.scores, [p.score for p in theirs], rtol=0, atol=1e-12)
