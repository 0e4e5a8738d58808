"""Bad input files and values: what the loaders and parsers refuse, each in one line, and
what they take exactly (paths with ``~``, sizes near 2**63, names that are not UTF-8)."""

from __future__ import annotations

import datetime
import json
import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem import cli, plugin
from pytest_cgmem.results import journal, jsonio, outputs, runfile
from pytest_cgmem.results.baseline import parse_tolerance
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord
from pytest_cgmem.settings import OPTIONS, legacy_toml_problem, parse_path, resolve
from pytest_cgmem.units import MAX_FIGURE, CgmemUsageError, parse_size

Within = Callable[[float], AbstractContextManager[None]]
"""The ``within`` fixture (conftest.py): ``with within(5):`` fails a block that hangs."""


def document(nodeid: str = "t.py::test_a", label: str = "server") -> dict[str, Any]:
    region = RegionResult(label, (DeviceFigures(0, peak=100, reserved_ratio=1.5),), 0.0)
    record = TestRecord(nodeid, "passed", (region,), checked=(label,))
    built = runfile.build_run([record], runfile.base_machine(), None)
    plain: dict[str, Any] = json.loads(json.dumps(built))
    return plain


def write(folder: Path, doc: dict[str, Any], *edits: tuple[str, str]) -> Path:
    """``doc`` as JSON in ``folder/run.json``, each ``(old, new)`` of its text replaced once."""
    text = json.dumps(doc, indent=1)
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = folder / "run.json"
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: str | os.PathLike[str]) -> str:
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    return message


def none_of_the_options() -> dict[str, object]:
    return {o.name: None for o in OPTIONS}


# -- 1: lone surrogates -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r'["\ud800"]', r"$[0]: '\ud800' holds a lone surrogate \ud800"),
        (r'{"a": {"b": "x\uDC00"}}', r"$.a.b: 'x\udc00' holds a lone surrogate \udc00"),
        (r'{"k\udfff": 1}', r"$['k\udfff']: its key holds a lone surrogate \udfff"),
        (r'"\ud83d\ud83d\ude00"', r"$: '\ud83d😀' holds a lone surrogate \ud83d"),
        (r'"\ude00\ud83d"', r"holds a lone surrogate \ude00"),
        (r'"\\ud83d\ude00"', r"$: '\\ud83d\ude00' holds a lone surrogate \ude00"),
    ],
)
def test_a_lone_surrogate_escape_is_refused_with_its_path(text: str, message: str) -> None:
    with pytest.raises(jsonio.SurrogateError) as info:
        jsonio.loads(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'"\ud83d\ude00"', "😀"),
        (r'"\uD83D\uDE00"', "😀"),
        (r'"\\ud800"', "\\ud800"),
        (r'"\u00e9"', "é"),
    ],
)
def test_surrogate_pairs_and_escaped_backslashes_are_read(text: str, value: str) -> None:
    assert jsonio.loads(text) == value


def test_a_run_file_with_a_lone_surrogate_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, document(), ('"t.py::test_a"', r'"t.py::test_\ud800"'))
    assert "has text that is not Unicode at $.tests[0].nodeid: " in refused(path)


def test_a_lone_surrogate_is_not_written_either() -> None:
    test = document()["tests"][0]
    test["regions"][0]["label"] = "ser\ud800ver"
    problem = runfile.nonfinite_problem(test)
    assert problem is not None and "regions[0].label" in problem
    assert r"lone surrogate \ud800" in problem


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("plain.json", "plain.json"),
        ("b\udcff.json", "b\\xff.json"),
        ("t\udcfe.py", "t\\xfe.py"),  # two names that differ there stay two
        ("caf\udcc3\udca9", "café"),
        ("\ud800x", "\\ud800x"),
        ("\ud800\udcff", "\\ud800\\xff"),
    ],
)
def test_valid_text_replaces_what_utf8_cannot_hold(text: str, valid: str) -> None:
    assert jsonio.valid_text(text) == valid


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("t.py::test_a[café]", "t.py::test_a[café]"),
        ("t.py::test_a[a\nb]", "t.py::test_a[a\\nb]"),
        ("t.py::test_a[\x1b[31mred]", "t.py::test_a[\\x1b[31mred]"),
        ("tab\there\r\x00\x7f\x85", "tab\\there\\r\\x00\\x7f\\x85"),
        ("a\u2028b", "a\\u2028b"),
        ("already \\n escaped", "already \\n escaped"),
    ],
)
def test_visible_writes_out_control_characters(text: str, shown: str) -> None:
    assert jsonio.visible(text) == shown
    assert jsonio.visible(shown) == shown


@given(st.text())
def test_visible_leaves_one_printable_line(text: str) -> None:
    shown = jsonio.visible(text)
    assert len(shown.splitlines()) <= 1
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in shown)
    if text.isprintable():
        assert shown == text


@pytest.mark.parametrize(
    ("text", "width"),
    [("test_a.py", 9), ("中文.py", 7), ("e\u0301", 1), ("🚀x", 3), ("a\u200bb", 2)],
)
def test_shown_width_counts_terminal_columns(text: str, width: int) -> None:
    assert jsonio.shown_width(text) == width


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("abc", "abc   "),
        ("abcdefgh", "...gh "),
        ("中文中文中", "...中 "),
        ("a中文中文", "...文 "),
    ],
)
def test_in_columns_keeps_the_end_within_its_columns(text: str, shown: str) -> None:
    assert jsonio.in_columns(text, 6, most=5) == shown


@given(st.text(), st.integers(min_value=3, max_value=80))
def test_in_columns_fills_exactly_its_columns(text: str, most: int) -> None:
    shown = jsonio.in_columns(text, most + 1, most=most)
    assert jsonio.shown_width(shown) == most + 1
    if jsonio.shown_width(text) <= most:
        assert shown.rstrip(" ") == text.rstrip(" ")
    else:
        assert shown.startswith("...") and text.endswith(shown[3:].rstrip(" "))


@pytest.mark.parametrize(
    ("text", "drawn"),
    [
        ("t.py::t[cost $1 or $2]", r"t.py::t[cost \$1 or \$2]"),
        ("t.py::t[${$]", r"t.py::t[\${\$]"),
        ("t.py::t[v\x1b[2J]", "t.py::t[v\\x1b[2J]"),
        ("_private/t.py::t", " _private/t.py::t"),
    ],
)
def test_a_chart_label_is_drawn_literally(text: str, drawn: str) -> None:
    from pytest_cgmem.reports.charts import drawn as drawn_label

    assert drawn_label(text) == drawn


def test_merged_from_names_are_valid_utf8() -> None:
    incomplete = {**document(), "complete": False, "incomplete_reason": "killed"}
    merged, _ = runfile.merge_runs([("b\udcff.json", incomplete)])
    assert merged["merged_from"] == ["b\\xff.json"]
    assert merged["incomplete_reason"] == "b\\xff.json: killed"
    assert jsonio.loads(json.dumps(merged)) == merged


# -- 2: the catch-all of the console script ---------------------------------------------


def test_an_internal_error_is_a_short_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(args: object) -> int:
        raise RuntimeError("<html>" * 10_000)

    monkeypatch.setattr(cli, "_compare", fails)
    assert cli.main(["compare", "a.json", "b.json"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("cgmem compare: internal error: RuntimeError(")
    assert last.endswith("(please report it)") and len(last) < 200


def test_an_internal_error_prints_its_traceback_above_the_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_merge", fails)
    assert cli.main(["merge", "a.json", "-o", "m.json"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-2:] == [
        "RuntimeError: a bug",
        "cgmem merge: internal error: RuntimeError('a bug') (please report it)",
    ]


# -- 3: duplicate keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "$.a: duplicate key 'a'"),
        ('{"t": [{"x": 1}, {"x": 1, "y": 2, "x": 3}]}', "$.t[1].x: duplicate key 'x'"),
        ('{"a": {"b": 1, "b": 1}, "a": 2}', "$.a: duplicate key 'a'"),
        ('[{"odd key": 1, "odd key": 1}]', "$[0]['odd key']: duplicate key 'odd key'"),
    ],
)
def test_a_key_twice_in_one_object_is_refused_with_its_path(text: str, message: str) -> None:
    with pytest.raises(jsonio.DuplicateKeyError) as info:
        jsonio.loads(text)
    assert str(info.value) == message


def test_a_refused_number_is_named_before_a_key_twice() -> None:
    with pytest.raises(jsonio.NonFiniteError) as info:
        jsonio.loads('{"a": 1, "a": 2, "b": NaN}')
    assert str(info.value) == "$.b: NaN is not a finite number (JSON has no NaN or Infinity)"


def test_the_same_key_in_two_objects_is_fine() -> None:
    assert jsonio.loads('{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}')["b"][1] == {"a": 3}


def test_a_run_file_with_a_key_twice_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, document(), ('"tests": [', '"tests": [], "tests": ['))
    assert refused(path) == (
        f"cgmem: run file {str(path)!r} has a key twice in one object at $.tests: "
        "duplicate key 'tests'"
    )


# -- 4: whole numbers written as floats -------------------------------------------------


@pytest.mark.parametrize("number", ["1e19", "1.7e308", "9.3e18"])
@pytest.mark.parametrize("figure", ["peak", "device"])
def test_a_whole_number_figure_beyond_int64_written_as_a_float_is_refused(
    tmp_path: Path, number: str, figure: str
) -> None:
    sign = "-" if figure == "device" else ""  # the driver's figure may be negative
    path = write(tmp_path, document(), (f'"{figure}": ', f'"{figure}": {sign}{number}, "x": '))
    message = refused(path)
    assert f".devices[0].{figure}: {sign}" in message
    assert f"is a whole number beyond ±{MAX_FIGURE}" in message


def test_a_journal_line_with_a_figure_beyond_int64_is_refused() -> None:
    test = document()["tests"][0]
    test["regions"][0]["devices"][0]["peak"] = 1e19
    problem = runfile.record_problem(test, "$.test")
    assert problem == (
        f"$.test.regions[0].devices[0].peak: 1e+19 is a whole number beyond ±{MAX_FIGURE}"
    )


def test_floats_within_range_and_large_ratios_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        document(),
        ('"peak": 100', '"peak": 9.2e18'),
        ('"reserved_ratio": 1.5', '"reserved_ratio": 1e300'),
    )
    device = runfile.load_run(path)["tests"][0]["regions"][0]["devices"][0]
    assert device["peak"] == 9.2e18 and device["reserved_ratio"] == 1e300


# -- 5: a journal that is not a regular file --------------------------------------------


@pytest.fixture
def fifo_journal(tmp_path: Path) -> Path:
    """A stub run file whose journal is a FIFO with no writer; the run file's path."""
    run = tmp_path / "run.json"
    doc = {**document(), "complete": False, "journal": {"file": "run.json.journal", "run": "r"}}
    run.write_text(json.dumps(doc), encoding="utf-8")
    os.mkfifo(journal.journal_path(run))
    return run


def test_a_fifo_journal_is_refused_by_the_reader(fifo_journal: Path, within: Within) -> None:
    with within(5), pytest.raises(journal.JournalError) as info:
        journal.read(fifo_journal, {"file": "run.json.journal", "run": "r"})
    assert str(info.value) == "its journal 'run.json.journal' is not a regular file"


def test_a_socket_journal_is_refused_by_the_reader_unopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a socket's path must be short
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("run.json.journal")
        with pytest.raises(journal.JournalError) as info:
            journal.read("run.json", {"file": "run.json.journal", "run": "r"})
    assert str(info.value) == "its journal 'run.json.journal' is not a regular file"


def test_a_stub_with_a_fifo_journal_is_one_line(fifo_journal: Path, within: Within) -> None:
    with within(5):
        message = refused(fifo_journal)
    assert message.endswith(": its journal 'run.json.journal' is not a regular file")


def test_a_fifo_journal_is_an_output_problem_not_a_hang(fifo_journal: Path, within: Within) -> None:
    with within(5):
        assert journal.busy(fifo_journal) is None
        found = outputs.problems(
            [outputs.Output("--cgmem-json", "run.json", "run")], fifo_journal.parent
        )
    assert found == [
        "--cgmem-json='run.json': its journal 'run.json.journal' is in the way: it is not a "
        "regular file; remove it or give the run file another path"
    ]


# -- 6: NUL in a path -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "baseline", "artifacts"])
@pytest.mark.parametrize("where", ["cli", "ini"])
def test_a_nul_in_a_path_is_one_line_naming_the_option(name: str, where: str) -> None:
    given = {**none_of_the_options(), name: "a\x00b.json"}
    cli_values, ini = (given, none_of_the_options()) if where == "cli" else ({}, given)
    with pytest.raises(CgmemUsageError) as info:
        resolve(cli_values, ini, "/project")
    source = f"--cgmem-{name}" if where == "cli" else f"cgmem_{name}"
    assert str(info.value) == f"{source}='a\\x00b.json': a path cannot hold a NUL character"


@pytest.mark.parametrize(
    ("path", "shown"),
    [("a.json\nb.json", "'\\n'"), ("a\x1b[31mred.json", "'\\x1b'"), ("a\u2028b", "'\\u2028'")],
    ids=["newline", "escape", "line-separator"],
)
@pytest.mark.parametrize("where", ["cli", "ini"])
def test_a_control_character_in_a_path_is_one_line_naming_the_option(
    path: str, shown: str, where: str
) -> None:
    """A second line of an ini value (pytest joins them with a newline) is no file name."""
    given = {**none_of_the_options(), "json": path}
    cli_values, ini = (given, none_of_the_options()) if where == "cli" else ({}, given)
    with pytest.raises(CgmemUsageError) as info:
        resolve(cli_values, ini, "/project")
    assert str(info.value).endswith(
        f": a path cannot hold a control character or line break ({shown})"
    )
    assert "\n" not in str(info.value)


def test_a_nul_in_a_run_file_path_is_one_line() -> None:
    assert refused("a\x00b.json").endswith("a path cannot hold a NUL character")


def test_an_empty_path_or_a_folder_as_a_run_file_is_one_line(tmp_path: Path) -> None:
    assert refused("") == "cgmem: run file: the path is empty; give a file path"
    assert refused(tmp_path) == f"cgmem: run file {str(tmp_path)!r} is a folder; give a file path"


def test_a_run_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(b'{"tests": "\xff"}')
    assert refused(path) == (
        f"cgmem: run file {str(path)!r} is not UTF-8 text (byte 0xff at offset 11)"
    )


def test_a_run_file_that_cannot_be_read_says_why_once(tmp_path: Path) -> None:
    os.symlink("loop.json", tmp_path / "loop.json")
    assert refused(tmp_path / "loop.json") == (
        f"cgmem: cannot read run file {str(tmp_path / 'loop.json')!r} "
        "(Too many levels of symbolic links)"
    )


def test_a_byte_order_mark_before_a_run_file_is_read_past(tmp_path: Path) -> None:
    """JSON's readers may ignore one (RFC 8259); a Windows editor may have saved it."""
    path = tmp_path / "run.json"
    path.write_text("\ufeff" + json.dumps(document()), encoding="utf-8")
    assert runfile.load_run(path)["tests"][0]["nodeid"] == "t.py::test_a"


# -- 7: the legacy TOML table in any TOML ini file --------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "reads"),
    [
        ("pyproject.toml", (9, 2), True),
        ("my.toml", (9, 2), True),
        ("my.toml", (9, 0), True),
        ("my.toml", (8, 1), True),
        ("pytest.toml", (9, 0), False),
        (".pytest.toml", (9, 2), False),
        ("pytest.toml", (8, 1), True),
        ("pytest.ini", (9, 2), False),
        ("setup.cfg", (8, 1), False),
    ],
)
def test_which_ini_files_have_a_legacy_toml_table(
    monkeypatch: pytest.MonkeyPatch, name: str, version: tuple[int, int], reads: bool
) -> None:
    monkeypatch.setattr(plugin, "_pytest_version", lambda: version)
    assert plugin._reads_ini_options(Path("/project") / name) is reads


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (datetime.date(1979, 5, 27), "a date"),
        (datetime.datetime(1979, 5, 27, 7, 32), "a date-time"),
        (datetime.time(7, 32), "a time"),
    ],
)
def test_a_toml_date_is_named_with_its_article(value: object, got: str) -> None:
    json_option = next(o for o in OPTIONS if o.name == "json")
    problem = legacy_toml_problem(json_option, value)
    assert problem is not None and problem.endswith(f", got {got}")


# -- 8: a mark's tolerance= too long or too large ---------------------------------------


@pytest.mark.parametrize(
    "value",
    [10**5000, 10**400, -(10**400), "x" * 5000, "5% " + "9" * 5000],
    ids=["int-5000-digits", "int-400-digits", "negative-int", "long-text", "long-size"],
)
def test_a_huge_tolerance_is_a_short_line(value: object) -> None:
    with pytest.raises(CgmemUsageError) as info:
        parse_tolerance(value)
    assert len(str(info.value)) < 400


# -- 9: sizes read exactly --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("9223372036854775807", MAX_FIGURE),
        ("9223372036854775807 B", MAX_FIGURE),
        ("9223372036854775807.4", MAX_FIGURE),
        ("9007199254740993", 9007199254740993),
        ("8388607 TiB", 8388607 * 2**40),
        ("0.5 KiB", 512),
        ("2.5", 2),  # a tie to the even byte, as before
        ("3.5", 4),
        ("1.000000000000000000001 GB", 10**9),
        ("0." + "0" * 5000 + "1 TiB", 0),
    ],
)
def test_a_size_is_read_exactly(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["9223372036854775808", "9223372036854775807.5", "8388608 TiB", "1" + "0" * 5000]
)
def test_a_size_just_beyond_int64_is_too_large(text: str) -> None:
    with pytest.raises(CgmemUsageError, match=f"^too large: the most is {MAX_FIGURE}$"):
        parse_size(text)


# -- 10: ~ in every path ----------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def test_parse_path_expands_the_home_folder(home: Path) -> None:
    assert parse_path(" ~/x.json ") == str(home / "x.json")


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_a_path_from_the_ini_file_or_the_command_line_expands_the_home_folder(
    home: Path, where: str
) -> None:
    given = {**none_of_the_options(), "json": "~/x.json", "artifacts": "~/art"}
    cli_values, ini = (given, none_of_the_options()) if where == "cli" else ({}, given)
    settings = resolve(cli_values, ini, "/project")
    assert (settings.json, settings.artifacts) == (str(home / "x.json"), str(home / "art"))


def test_load_run_expands_the_home_folder_and_names_the_path_as_given(home: Path) -> None:
    write(home, document())
    assert runfile.load_run("~/run.json")["tests"][0]["nodeid"] == "t.py::test_a"
    assert refused("~/missing.json") == "cgmem: run file '~/missing.json' does not exist"


def test_cgmem_commands_expand_the_home_folder_for_inputs_and_outputs(home: Path) -> None:
    write(home, document())
    assert cli.main(["compare", "~/run.json", "~/run.json"]) == 0
    assert cli.main(["merge", "~/run.json", "-o", "~/merged.json"]) == 0
    assert runfile.load_run(home / "merged.json")["merged_from"] == ["~/run.json"]


# -- 11: an output path that names a folder ---------------------------------------------


@pytest.mark.parametrize("given", ["out/", "out//", "out/.", "out/..", "a/b/./"])
def test_names_folder(given: str) -> None:
    assert outputs.names_folder(given)


@pytest.mark.parametrize("given", ["out", "out.json", "a/b.json", "./out", "..json"])
def test_names_a_file(given: str) -> None:
    assert not outputs.names_folder(given)


@pytest.mark.parametrize("kind", ["run", "file"])
@pytest.mark.parametrize("given", ["outdir/", "outdir/."])
def test_an_output_file_path_that_names_a_folder_is_refused(
    tmp_path: Path, kind: str, given: str
) -> None:
    found = outputs.problems([outputs.Output("--cgmem-json", given, kind)], tmp_path)
    assert found == [f"--cgmem-json={given!r}: it names a folder; give a file path"]


def test_an_output_folder_may_end_with_a_slash(tmp_path: Path) -> None:
    assert outputs.problems([outputs.Output("--cgmem-artifacts", "art/", "dir")], tmp_path) == []


def test_cgmem_merge_refuses_an_output_that_names_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, document())
    assert cli.main(["merge", "run.json", "-o", "newdir/"]) == 2
    assert capsys.readouterr().err == (
        "cgmem merge: -o 'newdir/': it names a folder; give a file path\n"
    )
    assert not (tmp_path / "newdir").exists()


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["merge", "run.json", "-o", "a\nb.json"], "cgmem merge: -o 'a\\nb.json'"),
        (["report", "run.json", "-o", "r\t6.html"], "cgmem report: -o 'r\\t6.html'"),
    ],
    ids=["merge", "report"],
)
def test_cgmem_refuses_an_output_path_with_a_control_character(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    shown: str,
) -> None:
    """As the options refuse one (a file named 'a<newline>b.json' was written)."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, document())
    assert cli.main(argv) == 2
    control = repr(argv[-1][1])
    assert capsys.readouterr().err == (
        f"{shown}: a path cannot hold a control character or line break ({control})\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("merge", ["merge", "{run}", "-o", "{out}.json"]),
        ("report", ["report", "{run}", "-o", "{out}.html"]),
    ],
)
def test_cgmem_in_a_deleted_current_folder_says_so_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    argv: list[str],
) -> None:
    run = write(tmp_path, document())
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    args = [a.format(run=run, out=tmp_path / "out") for a in argv]
    assert cli.main(args) == 2
    assert capsys.readouterr().err == (
        f"cgmem {command}: the current folder no longer exists; run it from one that does\n"
    )
    assert not list(tmp_path.glob("out.*"))


# -- control characters in a label (a node id is pytest's: kept) -------------------------


@pytest.mark.parametrize(
    ("label", "where"),
    [
        ("ser\tver", r"$.tests[0].regions[0].label: 'ser\tver'"),
        ("x\x1by", r"$.tests[0].regions[0].label: 'x\x1by'"),
    ],
)
def test_a_control_character_in_a_label_is_refused(tmp_path: Path, label: str, where: str) -> None:
    path = write(tmp_path, document("t.py::test_a", label))
    assert refused(path).endswith(f"has a control character (a newline, a tab) at {where}")


def test_a_node_id_with_a_tab_is_read_as_pytest_made_it(tmp_path: Path) -> None:
    """pytest puts a tab in a node id where a parametrize-id hook or a folder's name has one."""
    path = write(tmp_path, document("t\tdir/t.py::test[a\tb]", "server"))
    (test,) = runfile.load_run(path)["tests"]
    assert test["nodeid"] == "t\tdir/t.py::test[a\tb]"


def test_a_journal_line_with_a_newline_in_a_label_is_refused() -> None:
    test = document(label="a\nb")["tests"][0]
    problem = runfile.record_problem(test, "$.test")
    assert (
        problem == r"$.test.regions[0].label: 'a\nb' holds a control character (a newline, a tab)"
    )


def test_the_command_says_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    said = f"cgmem (pytest-cgmem {version('pytest-cgmem')})"
    assert capsys.readouterr().out == said + "\n"
    docs = Path(__file__).parents[2] / "docs" / "cli.md"
    assert f"`{said}`" in docs.read_text()  # as docs/cli.md quotes it


def test_the_command_from_a_tree_nobody_installed_says_so_for_its_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.metadata

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == "cgmem (pytest-cgmem unknown (not installed))\n"
