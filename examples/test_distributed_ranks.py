"""Demo: a test over several processes with ``cgmem_distributed`` (``cgmem.distributed``).

Each rank runs ``fn(rank, world_size)`` in a process group of its own, a region around
it on ``cuda:rank``; a rank that raises fails the test with RankFailed, naming the rank
and its error. gloo runs anywhere: with fewer GPUs than ranks (or none) the ranks run
unmeasured, and a rank's failure is caught all the same. With nccl, give each rank a
GPU and hold the ranks to a budget: ``result.check(peak="1 GiB")``.
"""

from __future__ import annotations

import pytest

from pytest_cgmem import RankFailed

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

ROWS = 1000


def shard_covers_its_rows(rank: int, world_size: int) -> int:
    """Each rank loads ``ROWS // world_size`` rows of a layer: the bug is that a remainder
    (1000 rows over 3 ranks) is loaded by no rank."""
    covered = torch.tensor([ROWS // world_size])
    dist.all_reduce(covered)
    if covered.item() != ROWS:
        raise AssertionError(f"the shards cover {covered.item()} of {ROWS} rows")
    return rank


@pytest.mark.xfail(strict=True, raises=RankFailed, reason="the plugin names the failed rank")
def test_shards_over_three_ranks_leave_rows_out(cgmem_distributed) -> None:
    cgmem_distributed(shard_covers_its_rows, 3, "gloo", timeout=120)


def test_shards_over_two_ranks_cover_every_row(cgmem_distributed) -> None:
    result = cgmem_distributed(shard_covers_its_rows, 2, "gloo", timeout=120)
    assert result.values == [0, 1]
