"""The torch door: the only package that imports torch or pynvml (each module lazily,
when a test asks for GPU memory figures). Importing this package itself imports neither."""

from __future__ import annotations

import os
import sys
from types import ModuleType


def _genuine(module: object) -> bool:
    """Whether ``module`` is the installed torch package (its ``__init__.py``, or only the
    ``.pyc`` of a sourceless install), not a stand-in a test put in ``sys.modules`` (a bare
    module, a MagicMock) to fake torch or its absence."""
    file = getattr(module, "__file__", None) if isinstance(module, ModuleType) else None
    if not isinstance(file, str):
        return False
    folder, name = os.path.split(file)
    return os.path.basename(folder) == "torch" and name.startswith("__init__.py")


def cuda_started() -> bool:
    """Whether this process has a CUDA context already (without importing torch).

    Read from torch's own state, as ``torch.cuda.is_initialized()`` reads it, never by
    calling that function: a test may patch or spy on it (``monkeypatch.setattr(torch.cuda,
    "is_initialized", ...)`` in a fake-GPU fixture), and it would then answer for the test,
    and see the plugin's calls. A stand-in for torch never counts, and neither does a build
    without CUDA (nothing of the plugin's binds to either)."""
    torch = sys.modules.get("torch")
    cuda = sys.modules.get("torch.cuda")  # torch's own, where a test patched ``torch.cuda``
    if torch is None or not _genuine(torch) or not isinstance(cuda, ModuleType):
        return False
    in_bad_fork = getattr(sys.modules.get("torch._C"), "_cuda_isInBadFork", None)
    if in_bad_fork is None:  # a build without CUDA
        return False
    try:
        return vars(cuda).get("_initialized") is True and in_bad_fork() is False
    except Exception:
        return False


_measurements_opened = 0


def count_measurement() -> None:
    """A region or a graph log opened: the test running measured in this process."""
    global _measurements_opened
    _measurements_opened += 1


def measurements_opened() -> int:
    """Regions and graph logs opened in this process so far; a test that opened one
    measured here (its failing frames are released, docs/measuring.md)."""
    return _measurements_opened
