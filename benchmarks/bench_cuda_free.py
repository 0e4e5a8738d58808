"""What ``--cgmem-all`` costs a test that imports nothing from torch and never starts CUDA.

One pytest process under ``--cgmem-all --cgmem-budget=leak=0`` runs 500 such tests that
are measured and 500 that opt out (``cgmem_off``: the plugin only looks the test up and
lets it run, as for a test nobody marked), interleaved so that drift hits both alike. The
suite's conftest times each test's whole protocol; the figure is the difference of the two
medians, per process and as the median of three processes (between processes, the same
tests' medians move by more than the figure itself on a small machine). The conftest also
records whether torch was imported by the end of the run: it must not be (issue 11's
target is ≤ 50 µs a test and no torch import). Runs anywhere (no GPU needed):
``python benchmarks/bench_cuda_free.py [--runs N] [--tests N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFTEST = """
import itertools, json, os, sys, time
from collections import defaultdict
import pytest

TIMES = defaultdict(list)


def pytest_collection_modifyitems(items):
    groups = defaultdict(list)
    for item in items:
        groups[item.originalname].append(item)
    items[:] = [i for row in itertools.zip_longest(*groups.values()) for i in row if i]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        TIMES[item.originalname].append(time.perf_counter() - start)


def pytest_sessionfinish(session):
    with open(os.environ["FREE_OUT"], "w") as f:
        json.dump({"times": TIMES, "torch_imported": "torch" in sys.modules}, f)
"""

TESTS = """
import pytest


@pytest.mark.parametrize("i", range({count}))
def test_measured(i):
    assert sum(range(50)) == 1225


@pytest.mark.cgmem_off("the baseline: run as if nobody had asked for --cgmem-all")
@pytest.mark.parametrize("i", range({count}))
def test_opted_out(i):
    assert sum(range(50)) == 1225
"""


def run_once(folder: Path) -> tuple[float, bool]:
    """One process: the measured tests' median less the opted-out ones', in µs, and
    whether torch was imported."""
    out = folder / "times.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "--cgmem-all",
            "--cgmem-budget=leak=0",
        ],
        cwd=folder,
        env={**os.environ, "FREE_OUT": str(out)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    data = json.loads(out.read_text())
    times = data["times"]
    extra = statistics.median(times["test_measured"]) - statistics.median(times["test_opted_out"])
    return extra * 1e6, bool(data["torch_imported"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="pytest processes")
    parser.add_argument("--tests", type=int, default=500, help="tests of each kind")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(CONFTEST)
        (folder / "test_free.py").write_text(TESTS.format(count=options.tests))
        runs = [run_once(folder) for _ in range(options.runs)]
    extras = [extra for extra, _ in runs]
    imported = any(flag for _, flag in runs)
    extra = statistics.median(extras)
    word = "met" if extra <= 50 and not imported else "MISSED"
    print(
        f"--cgmem-all, a CUDA-free test measured against one opted out ({options.tests} each, "
        f"interleaved): median µs more per run {', '.join(f'{e:.1f}' for e in extras)}; "
        f"median {extra:.1f} µs; torch imported: {'yes' if imported else 'no'} "
        f"(target <= 50 µs and no torch import: {word})"
    )
    return 1 if imported else 0


if __name__ == "__main__":
    sys.exit(main())
