"""Every failure the plugin raises: read as ``pytest_cgmem.<Name>``, carrying its data."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import pytest_cgmem
from pytest_cgmem import (
    BaselineRegression,
    BudgetExceeded,
    BudgetUnavailable,
    CgmemFailure,
    CheckFailed,
    EagerFallback,
    EstimateMismatch,
    FigureUnavailable,
    GraphCheckError,
    PoolNotReleased,
    RankFailed,
    ResizeCheckFailed,
    SizesNotCaptured,
    SizesNotCovered,
    SteadyStateFailed,
)


@dataclass(frozen=True)
class Found:
    message: str
    sizes: tuple[int, ...] = ()


FIRST = Found("cgmem: first", (497, 498))
SECOND = Found("cgmem: second\n  why")

RAISED: dict[str, Callable[[], CgmemFailure]] = {
    "CgmemFailure": lambda: CgmemFailure("cgmem: first"),
    "FigureUnavailable": lambda: FigureUnavailable("cgmem: first"),
    "BudgetUnavailable": lambda: BudgetUnavailable([FIRST]),
    "BudgetExceeded": lambda: BudgetExceeded([FIRST]),
    "BaselineRegression": lambda: BaselineRegression([FIRST], "base.json"),
    "CheckFailed": lambda: CheckFailed([FIRST]),
    "RankFailed": lambda: RankFailed("cgmem: first", 1, "raised", 1),
    "ResizeCheckFailed": lambda: ResizeCheckFailed([FIRST]),
    "SteadyStateFailed": lambda: SteadyStateFailed([FIRST]),
    "GraphCheckError": lambda: GraphCheckError("cgmem: first"),
    "SizesNotCovered": lambda: SizesNotCovered(FIRST),
    "SizesNotCaptured": lambda: SizesNotCaptured(FIRST),
    "EstimateMismatch": lambda: EstimateMismatch(FIRST),
    "EagerFallback": lambda: EagerFallback("cgmem: first"),
    "PoolNotReleased": lambda: PoolNotReleased("cgmem: first", {(0, 2): 1024}),
}


def test_every_exported_failure_is_covered_here() -> None:
    exported = {
        name
        for name in pytest_cgmem.__all__
        if isinstance(cls := getattr(pytest_cgmem, name), type) and issubclass(cls, CgmemFailure)
    }
    assert exported == set(RAISED)


@pytest.mark.parametrize("name", sorted(RAISED))
def test_a_failure_reads_as_pytest_cgmem_dot_its_name(name: str) -> None:
    error = RAISED[name]()
    assert type(error) is getattr(pytest_cgmem, name)
    assert isinstance(error, AssertionError)
    shown = "".join(traceback.format_exception_only(type(error), error))
    assert shown.startswith(f"pytest_cgmem.{name}: cgmem: first\n")


@pytest.mark.parametrize(
    "cls", [BudgetExceeded, BudgetUnavailable, CheckFailed, ResizeCheckFailed, SteadyStateFailed]
)
def test_a_failure_of_several_findings_has_a_line_for_each(
    cls: type[BudgetExceeded] | type[BudgetUnavailable] | type[CheckFailed],
) -> None:
    error = cls([FIRST, SECOND])
    assert str(error).splitlines() == ["cgmem: first", "cgmem: second", "  why"]


@pytest.mark.parametrize(
    ("cls", "attribute"),
    [
        (BudgetExceeded, "violations"),
        (BudgetUnavailable, "items"),
        (CheckFailed, "violations"),
        (ResizeCheckFailed, "violations"),
        (SteadyStateFailed, "violations"),
    ],
)
def test_a_failure_keeps_every_finding_it_was_given_once(
    cls: type[BudgetExceeded] | type[BudgetUnavailable] | type[CheckFailed], attribute: str
) -> None:
    error = cls(iter([FIRST, SECOND]))
    assert getattr(error, attribute) == (FIRST, SECOND)
    assert str(error).splitlines() == ["cgmem: first", "cgmem: second", "  why"]


def test_a_baseline_regression_names_its_baseline() -> None:
    error = BaselineRegression(iter([FIRST, SECOND]), "base.json")
    assert (error.changes, error.path) == ((FIRST, SECOND), "base.json")
    assert str(error).splitlines()[-1] == "cgmem: baseline base.json"


def test_a_rank_failure_keeps_every_ranks_outcome() -> None:
    error = RankFailed("cgmem: rank 1 of 2 raised", 1, "raised", 1, iter(["rank 0", "rank 1"]))
    assert (error.rank, error.status, error.exitcode) == (1, "raised", 1)
    assert error.outcomes == ("rank 0", "rank 1")
    assert RankFailed("cgmem: x", 0, "timeout", None).outcomes == ()


def test_a_pool_not_released_keeps_what_each_pool_holds() -> None:
    message = (
        "cgmem: 1 CUDA graph pool still holds device memory after the cache was emptied: "
        "pool (0, 2) holds 22.00 MiB; a graph (or a tensor it produced) from the pool is "
        "still alive"
    )
    held = {(0, 2): 22 * 2**20}
    error = PoolNotReleased(message, held)
    held.clear()
    assert str(error) == message
    assert error.held == {(0, 2): 22 * 2**20}


@pytest.mark.parametrize("cls", [SizesNotCovered, SizesNotCaptured])
def test_a_sizes_failure_keeps_its_violation_and_sizes(
    cls: type[SizesNotCovered] | type[SizesNotCaptured],
) -> None:
    error = cls(FIRST)
    assert (error.violation, error.sizes, str(error)) == (FIRST, (497, 498), "cgmem: first")
