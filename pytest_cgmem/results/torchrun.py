"""A pytest run that is one rank of a torchrun job: which rank, and one run file for all.

``torchrun --nproc-per-node N -m pytest`` starts N pytest processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each measures on its own device (``LOCAL_RANK``,
see ``session.py``) and, at the end, writes its run document to ``PATH.rankN`` (atomically,
as every run file); rank 0 waits for the others' files, merges them with its own and
writes the one run file. The files, not a collective, carry the records: a rank that
crashed or has no process group any more cannot hang rank 0, which waits at most
``gather_timeout()`` seconds and then writes what it has, saying which ranks are missing
(``"ranks": {"missing": [...]}``). Stale files of an earlier job are told apart by the
job's identity (torchrun's run id, master address and port, restart count and, on one
node, the agent's process id). Across several nodes ``PATH`` must be on a shared file
system.

In the merged file every region of rank r is labelled ``rankr`` (its call phase) or
``rankr/<label>``, its ``extra`` has ``rank``, and each violation names its rank.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..checks.budgets import Violation
from ..metrics import rank_label
from ..units import CgmemUsageError, parse_ratio, short_repr

if TYPE_CHECKING:  # the records and files are imported where a torchrun job uses them
    from .records import RegionResult, TestRecord

GATHER_TIMEOUT = 300.0
"""Seconds rank 0 waits for the other ranks' records (``CGMEM_GATHER_TIMEOUT``)."""
MAX_GATHER_TIMEOUT = 7 * 24 * 3600.0
"""The longest ``CGMEM_GATHER_TIMEOUT`` taken, a week: a rank that never comes must not
keep rank 0 (and so every rank) waiting for ever."""
_POLL = 0.1


def gather_timeout(environ: Mapping[str, str]) -> tuple[float, str | None]:
    """``CGMEM_GATHER_TIMEOUT`` (seconds) and None; the default where it is unset or empty.
    A value that is not a number of seconds > 0 and at most a week gives the default and
    the one line that says so: it is read at the run's end, when refusing it would cost
    the run file, so it is said with the run's other lines (``gather``)."""
    raw = environ.get("CGMEM_GATHER_TIMEOUT", "")
    if not raw.strip():
        return GATHER_TIMEOUT, None
    try:
        value = parse_ratio(raw)
    except CgmemUsageError:
        value = math.nan
    if value <= MAX_GATHER_TIMEOUT:
        return value, None
    return GATHER_TIMEOUT, (
        f"cgmem: CGMEM_GATHER_TIMEOUT={short_repr(raw)} is not a number of seconds > 0 and "
        f"at most {MAX_GATHER_TIMEOUT:g} (a week): used the default, {GATHER_TIMEOUT:g} s"
    )


@dataclass(frozen=True)
class Job:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    identity: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Job | None:
        """The job from torchrun's environment; None outside one (or where it is not
        readable: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` must be whole numbers)."""
        try:
            rank = int(environ["RANK"])
            world_size = int(environ["WORLD_SIZE"])
            local_rank = int(environ["LOCAL_RANK"])
        except (KeyError, ValueError):
            return None
        if not (0 <= rank < world_size and local_rank >= 0):
            return None
        parts = [
            environ.get("TORCHELASTIC_RUN_ID", ""),
            environ.get("MASTER_ADDR", ""),
            environ.get("MASTER_PORT", ""),
            environ.get("TORCHELASTIC_RESTART_COUNT", ""),
        ]
        if environ.get("LOCAL_WORLD_SIZE") == environ["WORLD_SIZE"]:  # one node: one agent
            parts += [socket.gethostname(), str(os.getppid())]
        return cls(rank, world_size, local_rank, "|".join(parts))


def rank_file(path: str, rank: int) -> str:
    return f"{path}.rank{rank}"


# -- a rank's records, named by rank ----------------------------------------------------------


def ranked_region(region: RegionResult, rank: int) -> RegionResult:
    """``region`` as rank ``rank``'s: labelled ``rank_label(rank, label)``, rank in extra."""
    return replace(
        region, label=rank_label(rank, region.label), extra={**region.extra, "rank": rank}
    )


def ranked_regions(regions: Iterable[RegionResult], rank: int) -> tuple[RegionResult, ...]:
    return tuple(ranked_region(r, rank) for r in regions)


def ranked_record(record: TestRecord, rank: int) -> TestRecord:
    """A test's record as rank ``rank``'s: its regions, checked labels and violations."""
    return replace(
        record,
        regions=ranked_regions(record.regions, rank),
        checked=tuple(rank_label(rank, label) for label in record.checked),
        violations=tuple(
            Violation(v.metric, v.limit, v.actual, v.where, rank_label(rank, v.label), rank)
            for v in record.violations
        ),
    )


def _merged_findings(findings: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not findings:
        return None
    return {
        "compared": sum(int(f.get("compared") or 0) for f in findings),
        "regressions": [c for f in findings for c in f.get("regressions") or ()],
        "improvements": [c for f in findings for c in f.get("improvements") or ()],
        "new": [n for f in findings for n in f.get("new") or ()],
        "sizes": [s for f in findings for s in f.get("sizes") or ()],
    }


def merge_records(by_rank: Mapping[int, Sequence[TestRecord]]) -> list[TestRecord]:
    """One record per test from every rank's records of it: the regions, checked labels and
    violations of each rank in rank order; failed where any rank failed."""
    tests: dict[str, list[TestRecord]] = {}
    for rank in sorted(by_rank):
        for record in by_rank[rank]:
            tests.setdefault(record.nodeid, []).append(ranked_record(record, rank))
    merged = []
    for parts in tests.values():
        first = parts[0]
        outcomes = [p.outcome for p in parts]
        merged.append(
            replace(
                first,
                outcome="failed" if "failed" in outcomes else first.outcome,
                regions=tuple(r for p in parts for r in p.regions),
                checked=tuple(c for p in parts for c in p.checked),
                violations=tuple(v for p in parts for v in p.violations),
                baseline=_merged_findings([p.baseline for p in parts if p.baseline is not None]),
            )
        )
    return merged


# -- the files --------------------------------------------------------------------------------


def _read(path: str, job: Job, rank: int) -> list[TestRecord] | None:
    """A rank file's records where it is this job's file of that rank, else None."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("job") != job.identity or data.get("rank") != rank:
            return None  # an earlier job's: this job's file will replace it
        from .records import TestRecord

        return [TestRecord.from_dict(t) for t in data["tests"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _hand_over(
    job: Job,
    document: Mapping[str, Any],
    path: str,
    lines: list[str],
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
) -> None:
    """Another rank: write the rank file, then wait until rank 0 has written the run file
    and removed it (``release``): torchrun stops every rank once one exits with a failure,
    so a rank whose tests failed must not exit before rank 0 is done."""
    from .runfile import write_json

    mine = rank_file(path, job.rank)
    try:
        write_json(mine, {**document, "job": job.identity, "rank": job.rank})
    except (OSError, ValueError) as exc:
        lines.append(f"cgmem: rank {job.rank} could not write {mine!r} for rank 0: {exc}")
        return
    while os.path.exists(mine):
        if clock() >= deadline:
            lines.append(
                f"cgmem: rank {job.rank} left its records in {mine}; rank 0 did not take them"
            )
            return
        sleep(_POLL)
    lines.append(f"cgmem: rank {job.rank} handed its records to rank 0 ({path})")


def release(job: Job, path: str) -> None:
    """Rank 0, once the run file is written: remove the rank files, which lets the other
    ranks exit."""
    if job.rank == 0:
        for rank in range(1, job.world_size):
            with contextlib.suppress(OSError):
                os.unlink(rank_file(path, rank))


def gather(
    job: Job,
    document: Mapping[str, Any],
    path: str,
    lines: list[str],
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> dict[str, Any] | None:
    """Rank 0: every rank's records merged into one run document, to be written to
    ``path`` (then ``release``). Another rank: writes its document to ``PATH.rankN``, waits
    for rank 0 to take it and returns None. What happened is added to ``lines``.
    ``timeout``: how long a rank waits (default ``gather_timeout(os.environ)``)."""
    if timeout is None:
        timeout, problem = gather_timeout(os.environ)
        if problem is not None:
            lines.append(problem)
    if job.rank != 0:
        _hand_over(job, document, path, lines, clock() + timeout, clock, sleep)
        return None
    from .records import TestRecord
    from .runfile import build_run

    by_rank = {0: [TestRecord.from_dict(t) for t in document["tests"]]}
    deadline = clock() + timeout
    while True:
        for rank in range(1, job.world_size):
            if rank not in by_rank:
                found = _read(rank_file(path, rank), job, rank)
                if found is not None:
                    by_rank[rank] = found
        if len(by_rank) == job.world_size or clock() >= deadline:
            break
        sleep(_POLL)
    missing = [r for r in range(job.world_size) if r not in by_rank]
    reasons = [] if document.get("complete", True) else [document.get("incomplete_reason")]
    if missing:
        reasons.append(f"rank(s) {', '.join(str(r) for r in missing)} sent no records")
    merged = build_run(
        merge_records(by_rank),
        document["machine"],
        document.get("commit"),
        created=document.get("created"),
        settings=document.get("settings"),
        complete=not reasons,
        incomplete_reason="; ".join(str(r) for r in reasons if r) or None,
        workers_lost=document.get("workers_lost") or (),
    )
    merged["ranks"] = {
        "world_size": job.world_size,
        "gathered": sorted(by_rank),
        "missing": missing,
    }
    if missing:
        names = ", ".join(str(r) for r in missing)
        lines.append(
            f"cgmem: rank(s) {names} sent no records within {timeout:g} s "
            f"({rank_file(path, missing[0])}...); the run file says so in 'ranks'"
        )
    else:
        lines.append(f"cgmem: gathered the records of {job.world_size} rank(s)")
    return merged
