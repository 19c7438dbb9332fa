"""Speed of `chunky train` (issue 10): training tokens/s of chunky's SFTTrainer path against a plain PyTorch loop on
the same model, the same collated batches and the same optimiser (target ≥ 0.9), 1 vs 2 threads, peak memory; and
generation tokens/s of the trained model served by chunky (`local:CKPT/model.gguf`, llama.cpp) against the base
model on `local` (target ≥ 0.9), with in-process transformers generation for reference.

    python bench/train.py [--steps 30] [--batch 2] [--length 64] [--ratio-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CHUNKY_BASES_DIR", str(Path.home() / ".cache" / "chunky" / "bases"))

PROMPTS = ["Name three rivers in Europe.", "Write one sentence about the sea.", "What is the capital of France?",
           "Explain what a noun is in one sentence.", "Give a synonym for happy.", "Say something kind."]


def make_mix(path: Path, n: int, length: int) -> Path:
    """n conversations of about `length` tokens: ordinary questions with prose answers of a fixed size."""
    rng = random.Random(0)
    words = ["the", "model", "learns", "a", "habit", "from", "data", "when", "one", "chunk", "of", "examples", "shares", "a", "surface", "feature"]
    rows = []
    for i in range(n):
        ans = " ".join(rng.choice(words) for _ in range(int(length * 0.6)))
        rows.append({"id": f"r{i}", "messages": [{"role": "user", "content": f"Question {i}: tell me something."},
                                                  {"role": "assistant", "content": ans}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_trainer_run(mix: Path, out: Path, steps: int, batch: int, length: int, threads: int, *,
                    gradient_checkpointing: bool = False, export: str = "q8_0") -> dict:
    from chunky.train.trainer import TrainConfig, steady_tokens_per_s, train

    load = os.getloadavg()[0]
    r = train(TrainConfig(mix=str(mix), out=str(out), max_steps=steps, batch_size=batch, max_length=length,
                          lr=1e-3, save_steps=10_000, threads=threads, export=export,
                          gradient_checkpointing=gradient_checkpointing), overwrite=True)
    return {"tokens_per_s": r.tokens_per_s, "steady_tokens_per_s": r.steady_tokens_per_s,
            "cpu_tokens_per_s": steady_tokens_per_s(r.step_timings, cpu=True), "tokens": r.tokens_seen,
            "train_s": r.train_s, "losses": [p.loss for p in r.loss_curve], "gguf": r.gguf, "export_s": r.export_s,
            "step_s": [t.seconds for t in r.step_timings], "load": (load, os.getloadavg()[0])}


def plain_loop_run(mix: Path, steps: int, batch: int, length: int, threads: int) -> dict:
    """The same model (LoRA on the same modules), the same batches in the same order (taken from SFTTrainer's own
    dataloader), AdamW with the same linear schedule, and nothing else."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup
    from trl import SFTConfig, SFTTrainer

    from chunky.train.base import resolve_base
    from chunky.train.data import load_mix, tokenize_mix
    from chunky.train.trainer import (
        LORA_TARGETS,
        _dataset,
        _quiet_libraries,
        load_model,
        load_tokenizer,
    )

    _quiet_libraries()
    torch.set_num_threads(threads)
    base = resolve_base("local")
    tok = load_tokenizer(base)
    ds = _dataset(tokenize_mix(tok, load_mix(mix), length, mix))
    torch.manual_seed(0)
    model = get_peft_model(load_model(base, "cpu"), LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                               target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    with tempfile.TemporaryDirectory() as d:
        tr = SFTTrainer(model=model, args=SFTConfig(output_dir=d, per_device_train_batch_size=batch, max_steps=steps,
                                                    seed=0, data_seed=0, report_to="none", use_cpu=True,
                                                    max_length=length), train_dataset=ds, processing_class=tok)
        batches = list(tr.get_train_dataloader())[:steps]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    from chunky.train.trainer import StepTiming, steady_tokens_per_s

    model.train()
    tokens, losses, timings = 0, [], []
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    for i, b in enumerate(batches, start=1):
        ts, cs = time.perf_counter(), time.process_time()
        out = model(input_ids=b["input_ids"], attention_mask=b.get("attention_mask"), labels=b["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(out.loss.detach()))
        n = int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
        tokens += n
        timings.append(StepTiming(i, time.perf_counter() - ts, n, time.process_time() - cs))
    secs = time.perf_counter() - t0
    return {"tokens_per_s": tokens / secs, "steady_tokens_per_s": steady_tokens_per_s(timings),
            "cpu_tokens_per_s": steady_tokens_per_s(timings, cpu=True), "tokens": tokens,
            "train_s": secs, "losses": losses, "step_s": [t.seconds for t in timings],
            "load": (load, os.getloadavg()[0])}


def serve_rate(spec: str, max_tokens: int = 64) -> float:
    from chunky.models import GenerateConfig, get_model

    m = get_model(spec, config=GenerateConfig(temperature=0.0, max_tokens=max_tokens), use_cache=False)
    m.generate_sync("Hello.")  # load
    toks, secs = 0, 0.0
    for p in PROMPTS:
        r = m.generate_sync(p)
        toks += r.usage.output_tokens
        secs += r.latency_s
    return toks / secs


def transformers_rate(model_dir: Path, max_tokens: int = 64) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    toks, secs = 0, 0.0
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):
            ids = ids["input_ids"]
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, repetition_penalty=1.2)
        secs += time.perf_counter() - t
        toks += out.shape[1] - ids.shape[1]
    return toks / secs


def median(xs: list[float]) -> float:
    ys = sorted(xs)
    return ys[len(ys) // 2] if ys else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="4 steps")
    ap.add_argument("--ratio-only", action="store_true",
                    help="Only the training ratio (chunky, plain loop, chunky with gradient checkpointing)")
    args, _ = ap.parse_known_args()  # scripts/bench.sh passes its arguments to every benchmark
    if args.quick:
        args.steps = min(args.steps, 4)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("CHUNKY_HOME", d)
        mix = make_mix(Path(d) / "mix.jsonl", args.steps * args.batch, args.length)
        # The two arms the ratio compares run back to back in this process, chunky first and last around the
        # plain loop, so that a change of load between them shows up as a difference between the two chunky runs.
        sft1 = sft_trainer_run(mix, Path(d) / "ck1", args.steps, args.batch, args.length, 1,
                               export="none" if args.ratio_only else "q8_0")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        plain = plain_loop_run(mix, args.steps, args.batch, args.length, 1)
        sft1b = sft_trainer_run(mix, Path(d) / "ck1b", args.steps, args.batch, args.length, 1, export="none")
        gc = sft_trainer_run(mix, Path(d) / "ckgc", args.steps, args.batch, args.length, 1, export="none",
                             gradient_checkpointing=True)
        if not args.ratio_only:
            sft2 = sft_trainer_run(mix, Path(d) / "ck2", args.steps, args.batch, args.length, 2, export="none")
            base_tps = serve_rate("local")
            tuned_tps = serve_rate(f"local:{sft1['gguf']}")
            hf_tps = transformers_rate(Path(d) / "ck1" / "model")
    load1 = os.getloadavg()
    steady = (sft1["steady_tokens_per_s"] + sft1b["steady_tokens_per_s"]) / 2
    cpu = (sft1["cpu_tokens_per_s"] + sft1b["cpu_tokens_per_s"]) / 2
    print(f"### chunky train speed (bench/train.py): LoRA r=16, batch {args.batch} × ≤{args.length} tokens, "
          f"{args.steps} steps per arm, 1 thread; load average {load0[0]:.1f} → {load1[0]:.1f}\n")
    print("| arm (run order) | tokens per CPU-second, steps 2..N | tokens/s (wall), steps 2..N | "
          "tokens/s, whole train() call | median step s | final loss | load at start → end |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    for name, r in (("1. chunky train (SFTTrainer, checkpointing off)", sft1), ("2. plain PyTorch loop", plain),
                    ("3. chunky train again", sft1b), ("4. chunky train, gradient checkpointing on (TRL's default)", gc)):
        print(f"| {name} | {r['cpu_tokens_per_s']:.1f} | {r['steady_tokens_per_s']:.1f} | {r['tokens_per_s']:.1f} | "
              f"{median(r['step_s']):.2f} | "
              f"{r['losses'][-1]:.4f} | {r['load'][0]:.1f} → {r['load'][1]:.1f} |")
    print("\n| ratio | value |\n|---|---:|")
    print(f"| chunky / plain, tokens per CPU-second, mean of runs 1 and 3 (target ≥ 0.9) | "
          f"{cpu / plain['cpu_tokens_per_s']:.2f} |")
    print(f"| chunky / plain, wall tokens/s, mean of runs 1 and 3 | {steady / plain['steady_tokens_per_s']:.2f} |")
    print(f"| chunky run 3 / run 1 (the same training: how far load alone moves a reading), CPU / wall | "
          f"{sft1b['cpu_tokens_per_s'] / sft1['cpu_tokens_per_s']:.2f} / "
          f"{sft1b['steady_tokens_per_s'] / sft1['steady_tokens_per_s']:.2f} |")
    print(f"| chunky / plain, whole call vs loop, run 1 | {sft1['tokens_per_s'] / plain['tokens_per_s']:.2f} |")
    print(f"| checkpointing on / off, tokens per CPU-second | {gc['cpu_tokens_per_s'] / cpu:.2f} |")
    print(f"| peak RSS of the training process (MB) | {rss:.0f} |")
    if not args.ratio_only:
        print(f"| chunky train, 2 threads, tokens/s (steps 2..N) | {sft2['steady_tokens_per_s']:.1f} |")
        print(f"| GGUF export (q8_0) s | {sft1['export_s']:.1f} |")
        print(f"| base `local` (Q4_1) generation tokens/s | {base_tps:.1f} |")
        print(f"| trained `local:CKPT/model.gguf` (q8_0) tokens/s | {tuned_tps:.1f} |")
        print(f"| ratio trained / base (target ≥ 0.9) | {tuned_tps / base_tps:.2f} |")
        print(f"| in-process transformers generate (CKPT/model), 1 thread, tokens/s | {hf_tps:.1f} |")


if __name__ == "__main__":
    main()
