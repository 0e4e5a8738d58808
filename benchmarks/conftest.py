"""Times every test's whole protocol (setup, call, teardown) and prints ms per test by variant.

Variants run interleaved (round robin) so that drift in the machine hits all of them alike;
the order turns by one every round, so that the after-effects of a test (the gc-based peers
empty the cache: the next test allocates from the driver again) land on every variant alike.
The first test of each variant is left out: it carries the process's one-time costs (the
CUDA context for the first test of all, the plugin's warm-up for the first marked one).
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from typing import Any

import pytest
from interleave import interleaved
from protocol_timer import timed_protocol

_times = pytest.StashKey[dict[str, list[float]]]()


def _variant(item: pytest.Item) -> str:
    return getattr(item, "originalname", item.name).removeprefix("test_")


def pytest_configure(config: pytest.Config) -> None:
    times: dict[str, list[float]] = defaultdict(list)
    config.stash[_times] = times


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items[:] = interleaved(items, _variant)


def _record(item: pytest.Item, seconds: float) -> None:
    item.config.stash[_times][_variant(item)].append(seconds)


pytest_runtest_protocol = timed_protocol(_record)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    times = {name: values[1:] for name, values in config.stash[_times].items() if len(values) > 1}
    if not times:
        return
    plain = times.get("plain")
    rows = []
    terminalreporter.write_sep("=", "overhead per test (whole protocol)")
    head = ("variant", "tests", "mean ms", "median ms", "over plain ms", "x plain", "median x")
    terminalreporter.write_line("{:<12}{:>6}{:>10}{:>11}{:>15}{:>9}{:>10}".format(*head))
    for name, values in times.items():
        mean = statistics.mean(values) * 1000
        median = statistics.median(values) * 1000
        over = ratio = median_ratio = ""
        if plain:
            plain_mean = statistics.mean(plain) * 1000
            over = f"{mean - plain_mean:.3f}"
            ratio = f"{mean / plain_mean:.2f}"
            median_ratio = f"{median / (statistics.median(plain) * 1000):.2f}"
        rows.append(
            {
                "variant": name,
                "tests": len(values),
                "mean_ms": mean,
                "median_ms": median,
                "times_ms": [v * 1000 for v in values],
            }
        )
        terminalreporter.write_line(
            f"{name:<12}{len(values):>6}{mean:>10.3f}{median:>11.3f}{over:>15}{ratio:>9}"
            f"{median_ratio:>10}"
        )
    floor = times.get("floor")
    if plain and floor and statistics.median(floor) < statistics.median(plain):
        terminalreporter.write_line(
            "note: the floor (a subset of the marked test's work) ran faster than plain by the "
            "median, so this run's medians do not measure overhead; read the means"
        )
    target = os.environ.get("CGMEM_BENCH_JSON")
    if target:
        with open(target, "w") as f:
            json.dump(rows, f, indent=2)
