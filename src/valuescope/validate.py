"""Persona recovery: does the instrument find a value when the model is told to hold it?

For each value v with a persona prompt: delta_v = score_v(persona v) - score_v(no persona).
Top-1 recovery is the share of personas whose own value has the largest delta (DESIGN.md).
Dilemma and pairwise instruments run here; a Likert questionnaire's persona panel runs with
`valuescope audit --alpha`, which also needs it for Cronbach's alpha.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audit import AuditConfig, AuditResult, ProgressHook, run_audit
from .backends import Backend, load_run_backend
from .errors import UsageError
from .instrument import Instrument, instrument_kind, load_instrument
from .modelspec import parse_spec
from .pairwise import OutcomeSet, PairwiseResult, load_outcomes, run_pairwise
from .persona import load_personas

Run = AuditResult | PairwiseResult


@dataclass(frozen=True)
class PersonaRecovery:
    """Deltas per persona and value, and how often each persona's own value stands out."""

    method: str
    baseline: Run
    personas: Mapping[str, Run]
    deltas: Mapping[str, Mapping[str, float]]

    def rank_of_own(self, value: str) -> int:
        """1 when the persona's own value moved most, 2 when second, ..."""
        row = self.deltas[value]
        ordered = sorted(row, key=lambda v: -row[v])
        return ordered.index(value) + 1

    def top_k(self, k: int) -> float:
        return float(np.mean([self.rank_of_own(v) <= k for v in self.deltas]))

    @property
    def mean_own_delta(self) -> float:
        return float(np.mean([self.deltas[v][v] for v in self.deltas]))

    def as_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "top1": self.top_k(1),
            "top3": self.top_k(3),
            "mean_own_delta": self.mean_own_delta,
            "own_delta": {v: self.deltas[v][v] for v in self.deltas},
            "own_rank": {v: self.rank_of_own(v) for v in self.deltas},
            "deltas": {v: dict(row) for v, row in self.deltas.items()},
        }


def run_validation(
    model: str = "smollm2",
    instrument: str = "schwartz-dilemmas",
    method: str = "auto",
    limit: int | None = None,
    seed: int = 0,
    personas_file: str | None = None,
    backend: Backend | None = None,
    out: Path | None = None,
    progress: ProgressHook | None = None,
    backend_options: Mapping[str, Any] | None = None,
    budget: int | None = None,
) -> PersonaRecovery:
    """Audit without a persona, then once per persona; each run resumes under `out`.

    `budget` (comparisons per run) applies to pairwise instruments, `limit` to dilemmas.
    """
    spec = parse_spec(model)
    kind = instrument_kind(instrument)
    if kind == "likert":
        raise UsageError(
            f"{instrument}: for a likert questionnaire, persona recovery comes with "
            f"`valuescope audit -i {instrument} --alpha` (the same persona panel gives alpha)"
        )
    if kind == "pairwise" and limit is not None:
        raise UsageError("--limit applies to dilemma instruments; use --budget for pairwise ones")
    if kind != "pairwise" and budget is not None:
        raise UsageError("--budget applies to pairwise instruments (e.g. schwartz-outcomes)")
    outcomes: OutcomeSet | None = None
    inst: Instrument | None = None
    if kind == "pairwise":
        outcomes = load_outcomes(instrument)
        taxonomy = outcomes.taxonomy
    else:
        inst = load_instrument(instrument)
        taxonomy = inst.taxonomy
    personas = load_personas(taxonomy, personas_file)
    backend = backend or load_run_backend(spec, out, backend_options)

    def audit(system: str | None, name: str, chosen: str) -> Run:
        where = out / name if out else None

        def labelled(phase: str, done: int, total: int) -> None:
            if progress:  # one bar per run, not one bar summed over all of them
                progress(f"{name} · {phase}", done, total)

        if outcomes is not None:
            return run_pairwise(model, outcomes, backend, system, seed, budget, where, labelled)
        assert inst is not None
        # The baseline also scores the paraphrases, so validation reports every diagnostic.
        config = AuditConfig(
            model=model,
            instrument=instrument,
            method=chosen,
            system=system,
            seed=seed,
            paraphrase=system is None and inst.has_paraphrases,
            limit=limit,
        )
        return run_audit(config, backend=backend, out=where, progress=labelled)

    baseline = audit(None, "baseline", method)
    chosen = "choice" if isinstance(baseline, PairwiseResult) else baseline.method
    runs = {value: audit(prompt, f"persona-{value}", chosen) for value, prompt in personas.items()}
    deltas: dict[str, dict[str, float]] = {}
    for value, run in runs.items():
        deltas[value] = {
            v: run.profile.scores[v].score - baseline.profile.scores[v].score
            for v in taxonomy.ids
            if v in run.profile.scores and v in baseline.profile.scores
        }
    return PersonaRecovery(chosen, baseline, runs, deltas)
