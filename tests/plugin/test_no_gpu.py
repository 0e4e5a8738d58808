"""Behaviour where there is no CUDA device (CI's CPU machines), and the light-import promise."""

import pytest

try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False

needs_no_cuda = pytest.mark.skipif(
    HAS_CUDA, reason="checks the no-CUDA path; a CUDA device is here"
)

SUITE = """
import pytest

@pytest.mark.cgmem(peak="1 GiB")
def test_marked(): pass

def test_fixture(cgmem): pass

def test_plain(): pass
"""


@needs_no_cuda
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


@needs_no_cuda
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


def test_plain_suite_never_imports_torch(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys
        def pytest_sessionfinish(session):
            with open("torch-imported.txt", "w") as f:
                f.write(str("torch" in sys.modules))
        """
    )
    pytester.makepyfile("def test_a(): pass\ndef test_b(): assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "cgmem", "--cgmem-summary=5")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "torch-imported.txt").read_text() == "False"
    assert "cgmem:" not in result.stdout.str()


def test_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_registered(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("cgmem")
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_header_names_the_machine_when_gpu_tests_are_collected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--collect-only")
    result.stdout.fnmatch_lines(["cgmem: GPUs: *; driver *", "cgmem: torch *, CUDA *, allocator *"])
