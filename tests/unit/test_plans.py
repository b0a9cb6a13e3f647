"""Plan files into TestRequests, and the errors a bad plan gives (DESIGN §3)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from parallel_orch import PlanError, load_plans
from parallel_orch.plans import DEFAULT_TIMEOUT_SECONDS, parse_duration


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def plan_error(paths: Path | list[Path]) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_plans(paths)
    return info.value


# -- loading ---------------------------------------------------------------


def test_toml_plan_loads_tests_with_path_prefixed_ids(tmp_path: Path) -> None:
    """A .toml plan's tests become requests with ids `<plan path>::<id>` and their commands."""
    write(
        tmp_path,
        "plans/unit.toml",
        """
        [[test]]
        id = "core"
        run = "python -m pytest -q tests/core"

        [[test]]
        id = "cli"
        run = ["python", "-m", "pytest", "tests/cli"]
        """,
    )
    requests = load_plans(tmp_path / "plans")
    assert [r.id for r in requests] == ["unit::core", "unit::cli"]
    assert requests[0].command == "python -m pytest -q tests/core"
    assert requests[1].command == ("python", "-m", "pytest", "tests/cli")
    assert requests[0].plan_path == (tmp_path / "plans/unit.toml").as_posix()


def test_plan_without_settings_gets_the_defaults(tmp_path: Path) -> None:
    """Unset keys default: ref HEAD, cwd '.', no retries, category from the plan's first folder."""
    write(tmp_path, "plans/smoke/quick.toml", '[[test]]\nid = "t"\nrun = "true"\n')
    (request,) = load_plans(tmp_path / "plans", default_timeout=42.0)
    assert request.id == "smoke/quick::t"
    assert request.ref == "HEAD"
    assert request.cwd == "."
    assert request.retries == 0
    assert request.priority == 0
    assert request.timeout_seconds == 42.0
    assert request.category == "smoke"
    assert request.env == {}
    assert request.setup is None
    assert request.keep == ()
    assert request.junit is False


def test_load_plans_default_timeout_is_ten_minutes(tmp_path: Path) -> None:
    """Without a timeout anywhere a test gets DEFAULT_TIMEOUT_SECONDS (600 s)."""
    plan = write(tmp_path, "p.toml", '[[test]]\nid = "t"\nrun = "true"\n')
    (request,) = load_plans(plan)
    assert request.timeout_seconds == DEFAULT_TIMEOUT_SECONDS == 600.0


def test_defaults_table_applies_and_tests_override_it(tmp_path: Path) -> None:
    """[defaults] applies to every test; a test's own key wins; env tables are merged."""
    write(
        tmp_path,
        "plans/unit.toml",
        """
        [defaults]
        ref = "main"
        timeout = "5m"
        retries = 2
        category = "fast"
        env = { PYTHONHASHSEED = "0", MODE = "default" }
        setup = "make deps"
        keep = [".venv/"]
        priority = 3
        cwd = "src"

        [[test]]
        id = "inherits"
        run = "true"

        [[test]]
        id = "overrides"
        run = "true"
        ref = "v1.0"
        timeout = 90
        retries = 0
        category = "slow"
        env = { MODE = "own" }
        setup = "make other"
        keep = ["build/"]
        priority = 7
        cwd = "docs"
        junit = true
        """,
    )
    inherits, overrides = load_plans(tmp_path / "plans")
    assert inherits.ref == "main"
    assert inherits.timeout_seconds == 300.0
    assert inherits.retries == 2
    assert inherits.category == "fast"
    assert inherits.env == {"PYTHONHASHSEED": "0", "MODE": "default"}
    assert inherits.setup == "make deps"
    assert inherits.keep == (".venv/",)
    assert inherits.priority == 3
    assert inherits.cwd == "src"
    assert inherits.junit is False

    assert overrides.ref == "v1.0"
    assert overrides.timeout_seconds == 90.0
    assert overrides.retries == 0
    assert overrides.category == "slow"
    assert overrides.env == {"PYTHONHASHSEED": "0", "MODE": "own"}
    assert overrides.setup == "make other"
    assert overrides.keep == ("build/",)
    assert overrides.priority == 7
    assert overrides.cwd == "docs"
    assert overrides.junit is True


def test_refs_matrix_makes_one_request_per_ref(tmp_path: Path) -> None:
    """`refs = [...]` runs the test once per ref, with `@<ref>` appended to the id."""
    write(
        tmp_path,
        "plans/m.toml",
        '[[test]]\nid = "cli"\nrun = "true"\nrefs = ["main", "feature/x", "HEAD~1"]\n',
    )
    requests = load_plans(tmp_path / "plans")
    assert [(r.id, r.ref) for r in requests] == [
        ("m::cli@main", "main"),
        ("m::cli@feature/x", "feature/x"),
        ("m::cli@HEAD~1", "HEAD~1"),
    ]


def test_refs_matrix_in_defaults_applies_to_every_test(tmp_path: Path) -> None:
    """`refs` in [defaults] expands each test; a test's own `ref` opts out of the matrix."""
    write(
        tmp_path,
        "plans/m.toml",
        """
        [defaults]
        refs = ["main", "dev"]

        [[test]]
        id = "a"
        run = "true"

        [[test]]
        id = "b"
        run = "true"
        ref = "v2"
        """,
    )
    a_main, a_dev, b = load_plans(tmp_path / "plans")
    assert [(a_main.id, a_main.ref), (a_dev.id, a_dev.ref)] == [
        ("m::a@main", "main"),
        ("m::a@dev", "dev"),
    ]
    assert (b.id, b.ref) == ("m::b", "v2")
    assert b.id.startswith("m::b")


def test_repeat_runs_a_test_n_times_with_numbered_ids(tmp_path: Path) -> None:
    """`repeat = 3` makes three requests `#1`..`#3`; with a matrix the ids are `@ref#n`."""
    write(
        tmp_path,
        "plans/r.toml",
        """
        [[test]]
        id = "probe"
        run = "true"
        repeat = 3

        [[test]]
        id = "both"
        run = "true"
        refs = ["main", "dev"]
        repeat = 2
        """,
    )
    ids = [r.id for r in load_plans(tmp_path / "plans")]
    assert ids == [
        "r::probe#1",
        "r::probe#2",
        "r::probe#3",
        "r::both@main#1",
        "r::both@main#2",
        "r::both@dev#1",
        "r::both@dev#2",
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(45, 45.0), (2.5, 2.5), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0)],
)
def test_durations_accept_seconds_and_units(value: float | str, seconds: float) -> None:
    """Timeouts are seconds or strings with h/m/s units."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "", 0, -3, "0s", True])
def test_bad_durations_are_rejected(value: float | str) -> None:
    """A duration that is not positive seconds or h/m/s is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_timeout_strings_in_plans(tmp_path: Path) -> None:
    """`timeout = "90s"` and `"5m"` in a plan become 90 and 300 seconds."""
    write(
        tmp_path,
        "p.toml",
        '[[test]]\nid = "a"\nrun = "true"\ntimeout = "90s"\n\n'
        '[[test]]\nid = "b"\nrun = "true"\ntimeout = "5m"\n',
    )
    assert [r.timeout_seconds for r in load_plans(tmp_path / "p.toml")] == [90.0, 300.0]


def test_markdown_plan_runs_its_shell_blocks_in_order(tmp_path: Path) -> None:
    """A .md plan: TOML front matter, and its sh/bash blocks (not others) joined as the command."""
    write(
        tmp_path,
        "plans/docs/howto.md",
        """
        +++
        timeout = "90s"
        category = "docs"
        env = { LANG = "C" }
        +++
        # How to build

        First install:

        ```sh
        make deps
        ```

        This block is only an example:

        ```python
        print("not run")
        ```

        Then test:

        ```bash
        make test
        make lint
        ```
        """,
    )
    (request,) = load_plans(tmp_path / "plans")
    assert request.id == "docs/howto::howto"
    assert request.timeout_seconds == 90.0
    assert request.category == "docs"
    assert request.env == {"LANG": "C"}
    assert isinstance(request.command, str)
    assert request.command.splitlines() == ["set -e", "make deps", "make test", "make lint"]


def test_markdown_front_matter_can_name_the_test_and_its_command(tmp_path: Path) -> None:
    """Front matter `id` and `run` win over the file stem and the code blocks."""
    write(
        tmp_path,
        "guide.md",
        '+++\nid = "guide-check"\nrun = ["make", "check"]\n+++\n\n```sh\nignored\n```\n',
    )
    (request,) = load_plans(tmp_path / "guide.md")
    assert request.id == "guide::guide-check"
    assert request.command == ("make", "check")


def test_directory_discovery_is_recursive_and_sorted(tmp_path: Path) -> None:
    """A plan dir yields plans from every subfolder, sorted by path; other files are ignored."""
    plans = tmp_path / "plans"
    for rel in ["zeta.toml", "alpha/b.toml", "alpha/a.toml", "mid/deep/x.toml"]:
        write(plans, rel, '[[test]]\nid = "t"\nrun = "true"\n')
    write(plans, "README.md", "# Plans\n\nNot a plan: no front matter.\n")
    write(plans, "notes.txt", "ignored")
    write(plans, "alpha/c.md", '+++\nrun = "true"\n+++\n')
    ids = [r.id for r in load_plans(plans)]
    assert ids == ["alpha/a::t", "alpha/b::t", "alpha/c::c", "mid/deep/x::t", "zeta::t"]


def test_several_paths_load_in_the_order_given(tmp_path: Path) -> None:
    """Files and directories given together load in argument order."""
    one = write(tmp_path, "one.toml", '[[test]]\nid = "t"\nrun = "true"\n')
    write(tmp_path, "dir/two.toml", '[[test]]\nid = "t"\nrun = "true"\n')
    assert [r.id for r in load_plans([tmp_path / "dir", one])] == ["two::t", "one::t"]


# -- errors ------------------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A TOML syntax error is a PlanError with the file and the line TOML reports."""
    plan = write(tmp_path, "bad.toml", '[[test]]\nid = "a"\nrun = "true\n')
    error = plan_error(plan)
    assert error.path == str(plan)
    assert error.line == 3
    assert str(error).startswith(f"{plan}:3: ")
    assert "TOML" in str(error)


def test_unknown_key_names_the_key_and_its_line(tmp_path: Path) -> None:
    """A misspelt key is rejected with its line and the list of allowed keys."""
    plan = write(
        tmp_path,
        "p.toml",
        '[[test]]\nid = "ok"\nrun = "true"\n\n[[test]]\nid = "b"\nrun = "true"\ntimout = 5\n',
    )
    error = plan_error(plan)
    assert error.path == str(plan)
    assert error.line == 8
    assert "'timout'" in str(error)
    assert "unknown key" in str(error)
    assert "timeout" in str(error)  # the allowed keys are listed


def test_unknown_key_in_defaults_names_its_line(tmp_path: Path) -> None:
    """An unknown key in [defaults] is reported at its line."""
    plan = write(tmp_path, "p.toml", '[defaults]\nretires = 1\n\n[[test]]\nid = "a"\nrun = "x"\n')
    error = plan_error(plan)
    assert (error.path, error.line) == (str(plan), 2)
    assert "[defaults]" in str(error)
    assert "'retires'" in str(error)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('retries = "two"', "retries"),
        ("junit = 1", "junit"),
        ("env = { A = 1 }", "env"),
        ('timeout = "soon"', "timeout"),
        ('priority = "high"', "priority"),
        ("keep = '.venv/'", "keep"),
    ],
)
def test_wrong_type_names_key_and_line(tmp_path: Path, line: str, key: str) -> None:
    """A value of the wrong type is a PlanError naming the key and its line."""
    plan = write(tmp_path, "p.toml", f'[[test]]\nid = "a"\nrun = "true"\n{line}\n')
    error = plan_error(plan)
    assert (error.path, error.line) == (str(plan), 4)
    assert f"'{key}'" in str(error)


def test_missing_run_is_reported(tmp_path: Path) -> None:
    """A test without `run` is a PlanError naming the key."""
    plan = write(tmp_path, "p.toml", '[[test]]\nid = "a"\n')
    error = plan_error(plan)
    assert error.path == str(plan)
    assert "'run'" in str(error)
    assert "missing" in str(error)


def test_duplicate_id_in_one_file_points_at_the_duplicate(tmp_path: Path) -> None:
    """Two tests with one id: PlanError naming the id, the file and the second definition's line."""
    plan = write(
        tmp_path,
        "p.toml",
        '[[test]]\nid = "same"\nrun = "true"\n\n[[test]]\nid = "same"\nrun = "false"\n',
    )
    error = plan_error(plan)
    assert error.path == str(plan)
    assert error.line == 6
    assert "duplicate" in str(error)
    assert "'p::same'" in str(error)


def test_duplicate_id_across_files_names_both_files(tmp_path: Path) -> None:
    """The same id from two plan files (a.toml and a.md) names both files."""
    toml_plan = write(tmp_path, "plans/a.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    md_plan = write(tmp_path, "plans/a.md", '+++\nrun = "true"\n+++\n')
    error = plan_error(tmp_path / "plans")
    assert "duplicate" in str(error)
    assert str(toml_plan) in str(error)
    assert str(md_plan) in str(error)


def test_duplicate_ids_from_a_repeated_matrix_ref_are_rejected(tmp_path: Path) -> None:
    """A matrix listing one ref twice would make two identical ids: a PlanError."""
    plan = write(tmp_path, "p.toml", '[[test]]\nid = "a"\nrun = "true"\nrefs = ["main", "main"]\n')
    error = plan_error(plan)
    assert error.path == str(plan)
    assert "duplicate" in str(error)


@pytest.mark.parametrize("test_id", ["has space", "semi;colon", "dollar$", "star*", "ümlaut", ""])
def test_bad_id_characters_are_rejected(tmp_path: Path, test_id: str) -> None:
    """Ids may only use letters, digits and . _ : / -; anything else is a PlanError at its line."""
    plan = write(tmp_path, "p.toml", f'[[test]]\nrun = "true"\nid = "{test_id}"\n')
    error = plan_error(plan)
    assert (error.path, error.line) == (str(plan), 3)
    assert "'id'" in str(error)


@pytest.mark.parametrize("cwd", ["..", "../sibling", "src/../..", "/etc"])
def test_cwd_leaving_the_worktree_is_rejected(tmp_path: Path, cwd: str) -> None:
    """A `cwd` that is absolute or climbs out of the worktree is a PlanError at its line."""
    plan = write(
        tmp_path,
        "p.toml",
        '[[test]]\nid = "fine"\nrun = "true"\n\n'
        f'[[test]]\nid = "escape"\nrun = "true"\ncwd = "{cwd}"\n',
    )
    error = plan_error(plan)
    assert error.path == str(plan)
    assert error.line == 8  # the key's own line, not its table's
    assert "'escape'" in str(error)
    assert "cwd" in str(error)


def test_cwd_inside_the_worktree_is_fine(tmp_path: Path) -> None:
    """A `cwd` that climbs but stays inside the worktree is accepted."""
    plan = write(tmp_path, "p.toml", '[[test]]\nid = "a"\nrun = "true"\ncwd = "src/../docs"\n')
    assert load_plans(plan)[0].cwd == "src/../docs"


@pytest.mark.parametrize("run", ['""', '"   "', "[]", '[""]'])
def test_empty_run_is_rejected(tmp_path: Path, run: str) -> None:
    """An empty `run` (string or list) is a PlanError naming the test."""
    plan = write(tmp_path, "p.toml", f'[[test]]\nid = "a"\nrun = {run}\n')
    error = plan_error(plan)
    assert error.path == str(plan)
    assert "'run'" in str(error)
    assert "empty" in str(error)


def test_plan_without_tests_is_rejected(tmp_path: Path) -> None:
    """A plan file that defines no [[test]] is a PlanError rather than a silent no-op."""
    plan = write(tmp_path, "p.toml", "[defaults]\nretries = 1\n")
    error = plan_error(plan)
    assert error.path == str(plan)
    assert "no tests" in str(error)


def test_ref_and_refs_together_are_rejected(tmp_path: Path) -> None:
    """A test may set `ref` or `refs`, not both."""
    plan = write(tmp_path, "p.toml", '[[test]]\nid = "a"\nrun = "x"\nref = "a"\nrefs = ["b"]\n')
    error = plan_error(plan)
    assert (error.path, error.line) == (str(plan), 1)
    assert "refs" in str(error)


def test_one_bad_plan_rejects_the_whole_directory(tmp_path: Path) -> None:
    """One invalid file fails the whole load: nothing is half-submitted."""
    write(tmp_path, "plans/a_good.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    bad = write(tmp_path, "plans/z_bad.toml", '[[test]]\nid = "a"\n')
    error = plan_error(tmp_path / "plans")
    assert error.path == str(bad)


def test_missing_path_and_non_plan_file_are_plan_errors(tmp_path: Path) -> None:
    """A path that does not exist, or a file that is not .toml/.md, is a PlanError naming it."""
    missing = tmp_path / "nope"
    assert plan_error(missing).path == str(missing)
    other = write(tmp_path, "plan.yaml", "test: []\n")
    error = plan_error(other)
    assert error.path == str(other)
    assert ".toml" in str(error)


def test_markdown_plan_errors(tmp_path: Path) -> None:
    """A .md plan without front matter, unclosed front matter, or no shell block is a PlanError."""
    no_front = write(tmp_path, "a.md", "# Title\n\n```sh\ntrue\n```\n")
    unclosed = write(tmp_path, "b.md", '+++\nid = "x"\n')
    no_block = write(tmp_path, "c.md", "+++\ntimeout = 5\n+++\nJust prose.\n")
    assert "+++" in str(plan_error(no_front))
    assert "not closed" in str(plan_error(unclosed))
    assert "```sh" in str(plan_error(no_block))


def test_markdown_front_matter_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A TOML error in Markdown front matter names the .md file."""
    plan = write(tmp_path, "doc.md", "+++\ntimeout = = 5\n+++\n```sh\ntrue\n```\n")
    error = plan_error(plan)
    assert error.path == str(plan)
    assert "TOML" in str(error)


@pytest.mark.parametrize("value", ["0", "10001", "1000000000", "2.5", "true"])
def test_a_bad_repeat_is_a_plan_error_at_its_line(tmp_path: Path, value: str) -> None:
    """repeat = 0, over 10,000, fractional or a boolean: one line, at the key's line."""
    plan = write(tmp_path, "p.toml", f'[[test]]\nid = "a"\nrun = "true"\nrepeat = {value}\n')
    error = plan_error(plan)
    assert "repeat must be a whole number from 1 to 10000" in str(error)
    assert "Value error" not in str(error)
    assert error.line == 4


def test_refs_times_repeat_is_bounded(tmp_path: Path) -> None:
    """A matrix of 3 refs repeated 4,000 times (12,000 runs of one test) is refused."""
    plan = write(
        tmp_path,
        "p.toml",
        '[[test]]\nid = "a"\nrun = "true"\nrefs = ["a", "b", "c"]\nrepeat = 4000\n',
    )
    assert "12000 runs of one test; at most 10000" in str(plan_error(plan))


@pytest.mark.parametrize(
    ("given", "keyed"),
    [
        ("./requirements.lock", "requirements.lock"),
        ("sub//x.lock", "sub/x.lock"),
        ("sub/./x.lock", "sub/x.lock"),
        ("src/", "src"),
        ("app/[slug]/page.tsx", "app/[slug]/page.tsx"),  # brackets are a real name's
    ],
)
def test_setup_inputs_are_keyed_as_git_names_them(tmp_path: Path, given: str, keyed: str) -> None:
    """`./a`, `a//b`, `a/./b` and `src/` name what git calls `a`, `a/b` and `src`."""
    write(
        tmp_path,
        "p.toml",
        f'[[test]]\nid = "a"\nrun = "true"\nsetup = "true"\nsetup_inputs = ["{given}"]\n',
    )
    (request,) = load_plans([tmp_path])
    assert request.setup_inputs == (keyed,)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (".", "must name a file or folder inside the repo"),
        ("./", "must name a file or folder inside the repo"),
        ("a/../..", "must name a file or folder inside the repo"),
        ("/etc/passwd", "must name a file or folder inside the repo"),
        ("*.lock", "is a pattern"),
        ("requirements-?.txt", "is a pattern"),
    ],
)
def test_a_setup_input_that_names_nothing_is_a_plan_error(
    tmp_path: Path, given: str, says: str
) -> None:
    """The whole repo, a path outside it or a glob pattern: an error at its line, not a key
    that silently counts the input as absent."""
    plan = write(
        tmp_path,
        "p.toml",
        f'[[test]]\nid = "a"\nrun = "true"\nsetup = "true"\nsetup_inputs = ["{given}"]\n',
    )
    error = plan_error(plan)
    assert says in str(error)
    assert error.line == 5


def test_setup_inputs_without_a_setup(tmp_path: Path) -> None:
    """A test's own setup_inputs with no setup is an error; [defaults]' reach only the tests
    that have a setup."""
    plan = write(
        tmp_path, "p.toml", '[[test]]\nid = "a"\nrun = "true"\nsetup_inputs = ["x.lock"]\n'
    )
    assert "setup_inputs key a setup, and there is none" in str(plan_error(plan))
    plan.write_text(
        '[defaults]\nsetup_inputs = ["x.lock"]\n\n'
        '[[test]]\nid = "plain"\nrun = "true"\n\n'
        '[[test]]\nid = "built"\nrun = "true"\nsetup = "make"\n'
    )
    plain, built = load_plans([tmp_path])
    assert (plain.setup_inputs, built.setup_inputs) == ((), ("x.lock",))
