"""Time ``capture_sweep`` against a bare torch capture loop, side by side in one run.

vLLM's 51 default capture sizes (1, 2, 4, 8..248 step 8, 256..512 step 16) of a 2-layer
4096-wide fp16 MLP. The bare loop is what an engine writes by hand: build the inputs, warm
up twice per size on a new side stream, synchronize, then ``torch.cuda.graph`` per size on
that stream, largest first, into one shared pool from ``graph_pool_handle()``. The capture
phase is timed on every side from a synchronize before the first capture to a synchronize
after the last; the whole call from a synchronize before to one after. Target: the sweep's
whole call <= 1.1x the bare loop's.

The sweep captures every size after the first with ``capture_begin``/``capture_end``
directly, skipping ``torch.cuda.graph``'s per-capture synchronize and cache emptying, which
find nothing to do between captures (vLLM skips them too). So a second bare loop, "bare,
direct", does the same: against it, what remains is the plugin's tracking: one allocator
reading per capture; two ``cudaMemGetInfo`` per sweep. A third side runs the sweep inside a
``graphs()`` log, as in a marked test: the log adds a ``cudaMemGetInfo`` per capture for its
driver column. Two more bare loops add only the allocator reading or only
``cudaMemGetInfo`` after each capture, to show what each costs in place. Rounds rotate the
order of the sides; every side's graphs, inputs and outputs are released (and the cache
emptied) before the next one runs.

    python benchmarks/bench_sweep.py [--rounds 21] [--hidden 4096]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from pytest_cgmem.cuda.allocator import allocated_reserved, pool_segments, pool_total
from pytest_cgmem.cuda.graphs import capture_sweep, track

SIZES = [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)]


def bare_loop(
    fn: Any,
    sizes: list[int],
    make_input: Any,
    warmup: int = 2,
    after: Callable[[], object] | None = None,
    direct: bool = False,
) -> tuple[float, Any]:
    """What an engine does by hand: warm up on a side stream, capture largest first.

    ``after`` (if given) runs after each capture: the per-capture cost of one reading.
    ``direct``: only the first capture through ``torch.cuda.graph``; the rest with
    ``capture_begin``/``capture_end`` on the stream, skipping the context's synchronize and
    cache emptying, which find nothing to do between captures (vLLM skips them likewise)."""
    order = sorted(set(sizes), reverse=True)
    inputs = {size: make_input(size) for size in order}
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    current = torch.cuda.current_stream()
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        for size in order:
            for _ in range(warmup):
                fn(inputs[size])
    current.wait_stream(stream)
    torch.cuda.synchronize()
    pool = torch.cuda.graph_pool_handle()
    graphs, outputs = {}, {}
    t0 = time.perf_counter()
    for number, size in enumerate(order):
        graph = torch.cuda.CUDAGraph()
        if direct and number:
            with torch.cuda.stream(stream):
                graph.capture_begin(pool=pool)
                outputs[size] = fn(inputs[size])
                graph.capture_end()
        else:
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                outputs[size] = fn(inputs[size])
        graphs[size] = graph
        if after is not None:
            after()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return seconds, (graphs, outputs, inputs, stream)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--hidden", type=int, default=4096)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_sweep: needs a CUDA device")
        return 1

    hidden = args.hidden
    mlp = torch.nn.Sequential(
        torch.nn.Linear(hidden, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
    ).to("cuda", torch.float16)
    device = torch.cuda.current_device()

    def make_input(n: int) -> torch.Tensor:
        return torch.randn(n, hidden, device="cuda", dtype=torch.float16)

    def read_allocator() -> object:
        return torch.cuda.memory_stats_as_nested_dict(device)

    def read_driver() -> object:
        return torch.cuda.mem_get_info(device)

    Run = Callable[[], tuple[float, float, Any]]

    def timed(run: Run) -> tuple[float, float, float]:
        """Whole call timed between two synchronizes; what it made is released afterwards."""
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        capture, tracking, kept = run()
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
        del kept
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return total, capture, tracking

    pool_bytes: list[int | None] = [0]

    def run_bare() -> tuple[float, float, Any]:
        seconds, kept = bare_loop(mlp, SIZES, make_input)
        return seconds, 0.0, kept

    def run_bare_direct() -> tuple[float, float, Any]:
        seconds, kept = bare_loop(mlp, SIZES, make_input, direct=True)
        return seconds, 0.0, kept

    def run_sweep() -> tuple[float, float, Any]:
        result = capture_sweep(mlp, SIZES, make_input)
        pool_bytes[0] = result.pool_bytes
        return result.seconds, result.tracking_seconds, result

    def run_sweep_in_log() -> tuple[float, float, Any]:
        with track() as log:
            result = capture_sweep(mlp, SIZES, make_input)
        assert len(log.captures) == len(SIZES)
        return result.seconds, result.tracking_seconds, (result, log)

    def run_bare_allocator() -> tuple[float, float, Any]:
        seconds, kept = bare_loop(mlp, SIZES, make_input, after=read_allocator)
        return seconds, 0.0, kept

    def run_bare_driver() -> tuple[float, float, Any]:
        seconds, kept = bare_loop(mlp, SIZES, make_input, after=read_driver)
        return seconds, 0.0, kept

    sides: dict[str, Run] = {
        "bare": run_bare,
        "bare, direct": run_bare_direct,
        "sweep": run_sweep,
        "sweep in a log": run_sweep_in_log,
        "bare + allocator": run_bare_allocator,
        "bare + driver": run_bare_driver,
    }
    names = list(sides)
    totals: dict[str, list[float]] = {name: [] for name in names}
    captures: dict[str, list[float]] = {name: [] for name in names}
    tracking: list[float] = []
    with torch.no_grad():
        for name in names:  # one untimed call each: cuBLAS heuristics, lazy module loading
            timed(sides[name])
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                total, capture, own = timed(sides[name])
                totals[name].append(total)
                captures[name].append(capture)
                if name == "sweep":
                    tracking.append(own)

    def micro(call: Callable[[], object], n: int = 200) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e6

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    props = torch.cuda.get_device_properties(device)
    n = len(SIZES)
    print(
        f"capture_sweep vs bare torch loop: {n} sizes, 2-layer {hidden}-wide fp16 MLP, "
        f"{args.rounds} rounds (median), {props.name}, torch {torch.__version__}"
    )
    print(f"{'':<22}{'bare ms':>12}{'sweep ms':>12}{'ratio':>10}")
    for label, table in (("capture phase", captures), ("whole call", totals)):
        b, s = ms(table["bare"]), ms(table["sweep"])
        print(f"{label:<22}{b:>12.2f}{s:>12.2f}{s / b:>9.3f}x")
    b, s = ms(totals["bare"]), ms(totals["sweep in a log"])
    print(f"{'whole call, in a log':<22}{b:>12.2f}{s:>12.2f}{s / b:>9.3f}x")
    print(
        "the sweep captures sizes after the first directly (no per-capture synchronize and "
        "empty-cache); against a bare loop that does the same:"
    )
    for label, table in (("capture phase", captures), ("whole call", totals)):
        b, s = ms(table["bare, direct"]), ms(table["sweep"])
        print(f"{label + ', direct':<22}{b:>12.2f}{s:>12.2f}{s / b:>9.3f}x")
    per = ms(tracking) * 1000 / n
    print(
        f"sweep's own readings and records: {ms(tracking):.2f} ms ({per:.1f} µs per capture, "
        "its record and the two cudaMemGetInfo included)"
    )
    print("each reading alone, 200 calls, median µs:")
    with torch.no_grad():
        swept = capture_sweep(mlp, SIZES, make_input)
        swept_pool = swept.pool
        assert swept_pool is not None
        for name, call in (
            ("memory_stats_as_nested_dict", read_allocator),
            ("_cuda_memoryStats (the sweep's)", lambda: allocated_reserved(device)),
            ("mem_get_info", read_driver),
            ("snapshot of one pool (given pools)", lambda: pool_total(swept_pool)),
        ):
            print(f"  {name:<34}{micro(call):>8.1f}")
        swept.release()
        del swept
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    print("one reading after each capture of a bare loop, in place:")
    for name in ("bare + allocator", "bare + driver"):
        extra = (ms(captures[name]) - ms(captures["bare"])) * 1000 / n
        print(f"  {name:<20}{ms(captures[name]):>9.2f} ms capture phase ({extra:+.1f} µs/capture)")
    held = "unavailable" if pool_bytes[0] is None else f"{pool_bytes[0] / 2**20:.1f} MiB"
    print(f"pool held by the sweep's {n} graphs: {held}")
    ratio = statistics.median(totals["sweep"]) / statistics.median(totals["bare"])
    print(f"target whole call <= 1.10x: {'met' if ratio <= 1.10 else 'MISSED'} ({ratio:.3f}x)")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    left = {k: v for k, v in pool_segments().items() if k[1] != (0, 0)}
    if left:
        listing = ", ".join(
            f"pool {pid} on cuda:{dev}: {v / 2**20:.1f} MiB" for (dev, pid), v in left.items()
        )
        print(f"graph pools still holding memory with every graph released: {listing}")
    else:
        print("graph pools still holding memory with every graph released: none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
