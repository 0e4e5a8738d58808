"""A torchrun rank without torchrun: the job read from the environment, the rank files, and
rank 0's one run file for every rank (pure; the clock and the wait are the test's)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_cgmem import DeviceFigures, RegionResult, Violation
from pytest_cgmem.checks.budgets import parse_budget
from pytest_cgmem.results import runfile, torchrun
from pytest_cgmem.results.baseline import Findings
from pytest_cgmem.results.records import TestRecord
from pytest_cgmem.results.torchrun import (
    Job,
    gather,
    gather_timeout,
    merge_records,
    rank_file,
    release,
)

MiB = 2**20

ENV = {
    "RANK": "0",
    "WORLD_SIZE": "4",
    "LOCAL_RANK": "0",
    "LOCAL_WORLD_SIZE": "2",
    "TORCHELASTIC_RUN_ID": "abc",
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29500",
    "TORCHELASTIC_RESTART_COUNT": "0",
}
"""Rank 0 of a job of two nodes with two ranks each."""


class Ticks:
    """A clock that moves one second each time a rank sleeps; ``on_sleep`` runs first. A
    rank that looks at it or sleeps a thousand times waits for ever."""

    def __init__(self, on_sleep: Callable[[int], object] | None = None) -> None:
        self.sleeps: list[float] = []
        self.calls = 0
        self.on_sleep = on_sleep

    def _called(self) -> None:
        self.calls += 1
        if self.calls > 1000:
            raise AssertionError("waited for ever")

    def clock(self) -> float:
        self._called()
        return float(len(self.sleeps))

    def sleep(self, seconds: float) -> None:
        self._called()
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))
        self.sleeps.append(seconds)


def waits(ticks: Ticks) -> dict[str, Any]:
    return {"clock": ticks.clock, "sleep": ticks.sleep}


def record(
    rank: int,
    nodeid: str = "test_x.py::test_a",
    outcome: str = "passed",
    peak: int = MiB,
    baseline: dict[str, Any] | None = None,
) -> TestRecord:
    budget = parse_budget({"peak": 100 * MiB})
    kv = RegionResult(
        "kv", (DeviceFigures(rank, peak=peak),), 0.0, None, {"rank": rank, "recorded": ["peak"]}
    )
    call = RegionResult("call", (DeviceFigures(rank, peak=MiB),), 0.0, None, {"rank": rank})
    return TestRecord(
        nodeid,
        outcome,
        (call, kv),
        budget=budget.limits,
        checked=("call", "kv"),
        violations=tuple(kv.check(budget)),
        baseline=baseline,
    )


def document_of(records: list[TestRecord], **kwargs: Any) -> dict[str, Any]:
    return runfile.build_run(records, runfile.base_machine(), None, **kwargs)


def hand_over(path: str, rank: int, records: list[TestRecord], identity: str = "job") -> None:
    """What rank ``rank`` of the job leaves for rank 0 (its waiting left out)."""
    document = {**document_of(records), "job": identity, "rank": rank}
    runfile.write_json(rank_file(path, rank), document)


def labels(document: dict[str, Any]) -> list[list[str]]:
    return [[r["label"] for r in t["regions"]] for t in document["tests"]]


# -- the job ----------------------------------------------------------------------------------


def test_rank_0_on_local_rank_0_is_a_job() -> None:
    job = Job.from_env(ENV)
    assert job is not None
    assert (job.rank, job.world_size, job.local_rank) == (0, 4, 0)


@pytest.mark.parametrize(
    "changed",
    [
        {"RANK": "-1"},
        {"RANK": "4"},
        {"LOCAL_RANK": "-1"},
        {"WORLD_SIZE": "0"},
        {"WORLD_SIZE": "two"},
        {"LOCAL_RANK": "0.5"},
        {"WORLD_SIZE": None},
        {"RANK": None},
    ],
)
def test_an_unreadable_torchrun_environment_is_no_job(changed: dict[str, str | None]) -> None:
    environ = {**ENV, **changed}
    assert Job.from_env({k: v for k, v in environ.items() if v is not None}) is None


@pytest.mark.parametrize(
    "name", ["TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT"]
)
def test_each_part_of_the_job_identity_tells_jobs_apart(name: str) -> None:
    job = Job.from_env(ENV)
    other = Job.from_env({**ENV, name: "1" + ENV[name]})
    assert job is not None and other is not None
    assert job.identity != other.identity


def test_ranks_on_several_nodes_share_one_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    first = Job.from_env(ENV)
    monkeypatch.setattr(torchrun.os, "getppid", lambda: 99999)
    monkeypatch.setattr(torchrun.socket, "gethostname", lambda: "node-b")
    second = Job.from_env({**ENV, "RANK": "3", "LOCAL_RANK": "1"})
    assert first is not None and second is not None
    assert first.identity == second.identity


def test_on_one_node_the_agent_tells_jobs_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    one_node = {**ENV, "LOCAL_WORLD_SIZE": "4"}
    monkeypatch.setattr(torchrun.os, "getppid", lambda: 1000)
    first = Job.from_env(one_node)
    monkeypatch.setattr(torchrun.os, "getppid", lambda: 1001)
    second = Job.from_env(one_node)
    assert first is not None and second is not None
    assert first.identity != second.identity


def test_the_rank_file_is_the_path_and_the_rank() -> None:
    assert rank_file("out/run.json", 3) == "out/run.json.rank3"


@pytest.mark.parametrize(("raw", "seconds"), [("604800", 604800.0), ("0.01", 0.01)])
def test_a_gather_timeout_up_to_a_week_is_taken(raw: str, seconds: float) -> None:
    assert gather_timeout({"CGMEM_GATHER_TIMEOUT": raw}) == (seconds, None)


# -- merging ----------------------------------------------------------------------------------


def test_merged_violations_keep_their_figures_and_name_their_rank() -> None:
    over = record(1, peak=128 * MiB)
    (merged,) = merge_records({1: [over]})
    (violation,) = merged.violations
    assert violation == Violation("peak", 100 * MiB, 128 * MiB, "cuda:1", "rank1/kv", 1)


def test_every_merged_region_names_its_rank_in_extra() -> None:
    unranked = RegionResult("load", (DeviceFigures(0, peak=MiB),), 0.0, None, {})
    (merged,) = merge_records(
        {0: [record(0)], 1: [TestRecord("test_x.py::test_a", "passed", (unranked,))]}
    )
    assert [(r.label, r.extra["rank"]) for r in merged.regions] == [
        ("rank0", 0),
        ("rank0/kv", 0),
        ("rank1/load", 1),
    ]


def test_tests_merge_by_node_id_in_rank_order_whatever_ranks_ran_them() -> None:
    by_rank = {
        2: [record(2, "t.py::b"), record(2, "t.py::a")],
        0: [record(0, "t.py::a")],
        1: [record(1, "t.py::b", outcome="skipped")],
    }
    merged = {t.nodeid: t for t in merge_records(by_rank)}
    assert {n: [r.label for r in t.regions] for n, t in merged.items()} == {
        "t.py::a": ["rank0", "rank0/kv", "rank2", "rank2/kv"],
        "t.py::b": ["rank1", "rank1/kv", "rank2", "rank2/kv"],
    }
    assert merged["t.py::a"].outcome == "passed"
    assert merged["t.py::b"].outcome == "skipped"  # the first rank's, where none failed


def findings(
    compared: int, regression: str | None = None, new: str | None = None, size: int | None = None
) -> dict[str, Any]:
    change = {
        "metric": "peak",
        "label": "call",
        "device": 0,
        "baseline": MiB,
        "value": 2 * MiB,
        "change": MiB,
        "message": regression or "",
    }
    return {
        "compared": compared,
        "regressions": [change] if regression else [],
        "improvements": [{**change, "change": -MiB}] if regression else [],
        "new": [new] if new else [],
        "sizes": [] if size is None else [vanished(size)],
    }


def vanished(size: int) -> dict[str, Any]:
    return {
        "label": "capture_sweep",
        "size": size,
        "change": "vanished",
        "bytes": 2 * MiB,
        "message": f"cgmem: capture size {size} (2.00 MiB) vanished from 'capture_sweep'",
    }


def test_baseline_findings_of_every_rank_merge_in_rank_order() -> None:
    by_rank = {
        0: [record(0, baseline=findings(2, "on rank 0"))],
        1: [record(1, baseline=findings(0, new="rank1/kv"))],
        2: [record(2, baseline=findings(3, "on rank 2"))],
        3: [record(3)],
    }
    (merged,) = merge_records(by_rank)
    assert merged.baseline is not None
    assert merged.baseline["compared"] == 5
    assert [c["message"] for c in merged.baseline["regressions"]] == ["on rank 0", "on rank 2"]
    assert [c["change"] for c in merged.baseline["improvements"]] == [-MiB, -MiB]
    assert merged.baseline["new"] == ["rank1/kv"]


def test_capture_sizes_that_vanished_on_every_rank_are_kept_in_rank_order() -> None:
    by_rank = {
        0: [record(0, baseline=findings(1, size=64))],
        1: [record(1, baseline=findings(1))],
        2: [record(2, baseline=findings(1, size=128))],
    }
    (merged,) = merge_records(by_rank)
    assert merged.baseline is not None
    assert merged.baseline["sizes"] == [vanished(64), vanished(128)]


def test_merged_findings_have_every_key_a_ranks_findings_have() -> None:
    (merged,) = merge_records({0: [record(0, baseline=Findings().to_dict())]})
    assert merged.baseline == Findings().to_dict()


def test_a_test_no_rank_compared_has_no_baseline_findings() -> None:
    (merged,) = merge_records({0: [record(0)], 1: [record(1)]})
    assert merged.baseline is None


# -- the rank files ---------------------------------------------------------------------------


def test_another_rank_leaves_its_document_for_rank_0_and_waits(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    document = document_of([record(1)])
    left: list[dict[str, Any]] = []

    def rank_0_takes_it_on_the_third_look(looks: int) -> None:
        left.append(json.loads(Path(f"{path}.rank1").read_text()))
        if looks == 2:
            release(Job(0, 2, 0, "job"), path)

    ticks = Ticks(on_sleep=rank_0_takes_it_on_the_third_look)
    lines: list[str] = []
    assert gather(Job(1, 2, 1, "job"), document, path, lines, timeout=10, **waits(ticks)) is None
    assert left[0] == json.loads(json.dumps({**document, "job": "job", "rank": 1}))
    assert len(ticks.sleeps) == 3
    assert lines == [f"cgmem: rank 1 handed its records to rank 0 ({path})"]


def test_another_rank_waits_no_longer_than_the_timeout(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    ticks = Ticks()
    lines: list[str] = []
    gather(Job(1, 2, 1, "job"), document_of([record(1)]), path, lines, timeout=3, **waits(ticks))
    assert len(ticks.sleeps) == 3
    assert lines == [f"cgmem: rank 1 left its records in {path}.rank1; rank 0 did not take them"]
    assert Path(rank_file(path, 1)).exists()


def test_a_rank_that_cannot_write_its_file_says_so_and_does_not_wait(tmp_path: Path) -> None:
    (tmp_path / "a file").write_text("")
    path = str(tmp_path / "a file" / "run.json")
    ticks = Ticks()
    lines: list[str] = []
    gather(Job(2, 3, 0, "job"), document_of([record(2)]), path, lines, timeout=3, **waits(ticks))
    assert ticks.sleeps == []
    assert len(lines) == 1
    assert lines[0].startswith(f"cgmem: rank 2 could not write {path + '.rank2'!r} for rank 0: ")


def test_a_rank_whose_document_has_no_json_form_says_so_and_does_not_wait(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "run.json")
    document = {**document_of([record(1)]), "settings": {"tolerance": math.nan}}
    ticks = Ticks()
    lines: list[str] = []
    gather(Job(1, 2, 1, "job"), document, path, lines, timeout=3, **waits(ticks))
    assert ticks.sleeps == []
    assert len(lines) == 1
    assert lines[0].startswith(f"cgmem: rank 1 could not write {path + '.rank1'!r} for rank 0: ")
    assert not Path(rank_file(path, 1)).exists()


def test_rank_0_releases_every_other_rank_and_only_rank_0_does(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    for rank in (1, 2):
        hand_over(path, rank, [record(rank)])
    release(Job(1, 3, 1, "job"), path)
    assert Path(rank_file(path, 1)).exists() and Path(rank_file(path, 2)).exists()
    release(Job(0, 3, 0, "job"), path)
    assert not Path(rank_file(path, 1)).exists() and not Path(rank_file(path, 2)).exists()
    release(Job(0, 3, 0, "job"), path)  # nothing left to remove: no error


# -- rank 0 -----------------------------------------------------------------------------------


def test_rank_0_waits_for_a_rank_that_comes_late(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    hand_over(path, 2, [record(2)])
    ticks = Ticks(on_sleep=lambda n: hand_over(path, 1, [record(1)]) if n == 1 else None)
    lines: list[str] = []
    merged = gather(
        Job(0, 3, 0, "job"), document_of([record(0)]), path, lines, timeout=10, **waits(ticks)
    )
    assert merged is not None
    assert len(ticks.sleeps) == 2
    assert merged["ranks"] == {"world_size": 3, "gathered": [0, 1, 2], "missing": []}
    assert labels(merged) == [["rank0", "rank0/kv", "rank1", "rank1/kv", "rank2", "rank2/kv"]]
    assert merged["complete"] is True and merged["incomplete_reason"] is None
    assert lines == ["cgmem: gathered the records of 3 rank(s)"]


def test_rank_0_waits_no_longer_than_the_timeout_and_names_the_missing(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    hand_over(path, 2, [record(2)])
    ticks = Ticks()
    lines: list[str] = []
    merged = gather(
        Job(0, 4, 0, "job"), document_of([record(0)]), path, lines, timeout=3, **waits(ticks)
    )
    assert merged is not None
    assert len(ticks.sleeps) == 3
    assert merged["ranks"] == {"world_size": 4, "gathered": [0, 2], "missing": [1, 3]}
    assert merged["incomplete_reason"] == "rank(s) 1, 3 sent no records"
    assert lines == [
        f"cgmem: rank(s) 1, 3 sent no records within 3 s ({path}.rank1...); the run file "
        "says so in 'ranks'"
    ]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"job": "job", "rank": 1}',
        '{"job": "job", "rank": 1, "tests": null}',
        '{"job": "job", "rank": 1, "tests": [{"outcome": "passed"}]}',
        '{"job": "job", "rank": 1, "tests": ["test"]}',
    ],
)
def test_a_torn_or_foreign_rank_file_is_a_missing_rank(tmp_path: Path, content: str) -> None:
    path = str(tmp_path / "run.json")
    Path(rank_file(path, 1)).write_text(content)
    merged = gather(Job(0, 2, 0, "job"), document_of([record(0)]), path, [], timeout=0)
    assert merged is not None
    assert merged["ranks"]["missing"] == [1]


def test_a_rank_file_written_for_another_rank_is_not_taken(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    document = {**document_of([record(2)]), "job": "job", "rank": 2}
    runfile.write_json(rank_file(path, 1), document)
    merged = gather(Job(0, 3, 0, "job"), document_of([record(0)]), path, [], timeout=0)
    assert merged is not None
    assert merged["ranks"]["missing"] == [1, 2]


def test_the_gathered_run_file_keeps_rank_0s_run(tmp_path: Path) -> None:
    path = str(tmp_path / "run.json")
    hand_over(path, 1, [record(1)])
    commit = {"sha": "0123abc", "dirty": False}
    settings = {"budget": {"peak": 100 * MiB}, "xdist": False}
    created = "2026-01-02T03:04:05.000+00:00"
    document = runfile.build_run(
        [record(0)], runfile.base_machine(), commit, created=created, settings=settings
    )
    merged = gather(Job(0, 2, 0, "job"), document, path, [], timeout=0)
    assert merged is not None
    runfile.validate(merged)
    assert (merged["commit"], merged["created"], merged["settings"]) == (commit, created, settings)
    assert merged["machine"] == document["machine"]
    assert merged["complete"] is True


def test_rank_0_waits_the_gather_timeout_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CGMEM_GATHER_TIMEOUT", "2")
    path = str(tmp_path / "run.json")
    ticks = Ticks()
    lines: list[str] = []
    gather(Job(0, 2, 0, "job"), document_of([record(0)]), path, lines, **waits(ticks))
    assert len(ticks.sleeps) == 2
    assert lines[0].startswith("cgmem: rank(s) 1 sent no records within 2 s")
