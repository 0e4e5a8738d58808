"""The run file: building, atomic writing, loading with one-line errors, GAB entries, merge."""

from __future__ import annotations

import enum
import errno
import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_cgmem.checks.budgets import Budget
from pytest_cgmem.fixture import FigureRecorder
from pytest_cgmem.metrics import METRICS
from pytest_cgmem.results import exporters, journal, jsonio, runfile
from pytest_cgmem.results.records import Details, DeviceFigures, RegionResult, judged_violations
from pytest_cgmem.results.records import TestRecord as TestEntry
from pytest_cgmem.units import MAX_SIGNED_FIGURE, CgmemUsageError, Tolerance

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
        [entry("t.py::test_b", outcome="failed"), entry("t.py::test_a")],
        MACHINE,
        {"sha": "abc", "dirty": False},
    )
    runfile.validate(doc)
    assert doc["schema"] == "pytest-cgmem/1"
    assert [t["nodeid"] for t in doc["tests"]] == ["t.py::test_a", "t.py::test_b"]
    assert doc["summary"] == {"tests": 2, "regions": 2, "violations": 2, "failed": 1}
    violation = doc["tests"][0]["violations"][0]
    assert violation["metric"] == "peak" and violation["actual"] == 100 * MiB
    assert violation["message"].startswith("cgmem: peak 100.00 MiB exceeds budget 50.00 MiB")


def test_a_run_built_without_a_time_is_created_now_in_utc_to_the_millisecond() -> None:
    created = runfile.build_run([], MACHINE, None)["created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", created)
    assert abs(datetime.fromisoformat(created) - datetime.now(timezone.utc)) < timedelta(minutes=1)


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


class _Half(float):
    pass


class _Level(enum.IntEnum):
    HIGH = 2


class _Colour(str, enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (MappingProxyType({"a": (1, 2)}), {"a": [1, 2]}),
        (_Half(0.5), 0.5),
        (_Half("nan"), None),
        (_Level.HIGH, 2),
        (_Colour.RED, "red"),
        (Path("a/b"), "a/b"),
    ],
)
def test_extra_values_of_other_types_become_their_plain_json(value: Any, plain: Any) -> None:
    region = RegionResult("call", (device(),), 0.0, extra={"x": value})
    doc = runfile.build_run([entry(regions=(region,))], MACHINE, None)
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["tests"][0]["regions"][0]["extra"]["x"] == plain


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


def test_write_json_writes_a_mount_point_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single-file bind mount cannot be renamed over (EBUSY): its content is replaced."""
    target = tmp_path / "run.json"
    target.write_text('{"old": "a longer content than the new one"}')
    inode = target.stat().st_ino

    def busy(src: object, dst: object) -> None:
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    monkeypatch.setattr(os, "replace", busy)
    runfile.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert target.stat().st_ino == inode
    assert os.listdir(tmp_path) == ["run.json"]


def test_remove_empties_a_mount_point_and_takes_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "gab.json"
    jsonio.remove(target)
    target.write_text("[]")

    def busy(path: object) -> None:
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    monkeypatch.setattr(os, "unlink", busy)
    jsonio.remove(target)
    assert target.read_bytes() == b""


def test_write_json_reports_other_rename_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run.json"
    target.write_text("{}")

    def refused(src: object, dst: object) -> None:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError):
        runfile.write_json(target, {"a": 1})
    assert target.read_text() == "{}"
    assert os.listdir(tmp_path) == ["run.json"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_write_json_makes_the_file_as_open_would_and_keeps_the_umask(
    tmp_path: Path, umask: int, mode: int
) -> None:
    before = os.umask(umask)
    try:
        runfile.write_json(tmp_path / "a" / "b" / "run.json", {"a": 1})
        after = os.umask(umask)
    finally:
        os.umask(before)
    assert after == umask
    assert (tmp_path / "a" / "b" / "run.json").stat().st_mode & 0o777 == mode


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
        ('{"schema": "pytest-cgmem/1", "tests": [', "is not valid JSON (line 1, column 40: "),
        ("[1, 2]", "is not a pytest-cgmem run file"),
        ('{"tests": []}', "is not a pytest-cgmem run file"),
        ('{"schema": "pytest-cgmem/0", "tests": []}', "has schema 'pytest-cgmem/0'"),
        (
            '{"schema": "pytest-cgmem/1", "machine": {}, "tests": {}}',
            "does not match the run-file schema at $: 'created' is missing",
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


def test_load_run_refuses_a_fifo_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(CgmemUsageError, match=r"baseline '.*fifo' is not a regular file"):
        runfile.load_run(tmp_path / "fifo", "baseline")


def test_a_killed_run_with_a_backslash_in_its_name_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "a\\b.json"
    started = journal.Journal.start(
        path,
        {
            **GOOD,
            "complete": False,
            "journal": {"file": journal.journal_path(path).name, "run": "r"},
        },
    )
    started.append("test", GOOD["tests"][0])
    started.close()
    assert journal.journal_path(path).name == "a_b.json.journal"
    loaded = runfile.load_run(path)
    assert loaded["complete"] is False
    assert [t["nodeid"] for t in loaded["tests"]] == [GOOD["tests"][0]["nodeid"]]


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
        "budget: 50.000000 MiB",
    ]
    assert all(set(e) == {"name", "unit", "value", "extra"} for e in entries)


def test_recorded_regions_export_only_given_figures() -> None:
    region = RegionResult(
        "server", (device(reserved=0, leak=0),), 0.0, extra={"recorded": ["peak"]}
    )
    doc = runfile.build_run([entry(regions=(region,))], MACHINE, None)
    assert [e["name"] for e in exporters.gab_entries(doc)] == ["t.py::test_a [server] - peak"]
    assert runfile.figures(doc) == {("t.py::test_a", "server", 0): {"peak": 100 * MiB}}


@pytest.mark.parametrize(
    ("unit", "value", "budget"),
    [
        ("B", 1536 * MiB, "budget: 2147483648 B"),
        ("KiB", 1536 * 1024, "budget: 2097152.000 KiB"),
        ("MiB", 1536, "budget: 2048.000000 MiB"),
        ("GiB", 1.5, "budget: 2.000000000 GiB"),
    ],
)
def test_gab_entries_give_values_and_budgets_in_the_unit_asked(
    unit: str, value: float, budget: str
) -> None:
    regions = (RegionResult("call", (DeviceFigures(0, peak=1536 * MiB),), 0.0),)
    doc = runfile.build_run([entry(regions=regions, budget={"peak": 2048 * MiB})], MACHINE, None)
    (peak,) = exporters.gab_entries(doc, unit)
    assert (peak["unit"], peak["value"]) == (unit, value)
    assert peak["extra"].split("\n")[-1] == budget


def test_gab_entries_of_an_incomplete_run_say_so() -> None:
    """The dashboard's tooltip: a point from a run that lost tests is not mistaken for a
    whole run's."""
    regions = (RegionResult("call", (DeviceFigures(0, peak=MiB),), 0.0),)
    doc = runfile.build_run(
        [entry(regions=regions)],
        MACHINE,
        None,
        complete=False,
        incomplete_reason="worker gw1 crashed while running t.py::test_x",
    )
    (peak,) = exporters.gab_entries(doc)
    assert "run incomplete: worker gw1 crashed while running t.py::test_x" in (
        peak["extra"].split("\n")
    )
    complete = runfile.build_run([entry(regions=regions)], MACHINE, None)
    assert "incomplete" not in exporters.gab_entries(complete)[0]["extra"]


@pytest.mark.parametrize(
    ("growth", "mib"),
    [
        (1234567, 1.177375),
        (MiB + 512, 1.000488),
        (MiB + 1536, 1.001465),
        (500, 0.000477),
        (-1234567, -1.177375),
    ],
)
def test_gab_values_keep_about_a_byte(growth: int, mib: float) -> None:
    regions = (RegionResult("call", (DeviceFigures(0, device=growth),), 0.0),)
    doc = runfile.build_run([entry(regions=regions)], MACHINE, None)
    assert [e["value"] for e in exporters.gab_entries(doc)] == [mib]


@pytest.mark.parametrize(
    ("graph_pool", "graphs", "exported"),
    [(0, 3, 0.0), (8 * MiB, 3, 8.0), (0, 0, None)],
    ids=["empty-pool", "pool", "no-graphs"],
)
def test_gab_graph_pool_is_exported_where_the_region_made_graphs(
    graph_pool: int, graphs: int, exported: float | None
) -> None:
    regions = (RegionResult("call", (device(graph_pool=graph_pool, graphs=graphs),), 0.0),)
    doc = runfile.build_run([entry(regions=regions)], MACHINE, None)
    values = {e["name"]: e["value"] for e in exporters.gab_entries(doc)}
    assert values.get("t.py::test_a - graph_pool") == exported


@pytest.mark.parametrize("graph_pool", [6 * MiB, 0])
def test_a_recorded_graph_pool_is_exported_without_a_graph_count(graph_pool: int) -> None:
    region = FigureRecorder(lambda _: None)("server", graph_pool=graph_pool)
    doc = runfile.build_run([entry(regions=(region,))], MACHINE, None)
    assert doc["tests"][0]["regions"][0]["devices"][0]["graphs"] is None
    assert [(e["name"], e["value"]) for e in exporters.gab_entries(doc)] == [
        ("t.py::test_a [server] - graph_pool", graph_pool / MiB)
    ]


@pytest.mark.parametrize(("graph_pool", "graphs"), [(0, 0), (0, 3), (8 * MiB, 3)])
def test_a_region_passed_to_cgmem_record_exports_as_the_region_it_was_measured_from(
    graph_pool: int, graphs: int
) -> None:
    measured = RegionResult("sub", (device(graph_pool=graph_pool, graphs=graphs),), 0.0)
    passed = FigureRecorder(lambda _: None)(measured)

    def exported(region: RegionResult) -> dict[str, float]:
        doc = runfile.build_run([entry(regions=(region,))], MACHINE, None)
        return {e["name"]: e["value"] for e in exporters.gab_entries(doc)}

    assert exported(passed) == exported(measured)
    assert ("t.py::test_a [sub] - graph_pool" in exported(passed)) == bool(graphs)


def test_gab_extra_names_every_gpu_torch_and_cuda() -> None:
    machine = {**MACHINE, "gpus": ["NVIDIA H200", "NVIDIA H100"], "cuda": "13.0"}
    doc = runfile.build_run([entry(outcome="failed")], machine, None)
    assert exporters.gab_entries(doc)[0]["extra"].split("\n") == [
        "GPU: NVIDIA H200, NVIDIA H100",
        "torch: 2.11",
        "CUDA: 13.0",
        "outcome: failed",
        "budget: 50.000000 MiB",
    ]


def test_gab_names_of_node_ids_that_print_alike_are_numbered_in_file_order() -> None:
    doc = runfile.build_run(
        [entry("t\udc80.py::test_a"), entry("t\\x80.py::test_a")], MACHINE, None
    )  # a file name's undecodable byte, written out; a name with a backslash in it
    assert [t["nodeid"] for t in doc["tests"]] == ["t\\x80.py::test_a"] * 2
    peaks = [e["name"] for e in exporters.gab_entries(doc) if " - peak" in e["name"]]
    assert peaks == ["t\\x80.py::test_a - peak", "t\\x80.py::test_a - peak #2"]


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
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert commit == {"sha": head, "dirty": False}
    assert re.fullmatch("[0-9a-f]{40}", head)
    (tmp_path / "f").write_text("2")
    assert runfile.git_commit(tmp_path) == {"sha": commit["sha"], "dirty": True}


# -- the one loader: the shipped schema, NaN, duplicates -------------------------------------


def write(tmp_path: Path, doc: Any, name: str = "run.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def good() -> dict[str, Any]:
    """A run file with a bit of everything: a budget and its violation, a recorded region,
    baseline findings, a lost worker."""
    recorded = RegionResult("load", (device(),), 0.0, extra={"recorded": ["peak"]})
    change = {
        "metric": "peak",
        "label": "call",
        "device": 0,
        "baseline": 1,
        "value": 2,
        "change": 1,
        "message": "m",
    }
    findings = {"compared": 1, "regressions": [change], "improvements": [], "new": ["x"]}
    tests = [
        entry(),
        entry("t.py::test_b", regions=(recorded,), checked=("load",), baseline=findings),
    ]
    lost = {"worker": "gw1", "when": "now", "test": "t.py::c", "error": None}
    doc = runfile.build_run(tests, MACHINE, {"sha": "abc", "dirty": False}, workers_lost=[lost])
    return json.loads(json.dumps(doc))


def _set(doc: dict[str, Any], where: str, value: Any) -> None:
    *parents, last = where.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (
            "tests.0.tolerance",
            "10%",
            'at $.tests[0].tolerance: expected object or null, got string "10%"',
        ),
        ("tests.0.outcome", KeyError, "at $.tests[0]: 'outcome' is missing"),
        ("settings", "x", 'at $.settings: expected object, got string "x"'),
        (
            "tests.0.regions.0.extra",
            "x",
            'at $.tests[0].regions[0].extra: expected object, got string "x"',
        ),
        (
            "tests.0.outcome",
            "won",
            'at $.tests[0].outcome: expected one of "passed", "failed", "skipped", "xfailed", '
            '"xpassed", got string "won"',
        ),
        (
            "tests.0.regions.0.devices.0.peak",
            "a lot",
            "at $.tests[0].regions[0].devices[0].peak: expected integer or null, got string",
        ),
        ("complete", "yes", 'at $.complete: expected boolean, got string "yes"'),
        ("machine", None, "at $.machine: expected object, got null"),
        *(
            (f"machine.{key}", 5, f"at $.machine.{key}: expected string or null, got integer 5")
            for key in ("alloc_conf_source", "graph_tracking", "graph_pools")
        ),
        *(
            (
                f"tests.0.regions.0.devices.0.{metric}",
                -1,
                f"at $.tests[0].regions[0].devices[0].{metric}: expected a number >= 0, got "
                "integer -1",
            )
            for metric in METRICS
            if metric not in ("device", "non_torch")
        ),
        ("tests.0.budget.peak", -1, "at $.tests[0].budget.peak: expected a number >= 0, got"),
        ("tests.0.budget.device", -0.5, "at $.tests[0].budget.device: expected a number >= 0"),
        (
            "journal",
            {"file": ".", "run": "r"},
            "at $.journal.file: expected a plain file name, got",
        ),
        ("journal", {"file": "..", "run": "r"}, "at $.journal.file: expected a plain file name"),
    ],
)
def test_files_the_schema_rejects_are_one_line_naming_the_json_path(
    tmp_path: Path, where: str, value: Any, message: str
) -> None:
    doc = good()
    _set(doc, where, value)
    path = write(tmp_path, doc)
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path, "baseline")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"cgmem: baseline {str(path)!r} does not match the run-file schema ")
    assert message in text


@pytest.mark.parametrize(
    ("number", "shown"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "1e999")],
)
def test_nan_and_infinity_are_refused_when_read(tmp_path: Path, number: str, shown: str) -> None:
    text = json.dumps(good()).replace('"peak": 104857600', f'"peak": {number}', 1)
    assert number in text
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(write(tmp_path, text), "baseline")
    assert str(info.value).endswith(
        f"has a number that is not finite at $.tests[0].regions[0].devices[0].peak: {shown} "
        "is not a finite number (JSON has no NaN or Infinity)"
    )


def test_a_test_listed_twice_is_refused(tmp_path: Path) -> None:
    doc = good()
    doc["tests"].append(doc["tests"][0])
    with pytest.raises(CgmemUsageError, match=r"lists test 't.py::test_a' twice \(\$.tests\[0\] "):
        runfile.load_run(write(tmp_path, doc))
    doc = good()
    devices = doc["tests"][0]["regions"][0]["devices"]
    devices.append(devices[0])
    with pytest.raises(CgmemUsageError, match=r"device 0 twice in one region at .*devices\[1\]"):
        runfile.load_run(write(tmp_path, doc))


_UNEXPECTED = "does not match the run-file schema at $.tests[0].tolerance: Additional properties"


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        (None, None, None),
        (
            "schema",
            "pytest-cgmem/2",
            'does not match the run-file schema at $.schema: expected "pytest-cgmem/1", got '
            'string "pytest-cgmem/2"',
        ),
        (
            "machine",
            None,
            "does not match the run-file schema at $.machine: expected object, got null",
        ),
        (
            "tests.0.tolerance",
            "x" * 38,
            "does not match the run-file schema at $.tests[0].tolerance: expected object or "
            f'null, got string "{"x" * 38}"',
        ),
        (
            "tests.0.tolerance",
            "x" * 39,
            "does not match the run-file schema at $.tests[0].tolerance: expected object or "
            f'null, got string "{"x" * 36}...',
        ),
        (
            "tests.0.tolerance",
            {"rel": 0.1, "b" * 63: 1},
            f"{_UNEXPECTED} are not allowed ('{'b' * 63}' was unexpected)",
        ),
        (
            "tests.0.tolerance",
            {"rel": 0.1, "b" * 64: 1},
            f"{_UNEXPECTED} are not allowed ('{'b' * 64}' was unexpec...",
        ),
        (
            "tests.0.regions.0.devices.0.peak",
            float("nan"),
            "has a number that is not finite at $.tests[0].regions[0].devices[0].peak: nan is "
            "not a finite number (JSON has no NaN or Infinity)",
        ),
        (
            "tests.1.nodeid",
            "t.py::test_a",
            "lists test 't.py::test_a' twice ($.tests[0] and $.tests[1])",
        ),
        ("created", "yesterday", 'has no ISO 8601 time at $.created: string "yesterday"'),
        ("created", "", 'has no ISO 8601 time at $.created: string ""'),
        ("created", "2026-01-02T03:04:05Z", None),
        ("created", "2026-01-02", None),
    ],
)
def test_check_says_what_is_wrong_with_a_document_in_one_line(
    where: str | None, value: Any, problem: str | None
) -> None:
    doc = good()
    if where is not None:
        _set(doc, where, value)
    assert runfile.check(doc) == problem


def test_an_interrupted_run_file_without_a_journal_is_read_as_it_is(tmp_path: Path) -> None:
    doc = good()
    doc.update(complete=False, incomplete_reason="interrupted (KeyboardInterrupt)")
    assert runfile.load_run(write(tmp_path, doc)) == doc


def test_a_file_from_before_journaling_reads_as_complete(tmp_path: Path) -> None:
    doc = good()
    for key in ("complete", "incomplete_reason", "workers_lost"):
        del doc[key]
    loaded = runfile.load_run(write(tmp_path, doc))
    assert loaded["complete"] is True and loaded["incomplete_reason"] is None
    assert loaded["workers_lost"] == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.floats(-1e3, 1e3) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, trail: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [trail]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*trail, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*trail, i))
    return found


@given(st.data())
def test_every_reader_takes_what_the_loader_accepts(tmp_path_factory: Any, data: Any) -> None:
    """Change one place of a good file to anything: the loader refuses it in one line, or
    every reader (baseline, compare, merge, GAB, report rows) reads it without a traceback."""
    from pytest_cgmem.reports.html import _rows
    from pytest_cgmem.results.baseline import Baseline, compare_runs

    doc = good()
    trail = data.draw(st.sampled_from(_paths(doc)[1:]))
    node: Any = doc
    for part in trail[:-1]:
        node = node[part]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[trail[-1]]
    else:
        node[trail[-1]] = data.draw(json_values)
    path = tmp_path_factory.mktemp("any") / "run.json"
    path.write_text(json.dumps(doc))
    try:
        loaded = runfile.load_run(path)
    except CgmemUsageError as exc:
        assert "\n" not in str(exc)
        return
    Baseline("b.json", loaded).check(
        "t.py::test_a", (RegionResult("call", (device(),), 0.0),), Tolerance()
    )
    compare_runs(loaded, loaded, Tolerance())
    runfile.merge_runs([("a.json", loaded)])
    exporters.gab_entries(loaded)
    _rows(loaded)


# -- what no run file may hold: numbers too large, nesting too deep, impossible figures -------

LARGEST = 2**63 - 1


def with_number(doc: dict[str, Any], where: str, number: str) -> str:
    """``doc`` as JSON text with ``number`` (as written) at ``where``."""
    _set(doc, where, "@number@")
    return json.dumps(doc).replace('"@number@"', number)


@pytest.mark.parametrize(
    ("where", "number", "message"),
    [
        (
            "tests.0.regions.0.devices.0.peak",
            "1" + "0" * 400,
            "has a number out of range at $.tests[0].regions[0].devices[0].peak: "
            f"10000000...0000 (401 digits) is beyond ±{LARGEST}",
        ),
        (
            "tests.0.regions.0.devices.0.peak",
            "1" + "0" * 5000,
            "at $.tests[0].regions[0].devices[0].peak: 10000000...0000 (5001 digits) is beyond",
        ),
        (
            "tests.0.regions.0.devices.0.peak",
            str(LARGEST + 1),
            f"devices[0].peak: {LARGEST + 1} is beyond ±{LARGEST}",
        ),
        (
            "tests.0.regions.0.devices.0.device",
            str(-LARGEST - 1),
            f"devices[0].device: {-LARGEST - 1} is beyond ±{LARGEST}",
        ),
        ("tests.0.budget.peak", "9" * 401, "has a number out of range at $.tests[0].budget.peak"),
        ("tests.0.tolerance", '{"abs": 1' + "0" * 400 + "}", "at $.tests[0].tolerance.abs: "),
        (
            "tests.0.regions.0.extra.graph_figures",
            '{"source": "graphs", "captures": 1, "replays": 0, "pools": [], "sizes": '
            '[{"size": 1, "bytes": 1' + "0" * 400 + ', "driver": null, "captures": 1}]}',
            "at $.tests[0].regions[0].extra.graph_figures.sizes[0].bytes: 10000000...0000",
        ),
        ("created", "[" * 100_000 + "]" * 100_000, "is nested too deep: more than 100 levels of"),
        (
            "tests.0.regions.0.extra.x",
            "[" * 101 + "]" * 101,
            "is nested too deep: more than 100 levels of arrays and objects at "
            "$.tests[0].regions[0].extra.x[0][0]",
        ),
    ],
)
def test_what_no_run_file_may_hold_is_one_line_naming_the_json_path(
    tmp_path: Path, where: str, number: str, message: str
) -> None:
    path = write(tmp_path, with_number(good(), where, number))
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path, "baseline")
    text = str(info.value)
    assert "\n" not in text and len(text) < 400
    assert text.startswith(f"cgmem: baseline {str(path)!r} ")
    assert message in text


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (str(LARGEST), None, ""),
        (str(-LARGEST), None, ""),
        (str(-LARGEST - 1), jsonio.OutOfRangeError, f"$: {-LARGEST - 1} is beyond ±{LARGEST}"),
        ("-" + "9" * 30, jsonio.OutOfRangeError, "$: -9999999...9999 (30 digits) is beyond"),
        ("[1, NaN]", jsonio.NonFiniteError, "$[1]: NaN is not a finite number"),
        ('{"a": -Infinity}', jsonio.NonFiniteError, "$.a: -Infinity is not a finite number"),
        ("[1e400]", jsonio.NonFiniteError, "$[0]: 1e400 is not a finite number"),
        ("[1e300]", None, ""),
        (
            "[" + "9" * 400 + ".5]",
            jsonio.NonFiniteError,
            "$[0]: 99999999...99.5 (402 characters) is not a finite number",
        ),
        ("[" + "9" * 10**6 + "e9]", jsonio.NonFiniteError, "(1000002 characters) is not a"),
        ("[" * 100 + "]" * 100, None, ""),
        ("[" * 101 + "]" * 101, jsonio.TooDeepError, "more than 100 levels of arrays and objects"),
        ("[" * 10**5 + "]" * 10**5, jsonio.TooDeepError, "more than 100 levels of arrays and "),
        ('{"a": ' * 200 + "1" + "}" * 200, jsonio.TooDeepError, "at $.a.a.a.a"),
        ("{", json.JSONDecodeError, "Expecting property name"),
    ],
)
def test_jsonio_loads_refuses_with_a_value_error(
    text: str, error: type[ValueError] | None, message: str
) -> None:
    if error is None:
        jsonio.loads(text)
        return
    with pytest.raises(error) as info:
        jsonio.loads(text)
    assert message in str(info.value) and len(str(info.value)) < 200


def test_jsonio_loads_refuses_a_number_beside_a_surrogate_pair() -> None:
    with pytest.raises(jsonio.NonFiniteError, match=r"^\$\.b: NaN is not a finite number"):
        jsonio.loads('{"a": "\\ud83d\\ude00", "b": NaN}')


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        (int("1" * 24), "1" * 24),
        (-int("9" * 23), "-" + "9" * 23),
        (int("1" * 25), "11111111...1111 (25 digits)"),
        (-int("9" * 24), "-9999999...9999 (24 digits)"),
        pytest.param(10**5000, "an integer of about 5000 digits", id="too long for str"),
    ],
)
def test_a_number_out_of_range_is_shown_whole_up_to_24_characters_else_cut(
    number: int, shown: str
) -> None:
    error = jsonio.refusal({"x": number})
    assert isinstance(error, jsonio.OutOfRangeError)
    assert str(error) == f"$.x: {shown} is beyond ±{LARGEST}"


@pytest.mark.parametrize(
    ("path", "shown"),
    [("$" + ".a" * 29 + "b", "$" + ".a" * 29 + "b"), ("$" + ".a" * 30, "$" + ".a" * 28 + "...")],
)
def test_too_deep_names_a_path_of_up_to_60_characters_whole_else_cut(path: str, shown: str) -> None:
    assert str(jsonio.TooDeepError(path)).endswith(f" at {shown}")


@pytest.mark.parametrize(
    "data",
    [
        {"n": 10**17},
        {"n": -(10**17)},
        {"s": "123456789/123456789"},
        {"s": "123456789:123456789"},
    ],
)
def test_the_quick_pass_clears_digit_runs_shorter_than_19(data: dict[str, Any]) -> None:
    assert jsonio.clean_text(data) == jsonio.compact(data)


@pytest.mark.parametrize("seconds", [0.0012345678901234567, 0.00012345678901234567])
def test_the_quick_pass_clears_a_float_written_with_19_fraction_digits(seconds: float) -> None:
    """A region's seconds between 0.0001 and 0.01 are often written with 19 or 20 digits
    after the point (a third of them; most of a GPU suite's tests): no whole number, so its
    record takes the quick pass and is not walked."""
    assert len(repr(seconds).split(".")[1]) >= 19
    data = {"seconds": seconds, "n": [1, -(10**17)]}
    assert jsonio.clean_text(data) == jsonio.compact(data)
    figures = DeviceFigures(0, peak=MiB, leak=0)
    record = TestEntry("t.py::test_a", "passed", (RegionResult("call", (figures,), seconds),))
    assert runfile.record_text(record) == jsonio.compact(runfile.plain_record(record))


def test_the_quick_pass_still_finds_a_whole_number_beside_such_a_float() -> None:
    data = {"seconds": 0.0012345678901234567, "n": [1, -(10**19)]}
    assert jsonio.clean_text(data) is None
    assert str(jsonio.quick_refusal(data)) == f"$.n[1]: -{10**19} is beyond ±{LARGEST}"


@pytest.mark.parametrize("kind", [list, dict])
def test_the_quick_pass_refuses_lists_and_objects_nested_too_deep(kind: type) -> None:
    def nested(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value] if kind is list else {"a": value}
        return value

    assert jsonio.quick_refusal(nested(100)) is None
    assert isinstance(jsonio.quick_refusal(nested(101)), jsonio.TooDeepError)


def graph_run(source: str, *sizes: Any, size_bytes: int | None = 1) -> dict[str, Any]:
    doc = good()
    doc["tests"][0]["regions"][0]["extra"]["graph_figures"] = {
        "source": source,
        "captures": len(sizes),
        "replays": 0,
        "pools": [],
        "sizes": [{"size": s, "bytes": size_bytes, "driver": -5, "captures": 1} for s in sizes],
    }
    return doc


@settings(max_examples=300)
@given(st.data())
def test_the_compiled_schema_judges_a_changed_file_as_jsonschema_does(data: Any) -> None:
    """One to three places of a good file (a capture sweep's too) replaced, removed or
    given a new key beside them: the schema's compiled check (``results/schemacheck``)
    and jsonschema agree on each such file."""
    from pytest_cgmem.results.schemacheck import compile_check

    doc = graph_run("capture_sweep", 8, 16)
    for _ in range(data.draw(st.integers(1, 3))):
        trail = data.draw(st.sampled_from(_paths(doc)[1:]))
        node: Any = doc
        for part in trail[:-1]:
            node = node[part]
        action = data.draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove" and isinstance(node, dict):
            del node[trail[-1]]
        elif action == "add" and isinstance(node, dict):
            node[data.draw(st.text(max_size=3))] = data.draw(json_values)
        else:
            node[trail[-1]] = data.draw(json_values)
    check = compile_check(runfile.schema())
    assert check is not None
    assert check(doc) == runfile._validator_class()(runfile.schema()).is_valid(doc)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            graph_run("graphs", 8, 16, 8),
            "has capture size 8 twice in one region at "
            "$.tests[0].regions[0].extra.graph_figures.sizes[2]",
        ),
        (graph_run("graphs", "a", "a"), "has capture size 'a' twice in one region at "),
        (
            graph_run("graphs", 8, size_bytes=-1),
            "at $.tests[0].regions[0].extra.graph_figures.sizes[0].bytes: expected a number >= 0",
        ),
        (
            graph_run("capture_sweep", 0),
            "at $.tests[0].regions[0].extra.graph_figures.sizes[0].size: expected a number >= 1",
        ),
        (
            graph_run("capture_sweep", "big"),
            "graph_figures.sizes[0].size: expected integer, got string",
        ),
    ],
)
def test_impossible_capture_sizes_are_refused(
    tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(write(tmp_path, doc))
    assert message in str(info.value)


@pytest.mark.parametrize(
    "doc",
    [
        graph_run("graphs", -3, 0, "decode"),  # a log's sizes are its labels, any whole number
        graph_run("capture_sweep", 1, 256, size_bytes=None),
    ],
)
def test_possible_capture_sizes_are_read(tmp_path: Path, doc: dict[str, Any]) -> None:
    runfile.load_run(write(tmp_path, doc))


@pytest.mark.parametrize(
    ("metric", "value"), [("device", -MAX_SIGNED_FIGURE), ("non_torch", -(2**30))]
)
def test_the_driver_figures_may_be_negative(tmp_path: Path, metric: str, value: int) -> None:
    """The driver's figure shrinks where the region freed memory it did not allocate."""
    doc = good()
    doc["tests"][0]["regions"][0]["devices"][0][metric] = value
    loaded = runfile.load_run(write(tmp_path, doc))
    assert loaded["tests"][0]["regions"][0]["devices"][0][metric] == value


@pytest.mark.parametrize("metric", ["device", "non_torch"])
@pytest.mark.parametrize(("value", "expected"), [(-1, ">="), (1, "<=")])
def test_a_driver_figure_beyond_half_the_range_is_refused(
    tmp_path: Path, metric: str, value: int, expected: str
) -> None:
    """The change between two figures of ±(2**62 - 1) is a whole number a file can hold;
    one further is not (a test's figures would be left out of the run file)."""
    beyond = value * (MAX_SIGNED_FIGURE + 1)
    doc = good()
    doc["tests"][0]["regions"][0]["devices"][0][metric] = beyond
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(write(tmp_path, doc))
    assert str(info.value).endswith(
        f"at $.tests[0].regions[0].devices[0].{metric}: expected a number {expected} "
        f"{value * MAX_SIGNED_FIGURE}, got integer {beyond}"
    )


def test_every_reader_takes_the_largest_numbers_a_file_may_hold(tmp_path: Path) -> None:
    """At ±(2**63 - 1) a figure still converts to a float: compare, merge, the exports and
    the report read it without an overflow."""
    from pytest_cgmem.reports.html import _rows
    from pytest_cgmem.results.baseline import Baseline, compare_runs

    doc = graph_run("graphs", LARGEST, -LARGEST, size_bytes=LARGEST)
    test = doc["tests"][0]
    test["budget"] = {"peak": LARGEST, "graphs": LARGEST, "reserved_ratio": 1e300}
    test["tolerance"] = {"abs": LARGEST, "rel": 1e300}
    test["regions"][0]["devices"][0].update(peak=LARGEST, device=-MAX_SIGNED_FIGURE, graphs=LARGEST)
    loaded = runfile.load_run(write(tmp_path, doc))
    small = good()
    Baseline("b.json", loaded).check(
        "t.py::test_a", (RegionResult("call", (device(),), 0.0),), Tolerance(1e300, LARGEST)
    )
    for base, new in ((loaded, small), (small, loaded), (loaded, loaded)):
        compare_runs(base, new, Tolerance(0.05, LARGEST))
    runfile.merge_runs([("a.json", loaded)])
    exporters.gab_entries(loaded, sizes=True)
    _rows(loaded)
    pytest.importorskip("matplotlib")
    from pytest_cgmem.reports.html import render

    assert render([("small.json", small), ("large.json", loaded)]).startswith("<!DOCTYPE html>")


def test_a_record_holding_a_number_too_large_is_refused_naming_the_test_and_figure() -> None:
    bad = entry(regions=(RegionResult("load", (device(peak=2**64),), 0.0),))
    with pytest.raises(CgmemUsageError) as info:
        runfile.build_run([bad], MACHINE, None)
    assert str(info.value) == (
        "cgmem: test 't.py::test_a': regions[0].devices[0].peak (region 'load') is "
        f"{2**64}, beyond ±{LARGEST}; its figures are left out of the files"
    )
    deep: Any = []
    for _ in range(150):
        deep = [deep]
    nested = entry(regions=(RegionResult("load", (device(),), 0.0, extra={"x": deep}),))
    problem = runfile.nonfinite_problem(runfile.plain_record(nested))
    assert problem is not None and "(region 'load') is nested more than 100 levels deep" in problem


def test_write_text_leaves_no_temp_file_when_the_target_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError):
        jsonio.write_text(tmp_path / "adir", "<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["adir"] and os.listdir(tmp_path / "adir") == []


# -- refusing NaN on write ---------------------------------------------------------------------


def test_a_figure_that_is_not_finite_is_refused_naming_the_test_and_figure() -> None:
    bad = entry(regions=(RegionResult("load", (device(reserved_ratio=float("nan")),), 0.0),))
    with pytest.raises(CgmemUsageError) as info:
        runfile.build_run([bad], MACHINE, None)
    assert str(info.value) == (
        "cgmem: test 't.py::test_a': regions[0].devices[0].reserved_ratio (region 'load') is "
        "nan, not a finite number (JSON has no NaN or Infinity); its figures are left out of "
        "the files"
    )
    slow = entry(regions=(RegionResult("load", (device(),), float("inf")),))
    problem = runfile.nonfinite_problem(runfile.plain_record(slow))
    assert problem is not None and "regions[0].seconds (region 'load') is inf" in problem


# -- machines, merge rules ---------------------------------------------------------------------


def test_base_machine_reads_no_allocator_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    monkeypatch.setenv("PYTORCH_ALLOC_CONF", "expandable_segments:True")
    assert runfile.base_machine()["alloc_conf"] is None  # the measuring process says
    assert runfile.base_machine("x")["alloc_conf"] == "x"


def test_an_empty_shard_merges_whatever_machine_it_names() -> None:
    empty = runfile.build_run([], runfile.base_machine(), {"sha": "abc", "dirty": False})
    doc, warnings = runfile.merge_runs([("empty.json", empty), ("a.json", shard("t.py::a"))])
    assert warnings == [] and [t["nodeid"] for t in doc["tests"]] == ["t.py::a"]
    assert doc["machine"]["gpus"] == ["NVIDIA H200"]  # the machine of the file that measured


def test_merge_compares_only_what_both_files_know() -> None:
    runs = [("a.json", shard("t.py::a")), ("b.json", shard("t.py::b", driver=None, nvml=False))]
    doc, warnings = runfile.merge_runs(runs)
    assert warnings == [] and doc["summary"]["tests"] == 2


def test_merge_holds_each_file_against_every_earlier_one() -> None:
    """A key the first file does not know is still compared between the later ones,
    whatever the order of the files."""
    unknown = ("a.json", shard("t.py::a", driver=None, nvml=False))
    b, c = ("b.json", shard("t.py::b", driver="580")), ("c.json", shard("t.py::c", driver="470"))
    for runs in ([unknown, b, c], [b, unknown, c], [b, c, unknown]):
        with pytest.raises(CgmemUsageError, match=r"'c.json' .* than 'b.json' \(driver '580'"):
            runfile.merge_runs(runs)
    doc, warnings = runfile.merge_runs([unknown, b, c], allow_mixed_machines=True)
    assert warnings == ["warning: 'c.json' comes from a different machine (driver '580' vs '470')"]
    assert doc["machine"]["driver"] is None  # the first file's machine, as documented


def test_merge_of_an_incomplete_shard_is_incomplete() -> None:
    lost = {
        "worker": "gw1",
        "when": "2026-01-01T00:00:00.000+00:00",
        "test": "t.py::c",
        "error": "x",
    }
    broken = runfile.build_run(
        [entry("t.py::b")],
        MACHINE,
        {"sha": "abc", "dirty": False},
        complete=False,
        incomplete_reason="worker gw1 crashed while running t.py::c",
        workers_lost=[lost],
    )
    doc, warnings = runfile.merge_runs([("a.json", shard("t.py::a")), ("b.json", broken)])
    runfile.validate(doc)
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == "b.json: worker gw1 crashed while running t.py::c"
    assert doc["workers_lost"] == [lost]
    assert warnings == [
        "warning: 'b.json' is from an incomplete run: worker gw1 crashed while running t.py::c"
    ]


def test_region_problem_names_what_a_reader_would_refuse() -> None:
    def problem(region: RegionResult) -> str | None:
        return runfile.region_problem(runfile.plain_region(region))

    assert problem(RegionResult("load", (device(),), 0.0)) is None
    assert problem(RegionResult("load", (device(),), -1.0)) == (
        "seconds: expected a number >= 0, got number -1.0"
    )
    assert problem(RegionResult("load", (device(peak=float("nan")),), 0.0)) == (
        "devices[0].peak is nan, not a finite number"
    )
    assert problem(RegionResult("load", (device(), device()), 0.0)) == (
        "devices[1]: device 0 appears twice in the region"
    )
    assert problem(RegionResult("load", (device(peak=10**30),), 0.0)) == (
        "devices[0].peak is 10000000...0000 (31 digits), beyond ±9223372036854775807"
    )
    assert problem(RegionResult("load", (device(peak=-1),), 0.0)) == (
        "devices[0].peak: expected a number >= 0, got integer -1"
    )


@pytest.mark.parametrize(
    ("devices", "problem"),
    [
        ((device(),), None),
        (
            (device(peak=float("nan")),),
            "$.test.regions[0].devices[0].peak: nan is not a finite number (JSON has no NaN or "
            "Infinity)",
        ),
        (
            (device(), device()),
            "$.test.regions[0].devices[1]: device 0 appears twice in the region",
        ),
    ],
)
def test_record_problem_names_what_is_wrong_with_a_test_at_its_json_path(
    devices: tuple[DeviceFigures, ...], problem: str | None
) -> None:
    test = runfile.plain_record(entry(regions=(RegionResult("call", devices, 0.01),)))
    assert runfile.record_problem(test, "$.test") == problem


def test_a_record_made_from_a_figure_per_metric_equals_the_keyword_one() -> None:
    details = Details(allocated_start=5, reserved_end=7, device_source="cudaMemGetInfo")
    figures: dict[str, Any] = {name: metric.default for name, metric in METRICS.items()}
    figures.update(peak=100 * MiB, leak=3, graphs=2)
    made = DeviceFigures.of(1, figures, details)
    assert made == DeviceFigures(
        1,
        peak=100 * MiB,
        leak=3,
        graph_pool=0,
        graphs=2,
        replays=0,
        allocated_start=5,
        reserved_end=7,
        device_source="cudaMemGetInfo",
    )
    assert made.to_dict() == DeviceFigures.from_dict(made.to_dict()).to_dict()


@pytest.mark.parametrize(
    ("added", "dropped", "named"),
    [({"trial": 1}, None, "unknown figures ['trial']"), ({}, "leak", "'leak'")],
)
def test_a_record_from_figures_that_are_not_one_per_metric_is_refused(
    added: dict[str, Any], dropped: str | None, named: str
) -> None:
    figures: dict[str, Any] = {name: metric.default for name, metric in METRICS.items()}
    figures.update(added)
    if dropped is not None:
        del figures[dropped]
    with pytest.raises(TypeError, match=re.escape(named)):
        DeviceFigures.of(0, figures, Details())


def test_figures_read_as_attributes_named_after_the_metrics_and_details() -> None:
    figures = DeviceFigures(2, peak=5, graphs=3, ooms=1, device_source="recorded")
    assert (figures.peak, figures.graphs, figures.leak) == (5, 3, None)
    assert (figures.ooms, figures.device_source, figures.disturbed) == (1, "recorded", False)
    assert figures.where == "cuda:2"
    assert figures.known() == {"peak": 5, "graphs": 3}  # none invented for those not given
    with pytest.raises(AttributeError):
        _ = figures.trial


@pytest.mark.parametrize("keywords", [{"trial": 1}, {"peak": 1, "trial": 1, "ooms": 0}])
def test_an_unknown_keyword_figure_is_refused(keywords: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=re.escape("unknown figures ['trial']")):
        DeviceFigures(0, **keywords)


def test_a_device_that_names_only_its_index_read_back_saw_nothing() -> None:
    """A file's device without the context keys (``docs/json.md``: readers take what they
    know) reads as one that saw no OOM, no disturbance, no confirmed leak."""
    region = RegionResult.from_dict({"label": "call", "seconds": 0, "devices": [{"index": 0}]})
    data = region.devices[0].to_dict()
    assert {k: data[k] for k in METRICS} == dict.fromkeys(METRICS)  # none invented
    assert {k: v for k, v in data.items() if k not in METRICS and k != "device_source"} == {
        "index": 0,
        "allocated_start": 0,
        "reserved_start": 0,
        "allocated_end": 0,
        "reserved_end": 0,
        "disturbed": False,
        "ooms": 0,
        "leak_confirmed": False,
        "gc_freed": 0,
    }
    assert (region.ooms, region.disturbed, region.error, dict(region.extra)) == (0, False, None, {})
    assert hash(region.devices[0]) == hash(DeviceFigures(0, **dict.fromkeys(METRICS)))


def test_figures_compare_by_index_figures_and_details() -> None:
    figures = device(1)
    assert figures == device(1) and hash(figures) == hash(device(1))
    assert figures != device(0) and figures != device(1, leak=1) and figures != device(1, ooms=1)
    assert (figures == "cuda:1") is False
    assert figures.metrics() == figures.figures and figures.metrics() is not figures.figures


def test_a_region_metric_is_the_worst_device_figure_known() -> None:
    region = RegionResult(
        "call", (device(0, peak=5, device=None), device(1, peak=7, device=None)), 0.0
    )
    assert (region.metric("peak"), region.metric("device")) == (7, None)
    with pytest.raises(AttributeError):
        region.metric("trial")
    assert RegionResult("call", (), 0.0).metric("peak") is None


@pytest.mark.parametrize(
    ("extra", "rank", "recorded", "elsewhere"),
    [
        ({}, None, False, False),
        ({"rank": 1, "launcher": "cgmem.distributed"}, 1, False, True),
        ({"rank": 0, "launcher": "torchrun"}, 0, False, False),
        ({"rank": True}, None, False, False),
        ({"rank": "1"}, None, False, False),
        ({"recorded": ["peak"]}, None, True, True),
        ({"recorded": []}, None, False, False),
        (None, None, False, False),
    ],
)
def test_a_region_says_where_its_figures_were_measured(
    extra: dict[str, Any] | None, rank: int | None, recorded: bool, elsewhere: bool
) -> None:
    region = RegionResult("call", (device(),), 0.0, None, extra)  # type: ignore[arg-type]
    assert (region.rank, region.recorded) == (rank, recorded)
    assert region.measured_elsewhere is elsewhere and region.judged is elsewhere
    assert region.extra == (extra or {})


def test_a_region_sums_its_devices_ooms_and_is_disturbed_if_any_was() -> None:
    region = RegionResult("call", (device(0, ooms=2), device(1, ooms=1, disturbed=True)), 0.0)
    assert (region.ooms, region.disturbed) == (3, True)
    calm = RegionResult("call", (device(0), device(1)), 0.0)
    assert (calm.ooms, calm.disturbed) == (0, False)
    assert region.labelled("load") == RegionResult("load", region.devices, 0.0)
    assert region.label == "call"


def test_a_test_peak_is_its_worst_region_peak() -> None:
    regions = (
        RegionResult("a", (device(peak=3 * MiB),), 0.0),
        RegionResult("b", (device(peak=None),), 0.0),
        RegionResult("c", (device(peak=2 * MiB),), 0.0),
    )
    assert entry(regions=regions).peak == 3 * MiB
    assert entry(regions=regions[1:2]).peak == 0
    assert entry(regions=()).peak == 0


@pytest.mark.parametrize("judged", [True, False])
def test_a_test_kept_and_not_judged_says_so_in_its_file_form(judged: bool) -> None:
    original = entry(judged=judged)
    data = original.to_dict()
    assert ("judged" in data) is not judged and data.get("judged", True) is judged
    assert TestEntry.from_dict(json.loads(json.dumps(data))) == original
    assert TestEntry.from_dict({k: v for k, v in data.items() if k != "judged"}).judged


def test_a_region_read_back_takes_a_whole_float_index_and_no_error_or_extra() -> None:
    read = RegionResult.from_dict({"label": None, "seconds": None, "devices": [{"index": 1.0}]})
    assert read == RegionResult(None, (DeviceFigures(1, **dict.fromkeys(METRICS)),), 0.0)
    assert type(read.devices[0].index) is int


@pytest.mark.parametrize(("keys", "more"), [(8, ""), (9, " and 1 more"), (10, " and 2 more")])
def test_a_region_of_many_keys_names_the_first_eight(keys: int, more: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        RegionResult.from_dict({f"k{i}": i for i in range(keys)})
    assert str(info.value).endswith("got keys " + ", ".join(f"'k{i}'" for i in range(8)) + more)


@pytest.mark.parametrize(
    ("visible", "written"), [("0,1", "0,1"), ("GPU-\udcff", "GPU-\\xff"), (None, None)]
)
def test_a_test_keeps_the_devices_it_was_given(visible: str | None, written: str | None) -> None:
    data = entry(cuda_visible_devices=visible).to_dict()
    assert data["cuda_visible_devices"] == written
    assert TestEntry.from_dict(json.loads(json.dumps(data))).cuda_visible_devices == written


def test_records_are_not_changed_once_made() -> None:
    """A record's verdicts are computed once, when it is made: nothing changes it since."""
    import dataclasses

    test = entry()
    for made, name in ((test, "outcome"), (test.regions[0], "label"), (Details(), "ooms")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, name, None)


@pytest.mark.parametrize(
    ("where", "value"),
    [("peak", float("nan")), ("peak", 2**63), ("device", -(2**63))],
)
def test_the_quick_pass_misses_nothing_the_full_walk_finds(where: str, value: object) -> None:
    from pytest_cgmem.results.jsonio import quick_refusal, refusal

    data = {"tests": [{"regions": [{"devices": [{where: value, "nodeid": "t[1]"}]}]}]}
    quick, full = quick_refusal(data), refusal(data)
    assert quick is not None and full is not None
    assert (type(quick), quick.path, str(quick)) == (type(full), full.path, str(full))
    assert quick_refusal({"tests": [{"peak": 2**63 - 1, "nodeid": "9" * 40}]}) is None


# -- a measured test's record in one pass --------------------------------------------------------

extra_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "\U0001f600", "9" * 19, "a\\ud800"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.text(max_size=4) | st.integers(-5, 5) | st.booleans() | st.none() | st.floats(),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)


@given(extra_values, st.integers(-(2**64), 2**64), st.text(max_size=12))
def test_record_text_is_plain_record_as_its_journal_line(
    extra: Any, peak: int, nodeid: str
) -> None:
    """One pass (``record_text``) writes what the walk (``plain_record``) makes, as the
    journal line holds it; where it gives no text, ``nonfinite_problem`` decides."""
    region = RegionResult("call", (device(peak=peak),), 0.01, extra={"x": extra})
    record = entry(nodeid, regions=(region,))
    text = runfile.record_text(record)
    if text is None:
        return  # walked: the session asks plain_record and nonfinite_problem
    plain = runfile.plain_record(record)
    assert json.loads(text) == plain
    assert runfile.nonfinite_problem(plain) is None
    assert text + "\n" == jsonio.dumps_line(plain)


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"ratio": float("nan")}, "NaN in extra becomes null"),
        ({"path": Path("a")}, "an object becomes its str"),
        ({"set": {1}}, "a set becomes a list"),
        ({"label": "9" * 19}, "19 digits in a string"),
        ({"emoji": "\U0001f600"}, "a surrogate pair"),
    ],
)
def test_record_text_leaves_to_the_walk_what_the_quick_pass_cannot_clear(
    extra: Any, why: str
) -> None:
    record = entry(regions=(RegionResult("call", (device(),), 0.01, extra=extra),))
    assert runfile.record_text(record) is None, why
    assert runfile.nonfinite_problem(runfile.plain_record(record)) is None


def test_a_key_is_spelled_as_json_spells_it() -> None:
    """``plain_record`` and ``record_text`` agree where ``extra`` has keys that are no
    strings: each as JSON writes it."""
    extra = {True: 1, None: 2, 3: 3, 1.5: 4, "s": 5, _Colour.RED: 6}
    record = entry(regions=(RegionResult("call", (device(),), 0.01, extra={"k": extra}),))
    text = runfile.record_text(record)
    expected = {"true": 1, "null": 2, "3": 3, "1.5": 4, "s": 5, "red": 6}
    assert text is not None and json.loads(text)["regions"][0]["extra"]["k"] == expected
    assert runfile.plain_record(record)["regions"][0]["extra"]["k"] == expected


# -- the indented JSON of every result file ------------------------------------------------------

any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["\ud800", "\U0001f600", 'a"\\\n\x7f']),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.text(max_size=3) | st.integers(-3, 3) | st.booleans() | st.none(), inner, max_size=3
        )
    ),
    max_leaves=10,
)


def _dumped(data: Any) -> str | type[Exception]:
    try:
        return json.dumps(data, indent=1, allow_nan=False)
    except (ValueError, TypeError) as exc:
        return type(exc)


@given(any_values)
def test_indented_writes_what_json_dumps_writes(data: Any) -> None:
    """Byte for byte, and the same error where json refuses (NaN)."""
    expected = _dumped(data)
    if isinstance(expected, str):
        assert jsonio.indented(data) == expected
    else:
        with pytest.raises(expected):
            jsonio.indented(data)


def _many_tests(count: int) -> dict[str, Any]:
    """A run-file-like document: ``count`` tests of 10 regions, a device each."""
    device = {"index": 0, "peak": 1000, "reserved": 2048, "leak": None, "ooms": 0}
    region = {"label": "l", "seconds": 0.5, "error": None, "devices": [device, {}], "x": []}
    test = {"nodeid": "t.py::t[0]", "outcome": "passed", "regions": [region] * 10}
    return {"schema": "s", "tests": [{**test, "nodeid": f"t.py::t[{i}]"} for i in range(count)]}


def test_indented_is_json_dumps_across_its_chunks() -> None:
    """A document of many lines is written in chunks (``_CHUNK`` strings each): the same
    bytes as json.dumps, and a value for json.dumps after chunks were joined still goes
    there whole."""
    data = _many_tests(300)
    text = jsonio.indented(data)
    assert text.count("\n") > 10 * jsonio._CHUNK
    assert text == json.dumps(data, indent=1)
    data["tests"][-1]["outcome"] = (1, 2)  # a tuple: still plain
    assert jsonio.indented(data) == json.dumps(data, indent=1)
    data["tests"][-1]["outcome"] = float("nan")  # refused at the end, after the chunks
    with pytest.raises(ValueError):
        jsonio.indented(data)


@pytest.mark.parametrize(
    ("extra", "tests"), [({}, 300), ({"flags": [True, False]}, 50), ({"pair": (1, 2)}, 50)]
)
def test_indented_holds_about_its_text_not_a_string_a_line(
    extra: dict[str, Any], tests: int
) -> None:
    """While it writes, ``indented`` holds about twice its text (the chunks, then their
    join), where a string for each line held at once took six times it; booleans and
    tuples are its own to write, not a reason to hand the document to json.dumps."""
    import tracemalloc

    data = _many_tests(tests)
    for test in data["tests"]:
        test.update(extra)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        text = jsonio.indented(data)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(text)


def test_indented_leaves_other_types_to_json() -> None:
    import enum

    class Size(enum.IntEnum):
        SMALL = 1

    assert jsonio.indented({"a": Size.SMALL, "b": [1.5]}) == json.dumps(
        {"a": Size.SMALL, "b": [1.5]}, indent=1
    )
    with pytest.raises(TypeError):
        jsonio.indented({"a": object()})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonio.indented(loop)


@pytest.mark.parametrize(
    ("test", "said"),
    [
        (
            {"nodeid": "t.py::a", "budget": {"peak": float("nan")}, "regions": []},
            "budget.peak is nan, not a finite number (JSON has no NaN or Infinity)",
        ),
        (
            {"nodeid": "t.py::a", "tolerance": {"abs": 2**64}, "regions": "x"},
            "tolerance.abs is 18446744073709551616, beyond ±9223372036854775807",
        ),
    ],
)
def test_a_figure_outside_the_regions_is_named_without_a_region(
    test: dict[str, Any], said: str
) -> None:
    assert runfile.nonfinite_problem(test) == (
        f"cgmem: test 't.py::a': {said}; its figures are left out of the files"
    )


@pytest.mark.parametrize("reason", [None, "stopped early"])
def test_a_complete_run_has_no_incomplete_reason(reason: str | None) -> None:
    commit = {"sha": "abc", "dirty": True}
    doc = runfile.build_run([entry()], MACHINE, commit, complete=True, incomplete_reason=reason)
    assert (doc["complete"], doc["incomplete_reason"], doc["commit"]) == (True, None, commit)
    assert runfile.incomplete(doc) is None
    broken = runfile.build_run([entry()], MACHINE, None, complete=False, incomplete_reason=reason)
    assert broken["incomplete_reason"] == (reason or runfile.NOT_FINISHED)
    assert runfile.incomplete(broken) == (reason or runfile.NOT_FINISHED)


def test_a_file_from_before_journaling_is_complete_to_every_reader() -> None:
    doc = good()
    for key in ("complete", "incomplete_reason", "workers_lost"):
        del doc[key]
    assert runfile.incomplete(doc) is None
    rebuilt = runfile.with_tests(doc, [entry("t.py::z").to_dict()])
    assert (rebuilt["complete"], rebuilt["incomplete_reason"]) == (True, None)


def test_with_tests_keeps_every_other_key() -> None:
    lost = {"worker": "gw1", "when": "2026-01-01T00:00:00.000+00:00", "test": None, "error": "x"}
    doc = runfile.build_run(
        [entry("t.py::a")],
        MACHINE,
        {"sha": "abc", "dirty": False},
        created="2026-01-02T00:00:00.000+00:00",
        settings={"tolerance": "5%"},
        complete=False,
        incomplete_reason="stopped early",
        workers_lost=[lost],
    )
    doc["merged_from"] = ["a.json"]
    rebuilt = runfile.with_tests(doc, [entry("t.py::c").to_dict(), entry("t.py::b").to_dict()])
    runfile.validate(rebuilt)
    assert [t["nodeid"] for t in rebuilt["tests"]] == ["t.py::b", "t.py::c"]
    assert rebuilt["summary"]["tests"] == 2
    assert {k: v for k, v in rebuilt.items() if k not in ("tests", "summary")} == {
        k: v for k, v in doc.items() if k not in ("tests", "summary")
    }


def test_merge_of_no_files_is_refused() -> None:
    with pytest.raises(CgmemUsageError, match="cgmem merge: no files given"):
        runfile.merge_runs([])


def test_a_merge_of_shards_that_measured_nothing_names_the_first_machine() -> None:
    runs = [("a.json", shard(gpus=["NVIDIA A100"])), ("b.json", shard(gpus=["NVIDIA H100"]))]
    doc, warnings = runfile.merge_runs(runs)
    assert warnings == [] and doc["tests"] == []
    assert doc["machine"]["gpus"] == ["NVIDIA A100"]


def test_merge_holds_later_files_against_the_first_that_knew_a_key() -> None:
    runs = [
        ("a.json", shard("t.py::a", driver="580")),
        ("b.json", shard("t.py::b", driver="470")),
        ("c.json", shard("t.py::c", driver="470")),
    ]
    with pytest.raises(CgmemUsageError, match=r"'b.json' .* than 'a.json' \(driver '580'"):
        runfile.merge_runs(runs)
    _, warnings = runfile.merge_runs(runs, allow_mixed_machines=True)
    assert warnings == [
        f"warning: {name!r} comes from a different machine (driver '580' vs '470')"
        for name in ("b.json", "c.json")
    ]


def test_merge_takes_one_commit_written_two_ways_as_one_and_the_latest_time() -> None:
    a, b = shard("t.py::a"), shard("t.py::b")
    a["commit"], b["commit"] = {"sha": "abc", "dirty": False}, {"dirty": False, "sha": "abc"}
    a["created"], b["created"] = "2026-01-02T00:00:00.000+00:00", "2026-01-01T00:00:00.000+00:00"
    doc, warnings = runfile.merge_runs([("b.json", b), ("a.json", a)])
    assert warnings == []
    assert doc["created"] == "2026-01-02T00:00:00.000+00:00"
    doc, _ = runfile.merge_runs([("a.json", a), ("b.json", b)])
    assert doc["created"] == "2026-01-02T00:00:00.000+00:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05.678+00:00", datetime(2026, 1, 2, 3, 4, 5, 678000, timezone.utc)),
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2026-01-02T08:04:05+05:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2026-01-02T03:04:05+0000", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2026-01-02T03:04:05.12Z", datetime(2026, 1, 2, 3, 4, 5, 120000, timezone.utc)),
        ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, timezone.utc)),
        ("2026-01-02T02:04-01", datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=timezone.utc)),
        ("yesterday", None),
        ("", None),
        ("2026-13-02", None),
        ("2026-01-02T03:04:05+24:00", None),
        ("2026-01-02T03:04:05 ", None),
        ("２０２６-01-02", None),
    ],
)
def test_created_is_read_as_a_time_with_no_offset_taken_as_utc(
    text: str, expected: datetime | None
) -> None:
    """The same on every Python (``datetime.fromisoformat`` takes fewer forms before 3.11)."""
    assert runfile.created_time(text) == expected


def test_a_merge_is_created_at_its_latest_input_by_time_not_by_text() -> None:
    """+05:00's 01:00 is the day before's 20:00 UTC, which its text sorts after."""
    early, late = good(), good()
    early["created"] = "2026-01-02T01:00:00.000+05:00"
    late["created"] = "2026-01-01T21:00:00.000+00:00"
    late["tests"][0]["nodeid"] = "t.py::test_other"
    late["tests"] = late["tests"][:1]
    early["tests"] = early["tests"][:1]
    merged, _ = runfile.merge_runs([("a.json", early), ("b.json", late)])
    assert merged["created"] == late["created"]
