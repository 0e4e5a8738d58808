"""The plugin's pytest-side cost per measured test, with no GPU work at all.

300 plain tests, 300 tests that use a bare function fixture and 300 that use one taking
``request`` (what pytest charges any fixture, and one that reads its test as
``cgmem_record`` does), 300 tests that record one region with ``cgmem_record`` (which
needs no CUDA) and 300 marked tests whose region reads nothing (a stand-in ``Region`` that returns
fixed figures: the hooks, judging, record and report run as for a real one), interleaved
in one run, each test's whole protocol timed: the difference to plain is what the hooks,
the judging, the result record and the report cost. ``recorded over request`` is what the
plugin adds to a ``cgmem_record`` test beyond what pytest charges any fixture that takes
``request``. Each figure is a median over a run's 300 tests; the run is repeated (three
processes by default) and the median of the runs' figures is printed last, since a single
run's figures move by tens of µs. Runs anywhere torch imports (CPU too):
``python benchmarks/bench_pytest_side.py [--runs N] [--profile FILE]``.
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
import itertools, statistics, time
from collections import defaultdict
import pytest

import pytest_cgmem.cuda.allocator as allocator
import pytest_cgmem.cuda.region as region
from pytest_cgmem.results.records import DeviceFigures, RegionResult


class NullRegion:
    \"\"\"Reads nothing: what is left of a marked test's cost is the pytest side.\"\"\"

    def __init__(self, label, device=None, rank=None):
        self.label = label

    def start(self):
        return self

    def stop(self, error=None):
        figures = DeviceFigures(
            0, peak=1024, reserved=2048, leak=0, device=0, non_torch=0,
            graphs=0, replays=0, graph_pool=0,
        )
        return RegionResult(self.label, (figures,), 1e-4)


allocator.cuda_available = lambda: True
region.Region = NullRegion


@pytest.fixture
def bare_fixture():
    \"\"\"What any function fixture costs pytest.\"\"\"
    return len


@pytest.fixture
def request_fixture(request):
    \"\"\"What a fixture that reads its test (as cgmem_record does) costs pytest.\"\"\"
    return request.node.stash

TIMES = defaultdict(list)


def pytest_collection_modifyitems(items):
    groups = defaultdict(list)
    for item in items:
        groups[item.originalname].append(item)
    ordered = []
    for number, row in enumerate(itertools.zip_longest(*groups.values())):
        present = [item for item in row if item is not None]
        turn = number % len(present)  # each variant follows each other one equally often
        ordered += present[turn:] + present[:turn]
    items[:] = ordered


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        TIMES[item.originalname].append(time.perf_counter() - start)


def pytest_terminal_summary(terminalreporter):
    import json, os
    with open(os.environ["SIDE_OUT"], "w") as f:
        json.dump(dict(TIMES), f)
"""

TESTS = """
import pytest

RANGE = range(300)


@pytest.mark.parametrize("i", RANGE)
def test_plain(i):
    pass


@pytest.mark.parametrize("i", RANGE)
@pytest.mark.cgmem(peak="1 MiB", leak=0)
def test_marked(i):
    pass


@pytest.mark.parametrize("i", RANGE)
def test_fixture(i, bare_fixture):
    bare_fixture("call")


@pytest.mark.parametrize("i", RANGE)
def test_request(i, request_fixture):
    pass


@pytest.mark.parametrize("i", RANGE)
def test_recorded(i, cgmem_record):
    cgmem_record("call", peak=1024, reserved=2048, leak=0)
"""


def run_once(folder: Path, profile: str | None) -> dict[str, list[float]] | str:
    """One pytest process over the five variants: each test's protocol seconds by variant,
    or pytest's output where it failed."""
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    out = folder / "times.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, *prefix, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=folder,
        env={**os.environ, "SIDE_OUT": str(out)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        return done.stdout[-2000:] + done.stderr[-2000:]
    times: dict[str, list[float]] = json.loads(out.read_text())
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="pytest processes, one after another")
    parser.add_argument("--profile", default=None, help="cProfile the first run into this file")
    options = parser.parse_args()
    over: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(CONFTEST)
        (folder / "test_side.py").write_text(TESTS)
        for number in range(options.runs):
            times = run_once(folder, options.profile if number == 0 else None)
            if isinstance(times, str):
                print(times)
                return 1
            plain = statistics.median(times["test_plain"])
            medians = {name: statistics.median(values) for name, values in times.items()}
            for name, median in medians.items():
                over.setdefault(name, []).append((median - plain) * 1e6)
            over.setdefault("recorded over request", []).append(
                (medians["test_recorded"] - medians["test_request"]) * 1e6
            )
    print(f"median us over plain, per run ({options.runs} runs), and the median of those:")
    for name, values in over.items():
        runs = ", ".join(f"{v:6.1f}" for v in values)
        print(f"{name.removeprefix('test_'):<22} {runs}   median {statistics.median(values):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
