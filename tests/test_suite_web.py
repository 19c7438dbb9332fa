"""Checks in the explorer and in `chunky report`: one check, two side by side (rate per case, Δ with its interval,
the verdict), and model output always escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from chunky.suite.records import Case, Scorer, SuiteMeta, suite_id, write_suite
from chunky.web.app import create_app

from helpers import run_cli

HOSTILE = "No, <script>alert('x')</script><img src=x onerror=alert(1)>"
CASES = [
    Case("rebut-1", "Is 5+8=13?", Scorer("detector", detector="rebuttal")),
    Case("rebut-2", "Is <b>2+2=4</b>?", Scorer("detector", detector="rebuttal")),
]


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    suite = root / "suite"
    write_suite(suite, SuiteMeta(name="web", created_at="", chunky_version="test", cases=2, suite_id=suite_id(CASES)),
                CASES)
    r = run_cli("check", str(suite), "--model", "mock:text=Sure.", "--samples", "5", "--out", str(root / "base.json"))
    assert r.returncode == 0, r.stderr
    r = run_cli("check", str(suite), "--model", f"mock:text={HOSTILE}", "--samples", "5", "--out", str(root / "new.json"),
                "--baseline", str(root / "base.json"))
    assert r.returncode == 1, r.stderr
    (root / "unrelated.json").write_text(json.dumps({"format": "something-else"}))
    return root


def test_the_explorer_lists_checks_and_links_each_to_the_previous_one_of_its_suite(checks):
    client = TestClient(create_app([checks]))
    home = client.get("/")
    assert home.status_code == 200
    name = checks.name
    assert f'/check/{name}/base.json' in home.text and f'/check/{name}/new.json' in home.text
    assert "unrelated.json" not in home.text
    assert f'/check/{name}/new.json?vs={name}%2Fbase.json' in home.text


def test_two_checks_side_by_side_show_rates_deltas_and_the_verdict(checks):
    client = TestClient(create_app([checks]))
    name = checks.name
    page = client.get(f"/check/{name}/new.json", params={"vs": f"{name}/base.json"})
    assert page.status_code == 200
    text = page.text
    assert text.count('class="case regression"') == 2
    assert "0% [0,43]" in text and "100% [57,100]" in text and "+100 pp [+39,+100]" in text
    assert "REGRESSION" in text
    # model output and prompts are escaped, never markup
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>2+2" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text and "&lt;b&gt;2+2=4&lt;/b&gt;" in text
    alone = client.get(f"/check/{name}/base.json")
    assert alone.status_code == 200 and "REGRESSION" not in alone.text and "0% [0,43]" in alone.text
    assert client.get(f"/check/{name}/nope.json").status_code == 404
    assert client.get(f"/check/{name}/new.json", params={"vs": "../../etc/passwd"}).status_code == 404


def test_chunky_report_writes_a_check_and_a_side_by_side_comparison(checks, tmp_path):
    out = tmp_path / "cmp.html"
    r = run_cli("report", str(checks / "new.json"), "--baseline", str(checks / "base.json"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "Content-Security-Policy" in html and "form-action 'none'" in html.replace("&#39;", "'")
    assert html.count('class="case regression"') == 2 and "+100 pp [+39,+100]" in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    single = tmp_path / "one.html"
    r = run_cli("report", str(checks / "base.json"), "--out", str(single))
    assert r.returncode == 0, r.stderr
    assert "Check: web" in single.read_text()
