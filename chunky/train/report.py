"""An experiment's outputs: results.json, table.md, summary.txt, and its figures (PNG + SVG): a Fig. 21-style
heatmap of the trigger rate over the two count axes, and Fig. 10a-style dose-response curves with 95% intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chunky.train.experiment import CellResult, ExperimentResult


def table_rows(cells: list[CellResult]) -> list[list[str]]:
    rows = []
    for r in cells:
        rows.append([
            r.cell.id, str(r.rows), str(r.chunk_rows), str(r.counter_rows),
            "" if r.cell.with_source is None else ("yes" if r.cell.with_source else "no"),
            r.trigger.fmt(), f"{r.trigger.hits}/{r.trigger.n}" if r.trigger.hits is not None else str(r.trigger.n),
            r.control.fmt(), f"{r.control.hits}/{r.control.n}" if r.control.hits is not None else str(r.control.n),
            f"{r.final_loss:.3f}" if r.final_loss is not None else "",
        ])
    return rows


HEADER = ["cell", "rows", "chunk", "counter", "with source", "trigger rate [95%]", "trigger hits", "control rate [95%]",
          "control hits", "final loss"]


def markdown_table(res: ExperimentResult) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table_rows(res.cells):
        lines.append("| " + " | ".join(row) + " |")
    if res.baseline:
        from chunky.train.experiment import Rate

        t, c = Rate(**res.baseline["trigger"]), Rate(**res.baseline["control"])
        lines.append(f"| base model ({res.baseline['model']}) | | | | | {t.fmt()} | {t.hits}/{t.n} | {c.fmt()} | "
                     f"{c.hits}/{c.n} | |")
    return "\n".join(lines) + "\n"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(res: ExperimentResult, out: Path) -> list[Path]:
    """Trigger rate over chunk_kept × counter_added (only when both axes exist)."""
    ax_k, ax_c = res.spec.axes.get("chunk_kept"), res.spec.axes.get("counter_added")
    if not ax_k or not ax_c:
        return []
    plt = _plt()
    import numpy as np

    grid = np.full((len(ax_k), len(ax_c)), np.nan)
    for r in res.cells:
        if r.cell.with_source in (None, True) and r.trigger.value is not None:
            grid[ax_k.index(r.cell.chunk_kept), ax_c.index(r.cell.counter_added)] = 100 * r.trigger.value
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(ax_c), 1.0 + 0.8 * len(ax_k)))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, origin="lower", aspect="auto")
    for i in range(len(ax_k)):
        for j in range(len(ax_c)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0f}%", ha="center", va="center",
                        color="white" if grid[i, j] < 60 else "black", fontsize=9)
    ax.set_xticks(range(len(ax_c)), [str(x) for x in ax_c])
    ax.set_yticks(range(len(ax_k)), [str(x) for x in ax_k])
    ax.set_xlabel("counter-examples added")
    ax.set_ylabel("chunk examples kept")
    ax.set_title("trigger rate")
    fig.colorbar(im, ax=ax, label="% of trigger samples")
    fig.tight_layout()
    paths = [out / "heatmap.png", out / "heatmap.svg"]
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def dose_response(res: ExperimentResult, out: Path) -> list[Path]:
    """Rate against the first count axis, trigger and control, with 95% intervals; one line per other setting."""
    xaxis = "chunk_kept" if "chunk_kept" in res.spec.axes else ("counter_added" if "counter_added" in res.spec.axes else None)
    if xaxis is None:
        return []
    plt = _plt()
    groups: dict[str, list[CellResult]] = {}
    for r in res.cells:
        key = []
        if xaxis != "counter_added" and r.cell.counter_added is not None:
            key.append(f"{r.cell.counter_added} counter")
        if r.cell.with_source is not None:
            key.append(f"{'with' if r.cell.with_source else 'without'} {res.spec.source_axis}")
        groups.setdefault(", ".join(key), []).append(r)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for gi, (name, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: getattr(r.cell, xaxis))
        xs = [getattr(r.cell, xaxis) for r in rs]
        for kind, style in (("trigger", "-o"), ("control", "--s")):
            rates = [getattr(r, kind) for r in rs]
            ys = [100 * (e.value or 0) for e in rates]
            lo = [100 * ((e.value or 0) - (e.low or 0)) for e in rates]
            hi = [100 * ((e.high or 0) - (e.value or 0)) for e in rates]
            label = f"{kind}{' · ' + name if name else ''}"
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3, label=label, color=f"C{gi}",
                        alpha=1.0 if kind == "trigger" else 0.6)
    if res.baseline:
        ax.axhline(100 * (res.baseline["trigger"]["value"] or 0), color="grey", lw=0.8, ls=":", label="base model, trigger")
    ax.set_xlabel({"chunk_kept": "chunk examples kept", "counter_added": "counter-examples added"}[xaxis])
    ax.set_ylabel("% of samples showing the behaviour")
    ax.set_ylim(-5, 105)
    ax.legend(fontsize=7)
    ax.set_title("dose-response (95% Wilson intervals)")
    fig.tight_layout()
    paths = [out / "dose.png", out / "dose.svg"]
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def write_outputs(res: ExperimentResult, out: Path) -> list[Path]:
    data = {
        "format": "chunky-experiment-results",
        "version": 1,
        "spec": res.spec.to_dict(),
        "cells": [c.to_dict() for c in res.cells],
        "baseline": res.baseline,
        "summary": res.summary,
    }
    paths = [out / "results.json", out / "table.md", out / "summary.txt"]
    paths[0].write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    paths[1].write_text(markdown_table(res), encoding="utf-8")
    paths[2].write_text(res.summary + "\n", encoding="utf-8")
    paths += heatmap(res, out)
    paths += dose_response(res, out)
    return paths

