"""A budget on a figure the allocator cannot give fails saying why, or is skipped.

No GPU: the regions are handed to ``cgmem_record`` as an allocator that cannot give
``graph_pool`` (cudaMallocAsync) reports them; tests/gpu runs the real backend.
"""

from __future__ import annotations

import json

import pytest

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

SUITE = """
from pytest_cgmem import RegionResult
from pytest_cgmem.results.records import DeviceFigures

WHY = "backend:cudaMallocAsync keeps no graph pools"


def async_region(**figures):
    device = DeviceFigures(0, graph_pool=None, **figures)
    return RegionResult("load", (device,), 0.0, None, {"unavailable": {"graph_pool": WHY}})


def test_pool_budget(cgmem_record):
    cgmem_record(async_region(peak=1))


def test_over_and_unavailable(cgmem_record):
    cgmem_record(async_region(peak=2**40))
"""


def test_fails_by_default_naming_the_figure_and_why(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_async=SUITE)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--cgmem-budget=graph_pool=1MiB peak=1GiB"
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*BudgetUnavailable: cgmem: graph_pool budget 1.00 MiB cannot be checked on cuda:0 "
            "in 'load': backend:cudaMallocAsync keeps no graph pools; *--cgmem-unavailable=skip*",
            "*BudgetExceeded: cgmem: peak 1.00 TiB exceeds budget 1.00 GiB*",
        ]
    )


def test_skip_warns_and_checks_the_rest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_async=SUITE)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--cgmem-budget=graph_pool=1MiB peak=1GiB",
        "--cgmem-unavailable=skip",
    )
    result.assert_outcomes(passed=1, failed=1, warnings=2)  # both budgets skipped, warned
    result.stdout.fnmatch_lines(
        [
            "*PytestWarning: cgmem: graph_pool budget 1.00 MiB not checked on cuda:0 in 'load' "
            "(--cgmem-unavailable=skip): backend:cudaMallocAsync keeps no graph pools",
        ]
    )


def test_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_async=SUITE)
    pytester.makeini("[pytest]\ncgmem_unavailable = skip\ncgmem_budget = graph_pool=1MiB\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, warnings=2)


def test_a_failing_test_keeps_its_own_error_when_the_skip_warning_is_an_error(
    pytester: pytest.Pytester,
) -> None:
    """Under ``-W error`` the skipped budget's warning raises: in a test that raised, it
    must not take the place of the test's own error."""
    pytester.makepyfile(
        test_async=SUITE
        + """
import json

import pytest

@pytest.mark.xfail(raises=ValueError, strict=True)
def test_raises(cgmem_record):
    cgmem_record(async_region(peak=1))
    raise ValueError("the test's own error")
"""
    )
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        "--cgmem-unavailable=skip",
        "--cgmem-budget=graph_pool=1MiB",
        "--cgmem-json=run.json",
    )
    result.assert_outcomes(failed=2, xfailed=1)
    result.stdout.fnmatch_lines(["*test_pool_budget - pytest.PytestWarning: cgmem*"])
    tests = {t["nodeid"]: t for t in json.loads((pytester.path / "run.json").read_text())["tests"]}
    assert tests["test_async.py::test_raises"]["outcome"] == "xfailed"
    assert tests["test_async.py::test_raises"]["regions"][0]["devices"][0]["peak"] == 1
