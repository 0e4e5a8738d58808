"""Pure CUDA graph checks: capture-size coverage, silent capping, estimate vs truth."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pytest_cgmem
from pytest_cgmem import (
    EagerFallback,
    EstimateMismatch,
    GraphCheckError,
    PoolNotReleased,
    SizesNotCaptured,
    SizesNotCovered,
)
from pytest_cgmem.checks.graph_sizes import (
    assert_all_captured,
    assert_estimate,
    assert_sizes_covered,
    check_all_captured,
    check_estimate,
    check_sizes_covered,
    format_sizes,
    pad_to_captured,
    uncovered_sizes,
)
from pytest_cgmem.units import MAX_FIGURE, CgmemUsageError

MiB = 2**20
# vLLM's default capture sizes: 1, 2, 4, 8..248 step 8, 256..512 step 16
VLLM_SIZES = [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)]


def test_vllm_default_sizes_are_51():
    assert len(VLLM_SIZES) == 51 and max(VLLM_SIZES) == 512


@pytest.mark.parametrize(
    ("captured", "runtime", "expected"),
    [
        ([1, 2, 4, 8], [1, 3, 8], []),
        ([1, 2, 4, 8], [9, 16, 3], [9, 16]),
        ([8, 4, 2, 1], [8, 9, 9, 10], [9, 10]),
        ([], [1, 2], [1, 2]),
        ([5], [], []),
        ([512], range(1, 513), []),
        (VLLM_SIZES, range(1, 521), list(range(513, 521))),
        (range(8, 497, 8), [500], [500]),  # off-stride max_num_batched_tokens=500
        ([*range(8, 497, 8), 500], range(1, 501), []),
    ],
)
def test_uncovered_sizes(captured, runtime, expected):
    assert uncovered_sizes(captured, runtime) == expected


@pytest.mark.parametrize(
    ("captured", "size", "expected"),
    [([1, 2, 4, 8], 3, 4), ([1, 2, 4, 8], 8, 8), ([1, 2, 4, 8], 9, None), ([16, 8], 1, 8)],
)
def test_pad_to_captured(captured, size, expected):
    assert pad_to_captured(captured, size) == expected


@given(
    captured=st.lists(st.integers(1, 4096), max_size=40),
    runtime=st.lists(st.integers(1, 8192), max_size=80),
)
def test_uncovered_means_pads_to_nothing(captured, runtime):
    missing = uncovered_sizes(captured, runtime)
    assert missing == sorted(set(missing))
    for size in runtime:
        assert (pad_to_captured(captured, size) is None) == (size in missing)
    if missing:
        with pytest.raises(SizesNotCovered) as info:
            assert_sizes_covered(captured, runtime)
        assert list(info.value.sizes) == missing
        assert str(min(missing)) in str(info.value)
    else:
        assert_sizes_covered(captured, runtime)


@given(
    requested=st.sets(st.integers(1, 2048), max_size=60),
    captured=st.sets(st.integers(1, 2048), max_size=60),
)
def test_all_captured_lists_exactly_the_dropped(requested, captured):
    violation = check_all_captured(requested, captured)
    dropped = sorted(requested - captured)
    if not dropped:
        assert violation is None
        assert_all_captured(requested, captured)
        return
    assert violation is not None and list(violation.sizes) == dropped
    with pytest.raises(SizesNotCaptured) as info:
        assert_all_captured(requested, captured)
    assert info.value.sizes == tuple(dropped)


def test_uncovered_message():
    with pytest.raises(SizesNotCovered) as info:
        assert_sizes_covered(range(8, 497, 8), [1, 100, 500, 497, 498])
    assert str(info.value) == (
        "cgmem: 3 runtime sizes pad to no captured CUDA graph size and will run eagerly: "
        "497, 498, 500 (largest captured size is 496; capture 500 or cap the runtime size at 496)"
    )
    assert isinstance(info.value, AssertionError)


def test_uncovered_message_one_size_and_none_captured():
    one = check_sizes_covered([4], [5])
    assert one is not None
    assert one.message.startswith("cgmem: 1 runtime size pads to no captured CUDA graph size")
    nothing = check_sizes_covered([], [3])
    assert nothing is not None and "no size was captured at all" in nothing.message


def test_capping_message():
    requested = [*VLLM_SIZES, 768, 1024]
    with pytest.raises(SizesNotCaptured) as info:
        assert_all_captured(requested, VLLM_SIZES)
    assert str(info.value) == (
        "cgmem: 2 requested CUDA graph capture sizes were never captured: 768, 1024 "
        "(captured 51 of 53 requested; every missing size is above 512: "
        "the sizes look silently capped)"
    )


def test_not_captured_in_the_middle_is_not_called_capping():
    violation = check_all_captured([1, 2, 4, 8], [1, 8])
    assert violation is not None
    assert "2 requested CUDA graph capture sizes were never captured: 2, 4" in violation.message
    assert "capped" not in violation.message


@pytest.mark.parametrize(
    ("sizes", "text"),
    [
        ([], ""),
        ([5], "5"),
        ([1, 2], "1, 2"),
        ([3, 1, 2], "1..3"),
        ([1, 2, 3, 7, 9, 10, 11, 12], "1..3, 7, 9..12"),
        (list(range(513, 1025)), "513..1024"),
        (list(range(1, 40, 2)), ", ".join(map(str, range(1, 40, 2)))),
        (list(range(1, 42, 2)), ", ".join(map(str, range(1, 40, 2))) + ", ... (1 more size)"),
        (list(range(1, 100, 2)), ", ".join(map(str, range(1, 40, 2))) + ", ... (30 more sizes)"),
        ([*range(1, 60, 2), 100, 101, 102], None),
    ],
)
def test_format_sizes(sizes, text):
    formatted = format_sizes(sizes)
    if text is not None:
        assert formatted == text
    else:
        assert formatted.endswith("... (13 more sizes)")  # 10 odd sizes + 100..102


@pytest.mark.parametrize(
    "bad",
    [[0], [-1], [1.5], [True], ["8"], [None], "128"],
)
def test_bad_sizes_are_usage_errors(bad):
    with pytest.raises(CgmemUsageError):
        uncovered_sizes(bad, [1])
    with pytest.raises(CgmemUsageError):
        assert_all_captured(bad, [1])


class _FloatIndex:
    """An object with an ``__index__`` that raises, as a float tensor's does."""

    def __index__(self) -> int:
        raise TypeError("only integer tensors of a single element can be converted to an index")

    def __repr__(self) -> str:
        return "tensor(1.5000)"


@pytest.mark.parametrize("check", [uncovered_sizes, assert_sizes_covered, assert_all_captured])
def test_a_size_whose_index_raises_is_a_usage_error_naming_it(check):
    with pytest.raises(CgmemUsageError) as info:
        check([8, _FloatIndex()], [1])
    assert str(info.value).endswith(": sizes are whole numbers, got tensor(1.5000)")
    with pytest.raises(CgmemUsageError, match="got tensor"):
        check([1], [_FloatIndex()])


def test_float_tensor_sizes_are_usage_errors():
    torch = pytest.importorskip("torch")
    with pytest.raises(CgmemUsageError) as info:
        assert_sizes_covered(torch.tensor([1.5]), [1])
    assert str(info.value) == "captured: sizes are whole numbers, got tensor(1.5000)"
    with pytest.raises(CgmemUsageError, match=r"runtime: sizes are whole numbers, got tensor\(\["):
        assert_sizes_covered([1], [torch.tensor([1, 2])])
    assert uncovered_sizes(torch.tensor([8, 4]), [torch.tensor(9)]) == [9]


def test_bool_tensor_sizes_are_usage_errors_not_a_size_of_one():
    """A bool tensor's ``__index__`` gives 1: a flag is no batch size."""
    torch = pytest.importorskip("torch")
    with pytest.raises(CgmemUsageError) as info:
        assert_sizes_covered([torch.tensor(True)], [1])
    assert str(info.value) == "captured: sizes are whole numbers, got tensor(True)"
    with pytest.raises(CgmemUsageError, match="runtime: sizes are whole numbers"):
        uncovered_sizes([1], torch.tensor([True, True]))


def test_numpy_bool_sizes_are_usage_errors():
    numpy = pytest.importorskip("numpy")
    with pytest.raises(CgmemUsageError, match="sizes are whole numbers"):
        uncovered_sizes([numpy.True_], [1])
    assert uncovered_sizes(numpy.array([8, 4]), [numpy.int64(9)]) == [9]


def test_integer_like_sizes_are_accepted():
    class Index:
        def __init__(self, value: int) -> None:
            self.value = value

        def __index__(self) -> int:
            return self.value

    assert uncovered_sizes([Index(8)], [Index(9), 8]) == [9]


# --- estimate vs truth ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("estimate", "measured", "tolerance", "ok"),
    [
        (300 * MiB, 300 * MiB, {}, True),
        (300 * MiB + 1, 300 * MiB, {}, False),
        (290 * MiB, 300 * MiB, {"rel": 0.05}, True),
        (280 * MiB, 300 * MiB, {"rel": 0.05}, False),
        (280 * MiB, 300 * MiB, {"rel": "7%"}, True),
        (320 * MiB, 300 * MiB, {"rel": "5%"}, False),
        (280 * MiB, 300 * MiB, {"abs": "20 MiB"}, True),
        (279 * MiB, 300 * MiB, {"abs": 20 * MiB}, False),
        (279 * MiB, 300 * MiB, {"rel": 0.01, "abs": "21 MiB"}, True),  # the larger wins
        (279 * MiB, 300 * MiB, {"rel": 0.1, "abs": "1 MiB"}, True),
        ("300 MiB", 300 * MiB, {}, True),
        (300.0 * MiB, "300 MiB", {}, True),
        (0, 0, {}, True),
        (MiB, 0, {"rel": 0.5}, False),
    ],
)
def test_estimate(estimate, measured, tolerance, ok):
    violation = check_estimate(estimate, measured, **tolerance)
    assert (violation is None) == ok
    if ok:
        assert_estimate(estimate, measured, **tolerance)
    else:
        with pytest.raises(EstimateMismatch):
            assert_estimate(estimate, measured, **tolerance)


def test_estimate_message_prints_both_numbers_and_the_error():
    with pytest.raises(EstimateMismatch) as info:
        assert_estimate(100 * MiB, 300 * MiB, rel="5%")
    assert str(info.value) == (
        "cgmem: graph memory estimate 100.00 MiB misses the measured 300.00 MiB by "
        "-200.00 MiB (-66.7%, under-estimate); allowed rel=5% = 15.00 MiB "
        "[estimate 104857600 B, measured 314572800 B]"
    )
    assert info.value.violation.error == -200 * MiB


def test_estimate_message_over_and_both_limits():
    violation = check_estimate(
        330 * MiB, 300 * MiB, rel=0.05, abs="16 MiB", what="cudagraph memory"
    )
    assert violation is not None
    assert violation.message.startswith(
        "cgmem: cudagraph memory estimate 330.00 MiB misses the measured 300.00 MiB by "
        "+30.00 MiB (+10.0%, over-estimate); allowed rel=5% or abs=16.00 MiB = 16.00 MiB"
    )


@pytest.mark.parametrize(
    ("estimate", "measured", "tolerance", "said"),
    [
        (11, 10, {}, "by +1 B (+10.0%, over-estimate); allowed an exact match = 0 B"),
        (9, 10, {}, "by -1 B (-10.0%, under-estimate); allowed an exact match = 0 B"),
        (1, 0, {}, "by +1 B (n/a, over-estimate); allowed an exact match = 0 B"),
        (
            40 * MiB,
            10 * MiB,
            {"abs": "16 MiB"},
            "by +30.00 MiB (+300.0%, over-estimate); allowed abs=16.00 MiB = 16.00 MiB",
        ),
    ],
)
def test_estimate_message_names_the_sign_and_only_the_limits_given(
    estimate, measured, tolerance, said
):
    violation = check_estimate(estimate, measured, **tolerance)
    assert violation is not None
    assert f" {said} [estimate {estimate} B, measured {measured} B]" in violation.message


@pytest.mark.parametrize(("estimate", "measured"), [(0.0, 0), (0.6, 1), (0.4, 0)])
def test_estimate_takes_a_float_below_one_byte(estimate, measured):
    """Bytes >= 0, a float rounded: 0.0 and a fraction of a byte are estimates too."""
    assert check_estimate(estimate, measured) is None
    assert check_estimate(measured, estimate) is None


@given(
    measured=st.integers(0, 2**40),
    error=st.integers(-(2**30), 2**30),
    rel=st.floats(0, 1),
    slack=st.integers(0, 2**30),
)
def test_estimate_property(measured, error, rel, slack):
    estimate = max(measured + error, 0)
    violation = check_estimate(estimate, measured, rel=rel, abs=slack)
    allowed = max(rel * measured, slack)
    assert (violation is None) == (abs(estimate - measured) <= allowed)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rel": "five"}, "rel='five'"),
        ({"rel": -0.1}, "rel=-0.1"),
        ({"abs": "lots"}, "abs='lots'"),
        ({"abs": -5}, "abs=-5"),
    ],
)
def test_estimate_bad_tolerance(kwargs, needle):
    with pytest.raises(CgmemUsageError, match=needle.replace("(", r"\(")):
        check_estimate(1, 1, **kwargs)


_NOT_DESCRIPTIONS = [
    ("a\nb", "'a\\nb'"),
    ("\t", "'\\t'"),
    (b"kv", "b'kv'"),
    (5, "5"),
    (None, "None"),
    (10**5000, "an integer of about 5000 digits"),
]


_IDS = ["newline", "tab", "bytes", "int", "none", "huge-int"]


@pytest.mark.parametrize(("what", "shown"), [*_NOT_DESCRIPTIONS, ("", "''")], ids=[*_IDS, "empty"])
def test_estimate_what_must_be_a_printable_string(what, shown):
    """``what`` heads the failure's one line: a newline split it, bytes or a number were
    written as they are, and an int of over 4300 digits raised from the f-string."""
    for call in (check_estimate, assert_estimate, pytest_cgmem.CgmemFixture.assert_estimate):
        with pytest.raises(CgmemUsageError) as info:
            call(10, 20, what=what)
        message = str(info.value)
        assert message == (
            "assert_estimate: what must be a non-empty printable string (no newline or tab), "
            f"got {shown}"
        )


@given(st.text(min_size=1).filter(str.isprintable))
def test_estimate_takes_every_printable_what(what):
    with pytest.raises(EstimateMismatch) as info:
        assert_estimate(10, 20, what=what)
    assert str(info.value).startswith(f"cgmem: {what} estimate 10 B misses")


@pytest.mark.parametrize(
    ("what", "shown"),
    [w for w in _NOT_DESCRIPTIONS if w[0] is not None],
    ids=[i for i in _IDS if i != "none"],
)
def test_expect_replay_what_must_be_a_printable_string(what, shown):
    from pytest_cgmem.cuda import graphs

    with pytest.raises(CgmemUsageError) as info, graphs.expect_replay(what):
        pass
    assert str(info.value) == (
        f"expect_replay: what must be a printable string (no newline or tab), got {shown}"
    )


@pytest.mark.parametrize("bad", [-1, -1.0, float("nan"), "x MiB", None])
def test_estimate_bad_numbers(bad):
    with pytest.raises(CgmemUsageError):
        check_estimate(bad, 1)
    with pytest.raises(CgmemUsageError):
        check_estimate(1, bad)


@pytest.mark.parametrize("huge", [2**70, 2.0**70, 1e300, 2.0**63, float(2**63)])
@pytest.mark.parametrize("side", ["estimate", "measured"])
def test_estimate_too_large_alike_as_int_or_float(huge, side):
    """A float beyond MAX_FIGURE is refused as the int is, not compared as bytes."""
    args = (huge, 1) if side == "estimate" else (1, huge)
    with pytest.raises(
        CgmemUsageError, match=f"^{side}: too large: the most is 9223372036854775807"
    ):
        assert_estimate(*args)


def test_estimate_takes_floats_up_to_the_largest_figure():
    assert check_estimate(2.0**62, 2**62) is None
    assert check_estimate(float(2**63 - 1024), 2**63 - 1024) is None


@pytest.mark.parametrize(
    "cls", [SizesNotCovered, SizesNotCaptured, EstimateMismatch, EagerFallback, PoolNotReleased]
)
def test_failures_are_assertion_errors_exported_from_the_package(cls):
    assert issubclass(cls, GraphCheckError) and issubclass(cls, AssertionError)
    assert getattr(pytest_cgmem, cls.__name__) is cls


def test_package_exports_the_checks():
    assert pytest_cgmem.uncovered_sizes is uncovered_sizes
    assert pytest_cgmem.assert_sizes_covered is assert_sizes_covered
    assert pytest_cgmem.assert_all_captured is assert_all_captured
    assert pytest_cgmem.assert_estimate is assert_estimate


@pytest.mark.parametrize(
    ("values", "shown"), [("8", "'8'"), (b"8", "b'8'"), (8, "8"), (None, "None")]
)
def test_sizes_that_are_not_a_collection_are_refused(values, shown):
    calls = [
        (lambda: check_sizes_covered(values, [1]), "captured"),
        (lambda: check_sizes_covered([1], values), "runtime"),
        (lambda: check_all_captured(values, [1]), "requested"),
    ]
    for call, what in calls:
        with pytest.raises(CgmemUsageError) as info:
            call()
        assert str(info.value) == f"{what}: expected a collection of sizes, got {shown}"


def test_the_largest_size_a_figure_may_hold_is_a_size():
    assert check_all_captured([MAX_FIGURE], [MAX_FIGURE]) is None
    assert uncovered_sizes([MAX_FIGURE], [1, MAX_FIGURE]) == []
