"""The ``cgmem`` command: compare, merge, report; and the report's screenshot in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch  # noqa: F401  imported once here: pytester's inline runs would re-import it each time

import pytest_cgmem
from pytest_cgmem.cli import main
from pytest_cgmem.results import runfile
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

try:  # imported before any inline run, which would unload it (numpy loads once per process)
    import matplotlib.pyplot
except ImportError:  # pragma: no cover
    matplotlib = None

needs_matplotlib = pytest.mark.skipif(
    matplotlib is None, reason="needs matplotlib (the report extra)"
)

MiB = 2**20
ROOT = Path(pytest_cgmem.__file__).parents[1]

SUITE = """
import os

def test_load(cgmem_record):
    cgmem_record("load", peak=os.environ.get("PEAK", "100 MiB"), reserved="120 MiB")

def test_decode(cgmem_record):
    cgmem_record("decode", peak="1 GiB", device="1100 MiB")

def test_extra(cgmem_record):
    cgmem_record("extra", peak=os.environ.get("EXTRA", "10 MiB"))
"""


@pytest.fixture
def runs(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """base.json, then new.json with one figure grown and one shrunk."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--cgmem-json=base.json", "--cgmem-budget=peak=2GiB").assert_outcomes(
        passed=3
    )
    monkeypatch.setenv("PEAK", "150 MiB")
    monkeypatch.setenv("EXTRA", "1 MiB")
    pytester.runpytest("--cgmem-json=new.json", "--cgmem-budget=peak=2GiB").assert_outcomes(
        passed=3
    )
    return pytester.path


def test_compare_exits_1_on_a_regression(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs / "base.json"), str(runs / "new.json")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("(tolerance 5% or 2.00 MiB)")
    assert out[1].split() == ["test", "metric", "baseline", "new", "change", "verdict"]
    assert re.match(
        r"test_suite.py::test_load \[load\]\s+peak\s+100.00 MiB\s+150.00 MiB\s+"
        r"\+50.00 MiB, \+50.0%\s+REGRESSION",
        out[2],
    )
    assert "improvement" in out[3] and "test_extra" in out[3]
    assert out[-1] == ("5 figure(s) compared: 1 regression(s), 1 improvement(s), 0 new, 0 missing")


def test_compare_tolerance_and_all(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", str(runs / "base.json"), str(runs / "new.json"), "--tolerance", "60%"]
    assert main([*args, "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count(" same") == 4  # the others held; the 9 MiB drop is still an improvement
    assert main(["compare", str(runs / "base.json"), str(runs / "base.json")]) == 0


def test_compare_new_and_missing(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((runs / "base.json").read_text())
    doc["tests"] = [t for t in doc["tests"] if "decode" not in t["nodeid"]]
    (runs / "part.json").write_text(json.dumps(doc))
    assert main(["compare", str(runs / "part.json"), str(runs / "base.json")]) == 0
    out = capsys.readouterr().out
    assert "new: test_suite.py::test_decode [decode]" in out
    assert main(["compare", str(runs / "base.json"), str(runs / "part.json")]) == 0
    assert "missing from" in capsys.readouterr().out  # listed, not a failure (a -k run)


def test_compare_writes_out_control_characters_in_node_ids(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run file's node id with a newline or an escape sequence (pytest keeps them under
    disable_test_id_escaping_and_forfeit_all_rights_to_community_support) prints as one line."""
    for name in ("base.json", "new.json"):
        doc = json.loads((runs / name).read_text())
        for test in doc["tests"]:
            test["nodeid"] = test["nodeid"].replace("test_load", "test_load[a\nb\x1b[31m]")
        (runs / name).write_text(json.dumps(doc))
    (runs / "part.json").write_text(
        json.dumps({**doc, "tests": [t for t in doc["tests"] if "test_load" not in t["nodeid"]]})
    )
    assert main(["compare", str(runs / "base.json"), str(runs / "new.json")]) == 1
    assert main(["compare", str(runs / "part.json"), str(runs / "new.json")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    regression = r"test_suite.py::test_load[a\nb\x1b[31m] [load]"
    assert any(line.startswith(regression) and "REGRESSION" in line for line in out.splitlines())
    assert f"new: {regression}" in out.splitlines()


def write_run(path: Path, peaks: dict[str, int], graphs: int | None = None, **run: Any) -> str:
    """A run file of one region per test, each with its ``peaks`` figure (and ``graphs``)."""
    records = [
        TestRecord(
            nodeid,
            "passed",
            (RegionResult("load", (DeviceFigures(0, peak=peak, graphs=graphs),), 0.0),),
        )
        for nodeid, peak in peaks.items()
    ]
    runfile.write_json(path, runfile.build_run(records, runfile.base_machine(), None, **run))
    return str(path)


def test_compare_lists_regressions_improvements_then_same_each_by_test_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By name also where NEW lists its tests in another order (a file another tool wrote)."""
    names = ["t.py::test_z", "t.py::test_y", "t.py::test_0", "t.py::test_b", "t.py::test_a"]
    base = write_run(tmp_path / "base.json", dict.fromkeys(names, 100 * MiB), graphs=0)
    grown = [200 * MiB, 10 * MiB, 100 * MiB, 10 * MiB, 200 * MiB]
    new = write_run(tmp_path / "new.json", dict(zip(names, grown, strict=True)), graphs=0)
    doc = json.loads(Path(new).read_text())
    doc["tests"].reverse()
    Path(new).write_text(json.dumps(doc))
    assert main(["compare", base, new, "--all"]) == 1
    rows = [(line.split()[0], line.split()[-1]) for line in capsys.readouterr().out.splitlines()]
    assert rows[2:6] == [
        ("t.py::test_a", "REGRESSION"),
        ("t.py::test_z", "REGRESSION"),
        ("t.py::test_b", "improvement"),
        ("t.py::test_y", "improvement"),
    ]
    same = rows[6:-1]
    assert {verdict for _, verdict in same} == {"same"} and len(same) == 6  # graphs, peak
    assert [name for name, _ in same] == sorted(name for name, _ in same)


def test_compare_of_two_incomplete_files_names_both_in_its_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    peaks = {"t.py::test_a": MiB}
    write_run(tmp_path / "a.json", peaks, complete=False, incomplete_reason="killed")
    write_run(tmp_path / "b.json", peaks, complete=False, incomplete_reason="worker gw1 crashed")
    assert main(["compare", "a.json", "b.json"]) == 3
    out, err = capsys.readouterr()
    assert out.splitlines()[-3:-1] == [
        "incomplete run: a.json: killed",
        "incomplete run: b.json: worker gw1 crashed",
    ]
    assert err == (
        "cgmem compare: a.json and b.json: from an incomplete run, so figures may be missing; "
        "pass --allow-incomplete to accept it\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "nope.json", "base.json"], "cgmem: baseline 'nope.json' does not exist"),
        (["compare", "base.json", "empty.json"], "cgmem: run file 'empty.json' is empty"),
        (["compare", "base.json", "base.json", "--tolerance", "5"], "cgmem: --tolerance"),
        (
            ["merge", "base.json", "corrupt.json", "-o", "m.json"],
            "cgmem: run file 'corrupt.json' is not valid JSON",
        ),
        (
            ["report", "old.json", "-o", "r.html"],
            "cgmem: run file 'old.json' has schema 'pytest-cgmem/0'",
        ),
    ],
)
def test_bad_files_are_one_line_and_exit_2(
    runs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(runs)
    (runs / "empty.json").write_text("")
    (runs / "corrupt.json").write_text('{"schema": ')
    (runs / "old.json").write_text('{"schema": "pytest-cgmem/0"}')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_console_script_module(runs: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_cgmem.cli", "compare", "base.json", "new.json"],
        cwd=runs,
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PATH": "/usr/bin:/bin",
            **{  # where ./dev keeps bytecode (out of the checkout), or none written at all
                name: os.environ[name]
                for name in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")
                if name in os.environ
            },
        },
    )
    assert done.returncode == 1, done.stderr
    assert "REGRESSION" in done.stdout


OUTPUT_OPTION = (
    "-o, --output OUTPUT" if sys.version_info >= (3, 13) else "-o OUTPUT, --output OUTPUT"
)
"""``-o/--output`` as argparse lists it in a help text: from Python 3.13 on it names the
metavar once."""


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (
            [],
            [
                "usage: cgmem [-h] [--version] COMMAND ...",
                "Compare, merge and report pytest-cgmem run files.",
                "compare compare a run with a baseline; exit 1 on a regression",
                "merge join run files of CI shards into one",
                "report write one self-contained HTML page with charts",
            ],
        ),
        (
            ["compare"],
            [
                "usage: cgmem compare [-h] [--tolerance TOLERANCE] "
                "[--tolerance-abs TOLERANCE_ABS] [--all] [--allow-incomplete] BASE NEW",
                "Every figure of NEW against BASE.",
                "BASE baseline run file",
                "NEW new run file",
                "--tolerance TOLERANCE relative tolerance (default 5%)",
                "--tolerance-abs TOLERANCE_ABS absolute tolerance (default 2.00 MiB)",
                "--all list every figure",
                "--allow-incomplete compare a file from a run that did not finish",
            ],
        ),
        (
            ["merge"],
            [
                "usage: cgmem merge [-h] -o OUTPUT [--allow-mixed-machines] FILE [FILE ...]",
                "Join run files (shards of one suite) into one;",
                "FILE run files",
                f"{OUTPUT_OPTION} merged run file to write",
                "--allow-mixed-machines merge files from different GPUs",
            ],
        ),
        (
            ["report"],
            [
                "usage: cgmem report [-h] -o OUTPUT [--title TITLE] RUN [RUN ...]",
                "One HTML page (no network needed)",
                "RUN run files (any order)",
                f"{OUTPUT_OPTION} HTML file to write",
                "--title TITLE page title",
            ],
        ),
    ],
    ids=["cgmem", "compare", "merge", "report"],
)
def test_each_command_s_help_shows_its_usage_and_what_each_argument_is(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    said: list[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for part in said:
        assert part in text, part


def test_merge_shards(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--cgmem-json=full.json").assert_outcomes(passed=3)
    pytester.runpytest("--cgmem-json=s1.json", "-k", "load").assert_outcomes(passed=1)
    pytester.runpytest("--cgmem-json=s2.json", "-k", "not load").assert_outcomes(passed=2)
    out = pytester.path / "merged.json"
    assert (
        main(
            [
                "merge",
                str(pytester.path / "s1.json"),
                str(pytester.path / "s2.json"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "cgmem merge: 3 test(s) from 2 file(s)" in capsys.readouterr().out
    merged = json.loads(out.read_text())
    runfile.validate(merged)
    full = json.loads((pytester.path / "full.json").read_text())
    assert runfile.figures(merged) == runfile.figures(full)
    assert merged["summary"] == full["summary"]
    # the same shard twice would double tests: refused
    assert (
        main(
            [
                "merge",
                str(pytester.path / "s1.json"),
                str(pytester.path / "s1.json"),
                "-o",
                str(out),
            ]
        )
        == 2
    )
    shard = str(pytester.path / "s1.json")
    assert capsys.readouterr().err == (
        f"cgmem merge: {shard!r} and {shard!r} are the same file; give each run once\n"
    )
    assert main(["report", shard, "./" + "s1.json", "-o", str(pytester.path / "r.html")]) == 2
    assert "'./s1.json' and " in capsys.readouterr().err  # a report beside itself


def test_merge_mixed_machines(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--cgmem-json=s1.json", "-k", "load")
    pytester.runpytest("--cgmem-json=s2.json", "-k", "not load")
    other = json.loads((pytester.path / "s2.json").read_text())
    other["machine"]["gpus"] = [*(other["machine"]["gpus"] or []), "NVIDIA H100 80GB HBM3"]
    (pytester.path / "s2.json").write_text(json.dumps(other))
    files = [str(pytester.path / "s1.json"), str(pytester.path / "s2.json")]
    assert main(["merge", *files, "-o", str(pytester.path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "comes from a different machine" in err and "--allow-mixed-machines" in err
    assert not (pytester.path / "m.json").exists()
    assert (
        main(["merge", *files, "-o", str(pytester.path / "m.json"), "--allow-mixed-machines"]) == 0
    )
    assert "warning:" in capsys.readouterr().err
    assert len(json.loads((pytester.path / "m.json").read_text())["tests"]) == 3


def report(runs: Path, *names: str) -> str:
    out = runs / "report.html"
    assert (
        main(["report", *(str(runs / n) for n in names), "-o", str(out), "--title", "Nightly"]) == 0
    )
    return out.read_text()


@needs_matplotlib
def test_report_is_one_self_contained_page(runs: Path) -> None:
    page = report(runs, "new.json", "base.json")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>Nightly</title>" in page
    assert page.count("<svg") >= 4  # budget use, figures, history of peak and reserved
    assert "Budget use" in page and "peak across runs" in page and "reserved across runs" in page
    # nothing to fetch: no scripts, stylesheets, images or fonts from anywhere
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)", page)
    # the only addresses are XML namespace names, which no browser fetches
    external = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert external <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    # the newest run is detailed, with changes against the one before
    assert "test_suite.py::test_load [load]" in page and "+50.00 MiB" in page


@needs_matplotlib
def test_report_of_one_run(runs: Path) -> None:
    page = report(runs, "base.json")
    assert "Give more run files" in page and page.count("<svg") == 2


def test_report_without_matplotlib(
    runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["report", str(runs / "base.json"), "-o", str(runs / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err == "cgmem report needs matplotlib: pip install 'pytest-cgmem[report]'\n"
    assert not (runs / "r.html").exists()


@needs_matplotlib
def test_report_where_matplotlib_cannot_be_imported(runs: Path) -> None:
    """matplotlib refuses to import under a backend it lacks (``MPLBACKEND``): one line, exit
    2, not an internal error (a fresh process: this one has imported matplotlib)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest_cgmem.cli", "report", "base.json", "-o", "r.html"],
        capture_output=True,
        text=True,
        cwd=runs,
        env={**os.environ, "MPLBACKEND": "no-such-backend"},
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "cgmem report cannot import matplotlib (Key backend: 'no-such-backend' is not a valid "
        "value for backend); check MPLBACKEND and matplotlibrc\n"
    )
    assert not (runs / "r.html").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package")
@needs_matplotlib
def test_report_screenshot_in_headless_chromium(runs: Path) -> None:
    report(runs, "base.json", "new.json")
    shot = runs / "report.png"
    done = subprocess.run(
        [
            str(ROOT / "scripts" / "screenshot-report"),
            str(runs / "report.html"),
            str(shot),
            "1280x1600",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1600)
    assert len(data) > 50_000  # charts drew something, not a blank page
