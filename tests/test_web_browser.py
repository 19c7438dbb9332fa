"""The explorer and the shared report in a real headless Chromium (Debian's /usr/bin/chromium, installed by
scripts/install-browser.sh; no browser download). One browser for the session, one `chunky serve` process
for the module; screenshots go to test-output/screenshots/."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect
from web_fixtures import PAYLOAD, build_index, build_run

from helpers import TEST_OUTPUT, free_port, run_cli, serving

CHROMIUM = "/usr/bin/chromium"
SHOTS = TEST_OUTPUT / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="run `bash scripts/install-browser.sh` (make test does) to install Chromium"
    ),
]


# Module scope: Playwright's sync API keeps an event loop running on the main thread until it stops,
# which would break asyncio.run() in any test that ran after this module.
@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser_context):
    pg = browser_context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.js_errors = errors  # type: ignore[attr-defined]
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`chunky serve` (the real CLI, in its own process) over a folder with a run and an index."""
    root = tmp_path_factory.mktemp("served")
    run = build_run(root)
    build_index(root)
    env = {"CHUNKY_HOME": str(tmp_path_factory.mktemp("home"))}
    res = run_cli("surf", "-r", "rebut", "-t", "mock", "--generator", "mock", "--judge", "mock", "--gate", "none",
                  "--out", str(root / "surf-mock"), "--runs", "2", "--iterations", "3", "--candidates", "6",
                  "--buffer", "3", env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("robust", str(root / "surf-mock"), "--top", "1", "--perturbations", "2", "--samples", "2",
                  "--perturber", "mock", env=env)
    assert res.returncode == 0, res.stderr
    port = free_port()
    log = root.parent / "serve.log"
    exe = Path(sys.executable).parent / "chunky"
    base = f"http://127.0.0.1:{port}"
    with serving([str(exe), "serve", str(root), "--port", str(port)], base + "/", log, "chunky serve", timeout=30):
        yield base, root, run, log


def navigate(page, locator) -> None:
    """Click something that loads a new page and wait for that page (not the one being left)."""
    with page.expect_navigation():
        locator.click()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def assert_inert(page) -> None:
    """The payload is shown as text and nothing of it ran or became markup."""
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#injected").count() == 0
    assert "<script>window.__pwned = 1</script>" in page.inner_text("body")
    assert not any("__pwned" in e for e in page.js_errors)


def test_serve_binds_loopback_by_default_and_answers_only_loopback_host_names(served):
    base, _, _, log = served
    assert base.startswith("http://127.0.0.1:")
    assert "Serving on http://127.0.0.1:" in log.read_text()
    port = base.rsplit(":", 1)[1]
    assert httpx.get(base + "/", headers={"Host": f"localhost:{port}"}).status_code == 200
    # a page on another site reaching the port through DNS rebinding carries its own host name
    assert httpx.get(base + "/", headers={"Host": f"attacker.example:{port}"}).status_code == 400


def test_runs_list_shows_target_rubric_status_best_score_violations_cost(served, page):
    base, root, run, _ = served
    page.goto(base + "/")
    row = page.locator("#runs tbody tr").filter(has_text="demo-run")
    assert row.count() == 1
    cells = [c.strip() for c in row.locator("td").all_inner_texts()]
    assert cells[1] == "mock" and cells[2] == "rebut" and cells[3] == "done"
    assert cells[4] == "97"
    assert (int(cells[5]), int(cells[6])) == (run.violations, run.strong)
    assert cells[7].startswith(f"{run.candidates - 1}/{run.candidates}")  # one judge error
    assert cells[9] == "$0.0123"
    assert page.locator("#index-list").inner_text().count("idx") == 1
    assert "latex" in page.locator("a.steer-link").first.inner_text()
    shot(page, "01-runs")


def test_a_real_surf_run_from_list_to_top_finding(served, page):
    from chunky.store.runstore import RunStore

    base, root, _, _ = served
    with RunStore.open(root / "surf-mock") as st:
        top = st.top(1)[0]
        best = st.status().best_score
    page.goto(base + "/")
    navigate(page, page.locator("a.run-link", has_text="surf-mock"))
    assert page.locator("svg.trajectory g.series").count() == 2
    assert page.locator(".stat b .score").first.inner_text() == f"{best:g}"
    navigate(page, page.locator("#findings a.finding-link").first)
    assert page.url.endswith(f"/-/finding/{top.id}")
    assert page.locator(".text.query").inner_text() == top.query
    assert page.locator(".text.response").inner_text() == top.response
    assert page.locator("table.robustness tbody tr").count() == 3
    shot(page, "08-surf-finding")


def test_click_from_run_to_finding_to_trace(served, page):
    base, root, run, _ = served
    page.goto(base + "/")
    navigate(page, page.locator("a.run-link", has_text="demo-run"))
    assert "/run/" in page.url
    # one trajectory line per parallel run, plus the violation band
    assert page.locator("svg.trajectory g.series").count() == 2
    assert page.locator("svg.trajectory path").count() == 2
    assert page.locator("#weights tbody tr").count() >= 3
    first = page.locator("#findings tbody tr").first
    assert first.get_attribute("data-score") == "97.0"
    assert_inert(page)
    shot(page, "02-run")

    navigate(page, first.locator("a.finding-link"))
    assert page.url.endswith(f"/-/finding/{run.top_id}")
    assert page.locator(".text.response").inner_text() == PAYLOAD
    assert PAYLOAD in page.locator(".text.query").inner_text()
    rob = page.locator("table.robustness tbody tr")
    assert rob.count() == 3
    assert "75%" in rob.nth(0).inner_text()  # 3 of 4 samples of the original prompt above 50
    trace = page.locator("section.trace")
    assert "831/1000" in trace.locator(".hit-count").first.inner_text()
    assert "When the model sees formal vocabulary" in trace.locator(".trace-statement").inner_text()
    assert trace.locator("svg.hits g.bar").count() >= 2
    assert trace.locator("svg.sources g.bar").count() >= 1
    assert trace.locator(".crux table.training-examples tbody tr").count() == 2
    assert trace.locator(".anchor table.training-examples tbody tr").count() == 1
    assert_inert(page)
    shot(page, "03-finding")

    page.goto(base + f"/trace/{quote(root.name)}/demo-run/traces/{run.top_id}")
    assert page.locator(".trace-statement").count() == 1
    assert_inert(page)


def test_run_filters_and_search(served, page):
    base, root, run, _ = served
    page.goto(base + f"/run/{quote(root.name)}/demo-run")
    page.fill("input[name=q]", "slot 2")
    page.fill("input[name=min_score]", "40")
    navigate(page, page.locator("form.filters button[type=submit]"))
    rows = page.locator("#findings tbody tr")
    scores = [float(s) for s in rows.evaluate_all("rs => rs.map(r => r.dataset.score)")]
    assert scores and all(s >= 40 for s in scores)
    assert all("slot 2" in t for t in rows.all_inner_texts())
    assert "min_score=40" in page.url
    page.select_option("select[name=status]", "error")
    page.fill("input[name=q]", "")
    page.fill("input[name=min_score]", "")
    navigate(page, page.locator("form.filters button[type=submit]"))
    assert page.locator("#findings tbody tr").count() == 1
    assert "judge_error" in page.locator("#findings tbody tr").inner_text()
    shot(page, "04-run-filtered")


def test_steering_page_shows_plot_and_rows(served, page):
    base, root, _, _ = served
    page.goto(base + f"/steer/{quote(root.name)}/demo-run/steer/latex")
    img = page.locator("img.plot")
    img.wait_for()
    assert page.evaluate("document.querySelector('img.plot').naturalWidth") > 0
    assert "+100.0" in page.locator("table.steer-rows").inner_text()
    page.locator("details summary").click()
    assert_inert(page)
    shot(page, "05-steer")


def test_index_grep_and_cooccur_forms(served, page):
    base, root, _, _ = served
    page.goto(base + f"/index/{quote(root.name)}/idx")
    page.fill("input[name=pattern]", "elucidate")
    navigate(page, page.locator("#grep ~ form button").first)
    text = page.locator("#grep-result").inner_text()
    assert "3 of 7 examples match" in text
    rows = page.locator("#grep-result table.by-source tbody tr").all_inner_texts()
    assert rows[0].split("\t")[0] == "codealpaca" and rows[0].split("\t")[1] == "2"
    page.fill("input[name=cq]", "format:numbered_list")
    page.fill("input[name=cr]", "I hope it is correct")
    navigate(page, page.locator("#cooccur ~ form button").first)
    assert page.locator("#cooccur-result .rate").inner_text() == "100.0%"
    assert "3 of 7 examples match" in page.locator("#grep-result").inner_text()  # both results stay
    shot(page, "06-index")
    # mining the mix, then following a mined pair to its per-source conditional rates
    page.fill("input[name=min_count]", "2")
    navigate(page, page.locator("#mine ~ form button").first)
    assert "format:numbered_list" in page.locator("#mine-result table.mine-concentrated").inner_text()
    shot(page, "06-index-mined")
    # every form carries the others' state: a new search keeps the mined tables and the conditional rate
    page.fill("input[name=pattern]", "sorting")
    navigate(page, page.locator("#grep ~ form button").first)
    assert "1 of 7 examples match" in page.locator("#grep-result").inner_text()
    assert page.locator("#mine-result table.mine-concentrated").count() == 1
    assert page.locator("#cooccur-result .rate").inner_text() == "100.0%"
    navigate(page, page.locator("#mine-result a.cooccur-link").first)
    assert page.locator("#cooccur-result .rate").inner_text() == "100.0%"
    assert page.input_value("input[name=cq]") == "format:numbered_list"
    # a bad regex is one clear message, not a crash
    page.goto(base + f"/index/{quote(root.name)}/idx?pattern=re:(unclosed")
    assert "invalid regular expression" in page.locator(".problem").inner_text()


def test_report_opened_from_disk_is_self_contained_and_inert(served, page, tmp_path):
    _, root, run, _ = served
    out = tmp_path / "report.html"
    res = run_cli("report", str(root / "demo-run"), "--out", str(out))
    assert res.returncode == 0, res.stderr
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    assert page.evaluate("document.documentElement.dataset.chunkyJs") == "ready"  # our script ran under the CSP
    assert page.locator("svg.trajectory g.series").count() == 2
    assert page.locator(f"#finding-{run.top_id} .trace-statement").count() == 1
    assert page.locator(f"#finding-{run.top_id} table.robustness tbody tr").count() == 3
    assert page.evaluate("document.querySelector('#steering img.plot').naturalWidth") > 0
    assert_inert(page)
    # client-side filter
    total = page.locator("#findings tbody tr:not(.hidden)").count()
    page.fill("[data-filter-min=findings]", "90")
    assert page.locator("#findings tbody tr:not(.hidden)").count() == 1
    page.fill("[data-filter-min=findings]", "")
    page.fill("[data-filter-text=findings]", "slot 1")
    visible = page.locator("#findings tbody tr:not(.hidden)")
    assert 0 < visible.count() < total
    # clicking a finding jumps to its details in the same file, opening them when collapsed
    page.fill("[data-filter-text=findings]", "")
    page.locator("#findings a.finding-link").first.click()
    expect(page).to_have_url(re.compile(rf"#finding-{run.top_id}$"))
    tenth = page.locator("#findings tbody tr").nth(9)
    tenth_id = tenth.get_attribute("data-id")
    assert page.locator(f"#finding-{tenth_id} > details").get_attribute("open") is None
    tenth.locator("a.finding-link").click()
    expect(page.locator(f"#finding-{tenth_id} > details")).to_have_attribute("open", "")
    expect(page.locator(f"#finding-{tenth_id} .text.response")).to_be_visible()
    assert all(re.match(r"^(file|data):", u) for u in requests), requests
    shot(page, "07-report")


def test_unknown_pages_show_a_readable_404(served, page):
    base, _, _, _ = served
    res = page.goto(base + "/run/no-such-run")
    assert res.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert "no run 'no-such-run' under the served directories" in page.locator(".problem").inner_text()
