"""Graph figures through the plugin on CPU: a test hands a sweep's region (built from
literal figures, as a subprocess's run file would give it) to ``cgmem_record``; the run
file, the GAB file with ``--cgmem-gab-sizes`` and the baseline check carry its per-size
bytes. No GPU claim: the figures are given, not measured (tests/gpu/test_graph_outputs.py
measures them)."""

from __future__ import annotations

import json

import pytest

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

MiB = 2**20

SUITE = """
import os
from pytest_cgmem.results import graphfigures

MiB = 2**20

def test_sweep(cgmem_record):
    sizes = [int(s) for s in os.environ.get("SIZES", "256,128,64").split(",")]
    pool = int(os.environ.get("POOL_MIB", "24")) * MiB
    per_size = [{"size": s, "bytes": (pool if i == 0 else 0), "driver": None}
                for i, s in enumerate(sizes)]
    figures = graphfigures.from_sweep({"pool": [0, 1], "pool_bytes": pool,
                                       "per_size": per_size}, 0)
    device = graphfigures.graph_device(0, pool, len(sizes), 0)
    cgmem_record(graphfigures.region("capture_sweep", [device], 0.1, figures))
"""


def test_sweep_region_reaches_run_gab_and_baseline(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_graphs=SUITE)
    result = pytester.runpytest(
        "--cgmem-json=base.json", "--cgmem-gab-json=gab.json", "--cgmem-gab-sizes"
    )
    result.assert_outcomes(passed=1)
    doc = json.loads((pytester.path / "base.json").read_text())
    (region,) = doc["tests"][0]["regions"]
    sizes = region["extra"]["graph_figures"]["sizes"]
    assert [(s["size"], s["bytes"]) for s in sizes] == [(256, 24 * MiB), (128, 0), (64, 0)]
    gab = {e["name"]: e["value"] for e in json.loads((pytester.path / "gab.json").read_text())}
    assert gab == {
        "test_graphs.py::test_sweep [capture_sweep] size 256 - graph_pool": 24.0,
        "test_graphs.py::test_sweep [capture_sweep] size 128 - graph_pool": 0.0,
        "test_graphs.py::test_sweep [capture_sweep] size 64 - graph_pool": 0.0,
        "test_graphs.py::test_sweep [capture_sweep] - graph_pool": 24.0,
    }
    monkeypatch.setenv("SIZES", "256,128")
    monkeypatch.setenv("POOL_MIB", "40")
    result = pytester.runpytest("--cgmem-json=new.json", "--cgmem-baseline=base.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*REGRESSION test_graphs.py::test_sweep: graph_pool 40.00 MiB regressed*",
            "*size vanished test_graphs.py::test_sweep: capture size 64 (0 B) vanished from "
            "'capture_sweep'",
        ]
    )
    findings = json.loads((pytester.path / "new.json").read_text())["tests"][0]["baseline"]
    assert [(s["size"], s["change"]) for s in findings["sizes"]] == [(64, "vanished")]
