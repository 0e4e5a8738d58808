"""Which device a pytest-xdist worker is pinned to (--cgmem-devices)."""

from __future__ import annotations

import pytest

from pytest_cgmem.pinning import device_for_worker, visible_entries, worker_number
from pytest_cgmem.settings import parse_devices
from pytest_cgmem.units import CgmemUsageError


@pytest.mark.parametrize(
    ("workerid", "number"), [("gw0", 0), ("gw13", 13), ("master", None), (None, None), ("gw", None)]
)
def test_worker_number(workerid: str | None, number: int | None) -> None:
    assert worker_number(workerid) == number


@pytest.mark.parametrize(
    ("workerid", "devices", "visible", "count", "chosen"),
    [
        ("gw0", ("0", "1"), None, 0, "0"),
        ("gw1", ("0", "1"), None, 0, "1"),
        ("gw2", ("0", "1"), None, 0, "0"),
        ("gw3", ("2", "5", "7"), None, 0, "2"),
        ("gw1", "all", None, 4, "1"),
        ("gw5", "all", None, 4, "1"),
        ("gw1", "all", "3,5", 8, "5"),  # inherited list wins over the machine's count
        ("gw0", ("1",), "3,5", 8, "5"),  # indices count within the inherited list
        ("gw1", ("GPU-aaa", "GPU-bbb"), None, 0, "GPU-bbb"),
        ("gw0", "all", None, 0, None),  # nothing to choose from
        (None, ("0", "1"), None, 0, None),  # not a worker
    ],
)
def test_device_for_worker(
    workerid: str | None,
    devices: tuple[str, ...] | str,
    visible: str | None,
    count: int,
    chosen: str | None,
) -> None:
    assert device_for_worker(workerid, devices, visible, count) == chosen


def test_device_that_does_not_exist() -> None:
    with pytest.raises(IndexError, match=r"device 99 does not exist: this machine has 2 CUDA"):
        device_for_worker("gw0", ("99", "98"), None, 2)


@pytest.mark.parametrize("visible", [None, "0,1"])
def test_a_zero_padded_device_number_is_said_as_its_number(visible: str | None) -> None:
    with pytest.raises(IndexError, match=r"^device 9 (does not exist|is not among)") as caught:
        device_for_worker("gw0", ("0" * 5000 + "9",), visible, 2)
    assert len(str(caught.value)) < 120


def test_an_empty_cuda_visible_devices_hides_every_device() -> None:
    """CUDA takes an empty CUDA_VISIBLE_DEVICES as no device at all, not as unset."""
    with pytest.raises(IndexError, match="device 3 is not among CUDA_VISIBLE_DEVICES=''"):
        device_for_worker("gw0", ("3",), "", 8)
    assert device_for_worker("gw0", "all", "", 8) is None


def test_index_outside_inherited_list() -> None:
    with pytest.raises(IndexError, match="device 2 is not among CUDA_VISIBLE_DEVICES='3,5'"):
        device_for_worker("gw0", ("2",), "3,5", 8)


@pytest.mark.parametrize("workerid", ["gw1x", "gw1-2", "xgw1", "gw 1", "GW1"])
def test_a_worker_id_is_gw_and_digits_only(workerid: str) -> None:
    assert worker_number(workerid) is None


@pytest.mark.parametrize(
    ("workerid", "devices", "chosen"),
    [
        ("gw0", ("GPU-aaa", "MIG-bbb"), "GPU-aaa"),
        ("gw1", ("GPU-aaa", "MIG-bbb"), "MIG-bbb"),
        ("gw0", ("1", "GPU-aaa"), "5"),
        ("gw1", ("1", "GPU-aaa"), "GPU-aaa"),
    ],
)
def test_a_uuid_is_passed_as_given_within_an_inherited_list(
    workerid: str, devices: tuple[str, ...], chosen: str
) -> None:
    assert device_for_worker(workerid, devices, "3,5", 0) == chosen


@pytest.mark.parametrize(("workerid", "chosen"), [("gw0", "GPU-aaa"), ("gw1", "1")])
def test_a_uuid_is_not_checked_against_the_machines_count(workerid: str, chosen: str) -> None:
    assert device_for_worker(workerid, ("GPU-aaa", "1"), None, 2) == chosen


@pytest.mark.parametrize(
    ("devices", "count", "message"),
    [
        (("2",), 2, "device 2 does not exist: this machine has 2 CUDA device(s), 0 to 1"),
        (("0", "1"), 1, "device 1 does not exist: this machine has 1 CUDA device(s), 0 to 0"),
    ],
)
def test_the_index_equal_to_the_count_does_not_exist(
    devices: tuple[str, ...], count: int, message: str
) -> None:
    with pytest.raises(IndexError) as caught:
        device_for_worker("gw0", devices, None, count)
    assert str(caught.value) == message


def test_the_last_device_of_the_machine_is_chosen() -> None:
    assert device_for_worker("gw1", ("0", "1"), None, 2) == "1"


@pytest.mark.parametrize(("devices", "chosen"), [("all", "5"), (("1",), "5")])
def test_spaces_around_inherited_devices_are_not_part_of_them(
    devices: tuple[str, ...] | str, chosen: str
) -> None:
    assert device_for_worker("gw1", devices, " 3 , 5 ", 0) == chosen


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("all", "all"),
        (" ALL ", "all"),
        ("0,1", ("0", "1")),
        ("3", ("3",)),
        ("0, GPU-ab", ("0", "GPU-ab")),
        ("MIG-ab,1", ("MIG-ab", "1")),
    ],
)
def test_parse_devices(text: str, parsed: object) -> None:
    assert parse_devices(text) == parsed


@pytest.mark.parametrize("text", ["", "0,", "cuda:0", "one", "0;1", "-1", "GPU-", "MIG-"])
def test_parse_devices_rejects(text: str) -> None:
    with pytest.raises(CgmemUsageError, match="expected 'all' or device indices"):
        parse_devices(text)


def test_parse_devices_refuses_an_index_past_int64() -> None:
    with pytest.raises(CgmemUsageError, match="too large: the most is"):
        parse_devices("0," + "9" * 30)


@pytest.mark.parametrize(
    ("value", "entries"),
    [
        ("3,5", ["3", "5"]),
        (" 3 , 5 ", ["3", "5"]),
        ("3,,5", ["3"]),
        ("3,x,5", ["3"]),
        ("0,-1,2", ["0"]),
        ("-1", []),
        ("", []),
        ("0,0", []),
        ("1,2,1", []),
        ("1gpu2,2ampere", ["1", "2"]),
        ("+3,007", ["3", "7"]),
        ("GPU-aaa,GPU-bbb", ["GPU-aaa", "GPU-bbb"]),
        ("MIG-aaa", ["MIG-aaa"]),
        ("GPU-aaa,0,GPU-bbb", ["GPU-aaa"]),
        ("GPU-aaa,MIG-bbb", ["GPU-aaa"]),
        ("GPU-aaa,GPU-aaa", []),
        ("0,GPU-aaa", ["0"]),
    ],
)
def test_visible_entries_read_as_cuda_reads_them(value: str, entries: list[str]) -> None:
    assert visible_entries(value) == entries


@pytest.mark.parametrize(("workerid", "chosen"), [("gw0", "3"), ("gw1", "3")])
def test_every_worker_gets_the_one_device_before_an_invalid_inherited_entry(
    workerid: str, chosen: str
) -> None:
    assert device_for_worker(workerid, "all", "3,,5", 8) == chosen


def test_an_index_past_the_inherited_devices_cuda_sees_is_refused() -> None:
    with pytest.raises(IndexError) as caught:
        device_for_worker("gw0", ("1",), "3,,5", 8)
    assert str(caught.value) == "device 1 is not among CUDA_VISIBLE_DEVICES='3,,5'"


def test_a_repeated_inherited_entry_leaves_nothing_to_pin_to() -> None:
    assert device_for_worker("gw0", "all", "0,0", 8) is None
