"""--cgmem-json, --cgmem-gab-json, JUnit properties and pytest-benchmark, through pytester.

Figures come from ``cgmem_record`` (figures measured elsewhere), the honest way to have
results without a GPU; the CUDA measuring path is tested in tests/gpu.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import torch  # noqa: F401  imported once here: pytester's inline runs would re-import it each time

from pytest_cgmem.plugin import MARK_HELP
from pytest_cgmem.results import runfile
from pytest_cgmem.results.baseline import parse_tolerance

# pytest-benchmark and pytest-rerunfailures are not what these tests check, but where a test
# says so: their pytester runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

MiB = 2**20

SUITE = """
import os
import pytest
from pytest_cgmem import BudgetExceeded

def test_small(cgmem_record):
    cgmem_record("server", peak="100 MiB", reserved="120 MiB", device="130 MiB")

def test_two_regions(cgmem_record):
    cgmem_record("prefill", peak="1 GiB")
    cgmem_record("decode", peak="256 MiB", leak=0)

def test_over_budget(cgmem_record):
    cgmem_record("load", peak="5 GiB")

@pytest.mark.xfail(strict=True, raises=BudgetExceeded)
def test_known_bug(cgmem_record):
    cgmem_record("load", peak="4 GiB")

def test_failing_after_recording(cgmem_record):
    cgmem_record("load", peak="1 MiB")
    assert False, "the test's own failure"

@pytest.mark.skip(reason="not today")
def test_skipped(cgmem_record):
    cgmem_record("load", peak=1)

def test_not_measured():
    pass
"""


def run_json(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = pytester.runpytest("--cgmem-json=out/run.json", "--cgmem-budget=peak=3GiB", *args)
    doc = json.loads((pytester.path / "out" / "run.json").read_text())
    runfile.validate(doc)
    return result, doc


def test_json_of_a_mixed_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result, doc = run_json(pytester)
    result.assert_outcomes(passed=3, failed=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*cgmem: wrote run file out/run.json (5 test(s))*"])
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert sorted(tests) == [
        "test_failing_after_recording",
        "test_known_bug",
        "test_over_budget",
        "test_small",
        "test_two_regions",
    ]
    assert {n: t["outcome"] for n, t in tests.items()} == {
        "test_failing_after_recording": "failed",
        "test_known_bug": "xfailed",
        "test_over_budget": "failed",
        "test_small": "passed",
        "test_two_regions": "passed",
    }
    small = tests["test_small"]
    assert small["budget"] == {"peak": 3 * 2**30}
    assert small["checked"] == ["server"]
    (region,) = small["regions"]
    (device,) = region["devices"]
    assert (device["peak"], device["reserved"], device["device"]) == (
        100 * MiB,
        120 * MiB,
        130 * MiB,
    )
    assert region["extra"]["recorded"] == ["device", "peak", "reserved"]
    assert [r["label"] for r in tests["test_two_regions"]["regions"]] == ["prefill", "decode"]
    (violation,) = tests["test_over_budget"]["violations"]
    assert violation["metric"] == "peak" and violation["actual"] == 5 * 2**30
    assert "exceeds budget 3.00 GiB" in violation["message"]
    assert doc["summary"] == {"tests": 5, "regions": 6, "violations": 2, "failed": 2}
    assert doc["machine"]["python"] and "gpus" in doc["machine"]
    assert doc["settings"]["budget"] == {"peak": 3 * 2**30}


def test_recorded_figures_over_budget_fail_the_call_phase(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--cgmem-budget=peak=3GiB", "-k", "over_budget")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*BudgetExceeded: cgmem: peak 5.00 GiB exceeds budget 3.00 GiB (+66.7%) on cuda:0 "
            "in 'load'",
            "*- cgmem -*",
            "load on cuda:0 (0.0 ms):",
            "  peak*5.00 GiB   budget*3.00 GiB  OVER",
        ]
    )


KEPT_PAST_ITS_TEST = """
import pytest

kept = {}


@pytest.fixture(scope="module")
def server():
    yield kept
    kept["recorder"]("server-shutdown", peak=10**9)  # in test_3's teardown


@pytest.fixture
def recorded_server(server, cgmem_record):
    server.setdefault("recorder", cgmem_record)  # test_1's
    return server


def test_1(recorded_server):
    pass


def test_2_a_global_recorder():
    kept["recorder"]("late", peak=1)


def test_3(recorded_server):
    pass
"""


def test_a_recorder_used_after_its_test_ended_is_refused(pytester: pytest.Pytester) -> None:
    """A ``cgmem_record`` kept past its test (by a wider fixture, or a global) is refused
    in one line where it is used. Before, its figures reached no test: a 1 GB figure over
    a 100-byte budget passed, and the run file held no test."""
    pytester.makepyfile(test_kept=KEPT_PAST_ITS_TEST)
    result = pytester.runpytest(
        "-p", "no:randomly", "--cgmem-budget=peak=100", "--cgmem-json=r.json"
    )
    result.assert_outcomes(passed=2, failed=1, errors=1)
    refused = (
        "*CgmemUsageError: cgmem_record: the object test_kept.py::test_1 was given is used "
        "after that test ended, and its figures would reach no test; ask for the fixture in "
        "the test (or a function-scoped fixture) whose figures it records"
    )
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_3 *", refused])
    result.stdout.fnmatch_lines(["*_ test_2_a_global_recorder _*", refused])
    assert json.loads((pytester.path / "r.json").read_text())["tests"] == []


def test_json_when_nothing_was_measured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.skip(reason="not run here")
        @pytest.mark.cgmem(peak="1 GiB")
        def test_gpu(): pass
        def test_plain(): pass
        """
    )
    _, doc = run_json(pytester)
    assert doc["tests"] == [] and doc["summary"]["tests"] == 0


@pytest.mark.usefixtures("this_checkout")
def test_keyboard_interrupt_still_leaves_a_whole_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_a(cgmem_record):
            cgmem_record("x", peak=1)
        def test_b():
            raise KeyboardInterrupt
        def test_c(cgmem_record):
            cgmem_record("x", peak=2)
        """
    )
    result = pytester.runpytest_subprocess("--cgmem-json=out/run.json")
    doc = json.loads((pytester.path / "out" / "run.json").read_text())
    runfile.validate(doc)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert [t["nodeid"] for t in doc["tests"]] == [
        "test_keyboard_interrupt_still_leaves_a_whole_file.py::test_a"
    ]
    # a whole file, marked as the partial run it is; no journal left behind
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == "interrupted (KeyboardInterrupt)"
    assert [p.name for p in (pytester.path / "out").iterdir()] == ["run.json"]
    result.stdout.fnmatch_lines(
        ["cgmem: wrote run file out/run.json (1 test(s)); the run is incomplete: interrupted*"]
    )


def test_gab_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--cgmem-gab-json=gab.json", "-k", "small or two_regions")
    entries = json.loads((pytester.path / "gab.json").read_text())
    assert {e["name"]: e["value"] for e in entries} == {
        "test_suite.py::test_small [server] - peak": 100.0,
        "test_suite.py::test_small [server] - reserved": 120.0,
        "test_suite.py::test_small [server] - device": 130.0,
        "test_suite.py::test_two_regions [prefill] - peak": 1024.0,
        "test_suite.py::test_two_regions [decode] - peak": 256.0,
        "test_suite.py::test_two_regions [decode] - leak": 0.0,
    }
    assert {e["unit"] for e in entries} == {"MiB"}
    assert all(e["extra"].startswith("GPU: ") and "\ntorch: " in e["extra"] for e in entries)


def test_ini_keys(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncgmem_json = from-ini.json\ncgmem_gab_json = gab-ini.json\n")
    pytester.makepyfile("def test_a(cgmem_record):\n    cgmem_record('x', peak=1)\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert json.loads((pytester.path / "from-ini.json").read_text())["summary"]["tests"] == 1
    assert len(json.loads((pytester.path / "gab-ini.json").read_text())) == 1


def test_junit_properties(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--junitxml=junit.xml", "-k", "small")
    root = ET.parse(pytester.path / "junit.xml").getroot()
    (case,) = root.iter("testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["cgmem.server.peak"] == str(100 * MiB)
    assert props["cgmem.server.device"] == str(130 * MiB)
    assert "cgmem.server.non_torch" not in props  # unknown figures are left out


@pytest.mark.lean_runs(keep=("benchmark",))
def test_pytest_benchmark_carries_figures(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(
        """
        def test_bench(benchmark, cgmem_record):
            benchmark(lambda: sum(range(100)))
            cgmem_record("call", peak="64 MiB", device="70 MiB")
        """
    )
    result = pytester.runpytest(
        "--benchmark-json=bench.json",
        "--benchmark-disable-gc",
        "--benchmark-max-time=0.001",  # the figures it carries are checked, not its timing
    )
    result.assert_outcomes(passed=1)
    bench = json.loads((pytester.path / "bench.json").read_text())
    (entry,) = bench["benchmarks"]
    figures = entry["extra_info"]["cgmem"]["call"]
    assert figures["peak"] == 64 * MiB and figures["device"] == 70 * MiB
    assert "reserved" not in figures  # not recorded: unknown, left out (not 0)
    assert "gpus" in bench["machine_info"]["cgmem"]


def test_works_without_pytest_benchmark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_a(cgmem_record, request):
            assert not request.config.pluginmanager.hasplugin("benchmark")
            cgmem_record("x", peak=1)
        """
    )
    result = pytester.runpytest("-p", "no:benchmark", "--cgmem-json=run.json", "--junitxml=j.xml")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "run.json").read_text())["summary"]["tests"] == 1


TOLERANCE_HELP = (
    "tolerance (a percentage such as '10%', bytes such as '4MiB', '4096' or an int, or one "
    "of each in either order, separated by a space or a comma: '10% 4MiB')"
)


def test_mark_help_names_every_keyword(pytester: pytest.Pytester) -> None:
    assert TOLERANCE_HELP in MARK_HELP
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines([f"*cgmem(**budgets)*{TOLERANCE_HELP}*"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10%", {"rel": 0.1}),
        ("4MiB", {"abs": 4 << 20}),
        ("4096", {"abs": 4096}),
        (4096, {"abs": 4096}),
        ("10% 4MiB", {"rel": 0.1, "abs": 4 << 20}),
        ("4MiB 10%", {"rel": 0.1, "abs": 4 << 20}),
        ("4MiB, 10%", {"rel": 0.1, "abs": 4 << 20}),
    ],
)
def test_each_tolerance_form_the_help_names_parses(value: object, expected: object) -> None:
    assert parse_tolerance(value) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cgmem-tolerance=5"], "--cgmem-tolerance='5': expected a percentage such as '5%'*"),
        (
            ["--cgmem-tolerance-abs=lots"],
            "--cgmem-tolerance-abs='lots': cannot read 'lots' as a size*",
        ),
        (["--cgmem-devices=gpu0"], "--cgmem-devices='gpu0': expected 'all' or device indices*"),
        (["-o", "cgmem_tolerance=-1%"], "cgmem_tolerance='-1%': a tolerance must be >= 0%*"),
        (["--cgmem-json="], "--cgmem-json='': expected a file path*"),
    ],
)
def test_bad_option_values(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
