"""Resize and steady-state checks on figures: 2x-resident workspaces, retained views,
growth after warm-up.

The decision logic (rounding slack, step and steady verdicts, message texts) is pure and
tested without a GPU; ``cuda/resize.py`` takes the figures on the GPU.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..units import MiB, format_size, parse_size

# torch's CUDACachingAllocator constants (c10/core/AllocatorConfig.h, CUDACachingAllocator.cpp)
MIN_BLOCK = 512  # every request rounds up to a multiple of 512 B
SMALL_SIZE = 1 * MiB  # requests up to 1 MiB go to the small pool...
SMALL_BUFFER = 2 * MiB  # ...and are packed into 2 MiB segments
MIN_LARGE_ALLOC = 10 * MiB  # large requests under 10 MiB share 20 MiB segments
LARGE_BUFFER = 20 * MiB
ROUND_LARGE = 2 * MiB  # larger requests get their own segment, rounded up to 2 MiB
# with expandable_segments:True one segment per pool and stream grows in pages of
# 20 MiB (large pool) or 2 MiB (small pool)

UNUSED_CAUSE = (
    "likely cause: memory freed by the resize went back to PyTorch's caching allocator, "
    "not to the device, and the new buffer could not reuse it, so old and new are both "
    "reserved"
)
UNUSED_FIX = (
    "fix: call torch.cuda.empty_cache() between freeing the old buffer and allocating "
    "the new one, or reserve the worst case up front"
)
PINNED_NOTE = (
    "{pinned} of it is free space in segments that also hold memory allocated before "
    "the check (earlier work, a workspace made before it): empty_cache() cannot release "
    "a segment while one block in it is live, so the freed buffer stays reserved; free "
    "or move that earlier memory, or allocate the workspace before it"
)
RETAINED_CAUSE = (
    "likely cause: a view or reference into the old buffer (a slice kept by another "
    "micro-batch, a cached output) keeps the whole old buffer allocated"
)
RETAINED_FIX = (
    "fix: drop every view of the old buffer before resizing, or copy out the part that "
    "must outlive it (.cpu(), or .clone() and allow its bytes with retain=)"
)
STEADY_CAUSES = {
    "reserved": "likely cause: the allocator reserves more device memory on every call: "
    "a buffer that grows each step, or freed blocks that the cache cannot reuse",
    "segments": "likely cause: every call makes the allocator cudaMalloc a new segment: "
    "a new, larger size that no cached block fits",
    "allocated": "likely cause: something allocated in each call stays allocated: a "
    "per-call leak (outputs kept in a list, a cache keyed by call) or a workspace that "
    "grows every step",
}
STEADY_METRICS = ("reserved", "segments", "allocated")
_METRIC_NAMES = {
    "reserved": "reserved bytes",
    "segments": "segment count",
    "allocated": "allocated bytes",
}


@dataclass(frozen=True)
class CheckViolation:
    """One failed check: which check, where, and the text a user reads."""

    check: str
    kind: str
    message: str


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def rounding_slack(block_sizes: Iterable[int], expandable: bool = False) -> int:
    """Bytes the caching allocator's rounding alone may leave reserved but unused.

    ``block_sizes`` are the live blocks the check allocated (already multiples of 512 B).
    Default allocator: blocks up to 1 MiB share 2 MiB small segments; blocks over 1 MiB
    and under 10 MiB share 20 MiB segments; bigger blocks get their own segment rounded
    up to 2 MiB. Expandable segments: the pool's segment is mapped in pages of 20 MiB
    (large pool) or 2 MiB (small pool), so up to one page per pool is rounding.
    """
    small = mid = big_waste = 0
    for raw in block_sizes:
        size = _round_up(max(int(raw), 1), MIN_BLOCK)
        if size <= SMALL_SIZE:
            small += size
        elif expandable or size < MIN_LARGE_ALLOC:
            mid += size
        else:
            big_waste += _round_up(size, ROUND_LARGE) - size
    if expandable:
        return (SMALL_BUFFER if small else 0) + (LARGE_BUFFER if mid else 0)
    return (
        (_round_up(small, SMALL_BUFFER) - small) + (_round_up(mid, LARGE_BUFFER) - mid) + big_waste
    )


@dataclass(frozen=True)
class StepFigures:
    """What one resize step left behind, in bytes, on one device.

    ``live``: bytes in blocks the check allocated that are still allocated.
    ``unused``: reserved-but-unallocated bytes beyond those at the start (never < 0).
    ``reserved``: ``live + unused``, what the check holds on the device.
    ``new``: bytes first seen after this step. ``retained``: bytes first seen after an
    earlier step, still allocated although this step allocated new memory, by that step
    (0-based index). ``slack``: the cached-but-unused bytes allowed for this step;
    ``retain``: the bytes from earlier steps allowed to stay allocated. ``pinned``: the
    part of ``unused`` that sits in (non-expandable) segments still holding a block
    allocated before the check, which ``empty_cache`` cannot release.
    """

    step: int
    size: object
    live: int
    unused: int
    new: int
    slack: int
    retained: Mapping[int, int] = dataclasses.field(default_factory=dict)
    allocated_total: int = 0
    reserved_total: int = 0
    retain: int = 0
    pinned: int = 0

    @property
    def reserved(self) -> int:
        return self.live + self.unused

    @property
    def held(self) -> int:
        """Bytes from earlier steps still allocated after a step that allocated anew."""
        return sum(self.retained.values()) if self.new > 0 else 0

    @property
    def over(self) -> bool:
        return self.unused > self.slack or self.held > self.retain

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step + 1,
            "size": repr(self.size),
            "live": self.live,
            "unused": self.unused,
            "reserved": self.reserved,
            "new": self.new,
            "slack": self.slack,
            "retain": self.retain,
            "retained": {str(k + 1): v for k, v in self.retained.items()},
            "allocated_total": self.allocated_total,
            "reserved_total": self.reserved_total,
            "pinned": self.pinned,
        }


def _step_name(step: StepFigures, steps: int, where: str) -> str:
    return f"step {step.step + 1}/{steps}, resize({step.size!r}) on {where}"


def resize_violations(
    steps: Sequence[StepFigures], where: str = "cuda:0", label: str = "resize_check"
) -> list[CheckViolation]:
    """Every step whose cached-but-unused bytes exceed its slack, or that retains bytes."""
    found: list[CheckViolation] = []
    sizes = {s.step: s.size for s in steps}
    for step in steps:
        name = _step_name(step, len(steps), where)
        if step.unused > step.slack:
            pinned = min(step.pinned, step.unused)
            note = f"\n  {PINNED_NOTE.format(pinned=format_size(pinned))}" if pinned else ""
            found.append(
                CheckViolation(
                    label,
                    "unused",
                    f"cgmem: {label} {name}: {format_size(step.unused)} reserved but "
                    f"unused exceeds slack {format_size(step.slack)} (live "
                    f"{format_size(step.live)}, reserved {format_size(step.reserved)})\n"
                    f"  {UNUSED_CAUSE}\n  {UNUSED_FIX}{note}",
                )
            )
        if step.held > step.retain:
            held = step.held
            allowed = f", allowed {format_size(step.retain)}" if step.retain else ""
            origins = ", ".join(
                f"{format_size(n)} from step {k + 1}, resize({sizes.get(k)!r})"
                for k, n in sorted(step.retained.items())
            )
            found.append(
                CheckViolation(
                    label,
                    "retained",
                    f"cgmem: {label} {name}: {format_size(held)} allocated by earlier "
                    f"steps is still allocated ({origins}; live "
                    f"{format_size(step.live)}{allowed})\n"
                    f"  {RETAINED_CAUSE}\n  {RETAINED_FIX}",
                )
            )
    return found


def resize_lines(steps: Sequence[StepFigures], label: str = "resize_check") -> list[str]:
    """The per-step table for the ``cgmem`` report section."""
    lines = [f"{label}: step, size, live, reserved, unused (slack), retained"]
    for s in steps:
        retained = format_size(s.held) if s.held else "-"
        verdict = "OVER" if s.over else "ok"
        lines.append(
            f"  {s.step + 1}: resize({s.size!r}) live {format_size(s.live)}, reserved "
            f"{format_size(s.reserved)}, unused {format_size(s.unused)} "
            f"({format_size(s.slack)}), retained {retained}  {verdict}"
        )
    return lines


@dataclass(frozen=True)
class SteadyFigures:
    """Allocator figures after one call, above those at the check's start (after its
    ``empty_cache``): allocated bytes, reserved bytes, segment count."""

    allocated: int
    reserved: int
    segments: int

    def get(self, metric: str) -> int:
        return int(getattr(self, metric))


def _format(metric: str, value: float) -> str:
    if metric == "segments":
        return f"{value:g}" if value != int(value) else str(int(value))
    return format_size(value)


def _signed(metric: str, value: float) -> str:
    return ("+" if value >= 0 else "-") + _format(metric, abs(value))


def steady_violations(
    base: SteadyFigures,
    after: Sequence[SteadyFigures],
    warmup: int,
    where: str = "cuda:0",
    label: str = "steady",
) -> list[CheckViolation]:
    """A violation for each metric that ended above its value after warm-up."""
    found: list[CheckViolation] = []
    if not after:
        return found
    for metric in STEADY_METRICS:
        growth = after[-1].get(metric) - base.get(metric)
        if growth <= 0:
            continue
        values = [base.get(metric), *(a.get(metric) for a in after)]
        deltas = ", ".join(_signed(metric, b - a) for a, b in itertools.pairwise(values))
        per_call = growth / len(after)
        found.append(
            CheckViolation(
                label,
                metric,
                f"cgmem: {label}: {_METRIC_NAMES[metric]} grew by "
                f"{_format(metric, per_call)} per call over {len(after)} calls after "
                f"{warmup} warm-up call(s) on {where} ({_format(metric, values[0])} -> "
                f"{_format(metric, values[-1])}: {deltas})\n  {STEADY_CAUSES[metric]}",
            )
        )
    return found


def steady_lines(
    base: SteadyFigures, after: Sequence[SteadyFigures], label: str = "steady"
) -> list[str]:
    lines = [f"{label}: after warm-up, then after each call: allocated, reserved, segments"]
    for i, f in enumerate([base, *after]):
        name = "warm-up" if i == 0 else f"call {i}"
        lines.append(
            f"  {name}: {format_size(f.allocated)}, {format_size(f.reserved)}, {f.segments}"
        )
    return lines


def resolve_slack(slack: object) -> int | None:
    """None (the allocator's rounding) or bytes from an int or a string such as '64 MiB'."""
    return None if slack is None else parse_size(slack)
