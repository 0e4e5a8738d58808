"""Bug class: CUDA graph memory not accounted (vLLM PRs 38284, 30515).

An engine sizes its KV cache from an estimate of what its CUDA graphs will hold. When the
estimate forgets the graphs' intermediates and pool, the KV cache takes memory the graphs
need and start-up runs out of memory. Hold the estimate to the truth: capture under
``cgmem.graphs()`` and compare with the bytes its pool really holds, or let
``cgmem.capture_sweep`` capture the model at every size into one pool, as the engine does.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # graph_runner and these tests need it

import torch
from graph_runner import GraphRunner, RunnerConfig

from pytest_cgmem import EstimateMismatch


def _estimate_vs_truth(cgmem, bugs: frozenset[str]) -> None:
    runner = GraphRunner(RunnerConfig(max_num_batched_tokens=256, bugs=bugs))
    estimate = runner.estimate_graph_memory()
    with cgmem.graphs() as log:
        runner.capture()
    truth = log.total_pool_bytes()
    print(log.describe())
    cgmem.assert_estimate(estimate, truth, rel=0.10, abs="2 MiB", what="CUDA graph memory")


@pytest.mark.xfail(strict=True, raises=EstimateMismatch, reason="estimate forgets graph pools")
def test_estimate_buggy(cgmem):
    _estimate_vs_truth(cgmem, frozenset({"estimate"}))


def test_estimate_fixed(cgmem):
    _estimate_vs_truth(cgmem, frozenset())


def _estimate_vs_sweep(cgmem, bugs: frozenset[str]) -> None:
    runner = GraphRunner(RunnerConfig(max_num_batched_tokens=256, bugs=bugs))
    estimate = runner.estimate_graph_memory()
    sweep = cgmem.capture_sweep(
        torch.no_grad()(runner.model),
        runner.capture_sizes,
        lambda n: torch.zeros(n, runner.config.hidden, device="cuda", dtype=runner.dtype),
    )
    print(sweep.table())
    cgmem.assert_estimate(
        estimate, sweep.pool_bytes, rel=0.10, abs="2 MiB", what="CUDA graph memory"
    )


@pytest.mark.xfail(strict=True, raises=EstimateMismatch, reason="estimate forgets graph pools")
def test_sweep_estimate_buggy(cgmem):
    _estimate_vs_sweep(cgmem, frozenset({"estimate"}))


def test_sweep_estimate_fixed(cgmem):
    _estimate_vs_sweep(cgmem, frozenset())
