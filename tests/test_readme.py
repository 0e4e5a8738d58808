"""The README's shell commands name things that exist: ./dev commands, extras, paths.

Nothing is installed here (too slow for the suite); a fresh clone runs them for real.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NAME = PYPROJECT["project"]["name"]
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
REPO_URL = "https://github.com/pytest-cgmem/pytest-cgmem"  # a placeholder until a release


def bash_commands() -> list[list[str]]:
    """Each command of the README's ```bash blocks, split as the shell would, comments dropped."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


COMMANDS = bash_commands()


def _ids(commands: list[list[str]]) -> list[str]:
    return [" ".join(c) for c in commands]


def dev_commands() -> set[str]:
    out = subprocess.run(
        [str(ROOT / "dev"), "help"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    section = out.split("commands:", 1)[1]
    return set(re.findall(r"^  (\w[\w-]*)\s", section, flags=re.MULTILINE))


def check_requirement(spec: str) -> None:
    """A pip requirement the README names: this checkout, or the project by name or URL."""
    target, _, url = (part.strip() for part in spec.partition("@"))
    match = re.fullmatch(r"([^\[\]]+)(?:\[([\w,-]+)\])?", target)
    assert match, f"cannot read {spec!r}"
    where, extras = match.group(1), match.group(2)
    if where.startswith((".", "/")):
        assert (ROOT / where / "pyproject.toml").is_file(), f"{where} is no project directory"
    else:
        assert where == NAME, f"{spec!r} names another project than {NAME}"
        assert url in ("", f"git+{REPO_URL}"), f"{spec!r}: unexpected URL"
    for extra in (extras or "").split(","):
        assert not extra or extra in EXTRAS, f"extra {extra!r} is not in pyproject.toml"


def test_readme_has_the_commands() -> None:
    firsts = {c[0] for c in COMMANDS}
    assert {"./dev", "pip"} <= firsts
    assert ["./dev", "demo"] in COMMANDS
    assert ["./dev", "test"] in COMMANDS
    assert ["pip", "install", "."] in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=_ids(COMMANDS))
def test_command_names_real_things(command: list[str]) -> None:
    program, *args = command
    if program == "./dev":
        assert (ROOT / "dev").stat().st_mode & 0o111, "./dev is not executable"
        assert args and args[0] in dev_commands(), f"./dev has no command {args[:1]}"
    elif program == "pip":
        assert args[0] == "install"
        specs = [a for a in args[1:] if not a.startswith("-")]
        assert specs
        for spec in specs:
            check_requirement(spec)
    else:
        pytest.fail(f"no check for {program!r}: teach tests/test_readme.py about it")


def test_dev_help_lists_demo_and_test() -> None:
    assert {"demo", "test", "help"} <= dev_commands()


def test_extras_table_matches_pyproject() -> None:
    install = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    table = re.findall(r"^\| `([\w-]+)` \|", install, flags=re.MULTILINE)
    assert set(table) == EXTRAS
