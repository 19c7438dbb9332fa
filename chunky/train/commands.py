"""CLI of the causal loop: `chunky train`, `chunky balance`, `chunky experiment`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from chunky.errors import ConfigError, MissingExtraError

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def _need_train_extra(what: str) -> None:
    import importlib.util

    for mod in ("torch", "transformers", "peft", "trl", "datasets"):
        if importlib.util.find_spec(mod) is None:
            raise MissingExtraError(what, "train" if mod != "datasets" else "hf", mod)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""

    @app.command()
    def train(
        mix: Path = typer.Argument(..., help="The training mix: Tülu-schema JSONL (or any format `chunky index` reads)."),
        out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder (train.json, model/, model.gguf, checkpoints/)."),
        base: str = typer.Option("local", "--base", help="local (embedded SmolLM2-135M), a transformers folder, a .gguf file, or a hub id."),
        full: bool = typer.Option(False, "--full", help="Full fine-tuning instead of LoRA."),
        lora_r: int = typer.Option(16, "--lora-r", help="LoRA rank (alpha = 2 × rank)."),
        epochs: float = typer.Option(1.0, "--epochs", help="Passes over the mix (fractions allowed)."),
        max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many optimiser steps (overrides --epochs)."),
        lr: float | None = typer.Option(None, "--lr", help="Learning rate (default 1e-3 LoRA, 5e-5 full)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Examples per forward pass."),
        grad_accum: int = typer.Option(1, "--grad-accum", help="Batches accumulated per optimiser step."),
        max_length: int = typer.Option(256, "--max-length", help="Tokens per example (longer ones are cut)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the data order and the LoRA initialisation."),
        save_steps: int = typer.Option(20, "--save-steps", help="Save a resumable checkpoint every N steps."),
        threads: int | None = typer.Option(None, "--threads", help="CPU threads (default 1, or CHUNKY_TRAIN_THREADS)."),
        export: str = typer.Option("q8_0", "--export", help="GGUF type of CKPT/model.gguf: q8_0, f16, bf16, f32, or none."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished or different training in --out."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
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

        def progress(step: int, total: int, loss: float | None) -> None:
            if not as_json:
                err_console.print(f"[dim]step {step}/{total} · loss {loss:.4f}[/dim]", highlight=False)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = run_train(cfg, overwrite=overwrite, progress=progress,
                          log=lambda s: err_console.print(f"[dim]{escape(s)}[/dim]"))
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

    from chunky.train import balance_commands, experiment_commands

    balance_commands.register(app)
    experiment_commands.register(app)



__all__ = ["ConfigError", "register"]
