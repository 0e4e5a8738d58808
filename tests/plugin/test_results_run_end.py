"""How a run's end reaches its files and its last lines: the paths held against each other
before the first test, the commit and the settings a run file names, why a run is
incomplete, the exit status and the "cgmem results" lines when a file cannot be written,
what a lost xdist worker leaves in the run file and in its journal, and what the quiet
path does for a test that fails. Figures come from ``cgmem_record``, so all of it runs
without a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch  # noqa: F401  imported once here: pytester's inline runs would re-import it each time

from pytest_cgmem.plugin import settings_key
from pytest_cgmem.results import journal, runfile
from pytest_cgmem.session import STOPPED_BEFORE_COLLECTION

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

RECORDS = """
def test_a(cgmem_record):
    cgmem_record("load", peak=1)
"""


# -- outputs held against each other before the first test ---------------------------------

OTHER_PLUGINS = """
import contextlib


def pytest_addoption(parser):
    # pytest-json-report's and pytest-html's options where they are not installed
    for args, kwargs in (
        (["--json-report"], {"action": "store_true", "dest": "json_report"}),
        (["--json-report-file"], {"dest": "json_report_file", "default": ".report.json"}),
        (["--html"], {"dest": "htmlpath"}),
    ):
        with contextlib.suppress(ValueError):  # the plugin itself added it
            parser.addoption(*args, **kwargs)
"""


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--cgmem-json=base.json", "--cgmem-baseline=base.json"],
            "--cgmem-baseline='base.json': the same file as --cgmem-json='base.json'; "
            "--cgmem-json would write over the file this run reads: give it another path",
        ),
        (
            ["--cgmem-json=out.json", "--json-report", "--json-report-file=out.json"],
            "--json-report-file='out.json': the same file as --cgmem-json='out.json'; give "
            "each output its own path",
        ),
        (
            ["--cgmem-json=out.json", "--json-report-file=other.json", "--html=out.json"],
            "--html='out.json': the same file as --cgmem-json='out.json'; give each output "
            "its own path",
        ),
        (["--cgmem-json=out.json", "--json-report-file=out.json"], None),
        (["--cgmem-json=out.json", "--junitxml=", "--cgmem-artifacts=."], None),
    ],
    ids=["baseline-read", "json-report", "html-after-json-report", "no-json-report", "empty"],
)
def test_an_output_on_the_path_of_another_is_refused_at_configure(
    pytester: pytest.Pytester, args: list[str], error: str | None
) -> None:
    """The baseline read is no file to write over; pytest-json-report writes its file only
    under ``--json-report``; an empty ``--junitxml=`` writes nothing."""
    pytester.makeconftest(OTHER_PLUGINS)
    if error is None:
        assert pytester.parseconfigure(*args).stash[settings_key].json == "out.json"
    else:
        with pytest.raises(pytest.UsageError) as info:
            pytester.parseconfigure(*args)
        assert info.value.args == (error,)


# -- a finished run: its commit, its settings, what it says it wrote -------------------------


def test_a_run_file_names_the_checkout_s_commit_and_the_results_name_each_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_rec=RECORDS)

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=pytester.path, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", "test_rec.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    result = pytester.runpytest("--cgmem-json=run.json", "--cgmem-gab-json=gab.json")
    result.assert_outcomes(passed=1)
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["commit"] == {"sha": git("rev-parse", "HEAD"), "dirty": False}
    result.stdout.fnmatch_lines(
        [
            "*- cgmem results -*",
            "cgmem: wrote run file run.json (1 test(s))",
            "cgmem: wrote github-action-benchmark file gab.json (1 test(s))",
        ],
        consecutive=True,
    )


# -- why a run is incomplete -----------------------------------------------------------------

INTERNAL_ERROR = """
def pytest_runtest_logfinish(nodeid):
    raise RuntimeError("a plugin broke")
"""

EXIT_BEFORE_COLLECTING = """
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    pytest.exit("nothing to run here", returncode=0)
    return (yield)
"""

FAILS = """
def test_a(cgmem_record):
    cgmem_record("load", peak=1)
    assert False
"""


def _broken(n: int) -> dict[str, str]:
    return {f"test_bad{i}": "import no_such_module_here\n" for i in range(n)}


@pytest.mark.parametrize(
    ("conftest", "modules", "args", "reason"),
    [
        (INTERNAL_ERROR, {"test_rec": RECORDS}, [], "an internal error ended the run"),
        (
            EXIT_BEFORE_COLLECTING,
            {"test_rec": RECORDS},
            [],
            "interrupted: nothing to run here",
        ),
        (
            "",
            {"test_rec": RECORDS, **_broken(3)},
            ["--continue-on-collection-errors"],
            "3 collection error(s) (test_bad0.py, test_bad1.py, test_bad2.py): their tests "
            "did not run",
        ),
        (
            "",
            {"test_rec": RECORDS, **_broken(4)},
            ["--continue-on-collection-errors"],
            "4 collection error(s) (test_bad0.py, test_bad1.py, test_bad2.py, ...): their "
            "tests did not run",
        ),
        ("", {"test_fails": FAILS}, ["-x"], None),
    ],
    ids=["internal-error", "exit-0-before-collection", "3-errors", "4-errors", "x-on-the-only"],
)
def test_a_run_file_says_why_it_is_incomplete(
    pytester: pytest.Pytester,
    conftest: str,
    modules: dict[str, str],
    args: list[str],
    reason: str | None,
) -> None:
    """Each replaces the last run's file: a run that a plugin's hook stops before our
    collection hook (even with exit status 0) does too. A -x that stops the run after its
    only test stopped nothing."""
    (pytester.path / "run.json").write_text('{"schema": "pytest-cgmem/1"}')
    if conftest:
        pytester.makeconftest(conftest)
    pytester.makepyfile(**modules)
    pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json", *args)
    doc = runfile.load_run(pytester.path / "run.json")
    assert (doc["complete"], doc["incomplete_reason"]) == (reason is None, reason)


@pytest.mark.parametrize(
    ("files", "args"),
    [
        ({}, ["--cgmem-summary=many"]),
        ({"pytest.ini": "[pytest]\ncgmem_tolerance = lots\n"}, []),
        ({"corrupt.json": "{bad"}, ["--cgmem-baseline=corrupt.json"]),
        ({"conftest.py": "raise RuntimeError('a broken conftest')\n"}, []),
    ],
    ids=["bad-option", "bad-ini-value", "unreadable-baseline", "conftest-raises"],
)
def test_a_run_stopped_before_its_collection_leaves_no_earlier_file_looking_current(
    pytester: pytest.Pytester, files: dict[str, str], args: list[str]
) -> None:
    """Before its collection writes the stub, a run that stops leaves the last run's
    complete file for a CI gate to read as its own, unless the plugin marks it first."""
    pytester.makepyfile(test_rec=RECORDS)
    outputs = ["-p", "no:randomly", "--cgmem-json=run.json", "--cgmem-gab-json=gab.json"]
    pytester.runpytest(*outputs).assert_outcomes(passed=1)
    assert runfile.load_run(pytester.path / "run.json")["complete"] is True
    assert (pytester.path / "gab.json").is_file()
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    assert pytester.runpytest(*outputs, *args).ret == pytest.ExitCode.USAGE_ERROR
    doc = runfile.load_run(pytester.path / "run.json")
    assert (doc["complete"], doc["incomplete_reason"], doc["tests"]) == (
        False,
        STOPPED_BEFORE_COLLECTION,
        [],
    )
    assert not (pytester.path / "gab.json").exists()


def test_a_run_killed_in_a_conftest_leaves_no_earlier_file_looking_current(
    pytester: pytest.Pytester, this_checkout: None
) -> None:
    pytester.makepyfile(test_rec=RECORDS)
    pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json").assert_outcomes(passed=1)
    pytester.makeconftest("import os\n\nos._exit(7)\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--cgmem-json=run.json")
    assert result.ret == 7
    assert runfile.load_run(pytester.path / "run.json")["incomplete_reason"] == (
        STOPPED_BEFORE_COLLECTION
    )


def test_a_run_no_file_can_be_written_by_leaves_no_earlier_file_looking_current(
    pytester: pytest.Pytester,
) -> None:
    """A full disk (here a file-size limit of 0, which refuses every byte the same way)
    stops pytest as its output capture starts, finding no usable temporary folder: before
    any conftest, and before the plugin's other early work. The earlier run's file cannot
    be replaced by one saying so, so it goes."""
    pytester.makepyfile(test_rec=RECORDS)
    pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json").assert_outcomes(passed=1)
    command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "--cgmem-json=run.json"]
    done = subprocess.run(
        command, cwd=pytester.path, capture_output=True, text=True, preexec_fn=_no_file_space
    )
    assert done.returncode != 0 and "No usable temporary directory" in done.stderr
    assert not (pytester.path / "run.json").exists()


@pytest.mark.parametrize("earlier", [False, True], ids=["no-earlier-file", "an-earlier-file"])
def test_a_run_file_that_cannot_be_started_is_said_once_and_the_run_stops(
    pytester: pytest.Pytester, earlier: bool
) -> None:
    """With output capture off, the full disk first stops the write of the run file's stub,
    before the first test: one usage error, not the same line again at the end."""
    pytester.makepyfile(test_rec=RECORDS)
    if earlier:
        pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json").assert_outcomes(passed=1)
    command = [sys.executable, "-m", "pytest", "-s", "-p", "no:randomly"]
    command += ["-p", "no:cacheprovider", "--cgmem-json=run.json"]
    done = subprocess.run(
        command, cwd=pytester.path, capture_output=True, text=True, preexec_fn=_no_file_space
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert done.stderr.strip() == "ERROR: --cgmem-json='run.json': File too large"
    assert "run.json" not in done.stdout
    assert "no tests ran" in done.stdout
    assert not (pytester.path / "run.json").exists()


def _no_file_space() -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


@pytest.mark.parametrize(
    ("earlier", "args"),
    [
        ("run", ["--collect-only"]),
        ("run", ["--cgmem-baseline=run.json"]),
        ("text", []),
    ],
    ids=["collect-only", "the-baseline-read", "not-a-run-file"],
)
def test_a_file_the_run_may_not_replace_is_left_as_it_was(
    pytester: pytest.Pytester, earlier: str, args: list[str]
) -> None:
    """A run that runs no test writes nothing; an output path with a problem stops the run
    at configure, touching nothing: it is the baseline read, or a file of another kind."""
    pytester.makepyfile(test_rec=RECORDS)
    if earlier == "run":
        pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json").assert_outcomes(passed=1)
    else:
        (pytester.path / "run.json").write_text("notes of my own\n")
    before = (pytester.path / "run.json").read_text()
    pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json", *args)
    assert (pytester.path / "run.json").read_text() == before


NAN_FIGURE = """
def test_nan(cgmem_record):
    result = cgmem_record("load", peak=1, reserved_ratio=1.5)
    result.devices[0].figures["reserved_ratio"] = float("nan")
"""


def test_an_interrupted_run_that_could_not_write_a_figure_keeps_its_exit_status(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        NAN_FIGURE
        + """
import pytest

def test_stops():
    pytest.exit("enough")
"""
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert result.stdout.lines[-1] == (
        "cgmem: the run's results were not all written: exit status 2"
    )


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
    """Said once, as pytest says a usage error; the other run's file is left to it."""
    pytester.makeconftest(ANOTHER_RUN_STARTS)
    pytester.makepyfile(test_rec=RECORDS)
    result = pytester.runpytest("--cgmem-json=run.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = (
        "--cgmem-json='run.json': another pytest run (pid * on *, started *) is writing this "
        "run file; give each concurrent run its own path"
    )
    result.stderr.fnmatch_lines([f"ERROR: {error}"])
    result.stdout.no_fnmatch_line("*another pytest run*")
    result.stdout.no_fnmatch_line("*not all written*")
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


def test_without_a_terminal_a_file_not_written_is_said_on_stderr(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(NAN_FIGURE)
    result = pytester.runpytest("-p", "no:terminal", "--cgmem-json=run.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.stderr.lines == [
        "cgmem: test 'test_without_a_terminal_a_file_not_written_is_said_on_stderr.py::"
        "test_nan': regions[0].devices[0].reserved_ratio (region 'load') is nan, not a finite "
        "number (JSON has no NaN or Infinity); its figures are left out of the files",
        "cgmem: the run's results were not all written: exit status 1",
    ]


def test_files_that_cannot_be_written_at_the_end_are_said_in_red_twice(
    pytester: pytest.Pytester,
) -> None:
    """In the cgmem results section and again after pytest's last line, and the journal's
    lock is let go: the run is over."""
    pytester.makepyfile(
        """
        import os

        def test_a(cgmem_record):
            cgmem_record("load", peak=1)
            os.remove("run.json")
            os.mkdir("run.json")
            os.mkdir("gab.json")
        """
    )
    result = pytester.runpytest("--color=yes", "--cgmem-json=run.json", "--cgmem-gab-json=gab.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    red, plain = "\x1b[31m\x1b[1m", "\x1b[0m"
    lines = result.stdout.lines
    heading = next(i for i, line in enumerate(lines) if "- cgmem results -" in line)
    errors = [
        "cgmem: could not write run file 'run.json': ",
        "cgmem: could not write github-action-benchmark file 'gab.json': ",
    ]
    for said in (lines[heading + 1 : heading + 3], lines[-3:-1]):
        assert [line.startswith(red + error) for line, error in zip(said, errors, strict=True)] == [
            True
        ] * 2
        assert [line.endswith(plain) for line in said] == [True] * 2
    assert lines[-1] == f"{red}cgmem: the run's results were not all written: exit status 1{plain}"
    assert journal.busy(pytester.path / "run.json") is None


# -- a lost xdist worker -----------------------------------------------------------------------

WORKERS_DIE = """
import os
import shutil


def pytest_sessionfinish(session):
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
        os._exit(1)  # the worker started in gw0's place dies after its last test
    if not hasattr(session.config, "workerinput"):
        os.mkdir("killed")  # the files a controller killed now would leave
        for name in ("run.json", "run.json.journal"):
            shutil.copy(name, "killed")
"""

CRASH_THEN_TEARDOWN = """
import os

import pytest


@pytest.fixture
def server(cgmem_record):
    yield
    cgmem_record("shutdown", peak=1)


def test_a_crashes():
    os._exit(1)


def test_b_records_in_teardown(server):
    pass
"""


@pytest.mark.usefixtures("this_checkout")
def test_lost_workers_are_in_the_run_file_and_its_journal(pytester: pytest.Pytester) -> None:
    """One crashed in a test, the one started in its place after its last test; the test
    after the crash has figures from its fixture's teardown only. A controller killed at
    its end would leave the same lost workers, and a stub that says the run used xdist."""
    pytest.importorskip("xdist")
    pytester.makeconftest(WORKERS_DIE)
    pytester.makepyfile(test_w=CRASH_THEN_TEARDOWN)
    # the controller runs in this process: only workers, processes of their own, die
    pytester.runpytest(
        "-p", "no:randomly", "-n", "1", "--max-worker-restart=1", "--cgmem-json=run.json"
    )
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["incomplete_reason"] == (
        "worker gw0 crashed while running test_w.py::test_a_crashes (that test's figures are "
        "lost); worker gw1 went down (Not properly terminated)"
    )
    lost = [(w["worker"], w["test"], w["error"]) for w in doc["workers_lost"]]
    assert lost == [
        ("gw0", "test_w.py::test_a_crashes", "Not properly terminated"),
        ("gw1", None, "Not properly terminated"),
    ]
    (test,) = doc["tests"]
    assert (test["nodeid"], test["outcome"]) == ("test_w.py::test_b_records_in_teardown", "passed")
    assert [r["label"] for r in test["regions"]] == ["shutdown"]
    killed = runfile.load_run(pytester.path / "killed" / "run.json")
    assert killed["workers_lost"] == doc["workers_lost"]
    assert killed["settings"]["xdist"] is doc["settings"]["xdist"] is True


# -- what the summary counts -----------------------------------------------------------------

OPTED_OUT_THEN_SKIPPED = """
import pathlib

import pytest

ATTEMPT = pathlib.Path(__file__).with_name("attempt")


@pytest.fixture
def skips_when_run_again():
    if ATTEMPT.exists():
        pytest.skip("the second attempt skips")
    ATTEMPT.touch()


@pytest.mark.cgmem_off("runs its own allocator")
def test_opted_out(skips_when_run_again):
    assert False, "fails once, run again"


def test_records(cgmem_record):
    cgmem_record("load", peak=1)
"""


@pytest.mark.lean_runs(False)  # pytest-rerunfailures is what it checks
def test_the_cgmem_all_summary_counts_last_attempts_above_the_table(
    pytester: pytest.Pytester,
) -> None:
    """An opted-out attempt run again counts as its last attempt does: one skipped in its
    setup ran nothing, opted out or not."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_off=OPTED_OUT_THEN_SKIPPED)
    result = pytester.runpytest(
        "-p", "no:randomly", "-p", "no:benchmark", "--reruns=1", "--cgmem-all"
    )
    assert result.parseoutcomes() == {"passed": 1, "skipped": 1, "rerun": 1}
    result.stdout.fnmatch_lines(
        [
            "--cgmem-all: 1 test(s) measured, 0 over budget, 0 opted out, 0 never used CUDA*",
            "1 test(s) with figures, largest peak first",
        ],
        consecutive=True,
    )


# -- the quiet path: tests that name no fixture of ours, beside one that keeps the hooks ------

QUIET = """
import sys

import pytest
import torch

import pytest_cgmem.cuda.allocator  # loaded, as where a marked test runs on a GPU


@pytest.fixture
def later(request):
    return request.getfixturevalue


@pytest.fixture
def locals_on_failure(request):
    yield
    tb = sys.last_traceback
    while tb is not None:
        if tb.tb_frame.f_code.co_name == request.node.name:
            print("TEARDOWN-SEES", sorted(tb.tb_frame.f_locals))
        tb = tb.tb_next


def test_keeps_the_hooks(cgmem_record):
    pass


def test_out_of_memory(locals_on_failure):
    payload = {"answer": 42}
    raise torch.cuda.OutOfMemoryError("CUDA out of memory")


def test_over_budget(later):
    later("cgmem_record")("load", peak=2 * 2**20)


def test_over_budget_then_fails(later):
    later("cgmem_record")("load", peak=2 * 2**20)
    assert False
"""


def test_a_quiet_test_that_fails_is_treated_as_one_naming_a_fixture(
    pytester: pytest.Pytester,
) -> None:
    """A CUDA OOM's frames are released in any test; a test that asked for a fixture in its
    body is judged though it raised, and fails on its budget with the user's frames only."""
    pytester.makepyfile(test_quiet=QUIET)
    result = pytester.runpytest(
        "-p", "no:randomly", "-s", "--cgmem-budget=peak=1MiB", "--cgmem-json=run.json"
    )
    result.assert_outcomes(passed=1, failed=3)
    assert "TEARDOWN-SEES []" in result.stdout.str()
    assert [line for line in result.stdout.lines if "pytest_cgmem" + "/" in line] == []
    tests = {
        t["nodeid"].split("::")[1]: t for t in runfile.load_run(pytester.path / "run.json")["tests"]
    }
    for name in ("test_over_budget", "test_over_budget_then_fails"):
        assert tests[name]["outcome"] == "failed"
        assert [v["label"] for v in tests[name]["violations"]] == ["load"]
