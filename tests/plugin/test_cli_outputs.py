"""The ``cgmem`` command's ``-o``: it replaces no input and no file it did not write, and
bad options and files are one line with exit 2, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_cgmem
from pytest_cgmem import cli
from pytest_cgmem.results import journal, runfile
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord

ROOT = Path(pytest_cgmem.__file__).parents[1]
PAGE = "<!DOCTYPE html><html><body>the last report</body></html>"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """base.json (a run file) and the files an -o might name by mistake, as cwd."""
    region = RegionResult("call", (DeviceFigures(0, peak=2**20),), 0.0)
    runfile.write_json(
        tmp_path / "base.json",
        runfile.build_run(
            [TestRecord("t.py::test_a", "passed", (region,))], runfile.base_machine(), None
        ),
    )
    (tmp_path / "other.json").write_text((tmp_path / "base.json").read_text())
    (tmp_path / "test_x.py").write_text("def test(): pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "last.html").write_text(PAGE)
    (tmp_path / "adir").mkdir()
    os.symlink("base.json", tmp_path / "link.json")
    os.link(tmp_path / "base.json", tmp_path / "hard.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def contents(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): "" if p.is_dir() else p.read_text()
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["report", "base.json", "-o", "base.json"],
            "cgmem report: -o 'base.json': it is the input file 'base.json'; give the output "
            "its own path",
        ),
        (
            ["merge", "other.json", "base.json", "-o", "./base.json"],
            "cgmem merge: -o './base.json': it is the input file 'base.json'; give the output",
        ),
        (["merge", "base.json", "-o", "link.json"], "-o 'link.json': it is the input file 'base"),
        (["merge", "base.json", "-o", "hard.json"], "-o 'hard.json': it is the input file 'base"),
        (["merge", "link.json", "-o", "base.json"], "-o 'base.json': it is the input file 'link"),
        (["report", "base.json", "-o", ""], "cgmem report: -o is empty; give a file path"),
        (["merge", "base.json", "-o", ""], "cgmem merge: -o is empty; give a file path"),
        (["merge", "base.json", "-o", "  "], "cgmem merge: -o is empty; give a file path"),
        (["report", "base.json", "-o", " \t"], "cgmem report: -o is empty; give a file path"),
        (["merge", "base.json", "-o", " base.json "], "-o 'base.json': it is the input file"),
        (["merge", "base.json", "-o", "adir"], "cgmem merge: -o 'adir': it is a folder; give a"),
        (["report", "base.json", "-o", "adir"], "cgmem report: -o 'adir': it is a folder; give"),
        (["merge", "base.json", "-o", "/dev/null"], "-o '/dev/null': it is not a regular file"),
        (["report", "base.json", "-o", "/dev/null"], "-o '/dev/null': it is not a regular file"),
        (
            ["merge", "base.json", "-o", "test_x.py"],
            "cgmem merge: -o 'test_x.py': it exists and is not a pytest-cgmem run file; remove "
            "it or give another path",
        ),
        (["merge", "base.json", "-o", "last.html"], "is not a pytest-cgmem run file"),
        (
            ["report", "base.json", "-o", "pytest.ini"],
            "cgmem report: -o 'pytest.ini': it exists and is not an HTML page; remove it or "
            "give another path",
        ),
        (["report", "base.json", "-o", "other.json"], "-o 'other.json': it exists and is not an"),
        (["merge", "base.json", "-o", "test_x.py/m.json"], "test_x.py' is not a folder"),
    ],
)
def test_an_output_that_is_not_its_own_is_refused_and_left_alone(
    folder: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = contents(folder)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cgmem {argv[0]}: -o ") and err.count("\n") == 1, err
    assert message in err
    assert contents(folder) == before  # nothing replaced, no temp file left


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc/self/fd")
@pytest.mark.parametrize("command", ["merge", "report"])
def test_an_output_only_the_kernel_follows_is_refused_as_what_it_opens(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    read, write = os.pipe()
    try:
        given = f"/proc/self/fd/{write}"
        assert cli.main([command, "base.json", "-o", given]) == 2
    finally:
        os.close(read)
        os.close(write)
    assert capsys.readouterr().err == f"cgmem {command}: -o {given!r}: it is not a regular file\n"


@pytest.mark.parametrize(
    ("argv", "written", "start"),
    [
        (["merge", "base.json", "-o", "other.json"], "other.json", '{\n "schema": '),
        (["merge", "base.json", "-o", "new/deeper/m.json"], "new/deeper/m.json", '{\n "schema'),
        (["report", "base.json", "-o", "last.html"], "last.html", "<!DOCTYPE html><html lang="),
    ],
)
def test_an_output_replaces_what_it_wrote_before(
    folder: Path, argv: list[str], written: str, start: str
) -> None:
    if argv[0] == "report":
        pytest.importorskip("matplotlib")
    before = (folder / "other.json").read_text()
    assert cli.main(argv) == 0
    text = (folder / written).read_text()
    assert text.startswith(start) and text not in (PAGE, before)
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_a_symlinked_output_is_written_through(folder: Path) -> None:
    os.symlink("other.json", folder / "to_other.json")
    assert cli.main(["merge", "base.json", "-o", "to_other.json"]) == 0
    assert (folder / "to_other.json").is_symlink()
    assert json.loads((folder / "other.json").read_text())["merged_from"] == ["base.json"]


def test_merge_is_refused_the_path_of_a_run_still_writing_it(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its stub replaced, the live run's complete file would replace the merged one at its
    end, or, killed, leave its journal beside a complete file that is not its own."""
    stub = runfile.build_run([], runfile.base_machine(), None, complete=False)
    stub["journal"] = {"file": "live.json.journal", "run": "r"}
    live = journal.Journal.start(folder / "live.json", stub)
    try:
        assert cli.main(["merge", "base.json", "-o", "live.json"]) == 2
        assert json.loads((folder / "live.json").read_text())["journal"]["run"] == "r"
    finally:
        live.close()
    err = capsys.readouterr().err
    assert err.startswith("cgmem merge: -o 'live.json': another pytest run (pid ")
    assert err.endswith(" is writing it; give the output its own path\n")
    assert cli.main(["merge", "base.json", "-o", "live.json"]) == 0  # once that run is gone


def test_spaces_around_an_output_path_are_dropped_as_the_plugin_s_options_drop_them(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["merge", "base.json", "-o", " m.json\t"]) == 0
    assert [p.name for p in folder.glob("*m.json*")] == ["m.json"]
    assert capsys.readouterr().out == "cgmem merge: 1 test(s) from 1 file(s) -> m.json\n"


def test_a_report_without_title_is_titled_gpu_memory(folder: Path) -> None:
    pytest.importorskip("matplotlib")
    assert cli.main(["report", "base.json", "-o", "r.html"]) == 0
    assert "<title>GPU memory</title>" in (folder / "r.html").read_text()


def test_a_report_of_an_incomplete_run_notes_it_on_stderr(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    doc = json.loads((folder / "base.json").read_text())
    doc.update(complete=False, incomplete_reason="worker gw1 crashed")
    (folder / "killed.json").write_text(json.dumps(doc))
    assert cli.main(["report", "base.json", "killed.json", "-o", "r.html"]) == 0
    assert capsys.readouterr() == (
        "cgmem report: 2 run(s) -> r.html\n",
        "cgmem report: note: killed.json is from an incomplete run: worker gw1 crashed\n",
    )


@pytest.mark.parametrize(
    "argv", [["merge", "base.json", "-o", "m.json"], ["report", "base.json", "-o", "r.html"]]
)
def test_a_write_that_fails_is_one_line_naming_the_command(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    if argv[0] == "report":
        pytest.importorskip("matplotlib")

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def disk_full(fd: int) -> None:
        raise full

    before = contents(folder)
    monkeypatch.setattr(os, "fsync", disk_full)
    assert cli.main(argv) == 2
    assert capsys.readouterr() == (
        "",
        f"cgmem {argv[0]}: cannot write -o {argv[-1]!r} (No space left on device)\n",
    )
    assert contents(folder) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["merge", "base.json", "broken.json", "-o", "other.json"],
        ["report", "base.json", "broken.json", "-o", "last.html"],
    ],
)
def test_a_command_that_fails_leaves_no_earlier_output_looking_current(
    folder: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A CI step that merges shards (or renders a page) and fails must not leave the last
    run's merged file for the gate after it to read as this run's."""
    (folder / "broken.json").write_text('{"schema": "pytest-cgmem/1", "tests": [')
    assert cli.main(argv) == 2
    assert "broken.json' is not valid JSON" in capsys.readouterr().err
    assert not (folder / argv[-1]).exists()
    assert (folder / "base.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tolerance", "5"], "cgmem: --tolerance: expected a percentage such as '5%'"),
        (["--tolerance", "1" + "0" * 400 + "%"], "cgmem: --tolerance: a tolerance must be"),
        (["--tolerance-abs", "lots"], "cgmem: --tolerance-abs: cannot read 'lots' as a size"),
        (["--tolerance-abs", "1" + "0" * 400], "cgmem: --tolerance-abs: "),
        (["--tolerance-abs", "1" + "0" * 5000], "cgmem: --tolerance-abs: "),
    ],
)
def test_a_bad_tolerance_names_the_option_given(
    folder: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(["compare", "base.json", "base.json", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and len(err) < 300, err


@pytest.mark.parametrize("error", [OverflowError("int too large"), ValueError("Exceeds the limit")])
def test_an_error_the_parser_did_not_foresee_still_names_the_option(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    def parse(value: object) -> int:
        raise error

    monkeypatch.setattr(cli, "parse_size", parse)
    assert cli.main(["compare", "base.json", "base.json", "--tolerance-abs", "9" * 500]) == 2
    err = capsys.readouterr().err
    shown = f"'{'9' * 39}...{'9' * 11}' (502 characters)"
    assert err == f"cgmem: --tolerance-abs: cannot use {shown} ({error})\n"


PYTHONPATH = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
"""This checkout first, then what the machine adds (its jsonschema, on the GPU machine)."""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            json.dumps({"x": 1}).replace("1", "1" + "0" * 400),
            "has a number out of range at $.x: 10000000...0000 (401 digits) is beyond",
        ),
        ("[" * 100_000 + "]" * 100_000, "is nested too deep: more than 100 levels of arrays"),
    ],
    ids=["huge-number", "deep-nesting"],
)
def test_the_console_script_says_what_is_wrong_with_a_file_in_one_line(
    folder: Path, text: str, message: str
) -> None:
    (folder / "bad.json").write_text(text)
    for argv in (
        ["compare", "base.json", "bad.json"],
        ["merge", "bad.json", "-o", "m.json"],
        ["report", "bad.json", "-o", "r.html"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "pytest_cgmem.cli", *argv],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"cgmem: run file 'bad.json' {message}"), done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


REQUIRED = "the following arguments are required:"


@pytest.mark.parametrize(
    ("argv", "prog", "error"),
    [
        ([], "cgmem", f"{REQUIRED} COMMAND"),
        (["compare", "a.json", "b.json", "--bogus"], "cgmem", "unrecognized arguments: --bogus"),
        (["compare", "a.json"], "cgmem compare", f"{REQUIRED} NEW"),
        (["compare"], "cgmem compare", f"{REQUIRED} BASE, NEW"),
        (["merge", "a.json"], "cgmem merge", f"{REQUIRED} -o/--output"),
        (["merge", "-o", "m.json"], "cgmem merge", f"{REQUIRED} FILE"),
        (["report", "a.json"], "cgmem report", f"{REQUIRED} -o/--output"),
        (["report", "-o", "r.html"], "cgmem report", f"{REQUIRED} RUN"),
    ],
)
def test_arguments_argparse_refuses_print_the_usage_then_one_error_line(
    folder: Path, capsys: pytest.CaptureFixture[str], argv: list[str], prog: str, error: str
) -> None:
    before = contents(folder)
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"usage: {prog} [-h]"), err
    assert err.splitlines()[-1] == f"{prog}: error: {error}"
    assert contents(folder) == before
