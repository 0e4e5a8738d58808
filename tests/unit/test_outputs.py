"""Output paths, checked before the first test: one line per problem, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_cgmem.results import journal
from pytest_cgmem.results.outputs import Output, problems


def test_good_paths_pass_and_nothing_is_written(tmp_path: Path) -> None:
    outputs = [
        Output("--cgmem-json", "new/deeper/run.json", "run"),
        Output("--cgmem-gab-json", "gab.json"),
        Output("--cgmem-artifacts", "artifacts/", "dir"),
        Output("--cgmem-baseline", "base.json", "input"),
    ]
    assert problems(outputs, tmp_path) == []
    assert os.listdir(tmp_path) == []  # not even the folders


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (Output("--cgmem-json", "/proc/x.json", "run"), "cannot create a file in '/proc' ("),
        (Output("cgmem_gab_json", "/proc/cgmem/gab.json"), "cannot create a file in '/proc' ("),
        (Output("--cgmem-json", "blocker/run.json", "run"), "blocker' is not a folder"),
        (Output("--cgmem-save-baseline", "folder", "run"), "it is a folder; give a file path"),
        (Output("--cgmem-gab-json", "/dev/null"), "it is not a regular file"),
        (Output("--cgmem-artifacts", "blocker", "dir"), "it is not a folder"),
    ],
)
def test_bad_paths_name_the_option_and_the_path(
    tmp_path: Path, output: Output, problem: str
) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    (found,) = problems([output], tmp_path)
    assert found.startswith(f"{output.source}={output.path!r}: ")
    assert problem in found


def test_two_outputs_on_one_file(tmp_path: Path) -> None:
    os.symlink(tmp_path / "s.json", tmp_path / "link.json")
    found = problems(
        [
            Output("--cgmem-json", "s.json", "run"),
            Output("--cgmem-gab-json", "./sub/../s.json"),
            Output("--cgmem-save-baseline", "link.json", "run"),
            Output("--junitxml", "s.json.journal", "other"),
        ],
        tmp_path,
    )
    assert found == [
        "--cgmem-gab-json='./sub/../s.json': the same file as --cgmem-json='s.json'; give "
        "each output its own path",
        "--cgmem-save-baseline='link.json': the same file as --cgmem-json='s.json'; give each "
        "output its own path",
        "--junitxml='s.json.journal': the same file as --cgmem-json='s.json'; give each "
        "output its own path",
    ]


def test_a_baseline_may_be_refreshed_in_place_but_not_overwritten_by_gab(tmp_path: Path) -> None:
    base = Output("--cgmem-baseline", "base.json", "input")
    assert problems([Output("--cgmem-save-baseline", "base.json", "run"), base], tmp_path) == []
    (found,) = problems([Output("--cgmem-gab-json", "base.json"), base], tmp_path)
    assert "the same file as --cgmem-gab-json" in found


def test_a_run_file_another_live_run_writes_is_refused(tmp_path: Path) -> None:
    stub = {"journal": {"file": "run.json.journal", "run": "r"}}
    live = journal.Journal.start(tmp_path / "run.json", stub)
    try:
        (found,) = problems([Output("--cgmem-json", "run.json", "run")], tmp_path)
        assert found.startswith("--cgmem-json='run.json': another pytest run (pid ")
        assert found.endswith("is writing it; give each concurrent run its own path")
    finally:
        live.close()
    assert problems([Output("--cgmem-json", "run.json", "run")], tmp_path) == []
