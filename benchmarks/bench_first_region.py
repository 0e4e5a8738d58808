"""What the first measured test of a process pays once, each step timed in a fresh process.

A suite under ``--cgmem-all`` pays these once per process (per xdist worker): the region's
warm-up (cuBLAS and cuBLASLt handles and workspaces of the current stream, NVML's handle)
before the first region starts. Each row is timed in its own fresh process after CUDA has
started (a tiny tensor made), median of ``--runs`` processes. The warm-up's steps are
timed in the order the warm-up runs them, so each row is what that step adds.

Run on a GPU machine: ``python benchmarks/bench_first_region.py [--runs 5]``.
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

steps = {}
t0 = time.perf_counter()
torch.ones(1, device="cuda")
torch.cuda.synchronize()
steps["CUDA context and a first tensor"] = time.perf_counter() - t0
case = sys.argv[1]
if case == "warm-up":
    from pytest_cgmem.cuda import allocator, nvml as nvml_module
    t = time.perf_counter()
    torch.cuda.current_blas_handle()
    torch.cuda.synchronize()
    steps["cuBLAS handle and workspace (no kernel)"] = time.perf_counter() - t
    t = time.perf_counter()
    single = torch.ones(8, 8, device="cuda")
    torch.nn.functional.linear(single, single, single[0])
    torch.cuda.synchronize()
    steps["fp32 linear with bias (cuBLASLt workspace)"] = time.perf_counter() - t
    t = time.perf_counter()
    meter = nvml_module.nvml()
    steps["NVML init"] = time.perf_counter() - t
    t = time.perf_counter()
    uuid = allocator.device_uuid(0)
    meter.handle(0, uuid)
    steps["NVML handle by UUID"] = time.perf_counter() - t
    t = time.perf_counter()
    meter.others_present(0)
    steps["NVML per-process list, first"] = time.perf_counter() - t
    from pytest_cgmem.cuda.region import Region
    t = time.perf_counter()
    Region("call").start().stop()
    steps["first region, warmed up"] = time.perf_counter() - t
    t = time.perf_counter()
    half = torch.ones(8, 8, device="cuda", dtype=torch.float16)
    torch.nn.functional.linear(half, half, half[0])
    torch.cuda.synchronize()
    steps["afterwards, a test's first fp16 linear (its kernels)"] = time.perf_counter() - t
elif case == "region":
    from pytest_cgmem.cuda.region import Region
    t = time.perf_counter()
    Region("call").start().stop()
    steps["first region, all of it"] = time.perf_counter() - t
    t = time.perf_counter()
    Region("call").start().stop()
    steps["second region"] = time.perf_counter() - t
print("RESULT " + json.dumps(steps))
"""


def child(case: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, case], capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line[len("RESULT ") :])
            return result
    raise SystemExit(f"bench_first_region: the {case} child printed no result:\n{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    import torch

    if not torch.cuda.is_available():
        print("bench_first_region: needs a CUDA device")
        return 0
    results: dict[str, list[float]] = {}
    for _ in range(runs):
        for case in ("warm-up", "region"):
            for step, seconds in child(case).items():
                results.setdefault(f"{case}: {step}", []).append(seconds)
    print(f"{'one-time step, fresh process (median of ' + str(runs) + ')':<62}{'ms':>9}")
    for step, values in results.items():
        print(f"{step:<62}{statistics.median(values) * 1e3:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
