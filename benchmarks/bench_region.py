"""Where a measured region's time goes: each step of start/stop timed on its own.

Run on a GPU machine: ``python benchmarks/bench_region.py [--n 2000] [--profile]``. Prints
µs per call, median of five batches, for the whole region and for the torch/NVML calls it
makes, and last the region's Python alone (its torch and CUDA calls answered by stubs);
``--profile`` adds the functions a region spends most in (cProfile over n regions).

The first rows (the region as a marked test makes it, with its graph tracking left installed
between regions; the same installing and removing the tracking each time, as a region of
the fixture does; without graph tracking; the floor, the floor with
pure-Python filler between its calls, the filler alone, the tiny op) are timed in turn,
batch by batch, after a round of warm-up batches, so that a process or GPU that speeds up
as it runs does not favour whichever row comes later. Three rows time single calls:
emptying a cache that holds a freed 2 MiB segment (what a region's start does after a
test that freed its tensors; the plain ``empty_cache`` row finds nothing to free),
``cudaMemGetInfo`` right after it, and the next tensor, which the driver provides again.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from pytest_cgmem.cuda import allocator
from pytest_cgmem.cuda import region as measure
from pytest_cgmem.cuda.graphs import GraphLog, release_tracking
from pytest_cgmem.cuda.nvml import nvml


def interleaved_per_call_us(fns: list[Callable[[], object]], n: int) -> list[float]:
    """µs per call of each function: the median of five batches of ``n`` calls, the
    functions' batches in turn, after one warm-up round."""
    batches: list[list[float]] = [[] for _ in fns]
    for round_ in range(6):
        for fn, times in zip(fns, batches, strict=True):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            if round_:
                times.append((time.perf_counter() - start) / n * 1e6)
    return [statistics.median(times) for times in batches]


def per_call_us(fn: Callable[[], object], n: int) -> float:
    return interleaved_per_call_us([fn], n)[0]


def each_call_us(prepare: Callable[[], object], fn: Callable[[], object], n: int) -> float:
    """Median µs of ``fn`` alone, each call timed on its own after an untimed ``prepare``."""
    times = []
    for _ in range(n):
        prepare()
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    n = options.n
    x = torch.ones(256, device="cuda")
    measure.warm_up(0)
    meter = nvml()
    cudart = torch.cuda.cudart()  # type: ignore[no-untyped-call]

    def region(track_graphs: bool = True, linger: bool = True) -> None:
        """A marked test's region: its graph tracking stays installed for the next one."""
        r = measure.Region("bench", track_graphs=track_graphs, linger_tracking=linger).start()
        (x * 2).sum()
        r.stop()

    junk: list[dict[str, Any]] = [{"a": i, "b": str(i), "c": [i]} for i in range(2000)]

    def filler() -> int:
        """3-6 µs of pure Python on the H200 host; seven of them take about what the
        region's own Python takes."""
        total = 0
        for item in junk[::60]:
            total += item["a"] + len(item["b"]) + len(item["c"])
        return total

    def floor(fill: bool = False) -> None:
        """The region's torch and driver calls alone, each through its cheapest binding;
        with ``fill``, Python work between them as the region has (do the calls cost more
        when they do not follow each other at once?)."""
        torch._C._cuda_synchronize()
        torch._C._cuda_emptyCache()
        _ = fill and filler()
        torch._C._cuda_memoryStats(0)
        torch._C._cuda_resetPeakMemoryStats(0)
        _ = fill and filler()
        cudart.cudaMemGetInfo(0)
        _ = fill and filler()
        (x * 2).sum()
        _ = fill and filler()
        torch._C._cuda_synchronize()
        _ = fill and filler()
        torch._C._cuda_memoryStats(0)
        _ = fill and filler()
        cudart.cudaMemGetInfo(0)
        _ = fill and filler()

    def filler_alone() -> None:
        for _ in range(7):
            filler()

    def graph_tracking() -> None:
        GraphLog().start().stop(measure_pools=False)

    headline = [
        ("region start+stop (as a marked test)", lambda: region()),
        ("region, tracking installed and removed", lambda: region(linger=False)),
        ("region without graph tracking", lambda: region(False)),
        ("its torch and driver calls alone (the floor)", floor),
        ("the floor, Python filler between its calls", lambda: floor(fill=True)),
        ("the filler alone", filler_alone),
        ("tiny op (x * 2).sum()", lambda: (x * 2).sum()),
    ]
    rows = [
        ("graph tracking alone (install, remove)", graph_tracking),
        ("reset cuBLAS workspaces", lambda: measure._reset_workspaces([0])),
        ("warm handles (a fill and a tiny GEMM)", lambda: measure._warm_handles(0)),
        ("allocator stats (_cuda_memoryStats)", lambda: allocator.stats(0)),
        ("synchronize", lambda: torch.cuda.synchronize(0)),
        ("synchronize, torch._C directly", torch._C._cuda_synchronize),
        ("current_device", torch.cuda.current_device),
        ("device_count", torch.cuda.device_count),
        ("current stream id", lambda: measure._stream_id(0)),
        ("empty_cache", torch.cuda.empty_cache),
        ("reset_peak_memory_stats", lambda: torch.cuda.reset_peak_memory_stats(0)),
        ("mem_get_info", lambda: torch.cuda.mem_get_info(0)),
        ("cudaMemGetInfo, torch.cuda.cudart() directly", lambda: cudart.cudaMemGetInfo(0)),
        ("NVML per-process list", lambda: meter.processes(0)),
    ]
    print(f"{'step':<42}{'µs per call':>12}")
    timed = interleaved_per_call_us([fn for _, fn in headline], n)
    release_tracking()
    for (name, _), us in zip(headline, timed, strict=True):
        print(f"{name:<42}{us:>12.1f}")
    for name, fn in rows:
        print(f"{name:<42}{per_call_us(fn, n):>12.1f}")

    def cache_a_segment() -> None:
        """Leave one freed 2 MiB block in the cache, as a tiny test leaves its tensors."""
        torch.empty(2**19, device="cuda")

    def cache_and_empty() -> None:
        cache_a_segment()
        torch._C._cuda_emptyCache()

    freeing = [
        ("empty_cache freeing a cached 2 MiB segment", cache_a_segment, torch._C._cuda_emptyCache),
        ("cudaMemGetInfo right after that", cache_and_empty, lambda: cudart.cudaMemGetInfo(0)),
        ("a 2 MiB tensor from the emptied cache", torch._C._cuda_emptyCache, cache_a_segment),
    ]
    for name, prepare, fn in freeing:
        print(f"{name:<42}{each_call_us(prepare, fn, n):>12.1f}")
    if options.profile:
        profile = cProfile.Profile()

        def regions() -> None:
            for _ in range(n):
                region()

        profile.runcall(regions)
        print(f"\nwhere {n} regions spend their time (cProfile, its own overhead included):")
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    name = "the region's Python alone (calls stubbed)"
    print(f"{name:<42}{python_alone_us(n):>12.1f}")
    others = meter.others_present(0, max_age=0.0)
    print(
        f"another process held memory on the GPU at the end: {'yes' if others else 'no'}"
        + (" (a region then reads NVML's per-process list at each end)" if others else "")
    )


def python_alone_us(n: int) -> float:
    """A region's start and stop with each torch and CUDA call it makes answered at once
    by a stub giving the same figures: what is left is the region's own Python (NVML's
    answer is cached for a second, as in a real region). Patches torch for the rest of
    the process, so it runs last."""
    reading = allocator.stats(0)
    cudart = torch.cuda.cudart()  # type: ignore[no-untyped-call]
    free_total = cudart.cudaMemGetInfo(0)
    stream = torch._C._cuda_getCurrentStream(0)
    stubs = {
        "_cuda_memoryStats": lambda index: reading,
        "_cuda_synchronize": lambda: None,
        "_cuda_emptyCache": lambda: None,
        "_cuda_resetPeakMemoryStats": lambda index: None,
        "_cuda_getCurrentStream": lambda index: stream,
    }
    for name, stub in stubs.items():
        setattr(torch._C, name, stub)
    cudart.cudaMemGetInfo = lambda index: free_total
    measure._clean[0] = (allocator.current(reading, "allocated_bytes"), int(stream[0]))

    def region() -> None:
        measure.Region("bench", linger_tracking=True).start().stop()

    return per_call_us(region, n)


if __name__ == "__main__":
    main()
