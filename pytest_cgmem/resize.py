"""Resize and steady-state checks: catch 2x-resident workspaces and retained views.

The decision logic (rounding slack, step and steady verdicts, message texts) is pure and
tested without a GPU. ``run_resize_check`` and ``run_steady`` drive the GPU; they reach
torch only through ``measure`` and import it lazily, so importing this module is cheap.

How the figures are taken (one CUDA device: the current one):

- The check runs inside a measured region, which synchronizes and empties the cache
  first. ``empty_cache`` releases only segments with no live block, so the free space
  left inside partly used segments (earlier work of the test) is read at the start and
  subtracted: only cached-but-unused bytes that appear during the check are charged.
- After each step: synchronize, read the allocator's stats and snapshot. Live blocks are
  told apart by (address, size); a block's step is the first step after which it was seen.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .units import format_size, parse_size

if TYPE_CHECKING:
    from .results import RegionResult

KiB = 2**10
MiB = 2**20
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


class CheckFailed(AssertionError):
    """A resize or steady-state check failed; the message lists every violation."""

    def __init__(self, violations: Iterable[CheckViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("\n".join(v.message for v in self.violations))


class ResizeCheckFailed(CheckFailed):
    """``cgmem.resize_check`` found cached-but-unused or retained bytes."""


class SteadyStateFailed(CheckFailed):
    """``cgmem.steady`` found growth after warm-up."""


for _cls in (CheckFailed, ResizeCheckFailed, SteadyStateFailed):
    _cls.__module__ = "pytest_cgmem"  # reads as pytest_cgmem.ResizeCheckFailed in failures


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
    ``retain``: the bytes from earlier steps allowed to stay allocated.
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
            found.append(
                CheckViolation(
                    label,
                    "unused",
                    f"cgmem: {label} {name}: {format_size(step.unused)} reserved but "
                    f"unused exceeds slack {format_size(step.slack)} (live "
                    f"{format_size(step.live)}, reserved {format_size(step.reserved)})\n"
                    f"  {UNUSED_CAUSE}\n  {UNUSED_FIX}",
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


def resolve_retain(retain: object) -> int:
    """Bytes from an int or a string such as '64 KiB'."""
    return parse_size(retain)


def resolve_slack(slack: object) -> int | None:
    """None (the allocator's rounding) or bytes from an int or a string such as '64 MiB'."""
    return None if slack is None else parse_size(slack)


# --- GPU side: everything below reaches torch through measure, imported lazily ---


@dataclass(frozen=True)
class _State:
    allocated: int
    reserved: int
    segments: int
    blocks: frozenset[tuple[int, int]]
    expandable: bool


def _read_state(index: int) -> _State:
    from .measure import torch

    torch.cuda.synchronize(index)
    stats = torch.cuda.memory_stats_as_nested_dict(index)
    blocks: set[tuple[int, int]] = set()
    expandable = False
    for segment in torch.cuda.memory._snapshot()["segments"]:
        if segment.get("device") != index:
            continue
        expandable = expandable or bool(segment.get("is_expandable", False))
        offset = int(segment.get("address", 0))
        for block in segment.get("blocks", ()):
            # blocks carry their address; where one does not, blocks tile their segment
            address, nbytes = int(block.get("address", offset)), int(block["size"])
            offset = address + nbytes
            if str(block.get("state", "")).startswith("active"):
                blocks.add((address, nbytes))
    return _State(
        int(stats["allocated_bytes"]["all"]["current"]),
        int(stats["reserved_bytes"]["all"]["current"]),
        int(stats["segment"]["all"]["current"]),
        frozenset(blocks),
        expandable,
    )


def _finish(
    region: Any,
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
    from . import measure
    from .measure import torch

    fixed_slack = resolve_slack(slack)
    allowed = resolve_retain(retain)
    region = measure.Region(label).start()
    index = torch.cuda.current_device()
    where = f"cuda:{index}"
    steps: list[StepFigures] = []
    try:
        start = _read_state(index)
        unused_start = start.reserved - start.allocated
        first_seen: dict[tuple[int, int], int] = {}
        for i, size in enumerate(sizes):
            resize(size)
            state = _read_state(index)
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
            steps.append(
                StepFigures(
                    step=i,
                    size=size,
                    live=sum(live_sizes),
                    unused=max(0, state.reserved - state.allocated - unused_start),
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
    from . import measure
    from .measure import torch

    if warmup < 0 or repeat < 1:
        raise ValueError(f"steady: need warmup >= 0 and repeat >= 1, got {warmup}, {repeat}")
    region = measure.Region(label).start()
    index = torch.cuda.current_device()
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
    extra = {
        "check": "steady",
        "base": dataclasses.asdict(base),
        "calls": [dataclasses.asdict(a) for a in after],
        "violations": [v.message for v in violations],
    }
    _finish(region, record, steady_lines(base, after, label), extra)
    return base, after, violations


def _steady_state(index: int, start: SteadyFigures | None = None) -> SteadyFigures:
    """Device totals after a synchronize; above ``start`` when it is given."""
    from .measure import torch

    torch.cuda.synchronize(index)
    stats = torch.cuda.memory_stats_as_nested_dict(index)
    zero = start or SteadyFigures(0, 0, 0)
    return SteadyFigures(
        int(stats["allocated_bytes"]["all"]["current"]) - zero.allocated,
        int(stats["reserved_bytes"]["all"]["current"]) - zero.reserved,
        int(stats["segment"]["all"]["current"]) - zero.segments,
    )
