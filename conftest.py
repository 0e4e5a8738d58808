"""Project-wide test setup: GPU tests run where a CUDA device is, and skip visibly elsewhere;
no-CUDA tests the other way round."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from pytest_cgmem.session import NO_GPU

CHECKOUT = str(Path(__file__).resolve().parent)
TESTS = Path(CHECKOUT, "tests")

GPU_REASON = "no CUDA device: GPU tests run on a GPU machine (scripts/gpu-check)"
NO_CUDA_REASON = "checks the no-CUDA path; a CUDA device is here"
_cuda = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gpu",
        action="store_true",
        default=False,
        help="GPU tests must run: error instead of skipping them when no CUDA device is found",
    )


def _cuda_available(config: pytest.Config) -> bool:
    if _cuda not in config.stash:
        try:
            import torch

            config.stash[_cuda] = bool(torch.cuda.is_available())
        except ImportError:
            config.stash[_cuda] = False
    return config.stash[_cuda]


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``pytest -n``, a test's own pytester runs must not look like xdist workers (the
    plugin pins devices, pytest-benchmark turns itself off, in a process with these set)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's own, with its runs (and their xdist workers) spared hypothesis's plugin:
    none of their suites uses it, and importing it costs each fresh process 0.7 s (half
    of a subprocess run's start on the 2-core CI machine). pytester clears
    PYTEST_ADDOPTS when it starts, so it is set here, after."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
    return pytester


@pytest.fixture
def this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocesses and xdist workers import this checkout's pytest_cgmem (not another
    installed copy); PYTHONPATH is prepended to, so what the machine adds stays."""
    monkeypatch.setenv("PYTHONPATH", CHECKOUT, prepend=os.pathsep)


@pytest.fixture
def run_without_a_cuda_context(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> Callable[..., pytest.RunResult]:
    """pytester's run for an inner suite that must start with no CUDA context: in this
    process where no CUDA device is (none can have started; a fresh process would import
    torch again, 2 s of CPU), in a fresh one where one is (an earlier test of this process
    may have started a context)."""
    if _cuda_available(request.config):
        return pytester.runpytest_subprocess
    return pytester.runpytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("no_cuda") is not None and _cuda_available(item.config):
        pytest.skip(NO_CUDA_REASON)
    if item.get_closest_marker("gpu") is None or _cuda_available(item.config):
        return
    if item.config.getoption("--gpu"):
        pytest.fail(f"--gpu given but {GPU_REASON}", pytrace=False)
    pytest.skip(GPU_REASON)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """This suite's own run loads the plugin under test too. A bug that took its unmarked
    tests for GPU-memory tests would skip every one of them as "no CUDA device" on a CPU
    machine, and the suite would pass green: such a skip of a test not marked ``gpu`` fails
    it instead. Only the tests under ``tests/``: the demo's examples are GPU-memory tests,
    and on a CPU machine ``./dev demo`` skips them as the plugin says."""
    report: pytest.TestReport = yield
    longrepr = report.longrepr
    if (
        report.skipped
        and isinstance(longrepr, tuple)
        and NO_GPU in str(longrepr[2])
        and item.get_closest_marker("gpu") is None
        and item.path.resolve().is_relative_to(TESTS)
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} is not a GPU test, but the plugin under test skipped it as one "
            f"({longrepr[2]}): it measures a test it should not"
        )
    return report


class Hung(Exception):
    """Not an OSError, so that no ``except OSError`` in the code under test takes it."""


Within = Callable[[float], AbstractContextManager[None]]


@contextlib.contextmanager
def _within(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Hung(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def within() -> Within:
    """``with within(5):`` raises ``Hung`` where the block still runs after 5 s (a blocked
    ``open()`` of a FIFO too)."""
    return _within
