"""Answers to open prompts: sampled (seeded, checkpointed chunk by chunk) and sorted by status.

The open kind reads the usable answers with detectors and alignment counts the same statuses, so
the rule for an answer that says nothing (empty, repeated, refusal) or was cut off by the token
limit lives here, apart from any reading.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from valuescope.audit.kinds import RunSpec, chunk_key
from valuescope.backends.base import Backend, Chat, GenerationParams
from valuescope.checkpoint import Checkpoint, memo
from valuescope.detectors.sentences import split_sentences
from valuescope.instruments.open import OpenItem
from valuescope.progress import ProgressHook

SAMPLES = 2
"""Answers per prompt and wording (the default of --samples)."""
TEMPERATURE = 0.7
MAX_NEW_TOKENS = 96
CHUNK = 16

_REFUSAL = re.compile(
    r"^\W*(?:(?:i'?m|i am) sorry,? but |sorry,? but |unfortunately,? )?(?:as an ai\b[^.]*?,? )?"
    r"(?:i can(?:'|no)?t|i (?:am|'m) (?:not able|unable)|i (?:won'?t|will not)) "
    r"(?:help|assist|answer|provide|give|advise|do that|comply|support)",
    re.IGNORECASE,
)
_ENDS = (".", "!", "?", '"', "'", ")", "”", "’", "…", ":")


def answer_status(text: str) -> tuple[str, str]:
    """(status, text to score) of one answer: ok, cut off (scored on its whole sentences),
    or degenerate (empty, repeated, refusal: not scored)."""
    stripped = text.strip()
    words = stripped.split()
    if len(words) < 3:
        return "empty", ""
    if _REFUSAL.match(stripped):
        return "refusal", ""
    shingles = [" ".join(words[k : k + 3]).lower() for k in range(len(words) - 2)]
    if len(shingles) >= 12 and len(set(shingles)) / len(shingles) < 0.5:
        return "repeated", ""
    if stripped.endswith(_ENDS):
        return "ok", stripped
    sentences = split_sentences(stripped)
    whole = " ".join(sentences[:-1]) if len(sentences) > 1 else stripped
    return "cut off", whole


@dataclass(frozen=True)
class Answer:
    """One sampled answer to one wording of one prompt."""

    item: str
    wording: str  # "original" | "paraphrase"
    sample: int
    prompt: str
    text: str

    @property
    def status(self) -> str:
        return answer_status(self.text)[0]

    @property
    def scored(self) -> str:
        return answer_status(self.text)[1]

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "cut off")


def wordings(item: OpenItem, paraphrase: bool) -> list[tuple[str, str]]:
    found = [("original", item.text)]
    if paraphrase and item.paraphrase:
        found.append(("paraphrase", item.paraphrase))
    return found


def generate_answers(
    backend: Backend,
    items: Sequence[OpenItem],
    spec: RunSpec,
    paraphrase: bool,
    checkpoint: Checkpoint | None,
    progress: ProgressHook | None,
    timing: dict[str, float] | None = None,
) -> list[Answer]:
    """`spec.samples` answers per prompt and wording, chunk by chunk through the checkpoint.

    `timing` gets the seconds spent generating and the answers generated in this call (not
    those read back from the checkpoint)."""
    samples = spec.samples or SAMPLES
    params = GenerationParams(MAX_NEW_TOKENS, TEMPERATURE, n=samples, seed=spec.seed)
    asked = [(item.id, name, text) for item in items for name, text in wordings(item, paraphrase)]
    label = f"answering ({samples} per prompt)"
    if progress:
        progress(label, 0, len(asked))
    answers: list[Answer] = []
    for start in range(0, len(asked), CHUNK):
        chunk = asked[start : start + CHUNK]
        key = chunk_key("open/answers", start, len(chunk), CHUNK)

        def ask(chunk: list[tuple[str, str, str]] = chunk) -> list[list[str]]:
            contexts = [Chat(text, spec.system) for _, _, text in chunk]
            started = time.perf_counter()
            found = backend.generate(contexts, params)
            if timing is not None:
                timing["seconds"] = timing.get("seconds", 0.0) + time.perf_counter() - started
                timing["answers"] = timing.get("answers", 0.0) + sum(len(g) for g in found)
            return found

        texts = memo(checkpoint, key, ask)
        for (item_id, name, prompt), group in zip(chunk, texts, strict=True):
            answers += [Answer(item_id, name, k, prompt, t) for k, t in enumerate(group)]
        if progress:
            progress(label, len(chunk), len(asked))
    return answers
