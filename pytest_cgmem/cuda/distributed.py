"""``cgmem.distributed``: a function run on N ranks, each a process on its own device,
each measuring a ``Region`` around the function; both sides, the test's and the rank's.

The test's process checks that ``fn`` pickles, hosts the process group's store
(``TCPStore`` on 127.0.0.1, a port the OS chose, so no two runs race for one), starts the
ranks, waits for each one's message until the timeout, stops every rank still running
once one failed or the time is up, and hands each rank's region to the test. A rank
(``_rank_main``) takes the test's environment as it was at the call (``NCCL_*`` and
``CUDA_VISIBLE_DEVICES`` included), writes its output to a file the test echoes, selects
``cuda:rank``, joins the process group and measures a ``Region`` (the one in
``region.py``) around ``fn(rank, world_size)`` on its device.

Ranks start from a fork server that imported torch once (``forkserver``), or as fresh
interpreters (``spawn``); never by a plain fork of the test's process, where CUDA may have
started.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from typing import Any

from ..metrics import rank_label
from ..results.ranks import (
    EXITED,
    LINGERED,
    OK,
    RAISED,
    STOPPED,
    TIMEOUT,
    DistributedResult,
    Launch,
    RankOutcome,
    exit_status,
    failure,
    not_picklable,
    rank_region,
    result,
)
from ..results.records import RegionResult
from ..units import CgmemUsageError, short_repr

_PRELOAD = ("torch", "torch.distributed", "pytest_cgmem.cuda.region")
"""What the fork server imports once, so that each rank starts in a fraction of a second."""
_GRACE = 5.0
"""Seconds a stopped rank gets between SIGTERM and SIGKILL."""
_SETTLE = 0.5
"""Seconds to hear from the other ranks once one failed, before stopping them: a peer's
own error (a closed connection) tells less than the failure that caused it."""
_C10D_SETTLE = 1.0
"""Seconds a rank whose allocated bytes grew waits for them to fall back (see
``_settle_collectives``); only a region that looks like a leak pays it."""
_PG_SLACK = 60.0
"""The ranks' process group outlives the call's timeout by this much: the test's process,
not torch's watchdog, decides that time is up (and names the rank still running)."""
_TAIL = 4000
"""Characters of a rank's last output quoted in a failure."""
MAX_TIMEOUT = 7 * 24 * 3600.0
"""The longest ``timeout`` a call takes, a week: a far longer wait overflows the timers it
is waited with (``poll`` takes at most about 24 days)."""
_warm: set[str] = set()


@dataclass(frozen=True)
class _Task:
    """What a rank process is given."""

    rank: int
    world_size: int
    backend: str
    timeout: float
    label: str
    fn: bytes
    env: dict[str, str]
    port: int
    measure: bool
    output: str


def _noop() -> None:
    """A process that does nothing: starts the fork server and waits for its imports."""


def _context(method: str, timeout: float) -> BaseContext:
    """The multiprocessing context for ``method``; a fork server imports torch once."""
    if method == "forkserver" and method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver" and method not in _warm:
        from multiprocessing import forkserver

        # keep what the server would preload anyway ('__main__'), add torch
        server = getattr(forkserver, "_forkserver", None)
        preload = list(getattr(server, "_preload_modules", ["__main__"]))
        ctx.set_forkserver_preload(preload + [m for m in _PRELOAD if m not in preload])
        warm = ctx.Process(target=_noop)  # type: ignore[attr-defined]
        warm.start()
        warm.join(max(120.0, timeout))
        if warm.is_alive():
            warm.kill()
            raise RuntimeError("cgmem.distributed: the fork server did not start")
        _warm.add(method)
    return ctx


def check_launch(launch: Launch) -> None:
    """Refuse, as a one-line usage error, a timeout ``launch_arguments`` let through but
    that no wait could use: beyond ``MAX_TIMEOUT``. Imports nothing: said before a test
    without the devices it needs is skipped."""
    __tracebackhide__ = True
    if launch.timeout > MAX_TIMEOUT:
        raise CgmemUsageError(
            f"cgmem.distributed: timeout must be a number of seconds > 0 and at most "
            f"{MAX_TIMEOUT:g} (a week), got {short_repr(launch.timeout)}"
        )


def check_backend(backend: str) -> None:
    """Refuse, as a one-line usage error, a backend torch.distributed does not know, before
    any rank starts (a rank would fail on it in ``init_process_group``)."""
    __tracebackhide__ = True
    known = _known_backends()
    problem = _backend_problem(backend, known)
    if problem is not None:
        raise CgmemUsageError(
            f"cgmem.distributed: backend must be a torch.distributed backend, one of "
            f"{', '.join(known)}, or device:backend pairs such as 'cpu:gloo,cuda:nccl', "
            f"got {short_repr(backend)}{problem}"
        )


def _known_backends() -> list[str]:
    """torch.distributed's backend names (``Backend.backend_list``, which holds those that
    third-party packages registered too); none where this torch does not list them."""
    try:
        import torch.distributed as dist
    except ImportError:
        return []  # the ranks cannot start either: ``run`` says so

    listed = getattr(getattr(dist, "Backend", None), "backend_list", None) or ()
    return [str(name) for name in listed if name != "undefined"]


def _backend_problem(backend: str, known: list[str]) -> str | None:
    """None where ``backend`` is a backend ``init_process_group`` takes: a known name, or
    ``device:name`` pairs joined by commas (case-insensitive, as torch reads them); else
    what is wrong, to follow the value (``""`` where the value says it all)."""
    if not known:
        return None  # nothing to judge by: the ranks' init_process_group says
    text = backend.lower()
    if text in known:
        return None
    if ":" not in text:
        return ""
    devices: set[str] = set()
    for pair in text.split(","):
        device, sep, name = pair.partition(":")
        if not sep or not device or not name or ":" in name:
            return f" ({pair!r} is not a device:backend pair)"
        if device in devices:
            return f" (device {device!r} is given twice)"
        devices.add(device)
        if name not in known:
            return f" ({name!r} is not a backend)"
    return None


def cuda_devices() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    from . import allocator

    return allocator.device_count() if allocator.cuda_usable() else 0


def torchrun_device(local_rank: int) -> int | None:
    """A torchrun rank's device: ``cuda:LOCAL_RANK`` where that index is visible; None (the
    current device) where it is not, e.g. where each rank sees only its own GPU."""
    return local_rank if local_rank < cuda_devices() else None


def check_call(fn: Callable[[int, int], Any], launch: Launch) -> bytes:
    """Refuse a backend torch.distributed does not know and an ``fn`` that does not pickle,
    before a test skips for want of devices: a usage error on every machine. Returns
    ``fn`` pickled."""
    __tracebackhide__ = True
    check_backend(launch.backend)
    try:
        return pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise not_picklable(fn, exc) from None


def run(
    fn: Callable[[int, int], Any],
    launch: Launch,
    record: Callable[[RegionResult], None],
    payload: bytes | None = None,
) -> DistributedResult:
    """Run ``fn(rank, world_size)`` on ``launch.world_size`` ranks; every rank's region is
    handed to ``record``. Raises RankFailed (naming the rank, how it ended and the ranks
    stopped) where a rank raised, exited early or outlived the timeout. ``payload``:
    ``check_call``'s, where the caller checked the call already."""
    __tracebackhide__ = True
    from .installed import torch_installed

    if not torch_installed():
        raise CgmemUsageError(
            "cgmem.distributed: no torch to import here: its ranks run torch.distributed"
        )
    if payload is None:
        payload = check_call(fn, launch)
    count = cuda_devices()
    measure = count >= launch.world_size
    unmeasured = None
    if not measure:
        unmeasured = (
            "no CUDA device"
            if count == 0
            else f"{launch.world_size} ranks, {count} CUDA device(s) visible"
        )
        if launch.needs_cuda:
            raise CgmemUsageError(
                f"cgmem.distributed: backend {launch.backend!r} needs {launch.world_size} "
                f"CUDA devices; {unmeasured}"
            )
    ctx = _context(launch.start_method, launch.timeout)
    return _Run(launch, ctx, payload, measure, unmeasured).go(record)


class _Run:
    """One call: the ranks' processes, their pipes and output files, and what they said."""

    def __init__(
        self,
        launch: Launch,
        ctx: BaseContext,
        payload: bytes,
        measure: bool,
        unmeasured: str | None,
    ) -> None:
        self.launch = launch
        self.ctx = ctx
        self.payload = payload
        self.measure = measure
        self.unmeasured = unmeasured
        self.procs: list[Any] = []
        self.readers: list[Connection] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.ended: dict[int, float] = {}
        self.failed = False

    def go(self, record: Callable[[RegionResult], None]) -> DistributedResult:
        __tracebackhide__ = True
        import torch.distributed as dist

        launch = self.launch
        outputs = tempfile.mkdtemp(prefix="cgmem-ranks-")
        t0 = time.monotonic()
        try:
            store = dist.TCPStore("127.0.0.1", 0, None, True, wait_for_workers=False)  # type: ignore[attr-defined]
            try:
                self._start(store.port, outputs)
                timed_out = self._wait(t0 + launch.timeout)
                outcomes = self._outcomes(timed_out, t0 + launch.timeout, outputs)
            finally:
                self._stop([p for p in self.procs if p.is_alive()])
                for reader in self.readers:
                    reader.close()
                del store
            seconds = time.monotonic() - t0
            _echo(outputs, launch.world_size)
        finally:
            shutil.rmtree(outputs, ignore_errors=True)
        problem = failure(outcomes, launch)
        regions: dict[int, RegionResult] = {}
        for o in outcomes:
            error = _region_error(o, launch, None if problem is None else problem.rank)
            regions[o.rank] = rank_region(
                launch, o.rank, o.region, o.seconds or seconds, error, self.unmeasured
            )
            record(regions[o.rank])
        if problem is not None:
            raise problem
        return result(launch, outcomes, regions)

    def _start(self, port: int, outputs: str) -> None:
        launch = self.launch
        base = dict(os.environ)
        for rank in range(launch.world_size):
            env = {
                **base,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(launch.world_size),
                "LOCAL_WORLD_SIZE": str(launch.world_size),
            }
            task = _Task(
                rank,
                launch.world_size,
                launch.backend,
                launch.timeout,
                rank_label(rank, launch.label),
                self.payload,
                env,
                port,
                self.measure,
                os.path.join(outputs, f"rank{rank}.out"),
            )
            reader, writer = self.ctx.Pipe(duplex=False)
            proc = self.ctx.Process(  # type: ignore[attr-defined]
                target=_rank_main, args=(task, writer), name=f"cgmem-rank{rank}"
            )
            proc.start()
            writer.close()  # the rank holds the only writer: its end reads as EOF here
            self.procs.append(proc)
            self.readers.append(reader)

    def _wait(self, deadline: float) -> bool:
        """Wait until every rank sent its message, or one failed (and the others had
        ``_SETTLE`` seconds to say so too); True when time ran out."""
        pending = set(range(self.launch.world_size))
        settle = deadline
        while pending:
            now = time.monotonic()
            if now >= settle:
                return not self.failed
            handles: dict[Any, int] = {}
            for rank in pending:
                handles[self.readers[rank]] = rank
                handles[self.procs[rank].sentinel] = rank
            for ready in wait(list(handles), timeout=settle - now):
                rank = handles[ready]
                if rank in pending and self._heard(rank):
                    pending.discard(rank)
            if self.failed:
                settle = min(settle, time.monotonic() + _SETTLE)
        return False

    def _heard(self, rank: int) -> bool:
        """Read rank's message or notice its end; True once it has said all it will."""
        reader, proc = self.readers[rank], self.procs[rank]
        message: dict[str, Any] | None = None
        if reader.poll():
            try:
                message = reader.recv()
            except (EOFError, OSError):
                message = None
            except Exception as exc:  # the rank's message does not unpickle here
                message = {
                    "status": RAISED,
                    "error": _one_line(exc, "fn returned a value that cannot be read back"),
                    "at": time.time(),
                }
        if message is not None:
            self.messages[rank] = message
            self.failed = self.failed or message.get("status") != OK
            return True
        noticed = time.time()
        proc.join(_GRACE)  # its pipe closed or it ended: it is exiting, or gone
        if proc.is_alive():
            return False
        self.ended[rank] = noticed
        self.failed = True
        return True

    def _outcomes(self, timed_out: bool, deadline: float, outputs: str) -> list[RankOutcome]:
        if not timed_out and not self.failed:
            for proc in self.procs:  # all sent their figures: give them the time left to exit
                proc.join(max(0.0, deadline - time.monotonic()))
        else:
            for rank, proc in enumerate(self.procs):
                if rank in self.messages or rank in self.ended:
                    proc.join(_GRACE)  # a rank that said its last word ends by itself
        running = [rank for rank, p in enumerate(self.procs) if p.is_alive()]
        self._stop([self.procs[r] for r in running])
        outcomes = []
        for rank, proc in enumerate(self.procs):
            device = rank if self.measure else None
            message = self.messages.get(rank)
            tail = _tail(os.path.join(outputs, f"rank{rank}.out"))
            if message is not None:
                region_data = message.get("region")
                region = None if region_data is None else RegionResult.from_dict(region_data)
                status = str(message.get("status"))
                if status == OK and rank in running:
                    status = LINGERED
                outcomes.append(
                    RankOutcome(
                        rank,
                        status,
                        proc.exitcode,
                        region,
                        message.get("error"),
                        str(message.get("detail") or (tail if status == LINGERED else "")),
                        message.get("value"),
                        device,
                        float(message.get("seconds") or 0.0),
                        float(message.get("at") or time.time()),
                    )
                )
            elif rank in self.ended:
                at = self.ended[rank]
                outcomes.append(
                    RankOutcome(rank, EXITED, proc.exitcode, detail=tail, device=device, at=at)
                )
            else:
                status = TIMEOUT if timed_out and not self.failed else STOPPED
                detail = tail if status == TIMEOUT else ""
                outcomes.append(
                    RankOutcome(
                        rank, status, proc.exitcode, detail=detail, device=device, at=time.time()
                    )
                )
        return outcomes

    @staticmethod
    def _stop(procs: list[Any]) -> None:
        """SIGTERM, then SIGKILL for those still running after the grace period."""
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
        deadline = time.monotonic() + _GRACE
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                with contextlib.suppress(Exception):
                    proc.kill()
                proc.join()


def _region_error(outcome: RankOutcome, launch: Launch, cause: int | None) -> str | None:
    """What ended a rank's region (read after "region ended by") where it did not finish."""
    seconds = f"{launch.timeout:g} s"
    if outcome.status in (OK, RAISED):
        return outcome.error
    if outcome.status == EXITED:
        return f"the rank's exit before it sent its figures ({exit_status(outcome.exitcode)})"
    if outcome.status == STOPPED:
        return f"cgmem stopping it: still running when rank {cause} failed"
    if outcome.status == LINGERED:
        return f"the timeout ({seconds}): it sent its figures but did not exit"
    return f"the timeout ({seconds}): cgmem stopped it"


def _tail(path: str) -> str:
    """The output's last ``_TAIL`` bytes at most, less the line they cut into; read from one
    byte earlier, so that a line starting at the cut is kept whole."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL - 1))
            data = handle.read()
    except OSError:
        return ""
    if size > _TAIL:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else data[1:]
    return data.decode("utf-8", "replace")


def _echo(outputs: str, world_size: int) -> None:
    """Each rank's output, into the test's own stdout (pytest shows it with the test)."""
    for rank in range(world_size):
        try:
            with open(
                os.path.join(outputs, f"rank{rank}.out"), encoding="utf-8", errors="replace"
            ) as f:
                text = f.read()
        except OSError:
            continue
        if text.strip():
            sys.stdout.write("".join(f"[rank {rank}] {line}\n" for line in text.splitlines()))


# -- the rank's side ------------------------------------------------------------------------


def _redirect_output(path: str) -> None:
    """The rank's stdout and stderr, line-buffered, into its output file."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def _one_line(exc: BaseException, about: str = "") -> str:
    """``Type: the message's first line``, ``about`` leading the message where given;
    ``Type`` alone where there is nothing to say (a bare ``assert`` in ``fn``)."""
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"  # as the traceback in ``detail`` shows it
    lines = message.strip().splitlines()
    text = ": ".join(part for part in (about, lines[0].strip() if lines else "") if part)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rank_main(task: _Task, conn: Connection) -> None:
    """A rank: join the process group, measure ``fn`` on ``cuda:rank``, send the figures."""
    _redirect_output(task.output)
    os.environ.clear()
    os.environ.update(task.env)
    t0 = time.perf_counter()
    figures: RegionResult | None = None
    dist: Any = None
    try:
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        fn = pickle.loads(task.fn)
        timeout = timedelta(seconds=task.timeout + _PG_SLACK)
        if task.measure:
            torch.cuda.set_device(task.rank)
        store = dist.TCPStore("127.0.0.1", task.port, task.world_size, False, timeout=timeout)
        dist.init_process_group(
            task.backend,
            store=store,
            rank=task.rank,
            world_size=task.world_size,
            timeout=timeout,
        )
        region = None
        if task.measure:
            from .region import Region

            devices = [task.rank]
            region = Region(task.label, devices, device=task.rank, rank=task.rank)
            region.before_leak_check.append(_settle_collectives(region))
            region.start()
        t0 = time.perf_counter()
        try:
            value = fn(task.rank, task.world_size)
        except BaseException as exc:
            if region is not None:
                with contextlib.suppress(Exception):
                    figures = region.stop(exc)
            raise
        if region is not None:
            figures = region.stop()
        seconds = time.perf_counter() - t0
        message = {
            "status": OK,
            "region": None if figures is None else figures.to_dict(),
            "value": value,
            "seconds": seconds,
        }
        try:
            conn.send(message)
        except Exception as exc:
            raise TypeError(f"fn returned a value that cannot be sent back: {exc}") from exc
    except BaseException as exc:
        _send_failure(conn, exc, figures, time.perf_counter() - t0)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)  # no teardown: the peers may be stuck in a collective with this rank
    _leave_process_group(dist, task.backend)


def _leave_process_group(dist: Any, backend: str) -> None:
    """End the rank's part in the process group before the rank's process exits.

    A gloo group is left as it is, for the process's end to close. Destroying it deadlocks
    now and then: ``ProcessGroupGloo``'s destructor joins its worker threads while holding
    the GIL, and a worker that still holds a finished collective's work must take the GIL to
    free the work's tensors, whose Python objects ``fn`` has dropped (seen on a loaded
    2-core machine with torch 2.4.1, about one call in 60). An NCCL group is destroyed, as
    torch asks, so that its communicators are shut down before the process ends."""
    if "gloo" in backend.lower():
        return
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


def _settle_collectives(region: Any) -> Callable[[int], None]:
    """Before a rank's leak check: c10d hands a finished collective's work to its watchdog
    thread, which may keep the work's tensors for a moment after the region's end. Wait
    (at most ``_C10D_SETTLE`` seconds) for allocated bytes to fall back to the region's
    start, so that only what ``fn`` kept counts as its leak."""

    def settle(index: int) -> None:
        import torch

        start = region.allocated_at_start(index)
        torch.cuda.synchronize(index)
        end = time.monotonic() + _C10D_SETTLE
        while torch.cuda.memory_allocated(index) > start and time.monotonic() < end:
            time.sleep(0.05)

    return settle


def _send_failure(
    conn: Connection, exc: BaseException, figures: RegionResult | None, seconds: float
) -> None:
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is _rank_main.__code__:
        tb = tb.tb_next  # start at fn (or torch's set-up), not at this module
    message = {
        "status": RAISED,
        "error": _one_line(exc),
        "detail": "".join(traceback.format_exception(type(exc), exc, tb)),
        "region": None if figures is None else figures.to_dict(),
        "seconds": seconds,
        "at": time.time(),
    }
    with contextlib.suppress(Exception):
        conn.send(message)
