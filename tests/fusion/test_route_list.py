import numpy as np
import pytest

from hybridsearch.fusion import RouteList


def test_route_list_stores_an_immutable_float64_copy():
    scores = np.array([3, 2, 1], dtype=np.float32)
    ids = ["a", "b", "c"]
    route = RouteList("dense", ids, scores)
    scores[0] = 99
    ids.append("d")
    assert route.ids == ("a", "b", "c")
    assert route.scores.dtype == np.float64
    assert route.scores[0] == 3.0
    with pytest.raises(ValueError):
        route.scores[0] = 5.0
    assert len(route) == 3


def test_route_list_accepts_an_empty_route():
    route = RouteList("sparse", [], np.array([]))
    assert len(route) == 0


def test_route_list_rejects_duplicate_ids_naming_both_positions():
    with pytest.raises(ValueError, match="route 'dense': id 'b' appears at positions 1 and 3"):
        RouteList("dense", ["a", "b", "c", "b"], np.array([4.0, 3.0, 2.0, 1.0]))


def test_route_list_rejects_length_mismatch():
    with pytest.raises(ValueError, match=r"ids and scores differ in length \(2 ids, 3 scores\)"):
        RouteList("dense", ["a", "b"], np.array([3.0, 2.0, 1.0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_route_list_rejects_non_finite_scores_naming_the_position(bad):
    with pytest.raises(ValueError, match="score at position 1 is .*scores must be finite"):
        RouteList("dense", ["a", "b"], np.array([1.0, bad]))


def test_route_list_rejects_non_str_ids():
    with pytest.raises(ValueError, match="id at position 0 is int 7; ids must be str"):
        RouteList("dense", [7], np.array([1.0]))


def test_route_list_rejects_two_dimensional_scores():
    with pytest.raises(ValueError, match=r"scores must be 1-D, got shape \(1, 2\)"):
        RouteList("dense", ["a", "b"], np.array([[1.0, 2.0]]))


def test_route_list_rejects_non_numeric_scores():
    with pytest.raises(ValueError, match="scores must be numbers"):
        RouteList("dense", ["a"], ["high"])


def test_route_list_rejects_an_empty_name():
    with pytest.raises(ValueError, match="route name must be a non-empty str"):
        RouteList("", ["a"], np.array([1.0]))
