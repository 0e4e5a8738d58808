"""The run file: JSON export, loading, github-action-benchmark entries, merge (pure).

A run file (``--cgmem-json``, ``--cgmem-save-baseline``) is one JSON object with the schema
id ``pytest-cgmem/1``; ``docs/json.md`` documents it and ``run.schema.json`` (shipped in
the package) is its machine-readable JSON Schema.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..metrics import METRICS, Number, region_keys
from ..units import CgmemUsageError
from .records import TestRecord

SCHEMA_ID = "pytest-cgmem/1"
#: Machine keys that must agree for figures to be comparable (``cgmem merge``).
MACHINE_IDENTITY = ("gpus", "driver", "torch", "cuda", "allocator_backend", "alloc_conf")


def schema() -> dict[str, Any]:
    """The JSON Schema of a run file (``pytest_cgmem/run.schema.json``)."""
    from .schema import shipped

    return shipped()


def _jsonable(value: Any) -> Any:
    """Plain JSON data: tuples become lists, odd objects their ``str``; NaN becomes None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def base_machine() -> dict[str, Any]:
    """What is known about the machine without torch: host, Python, platform."""
    return {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpus": None,
        "driver": None,
        "torch": None,
        "cuda": None,
        "allocator_backend": None,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
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


def build_run(
    entries: Iterable[TestRecord],
    machine: Mapping[str, Any],
    commit: Mapping[str, Any] | None,
    *,
    created: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run-file document; tests sorted by node id so that runs diff cleanly."""
    tests = sorted(entries, key=lambda e: e.nodeid)
    return {
        "schema": SCHEMA_ID,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "machine": _jsonable(dict(machine)),
        "commit": None if commit is None else _jsonable(dict(commit)),
        "settings": _jsonable(dict(settings or {})),
        "summary": {
            "tests": len(tests),
            "regions": sum(len(e.regions) for e in tests),
            "violations": sum(len(e.violations) for e in tests),
            "failed": sum(e.outcome == "failed" for e in tests),
        },
        "tests": [_jsonable(e.to_dict()) for e in tests],
    }


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON atomically: a temp file in the same folder, then a rename.

    A crash or Ctrl-C leaves either the old file or the new one, never half a file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_run(path: str | os.PathLike[str], what: str = "run file") -> dict[str, Any]:
    """A run file's document; any problem is one-line CgmemUsageError naming the file."""
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CgmemUsageError(f"cgmem: {what} {name!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CgmemUsageError(f"cgmem: cannot read {what} {name!r}: {exc}") from None
    if not text.strip():
        raise CgmemUsageError(f"cgmem: {what} {name!r} is empty") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CgmemUsageError(
            f"cgmem: {what} {name!r} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict) or "schema" not in data:
        raise CgmemUsageError(f"cgmem: {what} {name!r} is not a pytest-cgmem run file")
    if data["schema"] != SCHEMA_ID:
        raise CgmemUsageError(
            f"cgmem: {what} {name!r} has schema {data['schema']!r}; this pytest-cgmem "
            f"reads {SCHEMA_ID!r} (save it again with this version)"
        )
    problem = _shape_problem(data)
    if problem:
        raise CgmemUsageError(f"cgmem: {what} {name!r} is malformed: {problem}")
    return data


def validate(document: Mapping[str, Any]) -> None:
    """Check a run file against ``run.schema.json`` with jsonschema where it is installed,
    else with the light shape check; raises (jsonschema's error, or ValueError) on a problem."""
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        problem = _shape_problem(document)
        if problem is not None:
            raise ValueError(problem) from None
        return
    jsonschema.validate(dict(document), schema())


def _shape_problem(data: Mapping[str, Any]) -> str | None:
    """The first thing a reader would trip on, or None (a light check, no jsonschema)."""
    tests = data.get("tests")
    if not isinstance(tests, list):
        return "'tests' is not a list"
    if not isinstance(data.get("machine"), dict):
        return "'machine' is not an object"
    for i, test in enumerate(tests):
        if not isinstance(test, dict) or not isinstance(test.get("nodeid"), str):
            return f"tests[{i}] has no 'nodeid'"
        if not isinstance(test.get("regions"), list):
            return f"tests[{i}] ({test['nodeid']}) has no 'regions' list"
        for j, region in enumerate(test["regions"]):
            if not isinstance(region, dict) or not isinstance(region.get("devices"), list):
                return f"tests[{i}].regions[{j}] has no 'devices' list"
            for device in region["devices"]:
                if not isinstance(device, dict) or not isinstance(device.get("index"), int):
                    return f"tests[{i}].regions[{j}] has a device without an 'index'"
                for name in METRICS:
                    value = device.get(name)
                    if value is not None and not isinstance(value, (int, float)):
                        return f"tests[{i}].regions[{j}] {name}={value!r} is not a number"
    return None


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


def machine_identity(machine: Mapping[str, Any]) -> dict[str, Any]:
    return {k: machine.get(k) for k in MACHINE_IDENTITY}


def merge_runs(
    runs: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    allow_mixed_machines: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Join shard run files into one; returns the document and warning lines.

    Refuses (CgmemUsageError) files from different machines unless allowed, and a test
    that appears in more than one file (nothing doubled, nothing dropped).
    """
    if not runs:
        raise CgmemUsageError("cgmem merge: no files given")
    warnings: list[str] = []
    first_name, first = runs[0]
    identity = machine_identity(first["machine"])
    owner: dict[str, str] = {}
    merged: list[dict[str, Any]] = []
    commits = {json.dumps(doc.get("commit"), sort_keys=True) for _, doc in runs}
    for name, doc in runs:
        other = machine_identity(doc["machine"])
        if other != identity:
            differ = ", ".join(
                f"{k} {identity[k]!r} vs {other[k]!r}" for k in identity if identity[k] != other[k]
            )
            if not allow_mixed_machines:
                raise CgmemUsageError(
                    f"cgmem merge: {name!r} comes from a different machine than "
                    f"{first_name!r} ({differ}); pass --allow-mixed-machines to merge anyway"
                )
            warnings.append(f"warning: {name!r} comes from a different machine ({differ})")
        for test in doc["tests"]:
            if test["nodeid"] in owner:
                raise CgmemUsageError(
                    f"cgmem merge: {test['nodeid']!r} is in both {owner[test['nodeid']]!r} "
                    f"and {name!r}"
                )
            owner[test["nodeid"]] = name
            merged.append(test)
    if len(commits) > 1:
        warnings.append("warning: the files come from different commits; keeping the first")
    tests = [TestRecord.from_dict(t) for t in merged]
    document = build_run(
        tests,
        first["machine"],
        first.get("commit"),
        created=max(str(doc.get("created", "")) for _, doc in runs),
        settings=first.get("settings"),
    )
    # keep what each file said about its tests, verbatim (violations, baseline findings)
    document["tests"] = sorted(merged, key=lambda t: t["nodeid"])
    document["merged_from"] = [name for name, _ in runs]
    return document, warnings
