#!/usr/bin/env bash
# Install a pinned promptfoo from the npm registry into a cache directory (reused like the llama.cpp wheel),
# and print the path of its executable. `chunky suite export --format promptfoo` configs run with it offline.
#   PROMPTFOO_VERSION  pinned version (0.121.x is the last line that runs on Node 20)
#   NPM_CACHE_DIR      where installs live (default ~/.cache/chunky/npm)
set -euo pipefail
PROMPTFOO_VERSION=${PROMPTFOO_VERSION:-0.121.20}
NPM_CACHE_DIR=${NPM_CACHE_DIR:-$HOME/.cache/chunky/npm}
PREFIX="$NPM_CACHE_DIR/promptfoo-$PROMPTFOO_VERSION"
BIN="$PREFIX/node_modules/.bin/promptfoo"

if [ -x "$BIN" ] && [ -f "$PREFIX/.installed" ]; then
  echo "$BIN"
  exit 0
fi
command -v npm >/dev/null || { echo "install-promptfoo: npm is not installed (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$PREFIX"
echo "Installing promptfoo $PROMPTFOO_VERSION once into $PREFIX" >&2
# Native modules that find no prebuilt binary compile against the headers of the installed Node
# (/usr/include/node on Debian), never downloaded ones.
nodedir=$(dirname "$(dirname "$(command -v node)")")
export npm_config_nodedir="${npm_config_nodedir:-$nodedir}"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "promptfoo@$PROMPTFOO_VERSION" >&2
"$BIN" --version >/dev/null
touch "$PREFIX/.installed"
echo "$BIN"
