"""``cgmem.graphs()`` and ``cgmem.capture_sweep()`` add their region to the test through the
``record`` callback they are given (no pytest hook, no GPU here: an empty log)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from pytest_cgmem.fixture import CgmemFixture
from pytest_cgmem.results.records import RegionResult
from pytest_cgmem.units import CgmemUsageError


def test_graphs_records_its_region() -> None:
    recorded: list[RegionResult] = []
    fixture = CgmemFixture(recorded.append)
    with fixture.graphs() as log:
        pass
    with fixture.graphs(region="decode"):
        pass
    assert [r.label for r in recorded] == ["graphs", "decode"]
    assert recorded[0].devices == ()  # nothing captured or replayed: no device figures
    assert recorded[0].extra["graph_figures"]["captures"] == 0
    assert log.captures == []


def test_graphs_records_its_region_when_the_body_raises() -> None:
    recorded: list[RegionResult] = []
    with pytest.raises(KeyError), CgmemFixture(recorded.append).graphs():
        raise KeyError("x")
    (region,) = recorded
    assert region.error == "KeyError: 'x'"


@pytest.mark.parametrize("bad", ["", None, 3, "two\nlines", "a\ttab"])
def test_region_label_must_be_a_string(bad: object) -> None:
    fixture = CgmemFixture([].append)
    with (
        pytest.raises(CgmemUsageError, match="region must be a non-empty printable string"),
        fixture.graphs(region=bad),  # type: ignore[arg-type]
    ):
        pass
    with pytest.raises(CgmemUsageError, match="region must be a non-empty printable string"):
        fixture.capture_sweep(lambda x: x, [1], lambda n: n, region=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", 3, "two\nlines"])
def test_a_measure_label_must_be_a_printable_string(bad: object) -> None:
    fixture = CgmemFixture([].append)
    with (
        pytest.raises(CgmemUsageError, match=r"cgmem\.measure: label must be a non-empty"),
        fixture.measure(bad),  # type: ignore[arg-type]
    ):
        pass
