"""``cgmem_distributed`` with the gloo backend on CPU, and a torchrun job's one run file.

No CUDA is needed: the ranks run ``fn`` in a real process group (gloo) and measure nothing;
what they did, how they failed and the run file's entries per rank are the same as on GPUs
(tests/gpu/test_distributed_gpu.py measures them there).
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from pytest_cgmem.results import runfile

torch = pytest.importorskip("torch")  # imported here, before pytester's module snapshot
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs


RANKS = """
import os
import signal
import sys
import tempfile
import threading
import time

import pytest
import torch
import torch.distributed as dist

from pytest_cgmem import RankFailed
from pytest_cgmem.cuda import distributed


def all_reduce(rank, world_size):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    print(f"rank {rank} of {world_size} (RANK={os.environ['RANK']}): {t.item()}")
    return t.item()


def all_reduce_noting_teardown(rank, world_size):
    # all_reduce, and a file for each call of destroy_process_group after it
    destroy = dist.destroy_process_group

    def noted(*args, **kwargs):
        open(os.path.join(os.environ["TEARDOWN_NOTES"], f"rank{rank}"), "w").close()
        return destroy(*args, **kwargs)

    dist.destroy_process_group = noted
    return all_reduce(rank, world_size)


def where_it_started(rank, world_size):
    dist.barrier()  # no rank ends while a peer still connects to it (gloo's full mesh)
    return os.getppid(), "pytest_cgmem.cuda.region" in sys.modules, os.environ.get("UNSET_LATER")


def raises_on_1(rank, world_size):
    if rank == 1:
        sys.stdout.write("rank 1 is about to raise")  # no newline: echoed all the same
        raise ValueError("planted on rank 1")
    time.sleep(120)  # still at work: stopped once rank 1 failed


def exits_on_1(rank, world_size):
    if rank == 1:
        print("rank 1 is about to exit")
        os._exit(3)
    time.sleep(120)


def _finish_and_exit(*_):
    time.sleep(0.2)
    os._exit(5)


def outlive_the_timeout(rank, world_size):
    # rank 0 sends its figures and exits; 1 is still at work; 2 too, and on SIGTERM takes a
    # moment to end with a status of its own; 3 sends its figures, stays (a thread is still
    # at work) and ignores SIGTERM
    dist.barrier()
    if rank == 0:
        return
    if rank == 3:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("rank 3 lingers")
        threading.Thread(target=time.sleep, args=(120,)).start()
        return
    if rank == 2:
        signal.signal(signal.SIGTERM, _finish_and_exit)
    print(f"rank {rank} is still at work", file=sys.stderr)
    time.sleep(120)


def raises_on_0_after_1(rank, world_size):
    # rank 0 waits for rank 1, and fails on the connection rank 1's end closed
    dist.barrier()
    if rank == 1:
        raise ValueError("planted on rank 1")
    if rank == 0:
        dist.recv(torch.zeros(1), src=1)
    time.sleep(120)


def _refuse():
    raise RuntimeError("not in this process")


class Unreadable:
    def __reduce__(self):
        return (_refuse, ())


def returns_what_cannot_travel(rank, world_size):
    # rank 0's value does not pickle; rank 1's pickles, but does not unpickle in the test
    dist.barrier()
    return threading.Lock() if rank == 0 else Unreadable()


def test_all_reduce(cgmem_distributed):
    result = cgmem_distributed(all_reduce, 2, "gloo", timeout=60)
    assert result.values == [3.0, 3.0]
    assert not result.measured and result.unmeasured == "no CUDA device"
    assert result.per_rank[1].leak is None and result.leak is None
    result.check(leak=0)


def test_ranks_fork_from_a_server_with_torch_and_the_environment_of_the_call(
    cgmem_distributed, monkeypatch
):
    monkeypatch.delenv("UNSET_LATER")  # set when test_all_reduce started the fork server
    result = cgmem_distributed(where_it_started, 2, "gloo", timeout=60)
    parents, preloaded, unset = zip(*result.values)
    assert os.getpid() not in parents
    assert preloaded == (True, True)  # imported by the server, not by the ranks
    assert unset == (None, None)


def test_gloo_group_is_left_for_the_process_end(cgmem_distributed, tmp_path, monkeypatch):
    # destroying it can deadlock in ProcessGroupGloo's destructor (docs/distributed.md)
    notes, temp = tmp_path / "notes", tmp_path / "temp"
    notes.mkdir()
    temp.mkdir()
    monkeypatch.setenv("TEARDOWN_NOTES", str(notes))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # the fork server runs: its socket stays
    result = cgmem_distributed(all_reduce_noting_teardown, 2, "gloo", timeout=60)
    assert result.values == [3.0, 3.0]
    assert list(notes.iterdir()) == []
    assert list(temp.iterdir()) == []  # the ranks' output files went with the call


def test_all_reduce_spawned(cgmem_distributed):
    result = cgmem_distributed(all_reduce, 2, "gloo", timeout=60, start_method="spawn")
    assert result.values == [3.0, 3.0]


def test_raises(cgmem_distributed):
    cgmem_distributed(raises_on_1, 2, "gloo", timeout=60)


def test_exits(cgmem_distributed):
    cgmem_distributed(exits_on_1, 2, "gloo", timeout=60)


def test_hangs(cgmem_distributed, monkeypatch):
    monkeypatch.setattr(distributed, "_GRACE", 0.5)  # then SIGKILL for the rank that stays
    t0 = time.monotonic()
    try:
        cgmem_distributed(outlive_the_timeout, 4, "gloo", timeout=2)
    except RankFailed:
        assert time.monotonic() - t0 < 30  # stopped at the timeout, not after the 120 s sleeps
        raise


def test_a_peer_that_fails_after_the_cause_is_heard(cgmem_distributed):
    t0 = time.monotonic()
    with pytest.raises(RankFailed) as info:
        cgmem_distributed(raises_on_0_after_1, 3, "gloo", timeout=60)
    assert time.monotonic() - t0 < 30  # rank 2 stopped once rank 1 failed, not at the timeout
    assert info.value.rank == 1
    assert [(o.status, o.exitcode) for o in info.value.outcomes] == [
        ("raised", 1),
        ("raised", 1),
        ("stopped", -15),
    ]


def test_values_that_cannot_travel_back(cgmem_distributed):
    with pytest.raises(RankFailed) as info:
        cgmem_distributed(returns_what_cannot_travel, 2, "gloo", timeout=60)
    sent, read = info.value.outcomes
    assert (sent.status, read.status) == ("raised", "raised")
    assert sent.error.startswith(
        "TypeError: fn returned a value that cannot be sent back: cannot pickle "
    )
    assert read.error == (
        "RuntimeError: fn returned a value that cannot be read back: not in this process"
    )


def test_not_picklable(cgmem_distributed):
    cgmem_distributed(lambda rank, world_size: None, 2, "gloo")


def test_no_ranks(cgmem_distributed):
    cgmem_distributed(all_reduce, 0, "gloo")


def test_bad_timeout(cgmem_distributed):
    cgmem_distributed(all_reduce, 2, "gloo", timeout=-1)


def test_nccl_needs_cuda(cgmem_distributed):
    cgmem_distributed(all_reduce, 2)  # backend="nccl" by default


def test_not_picklable_where_devices_lack(cgmem_distributed):
    cgmem_distributed(lambda rank, world_size: None, 2)  # refused, as with enough devices


def test_unknown_backend_where_devices_lack(cgmem_distributed):
    cgmem_distributed(all_reduce, 2, "cuda:nccl2")
"""


@pytest.mark.no_cuda
def test_gloo_ranks_run_fail_and_are_recorded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_rank_cases=RANKS)
    monkeypatch.setenv("UNSET_LATER", "1")
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # a rank's output is then buffered
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-rs", "--cgmem-json=run.json", "-k", "not spawned"
    )
    result.assert_outcomes(passed=5, failed=8, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "E*pytest_cgmem.RankFailed: cgmem: rank 1 of 2 raised ValueError: planted on rank 1",
            "E*Traceback (most recent call last):",
            '*File "*test_rank_cases.py", line *, in raises_on_1',
            "E*ValueError: planted on rank 1",
            "E*cgmem: stopped rank 0 (still running when rank 1 failed)",
        ]
    )
    result.stdout.fnmatch_lines(["[[]rank 1[]] rank 1 is about to raise"])
    result.stdout.fnmatch_lines(
        [
            "E*pytest_cgmem.RankFailed: cgmem: rank 1 of 2 exited before sending its "
            "figures: exit status 3",
            "E*    rank 1 is about to exit",
            "E*cgmem: stopped rank 0 (still running when rank 1 failed)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E*pytest_cgmem.RankFailed: cgmem: rank 1 of 4 did not finish within the "
            "timeout of 2 s; stopped: exit status -15 (SIGTERM)",
            "E*    rank 1 is still at work",
            "E*cgmem: rank 2 of 4 did not finish within the timeout of 2 s; stopped: exit status 5",
            "E*    rank 2 is still at work",
            "E*cgmem: rank 3 of 4 sent its figures but did not exit within the timeout of "
            "2 s; stopped: exit status -9 (SIGKILL)",
            "E*    rank 3 lingers",
        ]
    )
    # neither the test's traceback nor a rank's shows the plugin's own frames
    result.stdout.no_fnmatch_line("*pytest_cgmem*distributed.py*")
    for usage in (
        "fn must be picklable, i.e. a function defined at the top level of an importable "
        "module; 'test_not_picklable.<locals>.<lambda>' is not *",
        "world_size must be a whole number from 1 to 1024, got 0",
        "timeout must be a number of seconds > 0, got -1",
        "fn must be picklable, i.e. a function defined at the top level of an importable "
        "module; 'test_not_picklable_where_devices_lack.<locals>.<lambda>' is not *",
        "backend must be a torch.distributed backend, one of *, or device:backend pairs "
        "such as 'cpu:gloo,cuda:nccl', got 'cuda:nccl2'*",
    ):
        result.stdout.fnmatch_lines([f"E*CgmemUsageError: cgmem.distributed: {usage}"])
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_rank_cases.py:*: cgmem: no CUDA device"])

    document = runfile.load_run(pytester.path / "run.json")
    runfile.validate(document)
    tests = {t["nodeid"].split("::")[1]: t for t in document["tests"]}
    assert sorted(tests) == [
        "test_a_peer_that_fails_after_the_cause_is_heard",
        "test_all_reduce",
        "test_exits",
        "test_gloo_group_is_left_for_the_process_end",
        "test_hangs",
        "test_raises",
        "test_ranks_fork_from_a_server_with_torch_and_the_environment_of_the_call",
        "test_values_that_cannot_travel_back",
    ]
    world_sizes = {"test_a_peer_that_fails_after_the_cause_is_heard": 3, "test_hangs": 4}
    for name, test in tests.items():  # one entry per rank, with no figures: there is no device
        ranks = list(range(world_sizes.get(name, 2)))
        labels = [f"rank{r}" for r in ranks]
        assert [r["label"] for r in test["regions"]] == labels
        assert [r["extra"]["rank"] for r in test["regions"]] == ranks
        assert all(r["devices"] == [] for r in test["regions"])
        assert all(r["extra"]["unmeasured"] == "no CUDA device" for r in test["regions"])
        assert test["checked"] == labels
    errors = {name: [r["error"] for r in t["regions"]] for name, t in tests.items()}
    assert errors["test_all_reduce"] == [None, None]
    assert errors["test_raises"] == [
        "cgmem stopping it: still running when rank 1 failed",
        "ValueError: planted on rank 1",
    ]
    assert errors["test_exits"][1] == "the rank's exit before it sent its figures (exit status 3)"
    assert errors["test_hangs"] == [
        None,
        "the timeout (2 s): cgmem stopped it",
        "the timeout (2 s): cgmem stopped it",
        "the timeout (2 s): it sent its figures but did not exit",
    ]
    seconds = {name: [r["seconds"] for r in t["regions"]] for name, t in tests.items()}
    # a rank's own fn's time where it sent one; else the whole call's, past the timeout
    assert seconds["test_hangs"][0] < 2 <= min(seconds["test_hangs"][1:3]) < 30
    assert all(0 <= s < 30 for s in seconds["test_raises"])


@pytest.mark.no_cuda
def test_gloo_ranks_start_as_fresh_interpreters(pytester: pytest.Pytester) -> None:
    """start_method="spawn": each rank imports torch and the test's module itself."""
    pytester.makepyfile(test_rank_cases=RANKS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-json=run.json", "-k", "spawned")
    result.assert_outcomes(passed=1)
    (test,) = runfile.load_run(pytester.path / "run.json")["tests"]
    assert [(r["label"], r["error"]) for r in test["regions"]] == [
        ("rank0", None),
        ("rank1", None),
    ]


TORCHRUN = """
import time

import pytest
import torch
import torch.distributed as dist


@pytest.fixture(scope="session", autouse=True)
def group():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    yield
    dist.destroy_process_group()
    if rank == 0:
        time.sleep(1.5)  # rank 1, with a failed test, ends first: it must wait for rank 0


def test_all_reduce(cgmem_record):
    rank = dist.get_rank()
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    assert t.item() == 3.0
    cgmem_record("load", peak=f"{rank + 1} MiB", device_index=rank)


def test_over_budget_on_rank_1_only(cgmem_record):
    rank = dist.get_rank()
    cgmem_record("kv", peak=f"{64 * (rank + 1)} MiB", device_index=rank)
"""


def test_torchrun_ranks_write_one_run_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_job=TORCHRUN)
    result = pytester.run(
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--cgmem-json=run.json",
        "--cgmem-budget=peak=100MiB",
        "test_job.py",
        timeout=120,
    )
    assert result.ret != 0  # rank 1 failed a test
    output = result.stdout.str() + result.stderr.str()
    assert re.search(r"cgmem: rank 1 handed its records to rank 0 \(\S*run\.json\)", output)
    assert "cgmem: gathered the records of 2 rank(s)" in output
    document = runfile.load_run(pytester.path / "run.json")
    runfile.validate(document)
    assert document["ranks"] == {"world_size": 2, "gathered": [0, 1], "missing": []}
    tests = {t["nodeid"]: t for t in document["tests"]}
    assert sorted(tests) == [
        "test_job.py::test_all_reduce",
        "test_job.py::test_over_budget_on_rank_1_only",
    ]
    load = tests["test_job.py::test_all_reduce"]
    assert load["outcome"] == "passed"
    assert [(r["label"], r["extra"]["rank"]) for r in load["regions"]] == [
        ("rank0/load", 0),
        ("rank1/load", 1),
    ]
    assert [r["devices"][0]["peak"] for r in load["regions"]] == [2**20, 2 * 2**20]
    over = tests["test_job.py::test_over_budget_on_rank_1_only"]
    assert over["outcome"] == "failed"  # on rank 1; rank 0 passed it
    assert [v["message"] for v in over["violations"]] == [
        "cgmem: peak 128.00 MiB exceeds budget 100.00 MiB (+28.0%) on rank 1 (cuda:1) in 'kv'"
    ]
    assert not (pytester.path / "run.json.rank1").exists()
    assert json.loads((pytester.path / "run.json").read_text())["summary"]["tests"] == 2


def test_a_rank_that_starts_after_rank_0_began_writing_is_not_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only rank 0 writes the run file: a later rank must not find rank 0's lock on it and
    stop with a usage error (which would stop the whole torchrun job)."""
    from pytest_cgmem.results import journal

    pytester.makepyfile("def test_rec(cgmem_record):\n    cgmem_record('r', peak=1)\n")
    env = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    env |= {"TORCHELASTIC_RUN_ID": "job", "CGMEM_GATHER_TIMEOUT": "0.5"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    held = journal.Journal.start(pytester.path / "run.json", {"journal": {"run": "rank 0"}})
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cgmem-json=run.json")
    finally:
        held.close()
    result.assert_outcomes(passed=1)
    assert "is writing it" not in result.stdout.str() + result.stderr.str()
    assert (pytester.path / "run.json.rank1").exists()  # handed over; rank 0 never took it
