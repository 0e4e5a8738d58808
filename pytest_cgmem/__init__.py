"""pytest-cgmem: GPU memory as something a test suite can assert on."""

from .checks.budgets import Budget, Violation, check, parse_budget
from .checks.graph_sizes import (
    assert_all_captured,
    assert_estimate,
    assert_sizes_covered,
    uncovered_sizes,
)
from .failures import (
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
from .fixture import CgmemFixture, DistributedRunner, Measurement
from .metrics import METRICS
from .results.ranks import DistributedResult, RankResult
from .results.records import DeviceFigures, RegionResult
from .units import CgmemUsageError, format_size, parse_size

__all__ = [
    "METRICS",
    "BaselineRegression",
    "Budget",
    "BudgetExceeded",
    "BudgetUnavailable",
    "CgmemFailure",
    "CgmemFixture",
    "CgmemUsageError",
    "CheckFailed",
    "DeviceFigures",
    "DistributedResult",
    "DistributedRunner",
    "EagerFallback",
    "EstimateMismatch",
    "FigureUnavailable",
    "GraphCheckError",
    "Measurement",
    "PoolNotReleased",
    "RankFailed",
    "RankResult",
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
