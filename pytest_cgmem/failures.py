"""Every failure the plugin raises in a test, under one base (pure).

Each is an ``AssertionError``, so a test that expects one can say
``xfail(strict=True, raises=pytest_cgmem.SizesNotCovered)``. The checks build the data
(a violation with its message); these classes only carry it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class HasMessage(Protocol):
    @property
    def message(self) -> str: ...


class CgmemFailure(AssertionError):
    """Base of every pytest-cgmem failure; its message says what went wrong."""


class BudgetExceeded(CgmemFailure):
    """Measured figures exceed their budget; the message lists every violation."""

    def __init__(self, violations: Iterable[HasMessage]) -> None:
        self.violations = tuple(violations)
        super().__init__("\n".join(v.message for v in self.violations))


class BaselineRegression(CgmemFailure):
    """A figure grew past its baseline and tolerance (raised in the test's call phase)."""

    def __init__(self, changes: Iterable[HasMessage], path: str) -> None:
        self.changes = tuple(changes)
        self.path = path
        lines = [c.message for c in self.changes]
        lines.append(f"cgmem: baseline {path}")
        super().__init__("\n".join(lines))


class CheckFailed(CgmemFailure):
    """A resize or steady-state check failed; the message lists every violation."""

    def __init__(self, violations: Iterable[HasMessage]) -> None:
        self.violations = tuple(violations)
        super().__init__("\n".join(v.message for v in self.violations))


class ResizeCheckFailed(CheckFailed):
    """``cgmem.resize_check`` found cached-but-unused or retained bytes."""


class SteadyStateFailed(CheckFailed):
    """``cgmem.steady`` found growth after warm-up."""


class RankFailed(CgmemFailure):
    """A rank of ``cgmem.distributed`` raised, exited, crashed or outlived the timeout.

    ``rank`` is the first rank that failed, ``status`` how (``raised``, ``exited``,
    ``timeout``, or ``lingered``: it sent its figures but did not exit), ``exitcode`` its
    exit status where it ended (negative: the signal that ended it), ``outcomes`` what
    happened on every rank.
    """

    def __init__(
        self, message: str, rank: int, status: str, exitcode: int | None, outcomes: Any = ()
    ) -> None:
        self.rank = rank
        self.status = status
        self.exitcode = exitcode
        self.outcomes = tuple(outcomes)
        super().__init__(message)


class GraphCheckError(CgmemFailure):
    """Base of the CUDA graph check failures."""


class _WithViolation(GraphCheckError):
    def __init__(self, violation: Any) -> None:
        self.violation = violation
        super().__init__(violation.message)


class SizesNotCovered(_WithViolation):
    """Runtime sizes pad to no captured CUDA graph size: they run eagerly."""

    def __init__(self, violation: Any) -> None:
        super().__init__(violation)
        self.sizes = violation.sizes


class SizesNotCaptured(_WithViolation):
    """Requested capture sizes that were never captured (silent capping)."""

    def __init__(self, violation: Any) -> None:
        super().__init__(violation)
        self.sizes = violation.sizes


class EstimateMismatch(_WithViolation):
    """An estimate of graph memory missed the measured figure by more than allowed."""


class EagerFallback(GraphCheckError):
    """Work expected to replay a CUDA graph ran with no replay: it ran eagerly."""


class PoolNotReleased(GraphCheckError):
    """A CUDA graph pool still holds device memory after it should have been released."""

    def __init__(self, message: str, held: Mapping[tuple[int, int], int]) -> None:
        self.held = dict(held)
        super().__init__(message)


class FigureUnavailable(CgmemFailure):
    """A figure this allocator cannot give was asked for (e.g. graph pool bytes under
    ``backend:cudaMallocAsync``); the message says which and why."""


class BudgetUnavailable(FigureUnavailable):
    """Budgets on figures this allocator cannot give (``--cgmem-unavailable=fail``)."""

    def __init__(self, items: Iterable[HasMessage]) -> None:
        self.items = tuple(items)
        super().__init__("\n".join(i.message for i in self.items))


for _cls in (
    CgmemFailure,
    FigureUnavailable,
    BudgetUnavailable,
    BudgetExceeded,
    BaselineRegression,
    CheckFailed,
    RankFailed,
    ResizeCheckFailed,
    SteadyStateFailed,
    GraphCheckError,
    SizesNotCovered,
    SizesNotCaptured,
    EstimateMismatch,
    EagerFallback,
    PoolNotReleased,
):
    _cls.__module__ = "pytest_cgmem"  # reads as pytest_cgmem.BudgetExceeded in failures
