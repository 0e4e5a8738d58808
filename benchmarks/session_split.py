"""Where one pytest process's time goes, as a ``-p`` plugin for ``bench_external.py``.

``python -m pytest -p session_split`` (with this folder on ``PYTHONPATH``) writes a JSON
object to the file ``SESSION_SPLIT_OUT`` names, in seconds:

- ``start``: from this plugin's import (pytest reading its ``-p`` plugins, before any
  conftest) to the session's start: conftests, their imports, every plugin's configure;
- ``collection``;
- ``phases``: the tests' setup, call and teardown, summed as their reports time them;
- ``between_phases``: each test's protocol less its phases, summed: pytest's and every
  plugin's hooks around the phases (reports, logging, a measured test's record);
- ``end``: the session's finish (the terminal summary, the plugins' files) and unconfigure;
- ``in_pytest``: from this plugin's import to the unconfigure, the sum of the above and
  whatever falls between them;
- ``exit_handlers``: from the unconfigure to the last ``atexit`` handler (this plugin's,
  registered first, so run last): every other handler, the plugins' and the libraries';
- ``full_collections`` and ``full_collection_seconds``: generation-2 garbage collections,
  wherever they ran (a leak check's, pytest's, the interpreter's own).

The file is written by that last handler, and only where pytest reached its unconfigure.
The caller's wall less ``in_pytest`` and ``exit_handlers`` is the interpreter's start and
its final teardown.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import time
from collections.abc import Generator
from typing import Any

import pytest

_IMPORTED = time.perf_counter()
_figures: dict[str, float] = {
    "start": 0.0,
    "collection": 0.0,
    "phases": 0.0,
    "between_phases": 0.0,
    "end": 0.0,
    "in_pytest": 0.0,
    "exit_handlers": 0.0,
    "full_collections": 0,
    "full_collection_seconds": 0.0,
}
_full_started: list[float] = []


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if info.get("generation") != 2:
        return
    if phase == "start":
        _full_started.append(time.perf_counter())
    elif _full_started:
        _figures["full_collections"] += 1
        _figures["full_collection_seconds"] += time.perf_counter() - _full_started.pop()


gc.callbacks.append(_on_gc)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _figures["start"] = time.perf_counter() - _IMPORTED


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection(session: pytest.Session) -> Generator[None, Any, Any]:
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        _figures["collection"] += time.perf_counter() - started


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, Any]:
    started = time.perf_counter()
    phases_before = _figures["phases"]
    try:
        return (yield)
    finally:
        protocol = time.perf_counter() - started
        _figures["between_phases"] += protocol - (_figures["phases"] - phases_before)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _figures["phases"] += report.duration


_end_started: list[float] = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, Any, Any]:
    _end_started.append(time.perf_counter())
    return (yield)


_unconfigured: list[float] = []


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    now = time.perf_counter()
    _unconfigured.append(now)
    if _end_started:
        _figures["end"] = now - _end_started[0]
    _figures["in_pytest"] = now - _IMPORTED


def _write() -> None:
    if _unconfigured:
        _figures["exit_handlers"] = time.perf_counter() - _unconfigured[0]
    path = os.environ.get("SESSION_SPLIT_OUT")
    if path and _unconfigured:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(_figures, out)


atexit.register(_write)
