"""Personalized value rewards: reward(prompt, response, user) from value heads and a user's
weights, fitted from people's choices between two responses.

`load_preferences` reads the comparisons (valuescope's own rows, PRISM, PersonalLLM);
`fit_reward` fits value heads (`heads`) and a user model (`users`: shared, low-rank, mixture);
`Reward` scores responses for a user and saves as JSON; `evaluate` measures agreement with
held-out choices; `simulate` makes a population with known weights to check all of it.
"""

from valuescope.rewards.evaluate import Evaluation, evaluate
from valuescope.rewards.preferences import Preferences, load_preferences
from valuescope.rewards.reward import Reward, RewardReading, Scores, fit_reward
from valuescope.rewards.users import FITS, FitSettings

__all__ = [
    "FITS",
    "Evaluation",
    "FitSettings",
    "Preferences",
    "Reward",
    "RewardReading",
    "Scores",
    "evaluate",
    "fit_reward",
    "load_preferences",
]
