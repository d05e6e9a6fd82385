"""Collection specs: which embedding profile a collection uses and which metadata it can filter on."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum


class FieldType(str, Enum):
    STRING = "string"
    INT = "int"
    DOUBLE = "double"
    BOOL = "bool"


COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DENSE_METRICS = ("COSINE", "IP")
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

    def to_json(self) -> str:
        return json.dumps(
            {
                "profile": self.profile,
                "dimension": self.dimension,
                "dense_metric": self.dense_metric,
                "metadata_fields": {k: v.value for k, v in self.metadata_fields.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, name: str, text: str) -> "CollectionSpec":
        data = json.loads(text)
        return cls(
            name=name,
            profile=data["profile"],
            dimension=int(data["dimension"]),
            dense_metric=data["dense_metric"],
            metadata_fields={k: FieldType(v) for k, v in data["metadata_fields"].items()},
        )


def column_of(field_name: str) -> str:
    return FIELD_COLUMN_PREFIX + field_name
