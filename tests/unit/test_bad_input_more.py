"""More bad input, each refused in one line naming what was wrong (or read as meant): whole
numbers padded past Python's 4300 digits, capture sizes beyond int64, an empty
``--cgmem-budget``, odd journal lines and empty journals, capture sizes written as floats,
records of the wrong shape, and a mark's bare ``tolerance="0.05"``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pytest_cgmem.checks import graph_sizes
from pytest_cgmem.checks.budgets import parse_budget, parse_budget_string
from pytest_cgmem.fixture import FigureRecorder
from pytest_cgmem.results import graphfigures, journal, runfile
from pytest_cgmem.results.baseline import parse_tolerance
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord
from pytest_cgmem.settings import OPTIONS, resolve
from pytest_cgmem.units import MAX_FIGURE, CgmemUsageError, whole_number

ZEROS = "0" * 5000
"""More zeros than Python's int() takes digits (4300)."""
TOO_LARGE = f"too large: the most is {MAX_FIGURE}"


def none_of_the_options() -> dict[str, object]:
    return {o.name: None for o in OPTIONS}


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and len(message) < 300
    return message


# -- whole numbers padded with zeros -----------------------------------------------------


@given(st.integers(0, MAX_FIGURE), st.integers(0, 6000))
@example(1, 5000)
def test_a_whole_number_padded_with_zeros_is_read(number: int, zeros: int) -> None:
    assert whole_number("0" * zeros + str(number)) == number


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("summary", ZEROS + "7", 7),
        ("stacks", ZEROS + "2", 2),
        ("history_entries", ZEROS + "3", 3),
        ("devices", f"{ZEROS}1, 0", (f"{ZEROS}1", "0")),
    ],
)
@pytest.mark.parametrize("source", ["cli", "ini"])
def test_options_read_a_whole_number_padded_with_zeros(
    name: str, value: str, expected: object, source: str
) -> None:
    values = {**none_of_the_options(), name: value}
    settings = resolve(values, {}) if source == "cli" else resolve({}, values)
    assert getattr(settings, name) == expected


@pytest.mark.parametrize(
    "text", [f"graphs={ZEROS}1", f"graphs={ZEROS}1 peak={ZEROS}1B", f"replays = {ZEROS}1"]
)
def test_a_budget_reads_a_whole_number_padded_with_zeros(text: str) -> None:
    assert set(parse_budget_string(text).limits.values()) == {1}


def test_a_mark_reads_a_count_padded_with_zeros() -> None:
    assert parse_budget({"graphs": ZEROS + "1"}).limits == {"graphs": 1}


# -- capture sizes beyond int64 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: graph_sizes.assert_sizes_covered([10**400], [1]),
            f"captured: {TOO_LARGE}, got an integer of about 400 digits",
        ),
        (
            lambda: graph_sizes.assert_sizes_covered([1], [10**5000]),
            f"runtime: {TOO_LARGE}, got an integer of about 5000 digits",
        ),
        (
            lambda: graph_sizes.check_all_captured([MAX_FIGURE + 1], [1]),
            f"requested: {TOO_LARGE}, got {MAX_FIGURE + 1}",
        ),
        (
            lambda: graph_sizes.pad_to_captured([10**5000], 1),
            f"captured: {TOO_LARGE}, got an integer of about 5000 digits",
        ),
        (
            lambda: graph_sizes.uncovered_sizes([-(10**5000)], [1]),
            "captured: sizes are >= 1, got an integer of about 5000 digits",
        ),
        (
            lambda: graph_sizes.check_estimate(1, 1, rel=10**5000),
            "rel=an integer of about 5000 digits: a tolerance must be a finite percentage, "
            "got an integer of about 5000 digits",
        ),
        (
            lambda: graph_sizes.check_estimate(1, 1, abs=-(10**5000)),
            "abs=an integer of about 5000 digits: a size cannot be negative: "
            "an integer of about 5000 digits",
        ),
    ],
    ids=["covered", "runtime-5000-digits", "captured", "pad", "negative", "rel", "abs"],
)
def test_capture_sizes_beyond_int64_are_too_large(call: Any, message: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        call()
    assert one_line(info) == message


# -- an empty --cgmem-budget -------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\t", " \n "])
def test_an_empty_budget_string_is_refused(text: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        parse_budget_string(text)
    assert str(info.value) == (
        "expected budgets such as 'peak=4GiB reserved=6GiB', got an empty value"
    )


@pytest.mark.parametrize(
    ("cli", "ini", "message"),
    [
        (["  "], None, "--cgmem-budget='  ': expected budgets such as"),
        (["peak=1GiB", ""], None, "--cgmem-budget='': expected budgets such as"),
    ],
)
def test_an_empty_budget_flag_names_the_option(
    cli: list[str] | None, ini: str | None, message: str
) -> None:
    """On the command line; in the ini file a blank value is unset (test_settings.py)."""
    with pytest.raises(CgmemUsageError) as info:
        resolve({**none_of_the_options(), "budget": cli}, {"budget": ini})
    assert one_line(info).startswith(message)


# -- journals: a machine line that is no object, an empty journal --------------------------


def journal_stub(run: str = "r") -> dict[str, Any]:
    doc = runfile.build_run([], runfile.base_machine(), None, complete=False)
    doc["journal"] = {"file": "run.json.journal", "run": run}
    return doc


def header(run: str = "r") -> str:
    return json.dumps({"journal": journal.FORMAT, "run": run, "pid": 1, "host": "h"}) + "\n"


@pytest.mark.parametrize("machine", ["5", "null", '"gpu"', "[1]"])
def test_a_machine_line_that_is_no_object_is_a_journal_error(tmp_path: Path, machine: str) -> None:
    (tmp_path / "run.json.journal").write_text(f'{header()}{{"machine": {machine}}}\n')
    with pytest.raises(journal.JournalError) as info:
        journal.read(tmp_path / "run.json", {"file": "run.json.journal", "run": "r"})
    assert str(info.value) == "its journal 'run.json.journal' line 2: expected an object"


def test_an_empty_journal_is_read_like_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    runfile.write_json(path, journal_stub())
    journal.journal_path(path).write_bytes(b"")
    doc = runfile.load_run(path)
    assert doc["tests"] == [] and doc["complete"] is False
    assert doc["incomplete_reason"].endswith(
        "; its journal 'run.json.journal' is empty, so no test survives"
    )


# -- capture sizes written as floats -------------------------------------------------------

SWEEP = {
    "pool": [0, 7],
    "pool_bytes": 24,
    "per_size": [{"size": 256, "bytes": 22, "driver": 24}, {"size": 16, "bytes": 2, "driver": 2}],
}
LOG = {
    "captures": [
        {"label": "decode", "reserved": 2, "driver": 2},
        {"label": 16, "reserved": 8, "driver": 9},
    ],
    "replays": 0,
    "pools": [{"device": 0, "pool": [0, 1], "bytes": 10}],
}


def graph_test(source: str) -> dict[str, Any]:
    """A test with a sweep's or a log's region whose second size is 16, in run-file form."""
    figures = graphfigures.from_sweep(SWEEP, 0) if source == "sweep" else graphfigures.from_log(LOG)
    device = graphfigures.graph_device(0, 24, 2, 0)
    region = graphfigures.region(source, [device], 0.1, figures)
    test: dict[str, Any] = runfile.record_data(TestRecord("t.py::test_g", "passed", (region,)))
    test["regions"][0]["extra"]["graph_figures"]["sizes"][1]["size"] = 16.0
    return test


@pytest.mark.parametrize(
    ("source", "expected"), [("sweep", "expected integer"), ("log", "expected integer or string")]
)
def test_a_capture_size_written_as_a_float_is_refused_by_the_loader(
    tmp_path: Path, source: str, expected: str
) -> None:
    doc = runfile.build_run([], runfile.base_machine(), None)
    doc["tests"] = [graph_test(source)]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert one_line(info) == (
        f"cgmem: run file {str(path)!r} has a capture size written as a float at "
        f"$.tests[0].regions[0].extra.graph_figures.sizes[1].size: {expected}, got number 16.0"
    )


@pytest.mark.parametrize(
    ("source", "expected"), [("sweep", "expected integer"), ("log", "expected integer or string")]
)
def test_a_capture_size_written_as_a_float_is_refused_in_a_journal_line_and_a_region(
    source: str, expected: str
) -> None:
    test = graph_test(source)
    where = "regions[0].extra.graph_figures.sizes[1].size"
    assert runfile.record_problem(test, "$.test") == (
        f"$.test.{where}: {expected}, got number 16.0"
    )
    assert runfile.region_problem(test["regions"][0]) == (
        f"extra.graph_figures.sizes[1].size: {expected}, got number 16.0"
    )


# -- records of the wrong shape ------------------------------------------------------------

REGION = "expected a run file's region (label, seconds, devices), got "
DEVICE = "expected a run file's device (index and figures), got "


def region_data(**changes: Any) -> dict[str, Any]:
    return {"label": "call", "seconds": 0.5, "devices": [{"index": 0, "peak": 1}], **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nodeid": "t.py::a", "regions": [region_data()]}, REGION + "keys 'nodeid', 'regions'"),
        ({}, REGION + "no keys"),
        ("call", REGION + "'call'"),
        (["call"], REGION + "['call']"),
        (region_data(label=5), REGION + "label=5"),
        (region_data(seconds="1s"), REGION + "seconds='1s'"),
        (region_data(seconds=True), REGION + "seconds=True"),
        (region_data(devices="cuda:0"), REGION + "devices='cuda:0'"),
        (region_data(extra=[1]), REGION + "extra=[1]"),
        (region_data(devices=[{"peak": 1}]), DEVICE + "keys 'peak'"),
        (region_data(devices=["cuda:0"]), DEVICE + "'cuda:0'"),
        (region_data(devices=[{"index": True}]), DEVICE + "index=True"),
        (region_data(devices=[{"index": 0.5}]), DEVICE + "index=0.5"),
        (region_data(devices=[{"index": "0"}]), DEVICE + "index='0'"),
    ],
)
def test_a_region_of_the_wrong_shape_is_one_line(data: Any, message: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        RegionResult.from_dict(data)
    assert one_line(info).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [({"peak": 1}, DEVICE + "keys 'peak'"), (None, DEVICE + "None"), (0, DEVICE + "0")],
)
def test_a_device_of_the_wrong_shape_is_one_line(data: Any, message: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        DeviceFigures.from_dict(data)
    assert one_line(info) == message


# -- a bare fraction as a mark's tolerance ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("0.05", "0.05"),
        ("0.2", "0.2"),
        (".5", ".5"),
        (" 1.0 ", "1.0"),
        ("10% 0.05", "0.05"),
        ("0.05, 4MiB", "0.05"),
    ],
)
def test_a_bare_fraction_is_no_tolerance(text: str, part: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        parse_tolerance(text)
    assert one_line(info).endswith(f"(expected a percentage such as '5%', got {part!r})")


@given(st.decimals(0, 10**6, places=3, allow_nan=False, allow_infinity=False))
def test_a_number_with_a_point_and_no_unit_is_no_tolerance(number: Any) -> None:
    with pytest.raises(CgmemUsageError, match=r"expected a percentage such as '5%'"):
        parse_tolerance(f"{number:.3f}")


def test_a_mark_s_bare_fraction_is_refused_as_the_option_refuses_it() -> None:
    with pytest.raises(CgmemUsageError) as option:
        resolve({**none_of_the_options(), "tolerance": "0.05"}, {})
    said = str(option.value).removeprefix("--cgmem-tolerance='0.05': ")
    with pytest.raises(CgmemUsageError) as mark:
        parse_tolerance("0.05")
    assert str(mark.value).endswith(f"({said})")


LONG = "x" * 500
SHORTENED = f"'{'x' * 39}...{'x' * 11}' (502 characters)"
"""How ``short_repr`` writes ``LONG`` in a message."""


def _refusal(call: Any) -> str:
    with pytest.raises(CgmemUsageError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_budget({LONG: 1}), f"unknown budget keyword {SHORTENED} (valid: peak, "),
        (lambda: parse_budget_string(LONG), f"cannot read {SHORTENED}: expected key=value"),
        (
            lambda: parse_budget_string("peak=1 peak=2 " + "leak=1 " * 80),
            "'peak' given twice in 'peak=1 peak=2 leak=1 leak=1 leak=1 leak...",
        ),
        (lambda: FigureRecorder([].append)(LONG, peak=-1), f"cgmem_record({SHORTENED}): peak=-1"),
        (
            lambda: FigureRecorder([].append)("r", **{LONG: 1}),
            f"cgmem_record('r'): unknown figure {SHORTENED} (valid: peak, ",
        ),
    ],
    ids=["mark keyword", "budget item", "budget key twice", "record label", "record figure"],
)
def test_a_long_value_is_cut_short_in_its_message(call: Any, message: str) -> None:
    said = _refusal(call)
    assert said.startswith(message) and len(said) < 300


def test_a_long_schema_is_cut_short_in_its_message(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"schema": LONG, "tests": []}))
    said = _refusal(lambda: runfile.load_run(path))
    assert said == (
        f"cgmem: run file {str(path)!r} has schema {SHORTENED}; this pytest-cgmem reads "
        "'pytest-cgmem/1' (save it again with this version)"
    )
