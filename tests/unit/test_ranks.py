"""Distributed ranks without processes: arguments, rank naming in failures, the result a
test gets, and a torchrun job's records merged by rank 0 (pure)."""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import pickle
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_cgmem import BudgetExceeded, DeviceFigures, RegionResult, Violation
from pytest_cgmem.checks.budgets import parse_budget
from pytest_cgmem.metrics import rank_label, unranked_label
from pytest_cgmem.results import runfile
from pytest_cgmem.results.ranks import (
    EXITED,
    LINGERED,
    OK,
    RAISED,
    STOPPED,
    TIMEOUT,
    DistributedResult,
    Launch,
    RankOutcome,
    RankResult,
    exit_status,
    failure,
    launch_arguments,
    not_picklable,
    rank_region,
    result,
)
from pytest_cgmem.results.records import TestRecord
from pytest_cgmem.results.torchrun import (
    GATHER_TIMEOUT,
    Job,
    gather,
    gather_timeout,
    merge_records,
    rank_file,
    ranked_regions,
    release,
)
from pytest_cgmem.units import CgmemUsageError

MiB = 2**20


def fn(rank: int, world_size: int) -> None:
    """A picklable rank function."""


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"world_size": 0}, "world_size must be a whole number from 1 to 1024, got 0"),
        ({"world_size": -2}, "world_size must be a whole number from 1 to 1024, got -2"),
        ({"world_size": True}, "world_size must be a whole number from 1 to 1024, got True"),
        ({"world_size": "2"}, "world_size must be a whole number from 1 to 1024, got '2'"),
        (
            {"world_size": -(10**5000)},
            "world_size must be a whole number from 1 to 1024, got an integer of",
        ),
        ({"world_size": 1025}, "world_size must be a whole number from 1 to 1024, got 1025"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0"),
        ({"timeout": -1.5}, "timeout must be a number of seconds > 0, got -1.5"),
        ({"timeout": float("inf")}, "timeout must be a number of seconds > 0, got inf"),
        ({"timeout": float("nan")}, "timeout must be a number of seconds > 0, got nan"),
        ({"timeout": "60"}, "timeout must be a number of seconds > 0, got '60'"),
        ({"timeout": True}, "timeout must be a number of seconds > 0, got True"),
        ({"backend": ""}, "backend must be a torch.distributed backend name"),
        ({"backend": None}, "backend must be a torch.distributed backend name"),
        ({"label": "a/b"}, "label must be a non-empty string without '/'"),
        ({"label": ""}, "label must be a non-empty string without '/', got ''"),
        ({"start_method": "fork"}, "start_method must be one of forkserver, spawn, got 'fork'"),
        ({"fn": "not a function"}, "fn must be a function fn(rank, world_size)"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(kwargs: dict[str, object], fragment: str) -> None:
    arguments: dict[str, object] = {
        "fn": fn,
        "world_size": 2,
        "backend": "gloo",
        "timeout": 60,
        **kwargs,
    }
    with pytest.raises(CgmemUsageError) as info:
        launch_arguments(**arguments)
    message = str(info.value)
    assert message.startswith("cgmem.distributed: ")
    assert fragment in message
    assert "\n" not in message


class _NoTruth:
    """Compares to anything as a value with no truth (as a numpy array of two elements)."""

    def __eq__(self, other: object) -> bool:
        return _Ambiguous()  # type: ignore[return-value]

    __hash__ = None  # type: ignore[assignment]


class _Ambiguous:
    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array with more than one element is ambiguous")


_HUGE, _LONG = (10**5000, "got an integer of about 5000 digits"), ("x" * 5000, "(5002 characters)")


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("fn", *_HUGE),
        ("backend", *_HUGE),
        ("label", *_HUGE),
        ("start_method", *_HUGE),
        ("fn", *_LONG),
        ("start_method", *_LONG),
        ("start_method", _NoTruth(), "got <"),
    ],
    ids=["fn", "backend", "label", "start_method", "fn-long", "start_method-long", "no-truth"],
)
def test_a_bad_argument_is_refused_in_one_short_line(name: str, value: object, shown: str) -> None:
    """An argument whose repr Python refuses to write (an int of more than 4300 digits),
    one of thousands of characters, or one whose comparison has no truth value is named
    short, never raised as ValueError from repr() or ``in``."""
    arguments: dict[str, object] = {"fn": fn, "world_size": 2, "backend": "gloo", "timeout": 60}
    arguments[name] = value
    with pytest.raises(CgmemUsageError) as info:
        launch_arguments(**arguments)
    message = str(info.value)
    assert message.startswith(f"cgmem.distributed: {name} must be ")
    assert shown in message
    assert "\n" not in message
    assert len(message) < 300


def test_good_arguments() -> None:
    launch = launch_arguments(fn, 2, " nccl ", 30)
    assert launch == Launch(2, "nccl", 30.0, None, "forkserver")
    assert launch.needs_cuda
    assert not launch_arguments(fn, 1, "gloo", 0.5, "tp", "spawn").needs_cuda
    assert launch_arguments(fn, 2, "cpu:gloo,cuda:nccl", 1).needs_cuda
    assert launch_arguments(fn, 1024, "gloo", 1).world_size == 1024


def test_a_launch_and_a_rank_s_outcome_are_frozen_values() -> None:
    launch = Launch(2, "gloo", 60.0)
    outcome = RankOutcome(1, RAISED, 1, error="ValueError: boom")
    assert hash(launch) == hash(Launch(2, "gloo", 60.0))
    assert hash(outcome) == hash(RankOutcome(1, RAISED, 1, error="ValueError: boom"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        launch.world_size = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.status = OK  # type: ignore[misc]


def _local() -> None:
    pass


@pytest.mark.parametrize(
    ("function", "problem", "said"),
    [
        (
            _local,
            AttributeError("Can't pickle local object '_local'\nsecond line"),
            "'_local' is not (AttributeError: Can't pickle local object '_local')",
        ),
        (_local, pickle.PicklingError(), "'_local' is not (PicklingError: cannot pickle)"),
        (
            functools.partial(fn, 1),
            TypeError("cannot pickle"),
            f"{repr(functools.partial(fn, 1))!r} is not (TypeError: cannot pickle)",
        ),
    ],
    ids=["first-line", "no-message", "no-qualname"],
)
def test_a_function_that_does_not_pickle_is_named_with_the_reason(
    function: object, problem: BaseException, said: str
) -> None:
    message = str(not_picklable(function, problem))
    assert message == (
        "cgmem.distributed: fn must be picklable, i.e. a function defined at the top level of "
        f"an importable module; {said}"
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"timeout": 1e10}, "timeout must be a number of seconds > 0 and at most 604800 (a week)"),
        ({"timeout": 7 * 24 * 3600 + 1}, "at most 604800 (a week), got 604801.0"),
        ({"timeout": 2**70}, "at most 604800 (a week), got 1.1805916207174113e+21"),
        ({"backend": "bogus"}, "one of gloo, nccl, "),
        ({"backend": "bogus"}, "'cpu:gloo,cuda:nccl', got 'bogus'"),
        ({"backend": "cpu:gloo,cuda"}, "got 'cpu:gloo,cuda' ('cuda' is not a device:backend pair)"),
        ({"backend": "cpu:gloo,cpu:gloo"}, "(device 'cpu' is given twice)"),
        ({"backend": "cpu:gloo,cuda:bogus"}, "('bogus' is not a backend)"),
        ({"backend": "cpu:gloo,,"}, "('' is not a device:backend pair)"),
        ({"backend": "cpu:gloo:nccl"}, "('cpu:gloo:nccl' is not a device:backend pair)"),
    ],
)
def test_what_no_rank_could_use_is_refused_before_any_starts(
    kwargs: dict[str, object], fragment: str
) -> None:
    """A timeout that overflows the timers it is waited with, a backend torch does not know:
    one line at the call, not a traceback from inside the wait or a rank's failure."""
    pytest.importorskip("torch.distributed")
    from pytest_cgmem.cuda.distributed import check_backend, check_launch

    launch = launch_arguments(
        **{"fn": fn, "world_size": 2, "backend": "gloo", "timeout": 60, **kwargs}
    )
    with pytest.raises(CgmemUsageError) as info:
        check_launch(launch)
        check_backend(launch.backend)
    message = str(info.value)
    assert message.startswith("cgmem.distributed: ")
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "backend", ["gloo", "nccl", "NCCL", "mpi", "ucc", "cpu:gloo,cuda:nccl", "CPU:GLOO"]
)
def test_backends_and_timeouts_torch_takes_pass(backend: str) -> None:
    pytest.importorskip("torch.distributed")
    from pytest_cgmem.cuda.distributed import MAX_TIMEOUT, check_backend, check_launch

    check_launch(launch_arguments(fn, 2, backend, MAX_TIMEOUT))
    check_backend(backend)


def test_every_backend_this_torch_lists_passes() -> None:
    """The list moves with torch: torch 2.4 lists no xccl, for one."""
    dist = pytest.importorskip("torch.distributed")
    from pytest_cgmem.cuda.distributed import check_backend

    listed = [b for b in dist.Backend.backend_list if b != "undefined"]
    assert listed
    for backend in listed:
        check_backend(backend)


def test_a_backend_is_not_judged_where_torch_lists_none() -> None:
    from pytest_cgmem.cuda.distributed import _backend_problem

    assert _backend_problem("my_registered_backend", []) is None
    assert _backend_problem("hccl", ["gloo", "nccl", "hccl"]) is None


def test_torch_lists_no_backend_without_a_backend_list_or_torch_distributed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dist = pytest.importorskip("torch.distributed")
    from pytest_cgmem.cuda.distributed import _known_backends, check_backend

    monkeypatch.delattr(dist.Backend, "backend_list")
    assert _known_backends() == []
    check_backend("my_registered_backend")
    monkeypatch.setitem(sys.modules, "torch.distributed", None)
    assert _known_backends() == []


def test_a_timeout_too_long_is_refused_before_a_test_without_devices_is_skipped() -> None:
    """The backend is judged once the devices are there (judging it imports torch); the
    timeout before: a wrong argument is said on every machine."""
    from pytest_cgmem.fixture import DistributedRunner

    asked: list[int] = []
    runner = DistributedRunner(lambda region: None, asked.append)
    with pytest.raises(CgmemUsageError, match=r"at most 604800 \(a week\), got 10000000000\.0"):
        runner(fn, 2, "nccl", timeout=1e10)
    assert asked == []


def test_a_runner_with_no_device_check_says_the_devices_nccl_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``DistributedRunner(record)`` (no ``require_devices``) does not skip: NCCL ranks
    beyond the visible devices are a usage error before any rank starts."""
    allocator = pytest.importorskip("pytest_cgmem.cuda.allocator")
    from pytest_cgmem.fixture import DistributedRunner

    monkeypatch.setattr(allocator, "cuda_usable", lambda: True)
    monkeypatch.setattr(allocator, "device_count", lambda: 1)
    with pytest.raises(CgmemUsageError) as info:
        DistributedRunner(lambda region: None)(fn, 2, "nccl")
    assert str(info.value) == (
        "cgmem.distributed: backend 'nccl' needs 2 CUDA devices; 2 ranks, 1 CUDA device(s) visible"
    )


@pytest.mark.parametrize("label", ["a\nb", "tab\there", "\x00"])
def test_a_label_that_is_not_printable_is_refused_as_other_labels_are(label: str) -> None:
    from pytest_cgmem.fixture import DistributedRunner

    with pytest.raises(CgmemUsageError) as info:
        DistributedRunner(lambda region: None)(fn, 2, "gloo", label=label)
    assert str(info.value) == (
        "cgmem.distributed: label must be a non-empty printable string (no newline or tab), "
        f"got {label!r}"
    )


class _Warmup:
    """A context's ``Process`` that starts nothing: records the fork server's warm-up."""

    def __init__(self, alive: bool = False) -> None:
        self.alive = alive
        self.started: list[Any] = []
        self.waited: list[float] = []
        self.killed = False

    def __call__(self, target: Any) -> _Warmup:
        self.started.append(target)
        return self

    def start(self) -> None:
        pass

    def join(self, timeout: float) -> None:
        self.waited.append(timeout)

    def is_alive(self) -> bool:
        return self.alive

    def kill(self) -> None:
        self.killed = True


@pytest.fixture
def warmups(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, _Warmup], list[list[str]]]:
    """No fork server warmed yet; each context's warm-up recorded, none started; the
    modules the fork server is asked to preload."""
    from pytest_cgmem.cuda import distributed

    monkeypatch.setattr(distributed, "_warm", set())
    recorded = {method: _Warmup() for method in ("forkserver", "spawn")}
    for method, warmup in recorded.items():
        monkeypatch.setattr(multiprocessing.get_context(method), "Process", warmup)
    preloads: list[list[str]] = []
    server = multiprocessing.get_context("forkserver")
    monkeypatch.setattr(server, "set_forkserver_preload", preloads.append)
    return recorded, preloads


def test_the_first_fork_server_call_preloads_torch_and_waits_for_it_once(
    warmups: tuple[dict[str, _Warmup], list[list[str]]],
) -> None:
    from pytest_cgmem.cuda.distributed import _context

    recorded, preloads = warmups
    assert _context("forkserver", 60.0).get_start_method() == "forkserver"
    assert _context("forkserver", 60.0).get_start_method() == "forkserver"
    assert _context("spawn", 60.0).get_start_method() == "spawn"
    assert len(recorded["forkserver"].started) == 1
    assert recorded["forkserver"].waited == [120.0]  # at least two minutes for its import
    assert recorded["spawn"].started == []
    (preload,) = preloads
    assert preload[-3:] == ["torch", "torch.distributed", "pytest_cgmem.cuda.region"]
    assert len(set(preload)) == len(preload)


def test_a_fork_server_that_does_not_start_is_killed_and_said(
    warmups: tuple[dict[str, _Warmup], list[list[str]]],
) -> None:
    from pytest_cgmem.cuda.distributed import _context

    recorded, _ = warmups
    recorded["forkserver"].alive = True
    with pytest.raises(RuntimeError) as info:
        _context("forkserver", 600.0)
    assert str(info.value) == "cgmem.distributed: the fork server did not start"
    assert recorded["forkserver"].waited == [600.0]
    assert recorded["forkserver"].killed


def test_ranks_are_spawned_where_there_is_no_fork_server(
    warmups: tuple[dict[str, _Warmup], list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_cgmem.cuda.distributed import _context

    recorded, _ = warmups
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert _context("forkserver", 60.0).get_start_method() == "spawn"
    assert _context("spawn", 60.0).get_start_method() == "spawn"
    assert recorded["forkserver"].started == recorded["spawn"].started == []


def test_exit_status_in_words() -> None:
    assert exit_status(3) == "exit status 3"
    assert exit_status(0) == "exit status 0"
    assert exit_status(-9) == "exit status -9 (SIGKILL)"
    assert exit_status(-15) == "exit status -15 (SIGTERM)"
    assert exit_status(None) == "still running"
    assert exit_status(-40) == "exit status -40"  # a real-time signal: Python names none


# -- rank naming ------------------------------------------------------------------------------


def test_rank_labels() -> None:
    assert rank_label(1) == "rank1"
    assert rank_label(1, "call") == "rank1"
    assert rank_label(0, "kv") == "rank0/kv"
    assert unranked_label(1, "rank1") is None
    assert unranked_label(1, "rank1/kv") == "kv"
    assert unranked_label(1, "other") == "other"


def test_violation_names_rank_and_device() -> None:
    violation = Violation("leak", 0, 64 * MiB, "cuda:1", "rank1", 1)
    assert violation.message == (
        "cgmem: leak 64.00 MiB exceeds budget 0 B (over by 64.00 MiB) on rank 1 (cuda:1)"
    )
    labelled = Violation("peak", MiB, 2 * MiB, "cuda:0", "rank0/kv", 0)
    assert labelled.message.endswith("on rank 0 (cuda:0) in 'kv'")
    data = violation.to_dict()
    assert data["rank"] == 1
    assert Violation.from_dict(data) == violation


def test_violation_without_rank_is_unchanged() -> None:
    violation = Violation("leak", 0, 4 * MiB, "cuda:1", "prefill")
    assert violation.message == (
        "cgmem: leak 4.00 MiB exceeds budget 0 B (over by 4.00 MiB) on cuda:1 in 'prefill'"
    )
    assert "rank" not in violation.to_dict()
    assert list(violation.to_dict()) == ["metric", "limit", "actual", "where", "label", "message"]


def region_of(rank: int, leak: int, *, unmeasured: str | None = None) -> RegionResult:
    launch = Launch(2, "nccl", 60.0)
    devices = () if unmeasured else (DeviceFigures(rank, peak=leak, leak=leak, non_torch=MiB),)
    measured = RegionResult(f"rank{rank}", devices, 0.1, None, {"rank": rank})
    return rank_region(launch, rank, measured, 0.1, None, unmeasured)


def test_distributed_result_checks_every_rank_naming_it() -> None:
    launch = Launch(2, "nccl", 60.0)
    regions = {0: region_of(0, 0), 1: region_of(1, 64 * MiB)}
    outcomes = [RankOutcome(0, OK, 0, value=3.0), RankOutcome(1, OK, 0, value=3.0)]
    found = result(launch, outcomes, regions)
    assert found.measured and found.unmeasured is None
    assert found.values == [3.0, 3.0]
    assert found.per_rank[1].leak == 64 * MiB
    assert found.per_rank[1].device == 1
    assert found.per_rank[0].leak == 0
    assert found.leak == 64 * MiB  # the largest over the ranks
    assert found.non_torch == MiB
    found.check(leak="64 MiB")
    with pytest.raises(BudgetExceeded) as info:
        found.check(leak=0)
    assert str(info.value) == (
        "cgmem: leak 64.00 MiB exceeds budget 0 B (over by 64.00 MiB) on rank 1 (cuda:1)"
    )
    with pytest.raises(CgmemUsageError, match=r"^cgmem.distributed: check\(\) needs at least one"):
        found.check()
    assert "rank 1 cuda:1" in repr(found)
    assert (found.world_size, found.backend, found.label) == (2, "nccl", None)


def test_a_result_s_repr_shows_every_rank_s_summary_figures() -> None:
    launch = Launch(2, "nccl", 60.0)
    found = result(
        launch,
        [RankOutcome(0, OK, 0), RankOutcome(1, OK, 0)],
        {0: region_of(0, 0), 1: region_of(1, 64 * MiB)},
    )
    rank1 = (
        "<RankResult rank 1 cuda:1 peak=64.00 MiB, reserved=n/a, leak=64.00 MiB, device=n/a, "
        "non_torch=1.00 MiB>"
    )
    assert repr(found.per_rank[1]) == rank1
    assert repr(found) == (
        "<DistributedResult world_size=2 nccl: <RankResult rank 0 cuda:0 peak=0 B, "
        f"reserved=n/a, leak=0 B, device=n/a, non_torch=1.00 MiB>, {rank1}>"
    )


@pytest.mark.parametrize(
    ("error", "extra", "why"),
    [
        ("ValueError: boom", {}, "ValueError: boom"),
        (None, {}, "no figures"),
        ("ValueError: boom", {"unmeasured": "no CUDA device"}, "no CUDA device"),
    ],
)
def test_an_unmeasured_rank_s_repr_says_why(
    error: str | None, extra: dict[str, object], why: str
) -> None:
    rank = RankResult(0, RegionResult("rank0", (), 0.1, error, extra))
    assert repr(rank) == f"<RankResult rank 0: not measured ({why})>"


def test_an_attribute_a_result_lacks_is_an_attribute_error() -> None:
    found = result(Launch(1, "gloo", 1.0), [RankOutcome(0, OK, 0)], {0: region_of(0, 0)})
    assert isinstance(found, DistributedResult)
    assert not hasattr(found, "leaks")
    assert not hasattr(found.per_rank[0], "leaks")
    with pytest.raises(AttributeError, match="leaks"):
        found.per_rank[0].leaks  # noqa: B018


def test_rank_regions_are_labelled_tagged_and_judged() -> None:
    region = region_of(1, 0)
    assert region.label == "rank1"
    assert region.extra["rank"] == 1
    assert region.extra["world_size"] == 2
    assert region.extra["backend"] == "nccl"
    assert region.judged  # held against the test's budget, like recorded figures
    assert not RegionResult("call", (), 0.0, None, {"rank": 1}).judged  # a torchrun rank's
    labelled = rank_region(Launch(2, "gloo", 1.0, "tp"), 0, None, 0.5, "stopped", None)
    assert labelled.label == "rank0/tp"
    assert labelled.error == "stopped"
    assert labelled.devices == ()
    assert labelled.seconds == 0.5
    assert labelled.extra == {
        "rank": 0,
        "world_size": 2,
        "backend": "gloo",
        "launcher": "cgmem.distributed",
    }


@pytest.mark.parametrize(
    ("own", "error", "kept"),
    [
        (None, "cgmem stopping it", "cgmem stopping it"),
        ("ValueError: boom", "cgmem stopping it", "ValueError: boom"),
        (None, None, None),
    ],
)
def test_a_rank_s_measured_region_is_renamed_and_keeps_its_own_error_first(
    own: str | None, error: str | None, kept: str | None
) -> None:
    sent = RegionResult("call", (DeviceFigures(1, peak=MiB),), 0.2, own, {"recorded": ["peak"]})
    region = rank_region(Launch(2, "gloo", 1.0, "tp"), 1, sent, 0.5, error, "no CUDA device")
    assert region.label == "rank1/tp"
    assert region.error == kept
    assert region.seconds == 0.2
    assert region.devices == sent.devices
    assert region.extra == {
        "recorded": ["peak"],
        "rank": 1,
        "world_size": 2,
        "backend": "gloo",
        "launcher": "cgmem.distributed",
        "unmeasured": "no CUDA device",
    }


def test_an_outcome_without_figures_has_no_seconds_of_its_own() -> None:
    """The runner gives such a rank's region the call's seconds (``o.seconds or seconds``)."""
    assert RankOutcome(1, EXITED, 3).seconds == 0.0


def test_without_cuda_a_result_holds_no_figures_and_says_why() -> None:
    launch = Launch(2, "gloo", 60.0)
    regions = {r: region_of(r, 0, unmeasured="no CUDA device") for r in (0, 1)}
    outcomes = [RankOutcome(r, OK, 0, value=r) for r in (0, 1)]
    found = result(launch, outcomes, regions)
    assert not found.measured
    assert found.unmeasured == "no CUDA device"
    assert found.leak is None and found.per_rank[0].peak is None
    assert found.per_rank[0].device is None
    found.check(leak=0, peak=0)  # nothing was measured: nothing is over budget
    assert "not measured (no CUDA device)" in repr(found)


# -- failures -------------------------------------------------------------------------------


def test_a_raising_rank_is_named_with_its_traceback_and_the_stopped_ones() -> None:
    launch = Launch(3, "gloo", 60.0)
    outcomes = [
        RankOutcome(0, STOPPED, -15),
        RankOutcome(1, RAISED, 1, error="ValueError: boom", detail="Traceback\n  line\n"),
        RankOutcome(2, STOPPED, -15),
    ]
    problem = failure(outcomes, launch)
    assert problem is not None
    assert str(problem).splitlines() == [
        "cgmem: rank 1 of 3 raised ValueError: boom",
        "    Traceback",
        "      line",
        "cgmem: stopped ranks 0, 2 (still running when rank 1 failed)",
    ]
    assert (problem.rank, problem.status, problem.exitcode) == (1, RAISED, 1)


def test_an_exited_rank_is_named_with_its_exit_status_and_device() -> None:
    launch = Launch(2, "nccl", 60.0)
    outcomes = [RankOutcome(0, STOPPED, -15, device=0), RankOutcome(1, EXITED, 3, device=1)]
    problem = failure(outcomes, launch)
    assert problem is not None
    assert str(problem).splitlines() == [
        "cgmem: rank 1 of 2 (cuda:1) exited before sending its figures: exit status 3",
        "cgmem: stopped rank 0 (still running when rank 1 failed)",
    ]
    assert problem.exitcode == 3


def test_a_hanging_rank_is_named_with_the_timeout() -> None:
    launch = Launch(2, "gloo", 2.5)
    outcomes = [RankOutcome(0, OK, 0), RankOutcome(1, TIMEOUT, -15, detail="waiting...")]
    problem = failure(outcomes, launch)
    assert problem is not None
    assert str(problem).splitlines() == [
        "cgmem: rank 1 of 2 did not finish within the timeout of 2.5 s; "
        "stopped: exit status -15 (SIGTERM)",
        "    waiting...",
    ]
    assert failure([RankOutcome(0, OK, 0)], launch) is None


def test_the_likeliest_cause_comes_first() -> None:
    launch = Launch(3, "gloo", 60.0)
    peer_error = "RuntimeError: Connection closed by peer"
    crashed = [
        RankOutcome(0, RAISED, 1, error=peer_error, at=2.0),
        RankOutcome(1, EXITED, -11, at=3.0),  # seen later, but its end caused rank 0's error
        RankOutcome(2, STOPPED, -15),
    ]
    problem = failure(crashed, launch)
    assert problem is not None
    assert str(problem).splitlines() == [
        "cgmem: rank 1 of 3 exited before sending its figures: exit status -11 (SIGSEGV)",
        f"cgmem: rank 0 of 3 raised {peer_error}",
        "cgmem: stopped rank 2 (still running when rank 1 failed)",
    ]
    raised = [
        RankOutcome(0, RAISED, 1, error=peer_error, at=2.0),
        RankOutcome(1, RAISED, 1, error="ValueError: first", at=1.0),
    ]
    problem = failure(raised, Launch(2, "gloo", 60.0))
    assert problem is not None and problem.rank == 1


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("planted on rank 1\nmore"), "ValueError: planted on rank 1"),
        (AssertionError(), "AssertionError"),
        (RuntimeError("\n  after a blank line \n"), "RuntimeError: after a blank line"),
        (Unprintable(), "Unprintable: <exception str() failed>"),
    ],
)
def test_a_rank_s_error_is_its_exception_in_one_line(exc: BaseException, line: str) -> None:
    """What follows "raised" in the failure and "region ended by" in the report: a bare
    ``assert`` in ``fn`` is named without a dangling colon, and an exception whose text
    cannot be made is named as Python's traceback names it (the rank still says it raised)."""
    from pytest_cgmem.cuda.distributed import _one_line

    assert _one_line(exc) == line


def test_long_output_is_cut_to_its_end() -> None:
    detail = "\n".join(f"line {i}" for i in range(100))
    problem = failure([RankOutcome(0, EXITED, 1, detail=detail)], Launch(1, "gloo", 1.0))
    assert problem is not None
    lines = str(problem).splitlines()
    assert lines[1] == "    ... (70 lines above)"
    assert lines[2:] == [f"    line {i}" for i in range(70, 100)]


def test_a_rank_s_output_is_quoted_from_its_last_whole_lines(tmp_path: Path) -> None:
    """At most ``_TAIL`` bytes from the end, less the line they cut into."""
    from pytest_cgmem.cuda.distributed import _TAIL, _tail

    path = tmp_path / "rank0.out"
    assert _tail(str(path)) == ""  # the rank wrote nothing, not even its file
    whole = "x" * (_TAIL - 6) + "\nlast\n"
    path.write_text(whole)
    assert len(whole) == _TAIL and _tail(str(path)) == whole
    kept = "".join(f"line {i}\n" for i in range(_TAIL // 16))
    kept = "y" * (_TAIL - 1 - len(kept)) + kept  # its first line whole too
    path.write_text("cut " * 40 + "\n" + kept)  # the last _TAIL bytes start at that newline
    assert _tail(str(path)) == kept
    exact = "z" * (_TAIL - len(kept) - 1) + "\n" + kept  # _TAIL bytes, a line's start first
    path.write_text("cut " * 40 + "\n" + exact)
    assert _tail(str(path)) == exact
    path.write_text("w" * (_TAIL + 40))  # one line longer than _TAIL: its last _TAIL bytes
    assert _tail(str(path)) == "w" * _TAIL


def test_each_rank_s_output_is_echoed_under_its_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_cgmem.cuda.distributed import _echo

    (tmp_path / "rank1.out").write_text("one\n  \ntwo")  # rank 0 wrote no file
    (tmp_path / "rank2.out").write_text(" \n")
    _echo(str(tmp_path), 3)
    assert capsys.readouterr().out == "[rank 1] one\n[rank 1]   \n[rank 1] two\n"


@pytest.mark.parametrize(("count", "shown"), [(30, 30), (31, 30)])
def test_output_of_thirty_lines_is_shown_whole(count: int, shown: int) -> None:
    detail = "\n".join(f"line {i}" for i in range(count))
    problem = failure([RankOutcome(0, EXITED, 1, detail=detail)], Launch(1, "gloo", 1.0))
    assert problem is not None
    quoted = str(problem).splitlines()[1:]
    cut = [f"    ... ({count - shown} lines above)"] if count > shown else []
    assert quoted == [*cut, *(f"    line {i}" for i in range(count - shown, count))]


def test_a_rank_that_sent_its_figures_but_did_not_exit_is_named() -> None:
    outcomes = [RankOutcome(0, OK, 0), RankOutcome(1, LINGERED, -15, device=1, detail="bye")]
    problem = failure(outcomes, Launch(2, "nccl", 120.0))
    assert problem is not None
    assert str(problem).splitlines() == [
        "cgmem: rank 1 of 2 (cuda:1) sent its figures but did not exit within the timeout of "
        "120 s; stopped: exit status -15 (SIGTERM)",
        "    bye",
    ]


@pytest.mark.parametrize("status", ["raised", "exited", "timeout", "lingered"])
def test_a_failure_s_status_is_one_of_the_documented_words(status: str) -> None:
    outcomes = [RankOutcome(0, status, 1, error="E: x"), RankOutcome(1, "stopped", -15)]
    problem = failure(outcomes, Launch(2, "gloo", 1.0))
    assert problem is not None
    assert (problem.rank, problem.status) == (0, status)
    assert str(problem).splitlines()[-1] == (
        "cgmem: stopped rank 1 (still running when rank 0 failed)"
    )
    assert failure([RankOutcome(0, "ok", 0)], Launch(1, "gloo", 1.0)) is None


# -- torchrun ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visible", "local_rank", "device"), [(2, 1, 1), (2, 2, None), (0, 0, None)]
)
def test_a_torchrun_rank_measures_on_its_local_rank_where_that_device_is_visible(
    monkeypatch: pytest.MonkeyPatch, visible: int, local_rank: int, device: int | None
) -> None:
    """Else on the current device (None): where each rank sees only its own GPU."""
    allocator = pytest.importorskip("pytest_cgmem.cuda.allocator")
    from pytest_cgmem.cuda.distributed import torchrun_device

    monkeypatch.setattr(allocator, "cuda_usable", lambda: visible > 0)
    monkeypatch.setattr(allocator, "device_count", lambda: visible)
    assert torchrun_device(local_rank) == device


ENV = {
    "RANK": "1",
    "WORLD_SIZE": "2",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "TORCHELASTIC_RUN_ID": "abc",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
    "TORCHELASTIC_RESTART_COUNT": "0",
}


def test_job_from_torchrun_environment() -> None:
    job = Job.from_env(ENV)
    assert job is not None
    assert (job.rank, job.world_size, job.local_rank) == (1, 2, 1)
    assert "abc" in job.identity and "29500" in job.identity
    assert Job.from_env({}) is None
    assert Job.from_env({**ENV, "RANK": "x"}) is None
    assert Job.from_env({**ENV, "RANK": "2"}) is None
    assert Job.from_env({k: v for k, v in ENV.items() if k != "LOCAL_RANK"}) is None
    other = Job.from_env({**ENV, "MASTER_PORT": "29501"})
    assert other is not None and other.identity != job.identity


def record(rank: int, peak: int, outcome: str = "passed") -> TestRecord:
    budget = parse_budget({"peak": 100 * MiB})
    kv = RegionResult(
        "kv", (DeviceFigures(rank, peak=peak),), 0.0, None, {"rank": rank, "recorded": ["peak"]}
    )
    call = RegionResult("call", (DeviceFigures(rank, peak=MiB),), 0.0, None, {"rank": rank})
    return TestRecord(
        "test_x.py::test_a",
        outcome,
        (call, kv),
        budget=budget.limits,
        checked=("call", "kv"),
        violations=tuple(kv.check(budget)),
    )


def test_records_of_every_rank_merge_into_one_entry_per_test() -> None:
    merged = merge_records({0: [record(0, 64 * MiB)], 1: [record(1, 128 * MiB, "failed")]})
    assert len(merged) == 1
    test = merged[0]
    assert test.outcome == "failed"
    assert [r.label for r in test.regions] == ["rank0", "rank0/kv", "rank1", "rank1/kv"]
    assert [r.extra["rank"] for r in test.regions] == [0, 0, 1, 1]
    assert test.checked == ("rank0", "rank0/kv", "rank1", "rank1/kv")
    assert [v.message for v in test.violations] == [
        "cgmem: peak 128.00 MiB exceeds budget 100.00 MiB (+28.0%) on rank 1 (cuda:1) in 'kv'"
    ]
    # the merged file's figures are keyed apart even where ranks share a device index
    assert [r.label for r in ranked_regions(record(0, 0).regions, 3)] == ["rank3", "rank3/kv"]


def document_of(records: list[TestRecord]) -> dict[str, object]:
    return runfile.build_run(records, runfile.base_machine(), None)


def test_rank0_gathers_the_other_ranks_files_into_one_run_file(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    job0 = Job(0, 2, 0, "job")
    job1 = Job(1, 2, 1, "job")
    lines1: list[str] = []
    other = threading.Thread(
        target=gather,
        args=(job1, document_of([record(1, 128 * MiB)]), path, lines1),
        kwargs={"timeout": 20.0},
    )
    other.start()
    lines0: list[str] = []
    merged = gather(job0, document_of([record(0, 64 * MiB)]), path, lines0, timeout=20.0)
    assert merged is not None
    assert other.is_alive()  # rank 1 waits until rank 0 has written the run file
    runfile.write_json(path, merged)
    release(job0, path)
    other.join(20)
    assert not other.is_alive()
    assert lines0 == ["cgmem: gathered the records of 2 rank(s)"]
    assert lines1 == [f"cgmem: rank 1 handed its records to rank 0 ({path})"]
    assert merged["ranks"] == {"world_size": 2, "gathered": [0, 1], "missing": []}
    loaded = runfile.load_run(path)
    runfile.validate(loaded)
    labels = [r["label"] for r in loaded["tests"][0]["regions"]]
    assert labels == ["rank0", "rank0/kv", "rank1", "rank1/kv"]
    assert loaded["summary"]["violations"] == 1
    assert not Path(rank_file(path, 1)).exists()


def test_a_missing_rank_is_said_and_a_stale_file_ignored(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    stale = {**document_of([record(1, MiB)]), "job": "an earlier job", "rank": 1}
    runfile.write_json(rank_file(path, 1), stale)
    lines: list[str] = []
    merged = gather(Job(0, 2, 0, "job"), document_of([record(0, MiB)]), path, lines, timeout=0.3)
    assert merged is not None
    assert merged["ranks"] == {"world_size": 2, "gathered": [0], "missing": [1]}
    assert [r.label for r in TestRecord.from_dict(merged["tests"][0]).regions] == [
        "rank0",
        "rank0/kv",
    ]
    assert len(lines) == 1
    assert lines[0].startswith("cgmem: rank(s) 1 sent no records within 0.3 s")
    assert merged["complete"] is False
    assert merged["incomplete_reason"] == "rank(s) 1 sent no records"


def test_rank0s_incomplete_run_stays_incomplete_when_gathered(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    lost = {"worker": "gw0", "when": "now", "test": None, "error": "gone"}
    stopped = runfile.build_run(
        [record(0, MiB)],
        document_of([])["machine"],
        None,
        complete=False,
        incomplete_reason="stopped early: exiting after 1 failure",
        workers_lost=[lost],
    )
    merged = gather(Job(0, 2, 0, "job"), stopped, path, [], timeout=0.1)
    assert merged is not None
    assert merged["complete"] is False
    assert merged["incomplete_reason"] == (
        "stopped early: exiting after 1 failure; rank(s) 1 sent no records"
    )
    assert merged["workers_lost"] == [lost]
    runfile.validate(merged)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, GATHER_TIMEOUT),
        ("", GATHER_TIMEOUT),
        (" ", GATHER_TIMEOUT),
        ("2.5", 2.5),
        (" 60 ", 60.0),
    ],
)
def test_gather_timeout_from_the_environment(raw: str | None, expected: float) -> None:
    environ = {} if raw is None else {"CGMEM_GATHER_TIMEOUT": raw}
    assert gather_timeout(environ) == (expected, None)


@pytest.mark.parametrize("raw", ["abc", "-5", "0", "nan", "inf", "1e10", "1_0", "٣"])
def test_a_bad_gather_timeout_is_one_line_and_the_default(raw: str) -> None:
    """Read at the run's end, where refusing it would cost the run file: said, not silent."""
    seconds, problem = gather_timeout({"CGMEM_GATHER_TIMEOUT": raw})
    assert seconds == GATHER_TIMEOUT
    assert problem == (
        f"cgmem: CGMEM_GATHER_TIMEOUT={raw!r} is not a number of seconds > 0 and at most "
        "604800 (a week): used the default, 300 s"
    )


def test_gather_says_a_bad_gather_timeout_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CGMEM_GATHER_TIMEOUT", "abc")
    lines: list[str] = []
    merged = gather(Job(0, 1, 0, "job"), document_of([record(0, MiB)]), str(tmp_path / "r"), lines)
    assert merged is not None and merged["ranks"]["missing"] == []
    assert lines == [
        "cgmem: CGMEM_GATHER_TIMEOUT='abc' is not a number of seconds > 0 and at most 604800 "
        "(a week): used the default, 300 s",
        "cgmem: gathered the records of 1 rank(s)",
    ]


@pytest.mark.parametrize("stand_in", [None, "module"], ids=["blocked", "stand-in"])
def test_ranks_without_torch_are_one_line_naming_why(
    monkeypatch: pytest.MonkeyPatch, stand_in: str | None
) -> None:
    """Where torch cannot be imported (or a stand-in took its place), a gloo run says so,
    not a traceback from inside the plugin's allocator module."""
    from pytest_cgmem.cuda import distributed

    fake = None if stand_in is None else types.ModuleType("torch")
    monkeypatch.setitem(sys.modules, "torch", fake)
    launch = launch_arguments(fn, 2, "gloo", 30, None, "forkserver")
    with pytest.raises(CgmemUsageError) as info:
        distributed.run(fn, launch, lambda region: None)
    assert str(info.value) == (
        "cgmem.distributed: no torch to import here: its ranks run torch.distributed"
    )
