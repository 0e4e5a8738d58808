"""Releasing a failed test's frames frees what they pinned, and never closes a generator
that is only suspended (a yield fixture that handed the error on)."""

from __future__ import annotations

from collections.abc import Generator

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
