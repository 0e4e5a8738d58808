"""A suite like a real one, three ways side by side: plain, ``--cgmem-all``, PyTorch's check.

The suite (written to a temporary folder): a heavy heap (transformers imported where it is
installed); 200 tests, of which a tenth leave cyclic garbage holding small CUDA tensors, a
tenth never touch CUDA, four leak for real and the rest are tiny GPU tests. It runs

- plain,
- with ``--cgmem-all --cgmem-budget=leak=0``,
- with PyTorch's own ``CudaMemoryLeakCheck`` (torch.testing._internal.common_utils)
  around each test, as ``PYTORCH_TEST_CUDA_MEM_LEAK_CHECK=1`` does in PyTorch's suites,

each in a fresh process: plain and cgmem three times each (alternating which goes first),
PyTorch's check once. It prints each side's medians: wall time (the whole pytest process:
what CI pays) and where it went (start-up, importing torch and transformers, pytest's
configuration, the session, after it), the session's time, the summed test time (setup +
call + teardown), the same sum without the four leaking tests (what a passing suite pays),
the ratios to plain, and each test's verdict on each side. Last comes the target's figure:
the plain process's wall time plus the plugin's extra session time, as a ratio to the plain
process, with and without the full collections that confirm the real leaks. One process's
wall time moves by more than the plugin costs, so the wall ratio itself is only shown.

Run on a GPU machine:
``python benchmarks/bench_suite.py [--tests 200] [--json PATH] [--profile FILE]``; ``--profile``
runs cgmem once more under cProfile, not counted, and prints the leak check's steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFTEST = """
import json
import os
import time
import warnings

IMPORTS_STARTED = time.time()

import pytest
import torch

try:
    import transformers  # noqa: F401  (a real engine's heap)
except ImportError:
    pass

IMPORTED = time.time()

import gc

MODE = os.environ["BENCH_MODE"]
RESULTS = {}
SESSION = {"gc_seconds": 0.0, "gc_collections": [0, 0, 0], "full_gc_seconds": 0.0}
_GC_START = [0.0]


def _on_gc(phase, info):
    if phase == "start":
        _GC_START[0] = time.perf_counter()
        return
    seconds = time.perf_counter() - _GC_START[0]
    SESSION["gc_seconds"] += seconds
    SESSION["gc_collections"][info["generation"]] += 1
    if info["generation"] == 2:
        SESSION["full_gc_seconds"] += seconds


def pytest_sessionstart(session):
    SESSION["t0"] = time.perf_counter()
    SESSION["epochs"] = {"imports_started": IMPORTS_STARTED, "imported": IMPORTED,
                         "session_started": time.time()}
    gc.callbacks.append(_on_gc)


def pytest_runtest_logreport(report):
    entry = RESULTS.setdefault(report.nodeid, {"seconds": 0.0, "outcome": "passed", "why": ""})
    entry["seconds"] += report.duration
    entry[report.when] = report.duration
    if report.failed:
        entry["outcome"] = "failed"
        crash = getattr(report.longrepr, "reprcrash", None)
        lines = (report.longreprtext or "").strip().splitlines() or [""]
        entry["why"] = (getattr(crash, "message", None) or lines[-1])[:200]


def pytest_sessionfinish(session):
    gc.callbacks.remove(_on_gc)
    SESSION["session_seconds"] = time.perf_counter() - SESSION.pop("t0")
    SESSION["epochs"]["session_finished"] = time.time()
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump({"tests": RESULTS, "session": SESSION}, f)


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


@dataclass
class Run:
    """One pytest process of one side: its tests' results and its timings."""

    tests: dict[str, dict[str, Any]]
    wall: float
    session: dict[str, Any]

    def summed(self, kinds: dict[str, str], only: str | None = None, leaks: bool = True) -> float:
        return sum(
            float(entry["seconds"])
            for nodeid, entry in self.tests.items()
            if (only is None or kinds[nodeid] == only) and (leaks or kinds[nodeid] != "leak")
        )


def run(folder: Path, mode: str, args: list[str], profile: str | None = None) -> Run:
    out = folder / f"result-{mode}.json"
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_OUT": str(out)}
    launched = time.time()
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            *(["-m", "cProfile", "-o", profile] if profile else []),
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
    ended = time.time()
    data = json.loads(out.read_text())
    epochs = data["session"].pop("epochs")
    data["session"]["phases"] = {
        "start-up": epochs["imports_started"] - launched,
        "torch, transformers": epochs["imported"] - epochs["imports_started"],
        "to the session": epochs["session_started"] - epochs["imported"],
        "session": epochs["session_finished"] - epochs["session_started"],
        "after the session": ended - epochs["session_finished"],
    }
    return Run(data["tests"], wall, data["session"])


def print_leak_check_profile(path: str) -> None:
    """Where the leak confirmation's time went in the profiled run: its steps, cumulative,
    with the collections by generation (pstats names each ``gc.collect`` call site once)."""
    import pstats

    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    wanted = (
        "_confirm_leak",
        "settled",
        "_reset_workspaces",
        "_warm_handles",
        "synchronize",
        "allocated_reserved",
        "clear_cublas_workspaces",
        "_figures",
        "_read_all",
        "stop",
        "start",
        "mem_info",
        "processes",
    )
    print("the profiled cgmem run (cProfile's overhead included): calls, cumulative ms")
    rows = [
        (cumulative, calls, f"{Path(file).name}:{line} {function}")
        for (file, line, function), (_, calls, _, cumulative, _) in stats.items()
        if function in wanted or any(w in function for w in ("gc.collect", "empty_cache"))
    ]
    for cumulative, calls, where in sorted(rows, reverse=True)[:16]:
        print(f"  {calls:>6} {cumulative * 1e3:>10.1f}  {where}")


def verdict(entry: dict[str, Any]) -> str:
    return "leak" if entry["outcome"] == "failed" else "clean"


def order(rounds: int) -> list[str]:
    """plain and cgmem ``rounds`` times each, alternating which goes first; PyTorch's
    check once, after the first round (it costs as much as all the others together)."""
    sides: list[str] = []
    for number in range(rounds):
        sides += ["plain", "cgmem"] if number % 2 == 0 else ["cgmem", "plain"]
        if number == 0:
            sides.append("pytorch")
    return sides


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of plain and of cgmem")
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument(
        "--profile", default=None, help="cProfile one more cgmem run (not counted) into this file"
    )
    options = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_suite: needs a CUDA device")
        return 0
    sides = {
        "plain": [],
        "cgmem": ["--cgmem-all", "--cgmem-budget=leak=0"],
        "pytorch": [],
    }
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kinds = write_suite(folder, options.tests)
        for name in order(options.rounds):
            runs[name].append(run(folder, name, sides[name]))
        if options.profile:
            run(folder, "cgmem", sides["cgmem"], options.profile)
            print_leak_check_profile(options.profile)

    def median(name: str, figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(r) for r in runs[name])

    def session_figure(key: str) -> Callable[[Run], float]:
        return lambda r: float(r.session[key])

    def phase_figure(phase: str) -> Callable[[Run], float]:
        return lambda r: float(r.session["phases"][phase])

    def of_kind(kind: str) -> Callable[[Run], float]:
        return lambda r: r.summed(kinds, only=kind)

    def collections(generation: int) -> Callable[[Run], float]:
        return lambda r: float(r.session["gc_collections"][generation])

    figures: dict[str, Callable[[Run], float]] = {
        "wall s": lambda r: r.wall,
        "session s": lambda r: float(r.session["session_seconds"]),
        "summed test s": lambda r: r.summed(kinds),
        "without leaks s": lambda r: r.summed(kinds, leaks=False),
    }
    print(
        f"suite: {options.tests} tests; kinds: "
        + ", ".join(f"{k} {sum(1 for v in kinds.values() if v == k)}" for k in TEMPLATES)
        + f"; medians of {options.rounds} runs of plain and cgmem, one of pytorch"
    )
    print(f"{'side':<10}" + "".join(f"{label:>17}{'x plain':>9}" for label in figures))
    table: dict[str, dict[str, float]] = {}
    for name in sides:
        table[name] = {label: median(name, f) for label, f in figures.items()}
        print(
            f"{name:<10}"
            + "".join(
                f"{table[name][label]:>17.3f}{table[name][label] / table['plain'][label]:>9.3f}"
                for label in figures
            )
        )
    print(
        "each run's wall s: "
        + "; ".join(f"{name} " + ", ".join(f"{r.wall:.2f}" for r in runs[name]) for name in sides)
    )
    print(f"{'wall time by phase, s':<28}" + "".join(f"{name:>10}" for name in sides))
    for phase in runs["plain"][0].session["phases"]:
        print(f"{phase:<28}" + "".join(f"{median(n, phase_figure(phase)):>10.3f}" for n in sides))
    print(
        f"{'per kind, summed test ms':<28}"
        + "".join(f"{name:>10}" for name in sides)
        + f"{'cgmem - plain, ms per test':>28}"
    )
    for kind in TEMPLATES:
        count = sum(1 for v in kinds.values() if v == kind)
        per_side = {name: median(name, of_kind(kind)) for name in sides}
        extra = (per_side["cgmem"] - per_side["plain"]) / max(count, 1) * 1e3
        print(
            f"{kind + f' ({count})':<28}"
            + "".join(f"{per_side[name] * 1e3:>10.1f}" for name in sides)
            + f"{extra:>28.3f}"
        )
    per_test = {
        nodeid: {
            name: statistics.median(float(r.tests[nodeid]["seconds"]) for r in runs[name])
            for name in ("plain", "cgmem")
        }
        for nodeid in kinds
    }
    costliest = sorted(per_test, key=lambda n: per_test[n]["plain"] - per_test[n]["cgmem"])[:6]
    print("the tests the cgmem side costs most (median ms, plain -> cgmem):")
    for nodeid in costliest:
        print(
            f"  {nodeid} ({kinds[nodeid]}): {per_test[nodeid]['plain'] * 1e3:.2f} -> "
            f"{per_test[nodeid]['cgmem'] * 1e3:.2f}"
        )
    print(f"{'garbage collection':<28}" + "".join(f"{name:>10}" for name in sides))
    for label, key in (("all collections, ms", "gc_seconds"), ("full ones, ms", "full_gc_seconds")):
        print(
            f"{label:<28}"
            + "".join(f"{median(n, session_figure(key)) * 1e3:>10.1f}" for n in sides)
        )
    for generation in range(3):
        print(
            f"{f'collections of generation {generation}':<28}"
            + "".join(f"{median(n, collections(generation)):>10.0f}" for n in sides)
        )
    last = {name: runs[name][-1].tests for name in sides}
    mismatches = []
    verdicts: dict[str, dict[str, str]] = {}
    for nodeid, kind in kinds.items():
        row = {side: verdict(r.tests[nodeid]) for side in ("cgmem", "pytorch") for r in runs[side]}
        agreed = all(
            verdict(r.tests[nodeid]) == verdict(last["pytorch"][nodeid])
            for side in ("cgmem", "pytorch")
            for r in runs[side]
        )
        verdicts[nodeid] = {"kind": kind, **row}
        if not agreed:
            mismatches.append(
                f"  {nodeid} ({kind}): cgmem "
                + ", ".join(verdict(r.tests[nodeid]) for r in runs["cgmem"])
                + f"; pytorch {verdict(last['pytorch'][nodeid])}"
            )
    counts: dict[str, int] = {}
    for row in verdicts.values():
        key = f"{row['kind']}: cgmem {row['cgmem']} / pytorch {row['pytorch']}"
        counts[key] = counts.get(key, 0) + 1
    print("verdicts (kind: cgmem / pytorch):")
    for key in sorted(counts):
        print(f"  {counts[key]:>4}  {key}")
    print(
        f"verdicts matched on {len(verdicts) - len(mismatches)} of {len(verdicts)} tests, "
        f"in every cgmem run"
    )
    for line in mismatches[:10]:
        print(line)
    if len(mismatches) > 10:
        print(f"  ... and {len(mismatches) - 10} more (the JSON has every verdict)")
    plain_wall = table["plain"]["wall s"]
    extra = table["cgmem"]["session s"] - table["plain"]["session s"]
    full_gc = median("cgmem", session_figure("full_gc_seconds")) - median(
        "plain", session_figure("full_gc_seconds")
    )
    for label, added in (
        ("the plugin's extra session time", extra),
        ("the same without the full collections", extra - full_gc),
    ):
        ratio = (plain_wall + added) / plain_wall
        word = "met" if ratio <= 1.05 else "MISSED"
        print(
            f"{label}: {added:.3f} s, {ratio:.3f}x the plain process's {plain_wall:.2f} s "
            f"(target <= 1.05x: {word})"
        )
    print(
        f"cgmem side, wall: {table['cgmem']['wall s'] / plain_wall:.3f}x plain "
        "(one process's wall moves by more than the plugin costs: read the lines above)"
    )
    if options.json:
        Path(options.json).write_text(
            json.dumps(
                {
                    "table": table,
                    "runs": {
                        name: [{"wall": r.wall, "session": r.session} for r in rs]
                        for name, rs in runs.items()
                    },
                    "verdicts": verdicts,
                    "per_test_seconds": {
                        nodeid: {name: [r.tests[nodeid] for r in runs[name]] for name in sides}
                        for nodeid in kinds
                    },
                },
                indent=1,
            )
        )
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
