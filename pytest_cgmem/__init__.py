"""pytest-cgmem: GPU memory as something a test suite can assert on.

The public names are imported on first use (PEP 562): pytest imports this package for the
plugin in every run, and a run that measures nothing needs none of them.

PYTEST_DONT_REWRITE (read by pytest for this module alone; the submodules are rewritten
where pytest marks the package): the plugin's own ``assert`` statements only narrow types.
Whether pytest rewrote this package depends on how it was installed (an editable install's
finder is not on ``sys.path``, where the rewriting hook looks), and a pytest run started
inside a test, as pytester's are, warned that it was imported before it could be
rewritten: an error under ``-W error``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checks.budgets import Budget, Violation, check, parse_budget
    from .checks.graph_sizes import (
        assert_all_captured,
        assert_estimate,
        assert_sizes_covered,
        uncovered_sizes,
    )
    from .checks.resize import SteadyFigures, StepFigures
    from .cuda.graphs import GraphLog, SweepResult
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
    from .fixture import CgmemFixture, DistributedRunner, FigureRecorder, Measurement
    from .metrics import METRICS
    from .results.ranks import DistributedResult, RankResult
    from .results.records import DeviceFigures, RegionResult
    from .units import CgmemUsageError, format_size, parse_size

_HOMES = {
    ".checks.budgets": ("Budget", "Violation", "check", "parse_budget"),
    ".checks.graph_sizes": (
        "assert_all_captured",
        "assert_estimate",
        "assert_sizes_covered",
        "uncovered_sizes",
    ),
    ".checks.resize": ("SteadyFigures", "StepFigures"),
    ".cuda.graphs": ("GraphLog", "SweepResult"),
    ".failures": (
        "BaselineRegression",
        "BudgetExceeded",
        "BudgetUnavailable",
        "CgmemFailure",
        "CheckFailed",
        "EagerFallback",
        "EstimateMismatch",
        "FigureUnavailable",
        "GraphCheckError",
        "PoolNotReleased",
        "RankFailed",
        "ResizeCheckFailed",
        "SizesNotCaptured",
        "SizesNotCovered",
        "SteadyStateFailed",
    ),
    ".fixture": ("CgmemFixture", "DistributedRunner", "FigureRecorder", "Measurement"),
    ".metrics": ("METRICS",),
    ".results.ranks": ("DistributedResult", "RankResult"),
    ".results.records": ("DeviceFigures", "RegionResult"),
    ".units": ("CgmemUsageError", "format_size", "parse_size"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

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
    "FigureRecorder",
    "FigureUnavailable",
    "GraphCheckError",
    "GraphLog",
    "Measurement",
    "PoolNotReleased",
    "RankFailed",
    "RankResult",
    "RegionResult",
    "ResizeCheckFailed",
    "SizesNotCaptured",
    "SizesNotCovered",
    "SteadyFigures",
    "SteadyStateFailed",
    "StepFigures",
    "SweepResult",
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


if not TYPE_CHECKING:  # a type checker sees the names imported above, and no others

    def __getattr__(name: str) -> Any:
        module = _HOME.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # the next lookup is a plain module attribute
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
