"""Rerank backends, one module each. Adding a backend is adding a module and a line in BACKENDS."""

from __future__ import annotations

import importlib

from hybridsearch.rerank.base import RerankBackend

BACKENDS = {
    "flag": "hybridsearch.rerank.backends.flag:FlagRerankerBackend",
    "cross-encoder": "hybridsearch.rerank.backends.cross_encoder:CrossEncoderBackend",
    "onnx": "hybridsearch.rerank.backends.onnx:OnnxBackend",
    "early-exit": "hybridsearch.rerank.backends.early_exit:EarlyExitBackend",
    "layerwise": "hybridsearch.rerank.backends.layerwise:LayerwiseBackend",
}


def load_backend(kind: str, name: str, model_path: str, **options) -> RerankBackend:
    """Instantiate the backend ``kind`` (a key of BACKENDS) for a local model directory."""
    target = BACKENDS.get(kind)
    if target is None:
        raise ValueError(f"unknown rerank backend {kind!r}; available: {', '.join(BACKENDS)}")
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)(name, model_path, **options)
