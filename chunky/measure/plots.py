"""Figures of a steering result (matplotlib, Agg backend): PNG and SVG side by side.

This module depends on `chunky.measure.steer` (it draws a SteerResult), never the other way round:
`SteerResult.save` writes the data files and whoever saves a result draws its figures here
(`save_with_figures`).

- summary: per model, the rate on original vs transformed prompts and the delta with its interval
  (the paper's Figures 22/23); without a transform, the rate per model.
- examples: one bar per prompt (the paper's Table 2 as a chart).
- heatmap:X,Y: the rate per example on a grid of two numeric fields (the paper's Figure 25).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chunky.measure.steer import SteerResult

MAX_EXAMPLE_BARS = 60


def matplotlib_rc(params: dict[str, Any]) -> Any:
    import matplotlib

    return matplotlib.rc_context(params)  # type: ignore[arg-type]  # matplotlib types keys as a Literal of rc names


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _scale(result: SteerResult) -> float:
    return 1.0 if result.metric_kind == "mean" else 100.0


def _ylabel(result: SteerResult) -> str:
    return f"{result.config.metric} ({result.metric_unit})" if result.metric_kind == "mean" else f"{result.config.metric} rate (%)"


def _err(e: Any, k: float) -> tuple[float, float, float]:
    v = (e.value or 0.0) * k
    lo = (e.low if e.low is not None else e.value or 0.0) * k
    hi = (e.high if e.high is not None else e.value or 0.0) * k
    return v, max(0.0, v - lo), max(0.0, hi - v)


def _short(label: str, n: int = 28) -> str:
    return label if len(label) <= n else "…" + label[-(n - 1) :]


def _sane_y(ax: Any, *, signed: bool) -> None:
    """Matplotlib gives flat data a ±0.04 axis around it: a rate of 0 then seems to dip below zero. Rates and
    means start at 0 (with room above even when every bar is 0); a flat Δ panel gets a symmetric ±1."""
    lo, hi = float(ax.dataLim.y0), float(ax.dataLim.y1)
    flat = not (hi - lo > 1e-9)
    if signed:
        if flat:
            ax.set_ylim(-1.0, 1.0)
        return
    if lo >= 0:
        ax.set_ylim(0.0, hi * 1.1 if not flat and hi > 0 else 1.0)


def plot_summary(result: SteerResult) -> Any:
    plt = _plt()
    import numpy as np

    k = _scale(result)
    models = [r.model for r in result.rows]
    x = np.arange(len(models))
    ci = int(round(result.config.confidence * 100))
    if result.has_transform:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(models) + 4), 4.2))
        w = 0.38
        for off, side, color, label in (
            (-w / 2, "original", "#8c9fb8", "original"),
            (w / 2, "transformed", "#d9822b", f"transformed ({result.transform_label})"),
        ):
            vals = [_err(getattr(r, side), k) for r in result.rows]
            ax1.bar(x + off, [v[0] for v in vals], w, yerr=np.array([[v[1] for v in vals], [v[2] for v in vals]]),
                    color=color, label=_short(label, 40), capsize=3)
        ax1.set_xticks(x, [_short(m) for m in models], rotation=15, ha="right")
        ax1.set_ylabel(_ylabel(result))
        _sane_y(ax1, signed=False)
        ax1.legend(fontsize=8)
        ax1.set_title("rate per side" if result.metric_kind == "rate" else "mean per side", fontsize=10)
        deltas = [_err(r.delta, k) if r.delta and r.delta.defined else (0.0, 0.0, 0.0) for r in result.rows]
        colors = ["#c0392b" if d[0] > 0 else "#2e86c1" for d in deltas]
        ax2.bar(x, [d[0] for d in deltas], 0.55, yerr=np.array([[d[1] for d in deltas], [d[2] for d in deltas]]),
                color=colors, capsize=3)
        ax2.axhline(0, color="black", lw=0.8)
        _sane_y(ax2, signed=True)
        ax2.set_xticks(x, [_short(m) for m in models], rotation=15, ha="right")
        ax2.set_ylabel("Δ " + ("(" + result.metric_unit + ")" if result.metric_kind == "mean" else "(percentage points)"))
        ax2.set_title(f"transformed − original, {ci}% paired bootstrap CI", fontsize=10)
    else:
        fig, ax1 = plt.subplots(figsize=(max(5, 1.6 * len(models) + 3), 4))
        vals = [_err(r.original, k) for r in result.rows]
        ax1.bar(x, [v[0] for v in vals], 0.6, yerr=np.array([[v[1] for v in vals], [v[2] for v in vals]]),
                color="#8c9fb8", capsize=3)
        ax1.set_xticks(x, [_short(m) for m in models], rotation=15, ha="right")
        ax1.set_ylabel(_ylabel(result))
        _sane_y(ax1, signed=False)
        ax1.set_title(f"{ci}% bootstrap CI over examples", fontsize=10)
    fig.suptitle(f"{result.config.metric} · {_short(result.data, 50)}", fontsize=11)
    fig.tight_layout()
    return fig


def _panels(result: SteerResult) -> list[tuple[str, str, str]]:
    """(model, side, title) for each panel of a per-example figure."""
    out = []
    for m in result.config.models:
        out.append((m, "original", m if not result.has_transform else f"{m} · original"))
        if result.has_transform:
            out.append((m, "transformed", f"{m} · {result.transform_label}"))
    return out


def _side_value(p: Any, side: str) -> float | None:
    s = p.original if side == "original" else p.transformed
    return None if s is None else s.value


def _side(p: Any, side: str) -> Any:
    if p is None:
        return None
    return p.original if side == "original" else p.transformed


def _wilson(s: Any, confidence: float) -> tuple[float, float]:
    from chunky.measure.stats import wilson_interval

    if s is None:
        return (0.0, 0.0)
    vals = [x.value for x in s.samples if x.value is not None]
    iv = wilson_interval(int(round(sum(vals))), len(vals), confidence)
    return (0.0, 0.0) if iv is None else (100 * iv[0], 100 * iv[1])


def plot_examples(result: SteerResult) -> Any:
    plt = _plt()
    import numpy as np

    k = _scale(result)
    panels = _panels(result)
    first = result.config.models[0]
    all_exs = [p.example for p in result.pairs_of(first)]
    # One bar per prompt stays readable up to a few dozen prompts; beyond that show the first ones.
    exs = all_exs[:MAX_EXAMPLE_BARS]
    h = max(3.0, 0.26 * len(exs) + 1.2)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2.8, h), sharey=True, squeeze=False)
    y = np.arange(len(exs))
    for ax, (m, side, title) in zip(axes[0], panels):
        by_id = {p.example.id: p for p in result.pairs_of(m)}
        vals = [_side_value(by_id[e.id], side) if e.id in by_id else None for e in exs]
        xerr = None
        if k == 100 and result.config.samples > 1:
            # Each prompt's rate rests on its own samples: show their Wilson interval.
            lo_hi = [_wilson(_side(by_id.get(e.id), side), result.config.confidence) for e in exs]
            xerr = np.array([[max(0.0, (v or 0.0) * k - lh[0]) for v, lh in zip(vals, lo_hi)],
                             [max(0.0, lh[1] - (v or 0.0) * k) for v, lh in zip(vals, lo_hi)]])
        ax.barh(y, [(v or 0.0) * k for v in vals], xerr=xerr, capsize=2, error_kw={"elinewidth": 0.7, "alpha": 0.6},
                color=["#bbbbbb" if v is None else "#d9822b" for v in vals])
        for yi, v in zip(y, vals):
            ax.text(((v or 0.0) * k) + (0.01 * (100 if k == 100 else max(1.0, max((x or 0) for x in vals) * k))), yi,
                    "—" if v is None else (f"{v * k:.0f}" if k == 100 else f"{v:.1f}"), va="center", fontsize=7)
        ax.set_title(_short(title, 40), fontsize=9)
        ax.set_xlabel(_ylabel(result), fontsize=8)
        if k == 100:
            ax.set_xlim(0, 110)
    axes[0][0].set_yticks(y, [_short(e.prompt.replace("\n", " "), 45) for e in exs], fontsize=7)
    axes[0][0].invert_yaxis()
    n = result.config.samples
    ci = int(round(result.config.confidence * 100))
    bars = f" · {ci}% Wilson intervals" if k == 100 and n > 1 else ""
    shown = "" if len(exs) == len(all_exs) else f" · first {len(exs)} of {len(all_exs)} prompts"
    fig.suptitle(f"{result.config.metric} per prompt · {n} sample{'s' if n > 1 else ''} each{bars}{shown}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_heatmap(result: SteerResult, xf: str, yf: str) -> Any:
    plt = _plt()
    import numpy as np

    k = _scale(result)
    panels = _panels(result)
    first = result.config.models[0]
    exs = [p.example for p in result.pairs_of(first)]
    xs = sorted({e.meta[xf] for e in exs})
    ys = sorted({e.meta[yf] for e in exs})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 0.8, 4.4), squeeze=False)
    vmax = 100.0 if k == 100 else None
    im = None
    for ax, (m, side, title) in zip(axes[0], panels):
        grid = np.full((len(ys), len(xs)), np.nan)
        for p in result.pairs_of(m):
            v = _side_value(p, side)
            if v is not None:
                grid[ys.index(p.example.meta[yf]), xs.index(p.example.meta[xf])] = v * k
        im = ax.imshow(grid, origin="lower", cmap="magma_r", vmin=0.0, vmax=vmax if vmax else np.nanmax(grid),
                       aspect="equal")
        if len(xs) * len(ys) <= 400:
            for yi in range(len(ys)):
                for xi in range(len(xs)):
                    v = grid[yi, xi]
                    if not np.isnan(v):
                        ax.text(xi, yi, f"{v:.0f}", ha="center", va="center", fontsize=6,
                                color="white" if (vmax and v > 0.6 * vmax) else "black")
        ax.set_xticks(range(len(xs)), [str(v) for v in xs], fontsize=7)
        ax.set_yticks(range(len(ys)), [str(v) for v in ys], fontsize=7)
        ax.set_xlabel(xf)
        ax.set_ylabel(yf)
        ax.set_title(_short(title, 40), fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.85, label=_ylabel(result))
    n = result.config.samples
    fig.suptitle(f"{result.config.metric} · {_short(result.data, 50)} · {n} sample{'s' if n > 1 else ''} per cell",
                 fontsize=10)
    return fig


def render(result: SteerResult, stem: Path) -> list[Path]:
    """Draw the result's figure (its `plot` kind) as STEM.png and STEM.svg."""
    plt = _plt()
    if result.plot.startswith("heatmap:"):
        xf, yf = result.plot[len("heatmap:") :].split(",")
        fig = plot_heatmap(result, xf, yf)
    elif result.plot == "examples":
        fig = plot_examples(result)
    else:
        fig = plot_summary(result)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    try:
        fig.savefig(paths[0], dpi=130, bbox_inches="tight")
        # Text as text, not glyph outlines: a smaller file whose labels a browser can search and select.
        with matplotlib_rc({"svg.fonttype": "none"}):
            fig.savefig(paths[1], bbox_inches="tight")
    finally:
        plt.close(fig)
    return paths


def save_with_figures(result: SteerResult, out: Path) -> list[Path]:
    """Everything `chunky steer` writes into OUT: steer.json and pairs.jsonl (`SteerResult.save`), then the
    figure as steer.png and steer.svg."""
    return [*result.save(out), *render(result, out / "steer")]
