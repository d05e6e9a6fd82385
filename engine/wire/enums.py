"""Protobuf enum values and their domain names, both ways, in one place."""

from __future__ import annotations

from hybridsearch.engine.collections import FieldType
from hybridsearch.engine.search_types import FusionSettings
from hybridsearch.v1 import hybridsearch_pb2 as pb

FIELD_TYPES = {
    pb.FIELD_TYPE_STRING: FieldType.STRING,
    pb.FIELD_TYPE_INT: FieldType.INT,
    pb.FIELD_TYPE_DOUBLE: FieldType.DOUBLE,
    pb.FIELD_TYPE_BOOL: FieldType.BOOL,
}
FIELD_TYPES_BACK = {v: k for k, v in FIELD_TYPES.items()}
FUSION_METHODS = {
    pb.FUSION_METHOD_UNSPECIFIED: FusionSettings.method,
    pb.RRF: "rrf",
    pb.WEIGHTED: "weighted",
    pb.DBSF: "dbsf",
}
NORMALIZERS = {
    pb.NORMALIZER_UNSPECIFIED: FusionSettings.normalizer,
    pb.MIN_MAX: "min_max",
    pb.Z_SCORE: "z_score",
    pb.ARCTAN: "arctan",
    pb.NONE: "none",
}
RERANK_MODES = {pb.RERANK_MODE_UNSPECIFIED: None, pb.OFF: "off", pb.FIXED: "fixed", pb.AUTO: "auto"}
RERANK_MODES_BACK = {"off": pb.OFF, "fixed": pb.FIXED, "auto": pb.AUTO}
# Roles: ADMIN is the deprecated name of TENANT_ADMIN (old admin keys became tenant admins).
ROLE_NAMES = {
    pb.SEARCH: "search",
    pb.WRITE: "write",
    pb.ADMIN: "tenant-admin",
    pb.TENANT_ADMIN: "tenant-admin",
    pb.OPERATOR: "operator",
}
ROLE_VALUES = {"search": pb.SEARCH, "write": pb.WRITE, "tenant-admin": pb.TENANT_ADMIN, "operator": pb.OPERATOR}
FUSION_METHODS_BACK = {"rrf": pb.RRF, "weighted": pb.WEIGHTED, "dbsf": pb.DBSF}
NORMALIZERS_BACK = {"min_max": pb.MIN_MAX, "z_score": pb.Z_SCORE, "arctan": pb.ARCTAN, "none": pb.NONE}
