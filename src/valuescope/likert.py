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

import hashlib
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .backends.base import Backend, Chat, GenerationParams, LoglikelihoodRequest, Progress
from .checkpoint import Checkpoint
from .errors import UsageError
from .instrument import _nonblank, read_document, validated
from .profile import Profile, ValueScore, bootstrap_ci
from .taxonomy import Taxonomy, check_value

POINTS = 6
ANCHORS = ("not like me at all", "not like me", "a little like me", "somewhat like me",
           "like me", "very much like me")  # fmt: skip
CHUNK = 16
LikertMethod = Literal["scale", "generate"]


class _LikertSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str
    value: str
    keyed: Literal[1, -1] = 1

    _text = field_validator("text")(_nonblank)


@dataclass(frozen=True)
class LikertItem:
    """A statement keyed to a value: `keyed=1` agreeing upholds it, `-1` agreeing opposes it."""

    id: str
    text: str
    value: str
    keyed: int


@dataclass(frozen=True)
class Questionnaire:
    """A validated Likert instrument on one taxonomy."""

    name: str
    taxonomy: Taxonomy
    items: tuple[LikertItem, ...]
    sha256: str
    source: str
    kind: str = "likert"


def load_questionnaire(name_or_path: str | Path, taxonomy: str | None = None) -> Questionnaire:
    """A built-in questionnaire by name (`schwartz-portraits`) or one from a YAML file.

    >>> len(load_questionnaire("schwartz-portraits").items)
    80
    """
    path, raw, doc, tax = read_document(name_or_path, taxonomy)
    if doc["kind"] != "likert":
        raise UsageError(f"{path}: is a {doc['kind']} instrument, not a likert questionnaire")
    items: list[LikertItem] = []
    seen: set[str] = set()
    for index, entry in enumerate(doc["items"]):
        item_id = entry.get("id") if isinstance(entry, dict) else None
        label = f"item {item_id!r}" if item_id else f"item #{index + 1}"
        if not isinstance(entry, dict):
            raise UsageError(f"{path}: {label}: expected a mapping with id, text, value, keyed")
        schema = validated(_LikertSchema, entry, path, label)
        check_value(tax, schema.value, f"{path}: {label}: field 'value'")
        if schema.id in seen:
            raise UsageError(f"{path}: item {schema.id!r}: duplicate id; ids must be unique")
        seen.add(schema.id)
        items.append(LikertItem(schema.id, schema.text, schema.value, schema.keyed))
    name = str(doc.get("name") or path.stem)
    return Questionnaire(name, tax, tuple(items), hashlib.sha256(raw).hexdigest(), str(path))


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

    model: str
    model_name: str
    questionnaire: Questionnaire
    method: str
    system: str | None
    seed: int
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


ProgressHook = Callable[[str, int, int], None]


def run_likert(
    model: str,
    questionnaire: Questionnaire,
    backend: Backend,
    method: str = "auto",
    system: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    panel: Mapping[str, str] | None = None,
    out: Path | None = None,
    progress: ProgressHook | None = None,
) -> LikertResult:
    """Rate the questionnaire (resumable under `out`); with `panel`, alpha over its prompts.

    `panel` maps respondent names to system prompts (e.g. the built-in personas); the
    unprompted model (or `system`) is always one of the respondents.
    """
    started = time.perf_counter()
    chosen = _method(backend, method)
    items = questionnaire.items[: limit or len(questionnaire.items)]
    checkpoint = None
    if out is not None:
        fingerprint = {
            "model": backend.spec.raw,
            "instrument": questionnaire.sha256,
            "method": chosen,
            "system": system,
            "seed": seed,
            "items": len(items),
            "panel": sorted(panel or {}),
        }
        checkpoint = Checkpoint(out, fingerprint)

    def rated(name: str, prompt: str | None) -> list[Rating]:
        label = f"{chosen} · {name}"
        if progress:
            progress(label, 0, len(items))
        done: list[Rating] = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            key = f"likert/{name}/{start}"
            saved = checkpoint.get(key) if checkpoint else None
            if saved is not None:
                part = [Rating(r["id"], tuple(r["forward"]), tuple(r["reverse"])) for r in saved]
                if progress:
                    progress(label, len(part), len(items))
            else:

                def report(n: int) -> None:
                    if progress:
                        progress(label, n, len(items))

                part = rate(backend, chunk, prompt, chosen, seed, report)
                if checkpoint:
                    checkpoint.put(
                        key,
                        [
                            {"id": r.item_id, "forward": r.forward, "reverse": r.reverse}
                            for r in part
                        ],
                    )
            done.extend(part)
        return done

    ratings = rated("model", system)
    profile, raw, ipsatized, acquiescence, consistency = analyse(questionnaire, ratings, seed)
    alpha = None
    recovery = None
    if panel:
        panel_ratings = {name: rated(name, prompt) for name, prompt in panel.items()}
        matrix_rows = [ratings, *panel_ratings.values()]
        recovery = {}
        for name, rows_of in panel_ratings.items():
            if name not in questionnaire.taxonomy:
                continue
            persona = analyse(questionnaire, rows_of, seed)[2]
            deltas = {v: persona[v].score - ipsatized[v].score for v in ipsatized}
            order = sorted(deltas, key=lambda v: -deltas[v])
            if name in deltas:
                recovery[name] = {"delta": deltas[name], "rank": float(order.index(name) + 1)}
        alpha = {}
        for value in questionnaire.taxonomy.ids:
            rows = [n for n, i in enumerate(items) if i.value == value]
            if len(rows) < 2:
                continue
            matrix = np.array(
                [
                    [r[n].rating if items[n].keyed == 1 else POINTS + 1 - r[n].rating for n in rows]
                    for r in matrix_rows
                ]
            )
            alpha[value] = cronbach_alpha(matrix)
    return LikertResult(
        model=model,
        model_name=backend.name,
        questionnaire=questionnaire,
        method=chosen,
        system=system,
        seed=seed,
        ratings=ratings,
        profile=profile,
        raw=raw,
        ipsatized=ipsatized,
        acquiescence=acquiescence,
        direction_consistency=consistency,
        alpha=alpha,
        panel=list(panel or {}),
        recovery=recovery,
        seconds=time.perf_counter() - started,
    )


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
