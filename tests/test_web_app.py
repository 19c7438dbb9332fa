"""The explorer's server side, over real run stores: what each page reports, escaping, live reading of a run
that is still being written, read-only access, discovery, errors, and `chunky report`. (The same pages in a
real browser: test_web_browser.py.)"""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
import time
from html import unescape
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient
from web_fixtures import PAYLOAD, build_index, build_run

from helpers import run_cli

RAW_PAYLOAD = "<script>window.__pwned"
ESCAPED_PAYLOAD = "&lt;script&gt;window.__pwned"


def client(*paths: Path) -> TestClient:
    from chunky.web.app import create_app

    return TestClient(create_app(list(paths)))


def text_of(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def runs_row(html: str, key: str) -> list[str]:
    """The cells of the runs list row for run KEY, as text."""
    body = html.split('<table id="runs">', 1)[1].split("</table>", 1)[0]
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        if f">{key}</a>" in tr:
            return [text_of(td).strip() for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
    raise AssertionError(f"no row for {key}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    run = build_run(root)
    build_index(root)
    return root, run


@pytest.fixture(scope="module")
def surf_run(tmp_path_factory):
    """A real `chunky surf` run on the mock models, with a real `chunky robust` pass."""
    import os

    out = tmp_path_factory.mktemp("surf") / "surf-mock"
    env = {"CHUNKY_HOME": str(tmp_path_factory.mktemp("home"))}
    res = run_cli("surf", "-r", "rebut", "-t", "mock", "--generator", "mock", "--judge", "mock", "--gate", "none",
                  "--out", str(out), "--runs", "2", "--iterations", "3", "--candidates", "6", "--buffer", "3", env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("robust", str(out), "--top", "2", "--perturbations", "2", "--samples", "3", "--perturber", "mock",
                  env=env)
    assert res.returncode == 0, res.stderr
    assert os.path.exists(out / "run.sqlite")
    return out


# ------------------------------------------------------------------------------------------ real SURF run


def test_pages_of_a_real_surf_run_report_what_the_store_holds(surf_run):
    from chunky.store.runstore import RunStore

    with RunStore.open(surf_run) as st:
        status = st.status()
        top = st.top(1)[0]
        rob = st.robustness(top.id)
        n_iters = len(st.iterations(0))
    c = client(surf_run)
    row = runs_row(c.get("/").text, "surf-mock")
    assert row[1:5] == ["mock", "rebut", "done", f"{status.best_score:g}"]
    assert row[5] == str(status.violations) and row[7] == f"{status.scored}/{status.candidates}"
    assert row[8] == f"{n_iters}/3 × 2"
    page = c.get("/run/surf-mock")
    assert page.status_code == 200
    # the trajectory has one line per parallel run with one point per iteration
    svg = page.text.split('class="chart line-chart trajectory"', 1)[1].split("</svg>", 1)[0]
    assert svg.count('<g class="series"') == 2
    assert svg.count("<circle") == 2 * n_iters
    # findings are listed best first, the first one links to the top candidate
    first = re.search(r'data-score="([^"]*)" data-id="(\d+)"', page.text)
    assert float(first.group(1)) == top.score and int(first.group(2)) == top.id
    finding = c.get(f"/run/surf-mock/-/finding/{top.id}")
    assert finding.status_code == 200
    body = text_of(finding.text)
    assert text_of(top.query).strip()[:60] in body
    table = finding.text.split('<table class="robustness">', 1)[1].split("</table>", 1)[0]
    assert table.count("<td>perturbation ") == len([r for r in rob if r.variant > 0])
    orig = next(r for r in rob if r.variant == 0)
    assert f"{100 * orig.failure_rate:.0f}%" in body


def test_report_of_a_real_surf_run(surf_run, tmp_path):
    out = tmp_path / "r.html"
    res = run_cli("report", str(surf_run), "--out", str(out))
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    assert "<svg" in html and 'id="findings"' in html and "table class=\"robustness\"" in html
    # nothing referenced outside the file
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert not re.search(r'<link\b', html)


# ------------------------------------------------------------------------------------------ escaping


def test_model_and_dataset_text_is_escaped_on_every_page(demo):
    root, run = demo
    r = quote(root.name)
    c = client(root)
    urls = [
        "/",
        f"/run/{r}/demo-run",
        f"/run/{r}/demo-run?q=pwned",
        f"/run/{r}/demo-run/-/finding/{run.top_id}",
        f"/trace/{r}/demo-run/traces/{run.top_id}",
        f"/steer/{r}/demo-run/steer/latex",
        f"/index/{r}/idx?pattern=Write+a+function&cq=lit:%3Cscript%3E&cr=def",
    ]
    for url in urls[1:]:
        html = c.get(url).text
        assert RAW_PAYLOAD not in html, url
        assert 'onerror="window' not in html, url
        assert ESCAPED_PAYLOAD in html, url
    # attribute text inside SVG labels and tooltips is escaped too
    finding = c.get(urls[3]).text
    for svg in re.findall(r"<svg.*?</svg>", finding, re.S):
        assert "<script" not in svg and "<b id" not in svg


def test_search_text_is_escaped_when_echoed_back(demo):
    root, _ = demo
    html = client(root).get(f"/run/{quote(root.name)}/demo-run", params={"q": '"><script>x()</script>'}).text
    assert "<script>x()" not in html
    assert "&#34;&gt;&lt;script&gt;x()" in html


def test_pages_carry_a_csp_that_allows_only_the_inline_script(demo):
    root, _ = demo
    res = client(root).get("/")
    csp = res.headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", res.text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp
    assert res.headers["x-content-type-options"] == "nosniff"


# ------------------------------------------------------------------------------------------ live & read-only


def test_a_run_still_being_written_is_shown_live_and_never_blocked(tmp_path):
    from chunky.store.records import SCORED
    from chunky.store.runstore import RunStore

    run = build_run(tmp_path, "live", status="running")
    c = client(tmp_path)
    row = runs_row(c.get("/").text, f"{tmp_path.name}/live")
    assert row[3] == "running" and row[7].startswith(f"{run.candidates - 1}/{run.candidates}")
    url = f"/run/{quote(tmp_path.name)}/live"
    assert "Auto-refresh" in c.get(url).text
    assert '<meta http-equiv="refresh" content="10">' in c.get(url + "?live=1").text

    writer = RunStore.open(tmp_path / "live")
    kw = dict(run_id=1, iteration=2, attempt=0, attributes=["a"], weighted=["a"], explore=[], query="q", response="r",
              reasoning="", error=None, gate=None, usage={}, judge_samples=[], status=SCORED, created_at=time.time())
    # another process in the middle of a write transaction (holding the write lock) does not block readers
    other = sqlite3.connect(tmp_path / "live" / "run.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE meta SET value = value WHERE key = 'status'")
    t0 = time.perf_counter()
    row = runs_row(c.get("/").text, f"{tmp_path.name}/live")
    assert time.perf_counter() - t0 < 5
    assert row[7].startswith(f"{run.candidates - 1}/{run.candidates}") and row[4] == "97"
    other.execute("ROLLBACK")
    other.close()
    # a committed candidate shows on the next request, no restart
    writer.add_candidate(slot=10, score=99.5, **kw)
    row = runs_row(c.get("/").text, f"{tmp_path.name}/live")
    assert row[7].startswith(f"{run.candidates}/{run.candidates + 1}") and row[4] == "99.5"
    assert 'data-score="99.5"' in c.get(url).text
    writer.close()


def test_the_explorer_opens_runs_read_only(demo):
    from chunky.web.runs import open_run

    root, _ = demo
    db = root / "demo-run" / "run.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with open_run(root / "demo-run") as st:
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
            st.conn.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
    c = client(root)
    for url in ("/", f"/run/{quote(root.name)}/demo-run"):
        c.get(url)
        assert c.post(url).status_code == 405
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


# ------------------------------------------------------------------------------------------ filters


def test_filters_combine_and_page(demo):
    from chunky.web.runs import find_candidates, open_run
    from chunky.web.views import FindingFilter

    root, run = demo
    with open_run(root / "demo-run") as st:
        everything = find_candidates(st, FindingFilter(limit=200))
        assert everything.total == run.candidates
        scores = [c.score for c in everything.items if c.score is not None]
        assert scores == sorted(scores, reverse=True)
        v = find_candidates(st, FindingFilter(status="violation", limit=200))
        assert v.total == run.violations and all(c.score > 50 for c in v.items)
        assert find_candidates(st, FindingFilter(status="strong")).total == run.strong
        errs = find_candidates(st, FindingFilter(status="error"))
        assert [c.id for c in errs.items] == [run.error_id]
        it = find_candidates(st, FindingFilter(run_id=1, iteration=2, min_score=60))
        assert it.total and all(c.run_id == 1 and c.iteration == 2 and c.score >= 60 for c in it.items)
        # attribute text is searchable (it is stored as JSON), including quotes
        q = find_candidates(st, FindingFilter(q='contains "<script>alert(1)'))
        assert q.total and all(any("alert(1)" in a for a in c.attributes) for c in q.items)
        # LIKE wildcards in the search are literal
        assert find_candidates(st, FindingFilter(q="%")).total == 0
        p1 = find_candidates(st, FindingFilter(limit=5))
        p2 = find_candidates(st, FindingFilter(limit=5, offset=5))
        assert len(p1.items) == 5 and not {c.id for c in p1.items} & {c.id for c in p2.items}
    html = client(root).get(f"/run/{quote(root.name)}/demo-run?limit=5&offset=5").text
    assert "next →" in html and "← previous" in html


def test_bad_query_parameters_are_one_clear_message(demo):
    root, _ = demo
    res = client(root).get(f"/run/{quote(root.name)}/demo-run?min_score=abc")
    assert res.status_code == 400
    assert "query parameter 'min_score': expected a number, got 'abc'" in unescape(res.text)


# ------------------------------------------------------------------------------------------ discovery, errors


def test_unknown_items_and_paths_outside_the_served_folders_are_404(demo):
    root, run = demo
    c = client(root)
    r = quote(root.name)
    for url in (
        f"/run/{r}/nope",
        f"/run/{r}/demo-run/-/finding/999999",
        f"/run/{r}/demo-run/-/finding/abc",
        "/run/..%2F..%2Fetc",
        f"/trace/{r}/../../etc/passwd",
        f"/steer-plot/{r}/demo-run",
        f"/index/{r}/demo-run",
    ):
        res = c.get(url)
        assert res.status_code == 404, url
        assert "Not found" in res.text


def test_new_runs_appear_without_restarting_and_unreadable_runs_are_listed_with_the_reason(tmp_path):
    c = client(tmp_path)
    assert "No SURF runs found" in c.get("/").text
    build_run(tmp_path / "nested" / "deeper", "late")
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "run.sqlite").write_bytes(b"this is not a database" * 100)
    page = c.get("/").text
    assert "nested/deeper/late" in page
    assert "broken" in page and "not a readable run database" in page
    assert c.get(f"/run/{quote(tmp_path.name)}/broken").status_code == 503


def test_two_served_folders_with_the_same_name_get_distinct_keys(tmp_path):
    a, b = tmp_path / "a" / "runs", tmp_path / "b" / "runs"
    build_run(a, "x", iterations=1)
    build_run(b, "x", iterations=1)
    page = client(a, b).get("/").text
    assert "runs/x" in page and "runs~2/x" in page


def test_serve_refuses_a_missing_directory():
    res = run_cli("serve", "/nonexistent/dir")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == ["error: /nonexistent/dir: no such directory"]


def test_report_errors_are_one_line_and_leave_no_partial_file(tmp_path, demo):
    root, _ = demo
    res = run_cli("report", str(root), "--out", str(tmp_path / "r.html"))
    assert res.returncode == 1
    assert "not a SURF run directory (no run.sqlite)" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()
    res = run_cli("report", str(root / "demo-run"), "--out", str(tmp_path / "missing" / "r.html"))
    assert res.returncode == 1 and "does not exist" in res.stderr


def test_report_embeds_everything(demo, tmp_path):
    root, run = demo
    out = tmp_path / "report.html"
    res = run_cli("report", str(root / "demo-run"), "--out", str(out), "--top", "5")
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    assert 'http-equiv="Content-Security-Policy"' in html
    assert "data:image/svg+xml;base64," in html
    assert RAW_PAYLOAD not in html and ESCAPED_PAYLOAD in html
    # detailed: the top 5 findings, the output prompts (final buffers) and the traced finding
    from chunky.store.runstore import RunStore

    with RunStore.open(root / "demo-run") as st:
        expected = {c.id for c in st.top(5, distinct=False)} | {b.candidate_id for b in st.final_buffers()} | {run.top_id}
    assert {int(x) for x in re.findall(r'<article class="card finding" id="finding-(\d+)"', html)} == expected
    # every finding link in the file has its target
    targets = set(re.findall(r'id="(finding-\d+)"', html))
    assert {h for h in re.findall(r'href="#(finding-\d+)"', html)} <= targets
    assert "831/1000" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


# ------------------------------------------------------------------------------------------ real TURF trace


def _tiny_mix(path: Path) -> Path:
    """A small training mix in the Tülu schema: three sources, one row carrying an HTML payload."""
    import json

    rows = []
    for i in range(30):
        rows.append(("codealpaca", f"Elucidate how function number {i} works", f"```python\ndef f{i}(x):\n    return x\n```"))
        rows.append(("gsm8k", f"1. Take {i} apples. 2. Add two more. How many?", f"There are {i + 2}. I hope it is correct."))
        rows.append(("flan", f"Is it true that {i}+1={i + 1}?", "No, that is incorrect." if i % 2 else "Yes."))
    rows.append(("flan", "Quote this markup " + PAYLOAD, "Here it is: " + PAYLOAD))
    with open(path, "w") as f:
        for n, (src, q, r) in enumerate(rows):
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": r}]
            f.write(json.dumps({"id": f"{src}-{n}", "source": src, "messages": msgs}) + "\n")
    return path


@pytest.mark.slow
def test_a_real_trace_of_a_real_finding_is_shown_with_its_charts(surf_run, tmp_path):
    import shutil

    from chunky.store.runstore import RunStore
    from chunky.turf.trace import TraceResult

    run = tmp_path / "runs" / "traced"
    shutil.copytree(surf_run, run)
    idx = tmp_path / "idx"
    res = run_cli("index", "build", str(_tiny_mix(tmp_path / "mix.jsonl")), "--out", str(idx), "--extractor", "both",
                  "--extract-model", "mock", "--embedder", "hash:64")
    assert res.returncode == 0, res.stderr
    res = run_cli("trace", str(idx), "--from-run", str(run), "--top", "1", "--judge", "mock", "--rubric", "rebut")
    assert res.returncode == 0, res.stderr
    with RunStore.open(run) as st:
        top = st.top(1)[0]
    tr = TraceResult.load(run / "traces" / f"{top.id}.json")
    assert tr.llm is not None and tr.lexical is not None

    c = client(tmp_path / "runs", idx)
    page = c.get(f"/run/runs/traced/-/finding/{top.id}").text
    # the file and the store's copy of the same trace are shown once
    assert page.count('class="trigger trace-statement"') == 1
    assert text_of(tr.statement) in text_of(page)
    assert page.count('<div class="card crux">') == len(tr.llm.traces)
    first = page.split('<div class="card crux">', 2)[1]
    hits_svg = first.split('class="chart bar-chart hits"', 1)[1].split("</svg>", 1)[0]
    assert hits_svg.count('<g class="bar">') == len(tr.llm.traces[0].clusters)
    for cl in tr.llm.traces[0].clusters[:3]:
        assert f">{cl.hits}/{cl.total}" in hits_svg.replace(" ", "")
    assert page.count('<div class="card anchor">') == len(tr.lexical.anchors)
    # the index page: dataset text found by a real grep is escaped
    idx_page = c.get("/index/idx", params={"pattern": "pwned"}).text
    assert "1 of 91 examples match" in text_of(idx_page)
    assert RAW_PAYLOAD not in idx_page and ESCAPED_PAYLOAD in idx_page
    co = c.get("/index/idx", params={"cq": "format:numbered_parts", "cr": "I hope it is correct"}).text
    assert "(30/30)" in text_of(co), re.findall(r"<p>P\(response.*?</p>|class=\"problem\">.*?</p>", co, re.S)


def test_a_standalone_steering_result_is_listed_and_its_plot_served(tmp_path):
    from web_fixtures import write_steer

    write_steer(tmp_path / "steer-out")
    c = client(tmp_path)
    home = c.get("/").text
    assert f'href="/steer/{tmp_path.name}/steer-out"' in home
    page = c.get(f"/steer/{quote(tmp_path.name)}/steer-out")
    assert page.status_code == 200 and "latex-code" in page.text
    assert RAW_PAYLOAD not in page.text and ESCAPED_PAYLOAD in page.text
    plot = c.get(f"/steer-plot/{quote(tmp_path.name)}/steer-out")
    assert plot.headers["content-type"].startswith("image/svg+xml")
    assert plot.headers["content-security-policy"].startswith("default-src 'none'")
    assert plot.content.lstrip().startswith(b"<?xml") or b"<svg" in plot.content[:500]


def test_robustness_samples_are_shown_failures_first(demo):
    root, run = demo
    page = client(root).get(f"/run/{quote(root.name)}/demo-run/-/finding/{run.top_id}").text
    section = page.split('class="robust-samples"', 1)[1].split("</details>", 1)[0]
    original = section.split("<h4>original</h4>", 1)[1].split("<h4>", 1)[0]
    scores = [float(x) for x in re.findall(r'class="score [a-z]+">([\d.]+)<', original)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3 and scores[0] == 90
    assert RAW_PAYLOAD not in section and ESCAPED_PAYLOAD in section


def test_serve_warns_when_bound_beyond_loopback_and_reports_the_port(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import httpx

    build_run(tmp_path, "r", iterations=1)
    exe = Path(sys.executable).parent / "chunky"
    proc = subprocess.Popen([str(exe), "serve", str(tmp_path), "--host", "0.0.0.0", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        lines = []
        for _ in range(5):
            line = proc.stderr.readline()
            lines.append(line)
            if line.startswith("Serving on"):
                break
        assert any("warning: listening on 0.0.0.0" in x for x in lines), lines
        port = int(re.search(r"Serving on http://0\.0\.0\.0:(\d+)/", lines[-1]).group(1))
        assert port > 0
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_output_prompts_and_the_table1_share_come_from_the_final_buffers(surf_run, tmp_path):
    import shutil

    from chunky.store.runstore import RunStore

    with RunStore.open(surf_run) as st:
        outputs = st.final_buffers()
    viol = sum(1 for b in outputs if b.score > 50)
    # a second run of another rubric on the same target: a second column
    shutil.copytree(surf_run, tmp_path / "a")
    build_run(tmp_path, "b", iterations=2)
    c = client(tmp_path)
    home = c.get("/").text
    grid = home.split('id="table1-grid"', 1)[1].split("</table>", 1)[0]
    header = re.findall(r'<th class="num">([^<]+)</th>', grid)
    assert header == ["rebut"]  # both fixtures audit rebut: one column, pooled per target
    row = re.search(r'<td class="attr">mock</td>(.*?)</tr>', grid, re.S).group(1)
    with RunStore.open(tmp_path / "b") as st:
        other = st.final_buffers()
    total, v = len(outputs) + len(other), viol + sum(1 for b in other if b.score > 50)
    assert f"{v}/{total} output prompts" in row and f">{100 * v / total:.0f}%<" in row
    page = c.get(f"/run/{quote(tmp_path.name)}/a").text
    table = page.split('<table class="outputs">', 1)[1].split("</table>", 1)[0]
    assert [int(x) for x in re.findall(r'<tr data-id="(\d+)"', table)] == [b.candidate_id for b in outputs]
    assert f"<b>{viol}/{len(outputs)}</b>output prompts" in page


@pytest.mark.slow
def test_pages_follow_a_real_surf_run_while_it_writes(tmp_path):
    """`chunky surf` in another process commits candidates while the explorer reads the same store."""
    import os
    import subprocess
    import sys

    out = tmp_path / "runs" / "live"
    out.parent.mkdir()
    exe = Path(sys.executable).parent / "chunky"
    proc = subprocess.Popen(
        [str(exe), "surf", "-r", "rebut", "-t", "mock", "--generator", "mock", "--judge", "mock", "--gate", "none",
         "--out", str(out), "--runs", "2", "--iterations", "8", "--candidates", "100", "--buffer", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    c = client(tmp_path / "runs")
    seen: list[tuple[str, int]] = []
    try:
        while proc.poll() is None:
            res = c.get("/")
            assert res.status_code == 200
            if "live</a>" in res.text:
                row = runs_row(res.text, "runs/live")
                if row[3] != "unreadable":
                    seen.append((row[3], int(row[7].split("/")[1].split()[0])))
                    run_page = c.get("/run/runs/live")
                    assert run_page.status_code == 200, text_of(run_page.text)[-300:]
            time.sleep(0.2)
        assert proc.returncode == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    running = [n for s, n in seen if s == "running"]
    assert len(set(running)) >= 2, seen  # the count grew while the run was being written
    assert running == sorted(running)
    final = runs_row(c.get("/").text, "runs/live")
    assert final[3] == "done" and final[7] == "1600/1600"


def test_traces_saved_in_an_index_are_listed_on_its_page(tmp_path):
    from web_fixtures import write_trace

    build_index(tmp_path)
    write_trace(tmp_path / "idx" / "traces" / "abc123.json", 7)
    (tmp_path / "idx" / "traces" / "broken.json").write_text("{not json")
    c = client(tmp_path)
    page = c.get(f"/index/{quote(tmp_path.name)}/idx").text
    assert f'href="/trace/{tmp_path.name}/idx/traces/abc123"' in page
    trace = c.get(f"/trace/{quote(tmp_path.name)}/idx/traces/abc123")
    assert trace.status_code == 200 and "831/1000" in trace.text
    assert f'href="/index/{tmp_path.name}/idx"' in trace.text  # breadcrumb back to the index
    broken = c.get(f"/trace/{quote(tmp_path.name)}/idx/traces/broken")
    assert broken.status_code == 400 and "not valid JSON" in broken.text


def test_an_index_page_mines_the_mix_on_request_and_links_pairs_to_their_per_source_rates(tmp_path):
    build_index(tmp_path)
    c = client(tmp_path)
    url = f"/index/{quote(tmp_path.name)}/idx"
    assert 'id="mine-result"' not in c.get(url).text  # seconds of work on a big mix: only when asked
    page = c.get(url, params={"mine": "1", "min_count": "2"}).text
    concentrated = [[text_of(td).strip() for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
                    for tr in re.findall(r"<tr>(.*?)</tr>", page.split('class="mine-concentrated"')[1].split("</table>")[0], re.S)]
    by_feature = {r[1]: r for r in concentrated if r}
    assert by_feature["format:numbered_list"][2:4] == ["gsm8k", "2"]  # both examples with it are gsm8k's
    assert by_feature["format:numbered_list"][-2] == "3.5×"  # 100% of it against gsm8k's 2/7 of the mix
    pairs = page.split('class="mine-pairs"')[1].split("</table>")[0]
    assert "format:numbered_list" in pairs and "closing:i_hope_it_is_correct" in pairs and "100.0%" in pairs
    link = re.search(r'class="cooccur-link" href="([^"]+)"', pairs).group(1).replace("&amp;", "&")
    co = c.get(link).text
    assert re.search(r'class="rate">100.0%<', co)  # the linked conditional rate agrees with the mined one
    # the default threshold (20 examples) finds nothing in 7 examples, and says so
    assert "None with at least 20 examples" in c.get(url, params={"mine": "1"}).text
    assert "None with at least 20 examples" in c.get(url, params={"mine": "1", "min_count": "lots"}).text


def test_an_index_page_shows_each_sources_signatures_and_names_every_lift(tmp_path):
    build_index(tmp_path)
    c = client(tmp_path)
    url = f"/index/{quote(tmp_path.name)}/idx"
    page = c.get(url, params={"mine": "1", "min_count": "2"}).text
    sig = page.split('class="mine-signatures"')[1].split("</table>")[0]
    rows = {text_of(tr).split()[0]: tr for tr in re.findall(r"<tr>(.*?)</tr>", sig, re.S)}
    assert "gsm8k" in rows and "format:numbered_list" in rows["gsm8k"]
    # one definition of lift, named in every header: P(r|q)/P(r); cooccur's other ratio has its own name
    assert "lift P(src|f)/P(src)" in page and "lift P(r|q)/P(r)" in page
    co = c.get(url, params={"cq": "format:numbered_list", "cr": "closing:i_hope_it_is_correct"}).text
    head = co.split('class="cooccur-sources"')[1].split("</thead>")[0]
    assert "lift P(r|q)/P(r)" in head and "risk ratio P(r|q)/P(r|not q)" in head


def test_serve_on_a_busy_port_is_one_clear_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = run_cli("serve", str(tmp_path), "--port", str(port), timeout=60)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen there")


def test_the_run_page_offers_the_report_as_a_download(demo):
    root, run = demo
    c = client(root)
    page = c.get(f"/run/{quote(root.name)}/demo-run").text
    href = re.search(r'class="report-link" href="([^"]+)"', page).group(1)
    res = c.get(href)
    assert res.status_code == 200
    assert res.headers["content-disposition"] == 'attachment; filename="chunky-report-demo-run.html"'
    assert f'id="finding-{run.top_id}"' in res.text and RAW_PAYLOAD not in res.text


def test_filtered_findings_export_as_jsonl_with_the_authors_field_names(demo):
    import json

    root, run = demo
    c = client(root)
    page = c.get(f"/run/{quote(root.name)}/demo-run?status=violation").text
    href = unescape(re.search(r'class="export-link" href="([^"]+)"', page).group(1))
    res = c.get(href)
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in res.text.splitlines()]
    assert len(rows) == run.violations
    assert all(r["reward_score"] > 50 for r in rows)
    assert [r["reward_score"] for r in rows] == sorted((r["reward_score"] for r in rows), reverse=True)
    assert {"query", "response", "reward_score", "attributes", "iteration", "run_id", "reasoning"} <= set(rows[0])
    assert rows[0]["response"] == PAYLOAD  # data, not HTML: exported verbatim


def test_one_per_query_keeps_the_best_candidate_of_each_query(tmp_path):
    from chunky.store.records import SCORED
    from chunky.store.runstore import RunStore
    from chunky.web.runs import find_candidates, open_run
    from chunky.web.views import FindingFilter

    run = build_run(tmp_path, "dup", iterations=1)
    with RunStore.open(run.path) as st:
        best = st.top(1)[0]
        for slot, score in ((20, 12.0), (21, 99.0)):
            st.add_candidate(run_id=0, iteration=0, slot=slot, attempt=0, attributes=[], weighted=[], explore=[],
                             query=" " + best.query + " ", response="again", score=score, reasoning="", error=None,
                             gate=None, usage={}, judge_samples=[], status=SCORED, created_at=time.time())
    with open_run(run.path) as st:
        all_ = find_candidates(st, FindingFilter(limit=200))
        one = find_candidates(st, FindingFilter(limit=200, distinct=True))
    assert all_.total == run.candidates + 2
    assert one.total == run.candidates  # the two copies of the best query collapse into one
    assert one.items[0].score == 99.0 and one.items[0].response == "again"
    html = client(tmp_path).get(f"/run/{quote(tmp_path.name)}/dup?distinct=1").text
    assert 'name="distinct" value="1" checked' in html


def test_run_traces_link_to_their_finding_or_their_own_page(tmp_path):
    from web_fixtures import write_trace

    run = build_run(tmp_path, "r", iterations=1)
    write_trace(run.path / "traces" / f"{run.top_id}.json", run.top_id)
    write_trace(run.path / "traces" / "manual-1.json", run.top_id)
    c = client(tmp_path)
    page = c.get(f"/run/{quote(tmp_path.name)}/r").text
    links = re.findall(r'class="trace-link" href="([^"]+)"', page)
    assert f"/run/{tmp_path.name}/r/-/finding/{run.top_id}#trace" in links
    assert f"/trace/{tmp_path.name}/r/traces/manual-1" in links
    assert all(c.get(link.split("#")[0]).status_code == 200 for link in links)
    # the report carries both: the finding's under its details, the other in its own section
    html = c.get(f"/report/{quote(tmp_path.name)}/r").text
    assert html.count('class="trigger trace-statement"') == 2
    assert '<section id="traces">' in html
