"""The run file: build, load (the one loader every reader uses), merge (pure, but for files).

A run file (``--cgmem-json``, ``--cgmem-save-baseline``, ``cgmem merge``) is one JSON object
with the schema id ``pytest-cgmem/1``; ``docs/json.md`` documents it and
``run.schema.json`` (shipped in the package) is its JSON Schema. ``load_run`` checks a file
against that schema, refuses what no result file may hold (NaN, ±Infinity, a whole number
beyond ±(2**63 - 1), nesting deeper than 100 levels, a key twice in one object, a lone
surrogate: ``jsonio``), a test listed twice, a device or a capture size twice in one
region, a region label with a control character (a newline, a tab), and folds in the
journal of a run that did not finish (``journal.py``), each of its tests checked before it
is folded in.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import re
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..metrics import METRICS, Number, region_keys
from ..units import MAX_FIGURE, CgmemUsageError, short_repr
from . import journal
from .jsonio import (
    BYTE_ORDER_MARK,
    NonFiniteError,
    Refused,
    clean_text,
    loads,
    not_utf8,
    path_of,
    quick_refusal,
    refusal,
    shown_number,
    valid_text,
    write_json,
)
from .records import RegionResult, TestRecord
from .schemacheck import Check, compile_check, is_integer

__all__ = ["write_json"]

SCHEMA_ID = "pytest-cgmem/1"
#: Machine keys that must agree for figures to be comparable (``cgmem merge``).
MACHINE_IDENTITY = ("gpus", "driver", "torch", "cuda", "allocator_backend", "alloc_conf")
#: What a run file says while its run is under way, and after a run that was killed.
NOT_FINISHED = (
    "the run did not finish: it is still going, or it was killed (SIGKILL, an OOM kill, "
    "os._exit, a crash) before it could say why"
)


def schema() -> dict[str, Any]:
    """The JSON Schema of a run file (``pytest_cgmem/run.schema.json``)."""
    from .schema import shipped

    return shipped()


_PLAIN = frozenset((str, int, bool, type(None)))


def _key(key: object) -> str:
    """A mapping's key as JSON writes one (``True`` as ``"true"``, ``None`` as ``"null"``),
    so that ``_jsonable`` agrees with ``clean_text``; any other key as its ``str``."""
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return str(key)


def _jsonable(value: Any, finite: bool = True) -> Any:
    """Plain JSON data: tuples become lists, odd objects their ``str``; with ``finite``,
    NaN and ±Infinity become None (for ``extra``, the details other parts add; a figure
    that is not finite is refused instead, see ``nonfinite_problem``)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return None if finite and not math.isfinite(value) else value
    if kind is dict or isinstance(value, Mapping):
        return {k if type(k) is str else _key(k): _jsonable(v, finite) for k, v in value.items()}
    if kind is list or isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, finite) for v in value]
    if isinstance(value, float):
        return _jsonable(float(value), finite)
    if isinstance(value, (str, int, bool)):
        return value
    return str(value)


def base_machine(alloc_conf: str | None = None) -> dict[str, Any]:
    """What is known about a machine without torch: host, Python, platform. The GPU keys
    and ``alloc_conf`` are null: the measuring process fills them (``cuda.machine``)."""
    return {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpus": None,
        "driver": None,
        "torch": None,
        "cuda": None,
        "allocator_backend": None,
        "alloc_conf": alloc_conf,
    }


def git_commit(where: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{"sha", "dirty"}`` of the git checkout at ``where``; None when git can't say."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"sha": sha, "dirty": dirty}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII | re.IGNORECASE,
)
"""ISO 8601's extended form, a date alone or with a time: seconds and a fraction of any
length optional, ``Z`` or an offset of ``±HH``, ``±HHMM`` or ``±HH:MM``."""


def created_time(text: str) -> datetime | None:
    """A run file's ``created`` as a time (one without an offset taken as UTC), or None
    where it is no ISO 8601 time: what orders runs, which its text alone does not. Read
    here, not by ``datetime.fromisoformat``, which takes fewer forms before Python 3.11."""
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone = timezone.utc
    if offset is not None and offset.upper() != "Z":
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
        if minutes >= 24 * 60:
            return None
        zone = timezone((-1 if offset[0] == "-" else 1) * timedelta(minutes=minutes))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0),
            int(second or 0), micro, zone,
        )  # fmt: skip
    except ValueError:  # a 13th month, a 25th hour
        return None


def created_order(text: str) -> datetime:
    """``created_time``, with a text that is no time ordered first."""
    return created_time(text) or datetime.min.replace(tzinfo=timezone.utc)


def plain_region(region: RegionResult) -> dict[str, Any]:
    """A region in its run-file form, plain data; ``extra`` made JSON (NaN there is None),
    a figure that is NaN or ±Infinity left so, for ``nonfinite_problem`` to name."""
    data = region.to_dict()
    data["extra"] = _jsonable(data["extra"])
    plain: dict[str, Any] = _jsonable(data, finite=False)
    return plain


def plain_record(record: TestRecord) -> dict[str, Any]:
    """A record in its run-file form, plain data (what travels from an xdist worker)."""
    data = record.to_dict()
    data["regions"] = []
    plain: dict[str, Any] = _jsonable(data, finite=False)
    plain["regions"] = [plain_region(r) for r in record.regions]
    return plain


def record_text(record: TestRecord) -> str | None:
    """A record's run-file form (what ``plain_record`` makes, ``json.loads`` of this) as
    ``clean_text`` writes it, or None where it may hold what a run file refuses (then
    ``plain_record`` and ``nonfinite_problem`` say). A measured test's record takes this one
    pass at C speed, at each test's end, instead of a walk, a check and an encoding."""
    return clean_text(record.to_dict())


def nonfinite_problem(test: Mapping[str, Any]) -> str | None:
    """One line naming the test and the figure (any number outside ``extra``) or text that
    no run file may hold (NaN, ±Infinity, a whole number beyond ±(2**63 - 1), nesting too
    deep, a lone surrogate), or None: JSON has no NaN, a NaN baseline figure never
    regresses, a number too large overflows every reader's floats, and no reader takes
    half a character."""
    error = quick_refusal(test)
    if error is None:
        return None
    where = (error.path or "").removeprefix("$")
    label = ""
    match = re.match(r"\.regions\[(\d+)\]", where)
    if match and isinstance(test.get("regions"), list):
        label = f" (region {test['regions'][int(match.group(1))].get('label')!r})"
    why = " (JSON has no NaN or Infinity)" if isinstance(error, NonFiniteError) else ""
    return (
        f"cgmem: test {test.get('nodeid')!r}: {where.lstrip('.') or 'the test'}{label} "
        f"{error.said}{why}; its figures are left out of the files"
    )


def region_problem(region: Mapping[str, Any]) -> str | None:
    """Where a region in its run-file form breaks the schema or holds what no run file may
    (``seconds: expected a number >= 0, got number -1.0``), or None."""
    error = refusal(region, "")
    if error is not None:
        return f"{(error.path or '').lstrip('.') or 'the region'} {error.said}"
    problem = _part_problem(dict(region), "region", "")
    if problem is not None:
        return problem.lstrip(".")
    twice = _twice(region)
    if twice is not None:
        where, what = twice
        return f"{where}: {what} appears twice in the region"
    float_size = _float_size(region)
    if float_size is not None:
        where, expected = float_size
        return f"{where}: {expected}"
    return None


def record_problem(test: Mapping[str, Any], path: str = "$") -> str | None:
    """What is wrong with one test in its run-file form (a journal's line), in one line
    starting with the JSON path from ``path``, or None."""
    error = refusal(test, path)
    if error is not None:
        return str(error)
    problem = _part_problem(dict(test), "test", path)
    if problem is not None:
        return problem
    control = _control_in_test(test)
    if control is not None:
        where, what = control
        return f"{path}.{where}: {what} holds a control character (a newline, a tab)"
    twice = _in_regions(test, _twice)
    if twice is not None:
        j, where, what = twice
        return f"{path}.regions[{j}].{where}: {what} appears twice in the region"
    float_size = _in_regions(test, _float_size)
    if float_size is not None:
        j, where, expected = float_size
        return f"{path}.regions[{j}].{where}: {expected}"
    return None


def _part_problem(data: dict[str, Any], definition: str, path: str) -> str | None:
    """``path.to.it: what was expected`` for the most telling error of ``data`` against the
    schema's ``$defs[definition]``, or None."""
    fast = _part_check(definition)
    if fast is not None and fast(data):
        return None
    from jsonschema.exceptions import best_match

    error = best_match(_part_validator(definition).iter_errors(data))
    if error is None:
        return None
    where = path_of(error.absolute_path, path) or f"the {definition}"
    return f"{where}: {_expected(error)}"


def _part_schema(definition: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{definition}", "$defs": schema()["$defs"]}


@functools.lru_cache(maxsize=4)
def _part_validator(definition: str) -> Any:
    return _validator_class()(_part_schema(definition))


@functools.lru_cache(maxsize=4)
def _part_check(definition: str) -> Check | None:
    return compile_check(_part_schema(definition))


@functools.lru_cache(maxsize=1)
def _validator_class() -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", lambda _, instance: is_integer(instance))
    return jsonschema.validators.extend(base, type_checker=checker)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _control_in_test(test: Mapping[str, Any]) -> tuple[str, str] | None:
    """Where a test (valid by the schema) has a region label with a control character in
    it, relative to the test (``regions[0].label``), and its repr; or None. A label is
    printable (the plugin refuses others when it is given). A node id is pytest's and is
    kept as it is: pytest escapes parameter ids, but a ``pytest_make_parametrize_id`` hook,
    the ini option that turns escaping off, or a folder's name can put a tab in one."""
    for j, region in enumerate(test["regions"]):
        label = region["label"]
        if label is not None and _CONTROL.search(label):
            return f"regions[{j}].label", short_repr(label)
    return None


def _in_regions(
    test: Mapping[str, Any], find: Callable[[Mapping[str, Any]], tuple[str, str] | None]
) -> tuple[int, str, str] | None:
    """What ``find`` finds in the first of a test's regions where it finds anything, with
    the region's index."""
    for j, region in enumerate(test["regions"]):
        found = find(region)
        if found is not None:
            return (j, *found)
    return None


def _twice(region: Mapping[str, Any]) -> tuple[str, str] | None:
    """Where a region (valid by the schema) names a device index or a capture size a
    second time, relative to it (``devices[1]``), and what (``device 0``); or None."""
    indices: set[int] = set()
    for k, device in enumerate(region["devices"]):
        if device["index"] in indices:
            return f"devices[{k}]", f"device {device['index']}"
        indices.add(device["index"])
    figures = region["extra"].get("graph_figures")
    sizes: set[int | str] = set()
    for k, row in enumerate(figures["sizes"] if figures else ()):
        if row["size"] in sizes:
            return f"extra.graph_figures.sizes[{k}]", f"capture size {row['size']!r}"
        sizes.add(row["size"])
    return None


def _float_size(region: Mapping[str, Any]) -> tuple[str, str] | None:
    """Where a region (valid by the schema) has a capture size written as a float, relative
    to it (``extra.graph_figures.sizes[1].size``), and what was expected; or None.

    JSON Schema takes ``16.0`` for an integer, but every output orders and shows a capture
    size as an int or a label: a float one would silently drop out of ``cgmem compare``."""
    figures = region["extra"].get("graph_figures")
    for k, row in enumerate(figures["sizes"] if figures else ()):
        if isinstance(row["size"], float):
            kinds = "integer" if figures["source"] == "capture_sweep" else "integer or string"
            return (
                f"extra.graph_figures.sizes[{k}].size",
                f"expected {kinds}, got {_shown(row['size'])}",
            )
    return None


def record_data(record: TestRecord) -> dict[str, Any]:
    """A record in its run-file form; CgmemUsageError (``nonfinite_problem``) for a figure
    that is NaN or ±Infinity."""
    data = plain_record(record)
    problem = nonfinite_problem(data)
    if problem:
        raise CgmemUsageError(problem)
    return data


def build_run(
    entries: Iterable[TestRecord | Mapping[str, Any]],
    machine: Mapping[str, Any],
    commit: Mapping[str, Any] | None,
    *,
    created: str | None = None,
    settings: Mapping[str, Any] | None = None,
    complete: bool = True,
    incomplete_reason: str | None = None,
    workers_lost: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The run-file document; tests sorted by node id so that runs diff cleanly. An entry
    is a record or a test already in run-file form (a merged file's, a journal's)."""
    tests = sorted(
        (record_data(e) if isinstance(e, TestRecord) else dict(e) for e in entries),
        key=lambda t: str(t["nodeid"]),
    )
    return {
        "schema": SCHEMA_ID,
        "created": created or now(),
        "complete": complete,
        "incomplete_reason": None if complete else (incomplete_reason or NOT_FINISHED),
        "machine": _jsonable(dict(machine)),
        "commit": None if commit is None else _jsonable(dict(commit)),
        "settings": _jsonable(dict(settings or {})),
        "summary": {
            "tests": len(tests),
            "regions": sum(len(t["regions"]) for t in tests),
            "violations": sum(len(t.get("violations") or ()) for t in tests),
            "failed": sum(t.get("outcome") == "failed" for t in tests),
        },
        "workers_lost": [dict(w) for w in workers_lost],
        "tests": tests,
    }


def with_tests(document: Mapping[str, Any], tests: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``document`` holding ``tests`` in place of its own: sorted, the summary recounted,
    every other key kept."""
    rebuilt = build_run(
        tests,
        document["machine"],
        document.get("commit"),
        created=document.get("created"),
        settings=document.get("settings"),
        complete=bool(document.get("complete", True)),
        incomplete_reason=document.get("incomplete_reason"),
        workers_lost=document.get("workers_lost") or (),
    )
    return {**document, **rebuilt}


def refreshed(
    measured: Sequence[Mapping[str, Any]], earlier: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """The tests of a baseline saved over an earlier one, and how many it kept from it.

    A test this run measured and passed takes its new entry. One that did not pass (a
    failure, a regression, an xfail, a skip) keeps its earlier entry where there is one,
    so that one red run does not make its figures the new normal; and every earlier test
    this run did not measure (a ``-k`` selection, a skip) is kept, so that a partial run
    does not turn its regression check off.
    """
    before = {str(t["nodeid"]): t for t in earlier}
    tests: list[dict[str, Any]] = []
    kept = 0
    for test in measured:
        old = before.pop(str(test["nodeid"]), None)
        if old is not None and test.get("outcome") != "passed":
            tests.append(dict(old))
            kept += 1
        else:
            tests.append(dict(test))
    tests.extend(dict(t) for t in before.values())
    return tests, kept + len(before)


# -- reading ------------------------------------------------------------------------------


def load_run(path: str | os.PathLike[str], what: str = "run file") -> dict[str, Any]:
    """A run file's document, checked: every problem is a one-line CgmemUsageError naming
    the file (and, for a file the schema rejects, the JSON path and what was expected).
    A leading ``~`` in ``path`` is the home folder, as for every path pytest-cgmem takes.

    The document always has ``complete`` and ``incomplete_reason`` (a file from before
    journaling has neither: it is taken as complete). A run that did not finish has its
    journal's tests folded in.
    """
    label = f"{what} {os.fspath(path)!r}"
    name = os.path.expanduser(os.fspath(path))
    if not name:
        raise CgmemUsageError(f"cgmem: {what}: the path is empty; give a file path")
    if "\0" in name:
        raise CgmemUsageError(f"cgmem: {label}: a path cannot hold a NUL character")
    if os.path.isdir(name):
        raise CgmemUsageError(f"cgmem: {label} is a folder; give a file path")
    if os.path.exists(name) and not os.path.isfile(name):
        # a FIFO or a device: reading it could wait forever
        raise CgmemUsageError(f"cgmem: {label} is not a regular file")
    try:
        text = Path(name).read_text(encoding="utf-8").removeprefix(BYTE_ORDER_MARK)
    except FileNotFoundError:
        raise CgmemUsageError(f"cgmem: {label} does not exist") from None
    except UnicodeDecodeError as exc:
        raise CgmemUsageError(f"cgmem: {label} is not UTF-8 text ({not_utf8(exc)})") from None
    except OSError as exc:
        raise CgmemUsageError(f"cgmem: cannot read {label} ({exc.strerror or exc})") from None
    if not text.strip():
        raise CgmemUsageError(f"cgmem: {label} is empty")
    try:
        data: dict[str, Any] = loads(text)
    except Refused as exc:
        raise CgmemUsageError(f"cgmem: {label} {exc.lead} {exc}") from None
    except json.JSONDecodeError as exc:
        raise CgmemUsageError(
            f"cgmem: {label} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except ValueError as exc:
        raise CgmemUsageError(f"cgmem: {label} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "schema" not in data:
        raise CgmemUsageError(f"cgmem: {label} is not a pytest-cgmem run file")
    if data["schema"] != SCHEMA_ID:
        raise CgmemUsageError(
            f"cgmem: {label} has schema {short_repr(data['schema'])}; this pytest-cgmem "
            f"reads {SCHEMA_ID!r} (save it again with this version)"
        )
    problem = _shape_problem(data)  # loads refused what no result file may hold already
    if problem:
        raise CgmemUsageError(f"cgmem: {label} {problem}")
    data.setdefault("complete", True)
    data.setdefault("incomplete_reason", None)
    data.setdefault("workers_lost", [])
    if not data["complete"] and "journal" in data:
        try:
            contents = journal.read(name, data["journal"], record_problem)
        except journal.JournalError as exc:
            raise CgmemUsageError(f"cgmem: {label}: {exc}") from None
        data = _folded(data, contents)
        problem = check(data)
        if problem:
            raise CgmemUsageError(f"cgmem: {label} (with the tests of its journal) {problem}")
    return data


def _folded(stub: Mapping[str, Any], contents: journal.Contents) -> dict[str, Any]:
    """A stub with its journal's tests, machine and lost workers, as one run file. A
    stub's own tests (a baseline's earlier ones, kept while it is refreshed) are kept as
    the finished refresh would keep them (``refreshed``)."""
    reason = "; ".join([str(stub.get("incomplete_reason") or NOT_FINISHED), *contents.notes])
    tests, _ = refreshed(contents.tests, stub.get("tests", ()))
    document = build_run(
        tests,
        contents.machine or stub["machine"],
        stub.get("commit"),
        created=stub.get("created"),
        settings=stub.get("settings"),
        complete=False,
        incomplete_reason=reason,
        workers_lost=[*stub.get("workers_lost", ()), *contents.workers_lost],
    )
    return document


def check(document: Mapping[str, Any]) -> str | None:
    """What is wrong with a run-file document, in one line, or None: what no result file
    may hold (``jsonio.refusal``), the first place the JSON Schema rejects, a test listed
    twice, a device or a capture size twice in a region."""
    error = refusal(document)
    if error is not None:
        return f"{error.lead} {error}"
    return _shape_problem(document)


def _shape_problem(document: Mapping[str, Any]) -> str | None:
    """``check`` but for what ``jsonio.refusal`` finds."""
    problem = _schema_problem(document)
    if problem:
        return f"does not match the run-file schema at {problem}"
    if created_time(document["created"]) is None:
        return f"has no ISO 8601 time at $.created: {_shown(document['created'])}"
    seen: dict[str, int] = {}
    for i, test in enumerate(document["tests"]):
        nodeid = test["nodeid"]
        if nodeid in seen:
            return f"lists test {nodeid!r} twice ($.tests[{seen[nodeid]}] and $.tests[{i}])"
        seen[nodeid] = i
        control = _control_in_test(test)
        if control is not None:
            where, what = control
            return f"has a control character (a newline, a tab) at $.tests[{i}].{where}: {what}"
        twice = _in_regions(test, _twice)
        if twice is not None:
            j, where, what = twice
            return f"has {what} twice in one region at $.tests[{i}].regions[{j}].{where}"
        float_size = _in_regions(test, _float_size)
        if float_size is not None:
            j, where, expected = float_size
            return (
                f"has a capture size written as a float at $.tests[{i}].regions[{j}].{where}: "
                f"{expected}"
            )
    return None


def validate(document: Mapping[str, Any]) -> None:
    """Raise CgmemUsageError (a ValueError) naming what is wrong with ``document``."""
    problem = check(document)
    if problem:
        raise CgmemUsageError(f"the run file {problem}")


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    return _validator_class()(schema())


@functools.lru_cache(maxsize=1)
def _check() -> Check | None:
    return compile_check(schema())


def _schema_problem(document: Mapping[str, Any]) -> str | None:
    """``$.json.path: what was expected`` for the most telling schema error, or None (a
    valid document is cleared by the schema's compiled check, without jsonschema)."""
    fast = _check()
    if fast is not None and fast(document):
        return None
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(document))
    if error is None:
        return None
    return f"{path_of(error.absolute_path)}: {_expected(error)}"


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">"}
"""The schema's bounds on a number, as a refusal writes each."""


def _expected(error: Any) -> str:
    """What the schema expected where ``error`` (a jsonschema ValidationError) is."""
    rule, value, instance = error.validator, error.validator_value, error.instance
    if rule == "type":
        kinds = value if isinstance(value, list) else [value]
        if "integer" in kinds and isinstance(instance, float) and abs(instance) > MAX_FIGURE:
            return f"{shown_number(instance)} is a whole number beyond ±{MAX_FIGURE}"
        return f"expected {' or '.join(kinds)}, got {_shown(instance)}"
    if rule == "required":
        missing = [k for k in value if isinstance(instance, dict) and k not in instance]
        return f"{missing[0]!r} is missing" if missing else str(error.message)
    if rule == "enum":
        return f"expected one of {', '.join(json.dumps(v) for v in value)}, got {_shown(instance)}"
    if rule == "const":
        return f"expected {json.dumps(value)}, got {_shown(instance)}"
    if rule in _BOUNDS:
        return f"expected a number {_BOUNDS[rule]} {value}, got {_shown(instance)}"
    if rule == "pattern":
        return f"expected a plain file name, got {_shown(instance)}"
    message = str(error.message)
    return message if len(message) <= 120 else message[:117] + "..."


def known(region: Mapping[str, Any], device: Mapping[str, Any]) -> dict[str, Number]:
    """A device's known figures: not null, and for a recorded region only those given."""
    given = (region.get("extra") or {}).get("recorded") or METRICS
    return {m: device[m] for m in METRICS if m in given and device.get(m) is not None}


def figures(data: Mapping[str, Any]) -> dict[tuple[str, str, int], dict[str, Number]]:
    """``(nodeid, region key, device index) -> {metric: value}`` for every known figure
    (``metrics.region_keys``: unlabelled regions and repeated labels get keys of their own)."""
    found: dict[tuple[str, str, int], dict[str, Number]] = {}
    for test in data["tests"]:
        regions = test["regions"]
        for key, region in zip(region_keys(r.get("label") for r in regions), regions, strict=True):
            for device in region["devices"]:
                found[(test["nodeid"], key, device["index"])] = known(region, device)
    return found


def incomplete(document: Mapping[str, Any]) -> str | None:
    """Why the run behind ``document`` is incomplete, or None when it is complete."""
    if document.get("complete", True):
        return None
    return str(document.get("incomplete_reason") or NOT_FINISHED)


# -- merging ------------------------------------------------------------------------------


def machine_identity(machine: Mapping[str, Any]) -> dict[str, Any]:
    return {k: machine.get(k) for k in MACHINE_IDENTITY}


def _differing(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The identity keys on which two machines differ; a null (not known) differs from
    nothing."""
    return [
        k
        for k in MACHINE_IDENTITY
        if a.get(k) is not None and b.get(k) is not None and a.get(k) != b.get(k)
    ]


def machine_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """``key 'a' vs 'b'`` for each identity key on which two machines differ."""
    return [f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in _differing(a, b)]


def merge_runs(
    runs: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    allow_mixed_machines: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Join shard run files into one; returns the document and warning lines.

    Only files that measured something are held against each other's machine (a file with
    no test measured nothing, whatever machine it names), and a key either file does not
    know is not compared. Files from different machines are refused (CgmemUsageError)
    unless allowed, and so is a test in more than one file (nothing doubled, nothing
    dropped). The merged run is complete only when every file is.
    """
    if not runs:
        raise CgmemUsageError("cgmem merge: no files given")
    runs = [(valid_text(name), doc) for name, doc in runs]  # a file name's bytes not UTF-8
    warnings: list[str] = []
    measured = [(name, doc) for name, doc in runs if doc["tests"]]
    first = measured[0][1] if measured else runs[0][1]
    # each identity key as the first file that knew it said, and that file: a key the first
    # file does not know (null) is still held between the later ones
    known: dict[str, Any] = {}
    told_by: dict[str, str] = {}
    for name, doc in measured:
        machine = doc["machine"]
        keys = _differing(known, machine)
        if keys:
            text = ", ".join(machine_differences(known, machine))
            if not allow_mixed_machines:
                raise CgmemUsageError(
                    f"cgmem merge: {name!r} comes from a different machine than "
                    f"{told_by[keys[0]]!r} ({text}); pass --allow-mixed-machines to merge anyway"
                )
            warnings.append(f"warning: {name!r} comes from a different machine ({text})")
        for key in MACHINE_IDENTITY:
            if known.get(key) is None and machine.get(key) is not None:
                known[key], told_by[key] = machine[key], name
    owner: dict[str, str] = {}
    merged: list[Mapping[str, Any]] = []
    for name, doc in runs:
        for test in doc["tests"]:
            if test["nodeid"] in owner:
                raise CgmemUsageError(
                    f"cgmem merge: {test['nodeid']!r} is in both {owner[test['nodeid']]!r} "
                    f"and {name!r}"
                )
            owner[test["nodeid"]] = name
            merged.append(test)
    commits = {json.dumps(doc.get("commit"), sort_keys=True) for _, doc in runs}
    if len(commits) > 1:
        warnings.append("warning: the files come from different commits; keeping the first")
    reasons = [(name, why) for name, doc in runs if (why := incomplete(doc)) is not None]
    for name, why in reasons:
        warnings.append(f"warning: {name!r} is from an incomplete run: {why}")
    # keep what each file said about its tests, verbatim (violations, baseline findings)
    document = build_run(
        merged,
        first["machine"],
        runs[0][1].get("commit"),
        created=max((doc["created"] for _, doc in runs), key=created_order),
        settings=runs[0][1].get("settings"),
        complete=not reasons,
        incomplete_reason="; ".join(f"{name}: {why}" for name, why in reasons) or None,
        workers_lost=[w for _, doc in runs for w in doc.get("workers_lost") or ()],
    )
    document["merged_from"] = [name for name, _ in runs]
    return document, warnings
