"""Trace and steering results prepared for display: the records of chunky.turf.trace / chunky.measure.steer
plus their charts (inline SVG) and the image reference of a steering plot."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup

from chunky.errors import ChunkyError
from chunky.measure.steer import SteerResult, fmt_estimate, fmt_value
from chunky.turf.trace import TRACE_FORMAT, CruxTrace, LexicalAnchor, SourceShare, TraceResult
from chunky.web.charts import PALETTE, Bar, bar_chart
from chunky.web.discover import Item

# --------------------------------------------------------------------------------------------- traces


@dataclass
class CruxView:
    trace: CruxTrace
    cluster_bars: Markup
    source_bars: Markup
    trigger_source_bars: Markup | None


@dataclass
class AnchorView:
    anchor: LexicalAnchor
    feature_bars: Markup
    source_bars: Markup


@dataclass
class TraceView:
    result: TraceResult
    origin: str  # the file or "run.sqlite (channel)" it came from
    cruxes: list[CruxView] = field(default_factory=list)
    anchors: list[AnchorView] = field(default_factory=list)


def _source_bars(shares: list[SourceShare], title: str) -> Markup:
    bars = [
        Bar(
            label=s.source,
            value=s.hits,
            note=f"· {s.share:.0%} of hits, {s.lift:.1f}× its mix share",
            title=f"{s.source}: {s.hits} hits ({s.share:.1%}), {s.mix_share:.1%} of the mix",
        )
        for s in shares
    ]
    return bar_chart(bars, title=title, label_width=200, color=PALETTE[2], css_class="chart bar-chart sources")


def trace_view(result: TraceResult, origin: str) -> TraceView:
    view = TraceView(result=result, origin=origin)
    if result.llm is not None:
        for ct in result.llm.traces:
            trig_cluster = ct.trigger.cluster if ct.trigger else None
            bars = [
                Bar(
                    label=f"{c.cluster}: {c.summary}",
                    value=c.hits,
                    note=f"/{c.total} · lift {c.lift:.1f}×" + (" · trigger" if c.cluster == trig_cluster else ""),
                    title=f"cluster {c.cluster}: {c.summary} ({c.size} examples in the mix)",
                )
                for c in ct.clusters
            ]
            view.cruxes.append(
                CruxView(
                    trace=ct,
                    cluster_bars=bar_chart(bars, title=f"Hit count per query cluster (of {ct.k} retrieved)",
                                           max_value=max(ct.k, 1), css_class="chart bar-chart hits"),
                    source_bars=_source_bars(ct.sources, "Sources of all retrieved examples"),
                    trigger_source_bars=_source_bars(ct.trigger_sources, "Sources of the trigger cluster's hits")
                    if ct.trigger_sources
                    else None,
                )
            )
    if result.lexical is not None:
        for a in result.lexical.anchors:
            feats = sorted(a.features, key=lambda h: (-h.z, -h.hits))[:12]
            trig = a.trigger.feature if a.trigger else None
            bars = [
                Bar(
                    label=h.feature,
                    value=h.hits,
                    note=f"/{h.total} · lift {h.lift:.1f}× · z {h.z:.1f}" + (" · trigger" if h.feature == trig else ""),
                    title=f"{h.feature} ({h.kind}): in {h.df} examples of the mix",
                )
                for h in feats
            ]
            view.anchors.append(
                AnchorView(
                    anchor=a,
                    feature_bars=bar_chart(bars, title=f"Hit count per query feature (of {a.k} nearest)",
                                           max_value=max(a.k, 1), label_width=220, css_class="chart bar-chart hits"),
                    source_bars=_source_bars(a.sources, "Sources of the nearest training responses"),
                )
            )
    return view


def load_trace_file(path: Path) -> TraceView:
    return trace_view(TraceResult.load(path), str(path))


def traces_for_candidate(run_dir: Path, candidate_id: int, stored: dict[str, dict]) -> tuple[list[TraceView], list[str]]:
    """The traces of one finding: RUN/traces/<id>.json (and <id>.<channel>.json), then the store's traces
    table. Returns (views, problems) so one unreadable file does not hide the others."""
    views: list[TraceView] = []
    problems: list[str] = []
    seen: set[str] = set()
    tdir = run_dir / "traces"
    files = []
    if tdir.is_dir():
        files = [p for p in sorted(tdir.glob(f"{candidate_id}*.json")) if p.stem == str(candidate_id) or p.stem.startswith(f"{candidate_id}.")]
    for p in files:
        try:
            v = load_trace_file(p)
        except ChunkyError as e:
            problems.append(str(e))
            continue
        seen.add(v.result.id)
        views.append(v)
    for channel, data in stored.items():
        if not isinstance(data, dict) or data.get("format", TRACE_FORMAT) != TRACE_FORMAT:
            continue
        try:
            result = TraceResult.from_dict(data)
        except (ChunkyError, KeyError, TypeError) as e:
            problems.append(f"run.sqlite traces[{candidate_id}, {channel}]: not a chunky trace ({e})")
            continue
        if result.id in seen:
            continue
        seen.add(result.id)
        views.append(trace_view(result, f"run.sqlite ({channel})"))
    return views, problems


# --------------------------------------------------------------------------------------------- steering


@dataclass
class SteerRowView:
    model: str
    n: int
    original: str
    transformed: str
    delta: str
    relative: str
    vs_first: str
    errors: int


@dataclass
class SteerPairView:
    id: str
    model: str
    original_prompt: str
    original_response: str
    original_value: str
    transformed_prompt: str
    transformed_response: str
    transformed_value: str
    delta: str


@dataclass
class SteerView:
    item: Item
    title: str
    result: SteerResult
    ci: int
    rows: list[SteerRowView]
    pairs: list[SteerPairView]
    total_pairs: int
    image_src: str | None
    bars: Markup | None = None
    open_pairs: bool = False

    @property
    def more_pairs(self) -> bool:
        return self.total_pairs > len(self.pairs)


STEER_IMAGES = (("steer.svg", "image/svg+xml"), ("steer.png", "image/png"))


def steer_image(directory: Path) -> tuple[Path, str] | None:
    """The steering plot file and its media type (SVG preferred)."""
    for name, mime in STEER_IMAGES:
        p = directory / name
        if p.is_file():
            return p, mime
    return None


def data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _first_response(side) -> str:
    if side is None:
        return ""
    for s in side.samples:
        if s.response:
            return s.response
        if s.error:
            return f"[error] {s.error}"
    return f"[error] {side.error}" if side.error else ""


def steer_view(item: Item, image_src: Callable[[Item], str | None], max_pairs: int = 50) -> SteerView:
    """Load OUT/steer.json; `image_src` maps the item to its plot's URL (served) or data: URI (report)."""
    try:
        result = SteerResult.load(item.path)
    except (ChunkyError, json.JSONDecodeError) as e:
        raise ChunkyError(str(e)) from None
    rows = [
        SteerRowView(
            model=r.model,
            n=r.n_examples,
            original=fmt_estimate(result, r.original),
            transformed=fmt_estimate(result, r.transformed),
            delta=fmt_estimate(result, r.delta, signed=True),
            relative="—" if r.relative is None else f"{100 * r.relative:+.0f}%",
            vs_first=fmt_estimate(result, r.vs_first, signed=True),
            errors=r.n_errors,
        )
        for r in result.rows
    ]
    pairs = []
    for p in result.pairs[:max_pairs]:
        pairs.append(
            SteerPairView(
                id=p.example.id,
                model=p.model,
                original_prompt=p.original.prompt.user if p.original.prompt else p.example.prompt,
                original_response=_first_response(p.original),
                original_value=fmt_value(result, p.original.value),
                transformed_prompt=(p.transformed.prompt.user if p.transformed and p.transformed.prompt else ""),
                transformed_response=_first_response(p.transformed),
                transformed_value=fmt_value(result, p.transformed.value if p.transformed else None),
                delta=fmt_value(result, p.delta, signed=True),
            )
        )
    src = image_src(item)
    bars = None
    if src is None:
        # No plot file: draw the per-model rates inline instead.
        blist = []
        for r in result.rows:
            if r.original.value is not None:
                blist.append(Bar(label=f"{r.model} · original", value=round(_scaled(result, r.original.value), 2)))
            if r.transformed is not None and r.transformed.value is not None:
                blist.append(Bar(label=f"{r.model} · transformed", value=round(_scaled(result, r.transformed.value), 2)))
        bars = bar_chart(blist, title=f"{result.config.metric} ({'mean' if result.metric_kind == 'mean' else '%'})")
    return SteerView(
        item=item,
        title=result.name or item.name,
        result=result,
        ci=int(round(result.config.confidence * 100)),
        rows=rows,
        pairs=pairs,
        total_pairs=len(result.pairs),
        image_src=src,
        bars=bars,
    )


def _scaled(result: SteerResult, v: float) -> float:
    return v if result.metric_kind == "mean" else 100 * v
