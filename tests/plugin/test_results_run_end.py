"""How a run's end reaches its files and its last lines. Figures come from ``cgmem_record``,
so all of it runs without a GPU.
"""

from __future__ import annotations

import json

import pytest

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

RECORDS = """
def test_a(cgmem_record):
    cgmem_record("load", peak=1)
"""


# -- a run file another run takes after the paths were checked ---------------------------

EXIT_BEFORE_COLLECTING = """
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    pytest.exit("nothing to run here", returncode=0)
    return (yield)
"""

ANOTHER_RUN_STARTS = """
from pytest_cgmem.results import journal

held = []


def pytest_sessionstart(session):
    # another run takes the run file after this one checked its paths
    stub = {"schema": "pytest-cgmem/1", "journal": {"file": "run.json.journal", "run": "other"}}
    held.append(journal.Journal.start("run.json", stub))


def pytest_unconfigure(config):
    for other in held:
        other.close()
"""


def test_a_run_file_another_run_takes_before_collection_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    """Said as pytest says a usage error, and again last; the other run's file is left
    to it."""
    pytester.makeconftest(ANOTHER_RUN_STARTS)
    pytester.makepyfile(test_rec=RECORDS)
    result = pytester.runpytest("--cgmem-json=run.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = (
        "--cgmem-json='run.json': another pytest run (pid * on *, started *) is writing this "
        "run file; give each concurrent run its own path"
    )
    result.stderr.fnmatch_lines([f"ERROR: {error}"])
    last = pytest.LineMatcher(result.stdout.lines[-2:])
    last.fnmatch_lines(
        [f"cgmem: {error}", "cgmem: the run's results were not all written: exit status 4"]
    )
    assert json.loads((pytester.path / "run.json").read_text())["journal"]["run"] == "other"


def test_a_run_stopped_with_status_0_whose_run_file_another_run_took_fails(
    pytester: pytest.Pytester,
) -> None:
    """Its run file could not be marked incomplete: as any file not written, that fails the
    run (before, it exited 0 beside the red line that said so)."""
    pytester.makeconftest(ANOTHER_RUN_STARTS + EXIT_BEFORE_COLLECTING)
    pytester.makepyfile(test_rec=RECORDS)
    result = pytester.runpytest("--cgmem-json=run.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.stdout.lines[-1] == "cgmem: the run's results were not all written: exit status 1"
