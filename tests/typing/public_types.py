"""What a type checker tells a user of the public API (checked by mypy --strict, never run).

Each ``assert_type`` pins a type a user's annotated test relies on; each ``type: ignore``
pins an error a type checker must report (strict mypy flags an ignore that is no longer
needed, so a name or attribute that silently became ``Any`` fails the check).
"""

from __future__ import annotations

from typing_extensions import assert_type  # typing's own from Python 3.11

import pytest_cgmem
from pytest_cgmem import (
    CgmemFixture,
    DeviceFigures,
    DistributedResult,
    FigureRecorder,
    GraphLog,
    Measurement,
    RankResult,
    SteadyFigures,
    StepFigures,
    SweepResult,
)
from pytest_cgmem.metrics import Number


def test_measure(cgmem: CgmemFixture) -> None:
    with cgmem.measure("prefill") as m:
        pass
    assert_type(m, Measurement)
    assert_type(m.peak, int | None)
    assert m.peak is not None and m.peak < 600 * 2**20
    assert_type(m.reserved, int | None)
    assert_type(m.leak, int | None)
    assert_type(m.reserved_ratio, float | None)
    assert_type(m.per_device[0], DeviceFigures)
    assert_type(m.per_device[0].peak, Number | None)
    assert_type(m.per_device[0].device_source, str)
    m.peek  # type: ignore[attr-defined]  # noqa: B018


def test_helpers(cgmem: CgmemFixture) -> None:
    with cgmem.graphs() as log:
        assert_type(log, GraphLog)
    assert_type(cgmem.capture_sweep(lambda x: x, [1, 2], lambda n: n), SweepResult)
    assert_type(cgmem.resize_check(lambda size: None, [1, 2]), list[StepFigures])
    assert_type(cgmem.steady(lambda: None), list[SteadyFigures])


def test_record(cgmem_record: FigureRecorder) -> None:
    cgmem_record("load", peak="1 GiB")


def test_distributed(result: DistributedResult) -> None:
    assert_type(result.leak, Number | None)
    assert_type(result.per_rank[1], RankResult)
    assert_type(result.per_rank[1].non_torch, Number | None)
    assert_type(result.per_rank[1].device, int | None)  # its CUDA index, not the metric
    result.peek  # type: ignore[attr-defined]  # noqa: B018


def test_unknown_names() -> None:
    pytest_cgmem.BudgetExceded  # type: ignore[attr-defined]  # noqa: B018
