"""`Reward`: reward(prompt, response, user) from value heads and a user's weights, kept as JSON.

>>> from valuescope import Reward
>>> reward = Reward.load("runs/reward.json")  # doctest: +SKIP
>>> reading = reward("Take the job?", "Take it: your family needs you.", "u17")  # doctest: +SKIP
>>> reading.reward, reading.parts["benevolence"]  # doctest: +SKIP

The reward is beta_u . f(response): f the z-scored heads (`heads.ValueHeads`), beta_u the user's
weights (`users`); its parts are the terms of that sum, one per head. The heads read the
response alone (a comparison's two responses answer one prompt); the prompt is part of the
signature so that decoding strategies and heads that read it share one interface.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.errors import UsageError
from valuescope.progress import ProgressHook
from valuescope.rewards.heads import Reader, Readout, ValueHeads, fit_value_heads
from valuescope.rewards.preferences import Preferences
from valuescope.rewards.users import (
    Comparisons,
    FitSettings,
    UserModel,
    check_fit,
    fit_users,
    user_model_from_dict,
)

SCHEMA = "valuescope.reward/1"
_READERS: dict[tuple[str, str], Reader] = {}


def reader_for(detector: str, taxonomy: str, progress: ProgressHook | None = None) -> Reader:
    """The one reader per detector and taxonomy (a detector loads once per process)."""
    key = (detector, taxonomy)
    if key not in _READERS:
        _READERS[key] = Reader(detector, taxonomy, progress)
    return _READERS[key]


@dataclass(frozen=True)
class RewardReading:
    """One response's reward and its per-head parts (they sum to the reward)."""

    reward: float
    parts: dict[str, float]


@dataclass(frozen=True)
class Scores:
    """Rewards of n responses and their parts (n x heads, columns named by `names`)."""

    reward: np.ndarray
    parts: np.ndarray
    names: tuple[str, ...]


@dataclass(frozen=True)
class Reward:
    """Value heads, a fitted user model, and users added after the fit."""

    heads: ValueHeads
    model: UserModel
    added: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def users(self) -> tuple[str, ...]:
        return (*self.model.users, *(u for u in self.added if u not in self.model.users))

    def weights(self, user: str | None = None) -> np.ndarray:
        """The user's weights over the heads; None: the population's."""
        if user is not None and user in self.added:
            return self.added[user]
        return self.model.weights(user)

    def read(self, texts: Sequence[str], progress: ProgressHook | None = None) -> Readout:
        return reader_for(self.heads.detector, self.heads.taxonomy)(texts, progress)

    def features(self, texts: Sequence[str], progress: ProgressHook | None = None) -> np.ndarray:
        return self.heads.features(self.read(texts, progress))

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        user: str | None = None,
        progress: ProgressHook | None = None,
    ) -> Scores:
        """Rewards of `responses` (each answering the prompt at its position) for `user`."""
        if len(prompts) != len(responses):
            raise UsageError(f"{len(prompts)} prompts for {len(responses)} responses")
        beta = self.weights(user)
        parts = self.features(list(responses), progress) * beta
        return Scores(parts.sum(axis=1), parts, self.heads.names)

    def __call__(self, prompt: str, response: str, user: str | None = None) -> RewardReading:
        found = self.score([prompt], [response], user)
        parts = dict(zip(found.names, (float(p) for p in found.parts[0]), strict=True))
        return RewardReading(float(found.reward[0]), parts)

    def comparisons(self, preferences: Preferences) -> Comparisons:
        """The preferences as head differences, users indexed in order of appearance."""
        diffs = self.features(preferences.chosen) - self.features(preferences.rejected)
        return _indexed(diffs, preferences)

    def with_user(self, user: str, preferences: Preferences) -> Reward:
        """A reward that also knows `user`, fitted from `preferences` (theirs) against the
        population; the fit itself is unchanged."""
        found = self.comparisons(preferences)
        beta = self.model.new_user(found.x, found.weight)
        return replace(self, added={**self.added, user: beta})

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "heads": self.heads.as_dict(),
            "fit": self.model.as_dict(),
            "added": {u: b.tolist() for u, b in self.added.items()},
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.as_dict()), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Reward:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"--model {str(path)!r}: no such file") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not a reward model file ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else None
            raise UsageError(
                f"{path}: not a reward model (schema {found!r}, expected {SCHEMA!r}); make one "
                "with `valuescope rewards fit`"
            )
        try:
            return cls(
                ValueHeads.from_dict(doc["heads"]),
                user_model_from_dict(doc["fit"]),
                {u: np.asarray(b, dtype=float) for u, b in doc.get("added", {}).items()},
                dict(doc.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"{path}: a damaged reward model ({type(exc).__name__}: {exc})"
            ) from None


def _indexed(diffs: np.ndarray, preferences: Preferences) -> Comparisons:
    names = tuple(preferences.by_user())
    index = {u: i for i, u in enumerate(names)}
    user = np.array([index[u] for u in preferences.users], dtype=int)
    return Comparisons(diffs, user, np.asarray(preferences.weights, dtype=float), names)


def fit_reward(
    preferences: Preferences,
    fit: str = "low-rank",
    heads: str = "embed",
    taxonomy: str = "schwartz",
    unnamed: int = 6,
    settings: FitSettings | None = None,
    progress: ProgressHook | None = None,
) -> Reward:
    """A reward fitted on `preferences`: value heads from the detector `heads` (named) and the
    comparisons (unnamed), then the user model `fit` (shared, low-rank or mixture).

    >>> reward = fit_reward(load_preferences("prefs.jsonl"), fit="mixture")  # doctest: +SKIP
    """
    check_fit(fit)
    settings = settings or FitSettings()
    reader = reader_for(heads, taxonomy, progress)
    chosen = reader(preferences.chosen, progress)
    rejected = reader(preferences.rejected, progress)
    value_heads = fit_value_heads(heads, taxonomy, reader.values, chosen, rejected, unnamed)
    diffs = value_heads.features(chosen) - value_heads.features(rejected)
    model = fit_users(fit, _indexed(diffs, preferences), settings)
    provenance = {
        "preferences": preferences.source,
        "layout": preferences.layout,
        "comparisons": len(preferences),
        "dropped": preferences.dropped,
        "settings": {
            "fit": fit,
            "unnamed": unnamed,
            **{k: getattr(settings, k) for k in settings.__dataclass_fields__},
        },
    }
    return Reward(value_heads, model, {}, provenance)
