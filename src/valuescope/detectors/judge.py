"""`judge:<model spec>`: any backend as a judge of values in text.

For each text and value the judge reads a rubric (the value's definition; does the text uphold
it, oppose it, or neither) and its three answers are scored from their log-likelihoods, with
the options listed in both orders and the two readings averaged, so the order they are shown
in does not decide. A backend without log-likelihoods (a chat server without logprobs) is
sampled instead: the share of sampled answers naming each option. The judge is not calibrated
on labelled text (its quality is measured on it, like every detector's): relevance is
1 - P(neither) and the score P(upholds) - P(opposes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from valuescope.backends import load_backend
from valuescope.backends.base import Backend, Chat, GenerationParams, LoglikelihoodRequest
from valuescope.detectors.base import Readings
from valuescope.errors import BackendCapabilityError
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook

OPTIONS = ("upholds", "opposes", "neither")
SYSTEM = "You rate texts for the values they express. Answer with one word."
SAMPLES = 5


def rubric(text: str, label: str, definition: str, order: Sequence[str]) -> str:
    listed = ", ".join(f'"{o}"' for o in order[:-1]) + f' or "{order[-1]}"'
    return (
        f"Text: {text}\n\nValue: {label} ({definition})\n\n"
        f"Does the text uphold this value, oppose it, or neither? Answer {listed}."
    )


@dataclass
class Judge:
    """A model judging each text against each value of a taxonomy."""

    backend: Backend
    taxonomy: Taxonomy
    name: str
    threshold: float = 0.5
    _sampled: bool = field(default=False, init=False)

    def _requests(self, texts: Sequence[str]) -> list[tuple[Chat, tuple[str, ...]]]:
        orders = (OPTIONS, tuple(reversed(OPTIONS)))
        return [
            (Chat(rubric(t, v.label, v.definition, order), system=SYSTEM), order)
            for t in texts
            for v in self.taxonomy.values
            for order in orders
        ]

    def _likelihood(self, chats: list[Chat], progress: ProgressHook | None) -> np.ndarray:
        requests = [LoglikelihoodRequest(c, o) for c in chats for o in OPTIONS]

        def report(n: int) -> None:
            if progress:
                progress("judging texts", n, len(requests))

        scores = self.backend.loglikelihood(requests, report)
        logp = np.array([s.logprob for s in scores]).reshape(len(chats), len(OPTIONS))
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        out: np.ndarray = p / p.sum(axis=1, keepdims=True)
        return out

    def _sampling(self, chats: list[Chat], progress: ProgressHook | None) -> np.ndarray:
        params = GenerationParams(max_new_tokens=4, temperature=1.0, n=SAMPLES)

        def report(n: int) -> None:
            if progress:
                progress("judging texts (sampled)", n, len(chats))

        answers = self.backend.generate(chats, params, report)
        out = np.full((len(chats), len(OPTIONS)), 1e-3)
        for i, samples in enumerate(answers):
            for a in samples:
                word = a.strip().strip('".').lower()
                for k, o in enumerate(OPTIONS):
                    if word.startswith(o[:5]):
                        out[i, k] += 1
        normalised: np.ndarray = out / out.sum(axis=1, keepdims=True)
        return normalised

    def read(self, texts: Sequence[str], progress: ProgressHook | None = None) -> Readings:
        pairs = self._requests(texts)
        chats = [c for c, _ in pairs]
        if not self._sampled:
            try:
                p = self._likelihood(chats, progress)
            except BackendCapabilityError:
                self._sampled = True
        if self._sampled:
            p = self._sampling(chats, progress)
        values = len(self.taxonomy.ids)
        p = p.reshape(len(texts), values, 2, len(OPTIONS)).mean(axis=2)  # both orders
        relevance = 1.0 - p[..., 2]
        score = p[..., 0] - p[..., 1]
        return Readings(self.taxonomy.ids, relevance, score, np.full(values, self.threshold))


def make(arg: str | None, taxonomy: Taxonomy, **options: Any) -> Judge:
    assert arg is not None  # the registry refuses `judge` without a model
    backend = options.get("backend") or load_backend(arg)
    return Judge(backend, taxonomy, f"judge:{arg}")
