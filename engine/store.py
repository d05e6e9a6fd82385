"""The Milvus store: one collection per corpus, tenants separated by a tenant column
(the partition key where the engine filters on one correctly).

Works the same on Milvus Lite (a local ``.db`` path) and on Milvus standalone or
distributed (``http://host:19530``). Every read takes a compiled expression that
starts with the tenant clause; every write takes tenant-prefixed primary keys.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient
from pymilvus.exceptions import MilvusException

from hybridsearch.engine.collections import CollectionSpec, FieldType, column_of
from hybridsearch.engine.config import MilvusConfig
from hybridsearch.engine.errors import ServiceError, failed_precondition, invalid, not_found, unavailable
from hybridsearch.engine.filters import string_literal

log = logging.getLogger(__name__)
# milvus-lite 2.5.1 imports pkg_resources (hence setuptools<81 in pyproject.toml), which
# warns on every start; the pin is deliberate, the warning is noise.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


class _NoLiteVersionError(logging.Filter):
    """Drops pymilvus's ERROR record, with a traceback, for GetVersion answered UNIMPLEMENTED.

    Native Milvus Lite 2.5 does not implement GetVersion. pymilvus asks for it as a health
    probe and :attr:`MilvusStore.engine` asks to tell Lite from a server; both handle the
    answer, yet pymilvus logs each one as an error with a 30-line traceback, which reads as a
    failure at the top of every ``hsearch demo``. Any other RPC error is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("[get_server_version]" in message and "UNIMPLEMENTED" in message)


logging.getLogger("pymilvus.decorators").addFilter(_NoLiteVersionError())

SPEC_PROPERTY = "hsearch.spec"
# The spec is also written into the schema's description: native Milvus Lite 2.5 drops
# collection properties (and cannot alter them) but keeps the description; Milvus Lite 3.x
# keeps properties and drops the description. A server keeps both.
SPEC_DESCRIPTION_PREFIX = SPEC_PROPERTY + ":"
# Another replica may drop or re-create a collection: a cached spec is checked against Milvus
# (exists, same collection id) when it is older than this.
SPEC_CACHE_S = 2.0
# Milvus rejects empty sparse vectors. A document with no sparse terms (say, only
# stop words) gets this one placeholder dimension, which no query vector ever
# holds (BGE-M3 token ids and BM25 hashes are both below 2**31).
EMPTY_SPARSE = {2**31: 1e-6}
_SCALAR_TYPES = {
    FieldType.STRING: (DataType.VARCHAR, {"max_length": 4096}),
    FieldType.INT: (DataType.INT64, {}),
    FieldType.DOUBLE: (DataType.DOUBLE, {}),
    FieldType.BOOL: (DataType.BOOL, {}),
}
BASE_OUTPUT = ["pk", "text", "metadata"]


@dataclass(frozen=True)
class StoredDoc:
    pk: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RouteHit:
    pk: str
    score: float
    doc: StoredDoc | None  # None when the search asked for ids and scores only


def _forget_dead_lite_engine(uri: str) -> None:
    """Native Milvus Lite runs its engine as a child process that pymilvus starts once per
    file and then reuses: if that process died (killed, crashed), pymilvus would hand out
    its dead socket forever. Release it so the next connection starts a fresh engine on
    the same file, which replays what was written. A live engine is left alone."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # Milvus Lite 3.x, or no Milvus Lite at all
        return
    path = str(Path(uri).absolute().resolve())
    server = server_manager_instance._servers.get(path)
    process = getattr(server, "_p", None)  # milvus_lite.server.Server's subprocess
    if process is not None and process.poll() is not None:
        log.warning("the Milvus Lite engine for %s exited with %s; starting a new one", uri, process.returncode)
        server_manager_instance.release_server(path)


def _installed_lite() -> str:
    try:
        return metadata.version("milvus-lite")
    except metadata.PackageNotFoundError:
        return ""


def _is_connection_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        s in text for s in ("unavailable", "connect", "timeout", "deadline", "closed", "open local milvus failed")
    )


class MilvusStore:
    """Thin, typed access to Milvus for the search pipeline."""

    def __init__(self, uri: str, config: MilvusConfig):
        self.uri = uri
        self.config = config
        # name -> (checked at, Milvus collection id, spec); see SPEC_CACHE_S.
        self._specs: dict[str, tuple[float, object, CollectionSpec]] = {}
        self._specs_lock = threading.Lock()
        self._client: MilvusClient | None = None
        self._client_lock = threading.Lock()
        self._engine: str | None = None

    # ------------------------------------------------------------ connection
    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))

    @property
    def engine(self) -> str:
        """Which Milvus answers: "lite-native" (milvus-lite 2.5, C++), "lite-python"
        (milvus-lite 3.x) or "server". Native Lite does not implement GetVersion."""
        if self._engine is None:
            try:
                version = str(self._call("get_server_version", "get_server_version"))
            except ServiceError:
                raise
            except Exception as exc:
                if "unimplemented" not in str(exc).lower():
                    raise unavailable(f"Milvus at {self.uri} did not say its version: {exc}") from exc
                version = "lite-native"
            self._engine = (
                version
                if version == "lite-native"
                else ("lite-python" if version.startswith("milvus_lite") else "server")
            )
        return self._engine

    @property
    def literal_dialect(self) -> str:
        """How this engine's expression parser reads string literals (engine.filters)."""
        return "native-lite" if self.engine == "lite-native" else "escaped"

    @property
    def layout(self) -> str:
        """The schema layout for a new collection (see CollectionSpec.layout)."""
        if self.config.schema_layout != "auto":
            return self.config.schema_layout
        return "json" if self.engine == "lite-native" else "typed"

    def connect(self) -> MilvusClient:
        with self._client_lock:
            if self._client is None:
                if self.is_lite:
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                    installed = _installed_lite()
                    if Path(self.uri).is_dir() and installed.startswith("2."):
                        # Milvus Lite 3.x keeps a store as a directory; native 2.5 cannot open it.
                        raise unavailable(
                            f"{self.uri} is a Milvus Lite 3.x store, which the installed milvus-lite {installed} "
                            "cannot open: point data_dir (or milvus.uri) at a new location and ingest again, "
                            "or install milvus-lite 3.x (pip install 'milvus-lite>=3,<4') to keep serving it"
                        )
                kwargs: dict[str, Any] = {"uri": self.uri, "timeout": self.config.timeout_s}
                if self.config.token:
                    kwargs["token"] = self.config.token
                if self.config.db_name:
                    kwargs["db_name"] = self.config.db_name
                try:
                    self._client = MilvusClient(**kwargs)
                except Exception as exc:  # pymilvus raises several types here
                    raise unavailable(f"cannot connect to Milvus at {self.uri}: {exc}") from exc
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None

    def _drop_client(self) -> None:
        """Forget a client whose connection failed; the next call connects afresh.
        (A pymilvus client does not always recover by itself after Milvus restarts.)"""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        if self.is_lite:
            _forget_dead_lite_engine(self.uri)

    def _call(self, what: str, fn, *args, **kwargs):
        """Run one Milvus call, mapping its failures to gRPC-facing errors."""
        client = self.connect()
        try:
            return getattr(client, fn)(*args, **kwargs)
        except ServiceError:
            raise
        except Exception as exc:
            text = exc.message if isinstance(exc, MilvusException) else str(exc)
            if _is_connection_error(exc):
                self._drop_client()
                raise unavailable(f"Milvus at {self.uri} is unavailable ({what}): {text}") from exc
            lowered = text.lower()
            if args and ("not loaded" in lowered or "state 'released'" in lowered or "state 'loading'" in lowered):
                # Milvus restarted (or a Lite store was reopened): collections come back released,
                # or still loading when another call asked first; load_collection waits for the load.
                self._call("load_collection", "load_collection", args[0])
                return getattr(self.connect(), fn)(*args, **kwargs)
            raise

    def ping(self) -> bool:
        """Whether Milvus answers now."""
        try:
            self._call("ping", "list_collections")
            return True
        except ServiceError:
            return False

    # ------------------------------------------------------------ collections
    def create_collection(self, spec: CollectionSpec) -> None:
        client = self.connect()
        if spec.json_metadata and self.engine == "lite-python":
            # Measured: 3.2.2 refuses `in` / `not in` on a JSON path ("left side of 'in' must
            # be a field reference"), so IN / NOT_IN filters could not run there.
            raise failed_precondition(
                f"milvus.schema_layout 'json' cannot be filtered with IN / NOT_IN by the Milvus Lite 3.x at {self.uri}; "
                "set milvus.schema_layout to typed (or auto)"
            )
        schema = client.create_schema(
            auto_id=False, enable_dynamic_field=False, description=SPEC_DESCRIPTION_PREFIX + spec.to_json()
        )
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("tenant", DataType.VARCHAR, max_length=64, is_partition_key=not spec.json_metadata)
        milvus_bm25 = spec.sparse_kind == "milvus-bm25"
        if milvus_bm25:
            # Milvus analyses the text itself and a BM25 function fills the sparse field.
            schema.add_field(
                "text",
                DataType.VARCHAR,
                max_length=65535,
                enable_analyzer=True,
                analyzer_params=spec.milvus_bm25["analyzer_params"],
            )
        else:
            schema.add_field("text", DataType.VARCHAR, max_length=65535)
        # "typed": metadata keys the collection does not declare are kept here, unfilterable;
        # "json": all of them, declared keys filtered by JSON path.
        schema.add_field("metadata", DataType.JSON)
        for name, kind in ({} if spec.json_metadata else spec.metadata_fields).items():
            dtype, extra = _SCALAR_TYPES[kind]
            schema.add_field(column_of(name), dtype, nullable=True, **extra)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=spec.dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        if milvus_bm25:
            schema.add_function(
                Function(
                    name="text_bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=["text"],
                    output_field_names=["sparse"],
                )
            )
        index = client.prepare_index_params()
        index.add_index(
            "dense", index_type=spec.dense_index, metric_type=spec.dense_metric, params=self.dense_build_params(spec)
        )
        if milvus_bm25:
            # Nested under "params": pymilvus 3.0.2 flattens index params and Milvus Lite
            # then drops flat bm25_k1/bm25_b silently (its default k1 is 1.5); a server
            # reads the nested form too.
            bm25 = {"bm25_k1": spec.milvus_bm25["k1"], "bm25_b": spec.milvus_bm25["b"]}
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"params": bm25})
        else:
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        try:
            self._call(
                "create_collection",
                "create_collection",
                spec.name,
                schema=schema,
                index_params=index,
                properties={SPEC_PROPERTY: spec.to_json()},
            )
        except MilvusException as exc:
            refused = exc.message.lower()
            if "index type" in refused or "nullable" in refused or "partition key" in refused:
                # Native Milvus Lite creates the collection, then fails on its index: leave
                # no half-made collection behind for the next create to trip over. (Only
                # for these refusals: "already exists" may be another replica's collection.)
                try:
                    if client.has_collection(spec.name):
                        client.drop_collection(spec.name)
                except Exception:
                    log.warning("could not drop half-created collection %r", spec.name, exc_info=True)
            if "nullable" in refused or "partition key" in refused:
                raise failed_precondition(
                    f"milvus.schema_layout {spec.layout!r} needs nullable fields and a partition key, which the Milvus at "
                    f"{self.uri} refuses: {exc.message}; set milvus.schema_layout to json (or auto)"
                ) from exc
            if "index type" in refused:
                # An operator setting the engine cannot serve, not the caller's input.
                raise failed_precondition(
                    f"milvus.dense_index {spec.dense_index!r} is not supported by the Milvus at {self.uri}: {exc.message}; "
                    "set milvus.dense_index to one it supports (auto picks FLAT on Milvus Lite, HNSW on a server)"
                ) from exc
            raise
        with self._specs_lock:
            self._specs.pop(spec.name, None)  # read back (with its Milvus id) on first use

    def has_collection(self, name: str) -> bool:
        return bool(self._call("has_collection", "has_collection", name))

    def spec(self, name: str) -> CollectionSpec:
        """The spec of a collection made by this service; NOT_FOUND otherwise."""
        now = time.monotonic()
        with self._specs_lock:
            cached = self._specs.get(name)
        if cached is not None and now - cached[0] < SPEC_CACHE_S:
            return cached[2]
        if not self.has_collection(name):
            with self._specs_lock:
                self._specs.pop(name, None)
            raise not_found(f"collection {name!r} does not exist")
        described = self._call("describe_collection", "describe_collection", name)
        collection_id = described.get("collection_id")
        if cached is not None and collection_id and collection_id == cached[1]:  # Lite says 0 for every id
            with self._specs_lock:
                self._specs[name] = (now, collection_id, cached[2])
            return cached[2]
        text = (described.get("properties") or {}).get(SPEC_PROPERTY)
        description = described.get("description") or ""
        if not text and description.startswith(SPEC_DESCRIPTION_PREFIX):
            text = description[len(SPEC_DESCRIPTION_PREFIX) :]
        if not text:
            raise not_found(f"collection {name!r} exists in Milvus but was not created by this service")
        spec = CollectionSpec.from_json(name, text)
        # First use in this process: make sure the collection is loaded (a reopened
        # Lite store, or a restarted Milvus, has it released).
        self._call("load_collection", "load_collection", name)
        with self._specs_lock:
            self._specs[name] = (now, collection_id, spec)
        return spec

    def list_specs(self) -> list[CollectionSpec]:
        specs = []
        for name in sorted(self._call("list_collections", "list_collections")):
            try:
                specs.append(self.spec(name))
            except ServiceError:
                continue  # someone else's collection in the same Milvus
        return specs

    def drop_collection(self, name: str) -> None:
        self.spec(name)
        self._call("drop_collection", "drop_collection", name)
        with self._specs_lock:
            self._specs.pop(name, None)

    def warm(self, name: str) -> None:
        """Load the collection and touch both indexes so the first real query is not the slow one."""
        spec = self.spec(name)
        self._call("load_collection", "load_collection", name)
        probe_expr = 'tenant == "__warmup__"'
        self.search_dense(spec, np.ones(spec.dimension, dtype=np.float32), 1, probe_expr)
        self.search_sparse(spec, "warm up" if spec.sparse_kind == "milvus-bm25" else {1: 1.0}, 1, probe_expr)

    def count(self, name: str, tenant_expr: str) -> int:
        rows = self._call("count", "query", name, filter=tenant_expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    # ------------------------------------------------------------ documents
    def output_fields(self, spec: CollectionSpec) -> list[str]:
        if spec.json_metadata:
            return BASE_OUTPUT
        return BASE_OUTPUT + [column_of(n) for n in spec.metadata_fields]

    def to_doc(self, spec: CollectionSpec, entity: dict[str, Any], pk: str) -> StoredDoc:
        metadata = dict(entity.get("metadata") or {})
        for name in () if spec.json_metadata else spec.metadata_fields:
            value = entity.get(column_of(name))
            if value is not None:
                metadata[name] = value
        return StoredDoc(pk=pk, text=entity.get("text", ""), metadata=metadata)

    def get(self, spec: CollectionSpec, pks: Sequence[str], tenant_expr: str) -> dict[str, StoredDoc]:
        """Documents by primary key, restricted to the tenant expression."""
        if not pks:
            return {}
        rows = self._call(
            "query",
            "query",
            spec.name,
            filter=f"{tenant_expr} and pk in {self._string_list(pks)}",
            output_fields=self.output_fields(spec),
        )
        return {row["pk"]: self.to_doc(spec, row, row["pk"]) for row in rows}

    def check_writable_ids(self, ids: Sequence[str], field: str = "documents") -> None:
        """Native Milvus Lite 2.5 splices primary keys into its own SQL when it upserts or
        deletes: a key with a single quote fails there ("internal error", nothing written; the
        long fuzz run found it). Refused by name instead, before any work is done."""
        if self.engine != "lite-native":
            return
        for i, doc_id in enumerate(ids):
            if "'" in doc_id:
                raise invalid(
                    f"{field}[{i}].id",
                    f"{doc_id[:80]!r} contains a single quote ('), which native Milvus Lite 2.5 cannot upsert "
                    "or delete (its own SQL breaks on it); use another id, or a Milvus server (milvus.uri)",
                )

    def upsert(self, spec: CollectionSpec, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if spec.sparse_kind == "milvus-bm25":
                # A function's output field must be absent from the row (Milvus fills it).
                row.pop("sparse", None)
            elif not row["sparse"]:
                row["sparse"] = dict(EMPTY_SPARSE)
        try:
            self._call("upsert", "upsert", spec.name, rows)
        except MilvusException as exc:
            raise invalid("documents", f"Milvus rejected the batch: {exc.message}") from exc

    def delete(self, spec: CollectionSpec, pks: Sequence[str], tenant_expr: str) -> None:
        if pks:
            self._call("delete", "delete", spec.name, filter=f"{tenant_expr} and pk in {self._string_list(pks)}")

    def flush(self, spec: CollectionSpec) -> None:
        self._call("flush", "flush", spec.name)

    # ------------------------------------------------------------ search
    @property
    def dense_index(self) -> str:
        """The dense index type for a new collection (milvus.dense_index, "auto" resolved)."""
        if self.config.dense_index != "auto":
            return self.config.dense_index
        # By engine, not by URI: a milvus-lite server answers on http:// too.
        return "HNSW" if self.engine == "server" else "FLAT"

    def dense_build_params(self, spec: CollectionSpec) -> dict:
        """The dense index's build parameters as sent to Milvus. Nested under "params" for
        the same reason as BM25's: flat, Milvus Lite 3.x dropped M and efConstruction
        without a word (describe_index showed none); servers and native Lite read both."""
        build = {
            "HNSW": {"M": self.config.hnsw_m, "efConstruction": self.config.hnsw_ef_construction},
            "IVF_FLAT": {"nlist": self.config.ivf_nlist},
        }.get(spec.dense_index)
        return {"params": build} if build else {}

    def dense_search_params(self, spec: CollectionSpec, limit: int) -> dict:
        if spec.dense_index == "HNSW":
            return {"ef": max(self.config.hnsw_ef, limit)}
        if spec.dense_index == "IVF_FLAT":
            return {"nprobe": min(self.config.ivf_nprobe, self.config.ivf_nlist)}
        return {}

    def search_dense(
        self, spec: CollectionSpec, vector: np.ndarray, limit: int, expr: str, with_docs: bool = True
    ) -> list[RouteHit]:
        params = {"metric_type": spec.dense_metric, "params": self.dense_search_params(spec, limit)}
        result = self._call(
            "dense search",
            "search",
            spec.name,
            [vector.astype(np.float32, copy=False).tolist()],
            anns_field="dense",
            limit=limit,
            filter=expr,
            output_fields=self.output_fields(spec) if with_docs else ["pk"],
            search_params=params,
        )
        return self._hits(spec, result, with_docs=with_docs)

    def search_sparse(
        self, spec: CollectionSpec, vector: dict[int, float] | str, limit: int, expr: str, with_docs: bool = True
    ) -> list[RouteHit]:
        """``vector``: the query's sparse vector, or its text for a milvus-bm25 collection.
        ``with_docs`` False: ids and scores only (text and metadata fetched later for the few
        hits that are answered; see SearchService.search)."""
        milvus_bm25 = spec.sparse_kind == "milvus-bm25"
        if not (vector.strip() if isinstance(vector, str) else vector):
            return []
        try:
            result = self._call(
                "sparse search",
                "search",
                spec.name,
                [vector],
                anns_field="sparse",
                limit=limit,
                filter=expr,
                output_fields=self.output_fields(spec) if with_docs else ["pk"],
                search_params={"metric_type": "BM25" if milvus_bm25 else "IP", "params": {}},
            )
        except MilvusException as exc:
            # Native Milvus Lite 2.5 scores BM25 against an empty collection with a zero
            # average length and refuses its own NaN query weights. No rows, no hits.
            if milvus_bm25 and "nan or inf" in exc.message.lower() and self.count(spec.name, "") == 0:
                return []
            raise
        # Milvus Lite 3.x answers BM25 as a distance (-score); a server as the score. BM25
        # is never negative, so the magnitude is the score on either.
        return self._hits(spec, result, score=abs if milvus_bm25 else float, with_docs=with_docs)

    def _hits(self, spec: CollectionSpec, result, score=float, with_docs: bool = True) -> list[RouteHit]:
        hits = []
        seen: set[str] = set()
        for hit in result[0]:
            pk = hit["pk"] if "pk" in hit else hit["id"]
            # Milvus Lite can hold a stale copy of rows whose write was cut by a crash
            # until they are written again; keep the best-scored copy only.
            if pk in seen:
                continue
            seen.add(pk)
            doc = self.to_doc(spec, hit["entity"], pk) if with_docs else None
            hits.append(RouteHit(pk=pk, score=float(score(hit["distance"])), doc=doc))
        return hits

    def _string_list(self, values: Sequence[str]) -> str:
        return "[" + ", ".join(string_literal(v, "ids", self.literal_dialect) for v in values) + "]"
