"""Persona recovery: does the instrument find a value when the model is told to hold it?

For each value v with a persona prompt: delta_v = score_v(persona v) - score_v(no persona).
Top-1 recovery is the share of personas whose own value has the largest delta (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audit import AuditConfig, AuditResult, ProgressHook, run_audit
from .backends import Backend, load_run_backend
from .instrument import load_instrument
from .modelspec import parse_spec
from .persona import load_personas


@dataclass(frozen=True)
class PersonaRecovery:
    """Deltas per persona and value, and how often each persona's own value stands out."""

    method: str
    baseline: AuditResult
    personas: Mapping[str, AuditResult]
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
) -> PersonaRecovery:
    """Audit without a persona, then once per persona; each run resumes under `out`."""
    spec = parse_spec(model)
    inst = load_instrument(instrument)
    personas = load_personas(inst.taxonomy, personas_file)
    backend = backend or load_run_backend(spec, out, backend_options)

    def audit(system: str | None, name: str, chosen: str) -> AuditResult:
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
        return run_audit(
            config, backend=backend, out=out / name if out else None, progress=progress
        )

    baseline = audit(None, "baseline", method)
    runs = {
        value: audit(prompt, f"persona-{value}", baseline.method)
        for value, prompt in personas.items()
    }
    deltas: dict[str, dict[str, float]] = {}
    for value, run in runs.items():
        deltas[value] = {
            v: run.profile.scores[v].score - baseline.profile.scores[v].score
            for v in inst.taxonomy.ids
            if v in run.profile.scores and v in baseline.profile.scores
        }
    return PersonaRecovery(baseline.method, baseline, runs, deltas)
