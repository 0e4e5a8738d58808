"""Distributed tests on real GPUs: ``cgmem.distributed`` with NCCL, each rank measured on its
own device; a leak planted on one rank named by that rank; NCCL's communicator and buffers
as ``non_torch`` per rank; a torchrun job's one run file; xdist workers on distinct GPUs.

World size 1 runs on one GPU; the two-rank tests skip with fewer than two GPUs (the
``nvidia-h200-x2`` machine runs them). Each rank is its own process, so each measures from
a fresh CUDA context. NVLink multicast stays off where the environment says so
(``NCCL_NVLS_ENABLE=0``): the ranks inherit the environment, which a test checks.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from pytest_cgmem import BudgetExceeded, CgmemFixture
from pytest_cgmem.results import runfile

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

pytestmark = pytest.mark.gpu
MiB = 2**20
two_gpus = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="needs two CUDA devices (the nvidia-h200-x2 machine)"
)

_kept: list[Any] = []


def keep_64_mib_on_the_last_rank(rank: int, world_size: int) -> None:
    """A leak planted on the last rank only (rank 0 of one, rank 1 of two)."""
    if rank == world_size - 1:
        _kept.append(torch.empty(64 * MiB, dtype=torch.uint8, device="cuda"))


def all_reduce_once(rank: int, world_size: int) -> tuple[float, str | None, int]:
    """A clean all-reduce of 4 MiB: NCCL makes its communicator and buffers here. c10d
    may hold the finished work's tensor for a moment: the rank's leak check waits for it."""
    x = torch.full((MiB,), float(rank + 1), device="cuda")
    dist.all_reduce(x)
    value = float(x[0].item())
    return value, os.environ.get("NCCL_NVLS_ENABLE"), torch.cuda.current_device()


# -- one GPU: world size 1 ----------------------------------------------------------------


def test_leak_on_rank_0_is_named(cgmem: CgmemFixture) -> None:
    result = cgmem.distributed(keep_64_mib_on_the_last_rank, world_size=1, timeout=300)
    assert result.measured
    assert result.per_rank[0].device == 0
    assert result.per_rank[0].leak == 64 * MiB
    with pytest.raises(BudgetExceeded) as info:
        result.check(leak=0)
    assert str(info.value) == (
        "cgmem: leak 64.00 MiB exceeds budget 0 B (over by 64.00 MiB) on rank 0 (cuda:0)"
    )


def test_clean_all_reduce_passes_on_one_rank(cgmem: CgmemFixture) -> None:
    result = cgmem.distributed(all_reduce_once, world_size=1, timeout=300)
    value, nvls, device = result.values[0]
    assert value == 1.0
    assert device == 0
    assert nvls == os.environ.get("NCCL_NVLS_ENABLE")  # the rank has the test's environment
    result.check(leak=0)
    assert result.per_rank[0].peak >= 4 * MiB


def test_nccl_buffers_are_non_torch_on_one_rank(cgmem: CgmemFixture) -> None:
    result = cgmem.distributed(all_reduce_once, world_size=1, timeout=300)
    figures = result.per_rank[0].figures
    assert figures is not None and figures.index == 0
    assert figures.device_source in ("nvml", "cudaMemGetInfo")
    # NCCL's communicator and buffers: device memory that is not torch's
    assert figures.non_torch is not None and figures.non_torch > 0, figures
    assert figures.leak == 0


MARKED = """
import pytest
import torch
import torch.distributed as dist

MiB = 2**20
kept = []


def keeps_on_rank_0(rank, world_size):
    kept.append(torch.empty(64 * MiB, dtype=torch.uint8, device="cuda"))


def all_reduce(rank, world_size):
    x = torch.ones(1024, device="cuda")
    dist.all_reduce(x)
    torch.cuda.synchronize()
    return x.sum().item()


@pytest.mark.cgmem(leak="16 MiB")
def test_leaks_on_a_rank(cgmem):
    cgmem.distributed(keeps_on_rank_0, world_size=1, timeout=300)


@pytest.mark.cgmem(peak="1 GiB")
def test_all_reduce(cgmem):
    assert cgmem.distributed(all_reduce, world_size=1, timeout=300).values == [1024.0]
"""


def test_a_marked_test_holds_each_rank_to_its_budget(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked_ranks=MARKED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cgmem-json=run.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*BudgetExceeded: cgmem: leak 64.00 MiB exceeds budget 16.00 MiB (+300.0%) "
            "on rank 0 (cuda:0)",
        ]
    )
    document = runfile.load_run(pytester.path / "run.json")
    runfile.validate(document)
    tests = {t["nodeid"].split("::")[1]: t for t in document["tests"]}
    leaking = tests["test_leaks_on_a_rank"]
    assert [r["label"] for r in leaking["regions"]] == ["call", "rank0"]
    assert leaking["checked"] == ["call", "rank0"]
    assert leaking["regions"][1]["devices"][0]["index"] == 0
    assert leaking["regions"][1]["devices"][0]["leak"] == 64 * MiB
    assert [v["rank"] for v in leaking["violations"]] == [0]
    assert tests["test_all_reduce"]["outcome"] == "passed"


# -- two GPUs ---------------------------------------------------------------------------------


@two_gpus
def test_leak_planted_on_rank_1_only_is_named(cgmem: CgmemFixture) -> None:
    result = cgmem.distributed(keep_64_mib_on_the_last_rank, world_size=2, timeout=300)
    assert [result.per_rank[r].device for r in (0, 1)] == [0, 1]
    assert result.per_rank[0].leak == 0
    assert result.per_rank[1].leak == 64 * MiB
    with pytest.raises(BudgetExceeded) as info:
        result.check(leak=0)
    assert str(info.value) == (
        "cgmem: leak 64.00 MiB exceeds budget 0 B (over by 64.00 MiB) on rank 1 (cuda:1)"
    )


@two_gpus
def test_clean_two_rank_all_reduce_passes(cgmem: CgmemFixture) -> None:
    result = cgmem.distributed(all_reduce_once, world_size=2, timeout=300)
    assert [v[0] for v in result.values] == [3.0, 3.0]
    assert [v[2] for v in result.values] == [0, 1]  # rank r runs on cuda:r
    assert {v[1] for v in result.values} == {os.environ.get("NCCL_NVLS_ENABLE")}
    result.check(leak=0)


@two_gpus
def test_nccl_buffers_are_non_torch_on_each_rank(cgmem: CgmemFixture) -> None:
    result = cgmem.distributed(all_reduce_once, world_size=2, timeout=300)
    for rank in (0, 1):
        figures = result.per_rank[rank].figures
        assert figures is not None and figures.index == rank
        assert figures.non_torch is not None and figures.non_torch > 0, (rank, figures)
        assert figures.leak == 0
    print({rank: result.per_rank[rank].non_torch for rank in (0, 1)})


TORCHRUN = """
import os

import pytest
import torch
import torch.distributed as dist

MiB = 2**20
kept = []


@pytest.fixture(scope="session", autouse=True)
def group():
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl")
    yield
    dist.destroy_process_group()


@pytest.mark.cgmem(peak="1 GiB")
def test_all_reduce():
    rank = dist.get_rank()
    x = torch.full(((rank + 1) * 4 * MiB,), 1.0, device="cuda")
    dist.all_reduce(x)
    torch.cuda.synchronize()
    del x


@pytest.mark.cgmem(leak=0)
def test_leaks_on_rank_1():
    if dist.get_rank() == 1:
        kept.append(torch.empty(64 * MiB, dtype=torch.uint8, device="cuda"))
"""


@two_gpus
def test_torchrun_two_ranks_write_one_run_file(pytester: pytest.Pytester) -> None:
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
        "test_job.py",
        timeout=600,
    )
    assert result.ret != 0  # rank 1 fails test_leaks_on_rank_1
    document = runfile.load_run(pytester.path / "run.json")
    runfile.validate(document)
    assert document["ranks"] == {"world_size": 2, "gathered": [0, 1], "missing": []}
    tests = {t["nodeid"].split("::")[1]: t for t in document["tests"]}
    reduce = tests["test_all_reduce"]
    assert reduce["outcome"] == "passed"
    assert [r["label"] for r in reduce["regions"]] == ["rank0", "rank1"]
    assert [[d["index"] for d in r["devices"]] for r in reduce["regions"]] == [[0], [1]]
    peaks = [r["devices"][0]["peak"] for r in reduce["regions"]]
    assert peaks[0] >= 16 * MiB and peaks[1] >= 32 * MiB
    leaking = tests["test_leaks_on_rank_1"]
    assert leaking["outcome"] == "failed"
    assert [v["message"] for v in leaking["violations"]] == [
        "cgmem: leak 64.00 MiB exceeds budget 0 B (over by 64.00 MiB) on rank 1 (cuda:1)"
    ]


XDIST = """
import os

import pytest
import torch


@pytest.mark.parametrize("n", range(4))
@pytest.mark.cgmem(peak="1 GiB")
def test_alloc(n):
    torch.empty(8 * 2**20, dtype=torch.uint8, device="cuda")
    uuid = torch.cuda.get_device_properties(0).uuid
    with open(f"gpu-{os.environ['PYTEST_XDIST_WORKER']}-{n}.txt", "w") as f:
        f.write(str(uuid))
"""


@two_gpus
def test_xdist_workers_are_pinned_to_distinct_gpus(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_pinned=XDIST)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--cgmem-devices=0,1", "--cgmem-json=run.json"
    )
    result.assert_outcomes(passed=4)
    document = runfile.load_run(pytester.path / "run.json")
    pinned = {t["worker"]: t["cuda_visible_devices"] for t in document["tests"]}
    assert pinned == {"gw0": "0", "gw1": "1"}
    uuids: dict[str, set[str]] = {}
    for path in pytester.path.glob("gpu-*.txt"):
        uuids.setdefault(path.name.split("-")[1], set()).add(path.read_text())
    assert sorted(uuids) == ["gw0", "gw1"]
    assert all(len(u) == 1 for u in uuids.values())
    assert uuids["gw0"] != uuids["gw1"]  # two physical GPUs
