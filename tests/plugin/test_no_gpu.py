"""Behaviour where there is no CUDA device (CI's CPU machines), and the light-import promise."""

import contextlib
import json

import pytest

with contextlib.suppress(ImportError):
    import torch

SUITE = """
import pytest

@pytest.mark.cgmem(peak="1 GiB")
def test_marked(): pass

def test_fixture(cgmem): pass

def test_plain(): pass
"""


@pytest.mark.no_cuda
def test_gpu_memory_tests_skip_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] test_suite.py:3: cgmem: no CUDA device",
            "SKIPPED [[]1[]] test_suite.py:6: cgmem: no CUDA device",
        ]
    )


@pytest.mark.no_cuda
@pytest.mark.parametrize(
    ("how", "source"),
    [
        (["--cgmem-require-gpu"], "--cgmem-require-gpu"),
        (["-o", "cgmem_require_gpu=true"], "cgmem_require_gpu"),
    ],
)
def test_require_gpu_fails_instead(pytester: pytest.Pytester, how: list[str], source: str) -> None:
    """The message names where the setting came from: the flag or the ini key."""
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(*how)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines([f"*cgmem: no CUDA device ({source})"])


@pytest.mark.no_cuda
def test_require_gpu_s_failure_is_its_message_not_the_plugin_s_frames(
    pytester: pytest.Pytester,
) -> None:
    """Each measured test's error is the one line that names the setting, even with long
    tracebacks."""
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--cgmem-require-gpu", "--tb=long")
    result.assert_outcomes(passed=1, errors=2)
    assert [line for line in result.stdout.lines if "pytest_cgmem" + "/" in line] == []


XFAIL_MARKED = """
import pytest

import pytest_cgmem


def ranks(rank, world_size):
    pass


@pytest.mark.cgmem(peak=1)
@pytest.mark.xfail(strict=True)
def test_marked_strict():
    pass


@pytest.mark.cgmem(peak=1)
@pytest.mark.xfail
def test_marked():
    pass


@pytest.mark.xfail(raises=pytest_cgmem.BudgetExceeded)
def test_with_the_fixture(cgmem):
    pass


@pytest.mark.xfail
def test_distributed_nccl(cgmem_distributed):
    cgmem_distributed(ranks, world_size=2, backend="nccl")


@pytest.mark.xfail(run=False)
def test_not_run(cgmem):
    pass
"""


@pytest.mark.no_cuda
def test_require_gpu_fails_a_test_marked_xfail_too(pytester: pytest.Pytester) -> None:
    """--cgmem-require-gpu's failure is not the failure an xfail mark expects: before, any
    of these tests passed as XFAIL on a machine with no GPU, silently. A test xfail does not
    run needs no GPU."""
    pytester.makepyfile(test_xfail=XFAIL_MARKED)
    result = pytester.runpytest("--cgmem-require-gpu", "-rEfx")
    result.assert_outcomes(errors=3, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "ERROR test_xfail.py::test_marked_strict - Failed: cgmem: no CUDA device (*",
            "ERROR test_xfail.py::test_marked - Failed: cgmem: no CUDA device (*",
            "ERROR test_xfail.py::test_with_the_fixture - Failed: cgmem: no CUDA device (*",
            "FAILED test_xfail.py::test_distributed_nccl - Failed: cgmem: no CUDA device (*",
            "XFAIL *test_xfail.py::test_not_run - *[[]NOTRUN[]]*",  # pytest 8 says "reason: "
        ],
        consecutive=False,
    )


UNUSED_RUN_IMPORTS = {
    "pytest_cgmem",
    "pytest_cgmem.checks",
    "pytest_cgmem.checks.budgets",
    "pytest_cgmem.cuda",
    "pytest_cgmem.failures",
    "pytest_cgmem.metrics",
    "pytest_cgmem.pinning",
    "pytest_cgmem.plugin",
    "pytest_cgmem.results",
    "pytest_cgmem.results.torchrun",
    "pytest_cgmem.session",
    "pytest_cgmem.settings",
    "pytest_cgmem.units",
}
"""What a run with no GPU-memory test imports of the plugin: its options, settings and
session, and what they need to read the marks. The fixtures, records, reports and files are
imported where a test uses them."""


def test_plain_suite_never_imports_torch(pytester: pytest.Pytester) -> None:
    """Nor the plugin's measuring, recording and reporting modules."""
    pytester.makeconftest(
        """
        import json, sys
        def pytest_sessionfinish(session):
            ours = [m for m in sys.modules if m.split(".")[0] in ("torch", "pytest_cgmem")]
            with open("imported.json", "w") as f:
                json.dump(ours, f)
        """
    )
    pytester.makepyfile("def test_a(): pass\ndef test_b(): assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "cgmem", "--cgmem-summary=5")
    result.assert_outcomes(passed=2)
    imported = set(json.loads((pytester.path / "imported.json").read_text()))
    assert "torch" not in imported
    assert imported == UNUSED_RUN_IMPORTS
    assert "cgmem:" not in result.stdout.str()


def test_reading_every_attribute_of_the_plugin_s_objects_imports_nothing_more(
    pytester: pytest.Pytester,
) -> None:
    """pytest 8.1 reads every attribute of a plugin it registers (``parse_hookimpl_opts``
    before it looks at the name): none of the session's or its per-test hooks' may import
    torch or what a measured test needs (a property that imported ``Region`` did, there)."""
    pytester.makeconftest(
        """
        import json, sys
        from pytest_cgmem.plugin import session_key

        def pytest_sessionfinish(session):
            ours = session.config.stash[session_key]
            for plugin in (ours, ours.test_hooks):
                for name in dir(plugin):
                    getattr(plugin, name)
            imported = [m for m in sys.modules if m.split(".")[0] in ("torch", "pytest_cgmem")]
            with open("imported.json", "w") as f:
                json.dump(imported, f)
        """
    )
    pytester.makepyfile("def test_a(): pass\n")
    result = pytester.runpytest_subprocess("-p", "cgmem")
    result.assert_outcomes(passed=1)
    assert set(json.loads((pytester.path / "imported.json").read_text())) == UNUSED_RUN_IMPORTS


CPU_BUILD = "torch" in globals() and torch.version.cuda is None and torch.version.hip is None


@pytest.mark.skipif(not CPU_BUILD, reason="needs a CPU build of torch (a GPU build is imported)")
@pytest.mark.usefixtures("this_checkout")
def test_a_cpu_build_is_never_imported_and_marked_tests_skip(pytester: pytest.Pytester) -> None:
    """Under a torch built without CUDA, marked tests skip and the run file records the
    machine from torch's version file: the plugin never pays torch's 2-3 s import."""
    pytester.makeconftest(
        """
        import sys
        def pytest_sessionfinish(session):
            with open("torch-imported.txt", "w") as f:
                f.write(str("torch" in sys.modules))
        """
    )
    recorded = "\ndef test_recorded(cgmem_record):\n    cgmem_record('load', peak=1)\n"
    pytester.makepyfile(test_suite=SUITE + recorded)
    result = pytester.runpytest_subprocess("-rs", "--cgmem-json=run.json")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [f"cgmem: torch {torch.__version__}, CUDA none*", "*cgmem: no CUDA device*"]
    )
    assert (pytester.path / "torch-imported.txt").read_text() == "False"
    machine = json.loads((pytester.path / "run.json").read_text())["machine"]
    assert (machine["torch"], machine["cuda"], machine["graph_tracking"]) == (
        torch.__version__,
        None,
        None,
    )


def test_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_registered(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("cgmem")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)  # in process too: loaded from entry points


def test_header_names_the_machine_when_gpu_tests_are_collected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--collect-only")
    result.stdout.fnmatch_lines(["cgmem: GPUs: *; driver *", "cgmem: torch *, CUDA *, allocator *"])


def test_collect_only_quiet_prints_node_ids_only(pytester: pytest.Pytester) -> None:
    """Scripts read ``--collect-only -q``'s lines as node ids: no header among them."""
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0
    assert not [line for line in result.stdout.lines if line.startswith("cgmem:")]
    assert any(line.startswith("test_suite.py::") for line in result.stdout.lines)


@pytest.mark.parametrize("flag", ["--fixtures", "--fixtures-per-test", "--setup-plan"])
def test_a_run_of_no_test_shows_no_machine(pytester: pytest.Pytester, flag: str) -> None:
    """It reads nothing to say it: no NVML, no torch."""
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(flag)
    assert result.ret == 0
    assert not [line for line in result.stdout.lines if line.startswith("cgmem:")]


def test_header_shown_where_a_test_asks_for_the_plugin_s_fixture(
    pytester: pytest.Pytester,
) -> None:
    """A test that takes the plugin's ``cgmem`` and no mark is measured: the header says
    where."""
    pytester.makepyfile(test_it="def test_it(cgmem):\n    pass\n")
    result = pytester.runpytest("--collect-only")
    result.stdout.fnmatch_lines(["cgmem: GPUs: *", "cgmem: torch *"])


@pytest.mark.parametrize("where", ["conftest", "class"])
def test_header_shown_where_an_override_asks_for_the_plugin_s_fixture(
    pytester: pytest.Pytester, where: str
) -> None:
    """An override that takes the plugin's ``cgmem`` still measures: the header says where."""
    override = "@pytest.fixture\ndef cgmem(cgmem):\n    return cgmem\n"
    if where == "conftest":
        pytester.makeconftest("import pytest\n" + override)
        pytester.makepyfile(test_it="def test_it(cgmem):\n    pass\n")
    else:
        body = "\n".join("    " + line for line in override.splitlines())
        pytester.makepyfile(
            test_it=f"import pytest\nclass TestIt:\n{body.replace('(cgmem)', '(self, cgmem)')}\n"
            "    def test_it(self, cgmem):\n        pass\n"
        )
    result = pytester.runpytest("--collect-only")
    result.stdout.fnmatch_lines(["cgmem: GPUs: *", "cgmem: torch *"])
