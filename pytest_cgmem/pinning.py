"""Which device a pytest-xdist worker gets (``--cgmem-devices``), decided before CUDA
starts (pure; the device count comes from NVML, ``cuda.nvml.count_devices``)."""

from __future__ import annotations

import re

from .units import short_repr, whole_number

_WORKER = re.compile(r"^gw([0-9]+)$")


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

    ``devices`` is ``"all"`` or a tuple of indices/UUIDs. Indices count within an
    inherited ``CUDA_VISIBLE_DEVICES`` (``visible``) when one is set, as CUDA would, else
    within the machine's ``count`` devices (not checked where the count is unknown, 0).
    None when this is not a worker or there is no device to choose from.
    """
    number = worker_number(workerid)
    if number is None:
        return None
    inherited = None if visible is None else [t.strip() for t in visible.split(",") if t.strip()]
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
