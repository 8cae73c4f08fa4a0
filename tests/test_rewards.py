"""Personalized rewards: the Bradley-Terry fits recover planted weights, a new user fits fast,
personal fits beat the shared one on heterogeneous users, and a reward model survives JSON."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from support.rewards import planted_rows, population, write_jsonl

from valuescope import Reward
from valuescope.errors import UsageError
from valuescope.rewards import evaluate, fit_reward, load_preferences
from valuescope.rewards.simulate import simulate_choices, simulate_users
from valuescope.rewards.users import (
    Comparisons,
    FitSettings,
    bradley_terry,
    fit_users,
    user_model_from_dict,
)


def synthetic(users: int = 30, per_user: int = 60, d: int = 6, seed: int = 0) -> tuple:
    """Comparisons of users drawn around three prototypes, choices by Bradley-Terry."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(3, d)) * 1.5
    truth = prototypes[rng.integers(0, 3, users)] + 0.2 * rng.normal(size=(users, d))
    xs, owner = [], []
    for u in range(users):
        x = rng.normal(size=(per_user, d))
        won = rng.random(per_user) < 1 / (1 + np.exp(-x @ truth[u]))
        x[~won] *= -1  # rows are chosen minus rejected
        xs.append(x)
        owner += [u] * per_user
    names = tuple(f"u{u}" for u in range(users))
    return Comparisons(np.vstack(xs), np.array(owner), np.ones(users * per_user), names), truth


def test_bradley_terry_matches_scikit_learns_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    data, _ = synthetic(users=1, per_user=200)
    w = bradley_terry(data.x, precision=2.0)
    # each comparison as two mirrored rows: C = 1 / (2 * precision) gives the same objective
    x = np.vstack([data.x, -data.x])
    y = np.r_[np.ones(len(data.x)), np.zeros(len(data.x))]
    reference = LogisticRegression(C=0.25, fit_intercept=False, tol=1e-10, max_iter=1000)
    np.testing.assert_allclose(w, reference.fit(x, y).coef_[0], atol=1e-5)


@pytest.mark.parametrize("kind", ["low-rank", "mixture"])
def test_personal_fits_recover_each_users_planted_weights(kind: str) -> None:
    data, truth = synthetic()
    model = fit_users(kind, data, FitSettings(rank=3, prototypes=3))
    corr = [np.corrcoef(model.weights(u), truth[i])[0, 1] for i, u in enumerate(data.users)]
    assert np.mean(corr) > 0.9
    shared = fit_users("shared", data).weights(None)
    assert np.mean([np.corrcoef(shared, t)[0, 1] for t in truth]) < np.mean(corr) - 0.1


@pytest.mark.parametrize("kind", ["low-rank", "mixture"])
def test_a_new_user_is_fitted_from_ten_comparisons_in_well_under_a_second(kind: str) -> None:
    data, truth = synthetic()
    model = fit_users(kind, data, FitSettings(rank=3, prototypes=3))
    target = truth[0]
    x = np.random.default_rng(3).normal(size=(10, 6))
    x *= np.where(x @ target > 0, 1.0, -1.0)[:, None]
    began = time.perf_counter()
    beta = model.new_user(x)
    assert time.perf_counter() - began < 0.1
    assert np.corrcoef(beta, target)[0, 1] > 0.8


def test_personal_fits_beat_the_shared_reward_on_unseen_heterogeneous_users() -> None:
    data, _ = synthetic(users=30, seed=0)
    fresh = synthetic(users=50, seed=0)[0]  # the same prototypes; users 30-49 are not in `data`
    unseen = range(30, 50)
    accuracy = {}
    for kind in ("shared", "low-rank", "mixture"):
        model = fit_users(kind, data, FitSettings(rank=3, prototypes=3))
        right = []
        for u in unseen:
            rows = fresh.x[fresh.user == u]
            beta = model.new_user(rows[:20])
            right.append(np.mean(rows[20:] @ beta > 0))
        accuracy[kind] = float(np.mean(right))
    assert accuracy["low-rank"] > accuracy["shared"] + 0.05
    assert accuracy["mixture"] > accuracy["shared"] + 0.05


@pytest.mark.parametrize("kind", ["shared", "low-rank", "mixture"])
def test_a_user_model_round_trips_through_its_dict_exactly(kind: str) -> None:
    import json

    data, _ = synthetic(users=8, per_user=20)
    model = fit_users(kind, data, FitSettings(rank=2, prototypes=2))
    again = user_model_from_dict(json.loads(json.dumps(model.as_dict())))
    for user in (None, *data.users):
        assert np.array_equal(again.weights(user), model.weights(user))
    x = data.x[:10]
    assert np.array_equal(again.new_user(x), model.new_user(x))


@pytest.fixture(scope="module")
def prefs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("rewards")
    return write_jsonl(where / "prefs.jsonl", planted_rows(population(12), 40))


def test_reward_parts_sum_to_the_reward_and_follow_the_users_values(prefs_file: Path) -> None:
    reward = fit_reward(load_preferences(str(prefs_file)), "low-rank", heads="words", unnamed=2)
    assert reward.heads.names[-2:] == ("pc1", "pc2")
    powerful, caring = "control wealth status win", "care friend help fair"
    for user, likes in (("u00", powerful), ("u01", caring)):
        other = caring if likes is powerful else powerful
        reading = reward("q", likes, user)
        assert reading.reward == pytest.approx(sum(reading.parts.values()))
        assert reading.reward > reward("q", other, user).reward


def test_a_saved_reward_gives_identical_rewards(prefs_file: Path, tmp_path: Path) -> None:
    prefs = load_preferences(str(prefs_file))
    for kind in ("shared", "low-rank", "mixture"):
        reward = fit_reward(prefs, kind, heads="words", unnamed=3)
        reward = reward.with_user("late", prefs.take(range(5)))
        reward.save(tmp_path / f"{kind}.json")
        again = Reward.load(tmp_path / f"{kind}.json")
        texts = list(prefs.chosen[:20])
        for user in (None, "u03", "late"):
            a = reward.score(texts, texts, user)
            b = again.score(texts, texts, user)
            assert np.array_equal(a.reward, b.reward) and np.array_equal(a.parts, b.parts)


def test_an_unknown_user_is_refused_with_the_models_users(prefs_file: Path) -> None:
    reward = fit_reward(load_preferences(str(prefs_file)), "mixture", heads="words")
    with pytest.raises(UsageError, match="user 'nobody' is not in the reward model"):
        reward("q", "text", "nobody")


def test_evaluation_fits_absent_users_from_their_shots(tmp_path: Path) -> None:
    rows = planted_rows(population(12), 40, seed=0)
    fit_rows = [r for r in rows if r["user"] < "u08"]
    reward = fit_reward(
        load_preferences(str(write_jsonl(tmp_path / "fit.jsonl", fit_rows))),
        "low-rank",
        heads="words",
    )
    held = planted_rows(population(12), 40, seed=1)
    found = evaluate(reward, load_preferences(str(write_jsonl(tmp_path / "held.jsonl", held))), 10)
    assert set(found.fitted_here) == {"u08", "u09", "u10", "u11"}
    assert found.users["u09"].n == 30 and found.users["u00"].n == 40
    assert found.seen.accuracy > 0.8 and found.unseen.accuracy > 0.7
    low, high = found.overall.ci
    assert low <= found.overall.accuracy <= high


def test_simulated_choices_follow_the_users_weights() -> None:
    values = ("a", "b", "c")
    users = simulate_users(200, values, [("a",), ("c",)], seed=0)
    assert np.allclose(users.weights.sum(axis=1), 1.0)
    leans_a = users.weights[users.component == 0, 0].mean()
    assert leans_a > 0.6 > users.weights[users.component == 1, 0].mean()
    readings = np.random.default_rng(0).normal(size=(40, 3))
    answers = [list(range(p * 4, p * 4 + 4)) for p in range(10)]
    made = simulate_choices(users.weights, readings, answers, range(10), 20, scale=50.0, seed=0)
    z = (readings - readings.mean(0)) / readings.std(0)
    margin = np.einsum("ij,ij->i", z[made.chosen] - z[made.rejected], users.weights[made.user])
    assert np.mean(margin > 0) > 0.95  # a steep Bradley-Terry slope: nearly always the better
