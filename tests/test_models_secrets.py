"""API keys come from the environment and never reach any file chunky writes, nor its output."""

from __future__ import annotations

import json
from pathlib import Path

from faultserver import FaultServer

from helpers import run_cli

SECRET = "sk-test-SECRET-0123456789abcdef"


def files_containing(root: Path, needle: str) -> list[Path]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and needle.encode() in p.read_bytes():
            hits.append(p)
    return hits


def test_no_key_value_reaches_any_file_or_output(chunky_home, tmp_path):
    env = {"MODEL_API_KEY": SECRET, "OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET, "CHUNKY_HOME": str(chunky_home)}
    with FaultServer(["ok", "500", "500", "500", "500", "500", "500"]) as srv:
        ok = run_cli("ask", f"{srv.base_url}:fault", "hello", "--json", env=env)
        assert ok.returncode == 0, ok.stderr
        # The key was really sent to the server...
        headers = {k.lower(): v for k, v in srv.requests[0]["headers"].items()}
        assert headers.get("authorization") == f"Bearer {SECRET}"
        failed = run_cli("ask", f"{srv.base_url}:fault", "again", env=env | {"CHUNKY_RETRY_BASE_DELAY": "0.01"})
        assert failed.returncode == 1
    models = run_cli("models", "--json", env=env)
    assert json.loads(models.stdout)["keys_set"]["MODEL_API_KEY"] is True
    # ...and appears nowhere chunky writes or prints.
    for r in (ok, failed, models):
        assert SECRET not in r.stdout and SECRET not in r.stderr
    assert files_containing(chunky_home, SECRET) == []
    assert (chunky_home / "calls.sqlite").exists()
