"""What the NVML wrapper makes of NVML's answers, from a stand-in NVML: GPU names in CUDA's
visible order (``Nvml.visible_names``: the order and the devices come from
``CUDA_VISIBLE_DEVICES`` as CUDA reads it), the driver's version, the device count the xdist
pinning reads, and nothing at all where NVML cannot start. What a real driver answers is
the GPU tier's (tests/gpu)."""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import pytest

from pytest_cgmem.cuda import nvml
from pytest_cgmem.cuda.nvml import Nvml, count_devices

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
        nvmlSystemGetDriverVersion=lambda: "580.95.05",
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
        ("1,4,0", ["H100"]),  # 4 is one past the last device
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


def test_the_driver_version_is_nvml_s() -> None:
    assert stand_in_nvml().driver_version() == "580.95.05"


def test_an_nvml_that_cannot_start_says_nothing() -> None:
    meter = Nvml.__new__(Nvml)
    meter.ok = False
    meter._nvml = None
    meter._handles = {}
    assert meter.visible_names() == []
    assert meter.driver_version() is None
    assert meter.handle(0, "uuid") is None
    assert meter.processes(0) is None and meter.device_free(0) is None
    assert meter.looked_up(0) and not meter.has_handle(0)


class StandInModule:
    """``pynvml`` as ``count_devices`` uses it: a count only between init and shutdown."""

    def __init__(self, count: int, *, fails: str | None = None) -> None:
        self.count = count
        self.fails = fails
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fails:
            raise RuntimeError(f"{name} failed")

    def nvmlInit(self) -> None:
        self._call("init")

    def nvmlDeviceGetCount(self) -> int:
        self._call("count")
        if "init" not in self.calls:
            raise RuntimeError("uninitialized")
        return self.count

    def nvmlShutdown(self) -> None:
        self._call("shutdown")


@pytest.mark.parametrize(
    ("fails", "count", "calls"),
    [
        (None, 3, ["init", "count", "shutdown"]),
        ("init", 0, ["init"]),
        ("count", 0, ["init", "count", "shutdown"]),
    ],
)
def test_count_devices_opens_and_closes_nvml_and_is_0_where_it_cannot_say(
    monkeypatch: pytest.MonkeyPatch, fails: str | None, count: int, calls: list[str]
) -> None:
    module: Any = StandInModule(3, fails=fails)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert count_devices() == count
    assert module.calls == calls


class Process:
    def __init__(self, pid: int, used: int | None) -> None:
        self.pid = pid
        self.usedGpuMemory = used


def listing_nvml(listed: list[Any], free: int = 5 * 2**30) -> tuple[Nvml, list[str]]:
    """A wrapper over a stand-in NVML whose device 0 (UUID ``0-a``) lists ``listed``: each
    entry a ``Process`` or an exception to raise; the calls it got are returned beside it."""
    calls: list[str] = []

    def by_uuid(uuid: str) -> str:
        calls.append(f"uuid {uuid}")
        if uuid != "GPU-0-a":
            raise LookupError(uuid)
        return "h0"

    def running(handle: str) -> list[Process]:
        calls.append(f"list {handle}")
        if listed and isinstance(listed[0], Exception):
            raise listed.pop(0)
        return list(listed)

    def memory(handle: str) -> Any:
        calls.append(f"memory {handle}")
        if free < 0:
            raise RuntimeError("not supported")
        return types.SimpleNamespace(free=free, total=8 * 2**30)

    meter = Nvml.__new__(Nvml)
    meter.ok = True
    meter.pid = 100
    meter._handles = {}
    meter._others = {}
    meter._nvml = types.SimpleNamespace(
        nvmlDeviceGetHandleByUUID=by_uuid,
        nvmlDeviceGetComputeRunningProcesses=running,
        nvmlDeviceGetMemoryInfo=memory,
    )
    return meter, calls


def test_a_device_s_handle_is_looked_up_once_by_its_uuid() -> None:
    meter, calls = listing_nvml([])
    assert not meter.looked_up(0) and meter.processes(0) is None and meter.device_free(0) is None
    assert meter.handle(0, "0-a") == meter.handle(0, "0-a") == "h0"
    assert meter.handle(1, "1-b") is None and meter.handle(1, "1-b") is None
    assert calls == ["uuid GPU-0-a", "uuid GPU-1-b"]
    assert meter.looked_up(0) and meter.looked_up(1) and not meter.looked_up(2)
    assert meter.has_handle(0) and not meter.has_handle(1)


def test_the_process_list_is_bytes_by_pid_and_a_failed_read_is_unknown() -> None:
    meter, _ = listing_nvml([RuntimeError("busy"), Process(100, 2**20), Process(7, None)])
    meter.handle(0, "0-a")
    assert meter.processes(0) is None
    listed = meter.processes(0)
    assert listed == {100: 2**20, 7: 0}
    assert meter.own(listed) == 2**20 and meter.others(listed) == 0
    assert meter.own(None) is None and meter.others(None) == 0
    assert meter.others({100: 1, 7: 3, 8: 4}) == 7


@pytest.mark.parametrize(
    ("listed", "present"),
    [
        ([Process(100, 2**20)], False),  # this process alone
        ([Process(100, 2**20), Process(7, 0)], False),  # another, holding nothing
        ([Process(100, 2**20), Process(7, 2**20)], True),
        ([Process(7, None), Process(8, 2**21)], True),
    ],
)
def test_others_are_present_where_another_process_holds_memory(
    listed: list[Any], present: bool
) -> None:
    meter, _ = listing_nvml(listed)
    meter.handle(0, "0-a")
    assert meter.others_present(0) is present


def test_others_present_reads_nvml_again_only_once_its_answer_is_old() -> None:
    meter, calls = listing_nvml([Process(7, 2**20)])
    assert meter.others_present(0) is False  # no handle yet: NVML cannot say
    meter.handle(0, "0-a")
    assert meter.others_present(0) is True
    assert meter.others_present(0, max_age=60.0) is True
    assert calls.count("list h0") == 1
    assert meter.others_present(0, max_age=-1.0) is True
    assert calls.count("list h0") == 2


def test_the_device_s_free_bytes_are_nvml_s_or_unknown() -> None:
    meter, _ = listing_nvml([])
    meter.handle(0, "0-a")
    assert meter.device_free(0) == 5 * 2**30
    broken, _ = listing_nvml([], free=-1)
    broken.handle(0, "0-a")
    assert broken.device_free(0) is None


def test_names_are_none_where_nvml_fails_to_list_them() -> None:
    meter = stand_in_nvml()
    meter._nvml.nvmlDeviceGetCount = lambda: 1 // 0
    assert meter.visible_names() == []


@pytest.mark.parametrize(("fails", "ok"), [(None, True), ("init", False)])
def test_the_wrapper_starts_nvml_once_and_is_not_ok_where_it_cannot(
    monkeypatch: pytest.MonkeyPatch, fails: str | None, ok: bool
) -> None:
    module: Any = StandInModule(1, fails=fails)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setattr(nvml, "_state", None)
    meter = nvml.nvml()
    assert nvml.nvml() is meter
    assert module.calls == ["init"]
    assert meter.ok is ok and meter.pid == os.getpid()
    assert (meter._nvml is module) is ok and meter.looked_up(0) is not ok
