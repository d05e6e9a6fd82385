"""engine.wire: protobuf messages to domain values and back, without a server."""

from __future__ import annotations

import math
from dataclasses import fields

import grpc
import pytest

from hybridsearch.engine.collections import CollectionSpec, FieldType
from hybridsearch.engine.config import LimitsConfig
from hybridsearch.engine.errors import ServiceError
from hybridsearch.engine.search_types import (
    FusionSettings,
    RerankDecision,
    RouteDetail,
    SearchHit,
    SearchOutcome,
    StageTimings,
    Usage,
)
from hybridsearch.engine.wire import enums, replies, requests
from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.v1 import hybridsearch_pb2 as pb

LIMITS = LimitsConfig(max_top_k=50, max_depth=200, default_depth=40, max_batch_docs=10, max_text_bytes=1000)


def error_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value.code, info.value.message


# ---------------------------------------------------------------------- enums


@pytest.mark.parametrize(
    "enum, forward, back",
    [
        (pb.FieldType, enums.FIELD_TYPES, enums.FIELD_TYPES_BACK),
        (pb.FusionMethod, enums.FUSION_METHODS, enums.FUSION_METHODS_BACK),
        (pb.Normalizer, enums.NORMALIZERS, enums.NORMALIZERS_BACK),
        (pb.RerankMode, enums.RERANK_MODES, enums.RERANK_MODES_BACK),
        (pb.Role, enums.ROLE_NAMES, enums.ROLE_VALUES),
    ],
)
def test_every_enum_value_maps_both_ways(enum, forward, back):
    """A value added to the proto and not here would be refused as unknown: fail here first."""
    named = {v for v in enum.values() if not enum.Name(v).endswith("UNSPECIFIED")}
    assert named <= set(forward)
    for name, value in back.items():
        assert forward[value] == name  # out and back in is the identity


def test_unset_enums_mean_the_documented_defaults():
    assert enums.FUSION_METHODS[pb.FUSION_METHOD_UNSPECIFIED] == FusionSettings.method == "rrf"
    assert enums.NORMALIZERS[pb.NORMALIZER_UNSPECIFIED] == FusionSettings.normalizer == "min_max"
    assert enums.RERANK_MODES[pb.RERANK_MODE_UNSPECIFIED] is None  # the tenant's default mode


# ---------------------------------------------------------------------- metadata values


@pytest.mark.parametrize("value", ["文本 text", "", 0, -(2**63), 2**63 - 1, 1.5, -0.0, True, False])
def test_metadata_values_round_trip_with_their_type(value):
    back = requests.metadata_value(replies.to_metadata_value(value), "m")
    assert back == value and type(back) is type(value)  # True stays a bool, 1 an int


def test_metadata_values_without_a_kind_or_not_finite_are_refused():
    assert error_of(lambda: requests.metadata_value(pb.MetadataValue(), "documents[0].metadata['x']")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "documents[0].metadata['x']: value has no kind set (string_value, int_value, double_value or bool_value)",
    )
    for bad in (math.nan, math.inf):
        code, message = error_of(lambda bad=bad: requests.metadata_value(pb.MetadataValue(double_value=bad), "f"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("f: ") and "finite" in message


# ---------------------------------------------------------------------- requests in


def test_documents_become_domain_documents_with_typed_metadata():
    message = [
        pb.Document(
            id="文档-1",
            text="中文 and English",
            metadata={"year": pb.MetadataValue(int_value=2020), "lang": pb.MetadataValue(string_value="zh")},
        )
    ]
    (doc,) = requests.documents(message, LIMITS)
    assert (doc.id, doc.text, doc.metadata) == ("文档-1", "中文 and English", {"lang": "zh", "year": 2020})


@pytest.mark.parametrize(
    "docs, field, words",
    [
        ([], "documents", "at least one"),
        ([pb.Document(id="a", text="x")] * 11, "documents", "at most 10"),
        ([pb.Document(id="", text="x")], "documents[0].id", "empty"),
        ([pb.Document(id="a", text="x"), pb.Document(id="a", text="y")], "documents[1].id", "duplicate"),
        ([pb.Document(id="a", text="  ")], "documents[0].text", "whitespace"),
        ([pb.Document(id="a", text="字" * 400)], "documents[0].text", "1200 bytes"),
        ([pb.Document(id="a\n", text="x")], "documents[0].id", "control"),
        (
            [pb.Document(id="a", text="x", metadata={"1bad": pb.MetadataValue(int_value=1)})],
            "documents[0].metadata",
            "field name",
        ),
    ],
)
def test_bad_documents_name_the_field(docs, field, words):
    code, message = error_of(lambda: requests.documents(docs, LIMITS))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith(field + ": ") and words in message


def test_a_bare_search_request_gets_every_default():
    query = requests.search_query(pb.SearchRequest(collection="docs", query="蛋白质 protein", top_k=5), LIMITS)
    assert query.fusion == FusionSettings()
    assert (query.dense_k, query.sparse_k) == (40, 40)  # limits.default_depth
    assert (query.rerank_mode, query.rerank_depth, query.clauses, query.explain) == (None, 0, (), False)
    deep = requests.search_query(pb.SearchRequest(collection="docs", query="q", top_k=45), LIMITS)
    assert (deep.dense_k, deep.sparse_k) == (45, 45)  # never below top_k


def test_search_request_fields_are_carried_over():
    request = pb.SearchRequest(
        collection="docs",
        query="q",
        top_k=3,
        dense_k=7,
        sparse_k=9,
        explain=True,
        rerank_mode=pb.FIXED,
        rerank_depth=6,
        fusion=pb.FusionSpec(method=pb.WEIGHTED, dense_weight=0.0, sparse_weight=2.5, normalizer=pb.Z_SCORE),
        filter=pb.Filter(
            clauses=[
                pb.FilterClause(field="year", op=pb.FilterClause.GTE, value=pb.MetadataValue(int_value=2015)),
                pb.FilterClause(
                    field="lang",
                    op=pb.FilterClause.IN,
                    values=[pb.MetadataValue(string_value="zh"), pb.MetadataValue(string_value="en")],
                ),
            ]
        ),
    )
    q = requests.search_query(request, LIMITS)
    assert (q.top_k, q.dense_k, q.sparse_k, q.explain, q.rerank_mode, q.rerank_depth) == (3, 7, 9, True, "fixed", 6)
    assert q.fusion == FusionSettings(
        method="weighted", rrf_k=60.0, dense_weight=0.0, sparse_weight=2.5, normalizer="z_score"
    )
    assert [(c.field, c.op, c.values) for c in q.clauses] == [("year", "GTE", (2015,)), ("lang", "IN", ("zh", "en"))]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 51}, "top_k"),
        ({"query": " "}, "query"),
        ({"dense_k": 2}, "dense_k"),
        ({"sparse_k": 201}, "sparse_k"),
        ({"rerank_mode": pb.FIXED}, "rerank_depth"),
        ({"rerank_depth": 4}, "rerank_depth"),
        ({"rerank_mode": 17}, "rerank_mode"),
        ({"collection": "1bad"}, "collection"),
        ({"fusion": pb.FusionSpec(rrf_k=-1)}, "fusion.rrf_k"),
        ({"fusion": pb.FusionSpec(dense_weight=math.inf)}, "fusion.dense_weight"),
        ({"fusion": pb.FusionSpec(dense_weight=0, sparse_weight=0)}, "fusion"),
        ({"fusion": pb.FusionSpec(method=9)}, "fusion.method"),
        ({"filter": pb.Filter(clauses=[pb.FilterClause(field="x")])}, "filter.clauses[0].op"),
        (
            {
                "filter": pb.Filter(
                    clauses=[pb.FilterClause(field="x", op=pb.FilterClause.IN, value=pb.MetadataValue(int_value=1))]
                )
            },
            "filter.clauses[0].value",
        ),
    ],
)
def test_bad_search_requests_name_the_field(changes, field):
    request = pb.SearchRequest(collection="docs", query="q", top_k=3)
    for name, value in changes.items():
        if isinstance(value, (pb.FusionSpec, pb.Filter)):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    code, message = error_of(lambda: requests.search_query(request, LIMITS))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith(field + ": "), message


def test_collection_spec_and_its_reply_round_trip():
    request = pb.CreateCollectionRequest(
        name="papers",
        dense_metric="ip",
        metadata_fields=[
            pb.MetadataField(name=n, type=t)
            for n, t in (
                ("year", pb.FIELD_TYPE_INT),
                ("lang", pb.FIELD_TYPE_STRING),
                ("score", pb.FIELD_TYPE_DOUBLE),
                ("open", pb.FIELD_TYPE_BOOL),
            )
        ],
    )
    spec = requests.collection_spec(request, default_profile="bge-m3")
    assert (spec.name, spec.profile, spec.dimension, spec.dense_metric) == ("papers", "bge-m3", 0, "IP")
    assert spec.metadata_fields == {
        "year": FieldType.INT,
        "lang": FieldType.STRING,
        "score": FieldType.DOUBLE,
        "open": FieldType.BOOL,
    }
    message = replies.collection_message(spec, count=12)
    assert [(f.name, f.type) for f in message.metadata_fields] == [(f.name, f.type) for f in request.metadata_fields]
    assert (message.tenant_document_count, message.dense_metric) == (12, "IP")
    code, message_text = error_of(
        lambda: requests.collection_spec(
            pb.CreateCollectionRequest(name="p", metadata_fields=[pb.MetadataField(name="a", type=1)] * 2), "x"
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message_text.startswith("metadata_fields[1].name: ")


def test_rerank_request_and_budget_and_api_key_requests():
    settings = type("S", (), {"limits": LIMITS, "rerank": type("R", (), {"max_documents": 3})()})()
    query, docs, top_n = requests.rerank_request(pb.RerankRequest(query="癌症", documents=["a", "b"]), settings)
    assert (query, docs, top_n) == ("癌症", ["a", "b"], 2)  # top_n 0 = all
    assert error_of(lambda: requests.rerank_request(pb.RerankRequest(query="q", documents=["a"] * 4), settings))[
        1
    ].startswith("documents: ")
    budget = requests.rerank_budget(
        pb.RerankBudget(tenant="acme", max_depth=30, min_depth=5, default_mode=pb.AUTO), 200
    )
    assert budget == RerankBudget(tenant="acme", max_depth=30, min_depth=5, default_mode="auto")
    unset = requests.rerank_budget(pb.RerankBudget(tenant="acme", max_depth=30), 200)
    assert unset.default_mode == "off"
    assert replies.budget_message(budget) == pb.RerankBudget(
        tenant="acme", max_depth=30, min_depth=5, default_mode=pb.AUTO
    )
    assert requests.api_key_request(pb.CreateApiKeyRequest(role=pb.ADMIN, description="old")) == ("tenant-admin", "old")
    assert error_of(lambda: requests.api_key_request(pb.CreateApiKeyRequest(role=pb.ROLE_UNSPECIFIED)))[1].startswith(
        "role: "
    )
    assert error_of(lambda: requests.api_key_request(pb.CreateApiKeyRequest(role=pb.SEARCH, description="x" * 257)))[
        1
    ].startswith("description: ")


# ---------------------------------------------------------------------- replies out


def _hit(i: int, text: str, reranked: bool) -> SearchHit:
    return SearchHit(
        id=f"d{i}",
        text=text,
        metadata={"year": 2000 + i, "lang": "zh", "open": True, "w": 0.5},
        score=1.0 / (i + 1),
        fused_score=0.5 / (i + 1),
        fused_rank=i + 1,
        dense=RouteDetail(0.9, 1.0, i + 1),
        sparse=None if i else RouteDetail(3.0, 0.7, 2),
        reranked=reranked,
        rerank_score=0.25 if reranked else None,
        explanation="rrf",
    )


def test_search_response_carries_every_field():
    decision = RerankDecision(
        mode="fixed",
        depth_chosen=2,
        reason="fixed",
        predicted_ms=3.0,
        actual_ms=4.0,
        cost_units=90,
        depth_scored=2,
        backend="tiny",
    )
    timings = StageTimings(
        encode_ms=1,
        dense_search_ms=2,
        sparse_search_ms=3,
        fusion_ms=4,
        fetch_ms=5,
        rerank_ms=6,
        total_ms=21,
        query_cache_hit=True,
    )
    outcome = SearchOutcome(
        hits=[_hit(0, "中文", True), _hit(1, "English", False)],
        timings=timings,
        decision=decision,
        dense_candidates=7,
        sparse_candidates=8,
    )
    reply = replies.search_response(outcome, Usage(tokens=90, encoded_texts=0, queue_ms=0.5, total_ms=22))
    first, second = reply.hits
    assert (first.id, first.text, first.fused_rank, first.reranked, first.rerank_score) == ("d0", "中文", 1, True, 0.25)
    assert not second.HasField("rerank_score") and not second.HasField("sparse") and second.dense.rank == 2
    assert {k: requests.metadata_value(v, k) for k, v in first.metadata.items()} == {
        "year": 2000,
        "lang": "zh",
        "open": True,
        "w": 0.5,
    }
    assert [getattr(reply.timings, f.name) for f in fields(StageTimings)] == [
        getattr(timings, f.name) for f in fields(StageTimings)
    ]
    assert (reply.rerank.mode, reply.rerank.cost_units, reply.rerank.backend) == (pb.FIXED, 90, "tiny")
    assert (reply.dense_candidates, reply.sparse_candidates) == (7, 8)
    assert (reply.usage.tokens, reply.usage.queue_ms, reply.usage.total_ms) == (90, 0.5, 22)
    assert [f.name for f in fields(Usage)] == [f.name for f in pb.Usage.DESCRIPTOR.fields]  # nothing left out


def test_fit_reply_cuts_the_last_hits_text_first_and_keeps_utf8_whole():
    outcome = SearchOutcome(
        hits=[_hit(i, "汉字" * 4000, False) for i in range(8)],
        timings=StageTimings(),
        decision=RerankDecision(),
        dense_candidates=8,
        sparse_candidates=8,
    )
    reply = replies.search_response(outcome)
    size = reply.ByteSize()
    limit = size - 30_000 + replies.REPLY_HEADROOM_BYTES
    fitted = replies.fit_reply(reply, limit)
    assert fitted.ByteSize() <= limit - replies.REPLY_HEADROOM_BYTES
    cut = [h.text_truncated for h in fitted.hits]
    assert cut[0] is False and cut[-1] is True and cut == sorted(cut)  # the best hits stay whole
    for hit in fitted.hits:
        assert set(hit.text) <= {"汉", "字"}  # cut at a character boundary
    code, _ = error_of(lambda: replies.fit_reply(replies.search_response(outcome), replies.REPLY_HEADROOM_BYTES + 10))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_info_message_maps_defaults_role_and_budget():
    info = {
        "version": "0.1.0",
        "api": "hybridsearch.v1",
        "components": {"grpcio": "1"},
        "store": "milvus-lite",
        "default_profile": "p",
        "profiles": [{"name": "p", "kind": "bge-m3", "model": "m", "max_length": 8, "analyzer": "", "loaded": False}],
        "default_rerank_backend": "",
        "rerank_backends": [],
        "limits": {"max_top_k": 5},
        "health_services": ["", "hybridsearch.v1.Rerank"],
        "defaults": {
            "fusion_method": "dbsf",
            "rrf_k": 60.0,
            "dense_weight": 1.0,
            "sparse_weight": 1.0,
            "normalizer": "arctan",
            "candidate_depth": 9,
            "rerank_mode": "auto",
        },
        "tenant": "acme",
        "role": "write",
        "budget": RerankBudget(tenant="acme", default_mode="fixed"),
    }
    message = replies.info_message(info)
    assert (message.defaults.fusion_method, message.defaults.normalizer, message.defaults.rerank_mode) == (
        pb.DBSF,
        pb.ARCTAN,
        pb.AUTO,
    )
    assert (message.role, message.budget.default_mode, message.limits.max_top_k) == (pb.WRITE, pb.FIXED, 5)
    assert message.profiles[0].dimension == 0 and not message.profiles[0].loaded
    assert not replies.info_message({**info, "budget": None}).HasField("budget")


def test_check_metadata_types_follows_the_declared_types():
    from hybridsearch.engine.collections import check_metadata_types

    spec = CollectionSpec(
        name="c",
        profile="p",
        dimension=4,
        metadata_fields={"year": FieldType.INT, "w": FieldType.DOUBLE, "ok": FieldType.BOOL},
    )
    check_metadata_types(
        spec, {"year": 2020, "w": 3, "ok": False, "other": "any"}, "documents[0].metadata"
    )  # an int is a fine double
    for bad in ({"year": True}, {"year": 1.5}, {"ok": 1}, {"w": "1.0"}):
        code, message = error_of(lambda bad=bad: check_metadata_types(spec, bad, "documents[0].metadata"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith(
            f"documents[0].metadata[{next(iter(bad))!r}]: "
        )
