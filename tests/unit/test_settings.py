import dataclasses

import pytest

from pytest_cgmem.checks.budgets import Budget
from pytest_cgmem.settings import (
    OPTIONS,
    Settings,
    idle_options,
    legacy_toml_problem,
    parse_bool,
    resolve,
)
from pytest_cgmem.units import CgmemUsageError


def _none() -> dict[str, object]:
    return {o.name: None for o in OPTIONS}


def test_defaults() -> None:
    assert resolve(_none(), _none()) == Settings(Budget(), all=False, require_gpu=False, summary=10)


def test_cli_beats_ini_beats_default() -> None:
    ini = {**_none(), "summary": "3", "budget": "peak=1GiB"}
    cli = {**_none(), "summary": "5"}
    settings = resolve(cli, ini)
    assert settings.summary == 5
    assert settings.budget.limits == {"peak": 2**30}


@pytest.mark.parametrize("value", ["", " ", "\t", []])
def test_an_empty_or_blank_ini_value_is_unset(value: object) -> None:
    settings = resolve(_none(), {**_none(), "summary": value, "json": value, "budget": value})
    assert (settings.summary, settings.json, settings.budget.limits) == (10, None, {})


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("summary", "-1", "--cgmem-summary='-1'"),
        ("budget", "peak=lots", "--cgmem-budget='peak=lots'"),
        ("budget", "peek=1GiB", "unknown budget keyword 'peek'"),
        ("summary", "9" * 5000, "(5002 characters): too large: the most is "),
        ("budget", f"peak={'9' * 400}GiB", "(405 characters): too large"),
        ("tolerance_abs", "9" * 400, "(402 characters): too large"),
        ("history_entries", 10**5000, "=an integer of about 5000 digits: too large"),
    ],
    ids=["negative", "unreadable", "unknown-key", "huge-summary", "huge-budget", "huge-abs", "int"],
)
def test_bad_cli_value_names_option(name: str, value: str, fragment: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        resolve({**_none(), name: value}, _none())
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", [["a.json", "b.json"], 5, True])
def test_a_path_from_a_legacy_toml_table_must_be_a_string(value: object) -> None:
    """``[tool.pytest.ini_options]`` hands a TOML list or number over as it is."""
    with pytest.raises(CgmemUsageError, match=r"cgmem_json=.*expected a file path as a string"):
        resolve(_none(), {**_none(), "json": value})


def test_bad_ini_value_names_ini_key() -> None:
    with pytest.raises(CgmemUsageError, match="cgmem_require_gpu='maybe'"):
        resolve(_none(), {**_none(), "require_gpu": "maybe"})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("1", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_every_option_is_documented_in_usage() -> None:
    from pathlib import Path

    usage = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    for option in OPTIONS:
        assert f"`{option.cli}" in usage, option.cli
        assert f"`{option.ini}`" in usage, option.ini


@pytest.mark.parametrize("name", ["summary", "history_entries", "stacks", "devices"])
@pytest.mark.parametrize("value", ["²", "٣", "1²", "0,٣"])
def test_integer_options_refuse_non_ascii_digits(name: str, value: str) -> None:
    with pytest.raises(CgmemUsageError) as info:
        resolve({**_none(), name: value}, _none())
    assert str(info.value).startswith(f"--cgmem-{name.replace('_', '-')}={value!r}: expected")


def test_sources_name_the_flag_or_the_ini_key() -> None:
    settings = resolve({**_none(), "json": "a.json"}, {**_none(), "require_gpu": "true"})
    assert settings.sources == {"json": "--cgmem-json", "require_gpu": "cgmem_require_gpu"}
    assert settings.source("require_gpu") == "cgmem_require_gpu"
    assert settings.source("summary") == "--cgmem-summary"  # a default: the flag


@pytest.mark.parametrize(
    ("cli", "ini", "warned"),
    [
        ({"stacks": "3"}, {}, ["cgmem: --cgmem-stacks does nothing without --cgmem-history"]),
        ({"stacks": "3", "history": True}, {}, []),
        ({}, {"stacks": "3"}, []),  # a project's ini sets defaults for every run
        ({"gab_sizes": True}, {}, ["--cgmem-gab-sizes does nothing without --cgmem-gab-json"]),
        (
            {"tolerance": "9%", "tolerance_abs": "1MiB"},
            {"baseline": "b.json"},
            [],
        ),
        (
            {"tolerance": "9%", "history_entries": "5"},
            {},
            [
                "--cgmem-history-entries does nothing without --cgmem-history",
                "--cgmem-tolerance does nothing without --cgmem-baseline",
            ],
        ),
    ],
)
def test_idle_options_are_those_given_on_the_command_line_without_their_partner(
    cli: dict[str, object], ini: dict[str, object], warned: list[str]
) -> None:
    from pytest_cgmem.settings import idle_options

    settings = resolve({**_none(), **cli}, {**_none(), **ini})
    assert [m.removeprefix("cgmem: ") for m in idle_options(settings)] == [
        w.removeprefix("cgmem: ") for w in warned
    ]


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        ("json", "run.json", None),
        (
            "json",
            5,
            "cgmem_json=5: expected a TOML string in [tool.pytest.ini_options], got an integer",
        ),
        (
            "json",
            {"a": 1},
            "cgmem_json={'a': 1}: expected a TOML string in [tool.pytest.ini_options], got a table",
        ),
        (
            "json",
            ["a"],
            "cgmem_json=['a']: expected a TOML string in [tool.pytest.ini_options], got an array",
        ),
        ("summary", 3, None),
        ("summary", "3", None),
        (
            "summary",
            True,
            "cgmem_summary=True: expected a TOML string or integer in "
            "[tool.pytest.ini_options], got a boolean",
        ),
        (
            "summary",
            1.5,
            "cgmem_summary=1.5: expected a TOML string or integer in "
            "[tool.pytest.ini_options], got a float",
        ),
        ("all", True, None),
        ("all", "true", None),
        (
            "all",
            1,
            "cgmem_all=1: expected a TOML string or boolean in "
            "[tool.pytest.ini_options], got an integer",
        ),
    ],
)
def test_legacy_toml_values_of_a_type_the_option_does_not_take(
    name: str, raw: object, problem: str | None
) -> None:
    option = next(o for o in OPTIONS if o.name == name)
    assert legacy_toml_problem(option, raw) == problem


@pytest.mark.parametrize(
    ("cli", "ini", "message"),
    [
        (
            {},
            {"require_gpu": "maybe"},
            "cgmem_require_gpu='maybe': expected true or false, got 'maybe'",
        ),
        ({}, {"json": 5}, "cgmem_json=5: expected a file path as a string, got 5"),
        ({"json": ""}, {}, "--cgmem-json='': expected a file path, got an empty value"),
        ({"baseline": "  "}, {}, "--cgmem-baseline='  ': expected a file path, got an empty value"),
        (
            {"unavailable": "maybe"},
            {},
            "--cgmem-unavailable='maybe': expected 'fail' or 'skip', got 'maybe'",
        ),
        (
            {"summary": True},
            {},
            "--cgmem-summary=True: expected a whole number >= 0 (0 turns it off), got True",
        ),
        ({"stacks": False}, {}, "--cgmem-stacks=False: expected a whole number >= 1, got False"),
    ],
    ids=["bool", "path-type", "empty-path", "blank-path", "unavailable", "bool-summary", "bool-n"],
)
def test_a_bad_value_is_one_line_naming_its_source_and_what_was_expected(
    cli: dict[str, object], ini: dict[str, object], message: str
) -> None:
    with pytest.raises(CgmemUsageError) as info:
        resolve({**_none(), **cli}, {**_none(), **ini})
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "value", "parsed"),
    [
        ("summary", 0, 0),
        ("summary", "0", 0),
        ("stacks", 1, 1),
        ("stacks", "1", 1),
        ("history_entries", "1", 1),
    ],
)
def test_whole_number_options_take_their_least_value(name: str, value: object, parsed: int) -> None:
    """``cgmem_summary = 0`` turns the summary off; a native TOML integer comes as an int."""
    assert getattr(resolve(_none(), {**_none(), name: value}), name) == parsed


@pytest.mark.parametrize(
    ("name", "value"), [("summary", -1), ("stacks", 0), ("history_entries", "0")]
)
def test_whole_number_options_refuse_a_value_below_their_least(name: str, value: object) -> None:
    with pytest.raises(CgmemUsageError, match=f"cgmem_{name}={value!r}: expected a whole number"):
        resolve(_none(), {**_none(), name: value})


def test_tolerance_abs_on_the_command_line_without_a_baseline_is_idle() -> None:
    settings = resolve({**_none(), "tolerance_abs": "1MiB"}, _none())
    assert idle_options(settings) == [
        "cgmem: --cgmem-tolerance-abs does nothing without --cgmem-baseline"
    ]


def test_settings_made_with_no_values_hold_each_option_s_default() -> None:
    assert Settings() == resolve(_none(), _none())
    for option in OPTIONS:
        assert getattr(Settings(), option.name) == option.default, option.name


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolve(_none(), _none()).summary = 3  # type: ignore[misc]


def test_the_same_values_from_the_command_line_or_the_ini_file_are_equal_settings() -> None:
    from_cli = resolve({**_none(), "summary": "3"}, _none())
    from_ini = resolve(_none(), {**_none(), "summary": "3"})
    assert from_cli.sources != from_ini.sources
    assert from_cli == from_ini


def test_repeated_budget_flags_are_named_as_given_on_the_command_line() -> None:
    settings = resolve({**_none(), "budget": ["leak=0", "peak=1GiB"]}, _none())
    assert settings.budget.limits == {"leak": 0, "peak": 2**30}
    assert settings.sources == {"budget": "--cgmem-budget"}


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("summary", "(default 10; 0 turns the summary off)"),
        ("tolerance", "(default: 5 percent)"),
        ("tolerance_abs", "(default 2MiB); "),
        ("history_entries", "(default 100000)"),
        ("stacks", "(default 4); "),
    ],
)
def test_help_names_the_default(name: str, default: str) -> None:
    option = next(o for o in OPTIONS if o.name == name)
    assert default in option.help
