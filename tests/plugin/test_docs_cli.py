"""docs/cli.md's example sessions are real: each ``$ cgmem ...`` block is run on files made
by the suite the page describes, and its output (stdout and stderr, as a terminal shows
them) must match the page line for line."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # noqa: F401  imported once here: pytester's inline runs would re-import it each time

import pytest_cgmem

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

ROOT = Path(pytest_cgmem.__file__).parents[1]
DOC = ROOT / "docs" / "cli.md"

#: the suite docs/cli.md names (``test_s.py``); the environment moves its figures
SUITE = """
import os

def test_a(cgmem_record):
    cgmem_record("server", peak=os.environ.get("A", "100 MiB"))

def test_b(cgmem_record):
    cgmem_record("load", peak=os.environ.get("B", "2 GiB"))

def test_c(cgmem_record):
    cgmem_record("load", peak="512 MiB")
    if os.environ.get("DIE"):
        os._exit(1)

def test_new(cgmem_record):
    if os.environ.get("NEW"):
        cgmem_record("x", peak="1 MiB")
"""


def sessions(text: str) -> list[tuple[str, list[str]]]:
    """``(command, output lines)`` for every ``$ `` line in the page's code blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```\n(\$ .*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                found[-1][1].append(line)
    return found


@pytest.fixture
def files(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)
    for name in ("A", "B", "DIE", "NEW"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_s=SUITE)
    pytester.runpytest("--cgmem-json=base.json").assert_outcomes(passed=4)
    pytester.runpytest("--cgmem-json=shard-0.json", "-k", "test_a or test_b")
    pytester.runpytest("--cgmem-json=shard-1.json", "-k", "not test_a and not test_b")
    with monkeypatch.context() as env:
        env.setenv("DIE", "1")
        pytester.runpytest_subprocess("--cgmem-json=killed.json")
    monkeypatch.setenv("A", "150 MiB")
    monkeypatch.setenv("B", "1 GiB")
    monkeypatch.setenv("NEW", "1")
    pytester.runpytest("--cgmem-json=new.json").assert_outcomes(passed=4)
    bad = json.loads((pytester.path / "new.json").read_text())
    bad["tests"][0]["tolerance"] = "10%"
    (pytester.path / "bad.json").write_text(json.dumps(bad))
    return pytester.path


def test_the_example_sessions_print_what_the_page_shows(files: Path) -> None:
    examples = sessions(DOC.read_text())
    assert len(examples) >= 8, "docs/cli.md lost its examples"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
    status = None
    for command, expected in examples:
        if command == "echo $?":
            assert expected == [str(status)], command
            continue
        argv = shlex.split(command)
        assert argv[0] == "cgmem", command
        done = subprocess.run(
            [sys.executable, "-m", "pytest_cgmem.cli", *argv[1:]],
            cwd=files,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        status = done.returncode
        assert done.stdout.splitlines() == expected, f"$ {command}\n{done.stdout}"
