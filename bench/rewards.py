"""Personalized value rewards on a simulated population (a simulation: the users are not people).

The pool: answers of the embedded model (SmolLM2-135M-Instruct) to `schwartz-open` prompts,
sampled once (temperature 1, top-p 0.95) and kept in runs/rewards/pool.jsonl, so reruns reuse
it. The truth: simulated users with value weights from a Dirichlet mixture (three components:
self-enhancement, self-transcendence, openness), whose choices between two answers to a prompt
follow Bradley-Terry on their weights times a detector's z-scored readings of the answers:
`lexicon` (word counts; never seen by the fits) and, as a control, `embed-control` (the heads'
own detector: the fits' ceiling, not a test across detectors); `--truth probe-smollm2` adds the
embedded model's value probes. The rewards: heads from the `embed` detector (ten named heads and
DRM-style unnamed heads).

Measured: held-out accuracy of the three fits (shared, low-rank, mixture) for seen users and for
unseen users fitted from k = 1, 2, 5, 10, 20 of their comparisons, with paired CIs of the
personal fits against the shared reward; recovery of each user's weights (Spearman between the
true weights and the fitted named heads' weights) against k; time to fit a new user from 10
comparisons; rewards scored per second; best-of-8 for two users of opposed values, measured
by the truth's detector (and by the reward's own, to show any gap). `valuescope.steering` has
no best_of_n yet, so the best-of-8 loop is written here: the highest reward among a prompt's 8
pooled answers.

    .venv/bin/python bench/rewards.py --part pool      # generate the answer pool (resumes)
    .venv/bin/python bench/rewards.py                  # everything; reuses the pool
    .venv/bin/python bench/rewards.py --truth lexicon  # one truth (others kept in the JSON)

Figures go to bench/results/rewards.json (docs/results/rewards.md reads them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "rewards"
POOL = RUNS / "pool.jsonl"
RESULTS = ROOT / "bench" / "results" / "rewards.json"
OPEN = ROOT / "src" / "valuescope" / "data" / "instruments" / "schwartz-open.yaml"
PROMPTS = 40
ANSWERS = 8
MAX_TOKENS = 48
FIT_PROMPTS = 20  # the first 20 pool prompts give the comparisons users are fitted on
SEEN, UNSEEN = 100, 60  # simulated users in the fit, and fitted afterwards from k comparisons
PER_USER = 40  # comparisons per user on the fitting prompts, and again on the held-out ones
SCALE = 4.0  # Bradley-Terry slope on the users' utilities (weights . z-scored readings)
SHOTS = (1, 2, 5, 10, 20)
FITS = ("shared", "low-rank", "mixture")
FAVOURED = (
    ("power", "achievement"),
    ("benevolence", "universalism"),
    ("self-direction", "stimulation"),
)
HEADS = "embed"
TRUTHS = {"lexicon": "lexicon", "embed-control": "embed", "probe-smollm2": "probe:smollm2"}
DEFAULT_TRUTHS = ("lexicon", "embed-control")  # probe-smollm2 on request: it reads every answer
# with the embedded model and extracts its vectors first
"""Detectors the simulated choices come from (results key -> detector). `embed-control` is the
heads' own detector: not a test of recovery across detectors, but the fits' ceiling when what
users weigh is exactly what the named heads read."""


def pool_prompts(count: int) -> list[str]:
    """Every third prompt of the instrument, the first `count` of them (a larger pool keeps
    the smaller one's prompts)."""
    items = yaml.safe_load(OPEN.read_text(encoding="utf-8"))["items"]
    return [str(item["text"]) for item in items[::3][:count]]


def make_pool(count: int) -> list[dict[str, Any]]:
    """The pool, generated where missing: 8 sampled answers per prompt, appended per chunk."""
    from valuescope import Chat, GenerationParams, load_backend

    RUNS.mkdir(parents=True, exist_ok=True)
    prompts = pool_prompts(count)
    done = read_pool()
    have = {row["prompt"] for row in done}
    todo = [p for p in prompts if p not in have]
    if todo:
        backend = load_backend("smollm2")
        params = GenerationParams(
            max_new_tokens=MAX_TOKENS, temperature=1.0, top_p=0.95, n=ANSWERS, seed=0
        )
        for start in range(0, len(todo), 4):
            chunk = todo[start : start + 4]
            began = time.perf_counter()
            answers = backend.generate([Chat(p) for p in chunk], params)
            seconds = time.perf_counter() - began
            with POOL.open("a", encoding="utf-8") as handle:
                for prompt, texts in zip(chunk, answers, strict=True):
                    row = {"prompt": prompt, "answers": texts, "seconds": seconds / len(chunk)}
                    handle.write(json.dumps(row) + "\n")
            print(f"pool: {len(have) + start + len(chunk)}/{len(prompts)} prompts", flush=True)
    found = {row["prompt"]: row for row in read_pool()}
    return [found[p] for p in prompts]


def read_pool() -> list[dict[str, Any]]:
    if not POOL.is_file():
        return []
    return [json.loads(line) for line in POOL.read_text(encoding="utf-8").splitlines() if line]


def boot(values: np.ndarray, seed: int = 0, draws: int = 4000) -> dict[str, Any]:
    """Mean and 95% bootstrap interval over the entries (users or prompts)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci": [float(low), float(high)], "n": len(values)}


class Setup:
    """The pool read by both detectors, the simulated users and their comparisons."""

    def __init__(self, pool: list[dict[str, Any]], truth: str) -> None:
        from valuescope.detectors import get_detector
        from valuescope.rewards.reward import reader_for
        from valuescope.rewards.simulate import simulate_choices, simulate_users

        self.prompts = [row["prompt"] for row in pool]
        self.texts = [a for row in pool for a in row["answers"]]
        self.prompt_of = np.repeat(np.arange(len(pool)), ANSWERS)
        self.answers_of = [list(range(p * ANSWERS, (p + 1) * ANSWERS)) for p in range(len(pool))]
        self.fit_prompts = range(FIT_PROMPTS)
        self.test_prompts = range(FIT_PROMPTS, len(pool))
        began = time.perf_counter()
        self.reader = reader_for(HEADS, "schwartz")
        self.reader(self.texts)  # every answer read once; later reads come from the memo
        self.heads_seconds = time.perf_counter() - began
        self.values = self.reader.values
        if truth == HEADS:
            self.truth = self.reader(self.texts).scores
        else:
            self.truth = get_detector(truth, "schwartz").read(self.texts).score
        self.z = (self.truth - self.truth.mean(0)) / np.maximum(self.truth.std(0), 1e-9)
        self.users = simulate_users(SEEN + UNSEEN, self.values, FAVOURED, seed=0)
        w = self.users.weights
        self.train = simulate_choices(
            w, self.truth, self.answers_of, self.fit_prompts, PER_USER, SCALE, 1
        )
        self.test = simulate_choices(
            w, self.truth, self.answers_of, self.test_prompts, PER_USER, SCALE, 2
        )

    def preferences(self, choices: Any, users: range, first: int | None = None) -> Any:
        from valuescope.rewards.preferences import Preferences

        names = self.users.names
        rows = []
        for u in users:
            mine = np.flatnonzero(choices.user == u)[:first]
            rows += [
                (names[u], self.prompts[choices.prompt[i]], self.texts[choices.chosen[i]],
                 self.texts[choices.rejected[i]], 1.0)
                for i in mine
            ]  # fmt: skip
        return Preferences.from_rows(rows, "simulated")


def accuracy_per_user(reward: Any, prefs: Any, beta_of: Any) -> dict[str, float]:
    diffs = reward.features(prefs.chosen) - reward.features(prefs.rejected)
    found = {}
    for user, rows in prefs.by_user().items():
        margin = diffs[rows] @ beta_of(user)
        found[user] = float(np.mean(np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))))
    return found


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def gains(per_kind: dict[str, dict[str, float]], users: list[str]) -> dict[str, Any]:
    shared = np.array([per_kind["shared"][u] for u in users])
    return {
        kind: boot(np.array([per_kind[kind][u] for u in users]) - shared)
        for kind in FITS
        if kind != "shared"
    }


def measure(pool: list[dict[str, Any]], truth: str) -> dict[str, Any]:
    from valuescope.rewards.reward import fit_reward
    from valuescope.rewards.users import FitSettings

    setup = Setup(pool, truth)
    names = setup.users.names
    seen, unseen = range(SEEN), range(SEEN, SEEN + UNSEEN)
    settings = FitSettings()
    oracle = setup.test.p_chosen > 0.5
    results: dict[str, Any] = {
        "simulation": {
            "note": "a simulation: the users are drawn, not people",
            "heads": HEADS,
            "truth": truth,
            "seen_users": SEEN,
            "unseen_users": UNSEEN,
            "comparisons_per_user": PER_USER,
            "scale": SCALE,
            "favoured": [list(f) for f in FAVOURED],
            "prompts": len(pool),
            "fit_prompts": FIT_PROMPTS,
            "answers_per_prompt": ANSWERS,
            "max_new_tokens": MAX_TOKENS,
            "pool_seconds": float(sum(row["seconds"] for row in pool)),
            "settings": {"rank": settings.rank, "prototypes": settings.prototypes, "unnamed": 6},
        },
        "oracle": boot(
            np.array([oracle[setup.test.user == u].mean() for u in range(SEEN + UNSEEN)])
        ),
    }
    test_seen = setup.preferences(setup.test, seen)
    test_unseen = setup.preferences(setup.test, unseen)
    full = setup.preferences(setup.train, seen)
    rewards = {kind: fit_reward(full, kind, HEADS, settings=settings) for kind in FITS}
    heads = rewards["shared"].heads
    results["heads"] = {
        f"pc{i + 1}": {"value": h.value, "r": h.r} for i, h in enumerate(heads.labels)
    }
    # seen users: fitted with k (or all) of their comparisons each
    seen_acc: dict[str, dict[str, Any]] = {kind: {} for kind in FITS}
    seen_gain: dict[str, Any] = {}
    for k in (*SHOTS, PER_USER):
        per_kind = {}
        for kind in FITS:
            reward = (
                rewards[kind]
                if k == PER_USER
                else fit_reward(
                    setup.preferences(setup.train, seen, k), kind, HEADS, settings=settings
                )
            )
            per_kind[kind] = accuracy_per_user(reward, test_seen, reward.weights)
            seen_acc[kind][str(k)] = boot(np.array(list(per_kind[kind].values())))
        seen_gain[str(k)] = gains(per_kind, [names[u] for u in seen])
        print(
            f"seen k={k}: " + ", ".join(f"{m} {seen_acc[m][str(k)]['mean']:.3f}" for m in FITS),
            flush=True,
        )
    results["seen"], results["seen_gain"] = seen_acc, seen_gain
    # unseen users: fitted afterwards from their first k comparisons
    unseen_acc: dict[str, dict[str, Any]] = {kind: {} for kind in FITS}
    unseen_gain: dict[str, Any] = {}
    recovery: dict[str, dict[str, Any]] = {kind: {} for kind in FITS}
    for k in SHOTS:
        shots = setup.preferences(setup.train, unseen, k)
        per_kind = {}
        for kind in FITS:
            reward = rewards[kind]
            diffs = reward.comparisons(shots)
            betas = {
                user: reward.model.new_user(diffs.x[diffs.user == i], diffs.weight[diffs.user == i])
                for i, user in enumerate(diffs.users)
            }
            per_kind[kind] = accuracy_per_user(reward, test_unseen, betas.__getitem__)
            unseen_acc[kind][str(k)] = boot(np.array(list(per_kind[kind].values())))
            planted = setup.users.weights
            named = len(setup.values)
            recovery[kind][str(k)] = boot(
                np.array([spearman(planted[names.index(u)], b[:named]) for u, b in betas.items()])
            )
        unseen_gain[str(k)] = gains(per_kind, [names[u] for u in unseen])
        print(
            f"unseen k={k}: " + ", ".join(f"{m} {unseen_acc[m][str(k)]['mean']:.3f}" for m in FITS),
            flush=True,
        )
    results["unseen"], results["unseen_gain"], results["recovery"] = (
        unseen_acc,
        unseen_gain,
        recovery,
    )
    results["recovery_seen"] = {
        kind: boot(np.array([
            spearman(setup.users.weights[u], rewards[kind].weights(names[u])[: len(setup.values)])
            for u in seen
        ]))
        for kind in FITS
    }  # fmt: skip
    results["speed"] = speed(setup, rewards)
    results["best_of_8"] = best_of_8(setup, rewards["low-rank"])
    return results


def speed(setup: Setup, rewards: dict[str, Any]) -> dict[str, Any]:
    """Fitting a new user from 10 comparisons, and scoring."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    shots = setup.preferences(setup.train, range(SEEN, SEEN + 1), 10)
    found: dict[str, Any] = {"new_user_ms": {}}
    with threadpool_limits(1):
        for kind, reward in rewards.items():
            x = reward.comparisons(shots).x
            times = []
            for _ in range(200):
                began = time.perf_counter()
                reward.model.new_user(x)
                times.append(time.perf_counter() - began)
            found["new_user_ms"][kind] = 1000 * float(np.median(times))
    detector = setup.reader.detector
    texts = list(shots.chosen) + list(shots.rejected)
    began = time.perf_counter()
    detector.features(texts)
    found["read_20_texts_s"] = time.perf_counter() - began
    sample = setup.texts[:256]
    began = time.perf_counter()
    x = detector.features(sample)
    readout_scores = detector.heads.read(x).score
    from valuescope.rewards.heads import Readout

    rewards["low-rank"].heads.features(Readout(x, readout_scores)) @ rewards["low-rank"].weights(
        None
    )
    found["texts_per_s"] = len(sample) / (time.perf_counter() - began)
    many = Readout(np.tile(x, (40, 1)), np.tile(readout_scores, (40, 1)))
    reward = rewards["low-rank"]
    began = time.perf_counter()
    reward.heads.features(many) @ reward.weights(setup.users.names[0])
    found["rewards_per_s_from_features"] = len(many.x) / (time.perf_counter() - began)
    return found


def named(values: tuple[str, ...], row: np.ndarray) -> dict[str, float]:
    return dict(zip(values, map(float, row), strict=True))


def best_of_8(setup: Setup, reward: Any) -> dict[str, Any]:
    """Two new simulated users of opposed values, fitted from 20 comparisons each; for every
    held-out prompt, the answer of the 8 with the highest reward under each user's weights;
    the truth detector's profile of those answers against all 8 (plain sampling's mean)."""
    from valuescope.rewards.simulate import simulate_choices

    values = setup.values
    opposed = {"A": ("power", "achievement"), "B": ("benevolence", "universalism")}
    weights = np.zeros((2, len(values)))
    for row, favoured in enumerate(opposed.values()):
        for value in favoured:
            weights[row, values.index(value)] = 0.5
    made = simulate_choices(weights, setup.truth, setup.answers_of, setup.fit_prompts, 20, SCALE, 7)
    betas = {}
    for row, name in enumerate(opposed):
        mine = np.flatnonzero(made.user == row)
        ch = reward.features([setup.texts[i] for i in made.chosen[mine]])
        rj = reward.features([setup.texts[i] for i in made.rejected[mine]])
        betas[name] = reward.model.new_user(ch - rj)
    features = reward.features(setup.texts)
    picks: dict[str, list[int]] = {"A": [], "B": []}
    for p in setup.test_prompts:
        answers = setup.answers_of[p]
        for name in picks:
            picks[name].append(answers[int(np.argmax(features[answers] @ betas[name]))])
    plain = [i for p in setup.test_prompts for i in setup.answers_of[p]]
    measured = setup.truth  # the truth's detector (lexicon): not the reward's heads
    own = setup.reader(setup.texts).scores  # the reward's detector, to see a gap (hacking)
    out: dict[str, Any] = {
        "weights": {n: named(values, weights[i]) for i, n in enumerate(opposed)},
        "prompts": len(picks["A"]),
        "fitted_from": 20,
        "profile": {
            "plain": named(values, measured[plain].mean(0)),
            **{n: named(values, measured[picks[n]].mean(0)) for n in picks},
        },
        "reward_detector_profile": {
            "plain": named(values, own[plain].mean(0)),
            **{n: named(values, own[picks[n]].mean(0)) for n in picks},
        },
        "b_minus_a": {
            v: boot(measured[picks["B"], j] - measured[picks["A"], j]) for j, v in enumerate(values)
        },
    }  # fmt: skip
    utility = setup.z @ weights.T  # each answer's true utility (z units) for A and B
    plain_mean = np.array([utility[setup.answers_of[p]].mean(0) for p in setup.test_prompts])
    out["true_utility_gain"] = {
        f"{judge}_of_{picker}_picks": boot(utility[picks[picker], i] - plain_mean[:, i])
        for i, judge in enumerate(opposed)
        for picker in picks
    }
    differ = [i for i in range(len(picks["A"])) if picks["A"][i] != picks["B"][i]]
    out["picked_the_same"] = len(picks["A"]) - len(differ)
    first = differ[0] if differ else 0
    out["example"] = {
        "prompt": setup.prompts[setup.test_prompts[first]],
        "A": setup.texts[picks["A"][first]],
        "B": setup.texts[picks["B"][first]],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["pool", "all"], default="all")
    parser.add_argument("--prompts", type=int, default=PROMPTS)
    parser.add_argument(
        "--truth", action="append", choices=list(TRUTHS), help="default: lexicon, embed-control"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pool = make_pool(args.prompts)
    if args.part == "pool":
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for key in args.truth or DEFAULT_TRUTHS:
        print(f"truth: {key}", flush=True)
        results.setdefault("by_truth", {})[key] = measure(pool, TRUTHS[key])
    results["machine"] = {
        "cpu": platform.machine(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"figures: {RESULTS}")


if __name__ == "__main__":
    main()
