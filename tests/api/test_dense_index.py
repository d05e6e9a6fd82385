"""The dense index type comes from config (milvus.dense_index), is recorded per collection,
and each type's build and search parameters reach Milvus."""

from __future__ import annotations

import grpc
import pytest

from tests.conftest import status_of
from tests.milvus_process import NATIVE_LITE

DOCS = [
    {"id": "a", "text": "Aspirin lowers the risk of heart attacks."},
    {"id": "b", "text": "Vitamin D deficiency is common in winter."},
    {"id": "c", "text": "Heart attacks are caused by blocked arteries."},
]


@pytest.mark.parametrize(
    "configured, built, params",
    [
        ("auto", "FLAT", None),  # Milvus Lite: exact search (it builds no index anyway)
        ("HNSW", "HNSW", {"M": 8, "efConstruction": 64}),
        ("IVF_FLAT", "IVF_FLAT", {"nlist": 4}),
    ],
)
def test_the_configured_dense_index_is_built_recorded_and_searched(tmp_path, tiny_m3_dir, configured, built, params):
    from tests.conftest import RunningServer, make_settings

    milvus = {"dense_index": configured, "hnsw_m": 8, "hnsw_ef_construction": 64, "ivf_nlist": 4, "ivf_nprobe": 2}
    running = RunningServer(make_settings(tmp_path, tiny_m3_dir, None, milvus=milvus))
    try:
        client = running.client("acme")
        if built == "HNSW" and NATIVE_LITE:
            # Native Milvus Lite builds FLAT, IVF_FLAT and AUTOINDEX only: refused at creation, by name.
            code, details = status_of(lambda: client.create_collection("docs"))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert "milvus.dense_index 'HNSW'" in details and "FLAT IVF_FLAT AUTOINDEX" in details
            assert "docs" not in [c.name for c in client.list_collections()]
            return
        client.create_collection("docs")
        client.upsert("docs", DOCS)
        index = running.server.service.store.connect().describe_index("docs", "dense")
        # Milvus Lite 3.x describes build parameters nested under "params"; native Lite flat, as text.
        described = (
            index.get("params")
            if params is None or "params" in index
            else {k: int(index[k]) for k in params if k in index}
        )
        assert index["index_type"] == built and described == params
        assert running.server.service.store.spec("docs").dense_index == built
        hits = client.search(
            "docs",
            "heart attack risk",
            top_k=3,
            fusion="weighted",
            normalizer="none",
            dense_weight=1.0,
            sparse_weight=0.0,
        )
        assert {h.id for h in hits.hits} == {"a", "b", "c"}
    finally:
        running.stop()


def test_a_collection_made_before_the_index_was_recorded_reads_as_hnsw():
    from hybridsearch.engine.collections import CollectionSpec

    spec = CollectionSpec.from_json(
        "old", '{"profile": "p", "dimension": 8, "dense_metric": "COSINE", "metadata_fields": {}}'
    )
    assert spec.dense_index == "HNSW"
    assert (
        CollectionSpec.from_json("new", CollectionSpec("new", "p", 8, dense_index="FLAT").to_json()).dense_index
        == "FLAT"
    )


def test_an_unknown_dense_index_is_refused_in_config_naming_the_setting():
    from pydantic import ValidationError

    from hybridsearch.engine.config import Settings

    with pytest.raises(ValidationError, match="milvus.dense_index"):
        Settings(milvus={"dense_index": "DISKANN"})


@pytest.mark.parametrize("layout", ["auto", "typed", "json"])
def test_the_schema_layout_is_chosen_by_engine_recorded_and_refused_by_name_where_unsupported(
    tmp_path, tiny_m3_dir, layout
):
    from tests.conftest import RunningServer, make_settings

    running = RunningServer(make_settings(tmp_path, tiny_m3_dir, None, milvus={"schema_layout": layout}))
    try:
        client = running.client("acme")
        expected = {"auto": "json" if NATIVE_LITE else "typed"}.get(layout, layout)
        if expected == "json" and not NATIVE_LITE:
            # Milvus Lite 3.x has no IN on JSON paths: refused at creation, naming the setting.
            code, details = status_of(lambda: client.create_collection("docs", metadata_fields={"year": "int"}))
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "milvus.schema_layout 'json'" in details
            return
        if expected == "typed" and NATIVE_LITE:
            # Native Milvus Lite has no nullable fields: refused at creation, naming the setting.
            code, details = status_of(lambda: client.create_collection("docs", metadata_fields={"year": "int"}))
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "milvus.schema_layout 'typed'" in details
            assert "docs" not in [c.name for c in client.list_collections()]
            return
        client.create_collection("docs", metadata_fields={"year": "int"})
        assert running.server.service.store.spec("docs").layout == expected
        client.upsert(
            "docs",
            [dict(d, metadata={"year": 2010 + i}) for i, d in enumerate(DOCS)]
            + [{"id": "bare", "text": "no year at all"}],
        )
        found = client.search("docs", "heart", top_k=10, filters=[("year", "!=", 2010)])
        assert {h.id for h in found.hits} == {"b", "c"}  # "bare" has no year: it never matches
        found = client.search("docs", "heart", top_k=10, filters=[("year", "not in", [2011])])
        assert {h.id for h in found.hits} == {"a", "c"}
        assert client.get("docs", ["a"])[0].metadata["year"].int_value == 2010
    finally:
        running.stop()


def test_hnsw_build_and_search_parameters_as_sent_to_a_milvus_server():
    # No Milvus server that holds this schema installs offline here: the parameters the
    # store sends are checked as data (native Lite refuses HNSW, see above).
    from hybridsearch.engine.collections import CollectionSpec
    from hybridsearch.engine.config import MilvusConfig
    from hybridsearch.engine.store import MilvusStore

    store = MilvusStore(
        "http://milvus.invalid:19530",
        MilvusConfig(hnsw_m=24, hnsw_ef_construction=300, hnsw_ef=64, ivf_nlist=256, ivf_nprobe=8),
    )
    hnsw = CollectionSpec("c", "p", 8, dense_index="HNSW")
    assert store.dense_build_params(hnsw) == {"params": {"M": 24, "efConstruction": 300}}
    assert store.dense_search_params(hnsw, 10) == {"ef": 64}
    assert store.dense_search_params(hnsw, 500) == {"ef": 500}  # ef never below the results asked for
    ivf = CollectionSpec("c", "p", 8, dense_index="IVF_FLAT")
    assert store.dense_build_params(ivf) == {"params": {"nlist": 256}} and store.dense_search_params(ivf, 10) == {
        "nprobe": 8
    }
    flat = CollectionSpec("c", "p", 8, dense_index="FLAT")
    assert store.dense_build_params(flat) == {} and store.dense_search_params(flat, 10) == {}
