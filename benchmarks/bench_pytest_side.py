"""The plugin's pytest-side cost per measured test, with no GPU work at all.

300 plain tests, 300 tests that use a bare function fixture and 300 that use one taking
``request`` (what pytest charges any fixture, and one that reads its test as
``cgmem_record`` does), 300 tests that record one region with ``cgmem_record`` (which
needs no CUDA) and 300 marked tests whose region reads nothing (a stand-in ``Region`` that returns
fixed figures: the hooks, judging, record and report run as for a real one), interleaved
in one run, each test's whole protocol timed: the difference to plain is what the hooks,
the judging, the result record and the report cost. Runs anywhere torch imports (CPU
too): ``python benchmarks/bench_pytest_side.py [--profile FILE]``.
"""

from __future__ import annotations

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
    plain = TIMES["test_plain"]
    for name, values in TIMES.items():
        mean = (statistics.mean(values) - statistics.mean(plain)) * 1e6
        median = (statistics.median(values) - statistics.median(plain)) * 1e6
        terminalreporter.write_line(
            f"{name:<16} mean {statistics.mean(values) * 1e6:8.1f} us  "
            f"over plain: mean {mean:7.1f} us, median {median:7.1f} us"
        )
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


def main() -> int:
    profile = sys.argv[2] if sys.argv[1:2] == ["--profile"] else None
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(CONFTEST)
        (folder / "test_side.py").write_text(TESTS)
        done = subprocess.run(
            [
                sys.executable,
                *prefix,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:xdist",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [line for line in done.stdout.splitlines() if "over plain" in line]
    print("\n".join(lines) or done.stdout[-2000:])
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
