"""Options, ini keys, marks and usage errors, checked through pytester (no GPU needed)."""

import json
from pathlib import Path

import pytest

import pytest_cgmem
from pytest_cgmem.plugin import settings_key
from pytest_cgmem.session import budget_key
from pytest_cgmem.settings import OPTIONS

ROOT = Path(pytest_cgmem.__file__).parents[1]

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

GiB = 2**30


def test_settings_resolved_cli_over_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncgmem_budget = peak=4GiB reserved=6GiB\ncgmem_summary = 3\n")
    config = pytester.parseconfigure("--cgmem-summary=7")
    settings = config.stash[settings_key]
    assert settings.summary == 7
    assert settings.budget.limits == {"peak": 4 * GiB, "reserved": 6 * GiB}
    assert settings.require_gpu is False


def test_repeated_budget_flags_add_up(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncgmem_budget = reserved=6GiB\n")
    config = pytester.parseconfigure("--cgmem-budget=leak=0", "--cgmem-budget", "peak=4GiB")
    settings = config.stash[settings_key]
    assert settings.budget.limits == {"leak": 0, "peak": 4 * GiB}
    assert settings.source("budget") == "--cgmem-budget"


def test_a_later_budget_flag_overrides_addopts_key_by_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = --cgmem-budget='peak=100 leak=0'\n")
    config = pytester.parseconfigure("--cgmem-budget=peak=200")
    assert config.stash[settings_key].budget.limits == {"peak": 200, "leak": 0}


def test_a_bad_value_in_one_of_two_budget_flags_is_named(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--cgmem-budget=leak=0", "--cgmem-budget=peak=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --cgmem-budget='peak=lots': peak='lots': cannot read*"])


def test_ini_require_gpu(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncgmem_require_gpu = true\n")
    assert pytester.parseconfigure().stash[settings_key].require_gpu is True


def test_mark_overrides_default_budget_key_by_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.cgmem(leak=0, reserved="3 GiB")

        @pytest.mark.cgmem(peak="1 GiB")
        def test_a(): pass

        def test_b(): pass
        """
    )
    items, _ = pytester.inline_genitems("--cgmem-budget=peak=4GiB reserved=6GiB")
    assert items[0].stash[budget_key].limits == {"peak": GiB, "reserved": 3 * GiB, "leak": 0}
    assert items[1].stash[budget_key].limits == {"peak": 4 * GiB, "reserved": 3 * GiB, "leak": 0}


def test_unmarked_tests_get_no_budget(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    items, _ = pytester.inline_genitems("--cgmem-budget=peak=4GiB")
    assert budget_key not in items[0].stash


@pytest.mark.parametrize(
    ("mark", "line"),
    [
        (
            'peak="1.5 GB/s"',
            "*test_x.py::test_it: @pytest.mark.cgmem: peak='1.5 GB/s': cannot read*",
        ),
        ('peak="-1 MiB"', "*test_it: @pytest.mark.cgmem: peak='-1 MiB': *"),
        ('leak="lots"', "*test_it: @pytest.mark.cgmem: leak='lots': *"),
        (
            'peek="1 GiB"',
            "*test_it: @pytest.mark.cgmem: unknown budget keyword 'peek' (valid: peak,*",
        ),
        ('"1 GiB"', "*test_it: @pytest.mark.cgmem: takes keyword budgets only*'1 GiB'*"),
        ("graphs=1.5", "*test_it: @pytest.mark.cgmem: graphs=1.5: expected a whole number*"),
        ('graphs="²"', "*test_it: @pytest.mark.cgmem: graphs='²': expected a whole number*"),
        ('replays="٣"', "*test_it: @pytest.mark.cgmem: replays='٣': expected a whole number*"),
        (
            'peek="1 GiB"',
            "*unknown budget keyword 'peek' (valid: peak, *, replays, tolerance)",
        ),
        (
            'peak="9" * 400',
            "*test_it: @pytest.mark.cgmem: peak='999*' (402 characters): too large: *",
        ),
        ("peak=10**400", "*test_it: @pytest.mark.cgmem: peak=an integer of about 400 digits: *"),
        ("reserved_ratio=10**400", "*test_it: @pytest.mark.cgmem: reserved_ratio=an integer *"),
        ('tolerance="1" + "0" * 310', "*test_it: @pytest.mark.cgmem: *"),
        (
            "tolerance=10**5000",
            "*test_it: @pytest.mark.cgmem: tolerance=an integer of about 5000 digits: *",
        ),
        (
            'tolerance="x" * 5000',
            "*test_it: @pytest.mark.cgmem: tolerance='xxx*' (5002 characters): *",
        ),
        ('"x" * 5000', "*test_it: @pytest.mark.cgmem: *positional 'xxx*' (5002 characters)"),
    ],
)
def test_bad_mark_is_a_one_line_usage_error(
    pytester: pytest.Pytester, mark: str, line: str
) -> None:
    pytester.makepyfile(
        test_x=f"""
        import pytest
        @pytest.mark.cgmem({mark})
        def test_it(): pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {line}"])
    assert "Traceback" not in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_every_bad_mark_is_listed_non_ascii_digits_too(pytester: pytest.Pytester) -> None:
    """A mark that no parser could read ('²') is one line among the others, not an
    INTERNALERROR that hides them."""
    pytester.makepyfile(
        test_x="""
        import pytest
        @pytest.mark.cgmem(graphs="²")
        def test_one(): pass
        @pytest.mark.cgmem(peak="lots")
        def test_two(): pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: test_x.py::test_one: @pytest.mark.cgmem: graphs='²': expected a whole*",
            "ERROR: test_x.py::test_two: @pytest.mark.cgmem: peak='lots': cannot read*",
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_a_module_s_bad_mark_is_one_line_naming_its_first_test(pytester: pytest.Pytester) -> None:
    """Not one line for each test the mark reaches; a different bad mark keeps its own line."""
    pytester.makepyfile(
        test_x="""
        import pytest
        pytestmark = pytest.mark.cgmem(peak="1 XiB")
        def test_a(): pass
        def test_b(): pass
        def test_c(): pass
        """,
        test_y="""
        import pytest
        @pytest.mark.cgmem(reserved="lots")
        def test_d(): pass
        """,
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(errors) == 2
    pytest.LineMatcher(errors).fnmatch_lines(
        [
            "ERROR: test_x.py::test_a (and 2 more test(s) with that mark): @pytest.mark.cgmem: "
            "peak='1 XiB': *",
            "ERROR: test_y.py::test_d: @pytest.mark.cgmem: reserved='lots': *",
        ]
    )


@pytest.mark.parametrize(
    ("args", "ini", "line"),
    [
        (["--cgmem-summary=x"], "", "ERROR: --cgmem-summary='x': expected a whole number*"),
        (["--cgmem-summary=²"], "", "ERROR: --cgmem-summary='²': expected a whole number*"),
        ([], "cgmem_stacks = ٣", "ERROR: cgmem_stacks='٣': expected a whole number >= 1*"),
        ([], "cgmem_summary = 1_0", "ERROR: cgmem_summary='1_0': expected a whole number*"),
        (
            ["--cgmem-history-entries=1²"],
            "",
            "ERROR: --cgmem-history-entries='1²': expected a whole number >= 1*",
        ),
        (["--cgmem-budget=peak=lots"], "", "ERROR: --cgmem-budget='peak=lots': *"),
        ([], "cgmem_budget = peak", "ERROR: cgmem_budget='peak': cannot read 'peak'*"),
        (
            [],
            "cgmem_require_gpu = maybe",
            "ERROR: cgmem_require_gpu: invalid truth value 'maybe'",
        ),
    ],
)
def test_bad_option_values(pytester: pytest.Pytester, args: list[str], ini: str, line: str) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])


def test_markers_document_every_keyword(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.cgmem(**budgets): *"])
    text = result.stdout.str()
    for keyword in ("peak", "reserved", "leak", "device", "non_torch", "reserved_ratio"):
        assert f"{keyword} (" in text


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    from pytest_cgmem.settings import OPTIONS

    result = pytester.runpytest("--help")
    for option in OPTIONS:
        result.stdout.fnmatch_lines([f"*{option.cli}*"])
        result.stdout.fnmatch_lines([f"*{option.ini}*"])


@pytest.mark.parametrize(
    ("args", "ini"),
    [
        (["--cgmem-summary=x"], ""),
        ([], "cgmem_budget = peak"),
        (["-W", "error", "--cgmem-gab-sizes"], ""),
        (["--cgmem-devices=x", "-p", "xdist", "-n", "2"], ""),
    ],
)
def test_help_is_shown_whatever_the_settings(
    pytester: pytest.Pytester, args: list[str], ini: str
) -> None:
    """``--help`` shows the help that says what a value should be, as pytest does for its
    own settings, however bad a value of ours is."""
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest(*args, "--help")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["*--cgmem-summary=N*"])


def test_every_option_is_on_the_command_line_and_an_ini_key_with_its_help(
    pytester: pytest.Pytester,
) -> None:
    """``pytest --help`` lists each option's flag and ini key, each with its help text."""
    text = " ".join(pytester.runpytest("--help").stdout.str().split())
    for option in OPTIONS:
        assert option.help
        words = " ".join(option.help.split())[:40]
        assert text.count(words) == 2, option.name  # once for the flag, once for the ini key
        assert option.cli in text and f"{option.ini} (" in text, option.name


NATIVE = """
def test_it(request):
    from pytest_cgmem.plugin import settings_key

    s = request.config.stash[settings_key]
    print("SETTINGS", s.summary, s.require_gpu, s.all, s.history_entries, s.json)
"""


@pytest.mark.parametrize(
    ("config_file", "text"),
    [
        (
            "pyproject.toml",
            "[tool.pytest]\ncgmem_summary = 5\ncgmem_require_gpu = true\ncgmem_all = true\n"
            'cgmem_history_entries = 7\ncgmem_json = "out/run.json"\n',
        ),
        (
            "pytest.ini",
            "[pytest]\ncgmem_summary = 5\ncgmem_require_gpu = true\ncgmem_all = yes\n"
            "cgmem_history_entries = 7\ncgmem_json = out/run.json\n",
        ),
    ],
)
def test_ini_keys_take_natural_values_in_toml_and_ini(
    pytester: pytest.Pytester, config_file: str, text: str
) -> None:
    if config_file == "pyproject.toml" and int(pytest.__version__.split(".")[0]) < 9:
        pytest.skip("native [tool.pytest] TOML tables came in pytest 9")
    (pytester.path / config_file).write_text(text)
    pytester.makepyfile(NATIVE)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    expected = str(pytester.path / "out" / "run.json")
    result.stdout.fnmatch_lines([f"*SETTINGS 5 True True 7 {expected}"])


def test_ini_paths_are_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncgmem_json = results/run.json\n")
    sub = pytester.mkdir("sub")
    (sub / "test_sub.py").write_text(
        "def test_record(cgmem_record):\n    cgmem_record('server', peak='1 MiB')\n"
    )
    pytester.chdir()
    import os

    os.chdir(sub)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "results" / "run.json").is_file()
    assert not (sub / "results").exists()


def test_cli_paths_are_relative_to_the_invocation_folder(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile("def test_record(cgmem_record):\n    cgmem_record('s', peak=1)\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--cgmem-json=here/run.json")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "here" / "run.json").is_file()


def test_bad_typed_ini_value_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncgmem_summary = lots\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str()
    result.stderr.fnmatch_lines(["ERROR: *cgmem_summary*lots*"])


def test_bad_marks_are_named_under_xdist(pytester: pytest.Pytester) -> None:
    """xdist turns a worker's usage error into an INTERNALERROR without its message, so a
    worker fails each test whose marks are bad, naming the mark."""
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.cgmem(peek=1)
        def test_bad_budget(): pass

        @pytest.mark.cgmem_off()
        def test_bad_opt_out(): pass

        def test_fine(): pass
        """
    )
    # the controller runs in this process; the worker, which reads the marks, is a process
    result = pytester.runpytest("-n", "1", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "test_x.py::test_bad_budget: @pytest.mark.cgmem: unknown budget keyword 'peek' *",
            "test_x.py::test_bad_opt_out: @pytest.mark.cgmem_off: takes one reason, *",
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("--cgmem-json=run.json", "--cgmem-json"),
        ("--cgmem-gab-json=gab.json", "--cgmem-gab-json"),
        ("--cgmem-save-baseline=base.json", "--cgmem-save-baseline"),
        ("-ocgmem_json=run.json", "cgmem_json"),
    ],
)
def test_dist_each_with_a_file_of_one_record_a_test_is_refused(
    pytester: pytest.Pytester, option: str, named: str
) -> None:
    """``--dist each`` runs each test on every worker; the run file, gab file and baseline
    hold one record a test, and would keep one worker's figures with no word of the rest."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x="def test_a(cgmem_record):\n    cgmem_record('load', peak=100)\n")
    result = pytester.runpytest("-n", "2", "--dist", "each", option, "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = result.stderr.lines[0]
    assert line == (
        f"ERROR: {named}: --dist each runs every test on every worker, and the file holds one "
        "record a test; give each device its own pytest run (and its own file), or use "
        "--dist load"
    )
    assert not list(pytester.path.glob("*.json"))
    if named == "--cgmem-json":
        assert f"`{line}`" in (ROOT / "docs" / "ci.md").read_text()


@pytest.mark.parametrize("mode", ["--collect-only", "--fixtures"])
def test_dist_each_with_a_file_is_not_refused_in_a_run_of_no_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A run that runs no test writes no file and xdist does not distribute it (docs/usage.md:
    an IDE's discovery is not refused), so ``--dist each`` loses no figure there."""
    workermanage = pytest.importorskip("xdist.workermanage")
    # under --fixtures xdist starts workers it never uses, and stops them at once; a worker
    # still starting then takes 5 s to end (execnet's wait for its execution, with or
    # without this plugin, in about a run of four): stopped after 0.5 s instead
    monkeypatch.setattr(workermanage.NodeManager, "EXIT_TIMEOUT", 0.5)
    pytester.makepyfile(test_x="def test_a(cgmem_record):\n    cgmem_record('load', peak=100)\n")
    args = ("-n", "2", "--dist", "each", "--cgmem-json=run.json", "-p", "no:randomly")
    result = pytester.runpytest(mode, *args)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert not list(pytester.path.glob("*.json"))


@pytest.mark.parametrize(
    "workers",
    [("-n", "1"), ("--tx", "popen"), ("--tx", "1*popen"), ("-n", "2", "--maxprocesses=1")],
)
def test_dist_each_on_one_worker_with_a_file_runs_each_test_once(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    """One worker runs each test once, so the file loses nothing and is written."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x="def test_a(cgmem_record):\n    cgmem_record('load', peak=100)\n")
    args = (*workers, "--dist", "each", "--cgmem-json=run.json", "-p", "no:randomly")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    run = json.loads((pytester.path / "run.json").read_text())
    assert [test["nodeid"] for test in run["tests"]] == ["test_x.py::test_a"]


@pytest.mark.parametrize("workers", [("--tx", "2*popen"), ("--tx", "popen", "--tx", "popen")])
def test_dist_each_on_two_tx_workers_with_a_file_is_refused(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x="def test_a(): pass\n")
    result = pytester.runpytest(*workers, "--dist", "each", "--cgmem-json=run.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0].startswith("ERROR: --cgmem-json: --dist each runs every test")


def test_a_tx_spec_whose_star_follows_no_count_is_one_worker(pytester: pytest.Pytester) -> None:
    """As xdist counts it: ``popen//env:GLOB=*.py`` is one worker, not a count of them."""
    pytest.importorskip("xdist")
    spec = ("--tx", "popen//env:GLOB=*.py")
    each = ("--dist", "each", "--cgmem-json=run.json")
    assert pytester.parseconfigure(*spec, *each).stash[settings_key].json is not None
    with pytest.raises(pytest.UsageError, match=r"^--cgmem-json: --dist each runs every test"):
        pytester.parseconfigure(*spec, *spec, *each)


def test_dist_each_without_a_file_runs(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x="def test_a(cgmem_record):\n    cgmem_record('load', peak=100)\n")
    result = pytester.runpytest("-n", "2", "--dist", "each", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_every_opt_out_mark_of_a_test_is_checked(pytester: pytest.Pytester) -> None:
    """A module's mark without a reason is refused even where the test has its own."""
    pytester.makepyfile(
        test_x="""
        import pytest

        pytestmark = pytest.mark.cgmem_off()

        @pytest.mark.cgmem_off("has one")
        def test_it(): pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: test_x.py::test_it: @pytest.mark.cgmem_off: *got none"])


def test_every_test_s_bad_mark_is_listed_after_a_bad_opt_out(pytester: pytest.Pytester) -> None:
    """A test whose opt-out mark is refused does not end the reading of the others'."""
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.cgmem_off()
        def test_one(): pass

        @pytest.mark.cgmem_off("has one", why="no")
        def test_two(): pass

        @pytest.mark.cgmem(peak="lots")
        def test_three(): pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: test_x.py::test_one: @pytest.mark.cgmem_off: *got none",
            "ERROR: test_x.py::test_two: @pytest.mark.cgmem_off: unknown argument(s) why; *",
            "ERROR: test_x.py::test_three: @pytest.mark.cgmem: peak='lots': cannot read*",
        ]
    )


def test_a_list_for_a_path_in_a_legacy_toml_table_is_one_line_under_w_error(
    pytester: pytest.Pytester,
) -> None:
    """pytest 9 warns that the value is not a string; ``-W error`` makes its warning an error.

    The first run ignores the warning: an in-process run would hand it to this session."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ncgmem_json = ["a.json", "b.json"]\n')
    pytester.makepyfile("def test_a(): pass")
    for args in (["-W", "ignore::DeprecationWarning"], ["-W", "error"]):
        result = pytester.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines(["ERROR: cgmem_json*"])
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not list(pytester.path.glob("*[[]*"))  # no file named after the list


@pytest.mark.parametrize(
    ("args", "ini"),
    [
        (["-W", "error", "--cgmem-stacks=3"], None),
        (["--cgmem-stacks=3"], "[pytest]\nfilterwarnings = error\n"),
    ],
)
def test_an_option_that_does_nothing_is_one_line_when_warnings_are_errors(
    pytester: pytest.Pytester, args: list[str], ini: str | None
) -> None:
    if ini is not None:
        pytester.makeini(ini)
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: cgmem: --cgmem-stacks does nothing without --cgmem-history"]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "cgmem_json = {a = 1}",
            "cgmem_json={'a': 1}: expected a TOML string in [tool.pytest.ini_options], got a table",
        ),
        ("cgmem_json = 5", "cgmem_json=5: expected a TOML string in *got an integer"),
        (
            "cgmem_summary = 1.5",
            "cgmem_summary=1.5: expected a TOML string or integer in *, got a float",
        ),
        ("cgmem_all = 1", "cgmem_all=1: expected a TOML string or boolean in *, got an integer"),
    ],
)
def test_a_toml_type_the_key_does_not_take_in_the_legacy_table_is_one_line(
    pytester: pytest.Pytester, line: str, message: str
) -> None:
    """pytest hands every value but an array on as text there: ``cgmem_json = 5`` once
    wrote a run file named ``5``."""
    pytester.makepyprojecttoml(f"[tool.pytest.ini_options]\n{line}\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert [p.name for p in pytester.path.iterdir() if p.suffix not in (".py", ".toml")] == []


def test_natural_toml_values_in_the_legacy_table_still_work(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\ncgmem_json = "run.json"\ncgmem_summary = 3\ncgmem_all = true\n'
    )
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert (pytester.path / "run.json").exists()


def test_options_that_do_nothing_here_are_warned_about(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--cgmem-stacks=3", "--cgmem-devices=0")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*PytestConfigWarning: cgmem: --cgmem-stacks does nothing without --cgmem-history",
            "*PytestConfigWarning: cgmem: --cgmem-devices does nothing without pytest-xdist "
            "workers (-n)",
        ]
    )


def test_devices_with_tx_workers_are_not_warned_about(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--tx 1*popen --dist load`` starts a worker as ``-n 1`` does, and it is pinned: the
    option does something (under ``-W error`` the warning was a usage error). ``--tx``
    without ``--dist`` starts none: the warning stays."""
    pytest.importorskip("xdist")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makepyfile(
        "import os\n\ndef test_a():\n    assert os.environ.get('CUDA_VISIBLE_DEVICES') == '0'\n"
    )
    args = ("--tx", "1*popen", "--cgmem-devices=0", "-p", "no:randomly")
    result = pytester.runpytest(*args, "--dist", "load", "-W", "error")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*does nothing without pytest-xdist*")
    result = pytester.runpytest(*args)
    result.stdout.fnmatch_lines(["*--cgmem-devices does nothing without pytest-xdist workers*"])


def test_a_device_only_a_worker_cannot_use_fails_its_tests_and_ends(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose environment differs from the controller's (``--tx popen//env:``) is
    the first to see that its device cannot be pinned. It fails each of its tests with the
    problem; a worker that refused to start was replaced by xdist without end. The
    controller's list holds device 1 whatever the machine (NVML is not asked)."""
    pytest.importorskip("xdist")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile("def test_a(): pass\n\ndef test_b(): pass\n")
    result = pytester.runpytest_subprocess(
        "--tx",
        "popen//env:CUDA_VISIBLE_DEVICES=3",
        "--dist",
        "load",
        "--cgmem-devices=1",
        "-p",
        "no:randomly",
        timeout=60,
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["--cgmem-devices='1': device 1 is not among CUDA_VISIBLE_DEVICES='3' (worker gw0)"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_devices_with_a_dist_mode_but_no_worker_are_warned_about(
    pytester: pytest.Pytester,
) -> None:
    """``--dist load`` without ``-n`` or ``--tx`` starts no worker: xdist runs the tests in
    this process."""
    pytest.importorskip("xdist")
    with pytest.raises(pytest.UsageError, match=r"^cgmem: --cgmem-devices does nothing without"):
        pytester.parseconfigure("-W", "error", "--dist", "load", "--cgmem-devices=0")


def test_a_warning_for_an_option_that_does_nothing_comes_from_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    """Issued from ``pytest_cgmem.plugin``, not from pluggy's caller: a warning filter that
    names the module picks it, and pytest's summary points at the plugin."""
    filter_ours = "error::pytest.PytestConfigWarning:pytest_cgmem.plugin"
    with pytest.raises(pytest.UsageError, match=r"^cgmem: --cgmem-stacks does nothing without"):
        pytester.parseconfigure("-W", filter_ours, "--cgmem-stacks=3")


USAGE_ERRORS = """
import pytest
from pytest_cgmem import assert_all_captured, assert_estimate, assert_sizes_covered
from pytest_cgmem.fixture import CgmemFixture
from pytest_cgmem.results.ranks import DistributedResult, Launch

cgmem = CgmemFixture(lambda region: None)  # what the fixture gives; no CUDA needed here


def work(rank, world_size):
    pass


@pytest.mark.parametrize(
    "call",
    [
        lambda: assert_sizes_covered([1.5], [1]),
        lambda: assert_all_captured([0], [1]),
        lambda: assert_estimate(1, 1, rel="five"),
        lambda: assert_estimate(2.0**70, 1),
        lambda: cgmem.steady("not callable"),
        lambda: cgmem.steady(lambda: None, warmup=-1),
        lambda: cgmem.resize_check(lambda n: None, [1], slack="lots"),
        lambda: cgmem.resize_check(lambda n: None, [1], label="a\\nb"),
        lambda: cgmem.capture_sweep(lambda x: x, [1], lambda n: n, region="a\\nb"),
        lambda: cgmem.capture_sweep(lambda x: x, [0], lambda n: n),
        lambda: cgmem.pool_bytes(5),
        lambda: cgmem.assert_pool_released(5),
        lambda: cgmem.distributed(work, 1, "gloo", timeout=-1),
        lambda: DistributedResult(Launch(1, "gloo", 1.0), {}).check(leak="lots"),
    ],
)
def test_usage(call):
    call()


def test_record(cgmem_record):
    cgmem_record("a", peak=1, device_index=2**80)


@pytest.mark.parametrize(
    "kwargs", [{"backend": "bogus"}, {"timeout": 1e10}, {"label": "a\\nb"}, {"timeout": -1}]
)
def test_distributed(cgmem_distributed, kwargs):
    cgmem_distributed(work, 1, **{"backend": "gloo", **kwargs})
"""


def test_usage_errors_show_the_users_line_not_the_plugins_helpers(
    pytester: pytest.Pytester,
) -> None:
    """A usage error's traceback ends at the user's call: the helpers that judged the
    argument (``__tracebackhide__``) are not shown."""
    pytest.importorskip("torch.distributed")
    pytester.makepyfile(test_usage=USAGE_ERRORS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=long")
    result.assert_outcomes(failed=19)
    output = result.stdout.str()
    raised = [line for line in result.stdout.lines if line.startswith("E   ")]
    assert len(raised) == 19
    assert all(line.split()[1] == "pytest_cgmem.units.CgmemUsageError:" for line in raised)
    shown = [line for line in output.splitlines() if "pytest_cgmem" + "/" in line]
    assert shown == []
