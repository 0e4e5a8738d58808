"""The run file: building, atomic writing, loading with one-line errors, GAB entries, merge."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem.checks.budgets import Budget
from pytest_cgmem.results import exporters, runfile
from pytest_cgmem.results.records import DeviceFigures, RegionResult, judged_violations
from pytest_cgmem.results.records import TestRecord as TestEntry
from pytest_cgmem.units import CgmemUsageError

MiB = 2**20
MACHINE = {**runfile.base_machine(), "gpus": ["NVIDIA H200"], "driver": "580", "torch": "2.11"}


def device(index: int = 0, **over: Any) -> DeviceFigures:
    values: dict[str, Any] = dict(
        index=index,
        peak=100 * MiB,
        reserved=120 * MiB,
        leak=0,
        device=130 * MiB,
        non_torch=10 * MiB,
        reserved_ratio=1.2,
    )
    values.update(over)
    return DeviceFigures(**values)


def entry(nodeid: str = "t.py::test_a", **over: Any) -> TestEntry:
    values: dict[str, Any] = dict(
        nodeid=nodeid,
        outcome="passed",
        regions=(RegionResult("call", (device(),), 0.01),),
        budget={"peak": 50 * MiB},
        checked=("call",),
    )
    values.update(over)
    values.setdefault(
        "violations",
        judged_violations(values["regions"], Budget(values["budget"]), values["checked"]),
    )
    return TestEntry(**values)


def test_build_run_is_valid_and_sorted() -> None:
    doc = runfile.build_run(
        [entry("t.py::test_b"), entry("t.py::test_a")], MACHINE, {"sha": "abc", "dirty": False}
    )
    runfile.validate(doc)
    assert doc["schema"] == "pytest-cgmem/1"
    assert [t["nodeid"] for t in doc["tests"]] == ["t.py::test_a", "t.py::test_b"]
    assert doc["summary"] == {"tests": 2, "regions": 2, "violations": 2, "failed": 0}
    violation = doc["tests"][0]["violations"][0]
    assert violation["metric"] == "peak" and violation["actual"] == 100 * MiB
    assert violation["message"].startswith("cgmem: peak 100.00 MiB exceeds budget 50.00 MiB")


def test_schema_accepts_what_the_writer_writes_and_rejects_junk() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = runfile.build_run([entry()], MACHINE, None)
    jsonschema.validate(doc, runfile.schema())
    bad = json.loads(json.dumps(doc))
    bad["tests"][0]["regions"][0]["devices"][0]["peak"] = "a lot"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, runfile.schema())
    bad = {**doc, "schema": "pytest-cgmem/0"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, runfile.schema())


def test_unchecked_regions_have_no_violations() -> None:
    explicit = RegionResult("prefill", (device(peak=10**12),), 0.0)
    doc = runfile.build_run([entry(regions=(explicit,), checked=())], MACHINE, None)
    assert doc["tests"][0]["violations"] == []


def test_extra_becomes_plain_json() -> None:
    region = RegionResult(
        "call", (device(),), 0.0, extra={"pools": {(1, 0): 3}, "sizes": (8, 16), "x": float("nan")}
    )
    doc = runfile.build_run([entry(regions=(region,))], MACHINE, None)
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["tests"][0]["regions"][0]["extra"] == {
        "pools": {"(1, 0)": 3},
        "sizes": [8, 16],
        "x": None,
    }


figures_st = st.builds(
    DeviceFigures,
    index=st.integers(0, 7),
    peak=st.integers(0, 2**45),
    reserved=st.integers(0, 2**45),
    leak=st.integers(0, 2**40),
    device=st.none() | st.integers(-(2**30), 2**45),
    non_torch=st.none() | st.integers(-(2**30), 2**40),
    reserved_ratio=st.none() | st.floats(0.01, 100),
    graph_pool=st.integers(0, 2**40),
    graphs=st.integers(0, 500),
    replays=st.integers(0, 10**6),
    disturbed=st.booleans(),
    ooms=st.integers(0, 3),
)


@given(
    st.lists(figures_st, min_size=1, max_size=3),
    st.none() | st.text(min_size=1, max_size=20),
    st.none() | st.text(max_size=30),
)
def test_region_round_trips_through_json(
    devices: list[DeviceFigures], label: str | None, error: str | None
) -> None:
    region = RegionResult(label, tuple(devices), 0.25, error, {"k": [1, 2]})
    data = json.loads(json.dumps(RegionResult.to_dict(region)))
    assert RegionResult.from_dict(data) == region


def test_entry_round_trips() -> None:
    original = entry(tolerance={"rel": 0.1}, worker="gw1", baseline={"compared": 0})
    assert TestEntry.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_unknown_device_keys_are_ignored_when_reading() -> None:
    data = RegionResult.to_dict(RegionResult("call", (device(),), 0.0))
    data["devices"][0]["from_a_newer_version"] = 1
    assert RegionResult.from_dict(data).devices[0] == device()


def test_write_json_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "run.json"
    runfile.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(TypeError):
        runfile.write_json(target, {"a": object()})  # fails half-way through json.dump
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(target.parent) == ["run.json"]


def test_write_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        runfile.write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not (tmp_path / "x.json").exists()


GOOD = runfile.build_run([entry()], MACHINE, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("  \n", "is empty"),
        ('{"schema": "pytest-cgmem/1", "tests": [', "is not valid JSON (line 1"),
        ("[1, 2]", "is not a pytest-cgmem run file"),
        ('{"tests": []}', "is not a pytest-cgmem run file"),
        ('{"schema": "pytest-cgmem/0", "tests": []}', "has schema 'pytest-cgmem/0'"),
        ('{"schema": "pytest-cgmem/1", "machine": {}, "tests": {}}', "'tests' is not a list"),
        (
            '{"schema": "pytest-cgmem/1", "machine": {}, "tests": [{"nodeid": "a", "regions": '
            '[{"devices": [{"index": 0, "peak": "big"}]}]}]}',
            "peak='big' is not a number",
        ),
    ],
)
def test_load_run_errors_are_one_line_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "base.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path, "baseline")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"cgmem: baseline {str(path)!r}") or f"baseline {str(path)!r}" in text
    assert message in text


def test_load_run_reads_what_write_json_wrote(tmp_path: Path) -> None:
    runfile.write_json(tmp_path / "r.json", GOOD)
    assert runfile.load_run(tmp_path / "r.json") == GOOD


def test_gab_entries() -> None:
    regions = (
        RegionResult("call", (device(),), 0.0),
        RegionResult("graphs", (device(graph_pool=300 * MiB, graphs=51),), 0.0),
        RegionResult("two", (device(0), device(1, device=None, non_torch=None)), 0.0),
    )
    doc = runfile.build_run([entry(regions=regions)], MACHINE, None)
    entries = exporters.gab_entries(doc)
    names = [e["name"] for e in entries]
    assert names[:5] == [
        f"t.py::test_a - {m}" for m in ("peak", "reserved", "leak", "device", "non_torch")
    ]
    assert "t.py::test_a [graphs] - graph_pool" in names
    assert "t.py::test_a - graph_pool" not in names  # no graphs, no pool entry
    assert "t.py::test_a [two] cuda:1 - peak" in names
    assert "t.py::test_a [two] cuda:1 - device" not in names  # unknown figures are left out
    assert {e["unit"] for e in entries} == {"MiB"}
    first = entries[0]
    assert first["value"] == 100.0
    assert first["extra"].split("\n") == [
        "GPU: NVIDIA H200",
        "torch: 2.11",
        "CUDA: None",
        "outcome: passed",
        "budget: 50.000 MiB",
    ]
    assert all(set(e) == {"name", "unit", "value", "extra"} for e in entries)


def test_recorded_regions_export_only_given_figures() -> None:
    region = RegionResult(
        "server", (device(reserved=0, leak=0),), 0.0, extra={"recorded": ["peak"]}
    )
    doc = runfile.build_run([entry(regions=(region,))], MACHINE, None)
    assert [e["name"] for e in exporters.gab_entries(doc)] == ["t.py::test_a [server] - peak"]
    assert runfile.figures(doc) == {("t.py::test_a", "server", 0): {"peak": 100 * MiB}}


def shard(*nodeids: str, **machine: Any) -> dict[str, Any]:
    return runfile.build_run(
        [entry(n) for n in nodeids], {**MACHINE, **machine}, {"sha": "abc", "dirty": False}
    )


def test_merge_joins_shards() -> None:
    doc, warnings = runfile.merge_runs(
        [("a.json", shard("t.py::a", "t.py::c")), ("b.json", shard("t.py::b"))]
    )
    runfile.validate(doc)
    assert warnings == []
    assert [t["nodeid"] for t in doc["tests"]] == ["t.py::a", "t.py::b", "t.py::c"]
    assert doc["summary"]["tests"] == 3
    assert doc["merged_from"] == ["a.json", "b.json"]


def test_merge_refuses_a_test_twice() -> None:
    with pytest.raises(CgmemUsageError, match=r"'t.py::a' is in both 'a.json' and 'b.json'"):
        runfile.merge_runs([("a.json", shard("t.py::a")), ("b.json", shard("t.py::a"))])


def test_merge_refuses_mixed_machines_unless_allowed() -> None:
    runs = [("a.json", shard("t.py::a")), ("b.json", shard("t.py::b", gpus=["NVIDIA H100"]))]
    with pytest.raises(CgmemUsageError, match=r"different machine.*gpus.*--allow-mixed-machines"):
        runfile.merge_runs(runs)
    doc, warnings = runfile.merge_runs(runs, allow_mixed_machines=True)
    assert len(doc["tests"]) == 2 and "different machine" in warnings[0]


def test_merge_ignores_hostnames_and_warns_on_commits() -> None:
    other = shard("t.py::b", hostname="runner-2")
    other["commit"] = {"sha": "def", "dirty": False}
    doc, warnings = runfile.merge_runs([("a.json", shard("t.py::a")), ("b.json", other)])
    assert len(doc["tests"]) == 2
    assert warnings == ["warning: the files come from different commits; keeping the first"]


def test_git_commit(tmp_path: Path) -> None:
    assert runfile.git_commit(tmp_path) is None  # not a checkout

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    commit = runfile.git_commit(tmp_path)
    assert commit is not None and len(commit["sha"]) == 40 and commit["dirty"] is False
    (tmp_path / "f").write_text("2")
    assert runfile.git_commit(tmp_path) == {"sha": commit["sha"], "dirty": True}
