"""Graph tracking on whatever torch the GPU machine has: every way to capture is seen,
pool figures agree with the snapshot's sums, and the driver readings the hooks use agree
with cudaMemGetInfo.

Tests for an API the installed torch lacks skip with the version (the accelerator graph:
2.12+, the split capture end and MemPool pools: 2.14+, keep_graph: 2.8+), so the same file
proves each mechanism on the torch it runs on (tests/unit/test_torch_contract.py holds
which mechanism each torch gets).
"""

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
from pytest_cgmem.cuda import allocator, graphs, installed  # noqa: E402
from pytest_cgmem.cuda.nvml import nvml  # noqa: E402

pytestmark = pytest.mark.gpu

MiB = 2**20
QUIET_TRIES = 50
N = 16 * MiB
ROOT = Path(pytest_cgmem.__file__).resolve().parent.parent
VERSION = installed.version_tuple(str(torch.__version__))


def _classes_state():
    found = [dict(torch.cuda.CUDAGraph.__dict__)]
    graph = getattr(getattr(torch, "accelerator", None), "Graph", None)
    if isinstance(graph, type):
        found.append(dict(graph.__dict__))
    return found


@pytest.fixture(autouse=True)
def _left_as_they_were():
    before = _classes_state()
    yield
    after = _classes_state()
    for was, now in zip(before, after, strict=True):
        assert was.keys() == now.keys()
        assert all(now[k] is was[k] for k in was), "a graph class was not restored"
    assert not graphs.hooks_installed()


def _side_stream():
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    return stream


@pytest.mark.device_wide
def test_direct_capture_begin_and_end(cgmem, others_moved):
    """The driver's figure is device-wide: it is checked on a capture during which no other
    process (another xdist worker on the GPU) moved memory."""
    x = torch.ones(N // 4, device="cuda")
    torch.cuda.synchronize()
    stream = _side_stream()
    for _ in range(QUIET_TRIES):
        g = torch.cuda.CUDAGraph()
        with others_moved() as moved, cgmem.graphs() as log, torch.cuda.stream(stream):
            g.capture_begin()
            y = x * 2
            g.capture_end()
        torch.cuda.current_stream().wait_stream(stream)
        assert len(log.captures) == 1
        assert log.captures[0].allocated == N
        assert log.captures[0].pool == graphs.pool_id(g.pool())
        if moved.bytes != 0:
            del g, y  # before the next capture: a y freed inside it would offset the new one
            torch.cuda.empty_cache()
            continue
        assert log.captures[0].driver is not None and log.captures[0].driver >= N
        with cgmem.expect_replay():
            g.replay()
        torch.cuda.synchronize()
        assert float(y[0]) == 2.0
        return
    pytest.skip(f"other processes moved GPU memory during each of {QUIET_TRIES} captures")


def test_keep_graph_capture_is_seen(cgmem):
    try:
        g = torch.cuda.CUDAGraph(keep_graph=True)
    except TypeError:
        pytest.skip(f"torch {torch.__version__} has no keep_graph (2.8+)")
    x = torch.ones(N // 4, device="cuda")
    torch.cuda.synchronize()
    with cgmem.graphs() as log:
        with torch.cuda.graph(g):
            y = x * 3
        g.replay()  # instantiates lazily, then replays
    assert len(log.captures) == 1
    assert log.captures[0].allocated == N
    assert log.replays == 1 and log.captures[0].replays == 1
    torch.cuda.synchronize()
    assert float(y[0]) == 3.0


def test_split_capture_end_is_seen(cgmem):
    g = torch.cuda.CUDAGraph()
    if not hasattr(g, "capture_end_pre"):
        pytest.skip(f"torch {torch.__version__} has no split capture end (2.14+)")
    x = torch.ones(N // 4, device="cuda")
    torch.cuda.synchronize()
    stream = _side_stream()
    with cgmem.graphs() as log:
        with torch.cuda.stream(stream):
            g.capture_begin()
            y = x * 4
            g.capture_end_pre()
            g.instantiate()
            g.capture_end_post()
        torch.cuda.current_stream().wait_stream(stream)
        g.replay()
    assert len(log.captures) == 1
    assert log.captures[0].allocated == N
    assert log.replays == 1
    torch.cuda.synchronize()
    assert float(y[0]) == 4.0


def test_accelerator_graph_is_seen(cgmem):
    graph_class = getattr(getattr(torch, "accelerator", None), "Graph", None)
    if graph_class is None:
        pytest.skip(f"torch {torch.__version__} has no torch.accelerator.Graph (2.12+)")
    assert graphs.mechanism().accelerator
    x = torch.ones(N // 4, device="cuda")
    torch.cuda.synchronize()
    g = graph_class()
    stream = _side_stream()
    with cgmem.graphs() as log:
        with torch.cuda.stream(stream), g:
            y = x * 5
        torch.cuda.current_stream().wait_stream(stream)
        g.replay()
        g.replay()
    assert len(log.captures) == 1
    assert log.captures[0].allocated == N
    assert log.captures[0].pool == graphs.pool_id(g.pool())
    assert log.replays == 2
    torch.cuda.synchronize()
    assert float(y[0]) == 5.0
    pool = g.pool()
    del g, y
    assert cgmem.pool_bytes(pool) == 0


def test_a_mempool_as_the_pool(cgmem):
    if VERSION < (2, 14) or not hasattr(torch.cuda, "MemPool"):
        pytest.skip(f"torch {torch.__version__} takes no MemPool as a graph pool (2.14+)")
    pool = torch.cuda.MemPool()
    x = torch.ones(N // 4, device="cuda")
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with cgmem.graphs() as log, torch.cuda.graph(g, pool=pool):
        y = x * 6
    assert log.captures[0].pool == graphs.pool_id(pool.id)
    assert cgmem.pool_bytes(pool) >= N
    del g, y


def test_mechanism_is_named_in_the_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_one="""
        import pytest, torch

        @pytest.mark.cgmem(graphs=0)
        def test_nothing():
            torch.ones(4, device="cuda")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"cgmem: CUDA graphs seen through {graphs.mechanism().name}; graph pool bytes "
            f"from {allocator.describe_pool_source()}"
        ]
    )


# pool figures: the source the torch offers against the snapshot's own sums ---------------
POOLS = """
import json, torch
from pytest_cgmem.cuda import allocator, graphs

def snapshot_sums():
    held = {}
    for s in torch.cuda.memory._snapshot()["segments"]:
        pid = tuple(s["segment_pool_id"])
        if pid != (0, 0):
            key = f"{s['device']}:{pid[0]},{pid[1]}"
            held[key] = held.get(key, 0) + int(s["total_size"])
    return held

def keyed(figures):
    return {f"{d}:{p[0]},{p[1]}": v for (d, p), v in figures.items()}

lin = torch.nn.Linear(1024, 1024, device="cuda", dtype=torch.float16)
x = torch.randn(512, 1024, device="cuda", dtype=torch.float16)
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    lin(x)
torch.cuda.current_stream().wait_stream(side)
shared = torch.cuda.graph_pool_handle()
keep = []
with graphs.track() as log:
    for pool in (None, shared, shared):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=pool):
            y = torch.relu(lin(x)) * 2
        keep.append((g, y))
    big = torch.cuda.CUDAGraph()
    with torch.cuda.graph(big):
        z = torch.ones(24 * 2**20, device="cuda")
    keep.append((big, z))
torch.cuda.synchronize()
torch.cuda.empty_cache()
truth = snapshot_sums()
result = {
    "source": allocator.pool_source(),
    "truth": truth,
    "ours": keyed(allocator.pool_reserved()),
    "segments": keyed({k: v for k, v in allocator.pool_segments().items() if k[1] != (0, 0)}),
    "log": {f"{p[0]},{p[1]}": v for p, v in log.pool_bytes().items()},
    "totals": {f"{p[0]},{p[1]}": allocator.pool_total(p) for p in log.pools},
    "stats": None,
}
parsed = allocator.parse_pool_stats(allocator.stats(torch.cuda.current_device()))
if parsed is not None:
    result["stats"] = {f"{torch.cuda.current_device()}:{p[0]},{p[1]}": v for p, v in parsed.items()}
print("RESULT " + json.dumps(result))
"""


@pytest.mark.parametrize("conf", [None, "expandable_segments:True"], ids=["native", "expandable"])
def test_pool_figures_agree_with_the_snapshot_sums(conf: str | None) -> None:
    """On any torch: the pool source it gets (per-pool stats on 2.13+, the light snapshot
    on 2.11+, the full one before) equals the sum of each pool's snapshot segments."""
    env = {k: v for k, v in os.environ.items() if k not in installed.ALLOC_CONF_VARS}
    if conf:
        env["PYTORCH_CUDA_ALLOC_CONF"] = conf
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(POOLS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))[7:])
    print(json.dumps(out, indent=1))
    truth = out["truth"]
    assert len(truth) == 3 and all(truth.values())  # two graphs' own pools, a shared one
    assert out["ours"] == truth
    assert out["segments"] == truth
    assert {k.split(":")[1]: v for k, v in truth.items()} == out["log"] == out["totals"]
    expected = "stats" if VERSION >= (2, 13) else "light snapshot" if VERSION >= (2, 11) else None
    assert out["source"] == (expected or "snapshot")
    if VERSION >= (2, 13):
        assert out["stats"] == truth
    else:
        assert out["stats"] is None


@pytest.mark.device_wide
def test_nvml_device_free_moves_with_cudamemgetinfo(others_moved) -> None:
    """The hooks (2.14+) read the driver through NVML during a capture; its device figure
    must move as cudaMemGetInfo's does.

    Both figures are device-wide, and under xdist the suite's other workers share the GPU:
    the comparison is made on a try during which no other process moved memory.
    """
    index = torch.cuda.current_device()
    torch.cuda.synchronize()
    meter = nvml()
    meter.handle(index, allocator.device_uuid(index))
    if meter.device_free(index) is None:
        pytest.skip("NVML cannot read this device's memory")
    for _ in range(QUIET_TRIES):
        torch.cuda.empty_cache()
        with others_moved(index) as moved:
            nvml_before, cuda_before = meter.device_free(index), allocator.mem_info(index)[0]
            block = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")
            torch.cuda.synchronize()
            nvml_after, cuda_after = meter.device_free(index), allocator.mem_info(index)[0]
        del block
        if moved.bytes != 0:
            continue
        assert nvml_before is not None and nvml_after is not None
        nvml_delta, cuda_delta = nvml_before - nvml_after, cuda_before - cuda_after
        assert cuda_delta >= 256 * MiB
        assert abs(nvml_delta - cuda_delta) <= 2 * MiB, (nvml_delta, cuda_delta)
        return
    pytest.skip(f"other processes moved GPU memory during each of {QUIET_TRIES} tries")
