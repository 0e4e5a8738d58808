"""Region keys: every region of a test has a name of its own in every output."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem.metrics import region_keys, region_name
from pytest_cgmem.reports.text import section, summary
from pytest_cgmem.results import exporters, runfile
from pytest_cgmem.results.baseline import Baseline
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord
from pytest_cgmem.units import Tolerance

MiB = 2**20


def test_unlabelled_and_repeated_labels_get_their_own_keys() -> None:
    labels = ["call", None, "load", "load", None, "load#2", "call"]
    assert region_keys(labels) == (
        "call",
        "region",
        "load",
        "load#3",  # load#2 is another region's own label
        "region#2",
        "load#2",
        "call#2",
    )
    assert region_name("t.py::a", "call") == "t.py::a"
    assert region_name("t.py::a", None) == "t.py::a [region]"  # never the call region's name
    assert region_name("t.py::a", "load#3", 1) == "t.py::a [load#3] cuda:1"


@given(st.lists(st.none() | st.sampled_from(["call", "a", "a#2", "a#3", "region", "b"])))
def test_keys_are_unique_deterministic_and_keep_first_labels(labels: list[str | None]) -> None:
    keys = region_keys(labels)
    assert len(keys) == len(labels) == len(set(keys))
    assert keys == region_keys(list(labels))
    first: dict[str, int] = {}
    for i, label in enumerate(labels):
        first.setdefault(label or "region", i)
    for label, i in first.items():
        assert keys[i] == label  # the first region with a label keeps it


def regions() -> tuple[RegionResult, ...]:
    def device(peak: int) -> DeviceFigures:
        return DeviceFigures(0, peak=peak * MiB, reserved=None, leak=0)

    return (
        RegionResult("call", (device(1),), 0.0),
        RegionResult(None, (device(2),), 0.0),
        RegionResult("step", (device(3),), 0.0),
        RegionResult("step", (device(4),), 0.0),
    )


def document() -> dict[str, object]:
    record = TestRecord("t.py::test_a", "passed", regions())
    return runfile.build_run([record], runfile.base_machine(), None)


def test_gab_names_are_unique_and_extra_is_lines() -> None:
    entries = exporters.gab_entries(document())
    peaks = {e["name"]: e["value"] for e in entries if e["name"].endswith(" - peak")}
    assert peaks == {
        "t.py::test_a - peak": 1.0,
        "t.py::test_a [region] - peak": 2.0,
        "t.py::test_a [step] - peak": 3.0,
        "t.py::test_a [step#2] - peak": 4.0,
    }
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names))
    assert entries[0]["extra"].split("\n") == [
        "GPU: no GPU",
        "torch: None",
        "CUDA: None",
        "outcome: passed",
    ]


def test_gab_numbers_names_that_would_still_repeat() -> None:
    seen: set[str] = set()
    assert [exporters.unique("a - peak", seen) for _ in range(3)] == [
        "a - peak",
        "a - peak #2",
        "a - peak #3",
    ]


def test_junit_and_extra_info_keys_are_unique() -> None:
    props = dict(exporters.junit_properties(regions()))
    assert {k: v for k, v in props.items() if k.endswith(".peak")} == {
        "cgmem.call.peak": MiB,
        "cgmem.region.peak": 2 * MiB,
        "cgmem.step.peak": 3 * MiB,
        "cgmem.step#2.peak": 4 * MiB,
    }
    assert "cgmem.call.reserved" not in props  # unknown: left out
    extra = exporters.benchmark_figures(regions())
    assert {k: v["peak"] for k, v in extra.items()} == {
        "call": MiB,
        "region": 2 * MiB,
        "step": 3 * MiB,
        "step#2": 4 * MiB,
    }


def test_junit_and_extra_info_name_the_device_only_for_a_region_on_several() -> None:
    def device(index: int, peak: int) -> DeviceFigures:
        return DeviceFigures(index, peak=peak * MiB, leak=0)

    regions = (
        RegionResult("call", (device(1, 1),), 0.0),
        RegionResult("two", (device(0, 2), device(1, 3)), 0.0),
    )
    props = exporters.junit_properties(regions)
    assert [(name, value) for name, value in props if name.endswith(".peak")] == [
        ("cgmem.call.peak", MiB),
        ("cgmem.two.cuda0.peak", 2 * MiB),
        ("cgmem.two.cuda1.peak", 3 * MiB),
    ]
    figures = {"leak": 0}  # the graph figures not given: unknown, not exported
    assert exporters.benchmark_figures(regions) == {
        "call": {"peak": MiB, **figures},
        "two": {"cuda:0": {"peak": 2 * MiB, **figures}, "cuda:1": {"peak": 3 * MiB, **figures}},
    }


def test_baseline_keys_hold_each_region_against_its_own() -> None:
    doc = json.loads(json.dumps(document()))
    assert sorted(k[1] for k in runfile.figures(doc)) == ["call", "region", "step", "step#2"]
    findings = Baseline("b.json", doc).check("t.py::test_a", regions(), Tolerance(0, 0))
    assert findings.regressions == [] and findings.new == ()
    assert {c.label for c in findings.changes} == {"call", "region", "step", "step#2"}


def test_summary_and_section_name_each_region() -> None:
    lines = summary([TestRecord("t.py::test_a", "passed", regions())], 10)
    shown = [line.split()[0] + (" " + line.split()[1] if "[" in line else "") for line in lines[2:]]
    assert shown == [
        "t.py::test_a",
        "t.py::test_a [region]",
        "t.py::test_a [step]",
        "t.py::test_a [step#2]",
    ]
    assert "reserved" in lines[1] and "n/a" in lines[2]  # an unknown figure is n/a, not 0 B
    text = section(regions())
    assert [line.split(" on ")[0] for line in text.splitlines() if " on cuda" in line] == [
        "call",
        "region",
        "step",
        "step#2",
    ]


def test_junit_names_one_region_by_its_label_and_keep_few_names_in_memory() -> None:
    """A test's one region is named by its label alone (``region`` unlabelled), and the
    names kept for the next tests stay bounded where every test labels its own."""
    device = DeviceFigures(0, peak=MiB, leak=0)
    known = device.known()

    def expected(key: str) -> list[tuple[str, int | float]]:
        return [(f"cgmem.{key}.{metric}", value) for metric, value in known.items()]

    one = (RegionResult(None, (device,), 0.0),)
    assert exporters.junit_properties(one) == expected("region")
    for number in range(5000):
        label = f"step{number}"
        props = exporters.junit_properties((RegionResult(label, (device,), 0.0),))
        assert props == expected(label)
    assert len(exporters._PROPERTY_NAMES) <= 4096
    assert exporters.junit_properties(one) == expected("region")
