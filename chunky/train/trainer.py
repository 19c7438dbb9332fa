"""`chunky train`: supervised fine-tuning of a causal LM on a mix with TRL's SFTTrainer.

LoRA (peft) by default, full fine-tuning with `full=True`. Loss on assistant tokens only (masks from the base
model's chat template, see chunky.train.data). CPU by default with a fixed thread count, CUDA when present.

The checkpoint directory:
```
CKPT/
  train.json        config, base, mix (path, sha256, rows, manifest), versions, seed, device, threads, status,
                    loss curve, tokens/s, elapsed
  loss.jsonl        one line per logged step, written while training runs
  checkpoints/      Trainer checkpoints (checkpoint-<step>/) every save_steps: a killed run resumes from the last
  adapter/          the LoRA adapter (LoRA runs)
  model/            the trained model as a transformers checkpoint (LoRA merged in), tokenizer included
  model.gguf        the same model for llama.cpp (`local:CKPT/model.gguf`), unless export is off
```
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chunky.errors import ChunkyError, ConfigError
from chunky.train.base import ResolvedBase, resolve_base
from chunky.train.data import TokenizedExample, load_mix, mix_sha256, tokenize_mix

FORMAT = "chunky-train"
VERSION = 1
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Settings whose change makes a checkpoint a different training: a resume with another value is refused.
_IDENTITY = ("base", "full", "lora_r", "lora_alpha", "lora_dropout", "epochs", "max_steps", "lr", "batch_size",
             "grad_accum", "max_length", "seed", "warmup_steps", "scheduler", "weight_decay")


@dataclass
class TrainConfig:
    mix: str
    out: str
    base: str = "local"
    full: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    lr: float | None = None  # None: 1e-3 for LoRA, 5e-5 for full fine-tuning
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    seed: int = 0
    warmup_steps: int = 0
    scheduler: str = "linear"
    weight_decay: float = 0.0
    save_steps: int = 20
    threads: int | None = None  # None: CHUNKY_TRAIN_THREADS, else 1 (measured faster on a shared 2-core box)
    export: str = "q8_0"  # GGUF type for model.gguf (f32, f16, bf16, q8_0) or "none"
    # Recompute activations in the backward pass: less memory for one more forward pass per step. Off by default,
    # unlike TRL's default: a small model's activations fit, and on cost a third of the throughput (0.66 in
    # bench/train.py on SmolLM2-135M).
    gradient_checkpointing: bool = False

    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 5e-5 if self.full else 1e-3

    def effective_threads(self) -> int:
        if self.threads:
            return self.threads
        return int(os.environ.get("CHUNKY_TRAIN_THREADS", "1"))

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        d["lr"] = self.effective_lr()
        return {k: d[k] for k in _IDENTITY}

    def check(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("--batch-size and --grad-accum must be at least 1")
        if self.max_length < 8:
            raise ConfigError("--max-length must be at least 8 tokens")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("--epochs must be above 0 (or give --max-steps)")
        if self.effective_lr() <= 0:
            raise ConfigError("--lr must be above 0")
        if self.save_steps < 1:
            raise ConfigError("--save-steps must be at least 1")
        if self.export not in ("none", "f32", "f16", "bf16", "q8_0"):
            raise ConfigError(f"--export '{self.export}': use q8_0, f16, bf16, f32 or none")


@dataclass
class LossPoint:
    step: int
    epoch: float
    loss: float
    lr: float

    @classmethod
    def from_log(cls, d: dict[str, Any]) -> LossPoint | None:
        if "loss" not in d or "step" not in d:
            return None
        return cls(int(d["step"]), float(d.get("epoch") or 0.0), float(d["loss"]), float(d.get("learning_rate") or 0.0))


@dataclass
class TrainResult:
    out: str
    status: str  # done | running
    steps: int
    loss_curve: list[LossPoint]
    tokens_seen: int
    tokens_per_s: float | None
    train_s: float
    resumed_from: int | None
    gguf: str | None
    peak_rss_mb: float | None = None
    export_s: float | None = None
    step_timings: list[StepTiming] = field(default_factory=list)  # this session's steps
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steady_tokens_per_s(self) -> float | None:
        return steady_tokens_per_s(self.step_timings)

    @property
    def first_loss(self) -> float | None:
        return self.loss_curve[0].loss if self.loss_curve else None

    @property
    def last_loss(self) -> float | None:
        return self.loss_curve[-1].loss if self.loss_curve else None


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("chunky", "torch", "transformers", "peft", "trl", "accelerate", "gguf"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _mix_manifest(mix: Path) -> dict[str, Any] | None:
    """The manifest `chunky ablate` / `chunky balance` wrote next to the mix, when there is one."""
    from chunky.measure.ablate import manifest_path

    p = manifest_path(mix)
    if p.is_file():
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ConfigError(f"{p}: not valid JSON") from None
    return None


def last_checkpoint(out: Path) -> Path | None:
    d = out / "checkpoints"
    if not d.is_dir():
        return None
    cks = []
    for c in d.glob("checkpoint-*"):
        # A checkpoint is complete once the Trainer wrote its state file (written last).
        if c.is_dir() and (c / "trainer_state.json").is_file():
            try:
                cks.append((int(c.name.split("-")[1]), c))
            except ValueError:
                continue
    return max(cks)[1] if cks else None


@dataclass
class SavedProgress:
    """What a training folder holds right now, read from disk: the last logged step, the step count planned, the
    last complete checkpoint, and whether the training finished."""

    step: int | None
    total: int | None
    checkpoint: int | None
    finished: bool

    def where(self) -> str:
        if self.step is None:
            return "before the first step"
        of = f" of {self.total}" if self.total else ""
        after = " (while saving the model)" if self.total and self.step >= self.total and not self.finished else ""
        return f"after step {self.step}{of}{after}"

    def saved(self, out: Path) -> str:
        if self.finished:
            return f"the finished training is in {out}"
        if self.checkpoint is None:
            return f"no checkpoint yet in {out}"
        return f"checkpoint step {self.checkpoint} saved in {out}"


def saved_progress(out: Path, step: int | None = None, total: int | None = None) -> SavedProgress:
    """The folder's progress, from disk and from `step`/`total` as the running trainer last reported them."""
    ck = last_checkpoint(out)
    ck_step = int(ck.name.split("-")[1]) if ck else None
    if total is None and ck is not None:
        try:
            total = json.loads((ck / "trainer_state.json").read_text()).get("max_steps")
        except (OSError, json.JSONDecodeError):  # being written when the signal came
            total = None
    # The loss log is written just before the trainer reports a step, so it may be one step ahead of `step`.
    log = out / "loss.jsonl"
    lines = [ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip()] if log.is_file() else []
    try:
        logged = int(json.loads(lines[-1])["step"]) if lines else None
    except (ValueError, KeyError):  # a line cut by a kill: the checkpoint still says enough
        logged = ck_step
    known = [s for s in (step, logged) if s is not None]
    step = max(known) if known else None
    rec = read_record(out) if (out / "train.json").is_file() else None
    return SavedProgress(step, total, ck_step, bool(rec and rec.get("status") == "done"))


def read_record(out: Path) -> dict[str, Any] | None:
    p = out / "train.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ConfigError(f"{p}: not valid JSON; remove {out} or choose another --out") from None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def select_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(base: ResolvedBase) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(base.path)
    except OSError as e:
        raise ConfigError(f"--base {base.spec}: cannot load a tokenizer ({str(e).splitlines()[0]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        raise ConfigError(f"--base {base.spec}: the tokenizer has no chat template")
    return tok


def load_model(base: ResolvedBase, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    try:
        return AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype)
    except OSError as e:
        raise ConfigError(f"--base {base.spec}: cannot load the model ({str(e).splitlines()[0]})") from None


def _dataset(examples: list[TokenizedExample]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({
        "input_ids": [e.input_ids for e in examples],
        "assistant_masks": [e.assistant_masks for e in examples],
    })


@dataclass
class StepTiming:
    """One optimiser step's wall time, the CPU time this process spent on it, and the (non-padding) tokens it
    trained on. On a shared machine the CPU time is the steadier figure: other processes' load stretches the wall
    time of a step far more than its CPU time."""

    step: int
    seconds: float
    tokens: int
    cpu_seconds: float = 0.0


def steady_tokens_per_s(steps: list[StepTiming], *, cpu: bool = False) -> float | None:
    """Tokens per second (of wall time, or of this process's CPU time) over the steps after the first (the first
    pays for lazy initialisation and warm-up), so that trainings of different lengths, and a plain loop timed the
    same way, compare."""
    later = steps[1:]
    secs = sum(s.cpu_seconds if cpu else s.seconds for s in later)
    return sum(s.tokens for s in later) / secs if later and secs > 0 else None


class _LossLog:
    """A TrainerCallback that appends each logged loss to CKPT/loss.jsonl as training runs, and times each step."""

    def __init__(self, path: Path, progress: Callable[[int, int, float | None], None] | None):
        self.path = path
        self.progress = progress
        self.steps: list[StepTiming] = []

    def callback(self) -> Any:
        from transformers import TrainerCallback

        outer = self
        began: list[tuple[float, float, int]] = []

        class Cb(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
                began[:] = [(time.perf_counter(), time.process_time(), tokens)]

            def on_step_end(self, args, state, control, **kw):
                if began:
                    t, c, tok = began[0]
                    now_tok = int(getattr(state, "num_input_tokens_seen", 0) or 0)
                    outer.steps.append(StepTiming(state.global_step, time.perf_counter() - t, now_tok - tok,
                                                  time.process_time() - c))

            def on_log(self, args, state, control, logs=None, **kw):
                pt = LossPoint.from_log({**(logs or {}), "step": state.global_step, "epoch": state.epoch})
                if pt is not None:
                    with outer.path.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(asdict(pt)) + "\n")
                    if outer.progress:
                        outer.progress(state.global_step, state.max_steps, pt.loss)

        return Cb()


def _peak_rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # noqa: BLE001 - not on every platform
        return None


def _quiet_libraries() -> None:
    """transformers/datasets progress bars and advice would bury chunky's own one-line progress."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()


def prepare_out(cfg: TrainConfig, overwrite: bool) -> tuple[Path, Path | None]:
    """Check CKPT: new, resumable (same settings and mix) or finished. Returns (out, checkpoint to resume)."""
    out = Path(cfg.out)
    rec = read_record(out)
    if rec is None:
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise ChunkyError(f"{out} exists and is not a chunky checkpoint; choose another --out or add --overwrite")
        return out, None
    if overwrite:
        shutil.rmtree(out)
        return out, None
    if rec.get("status") == "done":
        raise ChunkyError(f"{out} is a finished training; choose another --out or add --overwrite to retrain")
    old = rec.get("config", {})
    mine = cfg.identity()
    for k, v in mine.items():
        if old.get("identity", {}).get(k) != v:
            raise ChunkyError(
                f"{out}: the unfinished training there used {k}={old.get('identity', {}).get(k)!r}, not {v!r}; "
                "rerun with the same settings to resume, or add --overwrite")
    sha = mix_sha256(Path(cfg.mix))
    if rec.get("mix", {}).get("sha256") != sha:
        raise ChunkyError(f"{out}: the unfinished training there used another mix (sha256 differs from {cfg.mix}); "
                          "add --overwrite to start again")
    return out, last_checkpoint(out)


def train(cfg: TrainConfig, *, overwrite: bool = False,
          progress: Callable[[int, int, float | None], None] | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune, save, export. Resumes an unfinished training in cfg.out from its last checkpoint."""
    cfg.check()
    say = log or (lambda s: None)
    mix = Path(cfg.mix)
    convs = load_mix(mix)  # bad rows fail here, before anything is loaded or written
    out, resume = prepare_out(cfg, overwrite)

    import torch

    _quiet_libraries()
    threads = cfg.effective_threads()
    torch.set_num_threads(threads)
    device = select_device()
    base = resolve_base(cfg.base)
    tok = load_tokenizer(base)
    examples = tokenize_mix(tok, convs, cfg.max_length, mix)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "status": "running",
        "config": {**asdict(cfg), "lr": cfg.effective_lr(), "threads": threads, "identity": cfg.identity()},
        "base": asdict(base),
        "mix": {"path": str(mix), "sha256": mix_sha256(mix), "rows": len(convs),
                "tokens": sum(len(e.input_ids) for e in examples),
                "trained_tokens": sum(e.trained_tokens for e in examples),
                "manifest": _mix_manifest(mix)},
        "versions": versions(),
        "seed": cfg.seed,
        "device": device,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    prev = read_record(out)
    if prev and resume is not None:
        record["runs"] = prev.get("runs", [])
    _write_json(out / "train.json", record)

    # Seed before the model exists: peft draws the LoRA A matrices from torch's global RNG in get_peft_model, and
    # the Trainer seeds only later (in its __init__), so unseeded each process started from its own adapter and
    # same-seed runs parted from step 2 on (issue #10; B starts at zero, so step 1 agreed).
    from transformers import set_seed

    set_seed(cfg.seed)
    model = load_model(base, device)
    if not cfg.full:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))

    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.effective_lr(),
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=device == "cuda" and torch.cuda.is_bf16_supported(),
        max_length=cfg.max_length,
        dataloader_num_workers=0,
        # transformers' new name for gradient checkpointing; TRL's default for the old name is on (see TrainConfig)
        activation_checkpointing=cfg.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        dataset_num_proc=None,
    )
    loss_log = out / "loss.jsonl"
    if resume is None:
        loss_log.unlink(missing_ok=True)
    else:
        # Keep only the lines the checkpoint covers: later steps are redone.
        done = int(resume.name.split("-")[1])
        if loss_log.is_file():
            keep = [ln for ln in loss_log.read_text().splitlines() if ln and json.loads(ln)["step"] <= done]
            loss_log.write_text("".join(k + "\n" for k in keep))
        say(f"resuming from step {done} ({resume})")
    logger = _LossLog(loss_log, progress)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(examples),
        processing_class=tok,
        callbacks=[logger.callback()],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # chunky reports progress itself
    tokens_before = 0
    if resume is not None:
        st = json.loads((resume / "trainer_state.json").read_text())
        tokens_before = int(st.get("num_input_tokens_seen") or 0)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    train_s = time.perf_counter() - t0
    state = trainer.state
    curve = [p for p in (LossPoint.from_log(d) for d in state.log_history) if p is not None]
    tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    session_tokens = tokens_seen - tokens_before
    tps = session_tokens / train_s if train_s > 0 and session_tokens > 0 else None

    # Save the trained model as a plain transformers checkpoint (LoRA merged), then export it.
    final: Any = trainer.model  # a peft model (LoRA) or a transformers one: both save_pretrained
    if not cfg.full:
        final.save_pretrained(out / "adapter")
        final = final.merge_and_unload()
    shutil.rmtree(out / "model", ignore_errors=True)
    final.save_pretrained(out / "model", safe_serialization=True)
    tok.save_pretrained(out / "model")
    gguf_path = None
    export_s = None
    if cfg.export != "none":
        from chunky.train.export import export_gguf

        t1 = time.perf_counter()
        gguf_path = export_gguf(out / "model", out / "model.gguf", cfg.export)
        export_s = time.perf_counter() - t1
    result = TrainResult(
        out=str(out), status="done", steps=state.global_step, loss_curve=curve, tokens_seen=tokens_seen,
        tokens_per_s=tps, train_s=train_s, resumed_from=int(resume.name.split("-")[1]) if resume else None,
        gguf=str(gguf_path) if gguf_path else None, peak_rss_mb=_peak_rss_mb(), export_s=export_s,
        step_timings=logger.steps,
    )
    record.update({
        "status": "done",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": result.steps,
        "loss_curve": [asdict(p) for p in curve],
        "tokens_seen": tokens_seen,
        "runs": record.get("runs", []) + [{
            "resumed_from": result.resumed_from, "train_s": round(train_s, 2), "tokens": session_tokens,
            "tokens_per_s": round(tps, 2) if tps else None, "peak_rss_mb": result.peak_rss_mb,
            "steady_tokens_per_s": round(result.steady_tokens_per_s, 2) if result.steady_tokens_per_s else None,
        }],
        "gguf": result.gguf,
        "export_s": round(export_s, 2) if export_s else None,
    })
    _write_json(out / "train.json", record)
    return result
