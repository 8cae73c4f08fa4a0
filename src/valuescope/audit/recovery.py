"""Persona recovery: does the instrument find a value when the model is told to hold it?

For each value v with a persona prompt: delta_v = score_v(persona v) - score_v(no persona).
Top-1 recovery is the share of personas whose own value has the largest delta (DESIGN.md).
Every kind runs through the same path: one run without a persona, one per persona, each in
its own folder (so each resumes), compared on the kind's `recovery_scores`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.audit.kinds import RunResult, RunSpec
from valuescope.progress import ProgressHook


@dataclass(frozen=True)
class PersonaRecovery:
    """Deltas per persona and value, and how often each persona's own value stands out."""

    method: str
    deltas: Mapping[str, Mapping[str, float]]
    baseline: RunResult | None = None
    personas: Mapping[str, RunResult] = field(default_factory=dict)

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


def persona_recovery(
    method: str,
    baseline: Mapping[str, float],
    personas: Mapping[str, Mapping[str, float]],
) -> PersonaRecovery:
    """Deltas of each persona's scores against the baseline's, over the values both have;
    personas whose own value has no score are left out (they cannot be recovered)."""
    deltas: dict[str, dict[str, float]] = {}
    for value, scores in personas.items():
        row = {v: scores[v] - baseline[v] for v in baseline if v in scores}
        if value in row:
            deltas[value] = row
    return PersonaRecovery(method, deltas)


def run_validation(
    instrument: Any = "schwartz-dilemmas",
    spec: RunSpec | None = None,
    personas_file: str | Path | None = None,
    *,
    backend: Any = None,
    out: Path | None = None,
    progress: ProgressHook | None = None,
    backend_options: Mapping[str, Any] | None = None,
) -> PersonaRecovery:
    """Run `instrument` without a persona, then once per persona; each run resumes under
    `out/baseline` and `out/persona-<value>`.

    The baseline scores second wordings where the items have them, so validation reports every
    diagnostic; persona runs use the method the baseline chose.
    """
    from valuescope.audit.run import prepare, run_prepared
    from valuescope.instruments.personas import load_personas

    spec = spec or RunSpec()
    if spec.system is not None:
        from valuescope.errors import UsageError

        raise UsageError("persona recovery sets the system prompt itself; leave out --system")
    baseline_folder = out / "baseline" if out else None
    ready = prepare(instrument, spec, backend=backend, out=out, backend_options=backend_options,
                    run_folder=baseline_folder)  # fmt: skip
    prompts = load_personas(ready.instrument.taxonomy, personas_file)

    def audit(system: str | None, name: str, method: str) -> RunResult:
        def labelled(phase: str, done: int, total: int) -> None:
            if progress:  # one bar per run, not one bar summed over all of them
                progress(f"{name} · {phase}", done, total)

        where = out / name if out else None
        changes: dict[str, Any] = {"system": system, "method": method}
        if system is not None and "paraphrase" in ready.kind.honours:
            changes["paraphrase"] = False
        return run_prepared(ready, ready.spec.replace(**changes), where, labelled)

    baseline = audit(None, "baseline", spec.method)
    runs = {v: audit(prompt, f"persona-{v}", baseline.method) for v, prompt in prompts.items()}
    found = persona_recovery(
        baseline.method,
        baseline.recovery_scores(),
        {v: run.recovery_scores() for v, run in runs.items()},
    )
    return PersonaRecovery(found.method, found.deltas, baseline, runs)
