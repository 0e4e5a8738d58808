"""GPU names in CUDA's visible order (``Nvml.visible_names``), from a stand-in NVML: the
order and the devices come from ``CUDA_VISIBLE_DEVICES`` as CUDA reads it."""

from __future__ import annotations

import types

import pytest

from pytest_cgmem.cuda.nvml import Nvml

NAMES = ["A100", "H100", "H200", "L4"]


def stand_in_nvml() -> Nvml:
    def handle_by_uuid(uuid: str) -> int:
        if not uuid.startswith("GPU-") or not uuid[4:].isdigit():
            raise LookupError(uuid)
        return int(uuid[4:])

    meter = Nvml.__new__(Nvml)
    meter.ok = True
    meter._nvml = types.SimpleNamespace(
        nvmlDeviceGetCount=lambda: len(NAMES),
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetHandleByUUID=handle_by_uuid,
        nvmlDeviceGetName=lambda handle: NAMES[handle],
    )
    return meter


@pytest.mark.parametrize(
    ("visible", "names"),
    [
        (None, NAMES),
        ("2,0", ["H200", "A100"]),
        (" 3 , 1 ", ["L4", "H100"]),
        ("2,,0", ["H200"]),
        ("1,9,0", ["H100"]),
        ("1,1", []),
        ("", []),
        ("GPU-3,GPU-1", ["L4", "H100"]),
    ],
)
def test_names_in_cudas_visible_order(
    monkeypatch: pytest.MonkeyPatch, visible: str | None, names: list[str]
) -> None:
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert stand_in_nvml().visible_names() == names
