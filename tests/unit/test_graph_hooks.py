"""Graph tracking goes in and comes out cleanly: nesting, exceptions, other patches.

These exercise only the installation (torch's global graph hooks on 2.14+, wrappers on
``torch.cuda.CUDAGraph`` before, and on ``torch.accelerator.Graph`` where it exists: Python
classes in every torch build, CPU ones included); the figures they record are tested on a
GPU in tests/gpu, and tests/unit/test_torch_contract.py holds the choice per torch.
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
graphs = pytest.importorskip("pytest_cgmem.cuda.graphs")

NAMES = ("capture_begin", "capture_end", "replay")
HOOKS = ("capture_start", "capture_end", "instantiate", "replay_start", "replay_end")


def _wrapped_class():
    """The class whose methods this torch's mechanism wraps (None: hooks only)."""
    chosen = graphs.mechanism()
    if chosen.wrapped:
        return torch.cuda.CUDAGraph
    if chosen.accelerator:
        return torch.accelerator.Graph
    return None


def _class_or_skip():
    cls = _wrapped_class()
    if cls is None:
        pytest.skip("this torch's mechanism wraps no class")
    return cls


def _put_back_replay(cls, before):
    if before["replay"] is None:
        del cls.replay
    else:
        cls.replay = before["replay"]


def _patch_over_ours(cls):
    """A listening log, its replay wrapper, and a patch someone put over that wrapper."""
    log = graphs.GraphLog().start()
    ours = cls.__dict__["replay"]

    def theirs(self):
        return ours(self)

    cls.replay = theirs
    return log, ours, theirs


def _methods(cls=None):
    cls = cls or torch.cuda.CUDAGraph
    return {name: cls.__dict__.get(name) for name in NAMES}


def _installed():
    """Everything the tracking may change: both classes' methods, the hook registries."""
    state = {"cuda": _methods()}
    if graphs.mechanism().accelerator:
        state["accelerator"] = _methods(torch.accelerator.Graph)
    for name in HOOKS:
        registry = getattr(torch.cuda.graphs, f"_global_{name}_hooks", None)
        if registry is not None:
            state[name] = dict(registry)
    return state


@pytest.fixture(autouse=True)
def _clean():
    before = _installed()
    yield
    assert _installed() == before
    assert not graphs.hooks_installed()


def test_installed_inside_and_restored_after():
    before = _installed()
    cls = _wrapped_class()
    key = "cuda" if cls is torch.cuda.CUDAGraph else "accelerator"
    with graphs.track() as log:
        inside = _installed()
        assert graphs.hooks_installed()
        if cls is not None:
            for name in NAMES:
                assert inside[key][name] is not before[key][name]
                assert inside[key][name].__wrapped__ is before[key][name]
        if graphs.mechanism().hooks:
            assert inside["cuda"] == before["cuda"]  # hooks leave CUDAGraph alone
            for name in HOOKS:
                assert len(inside[name]) == len(before[name]) + 1
    assert _installed() == before
    assert log.captures == [] and log.replays == 0 and log.held_at_exit == {}


def test_restored_when_the_body_raises():
    before = _installed()
    with pytest.raises(RuntimeError, match="boom"), graphs.track():
        raise RuntimeError("boom")
    assert _installed() == before


def test_expect_replay_restores_and_keeps_the_body_error():
    before = _installed()
    with pytest.raises(KeyError), graphs.expect_replay():
        raise KeyError("x")
    assert _installed() == before


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
    before = _installed()
    outer = graphs.GraphLog().start()
    inner = graphs.GraphLog().start()
    patched = _installed()
    assert patched != before
    outer.stop()  # out of order: the inner one still listens
    assert _installed() == patched
    inner.stop()
    assert _installed() == before
    inner.stop()  # stopping twice is harmless
    assert _installed() == before


def test_a_lingering_installation_is_taken_up_then_released(monkeypatch):
    install = graphs._hooks._install
    installs = []

    def counted():
        installs.append(1)
        install()

    monkeypatch.setattr(graphs._hooks, "_install", counted)
    before = _installed()
    first = graphs.GraphLog().start()
    patched = _installed()
    first.stop(linger=True)
    assert _installed() == patched
    assert graphs.hooks_installed()
    second = graphs.GraphLog().start()
    assert _installed() == patched  # the same wrappers and hook handles
    assert len(installs) == 1
    second.stop(linger=True)
    graphs.release_tracking()
    assert _installed() == before
    assert not graphs.hooks_installed()


def test_release_leaves_a_listening_log_its_installation():
    outer = graphs.GraphLog().start()
    try:
        graphs.GraphLog().start().stop(linger=True)
        graphs.release_tracking()
        assert graphs.hooks_installed()
    finally:
        outer.stop()
    assert not graphs.hooks_installed()


def test_a_patch_over_a_lingering_wrapper_is_wrapped_again():
    cls = _class_or_skip()
    before = _methods(cls)
    graphs.GraphLog().start().stop(linger=True)
    lingering = cls.__dict__["replay"]

    def theirs(self):
        return lingering(self)

    cls.replay = theirs
    try:
        log = graphs.GraphLog().start()
        assert cls.__dict__["replay"].__wrapped__ is theirs
        log.stop()
        assert cls.__dict__["replay"] is theirs
    finally:
        graphs.release_tracking()
        _put_back_replay(cls, before)


def test_a_log_times_its_listening_once():
    t0 = time.perf_counter()
    log = graphs.GraphLog().start()
    assert log.stop() is log
    took = time.perf_counter() - t0
    assert 0 < log.seconds <= took
    seconds = log.seconds
    log.stop()
    assert log.seconds == seconds


def test_a_log_listens_once():
    log = graphs.GraphLog().start()
    try:
        with pytest.raises(RuntimeError, match="already listening"):
            log.start()
    finally:
        log.stop()


def test_someone_elses_patch_on_top_is_left_alone():
    cls = _class_or_skip()
    before = _methods(cls)
    log, _, theirs = _patch_over_ours(cls)
    try:
        log.stop()
        assert cls.__dict__["replay"] is theirs
        for name in ("capture_begin", "capture_end"):
            assert cls.__dict__.get(name) is before[name]
    finally:
        _put_back_replay(cls, before)


def test_a_log_started_inside_another_leaves_a_patch_over_the_wrapper_alone():
    cls = _class_or_skip()
    before = _methods(cls)
    outer, _, theirs = _patch_over_ours(cls)
    try:
        inner = graphs.GraphLog().start()
        assert cls.__dict__["replay"] is theirs
        inner.stop()
        outer.stop()
        assert cls.__dict__["replay"] is theirs
    finally:
        _put_back_replay(cls, before)


@pytest.mark.parametrize("taken_off_by", ["restore_displaced", "release_tracking", "next_log"])
def test_our_wrapper_put_back_after_the_log_stopped_is_taken_off(taken_off_by):
    """Code that patches over a wrapper inside a region and undoes its patch after the
    region ended (monkeypatch at teardown) puts back what it saw: the wrapper. It comes off
    again, and the next log does not wrap it a second time."""
    cls = _class_or_skip()
    before = _methods(cls)
    log, ours, theirs = _patch_over_ours(cls)
    log.stop()
    graphs.restore_displaced()  # a test boundary while their patch is still on
    assert cls.__dict__["replay"] is theirs
    cls.replay = ours  # their patch undone: what they saw comes back
    if taken_off_by == "next_log":
        log = graphs.GraphLog().start()
        assert cls.__dict__["replay"].__wrapped__ is before["replay"]
        log.stop()
    else:
        getattr(graphs, taken_off_by)()
    assert _methods(cls) == before
    assert not graphs._hooks.displaced


def test_a_patch_over_our_wrapper_that_stays_is_left_alone():
    cls = _class_or_skip()
    before = _methods(cls)
    log = graphs.GraphLog().start()

    def theirs(self):
        pass

    cls.replay = theirs
    try:
        log.stop()
        graphs.restore_displaced()
        assert cls.__dict__["replay"] is theirs
    finally:
        _put_back_replay(cls, before)
    graphs.restore_displaced()
    assert not graphs._hooks.displaced
    assert _methods(cls) == before


def test_a_lingering_region_leaves_its_tracking_installed():
    measure = pytest.importorskip("pytest_cgmem.cuda.region")
    before = _installed()
    region = measure.Region("r", linger_tracking=True)
    region._track_graphs()
    patched = _installed()
    region._stop_trackers()
    assert _installed() == patched
    graphs.release_tracking()
    assert _installed() == before


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


class _Made(Exception):
    pass


def test_capture_sweep_takes_the_largest_size_and_no_warmup_and_makes_inputs_largest_first():
    made = []

    def make_input(size):
        made.append(size)
        if len(made) == 3:
            raise _Made

    with pytest.raises(_Made):
        graphs.capture_sweep(lambda x: x, [1, graphs.MAX_FIGURE, 2], make_input, warmup=0)
    assert made == [graphs.MAX_FIGURE, 2, 1]


def test_a_usage_error_hides_the_sweep_s_frame_and_an_error_of_the_user_s_code_does_not():
    def frames(info):
        return [entry.name for entry in info.traceback.filter(info)]

    def make_input(size):
        raise _Made

    with pytest.raises(graphs.CgmemUsageError) as usage:
        graphs.capture_sweep(lambda x: x, [1], make_input, warmup=-1)
    with pytest.raises(_Made) as theirs:
        graphs.capture_sweep(lambda x: x, [1], make_input)
    assert "capture_sweep" not in frames(usage)
    assert "capture_sweep" in frames(theirs)
    assert not graphs._usage_error(None)  # pytest's ishidden() may be given no excinfo
