"""The one timer of a test's whole protocol (setup, call, teardown, reports) that the
benchmark suites share: this folder's conftest and the conftests the benchmark scripts
write for their subprocess suites (with this folder on ``PYTHONPATH``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import pytest


def timed_protocol(
    record: Callable[[pytest.Item, float], None],
) -> Callable[[pytest.Item], Generator[None, Any, Any]]:
    """A ``pytest_runtest_protocol`` wrapper that hands each test and the seconds its
    protocol took to ``record``; a conftest assigns it to ``pytest_runtest_protocol``."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, Any]:
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            record(item, time.perf_counter() - start)

    return pytest_runtest_protocol
