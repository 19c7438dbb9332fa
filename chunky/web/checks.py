"""Checks (`chunky check --out CHECK.json`) in the explorer and in `chunky report`: one check, or two side by side
(rate per case, Δ with Newcombe's interval, the regression verdict).

Check files are found under the served directories by their first bytes (`{"format": "chunky-check"`), at most
MAX_DEPTH levels down; pages look them up by key only, never by a path from the URL. Model output is shown only
through the autoescaping templates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from chunky.errors import ChunkyError
from chunky.suite.check import (
    CHECK_FORMAT,
    CaseComparison,
    CheckResult,
    Comparison,
    compare,
    fmt_delta,
    fmt_rate,
    load_check,
    verdict_of,
)
from chunky.web.discover import MAX_DEPTH, SKIP_DIRS, Item, has_format, root_names

DEFAULT_MAX_INCREASE = 10.0


def is_check_file(path: Path) -> bool:
    return has_format(path, CHECK_FORMAT)


def find_checks(roots: list[Path]) -> dict[str, Item]:
    """Every check file under `roots` (names only plus a 200-byte read per .json file), keyed like the catalog."""
    found: dict[str, Item] = {}
    for root, root_name in zip(roots, root_names(roots)):
        _walk(root, root, root_name, 0, found)
    return found


def _walk(root: Path, d: Path, root_name: str, depth: int, found: dict[str, Item]) -> None:
    try:
        entries = sorted(os.scandir(d), key=lambda e: e.name)
    except (PermissionError, FileNotFoundError, NotADirectoryError):
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_file() and e.name.endswith(".json") and e.name not in ("index.json", "steer.json", "suite.json"):
            p = Path(e.path)
            if is_check_file(p):
                rel = p.relative_to(root).as_posix()
                found[f"{root_name}/{rel}"] = Item("check", f"{root_name}/{rel}", p)
        elif e.is_dir() and depth < MAX_DEPTH and e.name not in SKIP_DIRS and not (Path(e.path) / "run.sqlite").is_file():
            _walk(root, Path(e.path), root_name, depth + 1, found)


@dataclass
class CaseRow:
    id: str
    scorer: str
    prompt: str
    system: str | None
    rate: str
    n: int
    errors: int
    responses: list[tuple[str, bool | None]]  # (response, hit) of each sample
    # comparison columns (side by side)
    baseline_rate: str = ""
    delta: str = ""
    verdict: str = ""
    regression: bool = False
    delta_value: float | None = None


@dataclass
class CheckView:
    title: str
    check: CheckResult
    rows: list[CaseRow]
    mean_rate: str
    baseline: CheckResult | None = None
    comparison: Comparison | None = None
    mean_delta: str = ""
    problem: str = ""
    key: str = ""
    baseline_key: str = ""
    regressions: list[str] = field(default_factory=list)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def check_view(check: CheckResult, baseline: CheckResult | None = None, *,
               max_increase: float | None = None, key: str = "", baseline_key: str = "") -> CheckView:
    """One check, or (with `baseline`) the two side by side. The comparison is computed afresh from the two files,
    with the threshold the check was run with when it recorded one against this baseline."""
    problem = ""
    comparison = None
    if baseline is not None:
        if baseline.suite_id != check.suite_id:
            problem = (f"{baseline.path} is a check of suite {baseline.suite_id} ({baseline.suite_name}), "
                       f"{check.path} of suite {check.suite_id} ({check.suite_name}): they cannot be compared")
        else:
            thr = max_increase
            if thr is None:
                thr = check.comparison.max_increase_pp if check.comparison else DEFAULT_MAX_INCREASE
            comparison = compare(check, baseline, thr)
    by_id: dict[str, CaseComparison] = {r.id: r for r in comparison.rows} if comparison else {}
    rows = []
    for c in check.cases:
        row = CaseRow(
            id=c.id, scorer=c.scorer, prompt=c.prompt, system=c.system, rate=fmt_rate(c.rate), n=c.judged,
            errors=c.errors, responses=[(s.response or (s.error or ""), s.hit) for s in c.samples],
        )
        cmp_row = by_id.get(c.id)
        if cmp_row is not None and comparison is not None:
            row.baseline_rate = fmt_rate(cmp_row.baseline)
            row.delta = fmt_delta(cmp_row.delta)
            row.delta_value = cmp_row.delta.value
            row.verdict = verdict_of(cmp_row, comparison.max_increase_pp)
            row.regression = cmp_row.regression
        elif comparison is not None:
            row.verdict = "not in baseline"
        rows.append(row)
    title = check.suite_name or Path(check.path).name
    return CheckView(
        title=f"{title} · {check.config.model}",
        check=check,
        rows=rows,
        mean_rate=_pct(check.mean_rate),
        baseline=baseline,
        comparison=comparison,
        mean_delta=fmt_delta(comparison.mean_delta) if comparison else "",
        problem=problem,
        key=key,
        baseline_key=baseline_key,
        regressions=comparison.regressions if comparison else [],
    )


def open_check(path: Path) -> CheckResult:
    try:
        return load_check(path)
    except ChunkyError:
        raise
    except (OSError, ValueError) as e:
        raise ChunkyError(f"{path}: not a readable check ({e})") from None


# ---- the report ---------------------------------------------------------------------------------


def build_check_report(check_path: Path, baseline_path: Path | None = None) -> str:
    from chunky.web.render import render

    check = open_check(Path(check_path))
    base = open_check(Path(baseline_path)) if baseline_path is not None else None
    view = check_view(check, base)
    if view.problem:
        raise ChunkyError(view.problem)
    return render("check.html", report=True, u=None, v=view,
                  generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_check_report(check_path: Path, out: Path, baseline_path: Path | None = None) -> Path:
    from chunky.web.report import write_html

    return write_html(out, build_check_report(check_path, baseline_path))


def check_page(roots: list[Path], key: str, vs: str | None) -> str:
    """The explorer's page for check `key`, side by side with check `vs` when given (keys from find_checks)."""
    from chunky.web.app import URLS
    from chunky.web.render import render

    found = find_checks(roots)
    item = found.get(key)
    if item is None:
        raise LookupError(f"no check '{key}' under the served directories")
    check = open_check(item.path)
    base = None
    if vs:
        b = found.get(vs)
        if b is None:
            raise LookupError(f"no check '{vs}' under the served directories")
        base = open_check(b.path)
    view = check_view(check, base, key=key, baseline_key=vs or "")
    others = [o for o in found.values() if o.key != key]
    return render("check.html", u=URLS, v=view, others=others)


@dataclass
class CheckListing:
    key: str
    suite: str
    suite_id: str
    model: str
    status: str
    cases: int
    mean_rate: str
    created_at: str
    problem: str = ""


def check_listing(roots: list[Path]) -> list[CheckListing]:
    out = []
    for item in find_checks(roots).values():
        try:
            c = open_check(item.path)
        except ChunkyError as e:
            out.append(CheckListing(item.key, "", "", "", "unreadable", 0, "—", "", str(e)))
            continue
        out.append(CheckListing(item.key, c.suite_name, c.suite_id, c.config.model, c.status, len(c.cases),
                                _pct(c.mean_rate), c.created_at))
    out.sort(key=lambda x: (x.suite_id, x.created_at, x.key))
    return out
