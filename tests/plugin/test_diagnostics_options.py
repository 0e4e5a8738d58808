"""The diagnostics options: resolution, defaults and usage errors (no GPU needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pytest_cgmem
from pytest_cgmem.plugin import settings_key
from pytest_cgmem.settings import DEFAULT_HISTORY_ENTRIES, DEFAULT_STACKS

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs


def test_defaults(pytester: pytest.Pytester) -> None:
    settings = pytester.parseconfigure().stash[settings_key]
    assert settings.history is False
    assert settings.history_entries == DEFAULT_HISTORY_ENTRIES == 100_000
    assert settings.stacks == DEFAULT_STACKS == 4
    assert settings.artifacts is None


def test_cli_over_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\ncgmem_history = true\ncgmem_history_entries = 500\n"
        "cgmem_stacks = 2\ncgmem_artifacts = from-ini\n"
    )
    settings = pytester.parseconfigure("--cgmem-stacks=6", "--cgmem-artifacts=out").stash[
        settings_key
    ]
    assert (settings.history, settings.history_entries) == (True, 500)
    assert (settings.stacks, settings.artifacts) == (6, "out")


def test_history_flag(pytester: pytest.Pytester) -> None:
    assert pytester.parseconfigure("--cgmem-history").stash[settings_key].history is True


@pytest.mark.parametrize(
    ("args", "ini", "line"),
    [
        (["--cgmem-history-entries=0"], "", "*--cgmem-history-entries='0': expected a whole*"),
        (["--cgmem-stacks=many"], "", "*--cgmem-stacks='many': expected a whole number >= 1*"),
        ([], "cgmem_history = maybe", "*cgmem_history: invalid truth value 'maybe'*"),
        ([], "cgmem_stacks = -2", "*cgmem_stacks=*-2*: expected a whole number >= 1*"),
    ],
)
def test_bad_values_are_one_line_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, line: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])
    assert "Traceback" not in result.stderr.str()


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*--cgmem-history*",
            "*--cgmem-history-entries=N*",
            "*--cgmem-stacks=N*",
            "*--cgmem-artifacts=DIR*",
        ]
    )


@pytest.mark.lean_runs(False)  # that no plugin's hook (pytest-benchmark's too) imports torch
def test_unused_plugin_still_imports_no_torch(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(pytest_cgmem.__file__).parent.parent), prepend=os.pathsep
    )
    pytester.makepyfile(
        """
        import sys

        def test_no_torch():
            assert "torch" not in sys.modules
            assert "pytest_cgmem.recorder" not in sys.modules
            assert "pytest_cgmem.diagnose" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("--cgmem-history", "--cgmem-artifacts=x")
    result.assert_outcomes(passed=1)
