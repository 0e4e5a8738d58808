"""The torch API contract: what pytest-cgmem relies on in each torch it supports (2.4+).

Two halves:

- pure checks against each release's API shape, written down from the released wheels
  (``choose_mechanism`` on stand-in modules shaped like each release, the allocator
  settings as each release reads them, both forms of the per-pool stats);
- checks against the torch installed here, whatever its version: the mechanism and pool
  source it gets are the ones its version should get, installing and removing the hooks
  or wrappers leaves ``torch.cuda.CUDAGraph`` and ``torch.accelerator.Graph`` exactly as
  they were, the allocator settings reader agrees with torch's own getter, and the
  per-pool stat parser reads what this torch's ``memory_stats`` makes of them.

They run on CPU builds (the CUDA wheels import and run without a GPU too). They prove the
selection and parsing logic only; what the figures are on a GPU is tested on a GPU
(tests/gpu).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from pytest_cgmem import pinning  # noqa: E402
from pytest_cgmem.cuda import allocator, graphs, installed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VERSION = installed.version_tuple(str(torch.__version__))
WRAPPED = ("capture_begin", "capture_end", "replay")
HOOK_NAMES = ("capture_start", "capture_end", "instantiate", "replay_start", "replay_end")


# stand-ins shaped like each release's API (from the wheels: /work/notes/torch-api.md) ----
def fake_torch(version: tuple[int, int]) -> Any:
    """A module with the attributes ``choose_mechanism`` reads, as torch ``version`` has
    them: CUDAGraph always; accelerator.Graph (not a CUDAGraph) from 2.12; the global
    graph hooks in torch.cuda.graphs from 2.14; torch.accelerator itself from 2.6."""

    class CUDAGraph:
        def capture_begin(self, pool: object = None) -> None: ...
        def capture_end(self) -> None: ...
        def replay(self) -> None: ...

    graphs_module = types.SimpleNamespace(CUDAGraph=CUDAGraph)
    if version >= (2, 14):
        for name in (*HOOK_NAMES, "destroy"):
            setattr(graphs_module, f"register_graph_{name}_hook", lambda fn: None)
        CUDAGraph.capture_end_pre = lambda self: None  # type: ignore[attr-defined]
        CUDAGraph.capture_end_post = lambda self: None  # type: ignore[attr-defined]
    cuda = types.SimpleNamespace(CUDAGraph=CUDAGraph, graphs=graphs_module)
    module = types.SimpleNamespace(__version__=f"{version[0]}.{version[1]}.0", cuda=cuda)
    if version >= (2, 6):
        module.accelerator = types.SimpleNamespace()
    if version >= (2, 12):

        class Graph:  # torch._C._acceleratorGraph's Python face: no CUDAGraph
            def capture_begin(self) -> None: ...

        module.accelerator.Graph = Graph
    return module


def expected_mechanism(version: tuple[int, int]) -> graphs.Mechanism:
    hooks = version >= (2, 14)
    return graphs.Mechanism(hooks, () if hooks else WRAPPED, version >= (2, 12))


RELEASES = [(2, minor) for minor in range(4, 16)]


@pytest.mark.parametrize("version", RELEASES, ids=lambda v: f"{v[0]}.{v[1]}")
def test_each_release_gets_its_mechanism(version: tuple[int, int]) -> None:
    chosen = graphs.choose_mechanism(fake_torch(version))
    assert chosen == expected_mechanism(version)
    names = {
        (2, 4): "CUDAGraph method wrappers",
        (2, 12): "CUDAGraph method wrappers + torch.accelerator.Graph method wrappers",
        (2, 14): "global graph hooks + torch.accelerator.Graph method wrappers",
    }
    if version in names:
        assert chosen.name == names[version]


def test_partial_hooks_are_not_enough() -> None:
    """A torch with only some of the hooks tracking needs keeps the wrappers."""
    module = fake_torch((2, 14))
    del module.cuda.graphs.register_graph_instantiate_hook
    assert graphs.choose_mechanism(module).wrapped == WRAPPED


def test_an_accelerator_graph_that_is_a_cuda_graph_needs_no_wrappers_of_its_own() -> None:
    module = fake_torch((2, 12))
    module.accelerator.Graph = type("Graph", (module.cuda.CUDAGraph,), {})
    assert not graphs.choose_mechanism(module).accelerator


def test_mechanism_to_dict() -> None:
    assert expected_mechanism((2, 14)).to_dict() == {
        "name": "global graph hooks + torch.accelerator.Graph method wrappers",
        "hooks": True,
        "wrapped": [],
        "accelerator": True,
    }


@pytest.mark.parametrize(
    ("environ", "version", "expected"),
    [
        ({}, (2, 13), ("", "")),
        ({"PYTORCH_CUDA_ALLOC_CONF": "a:1"}, (2, 4), ("a:1", "PYTORCH_CUDA_ALLOC_CONF")),
        ({"PYTORCH_ALLOC_CONF": "b:2"}, (2, 8), ("", "")),  # not read before 2.9
        ({"PYTORCH_ALLOC_CONF": "b:2"}, (2, 9), ("", "")),  # the CUDA allocator ignores it
        ({"PYTORCH_ALLOC_CONF": "b:2"}, (2, 10), ("b:2", "PYTORCH_ALLOC_CONF")),
        (
            {"PYTORCH_CUDA_ALLOC_CONF": "a:1", "PYTORCH_ALLOC_CONF": "b:2"},
            (2, 13),
            ("a:1", "PYTORCH_CUDA_ALLOC_CONF"),  # the CUDA variable wins, whole
        ),
        (
            {"PYTORCH_CUDA_ALLOC_CONF": "", "PYTORCH_ALLOC_CONF": "b:2"},
            (2, 15),
            ("", "PYTORCH_CUDA_ALLOC_CONF"),  # set, though empty: still the one read
        ),
        (
            {"PYTORCH_HIP_ALLOC_CONF": "h:3", "PYTORCH_ALLOC_CONF": "b:2"},
            (2, 13),
            ("h:3", "PYTORCH_HIP_ALLOC_CONF"),  # the HIP variable before the generic one
        ),
        (
            {"PYTORCH_CUDA_ALLOC_CONF": "a:1", "PYTORCH_HIP_ALLOC_CONF": "h:3"},
            (2, 13),
            ("a:1", "PYTORCH_CUDA_ALLOC_CONF"),
        ),
        ({"PYTORCH_HIP_ALLOC_CONF": "h:3"}, (2, 9), ("", "")),  # a CUDA build before 2.10
    ],
)
def test_allocator_settings_as_each_release_reads_them(
    environ: dict[str, str], version: tuple[int, int], expected: tuple[str, str]
) -> None:
    assert installed.alloc_conf_from_env(environ, version) == expected


def test_a_rocm_build_reads_the_hip_variable_in_every_release() -> None:
    environ = {"PYTORCH_HIP_ALLOC_CONF": "h:3"}
    expected = ("h:3", "PYTORCH_HIP_ALLOC_CONF")
    assert installed.alloc_conf_from_env(environ, (2, 4), rocm=True) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.13.0+cpu", (2, 13)), ("2.4.1+cu121", (2, 4)), ("2.15.0a0+git", (2, 15)), ("x", (0, 0))],
)
def test_version_tuple(text: str, expected: tuple[int, int]) -> None:
    assert installed.version_tuple(text) == expected


# per-pool stats: a 2.11-style reading has none; a 2.13-style one has them by pool id
MiB = 2**20
STATS_2_11 = {
    "allocated_bytes": {"all": {"current": 3 * MiB, "peak": 5 * MiB}},
    "reserved_bytes": {"all": {"current": 44 * MiB, "peak": 64 * MiB}},
    "num_ooms": 0,
}
STATS_2_13 = {
    **STATS_2_11,
    "reserved_bytes_by_private_pools": {
        (0, 1): {"all": {"current": 22 * MiB, "peak": 22 * MiB}, "large_pool": {"current": 0}},
        (1, 0): {"all": {"current": 2 * MiB, "peak": 2 * MiB}},
        (0, 2): {"all": {"current": 0, "peak": 8 * MiB}},  # a released pool: torch keeps it
    },
}
FLAT_2_13 = {
    "allocated_bytes.all.current": 3 * MiB,
    "reserved_bytes.all.current": 44 * MiB,
    "reserved_bytes_by_private_pools.0_1.all.current": 22 * MiB,
    "reserved_bytes_by_private_pools.0_1.all.peak": 22 * MiB,
    "reserved_bytes_by_private_pools.0_1.large_pool.current": 0,
    "reserved_bytes_by_private_pools.1_0.all.current": 2 * MiB,
    "reserved_bytes_by_private_pools.0_2.all.current": 0,
}
POOLS = {(0, 1): 22 * MiB, (1, 0): 2 * MiB}


def test_a_2_11_reading_has_no_per_pool_figures() -> None:
    assert allocator.parse_pool_stats(STATS_2_11) is None
    assert allocator.parse_pool_stats({}) is None  # memory_stats before CUDA starts


def test_a_2_13_reading_gives_each_live_pool() -> None:
    assert allocator.parse_pool_stats(STATS_2_13) == POOLS
    assert allocator.parse_pool_stats(FLAT_2_13) == POOLS


def test_per_pool_keys_in_other_shapes() -> None:
    nested = {"reserved_bytes_by_private_pools": {"0_1": {"all": {"current": 5}}}}
    assert allocator.parse_pool_stats(nested) == {(0, 1): 5}
    listed = {"reserved_bytes_by_private_pools": {(0, 1): {"all": {"current": 5}}, "x": {}}}
    assert allocator.parse_pool_stats(listed) == {(0, 1): 5}
    assert allocator.parse_pool_stats({"reserved_bytes_by_private_pools": {}}) == {}


def test_per_pool_entries_that_name_no_pool_or_hold_no_figure_are_left_out() -> None:
    unreadable: dict[Any, Any] = {
        "x": {"all": {"current": 9}},
        (0, 5): 5,
        (0, 1): {"all": {"current": 7}},
        (0, 3): {"all": {}},
        (0, 4): {},
    }
    nested = {"reserved_bytes_by_private_pools": unreadable}
    assert allocator.parse_pool_stats(nested) == {(0, 1): 7}
    flat: dict[Any, int] = {
        5: 1,
        "reserved_bytes_by_private_pools.x.all.current": 9,
        "reserved_bytes_by_private_pools.0_1.all.current": 7,
    }
    assert allocator.parse_pool_stats(flat) == {(0, 1): 7}


@pytest.mark.parametrize("version", RELEASES, ids=lambda v: f"{v[0]}.{v[1]}")
def test_each_release_gets_its_pool_source(version: tuple[int, int]) -> None:
    """Stand-ins carrying each release's memory_stats docstring and memory_snapshot
    signature: per-pool stats from 2.13, light snapshots from 2.11."""

    def memory_stats() -> None: ...

    def memory_snapshot_2_4() -> None: ...

    def memory_snapshot_2_8(mempool_id: object = None) -> None: ...

    def memory_snapshot_2_11(mempool_id: object = None, include_traces: bool = True) -> None: ...

    memory_stats.__doc__ = "allocated_bytes ... reserved_bytes"
    if version >= (2, 13):
        memory_stats.__doc__ += ' ... "reserved_bytes_by_private_pools": nested dictionary'
    snapshot = (
        memory_snapshot_2_11
        if version >= (2, 11)
        else memory_snapshot_2_8
        if version >= (2, 8)
        else memory_snapshot_2_4
    )
    module = types.SimpleNamespace(
        __version__=f"2.{version[1]}.0",
        cuda=types.SimpleNamespace(memory_stats=memory_stats, memory_snapshot=snapshot),
    )
    expected = "stats" if version >= (2, 13) else "light snapshot" if version >= (2, 11) else None
    assert allocator.choose_pool_source(module) == (expected or "snapshot")
    memory_stats.__doc__ = None  # python -OO: the version decides
    assert allocator.choose_pool_source(module) == (expected or "snapshot")


def fake_pool_routing(version: tuple[int, int]) -> Any:
    """A module with what ``routes_to_own_pool`` reads, as torch ``version`` has it:
    MemPool from 2.5, use_mem_pool from 2.6, the per-thread routing it uses from 2.8
    (before, use_mem_pool routed every thread's allocations: pytorch#152861)."""
    cuda = types.SimpleNamespace()
    c = types.SimpleNamespace()
    if version >= (2, 5):
        cuda.MemPool = object
    if version >= (2, 6):
        cuda.use_mem_pool = lambda pool, device=None: None
    if version >= (2, 8):
        c._cuda_beginAllocateCurrentThreadToPool = lambda device, pool: None
    return types.SimpleNamespace(cuda=cuda, _C=c)


@pytest.mark.parametrize("version", RELEASES, ids=lambda v: f"{v[0]}.{v[1]}")
@pytest.mark.parametrize("backend", ["native", "cudaMallocAsync", "hipMallocAsync", "pluggable"])
def test_the_warm_up_gets_a_pool_of_its_own_from_2_8_on_the_native_allocator(
    version: tuple[int, int], backend: str
) -> None:
    expected = version >= (2, 8) and backend == "native"
    assert allocator.routes_to_own_pool(fake_pool_routing(version), backend) is expected


@pytest.mark.parametrize(
    ("handle", "expected"),
    [((0, 3), (0, 3)), ([1, 0], (1, 0)), (types.SimpleNamespace(id=(0, 4)), (0, 4))],
)
def test_pool_handles_of_every_kind(handle: object, expected: tuple[int, int]) -> None:
    """Tuples (graph_pool_handle, g.pool()), lists and MemPool objects (their ``id``)."""
    assert allocator.pool_id(handle) == expected


@pytest.mark.parametrize(
    "handle",
    [None, "12", b"12", "0_1", (0,), object(), (1.5, 2.5), ("1", "2"), (True, False), (1, None)],
)
def test_what_is_no_pool_handle(handle: object) -> None:
    """A string is no pair, though ``"12"`` would unpack as one; nor are floats, strings
    or bools in a pair, which ``int()`` would have made one."""
    assert allocator.pool_id(handle) is None


def test_the_allocator_backend_is_read_once_and_unknown_where_torch_cannot_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def cannot_say() -> str:
        raise RuntimeError("no CUDA")

    monkeypatch.setattr(allocator, "_backend", None)
    monkeypatch.setattr(torch.cuda, "get_allocator_backend", cannot_say)
    assert allocator.backend() == installed.UNKNOWN_BACKEND
    monkeypatch.setattr(torch.cuda, "get_allocator_backend", lambda: "native")
    assert allocator.backend() == "native"
    monkeypatch.setattr(torch.cuda, "get_allocator_backend", lambda: "cudaMallocAsync")
    assert allocator.backend() == "native"  # torch fixes it when CUDA starts


@pytest.mark.skipif(
    VERSION >= installed.SHARED_CONF_SINCE or torch.version.hip is not None,
    reason=f"torch {torch.__version__} reads PYTORCH_HIP_ALLOC_CONF itself (2.10 on, or ROCm)",
)
def test_a_build_that_is_not_rocm_reads_no_hip_settings_before_2_10(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(allocator, "cuda_started", lambda: False)
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.setenv("PYTORCH_HIP_ALLOC_CONF", "expandable_segments:True")
    assert allocator.allocator_settings() == ("", "")


# the torch installed here ---------------------------------------------------------------
def test_installed_torch_gets_the_mechanism_of_its_version() -> None:
    assert graphs.mechanism() == expected_mechanism(VERSION)
    assert graphs.choose_mechanism(torch) == expected_mechanism(VERSION)


def test_installed_torch_routes_the_warm_up_to_its_own_pool_from_2_8() -> None:
    assert allocator.routes_to_own_pool(torch, "native") is (VERSION >= (2, 8))


def test_installed_torch_gets_the_pool_source_of_its_version() -> None:
    expected = "stats" if VERSION >= (2, 13) else "light snapshot" if VERSION >= (2, 11) else None
    assert allocator.choose_pool_source(torch) == (expected or "snapshot")


def _classes() -> list[type]:
    found = [torch.cuda.CUDAGraph]
    graph = getattr(getattr(torch, "accelerator", None), "Graph", None)
    if isinstance(graph, type):
        found.append(graph)
    return found


def _registries() -> dict[str, dict[Any, Any]]:
    module = torch.cuda.graphs
    return {
        name: dict(getattr(module, f"_global_{name}_hooks"))
        for name in HOOK_NAMES
        if hasattr(module, f"_global_{name}_hooks")
    }


def _state() -> tuple[list[dict[str, Any]], dict[str, dict[Any, Any]]]:
    return [dict(cls.__dict__) for cls in _classes()], _registries()


def _same(before: Any, after: Any) -> None:
    classes_before, hooks_before = before
    classes_after, hooks_after = after
    for was, now in zip(classes_before, classes_after, strict=True):
        assert was.keys() == now.keys()
        for name in was:
            assert now[name] is was[name], name
    assert hooks_after == hooks_before


def test_install_and_remove_leave_the_classes_exactly_as_they_were() -> None:
    before = _state()
    chosen = graphs.mechanism()
    with graphs.track():
        inside_classes, inside_hooks = _state()
        assert graphs.hooks_installed()
        cuda_graph = inside_classes[0]
        for name in WRAPPED:
            if chosen.hooks:
                assert cuda_graph[name] is before[0][0][name]  # the class is left alone
            else:
                assert cuda_graph[name].__wrapped__ is before[0][0][name]
        if chosen.accelerator:
            for name in WRAPPED:
                assert inside_classes[1][name].__wrapped__ is before[0][1][name]
        if chosen.hooks:
            for name in HOOK_NAMES:
                assert len(inside_hooks[name]) == len(before[1][name]) + 1
        else:
            assert inside_hooks == before[1]
    _same(before, _state())
    assert not graphs.hooks_installed()


def test_a_method_patched_between_regions_is_wrapped_as_it_is_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wrappers are made once and reused; a method someone replaced since (a test's
    monkeypatch, another tool) gets a wrapper of its own, and is there again afterwards."""
    classes = graphs._wrapped_classes(graphs.mechanism())
    if not classes:
        pytest.skip(f"torch {torch.__version__}: every graph class is seen through hooks")
    cls = classes[0]
    with graphs.track():
        first = cls.__dict__["replay"]
    with graphs.track():
        assert cls.__dict__["replay"] is first  # reused, not made again

    def theirs(graph: Any) -> str:
        return "theirs"

    monkeypatch.setattr(cls, "replay", theirs)
    with graphs.track():
        wrapper = cls.__dict__["replay"]
        assert wrapper is not first and wrapper.__wrapped__ is theirs
    assert cls.__dict__["replay"] is theirs
    assert wrapper(object()) == "theirs"  # with nothing listening, a call passes through


def test_nested_logs_and_a_raising_body_leave_them_as_they_were() -> None:
    before = _state()
    outer = graphs.GraphLog().start()
    with pytest.raises(KeyError), graphs.track():
        inner = graphs.GraphLog().start()
        outer.stop()
        inner.stop()
        raise KeyError("x")
    _same(before, _state())


def test_global_hook_registrations_of_others_are_kept() -> None:
    if not graphs.mechanism().hooks:
        pytest.skip(f"torch {torch.__version__} has no global graph hooks")
    theirs = torch.cuda.graphs.register_graph_replay_start_hook(lambda graph: None)
    try:
        before = _state()
        with graphs.track():
            pass
        _same(before, _state())
        assert theirs.id in torch.cuda.graphs._global_replay_start_hooks
    finally:
        theirs.remove()


ENVIRONS = {
    "all-three": {
        "PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:100",
        "PYTORCH_HIP_ALLOC_CONF": "max_split_size_mb:300",
        "PYTORCH_ALLOC_CONF": "x:1",
    },
    "hip-and-generic": {
        "PYTORCH_HIP_ALLOC_CONF": "max_split_size_mb:300",
        "PYTORCH_ALLOC_CONF": "x:1",
    },
    "generic-only": {"PYTORCH_ALLOC_CONF": "expandable_segments:True"},
    "neither": {},
}

# One interpreter imports torch once (2 s on the CI machine) and forks a child per
# environment before torch has read its allocator settings, which it does at first use.
SETTINGS = """
import json, os, sys, torch
from pytest_cgmem.cuda import allocator
getter = getattr(torch._C, "_accelerator_getAllocatorSettings", None)
for name, environ in json.loads(sys.argv[1]).items():
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        os.environ.update(environ)
        found = {"ours": allocator.allocator_settings(), "torch": getter() if getter else None}
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        print(json.dumps({name: json.loads(pipe.read())}))
"""


@pytest.fixture(scope="module")
def settings_read() -> dict[str, Any]:
    """What our reader and torch's getter say in a fresh torch under each environment."""
    if not hasattr(os, "fork"):
        pytest.skip("reads each environment in a forked child")
    env = {k: v for k, v in os.environ.items() if k not in installed.ALLOC_CONF_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SETTINGS, json.dumps(ENVIRONS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            found |= json.loads(line)
    assert sorted(found) == sorted(ENVIRONS), done.stdout + done.stderr
    return found


@pytest.mark.parametrize("name", list(ENVIRONS))
def test_allocator_settings_reader_agrees_with_this_torch(
    name: str, settings_read: dict[str, Any]
) -> None:
    """Where torch has its own getter (2.12+) it must say what our reader says from the
    environment; before, our reader follows the rules the wheels' sources show."""
    got = settings_read[name]
    expected = installed.alloc_conf_from_env(ENVIRONS[name], VERSION)
    assert tuple(got["ours"]) == expected
    if got["torch"] is not None:
        assert got["torch"] == expected[0]


def test_the_per_pool_parser_reads_what_this_torch_flattens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Feed a 2.13-style nested reading through this torch's own ``memory_stats``."""
    memory = torch.cuda.memory
    monkeypatch.setattr(memory, "memory_stats_as_nested_dict", lambda device=None: STATS_2_13)
    if VERSION < (2, 13):
        # older flatteners join string keys only: this torch has no per-pool stats to read
        assert allocator.choose_pool_source(torch) != "stats"
        with pytest.raises(TypeError):
            torch.cuda.memory_stats()
        monkeypatch.setattr(memory, "memory_stats_as_nested_dict", lambda device=None: STATS_2_11)
        assert allocator.parse_pool_stats(torch.cuda.memory_stats()) is None
        return
    flat = torch.cuda.memory_stats()
    assert "reserved_bytes_by_private_pools.0_1.all.current" in flat
    assert allocator.parse_pool_stats(flat) == POOLS
    assert allocator.parse_pool_stats(STATS_2_13) == POOLS


def test_snapshot_calls_match_this_torch() -> None:
    """The light snapshot is asked for only where memory_snapshot takes include_traces,
    a pool's snapshot by mempool_id only where it takes that (2.8+)."""
    import inspect

    params = inspect.signature(torch.cuda.memory_snapshot).parameters
    assert allocator.light_snapshots(torch) == ("include_traces" in params)
    assert ("include_traces" in params) == (VERSION >= (2, 11))
    assert ("mempool_id" in params) == (VERSION >= (2, 8))


#: the private entry points cuda/ reads (the cheapest readings torch has); CUDA builds only
CUDA_ENTRY_POINTS = (
    "_cuda_getCurrentStream",
    "_cuda_memoryStats",
    "_cuda_clearCublasWorkspaces",
    "_cuda_getCurrentBlasHandle",
    "_cuda_isHistoryEnabled",
    "_cuda_synchronize",
    "_cuda_getDevice",
    "_cuda_resetPeakMemoryStats",
    "_cuda_hasPrimaryContext",
    "_cuda_isInBadFork",
)


def test_the_private_entry_points_the_torch_door_reads_exist() -> None:
    import torch

    if torch.version.cuda is None:
        pytest.skip(f"torch {torch.__version__} is a CPU build: it has no CUDA entry points")
    missing = [name for name in CUDA_ENTRY_POINTS if not hasattr(torch._C, name)]
    assert not missing, f"torch {torch.__version__} lacks {missing}"
    # what torch.cuda.cudart() returns, once CUDA has started: the region's cudaMemGetInfo
    assert hasattr(getattr(torch._C, "_cudart", None), "cudaMemGetInfo")


def test_cuda_started_reads_the_state_torch_s_is_initialized_reads() -> None:
    """``cuda_started`` reads ``torch.cuda._initialized`` and ``torch._C._cuda_isInBadFork``
    as ``torch.cuda.is_initialized()`` does, not calling it (a test may patch it): the
    function reads exactly those, in every release."""
    import inspect

    import torch.cuda

    body = inspect.getsource(torch.cuda.is_initialized).strip().splitlines()[-1].strip()
    assert body == "return _initialized and not _is_in_bad_fork()"
    source = inspect.getsource(torch.cuda)
    assert '_is_in_bad_fork = getattr(torch._C, "_cuda_isInBadFork", lambda: False)' in source
    assert vars(torch.cuda)["_initialized"] is torch.cuda.is_initialized()


def test_what_the_region_reads_instead_of_the_public_getters_is_what_they_return() -> None:
    """Once CUDA has started, the region reads torch.cuda's ``_cudart`` and the
    ``_get_device_properties`` CUDA's start defines, and synchronizes through the binding,
    as ``cudart()``, ``get_device_properties()`` and ``synchronize()`` do after their
    ``_lazy_init()``, which would call a test's patch of ``is_initialized``."""
    import inspect

    import torch.cuda

    def last_line(function: Any) -> str:
        return inspect.getsource(function).strip().splitlines()[-1].strip()

    assert last_line(torch.cuda.cudart) == "return _cudart"
    assert last_line(torch.cuda.get_device_properties).startswith(
        "return _get_device_properties(device)"
    )
    assert "_cudart" in vars(torch.cuda)
    synchronize = [line.strip() for line in inspect.getsource(torch.cuda.synchronize).splitlines()]
    assert synchronize[-3:] == [
        "_lazy_init()",
        "with torch.cuda.device(device):",
        "return torch._C._cuda_synchronize()",
    ]


@given(
    st.lists(
        st.sampled_from(
            ["0", "1", "2", "12", "-1", "+3", "", " 4 ", "x", "1gpu", "GPU-a", "GPU-b", "MIG-c"]
        ),
        max_size=5,
    )
)
def test_visible_entries_agree_with_this_torchs_reading(entries: list[str]) -> None:
    value = ",".join(entries)
    with mock.patch.dict(os.environ, {"CUDA_VISIBLE_DEVICES": value}):
        read = torch.cuda._parse_visible_devices()
    assert pinning.visible_entries(value) == [str(entry) for entry in read]
