"""A suite like a real one, three ways side by side: plain, ``--cgmem-all``, PyTorch's check.

The suite (written to a temporary folder): a heavy heap (transformers imported where it is
installed); 200 tests, of which a tenth leave cyclic garbage holding small CUDA tensors, a
tenth never touch CUDA, four leak for real and the rest are tiny GPU tests. It runs

- plain,
- with ``--cgmem-all --cgmem-budget=leak=0``,
- with PyTorch's own ``CudaMemoryLeakCheck`` (torch.testing._internal.common_utils)
  around each test, as ``PYTORCH_TEST_CUDA_MEM_LEAK_CHECK=1`` does in PyTorch's suites,

each in a fresh process, plain and cgmem twice (interleaved, best of two). It prints each
side's wall time (the whole pytest process: what CI pays), its summed test time (setup +
call + teardown), the same sum without the four leaking tests (what a passing suite pays),
the ratios to plain, and each test's verdict on each side.

Run on a GPU machine: ``python benchmarks/bench_suite.py [--tests 200] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFTEST = """
import json
import os
import time
import warnings

import pytest
import torch

try:
    import transformers  # noqa: F401  (a real engine's heap)
except ImportError:
    pass

MODE = os.environ["BENCH_MODE"]
RESULTS = {}


def pytest_runtest_logreport(report):
    entry = RESULTS.setdefault(report.nodeid, {"seconds": 0.0, "outcome": "passed", "why": ""})
    entry["seconds"] += report.duration
    if report.failed:
        entry["outcome"] = "failed"
        entry["why"] = (report.longreprtext or "").strip().splitlines()[-1][:200]


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump(RESULTS, f)


if MODE == "pytorch":
    from torch.testing._internal.common_utils import CudaMemoryLeakCheck

    class _Case:
        def __init__(self, name):
            self.name = name

        def id(self):
            return self.name

        def before_cuda_memory_leak_check(self):
            pass

    @pytest.fixture(autouse=True)
    def _pytorch_leak_check(request):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with CudaMemoryLeakCheck(_Case(request.node.nodeid)):
                yield
        for w in caught:
            if "memory leak" in str(w.message):
                raise RuntimeError("allocator-only leak (warning): " + str(w.message)[:120])
"""

TEMPLATES = {
    "tiny": "def test_{n}():\n    x = torch.ones(256, device='cuda')\n    (x * 2 + 1).sum()\n",
    "cpu": "def test_{n}():\n    assert sum(range(1000)) == 499500\n",
    "garbage": (
        "def test_{n}():\n"
        "    m = torch.nn.Linear(16, 16).cuda()\n"
        "    m.register_forward_hook(lambda mod, args, out: mod)\n"
        "    m.me = m  # a cycle through the module: only the garbage collector frees it\n"
        "    m(torch.ones(4, 16, device='cuda'))\n"
    ),
    "leak": (
        "def test_{n}():\n"
        "    KEPT.append(torch.empty(4 * 2**20, dtype=torch.uint8, device='cuda'))\n"
    ),
}


def kind_of(n: int, leaks: set[int]) -> str:
    if n in leaks:
        return "leak"
    return {0: "garbage", 5: "cpu"}.get(n % 10, "tiny")


def write_suite(folder: Path, count: int) -> dict[str, str]:
    leaks = {count // 5 + 3, 2 * count // 5 + 3, 3 * count // 5 + 3, 4 * count // 5 + 3}
    kinds: dict[str, str] = {}
    (folder / "conftest.py").write_text(CONFTEST)
    for module in range(count // 50):
        lines = ["import torch", "", "KEPT = []", ""]
        for n in range(module * 50, module * 50 + 50):
            kind = kind_of(n, leaks)
            lines.append(TEMPLATES[kind].format(n=n))
            kinds[f"test_suite_{module}.py::test_{n}"] = kind
        (folder / f"test_suite_{module}.py").write_text("\n".join(lines))
    return kinds


def run(folder: Path, mode: str, args: list[str]) -> tuple[dict[str, dict[str, object]], float]:
    out = folder / f"result-{mode}.json"
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_OUT": str(out)}
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            *args,
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - t0
    return json.loads(out.read_text()), wall


def verdict(entry: dict[str, object]) -> str:
    return "leak" if entry["outcome"] == "failed" else "clean"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--json", default=None, help="write the figures here")
    options = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_suite: needs a CUDA device")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kinds = write_suite(folder, options.tests)
        sides = {
            "plain": [],
            "cgmem": ["--cgmem-all", "--cgmem-budget=leak=0"],
            "pytorch": [],
        }
        results: dict[str, dict[str, dict[str, object]]] = {}
        summed: dict[str, list[float]] = {name: [] for name in sides}
        walls: dict[str, list[float]] = {name: [] for name in sides}
        all_results: dict[str, list[dict[str, dict[str, object]]]] = {n: [] for n in sides}
        for name in ("plain", "cgmem", "pytorch", "plain", "cgmem"):
            got, seconds = run(folder, name, sides[name])
            results[name] = got
            all_results[name].append(got)
            summed[name].append(sum(float(e["seconds"]) for e in got.values()))
            walls[name].append(seconds)
    best = {name: min(v) for name, v in summed.items()}
    wall = {name: min(v) for name, v in walls.items()}
    leaks = {nodeid for nodeid, kind in kinds.items() if kind == "leak"}
    # the same sums without the real leaks: what a passing suite pays
    clean = {
        name: min(
            sum(float(e["seconds"]) for nodeid, e in got.items() if nodeid not in leaks)
            for got in runs
        )
        for name, runs in all_results.items()
    }
    print(
        f"suite: {options.tests} tests; kinds: "
        + ", ".join(f"{k} {sum(1 for v in kinds.values() if v == k)}" for k in TEMPLATES)
    )
    print(
        f"{'side':<10}{'wall s':>9}{'x plain':>9}{'summed test s':>15}{'x plain':>9}"
        f"{'without leaks s':>17}{'x plain':>9}"
    )
    for name in sides:
        print(
            f"{name:<10}{wall[name]:>9.2f}{wall[name] / wall['plain']:>9.3f}"
            f"{best[name]:>15.3f}{best[name] / best['plain']:>9.3f}"
            f"{clean[name]:>17.3f}{clean[name] / clean['plain']:>9.3f}"
        )
    mismatches = []
    table: dict[str, dict[str, str]] = {}
    for nodeid, kind in kinds.items():
        row = {side: verdict(results[side][nodeid]) for side in ("cgmem", "pytorch")}
        table[nodeid] = {"kind": kind, **row}
        if row["cgmem"] != row["pytorch"]:
            mismatches.append(
                f"  {nodeid} ({kind}): cgmem {row['cgmem']}, pytorch {row['pytorch']}"
            )
    counts: dict[str, int] = {}
    for row in table.values():
        key = f"{row['kind']}: cgmem {row['cgmem']} / pytorch {row['pytorch']}"
        counts[key] = counts.get(key, 0) + 1
    print("verdicts (kind: cgmem / pytorch):")
    for key in sorted(counts):
        print(f"  {counts[key]:>4}  {key}")
    print(f"verdicts matched on {len(table) - len(mismatches)} of {len(table)} tests")
    for line in mismatches:
        print(line)
    for what, figures in (("wall", wall), ("summed test time", best), ("without leaks", clean)):
        ratio = figures["cgmem"] / figures["plain"]
        verdict_word = "met" if ratio <= 1.05 else "MISSED"
        print(f"cgmem side, {what}: {ratio:.3f}x plain (target <= 1.05x: {verdict_word})")
    if options.json:
        Path(options.json).write_text(
            json.dumps({"summed": summed, "walls": walls, "verdicts": table}, indent=1)
        )
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
