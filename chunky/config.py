"""Where chunky keeps its files (CHUNKY_HOME, else the platform's user cache directory), and how it reads a
config-like file (`read_mapping`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from chunky.errors import ConfigError


def chunky_home() -> Path:
    env = os.environ.get("CHUNKY_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        import platformdirs

        home = Path(platformdirs.user_cache_dir("chunky"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_db_path() -> Path:
    return Path(os.environ.get("CHUNKY_CACHE_DB") or (chunky_home() / "calls.sqlite"))


def models_dir() -> Path:
    """Where extracted model files live (CHUNKY_MODELS_DIR overrides; tests share one copy)."""
    env = os.environ.get("CHUNKY_MODELS_DIR")
    d = Path(env) if env else chunky_home() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping a YAML file (or a JSON one: `.json`) holds, for loaders of specs, templates and records.

    Every way the file can be unusable is one ConfigError naming it: unreadable, not UTF-8, not valid YAML/JSON
    (with the line), or not a mapping (`what`, e.g. "a rubric", says what it should have been).
    """
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    data = _parse_json(path, text) if kind == "JSON" else _parse_yaml(path, text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} is a {kind} mapping (got {type(data).__name__})")
    return data


def _parse_json(path: Path, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None


def _parse_yaml(path: Path, text: str) -> object:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(e, 'problem', None) or e}") from None
