"""User models: Bradley-Terry over value heads, P(a over b) = sigmoid(beta_u . (f(a) - f(b))).

Three fits, named for what they are; each reduces a user to weights `beta_u` over the heads:

- `shared`: one weight vector for everyone (the reward model everyone trains).
- `low-rank`: beta_u = V w_u, a basis V shared by all users (heads x rank) and per-user
  coordinates w_u under a Gaussian population prior whose mean and spread are estimated from
  the users (the maths of LoRe; fitted by alternating Bradley-Terry fits of w and V).
- `mixture`: K prototype weight vectors and each user's posterior over them (EM over users),
  beta_u = sum_k gamma_uk p_k (PAL's users as mixtures of prototypes).

A new user is fitted from a few comparisons against the population: MAP coordinates for
`low-rank`, posterior responsibilities for `mixture`; `shared` gives everyone the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from valuescope.errors import UsageError


@dataclass(frozen=True)
class Comparisons:
    """Feature differences (chosen minus rejected), each row's user index and weight."""

    x: np.ndarray  # (n, heads)
    user: np.ndarray  # (n,) int
    weight: np.ndarray  # (n,)
    users: tuple[str, ...]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def bradley_terry(
    x: np.ndarray,
    weight: np.ndarray | None = None,
    prior_mean: np.ndarray | None = None,
    precision: np.ndarray | float = 1.0,
    start: np.ndarray | None = None,
    iterations: int = 50,
) -> np.ndarray:
    """MAP weights w of sum_i s_i log sigmoid(x_i . w) - 1/2 (w - m)' diag(precision) (w - m),
    by Newton's method with step halving (the loss is convex)."""
    n, d = x.shape
    s = np.ones(n) if weight is None else weight
    m = np.zeros(d) if prior_mean is None else prior_mean
    lam = np.broadcast_to(np.asarray(precision, dtype=float), (d,))
    w = m.copy() if start is None else start.copy()

    def loss(v: np.ndarray) -> float:
        return float(np.sum(s * np.logaddexp(0.0, -(x @ v))) + 0.5 * np.sum(lam * (v - m) ** 2))

    current = loss(w)
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = -x.T @ (s * (1.0 - p)) + lam * (w - m)
        hess = (x * (s * p * (1.0 - p))[:, None]).T @ x + np.diag(lam)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-6:
            trial = w - t * step
            value = loss(trial)
            if value <= current:
                break
            t *= 0.5
        else:
            break
        done = current - value < 1e-10 * (1.0 + abs(current))
        w, current = trial, value
        if done:
            break
    return w


class UserModel(Protocol):
    """A fitted population: weights over heads per known user, for the population, and for a
    new user from a few of their comparisons."""

    @property
    def kind(self) -> str:
        """The fit's registry name."""
        ...

    def weights(self, user: str | None) -> np.ndarray:
        """beta for a user of the fit; None: the population's."""
        ...

    def new_user(self, x: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """beta for someone outside the fit, from their comparisons (f(chosen) - f(rejected))."""
        ...

    @property
    def users(self) -> tuple[str, ...]: ...

    def as_dict(self) -> dict[str, Any]: ...


def _known(table: dict[str, np.ndarray], user: str) -> np.ndarray:
    if user not in table:
        shown = ", ".join(list(table)[:5]) + (", ..." if len(table) > 5 else "")
        raise UsageError(f"user {user!r} is not in the reward model (its users: {shown})")
    return table[user]


@dataclass(frozen=True)
class Shared:
    """One reward for everyone."""

    beta: np.ndarray
    names: tuple[str, ...] = ()
    kind: str = "shared"

    @property
    def users(self) -> tuple[str, ...]:
        return self.names

    def weights(self, user: str | None) -> np.ndarray:
        if user is not None:
            _known(dict.fromkeys(self.names, self.beta), user)
        return self.beta

    def new_user(self, x: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        return self.beta

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "beta": self.beta.tolist(), "users": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Shared:
        return cls(np.asarray(d["beta"], dtype=float), tuple(d.get("users", ())))


@dataclass(frozen=True)
class LowRank:
    """beta_u = V w_u, w_u ~ N(mean, diag(1 / precision))."""

    basis: np.ndarray  # (heads, rank)
    mean: np.ndarray  # (rank,)
    precision: np.ndarray  # (rank,)
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "low-rank"

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self.coords)

    def weights(self, user: str | None) -> np.ndarray:
        w = self.mean if user is None else _known(self.coords, user)
        out: np.ndarray = self.basis @ w
        return out

    def new_user(self, x: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        w = bradley_terry(x @ self.basis, weight, self.mean, self.precision)
        out: np.ndarray = self.basis @ w
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "basis": self.basis.tolist(),
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
            "coords": {u: w.tolist() for u, w in self.coords.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LowRank:
        return cls(
            np.asarray(d["basis"], dtype=float).reshape(len(d["basis"]), -1),
            np.asarray(d["mean"], dtype=float),
            np.asarray(d["precision"], dtype=float),
            {u: np.asarray(w, dtype=float) for u, w in d["coords"].items()},
        )


@dataclass(frozen=True)
class Mixture:
    """K prototypes, their population shares, and each user's posterior over them."""

    prototypes: np.ndarray  # (K, heads)
    shares: np.ndarray  # (K,)
    posterior: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "mixture"

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self.posterior)

    def weights(self, user: str | None) -> np.ndarray:
        gamma = self.shares if user is None else _known(self.posterior, user)
        out: np.ndarray = gamma @ self.prototypes
        return out

    def responsibilities(self, x: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        s = np.ones(len(x)) if weight is None else weight
        loglik = -(np.logaddexp(0.0, -(x @ self.prototypes.T)) * s[:, None]).sum(axis=0)
        logpost = np.log(np.maximum(self.shares, 1e-300)) + loglik
        post = np.exp(logpost - logpost.max())
        out: np.ndarray = post / post.sum()
        return out

    def new_user(self, x: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        out: np.ndarray = self.responsibilities(x, weight) @ self.prototypes
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "prototypes": self.prototypes.tolist(),
            "shares": self.shares.tolist(),
            "posterior": {u: g.tolist() for u, g in self.posterior.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mixture:
        return cls(
            np.asarray(d["prototypes"], dtype=float).reshape(len(d["prototypes"]), -1),
            np.asarray(d["shares"], dtype=float),
            {u: np.asarray(g, dtype=float) for u, g in d["posterior"].items()},
        )


@dataclass(frozen=True)
class FitSettings:
    """Hyperparameters of the fits: ridge precision on population weights, the low-rank
    basis's rank, the mixture's prototypes, and the alternating/EM rounds."""

    precision: float = 1.0
    rank: int = 4
    prototypes: int = 4
    rounds: int = 15
    seed: int = 0


def _per_user(data: Comparisons, settings: FitSettings, shared: np.ndarray) -> np.ndarray:
    """Each user's own ridge Bradley-Terry weights, shrunk toward the shared ones (a start)."""
    return np.stack(
        [
            bradley_terry(data.x[data.user == u], data.weight[data.user == u], shared, 4.0)
            for u in range(len(data.users))
        ]
    )


def fit_shared(data: Comparisons, settings: FitSettings) -> Shared:
    return Shared(bradley_terry(data.x, data.weight, precision=settings.precision), data.users)


def fit_low_rank(data: Comparisons, settings: FitSettings) -> LowRank:
    d = data.x.shape[1]
    rank = max(1, min(settings.rank, d, len(data.users)))
    shared = fit_shared(data, settings).beta
    start = _per_user(data, settings, shared)
    _, _, vt = np.linalg.svd(start, full_matrices=False)
    basis = vt[:rank].T  # (d, rank)
    coords = start @ basis
    mean = coords.mean(axis=0)
    precision = np.full(rank, 1.0)
    for _ in range(settings.rounds):
        coords = np.stack(
            [
                bradley_terry(
                    data.x[data.user == u] @ basis,
                    data.weight[data.user == u],
                    mean,
                    precision,
                    start=coords[u],
                )
                for u in range(len(data.users))
            ]
        )
        mean = coords.mean(axis=0)
        # empirical Bayes: the prior's spread is the users' spread (floored, so one user or
        # identical users still give a proper prior)
        precision = 1.0 / np.maximum(coords.var(axis=0), 1e-2)
        z = (data.x[:, :, None] * coords[data.user][:, None, :]).reshape(len(data.x), -1)
        basis = bradley_terry(
            z, data.weight, precision=settings.precision, start=basis.ravel()
        ).reshape(d, rank)
    names = data.users
    return LowRank(basis, mean, precision, {names[u]: coords[u] for u in range(len(names))})


def fit_mixture(data: Comparisons, settings: FitSettings) -> Mixture:
    from sklearn.cluster import KMeans

    shared = fit_shared(data, settings).beta
    start = _per_user(data, settings, shared)
    k = max(1, min(settings.prototypes, len(data.users)))
    labels = KMeans(k, n_init=4, random_state=settings.seed).fit_predict(start)
    gamma = np.eye(k)[labels] * 0.8 + 0.2 / k
    prototypes = np.zeros((k, data.x.shape[1]))
    shares = gamma.mean(axis=0)
    for _ in range(settings.rounds):
        for j in range(k):  # M step: each prototype a Bradley-Terry fit weighted by gamma
            prototypes[j] = bradley_terry(
                data.x,
                data.weight * gamma[data.user, j],
                precision=settings.precision,
                start=prototypes[j],
            )
        shares = gamma.mean(axis=0)
        model = Mixture(prototypes.copy(), shares)
        gamma = np.stack(  # E step: each user's posterior over the prototypes
            [
                model.responsibilities(data.x[data.user == u], data.weight[data.user == u])
                for u in range(len(data.users))
            ]
        )
    names = data.users
    return Mixture(prototypes, gamma.mean(axis=0), {names[u]: gamma[u] for u in range(len(names))})


FITS: dict[str, Callable[[Comparisons, FitSettings], UserModel]] = {
    "shared": fit_shared,
    "low-rank": fit_low_rank,
    "mixture": fit_mixture,
}


def check_fit(name: str) -> None:
    if name not in FITS:
        raise UsageError(f"--fit {name!r}: unknown fit; choose {', '.join(FITS)}")


def fit_users(name: str, data: Comparisons, settings: FitSettings | None = None) -> UserModel:
    """The fit `name` of `data`. BLAS runs on one thread: its matrices are small, and on a
    busy machine threads fighting over cores made fits twenty times slower."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    check_fit(name)
    with threadpool_limits(1):
        return FITS[name](data, settings or FitSettings())


LOADERS: dict[str, Callable[[dict[str, Any]], UserModel]] = {
    "shared": Shared.from_dict,
    "low-rank": LowRank.from_dict,
    "mixture": Mixture.from_dict,
}


def user_model_from_dict(d: dict[str, Any]) -> UserModel:
    loader = LOADERS.get(str(d.get("kind")))
    if loader is None:
        raise ValueError(f"unknown fit kind {d.get('kind')!r}; known: {', '.join(LOADERS)}")
    return loader(d)
