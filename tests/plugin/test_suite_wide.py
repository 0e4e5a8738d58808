"""--cgmem-all on a machine without CUDA: nothing skipped, nothing imported, clear errors."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

# torch, where installed, is imported here, at collection: a test that imported it itself
# while holding a pytester would see it dropped from sys.modules at teardown (pytester
# restores them), and the process's next import of torch would fail.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401

SUITE = """
import sys
import unittest

import pytest


def test_plain():
    assert 1 + 1 == 2


class TestGroup:
    @pytest.mark.parametrize("n", [1, 2])
    def test_param(self, n):
        assert n


class Legacy(unittest.TestCase):
    def test_case(self):
        self.assertTrue(True)


@pytest.mark.cgmem_off("runs its own allocator")
def test_opted_out():
    pass
"""

NO_TORCH = """
import sys

def pytest_sessionfinish(session):
    with open("torch.txt", "w") as f:
        f.write(str("torch" in sys.modules))
"""


@pytest.mark.lean_runs(False)  # that no plugin's hook (pytest-benchmark's too) imports torch
def test_cuda_free_suite_runs_whole_and_imports_no_torch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(NO_TORCH)
    result = pytester.runpytest_subprocess("--cgmem-all", "--cgmem-budget=leak=0")
    result.assert_outcomes(passed=5)
    assert (pytester.path / "torch.txt").read_text() == "False"
    result.stdout.fnmatch_lines(
        [
            "*--cgmem-all: 0 test(s) measured, 0 over budget, 1 opted out, "
            "4 never used CUDA (not measured)",
            "*opted out test_suite.py::test_opted_out: runs its own allocator",
        ]
    )


def test_ini_key_turns_it_on(pytester: pytest.Pytester) -> None:
    """In a fresh process: where CUDA has started, every test is measured (on a GPU machine
    an earlier test of this process may have started it)."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeini("[pytest]\ncgmem_all = true\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*--cgmem-all: 0 test(s) measured*4 never used CUDA*"])


@pytest.mark.no_cuda
def test_explicitly_marked_tests_still_skip_without_cuda(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.cgmem(leak=0)
        def test_marked():
            pass

        def test_unmarked():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--cgmem-all", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*cgmem: no CUDA device*"])


@pytest.mark.parametrize(
    ("mark", "message"),
    [
        ("cgmem_off", "takes one reason, e.g. cgmem_off('runs its own allocator'), got none"),
        ("cgmem_off('')", "takes one reason, e.g. cgmem_off('runs its own allocator'), got ''"),
        (
            "cgmem_off(reason=3)",
            "takes one reason, e.g. cgmem_off('runs its own allocator'), got 3",
        ),
        ("cgmem_off('a', 'b')", "takes one reason*got 'a', 'b'"),
        ("cgmem_off('a', why='b')", "unknown argument(s) why; it takes a reason"),
        ("cgmem_off('x' * 500, reason='y')", "takes one reason*got 'xxx*' (502 characters), 'y'"),
        (
            "cgmem_off('runs its own\\nallocator')",
            "the reason must be one printable line (no newline or tab), got "
            "'runs its own\\nallocator'",
        ),
    ],
)
def test_bad_opt_out_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, mark: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{mark}
        def test_it():
            pass
        """
    )
    result = pytester.runpytest("--cgmem-all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: test_*.py::test_it: @pytest.mark.cgmem_off: {message}"])
    result.stdout.no_fnmatch_line("*--cgmem-all:*")  # no count of a run that never started


def test_bad_budget_with_cgmem_all_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--cgmem-all", "--cgmem-budget=leak=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --cgmem-budget='leak=lots': leak='lots': cannot read*"])


def test_opt_out_mark_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.cgmem_off(reason): under --cgmem-all*"])


@pytest.mark.no_cuda
@pytest.mark.parametrize("where", ["class", "module"])
def test_a_cgmem_mark_on_the_class_or_module_wins_over_the_test_s_cgmem_off(
    pytester: pytest.Pytester, where: str
) -> None:
    """As the mark's help says (``pytest --markers``): the test is a marked one, so without
    CUDA it skips as marked tests do, where an opted-out test would run and pass."""
    pytester.makepyfile(
        f"""
        import pytest

        {"pytestmark = pytest.mark.cgmem(leak=0)" if where == "module" else ""}

        {"@pytest.mark.cgmem(leak=0)" if where == "class" else ""}
        class TestIt:
            @pytest.mark.cgmem_off("keeps its cache on purpose")
            def test_it(self, cgmem_record):
                cgmem_record("cache", leak="8 MiB")
        """
    )
    result = pytester.runpytest("-rs", "--cgmem-all")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * cgmem: no CUDA device"])
    help_text = " ".join(pytester.runpytest("--markers").stdout.str().split())
    assert "a cgmem mark on the test, its class or its module wins" in help_text


def test_recorded_regions_are_judged_under_cgmem_all_without_cuda(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_server(cgmem_record):
            cgmem_record("server", leak="8 MiB")
        """
    )
    result = pytester.runpytest("--cgmem-all", "--cgmem-budget=leak=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cgmem: leak 8.00 MiB exceeds budget 0 B*in 'server'*"])


def test_recorded_regions_show_the_budget_they_were_held_to(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_server(cgmem_record):
            cgmem_record("server", leak="8 MiB")
        """
    )
    result = pytester.runpytest("--cgmem-all", "--cgmem-budget=leak=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["server on cuda:0 (*", "  leak * 8.00 MiB   budget * 0 B  OVER"])
    result.stdout.no_fnmatch_line("*driver figure did not grow*")  # recorded, not measured


FAILING = """
def test_fails():
    assert 1 + 1 == 3


def test_records_then_fails(cgmem_record):
    cgmem_record("server", leak="8 MiB")
    assert 2 + 2 == 5


def test_records_over(cgmem_record):
    cgmem_record("server", leak="8 MiB")
"""


def test_failing_tests_under_cgmem_all_keep_their_error_and_are_judged_and_counted(
    pytester: pytest.Pytester, run_without_a_cuda_context: Callable[..., pytest.RunResult]
) -> None:
    """A test that raises fails with its own error: counted as never using CUDA where it
    recorded nothing, its recorded figures judged where it did. A budget failure raised
    after the call shows none of the plugin's frames."""
    pytester.makepyfile(test_fail=FAILING)
    result = run_without_a_cuda_context("--cgmem-all", "--cgmem-budget=leak=0", "--tb=long")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["*--cgmem-all: 2 test(s) measured, 2 over budget, 0 opted out, 1 never used CUDA*"]
    )
    result.stdout.fnmatch_lines_random(
        [
            "E       assert (1 + 1) == 3",
            "E       assert (2 + 2) == 5",
            "E*pytest_cgmem.BudgetExceeded: cgmem: leak 8.00 MiB exceeds budget 0 B*",
        ]
    )
    assert [line for line in result.stdout.lines if "pytest_cgmem" + "/" in line] == []


OPTED_OUT_RECORDING = """
import pytest


@pytest.mark.cgmem_off("keeps its cache on purpose")
def test_keeps(cgmem_record):
    cgmem_record("cache", leak="8 MiB")


def test_server(cgmem_record):
    cgmem_record("server", leak="8 MiB")
"""


@pytest.mark.parametrize("suite_wide", [["--cgmem-all"], []], ids=["cgmem-all", "marked-only"])
def test_an_opted_out_test_records_figures_but_is_not_held_to_the_default_budget(
    pytester: pytest.Pytester, suite_wide: list[str]
) -> None:
    pytester.makepyfile(test_rec=OPTED_OUT_RECORDING)
    result = pytester.runpytest(*suite_wide, "--cgmem-budget=leak=0", "--cgmem-json=run.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_rec.py::test_server - *BudgetExceeded*"])
    run = json.loads((pytester.path / "run.json").read_text())
    kept = {t["nodeid"]: t for t in run["tests"]}["test_rec.py::test_keeps"]
    assert kept["regions"][0]["devices"][0]["leak"] == 8 * 2**20
    assert kept["budget"] == {} and kept["violations"] == []
    if suite_wide:
        result.stdout.fnmatch_lines(
            [
                "*--cgmem-all: 1 test(s) measured, 1 over budget, 1 opted out, *",
                "  opted out test_rec.py::test_keeps: keeps its cache on purpose "
                "(the figures it recorded are kept, not judged)",
            ]
        )


def compare(folder: Path) -> subprocess.CompletedProcess[str]:
    """``cgmem compare base.json new.json`` in ``folder``, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_cgmem.cli", "compare", "base.json", "new.json"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_opted_out_test_is_not_held_to_the_baseline(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_rec="""
        import os
        import pytest

        @pytest.mark.cgmem_off("keeps its cache on purpose")
        def test_keeps(cgmem_record):
            cgmem_record("cache", peak=os.environ["PEAK"])

        def test_server(cgmem_record):
            cgmem_record("server", peak=os.environ["PEAK"])
        """
    )
    monkeypatch.setenv("PEAK", "1 MiB")
    pytester.runpytest("--cgmem-save-baseline=base.json").assert_outcomes(passed=2)
    monkeypatch.setenv("PEAK", "8 MiB")
    result = pytester.runpytest("--cgmem-baseline=base.json", "--cgmem-json=new.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_rec.py::test_server - *BaselineRegression*"])
    tests = {t["nodeid"]: t for t in json.loads((pytester.path / "new.json").read_text())["tests"]}
    assert tests["test_rec.py::test_keeps"]["judged"] is False
    assert "judged" not in tests["test_rec.py::test_server"]
    # cgmem compare of the same two files finds what the run found: one regression
    compared = compare(pytester.path)
    assert compared.returncode == 1
    assert "test_rec.py::test_server [server]" in compared.stdout
    assert "test_keeps" not in compared.stdout


def test_figures_recorded_in_a_setup_that_skipped_are_kept_not_compared(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_rec="""
        import os
        import pytest

        @pytest.fixture
        def server(cgmem_record):
            cgmem_record("setup", peak=os.environ["PEAK"])
            pytest.skip("no server here")

        def test_served(server):
            pass
        """
    )
    monkeypatch.setenv("PEAK", "1 MiB")
    pytester.runpytest("--cgmem-json=base.json").assert_outcomes(skipped=1)
    monkeypatch.setenv("PEAK", "8 MiB")
    pytester.runpytest("--cgmem-json=new.json").assert_outcomes(skipped=1)
    (test,) = json.loads((pytester.path / "new.json").read_text())["tests"]
    assert test["judged"] is False and test["regions"][0]["devices"][0]["peak"] == 8 * 2**20
    compared = compare(pytester.path)
    assert (compared.returncode, "REGRESSION" in compared.stdout) == (0, False)


def test_the_suite_summary_counts_every_worker_s_tests_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE, test_rec=OPTED_OUT_RECORDING)
    # the controller runs in this process; the tests run in the workers, processes of their own
    result = pytester.runpytest(
        "--cgmem-all", "--cgmem-budget=leak=0", "-n", "2", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*--cgmem-all: 1 test(s) measured, 1 over budget, 2 opted out, "
            "4 never used CUDA (not measured)",
            "  opted out test_rec.py::test_keeps: keeps its cache on purpose (the figures *",
            "  opted out test_suite.py::test_opted_out: runs its own allocator",
        ]
    )


RECORDED_IN_TEARDOWN = """
import pytest


@pytest.fixture
def server(cgmem_record):
    yield
    cgmem_record("server", peak=1000)


def test_served(server):
    pass


def test_cpu_only():
    pass
"""


@pytest.mark.parametrize("flags", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_test_whose_teardown_recorded_figures_is_counted_once(
    pytester: pytest.Pytester, flags: list[str]
) -> None:
    """Its call used no CUDA, and its fixture's teardown recorded figures: it is measured,
    and not counted among the tests that never used CUDA too (before, it was both)."""
    if flags:
        pytest.importorskip("xdist")
    pytester.makepyfile(test_teardown=RECORDED_IN_TEARDOWN)
    result = pytester.runpytest("--cgmem-all", "--cgmem-json=run.json", *flags)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "--cgmem-all: 1 test(s) measured, 0 over budget, 0 opted out, "
            "1 never used CUDA (not measured)"
        ]
    )
    tests = json.loads((pytester.path / "run.json").read_text())["tests"]
    assert [t["nodeid"] for t in tests] == ["test_teardown.py::test_served"]


@pytest.mark.no_cuda
def test_the_existing_suite_example_exits_0_where_there_is_no_gpu(
    pytester: pytest.Pytester,
) -> None:
    """``./dev demo``'s second run: on a CPU machine its CUDA tests skip one by one and its
    CPU-only test runs, unmeasured (--cgmem-all skips nothing that would run without it).

    In process (it runs only where there is no CUDA device): the example's folder brings
    its own pytest.ini, so its own rootdir, as in the demo; the torch it imports is already
    imported here."""
    pytest.importorskip("torch")
    from pathlib import Path

    import pytest_cgmem

    root = Path(pytest_cgmem.__file__).resolve().parent.parent
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", root / "examples/existing_suite")
    assert result.ret == 0, result.stdout.str()[-2000:]
    last = result.stdout.str().strip().splitlines()[-1]
    assert last.startswith("1 passed, 7 skipped in "), last
