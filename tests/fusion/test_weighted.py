import numpy as np
import pytest

from hybridsearch.fusion import RouteList, fuse, weighted


def route(name, ids, scores):
    return RouteList(name, list(ids), np.asarray(scores, dtype=np.float64))


def test_weighted_min_max_sums_normalised_scores():
    dense = route("dense", ["a", "b", "c"], [0.9, 0.7, 0.5])
    sparse = route("sparse", ["c", "d"], [10.0, 2.0])
    result = weighted([dense, sparse], weights=[0.6, 0.4])
    expected = {"a": 0.6 * 1.0, "b": 0.6 * 0.5, "c": 0.6 * 0.0 + 0.4 * 1.0, "d": 0.4 * 0.0}
    assert result.ids == ["a", "c", "b", "d"]
    np.testing.assert_allclose(result.scores, [expected[i] for i in result.ids], atol=1e-15)
    np.testing.assert_allclose(result.route_norm["dense"], [1.0, 0.0, 0.5, np.nan])
    np.testing.assert_allclose(result.route_norm["sparse"], [np.nan, 1.0, np.nan, 0.0])
    np.testing.assert_allclose(result.route_raw["sparse"], [np.nan, 10.0, np.nan, 2.0])
    np.testing.assert_array_equal(result.route_ranks["dense"], [1, 3, 2, 0])


def test_weighted_default_weights_are_one_each_combsum():
    dense = route("dense", ["a", "b"], [2.0, 1.0])
    sparse = route("sparse", ["b", "a"], [2.0, 1.0])
    result = weighted([dense, sparse], normalizer="none")
    np.testing.assert_allclose(result.scores, [3.0, 3.0])


def test_weighted_absent_document_contributes_zero_from_that_route():
    dense = route("dense", ["a", "b"], [0.9, 0.1])
    sparse = route("sparse", ["c"], [5.0])
    result = weighted([dense, sparse], normalizer="z_score")
    scores = dict(zip(result.ids, result.scores, strict=True))
    assert scores["c"] == 0.0  # a single score z-normalises to 0, and dense gives nothing
    assert scores["a"] == pytest.approx(1.0)
    assert scores["b"] == pytest.approx(-1.0)


def test_weighted_arctan_uses_each_routes_metric():
    dense = route("dense", ["a"], [0.5])
    l2 = route("l2", ["a"], [1.0])
    result = weighted([dense, l2], normalizer="arctan", metrics=["COSINE", "L2"])
    np.testing.assert_allclose(result.route_norm["dense"], [0.75])
    np.testing.assert_allclose(result.route_norm["l2"], [0.5])
    np.testing.assert_allclose(result.scores, [1.25])
    by_name = weighted([dense, l2], normalizer="arctan", metrics={"l2": "L2", "dense": "COSINE"})
    np.testing.assert_array_equal(by_name.scores, result.scores)


def test_weighted_arctan_defaults_to_ip():
    result = weighted([route("dense", ["a"], [1.0])], normalizer="arctan")
    np.testing.assert_allclose(result.scores, [0.75])


def test_weighted_route_norm_is_before_weighting():
    result = weighted([route("dense", ["a", "b"], [1.0, 0.0])], weights=[0.5])
    np.testing.assert_allclose(result.route_norm["dense"], [1.0, 0.0])
    np.testing.assert_allclose(result.scores, [0.5, 0.0])


def test_weighted_zero_weight_silences_a_route_but_keeps_its_documents():
    dense = route("dense", ["a", "b"], [1.0, 0.5])
    sparse = route("sparse", ["z"], [100.0])
    result = weighted([dense, sparse], weights=[1.0, 0.0], normalizer="none")
    assert result.ids == ["a", "b", "z"]
    np.testing.assert_allclose(result.scores, [1.0, 0.5, 0.0])


def test_weighted_ties_are_broken_by_best_rank_then_route_order():
    # min-max: "a" (rank 1 dense) and "x" (rank 1 sparse) both score 1; "c" (rank 3 dense)
    # and "y" (rank 2 sparse) both 0.
    dense = route("dense", ["a", "b", "c"], [3.0, 2.0, 1.0])
    sparse = route("sparse", ["x", "y"], [9.0, 1.0])
    result = weighted([dense, sparse])
    assert result.ids == ["a", "x", "b", "y", "c"]


def test_weighted_of_one_sided_input_follows_the_non_empty_route():
    dense = route("dense", [], [])
    sparse = route("sparse", ["p", "q"], [2.0, 1.0])
    result = weighted([dense, sparse])
    assert result.ids == ["p", "q"]
    np.testing.assert_array_equal(result.route_ranks["dense"], [0, 0])


def test_weighted_of_empty_routes_is_empty():
    result = weighted([route("dense", [], []), route("sparse", [], [])])
    assert result.ids == []
    assert result.scores.shape == (0,)


def test_weighted_constant_route_gives_every_document_full_credit_under_min_max():
    result = weighted([route("dense", ["a", "b"], [0.4, 0.4])])
    np.testing.assert_array_equal(result.scores, [1.0, 1.0])
    assert result.ids == ["a", "b"]


def test_fuse_dispatches_weighted_with_its_normalizer_and_metrics():
    dense = route("dense", ["a", "b"], [0.2, 0.1])
    sparse = route("sparse", ["b"], [0.3])
    via = fuse("weighted", [dense, sparse], weights=[1, 1], normalizer="arctan", metrics=["COSINE", "IP"])
    direct = weighted([dense, sparse], weights=[1, 1], normalizer="arctan", metrics=["COSINE", "IP"])
    assert via.ids == direct.ids
    np.testing.assert_array_equal(via.scores, direct.scores)


def test_weighted_rejects_unknown_normalizer_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="normalizer must be one of min_max, z_score, arctan, none; got 'l2'"):
        weighted([route("dense", ["a"], [1.0])], normalizer="l2")


def test_weighted_rejects_unknown_metric_naming_the_route():
    with pytest.raises(ValueError, match="metric for route 'dense' must be one of IP, COSINE, BM25, L2"):
        weighted([route("dense", ["a"], [1.0])], normalizer="arctan", metrics=["JACCARD"])


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ("IP", "one metric per route"),
        (["IP", "IP"], "2 values for 1 routes"),
        ({"sparse": "IP"}, "missing \\['dense'\\]"),
    ],
)
def test_weighted_rejects_misshapen_metrics(metrics, message):
    with pytest.raises(ValueError, match=message):
        weighted([route("dense", ["a"], [1.0])], normalizer="arctan", metrics=metrics)


@pytest.mark.parametrize("weights", [[-1.0], [float("nan")], [float("inf")]])
def test_weighted_rejects_negative_or_non_finite_weights(weights):
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        weighted([route("dense", ["a"], [1.0])], weights=weights)
