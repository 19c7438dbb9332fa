"""CLI of the causal loop: `chunky train`, `chunky balance`, `chunky experiment`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from chunky.cli_options import AsJsonResult, out_option, overwrite_option, seed_option
from chunky.errors import ConfigError, ExitCode, MissingExtraError

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def _need_train_extra(what: str) -> None:
    import importlib.util

    for mod in ("torch", "transformers", "peft", "trl", "datasets"):
        if importlib.util.find_spec(mod) is None:
            raise MissingExtraError(what, "train" if mod != "datasets" else "hf", mod)


def train(
    mix: Annotated[Path, typer.Argument(help="The training mix: Tülu-schema JSONL (or any format `chunky index` reads).")],
    out: Annotated[Path, out_option("Checkpoint folder (train.json, model/, model.gguf, checkpoints/).")],
    base: Annotated[str, typer.Option("--base", help="local (embedded SmolLM2-135M), a transformers folder, a .gguf file, or a hub id.")] = "local",
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning instead of LoRA.")] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank (alpha = 2 × rank).")] = 16,
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the mix (fractions allowed).")] = 1.0,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Stop after this many optimiser steps (overrides --epochs).")] = -1,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 1e-3 LoRA, 5e-5 full).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per forward pass.")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Batches accumulated per optimiser step.")] = 1,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per example (longer ones are cut).")] = 256,
    seed: Annotated[int, seed_option("Seed of the data order and the LoRA initialisation.")] = 0,
    save_steps: Annotated[int, typer.Option("--save-steps", help="Save a resumable checkpoint every N steps.")] = 20,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads (default 1, or CHUNKY_TRAIN_THREADS).")] = None,
    export: Annotated[str, typer.Option("--export", help="GGUF type of CKPT/model.gguf: q8_0, f16, bf16, f32, or none.")] = "q8_0",
    overwrite: Annotated[bool, overwrite_option("Replace a finished or different training in --out.")] = False,
    as_json: AsJsonResult = False,
) -> None:
    """Fine-tune a model on a mix (LoRA by default); a killed run resumes when rerun with the same command."""
    _need_train_extra("chunky train")
    from chunky.train.trainer import TrainConfig
    from chunky.train.trainer import train as run_train

    cfg = TrainConfig(
        mix=str(mix), out=str(out), base=base, full=full, lora_r=lora_r, lora_alpha=2 * lora_r, epochs=epochs,
        max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
        seed=seed, save_steps=save_steps, threads=threads, export=export,
    )

    reached: list[tuple[int, int]] = []  # (step, total) as the trainer last reported them

    def progress(step: int, total: int, loss: float | None) -> None:
        reached.append((step, total))
        if not as_json:
            err_console.print(f"[dim]step {step}/{total} · loss {loss:.4f}[/dim]", highlight=False)

    from chunky.interrupts import interrupted_line, signals_as_interrupt

    try:
        with warnings.catch_warnings(), signals_as_interrupt():
            warnings.simplefilter("ignore")
            r = run_train(cfg, overwrite=overwrite, progress=progress,
                          log=lambda s: err_console.print(f"[dim]{escape(s)}[/dim]"))
    except KeyboardInterrupt:
        from chunky.train.trainer import saved_progress

        step, total = reached[-1] if reached else (None, None)
        p = saved_progress(out, step, total)
        typer.echo(interrupted_line(p.where(), p.saved(out), resumable=p.checkpoint is not None), err=True)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    if as_json:
        typer.echo(json.dumps({
            "out": r.out, "status": r.status, "steps": r.steps, "first_loss": r.first_loss,
            "last_loss": r.last_loss, "tokens_seen": r.tokens_seen, "tokens_per_s": r.tokens_per_s,
            "train_s": r.train_s, "resumed_from": r.resumed_from, "gguf": r.gguf, "peak_rss_mb": r.peak_rss_mb,
        }))
        return
    tps = f"{r.tokens_per_s:.1f} tokens/s" if r.tokens_per_s else "no new steps"
    resumed = f", resumed from step {r.resumed_from}" if r.resumed_from is not None else ""
    console.print(
        f"trained {r.steps} steps{resumed}: loss {r.first_loss:.4f} → {r.last_loss:.4f} · {tps} · {r.train_s:.0f}s",
        highlight=False,
    )
    if r.gguf:
        console.print(f"model: local:{r.gguf}", highlight=False, markup=False)
    else:
        console.print(f"model: {Path(r.out) / 'model'} (transformers; no GGUF export)", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app: `train`, `balance`, `experiment`."""
    from chunky.train.balance_commands import balance
    from chunky.train.experiment_commands import experiment

    app.command("train")(train)
    app.command("balance")(balance)
    app.command("experiment")(experiment)


__all__ = ["ConfigError", "register"]
