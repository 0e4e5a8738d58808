"""An installed plugin that a run does not use runs none of its per-test hooks; a fixture
of ours asked for at run time still has its test judged (no GPU needed)."""

from __future__ import annotations

import pytest

OURS = """
import pytest

HOOKS = (
    "pytest_runtest_setup",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
    "pytest_runtest_logreport",
)


def ours(config):
    return [
        name
        for name in HOOKS
        if any(
            impl.plugin_name.startswith("cgmem")
            for impl in getattr(config.pluginmanager.hook, name).get_hookimpls()
        )
    ]
"""


def test_a_run_that_measures_nothing_has_no_per_test_hooks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(OURS)
    pytester.makepyfile(
        """
        from conftest import ours

        def test_plain(request):
            assert ours(request.config) == []

        class TestClass:
            def test_method(self, request, tmp_path):
                assert ours(request.config) == []
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("args", "test"),
    [
        ((), "@pytest.mark.cgmem(leak=0)\ndef test_marked():\n    pass"),
        ((), "def test_records(cgmem_record):\n    pass"),
        ((), "def test_regions(cgmem):\n    pass"),
        (("--cgmem-all",), ""),
        (("--cgmem-json=run.json",), ""),
    ],
    ids=["mark", "cgmem_record", "cgmem", "cgmem-all", "cgmem-json"],
)
def test_the_per_test_hooks_stay_where_a_test_needs_them(
    pytester: pytest.Pytester, args: tuple[str, ...], test: str
) -> None:
    pytester.makeconftest(OURS)
    plain = (
        "import pytest\n"
        "from conftest import HOOKS, ours\n\n"
        "def test_plain(request):\n"
        "    assert ours(request.config) == list(HOOKS)\n\n"
    )
    pytester.makepyfile(plain + test)
    result = pytester.runpytest("-p", "no:randomly", *args)
    assert result.parseoutcomes().get("passed", 0) >= 1
    assert "failed" not in result.parseoutcomes()


BODY = """
from conftest import HOOKS, ours

def test_before(request):
    assert ours(request.config) == []

def test_asks_in_its_body(request):
    record = request.getfixturevalue("cgmem_record")
    record("load", peak=2 * 2**20)

def test_after(request):
    assert ours(request.config) == list(HOOKS)
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_a_fixture_asked_for_in_the_body_is_judged(pytester: pytest.Pytester, xdist: bool) -> None:
    """``request.getfixturevalue("cgmem_record")`` in a run whose collection saw no test
    that needs the hooks: they come with the fixture, and the test is judged at its
    call's report, over budget as it would be had it named the fixture."""
    if xdist:
        pytest.importorskip("xdist")
    pytester.makeconftest(OURS)
    pytester.makepyfile(test_body=BODY)
    args = ["-p", "no:randomly", "--cgmem-budget=peak=1MiB"]
    if xdist:
        result = pytester.runpytest_subprocess(*args, "-p", "no:benchmark", "-n", "1")
    else:
        result = pytester.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_body.py::test_asks_in_its_body [[]load[]]*2.00 MiB*",
            "FAILED test_body.py::test_asks_in_its_body - cgmem: peak 2.00 MiB exceeds*",
        ]
    )
