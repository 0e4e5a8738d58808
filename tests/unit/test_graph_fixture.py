"""``cgmem.graphs()`` and ``cgmem.capture_sweep()`` add their region to the test through the
``record`` callback they are given (no pytest hook, no GPU here: an empty log); ``measure``,
``steady`` and ``resize_check`` judge their arguments before the region's first GPU step;
a ``Measurement`` read before and after its region closes."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("torch")

from pytest_cgmem.cuda import allocator, graphs
from pytest_cgmem.failures import BudgetExceeded, EagerFallback, FigureUnavailable
from pytest_cgmem.fixture import CgmemFixture, Measurement
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.units import MAX_FIGURE, CgmemUsageError

MiB = 2**20


class _Graph:
    """Stands in for a CUDAGraph (which a CPU build of torch cannot make)."""


class ReachedGpuWork(Exception):
    pass


def _reached(*args: object) -> None:
    raise ReachedGpuWork


@pytest.fixture
def no_region_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A region's first GPU step (reading the current device) raises ReachedGpuWork."""
    monkeypatch.setattr(allocator, "current_device", _reached)


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
    assert not graphs.hooks_installed()


def test_graphs_records_its_region_when_the_body_raises() -> None:
    recorded: list[RegionResult] = []
    with pytest.raises(KeyError), CgmemFixture(recorded.append).graphs():
        raise KeyError("x")
    (region,) = recorded
    assert region.error == "KeyError: 'x'"
    assert not graphs.hooks_installed()


def test_graphs_reads_no_pool_when_the_body_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the body's error the log's pools are not measured: the capture is counted,
    its pool unknown, and the body's error is the one raised."""
    read: list[object] = []

    def measure_pools(wanted: list[object], release: object) -> dict[object, int]:
        read.append(wanted)
        return {}

    monkeypatch.setattr(graphs, "_measure_pools", measure_pools)
    recorded: list[RegionResult] = []
    graph = _Graph()
    with pytest.raises(KeyError), CgmemFixture(recorded.append).graphs() as log:
        log._on_capture(graph, 0, (0, 1), MiB, 2 * MiB, None, 0.001)
        raise KeyError("x")
    assert read == []
    (region,) = recorded
    (device,) = region.devices
    assert (device.graphs, device.graph_pool) == (1, None)


def test_expect_replay_passes_on_one_replay_and_fails_on_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(allocator, "current_device", lambda: 0)
    fixture = CgmemFixture([].append)
    with fixture.expect_replay() as log:
        log._on_replay(_Graph())
    assert log.replays == 1
    with (
        pytest.raises(EagerFallback, match=r"no CUDA graph replay happened .*\(decode\)"),
        fixture.expect_replay("decode"),
    ):
        pass
    assert not graphs.hooks_installed()


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


def test_a_leak_budget_on_a_measurement_that_raised_says_it_has_no_leak_figure() -> None:
    """A region ended by an exception measures no leak (None): a leak budget on it must not
    pass as if the unknown figure were within it; its other figures are still held."""
    m = Measurement("decode")
    m.result = RegionResult(
        "decode", (DeviceFigures(0, peak=2 * MiB, leak=None),), 0.1, "ValueError: boom"
    )
    with pytest.raises(FigureUnavailable) as info:
        m.check(leak=0)
    assert str(info.value) == (
        "cgmem: measurement 'decode' has no leak figure: it ended by ValueError: boom, whose "
        "traceback holds the tensors of the code that raised; check the leak of a block "
        "that runs to its end"
    )
    m.check(peak="2 MiB")
    with pytest.raises(BudgetExceeded):
        m.check(peak="1 MiB")
    m.result = RegionResult("decode", (DeviceFigures(0, peak=2 * MiB, leak=0),), 0.1, "E: x")
    m.check(leak=0)


def test_a_check_with_no_budget_is_refused() -> None:
    """It passed, having held the figures to nothing."""
    m = Measurement("decode")
    m.result = RegionResult("decode", (DeviceFigures(0, peak=2 * MiB, leak=0),), 0.1)
    with pytest.raises(CgmemUsageError) as info:
        m.check()
    assert str(info.value) == (
        "cgmem.measure: check() needs at least one budget, e.g. check(peak='1 GiB', leak=0)"
    )


def test_a_measurement_s_figures_are_read_once_its_region_has_closed() -> None:
    """What ``measure`` yields, given the RegionResult its region closes with."""
    m = Measurement("prefill")
    assert repr(m) == "<Measurement 'prefill' running>"
    with pytest.raises(RuntimeError, match="measurement 'prefill' is still running"):
        _ = m.peak
    first, second = DeviceFigures(0, peak=5 * MiB, leak=0), DeviceFigures(1, peak=MiB)
    m.result = RegionResult("prefill", (first, second), 0.1)
    assert (m.peak, m.leak, m.reserved) == (5 * MiB, 0, None)
    assert m.per_device == {0: first, 1: second}
    assert repr(m) == (
        "<Measurement 'prefill' peak=5.00 MiB, reserved=n/a, leak=0 B, device=n/a, non_torch=n/a>"
    )
    with pytest.raises(AttributeError, match="peek"):
        _ = m.peek
    m.check(peak="5 MiB", leak=0)
    with pytest.raises(BudgetExceeded) as info:
        m.check(peak="2 MiB")
    assert str(info.value) == (
        "cgmem: peak 5.00 MiB exceeds budget 2.00 MiB (+150.0%) on cuda:0 in 'prefill'"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.steady(lambda: None, warmup="2"), "cgmem.steady: warmup must be a whole"),
        (lambda f: f.steady(lambda: None, warmup=-1), "warmup must be a whole number >= 0, got -1"),
        (lambda f: f.steady(lambda: None, repeat=0), "repeat must be a whole number >= 1, got 0"),
        (lambda f: f.steady(lambda: None, warmup=1.5), "warmup must be a whole number >= 0"),
        (lambda f: f.steady("fn"), "cgmem.steady: fn must be callable, got 'fn'"),
        (lambda f: f.steady(lambda: None, label=""), "cgmem.steady: label must be a non-empty"),
        (lambda f: f.resize_check(lambda n: n, 5), "cgmem.resize_check: sizes must be a sequence"),
        (lambda f: f.resize_check(lambda n: n, "12"), "sizes must be a sequence, got '12'"),
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
        "label",
        "sizes",
        "sizes-str",
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


@pytest.mark.parametrize("devices", [0, "0", [], (), [0.5], [True], [-1], [0, 2**63], [10**5000]])
def test_measure_devices_must_be_indices(devices: object) -> None:
    with (
        pytest.raises(CgmemUsageError, match=r"devices must be device indices such as \[0, 1\]"),
        CgmemFixture([].append).measure(devices=devices),  # type: ignore[arg-type]
    ):
        pass


@pytest.mark.parametrize(
    "devices", [None, [0], (0, 1), [MAX_FIGURE]], ids=["none", "zero", "two", "largest"]
)
def test_measure_goes_on_with_device_indices(no_region_start: None, devices: object) -> None:
    recorded: list[RegionResult] = []
    with (
        pytest.raises(ReachedGpuWork),
        CgmemFixture(recorded.append).measure(devices=devices),  # type: ignore[arg-type]
    ):
        pytest.fail("the body ran")
    assert recorded == []


def test_a_rank_s_measure_is_on_the_fixture_s_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchrun rank's fixture measures on its own device, named where it is missing."""
    monkeypatch.setattr(allocator, "device_count", lambda: 2)
    fixture = CgmemFixture([].append, device=5, rank=5)
    with pytest.raises(RuntimeError) as info, fixture.measure():
        pytest.fail("the body ran")
    assert str(info.value) == (
        "cgmem: the region's device cuda:5 does not exist (2 CUDA device(s) visible)"
    )


def test_steady_goes_on_with_no_warmup_and_one_repeat(no_region_start: None) -> None:
    calls: list[None] = []
    with pytest.raises(ReachedGpuWork):
        CgmemFixture([].append).steady(lambda: calls.append(None), warmup=0, repeat=1)
    assert calls == []
