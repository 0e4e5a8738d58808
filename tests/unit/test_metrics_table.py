"""One table of metrics: a metric added to METRICS appears everywhere a metric belongs."""

from __future__ import annotations

import json

import pytest

from pytest_cgmem.checks.budgets import Budget, parse_budget
from pytest_cgmem.fixture import FigureRecorder
from pytest_cgmem.metrics import METRICS, Metric, metric_help, names
from pytest_cgmem.reports.text import section, summary
from pytest_cgmem.results import exporters, runfile, schema
from pytest_cgmem.results.baseline import Baseline
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord
from pytest_cgmem.units import Tolerance

MiB = 2**20


@pytest.fixture
def trial(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(
        METRICS,
        "trial",
        Metric("trial", "bytes", "a trial figure", summary=True, export=True, chart=True),
    )
    return "trial"


def record(value: int, nodeid: str = "t.py::test_a") -> TestRecord:
    region = RegionResult("call", (DeviceFigures(0, peak=MiB, trial=value),), 0.0)
    return TestRecord(nodeid, "passed", (region,))


def test_a_trial_metric_reaches_every_output(trial: str) -> None:
    assert trial in metric_help()
    assert parse_budget({trial: "1 MiB"}).limits == {trial: MiB}
    assert trial in names(baseline=True) and trial in names(summary=True)

    figures = DeviceFigures(0, trial=3 * MiB)
    assert figures.trial == 3 * MiB
    assert DeviceFigures.from_dict(json.loads(json.dumps(figures.to_dict()))) == figures
    (violation,) = RegionResult("call", (figures,), 0.0).check(Budget({trial: MiB}))
    assert violation.message.startswith("cgmem: trial 3.00 MiB exceeds budget 1.00 MiB")

    region = record(3 * MiB).regions
    assert any(line.lstrip().startswith("trial") for line in section(region).splitlines())
    assert trial in summary([record(3 * MiB)], 10)[1].split()
    assert ("cgmem.call.trial", 3 * MiB) in exporters.junit_properties(region)
    assert exporters.benchmark_figures(region)["call"][trial] == 3 * MiB

    document = runfile.build_run([record(3 * MiB)], runfile.base_machine(), None)
    assert document["tests"][0]["regions"][0]["devices"][0][trial] == 3 * MiB
    assert "t.py::test_a - trial" in [e["name"] for e in exporters.gab_entries(document)]
    device_schema = schema.build()["$defs"]["device"]
    assert trial in device_schema["required"] and trial in device_schema["properties"]

    baseline = Baseline("b.json", document)
    findings = baseline.check("t.py::test_a", record(9 * MiB).regions, Tolerance(0.05, 0))
    assert [c.metric for c in findings.regressions] == [trial]

    got: list[RegionResult] = []
    FigureRecorder(got.append)("server", trial="2 MiB")
    assert got[0].devices[0].trial == 2 * MiB and got[0].devices[0].peak is None


def test_a_trial_metric_reaches_the_html_report(trial: str) -> None:
    pytest.importorskip("matplotlib")
    from pytest_cgmem.reports.html import render

    older = runfile.build_run([record(MiB)], runfile.base_machine(), None, created="2026-01-01")
    newer = runfile.build_run([record(9 * MiB)], runfile.base_machine(), None, created="2026-01-02")
    page = render([("a.json", older), ("b.json", newer)])
    assert "<th>trial</th>" in page and "trial across runs" in page


def test_the_shipped_schema_is_the_built_one() -> None:
    assert schema.shipped() == schema.build(), (
        "run.schema.json is stale: python -m pytest_cgmem.results.schema "
        "> pytest_cgmem/run.schema.json"
    )


def test_the_schema_knows_every_record_field() -> None:
    device = DeviceFigures(0, peak=1)
    properties = schema.build()["$defs"]["device"]["properties"]
    assert set(device.to_dict()) == set(properties)
    region = RegionResult("call", (device,), 0.0)
    assert set(region.to_dict()) == set(schema.build()["$defs"]["region"]["properties"])
    test = TestRecord("t.py::a", "passed", (region,), judged=False).to_dict()
    assert set(test) == set(schema.build()["$defs"]["test"]["properties"])


def test_the_table_says_what_the_docs_say_of_each_metric() -> None:
    """docs/usage.md (kinds), docs/baselines.md (compared), the terminal summary's columns
    (docs/usage.md, docs/graphs.md), the report's history charts (docs/cli.md), and
    docs/json.md (the driver figures may be negative)."""
    kinds = {name: metric.kind for name, metric in METRICS.items()}
    assert kinds == {
        "peak": "bytes",
        "reserved": "bytes",
        "leak": "bytes",
        "device": "bytes",
        "non_torch": "bytes",
        "reserved_ratio": "ratio",
        "graph_pool": "bytes",
        "graphs": "count",
        "replays": "count",
    }
    compared = ("peak", "reserved", "leak", "device", "non_torch", "graph_pool", "graphs")
    assert names(baseline=True) == compared
    assert names(summary=True, graph=False) == ("peak", "reserved", "leak", "device", "non_torch")
    assert names(summary=True, graph=True) == ("graph_pool", "graphs", "replays")
    assert names(graph=True) == ("graph_pool", "graphs", "replays")
    assert names(export=True) == ("peak", "reserved", "leak", "device", "non_torch", "graph_pool")
    assert names(chart=True) == ("peak", "reserved", "device")
    assert names(signed=True) == ("device", "non_torch")
    assert {n: m.default for n, m in METRICS.items() if m.default is not None} == {
        "graph_pool": 0,
        "graphs": 0,
        "replays": 0,
    }


@pytest.mark.parametrize(
    ("name", "value", "figure"),
    [
        ("graphs", "3", 3),
        ("replays", 0, 0),
        ("reserved_ratio", 0, 0.0),
        ("reserved_ratio", "1.5", 1.5),
        ("device", "-1 MiB", -MiB),
        ("peak", "1 MiB", MiB),
    ],
)
def test_a_figure_given_to_cgmem_record_is_parsed_as_its_metric_reads_one(
    name: str, value: object, figure: float
) -> None:
    """docs/json.md: budget-style values, but ``device`` and ``non_torch`` may be negative
    and ``reserved_ratio`` may be 0."""
    parsed = METRICS[name].parse_figure(value)
    assert parsed == figure and type(parsed) is type(figure)


@pytest.mark.parametrize(
    ("name", "value"), [("reserved_ratio", 0), ("peak", "-1 MiB"), ("graphs", 1.5)]
)
def test_a_budget_is_never_negative_and_a_ratio_never_zero(name: str, value: object) -> None:
    with pytest.raises(ValueError):
        METRICS[name].parse(value)


@pytest.mark.parametrize(
    ("rank", "label", "ranked"),
    [(1, None, "rank1"), (1, "call", "rank1"), (1, "", "rank1"), (2, "load", "rank2/load")],
)
def test_a_rank_label_and_back(rank: int, label: str | None, ranked: str) -> None:
    from pytest_cgmem.metrics import rank_label, unranked_label

    assert rank_label(rank, label) == ranked
    assert unranked_label(rank, ranked) == (label if label not in ("call", "") else None)


@pytest.mark.parametrize("label", [None, "load", "rank2/load", "rank1x", "rank12/load"])
def test_a_label_of_no_rank_of_this_one_is_kept(label: str | None) -> None:
    from pytest_cgmem.metrics import unranked_label

    assert unranked_label(1, label) == label


@pytest.mark.parametrize(
    ("name", "value"), [("graphs", "1 MiB"), ("reserved_ratio", -1), ("peak", -1)]
)
def test_a_figure_given_to_cgmem_record_is_refused_as_its_metric_would(
    name: str, value: object
) -> None:
    with pytest.raises(ValueError):
        METRICS[name].parse_figure(value)
