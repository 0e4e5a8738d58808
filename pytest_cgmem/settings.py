"""Options and ini keys, resolved once (CLI > ini > default) into frozen Settings (pure)."""

from __future__ import annotations

import datetime
import functools
import os
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .checks.budgets import Budget, parse_budget_string
from .units import (
    CgmemUsageError,
    MiB,
    Tolerance,
    format_size,
    parse_count,
    parse_percent,
    parse_size,
    short_repr,
    whole_number,
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CgmemUsageError(f"expected true or false, got {value!r}")


def parse_path(value: object) -> str:
    """A path, with a leading ``~`` expanded to the home folder (before an ini file's
    folder is put in front of a relative one)."""
    if not isinstance(value, str):  # a list or a number from a legacy [tool.pytest.ini_options]
        raise CgmemUsageError(f"expected a file path as a string, got {short_repr(value)}")
    text = value.strip()
    if not text:
        raise CgmemUsageError("expected a file path, got an empty value")
    problem = path_text_problem(text)
    if problem:
        raise CgmemUsageError(problem)
    return os.path.expanduser(text)


def path_text_problem(text: str) -> str | None:
    """Why ``text`` can be no output's path (a NUL, a control character or line break: an
    ini value's continuation line, a stray escape sequence), or None."""
    if "\0" in text:
        return "a path cannot hold a NUL character"
    control = next((c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if control is not None:
        return f"a path cannot hold a control character or line break ({control!r})"
    return None


def parse_devices(value: object) -> tuple[str, ...] | str:
    """``"all"`` or a comma-separated list of device indices (or UUIDs) such as ``"0,1"``."""
    text = str(value).strip()
    if text.lower() == "all":
        return "all"
    devices = tuple(t.strip() for t in text.split(","))
    valid = all(whole_number(t) is not None or _is_uuid(t) for t in devices)
    if not text or not valid:
        raise CgmemUsageError(
            f"expected 'all' or device indices such as '0,1', got {short_repr(value)}"
        )
    return devices


def _is_uuid(token: str) -> bool:
    return token.startswith(("GPU-", "MIG-")) and len(token) > len("GPU-")


def _whole(value: object) -> int | None:
    """An int, or a string of ASCII digits, as a whole number >= 0; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return parse_count(value) if value >= 0 else None
    return whole_number(value) if isinstance(value, str) else None


def parse_summary(value: object) -> int:
    number = _whole(value)
    if number is None:
        raise CgmemUsageError(
            f"expected a whole number >= 0 (0 turns it off), got {short_repr(value)}"
        )
    return number


def parse_positive(value: object) -> int:
    number = _whole(value)
    if number is None or number < 1:
        raise CgmemUsageError(f"expected a whole number >= 1, got {short_repr(value)}")
    return number


UNAVAILABLE_CHOICES = ("fail", "skip")


def parse_unavailable(value: object) -> str:
    text = str(value).strip().lower()
    if text not in UNAVAILABLE_CHOICES:
        raise CgmemUsageError(f"expected 'fail' or 'skip', got {value!r}")
    return text


DEFAULT_HISTORY_ENTRIES = 100_000
DEFAULT_STACKS = 4
DEFAULT_SUMMARY = 10
DEFAULT_TOLERANCE = Tolerance(rel=0.05, abs=2 * MiB)
"""Growth over a baseline that is not a regression: 5% or 2 MiB, whichever is larger."""


@dataclass(frozen=True)
class Option:
    """One setting: its CLI flag, ini key, help, parser and default."""

    name: str
    help: str
    parse: Callable[[object], Any]
    default: Any
    flag: bool = False
    metavar: str | None = None
    #: the flag may be given more than once (a later one on the command line after
    #: ``addopts``): each value is parsed, and the parsed values are combined by this
    combine: Callable[[list[Any]], Any] | None = None

    @property
    def ini_type(self) -> str:
        """Its pytest ini type, so that native TOML takes natural values (``true``, ``5``)."""
        if self.flag:
            return "bool"
        if self.parse in (parse_summary, parse_positive):
            return "int"
        return "string"

    @property
    def path(self) -> bool:
        """A file or folder path: relative to the ini file when it comes from there."""
        return self.parse is parse_path

    @property
    def cli(self) -> str:
        return "--cgmem-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "cgmem_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option(
        "budget",
        "default budget for tests marked cgmem, for figures any test records, and under "
        "--cgmem-all for every measured test, e.g. 'peak=4GiB reserved=6GiB'; "
        "a mark overrides it key by key; given more than once, the flags' keys add up, a "
        "later flag's key winning",
        parse_budget_string,
        Budget(),
        metavar="BUDGETS",
        combine=lambda budgets: functools.reduce(Budget.merged, budgets, Budget()),
    ),
    Option(
        "all",
        "measure every test's call phase as if marked cgmem (unittest TestCases too), "
        "against --cgmem-budget; a test that never uses CUDA is not measured and costs "
        "nothing; each runs on torch's cache as it found it, so reserved, reserved_ratio "
        "and device are n/a unless the budget names one; @pytest.mark.cgmem_off(reason) "
        "opts a test, class or module out",
        parse_bool,
        False,
        flag=True,
    ),
    Option(
        "require_gpu",
        "fail, instead of skip, GPU-memory tests when no CUDA device is available",
        parse_bool,
        False,
        flag=True,
    ),
    Option(
        "summary",
        "show the N tests with the largest peak (measured or recorded) in the terminal summary "
        f"(default {DEFAULT_SUMMARY}; 0 turns the summary off)",
        parse_summary,
        DEFAULT_SUMMARY,
        metavar="N",
    ),
    Option(
        "json",
        "write every measured test's figures, budgets and violations, the machine and the "
        "commit to this JSON file (schema pytest-cgmem/1, docs/json.md)",
        parse_path,
        None,
        metavar="PATH",
    ),
    Option(
        "gab_json",
        "write the figures as github-action-benchmark 'customSmallerIsBetter' JSON",
        parse_path,
        None,
        metavar="PATH",
    ),
    Option(
        "gab_sizes",
        "add each CUDA graph capture size's bytes to --cgmem-gab-json as series of their "
        "own ('<test> [capture_sweep] size 256 - graph_pool', '... - driver')",
        parse_bool,
        False,
        flag=True,
    ),
    Option(
        "save_baseline",
        "save this run's figures as a baseline (the --cgmem-json format) to PATH; over an "
        "earlier baseline, tests this run did not measure or pass keep their entries",
        parse_path,
        None,
        metavar="PATH",
    ),
    Option(
        "baseline",
        "fail a test whose figures grew past the baseline in PATH by more than the tolerance",
        parse_path,
        None,
        metavar="PATH",
    ),
    Option(
        "tolerance",
        "relative growth over the baseline that is not a regression: a number and a "
        f"percent sign (default: {DEFAULT_TOLERANCE.rel * 100:g} percent)",
        parse_percent,
        DEFAULT_TOLERANCE.rel,
        metavar="PERCENT",
    ),
    Option(
        "tolerance_abs",
        f"absolute growth over the baseline that is not a regression (default "
        f"{format_size(DEFAULT_TOLERANCE.abs).replace(' ', '').replace('.00', '')}); "
        "a figure regresses only when it grew past both tolerances",
        parse_size,
        DEFAULT_TOLERANCE.abs,
        metavar="SIZE",
    ),
    Option(
        "devices",
        "with pytest-xdist: pin worker N to device N mod k of this list ('0,1') or of "
        "every device ('all'), through CUDA_VISIBLE_DEVICES, before CUDA starts there",
        parse_devices,
        None,
        metavar="LIST",
    ),
    Option(
        "history",
        "record the allocator's history (torch.cuda.memory._record_memory_history) while "
        "measured tests run; a failure then lists the allocation sites live at the peak "
        "and those of leaked blocks",
        parse_bool,
        False,
        flag=True,
    ),
    Option(
        "history_entries",
        "with --cgmem-history: keep at most N alloc/free events per test "
        f"(default {DEFAULT_HISTORY_ENTRIES})",
        parse_positive,
        DEFAULT_HISTORY_ENTRIES,
        metavar="N",
    ),
    Option(
        "stacks",
        f"frames shown per allocation site in failure reports (default {DEFAULT_STACKS}); "
        "frames of torch, pytest, pluggy and pytest-cgmem are skipped",
        parse_positive,
        DEFAULT_STACKS,
        metavar="N",
    ),
    Option(
        "artifacts",
        "write, for each failing measured test, an allocator snapshot pickle (opens in "
        "pytorch.org/memory_viz), a self-contained HTML trace and a text segment summary "
        "into DIR",
        parse_path,
        None,
        metavar="DIR",
    ),
    Option(
        "unavailable",
        "a budget on a figure this allocator cannot give (graph_pool under "
        "PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync): 'fail' the test saying why "
        "(default), or 'skip' that budget with a warning",
        parse_unavailable,
        "fail",
        metavar="fail|skip",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Every option, resolved; each field is named as its option."""

    budget: Budget = field(default_factory=Budget)
    all: bool = False
    require_gpu: bool = False
    summary: int = DEFAULT_SUMMARY
    json: str | None = None
    gab_json: str | None = None
    gab_sizes: bool = False
    save_baseline: str | None = None
    baseline: str | None = None
    tolerance: float = DEFAULT_TOLERANCE.rel
    tolerance_abs: int = DEFAULT_TOLERANCE.abs
    devices: tuple[str, ...] | str | None = None
    history: bool = False
    history_entries: int = DEFAULT_HISTORY_ENTRIES
    stacks: int = DEFAULT_STACKS
    artifacts: str | None = None
    unavailable: str = "fail"
    #: where each setting that was given came from: its flag (``--cgmem-json``) or its ini
    #: key (``cgmem_json``); a setting left at its default is absent
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def source(self, name: str) -> str:
        """The flag or ini key that set ``name``; the flag where it is the default."""
        return self.sources.get(name) or next(o.cli for o in OPTIONS if o.name == name)

    @property
    def tolerance_default(self) -> Tolerance:
        return Tolerance(self.tolerance, self.tolerance_abs)


def resolve(
    cli: Mapping[str, object], ini: Mapping[str, object], ini_dir: str | None = None
) -> Settings:
    """Settings from CLI values (None when not given) over ini values (None or '' when unset).

    A relative path from the ini file is taken relative to the ini file's folder
    (``ini_dir``), as pytest takes its own path options; one from the command line stays
    relative to the folder pytest was started in; a leading ``~`` is the home folder in
    either (``parse_path``). A bad value raises CgmemUsageError naming the option or ini
    key and the value.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw, source = cli.get(option.name), option.cli
        if option.combine is not None and isinstance(raw, list):
            values[option.name] = option.combine([_parsed(option, v, source) for v in raw])
            sources[option.name] = source
            continue
        if raw is None:
            raw, source = ini.get(option.name), option.ini
            if raw == [] or (isinstance(raw, str) and not raw.strip()):
                raw = None  # an ini key set empty is unset: ``-o cgmem_json=`` clears one
        if raw is None:
            values[option.name] = option.default
            continue
        values[option.name] = _parsed(option, raw, source)
        if option.path and source == option.ini and ini_dir is not None:
            values[option.name] = os.path.join(ini_dir, values[option.name])
        sources[option.name] = source
    return Settings(**values, sources=sources)


def _parsed(option: Option, raw: object, source: str) -> Any:
    try:
        return option.parse(raw)
    except CgmemUsageError as exc:
        raise CgmemUsageError(f"{source}={short_repr(raw)}: {exc}") from None


_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
    (datetime.datetime, "a date-time"),
    (datetime.date, "a date"),
    (datetime.time, "a time"),
)
_TAKES = {"string": (str,), "int": (str, int), "bool": (str, bool)}


def legacy_toml_problem(option: Option, raw: object) -> str | None:
    """The one-line error for a value in a TOML ini file's ``[tool.pytest.ini_options]`` of a
    TOML type the option does not take, else None.

    pytest hands every value there but an array on as text, so ``cgmem_json = 5`` or
    ``= {a = 1}`` would otherwise name a run file ``5`` or ``{'a': 1}``."""
    takes = _TAKES[option.ini_type]
    bool_for_int = isinstance(raw, bool) and option.ini_type == "int"
    if isinstance(raw, takes) and not bool_for_int:
        return None
    got = next(
        (name for kind, name in _TOML_TYPES if isinstance(raw, kind)), f"a {type(raw).__name__}"
    )
    wanted = " or ".join(dict(_TOML_TYPES)[kind].split()[1] for kind in takes)
    return (
        f"{option.ini}={short_repr(raw)}: expected a TOML {wanted} in [tool.pytest.ini_options], "
        f"got {got}"
    )


_NEEDS = (
    ("history_entries", "history"),
    ("stacks", "history"),
    ("gab_sizes", "gab_json"),
    ("tolerance", "baseline"),
    ("tolerance_abs", "baseline"),
)
"""(setting, the setting without which it does nothing)."""


def idle_options(settings: Settings) -> list[str]:
    """A warning for each option given on the command line that does nothing without
    another that is not set (an ini key is left alone: a project's ini file sets its
    defaults once, for runs with and without the partner)."""
    return [
        f"cgmem: {settings.source(name)} does nothing without {settings.source(needed)}"
        for name, needed in _NEEDS
        if settings.sources.get(name, "").startswith("--") and not getattr(settings, needed)
    ]
