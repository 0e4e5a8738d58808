"""Which device a pytest-xdist worker gets (``--cgmem-devices``), decided before CUDA
starts (pure; the device count comes from NVML, ``cuda.nvml.count_devices``)."""

from __future__ import annotations

import re

from .units import short_repr, whole_number

_WORKER = re.compile(r"^gw([0-9]+)$")
_ORDINAL = re.compile(r"[+-]?\d+")
UUID_PREFIXES = ("GPU-", "MIG-")


def visible_entries(value: str) -> list[str]:
    """The devices a ``CUDA_VISIBLE_DEVICES`` value makes visible, read as torch reads it
    (``torch.cuda._parse_visible_devices``, after CUDA's rule).

    A value that starts with ``GPU-`` or ``MIG-`` is a list of UUIDs up to the first entry
    without that prefix; any other is a list of ordinals, each its leading digits
    (``1gpu2`` is ``1``), up to the first entry that has none or is negative (``3,,5`` is
    ``3`` alone). A repeated entry makes no device visible. Ordinals are given as plain
    numbers, UUIDs as written.
    """
    if value.startswith(UUID_PREFIXES):
        prefix = value[:4]
        uuids: list[str] = []
        for entry in value.split(","):
            if entry in uuids:
                return []
            if not entry.startswith(prefix):
                break
            uuids.append(entry)
        return uuids
    ordinals: list[int] = []
    for entry in value.split(","):
        match = _ORDINAL.match(entry.strip())
        number = int(match.group()) if match else -1
        if number in ordinals:
            return []
        if number < 0:
            break
        ordinals.append(number)
    return [str(number) for number in ordinals]


def worker_number(workerid: str | None) -> int | None:
    """``"gw3"`` -> 3; None for anything else (the controller, a plain run)."""
    match = _WORKER.match(workerid or "")
    return int(match.group(1)) if match else None


def device_for_worker(
    workerid: str | None,
    devices: tuple[str, ...] | str,
    visible: str | None,
    count: int,
) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value for worker N: entry N mod k of the device list.

    ``devices`` is ``"all"`` or a tuple of indices/UUIDs. Indices count within the devices
    an inherited ``CUDA_VISIBLE_DEVICES`` (``visible``) makes visible when one is set
    (``visible_entries``), as CUDA would, else within the machine's ``count`` devices (not
    checked where the count is unknown, 0).
    None when this is not a worker or there is no device to choose from.
    """
    number = worker_number(workerid)
    if number is None:
        return None
    inherited = None if visible is None else visible_entries(visible)
    if devices == "all":
        pool = inherited if inherited is not None else [str(i) for i in range(count)]
    else:
        pool = []
        for token in devices:
            index = whole_number(token)
            if index is not None and inherited is not None:
                if index >= len(inherited):
                    raise IndexError(
                        f"device {short_repr(index)} is not among "
                        f"CUDA_VISIBLE_DEVICES={short_repr(visible)}"
                    )
                pool.append(inherited[index])
            elif index is not None and count and index >= count:
                raise IndexError(
                    f"device {short_repr(index)} does not exist: this machine has {count} CUDA "
                    f"device(s), 0 to {count - 1}"
                )
            else:
                pool.append(token)
    if not pool:
        return None
    return pool[number % len(pool)]
