"""Graph figures in every output, on a real GPU: a ``capture_sweep`` and a
``cgmem.graphs()``-only test in the run file and the GAB file, and a second run with one
size removed and the pool grown past tolerance in ``cgmem compare``. Each run is a
subprocess, so each has its own fresh CUDA context."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import pytest_cgmem
from pytest_cgmem.cli import main
from pytest_cgmem.results import graphfigures, runfile

pytestmark = pytest.mark.gpu  # the project conftest skips these without a GPU (--gpu: fail)

MiB = 2**20

SUITE = """
import os
import torch

SIZES = [int(s) for s in os.environ.get("CGMEM_SIZES", "64,32,16").split(",")]
WIDTH = int(os.environ.get("CGMEM_WIDTH", "4096"))

def model(x):  # n x 4*WIDTH floats: the pool grows with WIDTH
    return (x * 2).repeat(1, 4).relu()

def test_sweep(cgmem):
    result = cgmem.capture_sweep(
        model, SIZES, lambda n: torch.ones(n, WIDTH, device="cuda"), warmup=1
    )
    assert result.pool_bytes

def test_graphs_only(cgmem):
    x = torch.ones(256, 1024, device="cuda")
    side = torch.cuda.Stream()  # warm up as torch's docs say: cuBLAS can't start in a capture
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x @ x.T
    torch.cuda.current_stream().wait_stream(side)
    with cgmem.graphs() as log:
        for size in (256, 128):
            log.label(size)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                y = x[:size] @ x[:size].T
            g.replay()
    torch.cuda.synchronize()
    del g, y
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(pytest_cgmem.__file__).parents[1]), prepend=os.pathsep
    )
    monkeypatch.delenv("CGMEM_SIZES", raising=False)
    monkeypatch.delenv("CGMEM_WIDTH", raising=False)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def load(path: Path) -> dict[str, Any]:
    doc = runfile.load_run(path)
    return doc


def regions(doc: dict[str, Any], test: str) -> dict[str, dict[str, Any]]:
    (entry,) = [t for t in doc["tests"] if t["nodeid"].endswith("::" + test)]
    return {r["label"]: r for r in entry["regions"]}


def test_sweep_and_graphs_only_tests_reach_the_run_and_gab_files(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess(
        "--cgmem-json=run.json", "--cgmem-gab-json=gab.json", "--cgmem-gab-sizes"
    )
    result.assert_outcomes(passed=2)
    doc = load(suite.path / "run.json")
    sweep = regions(doc, "test_sweep")["capture_sweep"]
    figures = sweep["extra"]["graph_figures"]
    assert figures["source"] == "capture_sweep" and figures["captures"] == 3
    sizes = graphfigures.sizes_of(sweep["extra"])
    assert list(sizes) == [64, 32, 16]
    assert sizes[64]["bytes"] > 0  # the largest size made the pool
    assert sum(r["bytes"] for r in sizes.values()) == figures["pools"][0]["bytes"]
    (device,) = sweep["devices"]
    assert device["graph_pool"] == figures["pools"][0]["bytes"] and device["graphs"] == 3
    assert device["peak"] is None and device["device_source"] == "graphs"

    log = regions(doc, "test_graphs_only")["graphs"]
    log_figures = log["extra"]["graph_figures"]
    assert log_figures["captures"] == 2 and log_figures["replays"] == 2
    assert [s["size"] for s in log_figures["sizes"]] == [256, 128]
    assert log["devices"][0]["graphs"] == 2 and log["devices"][0]["replays"] == 2

    gab = {e["name"]: e["value"] for e in json.loads((suite.path / "gab.json").read_text())}
    assert gab["test_suite.py::test_sweep [capture_sweep] - graph_pool"] > 0
    assert "test_suite.py::test_sweep [capture_sweep] size 64 - graph_pool" in gab
    assert "test_suite.py::test_graphs_only [graphs] size 256 - graph_pool" in gab
    assert "test_suite.py::test_graphs_only [graphs] - graph_pool" in gab


def test_compare_names_a_vanished_size_and_a_grown_pool(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    suite.runpytest_subprocess("--cgmem-json=base.json").assert_outcomes(passed=2)
    monkeypatch.setenv("CGMEM_SIZES", "64,32")  # 16 removed
    monkeypatch.setenv("CGMEM_WIDTH", "16384")  # 4x wider: the pool grows from ~6 to ~24 MiB
    result = suite.runpytest_subprocess("--cgmem-json=new.json", "--cgmem-baseline=base.json")
    # the grown pool fails the baseline; the vanished size is reported in the summary
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*size vanished *test_sweep: capture size 16*vanished from*"])
    code = main(["compare", str(suite.path / "base.json"), str(suite.path / "new.json")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "graph_pool" in out and "REGRESSION" in out
    assert "size vanished: test_suite.py::test_sweep [capture_sweep] size 16" in out
    assert "per-size bytes: test_suite.py::test_sweep [capture_sweep]" in out
