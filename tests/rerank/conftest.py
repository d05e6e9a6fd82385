"""Rerank unit-test fixtures: the tiny reranker loaded through the real backends."""

from __future__ import annotations

import pytest

MAX_LENGTH = 64


@pytest.fixture(scope="session")
def flag_backend(tiny_reranker_dir):
    from hybridsearch.rerank.backends import load_backend

    return load_backend("flag", "tiny-flag", str(tiny_reranker_dir), max_length=MAX_LENGTH, batch_size=4)
