"""Graph figures in every output (pure): a log's or a sweep's region in the run file, the
github-action-benchmark series, the baseline's size findings, ``cgmem compare`` and the
report's per-size charts. Literal documents; the figures themselves are measured in
tests/gpu/test_graph_outputs.py."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_cgmem.cli import main
from pytest_cgmem.reports.text import baseline_summary
from pytest_cgmem.results import graphfigures, runfile
from pytest_cgmem.results.baseline import Baseline, compare_runs
from pytest_cgmem.results.exporters import gab_entries
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord
from pytest_cgmem.units import Tolerance

MiB = 2**20
DEFAULT = Tolerance(0.05, 2 * MiB)
NODE = "t.py::test_sweep"

SWEEP = {
    "sizes": [256, 128, 64],
    "pool": [0, 7],
    "pool_bytes": 24 * MiB,
    "driver_total": 26 * MiB,
    "per_size": [
        {"size": 256, "bytes": 22 * MiB, "driver": 24 * MiB, "allocated": MiB, "seconds": 0.01,
         "number": 1},
        {"size": 128, "bytes": 0, "driver": 0, "allocated": MiB, "seconds": 0.01, "number": 2},
        {"size": 64, "bytes": 2 * MiB, "driver": None, "allocated": MiB, "seconds": 0.01,
         "number": 3},
    ],
    "seconds": 0.03,
    "warmup_seconds": 0.1,
    "tracking_seconds": 0.001,
}  # fmt: skip

LOG = {
    "mechanism": "CUDAGraph method wrappers",
    "captures": [
        {"number": 1, "device": 0, "pool": [0, 1], "allocated": MiB, "reserved": 8 * MiB,
         "driver": 9 * MiB, "seconds": 0.01, "label": 16, "replays": 2},
        {"number": 2, "device": 0, "pool": [0, 1], "allocated": MiB, "reserved": MiB,
         "driver": MiB, "seconds": 0.01, "label": 16, "replays": 0},
        {"number": 3, "device": 0, "pool": [0, 1], "allocated": MiB, "reserved": 0,
         "driver": None, "seconds": 0.01, "label": None, "replays": 0},
        {"number": 4, "device": 0, "pool": [0, 1], "allocated": 0, "reserved": 0,
         "driver": 0, "seconds": 0.01, "label": "decode", "replays": 1},
    ],
    "replays": 3,
    "replays_by_device": [{"device": 0, "replays": 3}],
    "pools": [{"device": 0, "pool": [0, 1], "bytes": 10 * MiB}],
    "held_at_exit": [],
    "pools_unavailable": None,
    "seconds": 0.5,
}  # fmt: skip


def sweep_region(sweep: dict[str, Any] = SWEEP, label: str = "capture_sweep") -> RegionResult:
    figures = graphfigures.from_sweep(sweep, 0)
    device = graphfigures.graph_device(0, sweep["pool_bytes"], len(sweep["per_size"]), 0)
    return graphfigures.region(label, [device], 0.13, figures)


def run(*regions: RegionResult, nodeid: str = NODE) -> dict[str, Any]:
    record = TestRecord(nodeid, "passed", regions)
    doc = runfile.build_run([record], runfile.base_machine(), None)
    runfile.validate(doc)  # the schema takes the graph figures
    return json.loads(json.dumps(doc))  # as a reader sees it


def without(sweep: dict[str, Any], size: int, pool_bytes: int) -> dict[str, Any]:
    """The sweep with one size gone and the pool at ``pool_bytes``."""
    changed = copy.deepcopy(sweep)
    changed["sizes"] = [s for s in changed["sizes"] if s != size]
    changed["per_size"] = [e for e in changed["per_size"] if e["size"] != size]
    changed["pool_bytes"] = pool_bytes
    return changed


def test_sweep_figures_carry_pool_and_per_size_bytes() -> None:
    figures = graphfigures.from_sweep(SWEEP, 0)
    assert figures["source"] == "capture_sweep"
    assert figures["captures"] == 3 and figures["replays"] == 0
    assert figures["pools"] == [{"device": 0, "pool": [0, 7], "bytes": 24 * MiB}]
    assert figures["sizes"] == [
        {"size": 256, "bytes": 22 * MiB, "driver": 24 * MiB, "captures": 1},
        {"size": 128, "bytes": 0, "driver": 0, "captures": 1},
        {"size": 64, "bytes": 2 * MiB, "driver": None, "captures": 1},
    ]
    assert figures["driver_total"] == 26 * MiB


def test_log_figures_size_by_label_and_sum_repeats() -> None:
    figures = graphfigures.from_log(LOG)
    assert figures["source"] == "graphs"
    assert figures["captures"] == 4 and figures["replays"] == 3
    assert figures["pools"] == [{"device": 0, "pool": [0, 1], "bytes": 10 * MiB}]
    # two captures labelled 16 are summed; an unlabelled capture is counted, not sized
    assert figures["sizes"] == [
        {"size": 16, "bytes": 9 * MiB, "driver": 10 * MiB, "captures": 2},
        {"size": "decode", "bytes": 0, "driver": 0, "captures": 1},
    ]
    assert figures["mechanism"] == "CUDAGraph method wrappers"


@pytest.mark.parametrize("label", [True, False, ""], ids=["true", "false", "empty"])
def test_log_counts_but_does_not_size_a_bool_or_empty_label(label: object) -> None:
    log: dict[str, Any] = copy.deepcopy(LOG)
    log["captures"][2]["label"] = label
    figures = graphfigures.from_log(log)
    assert figures["captures"] == 4
    assert [row["size"] for row in figures["sizes"]] == [16, "decode"]


@pytest.mark.parametrize("unknown", [0, 1], ids=["first", "second"])
def test_a_size_sum_is_unknown_when_one_of_its_captures_is(unknown: int) -> None:
    log: dict[str, Any] = copy.deepcopy(LOG)
    log["captures"][unknown]["reserved"] = None
    log["captures"][unknown]["driver"] = None
    sixteen = graphfigures.from_log(log)["sizes"][0]
    assert sixteen == {"size": 16, "bytes": None, "driver": None, "captures": 2}


def test_log_figures_say_why_pools_were_unavailable_and_count_no_replays_as_0() -> None:
    why = "cgmem: pool bytes are unavailable under backend:cudaMallocAsync"
    figures = graphfigures.from_log(LOG | {"replays": 0, "pools_unavailable": why})
    assert figures["replays"] == 0
    assert figures["pools_unavailable"] == why


def test_graph_region_knows_only_graph_metrics() -> None:
    region = sweep_region()
    (device,) = region.devices
    assert device.known() == {"graph_pool": 24 * MiB, "graphs": 3, "replays": 0}
    assert device.device_source == "graphs"
    doc = run(region)
    (entry,) = doc["tests"]
    (written,) = entry["regions"]
    assert written["label"] == "capture_sweep"
    assert written["devices"][0]["peak"] is None
    sizes = graphfigures.sizes_of(written["extra"])
    assert {s: r["bytes"] for s, r in sizes.items()} == {256: 22 * MiB, 128: 0, 64: 2 * MiB}
    assert RegionResult.from_dict(written) == region


def test_two_sweeps_get_numbered_keys() -> None:
    doc = run(sweep_region(), sweep_region())
    assert list(graphfigures.size_table(doc)) == [
        (NODE, "capture_sweep"),
        (NODE, "capture_sweep#2"),
    ]


def test_a_log_without_labelled_captures_has_figures_but_no_sizes() -> None:
    log: dict[str, Any] = copy.deepcopy(LOG)
    for capture in log["captures"]:
        capture["label"] = None
    figures = graphfigures.from_log(log)
    assert figures["captures"] == 4 and figures["sizes"] == []
    device = graphfigures.graph_device(0, 10 * MiB, 4, 3)
    doc = run(graphfigures.region("graphs", [device], 0.5, figures))
    assert graphfigures.size_table(doc) == {(NODE, "graphs"): {}}
    assert graphfigures.size_series([doc, doc]) == {}


@pytest.mark.parametrize("extra", [None, {}, {"rank": 1}], ids=["none", "empty", "other"])
def test_a_region_without_graph_figures_has_no_sizes(extra: dict[str, Any] | None) -> None:
    assert graphfigures.sizes_of(extra) == {}
    assert not graphfigures.has_figures(extra)


def test_gab_has_the_pool_and_per_size_series_only_when_asked() -> None:
    doc = run(sweep_region())
    plain = {e["name"]: e["value"] for e in gab_entries(doc)}
    assert plain == {f"{NODE} [capture_sweep] - graph_pool": 24.0}
    sized = {e["name"]: e["value"] for e in gab_entries(doc, sizes=True)}
    assert sized == {
        f"{NODE} [capture_sweep] - graph_pool": 24.0,
        f"{NODE} [capture_sweep] size 256 - graph_pool": 22.0,
        f"{NODE} [capture_sweep] size 256 - driver": 24.0,
        f"{NODE} [capture_sweep] size 128 - graph_pool": 0.0,
        f"{NODE} [capture_sweep] size 128 - driver": 0.0,
        f"{NODE} [capture_sweep] size 64 - graph_pool": 2.0,  # its driver figure is unknown
    }
    extra = next(e["extra"] for e in gab_entries(doc, sizes=True) if "size 256" in e["name"])
    assert extra.split("\n")[-1] == "captures: 1"


def test_gab_size_series_are_entries_like_the_others() -> None:
    size = {"size": 256, "bytes": 1234567, "driver": MiB + 1536, "allocated": MiB,
            "seconds": 0.01, "number": 1}  # fmt: skip
    doc = run(sweep_region({**SWEEP, "sizes": [256], "per_size": [size]}))
    doc["machine"].update(gpus=["NVIDIA H200", "NVIDIA H100"], torch="2.11.0+cu130", cuda="13.0")
    entries = {e["name"]: e for e in gab_entries(doc, sizes=True)}
    lines = [
        "GPU: NVIDIA H200, NVIDIA H100",
        "torch: 2.11.0+cu130",
        "CUDA: 13.0",
        "outcome: passed",
    ]
    assert entries == {
        f"{NODE} [capture_sweep] size 256 - graph_pool": {
            "name": f"{NODE} [capture_sweep] size 256 - graph_pool",
            "unit": "MiB",
            "value": 1.177375,
            "extra": "\n".join([*lines, "captures: 1"]),
        },
        f"{NODE} [capture_sweep] size 256 - driver": {
            "name": f"{NODE} [capture_sweep] size 256 - driver",
            "unit": "MiB",
            "value": 1.001465,
            "extra": "\n".join([*lines, "captures: 1"]),
        },
        f"{NODE} [capture_sweep] - graph_pool": {
            "name": f"{NODE} [capture_sweep] - graph_pool",
            "unit": "MiB",
            "value": 24.0,
            "extra": "\n".join(lines),
        },
    }


def test_gab_size_series_of_node_ids_that_print_alike_are_numbered() -> None:
    records = [
        TestRecord(n, "passed", (sweep_region(),)) for n in ("t\udc80.py::t", "t\\x80.py::t")
    ]
    doc = runfile.build_run(records, runfile.base_machine(), None)
    names = [
        e["name"] for e in gab_entries(doc, sizes=True) if "size 256 - graph_pool" in e["name"]
    ]
    assert names == [
        "t\\x80.py::t [capture_sweep] size 256 - graph_pool",
        "t\\x80.py::t [capture_sweep] size 256 - graph_pool #2",
    ]


def test_graphs_only_log_region_is_exported() -> None:
    figures = graphfigures.from_log(LOG)
    device = graphfigures.graph_device(0, 10 * MiB, 4, 3)
    doc = run(graphfigures.region("graphs", [device], 0.5, figures), nodeid="t.py::test_log")
    names = [e["name"] for e in gab_entries(doc, sizes=True)]
    assert names == [
        "t.py::test_log [graphs] size 16 - graph_pool",
        "t.py::test_log [graphs] size 16 - driver",
        "t.py::test_log [graphs] size decode - graph_pool",
        "t.py::test_log [graphs] size decode - driver",
        "t.py::test_log [graphs] - graph_pool",
    ]


def test_gab_sizes_leave_a_measured_region_as_it_is() -> None:
    measured = RegionResult("call", (DeviceFigures(0, peak=3 * MiB),), 0.1)
    doc = run(measured, sweep_region())
    names = {e["name"] for e in gab_entries(doc, sizes=True)}
    assert names == {e["name"] for e in gab_entries(doc)} | {
        f"{NODE} [capture_sweep] size 256 - graph_pool",
        f"{NODE} [capture_sweep] size 256 - driver",
        f"{NODE} [capture_sweep] size 128 - graph_pool",
        f"{NODE} [capture_sweep] size 128 - driver",
        f"{NODE} [capture_sweep] size 64 - graph_pool",
    }
    assert f"{NODE} - peak" in names


def test_baseline_finds_pool_growth_and_size_changes() -> None:
    base = run(sweep_region())
    grown = without(SWEEP, 128, 40 * MiB)
    grown["per_size"].append(
        {"size": 512, "bytes": 16 * MiB, "driver": None, "allocated": 0, "seconds": 0.0,
         "number": 4}
    )  # fmt: skip
    region = sweep_region(grown)
    findings = Baseline("base.json", base).check(NODE, [region], DEFAULT)
    assert [(c.metric, c.baseline, c.value) for c in findings.regressions] == [
        ("graph_pool", 24 * MiB, 40 * MiB)
    ]
    assert [(s.size, s.change, s.bytes) for s in findings.sizes] == [
        (128, "vanished", 0),
        (512, "appeared", 16 * MiB),
    ]
    data = findings.to_dict()
    assert (
        data["sizes"][0]["message"] == "cgmem: capture size 128 (0 B) vanished from 'capture_sweep'"
    )
    record = TestRecord(NODE, "failed", (region,), baseline=data)
    lines = baseline_summary("base.json", [record], {NODE})
    assert f"  size vanished {NODE}: capture size 128 (0 B) vanished from 'capture_sweep'" in lines
    assert (
        f"  size appeared {NODE}: capture size 512 (16.00 MiB) appeared in 'capture_sweep'" in lines
    )
    runfile.validate(run(region) | {"tests": [TestRecord.from_dict(record.to_dict()).to_dict()]})


def test_baseline_of_an_earlier_version_without_graph_regions_says_new() -> None:
    base = run(RegionResult("call", (graphfigures.graph_device(0, 0, 0, 0),), 0.0))
    findings = Baseline("base.json", base).check(NODE, [sweep_region()], DEFAULT)
    assert findings.sizes == () and findings.new == (f"{NODE} [capture_sweep]",)


def test_a_size_change_of_unknown_bytes_names_no_bytes() -> None:
    changes = graphfigures.size_changes(
        NODE, "capture_sweep", {64: {"bytes": None}}, {"decode": {"bytes": None}}
    )
    assert [c.message for c in changes] == [
        "cgmem: capture size 64 vanished from 'capture_sweep'",
        "cgmem: capture size decode appeared in 'capture_sweep'",
    ]


def test_size_changes_are_frozen_values() -> None:
    change = graphfigures.SizeChange(NODE, "capture_sweep", 64, "vanished", 0)
    assert hash(change) == hash(dataclasses.replace(change))
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.size = 128  # type: ignore[misc]


def test_compare_runs_reports_sizes() -> None:
    base = run(sweep_region())
    new = run(sweep_region(without(SWEEP, 64, 40 * MiB)))
    result = compare_runs(base, new, DEFAULT)
    assert [c.metric for c in result.regressions] == ["graph_pool"]
    assert [(s.name, s.change) for s in result.sizes] == [
        (f"{NODE} [capture_sweep] size 64", "vanished")
    ]
    assert result.graph_regions == ((NODE, "capture_sweep"),)


def test_cgmem_compare_names_the_vanished_size_and_exits_1(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    runfile.write_json(base, run(sweep_region()))
    runfile.write_json(new, run(sweep_region(without(SWEEP, 64, 40 * MiB))))
    assert main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "graph_pool" in out and "REGRESSION" in out
    assert f"size vanished: {NODE} [capture_sweep] size 64 (2.00 MiB)" in out
    assert f"per-size bytes: {NODE} [capture_sweep]" in out
    table = out.split("per-size bytes:")[1].splitlines()[1:5]
    assert [line.split() for line in table] == [
        ["size", "baseline", "new", "change"],
        ["64", "2.00", "MiB", "-", "vanished"],
        ["128", "0", "B", "0", "B", "+0", "B"],
        ["256", "22.00", "MiB", "22.00", "MiB", "+0", "B"],
    ]
    assert "1 capture size(s) changed: 1 vanished, 0 appeared (reported, not a regression)" in out


def test_cgmem_compare_sizes_alone_do_not_fail(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    runfile.write_json(base, run(sweep_region()))
    runfile.write_json(new, run(sweep_region(without(SWEEP, 64, 24 * MiB))))
    assert main(["compare", str(base), str(new)]) == 0
    assert "size vanished" in capsys.readouterr().out


def test_size_table_shows_appeared_shrunk_and_unknown_sizes() -> None:
    base: dict[graphfigures.Size, dict[str, Any]] = {
        64: {"bytes": 2 * MiB},
        128: {"bytes": None},
        256: {"bytes": 22 * MiB},
    }
    new: dict[graphfigures.Size, dict[str, Any]] = {
        "decode": {"bytes": MiB},
        256: {"bytes": 20 * MiB},
        128: {"bytes": None},
    }
    rows = graphfigures.size_rows(base, new)
    assert rows == [
        (64, 2 * MiB, None),
        (128, None, None),
        (256, 22 * MiB, 20 * MiB),
        ("decode", None, MiB),
    ]
    assert graphfigures.size_table_lines(rows) == [
        "  size   baseline        new     change",
        "    64   2.00 MiB          -   vanished",
        "   128          -          -          -",
        "   256  22.00 MiB  20.00 MiB  -2.00 MiB",
        "decode          -   1.00 MiB   appeared",
    ]


def test_size_series_across_runs() -> None:
    docs = [run(sweep_region()), run(sweep_region(without(SWEEP, 64, 22 * MiB)))]
    series = graphfigures.size_series(docs)
    assert series == {
        (NODE, "capture_sweep"): [
            {256: 22 * MiB, 128: 0, 64: 2 * MiB},
            {256: 22 * MiB, 128: 0},
        ]
    }
    assert graphfigures.ordered([256, "decode", 8, "a"]) == [8, 256, "a", "decode"]


def test_report_draws_a_per_size_chart() -> None:
    pytest.importorskip("matplotlib")
    from pytest_cgmem.reports.html import render

    first = run(sweep_region())
    first["created"] = "2026-01-01T00:00:00.000+00:00"
    second = run(sweep_region(without(SWEEP, 64, 22 * MiB)))
    second["created"] = "2026-01-02T00:00:00.000+00:00"
    page = render([("a.json", first), ("b.json", second)])
    assert "CUDA graph bytes per capture size" in page
    assert "sizes vanished: 64" in page
    assert page.count("<svg") >= 1


def test_cgmem_compare_names_no_bytes_for_a_size_of_unknown_bytes(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = copy.deepcopy(SWEEP)
    unknown["per_size"][2]["bytes"] = None
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    runfile.write_json(base, run(sweep_region(unknown)))
    runfile.write_json(new, run(sweep_region(without(unknown, 64, 24 * MiB))))
    assert main(["compare", str(base), str(new)]) == 0
    assert f"size vanished: {NODE} [capture_sweep] size 64" in capsys.readouterr().out.splitlines()


def test_cgmem_compare_tables_only_the_regions_whose_sizes_changed_unless_all(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    runfile.write_json(base, run(sweep_region(), sweep_region(label="steady")))
    runfile.write_json(
        new, run(sweep_region(without(SWEEP, 64, 24 * MiB)), sweep_region(label="steady"))
    )
    tables = [f"per-size bytes: {NODE} [capture_sweep]", f"per-size bytes: {NODE} [steady]"]
    assert main(["compare", str(base), str(new)]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line in tables] == tables[:1]
    assert main(["compare", str(base), str(new), "--all"]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line in tables] == tables


def test_cgmem_compare_all_tables_no_region_without_sizes(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    log: dict[str, Any] = copy.deepcopy(LOG)
    for capture in log["captures"]:
        capture["label"] = None
    device = graphfigures.graph_device(0, 10 * MiB, 4, 3)
    path = tmp_path / "run.json"
    runfile.write_json(
        path, run(graphfigures.region("graphs", [device], 0.5, graphfigures.from_log(log)))
    )
    assert main(["compare", str(path), str(path), "--all"]) == 0
    out = capsys.readouterr().out
    assert "graph_pool" in out and "per-size bytes" not in out


def test_cgmem_compare_prints_the_graph_example_docs_cli_shows(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    (example,) = [b for b in re.findall(r"```\n(.*?)```", page, flags=re.S) if "per-size" in b]
    node = "t.py::test_capture"
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    runfile.write_json(base, run(sweep_region(), nodeid=node))
    runfile.write_json(new, run(sweep_region(without(SWEEP, 64, 40 * MiB)), nodeid=node))
    assert main(["compare", str(base), str(new)]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == example.splitlines()
