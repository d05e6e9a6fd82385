"""Embedding profiles: text to a dense vector and a sparse vector."""

from hybridsearch.engine.encoders.base import DocumentVectors, EmbeddingProfile, QueryVectors, Scope
from hybridsearch.engine.encoders.registry import build_profile

__all__ = ["DocumentVectors", "EmbeddingProfile", "QueryVectors", "Scope", "build_profile"]
