"""`--align user:M.json:U`: decoding for one user under their personalized reward."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from support.rewards import planted_rows, population, write_jsonl

from valuescope.backends.base import Context, GenerationParams
from valuescope.errors import UsageError
from valuescope.rewards import fit_reward, load_preferences
from valuescope.steering.rewards import load_user_reward
from valuescope.steering.strategies import best_of_n


class ScriptedSamples:
    """A NAMED FAKE black-box backend: its k-th sample of any prompt is `answers[k]`, so the
    test knows which answer each user's reward should keep."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.spec = type("Spec", (), {"raw": "scripted"})()

    @property
    def name(self) -> str:
        return "scripted"

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Any = None
    ) -> list[list[str]]:
        return [[self.answers[k % len(self.answers)] for k in range(params.n)] for _ in prompts]


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("align-user")
    prefs = load_preferences(str(write_jsonl(where / "p.jsonl", planted_rows(population(12), 40))))
    path = where / "model.json"
    fit_reward(prefs, "low-rank", heads="words").save(path)
    return path


def test_each_users_reward_keeps_the_answer_that_user_prefers(reward_file: Path) -> None:
    powerful, caring = "control wealth status win the plan", "care friend help fair the plan"
    backend = ScriptedSamples(["the plan is simple", powerful, caring, "maybe we could try"])
    # u00 leans to power, u01 to care (support.rewards.population)
    for user, wanted in (("u00", powerful), ("u01", caring)):
        reward = load_user_reward(f"user:{reward_file}:{user}")
        assert reward.name == f"user:{reward_file}:{user}"
        chosen = best_of_n(backend, ["What should I do?"] * 2, reward, n=4)  # type: ignore[arg-type]
        assert chosen == [wanted, wanted]


def test_a_user_the_model_does_not_know_is_one_line(reward_file: Path) -> None:
    with pytest.raises(UsageError, match=r"knows no user 'nobody'"):
        load_user_reward(f"user:{reward_file}:nobody")
    with pytest.raises(UsageError, match=r"expected user:MODEL.json:USER"):
        load_user_reward("user:only-a-path.json")
