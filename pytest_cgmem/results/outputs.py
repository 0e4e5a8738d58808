"""Where the run's files go, checked before the first test (pure, but for the file system).

``problems`` returns one line per output that could not be written: the option (or ini
key) that named it, the path as given, and why. It writes nothing: a folder that does not
exist yet is not created here, only probed for where it would be made.

An output replaces only what it would have written itself (``existing_problem``): an
existing file must be empty or look like one of its kind, so that a mistyped option
(``--cgmem-save-baseline test_x.py``) never turns a test module, an ini file or another
tool's JSON into ours. A run file looks like one when it is a JSON object whose
``schema`` starts with ``pytest-cgmem/`` (any version: a stub of a killed run, a file of
an older release); the github-action-benchmark file when it is a JSON list of objects
that each have a ``name``; a journal when its first line starts as ours does;
an HTML report when it starts with ``<!DOCTYPE html`` or ``<html``. Only the first 4 KiB
are read, but for a run file whose ``schema`` is not its first key and a benchmark file,
which are parsed whole up to 64 MiB (a larger one is not taken for ours).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..units import MiB
from . import journal


@dataclass(frozen=True)
class Output:
    """One path the run reads or writes: where it was named, the path as given, its kind.

    ``kind``: ``"run"`` (a run file, with its journal next to it), ``"file"`` (the
    github-action-benchmark file: a JSON list), ``"dir"`` (a folder the run writes into),
    ``"input"`` (read only: held against the others), or ``"other"`` (another plugin's
    output: only held against the others). ``refreshes``: a run file that may share its
    path with the input (a saved baseline that refreshes the one read).
    """

    source: str
    path: str
    kind: str = "file"
    refreshes: bool = False

    def where(self) -> str:
        return f"{self.source}={self.path!r}"


def resolve(path: str, base: str | os.PathLike[str]) -> Path:
    """``path`` against ``base`` (the invocation folder), symlinks resolved: one file, one name."""
    return Path(os.path.realpath(Path(base) / os.path.expanduser(path)))


def names_folder(path: str) -> bool:
    """Whether ``path`` as given can only name a folder (``out/``, ``out/.``): resolved, it
    loses the slash, and a file would be written under the folder's own name."""
    seps = (os.sep, os.altsep) if os.altsep else (os.sep,)
    return path.endswith(seps) or os.path.basename(path) in (".", "..")


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if os.path.lexists(parent):
            return parent
    return Path(path.anchor or "/")


def _probe(folder: Path) -> str | None:
    """Why a file cannot be made in ``folder`` (by making one and removing it), or None."""
    try:
        fd, name = tempfile.mkstemp(prefix=".cgmem-probe.", dir=folder)
    except OSError as exc:
        return f"cannot create a file in {str(folder)!r} ({exc.strerror or exc})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


WRITES = {
    "run": "a pytest-cgmem run file",
    "file": "a github-action-benchmark file (a JSON list of named entries)",
    "journal": "a pytest-cgmem journal",
    "html": "an HTML page",
}
"""What each kind of output writes, as an error message names it."""
_HEAD = 4096
_PARSED_AT_MOST = 64 * MiB
_RUN_FILE_START = re.compile(rb'\A\s*\{\s*"schema"\s*:\s*"pytest-cgmem/')
_JOURNAL_START = b'{"journal":"pytest-cgmem/'
"""A journal's first bytes as the plugin writes them (a first write cut short is a prefix)."""
_JOURNAL_HEADER = re.compile(rb'\A\s*\{\s*"journal"\s*:\s*"pytest-cgmem/')
"""A journal's first line as its reader takes it: JSON, spaced or not."""


def output_problem(target: Path, kind: str) -> str | None:
    """Why an output of ``kind`` (a key of ``WRITES``) cannot be written at ``target``
    (resolved), or None: what is there is not its own, or no file can be made there."""
    problem = existing_problem(target, kind)
    if problem:
        return problem
    folder = _existing_ancestor(target)
    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder"
    return _probe(folder)


def existing_problem(target: Path, kind: str, remedy: str | None = None) -> str | None:
    """Why an output of ``kind`` may not replace what is at ``target``, or None: nothing is
    there, or an empty file, or a file that looks like one of that kind already."""
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"cannot use it ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return f"it is a folder; {remedy or 'give a file path'}"
    if not stat.S_ISREG(mode):
        return "it is not a regular file" + (f"; {remedy}" if remedy else "")
    try:
        if _looks_like(target, kind):
            return None
    except OSError as exc:
        return f"cannot read it to tell whether it is {WRITES[kind]} ({exc.strerror or exc})"
    return f"it exists and is not {WRITES[kind]}; {remedy or 'remove it or give another path'}"


def _looks_like(path: Path, kind: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
        size = os.fstat(handle.fileno()).st_size
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start and size <= len(head):
        return True
    if kind == "journal":
        return _JOURNAL_HEADER.match(head) is not None or _JOURNAL_START.startswith(head)
    if kind == "html":
        return start[:14].lower().startswith((b"<!doctype html", b"<html"))
    if kind == "run" and _RUN_FILE_START.match(head):
        return True
    if start[:1] != (b"{" if kind == "run" else b"[") or size > _PARSED_AT_MOST:
        return False
    data = _parsed(path)
    if kind == "run":
        return isinstance(data, dict) and str(data.get("schema")).startswith("pytest-cgmem/")
    return isinstance(data, list) and all(isinstance(e, dict) and "name" in e for e in data)


def _parsed(path: Path) -> Any:
    """The JSON in ``path``, or None where it holds none that Python can read."""
    try:
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        return None


def _journal_problem(run: Path) -> str | None:
    path = journal.journal_path(run)
    problem = existing_problem(path, "journal", "remove it or give the run file another path")
    return None if problem is None else f"its journal {path.name!r} is in the way: {problem}"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths (resolved) name one file: the same path, or a hard link."""
    if a == b:
        return True
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return False


def _dir_problem(target: Path) -> str | None:
    try:
        is_dir = stat.S_ISDIR(os.stat(target).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        is_dir = False  # not there yet: it is made under its nearest existing folder
    except OSError as exc:  # a name too long, a symlink loop: pathlib's is_dir raises
        return f"cannot use it ({exc.strerror or exc})"
    if not is_dir and os.path.lexists(target):
        return "it is not a folder"
    folder = target if is_dir else _existing_ancestor(target)
    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder"
    return _probe(folder)


def link_problem(path: str, base: str | os.PathLike[str], target: Path, kind: str) -> str | None:
    """Why ``path`` cannot be an output of ``kind`` where it opens something its resolved
    ``target`` does not name, or None: ``/dev/stdout`` on a pipe resolves to
    ``/proc/<pid>/fd/pipe:[n]``, a name only the kernel can follow."""
    if os.path.lexists(target) or not os.path.exists(Path(base) / os.path.expanduser(path)):
        return None
    return "it is not a folder" if kind == "dir" else "it is not a regular file"


def problems(outputs: Sequence[Output], base: str | os.PathLike[str]) -> list[str]:
    """One line per problem: a path that cannot be written, a run file another live run
    is writing, two outputs on one file (an input may share a path with a saved baseline
    only: ``--cgmem-baseline`` and ``--cgmem-save-baseline`` on one file refresh it)."""
    found: list[str] = []
    owners: dict[Path, Output] = {}
    for output in outputs:
        target = resolve(output.path, base)
        if not target.name and output.kind != "dir":  # the root: no file can be named there
            found.append(f"{output.where()}: it is a folder")
            continue
        problem = link_problem(output.path, base, target, output.kind)
        if problem:
            found.append(f"{output.where()}: {problem}")
            continue
        if output.kind in ("run", "file") and names_folder(output.path):
            found.append(f"{output.where()}: it names a folder; give a file path")
            continue
        claimed = [target]
        if output.kind == "run":
            claimed.append(journal.journal_path(target))
        for path in claimed:
            other = owners.get(path)
            if other is None:
                owners[path] = output
                continue
            refresh = other.refreshes or output.refreshes
            if {other.kind, output.kind} == {"run", "input"} and path == target and refresh:
                continue
            if "input" in (other.kind, output.kind):
                writer = other if output.kind == "input" else output
                advice = (
                    f"{writer.source} would write over the file this run reads: "
                    "give it another path"
                )
            else:
                advice = "give each output its own path"
            found.append(f"{output.where()}: the same file as {other.where()}; {advice}")
            break
        else:
            problem = None
            if output.kind == "run":
                holder = journal.busy(target)
                if holder:
                    problem = f"{holder} is writing it; give each concurrent run its own path"
            if problem is None and output.kind in ("run", "file"):
                problem = output_problem(target, output.kind)
            if problem is None and output.kind == "run":
                problem = _journal_problem(target)
            if output.kind == "dir":
                problem = _dir_problem(target)
            if problem:
                found.append(f"{output.where()}: {problem}")
    return found
