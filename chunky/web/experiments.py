"""Causal experiments (`chunky experiment SPEC.yaml --out EXP`) in the explorer and in `chunky report EXP`: the grid's
cells (axes, mix counts, trigger and control rates with 95% intervals, whether the effect is selective), the base
model, the summary line, the heatmap and dose-response figures the experiment wrote, and each cell's measured
responses.

An experiment folder is found under the served directories by its `experiment.json` (`"format":
"chunky-experiment"`), at most MAX_DEPTH levels down; pages and figures are looked up by key and by a fixed list of
file names, never by a path from the URL. Everything the user or a model wrote (the spec's chunk pattern, source
names, prompts, responses, the summary) reaches the page only through the autoescaping templates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from chunky import serde
from chunky.errors import ChunkyError
from chunky.train.experiment import FORMAT, Cell, CellResult, ExperimentSpec, Rate, grid, read_cell
from chunky.web.discover import MAX_DEPTH, SKIP_DIRS, Item, has_format, root_names

# The figures `chunky experiment` writes (chunky.train.report), PNG first: what the pages show.
FIGURES = {"heatmap.png": "image/png", "dose.png": "image/png", "heatmap.svg": "image/svg+xml",
           "dose.svg": "image/svg+xml"}
SHOWN = ("heatmap.png", "dose.png")


def is_experiment_dir(d: Path) -> bool:
    return has_format(d / "experiment.json", FORMAT)


def find_experiments(roots: list[Path]) -> dict[str, Item]:
    """Every experiment folder under `roots` (directory names plus one 200-byte read each), keyed like the catalog."""
    found: dict[str, Item] = {}
    for root, root_name in zip(roots, root_names(roots)):
        _walk(root, root, root_name, 0, found)
    return found


def _walk(root: Path, d: Path, root_name: str, depth: int, found: dict[str, Item]) -> None:
    if is_experiment_dir(d):
        rel = d.relative_to(root).as_posix()
        key = root_name if rel == "." else f"{root_name}/{rel}"
        found[key] = Item("experiment", key, d)
        return  # its cells are part of it
    if depth >= MAX_DEPTH or (d / "run.sqlite").is_file() or (d / "index.json").is_file():
        return
    try:
        entries = sorted((e for e in os.scandir(d) if e.is_dir()), key=lambda e: e.name)
    except (PermissionError, FileNotFoundError, NotADirectoryError):
        return
    for e in entries:
        if not e.name.startswith(".") and e.name not in SKIP_DIRS:
            _walk(root, Path(e.path), root_name, depth + 1, found)


# ---- the view -----------------------------------------------------------------------------------


@dataclass
class ArmView:
    """One arm (trigger or control) of a cell: the rate with its interval, and the raw count."""

    rate: str
    count: str
    value: float | None

    @classmethod
    def of(cls, r: Rate) -> ArmView:
        count = f"{r.hits}/{r.n}" if r.hits is not None else f"n = {r.n}"
        return cls(r.fmt(), count, r.value)


@dataclass
class SampleView:
    kind: str  # trigger | control
    prompt: str
    response: str
    hit: bool | None  # None: not measured (an error)


@dataclass
class CellView:
    id: str
    axes: list[str]  # one value per axis column, in the order of ExperimentView.axis_names
    status: str  # done | training | pending
    rows: int | None = None
    chunk_rows: int | None = None
    counter_rows: int | None = None
    trigger: ArmView | None = None
    control: ArmView | None = None
    selective: bool | None = None
    final_loss: float | None = None
    train_steps: int | None = None
    samples: list[SampleView] = field(default_factory=list)
    problem: str = ""


@dataclass
class ExperimentView:
    key: str
    title: str
    path: Path
    mix: str
    chunk: str
    metric: str
    eval: str
    measure: str  # samples, temperature, tokens
    train: list[tuple[str, str]]
    axis_names: list[str]
    cells: list[CellView]
    done: int
    baseline_model: str = ""
    baseline_trigger: ArmView | None = None
    baseline_control: ArmView | None = None
    summary: str = ""
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, src)
    downloads: list[tuple[str, str]] = field(default_factory=list)  # (file name, href), served pages only
    problem: str = ""


def _axis_labels(spec: ExperimentSpec) -> list[str]:
    names = {"chunk_kept": "chunk examples kept", "counter_added": "counter-examples added"}
    out = []
    for a in ("chunk_kept", "counter_added", "with_source"):
        if a in spec.axes:
            out.append(names.get(a) or f"with source {spec.source_axis}")
    return out


def _axis_values(cell: Cell) -> list[str]:
    vals = []
    if cell.chunk_kept is not None:
        vals.append(str(cell.chunk_kept))
    if cell.counter_added is not None:
        vals.append(str(cell.counter_added))
    if cell.with_source is not None:
        vals.append("yes" if cell.with_source else "no")
    return vals


def _selective(r: CellResult) -> bool | None:
    """Trigger ≫ control: the two 95% intervals do not overlap (the bar the benchmark uses)."""
    if r.trigger.low is None or r.control.high is None:
        return None
    return r.trigger.low > r.control.high


def _samples(cell_dir: Path, kind_field: str) -> list[SampleView]:
    """The cell's measured responses (its steer.json), trigger prompts first."""
    from chunky.measure.steer import SteerResult

    f = cell_dir / "measure" / "steer.json"
    if not f.is_file():
        return []
    res = SteerResult.load(f)
    out = []
    for p in res.pairs:
        kind = str(p.example.meta.get(kind_field, ""))
        for s in p.original.samples:
            hit = None if s.value is None else s.value >= 0.5
            out.append(SampleView(kind, p.example.prompt, s.response or (f"[error] {s.error}" if s.error else ""), hit))
    out.sort(key=lambda s: s.kind != "trigger")
    return out


def _cell_view(exp: Path, spec: ExperimentSpec, cell: Cell, with_samples: bool) -> CellView:
    d = exp / "cells" / cell.id
    v = CellView(cell.id, _axis_values(cell), "pending")
    f = d / "cell.json"
    if not f.is_file():
        v.status = "training" if (d / "ckpt").is_dir() else "pending"
        return v
    try:
        r = read_cell(f)
    except (OSError, ValueError, ChunkyError) as e:
        v.status, v.problem = "unreadable", f"{f}: not a readable cell result ({e})"
        return v
    v.status = "done"
    v.rows, v.chunk_rows, v.counter_rows = r.rows, r.chunk_rows, r.counter_rows
    v.trigger, v.control = ArmView.of(r.trigger), ArmView.of(r.control)
    v.selective, v.final_loss, v.train_steps = _selective(r), r.final_loss, r.train_steps
    if with_samples:
        try:
            v.samples = _samples(d, spec.measure.kind_field)
        except ChunkyError as e:
            v.problem = str(e)
    return v


def read_spec(exp: Path) -> ExperimentSpec:
    f = exp / "experiment.json"
    try:
        return serde.from_dict(ExperimentSpec, json.loads(f.read_text(encoding="utf-8"))["spec"])
    except (OSError, ValueError, KeyError, ChunkyError) as e:
        raise ChunkyError(f"{f}: not a readable experiment ({e})") from None


def experiment_view(exp: Path, key: str = "", figure_src: Callable[[str], str] | None = None, *,
                    with_samples: bool = True) -> ExperimentView:
    """The whole page's data. `figure_src(name)` gives an image's src (a URL when served, a data: URI in a report);
    without it there are no figures. The listing skips the cells' responses (`with_samples=False`)."""
    spec = read_spec(exp)
    cells = [_cell_view(exp, spec, c, with_samples) for c in grid(spec)]
    m = spec.measure
    temp = "greedy" if not m.temperature else f"temperature {m.temperature:g}"
    view = ExperimentView(
        key=key or exp.name, title=exp.name, path=exp, mix=spec.mix, chunk=spec.chunk.describe(), metric=m.metric,
        eval=m.eval, measure=f"{m.samples} sample{'' if m.samples == 1 else 's'} per prompt, {temp}, ≤ {m.max_tokens} tokens",
        train=[(k, str(v)) for k, v in sorted(spec.train.items())], axis_names=_axis_labels(spec), cells=cells,
        done=sum(c.status == "done" for c in cells),
    )
    base = exp / "baseline.json"
    if base.is_file():
        try:
            b = json.loads(base.read_text(encoding="utf-8"))
            view.baseline_model = str(b["model"])
            view.baseline_trigger, view.baseline_control = ArmView.of(Rate(**b["trigger"])), ArmView.of(Rate(**b["control"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            view.problem = f"{base}: not readable ({e})"
    summary = exp / "summary.txt"
    if summary.is_file():
        view.summary = summary.read_text(encoding="utf-8").strip()
    captions = {"heatmap.png": "Trigger rate over the grid (heatmap)",
                "dose.png": "Dose-response, trigger and control, with 95% Wilson intervals"}
    if figure_src is not None:
        view.figures = [(captions[n], figure_src(n)) for n in SHOWN if (exp / n).is_file()]
    return view


# ---- the explorer -------------------------------------------------------------------------------


@dataclass
class ExperimentListing:
    key: str
    url: str
    cells: int
    done: int
    chunk: str
    metric: str
    summary: str
    problem: str = ""


def experiment_listing(roots: list[Path]) -> list[ExperimentListing]:
    out = []
    for item in find_experiments(roots).values():
        try:
            v = experiment_view(item.path, item.key, with_samples=False)
        except ChunkyError as e:
            out.append(ExperimentListing(item.key, experiment_url(item.key), 0, 0, "", "", "", str(e)))
            continue
        out.append(ExperimentListing(item.key, experiment_url(item.key), len(v.cells), v.done, v.chunk, v.metric,
                                     v.summary))
    return out


def _item(roots: list[Path], key: str) -> Item:
    item = find_experiments(roots).get(key)
    if item is None:
        raise LookupError(f"no experiment '{key}' under the served directories")
    return item


def experiment_page(roots: list[Path], key: str) -> str:
    from chunky.web.app import URLS
    from chunky.web.render import render

    item = _item(roots, key)
    view = experiment_view(item.path, key, lambda n: figure_url(key, n))
    view.downloads = [(n, figure_url(key, n)) for n in FIGURES if (item.path / n).is_file()]
    return render("experiment.html", u=URLS, v=view)


def experiment_url(key: str) -> str:
    from urllib.parse import quote

    return f"/experiment/{quote(key)}"


def figure_url(key: str, name: str) -> str:
    from urllib.parse import quote

    return f"/experiment-figure/{quote(key)}?name={quote(name)}"


def experiment_figure(roots: list[Path], key: str, name: str) -> tuple[Path, str]:
    """One of the experiment's own figure files (by fixed name) and its media type."""
    item = _item(roots, key)
    mime = FIGURES.get(name)
    if mime is None or not (item.path / name).is_file():
        raise LookupError(f"experiment {key} has no figure '{name}'")
    return item.path / name, mime


Endpoint = Callable[[Request], Response]


def routes(roots: list[Path], wrap: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """The explorer's experiment pages: /experiment/KEY and /experiment-figure/KEY?name=FILE."""
    from chunky.web.app import SECURITY_HEADERS, _html

    def page(request: Request) -> Response:
        return _html(experiment_page(roots, request.path_params["key"]))

    def figure(request: Request) -> Response:
        path, mime = experiment_figure(roots, request.path_params["key"], request.query_params.get("name", ""))
        headers = dict(SECURITY_HEADERS)
        # An SVG opened on its own must not run anything either.
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return FileResponse(path, media_type=mime, headers=headers)

    return [Route("/experiment-figure/{key:path}", wrap(figure)), Route("/experiment/{key:path}", wrap(page))]


# ---- the report ---------------------------------------------------------------------------------


def build_experiment_report(exp: Path) -> str:
    """One self-contained HTML file: the figures are data: URIs, nothing is fetched when it opens."""
    from chunky.web.artifacts import data_uri
    from chunky.web.render import render

    exp = Path(exp).resolve()
    if not is_experiment_dir(exp):
        raise ChunkyError(f"{exp}: not an experiment folder (no experiment.json of `chunky experiment`)")
    view = experiment_view(exp, exp.name, lambda n: data_uri(exp / n, FIGURES[n]))
    return render("experiment.html", report=True, u=None, v=view,
                  generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_experiment_report(exp: Path, out: Path) -> Path:
    from chunky.web.report import write_html

    return write_html(out, build_experiment_report(exp))
