"""Pure tests of the snapshot analysis: stacks grouped and trimmed, peak replay, pools.

Runs on a small hand-built snapshot in torch's format and on every snapshot recorded on
a real GPU by ``scripts/record-snapshots`` and committed under ``tests/data/``.
"""

from __future__ import annotations

import html
import json
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_cgmem.reports import artifacts, charts
from pytest_cgmem.reports import diagnostics as diagnose
from pytest_cgmem.reports.diagnostics import Alloc, group_sites, make_hider, replay, site_of
from pytest_cgmem.results.graphfigures import graph_device
from pytest_cgmem.results.records import DISTRIBUTED_LAUNCHER, DeviceFigures, RegionResult
from pytest_cgmem.units import format_size

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
        (BIG, 0, ((HELPER, 7, "make_buffer"),)),  # a site is never blank
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
    text = "\n".join(diagnose.render(diagnosis, leak=2 * MiB, roots=["/repo"]))
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


# --- the artifacts' contents (reports/artifacts.py, docs/diagnostics.md) -----------------


def test_artifact_stem_is_the_test_id_made_filesystem_safe_with_a_short_hash() -> None:
    stem = artifacts.artifact_stem("tests/t.py::test[a/b]")
    assert re.fullmatch(r"tests_t\.py_test_a_b-[0-9a-f]{8}", stem), stem
    # ids that differ only in characters a file name cannot hold: the hash keeps them apart
    other = artifacts.artifact_stem("tests/t.py::test[a b]")
    assert other.split("-")[0] == stem.split("-")[0] and other != stem
    # the separators left at either end go, and only they; a long id keeps its last 80
    assert artifacts.artifact_stem("X.py::test[X]").startswith("X.py_test_X-")
    assert re.fullmatch(r"t\.py_test-[0-9a-f]{8}", artifacts.artifact_stem("./t.py::test_"))
    long = artifacts.artifact_stem("tests/" + "x" * 200 + "::test_end")
    readable, digest = long.rsplit("-", 1)
    assert readable == "x" * 71 + "_test_end" and len(digest) == 8


def test_artifact_paths_and_the_lines_that_name_them(tmp_path: Path) -> None:
    stem = artifacts.artifact_stem("t.py::test_a")
    paths = artifacts.artifact_paths(tmp_path, "t.py::test_a")
    assert paths == artifacts.Artifacts(
        tmp_path / f"{stem}.pickle", tmp_path / f"{stem}.html", tmp_path / f"{stem}.txt"
    )
    assert paths.lines() == [
        f"artifacts: {paths.pickle} (drop on https://pytorch.org/memory_viz)",
        f"           {paths.html}",
        f"           {paths.text}",
    ]


@pytest.mark.parametrize("cut", [".", "::"], ids=["dot", "separator"])
def test_a_long_test_id_s_stem_starts_with_neither_a_dot_nor_an_underscore(cut: str) -> None:
    """Cut to its last 80 characters, the stem is stripped at the cut too: a stem starting
    with a dot would name hidden files."""
    nodeid = "tests/" + "x" * 30 + "/test_m" + cut + "test_" + "y" * 74  # cut: 1 character
    assert re.fullmatch(r"test_y{74}-[0-9a-f]{8}", artifacts.artifact_stem(nodeid))


def _out_of_order() -> dict[str, Any]:
    """``hand_built`` with its segments reversed, a third default-pool segment at a higher
    address than the graph pool's, a segment torch recorded little of, and a device 1."""
    snap = hand_built()
    first, graph = snap["segments"]
    later = {
        **first,
        "address": 0xB000000,
        "stream": 7,
        "blocks": [{"size": MiB, "state": "active_pending_free", "frames": BIG}],
    }
    bare = {"blocks": [{"size": 512}, {"state": "inactive"}]}
    other = {**first, "device": 1, "address": 0x4000000, "blocks": []}
    snap["segments"] = [graph, other, later, first, bare]
    return snap


def test_segment_summary_lists_every_segment_by_pool_with_blocks_and_sites() -> None:
    snap = _out_of_order()
    zero = diagnose.diagnose_device(snap, 0, history=True)
    one = diagnose.diagnose_device(snap, 1)
    assert artifacts.segment_summary(snap, [zero, one], ["/repo"]) == "\n".join(
        [
            "cuda:0 segments by pool",
            *diagnose.pool_lines(zero.pools),
            "",
            "segment 0x0 pool (0, 0) ? total 0 B allocated 0 B stream 0",
            "    ?                             512 B",
            "    inactive                        0 B",
            "segment 0x2000000 pool (0, 0) large total 20.00 MiB allocated 2.00 MiB stream 0",
            "    active_allocated           2.00 MiB  tests/test_model.py:20 in test_big",
            "    inactive                  18.00 MiB",
            "segment 0xb000000 pool (0, 0) large total 20.00 MiB allocated 2.00 MiB stream 7",
            "    active_pending_free        1.00 MiB",
            "segment 0x9000000 pool (1, 0) large total 4.00 MiB allocated 4.00 MiB stream 0",
            "    active_allocated           4.00 MiB",
            "",
            "allocation sites live at the peak",
            "    128.00 MiB  2 blocks    tests/helpers.py:7 in make_buffer",
            "                              from tests/test_model.py:12 in test_big",
            "      8.00 MiB  1 block     tests/test_model.py:14 in test_big",
            "      1.00 MiB  1 block     tests/test_model.py:10 in test_big",
            "",
            "allocations made in the region and still live at its end",
            "      2.00 MiB  1 block     tests/test_model.py:20 in test_big",
            "",
            "cuda:1 segments by pool",
            *diagnose.pool_lines(one.pools),
            "",
            "segment 0x4000000 pool (0, 0) large total 20.00 MiB allocated 2.00 MiB stream 0",
            "",
        ]
    )


def test_segment_summary_charges_a_block_to_the_line_that_called_torch() -> None:
    """As on the page and in the section: an ``nn.Linear``'s output is charged to the line
    that called the module, not to ``torch/nn/modules/linear.py``."""
    snap = hand_built()
    snap["segments"][0]["blocks"][0]["frames"] = LINEAR
    text = artifacts.segment_summary(snap, [diagnose.diagnose_device(snap, 0)], ["/repo"])
    assert "    active_allocated           2.00 MiB  tests/test_model.py:14 in test_big\n" in text
    assert "linear.py" not in text


def test_artifacts_hide_the_frames_the_failure_section_hides(tmp_path: Path) -> None:
    """A torch built from a checkout is outside site-packages: the failure section hides it
    by its folder (``make_hider`` given torch's), and the text summary and the page's trace
    table hide it too when given that filter, as ``write_artifacts`` is."""
    checkout = stack(frame("/src/pytorch/torch/nn/modules/linear.py", 125, "forward"))
    frames = [*checkout, *stack(frame(TEST, 14, "test_big"))]
    snap = hand_built()
    snap["segments"][0]["blocks"][0]["frames"] = frames
    snap["device_traces"][0][0]["frames"] = frames
    hidden = diagnose.make_hider(["/src/pytorch/torch"])
    diagnosis = diagnose.diagnose_device(snap, 0, history=True, hidden=hidden)
    charged = "tests/test_model.py:14 in test_big"
    default = artifacts.segment_summary(snap, [diagnosis], ["/repo"])
    assert "2.00 MiB  /src/pytorch/torch/nn/modules/linear.py:125 in forward\n" in default
    paths = artifacts.write_artifacts(
        tmp_path, "t.py::test", snap, [diagnosis], ["/repo"], hidden=hidden
    )
    text, page = paths.text.read_text(), paths.html.read_text()
    assert f"    active_allocated           2.00 MiB  {charged}\n" in text
    assert f"<td>0x1000000</td><td>2.00 MiB</td><td>{charged}</td></tr>" in page
    assert "/src/pytorch" not in text and "/src/pytorch" not in page


def _sites(n: int) -> tuple[diagnose.Site, ...]:
    return tuple(diagnose.Site((("/repo/t.py", i, "test_a"),), (n - i) * MiB, 1) for i in range(n))


@pytest.mark.parametrize("n", [50, 51])
def test_segment_summary_shows_fifty_sites_and_sums_the_rest(n: int) -> None:
    diagnosis = diagnose.DeviceDiagnosis(0, (), True, None, _sites(n), _sites(n), False, ())
    lines = artifacts.segment_summary({}, [diagnosis], ["/repo"]).splitlines()
    assert lines[:3] == ["cuda:0 segments by pool", "  (no segments)", ""]
    peak = lines.index("allocation sites live at the peak")
    leak = lines.index("allocations made in the region and still live at its end")
    assert lines[peak + 1] == f"  {format_size(n * MiB):>12}  1 block     t.py:0 in test_a"
    rest = ["      1.00 MiB  in 1 more site(s)"] if n > 50 else []
    assert lines[peak + 1 : leak - 1] == [
        *(f"  {format_size((n - i) * MiB):>12}  1 block     t.py:{i} in test_a" for i in range(50)),
        *rest,
    ]
    assert lines[leak - 1] == "" and lines[leak + 1 :] == lines[peak + 1 : leak - 1]


def test_segment_summary_without_sites_has_no_site_sections() -> None:
    snap = hand_built()
    text = artifacts.segment_summary(snap, [diagnose.diagnose_device(snap, 0)])
    assert "sites" not in text and "still live" not in text
    assert text.endswith("    active_allocated           4.00 MiB\n")


def _page(snap: dict[str, Any], diagnosis: diagnose.DeviceDiagnosis, failure: str = "") -> str:
    page = artifacts.trace_html("t.py::test[<a>]", snap, [diagnosis], ["/repo"], failure)
    return re.sub(r"<svg.*</svg>\n?", "<svg/>", page, flags=re.S)


def test_trace_html_is_the_pools_the_timeline_the_sites_and_the_trace() -> None:
    snap = hand_built()
    diagnosis = diagnose.diagnose_device(snap, 0, history=True)
    page = _page(snap, diagnosis, "E   BudgetExceeded: <peak> & more")
    head = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>cgmem: t.py::test[&lt;a&gt;]"
    assert page.startswith(head + "</title><style>") and page.endswith("</body></html>")
    pools = html.escape("\n".join(diagnose.pool_lines(diagnosis.pools)))
    assert (
        "</style></head><body><h1>t.py::test[&lt;a&gt;]</h1>"
        "<pre>E   BudgetExceeded: &lt;peak&gt; &amp; more</pre>"
        f"<h2>cuda:0</h2><pre>{pools}</pre>"
        "<h3>allocated bytes above the region's start, per event</h3><svg/>"
        "<h3>allocation sites live at the peak</h3><table><tr><th>bytes</th><th>blocks</th>"
        "<th>site (innermost first)</th></tr><tr><td>128.00 MiB</td><td>2</td>"
        "<td>tests/helpers.py:7 in make_buffer<br>tests/test_model.py:12 in test_big</td></tr>"
        "<tr><td>8.00 MiB</td><td>1</td><td>tests/test_model.py:14 in test_big</td></tr>"
        "<tr><td>1.00 MiB</td><td>1</td><td>tests/test_model.py:10 in test_big</td></tr>"
        "</table><h3>allocated in the region, live at its end</h3><table><tr><th>bytes</th>"
        "<th>blocks</th><th>site (innermost first)</th></tr><tr><td>2.00 MiB</td><td>1</td>"
        "<td>tests/test_model.py:20 in test_big</td></tr></table>"
        "<h3>trace (12 events)</h3><table><tr><th>#</th><th>action</th><th>address</th>"
        "<th>size</th><th>site</th></tr><tr><td>1</td><td>segment_alloc</td><td>0x1000000</td>"
        "<td>2.00 MiB</td><td>tests/test_model.py:10 in test_big</td></tr>"
    ) in page
    # a linear's output is charged to the line that called it; a free has no site
    assert (
        "<tr><td>5</td><td>alloc</td><td>0xa000000</td><td>8.00 MiB</td>"
        "<td>tests/test_model.py:14 in test_big</td></tr><tr><td>6</td><td>free_requested</td>"
        "<td>0x2000000</td><td>64.00 MiB</td><td></td></tr>"
    ) in page
    assert page.count("<tr><td>") == 4 + 12 and "more events" not in page
    data = re.search(r'<script type="application/json" id="cgmem-trace-0">(.*?)</script>', page)
    assert data is not None
    trace = snap["device_traces"][0]
    assert json.loads(data[1]) == [[e["action"], e["addr"], e["size"]] for e in trace]
    assert page.endswith(
        f'<td></td></tr></table><script type="application/json" id="cgmem-trace-0">{data[1]}'
        "</script></body></html>"
    )


def test_trace_html_leaves_out_what_there_is_not() -> None:
    """No failure text, no history, no sites, no trace: no empty sections."""
    snap = {"segments": hand_built()["segments"]}
    page = artifacts.trace_html("t.py::test[<a>]", snap, [diagnose.diagnose_device(snap, 0)])
    pools = html.escape("\n".join(diagnose.pool_lines(diagnose.segments_by_pool(snap, 0))))
    assert page.endswith(
        f"<h1>t.py::test[&lt;a&gt;]</h1><h2>cuda:0</h2><pre>{pools}</pre></body></html>"
    )


def test_trace_html_escapes_the_trace_s_text() -> None:
    action = "</script><b>x</b>"
    snap = {"device_traces": [[{"action": action, "addr": 16, "size": 0}, {"action": "x"}]]}
    diagnosis = diagnose.DeviceDiagnosis(0, (), False, None, (), (), False, ())
    page = _page(snap, diagnosis)
    assert "<td>&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;</td><td>0x10</td><td>0 B</td><td></td>" in page
    assert "<tr><td>2</td><td>x</td><td>0x0</td><td>0 B</td><td></td></tr>" in page
    assert page.count("</script>") == 1  # the JSON cannot close its script early
    data = re.search(r'id="cgmem-trace-0">(.*?)</script>', page)
    assert data is not None and json.loads(data[1]) == [[action, 16, 0], ["x", 0, 0]]


@pytest.mark.parametrize("events", [5000, 5001])
def test_trace_html_tabulates_the_first_5000_events(events: int) -> None:
    trace = [{"action": "alloc", "addr": i, "size": 512} for i in range(events)]
    diagnosis = diagnose.DeviceDiagnosis(0, (), True, None, (), (), False, ())
    page = _page({"device_traces": [trace]}, diagnosis)
    assert f"<h3>trace ({events} events)</h3>" in page
    assert page.count("<tr><td>") == 5000
    assert "<tr><td>5000</td><td>alloc</td><td>0x1387</td>" in page
    assert ("more events" in page) == (events > 5000)
    more = "</table><p>1 more events in the snapshot pickle.</p><script "
    assert events == 5000 or more in page
    data = re.search(r'id="cgmem-trace-0">(.*?)</script>', page)
    assert data is not None and len(json.loads(data[1])) == events  # the JSON has them all


def test_write_artifacts_writes_the_page_and_the_summary_with_torch_s(tmp_path: Path) -> None:
    snap = hand_built()
    diagnoses = [diagnose.diagnose_device(snap, 0, history=True)]
    nodeid = "t.py::test_a"
    folder = tmp_path / "a" / "b"  # made, parents and all
    paths = artifacts.write_artifacts(folder, nodeid, snap, diagnoses, ["/repo"], "E  boom")
    summary = artifacts.segment_summary(snap, diagnoses, ["/repo"])
    assert paths.text.read_text() == summary + "\n"
    page = paths.html.read_text()
    assert "tests/helpers.py:7 in make_buffer" in page and "<pre>E  boom</pre>" in page
    # a second failure in the same folder; torch's own segment summary appended
    again = artifacts.write_artifacts(folder, nodeid, snap, diagnoses, ["/repo"], "", "segsum")
    assert again == paths and "<pre>E  boom</pre>" not in paths.html.read_text()
    assert paths.text.read_text() == f"{summary}\n\ntorch.cuda._memory_viz.segsum:\nsegsum"
    artifacts.write_artifacts(folder, nodeid, snap, diagnoses, appendix="")
    assert paths.text.read_text() == artifacts.segment_summary(snap, diagnoses) + "\n"
    artifacts.write_artifacts(folder, nodeid, snap, diagnoses)  # no failure text, no appendix
    assert paths.text.read_text() == artifacts.segment_summary(snap, diagnoses) + "\n"
    assert "<h1>t.py::test_a</h1><h2>cuda:0</h2>" in paths.html.read_text()


# --- the failure page's timeline (reports/charts.py) -------------------------------------


def _curve(*values: int) -> diagnose.Replay:
    """A replay whose running figure after event i is ``values[i]``."""
    peak = max((0, *values))
    index = values.index(peak) if peak > 0 else -1
    curve = tuple(enumerate(values))
    return diagnose.Replay(len(values), peak, index, (), (), curve, ())


def _drawn(monkeypatch: pytest.MonkeyPatch, result: diagnose.Replay) -> Any:
    """The timeline's axes, as drawn (the figure kept, not rendered)."""
    pytest.importorskip("matplotlib")
    figures: list[Any] = []
    monkeypatch.setattr(charts, "svg", lambda plt, fig: figures.append(fig) or "<svg/>")
    assert charts.timeline(result) == "<svg/>"
    (figure,) = figures
    charts.pyplot().close(figure)  # what it drew stays readable
    (ax,) = figure.axes
    assert tuple(figure.get_size_inches()) == (9, 2.4)
    return ax


def test_timeline_steps_through_the_curve_from_zero_and_marks_the_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ax = _drawn(monkeypatch, _curve(3 * MiB, 5 * MiB, MiB))
    step, peak = ax.lines
    assert list(step.get_xdata()) == [0, 0, 1, 2] and list(step.get_ydata()) == [0, 3, 5, 1]
    assert step.get_drawstyle() == "steps-post" and step.get_color() == "#2c7fb8"
    assert step.get_linewidth() == 1.2
    assert (list(peak.get_xdata()), list(peak.get_ydata())) == ([1], [5.0])
    assert peak.get_marker() == "o" and peak.get_color() == charts.OVER
    (label,) = ax.texts
    assert label.get_text() == "peak +5.00 MiB" and label.xy == (1, 5.0)
    assert (label.xyann, label.anncoords, label.get_fontsize()) == ((6, 0), "offset points", 9)
    assert ax.get_xlim() == (0, 3)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("event", "MiB")
    assert [ax.spines[s].get_visible() for s in ("top", "right", "bottom", "left")] == [
        False,
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("values", "peak"),
    [((MiB,), [0]), ((-MiB,), None), ((2 * MiB, MiB), [0])],
    ids=["one-event", "only-frees", "peak-first"],
)
def test_timeline_marks_a_peak_only_above_the_start(
    monkeypatch: pytest.MonkeyPatch, values: tuple[int, ...], peak: list[int] | None
) -> None:
    ax = _drawn(monkeypatch, _curve(*values))
    assert [list(line.get_xdata()) for line in ax.lines[1:]] == ([peak] if peak else [])
    assert len(ax.texts) == (1 if peak else 0)
    assert ax.get_xlim() == (0, len(values))


def test_timeline_of_a_long_trace_keeps_4000_points_the_peak_and_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = [MiB] * 10_001
    values[1] = 9 * MiB  # between two of the points kept (every 2.5th)
    values[-1] = 3 * MiB  # the last event, after the last point picked (9998): the end level
    ax = _drawn(monkeypatch, _curve(*values))
    xs, ys = list(ax.lines[0].get_xdata()), list(ax.lines[0].get_ydata())
    assert len(xs) == 1 + 4000 + 2 and xs[:5] == [0, 0, 1, 2, 5]
    assert xs[-2:] == [9998, 10_000] and ys[-2:] == [1, 3]
    assert ys[:3] == [0, 1, 9] and max(ys) == 9
    assert ax.get_xlim() == (0, 10_001)


def test_timeline_says_why_there_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert charts.timeline(diagnose.replay([])) == "<p>No allocation history was recorded.</p>"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert charts.timeline(_curve(MiB)) == (
        "<p>No timeline: cgmem report needs matplotlib: "
        "pip install &#x27;pytest-cgmem[report]&#x27;.</p>"
    )


def test_charts_are_agg_drawn_inline_svg_with_text_as_text() -> None:
    """Whatever the user's matplotlib settings: the Agg backend, the package's font size,
    text kept as SVG text; the element alone (no XML header, no metadata), figure closed."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("svg")
    matplotlib.rcParams["font.size"] = 14
    plt = charts.pyplot()
    before = plt.get_fignums()
    assert matplotlib.get_backend().lower() == "agg"
    assert matplotlib.rcParams["font.size"] == 10
    page = charts.timeline(_curve(3 * MiB, 5 * MiB, MiB))
    assert page.startswith("<svg ") and page.rstrip().endswith("</svg>")
    assert "<?xml" not in page and "<metadata" not in page and "<!DOCTYPE" not in page
    assert re.match(r"<svg [^>]*>\s*<defs>", page)  # the metadata gone, nothing in its place
    width = re.match(r'<svg [^>]*width="([0-9.]+)pt"', page)
    assert width is not None and float(width[1]) < 9 * 72  # cropped to what was drawn
    assert re.search(r"<text [^>]*font-size: 9px[^>]*>peak \+5\.00 MiB</text>", page)
    assert re.search(r"<text [^>]*font-size: 10px[^>]*>event</text>", page)
    assert plt.get_fignums() == before


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


# --- what the analysis and the section promise, case by case ---------------------------

DOCS = Path(diagnose.__file__).resolve().parents[2] / "docs"
DEMO = "/tmp/pytest-of-me/pytest-0/test_demo0/test_demo.py"
RUNPY = "/usr/lib/python3.12/runpy.py"  # `python -m pytest`: outside the harness, not hidden


def docs_lines(first: str, count: int) -> list[str]:
    """``count`` lines of docs/diagnostics.md's example, from the one that is ``first``."""
    lines = (DOCS / "diagnostics.md").read_text().splitlines()
    start = lines.index(first)
    return lines[start : start + count]


def segment(total: int, active: list[int], pool: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    blocks = [{"size": s, "state": "active_allocated"} for s in active]
    return {
        "device": 0,
        "segment_pool_id": pool,
        "total_size": total,
        "allocated_size": sum(active),
        "blocks": [*blocks, {"size": 1, "state": "inactive"}],
    }


def test_the_over_budget_example_diagnostics_md_quotes() -> None:
    """docs/diagnostics.md's test_over_budget: pools, then the sites at the peak, a helper's
    site with its caller below it, largest first; no leak, so nothing more."""
    make = stack(frame(DEMO, 7, "make"), frame(DEMO, 13, "test_over_budget"))
    small = stack(frame(DEMO, 12, "test_over_budget"))
    trace = [
        {"action": "segment_alloc", "addr": 0x10, "size": 2 * MiB, "frames": small},
        {"action": "alloc", "addr": 0x10, "size": MiB, "frames": small},
        {"action": "segment_alloc", "addr": 0x20, "size": 256 * MiB, "frames": make},
        {"action": "alloc", "addr": 0x20, "size": 256 * MiB, "frames": make},
        {"action": "free_requested", "addr": 0x20, "size": 256 * MiB, "frames": []},
        {"action": "free_completed", "addr": 0x20, "size": 256 * MiB, "frames": []},
        {"action": "free_requested", "addr": 0x10, "size": MiB, "frames": []},
        {"action": "free_completed", "addr": 0x10, "size": MiB, "frames": []},
    ]
    segments = [
        segment(2 * MiB, [MiB]),
        segment(32 * MiB, [32 * MiB]),
        segment(2 * MiB, []),
        segment(256 * MiB, []),
    ]
    snap = {"segments": segments, "device_traces": [trace]}
    diagnosis = diagnose.diagnose_device(snap, 0, history=True, stacks=2)
    lines = diagnose.render(diagnosis, roots=[os.path.dirname(DEMO)])
    first = "allocator segments at the end of the region by pool (cuda:0):"
    assert lines == docs_lines(first, 6)


def test_the_leak_example_diagnostics_md_quotes() -> None:
    """docs/diagnostics.md's test_leaks: the leaked block by its site, after the peak."""
    line_19 = stack(frame(DEMO, 19, "test_leaks"))
    trace = [
        {"action": "segment_alloc", "addr": 0x30, "size": 48 * MiB, "frames": line_19},
        {"action": "alloc", "addr": 0x30, "size": 48 * MiB, "frames": line_19},
    ]
    segments = [
        segment(32 * MiB, [32 * MiB]),
        segment(2 * MiB, [MiB]),
        segment(48 * MiB, [48 * MiB]),
    ]
    snap = {"segments": segments, "device_traces": [trace]}
    diagnosis = diagnose.diagnose_device(snap, 0, history=True, stacks=2)
    lines = diagnose.render(
        diagnosis, leak=48 * MiB, allocated_start=33 * MiB, roots=[os.path.dirname(DEMO)]
    )
    first = "allocator segments at the end of the region by pool (cuda:0):"
    expected = docs_lines(first, 30)
    start = expected.index(first, 1)  # the second example: test_leaks
    assert lines == expected[start : start + 6]


@pytest.mark.parametrize(
    "path",
    [
        "",
        "??",
        *(
            f"/src/c10/cuda/CUDACachingAllocator{ext}"
            for ext in (".cpp", ".cc", ".cu", ".cuh", ".h", ".hpp", ".c", ".so")
        ),
        "/usr/lib/python3.12/dist-packages/torch/functional.py",
        "C:\\venv\\Lib\\site-packages\\torch\\nn\\modules\\linear.py",
        "/home/me/src/pytest-cgmem/pytest_cgmem/session.py",  # a checkout, not installed
        "/usr/lib/python3.12/site-packages/pytest/__init__.py",
    ],
)
def test_frames_the_hider_skips(path: str) -> None:
    assert make_hider()(path)


@pytest.mark.parametrize(
    "path",
    [TEST, "/repo/native_helpers.py", "/repo/cgmem_tests/test_x.py", "/repo/src/c.py.bak"],
)
def test_frames_the_hider_shows(path: str) -> None:
    assert not make_hider()(path)
    assert not make_hider(["", "/elsewhere"])(path)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # what pytest's runner calls from is the harness, not shown even if not hidden
        (
            [frame(TEST, 5, "test_a"), frame(PYTEST, 159, "call"), frame(RUNPY, 88, "_run")],
            ((TEST, 5, "test_a"),),
        ),
        (
            [
                frame(HELPER, 7, "make"),
                frame("/src/pytest/src/_pytest/python.py", 159, "pytest_pyfunc_call"),
                frame(RUNPY, 88, "_run_code"),
            ],
            ((HELPER, 7, "make"),),
        ),
        # pytest's code inside the test (pytest.approx on tensors) is skipped, not a cut
        (
            [
                frame(TORCH, 1, "forward"),
                frame("/usr/lib/python3.12/site-packages/_pytest/python_api.py", 30, "eq"),
                frame(TEST, 9, "test_close"),
                frame(PYTEST, 159, "pytest_pyfunc_call"),
            ],
            ((TEST, 9, "test_close"),),
        ),
    ],
)
def test_site_stops_at_the_harness(frames: list[dict[str, Any]], expected: Any) -> None:
    assert site_of(frames, 4, make_hider()) == expected


def test_replay_at_the_peak_drops_blocks_freed_before_it() -> None:
    """Live at the peak: allocated before it and not freed (``free_completed``) before it;
    a free only requested (the stream has not finished with it) still holds the block."""
    trace = [
        {"action": "alloc", "addr": 1, "size": 10, "frames": SMALL},
        {"action": "free_completed", "addr": 1, "size": 10},
        {"action": "alloc", "addr": 2, "size": 20, "frames": KEPT},
        {"action": "free_requested", "addr": 2, "size": 20},
        {"action": "alloc", "addr": 3, "size": 5, "frames": BIG},
        {"action": "free_completed", "addr": 2, "size": 20},
        {"action": "oom", "size": 99, "device_free": 0},
        {"action": "segment_free", "addr": 3, "size": 5},
    ]
    result = replay(trace)
    assert (result.peak, result.peak_index) == (25, 4)
    assert sorted(a.addr for a in result.at_peak) == [2, 3]
    assert [a.addr for a in result.at_end] == [3]
    # one point per alloc and free_completed, none for the other actions
    assert result.curve == ((0, 10), (1, 0), (2, 20), (4, 25), (5, 5))
    assert result.ooms == (trace[6],)


def test_replay_curve_stops_at_the_boundary() -> None:
    """Allocations from ``allocs_until`` on are not the region's, and the curve charts the
    region only: an event after the boundary adds no point."""
    trace = [
        {"action": "alloc", "addr": 1, "size": 100, "frames": KEPT},
        {"action": "alloc", "addr": 2, "size": 50, "frames": SMALL},
        {"action": "alloc", "addr": 3, "size": 999, "frames": SMALL},
        {"action": "free_completed", "addr": 2, "size": 50},
        {"action": "free_completed", "addr": 1, "size": 100},
    ]
    result = replay(trace, allocs_until=2)
    assert (result.peak, result.peak_index) == (150, 1)
    assert result.curve == ((0, 100), (1, 150))
    assert (result.events, result.at_end) == (2, ())
    freed_at_the_boundary = [*trace[:2], trace[3], trace[4]]
    assert replay(freed_at_the_boundary, allocs_until=2).curve == ((0, 100), (1, 150))


def test_replay_keeps_the_first_moment_of_the_peak() -> None:
    trace = [
        {"action": "alloc", "addr": 1, "size": 10, "frames": SMALL},
        {"action": "free_completed", "addr": 1, "size": 10},
        {"action": "alloc", "addr": 2, "size": 10, "frames": KEPT},
    ]
    result = replay(trace)
    assert (result.peak, result.peak_index) == (10, 0)
    assert [a.addr for a in result.at_peak] == [1]


def test_an_allocation_recorded_without_frames_has_no_stack() -> None:
    """docs: a site is never blank, but an allocation recorded without frames has none."""
    trace = [
        {"action": "alloc", "addr": 1, "size": 3 * MiB},
        {"action": "alloc", "addr": 2, "size": MiB, "frames": None},
    ]
    snap = {"segments": [], "device_traces": [trace]}
    diagnosis = diagnose.diagnose_device(snap, 0, history=True)
    assert diagnosis.replay is not None
    assert [a.frames for a in diagnosis.replay.at_end] == [(), ()]
    assert diagnose.render(diagnosis)[2:] == [
        "allocation sites live at the peak (cuda:0: +4.00 MiB at event 2 of 2):",
        "      4.00 MiB  2 blocks    (no stack recorded)",
    ]


def test_trace_of_a_snapshot_without_history() -> None:
    snap = hand_built()
    assert diagnose.trace_of(None, 0) == []
    assert diagnose.trace_of({"segments": []}, 0) == []
    assert diagnose.trace_of({"segments": [], "device_traces": None}, 0) == []
    assert diagnose.trace_of(snap, 1) == []
    assert diagnose.trace_of(snap, 0) == snap["device_traces"][0]


def test_segments_by_pool_sorts_by_device_then_default_pool_first() -> None:
    segments = [
        {**segment(4 * MiB, [MiB], (2, 1)), "device": 1},
        segment(8 * MiB, [MiB], (1, 5)),
        {**segment(2 * MiB, [MiB]), "device": 1},
        segment(6 * MiB, [MiB, 2 * MiB, MiB], (1, 0)),
        segment(MiB, [MiB]),
    ]
    pools = diagnose.segments_by_pool({"segments": segments})
    assert [(p.device, p.pool) for p in pools] == [
        (0, (0, 0)),
        (0, (1, 0)),
        (0, (1, 5)),
        (1, (0, 0)),
        (1, (2, 1)),
    ]
    assert pools[1].blocks == (2 * MiB, MiB, MiB)  # largest first
    assert [(p.device, p.pool) for p in diagnose.segments_by_pool({"segments": segments}, 1)] == [
        (1, (0, 0)),
        (1, (2, 1)),
    ]


def test_diagnose_device_defaults_record_no_history() -> None:
    diagnosis = diagnose.diagnose_device(hand_built(), 0)
    assert (diagnosis.history, diagnosis.replay, diagnosis.truncated) == (False, None, False)
    assert (diagnosis.peak_sites, diagnosis.leak_sites) == ((), ())
    text = "\n".join(diagnose.render(diagnosis))
    assert "allocation sites live at the peak (" not in text
    assert text.endswith(
        "  (run with --cgmem-history to see the allocation sites live at the peak)"
    )


def test_diagnose_device_keeps_four_frames_by_default() -> None:
    deep = stack(*(frame(TEST, line, f"f{line}") for line in range(1, 7)))
    snap = {
        "segments": [],
        "device_traces": [[{"action": "alloc", "addr": 1, "size": 8, "frames": deep}]],
    }
    (site,) = diagnose.diagnose_device(snap, 0, history=True).peak_sites
    assert [line for _, line, _ in site.frames] == [1, 2, 3, 4]


def test_diagnose_device_uses_the_hider_given() -> None:
    """The session's hider (the installed torch's directory, ``hidden_dirs``) is the one
    applied: here it hides the helper, so the site is the test's line that called it."""
    default = make_hider()
    diagnosis = diagnose.diagnose_device(
        hand_built(), 0, history=True, stacks=1, hidden=lambda f: f == HELPER or default(f)
    )
    assert diagnosis.peak_sites[0].frames == ((TEST, 12, "test_big"),)


@pytest.mark.parametrize(
    ("entries", "truncated"), [(None, False), (12, True), (13, False), (5, True)]
)
def test_a_full_history_buffer_is_reported(entries: int | None, truncated: bool) -> None:
    """docs/diagnostics.md: with more events than ``--cgmem-history-entries`` the oldest are
    lost and the section says so."""
    snap = hand_built()  # 12 events
    diagnosis = diagnose.diagnose_device(snap, 0, history=True, max_entries=entries)
    assert diagnosis.truncated is truncated
    note = (
        "  note: the history buffer filled up (12 events kept); early events of the region "
        "are lost: raise --cgmem-history-entries"
    )
    assert (note in diagnose.render(diagnosis)) is truncated


def test_a_wrapped_buffer_after_the_boundary_uses_the_earlier_trace() -> None:
    """When the ring buffer wrapped after the snapshot before the leak check, positions in
    the later trace no longer line up: the earlier trace is replayed whole."""
    snap = hand_built()
    earlier = snap["device_traces"][0][:10]
    later = {
        "segments": snap["segments"],
        "device_traces": [[*earlier[1:], *snap["device_traces"][0][10:], earlier[0]]],
    }
    diagnosis = diagnose.diagnose_device(
        later, 0, before_leak_check={"device_traces": [earlier]}, history=True, max_entries=12
    )
    assert diagnosis.truncated
    assert diagnosis.replay is not None
    assert diagnosis.replay.events == 10
    assert sorted(a.size for a in diagnosis.replay.at_end) == [MiB, 2 * MiB, 8 * MiB]
    within = diagnose.diagnose_device(
        later, 0, before_leak_check={"device_traces": [earlier]}, history=True, max_entries=13
    )
    assert not within.truncated
    assert within.replay is not None and within.replay.events == 10


def sites(count: int) -> list[diagnose.Site]:
    return [diagnose.Site(((TEST, n, "t"),), (count - n) * MiB, 1) for n in range(count)]


@pytest.mark.parametrize("count", [9, 10, 11, 12])
def test_site_lines_shows_the_ten_largest_and_sums_the_rest(count: int) -> None:
    lines = diagnose.site_lines(sites(count))
    shown = min(count, 10)
    assert [line.split(":")[-1] for line in lines[:shown]] == [f"{n} in t" for n in range(shown)]
    rest = sum(range(1, count - 9)) * MiB
    more = [f"  {format_size(rest):>12}  in {count - 10} more site(s)"]
    assert lines[shown:] == (more if count > 10 else [])


@pytest.mark.parametrize("distinct", [11, 12, 13, 14])
def test_the_leak_without_history_lists_twelve_sizes(distinct: int) -> None:
    sizes = [(n + 1) * MiB for n in range(distinct)]
    snap = {"segments": [segment(sum(sizes) + MiB, [*sizes, MiB])]}
    text = "\n".join(diagnose.render(diagnose.diagnose_device(snap, 0), leak=MiB))
    listed = ", ".join(f"{n}.00 MiB" for n in range(distinct, max(distinct - 12, 0), -1))
    if distinct <= 12:
        assert f"is among them: {listed} x2\n" in text
    else:
        more = distinct - 12
        assert f"is among them: {listed}, ... ({more} more sizes)\n" in text


def test_the_leak_without_history_or_blocks() -> None:
    text = diagnose.render(diagnose.diagnose_device({"segments": []}, 0), leak=MiB)
    assert text[:4] == [
        "allocator segments at the end of the region by pool (cuda:0):",
        "  (no segments)",
        "active blocks at the end (cuda:0), largest first; the leak of 1.00 MiB is among "
        "them: none",
        "  (0 B was allocated before the region; --cgmem-history names the leaked blocks "
        "and the lines that allocated them)",
    ]


@pytest.mark.parametrize("history", [False, True])
def test_render_with_no_leak_lists_no_leaked_blocks(history: bool) -> None:
    diagnosis = diagnose.diagnose_device(hand_built(), 0, history=history)
    text = "\n".join(diagnose.render(diagnosis))
    assert "leak" not in text and "active blocks at the end" not in text
    assert ("--cgmem-history" in text) is not history
    assert text == "\n".join(diagnose.render(diagnosis, leak=0))


def test_render_names_an_out_of_memory_event() -> None:
    snap = hand_built()
    oom = {"action": "oom", "addr": 0, "size": 3 * 2**30, "device_free": 5 * MiB, "frames": []}
    snap["device_traces"][0].insert(5, oom)
    lines = diagnose.render(diagnose.diagnose_device(snap, 0, history=True))
    assert "  CUDA out of memory: 3.00 GiB requested with 5.00 MiB free on the device" in lines


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        (
            [{"action": "alloc", "addr": 1, "size": 4 * MiB, "frames": KEPT}],
            "allocation sites live at the peak (cuda:0: +4.00 MiB at event 1 of 1):",
        ),
        (
            [{"action": "free_completed", "addr": 9, "size": MiB}],
            "allocation sites live at the peak (cuda:0): no allocation in the history",
        ),
        ([], "allocation sites live at the peak (cuda:0): no allocation in the history"),
    ],
)
def test_render_names_the_peak_event(trace: list[dict[str, Any]], expected: str) -> None:
    snap = {"segments": [], "device_traces": [trace]}
    lines = diagnose.render(diagnose.diagnose_device(snap, 0, history=True))
    assert lines[2] == expected


def test_short_path_skips_empty_roots() -> None:
    inside = os.path.join(os.getcwd(), "tests", "test_x.py")
    assert diagnose.short_path(inside, ["", "/elsewhere"]) == inside
    assert diagnose.short_path(inside, ["", os.getcwd()]) == os.path.join("tests", "test_x.py")


@pytest.mark.parametrize(
    ("raw", "pool"),
    [((3, 1), (3, 1)), ([2, 0], (2, 0)), (None, (0, 0)), ((1,), (0, 0)), (("a", "b"), (0, 0))],
)
def test_pool_of_reads_the_pool_id_or_the_default(raw: Any, pool: tuple[int, int]) -> None:
    assert diagnose.pool_of({"segment_pool_id": raw}) == pool
    assert diagnose.pool_of({}) == diagnose.DEFAULT_POOL


@pytest.mark.parametrize("history", [False, True])
def test_a_leak_of_one_byte_is_a_leak(history: bool) -> None:
    trace = [{"action": "alloc", "addr": 1, "size": 1, "frames": KEPT}]
    snap = {"segments": [segment(512, [512, 512, 512])], "device_traces": [trace]}
    diagnosis = diagnose.diagnose_device(snap, 0, history=history)
    text = "\n".join(diagnose.render(diagnosis, leak=1))
    if history:
        assert "leaked blocks by allocation site (cuda:0: 1 B in 1 block(s) allocated" in text
    else:
        assert "the leak of 1 B is among them: 512 B x3\n" in text


def test_group_sites_breaks_ties_by_count_then_stack() -> None:
    def alloc(addr: int, size: int, line: int) -> Alloc:
        return Alloc(addr, size, tuple(stack(frame(TEST, line, "t"))), addr)

    allocs = [alloc(1, 8, 20), alloc(2, 8, 10), alloc(3, 4, 30), alloc(4, 4, 30)]
    sites = group_sites(allocs, 1, make_hider())
    assert [(s.frames[0][1], s.bytes, s.count) for s in sites] == [
        (30, 8, 2),
        (10, 8, 1),
        (20, 8, 1),
    ]


def test_leaked_sizes_are_listed_largest_first() -> None:
    trace = [
        {"action": "alloc", "addr": 1, "size": MiB, "frames": SMALL},
        {"action": "alloc", "addr": 2, "size": 3 * MiB, "frames": KEPT},
    ]
    diagnosis = diagnose.diagnose_device({"device_traces": [trace]}, 0, history=True)
    (line,) = [x for x in diagnose.render(diagnosis, leak=4 * MiB) if x.startswith("leaked")]
    assert line.endswith("in the region and still live): 3.00 MiB, 1.00 MiB")


def test_fields_missing_from_an_event_frame_or_segment_count_as_nothing() -> None:
    """Plain dicts shaped like torch's: a missing address or size is 0, a missing device 0,
    a missing file or function ``?``, so a partial record is still read consistently."""
    assert diagnose.frame_key({}) == ("?", 0, "?")
    assert diagnose.made_by_plugin([{}, frame(PLUGIN, 1, "hook")], make_hider())
    trace: list[dict[str, Any]] = [
        {"action": "alloc", "frames": SMALL},
        {"action": "alloc", "size": 6},
        {"action": "free_completed"},
        {"action": "alloc", "addr": 7, "size": 10, "frames": KEPT},
        {"action": "free_completed", "addr": 99},
    ]
    result = replay(trace)
    assert (result.peak, result.peak_index) == (10, 3)
    assert [a.addr for a in result.at_peak] == [7]
    assert [a.addr for a in result.at_end] == [7]
    assert result.curve[-1] == (4, 10)
    segments = [
        {"blocks": [{"state": "active_allocated"}, {"state": "active_allocated", "size": 3}]}
    ]
    (pool,) = diagnose.segments_by_pool({"segments": segments}, 0)
    assert (pool.device, pool.pool, pool.segments) == (0, (0, 0), 1)
    assert (pool.reserved, pool.allocated, pool.blocks) == (0, 0, (3, 0))
    snap = {"segments": [], "device_traces": [[{"action": "oom"}]]}
    lines = diagnose.render(diagnose.diagnose_device(snap, 0, history=True))
    assert "  CUDA out of memory: 0 B requested with 0 B free on the device" in lines
