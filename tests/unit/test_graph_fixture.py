"""``cgmem.graphs()`` and ``cgmem.capture_sweep()`` add their region to the test through the
``record`` callback they are given (no pytest hook, no GPU here: an empty log)."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.steady(lambda: None, warmup="2"), "cgmem.steady: warmup must be a whole"),
        (lambda f: f.steady(lambda: None, warmup=-1), "warmup must be a whole number >= 0, got -1"),
        (lambda f: f.steady(lambda: None, repeat=0), "repeat must be a whole number >= 1, got 0"),
        (lambda f: f.steady(lambda: None, warmup=1.5), "warmup must be a whole number >= 0"),
        (lambda f: f.steady("fn"), "cgmem.steady: fn must be callable, got 'fn'"),
        (lambda f: f.resize_check(lambda n: n, 5), "cgmem.resize_check: sizes must be a sequence"),
        (lambda f: f.resize_check(lambda n: n, []), "cgmem.resize_check: no sizes given"),
        (lambda f: f.resize_check(lambda n: n, iter(())), "cgmem.resize_check: no sizes given"),
        (lambda f: f.resize_check(lambda n: n, [1], slack=-1), "slack=-1: a size cannot be"),
        (lambda f: f.resize_check(lambda n: n, [1], retain="x"), "retain='x': cannot read"),
        (lambda f: f.resize_check(None, [1]), "cgmem.resize_check: resize must be callable"),
    ],
    ids=[
        "str",
        "negative",
        "repeat",
        "float",
        "fn",
        "sizes",
        "no-sizes",
        "empty-iterator",
        "slack",
        "retain",
        "resize",
    ],
)
def test_resize_and_steady_arguments_are_checked_before_any_gpu_work(call, message) -> None:
    with pytest.raises(CgmemUsageError, match=re.escape(message)):
        call(CgmemFixture([].append))


@pytest.mark.parametrize("devices", [0, "0", [0.5], [True], [-1], [0, 2**63], [10**5000]])
def test_measure_devices_must_be_indices(devices: object) -> None:
    with (
        pytest.raises(CgmemUsageError, match=r"devices must be device indices such as \[0, 1\]"),
        CgmemFixture([].append).measure(devices=devices),  # type: ignore[arg-type]
    ):
        pass
