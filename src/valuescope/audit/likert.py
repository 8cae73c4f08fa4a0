"""Likert questionnaires: the model rates how well first-person statements describe it.

Each statement is asked on a 6-point scale (1 = not like me at all ... 6 = very much like me)
and, separately, on the same scale written in the opposite direction (1 = very much like me),
so a preference for a digit cancels out and its size is measured (direction consistency). The
rating is read as a probability distribution over the scale points, from the probabilities of
the digits (white-box models, servers with logprobs) or from sampled answers. Per value:
the mean keyed rating with a bootstrap CI; ipsatized scores (ratings centred on the
respondent's own mean over all items before keying, as in standard Schwartz-inventory scoring,
which removes acquiescence); acquiescence itself; and Cronbach's alpha over a panel of
respondents (the model under each persona prompt), since alpha needs variation between
respondents that one unprompted model does not have.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from valuescope.audit.diagnostics import share_including
from valuescope.audit.kinds import (
    CardSection,
    DiagnosticRow,
    ItemsTable,
    RunSpec,
    chunk_key,
    run_checkpoint,
    server_figures,
)
from valuescope.audit.profile import Profile, ValueScore, bootstrap_ci
from valuescope.audit.recovery import persona_recovery
from valuescope.backends.base import Backend, Chat, GenerationParams, LoglikelihoodRequest, Progress
from valuescope.checkpoint import Checkpoint, memo
from valuescope.errors import UsageError
from valuescope.instruments.document import Document, Instrument
from valuescope.instruments.likert import LikertItem, Questionnaire, parse_questionnaire
from valuescope.progress import ProgressHook

POINTS = 6
ANCHORS = ("not like me at all", "not like me", "a little like me", "somewhat like me",
           "like me", "very much like me")  # fmt: skip
CHUNK = 16
LikertMethod = Literal["scale", "generate"]


def likert_prompt(text: str, reverse: bool) -> str:
    """The question for one statement; `reverse` writes the scale from 6 down to 1."""
    anchors = ANCHORS[::-1] if reverse else ANCHORS
    scale = "\n".join(f"{k + 1} = {anchor}" for k, anchor in enumerate(anchors))
    return (
        f'Statement: "{text}"\n\nHow well does this statement describe you?\n{scale}\n\n'
        "Answer with the number only."
    )


@dataclass(frozen=True)
class Rating:
    """One item's rating distribution (index k = rating k+1), per scale direction."""

    item_id: str
    forward: tuple[float, ...]
    reverse: tuple[float, ...]  # already mapped back to ratings (digit d means 7 - d)

    @property
    def p(self) -> tuple[float, ...]:
        return tuple((a + b) / 2 for a, b in zip(self.forward, self.reverse, strict=True))

    @staticmethod
    def expected(p: Sequence[float]) -> float:
        return float(sum((k + 1) * pk for k, pk in enumerate(p)))

    @property
    def rating(self) -> float:
        return self.expected(self.p)


def _normalise(weights: Sequence[float]) -> tuple[float, ...]:
    total = sum(weights)
    if total <= 0:
        return tuple(1 / len(weights) for _ in weights)
    return tuple(w / total for w in weights)


def rate(
    backend: Backend,
    items: Sequence[LikertItem],
    system: str | None,
    method: LikertMethod = "scale",
    seed: int = 0,
    progress: Progress | None = None,
) -> list[Rating]:
    """Ratings of `items`: digit probabilities (`scale`) or 8 sampled answers (`generate`)."""
    contexts = [
        Chat(likert_prompt(item.text, reverse), system)
        for item in items
        for reverse in (False, True)
    ]
    digits = [str(k + 1) for k in range(POINTS)]
    per_context: list[tuple[float, ...]] = []
    if method == "scale":
        requests = [LoglikelihoodRequest(c, d) for c in contexts for d in digits]
        done = 0

        def report(n: int) -> None:
            nonlocal done
            before = done // (2 * POINTS)
            done += n
            if progress is not None and done // (2 * POINTS) > before:
                progress(done // (2 * POINTS) - before)

        scores = backend.loglikelihood(requests, progress=report)
        for start in range(0, len(scores), POINTS):
            logs = [s.logprob for s in scores[start : start + POINTS]]
            top = max(logs)
            per_context.append(_normalise([math.exp(v - top) for v in logs]))
    else:
        params = GenerationParams(max_new_tokens=4, temperature=0.7, n=8, seed=seed)
        answers = backend.generate(contexts, params)
        for samples in answers:
            counts = [0.5] * POINTS  # add-half smoothing: no rating gets probability zero
            for answer in samples:
                match = re.search(r"[1-6]", answer)
                if match:
                    counts[int(match.group()) - 1] += 1
            per_context.append(_normalise(counts))
        if progress is not None:
            progress(len(items))
    return [
        Rating(item.id, per_context[2 * i], per_context[2 * i + 1][::-1])
        for i, item in enumerate(items)
    ]


def cronbach_alpha(scores: np.ndarray) -> float:
    """Alpha of a respondents x items matrix of keyed scores (nan if undefined)."""
    n_resp, k = scores.shape
    if n_resp < 2 or k < 2:
        return float("nan")
    total = scores.sum(axis=1).var(ddof=1)
    if total <= 0:
        return float("nan")
    return float(k / (k - 1) * (1 - scores.var(axis=0, ddof=1).sum() / total))


@dataclass
class LikertResult:
    """A rated questionnaire: profile on [0, 1], raw and ipsatized means, diagnostics."""

    spec: RunSpec
    model_name: str
    instrument: Questionnaire
    method: str
    ratings: list[Rating]
    profile: Profile
    raw: dict[str, ValueScore]
    ipsatized: dict[str, ValueScore]
    acquiescence: float
    direction_consistency: float
    alpha: dict[str, float] | None
    panel: list[str] = field(default_factory=list)
    recovery: dict[str, dict[str, float]] | None = None
    """With a persona panel: per persona value, its ipsatized delta against the model
    unprompted and the rank of that delta among all values (1 = moved most)."""
    seconds: float = 0.0
    server: dict[str, Any] | None = None
    requests: dict[str, Any] | None = None

    @property
    def questionnaire(self) -> Questionnaire:
        return self.instrument

    @property
    def verdict(self) -> str:
        spread = [s for s in self.ipsatized.values() if s.ci[0] > 0 or s.ci[1] < 0]
        if not math.isfinite(self.direction_consistency) or self.direction_consistency < 0.3:
            return "not trustworthy: ratings change when the scale is written the other way round"
        if not spread:
            return "not distinguishable from noise: no value differs from the model's own average"
        if self.direction_consistency < 0.6:
            return "weak: ratings depend noticeably on the direction of the scale"
        return "usable: ratings agree across scale directions and some values stand out"

    def recovery_scores(self) -> dict[str, float]:
        """Ipsatized means: a persona that raises every rating moves no value."""
        return {v: s.score for v, s in self.ipsatized.items()}

    def results_block(self) -> dict[str, Any]:
        by_id = {item.id: item for item in self.instrument.items}
        return {
            "profile_paraphrase": None,
            "ranking": None,
            "likert": {
                "scale": "1 = not like me at all ... 6 = very much like me",
                "raw": Profile(self.raw).as_dict(),
                "ipsatized": Profile(self.ipsatized).as_dict(),
                "acquiescence": self.acquiescence,
                "direction_consistency": self.direction_consistency,
                "alpha": self.alpha,
                "panel": self.panel,
                "persona_recovery": self.recovery,
            },
            "diagnostics": {
                "order_consistency": None,
                "position_bias": None,
                "paraphrase_consistency": None,
                "direction_consistency": self.direction_consistency,
                "acquiescence": self.acquiescence,
                "ci_includes_half": share_including(self.profile),
                "verdict": self.verdict,
                "warnings": [],
            },
            "items": [
                {
                    "id": r.item_id,
                    "text": by_id[r.item_id].text,
                    "value": by_id[r.item_id].value,
                    "keyed": by_id[r.item_id].keyed,
                    "p": list(r.p),
                    "p_forward": list(r.forward),
                    "p_reverse": list(r.reverse),
                    "rating": r.rating,
                }
                for r in self.ratings
            ],
        }

    def items_table(self) -> ItemsTable:
        """One row per statement."""
        by_id = {item.id: item for item in self.instrument.items}
        header = ["item_id", "value", "keyed", "rating", *[f"p{k}" for k in range(1, 7)]]
        rows: list[list[Any]] = [
            [r.item_id, by_id[r.item_id].value, by_id[r.item_id].keyed, f"{r.rating:.6f}",
             *[f"{p:.6f}" for p in r.p]]
            for r in self.ratings
        ]  # fmt: skip
        return ItemsTable(header, rows)

    def files(self) -> dict[str, str]:
        return {}

    def summary(self) -> list[RenderableType]:
        taxonomy = self.instrument.taxonomy
        table = Table(
            title=Text(f"{self.model_name} on {self.instrument.name} ({self.method})"),
            caption="rating 1-6 (keyed: 6 = holds the value); ipsatized = centred on own mean",
        )
        for column in ("value", "rating", "95% CI", "ipsatized", "95% CI", "alpha"):
            table.add_column(column, justify="left" if column == "value" else "right")
        for value in sorted(self.raw, key=lambda v: -self.ipsatized[v].score):
            raw, ips = self.raw[value], self.ipsatized[value]
            a = self.alpha.get(value) if self.alpha else None
            table.add_row(
                Text(taxonomy[value].label),
                f"{raw.score:.2f}",
                f"{raw.ci[0]:.2f}–{raw.ci[1]:.2f}",
                f"{ips.score:+.2f}",
                f"{ips.ci[0]:+.2f}–{ips.ci[1]:+.2f}",
                "n/a" if a is None else f"{a:.2f}",
            )
        lines: list[RenderableType] = [
            table,
            Text(
                f"acquiescence {self.acquiescence:.2f} (mean rating; 3.5 is the middle) · "
                f"scale-direction consistency {self.direction_consistency:.2f}"
            ),
        ]
        if self.recovery:
            ranks = [r["rank"] for r in self.recovery.values()]
            lines.append(
                Text(
                    f"persona recovery (ipsatized): top-1 {sum(r == 1 for r in ranks)}/"
                    f"{len(ranks)} · top-3 {sum(r <= 3 for r in ranks)}/{len(ranks)}"
                )
            )
        lines.append(Text(f"verdict: {self.verdict}"))
        return lines


def analyse(
    questionnaire: Questionnaire, ratings: Sequence[Rating], seed: int
) -> tuple[Profile, dict[str, ValueScore], dict[str, ValueScore], float, float]:
    """Profile, raw means, ipsatized means, acquiescence and direction consistency."""
    by_id = {r.item_id: r for r in ratings}
    items = [i for i in questionnaire.items if i.id in by_id]
    expected = np.array([by_id[i.id].rating for i in items])
    mean_rating = float(expected.mean())
    raw: dict[str, ValueScore] = {}
    ipsatized: dict[str, ValueScore] = {}
    scores: dict[str, ValueScore] = {}
    for value in questionnaire.taxonomy.ids:
        rows = [n for n, i in enumerate(items) if i.value == value]
        if not rows:
            continue
        keyed = [expected[n] if items[n].keyed == 1 else POINTS + 1 - expected[n] for n in rows]
        centred = [items[n].keyed * (expected[n] - mean_rating) for n in rows]
        low, high = bootstrap_ci(keyed, seed)
        raw[value] = ValueScore(float(np.mean(keyed)), (low, high), len(rows))
        scores[value] = ValueScore(
            (raw[value].score - 1) / (POINTS - 1),
            ((low - 1) / (POINTS - 1), (high - 1) / (POINTS - 1)),
            len(rows),
        )
        ilow, ihigh = bootstrap_ci(centred, seed)
        ipsatized[value] = ValueScore(float(np.mean(centred)), (ilow, ihigh), len(rows))
    forward = [Rating.expected(by_id[i.id].forward) for i in items]
    reverse = [Rating.expected(by_id[i.id].reverse) for i in items]
    consistency = (
        float(np.corrcoef(forward, reverse)[0, 1])
        if np.std(forward) > 0 and np.std(reverse) > 0
        else float("nan")
    )
    return Profile(scores), raw, ipsatized, mean_rating, consistency


def _method(backend: Backend, method: str) -> LikertMethod:
    """`scale` reads digit probabilities; `generate` samples; `auto` takes what works."""
    if method == "scale":
        return "scale"
    if method == "generate":
        return "generate"
    if method != "auto":
        raise UsageError(
            f"--method {method!r} does not apply to likert questionnaires; choose auto, scale "
            "(digit probabilities) or generate (sampled answers)"
        )
    offered = getattr(backend, "auto_candidates", None)
    if offered is not None and offered() == ("generate",):
        return "generate"
    return "scale"


def _ratings(
    backend: Backend,
    items: Sequence[LikertItem],
    method: LikertMethod,
    seed: int,
    checkpoint: Checkpoint | None,
    progress: ProgressHook | None,
    name: str,
    prompt: str | None,
) -> list[Rating]:
    """One respondent's ratings, chunk by chunk through the checkpoint."""
    label = f"{method} · {name}"
    if progress:
        progress(label, 0, len(items))

    def report(n: int) -> None:
        if progress:
            progress(label, n, len(items))

    done: list[Rating] = []
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        key = chunk_key(f"likert/{name}", start, len(chunk), CHUNK)
        saved = checkpoint is not None and checkpoint.get(key) is not None
        part = memo(
            checkpoint,
            key,
            partial(rate, backend, chunk, prompt, method, seed, report),
            lambda rs: [{"id": r.item_id, "forward": r.forward, "reverse": r.reverse} for r in rs],
            lambda data: [Rating(r["id"], tuple(r["forward"]), tuple(r["reverse"])) for r in data],
        )
        if saved:
            report(len(part))
        done.extend(part)
    return done


class LikertKind:
    """Likert questionnaires: rating distributions over a 6-point scale, both directions."""

    name = "likert"
    honours = frozenset({"method", "limit", "panel"})
    methods = ("scale", "generate")

    def hint(self, setting: str) -> str:
        return {
            "budget": "use --limit to rate fewer statements",
            "paraphrase": "the scale is asked in both directions instead",
        }.get(setting, "")

    def parse(self, doc: Document) -> Instrument:
        return parse_questionnaire(doc)

    def check(self, instrument: Instrument, spec: RunSpec) -> None:
        return None

    def warnings(self, instrument: Any) -> list[str]:
        return []

    def texts(self, instrument: Instrument) -> Iterator[tuple[str, str]]:
        assert isinstance(instrument, Questionnaire)
        return ((item.id, item.text) for item in instrument.items)

    def settings(self, instrument: Instrument, spec: RunSpec) -> dict[str, Any]:
        """The method asked for and the respondents; not the number of statements (a larger
        --limit resumes)."""
        return {"method": spec.method, "panel": sorted(spec.panel or {})}

    def run(
        self,
        instrument: Instrument,
        spec: RunSpec,
        backend: Backend,
        out: Path | None,
        progress: ProgressHook | None,
    ) -> LikertResult:
        """Rate the questionnaire (resumable under `out`); with `spec.panel`, alpha over its
        respondents and persona recovery for those named after a value."""
        assert isinstance(instrument, Questionnaire)
        started = time.perf_counter()
        chosen = _method(backend, spec.method)
        items = instrument.items[: spec.limit or len(instrument.items)]
        panel = spec.panel or {}
        checkpoint = run_checkpoint(out, backend, instrument, spec)

        def rated(name: str, prompt: str | None) -> list[Rating]:
            return _ratings(backend, items, chosen, spec.seed, checkpoint, progress, name, prompt)

        ratings = rated("model", spec.system)
        profile, raw, ipsatized, acquiescence, consistency = analyse(instrument, ratings, spec.seed)
        alpha = None
        recovery = None
        if panel:
            panel_ratings = {name: rated(name, prompt) for name, prompt in panel.items()}
            personas = {
                name: {v: s.score for v, s in analyse(instrument, rows, spec.seed)[2].items()}
                for name, rows in panel_ratings.items()
                if name in instrument.taxonomy
            }
            found = persona_recovery(chosen, {v: s.score for v, s in ipsatized.items()}, personas)
            recovery = {
                v: {"delta": found.deltas[v][v], "rank": float(found.rank_of_own(v))}
                for v in found.deltas
                if v in found.deltas[v]
            }
            alpha = _alpha(instrument, items, [ratings, *panel_ratings.values()])
        return LikertResult(
            spec=spec,
            model_name=backend.name,
            instrument=instrument,
            method=chosen,
            ratings=ratings,
            profile=profile,
            raw=raw,
            ipsatized=ipsatized,
            acquiescence=acquiescence,
            direction_consistency=consistency,
            alpha=alpha,
            panel=list(panel),
            recovery=recovery,
            seconds=time.perf_counter() - started,
            **server_figures(backend),
        )

    def evidence(self, doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        """Per value, each statement's keyed rating on [0, 1] (1 = holds the value most)."""
        found: dict[str, dict[str, float]] = {}
        for item in doc.get("items", []):
            if "rating" in item and "value" in item:
                keyed = item["rating"] if item.get("keyed", 1) == 1 else POINTS + 1 - item["rating"]
                found.setdefault(item["value"], {})[str(item["id"])] = (keyed - 1) / (POINTS - 1)
        return found

    def card(self, doc: Mapping[str, Any]) -> tuple[list[DiagnosticRow], list[CardSection]]:
        lk = doc["likert"]
        rows = [
            DiagnosticRow("scale-direction consistency", lk.get("direction_consistency"),
                          "correlation of ratings with the scale written 1→6 and 6→1"),
            DiagnosticRow("acquiescence", lk.get("acquiescence"),
                          "mean rating over all statements (1-6; 3.5 is the middle)"),
        ]  # fmt: skip
        if lk.get("alpha"):
            labels = {v: info["label"] for v, info in doc.get("values", {}).items()}
            shown = " · ".join(
                f"{labels.get(v, v)} {'n/a' if a is None else f'{a:.2f}'}"
                for v, a in lk["alpha"].items()
            )
            rows.append(
                DiagnosticRow(
                    "Cronbach's alpha",
                    None,
                    f"internal consistency per value, over {len(lk.get('panel') or []) + 1} "
                    "respondents (the model under each persona prompt)",
                    shown,
                )
            )
        sections = [
            CardSection(
                "likert.html.j2",
                {"statements": extreme_statements(doc)},
            )
        ]  # fmt: skip
        return rows, sections


def _alpha(
    questionnaire: Questionnaire,
    items: Sequence[LikertItem],
    respondents: Sequence[Sequence[Rating]],
) -> dict[str, float]:
    """Cronbach's alpha per value over the respondents' keyed ratings."""
    alpha = {}
    for value in questionnaire.taxonomy.ids:
        rows = [n for n, i in enumerate(items) if i.value == value]
        if len(rows) < 2:
            continue
        matrix = np.array(
            [
                [r[n].rating if items[n].keyed == 1 else POINTS + 1 - r[n].rating for n in rows]
                for r in respondents
            ]
        )
        alpha[value] = cronbach_alpha(matrix)
    return alpha


def extreme_statements(doc: Mapping[str, Any], count: int = 8) -> list[dict[str, Any]]:
    """A questionnaire's statements rated furthest from the model's own mean rating (its
    acquiescence, the centre the ipsatized scores use), each with its distance: what it agrees
    or disagrees with most *relative to its habit* (a model that rates everything 3.4 would
    otherwise show only its acquiescence)."""
    centre = doc["likert"]["acquiescence"]
    rows = [i for i in doc.get("items", []) if "rating" in i and "text" in i]
    ranked = sorted(rows, key=lambda i: (-abs(i["rating"] - centre), i["id"]))
    return [{**i, "relative": i["rating"] - centre} for i in ranked[:count]]


KIND = LikertKind()
