#!/usr/bin/env bash
# `make demo`: SURF end to end on the embedded model, no network and no key.
# SmolLM2-135M plays generator, target and judge; the `rebut` rubric's detector (a rebuttal opening
# such as "No, ..." or "That's incorrect") gates the judge, because a 135M judge alone scores noise.
# The small `facts` attribute pool (users stating or checking true facts) keeps the search focused.
# Real audits want a capable generator and judge (e.g. --generator openai:gpt-4.1-mini --judge anthropic:claude-sonnet-4-5).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-run/surf-rebut}
CHUNKY=.venv/bin/chunky
rm -rf "$OUT"   # a fresh run each time (the call cache still makes repeats fast)
echo "SURF demo: target, generator and judge = the embedded SmolLM2-135M; rubric = rebut; output in $OUT"
"$CHUNKY" surf --rubric rebut --target local \
  --runs 2 --iterations 3 --candidates 5 --buffer 3 \
  --target-temperature 0 --target-max-tokens 64 --generator-max-tokens 160 \
  --attributes facts --seed 0 --out "$OUT" --top 0
echo
echo "Top findings (chunky top $OUT):"
"$CHUNKY" top "$OUT" --n 5
