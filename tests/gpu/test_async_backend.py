"""``PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync`` on a real GPU, in fresh processes.

That backend keeps no blocks and no graph pools: the figures it cannot give are reported
as unavailable and named (never a 0 that passes a budget), diagnostics skip the snapshot
with one line, and the figures it does give still catch a leak.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")

import pytest_cgmem

pytestmark = pytest.mark.gpu

ROOT = Path(pytest_cgmem.__file__).resolve().parent.parent
ASYNC = "backend:cudaMallocAsync"

SUITE = """
import pytest
import torch

N = 16 * 2**20
KEEP = []


@pytest.fixture(autouse=True)
def release_kept():
    yield
    KEEP.clear()


def capture():
    x = torch.ones(N // 4, device="cuda")
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = x * 2
    g.replay()
    KEEP.append((g, y, x))


@pytest.mark.cgmem(graph_pool="64 MiB", graphs=1, replays=1)
def test_pool_budget():
    capture()


@pytest.mark.cgmem(graphs=1, replays=1, peak="1 GiB")
def test_counts_only():
    capture()


@pytest.mark.cgmem(leak=0)
def test_leaks():
    KEEP.append(torch.ones(12 * 2**20, device="cuda"))  # 48 MiB


@pytest.mark.cgmem(peak="1 MiB")
def test_over_peak():
    torch.ones(2**20, device="cuda")  # 4 MiB


def test_log(cgmem):
    with cgmem.graphs() as log:
        capture()
    c = log.captures[0]
    assert (c.allocated, c.reserved) == (None, None)
    assert c.driver is not None
    assert log.pools_unavailable and "cudaMallocAsync" in log.pools_unavailable
    with pytest.raises(pytest_cgmem.FigureUnavailable, match="cudaMallocAsync"):
        log.pool_bytes()
    print("LOG", log.describe())


SWEEPS = []  # never freed here: torch 2.11 aborts freeing a sweep's outputs under this backend


def test_sweep(cgmem):
    capture()
    result = cgmem.capture_sweep(lambda t: t * 2, [8, 16], lambda n: torch.ones(n, device="cuda"))
    SWEEPS.append(result)
    assert result.pool_bytes is None
    assert set(result.bytes.values()) == {None}
    assert "n/a" in result.table()


def test_resize_check_says_why(cgmem):
    with pytest.raises(pytest_cgmem.FigureUnavailable, match="needs the allocator's blocks"):
        cgmem.resize_check(lambda n: torch.empty(n, device="cuda"), [2**20, 2**21])


def test_steady_notes_the_segments(cgmem):
    cgmem.steady(lambda: torch.ones(2**20, device="cuda").sum())
"""


#: the suite's tests by process: under cudaMallocAsync, torch 2.11 trips an internal assert
#: (capture_free_streams.empty()) on a second graph capture in one process, so each test
#: that captures has its own; the rest share one. The processes run side by side.
GROUPS = (
    ("test_pool_budget",),
    ("test_counts_only",),
    ("test_log",),
    ("test_sweep",),
    (
        "test_leaks",
        "test_over_peak",
        "test_resize_check_says_why",
        "test_steady_notes_the_segments",
    ),
)


def _env(conf: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTORCH_ALLOC_CONF")}
    env["PYTORCH_CUDA_ALLOC_CONF"] = conf
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@dataclass
class SuiteRun:
    stdout: str
    stderr: str
    codes: dict[tuple[str, ...], int]  # each group's exit status


def _run(tmp_path: Path, *args: str, conf: str = ASYNC) -> SuiteRun:
    """The suite under ``conf``, its groups side by side."""
    (tmp_path / "test_async_suite.py").write_text("import pytest_cgmem\n" + textwrap.dedent(SUITE))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-s", *args]
    running = [
        subprocess.Popen(
            [*command, *(f"test_async_suite.py::{name}" for name in group)],
            cwd=tmp_path,
            env=_env(conf),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in GROUPS
    ]
    stdout, stderr, codes = [], [], {}
    for group, process in zip(GROUPS, running, strict=True):
        out, err = process.communicate(timeout=500)
        stdout.append(out)
        stderr.append(err)
        codes[group] = process.returncode
    done = SuiteRun("\n".join(stdout), "\n".join(stderr), codes)
    print(done.stdout[-12000:], done.stderr[:3000])
    return done


def _outcomes(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        for word in ("PASSED", "FAILED", "ERROR"):
            if line.startswith(word + " test_async_suite.py::"):
                name = line.split("::")[1].split()[0]
                found[name] = word
    return found


def test_unavailable_figures_are_named_and_fail_their_budget(tmp_path: Path) -> None:
    done = _run(tmp_path)
    out = done.stdout
    assert "allocator cudaMallocAsync, PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync" in out
    assert "graph pool bytes from unavailable (backend:cudaMallocAsync keeps no graph pools)" in out
    assert _outcomes(out) == {
        "test_pool_budget": "FAILED",
        "test_counts_only": "PASSED",
        "test_leaks": "FAILED",
        "test_over_peak": "FAILED",
        "test_log": "PASSED",
        "test_sweep": "PASSED",
        "test_resize_check_says_why": "PASSED",
        "test_steady_notes_the_segments": "PASSED",
    }
    codes = done.codes
    assert codes[("test_counts_only",)] == 0 and codes[("test_log",)] == 0
    # the sweep passed and was reported; its process then aborts in torch as it exits,
    # freeing the sweep's outputs (plain torch does too: the test below)
    assert codes[("test_sweep",)] == -signal.SIGABRT, done.stderr
    assert (
        "BudgetUnavailable: cgmem: graph_pool budget 64.00 MiB cannot be checked on cuda:0: "
        "backend:cudaMallocAsync keeps no graph pools" in out
    )
    assert "graph_pool              n/a   budget  64.00 MiB  unavailable" in out
    assert re.search(r"cgmem: leak \d+\.\d\d MiB exceeds budget 0 B", out)  # still caught
    assert re.search(r"cgmem: peak \d+\.\d\d MiB exceeds budget 1\.00 MiB", out)
    assert "diagnostics: no allocator snapshot: backend:cudaMallocAsync" in out
    assert "diagnostics failed" not in out
    assert "pool bytes: CUDA graph pool bytes are unavailable here" in out  # the log's text


def test_skip_runs_the_suite_clean_of_unavailable_budgets(tmp_path: Path) -> None:
    done = _run(tmp_path, "--cgmem-unavailable=skip", "--cgmem-history")
    out = done.stdout
    outcomes = _outcomes(out)
    assert outcomes["test_pool_budget"] == "PASSED"
    assert outcomes["test_leaks"] == "FAILED"
    assert "graph_pool budget 64.00 MiB not checked on cuda:0 (--cgmem-unavailable=skip)" in out
    assert "and records no allocation history (--cgmem-history)" in out


def test_the_same_suite_under_the_native_allocator_has_every_figure(tmp_path: Path) -> None:
    done = _run(tmp_path, conf="backend:native")
    outcomes = _outcomes(done.stdout)
    assert outcomes["test_pool_budget"] == "PASSED"  # 16 MiB pool within 64 MiB
    assert outcomes["test_log"] == "FAILED"  # its figures are there under native
    assert outcomes["test_sweep"] == "FAILED"
    assert set(done.codes.values()) <= {0, 1}  # no abort under native
    assert outcomes["test_resize_check_says_why"] == "FAILED"


PLAIN_TORCH_SWEEP = """
import torch

def say(text):
    print(text, flush=True)

x = torch.ones(2**20, device="cuda")
first = torch.cuda.CUDAGraph()
with torch.cuda.graph(first):
    y = x * 2
first.replay()
inputs = {n: torch.ones(n, device="cuda") for n in (16, 8)}
stream = torch.cuda.Stream()
stream.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(stream):
    for n in (16, 8):
        inputs[n] * 2
torch.cuda.current_stream().wait_stream(stream)
torch.cuda.synchronize()
pool = torch.cuda.graph_pool_handle()
graphs, outputs = {}, {}
for n in (16, 8):
    graphs[n] = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graphs[n], pool=pool, stream=stream):
        outputs[n] = inputs[n] * 2
torch.cuda.synchronize()
say("captured")
del outputs
say("outputs freed")
"""


def test_plain_torch_aborts_freeing_a_sweeps_outputs(tmp_path: Path) -> None:
    """Pins torch's own abort that ends a sweep's process under cudaMallocAsync (torch
    2.11): one graph kept, two more captured into a shared pool on a side stream, then
    their outputs freed, graphs still alive. No pytest, no plugin. When a torch release
    stops aborting here, this fails: drop the note in docs/measuring.md and let the
    suite's sweep free its result."""
    script = tmp_path / "sweep.py"
    script.write_text(PLAIN_TORCH_SWEEP)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(ASYNC),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "captured" in done.stdout, done.stderr[-3000:]
    assert "outputs freed" not in done.stdout
    assert done.returncode == -signal.SIGABRT, done.stderr[-3000:]
    assert "free_impl" in done.stderr and "invalid argument" in done.stderr
