"""Build embedding profiles from configuration, lazily and once."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from hybridsearch.engine.config import ProfileConfig, Settings
from hybridsearch.engine.encoders.base import EmbeddingProfile
from hybridsearch.engine.encoders.model_paths import ModelNotFound, resolve_model
from hybridsearch.engine.encoders.query_cache import QueryCache
from hybridsearch.engine.errors import failed_precondition, invalid
from hybridsearch.engine.statedb import settings_target

log = logging.getLogger(__name__)


def build_profile(
    name: str, config: ProfileConfig, cache: QueryCache, state, models_dir: Path | None = None
) -> EmbeddingProfile:
    """``state``: where BM25 statistics live (a StateDB, a SQLite path or a PostgreSQL URI);
    ``models_dir``: where models the service converts itself are cached (<data_dir>/models)."""
    if config.kind == "bge-m3":
        from hybridsearch.engine.encoders.bge_m3 import BgeM3Profile

        model_path = resolve_model(config.model, f"profile {name!r}", f"profiles.{name}.model", models_dir)
        return BgeM3Profile(name, model_path, config, cache)
    from hybridsearch.engine.encoders.dense_bm25 import DenseBm25Profile, DenseMilvusBm25Profile
    from hybridsearch.engine.encoders.dense_models import dense_model_path

    model_path = dense_model_path(name, config, config.dense_engine, models_dir)
    query_path = None
    if config.query_engine not in (None, config.dense_engine):
        query_path = dense_model_path(name, config, config.query_engine, models_dir)
    if config.sparse == "milvus-bm25":
        return DenseMilvusBm25Profile(name, model_path, config, cache, query_model_path=query_path)
    return DenseBm25Profile(name, model_path, config, cache, state, query_model_path=query_path)


class ProfileRegistry:
    """Profiles by name, loaded on first use (loading a model takes seconds)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cache = QueryCache(settings.query_cache_size)
        self._loaded: dict[str, EmbeddingProfile] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for profile in self._loaded.values():
                profile.close()

    def names(self) -> list[str]:
        return sorted(self.settings.profiles)

    def loaded(self, name: str) -> EmbeddingProfile | None:
        """The profile if it is loaded; never loads it."""
        return self._loaded.get(name)

    def get(self, name: str) -> EmbeddingProfile:
        profile = self._loaded.get(name)
        if profile is not None:
            return profile
        config = self.settings.profiles.get(name)
        if config is None:
            raise invalid("profile", f"unknown profile {name!r}; configured profiles: {', '.join(self.names())}")
        with self._lock:
            profile = self._loaded.get(name)
            if profile is None:
                try:
                    profile = build_profile(
                        name, config, self.cache, settings_target(self.settings), self.settings.models_dir
                    )
                except ModelNotFound as exc:
                    raise failed_precondition(str(exc)) from exc
                log.info(
                    "loaded profile %s (%s, dim %d) from %s", name, config.kind, profile.dimension, profile.model_path
                )
                self._loaded[name] = profile
        return profile
