"""Figures an allocator cannot give: never a 0 that passes, a clear failure or a skip."""

from __future__ import annotations

import pytest

from pytest_cgmem import BudgetUnavailable, FigureUnavailable
from pytest_cgmem.checks.budgets import Budget, parse_budget, unavailable_budgets
from pytest_cgmem.reports.text import section
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.settings import OPTIONS, parse_unavailable, resolve
from pytest_cgmem.units import CgmemUsageError

WHY = "backend:cudaMallocAsync keeps no graph pools"


def _none() -> dict[str, object]:
    return {o.name: None for o in OPTIONS}


def test_a_budget_on_an_unavailable_figure_is_named_with_its_reason() -> None:
    budget = parse_budget({"graph_pool": "300 MiB", "peak": "1 GiB"})
    found = unavailable_budgets(
        {"graph_pool": None, "peak": 5}, budget, {"graph_pool": WHY}, "cuda:0", "call"
    )
    assert [u.metric for u in found] == ["graph_pool"]
    assert found[0].message == (
        f"cgmem: graph_pool budget 300.00 MiB cannot be checked on cuda:0: {WHY}; measure "
        "it under an allocator that gives it, or pass --cgmem-unavailable=skip to skip "
        "budgets on unavailable figures"
    )
    assert found[0].skipped_message == (
        "cgmem: graph_pool budget 300.00 MiB not checked on cuda:0 "
        f"(--cgmem-unavailable=skip): {WHY}"
    )
    error = BudgetUnavailable(found)
    assert isinstance(error, FigureUnavailable) and isinstance(error, AssertionError)
    assert str(error) == found[0].message


def test_a_named_region_is_named() -> None:
    found = unavailable_budgets(
        {"graph_pool": None}, parse_budget({"graph_pool": 0}), {"graph_pool": WHY}, "cuda:1", "x"
    )
    assert "on cuda:1 in 'x': " in found[0].message


def test_no_budget_or_a_figure_after_all_is_nothing_to_report() -> None:
    assert unavailable_budgets({"graph_pool": None}, Budget(), {"graph_pool": WHY}, "cuda:0") == []
    budget = parse_budget({"graph_pool": 0})
    assert unavailable_budgets({"graph_pool": 0}, budget, {"graph_pool": WHY}, "cuda:0") == []
    assert unavailable_budgets({"graph_pool": None}, budget, {}, "cuda:0") == []


@pytest.mark.parametrize(("text", "value"), [("fail", "fail"), (" Skip ", "skip")])
def test_parse_unavailable(text: str, value: str) -> None:
    assert parse_unavailable(text) == value


def test_unavailable_option_default_and_bad_value() -> None:
    assert resolve(_none(), _none()).unavailable == "fail"
    assert resolve({**_none(), "unavailable": "skip"}, _none()).unavailable == "skip"
    with pytest.raises(CgmemUsageError, match="--cgmem-unavailable='maybe'"):
        resolve({**_none(), "unavailable": "maybe"}, _none())


def test_section_says_unavailable_not_ok() -> None:
    figures = DeviceFigures(0, peak=1, graph_pool=None, graphs=2)
    region = RegionResult("call", (figures,), 0.001, None, {"unavailable": {"graph_pool": WHY}})
    text = section([region], parse_budget({"graph_pool": "1 MiB", "peak": 10}))
    assert "  graph_pool              n/a   budget   1.00 MiB  unavailable" in text
    assert f"  note: graph_pool unavailable: {WHY}" in text
    assert "OVER" not in text


def test_section_says_n_a_for_a_budgeted_figure_nobody_measured() -> None:
    """A figure that is None without a reason (a recorded region that gave only a peak)
    passes its budget unchecked: the section says so rather than "ok"."""
    recorded = RegionResult(
        "load", (DeviceFigures(0, peak=1),), 0.001, None, {"recorded": ["peak"]}
    )
    text = section([recorded], parse_budget({"leak": 0, "peak": 10}))
    assert "  leak                    n/a   budget        0 B  n/a" in text
    assert "  peak                    1 B   budget       10 B  ok" in text
