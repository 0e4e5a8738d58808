"""What docs/json.md, ci.md, suite.md, graphs.md, resize.md and distributed.md (and the
README) state that a CPU can check is the code's: json.md's field tables are the schema's,
its journal's line kinds the journal's, its examples files a reader takes; and each quoted
``incomplete_reason``, usage error, reader error, budget failure and summary block is what a
run (or the pure function behind it) prints, character for character."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import pytest_cgmem
from pytest_cgmem import (
    assert_estimate,
    assert_sizes_covered,
    parse_budget,
    uncovered_sizes,
)
from pytest_cgmem.checks.budgets import check
from pytest_cgmem.cli import main as cgmem
from pytest_cgmem.fixture import CgmemFixture, DistributedRunner
from pytest_cgmem.metrics import METRICS
from pytest_cgmem.pinning import device_for_worker
from pytest_cgmem.results import journal, runfile
from pytest_cgmem.results.ranks import DistributedResult
from pytest_cgmem.session import STOPPED_BEFORE_COLLECTION
from pytest_cgmem.settings import parse_devices

pytestmark = pytest.mark.lean_runs

ROOT = Path(pytest_cgmem.__file__).parents[1]
DOCS = ROOT / "docs"
PAGES = {
    name: (DOCS / name).read_text()
    for name in ("json.md", "ci.md", "suite.md", "graphs.md", "resize.md", "distributed.md")
}
JSON_MD = PAGES["json.md"]
SCHEMA = runfile.schema()


def section(page: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of its level
    or above."""
    text = PAGES[page]
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", text[start:])]
    return text[start : start + ends[0]] if ends else text[start:]


def table_keys(text: str) -> set[str]:
    """The backticked names in the first cell of each row of the text's tables."""
    keys: set[str] = set()
    for cell in re.findall(r"^\| ([^|]+) \|", text, flags=re.MULTILINE):
        keys.update(re.findall(r"`(\w+)`", cell))
    return keys


# -- json.md's tables are the schema's ---------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "properties"),
    [
        ("## Top level", SCHEMA["properties"]),
        ("### `machine`", SCHEMA["properties"]["machine"]["properties"]),
        ("### A test", SCHEMA["$defs"]["test"]["properties"]),
        ("### A region", SCHEMA["$defs"]["region"]["properties"]),
        (
            "### Graph figures (`extra.graph_figures`)",
            SCHEMA["$defs"]["graph_figures"]["properties"],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_json_md_table_lists_the_schema_s_keys(heading: str, properties: dict[str, Any]) -> None:
    own = section("json.md", heading).split("\n#", 1)[0]  # not its subsections'
    assert table_keys(own) == set(properties)


def test_the_device_paragraph_names_every_schema_key_and_the_metrics_in_order() -> None:
    text = section("json.md", "### A device")
    named = re.findall(r"`(\w+)`", text)
    assert set(SCHEMA["$defs"]["device"]["properties"]) <= set(named)
    assert [n for n in named if n in METRICS][: len(METRICS)] == list(METRICS)


def test_the_settings_and_summary_keys_are_what_a_run_writes(pytester: pytest.Pytester) -> None:
    row = re.search(r"^\| `settings` \|.*$", JSON_MD, flags=re.MULTILINE)
    summary = re.search(r"^\| `summary` \|.*$", JSON_MD, flags=re.MULTILINE)
    assert row and summary
    pytester.makepyfile("def test_a(cgmem_record):\n    cgmem_record('x', peak=1)\n")
    pytester.runpytest("-p", "no:randomly", "--cgmem-json=run.json").assert_outcomes(passed=1)
    doc = runfile.load_run(pytester.path / "run.json")
    assert set(re.findall(r"`(\w+)`", row.group(0).split("|")[3])) == set(doc["settings"])
    assert set(re.findall(r"`(\w+)`", summary.group(0).split("|")[3])) == set(doc["summary"])


def _json_blocks() -> list[str]:
    return re.findall(r"```json\n(.*?)```", JSON_MD, flags=re.DOTALL)


def test_the_example_run_file_is_one_a_reader_takes(tmp_path: Path) -> None:
    (example,) = [b for b in _json_blocks() if b.lstrip().startswith('{\n "schema"')]
    (tmp_path / "cgmem.json").write_text(example)
    doc = runfile.load_run(tmp_path / "cgmem.json")
    assert doc["complete"] is True and len(doc["tests"]) == 1


def test_the_baseline_findings_example_matches_the_schema() -> None:
    import jsonschema

    (example,) = [b for b in _json_blocks() if b.startswith('{"compared"')]
    part = {**SCHEMA, **SCHEMA["$defs"]["test"]["properties"]["baseline"]}
    jsonschema.Draft202012Validator(part).validate(json.loads(example))


def test_the_python_snippet_validates_a_run_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (snippet,) = re.findall(r"```python\n(import json, jsonschema.*?)```", JSON_MD, re.DOTALL)
    pytester.makepyfile("def test_a(cgmem_record):\n    cgmem_record('x', peak=1)\n")
    pytester.runpytest("-p", "no:randomly", "--cgmem-json=cgmem.json").assert_outcomes(passed=1)
    monkeypatch.chdir(pytester.path)
    exec(compile(snippet, "json.md", "exec"), {})  # raises where the file does not validate


# -- the journal ---------------------------------------------------------------------------


def _journal_block() -> list[str]:
    (block,) = re.findall(r"```\n(\{\"journal\".*?)```", JSON_MD, flags=re.DOTALL)
    return block.splitlines()


def test_the_journal_s_line_kinds_are_the_journal_s() -> None:
    kinds = [re.findall(r'^\{"(\w+)"', line) for line in _journal_block()[1:]]
    assert sorted(k for found in kinds for k in found) == sorted(journal.KINDS)


def test_a_killed_run_leaves_the_stub_and_journal_the_page_shows(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)
    pytester.makepyfile(
        "import os\n\ndef test_a(cgmem_record):\n    cgmem_record('x', peak=1)\n\n"
        "def test_b():\n    os._exit(1)\n"
    )
    pytester.runpytest_subprocess("-p", "no:randomly", "--cgmem-json=cgmem.json")
    stub = json.loads((pytester.path / "cgmem.json").read_text())
    assert stub["incomplete_reason"] == runfile.NOT_FINISHED
    assert f'"incomplete_reason": "{runfile.NOT_FINISHED}"' in JSON_MD
    assert stub["journal"]["file"] == "cgmem.json.journal"
    lines = [json.loads(line) for line in (pytester.path / "cgmem.json.journal").open()]
    documented = json.loads(re.sub(r'"\.\.\."|\d{4,}', "0", _journal_block()[0]))
    assert set(lines[0]) == set(documented)
    assert lines[0]["journal"] == documented["journal"] == runfile.SCHEMA_ID
    assert {kind for line in lines[1:] for kind in line} <= set(journal.KINDS)


# -- the incomplete_reason table -------------------------------------------------------------


def _quoted_reasons() -> set[str]:
    table = JSON_MD.split("| how the run ended |", 1)[1].split("\n\n", 1)[0]
    cells = [row.split(" | ")[-1] for row in table.splitlines()[2:]]
    return {q for cell in cells for q in re.findall(r"`([^`]+)`", cell)} - {
        "true",
        "null",
        "workers_lost",
    }


SUITE = """
import os, pytest

def test_a(cgmem_record):
    cgmem_record("x", peak=1)

def test_b(cgmem_record):
    result = cgmem_record("x", peak=1)
    how = os.environ.get("HOW")
    if how == "ctrl-c":
        raise KeyboardInterrupt
    if how == "exit":
        pytest.exit("enough")
    if how == "fail":
        assert 0
    if how == "nan":
        result.devices[0].figures["peak"] = float("nan")

def test_c(cgmem_record):
    cgmem_record("x", peak=1)
"""

#: each reason the table quotes, and a run that gives it: (environment HOW, arguments, files)
PRODUCED: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "interrupted (KeyboardInterrupt)": ("ctrl-c", [], {}),
    "interrupted: <message>": ("exit", [], {}),  # pytest.exit("enough")
    "stopped early: stopping after 1 failures": ("fail", ["-x"], {}),
    "the run ended before its first test (exit status 4)": (
        "",
        [],
        {"tests/test_m.py": "import pytest\n\n@pytest.mark.cgmem(peek=1)\ndef test_m(): pass\n"},
    ),
    "2 collection error(s) (tests/test_a.py, tests/test_b.py): their tests did not run": (
        "",
        ["--continue-on-collection-errors"],
        {"tests/test_a.py": "import nope\n", "tests/test_b.py": "import nope\n"},
    ),
    "the figures of 1 test(s) could not be written": ("nan", [], {}),
    "an internal error ended the run": (
        "",
        [],
        {"conftest.py": "def pytest_runtest_logfinish(nodeid):\n    raise RuntimeError('x')\n"},
    ),
}
#: reasons a serial CPU run cannot give, and the tests that produce them
ELSEWHERE = {
    "interrupted: stopping after 1 failures": "xdist: test_results_trust.py",
    "worker gw1 crashed while running t.py::test_x (that test's figures are lost)": "xdist",
    "..., after its call phase (its figures are kept)": "xdist: test_interop.py",
    "rank(s) 1 sent no records": "torchrun: tests/unit/test_ranks.py",
    STOPPED_BEFORE_COLLECTION: "an earlier run's file: test_results_run_end.py",
    "the run file could not be written: [Errno 28] No space left on device": (
        "a full disk: tests/unit/test_journal.py"
    ),
}


def test_every_quoted_reason_is_checked_here() -> None:
    assert _quoted_reasons() == set(PRODUCED) | set(ELSEWHERE)


@pytest.mark.parametrize("reason", list(PRODUCED), ids=lambda r: r[:40])
def test_a_quoted_reason_is_what_the_run_file_says(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    how, args, files = PRODUCED[reason]
    monkeypatch.setenv("HOW", how)
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_s.py").write_text(SUITE)
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    # in a process of its own: a KeyboardInterrupt would end an in-process run's caller too
    pytester.runpytest_subprocess("-p", "no:randomly", "--cgmem-json=run.json", *args)
    doc = runfile.load_run(pytester.path / "run.json")
    assert doc["complete"] is False
    assert doc["incomplete_reason"] == reason.replace("<message>", "enough")


# -- quoted usage errors -----------------------------------------------------------------------

TEST_A = {"test_a.py": "def test_a(): pass\n"}
#: each usage error the pages quote: (files, arguments, environment)
QUOTED_ERRORS: dict[str, tuple[dict[str, str], list[str], dict[str, str]]] = {
    "ERROR: --cgmem-json='/proc/x.json': cannot create a file in '/proc' (No such file or "
    "directory)": (TEST_A, ["--cgmem-json=/proc/x.json"], {}),
    "ERROR: --cgmem-gab-json='s.json': the same file as --cgmem-json='s.json'; give each "
    "output its own path": (TEST_A, ["--cgmem-json=s.json", "--cgmem-gab-json=s.json"], {}),
    "ERROR: --cgmem-json='cgmem.json': another pytest run (pid 4242 on gpu-runner-3, started "
    "...) is writing it; give each concurrent run its own path": (
        TEST_A,
        ["--cgmem-json=cgmem.json"],
        {},
    ),
    "ERROR: --cgmem-json: --dist each runs every test on every worker, and the file holds one "
    "record a test; give each device its own pytest run (and its own file), or use --dist "
    "load": (TEST_A, ["-n", "2", "--dist", "each", "--cgmem-json=c.json"], {}),
    "ERROR: --cgmem-devices='0,1': device 1 is not among CUDA_VISIBLE_DEVICES='3'": (
        TEST_A,
        ["-n", "2", "--cgmem-devices=0,1"],
        {"CUDA_VISIBLE_DEVICES": "3"},
    ),
    "ERROR: test_x.py::test_it: @pytest.mark.cgmem_off: takes one reason, e.g. "
    "cgmem_off('runs its own allocator'), got none": (
        {"test_x.py": "import pytest\n\n@pytest.mark.cgmem_off\ndef test_it(): pass\n"},
        [],
        {},
    ),
}


def test_every_quoted_usage_error_is_checked_here() -> None:
    quoted = set()
    for name in ("json.md", "ci.md", "suite.md"):
        quoted |= set(re.findall(r"(?m)^ERROR: .*$", PAGES[name]))
        quoted |= set(re.findall(r"`(ERROR: [^`]*)`", PAGES[name]))
    assert quoted == set(QUOTED_ERRORS)


@pytest.mark.parametrize("line", list(QUOTED_ERRORS), ids=lambda line: line[7:50])
def test_a_quoted_usage_error_is_what_the_run_prints(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    files, args, env = QUOTED_ERRORS[line]
    if "/proc" in line and not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    if "-n" in args:
        pytest.importorskip("xdist")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    with open(pytester.path / "cgmem.json.journal", "w") as held:
        if "another pytest run" in line:  # a live run's journal, as the page's example
            header = {"journal": runfile.SCHEMA_ID, "run": "5f0c", "pid": 4242}
            header |= {"host": "gpu-runner-3", "started": "..."}
            held.write(json.dumps(header) + "\n")
            held.flush()
            fcntl = pytest.importorskip("fcntl")
            fcntl.flock(held, fcntl.LOCK_EX)
        else:
            (pytester.path / "cgmem.json.journal").unlink()
        result = pytester.runpytest("-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert line in result.stderr.lines


# -- the readers' error lines ----------------------------------------------------------------

EIGHT = "".join(f"def test_{c}(cgmem_record):\n    cgmem_record('x', peak=1)\n" for c in "abcdefgh")


def _broken(doc: dict[str, Any], how: str) -> str:
    doc = json.loads(json.dumps(doc))
    if how == "tolerance":
        doc["tests"][0]["tolerance"] = "10%"
    elif how == "outcome":
        del doc["tests"][3]["outcome"]
    elif how == "nan":
        doc["tests"][0]["regions"][0]["devices"][0]["peak"] = float("nan")
    elif how == "twice":
        doc["tests"][7] = doc["tests"][0]
    text = json.dumps(doc)
    if how == "key":
        at = text.rindex('"tests":')
        text = f'{text[:at]}"tests": [], {text[at:]}'
    return text


#: each line the page quotes: (the broken file, how it is broken, its place in ``cgmem compare``)
READER_LINES = {
    "new.json: tolerance": 1,
    "base.json: outcome": 0,
    "base.json: nan": 0,
    "a.json: twice": 1,
    "a.json: key": 1,
}


def test_each_quoted_reader_error_is_what_cgmem_compare_prints(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = re.findall(r"```\n(cgmem: run file 'new\.json'.*?)```", JSON_MD, flags=re.DOTALL)
    quoted = block.splitlines()
    pytester.makepyfile(t=EIGHT)  # node ids t.py::test_a...
    result = pytester.runpytest("-p", "no:randomly", "t.py", "--cgmem-json=good.json")
    result.assert_outcomes(passed=8)
    good = json.loads((pytester.path / "good.json").read_text())
    printed = []
    for key, place in READER_LINES.items():
        name, how = key.split(": ")
        (pytester.path / name).write_text(_broken(good, how))
        files = ["good.json", "good.json"]
        files[place] = name
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(pytester.path)
            assert cgmem(["compare", *files]) == 2
        printed.append(capsys.readouterr().err.strip())
    assert printed == quoted


# -- budget failures quoted on the pages -----------------------------------------------------


@pytest.mark.parametrize(
    ("page", "figures", "budget", "where", "rank"),
    [
        ("README.md", {"peak": "2.4 GiB"}, {"peak": "2 GiB"}, "cuda:0", None),
        ("graphs.md", {"graph_pool": "22 MiB"}, {"graph_pool": 0}, "cuda:0", None),
        ("resize.md", {"reserved_ratio": 1.75}, {"reserved_ratio": 1.2}, "cuda:0", None),
        ("distributed.md", {"leak": "64 MiB"}, {"leak": 0}, "cuda:1", 1),
    ],
)
def test_a_quoted_budget_failure_is_the_violation_s_message(
    page: str, figures: dict[str, Any], budget: dict[str, Any], where: str, rank: int | None
) -> None:
    text = (ROOT / page).read_text() if page == "README.md" else PAGES[page]
    actual = {
        k: v if isinstance(v, float) else parse_budget({k: v}).limits[k] for k, v in figures.items()
    }
    (violation,) = check(actual, parse_budget(budget), where, rank=rank)
    assert violation.message in text


def test_the_graph_budget_failure_is_rendered_as_the_page_shows(pytester: pytest.Pytester) -> None:
    (block,) = re.findall(
        r"```\n(E   pytest_cgmem.BudgetExceeded: cgmem: graph_pool.*?)```", PAGES["graphs.md"], re.S
    )
    pytester.makepyfile(
        "def test_g(cgmem_record):\n    cgmem_record('call', graph_pool='316 MiB', graphs=53)\n"
    )
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-budget=graph_pool=300MiB,graphs=51")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    start = lines.index(block.splitlines()[0])
    assert lines[start : start + 2] == block.splitlines()


# -- suite.md ----------------------------------------------------------------------------------

SUITE_WIDE = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_ok(cgmem_record, n):
    cgmem_record("x", leak=0)

@pytest.mark.parametrize("n", range(2))
def test_leak(cgmem_record, n):
    cgmem_record("x", leak=1)

@pytest.mark.cgmem_off("keeps its tensor on purpose")
def test_opted_out_leak():
    pass

@pytest.mark.cgmem_off("records a server's figures")
def test_opted_out_record(cgmem_record):
    cgmem_record("x", leak=1)

def test_cpu():
    pass
"""


def test_the_suite_summary_is_what_the_run_prints(pytester: pytest.Pytester) -> None:
    """Figures recorded with cgmem_record stand in for measured ones on a CPU."""
    block = section("suite.md", "## Reading the results").split("```\n")[1].splitlines()
    suffix = re.search(r"its line\nends with ` ([^`]+)`", PAGES["suite.md"])
    assert suffix
    pytester.makepyfile(test_suite=SUITE_WIDE)
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-all", "--cgmem-budget=leak=0")
    result.assert_outcomes(passed=7, failed=2)
    lines = result.stdout.lines
    start = lines.index(block[1].replace("1 opted out", "2 opted out")) - 1
    assert lines[start : start + 3] == [
        block[0],
        block[1].replace("1 opted out", "2 opted out"),
        block[2],
    ]
    assert lines[start + 3] == (
        f"  opted out test_suite.py::test_opted_out_record: records a server's figures {suffix[1]}"
    )
    # its kept figures are in the table, which counts tests with figures, not measured ones
    assert "7 test(s) with figures, largest peak first" in lines[start + 4 :]


# -- ci.md: --cgmem-devices ------------------------------------------------------------------


def test_the_devices_table_is_what_each_worker_gets() -> None:
    table = PAGES["ci.md"].split("| value | worker gw0, gw1, gw2, gw3 see |", 1)[1]
    rows = re.findall(r"^\| `([^`]+)`( [^|]*)? \| ([^|]+) \|$", table, flags=re.MULTILINE)
    assert len(rows) == 5
    for value, context, seen in rows:
        inherited = re.search(r"CUDA_VISIBLE_DEVICES=([\d,]+)` inherited", context or "")
        count = int(m[1]) if (m := re.search(r"on a (\d)-GPU", context or "")) else 8
        got = [
            device_for_worker(f"gw{n}", parse_devices(value), inherited and inherited[1], count)
            for n in range(4)
        ]
        assert re.findall(r"`(\d)`", seen) == got, value


# -- distributed.md ------------------------------------------------------------------------


def test_the_arguments_table_has_the_defaults_of_the_signature() -> None:
    table = PAGES["distributed.md"].split("| argument | default | meaning |", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \|([^|]*)\|", table, flags=re.MULTILINE)
    parameters = inspect.signature(CgmemFixture.distributed).parameters
    assert [name for name, _ in rows] == [p for p in parameters if p != "self"]
    runner = inspect.signature(DistributedRunner.__call__).parameters  # cgmem_distributed
    assert list(runner.values()) == list(parameters.values())
    for name, default in rows:
        expected = parameters[name].default
        if expected is inspect.Parameter.empty:
            assert not default.strip(), name
        else:
            shown = default.strip().strip("`")
            assert shown == (
                str(expected) if not isinstance(expected, str) else f'"{expected}"'
            ) or (float(shown) == expected), name


def test_the_result_table_names_attributes_the_result_has() -> None:
    table = PAGES["distributed.md"].split("| attribute | what |", 1)[1].split("\n\n", 1)[0]
    names = set(re.findall(r"`result\.(\w+)", table))
    assert names >= {"per_rank", "values", "regions", "check", "measured", "unmeasured"}
    made = inspect.getsource(DistributedResult.__init__)
    for name in names:  # a property or method, a metric (the largest over the ranks), or set
        assert hasattr(DistributedResult, name) or name in METRICS or f"self.{name}" in made, name


def test_the_quoted_world_size_error_is_the_runner_s(pytester: pytest.Pytester) -> None:
    quoted = re.search(r"\(`(cgmem\.distributed: world_size[^`]+)`", PAGES["distributed.md"])
    assert quoted
    pytester.makepyfile(
        "def fn(rank, world_size):\n    pass\n\n"
        "def test_d(cgmem_distributed):\n    cgmem_distributed(fn, world_size=0, backend='gloo')\n"
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    error = " ".join(quoted[1].split())
    assert f"E       pytest_cgmem.units.CgmemUsageError: {error}" in result.stdout.lines


# -- graphs.md and resize.md: pure checks and signatures -------------------------------------


def test_the_pure_coverage_example_and_messages() -> None:
    graphs = PAGES["graphs.md"]
    assert "uncovered_sizes([8, 16, 24], [3, 20, 25, 30])  # [25, 30]" in graphs
    assert uncovered_sizes([8, 16, 24], [3, 20, 25, 30]) == [25, 30]
    with pytest.raises(pytest_cgmem.SizesNotCovered) as covered:
        assert_sizes_covered(range(8, 497, 8), range(1, 501))
    assert f"\nSizesNotCovered: {covered.value}\n" in graphs
    with pytest.raises(pytest_cgmem.EstimateMismatch) as estimate:
        assert_estimate(8703181, 34603008, rel=0.10, abs="2 MiB")
    assert f"\nEstimateMismatch: {estimate.value}\n" in graphs


def signature(method: str) -> str:
    """A fixture method's parameters as the pages write them (a float default that is a
    whole number without its ``.0``)."""
    shown: list[str] = []
    for parameter in list(inspect.signature(getattr(CgmemFixture, method)).parameters.values())[1:]:
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in shown:
            shown.append("*")
        default = parameter.default
        if default is parameter.empty:
            shown.append(parameter.name)
        else:
            if isinstance(default, float) and default.is_integer():
                default = int(default)
            shown.append(f"{parameter.name}={json.dumps(default)}".replace("null", "None"))
    return ", ".join(shown)


@pytest.mark.parametrize(
    ("page", "method"), [("resize.md", "resize_check"), ("resize.md", "steady")]
)
def test_a_method_heading_is_its_signature(page: str, method: str) -> None:
    (heading,) = re.findall(rf"^## `cgmem\.{method}\((.*)\)`$", PAGES[page], flags=re.MULTILINE)
    assert heading == signature(method)


@pytest.mark.parametrize("method", ["resize_check", "steady", "distributed"])
def test_usage_md_shows_a_method_s_whole_signature(method: str) -> None:
    usage = " ".join((DOCS / "usage.md").read_text().split())
    assert f"`cgmem.{method}({signature(method)})`" in usage


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))], ids=str)
def test_every_python_block_of_a_page_is_python(page: str) -> None:
    text = (ROOT / page if page == "README.md" else DOCS / page).read_text()
    for block in re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL):
        compile(block, f"{page} python block", "exec", dont_inherit=True)


# -- baselines.md: a regression ------------------------------------------------------------

REGRESSES = """
import os


def test_a(cgmem_record):
    cgmem_record("server", peak=os.environ["PEAK"])
"""


def test_the_regression_is_reported_as_baselines_md_shows(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (DOCS / "baselines.md").read_text()
    block = text.split("## What a regression looks like", 1)[1].split("```\n")[1].splitlines()
    start = block.index(">   def test_a(cgmem_record):")
    end = next(n for n, line in enumerate(block) if line.startswith("test_s.py:"))
    pytester.makepyfile(test_s=REGRESSES)
    monkeypatch.setenv("PEAK", "100 MiB")
    saved = pytester.runpytest("-p", "no:randomly", "--cgmem-save-baseline=out/base.json")
    saved.assert_outcomes(passed=1)
    monkeypatch.setenv("PEAK", "150 MiB")
    result = pytester.runpytest("-p", "no:randomly", "--cgmem-baseline=out/base.json")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    first = lines.index(block[start])
    assert lines[first : first + end - start + 1] == block[start : end + 1]
