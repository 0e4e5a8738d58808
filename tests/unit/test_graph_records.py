"""What graph logs and capture sweeps hand on as plain data (``to_dict``), and their text.

No GPU: the captures are given to a log the way the tracking gives them; the figures
themselves are measured in tests/gpu.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
from pytest_cgmem.cuda import graphs
from pytest_cgmem.failures import FigureUnavailable, PoolNotReleased
from pytest_cgmem.units import CgmemUsageError

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
    assert data["seconds"] == 0.0  # never listened
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
    unreplayed, kept = graphs.GraphLog(), FakeGraph()
    unreplayed._on_capture(kept, 0, (0, 1), MiB, MiB, None, 0.001)
    (device,) = unreplayed.region("graphs", ValueError("boom")).devices
    assert (device.graphs, device.replays) == (1, 0)


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
    assert region.extra["graph_figures"]["pools"] == [
        {"device": 0, "pool": [0, 9], "bytes": 4 * MiB}
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


def test_a_capture_without_a_label_keeps_none() -> None:
    log, kept = graphs.GraphLog(), FakeGraph()
    log._on_capture(kept, 0, (0, 1), MiB, MiB, None, 0.001)
    assert log.captures[0].to_dict()["label"] is None
    assert log.region("graphs").extra["graph_figures"]["sizes"] == []


# pools measured (the allocator's readings stood in for) -------------------------------
class Pools:
    """The allocator as pool measurements see it: the bytes each (device, pool) holds,
    how often the pools were read and the cuBLAS workspaces released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pytest_cgmem.cuda import allocator

        self.held: dict[tuple[int, tuple[int, int]], int] = {}
        self.unavailable = ""
        self.reads = 0
        self.released = 0
        monkeypatch.setattr(allocator, "cuda_initialized", lambda: True)
        monkeypatch.setattr(allocator, "is_async_backend", lambda: False)
        monkeypatch.setattr(allocator, "settle_and_empty_cache", lambda: None)
        monkeypatch.setattr(allocator, "pool_reserved", self._read)
        monkeypatch.setattr(allocator, "clear_cublas_workspaces", self._release)

    def _read(self) -> dict[tuple[int, tuple[int, int]], int]:
        self.reads += 1
        if self.unavailable:
            raise FigureUnavailable(self.unavailable)
        return dict(self.held)

    def _release(self) -> None:
        self.released += 1


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Pools:
    return Pools(monkeypatch)


def test_a_log_releases_the_workspaces_only_once_a_pool_s_graphs_are_gone(pools: Pools) -> None:
    log, kept = graphs.GraphLog(), FakeGraph()
    log._on_capture(kept, 0, (0, 1), MiB, 2 * MiB, None, 0.001)
    pools.held[(0, (0, 1))] = 2 * MiB
    assert log.figures(0) == {"graphs": 1, "replays": 0, "graph_pool": 2 * MiB}
    assert (pools.reads, pools.released) == (1, 0)
    del kept
    assert log.pool_bytes() == {(0, 1): 2 * MiB}
    assert pools.released == 1


def test_figures_of_a_log_with_no_pool_to_measure_are_zero(pools: Pools) -> None:
    assert graphs.GraphLog().figures(0) == {"graphs": 0, "replays": 0, "graph_pool": 0}
    log, kept = graphs.GraphLog(), FakeGraph()
    log._on_capture(kept, 0, None, MiB, MiB, None, 0.001)  # its pool could not be read
    assert log.figures(0) == {"graphs": 1, "replays": 0, "graph_pool": 0}
    assert pools.reads == 0


@pytest.mark.parametrize(
    ("held", "release_workspaces", "released"),
    [(2 * MiB, True, 1), (2 * MiB, False, 0), (0, True, 0), (None, True, 0)],
    ids=["held", "held-not-released", "empty", "unlisted"],
)
def test_pools_bytes_releases_the_workspaces_only_when_a_pool_still_holds_memory(
    pools: Pools, held: int | None, release_workspaces: bool, released: int
) -> None:
    pools.held[(0, (0, 2))] = MiB  # another pool: not ours to judge
    if held is not None:
        pools.held[(0, (0, 1))] = held
    figure = graphs.pools_bytes([(0, 1)], release_workspaces=release_workspaces)
    assert figure == {(0, 1): held or 0}
    assert pools.released == released


def _captured(log: graphs.GraphLog, kept: FakeGraph) -> None:
    log._on_capture(kept, 0, (0, 1), MiB, 2 * MiB, None, 0.001)
    log._on_replay(kept)


@pytest.mark.parametrize("how", ["stop", "track-raises", "expect_replay", "expect_replay-raises"])
def test_pools_are_not_measured_where_a_log_is_told_not_to(pools: Pools, how: str) -> None:
    """``stop(measure_pools=False)``; ``track()`` whose body raised; ``expect_replay()``."""
    pools.held[(0, (0, 1))] = 2 * MiB
    kept = FakeGraph()
    if how == "stop":
        log = graphs.GraphLog().start()
        _captured(log, kept)
        log.stop(measure_pools=False)
    elif how == "expect_replay":
        with graphs.expect_replay() as log:
            _captured(log, kept)
    else:
        context = graphs.track() if how == "track-raises" else graphs.expect_replay()
        with pytest.raises(KeyError), context as log:
            _captured(log, kept)
            raise KeyError("x")
    assert pools.reads == 0 and log.held_at_exit == {}
    with graphs.track() as measured:
        _captured(measured, kept)
    assert measured.held_at_exit == {(0, 1): 2 * MiB} and pools.reads == 1


@pytest.mark.parametrize(
    ("held", "message"),
    [
        (
            {(0, (0, 1)): 2 * MiB, (0, (0, 2)): 0, (1, (0, 3)): MiB},
            "2 CUDA graph pools still hold device memory after the cache was emptied: "
            "pool (0, 1) holds 2.00 MiB, pool (0, 3) holds 1.00 MiB",
        ),
        (
            {(0, (0, 3)): MiB},
            "1 CUDA graph pool still holds device memory after the cache was emptied: "
            "pool (0, 3) holds 1.00 MiB",
        ),
    ],
    ids=["two", "one"],
)
def test_assert_pools_released_names_each_pool_that_still_holds_memory(
    pools: Pools, held: dict[tuple[int, tuple[int, int]], int], message: str
) -> None:
    pools.held.update(held)
    with pytest.raises(PoolNotReleased) as info:
        graphs.assert_pools_released((0, 1), (0, 2), (0, 3))
    assert str(info.value) == (
        f"cgmem: {message}; a graph (or a tensor it produced) from the pool is still alive"
    )
    assert info.value.held == {pid: size for (_, pid), size in held.items() if size}
    pools.held.clear()
    graphs.assert_pools_released((0, 1), (0, 2), (0, 3))


def test_a_log_stopped_where_pools_are_unavailable_says_why(pools: Pools) -> None:
    pools.unavailable = "cgmem: CUDA graph pool bytes are unavailable here: async"
    with graphs.track() as log:
        _captured(log, FakeGraph())
    assert log.pools_unavailable == pools.unavailable and log.held_at_exit == {}
    assert log.describe().endswith(
        "  pool bytes: CUDA graph pool bytes are unavailable here: async"
    )


def test_a_sweep_replays_and_releases_its_graphs() -> None:
    replayed: list[int] = []

    class Replayable:
        def __init__(self, size: int) -> None:
            self.size = size

        def replay(self) -> None:
            replayed.append(self.size)

    result = _sweep()
    result.graphs.update({64: Replayable(64), 8: Replayable(8)})
    result.outputs.update({64: "out64", 8: "out8"})
    result.inputs.update({64: "in64", 8: "in8"})
    assert result.replay(8) == "out8" and replayed == [8]
    assert result.bytes == {64: 20 * MiB, 8: 0}
    assert result.driver_bytes == {64: 22 * MiB, 8: None}
    assert [result.padded(n) for n in (1, 8, 9, 64, 65)] == [8, 8, 64, 64, None]
    result.release()
    assert result.graphs == result.outputs == result.inputs == {}


class _Replayed:
    def __init__(self) -> None:
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1


def test_a_sweep_replays_a_captured_size_and_names_the_captured_ones_for_another() -> None:
    graph = _Replayed()
    sweep = _sweep()
    sweep.graphs.update({64: graph, 8: _Replayed()})
    sweep.outputs.update({64: "out64", 8: "out8"})
    assert sweep.replay(64) == "out64" and graph.replays == 1
    for size in (12, "64", True, 64.0):
        with pytest.raises(CgmemUsageError) as info:
            sweep.replay(size)  # type: ignore[arg-type]
        assert str(info.value) == (
            f"replay: no graph captured at size {size!r} to replay (the sweep captured 8, 64); "
            "padded(size) gives the captured size a runtime size pads to"
        )
    sweep.release()
    with pytest.raises(CgmemUsageError, match=r"\(its graphs were released\)"):
        sweep.replay(64)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (0, "runtime: sizes are >= 1, got 0"),
        (True, "runtime: sizes are whole numbers, got True"),
        ("8", "runtime: sizes are whole numbers, got '8'"),
    ],
)
def test_a_sweep_pads_only_a_runtime_size(size: object, message: str) -> None:
    assert _sweep().padded(9) == 64
    with pytest.raises(CgmemUsageError) as info:
        _sweep().padded(size)  # type: ignore[arg-type]
    assert str(info.value) == message
