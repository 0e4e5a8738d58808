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

import time
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


class NoPoolYet(Graph):
    """A graph whose pool cannot be read at capture end (keep_graph=True, older torch)."""

    def pool(self) -> tuple[int, int]:
        raise RuntimeError("Called CUDAGraph::pool() without a preceding successful capture.")


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
    t0 = time.perf_counter()
    hooks._hook_capture_start(g)
    assert hooks.capturing == 1
    hooks._hook_capture_end(g)
    assert hooks.log.captures == [] and hooks.capturing == 0  # waits for instantiation
    hooks._hook_instantiate(g)
    took = time.perf_counter() - t0
    (capture,) = hooks.log.captures
    assert (capture.allocated, capture.reserved, capture.driver) == (50, 100, 300)
    assert capture.pool == (1, 0) and capture.device == 0
    assert 0 < capture.seconds <= took
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


def test_a_graph_that_does_not_say_keep_graph_is_recorded_at_instantiation(hooks: Any) -> None:
    class Bare:
        def pool(self) -> tuple[int, int]:
            return (1, 0)

    hooks.readings.allocator += [(0, 0), (8, 8)]
    hooks.readings.free += [100, 90]
    g = Bare()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    assert hooks.log.captures == []
    hooks._hook_instantiate(g)
    assert [c.reserved for c in hooks.log.captures] == [8]


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


@pytest.mark.parametrize("free", [[None, 90], [100, None]], ids=["at-start", "at-end"])
def test_driver_unknown_where_nvml_cannot_say(hooks: Any, free: list[int | None]) -> None:
    hooks.readings.allocator += [(0, 0), (8, 8)]
    hooks.readings.free += free
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    (capture,) = hooks.log.captures
    assert capture.driver is None and capture.reserved == 8


def test_a_failing_reading_leaves_the_capture_out(hooks: Any) -> None:
    g = Graph()
    hooks.readings.free += [1]
    hooks._hook_capture_start(g)  # no allocator reading queued: it raises IndexError
    assert isinstance(hooks.last_error, IndexError)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    assert hooks.log.captures == [] and hooks.capturing == 0


def test_a_reading_failing_at_capture_end_leaves_the_capture_out(hooks: Any) -> None:
    hooks.readings.allocator += [(0, 0)]  # none left for capture end: it raises IndexError
    hooks.readings.free += [100, 90]
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    assert isinstance(hooks.last_error, IndexError)
    assert hooks.log.captures == [] and hooks.pending == {}


def test_a_sweep_passes_through(hooks: Any) -> None:
    hooks.busy = True
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    hooks._hook_replay_start(g)
    hooks._hook_replay_end(g)
    assert hooks.log.captures == [] and hooks.log.replays == 0
    assert hooks.pending == {} and hooks.replaying == {} and hooks.last_error is None


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


# the CUDAGraph method wrappers (torch < 2.14, and torch.accelerator.Graph) ---------------
def _wrappers(hooks: Any) -> tuple[Any, Any, Any]:
    """``capture_begin``, ``capture_end`` and ``replay`` as the tracker wraps them, around
    methods that do nothing."""
    return (
        hooks._wrap_begin(lambda graph, *args, **kwargs: None),
        hooks._wrap_end(lambda graph: None),
        hooks._wrap_replay(lambda graph: None),
    )


@pytest.fixture
def driver_reads(hooks: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The wrappers' cudaMemGetInfo readings, handed out from ``hooks.readings.free``: the
    number of captures underway at each."""
    underway: list[int] = []

    def free_bytes(index: int) -> int | None:
        underway.append(hooks.capturing)
        return hooks.readings.free.pop(0)

    monkeypatch.setattr(allocator, "free_bytes", free_bytes)
    return underway


def test_the_wrappers_record_a_capture(hooks: Any, driver_reads: list[int]) -> None:
    """The pool given to ``capture_begin`` stands where the graph cannot say its own."""
    hooks.readings.allocator += [(100, 1000), (150, 1100)]
    hooks.readings.free += [10_000, 9_700]
    begin, end, _ = _wrappers(hooks)
    g = NoPoolYet()
    t0 = time.perf_counter()
    begin(g, (3, 0))
    end(g)
    took = time.perf_counter() - t0
    (capture,) = hooks.log.captures
    assert (capture.allocated, capture.reserved, capture.driver) == (50, 100, 300)
    assert capture.pool == (3, 0)
    assert 0 < capture.seconds <= took
    assert hooks.pending == {} and hooks.capturing == 0 and driver_reads == [0, 0]


@pytest.mark.parametrize("inner_ends_first", [True, False], ids=["nested", "interleaved"])
def test_the_wrappers_read_the_driver_only_with_no_other_capture_underway(
    hooks: Any, driver_reads: list[int], inner_ends_first: bool
) -> None:
    """cudaMemGetInfo during a global-mode capture would invalidate it: a capture that
    begins or ends while another is underway has no driver figure."""
    hooks.readings.allocator += [(0, 0), (0, 0), (8, 8), (16, 16)]
    hooks.readings.free += [1000, 900]
    begin, end, _ = _wrappers(hooks)
    outer, inner = Graph(), Graph()
    begin(outer)
    begin(inner)
    assert hooks.capturing == 2
    end(inner if inner_ends_first else outer)
    end(outer if inner_ends_first else inner)
    assert hooks.capturing == 0 and all(n == 0 for n in driver_reads)
    drivers = [c.driver for c in hooks.log.captures]
    assert drivers == ([None, 100] if inner_ends_first else [None, None])


def test_a_capture_begin_that_raises_leaves_nothing_underway(
    hooks: Any, driver_reads: list[int]
) -> None:
    def refuse(graph: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("capture_begin failed")

    hooks.readings.free += [1000, 800, 700]
    hooks.readings.allocator += [(0, 0), (8, 8)]
    with pytest.raises(RuntimeError, match="capture_begin failed"):
        hooks._wrap_begin(refuse)(Graph())
    assert hooks.pending == {} and hooks.capturing == 0
    begin, end, _ = _wrappers(hooks)
    g = Graph()
    begin(g)
    end(g)
    (capture,) = hooks.log.captures
    assert capture.driver == 100


def test_a_failing_reading_before_capture_begin_keeps_its_error(
    hooks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def free_bytes(index: int) -> int:
        raise OSError("nvml gone")

    monkeypatch.setattr(allocator, "free_bytes", free_bytes)
    hooks.readings.allocator += [(0, 0), (8, 8)]
    begin, end, _ = _wrappers(hooks)
    g = Graph()
    begin(g)
    end(g)
    assert hooks.log.captures == [] and hooks.pending == {}
    assert isinstance(hooks.last_error, OSError)


def test_a_replay_inside_another_wrapped_replay_counts_once(hooks: Any) -> None:
    """A ``torch.accelerator.Graph`` replay that runs a wrapped ``CUDAGraph`` replay."""
    inner = hooks._wrap_replay(lambda graph: None)
    outer = hooks._wrap_replay(lambda graph: inner(graph))
    outer(Graph())
    assert hooks.log.replays == 1


# what began before a log listened, or was underway when the last one stopped ------------
def test_what_began_before_the_log_listened_is_not_recorded(hooks: Any) -> None:
    log = hooks.log
    hooks.listeners.clear()  # an installation left lingering: no log listens
    hooks.readings.allocator += [(0, 0), (8, 8)]
    hooks.readings.free += [100, 90]
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_replay_start(g)
    hooks.listeners.append(log)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    hooks._hook_replay_end(g)
    assert log.captures == [] and log.replays == 0
    assert hooks.pending == {} and hooks.replaying == {} and hooks.last_error is None


@pytest.mark.parametrize("linger", [False, True], ids=["removed", "lingering"])
def test_what_was_underway_when_the_last_log_stopped_is_forgotten(
    hooks: Any, driver_reads: list[int], linger: bool
) -> None:
    hooks.readings.allocator += [(0, 0), (0, 0), (8, 8)]
    hooks.readings.free += [1000, 800, 700]
    begin, end, _ = _wrappers(hooks)
    captured, replayed = Graph(), Graph()
    begin(captured)
    hooks._hook_replay_start(replayed)
    hooks.remove(hooks.log, linger=linger)
    later = graphs.GraphLog()
    hooks.listeners.append(later)
    end(captured)
    hooks._hook_replay_end(replayed)
    assert later.captures == [] and later.replays == 0
    g = Graph()
    begin(g)
    end(g)
    (capture,) = later.captures
    assert capture.driver == 100  # no capture is still counted as underway


@pytest.mark.parametrize("how", ["hooks", "wrappers"])
def test_a_replay_counts_on_the_device_its_graph_was_captured_on(
    hooks: Any, driver_reads: list[int], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Also for a log that did not see the capture (the graph was made before it listened)."""
    device = [1]
    monkeypatch.setattr(allocator, "current_device", lambda: device[0])
    hooks.readings.allocator += [(0, 0), (8, 8)]
    hooks.readings.free += [100, 90]
    begin, end, replay = _wrappers(hooks)
    g = Graph()
    if how == "hooks":
        hooks._hook_capture_start(g)
        hooks._hook_capture_end(g)
        hooks._hook_instantiate(g)
    else:
        begin(g)
        end(g)
    device[0] = 0
    later = graphs.GraphLog()
    hooks.listeners[:] = [later]
    if how == "hooks":
        hooks._hook_replay_start(g)
        hooks._hook_replay_end(g)
    else:
        replay(g)
    assert later.to_dict()["replays_by_device"] == [{"device": 1, "replays": 1}]


def test_a_hooked_capture_failing_after_its_end_is_not_ended_twice(
    hooks: Any, driver_reads: list[int]
) -> None:
    """torch 2.14+ with ``torch.accelerator.Graph``: its wrapped captures and CUDAGraph's
    hooked ones share the count of captures underway."""
    hooks.readings.allocator += [(0, 0), (0, 0)]  # none left for capture end: it raises
    hooks.readings.free += [1000, 500]
    begin, _, _ = _wrappers(hooks)
    begin(Graph())
    g = Graph()
    hooks._hook_capture_start(g)
    hooks._hook_capture_end(g)
    hooks._hook_instantiate(g)
    assert isinstance(hooks.last_error, IndexError) and hooks.log.captures == []
    assert hooks.capturing == 1  # the wrapped capture is still underway
