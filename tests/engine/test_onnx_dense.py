"""dense_engine onnx / onnx-int8: the same model's vectors through ONNX Runtime, on a tiny
model built at test time; and a dense-bm25 profile serving through it end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.encoders.dense_models import SentenceTransformerDense, build_dense_model
from hybridsearch.engine.encoders.model_paths import ModelNotFound

TEXTS = [
    "Aspirin lowers the risk of heart attacks in older adults.",
    "北京是中华人民共和国的首都。",
    "iPhone 15 的电池续航 battery life 更长",
    "short",
    "a much longer text " * 20,
]


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HSEARCH_ONNX_CACHE", str(tmp_path / "onnx-cache"))
    return tmp_path / "onnx-cache"


def profile(model_dir, engine: str, **extra) -> ProfileConfig:
    return ProfileConfig(
        kind="dense-bm25", model=str(model_dir), max_length=64, batch_size=2, dense_engine=engine, **extra
    )


def test_onnx_fp32_gives_the_sentence_transformers_vectors_in_the_callers_order(tiny_m3_dir, onnx_cache):
    torch_model = SentenceTransformerDense(str(tiny_m3_dir), profile(tiny_m3_dir, "sentence-transformers"))
    onnx_model = build_dense_model("t", str(tiny_m3_dir), profile(tiny_m3_dir, "onnx"))
    want = torch_model.encode_passages(TEXTS)
    got = onnx_model.encode_passages(TEXTS)  # batch_size 2: sorted by length across batches
    assert got.shape == want.shape and onnx_model.dimension == torch_model.dimension
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert onnx_model.encode_queries([]).shape == (0, onnx_model.dimension)
    # Exported once, into the cache (the model directory may be read-only).
    assert list(onnx_cache.glob("*/model.onnx"))


def test_onnx_int8_stays_close_to_fp32(tiny_m3_dir, onnx_cache):
    fp32 = build_dense_model("t", str(tiny_m3_dir), profile(tiny_m3_dir, "onnx")).encode_passages(TEXTS)
    int8_model = build_dense_model("t", str(tiny_m3_dir), profile(tiny_m3_dir, "onnx-int8"))
    assert int8_model.onnx_file.name == "model.int8-per-channel.onnx"
    cos = (int8_model.encode_passages(TEXTS) * fp32).sum(axis=1)
    assert cos.min() > 0.97, cos


def test_a_pooling_onnx_cannot_reproduce_is_refused_naming_the_setting(tiny_m3_dir, tmp_path, onnx_cache):
    model = tmp_path / "max-pooled"
    shutil.copytree(tiny_m3_dir, model)
    (model / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (model / "1_Pooling").mkdir()
    (model / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False})
    )
    with pytest.raises(ModelNotFound, match="dense_engine sentence-transformers"):
        build_dense_model("t", str(model), profile(model, "onnx"))


def test_a_profile_on_onnx_int8_ingests_and_finds_chinese_and_english(tmp_path, tiny_m3_dir, onnx_cache):
    from tests.conftest import RunningServer, make_settings

    settings = make_settings(
        tmp_path,
        tiny_m3_dir,
        None,
        profiles={"zh": profile(tiny_m3_dir, "onnx-int8", analyzer={"type": "cjk"})},
        default_profile="zh",
    )
    running = RunningServer(settings)
    try:
        client = running.client("acme")
        client.create_collection("docs", "zh")
        client.upsert("docs", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
        reply = client.search(
            "docs",
            "中华人民共和国的首都",
            top_k=3,
            fusion="weighted",
            normalizer="none",
            dense_weight=0.0,
            sparse_weight=1.0,
        )
        assert reply.hits[0].id == "1"
        assert reply.dense_candidates == len(TEXTS)
    finally:
        running.stop()
