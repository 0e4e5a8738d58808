"""The measuring process's machine: read once, its graph keys once more after torch comes."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

import pytest_cgmem.cuda.machine as machine
from pytest_cgmem.results import runfile
from pytest_cgmem.session import process_machine


def test_the_machine_is_read_once_and_its_graph_keys_once_more_once_torch_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records made before the process imports torch share one machine, with null graph
    keys; the first record after it reads the graph keys into a new one, the identity
    kept; later records read nothing."""
    reads: list[bool] = []

    def machine_info() -> dict[str, Any]:
        imported = sys.modules.get("torch") is not None
        reads.append(imported)
        return {
            "gpus": [f"GPU read {len(reads)}"],
            "graph_tracking": "wrappers" if imported else None,
            "graph_pools": "stats" if imported else None,
        }

    monkeypatch.setattr(machine, "machine_info", machine_info)
    monkeypatch.setattr(runfile, "base_machine", lambda: {"host": "box"})
    monkeypatch.setitem(sys.modules, "torch", None)
    config: Any = types.SimpleNamespace(stash=pytest.Stash())

    first = process_machine(config)
    assert first == {
        "host": "box",
        "gpus": ["GPU read 1"],
        "graph_tracking": None,
        "graph_pools": None,
    }
    assert process_machine(config) is first
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    filled = process_machine(config)
    assert filled == {**first, "graph_tracking": "wrappers", "graph_pools": "stats"}
    assert process_machine(config) is filled
    assert reads == [False, True]
