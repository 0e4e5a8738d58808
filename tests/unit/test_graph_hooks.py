"""The CUDAGraph wrappers go in and come out cleanly: nesting, exceptions, other patches.

These exercise only the patching of ``torch.cuda.CUDAGraph`` (a Python class in every torch
build, CPU ones included); the figures they record are tested on a GPU in tests/gpu.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
graphs = pytest.importorskip("pytest_cgmem.cuda.graphs")

NAMES = ("capture_begin", "capture_end", "replay")


def _methods():
    return {name: torch.cuda.CUDAGraph.__dict__.get(name) for name in NAMES}


@pytest.fixture(autouse=True)
def _clean():
    before = _methods()
    yield
    assert _methods() == before
    assert not graphs.hooks_installed()


def test_installed_inside_and_restored_after():
    before = _methods()
    with graphs.track() as log:
        inside = _methods()
        assert graphs.hooks_installed()
        for name in NAMES:
            assert inside[name] is not before[name]
            assert inside[name].__wrapped__ is before[name]
    assert _methods() == before
    assert log.captures == [] and log.replays == 0 and log.held_at_exit == {}


def test_restored_when_the_body_raises():
    before = _methods()
    with pytest.raises(RuntimeError, match="boom"), graphs.track():
        raise RuntimeError("boom")
    assert _methods() == before


def test_expect_replay_restores_and_keeps_the_body_error():
    before = _methods()
    with pytest.raises(KeyError), graphs.expect_replay():
        raise KeyError("x")
    assert _methods() == before


def test_expect_replay_with_no_replay_says_eager():
    with pytest.raises(graphs.EagerFallback) as info, graphs.expect_replay("batch 500"):
        pass
    assert str(info.value) == (
        "cgmem: no CUDA graph replay happened inside expect_replay() (batch 500): the work "
        "ran eagerly (0 replays); is its size missing from the captured sizes?"
    )


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_expect_replay_bad_count(bad):
    with pytest.raises(graphs.CgmemUsageError), graphs.expect_replay(at_least=bad):
        pass


def test_nested_logs_share_one_patch_and_unwind_in_any_order():
    before = _methods()
    outer = graphs.GraphLog().start()
    inner = graphs.GraphLog().start()
    patched = _methods()
    assert patched != before
    outer.stop()  # out of order: the inner one still listens
    assert _methods() == patched
    inner.stop()
    assert _methods() == before
    inner.stop()  # stopping twice is harmless
    assert _methods() == before


def test_a_log_listens_once():
    log = graphs.GraphLog().start()
    try:
        with pytest.raises(RuntimeError, match="already listening"):
            log.start()
    finally:
        log.stop()


def test_someone_elses_patch_on_top_is_left_alone():
    before = _methods()
    log = graphs.GraphLog().start()
    ours = torch.cuda.CUDAGraph.__dict__["replay"]

    def theirs(self):
        return ours(self)

    torch.cuda.CUDAGraph.replay = theirs
    try:
        log.stop()
        assert torch.cuda.CUDAGraph.__dict__["replay"] is theirs
        for name in ("capture_begin", "capture_end"):
            assert torch.cuda.CUDAGraph.__dict__.get(name) is before[name]
    finally:
        if before["replay"] is None:
            del torch.cuda.CUDAGraph.replay
        else:
            torch.cuda.CUDAGraph.replay = before["replay"]


def test_region_abandon_stops_its_graph_tracking():
    measure = pytest.importorskip("pytest_cgmem.cuda.region")
    region = measure.Region("r")
    region._track_graphs()
    measure._active.append(region)
    assert graphs.hooks_installed()
    measure.abandon_all()
    assert not graphs.hooks_installed()


@pytest.mark.parametrize(
    ("handle", "expected"),
    [((1, 0), (1, 0)), ([0, 3], (0, 3)), (None, None), ((1, 2, 3), None), ("ab", None)],
)
def test_pool_id(handle, expected):
    assert graphs.pool_id(handle) == expected


@pytest.mark.parametrize("bad", [[], [0], [2, -1], [True], [1.0]])
def test_capture_sweep_rejects_bad_sizes_before_touching_the_gpu(bad):
    with pytest.raises(graphs.CgmemUsageError):
        graphs.capture_sweep(lambda x: x, bad, lambda n: n)


def test_capture_sweep_rejects_bad_warmup():
    with pytest.raises(graphs.CgmemUsageError, match="warmup"):
        graphs.capture_sweep(lambda x: x, [1], lambda n: n, warmup=-1)
