"""The one owner of a run: which tests are measured, the verdicts, one record per test.

``CgmemSession`` is registered by the plugin in ``pytest_configure``. It measures a marked
test's call phase, judges every measured test once (budgets of the call region and of
recorded regions, the baseline), keeps one ``TestRecord`` per measured test, exports the
figures (JUnit, pytest-benchmark, files), journals each record as its test ends (carried
from xdist workers on the test's report) and prints the summary. GPU work goes through the
``cuda`` package, imported only when a test asks for GPU memory figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

import pytest

from .checks.budgets import Budget, Unavailable, Violation, parse_budget, unavailable_budgets
from .cuda import cuda_started, measurements_opened
from .failures import BaselineRegression, BudgetExceeded, BudgetUnavailable, CgmemFailure
from .metrics import CALL_LABEL, Number
from .results.torchrun import Job, ranked_regions
from .settings import Settings
from .units import CgmemUsageError, short_repr

if TYPE_CHECKING:  # imported where a test is measured: a run that measures none needs none
    from collections.abc import Sequence

    from .cuda.region import Region
    from .results.baseline import Baseline, Findings
    from .results.records import RegionResult, TestRecord

NO_GPU = "cgmem: no CUDA device"


_GPU_REQUIRED = "cgmem_gpu_required"


def fail_for_want_of_a_gpu(message: str) -> NoReturn:
    """``--cgmem-require-gpu``'s failure where no GPU is (pytest's own ``Failed``, marked):
    an error even in a test marked xfail, whose failures pytest would otherwise take for
    the expected one (``_not_xfailed``)."""
    __tracebackhide__ = True
    error = pytest.fail.Exception(message, pytrace=False)
    setattr(error, _GPU_REQUIRED, True)
    raise error


_T = TypeVar("_T")
_D = TypeVar("_D")

budget_key = pytest.StashKey[Budget]()
"""A marked test's budget: the default budget overridden by its marks, key by key."""
regions_key = pytest.StashKey[list["RegionResult"]]()
"""The finished regions of the test running now, in order (the marked call phase first)."""
opted_out_key = pytest.StashKey[str]()
"""The reason of an unmarked test's ``cgmem_off`` mark: under --cgmem-all its call phase is
not measured, and in any run nothing it records is held to the default budget or the
baseline."""
fixture_used_key = pytest.StashKey[bool]()
"""The plugin's ``cgmem`` fixture was set up for the test."""
_never_used_key = pytest.StashKey[bool]()
"""Under --cgmem-all: the test ran and never used CUDA (so it was not measured)."""
_suite_key = pytest.StashKey[bool]()
_usage_error_key = pytest.StashKey[str]()
"""On an xdist worker: why the test's marks cannot be used (failed in its setup, since
xdist turns a worker's usage error into an internal error that loses the message)."""
_tolerance_key = pytest.StashKey[dict[str, Number]]()
_verdict_key = pytest.StashKey["Verdict"]()
_diagnosis_key = pytest.StashKey[str]()
_machine_key = pytest.StashKey[dict[str, Any]]()
_machine_torch_key = pytest.StashKey[bool]()
"""Whether the process had imported torch when its machine was read (``process_machine``)."""
_calling_key = pytest.StashKey[bool]()
"""The test's call phase is running: a report made now is a subtest's (set from the call's
start to its end, and kept False after it: the test ran)."""
_recorded_key = pytest.StashKey[int]()
"""How many of the test's regions its record holds (more may come from fixture teardown)."""
_failed_key = pytest.StashKey["CgmemFailure | None"]()
"""The failure judging the test's regions gave it (in its call phase), None where none."""
_outcome_key = pytest.StashKey[str]()
"""The test's outcome so far: its call's, or its setup's where that failed or skipped."""
_late_key = pytest.StashKey[bool]()
"""The per-test hooks came back while this test was being set up or run."""
_late_call_key = pytest.StashKey[bool]()
"""... while it ran: its call phase had no wrapper of ours."""
_quiet_key = pytest.StashKey[bool]()
"""Collection found nothing in this test that needs the per-test hooks, which the run keeps
for others: they do only what any test needs (graph tracking taken off, an OOM's frames
released, regions left open stopped) unless a fixture of ours is asked for (then the flag
goes)."""
_unittest_skip_key = pytest.StashKey[bool]()
"""A marked ``unittest.TestCase`` test its own skip decorator skips (found in setup)."""
_opened_key = pytest.StashKey[int]()
"""How many regions and graph logs this process had opened when the test's setup began."""
_properties_key = pytest.StashKey[list[tuple[str, object]]]()
"""The JUnit properties this plugin added to the test (taken back before a rerun)."""
_ended_key = pytest.StashKey[bool]()
"""The test's teardown has ended: its record is made, and a region added now reaches none."""
_ATTEMPT_KEYS: tuple[pytest.StashKey[Any], ...] = (
    _calling_key,
    regions_key,
    _verdict_key,
    _never_used_key,
    _diagnosis_key,
    _recorded_key,
    _failed_key,
    _outcome_key,
    _properties_key,
    _late_key,
    _late_call_key,
    _ended_key,
)

RESULT_ATTRIBUTE = "cgmem_result"
"""Under pytest-xdist, the call report's attribute that carries to the controller a measured
test's record in its run-file form (as JSON text where ``record_text`` writes it, which
execnet carries far faster than the data: 1 against 34 µs a test to serialize, 2 against
38 to read back; and, the first time, the worker's machine), and under
--cgmem-all whether the test was opted out or never used CUDA: xdist serializes a report's
attributes with it, so they arrive as the test ends."""

_RERUN = "rerun"
"""The outcome pytest-rerunfailures gives an attempt it runs again (none of pytest's own)."""
_NO_TESTS_MEANT = (
    "collectonly",
    "showfixtures",
    "show_fixtures_per_test",
    "cacheshow",
    "setuponly",
    "setupplan",
    "help",
    "markers",
)
"""pytest's options for runs that run no test (their ``config.option`` names): they check
no output path and write no file."""


def runs_no_tests(config: pytest.Config) -> bool:
    """``--collect-only``, ``--fixtures``, ``--setup-plan``, ``--help`` and the like."""
    return no_tests_meant(config.option)


def _ends_kept(text: str, most: int = 500) -> str:
    """``text`` within ``most`` characters, its start and its end kept: a traceback that
    xdist gives for a dead worker says what was raised in its last line."""
    if len(text) <= most:
        return text
    tail = (most - 5) * 3 // 5
    return f"{text[: most - 5 - tail]} ... {text[-tail:]}"


def _recorded_late(item: pytest.Item) -> bool:
    """Regions were recorded since the test's record: in a fixture's teardown, or in setup
    where the call never ran."""
    regions = _stashed(item, regions_key, None)
    return regions is not None and len(regions) > _stashed(item, _recorded_key, 0)


def _raised(error: BaseException) -> pytest.ExceptionInfo[BaseException]:
    """``error`` as an exception pytest caught (an ExceptionInfo needs its traceback)."""
    __tracebackhide__ = True
    try:
        raise error
    except BaseException:
        return pytest.ExceptionInfo.from_current()


def _shown(line: str) -> str:
    """A line of the plugin's summary as a terminal line: a node id's or a path's control
    characters and undecodable bytes written out (``\\x1b``, ``\\xff``), as ``cgmem``
    prints them."""
    from .results.jsonio import valid_text, visible

    return visible(valid_text(line))


def _raised_at(item: pytest.Item, error: BaseException) -> pytest.ExceptionInfo[BaseException]:
    """``error`` as raised at the test function's ``def`` line, the one frame its report
    shows: pytest's summaries, ``--tb=line`` and JUnit give its message at that line, not
    at a frame of pytest's (whose frames a hook's error has) or at none (``_raised``)."""
    __tracebackhide__ = True
    try:
        path, lineno, _ = item.reportinfo()
    except Exception:
        lineno = None
    if not isinstance(item, pytest.Function) or not isinstance(lineno, int):
        return _raised(error)
    filename = os.fspath(path)
    line, width = _def_line(filename, lineno + 1, getattr(item.obj, "__globals__", None))
    # on one line, as wide as the def line: no carets under a part of it
    source = "raise (error" + " " * max(0, width - len("raise (error)")) + ")"
    code = compile(source, filename, "exec").replace(
        co_firstlineno=line, co_name=getattr(item, "originalname", item.name)
    )
    try:
        exec(code, {"error": error.with_traceback(None)}, {})
    except BaseException:
        at_the_test = error.__traceback__.tb_next if error.__traceback__ else None
        if at_the_test is None:
            return pytest.ExceptionInfo.from_current()
        error.with_traceback(at_the_test)  # without this function's frame (--tb=native, --pdb)
        return pytest.ExceptionInfo.from_exc_info((type(error), error, at_the_test))
    raise AssertionError("unreachable: the code raises")


def _def_line(path: str, first: int, module_globals: Any = None) -> tuple[int, int]:
    """The number and UTF-8 width of the line of the ``def`` of the function whose first
    line is ``first`` (that of its first decorator, whose argument may span lines or hold
    "def" in a string); ``first`` for a function with no ``def`` (a lambda) or whose source
    cannot be read. ``module_globals`` lets ``linecache`` read a zipped module's source."""
    import linecache

    lines = linecache.getlines(path, module_globals)
    return _def_line_of(path, first, len(lines), lines[first - 1] if first <= len(lines) else "")


@functools.lru_cache(maxsize=256)
def _def_line_of(path: str, first: int, count: int, line: str) -> tuple[int, int]:
    """``_def_line`` for the lines ``linecache`` holds (read by it first): once for each
    function whatever number of its parametrized tests fail."""
    import linecache
    import tokenize

    lines = iter(linecache.getlines(path)[first - 1 :])
    depth = 0
    starting = True  # at depth 0, where a statement starts: only a decorator may come first
    try:
        for token in tokenize.generate_tokens(lambda: next(lines, "")):
            if token.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                continue
            if token.type == tokenize.NEWLINE and depth == 0:
                starting = True
                continue
            if starting and depth == 0:
                if token.string == "def":
                    return first + token.start[0] - 1, len(token.line.rstrip("\r\n").encode())
                if token.string not in ("@", "async"):
                    break  # no def: a lambda, or a callable of another kind
                starting = token.string == "async"
            if token.type == tokenize.OP and token.string in "([{":
                depth += 1
            elif token.type == tokenize.OP and token.string in ")]}":
                depth -= 1
    except (tokenize.TokenError, SyntaxError):
        pass
    return first, len(line.rstrip("\r\n").encode())


def _mark_errors(errors: list[tuple[pytest.Item, str]]) -> list[str]:
    """One line per bad mark, naming the first test it reaches: a module's or class's bad
    mark would otherwise be said once for each of its tests."""
    tests: dict[str, list[str]] = {}
    for item, message in errors:
        tests.setdefault(message, []).append(item.nodeid)
    lines = []
    for message, nodeids in tests.items():
        more = f" (and {len(nodeids) - 1} more test(s) with that mark)" if len(nodeids) > 1 else ""
        lines.append(f"{nodeids[0]}{more}: {message}")
    return lines


def no_tests_meant(option: object) -> bool:
    """The options (``config.option``, or the early ``known_args_namespace``) ask for a run
    that runs no test, or for pytest's version alone."""
    return any(getattr(option, name, False) for name in (*_NO_TESTS_MEANT, "version"))


STOPPED_BEFORE_COLLECTION = (
    "the run ended before its collection: a usage error, a conftest that failed to import, "
    "or the process was stopped (pytest's output says which)"
)


def output_problems(settings: Settings, option: object, here: str | os.PathLike[str]) -> list[str]:
    """Every output path that cannot be written, before the first test (one line each);
    pytest's and other plugins' outputs (``_OTHER_OUTPUTS``, read from ``option``) only where
    they could be the same file as one of ours. ``here``: the folder pytest was started in."""
    outputs = output_files(settings)
    if not (outputs or settings.artifacts or settings.baseline):
        return []
    from .results.outputs import Output, problems

    kinds = {"run file": "run", "baseline": "run", "github-action-benchmark file": "file"}
    wanted = [
        Output(source, given, kinds[what], refreshes=what == "baseline")
        for what, source, given in outputs
    ]
    if settings.artifacts:
        wanted.append(Output(settings.source("artifacts"), settings.artifacts, "dir"))
    if settings.baseline:
        wanted.append(Output(settings.source("baseline"), settings.baseline, "input"))
    for flag, name in _OTHER_OUTPUTS:
        if name == "json_report_file" and not getattr(option, "json_report", False):
            continue  # pytest-json-report writes its file only under --json-report
        other = getattr(option, name, None)
        if isinstance(other, (str, os.PathLike)) and os.fspath(other):
            wanted.append(Output(flag, os.fspath(other), "other"))
    return problems(wanted, here)


def output_files(settings: Settings) -> list[tuple[str, str, str]]:
    """(what, option or ini key, path as given) of each file a run with ``settings`` writes."""
    found = []
    for name, what in (
        ("json", "run file"),
        ("save_baseline", "baseline"),
        ("gab_json", "github-action-benchmark file"),
    ):
        given = getattr(settings, name)
        if given:
            found.append((what, settings.source(name), given))
    return found


def retire_earlier_outputs(
    settings: Settings, option: object, here: str | os.PathLike[str]
) -> None:
    """As pytest starts, before any conftest runs: an earlier run's run file at this run's
    path is replaced by one marked incomplete (``STOPPED_BEFORE_COLLECTION``), and an
    earlier github-action-benchmark file goes, so that a run stopped before its collection
    writes its stub leaves neither looking current. Nothing happens where any output path
    has a problem (the run then stops on it, touching nothing), in an xdist worker, on a
    torchrun rank but rank 0, or in a run that runs no test; a baseline being saved is left
    as it was, as for every run that ends before its first test."""
    if os.environ.get("PYTEST_XDIST_WORKER") is not None or no_tests_meant(option):
        return
    job = Job.from_env(os.environ)
    if job is not None and job.rank:
        return
    targets = [(what, given) for what, _, given in output_files(settings) if what != "baseline"]
    if not targets or output_problems(settings, option, here):
        return
    from .results import jsonio, runfile
    from .results.outputs import resolve

    for what, given in targets:
        path = resolve(given, here)
        if not path.is_file():
            continue
        with contextlib.suppress(OSError):
            if what == "run file":
                stopped = runfile.build_run(
                    [],
                    runfile.base_machine(),
                    None,
                    complete=False,
                    incomplete_reason=STOPPED_BEFORE_COLLECTION,
                )
                try:
                    runfile.write_json(path, stopped)
                    continue
                except OSError:
                    pass  # a full disk: the earlier file must still go
            jsonio.remove(path)


_OTHER_OUTPUTS = (
    ("--junitxml", "xmlpath"),
    ("--benchmark-json", "benchmark_json"),
    ("--report-log", "report_log"),
    ("--json-report-file", "json_report_file"),
    ("--html", "htmlpath"),
)
"""The files other plugins write, held against ours (flag, ``config.option`` name): pytest's
JUnit XML, pytest-benchmark's JSON, pytest-reportlog's log, pytest-json-report's report
(under ``--json-report``) and pytest-html's page. One of them on the path of a file of ours
would be overwritten by it at the end, or overwrite it, with no word said."""

_CUDA_MODULE = "pytest_cgmem.cuda.allocator"
_REGION_MODULE = "pytest_cgmem.cuda.region"
_GRAPHS_MODULE = "pytest_cgmem.cuda.graphs"


class Verdict(NamedTuple):
    """What judging a test found, kept until its record is made (a tuple: made at every
    measured test's end, in a third of a frozen dataclass's time)."""

    budget: dict[str, Number]
    checked: tuple[str | None, ...]
    tolerance: dict[str, Number] | None
    violations: tuple[Violation, ...]
    findings: Findings | None
    judged: bool = True
    """False for a test opted out with ``cgmem_off``: its figures are kept, not judged."""


def item_budget(item: pytest.Item, default: Budget) -> Budget:
    """The default budget overridden by every cgmem mark, farthest first, key by key."""
    budget = default
    for mark in reversed(list(item.iter_markers("cgmem"))):
        if mark.args:
            raise CgmemUsageError(
                f"takes keyword budgets only (e.g. cgmem(peak='1 GiB')), got positional "
                f"{', '.join(short_repr(a) for a in mark.args)}"
            )
        kwargs = dict(mark.kwargs)
        if "tolerance" in kwargs:
            from .results.baseline import parse_tolerance

            try:
                parse_tolerance(kwargs.pop("tolerance"))
            except CgmemUsageError as exc:
                tolerance = short_repr(mark.kwargs["tolerance"])
                raise CgmemUsageError(f"tolerance={tolerance}: {exc}") from None
        budget = budget.merged(parse_budget(kwargs, also_valid=("tolerance",)))
    return budget


def item_tolerance(item: pytest.Item) -> dict[str, Number] | None:
    """The closest cgmem mark's ``tolerance=`` (validated at collection), parsed."""
    for mark in item.iter_markers("cgmem"):
        if "tolerance" in mark.kwargs:
            from .results.baseline import parse_tolerance

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
            + (", ".join(short_repr(r) for r in reasons) or "none")
        )
    reason = str(reasons[0]).strip()
    if not reason.isprintable():
        raise CgmemUsageError(
            f"the reason must be one printable line (no newline or tab), got {short_repr(reason)}"
        )
    return reason


def _unavailable(
    regions: list[RegionResult], budget: Budget, checked: tuple[str | None, ...]
) -> tuple[Unavailable, ...]:
    """Budgets of the checked regions on figures their allocator could not give."""
    found: list[Unavailable] = []
    for r in regions:
        unavailable = r.extra.get("unavailable")
        if unavailable and r.label in checked:  # most regions could give every figure
            for d in r.devices:
                found += unavailable_budgets(d.figures, budget, unavailable, d.where, r.label)
    return tuple(found)


def uses_fixture(item: pytest.Item) -> bool:
    """The plugin's ``cgmem`` fixture was set up for the test (known once its fixtures
    are): a suite's own fixture of that name, or a parameter, is not it."""
    return _stashed(item, fixture_used_key, False)


_PLUGIN_MODULE = "pytest_cgmem.plugin"


def asks_for_fixture(item: pytest.Item) -> bool:
    """At collection: the test asks for the plugin's ``cgmem`` fixture, not for a suite's
    own fixture or a ``parametrize`` argument that happens to share its name."""
    if "cgmem" not in getattr(item, "fixturenames", ()):
        return False
    if "cgmem" in getattr(getattr(item, "callspec", None), "params", {}):
        return False
    manager: Any = item.config.pluginmanager.get_plugin("funcmanage")
    try:
        definitions = list(manager.getfixturedefs("cgmem", item))
    except Exception:  # a pytest whose fixture manager differs: the name decides
        return True
    for definition in reversed(definitions):  # the override chain, nearest first
        if getattr(definition.func, "__module__", None) == _PLUGIN_MODULE:
            return True
        if "cgmem" not in getattr(definition, "argnames", ()):
            return False  # an override that does not ask for the one it overrides
    return False


_FIXTURES = frozenset({"cgmem", "cgmem_record", "cgmem_distributed"})


def _needs_test_hooks(item: pytest.Item) -> bool:
    """The test is measured, fails for its marks, asks for a fixture of the plugin's (or
    one named like it), or may ask for one in its body: ``request`` among its own
    arguments, or an item that is no test function (a doctest's ``getfixture``). The
    per-test hooks must run for it."""
    if budget_key in item.stash or _usage_error_key in item.stash:
        return True
    if not _FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
        return True
    if not isinstance(item, pytest.Function):
        return True
    code = getattr(inspect.unwrap(item.function), "__code__", None)
    if code is None:
        return True
    return "request" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]


def measured(item: pytest.Item) -> bool:
    """Marked, or asking for the ``cgmem`` fixture: a test whose GPU memory is measured."""
    return budget_key in item.stash or asks_for_fixture(item)


def skipped_by_unittest(item: pytest.Item) -> bool:
    """A ``unittest.TestCase`` test its own ``@unittest.skip``/``skipIf`` (on it or its
    class) skips when it runs: its reason is the one shown, not "no CUDA device", and
    nothing runs to be measured. (pytest ignores the flag on any other class.) Where
    ``unittest`` was never imported, no test is a TestCase."""
    unittest = sys.modules.get("unittest")
    if unittest is None:
        return False
    cls = getattr(item.parent, "obj", None)  # a TestCase's test's parent is its class
    if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
        return False
    return any(
        getattr(getattr(item, name, None), "__unittest_skip__", False) is True
        for name in ("obj", "cls")
    )


def _without_frames(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    """A failure of ours in an item that is not a test function (a doctest, a plugin's own
    item) reads as it does in a function: its message, not pytest's and pluggy's frames,
    which only a function's traceback pruning hides."""
    if isinstance(item, pytest.Function) or not report.failed or call.excinfo is None:
        return
    error = call.excinfo.value
    if isinstance(error, CgmemFailure):
        report.longrepr = f"{type(error).__module__}.{type(error).__qualname__}: {error}"


_STRICT_XPASS = "[XPASS(strict)] "


def _xpassed(item: pytest.Item, report: pytest.TestReport, error: BaseException) -> bool:
    """An xfail test that passed (pytest's XPASS, strict or not) though judging it failed
    (a budget broken, or a judging error such as a warning made an error), which the
    xfail expects (``raises`` names it or is absent): its ``wasxfail`` is set, for it to
    be shown xfailed."""
    mark = item.get_closest_marker("xfail")
    if mark is None:
        return False
    raises = mark.kwargs.get("raises")
    try:
        if raises is not None and not isinstance(error, raises):
            return False
    except TypeError:
        return False
    reason = getattr(report, "wasxfail", None)
    if report.passed and isinstance(reason, str):
        return True
    text = report.longrepr
    if report.failed and isinstance(text, str) and text.startswith(_STRICT_XPASS):
        report.wasxfail = text.removeprefix(_STRICT_XPASS)
        return True
    return False


def _outcome(report: pytest.TestReport) -> str:
    if "wasxfail" in vars(report):  # set on the report (hasattr would raise for most)
        return "xfailed" if report.skipped else "xpassed"
    return str(report.outcome)


def process_machine(config: pytest.Config) -> dict[str, Any]:
    """This process's machine: host, Python and platform, GPUs, driver, torch, CUDA and the
    allocator's settings (never imports torch, which a process that has not imported it
    reads from the installed torch's files and the environment; creates no CUDA context).
    Read once per process, so that every place that records it records the same thing; where
    it was read before the process imported torch and a test has imported it since, its
    graph keys are read once more (a new dict), the rest kept: the graphs a marked test
    captures after a ``cgmem_record`` test are said to be seen as they were."""
    machine = config.stash.get(_machine_key, None)
    if machine is None:
        from .cuda.machine import machine_info
        from .results.runfile import base_machine

        machine = config.stash[_machine_key] = {**base_machine(), **machine_info()}
        config.stash[_machine_torch_key] = _torch_imported()
    elif not config.stash[_machine_torch_key] and _torch_imported():
        # read before the process imported torch: a test has since, and may capture graphs
        from .cuda.machine import machine_info

        config.stash[_machine_torch_key] = True
        info = machine_info()
        graphs = {key: info[key] for key in _GRAPH_KEYS}
        if any(machine.get(key) != value for key, value in graphs.items()):
            machine = config.stash[_machine_key] = {**machine, **graphs}
    return machine


_GRAPH_KEYS = ("graph_tracking", "graph_pools")
"""The machine's keys that a process that has not imported torch leaves null. Filled in
once it has (a later test's import), the identity read before kept as it was."""


def _torch_imported() -> bool:
    return sys.modules.get("torch") is not None


def _stashed(item: pytest.Item, key: pytest.StashKey[_T], default: _D) -> _T | _D:
    """``item.stash.get(key, default)`` without the KeyError that pytest's ``get`` (and
    ``setdefault``) raises and catches for an absent key: a measured test's path looks up
    keys most tests lack."""
    stash = item.stash
    return stash[key] if key in stash else default  # noqa: SIM401


def regions_of(item: pytest.Item) -> list[RegionResult]:
    """The list of the test's finished regions, made by the first that needs it."""
    regions: list[RegionResult] | None = _stashed(item, regions_key, None)
    if regions is None:
        regions = item.stash[regions_key] = []
    return regions


def _not_xfailed(report: pytest.TestReport) -> None:
    """The report of a test ``fail_for_want_of_a_gpu`` stopped: a failure (an error in setup),
    also where the test is marked xfail (pytest's xfail made it an expected failure)."""
    if hasattr(report, "wasxfail"):
        del report.wasxfail
        report.outcome = "failed"


def region_adder(item: pytest.Item, fixture: str) -> Callable[[RegionResult], None]:
    """How the object a fixture of ours gave a test adds a finished region to that test.
    Refused once the test has ended: an object kept past its test (by a wider-scoped
    fixture, or a global) would give its figures to no test, silently."""

    def add(region: RegionResult) -> None:
        __tracebackhide__ = True
        if _ended_key in item.stash:
            raise CgmemUsageError(
                f"{fixture}: the object {item.nodeid} was given is used after that test "
                "ended, and its figures would reach no test; ask for the fixture in the "
                "test (or a function-scoped fixture) whose figures it records"
            )
        regions_of(item).append(region)

    return add


def _forget_attempt(item: pytest.Item) -> None:
    """Drop what an earlier run of this test left (pytest-rerunfailures runs the same item
    again): its regions, verdict and diagnosis, and the JUnit properties it added."""
    added = _stashed(item, _properties_key, [])
    if added:
        item.user_properties[:] = [p for p in item.user_properties if p not in added]
    for key in _ATTEMPT_KEYS:
        with contextlib.suppress(KeyError):
            del item.stash[key]


def _uncounted(item: pytest.Item, opened: int) -> None:
    """Leave the measurements opened since ``opened`` out of those that release a failed
    call's frames: --cgmem-all's regions keep the cache as the test found it, and a failed
    test's frames then stay as pytest keeps them (released and the cache emptied, the next
    test would find another memory layout than without the plugin)."""
    item.stash[_opened_key] = _stashed(item, _opened_key, 0) + measurements_opened() - opened


def forget_last_failure() -> None:
    """Drop ``sys.last_*`` before the region starts, not inside it as pytest's runner does.

    They pin the previous failing test's frames (and its tensors); freed inside the region,
    that memory would offset this test's figures.
    """
    names = vars(sys)  # hasattr on a module builds an AttributeError for each missing name
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        names.pop(name, None)


class _RecordTools(NamedTuple):
    """What a measured test's record is made and written with, imported by the first
    (``CgmemSession.record_tools``): an import inside a function costs each call 1-2 µs."""

    test_record: type[TestRecord]
    junit_properties: Callable[[Sequence[RegionResult]], list[tuple[str, Any]]]
    record_text: Callable[[TestRecord], str | None]
    plain_record: Callable[[TestRecord], dict[str, Any]]
    clean_text: Callable[[Any], str | None]
    compact: Callable[[Any], str]
    nonfinite_problem: Callable[[Mapping[str, Any]], str | None]


class CgmemSession:
    """Measures, judges and records the run's GPU-memory tests (see the module docstring).

    The process that writes the files (the only one in a plain run, the controller under
    pytest-xdist) takes each measured test's record as the test ends, from the test itself
    or from its call report (``RESULT_ATTRIBUTE``), and journals it once its teardown is
    reported: a killed run or a crashed worker loses at most the test that was running.
    """

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        #: the run's records, by node id (a rerun replaces the earlier attempt)
        self.records: dict[str, TestRecord] = {}
        #: each measured test's run-file form as its journal line holds it (JSON), read
        #: back when the run file is written
        self.tests: dict[str, str] = {}
        self.machine: dict[str, Any] | None = None
        self.workers_lost: list[dict[str, Any]] = []
        #: lost workers whose test pytest-rerunfailures ran again: nothing of it is lost
        self._lost_attempts: set[tuple[Any, Any]] = set()
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.refused: list[str] = []
        #: the collectors that failed to collect (each once, under xdist too)
        self.collection_errors: list[str] = []
        self.baseline: Baseline | None = None
        self.interrupted: str | None = None
        self.ended_early: str | None = None
        self.started = False
        self._looping = False
        """The run reached its test loop (``pytest_runtestloop``): not stopped before it."""
        self._start_refused = False
        """An output could not be started: the usage error that stopped the run says so."""
        self._opened: set[str] = set()
        """The outputs started so far (``what``): the run file at collection, the baseline
        being saved before the first test."""
        self._exitstatus: int | None = None
        self._journals: list[tuple[str, str, Any]] = []
        self._commit: dict[str, Any] | None = None
        self._xdist = False
        self._machine_read: dict[str, Any] | None = None
        """The machine this process read and took (or sent) last (``process_machine``)."""
        self._writes_files = bool(self._outputs())
        self._cuda: bool | None = None
        self._cuda_confirmed = False
        self._finished: set[str] = set()
        """Tests whose last attempt's teardown was reported (on the xdist controller, each
        worker's): a stop (-x) after the last of them stopped nothing."""
        self._unjournaled: dict[str, str] = {}
        """Records of tests that have not ended (journal lines held until their teardown's
        report): a run killed in a test's teardown must not keep it as it stood after the
        call."""
        self._discarded: dict[str, int] = {}
        """Each test's attempt that pytest-rerunfailures runs again (its number): reports
        of that attempt after the rerun report (its teardown's) are not the test's."""
        self.opted_out: dict[str, str] = {}
        """Under --cgmem-all: each opted-out test that ran, with its reason."""
        self.never_used: dict[str, None] = {}
        """Under --cgmem-all: the tests that ran and never used CUDA."""
        self.tracking_lingers = False
        """A call region left its graph tracking installed (``Region.linger_tracking``)."""
        self._new_recorder: Callable[[str], Any] | None = None
        self._region_type: type[Region] | None = None
        self._record_tools: _RecordTools | None = None
        self.test_hooks = PerTestHooks(self)
        """Registered with the session, and taken off at collection when no test needs them."""
        self.test_hooks_on = True
        self._refusal: str | None = None
        """A problem of this xdist worker alone that fails each of its tests."""
        self._pid = os.getpid()
        self._final_outcome: dict[str, pytest.TestReport] = {}
        """Call reports that records were made from, until they are logged."""
        workerinput = getattr(config, "workerinput", None)
        self.worker: str | None = None if workerinput is None else workerinput.get("workerid")
        self.job = Job.from_env(os.environ)
        """This process's place in a torchrun job (None outside one): results/torchrun.py."""
        writes = self.worker is None and (self.job is None or not self.job.rank)
        if writes and not runs_no_tests(config):
            problems = self._output_problems()  # only rank 0 of a torchrun job writes
            if problems:
                raise pytest.UsageError(*problems)
        shipped = None if workerinput is None else workerinput.get("cgmem_baseline")
        if settings.baseline:
            from .results.baseline import Baseline

            if shipped is not None:
                # an xdist worker holds the baseline the controller read: the file itself
                # may already be this run's stub (--cgmem-save-baseline on the same path);
                # it comes as the compact JSON of the document the controller checked
                self.baseline = Baseline(settings.baseline, json.loads(shipped))
            else:
                from .results import runfile

                try:
                    document = runfile.load_run(settings.baseline, "baseline")
                except CgmemUsageError as exc:
                    source, ini = settings.source("baseline"), config.inipath
                    where = f" ({source} in {ini})" if ini and not source.startswith("-") else ""
                    raise pytest.UsageError(f"{exc}{where}") from None
                self.baseline = Baseline(settings.baseline, document)
        self._baseline_text: str | None = None
        """The baseline as the controller ships it to each xdist worker (compact JSON)."""
        self.earlier_baseline: list[dict[str, Any]] | None = None
        """The tests of the baseline ``--cgmem-save-baseline`` replaces: it keeps those this
        run does not measure, or does not pass (``results.runfile.refreshed``)."""
        if settings.save_baseline and writes and not runs_no_tests(config):
            self.earlier_baseline = self._earlier_baseline(settings.save_baseline)

    def _earlier_baseline(self, given: str) -> list[dict[str, Any]] | None:
        target = self.path(given)
        baseline = self.baseline
        if baseline is not None and self.path(baseline.path).resolve() == target.resolve():
            return [dict(t) for t in baseline.document["tests"]]
        if not target.is_file() or target.stat().st_size == 0:
            return None  # nothing there, or an empty file: nothing to keep
        from .results import runfile

        try:
            document = runfile.load_run(target, "baseline")
        except CgmemUsageError as exc:
            self.lines.append(f"{exc}: it is replaced whole")
            return None
        return [dict(t) for t in document["tests"]]

    def path(self, given: str) -> Path:
        """An output or input path as given, against the folder pytest was started in."""
        from .results.outputs import resolve

        return resolve(given, self.config.invocation_params.dir)

    def region_type(self) -> type[Region]:
        """``Region``, imported by the first measured call (the session's own: an in-process
        pytester run's modules go with it). A method, not a property: pytest 8.1 reads every
        attribute of a plugin it registers, and reading this one would import torch."""
        if self._region_type is None:
            from .cuda.region import Region

            self._region_type = Region
        return self._region_type

    def record_tools(self) -> _RecordTools:
        """What a measured test's record is made and written with, imported once."""
        if self._record_tools is None:
            from .results.exporters import junit_properties
            from .results.jsonio import clean_text, compact
            from .results.records import TestRecord
            from .results.runfile import nonfinite_problem, plain_record, record_text

            self._record_tools = _RecordTools(
                TestRecord,
                junit_properties,
                record_text,
                plain_record,
                clean_text,
                compact,
                nonfinite_problem,
            )
        return self._record_tools

    # -- collection ---------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        """Read each test's marks once the others (conftests, plugins) have added theirs:
        the outermost wrapper, after every other implementation, wrappers' code after their
        ``yield`` too."""
        yield  # an error of another implementation goes on: no marks to read
        self._read_marks(items)

    def refuse_every_test(self, problem: str) -> None:
        """Fail each test of this xdist worker with ``problem`` (one that only the worker
        sees, as its device pinning): a worker that refused to start would be replaced by
        xdist over and over, with no limit under ``--tx``."""
        self._refusal = f"{problem} (worker {self.worker})"

    def _read_marks(self, items: list[pytest.Item]) -> None:
        if self._refusal is not None:
            for item in items:
                item.stash[_usage_error_key] = self._refusal
            return
        default = self.settings.budget
        errors: list[tuple[pytest.Item, str]] = []
        for item in items:
            off = item.get_closest_marker("cgmem_off")
            if off is not None:
                try:
                    reasons = [opt_out_reason(mark) for mark in item.iter_markers("cgmem_off")]
                except CgmemUsageError as exc:
                    errors.append((item, f"@pytest.mark.cgmem_off: {exc}"))
                    continue
                reason = reasons[0]
            if item.get_closest_marker("cgmem") is not None:
                try:
                    item.stash[budget_key] = item_budget(item, default)
                    tolerance = item_tolerance(item)
                    if tolerance is not None:
                        item.stash[_tolerance_key] = tolerance
                except (
                    ValueError,
                    TypeError,
                ) as exc:  # a usage error, or a value no parser foresaw
                    errors.append((item, f"@pytest.mark.cgmem: {exc}"))
            elif off is not None:
                item.stash[opted_out_key] = reason
            elif self.settings.all:
                item.stash[_suite_key] = True
        if errors and self.worker is not None:
            for item, message in errors:
                item.stash[_usage_error_key] = f"{item.nodeid}: {message}"
        elif errors:
            raise pytest.UsageError(*_mark_errors(errors))
        if self.settings.all:
            return
        needed = False
        for item in items:
            if _needs_test_hooks(item):
                needed = True
            else:
                item.stash[_quiet_key] = True
        if needed or self._outputs():
            return
        if self.test_hooks_on:
            self.config.pluginmanager.unregister(self.test_hooks)  # nothing here to measure
            self.test_hooks_on = False

    def ensure_test_hooks(self, item: pytest.Item) -> None:
        """A fixture of ours asked for at run time (``request.getfixturevalue`` through an
        object that kept ``request``) in a run whose collection needed no per-test hooks:
        they run from this test on (registered now, so after the plugins and conftests
        loaded since the run began). A test that collection found quiet takes the whole
        path from now on; if its call is running, the quiet call wrapper judges it as the
        whole path's does."""
        if _quiet_key in item.stash:
            del item.stash[_quiet_key]
        if self.test_hooks_on:
            return
        if self.config.pluginmanager.register(self.test_hooks, TEST_HOOKS_NAME) is None:
            return  # blocked: -p no:cgmem-tests
        self.test_hooks_on = True
        item.stash.setdefault(_opened_key, measurements_opened())
        item.stash[_late_key] = True

    def pytest_report_collectionfinish(self, items: list[pytest.Item]) -> list[str]:
        """The machine, before the first test. ``--collect-only -q`` prints node ids only
        (scripts read them), so it gets none, and nor do ``--fixtures``, ``--setup-plan``
        and the like, which run no test: they import nothing to read it."""
        if self.config.option.collectonly:
            if self.config.get_verbosity() < 0:
                return []
        elif runs_no_tests(self.config):
            return []
        if not any(measured(item) for item in items):
            return []  # under --cgmem-all too: nothing asked for CUDA, so torch stays out
        from .cuda.machine import machine_info
        from .reports.text import header

        return header(machine_info())

    # -- running a test -----------------------------------------------------------------

    def require_cuda(self) -> None:
        """Skip (or fail under --cgmem-require-gpu) when no CUDA device can be used."""
        if self._cuda is None:
            from .cuda.installed import cpu_only_torch, torch_installed

            if not torch_installed() or cpu_only_torch() is not None:
                self._cuda = False  # no torch, or a build without CUDA: known without importing it
            else:
                from .cuda.allocator import cuda_available

                self._cuda = cuda_available()
        if not self._cuda:
            self._no_gpu()

    def _no_gpu(self) -> None:
        if self.settings.require_gpu:
            fail_for_want_of_a_gpu(f"{NO_GPU} ({self.settings.source('require_gpu')})")
        raise pytest.skip.Exception(NO_GPU, _use_item_location=True)

    def confirm_cuda(self) -> None:
        """Once the fixtures are set up, before the first region: CUDA can really start
        (setup only asked NVML, which sees a device a broken driver cannot use)."""
        if self._cuda_confirmed:
            return
        from .cuda.allocator import cuda_usable

        if not cuda_started() and not cuda_usable():  # a started CUDA is usable: no call
            self._cuda = False
            self._no_gpu()
        self._cuda_confirmed = True

    def runtest_setup(self, item: pytest.Item) -> None:
        """Before the test's fixtures, after pytest's skip and xfail marks (a skip mark's
        reason wins over "no CUDA device"). A rerun starts with none of an earlier
        attempt's regions, verdict or JUnit properties."""
        if _calling_key in item.stash or regions_key in item.stash or _ended_key in item.stash:
            _forget_attempt(item)  # a rerun
        item.stash[_opened_key] = measurements_opened()
        if _usage_error_key in item.stash:
            pytest.fail(item.stash[_usage_error_key], pytrace=False)
        marked = budget_key in item.stash
        if marked and skipped_by_unittest(item):
            item.stash[_unittest_skip_key] = True  # read again by the call wrapper
            marked = False
        if marked:
            self.require_cuda()
        elif self.tracking_lingers and _suite_key not in item.stash:
            self.release_tracking()

    def release_tracking(self) -> None:
        """Remove the graph tracking the last call region left installed: a test whose
        call is no region runs with CUDAGraph as torch made it."""
        from pytest_cgmem.cuda.graphs import release_tracking

        self.tracking_lingers = False
        release_tracking()

    def runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """A marked test's call phase is a region; every test with regions is judged."""
        __tracebackhide__ = True
        item.stash[_calling_key] = True
        try:
            return (yield from self._call(item))
        finally:
            item.stash[_calling_key] = False

    def _call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        budget = _stashed(item, budget_key, None)
        if budget is not None and _unittest_skip_key in item.stash:
            budget = None
        implicit = budget is None and _suite_key in item.stash
        if implicit:
            if not cuda_started():
                return (yield from self._until_cuda_starts(item))
            budget = self.settings.budget
        if budget is None and not uses_fixture(item):
            try:
                outcome = yield
            except BaseException:
                self.judge_failed(item)
                raise
            error = self.judge(item)
            if error is not None:
                raise error
            return outcome
        regions = regions_of(item)
        recorder = self._recorder(item)
        region = None
        if budget is not None:
            self.confirm_cuda()
            forget_last_failure()
            device, rank = self.place()
            keep_cache = implicit and not budget.needs_empty_cache
            region = self.region_type()(
                CALL_LABEL, device=device, rank=rank, linger_tracking=True, keep_cache=keep_cache
            )
            self.tracking_lingers = True
            opened = measurements_opened()
            region.start()
            if keep_cache:
                _uncounted(item, opened)
        try:
            recorder.start(region)
            try:
                outcome = yield
            except BaseException as exc:
                if region is not None:
                    with contextlib.suppress(Exception):  # the test's own error matters more
                        regions.insert(0, region.stop(exc))
                self._diagnose(item, recorder, regions, exc)
                self.judge_failed(item)
                raise
            if region is not None:
                regions.insert(0, region.stop())
            error = self.judge(item)
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
            elif not _stashed(item, regions_key, None):
                item.stash[_never_used_key] = True
            self.judge_failed(item)
            raise
        if cuda_started():
            self._late_region(item, t0)
        elif not _stashed(item, regions_key, None):
            item.stash[_never_used_key] = True
            return outcome
        error = self.judge(item)  # recorded regions too (cgmem_record, distributed ranks)
        if error is not None:
            raise error
        return outcome

    @staticmethod
    def _late_region(item: pytest.Item, t0: float, error: BaseException | None = None) -> None:
        from .cuda.region import Region

        opened = measurements_opened()
        region = Region.since_cuda_started(CALL_LABEL, keep_cache=True)
        _uncounted(item, opened)
        region.started_at(t0)
        with contextlib.suppress(Exception):  # the test's own error matters more
            regions_of(item).insert(0, region.stop(error))

    def judge_failed(self, item: pytest.Item) -> None:
        """Judge a test that raised, for its record: the test's own error matters more than
        anything judging raises (a skipped budget's warning under ``-W error``)."""
        with contextlib.suppress(Exception):
            self.judge(item)

    def judge(self, item: pytest.Item) -> CgmemFailure | None:
        """Hold the call region and recorded regions against the budget, every region
        against the baseline; keep the verdict for the test's record."""
        regions = _stashed(item, regions_key, None)
        if not regions:
            return None
        marked = _stashed(item, budget_key, None)
        if marked is None and _suite_key in item.stash:
            marked = self.settings.budget
        budget = marked if marked is not None else self.settings.budget
        opted_out = marked is None and opted_out_key in item.stash
        checked: tuple[str | None, ...] = ()
        violations: tuple[Violation, ...] = ()
        if not opted_out:
            call_region = marked is not None and regions[0].label == CALL_LABEL
            checked = tuple(
                r.label for i, r in enumerate(regions) if (i == 0 and call_region) or r.judged
            )
            violations = tuple(v for r in regions if r.label in checked for v in r.check(budget))
        unavailable = _unavailable(regions, budget, checked)
        tolerance = _stashed(item, _tolerance_key, None)
        findings = None
        if self.baseline is not None and not opted_out:
            default = self.settings.tolerance_default
            mine = regions if self.job is None else ranked_regions(regions, self.job.rank)
            from pytest_cgmem.results.baseline import effective

            findings = self.baseline.check(item.nodeid, mine, effective(default, tolerance))
        item.stash[_verdict_key] = Verdict(
            dict(budget.limits) if checked else {},
            checked,
            tolerance,
            violations,
            findings,
            judged=not opted_out,
        )
        skip_unavailable = self.settings.unavailable == "skip"
        for skipped in unavailable if skip_unavailable else ():
            item.warn(pytest.PytestWarning(skipped.skipped_message))
        error: CgmemFailure | None = None
        if violations:
            error = BudgetExceeded(violations)
        elif unavailable and not skip_unavailable:
            error = BudgetUnavailable(unavailable)
        elif findings is not None and findings.regressions:
            assert self.baseline is not None
            error = BaselineRegression(findings.regressions, self.baseline.path)
        item.stash[_failed_key] = error
        return error

    def _recorder(self, item: pytest.Item) -> Any:
        """The test's diagnostics recorder; its settings are worked out once per session."""
        if self._new_recorder is None:
            self._new_recorder = self._recorder_factory()
        return self._new_recorder(item.nodeid)

    def _recorder_factory(self) -> Callable[[str], Any]:
        """``Recorder`` with this session's diagnostics settings: a test's recorder from its
        node id (the history module is imported here, once)."""
        from pytest_cgmem.cuda.history import DiagnosticsConfig, Recorder

        settings = self.settings
        invocation = self.config.invocation_params.dir
        artifacts = None if settings.artifacts is None else invocation / settings.artifacts
        hidden = [os.path.dirname(pytest.__file__), os.path.dirname(os.path.abspath(__file__))]
        hidden += [
            os.path.dirname(str(getattr(sys.modules.get(m), "__file__", "") or ""))
            for m in ("_pytest", "pluggy")
        ]
        config = DiagnosticsConfig(
            history=settings.history,
            history_entries=settings.history_entries,
            stacks=settings.stacks,
            artifacts=artifacts,
            hidden_dirs=tuple(h for h in hidden if h),
            roots=(str(self.config.rootpath), str(invocation)),
        )
        return functools.partial(Recorder, config)

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

    def runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        late = call.when == "teardown" and _recorded_late(item)
        error = self._judge_teardown(item) if late else None
        teardown_raised = call.excinfo is not None
        if error is not None and not teardown_raised:
            # the teardown's report comes from the error, as from one the teardown raised:
            # pytest-rerunfailures' --only-rerun / --rerun-except and --pdb see its type
            call.excinfo = _raised_at(item, error)
        elif call.excinfo is not None and call.excinfo.value is _stashed(item, _failed_key, None):
            call.excinfo = _raised_at(item, call.excinfo.value)
        report = yield
        try:
            if call.excinfo is not None and getattr(call.excinfo.value, _GPU_REQUIRED, False):
                _not_xfailed(report)
            if call.when == "call":
                if _late_key in item.stash and _calling_key not in item.stash:
                    item.stash[_late_call_key] = True  # the call wrapper never ran
                if _late_call_key in item.stash:
                    self._judge_late(item, call, report)
                if not _stashed(item, _calling_key, False):  # else a subtest's report
                    _without_frames(item, call, report)
                    self._after_call(item, call, report)
            elif call.when == "setup":
                if not report.passed:
                    item.stash[_outcome_key] = _outcome(report)
            elif late:
                self._after_fixtures(item, report, error, teardown_raised)
        finally:
            if call.when == "teardown":
                item.stash[_ended_key] = True
                self._after_teardown()
        return report

    def quiet_setup(self, item: pytest.Item) -> None:
        """A quiet test's setup: graph tracking a marked test left installed is taken off;
        a rerun of one that asked for a fixture in an earlier attempt starts afresh. The
        regions opened so far are counted, as for every test: a failed call's frames are
        released only where the test measured or ran out of memory."""
        if _calling_key in item.stash:
            _forget_attempt(item)
        item.stash[_opened_key] = measurements_opened()
        if self.tracking_lingers:
            self.release_tracking()

    def quiet_report(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> None:
        """What the whole path does for a test that measures nothing: a failed call's
        frames released where it ran out of memory; regions left open stopped after its
        teardown."""
        if call.when == "call":
            if not _stashed(item, _calling_key, False):  # else a subtest's report
                self._after_call(item, call, report)
        elif call.when == "teardown":
            self._after_teardown()

    def _judge_late(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> None:
        """The per-test hooks came during the call, so no call wrapper of ours ran: the
        regions are judged at each report of the call phase (each subtest's, then the
        call's), and one over budget fails that report."""
        item.stash[_calling_key] = False  # the call ran
        if call.excinfo is not None:
            self.judge_failed(item)
            return
        error: BaseException | None
        try:
            error = self.judge(item)
        except Exception as exc:  # a skipped budget's warning under -W error
            error = exc
        if error is None:
            return
        text = str(error) if isinstance(error, CgmemFailure) else repr(error)
        if _xpassed(item, report, error):
            report.outcome = "skipped"  # xfailed, as had the error been raised in the call
            report.longrepr = text
        elif report.passed:
            vars(report).pop("wasxfail", None)  # an xpass no more: failed, as pytest counts it
            report.outcome = "failed"
            report.longrepr = text

    @staticmethod
    def _after_teardown() -> None:
        """Stop regions a test left open, and take off graph wrappers of ours that its
        fixtures' teardown put back (each module is looked at only if imported)."""
        region = sys.modules.get(_REGION_MODULE)
        if region is not None:
            region.abandon_all()
        graphs = sys.modules.get(_GRAPHS_MODULE)
        if graphs is not None:
            graphs.restore_displaced()

    @property
    def remote(self) -> bool:
        """This process runs tests for another that writes the files: an xdist worker, or
        a child forked to run one test (pytest-forked), whose memory dies with it."""
        return self.worker is not None or os.getpid() != self._pid

    def _judge_teardown(self, item: pytest.Item) -> BaseException | None:
        """As the teardown ends, before its report: where the call ran, the budget broken by
        regions recorded since the test's record (in a fixture's teardown); None where none
        is, or where the call already failed on one. Where the call never ran (regions
        recorded in setup), nothing is judged."""
        if _calling_key not in item.stash:
            with contextlib.suppress(KeyError):
                del item.stash[_verdict_key]
            return None
        failed_before = _stashed(item, _failed_key, None) is not None
        error: BaseException | None
        try:
            error = self.judge(item)
        except Exception as exc:  # a skipped budget's warning under -W error
            error = exc
        return None if failed_before else error

    def _after_fixtures(
        self,
        item: pytest.Item,
        report: pytest.TestReport,
        error: BaseException | None,
        teardown_raised: bool,
    ) -> None:
        """After teardown: regions recorded since the test's record are recorded too. A
        budget they break (``_judge_teardown``) fails the teardown, unless the call already
        failed on one."""
        regions = _stashed(item, regions_key, ())
        earlier = None if self.remote else self.records.get(item.nodeid)
        outcome = earlier.outcome if earlier is not None else _stashed(item, _outcome_key, "passed")
        if error is not None:
            if teardown_raised and report.failed:  # the teardown's own error stays the report's
                report.sections.append(("cgmem: budget", str(error)))
            elif not report.failed:  # else made from the error, as the call's report is
                report.outcome = "failed"
                report.longrepr = str(error)
            outcome = "failed"
        payload: dict[str, Any] = {}
        self._record(item, report, tuple(regions), payload, outcome)
        if payload:
            setattr(report, RESULT_ATTRIBUTE, payload)

    def _after_call(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> None:
        regions = _stashed(item, regions_key, None)
        payload: dict[str, Any] = {}
        item.stash[_outcome_key] = _outcome(report)
        if self.settings.all:
            self._count_unmeasured(item, payload)
        if regions:
            self._record(item, report, tuple(regions), payload, _outcome(report))
            if not self.remote:
                self._final_outcome[item.nodeid] = report
            if self.settings.artifacts and _diagnosis_key not in item.stash:
                self._remove_stale_artifacts(item.nodeid)
        if payload:
            setattr(report, RESULT_ATTRIBUTE, payload)
        excinfo = call.excinfo
        if excinfo is not None and _CUDA_MODULE in sys.modules:
            allocator = sys.modules[_CUDA_MODULE]
            keep_for_pdb = item.config.getoption("usepdb", False)
            measured_here = measurements_opened() != _stashed(item, _opened_key, 0)
            with contextlib.suppress(Exception):  # never a report lost to a patched torch
                if (measured_here or allocator.is_oom(excinfo.value)) and not keep_for_pdb:
                    from .cuda.region import release_exception_frames

                    release_exception_frames(excinfo.value)

    def _remove_stale_artifacts(self, nodeid: str) -> None:
        """A measured test that made no diagnosis this time (it passed) has no artifacts:
        an earlier run's must not look current."""
        from .reports.artifacts import remove_artifacts

        assert self.settings.artifacts is not None
        with contextlib.suppress(OSError):
            remove_artifacts(self.config.invocation_params.dir / self.settings.artifacts, nodeid)

    def _count_unmeasured(self, item: pytest.Item, payload: dict[str, Any]) -> None:
        """Under --cgmem-all: an opted-out test, or one that never used CUDA, counted here
        or, on an xdist worker, told to the controller in ``payload``."""
        reason = _stashed(item, opted_out_key, None)
        never_used = _stashed(item, _never_used_key, False)
        if self.remote:
            if reason is not None:
                payload["opted_out"] = reason
            if never_used:
                payload["never_used"] = True
            return
        self._take_unmeasured(item.nodeid, reason, never_used)

    def _take_unmeasured(self, nodeid: str, reason: Any, never_used: Any) -> None:
        if isinstance(reason, str):
            self.opted_out[nodeid] = reason
        if never_used is True:
            self.never_used[nodeid] = None

    def _record(
        self,
        item: pytest.Item,
        report: pytest.TestReport,
        regions: tuple[RegionResult, ...],
        payload: dict[str, Any],
        outcome: str,
    ) -> None:
        tools = self.record_tools()
        verdict = _stashed(item, _verdict_key, None)
        findings = None if verdict is None else verdict.findings
        item.stash[_recorded_key] = len(regions)
        record = tools.test_record(
            nodeid=item.nodeid,
            outcome=outcome,
            regions=regions,
            budget=verdict.budget if verdict else {},
            checked=verdict.checked if verdict else (),
            tolerance=verdict.tolerance if verdict else None,
            worker=self.worker,
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            violations=verdict.violations if verdict else (),
            baseline=None if findings is None else findings.to_dict(),
            judged=verdict is not None and verdict.judged,
        )
        # the machine is read only for a run that writes files
        if not self.remote:  # this process writes the files: no need to travel
            if self.started:
                machine = process_machine(self.config)
                if machine is not self._machine_read:  # the first, or graph keys filled in
                    self._machine_read = machine
                    self._take_machine(machine)
            self._take(record, None)
        else:
            text = tools.record_text(record)  # a str travels at C speed, a tree of data does not
            payload["record"] = tools.plain_record(record) if text is None else text
            if self._writes_files:
                machine = process_machine(self.config)
                if machine is not self._machine_read:  # sent again with its graph keys
                    payload["machine"] = self._machine_read = machine
        properties = tools.junit_properties(regions)
        earlier = _stashed(item, _properties_key, [])
        for where in (report.user_properties, item.user_properties):
            if earlier:  # recorded again after teardown: the new set replaces the call's
                where[:] = [p for p in where if p not in earlier]
            # the call report, for report readers; the item, for the teardown report,
            # which JUnit reads
            where.extend(properties)
        item.stash[_properties_key] = list(properties)
        if report.failed:
            from .reports.text import section

            text = section(
                regions,
                Budget(verdict.budget) if verdict else None,
                verdict.checked if verdict else (),
            )
            diagnosis = _stashed(item, _diagnosis_key, None)
            if diagnosis:
                text += "\n" + diagnosis
            report.sections.append(("cgmem", text))
        if "benchmark" in getattr(item, "fixturenames", ()) and self.config.pluginmanager.hasplugin(
            "benchmark"
        ):
            bench = getattr(item, "funcargs", {}).get("benchmark")
            extra = getattr(bench, "extra_info", None)
            if isinstance(extra, dict):
                from .results.exporters import benchmark_figures

                extra["cgmem"] = benchmark_figures(regions)

    # -- the files: started at collection, journaled per test, replaced at the end ---------

    def _outputs(self) -> list[tuple[str, str, str]]:
        """(what, option or ini key, path as given) of each file this run writes."""
        return output_files(self.settings)

    def _output_problems(self) -> list[str]:
        return output_problems(self.settings, self.config.option, self.config.invocation_params.dir)

    def _settings_data(self) -> dict[str, Any]:
        from .results.jsonio import valid_text

        settings = self.settings
        return {
            "budget": dict(settings.budget.limits),
            "tolerance": settings.tolerance,
            "tolerance_abs": settings.tolerance_abs,
            "baseline": None if settings.baseline is None else valid_text(settings.baseline),
            "xdist": self._xdist or any(r.worker for r in self.records.values()),
        }

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        """As collection starts: the run file becomes a stub marked incomplete, with its
        journal (and its lock) beside it, and a stale github-action-benchmark file goes, so
        that a run killed while collecting (a CI timeout, an OOM kill) leaves no earlier
        run's file looking current. The baseline being saved waits for the first test."""
        if self.worker is not None or runs_no_tests(self.config):
            return
        self._start_outputs(baseline=False)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A module that failed to collect (xdist may report it once from each worker): with
        ``--continue-on-collection-errors`` or under xdist the run goes on without its tests,
        and the run file says so."""
        if report.failed and self.worker is None and report.nodeid not in self.collection_errors:
            self.collection_errors.append(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Before the first test: a baseline being saved becomes a stub marked incomplete
        too (the run file already is one). ``--collect-only`` (and an xdist worker) writes
        nothing. Nor does a run that pytest stops here for its collection errors: it ends
        before its first test (its baseline is left alone)."""
        if self.worker is not None or runs_no_tests(self.config):
            return
        if session.testsfailed and not self.config.option.continue_on_collection_errors:
            return
        self._start_outputs()
        self._looping = True

    def _start_outputs(self, *, baseline: bool = True) -> None:
        outputs = [
            out
            for out in self._outputs()
            if (baseline or out[0] != "baseline") and out[0] not in self._opened
        ]
        # the file that is only removed now goes first: where that fails, no stub of this
        # run's is left saying the run may still be going
        outputs.sort(key=lambda out: out[0] != "github-action-benchmark file")
        if not outputs:
            return
        if self.job is not None and self.job.rank != 0:
            self.started = True  # rank 0 writes the files; this rank hands its records over
            return
        from .results import journal, jsonio, runfile

        self._xdist = self.config.pluginmanager.has_plugin("dsession")
        if not self.started:
            self._commit = runfile.git_commit(self.config.rootpath)
        run = uuid.uuid4().hex
        earlier = len(self._journals)  # those started at collection stay open on a failure
        stub = runfile.build_run(
            [],
            runfile.base_machine(),
            self._commit,
            settings=self._settings_data(),
            complete=False,
        )
        try:
            for what, source, given in outputs:
                path = self.path(given)
                try:
                    if what == "github-action-benchmark file":
                        jsonio.remove(path)  # a killed run must not leave the last run's figures
                        self._opened.add(what)
                        continue
                    marker = {"file": journal.journal_path(path).name, "run": run}
                    first = stub
                    if what == "baseline" and self.earlier_baseline:
                        # a killed refresh keeps the earlier tests its journal has not replaced
                        first = runfile.with_tests(stub, self.earlier_baseline)
                    self._journals.append(
                        (what, given, journal.Journal.start(path, {**first, "journal": marker}))
                    )
                    self._opened.add(what)
                except (OSError, CgmemUsageError) as exc:
                    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    self._start_refused = True
                    raise pytest.UsageError(f"{source}={given!r}: {why}") from None
        except BaseException:
            for what, _, opened in self._journals[earlier:]:
                opened.close()
                self._opened.discard(what)
            del self._journals[earlier:]
            raise
        self.started = True

    def _journal(self, kind: str, data: Any = None, *, text: str | None = None) -> None:
        """A line in each run file's journal: ``data``, or ``text``, the data already
        written as JSON (``compact``)."""
        for what, given, journal in self._journals:
            try:
                if text is None:
                    journal.append(kind, data)
                else:
                    journal.append_json(kind, text)
            except OSError as exc:  # the final file may still be written: a warning
                message = (
                    f"cgmem: warning: could not journal {what} {given!r} to {journal.path} "
                    f"({exc}); a killed run would lose tests"
                )
                if message not in self.lines:
                    self.lines.append(message)

    def runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the xdist controller (or the parent of a forked test): a measured test's
        record, as soon as its worker reports the call phase (or the teardown, for regions
        recorded there). Last, so that the outcome is the one pytest shows: a test whose
        subtests failed is failed by then."""
        if self.worker is not None:
            return
        # what pytest-rerunfailures and the workers set on a report is in its __dict__;
        # getattr's default would raise and catch an AttributeError for each absent one
        given = vars(report)
        attempt = given.get("rerun")  # pytest-rerunfailures numbers attempts
        outcome, when = report.outcome, report.when
        if outcome == _RERUN:  # pytest-rerunfailures runs the test again
            self._forget(report.nodeid)
            if isinstance(attempt, int):
                self._discarded[report.nodeid] = attempt
            return
        if attempt is not None and self._discarded.get(report.nodeid) == attempt:
            return  # the rest of an attempt that is run again (its teardown)
        if when == "teardown":
            self._finished.add(report.nodeid)
        elif when == "call" and self._final_outcome:
            self._settle_outcome(report)
        payload = given.get(RESULT_ATTRIBUTE)
        if payload is not None and isinstance(payload, Mapping):  # most reports carry none
            self._take_payload(report, payload)
        if outcome == "failed" and when != "call":
            self._failed_after_call(report.nodeid)
        if when != "call" and when != "setup":  # its teardown, or xdist's crash report
            self._journal_ended(report.nodeid)

    def _journal_ended(self, nodeid: str) -> None:
        text = self._unjournaled.pop(nodeid, None)
        if text is not None:
            self._journal("test", text=text)

    def _take_payload(self, report: pytest.TestReport, payload: Mapping[str, Any]) -> None:
        """What a worker (or a forked child) sent on the report: its counts and record."""
        self._take_unmeasured(report.nodeid, payload.get("opted_out"), payload.get("never_used"))
        machine = payload.get("machine")
        if isinstance(machine, Mapping) and (
            self.machine is None
            or (self.machine.get("graph_tracking") is None and machine.get("graph_tracking"))
        ):  # the first, or one read once its worker had imported torch
            self._take_machine(machine)
        data = payload.get("record")
        if isinstance(data, str):  # the record as its journal line holds it
            data = json.loads(data)
        if isinstance(data, Mapping):
            earlier = self.records.get(report.nodeid)
            if report.when == "call":
                data = {**data, "outcome": _outcome(report)}
            elif data.get("outcome") != "failed" and earlier is not None:
                data = {**data, "outcome": earlier.outcome}  # the call's, as pytest showed it
            self._take(None, data)

    def _failed_after_call(self, nodeid: str) -> None:
        """The test's teardown failed, or its xdist worker crashed after the call: pytest
        shows it red, so its record is ``failed`` (a baseline refresh keeps its earlier
        entry)."""
        record = self.records.get(nodeid)
        if record is not None and record.outcome != "failed":
            self._take(dataclasses.replace(record, outcome="failed"), None)

    def _forget(self, nodeid: str) -> None:
        """An attempt that will be run again: its record is not the test's, here or in
        the journal a killed run is read back from."""
        self._final_outcome.pop(nodeid, None)
        self.records.pop(nodeid, None)
        self.opted_out.pop(nodeid, None)
        self.never_used.pop(nodeid, None)
        unjournaled = self._unjournaled.pop(nodeid, None)
        if self.tests.pop(nodeid, None) is not None and unjournaled is None:
            self._journal("rerun", nodeid)
        for lost in self.workers_lost:
            if lost["test"] == nodeid:
                self._lost_attempts.add((lost["worker"], lost["when"]))

    def _settle_outcome(self, report: pytest.TestReport) -> None:
        """A record made from this call report takes the outcome the report ends with (a
        failed subtest fails it), but stays failed where figures recorded in the test's
        teardown failed it."""
        if self._final_outcome.get(report.nodeid) is not report:
            return
        del self._final_outcome[report.nodeid]
        record = self.records.get(report.nodeid)
        outcome = _outcome(report)
        if record is None or record.outcome == outcome:
            return
        if record.outcome == "failed" and outcome == "passed":
            return
        self._take(dataclasses.replace(record, outcome=outcome), None)

    def _take_machine(self, machine: Mapping[str, Any]) -> None:
        self.machine = dict(machine)
        self._journal("machine", self.machine)

    def _take(self, record: TestRecord | None, data: Mapping[str, Any] | None) -> None:
        """Keep a measured test's record (a rerun replaces the earlier attempt) and, when
        this run writes files, journal its run-file form at once."""
        text = None
        tools = self.record_tools()
        if self.started:
            if data is None:
                assert record is not None
                text = tools.record_text(record)
                if text is None:  # walked, as the quick pass could not clear it
                    data = tools.plain_record(record)
            else:
                text = tools.clean_text(data)
            if text is None:
                assert data is not None
                problem = tools.nonfinite_problem(data)
                if problem:
                    self.refused.append(problem)
                    self.errors.append(problem)
                    return
                text = tools.compact(data)
        if record is None:
            assert data is not None
            record = tools.test_record.from_dict(data)
        nodeid = record.nodeid
        self.records.pop(nodeid, None)
        self.records[nodeid] = record
        if text is not None:
            self.tests.pop(nodeid, None)
            self.tests[nodeid] = text
            self._unjournaled[nodeid] = text
            if nodeid in self._finished:  # taken after its end
                self._journal_ended(nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """On the xdist controller: each worker gets the baseline as read here, before this
        run replaced any file. It goes as one string of JSON, written once for every worker:
        execnet sends a str at C speed, and a tree of data item by item in Python (a baseline
        of 20,000 tests of 10 regions took each worker 60 s and the run 4 GB)."""
        if self.baseline is not None:
            if self._baseline_text is None:
                from .results.jsonio import compact

                self._baseline_text = compact(self.baseline.document)
            node.workerinput["cgmem_baseline"] = self._baseline_text

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """On the xdist controller: a worker that died is recorded, with when."""
        if error is None or self.worker is not None:
            return
        from .results.journal import now

        text = " ".join(str(error).split())
        entry = {
            "worker": str(getattr(getattr(node, "gateway", None), "id", None) or "?"),
            "when": now(),
            "test": None,
            "error": _ends_kept(text) if text else None,
        }
        self.workers_lost.append(entry)
        self._journal("worker_lost", entry)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        """On the xdist controller: the test a dead worker was running (its figures are lost)."""
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)
        for entry in reversed(self.workers_lost):
            if entry["worker"] == worker and entry["test"] is None:
                entry["test"] = crashitem
                self._journal("worker_lost", entry)
                break

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        value = excinfo.value
        text = " ".join(str(getattr(value, "msg", None) or value).split())
        self.interrupted = f"interrupted: {text}" if text else f"interrupted ({excinfo.typename})"

    def _reasons(self, session: pytest.Session, exitstatus: int) -> list[str]:
        """Why this run is incomplete (nothing when it is complete). A stop that came
        once every test had run (-x on the last one; xdist stops by interrupting) stopped
        nothing."""
        every_test_ran = 0 < session.testscollected <= len(self._finished)
        interrupted = None if every_test_ran else self.interrupted
        first = interrupted or self.ended_early
        reasons = [first] if first else []
        stop = session.shouldfail or session.shouldstop
        if stop and not interrupted and not every_test_ran:
            reasons.append(f"stopped early: {stop}")
        errors = self.collection_errors
        if errors and not first:
            shown = ", ".join(errors[:3]) + (", ..." if len(errors) > 3 else "")
            reasons.append(f"{len(errors)} collection error(s) ({shown}): their tests did not run")
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR and not interrupted:
            reasons.append("an internal error ended the run")  # not pytest.exit(returncode=3)
        for lost in self.workers_lost:
            if (lost["worker"], lost["when"]) in self._lost_attempts:
                continue
            if lost["test"] in self.tests:
                reasons.append(
                    f"worker {lost['worker']} crashed while running {lost['test']}, after "
                    "its call phase (its figures are kept)"
                )
            elif lost["test"]:
                reasons.append(
                    f"worker {lost['worker']} crashed while running {lost['test']} "
                    "(that test's figures are lost)"
                )
            else:
                reasons.append(f"worker {lost['worker']} went down ({lost['error']})")
        if self.refused:
            reasons.append(f"the figures of {len(self.refused)} test(s) could not be written")
        return reasons

    def _ran_short(self, exitstatus: int) -> bool:
        """The run was to run tests and stopped before its first (not ``--collect-only``,
        ``--fixtures`` or ``--cache-show``, which run none and write nothing)."""
        if runs_no_tests(self.config):
            return False
        ok = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        return bool(self.interrupted) or exitstatus not in ok

    def _before_any_test(self, exitstatus: int) -> None:
        """The run ended before its first test (interrupted or stopped in collection): its
        run files are replaced by ones marked incomplete, so the last run's never look
        current. A baseline it was to save is left as it was: nothing was measured. One
        that could not be started is not tried again: pytest says why it stopped."""
        if not self._start_refused:
            try:
                self._start_outputs(baseline=False)
            except pytest.UsageError as exc:
                self.errors.append(f"cgmem: {exc}")
                return
        if self.started and not self.interrupted:
            self.ended_early = f"the run ended before its first test (exit status {exitstatus})"

    def _run_machine(self) -> dict[str, Any]:
        """The measuring process's machine; host, Python and platform only when nothing was
        measured (the GPU keys are then null: nothing measured, nothing to compare)."""
        from .results import runfile

        return dict(self.machine) if self.machine else runfile.base_machine()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.tracking_lingers:
            self.release_tracking()
        if self.worker is None and not self._looping and self._ran_short(exitstatus):
            self._before_any_test(exitstatus)
        if self.worker is not None or not self.started:
            if self.worker is None:
                self._fail_on_errors(session)  # a stub it could not write
            return
        from .results import runfile
        from .results.exporters import gab_entries

        reasons = self._reasons(session, exitstatus)
        document = runfile.build_run(
            [json.loads(text) for text in self.tests.values()],
            self._run_machine(),
            self._commit,
            settings=self._settings_data(),
            complete=not reasons,
            incomplete_reason="; ".join(reasons) or None,
            workers_lost=self.workers_lost,
        )
        job = self.job
        shared = ""
        if job is not None:  # a torchrun rank: rank 0 writes every rank's records
            from .results import torchrun

            settings = self.settings
            shared = str(
                self.path(str(settings.json or settings.save_baseline or settings.gab_json))
            )
            gathered = torchrun.gather(job, document, shared, self.lines)
            if gathered is None:
                return
            document = gathered
        count = f"{len(self.tests)} test(s)"
        incomplete = not document.get("complete", True)
        note = f"; the run is incomplete: {document['incomplete_reason']}" if incomplete else ""
        for what, given, journal in self._journals:
            written, counted = document, count
            if what == "baseline" and self.earlier_baseline is not None:
                tests, kept = runfile.refreshed(document["tests"], self.earlier_baseline)
                written = runfile.with_tests(document, tests)
                if kept:
                    counted = f"{len(tests)} test(s), {kept} kept from the earlier baseline"
            try:
                journal.finish(written)
            except (OSError, ValueError) as exc:
                journal.close()
                self.errors.append(f"cgmem: could not write {what} {given!r}: {exc}")
            else:
                self.lines.append(f"cgmem: wrote {what} {given} ({counted}){note}")
        self._journals = []
        gab = self.settings.gab_json
        if gab:
            what = "github-action-benchmark file"
            entries = gab_entries(document, sizes=self.settings.gab_sizes)
            if not entries:
                self.lines.append(
                    f"cgmem: no figures measured: {what} {gab} not written (the action fails "
                    "on an empty list)"
                )
            else:
                try:
                    runfile.write_json(self.path(gab), entries)
                except (OSError, ValueError) as exc:
                    self.errors.append(f"cgmem: could not write {what} {gab!r}: {exc}")
                else:
                    self.lines.append(f"cgmem: wrote {what} {gab} ({count}){note}")
        self._fail_on_errors(session)
        if job is not None:
            from .results import torchrun

            torchrun.release(job, shared)  # the other ranks may exit now

    def _fail_on_errors(self, session: pytest.Session) -> None:
        """A file this run could not write fails it (an exit status of 0, or 5 for no test
        collected, becomes 1); the status is kept for the line said last."""
        if self.errors and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self._exitstatus = int(session.exitstatus)

    def pytest_report_header(self) -> list[str]:
        if self.baseline is None or self.worker is not None:
            return []
        from .results.jsonio import visible
        from .results.runfile import incomplete

        why = incomplete(self.baseline.document)
        if why is None:
            return []
        return [f"cgmem: baseline {self.baseline.path} is from an incomplete run ({visible(why)})"]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if runs_no_tests(self.config) and not self.errors:
            return  # no summary of tests that did not run
        records = list(self.records.values())
        lines: list[str] = []
        counted = self.settings.all and self._exitstatus != pytest.ExitCode.USAGE_ERROR
        if records or counted:
            from .reports.text import suite_summary, summary

            lines = summary(records, self.settings.summary)
            if counted:
                lines[:0] = suite_summary(records, self.opted_out, self.never_used)
        if lines:
            terminalreporter.write_sep("-", "cgmem")
            for line in lines:
                terminalreporter.write_line(_shown(line))
        results = list(self.lines)
        if self.baseline is not None:
            from .reports.text import baseline_summary
            from .results.jsonio import visible
            from .results.runfile import incomplete

            found = baseline_summary(self.baseline.path, records, self.baseline.nodeids)
            why = incomplete(self.baseline.document)
            if why is not None:
                found.insert(
                    1,
                    f"  note: the baseline is from an incomplete run ({visible(why)}); tests "
                    "it lacks count as new",
                )
            results[:0] = found
        if results or self.errors:
            terminalreporter.write_sep("-", "cgmem results")
            for line in results:
                terminalreporter.write_line(_shown(line))
            for line in self.errors:
                terminalreporter.write_line(_shown(line), red=True, bold=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """A file that could not be written is said last, after pytest's own last line."""
        if not self.errors:
            return
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        status = f": exit status {self._exitstatus}" if self._exitstatus else ""
        lines = [*self.errors, f"cgmem: the run's results were not all written{status}"]
        for line in lines:
            if reporter is not None:
                reporter.write_line(_shown(line), red=True, bold=True)
            else:
                sys.stderr.write(_shown(line) + "\n")


TEST_HOOKS_NAME = "cgmem-tests"


class PerTestHooks:
    """The session's hooks that run for every test. They are a plugin of their own so that
    a run that measures nothing (the plugin installed but unused) has none of them:
    ``CgmemSession.pytest_collection_modifyitems`` takes them off. A quiet test's path is
    here, one call from pytest, for what every hook layer costs a test that measures
    nothing."""

    def __init__(self, session: CgmemSession) -> None:
        self.session = session

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if _quiet_key in item.stash:
            self.session.quiet_setup(item)
        else:
            self.session.runtest_setup(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        stash = item.stash
        if _quiet_key not in stash:
            return (yield from self.session.runtest_call(item))
        stash[_calling_key] = True  # a report made now is a subtest's
        try:
            try:
                outcome = yield
            except BaseException:
                if _quiet_key not in stash:  # a fixture of ours came during the call
                    self.session.judge_failed(item)
                raise
            if _quiet_key not in stash:  # judged as the whole path judges it
                error = self.session.judge(item)
                if error is not None:
                    raise error
            return outcome
        finally:
            stash[_calling_key] = False

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        if _quiet_key not in item.stash:
            return (yield from self.session.runtest_makereport(item, call))
        report = yield
        if call.excinfo is not None or call.when == "teardown":
            self.session.quiet_report(item, call, report)
        return report

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.session.runtest_logreport(report)
