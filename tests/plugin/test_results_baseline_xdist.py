"""Baselines and pytest-xdist through pytester: a regression fails its test only; workers'
results reach the controller once each; --cgmem-devices pins workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch  # noqa: F401  imported once here: pytester's inline runs would re-import it each time

from pytest_cgmem.results import runfile

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

MiB = 2**20

# Figures come from the environment so that a second run can grow or shrink them.
SUITE = """
import os
import pytest
from pytest_cgmem import BaselineRegression

def figure(name, default):
    return os.environ.get(name, default)

def test_grows(cgmem_record):
    cgmem_record("load", peak=figure("GROWS", "100 MiB"))

def test_shrinks(cgmem_record):
    cgmem_record("load", peak=figure("SHRINKS", "100 MiB"))

def test_steady(cgmem_record):
    cgmem_record("load", peak="100 MiB", reserved="128 MiB")

def test_new(cgmem_record):
    if os.environ.get("NEW"):
        cgmem_record("load", peak=1)

@pytest.mark.xfail(strict=True, raises=BaselineRegression)
def test_known_growth(cgmem_record):
    cgmem_record("load", peak=figure("KNOWN", "100 MiB"))
"""


@pytest.fixture
def saved(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--cgmem-save-baseline=base.json")
    # test_known_growth is xfail(strict): without a baseline it passes, so strict xfail fails it
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["cgmem: wrote baseline base.json (4 test(s))"])
    doc = json.loads((pytester.path / "base.json").read_text())
    runfile.validate(doc)
    return pytester.path / "base.json"


def test_regression_fails_that_test_only(
    pytester: pytest.Pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROWS", "150 MiB")
    monkeypatch.setenv("SHRINKS", "50 MiB")
    monkeypatch.setenv("KNOWN", "300 MiB")
    monkeypatch.setenv("NEW", "1")
    result = pytester.runpytest("--cgmem-baseline=base.json", "--cgmem-json=run.json", "-rfx")
    result.assert_outcomes(passed=3, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "E*BaselineRegression: cgmem: peak 150.00 MiB regressed from baseline 100.00 MiB "
            "(+50.00 MiB, +50.0%; tolerance 5% or 2.00 MiB) on cuda:0 in 'load'",
            "E   cgmem: baseline base.json",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "cgmem baseline base.json: 5 figure(s) of 5 test(s) compared: 2 regression(s), "
            "1 improvement(s), 1 new",
            "  REGRESSION test_suite.py::test_grows: peak 150.00 MiB regressed from baseline*",
            "  REGRESSION test_suite.py::test_known_growth: peak 300.00 MiB regressed*",
            "  improvement test_suite.py::test_shrinks: peak 50.00 MiB improved from baseline "
            "100.00 MiB (-50.00 MiB, -50.0%; tolerance 5% or 2.00 MiB) on cuda:0 in 'load'",
            "  new test_suite.py::test_new [[]load[]]",
        ]
    )
    result.stdout.fnmatch_lines(["FAILED test_suite.py::test_grows - *BaselineRegression*"])
    doc = json.loads((pytester.path / "run.json").read_text())
    runfile.validate(doc)
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert tests["test_grows"]["outcome"] == "failed"
    (regression,) = tests["test_grows"]["baseline"]["regressions"]
    assert (regression["baseline"], regression["value"]) == (100 * MiB, 150 * MiB)
    assert tests["test_new"]["baseline"]["new"] == ["test_suite.py::test_new [load]"]
    assert tests["test_steady"]["baseline"] == {
        "compared": 2,
        "regressions": [],
        "improvements": [],
        "new": [],
        "sizes": [],
    }


@pytest.mark.parametrize(
    ("how", "outcome"),
    [
        (["--cgmem-tolerance=60%"], {"passed": 4}),
        (["-o", "cgmem_tolerance=60%"], {"passed": 4}),
        (["--cgmem-tolerance=0%", "--cgmem-tolerance-abs=60MiB"], {"passed": 4}),
        (["-o", "cgmem_tolerance_abs=60MiB", "-o", "cgmem_tolerance=0%"], {"passed": 4}),
        (["--cgmem-tolerance=40%"], {"passed": 3, "failed": 1}),
    ],
)
def test_tolerance_options(
    pytester: pytest.Pytester,
    saved: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: list[str],
    outcome: dict[str, int],
) -> None:
    monkeypatch.setenv("GROWS", "150 MiB")
    monkeypatch.setenv("KNOWN", "300 MiB")
    result = pytester.runpytest("--cgmem-baseline=base.json", *how)
    result.assert_outcomes(xfailed=1, **outcome)


def test_save_and_check_in_one_run(
    pytester: pytest.Pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KNOWN", "300 MiB")
    monkeypatch.setenv("SHRINKS", "10 MiB")
    result = pytester.runpytest("--cgmem-baseline=base.json", "--cgmem-save-baseline=base.json")
    result.assert_outcomes(passed=4, xfailed=1)
    doc = runfile.load_run(saved)
    peaks = {
        t["nodeid"].split("::")[1]: t["regions"][0]["devices"][0]["peak"] for t in doc["tests"]
    }
    assert peaks["test_shrinks"] == 10 * MiB  # the new figures are the new baseline
    assert peaks["test_known_growth"] == 100 * MiB  # an xfail keeps its earlier figures
    result.stdout.fnmatch_lines(
        ["cgmem: wrote baseline base.json (4 test(s), 1 kept from the earlier baseline)"]
    )


def _peaks(path: Path) -> dict[str, int]:
    doc = runfile.load_run(path)
    return {t["nodeid"].split("::")[1]: t["regions"][0]["devices"][0]["peak"] for t in doc["tests"]}


@pytest.mark.parametrize("same_file", [True, False])
def test_a_refresh_keeps_what_this_run_did_not_measure_or_pass(
    pytester: pytest.Pytester, saved: Path, monkeypatch: pytest.MonkeyPatch, same_file: bool
) -> None:
    """A regression does not become the new normal after one red run, and a -k selection
    does not drop the other tests' entries (their check would be off without a word)."""
    monkeypatch.setenv("GROWS", "500 MiB")
    monkeypatch.setenv("SHRINKS", "50 MiB")
    check = ["--cgmem-baseline=base.json"] if same_file else []
    result = pytester.runpytest(
        *check, "--cgmem-save-baseline=base.json", "-k", "grows or shrinks", "-p", "no:randomly"
    )
    if same_file:
        result.assert_outcomes(passed=1, failed=1)  # test_grows regressed
    result.stdout.fnmatch_lines(
        [f"cgmem: wrote baseline base.json (4 test(s), {3 if same_file else 2} kept from *)"]
    )
    peaks = _peaks(saved)
    assert peaks == {
        "test_grows": (100 if same_file else 500) * MiB,
        "test_shrinks": 50 * MiB,
        "test_steady": 100 * MiB,
        "test_known_growth": 100 * MiB,
    }
    again = pytester.runpytest("--cgmem-baseline=base.json", "-k", "grows")
    again.assert_outcomes(failed=1 if same_file else 0, passed=0 if same_file else 1)


def test_a_refresh_of_another_file_keeps_that_file_s_tests(
    pytester: pytest.Pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked against one baseline and saved to another file: the tests kept are that
    file's own, not the baseline's."""
    pytester.runpytest("--cgmem-save-baseline=other.json", "-k", "steady").assert_outcomes(passed=1)
    monkeypatch.setenv("SHRINKS", "50 MiB")
    result = pytester.runpytest(
        "--cgmem-baseline=base.json", "--cgmem-save-baseline=other.json", "-k", "shrinks"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["cgmem: wrote baseline other.json (2 test(s), 1 kept from the earlier baseline)"]
    )
    assert _peaks(pytester.path / "other.json") == {
        "test_steady": 100 * MiB,
        "test_shrinks": 50 * MiB,
    }


@pytest.mark.parametrize(
    ("earlier", "said"), [("", False), ('{"schema": "pytest-cgmem/run', True)], ids=["empty", "cut"]
)
def test_a_baseline_saved_over_a_file_it_cannot_read(
    pytester: pytest.Pytester, earlier: str, said: bool
) -> None:
    """An empty file is nothing to keep, and nothing is said of it; a run file cut short
    keeps nothing either, and the run says that it is replaced whole."""
    pytester.makepyfile(test_one="def test_one(cgmem_record):\n    cgmem_record('x', peak=7)\n")
    (pytester.path / "base.json").write_text(earlier)
    result = pytester.runpytest("--cgmem-save-baseline=base.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["cgmem: wrote baseline base.json (1 test(s))"])
    replaced = [line for line in result.stdout.lines if line.endswith(": it is replaced whole")]
    assert len(replaced) == int(said)
    assert _peaks(pytester.path / "base.json") == {"test_one": 7}


def test_a_new_test_that_fails_is_saved_with_its_figures(
    pytester: pytest.Pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_more="def test_fails(cgmem_record):\n    cgmem_record('x', peak=7)\n    assert 0\n"
    )
    pytester.runpytest("--cgmem-save-baseline=base.json", "test_more.py")
    assert _peaks(saved)["test_fails"] == 7


def test_a_killed_refresh_keeps_a_failing_test_s_earlier_entry(
    pytester: pytest.Pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_killed="""
        import os

        def test_z_dies():
            os._exit(3)
        """
    )
    monkeypatch.setenv("GROWS", "500 MiB")
    pytester.runpytest_subprocess(
        "--cgmem-baseline=base.json",
        "--cgmem-save-baseline=base.json",
        "test_suite.py",
        "test_killed.py",
        "-p",
        "no:randomly",
    )
    doc = runfile.load_run(saved)
    assert doc["complete"] is False
    assert _peaks(saved)["test_grows"] == 100 * MiB  # it regressed: the earlier entry stays


def test_a_killed_refresh_keeps_the_earlier_tests(
    pytester: pytest.Pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_killed="""
        import os

        def test_a_first(cgmem_record):
            cgmem_record("load", peak=5)

        def test_b_dies():
            os._exit(3)
        """
    )
    monkeypatch.setenv("SHRINKS", "1 MiB")
    pytester.runpytest_subprocess(
        "--cgmem-save-baseline=base.json", "test_killed.py", "test_suite.py", "-p", "no:randomly"
    )
    doc = runfile.load_run(saved)
    assert doc["complete"] is False
    peaks = _peaks(saved)
    assert peaks["test_a_first"] == 5  # journaled before the kill
    assert peaks["test_shrinks"] == 100 * MiB  # never reached: the earlier entry stays
    assert set(peaks) == {
        "test_a_first",
        "test_grows",
        "test_shrinks",
        "test_steady",
        "test_known_growth",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cgmem: baseline 'base.json' does not exist"),
        ("", "cgmem: baseline 'base.json' is empty"),
        ("{not json", "cgmem: baseline 'base.json' is not valid JSON (line 1, column 2: *)"),
        (
            '{"schema": "pytest-cgmem/9", "tests": []}',
            "cgmem: baseline 'base.json' has schema 'pytest-cgmem/9'; *",
        ),
        ('{"benchmarks": []}', "cgmem: baseline 'base.json' is not a pytest-cgmem run file"),
    ],
)
def test_bad_baseline_is_one_line_usage_error(
    pytester: pytest.Pytester, content: str | None, message: str
) -> None:
    pytester.makepyfile("def test_a(): pass")
    if content is not None:
        (pytester.path / "base.json").write_text(content)
    result = pytester.runpytest("--cgmem-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert len([line for line in result.stderr.lines if line.strip()]) == 1


def test_a_bad_baseline_from_the_ini_file_names_the_key_and_the_file(
    pytester: pytest.Pytester,
) -> None:
    """The ini file's relative path is read beside it: the message shows where it is set."""
    pytester.makepyfile("def test_a(): pass")
    ini = pytester.makeini("[pytest]\ncgmem_baseline = base.json\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    base = pytester.path / "base.json"
    assert [line for line in result.stderr.lines if line.strip()] == [
        f"ERROR: cgmem: baseline {str(base)!r} does not exist (cgmem_baseline in {ini})"
    ]


@pytest.mark.parametrize(
    ("tolerance", "line"),
    [
        (
            "'fast'",
            "*test_x.py::test_it: @pytest.mark.cgmem: tolerance='fast': expected a tolerance*",
        ),
        (
            "'1% 2%'",
            "*test_x.py::test_it: @pytest.mark.cgmem: tolerance='1% 2%': two relative tolerances*",
        ),
        (
            "0.5",
            "*tolerance=0.5: expected a tolerance such as '10%', '4MiB' or '10% 4MiB', got 0.5",
        ),
    ],
)
def test_mark_tolerance_is_validated_at_collection(
    pytester: pytest.Pytester, tolerance: str, line: str
) -> None:
    pytester.makepyfile(
        test_x=f"""
        import pytest
        @pytest.mark.cgmem(peak="1 GiB", tolerance={tolerance})
        def test_it(): pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])


def test_mark_tolerance_is_accepted(pytester: pytest.Pytester) -> None:
    from pytest_cgmem.session import budget_key
    from pytest_cgmem.session import item_tolerance as _item_tolerance

    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.cgmem(tolerance="1%")
        @pytest.mark.cgmem(peak="1 GiB", tolerance="10% 4MiB")
        def test_a(): pass
        def test_b(): pass
        """
    )
    items, _ = pytester.inline_genitems()
    assert items[0].stash[budget_key].limits == {"peak": 2**30}
    assert _item_tolerance(items[0]) == {"rel": 0.1, "abs": 4 * MiB}
    assert _item_tolerance(items[1]) == {"rel": 0.01}


# -- pytest-xdist ------------------------------------------------------------------------

XDIST_SUITE = """
import os
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_many(cgmem_record, i):
    cgmem_record("load", peak=(i + 1) * 2**20 * int(os.environ.get("SCALE", "1")))
    cgmem_record("after", leak=i)
"""


@pytest.mark.usefixtures("this_checkout")
@pytest.mark.parametrize("workers", [3])
def test_xdist_results_reach_the_controller_once(pytester: pytest.Pytester, workers: int) -> None:
    pytest.importorskip("xdist")
    n = 12
    pytester.makepyfile(test_many=XDIST_SUITE.replace("{n}", str(n)))
    serial = pytester.runpytest("--cgmem-json=serial.json")
    serial.assert_outcomes(passed=n)
    result = pytester.runpytest(
        "-p",
        "no:benchmark",
        "-n",
        str(workers),
        "--cgmem-json=run.json",
        "--cgmem-gab-json=gab.json",
        "--cgmem-summary=100",
    )
    result.assert_outcomes(passed=n)
    doc = json.loads((pytester.path / "run.json").read_text())
    runfile.validate(doc)
    nodeids = [t["nodeid"] for t in doc["tests"]]
    assert len(nodeids) == len(set(nodeids)) == n
    assert {t["worker"] for t in doc["tests"]} <= {f"gw{i}" for i in range(workers)}
    assert len({t["worker"] for t in doc["tests"]}) > 1
    assert doc["settings"]["xdist"] is True
    assert doc["machine"]["python"]
    # the same figures as the serial run, nothing lost or doubled
    assert runfile.figures(doc) == runfile.figures(
        json.loads((pytester.path / "serial.json").read_text())
    )
    assert len(json.loads((pytester.path / "gab.json").read_text())) == 2 * n
    # one summary on the controller, every test once
    result.stdout.fnmatch_lines([f"{n} test(s) with figures, largest peak first"])
    assert (
        sum("test_many.py::test_many[" in line and "[load]" in line for line in result.stdout.lines)
        == n
    )


@pytest.mark.usefixtures("this_checkout")
def test_xdist_baseline_check(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_many=XDIST_SUITE.replace("{n}", "6"))
    pytester.runpytest(
        "-p", "no:benchmark", "-n", "2", "--cgmem-save-baseline=base.json"
    ).assert_outcomes(passed=6)
    monkeypatch.setenv("SCALE", "3")
    result = pytester.runpytest("-p", "no:benchmark", "-n", "2", "--cgmem-baseline=base.json")
    # tripled: 1 -> 3 MiB is within the 2 MiB absolute tolerance, the 5 others regress
    result.assert_outcomes(passed=1, failed=5)
    result.stdout.fnmatch_lines(
        [
            "cgmem baseline base.json: 12 figure(s) of 6 test(s) compared: 5 regression(s), "
            "0 improvement(s), 0 new"
        ]
    )


@pytest.mark.usefixtures("this_checkout")
def test_xdist_workers_get_the_baseline_as_one_string(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller ships the baseline it read as one string of compact JSON (execnet
    sends a str at C speed, a tree of data item by item): each worker gets the document
    the controller checked, unchanged."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_many=XDIST_SUITE.replace("{n}", "4"))
    pytester.runpytest(
        "-p", "no:benchmark", "-n", "2", "--cgmem-save-baseline=base.json"
    ).assert_outcomes(passed=4)
    pytester.makeconftest(
        """
        import json

        def pytest_configure(config):
            shipped = getattr(config, "workerinput", {}).get("cgmem_baseline")
            if shipped is not None:
                name = config.workerinput["workerid"]
                with open(f"shipped-{name}.json", "w") as f:
                    json.dump({"type": type(shipped).__name__, "text": shipped}, f)
        """
    )
    result = pytester.runpytest("-p", "no:benchmark", "-n", "2", "--cgmem-baseline=base.json")
    result.assert_outcomes(passed=4)
    expected = runfile.load_run(pytester.path / "base.json", "baseline")
    for name in ("gw0", "gw1"):
        seen = json.loads((pytester.path / f"shipped-{name}.json").read_text())
        assert seen["type"] == "str"
        assert json.loads(seen["text"]) == expected


DEVICE_PROBE = """
import json, os

def test_where(cgmem_record):
    cgmem_record("x", peak=1)
"""


@pytest.mark.usefixtures("this_checkout")
@pytest.mark.parametrize(
    ("args", "inherited", "expected"),
    [
        (["--cgmem-devices=0,1"], None, {"gw0": "0", "gw1": "1", "gw2": "0"}),
        (["-o", "cgmem_devices=2"], None, {"gw0": "2", "gw1": "2"}),
        (["--cgmem-devices=all"], "3,5", {"gw0": "3", "gw1": "5", "gw2": "3"}),
        ([], "7", {"gw0": "7", "gw1": "7"}),
        (["-o", "cgmem_devices="], "7", {"gw0": "7"}),  # an empty key is no key
    ],
)
def test_devices_pin_workers_before_conftest(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    inherited: str | None,
    expected: dict[str, str],
) -> None:
    pytest.importorskip("xdist")
    if inherited is None:
        from pytest_cgmem.cuda.nvml import count_devices

        needed = 1 + max((int(v) for v in expected.values()), default=0)
        if 0 < count_devices() < needed:
            pytest.skip(f"names device {needed - 1}; this machine has {count_devices()}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)
    # a conftest that reads the variable at import time, as one that starts CUDA would
    pytester.makeconftest(
        """
        import os
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            with open(f"seen-{worker}.txt", "w") as f:
                f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
        """
    )
    pytester.makepyfile(test_where="\n".join(f"def test_{i}(): pass" for i in range(8)))
    # enough workers to see the devices go round (each worker is a process of its own)
    result = pytester.runpytest("-p", "no:benchmark", "-n", str(len(expected)), *args)
    result.assert_outcomes(passed=8)
    seen = {p.stem.removeprefix("seen-"): p.read_text() for p in pytester.path.glob("seen-gw*.txt")}
    assert seen == expected


def test_a_pytest_run_inside_a_worker_s_test_pins_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-process pytest run inside a worker's test inherits PYTEST_XDIST_WORKER, but
    it is not the worker: it must not change the worker's CUDA_VISIBLE_DEVICES."""
    pytest.importorskip("xdist")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makepyfile(
        test_outer="""
        import os

        def test_inner(pytester):
            before = os.environ.get("CUDA_VISIBLE_DEVICES")
            pytester.makepyfile("def test_a():\\n    pass\\n")
            pytester.runpytest_inprocess("--cgmem-devices=1", "-p", "no:cacheprovider")
            assert os.environ.get("CUDA_VISIBLE_DEVICES") == before
        """
    )
    # the controller runs in this process; the worker, whose test runs pytest, is a process
    result = pytester.runpytest("-p", "pytester", "-p", "no:benchmark", "-n", "1")
    result.assert_outcomes(passed=1)


@pytest.mark.usefixtures("this_checkout")
def test_a_pytest_subprocess_of_a_worker_s_test_pins_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pytest subprocess started by a pinned worker's test inherits its environment,
    pinned CUDA_VISIBLE_DEVICES included: it must not pin itself again from the project's
    ini (it refused the run: "device 1 is not among CUDA_VISIBLE_DEVICES='0'")."""
    pytest.importorskip("xdist")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    pytester.makeini("[pytest]\ncgmem_devices = 0,1\n")
    pytester.mkdir("inner").joinpath("test_inner.py").write_text(
        "import os\n\n"
        "def test_inner():\n"
        "    print('INNER-SEES', os.environ['CUDA_VISIBLE_DEVICES'])\n"
    )
    pytester.makepyfile(
        test_outer="""
        import os, subprocess, sys

        def test_runs_pytest_in_a_subprocess():
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "inner"],
                capture_output=True, text=True,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"INNER-SEES {os.environ['CUDA_VISIBLE_DEVICES']}" in done.stdout
        """
    )
    # the controller runs in this process; the workers, whose test starts pytest, are processes
    result = pytester.runpytest("-p", "no:benchmark", "-n", "2", "test_outer.py")
    result.assert_outcomes(passed=1)


@pytest.mark.usefixtures("this_checkout")
@pytest.mark.parametrize(
    ("args", "source"),
    [(["--cgmem-devices=0,1"], "--cgmem-devices"), (["-o", "cgmem_devices=0,1"], "cgmem_devices")],
)
def test_devices_index_outside_inherited_list(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], source: str
) -> None:
    """The controller refuses the list once, before any worker starts."""
    pytest.importorskip("xdist")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    pytester.makeconftest(
        "import os\nif os.environ.get('PYTEST_XDIST_WORKER'):\n    open('worker-ran', 'w')\n"
    )
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("-p", "no:benchmark", "-n", "2", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {source}='0,1': device 1 is not among CUDA_VISIBLE_DEVICES='3'"]
    )
    assert not (pytester.path / "worker-ran").exists()


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("fixed", [False, True], ids=["as-shipped", "bug-fixed"])
def test_the_baselined_suite_example_catches_its_regression(
    pytester: pytest.Pytester, fixed: bool
) -> None:
    """``./dev demo``'s third suite runs on any machine: the padded plan's regression over
    ``baseline.json`` is a strict xfail, and with the padding taken out that xfail passes
    unexpectedly, so the demo fails: the plugin, not the example, makes it red or green."""
    example = ROOT / "examples" / "baselined_suite"
    for name in ("pytest.ini", "baseline.json", "test_kv_cache_plan.py"):
        text = (example / name).read_text()
        if fixed and name.endswith(".py"):
            text = text.replace("2048, 48, pad=True)", "2048, 48, pad=False)")
        (pytester.path / name).write_text(text)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    if fixed:
        result.assert_outcomes(passed=1, failed=1)
        assert "[XPASS(strict)] the plugin catches it" in result.stdout.lines
        return
    result.assert_outcomes(passed=1, xfailed=1)
    line = (
        "  REGRESSION test_kv_cache_plan.py::test_kv_cache_plan_padded_to_a_power_of_two: "
        "reserved 16.00 GiB regressed from baseline 12.00 GiB (+4.00 GiB, +33.3%; "
        "tolerance 5% or 2.00 MiB) on cuda:0 in 'kv cache plan'"
    )
    assert line in result.stdout.lines
    assert f"\n{line}\n" in (ROOT / "docs" / "baselines.md").read_text()  # quoted there
