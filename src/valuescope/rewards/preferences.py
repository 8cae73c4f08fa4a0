"""Preference data: who preferred which of two responses to a prompt.

One row per comparison, `user, prompt, chosen, rejected` and an optional positive `weight`, from
a CSV/TSV, JSON Lines or JSON-list file, or a Hugging Face dataset
(`hf:<dataset id or local folder>[#config][@split]`). Two public layouts are read as they are:

- PRISM (`HannahRoseKirk/prism-alignment`): its `utterances` table (one row per model response,
  `user_id, conversation_id, turn, user_prompt, model_response, score`) or its `conversations`
  table (`user_id, conversation_id, conversation_history`). Within one user's turn, every two
  responses with different scores make a comparison, the higher score chosen.
- PersonalLLM (`namkoong-lab/PersonalLLM`): `prompt`, `response_1..8` and a score column
  `response_<i>_<reward model>` per reward model. It has no people: each reward model is a user,
  preferring its best-scored response to its worst.

Rows with an empty field, or the same text chosen and rejected, are dropped and counted; a
missing column or a weight that is not a positive number is an error naming the file, the row
and the column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.errors import UsageError
from valuescope.instruments.tables import HUB, Rows, read_rows

FIELDS = ("user", "prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Preferences:
    """Comparisons in file order, with what was dropped on loading (reason -> rows)."""

    users: tuple[str, ...]
    prompts: tuple[str, ...]
    chosen: tuple[str, ...]
    rejected: tuple[str, ...]
    weights: np.ndarray
    source: str = ""
    layout: str = "preferences"
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.users)
        if (
            not len(self.prompts)
            == len(self.chosen)
            == len(self.rejected)
            == n
            == len(self.weights)
        ):
            raise ValueError("preferences of unequal lengths")

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: Sequence[int] | np.ndarray) -> Preferences:
        index = [int(i) for i in rows]
        return Preferences(
            tuple(self.users[i] for i in index),
            tuple(self.prompts[i] for i in index),
            tuple(self.chosen[i] for i in index),
            tuple(self.rejected[i] for i in index),
            self.weights[index] if index else np.zeros(0),
            self.source,
            self.layout,
            dict(self.dropped),
        )

    def by_user(self) -> dict[str, list[int]]:
        """Each user's rows, users in order of first appearance."""
        found: dict[str, list[int]] = {}
        for i, user in enumerate(self.users):
            found.setdefault(user, []).append(i)
        return found

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[str, str, str, str, float]], source: str = ""
    ) -> Preferences:
        """From (user, prompt, chosen, rejected, weight) tuples already checked."""
        found = list(rows)
        return cls(
            tuple(r[0] for r in found),
            tuple(r[1] for r in found),
            tuple(r[2] for r in found),
            tuple(r[3] for r in found),
            np.array([r[4] for r in found], dtype=float),
            source,
        )


def _text(cell: Any) -> str:
    """A cell as text; a chat (a list of {role, content}) gives its last message's content."""
    if cell is None:
        return ""
    if isinstance(cell, list) and cell and isinstance(cell[-1], dict):
        return str(cell[-1].get("content") or "").strip()
    if isinstance(cell, float) and cell != cell:  # pandas' empty cell
        return ""
    return str(cell).strip()


class _Collect:
    """Comparisons accepted so far and rows dropped by reason."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, float]] = []
        self.dropped: dict[str, int] = {}

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def add(self, user: str, prompt: str, chosen: str, rejected: str, weight: float) -> None:
        if not (user and prompt and chosen and rejected):
            self.drop("an empty field")
        elif chosen == rejected:
            self.drop("the same text chosen and rejected")
        else:
            self.rows.append((user, prompt, chosen, rejected, weight))


def _weight(cell: Any, where: str) -> float:
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        return 1.0
    try:
        weight = float(cell)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: column 'weight': {cell!r} is not a number") from None
    if not weight > 0 or weight == float("inf"):
        raise UsageError(f"{where}: column 'weight': {cell!r} must be a positive number")
    return weight


def _native(rows: Rows, location: str, out: _Collect) -> None:
    for number, row in enumerate(rows, start=1):
        missing = [c for c in FIELDS if c not in row]
        if missing:
            raise UsageError(f"{location}: row {number}: no column {missing[0]!r}")
        where = f"{location}: row {number}"
        user, prompt, chosen, rejected = (_text(row[c]) for c in FIELDS)
        out.add(user, prompt, chosen, rejected, _weight(row.get("weight"), where))


def _scored_pairs(
    groups: dict[tuple[str, str], list[tuple[str, float]]],
    prompts: dict[tuple[str, str], str],
    out: _Collect,
) -> None:
    """Every two responses of a user's turn with different scores: the higher one chosen."""
    for key, responses in groups.items():
        user = key[0]
        for a in range(len(responses)):
            for b in range(a + 1, len(responses)):
                (ta, sa), (tb, sb) = responses[a], responses[b]
                if sa == sb:
                    out.drop("a tie in score")
                    continue
                chosen, rejected = (ta, tb) if sa > sb else (tb, ta)
                out.add(user, prompts[key], chosen, rejected, 1.0)


def _score(cell: Any) -> float | None:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return None if value != value else value


def _prism_utterances(rows: Rows, location: str, out: _Collect) -> None:
    groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
    prompts: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (_text(row.get("user_id")), f"{row.get('conversation_id')}/{row.get('turn')}")
        score = _score(row.get("score"))
        if score is None:
            out.drop("a response without a score")
            continue
        groups.setdefault(key, []).append((_text(row.get("model_response")), score))
        prompts[key] = _text(row.get("user_prompt"))
    _scored_pairs(groups, prompts, out)


def _prism_conversations(rows: Rows, location: str, out: _Collect) -> None:
    flat: Rows = []
    for number, row in enumerate(rows, start=1):
        history = row.get("conversation_history")
        if not isinstance(history, list):
            raise UsageError(
                f"{location}: row {number}: column 'conversation_history': expected a list of turns"
            )
        prompt_of: dict[Any, str] = {}
        for entry in history:
            if isinstance(entry, dict) and entry.get("role") == "user":
                prompt_of[entry.get("turn")] = _text(entry.get("content"))
        for entry in history:
            if isinstance(entry, dict) and entry.get("role") == "model":
                flat.append(
                    {
                        "user_id": row.get("user_id"),
                        "conversation_id": row.get("conversation_id"),
                        "turn": entry.get("turn"),
                        "user_prompt": prompt_of.get(entry.get("turn"), ""),
                        "model_response": entry.get("content"),
                        "score": entry.get("score"),
                    }
                )
    _prism_utterances(flat, location, out)


_PERSONAL_SCORE = re.compile(r"response_1_(.+)")


def _personalllm(rows: Rows, location: str, out: _Collect) -> None:
    models = [
        m.group(1)
        for c in rows[0]
        if (m := _PERSONAL_SCORE.fullmatch(str(c))) and m.group(1) != "model"
    ]
    if not models:
        raise UsageError(
            f"{location}: a PersonalLLM table needs score columns response_<i>_<reward model>"
        )
    count = sum(1 for c in rows[0] if re.fullmatch(r"response_\d+", str(c)))
    for row in rows:
        prompt = _text(row.get("prompt"))
        texts = [_text(row.get(f"response_{i}")) for i in range(1, count + 1)]
        for model in models:
            scored = [
                (s, t)
                for i, t in enumerate(texts, start=1)
                if t and (s := _score(row.get(f"response_{i}_{model}"))) is not None
            ]
            if len(scored) < 2 or max(scored)[0] == min(scored)[0]:
                out.drop("a prompt without two differently scored responses")
                continue
            out.add(model, prompt, max(scored)[1], min(scored)[1], 1.0)


@dataclass(frozen=True)
class Layout:
    """A table layout recognised by its columns, and how its rows become comparisons."""

    name: str
    marker: frozenset[str]
    read: Callable[[Rows, str, _Collect], None]


LAYOUTS = (
    Layout("preferences", frozenset(FIELDS), _native),
    Layout(
        "prism-utterances",
        frozenset({"user_id", "user_prompt", "model_response", "score"}),
        _prism_utterances,
    ),
    Layout(
        "prism-conversations", frozenset({"user_id", "conversation_history"}), _prism_conversations
    ),
    Layout("personalllm", frozenset({"prompt", "response_1", "response_2"}), _personalllm),
)


def _layout(columns: set[str], location: str) -> Layout:
    for layout in LAYOUTS:
        if layout.marker <= columns:
            return layout
    raise UsageError(
        f"{location}: not preference data: needs the columns user, prompt, chosen, rejected "
        f"(optional weight), or PRISM's or PersonalLLM's; it has {', '.join(sorted(columns))}"
    )


def _hub_config_rows(reference: str) -> Rows:
    """Rows of `<dataset>#<config>[@split]` (PRISM keeps its tables as configs)."""
    from valuescope.cache import cache_dir

    name, _, rest = reference.partition("#")
    config, _, split = rest.partition("@")
    try:
        import datasets
    except ImportError:
        raise UsageError(
            "loading hub datasets needs the datasets package: pip install 'valuescope[hub]'"
        ) from None
    datasets.logging.set_verbosity_error()
    try:
        loaded = datasets.load_dataset(name, config, cache_dir=str(cache_dir() / "datasets"))
    except Exception as exc:  # datasets raises many types (network, missing repo, format)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"hf:{reference}: could not load the dataset ({message})") from None
    splits = list(loaded)
    split = split or (splits[0] if len(splits) == 1 else "train" if "train" in splits else "")
    if split not in loaded:
        raise UsageError(f"hf:{reference}: no split {split!r}; it has {', '.join(splits)}")
    return [dict(row) for row in loaded[split]]


def load_preferences(location: str) -> Preferences:
    """Comparisons from a file or hub dataset in any of the `LAYOUTS`.

    >>> prefs = load_preferences("prefs.jsonl")  # doctest: +SKIP
    >>> len(prefs), prefs.dropped  # doctest: +SKIP
    """
    location = str(location)
    if location.startswith(HUB) and "#" in location:
        rows = _hub_config_rows(location[len(HUB) :])
    else:
        if not location.startswith(HUB) and not Path(location).expanduser().is_file():
            raise UsageError(f"--preferences {location!r}: no such file")
        rows, _ = read_rows(location)
    if not rows:
        raise UsageError(f"{location}: has no rows")
    layout = _layout({str(c) for c in rows[0]}, location)
    out = _Collect()
    layout.read(rows, location, out)
    if not out.rows:
        reasons = ", ".join(f"{n} for {r}" for r, n in out.dropped.items()) or "none read"
        raise UsageError(f"{location}: no usable comparison ({reasons})")
    found = Preferences.from_rows(out.rows, location)
    return Preferences(
        found.users,
        found.prompts,
        found.chosen,
        found.rejected,
        found.weights,
        location,
        layout.name,
        dict(sorted(out.dropped.items())),
    )
