"""Output paths, checked before the first test: one line per problem, nothing written."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_cgmem.results import journal, outputs
from pytest_cgmem.results.outputs import Output, output_problem, problems, same_file
from pytest_cgmem.units import MiB


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
        (Output("--cgmem-json", "/", "run"), "it is a folder"),
        (Output("cgmem_save_baseline", "/", "run"), "it is a folder"),
        (Output("--cgmem-gab-json", "/dev/null"), "it is not a regular file"),
        (Output("--cgmem-artifacts", "blocker", "dir"), "it is not a folder"),
        (Output("--cgmem-artifacts", "blocker/sub", "dir"), "blocker' is not a folder"),
        (Output("--cgmem-json", "folder/", "run"), "it names a folder; give a file path"),
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


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("a" * 300, errno.ENAMETOOLONG),
        ("a" * 300 + "/sub", errno.ENAMETOOLONG),
        ("loop", errno.ELOOP),
    ],
)
def test_an_artifacts_folder_that_cannot_be_looked_at_is_one_line(
    tmp_path: Path, given: str, error: int
) -> None:
    """A name longer than the file system takes, or a symlink loop: pathlib's ``is_dir``
    raises there (Python 3.11), which was an INTERNALERROR."""
    os.symlink("loop", tmp_path / "loop")
    found = problems([Output("--cgmem-artifacts", given, "dir")], tmp_path)
    assert found == [f"--cgmem-artifacts={given!r}: cannot use it ({os.strerror(error)})"]


@pytest.mark.parametrize("kind", ["run", "file"])
@pytest.mark.parametrize(
    ("given", "error"), [("a" * 300, errno.ENAMETOOLONG), ("loop", errno.ELOOP)]
)
def test_an_output_file_that_cannot_be_looked_at_is_one_line(
    tmp_path: Path, given: str, error: int, kind: str
) -> None:
    os.symlink("loop", tmp_path / "loop")
    found = problems([Output("--cgmem-json", given, kind)], tmp_path)
    assert found == [f"--cgmem-json={given!r}: cannot use it ({os.strerror(error)})"]


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (
            Output("--cgmem-json", "/proc/x.json", "run"),
            f"cannot create a file in '/proc' ({os.strerror(errno.ENOENT)})",
        ),
        (Output("--cgmem-gab-json", "/dev/null"), "it is not a regular file"),
        (Output("--cgmem-artifacts", "blocker", "dir"), "it is not a folder"),
        (Output("--cgmem-save-baseline", "folder", "run"), "it is a folder; give a file path"),
    ],
)
def test_a_problem_is_one_whole_line(tmp_path: Path, output: Output, problem: str) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    assert problems([output], tmp_path) == [f"{output.where()}: {problem}"]


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux's /proc/self/mem")
def test_a_file_that_cannot_be_read_is_not_taken_for_ours(tmp_path: Path) -> None:
    """``/proc/self/mem`` is a regular file whose first bytes cannot be read (EIO)."""
    assert problems([Output("--cgmem-gab-json", "/proc/self/mem")], tmp_path) == [
        "--cgmem-gab-json='/proc/self/mem': cannot read it to tell whether it is a "
        f"github-action-benchmark file (a JSON list of named entries) ({os.strerror(errno.EIO)})"
    ]


def test_an_existing_artifacts_folder_is_probed_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[Path] = []
    monkeypatch.setattr(outputs, "_probe", lambda folder: probed.append(folder))
    (tmp_path / "artifacts").mkdir()
    assert problems([Output("--cgmem-artifacts", "artifacts", "dir")], tmp_path) == []
    assert probed == [tmp_path / "artifacts"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc/self/fd")
def test_checking_leaves_no_file_open(tmp_path: Path) -> None:
    (tmp_path / "gab.json").write_text("[]")
    (tmp_path / "run.json").write_text(RUN_FILE)
    before = sorted(os.listdir("/proc/self/fd"))
    found = problems(
        [
            Output("--cgmem-json", "run.json", "run"),
            Output("--cgmem-gab-json", "gab.json"),
            Output("--cgmem-artifacts", "new/artifacts", "dir"),
        ],
        tmp_path,
    )
    assert found == []
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_the_root_folder_is_a_folder_artifacts_may_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/`` is refused as a file path (it is a folder), but the artifacts option wants one:
    it is probed like any other folder (the probe, which writes a file there, is recorded
    instead)."""
    probed: list[Path] = []
    monkeypatch.setattr(outputs, "_probe", lambda folder: probed.append(folder))
    assert problems([Output("--cgmem-artifacts", "/", "dir")], tmp_path) == []
    assert probed == [Path("/")]
    assert problems([Output("--cgmem-json", "/", "file")], tmp_path) == [
        "--cgmem-json='/': it is a folder"
    ]


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


def test_a_baseline_may_be_refreshed_in_place_but_not_overwritten(tmp_path: Path) -> None:
    """Only a saved baseline may replace the one read: a run file there would put a
    regressed run's figures in the baseline's place, and the next check would pass."""
    base = Output("--cgmem-baseline", "base.json", "input")
    saved = Output("--cgmem-save-baseline", "base.json", "run", refreshes=True)
    assert problems([saved, base], tmp_path) == []
    assert problems([base, saved], tmp_path) == []
    (found,) = problems([Output("--cgmem-gab-json", "base.json"), base], tmp_path)
    assert "the same file as --cgmem-gab-json" in found
    (found,) = problems([Output("--cgmem-json", "base.json", "run"), base], tmp_path)
    assert found == (
        "--cgmem-baseline='base.json': the same file as --cgmem-json='base.json'; --cgmem-json "
        "would write over the file this run reads: give it another path"
    )


def test_a_run_file_another_live_run_writes_is_refused(tmp_path: Path) -> None:
    stub = {"schema": "pytest-cgmem/1", "journal": {"file": "run.json.journal", "run": "r"}}
    live = journal.Journal.start(tmp_path / "run.json", stub)
    try:
        holder = journal.busy(tmp_path / "run.json")
        found = problems([Output("--cgmem-json", "run.json", "run")], tmp_path)
        assert holder is not None and holder.startswith("another pytest run (pid ")
        assert found == [
            f"--cgmem-json='run.json': {holder} is writing it; give each concurrent run its own "
            "path"
        ]
    finally:
        live.close()
    assert problems([Output("--cgmem-json", "run.json", "run")], tmp_path) == []


# -- an output replaces only a file of its own kind ------------------------------------------

RUN_FILE = '{\n "schema": "pytest-cgmem/1",\n "tests": []\n}\n'


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        ("run", ""),
        ("run", " \n"),
        ("run", RUN_FILE),
        ("run", '{"created": "x", "schema": "pytest-cgmem/1"}'),  # keys sorted (jq -S)
        ("run", '{"schema": "pytest-cgmem/0"}'),  # an older release's
        ("run", '{"schema": "pytest-cgmem/1", "complete": false, "journal": {}}'),  # a stub
        ("run", '{"schema": "pytest-cgmem/1", "tests": [{"nodeid": "t.py::a", '),  # cut short
        ("run", " " * 4096),
        ("file", "[]"),
        ("file", '[{"name": "t.py::test_a - peak", "unit": "MiB", "value": 1.5}]'),
        ("html", "<!DOCTYPE html><html lang='en'><head>"),
        ("html", "\n<html>\n"),
    ],
)
def test_an_output_replaces_a_file_of_its_kind(tmp_path: Path, kind: str, content: str) -> None:
    (tmp_path / "out").write_text(content)
    assert output_problem(tmp_path / "out", kind) is None


@pytest.mark.parametrize(
    ("kind", "content", "problem"),
    [
        ("run", "import pytest\n", "it exists and is not a pytest-cgmem run file; remove it or"),
        ("run", "[pytest]\naddopts = -q\n", "is not a pytest-cgmem run file"),
        ("run", '{"name": "x"}', "is not a pytest-cgmem run file"),
        ("run", '{"schema": ["pytest-cgmem/1"]}', "is not a pytest-cgmem run file"),
        ("run", '{"a": 1, "schema": "pytest-cgmem/1"', "is not a pytest-cgmem run file"),
        ("run", "[" * 10**5, "is not a pytest-cgmem run file"),
        ("run", "<!DOCTYPE html>", "is not a pytest-cgmem run file"),
        ("run", '{"schema": "pytest-cgmem-fork/1"}', "is not a pytest-cgmem run file"),
        ("run", " " * 4096 + "import pytest\n", "is not a pytest-cgmem run file"),
        ("file", "[pytest]\naddopts = -q\n", "is not a github-action-benchmark file (a JSON list"),
        ("file", RUN_FILE, "is not a github-action-benchmark file"),
        ("file", "[1, 2]", "is not a github-action-benchmark file"),
        ("file", '[{"unit": "MiB", "value": 1.5}]', "is not a github-action-benchmark file"),
        ("file", "[" * 10**5, "is not a github-action-benchmark file"),
        ("run", '{"a": ' * 10**5, "is not a pytest-cgmem run file"),
        ("html", RUN_FILE, "it exists and is not an HTML page; remove it or give another path"),
        ("html", "def test(): pass\n", "is not an HTML page"),
    ],
)
def test_an_output_does_not_replace_a_file_of_another_kind(
    tmp_path: Path, kind: str, content: str, problem: str
) -> None:
    (tmp_path / "out").write_text(content)
    found = output_problem(tmp_path / "out", kind)
    assert found is not None and problem in found
    assert (tmp_path / "out").read_text() == content


def test_a_benchmark_file_is_parsed_whole_up_to_64_mib(tmp_path: Path) -> None:
    out = tmp_path / "gab.json"
    out.write_text("[" + " " * (64 * MiB - 2) + "]")
    assert output_problem(out, "file") is None
    out.write_text("[" + " " * (64 * MiB - 1) + "]")
    found = output_problem(out, "file")
    assert found is not None and "it exists and is not a github-action-benchmark file" in found


@pytest.mark.parametrize(
    ("option", "path", "content", "problem"),
    [
        ("--cgmem-save-baseline", "test_x.py", "def test(): pass\n", "is not a pytest-cgmem run"),
        ("--cgmem-json", "pytest.ini", "[pytest]\n", "is not a pytest-cgmem run file"),
        ("--cgmem-gab-json", "pytest.ini", "[pytest]\n", "is not a github-action-benchmark"),
        ("--cgmem-gab-json", "run.json", RUN_FILE, "is not a github-action-benchmark file"),
    ],
)
def test_an_option_that_would_replace_another_file_is_refused(
    tmp_path: Path, option: str, path: str, content: str, problem: str
) -> None:
    (tmp_path / path).write_text(content)
    kind = "file" if option == "--cgmem-gab-json" else "run"
    (found,) = problems([Output(option, path, kind)], tmp_path)
    assert found.startswith(f"{option}={path!r}: it exists and ") and problem in found


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda p: p.mkdir(),
            "its journal 'run.json.journal' is in the way: it is a folder; remove it or give "
            "the run file another path",
        ),
        (
            lambda p: p.write_text("notes\n"),
            "its journal 'run.json.journal' is in the way: it exists and is not a pytest-cgmem "
            "journal; remove it or give the run file another path",
        ),
        (
            lambda p: os.symlink("/dev/null", p),
            "its journal 'run.json.journal' is in the way: it is not a regular file; remove it "
            "or give the run file another path",
        ),
        (lambda p: p.write_text('{"journal":"pytest-cgmem/1","run":"r"}\n{"test":{}}\n'), None),
        (lambda p: p.write_text('{"journal":"pyt'), None),  # its first write, under way
        (
            lambda p: p.write_text('{"journal": "pytest-cgmem-fork/1"}\n'),
            "its journal 'run.json.journal' is in the way: it exists and is not a pytest-cgmem "
            "journal; remove it or give the run file another path",
        ),
        (lambda p: p.write_text('{ "journal": "pytest-cgmem/1", "run": "r" }\n'), None),
        (lambda p: p.write_text(""), None),
    ],
)
def test_what_is_where_the_journal_goes_is_checked_too(
    tmp_path: Path, make: Callable[[Path], object], problem: str | None
) -> None:
    make(journal.journal_path(tmp_path / "run.json"))
    found = problems([Output("--cgmem-json", "run.json", "run")], tmp_path)
    assert found == ([] if problem is None else [f"--cgmem-json='run.json': {problem}"])


def test_same_file_sees_through_hard_links(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    os.link(tmp_path / "a.json", tmp_path / "b.json")
    assert same_file(tmp_path / "a.json", tmp_path / "b.json")
    assert same_file(tmp_path / "c.json", tmp_path / "c.json")
    assert not same_file(tmp_path / "a.json", tmp_path / "c.json")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc/self/fd")
@pytest.mark.parametrize(
    ("kind", "problem"), [("run", "it is not a regular file"), ("dir", "it is not a folder")]
)
def test_a_path_only_the_kernel_follows_is_named_as_given(
    tmp_path: Path, kind: str, problem: str
) -> None:
    """``/dev/stdout`` on a pipe resolves to ``/proc/<pid>/fd/pipe:[n]``, which no folder
    holds: the problem is what the path opens, not a folder under /proc."""
    read, write = os.pipe()
    try:
        given = f"/proc/self/fd/{write}"
        found = problems([Output("--cgmem-json", given, kind)], tmp_path)
    finally:
        os.close(read)
        os.close(write)
    assert found == [f"--cgmem-json={given!r}: {problem}"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc/self/fd")
def test_a_relative_path_only_the_kernel_follows_is_looked_up_from_the_invocation_folder(
    tmp_path: Path,
) -> None:
    read, write = os.pipe()
    try:
        os.symlink(f"/proc/self/fd/{write}", tmp_path / "out.json")
        found = problems([Output("--cgmem-json", "out.json", "run")], tmp_path)
    finally:
        os.close(read)
        os.close(write)
    assert found == ["--cgmem-json='out.json': it is not a regular file"]
