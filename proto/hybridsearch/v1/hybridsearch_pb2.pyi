from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_TYPE_UNSPECIFIED: _ClassVar[FieldType]
    FIELD_TYPE_STRING: _ClassVar[FieldType]
    FIELD_TYPE_INT: _ClassVar[FieldType]
    FIELD_TYPE_DOUBLE: _ClassVar[FieldType]
    FIELD_TYPE_BOOL: _ClassVar[FieldType]

class FusionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_METHOD_UNSPECIFIED: _ClassVar[FusionMethod]
    RRF: _ClassVar[FusionMethod]
    WEIGHTED: _ClassVar[FusionMethod]
    DBSF: _ClassVar[FusionMethod]

class Normalizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NORMALIZER_UNSPECIFIED: _ClassVar[Normalizer]
    MIN_MAX: _ClassVar[Normalizer]
    Z_SCORE: _ClassVar[Normalizer]
    ARCTAN: _ClassVar[Normalizer]
    NONE: _ClassVar[Normalizer]

class RerankMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RERANK_MODE_UNSPECIFIED: _ClassVar[RerankMode]
    OFF: _ClassVar[RerankMode]
    FIXED: _ClassVar[RerankMode]
    AUTO: _ClassVar[RerankMode]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    SEARCH: _ClassVar[Role]
    WRITE: _ClassVar[Role]
    ADMIN: _ClassVar[Role]
    TENANT_ADMIN: _ClassVar[Role]
    OPERATOR: _ClassVar[Role]
FIELD_TYPE_UNSPECIFIED: FieldType
FIELD_TYPE_STRING: FieldType
FIELD_TYPE_INT: FieldType
FIELD_TYPE_DOUBLE: FieldType
FIELD_TYPE_BOOL: FieldType
FUSION_METHOD_UNSPECIFIED: FusionMethod
RRF: FusionMethod
WEIGHTED: FusionMethod
DBSF: FusionMethod
NORMALIZER_UNSPECIFIED: Normalizer
MIN_MAX: Normalizer
Z_SCORE: Normalizer
ARCTAN: Normalizer
NONE: Normalizer
RERANK_MODE_UNSPECIFIED: RerankMode
OFF: RerankMode
FIXED: RerankMode
AUTO: RerankMode
ROLE_UNSPECIFIED: Role
SEARCH: Role
WRITE: Role
ADMIN: Role
TENANT_ADMIN: Role
OPERATOR: Role

class MetadataValue(_message.Message):
    __slots__ = ("string_value", "int_value", "double_value", "bool_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    double_value: float
    bool_value: bool
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ...) -> None: ...

class MetadataField(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: FieldType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[FieldType, str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("tokens", "truncated_documents", "encoded_texts", "queue_ms", "encode_ms", "rerank_ms", "total_ms", "chunks", "truncated_texts")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    ENCODED_TEXTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    RERANK_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_TEXTS_FIELD_NUMBER: _ClassVar[int]
    tokens: int
    truncated_documents: int
    encoded_texts: int
    queue_ms: float
    encode_ms: float
    rerank_ms: float
    total_ms: float
    chunks: int
    truncated_texts: int
    def __init__(self, tokens: _Optional[int] = ..., truncated_documents: _Optional[int] = ..., encoded_texts: _Optional[int] = ..., queue_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., rerank_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., chunks: _Optional[int] = ..., truncated_texts: _Optional[int] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "profile", "dimension", "dense_metric", "metadata_fields", "tenant_document_count", "sparse_kind", "sparse_analyzer")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DENSE_METRIC_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    TENANT_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPARSE_KIND_FIELD_NUMBER: _ClassVar[int]
    SPARSE_ANALYZER_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: str
    dimension: int
    dense_metric: str
    metadata_fields: _containers.RepeatedCompositeFieldContainer[MetadataField]
    tenant_document_count: int
    sparse_kind: str
    sparse_analyzer: str
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[str] = ..., dimension: _Optional[int] = ..., dense_metric: _Optional[str] = ..., metadata_fields: _Optional[_Iterable[_Union[MetadataField, _Mapping]]] = ..., tenant_document_count: _Optional[int] = ..., sparse_kind: _Optional[str] = ..., sparse_analyzer: _Optional[str] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "profile", "dimension", "dense_metric", "metadata_fields")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DENSE_METRIC_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: str
    dimension: int
    dense_metric: str
    metadata_fields: _containers.RepeatedCompositeFieldContainer[MetadataField]
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[str] = ..., dimension: _Optional[int] = ..., dense_metric: _Optional[str] = ..., metadata_fields: _Optional[_Iterable[_Union[MetadataField, _Mapping]]] = ...) -> None: ...

class DescribeCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: bool
    def __init__(self, dropped: _Optional[bool] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "text", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MetadataValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MetadataValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    metadata: _containers.MessageMap[str, MetadataValue]
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, MetadataValue]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "documents")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, collection: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "batches", "elapsed_ms", "usage")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    batches: int
    elapsed_ms: float
    usage: Usage
    def __init__(self, upserted: _Optional[int] = ..., batches: _Optional[int] = ..., elapsed_ms: _Optional[float] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class UpsertAck(_message.Message):
    __slots__ = ("batch", "upserted", "total", "elapsed_ms", "usage")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    batch: int
    upserted: int
    total: int
    elapsed_ms: float
    usage: Usage
    def __init__(self, batch: _Optional[int] = ..., upserted: _Optional[int] = ..., total: _Optional[int] = ..., elapsed_ms: _Optional[float] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "usage")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    usage: Usage
    def __init__(self, deleted: _Optional[int] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("documents", "usage")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    usage: Usage
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class FilterClause(_message.Message):
    __slots__ = ("field", "op", "value", "values")
    class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATOR_UNSPECIFIED: _ClassVar[FilterClause.Operator]
        EQ: _ClassVar[FilterClause.Operator]
        NE: _ClassVar[FilterClause.Operator]
        GT: _ClassVar[FilterClause.Operator]
        GTE: _ClassVar[FilterClause.Operator]
        LT: _ClassVar[FilterClause.Operator]
        LTE: _ClassVar[FilterClause.Operator]
        IN: _ClassVar[FilterClause.Operator]
        NOT_IN: _ClassVar[FilterClause.Operator]
    OPERATOR_UNSPECIFIED: FilterClause.Operator
    EQ: FilterClause.Operator
    NE: FilterClause.Operator
    GT: FilterClause.Operator
    GTE: FilterClause.Operator
    LT: FilterClause.Operator
    LTE: FilterClause.Operator
    IN: FilterClause.Operator
    NOT_IN: FilterClause.Operator
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: FilterClause.Operator
    value: MetadataValue
    values: _containers.RepeatedCompositeFieldContainer[MetadataValue]
    def __init__(self, field: _Optional[str] = ..., op: _Optional[_Union[FilterClause.Operator, str]] = ..., value: _Optional[_Union[MetadataValue, _Mapping]] = ..., values: _Optional[_Iterable[_Union[MetadataValue, _Mapping]]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("clauses",)
    CLAUSES_FIELD_NUMBER: _ClassVar[int]
    clauses: _containers.RepeatedCompositeFieldContainer[FilterClause]
    def __init__(self, clauses: _Optional[_Iterable[_Union[FilterClause, _Mapping]]] = ...) -> None: ...

class FusionSpec(_message.Message):
    __slots__ = ("method", "rrf_k", "dense_weight", "sparse_weight", "normalizer")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    DENSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SPARSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NORMALIZER_FIELD_NUMBER: _ClassVar[int]
    method: FusionMethod
    rrf_k: float
    dense_weight: float
    sparse_weight: float
    normalizer: Normalizer
    def __init__(self, method: _Optional[_Union[FusionMethod, str]] = ..., rrf_k: _Optional[float] = ..., dense_weight: _Optional[float] = ..., sparse_weight: _Optional[float] = ..., normalizer: _Optional[_Union[Normalizer, str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "query", "top_k", "filter", "dense_k", "sparse_k", "fusion", "explain", "rerank_mode", "rerank_depth")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DENSE_K_FIELD_NUMBER: _ClassVar[int]
    SPARSE_K_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    RERANK_MODE_FIELD_NUMBER: _ClassVar[int]
    RERANK_DEPTH_FIELD_NUMBER: _ClassVar[int]
    collection: str
    query: str
    top_k: int
    filter: Filter
    dense_k: int
    sparse_k: int
    fusion: FusionSpec
    explain: bool
    rerank_mode: RerankMode
    rerank_depth: int
    def __init__(self, collection: _Optional[str] = ..., query: _Optional[str] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., dense_k: _Optional[int] = ..., sparse_k: _Optional[int] = ..., fusion: _Optional[_Union[FusionSpec, _Mapping]] = ..., explain: _Optional[bool] = ..., rerank_mode: _Optional[_Union[RerankMode, str]] = ..., rerank_depth: _Optional[int] = ...) -> None: ...

class RouteScore(_message.Message):
    __slots__ = ("raw_score", "normalized_score", "rank")
    RAW_SCORE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    raw_score: float
    normalized_score: float
    rank: int
    def __init__(self, raw_score: _Optional[float] = ..., normalized_score: _Optional[float] = ..., rank: _Optional[int] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "text", "metadata", "score", "fused_score", "fused_rank", "dense", "sparse", "reranked", "rerank_score", "explanation", "text_truncated")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MetadataValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MetadataValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FUSED_SCORE_FIELD_NUMBER: _ClassVar[int]
    FUSED_RANK_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    SPARSE_FIELD_NUMBER: _ClassVar[int]
    RERANKED_FIELD_NUMBER: _ClassVar[int]
    RERANK_SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    TEXT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    metadata: _containers.MessageMap[str, MetadataValue]
    score: float
    fused_score: float
    fused_rank: int
    dense: RouteScore
    sparse: RouteScore
    reranked: bool
    rerank_score: float
    explanation: str
    text_truncated: bool
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, MetadataValue]] = ..., score: _Optional[float] = ..., fused_score: _Optional[float] = ..., fused_rank: _Optional[int] = ..., dense: _Optional[_Union[RouteScore, _Mapping]] = ..., sparse: _Optional[_Union[RouteScore, _Mapping]] = ..., reranked: _Optional[bool] = ..., rerank_score: _Optional[float] = ..., explanation: _Optional[str] = ..., text_truncated: _Optional[bool] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("encode_ms", "dense_search_ms", "sparse_search_ms", "fusion_ms", "rerank_ms", "total_ms", "query_cache_hit", "fetch_ms", "hits_ms")
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    DENSE_SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    SPARSE_SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    FUSION_MS_FIELD_NUMBER: _ClassVar[int]
    RERANK_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    FETCH_MS_FIELD_NUMBER: _ClassVar[int]
    HITS_MS_FIELD_NUMBER: _ClassVar[int]
    encode_ms: float
    dense_search_ms: float
    sparse_search_ms: float
    fusion_ms: float
    rerank_ms: float
    total_ms: float
    query_cache_hit: bool
    fetch_ms: float
    hits_ms: float
    def __init__(self, encode_ms: _Optional[float] = ..., dense_search_ms: _Optional[float] = ..., sparse_search_ms: _Optional[float] = ..., fusion_ms: _Optional[float] = ..., rerank_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., query_cache_hit: _Optional[bool] = ..., fetch_ms: _Optional[float] = ..., hits_ms: _Optional[float] = ...) -> None: ...

class RerankDecision(_message.Message):
    __slots__ = ("mode", "depth_chosen", "reason", "predicted_ms", "actual_ms", "cost_units", "cost_money", "budget_left_units", "partial", "depth_scored", "degraded", "degraded_reason", "backend", "chunks_scored", "plan")
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_CHOSEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_MS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_MS_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    COST_MONEY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_UNITS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_SCORED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_SCORED_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    mode: RerankMode
    depth_chosen: int
    reason: str
    predicted_ms: float
    actual_ms: float
    cost_units: int
    cost_money: float
    budget_left_units: float
    partial: bool
    depth_scored: int
    degraded: bool
    degraded_reason: str
    backend: str
    chunks_scored: int
    plan: str
    def __init__(self, mode: _Optional[_Union[RerankMode, str]] = ..., depth_chosen: _Optional[int] = ..., reason: _Optional[str] = ..., predicted_ms: _Optional[float] = ..., actual_ms: _Optional[float] = ..., cost_units: _Optional[int] = ..., cost_money: _Optional[float] = ..., budget_left_units: _Optional[float] = ..., partial: _Optional[bool] = ..., depth_scored: _Optional[int] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., backend: _Optional[str] = ..., chunks_scored: _Optional[int] = ..., plan: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "timings", "rerank", "dense_candidates", "sparse_candidates", "usage")
    HITS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    DENSE_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SPARSE_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    timings: StageTimings
    rerank: RerankDecision
    dense_candidates: int
    sparse_candidates: int
    usage: Usage
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., rerank: _Optional[_Union[RerankDecision, _Mapping]] = ..., dense_candidates: _Optional[int] = ..., sparse_candidates: _Optional[int] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("query", "documents", "top_n", "return_documents", "model")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    RETURN_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    query: str
    documents: _containers.RepeatedScalarFieldContainer[str]
    top_n: int
    return_documents: bool
    model: str
    def __init__(self, query: _Optional[str] = ..., documents: _Optional[_Iterable[str]] = ..., top_n: _Optional[int] = ..., return_documents: _Optional[bool] = ..., model: _Optional[str] = ...) -> None: ...

class RerankResult(_message.Message):
    __slots__ = ("index", "relevance_score", "raw_score", "document")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_SCORE_FIELD_NUMBER: _ClassVar[int]
    RAW_SCORE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    index: int
    relevance_score: float
    raw_score: float
    document: str
    def __init__(self, index: _Optional[int] = ..., relevance_score: _Optional[float] = ..., raw_score: _Optional[float] = ..., document: _Optional[str] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("results", "usage", "model", "elapsed_ms")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RerankResult]
    usage: Usage
    model: str
    elapsed_ms: float
    def __init__(self, results: _Optional[_Iterable[_Union[RerankResult, _Mapping]]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., model: _Optional[str] = ..., elapsed_ms: _Optional[float] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProfileInfo(_message.Message):
    __slots__ = ("name", "kind", "model", "max_length", "dimension", "sparse_kind", "sparse_analyzer", "analyzer", "loaded")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SPARSE_KIND_FIELD_NUMBER: _ClassVar[int]
    SPARSE_ANALYZER_FIELD_NUMBER: _ClassVar[int]
    ANALYZER_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    model: str
    max_length: int
    dimension: int
    sparse_kind: str
    sparse_analyzer: str
    analyzer: str
    loaded: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., model: _Optional[str] = ..., max_length: _Optional[int] = ..., dimension: _Optional[int] = ..., sparse_kind: _Optional[str] = ..., sparse_analyzer: _Optional[str] = ..., analyzer: _Optional[str] = ..., loaded: _Optional[bool] = ...) -> None: ...

class RerankBackendInfo(_message.Message):
    __slots__ = ("name", "kind", "model", "max_length", "serving", "status", "price_per_million_tokens", "long_documents", "max_chunks", "chunk_overlap", "chunk_aggregate", "exit_layers", "cascade_keep", "cascade_screen_weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_MILLION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LONG_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CHUNK_AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_LAYERS_FIELD_NUMBER: _ClassVar[int]
    CASCADE_KEEP_FIELD_NUMBER: _ClassVar[int]
    CASCADE_SCREEN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    model: str
    max_length: int
    serving: bool
    status: str
    price_per_million_tokens: float
    long_documents: str
    max_chunks: int
    chunk_overlap: int
    chunk_aggregate: str
    exit_layers: _containers.RepeatedScalarFieldContainer[int]
    cascade_keep: int
    cascade_screen_weight: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., model: _Optional[str] = ..., max_length: _Optional[int] = ..., serving: _Optional[bool] = ..., status: _Optional[str] = ..., price_per_million_tokens: _Optional[float] = ..., long_documents: _Optional[str] = ..., max_chunks: _Optional[int] = ..., chunk_overlap: _Optional[int] = ..., chunk_aggregate: _Optional[str] = ..., exit_layers: _Optional[_Iterable[int]] = ..., cascade_keep: _Optional[int] = ..., cascade_screen_weight: _Optional[float] = ...) -> None: ...

class LimitsInfo(_message.Message):
    __slots__ = ("max_top_k", "max_depth", "default_depth", "max_query_chars", "max_batch_docs", "max_text_bytes", "max_id_chars", "max_metadata_keys", "max_metadata_bytes", "max_metadata_value_bytes", "max_filter_clauses", "max_filter_values", "max_rerank_documents", "max_message_bytes", "max_concurrent")
    MAX_TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERY_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DOCS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ID_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_METADATA_KEYS_FIELD_NUMBER: _ClassVar[int]
    MAX_METADATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_METADATA_VALUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILTER_CLAUSES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILTER_VALUES_FIELD_NUMBER: _ClassVar[int]
    MAX_RERANK_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    max_top_k: int
    max_depth: int
    default_depth: int
    max_query_chars: int
    max_batch_docs: int
    max_text_bytes: int
    max_id_chars: int
    max_metadata_keys: int
    max_metadata_bytes: int
    max_metadata_value_bytes: int
    max_filter_clauses: int
    max_filter_values: int
    max_rerank_documents: int
    max_message_bytes: int
    max_concurrent: int
    def __init__(self, max_top_k: _Optional[int] = ..., max_depth: _Optional[int] = ..., default_depth: _Optional[int] = ..., max_query_chars: _Optional[int] = ..., max_batch_docs: _Optional[int] = ..., max_text_bytes: _Optional[int] = ..., max_id_chars: _Optional[int] = ..., max_metadata_keys: _Optional[int] = ..., max_metadata_bytes: _Optional[int] = ..., max_metadata_value_bytes: _Optional[int] = ..., max_filter_clauses: _Optional[int] = ..., max_filter_values: _Optional[int] = ..., max_rerank_documents: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_concurrent: _Optional[int] = ...) -> None: ...

class SearchDefaults(_message.Message):
    __slots__ = ("fusion_method", "rrf_k", "dense_weight", "sparse_weight", "normalizer", "candidate_depth", "rerank_mode")
    FUSION_METHOD_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    DENSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SPARSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NORMALIZER_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    RERANK_MODE_FIELD_NUMBER: _ClassVar[int]
    fusion_method: FusionMethod
    rrf_k: float
    dense_weight: float
    sparse_weight: float
    normalizer: Normalizer
    candidate_depth: int
    rerank_mode: RerankMode
    def __init__(self, fusion_method: _Optional[_Union[FusionMethod, str]] = ..., rrf_k: _Optional[float] = ..., dense_weight: _Optional[float] = ..., sparse_weight: _Optional[float] = ..., normalizer: _Optional[_Union[Normalizer, str]] = ..., candidate_depth: _Optional[int] = ..., rerank_mode: _Optional[_Union[RerankMode, str]] = ...) -> None: ...

class ServiceInfo(_message.Message):
    __slots__ = ("version", "api", "components", "store", "default_profile", "profiles", "default_rerank_backend", "rerank_backends", "limits", "defaults", "health_services", "tenant", "role", "budget")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROFILE_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RERANK_BACKEND_FIELD_NUMBER: _ClassVar[int]
    RERANK_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_SERVICES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    version: str
    api: str
    components: _containers.ScalarMap[str, str]
    store: str
    default_profile: str
    profiles: _containers.RepeatedCompositeFieldContainer[ProfileInfo]
    default_rerank_backend: str
    rerank_backends: _containers.RepeatedCompositeFieldContainer[RerankBackendInfo]
    limits: LimitsInfo
    defaults: SearchDefaults
    health_services: _containers.RepeatedScalarFieldContainer[str]
    tenant: str
    role: Role
    budget: RerankBudget
    def __init__(self, version: _Optional[str] = ..., api: _Optional[str] = ..., components: _Optional[_Mapping[str, str]] = ..., store: _Optional[str] = ..., default_profile: _Optional[str] = ..., profiles: _Optional[_Iterable[_Union[ProfileInfo, _Mapping]]] = ..., default_rerank_backend: _Optional[str] = ..., rerank_backends: _Optional[_Iterable[_Union[RerankBackendInfo, _Mapping]]] = ..., limits: _Optional[_Union[LimitsInfo, _Mapping]] = ..., defaults: _Optional[_Union[SearchDefaults, _Mapping]] = ..., health_services: _Optional[_Iterable[str]] = ..., tenant: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., budget: _Optional[_Union[RerankBudget, _Mapping]] = ...) -> None: ...

class RerankBudget(_message.Message):
    __slots__ = ("tenant", "latency_target_ms", "max_cost_per_query", "cost_per_minute", "min_depth", "max_depth", "default_mode")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_TARGET_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    COST_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    MIN_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    latency_target_ms: float
    max_cost_per_query: int
    cost_per_minute: float
    min_depth: int
    max_depth: int
    default_mode: RerankMode
    def __init__(self, tenant: _Optional[str] = ..., latency_target_ms: _Optional[float] = ..., max_cost_per_query: _Optional[int] = ..., cost_per_minute: _Optional[float] = ..., min_depth: _Optional[int] = ..., max_depth: _Optional[int] = ..., default_mode: _Optional[_Union[RerankMode, str]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: RerankBudget
    def __init__(self, budget: _Optional[_Union[RerankBudget, _Mapping]] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets", "default_budget")
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BUDGET_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[RerankBudget]
    default_budget: RerankBudget
    def __init__(self, budgets: _Optional[_Iterable[_Union[RerankBudget, _Mapping]]] = ..., default_budget: _Optional[_Union[RerankBudget, _Mapping]] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class DeleteBudgetResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("key_id", "tenant", "role", "description", "created_unix", "revoked")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    tenant: str
    role: Role
    description: str
    created_unix: float
    revoked: bool
    def __init__(self, key_id: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., description: _Optional[str] = ..., created_unix: _Optional[float] = ..., revoked: _Optional[bool] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("tenant", "role", "description")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    role: Role
    description: str
    def __init__(self, tenant: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., description: _Optional[str] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class RevokeApiKeyResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    def __init__(self, revoked: _Optional[bool] = ...) -> None: ...
