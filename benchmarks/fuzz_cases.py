"""Fuzz cases for every request message of the API, shared by the short fuzz test and the long run.

Hypothesis builds arbitrary but type-correct protobuf messages for every RPC of
``HybridSearch`` and ``TenantAdmin`` (unicode, control characters and huge strings;
negative and huge integers; enum numbers out of range; NaN and infinities; unset
oneofs; random filter clauses, metadata and document batches; random ``x-tenant``
values): :func:`calls` draws one, :func:`run_call` sends it through the raw stubs and
:func:`problem` says whether its outcome breaks the contract (a status outside
:data:`ALLOWED` such as INTERNAL or UNKNOWN, an empty message, a transport failure).
:func:`seed_collections` creates the collections the calls aim at, and
:func:`check_still_serving` checks the server afterwards.

Used by ``tests/api/test_fuzz.py`` (the short version in the default suite) and
``python -m benchmarks.fuzz_api`` (minutes against a server in a subprocess). The
strategies know the limits of the test suite's settings (max_top_k 100, max_depth 200,
max_batch_docs 100, max_query_chars 500, max_text_bytes 4000) only to aim part of the
values at the edges.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import text_format
from hypothesis import strategies as st

from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc

TENANT = "fuzz"
# Collections the fuzzer searches, writes and filters on; it never drops them.
SEED_COLLECTION = "fuzz_seed"
SEED_BM25_COLLECTION = "fuzz_bm25"
PROTECTED = (SEED_COLLECTION, SEED_BM25_COLLECTION)
# Collections it may create and drop at will.
SCRATCH = ("fuzz_scratch_a", "fuzz_scratch_b")
PROFILES = ("tiny-m3", "tiny-bm25")  # tests.conftest.TINY_PROFILE, TINY_BM25_PROFILE
SEED_FIELDS = {"year": "int", "kind": "string", "score": "double", "open": "bool"}
SEED_DOCS = [
    {
        "id": "s1",
        "text": "protein expression in cancer cells",
        "metadata": {"year": 2010, "kind": "article", "score": 0.5, "open": True, "extra": "x"},
    },
    {
        "id": "s2",
        "text": "immune response to viral infection",
        "metadata": {"year": 2020, "kind": "review", "score": 2.5, "open": False},
    },
    {
        "id": "s3",
        "text": "brain imaging of memory and sleep",
        "metadata": {"year": 2015, "kind": "letter", "score": 1.0, "open": True},
    },
    {
        "id": "s4",
        "text": "insulin resistance and glucose metabolism in mice",
        "metadata": {"year": 1999, "kind": "article", "score": -3.0},
    },
]
GOOD_QUERIES = ("protein cancer", "viral infection immune response", "memory", "glucose metabolism in mice")

# Statuses a bad request may get. UNAVAILABLE only while the server shuts down (never here).
ALLOWED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
DEFAULT_EXAMPLES = 400
CALL_TIMEOUT_S = 30.0

# ---------------------------------------------------------------- scalar strategies

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Protobuf strings must be valid UTF-8: any code point but the surrogates.
_ANY_CHAR = st.characters(exclude_categories=("Cs",))
_SPECIAL_STRINGS = (
    "",
    " ",
    "\t\n ",
    "\x00",
    "a\x00b",
    "\x7f",
    "\x1b[31m",
    "é",
    "中文字符",
    "🙂",
    "\u202eevil",
    "\u2028",
    "\ufeff",
    "'",
    '"',
    "\\",
    '\\"',
    "a\"b'c",
    "x or 1==1",
    'tenant == "acme"',
    "%s%n",
    "${x}",
    "../..",
    "NaN",
    "null",
    "year",
    "kind",
    "score",
    "open",
    "m_year",
    "pk",
    "tenant",
    "text",
    "metadata",
    "dense",
    "sparse",
    "fuzz",
    "acme",
    "s1",
    "fuzz_seed",
    "tiny-m3",
    "COSINE",
    "IP",
    "L2",
)


def weighted(*options: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, chosen in proportion to its weight (``st.one_of`` ignores repeats)."""
    indices = [i for i, (weight, _) in enumerate(options) for _ in range(weight)]
    return st.sampled_from(indices).flatmap(lambda i: options[i][1])


@st.composite
def _huge_string(draw) -> str:
    piece = draw(st.sampled_from(["x", "é", "中", "🙂", "\x00", " ", "ab\n", "word "]))
    n = draw(st.sampled_from([257, 501, 1025, 4001, 4097, 65536, 70_000, 300_000]))
    return piece * n


def strings(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any valid protobuf string: unicode, control characters, specials, sometimes huge."""
    return st.one_of(
        st.text(_ANY_CHAR, max_size=max_size),
        st.text(st.characters(codec="ascii"), max_size=max_size),  # control characters, NUL
        st.sampled_from(_SPECIAL_STRINGS),
        _huge_string(),
    )


def int32s(*edges: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(INT32_MIN, INT32_MAX),
        st.integers(-3, 300),
        st.sampled_from((0, 1, -1, INT32_MIN, INT32_MAX) + edges),
    )


def int64s(*edges: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(INT64_MIN, INT64_MAX),
        st.integers(-3, 100_000),
        st.sampled_from((0, 1, -1, INT64_MIN, INT64_MAX, 2**53 + 1) + edges),
    )


def doubles() -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-10, 10),
        st.sampled_from((0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 60.0)),
    )


def enums(enum_type) -> st.SearchStrategy[int]:
    """Defined values, and any int32 (proto3 enums are open: unknown numbers go over the wire)."""
    return st.one_of(st.sampled_from(list(enum_type.values())), st.integers(-5, 20), st.integers(INT32_MIN, INT32_MAX))


def collection_names() -> st.SearchStrategy[str]:
    return weighted(
        (4, st.sampled_from(PROTECTED)),
        (1, st.sampled_from(SCRATCH)),
        (1, st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)),
        (2, strings()),
    )


def tenant_names() -> st.SearchStrategy[str]:
    return st.one_of(st.just(TENANT), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True), strings())


def field_names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(sorted(SEED_FIELDS)), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,62}", fullmatch=True), strings()
    )


def doc_ids() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([d["id"] for d in SEED_DOCS] + [f"f{i}" for i in range(8)]), strings(60))


_WORDS = "protein cancer cell immune virus brain memory sleep glucose insulin mice the of and".split()
_WORD_TEXTS = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=30).map(" ".join)


def doc_texts() -> st.SearchStrategy[str]:
    return st.one_of(_WORD_TEXTS, strings(200))


# ---------------------------------------------------------------- message strategies


@st.composite
def metadata_values(draw) -> pb.MetadataValue:
    kind = draw(st.sampled_from(["unset", "string_value", "int_value", "double_value", "bool_value"]))
    if kind == "unset":  # the oneof left empty
        return pb.MetadataValue()
    value = {
        "string_value": strings(),
        "int_value": int64s(2010, 2020),
        "double_value": doubles(),
        "bool_value": st.booleans(),
    }[kind]
    return pb.MetadataValue(**{kind: draw(value)})


@st.composite
def metadata_maps(draw) -> dict[str, pb.MetadataValue]:
    keys = draw(st.lists(field_names(), max_size=6))
    if draw(st.integers(0, 30)) == 0:  # over limits.max_metadata_keys (64)
        keys += [f"k{i}" for i in range(70)]
    return {k: draw(metadata_values()) for k in keys}


@st.composite
def documents(draw) -> pb.Document:
    doc = pb.Document(id=draw(doc_ids()), text=draw(doc_texts()))
    for key, value in draw(metadata_maps()).items():
        doc.metadata[key].CopyFrom(value)
    return doc


@st.composite
def document_batches(draw) -> list[pb.Document]:
    size = draw(st.one_of(st.integers(0, 5), st.sampled_from([100, 101])))
    if size > 5:  # at and over limits.max_batch_docs: cheap documents, unique ids
        return [pb.Document(id=f"bulk{i}", text="protein cell") for i in range(size)]
    return [draw(documents()) for _ in range(size)]


@st.composite
def filter_clauses(draw) -> pb.FilterClause:
    clause = pb.FilterClause(field=draw(field_names()), op=draw(enums(pb.FilterClause.Operator)))
    if draw(st.booleans()):
        clause.value.CopyFrom(draw(metadata_values()))
    n = draw(st.one_of(st.integers(0, 4), st.sampled_from([0, 0, 1024, 1025])))
    if n > 4:
        clause.values.extend(pb.MetadataValue(int_value=i) for i in range(n))
    else:
        clause.values.extend(draw(metadata_values()) for _ in range(n))
    return clause


@st.composite
def well_typed_clauses(draw) -> pb.FilterClause:
    """Clauses on the seed collection's declared fields with values of the right type,
    so that filters get past validation into the compiler and Milvus."""
    name = draw(st.sampled_from(sorted(SEED_FIELDS)))
    kind = SEED_FIELDS[name]
    value = {
        "int": st.builds(lambda v: pb.MetadataValue(int_value=v), int64s(2010, 2020)),
        "string": st.builds(lambda v: pb.MetadataValue(string_value=v), strings()),
        "double": st.builds(lambda v: pb.MetadataValue(double_value=v), doubles()),
        "bool": st.builds(lambda v: pb.MetadataValue(bool_value=v), st.booleans()),
    }[kind]
    op = draw(st.sampled_from(list(range(1, 9))))
    clause = pb.FilterClause(field=name, op=op)
    if op in (pb.FilterClause.IN, pb.FilterClause.NOT_IN):
        clause.values.extend(draw(st.lists(value, min_size=0, max_size=5)))
    else:
        clause.value.CopyFrom(draw(value))
    return clause


@st.composite
def filters(draw) -> pb.Filter | None:
    if draw(st.booleans()):
        return None  # unset
    n = draw(st.one_of(st.integers(0, 3), st.sampled_from([32, 33])))
    if n > 3:
        return pb.Filter(
            clauses=[
                pb.FilterClause(field="year", op=pb.FilterClause.GTE, value=pb.MetadataValue(int_value=i))
                for i in range(n)
            ]
        )
    return pb.Filter(clauses=draw(st.lists(st.one_of(filter_clauses(), well_typed_clauses()), min_size=n, max_size=n)))


@st.composite
def fusion_specs(draw) -> pb.FusionSpec | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    spec = pb.FusionSpec(
        method=draw(enums(pb.FusionMethod)), rrf_k=draw(doubles()), normalizer=draw(enums(pb.Normalizer))
    )
    for name in ("dense_weight", "sparse_weight"):
        if draw(st.booleans()):
            setattr(spec, name, draw(doubles()))
    return spec


@st.composite
def search_requests(draw) -> pb.SearchRequest:
    request = pb.SearchRequest(
        collection=draw(collection_names()),
        query=draw(st.one_of(st.sampled_from(GOOD_QUERIES), strings(80))),
        top_k=draw(st.one_of(st.integers(1, 100), int32s(100, 101))),
        dense_k=draw(st.one_of(st.just(0), st.integers(0, 200), int32s(200, 201))),
        sparse_k=draw(st.one_of(st.just(0), st.integers(0, 200), int32s(200, 201))),
        explain=draw(st.booleans()),
        rerank_mode=draw(enums(pb.RerankMode)),
        rerank_depth=draw(st.one_of(st.just(0), st.integers(0, 50), int32s(200, 201))),
    )
    f = draw(filters())
    if f is not None:
        request.filter.CopyFrom(f)
    spec = draw(fusion_specs())
    if spec is not None:
        request.fusion.CopyFrom(spec)
    return request


@st.composite
def near_valid_search_requests(draw) -> pb.SearchRequest:
    """Searches that pass most checks, so filters, fusion and rerank get exercised for real."""
    mode = draw(st.sampled_from([pb.RERANK_MODE_UNSPECIFIED, pb.OFF, pb.FIXED, pb.AUTO]))
    top_k = draw(st.integers(1, 100))
    request = pb.SearchRequest(
        collection=draw(st.sampled_from(PROTECTED)),
        query=draw(
            st.one_of(st.sampled_from(GOOD_QUERIES), st.text(_ANY_CHAR, min_size=1, max_size=60), _huge_string())
        ),
        top_k=top_k,
        dense_k=draw(st.one_of(st.just(0), st.integers(top_k, 200))),
        sparse_k=draw(st.one_of(st.just(0), st.integers(top_k, 200))),
        explain=draw(st.booleans()),
        rerank_mode=mode,
        rerank_depth=draw(st.integers(1, 200)) if mode == pb.FIXED else 0,
    )
    clauses = draw(st.lists(well_typed_clauses(), max_size=4))
    if clauses:
        request.filter.CopyFrom(pb.Filter(clauses=clauses))
    spec = pb.FusionSpec(
        method=draw(st.sampled_from(list(pb.FusionMethod.values()))),
        rrf_k=draw(st.one_of(st.just(0.0), st.floats(0, 1e308), st.sampled_from([5e-324, 1e-300, 1e300]))),
        normalizer=draw(st.sampled_from(list(pb.Normalizer.values()))),
    )
    for name in ("dense_weight", "sparse_weight"):
        if draw(st.booleans()):
            setattr(
                spec, name, draw(st.one_of(st.floats(0, 1e308), st.sampled_from([0.0, 5e-324, 1e-300, 1e300, 1.0])))
            )
    request.fusion.CopyFrom(spec)
    return request


@st.composite
def near_valid_documents(draw) -> pb.Document:
    """Documents that pass validation: unique-ish ids, any text, declared fields well typed."""
    printable = st.characters(exclude_categories=("Cs", "Cc"))
    doc = pb.Document(
        id=draw(
            st.one_of(
                st.sampled_from([d["id"] for d in SEED_DOCS] + [f"f{i}" for i in range(8)]),
                st.text(printable, min_size=1, max_size=40).filter(str.strip),
            )
        ),
        text=draw(st.one_of(_WORD_TEXTS, st.text(printable, min_size=1, max_size=300).filter(str.strip))),
    )
    typed = {
        "year": st.builds(lambda v: pb.MetadataValue(int_value=v), int64s()),
        "kind": st.builds(
            lambda v: pb.MetadataValue(string_value=v),
            st.one_of(st.text(_ANY_CHAR, max_size=50), st.sampled_from(_SPECIAL_STRINGS)),
        ),
        "score": st.one_of(
            st.builds(lambda v: pb.MetadataValue(double_value=v), st.floats(allow_nan=False, allow_infinity=False)),
            st.builds(lambda v: pb.MetadataValue(int_value=v), int64s()),
        ),
        "open": st.builds(lambda v: pb.MetadataValue(bool_value=v), st.booleans()),
    }
    for name in draw(st.lists(st.sampled_from(sorted(typed)), unique=True)):
        doc.metadata[name].CopyFrom(draw(typed[name]))
    for key in draw(st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), max_size=3)):
        if key not in SEED_FIELDS:
            value = draw(metadata_values())
            if value.WhichOneof("kind") is not None and not (
                value.WhichOneof("kind") == "double_value" and not math.isfinite(value.double_value)
            ):
                doc.metadata[key].CopyFrom(value)
    return doc


@st.composite
def near_valid_upserts(draw) -> pb.UpsertRequest:
    docs = draw(st.lists(near_valid_documents(), min_size=1, max_size=4, unique_by=lambda d: d.id))
    return pb.UpsertRequest(collection=draw(st.sampled_from(PROTECTED)), documents=docs)


@st.composite
def rerank_requests(draw) -> pb.RerankRequest:
    n = draw(st.one_of(st.integers(0, 6), st.sampled_from([1000, 1001])))
    if n > 6:
        docs = ["cell protein"] * n
    else:
        docs = draw(st.lists(st.one_of(doc_texts(), strings()), min_size=n, max_size=n))
    return pb.RerankRequest(
        query=draw(st.one_of(st.sampled_from(GOOD_QUERIES), strings(80))),
        documents=docs,
        top_n=draw(st.one_of(st.integers(0, 8), int32s())),
        return_documents=draw(st.booleans()),
        model=draw(st.one_of(st.just(""), st.just(""), st.just("tiny"), strings())),
    )


@st.composite
def create_collection_requests(draw) -> pb.CreateCollectionRequest:
    fields = draw(
        st.lists(
            st.one_of(
                st.builds(pb.MetadataField, name=field_names(), type=enums(pb.FieldType)),
                st.builds(pb.MetadataField, name=st.sampled_from(sorted(SEED_FIELDS)), type=st.integers(1, 4)),
            ),
            max_size=4,
        )
    )
    return pb.CreateCollectionRequest(
        name=draw(st.one_of(st.sampled_from(SCRATCH), st.just(SEED_COLLECTION), strings())),
        profile=draw(st.one_of(st.just(""), st.sampled_from(PROFILES), strings())),
        dimension=draw(st.one_of(st.just(0), st.just(32), int32s(32, 384, 1024))),
        dense_metric=draw(st.one_of(st.sampled_from(["", "COSINE", "IP", "cosine", "L2"]), strings())),
        metadata_fields=fields,
    )


@st.composite
def budgets(draw) -> pb.RerankBudget:
    return pb.RerankBudget(
        tenant=draw(tenant_names()),
        latency_target_ms=draw(doubles()),
        max_cost_per_query=draw(int64s()),
        cost_per_minute=draw(doubles()),
        min_depth=draw(st.one_of(st.integers(0, 10), int32s())),
        max_depth=draw(st.one_of(st.integers(0, 200), int32s(200, 201))),
        default_mode=draw(enums(pb.RerankMode)),
    )


@st.composite
def near_valid_budgets(draw) -> pb.RerankBudget:
    """Budgets that pass validation (and so change how AUTO and FIXED searches behave)."""
    max_depth = draw(st.integers(0, 200))
    return pb.RerankBudget(
        tenant=draw(st.one_of(st.just(TENANT), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True))),
        latency_target_ms=draw(st.one_of(st.just(0.0), st.floats(0, 1e308))),
        max_cost_per_query=draw(st.one_of(st.just(0), st.integers(0, INT64_MAX))),
        cost_per_minute=draw(st.one_of(st.just(0.0), st.floats(0, 1e308))),
        min_depth=draw(st.integers(0, max_depth)),
        max_depth=max_depth,
        default_mode=draw(st.sampled_from(list(pb.RerankMode.values()))),
    )


@st.composite
def set_budget_requests(draw) -> pb.SetBudgetRequest:
    request = pb.SetBudgetRequest()
    if draw(st.integers(0, 5)):
        request.budget.CopyFrom(draw(st.one_of(budgets(), near_valid_budgets())))
    return request


# (service, method) -> strategy of request messages (a list of messages for a stream).
REQUESTS: dict[tuple[str, str], st.SearchStrategy] = {
    ("HybridSearch", "CreateCollection"): create_collection_requests(),
    ("HybridSearch", "DescribeCollection"): st.builds(pb.DescribeCollectionRequest, name=collection_names()),
    ("HybridSearch", "ListCollections"): st.just(pb.ListCollectionsRequest()),
    ("HybridSearch", "DropCollection"): st.builds(
        pb.DropCollectionRequest,
        name=st.one_of(st.sampled_from(SCRATCH), strings()).filter(lambda n: n not in PROTECTED),
    ),
    ("HybridSearch", "Upsert"): st.one_of(
        st.builds(pb.UpsertRequest, collection=collection_names(), documents=document_batches()), near_valid_upserts()
    ),
    ("HybridSearch", "BulkUpsert"): st.lists(
        st.builds(
            pb.UpsertRequest, collection=st.one_of(st.just(""), collection_names()), documents=document_batches()
        ),
        max_size=4,
    ),
    ("HybridSearch", "Delete"): st.builds(
        pb.DeleteRequest, collection=collection_names(), ids=st.lists(doc_ids(), max_size=5)
    ),
    ("HybridSearch", "Get"): st.builds(
        pb.GetRequest, collection=collection_names(), ids=st.lists(doc_ids(), max_size=5)
    ),
    ("HybridSearch", "Search"): st.one_of(search_requests(), near_valid_search_requests()),
    ("HybridSearch", "Rerank"): rerank_requests(),
    ("TenantAdmin", "CreateApiKey"): st.builds(
        pb.CreateApiKeyRequest, tenant=tenant_names(), role=enums(pb.Role), description=strings()
    ),
    ("TenantAdmin", "ListApiKeys"): st.builds(pb.ListApiKeysRequest, tenant=st.one_of(st.just(""), tenant_names())),
    ("TenantAdmin", "RevokeApiKey"): st.builds(pb.RevokeApiKeyRequest, key_id=strings()),
    ("TenantAdmin", "SetBudget"): set_budget_requests(),
    ("TenantAdmin", "GetBudget"): st.builds(pb.GetBudgetRequest, tenant=tenant_names()),
    ("TenantAdmin", "ListBudgets"): st.just(pb.ListBudgetsRequest()),
    ("TenantAdmin", "DeleteBudget"): st.builds(pb.DeleteBudgetRequest, tenant=tenant_names()),
}
# Searches and writes carry the pipeline's paths; they get more of the examples.
WEIGHTS = {("HybridSearch", "Search"): 6, ("HybridSearch", "Upsert"): 3, ("HybridSearch", "Rerank"): 2}
_PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


def call_metadata() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Request metadata: usually the fuzz tenant; sometimes none, several, or junk (dev_header mode)."""
    return weighted(
        (12, st.just([("x-tenant", TENANT)])),
        (1, st.just([])),
        (1, st.builds(lambda t: [("x-tenant", t)], st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True))),
        (1, st.builds(lambda t: [("x-tenant", t)], _PRINTABLE)),
        (1, st.builds(lambda a, b: [("x-tenant", a), ("x-tenant", b)], _PRINTABLE, st.just(TENANT))),
        (1, st.builds(lambda k: [("x-tenant", TENANT), ("authorization", k)], _PRINTABLE)),
    )


@dataclass
class Call:
    service: str
    method: str
    request: Any  # a message, or a list of messages for a client stream
    metadata: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.service}.{self.method}"

    def __repr__(self) -> str:
        def show(message) -> str:
            text = text_format.MessageToString(message, as_one_line=True)
            return text if len(text) <= 600 else text[:600] + f"... ({len(text)} chars)"

        body = (
            "[" + ", ".join(show(m) for m in self.request) + "]"
            if isinstance(self.request, list)
            else show(self.request)
        )
        return f"Call({self.name}, metadata={[(k, v[:80]) for k, v in self.metadata]!r}, request={body})"


def calls() -> st.SearchStrategy[Call]:
    """One RPC of either service, with its request and metadata."""
    return weighted(
        *(
            (WEIGHTS.get(key, 1), st.builds(Call, st.just(key[0]), st.just(key[1]), requests, call_metadata()))
            for key, requests in REQUESTS.items()
        )
    )


# ---------------------------------------------------------------- running calls


class Stubs:
    def __init__(self, channel: grpc.Channel):
        self.by_service = {
            "HybridSearch": pb_grpc.HybridSearchStub(channel),
            "TenantAdmin": pb_grpc.TenantAdminStub(channel),
        }


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK


def run_call(stubs: Stubs, call: Call, timeout: float = CALL_TIMEOUT_S) -> Outcome:
    method = getattr(stubs.by_service[call.service], call.method)
    request = iter(call.request) if isinstance(call.request, list) else call.request
    start = time.perf_counter()
    try:
        method(request, metadata=call.metadata, timeout=timeout)
        return Outcome(grpc.StatusCode.OK, "", time.perf_counter() - start)
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "", time.perf_counter() - start)


# Details gRPC itself gives when the call broke in transport rather than ending with the
# server's status (e.g. a status message too large for the client's trailer limit).
TRANSPORT_FAILURES = (
    "Stream removed",
    "metadata size exceeds",
    "Socket closed",
    "Connection reset",
    "failed to connect",
)


def problem(call: Call, outcome: Outcome) -> str | None:
    """Why this outcome breaks the contract, or None."""
    if outcome.ok:
        return None
    if outcome.code not in ALLOWED:
        return f"{call.name} answered {outcome.code.name}: {outcome.details[:500]!r}"
    if not outcome.details.strip():
        return f"{call.name} answered {outcome.code.name} with an empty message"
    if any(s in outcome.details for s in TRANSPORT_FAILURES):
        return f"{call.name} broke in transport ({outcome.code.name}): {outcome.details[:500]!r}"
    return None


def seed_collections(target: str) -> None:
    """Collections with declared metadata fields, so filters reach the compiler and Milvus."""
    from hybridsearch.engine.client import HybridSearchClient

    with HybridSearchClient(target, tenant=TENANT) as client:
        existing = {c.name for c in client.list_collections()}
        for name, profile in ((SEED_COLLECTION, PROFILES[0]), (SEED_BM25_COLLECTION, PROFILES[1])):
            if name not in existing:
                client.create_collection(name, profile, metadata_fields=SEED_FIELDS)
            client.upsert(name, SEED_DOCS)


def check_still_serving(target: str) -> None:
    """A good Search answers with hits from the seed collection, and health is SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.HybridSearchStub(channel)
        # Fuzzed writes and deletes may have changed the fuzz tenant's documents; a
        # tenant of its own still has exactly the seed ones.
        from hybridsearch.engine.client import document_message

        md = [("x-tenant", "fuzz-check")]
        stub.Upsert(
            pb.UpsertRequest(collection=SEED_COLLECTION, documents=[document_message(d) for d in SEED_DOCS]),
            metadata=md,
            timeout=60,
        )
        reply = stub.Search(
            pb.SearchRequest(
                collection=SEED_COLLECTION,
                query="protein cancer",
                top_k=3,
                filter=pb.Filter(
                    clauses=[
                        pb.FilterClause(field="year", op=pb.FilterClause.GTE, value=pb.MetadataValue(int_value=2000))
                    ]
                ),
            ),
            metadata=md,
            timeout=60,
        )
        assert reply.hits, "a good Search after fuzzing found nothing"
        assert {h.id for h in reply.hits} <= {"s1", "s2", "s3"}
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def run_seed() -> int:
    text = os.environ.get("HSEARCH_FUZZ_SEED")
    return int(text) if text else random.SystemRandom().getrandbits(32)
