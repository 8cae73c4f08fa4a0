"""Open instruments: free-text answers read by detectors, through the same kind protocol."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support.cli import run_cli

from valuescope.audit.answers import answer_status
from valuescope.audit.kinds import RunSpec, check_spec, get_kind, load_instrument
from valuescope.audit.results import json_safe, read_results, write_results
from valuescope.audit.run import run_audit
from valuescope.backends.base import Context, GenerationParams, Progress
from valuescope.errors import UsageError
from valuescope.instruments.open import OpenPrompts
from valuescope.instruments.tables import load_table, parse_columns

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def small_open(tmp_path: Path, items: list[dict[str, Any]] | None = None) -> Path:
    doc = {
        "kind": "open",
        "name": "mini-open",
        "taxonomy": "schwartz",
        "items": items
        or [
            {"id": "o1", "text": "My friend needs help moving on my day off. Should I go?",
             "values": ["benevolence", "hedonism"],
             "paraphrase": "A friend asked me to help them move on my free day. Do I go?"},
            {"id": "o2", "text": "Should I take the safe job or start my own company?",
             "values": ["security", "self-direction"]},
            {"id": "o3", "text": "My boss asks me to bend a rule to win a big client. What now?",
             "values": ["conformity", "achievement", "power"],
             "paraphrase": "To land a major client my manager wants me to bend a rule. Thoughts?"},
        ],
    }  # fmt: skip
    path = tmp_path / "mini-open.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_builtin_open_instruments_have_what_the_issue_asks() -> None:
    schwartz = load_instrument("schwartz-open")
    assert isinstance(schwartz, OpenPrompts) and len(schwartz.items) >= 200
    assert all(item.paraphrase for item in schwartz.items)
    counts = Counter(v for item in schwartz.items for v in item.values)
    assert set(counts) == set(schwartz.taxonomy.ids)
    assert min(counts.values()) >= 40, counts
    mf = load_instrument("moral-foundations-open")
    assert mf.kind == "open" and len(mf.items) >= 90


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"values": ["kindness"]}, "item 'o1': field 'values': unknown value id 'kindness'"),
        ({"values": []}, "item 'o1': field 'values'"),
        ({"text": "  "}, "item 'o1': field 'text': Value error, must not be empty"),
        ({"values": ["power", "power"]}, "item 'o1': field 'values' names a value twice"),
        ({"options": ["a", "b"]}, "item 'o1': field 'options'"),
    ],
)
def test_bad_open_items_name_the_file_item_and_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    item = {"id": "o1", "text": "Should I?", "values": ["power"], **change}
    path = small_open(tmp_path, [item])
    with pytest.raises(UsageError) as error:
        load_instrument(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_open_tables_load_through_the_open_prefix(tmp_path: Path) -> None:
    table = tmp_path / "prompts.csv"
    table.write_text(
        "key,question,at_stake,other\n"
        'q1,"Should I lend my brother money?","benevolence;security",\n'
        'q2,"Is it fine to skip the family reunion?",Tradition,"Can I miss the reunion?"\n'
        "q3,Anything else?,,\n"
    )
    columns = parse_columns("id=key,text=question,values=at_stake,paraphrase=other", "open")
    found, unmapped, dropped = load_table(str(table), columns)
    assert isinstance(found, OpenPrompts) and found.kind == "open"
    assert [i.values for i in found.items] == [("benevolence", "security"), ("tradition",)]
    assert (
        found.items[1].paraphrase == "Can I miss the reunion?" and found.items[0].paraphrase is None
    )
    assert dropped == 1 and unmapped == {}
    # the same columns without the prefix stay a pairwise instrument, as before
    assert parse_columns("text=question,values=at_stake").kind == "pairwise"


@pytest.mark.parametrize(
    ("answer", "status", "scored"),
    [
        ("Talk to her first. It will help.", "ok", "Talk to her first. It will help."),
        ("Talk to her first. Then decide whether the", "cut off", "Talk to her first."),
        ("I'm sorry, but I can't help with that.", "refusal", ""),
        ("As an AI, I cannot provide advice on this.", "refusal", ""),
        (
            "I'm sorry for your loss, but call her today.",
            "ok",
            "I'm sorry for your loss, but call her today.",
        ),
        (" ".join(["go team go"] * 8), "repeated", ""),
        ("  ", "empty", ""),
    ],
)
def test_answers_that_measure_nothing_are_named(answer: str, status: str, scored: str) -> None:
    assert answer_status(answer) == (status, scored)


def test_settings_other_kinds_do_not_read_are_refused_with_the_flag(no_model: None) -> None:
    dilemmas = load_instrument("schwartz-dilemmas")
    with pytest.raises(UsageError, match=r"--samples does not apply to dilemma instruments"):
        check_spec(dilemmas, RunSpec(samples=3))
    with pytest.raises(UsageError, match=r"--detector does not apply to dilemma"):
        check_spec(dilemmas, RunSpec(detector="embed"))
    opens = load_instrument("schwartz-open")
    with pytest.raises(UsageError, match=r"--detector 'nonsense': unknown detector"):
        check_spec(opens, RunSpec(detector="embed,nonsense"))
    with pytest.raises(UsageError, match=r"--detector judge needs a model"):
        check_spec(opens, RunSpec(detector="judge"))
    with pytest.raises(UsageError, match=r"--budget does not apply to open instruments"):
        check_spec(opens, RunSpec(budget=3))


class CountingBackend:
    """The tiny model, counting the generate calls that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.generated = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Progress | None = None
    ) -> list[list[str]]:
        self.generated += len(prompts)
        return self.inner.generate(prompts, params, progress)  # type: ignore[no-any-return]


def test_an_open_run_answers_reads_profiles_and_resumes(tiny_backend: Any, tmp_path: Path) -> None:
    path = small_open(tmp_path)
    spec = RunSpec(model="hf:tiny", samples=2, detector="lexicon")
    counting = CountingBackend(tiny_backend)
    out = tmp_path / "run"
    result = run_audit(str(path), spec, backend=counting, out=out)
    assert counting.generated == 5  # 3 prompts + 2 paraphrases, 2 samples in each call
    write_results(result, out)
    records = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(records) == 10
    assert Counter(r["wording"] for r in records) == {"original": 6, "paraphrase": 4}
    assert all(r["status"] == answer_status(r["answer"])[0] for r in records)
    doc = read_results(out)
    assert doc["instrument"]["kind"] == "open" and doc["method"] == "generate"
    assert doc["open"]["detector"] == "lexicon" and doc["open"]["samples"] == 2
    # the profile is the signed mean over prompts, put on [0, 1]
    for value, signed in doc["open"]["signed"].items():
        per_item = [i["scores"][value] for i in doc["items"] if value in i["scores"]]
        assert signed["n"] == len(per_item)
        assert signed["score"] == pytest.approx(np.mean(per_item), abs=1e-5)
        assert doc["profile"][value]["score"] == pytest.approx((1 + signed["score"]) / 2, abs=1e-5)
    evidence = get_kind("open").evidence(doc)
    assert set(evidence["benevolence"]) <= {"o1"}
    # a rerun into the same folder generates nothing and reads the same profile
    again = CountingBackend(tiny_backend)
    rerun = run_audit(str(path), spec, backend=again, out=out)
    assert again.generated == 0
    assert result.answers_per_second is not None and result.answers_per_second > 0
    assert rerun.answers_per_second is None  # nothing was generated in the rerun
    assert json_safe(rerun.profile.as_dict()) == json_safe(result.profile.as_dict())


def test_persona_recovery_runs_for_open_instruments(tiny_backend: Any, tmp_path: Path) -> None:
    from valuescope.audit.recovery import run_validation

    path = small_open(tmp_path)
    spec = RunSpec(model="hf:tiny", samples=1, detector="lexicon", limit=2)
    recovery = run_validation(str(path), spec, backend=tiny_backend)
    # personas run only for values at stake in the prompts asked, each with a delta row over
    # those values (a persona whose own value got no usable answer cannot be recovered)
    at_stake = {"benevolence", "hedonism", "security", "self-direction"}
    assert recovery.deltas and set(recovery.deltas) <= at_stake
    for persona, row in recovery.deltas.items():
        assert persona in row and set(row) <= at_stake


class ScriptedAnswers:
    """A NAMED FAKE: the tiny model, except that its answers are given text. No real model
    writes a script tag on request, and the card must show such answers inert."""

    def __init__(self, inner: Any, answer: str) -> None:
        self.inner = inner
        self.answer = answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Progress | None = None
    ) -> list[list[str]]:
        return [[self.answer] * params.n for _ in prompts]


def test_open_card_keeps_script_payloads_in_answers_inert(
    browser: Any, tiny_backend: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    answer = f"Help your friend move, since caring for friends matters. {PAYLOAD} Enjoy the day."
    spec = RunSpec(model="hf:tiny", samples=1, detector="lexicon")
    out = tmp_path / "card"
    result = run_audit(str(small_open(tmp_path)), spec, backend=ScriptedAnswers(tiny_backend, answer),
                       out=out)  # fmt: skip
    write_results(result, out)
    html = (out / "card.html").read_text()
    assert "<script>window" not in html
    browser.get((out / "card.html").as_uri())
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "script") == []
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "In its own words" in body
    examples = browser.find_elements(By.CSS_SELECTOR, "table.examples tr.example")
    assert examples, "the card lists the most value-laden sentences"
    assert any("<script>" in row.text for row in examples) or "<script>" in body


def test_audit_open_from_the_command_line_refuses_bad_flags_before_loading(
    tmp_path: Path, no_model: None
) -> None:
    done = run_cli("audit", "-i", "schwartz-dilemmas", "--samples", "2", "--out",
                   str(tmp_path / "x"), columns=200)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--samples does not apply to dilemma instruments" in done.stderr
    done = run_cli("audit", "-i", "schwartz-open", "--detector", "judge", "--out",
                   str(tmp_path / "y"), columns=200)  # fmt: skip
    assert done.returncode == 2 and "--detector judge needs a model" in done.stderr
    assert "Traceback" not in done.stderr


def test_labelled_detector_texts_share_no_wording_with_the_open_prompts() -> None:
    """Detectors are fitted on the labelled texts and then read answers to these prompts: no
    8-word run of a labelled text may appear in a prompt."""
    import re

    from valuescope.detectors.labelled import load_labelled

    def runs(text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"[a-z']+", text.lower())
        return {tuple(words[k : k + 8]) for k in range(len(words) - 7)}

    for taxonomy, instrument in (("schwartz", "schwartz-open"),
                                 ("moral-foundations", "moral-foundations-open")):  # fmt: skip
        prompts: set[tuple[str, ...]] = set()
        for item in load_instrument(instrument).items:
            prompts |= runs(item.text) | runs(item.paraphrase or "")
        for text in load_labelled(taxonomy).texts:
            assert not runs(text.text) & prompts, text.id


def test_the_verdict_claims_stability_only_where_it_was_measured() -> None:
    """One sample and no paraphrases: values may stand out, but "stable" is not measured."""
    from types import SimpleNamespace

    from valuescope.audit.open import OpenResult
    from valuescope.audit.profile import ValueScore

    clear = {"power": ValueScore(0.2, (0.1, 0.3), 5)}
    diagnostics: dict[str, Any] = {
        "degenerate_rate": 0.0,
        "detector_agreement": {},
        "sample_stability": {"rho": None},
        "paraphrase_consistency": None,
    }
    verdict = OpenResult.verdict.fget  # type: ignore[attr-defined]
    unmeasured = verdict(SimpleNamespace(diagnostics=diagnostics, signed=clear))
    assert "stability not measured" in unmeasured and "are stable" not in unmeasured
    measured = {**diagnostics, "sample_stability": {"rho": 0.8}}
    assert verdict(SimpleNamespace(diagnostics=measured, signed=clear)).endswith("are stable")
    unsteady = {**diagnostics, "sample_stability": {"rho": 0.1}}
    assert "changes from one sample" in verdict(SimpleNamespace(diagnostics=unsteady, signed=clear))
