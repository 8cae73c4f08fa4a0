"""The steering bench's diagnostics of why a shift is small: other layers (`layers`), simply
asking (`persona`), and other readings of the same items (`summed`, `choice`)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from steering_common import (
    BUDGET,
    SETTINGS,
    audit_deciding,
    compared,
    entry_steering,
    refuse,
    reproduces,
    save,
    trained_file,
)

from valuescope.audit.profile import value_evidence
from valuescope.audit.scoring import ChoiceMethod, ItemResult, LikelihoodMethod, Method
from valuescope.audit.shifts import result_shifts
from valuescope.cache import file_sha256
from valuescope.instruments.dilemma import Dilemmas, load_dilemmas
from valuescope.instruments.personas import load_personas
from valuescope.steering.operators import (
    SteeredBackend,
    Steering,
    Term,
    fluency_cost,
    perplexity,
    preference,
)
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.extract import VectorSet


def part_layers(backend: Any, vectors: VectorSet, values: list[str], results: dict[str, Any]
                ) -> None:  # fmt: skip
    """Is the budget better spent at another layer, or spread over several?

    screen: every layer at coefficient 0.5, the shift of the preference on valuescope's own
    pairs and the fluency cost; frontier: the best layer alone, a band of five layers around it
    and all inner layers, coefficients rising by sqrt(2) (a set of k layers starts at
    1/8/sqrt(k) per layer) until the cost passes 15%; the shift reached within the 10% budget.
    """
    contrast = load_contrast("schwartz")
    plain_ppl = perplexity(backend)
    done = results.setdefault("layers", {})
    for value in values:
        if value in done:
            continue
        started = time.perf_counter()
        pairs = contrast.of(value)
        base = preference(backend, pairs)
        best = vectors[value].best_layer
        n = vectors.num_layers

        def measure(layers: list[int], coef: float, value: str = value, pairs: Any = pairs,
                    base: float = base) -> dict[str, float]:  # fmt: skip
            steering = Steering(vectors, [Term(value, k, coef) for k in layers])
            return {"coef": coef, "cost": fluency_cost(backend, steering, plain_ppl),
                    "shift": preference(backend, pairs, steering) - base}  # fmt: skip

        screen = {k: measure([k], 0.5) for k in range(n)}
        frontier: dict[str, Any] = {}
        sets = {"single": [best], "band5": [k for k in range(best - 2, best + 3) if 0 <= k < n],
                "all inner": list(range(1, n - 1))}  # fmt: skip
        for name, layers in sets.items():
            coef = 0.125 / len(layers) ** 0.5
            points = []
            while True:
                points.append(measure(layers, coef))
                if points[-1]["cost"] > 0.15 or len(points) >= 12:
                    break
                coef *= 2**0.5
            within = [p["shift"] for p in points if p["cost"] <= BUDGET]
            frontier[name] = {"layers": layers, "points": points,
                              "best_within_budget": max(within, default=0.0)}  # fmt: skip
        done[value] = {"best_layer": best, "screen": screen, "frontier": frontier,
                       "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        save(results)
        print("layers", value, {k: round(v["best_within_budget"], 4) for k, v in frontier.items()},
              flush=True)  # fmt: skip


def part_persona(backend: Any, values: list[str], results: dict[str, Any], runs: Path) -> None:
    """Against simply asking: each value's built-in persona prompt as the system prompt, on
    the same deciding items, method and plain run as `success`, with the same paired CI and
    flipped counts. Asking changes no activation, so it has no fluency cost; the steering
    shifts measured so far are stored beside it."""
    instrument = load_dilemmas("schwartz-dilemmas")
    personas = load_personas(instrument.taxonomy)
    done = results.setdefault("persona", {})
    for value in values:
        prompt_sha = hashlib.sha256(personas[value].encode()).hexdigest()
        entry = done.get(value)
        if entry and entry.get("prompt_sha256", prompt_sha) != prompt_sha:
            refuse(f"{SETTINGS.results} [persona][{value}] was measured with another persona "
                   f"prompt than data/personas.yaml's; remove the entry and "
                   f"{runs / 'persona' / value} to measure it again")  # fmt: skip
        if entry is None or "prompt_sha256" not in entry:
            plain = audit_deciding(backend, instrument, value, runs / "success" / f"plain-{value}")
            started = time.perf_counter()
            asked = audit_deciding(backend, instrument, value, runs / "persona" / value,
                                   system=personas[value])  # fmt: skip
            seconds = round(time.perf_counter() - started, 1)
            shift = compared(plain, asked, value, "asked")
            if entry is None:
                entry = done[value] = {"instrument": shift, "seconds": seconds}
            else:  # measured before the prompt's hash was kept: checked by its resumed runs
                reproduces(f"[persona][{value}]", shift["shift"], entry["instrument"]["shift"],
                           f"remove the entry and {runs / 'persona' / value} to measure it "
                           f"again", "the kept runs gave")  # fmt: skip
                entry["instrument"] = shift
            entry["prompt_sha256"] = prompt_sha
        for key in ("success", "success_optimized"):
            steered = results.get(key, {}).get(value)
            if steered:
                entry[f"{key}_shift"] = steered["instrument"]["shift"]
        save(results)
        print("persona", value, json.dumps(entry), flush=True)


READINGS: dict[str, Method] = {
    "summed": LikelihoodMethod(first_person=True, per_token=False),
    "choice": ChoiceMethod(),
}


def distance(instrument: Dilemmas, results: list[ItemResult], value: str) -> float:
    """Mean distance of the value's item scores from 0.5 in one run: how decided the items
    are under a reading (near 0: the reading barely tells the options apart)."""
    taxonomy, items = instrument.taxonomy, instrument.items
    scores = np.asarray(value_evidence(taxonomy, items, results)[value])
    return float(np.mean(np.abs(scores - 0.5)))


def part_reread(backend: Any, values: list[str], results: dict[str, Any], runs: Path,
                key: str) -> None:  # fmt: skip
    """A diagnostic of the score, not of the steering: each value's persona prompt, and the
    trained direction at the layer and coefficient `optimized` calibrated (where it has
    measured the value), on the same deciding items, read another way:
    - `summed`: summed PMI (each option's sequence-level log-odds) instead of the audit's
      per-token PMI; summed scores sit near 0 or 1, so is the small per-token shift the
      normalisation's doing?
    - `choice`: the options listed and labelled, the model's letter read in both orders
      (`--method choice`): does a model that sees both options move more?
    Every entry keeps what it was read with (the persona prompt's and the vector file's
    SHA-256, layer, coefficient), the plain run's mean distance from 0.5 (how decided the
    items are) and, for `choice`, its mean probability of the option listed first (position
    bias, which the two orders cancel); a kept entry missing any of these is read again and
    must reproduce its stored shifts."""
    instrument = load_dilemmas("schwartz-dilemmas")
    taxonomy = instrument.taxonomy
    personas = load_personas(taxonomy)
    method = READINGS[key]
    done = results.setdefault(key, {})
    for value in values:
        entry = results.get("success_optimized", {}).get(value)
        persona = results.get("persona", {}).get(value)
        # The audit's own plain run (kept by `success` and `persona`), for its distance from 0.5.
        audited = audit_deciding(backend, instrument, value, runs / "success" / f"plain-{value}")
        prompt_sha = hashlib.sha256(personas[value].encode()).hexdigest()
        if persona and persona.get("prompt_sha256") != prompt_sha:
            persona = None  # measured with another prompt: no per-token figure to set beside it
        per_token = {"steered": entry["instrument"]["shift"] if entry else None,
                     "persona": persona["instrument"]["shift"] if persona else None,
                     "plain_distance": distance(instrument, audited.results, value)}  # fmt: skip
        path = trained_file(results, runs, value) if entry else None
        vectors = VectorSet.load(path) if path else None
        identity = {
            "layer": entry["layer"] if entry else None,
            "coef": entry["coef"] if entry else None,
            "vectors_sha256": file_sha256(path) if path else None,
            "persona_sha256": prompt_sha,
        }
        kept = done.get(value)
        if kept is not None:
            if (kept["layer"], kept["coef"]) != (identity["layer"], identity["coef"]) and (
                kept["layer"] is not None
            ):
                now = (f"has layer {identity['layer']}, coef {identity['coef']:g}" if entry
                       else f"has no entry for {value}")  # fmt: skip
                refuse(f"{SETTINGS.results} [{key}][{value}] was read at layer "
                       f"{kept['layer']}, coef {kept['coef']:g}, but optimized now {now}; remove "
                       f"the entry to read it again")  # fmt: skip
            for name in ("vectors_sha256", "persona_sha256"):
                if kept.get(name) and kept[name] != identity[name]:
                    refuse(f"{SETTINGS.results} [{key}][{value}] was read with another "
                           f"{'vector file' if name[0] == 'v' else 'persona prompt'}; remove "
                           f"the entry to read it again")  # fmt: skip
            if all(k in kept for k in (*identity, "plain_distance", "plain_first_shown")) and (
                kept["steered"] is not None or vectors is None
            ):
                kept["per_token"] = per_token
                save(results)
                continue
        started = time.perf_counter()
        items = instrument.deciding(value).items
        plain = method(backend, items, "original", None)
        asked = method(backend, items, "original", personas[value])
        steered = None
        if vectors is not None and entry is not None:
            steering = entry_steering(vectors, value, entry, "add")
            steered = method(SteeredBackend(backend, steering), items, "original", None)
        shown = (
            [o.p[o.order[0]] for r in plain for o in r.orders]
            if isinstance(method, ChoiceMethod)
            else None
        )
        moved = {name: result_shifts(taxonomy, items, plain, run, 0)[value]
                 for name, run in (("steered", steered), ("persona", asked)) if run}  # fmt: skip
        fresh: dict[str, Any] = {
            **identity,
            "plain": float(np.mean(value_evidence(taxonomy, items, plain)[value])),
            "plain_distance": distance(instrument, plain, value),
            "plain_first_shown": float(np.mean(shown)) if shown else None,
            "steered": moved.get("steered"),
            "persona": moved["persona"],
            "per_token": per_token,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if kept is not None:  # read before these fields were kept: its shifts must reproduce
            for name in ("steered", "persona"):
                if kept.get(name) is None:
                    continue
                new = fresh[name]["shift"] if fresh[name] else None
                reproduces(f"[{key}][{value}][{name}]", new, kept[name]["shift"],
                           "remove the entry to read it again", "read again it gave")  # fmt: skip
        done[value] = fresh
        save(results)
        print(key, value, json.dumps(fresh), flush=True)
