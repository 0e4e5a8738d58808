"""The run's outputs replace only files of their own kind, checked before the first test;
a baseline no run file may be is one line, never an INTERNALERROR or a failing test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch  # noqa: F401  imported once here: pytester's inline runs would re-import it each time

from pytest_cgmem.results import journal, runfile

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

RAN = """
from pathlib import Path

def test_a(cgmem_record):
    Path("ran.txt").write_text("the test ran")
    cgmem_record("x", peak=1)
"""


def usage_error(result: pytest.RunResult) -> str:
    """The one line a usage error printed, once it is known nothing ran."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [x for x in result.stderr.lines if x.strip()]
    assert len(errors) == 1, errors
    assert "INTERNALERROR" not in result.stdout.str()
    return errors[0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--cgmem-save-baseline", "test_module.py"],  # a space where '=' was meant
            "ERROR: --cgmem-save-baseline='test_module.py': it exists and is not a pytest-cgmem "
            "run file; remove it or give another path",
        ),
        (
            ["--cgmem-json", "pytest.ini"],
            "ERROR: --cgmem-json='pytest.ini': it exists and is not a pytest-cgmem run file; "
            "remove it or give another path",
        ),
        (
            ["--cgmem-gab-json=pytest.ini"],
            "ERROR: --cgmem-gab-json='pytest.ini': it exists and is not a github-action-benchmark "
            "file (a JSON list of named entries); remove it or give another path",
        ),
        (
            ["--cgmem-json=x.json"],
            "ERROR: --cgmem-json='x.json': its journal 'x.json.journal' is in the way: it is a "
            "folder; remove it or give the run file another path",
        ),
    ],
)
def test_an_output_that_would_replace_another_file_is_a_usage_error_before_the_first_test(
    pytester: pytest.Pytester, args: list[str], line: str
) -> None:
    pytester.makepyfile(test_module=RAN)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "x.json.journal").mkdir()
    before = {p.name: p.read_bytes() for p in pytester.path.iterdir() if p.is_file()}
    assert usage_error(pytester.runpytest(*args)) == line
    assert not (pytester.path / "ran.txt").exists()
    assert {p.name: p.read_bytes() for p in pytester.path.iterdir() if p.is_file()} == before


def test_outputs_replace_what_they_wrote_and_empty_files(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_module=RAN)
    for name in ("run.json", "base.json", "gab.json"):
        (pytester.path / name).write_text("")
    args = ["--cgmem-json=run.json", "--cgmem-save-baseline=base.json", "--cgmem-gab-json=gab.json"]
    pytester.runpytest(*args).assert_outcomes(passed=1)
    pytester.runpytest(*args).assert_outcomes(passed=1)
    assert runfile.load_run(pytester.path / "run.json")["complete"] is True
    assert json.loads((pytester.path / "gab.json").read_text())[0]["value"] == 1e-06  # 1 byte


MEASURED = """
def test_a(cgmem_record):
    cgmem_record("x", peak=123456789)
"""


@pytest.fixture
def good(pytester: pytest.Pytester) -> str:
    """good.json: a run file, its one figure 123456789."""
    pytester.makepyfile(test_measured=MEASURED)
    pytester.runpytest("--cgmem-json=good.json").assert_outcomes(passed=1)
    return (pytester.path / "good.json").read_text()


@pytest.mark.parametrize(
    ("peak", "problem"),
    [
        (
            "1" + "0" * 400,
            "has a number out of range at $.tests[0].regions[0].devices[0].peak: 10000000...0000 "
            "(401 digits) is beyond ±9223372036854775807",
        ),
        (
            "1" + "0" * 5000,
            "has a number out of range at $.tests[0].regions[0].devices[0].peak: 10000000...0000 "
            "(5001 digits) is beyond ±9223372036854775807",
        ),
        (
            "-5",
            "does not match the run-file schema at $.tests[0].regions[0].devices[0].peak: "
            "expected a number >= 0, got integer -5",
        ),
        ("[" * 100_000 + "]" * 100_000, "is nested too deep: more than 100 levels of arrays and "),
    ],
)
def test_a_baseline_no_run_file_may_be_is_one_line(
    pytester: pytest.Pytester, good: str, peak: str, problem: str
) -> None:
    (pytester.path / "bad.json").write_text(good.replace("123456789", peak, 1))
    line = usage_error(pytester.runpytest("--cgmem-baseline=bad.json"))
    assert line.startswith(f"ERROR: cgmem: baseline 'bad.json' {problem}")


def _stub(folder: Path, file: str, *lines: str) -> None:
    """bad.json: the stub of a killed run, its journal ``file`` with ``lines`` after the header."""
    stub = runfile.build_run([], runfile.base_machine(), None, complete=False)
    stub["journal"] = {"file": file, "run": "r"}
    runfile.write_json(folder / "bad.json", stub)
    header = '{"journal":"pytest-cgmem/1","run":"r","pid":1,"host":"h","started":"s"}'
    journal.journal_path(folder / "bad.json").write_text("\n".join([header, *lines, ""]))


@pytest.mark.parametrize(
    ("file", "lines", "problem"),
    [
        (".", (), " does not match the run-file schema at $.journal.file: expected a plain file"),
        ("..", (), " does not match the run-file schema at $.journal.file: expected a plain"),
        (
            "bad.json.journal",
            ('{"test":{"nodeid":"t"}}',),
            ": its journal 'bad.json.journal' line 2: $.test: 'outcome' is missing",
        ),
        (
            "bad.json.journal",
            ('{"test":{"nodeid":"t","outcome":"passed","regions":5}}',),
            ": its journal 'bad.json.journal' line 2: $.test: 'budget' is missing",
        ),
    ],
)
def test_a_baseline_stub_with_a_bad_journal_is_one_line(
    pytester: pytest.Pytester, file: str, lines: tuple[str, ...], problem: str
) -> None:
    pytester.makepyfile(test_measured=MEASURED)
    _stub(pytester.path, file, *lines)
    found = usage_error(pytester.runpytest("--cgmem-baseline=bad.json"))
    assert found.startswith(f"ERROR: cgmem: baseline 'bad.json'{problem}")
