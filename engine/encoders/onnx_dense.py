"""A sentence-transformers dense model run by ONNX Runtime, optionally with int8 weights.

The model's transformer is exported once (``rerank.backends.onnx.export_onnx``, output
``last_hidden_state``) into ``<cache>/<model fingerprint>/``; pooling and normalisation
is read from the model's own sentence-transformers files and applied here in numpy (then
unit length, as the sentence-transformers engine), so
the vectors are the same model's (fp32: equal to torch's within float error; int8: close,
nDCG@10 on SciFact in benchmarks/README.md). Only mean or CLS pooling over a transformer at
the directory's root (the layout of all-MiniLM-L6-v2 and most sentence-transformers
models) is supported; anything else is refused at start-up with what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.encoders.model_paths import ModelNotFound, user_cache_dir


def onnx_cache_dir() -> Path:
    # Exports are keyed by the weights they came from (HSEARCH_ONNX_CACHE to put them elsewhere).
    root = os.environ.get("HSEARCH_ONNX_CACHE")
    return Path(root) if root else user_cache_dir() / "onnx"


def _fingerprint(model_dir: Path) -> str:
    h = hashlib.sha256(str(model_dir.resolve()).encode())
    for name in ("model.safetensors", "pytorch_model.bin", "config.json"):
        f = model_dir / name
        if f.exists():
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _pooling(model_dir: Path) -> str:
    """The pooling mode from the sentence-transformers module files ("mean" or "cls")."""
    modules_file = model_dir / "modules.json"
    if not modules_file.exists():
        return "mean"  # a bare transformers model: mean pooling, as sentence-transformers does
    modules = json.loads(modules_file.read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[0] != "Transformer" or modules[0].get("path", "") != "":
        raise ModelNotFound(
            f"{model_dir}: dense_engine onnx needs the transformer at the directory's root (modules.json: {kinds}); use dense_engine sentence-transformers"
        )
    unsupported = [k for k in kinds[1:] if k not in ("Pooling", "Normalize")]
    if unsupported:
        raise ModelNotFound(
            f"{model_dir}: dense_engine onnx supports Pooling and Normalize modules only, not {unsupported}; use dense_engine sentence-transformers"
        )
    mode = "mean"
    for m in modules:
        if m["type"].endswith("Pooling"):
            cfg = json.loads((model_dir / m["path"] / "config.json").read_text())
            modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
            if modes not in (["pooling_mode_mean_tokens"], ["pooling_mode_cls_token"]):
                raise ModelNotFound(
                    f"{model_dir}: dense_engine onnx supports mean or CLS pooling, not {modes}; use dense_engine sentence-transformers"
                )
            mode = "mean" if modes == ["pooling_mode_mean_tokens"] else "cls"
    return mode


def _prompts(model_dir: Path) -> dict[str, str]:
    """The model's own prompts (config_sentence_transformers.json), as sentence-transformers
    reads them: E5 models prefix queries with "query: " and passages with "passage: "."""
    try:
        prompts = json.loads((model_dir / "config_sentence_transformers.json").read_text()).get("prompts") or {}
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in prompts.items() if isinstance(v, str)}


class OnnxDense:
    """queries and passages alike, or with the model's "query" and "passage" prompts, as
    SentenceTransformerDense."""

    def __init__(self, model_path: str, config: ProfileConfig, *, quantize: bool, threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from hybridsearch.rerank.backends.onnx import export_onnx

        model_dir = Path(model_path)
        self.pooling = _pooling(model_dir)
        self.batch_size = config.batch_size
        self.max_length = config.max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        prompts = _prompts(model_dir)
        self.query_prompt, self.passage_prompt = prompts.get("query", ""), prompts.get("passage", "")
        self.onnx_file = export_onnx(
            model_dir,
            onnx_cache_dir() / _fingerprint(model_dir),
            quantize=quantize,
            output="last_hidden_state",
            per_channel=True,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.onnx_file), options, providers=["CPUExecutionProvider"])
        self.dimension = int(self._encode(["dimension probe"]).shape[1])

    def _batch(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
        ids = enc["input_ids"].astype(np.int64)
        mask = enc["attention_mask"].astype(np.int64)
        (hidden,) = self.session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        # Always unit length, as SentenceTransformerDense (normalize_embeddings=True).
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32)

    def _encode(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dimension", 0)), dtype=np.float32)
        # Longest first in batches of similar length: padding costs compute (as
        # sentence-transformers does; results go back in the caller's order).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        length = min(max_length or self.max_length, self.max_length)
        parts = []
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            parts.append((idx, self._batch([texts[i] for i in idx], length)))
        out = np.empty((len(texts), parts[0][1].shape[1]), dtype=np.float32)
        for idx, vecs in parts:
            out[idx] = vecs
        return out

    def encode_queries(self, texts: Sequence[str], max_tokens: int | None = None) -> np.ndarray:
        return self._encode([self.query_prompt + t for t in texts], max_tokens)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.passage_prompt + t for t in texts])

    def between_layers(self, callback) -> int:
        return 0  # ONNX Runtime runs the graph in one call: documents yield only between slices

    def token_counts(self, texts: Sequence[str], queries: bool) -> list[int]:
        from hybridsearch.engine.encoders.dense_models import tokens_of

        prompt = self.query_prompt if queries else self.passage_prompt
        return tokens_of(self.tokenizer, [prompt + t for t in texts])
