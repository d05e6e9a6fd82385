import math

import numpy as np
import pytest

from hybridsearch.fusion import NORMALIZERS, arctan, min_max, none, z_score


def test_normalizers_are_registered_by_name():
    assert NORMALIZERS == {"min_max": min_max, "z_score": z_score, "arctan": arctan, "none": none}


def test_min_max_maps_best_to_one_and_worst_to_zero():
    np.testing.assert_allclose(min_max(np.array([4.0, 3.0, 0.0])), [1.0, 0.75, 0.0])


def test_min_max_of_a_constant_list_is_all_ones():
    np.testing.assert_array_equal(min_max(np.array([0.3, 0.3, 0.3])), [1.0, 1.0, 1.0])


def test_min_max_of_one_score_is_one():
    np.testing.assert_array_equal(min_max(np.array([-7.5])), [1.0])


def test_z_score_uses_the_population_standard_deviation():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    expected = (values - 3.0) / math.sqrt(((values - 3.0) ** 2).mean())
    np.testing.assert_allclose(z_score(values), expected, rtol=1e-15)


def test_z_score_of_a_constant_list_is_all_zeros_even_when_rounding_leaves_a_tiny_std():
    values = np.full(3, 0.1)
    np.testing.assert_array_equal(z_score(values), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(z_score(np.array([5.0])), [0.0])


@pytest.mark.parametrize("normalise", [min_max, z_score, arctan, none])
def test_normalizers_map_empty_to_empty(normalise):
    out = normalise(np.array([]))
    assert out.shape == (0,)
    assert out.dtype == np.float64


@pytest.mark.parametrize("normalise", [min_max, z_score, arctan, none])
def test_normalizers_never_return_nan_on_degenerate_input(normalise):
    for values in ([0.0], [1e300, 1e300], [-2.0, -2.0, -2.0], [0.0, 1e-300], [1e308, -1e308]):
        assert np.isfinite(normalise(np.array(values))).all()


def test_arctan_for_ip_is_half_plus_atan_over_pi():
    scores = np.array([-3.0, 0.0, 0.5, 12.0])
    np.testing.assert_allclose(arctan(scores), 0.5 + np.arctan(scores) / np.pi)
    np.testing.assert_allclose(arctan(np.array([0.0, 1.0])), [0.5, 0.75])


def test_arctan_for_cosine_is_affine_into_zero_one():
    np.testing.assert_allclose(arctan(np.array([-1.0, 0.0, 1.0]), metric="COSINE"), [0.0, 0.5, 1.0])


def test_arctan_for_bm25_is_two_atan_over_pi():
    np.testing.assert_allclose(arctan(np.array([0.0, 1.0]), metric="BM25"), [0.0, 0.5])


def test_arctan_for_l2_turns_small_distances_into_high_scores():
    np.testing.assert_allclose(arctan(np.array([0.0, 1.0]), metric="L2"), [1.0, 0.5])


def test_arctan_metric_is_case_insensitive():
    np.testing.assert_array_equal(arctan(np.array([0.2]), metric="cosine"), [0.6])


def test_arctan_rejects_unknown_metric_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="metric must be one of IP, COSINE, BM25, L2; got 'HAMMING'"):
        arctan(np.array([1.0]), metric="HAMMING")


def test_none_returns_a_float64_copy():
    values = np.array([3, 1], dtype=np.float32)
    out = none(values)
    assert out.dtype == np.float64
    out[0] = 0
    assert values[0] == 3


def test_normalizers_reject_two_dimensional_input():
    with pytest.raises(ValueError, match="scores must be 1-D"):
        min_max(np.ones((2, 2)))


def test_min_max_and_z_score_survive_extreme_magnitudes():
    np.testing.assert_allclose(min_max(np.array([1e308, 0.0, -1e308])), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(z_score(np.array([1e-300, 0.0])), [1.0, -1.0])
