"""pytest-cgmem: GPU memory as something a test suite can assert on."""

from .budgets import METRICS, Budget, BudgetExceeded, Violation, check, parse_budget
from .fixture import CgmemFixture, Measurement
from .resize import CheckFailed, ResizeCheckFailed, SteadyStateFailed
from .results import DeviceFigures, RegionResult
from .units import CgmemUsageError, format_size, parse_size

__all__ = [
    "METRICS",
    "Budget",
    "BudgetExceeded",
    "CgmemFixture",
    "CgmemUsageError",
    "CheckFailed",
    "DeviceFigures",
    "Measurement",
    "RegionResult",
    "ResizeCheckFailed",
    "SteadyStateFailed",
    "Violation",
    "check",
    "format_size",
    "parse_budget",
    "parse_size",
]
