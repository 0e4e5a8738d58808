"""benchmarks/bench_external.py's reading of each side: outcomes, and leak verdicts."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_external.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_external", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_external"] = module
    spec.loader.exec_module(module)
    return module


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="t" name="test_pass" time="0.5"/>
<testcase classname="t" name="test_fail" time="0.25">
  <failure message="assert 1 == 2&#10;more">x</failure></testcase>
<testcase classname="t" name="test_teardown" time="0.5"/>
<testcase classname="t" name="test_teardown" time="0.125">
  <error message="teardown boom">x</error></testcase>
<testcase classname="t" name="test_skip" time="0">
  <skipped type="pytest.skip" message="no"/></testcase>
<testcase classname="t" name="test_xfail" time="0.1">
  <skipped type="pytest.xfail" message="why"/></testcase>
</testsuite></testsuites>
"""


def test_each_test_s_outcome_time_and_first_message_line(bench: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    outcomes, seconds, messages = bench.read_junit(path)
    assert outcomes == {
        "t::test_pass": "passed",
        "t::test_fail": "failure",
        "t::test_teardown": "error",
        "t::test_skip": "skipped",
        "t::test_xfail": "xfailed",
    }
    assert seconds["t::test_teardown"] == 0.625
    assert messages == {"t::test_fail": "assert 1 == 2", "t::test_teardown": "teardown boom"}
    assert bench.read_junit(tmp_path / "missing.xml") == ({}, {}, {})


def region(label: str, leak: int | None, error: str | None = None) -> dict[str, Any]:
    return {"label": label, "error": error, "devices": [{"index": 0, "leak": leak}]}


@pytest.mark.parametrize(
    ("test", "verdict"),
    [
        ({"violations": [{"metric": "leak"}], "regions": [region("call", 512)]}, "leak"),
        ({"violations": [{"metric": "peak"}], "regions": [region("call", 0)]}, "clean"),
        ({"violations": [], "regions": [region("call", None, "AssertionError")]}, "raised"),
        ({"violations": [], "regions": [region("call", 0), region("m", None, "E")]}, "clean"),
        ({"violations": [], "regions": [region("graphs", None)]}, "clean"),
    ],
    ids=["over its leak budget", "over another", "raised", "a block raised", "no call region"],
)
def test_the_cgmem_verdict_of_a_run_file_s_test(
    bench: ModuleType, test: dict[str, Any], verdict: str
) -> None:
    assert bench.cgmem_verdict(test) == verdict


def test_verdict_pairs_count_pytorch_s_warning_as_a_leak(bench: ModuleType) -> None:
    cgmem = bench.Run("cgmem", 1.0, 0, {}, {}, {}, verdicts={"a": "leak", "b": "clean"})
    pytorch = bench.Run(
        "pytorch", 1.0, 0, {}, {}, {}, verdicts={"a": "warning", "b": "leak", "c": "clean"}
    )
    pairs = bench.compare_verdicts(cgmem, pytorch)
    assert pairs == {"leak / warning": ["a"], "clean / leak": ["b"], "not measured / clean": ["c"]}
    assert [pair for pair in pairs if not bench.agrees(pair)] == ["clean / leak"]
    assert bench.agrees("raised / raised") and bench.agrees("clean / clean")
    assert not bench.agrees("leak / clean")
    judged = ["leak / warning", "clean / leak", "clean / clean"]
    assert all(bench.both_judged(pair) for pair in judged)
    unjudged = ["not measured / clean", "raised / raised", "clean / no CUDA", "leak / not run"]
    assert not any(bench.both_judged(pair) for pair in unjudged)


def test_the_costliest_tests_are_those_whose_time_grew_most(bench: ModuleType) -> None:
    plain = bench.Run("plain", 1.0, 0, {}, {"a": 0.5, "b": 0.1, "c": 0.2, "gone": 1.0}, {})
    cgmem = bench.Run("cgmem", 1.0, 0, {}, {"a": 0.6, "b": 0.4, "c": 0.2, "new": 9.0}, {})
    assert bench.most_costly(plain, cgmem, count=2) == [("b", 0.1, 0.4), ("a", 0.5, 0.6)]


def test_a_process_s_split_gains_its_time_outside_pytest(bench: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text('{"start": 1.0, "in_pytest": 4.0, "exit_handlers": 0.5, "full_collections": 2}')
    assert bench.read_split(path, 5.5) == {
        "start": 1.0,
        "in_pytest": 4.0,
        "exit_handlers": 0.5,
        "full_collections": 2,
        "outside_pytest": 1.0,
    }
    path.write_text("{")
    assert bench.read_split(path, 5.5) == {}
    assert bench.read_split(tmp_path / "missing.json", 5.5) == {}


def test_a_side_s_split_is_the_median_of_the_runs_that_wrote_one(bench: ModuleType) -> None:
    runs = [
        bench.Run("cgmem", 1.0, 0, {}, {}, {}, split={"phases": 1.0, "full_collections": 1}),
        bench.Run("cgmem", 1.0, 0, {}, {}, {}, split={"phases": 3.0, "full_collections": 4}),
        bench.Run("cgmem", 1.0, 0, {}, {}, {}),
    ]
    medians = bench.split_medians(runs)
    assert medians["phases"] == 2.0 and medians["full_collections"] == 2.5
    assert medians["collection"] == 0.0
    assert set(medians) == {key for key, _ in bench.SPLIT_ROWS}
    assert bench.split_medians(runs[2:]) == {}


def test_session_split_accounts_for_a_real_pytest_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(SCRIPT.parent), os.environ.get("PYTHONPATH")])),
    )
    out = pytester.path / "split.json"
    monkeypatch.setenv("SESSION_SPLIT_OUT", str(out))
    pytester.makepyfile(
        """
        import gc, time

        def test_sleeps():
            time.sleep(0.2)

        def test_collects():
            gc.collect()
        """
    )
    result = pytester.runpytest_subprocess("-p", "session_split", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    split = json.loads(out.read_text())
    assert 0.2 <= split["phases"] < split["in_pytest"]
    assert split["between_phases"] >= 0.0 and split["collection"] > 0.0
    assert split["full_collections"] >= 1
    parts = ("start", "collection", "phases", "between_phases", "end")
    assert sum(split[key] for key in parts) <= split["in_pytest"]
    assert split["exit_handlers"] >= 0.0


@pytest.mark.parametrize(
    ("nodeid", "test"),
    [
        ("t::test_a[rep3]", "t::test_a"),
        ("t::test_a[cuda-float32-rep12]", "t::test_a[cuda-float32]"),
        ("t::test_a[cuda]", "t::test_a[cuda]"),
        ("t::test_rep1", "t::test_rep1"),
        ("t::test_a[prep1]", "t::test_a[prep1]"),
    ],
)
def test_a_repetition_belongs_to_its_test(bench: ModuleType, nodeid: str, test: str) -> None:
    assert bench.repeated_test(nodeid) == test


def test_each_test_s_outcomes_are_tallied_over_its_repetitions(bench: ModuleType) -> None:
    done = bench.Run(
        "cgmem",
        1.0,
        0,
        {"t::a[rep0]": "passed", "t::a[rep1]": "failure", "t::a[rep2]": "failure"},
        {},
        {"t::a[rep1]": "boom", "t::a[rep2]": "boom"},
    )
    tallied = bench.outcomes_by_test(done)
    assert tallied == {"t::a": {"passed": 1, "failure": 2}}
    assert bench.tally(tallied["t::a"]) == "2 failure, 1 passed"
    assert bench.tally(None) == "not run"
    assert bench.messages_by_test(done) == {"t::a": "boom"}


def test_repeat_compares_how_often_each_side_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_visible="""
        import pytest

        @pytest.mark.parametrize("kind", ["x"])
        def test_fails_where_the_plugin_is(kind, request):
            assert not request.config.pluginmanager.hasplugin("cgmem"), "saw the plugin"

        def test_steady():
            pass
        """
    )
    out = pytester.path / "figures.json"
    result = pytester.run(
        sys.executable,
        str(SCRIPT),
        "--rootdir",
        str(pytester.path),
        "--repeat",
        "3",
        "--json",
        str(out),
        "--",
        "-p",
        "no:randomly",
        "test_visible.py",
    )
    result.stdout.fnmatch_lines(
        [
            "tests whose outcomes over 3 runs differ (plain -> cgmem): 1",
            "  test_visible::test_fails_where_the_plugin_is[[]x[]]: 3 passed -> 3 failure",
            "    AssertionError: saw the plugin*",
        ]
    )
    figures = json.loads(out.read_text())
    assert figures["repeat"] == 3
    assert figures["repeated"] == {
        "test_visible::test_fails_where_the_plugin_is[x]": {
            "plain": "3 passed",
            "cgmem": "3 failure",
        }
    }
