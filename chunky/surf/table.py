"""Aggregation across SURF runs (paper Table 1): for each target model × behaviour, the share of the
pipeline's output prompts (every run's final replay buffer) that violate the rubric."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from chunky.errors import ConfigError
from chunky.store import RunStore

PAPER_ORDER = ("code", "analytic", "math", "rebut", "refusal")


@dataclass
class Cell:
    model: str
    behaviour: str
    prompts: int
    violations: int
    runs: int

    @property
    def share(self) -> float | None:
        return self.violations / self.prompts if self.prompts else None


@dataclass
class AggregateTable:
    threshold: float
    models: list[str]
    behaviours: list[str]
    cells: dict[tuple[str, str], Cell]

    def cell(self, model: str, behaviour: str) -> Cell | None:
        return self.cells.get((model, behaviour))

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "models": self.models,
            "behaviours": self.behaviours,
            "cells": [dict(asdict(c), share=c.share) for c in self.cells.values()],
        }


def judging_label(store: RunStore) -> str:
    """How a run judged, when that is not the rubric's default: a gated and an ungated run of one rubric
    measure different things, so they get separate columns ('rebut', 'rebut [gate none]')."""
    config = store.get_meta("config") or {}
    rubric = store.get_meta("rubric") or {}
    judge = str((config.get("judge") or {}).get("spec") or "")
    if judge.startswith("detector:"):
        return f"detector {judge[len('detector:'):]}"
    gate = config.get("gate")
    if gate is None or gate == rubric.get("detector"):
        return ""
    return "gate none" if str(gate).strip().lower() in ("none", "off", "") else f"gate {gate}"


def aggregate(run_dirs: Iterable[str | Path], threshold: float = 50.0) -> AggregateTable:
    cells: dict[tuple[str, str], Cell] = {}
    dirs = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))
    if not dirs:
        raise ConfigError("give at least one run directory")
    for d in dirs:
        with RunStore.open(d) as store:
            model = store.target_model
            behaviour = store.rubric_name
            if model is None or behaviour is None:
                raise ConfigError(f"{d}: the run has no stored target model or rubric")
            judging = judging_label(store)
            if judging:
                behaviour = f"{behaviour} [{judging}]"
            outputs = store.final_buffers()
            runs = len({b.run_id for b in outputs})
        c = cells.setdefault((model, behaviour), Cell(model, behaviour, 0, 0, 0))
        c.prompts += len(outputs)
        c.violations += sum(1 for b in outputs if b.score > threshold)
        c.runs += runs
    models = sorted({m for m, _ in cells})
    found = {b for _, b in cells}
    rank = {b: i for i, b in enumerate(PAPER_ORDER)}
    behaviours = sorted(found, key=lambda b: (rank.get(b.split(" [")[0], len(rank)), b))
    return AggregateTable(threshold, models, behaviours, cells)


def _fmt(c: Cell | None) -> str:
    if c is None or c.share is None:
        return "-"
    return f"{100 * c.share:.0f}"


def render(tab: AggregateTable, fmt: str = "markdown") -> str:
    if fmt == "json":
        return json.dumps(tab.to_dict(), ensure_ascii=False, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["model"] + tab.behaviours)
        for m in tab.models:
            w.writerow([m] + [_fmt(tab.cell(m, b)) for b in tab.behaviours])
        return buf.getvalue()
    if fmt in ("markdown", "md"):
        lines = [
            "| model | " + " | ".join(tab.behaviours) + " |",
            "|---|" + "---:|" * len(tab.behaviours),
        ]
        for m in tab.models:
            lines.append(f"| {m} | " + " | ".join(_fmt(tab.cell(m, b)) for b in tab.behaviours) + " |")
        counts = sorted({c.prompts for c in tab.cells.values()})
        lines.append("")
        lines.append(
            f"Share (%) of output prompts (final replay buffers) scoring above {tab.threshold:g}; "
            f"prompts per cell: {', '.join(map(str, counts))}."
        )
        return "\n".join(lines)
    raise ConfigError(f"--format '{fmt}': use markdown, csv or json")
