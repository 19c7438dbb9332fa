"""The cached llama-cpp-python wheel is native code for one CPU: scripts/cpu-key.sh keys the cache by the CPU's
feature flags and the compiler, and scripts/install.sh only ever installs a wheel from this machine's key."""

from __future__ import annotations

import os
import subprocess

from helpers import ROOT

SCRIPT = ROOT / "scripts" / "cpu-key.sh"


def key(tmp_path, flags: str, **env: str) -> str:
    info = tmp_path / f"cpuinfo-{abs(hash((flags, tuple(env.items()))))}"
    info.write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\nbogomips\t: 4000\n")
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=True,
                       env=dict(os.environ, CPUINFO=str(info), **env))
    return r.stdout.strip()


def test_the_key_follows_the_cpu_features_and_the_compiler(tmp_path):
    avx2 = key(tmp_path, "fpu sse2 avx avx2 fma")
    assert len(avx2) == 16 and avx2 == key(tmp_path, "avx2 fma fpu avx sse2")  # order does not matter
    assert key(tmp_path, "fpu sse2 avx avx2 fma avx512f avx512bw") != avx2  # an AVX-512 machine builds its own
    assert key(tmp_path, "fpu sse2 avx avx2 fma", CMAKE_ARGS="-DGGML_NATIVE=OFF") != avx2
    fake_cc = tmp_path / "cc"
    fake_cc.write_text("#!/bin/sh\necho 'clang version 99'\n")
    fake_cc.chmod(0o755)
    assert key(tmp_path, "fpu sse2 avx avx2 fma", CC=str(fake_cc)) != avx2


def test_this_machine_has_a_key_and_install_uses_only_its_directory():
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=True)
    assert len(r.stdout.strip()) == 16
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert 'LLAMA_WHEELS="$WHEELHOUSE/$(bash "$(dirname "$0")/cpu-key.sh")"' in install
    # the wheel is installed from the keyed directory only (no index, so nothing else can be picked)
    assert '--no-index --no-deps --find-links "$LLAMA_WHEELS"' in install
    assert '--find-links "$WHEELHOUSE"' not in install
