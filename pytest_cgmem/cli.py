"""The ``cgmem`` command: ``compare``, ``merge`` and ``report`` on run files.

Exit status: 0 fine, 1 a regression (``compare``), 2 a usage problem (a bad file or
option, one line on stderr), 3 ``compare`` given a file from an incomplete run without
``--allow-incomplete``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from .metrics import region_name
from .results.baseline import Comparison, change_table, compare_runs, describe
from .results.graphfigures import size_rows, size_table, size_table_lines
from .results.journal import busy
from .results.jsonio import remove, valid_text, visible, write_text
from .results.outputs import link_problem, names_folder, output_problem, resolve, same_file
from .results.runfile import incomplete, load_run, merge_runs, write_json
from .settings import DEFAULT_TOLERANCE, path_text_problem
from .units import (
    CgmemUsageError,
    Tolerance,
    format_size,
    parse_percent,
    parse_size,
    short_repr,
)

T = TypeVar("T")


def _print(line: str, file: TextIO | None = None) -> None:
    """One line of the command's output, with any control character a run file or a file
    name brought in written out (``jsonio.visible``)."""
    print(visible(line), file=file)


def _version() -> str:
    """The installed pytest-cgmem's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-cgmem")
    except PackageNotFoundError:  # run from a tree nobody installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cgmem", description="Compare, merge and report pytest-cgmem run files."
    )
    parser.add_argument("--version", action="version", version=f"cgmem (pytest-cgmem {_version()})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compare = sub.add_parser(
        "compare",
        help="compare a run with a baseline; exit 1 on a regression",
        description="Every figure of NEW against BASE. A figure regresses when it grew "
        "past both tolerances; a test's own tolerance (its mark's tolerance=) wins.",
    )
    compare.add_argument("base", metavar="BASE", help="baseline run file")
    compare.add_argument("new", metavar="NEW", help="new run file")
    compare.add_argument(
        "--tolerance", help=f"relative tolerance (default {DEFAULT_TOLERANCE.rel * 100:g}%%)"
    )
    compare.add_argument(
        "--tolerance-abs",
        help=f"absolute tolerance (default {format_size(DEFAULT_TOLERANCE.abs)})",
    )
    compare.add_argument(
        "--all", action="store_true", help="list every figure, not only those that moved"
    )
    compare.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="compare a file from a run that did not finish (killed, interrupted, a lost "
        "worker) without failing (exit 3) for it",
    )

    merge = sub.add_parser(
        "merge",
        help="join run files of CI shards into one",
        description="Join run files (shards of one suite) into one; a test in two files or "
        "files from different machines are refused.",
    )
    merge.add_argument("files", nargs="+", metavar="FILE", help="run files")
    merge.add_argument(  # spaces around the path dropped, as the plugin's options drop them
        "-o", "--output", required=True, type=str.strip, help="merged run file to write"
    )
    merge.add_argument(
        "--allow-mixed-machines",
        action="store_true",
        help="merge files from different GPUs, drivers, torch or CUDA versions anyway",
    )

    report = sub.add_parser(
        "report",
        help="write one self-contained HTML page with charts",
        description="One HTML page (no network needed) for the newest run, with the "
        "history of each metric across all the files given. Needs matplotlib "
        "(pip install 'pytest-cgmem[report]').",
    )
    report.add_argument("files", nargs="+", metavar="RUN", help="run files (any order)")
    report.add_argument("-o", "--output", required=True, type=str.strip, help="HTML file to write")
    report.add_argument("--title", default="GPU memory", help="page title")
    return parser


def _option(name: str, given: str | None, parse: Callable[[str], T], default: T) -> T:
    """An option's value parsed, or its default; a value it cannot take is one line naming
    the option (also for an error the parser did not foresee, such as an overflow)."""
    if given is None:
        return default
    try:
        return parse(given)
    except CgmemUsageError as exc:
        raise CgmemUsageError(f"{name}: {exc}") from None
    except (ValueError, OverflowError) as exc:
        raise CgmemUsageError(f"{name}: cannot use {short_repr(given)} ({exc})") from None


def _working_folder(command: str) -> Path:
    """The current folder, or a usage error where it was deleted (``os.getcwd`` raises an
    ``OSError`` that names no file)."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise CgmemUsageError(
            f"cgmem {command}: the current folder no longer exists; run it from one that does"
        ) from None


def _output(command: str, given: str, inputs: Sequence[str], kind: str) -> Path:
    """The file ``-o`` names (symlinks resolved), once it is known that writing it replaces
    no input and nothing but what this command writes (``outputs.existing_problem``); an
    earlier output there is removed before the command reads its inputs."""
    where = f"cgmem {command}: -o {given!r}"
    if not given:
        raise CgmemUsageError(f"cgmem {command}: -o is empty; give a file path")
    problem = path_text_problem(given)
    if problem:
        raise CgmemUsageError(f"{where}: {problem}")
    if names_folder(given):
        raise CgmemUsageError(f"{where}: it names a folder; give a file path")
    here = _working_folder(command)
    target = resolve(given, here)
    for name in inputs:
        if same_file(resolve(name, here), target):
            raise CgmemUsageError(
                f"{where}: it is the input file {name!r}; give the output its own path"
            )
    problem = link_problem(given, here, target, kind) or output_problem(target, kind)
    if problem:
        raise CgmemUsageError(f"{where}: {problem}")
    holder = busy(target)  # a live run's stub: its own complete file would follow ours
    if holder is not None:
        raise CgmemUsageError(f"{where}: {holder} is writing it; give the output its own path")
    try:  # an earlier output goes first: a command that fails leaves none looking current
        remove(target)
    except OSError as exc:
        raise CgmemUsageError(f"{where}: cannot replace it ({exc.strerror or exc})") from None
    return target


def _write(command: str, given: str, write: Callable[[], None]) -> None:
    """``write`` the output ``-o`` names; a failure names the file."""
    try:
        write()
    except OSError as exc:
        raise CgmemUsageError(
            f"cgmem {command}: cannot write -o {given!r} ({exc.strerror or exc})"
        ) from None


def _compare(args: argparse.Namespace) -> int:
    tolerance = Tolerance(
        _option("--tolerance", args.tolerance, parse_percent, DEFAULT_TOLERANCE.rel),
        _option("--tolerance-abs", args.tolerance_abs, parse_size, DEFAULT_TOLERANCE.abs),
    )
    base = load_run(args.base, "baseline")
    new = load_run(args.new)
    result = compare_runs(base, new, tolerance)
    base_name, new_name = valid_text(args.base), valid_text(args.new)
    partial = [
        (name, why)
        for name, doc in ((base_name, base), (new_name, new))
        if (why := incomplete(doc)) is not None
    ]
    shown = list(result.changes) if args.all else [c for c in result.changes if c.verdict != "same"]
    shown.sort(key=lambda c: ({"regression": 0, "improvement": 1, "same": 2}[c.verdict], c.nodeid))
    _print(f"cgmem compare {base_name} -> {new_name} ({describe(tolerance)})")
    if shown:
        for line in change_table(shown):
            _print(line)
    for name in result.new:
        _print(f"new: {name}")
    for name in result.missing:
        _print(f"missing from {new_name}: {name}")
    for size in result.sizes:
        _print(f"size {size.change}: {size.name}{_held(size.bytes)}")
    _size_tables(result, base, new, args.all)
    for name, why in partial:
        _print(f"incomplete run: {name}: {why}")
    _print(
        f"{len(result.changes)} figure(s) compared: {len(result.regressions)} regression(s), "
        f"{len(result.improvements)} improvement(s), {len(result.new)} new, "
        f"{len(result.missing)} missing"
    )
    if result.sizes:
        vanished = sum(1 for s in result.sizes if s.change == "vanished")
        _print(
            f"{len(result.sizes)} capture size(s) changed: {vanished} vanished, "
            f"{len(result.sizes) - vanished} appeared (reported, not a regression)"
        )
    if result.regressions:
        return 1
    if partial and not args.allow_incomplete:
        names = " and ".join(name for name, _ in partial)
        _print(
            f"cgmem compare: {names}: from an incomplete run, so figures may be missing; "
            "pass --allow-incomplete to accept it",
            file=sys.stderr,
        )
        return 3
    return 0


def _held(value: int | None) -> str:
    return "" if value is None else f" ({format_size(value)})"


def _size_tables(
    result: Comparison, base: Mapping[str, Any], new: Mapping[str, Any], every: bool
) -> None:
    """Per-size bytes, baseline against new, of each graph region whose sizes changed
    (every graph region with ``--all``)."""
    changed = {(s.nodeid, s.label) for s in result.sizes}
    base_table, new_table = size_table(base), size_table(new)
    for key in result.graph_regions:
        if key not in changed and not every:
            continue
        rows = size_rows(base_table[key], new_table[key])
        if not rows:
            continue
        _print(f"per-size bytes: {region_name(*key)}")
        for line in size_table_lines(rows):
            _print("  " + line)


def _each_once(command: str, files: Sequence[str]) -> None:
    """Refuse a file given twice (a run reported beside itself, merged with itself)."""
    here = _working_folder(command)
    seen: list[tuple[str, Path]] = []
    for name in files:
        path = resolve(name, here)
        for earlier, earlier_path in seen:
            if same_file(path, earlier_path):
                raise CgmemUsageError(
                    f"cgmem {command}: {name!r} and {earlier!r} are the same file; "
                    "give each run once"
                )
        seen.append((name, path))


def _merge(args: argparse.Namespace) -> int:
    _each_once("merge", args.files)
    target = _output("merge", args.output, args.files, "run")
    runs = [(name, load_run(name)) for name in args.files]
    document, warnings = merge_runs(runs, allow_mixed_machines=args.allow_mixed_machines)
    for line in warnings:
        _print(line, file=sys.stderr)
    _write("merge", args.output, lambda: write_json(target, document))
    partial = "" if document["complete"] else " (marked incomplete)"
    _print(
        f"cgmem merge: {len(document['tests'])} test(s) from {len(runs)} file(s) -> "
        f"{valid_text(args.output)}{partial}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from .reports.charts import MissingExtra
    from .reports.html import render

    _each_once("report", args.files)
    target = _output("report", args.output, args.files, "html")
    runs = [(valid_text(name), load_run(name)) for name in args.files]
    _note_incomplete("cgmem report", runs)
    try:
        page = render(runs, valid_text(args.title))
    except MissingExtra as exc:
        raise CgmemUsageError(str(exc)) from None
    _write("report", args.output, lambda: write_text(target, valid_text(page)))
    _print(f"cgmem report: {len(runs)} run(s) -> {valid_text(args.output)}")
    return 0


def _note_incomplete(command: str, runs: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    for name, doc in runs:
        why = incomplete(doc)
        if why is not None:
            _print(f"{command}: note: {name} is from an incomplete run: {why}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"compare": _compare, "merge": _merge, "report": _report}[args.command]
    try:
        return command(args)
    except CgmemUsageError as exc:
        message = str(exc)
        _print(message if message.startswith("cgmem") else f"cgmem: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        _print(f"cgmem {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: never exit 1, the regression code
        traceback.print_exc()
        _print(
            f"cgmem {args.command}: internal error: {short_repr(exc)} (please report it)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
