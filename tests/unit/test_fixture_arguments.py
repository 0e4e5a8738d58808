"""The ``cgmem`` fixture's graph methods and ``cgmem_record`` refuse a wrong argument with a
one-line usage error before any GPU work (no GPU here: the GPU steps are made to fail)."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

pytest.importorskip("torch")

from pytest_cgmem.failures import EagerFallback
from pytest_cgmem.fixture import CgmemFixture, FigureRecorder
from pytest_cgmem.results.ranks import launch_arguments
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.units import CgmemUsageError

graphs = pytest.importorskip("pytest_cgmem.cuda.graphs")

MiB = 2**20


class ReachedGpuWork(Exception):
    pass


def _reached(*args: object, **kwargs: object) -> None:
    raise ReachedGpuWork


@pytest.fixture
def no_gpu_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first GPU step of a sweep and of a pool reading raise ReachedGpuWork."""
    monkeypatch.setattr(graphs, "count_measurement", _reached)
    monkeypatch.setattr(graphs, "_measure_pools", _reached)


class _Graph:
    """Stands in for a CUDAGraph (which a CPU build of torch cannot make)."""

    def pool(self) -> tuple[int, int]:
        return (0, 1)


def _one_line(error: pytest.ExceptionInfo[CgmemUsageError]) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# assert_pool_released ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pool", "shown"),
    [(_Graph(), "<"), ("not a pool", "'not a pool'"), ("12", "'12'"), (5, "5"), (None, "None")],
    ids=["graph", "string", "digits", "int", "none"],
)
def test_assert_pool_released_refuses_what_is_no_pool(
    no_gpu_work: None, pool: object, shown: str
) -> None:
    fixture = CgmemFixture([].append)
    with pytest.raises(CgmemUsageError) as info:
        fixture.assert_pool_released((0, 1), pool)
    assert _one_line(info).startswith(
        "assert_pool_released: expected a pool handle (graph.pool(), graph_pool_handle()), "
        f"got {shown}"
    )


def test_assert_pool_released_refuses_what_pool_bytes_refuses(no_gpu_work: None) -> None:
    fixture = CgmemFixture([].append)
    with pytest.raises(CgmemUsageError) as bytes_info:
        fixture.pool_bytes(5)
    with pytest.raises(CgmemUsageError) as released_info:
        fixture.assert_pool_released(5)
    said = "expected a pool handle (graph.pool(), graph_pool_handle()), got 5"
    assert str(bytes_info.value) == f"pool_bytes: {said}"
    assert str(released_info.value) == f"assert_pool_released: {said}"


def test_assert_pool_released_refuses_no_pool(no_gpu_work: None) -> None:
    with pytest.raises(CgmemUsageError) as info:
        CgmemFixture([].append).assert_pool_released()
    assert _one_line(info) == (
        "assert_pool_released: no pool given (graph.pool(), graph_pool_handle(), "
        "*log.pools: a log's pools are empty when nothing was captured)"
    )


def test_assert_pool_released_names_a_list_of_pools_given_as_one(no_gpu_work: None) -> None:
    with pytest.raises(CgmemUsageError) as info:
        CgmemFixture([].append).assert_pool_released([(0, 1), (0, 2)])
    assert _one_line(info) == (
        "assert_pool_released: expected a pool handle (graph.pool(), graph_pool_handle()), "
        "got [(0, 1), (0, 2)] (give pools as separate arguments: *log.pools)"
    )


def test_pools_bytes_refuses_what_is_no_pool(no_gpu_work: None) -> None:
    with pytest.raises(CgmemUsageError, match=r"^pools_bytes: expected a pool handle .* got 5$"):
        graphs.pools_bytes([(0, 1), 5])
    for what in (5, "ab", b"ab"):
        with pytest.raises(CgmemUsageError, match="pools_bytes: expected a collection of pool"):
            graphs.pools_bytes(what)  # type: ignore[arg-type]


def test_assert_pool_released_reads_the_pools_it_is_given(no_gpu_work: None) -> None:
    with pytest.raises(ReachedGpuWork):
        CgmemFixture([].append).assert_pool_released((0, 1), [0, 2], _Graph().pool())


class _NoTruth:
    """A value whose truth is an error (as a numpy array of two elements)."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array with more than one element is ambiguous")


_NOT_NUMPY_BOOL = type("bool_", (), {})()
"""Named as numpy's bool is, from another module."""

_NOT_FLAGS = [
    ("no", "'no'"),
    (0, "0"),
    (None, "None"),
    ([], "[]"),
    (_NoTruth(), "<"),
    (_NOT_NUMPY_BOOL, "<"),
]


@pytest.mark.parametrize(
    ("value", "shown"), _NOT_FLAGS, ids=["no", "zero", "none", "list", "array", "not-numpy"]
)
@pytest.mark.parametrize(
    ("where", "call"),
    [
        ("pool_bytes", lambda f, flag: f.pool_bytes((0, 1), release_workspaces=flag)),
        (
            "assert_pool_released",
            lambda f, flag: f.assert_pool_released((0, 1), release_workspaces=flag),
        ),
        ("pools_bytes", lambda f, flag: graphs.pools_bytes([(0, 1)], release_workspaces=flag)),
    ],
    ids=["pool_bytes", "assert_pool_released", "pools_bytes"],
)
def test_release_workspaces_must_be_true_or_false(
    no_gpu_work: None, where: str, call: Any, value: object, shown: str
) -> None:
    """A truthy string such as "no" released the workspaces, an array's truth raised from
    inside: refused before any GPU work."""
    with pytest.raises(CgmemUsageError) as info:
        call(CgmemFixture([].append), value)
    assert _one_line(info).startswith(
        f"{where}: release_workspaces must be True or False, got {shown}"
    )


def _numpy_flags() -> list[object]:
    try:
        import numpy
    except ImportError:
        return []
    return [numpy.True_, numpy.False_, numpy.array([1, 0]) > 0]


@pytest.mark.parametrize("flag", [True, False, *_numpy_flags()[:2]])
def test_release_workspaces_true_or_false_goes_on(no_gpu_work: None, flag: bool) -> None:
    with pytest.raises(ReachedGpuWork):
        CgmemFixture([].append).pool_bytes((0, 1), release_workspaces=flag)


def test_pools_are_read_releasing_the_workspaces_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cuBLAS workspaces are released before a pool that holds memory is judged, unless
    ``release_workspaces=False`` (docs/graphs.md)."""
    released: list[bool] = []

    def measure_pools(wanted: list[object], release: Any) -> dict[object, int]:
        released.append(release(dict.fromkeys(wanted, MiB)))
        return {}

    monkeypatch.setattr(graphs, "_measure_pools", measure_pools)
    fixture = CgmemFixture([].append)
    assert fixture.pool_bytes((0, 1)) == 0
    fixture.assert_pool_released((0, 1))
    assert fixture.pool_bytes((0, 1), release_workspaces=False) == 0
    fixture.assert_pool_released((0, 1), release_workspaces=False)
    assert released == [True, True, False, False]


@pytest.mark.skipif(not _numpy_flags(), reason="needs numpy")
def test_a_numpy_array_of_flags_is_refused(no_gpu_work: None) -> None:
    with pytest.raises(CgmemUsageError) as info:
        CgmemFixture([].append).pool_bytes((0, 1), release_workspaces=_numpy_flags()[2])  # type: ignore[arg-type]
    assert _one_line(info) == (
        "pool_bytes: release_workspaces must be True or False, got array([ True, False])"
    )


@pytest.mark.parametrize(("value", "shown"), _NOT_FLAGS[:2], ids=["no", "zero"])
def test_a_log_s_release_workspaces_is_true_false_or_none(value: object, shown: str) -> None:
    log = graphs.GraphLog()
    with pytest.raises(CgmemUsageError) as info:
        log.pool_bytes(release_workspaces=value)  # type: ignore[arg-type]
    assert _one_line(info) == (
        f"log.pool_bytes: release_workspaces must be True, False or None, got {shown}"
    )
    assert log.pool_bytes(release_workspaces=None) == {}  # no capture: no pool to read


# graphs(label=...) -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "label",
    ["batch", 5, lambda size: size, functools.partial(lambda a, b: a, 1)],
    ids=["string", "int", "takes-the-size", "partial-needing-one-more"],
)
def test_graphs_refuses_a_label_it_cannot_call_with_no_argument(label: object) -> None:
    recorded: list[RegionResult] = []
    with (
        pytest.raises(CgmemUsageError) as info,
        CgmemFixture(recorded.append).graphs(label),  # type: ignore[arg-type]
    ):
        pytest.fail("the body ran")
    assert _one_line(info).startswith(
        "graphs: label must be a callable taking no argument, read at each capture "
        "(e.g. lambda: runner.capturing_size), got "
    )
    assert recorded == []
    assert not graphs.hooks_installed()


def test_graphs_label_message() -> None:
    with pytest.raises(CgmemUsageError) as info, graphs.track("batch"):  # type: ignore[arg-type]
        pass
    assert str(info.value) == (
        "graphs: label must be a callable taking no argument, read at each capture "
        "(e.g. lambda: runner.capturing_size), got 'batch'"
    )


class _Runner:
    capturing_size = 8

    def size(self) -> int:
        return self.capturing_size

    def __call__(self, default: int = 1) -> int:
        return default


@pytest.mark.parametrize(
    "label",
    [lambda: 1, _Runner().size, _Runner(), functools.partial(lambda a: a, 1), int, None],
    ids=["lambda", "method", "callable-object", "partial", "builtin", "none"],
)
def test_graphs_takes_a_label_callable_with_no_argument(label: object) -> None:
    recorded: list[RegionResult] = []
    with CgmemFixture(recorded.append).graphs(label):  # type: ignore[arg-type]
        pass
    assert [r.label for r in recorded] == ["graphs"]


# capture_sweep ---------------------------------------------------------------------------
def _fn(x: object) -> object:
    return x


def _make_input(size: int) -> int:
    return size


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((5, [1], _make_input), "capture_sweep: fn must be callable, got 5"),
        (
            (_fn, 5, _make_input),
            "capture_sweep: sizes must be a collection of whole numbers, got 5",
        ),
        (
            (_fn, None, _make_input),
            "capture_sweep: sizes must be a collection of whole numbers, got None",
        ),
        (
            (_fn, "12", _make_input),
            "capture_sweep: sizes must be a collection of whole numbers, got '12'",
        ),
        ((_fn, [1], 5), "capture_sweep: make_input must be callable, got 5"),
        ((_fn, [4, True], _make_input), "capture_sweep: sizes are whole numbers >= 1, got True"),
        ((_fn, [4, -2], _make_input), "capture_sweep: sizes are whole numbers >= 1, got -2"),
        ((_fn, [4, 2.0], _make_input), "capture_sweep: sizes are whole numbers >= 1, got 2.0"),
        ((_fn, [], _make_input), "capture_sweep: no sizes given"),
        (
            (_fn, [4, 2**63], _make_input),
            "capture_sweep: too large: the most is 9223372036854775807, got 9223372036854775808",
        ),
        (
            (_fn, [10**5000], _make_input),
            "capture_sweep: too large: the most is 9223372036854775807, got an integer of "
            "about 5000 digits",
        ),
    ],
    ids=[
        "fn",
        "sizes-int",
        "sizes-none",
        "sizes-str",
        "make_input",
        "bool",
        "negative",
        "float",
        "empty",
        "beyond-int64",
        "huge",
    ],
)
def test_capture_sweep_refuses_a_wrong_argument_before_any_gpu_work(
    no_gpu_work: None, arguments: tuple[object, object, object], message: str
) -> None:
    made: list[int] = []

    def make_input(size: int) -> int:
        made.append(size)
        return size

    fn, sizes, maker = arguments
    with pytest.raises(CgmemUsageError) as info:
        CgmemFixture([].append).capture_sweep(
            fn,  # type: ignore[arg-type]
            sizes,  # type: ignore[arg-type]
            make_input if maker is _make_input else maker,  # type: ignore[arg-type]
        )
    assert _one_line(info) == message
    assert made == []


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"warmup": -1}, "capture_sweep: warmup must be a whole number >= 0, got -1"),
        (
            {"pool": "pool"},
            "capture_sweep: pool must be a pool handle (graph.pool(), graph_pool_handle()) "
            "or None, got 'pool'",
        ),
        (
            {"pool": _Graph()},
            "capture_sweep: pool must be a pool handle (graph.pool(), graph_pool_handle()) "
            "or None, got <",
        ),
        (
            {"pool": (1.5, 2.5)},
            "capture_sweep: pool must be a pool handle (graph.pool(), graph_pool_handle()) "
            "or None, got (1.5, 2.5)",
        ),
        (
            {"pool": (True, False)},
            "capture_sweep: pool must be a pool handle (graph.pool(), graph_pool_handle()) "
            "or None, got (True, False)",
        ),
    ],
    ids=["warmup", "pool-string", "pool-graph", "pool-floats", "pool-bools"],
)
def test_capture_sweep_refuses_a_wrong_keyword_before_any_gpu_work(
    no_gpu_work: None, keywords: dict[str, object], message: str
) -> None:
    with pytest.raises(CgmemUsageError, match=f"^{re.escape(message)}"):
        CgmemFixture([].append).capture_sweep(_fn, [1], _make_input, **keywords)  # type: ignore[arg-type]


@pytest.mark.parametrize("pool", [None, (0, 1)], ids=["new-pool", "given-pool"])
def test_capture_sweep_goes_on_with_right_arguments(no_gpu_work: None, pool: object) -> None:
    with pytest.raises(ReachedGpuWork):
        CgmemFixture([].append).capture_sweep(_fn, (8, 1, 4), _make_input, pool=pool)


# cgmem_record(RegionResult) --------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "named"), [("x", " 'x'"), (None, "")], ids=["labelled", "unlabelled"]
)
def test_record_refuses_a_region_result_with_no_device(label: str | None, named: str) -> None:
    got: list[RegionResult] = []
    with pytest.raises(CgmemUsageError) as info:
        FigureRecorder(got.append)(RegionResult(label, (), 0.0))
    assert _one_line(info) == (
        f"cgmem_record: the RegionResult{named} holds no device's figures (its devices are empty)"
    )
    assert got == []


def test_record_takes_a_region_result_with_a_device() -> None:
    got: list[RegionResult] = []
    FigureRecorder(got.append)(RegionResult("x", (DeviceFigures(0, peak=1),), 0.0))
    assert [r.label for r in got] == ["x"]


@pytest.mark.parametrize(
    ("region", "keywords", "message"),
    [
        (
            RegionResult("x", (DeviceFigures(0, peak=1),), 1.0),
            {"device_index": 3},
            "cgmem_record: a RegionResult brings its own devices and seconds; device_index "
            "and seconds go with figures",
        ),
        (
            RegionResult("x", (DeviceFigures(0, peak=1),), 1.0),
            {"seconds": -5},
            "cgmem_record: a RegionResult brings its own devices and seconds; device_index "
            "and seconds go with figures",
        ),
        (
            RegionResult("x", None, 1.0),  # type: ignore[arg-type]
            {},
            "cgmem_record: the RegionResult's devices must be DeviceFigures, got None",
        ),
        (
            RegionResult("x", ({"peak": 1},), 1.0),  # type: ignore[arg-type]
            {},
            "cgmem_record: the RegionResult's devices must be DeviceFigures, got ({'peak': 1},)",
        ),
        (
            RegionResult("x", (DeviceFigures(0, peak=1),), 1.0, extra=[1]),  # type: ignore[arg-type]
            {},
            "cgmem_record: the RegionResult's extra must be a mapping, got [1]",
        ),
    ],
    ids=["device_index", "seconds", "devices-none", "devices-dicts", "extra-list"],
)
def test_record_refuses_what_a_region_result_cannot_carry(
    region: RegionResult, keywords: dict[str, object], message: str
) -> None:
    """device_index and seconds were ignored; a malformed RegionResult was a TypeError from
    inside the record."""
    got: list[RegionResult] = []
    with pytest.raises(CgmemUsageError) as info:
        FigureRecorder(got.append)(region, **keywords)  # type: ignore[arg-type]
    assert _one_line(info) == message
    assert got == []


def test_a_region_with_seconds_beyond_any_float_is_a_usage_error() -> None:
    data = {"label": "x", "seconds": 10**400, "devices": [], "error": None, "extra": {}}
    with pytest.raises(CgmemUsageError) as info:
        RegionResult.from_dict(data)
    assert _one_line(info) == (
        "expected a run file's region (label, seconds, devices), got seconds=an integer of "
        "about 400 digits"
    )


# numpy's integers and floats -----------------------------------------------------------
def test_numpy_numbers_are_taken_where_python_s_are(
    no_gpu_work: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They were refused with messages that called them no whole number
    ("sizes are whole numbers >= 1, got np.int64(1)")."""
    np = pytest.importorskip("numpy")
    fixture = CgmemFixture([].append)
    with pytest.raises(ReachedGpuWork):
        fixture.capture_sweep(_fn, np.arange(1, 3), _make_input)
    region = pytest.importorskip("pytest_cgmem.cuda.region")
    monkeypatch.setattr(region.allocator, "current_device", _reached)
    with pytest.raises(ReachedGpuWork), fixture.measure(devices=np.arange(1)):
        pass
    resize = pytest.importorskip("pytest_cgmem.cuda.resize")
    monkeypatch.setattr(resize, "run_steady", _reached)
    with pytest.raises(ReachedGpuWork):
        fixture.steady(lambda: None, warmup=np.int64(1), repeat=np.int64(2))
    got: list[RegionResult] = []
    FigureRecorder(got.append)("x", peak=1, device_index=np.int64(1), seconds=np.float32(0.5))
    (device,) = got[0].devices
    assert (device.index, got[0].seconds) == (1, 0.5)
    assert type(device.index) is int and type(got[0].seconds) is float
    launch = launch_arguments(_fn, np.int64(2), "gloo", np.float32(30), None, "forkserver")
    assert (launch.world_size, launch.timeout) == (2, 30.0) and type(launch.world_size) is int


def test_expect_replay_takes_numpy_s_integers() -> None:
    np = pytest.importorskip("numpy")
    with (
        pytest.raises(EagerFallback),  # accepted: the body replayed nothing
        CgmemFixture([].append).expect_replay(at_least=np.int64(2)),
    ):
        pass
    assert not graphs.hooks_installed()
