"""Where the run's files go, checked before the first test (pure, but for the file system).

``problems`` returns one line per output that could not be written: the option (or ini
key) that named it, the path as given, and why. It writes nothing: a folder that does not
exist yet is not created here, only probed for where it would be made.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import journal


@dataclass(frozen=True)
class Output:
    """One path the run reads or writes: where it was named, the path as given, its kind.

    ``kind``: ``"run"`` (a run file, with its journal next to it), ``"file"``, ``"dir"``
    (a folder the run writes into), ``"input"`` (read only: held against the others), or
    ``"other"`` (another plugin's output: only held against the others).
    """

    source: str
    path: str
    kind: str = "file"

    def where(self) -> str:
        return f"{self.source}={self.path!r}"


def resolve(path: str, base: str | os.PathLike[str]) -> Path:
    """``path`` against ``base`` (the invocation folder), symlinks resolved: one file, one name."""
    return Path(os.path.realpath(Path(base) / os.path.expanduser(path)))


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


def _file_problem(target: Path) -> str | None:
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        return f"cannot use it ({exc.strerror or exc})"
    if mode is not None and stat.S_ISDIR(mode):
        return "it is a folder; give a file path"
    if mode is not None and not stat.S_ISREG(mode):
        return "it is not a regular file"
    folder = _existing_ancestor(target)
    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder"
    return _probe(folder)


def _dir_problem(target: Path) -> str | None:
    if os.path.lexists(target) and not target.is_dir():
        return "it is not a folder"
    folder = target if target.is_dir() else _existing_ancestor(target)
    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder"
    return _probe(folder)


def problems(outputs: Sequence[Output], base: str | os.PathLike[str]) -> list[str]:
    """One line per problem: a path that cannot be written, a run file another live run
    is writing, two outputs on one file (an input may share a path with a run file only:
    ``--cgmem-baseline`` and ``--cgmem-save-baseline`` on one file refresh it)."""
    found: list[str] = []
    owners: dict[Path, Output] = {}
    for output in outputs:
        target = resolve(output.path, base)
        claimed = [target]
        if output.kind == "run":
            claimed.append(journal.journal_path(target))
        for path in claimed:
            other = owners.get(path)
            if other is None:
                owners[path] = output
                continue
            if {other.kind, output.kind} == {"run", "input"} and path == target:
                continue
            found.append(
                f"{output.where()}: the same file as {other.where()}; give each output its own path"
            )
            break
        else:
            problem = None
            if output.kind in ("run", "file"):
                problem = _file_problem(target)
            elif output.kind == "dir":
                problem = _dir_problem(target)
            if problem is None and output.kind == "run":
                holder = journal.busy(target)
                if holder:
                    problem = f"{holder} is writing it; give each concurrent run its own path"
            if problem:
                found.append(f"{output.where()}: {problem}")
    return found
