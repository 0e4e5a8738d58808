"""The layers of docs/architecture.md, held against the code's own imports."""

from __future__ import annotations

import ast
import functools
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_cgmem

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_cgmem"
DOC = PACKAGE.parent / "docs" / "architecture.md"

#: bottom to top; a module imports only from its own layer or those below (docs/architecture.md)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("units",),
    ("metrics", "failures", "pinning"),
    ("checks",),
    ("settings", "results"),
    ("reports",),
    ("cuda",),
    ("fixture", "session"),
    ("plugin", "cli", "__init__"),
)
GPU_MODULES = ("torch", "pynvml")


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name below ``pytest_cgmem`` (read once: the
    parametrized tests below ask for it once each)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@functools.cache
def imports(name: str, path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(package modules, outside top-level packages) imported anywhere in the file,
    function bodies included (each file parsed once)."""
    tree = ast.parse(path.read_text())
    inside, outside = set(), set()
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pytest_cgmem"):
                    inside.add(alias.name.removeprefix("pytest_cgmem").lstrip(".") or "__init__")
                else:
                    outside.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                target = node.module or ""
                if target.startswith("pytest_cgmem"):
                    stem = target.removeprefix("pytest_cgmem").lstrip(".")
                    inside.add(stem or "__init__")
                    inside.update(f"{stem}.{a.name}".lstrip(".") for a in node.names)
                else:
                    outside.add(target.split(".")[0])
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            stem = ".".join([*base, node.module] if node.module else base)
            if node.module:
                inside.add(stem)
                inside.update(f"{stem}.{a.name}" for a in node.names)
            else:  # from . import a, b
                inside.update(".".join([*base, a.name]) for a in node.names)
    known = modules()
    return frozenset(m for m in inside if m in known or m == "__init__"), frozenset(outside)


def layer_of(name: str) -> int:
    top = name.split(".")[0]
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS and docs/architecture.md")


@pytest.mark.parametrize("name", sorted(modules()))
def test_only_the_cuda_package_imports_torch_or_pynvml(name: str) -> None:
    _, outside = imports(name, modules()[name])
    gpu = outside & set(GPU_MODULES)
    if not name.startswith("cuda"):
        assert not gpu, f"{name} imports {sorted(gpu)}: only pytest_cgmem.cuda may"


@pytest.mark.parametrize("name", sorted(modules()))
def test_each_module_imports_only_its_layer_or_below(name: str) -> None:
    inside, _ = imports(name, modules()[name])
    for target in inside:
        assert layer_of(target) <= layer_of(name), f"{name} imports {target}, a higher layer"


def test_no_import_circle() -> None:
    graph = {name: imports(name, path)[0] - {name} for name, path in modules().items()}
    # a package imports its own modules' names only through its face: drop parent links
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_every_module_is_on_the_map() -> None:
    text = DOC.read_text()
    for name, path in modules().items():
        if path.name == "__init__.py":
            continue
        assert str(path.relative_to(PACKAGE)) in text, f"docs/architecture.md does not name {name}"


def documented_layers() -> dict[str, int]:
    """Each module file of docs/architecture.md's table and the number of its layer."""
    layers, number = {}, None
    for row in DOC.read_text().splitlines():
        match = re.match(r"\| (?:(\d+) [^|]*)? *\| `([\w/]+\.py)` \|", row)
        if match is None:
            continue
        if match.group(1):
            number = int(match.group(1))
        assert number is not None, f"a row before the first layer: {row[:60]}"
        layers[match.group(2)] = number
    return layers


def test_the_page_s_layers_are_the_test_s() -> None:
    """The page's table puts each module in the layer LAYERS does (layer N is LAYERS[N - 1])."""
    documented = documented_layers()
    assert documented, "docs/architecture.md lost its table"
    for path, number in documented.items():
        name = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        assert layer_of(name) == number - 1, f"docs/architecture.md puts {path} in layer {number}"
    assert sorted(set(documented.values())) == list(range(1, len(LAYERS) + 1))


def test_every_module_outside_cuda_imports_without_torch() -> None:
    """A fresh process that imports every module outside ``cuda/``, then the ``cuda``
    package itself, has loaded neither torch nor pynvml (it never imports torch, so it costs
    the suite no torch import)."""
    pure = [f"pytest_cgmem.{n}" for n in modules() if n != "__init__" and not n.startswith("cuda")]
    code = (
        "import importlib, sys\n"
        f"for name in {pure!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules and 'pynvml' not in sys.modules\n"
        "import pytest_cgmem.cuda\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cuda_modules_import_and_the_diagnostics_wait_for_a_failure() -> None:
    """In one fresh process (one torch import): a process whose measured tests pass makes a
    recorder for each and never diagnoses, so the modules that make a failure's text are not
    imported (7 ms once, on the GPU host); then every ``cuda/`` module imports."""
    pytest.importorskip("torch")
    cuda = [f"pytest_cgmem.{n}" for n in modules() if n.startswith("cuda.")]
    code = (
        "import importlib, sys\n"
        "import pytest_cgmem.plugin, pytest_cgmem.session, pytest_cgmem.fixture\n"
        "import pytest_cgmem.cuda.region, pytest_cgmem.cuda.history\n"
        "late = {'pytest_cgmem.reports.diagnostics', 'pytest_cgmem.reports.artifacts'}\n"
        "assert not late & set(sys.modules), sorted(late & set(sys.modules))\n"
        f"for name in {cuda!r}:\n"
        "    importlib.import_module(name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(pytest_cgmem.__all__))
def test_each_public_name_is_its_home_module_s(name: str) -> None:
    """The package imports its public names on first use: each is the object its home
    module defines, and ``dir()`` lists it."""
    if pytest_cgmem._HOME[name].startswith(".cuda."):
        pytest.importorskip("torch")
    home = importlib.import_module(pytest_cgmem._HOME[name], "pytest_cgmem")
    assert getattr(pytest_cgmem, name) is getattr(home, name)
    assert name in dir(pytest_cgmem)


def test_the_package_names_only_its_public_names() -> None:
    assert set(pytest_cgmem._HOME) == set(pytest_cgmem.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'Region'"):
        pytest_cgmem.Region  # noqa: B018


def test_a_type_checker_sees_each_public_name_from_its_home_and_no_other() -> None:
    """The ``TYPE_CHECKING`` imports are what mypy and pyright see: the public names, each
    from the module that serves it at run time, with no ``__getattr__`` beside them (it
    would make any misspelt name ``Any``; tests/typing/public_types.py checks that)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    seen: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imported in node.body:
                assert isinstance(imported, ast.ImportFrom)
                home = "." * imported.level + (imported.module or "")
                seen.update((alias.name, home) for alias in imported.names)
        assert not isinstance(node, ast.FunctionDef) or node.name != "__getattr__"
    assert seen == pytest_cgmem._HOME


@pytest.mark.parametrize(
    ("holder", "served"),
    [
        ("pytest_cgmem.fixture.Measurement", "metrics"),
        ("pytest_cgmem.results.records.DeviceFigures", "metrics and details"),
        ("pytest_cgmem.results.ranks.RankResult", "metrics but device"),
        ("pytest_cgmem.results.ranks.DistributedResult", "metrics"),
    ],
)
def test_the_attributes_typed_for_a_type_checker_are_those_served(holder: str, served: str) -> None:
    """Each class that serves the metrics through ``__getattr__`` declares them for a type
    checker; the declarations follow ``METRICS`` (and ``Details``), name for name."""
    from dataclasses import fields

    from pytest_cgmem.metrics import METRICS
    from pytest_cgmem.results.records import Details

    module, _, name = holder.rpartition(".")
    declared = {
        key: kind
        for cls in reversed(getattr(importlib.import_module(module), name).__mro__)
        for key, kind in vars(cls).get("__annotations__", {}).items()
    }
    expected = list(METRICS)
    if served == "metrics but device":
        expected.remove("device")
    details = {f.name: f.type for f in fields(Details)} if served.endswith("details") else {}
    assert [n for n in declared if n in METRICS] == expected
    assert {n: t for n, t in declared.items() if n not in METRICS} == details
