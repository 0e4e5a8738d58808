"""CUDA graph tracking: captures, replays and pools; capture sweeps; eager-fallback checks.

GPU side, imported lazily (never at plugin import time). How graphs are seen depends on
the torch (``choose_mechanism``, the one place that decides):

- torch 2.14 and newer: torch's global graph hooks (``torch.cuda.graphs.
  register_graph_{capture_start,capture_end,instantiate,replay_start,replay_end}_hook``),
  which fire from ``torch.cuda.CUDAGraph`` itself; the class is left untouched;
- older torch: wrappers around three methods of ``torch.cuda.CUDAGraph`` on the class,
  ``capture_begin``, ``capture_end`` and ``replay`` (Python methods in every release);
- where ``torch.accelerator.Graph`` exists (2.12+), which is no ``CUDAGraph`` and fires
  no global hook, the same three wrappers on that class too.

Either way every graph is seen whoever captures it: ``torch.cuda.graph``, direct calls
(the split ``capture_end_pre``/``capture_end_post`` included), ``torch.cuda.
make_graphed_callables`` and ``torch.compile(mode="reduce-overhead")``. Hooks and wrappers
are installed while at least one log listens and removed when the last one stops, also
when the body raised, leaving the classes as they were. Pool bytes come from
``allocator.pool_reserved`` (per-pool stats or snapshot segments), read only when a
capture happened.
"""

from __future__ import annotations

import inspect
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import torch

from ..checks.graph_sizes import check_description, format_sizes, pad_to_captured
from ..failures import EagerFallback, FigureUnavailable, PoolNotReleased
from ..results import graphfigures
from ..results.records import RegionResult
from ..units import MAX_FIGURE, CgmemUsageError, as_whole, format_size, short_repr
from . import allocator, count_measurement
from .allocator import PoolId, pool_id
from .allocator import pool_segments as pool_segments  # read here by tests and benchmarks
from .nvml import nvml

_METHODS = ("capture_begin", "capture_end", "replay")
_HOOKS = ("capture_start", "capture_end", "instantiate", "replay_start", "replay_end")
_MISSING = object()


# which mechanism ------------------------------------------------------------------------
@dataclass(frozen=True)
class Mechanism:
    """How graph captures and replays are seen on a torch (``choose_mechanism``).

    ``hooks``: torch's global graph hooks; ``wrapped``: the ``torch.cuda.CUDAGraph``
    methods wrapped instead; ``accelerator``: ``torch.accelerator.Graph``'s methods
    wrapped as well.
    """

    hooks: bool
    wrapped: tuple[str, ...]
    accelerator: bool

    @property
    def name(self) -> str:
        parts = ["global graph hooks" if self.hooks else "CUDAGraph method wrappers"]
        if self.accelerator:
            parts.append("torch.accelerator.Graph method wrappers")
        return " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hooks": self.hooks,
            "wrapped": list(self.wrapped),
            "accelerator": self.accelerator,
        }


def choose_mechanism(torch_module: Any) -> Mechanism:
    """The best way to see graphs on ``torch_module``: pure, it reads only attributes.

    Global hooks where ``torch.cuda.graphs`` has every ``register_graph_*_hook`` this
    tracking needs (torch 2.14+), else method wrappers on ``torch.cuda.CUDAGraph``; and
    wrappers on ``torch.accelerator.Graph`` where that class exists and is not a
    ``CUDAGraph`` (whose hooks or wrappers would see it already).
    """
    cuda = getattr(torch_module, "cuda", None)
    module = getattr(cuda, "graphs", None)
    hooks = all(callable(getattr(module, f"register_graph_{name}_hook", None)) for name in _HOOKS)
    cuda_graph = getattr(cuda, "CUDAGraph", None)
    graph = getattr(getattr(torch_module, "accelerator", None), "Graph", None)
    accelerator = isinstance(graph, type) and not (
        isinstance(cuda_graph, type) and issubclass(graph, cuda_graph)
    )
    return Mechanism(hooks, () if hooks else _METHODS, accelerator)


_mechanism: Mechanism | None = None


def mechanism() -> Mechanism:
    """This process's mechanism: ``choose_mechanism`` of the torch imported here."""
    global _mechanism
    if _mechanism is None:
        _mechanism = choose_mechanism(torch)
    return _mechanism


def _wrapped_classes(chosen: Mechanism) -> list[type]:
    classes: list[type] = []
    if chosen.wrapped:
        classes.append(torch.cuda.CUDAGraph)
    if chosen.accelerator:
        classes.append(torch.accelerator.Graph)
    return classes


_graph_devices: dict[int, tuple[weakref.ref[Any], int]] = {}
"""By ``id``: each graph seen captured, weakly, and the device it was captured on, kept
beside it (not on it; by ``id``, as a subclass may define ``__eq__`` and no hash)."""


def _remember_device(graph: Any, device: int) -> None:
    key = id(graph)
    try:
        ref = weakref.ref(graph, lambda _: _graph_devices.pop(key, None))
    except TypeError:  # not weakly referenceable: its replays count on the current device
        return
    _graph_devices[key] = (ref, device)


def _known_device(graph: Any) -> int | None:
    entry = _graph_devices.get(id(graph))
    return entry[1] if entry is not None and entry[0]() is graph else None


# one capture ----------------------------------------------------------------------------
def _growth(before: int, after: int) -> int | None:
    """An allocator figure's growth across a capture; None under cudaMallocAsync, whose
    captured allocations become graph memory the allocator's counters do not hold."""
    return None if allocator.is_async_backend() else after - before


@dataclass
class Capture:
    """One CUDA graph capture as a log saw it.

    ``allocated`` and ``reserved`` are the allocator's growth across the capture (the live
    tensors it left behind, and the segments it added to the pool), None where the
    allocator cannot say (``backend:cudaMallocAsync``); ``driver`` is the device's used
    memory growth as the driver saw it (pool segments plus the instantiated graph), None
    where it could not be read safely.
    """

    number: int
    device: int
    pool: PoolId | None
    allocated: int | None
    reserved: int | None
    driver: int | None
    seconds: float
    label: object = None
    replays: int = 0

    @property
    def bytes(self) -> int | None:
        """Bytes this capture added to its pool (allocator reserved growth)."""
        return self.reserved

    def describe(self) -> str:
        label = "" if self.label is None else f" [{_plain(self.label)}]"
        return (
            f"capture {self.number}{label} on cuda:{self.device} pool {self.pool}: "
            f"+{_size(self.reserved)} reserved, +{_size(self.allocated)} allocated, "
            f"driver +{_size(self.driver)}, {self.seconds * 1000:.1f} ms, {self.replays} replays"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the label as it is when JSON can carry it, else its str)."""
        return {
            "number": self.number,
            "device": self.device,
            "pool": None if self.pool is None else list(self.pool),
            "allocated": self.allocated,
            "reserved": self.reserved,
            "driver": self.driver,
            "seconds": self.seconds,
            "label": _plain(self.label),
            "replays": self.replays,
        }


def _size(value: int | None) -> str:
    return "n/a" if value is None else format_size(value)


def _plain(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_FIGURE:
        return short_repr(value)  # no run file holds the int (nor str() one of 4300 digits)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass
class _Pending:
    device: int
    pool: PoolId | None
    allocated: int
    reserved: int
    free: int | None
    t0: float
    ended: bool = False
    allocated_end: int = 0
    reserved_end: int = 0


class _Hooks:
    """The one installation (hooks or wrappers, ``mechanism()``), shared by every log."""

    def __init__(self) -> None:
        self.listeners: list[GraphLog] = []
        # (class, method, what the class itself held: _MISSING if inherited, the method
        # as looked up, its wrapper)
        self.patches: list[tuple[type, str, Any, Any, Callable[..., Any]]] = []
        self.wrapped = False
        self._makers: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
            "capture_begin": self._wrap_begin,
            "capture_end": self._wrap_end,
            "replay": self._wrap_replay,
        }
        self.handles: list[Any] = []
        #: (class, method, what to put back, our wrapper) where code patched over a wrapper
        #: before we took it off: undoing that patch later puts our wrapper back
        self.displaced: list[tuple[type, str, Any, Callable[..., Any]]] = []
        self.pending: dict[int, _Pending] = {}
        self.replaying: dict[int, list[BaseException | None]] = {}
        self.capturing = 0
        self.busy = False  # inside one of our wrappers, or a sweep: pass calls through
        self.last_error: Exception | None = None

    # installation --------------------------------------------------------------------
    def add(self, listener: GraphLog) -> None:
        if not self.listeners and not self._in_place():
            self._uninstall()
            self._install()
        self.listeners.append(listener)

    def remove(self, listener: GraphLog, *, linger: bool = False) -> None:
        """Stop ``listener``; the last one out removes the installation unless it
        ``linger``s, to be taken up by the next listener (``release()`` removes it)."""
        if listener in self.listeners:
            self.listeners.remove(listener)
        if not self.listeners:
            if linger:
                self._idle()
            else:
                self._uninstall()

    def release(self) -> None:
        """Remove a lingering installation that no listener uses."""
        if not self.listeners and self.installed:
            self._uninstall()
        self.restore_displaced()

    def restore_displaced(self) -> None:
        """Take off a wrapper of ours that came back after we had removed the installation.

        Code that patches over a wrapper inside a region and undoes its patch after the
        region ended (``monkeypatch`` at teardown) puts back what it saw, our wrapper:
        without the plugin it would have put back torch's own method, so that goes back.
        """
        kept = []
        for entry in self.displaced:
            cls, name, before, wrapper = entry
            now = cls.__dict__.get(name, _MISSING)
            if now is wrapper and not (self.wrapped and self._wraps(cls, name, wrapper)):
                if before is _MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, before)
            elif now is not before:
                kept.append(entry)  # still patched over: it may come back later
        self.displaced = kept

    def _wraps(self, cls: type, name: str, wrapper: Callable[..., Any]) -> bool:
        return any(p[0] is cls and p[1] == name and p[4] is wrapper for p in self.patches)

    def _in_place(self) -> bool:
        """Whether the installation is whole: every hook registered, every wrapper still
        the class's own attribute (code may have patched over one since)."""
        chosen = mechanism()
        if chosen.hooks and not self.handles:
            return False
        if not self.wrapped:
            return not (chosen.wrapped or chosen.accelerator)
        for cls, name, _, _, wrapper in self.patches:  # noqa: SIM110 (each region's start: all() over a generator costs more)
            if cls.__dict__.get(name) is not wrapper:
                return False
        return True

    def _install(self) -> None:
        chosen = mechanism()
        if self.displaced:
            self.restore_displaced()
        try:
            if chosen.hooks:
                self._register_hooks()
            if chosen.wrapped or chosen.accelerator:
                self._wrap_methods(chosen)
        except BaseException:
            self._uninstall()
            raise

    def _register_hooks(self) -> None:
        module: Any = torch.cuda.graphs
        callbacks = {
            "capture_start": self._hook_capture_start,
            "capture_end": self._hook_capture_end,
            "instantiate": self._hook_instantiate,
            "replay_start": self._hook_replay_start,
            "replay_end": self._hook_replay_end,
        }
        for name in _HOOKS:
            self.handles.append(getattr(module, f"register_graph_{name}_hook")(callbacks[name]))
        if allocator.cuda_initialized():
            with suppress(Exception):
                _find_nvml_handle(allocator.current_device())

    def _wrap_methods(self, chosen: Mechanism) -> None:
        """Put the wrappers on. A region installs and removes them each time, so the
        patches are worked out once, and again only where a method changed since."""
        patches = self.patches
        stale = not patches
        for cls, name, before, original, _ in patches:
            if cls.__dict__.get(name, _MISSING) is not before or getattr(cls, name) is not original:
                stale = True
                break
        if stale:
            patches.clear()
            for cls in _wrapped_classes(chosen):
                for name, make in self._makers.items():
                    original = getattr(cls, name)
                    patches.append(
                        (cls, name, cls.__dict__.get(name, _MISSING), original, make(original))
                    )
        for cls, name, _, _, wrapper in patches:
            setattr(cls, name, wrapper)
        self.wrapped = True

    def _uninstall(self) -> None:
        while self.handles:
            self.handles.pop().remove()
        if self.wrapped:
            self.wrapped = False
            for cls, name, before, _, wrapper in self.patches:
                if cls.__dict__.get(name) is not wrapper:
                    # someone patched over us: leave theirs, and take ours off if their
                    # patch is undone later
                    if cls.__dict__.get(name, _MISSING) is not before:
                        self.displaced.append((cls, name, before, wrapper))
                    continue
                if before is _MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, before)
        self._idle()

    def _idle(self) -> None:
        """Forget captures and replays under way: with no listener, the installation only
        passes calls through, as if it were not there."""
        self.pending.clear()
        self.replaying.clear()
        self.capturing = 0

    @property
    def installed(self) -> bool:
        return self.wrapped or bool(self.handles)

    # the wrappers ----------------------------------------------------------------------
    def _wrap_begin(self, original: Callable[..., Any]) -> Callable[..., Any]:
        hooks = self

        def capture_begin(graph: Any, *args: Any, **kwargs: Any) -> Any:
            if hooks.busy or not hooks.listeners:
                return original(graph, *args, **kwargs)
            hooks.busy = True
            try:
                hooks._guarded(graph, hooks._before, graph, args, kwargs)
                try:
                    result = original(graph, *args, **kwargs)
                except BaseException:
                    hooks._forget(graph)
                    raise
                hooks._guarded(graph, hooks._begun, graph)
                return result
            finally:
                hooks.busy = False

        capture_begin.__wrapped__ = original  # type: ignore[attr-defined]
        return capture_begin

    def _wrap_end(self, original: Callable[..., Any]) -> Callable[..., Any]:
        hooks = self

        def capture_end(graph: Any) -> Any:
            if hooks.busy or id(graph) not in hooks.pending:
                return original(graph)
            hooks.busy = True
            try:
                try:
                    result = original(graph)
                except BaseException:
                    hooks._forget(graph)
                    raise
                hooks._guarded(graph, hooks._after, graph)
                return result
            finally:
                hooks.busy = False

        capture_end.__wrapped__ = original  # type: ignore[attr-defined]
        return capture_end

    def _wrap_replay(self, original: Callable[..., Any]) -> Callable[..., Any]:
        hooks = self

        def replay(graph: Any) -> Any:
            if hooks.busy or not hooks.listeners:
                return original(graph)
            hooks.busy = True
            try:
                result = original(graph)
                for listener in hooks.listeners:
                    listener._on_replay(graph)
                return result
            finally:
                hooks.busy = False

        replay.__wrapped__ = original  # type: ignore[attr-defined]
        return replay

    # torch's global hooks (2.14+) ------------------------------------------------------
    # torch calls them from CUDAGraph's own methods and swallows their errors; each step
    # is guarded besides, so a failing reading leaves the capture out and keeps the error.
    def _hook_capture_start(self, graph: Any) -> None:
        """The capture is live: host-side readings only (allocator counters, NVML)."""
        if not self.busy and self.listeners:
            self._guarded(graph, self._started, graph)

    def _hook_capture_end(self, graph: Any) -> None:
        """After ``capture_end_pre``: capture has ended, the graph is not instantiated."""
        pending = self.pending.get(id(graph))
        if pending is not None and not pending.ended and not self.busy:
            self._guarded(graph, self._ended, graph, pending)

    def _hook_instantiate(self, graph: Any) -> None:
        """``capture_end`` instantiates a ``keep_graph=False`` graph; the split API
        (``capture_end_pre``, ``instantiate``, ``capture_end_post``) and a lazy first
        replay of a ``keep_graph=True`` one come here without the capture-end hook."""
        pending = self.pending.get(id(graph))
        if pending is None or self.busy:
            return
        if not pending.ended:
            self._guarded(graph, self._ended, graph, pending, False)
        if id(graph) in self.pending:
            self._guarded(graph, self._finish, graph)

    def _hook_replay_start(self, graph: Any) -> None:
        if not self.busy and self.listeners:
            self.replaying.setdefault(id(graph), []).append(sys.exc_info()[1])

    def _hook_replay_end(self, graph: Any) -> None:
        """Counted once the launch is enqueued: torch fires this hook in a ``finally``,
        also when the launch raised, which the exception in flight tells apart."""
        stack = self.replaying.get(id(graph))
        if self.busy or not stack:
            return
        before = stack.pop()
        if not stack:
            del self.replaying[id(graph)]
        raised = sys.exc_info()[1]
        if raised is not None and raised is not before:
            return
        for listener in list(self.listeners):
            listener._on_replay(graph)

    def _started(self, graph: Any) -> None:
        device = allocator.current_device()
        allocated = reserved = 0  # unknown where it can't be read (growth: None)
        if allocator.readable_in_capture():
            allocated, reserved = allocator.allocated_reserved(device)
        free = nvml().device_free(device)
        self.pending[id(graph)] = _Pending(
            device, None, allocated, reserved, free, time.perf_counter()
        )
        self.capturing += 1

    def _ended(self, graph: Any, pending: _Pending, finish_kept: bool = True) -> None:
        pending.ended = True
        self.capturing = max(self.capturing - 1, 0)
        pending.allocated_end, pending.reserved_end = allocator.allocated_reserved(pending.device)
        with suppress(Exception):
            pending.pool = pool_id(graph.pool())
        with suppress(Exception):  # capture is over: safe to look the handle up
            _find_nvml_handle(pending.device)
        if finish_kept and getattr(graph, "_keep_graph", False):
            self._finish(graph)  # nothing is instantiated before the first replay

    def _finish(self, graph: Any) -> None:
        start = self.pending.pop(id(graph))
        seconds = time.perf_counter() - start.t0
        if start.pool is None:  # not readable at capture end: try again once instantiated
            with suppress(Exception):
                start.pool = pool_id(graph.pool())
        free = nvml().device_free(start.device)
        driver = None if start.free is None or free is None else start.free - free
        _remember_device(graph, start.device)
        allocated = _growth(start.allocated, start.allocated_end)
        reserved = _growth(start.reserved, start.reserved_end)
        for listener in list(self.listeners):
            listener._on_capture(
                graph, start.device, start.pool, allocated, reserved, driver, seconds
            )

    # the figures -----------------------------------------------------------------------
    def _guarded(self, graph: Any, step: Callable[..., None], *args: Any) -> None:
        """Run a tracking step; its failure must never break the user's capture.

        The capture is then left out of the logs and the error kept in ``last_error``.
        """
        try:
            step(*args)
        except Exception as exc:
            self.last_error = exc.with_traceback(None)  # its frames would hold the graph
            self._forget(graph)

    def _before(self, graph: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Before the capture begins: the clock and the driver's free bytes.

        cudaMemGetInfo is not called while another capture is underway: an unsafe API call
        during a global-mode capture would invalidate it. ``torch.accelerator.Graph``
        takes its pool at construction (``graph_pool``), ``CUDAGraph`` as an argument.
        """
        t0 = time.perf_counter()
        device = allocator.current_device()
        free = None if self.capturing else allocator.free_bytes(device)
        pool = kwargs.get("pool", args[0] if args else getattr(graph, "graph_pool", None))
        self.pending[id(graph)] = _Pending(device, pool_id(pool), 0, 0, free, t0)
        self.capturing += 1

    def _begun(self, graph: Any) -> None:
        """Once capture has begun: the allocator's figures (host-side, safe while capturing).

        Read here rather than before ``capture_begin`` so that what capture_begin itself
        allocates outside the graph's pool (the RNG's seed and offset tensors of a first
        graph) is not charged to the capture: from here on, the capturing stream allocates
        from the graph's private pool.
        """
        start = self.pending.get(id(graph))
        if start is not None and allocator.readable_in_capture():
            start.allocated, start.reserved = allocator.allocated_reserved(start.device)

    def _forget(self, graph: Any) -> None:
        pending = self.pending.pop(id(graph), None)
        if pending is not None and not pending.ended:
            self.capturing = max(self.capturing - 1, 0)

    def _after(self, graph: Any) -> None:
        start = self.pending.pop(id(graph))
        self.capturing = max(self.capturing - 1, 0)
        seconds = time.perf_counter() - start.t0
        allocated, reserved = allocator.allocated_reserved(start.device)
        driver = None
        if start.free is not None and not self.capturing:
            free = allocator.free_bytes(start.device)
            driver = None if free is None else start.free - free
        try:
            pool = pool_id(graph.pool())
        except Exception:  # keep_graph=True before instantiate, or an older torch
            pool = start.pool
        _remember_device(graph, start.device)
        grew = _growth(start.allocated, allocated), _growth(start.reserved, reserved)
        for listener in list(self.listeners):
            listener._on_capture(graph, start.device, pool, *grew, driver, seconds)


def _find_nvml_handle(device: int) -> None:
    """NVML's handle of ``device``, for the hooks' driver readings (outside a capture);
    looked up once per device (the UUID read costs more than the rest of an install)."""
    meter = nvml()
    if not meter.looked_up(device):
        meter.handle(device, allocator.device_uuid(device))


_hooks = _Hooks()


def release_tracking() -> None:
    """Remove the tracking a log left installed when it stopped with ``linger``, and any
    wrapper of ours that code patching over it put back after it was removed."""
    _hooks.release()


def restore_displaced() -> None:
    """Take off a wrapper of ours that code which had patched over it put back after the
    tracking was removed (``monkeypatch`` undone at teardown); cheap when there is none."""
    if _hooks.displaced:
        _hooks.restore_displaced()


def hooks_installed() -> bool:
    """Whether the hooks or wrappers are in place (some log is listening, or one left
    them for the next: ``linger``)."""
    return _hooks.installed


# pool figures ------------------------------------------------------------------------
def _by_pool(held: dict[tuple[int, PoolId], int]) -> dict[PoolId, int]:
    result: dict[PoolId, int] = {}
    for (_, pid), size in held.items():
        result[pid] = result.get(pid, 0) + size
    return result


def _measure_pools(
    wanted: Sequence[PoolId], release_workspaces: Callable[[dict[PoolId, int]], bool]
) -> dict[tuple[int, PoolId], int]:
    """Every graph pool's bytes by (device, pool) after emptying the cache; once more
    after releasing the cuBLAS workspaces when ``release_workspaces(held)`` says so.

    Empty before CUDA starts in the process: no pool holds memory then, and a device's
    stats are an error."""
    if not allocator.cuda_initialized():
        return {}
    allocator.settle_and_empty_cache()
    held = allocator.pool_reserved()
    if release_workspaces(_by_pool(held)):
        allocator.clear_cublas_workspaces()
        allocator.settle_and_empty_cache()
        held = allocator.pool_reserved()
    return {k: v for k, v in held.items() if k[1] in set(wanted)}


def _pool_ids(where: str, pools: Iterable[object], nested: str = "") -> list[PoolId]:
    """Each pool's id, or a usage error naming the first that is none; ``nested`` is said
    after one that is a collection of pools."""
    __tracebackhide__ = True
    if isinstance(pools, (str, bytes)) or not isinstance(pools, Iterable):
        raise CgmemUsageError(
            f"{where}: expected a collection of pool handles, got {short_repr(pools)}"
        )
    wanted: list[PoolId] = []
    for pool in pools:
        pid = pool_id(pool)
        if pid is None:
            several = (
                isinstance(pool, (list, tuple, set, frozenset))
                and bool(pool)
                and all(pool_id(p) is not None for p in pool)
            )
            raise CgmemUsageError(
                f"{where}: expected a pool handle (graph.pool(), graph_pool_handle()), "
                f"got {short_repr(pool)}{nested if several else ''}"
            )
        wanted.append(pid)
    return wanted


def _release_flag(where: str, value: object, none: bool = False) -> None:
    """``release_workspaces`` is True or False (None too where ``none``), numpy's too: a
    truthy string such as ``"no"`` would release them, and a numpy array's truth is an error
    of its own."""
    __tracebackhide__ = True
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    if not (isinstance(value, bool) or numpy_bool or (none and value is None)):
        said = "True, False or None" if none else "True or False"
        raise CgmemUsageError(
            f"{where}: release_workspaces must be {said}, got {short_repr(value)}"
        )


def pools_bytes(pools: Iterable[object], *, release_workspaces: bool = True) -> dict[PoolId, int]:
    """Bytes each pool holds after emptying the cache (0 for a released pool).

    When a pool still holds memory, cuBLAS workspaces are released and the cache emptied
    once more before the final reading, unless ``release_workspaces`` is False. Raises
    ``FigureUnavailable`` where the allocator keeps no pools (cudaMallocAsync).
    """
    __tracebackhide__ = _usage_error
    wanted = _pool_ids("pools_bytes", pools)
    _release_flag("pools_bytes", release_workspaces)
    held = _by_pool(
        _measure_pools(
            wanted, lambda now: release_workspaces and any(now.get(p, 0) for p in wanted)
        )
    )
    return {p: held.get(p, 0) for p in wanted}


def pool_bytes(pool: object, *, release_workspaces: bool = True) -> int:
    """Bytes a graph pool still holds, after emptying the cache."""
    __tracebackhide__ = _usage_error
    (pid,) = _pool_ids("pool_bytes", [pool])
    _release_flag("pool_bytes", release_workspaces)
    return pools_bytes([pid], release_workspaces=release_workspaces)[pid]


def assert_pools_released(*pools: object, release_workspaces: bool = True) -> None:
    """Raise PoolNotReleased naming every pool that still holds memory."""
    __tracebackhide__ = True
    wanted = _pool_ids(
        "assert_pool_released", pools, " (give pools as separate arguments: *log.pools)"
    )
    _release_flag("assert_pool_released", release_workspaces)
    if not wanted:
        raise CgmemUsageError(
            "assert_pool_released: no pool given (graph.pool(), graph_pool_handle(), "
            "*log.pools: a log's pools are empty when nothing was captured)"
        )
    held = {
        p: b for p, b in pools_bytes(wanted, release_workspaces=release_workspaces).items() if b
    }
    if held:
        listing = ", ".join(f"pool {p} holds {format_size(b)}" for p, b in held.items())
        raise PoolNotReleased(
            f"cgmem: {len(held)} CUDA graph pool{'s' if len(held) != 1 else ''} still "
            f"hold{'s' if len(held) == 1 else ''} device memory after the cache was emptied: "
            f"{listing}; a graph (or a tensor it produced) from the pool is still alive",
            held,
        )


def _always(value: Any) -> Callable[[], Any]:
    return lambda: value


def _takes_no_argument(label: object) -> bool:
    if not callable(label):
        return False
    try:
        signature = inspect.signature(label)
    except (TypeError, ValueError):  # none to read (some builtins): trust it
        return True
    try:
        signature.bind()
    except TypeError:
        return False
    return True


def _label_callable(label: object) -> None:
    """A log's label is called with no argument at each capture: one that cannot be would
    leave every capture labelled with its error."""
    __tracebackhide__ = True
    if not _takes_no_argument(label):
        raise CgmemUsageError(
            "graphs: label must be a callable taking no argument, read at each capture "
            f"(e.g. lambda: runner.capturing_size), got {short_repr(label)}"
        )


# the log -----------------------------------------------------------------------------
class GraphLog:
    """Every CUDA graph captured and replayed while it listens.

    ``captures`` (one Capture each), ``replays`` (count), ``pools`` (pool ids captured
    into, in order), ``pool_bytes()`` (bytes each pool holds now) and, once stopped,
    ``held_at_exit`` (pools still holding memory when the log closed). Where the
    allocator keeps no pools (``backend:cudaMallocAsync``) ``pool_bytes()`` raises
    ``FigureUnavailable`` and ``pools_unavailable`` says why.
    """

    def __init__(self, label: Callable[[], object] | None = None) -> None:
        if label is not None:
            _label_callable(label)
        self.captures: list[Capture] = []
        self.replays = 0
        self.held_at_exit: dict[PoolId, int] = {}
        self.seconds = 0.0
        self._label_fn = label
        self._label: object = None
        self._by_graph: dict[int, tuple[Callable[[], Any], Capture]] = {}
        self._alive: dict[PoolId, list[Callable[[], Any]]] = {}
        self._replays_by_device: dict[int, int] = {}
        self._listening = False
        self._t0 = 0.0
        self._pool_figures: dict[tuple[int, PoolId], int] | None = None
        self.pools_unavailable: str | None = None

    # lifecycle
    def start(self) -> GraphLog:
        if self._listening:
            raise RuntimeError("cgmem: this graph log is already listening")
        _hooks.add(self)
        count_measurement()
        self._listening = True
        self._t0 = time.perf_counter()
        return self

    def stop(self, *, measure_pools: bool = True, linger: bool = False) -> GraphLog:
        """Stop listening (restores CUDAGraph once no log listens, unless ``linger``: then
        ``release_tracking()`` does); with ``measure_pools`` and at least one capture,
        records the pools still holding memory."""
        if self._listening:
            self._listening = False
            self.seconds = time.perf_counter() - self._t0
            _hooks.remove(self, linger=linger)
        if measure_pools and self.captures:
            try:
                held = self.pool_bytes()
            except FigureUnavailable as exc:
                self.pools_unavailable = str(exc)
            else:
                self.held_at_exit = {p: b for p, b in held.items() if b}
        return self

    # what the hooks call
    def label(self, value: object) -> None:
        """Label the captures that follow (e.g. the batch size being captured)."""
        self._label = value

    def _on_capture(
        self,
        graph: Any,
        device: int,
        pool: PoolId | None,
        allocated: int | None,
        reserved: int | None,
        driver: int | None,
        seconds: float,
    ) -> None:
        label = self._label
        if self._label_fn is not None:
            try:
                label = self._label_fn()
            except Exception as exc:
                label = f"<label failed: {exc!r}>"
        capture = Capture(
            len(self.captures) + 1, device, pool, allocated, reserved, driver, seconds, label
        )
        self.captures.append(capture)
        ref: Callable[[], Any]
        try:
            ref = weakref.ref(graph)
        except TypeError:  # cannot tell when it dies: treat it as alive
            ref = _always(graph)
        self._by_graph[id(graph)] = (ref, capture)
        if pool is not None:
            self._alive.setdefault(pool, []).append(ref)

    def _on_replay(self, graph: Any) -> None:
        self.replays += 1
        entry = self._by_graph.get(id(graph))
        capture = entry[1] if entry is not None and entry[0]() is graph else None
        device: int
        if capture is not None:
            capture.replays += 1
            device = capture.device
        else:
            known = _known_device(graph)
            device = known if known is not None else allocator.current_device()
        self._replays_by_device[device] = self._replays_by_device.get(device, 0) + 1

    # figures
    @property
    def pools(self) -> list[PoolId]:
        seen: dict[PoolId, None] = {}
        for capture in self.captures:
            if capture.pool is not None:
                seen.setdefault(capture.pool, None)
        return list(seen)

    @property
    def reserved(self) -> int | None:
        """Bytes all captures added to their pools (allocator); None if one is unknown."""
        values = [c.reserved for c in self.captures]
        return None if any(v is None for v in values) else sum(v or 0 for v in values)

    @property
    def driver(self) -> int | None:
        """Device memory all captures took as the driver saw it; None if one is unknown."""
        values = [c.driver for c in self.captures]
        return None if any(v is None for v in values) else sum(v or 0 for v in values)

    def pool_bytes(self, *, release_workspaces: bool | None = None) -> dict[PoolId, int]:
        """Bytes each pool this log saw holds now, after emptying the cache (per-pool
        stats or snapshot segments, ``allocator.pool_reserved``). cuBLAS workspaces are
        released only for pools whose graphs are all gone, unless ``release_workspaces``
        says otherwise. Raises ``FigureUnavailable`` under cudaMallocAsync."""
        _release_flag("log.pool_bytes", release_workspaces, none=True)
        pools = self.pools
        if not pools:
            return {}

        def release(held: dict[PoolId, int]) -> bool:
            if release_workspaces is None:
                return any(held.get(p, 0) and self._all_dead(p) for p in pools)
            return release_workspaces and any(held.get(p, 0) for p in pools)

        self._pool_figures = _measure_pools(pools, release)
        held = _by_pool(self._pool_figures)
        return {p: held.get(p, 0) for p in pools}

    def total_pool_bytes(self) -> int:
        return sum(self.pool_bytes().values())

    def _all_dead(self, pool: PoolId) -> bool:
        return all(ref() is None for ref in self._alive.get(pool, []))

    def figures(self, device: int) -> dict[str, Any]:
        """The region metrics on one device: ``graphs``, ``replays``, ``graph_pool``.

        The pools are measured once (only when something was captured); ``graph_pool``
        is None where the allocator keeps no pools (cudaMallocAsync)."""
        captures = [c for c in self.captures if c.device == device]
        pool_total: int | None = 0
        if "graph_pool" in allocator.unavailable_figures():
            pool_total = None
        elif self.captures:
            if self._pool_figures is None:
                self.pool_bytes()
            figures = self._pool_figures or {}
            pool_total = sum(v for (dev, _), v in figures.items() if dev == device)
        return {
            "graphs": len(captures),
            "replays": self._replays_by_device.get(device, 0),
            "graph_pool": pool_total,
        }

    def describe(self) -> str:
        lines = [
            f"{len(self.captures)} capture(s), {self.replays} replay(s), "
            f"pools {', '.join(map(str, self.pools)) or 'none'}"
        ]
        lines += ["  " + c.describe() for c in self.captures]
        for pid, size in self.held_at_exit.items():
            lines.append(f"  pool {pid} still holds {format_size(size)}")
        if self.pools_unavailable:
            lines.append(f"  pool bytes: {self.pools_unavailable.removeprefix('cgmem: ')}")
        return "\n".join(lines)

    def pool_figures(self) -> list[dict[str, Any]]:
        """Each pool on each device it was captured on, with the bytes it held when last
        measured (``pool_bytes()``, the log's stop, a region's end); bytes None when
        never measured or unavailable."""
        seen: dict[tuple[int, PoolId], None] = {}
        for capture in self.captures:
            if capture.pool is not None:
                seen.setdefault((capture.device, capture.pool), None)
        measured = self._pool_figures
        return [
            {
                "device": device,
                "pool": list(pid),
                "bytes": None if measured is None else measured.get((device, pid), 0),
            }
            for device, pid in seen
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the captures (label, pool, allocator and driver bytes, replays),
        the replays, each pool's bytes, and how graphs were seen."""
        return {
            "mechanism": mechanism().name,
            "captures": [c.to_dict() for c in self.captures],
            "replays": self.replays,
            "replays_by_device": [
                {"device": d, "replays": n} for d, n in sorted(self._replays_by_device.items())
            ],
            "pools": self.pool_figures(),
            "held_at_exit": [{"pool": list(p), "bytes": b} for p, b in self.held_at_exit.items()],
            "pools_unavailable": self.pools_unavailable,
            "seconds": self.seconds,
        }

    def region(self, label: str, error: BaseException | None = None) -> RegionResult:
        """The log as a region of its test (``cgmem.graphs()`` records it): ``graph_pool``,
        ``graphs`` and ``replays`` on each device captured or replayed on, and the graph
        figures in ``extra["graph_figures"]``. After an error the pools are not measured
        (``graph_pool`` None)."""
        indices = sorted({c.device for c in self.captures} | set(self._replays_by_device))
        devices = []
        for index in indices:
            if error is None:
                figures = self.figures(index)
            else:
                figures = {
                    "graphs": sum(1 for c in self.captures if c.device == index),
                    "replays": self._replays_by_device.get(index, 0),
                    "graph_pool": None,
                }
            devices.append(
                graphfigures.graph_device(
                    index, figures["graph_pool"], figures["graphs"], figures["replays"]
                )
            )
        data = graphfigures.from_log(self.to_dict())
        return graphfigures.region(label, devices, self.seconds, data, error)

    def __repr__(self) -> str:
        return f"<GraphLog {len(self.captures)} captures, {self.replays} replays>"


@contextmanager
def track(label: Callable[[], object] | None = None) -> Iterator[GraphLog]:
    """Log every CUDA graph captured or replayed in the body; restored on exit."""
    log = GraphLog(label).start()
    try:
        yield log
    except BaseException:
        log.stop(measure_pools=False)
        raise
    log.stop()


@contextmanager
def expect_replay(what: str | None = None, *, at_least: int = 1) -> Iterator[GraphLog]:
    """Fail with EagerFallback when fewer than ``at_least`` replays happen in the body."""
    if what is not None:
        check_description("expect_replay", what, empty=True)
    least = as_whole(at_least)
    if least is None or least < 1:
        raise CgmemUsageError(
            f"expect_replay: at_least must be a whole number >= 1, got {short_repr(at_least)}"
        )
    at_least = least
    log = GraphLog().start()
    try:
        yield log
    except BaseException:
        log.stop(measure_pools=False)
        raise
    log.stop(measure_pools=False)
    if log.replays < at_least:
        where = f" ({what})" if what else ""
        if log.replays == 0:
            head = f"cgmem: no CUDA graph replay happened inside expect_replay(){where}"
        else:
            head = (
                f"cgmem: {log.replays} CUDA graph replay(s) inside expect_replay(){where}, "
                f"expected at least {at_least}"
            )
        captured = f", {len(log.captures)} captured there" if log.captures else ""
        raise EagerFallback(
            f"{head}: the work ran eagerly ({log.replays} replays{captured}); "
            "is its size missing from the captured sizes?"
        )


# capture sweeps --------------------------------------------------------------------------
def _call(fn: Callable[..., Any], args: Any) -> Any:
    return fn(*args) if isinstance(args, tuple) else fn(args)


@dataclass
class SweepResult:
    """What ``capture_sweep`` captured: per-size figures, the shared pool, the graphs.

    ``pool_bytes`` and the per-size allocator figures are None where the allocator keeps
    no pools (``backend:cudaMallocAsync``).

    ``outputs`` comes before ``graphs``: a dropped result releases its fields in that
    order, so captured outputs are freed while their graphs still exist. (Under
    cudaMallocAsync, torch 2.11 aborts freeing several graphs' outputs in either order:
    docs/measuring.md.)
    """

    sizes: tuple[int, ...]  # capture order, largest first
    pool: PoolId | None
    pool_bytes: int | None
    seconds: float  # capturing only
    warmup_seconds: float
    captures: dict[int, Capture]
    outputs: dict[int, Any]
    inputs: dict[int, Any]
    graphs: dict[int, Any]
    stream: Any = field(repr=False, default=None)
    # time the plugin's own readings took (allocator, cudaMemGetInfo, the pool's snapshot)
    tracking_seconds: float = 0.0
    # device memory the whole sweep took as cudaMemGetInfo saw it (segments + graphs)
    driver_total: int | None = None

    @property
    def bytes(self) -> dict[int, int | None]:
        """Per size: bytes its capture added to the pool (0 when it reused the pool)."""
        return {s: c.reserved for s, c in self.captures.items()}

    @property
    def driver_bytes(self) -> dict[int, int | None]:
        """Per size, as ``cudaMemGetInfo`` saw it: read only while a log listens, else None."""
        return {s: c.driver for s, c in self.captures.items()}

    def padded(self, size: int) -> int | None:
        """The captured size a runtime ``size`` pads to, None when it would run eagerly."""
        return pad_to_captured(self.sizes, size)

    def replay(self, size: int) -> Any:
        """Replay the graph captured at ``size`` and return its (static) output."""
        __tracebackhide__ = True
        key = as_whole(size)
        graph = None if key is None else self.graphs.get(key)
        if key is None or graph is None:
            held = (
                f"the sweep captured {format_sizes(self.sizes)}"
                if self.graphs
                else "its graphs were released"
            )
            raise CgmemUsageError(
                f"replay: no graph captured at size {short_repr(size)} to replay ({held}); "
                "padded(size) gives the captured size a runtime size pads to"
            )
        graph.replay()
        return self.outputs[key]

    def release(self) -> None:
        """Drop the graphs, inputs and outputs, so the pool can be freed."""
        self.graphs.clear()
        self.inputs.clear()
        self.outputs.clear()

    def table(self) -> str:
        lines = [f"{'size':>8}{'pool +':>14}{'driver +':>14}{'ms':>9}"]
        for size in self.sizes:
            c = self.captures[size]
            lines.append(
                f"{size:>8}{_size(c.reserved):>14}{_size(c.driver):>14}{c.seconds * 1000:>9.2f}"
            )
        lines.append(
            f"pool {self.pool}: {_size(self.pool_bytes)} (driver +{_size(self.driver_total)}); "
            f"{len(self.sizes)} graphs in "
            f"{self.seconds:.3f} s (+{self.warmup_seconds:.3f} s warm-up; "
            f"{self.tracking_seconds * 1000:.1f} ms of it the plugin's readings)"
        )
        return "\n".join(lines)

    def per_size(self) -> list[dict[str, Any]]:
        """One entry per captured size, in capture order: the bytes it added to the pool
        (allocator), the device memory it took (driver, None unless a log listened), the
        live bytes it left, its seconds and its number."""
        return [
            {
                "size": size,
                "bytes": self.captures[size].reserved,
                "driver": self.captures[size].driver,
                "allocated": self.captures[size].allocated,
                "seconds": self.captures[size].seconds,
                "number": self.captures[size].number,
            }
            for size in self.sizes
        ]

    def region(self, label: str) -> RegionResult:
        """The sweep as a region of its test (``cgmem.capture_sweep()`` records it):
        ``graph_pool`` (the shared pool's bytes), ``graphs`` (one per size) and ``replays``
        (0: a sweep only captures) on its device, and the graph figures, per size, in
        ``extra["graph_figures"]``."""
        devices = sorted({c.device for c in self.captures.values()})
        figures = [
            graphfigures.graph_device(
                index,
                self.pool_bytes,
                sum(1 for c in self.captures.values() if c.device == index),
                0,
            )
            for index in devices
        ]
        data = graphfigures.from_sweep(self.to_dict(), devices[0] if devices else None)
        return graphfigures.region(label, figures, self.seconds + self.warmup_seconds, data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the sizes, the pool and its bytes, per-size figures, times."""
        return {
            "sizes": list(self.sizes),
            "pool": None if self.pool is None else list(self.pool),
            "pool_bytes": self.pool_bytes,
            "driver_total": self.driver_total,
            "per_size": self.per_size(),
            "seconds": self.seconds,
            "warmup_seconds": self.warmup_seconds,
            "tracking_seconds": self.tracking_seconds,
        }


def _usage_error(excinfo: Any) -> bool:
    """For ``__tracebackhide__``: a frame is left out of the traceback of a usage error
    only (a wrong argument), never of an error in the user's code it called."""
    return excinfo is not None and bool(excinfo.errisinstance(CgmemUsageError))


def _sweep_sizes(sizes: Iterable[int]) -> list[int]:
    __tracebackhide__ = True
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise CgmemUsageError(
            f"capture_sweep: sizes must be a collection of whole numbers, got {short_repr(sizes)}"
        )
    result = set()
    for given in sizes:
        size = as_whole(given)
        if size is None or size < 1:
            raise CgmemUsageError(
                f"capture_sweep: sizes are whole numbers >= 1, got {short_repr(given)}"
            )
        if size > MAX_FIGURE:  # the run file holds no larger whole number
            raise CgmemUsageError(
                f"capture_sweep: too large: the most is {MAX_FIGURE}, got {short_repr(size)}"
            )
        result.add(size)
    if not result:
        raise CgmemUsageError("capture_sweep: no sizes given")
    return sorted(result, reverse=True)


def _sweep_callable(name: str, value: object) -> None:
    __tracebackhide__ = True
    if not callable(value):
        raise CgmemUsageError(f"capture_sweep: {name} must be callable, got {short_repr(value)}")


@contextmanager
def _captured_directly(graph: Any, pool: object, stream: Any) -> Iterator[None]:
    """Capture on ``stream`` as ``torch.cuda.graph`` does, without its synchronize and
    cache emptying: for a capture that follows another with nothing run in between (vLLM
    skips them likewise). If the body raises, the capture is ended and the error kept."""
    with torch.cuda.stream(stream):
        graph.capture_begin(pool=pool)
        try:
            yield
        except BaseException:
            with suppress(Exception):
                graph.capture_end()
            raise
        graph.capture_end()


def capture_sweep(
    fn: Callable[..., Any],
    sizes: Sequence[int] | Iterable[int],
    make_input: Callable[[int], Any],
    warmup: int = 2,
    pool: object = None,
) -> SweepResult:
    """Capture ``fn`` at every size, largest first, into one shared pool (vLLM's order).

    ``make_input(size)`` builds the static input (a tensor, or a tuple of arguments);
    ``fn`` runs ``warmup`` times per size on a side stream first, then each size is
    captured on that stream into ``pool`` (a new pool if None): the first with
    ``torch.cuda.graph`` (synchronize, empty the caches, capture), the others directly, as
    nothing runs between two captures that those steps could wait for or release (under
    cudaMallocAsync, whose frees are stream-ordered, every one with ``torch.cuda.graph``).

    The figures are chained: one allocator reading per capture, taken once ``fn`` has
    returned and before ``capture_end`` (host-side, safe while capturing; capture_end
    allocates nothing), each capture's growth taken from the reading before it. The first
    capture's baseline is read once capture has begun, so the RNG state a first graph
    allocates outside its pool is not charged to it.
    A new pool's total is the sum of that growth; a given pool's is its snapshot.
    ``cudaMemGetInfo`` is read before the first capture and after the last (the sweep's
    ``driver_total``), and after every capture only while a log listens (``cgmem.graphs()``,
    a marked test), which gets the same figures as the result.
    """
    __tracebackhide__ = _usage_error
    _sweep_callable("fn", fn)
    order = _sweep_sizes(sizes)
    _sweep_callable("make_input", make_input)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise CgmemUsageError(
            f"capture_sweep: warmup must be a whole number >= 0, got {short_repr(warmup)}"
        )
    given_pool = None if pool is None else pool_id(pool)
    if pool is not None and given_pool is None:
        raise CgmemUsageError(
            "capture_sweep: pool must be a pool handle (graph.pool(), graph_pool_handle()) "
            f"or None, got {short_repr(pool)}"
        )
    count_measurement()
    inputs = {size: make_input(size) for size in order}
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    current = torch.cuda.current_stream()
    t0 = time.perf_counter()
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        for size in order:
            for _ in range(warmup):
                _call(fn, inputs[size])
    current.wait_stream(stream)
    allocator.synchronize()
    warmup_seconds = time.perf_counter() - t0
    handle = given_pool if given_pool is not None else torch.cuda.graph_pool_handle()
    pid = pool_id(handle)
    device = allocator.current_device()
    graphs: dict[int, Any] = {}
    outputs: dict[int, Any] = {}
    captures: dict[int, Capture] = {}
    listeners = list(_hooks.listeners)
    perf_counter = time.perf_counter
    was_busy = _hooks.busy
    _hooks.busy = True  # the wrappers pass our captures through; we report them below
    readable = allocator.readable_in_capture()
    try:
        t1 = perf_counter()
        allocator.empty_cache()  # the warm-up's cache, before the first driver reading
        first_free = free = allocator.free_bytes(device)
        allocated = reserved = first_reserved = 0
        t_end = perf_counter()
        tracking = t_end - t1
        for number, size in enumerate(order, 1):
            t_start = perf_counter()
            if number > 1:
                tracking += t_start - t_end
            graph: Any = torch.cuda.CUDAGraph()
            capturing = (
                torch.cuda.graph(graph, pool=handle, stream=stream)  # type: ignore[arg-type]
                if number == 1 or not readable  # stream-ordered frees: synchronize between
                else _captured_directly(graph, handle, stream)
            )
            with capturing:
                if number == 1 and readable:
                    t_read = perf_counter()
                    allocated, reserved = allocator.allocated_reserved(device)
                    first_reserved = reserved
                    tracking += perf_counter() - t_read
                outputs[size] = _call(fn, inputs[size])
                t_read = perf_counter()
                if readable:
                    now_allocated, now_reserved = allocator.allocated_reserved(device)
                else:
                    now_allocated = now_reserved = 0
                tracking += perf_counter() - t_read
            t_end = perf_counter()
            graphs[size] = graph
            driver = None
            if listeners:
                now_free = allocator.free_bytes(device)
                if free is not None and now_free is not None:
                    driver = free - now_free
                free = now_free
            capture = Capture(
                number,
                device,
                pid,
                _growth(allocated, now_allocated),
                _growth(reserved, now_reserved),
                driver,
                t_end - t_start,
                size,
            )
            captures[size] = capture
            allocated, reserved = now_allocated, now_reserved
            if pid is None:
                with suppress(Exception):
                    pid = capture.pool = pool_id(graph.pool())
            _remember_device(graph, device)
            if listeners:
                for listener in listeners:
                    listener._on_capture(
                        graph,
                        device,
                        pid,
                        capture.allocated,
                        capture.reserved,
                        driver,
                        capture.seconds,
                    )
        t_read = perf_counter()
        tracking += t_read - t_end
        last_free = allocator.free_bytes(device)
        driver_total = None if first_free is None or last_free is None else first_free - last_free
        tracking += perf_counter() - t_read
        allocator.synchronize()
        seconds = perf_counter() - t1
    finally:
        _hooks.busy = was_busy
    t2 = perf_counter()
    held: int | None
    if "graph_pool" in allocator.unavailable_figures():
        held = None
    elif pool is None or pid is None:
        held = max(0, reserved - first_reserved)  # reserved only grows while capturing
    else:
        held = allocator.pool_total(pid)
    tracking += perf_counter() - t2
    return SweepResult(
        tuple(order),
        pid,
        held,
        seconds,
        warmup_seconds,
        captures,
        outputs,
        inputs,
        graphs,
        stream,
        tracking,
        driver_total,
    )
