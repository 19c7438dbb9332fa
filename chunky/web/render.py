"""The Jinja environment (autoescape always on), the inlined CSS/JS, and the Content-Security-Policy.

Pages inline their stylesheet and their one small script, so the served app and the shared report are the
same HTML. The CSP allows exactly that script (by its SHA-256) and no other: should model text ever slip
through unescaped, the browser still would not run it. Escaping remains the first line of defence.
"""

from __future__ import annotations

import base64
import hashlib
import math
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from chunky.web.charts import heat_style


@cache
def static_text(name: str) -> str:
    return resources.files("chunky.web").joinpath("static", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def script_hash() -> str:
    digest = hashlib.sha256(static_text("app.js").encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def csp(report: bool = False) -> str:
    """The policy for served pages (images may come from this server) or the report (data: only)."""
    img = "data:" if report else "'self' data:"
    parts = [
        "default-src 'none'",
        f"img-src {img}",
        "style-src 'unsafe-inline'",
        f"script-src '{script_hash()}'",
        "base-uri 'none'",
        "form-action 'self'" if not report else "form-action 'none'",
    ]
    return "; ".join(parts)


def fmt_score(v: Any) -> str:
    if v is None:
        return "–"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "–"
    return f"{f:.0f}" if f == int(f) else f"{f:.1f}"


def score_class(v: Any) -> str:
    if v is None:
        return "none"
    f = float(v)
    return "strong" if f > 70 else ("viol" if f > 50 else "ok")


def fmt_pct(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{100 * float(v):.{digits}f}%"


def fmt_cost(v: Any) -> str:
    if v is None:
        return "–"
    f = float(v)
    if f == 0:
        return "$0"
    return f"${f:.4f}" if f < 1 else f"${f:,.2f}"


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    f = float(v)
    if math.isnan(f):
        return "–"
    return f"{f:.{digits}g}"


def fmt_time(v: Any) -> str:
    """ISO timestamps or epoch seconds, shown as UTC to the minute."""
    if v in (None, ""):
        return ""
    try:
        if isinstance(v, (int, float)):
            dt = datetime.fromtimestamp(float(v), tz=UTC)
        else:
            dt = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        return str(v)


def clip(text: Any, n: int = 200) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def cut(text: Any, n: int = 500) -> str:
    """The first n characters, line breaks kept (tables show a preview; the finding page the whole text)."""
    s = str(text or "")
    return s if len(s) <= n else s[: n - 1] + "…"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("chunky.web", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        score=fmt_score,
        score_class=score_class,
        pct=fmt_pct,
        cost=fmt_cost,
        num=fmt_num,
        time=fmt_time,
        clip=clip,
        cut=cut,
        heat=heat_style,
    )
    env.globals.update(
        css=Markup(static_text("style.css")),
        js=Markup(static_text("app.js")),
    )
    return env


def render(template: str, **context: Any) -> str:
    from chunky import __version__

    context.setdefault("version", __version__)
    context.setdefault("report", False)
    context.setdefault("refresh", None)
    context.setdefault("generated_at", None)
    context.setdefault("csp", csp(report=bool(context["report"])))
    return environment().get_template(template).render(**context)
