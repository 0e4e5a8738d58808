"""JSON in and out for result files (pure, but for the files): atomic writes, and reading
that refuses NaN and ±Infinity with the JSON path where they are.

JSON has no NaN or Infinity. Python's ``json`` writes and reads them anyway; a file with one
is then unreadable to other tools, and a NaN figure compares false with everything (a
baseline figure of NaN never regresses). So they are refused on both sides.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any


class _NonFinite:
    """Stands in, while a document is parsed, for a NaN or ±Infinity the text held."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def loads(text: str) -> Any:
    """Parse JSON; NaN, Infinity and numbers too large for a float are refused
    (``NonFiniteError`` with the JSON path of the first one)."""
    found = False

    def constant(name: str) -> _NonFinite:
        nonlocal found
        found = True
        return _NonFinite(name)

    def number(digits: str) -> float | _NonFinite:
        value = float(digits)
        if math.isfinite(value):
            return value
        return constant(digits)

    data = json.loads(text, parse_constant=constant, parse_float=number)
    if found:
        for path, value in walk(data):
            if isinstance(value, _NonFinite):
                raise NonFiniteError(path, value.text)
    return data


class NonFiniteError(ValueError):
    """A NaN or ±Infinity (``what``) at JSON path ``path``."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path}: {what} is not a finite number (JSON has no NaN or Infinity)")
        self.path = path
        self.what = what


def walk(data: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every value in ``data`` with its JSON path (``$.tests[0].nodeid``), depth first."""
    yield path, data
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from walk(value, json_path(path, key))
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            yield from walk(value, f"{path}[{i}]")


def json_path(path: str, key: object) -> str:
    """``path`` and one step more: ``.name`` for a plain key, ``['odd key']`` else."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    return f"{path}.{text}" if text.isidentifier() else f"{path}[{text!r}]"


def path_of(parts: Iterable[object], start: str = "$") -> str:
    path = start
    for part in parts:
        path = json_path(path, part)
    return path


def first_nonfinite(data: Any, path: str = "$") -> tuple[str, float] | None:
    """The JSON path and value of the first float in ``data`` that is NaN or ±Infinity."""
    for where, value in walk(data, path):
        if isinstance(value, float) and not math.isfinite(value):
            return where, value
    return None


def dumps_line(data: Any) -> str:
    """One line of JSON (no NaN), with its newline: a journal line."""
    return json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON atomically: a temp file in the same folder, then a rename.

    A crash or Ctrl-C leaves either the old file or the new one, never half a file. NaN and
    ±Infinity raise ValueError before the file is touched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
