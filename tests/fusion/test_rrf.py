import numpy as np
import pytest

from hybridsearch.fusion import FusionResult, RouteList, fuse, rrf


def route(name, ids, scores=None):
    if scores is None:
        scores = np.linspace(1.0, 0.0, len(ids)) if ids else []
    return RouteList(name, list(ids), np.asarray(scores, dtype=np.float64))


def test_rrf_scores_are_reciprocal_ranks_summed_over_routes():
    dense = route("dense", ["a", "b", "c"])
    sparse = route("sparse", ["c", "a", "d"])
    result = rrf([dense, sparse], k=60)
    expected = {
        "a": 1 / 61 + 1 / 62,
        "b": 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "d": 1 / 63,
    }
    assert result.ids == ["a", "c", "b", "d"]
    np.testing.assert_allclose(result.scores, [expected[i] for i in result.ids], rtol=0, atol=1e-15)


def test_rrf_uses_list_position_not_score_as_rank():
    # Scores are ignored: only the order of ids matters.
    flat = route("dense", ["x", "y"], [5.0, 5.0])
    result = rrf([flat], k=1)
    assert result.ids == ["x", "y"]
    np.testing.assert_allclose(result.scores, [1 / 2, 1 / 3])


def test_rrf_reports_ranks_raw_scores_and_contributions_per_route():
    dense = route("dense", ["a", "b"], [0.9, 0.8])
    sparse = route("sparse", ["b", "c"], [12.0, 3.0])
    result = rrf([dense, sparse], k=10, weights=[2.0, 1.0])
    assert result.ids == ["b", "a", "c"]
    np.testing.assert_array_equal(result.route_ranks["dense"], [2, 1, 0])
    np.testing.assert_array_equal(result.route_ranks["sparse"], [1, 0, 2])
    assert result.route_ranks["dense"].dtype == np.int32
    np.testing.assert_array_equal(result.route_raw["dense"], [0.8, 0.9, np.nan])
    np.testing.assert_array_equal(result.route_raw["sparse"], [12.0, np.nan, 3.0])
    np.testing.assert_allclose(result.route_norm["dense"], [2 / 12, 2 / 11, np.nan])
    np.testing.assert_allclose(result.route_norm["sparse"], [1 / 11, np.nan, 1 / 12])
    np.testing.assert_allclose(result.scores, [2 / 12 + 1 / 11, 2 / 11, 1 / 12])


def test_rrf_weights_scale_each_routes_contribution():
    dense = route("dense", ["a", "b"])
    sparse = route("sparse", ["b", "a"])
    assert rrf([dense, sparse], weights=[1.0, 0.0]).ids == ["a", "b"]
    assert rrf([dense, sparse], weights=[0.0, 1.0]).ids == ["b", "a"]
    by_name = rrf([dense, sparse], weights={"sparse": 3.0, "dense": 1.0})
    np.testing.assert_allclose(by_name.scores, [3 / 61 + 1 / 62, 3 / 62 + 1 / 61])


def test_rrf_ties_are_broken_by_best_rank():
    # k=0: "y" gets 1/3 + 1/6 = 1/2 (best rank 3), "x" gets 1/2 (best rank 2).
    first = route("first", ["a", "b", "y"])
    second = route("second", ["c", "x", "d", "e", "f", "y"])
    result = rrf([first, second], k=0)
    position = {doc_id: i for i, doc_id in enumerate(result.ids)}
    assert result.scores[position["x"]] == result.scores[position["y"]]
    # "y" has the first route on its side, but "x" has the better best rank.
    assert position["x"] == position["y"] - 1


def test_rrf_ties_with_equal_best_rank_go_to_the_first_route():
    # "p" at ranks (1, 4) and "q" at ranks (4, 1) tie exactly with best rank 1;
    # "r" and "s" are each rank 2 in one route only.
    dense = route("dense", ["p", "r", "x", "q"])
    sparse = route("sparse", ["q", "s", "y", "p"])
    result = rrf([dense, sparse])
    assert result.scores[0] == result.scores[1]
    assert result.ids[:2] == ["p", "q"]
    assert result.ids[2:4] == ["r", "s"]
    # Ids sort the other way: the order is by route, not by id.
    reversed_names = rrf([route("dense", ["z", "r", "x", "a"]), route("sparse", ["a", "s", "y", "z"])])
    assert reversed_names.ids[:2] == ["z", "a"]


def test_rrf_ties_with_three_routes_are_exact_whatever_the_route_order():
    a = route("a", ["d1", "d2", "d3"])
    b = route("b", ["d2", "d3", "d1"])
    c = route("c", ["d3", "d1", "d2"])
    result = rrf([a, b, c], k=0.3)
    # Every document has ranks {1, 2, 3}: bitwise-equal fused scores.
    assert len(set(result.scores.tolist())) == 1
    assert result.ids == ["d1", "d2", "d3"]


def test_rrf_with_one_empty_route_ranks_by_the_other():
    dense = route("dense", ["a", "b", "c"])
    sparse = route("sparse", [])
    result = rrf([dense, sparse])
    assert result.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(result.route_ranks["sparse"], [0, 0, 0])
    assert np.isnan(result.route_raw["sparse"]).all()
    assert np.isnan(result.route_norm["sparse"]).all()


def test_rrf_of_empty_routes_is_empty():
    result = rrf([route("dense", []), route("sparse", [])])
    assert result.ids == []
    assert result.scores.shape == (0,)
    assert result.route_ranks["dense"].shape == (0,)
    assert rrf([]).ids == []


def test_rrf_head_keeps_every_per_route_array_aligned():
    dense = route("dense", ["a", "b", "c"])
    sparse = route("sparse", ["c", "d"])
    result = rrf([dense, sparse])
    top = result.head(2)
    assert isinstance(top, FusionResult)
    assert top.ids == result.ids[:2]
    np.testing.assert_array_equal(top.scores, result.scores[:2])
    for name in ("dense", "sparse"):
        np.testing.assert_array_equal(top.route_ranks[name], result.route_ranks[name][:2])
        np.testing.assert_array_equal(top.route_raw[name], result.route_raw[name][:2])
    assert result.head(100).ids == result.ids
    assert result.head(0).ids == []
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        result.head(-1)


def test_without_drops_ids_and_keeps_the_others_aligned():
    result = rrf([route("dense", ["a", "b", "c"]), route("sparse", ["c", "d"])])
    kept = result.without({"c", "zzz"})
    assert kept.ids == [pk for pk in result.ids if pk != "c"]
    position = {pk: i for i, pk in enumerate(result.ids)}
    for i, pk in enumerate(kept.ids):
        assert kept.scores[i] == result.scores[position[pk]]
        for name in ("dense", "sparse"):
            assert kept.route_ranks[name][i] == result.route_ranks[name][position[pk]]
            np.testing.assert_array_equal(kept.route_norm[name][i], result.route_norm[name][position[pk]])
    assert result.without(set()).ids == result.ids and result.without(set(result.ids)).ids == []


def test_fuse_dispatches_rrf_with_k_and_weights():
    dense = route("dense", ["a", "b"])
    sparse = route("sparse", ["b"])
    direct = rrf([dense, sparse], k=5, weights=[1.0, 2.0])
    via = fuse("rrf", [dense, sparse], k=5, weights=[1.0, 2.0])
    assert via.ids == direct.ids
    np.testing.assert_array_equal(via.scores, direct.scores)


@pytest.mark.parametrize("k", [-1.0, float("nan"), float("inf"), "60", True])
def test_rrf_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        rrf([route("dense", ["a"])], k=k)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "1 values for 2 routes"),
        ([1.0, -0.5], "weight for route 'sparse' is -0.5"),
        ([1.0, float("nan")], "finite and >= 0"),
        ([float("inf"), 1.0], "weight for route 'dense'"),
        ({"dense": 1.0}, "missing \\['sparse'\\]"),
        ({"dense": 1.0, "sparse": 1.0, "bm25": 1.0}, "unknown \\['bm25'\\]"),
        (["a", "b"], "weights must be numbers"),
    ],
)
def test_rrf_rejects_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        rrf([route("dense", ["a"]), route("sparse", ["b"])], weights=weights)


def test_rrf_rejects_duplicate_route_names():
    with pytest.raises(ValueError, match="route name 'dense' is used twice"):
        rrf([route("dense", ["a"]), route("dense", ["b"])])


def test_rrf_rejects_things_that_are_not_route_lists():
    with pytest.raises(ValueError, match=r"routes\[0\] must be a RouteList"):
        rrf([(["a"], [1.0])])


def test_fuse_rejects_unknown_method_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="method must be one of rrf, weighted, dbsf; got 'borda'"):
        fuse("borda", [route("dense", ["a"])])


def test_fuse_rejects_unknown_normalizer_whatever_the_method():
    with pytest.raises(ValueError, match="normalizer must be one of min_max, z_score, arctan, none"):
        fuse("rrf", [route("dense", ["a"])], normalizer="minmax")
