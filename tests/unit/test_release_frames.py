"""Releasing a failed test's frames frees what they pinned, and never closes a generator
that is only suspended (a yield fixture that handed the error on)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Generator, Iterator
from typing import Any

import pytest

region = pytest.importorskip("pytest_cgmem.cuda.region")


def _hands_on_its_error(log: list[str]) -> Generator[BaseException, None, None]:
    try:
        raise ConnectionError("backend not reachable")
    except ConnectionError as exc:
        error = exc
    try:
        yield error
    finally:
        log.append("closed")


def _fails_with(error: BaseException) -> None:
    pinned = bytearray(16)  # noqa: F841  a local the release must drop
    raise error


def test_a_suspended_generator_in_the_traceback_stays_open() -> None:
    log: list[str] = []
    fixture = _hands_on_its_error(log)
    error = next(fixture)
    try:
        _fails_with(error)
    except ConnectionError as exc:
        region.release_exception_frames(exc)
    assert log == []  # before, clearing its frame closed it: its teardown ran early
    assert fixture.gi_frame is not None
    with pytest.raises(StopIteration):
        next(fixture)
    assert log == ["closed"]


def _raises_deeper() -> None:
    pinned = bytearray(16)  # noqa: F841  a local the release must drop
    raise ConnectionError("backend not reachable")


def _catches_from_deeper() -> Generator[BaseException, None, None]:
    try:
        _raises_deeper()
    except ConnectionError as exc:
        error = exc
    yield error


def test_the_frames_beyond_a_suspended_generator_are_released_too() -> None:
    """The generator caught an error raised below it and handed it on: its frame is left
    alone, and the frame where the error began is still cleared."""
    fixture = _catches_from_deeper()
    error = next(fixture)
    deepest = _frame_named(error, "_raises_deeper")
    try:
        _fails_with(error)
    except ConnectionError as exc:
        region.release_exception_frames(exc)
    assert fixture.gi_frame is not None
    assert "pinned" not in deepest.f_locals  # type: ignore[attr-defined]


class _Pinned:
    pass


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fails_holding_a_cycle(keep: list[weakref.ref[_Pinned]]) -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    pinned = _Pinned()
    cycle.append(pinned)
    keep.append(weakref.ref(pinned))
    del pinned
    raise ValueError("planted")


@pytest.mark.usefixtures("no_automatic_collection")
def test_what_a_released_frame_held_in_a_young_cycle_is_freed() -> None:
    """Clearing the frame leaves its cycle unreachable; the release collects the young
    generations, so what the cycle held is gone before the next test starts."""
    keep: list[weakref.ref[_Pinned]] = []
    try:
        _fails_holding_a_cycle(keep)
    except ValueError as exc:
        region.release_exception_frames(exc)
    assert keep[0]() is None


def _fails_holding(keep: list[weakref.ref[_Pinned]]) -> None:
    pinned = _Pinned()
    keep.append(weakref.ref(pinned))
    raise ValueError("planted")


def test_a_frame_s_locals_read_before_the_release_do_not_keep_what_it_held() -> None:
    """pytest reads a failing frame's ``f_locals`` (``__tracebackhide__``); before Python
    3.13 that made a snapshot which kept the locals alive after the frame was cleared."""
    keep: list[weakref.ref[_Pinned]] = []
    try:
        _fails_holding(keep)
    except ValueError as exc:
        frame = _frame_named(exc, "_fails_holding")
        assert "pinned" in frame.f_locals  # type: ignore[attr-defined]
        region.release_exception_frames(exc)
    assert keep[0]() is None


def test_abandoning_the_open_regions_stops_their_tracking_and_forgets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped: list[str] = []

    class OpenRegion:
        def __init__(self, name: str) -> None:
            self.name = name

        def _stop_trackers(self) -> None:
            stopped.append(self.name)

    monkeypatch.setattr(region, "_active", [OpenRegion("outer"), OpenRegion("inner")])
    region.abandon_all()
    assert stopped == ["outer", "inner"]
    assert region._active == []


def test_the_frames_that_finished_lose_their_locals() -> None:
    try:
        _fails_with(ValueError("planted"))
    except ValueError as exc:
        tb = exc.__traceback__
        region.release_exception_frames(exc)
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    (failing,) = [f for f in frames if f.f_code.co_name == "_fails_with"]
    assert "pinned" not in failing.f_locals


def _generator_that_fails(log: list[str]) -> Generator[int, None, None]:
    pinned = bytearray(16)  # noqa: F841
    log.append("ran")
    yield 1
    raise ValueError("planted in a generator")


async def _coroutine_that_fails() -> None:
    pinned = bytearray(16)  # noqa: F841
    raise ValueError("planted in a coroutine")


def _frame_named(exc: BaseException, name: str) -> object:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == name:
            return tb.tb_frame
        tb = tb.tb_next
    raise AssertionError(f"no frame {name}")


def test_a_finished_generator_s_frame_loses_its_locals() -> None:
    """An async test's or a generator helper's frame that the error ended holds tensors
    like any other frame: it is cleared (only a suspended one is left alone)."""
    log: list[str] = []
    gen = _generator_that_fails(log)
    next(gen)
    with pytest.raises(ValueError) as info:
        next(gen)
    frame = _frame_named(info.value, "_generator_that_fails")
    region.release_exception_frames(info.value)
    assert "pinned" not in frame.f_locals  # type: ignore[attr-defined]


def test_a_finished_coroutine_s_frame_loses_its_locals() -> None:
    coroutine = _coroutine_that_fails()
    with pytest.raises(ValueError) as info:
        coroutine.send(None)
    frame = _frame_named(info.value, "_coroutine_that_fails")
    region.release_exception_frames(info.value)
    assert "pinned" not in frame.f_locals  # type: ignore[attr-defined]


class _InputsFailed(Exception):
    pass


def _no_input(size: int) -> object:
    raise _InputsFailed(size)


@pytest.mark.parametrize("how", ["graph log", "capture sweep"])
def test_a_graph_log_or_a_sweep_counts_as_measured_here(how: str) -> None:
    """A failing test that measured only graphs has its frames released like a marked
    one: its graphs must not live on to be collected inside another test's capture."""
    from pytest_cgmem.cuda import measurements_opened
    from pytest_cgmem.cuda.graphs import GraphLog, capture_sweep

    before = measurements_opened()
    if how == "graph log":
        GraphLog().start().stop()
    else:
        with pytest.raises(_InputsFailed):
            capture_sweep(lambda x: x, [2, 1], _no_input)
    assert measurements_opened() == before + 1


def _reading(allocated: int, reserved: int) -> dict[str, Any]:
    """An allocator reading in torch's nested form, peaks at the current figures."""
    return {
        "allocated_bytes": {"all": {"current": allocated, "peak": allocated}},
        "reserved_bytes": {"all": {"current": reserved, "peak": reserved}},
        "num_ooms": 0,
    }


@pytest.mark.parametrize("raised", [True, False], ids=["raised", "ran to its end"])
def test_a_region_that_raised_confirms_no_leak(
    monkeypatch: pytest.MonkeyPatch, raised: bool
) -> None:
    """The figures of a region ended by an exception skip the leak check (whose collections
    could only find the tensors its traceback holds) and have no leak figure; one that ran
    to its end confirms its growth. The CUDA reads are stand-ins: the GPU test of this runs
    in tests/gpu/test_suite_wide_gpu.py."""
    MiB = 2**20
    measured = region.Region("call", track_graphs=False)
    measured._starts[0] = region._Start(MiB, 2 * MiB, 0, None, None, MiB, 2 * MiB)
    confirmed: list[int] = []

    def confirm(index: int, start: object) -> tuple[int, bool, int]:
        confirmed.append(index)
        return 512, False, 0

    monkeypatch.setattr(measured, "_confirm_leak", confirm)
    figures = measured._figures(0, _reading(MiB + 512, 2 * MiB), raised)
    assert confirmed == ([] if raised else [0])
    assert figures.leak == (None if raised else 512)
    assert figures.peak == 512 and not figures.details.leak_confirmed
