"""How resize and steady failures reach a pytest run (no GPU needed: pure failure objects)."""

from __future__ import annotations

import pytest

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

SUITE = """
import pytest
from pytest_cgmem import ResizeCheckFailed, SteadyStateFailed
from pytest_cgmem.checks.resize import (
    StepFigures, SteadyFigures, resize_violations, steady_violations
)

GiB, MiB = 2**30, 2**20
STEPS = [StepFigures(0, GiB, GiB, 0, GiB, 0), StepFigures(1, 2 * GiB, 2 * GiB, GiB, 2 * GiB, 0)]


def test_resize_failure():
    raise ResizeCheckFailed(resize_violations(STEPS))


@pytest.mark.xfail(strict=True, raises=ResizeCheckFailed)
def test_buggy_example():
    raise ResizeCheckFailed(resize_violations(STEPS))


@pytest.mark.xfail(strict=True, raises=SteadyStateFailed)
def test_buggy_steady_example():
    base = SteadyFigures(64 * MiB, 64 * MiB, 1)
    raise SteadyStateFailed(steady_violations(base, [SteadyFigures(128 * MiB, 128 * MiB, 2)], 1))


def test_plain_assertion_catches_it():
    with pytest.raises(AssertionError, match="reserved but unused"):
        raise ResizeCheckFailed(resize_violations(STEPS))
"""


def test_failures_read_as_assertions_and_xfail_on_the_plugins_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1, xfailed=2)
    result.stdout.fnmatch_lines(
        [
            "E *ResizeCheckFailed: cgmem: resize_check step 2/2, resize(2147483648) on cuda:0: "
            "1.00 GiB reserved but unused exceeds slack 0 B (live 2.00 GiB, reserved 3.00 GiB)",
            "E *likely cause: memory freed by the resize went back to PyTorch's caching*",
            "E *fix: call torch.cuda.empty_cache() between freeing the old buffer and *",
        ]
    )
