"""Structured filters compiled to Milvus boolean expressions.

Callers never send expression text. Each clause names a declared metadata field,
an operator and typed values; the compiler checks them against the collection's
declared fields, writes every value as a literal it escapes itself, and always
puts the tenant clause first, ANDed with the caller's clauses in parentheses,
so no clause can widen the tenant scope.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence, Union

from engine.collections import CollectionSpec, FieldType, column_of
from engine.errors import invalid
from engine.tenancy import TENANT_NAME

Value = Union[str, int, float, bool]

COMPARISONS = {"EQ": "==", "NE": "!=", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
SET_OPERATORS = {"IN": "in", "NOT_IN": "not in"}
OPERATORS = tuple(COMPARISONS) + tuple(SET_OPERATORS)
# Milvus's expression grammar rejects \u escapes and raw control characters in
# string literals; we reject them up front rather than guess an encoding.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class FilterClause:
    field: str
    op: str
    values: tuple[Value, ...]


def string_literal(value: str, where: str) -> str:
    if _CONTROL.search(value):
        raise invalid(where, "string values must not contain control characters")
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def _literal(value: Value, kind: FieldType, where: str) -> str:
    # bool is an int subclass in Python: check it first so True is never an INT.
    if kind is FieldType.BOOL:
        if not isinstance(value, bool):
            raise invalid(where, f"field is bool; got {type(value).__name__} value")
        return "true" if value else "false"
    if kind is FieldType.STRING:
        if not isinstance(value, str):
            raise invalid(where, f"field is string; got {type(value).__name__} value")
        return string_literal(value, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(where, f"field is {kind.value}; got {type(value).__name__} value")
    if kind is FieldType.INT:
        if not isinstance(value, int):
            raise invalid(where, "field is int; got a double value")
        if not -(2**63) <= value < 2**63:
            raise invalid(where, "int value out of 64-bit range")
        return str(value)
    if not math.isfinite(value):
        raise invalid(where, "double value must be finite")
    return repr(float(value))


def compile_filter(
    spec: CollectionSpec,
    tenant: str,
    clauses: Sequence[FilterClause],
    *,
    max_clauses: int,
    max_values: int,
) -> str:
    """The Milvus expression for one tenant's view of a collection plus the caller's clauses."""
    if not TENANT_NAME.fullmatch(tenant):
        # Unreachable through the servicer (tenants are checked on the way in);
        # kept so the compiler is safe on its own.
        raise invalid("tenant", "invalid tenant name")
    if len(clauses) > max_clauses:
        raise invalid("filter.clauses", f"{len(clauses)} clauses; at most {max_clauses} allowed")
    parts = []
    for i, clause in enumerate(clauses):
        where = f"filter.clauses[{i}]"
        kind = spec.metadata_fields.get(clause.field)
        if kind is None:
            allowed = ", ".join(sorted(spec.metadata_fields)) or "none declared"
            raise invalid(f"{where}.field", f"unknown field {clause.field[:80]!r}; filterable fields of {spec.name!r}: {allowed}")
        column = column_of(clause.field)
        if clause.op in COMPARISONS:
            if len(clause.values) != 1:
                raise invalid(f"{where}.value", f"operator {clause.op} takes exactly one value")
            if kind is FieldType.BOOL and clause.op not in ("EQ", "NE"):
                raise invalid(f"{where}.op", f"bool fields allow EQ and NE only, not {clause.op}")
            parts.append(f"{column} {COMPARISONS[clause.op]} {_literal(clause.values[0], kind, where + '.value')}")
        elif clause.op in SET_OPERATORS:
            if not clause.values:
                raise invalid(f"{where}.values", f"operator {clause.op} needs at least one value")
            if len(clause.values) > max_values:
                raise invalid(f"{where}.values", f"{len(clause.values)} values; at most {max_values} allowed")
            items = ", ".join(_literal(v, kind, f"{where}.values[{j}]") for j, v in enumerate(clause.values))
            parts.append(f"{column} {SET_OPERATORS[clause.op]} [{items}]")
        else:
            raise invalid(f"{where}.op", f"unknown operator {clause.op!r}; allowed: {', '.join(OPERATORS)}")
    scope = f'tenant == "{tenant}"'
    if not parts:
        return scope
    return scope + " and (" + " and ".join(parts) + ")"
