"""The order in which torch's global graph hooks (2.14+) fire, and what a log records.

torch calls the hooks from ``CUDAGraph``'s own methods (the wheels' ``torch/cuda/graphs.py``):
``capture_begin`` -> capture-start hook; ``capture_end`` -> ``capture_end_pre`` ->
capture-end hook -> ``instantiate`` (keep_graph=False) -> instantiate hook ->
``capture_end_post``; ``replay`` -> (lazy ``instantiate``) -> replay-start hook -> launch ->
replay-end hook in a ``finally``. These tests drive the plugin's callbacks in those orders
with stand-in readings, on any torch and without a GPU: they prove the bookkeeping (which
reading goes where, when a capture is recorded), not the figures a GPU gives, which
tests/gpu/test_graph_mechanisms.py measures.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
from pytest_cgmem.cuda import allocator, graphs


class Graph:
    def __init__(self, keep_graph: bool = False, pool: tuple[int, int] = (1, 0)) -> None:
        self._keep_graph = keep_graph
        self._pool = pool

    def pool(self) -> tuple[int, int]:
        return self._pool


class Readings:
    """Allocator and NVML readings handed out in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.allocator: list[tuple[int, int]] = []
        self.free: list[int | None] = []
        monkeypatch.setattr(allocator, "current_device", lambda: 0)
        monkeypatch.setattr(allocator, "allocated_reserved", lambda index: self.allocator.pop(0))
        monkeypatch.setattr(allocator, "is_async_backend", lambda: False)
        monkeypatch.setattr(graphs, "_find_nvml_handle", lambda device: None)

        class Meter:
            def device_free(meter, index: int) -> int | None:
                return self.free.pop(0)

            def has_handle(meter, index: int) -> bool:
                return True

        monkeypatch.setattr(graphs, "nvml", lambda: Meter())


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh tracker with one listening log, nothing installed in torch."""
    tracker = graphs._Hooks()
    log = graphs.GraphLog()
    tracker.listeners.append(log)
    tracker.log = log
    tracker.readings = Readings(monkeypatch)
    return tracker


def test_capture_end_then_instantiate(hooks: Any) -> None:
    hooks.readings.allocator += [(100, 1000), (150, 1100)]
    hooks.readings.free += [10_000, 9_700]
    g = Graph()
    hooks._hook_capture_start(g)
    assert hooks.capturing == 1
    hooks._hook_capture_end(g)
    assert hooks.log.captures == [] and hooks.capturing == 0  # waits for instantiation
    hooks._hook_instantiate(g)
    (capture,) = hooks.log.captures
    assert (capture.allocated, capture.reserved, capture.driver) == (50, 100, 300)
    assert capture.pool == (1, 0) and capture.device == 0
    assert hooks.pending == {}
    hooks._hook_instantiate(g)  # a later instantiation records nothing more
    assert len(hooks.log.captures) == 1


def test_keep_graph_is_recorded_at_capture_end(hooks: Any) -> None:
    hooks.readings.allocator += [(0, 0), (16, 20)]
    hooks.readings.free += [500, 480]
    g = Graph(keep_graph=True)
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    (capture,) = hooks.log.captures
    assert (capture.allocated, capture.reserved, capture.driver) == (16, 20, 20)
    hooks._hook_instantiate(g)  # the lazy instantiation at its first replay
    assert len(hooks.log.captures) == 1


def test_split_capture_end_is_recorded_at_instantiation(hooks: Any) -> None:
    """capture_end_pre(); instantiate(); capture_end_post(): no capture-end hook fires."""
    hooks.readings.allocator += [(0, 0), (8, 8)]
    hooks.readings.free += [100, 90]
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_instantiate(g)
    (capture,) = hooks.log.captures
    assert (capture.allocated, capture.reserved, capture.driver) == (8, 8, 10)
    assert hooks.capturing == 0


def test_driver_unknown_where_nvml_cannot_say(hooks: Any) -> None:
    hooks.readings.allocator += [(0, 0), (8, 8)]
    hooks.readings.free += [None, 90]
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    assert hooks.log.captures[0].driver is None


def test_a_failing_reading_leaves_the_capture_out(hooks: Any) -> None:
    g = Graph()
    hooks.readings.free += [1]
    hooks._hook_capture_start(g)  # no allocator reading queued: it raises IndexError
    assert isinstance(hooks.last_error, IndexError)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    assert hooks.log.captures == [] and hooks.capturing == 0


def test_a_sweep_passes_through(hooks: Any) -> None:
    hooks.busy = True
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    hooks._hook_replay_start(g)
    hooks._hook_replay_end(g)
    assert hooks.log.captures == [] and hooks.log.replays == 0


def test_replays_count_once_enqueued(hooks: Any) -> None:
    g = Graph()
    hooks._hook_replay_start(g)
    hooks._hook_replay_end(g)
    assert hooks.log.replays == 1
    try:  # a launch that raised: torch runs the end hook in a finally
        hooks._hook_replay_start(g)
        try:
            raise RuntimeError("launch failed")
        finally:
            hooks._hook_replay_end(g)
    except RuntimeError:
        pass
    assert hooks.log.replays == 1
    try:  # replayed inside someone's except block: that exception is not the launch's
        raise KeyError("theirs")
    except KeyError:
        hooks._hook_replay_start(g)
        hooks._hook_replay_end(g)
    assert hooks.log.replays == 2
    assert hooks.replaying == {}


def test_unknown_allocator_figures_under_cudamallocasync(
    hooks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(allocator, "is_async_backend", lambda: True)
    hooks.readings.allocator += [(0, 0), (0, 0)]
    hooks.readings.free += [100, 60]
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    capture = hooks.log.captures[0]
    assert (capture.allocated, capture.reserved, capture.driver) == (None, None, 40)


def test_pool_read_again_once_instantiated(hooks: Any) -> None:
    class LatePool(Graph):
        calls = 0

        def pool(self) -> tuple[int, int]:
            LatePool.calls += 1
            if LatePool.calls == 1:
                raise RuntimeError(
                    "Called CUDAGraph::pool() without a preceding successful capture."
                )
            return (2, 0)

    hooks.readings.allocator += [(0, 0), (8, 8)]
    hooks.readings.free += [100, 90]
    g = LatePool()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    assert hooks.log.captures[0].pool == (2, 0)


@pytest.fixture
def async_reads(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """cudaMallocAsync, with every allocator reading logged by the phase it came in:
    ``(phase, reads)``; a test sets ``phase[0]`` as the capture goes on."""
    monkeypatch.setattr(allocator, "is_async_backend", lambda: True)
    phase = ["before"]
    reads: list[str] = []

    def reading(index: int) -> tuple[int, int]:
        reads.append(phase[0])
        return (8, 8)

    monkeypatch.setattr(allocator, "allocated_reserved", reading)
    return phase, reads


def test_no_allocator_reading_inside_a_capture_under_cuda_malloc_async(
    hooks: Any, async_reads: tuple[list[str], list[str]]
) -> None:
    """Under cudaMallocAsync the allocator's stats query the driver's pool, which
    invalidates a capture: the capture-start hook reads nothing from the allocator, the
    capture-end hook (capture over) still may, and the capture's figures are None."""
    phase, reads = async_reads
    hooks.readings.free += [100, 90]
    g = Graph()
    phase[0] = "capturing"  # torch fires the capture-start hook once capture has begun
    hooks._hook_capture_start(g)
    phase[0] = "ended"
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    assert "capturing" not in reads
    (capture,) = hooks.log.captures
    assert (capture.allocated, capture.reserved, capture.driver) == (None, None, 10)


def test_the_wrappers_read_nothing_inside_a_capture_under_cuda_malloc_async(
    hooks: Any, async_reads: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDAGraph method wrappers (torch < 2.14): the same rule for ``_begun``."""
    monkeypatch.setattr(allocator, "free_bytes", lambda index: 1000)
    phase, reads = async_reads
    g = Graph()
    hooks._before(g, (), {})
    phase[0] = "capturing"  # the wrapper calls _begun once capture_begin has returned
    hooks._begun(g)
    phase[0] = "ended"
    hooks._after(g)
    assert "capturing" not in reads
    (capture,) = hooks.log.captures
    assert (capture.allocated, capture.reserved) == (None, None)
