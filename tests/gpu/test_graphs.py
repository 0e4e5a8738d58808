"""CUDA graph tracking on a real GPU: captures, replays and pools against ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import pytest_cgmem  # noqa: E402
from pytest_cgmem import EagerFallback, PoolNotReleased  # noqa: E402
from pytest_cgmem.cuda import graphs  # noqa: E402

from . import expandable_segments  # noqa: E402

pytestmark = pytest.mark.gpu  # the project conftest skips these without a GPU (--gpu: fail)

MiB = 2**20
QUIET_TRIES = 50
N = 16 * MiB  # >= 10 MiB: the allocator rounds to 2 MiB, so one segment of exactly N
NAMES = ("capture_begin", "capture_end", "replay")
ROOT = Path(pytest_cgmem.__file__).resolve().parent.parent


def _methods():
    return {name: torch.cuda.CUDAGraph.__dict__.get(name) for name in NAMES}


def _pool_segments_total(pool) -> int:
    """torch's own per-pool snapshot, independent of the plugin's reading."""
    return sum(int(s["total_size"]) for s in torch.cuda.memory_snapshot(mempool_id=pool))


@pytest.fixture(autouse=True)
def _unpatched_after():
    before = _methods()
    yield
    assert _methods() == before, "CUDAGraph methods were not restored"
    assert not graphs.hooks_installed()


@pytest.mark.device_wide
def test_capture_of_exactly_n_bytes(cgmem, others_moved):
    """The driver's figure is device-wide: it is checked on a capture during which no other
    process (another xdist worker on the GPU) moved memory."""
    x = torch.ones(N // 4, device="cuda")  # float32: N bytes, allocated outside the graph
    torch.cuda.synchronize()
    for _ in range(QUIET_TRIES):
        g = torch.cuda.CUDAGraph()
        with others_moved() as moved, cgmem.graphs() as log, torch.cuda.graph(g):
            y = x * 2  # the graph's only allocation: exactly N bytes in its pool
        if moved.bytes != 0:
            del g, y, log  # before the next capture: a y freed inside it would offset the new one
            torch.cuda.empty_cache()
            continue
        assert len(log.captures) == 1
        capture = log.captures[0]
        assert capture.allocated == N
        if expandable_segments():
            assert capture.reserved >= N
        else:
            assert capture.reserved == N
        assert capture.driver is not None and capture.driver >= N
        assert capture.pool == graphs.pool_id(g.pool())
        assert capture.pool != (0, 0)
        assert capture.seconds > 0
        own = _pool_segments_total(g.pool())
        assert log.pool_bytes() == {capture.pool: own}
        assert own == capture.reserved
        assert log.held_at_exit == {capture.pool: own}
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(y, x * 2)
        return
    pytest.skip(f"other processes moved GPU memory during each of {QUIET_TRIES} captures")


def test_pool_figure_is_the_sum_of_its_snapshot_segments(cgmem):
    lin = torch.nn.Linear(1024, 1024, device="cuda", dtype=torch.float16)
    x = torch.randn(512, 1024, device="cuda", dtype=torch.float16)
    side = torch.cuda.Stream()  # warm up before capturing, as torch requires
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.relu(lin(x)) @ lin.weight
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with cgmem.graphs() as log, torch.cuda.graph(g):
        y = torch.relu(lin(x)) @ lin.weight
    pool = graphs.pool_id(g.pool())
    truth = _pool_segments_total(g.pool())
    assert truth > 0
    assert log.pool_bytes()[pool] == truth
    assert cgmem.pool_bytes(g.pool(), release_workspaces=False) == truth
    # the graph is alive: releasing cuBLAS workspaces frees nothing of a live pool
    assert cgmem.pool_bytes(g.pool()) == truth
    assert graphs.pool_segments()[(torch.cuda.current_device(), pool)] == truth
    del y


def test_replays_are_counted(cgmem):
    x = torch.ones(1024, device="cuda")
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = x + 1
    g.replay()  # before the log: not counted
    with cgmem.graphs() as log:
        for _ in range(3):
            g.replay()
    assert log.captures == [] and log.replays == 3
    with cgmem.graphs() as log2:
        h = torch.cuda.CUDAGraph()
        with torch.cuda.graph(h):
            z = y * 3
        for _ in range(5):
            h.replay()
        g.replay()
    assert log2.replays == 6 and log2.captures[0].replays == 5
    torch.cuda.synchronize()
    assert torch.equal(z, (x + 1) * 3)


def test_labels(cgmem):
    x = torch.ones(256, device="cuda")
    sizes = iter([64, 32])
    current = {"size": None}
    with cgmem.graphs(label=lambda: current["size"]) as by_callable, cgmem.graphs() as by_call:
        keep = []
        for size in sizes:
            current["size"] = size
            by_call.label(f"bs={size}")
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = x[:size] * 2
            keep.append((g, out))
    assert [c.label for c in by_callable.captures] == [64, 32]
    assert [c.label for c in by_call.captures] == ["bs=64", "bs=32"]


def test_make_graphed_callables_is_seen(cgmem):
    model = torch.nn.Linear(64, 64, device="cuda")
    x = torch.randn(8, 64, device="cuda", requires_grad=True)
    with cgmem.graphs() as log:
        graphed = torch.cuda.make_graphed_callables(model, (x,))
        captured = len(log.captures)
        out = graphed(x)
        out.sum().backward()
    assert captured == 2  # forward and backward
    assert log.replays >= 2
    assert len(log.pools) == 1


def _run_script(source: str, **env_vars: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run ``source`` in a fresh python with this checkout importable; its RESULT line."""
    env = {**os.environ, **env_vars}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    return done, (json.loads(lines[0][len("RESULT ") :]) if lines else {})


COMPILE = """
import json, torch
from pytest_cgmem.cuda import graphs

def f(x):
    return torch.relu(x) * 2 + 1

compiled = torch.compile(f, mode="reduce-overhead")
with graphs.track() as log:
    for n in (8, 16, 8, 16, 8, 16):
        out = compiled(torch.randn(n, 32, device="cuda"))
    torch.cuda.synchronize()
pools = sorted({str(c.pool) for c in log.captures})
result = {"captures": len(log.captures), "replays": log.replays, "shape": list(out.shape)}
print("RESULT " + json.dumps({**result, "pools": pools}))
"""


BEFORE_CUDA = """
import json, torch
from pytest_cgmem.cuda import graphs

class Graph:
    pass

graph, log = Graph(), graphs.GraphLog()
log._on_capture(graph, 0, (0, 1), 1, 2, None, 0.001)
figures = {
    "pool_bytes": graphs.pool_bytes((0, 1)),
    "log": {str(k): v for k, v in log.pool_bytes().items()},
    "graph_pool": log.figures(0)["graph_pool"],
    "started": torch.cuda.is_initialized(),
}
print("RESULT " + json.dumps(figures))
"""


def test_pool_figures_before_cuda_starts_are_zero_and_start_nothing():
    """A device's stats before CUDA starts raise "Invalid device argument": a pool asked
    about then holds nothing, and asking starts no CUDA."""
    done, out = _run_script(BEFORE_CUDA)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out == {"pool_bytes": 0, "log": {"(0, 1)": 0}, "graph_pool": 0, "started": False}


def test_torch_compile_reduce_overhead_is_seen():
    # a fresh process: pytester's in-process runs restore sys.modules, and a triton
    # imported there cannot be imported again in this one
    done, out = _run_script(COMPILE)
    if done.returncode != 0 and "triton" in done.stderr.lower() and "No module" in done.stderr:
        pytest.skip("torch.compile needs triton, which is not installed here")
    assert done.returncode == 0, done.stderr[-3000:]
    assert out["captures"] >= 1
    assert out["replays"] >= 1
    assert out["shape"] == [16, 32]
    assert len(out["pools"]) >= 1


def test_deleting_the_graph_releases_its_pool(cgmem):
    lin = torch.nn.Linear(1024, 1024, device="cuda", dtype=torch.float16)
    x = torch.randn(512, 1024, device="cuda", dtype=torch.float16)
    lin(x)  # warm-up, as PyTorch asks: first run in a capture, cuBLAS cannot make its handle
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):  # its own side stream: a cuBLAS workspace may land in the pool
        y = lin(x)
    pool = g.pool()
    assert cgmem.pool_bytes(pool, release_workspaces=False) > 0
    del g
    with pytest.raises(PoolNotReleased) as info:  # the output still lives in the pool
        cgmem.assert_pool_released(pool)
    assert f"pool {graphs.pool_id(pool)} holds" in str(info.value)
    del y
    assert cgmem.pool_bytes(pool) == 0  # empty cache + cuBLAS workspace clear
    cgmem.assert_pool_released(pool)


def test_log_lists_pools_still_holding_memory_at_exit(cgmem):
    x = torch.ones(N // 4, device="cuda")
    with cgmem.graphs() as log:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = x * 2
        kept = torch.cuda.CUDAGraph()
        with torch.cuda.graph(kept):
            z = x * 3
        del g, y  # released inside the log
    assert list(log.held_at_exit) == [graphs.pool_id(kept.pool())]
    assert log.held_at_exit[graphs.pool_id(kept.pool())] >= N
    assert "still holds" in log.describe()
    del kept, z


def test_patches_restored_after_an_exception_inside_a_capture(cgmem):
    before = _methods()
    x = torch.ones(1024, device="cuda")
    g = torch.cuda.CUDAGraph()
    with (
        pytest.raises(RuntimeError, match="inside capture"),
        cgmem.graphs() as log,
        torch.cuda.graph(g),
    ):
        _ = x * 2
        raise RuntimeError("inside capture")
    assert _methods() == before
    assert len(log.captures) == 1


def test_region_and_marked_figures(cgmem):
    x = torch.ones(N // 4, device="cuda")
    keep = []
    with cgmem.measure("capture") as m:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = x * 2
        g.replay()
        g.replay()
        keep.append((g, y))
    assert m.graphs == 1
    assert m.replays == 2
    if expandable_segments():
        assert m.graph_pool >= N
    else:
        assert m.graph_pool == N
    with cgmem.measure("no graphs") as quiet:
        _ = x + 1
    assert quiet.graphs == 0 and quiet.graph_pool == 0 and quiet.replays == 0


def test_capture_sweep(cgmem):
    mlp = torch.nn.Sequential(
        torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512)
    ).to("cuda", torch.float16)
    sizes = [1, 2, 4, 8, 16, 32, 64]
    with torch.no_grad():
        result = cgmem.capture_sweep(
            mlp, sizes, lambda n: torch.randn(n, 512, device="cuda", dtype=torch.float16)
        )
    assert result.sizes == (64, 32, 16, 8, 4, 2, 1)
    assert result.captures[64].number == 1  # largest first
    assert set(result.graphs) == set(sizes)
    assert result.pool is not None
    assert result.pool_bytes == _pool_segments_total(result.pool)
    assert sum(result.bytes.values()) == result.pool_bytes  # a fresh pool: all added here
    assert result.bytes[64] > 0
    assert result.seconds > 0 and result.warmup_seconds > 0
    with cgmem.expect_replay("batch 8") as log:
        out = result.replay(8)
    assert log.replays == 1
    with torch.no_grad():
        expected = mlp(result.inputs[8])
    torch.cuda.synchronize()
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)
    assert result.padded(5) == 8 and result.padded(65) is None
    assert "pool" in result.table()
    pool = result.pool
    result.release()
    del out, log
    assert cgmem.pool_bytes(pool) == 0


@pytest.mark.device_wide
def test_capture_sweep_alone_reads_the_driver_once_for_the_whole_sweep(cgmem, others_moved):
    """With no log listening, cudaMemGetInfo is read before and after, not per capture.

    The driver figure is device-wide, so it is checked on a sweep during which no other
    process (another xdist worker on the GPU) moved memory: NVML's per-process figures lag
    the driver's, and a correction by them fell short under ``-n 12``."""
    big, small = 1 << 20, 1 << 19
    for _ in range(QUIET_TRIES):
        with others_moved() as moved:
            result = cgmem.capture_sweep(
                lambda x: x * 2, [small, big], lambda n: torch.ones(n, device="cuda")
            )
        assert result.driver_bytes == {big: None, small: None}
        assert result.captures[big].allocated == 4 * MiB
        assert result.captures[small].allocated == 2 * MiB
        assert result.driver_total is not None
        assert "driver +" in result.table()
        pool = result.pool
        if moved.bytes != 0:
            result.release()
            continue
        assert result.driver_total >= result.pool_bytes == sum(result.bytes.values()) > 0
        result.release()
        assert cgmem.pool_bytes(pool) == 0
        return
    pytest.skip(f"other processes moved GPU memory during each of {QUIET_TRIES} sweeps")


def test_capture_sweep_into_a_given_pool(cgmem):
    pool = torch.cuda.graph_pool_handle()
    result = cgmem.capture_sweep(lambda x: x * 2, [4, 8], lambda n: torch.ones(n, device="cuda"))
    other = cgmem.capture_sweep(
        lambda x: x + 1, [16], lambda n: torch.ones(n, device="cuda"), warmup=0, pool=pool
    )
    assert other.pool == graphs.pool_id(pool)
    assert result.pool != other.pool


@pytest.mark.device_wide
def test_capture_sweep_chained_figures_are_exact_and_reach_listening_logs(cgmem, others_moved):
    """One reading per capture, chained: still each capture's own bytes, seen by every log.

    The driver figure is device-wide, so it is checked on a sweep during which no other
    process (another xdist worker on the GPU) moved memory: a correction by NVML's
    per-process figures fell short under ``-n 12`` (by 3.7 MB, with 795 MB given back by
    others over the sweep)."""
    big, small = 1 << 20, 1 << 19  # float32 outputs of exactly 4 MiB and 2 MiB
    for _ in range(QUIET_TRIES):
        with others_moved() as moved, cgmem.graphs() as log:
            assert graphs.hooks_installed()
            result = cgmem.capture_sweep(
                lambda x: x * 2, [small, big], lambda n: torch.ones(n, device="cuda")
            )
            assert not graphs._hooks.busy
        assert result.sizes == (big, small)
        assert result.captures[big].allocated == 4 * MiB  # its output, nothing else
        assert result.captures[small].allocated == 2 * MiB
        assert sum(result.bytes.values()) == result.pool_bytes == _pool_segments_total(result.pool)
        if not expandable_segments():
            assert result.bytes[small] == 0  # fits in the 20 MiB segment the first one made
        assert result.driver_bytes[big] is not None
        assert 0 < result.tracking_seconds < result.seconds
        seen = [(c.allocated, c.reserved, c.driver, c.pool) for c in log.captures]
        ours = [result.captures[s] for s in result.sizes]
        assert seen == [(c.allocated, c.reserved, c.driver, c.pool) for c in ours]
        assert log.pools == [result.pool]
        pool = result.pool
        if moved.bytes != 0:
            result.release()
            continue
        assert result.driver_bytes[big] >= result.bytes[big]  # segments + the instantiated graph
        with cgmem.expect_replay() as replays:
            out = result.replay(big)
        assert replays.replays == 1
        torch.cuda.synchronize()
        assert float(out[0]) == 2.0
        result.release()
        del out
        assert cgmem.pool_bytes(pool) == 0
        return
    pytest.skip(f"other processes moved GPU memory during each of {QUIET_TRIES} sweeps")


def test_capture_sweep_restores_the_hooks_when_fn_raises(cgmem):
    def boom(x):
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("boom")
        return x * 2

    with cgmem.graphs() as log:
        with pytest.raises(RuntimeError, match="boom"):
            cgmem.capture_sweep(boom, [8], lambda n: torch.ones(n, device="cuda"))
        assert not graphs._hooks.busy
        g = torch.cuda.CUDAGraph()
        x = torch.ones(8, device="cuda")
        with torch.cuda.graph(g):
            y = x * 3
        g.replay()
    assert len(log.captures) == 1 and log.replays == 1  # the log still sees other graphs
    del g, y


def test_capture_sweep_ends_the_capture_when_fn_raises_at_a_later_size(cgmem):
    """Sizes after the first are captured directly; a failure there must not leave the
    stream capturing, and the original error is what the caller sees."""

    def fails_at_4(x):
        if x.numel() == 4 and torch.cuda.is_current_stream_capturing():
            raise ValueError("size 4 failed")
        return x * 2

    with pytest.raises(ValueError, match="size 4 failed"):
        cgmem.capture_sweep(fails_at_4, [4, 8], lambda n: torch.ones(n, device="cuda"))
    assert not torch.cuda.is_current_stream_capturing()
    assert not graphs._hooks.busy
    result = cgmem.capture_sweep(lambda x: x + 1, [4, 8], lambda n: torch.ones(n, device="cuda"))
    torch.cuda.synchronize()
    assert float(result.replay(4)[0]) == 2.0
    result.release()


def test_expect_replay_fails_when_the_work_ran_eagerly(cgmem):
    x = torch.ones(1024, device="cuda")
    with pytest.raises(EagerFallback, match="ran eagerly"), cgmem.expect_replay("batch 1024"):
        _ = x * 2  # no graph
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = x * 2
    with cgmem.expect_replay():
        g.replay()
    with pytest.raises(EagerFallback, match="1 CUDA graph replay"), cgmem.expect_replay(at_least=2):
        g.replay()
    del y


MARKED = """
import pytest
import torch

N = 16 * 2**20
KEEP = []


@pytest.fixture(autouse=True)
def release_kept():
    yield  # after the measured call: its graphs must not outlive this in-process run
    KEEP.clear()


def capture(factor):
    x = torch.ones(N // 4, device="cuda")
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = x * factor
    KEEP.append((g, y, x))


@pytest.mark.cgmem(graph_pool="8 MiB")
def test_pool_over():
    capture(2)


@pytest.mark.cgmem(graph_pool="64 MiB", graphs=1)
def test_within():
    capture(3)


@pytest.mark.cgmem(graphs=1)
def test_too_many_graphs():
    capture(4)
    capture(5)


@pytest.mark.cgmem(graph_pool=0, graphs=2, replays=2)
def test_released_pool_passes():
    x = torch.ones(N // 4, device="cuda")
    for _ in range(2):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = x * 2
        g.replay()
        del g, y
"""


def test_marked_budgets_pass_and_fail_for_real(pytester):
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    pool = "* MiB" if expandable_segments() else "16.00 MiB"
    result.stdout.fnmatch_lines(
        [
            f"*cgmem: graph_pool {pool} exceeds budget 8.00 MiB*on cuda:*",
            "*cgmem: graphs 2 exceeds budget 1 (+100.0%) on cuda:*",
        ]
    )
    result.stdout.fnmatch_lines(["*graph_pool*graphs*replays*"])  # the summary's columns


SUBPROCESS = """
import json, torch
from pytest_cgmem.cuda import graphs
from pytest_cgmem.cuda.nvml import nvml
N = 16 * 2**20
QUIET_TRIES = 20
x = torch.ones(N // 4, device="cuda")
torch.cuda.synchronize()
meter = nvml()
meter.handle(0, torch.cuda.get_device_properties(0).uuid)
for attempt in range(QUIET_TRIES):  # other xdist workers move the driver's figure: take a quiet try
    others_before = meter.others(meter.processes(0))
    g = torch.cuda.CUDAGraph()
    with graphs.track() as log:
        with torch.cuda.graph(g):
            y = x * 2
        g.replay()
    others_moved = meter.others(meter.processes(0)) - others_before
    if others_moved == 0 or attempt == QUIET_TRIES - 1:
        break
    del g, y, log
    torch.cuda.empty_cache()
pool = g.pool()
own = [s for s in torch.cuda.memory_snapshot(mempool_id=pool)]
c = log.captures[0]
out = {
    "allocated": c.allocated, "reserved": c.reserved, "driver": c.driver,
    "others_moved": others_moved,
    "replays": log.replays, "pool_bytes": log.pool_bytes()[c.pool],
    "own": sum(int(s["total_size"]) for s in own),
    "expandable": [bool(s.get("is_expandable")) for s in own],
}
del g, y
out["released"] = graphs.pool_bytes(pool)
print("RESULT " + json.dumps(out))
"""


@pytest.mark.device_wide
def test_expandable_segments_in_a_subprocess():
    done, out = _run_script(SUBPROCESS, PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True")
    assert done.returncode == 0, done.stderr
    assert out["allocated"] == N
    assert out["reserved"] >= N
    assert out["driver"] - out["others_moved"] >= N  # net of the other xdist workers
    assert out["replays"] == 1
    assert out["pool_bytes"] == out["own"] >= N
    # whether a graph's private pool uses expandable segments depends on the torch version
    # (older allocators keep cudaMalloc for private pools); the figures must hold either way
    assert out["expandable"]
    assert out["released"] == 0


LINGERING = """
import pytest, torch

NAMES = ("capture_begin", "capture_end", "replay")
TORCHS = {name: torch.cuda.CUDAGraph.__dict__.get(name) for name in NAMES}


def as_torch_made_it():
    return {name: torch.cuda.CUDAGraph.__dict__.get(name) for name in NAMES} == TORCHS


def capture_and_replay(replays=1):
    x = torch.ones(1024, device="cuda")
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = x * 2
    for _ in range(replays):
        g.replay()
    torch.cuda.synchronize()
    del g, y


@pytest.fixture
def graph_between_regions():
    capture_and_replay()  # setup: outside the call's region
    yield as_torch_made_it()
    capture_and_replay()


@pytest.mark.cgmem
def test_first_marked():
    assert not as_torch_made_it()
    capture_and_replay()


@pytest.mark.cgmem
def test_next_marked_takes_the_tracking_up(graph_between_regions):
    capture_and_replay(replays=2)


@pytest.mark.cgmem
def test_marked_without_graphs(graph_between_regions):
    pass


def test_unmarked_runs_with_torchs_classes(graph_between_regions):
    assert graph_between_regions and as_torch_made_it()
    capture_and_replay()


@pytest.mark.cgmem
def test_marked_after_an_unmarked_one():
    capture_and_replay(replays=3)
"""


def test_marked_tests_share_one_tracking_and_others_see_torchs_classes(pytester):
    """A marked test leaves the graph tracking installed for the next marked test; a test
    that is not measured, the captures between regions and the run's end see none of it."""
    pytester.makepyfile(test_lingering=LINGERING)
    before = _methods()
    result = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-json=run.json")
    result.assert_outcomes(passed=5)
    assert _methods() == before
    assert not graphs.hooks_installed()
    document = json.loads((pytester.path / "run.json").read_text())
    figures = {
        t["nodeid"].split("::")[1]: (
            t["regions"][0]["devices"][0]["graphs"],
            t["regions"][0]["devices"][0]["replays"],
        )
        for t in document["tests"]
    }
    assert figures == {
        "test_first_marked": (1, 1),
        "test_next_marked_takes_the_tracking_up": (1, 2),
        "test_marked_without_graphs": (0, 0),
        "test_marked_after_an_unmarked_one": (1, 3),
    }
