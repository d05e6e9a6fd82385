import math

import numpy as np
import pytest

from hybridsearch.fusion import RouteList, dbsf, fuse, three_sigma


def route(name, ids, scores):
    return RouteList(name, list(ids), np.asarray(scores, dtype=np.float64))


def test_three_sigma_uses_mean_plus_minus_three_sample_std_as_limits():
    values = np.array([4.0, 2.0, 0.0])
    std = math.sqrt((4 + 0 + 4) / 2)  # sample std (n - 1) = 2
    low = 2.0 - 3 * std
    np.testing.assert_allclose(three_sigma(values), (values - low) / (6 * std))
    np.testing.assert_allclose(three_sigma(values), [1 / 6 * 4, 0.5, 1 / 6 * 2])


def test_three_sigma_is_not_clamped_to_zero_one():
    values = np.array([100.0] + [0.0] * 20)
    out = three_sigma(values)
    assert out[0] > 1.0


def test_three_sigma_of_one_score_is_one_half():
    np.testing.assert_array_equal(three_sigma(np.array([42.0])), [0.5])


def test_three_sigma_of_a_constant_list_is_one_half():
    np.testing.assert_array_equal(three_sigma(np.full(4, 0.1)), [0.5] * 4)


def test_three_sigma_of_empty_is_empty():
    assert three_sigma(np.array([])).shape == (0,)


def test_dbsf_sums_three_sigma_scores_over_routes():
    dense = route("dense", ["a", "b", "c"], [0.9, 0.6, 0.3])
    sparse = route("sparse", ["c", "d"], [8.0, 2.0])
    result = dbsf([dense, sparse])
    dense_norm = dict(zip(["a", "b", "c"], three_sigma(dense.scores), strict=True))
    sparse_norm = dict(zip(["c", "d"], three_sigma(sparse.scores), strict=True))
    expected = {
        "a": dense_norm["a"],
        "b": dense_norm["b"],
        "c": dense_norm["c"] + sparse_norm["c"],
        "d": sparse_norm["d"],
    }
    assert result.ids == sorted(expected, key=lambda i: -expected[i])
    np.testing.assert_allclose(result.scores, [expected[i] for i in result.ids])
    np.testing.assert_allclose(result.route_norm["sparse"][result.ids.index("c")], sparse_norm["c"])


def test_dbsf_weights_scale_each_route():
    dense = route("dense", ["a", "b"], [1.0, 0.0])
    sparse = route("sparse", ["b", "a"], [1.0, 0.0])
    assert dbsf([dense, sparse], weights=[2.0, 1.0]).ids == ["a", "b"]
    assert dbsf([dense, sparse], weights={"dense": 1.0, "sparse": 2.0}).ids == ["b", "a"]


def test_dbsf_ties_are_broken_by_best_rank_then_route_order():
    # Two symmetric routes: every document ties with its mirror image.
    dense = route("dense", ["a", "b"], [1.0, 0.0])
    sparse = route("sparse", ["c", "d"], [1.0, 0.0])
    assert dbsf([dense, sparse]).ids == ["a", "c", "b", "d"]


def test_dbsf_of_one_sided_input_keeps_the_routes_order():
    result = dbsf([route("dense", ["a", "b", "c"], [3.0, 2.0, 1.0]), route("sparse", [], [])])
    assert result.ids == ["a", "b", "c"]


def test_dbsf_of_single_document_routes_scores_one_half_each():
    result = dbsf([route("dense", ["a"], [0.1]), route("sparse", ["a"], [99.0])])
    np.testing.assert_array_equal(result.scores, [1.0])


def test_dbsf_of_empty_routes_is_empty():
    assert dbsf([route("dense", [], []), route("sparse", [], [])]).ids == []


def test_fuse_dispatches_dbsf():
    dense = route("dense", ["a", "b"], [1.0, 0.5])
    sparse = route("sparse", ["b"], [2.0])
    assert fuse("dbsf", [dense, sparse]).ids == dbsf([dense, sparse]).ids


def test_dbsf_rejects_negative_weights():
    with pytest.raises(ValueError, match="weight for route 'dense' is -1"):
        dbsf([route("dense", ["a"], [1.0])], weights=[-1])


def test_three_sigma_survives_extreme_magnitudes():
    out = three_sigma(np.array([1e308, -1e308]))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0] + out[1], 1.0)
