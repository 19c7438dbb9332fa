"""The README's commands run as written: every `chunky` line in its bash blocks names a real command with real
options, no line pipes one chunky command into another by accident ("a | b" meaning "or"), and its rubric
example is a valid rubric. Checked against the real Typer app, so new README sections are covered too."""

from __future__ import annotations

import re
import shlex

import pytest
import typer
import yaml

from helpers import ROOT, run_cli

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(README.read_text(encoding="utf-8")) if kind == lang]


def command_lines() -> list[str]:
    """Each shell command of the bash blocks, continuation lines joined, comments kept out."""
    lines: list[str] = []
    for body in blocks("bash"):
        pending = ""
        for raw in body.splitlines():
            line = pending + raw
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            pending = ""
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def segments(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at |, ||, &&, ; (outside quotes), comments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = "#"
    out: list[list[str]] = [[]]
    for tok in lex:
        if tok in ("|", "||", "&&", ";", "&"):
            out.append([])
        else:
            out[-1].append(tok)
    return [s for s in out if s]


def chunky_lines() -> list[str]:
    return [line for line in command_lines() if any(seg[0] == "chunky" for seg in segments(line))]


def resolve(words: list[str]):
    """The click command a `chunky ...` line runs, and the words after its name."""
    from chunky.cli import app

    cmd = typer.main.get_command(app)
    rest = words[1:]
    while hasattr(cmd, "commands") and rest:
        if rest[0] in cmd.commands:
            cmd, rest = cmd.commands[rest[0]], rest[1:]
        elif "build" in cmd.commands and not rest[0].startswith("-"):  # `chunky index DATA` = `index build DATA`
            cmd = cmd.commands["build"]
        else:
            break
    return cmd, rest


def test_the_readme_has_chunky_commands_to_check():
    assert len(chunky_lines()) >= 30


@pytest.mark.parametrize("line", command_lines())
def test_no_command_line_is_the_unmarked_continuation_of_the_one_before(line):
    # A wrapped command needs a trailing backslash; without it, the second line runs on its own.
    assert not line.startswith(("-", "[")), f"continues the previous line without a backslash: {line}"


@pytest.mark.parametrize("line", chunky_lines())
def test_every_chunky_line_names_a_real_command_and_real_options(line):
    segs = segments(line)
    # `chunky a | chunky b` pipes a's output into b: in a README it means "or", and copied it runs b.
    for prev, seg in zip(segs, segs[1:]):
        assert not (prev[0] == "chunky" and seg[0] == "chunky"), f"pipes one chunky command into another: {line}"
    for seg in segs:
        if seg[0] != "chunky":
            continue
        cmd, rest = resolve(seg)
        assert not hasattr(cmd, "commands"), f"no such chunky command: {' '.join(seg[:3])} ({line})"
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for tok in rest:
            # `[--n 20]`, `--format markdown|csv|json`: the brackets and alternatives are documentation
            flag = tok.strip("[]").split("=", 1)[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", flag):
                assert flag in known, f"`chunky {cmd.name}` has no option {flag} ({line})"


def test_a_readme_command_line_parses_in_the_real_console_script():
    # --help-level: the installed script accepts the README's command path.
    for words in (["surf"], ["index", "info"], ["cache", "clear"], ["rubrics", "show"]):
        r = run_cli(*words, "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout, r.stderr


def test_the_readme_rubric_example_is_a_valid_rubric():
    from chunky.surf.rubric import parse_rubric

    examples = [b for b in blocks("yaml") if "scoring:" in b]
    assert examples
    for body in examples:
        r = parse_rubric(yaml.safe_load(body), "README.md")
        assert r.scoring and all(0 <= b.low <= b.high <= 100 for b in r.scoring)
