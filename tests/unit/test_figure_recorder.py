"""cgmem_record: figures measured elsewhere as a region (no CUDA)."""

from __future__ import annotations

import pytest

from pytest_cgmem.fixture import FigureRecorder
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.units import MAX_FIGURE, MAX_SIGNED_FIGURE, CgmemUsageError

MiB = 2**20


def test_record_figures() -> None:
    got: list[RegionResult] = []
    result = FigureRecorder(got.append)(
        "server", peak="1.5 GiB", device="2 GiB", graphs=3, device_index=1
    )
    assert got == [result]
    (figures,) = result.devices
    assert (figures.index, figures.peak, figures.device, figures.graphs) == (1, 3 * 2**29, 2**31, 3)
    assert figures.reserved is None and figures.non_torch is None and figures.reserved_ratio is None
    assert figures.device_source == "recorded"
    assert result.extra == {"recorded": ["device", "graphs", "peak"]}


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"device": -5}, {"device": -5}),
        ({"non_torch": "-1 MiB", "device": " - 2 MiB"}, {"non_torch": -MiB, "device": -2 * MiB}),
        ({"reserved_ratio": 0}, {"reserved_ratio": 0.0}),
        ({"reserved_ratio": "0.0", "peak": 0}, {"reserved_ratio": 0.0, "peak": 0}),
    ],
)
def test_record_takes_the_figures_a_region_can_have(
    figures: dict[str, object], expected: dict[str, float]
) -> None:
    """A recorded figure follows what a measured region writes: device growth may be
    negative, a ratio 0; a budget of either is still refused."""
    result = FigureRecorder([].append)("r", **figures)
    (device,) = result.devices
    assert {name: device.figures[name] for name in expected} == expected


def test_record_takes_numpy_integers() -> None:
    numpy = pytest.importorskip("numpy")
    result = FigureRecorder([].append)("r", peak=numpy.int64(5 * MiB), graphs=numpy.uint8(2))
    (device,) = result.devices
    assert (device.peak, device.graphs) == (5 * MiB, 2)
    assert type(device.peak) is int


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"peak": -1}, "cgmem_record('r'): peak=-1: a size cannot be negative: -1"),
        ({"reserved_ratio": -1}, "cgmem_record('r'): reserved_ratio=-1: expected a positive"),
        ({"device": "--5"}, "cgmem_record('r'): device='--5': cannot read '--5' as a size"),
        ({"device": "- -5"}, "cgmem_record('r'): device='- -5': cannot read '- -5' as a size"),
        ({"device": "-"}, "cgmem_record('r'): device='-': cannot read '-' as a size"),
        ({"device": "-+5"}, "cgmem_record('r'): device='-+5': cannot read '-+5' as a size"),
        ({"device": "-5-"}, "cgmem_record('r'): device='-5-': cannot read '-5-' as a size"),
    ],
)
def test_record_refuses_what_no_region_has(figures: dict[str, object], message: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        FigureRecorder([].append)("r", **figures)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("metric", ["device", "non_torch"])
def test_a_signed_figure_stays_within_half_the_range(metric: str) -> None:
    """So the change between a baseline's figure and a run's fits a run file."""
    record = FigureRecorder([].append)
    for figure in (MAX_SIGNED_FIGURE, -MAX_SIGNED_FIGURE, str(-MAX_SIGNED_FIGURE)):
        (device,) = record("r", **{metric: figure}).devices
        assert device.figures[metric] == int(figure)
    for figure in (MAX_SIGNED_FIGURE + 1, -MAX_SIGNED_FIGURE - 1, "-5000000 TiB"):
        with pytest.raises(CgmemUsageError) as info:
            record("r", **{metric: figure})
        assert str(info.value).endswith(
            f"too large: the most either side of 0 is {MAX_SIGNED_FIGURE}"
        )


def test_record_figures_on_device_0_taking_no_time_by_default() -> None:
    result = FigureRecorder([].append)("server", peak=1)
    assert (result.devices[0].index, result.seconds) == (0, 0.0)


def test_record_a_region_result() -> None:
    got: list[RegionResult] = []
    region = RegionResult(
        "sub", (DeviceFigures(0, peak=1, reserved=2, leak=3),), 0.5, extra={"a": 1}
    )
    result = FigureRecorder(got.append)(region)
    assert result.devices == region.devices and result.extra["a"] == 1
    assert result.extra["recorded"] == ["leak", "peak", "reserved"]  # those it knows


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("x",), {}, "give at least one figure"),
        (("x",), {"peek": 1}, "unknown figure 'peek'"),
        (("x",), {"peak": "1 parsec"}, "peak='1 parsec'"),
        (("x",), {"peak": -1}, "negative"),
        (("x",), {"peak": 1, "device_index": -1}, "device_index"),
        (("x",), {"peak": 1, "device_index": 2**63}, r"device_index must be an int from 0 to 9223"),
        (("x",), {"peak": 1, "device_index": 2**80}, "device_index must be an int from 0 to"),
        (("",), {"peak": 1}, "non-empty printable string"),
        (("a\nb",), {"peak": 1}, "non-empty printable string"),
        (("x",), {"peak": 10**400}, "peak=an integer of about 400 digits: too large"),
        (("x",), {"reserved_ratio": 10**400}, "reserved_ratio=an integer of about 400 digits"),
        (
            (RegionResult("x", (DeviceFigures(0, peak=1),), 0.0),),
            {"peak": 2},
            "give a RegionResult or figures, not both",
        ),
    ],
)
def test_record_rejects(args: tuple[object, ...], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CgmemUsageError, match=message):
        FigureRecorder(lambda r: None)(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "seconds",
    [float("nan"), float("inf"), -1.0, "1", 10**400],
    ids=["nan", "inf", "negative", "string", "huge"],
)
def test_record_rejects_seconds_that_are_not_a_finite_number(seconds: object) -> None:
    with pytest.raises(CgmemUsageError, match=r"cgmem_record\('x'\): seconds must be a finite"):
        FigureRecorder(lambda r: None)("x", peak=1, seconds=seconds)  # type: ignore[arg-type]


def test_record_a_region_result_a_reader_would_refuse() -> None:
    """A RegionResult can hold anything: one the run file could not hold is refused here,
    in the test that records it, not when the files are written."""
    bad = RegionResult("sub", (DeviceFigures(0, peak=1, reserved_ratio=float("inf")),), 0.0)
    with pytest.raises(CgmemUsageError) as info:
        FigureRecorder(lambda r: None)(bad)
    assert str(info.value) == (
        "cgmem_record: the RegionResult cannot be recorded: devices[0].reserved_ratio is inf, "
        "not a finite number"
    )


def test_record_a_device_index_the_run_file_holds() -> None:
    """The run file holds whole numbers up to MAX_FIGURE: beyond it the call refuses it,
    not the writing of the files at the run's end."""
    result = FigureRecorder(lambda r: None)("x", peak=1, device_index=MAX_FIGURE)
    assert result.devices[0].index == MAX_FIGURE
    with pytest.raises(CgmemUsageError) as info:
        FigureRecorder(lambda r: None)("x", peak=1, device_index=2**80)
    assert str(info.value) == (
        f"cgmem_record('x'): device_index must be an int from 0 to {MAX_FIGURE}, "
        "got 1208925819614629174706176"
    )


@pytest.mark.parametrize("label", ["a\nb", "tab\there", ""])
def test_record_a_region_result_refuses_the_labels_a_label_may_not_be(label: str) -> None:
    """A RegionResult's label is held to what ``cgmem_record(label, ...)`` takes."""
    region = RegionResult(label, (DeviceFigures(0, peak=1),), 0.0)
    with pytest.raises(CgmemUsageError) as info:
        FigureRecorder(lambda r: None)(region)
    assert str(info.value) == (
        "cgmem_record: the RegionResult's label must be a non-empty printable string "
        f"(no newline or tab), got {label!r}"
    )
    with pytest.raises(CgmemUsageError, match="non-empty printable string"):
        FigureRecorder(lambda r: None)(label, peak=1)


def test_record_an_unlabelled_region_result() -> None:
    got: list[RegionResult] = []
    FigureRecorder(got.append)(RegionResult(None, (DeviceFigures(0, peak=1),), 0.0))
    assert got[0].label is None


def test_a_region_result_with_extra_none_has_no_extra() -> None:
    region = RegionResult("sub", (DeviceFigures(0, peak=1),), 0.0, None, None)  # type: ignore[arg-type]
    assert region.extra == {} and not region.recorded and region.rank is None
    assert region.to_dict()["extra"] == {}
    got: list[RegionResult] = []
    FigureRecorder(got.append, rank=1)(region)
    assert got[0].extra["rank"] == 1 and "peak" in got[0].extra["recorded"]
