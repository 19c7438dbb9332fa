#!/usr/bin/env bash
# Run every benchmark; each prints its figures (copy them into bench/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
for b in bench/models.py bench/surf.py bench/turf_index.py bench/embedders.py bench/attribution.py bench/web.py bench/suite.py bench/train.py bench/causal.py; do
  if [ -f "$b" ]; then
    echo "=== $b"
    .venv/bin/python "$b" "$@"
  fi
done
