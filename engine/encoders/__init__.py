"""Embedding profiles: text to a dense vector and a sparse vector."""
from engine.encoders.base import DocumentVectors, EmbeddingProfile, QueryVectors, Scope
from engine.encoders.registry import build_profile

__all__ = ["DocumentVectors", "EmbeddingProfile", "QueryVectors", "Scope", "build_profile"]
