"""Results CI can trust (issue 12): bad paths fail before the run, a killed run or a crashed
worker leaves every finished test in a file marked incomplete, readers refuse what the
schema refuses, machines merge by what was measured. Figures come from ``cgmem_record``, so
all of it runs without a GPU; tests/gpu/test_results_gpu.py runs the worker crash on one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch  # imported once here: pytester's inline runs would re-import it each time

import pytest_cgmem
from pytest_cgmem.cli import main
from pytest_cgmem.results import journal, runfile
from pytest_cgmem.units import MAX_SIGNED_FIGURE

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

MiB = 2**20
ROOT = Path(pytest_cgmem.__file__).parents[1]


def raw(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def nodeids(doc: dict[str, Any]) -> list[str]:
    return [t["nodeid"].split("::", 1)[1] for t in doc["tests"]]


# -- fail before the run, not after it ----------------------------------------------------

RAN = """
from pathlib import Path

def test_a(cgmem_record):
    Path("ran.txt").write_text("the test ran")
    cgmem_record("x", peak=1)
"""


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--cgmem-json=/proc/x.json"], "--cgmem-json='/proc/x.json': cannot create a file in*"),
        (["--cgmem-save-baseline=/proc/x.json"], "--cgmem-save-baseline='/proc/x.json': cannot*"),
        (["--cgmem-gab-json=/proc/x/g.json"], "--cgmem-gab-json='/proc/x/g.json': cannot create*"),
        (["-o", "cgmem_json=/proc/x.json"], "cgmem_json='/proc/x.json': cannot create a file in*"),
        (["--cgmem-artifacts=/proc/cgmem"], "--cgmem-artifacts='/proc/cgmem': cannot create*"),
        (
            ["--cgmem-json=blocker/run.json"],
            "--cgmem-json='blocker/run.json': '*blocker' is not a*",
        ),
        (["--cgmem-json=folder"], "--cgmem-json='folder': it is a folder; give a file path"),
        (
            ["--cgmem-json=s.json", "--cgmem-gab-json=s.json"],
            "--cgmem-gab-json='s.json': the same file as --cgmem-json='s.json'; give each *",
        ),
        (
            ["--cgmem-json=s.json", "--cgmem-save-baseline=./s.json"],
            "--cgmem-save-baseline='./s.json': the same file as --cgmem-json='s.json'*",
        ),
        (
            ["--cgmem-json=j.xml", "--junitxml=j.xml"],
            "--junitxml='j.xml': the same file as --cgmem-json='j.xml'*",
        ),
    ],
)
def test_a_bad_output_path_is_a_usage_error_before_the_first_test(
    pytester: pytest.Pytester, args: list[str], line: str
) -> None:
    pytester.makepyfile(RAN)
    (pytester.path / "blocker").write_text("a file, not a folder")
    (pytester.path / "folder").mkdir()
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [x for x in result.stderr.lines if x.strip()]
    assert len(errors) == 1, errors
    result.stderr.fnmatch_lines([f"ERROR: {line}"])
    assert not (pytester.path / "ran.txt").exists()


def test_collect_only_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RAN)
    last = {"run.json": '{"schema": "pytest-cgmem/1"}', "base.json": "", "gab.json": "[]"}
    for name, text in last.items():
        (pytester.path / name).write_text(text)
    theirs = {".pytest_cache", "__pycache__"}  # pytest's own cache and Python's bytecode
    before = sorted(p.name for p in pytester.path.iterdir() if p.name not in theirs)
    result = pytester.runpytest(
        "-p",
        "no:benchmark",
        "--collect-only",
        "--cgmem-json=run.json",
        "--cgmem-save-baseline=base.json",
        "--cgmem-gab-json=gab.json",
    )
    assert result.ret == pytest.ExitCode.OK
    after = sorted(p.name for p in pytester.path.iterdir() if p.name not in theirs)
    assert after == before
    for name, text in last.items():
        assert (pytester.path / name).read_text() == text
    assert "cgmem results" not in result.stdout.str()


def test_a_write_that_fails_at_the_end_fails_the_run_and_says_so_last(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import shutil

        def test_a(cgmem_record):
            cgmem_record("x", peak=1)
            shutil.rmtree("out")
            open("out", "w").write("a file where the folder was")

        def test_b(cgmem_record):
            cgmem_record("x", peak=2)
        """
    )
    result = pytester.runpytest("--cgmem-json=out/run.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every test passed
    result.assert_outcomes(passed=2)
    assert result.stdout.lines[-2].startswith("cgmem: could not write run file 'out/run.json': ")
    assert result.stdout.lines[-1] == "cgmem: the run's results were not all written: exit status 1"


def test_outputs_that_are_bind_mounts_are_written(pytester: pytest.Pytester) -> None:
    """A container's single-file bind mount can be neither renamed over nor removed; the
    run file, the github-action-benchmark file and ``cgmem merge``'s and ``cgmem report``'s
    outputs are written in place (here in a user and mount namespace of its own, where the
    system allows one)."""
    pytester.makepyfile(RAN)
    names = ("run.json", "gab.json", "merged.json", "report.html")
    (pytester.path / "host").mkdir()
    (pytester.path / "out").mkdir()
    for name in names:
        (pytester.path / "host" / name).write_text("")
        (pytester.path / "out" / name).write_text("")
    mount = " && ".join(f"mount --bind host/{name} out/{name}" for name in names)

    def in_namespace(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "-rm", "sh", "-c", script],
            cwd=pytester.path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        probe = in_namespace(mount)
    except FileNotFoundError:
        pytest.skip("no unshare(1) here to make a bind mount")
    if probe.returncode != 0:
        pytest.skip(f"no bind mount in a user namespace here: {probe.stderr.strip()[:200]}")
    cgmem = f"{sys.executable} -m pytest_cgmem.cli"
    done = in_namespace(
        f"{mount} && {sys.executable} -m pytest -p no:cacheprovider -p no:randomly "
        "--cgmem-json=out/run.json --cgmem-gab-json=out/gab.json && "
        f"{cgmem} merge out/run.json -o out/merged.json && "
        f"{cgmem} report out/run.json -o out/report.html"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cgmem: wrote run file out/run.json (1 test(s))" in done.stdout
    assert nodeids(raw(pytester.path / "host" / "run.json")) == ["test_a"]
    assert nodeids(raw(pytester.path / "host" / "merged.json")) == ["test_a"]
    (entry,) = json.loads((pytester.path / "host" / "gab.json").read_text())
    assert "::test_a [x]" in entry["name"]
    assert "test_a" in (pytester.path / "host" / "report.html").read_text()


# -- a run that dies leaves every finished test, marked incomplete ------------------------

KILLED = """
import os, signal

def test_a(cgmem_record):
    cgmem_record("load", peak="{a} MiB")

def test_b(cgmem_record):
    cgmem_record("load", peak="20 MiB")

def test_c(cgmem_record):
    cgmem_record("load", peak="30 MiB")
    if os.environ.get("CGMEM_DIE"):
        {how}

def test_d(cgmem_record):
    cgmem_record("load", peak="40 MiB")
"""
HOW = {
    "os._exit": "os._exit(3)",
    "SIGTERM": "os.kill(os.getpid(), signal.SIGTERM)",
    "SIGKILL": "os.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.usefixtures("this_checkout")
@pytest.mark.parametrize("how", sorted(HOW))
def test_a_killed_run_leaves_a_file_marked_incomplete_with_every_finished_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    pytester.makepyfile(test_k=KILLED.replace("{how}", HOW[how]).replace("{a}", "10"))
    done = pytester.runpytest("--cgmem-json=run.json")  # in process: nothing dies in it
    assert done.ret == 0 and raw(pytester.path / "run.json")["complete"] is True
    monkeypatch.setenv("CGMEM_DIE", "1")
    killed = pytester.runpytest_subprocess("--cgmem-json=run.json")
    assert killed.ret != 0
    # the previous run's complete file is gone: the file says the run did not finish
    stub = raw(pytester.path / "run.json")
    assert stub["complete"] is False and stub["journal"]["file"] == "run.json.journal"
    doc = runfile.load_run(pytester.path / "run.json")
    runfile.validate(doc)
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == runfile.NOT_FINISHED
    assert nodeids(doc) == ["test_a", "test_b"]  # test_c died in its call: lost
    assert doc["machine"]["torch"] == torch.__version__  # from the measuring process


@pytest.mark.usefixtures("this_checkout")
def test_a_test_killed_in_its_teardown_is_not_kept_as_it_stood_after_its_call(
    pytester: pytest.Pytester,
) -> None:
    """Its call passed, but it never ended: kept as ``passed``, it would read as a test that
    did, as no other test killed in a serial run does."""
    pytester.makepyfile(
        test_k="""
        import os, signal, pytest

        @pytest.fixture
        def killed_in_teardown():
            yield
            os.kill(os.getpid(), signal.SIGKILL)

        def test_a(cgmem_record):
            cgmem_record("load", peak="10 MiB")

        def test_b(cgmem_record, killed_in_teardown):
            cgmem_record("load", peak="20 MiB")
        """
    )
    pytester.runpytest_subprocess("--cgmem-json=run.json", "-p", "no:randomly")
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["complete"] is False and doc["incomplete_reason"] == runfile.NOT_FINISHED
    assert nodeids(doc) == ["test_a"]


@pytest.mark.usefixtures("this_checkout")
def test_readers_say_a_file_is_incomplete_and_the_gate_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_k=KILLED.replace("{how}", HOW["os._exit"]).replace("{a}", "10"))
    pytester.runpytest_subprocess("--cgmem-json=base.json").assert_outcomes(passed=4)
    monkeypatch.setenv("CGMEM_DIE", "1")
    pytester.makepyfile(test_k=KILLED.replace("{how}", HOW["os._exit"]).replace("{a}", "11"))
    pytester.runpytest_subprocess("--cgmem-json=new.json")
    monkeypatch.chdir(pytester.path)
    capsys.readouterr()
    assert main(["compare", "base.json", "new.json"]) == 3
    out, err = capsys.readouterr()
    assert f"incomplete run: new.json: {runfile.NOT_FINISHED}" in out.splitlines()
    assert "missing from new.json: test_k.py::test_c [load]" in out
    assert err == (
        "cgmem compare: new.json: from an incomplete run, so figures may be missing; pass "
        "--allow-incomplete to accept it\n"
    )
    assert main(["compare", "base.json", "new.json", "--allow-incomplete"]) == 0
    assert main(["compare", "new.json", "base.json", "--allow-incomplete"]) == 0
    assert main(["compare", "new.json", "base.json"]) == 3  # an incomplete baseline, too
    capsys.readouterr()
    assert main(["merge", "base.json", "new.json", "-o", "m.json"]) == 2  # tests in both
    assert main(["merge", "new.json", "-o", "m.json"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("-> m.json (marked incomplete)\n")
    assert f"warning: 'new.json' is from an incomplete run: {runfile.NOT_FINISHED}" in err
    merged = runfile.load_run(pytester.path / "m.json")
    assert merged["complete"] is False and nodeids(merged) == ["test_a", "test_b"]
    assert merged["incomplete_reason"] == f"new.json: {runfile.NOT_FINISHED}"
    # the pytest baseline check reads it, and says so
    monkeypatch.delenv("CGMEM_DIE")
    result = pytester.runpytest("--cgmem-baseline=new.json")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "cgmem: baseline new.json is from an incomplete run (the run did not finish*",
            "cgmem baseline new.json: * 2 new",
            "  note: the baseline is from an incomplete run (*); tests it lacks count as new",
        ]
    )


@pytest.mark.usefixtures("this_checkout")
def test_report_marks_an_incomplete_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("CGMEM_DIE", "1")
    pytester.makepyfile(test_k=KILLED.replace("{how}", HOW["os._exit"]).replace("{a}", "10"))
    pytester.runpytest_subprocess("--cgmem-json=new.json")
    capsys.readouterr()
    out = pytester.path / "r.html"
    assert main(["report", str(pytester.path / "new.json"), "-o", str(out)]) == 0
    assert "is from an incomplete run: the run did not finish" in capsys.readouterr().err
    assert "<b>Incomplete run:</b>" in out.read_text()


def test_stopped_early_is_incomplete(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_a(cgmem_record):
            cgmem_record("x", peak=1)
            assert False
        def test_b(cgmem_record):
            cgmem_record("x", peak=1)
        """
    )
    pytester.runpytest("-x", "--cgmem-json=run.json").assert_outcomes(failed=1)
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == "stopped early: stopping after 1 failures"
    assert nodeids(doc) == ["test_a"]


@pytest.mark.parametrize(
    "how", [["--continue-on-collection-errors"], ["-n", "2"]], ids=["continue", "xdist2"]
)
def test_a_run_that_goes_on_past_collection_errors_is_incomplete(
    pytester: pytest.Pytester, how: list[str]
) -> None:
    """The tests of a module that failed to collect never ran: a run that goes on without
    them (as xdist does) keeps every other test's figures and says what is missing."""
    pytester.makepyfile(
        test_ok="def test_a(cgmem_record):\n    cgmem_record('x', peak=1)\n",
        test_bad="import no_such_module_here\n",
        test_worse="raise RuntimeError('broken at import')\n",
    )
    result = pytester.runpytest(*how, "-p", "no:randomly", "--cgmem-json=run.json")
    outcomes = result.parseoutcomes()  # xdist may count an error once from each worker
    assert outcomes["passed"] == 1 and outcomes["errors"] >= 2
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == (
        "2 collection error(s) (test_bad.py, test_worse.py): their tests did not run"
    )
    assert nodeids(doc) == ["test_a"]


def test_collection_errors_that_stop_the_run_are_said_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="import no_such_module_here\n")
    pytester.runpytest("--cgmem-json=run.json").assert_outcomes(errors=1)
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["incomplete_reason"] == "interrupted: 1 error during collection"


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["serial", "xdist1"])
def test_a_stop_at_the_last_test_is_complete(pytester: pytest.Pytester, xdist: list[str]) -> None:
    """-x that fires on the last test stopped nothing: the run is complete."""
    pytester.makepyfile(
        """
        def test_a(cgmem_record):
            cgmem_record("x", peak=1)
        def test_b(cgmem_record):
            cgmem_record("x", peak=1)
            assert False
        """
    )
    pytester.runpytest(*xdist, "-x", "--cgmem-json=run.json").assert_outcomes(passed=1, failed=1)
    doc = runfile.load_run(pytester.path / "run.json")
    assert (doc["complete"], doc["incomplete_reason"]) == (True, None)
    assert nodeids(doc) == ["test_a", "test_b"]


def test_a_clean_run_is_complete_and_leaves_no_journal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RAN)
    pytester.runpytest("--cgmem-json=out/run.json").assert_outcomes(passed=1)
    doc = raw(pytester.path / "out" / "run.json")
    assert doc["complete"] is True and doc["incomplete_reason"] is None
    assert doc["workers_lost"] == [] and "journal" not in doc
    assert [p.name for p in (pytester.path / "out").iterdir()] == ["run.json"]


HOLD = """
import sys, time
from pytest_cgmem.results import journal
stub = {"schema": "pytest-cgmem/1", "journal": {"file": "run.json.journal", "run": "other"}}
journal.Journal.start("run.json", stub)
print("holding", flush=True)
time.sleep(120)
"""


def test_a_collection_error_leaves_the_baseline_as_it_was(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_rec(cgmem_record):\n    cgmem_record('r', peak=1)\n")
    args = ("-p", "no:cacheprovider", "--cgmem-save-baseline=base.json", "--cgmem-json=run.json")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    baseline = (pytester.path / "base.json").read_bytes()
    pytester.makepyfile(test_broken="def test_broken(:\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert (pytester.path / "base.json").read_bytes() == baseline
    document = runfile.load_run(pytester.path / "run.json")
    assert (document["complete"], document["tests"]) == (False, [])
    assert document["incomplete_reason"] == "interrupted: 1 error during collection"


@pytest.mark.usefixtures("this_checkout")
def test_a_second_run_on_the_same_file_is_refused(pytester: pytest.Pytester) -> None:
    """Two concurrent runs on one path: the second is a usage error while the first lives."""
    pytester.makepyfile(RAN)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD], cwd=pytester.path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        result = pytester.runpytest("--cgmem-json=run.json")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            [
                f"ERROR: --cgmem-json='run.json': another pytest run (pid {holder.pid} on *, "
                "started *) is writing it; give each concurrent run its own path"
            ]
        )
        assert not (pytester.path / "ran.txt").exists()
    finally:
        holder.kill()
        holder.wait()
    pytester.runpytest("--cgmem-json=run.json").assert_outcomes(passed=1)


@pytest.mark.usefixtures("this_checkout")
def test_runs_that_run_no_test_are_not_refused_beside_a_run_in_progress(
    pytester: pytest.Pytester,
) -> None:
    """An IDE's test discovery (--collect-only) or --help while a run writes the ini's
    run file: they write nothing, so nothing is refused (before: a usage error)."""
    pytester.makeini("[pytest]\ncgmem_json = run.json\n")
    pytester.makepyfile(RAN)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD], cwd=pytester.path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        for flags in (["--collect-only", "-q"], ["--fixtures"], ["--markers"], ["--help"]):
            result = pytester.runpytest(*flags)
            assert result.ret == pytest.ExitCode.OK, (flags, result.stderr.str())
        assert pytester.runpytest().ret == pytest.ExitCode.USAGE_ERROR
    finally:
        holder.kill()
        holder.wait()


# -- figures that are not numbers ---------------------------------------------------------


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["serial", "xdist1"])
def test_a_nan_figure_is_refused_naming_the_test_and_the_run_fails(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    """Under xdist the worker sends a record it cannot write as JSON as data (others as
    JSON text), and the controller refuses it as a serial run does."""
    pytester.makepyfile(
        """
        def test_nan_ratio(cgmem_record):
            result = cgmem_record("load", peak=1, reserved_ratio=1.5)
            # a figure that turns NaN after it was recorded (cgmem_record refuses NaN itself)
            result.devices[0].figures["reserved_ratio"] = float("nan")

        def test_nan_seconds(cgmem_record):
            cgmem_record("load", peak=1, seconds=float("nan"))

        def test_fine(cgmem_record):
            cgmem_record("load", peak=2)
        """
    )
    result = pytester.runpytest("--cgmem-json=run.json", "--cgmem-gab-json=gab.json", *xdist)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["E*CgmemUsageError: cgmem_record('load'): seconds must be a finite number >= 0, got nan"]
    )
    line = (
        "cgmem: test 'test_a_nan_figure_is_refused_naming_the_test_and_the_run_fails.py::"
        "test_nan_ratio': regions[0].devices[0].reserved_ratio (region 'load') is nan, not a "
        "finite number (JSON has no NaN or Infinity); its figures are left out of the files"
    )
    assert line in result.stdout.lines
    assert result.stdout.lines[-1] == "cgmem: the run's results were not all written: exit status 1"
    doc = runfile.load_run(pytester.path / "run.json")
    assert nodeids(doc) == ["test_fine"]
    assert doc["incomplete_reason"] == "the figures of 1 test(s) could not be written"
    assert len(raw(pytester.path / "gab.json")) == 1


def test_a_baseline_at_the_signed_figures_limits_keeps_the_test_s_record(
    pytester: pytest.Pytester,
) -> None:
    """A device figure may be negative: the change from a baseline's most negative figure
    to a run's largest still fits a run file, so the test's figures are written."""
    most = MAX_SIGNED_FIGURE
    pytester.makepyfile(
        """
        import os

        def test_device(cgmem_record):
            cgmem_record("load", device=int(os.environ.get("DEVICE", "0")))
        """
    )
    pytester.runpytest("--cgmem-save-baseline=base.json").assert_outcomes(passed=1)
    doc = raw(pytester.path / "base.json")
    doc["tests"][0]["regions"][0]["devices"][0]["device"] = -most
    (pytester.path / "base.json").write_text(json.dumps(doc))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DEVICE", str(most))
        result = pytester.runpytest("--cgmem-baseline=base.json", "--cgmem-json=run.json")
    result.assert_outcomes(failed=1)
    (test,) = runfile.load_run(pytester.path / "run.json")["tests"]
    (regression,) = test["baseline"]["regressions"]
    assert (regression["baseline"], regression["value"], regression["change"]) == (
        -most,
        most,
        2 * most,
    )

    doc["tests"][0]["regions"][0]["devices"][0]["device"] = -most - 1
    (pytester.path / "base.json").write_text(json.dumps(doc))
    result = pytester.runpytest("--cgmem-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [x for x in result.stderr.lines if x.strip()] == [
        "ERROR: cgmem: baseline 'base.json' does not match the run-file schema at "
        f"$.tests[0].regions[0].devices[0].device: expected a number >= {-most}, "
        f"got integer {-most - 1}"
    ]


# -- exact formats ------------------------------------------------------------------------


def test_no_github_action_benchmark_file_when_nothing_was_measured(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_plain(): pass")
    (pytester.path / "gab.json").write_text('[{"name": "the last run"}]')
    result = pytester.runpytest("--cgmem-gab-json=gab.json", "--cgmem-json=run.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert not (pytester.path / "gab.json").exists()
    result.stdout.fnmatch_lines(
        [
            "cgmem: no figures measured: github-action-benchmark file gab.json not written "
            "(the action fails on an empty list)"
        ]
    )


def test_unlabelled_and_repeated_regions_have_names_of_their_own(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import json

        def pytest_runtest_logreport(report):
            if report.when == "call":
                with open("call-properties.json", "w") as f:
                    json.dump(report.user_properties, f)
        """
    )
    pytester.makepyfile(
        """
        from pytest_cgmem import DeviceFigures, RegionResult

        def test_a(cgmem_record):
            cgmem_record("call", peak="1 MiB")
            cgmem_record("step", peak="2 MiB")
            cgmem_record("step", peak="3 MiB", reserved="4 MiB")
            unknown = dict(graph_pool=None, graphs=None, replays=None)
            unlabelled = DeviceFigures(0, peak=5 * 2**20, **unknown)
            cgmem_record(RegionResult(None, (unlabelled,), 0.0))
        """
    )
    result = pytester.runpytest(
        "--cgmem-gab-json=gab.json", "--junitxml=junit.xml", "--cgmem-json=run.json"
    )
    result.assert_outcomes(passed=1)
    gab = {e["name"]: e["value"] for e in raw(pytester.path / "gab.json")}
    assert gab == {
        "test_unlabelled_and_repeated_regions_have_names_of_their_own.py::test_a - peak": 1.0,
        "test_unlabelled_and_repeated_regions_have_names_of_their_own.py::test_a [step] - peak": (
            2.0
        ),
        "test_unlabelled_and_repeated_regions_have_names_of_their_own.py::test_a [step#2] - "
        "peak": 3.0,
        "test_unlabelled_and_repeated_regions_have_names_of_their_own.py::test_a [step#2] - "
        "reserved": 4.0,
        "test_unlabelled_and_repeated_regions_have_names_of_their_own.py::test_a [region] - "
        "peak": 5.0,
    }
    expected = {
        "cgmem.call.peak": str(MiB),
        "cgmem.step.peak": str(2 * MiB),
        "cgmem.step#2.peak": str(3 * MiB),
        "cgmem.step#2.reserved": str(4 * MiB),
        "cgmem.region.peak": str(5 * MiB),
    }  # figures not recorded are unknown: left out, not 0
    (case,) = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    assert {p.get("name"): p.get("value") for p in case.iter("property")} == expected
    on_call = json.loads((pytester.path / "call-properties.json").read_text())
    assert {k: str(v) for k, v in on_call} == expected
    # the summary shows an unknown figure as n/a, never 0 B
    row = next(x for x in result.stdout.lines if "test_a [step#2]" in x)
    assert row.split("[step#2]")[1].split() == ["3.00", "MiB", "4.00", "MiB", "n/a", "n/a", "n/a"]
    assert " 0 B" not in row


def test_alloc_conf_comes_from_the_measuring_process_as_torch_reads_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "garbage_collection_threshold:0.9")
    monkeypatch.setenv("PYTORCH_ALLOC_CONF", "expandable_segments:True")
    pytester.makepyfile(RAN)
    pytester.runpytest("--cgmem-json=run.json").assert_outcomes(passed=1)
    # torch 2.10+ reads PYTORCH_CUDA_ALLOC_CONF first and whole, PYTORCH_ALLOC_CONF only
    # when it is unset (checked in the wheels and with torch's own getter: cuda/allocator.py)
    machine = raw(pytester.path / "run.json")["machine"]
    assert machine["alloc_conf"] == "garbage_collection_threshold:0.9"


@pytest.mark.lean_runs(False)  # pytest-benchmark is what it checks
def test_pytest_benchmark_compare_sees_our_machine_info_filled(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(
        """
        def test_bench(benchmark, cgmem_record):
            benchmark(lambda: sum(range(10)))
            cgmem_record("call", peak="64 MiB")
        """
    )
    args = ("--benchmark-storage=store", "--benchmark-max-time=0.001")
    pytester.runpytest(*args, "--benchmark-autosave").assert_outcomes(passed=1)
    (saved,) = (pytester.path / "store").rglob("*.json")
    ours = raw(saved)["machine_info"]["cgmem"]
    assert ours["torch"] == torch.__version__ and ours["alloc_conf"] is not None
    result = pytester.runpytest(*args, "--benchmark-compare", "--cgmem-json=run.json")
    result.assert_outcomes(passed=1)
    assert "machine_info is different" not in result.stdout.str() + result.stderr.str()
    machine = raw(pytester.path / "run.json")["machine"]
    assert {k: machine[k] for k in runfile.MACHINE_IDENTITY} == {
        k: ours[k] for k in runfile.MACHINE_IDENTITY
    }


# -- one loader: what the schema refuses, every reader refuses in one line ------------------

GOOD_SUITE = """
def test_a(cgmem_record):
    cgmem_record("load", peak="10 MiB")

def test_b(cgmem_record):
    cgmem_record("load", peak="20 MiB")
"""


@pytest.fixture
def good_file(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_g=GOOD_SUITE)
    pytester.runpytest("--cgmem-json=good.json").assert_outcomes(passed=2)
    return pytester.path / "good.json"


def spoil(path: Path, how: str) -> Path:
    doc = raw(path)
    test = doc["tests"][0]
    if how == "tolerance":
        test["tolerance"] = "10%"
    elif how == "outcome":
        del test["outcome"]
    elif how == "settings":
        doc["settings"] = "x"
    elif how == "extra":
        test["regions"][0]["extra"] = "x"
    elif how == "twice":
        doc["tests"].append(test)
    elif how == "nan":
        test["regions"][0]["devices"][0]["peak"] = float("nan")
    target = path.with_name(f"{how}.json")
    target.write_text(json.dumps(doc))  # json writes NaN, as Python's json would
    return target


SPOILED = {
    "tolerance": "does not match the run-file schema at $.tests[0].tolerance: expected object "
    'or null, got string "10%"',
    "outcome": "does not match the run-file schema at $.tests[0]: 'outcome' is missing",
    "settings": 'does not match the run-file schema at $.settings: expected object, got string "x"',
    "extra": "does not match the run-file schema at $.tests[0].regions[0].extra: expected "
    'object, got string "x"',
    "twice": "lists test 'test_g.py::test_a' twice ($.tests[0] and $.tests[2])",
    "nan": "has a number that is not finite at $.tests[0].regions[0].devices[0].peak: NaN is "
    "not a finite number (JSON has no NaN or Infinity)",
}


@pytest.mark.parametrize("how", sorted(SPOILED))
def test_every_reader_refuses_a_bad_file_in_one_line_with_exit_2(
    good_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    bad = spoil(good_file, how)
    monkeypatch.chdir(bad.parent)
    for argv, what in (
        (["compare", "good.json", bad.name], "run file"),
        (["compare", bad.name, "good.json"], "baseline"),
        (["merge", bad.name, "-o", "m.json"], "run file"),
        (["report", bad.name, "-o", "r.html"], "run file"),
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert capsys.readouterr().err == f"cgmem: {what} {bad.name!r} {SPOILED[how]}\n", argv


@pytest.mark.parametrize("how", ["extra", "twice", "nan"])
def test_the_baseline_option_refuses_a_bad_file_in_one_line(
    good_file: Path, pytester: pytest.Pytester, how: str
) -> None:
    bad = spoil(good_file, how)
    result = pytester.runpytest(f"--cgmem-baseline={bad.name}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [x for x in result.stderr.lines if x.strip()] == [
        f"ERROR: cgmem: baseline {bad.name!r} {SPOILED[how]}"
    ]
    assert "INTERNALERROR" not in result.stdout.str()


# -- machines: recorded by the measuring process, merged by what was measured --------------


@pytest.mark.usefixtures("this_checkout")
def test_serial_xdist_and_empty_shards_record_one_machine_and_merge(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_g=GOOD_SUITE)
    pytester.runpytest("--cgmem-json=serial.json", "-k", "test_a").assert_outcomes(passed=1)
    pytester.runpytest(
        "-p", "no:benchmark", "-n", "2", "--cgmem-json=xdist.json", "-k", "test_b"
    ).assert_outcomes(passed=1)
    pytester.runpytest("--cgmem-json=empty.json", "-k", "nothing")
    pytester.runpytest("-p", "no:benchmark", "-n", "2", "--cgmem-json=empty-xdist.json", "-k", "no")
    docs = {n: raw(pytester.path / f"{n}.json") for n in ("serial", "xdist", "empty")}
    docs["empty-xdist"] = raw(pytester.path / "empty-xdist.json")
    measured = [runfile.machine_identity(docs[n]["machine"]) for n in ("serial", "xdist")]
    assert measured[0] == measured[1] and measured[0]["torch"] == torch.__version__
    for name in ("empty", "empty-xdist"):  # measured nothing: says nothing of GPUs
        assert all(v is None for v in runfile.machine_identity(docs[name]["machine"]).values())
    files = [str(pytester.path / f"{n}.json") for n in ("empty", "serial", "xdist", "empty-xdist")]
    capsys.readouterr()
    assert main(["merge", *files, "-o", str(pytester.path / "all.json")]) == 0
    assert capsys.readouterr().err == ""
    merged = runfile.load_run(pytester.path / "all.json")
    assert nodeids(merged) == ["test_a", "test_b"] and merged["complete"] is True
    assert runfile.machine_identity(merged["machine"]) == measured[0]


# -- xdist: a worker crash loses at most its test -----------------------------------------

CRASH_SUITE = """
import os
import signal
import pytest

@pytest.mark.parametrize("i", range(16))
def test_many(cgmem_record, i):
    cgmem_record("load", peak=(i + 1) * 2**20)

def test_zz_crash(cgmem_record):
    cgmem_record("load", peak=2**30)
    with open("crashed-worker.txt", "w") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"])
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
"""


@pytest.mark.usefixtures("this_checkout")
def test_a_crashed_worker_loses_only_the_test_it_crashed_in(pytester: pytest.Pytester) -> None:
    """The CPU twin of tests/gpu/test_results_gpu.py's killed worker: one worker of two
    SIGKILLed in its test, every other test's figures in the file (two workers, and the
    one xdist starts in the dead one's place, are processes enough to show it)."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_crash=CRASH_SUITE)
    # the controller runs in this process: only a worker, a process of its own, is killed
    result = pytester.runpytest(
        "-p", "no:benchmark", "-n", "2", "--cgmem-json=run.json", "--cgmem-gab-json=gab.json"
    )
    result.assert_outcomes(passed=16, failed=1)
    dead = (pytester.path / "crashed-worker.txt").read_text()
    doc = runfile.load_run(pytester.path / "run.json")
    assert raw(pytester.path / "run.json") == doc  # written whole at the end, no journal
    assert nodeids(doc) == sorted(f"test_many[{i}]" for i in range(16))
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == (
        f"worker {dead} crashed while running test_crash.py::test_zz_crash (that test's "
        "figures are lost)"
    )
    (lost,) = doc["workers_lost"]
    assert (lost["worker"], lost["test"]) == (dead, "test_crash.py::test_zz_crash")
    # the worker that died had passed tests before: their figures reached the controller
    assert any(t["worker"] == dead for t in doc["tests"])
    assert len(raw(pytester.path / "gab.json")) == 16


def test_a_worker_that_dies_in_teardown_keeps_the_test_s_figures(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_teardown="""
        import os
        import pytest

        @pytest.fixture
        def dies_after():
            yield
            os._exit(1)

        def test_recorded(cgmem_record, dies_after):
            cgmem_record("load", peak=2**20)
        """
    )
    # the controller runs in this process: only the worker, a process of its own, dies
    pytester.runpytest("-p", "no:benchmark", "-n", "1", "--cgmem-json=run.json")
    doc = runfile.load_run(pytester.path / "run.json")
    assert nodeids(doc) == ["test_recorded"]
    assert doc["tests"][0]["outcome"] == "failed"  # pytest shows it red: the worker crashed
    assert doc["complete"] is False
    assert doc["incomplete_reason"].endswith(
        "crashed while running test_teardown.py::test_recorded, after its call phase (its "
        "figures are kept)"
    )


STOP_IN_COLLECTION = """
import os, signal, pytest

def pytest_collection_modifyitems(config, items):
    how = os.environ.get("CGMEM_TEST_STOP")
    if how == "sigint":
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job ignores it
        os.kill(os.getpid(), signal.SIGINT)
    elif how == "exit":
        pytest.exit("abort", returncode=2)
    elif how == "bad-mark":
        items[0].add_marker(pytest.mark.cgmem(peak="lots"))
"""


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("sigint", "interrupted (KeyboardInterrupt)"),
        ("exit", "interrupted: abort"),
        ("bad-mark", "the run ended before its first test (exit status 4)"),
    ],
)
def test_a_run_stopped_before_its_first_test_leaves_no_stale_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, reason: str
) -> None:
    pytester.makeconftest(STOP_IN_COLLECTION)
    pytester.makepyfile("def test_rec(cgmem_record):\n    cgmem_record('r', peak=1)\n")
    args = ("-p", "no:cacheprovider", "--cgmem-json=run.json", "--cgmem-gab-json=gab.json")
    saving = "--cgmem-save-baseline=base.json"
    pytester.runpytest(*args, saving).assert_outcomes(passed=1)  # in process: nothing stops it
    assert runfile.load_run(pytester.path / "run.json")["complete"] is True
    baseline = (pytester.path / "base.json").read_bytes()
    monkeypatch.setenv("CGMEM_TEST_STOP", how)
    # SIGINT is sent to the whole process: that run needs a process of its own
    run = pytester.runpytest_subprocess if how == "sigint" else pytester.runpytest
    result = run(*args, saving)
    assert result.ret != 0
    doc = runfile.load_run(pytester.path / "run.json")
    assert (doc["complete"], doc["incomplete_reason"], doc["tests"]) == (False, reason, [])
    assert not (pytester.path / "gab.json").exists()
    # nothing was measured: the baseline is left as it was (before, it was marked
    # incomplete, and every later check and compare said so)
    assert (pytester.path / "base.json").read_bytes() == baseline
    assert not (pytester.path / "base.json.journal").exists()


KILLED_IN_COLLECTION = """
import os, signal

if os.environ.get("CGMEM_DIE"):
    os.kill(os.getpid(), signal.SIGKILL)  # a CI timeout or an OOM kill while collecting

def test_rec(cgmem_record):
    cgmem_record("r", peak=1)
"""


@pytest.mark.usefixtures("this_checkout")
def test_a_run_killed_while_collecting_leaves_no_stale_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_k=KILLED_IN_COLLECTION)
    args = ("-p", "no:cacheprovider", "--cgmem-json=run.json", "--cgmem-gab-json=gab.json")
    saving = "--cgmem-save-baseline=base.json"
    pytester.runpytest(*args, saving).assert_outcomes(passed=1)  # in process: nothing dies
    assert runfile.load_run(pytester.path / "run.json")["complete"] is True
    baseline = (pytester.path / "base.json").read_bytes()
    monkeypatch.setenv("CGMEM_DIE", "1")
    assert pytester.runpytest_subprocess(*args, saving).ret != 0
    # the earlier run's complete file would look like this run's: the stub says it did not end
    doc = runfile.load_run(pytester.path / "run.json")
    assert (doc["complete"], doc["incomplete_reason"], doc["tests"]) == (
        False,
        runfile.NOT_FINISHED,
        [],
    )
    assert not (pytester.path / "gab.json").exists()
    assert (pytester.path / "base.json").read_bytes() == baseline  # nothing was measured
    assert journal.busy(pytester.path / "run.json") is None


KILL_CONTROLLER = """
import os, signal, time
import pytest

@pytest.mark.parametrize("i", range(10))
def test_many(cgmem_record, i):
    cgmem_record("load", peak=(i + 1) * 2**20)

def test_zz_kill_the_controller():
    # only an xdist worker's parent is this run's controller (else it is the outer test's)
    assert os.environ.get("PYTEST_XDIST_WORKER"), "not in an xdist worker"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the controller has journaled the other ten
        with open("run.json.journal") as f:
            if sum('"test"' in line for line in f) == 10:
                break
        time.sleep(0.05)
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)
"""


@pytest.mark.usefixtures("this_checkout")
def test_a_killed_xdist_controller_leaves_every_reported_test(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_kill=KILL_CONTROLLER)
    result = pytester.runpytest_subprocess(
        "-p", "no:benchmark", "-n", "2", "--cgmem-json=run.json", timeout=60
    )
    assert result.ret != 0
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["complete"] is False and doc["incomplete_reason"] == runfile.NOT_FINISHED
    assert nodeids(doc) == sorted(f"test_many[{i}]" for i in range(10))
    assert {t["worker"] for t in doc["tests"]} <= {"gw0", "gw1"}
    assert doc["machine"]["torch"] == torch.__version__
    assert journal.busy(pytester.path / "run.json") is None


@pytest.mark.usefixtures("this_checkout")
def test_xdist_checks_and_refreshes_one_baseline_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers check against the baseline the controller read before the run replaced the
    file with its stub (--cgmem-baseline and --cgmem-save-baseline on one path)."""
    pytest.importorskip("xdist")
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_many(cgmem_record, i):
            cgmem_record("load", peak=f"{(i + 1) * int(os.environ.get('SCALE', '10'))} MiB")
        """
    )
    args = ("-p", "no:benchmark", "-n", "2", "--cgmem-baseline=base.json")
    pytester.runpytest("-p", "no:benchmark", "--cgmem-save-baseline=base.json")
    monkeypatch.setenv("SCALE", "20")
    result = pytester.runpytest(*args, "--cgmem-save-baseline=base.json")
    result.assert_outcomes(failed=6)
    result.stdout.fnmatch_lines(
        ["cgmem baseline base.json: 6 figure(s) of 6 test(s) compared: 6 *"]
    )
    doc = runfile.load_run(pytester.path / "base.json")
    assert doc["complete"] is True
    # refreshed, but a regression is not the new normal: the earlier figures stay
    assert doc["tests"][0]["regions"][0]["devices"][0]["peak"] == 10 * MiB
    monkeypatch.setenv("SCALE", "5")
    pytester.runpytest(*args, "--cgmem-save-baseline=base.json").assert_outcomes(passed=6)
    doc = runfile.load_run(pytester.path / "base.json")  # passed: the new figures
    assert doc["tests"][0]["regions"][0]["devices"][0]["peak"] == 5 * MiB


@pytest.mark.lean_runs(False)  # pytest-benchmark is what it checks
@pytest.mark.usefixtures("this_checkout")
def test_pytest_benchmark_without_gpu_tests_imports_no_torch_and_compares_quietly(
    pytester: pytest.Pytester,
) -> None:
    """machine_info['cgmem'] is read without torch, so a run that saves and one that
    compares say the same (before, only a comparing run filled it, and compare warned
    that the machines differed, an INTERNALERROR under -W error)."""
    pytest.importorskip("pytest_benchmark")
    pytester.makeconftest(
        """
        import sys
        def pytest_unconfigure(config):
            with open("torch-imported.txt", "w") as f:
                f.write(str("torch" in sys.modules))
        """
    )
    pytester.makepyfile("def test_bench(benchmark):\n    benchmark(lambda: sum(range(10)))\n")
    args = ("--benchmark-storage=store", "--benchmark-max-time=0.001", "-p", "no:xdist")
    pytester.runpytest_subprocess(*args, "--benchmark-autosave").assert_outcomes(passed=1)
    assert (pytester.path / "torch-imported.txt").read_text() == "False"
    (saved,) = (pytester.path / "store").rglob("*.json")
    assert raw(saved)["machine_info"]["cgmem"]["torch"] == torch.__version__
    warned = "-W", "error::pytest_benchmark.logger.PytestBenchmarkWarning"
    result = pytester.runpytest_subprocess(*args, *warned, "--benchmark-compare")
    result.assert_outcomes(passed=1)
    assert "machine_info is different" not in result.stdout.str() + result.stderr.str()
    assert (pytester.path / "torch-imported.txt").read_text() == "False"


@pytest.mark.lean_runs(False)  # pytest-rerunfailures is what it checks
def test_a_crashed_attempt_run_again_leaves_a_complete_run(pytester: pytest.Pytester) -> None:
    """pytest-rerunfailures runs a test whose worker crashed again: the attempt that ran
    to its end is the test's record, so nothing is lost and the run is complete; the
    crash stays listed among the lost workers."""
    pytest.importorskip("xdist")
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_crash="""
        import os
        from pathlib import Path

        def test_crashes_once(cgmem_record, request):
            mark = Path("crashed-once")
            if not mark.exists():
                mark.write_text(os.environ["PYTEST_XDIST_WORKER"])
                # pytest-rerunfailures sends the controller the test's rerun count without
                # waiting for it to be stored: a question on the same socket waits for it
                # (a loaded machine's controller saw the crash first and ran no rerun)
                request.config.failures_db.get_test_reruns(request.node.nodeid)
                os._exit(1)
            cgmem_record("load", peak=2**20)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:benchmark", "-n", "1", "--reruns=1", "--cgmem-json=run.json"
    )
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    doc = runfile.load_run(pytester.path / "run.json")
    assert nodeids(doc) == ["test_crashes_once"]
    assert doc["tests"][0]["outcome"] == "passed"
    assert (doc["complete"], doc["incomplete_reason"]) == (True, None)
    (lost,) = doc["workers_lost"]
    assert lost["test"] == "test_crash.py::test_crashes_once"
    assert lost["worker"] == (pytester.path / "crashed-once").read_text()


def test_a_region_read_from_a_dict_that_names_no_graph_figure_compares_none(
    pytester: pytest.Pytester,
) -> None:
    """A ``RegionResult.from_dict`` of a dict that gives a peak alone, recorded against a
    baseline that holds graph figures, has no graph figures: none is read as 0 and
    reported as an improvement, nor written to the run file as measured."""
    pytester.makepyfile(
        test_g="""
        def test_srv(cgmem_record):
            cgmem_record("server", peak="100 MiB", graphs=3, graph_pool="64 MiB")
        """
    )
    pytester.runpytest("--cgmem-save-baseline=base.json").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_g="""
        from pytest_cgmem import RegionResult

        def test_srv(cgmem_record):
            cgmem_record(RegionResult.from_dict(
                {"label": "server", "seconds": 0.1, "devices": [{"index": 0, "peak": 104857600}]}
            ))
        """
    )
    result = pytester.runpytest("--cgmem-baseline=base.json", "--cgmem-json=new.json")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*improv*graph*")
    (device,) = runfile.load_run(pytester.path / "new.json")["tests"][0]["regions"][0]["devices"]
    assert (device["peak"], device["graph_pool"], device["graphs"], device["replays"]) == (
        104857600,
        None,
        None,
        None,
    )


def test_text_a_file_or_a_region_result_brings_is_printed_with_its_control_characters_written_out(
    pytester: pytest.Pytester,
) -> None:
    """A baseline's ``incomplete_reason`` (a file edited by hand, or another tool's) and a
    ``RegionResult``'s ``error`` reach the terminal as one line each, with a newline or an
    escape sequence's ESC written out as ``cgmem`` writes them, not raw."""
    pytester.makepyfile(test_a="def test_a(cgmem_record):\n    cgmem_record('r', peak=1)\n")
    pytester.runpytest("--cgmem-json=base.json").assert_outcomes(passed=1)
    document = json.loads((pytester.path / "base.json").read_text())
    document.update(complete=False, incomplete_reason="a\nb\x1b[31m")
    (pytester.path / "base.json").write_text(json.dumps(document))
    pytester.makepyfile(
        test_a="""
        from pytest_cgmem import DeviceFigures, RegionResult

        def test_a(cgmem_record):
            error = "boom\\n\\x1b[31mRED"
            cgmem_record(RegionResult("r", (DeviceFigures(0, peak=5),), 0.0, error, {}))
        """
    )
    result = pytester.runpytest("--cgmem-baseline=base.json", "--cgmem-budget=peak=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            r"cgmem: baseline base.json is from an incomplete run (a\nb\x1b[[]31m)",
            r"  region ended by boom\n\x1b[[]31mRED",
            r"  note: the baseline is from an incomplete run (a\nb\x1b[[]31m); tests it lacks *",
        ],
        consecutive=False,
    )
    assert "\x1b" not in result.stdout.str()
