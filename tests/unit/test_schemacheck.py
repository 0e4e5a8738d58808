"""The run-file schema's compiled check answers as jsonschema does (pure)."""

from __future__ import annotations

import copy
import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cgmem.results import runfile
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord
from pytest_cgmem.results.schemacheck import compile_check


def _jsonschema_says(schema: dict[str, Any], instance: Any) -> bool:
    return bool(runfile._validator_class()(schema).is_valid(instance))


def test_the_shipped_schema_is_compiled_whole() -> None:
    """A keyword the compiler does not know would leave every file to jsonschema (5x
    slower): this says so at once."""
    assert compile_check(runfile.schema()) is not None
    assert compile_check({"$ref": "#/$defs/test", "$defs": runfile.schema()["$defs"]})


def _document() -> dict[str, Any]:
    figures = DeviceFigures(0, peak=2**20, reserved=2**21, leak=0, device=-5, reserved_ratio=1.5)
    sweep = {
        "source": "capture_sweep",
        "captures": 2,
        "replays": 3,
        "pools": [],
        "sizes": [{"size": s, "bytes": 1, "driver": -5, "captures": 1} for s in (8, 16)],
    }
    regions = (
        RegionResult("call", (figures,), 0.5, None, {"graph_figures": sweep}),
        RegionResult("load", (figures,), 0.0, None, {"recorded": ["peak"], "rank": 1}),
    )
    record = TestRecord("t.py::a", "failed", regions, {"peak": 1}, ("call",), {"rel": 0.1})
    lost = {"worker": "gw1", "when": "now", "test": "t.py::c", "error": None}
    doc = runfile.build_run([record], runfile.base_machine(), None, workers_lost=[lost])
    loaded: dict[str, Any] = json.loads(json.dumps(doc))
    return loaded


DOCUMENT = _document()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from(["", "passed", "capture_sweep", "graphs", "peak", "x", "t.py::a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _places(value, (*path, index))
    return found


PLACES = _places(DOCUMENT)[1:]


@settings(max_examples=400)
@given(st.data())
def test_a_changed_document_is_judged_as_jsonschema_judges_it(data: st.DataObject) -> None:
    """Each value of a valid document replaced, removed, or given a new key beside it: the
    compiled check and jsonschema agree on every such document."""
    doc = copy.deepcopy(DOCUMENT)
    for _ in range(data.draw(st.integers(1, 3))):
        *parents, last = data.draw(st.sampled_from(PLACES))
        node = doc
        try:
            for part in parents:
                node = node[part]
            action = data.draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace":
                node[last] = data.draw(json_values)
            elif action == "remove":
                del node[last]
            elif isinstance(node, dict):
                node[data.draw(st.text(max_size=3))] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change took this place away
    check = compile_check(runfile.schema())
    assert check is not None
    assert check(doc) == _jsonschema_says(runfile.schema(), doc)


def test_the_document_itself_is_cleared() -> None:
    check = compile_check(runfile.schema())
    assert check is not None and check(DOCUMENT) and _jsonschema_says(runfile.schema(), DOCUMENT)


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
    ],
)
def test_a_schema_with_what_is_not_compiled_gets_no_check(schema: dict[str, Any]) -> None:
    """jsonschema then does all the work: nothing is cleared that it has not seen."""
    assert compile_check(schema) is None
