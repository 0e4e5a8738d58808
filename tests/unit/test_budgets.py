import dataclasses
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem import BudgetExceeded
from pytest_cgmem.checks.budgets import (
    Budget,
    Unavailable,
    Violation,
    check,
    parse_budget,
    parse_budget_string,
    split_assignments,
)
from pytest_cgmem.metrics import METRICS, metric_help
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.units import CgmemUsageError

GiB = 2**30
MiB = 2**20


def test_metric_names_are_the_design_contract() -> None:
    assert list(METRICS) == [
        "peak",
        "reserved",
        "leak",
        "device",
        "non_torch",
        "reserved_ratio",
        "graph_pool",
        "graphs",
        "replays",
    ]


def test_parse_budget_by_kind() -> None:
    budget = parse_budget({"peak": "1 GiB", "leak": 0, "reserved_ratio": 1.5, "graphs": 3})
    assert budget.limits == {"peak": GiB, "leak": 0, "reserved_ratio": 1.5, "graphs": 3}


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"peek": "1 GiB"}, "unknown budget keyword 'peek' (valid: peak, reserved"),
        ({"peak": "1.5 GB/s"}, "peak='1.5 GB/s'"),
        ({"peak": "-1 MiB"}, "peak='-1 MiB'"),
        ({"leak": "lots"}, "leak='lots'"),
        ({"graphs": 1.5}, "graphs=1.5"),
        ({"reserved_ratio": 0}, "reserved_ratio=0"),
    ],
)
def test_parse_budget_errors_name_keyword_and_value(
    values: dict[str, object], fragment: str
) -> None:
    with pytest.raises(CgmemUsageError, match=None) as info:
        parse_budget(values)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("peak=4GiB reserved=6GiB", {"peak": "4GiB", "reserved": "6GiB"}),
        ("peak=4 GiB, reserved = 6 GiB", {"peak": "4 GiB", "reserved": "6 GiB"}),
        ("leak=0", {"leak": "0"}),
        (", peak=4GiB reserved=6GiB", {"peak": "4GiB", "reserved": "6GiB"}),
        ("", {}),
    ],
)
def test_split_assignments(text: str, expected: dict[str, str]) -> None:
    assert split_assignments(text) == expected


@pytest.mark.parametrize("bad", ["peak", "peak=", "=4GiB", "peak=1GiB peak=2GiB", "4GiB"])
def test_split_assignments_rejects(bad: str) -> None:
    with pytest.raises(CgmemUsageError):
        split_assignments(bad)


@given(
    st.dictionaries(
        st.sampled_from(["peak", "reserved", "leak", "device", "non_torch", "graph_pool"]),
        st.integers(min_value=0, max_value=2**45),
        min_size=1,
    )
)
def test_budget_string_round_trip(limits: dict[str, int]) -> None:
    text = " ".join(f"{k}={v}" for k, v in limits.items())
    assert parse_budget_string(text).limits == limits


def test_merge_is_key_by_key() -> None:
    default = Budget({"peak": 4 * GiB, "reserved": 6 * GiB})
    merged = default.merged(Budget({"peak": GiB}))
    assert merged.limits == {"peak": GiB, "reserved": 6 * GiB}


@pytest.mark.parametrize(
    ("limits", "empties"),
    [
        ({}, False),
        ({"leak": 0}, False),
        ({"leak": 0, "peak": GiB, "non_torch": 0, "graph_pool": 0}, False),
        ({"leak": 0, "reserved": GiB}, True),
        ({"device": GiB}, True),
        ({"reserved_ratio": 2.0}, True),
    ],
)
def test_a_budget_on_a_figure_counted_from_an_emptied_cache_needs_one(
    limits: dict[str, float], empties: bool
) -> None:
    assert Budget(limits).needs_empty_cache is empties


def test_check_reports_only_metrics_over_budget() -> None:
    figures = {"peak": 2 * GiB + 1, "leak": 0, "device": None, "reserved": GiB}
    budget = Budget({"peak": 2 * GiB, "leak": 0, "device": 0, "reserved": GiB})
    violations = check(figures, budget, "cuda:0")
    assert [v.metric for v in violations] == ["peak"]


@pytest.mark.parametrize(
    ("violation", "message"),
    [
        (
            Violation("peak", 2 * GiB, int(2.4 * GiB), "cuda:0"),
            "cgmem: peak 2.40 GiB exceeds budget 2.00 GiB (+20.0%) on cuda:0",
        ),
        (
            Violation("leak", 0, 4 * MiB, "cuda:1", "prefill"),
            "cgmem: leak 4.00 MiB exceeds budget 0 B (over by 4.00 MiB) on cuda:1 in 'prefill'",
        ),
        (
            Violation("peak", MiB - 1, MiB, "cuda:0"),
            "cgmem: peak 1048576 B exceeds budget 1048575 B (+0.0%) on cuda:0",
        ),
        (  # the same in GiB, 0.4% apart: bytes tell them apart
            Violation("peak", GiB, GiB + 4 * MiB, "cuda:0"),
            "cgmem: peak 1077936128 B exceeds budget 1073741824 B (+0.4%) on cuda:0",
        ),
        (  # 1.00 and 1.01 GiB, 0.002% apart: bytes show how little it is over
            Violation("peak", 1079099795, 1079121270, "cuda:0"),
            "cgmem: peak 1079121270 B exceeds budget 1079099795 B (+0.0%) on cuda:0",
        ),
        (
            Violation("reserved_ratio", 1.5, 1.75, "cuda:0"),
            "cgmem: reserved_ratio 1.75 exceeds budget 1.50 (+16.7%) on cuda:0",
        ),
        (
            Violation("graphs", 2, 3, "cuda:0"),
            "cgmem: graphs 3 exceeds budget 2 (+50.0%) on cuda:0",
        ),
    ],
)
def test_violation_message(violation: Violation, message: str) -> None:
    assert violation.message == message


def test_budget_exceeded_is_an_assertion_error_listing_all() -> None:
    a = Violation("peak", 1, 2, "cuda:0")
    b = Violation("leak", 0, 2, "cuda:0")
    exc = BudgetExceeded([a, b])
    assert isinstance(exc, AssertionError)
    assert str(exc).splitlines() == [a.message, b.message]


def test_metric_help_lists_every_keyword() -> None:
    text = metric_help()
    for name in METRICS:
        assert f"{name} (" in text


@pytest.mark.parametrize(
    ("keyword", "hint", "refused"),
    [
        ("peak", "bytes: int or '1.5 GiB'", -1),
        ("graphs", "whole number", 1.5),
        ("reserved_ratio", "positive number", 0),
    ],
)
def test_metric_help_says_what_the_parser_refuses(keyword: str, hint: str, refused: object) -> None:
    assert f"{keyword} ({hint})" in metric_help()
    with pytest.raises(CgmemUsageError):
        parse_budget({keyword: refused})


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.binary(),
        st.lists(st.integers()),
        st.tuples(st.text(), st.integers()),
    )
)
def test_parse_budget_refuses_what_is_no_mapping(values: object) -> None:
    """A string, a number or a list was an AttributeError ('str' object has no attribute
    'items') from inside; now the one-line usage error naming the function."""
    with pytest.raises(CgmemUsageError) as info:
        parse_budget(values)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(
        "parse_budget: expected budget keywords and values such as {'peak': '1 GiB'}, got "
    )
    assert "\n" not in message


def test_parse_budget_still_reads_a_mapping() -> None:
    assert parse_budget({"peak": "1 KiB", "graphs": 2}) == Budget({"peak": 1024, "graphs": 2})


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"peak": "1 GiB"}, "Budget: peak='1 GiB': give the number parse_budget would"),
        ({"peak": 1.5}, "Budget: peak=1.5: give the number parse_budget would"),
        ({"peak": True}, "Budget: peak=True: give the number parse_budget would"),
        ({"leak": -1}, "Budget: leak=-1: give the number parse_budget would"),
        ({"reserved_ratio": float("nan")}, "Budget: reserved_ratio=nan: give the number"),
        ({"graphs": None}, "Budget: graphs=None: give the number parse_budget would"),
        ({"peek": 1}, "Budget: unknown metric 'peek' (valid: peak, reserved, leak,"),
        ("peak=1", "Budget: limits must map metric names to numbers, got 'peak=1'"),
    ],
)
def test_a_budget_made_directly_holds_what_parse_budget_would(limits: object, message: str) -> None:
    """A string or NaN limit was taken, and failed later from inside a comparison."""
    with pytest.raises(CgmemUsageError) as info:
        Budget(limits)  # type: ignore[arg-type]
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def _mark_value(metric: str) -> st.SearchStrategy[object]:
    """A value the mark takes for ``metric``: bytes as an int or a size string, a count, a
    ratio."""
    kind = METRICS[metric].kind
    if kind == "bytes":
        return st.one_of(st.integers(0, 2**62), st.sampled_from(["1 GiB", "512MB", "0 B"]))
    if kind == "count":
        return st.integers(0, 10**6)
    return st.floats(min_value=0.01, max_value=100.0)


@given(
    st.lists(st.sampled_from(list(METRICS)), unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: _mark_value(key) for key in keys})
    )
)
def test_a_budget_made_directly_takes_what_parse_budget_gives(limits: dict[str, object]) -> None:
    parsed = parse_budget(limits)
    assert Budget(dict(parsed.limits)) == parsed


@pytest.mark.parametrize(
    ("figures", "budget", "message"),
    [
        ({"peak": 5}, {"peak": 1}, "check: budget must be a Budget (parse_budget("),
        ([5], Budget({"peak": 1}), "check: figures must map metric names to numbers, got [5]"),
        (
            {"peak": "5 GiB"},
            Budget({"peak": 1}),
            "check: figure 'peak' must be a finite number or None, got '5 GiB'",
        ),
        (
            {"peak": True},
            Budget({"peak": 0}),
            "check: figure 'peak' must be a finite number or None, got True",
        ),
        (
            {"leak": float("nan")},
            Budget({"leak": 0}),
            "check: figure 'leak' must be a finite number or None, got nan",
        ),
        (
            {"peek": 5},
            Budget({"peak": 1}),
            "check: unknown figure 'peek' (valid: peak, reserved, leak, device, non_torch, "
            "reserved_ratio, graph_pool, graphs, replays)",
        ),
    ],
    ids=["dict-budget", "list-figures", "str-figure", "bool-figure", "nan-figure", "misspelt"],
)
def test_check_names_a_wrong_argument(figures: object, budget: object, message: str) -> None:
    """A dict for the budget was an AttributeError ('dict' object has no attribute
    'limits') from inside."""
    with pytest.raises(CgmemUsageError, match=re.escape(message)):
        check(figures, budget, "w")  # type: ignore[arg-type]


def test_a_region_s_violations_name_only_the_devices_over_budget() -> None:
    """A region checks each device's figures: one within budget adds nothing, one over
    adds its violations with its device, the region's label and its rank."""
    region = RegionResult(
        "step",
        (DeviceFigures(0, peak=MiB, leak=0), DeviceFigures(1, peak=3 * MiB, leak=5)),
        0.0,
        extra={"rank": 2},
    )
    budget = Budget({"peak": 2 * MiB, "leak": 0})
    assert region.check(budget) == [
        Violation("peak", 2 * MiB, 3 * MiB, "cuda:1", "step", 2),
        Violation("leak", 0, 5, "cuda:1", "step", 2),
    ]
    assert region.check(Budget({"peak": 3 * MiB, "reserved": 0})) == []  # reserved unknown


def test_a_region_checked_against_no_budget_says_so() -> None:
    region = RegionResult("call", (DeviceFigures(0, peak=0),), 0.0)
    with pytest.raises(CgmemUsageError, match=re.escape("check: budget must be a Budget")):
        region.check({"peak": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "made",
    [
        lambda: Budget({"peak": GiB}),
        lambda: Violation("peak", GiB, 2 * GiB, "cuda:0"),
        lambda: Unavailable("graph_pool", GiB, "cuda:0", "cudaMallocAsync"),
    ],
    ids=["budget", "violation", "unavailable"],
)
def test_budgets_and_verdicts_are_frozen(made: Callable[[], object]) -> None:
    """A budget is checked when made, a verdict computed once: neither changes after."""
    value = made()
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.limit = 0  # type: ignore[attr-defined]
