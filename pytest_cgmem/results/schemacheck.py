"""A fast yes for what the run-file schema takes (pure).

jsonschema walks a run file of 5000 measured tests in about a second, and almost every file
it reads is valid: each baseline a run starts with, each file a ``cgmem`` command reads. The
schema's keywords are compiled here, once, into plain Python checks that clear such a file
several times faster; a document they do not clear goes through jsonschema, which finds and
names the error. Each check answers as jsonschema does, keyword by keyword (the same types,
the same ``integer``, the same comparisons), so a yes here is a yes there; a schema with a
keyword not compiled here gets no check at all, and jsonschema does all the work.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..units import MAX_FIGURE

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {"$id", "$schema", "$comment", "$defs", "title", "description", "examples", "default"}
)
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_OBJECT = ("properties", "required", "additionalProperties", "propertyNames")
_APPLIED = frozenset(
    {"type", "const", "enum", "pattern", "items", "if", "then", "else", "$ref"}
    | set(_BOUNDS)
    | set(_OBJECT)
)


def is_integer(instance: object) -> bool:
    """JSON Schema's integer (``5`` or ``5.0``), but a number written as a float is one only
    up to ``MAX_FIGURE`` either side: every float beyond 2**53 is whole, and ``1e19`` in a
    figure counted in int64 would otherwise pass where ``10000000000000000000`` does not."""
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    return isinstance(instance, float) and instance.is_integer() and abs(instance) <= MAX_FIGURE


def _is_number(instance: object) -> bool:
    """jsonschema's number: any ``numbers.Number`` but a bool."""
    return isinstance(instance, numbers.Number) and not isinstance(instance, bool)


_TYPES: dict[str, Check] = {
    "null": lambda x: x is None,
    "boolean": lambda x: isinstance(x, bool),
    "integer": is_integer,
    "number": _is_number,
    "string": lambda x: isinstance(x, str),
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
}


class _Unsupported(Exception):
    """A keyword (or a form of one) this module does not compile."""


def compile_check(schema: Mapping[str, Any]) -> Check | None:
    """``schema`` (JSON Schema 2020-12, ``$ref`` only into its own ``$defs``) as one check,
    or None where it uses what is not compiled here."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    compiled: dict[str, Check] = {}

    def ref(target: object) -> Check:
        name = target.removeprefix("#/$defs/") if isinstance(target, str) else None
        if name is None or name == target or name not in defs:
            raise _Unsupported(f"$ref {target!r}")
        if name not in compiled:
            compiled[name] = _no  # until compiled: a definition may refer to itself
            compiled[name] = node(defs[name])
        return lambda x: compiled[name](x)

    def node(part: object) -> Check:
        if part is True:
            return _yes
        if part is False:
            return _no
        if not isinstance(part, Mapping):
            raise _Unsupported(repr(part))
        unknown = part.keys() - _APPLIED - _ANNOTATIONS
        if unknown:
            raise _Unsupported(", ".join(sorted(unknown)))
        if "$id" in part and part is not schema:
            raise _Unsupported("$id below the root: a $ref under it would resolve elsewhere")
        checks: list[Check] = []
        if "type" in part:
            checks.append(_type(part["type"]))
        if "const" in part:
            checks.append(_one_of_strings([part["const"]]))
        if "enum" in part:
            checks.append(_one_of_strings(part["enum"]))
        if any(bound in part for bound in _BOUNDS):
            checks.append(_bounds(*(part.get(bound) for bound in _BOUNDS)))
        if "pattern" in part:
            checks.append(_pattern(part["pattern"]))
        if any(keyword in part for keyword in _OBJECT):
            names = part.get("propertyNames")
            checks.append(
                _object(
                    {key: node(value) for key, value in part.get("properties", {}).items()},
                    tuple(part.get("required", ())),
                    node(part.get("additionalProperties", True)),
                    None if names is None else node(names),
                )
            )
        if "items" in part:
            checks.append(_items(node(part["items"])))
        if "if" in part:
            checks.append(
                _if(node(part["if"]), node(part.get("then", True)), node(part.get("else", True)))
            )
        if "$ref" in part:
            checks.append(ref(part["$ref"]))
        return _all(checks)

    try:
        return node(schema)
    except _Unsupported:
        return None


def _yes(instance: object) -> bool:
    return True


def _no(instance: object) -> bool:
    return False


def _all(checks: Sequence[Check]) -> Check:
    if not checks:
        return _yes
    if len(checks) == 1:
        return checks[0]

    def check(instance: object) -> bool:
        for one in checks:  # noqa: SIM110 (a loop: all() of a generator takes twice as long)
            if not one(instance):
                return False
        return True

    return check


def _type(names: object) -> Check:
    wanted = [names] if isinstance(names, str) else names
    if not isinstance(wanted, list) or not all(name in _TYPES for name in wanted):
        raise _Unsupported(f"type {names!r}")
    checks = [_TYPES[name] for name in wanted]
    if len(checks) == 1:
        return checks[0]
    return lambda x: any(check(x) for check in checks)


def _one_of_strings(values: object) -> Check:
    """``const`` and ``enum`` of strings (jsonschema's equality is ``==`` between strings,
    and no other JSON value equals a string)."""
    if not isinstance(values, list) or not all(type(value) is str for value in values):
        raise _Unsupported(f"enum {values!r}")
    taken = frozenset(values)
    return lambda x: isinstance(x, str) and x in taken


def _bounds(minimum: Any, maximum: Any, above: Any, below: Any) -> Check:
    for bound in (minimum, maximum, above, below):
        if bound is not None and not _is_number(bound):
            raise _Unsupported(f"bound {bound!r}")

    def check(instance: Any) -> bool:
        if not _is_number(instance):
            return True  # bounds hold numbers only
        return not (  # each failure as jsonschema tests it
            (minimum is not None and instance < minimum)
            or (maximum is not None and instance > maximum)
            or (above is not None and instance <= above)
            or (below is not None and instance >= below)
        )

    return check


def _pattern(pattern: object) -> Check:
    if not isinstance(pattern, str):
        raise _Unsupported(f"pattern {pattern!r}")
    search = re.compile(pattern).search  # jsonschema's own: re.search
    return lambda x: not isinstance(x, str) or search(x) is not None


def _object(
    properties: dict[str, Check], required: tuple[str, ...], additional: Check, names: Check | None
) -> Check:
    def check(instance: object) -> bool:
        if not isinstance(instance, dict):
            return True  # these keywords hold objects only
        for key in required:
            if key not in instance:
                return False
        for key, value in instance.items():
            if not properties.get(key, additional)(value):
                return False
            if names is not None and not names(key):
                return False
        return True

    return check


def _items(each: Check) -> Check:
    def check(instance: object) -> bool:
        if not isinstance(instance, list):
            return True
        for item in instance:  # noqa: SIM110 (as in _all)
            if not each(item):
                return False
        return True

    return check


def _if(condition: Check, then: Check, otherwise: Check) -> Check:
    return lambda x: then(x) if condition(x) else otherwise(x)
