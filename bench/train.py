"""Speed of `chunky train` (issue 10): training tokens/s of chunky's SFTTrainer path against a plain PyTorch loop on
the same model, the same collated batches and the same optimiser (target ≥ 0.9), 1 vs 2 threads, peak memory; and
generation tokens/s of the trained model served by chunky (`local:CKPT/model.gguf`, llama.cpp) against the base
model on `local` (target ≥ 0.9), with in-process transformers generation for reference.

    python bench/train.py [--steps 6] [--batch 8] [--length 128]
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


def sft_trainer_run(mix: Path, out: Path, steps: int, batch: int, length: int, threads: int) -> dict:
    from chunky.train.trainer import TrainConfig, train

    r = train(TrainConfig(mix=str(mix), out=str(out), max_steps=steps, batch_size=batch, max_length=length,
                          lr=1e-3, save_steps=10_000, threads=threads, export="q8_0"), overwrite=True)
    return {"tokens_per_s": r.tokens_per_s, "tokens": r.tokens_seen, "train_s": r.train_s,
            "losses": [p.loss for p in r.loss_curve], "gguf": r.gguf, "export_s": r.export_s}


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
    model.train()
    tokens, losses = 0, []
    t0 = time.perf_counter()
    for b in batches:
        out = model(input_ids=b["input_ids"], attention_mask=b.get("attention_mask"), labels=b["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(out.loss))
        tokens += int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
    secs = time.perf_counter() - t0
    return {"tokens_per_s": tokens / secs, "tokens": tokens, "train_s": secs, "losses": losses}


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="3 steps")
    args, _ = ap.parse_known_args()  # scripts/bench.sh passes its arguments to every benchmark
    if args.quick:
        args.steps = min(args.steps, 3)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("CHUNKY_HOME", d)
        mix = make_mix(Path(d) / "mix.jsonl", args.steps * args.batch, args.length)
        sft1 = sft_trainer_run(mix, Path(d) / "ck1", args.steps, args.batch, args.length, 1)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        plain = plain_loop_run(mix, args.steps, args.batch, args.length, 1)
        sft2 = sft_trainer_run(mix, Path(d) / "ck2", args.steps, args.batch, args.length, 2)
        base_tps = serve_rate("local")
        tuned_tps = serve_rate(f"local:{sft1['gguf']}")
        hf_tps = transformers_rate(Path(d) / "ck1" / "model")
    load1 = os.getloadavg()
    print(f"### chunky train speed (bench/train.py): LoRA r=16, batch {args.batch} × ≤{args.length} tokens, "
          f"{args.steps} steps; load average {load0[0]:.1f} → {load1[0]:.1f}\n")
    print("| measure | value |\n|---|---:|")
    print(f"| chunky train (SFTTrainer), 1 thread, tokens/s | {sft1['tokens_per_s']:.1f} |")
    print(f"| plain PyTorch loop, same batches, 1 thread, tokens/s | {plain['tokens_per_s']:.1f} |")
    print(f"| ratio chunky / plain (target ≥ 0.9) | {sft1['tokens_per_s'] / plain['tokens_per_s']:.2f} |")
    print(f"| chunky train, 2 threads, tokens/s | {sft2['tokens_per_s']:.1f} |")
    print(f"| final loss chunky / plain | {sft1['losses'][-1]:.4f} / {plain['losses'][-1]:.4f} |")
    print(f"| peak RSS of the training process (MB) | {rss:.0f} |")
    print(f"| GGUF export (q8_0) s | {sft1['export_s']:.1f} |")
    print(f"| base `local` (Q4_1) generation tokens/s | {base_tps:.1f} |")
    print(f"| trained `local:CKPT/model.gguf` (q8_0) tokens/s | {tuned_tps:.1f} |")
    print(f"| ratio trained / base (target ≥ 0.9) | {tuned_tps / base_tps:.2f} |")
    print(f"| in-process transformers generate (CKPT/model), 1 thread, tokens/s | {hf_tps:.1f} |")


if __name__ == "__main__":
    main()
