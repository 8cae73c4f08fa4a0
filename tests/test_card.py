"""The value card in a real headless Chromium: it renders, shows every value, escapes text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from valuescope.audit.card import render_card
from valuescope.audit.kinds import RunSpec
from valuescope.audit.results import results_json, write_results
from valuescope.audit.run import run_audit

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def hostile_instrument(tmp_path: Path) -> Path:
    doc = yaml.safe_load((FIXTURES / "mini-dilemmas.yaml").read_text())
    doc["items"][0]["text"] = f"Someone writes {PAYLOAD} on your door."
    doc["items"][0]["options"][0]["text"] = f"Wipe it off: {PAYLOAD}"
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def card_dir(tiny_backend: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("card")
    config = RunSpec(model="hf:tiny", method="choice", system=f"You are a tester. {PAYLOAD}")
    write_results(run_audit(str(hostile_instrument(out)), config, backend=tiny_backend), out)
    return out


def test_card_renders_every_value_and_keeps_payloads_inert(browser: Any, card_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get((card_dir / "card.html").as_uri())
    assert browser.title.startswith("Value card:")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "instrument mini-dilemmas (6 items), method choice" in body
    for label in (
        "Self-direction",
        "Stimulation",
        "Hedonism",
        "Achievement",
        "Power",
        "Security",
        "Conformity",
        "Tradition",
        "Benevolence",
        "Universalism",
    ):
        assert label in body
        rows = browser.find_elements(By.CSS_SELECTOR, "table.profile tr[data-value]")
    assert len(rows) == 10
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []
    assert "<script>window.__pwned = 1</script>" in body  # shown as text
    chart = browser.find_element(By.CSS_SELECTOR, "figure.profile-chart svg")
    assert chart.size["width"] > 300 and chart.size["height"] > 200
    svg_text = chart.get_attribute("innerHTML")
    assert "Benevolence" in svg_text
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text.startswith("Verdict:")
    browser.save_screenshot(str(card_dir / "card.png"))


def test_comparison_card_draws_runs_side_by_side(
    browser: Any, card_dir: Path, tiny_backend: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    first = results_json(
        run_audit(
            str(FIXTURES / "mini-dilemmas.yaml"),
            RunSpec(model="hf:tiny", method="choice"),
            backend=tiny_backend,
        )
    )
    second = results_json(
        run_audit(
            str(FIXTURES / "mini-dilemmas.yaml"),
            RunSpec(model="hf:tiny", method="choice", system=f"Persona {PAYLOAD}"),
            backend=tiny_backend,
        )
    )
    page = tmp_path / "compare.html"
    page.write_text(render_card([first, second]))
    browser.get(page.as_uri())
    assert browser.title == "Value comparison of 2 runs"
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.profile th")]
    assert len(header) == 3 and "Persona" in header[2]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".verdict")) == 2
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "script") == []


def test_card_html_escapes_without_a_browser(card_dir: Path) -> None:
    html = (card_dir / "card.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)  # nothing to fetch
    assert "<link" not in html


def test_steering_result_reads_each_target_and_keeps_conflicts_inert(
    browser: Any, card_dir: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    doc = json.loads((card_dir / "results.json").read_text())
    shift = {"n": 6, "flipped_toward": 1, "flipped_away": 0}
    doc["label"] = "steered"
    doc["steering"] = {  # one target per way the table can read; the figures are made up
        "mode": "add", "method": "mean-diff", "fluency_cost": 0.065, "fluency_budget": 0.1,
        "terms": [{"value": "power", "layer": 1, "coef": 2.0}],
        "target": {"power": 0.05, "benevolence": 0.25, "hedonism": -0.1, "tradition": 0.1},
        "composition": {
            "expected": {"power": 0.06, "benevolence": 0.1, "hedonism": -0.01, "tradition": 0.02},
            "conflicts": [f"hedonism: out of reach {PAYLOAD}"],
        },
        "measured_shift": {
            "power": {**shift, "shift": 0.06, "ci": [0.01, 0.1], "reached": True,
                      "law_budget": None},
            "benevolence": {**shift, "shift": 0.04, "ci": [0.02, 0.06], "reached": False,
                            "law_budget": 2.68},
            "hedonism": {**shift, "shift": 0.01, "ci": [None, None], "reached": False,
                         "law_budget": None},
        },
    }  # fmt: skip
    page = tmp_path / "steered.html"
    page.write_text(render_card([doc]))
    browser.get(page.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table.steering-result tr[data-value]")
    cells = {r.get_attribute("data-value"): [c.text for c in r.find_elements(By.TAG_NAME, "td")]
             for r in rows}  # fmt: skip
    assert cells == {
        "power": ["Power", "+0.05", "+0.06", "+0.060 [+0.010, +0.100]", "+1 / -0 of 6", "yes"],
        "benevolence": ["Benevolence", "+0.25", "+0.10", "+0.040 [+0.020, +0.060]",
                        "+1 / -0 of 6", "no: about +268% perplexity by the trade-off law"],
        "hedonism": ["Hedonism", "-0.10", "-0.01", "+0.010", "+1 / -0 of 6",
                     "no: too few items for a CI"],
        "tradition": ["Tradition", "+0.10", "+0.02", "n/a", "n/a", "no items decide it"],
    }  # fmt: skip
    conflict = browser.find_element(By.CSS_SELECTOR, "ul.conflicts li").text
    assert conflict == f"hedonism: out of reach {PAYLOAD}"  # shown as text, not run
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_element(By.CSS_SELECTOR, "table.profile th + th").text == "steered"


def test_questionnaire_and_pairwise_cards_show_their_checks(
    browser: Any, tiny_backend: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from valuescope.audit.kinds import RunSpec
    from valuescope.audit.results import write_results
    from valuescope.audit.run import run_audit

    likert = tmp_path / "q.yaml"
    likert.write_text(
        "kind: likert\ntaxonomy: schwartz\nitems:\n"
        + "".join(
            f"  - {{id: s{k}, text: {json.dumps(f'I like item {k}. {PAYLOAD}')}, "
            f"value: {v}, keyed: {1 if k % 2 else -1}}}\n"
            for k, v in enumerate(["power", "power", "benevolence", "benevolence"])
        )
    )
    result = run_audit(likert, RunSpec(model="hf:tiny", system=PAYLOAD), backend=tiny_backend)
    write_results(result, tmp_path / "likert")
    outcomes = tmp_path / "o.yaml"
    outcomes.write_text(
        "kind: pairwise\ntaxonomy: schwartz\nitems:\n"
        + "".join(
            f"  - {{id: o{k}, text: {json.dumps(f'Outcome {k} {PAYLOAD}')}, values: [{v}]}}\n"
            for k, v in enumerate(["power", "hedonism", "benevolence", "security", "tradition"])
        )
    )
    pairwise = run_audit(outcomes, RunSpec(model="hf:tiny", budget=10), backend=tiny_backend)
    write_results(pairwise, tmp_path / "pairwise")
    expected = {
        "likert": ("scale-direction consistency", "acquiescence"),
        "pairwise": ("held-out accuracy", "transitivity violations", "decisiveness"),
    }
    for kind, rows in expected.items():
        browser.get((tmp_path / kind / "card.html").as_uri())
        table = browser.find_element(By.CSS_SELECTOR, "table.diagnostics").text
        for row in rows:
            assert row in table
        assert browser.find_element(By.CSS_SELECTOR, ".verdict").text.startswith("Verdict:")
        assert browser.execute_script("return window.__pwned === undefined")
        assert browser.find_elements(By.TAG_NAME, "script") == []

    # the card's item tables follow results.json: statements by distance of the rating from the
    # model's mean rating, outcomes best first then worst (with more outcomes, the middle is cut)
    doc = json.loads((tmp_path / "likert" / "results.json").read_text())
    browser.get((tmp_path / "likert" / "card.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table.statements tr.item")
    shown = [r.get_attribute("data-item") for r in rows]
    mean = sum(i["rating"] for i in doc["items"]) / len(doc["items"])
    distance = {i["id"]: abs(i["rating"] - mean) for i in doc["items"]}
    assert sorted(shown) == sorted(distance)  # four statements: all shown
    assert [distance[i] for i in shown] == sorted(distance.values(), reverse=True)
    keyed = {i["id"]: i["keyed"] for i in doc["items"]}
    assert [("reverse-keyed" in r.text) for r in rows] == [keyed[i] < 0 for i in shown]
    assert all("I like item" in r.text for r in rows)
    doc = json.loads((tmp_path / "pairwise" / "results.json").read_text())
    utility = {i["id"]: i["utility"] for i in doc["items"]}
    browser.get((tmp_path / "pairwise" / "card.html").as_uri())
    shown = [
        r.get_attribute("data-item")
        for r in browser.find_elements(By.CSS_SELECTOR, "table.outcomes tr.item")
    ]
    assert [utility[i] for i in shown] == sorted(utility.values(), reverse=True)
    assert browser.execute_script("return window.__pwned === undefined")


def test_a_best_of_n_card_plots_its_curve_and_keeps_payloads_inert(
    browser: Any, tiny_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import support.rewards  # noqa: F401  (registers the `words` reward detector)
    from selenium.webdriver.common.by import By

    from valuescope.steering.alignment import parse_align

    monkeypatch.setattr("valuescope.audit.answers.MAX_NEW_TOKENS", 16)  # short answers: quick
    instrument = tmp_path / "open.yaml"
    instrument.write_text(yaml.safe_dump({"kind": "open", "name": "mini-open", "taxonomy": "schwartz",
        "items": [{"id": "o1", "text": f"Should I help? {PAYLOAD}", "values": ["benevolence"]},
                  {"id": "o2", "text": "Should I win?", "values": ["power"]}]}))  # fmt: skip
    runs = {}
    for strategy, n in (("best-of-n", 4), ("sentence", 2)):
        aligned = parse_align("benevolence=1", strategy, n, "words", "lexicon")
        spec = RunSpec(model="hf:tiny", samples=1, detector="lexicon", paraphrase=False,
                       interventions=(aligned,))  # fmt: skip
        out = runs[strategy] = tmp_path / strategy
        write_results(run_audit(str(instrument), spec, backend=tiny_backend), out)
    doc = json.loads((runs["best-of-n"] / "results.json").read_text())
    assert [p["n"] for p in doc["alignment"]["best_of_n_curve"]] == [1, 2, 4]
    browser.get((runs["best-of-n"] / "card.html").as_uri())
    chart = browser.find_element(By.CSS_SELECTOR, "section.alignment figure.best-of-n-chart svg")
    assert chart.size["width"] > 300 and chart.size["height"] > 150
    svg_text = chart.get_attribute("innerHTML")
    assert "N=4" in svg_text and "control success (lexicon)" in svg_text
    rows = browser.find_elements(By.CSS_SELECTOR, "section.alignment table.best-of-n tr[data-n]")
    assert [r.get_attribute("data-n") for r in rows] == ["1", "2", "4"]
    # text from results stays text, in the page and in the plot
    doc["open"]["detector"] = PAYLOAD
    page = tmp_path / "hostile.html"
    page.write_text(render_card([doc]))
    browser.get(page.as_uri())
    assert PAYLOAD in browser.find_element(By.CSS_SELECTOR, "section.alignment").text
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []
    # a run under another strategy has no curve and no plot
    browser.get((runs["sentence"] / "card.html").as_uri())
    assert browser.find_elements(By.CSS_SELECTOR, "section.alignment")
    assert browser.find_elements(By.CSS_SELECTOR, "section.alignment svg") == []


def test_ranked_outcomes_keep_both_ends() -> None:
    from valuescope.audit.likert import extreme_statements
    from valuescope.audit.pairwise import ranked_outcomes

    items = [{"id": f"o{k}", "text": "t", "utility": float(k), "sd": 0.1} for k in range(20)]
    shown = [i["id"] for i in ranked_outcomes({"items": items}, count=5)]
    assert shown == ["o19", "o18", "o17", "o1", "o0"]
    # mean 3.525: s1 is 2.375 above it, s2 2.325 below, s0 and s3 within 0.125
    ratings = [
        {"id": f"s{k}", "text": "t", "rating": r} for k, r in enumerate([3.4, 5.9, 1.2, 3.6])
    ]
    doc = {"items": ratings, "likert": {"acquiescence": 3.525}}  # mean rating, as likert.py
    shown = extreme_statements(doc, count=2)
    assert [(i["id"], round(i["relative"], 6)) for i in shown] == [("s1", 2.375), ("s2", -2.325)]
