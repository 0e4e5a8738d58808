"""The run-file schema's compiled check answers as jsonschema does (pure)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from pytest_cgmem.results import runfile
from pytest_cgmem.results.schemacheck import compile_check


def _jsonschema_says(schema: dict[str, Any], instance: Any) -> bool:
    return bool(runfile._validator_class()(schema).is_valid(instance))


def test_the_shipped_schema_is_compiled_whole() -> None:
    """A keyword the compiler does not know would leave every file to jsonschema (5x
    slower): this says so at once."""
    assert compile_check(runfile.schema()) is not None
    assert compile_check({"$ref": "#/$defs/test", "$defs": runfile.schema()["$defs"]})


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "integer"}, 5.0),
        ({"type": "integer"}, 1e19),
        ({"type": "integer"}, True),
        ({"type": "number"}, Decimal("1.5")),
        ({"type": "number"}, False),
        ({"type": ["string", "null"]}, None),
        ({"type": "object"}, []),
        ({"type": "array"}, ()),
        ({"minimum": 0}, -1),
        ({"minimum": 0}, "x"),
        ({"minimum": 0}, True),
        ({"maximum": 0}, math.nan),
        ({"exclusiveMinimum": 0}, 0),
        ({"exclusiveMaximum": 0}, -0.5),
        ({"const": "a"}, "a"),
        ({"enum": ["a", "b"]}, 1),
        ({"pattern": "^a"}, "ba"),
        ({"pattern": "^a"}, 5),
        ({"required": ["a"], "properties": {"a": {"type": "integer"}}}, {"a": "x"}),
        ({"additionalProperties": False, "properties": {"a": True}}, {"b": 1}),
        ({"additionalProperties": {"type": "string"}}, {"b": "1"}),
        ({"propertyNames": {"enum": ["a"]}}, {"b": 1}),
        ({"items": {"type": "integer"}}, [1, "2"]),
        ({"if": {"const": "a"}, "then": False}, "a"),
        ({"if": {"const": "a"}, "then": False}, "b"),
        ({"if": {"const": "a"}, "else": False}, "b"),
        ({"if": {"const": "a"}, "else": False}, "a"),
        ({"description": "anything"}, 5),
        ({"maximum": 0}, 0),
        ({"exclusiveMaximum": 0}, 0),
        ({"required": ["a"]}, {"b": 1}),
        ({"$ref": "#/$defs/n", "$defs": {"n": {"type": "integer"}}}, 1),
        ({"$ref": "#/$defs/n", "$defs": {"n": {"items": {"$ref": "#/$defs/n"}}}}, [[[5]]]),
    ],
)
def test_each_keyword_answers_as_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    check = compile_check(schema)
    assert check is not None
    assert check(instance) == _jsonschema_says(schema, instance)


@pytest.mark.parametrize(
    "schema",
    [
        {"patternProperties": {"a": True}},
        {"anyOf": [True]},
        {"const": 1},
        {"enum": [None]},
        {"$ref": "https://example.com/schema"},
        {"$ref": "#/$defs/missing"},
        {"type": "whatever"},
        {"minimum": "0"},
        {"properties": {"a": {"oneOf": []}}},
        {"properties": {"a": {"$id": "https://example.com/a", "$ref": "#/$defs/n"}}},
        {"properties": {"a": {"$id": "https://example.com/a"}}},
        {"pattern": 5},
        {"$ref": 5},
        {"items": 5},
        {"properties": {"a": None}},
    ],
)
def test_a_schema_with_what_is_not_compiled_gets_no_check(schema: dict[str, Any]) -> None:
    """jsonschema then does all the work: nothing is cleared that it has not seen."""
    assert compile_check(schema) is None


@pytest.mark.parametrize("instance", [True, False, 5, -3, 5.0, 0.5, "5", None, 2.0**53])
def test_is_integer_is_jsonschemas_integer_within_a_figure(instance: Any) -> None:
    """The compiled check and the loader's jsonschema share ``is_integer``: it is held
    against jsonschema's own ``integer`` here (a bool is none), which it narrows only for
    floats beyond ``MAX_FIGURE``."""
    import jsonschema

    from pytest_cgmem.results.schemacheck import is_integer

    stock = jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "integer")
    assert is_integer(instance) == stock
    assert not is_integer(1e19) and jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(
        1e19, "integer"
    )
