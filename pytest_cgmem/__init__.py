"""pytest-cgmem: GPU memory as something a test suite can assert on."""

from .baseline import BaselineRegression
from .budgets import METRICS, Budget, BudgetExceeded, Violation, check, parse_budget
from .coverage import (
    EagerFallback,
    EstimateMismatch,
    GraphCheckError,
    PoolNotReleased,
    SizesNotCaptured,
    SizesNotCovered,
    assert_all_captured,
    assert_estimate,
    assert_sizes_covered,
    uncovered_sizes,
)
from .fixture import CgmemFixture, Measurement
from .resize import CheckFailed, ResizeCheckFailed, SteadyStateFailed
from .results import DeviceFigures, RegionResult
from .units import CgmemUsageError, format_size, parse_size

__all__ = [
    "METRICS",
    "BaselineRegression",
    "Budget",
    "BudgetExceeded",
    "CgmemFixture",
    "CgmemUsageError",
    "CheckFailed",
    "DeviceFigures",
    "EagerFallback",
    "EstimateMismatch",
    "GraphCheckError",
    "Measurement",
    "PoolNotReleased",
    "RegionResult",
    "ResizeCheckFailed",
    "SizesNotCaptured",
    "SizesNotCovered",
    "SteadyStateFailed",
    "Violation",
    "assert_all_captured",
    "assert_estimate",
    "assert_sizes_covered",
    "check",
    "format_size",
    "parse_budget",
    "parse_size",
    "uncovered_sizes",
]
