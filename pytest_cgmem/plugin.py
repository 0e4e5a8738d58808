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

from .baseline import Baseline, BaselineRegression, effective, parse_tolerance
from .budgets import CALL_LABEL, Budget, BudgetExceeded, Violation, metric_help, parse_budget
from .fixture import CgmemFixture
from .record import FigureRecorder
from .report import TestRecord, baseline_summary, header, section, summary
from .results import RegionResult
from .runfile import TestEntry, entry_from_dict
from .settings import OPTIONS, Settings, resolve
from .units import CgmemUsageError, Tolerance

MARK_HELP = (
    "cgmem(**budgets): measure the test's call phase on the GPU and fail it when a "
    "figure exceeds its budget. Keywords (bytes as an int or '512 MiB'; binary units "
    "B, KiB, MiB, GiB, TiB, decimal KB, MB, GB, TB): " + metric_help() + "; and "
    "tolerance ('10%', '4MiB', '10% 4MiB' or an int of bytes): growth over --cgmem-baseline "
    "that is not a "
    "regression for this test, replacing --cgmem-tolerance/--cgmem-tolerance-abs part by part"
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
    problem = config.stash.get(pin_problem_key, None)
    if problem:
        raise pytest.UsageError(problem)
    config.pluginmanager.register(_Results(config), "cgmem-results")


def _item_budget(item: pytest.Item, default: Budget) -> Budget:
    """The default budget overridden by every cgmem mark, farthest first, key by key."""
    budget = default
    for mark in reversed(list(item.iter_markers("cgmem"))):
        if mark.args:
            raise CgmemUsageError(
                f"takes keyword budgets only (e.g. cgmem(peak='1 GiB')), got positional "
                f"{', '.join(repr(a) for a in mark.args)}"
            )
        kwargs = dict(mark.kwargs)
        if "tolerance" in kwargs:
            try:
                parse_tolerance(kwargs.pop("tolerance"))
            except CgmemUsageError as exc:
                raise CgmemUsageError(f"tolerance={mark.kwargs['tolerance']!r}: {exc}") from None
        budget = budget.merged(parse_budget(kwargs))
    return budget


def _item_tolerance(item: pytest.Item) -> dict[str, Any] | None:
    """The closest cgmem mark's ``tolerance=`` (validated at collection), parsed."""
    for mark in item.iter_markers("cgmem"):
        if "tolerance" in mark.kwargs:
            return parse_tolerance(mark.kwargs["tolerance"])
    return None


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


# --- results for CI and dashboards: JSON, baselines, pytest-benchmark, JUnit, xdist -------

pin_problem_key = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Pin a pytest-xdist worker to its device before any conftest can start CUDA."""
    from .pinning import count_devices, device_for_worker
    from .settings import parse_devices

    workerid = os.environ.get("PYTEST_XDIST_WORKER")
    if workerid is None:
        return
    raw = getattr(early_config.known_args_namespace, _dest("devices"), None)
    source = "--cgmem-devices"
    if raw is None:
        with contextlib.suppress(Exception):
            raw, source = early_config.getini("cgmem_devices") or None, "cgmem_devices"
    if raw is None:
        return
    try:
        devices = parse_devices(raw)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = count_devices() if devices == "all" and visible is None else 0
        chosen = device_for_worker(workerid, devices, visible, count)
    except (CgmemUsageError, IndexError) as exc:
        early_config.stash[pin_problem_key] = f"{source}={raw!r}: {exc}"
        return
    if chosen is None:
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        early_config.stash[pin_problem_key] = (
            f"{source}={raw!r}: CUDA was already initialised in worker {workerid}; "
            "it cannot be pinned to a device"
        )
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen


@pytest.fixture
def cgmem_record(request: pytest.FixtureRequest) -> FigureRecorder:
    """Record figures measured elsewhere as a region of this test (needs no CUDA):
    ``cgmem_record("server", peak="1.2 GiB", device=...)``."""
    return FigureRecorder(request.node.stash.setdefault(regions_key, []).append)


_verdict_key = pytest.StashKey[tuple[dict[str, Any], tuple[str | None, ...], Any, Any]]()


class _Results:
    """Collects every measured test as a run-file entry; writes files at the session's end.

    Under pytest-xdist each worker sends its entries to the controller
    (``workeroutput``), which alone writes files and prints the summary.
    """

    def __init__(self, config: pytest.Config) -> None:
        from . import runfile

        self.config = config
        self.settings: Settings = config.stash[settings_key]
        self.entries: list[TestEntry] = []
        self.machine: dict[str, Any] | None = None
        self.lines: list[str] = []
        self.baseline: Baseline | None = None
        self.tolerance = Tolerance(self.settings.tolerance, self.settings.tolerance_abs)
        workerinput = getattr(config, "workerinput", None)
        self.worker: str | None = None if workerinput is None else workerinput.get("workerid")
        if self.settings.baseline:
            try:
                document = runfile.load_run(self.settings.baseline, "baseline")
            except CgmemUsageError as exc:
                raise pytest.UsageError(str(exc)) from None
            self.baseline = Baseline(self.settings.baseline, document)

    # -- in the process that runs the tests --------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        try:
            outcome = yield
        except BaseException:
            self._judge(item)
            raise
        error = self._judge(item)
        if error is not None:
            raise error
        return outcome

    def _judge(self, item: pytest.Item) -> AssertionError | None:
        """Hold recorded regions against the budget and every region against the baseline."""
        regions = item.stash.get(regions_key, None)
        if not regions:
            return None
        marked = item.stash.get(budget_key, None)
        budget = marked if marked is not None else self.settings.budget
        checked: list[str | None] = []
        if marked is not None and regions[0].label == CALL_LABEL:
            checked.append(CALL_LABEL)
        violations: list[Violation] = []
        for region in regions:
            if region.extra.get("recorded"):
                checked.append(region.label)
                violations.extend(region.check(budget))
        override = _item_tolerance(item) if marked is not None else None
        findings = None
        if self.baseline is not None:
            tolerance = effective(self.tolerance, override)
            findings = self.baseline.check(item.nodeid, regions, tolerance)
        item.stash[_verdict_key] = (
            dict(budget.limits) if checked else {},
            tuple(checked),
            override,
            findings,
        )
        if violations:
            return BudgetExceeded(violations)
        if findings is not None and findings.regressions:
            assert self.baseline is not None
            return BaselineRegression(findings.regressions, self.baseline.path)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        regions = item.stash.get(regions_key, None)
        if call.when == "call" and regions:
            self._collect(item, report, tuple(regions))
        return report

    def _collect(
        self, item: pytest.Item, report: pytest.TestReport, regions: tuple[RegionResult, ...]
    ) -> None:
        budget, checked, override, findings = item.stash.get(_verdict_key, ({}, (), None, None))
        outcome: str = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        self.entries.append(
            TestEntry(
                nodeid=item.nodeid,
                outcome=outcome,
                regions=regions,
                budget=budget,
                checked=checked,
                tolerance=override,
                worker=self.worker,
                cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                baseline=None if findings is None else findings.to_dict(),
            )
        )
        for region in regions:
            label = region.label or "region"
            for device in region.devices:
                where = f"{label}.cuda{device.index}" if len(region.devices) > 1 else label
                for metric, value in device.metrics().items():
                    if value is not None:
                        item.user_properties.append((f"cgmem.{where}.{metric}", value))
        if "benchmark" in getattr(item, "fixturenames", ()) and self.config.pluginmanager.hasplugin(
            "benchmark"
        ):
            bench = getattr(item, "funcargs", {}).get("benchmark")
            extra = getattr(bench, "extra_info", None)
            if isinstance(extra, dict):
                extra["cgmem"] = _benchmark_figures(regions)

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_machine_info(
        self, config: pytest.Config, machine_info: dict[str, Any]
    ) -> None:
        if "torch" in sys.modules or self.entries:
            machine_info["cgmem"] = self._machine()

    def _machine(self) -> dict[str, Any]:
        from . import runfile

        if self.machine is None:
            machine = runfile.base_machine()
            if self.entries or "pytest_cgmem.measure" in sys.modules:
                from . import measure

                machine.update(measure.machine_info())
            self.machine = machine
        return self.machine

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker is not None:
            workeroutput: dict[str, Any] = getattr(self.config, "workeroutput", {})
            workeroutput["cgmem"] = {
                "entries": [e.to_dict() for e in self.entries],
                "machine": self._machine() if self.entries else None,
            }
            return
        self._write()

    # -- on the pytest-xdist controller ---------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        payload = getattr(node, "workeroutput", {}).get("cgmem")
        if not payload:
            return
        for data in payload["entries"]:
            entry = entry_from_dict(data)
            self.entries.append(entry)
            self.config.stash[records_key].append(
                TestRecord(entry.nodeid, entry.outcome, entry.regions)
            )
        if self.machine is None and payload.get("machine"):
            self.machine = payload["machine"]

    def _write(self) -> None:
        from . import runfile

        settings = self.settings
        if not (settings.json or settings.gab_json or settings.save_baseline):
            return
        document = runfile.build_run(
            self.entries,
            self._machine(),
            runfile.git_commit(self.config.rootpath),
            settings={
                "budget": dict(settings.budget.limits),
                "tolerance": settings.tolerance,
                "tolerance_abs": settings.tolerance_abs,
                "baseline": settings.baseline,
                "xdist": any(e.worker for e in self.entries),
            },
        )
        targets = [
            (settings.json, "run file", document),
            (settings.save_baseline, "baseline", document),
            (settings.gab_json, "github-action-benchmark file", None),
        ]
        for path, what, data in targets:
            if not path:
                continue
            try:
                runfile.write_json(path, runfile.gab_entries(document) if data is None else data)
            except (OSError, ValueError) as exc:
                self.lines.append(f"cgmem: could not write {what} {path!r}: {exc}")
            else:
                self.lines.append(f"cgmem: wrote {what} {path} ({len(self.entries)} test(s))")

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = list(self.lines)
        if self.baseline is not None:
            lines[:0] = baseline_summary(
                self.baseline.path,
                [e.to_dict() for e in self.entries],
                self.baseline.nodeids,
            )
        if lines:
            terminalreporter.write_sep("-", "cgmem results")
            for line in lines:
                terminalreporter.write_line(line)


def _benchmark_figures(regions: tuple[RegionResult, ...]) -> dict[str, Any]:
    """``{label: {metric: value}}``; ``{label: {"cuda:N": {...}}}`` for a multi-device region."""
    found: dict[str, Any] = {}
    for region in regions:
        per_device = {
            f"cuda:{d.index}": {m: v for m, v in d.metrics().items() if v is not None}
            for d in region.devices
        }
        one = len(per_device) == 1
        found[region.label or "region"] = next(iter(per_device.values())) if one else per_device
    return found
