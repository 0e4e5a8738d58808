"""Baselines: tolerances, verdicts, per-test checks and whole-run comparison."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem import BaselineRegression
from pytest_cgmem.results import runfile
from pytest_cgmem.results.baseline import (
    Baseline,
    change_table,
    compare_one,
    compare_runs,
    effective,
    parse_tolerance,
)
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.results.records import TestRecord as TestEntry
from pytest_cgmem.results.runfile import refreshed
from pytest_cgmem.units import CgmemUsageError, Tolerance

MiB = 2**20
DEFAULT = Tolerance(0.05, 2 * MiB)
KEY = ("t.py::test_a", "call", 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10%", {"rel": 0.1}),
        (" 2.5 % ", {"rel": 0.025}),
        ("4MiB", {"abs": 4 * MiB}),
        ("4 MiB", {"abs": 4 * MiB}),
        ("10% 4MiB", {"rel": 0.1, "abs": 4 * MiB}),
        ("4MiB, 10%", {"rel": 0.1, "abs": 4 * MiB}),
        ("0%", {"rel": 0.0}),
        (1024, {"abs": 1024}),
    ],
)
def test_parse_tolerance(value: object, expected: dict[str, Any]) -> None:
    assert parse_tolerance(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "fast", "10% 20%", "1MiB 2MiB", "10% 1MiB 2MiB", "-5%", 0.1, True, None, "5 parsecs"],
)
def test_parse_tolerance_rejects(value: object) -> None:
    with pytest.raises(CgmemUsageError):
        parse_tolerance(value)


@given(st.integers(0, 1000), st.integers(0, 2**40))
def test_parse_tolerance_reads_what_it_is_told(percent: int, size: int) -> None:
    assert parse_tolerance(f"{percent}% {size}B") == {"rel": percent / 100, "abs": size}


def test_effective_replaces_part_by_part() -> None:
    assert effective(DEFAULT, None) == DEFAULT
    assert effective(DEFAULT, {"rel": 0.2}) == Tolerance(0.2, 2 * MiB)
    assert effective(DEFAULT, {"abs": 0}) == Tolerance(0.05, 0)


@pytest.mark.parametrize(
    ("base", "new", "verdict"),
    [
        (100 * MiB, 105 * MiB, "same"),  # exactly 5%
        (100 * MiB, 105 * MiB + 1, "regression"),
        (10 * MiB, 12 * MiB, "same"),  # 20% but within 2 MiB
        (10 * MiB, 12 * MiB + 1, "regression"),
        (0, 2 * MiB, "same"),
        (0, 2 * MiB + 1, "regression"),
        (100 * MiB, 95 * MiB, "same"),
        (100 * MiB, 95 * MiB - 1, "improvement"),
    ],
)
def test_verdict_boundaries(base: int, new: int, verdict: str) -> None:
    (change,) = compare_one(KEY, {"peak": base}, {"peak": new}, DEFAULT)
    assert change.verdict == verdict


@pytest.mark.parametrize(
    ("tolerance", "base", "new", "verdict"),
    [
        ("57% 0B", 100, 43, "same"),  # 0.57 * 100 is 56.99999999999999 as floats
        ("57% 0B", 100, 42, "improvement"),
        ("0% 0B", 2**53 + 1, 2**53 + 1, "same"),  # float(2**53 + 1) is 2**53
        ("0% 0B", 2**63 - 1, 2**63 - 1, "same"),
        ("0% 0B", 2**62 + 1, 2**62 + 2, "regression"),
        ("0% 0B", -(2**62) + 1, -(2**62) + 2, "regression"),  # device may be negative
        ("50% 0B", 2**62, 2**62 + 2**61, "same"),
        ("50% 0B", 2**62, 2**62 + 2**61 + 1, "regression"),
    ],
)
def test_verdict_is_exact_at_the_boundary(
    tolerance: str, base: int, new: int, verdict: str
) -> None:
    tol = effective(DEFAULT, parse_tolerance(tolerance))
    (change,) = compare_one(KEY, {"device": base}, {"device": new}, tol)
    assert change.verdict == verdict


@given(
    st.integers(0, 10000),
    st.integers(-(2**62) + 1, 2**62 - 1),
    st.integers(0, 2**40),
    st.integers(-(2**20), 2**20),
)
def test_verdict_holds_the_written_percentage_exactly(
    hundredths: int, base: int, size: int, off: int
) -> None:
    """``new`` regresses exactly when ``new - base > max(p% of |base|, abs)``, with the
    percentage as written (``"12.34%"``), however large the figures."""
    text = f"{hundredths // 100}.{hundredths % 100:02d}% {size}B"
    tol = effective(DEFAULT, parse_tolerance(text))
    slack = max(Fraction(hundredths, 10000) * abs(base), Fraction(size))
    for new in (base + int(slack) + off, base - int(slack) + off):
        if not -(2**63) < new < 2**63:
            continue
        (change,) = compare_one(KEY, {"device": base}, {"device": new}, tol)
        moved = new - base
        expected = "regression" if moved > slack else "improvement" if moved < -slack else "same"
        assert change.verdict == expected, (text, base, new)


def test_absolute_tolerance_is_for_bytes_only() -> None:
    changes = compare_one(KEY, {"graphs": 3, "leak": 0}, {"graphs": 4, "leak": 1024}, DEFAULT)
    assert {c.metric: c.verdict for c in changes} == {"graphs": "regression", "leak": "same"}


def test_ratio_and_replays_are_not_compared() -> None:
    changes = compare_one(
        KEY, {"reserved_ratio": 1.0, "replays": 1}, {"reserved_ratio": 9.0, "replays": 99}, DEFAULT
    )
    assert changes == []


def test_message() -> None:
    (change,) = compare_one(KEY, {"peak": 1024 * MiB}, {"peak": 1536 * MiB}, DEFAULT)
    assert change.message == (
        "cgmem: peak 1.50 GiB regressed from baseline 1.00 GiB (+512.00 MiB, +50.0%; "
        "tolerance 5% or 2.00 MiB) on cuda:0"
    )
    error = BaselineRegression([change], "base.json")
    assert isinstance(error, AssertionError)
    assert str(error).splitlines() == [change.message, "cgmem: baseline base.json"]


def figures(index: int = 0, **over: Any) -> DeviceFigures:
    values: dict[str, Any] = dict(
        index=index,
        peak=100 * MiB,
        reserved=100 * MiB,
        leak=0,
        device=None,
        non_torch=None,
        reserved_ratio=1.0,
        graph_pool=0,  # a measured region's: no graph captured
        graphs=0,
        replays=0,
    )
    values.update(over)
    return DeviceFigures(**values)


def run(*tests: tuple[str, tuple[RegionResult, ...]], **extra: Any) -> dict[str, Any]:
    entries = [TestEntry(n, "passed", r, **extra) for n, r in tests]
    return runfile.build_run(entries, runfile.base_machine(), None)


def test_baseline_check_per_test() -> None:
    base = run(("t.py::a", (RegionResult("call", (figures(),), 0.0),)))
    baseline = Baseline("b.json", base)
    grown = (RegionResult("call", (figures(peak=200 * MiB, reserved=50 * MiB),), 0.0),)
    findings = baseline.check("t.py::a", grown, DEFAULT)
    assert [c.metric for c in findings.regressions] == ["peak"]
    assert [c.metric for c in findings.improvements] == ["reserved"]
    assert findings.new == ()
    data = findings.to_dict()
    assert data["compared"] == 5  # peak reserved leak graph_pool graphs
    assert data["regressions"][0]["baseline"] == 100 * MiB
    new = baseline.check("t.py::b", grown, DEFAULT)
    assert new.new == ("t.py::b",) and new.changes == ()
    labelled = baseline.check("t.py::a", (RegionResult("decode", (figures(),), 0.0),), DEFAULT)
    assert labelled.new == ("t.py::a [decode]",)


def test_recorded_regions_compare_only_given_figures() -> None:
    given_peak = {"recorded": ["peak"]}
    base = run(("t.py::a", (RegionResult("s", (figures(reserved=0),), 0.0, extra=given_peak),)))
    new = (RegionResult("s", (figures(reserved=10**12),), 0.0, extra=given_peak),)
    findings = Baseline("b.json", base).check("t.py::a", new, DEFAULT)
    assert [c.metric for c in findings.changes] == ["peak"]


def test_compare_runs_uses_each_tests_tolerance() -> None:
    base = run(
        ("t.py::a", (RegionResult("call", (figures(),), 0.0),)),
        ("t.py::gone", (RegionResult("call", (figures(),), 0.0),)),
    )
    grown = (RegionResult("call", (figures(peak=115 * MiB),), 0.0),)
    strict = compare_runs(base, run(("t.py::a", grown), ("t.py::new", grown)), DEFAULT)
    assert [c.metric for c in strict.regressions] == ["peak"]
    assert strict.new == ("t.py::new",)
    assert strict.missing == ("t.py::gone",)
    lenient = compare_runs(base, run(("t.py::a", grown), tolerance={"rel": 0.2}), DEFAULT)
    assert lenient.regressions == []


def test_compare_runs_names_the_device_of_a_region_on_several() -> None:
    two = (RegionResult("call", (figures(0), figures(1)), 0.0),)
    one = (RegionResult("call", (figures(0),), 0.0),)
    base = run(("t.py::gone", two), ("t.py::kept", one))
    compared = compare_runs(base, run(("t.py::kept", one), ("t.py::new", two)), DEFAULT)
    assert compared.new == ("t.py::new cuda:0", "t.py::new cuda:1")
    assert compared.missing == ("t.py::gone cuda:0", "t.py::gone cuda:1")


def test_change_table() -> None:
    changes = compare_one(
        KEY, {"peak": 100 * MiB, "leak": 0}, {"peak": 200 * MiB, "leak": 0}, DEFAULT
    )
    lines = change_table(changes)
    assert lines[0].split() == ["test", "metric", "baseline", "new", "change", "verdict"]
    assert lines[1].split()[0] == "t.py::test_a"
    assert lines[1].endswith("REGRESSION")
    assert lines[2].endswith("same")


def _entry(nodeid: str, outcome: str, peak: int) -> dict[str, object]:
    return {"nodeid": nodeid, "outcome": outcome, "peak": peak}


@pytest.mark.parametrize(
    ("outcome", "kept_from_earlier"),
    [("passed", False), ("failed", True), ("xfailed", True), ("xpassed", True), ("skipped", True)],
)
def test_refreshed_takes_a_test_s_new_entry_only_when_it_passed(
    outcome: str, kept_from_earlier: bool
) -> None:
    earlier = [_entry("t::a", "passed", 1), _entry("t::gone", "passed", 2)]
    tests, kept = refreshed([_entry("t::a", outcome, 9), _entry("t::new", "failed", 3)], earlier)
    by_id = {t["nodeid"]: t["peak"] for t in tests}
    assert by_id == {"t::a": 1 if kept_from_earlier else 9, "t::new": 3, "t::gone": 2}
    assert kept == (2 if kept_from_earlier else 1)


def test_refreshed_over_nothing_is_the_run_itself() -> None:
    measured = [_entry("t::a", "failed", 9)]
    assert refreshed(measured, []) == (measured, 0)


_COMPARED = ("peak", "reserved", "leak", "device", "non_torch", "graph_pool", "graphs")
_SIGNED = ("device", "non_torch")


@st.composite
def _devices(draw: st.DrawFn) -> tuple[DeviceFigures, ...]:
    indexes = draw(st.lists(st.integers(0, 2), min_size=1, max_size=2, unique=True))
    devices = []
    for index in indexes:
        values = {
            m: draw(
                st.none()
                | st.integers(-(2**62) + 1 if m in _SIGNED else 0, 2**62 - 1)
                | st.sampled_from([0, 2 * MiB, 100 * MiB, 105 * MiB])
            )
            for m in _COMPARED
        }
        devices.append(DeviceFigures(index=index, reserved_ratio=None, replays=None, **values))
    return tuple(devices)


_regions = st.lists(
    st.builds(
        lambda label, devices: RegionResult(label, devices, 0.0),
        st.sampled_from([None, "call", "s", "s#2", "region"]),
        _devices(),
    ),
    max_size=3,
)
_tests = st.dictionaries(st.sampled_from(["t.py::a", "t.py::b", "t.py::c"]), _regions, max_size=3)
_tolerances = st.none() | st.builds(
    parse_tolerance, st.sampled_from(["0%", "0% 0B", "10%", "57% 1MiB", "1B", "33.3% 0B"])
)


@given(_tests, _tests, st.dictionaries(st.sampled_from(["t.py::a", "t.py::b"]), _tolerances))
def test_the_in_run_check_and_compare_agree(
    base_tests: dict[str, list[RegionResult]],
    new_tests: dict[str, list[RegionResult]],
    marks: dict[str, dict[str, Any] | None],
) -> None:
    """Every verdict and every new region of ``--cgmem-baseline`` (each test checked as it
    ends) is what ``cgmem compare`` finds in the run files of the same two runs."""
    base = runfile.build_run(
        [TestEntry(n, "passed", tuple(r)) for n, r in base_tests.items() if r],
        runfile.base_machine(),
        None,
    )
    entries = [
        TestEntry(n, "passed", tuple(r), tolerance=marks.get(n)) for n, r in new_tests.items() if r
    ]
    new = runfile.build_run(entries, runfile.base_machine(), None)
    baseline = Baseline("b.json", base)
    in_run = [baseline.check(e.nodeid, e.regions, effective(DEFAULT, e.tolerance)) for e in entries]
    compared = compare_runs(base, new, DEFAULT)

    def verdicts(changes: Any) -> list[tuple[Any, ...]]:
        return sorted((c.nodeid, c.label, c.index, c.metric, c.verdict) for c in changes)

    assert verdicts(c for f in in_run for c in f.changes) == verdicts(compared.changes)
    assert sorted(n for f in in_run for n in f.new) == sorted(compared.new)


@pytest.mark.parametrize("value", ["0.05", ".5", "10% 0.5", "1.5"])
def test_parse_tolerance_refuses_a_bare_fraction(value: str) -> None:
    """``"0.05"`` is no tolerance (5%? 0.05%?), nor 0 bytes, which it would round to."""
    with pytest.raises(CgmemUsageError, match="expected a percentage such as '5%'"):
        parse_tolerance(value)


@pytest.mark.parametrize(
    ("base", "value", "verdict", "text"),
    [
        (2 * MiB, MiB, "improvement", "-1.00 MiB, -50.0%"),
        (MiB, MiB, "same", "+0 B, +0.0%"),
        (MiB, 2 * MiB, "regression", "+1.00 MiB, +100.0%"),
    ],
    ids=["shrank", "held", "grew"],
)
def test_change_text_signs_the_change(base: int, value: int, verdict: str, text: str) -> None:
    (change,) = compare_one(KEY, {"peak": base}, {"peak": value}, Tolerance(0.05, 0))
    assert (change.verdict, change.change_text()) == (verdict, text)


def test_compare_runs_leaves_out_a_test_kept_and_not_judged() -> None:
    """A test whose figures were kept but not judged (``judged: false``) is compared with
    nothing and missing from nothing, however its figures moved."""
    call = (RegionResult("call", (figures(),), 0.0),)
    grown = (RegionResult("call", (figures(peak=500 * MiB),), 0.0),)
    base = run(("t.py::a", call), ("t.py::off", call))
    new = run(("t.py::a", call), ("t.py::off", grown))
    new["tests"][1]["judged"] = False
    compared = compare_runs(base, new, DEFAULT)
    assert {c.nodeid for c in compared.changes} == {"t.py::a"}
    assert (compared.regressions, compared.new, compared.missing) == ([], (), ())
