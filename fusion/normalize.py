"""Per-route score normalisers for score-based fusion.

Each function maps one route's 1-D array of raw scores to a new float64 array of the same
length. None divides by zero or returns NaN; the degenerate cases are fixed here:

==============  ==============  ==================  =================================
normaliser      empty input     one score           all scores equal
==============  ==============  ==================  =================================
``min_max``     empty           1.0                 all 1.0
``z_score``     empty           0.0                 all 0.0
``arctan``      empty           per-score formula   per-score formula
``none``        empty           the score           the scores
==============  ==============  ==================  =================================

`min_max` sends a constant list to 1.0 (each document is as good as the route's best),
as Milvus Lite's min-max path does; ranx's ``min-max`` gives 0.0 there instead (it floors
the range at 1e-9). `z_score` uses the population standard deviation (``ddof=0``), as
ranx's ``zmuv`` does.

`arctan` is the score normalisation of Milvus's ``WeightedRanker(..., norm_score=True)``
(``getNormalizeFunc`` in ``internal/util/function/rerank/util.go``; the same formulas in
Milvus Lite's ``function/ops/merge_op.py``). It depends on the metric that produced the
raw score and needs no statistics of the list, so a score means the same whatever else
the route returned.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ARCTAN_METRICS = ("IP", "COSINE", "BM25", "L2")


def _as_scores(scores: np.ndarray) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {values.shape}")
    return values


# Inside these magnitudes max - min and sums of squares neither overflow nor underflow.
_SAFE_LOW, _SAFE_HIGH = 1e-100, 1e100


def rescaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """`values` (whose min and max are `low` and `high`), divided by a power of two when
    their magnitude is extreme.

    Min-max, z-score and 3-sigma are scale-invariant, and dividing by a power of two is
    exact, so this changes no result; it only keeps ``max - min`` and the sum of squares
    from overflowing (scores near 1e308) or underflowing (near 1e-300) to inf or 0.
    """
    largest = max(abs(low), abs(high))
    if _SAFE_LOW < largest < _SAFE_HIGH or largest == 0.0:
        return values
    return values / np.ldexp(1.0, int(np.frexp(largest)[1]) - 1)


def min_max(scores: np.ndarray) -> np.ndarray:
    """``(s - min) / (max - min)``: the route's best score maps to 1, its worst to 0.

    A constant list (one score included) maps to all 1.0.
    """
    values = _as_scores(scores)
    if values.size == 0:
        return values.copy()
    low, high = values.min(), values.max()
    if high == low:
        return np.ones_like(values)
    values = rescaled(values, low, high)
    low = values.min()
    return (values - low) / (values.max() - low)


def z_score(scores: np.ndarray) -> np.ndarray:
    """``(s - mean) / std`` with the population standard deviation (ddof=0).

    A constant list (one score included) maps to all 0.0. Constancy is tested on the
    values themselves, not on the computed std, which rounding can leave a hair above 0.
    """
    values = _as_scores(scores)
    if values.size == 0:
        return values.copy()
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    deviations = rescaled(values, low, high)
    deviations = deviations - deviations.mean()
    return deviations / np.sqrt(deviations.dot(deviations) / values.size)


def arctan(scores: np.ndarray, *, metric: str = "IP") -> np.ndarray:
    """Milvus's per-metric score normalisation into [0, 1] (``norm_score=True``).

    ========  ==========================  ================================
    metric    formula                     raw score
    ========  ==========================  ================================
    IP        ``0.5 + atan(s) / pi``      inner product, higher is better
    COSINE    ``(1 + s) / 2``             cosine similarity in [-1, 1]
    BM25      ``2 * atan(s) / pi``        BM25 score >= 0
    L2        ``1 - 2 * atan(d) / pi``    L2 distance >= 0, lower is better
    ========  ==========================  ================================

    Milvus evaluates these in float32; this is float64, so results agree to ~1e-7.
    """
    values = _as_scores(scores)
    key = metric.upper() if isinstance(metric, str) else metric
    if key == "IP":
        return 0.5 + np.arctan(values) / np.pi
    if key == "COSINE":
        return (1.0 + values) * 0.5
    if key == "BM25":
        return 2.0 * np.arctan(values) / np.pi
    if key == "L2":
        return 1.0 - 2.0 * np.arctan(values) / np.pi
    raise ValueError(f"metric must be one of {', '.join(ARCTAN_METRICS)}; got {metric!r}")


def none(scores: np.ndarray) -> np.ndarray:
    """Identity: the raw scores as float64 (what ``norm_score=False`` means in Milvus)."""
    return _as_scores(scores).copy()


NORMALIZERS: dict[str, Callable[..., np.ndarray]] = {
    "min_max": min_max,
    "z_score": z_score,
    "arctan": arctan,
    "none": none,
}
