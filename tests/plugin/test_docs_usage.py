"""The options tables and the quoted usage errors of docs/usage.md (and the tables of the
pages that own an option: baselines.md, diagnostics.md) are the code's: every option is in
docs/usage.md's table, each table's ini key and default are the ones ``OPTIONS`` holds, and
each ``ERROR: ...`` line the page quotes is what a run prints, character for character."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pytest_cgmem
from pytest_cgmem.settings import OPTIONS, Option

pytestmark = pytest.mark.lean_runs

DOCS = Path(pytest_cgmem.__file__).parents[1] / "docs"
USAGE = (DOCS / "usage.md").read_text()
BY_CLI = {o.cli: o for o in OPTIONS}

_ROW = re.compile(r"^\| `(--cgmem-[^`]+)` \| `(cgmem_\w+)` \| ([^|]+) \|", re.MULTILINE)


def option_rows(page: str) -> list[tuple[str, str, str]]:
    """``(flag cell, ini key, default)`` of each row of the page's option tables."""
    text = (DOCS / page).read_text()
    return [
        (flag.replace("\\|", "|"), ini, default.strip().strip("`"))
        for flag, ini, default in _ROW.findall(text)
    ]


def _option(flag_cell: str) -> Option:
    cli = flag_cell.split("=", 1)[0]
    assert cli in BY_CLI, f"{cli} is no option of settings.OPTIONS"
    return BY_CLI[cli]


def test_the_usage_table_lists_every_option_once() -> None:
    listed = [_option(flag).name for flag, _, _ in option_rows("usage.md")]
    assert sorted(listed) == sorted(o.name for o in OPTIONS)


@pytest.mark.parametrize("page", ["usage.md", "baselines.md", "diagnostics.md"])
def test_each_table_row_names_the_option_s_ini_key_and_default(page: str) -> None:
    rows = option_rows(page)
    assert rows, f"docs/{page} lost its option table"
    for flag, ini, default in rows:
        option = _option(flag)
        assert ini == option.ini, flag
        if option.flag:
            assert flag == option.cli, f"{flag}: a flag takes no value"
        else:
            value = flag.split("=", 1)[1]
            # the placeholder the help shows, or an example the option takes
            assert value == option.metavar or option.parse(value) is not None, flag
        if default == "none":
            assert not option.default, f"{flag}: the default is {option.default!r}, not none"
        else:
            assert option.parse(default) == option.default, f"{flag}: documented {default!r}"


#: each usage error docs/usage.md quotes, and a run that prints it: (files, arguments)
TEST_X = "import pytest\n\n@pytest.mark.cgmem({})\ndef test_it():\n    pass\n"
QUOTED_ERRORS = {
    "ERROR: test_x.py::test_it: @pytest.mark.cgmem: peak='1.5 GB/s': cannot read '1.5 GB/s' "
    "as a size: use a number and a unit, one of B, KiB, MiB, GiB, TiB, KB, MB, GB, TB "
    "(e.g. '1.5 GiB')": ({"test_x.py": TEST_X.format("peak='1.5 GB/s'")}, []),
    "ERROR: test_x.py::test_it: @pytest.mark.cgmem: unknown budget keyword 'peek' (valid: peak, "
    "reserved, leak, device, non_torch, reserved_ratio, graph_pool, graphs, replays, tolerance)": (
        {"test_x.py": TEST_X.format("peek=1")},
        [],
    ),
    "ERROR: test_x.py::test_it: @pytest.mark.cgmem: takes keyword budgets only "
    "(e.g. cgmem(peak='1 GiB')), got positional '1 GiB'": (
        {"test_x.py": TEST_X.format("'1 GiB'")},
        [],
    ),
    "ERROR: --cgmem-summary='x': expected a whole number >= 0 (0 turns it off), got 'x'": (
        {"test_a.py": "def test_a(): pass\n"},
        ["--cgmem-summary=x"],
    ),
    "ERROR: cgmem_json=5: expected a TOML string in [tool.pytest.ini_options], got an integer": (
        {
            "test_a.py": "def test_a(): pass\n",
            "pyproject.toml": "[tool.pytest.ini_options]\ncgmem_json = 5\n",
        },
        [],
    ),
    "ERROR: cgmem: --cgmem-stacks does nothing without --cgmem-history": (
        {"test_a.py": "def test_a(): pass\n"},
        ["-W", "error", "--cgmem-stacks=3"],
    ),
}


def test_every_quoted_usage_error_is_checked_here() -> None:
    quoted = set(re.findall(r"(?m)^ERROR: .*$", USAGE)) | set(
        re.findall(r"`(ERROR: [^`]*)`", USAGE)
    )
    assert quoted == set(QUOTED_ERRORS)


@pytest.mark.parametrize("line", list(QUOTED_ERRORS), ids=lambda line: line[7:50])
def test_a_quoted_usage_error_is_what_the_run_prints(pytester: pytest.Pytester, line: str) -> None:
    files, args = QUOTED_ERRORS[line]
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    result = pytester.runpytest("-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert line in result.stderr.lines


def test_the_quoted_warning_is_what_the_run_prints(pytester: pytest.Pytester) -> None:
    quoted = "PytestConfigWarning: cgmem: --cgmem-stacks does nothing without --cgmem-history"
    assert f"\n{quoted}\n" in USAGE
    pytester.makepyfile("def test_a(): pass\n")
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-stacks=3")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{quoted}"])


@pytest.mark.no_cuda
def test_the_quoted_require_gpu_error_is_what_the_run_prints(pytester: pytest.Pytester) -> None:
    quoted = "ERROR test_r.py::test_m - Failed: cgmem: no CUDA device (--cgmem-require-gpu)"
    assert f"\n{quoted}\n" in USAGE
    pytester.makepyfile(test_r=TEST_X.format("peak='1 GiB'").replace("test_it", "test_m"))
    result = pytester.runpytest("-p", "no:randomly", "-ra", "--cgmem-require-gpu")
    result.assert_outcomes(errors=1)
    assert quoted in result.stdout.lines
