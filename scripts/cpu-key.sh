#!/usr/bin/env bash
# Print the key of this machine's native builds: llama-cpp-python compiles with -march=native, so a wheel built
# on one CPU may crash (SIGILL) or round differently on another. The key hashes what decides the machine code:
# the CPU's feature flags, the C compiler's version and any CMAKE_ARGS. CPUINFO overrides /proc/cpuinfo (tests).
set -euo pipefail
CPUINFO=${CPUINFO:-/proc/cpuinfo}
flags=$(grep -m1 -E '^(flags|Features)[[:space:]]*:' "$CPUINFO" | cut -d: -f2- | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
arch=$(uname -m)
compiler=$("${CC:-cc}" --version 2>/dev/null | head -n1 || echo "no-cc")
printf '%s\n%s\n%s\n%s\n' "$arch" "$flags" "$compiler" "${CMAKE_ARGS:-}" | sha256sum | cut -c1-16
