"""Reward-guided decoding with the value probe, against activation steering (embedded model).

DESIGN.md names two kinds of steering: adding vectors, and reward-guided decoding. This
measures the second with the value vectors as the reward, on the figures of the steering
issue: at each position the model's next-token distribution p is tilted toward candidates the
probe reads as upholding the value,

    p'(x) = p(x) exp(w (s(x) - s_bar)) / Z    for x among the K most likely tokens,
    p'(x) = p(x) / Z                          for every other token,

a proper distribution over the whole vocabulary, where s(x) is the reading of
the text continued by x (its residual stream at the value's best layer, projected on the
value's unit direction, in class gaps), s_bar the candidates' p-weighted mean reading and Z
the normaliser. Unlike an added vector it changes no activation: where the candidates read
alike, the text is scored as before. Each candidate costs a forward pass up to the probe's
layer, batched per text with a tree attention mask.

Per value the weight w is calibrated on the fluency cost alone (perplexity of the neutral
texts under p', against plain), doubling from 1 until it passes the 10% budget (or halving
until it is within), then two geometric bisections, as `valuescope steer` calibrates a
coefficient. The largest w within budget is then judged on the `schwartz-dilemmas` items that
decide the value, against the same plain run and with the same paired CI and flipped counts as
`steering_bench.py --part success` (whose mean-diff shifts at the same budget are kept beside).

    .venv/bin/python bench/reward_decoding.py                       # all ten values; resumes
    .venv/bin/python bench/reward_decoding.py --values universalism,power

Figures go to bench/results/reward-decoding.json, runs to runs/reward-decoding/.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from steering_common import (
    BUDGET,
    audit_deciding,
    compared,
    load_results,
    mean_diff_at,
    refuse,
    save,
    values_arg,
)

from valuescope import load_backend
from valuescope.backends.base import Loglikelihood, LoglikelihoodRequest
from valuescope.backends.local import LocalBackend
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.steering.operators import perplexity
from valuescope.vectors.extract import LayerVector

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "reward-decoding.json"
STEERING = HERE / "results" / "steering.json"
RUNS = Path("runs/reward-decoding")
TOP_K = 16
START = 1.0
LARGEST = 64.0
SMALLEST = 1 / 64
BISECTIONS = 2


class _Reached(Exception):
    """Raised by the hook at the probe's layer: the layers above it are not needed."""


class ProbeTilted:
    """A white-box backend whose log-likelihoods are those of the probe-tilted distribution.

    The audit's neutral-prompt prior is read from `prior`, the plain model, as under
    `SteeredBackend`, so the tilt's whole effect shows.
    """

    def __init__(self, backend: LocalBackend, reading: LayerVector, layer: int, weight: float,
                 top_k: int = TOP_K) -> None:  # fmt: skip
        self.prior = backend
        self.unit = torch.tensor(reading.unit, dtype=torch.float32)
        self.gap = reading.gap
        self.layer = layer
        self.weight = weight
        self.top_k = top_k

    def __getattr__(self, name: str) -> Any:
        return getattr(self.prior, name)

    @torch.inference_mode()
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Any = None
    ) -> list[Loglikelihood]:
        results = []
        for request in requests:
            results.append(self._one(request))
            if progress is not None:
                progress(1)
        return results

    def _readings(self, ids: list[int], candidates: list[int], at: list[int]) -> torch.Tensor:
        """Probe reading (class gaps) of `ids[:i] + [x]` for each candidate x at position i."""
        n = len(ids)
        total = n + len(candidates)
        mask = torch.zeros((total, total), dtype=torch.bool)
        mask[:n, :n] = torch.tril(torch.ones((n, n), dtype=torch.bool))
        rows = torch.arange(n, total)
        mask[rows, rows] = True
        for row, i in enumerate(at):
            mask[n + row, :i] = True
        seen: dict[str, torch.Tensor] = {}

        def stop(hidden: torch.Tensor) -> torch.Tensor:
            seen["hidden"] = hidden
            raise _Reached

        device = self.prior.model.device
        with self.prior.residual.edit({self.layer: stop}), contextlib.suppress(_Reached):
            self.prior.model(
                input_ids=torch.tensor([ids + candidates], device=device),
                attention_mask=mask[None, None].to(device),
                position_ids=torch.tensor([list(range(n)) + at], device=device),
            )
        return (seen["hidden"][0, n:].float().cpu() @ self.unit) / self.gap

    def _one(self, request: LoglikelihoodRequest) -> Loglikelihood:
        backend = self.prior
        encoded = backend._encode_pair(backend.render(request.context), request.continuation)
        token_lps = self.token_logprobs(
            list(encoded.context) + list(encoded.continuation), len(encoded.context)
        )
        return Loglikelihood(sum(token_lps), tuple(token_lps), False)

    @torch.inference_mode()
    def token_logprobs(self, ids: list[int], start: int) -> list[float]:
        """Tilted log-probability of each of `ids[start:]` given the tokens before it."""
        model = self.prior.model
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits
        logp = torch.log_softmax(logits[0].double().cpu(), dim=-1)
        positions = range(start, len(ids))
        tops = [torch.topk(logp[i - 1], self.top_k).indices.tolist() for i in positions]
        flat = [x for top in tops for x in top]
        at = [i for i, top in zip(positions, tops, strict=True) for _ in top]
        readings = self._readings(ids, flat, at).double()
        token_lps = []
        for k, (i, top) in enumerate(zip(positions, tops, strict=True)):
            p = logp[i - 1, top].exp()
            s = readings[k * self.top_k : (k + 1) * self.top_k]
            mass = float(p.sum())
            tilt = self.weight * (s - float((p * s).sum()) / mass)
            log_z = math.log(float((p * tilt.exp()).sum()) + max(0.0, 1.0 - mass))
            lift = float(tilt[top.index(ids[i])]) if ids[i] in top else 0.0
            token_lps.append(float(logp[i - 1, ids[i]]) + lift - log_z)
        return token_lps


def calibrate(backend: LocalBackend, reading: LayerVector, layer: int, plain_ppl: float,
              entry: dict[str, Any], results: dict[str, Any]) -> tuple[float, float]:  # fmt: skip
    """The largest weight within the fluency budget, and its cost: halving while over it, else
    doubling until over it, then geometric bisections. Every cost is kept in `entry["sweep"]`
    as it is measured, so a rerun skips it."""
    sweep: dict[str, float] = entry.setdefault("sweep", {})

    def cost(weight: float) -> float:
        key = f"{weight:.6g}"
        if key not in sweep:
            started = time.perf_counter()
            tilted = ProbeTilted(backend, reading, layer, weight)
            sweep[key] = perplexity(tilted) / plain_ppl - 1.0  # type: ignore[arg-type]
            print(f"  w={key}: fluency cost {sweep[key]:+.1%} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
            save(results, RESULTS)
        return sweep[key]

    inside, outside = START, math.inf
    while cost(inside) > BUDGET:
        outside, inside = inside, inside / 2
        if inside < SMALLEST:
            refuse(f"even w={SMALLEST:g} costs more than the {BUDGET:.0%} budget")
    while math.isinf(outside) and inside < LARGEST:
        if cost(inside * 2) > BUDGET:
            outside = inside * 2
        else:
            inside *= 2
    for _ in range(BISECTIONS if math.isfinite(outside) else 0):
        middle = math.sqrt(inside * outside)
        if cost(middle) > BUDGET:
            outside = middle
        else:
            inside = middle
    return inside, cost(inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--values",
        default=None,
        help="comma-separated Schwartz values (default: all ten, as in docs/steering.md)",
    )
    args = parser.parse_args()
    instrument = load_dilemmas("schwartz-dilemmas")
    values = values_arg(args.values, instrument.taxonomy.ids)
    backend = load_backend("smollm2")
    if not isinstance(backend, LocalBackend):
        refuse("the embedded model did not load as a local white-box backend")
    results = load_results(RESULTS)
    results["machine"] = f"{os.cpu_count()}-core {platform.machine()}, torch {torch.__version__}"
    settings = {
        "top_k": TOP_K,
        "budget": BUDGET,
        "start": START,
        "bisections": BISECTIONS,
        "reading": "mean-diff direction at the value's best layer",
        "tilted": "the top-k candidates only (a proper distribution)",
    }
    if results.setdefault("settings", settings) != settings:
        refuse(f"{RESULTS} was measured with other settings ({results['settings']}); "
               f"move it and {RUNS} aside to measure again")  # fmt: skip
    command = " ".join(["python bench/reward_decoding.py", *sys.argv[1:]])
    if command not in results.setdefault("commands", []):
        results["commands"].append(command)
    vectors = mean_diff_at(backend, RUNS / "vectors.safetensors")
    stored = load_results(STEERING)
    plain_ppl = perplexity(backend)
    done = results.setdefault("values", {})
    for value in values:
        vv = vectors[value]
        entry = done.setdefault(value, {})
        entry["layer"] = vv.best_layer
        weight, entry["fluency_cost"] = calibrate(
            backend, vv.best, vv.best_layer, plain_ppl, entry, results
        )
        entry["weight"] = weight
        if "instrument" not in entry:
            started = time.perf_counter()
            plain = audit_deciding(backend, instrument, value, RUNS / f"plain-{value}")
            tilted = ProbeTilted(backend, vv.best, vv.best_layer, weight)
            judged = audit_deciding(tilted, instrument, value,
                                    RUNS / f"tilted-{value}-w{weight:.6g}")  # fmt: skip
            entry["instrument"] = compared(plain, judged, value, "tilted")
            entry["seconds"] = round(time.perf_counter() - started, 1)
        steered = stored.get("success", {}).get(value)
        if steered:
            entry["steering_shift"] = steered["instrument"]["shift"]
            entry["steering_cost"] = steered["fluency_cost"]
        save(results, RESULTS)
        shift = entry["instrument"]
        print(f"{value}: w={weight:.3g} cost {entry['fluency_cost']:+.1%} shift "
              f"{shift['shift']:+.3f} {np.round(shift['ci'], 3).tolist()} flipped "
              f"+{shift['flipped_toward']} / -{shift['flipped_away']} (steering "
              f"{entry.get('steering_shift', float('nan')):+.3f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
