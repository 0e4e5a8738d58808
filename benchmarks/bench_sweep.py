"""Time ``capture_sweep`` against a bare torch capture loop, side by side in one run.

vLLM's 51 default capture sizes (1, 2, 4, 8..248 step 8, 256..512 step 16) of a 2-layer
4096-wide fp16 MLP, largest first into one shared pool, each size warmed up twice on the
capture stream first. Both sides do exactly the same torch work; the difference is the
plugin's tracking (allocator and driver figures per capture, one snapshot at the end).
Rounds alternate (bare, sweep, sweep, bare, ...) and each side's graphs are released
before the next round. Target: sweep / bare <= 1.1x.

    python benchmarks/bench_sweep.py [--rounds 7] [--hidden 4096]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from pytest_cgmem.graphs import capture_sweep, pool_segments

SIZES = [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)]


def bare_loop(fn: Any, sizes: list[int], make_input: Any, warmup: int = 2) -> tuple[float, Any]:
    """What an engine does by hand: warm up on a side stream, capture largest first."""
    order = sorted(set(sizes), reverse=True)
    inputs = {size: make_input(size) for size in order}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for size in order:
            for _ in range(warmup):
                fn(inputs[size])
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    pool = torch.cuda.graph_pool_handle()
    graphs, outputs = {}, {}
    t0 = time.perf_counter()
    for size in order:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=stream):
            outputs[size] = fn(inputs[size])
        graphs[size] = graph
    seconds = time.perf_counter() - t0
    return seconds, (graphs, outputs, inputs, pool)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=4096)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_sweep: needs a CUDA device")
        return 1

    hidden = args.hidden
    mlp = torch.nn.Sequential(
        torch.nn.Linear(hidden, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
    ).to("cuda", torch.float16)

    def make_input(n: int) -> torch.Tensor:
        return torch.randn(n, hidden, device="cuda", dtype=torch.float16)

    bare_total: list[float] = []
    sweep_total: list[float] = []
    bare_capture: list[float] = []
    sweep_capture: list[float] = []
    pool_bytes = 0
    with torch.no_grad():
        # one untimed round each: cuBLAS heuristics, lazy module loading
        bare_loop(mlp, SIZES, make_input)
        capture_sweep(mlp, SIZES, make_input)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        for round_ in range(args.rounds):
            sides = ("bare", "sweep") if round_ % 2 == 0 else ("sweep", "bare")
            for side in sides:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                if side == "bare":
                    seconds, kept = bare_loop(mlp, SIZES, make_input)
                    total = time.perf_counter() - t0
                    bare_total.append(total)
                    bare_capture.append(seconds)
                else:
                    result = capture_sweep(mlp, SIZES, make_input)
                    total = time.perf_counter() - t0
                    sweep_total.append(total)
                    sweep_capture.append(result.seconds)
                    pool_bytes = result.pool_bytes
                    kept = result
                del kept
                torch.cuda.synchronize()
                torch.cuda.empty_cache()

    def row(name: str, bare: list[float], sweep: list[float]) -> str:
        b, s = statistics.median(bare), statistics.median(sweep)
        return f"{name:<22}{b * 1000:>12.1f}{s * 1000:>12.1f}{s / b:>9.3f}x"

    props = torch.cuda.get_device_properties(0)
    print(
        f"capture_sweep vs bare torch loop: {len(SIZES)} sizes, 2-layer {hidden}-wide fp16 "
        f"MLP, {args.rounds} rounds (median), {props.name}, torch {torch.__version__}"
    )
    print(f"{'':<22}{'bare ms':>12}{'sweep ms':>12}{'ratio':>10}")
    print(row("capture only", bare_capture, sweep_capture))
    print(row("warm-up + capture", bare_total, sweep_total))
    print(f"pool held by the sweep's graphs: {pool_bytes / 2**20:.1f} MiB")
    ratio = statistics.median(sweep_total) / statistics.median(bare_total)
    print(f"target <= 1.10x: {'met' if ratio <= 1.10 else 'MISSED'} ({ratio:.3f}x)")
    left = {k: v for k, v in pool_segments().items() if k[1] != (0, 0)}
    if left:
        print(f"note: graph pools still holding memory after the run: {left}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
