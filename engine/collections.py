"""Collection specs: which embedding profile a collection uses and which metadata it can filter on."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hybridsearch.engine.errors import invalid


class FieldType(str, Enum):
    STRING = "string"
    INT = "int"
    DOUBLE = "double"
    BOOL = "bool"


COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DENSE_METRICS = ("COSINE", "IP")
# Collections made before the analyzer was persisted (spec without "sparse") that use a
# dense-bm25 profile were built by the standard English analyzer with BM25 k1 1.2, b 0.75:
# the only analyzer there was (`language` was never changed in a shipped config).
LEGACY_SPARSE_ANALYZER = (
    "service-bm25;k1=1.2;b=0.75;lang=english;stop=lucene;stem=snowball;len=1-64;re=\\w+(?:'\\w+)*;hash=crc32-utf8-31bit"
)
# Typed metadata fields become scalar columns named with this prefix, so a
# caller's field name can never collide with the service's own columns.
FIELD_COLUMN_PREFIX = "m_"


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    profile: str
    dimension: int
    dense_metric: str = "COSINE"
    metadata_fields: dict[str, FieldType] = field(default_factory=dict)
    # Filled in by the service from the profile at creation (see EmbeddingProfile).
    # How the sparse route's vectors come to be: "vector" = the service writes them (BGE-M3
    # lexical weights, service-computed BM25); "milvus-bm25" = a Milvus BM25 function
    # derives them from the text field.
    sparse_kind: str = "vector"
    # Everything that decides the sparse terms and weights (analyzer fingerprint, BM25
    # parameters; "" when the model alone decides, as for BGE-M3). A search or write
    # through a profile that analyses differently is refused.
    # None: a collection made before this was persisted (see LEGACY_SPARSE_ANALYZER).
    sparse_analyzer: str | None = ""
    # milvus-bm25 only: {"analyzer_params": <the Milvus text field's>, "k1": .., "b": ..}.
    milvus_bm25: dict = field(default_factory=dict)
    # The dense index type, chosen by the store at creation (milvus.dense_index); searches
    # pass that index's parameters. Collections made before it was recorded used HNSW.
    dense_index: str = "HNSW"
    # How tenants and declared metadata sit in Milvus, chosen by the store at creation
    # from what the engine supports (see MilvusStore.layout):
    #   "typed": tenant is the partition key, each declared field a nullable typed column;
    #   "json": tenant a plain column, declared fields inside the metadata JSON column,
    #           filtered by JSON path (native Milvus Lite 2.5 has neither nullable fields
    #           nor working filters on partition-key collections).
    # Collections made before it was recorded are "typed".
    layout: str = "typed"

    @property
    def json_metadata(self) -> bool:
        return self.layout == "json"

    def to_json(self) -> str:
        return json.dumps(
            {
                "profile": self.profile,
                "dimension": self.dimension,
                "dense_metric": self.dense_metric,
                "dense_index": self.dense_index,
                "layout": self.layout,
                "metadata_fields": {k: v.value for k, v in self.metadata_fields.items()},
                "sparse": {
                    "kind": self.sparse_kind,
                    "analyzer": self.sparse_analyzer,
                    "milvus_bm25": self.milvus_bm25,
                },
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, name: str, text: str) -> CollectionSpec:
        data = json.loads(text)
        sparse = data.get("sparse")
        if sparse is None:  # made before the analyzer was persisted
            sparse = {"kind": "vector", "analyzer": None}
        return cls(
            name=name,
            profile=data["profile"],
            dimension=int(data["dimension"]),
            dense_metric=data["dense_metric"],
            metadata_fields={k: FieldType(v) for k, v in data["metadata_fields"].items()},
            sparse_kind=sparse.get("kind", "vector"),
            sparse_analyzer=sparse.get("analyzer", ""),
            milvus_bm25=sparse.get("milvus_bm25", {}),
            dense_index=data.get("dense_index", "HNSW"),
            layout=data.get("layout", "typed"),
        )


def column_of(field_name: str) -> str:
    return FIELD_COLUMN_PREFIX + field_name


def check_metadata_types(spec: CollectionSpec, metadata: Mapping[str, Any], where: str) -> None:
    """Declared fields must carry values of their declared type."""
    for name, kind in spec.metadata_fields.items():
        if name not in metadata:
            continue
        value = metadata[name]
        ok = {
            FieldType.STRING: isinstance(value, str),
            FieldType.BOOL: isinstance(value, bool),
            FieldType.INT: isinstance(value, int) and not isinstance(value, bool),
            FieldType.DOUBLE: isinstance(value, (int, float)) and not isinstance(value, bool),
        }[kind]
        if not ok:
            raise invalid(f"{where}[{name!r}]", f"field is declared {kind.value}; got {type(value).__name__}")
        if kind is FieldType.STRING and len(value) > 4096:
            raise invalid(f"{where}[{name!r}]", f"string field values hold at most 4096 characters, got {len(value)}")
