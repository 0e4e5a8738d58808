"""Pure tests of the snapshot analysis: stacks grouped and trimmed, peak replay, pools.

Runs on a small hand-built snapshot in torch's format and on every snapshot recorded on
a real GPU by ``scripts/record-snapshots`` and committed under ``tests/data/``.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from pytest_cgmem.reports import artifacts
from pytest_cgmem.reports import diagnostics as diagnose
from pytest_cgmem.reports.diagnostics import Alloc, group_sites, make_hider, replay, site_of
from pytest_cgmem.results.graphfigures import graph_device
from pytest_cgmem.results.records import DISTRIBUTED_LAUNCHER, DeviceFigures, RegionResult

DATA = Path(__file__).resolve().parent.parent / "data"
MiB = 2**20
TORCH = "/usr/lib/python3.12/site-packages/torch/nn/modules/linear.py"
PLUGIN = "/usr/lib/python3.12/site-packages/pytest_cgmem/plugin.py"
PYTEST = "/usr/lib/python3.12/site-packages/_pytest/python.py"
PLUGGY = "/usr/lib/python3.12/site-packages/pluggy/_callers.py"
TEST = "/repo/tests/test_model.py"
HELPER = "/repo/tests/helpers.py"
ROUNDING = 2 * MiB  # blocks are rounded up (512 B; an unsplit cached block can be larger)


def frame(filename: str, line: int, name: str) -> dict[str, Any]:
    return {"filename": filename, "line": line, "name": name}


def stack(*frames: dict[str, Any]) -> list[dict[str, Any]]:
    """Innermost first, then the callers, then pytest's and pluggy's frames."""
    return [*frames, frame(PYTEST, 159, "pytest_pyfunc_call"), frame(PLUGGY, 121, "_multicall")]


BIG = stack(frame(HELPER, 7, "make_buffer"), frame(TEST, 12, "test_big"))
LINEAR = stack(frame(TORCH, 125, "forward"), frame(TEST, 14, "test_big"))
SMALL = stack(frame(TEST, 10, "test_big"))
KEPT = stack(frame(TEST, 20, "test_big"))


def hand_built() -> dict[str, Any]:
    """A region: a 1 MiB block, two 64 MiB buffers via a helper, a linear's output, frees,
    then a 2 MiB block kept; a 32 MiB block from before the region is freed on the way."""
    trace = [
        {"action": "segment_alloc", "addr": 0x1000000, "size": 2 * MiB, "frames": SMALL},
        {"action": "alloc", "addr": 0x1000000, "size": MiB, "frames": SMALL},
        {"action": "alloc", "addr": 0x2000000, "size": 64 * MiB, "frames": BIG},
        {"action": "alloc", "addr": 0x6000000, "size": 64 * MiB, "frames": BIG},
        {"action": "alloc", "addr": 0xA000000, "size": 8 * MiB, "frames": LINEAR},
        {"action": "free_requested", "addr": 0x2000000, "size": 64 * MiB, "frames": []},
        {"action": "free_completed", "addr": 0x2000000, "size": 64 * MiB, "frames": []},
        {"action": "free_completed", "addr": 0x6000000, "size": 64 * MiB, "frames": []},
        {"action": "free_completed", "addr": 0xF000000, "size": 32 * MiB, "frames": []},
        {"action": "alloc", "addr": 0x2000000, "size": 2 * MiB, "frames": KEPT},
        {"action": "free_completed", "addr": 0xA000000, "size": 8 * MiB, "frames": []},
        {"action": "free_completed", "addr": 0x1000000, "size": MiB, "frames": []},
    ]
    block = {"size": 2 * MiB, "requested_size": 2 * MiB, "address": 0x2000000}
    segments = [
        {
            "device": 0,
            "address": 0x2000000,
            "total_size": 20 * MiB,
            "allocated_size": 2 * MiB,
            "active_size": 2 * MiB,
            "requested_size": 2 * MiB,
            "stream": 0,
            "segment_type": "large",
            "segment_pool_id": (0, 0),
            "is_expandable": False,
            "frames": [],
            "blocks": [
                {**block, "state": "active_allocated", "frames": KEPT},
                {"size": 18 * MiB, "requested_size": 0, "address": 0x2200000, "state": "inactive"},
            ],
        },
        {
            "device": 0,
            "address": 0x9000000,
            "total_size": 4 * MiB,
            "allocated_size": 4 * MiB,
            "active_size": 4 * MiB,
            "requested_size": 4 * MiB,
            "stream": 0,
            "segment_type": "large",
            "segment_pool_id": (1, 0),
            "is_expandable": False,
            "frames": [],
            "blocks": [
                {
                    "size": 4 * MiB,
                    "requested_size": 4 * MiB,
                    "address": 0x9000000,
                    "state": "active_allocated",
                    "frames": [],
                }
            ],
        },
    ]
    return {"segments": segments, "device_traces": [trace]}


def test_hider_skips_torch_pytest_pluggy_plugin_and_native_frames() -> None:
    hidden = make_hider()
    for path in (TORCH, PLUGIN, PYTEST, PLUGGY, "??", "/src/c10/cuda/Alloc.cpp"):
        assert hidden(path), path
    for path in (TEST, HELPER, "/home/me/torch_project/test_x.py"):
        assert not hidden(path), path


def test_hider_uses_installed_package_directories(tmp_path: Path) -> None:
    pkg = tmp_path / "venv" / "lib" / "torch"
    hidden = make_hider([str(pkg)])
    assert hidden(str(pkg / "nn" / "functional.py"))
    assert not hidden(str(tmp_path / "venv" / "lib" / "torchvision" / "x.py"))


@pytest.mark.parametrize(
    ("frames", "stacks", "expected"),
    [
        (BIG, 1, ((HELPER, 7, "make_buffer"),)),
        (BIG, 2, ((HELPER, 7, "make_buffer"), (TEST, 12, "test_big"))),
        (BIG, 9, ((HELPER, 7, "make_buffer"), (TEST, 12, "test_big"))),
        (LINEAR, 1, ((TEST, 14, "test_big"),)),
        ([frame(TORCH, 1, "f"), frame(PYTEST, 2, "g")], 3, ((TORCH, 1, "f"),)),
        ([], 3, ()),
    ],
)
def test_site_trims_and_skips(frames: list[dict[str, Any]], stacks: int, expected: Any) -> None:
    assert site_of(frames, stacks, make_hider()) == expected


def test_replay_finds_the_peak_and_what_was_live_there() -> None:
    trace = hand_built()["device_traces"][0]
    result = replay(trace)
    assert result.peak == 137 * MiB
    assert result.peak_index == 4
    assert sorted(a.size for a in result.at_peak) == [MiB, 8 * MiB, 64 * MiB, 64 * MiB]
    # the block from before the region lowers the figure when freed
    assert result.curve[-1][1] == 2 * MiB - 32 * MiB
    assert [a.size for a in result.at_end] == [2 * MiB]
    assert result.at_end[0].frames == tuple(KEPT)


def test_replay_ignores_allocations_after_the_boundary() -> None:
    trace = [
        {"action": "alloc", "addr": 1, "size": 100, "frames": KEPT},
        {"action": "alloc", "addr": 2, "size": 50, "frames": SMALL},
        {"action": "snapshot", "addr": 0, "size": 0},
        {"action": "free_completed", "addr": 2, "size": 50},
        {"action": "alloc", "addr": 3, "size": 999, "frames": SMALL},
    ]
    result = replay(trace, allocs_until=3)
    assert result.peak == 150
    assert [a.addr for a in result.at_end] == [1]


def test_replay_of_an_empty_trace() -> None:
    result = replay([])
    assert (result.peak, result.peak_index, result.at_peak, result.at_end) == (0, -1, (), ())


@pytest.mark.parametrize("stacks", [1, 2, 4])
def test_group_sites_sums_bytes_and_counts(stacks: int) -> None:
    result = replay(hand_built()["device_traces"][0])
    sites = group_sites(result.at_peak, stacks, make_hider())
    assert sites[0].bytes == 128 * MiB
    assert sites[0].count == 2
    assert sites[0].frames[0] == (HELPER, 7, "make_buffer")
    assert len(sites[0].frames) == min(stacks, 2)
    assert [s.bytes for s in sites] == sorted((s.bytes for s in sites), reverse=True)
    assert sum(s.bytes for s in sites) == 137 * MiB
    assert sites[1].frames[0] == (TEST, 14, "test_big")  # torch's forward skipped


def test_group_sites_splits_by_trimmed_stack_only() -> None:
    a = Alloc(1, 10, tuple(stack(frame(HELPER, 7, "mk"), frame(TEST, 1, "t1"))), 0)
    b = Alloc(2, 20, tuple(stack(frame(HELPER, 7, "mk"), frame(TEST, 2, "t2"))), 1)
    assert [s.bytes for s in group_sites([a, b], 1, make_hider())] == [30]
    assert [s.bytes for s in group_sites([a, b], 2, make_hider())] == [20, 10]


def test_segments_by_pool_default_first() -> None:
    pools = diagnose.segments_by_pool(hand_built())
    assert [(p.pool, p.kind) for p in pools] == [((0, 0), "default"), ((1, 0), "graph/private")]
    assert (pools[0].segments, pools[0].reserved, pools[0].allocated) == (1, 20 * MiB, 2 * MiB)
    assert pools[0].blocks == (2 * MiB,)
    assert pools[1].reserved == 4 * MiB


def test_render_names_the_line_and_bytes_at_the_peak_and_the_leak() -> None:
    diagnosis = diagnose.diagnose_device(hand_built(), 0, history=True, stacks=2)
    text = "\n".join(diagnose.render(diagnosis, leak=2 * MiB, roots=["/repo"], stacks=2))
    assert "pool (0, 0) default" in text
    assert "pool (1, 0) graph/private" in text
    assert "+137.00 MiB at event 5 of 12" in text
    assert "128.00 MiB  2 blocks" in text
    assert "tests/helpers.py:7 in make_buffer" in text
    assert "from tests/test_model.py:12 in test_big" in text
    assert "tests/test_model.py:20 in test_big" in text.split("leaked blocks")[1]
    assert "linear.py" not in text


def test_render_without_history_lists_block_sizes() -> None:
    diagnosis = diagnose.diagnose_device(hand_built(), 0, history=False)
    text = "\n".join(diagnose.render(diagnosis, leak=2 * MiB, allocated_start=4 * MiB))
    assert "the leak of 2.00 MiB is among them: 4.00 MiB, 2.00 MiB" in text
    assert "--cgmem-history" in text


def test_a_graph_log_s_region_counts_for_no_leak_and_no_start() -> None:
    """Its figures hold no leak (None) and no start: the largest leak and the first start
    come from the regions that measured them, on each device."""
    graph_log = RegionResult("graphs", (graph_device(0, 16 * MiB, 1, 0),), 0.0)
    call = RegionResult(
        "call",
        (
            DeviceFigures(0, leak=2 * MiB, allocated_start=5 * MiB),
            DeviceFigures(1, leak=0, allocated_start=7 * MiB),
        ),
        0.0,
    )
    later = RegionResult("later", (DeviceFigures(0, leak=MiB, allocated_start=9 * MiB),), 0.0)
    assert diagnose.leaks_and_starts([graph_log]) == ({}, {})
    assert diagnose.leaks_and_starts([graph_log, call, later]) == (
        {0: 2 * MiB, 1: 0},
        {0: 5 * MiB, 1: 7 * MiB},
    )


def test_figures_measured_in_another_process_count_for_no_leak_and_no_start() -> None:
    """Figures given to ``cgmem_record`` and the ranks of ``cgmem.distributed`` are not in
    this process's snapshot: the leak the diagnostics look for is the call region's."""
    call = RegionResult("call", (DeviceFigures(0, leak=0, allocated_start=3 * MiB),), 0.0)
    recorded = RegionResult(
        "worker",
        (DeviceFigures(0, leak=512 * MiB, device_source="recorded"),),
        0.0,
        None,
        {"recorded": ["leak"]},
    )
    rank = RegionResult(
        "rank1",
        (DeviceFigures(1, leak=64 * MiB),),
        0.0,
        None,
        {"rank": 1, "launcher": DISTRIBUTED_LAUNCHER},
    )
    torchrun_rank = RegionResult(
        "call", (DeviceFigures(2, leak=MiB, allocated_start=MiB),), 0.0, None, {"rank": 2}
    )
    assert diagnose.leaks_and_starts([call, recorded, rank]) == ({0: 0}, {0: 3 * MiB})
    assert diagnose.leaks_and_starts([recorded, rank, torchrun_rank]) == ({2: MiB}, {2: MiB})


def test_boundary_from_the_snapshot_before_the_leak_check() -> None:
    snap = hand_built()
    before = {"segments": [], "device_traces": [snap["device_traces"][0][:10]]}
    later = dict(snap)
    later["device_traces"] = [
        [*snap["device_traces"][0], {"action": "alloc", "addr": 77, "size": 32 * MiB}]
    ]
    diagnosis = diagnose.diagnose_device(later, 0, before_leak_check=before, history=True)
    assert diagnosis.replay is not None
    assert [a.size for a in diagnosis.replay.at_end] == [2 * MiB]


def test_allocations_made_by_the_plugin_are_not_blamed_on_the_test() -> None:
    own = [
        frame(TORCH, 10, "forward"),
        frame("/x/site-packages/pytest_cgmem/measure.py", 120, "_warm_handles"),
        frame(PLUGIN, 300, "pytest_runtest_call"),
    ]
    under_marked_test = [frame(TEST, 20, "test_big"), frame(PLUGIN, 170, "pytest_runtest_call")]
    assert diagnose.made_by_plugin(own, make_hider())
    assert not diagnose.made_by_plugin(under_marked_test, make_hider())
    assert not diagnose.made_by_plugin([], make_hider())
    snap = hand_built()
    snap["device_traces"][0].append({"action": "alloc", "addr": 5, "size": 512, "frames": own})
    diagnosis = diagnose.diagnose_device(snap, 0, history=True)
    assert [s.bytes for s in diagnosis.leak_sites] == [2 * MiB]
    # nor listed among the leaked blocks: the sizes are those of the sites counted
    (line,) = [x for x in diagnose.render(diagnosis, leak=2 * MiB) if x.startswith("leaked")]
    assert line.endswith("2.00 MiB in 1 block(s) allocated in the region and still live): 2.00 MiB")


def test_artifacts_round_trip(tmp_path: Path) -> None:
    snap = hand_built()
    diagnosis = diagnose.diagnose_device(snap, 0, history=True)
    paths = artifacts.write_artifacts(tmp_path / "out", "tests/t.py::test[a/b]", snap, [diagnosis])
    with paths.pickle.open("rb") as f:
        assert pickle.load(f) == snap
    page = paths.html.read_text()
    assert "<svg" in page and "helpers.py:7 in make_buffer" in page
    namespaces = (
        'xmlns="http://www.w3.org/2000/svg"',
        'xmlns:xlink="http://www.w3.org/1999/xlink"',
    )
    assert "http" not in page.replace(namespaces[0], "").replace(namespaces[1], "")
    assert "cgmem-trace-0" in page
    assert "pool (1, 0)" in paths.text.read_text()
    assert "/" not in paths.pickle.name.replace(".pickle", "")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in (paths.pickle, paths.html, paths.text)
    )  # written through temp files, none left behind
    umask = os.umask(0)
    os.umask(umask)
    assert paths.html.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes it
    artifacts.remove_artifacts(tmp_path / "out", "tests/t.py::test[a/b]")
    assert list((tmp_path / "out").iterdir()) == []
    artifacts.remove_artifacts(tmp_path / "out", "tests/t.py::test[a/b]")  # none: no error


# --- snapshots recorded on a real GPU (scripts/record-snapshots) ------------------------


def _recorded() -> list[Path]:
    return sorted(p for p in DATA.glob("*.pickle") if not p.name.endswith(".expect.json"))


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with path.open("rb") as f:
        snap = pickle.load(f)
    expect = json.loads(path.with_suffix(".expect.json").read_text())
    return snap, expect


@pytest.mark.parametrize("path", _recorded() or [None], ids=lambda p: p.stem if p else "none")
def test_recorded_snapshots(path: Path | None) -> None:
    if path is None:
        pytest.skip(
            "no recorded snapshots in tests/data yet: run scripts/record-snapshots on a GPU"
        )
    snap, expect = _load(path)
    device = expect["device"]
    one = diagnose.diagnose_device(snap, device, history=True, stacks=1)
    two = diagnose.diagnose_device(snap, device, history=True, stacks=2)
    assert one.replay is not None
    for site in (*one.peak_sites, *one.leak_sites, *two.peak_sites, *two.leak_sites):
        for filename, _, _ in site.frames:
            assert "/torch/" not in filename and "pytest_cgmem" not in filename
    scenario = expect["scenario"]
    if scenario == "over_budget":
        # the trace counts requested bytes, torch's statistic rounded block sizes
        assert abs(one.replay.peak - expect["peak"]) <= ROUNDING
        top = one.peak_sites[0]
        assert Path(top.frames[0][0]).name == expect["script"]
        assert top.frames[0][1:] == (expect["peak_site_line"], expect["peak_site_function"])
        assert (top.bytes, top.count) == (expect["peak_site_bytes"], 2)
        # two frames split the helper's site by caller, each half of it
        halves = [s for s in two.peak_sites if s.frames[0][1] == expect["peak_site_line"]]
        assert sorted(s.frames[1][1] for s in halves) == expect["caller_lines"]
        assert [s.bytes for s in halves] == [expect["peak_site_bytes"] // 2] * 2
        assert expect["second_site_line"] in [s.frames[0][1] for s in one.peak_sites]
        assert not one.leak_sites
    elif scenario == "leak":
        assert abs(one.replay.peak - expect["peak"]) <= ROUNDING
        (kept,) = one.leak_sites
        assert kept.frames[0][1:] == (expect["leak_site_line"], expect["leak_site_function"])
        assert (kept.bytes, kept.count) == (expect["leak_site_bytes"], 1)
        assert abs(sum(a.size for a in one.replay.at_end) - expect["leak"]) <= ROUNDING
    elif scenario == "graph":
        pools = [p for p in one.pools if p.pool != diagnose.DEFAULT_POOL]
        assert pools and all(p.reserved > 0 for p in pools)
        assert expect["graph_site_line"] in [s.frames[0][1] for s in one.leak_sites]
    else:
        pytest.fail(f"unknown scenario {scenario!r} in {path}")
