"""The dilemma kind: which option of each situation the model would choose, per value.

Every item is scored by a method (`valuescope.audit.scoring`) in every presentation order it
uses, in its original wording and, where the instrument has them, in its paraphrase. Chunks of
items are saved as they finish, so a rerun resumes. `auto` picks the method whose measured
validity is highest on the first chunk (see `probe_methods`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from valuescope.audit.diagnostics import (
    Diagnostics,
    diagnose,
    flat_profile_test,
    item_agreement,
    order_consistency,
    position_bias,
)
from valuescope.audit.kinds import (
    CardSection,
    DiagnosticRow,
    ItemsTable,
    RunSpec,
    chunk_key,
    intervention_records,
    run_checkpoint,
    server_figures,
)
from valuescope.audit.profile import Profile, Ranking, bradley_terry, build_profile
from valuescope.audit.scoring import (
    METHODS,
    ItemResult,
    Method,
    OrderResult,
    WordingName,
    generate_prompt,
    map_answer,
    wording_of,
)
from valuescope.backends.base import Backend, WhiteBoxBackend
from valuescope.checkpoint import Checkpoint, memo
from valuescope.errors import UsageError
from valuescope.instruments.dilemma import Dilemmas, parse_dilemmas
from valuescope.instruments.document import Document, Instrument
from valuescope.progress import ProgressHook

CHUNK = 16
AUTO_CANDIDATES_WHITE_BOX = ("likelihood", "likelihood-first-person", "choice")
AUTO_CANDIDATES_BLACK_BOX = ("generate",)
"""Without a capability probe (a backend with no `auto_candidates`), sampling is all that is
certain to work on a black-box model; the server backend probes and offers more."""


def _encode_results(results: Sequence[ItemResult]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.item_id,
            "wording": r.wording,
            "orders": [
                {"order": list(o.order), "p": list(o.p)}
                | ({"answers": list(o.answers)} if o.answers else {})
                for o in r.orders
            ],
            "combine": r.combine,
        }
        for r in results
    ]


def _decode_results(data: list[dict[str, Any]]) -> list[ItemResult]:
    return [
        ItemResult(
            d["id"],
            d["wording"],
            tuple(
                OrderResult(tuple(o["order"]), tuple(o["p"]), tuple(o.get("answers", ())))
                for o in d["orders"]
            ),
            d.get("combine", "mean"),
        )
        for d in data
    ]


class _Runner:
    """Scores items chunk by chunk through an optional checkpoint."""

    def __init__(
        self,
        backend: Backend,
        checkpoint: Checkpoint | None,
        system: str | None,
        progress: ProgressHook | None,
    ) -> None:
        self.backend = backend
        self.checkpoint = checkpoint
        self.system = system
        self.progress = progress
        self.memory: dict[str, list[ItemResult]] = {}

    def score(
        self, method: Method, instrument: Dilemmas, n_items: int, wording: WordingName, tag: str
    ) -> list[ItemResult]:
        items = instrument.items[:n_items]
        total = sum(method.presentations(len(i.options)) for i in items)
        label = f"{method.name} · {wording}" + (f" · {tag}" if tag else "")
        hook = self.progress
        if hook:
            hook(label, 0, total)

        def report(n: int) -> None:
            if hook:
                hook(label, n, total)

        out: list[ItemResult] = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            key = chunk_key(f"{tag}/{method.name}/{wording}", start, len(chunk), CHUNK)
            if key in self.memory:  # scored by the method probe: already on its bar
                done = self.memory[key]
            else:
                saved = self.checkpoint is not None and self.checkpoint.get(key) is not None
                done = memo(
                    self.checkpoint,
                    key,
                    partial(
                        method, self.backend, chunk, wording, self.system, report if hook else None
                    ),
                    _encode_results,
                    _decode_results,
                )
                if saved:
                    report(sum(len(r.orders) for r in done))
            self.memory[key] = done
            out.extend(done)
        return out


def probe_methods(
    runner: _Runner, instrument: Dilemmas, candidates: Sequence[str], n_items: int
) -> dict[str, dict[str, float | None]]:
    """Measured validity of each candidate on the first chunk of items.

    validity = paraphrase agreement (correlation of an item's P(first option) between its two
    wordings) minus |position bias|; without paraphrases, order consistency stands in for the
    agreement. The chunk is the main run's first chunk, so the chosen method reuses it.
    """
    probe: dict[str, dict[str, float | None]] = {}
    n = min(CHUNK, n_items)
    for name in candidates:
        method = METHODS[name]()
        results = runner.score(method, instrument, n, "original", "")
        consistency, bias = order_consistency(results), position_bias(results)
        agreement = None
        if instrument.has_paraphrases:
            agreement = item_agreement(
                results, runner.score(method, instrument, n, "paraphrase", "")
            )
            base = agreement or 0.0
        else:
            base = consistency if consistency is not None else 1.0
        probe[name] = {
            "paraphrase_agreement": agreement,
            "order_consistency": consistency,
            "position_bias": bias,
            "validity": base - abs(bias or 0.0),
        }
    return probe


@dataclass
class DilemmaResult:
    """A finished dilemma run: the profile, ranking, diagnostics and item results."""

    spec: RunSpec
    model_name: str
    instrument: Dilemmas
    method: str
    profile: Profile
    paraphrase_profile: Profile | None
    ranking: Ranking | None
    diagnostics: Diagnostics
    results: list[ItemResult]
    paraphrase_results: list[ItemResult]
    method_probe: dict[str, dict[str, float | None]] = field(default_factory=dict)
    seconds: float = 0.0
    server: dict[str, Any] | None = None
    requests: dict[str, Any] | None = None

    @property
    def verdict(self) -> str:
        return self.diagnostics.verdict

    @property
    def steering(self) -> dict[str, Any] | None:
        """The steering the run was made under, as results.json records it."""
        record: dict[str, Any] | None = intervention_records(self.spec).get("steering")
        return record

    def recovery_scores(self) -> dict[str, float]:
        return {v: s.score for v, s in self.profile.scores.items()}

    def results_block(self) -> dict[str, Any]:
        paraphrase = {r.item_id: r for r in self.paraphrase_results}
        by_id = {item.id: item for item in self.instrument.items}
        items = []
        for r in self.results:
            item = by_id[r.item_id]
            entry: dict[str, Any] = {
                "id": r.item_id,
                "p": list(r.p),
                "orders": [{"order": list(o.order), "p": list(o.p)} for o in r.orders],
                "text": item.text,
                "options": [{"text": o.text, "values": list(o.values)} for o in item.options],
            }
            if r.item_id in paraphrase:
                entry["p_paraphrase"] = list(paraphrase[r.item_id].p)
            items.append(entry)
        presentations = sum(len(r.orders) for r in self.results + self.paraphrase_results)
        return {
            "profile_paraphrase": (
                self.paraphrase_profile.as_dict() if self.paraphrase_profile else None
            ),
            "ranking": self.ranking.as_dict() if self.ranking else None,
            "diagnostics": {**self.diagnostics.as_dict(), "method_probe": self.method_probe},
            "items": items,
            "timing": {
                "presentations_per_second": (
                    presentations / self.seconds if self.seconds else None
                ),
            },
        }

    def items_table(self) -> ItemsTable:
        """One row per item, wording and presentation order."""
        by_id = {item.id: item for item in self.instrument.items}
        width = max(len(item.options) for item in self.instrument.items)
        header = ["item_id", "wording", "order", "shown_first"]
        header += [f"p{i}" for i in range(width)] + [f"values{i}" for i in range(width)]
        rows: list[list[Any]] = []
        for r in self.results + self.paraphrase_results:
            values = ["|".join(o.values) for o in by_id[r.item_id].options]
            for order in r.orders:
                pad = [""] * (width - len(order.p))
                rows.append(
                    [r.item_id, r.wording, "-".join(map(str, order.order)), order.order[0],
                     *[f"{p:.6f}" for p in order.p], *pad, *values, *pad]
                )  # fmt: skip
        return ItemsTable(header, rows)

    def files(self) -> dict[str, str]:
        """answers.jsonl, for runs that sampled answers (`--method generate`)."""
        done = self.results + self.paraphrase_results
        if not any(o.answers for r in done for o in r.orders):
            return {}
        by_id = {item.id: item for item in self.instrument.items}
        lines = []
        for r in done:
            item = by_id[r.item_id]
            words = wording_of(item, r.wording)
            for order in r.orders:
                chat = generate_prompt(item, r.wording, order.order, self.spec.system)
                shown = [words.options[i] for i in order.order]
                for sample, answer in enumerate(order.answers):
                    slot = map_answer(answer, shown)
                    record = {
                        "item_id": r.item_id,
                        "wording": r.wording,
                        "order": list(order.order),
                        "sample": sample,
                        "system": chat.system,
                        "prompt": chat.user,
                        "answer": answer,
                        "option": None if slot is None else order.order[slot],
                        "option_values": [list(o.values) for o in item.options],
                    }
                    lines.append(json.dumps(record, ensure_ascii=False))
        return {ANSWERS: "\n".join(lines) + "\n"}

    def summary(self) -> list[RenderableType]:
        """Profile (score, CI, n, rank) and diagnostics with the verdict."""
        taxonomy = self.instrument.taxonomy
        ranked = self.ranking.order if self.ranking else []
        order = ranked + [v for v in self.profile.scores if v not in ranked]
        table = Table(
            title=Text(f"{self.model_name} on {self.instrument.name} ({self.method})"),
            caption="score = P(choose the option upholding the value); 0.5 = indifferent",
        )
        for column in ("rank", "value", "score", "95% CI", "n"):
            table.add_column(column, justify="right" if column != "value" else "left")
        for value in order:
            score = self.profile.scores.get(value)
            if score is None:
                continue
            table.add_row(
                str(ranked.index(value) + 1) if value in ranked else "–",
                Text(taxonomy[value].label),
                _fmt(score.score),
                f"{_fmt(score.ci[0])}–{_fmt(score.ci[1])}",
                str(score.n),
            )
        d = self.diagnostics
        lines: list[RenderableType] = [
            table,
            Text(
                f"order consistency {_fmt(d.order_consistency)} · position bias "
                f"{_fmt(d.position_bias)} · paraphrase consistency "
                f"{_fmt(d.paraphrase_consistency, NOT_MEASURED)}"
            ),
            Text(f"verdict: {d.verdict}"),
        ]
        lines += [Text(f"  warning: {warning}") for warning in d.warnings]
        return lines


ANSWERS = "answers.jsonl"
NOT_MEASURED = "not measured (no second wording)"


def _fmt(value: float | None, missing: str = "n/a") -> str:
    return missing if value is None or value != value else f"{value:.2f}"


def choose_method(
    runner: _Runner, backend: Backend, instrument: Dilemmas, method: str, n_items: int
) -> tuple[str, dict[str, dict[str, float | None]]]:
    """The method to run, and the probe that chose it when `method` is auto."""
    check = getattr(backend, "check_method", None)
    if method != "auto":
        if check is not None:
            check(method)
        return method, {}
    offered = getattr(backend, "auto_candidates", None)
    if offered is not None:
        candidates = offered()
    elif isinstance(backend, WhiteBoxBackend):
        candidates = AUTO_CANDIDATES_WHITE_BOX
    else:
        candidates = AUTO_CANDIDATES_BLACK_BOX
    if len(candidates) == 1:
        return candidates[0], {}
    probe = probe_methods(runner, instrument, candidates, n_items)
    return max(candidates, key=lambda m: probe[m]["validity"] or 0.0), probe


class DilemmaKind:
    """Dilemmas: P(choose each option), per presentation order and wording."""

    name = "dilemma"
    honours = frozenset({"method", "limit", "paraphrase", "interventions"})
    methods = tuple(METHODS)

    def hint(self, setting: str) -> str:
        return {
            "budget": "use --limit to score fewer items",
            "panel": "it applies to likert questionnaires; persona recovery is `validate`",
        }.get(setting, "")

    def parse(self, doc: Document) -> Instrument:
        return parse_dilemmas(doc)

    def check(self, instrument: Instrument, spec: RunSpec) -> None:
        assert isinstance(instrument, Dilemmas)
        if spec.paraphrase and not instrument.has_paraphrases:
            raise UsageError(
                f"instrument {instrument.name!r} has items without a paraphrase; add them or "
                "leave out --paraphrase"
            )

    def warnings(self, instrument: Instrument) -> list[str]:
        """Items that decide no value: no option names one, or the options share them."""
        assert isinstance(instrument, Dilemmas)
        idle = []
        for item in instrument.items:
            if any(item.upholding(v) is not None for v in instrument.taxonomy.ids):
                continue
            named = any(o.values for o in item.options)
            why = "its options uphold the same values" if named else "no option names a value"
            idle.append(f"{item.id!r} ({why})")
        if not idle:
            return []
        shown = ", ".join(idle[:5]) + (f" and {len(idle) - 5} more" if len(idle) > 5 else "")
        return [
            f"{instrument.name}: {len(idle)} item(s) decide no value and count for none: {shown}"
        ]

    def texts(self, instrument: Instrument) -> Iterator[tuple[str, str]]:
        assert isinstance(instrument, Dilemmas)
        for item in instrument.items:
            for wording in (item.original, item.paraphrase):
                if wording is not None:
                    yield item.id, "\n".join([wording.text, *wording.options])

    def settings(self, instrument: Instrument, spec: RunSpec) -> dict[str, Any]:
        """The method; not the number of items: chunks are fixed by position, so a run
        extended to more items (a larger --limit) resumes."""
        return {"method": spec.method}

    def run(
        self,
        instrument: Instrument,
        spec: RunSpec,
        backend: Backend,
        out: Path | None,
        progress: ProgressHook | None,
    ) -> DilemmaResult:
        assert isinstance(instrument, Dilemmas)
        started = time.perf_counter()
        self.check(instrument, spec)
        paraphrase = instrument.has_paraphrases if spec.paraphrase is None else spec.paraphrase
        n_items = min(spec.limit or len(instrument.items), len(instrument.items))
        checkpoint = run_checkpoint(out, backend, instrument, spec)
        runner = _Runner(backend, checkpoint, spec.system, progress)
        method_name, probe = choose_method(runner, backend, instrument, spec.method, n_items)
        method = METHODS[method_name]()
        results = runner.score(method, instrument, n_items, "original", "")
        para_results = (
            runner.score(method, instrument, n_items, "paraphrase", "") if paraphrase else []
        )
        items = instrument.items[:n_items]
        profile = build_profile(instrument.taxonomy, items, results, spec.seed)
        para_profile = (
            build_profile(instrument.taxonomy, items, para_results, spec.seed)
            if para_results
            else None
        )
        flat_p = flat_profile_test(instrument.taxonomy, items, results, spec.seed)
        diagnostics = diagnose(results, profile, para_profile, flat_p)
        if not paraphrase:
            diagnostics = diagnostics.noting(
                "paraphrase consistency was not measured: "
                + (
                    "the items have no second wording"
                    if not instrument.has_paraphrases
                    else "--no-paraphrase"
                )
            )
        return DilemmaResult(
            spec=spec,
            model_name=backend.name,
            instrument=instrument,
            method=method_name,
            profile=profile,
            paraphrase_profile=para_profile,
            ranking=bradley_terry(instrument.taxonomy, items, results, spec.seed),
            diagnostics=diagnostics,
            results=results,
            paraphrase_results=para_results,
            method_probe=probe,
            seconds=time.perf_counter() - started,
            **server_figures(backend),
        )

    def evidence(self, doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        return dilemma_evidence(doc)

    def card(self, doc: Mapping[str, Any]) -> tuple[list[DiagnosticRow], list[CardSection]]:
        d = doc["diagnostics"]
        rows = [
            DiagnosticRow("order consistency", d.get("order_consistency"),
                          "share of items whose preferred option survives reordering"),
            DiagnosticRow("position bias", d.get("position_bias"),
                          "mean P(option shown first) − 1/k"),
            DiagnosticRow("paraphrase consistency", d.get("paraphrase_consistency"),
                          "rank correlation of the profiles from two wordings",
                          None if doc.get("profile_paraphrase") else
                          "not measured: the run scored one wording"),
        ]  # fmt: skip
        sections = [CardSection("ranking.html.j2")] if doc.get("ranking") else []
        decisive = decisive_items(doc)
        if decisive:
            sections.append(CardSection("dilemma.html.j2", {"decisive": decisive}))
        return rows, sections


DECISIVE_ITEMS = 8


def dilemma_evidence(doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per value, P(choose the one option upholding it) for each item that decides it."""
    found: dict[str, dict[str, float]] = {}
    for item in doc.get("items", []):
        if "options" not in item or "p" not in item:
            continue
        for value in {v for o in item["options"] for v in o["values"]}:
            slots = [k for k, o in enumerate(item["options"]) if value in o["values"]]
            if len(slots) == 1:
                found.setdefault(value, {})[str(item["id"])] = float(item["p"][slots[0]])
    return found


def decisive_items(doc: Mapping[str, Any], count: int = DECISIVE_ITEMS) -> list[dict[str, Any]]:
    """The items the model decided most clearly, with its choice."""
    rows = []
    for item in doc.get("items", []):
        if "text" not in item or "options" not in item:
            continue
        p = item["p"]
        chosen = max(range(len(p)), key=lambda i: p[i])
        rows.append(
            {
                "id": item["id"],
                "text": item["text"],
                "options": [
                    {**option, "p": p[i], "chosen": i == chosen}
                    for i, option in enumerate(item["options"])
                ],
                "margin": p[chosen] - 1 / len(p),
            }
        )
    rows.sort(key=lambda r: -r["margin"])
    return rows[:count]


KIND = DilemmaKind()


def audit_dilemmas(
    instrument: Dilemmas,
    spec: RunSpec,
    backend: Backend,
    out: Path | None = None,
    progress: ProgressHook | None = None,
) -> DilemmaResult:
    """`run_audit` of a dilemma instrument on a loaded model, typed as the dilemma result
    (what paired shifts and steering read)."""
    from valuescope.audit.run import run_audit

    result = run_audit(instrument, spec, backend=backend, out=out, progress=progress)
    assert isinstance(result, DilemmaResult)
    return result
