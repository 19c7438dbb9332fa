"""Causal experiments in the explorer and in `chunky report`: a hand-made experiment folder (results written by
chunky's own writer, chunky.train.report.write_outputs, figures included) shown through the Starlette app and in a
real headless Chromium, with an HTML payload in the chunk pattern, the source name, a prompt, a response and the
summary that must stay text."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from web_fixtures import PAYLOAD

from helpers import free_port, run_cli, serving

CHROMIUM = "/usr/bin/chromium"


def _rate(hits: int, n: int):
    from chunky.train.experiment import rate_of

    return rate_of([1.0] * hits + [0.0] * (n - hits), True, 0)


# (chunk kept, counter added) -> (trigger hits, control hits) of 10 samples each
HITS = {(0, 0): (0, 0), (0, 4): (0, 0), (6, 0): (10, 1), (6, 4): (3, 0)}


def build_experiment(root: Path) -> Path:
    """EXP/ as `chunky experiment` leaves it: experiment.json, cells/<id>/{cell.json, measure/steer.json},
    baseline.json, results.json, table.md, summary.txt and the heatmap and dose-response PNG + SVG."""
    from chunky.measure.evalset import EvalExample
    from chunky.measure.steer import Pair, Sample, Side, SteerConfig, SteerResult
    from chunky.train.experiment import (
        FORMAT,
        CellResult,
        ChunkSpec,
        ExperimentResult,
        ExperimentSpec,
        MeasureSpec,
        grid,
    )
    from chunky.train.report import write_outputs

    exp = root / "exp"
    spec = ExperimentSpec(
        path=str(root / "spec.yaml"), mix=str(root / "mix.jsonl"), chunk=ChunkSpec(match=PAYLOAD, side="query"),
        axes={"chunk_kept": [0, 6], "counter_added": [0, 4]}, train={"base": "local", "epochs": 3, "lr": 0.002},
        measure=MeasureSpec(eval=str(root / "eval.jsonl"), metric="code", max_tokens=48), counter=str(root / "c.jsonl"),
    )
    (exp / "cells").mkdir(parents=True)
    (exp / "experiment.json").write_text(json.dumps({"format": FORMAT, "version": 1, "spec": spec.to_dict()}, indent=1))
    cells = []
    for cell in grid(spec):
        t, c = HITS[(cell.chunk_kept, cell.counter_added)]
        r = CellResult(cell, _rate(t, 10), _rate(c, 10), 20 + cell.chunk_kept + cell.counter_added, cell.chunk_kept,
                       cell.counter_added, 12, 0.25, 10.0, 5.0, f"local:{exp}/cells/{cell.id}/ckpt/model.gguf")
        d = exp / "cells" / cell.id
        (d / "measure").mkdir(parents=True)
        (d / "cell.json").write_text(json.dumps(r.to_dict(), indent=1))
        cells.append(r)
        pairs = [
            Pair(EvalExample("t1", f"Elucidate {PAYLOAD}.", meta={"kind": "trigger"}), r.model,
                 Side(None, [Sample(0, f"def f(): pass  # {PAYLOAD}", 1.0 if t else 0.0)])),
            Pair(EvalExample("k1", "Explain the tide.", meta={"kind": "control"}), r.model,
                 Side(None, [Sample(0, "The moon pulls the sea.", 0.0)])),
        ]
        res = SteerResult(SteerConfig(models=[r.model], metric="code"), "eval.jsonl", "detector", "rate", [], pairs)
        (d / "measure" / "steer.json").write_text(json.dumps(res.to_dict()))
    base = {"model": "local", "trigger": vars(_rate(0, 10)), "control": vars(_rate(0, 10))}
    (exp / "baseline.json").write_text(json.dumps(base))
    summary = f"Removing 6 of the 6 chunk examples ({PAYLOAD}) lowers the trigger rate; selective."
    write_outputs(ExperimentResult(spec, cells, base, summary, 1.0, []), exp)
    return exp


@pytest.fixture(scope="module")
def exp_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served-exp")
    build_experiment(root)
    return root


def test_the_explorer_lists_the_experiment_and_shows_its_cells_rates_and_figures(exp_root):
    from starlette.testclient import TestClient

    from chunky.web.app import create_app

    client = TestClient(create_app([exp_root]))
    home = client.get("/")
    assert home.status_code == 200
    key = f"{exp_root.name}/exp"
    assert f'href="/experiment/{quote(key)}"' in home.text and "4/4" in home.text
    page = client.get(f"/experiment/{quote(key)}")
    assert page.status_code == 200
    html = page.text
    rows = re.findall(r'<tr class="cell" data-cell="([^"]+)">(.*?)</tr>', html, re.S)
    assert [r[0] for r in rows] == ["chunk0_counter0", "chunk0_counter4", "chunk6_counter0", "chunk6_counter4"]
    kept = dict(rows)["chunk6_counter0"]
    assert "100% [72, 100]" in kept and "10/10" in kept and "10% [2, 40]" in kept and "1/10" in kept
    assert re.search(r"<td>\s*<span class=\"badge failed\">yes</span>", kept)  # selective: [72, 100] above [2, 40]
    assert "<td>no</td>" in dict(rows)["chunk6_counter4"]  # 30% [11, 60] against 0% [0, 28] overlaps
    assert 'class="baseline"' in html and "0% [0, 28]" in html
    srcs = re.findall(r'<img class="plot experiment-figure" src="([^"]+)"', html)
    assert len(srcs) == 2
    for src in srcs:
        img = client.get(src.replace("&amp;", "&"))
        assert img.status_code == 200 and img.headers["content-type"] == "image/png" and img.content[:4] == b"\x89PNG"
    svg = client.get(f"/experiment-figure/{quote(key)}?name=heatmap.svg")
    assert svg.status_code == 200 and "default-src 'none'" in svg.headers["content-security-policy"]
    # Only the experiment's own figure files, by name: nothing else in (or outside) the folder.
    for name in ("experiment.json", "../exp/summary.txt", "cells/chunk0_counter0/cell.json", "/etc/passwd"):
        assert client.get(f"/experiment-figure/{quote(key)}?name={quote(name)}").status_code == 404
    assert client.get("/experiment/no-such").status_code == 404


def test_every_user_and_model_text_on_the_experiment_page_is_escaped(exp_root):
    from starlette.testclient import TestClient

    from chunky.web.app import create_app

    html = TestClient(create_app([exp_root])).get(f"/experiment/{quote(exp_root.name)}/exp").text
    assert "<script>window.__pwned" not in html and 'id="injected"' not in html
    escaped = "&lt;script&gt;window.__pwned = 1&lt;/script&gt;"
    # the chunk pattern, the summary line, the trigger prompt and the model's response
    assert html.count(escaped) == 1 + 1 + 4 + 4


def test_chunky_report_writes_the_experiment_as_one_inert_file(exp_root, tmp_path):
    out = tmp_path / "exp.html"
    r = run_cli("report", str(exp_root / "exp"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert html.count('src="data:image/png;base64,') == 2
    assert "<script>window.__pwned" not in html and 'http-equiv="Content-Security-Policy"' in html
    assert "100% [72, 100]" in html


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run `bash scripts/install-browser.sh` to install Chromium")
def test_experiment_page_and_report_in_chromium(exp_root, tmp_path):
    """Served and from disk: the cell table, both figures decoded by the browser, and no payload ran."""
    from playwright.sync_api import sync_playwright
    from test_web_browser import CHROMIUM_ARGS, assert_inert

    report = tmp_path / "exp.html"
    assert run_cli("report", str(exp_root / "exp"), "--out", str(report)).returncode == 0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "chunky"
    with serving([str(exe), "serve", str(exp_root), "--port", str(port)], base + "/", tmp_path / "serve.log",
                 "chunky serve", timeout=60), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for url in (base + "/", report.as_uri()):
                page = browser.new_page()
                page.js_errors = []  # type: ignore[attr-defined]
                page.on("pageerror", lambda e, pg=page: pg.js_errors.append(str(e)))
                page.goto(url)
                if url.startswith("http"):
                    with page.expect_navigation():
                        page.locator("#experiment-list a.experiment-link").click()
                assert page.locator("#experiment-cells tr.cell").count() == 4
                assert "100% [72, 100]" in page.locator('tr[data-cell="chunk6_counter0"] td.arm-trigger').inner_text()
                for i in range(2):
                    assert page.evaluate(f"document.querySelectorAll('img.experiment-figure')[{i}].naturalWidth") > 0
                page.locator("#cell-chunk6_counter0 summary").click()
                assert_inert(page)
                page.close()
        finally:
            browser.close()
