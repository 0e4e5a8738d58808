"""Options and ini keys, resolved once (CLI > ini > default) into frozen Settings (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .budgets import Budget, parse_budget_string
from .units import CgmemUsageError

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


def parse_summary(value: object) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise CgmemUsageError(f"expected a whole number >= 0 (0 turns it off), got {value!r}")
    return int(text)


def parse_positive(value: object) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise CgmemUsageError(f"expected a whole number >= 1, got {value!r}")
    return int(text)


def parse_dir(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise CgmemUsageError("expected a directory path, got an empty value")
    return text


DEFAULT_HISTORY_ENTRIES = 100_000
DEFAULT_STACKS = 4


@dataclass(frozen=True)
class Option:
    """One setting: its CLI flag, ini key, help, parser and default."""

    name: str
    help: str
    parse: Callable[[object], Any]
    default: Any
    flag: bool = False
    metavar: str | None = None

    @property
    def cli(self) -> str:
        return "--cgmem-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "cgmem_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option(
        "budget",
        "default budget for every test marked cgmem, e.g. 'peak=4GiB reserved=6GiB'; "
        "a mark overrides it key by key",
        parse_budget_string,
        Budget(),
        metavar="BUDGETS",
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
        "show the N measured tests with the largest peak in the terminal summary "
        "(default 10; 0 turns the summary off)",
        parse_summary,
        10,
        metavar="N",
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
        "frames of torch, pytest and pytest-cgmem are skipped",
        parse_positive,
        DEFAULT_STACKS,
        metavar="N",
    ),
    Option(
        "artifacts",
        "write, for each failing measured test, an allocator snapshot pickle (opens in "
        "pytorch.org/memory_viz), a self-contained HTML trace and a text segment summary "
        "into DIR",
        parse_dir,
        None,
        metavar="DIR",
    ),
)


@dataclass(frozen=True)
class Settings:
    budget: Budget = field(default_factory=Budget)
    require_gpu: bool = False
    summary: int = 10
    history: bool = False
    history_entries: int = DEFAULT_HISTORY_ENTRIES
    stacks: int = DEFAULT_STACKS
    artifacts: str | None = None


def resolve(cli: Mapping[str, object], ini: Mapping[str, object]) -> Settings:
    """Settings from CLI values (None when not given) over ini values (None or '' when unset).

    A bad value raises CgmemUsageError naming the option or ini key and the value.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw, source = cli.get(option.name), option.cli
        if raw is None:
            raw, source = ini.get(option.name), option.ini
            if raw == "" or raw == []:
                raw = None
        if raw is None:
            values[option.name] = option.default
            continue
        try:
            values[option.name] = option.parse(raw)
        except CgmemUsageError as exc:
            raise CgmemUsageError(f"{source}={raw!r}: {exc}") from None
    return Settings(**values)
