"""An installed plugin that a run does not use runs none of its per-test hooks; a fixture
of ours asked for at run time still has its test judged (no GPU needed)."""

from __future__ import annotations

import json
import sys

import pytest

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

OURS = """
import pytest

HOOKS = (
    "pytest_runtest_setup",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
    "pytest_runtest_logreport",
)


def ours(config):
    return [
        name
        for name in HOOKS
        if any(
            impl.plugin_name.startswith("cgmem")
            for impl in getattr(config.pluginmanager.hook, name).get_hookimpls()
        )
    ]


@pytest.fixture
def later(request):
    '''Asks for a fixture when the test calls it: the test names no fixture of ours and
    not ``request`` itself.'''
    return request.getfixturevalue


@pytest.fixture
def early(request):
    '''Asks for ``cgmem_record`` while the test is set up.'''
    return request.getfixturevalue("cgmem_record")
"""

KEEPS = "def test_keeps_the_hooks(cgmem_record):\n    pass\n"
"""A test that keeps the per-test hooks in its run: the others' are quiet there (they
name no fixture of ours), until one asks for a fixture."""


def test_a_run_that_measures_nothing_has_no_per_test_hooks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        """
        from conftest import ours

        def test_plain(pytestconfig):
            assert ours(pytestconfig) == []

        class TestClass:
            def test_method(self, pytestconfig, tmp_path, capsys):
                assert ours(pytestconfig) == []
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("args", "test"),
    [
        ((), "@pytest.mark.cgmem(leak=0)\ndef test_marked():\n    pass"),
        ((), "def test_records(cgmem_record):\n    pass"),
        ((), "def test_regions(cgmem):\n    pass"),
        ((), "def test_may_ask_in_its_body(request):\n    pass"),
        ((), "def test_may_ask_in_its_body(*, request):\n    pass"),
        (("--cgmem-all",), ""),
        (("--cgmem-json=run.json",), ""),
    ],
    ids=["mark", "cgmem_record", "cgmem", "request", "kwonly-request", "cgmem-all", "cgmem-json"],
)
def test_the_per_test_hooks_stay_where_a_test_needs_them(
    pytester: pytest.Pytester, args: tuple[str, ...], test: str
) -> None:
    pytester.makeconftest(OURS)
    plain = (
        "import pytest\n"
        "from conftest import HOOKS, ours\n\n"
        "def test_plain(pytestconfig):\n"
        "    assert ours(pytestconfig) == list(HOOKS)\n\n"
    )
    pytester.makepyfile(plain + test)
    result = pytester.runpytest("-p", "no:randomly", *args)
    assert result.parseoutcomes().get("passed", 0) >= 1
    assert "failed" not in result.parseoutcomes()


def test_a_doctest_keeps_the_per_test_hooks(pytester: pytest.Pytester) -> None:
    """A doctest may ask for a fixture with ``getfixture``: its run keeps the hooks, for
    the plain test collected before it too (not only from the doctest's call on)."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        test_plain="""
        from conftest import HOOKS, ours

        def test_plain(pytestconfig):
            assert ours(pytestconfig) == list(HOOKS)
        """,
        utils='''
        def twice(x):
            """
            >>> _ = getfixture("cgmem_record")("load", peak=2 * 2**20)
            >>> twice(2)
            4
            """
            return 2 * x
        ''',
    )
    result = pytester.runpytest(
        "-p", "no:randomly", "--doctest-modules", "--cgmem-budget=peak=1MiB"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*utils.twice*", "*cgmem: peak 2.00 MiB exceeds*"])


def test_blocking_the_per_test_hooks_measures_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest("-p", "no:cgmem-tests").assert_outcomes(passed=1)


LATE = """
from conftest import HOOKS, ours

def test_before(pytestconfig):
    assert ours(pytestconfig) == []

def test_asks_in_its_body(later):
    later("cgmem_record")("load", peak=2 * 2**20)

def test_after(pytestconfig):
    assert ours(pytestconfig) == list(HOOKS)
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_a_fixture_asked_for_in_the_body_is_judged(pytester: pytest.Pytester, xdist: bool) -> None:
    """A fixture of ours asked for inside the test, in a run whose collection saw no test
    that needs the hooks: they come with the fixture, and the test is judged at its
    call's report, over budget as it would be had it named the fixture."""
    if xdist:
        pytest.importorskip("xdist")
    pytester.makeconftest(OURS)
    pytester.makepyfile(test_body=LATE)
    args = ["-p", "no:randomly", "--cgmem-budget=peak=1MiB"]
    if xdist:
        result = pytester.runpytest_subprocess(*args, "-p", "no:benchmark", "-n", "1")
    else:
        result = pytester.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "cgmem: peak 2.00 MiB exceeds budget 1.00 MiB *",
            "*test_body.py::test_asks_in_its_body [[]load[]]*2.00 MiB*",
            "FAILED test_body.py::test_asks_in_its_body*",
        ]
    )


@pytest.mark.parametrize("fixture", ["cgmem", "cgmem_distributed"])
def test_each_fixture_asked_for_in_the_body_brings_the_hooks(
    pytester: pytest.Pytester, fixture: str
) -> None:
    """``cgmem`` puts the hooks back before it skips where no GPU is (on one, its regions
    are then judged), ``cgmem_distributed`` before any rank has run."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        test_body=f"""
        from conftest import HOOKS, ours

        def test_before(pytestconfig):
            assert ours(pytestconfig) == []

        def test_asks_in_its_body(later):
            later("{fixture}")

        def test_after(pytestconfig):
            assert ours(pytestconfig) == list(HOOKS)
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-v")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*::test_before PASSED*", "*::test_after PASSED*"])


MIXED = """
def test_before():
    pass

def test_asks_in_its_body(later):
    later("cgmem_record")("load", peak=2 * 2**20)

def test_asks_in_setup(early):
    early("load", peak=2 * 2**20)

def test_asks_within_budget(later):
    later("cgmem_record")("load", peak=2**19)

def test_after():
    pass
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_a_quiet_test_that_asks_for_a_fixture_is_judged(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    """In a run that keeps the hooks for another test, a test that names no fixture of ours
    and asks for one in its body or its setup is judged as a test naming it would be."""
    if xdist:
        pytest.importorskip("xdist")
    pytester.makeconftest(OURS)
    pytester.makepyfile(test_body=MIXED, test_keeps=KEEPS)
    args = ["-p", "no:randomly", "--cgmem-budget=peak=1MiB", "--cgmem-json=run.json"]
    if xdist:
        result = pytester.runpytest_subprocess(*args, "-p", "no:benchmark", "-n", "1")
    else:
        result = pytester.runpytest(*args)
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(["*test_body.py::test_asks_in_its_body [[]load[]]*2.00 MiB*"])
    for name in ("test_asks_in_its_body", "test_asks_in_setup"):
        result.stdout.fnmatch_lines([f"FAILED test_body.py::{name}*"])
    run = json.loads((pytester.path / "run.json").read_text())
    outcomes = {test["nodeid"]: test["outcome"] for test in run["tests"]}
    assert outcomes == {
        "test_body.py::test_asks_in_its_body": "failed",
        "test_body.py::test_asks_in_setup": "failed",
        "test_body.py::test_asks_within_budget": "passed",
    }


@pytest.fixture(params=[False, True], ids=["alone", "beside-a-test-that-keeps-the-hooks"])
def keeps(request: pytest.FixtureRequest, pytester: pytest.Pytester) -> int:
    """Whether the run has a test that keeps the per-test hooks (the test under test then
    takes their quiet path until it asks for a fixture): the passed tests it adds."""
    if request.param:
        pytester.makepyfile(test_keeps=KEEPS)
    return int(request.param)


@pytest.mark.skipif(
    int(pytest.__version__.split(".")[0]) < 9,
    reason="pytest's own subtests fixture came with pytest 9",
)
def test_a_late_fixture_s_figures_in_a_later_subtest_are_judged(
    pytester: pytest.Pytester, keeps: int
) -> None:
    """Alone, the hooks come during the call, so each report of the call phase (a
    subtest's, then the test's) judges the regions so far: the over-budget figure
    recorded in the second subtest fails it, and the test. Beside a test that keeps the
    hooks, the quiet call wrapper judges the test at its end, as for a test naming the
    fixture: the test fails, no subtest does."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        """
        def test_subtests(later, subtests):
            record = None
            with subtests.test("a"):
                record = later("cgmem_record")
                record("small", peak=2**19)
            with subtests.test("b"):
                record("big", peak=2 * 2**20)
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=1MiB")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAILED *::test_subtests*"])
    result.stdout.no_fnmatch_line("SUBFAILED[[]a[]]*")
    if keeps:
        result.stdout.no_fnmatch_line("SUBFAILED*")
    else:
        result.stdout.fnmatch_lines(["SUBFAILED[[]b[]] *::test_subtests*"])


INTERACT = """
from pathlib import Path


def pytest_exception_interact(node, call, report):
    with Path("interact.txt").open("a") as out:
        out.write(f"{node.name} {call.when} {call.excinfo.typename}\\n")
"""


def test_a_quiet_test_over_budget_fails_in_its_call_as_one_naming_the_fixture(
    pytester: pytest.Pytester,
) -> None:
    """In a run that keeps the hooks, a quiet test that asks for a fixture in its body
    and breaks its budget fails with the same exception in its call phase as a test that
    names the fixture: what --pdb, pytest-rerunfailures and JUnit read."""
    pytester.makeconftest(OURS + INTERACT)
    pytester.makepyfile(
        test_both="""
        def test_asks(later):
            later("cgmem_record")("load", peak=2 * 2**20)

        def test_names(cgmem_record):
            cgmem_record("load", peak=2 * 2**20)
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=1MiB")
    result.assert_outcomes(failed=2)
    for name in ("test_asks", "test_names"):
        result.stdout.fnmatch_lines([f"FAILED test_both.py::{name} - *BudgetExceeded*"])
    interactions = (pytester.path / "interact.txt").read_text().splitlines()
    assert interactions == ["test_asks call BudgetExceeded", "test_names call BudgetExceeded"]


def test_a_late_judging_error_fails_that_test_and_the_run_goes_on(
    pytester: pytest.Pytester,
) -> None:
    """The hooks came during the call: a figure the budget could not check, under
    ``--cgmem-unavailable=skip`` with its warning made an error, fails that test's report
    instead of ending the run."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        test_late_judging_error="""
        from pytest_cgmem import DeviceFigures, RegionResult

        def test_late(later):
            unavailable = {"unavailable": {"reserved": "not given"}}
            region = RegionResult("load", (DeviceFigures(0, peak=10),), 0.0, None, unavailable)
            later("cgmem_record")(region)

        def test_after():
            pass
        """
    )
    result = pytester.runpytest(
        "-p",
        "no:randomly",
        "--cgmem-budget=reserved=1MiB",
        "--cgmem-unavailable=skip",
        "-W",
        "error:cgmem:pytest.PytestWarning",  # ours only: not an earlier test's unraisable
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["PytestWarning(*reserved budget 1.00 MiB not checked*"])


@pytest.mark.parametrize(
    "mark", ['xfail(reason="known")', 'xfail(reason="known", strict=True)'], ids=["xfail", "strict"]
)
def test_a_late_judging_error_in_an_xfail_test_is_what_the_xfail_expects(
    pytester: pytest.Pytester, mark: str, keeps: int
) -> None:
    """A judging error that is not a budget failure (a figure the budget could not check,
    its warning made an error) in an xfail test is xfailed whether the hooks came during
    the call or the quiet call wrapper judged it, as had it been raised in the call (before,
    the hooks coming during the call failed the test)."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        test_late_xfail=f"""
        import pytest
        from pytest_cgmem import DeviceFigures, RegionResult

        @pytest.mark.{mark}
        def test_late(later):
            unavailable = {{"unavailable": {{"reserved": "not given"}}}}
            region = RegionResult("load", (DeviceFigures(0, peak=10),), 0.0, None, unavailable)
            later("cgmem_record")(region)
        """
    )
    result = pytester.runpytest(
        "-p",
        "no:randomly",
        "--cgmem-budget=reserved=1MiB",
        "--cgmem-unavailable=skip",
        "-W",
        "error:cgmem:pytest.PytestWarning",
    )
    result.assert_outcomes(xfailed=1, passed=keeps)


@pytest.mark.parametrize(
    ("mark", "outcome"),
    [
        ('xfail(reason="known")', {"xfailed": 1}),
        ('xfail(reason="known", strict=True)', {"xfailed": 1}),
        ('xfail(reason="known", raises=ZeroDivisionError)', {"failed": 1}),
    ],
    ids=["xfail", "strict", "raises-other"],
)
def test_a_late_fixture_over_budget_in_an_xfail_test(
    pytester: pytest.Pytester, mark: str, outcome: dict[str, int], keeps: int
) -> None:
    """The budget failure is what the xfail expects, as had it been raised in the call."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{mark}
        def test_late(later):
            later("cgmem_record")("load", peak=2 * 2**20)
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=1MiB")
    result.assert_outcomes(**outcome, passed=keeps)


def test_a_late_budget_failure_the_xfail_does_not_expect_fails_the_run(
    pytester: pytest.Pytester, keeps: int
) -> None:
    """An xfail test whose ``raises`` names another exception breaks its budget: it fails,
    and the run's exit status and JUnit say so, as had the budget failure been raised in
    the call (before, where the hooks came during the call, its report kept pytest's mark
    of an xpass: the run exited 0 and JUnit called the test skipped)."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.xfail(reason="known", raises=ZeroDivisionError)
        def test_late(later):
            later("cgmem_record")("load", peak=2 * 2**20)
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=1MiB", "--junitxml=j.xml")
    result.assert_outcomes(failed=1, passed=keeps)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    junit = (pytester.path / "j.xml").read_text()
    assert "<failure" in junit and "<skipped" not in junit


@pytest.mark.parametrize(
    ("mark", "outcome"),
    [
        ('xfail(reason="known", raises=AssertionError)', "xfailed"),
        ('xfail(False, reason="not here")', "failed"),
    ],
    ids=["raises-its-class", "condition-false"],
)
def test_a_late_fixture_over_budget_is_xfailed_only_where_the_xfail_expects_it(
    pytester: pytest.Pytester, mark: str, outcome: str, keeps: int
) -> None:
    """``raises=AssertionError``, a base of the budget failure's class, expects it; an
    xfail whose condition is false expects nothing. The budget failure is what
    ``--xfail-tb`` (pytest 8.3 on) shows, or the failure's text."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{mark}
        def test_late(later):
            later("cgmem_record")("load", peak=2 * 2**20)
        """
    )
    shows_xfail_tb = pytest.version_tuple >= (8, 3)
    result = pytester.runpytest(
        "-p", "no:randomly", "--cgmem-budget=peak=1MiB", *(["--xfail-tb"] * shows_xfail_tb)
    )
    result.assert_outcomes(**{outcome: 1}, passed=keeps)
    if outcome == "failed" or shows_xfail_tb:
        result.stdout.fnmatch_lines(["*cgmem: peak 2.00 MiB exceeds budget 1.00 MiB*'load'*"])


LATE_SHUTDOWN = '''
import pytest


@pytest.fixture
def later_server(request):
    """Asks for ``cgmem_record`` when the test calls it; its teardown records the
    server's shutdown."""
    def start():
        record = request.getfixturevalue("cgmem_record")
        request.addfinalizer(lambda: record("shutdown", peak=2 * 2**20))
        return record
    return start


def test_shutdown_over(later_server):
    later_server()


def test_load_and_shutdown_over(later_server):
    later_server()("load", peak=2 * 2**20)
'''


def test_a_late_fixture_s_figures_recorded_in_teardown_are_judged(
    pytester: pytest.Pytester, keeps: int
) -> None:
    """Alone, the hooks come during the first test's call and stay for the second; beside
    a test that keeps them, both ask on the quiet path. Either way the shutdown's figures
    fail the teardown of the test whose call passed, and not that of the test whose call
    already failed on its budget."""
    pytester.makepyfile(test_late=LATE_SHUTDOWN)
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=1MiB")
    result.assert_outcomes(passed=1 + keeps, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_shutdown_over*",
            "E   pytest_cgmem.BudgetExceeded: cgmem: peak 2.00 MiB exceeds budget 1.00 MiB *"
            "'shutdown'",
            "*_ test_load_and_shutdown_over _*",
            "E   pytest_cgmem.BudgetExceeded: cgmem: peak 2.00 MiB exceeds budget 1.00 MiB *'load'",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_load_and_shutdown_over*")


def test_a_late_fixture_s_figures_in_a_failing_test_are_judged_for_its_report(
    pytester: pytest.Pytester,
) -> None:
    """The hooks come during the call of a test that then fails on its own: the failure
    stays its own, and the report's section holds the figures against their budget."""
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        """
        def test_late(later):
            later("cgmem_record")("load", peak=2 * 2**20)
            assert 1 + 1 == 3
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=1MiB")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["E       assert (1 + 1) == 3", "  peak * 2.00 MiB   budget * 1.00 MiB  OVER"]
    )


def test_a_run_started_after_the_plugin_was_imported_gives_no_rewrite_warning(
    pytester: pytest.Pytester,
) -> None:
    """The package imported before a pytest run begins (by a program, or by an outer run
    where pytest's rewriting hook did not load it: an editable install's finder) is not
    warned about as "already imported so cannot be rewritten" when the run marks it for
    rewriting. A checkout's editable install leaves ``pytest_cgmem.egg-info`` beside the
    package, which names the package's files to every run with the checkout on
    ``sys.path``: under ``-W error`` each pytester run of the project's suite started by
    ``.venv/bin/pytest`` was an internal error."""
    info = pytester.mkdir("pytest_cgmem.egg-info")
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: pytest-cgmem\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[pytest11]\ncgmem = pytest_cgmem.plugin\n")
    (info / "SOURCES.txt").write_text("pytest_cgmem/__init__.py\npytest_cgmem/plugin.py\n")
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    # loaded by its entry point, or by its module's name where plugins are not autoloaded
    # (pytest then marks that module, whose docstring it reads)
    for autoload, named in (("1", []), ("", ["-p", "pytest_cgmem.plugin"])):
        result = pytester.run(
            sys.executable,
            "-c",
            "import os, sys\n"
            "sys.path.insert(0, '.')\n"
            "import pytest, pytest_cgmem.plugin\n"
            f"os.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = {'' if autoload else '1'!r}\n"
            f"args = ['-W', 'error', '-p', 'no:cacheprovider', *{named!r}, 'test_a.py']\n"
            "sys.exit(pytest.main(args))",
        )
        assert result.ret == 0, result.stderr.str()
        result.stdout.fnmatch_lines(["*1 passed*"])
