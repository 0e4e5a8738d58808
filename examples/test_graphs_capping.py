"""Bug class: capture sizes silently capped (vLLM PR 38270).

The user asked for graphs up to 1024 tokens; the engine's ``max_capture_size`` of 512 cut
768 and 1024 from the list without a word, so those batches ran eagerly. Compare what was
requested with what was really captured — from the config alone, or from the graphs the
engine captured (labelled by the size it was capturing).
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # graph_runner and these tests need it

from graph_runner import GraphRunner, RunnerConfig

from pytest_cgmem import SizesNotCaptured, assert_all_captured

# vLLM's 51 default sizes plus two the user added
REQUESTED = (1, 2, 4, *range(8, 256, 8), *range(256, 513, 16), 768, 1024)
BUGGY = RunnerConfig(requested_sizes=REQUESTED, bugs=frozenset({"capping"}))
FIXED = RunnerConfig(requested_sizes=REQUESTED)


@pytest.mark.xfail(strict=True, raises=SizesNotCaptured, reason="768 and 1024 silently cut")
def test_config_keeps_requested_sizes_buggy():
    assert_all_captured(REQUESTED, BUGGY.capture_sizes())


def test_config_keeps_requested_sizes_fixed():
    assert_all_captured(REQUESTED, FIXED.capture_sizes())


def _captured_sizes(cgmem, config: RunnerConfig) -> None:
    runner = GraphRunner(config)
    with cgmem.graphs(label=lambda: runner.capturing_size) as log:
        runner.capture()
    cgmem.assert_all_captured(REQUESTED, [capture.label for capture in log.captures])


@pytest.mark.xfail(strict=True, raises=SizesNotCaptured, reason="768 and 1024 silently cut")
def test_every_requested_size_captured_buggy(cgmem):
    _captured_sizes(cgmem, BUGGY)


def test_every_requested_size_captured_fixed(cgmem):
    _captured_sizes(cgmem, FIXED)
