"""pytest hooks: options, the ``cgmem`` mark and fixture, reports.

The only module that imports pytest. torch is imported lazily (through ``measure``) and
not at all in a run with no GPU-memory test.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Generator
from typing import Any

import pytest

from .budgets import CALL_LABEL, Budget, BudgetExceeded, metric_help, parse_budget
from .fixture import CgmemFixture
from .report import TestRecord, header, section, summary
from .results import RegionResult
from .settings import OPTIONS, Settings, resolve
from .units import CgmemUsageError

MARK_HELP = (
    "cgmem(**budgets): measure the test's call phase on the GPU and fail it when a "
    "figure exceeds its budget. Keywords (bytes as an int or '512 MiB'; binary units "
    "B, KiB, MiB, GiB, TiB, decimal KB, MB, GB, TB): " + metric_help()
)
NO_GPU = "cgmem: no CUDA device"

settings_key = pytest.StashKey[Settings]()
records_key = pytest.StashKey[list[TestRecord]]()
budget_key = pytest.StashKey[Budget]()
regions_key = pytest.StashKey[list[RegionResult]]()
_cuda_key = pytest.StashKey[bool]()
diagnosis_key = pytest.StashKey[str]()
_diagnostics_key = pytest.StashKey[Any]()


def _dest(name: str) -> str:
    return "cgmem_" + name


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
                default=None,
                dest=_dest(option.name),
                metavar=option.metavar,
                help=option.help,
            )
        parser.addini(option.ini, option.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARK_HELP)
    cli = {o.name: config.getoption(_dest(o.name)) for o in OPTIONS}
    ini = {o.name: config.getini(o.ini) for o in OPTIONS}
    try:
        config.stash[settings_key] = resolve(cli, ini)
    except CgmemUsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[records_key] = []


def _item_budget(item: pytest.Item, default: Budget) -> Budget:
    """The default budget overridden by every cgmem mark, farthest first, key by key."""
    budget = default
    for mark in reversed(list(item.iter_markers("cgmem"))):
        if mark.args:
            raise CgmemUsageError(
                f"takes keyword budgets only (e.g. cgmem(peak='1 GiB')), got positional "
                f"{', '.join(repr(a) for a in mark.args)}"
            )
        budget = budget.merged(parse_budget(mark.kwargs))
    return budget


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    default = config.stash[settings_key].budget
    errors = []
    for item in items:
        if item.get_closest_marker("cgmem") is None:
            continue
        try:
            item.stash[budget_key] = _item_budget(item, default)
        except CgmemUsageError as exc:
            errors.append(f"{item.nodeid}: @pytest.mark.cgmem: {exc}")
    if errors:
        raise pytest.UsageError(*errors)


def _measured(item: pytest.Item) -> bool:
    return budget_key in item.stash or "cgmem" in getattr(item, "fixturenames", ())


def _require_cuda(config: pytest.Config) -> None:
    """Skip (or fail under --cgmem-require-gpu) when no CUDA device can be used."""
    available = config.stash.get(_cuda_key, None)
    if available is None:
        from . import measure

        available = config.stash[_cuda_key] = measure.cuda_available()
    if not available:
        if config.stash[settings_key].require_gpu:
            pytest.fail(f"{NO_GPU} (--cgmem-require-gpu)", pytrace=False)
        raise pytest.skip.Exception(NO_GPU, _use_item_location=True)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    if not any(_measured(item) for item in items):
        return []
    from . import measure

    return header(measure.machine_info())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if budget_key in item.stash:
        _require_cuda(item.config)


@pytest.fixture
def cgmem(request: pytest.FixtureRequest) -> CgmemFixture:
    """Explicit GPU memory regions: ``with cgmem.measure("prefill") as m: ...``."""
    _require_cuda(request.config)
    return CgmemFixture(request.node.stash.setdefault(regions_key, []).append)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    budget = item.stash.get(budget_key, None)
    if budget is None:
        if not _measured(item):
            return (yield)
        return (yield from _diagnosed_call(item))
    __tracebackhide__ = True
    from . import measure

    regions = item.stash.setdefault(regions_key, [])
    recorder = _recorder(item)
    _forget_last_failure()
    region = measure.Region(CALL_LABEL).start()
    try:
        recorder.start(region)
        try:
            outcome = yield
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the test's own error matters more
                regions.insert(0, region.stop(exc))
            _diagnose(item, recorder, regions, exc)
            raise
        result = region.stop()
        regions.insert(0, result)
        violations = result.check(budget)
        if violations:
            error = BudgetExceeded(violations)
            _diagnose(item, recorder, regions, error)
            raise error
    finally:
        recorder.close()
    return outcome


def _forget_last_failure() -> None:
    """Drop ``sys.last_*`` before the region starts, not inside it as pytest's runner does.

    They pin the previous failing test's frames (and its tensors); freed inside the region,
    that memory would offset this test's figures.
    """
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)


def _recorder(item: pytest.Item) -> Any:
    """The test's diagnostics recorder; its settings are worked out once per session."""
    from .recorder import DiagnosticsConfig, Recorder

    config = item.config.stash.get(_diagnostics_key, None)
    if config is None:
        settings = item.config.stash[settings_key]
        artifacts = None
        if settings.artifacts is not None:
            artifacts = item.config.invocation_params.dir / settings.artifacts
        hidden = [os.path.dirname(pytest.__file__), os.path.dirname(os.path.abspath(__file__))]
        hidden += [
            os.path.dirname(str(getattr(sys.modules.get(m), "__file__", "") or ""))
            for m in ("_pytest", "pluggy")
        ]
        config = item.config.stash[_diagnostics_key] = DiagnosticsConfig(
            history=settings.history,
            history_entries=settings.history_entries,
            stacks=settings.stacks,
            artifacts=artifacts,
            hidden_dirs=tuple(h for h in hidden if h),
            roots=(str(item.config.rootpath), str(item.config.invocation_params.dir)),
        )
    return Recorder(config, item.nodeid)


def _diagnose(
    item: pytest.Item, recorder: Any, regions: list[RegionResult], exc: BaseException
) -> None:
    """Failing path only: snapshot the allocator and keep the text for the cgmem section."""
    if not isinstance(exc, (Exception, pytest.fail.Exception)):
        return  # skip, xfail, exit, KeyboardInterrupt: nothing to diagnose
    try:
        failure = f"{type(exc).__name__}: {exc}"
        item.stash[diagnosis_key] = recorder.diagnose(regions, failure)
    except Exception as error:  # diagnostics must never hide the test's own failure
        item.stash[diagnosis_key] = f"diagnostics failed: {type(error).__name__}: {error}"


def _diagnosed_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """A test using the cgmem fixture: history if asked, a snapshot if it fails."""
    __tracebackhide__ = True
    recorder = _recorder(item)
    try:
        recorder.start()
        try:
            return (yield)
        except BaseException as exc:
            _diagnose(item, recorder, item.stash.get(regions_key, []), exc)
            raise
    finally:
        recorder.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    try:
        if call.when == "call":
            _after_call(item, call, report)
    finally:
        if call.when == "teardown" and "pytest_cgmem.measure" in sys.modules:
            sys.modules["pytest_cgmem.measure"].abandon_all()
    return report


def _after_call(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    regions = item.stash.get(regions_key, None)
    if regions:
        budget = item.stash.get(budget_key, None)
        item.config.stash[records_key].append(
            TestRecord(item.nodeid, report.outcome, tuple(regions))
        )
        if report.failed:
            text = section(regions, budget)
            diagnosis = item.stash.get(diagnosis_key, None)
            if diagnosis:
                text += "\n" + diagnosis
            report.sections.append(("cgmem", text))
    excinfo = call.excinfo
    if excinfo is not None and "pytest_cgmem.measure" in sys.modules:
        measure = sys.modules["pytest_cgmem.measure"]
        keep_for_pdb = item.config.getoption("usepdb", False)
        if (regions or measure.is_oom(excinfo.value)) and not keep_for_pdb:
            measure.release_exception_frames(excinfo.value)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    records: list[TestRecord] = config.stash[records_key]
    lines = summary(records, config.stash[settings_key].summary)
    if lines:
        terminalreporter.write_sep("-", "cgmem")
        for line in lines:
            terminalreporter.write_line(line)
