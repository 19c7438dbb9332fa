"""`chunky serve`: a read-only Starlette app over run directories, traces, steering results and indexes.

Only GET routes exist; every page re-reads its source (a run's SQLite store is opened read-only per request,
so a run that is still being written shows its latest state). Items are found through the Catalog by key,
never by a path taken from the URL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from chunky.errors import ChunkyError
from chunky.surf.table import PAPER_ORDER, AggregateTable, Cell
from chunky.web import runs as runs_mod
from chunky.web.artifacts import load_trace_file, steer_image, steer_view, traces_for_candidate
from chunky.web.charts import Bar, bar_chart
from chunky.web.checks import check_listing, check_page
from chunky.web.discover import Catalog, Item
from chunky.web.experiments import experiment_listing
from chunky.web.experiments import routes as experiment_routes
from chunky.web.overview import run_overview
from chunky.web.render import csp, render
from chunky.web.views import FindingFilter, IndexSummary, RunSummary

MAX_PAGE = 200
MAX_PATTERN = 500


class AppUrls:
    """URLs of the served app (the report has its own, anchor-based, builder)."""

    @staticmethod
    def _q(params: dict[str, Any]) -> str:
        clean = {k: v for k, v in params.items() if v not in (None, "", False)}
        return ("?" + urlencode(clean)) if clean else ""

    def run(self, key: str, **params: Any) -> str:
        return f"/run/{quote(key)}" + self._q(params)

    def finding(self, key: str, candidate_id: Any) -> str:
        return f"/run/{quote(key)}/-/finding/{quote(str(candidate_id))}"

    def steer(self, key: str) -> str:
        return f"/steer/{quote(key)}"

    def steer_plot(self, key: str) -> str:
        return f"/steer-plot/{quote(key)}"

    def trace(self, key: str) -> str:
        return f"/trace/{quote(key)}"

    def index(self, key: str, **params: Any) -> str:
        return f"/index/{quote(key)}" + self._q(params)

    def report(self, key: str) -> str:
        return f"/report/{quote(key)}"

    def check(self, key: str, **params: Any) -> str:
        return f"/check/{quote(key)}" + self._q(params)

    def export(self, key: str, **params: Any) -> str:
        return f"/run/{quote(key)}/-/export.jsonl" + self._q(params)


URLS = AppUrls()

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "run"


def _epoch(v: Any) -> float:
    """A sort key for times stored as epoch seconds or ISO text (unknown first... last when reversed)."""
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v:
        from datetime import datetime

        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _html(body: str, status: int = 200) -> HTMLResponse:
    headers = dict(SECURITY_HEADERS)
    headers["Content-Security-Policy"] = csp(report=False)
    return HTMLResponse(body, status_code=status, headers=headers)


def _error(status: int, title: str, message: str) -> HTMLResponse:
    return _html(render("error.html", title=title, message=message, u=URLS), status=status)


def _int(v: str | None, field: str, lo: int | None = None, hi: int | None = None) -> int | None:
    if v is None or v.strip() == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise ChunkyError(f"query parameter '{field}': expected a whole number, got {v!r}") from None
    if lo is not None:
        n = max(lo, n)
    if hi is not None:
        n = min(hi, n)
    return n


def _float(v: str | None, field: str) -> float | None:
    if v is None or v.strip() == "":
        return None
    try:
        f = float(v)
    except ValueError:
        raise ChunkyError(f"query parameter '{field}': expected a number, got {v!r}") from None
    if math.isnan(f):
        raise ChunkyError(f"query parameter '{field}': expected a number, got {v!r}")
    return f


def finding_filter(params: Any) -> FindingFilter:
    sort = params.get("sort", "score")
    status = params.get("status", "")
    return FindingFilter(
        q=(params.get("q") or "").strip()[:MAX_PATTERN],
        min_score=_float(params.get("min_score"), "min_score"),
        run_id=_int(params.get("run_id"), "run_id"),
        iteration=_int(params.get("iteration"), "iteration"),
        status=status if status in ("", "scored", "error", "violation", "strong") else "",
        sort=sort if sort in ("score", "iteration", "recent") else "score",
        distinct=params.get("distinct") == "1",
        limit=_int(params.get("limit"), "limit", 1, MAX_PAGE) or 50,
        offset=_int(params.get("offset"), "offset", 0) or 0,
    )


def filter_params(f: FindingFilter) -> dict[str, Any]:
    """The non-default filter fields as query parameters (for pager and refresh links)."""
    d: dict[str, Any] = {}
    if f.q:
        d["q"] = f.q
    if f.min_score is not None:
        d["min_score"] = f"{f.min_score:g}"
    if f.run_id is not None:
        d["run_id"] = f.run_id
    if f.iteration is not None:
        d["iteration"] = f.iteration
    if f.status:
        d["status"] = f.status
    if f.sort != "score":
        d["sort"] = f.sort
    if f.distinct:
        d["distinct"] = 1
    if f.limit != 50:
        d["limit"] = f.limit
    return d


def aggregate_table(summaries: list[RunSummary]) -> AggregateTable | None:
    """Paper Table 1 over the served runs: per target × rubric, the share of output prompts above 50."""
    cells: dict[tuple[str, str], Cell] = {}
    for r in summaries:
        if r.problem or not r.outputs:
            continue
        c = cells.setdefault((r.target, r.rubric), Cell(r.target, r.rubric, 0, 0, 0))
        c.prompts += r.outputs
        c.violations += r.output_violations
        c.runs += r.parallel_runs
    if not cells:
        return None
    found = {b for _, b in cells}
    behaviours = [b for b in PAPER_ORDER if b in found] + sorted(found - set(PAPER_ORDER))
    return AggregateTable(50.0, sorted({m for m, _ in cells}), behaviours, cells)


def source_chart(sources: dict[str, int], title: str = "") -> Markup:
    total = sum(sources.values()) or 1
    bars = [
        Bar(label=s, value=n, note=f"· {n / total:.1%}")
        for s, n in sorted(sources.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return bar_chart(bars, title=title, label_width=220)


class Explorer:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    # ---- pages ---------------------------------------------------------------------------------------
    def home(self, request: Request) -> Response:
        self.catalog.scan()
        summaries: list[RunSummary] = [runs_mod.run_summary(i) for i in self.catalog.runs.values()]
        summaries.sort(key=lambda r: (_epoch(r.updated_at), r.key), reverse=True)
        indexes = [index_summary(i) for i in self.catalog.indexes.values()]
        return _html(
            render(
                "index.html",
                u=URLS,
                roots=[str(r) for r in self.catalog.roots],
                runs=summaries,
                table=aggregate_table(summaries),
                indexes=indexes,
                steers=list(self.catalog.steers.values()),
                checks=check_listing(self.catalog.roots),
                experiments=experiment_listing(self.catalog.roots),
            )
        )

    def _item(self, kind: str, key: str) -> Item:
        item = self.catalog.get(kind, key)
        if item is None:
            raise LookupError(f"no {kind} '{key}' under the served directories")
        return item

    def run(self, request: Request) -> Response:
        item = self._item("run", request.path_params["key"])
        f = finding_filter(request.query_params)
        summary = runs_mod.run_summary(item)
        if summary.problem:
            return _error(503, f"Run {item.key}", summary.problem)
        with runs_mod.open_run(item.path) as st:
            overview = run_overview(st)
            page = runs_mod.find_candidates(st, f)
        live = request.query_params.get("live") == "1" and summary.status == "running"
        return _html(
            render(
                "run.html",
                u=URLS,
                run=summary,
                page=page,
                filter_params=filter_params(page.filter),
                refresh=10 if live else None,
                steers=self.catalog.steers_of(item.key),
                traces=self.catalog.traces_of(item.key),
                **overview.context(),
            )
        )

    def finding(self, request: Request) -> Response:
        item = self._item("run", request.path_params["key"])
        raw = request.path_params["cid"]
        try:
            cid = int(raw)
        except ValueError:
            raise LookupError(f"no finding '{raw}' in run {item.key} (candidate ids are numbers)") from None
        summary = runs_mod.run_summary(item)
        with runs_mod.open_run(item.path) as st:
            c = runs_mod.load_candidate(st, cid)
            if c is None:
                raise LookupError(f"no finding {cid} in run {item.key}")
            rob = runs_mod.robustness_summary(st, cid)
            stored = st.traces(cid)
        traces, problems = traces_for_candidate(item.path, cid, stored)
        return _html(
            render("finding.html", u=URLS, run=summary, c=c, rob=rob, traces=traces, trace_problems=problems)
        )

    def trace(self, request: Request) -> Response:
        item = self._item("trace", request.path_params["key"])
        view = load_trace_file(item.path)
        owner_url = ""
        if item.parent_key:
            owner_url = URLS.run(item.parent_key) if self.catalog.get("run", item.parent_key) else URLS.index(item.parent_key)
        return _html(render("trace.html", u=URLS, t=view, item=item, owner_url=owner_url))

    def check(self, request: Request) -> Response:
        """A regression check (chunky check --out), alone or side by side with ?vs=<another check>."""
        return _html(check_page(self.catalog.roots, request.path_params["key"], request.query_params.get("vs")))

    def steer(self, request: Request) -> Response:
        item = self._item("steer", request.path_params["key"])
        view = steer_view(item, lambda it: URLS.steer_plot(it.key) if steer_image(it.path) else None)
        return _html(render("steer.html", u=URLS, s=view))

    def export(self, request: Request) -> Response:
        """The candidates matching the page's filter as JSONL (the authors' results.jsonl field names)."""
        item = self._item("run", request.path_params["key"])
        f = finding_filter(request.query_params)
        with runs_mod.open_run(item.path):
            pass  # an unreadable run fails here, as a 400 page, rather than mid-stream
        headers = dict(SECURITY_HEADERS)
        headers["Content-Disposition"] = f'attachment; filename="{_safe_name(item.name)}-findings.jsonl"'
        return StreamingResponse(runs_mod.export_lines(item.path, f), media_type="application/x-ndjson", headers=headers)

    def report(self, request: Request) -> Response:
        """The shareable one-file report of a run (what `chunky report` writes), as a download."""
        from chunky.web.report import build_report

        item = self._item("run", request.path_params["key"])
        body = build_report(item.path)
        headers = dict(SECURITY_HEADERS)
        headers["Content-Security-Policy"] = csp(report=True)
        headers["Content-Disposition"] = f'attachment; filename="chunky-report-{_safe_name(item.name)}.html"'
        return HTMLResponse(body, headers=headers)

    def steer_plot(self, request: Request) -> Response:
        item = self._item("steer", request.path_params["key"])
        found = steer_image(item.path)
        if found is None:
            raise LookupError(f"steering result {item.key} has no plot")
        path, mime = found
        headers = dict(SECURITY_HEADERS)
        # An SVG opened on its own must not run anything either.
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return FileResponse(path, media_type=mime, headers=headers)

    def index(self, request: Request) -> Response:
        item = self._item("index", request.path_params["key"])
        summary = index_summary(item)
        qp = request.query_params
        grep_form = GrepForm(
            pattern=(qp.get("pattern") or "")[:MAX_PATTERN],
            side=side if (side := qp.get("side") or "both") in ("both", "query", "response") else "both",
            regex=qp.get("regex") == "1",
            case=qp.get("case") == "1",
        )
        co_form = CooccurForm(
            query=(qp.get("cq") or "")[:MAX_PATTERN],
            response=(qp.get("cr") or "")[:MAX_PATTERN],
            regex=qp.get("cregex") == "1",
            case=qp.get("ccase") == "1",
        )
        mine_form = MineForm(on=qp.get("mine") == "1", min_count=_int_param(qp.get("min_count"), 20, 1, 1_000_000))
        grep = grep_error = co = co_error = mined = mine_error = None
        grep_svg: Markup | str = ""
        if mine_form.on and not summary.problem:
            try:
                mined = mine_of(item, mine_form.min_count)
            except ChunkyError as e:
                mine_error = _form_error(e)
        if not summary.problem and (grep_form.pattern or (co_form.query and co_form.response)):
            from chunky.turf.analyses import cooccur
            from chunky.turf.analyses import grep as grep_fn
            from chunky.turf.index import TurfIndex

            idx = TurfIndex.open(item.path)
            if grep_form.pattern:
                try:
                    grep = grep_fn(idx, grep_form.pattern, regex=grep_form.regex, side=grep_form.side,
                                   case_sensitive=grep_form.case, examples=10)
                    grep_svg = bar_chart(
                        [Bar(label=s.source, value=s.matches, note=f"· {s.share:.0%} of matches, {s.lift:.1f}×")
                         for s in grep.by_source[:15]],
                        title="Matches per source",
                        label_width=220,
                        css_class="chart bar-chart grep",
                    )
                except ChunkyError as e:
                    grep_error = _form_error(e)
            if co_form.query and co_form.response:
                try:
                    co = cooccur(idx, co_form.query, co_form.response, regex=co_form.regex, case_sensitive=co_form.case)
                except ChunkyError as e:
                    co_error = _form_error(e)
            elif co_form.query or co_form.response:
                co_error = "conditional rates need both a query pattern and a response pattern"
        elif co_form.query or co_form.response:
            co_error = "conditional rates need both a query pattern and a response pattern"
        return _html(
            render(
                "turf_index.html",
                u=URLS,
                ix=summary,
                source_svg=source_chart(summary.sources),
                grep_form=grep_form,
                grep=grep,
                grep_error=grep_error,
                grep_svg=grep_svg,
                co_form=co_form,
                co=co,
                co_error=co_error,
                mine_form=mine_form,
                mined=mined,
                mine_error=mine_error,
                traces=self.catalog.traces_of(item.key),
                features=frequent_features(item) if not summary.problem else FeatureNames([], []),
            )
        )


@dataclass
class FeatureNames:
    query: list[str]
    response: list[str]


_FEATURES: dict[tuple[str, int], FeatureNames] = {}


def frequent_features(item: Item, per_side: int = 300) -> FeatureNames:
    """The most frequent lexical features of each side (suggestions for the conditional-rate form), cached
    per index build."""
    try:
        stamp = (item.path / "index.json").stat().st_mtime_ns
    except FileNotFoundError:
        return FeatureNames([], [])
    key = (str(item.path), stamp)
    if key not in _FEATURES:
        from chunky.turf.index import TurfIndex

        try:
            t = TurfIndex.open(item.path).feature_stats(["side", "feature", "df"])
        except (ChunkyError, OSError):
            return FeatureNames([], [])
        rows = sorted(zip(t["side"].to_pylist(), t["feature"].to_pylist(), t["df"].to_pylist()), key=lambda r: -r[2])
        names = {side: [f for s2, f, _ in rows if s2 == side][:per_side] for side in ("query", "response")}
        _FEATURES[key] = FeatureNames(names["query"], names["response"])
    return _FEATURES[key]


def _form_error(e: ChunkyError) -> str:
    """The analyses name CLI arguments; on the page the same fields are the form's inputs."""
    msg = str(e)
    for flag, label in (("--query:", "query pattern:"), ("--response:", "response pattern:"), ("PATTERN:", "pattern:"),
                        ("--side:", "side:")):
        if msg.startswith(flag):
            return label + msg[len(flag):]
    return msg


@dataclass
class GrepForm:
    pattern: str
    side: str
    regex: bool
    case: bool


@dataclass
class CooccurForm:
    query: str
    response: str
    regex: bool
    case: bool


@dataclass
class MineForm:
    on: bool
    min_count: int


def _int_param(raw: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(raw))) if raw else default
    except ValueError:
        return default


def mine_of(item: Item, min_count: int) -> Any:
    """`chunky mine` over an index (seconds on a large mix), remembered until the index is rebuilt."""
    from chunky.turf.analyses import mine
    from chunky.turf.index import TurfIndex

    try:
        built = (item.path / "index.json").stat().st_mtime_ns
    except FileNotFoundError:
        built = 0
    return runs_mod.MEMO.get(("mine", str(item.path.resolve()), built, min_count),
                    lambda: mine(TurfIndex.open(item.path), min_count=min_count))


def index_summary(item: Item) -> IndexSummary:
    from chunky.turf.index import read_meta

    try:
        meta = read_meta(item.path)
    except ChunkyError as e:
        return IndexSummary(key=item.key, path=item.path, problem=str(e))
    problem = ""
    if meta.stages.get("finalize") != "done":
        problem = f"{item.path}: the index build has not finished (stages: {meta.stages})"
    return IndexSummary(
        key=item.key,
        path=item.path,
        examples=meta.counts.examples,
        sources=dict(meta.sources),
        channels=meta.channels,
        embedder=meta.embedder.spec,
        created_at=meta.created_at,
        clusters=meta.counts.clusters,
        features=meta.counts.features,
        data_path=meta.data.path,
        problem=problem,
    )


def _wrap(handler):
    """Turn lookups that fail into 404 pages and user errors into 400 pages, never a traceback. Endpoints are
    plain functions, so Starlette runs them in its thread pool: a slow query never stalls other pages."""

    def endpoint(request: Request) -> Response:
        try:
            return handler(request)
        except LookupError as e:
            return _error(404, "Not found", str(e).strip("'\""))
        except ChunkyError as e:
            return _error(400, "Cannot show this page", str(e))

    return endpoint


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers `chunky serve` answers. Bound to loopback, only loopback names: a web page the user visits
    cannot reach the explorer through DNS rebinding. Bound to all interfaces, any name (the user chose that)."""
    if host in ("0.0.0.0", "::", ""):
        return None
    names = ["127.0.0.1", "localhost", "::1", "[::1]"]
    if host not in names:
        names.append(host if ":" not in host else f"[{host}]")
    return names


def create_app(paths: list[Path | str], *, hosts: list[str] | None = None) -> Starlette:
    """The explorer over PATHS; `hosts` restricts the Host header (see allowed_hosts)."""
    catalog = Catalog.from_paths(list(paths))
    ex = Explorer(catalog)
    routes = [
        Route("/", _wrap(ex.home)),
        Route("/run/{key:path}/-/finding/{cid}", _wrap(ex.finding)),
        Route("/run/{key:path}/-/export.jsonl", _wrap(ex.export)),
        Route("/run/{key:path}", _wrap(ex.run)),
        Route("/trace/{key:path}", _wrap(ex.trace)),
        Route("/steer-plot/{key:path}", _wrap(ex.steer_plot)),
        Route("/report/{key:path}", _wrap(ex.report)),
        Route("/steer/{key:path}", _wrap(ex.steer)),
        Route("/index/{key:path}", _wrap(ex.index)),
        Route("/check/{key:path}", _wrap(ex.check)),
        *experiment_routes(catalog.roots, _wrap),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "Not found", f"no page at {request.url.path}")

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)] if hosts else []
    app = Starlette(routes=routes, exception_handlers={404: not_found}, middleware=middleware)
    app.state.catalog = catalog
    return app
