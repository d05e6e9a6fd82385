"""BM25's formula pieces: Lucene's :func:`idf` and the :class:`Bm25Params` (k1, b).

How they combine into document and query vectors: see :mod:`engine.bm25`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["idf", "Bm25Params"]


def idf(n_docs: int, df: int) -> float:
    """Lucene's BM25 idf: ``ln(1 + (N - df + 0.5) / (df + 0.5))``, always > 0 for df <= N."""
    return math.log1p((n_docs - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Bm25Params:
    """BM25 parameters: ``k1`` (term-frequency saturation, >= 0) and ``b`` (length
    normalisation, in [0, 1]). Defaults are Lucene's."""

    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self) -> None:
        for name in ("k1", "b"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"BM25 {name} must be a finite number, got {v!r}")
        if self.k1 < 0:
            raise ValueError(f"BM25 k1 must be >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"BM25 b must be in [0, 1], got {self.b}")
