"""The GPU side of the resize and steady-state checks (the verdicts are in checks/resize).

How the figures are taken (one CUDA device: the current one):

- The check runs inside a measured region, which synchronizes and empties the cache
  first. ``empty_cache`` releases only segments with no live block, so the free space
  left inside partly used segments (earlier work of the test) is read at the start and
  subtracted: only cached-but-unused bytes that appear during the check are charged.
  Of those, the part in (non-expandable) segments that still hold a block from before
  the check is named in the message: ``empty_cache`` cannot release it.
- After each step: synchronize, read the allocator's stats and snapshot. Live blocks are
  told apart by (address, size); a block's step is the first step after which it was seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..checks.resize import (
    CheckViolation,
    SteadyFigures,
    StepFigures,
    resize_lines,
    resize_violations,
    resolve_slack,
    rounding_slack,
    steady_lines,
    steady_violations,
)
from ..failures import FigureUnavailable
from ..results.records import RegionResult
from ..units import parse_size
from . import allocator
from .allocator import current
from .region import Region


@dataclass(frozen=True)
class _State:
    allocated: int
    reserved: int
    segments: int
    blocks: frozenset[tuple[int, int]]
    expandable: bool
    pinned_free: int = 0


def _read_state(index: int, before: frozenset[tuple[int, int]] | None = None) -> _State:
    """Allocator figures of device ``index``. ``pinned_free``: free bytes in
    non-expandable segments holding a live block from ``before`` (any live block when
    ``before`` is None): space that ``empty_cache`` cannot give back."""
    allocator.synchronize(index)
    stats = allocator.stats(index)
    blocks: set[tuple[int, int]] = set()
    expandable = False
    pinned_free = 0
    for segment in allocator.segments(index):
        is_expandable = bool(segment.get("is_expandable", False))
        expandable = expandable or is_expandable
        offset = int(segment.get("address", 0))
        live: set[tuple[int, int]] = set()
        for block in segment.get("blocks", ()):
            # blocks carry their address; where one does not, blocks tile their segment
            address, nbytes = int(block.get("address", offset)), int(block["size"])
            offset = address + nbytes
            if str(block.get("state", "")).startswith("active"):
                live.add((address, nbytes))
        blocks |= live
        old = live if before is None else live & before
        if old and not is_expandable:
            pinned_free += int(segment.get("total_size", 0)) - sum(n for _, n in live)
    return _State(
        current(stats, "allocated_bytes"),
        current(stats, "reserved_bytes"),
        current(stats, "segment"),
        frozenset(blocks),
        expandable,
        pinned_free,
    )


def _finish(
    region: Region,
    record: Callable[[RegionResult], None],
    lines: list[str],
    extra: Mapping[str, Any],
    error: BaseException | None = None,
) -> None:
    result = region.stop(error)
    record(dataclasses.replace(result, extra={**result.extra, **extra, "lines": lines}))


def run_resize_check(
    resize: Callable[[Any], object],
    sizes: Sequence[Any],
    slack: object,
    record: Callable[[RegionResult], None],
    label: str = "resize_check",
    retain: object = 0,
) -> tuple[list[StepFigures], list[CheckViolation]]:
    """Call ``resize(n)`` for each size in a measured region; figures and violations."""
    fixed_slack = resolve_slack(slack)
    allowed = parse_size(retain)
    if not allocator.snapshots_available():
        raise FigureUnavailable(
            f"cgmem: {label} needs the allocator's blocks (its snapshot), which "
            f"backend:{allocator.backend()} does not keep; run it under backend:native"
        )
    region = Region(label).start()
    index = allocator.current_device()
    where = f"cuda:{index}"
    steps: list[StepFigures] = []
    try:
        start = _read_state(index)
        unused_start = start.reserved - start.allocated
        first_seen: dict[tuple[int, int], int] = {}
        for i, size in enumerate(sizes):
            resize(size)
            state = _read_state(index, start.blocks)
            live_blocks = state.blocks - start.blocks
            new = [b for b in live_blocks if b not in first_seen]
            for b in new:
                first_seen[b] = i
            for b in list(first_seen):
                if b not in live_blocks:
                    del first_seen[b]
            retained: dict[int, int] = {}
            for (address, nbytes), seen in first_seen.items():
                if seen < i and (address, nbytes) in live_blocks:
                    retained[seen] = retained.get(seen, 0) + nbytes
            live_sizes = [b[1] for b in live_blocks]
            unused = max(0, state.reserved - state.allocated - unused_start)
            steps.append(
                StepFigures(
                    step=i,
                    size=size,
                    live=sum(live_sizes),
                    unused=unused,
                    new=sum(b[1] for b in new),
                    slack=(
                        fixed_slack
                        if fixed_slack is not None
                        else rounding_slack(live_sizes, state.expandable)
                    ),
                    retained=retained,
                    allocated_total=state.allocated,
                    reserved_total=state.reserved,
                    retain=allowed,
                    pinned=min(unused, max(0, state.pinned_free - start.pinned_free)),
                )
            )
    except BaseException as exc:
        _finish(region, record, resize_lines(steps, label), _resize_extra(steps, []), exc)
        raise
    violations = resize_violations(steps, where, label)
    _finish(region, record, resize_lines(steps, label), _resize_extra(steps, violations))
    return steps, violations


def _resize_extra(
    steps: Sequence[StepFigures], violations: Sequence[CheckViolation]
) -> dict[str, Any]:
    return {
        "check": "resize_check",
        "steps": [s.to_dict() for s in steps],
        "violations": [v.message for v in violations],
    }


def run_steady(
    fn: Callable[[], object],
    warmup: int,
    repeat: int,
    record: Callable[[RegionResult], None],
    label: str = "steady",
) -> tuple[SteadyFigures, list[SteadyFigures], list[CheckViolation]]:
    """Call ``fn`` ``warmup`` times, then ``repeat`` times, reading figures after each."""
    if warmup < 0 or repeat < 1:
        raise ValueError(f"steady: need warmup >= 0 and repeat >= 1, got {warmup}, {repeat}")
    region = Region(label).start()
    index = allocator.current_device()
    after: list[SteadyFigures] = []
    base = SteadyFigures(0, 0, 0)
    try:
        start = _steady_state(index)
        for _ in range(warmup):
            fn()
        base = _steady_state(index, start)
        for _ in range(repeat):
            fn()
            after.append(_steady_state(index, start))
    except BaseException as exc:
        _finish(region, record, steady_lines(base, after, label), {"check": "steady"}, exc)
        raise
    violations = steady_violations(base, after, warmup, f"cuda:{index}", label)
    lines = steady_lines(base, after, label)
    if allocator.is_async_backend():
        lines.append(
            f"note: backend:{allocator.backend()} keeps no segment count (always 0): "
            "allocated and reserved bytes are checked, segments are not"
        )
    extra = {
        "check": "steady",
        "base": dataclasses.asdict(base),
        "calls": [dataclasses.asdict(a) for a in after],
        "violations": [v.message for v in violations],
    }
    _finish(region, record, lines, extra)
    return base, after, violations


def _steady_state(index: int, start: SteadyFigures | None = None) -> SteadyFigures:
    """Device totals after a synchronize; above ``start`` when it is given."""
    allocator.synchronize(index)
    stats = allocator.stats(index)
    zero = start or SteadyFigures(0, 0, 0)
    return SteadyFigures(
        current(stats, "allocated_bytes") - zero.allocated,
        current(stats, "reserved_bytes") - zero.reserved,
        current(stats, "segment") - zero.segments,
    )
