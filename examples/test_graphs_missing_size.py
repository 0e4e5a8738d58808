"""Bug class: an off-stride maximum batch never captured (vLLM PR 40734).

Capture sizes came from ``range(8, max_num_batched_tokens + 1, 8)``; with
``max_num_batched_tokens=500`` the largest captured size is 496, so the largest batches
found no graph and ran eagerly, 3x slower. The config check runs anywhere (no GPU); the
runtime check proves the largest batch really replays a graph.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # graph_runner and these tests need it

import torch
from graph_runner import GraphRunner, RunnerConfig

from pytest_cgmem import (
    BudgetExceeded,
    EagerFallback,
    SizesNotCovered,
    assert_sizes_covered,
    uncovered_sizes,
)

BUGGY = RunnerConfig(max_num_batched_tokens=500, bugs=frozenset({"off_stride"}))
FIXED = RunnerConfig(max_num_batched_tokens=500)


def _config_covers_every_batch(config: RunnerConfig) -> None:
    assert_sizes_covered(config.capture_sizes(), range(1, config.max_num_batched_tokens + 1))


@pytest.mark.xfail(strict=True, raises=SizesNotCovered, reason="500 is off the stride of 8")
def test_config_covers_every_batch_buggy():
    _config_covers_every_batch(BUGGY)


def test_config_covers_every_batch_fixed():
    _config_covers_every_batch(FIXED)


def test_config_names_the_batches_left_without_a_graph():
    """``uncovered_sizes`` lists them, for a message or a table of your own."""
    every_batch = range(1, 501)
    assert uncovered_sizes(BUGGY.capture_sizes(), every_batch) == [497, 498, 499, 500]
    assert uncovered_sizes(FIXED.capture_sizes(), every_batch) == []


def _largest_batch_replays(cgmem, config: RunnerConfig) -> None:
    runner = GraphRunner(config)
    runner.capture()
    x = torch.randn(config.max_num_batched_tokens, config.hidden, device="cuda").half()
    with cgmem.expect_replay(f"batch of {config.max_num_batched_tokens} tokens"):
        out = runner.run(x)
    assert out.shape == x.shape


@pytest.mark.xfail(strict=True, raises=EagerFallback, reason="the largest batch runs eagerly")
def test_largest_batch_replays_buggy(cgmem):
    _largest_batch_replays(cgmem, BUGGY)


def test_largest_batch_replays_fixed(cgmem):
    _largest_batch_replays(cgmem, FIXED)


# Budgets on graph counts: a runner that captures its sizes again (on a reconfigure, say)
# holds twice the graphs; a decode step replays one graph and captures none.
CAPTURES = len(FIXED.capture_sizes())


@pytest.mark.xfail(strict=True, raises=BudgetExceeded, reason="every size captured twice")
@pytest.mark.cgmem(graphs=CAPTURES)
def test_each_size_captured_once_buggy():
    runner = GraphRunner(FIXED)
    runner.capture()
    runner.capture()  # the bug: the graphs of the first capture are thrown away


@pytest.mark.cgmem(graphs=CAPTURES)
def test_each_size_captured_once_fixed():
    GraphRunner(FIXED).capture()


def test_decode_steps_replay_without_capturing(cgmem):
    runner = GraphRunner(FIXED)
    runner.capture()
    x = torch.randn(37, FIXED.hidden, device="cuda").half()
    with cgmem.measure("decode") as m:
        for _ in range(3):
            runner.run(x)
    m.check(graphs=0, replays=3)
    assert (m.graphs, m.replays) == (0, 3)
