"""The instrument-kind protocol: a kind written outside valuescope plugs into every command.

The kind below lives in this test file only (one module, as a plugin package would be): it is
registered with `register_kind`, then `audit`, `validate`, the results files and the card use it
like the built-in kinds, and a flag it does not honour is refused before any model loads.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict
from rich.console import RenderableType
from rich.text import Text
from support.cli import run_cli

from valuescope import RunSpec, load_instrument, register_kind
from valuescope.audit import kinds
from valuescope.audit.kinds import CardSection, DiagnosticRow, InstrumentKind, ItemsTable
from valuescope.audit.profile import Profile, ValueScore, bootstrap_ci
from valuescope.backends import Backend, Chat, LoglikelihoodRequest
from valuescope.errors import UsageError
from valuescope.instruments.document import Document, validated
from valuescope.instruments.taxonomy import Taxonomy, check_value


class _StatementSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    text: str
    value: str


@dataclass(frozen=True)
class Statements:
    name: str
    taxonomy: Taxonomy
    items: tuple[_StatementSchema, ...]
    sha256: str
    source: str
    kind: str = "agree"


@dataclass
class AgreeResult:
    spec: RunSpec
    model_name: str
    instrument: Statements
    p_yes: dict[str, float]
    profile: Profile
    method: str = "yes-no"
    seconds: float = 0.0
    server: dict[str, Any] | None = None
    requests: dict[str, Any] | None = None

    @property
    def verdict(self) -> str:
        return "toy: one reading per statement"

    def results_block(self) -> dict[str, Any]:
        return {
            "diagnostics": {"verdict": self.verdict, "warnings": [], "ci_includes_half": None},
            "items": [{"id": i, "p_yes": p} for i, p in self.p_yes.items()],
        }

    def items_table(self) -> ItemsTable:
        return ItemsTable(["item_id", "p_yes"], [[i, f"{p:.6f}"] for i, p in self.p_yes.items()])

    def summary(self) -> list[RenderableType]:
        return [Text(f"agree: {len(self.p_yes)} statements · verdict: {self.verdict}")]

    def files(self) -> dict[str, str]:
        return {}

    def recovery_scores(self) -> dict[str, float]:
        return {v: s.score for v, s in self.profile.scores.items()}


class AgreeKind:
    """P(yes) to "Do you agree?" per statement; a value's score is its statements' mean."""

    name = "agree"
    honours = frozenset({"limit"})
    methods = ("yes-no",)

    def hint(self, setting: str) -> str:
        return "this toy kind reads one answer per statement" if setting == "budget" else ""

    def parse(self, doc: Document) -> Statements:
        items = tuple(
            validated(_StatementSchema, entry, doc.path, label)
            for label, entry in doc.entries("id, text and value")
        )
        for item in items:
            check_value(doc.taxonomy, item.value, f"{doc.path}: item {item.id!r}")
        return Statements(doc.name, doc.taxonomy, items, "toy-" + str(len(items)), str(doc.path))

    def check(self, instrument: Any, spec: RunSpec) -> None:
        if spec.limit is not None and spec.limit > len(instrument.items):
            raise UsageError(f"--limit {spec.limit}: {instrument.name} has fewer statements")

    def settings(self, instrument: Any, spec: RunSpec) -> dict[str, Any]:
        return {}

    def warnings(self, instrument: Any) -> list[str]:
        return []

    def texts(self, instrument: Any) -> Iterator[tuple[str, str]]:
        return ((item.id, item.text) for item in instrument.items)

    def run(
        self, instrument: Any, spec: RunSpec, backend: Backend, out: Path | None, progress: Any
    ) -> AgreeResult:
        started = time.perf_counter()
        items = instrument.items[: spec.limit or len(instrument.items)]
        requests = [
            LoglikelihoodRequest(Chat(f"{i.text}\nDo you agree? Answer yes or no.", spec.system), a)
            for i in items
            for a in ("yes", "no")
        ]
        scores = [s.logprob for s in backend.loglikelihood(requests)]
        p_yes = {
            item.id: 1 / (1 + math.exp(scores[2 * k + 1] - scores[2 * k]))
            for k, item in enumerate(items)
        }
        by_value: dict[str, list[float]] = {}
        for item in items:
            by_value.setdefault(item.value, []).append(p_yes[item.id])
        profile = Profile(
            {
                v: ValueScore(sum(ps) / len(ps), bootstrap_ci(ps, spec.seed), len(ps))
                for v, ps in by_value.items()
            }
        )
        return AgreeResult(spec, backend.name, instrument, p_yes, profile,
                           seconds=time.perf_counter() - started)  # fmt: skip

    def evidence(self, doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        return {}

    def card(self, doc: Mapping[str, Any]) -> tuple[list[DiagnosticRow], list[CardSection]]:
        rows = [DiagnosticRow("statements read", float(len(doc["items"])), "one reading each")]
        source = '<h2>Agreement</h2><ul class="agree">{% for i in s.rows %}<li>{{ i.id }}: {{ "%.2f"|format(i.p_yes) }}</li>{% endfor %}</ul>'
        return rows, [CardSection("agree", {"rows": doc["items"]}, source=source)]


@pytest.fixture
def agree_kind() -> Iterator[InstrumentKind]:
    kind = AgreeKind()
    register_kind("agree", lambda: kind)
    yield kind
    kinds._REGISTRY.pop("agree")
    kinds._LOADED.pop("agree", None)


def statements(tmp_path: Path) -> Path:
    items = [
        {"id": f"s{k}", "text": f"Statement {k} <b>about</b> {v}.", "value": v}
        for k, v in enumerate(["power", "power", "benevolence", "benevolence", "security"])
    ]
    path = tmp_path / "agree.yaml"
    path.write_text(yaml.safe_dump({"kind": "agree", "name": "toy", "taxonomy": "schwartz",
                                    "items": items}))  # fmt: skip
    return path


def test_a_kind_is_refused_until_it_is_registered(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="field 'kind' is 'agree'; expected one of dilemma"):
        load_instrument(statements(tmp_path))


def test_a_registered_kind_runs_through_audit_results_and_card(
    agree_kind: InstrumentKind, tiny_model_dir: Path, tmp_path: Path
) -> None:
    path, out = statements(tmp_path), tmp_path / "run"
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}", "-i", str(path), "--limit", "4",
                   "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "agree: 4 statements · verdict: toy" in done.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["instrument"]["kind"] == "agree" and doc["instrument"]["items"] == 4
    assert set(doc["profile"]) == {"power", "benevolence"}  # the fifth statement is past --limit
    p = [i["p_yes"] for i in doc["items"]]
    assert doc["profile"]["power"]["score"] == pytest.approx((p[0] + p[1]) / 2, abs=1e-6)
    with (out / "items.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["item_id", "p_yes"] and [r[0] for r in rows[1:]] == ["s0", "s1", "s2", "s3"]
    card = (out / "card.html").read_text()
    assert '<ul class="agree">' in card and "statements read" in card
    assert "<b>about</b>" not in card  # the kind's items are escaped like every other text


def test_a_registered_kind_refuses_what_it_does_not_honour(
    agree_kind: InstrumentKind, tmp_path: Path
) -> None:
    path = statements(tmp_path)
    done = run_cli("audit", "--model", "hf:/nonexistent", "-i", str(path), "--budget", "9",
                   "--out", str(tmp_path / "x"))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "valuescope: error: --budget does not apply to agree instruments (toy); this toy kind "
        "reads one answer per statement"
    )
    assert not (tmp_path / "x").exists()
    done = run_cli("audit", "--model", "hf:/nonexistent", "-i", str(path), "--limit", "9",
                   "--out", str(tmp_path / "x"))  # fmt: skip
    assert done.returncode == 2 and "--limit 9: toy has fewer statements" in done.stderr
    assert not (tmp_path / "x").exists()  # the kind's own check comes before the model too


def test_persona_recovery_takes_any_kind(
    agree_kind: InstrumentKind, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "v"
    done = run_cli("validate", "--model", f"hf:{tiny_model_dir}", "-i", str(statements(tmp_path)),
                   "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "validation.json").read_text())
    assert set(report["own_delta"]) == {"power", "benevolence", "security"}
