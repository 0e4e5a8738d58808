"""What graph logs and capture sweeps hand on as plain data (``to_dict``), and their text.

No GPU: the captures are given to a log the way the tracking gives them; the figures
themselves are measured in tests/gpu.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
from pytest_cgmem.cuda import graphs

MiB = 2**20


class FakeGraph:
    """Something a log can hold a weak reference to (a CUDAGraph stands here)."""


def _log() -> tuple[graphs.GraphLog, list[FakeGraph]]:
    log = graphs.GraphLog()
    kept = [FakeGraph(), FakeGraph(), FakeGraph()]
    log.label(256)
    log._on_capture(kept[0], 0, (0, 1), MiB, 22 * MiB, 24 * MiB, 0.002)
    log.label("bs=128")
    log._on_capture(kept[1], 0, (0, 1), MiB // 2, 0, 0, 0.001)
    log.label(object())
    log._on_capture(kept[2], 1, (0, 2), None, None, None, 0.003)  # cudaMallocAsync-style
    log._on_replay(kept[0])
    log._on_replay(kept[0])
    log._on_replay(kept[2])
    return log, kept


def test_capture_to_dict() -> None:
    log, _ = _log()
    assert log.captures[0].to_dict() == {
        "number": 1,
        "device": 0,
        "pool": [0, 1],
        "allocated": MiB,
        "reserved": 22 * MiB,
        "driver": 24 * MiB,
        "seconds": 0.002,
        "label": 256,
        "replays": 2,
    }
    third = log.captures[2].to_dict()
    assert third["allocated"] is None and third["reserved"] is None and third["driver"] is None
    assert third["label"].startswith("<object object at")  # not JSON: its str


@pytest.mark.parametrize(
    ("label", "size"),
    [
        (2**63, "9223372036854775808"),
        (-(2**63), "-9223372036854775808"),
        (10**5000, "an integer of about 5000 digits"),
        (2**63 - 1, 2**63 - 1),
    ],
    ids=["beyond-int64", "below-int64", "huge", "largest"],
)
def test_a_label_beyond_what_a_run_file_holds_is_kept_as_text(label: int, size: object) -> None:
    """A capture labelled with an int beyond 2**63 - 1 made the log's region one that the
    run file refused (the test's figures left out, the run failed at its end); one of over
    4300 digits raised ValueError from the log's text. Kept as text, as any label JSON
    cannot carry is."""
    from pytest_cgmem.results.runfile import plain_region, region_problem

    log, kept = graphs.GraphLog(), FakeGraph()
    log.label(label)
    log._on_capture(kept, 0, (0, 1), MiB, 2 * MiB, None, 0.001)
    assert log.captures[0].to_dict()["label"] == size
    assert f"[{size}]" in log.describe()
    region = log.region("graphs")
    assert region.extra["graph_figures"]["sizes"][0]["size"] == size
    assert region_problem(plain_region(region)) is None


def test_log_to_dict_is_json_and_has_pools_per_device() -> None:
    log, _kept = _log()
    data = log.to_dict()
    json.dumps(data)
    assert data["mechanism"] == graphs.mechanism().name
    assert [c["number"] for c in data["captures"]] == [1, 2, 3]
    assert data["replays"] == 3
    assert data["replays_by_device"] == [{"device": 0, "replays": 2}, {"device": 1, "replays": 1}]
    # never measured: the pools are named, their bytes unknown
    assert data["pools"] == [
        {"device": 0, "pool": [0, 1], "bytes": None},
        {"device": 1, "pool": [0, 2], "bytes": None},
    ]
    assert data["held_at_exit"] == [] and data["pools_unavailable"] is None
    log._pool_figures = {(0, (0, 1)): 22 * MiB}  # as a measurement leaves it
    log.held_at_exit = {(0, 1): 22 * MiB}
    data = log.to_dict()
    assert data["pools"][0]["bytes"] == 22 * MiB
    assert data["pools"][1]["bytes"] == 0  # measured and gone
    assert data["held_at_exit"] == [{"pool": [0, 1], "bytes": 22 * MiB}]


def test_unknown_allocator_figures_make_the_totals_unknown() -> None:
    log, _kept = _log()
    assert log.reserved is None
    assert log.driver is None
    assert "+n/a reserved, +n/a allocated, driver +n/a" in log.captures[2].describe()
    log.captures.pop()
    assert log.reserved == 22 * MiB and log.driver == 24 * MiB


def test_describe_names_unavailable_pools() -> None:
    log, _kept = _log()
    log.pools_unavailable = "cgmem: CUDA graph pool bytes are unavailable here: why"
    assert log.describe().endswith("  pool bytes: CUDA graph pool bytes are unavailable here: why")


def _sweep(pool_bytes: int | None = 20 * MiB) -> graphs.SweepResult:
    captures = {
        64: graphs.Capture(1, 0, (0, 1), 4 * MiB, 20 * MiB, 22 * MiB, 0.004, 64),
        8: graphs.Capture(2, 0, (0, 1), MiB, 0, None, 0.001, 8),
    }
    return graphs.SweepResult(
        (64, 8), (0, 1), pool_bytes, 0.005, 0.01, captures, {}, {}, {}, None, 0.0004, 30 * MiB
    )


def test_sweep_per_size_and_to_dict() -> None:
    result = _sweep()
    assert result.per_size() == [
        {
            "size": 64,
            "bytes": 20 * MiB,
            "driver": 22 * MiB,
            "allocated": 4 * MiB,
            "seconds": 0.004,
            "number": 1,
        },
        {"size": 8, "bytes": 0, "driver": None, "allocated": MiB, "seconds": 0.001, "number": 2},
    ]
    data = result.to_dict()
    json.dumps(data)
    assert data["sizes"] == [64, 8]
    assert data["pool"] == [0, 1]
    assert data["pool_bytes"] == 20 * MiB
    assert data["driver_total"] == 30 * MiB
    assert data["per_size"] == result.per_size()
    assert (data["seconds"], data["warmup_seconds"], data["tracking_seconds"]) == (
        0.005,
        0.01,
        0.0004,
    )


def test_sweep_table_says_n_a_for_unknown_figures() -> None:
    result = _sweep(pool_bytes=None)
    result.captures[64].reserved = None
    table = result.table()
    assert "pool (0, 1): n/a (driver +30.00 MiB)" in table
    assert table.splitlines()[1].split()[:2] == ["64", "n/a"]


# the regions a log and a sweep add to their test (tests/unit/test_graph_figures.py reads them)
def test_log_region_has_graph_metrics_per_device_and_figures() -> None:
    log, _kept = _log()
    log._pool_figures = {(0, (0, 1)): 22 * MiB, (1, (0, 2)): 0}  # as measured at stop
    region = log.region("graphs")
    assert region.label == "graphs" and region.error is None
    assert [(d.index, d.known()) for d in region.devices] == [
        (0, {"graph_pool": 22 * MiB, "graphs": 2, "replays": 2}),
        (1, {"graph_pool": 0, "graphs": 1, "replays": 1}),
    ]
    figures = region.extra["graph_figures"]
    assert figures["captures"] == 3 and figures["replays"] == 3
    assert [s["size"] for s in figures["sizes"]][:2] == [256, "bs=128"]
    json.dumps(region.to_dict())


def test_log_region_after_an_error_leaves_pools_unmeasured() -> None:
    log, _kept = _log()
    region = log.region("graphs", ValueError("boom\nmore"))
    assert region.error == "ValueError: boom"
    assert [d.graph_pool for d in region.devices] == [None, None]
    assert [d.graphs for d in region.devices] == [2, 1]


def test_sweep_region() -> None:
    captures = {
        64: graphs.Capture(1, 0, (0, 9), MiB, 4 * MiB, 5 * MiB, 0.01, 64),
        32: graphs.Capture(2, 0, (0, 9), MiB, 0, None, 0.01, 32),
    }
    sweep = graphs.SweepResult((64, 32), (0, 9), 4 * MiB, 0.02, 0.1, captures, {}, {}, {})
    region = sweep.region("prefill")
    (device,) = region.devices
    assert device.known() == {"graph_pool": 4 * MiB, "graphs": 2, "replays": 0}
    assert region.extra["graph_figures"]["sizes"] == [
        {"size": 64, "bytes": 4 * MiB, "driver": 5 * MiB, "captures": 1},
        {"size": 32, "bytes": 0, "driver": None, "captures": 1},
    ]
    assert region.seconds == pytest.approx(0.12)


def test_a_dropped_sweep_releases_its_outputs_before_its_graphs() -> None:
    """Captured outputs are freed while their graphs still exist."""
    released: list[str] = []

    class Tracked:
        def __init__(self, name: str) -> None:
            self.name = name

        def __del__(self) -> None:
            released.append(self.name)

    result = graphs.SweepResult(
        (8,), None, None, 0.0, 0.0, {}, {8: Tracked("output")}, {}, {8: Tracked("graph")}
    )
    del result
    assert released == ["output", "graph"]


def test_pool_figures_before_cuda_starts_read_no_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before CUDA starts, a device's stats raise "Invalid device argument" (seen on an
    H100): pools then hold nothing, and no device is asked. tests/gpu/test_graphs.py
    runs this in a fresh process on the GPU."""
    from pytest_cgmem.cuda import allocator

    def refuse(*_: object) -> None:
        raise RuntimeError("Invalid device argument")

    monkeypatch.setattr(allocator, "cuda_initialized", lambda: False)
    monkeypatch.setattr(allocator, "device_count", lambda: 1)
    for name in ("stats", "settle_and_empty_cache", "pool_reserved", "clear_cublas_workspaces"):
        monkeypatch.setattr(allocator, name, refuse)
    log, kept = graphs.GraphLog(), FakeGraph()
    log._on_capture(kept, 0, (0, 1), MiB, 2 * MiB, None, 0.001)
    assert log.pool_bytes() == {(0, 1): 0}
    assert graphs.pool_bytes((0, 1)) == 0
    assert log.figures(0)["graph_pool"] == 0
