"""The command line describes itself truthfully: `--version` from the package metadata, a help text on every
option and no `<bool>` after a flag, `steer --help` naming every built-in eval set, `report` that will not
overwrite, and rubrics that accept both spellings of behaviour."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

import typer

from helpers import ROOT, run_cli


def all_commands():
    from chunky.cli import app

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    yield from walk(typer.main.get_command(app), [])


def test_version_comes_from_the_package_metadata_which_is_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"chunky {version('chunky')}" == f"chunky {declared}"
    import chunky

    assert chunky.__version__ == declared


def test_every_option_of_every_command_has_a_help_text():
    missing = [
        f"chunky {' '.join(path)} {p.opts[0]}"
        for path, cmd in all_commands()
        for p in cmd.params
        if p.param_type_name == "option" and p.name != "help" and not (p.help or "").strip()
    ]
    assert missing == []


def test_help_shows_no_type_after_a_flag():
    for words in (["surf"], ["top"], ["report"], ["cache", "clear"], []):
        r = run_cli(*words, "--help", env={"COLUMNS": "200"})
        assert r.returncode == 0 and "--help" in r.stdout
        assert "<bool>" not in r.stdout, " ".join(words)


def test_steer_help_lists_every_built_in_eval_set():
    from chunky.measure.evalset import builtin_sets

    r = run_cli("steer", "--help", env={"COLUMNS": "400"})
    assert r.returncode == 0
    text = " ".join(r.stdout.replace("│", " ").split())
    assert len(builtin_sets()) >= 3
    for name in builtin_sets():
        assert name in text, name


def test_report_refuses_to_overwrite_without_overwrite(tmp_path):
    run = tmp_path / "run"
    made = run_cli("surf", "--rubric", "code", "--target", "mock", "--generator", "mock", "--judge", "mock", "--runs", "1",
                   "--iterations", "1", "--candidates", "3", "--out", str(run), "--quiet")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "report.html"
    out.write_text("my notes")
    r = run_cli("report", str(run), "--out", str(out))
    assert r.returncode == 1 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert out.read_text() == "my notes"
    r = run_cli("report", str(run), "--out", str(out), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert out.read_text().lstrip().lower().startswith("<!doctype html")


def test_rubrics_accept_behaviour_and_behavior_in_both_formats():
    from chunky.surf.rubric import parse_rubric

    band = [{"range": [0, 100], "label": "any", "description": "d"}]
    for key in ("behaviour", "behavior"):
        ours = parse_rubric({"name": "x", key: "says no", "principle": "p", "scoring": band})
        assert ours.behaviour == "says no"
        authors = parse_rubric({"principle_specific_details": "PRINCIPLE:\nBe kind.", key: "says no"})
        assert authors.behaviour == "says no"
