"""Demo: a figure that grew since the last run, caught against a baseline.

An engine's memory planner says how many bytes its paged KV cache will reserve for a
config. The tests record that figure with ``cgmem_record``, and this suite's ini file holds
every test to the run saved in ``baseline.json`` (``cgmem_baseline``): a figure grown past
the tolerance (5% or 2 MiB by default) fails its test, naming the figure, the baseline and
the change. The planner needs no GPU, so this suite runs on any machine, CPU-only CI too.

The buggy twin rounds each block up to a power of two of tokens "for alignment": blocks of
48 tokens become 64, a third more KV cache than the last run planned, and nothing else
fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pytest_cgmem import BaselineRegression


@dataclass(frozen=True)
class ModelShape:
    layers: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    dtype_bytes: int = 2  # float16


def kv_cache_bytes(shape: ModelShape, blocks: int, block_tokens: int, *, pad: bool) -> int:
    """Bytes of a paged KV cache: K and V for every token of every block, in every layer."""
    if pad:
        block_tokens = 1 << (block_tokens - 1).bit_length()
    per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * shape.dtype_bytes
    return blocks * block_tokens * per_token


@pytest.mark.xfail(strict=True, raises=BaselineRegression, reason="the plugin catches it")
def test_kv_cache_plan_padded_to_a_power_of_two(cgmem_record) -> None:
    cgmem_record("kv cache plan", reserved=kv_cache_bytes(ModelShape(), 2048, 48, pad=True))


def test_kv_cache_plan_as_configured(cgmem_record) -> None:
    cgmem_record("kv cache plan", reserved=kv_cache_bytes(ModelShape(), 2048, 48, pad=False))
