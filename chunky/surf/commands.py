"""CLI commands of chunky.surf (registered on the main app by chunky.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
