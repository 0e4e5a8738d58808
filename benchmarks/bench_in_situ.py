"""Where a marked test's time goes in place, inside a pytest run (not in a loop).

Runs ``benchmarks/test_overhead.py``'s plain and marked variants with every reading the
region makes wrapped in a timer, and prints µs per marked test for each step, the test
body's own time in each variant, and the garbage collections inside each. Timers cost
about 0.2 µs a call. The first test of each variant is left out: it carries the
process's one-time costs (the CUDA context, the region's cuBLAS warm-up). Run on a GPU
machine: ``python benchmarks/bench_in_situ.py``.

``--loop N`` times the same steps in N regions in a loop instead (the tiny op inside each),
and prints what the region's start and stop take beyond the steps it times: the Python
between them, and whatever else the region pays in a loop.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
TOTALS: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)
STATE: dict[str, Any] = {"variant": "", "gc_t0": 0.0, "counting": False, "depth": 0}
SEEN: set[str] = set()
OUTERMOST: dict[str, float] = defaultdict(float)
"""Per variant, the time of the timed steps called directly by a region's start or stop
(a step inside another step, such as the stream id read by the workspace reset, is
counted once, in the step that called it)."""


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = STATE["depth"]
        STATE["depth"] = depth + 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            STATE["depth"] = depth
            if STATE["counting"]:
                seconds = time.perf_counter() - t0
                TOTALS[f"{STATE['variant']}: {name}"] += seconds
                if depth == 1:
                    OUTERMOST[STATE["variant"]] += seconds

    return wrapper


def on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        STATE["gc_t0"] = time.perf_counter()
    elif STATE["counting"]:
        key = f"{STATE['variant']}: gc generation {info['generation']}"
        TOTALS[key] += time.perf_counter() - STATE["gc_t0"]
        COUNTS[key] += 1


WHOLE = ("Region.start (all)", "Region.stop (all)")


def install_timers() -> None:
    """Wrap every reading and step a region makes in a timer (once per process)."""
    from pytest_cgmem.cuda import allocator, graphs, region
    from pytest_cgmem.cuda.nvml import Nvml

    for name in ("stats", "synchronize", "empty_cache", "reset_peaks", "mem_info"):
        setattr(allocator, name, timed(f"allocator.{name}", getattr(allocator, name)))
    wrapped: list[tuple[Any, str, str]] = [
        (region.Region, "start", WHOLE[0]),
        (region.Region, "stop", WHOLE[1]),
        (region, "_reset_workspaces", "cuBLAS workspace reset"),
        (region, "_stream_id", "current stream id"),
        (graphs.GraphLog, "start", "graph tracking start"),
        (graphs.GraphLog, "stop", "graph tracking stop"),
        (Nvml, "processes", "NVML per-process list"),
        (Nvml, "others_present", "NVML others_present"),
    ]
    for owner, attribute, label in wrapped:
        setattr(owner, attribute, timed(label, getattr(owner, attribute)))
    gc.callbacks.append(on_gc)


class Timers:
    def pytest_configure(self, config: pytest.Config) -> None:
        install_timers()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            module = getattr(item, "module", None)
            work = getattr(module, "tiny_gpu_work", None)
            if work is not None and not hasattr(work, "timed"):
                wrapped = timed("test body (tiny_gpu_work)", work)
                wrapped.timed = True  # type: ignore[attr-defined]
                module.tiny_gpu_work = wrapped  # type: ignore[union-attr]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Any:
        variant = STATE["variant"] = getattr(item, "originalname", item.name).removeprefix("test_")
        STATE["counting"] = variant in SEEN
        SEEN.add(variant)
        if STATE["counting"]:
            COUNTS[variant] += 1
        t0 = time.perf_counter()
        try:
            return (yield)
        finally:
            if STATE["counting"]:
                TOTALS[f"{variant}: whole protocol"] += time.perf_counter() - t0
            STATE["counting"] = False


def loop(n: int) -> None:
    """The same timers over ``n`` regions in a loop, a tiny op inside each, each region
    as a marked test makes it (its graph tracking left installed for the next)."""
    import torch

    from pytest_cgmem.cuda import region

    install_timers()
    x = torch.ones(256, device="cuda")
    region.warm_up(0)
    for counting in (False, True):  # a round of warm-up first
        STATE["variant"], STATE["counting"] = "loop", counting
        t0 = time.perf_counter()
        for _ in range(n):
            measured = region.Region("bench", linger_tracking=True).start()
            (x * 2).sum()
            measured.stop()
        whole = time.perf_counter() - t0
    STATE["counting"] = False
    print(f"{'step, in a loop of ' + str(n) + ' regions':<48}{'µs per region':>14}")
    steps = {key.split(": ", 1)[1]: total / n * 1e6 for key, total in TOTALS.items()}
    for name in sorted(steps):
        print(f"{name:<48}{steps[name]:>14.1f}")
    inside = OUTERMOST["loop"] / n * 1e6
    regions = steps.get(WHOLE[0], 0.0) + steps.get(WHOLE[1], 0.0)
    print(f"{'start + stop, less the steps timed inside':<48}{regions - inside:>14.1f}")
    print(f"{'the loop, per region (tiny op included)':<48}{whole / n * 1e6:>14.1f}")


def main() -> int:
    if "--loop" in sys.argv:
        loop(int(sys.argv[sys.argv.index("--loop") + 1]))
        return 0
    code = pytest.main(
        [str(HERE / "test_overhead.py"), "-q", "-p", "no:cacheprovider", "-k", "plain or marked"],
        plugins=[Timers()],
    )
    print(f"{'variant: step':<48}{'µs per test':>12}{'count':>8}")
    for key in sorted(TOTALS):
        variant = key.split(":")[0]
        tests = COUNTS[variant] or 1
        print(f"{key:<48}{TOTALS[key] / tests * 1e6:>12.1f}{COUNTS.get(key, 0):>8}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
