"""Demo: figures measured elsewhere, held to a budget with ``cgmem_record``.

A serving engine starts in a process of its own and reports the peak its allocator saw.
The test records that figure, and the plugin holds it to the mark's budget like a
measured region: it fails the test, and reaches the run file, baselines and ``cgmem
compare``. (``cgmem_record`` itself needs no CUDA; the server here does.) The
buggy twin sizes its KV cache in bits where bytes were meant, 8x what it needs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_cgmem import BudgetExceeded, DeviceFigures, RegionResult

torch = pytest.importorskip("torch")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SERVER = """
import json, sys, torch
blocks, block_tokens, hidden, bug = int(sys.argv[1]), 16, 1024, sys.argv[2] == "bug"
bytes_per_token = hidden * torch.finfo(torch.float16).bits
if not bug:
    bytes_per_token //= 8
kv_cache = torch.empty(blocks * block_tokens * bytes_per_token, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print(json.dumps({"peak": torch.cuda.max_memory_allocated()}))
"""


def _start_server(bug: bool) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", SERVER, "4096", "bug" if bug else "ok"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout.splitlines()[-1])


# 4096 blocks of 16 tokens, 1024 float16 values a token: a 128 MiB KV cache
@needs_cuda
@pytest.mark.xfail(strict=True, raises=BudgetExceeded, reason="the plugin catches it")
@pytest.mark.cgmem(peak="512 MiB")
def test_server_kv_cache_sized_in_bits(cgmem_record) -> None:
    cgmem_record("server", peak=_start_server(bug=True)["peak"])


@needs_cuda
@pytest.mark.cgmem(peak="512 MiB")
def test_server_kv_cache_sized_in_bytes(cgmem_record) -> None:
    # the same figure as a RegionResult: one a server reports whole, several devices and all
    peak = _start_server(bug=False)["peak"]
    cgmem_record(RegionResult("server", (DeviceFigures(0, peak=peak),), 0.0))
