"""What a process's warm-up leaves allocated, and what a test's first GEMMs cost after it.

The region's warm-up (``pytest_cgmem.cuda.region._warm_handles``) makes the current
stream's cuBLAS handle and workspaces once per process, so that no test is charged a first
matmul's memory. This compares the warm-up with the one it replaced and with none: each row
runs in a fresh process after CUDA has started, and prints each step's time, the bytes it
left allocated (``memory_allocated``) and the driver's used memory it added; then a test's
first float32 matmul, float16 and bfloat16 linears and ``nn.Linear``. ``--after-linear``
runs an ``nn.Linear`` in float32 first, as the suite benchmark's first test does.

Run on a GPU machine: ``python benchmarks/bench_warm_up.py [--runs 3] [--after-linear]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import torch

F = torch.nn.functional
rows = []


def used():
    free, total = torch.cuda.mem_get_info()
    return total - free


def step(name, fn):
    torch.cuda.synchronize()
    allocated, device, t0 = torch.cuda.memory_allocated(), used(), time.perf_counter()
    fn()
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) * 1e3
    rows.append([name, ms, (torch.cuda.memory_allocated() - allocated) / 2**20,
                 (used() - device) / 2**20])


def fp32_matmul():
    a = torch.ones(16, 16, device="cuda")
    (a @ a).sum().item()


def fp16_linear():
    a = torch.ones(16, 16, device="cuda", dtype=torch.float16)
    F.linear(a, a, a[0]).sum().item()


def bf16_linear():
    a = torch.ones(64, 64, device="cuda", dtype=torch.bfloat16)
    F.linear(a, a, a[0]).sum().item()


def module_linear():
    torch.nn.Linear(16, 16).cuda()(torch.ones(4, 16, device="cuda")).sum().item()


def old_warm_up():
    single = torch.ones(8, 8, device="cuda")
    half = torch.ones(8, 8, device="cuda", dtype=torch.float16)
    torch.mm(single, single)
    F.linear(half, half, half[0])


variant, after_linear = sys.argv[1], sys.argv[2] == "1"
from pytest_cgmem.cuda.region import _warm_handles as warm_up  # imported before any timing
step("CUDA context, a first tensor", lambda: torch.ones(1, device="cuda"))
if after_linear:
    step("a first nn.Linear, float32", module_linear)
if variant != "none":
    step("the warm-up", {"now": lambda: warm_up(0), "before": old_warm_up}[variant])
for name, fn in [
    ("then a test's first float32 matmul", fp32_matmul),
    ("then a test's first float16 linear", fp16_linear),
    ("then a test's first bfloat16 linear", bf16_linear),
    ("then a test's first nn.Linear, float32", module_linear),
]:
    step(name, fn)
print("RESULT " + json.dumps(rows))
"""

VARIANTS = {
    "now": "the warm-up: a fill, the cuBLAS handle, a float32 linear with bias",
    "before": "the warm-up it replaced: a float32 matmul, a float16 linear with bias",
    "none": "no warm-up",
}


def child(variant: str, after_linear: bool) -> list[tuple[str, float, float, float]]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, variant, "1" if after_linear else "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return [tuple(row) for row in json.loads(line[len("RESULT ") :])]
    raise SystemExit(f"bench_warm_up: the {variant} child printed no result:\n{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--after-linear", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_warm_up: needs a CUDA device")
        return 0
    for variant, title in VARIANTS.items():
        steps: dict[str, list[tuple[float, float, float]]] = {}
        for _ in range(args.runs):
            for name, ms, allocated, device in child(variant, args.after_linear):
                steps.setdefault(name, []).append((ms, allocated, device))
        print(f"{title} (median of {args.runs} fresh processes)")
        print(f"  {'step':<42}{'ms':>9}{'allocated MiB':>15}{'device MiB':>12}")
        for name, values in steps.items():
            ms, allocated, device = (statistics.median(v[i] for v in values) for i in range(3))
            print(f"  {name:<42}{ms:>9.2f}{allocated:>+15.3f}{device:>+12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
