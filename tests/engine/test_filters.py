"""compile_filter on its own: tenant scope first, caller clauses parenthesised, every value a typed, escaped literal."""

from __future__ import annotations

import grpc
import pytest

from hybridsearch.engine.collections import CollectionSpec, FieldType
from hybridsearch.engine.errors import ServiceError
from hybridsearch.engine.filters import FilterClause, compile_filter, string_literal

SPEC = CollectionSpec(
    name="docs",
    profile="tiny-m3",
    dimension=32,
    metadata_fields={
        "s": FieldType.STRING,
        "i": FieldType.INT,
        "d": FieldType.DOUBLE,
        "b": FieldType.BOOL,
        # a caller field may be called "tenant": it lives in its own column
        "tenant": FieldType.STRING,
    },
)
NO_FIELDS = CollectionSpec(name="bare", profile="tiny-m3", dimension=32)


def compile_(clauses, tenant="acme", spec=SPEC, max_clauses=8, max_values=4) -> str:
    return compile_filter(
        spec,
        tenant,
        [FilterClause(f, op, tuple(v)) for f, op, v in clauses],
        max_clauses=max_clauses,
        max_values=max_values,
    )


def rejected(clauses, **kwargs) -> str:
    """The INVALID_ARGUMENT message for clauses that must not compile."""
    with pytest.raises(ServiceError) as info:
        compile_(clauses, **kwargs)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.message


# ---------------------------------------------------------------- structure


def test_no_clauses_compile_to_the_tenant_clause_alone():
    assert compile_([]) == 'tenant == "acme"'


def test_tenant_clause_comes_first_and_caller_clauses_are_anded_in_parentheses():
    expr = compile_([("i", "GTE", [2015]), ("s", "EQ", ["x"]), ("b", "NE", [True])])
    assert expr == 'tenant == "acme" and (m_i >= 2015 and m_s == "x" and (m_b != true and m_b is not null))'


def test_each_comparison_operator_compiles_to_its_milvus_operator():
    ops = {"EQ": "==", "NE": "!=", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
    for op, symbol in ops.items():
        want = f"m_i {symbol} 7" if op != "NE" else "(m_i != 7 and m_i is not null)"
        assert compile_([("i", op, [7])]) == f'tenant == "acme" and ({want})'


def test_set_operators_compile_to_bracketed_literal_lists():
    assert compile_([("s", "IN", ["a", "b"])]) == 'tenant == "acme" and (m_s in ["a", "b"])'
    assert compile_([("i", "NOT_IN", [1, 2, 3])]) == 'tenant == "acme" and ((m_i not in [1, 2, 3] and m_i is not null))'


JSON_SPEC = CollectionSpec(
    name="docs", profile="tiny-m3", dimension=32, metadata_fields=SPEC.metadata_fields, layout="json"
)


def test_json_layout_names_declared_fields_by_escaped_json_path():
    expr = compile_([("i", "GTE", [2015]), ("s", "IN", ["a"]), ("tenant", "EQ", ["other"])], spec=JSON_SPEC)
    assert (
        expr
        == 'tenant == "acme" and (metadata["i"] >= 2015 and metadata["s"] in ["a"] and metadata["tenant"] == "other")'
    )


@pytest.mark.parametrize(
    "field, op, values, presence",
    [
        ("i", "NE", [1], 'metadata["i"] >= -9223372036854775808'),
        ("d", "NOT_IN", [1.5], 'metadata["d"] >= -1.7976931348623157e+308'),
        ("s", "NE", ["x"], 'metadata["s"] >= ""'),
        ("b", "NOT_IN", [True], 'metadata["b"] in [true, false]'),
    ],
)
def test_json_layout_negations_also_require_the_key_to_be_present(field, op, values, presence):
    # Milvus answers NOT IN / != true for a missing JSON key; a missing field must never match.
    expr = compile_([(field, op, values)], spec=JSON_SPEC)
    assert expr.endswith(f" and {presence}))")


def test_a_caller_field_named_tenant_is_a_prefixed_column_not_the_tenant_scope():
    expr = compile_([("tenant", "EQ", ["other"])])
    assert expr == 'tenant == "acme" and (m_tenant == "other")'


def test_an_or_injection_attempt_stays_inside_one_escaped_literal():
    hostile = '") or (tenant == "other'
    expr = compile_([("s", "EQ", [hostile])])
    assert expr == 'tenant == "acme" and (m_s == "\\") or (tenant == \\"other")'
    # exactly one unescaped quote pair around the value: the literal cannot be closed early
    body = expr.split("(m_s == ", 1)[1]
    assert body.replace("\\\\", "").replace('\\"', "").count('"') == 2


# ---------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    "value,literal",
    [
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("ends with \\", '"ends with \\\\"'),
        ('\\"', '"\\\\\\""'),  # a backslash then a quote: both escaped, in order
        ("two\nlines", '"two\\nlines"'),
        ("cr\rtab\t", '"cr\\rtab\\t"'),
        ("it's (fine) || or", '"it\'s (fine) || or"'),  # single quotes, parentheses and words pass verbatim
        ("ｆｕｌｌ ｗｉｄｔｈ and Cyrillic а", '"ｆｕｌｌ ｗｉｄｔｈ and Cyrillic а"'),
    ],
)
def test_string_literals_escape_quotes_backslashes_and_newlines(value, literal):
    assert string_literal(value, "v") == literal
    assert compile_([("s", "EQ", [value])]) == f'tenant == "acme" and (m_s == {literal})'


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
def test_control_characters_in_string_values_are_rejected_naming_the_value(char):
    message = rejected([("s", "EQ", [f"a{char}b"])])
    assert message.startswith("filter.clauses[0].value:") and "control characters" in message
    message = rejected([("i", "GT", [1]), ("s", "IN", ["ok", f"x{char}"])])
    assert message.startswith("filter.clauses[1].values[1]:") and "control characters" in message


# ---------------------------------------------------------------- fields and types


def test_unknown_field_error_names_the_field_and_lists_the_declared_ones():
    message = rejected([("nope", "EQ", [1])])
    assert message.startswith("filter.clauses[0].field:")
    assert "'nope'" in message and "b, d, i, s, tenant" in message


def test_unknown_field_on_a_collection_without_declared_fields_says_none_are_declared():
    assert "none declared" in rejected([("s", "EQ", ["x"])], spec=NO_FIELDS)


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("i", True, "field is int; got bool"),  # bool is an int subclass in Python, not an int here
        ("i", 1.5, "got a double value"),
        ("i", 2.0, "got a double value"),
        ("i", "7", "field is int; got str"),
        ("d", False, "field is double; got bool"),
        ("d", "1.5", "field is double; got str"),
        ("b", 1, "field is bool; got int"),
        ("b", "true", "field is bool; got str"),
        ("s", 5, "field is string; got int"),
        ("s", True, "field is string; got bool"),
        ("d", float("nan"), "finite"),
        ("d", float("inf"), "finite"),
        ("i", 2**63, "64-bit"),
        ("i", -(2**63) - 1, "64-bit"),
    ],
)
def test_values_of_the_wrong_type_are_rejected(field, value, expected):
    message = rejected([(field, "EQ", [value])])
    assert message.startswith("filter.clauses[0].value:") and expected in message


def test_ints_are_accepted_for_double_fields_as_doubles():
    assert compile_([("d", "GT", [3])]) == 'tenant == "acme" and (m_d > 3.0)'
    assert compile_([("i", "LTE", [-(2**63)])]) == f'tenant == "acme" and (m_i <= {-(2**63)})'


def test_bool_fields_allow_eq_and_ne_only():
    assert compile_([("b", "EQ", [False])]) == 'tenant == "acme" and (m_b == false)'
    for op in ("GT", "GTE", "LT", "LTE"):
        message = rejected([("b", op, [True])])
        assert message.startswith("filter.clauses[0].op:") and op in message


# ---------------------------------------------------------------- operators and limits


def test_unknown_operator_is_rejected_listing_the_allowed_ones():
    message = rejected([("s", "LIKE", ["x%"])])
    assert message.startswith("filter.clauses[0].op:") and "'LIKE'" in message
    assert "EQ" in message and "NOT_IN" in message


def test_comparison_with_other_than_one_value_is_rejected():
    assert "exactly one value" in rejected([("i", "EQ", [1, 2])])
    assert "exactly one value" in rejected([("i", "EQ", [])])


def test_set_operator_with_no_values_is_rejected():
    message = rejected([("s", "IN", [])])
    assert message.startswith("filter.clauses[0].values:") and "at least one value" in message
    assert "at least one value" in rejected([("s", "NOT_IN", [])])


def test_set_operator_with_too_many_values_is_rejected():
    message = rejected([("i", "IN", [1, 2, 3, 4, 5])], max_values=4)
    assert message.startswith("filter.clauses[0].values:") and "at most 4" in message


def test_too_many_clauses_are_rejected():
    message = rejected([("i", "GT", [n]) for n in range(9)], max_clauses=8)
    assert message.startswith("filter.clauses:") and "9 clauses" in message and "at most 8" in message
    assert compile_([("i", "GT", [n]) for n in range(8)], max_clauses=8).count(" and ") == 8


# ---------------------------------------------------------------- tenant


@pytest.mark.parametrize("tenant", ["", 'acme" or "1"=="1', "acme\n", " acme", "ac me", "-acme", "a" * 65, "ａｃｍｅ"])
def test_an_invalid_tenant_never_reaches_the_expression(tenant):
    with pytest.raises(ServiceError) as info:
        compile_([], tenant=tenant)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and info.value.message.startswith("tenant:")
