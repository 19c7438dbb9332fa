"""The options several chunky commands share, declared once.

Two kinds, both used as `Annotated[T, ...]` parameter types of the module-level command functions
(`chunky/<area>/commands.py`):
- an alias such as `NoCache` or `AsJsonResult` is a whole option: flag, type and help text. Commands use it where
  the option means the same thing with the same words; each command still sets its own default.
- a maker such as `seed_option(help)` or `out_option(help)` fixes a flag's spelling and short form; commands whose
  help text says what the flag means for them (the seed of *what*, the output *which*) pass their own words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.models import ArgumentInfo, OptionInfo


def _option(*decls: str, help: str, min: int | None = None) -> OptionInfo:
    # `typer.Option` is typed `-> Any` (it doubles as a default value); under `Annotated` it is an OptionInfo whose
    # first positional is read as the first flag.
    info: OptionInfo = typer.Option(*decls, help=help, min=min)
    return info


# Makers.


def json_option(help: str) -> OptionInfo:
    return _option("--json", help=help)


def seed_option(help: str) -> OptionInfo:
    return _option("--seed", help=help)


def no_cache_option(help: str) -> OptionInfo:
    return _option("--no-cache", help=help)


def out_option(help: str, *, short: bool = True) -> OptionInfo:
    """`--out` / `-o`; `short=False` for the commands that never took `-o`."""
    decls = ("--out", "-o") if short else ("--out",)
    return _option(*decls, help=help)


def overwrite_option(help: str) -> OptionInfo:
    return _option("--overwrite", help=help)


def model_option(help: str, *, short: bool = False) -> OptionInfo:
    """`--model` (a model spec, see `chunky models`); `-m` where a command's main input is the model."""
    decls = ("--model", "-m") if short else ("--model",)
    return _option(*decls, help=help)


def target_option(help: str, *, short: bool = False) -> OptionInfo:
    decls = ("--target", "-t") if short else ("--target",)
    return _option(*decls, help=help)


def generator_option(help: str) -> OptionInfo:
    return _option("--generator", help=help)


def judge_option(help: str) -> OptionInfo:
    return _option("--judge", help=help)


def top_option(help: str, *, min: int | None = None) -> OptionInfo:
    return _option("--top", help=help, min=min)


def min_score_option(help: str) -> OptionInfo:
    return _option("--min-score", help=help)


def from_run_option(help: str) -> OptionInfo:
    return _option("--from-run", help=help)


def samples_option(help: str, *, short: str | None = None) -> OptionInfo:
    decls = ("--samples", short) if short else ("--samples",)
    return _option(*decls, help=help)


def temperature_option(help: str) -> OptionInfo:
    return _option("--temperature", help=help)


def max_tokens_option(help: str) -> OptionInfo:
    return _option("--max-tokens", help=help)


def concurrency_option(help: str) -> OptionInfo:
    return _option("--concurrency", help=help)


def limit_option(help: str) -> OptionInfo:
    return _option("--limit", help=help)


# Aliases: options that are the same in every command using them.

AsJsonResult = Annotated[bool, json_option("Print the result as JSON.")]
AsJsonManifest = Annotated[bool, json_option("Print the manifest as JSON.")]
AsJsonSame = Annotated[bool, json_option("Print the same as JSON.")]
NoCache = Annotated[bool, no_cache_option("Do not read or write the call cache.")]
OverwriteOut = Annotated[bool, overwrite_option("Replace an existing --out file.")]
PerExample = Annotated[bool, _option("--per-example", help="Also print the per-example table.")]
CaseSensitive = Annotated[bool, _option("--case-sensitive", help="Match case exactly (default: ignore case).")]
FromRunTop = Annotated[int, top_option("With --from-run: how many top findings.")]
SuiteMaxTokens = Annotated[
    int | None, max_tokens_option("Max tokens of each target response (default: the suite's).")
]


def _argument(help: str) -> ArgumentInfo:
    info: ArgumentInfo = typer.Argument(help=help)
    return info


RunDirArg = Annotated[Path, _argument("A SURF run directory.")]
IndexDirArg = Annotated[Path, _argument("A TURF index directory.")]
