"""The journal: a run file's tests, one line each as they finish, so that a run killed at
any point leaves every finished test behind (docs/json.md, "A run that did not finish").

While a run is under way its run file (``PATH``) is a stub that says so (``"complete":
false``, and a ``journal`` naming ``PATH.journal`` and the run's id), and ``PATH.journal``
gets one JSON line per event, written and flushed to the operating system at once:

    {"journal": "pytest-cgmem/1", "run": "<id>", "pid": 4242, "host": "runner-3", "started": "..."}
    {"machine": {...}}                      the measuring process's machine, once known
    {"test": {...}}                         one measured test's record, as in the run file
    {"rerun": "<nodeid>"}                   that attempt will be run again: its record goes
    {"worker_lost": {...}}                  a pytest-xdist worker died

A clean finish replaces the stub with the whole run file atomically and deletes the
journal. Readers of a stub fold the journal back in (``read``). The writer holds an
exclusive ``flock`` on the journal for the whole run: a second run on the same path is
refused while the first is alive, and a reader can tell a run still going from a dead one.
The lock goes with the process, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..units import CgmemUsageError, short_repr
from .jsonio import (
    Refused,
    dumps_line,
    loads,
    not_utf8,
    overwrite_json,
    valid_text,
    write_json,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, runs on one path are not refused
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".journal"
FORMAT = "pytest-cgmem/1"
KINDS = ("test", "machine", "rerun", "worker_lost")


def journal_path(run_path: str | os.PathLike[str]) -> Path:
    """The journal beside a run file. The run file names its journal, so the journal's
    name is one every reader can read: a byte of the run file's name that is not UTF-8 is
    written out (``r\\xff.json`` for ``r\\udcff.json``: ``valid_text``), and a backslash
    becomes ``_`` (Windows takes a backslash for a folder)."""
    run = Path(run_path)
    return run.with_name(valid_text(run.name).replace("\\", "_") + SUFFIX)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class JournalBusy(CgmemUsageError):
    """Another live run holds the journal: it is writing the same run file."""


def _header(fd: int) -> dict[str, Any]:
    """The journal's first line (who holds it), or {} when it cannot be read."""
    try:
        with open(os.dup(fd), encoding="utf-8", errors="replace") as handle:
            handle.seek(0)
            first = handle.readline()
        data = loads(first)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holder(header: Mapping[str, Any]) -> str:
    if not header.get("pid"):
        return "another pytest run"
    return (
        f"another pytest run (pid {header.get('pid')} on {header.get('host')}, started "
        f"{header.get('started')})"
    )


def busy(run_path: str | os.PathLike[str]) -> str | None:
    """Who holds ``run_path``'s journal now (a live run writing it), or None. Creates nothing."""
    return _busy(journal_path(run_path))


def _busy(path: Path) -> str | None:
    if fcntl is None:
        return None
    try:
        fd = _open_regular(path)
    except (OSError, NotRegular):
        return None  # nothing there, or no journal of a run: nothing holds it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(_header(fd))
        except OSError:
            return None  # a file system without locks: nothing to say
        return None
    finally:
        os.close(fd)  # closing releases a lock taken here


class NotRegular(Exception):
    """A path to read is not a regular file (a FIFO: reading it could wait forever)."""


def _open_regular(path: Path) -> int:
    """``path`` opened to read, without waiting (a FIFO with no writer would block the
    open itself); NotRegular for anything but a regular file."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise NotRegular
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # it changed since
        os.close(fd)
        raise NotRegular
    return fd


def _lock(path: Path) -> int:
    """Open ``path`` (created if need be) and take its exclusive lock; JournalBusy if held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            header = _header(fd)
            os.close(fd)
            raise JournalBusy(
                f"{_holder(header)} is writing this run file; give each concurrent run its own path"
            ) from None
        except OSError:
            return fd  # a file system without locks: journal anyway, unguarded
        try:  # a run that just finished may have removed the file we opened: open it anew
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


class Journal:
    """The writer's side: started before the first test, appended to as tests finish."""

    def __init__(self, run_path: Path, fd: int, stub: Mapping[str, Any]) -> None:
        self.run_path = run_path
        self.path = journal_path(run_path)
        self._fd: int | None = fd
        self._stub = stub

    @classmethod
    def start(cls, run_path: str | os.PathLike[str], stub: Mapping[str, Any]) -> Journal:
        """Lock the journal, replace the run file with ``stub`` (which names the journal and
        the run's id), and start the journal afresh with its header line. Where that fails
        (a full disk), a journal it left empty goes, and a stub it wrote says why and names
        no journal (or goes, where even that cannot be written): the run stops on the error,
        and no file says it may still be going."""
        run = Path(run_path)
        run.parent.mkdir(parents=True, exist_ok=True)
        fd = _lock(journal_path(run))
        journal = cls(run, fd, dict(stub))
        stub_written = False
        try:
            write_json(run, stub)
            stub_written = True
            os.ftruncate(fd, 0)
            journal._write(
                {
                    "journal": FORMAT,
                    "run": stub["journal"]["run"],
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": now(),
                }
            )
        except BaseException as exc:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size == 0:
                    os.unlink(journal.path)
            if stub_written:
                stopped = {k: v for k, v in stub.items() if k != "journal"}
                why = f"the run stopped before its first test: its journal could not start: {exc}"
                try:
                    overwrite_json(run, {**stopped, "incomplete_reason": why})
                except (OSError, ValueError):
                    with contextlib.suppress(OSError):
                        os.unlink(run)  # rather than a stub saying the run may be going
            journal.close()
            raise
        return journal

    def _write(self, data: Mapping[str, Any]) -> None:
        self._write_line(dumps_line(dict(data)))

    def _write_line(self, text: str) -> None:
        """One whole line, or none: a write the disk cut short is cut back off, or the
        next line would join it and neither would read back (nor any line after them,
        once the run is killed)."""
        if self._fd is None:
            raise OSError(f"the journal {str(self.path)!r} is closed")
        line = text.encode("utf-8")
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while line:
                written = os.write(self._fd, line)
                line = line[written:]
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise

    def append(self, kind: str, data: Any) -> None:
        """One line: ``{kind: data}``; it is in the operating system's hands on return, so it
        outlives the process (a power loss may still take it: nothing is fsynced per test)."""
        if kind not in KINDS:
            raise ValueError(f"unknown journal line {kind!r}")
        self._write({kind: data})

    def append_json(self, kind: str, text: str) -> None:
        """``append`` for data already written as JSON, as ``compact`` writes it."""
        if kind not in KINDS:
            raise ValueError(f"unknown journal line {kind!r}")
        self._write_line(f'{{"{kind}":{text}}}\n')

    def finish(self, document: Mapping[str, Any]) -> None:
        """The whole run file in place of the stub (atomically), then no journal. A closed
        journal is no longer this run's to finish, nor a removed one (alone, or with its
        folder by a workspace's clean-up) where another run has come to the path since,
        whose file this run's would replace. A run file that cannot be written leaves the
        stub saying why, where it can."""
        if self._fd is None:
            raise OSError(f"the journal {str(self.path)!r} is closed")
        if not (self._holds_the_path() or self._path_left_alone()):
            self.close()
            raise OSError(
                f"its journal {str(self.path)!r} was removed during the run, and another run "
                "has started on the path since: the file there is not this run's to replace"
            )
        try:
            self.run_path.parent.mkdir(parents=True, exist_ok=True)  # a clean-up took it
            write_json(self.run_path, document)
        except (OSError, ValueError) as exc:
            why = f"the run file could not be written: {exc}"
            with contextlib.suppress(OSError, ValueError):
                write_json(self.run_path, {**self._stub, "incomplete_reason": why})
            raise
        if self._holds_the_path():
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self.close()

    def _path_left_alone(self) -> bool:
        """Where the journal was removed: whether no other run has come to the path since,
        which has its own journal or stub there (no live run holds a journal, and the file
        at the path is this run's stub, or none)."""
        if _busy(self.path) is not None:
            return False
        try:
            text = self.run_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return False
        try:
            there = loads(text)
        except ValueError:
            return False
        return isinstance(there, dict) and there.get("journal") == self._stub.get("journal")

    def _holds_the_path(self) -> bool:
        """Whether the journal at the path is still the file this run locked."""
        if self._fd is None:
            return False
        try:
            return os.path.samestat(os.fstat(self._fd), os.stat(self.path))
        except OSError:
            return False

    def close(self) -> None:
        """Release the lock and leave the journal where it is (the stub still names it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class Contents:
    """What a reader found in a journal."""

    tests: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] | None = None
    workers_lost: list[dict[str, Any]] = field(default_factory=list)
    #: what the reader adds to the run's incomplete_reason (a cut last line, a live run)
    notes: list[str] = field(default_factory=list)


class JournalError(ValueError):
    """A journal line that cannot be read (not the last one, which may be cut off)."""


def read(
    run_path: str | os.PathLike[str],
    stub: Mapping[str, Any],
    record_problem: Callable[[Mapping[str, Any], str], str | None] | None = None,
) -> Contents:
    """The tests, machine and lost workers the journal named by ``stub`` (a run file's
    ``journal``) holds. A later line for the same test replaces an earlier one, and a
    ``rerun`` line withdraws it (an attempt pytest-rerunfailures runs again).

    ``record_problem(test, "$.test")`` says what is wrong with a test line's record, if
    anything (``runfile.record_problem``): such a line is a JournalError naming it.
    """
    name = str(stub.get("file") or "")
    found = Contents()
    try:
        # beside the file itself: a run writes its journal beside the run file a link names
        path = Path(os.path.realpath(run_path)).with_name(name)
        with open(_open_regular(path), "rb") as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError:
        found.notes.append(f"its journal {name!r} is missing, so no test survives")
        return found
    except NotRegular:
        raise JournalError(f"its journal {name!r} is not a regular file") from None
    except UnicodeDecodeError as exc:
        raise JournalError(f"its journal {name!r} is not UTF-8 text ({not_utf8(exc)})") from None
    except OSError as exc:
        raise JournalError(f"cannot read its journal {name!r} ({exc.strerror or exc})") from None
    except ValueError as exc:  # a name such as '.', a NUL in it
        raise JournalError(f"cannot read its journal {name!r}: {exc}") from None
    if not text:  # killed between writing the stub and the journal's first line
        found.notes.append(f"its journal {name!r} is empty, so no test survives")
        return found
    lines = text.split("\n")
    cut = lines.pop()  # '' when the last line ended with its newline
    header: Any = None
    with contextlib.suppress(ValueError):
        header = loads(lines[0]) if lines else None
    if not isinstance(header, dict) or header.get("journal") != FORMAT:
        raise JournalError(f"its journal {name!r} has no pytest-cgmem header line")
    if header.get("run") != stub.get("run"):
        found.notes.append(
            f"its journal {name!r} belongs to another run, so no test of this one survives"
        )
        return found
    tests: dict[str, dict[str, Any]] = {}
    lost: dict[tuple[Any, Any], dict[str, Any]] = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            data = loads(line)
        except Refused as exc:
            raise JournalError(f"its journal {name!r} line {number} {exc.lead} {exc}") from None
        except ValueError as exc:
            raise JournalError(f"its journal {name!r} line {number}: {exc}") from None
        if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in KINDS:
            raise JournalError(
                f"its journal {name!r} line {number}: expected one of "
                f"{', '.join(repr(k) for k in KINDS)} as its only key"
            )
        ((kind, value),) = data.items()
        if kind == "test":
            if not isinstance(value, dict):
                raise JournalError(
                    f"its journal {name!r} line {number}: a test that is not an object: "
                    f"{short_repr(value)}"
                )
            if not isinstance(value.get("nodeid"), str):
                raise JournalError(
                    f"its journal {name!r} line {number}: a test whose nodeid is not a string"
                )
            problem = record_problem(value, "$.test") if record_problem else None
            if problem:
                raise JournalError(f"its journal {name!r} line {number}: {problem}")
            tests.pop(value["nodeid"], None)  # a rerun: the last attempt, in its place
            tests[value["nodeid"]] = value
        elif kind == "machine":
            if not isinstance(value, dict):
                raise JournalError(f"its journal {name!r} line {number}: expected an object")
            found.machine = value
        elif kind == "rerun":
            if not isinstance(value, str):
                raise JournalError(f"its journal {name!r} line {number}: a rerun without a nodeid")
            tests.pop(value, None)
        else:
            if not isinstance(value, dict):
                raise JournalError(f"its journal {name!r} line {number}: expected an object")
            key = (value.get("worker"), value.get("when"))
            if not all(isinstance(part, str) for part in key):
                raise JournalError(
                    f"its journal {name!r} line {number}: a lost worker without its id and "
                    "time as strings"
                )
            lost[key] = value
    if cut:
        found.notes.append(f"the last line of its journal was cut off ({len(cut.encode())} bytes)")
    found.tests = list(tests.values())
    found.workers_lost = list(lost.values())
    holder = _busy(path)
    if holder:
        found.notes.append(f"{holder} still holds its journal: the run is still going")
    return found
