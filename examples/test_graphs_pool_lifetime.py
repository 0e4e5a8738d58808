"""Bug class: a graph pool outliving ``clear()`` (vLLM PR 41714).

The runner keeps its encoder graphs in a separate pool; the buggy ``clear()`` drops the
decoder graphs but forgets the encoder ones, so their pool keeps its memory for the rest
of the process. Two ways to catch it: a ``graph_pool=0`` budget on the marked test (the
pools made in the test must hold nothing at its end), or ``cgmem.assert_pool_released``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # graph_runner and these tests need it

import torch
from graph_runner import GraphRunner, RunnerConfig

from pytest_cgmem import BudgetExceeded, PoolNotReleased

CONFIG = {"max_num_batched_tokens": 64, "encoder": True}


@pytest.fixture
def buggy_runner(cgmem):  # cgmem first: skips without a GPU before building anything
    return GraphRunner(RunnerConfig(**CONFIG, bugs=frozenset({"encoder_pool"})))


@pytest.fixture
def fixed_runner(cgmem):
    return GraphRunner(RunnerConfig(**CONFIG))


def _serve_then_clear(runner: GraphRunner) -> None:
    runner.capture()
    x = torch.randn(5, runner.config.hidden, device="cuda", dtype=runner.dtype)
    runner.run(x)
    runner.clear()


@pytest.mark.cgmem(graph_pool=0)
@pytest.mark.xfail(strict=True, raises=BudgetExceeded, reason="clear() keeps the encoder pool")
def test_clear_releases_pools_buggy(buggy_runner):
    _serve_then_clear(buggy_runner)


@pytest.mark.cgmem(graph_pool=0)
def test_clear_releases_pools_fixed(fixed_runner):
    _serve_then_clear(fixed_runner)


@pytest.mark.xfail(strict=True, raises=PoolNotReleased, reason="clear() keeps the encoder pool")
def test_pools_released_buggy(cgmem, buggy_runner):
    with cgmem.graphs() as log:
        buggy_runner.capture()
    buggy_runner.clear()
    cgmem.assert_pool_released(*log.pools)


def test_pools_released_fixed(cgmem, fixed_runner):
    with cgmem.graphs() as log:
        fixed_runner.capture()
    assert len(log.pools) == 2  # decoder and encoder
    fixed_runner.clear()
    cgmem.assert_pool_released(*log.pools)
    assert all(cgmem.pool_bytes(pool) == 0 for pool in log.pools)
