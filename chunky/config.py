"""Where chunky keeps its files: CHUNKY_HOME, else the platform's user cache directory."""

from __future__ import annotations

import os
from pathlib import Path


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
