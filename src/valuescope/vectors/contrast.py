"""Contrastive data for value vectors: one situation, two stances toward one value.

Each pair keeps the context fixed and changes only whether the answer upholds the value, so a
difference of activations points at the value and not at the topic. The pairs are rendered as
chat exchanges: the user asks about a recent choice (one of several question templates) and the
model's answer tells the situation and then the stance, in the first person, which is where the
audit reads values too. They are written
for valuescope and kept apart from every audit instrument (a test checks for shared wording):
vectors are never built from the items they are judged on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from valuescope.backends.base import Chat
from valuescope.errors import UsageError
from valuescope.instruments.document import nonblank, validated
from valuescope.instruments.taxonomy import Taxonomy, check_value, load_taxonomy
from valuescope.yamlfile import read_yaml

QUESTIONS = (
    "Tell me about a choice you made recently.",
    "What happened, and what did you do?",
    "Describe a situation you were in and how you handled it.",
    "Tell me about something that happened to you this week.",
)
"""User-turn templates: each pair is asked with one, chosen by its position, so the question
wording varies across pairs but never within one. The situation opens the model's answer and
the stance completes it; only the stance's tokens are read."""


class _PairSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    value: str
    context: str
    uphold: str
    oppose: str

    _texts = field_validator("context", "uphold", "oppose")(nonblank)


@dataclass(frozen=True)
class ContrastPair:
    """A situation and two answers: one upholds `value`, the other does not."""

    id: str
    value: str
    context: str
    uphold: str
    oppose: str
    question: str = QUESTIONS[0]

    @property
    def chat(self) -> Chat:
        """The exchange up to the stance: the question, and the answer opened by the situation."""
        return Chat(self.question, answer_prefix=self.context)

    def answers(self) -> tuple[str, str]:
        """The two continuations of `chat`: upholding first."""
        return " " + self.uphold, " " + self.oppose


@dataclass(frozen=True)
class ContrastSet:
    """Validated contrastive pairs on one taxonomy."""

    name: str
    taxonomy: Taxonomy
    pairs: tuple[ContrastPair, ...]
    sha256: str
    source: str

    @property
    def values(self) -> list[str]:
        """The taxonomy's values that have pairs, in taxonomy order."""
        return [v for v in self.taxonomy.ids if any(p.value == v for p in self.pairs)]

    def of(self, value: str) -> list[ContrastPair]:
        return [p for p in self.pairs if p.value == value]

    def only(self, values: str | Sequence[str]) -> ContrastSet:
        """The pairs of `values` alone: extracting one value's vectors need not read the
        others' pairs (each value's directions and probes come from its own pairs only).
        Its `sha256` names the file and the values kept, so it never passes for the whole set."""
        chosen = [values] if isinstance(values, str) else list(values)
        unknown = [v for v in chosen if v not in self.values]
        if unknown or not chosen:
            wrong = f"no contrastive pairs for {', '.join(unknown)}" if unknown else "no value"
            raise UsageError(f"{self.source}: {wrong}; it has pairs for {', '.join(self.values)}")
        kept = tuple(p for p in self.pairs if p.value in chosen)
        named = ",".join(sorted(set(chosen)))  # however they were listed: the same pairs
        digest = hashlib.sha256(f"{self.sha256}:{named}".encode()).hexdigest()
        return replace(self, pairs=kept, sha256=digest)

    def split(self, value: str, held_out: float, seed: int) -> tuple[list[ContrastPair], ...]:
        """Train and held-out pairs of `value`, a seeded shuffle (same every run)."""
        pairs = self.of(value)
        rng = random.Random(f"{seed}:{value}")
        order = list(range(len(pairs)))
        rng.shuffle(order)
        n_held = max(1, round(held_out * len(pairs)))
        held = sorted(order[:n_held])
        train = sorted(order[n_held:])
        return [pairs[i] for i in train], [pairs[i] for i in held]


def builtin_contrast_path(taxonomy: str) -> Path:
    return Path(str(resources.files("valuescope") / "data" / "contrast" / f"{taxonomy}.yaml"))


def load_contrast(name_or_path: str | Path = "schwartz") -> ContrastSet:
    """The built-in pairs of a taxonomy (`schwartz`, `moral-foundations`) or a YAML file of
    `{name, taxonomy, pairs: [{id, value, context, uphold, oppose}]}`."""
    key = str(name_or_path)
    path = builtin_contrast_path(key)
    if not path.is_file():
        path = Path(key).expanduser()
    if not path.is_file():
        raise UsageError(
            f"no contrastive data {key!r}: built-in sets are schwartz and moral-foundations; "
            "or give a YAML file with name, taxonomy and pairs"
        )
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("pairs"), list) or not doc["pairs"]:
        raise UsageError(f"{path}: expected a mapping with taxonomy and a non-empty list 'pairs'")
    unknown = set(doc) - {"name", "taxonomy", "pairs", "description"}
    if unknown:
        raise UsageError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    if not doc.get("taxonomy"):
        raise UsageError(f"{path}: field 'taxonomy' is missing; name a built-in or a YAML path")
    tax = load_taxonomy(str(doc["taxonomy"]))
    pairs: list[ContrastPair] = []
    seen: set[str] = set()
    for index, entry in enumerate(doc["pairs"]):
        pair_id = entry.get("id") if isinstance(entry, dict) else None
        label = f"pair {pair_id!r}" if pair_id else f"pair #{index + 1}"
        schema = validated(_PairSchema, entry, path, label)
        check_value(tax, schema.value, f"{path}: {label}: field 'value'")
        if schema.id in seen:
            raise UsageError(f"{path}: pair {schema.id!r}: duplicate id; ids must be unique")
        seen.add(schema.id)
        question = QUESTIONS[len(pairs) % len(QUESTIONS)]
        pairs.append(
            ContrastPair(
                schema.id, schema.value, schema.context, schema.uphold, schema.oppose, question
            )
        )
    for value in tax.ids:
        if 0 < sum(p.value == value for p in pairs) < 4:
            raise UsageError(
                f"{path}: value {value!r} has fewer than 4 pairs; a vector needs at least 4 "
                "(some to fit, some to check)"
            )
    name = str(doc.get("name") or path.stem)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ContrastSet(name, tax, tuple(pairs), digest, str(path))
