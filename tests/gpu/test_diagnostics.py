"""Failure diagnostics on a real GPU: pools, allocation sites, leaked blocks, artifacts.

Each test runs a small suite through pytester and reads the failure report it prints.
"""

from __future__ import annotations

import os
import pickle
import textwrap
from pathlib import Path

import pytest

import pytest_cgmem

pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
MiB = 2**20
REPO = str(Path(pytest_cgmem.__file__).resolve().parent.parent)  # subprocesses use this checkout


def line_of(source: str, marker: str) -> int:
    """The 1-based line of ``marker`` in the dedented source pytester writes."""
    for number, line in enumerate(textwrap.dedent(source).strip().splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(marker)


OVER = """
import pytest, torch

def make(n):
    return torch.empty(n, dtype=torch.uint8, device="cuda")  # site: helper

@pytest.mark.cgmem(peak="64 MiB")
def test_over():
    small = torch.empty(2**20, dtype=torch.uint8, device="cuda")  # site: small
    lin = torch.nn.Linear(256, 256, device="cuda")
    y = lin(torch.ones(8, 256, device="cuda"))
    big = make(256 * 2**20)  # site: big
    del big, small, y
"""


def test_over_budget_lists_the_line_of_the_excess_with_its_bytes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_over=OVER)
    result = pytester.runpytest("--cgmem-history", "--cgmem-stacks=2")
    result.assert_outcomes(failed=1)
    helper, big = line_of(OVER, "site: helper"), line_of(OVER, "site: big")
    result.stdout.fnmatch_lines(
        [
            "*- cgmem -*",
            "allocator segments at the end of the region by pool (cuda:0):",
            "  pool (0, 0) default*",
            "allocation sites live at the peak (cuda:0: +* at event *",
            f"    256.00 MiB  1 block     test_over.py:{helper} in make",
            f"*from test_over.py:{big} in test_over",
            f"*1.00 MiB  1 block     test_over.py:{line_of(OVER, 'site: small')} in test_over",
        ]
    )
    section = result.stdout.str().split("- cgmem -")[1].split("=====")[0]
    assert "linear.py" not in section and "module.py" not in section
    assert "_pytest" not in section and "pluggy" not in section and "pytest_cgmem" not in section


def test_without_history_the_section_shows_pools_and_says_how_to_get_sites(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_over=OVER)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "allocator segments at the end of the region by pool (cuda:0):",
            "  pool (0, 0) default*",
            "*run with --cgmem-history to see the allocation sites live at the peak*",
        ]
    )


LEAK = """
import pytest, torch
KEEP = []

@pytest.mark.cgmem(leak=0)
def test_keeps():
    tmp = torch.empty(8 * 2**20, dtype=torch.uint8, device="cuda")
    KEEP.append(torch.empty(48 * 2**20, dtype=torch.uint8, device="cuda"))  # site: kept
    del tmp
"""


def test_leak_lists_the_allocating_line_of_the_kept_tensor(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leak=LEAK)
    result = pytester.runpytest("--cgmem-history")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cgmem: leak 48.00 MiB exceeds budget*",
            "leaked blocks by allocation site (cuda:0: 48.00 MiB in 1 block(s)*",
            f"     48.00 MiB  1 block     test_leak.py:{line_of(LEAK, 'site: kept')} in test_keeps",
        ]
    )


def test_leak_without_history_lists_block_sizes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fresh process: garbage left by this suite's in-process runs would sit in the
    # region's start figure, and the leak check's gc.collect() could offset the leak
    monkeypatch.setenv("PYTHONPATH", REPO, prepend=os.pathsep)
    pytester.makepyfile(test_leak=LEAK)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "active blocks at the end (cuda:0), largest first; "
            "the leak of 48.00 MiB is among them: *48.00 MiB*"
        ]
    )


GRAPH_LOG_THEN_FAILS = """
import torch

def test_graph_then_fails(cgmem):
    x = torch.ones(2**20, device="cuda")
    with cgmem.graphs():
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):  # an elementwise op: no cuBLAS handle made in the capture
            y = x * 2
    assert False, "the test's own failure"
"""


def test_a_failing_test_with_a_graph_log_still_gets_its_diagnostics(
    pytester: pytest.Pytester,
) -> None:
    """A graph log's region has no leak figure (None): the diagnostics once compared it with
    an int and printed only "diagnostics failed: TypeError"."""
    pytester.makepyfile(test_graph_log=GRAPH_LOG_THEN_FAILS)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the test's own failure*", "allocator segments at the end * by pool (cuda:0):"]
    )
    assert "diagnostics failed" not in result.stdout.str()


ARTIFACTS = """
import pytest, torch

@pytest.mark.cgmem(peak="1 MiB")
def test_fails():
    x = torch.empty(32 * 2**20, dtype=torch.uint8, device="cuda")  # site: art

@pytest.mark.cgmem(peak="1 GiB")
def test_passes():
    x = torch.empty(32 * 2**20, dtype=torch.uint8, device="cuda")
"""


@pytest.mark.parametrize("history", [True, False])
def test_artifacts_for_failing_tests_only(pytester: pytest.Pytester, history: bool) -> None:
    pytester.makepyfile(test_art=ARTIFACTS)
    args = ["--cgmem-artifacts=art"] + (["--cgmem-history"] if history else [])
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, failed=1)
    files = sorted((pytester.path / "art").iterdir())
    assert [f.suffix for f in files] == [".html", ".pickle", ".txt"]
    assert all("test_fails" in f.name for f in files)
    result.stdout.fnmatch_lines(
        ["artifacts: *test_fails*.pickle (drop on https://pytorch.org/memory_viz)"]
    )
    with files[1].open("rb") as f:
        snapshot = pickle.load(f)
    assert {"segments", "device_traces"} <= set(snapshot)
    assert any(s["total_size"] >= 32 * MiB for s in snapshot["segments"])
    page = files[0].read_text()
    assert "<script src" not in page and "cdn" not in page
    assert "pool (0, 0)" in files[2].read_text()
    if history:
        site = f"test_art.py:{line_of(ARTIFACTS, 'site: art')} in test_fails"
        assert "<svg" in page and site in page
        assert 'id="cgmem-trace-0"' in page  # the trace itself, as JSON
        assert any(
            e["action"] == "alloc" and e["size"] == 32 * MiB for e in snapshot["device_traces"][0]
        )


RECORDING_OFF = """
import pytest, torch
N = 5 * 2**20 + 1536

def assert_history_off():
    assert not torch._C._cuda_isHistoryEnabled()
    probe = torch.empty(N, dtype=torch.uint8, device="cuda")
    traces = torch.cuda.memory._snapshot()["device_traces"]
    assert not any(e.get("size") == probe.untyped_storage().nbytes() for t in traces for e in t)
    assert not any(t for t in traces), "history of an earlier test is still there"

@pytest.mark.cgmem(peak=1)
def test_over():
    torch.empty(2**20, dtype=torch.uint8, device="cuda")

def test_after_over():
    assert_history_off()

@pytest.mark.cgmem(peak="1 GiB")
def test_raises():
    x = torch.empty(2**20, dtype=torch.uint8, device="cuda")
    raise RuntimeError("boom")

def test_after_raises():
    assert_history_off()

@pytest.mark.cgmem(peak="1 GiB")
def test_oom():
    torch.empty(2**50, dtype=torch.uint8, device="cuda")

def test_after_oom():
    assert_history_off()

@pytest.mark.cgmem(peak="1 GiB")
def test_passes():
    torch.empty(2**20, dtype=torch.uint8, device="cuda")

def test_after_pass():
    assert_history_off()

def test_fixture_fails(cgmem):
    with cgmem.measure("step") as m:
        x = torch.empty(2**20, dtype=torch.uint8, device="cuda")
    m.check(peak=1)

def test_after_fixture():
    assert_history_off()
"""


def test_recording_is_off_after_every_outcome(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_off=RECORDING_OFF)
    result = pytester.runpytest("--cgmem-history")
    result.assert_outcomes(passed=6, failed=4)
    out = result.stdout.str()
    assert "OutOfMemoryError" in out
    result.stdout.fnmatch_lines(["*CUDA out of memory: * requested with * free on the device*"])


def test_recording_is_off_after_keyboard_interrupt(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", REPO, prepend=os.pathsep)
    pytester.makeconftest(
        """
        import torch

        def pytest_sessionfinish(session):
            with open("history.txt", "w") as f:
                f.write(str(torch._C._cuda_isHistoryEnabled()))
        """
    )
    pytester.makepyfile(
        test_kb="""
        import pytest, torch

        @pytest.mark.cgmem(peak="1 GiB")
        def test_interrupted():
            x = torch.empty(2**20, dtype=torch.uint8, device="cuda")
            raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_subprocess("--cgmem-history")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert (pytester.path / "history.txt").read_text() == "False"


COUNT_SNAPSHOTS = """
from pytest_cgmem.cuda import allocator

calls = []
_snapshot = allocator.snapshot

def counting():
    calls.append(1)
    return _snapshot()

allocator.snapshot = counting

def pytest_sessionfinish(session):
    with open("snapshots.txt", "w") as f:
        f.write(str(len(calls)))
"""


@pytest.mark.parametrize("history", [False, True])
def test_passing_tests_take_no_snapshot(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, history: bool
) -> None:
    monkeypatch.setenv("PYTHONPATH", REPO, prepend=os.pathsep)
    pytester.makeconftest(COUNT_SNAPSHOTS)
    pytester.makepyfile(
        test_pass="""
        import pytest, torch

        @pytest.mark.cgmem(peak="1 GiB", leak=0)
        def test_a():
            x = torch.empty(2**20, dtype=torch.uint8, device="cuda")

        def test_b(cgmem):
            with cgmem.measure():
                x = torch.empty(2**20, dtype=torch.uint8, device="cuda")
        """
    )
    args = ["--cgmem-history"] if history else []
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)
    assert (pytester.path / "snapshots.txt").read_text() == "0"


def test_graph_pool_shows_in_the_segments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_graph="""
        import pytest, torch
        KEEP = []

        @pytest.mark.cgmem(leak=0)
        def test_graph():
            lin = torch.nn.Linear(1024, 1024, device="cuda")
            x = torch.ones(64, 1024, device="cuda")
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                lin(x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                y = lin(x)
            KEEP.append((g, y, lin, x))
        """
    )
    result = pytester.runpytest("--cgmem-history")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["  pool (0, 0) default*", "  pool (*) graph/private *segment(s)*reserved*"]
    )
