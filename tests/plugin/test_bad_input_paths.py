"""Bad input files and paths end to end: pytest stops with one line (exit status 4) and the
``cgmem`` command with one line on stderr (exit status 2), never a traceback or a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch  # imported once here: pytester's inline runs would re-import it each time

from pytest_cgmem.cli import main
from pytest_cgmem.results import runfile
from pytest_cgmem.results.jsonio import shown_width
from pytest_cgmem.units import MAX_FIGURE

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

Within = Callable[[float], AbstractContextManager[None]]
"""The ``within`` fixture (conftest.py): ``with within(5):`` fails a block that hangs."""

try:  # imported before any inline run, which would unload it (numpy loads once per process)
    import matplotlib.pyplot
except ImportError:  # pragma: no cover
    matplotlib = None

SUITE = """
def test_a(cgmem_record):
    cgmem_record("server", peak="100 MiB")
"""
NOT_UTF8 = os.fsdecode(b"b\xff.json")


def base_run(pytester: pytest.Pytester, name: str = "base.json") -> Path:
    pytester.makepyfile(test_a=SUITE)
    pytester.runpytest("-p", "no:cacheprovider", f"--cgmem-json={name}").assert_outcomes(passed=1)
    return pytester.path / name


def edited(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def one_line_usage_error(result: pytest.RunResult, *lines: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output
    result.stderr.fnmatch_lines(list(lines))


# -- 1, 2: text that is not Unicode -----------------------------------------------------


def test_a_baseline_with_a_lone_surrogate_is_one_line_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    edited(base_run(pytester), '"server"', r'"ser\ud800ver"')
    # the controller, which reads the baseline first, runs in this process
    result = pytester.runpytest("-n", "2", "--cgmem-baseline=base.json")
    one_line_usage_error(
        result,
        r"ERROR: cgmem: baseline 'base.json' has text that is not Unicode at $.tests*: "
        r"'ser\ud800ver' holds a lone surrogate \ud800 (half of a character)",
    )


@pytest.mark.parametrize("command", ["compare", "report"])
def test_cgmem_commands_refuse_a_lone_surrogate_in_one_line(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    edited(base_run(pytester), '"server"', r'"ser\udfffver"')
    args = ["base.json", "base.json"] if command == "compare" else ["base.json", "-o", "r.html"]
    assert main([command, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lone surrogate \\udfff" in err


def test_cgmem_merge_of_a_file_name_that_is_not_utf8(pytester: pytest.Pytester) -> None:
    """In a process whose output takes UTF-8 only: nothing it prints or writes may hold the
    lone surrogates Python reads such a name into."""
    base_run(pytester, NOT_UTF8)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest_cgmem.cli", "merge", os.fsencode(NOT_UTF8), "-o", "m.json"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == b"cgmem merge: 1 test(s) from 1 file(s) -> m.json\n"
    assert runfile.load_run("m.json")["merged_from"] == ["b\\xff.json"]


@pytest.mark.skipif(matplotlib is None, reason="needs matplotlib (the report extra)")
def test_cgmem_report_with_a_title_and_a_file_name_that_are_not_utf8(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    base_run(pytester, NOT_UTF8)
    capsys.readouterr()
    output = os.fsdecode(b"r\xfe.html")
    assert main(["report", "--title", os.fsdecode(b"x\xff"), NOT_UTF8, "-o", output]) == 0
    page = (pytester.path / output).read_text(encoding="utf-8")
    assert "<title>x\\xff</title>" in page and "b\\xff.json" in page
    assert capsys.readouterr().out == "cgmem report: 1 run(s) -> r\\xfe.html\n"


# -- 3, 4: a key twice, a figure beyond int64 as a float --------------------------------


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (
            '"tests": [',
            '"tests": [], "tests": [',
            "cgmem: baseline 'base.json' has a key twice in one object at $.tests: "
            "duplicate key 'tests'",
        ),
        (
            '"peak": 104857600',
            '"peak": 1e19',
            "cgmem: baseline 'base.json' does not match the run-file schema at $.tests*.peak: "
            f"1e+19 is a whole number beyond ±{MAX_FIGURE}",
        ),
    ],
)
def test_a_baseline_holding_what_json_md_refuses_is_one_line(
    pytester: pytest.Pytester, old: str, new: str, line: str
) -> None:
    edited(base_run(pytester), old, new)
    result = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-baseline=base.json")
    one_line_usage_error(result, f"ERROR: {line}")


# -- 5: a journal that is a FIFO --------------------------------------------------------


def test_a_fifo_at_the_journal_path_is_one_line_not_a_hang(
    pytester: pytest.Pytester, within: Within
) -> None:
    pytester.makepyfile(test_a=SUITE)
    os.mkfifo(pytester.path / "out.json.journal")
    with within(20):
        result = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-json=out.json")
    one_line_usage_error(
        result,
        "ERROR: --cgmem-json='out.json': its journal 'out.json.journal' is in the way: it is "
        "not a regular file; remove it or give the run file another path",
    )


def test_cgmem_compare_of_a_stub_whose_journal_is_a_fifo(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], within: Within
) -> None:
    base = base_run(pytester)
    stub = json.loads(base.read_text())
    stub.update(complete=False, journal={"file": "stub.json.journal", "run": "r"})
    (pytester.path / "stub.json").write_text(json.dumps(stub))
    os.mkfifo(pytester.path / "stub.json.journal")
    with within(10):
        assert main(["compare", "base.json", "stub.json"]) == 2
    assert capsys.readouterr().err == (
        "cgmem: run file 'stub.json': its journal 'stub.json.journal' is not a regular file\n"
    )


# -- 6: NUL in a path -------------------------------------------------------------------


def test_a_nul_in_a_native_toml_path_is_one_line(pytester: pytest.Pytester) -> None:
    if int(pytest.__version__.split(".")[0]) < 9:
        pytest.skip("native [tool.pytest] TOML tables came in pytest 9")
    pytester.makepyprojecttoml('[tool.pytest]\ncgmem_json = "a\\u0000b.json"\n')
    pytester.makepyfile(test_a=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    one_line_usage_error(result, "ERROR: cgmem_json='a\\x00b.json': a path cannot hold a NUL*")


@pytest.mark.parametrize("option", ["--cgmem-json", "--cgmem-baseline", "--cgmem-artifacts"])
def test_a_nul_in_a_path_option_is_one_line(pytester: pytest.Pytester, option: str) -> None:
    pytester.makepyfile(test_a=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"{option}=a\x00b")
    one_line_usage_error(result, f"ERROR: {option}='a\\x00b': a path cannot hold a NUL character")


def test_an_artifacts_folder_name_too_long_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=SUITE)
    name = "a" * 300
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cgmem-artifacts={name}/sub")
    one_line_usage_error(result, f"ERROR: --cgmem-artifacts='{name}/sub': cannot use it (*)")


# -- 7: the legacy TOML table of a TOML file given with -c ------------------------------


def test_a_legacy_toml_value_of_the_wrong_type_in_any_toml_ini_file(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "ci.toml").write_text("[tool.pytest.ini_options]\ncgmem_json = 5\n")
    pytester.makepyfile(test_a=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-c", "ci.toml")
    one_line_usage_error(
        result,
        "ERROR: cgmem_json=5: expected a TOML string in [[]tool.pytest.ini_options], got an "
        "integer",
    )
    assert not (pytester.path / "5").exists()


@pytest.mark.parametrize("table", ["[tool.pytest.ini_options]", "[tool.pytest]"])
def test_a_path_in_a_toml_ini_file_given_with_c_is_read(
    pytester: pytest.Pytester, table: str
) -> None:
    if table == "[tool.pytest]" and int(pytest.__version__.split(".")[0]) < 9:
        pytest.skip("native [tool.pytest] TOML tables came in pytest 9")
    (pytester.path / "ci.toml").write_text(f'{table}\ncgmem_json = "run.json"\n')
    pytester.makepyfile(test_a=SUITE)
    pytester.runpytest("-p", "no:cacheprovider", "-c", "ci.toml").assert_outcomes(passed=1)
    assert runfile.load_run(pytester.path / "run.json")["summary"]["tests"] == 1


# -- 9: a budget read exactly -----------------------------------------------------------


@pytest.mark.parametrize("peak", [MAX_FIGURE, 9007199254740993])
def test_a_budget_near_int64_is_taken_exactly(pytester: pytest.Pytester, peak: int) -> None:
    pytester.makepyfile(test_a=SUITE)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", f"--cgmem-budget=peak={peak}", "--cgmem-json=run.json"
    )
    result.assert_outcomes(passed=1)
    assert runfile.load_run(pytester.path / "run.json")["settings"]["budget"] == {"peak": peak}


# -- 10: ~ in every path ----------------------------------------------------------------


@pytest.fixture
def home(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = pytester.mkdir("home")
    monkeypatch.setenv("HOME", str(folder))
    return folder


def test_an_ini_path_with_a_tilde_is_in_the_home_folder(
    pytester: pytest.Pytester, home: Path
) -> None:
    pytester.makeini("[pytest]\ncgmem_json = ~/runs/x.json\n")
    pytester.makepyfile(test_a=SUITE)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (home / "runs" / "x.json").is_file()
    assert not (pytester.path / "~").exists()


def test_a_baseline_path_with_a_tilde_is_read_from_the_home_folder(
    pytester: pytest.Pytester, home: Path
) -> None:
    base_run(pytester, str(home / "b.json"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-baseline=~/b.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["cgmem baseline *b.json: 1 figure(s) of 1 test(s) compared*"])


def test_cgmem_compare_reads_a_path_with_a_tilde(
    pytester: pytest.Pytester, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_run(pytester, str(home / "b.json"))
    capsys.readouterr()
    assert main(["compare", "~/b.json", "~/b.json"]) == 0
    assert capsys.readouterr().out.startswith("cgmem compare ~/b.json -> ~/b.json ")


# -- 11: an output path with a trailing slash -------------------------------------------


@pytest.mark.parametrize("option", ["--cgmem-json", "--cgmem-save-baseline", "--cgmem-gab-json"])
def test_an_output_path_ending_in_a_slash_is_refused(
    pytester: pytest.Pytester, option: str
) -> None:
    pytester.makepyfile(test_a=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"{option}=outdir/")
    one_line_usage_error(result, f"ERROR: {option}='outdir/': it names a folder; give a file path")
    assert not (pytester.path / "outdir").exists()


def test_cgmem_merge_to_a_path_ending_in_a_slash_is_refused(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    base_run(pytester)
    assert main(["merge", "base.json", "-o", "newdir2/"]) == 2
    assert capsys.readouterr().err == (
        "cgmem merge: -o 'newdir2/': it names a folder; give a file path\n"
    )
    assert not (pytester.path / "newdir2").exists()


RECORDS = """
def test_rec(cgmem_record):
    cgmem_record("server", peak="1 MiB")
"""


def test_test_file_names_that_are_not_utf8_are_recorded_and_held_to_their_baseline(
    pytester: pytest.Pytester,
) -> None:
    """pytest holds a name's undecodable bytes as lone surrogates: the run file has them
    written out (``\\xfe``), so two names that differ only there stay two, the next run
    finds each test in the baseline, and failure artifacts' file names can be made."""
    for name in (b"test_\xfe.py", b"test_\xff.py"):
        (pytester.path / os.fsdecode(name)).write_text(RECORDS)
    first = pytester.runpytest(
        "-p", "no:cacheprovider", "--cgmem-save-baseline=b.json", "--cgmem-artifacts=art"
    )
    first.assert_outcomes(passed=2)
    assert first.ret == 0
    nodeids = [test["nodeid"] for test in runfile.load_run(pytester.path / "b.json")["tests"]]
    assert sorted(nodeids) == ["test_\\xfe.py::test_rec", "test_\\xff.py::test_rec"]
    second = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-baseline=b.json")
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(
        ["cgmem baseline b.json: 2 figure(s) of 2 test(s) compared: *, 0 new"]
    )
    second.stdout.no_fnmatch_line("*not measured in this run*")


def test_output_paths_that_are_not_utf8_make_files_every_reader_reads(
    pytester: pytest.Pytester,
) -> None:
    """A baseline's path is written in the run file, and a killed run's stub names its
    journal, as text every reader reads: the bytes that are not UTF-8 written out."""
    pytester.makepyfile(
        test_rec=RECORDS
        + """
def test_zkilled():
    import os
    os._exit(1)
"""
    )
    baseline, run = os.fsdecode(b"b\xfd.json"), os.fsdecode(b"r\xff.json")
    saved = pytester.runpytest(
        "-p", "no:cacheprovider", f"--cgmem-save-baseline={baseline}", "-k", "not zkilled"
    )
    saved.assert_outcomes(passed=1)
    killed = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        f"--cgmem-baseline={baseline}",
        f"--cgmem-json={run}",
    )
    assert killed.ret == 1
    document = runfile.load_run(pytester.path / run)
    assert document["settings"]["baseline"] == "b\\xfd.json"
    assert [test["nodeid"] for test in document["tests"]] == ["test_rec.py::test_rec"]
    assert (pytester.path / "r_xff.json.journal").is_file()
    assert main(["compare", "--allow-incomplete", baseline, run]) == 0


@pytest.mark.parametrize(
    ("variable", "written"),
    [
        ("PYTORCH_CUDA_ALLOC_CONF", ("machine", "alloc_conf", "expandable_segments:True,\\xff")),
        ("CUDA_VISIBLE_DEVICES", ("test", "cuda_visible_devices", "\\xff")),
    ],
)
def test_an_environment_variable_that_is_not_utf8_is_written_and_read_back(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    written: tuple[str, str, str],
) -> None:
    """The environment's undecodable bytes (lone surrogates in Python) are written out in
    the files (``\\xff``): a baseline saved under them is read back by the next run, not refused."""
    gpu_build = torch.version.cuda is not None or torch.version.hip is not None
    if variable == "PYTORCH_CUDA_ALLOC_CONF" and gpu_build:
        pytest.skip("a CUDA build of torch aborts at its import on this setting (its own check)")
    value = "expandable_segments:True,\xff" if variable == "PYTORCH_CUDA_ALLOC_CONF" else "\xff"
    monkeypatch.setenv(variable, os.fsdecode(value.encode("latin-1")))
    pytester.makepyfile(test_rec=RECORDS)
    first = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cgmem-save-baseline=b.json")
    first.assert_outcomes(passed=1)
    assert first.ret == 0
    document = runfile.load_run(pytester.path / "b.json")
    where, key, text = written
    block = document["machine"] if where == "machine" else document["tests"][0]
    assert block[key] == text
    second = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cgmem-baseline=b.json")
    second.assert_outcomes(passed=1)
    assert second.ret == 0
    second.stdout.fnmatch_lines(["*0 regression(s)*"])


ODD_IDS = """
import pytest

@pytest.mark.parametrize("name", ["clear\\x1b[2J", "${$", "cost $1 or $2", "中文"])
def test_rec(cgmem_record, name):
    cgmem_record("server", peak="1 MiB")
"""


def test_odd_node_ids_are_shown_on_one_line_each_in_the_summary_s_columns(
    pytester: pytest.Pytester,
) -> None:
    """An id a ``pytest_make_parametrize_id`` hook makes is not escaped by pytest: the
    summary writes its control characters out, as ``cgmem`` does, and a wide character
    takes its two columns."""
    pytester.makeconftest(
        """
        def pytest_make_parametrize_id(config, val, argname):
            return val
        """
    )
    pytester.makepyfile(test_ids=ODD_IDS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-summary=4")
    result.assert_outcomes(passed=4)
    assert "\x1b" not in result.stdout.str()
    rows = [line for line in result.stdout.lines if line.startswith("test_ids.py::")]
    assert [row.split("]")[0] for row in rows] == [
        "test_ids.py::test_rec[clear\\x1b[2J",
        "test_ids.py::test_rec[${$",
        "test_ids.py::test_rec[cost $1 or $2",
        "test_ids.py::test_rec[中文",
    ]
    assert {shown_width(row.split("1.00 MiB")[0]) for row in rows} == {60 + 12 - len("1.00 MiB")}


@pytest.mark.skipif(matplotlib is None, reason="needs matplotlib (the report extra)")
def test_cgmem_report_draws_odd_node_ids_as_they_are(pytester: pytest.Pytester) -> None:
    """A ``$`` is no start of math in a chart's label: ``${$`` raised in matplotlib's math
    parser, ``$1 or $2`` was drawn as math."""
    pytester.makepyfile(test_ids=ODD_IDS)
    pytester.runpytest("-p", "no:cacheprovider", "--cgmem-json=r.json").assert_outcomes(passed=4)
    assert main(["report", "r.json", "-o", "r.html"]) == 0
    page = (pytester.path / "r.html").read_text(encoding="utf-8")
    for name in ("clear\\x1b[2J", "${$", "cost $1 or $2"):
        assert f"test_rec[{name}] [server]</text>" in page, name


def test_a_node_id_with_a_tab_is_written_read_and_held_to_its_baseline(
    pytester: pytest.Pytester,
) -> None:
    """A ``pytest_make_parametrize_id`` hook's id is not escaped by pytest: the plugin's
    own files must still load."""
    pytester.makeconftest(
        """
        def pytest_make_parametrize_id(config, val, argname):
            return f"v\\t{val}"
        """
    )
    pytester.makepyfile(
        test_ids="""
        import pytest

        @pytest.mark.parametrize("n", [1, 2])
        def test_rec(cgmem_record, n):
            cgmem_record("server", peak=f"{n} MiB")
        """
    )
    first = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-save-baseline=b.json")
    first.assert_outcomes(passed=2)
    nodeids = [t["nodeid"] for t in runfile.load_run(pytester.path / "b.json")["tests"]]
    assert nodeids == ["test_ids.py::test_rec[v\t1]", "test_ids.py::test_rec[v\t2]"]
    second = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-baseline=b.json")
    second.assert_outcomes(passed=2)
