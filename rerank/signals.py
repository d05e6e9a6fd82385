"""Cheap query signals from the fused list: how confident is the fused head already?"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QuerySignals:
    # Overlap of the dense and sparse top-k (|A & B| / k): high when the routes agree.
    route_agreement: float
    # Gap between the 1st and 2nd fused scores relative to the head's score spread:
    # high when one document clearly leads.
    top_gap: float

    @property
    def confidence(self) -> float:
        """0 (routes disagree, flat head) .. 1 (routes agree, clear leader)."""
        return float(np.clip(0.6 * self.route_agreement + 0.4 * self.top_gap, 0.0, 1.0))


def query_signals(route_ranks: dict[str, np.ndarray], fused_scores: np.ndarray, k: int = 10) -> QuerySignals:
    """Signals from a FusionResult's per-route ranks and fused scores (positions in fused order)."""
    ranks = list(route_ranks.values())
    if len(ranks) >= 2:
        a = {i for i, r in enumerate(ranks[0]) if 0 < r <= k}
        b = {i for i, r in enumerate(ranks[1]) if 0 < r <= k}
        denominator = min(k, max(len(a), len(b))) or 1
        agreement = len(a & b) / denominator
    else:
        agreement = 1.0
    head = np.asarray(fused_scores[:k], dtype=np.float64)
    if len(head) >= 2 and head[0] > head[-1]:
        gap = float((head[0] - head[1]) / (head[0] - head[-1]))
    else:
        gap = 1.0 if len(head) == 1 else 0.0
    if not np.isfinite(gap):  # overflowing fused scores: no usable signal, assume a flat head
        gap = 0.0
    return QuerySignals(route_agreement=float(agreement), top_gap=gap)
