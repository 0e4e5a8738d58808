"""The plugin beside pytest's other features and plugins: reruns, skip marks, marks added by
a conftest, forked tests, subtests, fixture teardown, no torch at all, pytest.exit, other
plugins' output files.

Figures come from ``cgmem_record`` (figures measured elsewhere), which needs no GPU.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch  # imported once here: pytester's inline runs would re-import it each time

from pytest_cgmem.results import runfile

# pytest-benchmark and pytest-rerunfailures are not what these tests check, but where a test
# keeps pytest-rerunfailures (KEEPS_RERUNS): their pytester runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

KEEPS_RERUNS = pytest.mark.lean_runs(keep=("rerunfailures",))

needs_subtests = pytest.mark.skipif(
    int(pytest.__version__.split(".")[0]) < 9,
    reason="pytest's own subtests fixture came with pytest 9",
)


def _run_file(pytester: pytest.Pytester, name: str = "run.json") -> dict[str, Any]:
    doc = json.loads((pytester.path / name).read_text())
    runfile.validate(doc)
    return doc


RECORDS = """
from pathlib import Path

def test_a(cgmem_record):
    Path("ran.txt").write_text("the test ran")
    cgmem_record("x", peak=1)
"""


def _junit_properties(pytester: pytest.Pytester, name: str = "j.xml") -> list[tuple[str, str]]:
    root = ET.parse(pytester.path / name).getroot()
    return [(p.get("name") or "", p.get("value") or "") for p in root.iter("property")]


@KEEPS_RERUNS
def test_a_rerun_is_judged_and_recorded_on_its_own_figures(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_flaky="""
        attempts = []

        def test_flaky(cgmem_record):
            attempts.append(1)
            cgmem_record("server", peak=300 if len(attempts) == 1 else 100)
        """
    )
    result = pytester.runpytest(
        "--reruns=2", "--cgmem-budget=peak=200", "--cgmem-json=run.json", "--junitxml=j.xml"
    )
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    (test,) = _run_file(pytester)["tests"]
    assert test["outcome"] == "passed"
    assert [r["label"] for r in test["regions"]] == ["server"]
    assert test["regions"][0]["devices"][0]["peak"] == 100
    assert test["checked"] == ["server"] and test["violations"] == []
    # JUnit shows the last attempt's properties, and before it at most each earlier
    # attempt's own, once (how rerunfailures reports attempts to junitxml varies by
    # version): no attempt carries an earlier one's
    properties = _junit_properties(pytester)
    assert properties[-1] == ("cgmem.server.peak", "100")
    assert properties.count(("cgmem.server.peak", "100")) == 1
    assert properties.count(("cgmem.server.peak", "300")) <= 1


@KEEPS_RERUNS
def test_a_rerun_after_a_setup_error_records_with_its_new_recorder(
    pytester: pytest.Pytester,
) -> None:
    """The first attempt ended in its setup, the rerun records: its recorder is its own
    attempt's, not one of a test that ended (a recorder used after its test ended is
    refused)."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_flaky_setup="""
        import pytest

        attempts = []

        @pytest.fixture
        def flaky():
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("the first setup fails")

        def test_recorded(cgmem_record, flaky):
            cgmem_record("server", peak=100)
        """
    )
    result = pytester.runpytest("--reruns=1", "--cgmem-json=run.json")
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    (test,) = _run_file(pytester)["tests"]
    assert (test["outcome"], [r["label"] for r in test["regions"]]) == ("passed", ["server"])


@KEEPS_RERUNS
def test_a_rerun_under_xdist_keeps_only_the_last_attempt(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_flaky="""
        import os
        def test_flaky(cgmem_record, tmp_path_factory):
            marker = tmp_path_factory.getbasetemp().parent / "attempted"
            first = not marker.exists()
            marker.touch()
            cgmem_record("server", peak=300 if first else 100)
        """
    )
    result = pytester.runpytest(
        "-n", "1", "--reruns=2", "--cgmem-budget=peak=200", "--cgmem-json=run.json"
    )
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    (test,) = _run_file(pytester)["tests"]
    assert test["outcome"] == "passed"
    assert [r["devices"][0]["peak"] for r in test["regions"]] == [100]


ATTEMPTS = """
import os
import pathlib

import pytest

ATTEMPT = pathlib.Path(__file__).with_name("attempt")


def attempt():
    n = int(ATTEMPT.read_text()) if ATTEMPT.exists() else 0
    ATTEMPT.write_text(str(n + 1))
    return n


@pytest.fixture
def server(cgmem_record):
    n = attempt()
    yield n
    if n == 0:
        cgmem_record("shutdown", peak="900 MiB")


def test_flaky_in_teardown(server):
    assert server > 0


def test_flaky_never_records(cgmem_record):
    if attempt() == 0:
        cgmem_record("load", peak="900 MiB")
        assert False
    if os.environ.get("KILL_AFTER_RERUN"):
        os._exit(1)


def test_flaky_records_last(cgmem_record):
    assert attempt() > 0
    cgmem_record("load", peak="10 MiB")
"""


@KEEPS_RERUNS
@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["serial", "xdist1"])
def test_a_discarded_attempt_s_teardown_figures_stay_out(
    pytester: pytest.Pytester,
    run_without_a_cuda_context: Callable[..., pytest.RunResult],
    workers: list[str],
) -> None:
    """pytest-rerunfailures logs an attempt's teardown after its rerun report: figures
    recorded there belong to the discarded attempt (before, under xdist, the run file
    showed the test failed with them while pytest showed it passed). The inner test never
    uses CUDA only in a process where no earlier test started it: --cgmem-all measures a
    call that begins with a CUDA context."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_attempts=ATTEMPTS)
    run = pytester.runpytest if workers else run_without_a_cuda_context
    result = run(*workers, "--reruns=1", "--cgmem-json=run.json", "--cgmem-all", "-k", "teardown")
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["rerun"], outcomes.get("failed")) == (1, 1, None)
    assert _run_file(pytester)["tests"] == []
    result.stdout.fnmatch_lines(["*--cgmem-all: 0 test(s) measured*1 never used CUDA*"])


TEARDOWN_BREACH = """
import pytest


@pytest.fixture
def server(cgmem_record):
    yield
    cgmem_record("server", peak=1000)  # read at shutdown, over budget


@pytest.mark.flaky(reruns=2)
def test_teardown_over(server):
    pass


@pytest.mark.flaky(reruns=2)
def test_call_over(cgmem_record):
    cgmem_record("x", peak=1000)
"""


@KEEPS_RERUNS
@pytest.mark.parametrize(
    "rerun_filter",
    [
        ["--rerun-except", "BudgetExceeded"],
        ["--only-rerun", "ConnectionError"],
        ["--rerun-except", "BudgetExceeded", "-n", "1"],
    ],
    ids=["rerun-except", "only-rerun", "xdist1"],
)
def test_a_budget_broken_in_teardown_is_filtered_as_one_broken_in_the_call(
    pytester: pytest.Pytester, rerun_filter: list[str]
) -> None:
    """pytest-rerunfailures' filters see the teardown's budget error by its type, as the
    call's (before, the teardown's report was failed after the fact, so it ran again)."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_rr=TEARDOWN_BREACH)
    result = pytester.runpytest("--cgmem-budget=peak=100", "--cgmem-json=run.json", *rerun_filter)
    outcomes = result.parseoutcomes()
    assert (outcomes.get("rerun"), outcomes["failed"], outcomes["errors"]) == (None, 1, 1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_teardown_over*",
            "E   pytest_cgmem.BudgetExceeded: cgmem: peak 1000 B exceeds budget 100 B*",
        ]
    )
    tests = {t["nodeid"]: t["outcome"] for t in _run_file(pytester)["tests"]}
    assert tests == {
        "test_rr.py::test_call_over": "failed",
        "test_rr.py::test_teardown_over": "failed",
    }


@KEEPS_RERUNS
def test_ctrl_c_in_the_last_test_s_rerun_leaves_an_incomplete_run_file(
    pytester: pytest.Pytester,
) -> None:
    """pytest-rerunfailures ends each attempt's protocol: the discarded one does not count
    as the test having run, so Ctrl-C in its rerun is an interrupted run."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_a="""
        import os, pathlib, signal

        def test_first(cgmem_record):
            cgmem_record("r", peak=1)

        def test_last(cgmem_record):
            attempt = pathlib.Path("attempts")
            n = len(attempt.read_text()) if attempt.exists() else 0
            attempt.write_text("x" * (n + 1))
            cgmem_record("r", peak=2)
            assert n > 0, "fails once, run again"
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
            os.kill(os.getpid(), signal.SIGINT)
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reruns=1", "--cgmem-json=run.json")
    document = runfile.load_run(pytester.path / "run.json")
    assert (document["complete"], document["incomplete_reason"]) == (
        False,
        "interrupted (KeyboardInterrupt)",
    )


@KEEPS_RERUNS
@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["serial", "xdist1"])
def test_a_discarded_attempt_is_not_counted_as_never_using_cuda(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Under --cgmem-all the summary counts the last attempt only (before, a serial run
    counted a test both measured and never using CUDA)."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_attempts=ATTEMPTS)
    result = pytester.runpytest(*workers, "--reruns=1", "--cgmem-all", "-k", "records_last")
    result.stdout.fnmatch_lines(["*--cgmem-all: 1 test(s) measured*, 0 never used CUDA*"])


@KEEPS_RERUNS
def test_a_killed_run_does_not_bring_back_a_discarded_attempt(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal withdraws an attempt that is run again: a run killed later reads back
    as the finished one would (before, the discarded attempt's 900 MiB came back)."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_attempts=ATTEMPTS)
    # in process: only the second run is killed
    result = pytester.runpytest(
        "--reruns=1", "--cgmem-json=run.json", "-k", "never_records", "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["rerun"], outcomes.get("failed")) == (1, 1, None)
    (pytester.path / "attempt").unlink()
    monkeypatch.setenv("KILL_AFTER_RERUN", "1")
    killed = pytester.runpytest_subprocess(
        "--reruns=1", "--cgmem-json=run.json", "-k", "never_records", "-p", "no:cacheprovider"
    )
    assert killed.ret == 1
    document = runfile.load_run(pytester.path / "run.json")
    assert document["complete"] is False
    assert document["tests"] == []


@pytest.mark.parametrize("require_gpu", [False, True])
def test_skip_and_xfail_marks_win_over_no_cuda(
    pytester: pytest.Pytester, require_gpu: bool
) -> None:
    pytester.makepyfile(
        test_marks="""
        import sys
        import unittest

        import pytest

        @pytest.mark.skip(reason="known broken")
        @pytest.mark.cgmem(peak="1 GiB")
        def test_skipped(): pass

        @pytest.mark.skipif(True, reason="not here")
        @pytest.mark.cgmem(peak="1 GiB")
        def test_skipped_if(): pass

        @pytest.mark.xfail(run=False, reason="never run")
        @pytest.mark.cgmem(peak="1 GiB")
        def test_not_run(): pass

        @pytest.mark.cgmem(peak="1 GiB")
        class TestMarked(unittest.TestCase):
            @unittest.skip("needs 8 GPUs")
            def test_big(self): pass

            @unittest.skipIf(True, "cpu only box")
            def test_cond(self): pass

        @unittest.skip("whole class off")
        @pytest.mark.cgmem(peak="1 GiB")
        class TestOff(unittest.TestCase):
            def test_c(self): pass
        """
    )
    args = ["-rsx", *(["--cgmem-require-gpu"] if require_gpu else [])]
    result = pytester.runpytest(*args)
    result.assert_outcomes(skipped=5, xfailed=1)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED [[]1[]] test_marks.py:*: known broken",
            "SKIPPED [[]1[]] test_marks.py:*: not here",
            "XFAIL*test_marks.py::test_not_run*NOTRUN*never run",
            "SKIPPED [[]1[]] test_marks.py:*: needs 8 GPUs",
            "SKIPPED [[]1[]] test_marks.py:*: cpu only box",
            "SKIPPED [[]1[]] test_marks.py:*: whole class off",
        ]
    )


def test_unittest_s_skip_on_a_plain_class_is_not_taken_for_a_skip(
    pytester: pytest.Pytester,
) -> None:
    """pytest honours ``__unittest_skip__`` only on a TestCase: on a plain class the test
    runs, so it is still held to the mark (here: no CUDA device)."""
    pytester.makepyfile(
        test_plain="""
        import unittest

        import pytest

        @unittest.skip("ignored by pytest on a plain class")
        class TestPlain:
            @pytest.mark.cgmem(peak="1 KiB")
            def test_marked(self):
                pass
        """
    )
    result = pytester.runpytest("-rs")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["SKIPPED*cgmem: no CUDA device"])


def test_a_marked_testcase_s_tests_unittest_does_not_skip_are_held_to_the_mark(
    pytester: pytest.Pytester,
) -> None:
    """Only the test unittest's own decorator skips is left to it: the class's others
    are measured (here: no CUDA device)."""
    pytester.makepyfile(
        test_case="""
        import unittest

        import pytest

        @pytest.mark.cgmem(peak="1 KiB")
        class TestMarked(unittest.TestCase):
            @unittest.skip("needs 8 GPUs")
            def test_big(self):
                pass

            def test_small(self):
                pass
        """
    )
    result = pytester.runpytest("-rs")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=1, skipped=1)
    else:
        result.assert_outcomes(skipped=2)
        result.stdout.fnmatch_lines_random(
            ["SKIPPED*: needs 8 GPUs", "SKIPPED*: cgmem: no CUDA device"]
        )


def test_marks_a_conftest_adds_at_collection_count(pytester: pytest.Pytester) -> None:
    from pytest_cgmem.session import budget_key, opted_out_key

    pytester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(config, items):
            for item in items:
                if "gpu" in item.name:
                    item.add_marker(pytest.mark.cgmem(peak="1 GiB"))
                if "off" in item.name:
                    item.add_marker(pytest.mark.cgmem_off("added by the conftest"))
        """
    )
    pytester.makepyfile("def test_gpu_thing(): pass\ndef test_off_thing(): pass\n")
    gpu, off = pytester.inline_genitems("--cgmem-all")[0]
    assert gpu.stash[budget_key].limits == {"peak": 2**30}
    assert off.stash[opted_out_key] == "added by the conftest"


@pytest.mark.parametrize("wrapper", ["wrapper=True", "hookwrapper=True"])
def test_marks_a_conftest_wrapper_adds_after_the_others_count(
    pytester: pytest.Pytester, wrapper: str
) -> None:
    """A conftest's wrapper that adds marks after its ``yield`` runs after every plain
    implementation of the hook, ours too: its marks count all the same."""
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.hookimpl({wrapper})
        def pytest_collection_modifyitems(config, items):
            yield
            for item in items:
                if "gpu" in item.name:
                    item.add_marker(pytest.mark.cgmem(peak=5))
                if "off" in item.name:
                    item.add_marker(pytest.mark.cgmem_off("added by the conftest"))
        """
    )
    pytester.makepyfile(
        """
        def test_gpu_thing(cgmem_record):
            cgmem_record("server", peak=1000)

        def test_off_thing(cgmem_record):
            cgmem_record("server", peak=1000)
        """
    )
    result = pytester.runpytest("--cgmem-all", "--cgmem-budget=peak=10", "--cgmem-json=run.json")
    module = "test_marks_a_conftest_wrapper_adds_after_the_others_count.py"
    judged = [(f"{module}::test_off_thing", False)]
    if torch.cuda.is_available():  # the mark's 5 B, not the default 10 B, held against 1000 B
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*peak 1000 B exceeds budget 5 B*"])
        judged.insert(0, (f"{module}::test_gpu_thing", True))
    else:
        result.assert_outcomes(passed=1, skipped=1)  # a marked test needs CUDA
    result.stdout.fnmatch_lines(["*1 opted out*", "*test_off_thing: added by the conftest*"])
    doc = _run_file(pytester)
    assert [(t["nodeid"], t.get("judged", True)) for t in doc["tests"]] == judged


@pytest.mark.parametrize(("folder", "read"), [("tests", True), ("tests/deep", False)])
def test_a_tryfirst_wrapper_of_a_conftest_loaded_while_collecting_is_outside_ours(
    pytester: pytest.Pytester, folder: str, read: bool
) -> None:
    """As docs/usage.md says: pytest loads ``tests/conftest.py`` before the plugin
    configures, so our wrapper is outside its ``tryfirst`` one; ``tests/deep/conftest.py``
    only while collecting, after ours, so its marks after ``yield`` come too late."""
    conftest = pytester.path / folder / "conftest.py"
    conftest.parent.mkdir(parents=True)
    conftest.write_text(
        "import pytest\n\n"
        "@pytest.hookimpl(wrapper=True, tryfirst=True)\n"
        "def pytest_collection_modifyitems(items):\n"
        "    yield\n"
        "    for item in items:\n"
        "        item.add_marker(pytest.mark.cgmem_off('added late'))\n"
    )
    (pytester.path / "tests" / "deep" / "test_d.py").parent.mkdir(parents=True, exist_ok=True)
    (pytester.path / "tests" / "deep" / "test_d.py").write_text(
        "def test_d(cgmem_record):\n    cgmem_record('x', peak=1000)\n"
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-all", "--cgmem-budget=peak=10")
    if read:
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*opted out tests/deep/test_d.py::test_d: added late*"])
    else:
        result.assert_outcomes(failed=1)
    usage = " ".join((Path(runfile.__file__).parents[2] / "docs" / "usage.md").read_text().split())
    assert "save a `tryfirst` wrapper in a conftest pytest loads only while collecting" in usage


FORKING_CONFTEST = """
import os
import pickle

import pytest
from _pytest.runner import runtestprotocol


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    '''Each test in a child process, its reports sent back, as pytest-forked does.'''
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        data = [item.config.hook.pytest_report_to_serializable(config=item.config, report=r)
                for r in reports]
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(data, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pickle.load(pipe)
    os.waitpid(pid, 0)
    for entry in data:
        report = item.config.hook.pytest_report_from_serializable(config=item.config, data=entry)
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_tests_forked_into_a_child_keep_their_records(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FORKING_CONFTEST)
    pytester.makepyfile(
        test_forked="""
        import pytest

        def test_recorded(cgmem_record):
            cgmem_record("server", peak=100)

        def test_over(cgmem_record):
            cgmem_record("server", peak=999)

        def test_cpu():
            pass

        @pytest.mark.cgmem_off("its own allocator")
        def test_off():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--cgmem-all", "--cgmem-json=run.json", "--cgmem-budget=peak=500"
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "--cgmem-all: 2 test(s) measured, 1 over budget, 1 opted out, 1 never used CUDA*",
            "cgmem: wrote run file run.json (2 test(s))",
        ]
    )
    doc = _run_file(pytester)
    assert doc["complete"] is True
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in doc["tests"]}
    assert outcomes == {"test_recorded": "passed", "test_over": "failed"}


@needs_subtests
def test_subtests_make_one_record_with_the_outcome_pytest_shows(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_sub="""
        import unittest

        def test_sub(subtests, cgmem_record):
            for i in range(3):
                with subtests.test(i=i):
                    cgmem_record(f"r{i}", peak=100 * (i + 1))
                    assert i != 1

        class TestCase(unittest.TestCase):
            def test_sub(self):
                for i in range(2):
                    with self.subTest(i=i):
                        self.assertNotEqual(i, 1)
        """
    )
    result = pytester.runpytest("--cgmem-json=run.json", "--junitxml=j.xml")
    result.stdout.fnmatch_lines(["*FAILED test_sub.py::test_sub - contains 1 failed subtest*"])
    (test,) = _run_file(pytester)["tests"]
    assert test["outcome"] == "failed"
    assert [r["label"] for r in test["regions"]] == ["r0", "r1", "r2"]
    names = [name for name, _ in _junit_properties(pytester)]
    assert sorted(names) == ["cgmem.r0.peak", "cgmem.r1.peak", "cgmem.r2.peak"]


@needs_subtests
def test_a_failed_subtest_s_outcome_stays_when_teardown_records_more(
    pytester: pytest.Pytester,
) -> None:
    """The test's record took the failed subtest's outcome when its call was logged;
    figures its fixture records in teardown make the record again, still failed."""
    pytester.makepyfile(
        test_sub="""
        import pytest

        @pytest.fixture
        def server(cgmem_record):
            cgmem_record("startup", peak=100)
            yield
            cgmem_record("shutdown", peak=100)

        def test_sub(subtests, server):
            with subtests.test("a"):
                assert False
        """
    )
    result = pytester.runpytest("--cgmem-json=run.json")
    result.stdout.fnmatch_lines(["*FAILED test_sub.py::test_sub - contains 1 failed subtest*"])
    (test,) = _run_file(pytester)["tests"]
    assert test["outcome"] == "failed"
    assert [r["label"] for r in test["regions"]] == ["startup", "shutdown"]


@needs_subtests
def test_subtests_under_xdist_keep_the_outcome_pytest_shows(pytester: pytest.Pytester) -> None:
    """Figures a fixture records in its teardown reach the controller after the call's
    outcome has: the record they come with keeps it."""
    pytester.makepyfile(
        test_sub="""
        import pytest

        @pytest.fixture
        def server(cgmem_record):
            yield
            cgmem_record("shutdown", peak=1)

        def test_sub(subtests, cgmem_record, server):
            for i in range(2):
                with subtests.test(i=i):
                    cgmem_record(f"r{i}", peak=1)
                    assert i != 1
        """
    )
    pytester.runpytest("-n", "1", "--cgmem-json=run.json")
    (test,) = _run_file(pytester)["tests"]
    assert test["outcome"] == "failed"
    assert [r["label"] for r in test["regions"]] == ["r0", "r1", "shutdown"]


FIXTURES = """
import pytest

@pytest.fixture
def server(cgmem_record):
    cgmem_record("startup", peak=5)
    yield
    cgmem_record("shutdown", peak={shutdown})

@pytest.fixture
def broken(cgmem_record):
    cgmem_record("startup", peak=5)
    raise RuntimeError("the server did not start")

def test_server(server):
    pass

def test_broken(broken):
    pass
"""


def test_figures_recorded_in_fixture_teardown_are_judged_and_kept(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_srv=FIXTURES.format(shutdown=999))
    result = pytester.runpytest(
        "--cgmem-json=run.json", "--cgmem-budget=peak=100", "--junitxml=j.xml"
    )
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_server*",
            "E   pytest_cgmem.BudgetExceeded: cgmem: peak 999 B exceeds budget 100 B (+899.0%) "
            "on cuda:0 in 'shutdown'",
        ]
    )
    tests = {t["nodeid"].split("::")[1]: t for t in _run_file(pytester)["tests"]}
    server = tests["test_server"]
    assert [r["label"] for r in server["regions"]] == ["startup", "shutdown"]
    assert server["outcome"] == "failed"
    assert [v["label"] for v in server["violations"]] == ["shutdown"]
    broken = tests["test_broken"]  # its setup failed: its figures are kept, not judged
    assert [r["label"] for r in broken["regions"]] == ["startup"]
    assert broken["outcome"] == "failed" and broken["checked"] == []
    names = [name for name, _ in _junit_properties(pytester)]
    assert names.count("cgmem.shutdown.peak") == 1
    assert names.count("cgmem.startup.peak") == 2


def test_figures_recorded_in_fixture_teardown_within_budget_pass(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_srv=FIXTURES.format(shutdown=50))
    result = pytester.runpytest(
        "-n", "1", "--cgmem-json=run.json", "--cgmem-budget=peak=100", "-k", "server"
    )
    result.assert_outcomes(passed=1)
    (test,) = _run_file(pytester)["tests"]
    assert [r["label"] for r in test["regions"]] == ["startup", "shutdown"]
    assert test["outcome"] == "passed" and test["checked"] == ["startup", "shutdown"]


def test_a_failing_test_that_never_used_cuda_counts_as_never_used(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_cpu="""
        import unittest

        def test_fails():
            assert False

        class TestCase(unittest.TestCase):
            def test_fails(self):
                self.fail("no")
        """
    )
    result = pytester.runpytest_subprocess("--cgmem-all")  # a process with no CUDA context
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["--cgmem-all: 0 test(s) measured, 0 over budget, 0 opted out, 2 never used CUDA*"]
    )


def test_pytest_exit_with_status_3_is_no_internal_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_exit="""
        import pytest

        def test_first(cgmem_record):
            cgmem_record("x", peak=1)

        def test_exits():
            pytest.exit("bye", returncode=3)
        """
    )
    result = pytester.runpytest("--cgmem-json=run.json")
    assert result.ret == 3
    doc = _run_file(pytester)
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == "interrupted: bye"
    assert len(doc["tests"]) == 1


NO_TORCH_CONFTEST = """
import sys

sys.modules["torch"] = None  # as if torch were not installed: importing it fails
"""


def test_without_torch_marked_tests_skip_and_recorded_figures_are_written(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(NO_TORCH_CONFTEST)
    pytester.makepyfile(
        test_no_torch="""
        import pytest

        @pytest.mark.cgmem(peak="1 GiB")
        def test_marked():
            pass

        def test_recorded(cgmem_record):
            cgmem_record("server", peak=100)
        """
    )
    result = pytester.runpytest_subprocess("--cgmem-json=run.json", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_no_torch.py:*: cgmem: no CUDA device"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    doc = _run_file(pytester)
    assert doc["machine"]["torch"] is None and doc["machine"]["cuda"] is None
    assert [t["nodeid"].split("::")[1] for t in doc["tests"]] == ["test_recorded"]


def test_a_test_that_now_passes_leaves_no_earlier_failure_s_artifacts(
    pytester: pytest.Pytester,
) -> None:
    from pytest_cgmem.reports.artifacts import artifact_paths

    pytester.makepyfile("def test_rec(cgmem_record):\n    cgmem_record('r', peak=1)\n")
    stale = artifact_paths(
        pytester.path / "out",
        "test_a_test_that_now_passes_leaves_no_earlier_failure_s_artifacts.py::test_rec",
    )
    stale.pickle.parent.mkdir()
    for path in (stale.pickle, stale.html, stale.text, pytester.path / "out" / "theirs.txt"):
        path.write_text("from an earlier run")
    pytester.runpytest("--cgmem-artifacts=out").assert_outcomes(passed=1)
    assert [p.name for p in (pytester.path / "out").iterdir()] == ["theirs.txt"]


@KEEPS_RERUNS
@pytest.mark.parametrize("xdist", [[], ["-n", "1"]])
def test_an_attempt_run_again_leaves_no_record(pytester: pytest.Pytester, xdist: list[str]) -> None:
    """The last attempt is the test's: one that records nothing leaves no record, and no
    attempt's outcome is rerunfailures' own 'rerun' (which no run file may hold)."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_flaky="""
        def test_flaky(cgmem_record, tmp_path_factory):
            marker = tmp_path_factory.getbasetemp().parent / "attempted"
            if not marker.exists():
                marker.touch()
                cgmem_record("server", peak=300)
                assert False, "the first attempt fails"

        def test_steady(cgmem_record):
            cgmem_record("server", peak=1)
        """
    )
    result = pytester.runpytest(*xdist, "--reruns=1", "--cgmem-json=run.json")
    assert result.parseoutcomes() == {"passed": 2, "rerun": 1}
    doc = _run_file(pytester)
    assert [(t["nodeid"].split("::")[1], t["outcome"]) for t in doc["tests"]] == [
        ("test_steady", "passed")
    ]


@KEEPS_RERUNS
@pytest.mark.parametrize("xdist", [[], ["-n", "1"]])
def test_a_teardown_budget_failure_stays_failed_under_reruns(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    """pytest-rerunfailures makes all of an attempt's reports before it logs them: the
    call report's 'passed' must not overwrite the teardown's verdict."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_srv=FIXTURES.format(shutdown=999))
    pytester.runpytest(
        *xdist, "--reruns=1", "--cgmem-json=run.json", "--cgmem-budget=peak=100", "-k", "server"
    )
    (test,) = _run_file(pytester)["tests"]
    assert test["outcome"] == "failed"
    assert [v["label"] for v in test["violations"]] == ["shutdown"]


BROKEN_TEARDOWN = """
import os

import pytest


@pytest.fixture
def server(cgmem_record):
    yield
    if os.environ.get("SHUTDOWN_PEAK"):
        cgmem_record("shutdown", peak=os.environ["SHUTDOWN_PEAK"])
    if os.environ.get("BREAK"):
        raise RuntimeError("server did not shut down cleanly")


def test_load(cgmem_record, server):
    cgmem_record("load", peak=os.environ.get("PEAK", "100 MiB"))
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["serial", "xdist1"])
def test_a_test_whose_teardown_fails_is_recorded_failed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    """pytest shows it red ('1 passed, 1 error'): the record says failed, and a baseline
    refresh keeps the earlier entry (before, the record said passed and the refresh took
    the broken run's figures)."""
    pytester.makepyfile(test_srv=BROKEN_TEARDOWN)
    args = (*xdist, "--cgmem-save-baseline=base.json", "--cgmem-json=run.json")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    monkeypatch.setenv("PEAK", "900 MiB")
    monkeypatch.setenv("BREAK", "1")
    pytester.runpytest(*args).assert_outcomes(passed=1, errors=1)
    run = _run_file(pytester)
    assert [t["outcome"] for t in run["tests"]] == ["failed"]
    assert run["summary"]["failed"] == 1
    (kept,) = _run_file(pytester, "base.json")["tests"]
    assert kept["regions"][0]["devices"][0]["peak"] == 100 * 2**20


def test_a_teardown_budget_failure_keeps_the_teardown_s_own_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_srv=BROKEN_TEARDOWN)
    monkeypatch.setenv("SHUTDOWN_PEAK", "900 MiB")
    monkeypatch.setenv("BREAK", "1")
    result = pytester.runpytest("--cgmem-budget=peak=200MiB", "--junitxml=j.xml")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*RuntimeError: server did not shut down cleanly",
            "*cgmem: peak 900.00 MiB exceeds budget 200.00 MiB*'shutdown'*",
        ]
    )
    assert "server did not shut down cleanly" in (pytester.path / "j.xml").read_text()


@pytest.mark.parametrize(
    "show",
    [
        "--collect-only",
        "--fixtures",
        "--fixtures-per-test",
        "--cache-show",
        "--setup-plan",
        "--setup-only",
    ],
)
def test_runs_that_run_no_test_leave_the_files_alone(pytester: pytest.Pytester, show: str) -> None:
    pytester.makepyfile("def test_rec(cgmem_record):\n    cgmem_record('r', peak=1)\n")
    args = ("--cgmem-json=run.json", "--cgmem-save-baseline=base.json", "--cgmem-gab-json=g.json")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    names = ("run.json", "base.json", "g.json")
    before = {name: (pytester.path / name).read_text() for name in names}
    pytester.runpytest(show, *args)
    assert {name: (pytester.path / name).read_text() for name in before} == before
    shown = pytester.runpytest(show, "--cgmem-all", "--cgmem-baseline=base.json")
    shown.stdout.no_fnmatch_line("*- cgmem*")  # no summary of tests that did not run
    shown.stdout.no_fnmatch_line("*test(s) measured*")


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["serial", "xdist1"])
def test_a_doctest_s_budget_failure_is_its_message(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    """A doctest is not a test function, whose traceback pytest prunes: the failure still
    reads as one line, with none of pytest's or pluggy's frames, and is recorded failed."""
    pytester.makepyfile(
        server='''
        def load():
            """
            >>> record = getfixture("cgmem_record")
            >>> _ = record("load", peak=300)
            """
        '''
    )
    result = pytester.runpytest(
        "--doctest-modules", "--cgmem-budget=peak=200", "--cgmem-json=run.json", *xdist
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*[[]doctest[]] server.load*",
            "pytest_cgmem.BudgetExceeded: cgmem: peak 300 B exceeds budget 200 B * in 'load'",
        ]
    )
    failures = result.stdout.str().split("FAILURES", 1)[1]
    for internal in ("runner.py", "pluggy", "from_call", "def __call__"):
        assert internal not in failures
    (test,) = _run_file(pytester)["tests"]
    assert test["outcome"] == "failed"


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("pytest_reportlog", ["--report-log=out.json"]),
        ("pytest_jsonreport", ["--json-report", "--json-report-file=out.json"]),
        ("pytest_html", ["--html=out.json"]),
    ],
    ids=["reportlog", "json-report", "html"],
)
def test_another_plugin_s_file_on_the_run_file_is_a_usage_error(
    pytester: pytest.Pytester, module: str, args: list[str]
) -> None:
    """pytest-reportlog, pytest-json-report and pytest-html write their files whatever
    ours: on one path, the last to write would replace the other's file, with no word
    said (and ours would still say it wrote the run file). Refused before the first test,
    as ``--junitxml`` is."""
    pytest.importorskip(module)
    pytester.makepyfile(RECORDS)
    result = pytester.runpytest("--cgmem-json=out.json", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    flag = args[-1].split("=")[0]
    result.stderr.fnmatch_lines(
        [f"ERROR: {flag}='out.json': the same file as --cgmem-json='out.json'; give each *"]
    )
    assert not (pytester.path / "ran.txt").exists()


def test_a_json_report_file_without_json_report_is_no_output(pytester: pytest.Pytester) -> None:
    """pytest-json-report writes nothing without ``--json-report``: its file option alone
    (or its default, ``.report.json``) names no output of the run."""
    pytest.importorskip("pytest_jsonreport")
    pytester.makepyfile(RECORDS)
    result = pytester.runpytest("--cgmem-json=out.json", "--json-report-file=out.json")
    result.assert_outcomes(passed=1)
    assert _run_file(pytester, "out.json")["complete"] is True


def test_hypothesis_examples_each_record_a_region_of_the_one_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``@given`` test asking for ``cgmem_record`` fails Hypothesis's health check for
    function-scoped fixtures (docs/usage.md says so); with it suppressed, each example's
    figures are a region of the test's one record, judged against the budget."""
    pytest.importorskip("hypothesis")
    monkeypatch.setenv("PYTEST_ADDOPTS", "")  # Hypothesis's plugin runs the health check
    pytester.makepyfile(
        """
        from hypothesis import HealthCheck, given, settings, strategies as st

        @given(st.integers(0, 100))
        @settings(max_examples=5, database=None)
        def test_checked(cgmem_record, x):
            cgmem_record("load", peak=x)

        @given(st.integers(0, 100))
        @settings(
            max_examples=5, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        def test_suppressed(cgmem_record, x):
            cgmem_record("load", peak=100 + x)
        """
    )
    result = pytester.runpytest("--cgmem-json=run.json", "--cgmem-budget=peak=99")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*FailedHealthCheck*function-scoped fixture 'cgmem_record'*"])
    (test,) = _run_file(pytester)["tests"]
    assert test["nodeid"].endswith("::test_suppressed") and test["outcome"] == "failed"
    regions = test["regions"]
    assert len(regions) >= 2 and test["checked"] == ["load"] * len(regions)
    assert len(test["violations"]) == len(regions)  # each example's peak over the budget


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_a_test_pytest_timeout_stops_keeps_what_finished_before_it(
    pytester: pytest.Pytester, method: str
) -> None:
    """pytest-timeout's ``signal`` method fails the test, which keeps its record (failed);
    its ``thread`` method ends the process with ``os._exit``: the run file reads back as
    a killed run's, with every test that finished before."""
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile(
        """
        import time

        def test_first(cgmem_record):
            cgmem_record("load", peak=1)

        def test_stuck(cgmem_record):
            cgmem_record("load", peak=2)
            time.sleep(30)
        """
    )
    pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",  # test_first must finish before test_stuck ends the process
        "--timeout=1",
        f"--timeout-method={method}",
        "--cgmem-json=run.json",
    )
    document = runfile.load_run(pytester.path / "run.json")
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in document["tests"]}
    if method == "signal":
        assert document["complete"] is True
        assert outcomes == {"test_first": "passed", "test_stuck": "failed"}
    else:
        assert document["complete"] is False
        assert "killed" in document["incomplete_reason"]
        assert outcomes == {"test_first": "passed"}


OURS_AT_THE_TEST = """
import pytest


@pytest.fixture
def server(cgmem_record):
    yield
    cgmem_record("shutdown", peak=999)


@pytest.mark.parametrize("n", [1])
def test_call(cgmem_record, n):
    cgmem_record("load", peak=999)


def test_teardown(server):
    pass
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["serial", "xdist"])
def test_a_verdict_of_ours_reads_as_the_test_s_own_failure(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    """Its one frame is the test's ``def`` line: pytest's short summary and JUnit give the
    message (a teardown's gave none), ``--tb=line`` the test's file and line (it gave a
    frame of pytest's logging plugin), and no "All traceback entries are hidden" line."""
    path = pytester.makepyfile(test_f=OURS_AT_THE_TEST)
    budget = "--cgmem-budget=peak=100"
    result = pytester.runpytest("-p", "no:randomly", budget, "--junitxml=j.xml", *xdist)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    over = "pytest_cgmem.BudgetExceeded: cgmem: peak 999 B exceeds budget 100 B (+899.0%)"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_teardown*",
            ">   def test_teardown(server):",
            f"E   {over} on cuda:0 in 'shutdown'",
            "",
            "test_f.py:15: BudgetExceeded",
            "*test_call?1?*",
            ">   def test_call(cgmem_record, n):",
            f"E   {over} on cuda:0 in 'load'",
            "",
            "test_f.py:11: BudgetExceeded",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"FAILED test_f.py::test_call?1? - {over[:30]}*",
            f"ERROR test_f.py::test_teardown - {over[:30]}*",
        ]
    )
    result.stdout.no_fnmatch_line("*traceback entries are hidden*")
    messages = [
        e.get("message") for e in ET.parse(pytester.path / "j.xml").iter() if e.get("message")
    ]
    assert sorted(messages) == [
        f"failed on teardown with \"{over} on cuda:0 in 'shutdown'\"",
        f"{over} on cuda:0 in 'load'",
    ]
    line = pytester.runpytest("-p", "no:randomly", budget, "--tb=line", *xdist)
    line.stdout.fnmatch_lines([f"{path}:11: {over} on cuda:0 in 'load'"])


DECORATED = (
    '''
import pytest


@pytest.mark.parametrize("src", ["""
def foo():
    pass
"""])
def test_def_in_a_string(src, cgmem_record):
    cgmem_record("load", peak=999)


@pytest.mark.parametrize("n", [
'''
    + "".join(f"    {n},\n" for n in range(105))
    + """])
def test_a_long_decorator(n, cgmem_record):
    if n == 104:
        cgmem_record("load", peak=999)


class TestMethods:
    @pytest.mark.parametrize("n", [1])
    def test_method(self, n, cgmem_record):
        cgmem_record("load", peak=999)


test_lambda = lambda cgmem_record: cgmem_record("load", peak=999)  # noqa: E731


def not_a_test():
    pass


def test_naïve_ü(cgmem_record):  # the line is wider in UTF-8 bytes than in characters
    cgmem_record("load", peak=999)
"""
)


def test_a_verdict_of_ours_is_at_the_def_whatever_the_decorators_hold(
    pytester: pytest.Pytester,
) -> None:
    path = pytester.makepyfile(test_d=DECORATED)
    lines = path.read_text().splitlines()
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=100", "--tb=line")
    result.assert_outcomes(passed=104, failed=5)
    over = "pytest_cgmem.BudgetExceeded: cgmem: peak 999 B exceeds budget 100 B*"
    wanted = []
    names = ("def test_def_in_a_string(", "def test_a_long_decorator(", "def test_method(")
    for start in (*names, "test_lambda = lambda", "def test_naïve_ü("):
        number = next(n for n, line in enumerate(lines, 1) if line.lstrip().startswith(start))
        wanted.append(f"{path}:{number}: {over}")
    result.stdout.fnmatch_lines(wanted)
    one = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=peak=100", "-k", "naïve")
    one.assert_outcomes(failed=1)
    one.stdout.fnmatch_lines([">   def test_naïve_ü(cgmem_record):  *", "E   pytest_cgmem.*"])
    assert not [line for line in one.stdout.lines if line.strip() and not line.strip("^ ")]
