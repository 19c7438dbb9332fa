"""CLI commands of chunky.web (registered on the main app by chunky.cli): `serve` and `report`."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from chunky.cli_options import OverwriteOut, out_option, top_option
from chunky.errors import ConfigError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    dirs: Annotated[list[Path] | None, typer.Argument(help="Run directories, index directories, steering outputs, or folders holding them (default: .).")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; anything but loopback exposes the data.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0 picks a free one).")] = 8765,
) -> None:
    """Browse SURF runs, traces, steering results and TURF indexes in a local, read-only web app."""
    import socket

    import uvicorn
    from rich.console import Console

    from chunky.web.app import allowed_hosts, create_app

    web_app = create_app(list(dirs or [Path(".")]), hosts=allowed_hosts(host))
    catalog = web_app.state.catalog
    console = Console(stderr=True)
    # Bind the socket ourselves so --port 0 can report the port it got and a busy port is one clear line.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    # Listening now means a client connecting right after the message below waits in the backlog instead of
    # being refused while uvicorn starts.
    sock.listen(2048)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    console.print(
        f"chunky explorer: {len(catalog.runs)} runs, {len(catalog.indexes)} indexes, "
        f"{len(catalog.steers)} steering results, {len(catalog.traces)} traces",
        highlight=False,
    )
    if not _is_loopback(host):
        console.print(
            f"[yellow]warning:[/yellow] listening on {host}: anyone who can reach this machine can read these runs",
            highlight=False,
        )
    console.print(f"Serving on http://{shown}:{bound}/  (Ctrl-C to stop)", highlight=False)
    config = uvicorn.Config(web_app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def report(
    run_dir: Annotated[Path, typer.Argument(help="A SURF run directory (holds run.sqlite), or a CHECK.json of `chunky check`.")],
    out: Annotated[Path, out_option("The HTML file to write.")] = Path("report.html"),
    top: Annotated[int, top_option("How many of the best findings to include in detail.", min=1)] = 30,
    overwrite: OverwriteOut = False,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="With a CHECK.json: show it side by side with this earlier check.")] = None,
) -> None:
    """Write one self-contained HTML file (no network needed to open it) with a run's key views,
    its findings with robustness and traces, and its steering results."""
    from rich.console import Console

    from chunky.errors import ChunkyError
    from chunky.web.report import write_report

    if out.exists() and not overwrite:
        raise ChunkyError(f"{out}: exists; pass --overwrite to replace it, or choose another --out")
    if run_dir.is_file() or baseline is not None:
        from chunky.web.checks import write_check_report

        path = write_check_report(run_dir, out, baseline)
    else:
        path = write_report(run_dir, out, top=top)
    size = path.stat().st_size
    Console(stderr=True).print(f"Wrote {path} ({size / 1024:.0f} KB)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("serve")(serve)
    app.command("report")(report)

