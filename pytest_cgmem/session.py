"""The one owner of a run: which tests are measured, the verdicts, one record per test.

``CgmemSession`` is registered by the plugin in ``pytest_configure``. It measures a marked
test's call phase, judges every measured test once (budgets of the call region and of
recorded regions, the baseline), keeps one ``TestRecord`` per measured test, exports the
figures (JUnit, pytest-benchmark, files), carries records from xdist workers to the
controller and prints the summary. GPU work goes through the ``cuda`` package, imported
only when a test asks for GPU memory figures.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

from .checks.budgets import Budget, Violation, parse_budget
from .cuda import cuda_started
from .failures import BaselineRegression, BudgetExceeded, CgmemFailure
from .metrics import CALL_LABEL, Number
from .reports.text import baseline_summary, header, section, suite_summary, summary
from .results.baseline import Baseline, Findings, effective, parse_tolerance
from .results.exporters import benchmark_figures, junit_properties
from .results.records import RegionResult, TestRecord
from .results.torchrun import Job, ranked_regions
from .settings import Settings
from .units import CgmemUsageError

NO_GPU = "cgmem: no CUDA device"

budget_key = pytest.StashKey[Budget]()
"""A marked test's budget: the default budget overridden by its marks, key by key."""
regions_key = pytest.StashKey[list[RegionResult]]()
"""The finished regions of the test running now, in order (the marked call phase first)."""
opted_out_key = pytest.StashKey[str]()
"""Under --cgmem-all: the reason a test is not measured (its ``cgmem_off`` mark)."""
_suite_key = pytest.StashKey[bool]()
_verdict_key = pytest.StashKey["Verdict"]()
_diagnosis_key = pytest.StashKey[str]()

_CUDA_MODULE = "pytest_cgmem.cuda.allocator"


@dataclass(frozen=True)
class Verdict:
    """What judging a test found, kept until its record is made."""

    budget: dict[str, Number]
    checked: tuple[str | None, ...]
    tolerance: dict[str, Number] | None
    violations: tuple[Violation, ...]
    findings: Findings | None


def item_budget(item: pytest.Item, default: Budget) -> Budget:
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


def item_tolerance(item: pytest.Item) -> dict[str, Number] | None:
    """The closest cgmem mark's ``tolerance=`` (validated at collection), parsed."""
    for mark in item.iter_markers("cgmem"):
        if "tolerance" in mark.kwargs:
            return parse_tolerance(mark.kwargs["tolerance"])
    return None


def opt_out_reason(mark: pytest.Mark) -> str:
    """The reason of a ``cgmem_off`` mark: one non-empty string, positional or ``reason=``."""
    unknown = sorted(set(mark.kwargs) - {"reason"})
    if unknown:
        raise CgmemUsageError(f"unknown argument(s) {', '.join(unknown)}; it takes a reason")
    reasons = [*mark.args, *mark.kwargs.values()]
    if len(reasons) != 1 or not isinstance(reasons[0], str) or not reasons[0].strip():
        raise CgmemUsageError(
            "takes one reason, e.g. cgmem_off('runs its own allocator'), got "
            + (", ".join(repr(r) for r in reasons) or "none")
        )
    return str(reasons[0]).strip()


def uses_fixture(item: pytest.Item) -> bool:
    return "cgmem" in getattr(item, "fixturenames", ())


def measured(item: pytest.Item) -> bool:
    """Marked, or using the ``cgmem`` fixture: a test whose GPU memory is measured."""
    return budget_key in item.stash or uses_fixture(item)


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return str(report.outcome)


def forget_last_failure() -> None:
    """Drop ``sys.last_*`` before the region starts, not inside it as pytest's runner does.

    They pin the previous failing test's frames (and its tensors); freed inside the region,
    that memory would offset this test's figures.
    """
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)


class CgmemSession:
    """Measures, judges and records the run's GPU-memory tests (see the module docstring).

    Under pytest-xdist each worker sends its records to the controller
    (``workeroutput``), which alone writes files and prints the summary.
    """

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.records: list[TestRecord] = []
        self.machine: dict[str, Any] | None = None
        self.lines: list[str] = []
        self.baseline: Baseline | None = None
        self._cuda: bool | None = None
        self.opted_out: dict[str, str] = {}
        self.never_on_gpu = 0
        self._diagnostics: Any = None
        workerinput = getattr(config, "workerinput", None)
        self.worker: str | None = None if workerinput is None else workerinput.get("workerid")
        self.job = Job.from_env(os.environ)
        """This process's place in a torchrun job (None outside one): results/torchrun.py."""
        if settings.baseline:
            from .results import runfile

            try:
                document = runfile.load_run(settings.baseline, "baseline")
            except CgmemUsageError as exc:
                raise pytest.UsageError(str(exc)) from None
            self.baseline = Baseline(settings.baseline, document)

    # -- collection ---------------------------------------------------------------------

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        default = self.settings.budget
        errors = []
        for item in items:
            off = item.get_closest_marker("cgmem_off")
            if off is not None:
                try:
                    reason = opt_out_reason(off)
                except CgmemUsageError as exc:
                    errors.append(f"{item.nodeid}: @pytest.mark.cgmem_off: {exc}")
                    continue
            if item.get_closest_marker("cgmem") is not None:
                try:
                    item.stash[budget_key] = item_budget(item, default)
                except CgmemUsageError as exc:
                    errors.append(f"{item.nodeid}: @pytest.mark.cgmem: {exc}")
            elif self.settings.all:
                if off is not None:
                    item.stash[opted_out_key] = reason
                    self.opted_out[item.nodeid] = reason
                else:
                    item.stash[_suite_key] = True
        if errors:
            raise pytest.UsageError(*errors)

    def pytest_report_collectionfinish(self, items: list[pytest.Item]) -> list[str]:
        if not any(measured(item) for item in items):
            return []  # under --cgmem-all too: nothing asked for CUDA, so torch stays out
        from .cuda.machine import machine_info

        return header(machine_info())

    # -- running a test -----------------------------------------------------------------

    def require_cuda(self) -> None:
        """Skip (or fail under --cgmem-require-gpu) when no CUDA device can be used."""
        if self._cuda is None:
            from .cuda.allocator import cuda_available

            self._cuda = cuda_available()
        if not self._cuda:
            if self.settings.require_gpu:
                pytest.fail(f"{NO_GPU} (--cgmem-require-gpu)", pytrace=False)
            raise pytest.skip.Exception(NO_GPU, _use_item_location=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if budget_key in item.stash:
            self.require_cuda()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """A marked test's call phase is a region; every test with regions is judged."""
        __tracebackhide__ = True
        budget = item.stash.get(budget_key, None)
        if budget is None and _suite_key in item.stash:
            if not cuda_started():
                return (yield from self._until_cuda_starts(item))
            budget = self.settings.budget
        if budget is None and not uses_fixture(item):
            try:
                outcome = yield
            except BaseException:
                self._judge(item)
                raise
            error = self._judge(item)
            if error is not None:
                raise error
            return outcome
        regions = item.stash.setdefault(regions_key, [])
        recorder = self._recorder(item)
        region = None
        if budget is not None:
            from .cuda.region import Region

            forget_last_failure()
            device, rank = self.place()
            region = Region(CALL_LABEL, device=device, rank=rank).start()
        try:
            recorder.start(region)
            try:
                outcome = yield
            except BaseException as exc:
                if region is not None:
                    with contextlib.suppress(Exception):  # the test's own error matters more
                        regions.insert(0, region.stop(exc))
                self._diagnose(item, recorder, regions, exc)
                self._judge(item)
                raise
            if region is not None:
                regions.insert(0, region.stop())
            error = self._judge(item)
            if error is not None:
                if isinstance(error, BudgetExceeded):
                    self._diagnose(item, recorder, regions, error)
                raise error
        finally:
            recorder.close()
        return outcome

    def place(self) -> tuple[int | None, int | None]:
        """(device, rank) of this process's regions: in a torchrun rank its ``LOCAL_RANK``
        device (where that is a visible device index) and its rank; else (None, None), the
        current device and no rank."""
        if self.job is None:
            return None, None
        from .cuda.distributed import torchrun_device

        return torchrun_device(self.job.local_rank), self.job.rank

    def _until_cuda_starts(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """Under --cgmem-all, a test that begins with no CUDA context: free while it uses
        none; one that starts CUDA itself is measured from CUDA's start."""
        __tracebackhide__ = True
        t0 = time.perf_counter()
        try:
            outcome = yield
        except BaseException as exc:
            if cuda_started():
                self._late_region(item, t0, exc)
                self._judge(item)
            raise
        if not cuda_started():
            self.never_on_gpu += 1
            return outcome
        self._late_region(item, t0)
        error = self._judge(item)
        if error is not None:
            raise error
        return outcome

    @staticmethod
    def _late_region(item: pytest.Item, t0: float, error: BaseException | None = None) -> None:
        from .cuda.region import Region

        region = Region.since_cuda_started(CALL_LABEL)
        region.started_at(t0)
        with contextlib.suppress(Exception):  # the test's own error matters more
            item.stash.setdefault(regions_key, []).insert(0, region.stop(error))

    def _judge(self, item: pytest.Item) -> CgmemFailure | None:
        """Hold the call region and recorded regions against the budget, every region
        against the baseline; keep the verdict for the test's record."""
        regions = item.stash.get(regions_key, None)
        if not regions:
            return None
        marked = item.stash.get(budget_key, None)
        if marked is None and _suite_key in item.stash:
            marked = self.settings.budget
        budget = marked if marked is not None else self.settings.budget
        checked = tuple(
            r.label
            for i, r in enumerate(regions)
            if r.judged or (i == 0 and marked is not None and r.label == CALL_LABEL)
        )
        violations = tuple(v for r in regions if r.label in checked for v in r.check(budget))
        tolerance = item_tolerance(item) if budget_key in item.stash else None
        findings = None
        if self.baseline is not None:
            default = self.settings.tolerance_default
            mine = regions if self.job is None else ranked_regions(regions, self.job.rank)
            findings = self.baseline.check(item.nodeid, mine, effective(default, tolerance))
        item.stash[_verdict_key] = Verdict(
            dict(budget.limits) if checked else {}, checked, tolerance, violations, findings
        )
        if violations:
            return BudgetExceeded(violations)
        if findings is not None and findings.regressions:
            assert self.baseline is not None
            return BaselineRegression(findings.regressions, self.baseline.path)
        return None

    def _recorder(self, item: pytest.Item) -> Any:
        """The test's diagnostics recorder; its settings are worked out once per session."""
        from .cuda.history import DiagnosticsConfig, Recorder

        if self._diagnostics is None:
            settings = self.settings
            invocation = self.config.invocation_params.dir
            artifacts = None if settings.artifacts is None else invocation / settings.artifacts
            hidden = [os.path.dirname(pytest.__file__), os.path.dirname(os.path.abspath(__file__))]
            hidden += [
                os.path.dirname(str(getattr(sys.modules.get(m), "__file__", "") or ""))
                for m in ("_pytest", "pluggy")
            ]
            self._diagnostics = DiagnosticsConfig(
                history=settings.history,
                history_entries=settings.history_entries,
                stacks=settings.stacks,
                artifacts=artifacts,
                hidden_dirs=tuple(h for h in hidden if h),
                roots=(str(self.config.rootpath), str(invocation)),
            )
        return Recorder(self._diagnostics, item.nodeid)

    @staticmethod
    def _diagnose(
        item: pytest.Item, recorder: Any, regions: list[RegionResult], exc: BaseException
    ) -> None:
        """Failing path only: snapshot the allocator and keep the text for the section."""
        if not isinstance(exc, (Exception, pytest.fail.Exception)):
            return  # skip, xfail, exit, KeyboardInterrupt: nothing to diagnose
        try:
            failure = f"{type(exc).__name__}: {exc}"
            item.stash[_diagnosis_key] = recorder.diagnose(regions, failure)
        except Exception as error:  # diagnostics must never hide the test's own failure
            item.stash[_diagnosis_key] = f"diagnostics failed: {type(error).__name__}: {error}"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        try:
            if call.when == "call":
                self._after_call(item, call, report)
        finally:
            if call.when == "teardown" and "pytest_cgmem.cuda.region" in sys.modules:
                sys.modules["pytest_cgmem.cuda.region"].abandon_all()
        return report

    def _after_call(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> None:
        regions = item.stash.get(regions_key, None)
        if regions:
            self._record(item, report, tuple(regions))
        excinfo = call.excinfo
        if excinfo is not None and _CUDA_MODULE in sys.modules:
            allocator = sys.modules[_CUDA_MODULE]
            keep_for_pdb = item.config.getoption("usepdb", False)
            if (regions or allocator.is_oom(excinfo.value)) and not keep_for_pdb:
                from .cuda.region import release_exception_frames

                release_exception_frames(excinfo.value)

    def _record(
        self, item: pytest.Item, report: pytest.TestReport, regions: tuple[RegionResult, ...]
    ) -> None:
        verdict = item.stash.get(_verdict_key, None)
        findings = None if verdict is None else verdict.findings
        record = TestRecord(
            nodeid=item.nodeid,
            outcome=_outcome(report),
            regions=regions,
            budget=verdict.budget if verdict else {},
            checked=verdict.checked if verdict else (),
            tolerance=verdict.tolerance if verdict else None,
            worker=self.worker,
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            violations=verdict.violations if verdict else (),
            baseline=None if findings is None else findings.to_dict(),
        )
        self.records.append(record)
        properties = junit_properties(regions)
        report.user_properties.extend(properties)  # the call report, for report readers
        item.user_properties.extend(properties)  # the teardown report, which JUnit reads
        if report.failed:
            text = section(regions, item.stash.get(budget_key, None))
            diagnosis = item.stash.get(_diagnosis_key, None)
            if diagnosis:
                text += "\n" + diagnosis
            report.sections.append(("cgmem", text))
        if "benchmark" in getattr(item, "fixturenames", ()) and self.config.pluginmanager.hasplugin(
            "benchmark"
        ):
            bench = getattr(item, "funcargs", {}).get("benchmark")
            extra = getattr(bench, "extra_info", None)
            if isinstance(extra, dict):
                extra["cgmem"] = benchmark_figures(regions)

    # -- the run's end ------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_machine_info(
        self, config: pytest.Config, machine_info: dict[str, Any]
    ) -> None:
        if "torch" in sys.modules or self.records:
            machine_info["cgmem"] = self._machine()

    def _machine(self) -> dict[str, Any]:
        from .results import runfile

        if self.machine is None:
            machine = runfile.base_machine()
            if self.records or _CUDA_MODULE in sys.modules:
                from .cuda.machine import machine_info

                machine.update(machine_info())
            self.machine = machine
        return self.machine

    def pytest_sessionfinish(self) -> None:
        if self.worker is not None:
            workeroutput: dict[str, Any] = getattr(self.config, "workeroutput", {})
            workeroutput["cgmem"] = {
                "entries": [r.to_dict() for r in self.records],
                "machine": self._machine() if self.records else None,
            }
            return
        self._write()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """On the xdist controller: a worker's records."""
        payload = getattr(node, "workeroutput", {}).get("cgmem")
        if not payload:
            return
        self.records.extend(TestRecord.from_dict(data) for data in payload["entries"])
        if self.machine is None and payload.get("machine"):
            self.machine = payload["machine"]

    def _write(self) -> None:
        from .results import runfile
        from .results.exporters import gab_entries

        settings = self.settings
        if not (settings.json or settings.gab_json or settings.save_baseline):
            return
        document = runfile.build_run(
            self.records,
            self._machine(),
            runfile.git_commit(self.config.rootpath),
            settings={
                "budget": dict(settings.budget.limits),
                "tolerance": settings.tolerance,
                "tolerance_abs": settings.tolerance_abs,
                "baseline": settings.baseline,
                "xdist": any(r.worker for r in self.records),
            },
        )
        job = self.job
        if job is not None:  # a torchrun rank: rank 0 writes every rank's records
            from .results import torchrun

            shared = str(settings.json or settings.save_baseline or settings.gab_json)
            gathered = torchrun.gather(job, document, shared, self.lines)
            if gathered is None:
                return
            document = gathered
        targets = [
            (settings.json, "run file", document),
            (settings.save_baseline, "baseline", document),
            (settings.gab_json, "github-action-benchmark file", None),
        ]
        for path, what, data in targets:
            if not path:
                continue
            try:
                runfile.write_json(path, gab_entries(document) if data is None else data)
            except (OSError, ValueError) as exc:
                self.lines.append(f"cgmem: could not write {what} {path!r}: {exc}")
            else:
                self.lines.append(f"cgmem: wrote {what} {path} ({len(self.records)} test(s))")
        if job is not None:
            torchrun.release(job, shared)  # the other ranks may exit now

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = summary(self.records, self.settings.summary)
        if self.settings.all:
            lines[:0] = suite_summary(self.records, self.opted_out, self.never_on_gpu)
        if lines:
            terminalreporter.write_sep("-", "cgmem")
            for line in lines:
                terminalreporter.write_line(line)
        results = list(self.lines)
        if self.baseline is not None:
            results[:0] = baseline_summary(self.baseline.path, self.records, self.baseline.nodeids)
        if results:
            terminalreporter.write_sep("-", "cgmem results")
            for line in results:
                terminalreporter.write_line(line)
