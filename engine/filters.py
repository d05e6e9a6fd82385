"""Structured filters compiled to Milvus boolean expressions.

Callers never send expression text. Each clause names a declared metadata field,
an operator and typed values; the compiler checks them against the collection's
declared fields, writes every value as a literal it escapes itself, and always
puts the tenant clause first, ANDed with the caller's clauses in parentheses,
so no clause can widen the tenant scope.

A document without the field never matches a clause on it, whatever the operator
(as NULL in SQL): NE and NOT_IN carry an explicit presence test, because Milvus
answers `NOT IN` true for a missing value (nullable column or JSON key alike).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from hybridsearch.engine.collections import CollectionSpec, FieldType, column_of
from hybridsearch.engine.errors import invalid
from hybridsearch.engine.tenancy import TENANT_NAME

Value = str | int | float | bool

COMPARISONS = {"EQ": "==", "NE": "!=", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
SET_OPERATORS = {"IN": "in", "NOT_IN": "not in"}
OPERATORS = tuple(COMPARISONS) + tuple(SET_OPERATORS)
# Operators Milvus answers true for a missing value: they also test for presence.
NEGATIONS = ("NE", "NOT_IN")
# Milvus's expression grammar rejects \u escapes and raw control characters in
# string literals; we reject them up front rather than guess an encoding.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Native Milvus Lite 2.5's parser reads "\\n" and "\\t" as the letters n and t, takes a
# backslash + raw line feed for a line feed and a raw tab for a tab, and has no way at
# all to write a carriage return (measured: tests/api/test_tenancy.py hostile strings).
_NATIVE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\\n", "\t": "\t"}


@dataclass(frozen=True)
class FilterClause:
    field: str
    op: str
    values: tuple[Value, ...]


def string_literal(value: str, where: str, dialect: str = "escaped") -> str:
    """``value`` as a Milvus string literal; ``dialect`` "native-lite" for native Milvus Lite 2.5."""
    if _CONTROL.search(value):
        raise invalid(where, "string values must not contain control characters")
    if dialect == "native-lite":
        if "\r" in value:
            raise invalid(
                where,
                "string values with a carriage return cannot be filtered on by this Milvus (native Milvus Lite 2.5)",
            )
        return '"' + "".join(_NATIVE_ESCAPES.get(ch, ch) for ch in value) + '"'
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def _literal(value: Value, kind: FieldType, where: str, dialect: str) -> str:
    # bool is an int subclass in Python: check it first so True is never an INT.
    if kind is FieldType.BOOL:
        if not isinstance(value, bool):
            raise invalid(where, f"field is bool; got {type(value).__name__} value")
        return "true" if value else "false"
    if kind is FieldType.STRING:
        if not isinstance(value, str):
            raise invalid(where, f"field is string; got {type(value).__name__} value")
        return string_literal(value, where, dialect)
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


# JSON layout: a comparison that every present value of the declared type satisfies,
# i.e. a presence test (Milvus Lite 2.5 has no `exists` on JSON keys).
_JSON_PRESENT = {
    FieldType.INT: ">= -9223372036854775808",
    FieldType.DOUBLE: ">= -1.7976931348623157e+308",
    FieldType.STRING: '>= ""',
    FieldType.BOOL: "in [true, false]",
}


def field_ref(spec: CollectionSpec, name: str) -> str:
    """How an expression names a declared field in this collection's layout."""
    if spec.json_metadata:
        return f"metadata[{string_literal(name, 'field')}]"
    return column_of(name)


def _presence(spec: CollectionSpec, ref: str, kind: FieldType) -> str:
    return f"{ref} {_JSON_PRESENT[kind]}" if spec.json_metadata else f"{ref} is not null"


def compile_filter(
    spec: CollectionSpec,
    tenant: str,
    clauses: Sequence[FilterClause],
    *,
    max_clauses: int,
    max_values: int,
    dialect: str = "escaped",
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
            raise invalid(
                f"{where}.field", f"unknown field {clause.field[:80]!r}; filterable fields of {spec.name!r}: {allowed}"
            )
        column = field_ref(spec, clause.field)
        if clause.op in COMPARISONS:
            if len(clause.values) != 1:
                raise invalid(f"{where}.value", f"operator {clause.op} takes exactly one value")
            if kind is FieldType.BOOL and clause.op not in ("EQ", "NE"):
                raise invalid(f"{where}.op", f"bool fields allow EQ and NE only, not {clause.op}")
            part = f"{column} {COMPARISONS[clause.op]} {_literal(clause.values[0], kind, where + '.value', dialect)}"
        elif clause.op in SET_OPERATORS:
            if not clause.values:
                raise invalid(f"{where}.values", f"operator {clause.op} needs at least one value")
            if len(clause.values) > max_values:
                raise invalid(f"{where}.values", f"{len(clause.values)} values; at most {max_values} allowed")
            items = ", ".join(_literal(v, kind, f"{where}.values[{j}]", dialect) for j, v in enumerate(clause.values))
            part = f"{column} {SET_OPERATORS[clause.op]} [{items}]"
        else:
            raise invalid(f"{where}.op", f"unknown operator {clause.op!r}; allowed: {', '.join(OPERATORS)}")
        parts.append(f"({part} and {_presence(spec, column, kind)})" if clause.op in NEGATIONS else part)
    scope = f'tenant == "{tenant}"'
    if not parts:
        return scope
    return scope + " and (" + " and ".join(parts) + ")"
