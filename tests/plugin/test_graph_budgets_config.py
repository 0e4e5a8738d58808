"""Graph budgets on the mark and the options are checked at collection time (no GPU needed)."""

from __future__ import annotations

import pytest

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs


@pytest.mark.parametrize(
    ("budget", "needle"),
    [
        ("graph_pool='lots'", "graph_pool='lots'"),
        ("graphs=-1", "graphs=-1"),
        ("replays=1.5", "replays=1.5"),
    ],
)
def test_bad_graph_budget_is_a_usage_error(pytester, budget, needle):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.cgmem({budget})
        def test_x():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*test_x*@pytest.mark.cgmem: {needle}*"])


def test_graph_budgets_in_the_option(pytester):
    pytester.makepyfile(
        """
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("--cgmem-budget", "graph_pool=300MiB graphs=51 replays=0")
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest("--cgmem-budget", "graphs=many")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--cgmem-budget*graphs='many'*"])


def test_pure_coverage_checks_fail_a_cpu_test(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_cgmem import SizesNotCovered, assert_all_captured, assert_sizes_covered

        SIZES = [1, 2, 4, *range(8, 497, 8)]

        def test_covered():
            assert_sizes_covered(SIZES, range(1, 501))

        def test_capped():
            assert_all_captured([*SIZES, 512], SIZES)

        @pytest.mark.xfail(strict=True, raises=SizesNotCovered)
        def test_known_bug():
            assert_sizes_covered(SIZES, [500])
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*SizesNotCovered: cgmem: 4 runtime sizes pad to no captured CUDA graph size and "
            "will run eagerly: 497..500 (largest captured size is 496*",
            "*SizesNotCaptured: cgmem: 1 requested CUDA graph capture size was never "
            "captured: 512*silently capped*",
        ]
    )
