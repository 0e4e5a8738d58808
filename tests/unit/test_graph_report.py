"""The summary shows the graph columns when a measured region captured or replayed graphs."""

from __future__ import annotations

import pytest

from pytest_cgmem.checks.budgets import parse_budget
from pytest_cgmem.reports.text import section, summary
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.results.records import TestRecord as Record

MiB = 2**20


def _record(name: str, graphs: int = 0, replays: int = 0, pool: int = 0) -> Record:
    figures = DeviceFigures(
        index=0,
        peak=64 * MiB,
        reserved=64 * MiB,
        leak=0,
        device=66 * MiB,
        non_torch=2 * MiB,
        reserved_ratio=1.0,
        graph_pool=pool,
        graphs=graphs,
        replays=replays,
    )
    return Record(name, "passed", (RegionResult("call", (figures,), 0.01),))


def test_no_graph_columns_without_graphs():
    lines = summary([_record("t.py::a"), _record("t.py::b")], 10)
    assert "graph_pool" not in lines[1]


@pytest.mark.parametrize(("graphs", "replays"), [(3, 0), (0, 5), (51, 51)])
def test_graph_columns_when_a_region_used_graphs(graphs, replays):
    lines = summary([_record("t.py::a"), _record("t.py::g", graphs, replays, 300 * MiB)], 10)
    header = lines[1].split()
    assert header[-3:] == ["graph_pool", "graphs", "replays"]
    row = next(line for line in lines if line.startswith("t.py::g"))
    assert row.split()[-4:] == ["300.00", "MiB", str(graphs), str(replays)]


def test_section_lists_graph_budgets():
    text = section(
        [_record("t.py::g", 2, 1, 40 * MiB).regions[0]],
        parse_budget({"graph_pool": "32 MiB", "graphs": 2}),
    )
    assert "graph_pool" in text and "40.00 MiB" in text and "OVER" in text
    graphs_row = next(line for line in text.splitlines() if line.strip().startswith("graphs"))
    assert graphs_row.split()[-1] == "ok"


@pytest.mark.parametrize(
    ("checked", "annotated"),
    [(None, {"call", "inner"}), (("call",), {"call"}), (("inner",), {"inner"}), ((), set())],
)
def test_section_shows_a_budget_only_on_the_regions_held_to_it(checked, annotated):
    call = _record("t.py::a").regions[0]
    inner = RegionResult("inner", call.devices, 0.01)
    text = section([call, inner], parse_budget({"peak": "32 MiB"}), checked)
    assert [line.split(" on ")[0] for line in text.splitlines() if " on cuda:" in line] == [
        "call",
        "inner",
    ]
    peaks = [line for line in text.splitlines() if line.lstrip().startswith("peak")]
    assert [("budget" in line) for line in peaks] == [
        name in annotated for name in ("call", "inner")
    ]
    assert text.count("OVER") == len(annotated)
