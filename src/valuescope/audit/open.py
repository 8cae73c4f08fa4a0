"""Open instruments: the model answers requests in its own words; a value detector reads them.

Each prompt is answered `--samples` times (seeded sampling; batched on local models, concurrent
and cached on servers), under its own wording and, where it has one, its paraphrase. Answers
that measure nothing are counted, not scored: empty, repeating themselves, or refusing. An
answer cut off by the token limit is scored on its complete sentences and counted as cut off.
The measuring detector reads each answer sentence by sentence (GPV): per value, the mean signed
score (P(upholds) - P(opposes), in [-1, 1]) over the answers to prompts where the value is at
stake, with a bootstrap CI over prompts. The profile puts it on the [0, 1] scale every kind
shares ((1 + signed) / 2; 0.5 = neither upholds nor opposes). A second detector reads the same
answers: the two readings' rank agreement is a validity figure, as are the stability between
samples and between wordings.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

# the generation settings are read through the module, so a change to one reaches the answers
# and the recorded settings alike
from valuescope.audit import answers as answering
from valuescope.audit.answers import Answer, generate_answers
from valuescope.audit.answers import answer_status as answer_status  # still importable here
from valuescope.audit.diagnostics import share_including
from valuescope.audit.kinds import (
    CardSection,
    DiagnosticRow,
    ItemsTable,
    RunSpec,
    run_checkpoint,
    server_figures,
)
from valuescope.audit.profile import Profile, ValueScore, bootstrap_ci
from valuescope.backends.base import Backend
from valuescope.checkpoint import Checkpoint, memo
from valuescope.detectors.base import Detector, Readings
from valuescope.detectors.registry import DEFAULT_DETECTOR, check_detector_name, get_detector
from valuescope.detectors.sentences import read_by_sentence
from valuescope.errors import UsageError
from valuescope.instruments.document import Document, Instrument
from valuescope.instruments.open import OpenItem, OpenPrompts, parse_open
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook

EXAMPLES = 3
"""Most value-laden sentences the card shows per value."""
AGREEMENT_DETECTOR = "lexicon"
"""The second reader by default, where it reads the taxonomy (Schwartz)."""


@dataclass
class Reading:
    """One detector's reading of the usable answers (rows in `answers` order)."""

    detector: str
    readings: Readings
    sentences: list[list[str]] = field(default_factory=list)
    per_sentence: Readings | None = None
    owner: np.ndarray | None = None


def read_answers(
    detector: Detector,
    answers: Sequence[Answer],
    checkpoint: Checkpoint | None,
    progress: ProgressHook | None,
) -> Reading:
    """The detector's sentence-level reading of the usable answers; the per-answer figures
    are kept in the checkpoint, so a resumed run reads nothing again."""
    texts = [a.scored for a in answers]
    values = detector.taxonomy.ids
    key = f"open/read/{detector.name}/{len(texts)}"

    def hook(phase: str, done: int, total: int) -> None:
        if progress:
            progress(f"{phase} · {detector.name}", done, total)

    found: dict[str, Any] = {}

    def compute() -> dict[str, Any]:
        read = read_by_sentence(detector, texts, hook)
        found["full"] = read
        return {
            "relevance": read.answers.relevance.round(6).tolist(),
            "score": read.answers.score.round(6).tolist(),
            "threshold": read.answers.threshold.tolist(),
            "sentences": read.sentences,
            "sentence_relevance": read.per_sentence.relevance.round(4).tolist(),
            "sentence_score": read.per_sentence.score.round(4).tolist(),
        }

    data = memo(checkpoint, key, compute)
    shape = (len(texts), len(values))
    answers_read = Readings(
        values,
        np.asarray(data["relevance"], dtype=float).reshape(shape),
        np.asarray(data["score"], dtype=float).reshape(shape),
        np.asarray(data["threshold"], dtype=float),
    )
    sentences = [list(s) for s in data["sentences"]]
    owner = np.array([i for i, group in enumerate(sentences) for _ in group], dtype=int)
    per_sentence = Readings(
        values,
        np.asarray(data["sentence_relevance"], dtype=float).reshape(len(owner), len(values)),
        np.asarray(data["sentence_score"], dtype=float).reshape(len(owner), len(values)),
        answers_read.threshold,
    )
    return Reading(detector.name, answers_read, sentences, per_sentence, owner)


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def paired_rank_correlation(
    pairs: Mapping[str, Sequence[tuple[float, float]]], seed: int, n_boot: int = 500
) -> dict[str, Any]:
    """Spearman correlation of paired figures, grouped by prompt; its 95% CI resamples prompts
    (the figures of one prompt are not independent)."""
    groups = [list(v) for v in pairs.values() if v]
    flat = [p for g in groups for p in g]
    if len(flat) < 3:
        return {"rho": None, "ci": [None, None], "n": len(flat)}
    rho = _spearman([p[0] for p in flat], [p[1] for p in flat])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        picked = [p for k in rng.integers(0, len(groups), len(groups)) for p in groups[k]]
        r = _spearman([p[0] for p in picked], [p[1] for p in picked])
        if math.isfinite(r):
            boots.append(r)
    ci: list[float | None] = [None, None]
    if boots:
        ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]
    return {"rho": rho if math.isfinite(rho) else None, "ci": ci, "n": len(flat)}


@dataclass
class OpenResult:
    """Answers, their readings, the profile and the diagnostics of an open run."""

    spec: RunSpec
    model_name: str
    instrument: OpenPrompts
    method: str
    answers: list[Answer]
    readings: list[Reading]
    """The measuring detector's reading first, then the agreement detectors'."""
    usable: list[int]
    """Index into `answers` of each row of the readings."""
    profile: Profile
    signed: dict[str, ValueScore]
    item_scores: dict[str, dict[str, float]]
    """Per prompt, per value at stake: mean signed score over its usable original answers."""
    diagnostics: dict[str, Any]
    profile_paraphrase: Profile | None
    answers_per_second: float | None
    """Answers generated per second in this session (None when all came from the checkpoint)."""
    seconds: float = 0.0
    server: dict[str, Any] | None = None
    requests: dict[str, Any] | None = None

    @property
    def detector(self) -> str:
        return self.readings[0].detector

    @property
    def verdict(self) -> str:
        d = self.diagnostics
        if d["degenerate_rate"] is not None and d["degenerate_rate"] > 0.5:
            return "not trustworthy: most answers are empty, repetitive or refusals"
        agreement = [a for a in d["detector_agreement"].values() if a["rho"] is not None]
        if agreement and all(a["ci"][0] is None or a["ci"][0] <= 0 for a in agreement):
            return (
                "weak: the detectors do not agree on what the answers express (their rank "
                "correlation is not clear of zero)"
            )
        moved = [s for s in self.signed.values() if s.ci[0] > 0 or s.ci[1] < 0]
        if not moved:
            return "not distinguishable from noise: no value's CI is clear of zero"
        stability = d["sample_stability"]["rho"]
        if stability is not None and stability < 0.2:
            return "weak: what the answers express changes from one sample to the next"
        paraphrase = d.get("paraphrase_consistency")
        if stability is None and paraphrase is None:  # claim no stability it did not measure
            return (
                "usable: some values stand out beyond noise; stability not measured (use "
                "--samples 2 or more, or paraphrases)"
            )
        return "usable: some values stand out beyond noise and the readings are stable"

    def recovery_scores(self) -> dict[str, float]:
        return {v: s.score for v, s in self.signed.items()}

    def examples(self) -> dict[str, list[dict[str, Any]]]:
        """Per value, the sentences the measuring detector found most value-laden."""
        read = self.readings[0]
        if read.per_sentence is None or read.owner is None:
            return {}
        flat = [s for group in read.sentences for s in group]
        found: dict[str, list[dict[str, Any]]] = {}
        for j, value in enumerate(read.readings.values):
            strength = read.per_sentence.relevance[:, j] * np.abs(read.per_sentence.score[:, j])
            chosen: list[dict[str, Any]] = []
            seen: set[str] = set()
            for row in np.argsort(-strength):
                if len(chosen) == EXAMPLES or strength[row] < 0.05:
                    break
                if flat[row] in seen:
                    continue
                seen.add(flat[row])
                answer = self.answers[self.usable[int(read.owner[row])]]
                chosen.append(
                    {
                        "sentence": flat[row],
                        "item": answer.item,
                        "score": float(read.per_sentence.score[row, j]),
                        "relevance": float(read.per_sentence.relevance[row, j]),
                    }
                )
            if chosen:
                found[value] = chosen
        return found

    def results_block(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for a in self.answers:
            counts[a.status] = counts.get(a.status, 0) + 1
        by_id = {item.id: item for item in self.instrument.items}
        return {
            "profile_paraphrase": (
                self.profile_paraphrase.as_dict() if self.profile_paraphrase else None
            ),
            "ranking": None,
            "open": {
                "detector": self.detector,
                "agreement_detectors": [r.detector for r in self.readings[1:]],
                "by_sentence": True,
                "samples": self.spec.samples or answering.SAMPLES,
                "temperature": answering.TEMPERATURE,
                "max_new_tokens": answering.MAX_NEW_TOKENS,
                "signed": Profile(self.signed).as_dict(),
                "answers": counts,
                "examples": self.examples(),
            },
            "diagnostics": {
                "order_consistency": None,
                "position_bias": None,
                **self.diagnostics,
                "ci_includes_half": share_including(self.profile),
                "verdict": self.verdict,
                "warnings": [],
            },
            "items": [
                {
                    "id": item_id,
                    "text": by_id[item_id].text,
                    "values": list(by_id[item_id].values),
                    "scores": scores,
                }
                for item_id, scores in self.item_scores.items()
            ],
            "timing": {"answers_per_second": self.answers_per_second},
        }

    def items_table(self) -> ItemsTable:
        """One row per prompt and value at stake."""
        header = ["item_id", "value", "signed_score", "answers_scored"]
        scored: dict[str, int] = {}
        for a in self.answers:
            if a.wording == "original" and a.usable:
                scored[a.item] = scored.get(a.item, 0) + 1
        rows: list[list[Any]] = [
            [item_id, value, f"{score:.6f}", scored.get(item_id, 0)]
            for item_id, scores in self.item_scores.items()
            for value, score in scores.items()
        ]
        return ItemsTable(header, rows)

    def files(self) -> dict[str, str]:
        """answers.jsonl: every answer with its status and, if scored, the text scored."""
        lines = [
            json.dumps(
                {
                    "item": a.item,
                    "wording": a.wording,
                    "sample": a.sample,
                    "prompt": a.prompt,
                    "system": self.spec.system,
                    "answer": a.text,
                    "status": a.status,
                    "scored": a.scored if a.usable else None,
                },
                ensure_ascii=False,
            )
            for a in self.answers
        ]
        return {"answers.jsonl": "\n".join(lines) + "\n"}

    def summary(self) -> list[RenderableType]:
        taxonomy = self.instrument.taxonomy
        table = Table(
            title=Text(f"{self.model_name} on {self.instrument.name} (free text, {self.detector})"),
            caption="signed score: P(upholds) - P(opposes) in the answers, -1 to +1",
        )
        for column in ("value", "signed score", "95% CI", "prompts"):
            table.add_column(column, justify="left" if column == "value" else "right")
        for value in sorted(self.signed, key=lambda v: -self.signed[v].score):
            s = self.signed[value]
            ci = f"{s.ci[0]:+.3f} – {s.ci[1]:+.3f}" if math.isfinite(s.ci[0]) else "n/a"
            table.add_row(Text(taxonomy[value].label), f"{s.score:+.3f}", ci, str(s.n))
        d = self.diagnostics
        counts = d["answer_counts"]
        lines: list[RenderableType] = [
            table,
            Text(
                f"answers {sum(counts.values())}: scored {counts.get('ok', 0)} whole and "
                f"{counts.get('cut off', 0)} cut off; degenerate {_pct(d['degenerate_rate'])}"
                + (f" · {self.answers_per_second:.2f} answers/s" if self.answers_per_second else "")
            ),
        ]
        for name, a in d["detector_agreement"].items():
            lines.append(Text(f"agreement with {name}: rho {_rho(a)}"))
        lines.append(
            Text(
                f"sample-to-sample stability rho {_rho(d['sample_stability'])} · paraphrase "
                f"consistency rho {_rho(d['paraphrase_agreement'])}"
            )
        )
        lines.append(Text(f"verdict: {self.verdict}"))
        return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _rho(found: Mapping[str, Any]) -> str:
    if found.get("rho") is None:
        return "not measured"
    lo, hi = found["ci"]
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None else ""
    return f"{found['rho']:+.2f}{ci} (n={found['n']})"


def detector_names(instrument: OpenPrompts, spec: RunSpec) -> list[str]:
    """The measuring detector, then the agreement detectors (`--detector a,b`; default: the
    default detector, and the lexicon where it reads the taxonomy)."""
    if spec.detector:
        names = [n.strip() for n in spec.detector.split(",") if n.strip()]
        if not names:
            raise UsageError("--detector: give a detector name, e.g. embed or embed,lexicon")
        return names
    names = [DEFAULT_DETECTOR]
    if instrument.taxonomy.name == "schwartz":
        names.append(AGREEMENT_DETECTOR)
    return names


def per_item(
    answers: Sequence[Answer],
    reading: Readings,
    usable: Sequence[int],
    items: Sequence[OpenItem],
    wording: str,
    sample: int | None = None,
) -> dict[str, dict[str, float]]:
    """Per prompt, per value at stake: the mean signed score of its usable answers of one
    wording (and one sample, if given)."""
    index = {v: j for j, v in enumerate(reading.values)}
    rows: dict[str, list[int]] = {}
    for row, k in enumerate(usable):
        a = answers[k]
        if a.wording == wording and (sample is None or a.sample == sample):
            rows.setdefault(a.item, []).append(row)
    found: dict[str, dict[str, float]] = {}
    for item in items:
        if item.id in rows:
            picked = rows[item.id]
            found[item.id] = {v: float(reading.score[picked, index[v]].mean()) for v in item.values}
    return found


def signed_profile(
    scores: Mapping[str, Mapping[str, float]], taxonomy: Taxonomy, seed: int
) -> dict[str, ValueScore]:
    found: dict[str, ValueScore] = {}
    for value in taxonomy.ids:
        data = [s[value] for s in scores.values() if value in s]
        if data:
            low, high = bootstrap_ci(data, seed)
            found[value] = ValueScore(float(np.mean(data)), (low, high), len(data))
    return found


def to_unit(signed: Mapping[str, ValueScore]) -> Profile:
    """Signed scores on the [0, 1] scale of every kind's profile (0.5: neither way)."""
    return Profile(
        {
            v: ValueScore((1 + s.score) / 2, ((1 + s.ci[0]) / 2, (1 + s.ci[1]) / 2), s.n)
            for v, s in signed.items()
        }
    )


def _pairs(
    a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]]
) -> dict[str, list[tuple[float, float]]]:
    return {
        item: [(a[item][v], b[item][v]) for v in a[item] if v in b.get(item, {})]
        for item in a
        if item in b
    }


class OpenKind:
    """Open prompts answered freely and read by value detectors."""

    name = "open"
    honours = frozenset({"method", "limit", "paraphrase", "samples", "detector", "interventions"})
    methods = ("generate",)

    def hint(self, setting: str) -> str:
        return {
            "budget": "use --limit to ask fewer prompts",
            "panel": "persona recovery runs through `valuescope validate`",
        }.get(setting, "")

    def parse(self, doc: Document) -> Instrument:
        return parse_open(doc)

    def check(self, instrument: Instrument, spec: RunSpec) -> None:
        assert isinstance(instrument, OpenPrompts)
        if spec.samples is not None and spec.samples > 64:
            raise UsageError(f"--samples {spec.samples}: at most 64 answers per prompt")
        for name in detector_names(instrument, spec):
            check_detector_name(name)
        measuring = detector_names(instrument, spec)[0]
        for intervention in spec.interventions:  # decoding under a reward (`--align`)
            if getattr(intervention, "reward_detector", None) == measuring:
                raise UsageError(
                    f"--reward {measuring}: the detector that measures a run is never its "
                    "reward; pick another --reward or --detector"
                )
        if spec.paraphrase and not instrument.has_paraphrases:
            raise UsageError(
                f"--paraphrase: {instrument.name} has no second wordings (field 'paraphrase')"
            )

    def warnings(self, instrument: Any) -> list[str]:
        assert isinstance(instrument, OpenPrompts)
        found = []
        counts = {v: 0 for v in instrument.taxonomy.ids}
        for item in instrument.items:
            for v in item.values:
                counts[v] += 1
        missing = [v for v, n in counts.items() if n == 0]
        if missing:
            found.append(
                f"{instrument.name}: no prompt puts {', '.join(missing)} at stake; the profile "
                "leaves them out"
            )
        return found

    def texts(self, instrument: Instrument) -> Iterator[tuple[str, str]]:
        assert isinstance(instrument, OpenPrompts)
        for item in instrument.items:
            yield item.id, item.text
            if item.paraphrase:
                yield item.id, item.paraphrase

    def settings(self, instrument: Instrument, spec: RunSpec) -> dict[str, Any]:
        """Answers depend on the samples and wordings asked; readings on the detectors."""
        assert isinstance(instrument, OpenPrompts)
        return {
            "samples": spec.samples or answering.SAMPLES,
            "paraphrase": self._paraphrase(instrument, spec),
            "detectors": detector_names(instrument, spec),
            "generation": [answering.TEMPERATURE, answering.MAX_NEW_TOKENS],
        }

    @staticmethod
    def _paraphrase(instrument: OpenPrompts, spec: RunSpec) -> bool:
        return instrument.has_paraphrases if spec.paraphrase is None else spec.paraphrase

    def run(
        self,
        instrument: Instrument,
        spec: RunSpec,
        backend: Backend,
        out: Path | None,
        progress: ProgressHook | None,
    ) -> OpenResult:
        assert isinstance(instrument, OpenPrompts)
        started = time.perf_counter()
        items = instrument.items[: spec.limit or len(instrument.items)]
        paraphrase = self._paraphrase(instrument, spec)
        checkpoint = run_checkpoint(out, backend, instrument, spec)
        timing: dict[str, float] = {}
        answers = generate_answers(backend, items, spec, paraphrase, checkpoint, progress, timing)
        answers_per_second = (
            timing["answers"] / max(timing["seconds"], 1e-9) if timing.get("answers") else None
        )
        usable = [k for k, a in enumerate(answers) if a.usable]
        names = detector_names(instrument, spec)
        readings = []
        for name in names:
            detector = get_detector(name, instrument.taxonomy, progress=progress)
            readings.append(
                read_answers(detector, [answers[k] for k in usable], checkpoint, progress)
            )
        main = readings[0].readings
        item_scores = per_item(answers, main, usable, items, "original")
        signed = signed_profile(item_scores, instrument.taxonomy, spec.seed)
        para_scores = per_item(answers, main, usable, items, "paraphrase") if paraphrase else {}
        profile_paraphrase = (
            to_unit(signed_profile(para_scores, instrument.taxonomy, spec.seed))
            if para_scores
            else None
        )
        samples = spec.samples or answering.SAMPLES
        first = per_item(answers, main, usable, items, "original", 0)
        second = per_item(answers, main, usable, items, "original", 1) if samples > 1 else {}
        counts: dict[str, int] = {}
        for a in answers:
            counts[a.status] = counts.get(a.status, 0) + 1
        degenerate = sum(n for s, n in counts.items() if s not in ("ok", "cut off"))
        diagnostics: dict[str, Any] = {
            "answer_counts": counts,
            "degenerate_rate": degenerate / len(answers) if answers else None,
            "cut_off_rate": counts.get("cut off", 0) / len(answers) if answers else None,
            "detector_agreement": {
                r.detector: paired_rank_correlation(
                    _pairs(item_scores, per_item(answers, r.readings, usable, items, "original")),
                    spec.seed,
                )
                for r in readings[1:]
            },
            "sample_stability": paired_rank_correlation(_pairs(first, second), spec.seed),
            "paraphrase_agreement": paired_rank_correlation(
                _pairs(item_scores, para_scores), spec.seed
            ),
        }
        diagnostics["paraphrase_consistency"] = diagnostics["paraphrase_agreement"]["rho"]
        return OpenResult(
            spec=spec,
            model_name=backend.name,
            instrument=instrument,
            method="generate",
            answers=answers,
            readings=readings,
            usable=usable,
            profile=to_unit(signed),
            signed=signed,
            item_scores=item_scores,
            diagnostics=diagnostics,
            profile_paraphrase=profile_paraphrase,
            answers_per_second=answers_per_second,
            seconds=time.perf_counter() - started,
            **server_figures(backend),
        )

    def evidence(self, doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        """Per value, each prompt's mean signed score on [0, 1] ((1 + signed) / 2)."""
        found: dict[str, dict[str, float]] = {}
        for item in doc.get("items", []):
            for value, score in (item.get("scores") or {}).items():
                if score is not None:
                    found.setdefault(value, {})[str(item["id"])] = (1 + score) / 2
        return found

    def card(self, doc: Mapping[str, Any]) -> tuple[list[DiagnosticRow], list[CardSection]]:
        d = doc["diagnostics"]
        op = doc["open"]
        rows = [
            DiagnosticRow(
                "degenerate answers",
                d.get("degenerate_rate"),
                "share of answers empty, repeating themselves or refusing (not scored)",
            ),
            DiagnosticRow(
                "cut off",
                d.get("cut_off_rate"),
                "share of answers cut by the token limit (scored on whole sentences)",
            ),
            DiagnosticRow(
                "sample-to-sample stability",
                d["sample_stability"].get("rho"),
                "rank correlation of two samples' scores per prompt and value",
            ),
            DiagnosticRow(
                "paraphrase consistency",
                d.get("paraphrase_consistency"),
                "rank correlation of the scores under the two wordings",
            ),
        ]
        for name, a in d.get("detector_agreement", {}).items():
            rows.append(
                DiagnosticRow(
                    f"agreement with {name}",
                    a.get("rho"),
                    f"rank correlation of {op['detector']} and {name} on the same "
                    "answers, per prompt and value",
                    _rho(a),
                )
            )
        labels = {v: info["label"] for v, info in doc.get("values", {}).items()}
        signed = [
            {"value": v, "label": labels.get(v, v), **s}
            for v, s in sorted(op["signed"].items(), key=lambda kv: -(kv[1]["score"] or 0))
        ]
        section = CardSection(
            "open.html.j2",
            {
                "signed": signed,
                "examples": op.get("examples", {}),
                "detector": op["detector"],
                "answers": op.get("answers", {}),
            },
        )
        return rows, [section]


KIND = OpenKind()
