"""Export a transformers checkpoint to GGUF with llama.cpp's own converter, so `local:CKPT/model.gguf` runs the
trained model at llama.cpp speed in every command that takes a model spec.

The converter (convert_hf_to_gguf.py, its `conversion/` package and the matching `gguf-py`) comes from the
llama-cpp-python source package of the version chunky runs (0.3.36), so the GGUF it writes is one the installed
llama.cpp reads. The sdist is fetched once with pip from PyPI and the three parts are unpacked into
~/.cache/chunky/llama-convert-<version>/ (CHUNKY_CONVERTER_DIR overrides), beside the cached wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from chunky.errors import ChunkyError

LLAMA_CPP_VERSION = "0.3.36"
_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _cache_root() -> Path:
    return Path(os.environ.get("CHUNKY_WHEEL_CACHE") or Path.home() / ".cache" / "chunky")


def converter_dir() -> Path:
    """The unpacked converter, fetched and unpacked on first use."""
    env = os.environ.get("CHUNKY_CONVERTER_DIR")
    d = Path(env) if env else _cache_root() / f"llama-convert-{LLAMA_CPP_VERSION}"
    if (d / "convert_hf_to_gguf.py").is_file() and (d / ".complete").is_file():
        return d
    sdist = _sdist()
    prefix = f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp/"
    tmp = d.with_name(d.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tf:
        members = []
        for m in tf.getmembers():
            if not m.name.startswith(prefix):
                continue
            rel = m.name[len(prefix):]
            if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in _PARTS):
                m.name = rel
                members.append(m)
        tf.extractall(tmp, members=members, filter="data")
    (tmp / ".complete").write_text(LLAMA_CPP_VERSION + "\n")
    if not (d / ".complete").is_file():
        import shutil

        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
    return d


def _sdist() -> Path:
    cache = _cache_root() / "sdist"
    name = f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"
    if (cache / name).is_file():
        return cache / name
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-d", str(cache)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0 or not (cache / name).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ChunkyError(f"GGUF export needs llama.cpp's converter from the llama-cpp-python {LLAMA_CPP_VERSION} "
                          f"source package, and pip could not fetch it into {cache} ({tail[0]}); "
                          "or pass --export none")
    return cache / name


def export_gguf(model_dir: Path, out: Path, outtype: str = "q8_0") -> Path:
    """Convert `model_dir` (a transformers checkpoint with its tokenizer) to `out`. Atomic: a failed or killed
    conversion leaves no file at `out`."""
    conv = converter_dir()
    tmp = out.with_name(out.name + ".tmp")
    env = dict(os.environ)
    # The converter's own gguf-py first: it must match the converter, whatever `gguf` pip installed.
    env["PYTHONPATH"] = os.pathsep.join([str(conv / "gguf-py"), str(conv), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, str(conv / "convert_hf_to_gguf.py"), str(model_dir), "--outfile", str(tmp),
         "--outtype", outtype],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise ChunkyError(f"GGUF export of {model_dir} failed: {lines[-1] if lines else 'no output'}")
    tmp.replace(out)
    return out
