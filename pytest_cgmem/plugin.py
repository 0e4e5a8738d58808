"""pytest glue: options, the ``cgmem`` mark, the fixtures, and one session object.

Everything a run does with GPU-memory tests lives in ``session.CgmemSession``, which
``pytest_configure`` registers; the hooks here only read options and hand over. Importing
this module imports no torch: a run with no GPU-memory test never does.

PYTEST_DONT_REWRITE, as the package's docstring says why: ``-p pytest_cgmem.plugin`` marks
this module for rewriting, and pytest reads the mark here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .cuda import cuda_started
from .metrics import metric_help
from .pinning import device_for_worker
from .session import (
    TEST_HOOKS_NAME,
    CgmemSession,
    fail_for_want_of_a_gpu,
    fixture_used_key,
    region_adder,
    retire_earlier_outputs,
    runs_no_tests,
)
from .settings import (
    OPTIONS,
    Settings,
    idle_options,
    legacy_toml_problem,
    parse_devices,
    resolve,
)
from .units import CgmemUsageError, short_repr

if TYPE_CHECKING:  # imported by the fixtures: a run that asks for none needs none
    from .fixture import CgmemFixture, DistributedRunner, FigureRecorder

MARK_HELP = (
    "cgmem(**budgets): measure the test's call phase on the GPU and fail it when a "
    "figure exceeds its budget. Keywords (bytes as an int or '512 MiB'; binary units "
    "B, KiB, MiB, GiB, TiB, decimal KB, MB, GB, TB): " + metric_help() + "; and "
    "tolerance (a percentage such as '10%', bytes such as '4MiB', '4096' or an int, or one "
    "of each in either order, separated by a space or a comma: '10% 4MiB'): growth over "
    "--cgmem-baseline that is not a regression for this test, replacing "
    "--cgmem-tolerance/--cgmem-tolerance-abs part by part"
)

settings_key = pytest.StashKey[Settings]()
session_key = pytest.StashKey[CgmemSession]()
pin_problem_key = pytest.StashKey[str]()


def _dest(name: str) -> str:
    return "cgmem_" + name


def _ini_type(name: str) -> Any:
    """The ini type pytest gets for an option.

    An int option reads its text itself (so that only ASCII digits pass), and takes a
    native TOML integer too: ``str | int`` from pytest 9.2; ``int`` on 9.0 and 9.1, the
    first with native TOML, whose text ``_read_ini`` takes before pytest's ``int()`` would
    read it (``int("٣")`` is 3); a string before.
    """
    if name != "int":
        return name
    version = _pytest_version()
    if version >= (9, 2):
        return str | int
    return "int" if version >= (9, 0) else "string"


def _read_ini(config: pytest.Config, key: str, kind: str) -> object:
    if kind == "int" and _ini_type(kind) == "int":  # pytest 9.0, 9.1: the text as written
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 9.1 deprecates inicfg: a warning per read
            raw = config.inicfg.get(key)
            if isinstance(raw, str):
                return raw
    try:
        return config.getini(key)
    except (TypeError, ValueError, pytest.UsageError, Warning) as exc:
        # a value its type refuses, or pytest's deprecation of one, made an error by -W error
        raise CgmemUsageError(f"{key}: {exc}") from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cgmem", "GPU memory budgets (pytest-cgmem)")
    for option in OPTIONS:
        if option.flag:
            group.addoption(
                option.cli,
                action="store_true",
                default=None,
                dest=_dest(option.name),
                help=option.help,
            )
        else:
            group.addoption(
                option.cli,
                action="store" if option.combine is None else "append",
                default=None,
                dest=_dest(option.name),
                metavar=option.metavar,
                help=option.help,
            )
        parser.addini(option.ini, option.help, type=_ini_type(option.ini_type), default=None)


OFF_HELP = (
    "cgmem_off(reason): under --cgmem-all, do not measure this test (or class, or module), "
    "and in any run hold no figure it records to the default budget or the baseline; a cgmem "
    "mark on the test, its class or its module wins; the reason, one non-empty printable line, "
    "is listed in the --cgmem-all summary"
)


def _pytest_version() -> tuple[int, ...]:
    return tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())


def _reads_ini_options(path: Path) -> bool:
    """Whether pytest reads ``[tool.pytest.ini_options]`` from the ini file ``path``: any
    ``.toml`` file (``pyproject.toml``, or one given with ``-c``), but for
    ``pytest.toml`` and ``.pytest.toml`` from pytest 9.0, which read ``[pytest]`` only."""
    if path.suffix != ".toml":
        return False
    return path.name not in ("pytest.toml", ".pytest.toml") or _pytest_version() < (9, 0)


def _check_legacy_toml(config: pytest.Config) -> None:
    """Refuse a value of ours in a TOML ini file's ``[tool.pytest.ini_options]`` whose TOML
    type the option does not take: pytest hands it on as text (an array, after a warning
    meant for plugin authors). Read only where that file sets one of our keys."""
    path = config.inipath
    if path is None or not _reads_ini_options(path):
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):  # pytest read it: a problem is pytest's to report
        return
    if "cgmem_" not in text:
        return
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pytest's own TOML reader there
        import tomli as tomllib
    try:
        document = tomllib.loads(text)
    except ValueError:
        return
    table = document.get("tool", {}).get("pytest", {}).get("ini_options", {})
    for option in OPTIONS:
        if option.ini in table:
            problem = legacy_toml_problem(option, table[option.ini])
            if problem is not None:
                raise CgmemUsageError(problem)


def _ini_dir(config: pytest.Config) -> str | None:
    """The ini file's folder, against which its relative paths are read."""
    return None if config.inipath is None else str(config.inipath.parent)


_OUTPUT_OPTIONS = ("json", "save_baseline", "gab_json", "baseline", "artifacts")
"""The options ``retire_earlier_outputs`` reads: the files a run writes, and the paths they
are held against."""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None]:
    """Before any conftest is imported (and so before any can start CUDA or stop the run),
    and before pytest's output capture starts, which a full disk stops (no usable
    temporary folder) with an earlier run's file left looking current."""
    _pin_worker(early_config)
    with warnings.catch_warnings():  # outside pytest's capture of them: each is said again
        warnings.simplefilter("ignore")  # later, at configure (an ini value's type...)
        _retire_earlier_outputs(early_config)
    return (yield)


def _retire_earlier_outputs(early_config: pytest.Config) -> None:
    """Before any conftest is imported: an earlier run's files at this run's output paths
    stop looking current (``session.retire_earlier_outputs``). The paths are resolved alone,
    from the options parsed so far: a bad value of any of them is left to
    ``pytest_configure`` to refuse."""
    namespace = early_config.known_args_namespace
    given = {name: getattr(namespace, _dest(name), None) for name in _OUTPUT_OPTIONS}
    try:
        ini = {
            o.name: _read_ini(early_config, o.ini, o.ini_type) for o in OPTIONS if o.name in given
        }
        if not (any(given.values()) or any(ini.values())):
            return
        _check_legacy_toml(early_config)
        settings = resolve(given, ini, _ini_dir(early_config))
    except CgmemUsageError:
        return
    retire_earlier_outputs(settings, namespace, early_config.invocation_params.dir)


_configured: list[pytest.Config] = []
"""The pytest runs of this process configured now: one started inside another (pytester's
in-process runs, ``pytest.main()`` in a test) is not the process's own."""


def pytest_unconfigure(config: pytest.Config) -> None:
    with contextlib.suppress(ValueError):
        _configured.remove(config)


def pytest_configure(config: pytest.Config) -> None:
    _configured.append(config)
    config.addinivalue_line("markers", MARK_HELP)
    config.addinivalue_line("markers", OFF_HELP)
    if getattr(config.option, "help", False):
        return  # pytest shows its help whatever the settings, as for its own: none is used
    cli = {o.name: config.getoption(_dest(o.name)) for o in OPTIONS}
    try:
        _check_legacy_toml(config)
        ini = {o.name: _read_ini(config, o.ini, o.ini_type) for o in OPTIONS}
        settings = config.stash[settings_key] = resolve(cli, ini, _ini_dir(config))
    except CgmemUsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    problem = config.stash.get(pin_problem_key, None)
    if problem is None and _starts_xdist_workers(config):
        raw, source = cli["devices"], "--cgmem-devices"
        if raw is None:
            raw, source = ini["devices"] or None, "cgmem_devices"
        if raw is not None:  # the workers would refuse it: say so once, before they start
            problem = _worker_device("gw0", raw, source)[1]
    if problem is None and _runs_each_test_on_every_worker(config):
        problem = _one_record_a_test(settings)
    worker = getattr(config, "workerinput", None) is not None
    if problem and not worker:
        raise pytest.UsageError(problem)
    if not worker:  # said once, by the process started
        idle = idle_options(settings)
        given_devices = settings.sources.get("devices", "").startswith("--")
        if given_devices and not _starts_xdist_workers(config):
            idle.append("cgmem: --cgmem-devices does nothing without pytest-xdist workers (-n)")
        for message in idle:
            try:
                config.issue_config_time_warning(pytest.PytestConfigWarning(message), stacklevel=2)
            except pytest.PytestConfigWarning:  # -W error: a usage error, not an INTERNALERROR
                raise pytest.UsageError(message) from None
    session = config.stash[session_key] = CgmemSession(config, settings)
    if problem:
        session.refuse_every_test(problem)
    config.pluginmanager.register(session, "cgmem-session")
    blocked = config.pluginmanager.register(session.test_hooks, TEST_HOOKS_NAME) is None
    session.test_hooks_on = not blocked  # -p no:cgmem-tests: no test is measured


def _starts_xdist_workers(config: pytest.Config) -> bool:
    """This process is a pytest-xdist controller about to start workers: ``-n N`` (N > 0),
    or ``--tx`` specs with a ``--dist`` mode (xdist's ``_is_distribution_mode``; ``--tx``
    alone runs the tests in this process)."""
    return (
        os.environ.get("PYTEST_XDIST_WORKER") is None
        and config.getoption("dist", "no") != "no"
        and _xdist_workers(config) > 0
    )


def _runs_each_test_on_every_worker(config: pytest.Config) -> bool:
    """This process is a pytest-xdist controller that runs the whole suite on each of two or
    more workers (``--dist each``); one worker runs each test once. A run that runs no test
    (``--collect-only``, ``--fixtures``) writes no file, and xdist does not distribute it:
    an IDE's discovery is not refused."""
    return (
        os.environ.get("PYTEST_XDIST_WORKER") is None
        and config.getoption("dist", None) == "each"
        and _xdist_workers(config) > 1
        and not runs_no_tests(config)
    )


def _xdist_workers(config: pytest.Config) -> int:
    """How many workers xdist starts: by ``pytest_configure`` its ``pytest_cmdline_main`` has
    turned ``-n N`` into N ``popen`` specs of ``--tx``, and a spec ``K*spec`` starts K."""
    workers = 0
    for spec in config.getoption("tx", None) or ():
        count, star, _ = str(spec).partition("*")
        try:
            workers += int(count) if star else 1
        except ValueError:
            workers += 1
    return workers


def _one_record_a_test(settings: Settings) -> str | None:
    """The usage error for a file of one record a test asked of a run that measures each
    test once on every worker: all but one worker's figures would be lost unseen."""
    for name in ("json", "gab_json", "save_baseline"):
        if getattr(settings, name) is not None:
            return (
                f"{settings.source(name)}: --dist each runs every test on every worker, and "
                "the file holds one record a test; give each device its own pytest run "
                "(and its own file), or use --dist load"
            )
    return None


def _worker_device(workerid: str, raw: object, source: str) -> tuple[str | None, str | None]:
    """(the ``CUDA_VISIBLE_DEVICES`` worker ``workerid`` gets, None), or (None, the usage
    error naming ``source``) when the device list cannot be used here."""
    try:
        devices = parse_devices(raw)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = 0
        if visible is None:
            from .cuda.nvml import count_devices

            count = count_devices()
        return device_for_worker(workerid, devices, visible, count), None
    except (CgmemUsageError, IndexError) as exc:
        return None, f"{source}={short_repr(raw)}: {exc}"


def _pin_worker(early_config: pytest.Config) -> None:
    """Pin a pytest-xdist worker to its device before any conftest can start CUDA (not
    from a pytest run inside a worker's test, in process or in a subprocess, which
    inherits its environment)."""
    workerid = os.environ.get("PYTEST_XDIST_WORKER")
    if workerid is None or _configured or _inherited_pin():
        return
    raw = getattr(early_config.known_args_namespace, _dest("devices"), None)
    source = "--cgmem-devices"
    if raw is None:
        with contextlib.suppress(Exception):
            raw, source = early_config.getini("cgmem_devices") or None, "cgmem_devices"
    if raw is None:
        return
    chosen, problem = _worker_device(workerid, raw, source)
    if problem is not None:
        early_config.stash[pin_problem_key] = problem
        return
    if chosen is None:
        return
    if cuda_started():
        early_config.stash[pin_problem_key] = (
            f"{source}={short_repr(raw)}: CUDA was already initialised in worker {workerid}; "
            "it cannot be pinned to a device"
        )
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    os.environ[_PINNED] = f"{os.environ.get(_RUN_ID, '')} {os.getpid()}"


_PINNED = "CGMEM_PINNED_WORKER"
"""Set by a worker it pins: the xdist run's id and the worker's pid."""
_RUN_ID = "PYTEST_XDIST_TESTRUNUID"


def _inherited_pin() -> bool:
    """This process inherited a pinned worker's environment: a subprocess of the worker's
    test (a worker of a new xdist run has a new run id)."""
    run, _, pid = os.environ.get(_PINNED, "").partition(" ")
    return bool(pid) and run == os.environ.get(_RUN_ID, "") and pid != str(os.getpid())


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """pytest-benchmark's ``machine_info["cgmem"]``: this machine's identity, read without
    importing torch, so that it is the same when pytest-benchmark reads it for
    ``--benchmark-compare`` (at configure time) and when it saves, whatever the run
    measures: compare is quiet when the machines match."""
    from .cuda.machine import identity_without_torch
    from .results.runfile import base_machine

    machine_info["cgmem"] = {**base_machine(), **identity_without_torch()}


def _require_devices(config: pytest.Config) -> Callable[[int], None]:
    """Skip (fail under --cgmem-require-gpu) a distributed test with fewer CUDA devices
    than ranks: NCCL puts each rank on its own device."""

    def require(count: int) -> None:
        session = config.stash[session_key]
        session.require_cuda()
        from .cuda.allocator import device_count

        visible = device_count()
        if visible < count:
            message = f"cgmem: {count} ranks need {count} CUDA devices; {visible} visible"
            if session.settings.require_gpu:
                fail_for_want_of_a_gpu(f"{message} (--cgmem-require-gpu)")
            pytest.skip(message)

    return require


@pytest.fixture
def cgmem(request: pytest.FixtureRequest) -> CgmemFixture:
    """Explicit GPU memory regions: ``with cgmem.measure("prefill") as m: ...``."""
    session = request.config.stash[session_key]
    session.ensure_test_hooks(request.node)
    session.require_cuda()
    request.node.stash[fixture_used_key] = True
    device, rank = session.place()
    from pytest_cgmem.fixture import CgmemFixture

    return CgmemFixture(
        region_adder(request.node, "cgmem"),
        device=device,
        rank=rank,
        require_devices=_require_devices(request.config),
    )


@pytest.fixture
def cgmem_record(request: pytest.FixtureRequest) -> FigureRecorder:
    """Record figures measured elsewhere as a region of this test (needs no CUDA):
    ``cgmem_record("server", peak="1.2 GiB", device=...)``."""
    session = request.config.stash[session_key]
    session.ensure_test_hooks(request.node)
    job = session.job
    from pytest_cgmem.fixture import FigureRecorder

    return FigureRecorder(
        region_adder(request.node, "cgmem_record"), None if job is None else job.rank
    )


@pytest.fixture
def cgmem_distributed(request: pytest.FixtureRequest) -> DistributedRunner:
    """``cgmem_distributed(fn, world_size=2, backend="nccl")``: ``fn(rank, world_size)`` on
    that many ranks, each measured on its own device (docs/distributed.md). Runs without
    CUDA too with a CPU backend (``backend="gloo"``): the ranks run, nothing is measured."""
    request.config.stash[session_key].ensure_test_hooks(request.node)
    from pytest_cgmem.fixture import DistributedRunner

    return DistributedRunner(
        region_adder(request.node, "cgmem_distributed"),
        _require_devices(request.config),
    )
