"""The journal: a run in progress leaves every finished test behind, and readers fold it in."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_cgmem.results import journal, outputs, runfile
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord
from pytest_cgmem.units import CgmemUsageError

MiB = 2**20


def record(nodeid: str, peak: int = MiB) -> dict[str, Any]:
    region = RegionResult("call", (DeviceFigures(0, peak=peak),), 0.0)
    return runfile.record_data(TestRecord(nodeid, "passed", (region,)))


def stub(run: str = "run-1") -> dict[str, Any]:
    doc = runfile.build_run([], runfile.base_machine(), None, complete=False)
    doc["journal"] = {"file": "run.json.journal", "run": run}
    return doc


def test_a_run_that_finishes_leaves_the_whole_file_and_no_journal(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run.json"
    written = journal.Journal.start(path, stub())
    assert runfile.load_run(path)["complete"] is False  # while it runs, it says so
    written.append("test", record("t.py::a"))
    final = runfile.build_run([record("t.py::a")], runfile.base_machine(), None)
    written.finish(final)
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]
    assert runfile.load_run(path) == final


def test_a_journal_starts_in_new_folders_with_its_run_files_permissions(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folders" / "run.json"
    umask = os.umask(0o022)
    try:
        journal.Journal.start(path, stub()).close()
    finally:
        os.umask(umask)
    modes = [stat.S_IMODE(p.stat().st_mode) for p in (path, journal.journal_path(path))]
    assert modes == [0o644, 0o644]


def test_a_new_run_on_a_killed_runs_path_starts_its_journal_afresh(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    killed = journal.Journal.start(path, stub("first"))
    killed.append("test", record("t.py::old"))
    killed.close()
    written = journal.Journal.start(path, stub("second"))
    written.append("test", record("t.py::new"))
    written.close()
    assert [t["nodeid"] for t in runfile.load_run(path)["tests"]] == ["t.py::new"]


def test_a_finished_journal_takes_no_more_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.finish(runfile.build_run([], runfile.base_machine(), None))
    closed = f"the journal {str(journal.journal_path(path))!r} is closed"
    with pytest.raises(OSError, match=f"^{re.escape(closed)}$"):
        written.append("test", record("t.py::a"))
    written.close()


def test_a_closed_journal_cannot_be_finished(tmp_path: Path) -> None:
    """Its lock is gone: another run may own the path now, and its stub stays."""
    path = tmp_path / "run.json"
    killed = journal.Journal.start(path, stub("first"))
    killed.close()
    closed = f"the journal {str(journal.journal_path(path))!r} is closed"
    with pytest.raises(OSError, match=f"^{re.escape(closed)}$"):
        killed.finish(runfile.build_run([], runfile.base_machine(), None))
    assert runfile.load_run(path)["complete"] is False
    assert journal.journal_path(path).exists()


def test_a_finish_leaves_the_journal_and_the_stub_another_run_started_since(
    tmp_path: Path,
) -> None:
    """The first run's journal was removed under it (with its folder, by a workspace's
    clean-up) and a second run started on the path: finishing the first removes neither
    the second's journal nor its file, which the first's complete file replaced."""
    path = tmp_path / "run.json"
    first = journal.Journal.start(path, stub("first"))
    journal.journal_path(path).unlink()
    second = journal.Journal.start(path, stub("second"))
    try:
        with pytest.raises(OSError, match="another run has started on the path since"):
            first.finish(runfile.build_run([], runfile.base_machine(), None))
        header = journal.journal_path(path).read_text().splitlines()[0]
        assert json.loads(path.read_text())["journal"]["run"] == "second"
    finally:
        second.close()
    assert json.loads(header)["run"] == "second"
    assert journal.busy(path) is None  # the first let go of its lock too


@pytest.mark.parametrize("removed", ["journal", "folder"])
def test_a_run_whose_journal_went_but_no_other_run_came_writes_its_file(
    tmp_path: Path, removed: str
) -> None:
    """The journal removed alone (the stub still this run's), or with its folder (by a
    clean-up, no run started since): the run's whole file is written, as if nothing went."""
    path = tmp_path / "out" / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a"))
    if removed == "journal":
        journal.journal_path(path).unlink()
    else:
        shutil.rmtree(path.parent)
    final = runfile.build_run([record("t.py::a")], runfile.base_machine(), None)
    written.finish(final)
    assert runfile.load_run(path) == final
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]


def test_a_run_whose_journal_went_leaves_a_file_another_run_finished_since(
    tmp_path: Path,
) -> None:
    """No live run holds the path any more, but the file there is another run's."""
    path = tmp_path / "run.json"
    first = journal.Journal.start(path, stub("first"))
    journal.journal_path(path).unlink()
    other = runfile.build_run([record("t.py::b")], runfile.base_machine(), None)
    journal.Journal.start(path, stub("second")).finish(other)
    with pytest.raises(OSError, match="another run has started on the path since"):
        first.finish(runfile.build_run([record("t.py::a")], runfile.base_machine(), None))
    assert runfile.load_run(path) == other


def test_a_line_the_disk_cut_short_is_cut_back_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk takes half a line, then space comes back: the next line starts a line
    of its own, and a killed run's file keeps every test written whole."""
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a"))
    write = os.write

    def disk_full_halfway(fd: int, data: bytes) -> int:
        if len(data) > 10:
            return write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.os, "write", disk_full_halfway)
    with pytest.raises(OSError, match="No space left"):
        written.append("test", record("t.py::b"))
    monkeypatch.setattr(journal.os, "write", write)
    written.append("test", record("t.py::c"))
    written.close()
    doc = runfile.load_run(path)
    assert [t["nodeid"] for t in doc["tests"]] == ["t.py::a", "t.py::c"]


def test_a_run_file_that_cannot_be_written_leaves_the_stub_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a"))
    final = runfile.build_run([record("t.py::a")], runfile.base_machine(), None)
    stub_write = journal.write_json

    def full_for_a_whole_file(target: Path, data: Any) -> None:
        if data.get("complete"):
            raise OSError(28, "No space left on device")
        stub_write(target, data)

    monkeypatch.setattr(journal, "write_json", full_for_a_whole_file)
    with pytest.raises(OSError, match="No space left"):
        written.finish(final)
    written.close()
    doc = runfile.load_run(path)
    assert doc["complete"] is False and [t["nodeid"] for t in doc["tests"]] == ["t.py::a"]
    assert doc["incomplete_reason"] == (
        "the run file could not be written: [Errno 28] No space left on device"
    )


def test_a_start_that_cannot_write_the_stub_raises_and_releases_the_journal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.json"
    path.mkdir()
    with pytest.raises(IsADirectoryError):
        journal.Journal.start(path, stub())
    assert journal.busy(path) is None
    assert not journal.journal_path(path).exists()  # it left the journal empty


def test_a_start_whose_journal_cannot_start_leaves_a_stub_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk after the stub: it says the run stopped, and names no journal."""
    path = tmp_path / "run.json"

    def no_space(self: journal.Journal, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.Journal, "_write_line", no_space)
    with pytest.raises(OSError, match="No space"):
        journal.Journal.start(path, stub())
    assert journal.busy(path) is None
    assert not journal.journal_path(path).exists()
    doc = runfile.load_run(path)
    assert doc["complete"] is False and "journal" not in doc
    assert doc["incomplete_reason"] == (
        "the run stopped before its first test: its journal could not start: "
        "[Errno 28] No space left on device"
    )


def test_a_start_that_cannot_even_say_why_leaves_no_stub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.json"

    def no_space(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.Journal, "_write_line", no_space)
    monkeypatch.setattr(journal, "overwrite_json", no_space)
    with pytest.raises(OSError, match="No space"):
        journal.Journal.start(path, stub())
    assert os.listdir(tmp_path) == []


def test_a_killed_run_leaves_its_finished_tests(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"an old": "complete file"}')
    written = journal.Journal.start(path, stub())
    machine = {**runfile.base_machine(), "gpus": ["NVIDIA H200"], "alloc_conf": ""}
    written.append("machine", machine)
    written.append("test", record("t.py::b", 2 * MiB))
    written.append("test", record("t.py::a"))
    written.append("test", record("t.py::b", 3 * MiB))  # a rerun replaces the first attempt
    lost = {"worker": "gw1", "when": "w", "test": None, "error": "crashed"}
    written.append("worker_lost", lost)
    written.append("worker_lost", {**lost, "test": "t.py::c"})  # the same loss, its test known
    written.close()  # as a killed process's descriptors are
    doc = runfile.load_run(path)
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == runfile.NOT_FINISHED
    assert [t["nodeid"] for t in doc["tests"]] == ["t.py::a", "t.py::b"]
    assert doc["tests"][1]["regions"][0]["devices"][0]["peak"] == 3 * MiB
    assert doc["machine"]["gpus"] == ["NVIDIA H200"]
    assert doc["workers_lost"] == [{**lost, "test": "t.py::c"}]
    assert "journal" not in doc and doc["summary"]["tests"] == 2
    runfile.validate(doc)


def test_a_stub_keeps_its_reason_and_its_earlier_tests_as_a_refresh_would(
    tmp_path: Path,
) -> None:
    """A baseline refreshed by a run that was killed: the stub's own tests (the earlier
    baseline's) are kept where the journal has no passed test in their place."""
    path = tmp_path / "run.json"
    first = stub()
    first["incomplete_reason"] = "stopped early: stopping after 1 failures"
    failed = {**record("t.py::b", 5 * MiB), "outcome": "failed"}
    first["tests"] = [record("t.py::a", 7 * MiB), record("t.py::b"), record("t.py::z")]
    written = journal.Journal.start(path, first)
    written.append("test", record("t.py::a", 2 * MiB))
    written.append("test", failed)
    written.close()
    doc = runfile.load_run(path)
    assert doc["incomplete_reason"] == "stopped early: stopping after 1 failures"
    peaks = {t["nodeid"]: t["regions"][0]["devices"][0]["peak"] for t in doc["tests"]}
    assert peaks == {"t.py::a": 2 * MiB, "t.py::b": MiB, "t.py::z": MiB}
    assert doc["summary"]["tests"] == 3


def test_a_killed_run_keeps_its_stubs_time_commit_settings_and_lost_workers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.json"
    first = stub()
    lost = {"worker": "gw0", "when": "w0", "test": None, "error": "crashed"}
    first.update(
        created="2026-01-02T00:00:00.000+00:00",
        commit={"sha": "a" * 40, "dirty": True},
        settings={"tolerance": 0.05, "xdist": True},
        workers_lost=[lost],
    )
    written = journal.Journal.start(path, first)
    written.append("test", record("t.py::a"))
    written.append("worker_lost", {**lost, "worker": "gw1"})
    written.close()
    doc = runfile.load_run(path)
    assert [doc[key] for key in ("created", "commit", "settings")] == [
        first["created"],
        first["commit"],
        first["settings"],
    ]
    assert doc["workers_lost"] == [lost, {**lost, "worker": "gw1"}]


def test_a_machine_line_the_schema_rejects_is_an_error_naming_the_run_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("machine", {**runfile.base_machine(), "gpus": 5})
    written.close()
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert str(info.value) == (
        f"cgmem: run file {str(path)!r} (with the tests of its journal) does not match the "
        "run-file schema at $.machine.gpus: expected array or null, got integer 5"
    )


def test_a_rerun_line_withdraws_the_attempt_before_it(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a", 9 * MiB))
    written.append("test", record("t.py::b"))
    written.append("rerun", "t.py::a")  # run again: the next attempt recorded nothing
    written.close()
    assert [t["nodeid"] for t in runfile.load_run(path)["tests"]] == ["t.py::b"]
    with open(journal.journal_path(path), "a") as handle:
        handle.write('{"rerun": 7}\n')
    with pytest.raises(CgmemUsageError, match=r"line 5: a rerun without a nodeid$"):
        runfile.load_run(path)


def test_a_journal_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    with open(journal.journal_path(path), "ab") as handle:
        handle.write(b'{"rerun": "\xfe"}\n')
    with pytest.raises(CgmemUsageError, match=r"is not UTF-8 text \(byte 0xfe at offset \d+\)$"):
        runfile.load_run(path)


def test_a_line_cut_off_by_the_kill_is_noted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a"))
    written.close()
    with open(journal.journal_path(path), "a") as handle:
        handle.write('{"test": {"nodeid": "t.py::b", "outc')
    doc = runfile.load_run(path)
    assert [t["nodeid"] for t in doc["tests"]] == ["t.py::a"]
    assert doc["incomplete_reason"].endswith(
        "; the last line of its journal was cut off (36 bytes)"
    )


def test_a_cut_off_line_is_counted_in_bytes_not_characters(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    with open(journal.journal_path(path), "a", encoding="utf-8") as handle:
        handle.write('{"test": {"nodeid": "t.py::\u00e9t\u00e9')
    doc = runfile.load_run(path)
    assert doc["incomplete_reason"].endswith("was cut off (32 bytes)")


def test_a_bad_line_in_the_middle_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    with open(journal.journal_path(path), "a") as handle:
        handle.write('{"test": 1, "machine": 2}\n')
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path, "baseline")
    assert str(info.value) == (
        f"cgmem: baseline {str(path)!r}: its journal 'run.json.journal' line 2: expected one "
        "of 'test', 'machine', 'rerun', 'worker_lost' as its only key"
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"worker_lost": 5}', "line 2: expected an object"),
        ('{"machine": [1]}', "line 2: expected an object"),
        ('{"test": ', "line 2: Expecting value: line 1 column 10 (char 9)"),
    ],
)
def test_a_line_of_the_wrong_kind_in_the_middle_is_an_error_naming_it(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    with open(journal.journal_path(path), "a") as handle:
        handle.write(line + "\n" + json.dumps({"rerun": "t.py::a"}) + "\n")
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path, "baseline")
    assert str(info.value) == (
        f"cgmem: baseline {str(path)!r}: its journal 'run.json.journal' {problem}"
    )


@pytest.mark.parametrize(
    "header",
    [
        '{"journal": "pytest-cgmem/0", "run": "run-1"}\n',
        '["pytest-cgmem/1"]\n',
        '{"journal": "pytest-cgmem/1", "ru',  # cut off: the journal's only line
    ],
)
def test_a_journal_without_its_header_line_is_an_error(tmp_path: Path, header: str) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    journal.journal_path(path).write_text(header)
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert str(info.value).endswith(
        ": its journal 'run.json.journal' has no pytest-cgmem header line"
    )


def test_a_journal_that_cannot_be_opened_is_an_error_naming_why(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    name = "j" * 300  # longer than a file name may be
    runfile.write_json(path, {**stub(), "journal": {"file": name, "run": "run-1"}})
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert re.search(rf": cannot read its journal {name!r} \(.+\)$", str(info.value))


def test_a_journal_read_without_a_record_check_takes_its_tests(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a"))
    written.close()
    found = journal.read(path, stub()["journal"])
    assert [t["nodeid"] for t in found.tests] == ["t.py::a"] and found.notes == []


@pytest.mark.parametrize(
    "lost",
    [
        {"worker": ["gw0"], "when": "2026-12-04T00:00:00Z"},
        {"worker": "gw0", "when": {"at": 1}},
        {"when": "2026-12-04T00:00:00Z"},
    ],
)
def test_a_lost_worker_line_without_string_id_and_time_is_an_error_naming_it(
    tmp_path: Path, lost: dict[str, Any]
) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    with open(journal.journal_path(path), "a") as handle:
        handle.write(json.dumps({"worker_lost": lost}) + "\n")
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path, "baseline")
    assert str(info.value) == (
        f"cgmem: baseline {str(path)!r}: its journal 'run.json.journal' line 2: a lost worker "
        "without its id and time as strings"
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            {"outcome": "won"},
            'line 2: $.test.outcome: expected one of "passed", "failed", "skipped", "xfailed", '
            '"xpassed", got string "won"',
        ),
        ({"regions": None}, "line 2: $.test.regions: expected array, got null"),
        ({"regions": 5}, "line 2: $.test.regions: expected array, got integer 5"),
        ({"violations": 5}, "line 2: $.test.violations: expected array, got integer 5"),
        ({"budget": {"peak": -1}}, "line 2: $.test.budget.peak: expected a number >= 0, got"),
        ({"budget": {"peak": 10**30}}, "line 2 has a number out of range at $.test.budget.peak"),
    ],
)
def test_a_record_the_schema_rejects_is_an_error_naming_its_line(
    tmp_path: Path, line: dict[str, Any], problem: str
) -> None:
    """Each test line is checked before the journal is folded in: the summary counts its
    regions and violations, which a bad line has not."""
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", {**record("t.py::a"), **line})
    written.close()
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert str(info.value).startswith(
        f"cgmem: run file {str(path)!r}: its journal 'run.json.journal' {problem}"
    )


def test_a_test_line_without_its_keys_is_an_error_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    with open(journal.journal_path(path), "a") as handle:
        handle.write('{"test":{"nodeid":"t"}}\n')
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert str(info.value).endswith("line 2: $.test: 'outcome' is missing")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"test":' + "[" * 5000 + "]" * 5000 + "}", "line 2 is nested too deep: more than 100"),
        ('{"test":{"nodeid":"t","x":' + "9" * 5001 + "}}", "line 2 has a number out of range "),
        ('{"test":{"nodeid":"t","x":NaN}}', "line 2 has a number that is not finite at $.test.x"),
        ('{"test": "t.py::a"}', "line 2: a test that is not an object: 't.py::a'"),
        ('{"test": [1]}', "line 2: a test that is not an object: [1]"),
        ('{"test": {"nodeid": 1}}', "line 2: a test whose nodeid is not a string"),
        ('{"test": {}}', "line 2: a test whose nodeid is not a string"),
    ],
)
def test_a_line_no_result_file_may_hold_is_an_error_naming_it(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    with open(journal.journal_path(path), "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert f"its journal 'run.json.journal' {problem}" in str(info.value)


@pytest.mark.parametrize("name", [".", "..", "a/b", "a\\b", "a\u0000b"])
def test_a_stub_whose_journal_is_not_a_plain_name_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    doc = json.loads(path.read_text())
    doc["journal"]["file"] = name
    path.write_text(json.dumps(doc))
    with pytest.raises(CgmemUsageError) as info:
        runfile.load_run(path)
    assert "does not match the run-file schema at $.journal.file: expected a plain file name" in (
        str(info.value)
    )


def test_a_journal_name_a_path_cannot_take_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(journal.JournalError, match=r"cannot read its journal '\.': "):
        journal.read(tmp_path / "run.json", {"file": ".", "run": "r"})


def test_missing_or_foreign_journal(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub("mine")).close()
    other = journal.journal_path(path)
    text = other.read_text().replace('"run":"mine"', '"run":"another"')
    other.write_text(text)
    doc = runfile.load_run(path)
    assert doc["tests"] == []
    assert "its journal 'run.json.journal' belongs to another run" in doc["incomplete_reason"]
    other.unlink()
    assert (
        "its journal 'run.json.journal' is missing" in runfile.load_run(path)["incomplete_reason"]
    )


def test_a_spaced_journal_is_ours_to_its_reader_and_to_the_output_check(tmp_path: Path) -> None:
    """JSON written with spaces after the colons (by hand, or by another tool) is still a
    journal: the reader folds its tests in, and a new run may replace it."""
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a"))
    written.close()
    spaced = journal.journal_path(path)
    lines = spaced.read_text().splitlines()
    spaced.write_text("".join(json.dumps(json.loads(line)) + "\n" for line in lines))
    assert spaced.read_text().startswith('{"journal": "pytest-cgmem/1", ')
    assert [t["nodeid"] for t in runfile.load_run(path)["tests"]] == ["t.py::a"]
    assert outputs.existing_problem(spaced, "journal") is None


def test_a_line_given_as_text_is_the_line_of_its_data(tmp_path: Path) -> None:
    """The session hands a measured test's record over already written (``record_text``):
    the journal holds the same line as for the data."""
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    record = TestRecord("t.py::a", "passed", ())
    text = runfile.record_text(record)
    assert text is not None
    written.append("test", runfile.plain_record(record))
    written.append_json("test", text)
    written.close()
    first, second = journal.journal_path(path).read_text().splitlines()[1:]
    assert first == second == '{"test":' + text + "}"
    assert [t["nodeid"] for t in runfile.load_run(path)["tests"]] == ["t.py::a"]


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_killed_run_read_through_a_link_in_another_folder_keeps_its_tests(
    tmp_path: Path,
) -> None:
    """The run wrote its stub and journal where the link it was given points; a reader given
    the link finds the journal there too."""
    real = tmp_path / "results" / "run.json"
    real.parent.mkdir()
    link = tmp_path / "elsewhere" / "run.json"
    link.parent.mkdir()
    link.symlink_to(Path("..", "results", "run.json"))
    written = journal.Journal.start(os.path.realpath(link), stub())
    written.append("test", record("t.py::a"))
    written.close()
    assert not journal.journal_path(link).exists()
    doc = runfile.load_run(link)
    assert [t["nodeid"] for t in doc["tests"]] == ["t.py::a"]
    assert doc["incomplete_reason"] == runfile.NOT_FINISHED


def test_a_second_run_on_one_path_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    journal.Journal.start(path, stub()).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(journal.journal_path(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        said = journal.busy(path)
        assert said is not None and said.startswith(f"another pytest run (pid {os.getpid()} on ")
        with pytest.raises(journal.JournalBusy, match="give each concurrent run its own path"):
            journal.Journal.start(path, stub("second"))
        doc = runfile.load_run(path)  # the first run's stub is untouched, and known to be live
        assert "still holds its journal: the run is still going" in doc["incomplete_reason"]
    finally:
        holder.kill()
        holder.wait()
    assert journal.busy(path) is None  # the lock went with the process
    journal.Journal.start(path, stub("third")).close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc/self/fd")
def test_a_second_start_in_this_process_names_the_holder_and_leaves_no_file_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.json"
    first = journal.Journal.start(path, stub())
    try:
        before = sorted(os.listdir("/proc/self/fd"))
        with pytest.raises(journal.JournalBusy) as info:
            journal.Journal.start(path, stub("second"))
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        first.close()
    said = re.fullmatch(
        r"another pytest run \(pid (\d+) on (.+), started (.+)\) is writing this run file; "
        r"give each concurrent run its own path",
        str(info.value),
    )
    assert said is not None
    assert [said[1], said[2]] == [str(os.getpid()), socket.gethostname()]
    assert datetime.fromisoformat(said[3]).utcoffset() is not None


def test_a_held_journal_without_a_header_names_another_run(tmp_path: Path) -> None:
    """A live run that has not written its header line yet (or another tool holding the
    file) is still a run going on."""
    path = tmp_path / "run.json"
    fd = os.open(journal.journal_path(path), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert journal.busy(path) == "another pytest run"
        with pytest.raises(journal.JournalBusy) as info:
            journal.Journal.start(path, stub())
    finally:
        os.close(fd)
    assert str(info.value) == (
        "another pytest run is writing this run file; give each concurrent run its own path"
    )


def test_the_lock_is_exclusive_in_this_process_too(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    first = journal.Journal.start(path, stub())
    try:
        fd = os.open(journal.journal_path(path), os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        first.close()


def test_journal_lines_are_one_json_object_each(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    written.append("test", record("t.py::a"))
    with pytest.raises(ValueError):
        written.append("test", {"nodeid": "t.py::n", "x": float("nan")})
    with pytest.raises(ValueError, match="unknown journal line"):
        written.append("other", {})
    written.close()
    lines = journal.journal_path(path).read_text().splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == ["journal", "test"]


def test_a_line_of_an_unknown_kind_given_as_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    written = journal.Journal.start(path, stub())
    with pytest.raises(ValueError, match=r"^unknown journal line 'other'$"):
        written.append_json("other", "{}")
    written.close()
    assert len(journal.journal_path(path).read_text().splitlines()) == 1
