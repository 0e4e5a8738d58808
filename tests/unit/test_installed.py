"""The installed torch read without importing it: a CPU build is known from its version file."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem.cuda import installed
from pytest_cgmem.cuda.installed import (
    backend_from_settings,
    cpu_only_torch,
    version_file_build,
    version_file_fields,
)

CPU = """
from typing import Optional

__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip']
__version__ = '2.13.0+cpu'
debug = False
cuda: Optional[str] = None
git_version = 'cf30153c4c131c8164ee7798e5022d810682e2cb'
hip: Optional[str] = None
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CPU, "2.13.0+cpu"),
        (CPU.replace("cuda: Optional[str] = None", "cuda: Optional[str] = '13.0'"), None),
        (CPU.replace("hip: Optional[str] = None", "hip: Optional[str] = '6.2.4'"), None),
        (CPU.replace("cuda: Optional[str] = None", "cuda = None"), "2.13.0+cpu"),
        (CPU.replace("hip: Optional[str] = None\n", ""), None),  # not as expected: ask torch
        (CPU.replace("__version__ = '2.13.0+cpu'", "__version__ = VERSION"), None),
        (CPU.replace("cuda: Optional[str] = None", "cuda = get_cuda()"), None),
        ("not python (", None),
        ("", None),
        (CPU + "\x00", None),  # null bytes: a ValueError on some Pythons
        (CPU + "# \udcff\n", None),  # a lone surrogate: ast.parse raises UnicodeEncodeError
    ],
    ids=[
        "cpu",
        "cuda",
        "rocm",
        "plain-assign",
        "no-hip",
        "computed-version",
        "computed-cuda",
        "syntax-error",
        "empty",
        "null-byte",
        "surrogate",
    ],
)
def test_version_file_build(text: str, expected: str | None) -> None:
    assert version_file_build(text) == expected


@given(st.text())
def test_version_file_build_never_raises(text: str) -> None:
    found = version_file_build(text)
    assert found is None or isinstance(found, str)


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_a_cpu_build_of_any_version_is_read_back(version: str) -> None:
    text = CPU.replace("'2.13.0+cpu'", repr(version))
    assert version_file_build(text) == version


def test_the_installed_torchs_version_file_says_what_torch_says() -> None:
    """On every torch of the matrix: the version file read as the plugin reads it agrees
    with the imported torch."""
    torch = pytest.importorskip("torch")
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.submodule_search_locations
    text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    from pytest_cgmem.cuda import allocator

    cpu_build = not allocator.gpu_build()
    assert version_file_build(text) == (torch.__version__ if cpu_build else None)


def test_a_fresh_process_knows_a_cpu_build_without_importing_torch() -> None:
    torch = pytest.importorskip("torch")
    from pytest_cgmem.cuda import allocator

    cpu_build = not allocator.gpu_build()
    code = (
        "import sys\n"
        "from pytest_cgmem.cuda.installed import cpu_only_torch\n"
        "print(cpu_only_torch(), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{torch.__version__ if cpu_build else None} False"


def test_once_torch_is_imported_torch_itself_is_asked() -> None:
    pytest.importorskip("torch")
    assert cpu_only_torch() is None


def test_version_file_fields_of_a_gpu_build() -> None:
    text = CPU.replace("cuda: Optional[str] = None", "cuda: Optional[str] = '13.0'")
    assert version_file_fields(text) == {"__version__": "2.13.0+cpu", "cuda": "13.0", "hip": None}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("", "native"),
        ("expandable_segments:True", "native"),
        ("backend:cudaMallocAsync", "cudaMallocAsync"),
        ("max_split_size_mb:100, backend : cudaMallocAsync", "cudaMallocAsync"),
        ("backend:native", "native"),
        ("garbage_collection_threshold:cudaMallocAsync", "native"),  # only backend: says
    ],
)
def test_the_backend_an_allocator_settings_string_asks_for(settings: str, expected: str) -> None:
    assert backend_from_settings(settings) == expected


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("", "native"),
        ("backend:native", "native"),
        ("backend:cudaMallocAsync", "hipMallocAsync"),
        ("expandable_segments:True,backend: hipMallocAsync", "hipMallocAsync"),
    ],
)
def test_a_rocm_build_takes_either_async_name_and_calls_it_hip(
    settings: str, expected: str
) -> None:
    assert backend_from_settings(settings, rocm=True) == expected


def test_a_cuda_build_does_not_take_the_hip_name() -> None:
    assert backend_from_settings("backend:hipMallocAsync") == "native"


@pytest.mark.parametrize(
    ("reported", "is_async"),
    [("native", False), ("cudaMallocAsync", True), ("hipMallocAsync", True), ("unknown", False)],
)
def test_the_async_backend_is_known_by_either_name(
    monkeypatch: pytest.MonkeyPatch, reported: str, is_async: bool
) -> None:
    allocator = pytest.importorskip("pytest_cgmem.cuda.allocator")
    monkeypatch.setattr(allocator, "_backend", reported)
    assert allocator.is_async_backend() is is_async
    assert allocator.readable_in_capture() is not is_async


def test_the_identity_without_torch_says_what_torch_says() -> None:
    """pytest-benchmark's machine_info: read without importing torch, it must agree with
    the machine the run file records where torch is imported."""
    code = (
        "import json, sys\n"
        "from pytest_cgmem.cuda.machine import identity_without_torch, machine_info\n"
        "before = identity_without_torch()\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "after = machine_info()\n"
        "print(json.dumps([before, {k: after[k] for k in before}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == after


@pytest.mark.parametrize("reported", ["cudaMallocAsync", "hipMallocAsync"])
def test_what_the_async_backend_cannot_give_is_said_under_its_own_name(
    monkeypatch: pytest.MonkeyPatch, reported: str
) -> None:
    allocator = pytest.importorskip("pytest_cgmem.cuda.allocator")
    monkeypatch.setattr(allocator, "_backend", reported)
    monkeypatch.setattr(allocator, "_pool_source", None)
    assert allocator.unavailable_figures()["graph_pool"].startswith(
        f"backend:{reported} keeps no graph pools: captured allocations"
    )
    assert (
        allocator.describe_pool_source() == f"unavailable (backend:{reported} keeps no graph pools)"
    )
    monkeypatch.setattr(allocator, "_backend", "native")
    assert allocator.unavailable_figures() == {}


# a torch installed under tmp_path: what the plugin reads of it, never the torch here ----


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``sys.path`` that holds only ``tmp_path``, with torch not imported: a torch
    written there is the installed one."""
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    importlib.invalidate_caches()
    installed.installed_version_fields.cache_clear()
    installed._torch_found.cache_clear()
    yield tmp_path
    installed.installed_version_fields.cache_clear()
    installed._torch_found.cache_clear()


def _install(site: Path, version_file: str | bytes | None) -> None:
    package = site / "torch"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    if isinstance(version_file, str):
        (package / "version.py").write_text(version_file, encoding="utf-8")
    elif isinstance(version_file, bytes):
        (package / "version.py").write_bytes(version_file)


GPU = CPU.replace("cuda: Optional[str] = None", "cuda: Optional[str] = '13.0'")


@pytest.mark.parametrize(
    ("version_file", "fields", "cpu_version"),
    [
        (CPU, {"__version__": "2.13.0+cpu", "cuda": None, "hip": None}, "2.13.0+cpu"),
        (GPU, {"__version__": "2.13.0+cpu", "cuda": "13.0", "hip": None}, None),
        (None, None, None),  # no version.py
        (b"__version__ = '\xff'\n", None, None),  # not UTF-8
        (CPU.replace("hip: Optional[str] = None\n", ""), None, None),  # not as expected
    ],
    ids=["cpu", "gpu", "no-version-file", "undecodable", "no-hip"],
)
def test_the_installed_torch_is_read_from_its_version_file(
    fake_site: Path,
    version_file: str | bytes | None,
    fields: dict[str, object] | None,
    cpu_version: str | None,
) -> None:
    _install(fake_site, version_file)
    assert installed.installed_version_fields() == fields
    assert installed.cpu_only_torch() == cpu_version
    assert installed.torch_installed()
    assert "torch" not in sys.modules


def test_a_torch_module_that_is_no_package_has_no_version_file(fake_site: Path) -> None:
    (fake_site / "torch.py").write_text("raise ImportError('never imported')\n")
    assert installed.installed_version_fields() is None
    assert installed.cpu_only_torch() is None
    assert installed.torch_installed()


def test_no_torch_installed(fake_site: Path) -> None:
    assert not installed.torch_installed()
    assert installed.installed_version_fields() is None
    assert installed.cpu_only_torch() is None


def test_a_torch_imported_already_is_installed_and_asked_itself(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(fake_site, CPU)
    imported = types.ModuleType("torch")  # no __spec__, but torch's own file
    imported.__file__ = str(fake_site / "torch" / "__init__.py")
    monkeypatch.setitem(sys.modules, "torch", imported)
    assert installed.torch_installed()
    assert installed.cpu_only_torch() is None
    assert installed.installed_version_fields() is None  # no file to read it from


@pytest.mark.parametrize("stand_in", [types.ModuleType("torch"), None], ids=["module", "blocked"])
def test_a_stand_in_for_torch_is_no_torch_installed(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch, stand_in: object
) -> None:
    """The plugin's own ``import torch`` would get the stand-in (or fail): it has no torch,
    though one is installed."""
    _install(fake_site, CPU)
    monkeypatch.setitem(sys.modules, "torch", stand_in)
    assert not installed.torch_installed()


@pytest.mark.parametrize(
    ("version_file", "conf", "backend", "cuda"),
    [
        (CPU, "backend:cudaMallocAsync", "unknown", None),  # a CPU build cannot say
        (GPU, "backend:cudaMallocAsync", "cudaMallocAsync", "13.0"),
        (GPU, "expandable_segments:True", "native", "13.0"),
    ],
    ids=["cpu", "gpu-async", "gpu-native"],
)
def test_the_identity_read_from_an_installed_torch(
    fake_site: Path,
    monkeypatch: pytest.MonkeyPatch,
    version_file: str,
    conf: str,
    backend: str,
    cuda: str | None,
) -> None:
    """docs/json.md: ``allocator_backend`` is ``unknown`` where torch cannot say (a CPU
    build among them)."""
    from pytest_cgmem.cuda import machine

    _install(fake_site, version_file)
    for name in installed.ALLOC_CONF_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", conf)
    identity = machine.identity_without_torch()
    assert identity["torch"] == "2.13.0+cpu"
    assert identity["cuda"] == cuda
    assert identity["allocator_backend"] == backend
    assert identity["alloc_conf"] == conf
    assert identity["alloc_conf_source"] == "PYTORCH_CUDA_ALLOC_CONF"
    assert "torch" not in sys.modules


@pytest.mark.parametrize(
    ("environ", "version", "expected"),
    [
        (
            {"PYTORCH_CUDA_ALLOC_CONF": "a:1", "PYTORCH_HIP_ALLOC_CONF": "h:3"},
            (2, 4),
            ("a:1", "PYTORCH_CUDA_ALLOC_CONF"),  # the CUDA variable first, before 2.10 too
        ),
        ({"PYTORCH_HIP_ALLOC_CONF": "h:3"}, (2, 9), ("h:3", "PYTORCH_HIP_ALLOC_CONF")),
        ({"PYTORCH_ALLOC_CONF": "b:2"}, (2, 9), ("", "")),
        ({"PYTORCH_ALLOC_CONF": "b:2"}, (2, 10), ("b:2", "PYTORCH_ALLOC_CONF")),
    ],
)
def test_the_settings_a_rocm_build_reads(
    environ: dict[str, str], version: tuple[int, int], expected: tuple[str, str]
) -> None:
    assert installed.alloc_conf_from_env(environ, version, rocm=True) == expected


@pytest.mark.parametrize(
    ("environ", "version", "rocm", "expected"),
    [
        (  # a CUDA build from 2.10 on: the backend from the shared variable, past the HIP one
            {"PYTORCH_HIP_ALLOC_CONF": "backend:native", "PYTORCH_ALLOC_CONF": "backend:x"},
            (2, 10),
            False,
            "backend:x",
        ),
        ({"PYTORCH_HIP_ALLOC_CONF": "backend:x"}, (2, 13), False, ""),
        ({"PYTORCH_CUDA_ALLOC_CONF": "", "PYTORCH_ALLOC_CONF": "backend:x"}, (2, 13), False, ""),
        ({"PYTORCH_HIP_ALLOC_CONF": "backend:x"}, (2, 13), True, "backend:x"),  # a ROCm build
        ({"PYTORCH_ALLOC_CONF": "backend:x"}, (2, 9), False, ""),
    ],
)
def test_the_settings_a_build_reads_its_backend_from(
    environ: dict[str, str], version: tuple[int, int], rocm: bool, expected: str
) -> None:
    """torch 2.10's CUDA build reads its general keys CUDA, HIP, then shared variable, but
    its CUDA-only keys (the backend) from the CUDA and shared ones alone."""
    assert installed.backend_conf_from_env(environ, version, rocm=rocm) == expected


ROCM_2_5 = CPU.replace("2.13.0+cpu", "2.5.1+rocm6.2").replace(
    "hip: Optional[str] = None", "hip: Optional[str] = '6.2.41133'"
)


def test_the_identity_read_from_an_installed_rocm_build(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ROCm build before 2.10 reads ``PYTORCH_HIP_ALLOC_CONF`` and names its async
    backend ``hipMallocAsync``; it is a GPU build though it has no CUDA version."""
    from pytest_cgmem.cuda import machine

    _install(fake_site, ROCM_2_5)
    for name in installed.ALLOC_CONF_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTORCH_HIP_ALLOC_CONF", "backend:hipMallocAsync")
    identity = machine.identity_without_torch()
    assert (identity["torch"], identity["cuda"]) == ("2.5.1+rocm6.2", None)
    assert identity["allocator_backend"] == "hipMallocAsync"
    assert identity["alloc_conf"] == "backend:hipMallocAsync"
    assert identity["alloc_conf_source"] == "PYTORCH_HIP_ALLOC_CONF"


@pytest.mark.parametrize("version_file", [CPU, None], ids=["cpu-build", "no-torch"])
def test_the_machine_of_a_process_without_a_gpu_torch_imports_none(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch, version_file: str | None
) -> None:
    """A CPU build is read from its version file; with no torch installed every torch key
    is null. No graph is measured either way."""
    from pytest_cgmem.cuda import machine

    if version_file is not None:
        _install(fake_site, version_file)
    for name in installed.ALLOC_CONF_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    version = "2.13.0+cpu" if version_file is not None else None
    for identity in (machine.machine_info(), machine.identity_without_torch()):
        assert identity["torch"] == version and identity["cuda"] is None
        assert identity["allocator_backend"] == "unknown"
        assert identity.get("graph_tracking") is None and identity.get("graph_pools") is None
    info = machine.machine_info()
    expected = ("expandable_segments:True", "PYTORCH_CUDA_ALLOC_CONF") if version else ("", "")
    assert (info["alloc_conf"], info["alloc_conf_source"]) == expected
    assert "torch" not in sys.modules


def test_the_identity_of_a_cuda_build_takes_its_backend_past_the_hip_variable(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CUDA build's settings come from the HIP variable here (it is set before the shared
    one), but its backend from the shared variable, as torch 2.10 and later read them."""
    from pytest_cgmem.cuda import machine

    _install(fake_site, GPU)
    for name in installed.ALLOC_CONF_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTORCH_HIP_ALLOC_CONF", "backend:native")
    monkeypatch.setenv("PYTORCH_ALLOC_CONF", "backend:cudaMallocAsync")
    identity = machine.identity_without_torch()
    assert identity["alloc_conf_source"] == "PYTORCH_HIP_ALLOC_CONF"
    assert identity["allocator_backend"] == "cudaMallocAsync"
