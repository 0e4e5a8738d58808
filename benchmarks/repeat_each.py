"""Each collected test run ``REPEAT_EACH`` times in one process, as a ``-p`` plugin.

``bench_external.py --repeat N`` runs every side with it, to count how often a test whose
outcome varies from run to run (a nondeterministic kernel, a race) fails on each side: one
run a side cannot tell a plugin that changes such a test from chance. Each repetition is a
parameter of its own, shown as ``rep0``, ``rep1``... last in the test's id. Tests pytest
does not parametrize (unittest ``TestCase`` methods) run once.
"""

from __future__ import annotations

import os

import pytest

FIXTURE = "_repeat_each"


@pytest.fixture
def _repeat_each(request: pytest.FixtureRequest) -> int:
    number: int = request.param
    return number


@pytest.hookimpl(trylast=True)  # after the test's own parametrize: rep<n> comes last
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    times = int(os.environ.get("REPEAT_EACH", "1"))
    if times > 1:
        metafunc.fixturenames.append(FIXTURE)
        metafunc.parametrize(FIXTURE, range(times), indirect=True, ids=lambda i: f"rep{i}")
