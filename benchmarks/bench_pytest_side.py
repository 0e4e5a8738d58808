"""The plugin's pytest-side cost per measured test, with no GPU work at all.

Two parts, each in pytest processes of its own, each test's whole protocol timed by the
suite's conftest, variants interleaved so that drift hits them alike:

- **Measured tests.** 300 plain tests, 300 tests that use a bare function fixture and 300
  that use one taking ``request`` (what pytest charges any fixture, and one that reads its
  test as ``cgmem_record`` does), 300 tests that record one region with ``cgmem_record``
  (which needs no CUDA) and 300 marked tests whose region reads nothing (a stand-in
  ``Region`` that returns fixed figures: the hooks, judging, record and report run as for a
  real one). The difference to plain is what the hooks, the judging, the result record and
  the report cost; ``recorded over request`` is what the plugin adds to a ``cgmem_record``
  test beyond what pytest charges any fixture that takes ``request``. The same tests run
  again with ``--cgmem-json`` (``marked, run file``, ``recorded, run file``): each measured
  test's record is then checked and journaled at its end, and the whole file is written
  once at the session's end, outside the tests' times.
- **Tests that never touch CUDA, under ``--cgmem-all``.** 500 tests that import nothing
  from torch, measured, against 500 that opt out with ``cgmem_off`` (the plugin only looks
  them up, as for a test nobody marked); the conftest records whether torch was imported by
  the end (issue 11: ≤ 50 µs a test, and no torch import).

- **Unmeasured tests.** In a run where no test needs them, the plugin's per-test hooks
  are taken off at collection, so a test runs none of them; in a run that keeps them for
  other tests, a test that needs none takes their quiet path. 500 plain tests with the
  hooks put back around each one's protocol (by a ``-p`` plugin, outside the timer), 500
  with them and no quiet flag (their whole path), 500 with an empty plugin of the same
  four hooks put there instead (what pytest's hook calls alone cost), interleaved with 500
  without: what the hooks cost an unmeasured test in a
  run that keeps them, measured in one process (two processes' medians differ by more
  than this). The same process times registering and unregistering the hooks (what
  taking them off around unmeasured tests would cost at each change) and compares the
  order pytest calls each hook's implementations in, as registered at configure and
  registered again: a plugin registered after ours (pytest's logging plugin) would
  change places with them.

Each figure is a median over a process's tests; each part runs three processes by default
and prints the median of their figures last, since one process's figures move by tens of
µs. Runs anywhere torch imports (CPU too):
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
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHONPATH = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
"""The benchmarks folder first, for the timing conftest's ``interleave`` and
``protocol_timer``."""

TIMING = """
import json, os, sys
from collections import defaultdict
import pytest
from interleave import interleaved
from protocol_timer import timed_protocol

TIMES = defaultdict(list)


def pytest_collection_modifyitems(items):
    items[:] = interleaved(items, lambda item: item.originalname)


pytest_runtest_protocol = timed_protocol(
    lambda item, seconds: TIMES[item.originalname].append(seconds)
)


def pytest_sessionfinish(session):
    with open(os.environ["SIDE_OUT"], "w") as f:
        json.dump({"times": TIMES, "torch_imported": "torch" in sys.modules}, f)
"""

STUBS = """
import pytest_cgmem.cuda.allocator as allocator
from pytest_cgmem.cuda import count_measurement
import pytest_cgmem.cuda.region as region
from pytest_cgmem.results.records import DeviceFigures, RegionResult


class NullRegion:
    \"\"\"Reads nothing: what is left of a marked test's cost is the pytest side.\"\"\"

    def __init__(self, label, **options):  # whatever the session passes a Region
        self.label = label

    def start(self):
        count_measurement()  # as Region counts the regions it opened
        return self

    def stop(self, error=None):
        figures = DeviceFigures(
            0, peak=1024, reserved=2048, leak=0, device=0, non_torch=0,
            graphs=0, replays=0, graph_pool=0,
        )
        return RegionResult(self.label, (figures,), 1e-4)


allocator.cuda_available = lambda: True
allocator.cuda_usable = lambda: True  # so that a CPU machine runs the marked tests too
region.Region = NullRegion


@pytest.fixture
def bare_fixture():
    \"\"\"What any function fixture costs pytest.\"\"\"
    return len


@pytest.fixture
def request_fixture(request):
    \"\"\"What a fixture that reads its test (as cgmem_record does) costs pytest.\"\"\"
    return request.node.stash
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

CUDA_FREE_TESTS = """
import pytest

RANGE = range(500)


@pytest.mark.parametrize("i", RANGE)
def test_measured(i):
    assert sum(range(50)) == 1225


@pytest.mark.cgmem_off("the baseline: run as if nobody had asked for --cgmem-all")
@pytest.mark.parametrize("i", RANGE)
def test_opted_out(i):
    assert sum(range(50)) == 1225
"""


HOOK_VARIANTS = ("off", "on", "empty", "whole")
"""``test_hooks_<variant>``: no hook of ours, the quiet path, an empty plugin, the whole path."""

UNUSED_TESTS = "import pytest\n\nRANGE = range(500)\n" + "".join(
    f"""

@pytest.mark.parametrize("i", RANGE)
def test_hooks_{variant}(i):
    assert sum(range(50)) == 1225
"""
    for variant in HOOK_VARIANTS
)

HOOKS_BACK = """
import json, os, time
import pytest
from pytest_cgmem.plugin import session_key
from pytest_cgmem.session import TEST_HOOKS_NAME, _quiet_key

PER_TEST = ("pytest_runtest_setup", "pytest_runtest_call", "pytest_runtest_makereport",
            "pytest_runtest_logreport")
ORDER = {}


def order(config):
    return {name: [impl.plugin_name for impl in getattr(config.hook, name).get_hookimpls()]
            for name in PER_TEST}


def pytest_sessionstart(session):
    ORDER["at configure"] = order(session.config)  # the per-test hooks as registered


def pytest_collection_finish(session):
    manager, hooks = session.config.pluginmanager, session.config.stash[session_key].test_hooks
    assert not manager.is_registered(hooks), "this run measures nothing: they are off"
    pairs = 200
    start = time.perf_counter()
    for _ in range(pairs):
        manager.register(hooks, TEST_HOOKS_NAME)
        manager.unregister(hooks)
    seconds = (time.perf_counter() - start) / pairs
    manager.register(hooks, TEST_HOOKS_NAME)
    ORDER["registered again"] = order(session.config)
    manager.unregister(hooks)
    with open(os.environ["SIDE_OUT"] + ".register.json", "w") as f:
        json.dump({"pair_us": seconds * 1e6, **ORDER}, f)


class EmptyHooks:
    def pytest_runtest_setup(self, item):
        pass

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        return (yield)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report):
        pass


EMPTY = EmptyHooks()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item):
    manager, hooks = item.config.pluginmanager, item.config.stash[session_key].test_hooks
    back = {"test_hooks_on": hooks, "test_hooks_whole": hooks, "test_hooks_empty": EMPTY}.get(
        item.originalname
    )
    if item.originalname == "test_hooks_whole":
        del item.stash[_quiet_key]
    if back is not None:
        manager.register(back, "back")
    try:
        return (yield)
    finally:
        if back is not None:
            manager.unregister(back)
"""
"""The plugin's per-test hooks put back around a ``test_hooks_on`` test's protocol; around a
``test_hooks_whole`` one's with its quiet flag taken off (the whole path, which every
unmeasured test took before the quiet path); an empty plugin of the same hooks around a
``test_hooks_empty`` one's; outside the timer (a ``tryfirst`` wrapper, the timer's is
not)."""


def run_once(folder: Path, args: list[str], profile: str | None = None) -> dict[str, Any]:
    """One pytest process: each test's protocol seconds by variant, and whether torch was
    imported; exits with pytest's output where the run failed."""
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    out = folder / "times.json"
    out.unlink(missing_ok=True)
    pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *args]
    done = subprocess.run(
        [sys.executable, *prefix, *pytest],
        cwd=folder,
        env={**os.environ, "SIDE_OUT": str(out), "PYTHONPATH": PYTHONPATH},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def print_runs(name: str, values: list[float]) -> None:
    runs = ", ".join(f"{v:6.1f}" for v in values)
    print(f"{name:<22} {runs}   median {statistics.median(values):6.1f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="pytest processes a part")
    parser.add_argument("--profile", default=None, help="cProfile the first run into this file")
    options = parser.parse_args()
    over: dict[str, list[float]] = {}
    free: list[float] = []
    unused: list[float] = []
    empty: list[float] = []
    whole: list[float] = []
    pairs: list[float] = []
    orders: dict[str, Any] = {}
    imported = False
    with tempfile.TemporaryDirectory() as tmp:
        side, cuda_free, idle = Path(tmp, "side"), Path(tmp, "cuda_free"), Path(tmp, "idle")
        for folder, conftest, tests in (
            (side, TIMING + STUBS, TESTS),
            (cuda_free, TIMING, CUDA_FREE_TESTS),
            (idle, TIMING, UNUSED_TESTS),
        ):
            folder.mkdir()
            if folder is idle:
                (folder / "hooks_back.py").write_text(HOOKS_BACK)
            (folder / "conftest.py").write_text(conftest)
            (folder / "test_side.py").write_text(tests)
        for number in range(options.runs):
            times = run_once(side, [], options.profile if number == 0 else None)["times"]
            medians = {name: statistics.median(values) for name, values in times.items()}
            for name, median in medians.items():
                over.setdefault(name, []).append((median - medians["test_plain"]) * 1e6)
            over.setdefault("recorded over request", []).append(
                (medians["test_recorded"] - medians["test_request"]) * 1e6
            )
            times = run_once(side, ["--cgmem-json=run.json"])["times"]
            medians = {name: statistics.median(values) for name, values in times.items()}
            for name in ("test_marked", "test_recorded"):
                over.setdefault(f"{name}, run file", []).append(
                    (medians[name] - medians["test_plain"]) * 1e6
                )
            data = run_once(cuda_free, ["--cgmem-all", "--cgmem-budget=leak=0"])
            measured, opted_out = (
                statistics.median(data["times"][name])
                for name in ("test_measured", "test_opted_out")
            )
            free.append((measured - opted_out) * 1e6)
            imported = imported or bool(data["torch_imported"])
            times = run_once(idle, ["-p", "hooks_back"])["times"]
            orders = json.loads((idle / "times.json.register.json").read_text())
            pairs.append(orders.pop("pair_us"))
            off, on, bare, all_of_it = (
                statistics.median(times[f"test_hooks_{w}"]) for w in HOOK_VARIANTS
            )
            unused.append((on - off) * 1e6)
            empty.append((bare - off) * 1e6)
            whole.append((all_of_it - off) * 1e6)
    print(f"median us over plain, per run ({options.runs} runs), and the median of those:")
    for name, values in over.items():
        print_runs(name.removeprefix("test_"), values)
    print("under --cgmem-all, a test that never touches CUDA, us over one opted out:")
    print_runs("cuda-free", free)
    word = "met" if statistics.median(free) <= 50 and not imported else "MISSED"
    print(f"torch imported: {'yes' if imported else 'no'} (target <= 50 us, no torch: {word})")
    print("unmeasured tests: none of the hooks in a run that measures nothing; in one that")
    print("keeps them, us a test on their quiet path, on their whole path (every unmeasured")
    print("test's before the quiet path), and for an empty plugin of the same four hooks:")
    print_runs("per-test hooks", unused)
    print_runs("whole path", whole)
    print_runs("empty hooks", empty)
    print("taking the hooks off around unmeasured tests instead: us to register and unregister")
    print("them, and whether their place among the other plugins' hooks stays:")
    print_runs("register + unregister", pairs)
    before, again = orders["at configure"], orders["registered again"]
    moved = [name for name in before if before[name] != again[name]]
    print("their place:", "moved" if moved else "the same")
    for name in moved:  # hook calls in order, at configure and registered again
        print(f"  {name}:\n    {before[name]}\n    {again[name]}")
    return 1 if imported else 0


if __name__ == "__main__":
    sys.exit(main())
