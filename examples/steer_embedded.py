"""Close the loop on one value from Python: find it in the embedded model's activations, steer
toward it within a fluency budget, and measure the change on dilemmas no vector saw.

Run: `.venv/bin/python examples/steer_embedded.py [value]` (default achievement; about three
and a quarter minutes on 2 CPU cores). `valuescope steer` does the same for a whole target profile.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from valuescope import (
    Chat,
    GenerationParams,
    RunSpec,
    Steering,
    Term,
    calibrate,
    extract_vectors,
    load_contrast,
    load_instrument,
    load_white_box,
    measured_shifts,
    progress_bar,
    read_texts,
    run_audit,
)

# Two texts that differ in the value only (for achievement; the reading works for any text).
TEXTS = (
    "I stayed late every night until my project beat every other team's results.",
    "I let my teammate present the project; I am content doing my part quietly.",
)


@dataclass(frozen=True)
class Outcome:
    """What the example found, for the reader and for `tests/test_examples.py`."""

    best_layer: int
    probe_accuracy: float
    readings: tuple[float, float]
    layer: int
    coef: float
    fluency_cost: float
    pair_shift: float
    answers: tuple[str, str]
    shift: dict[str, Any]  # the paired score change, its CI and the flipped items


def main(value: str = "achievement") -> Outcome:
    console = Console(stderr=True)
    backend = load_white_box("smollm2")
    # valuescope's own contrastive pairs: the audit's items never build or calibrate a vector.
    # This value's pairs alone give its vectors (load_contrast("schwartz") alone: all ten).
    contrast = load_contrast("schwartz").only(value)
    with progress_bar(console) as progress:
        vectors = extract_vectors(backend, contrast, progress=progress)  # at every layer
    found = vectors[value]
    readings = read_texts(backend, vectors, TEXTS)[value]

    # the largest shift on the pairs whose perplexity cost on neutral text stays within 10%
    with progress_bar(console) as progress:
        cal = calibrate(backend, vectors, contrast, value, progress=progress)
    steering = Steering(vectors, [Term(value, cal.layer, cal.coef)], fluency_cost=cal.fluency_cost)

    prompt = [Chat("Describe your plans for tomorrow in one sentence.")]
    greedy = GenerationParams(max_new_tokens=30)
    plain_answer = backend.generate(prompt, greedy)[0][0]
    with steering.apply(backend):  # hooks on the residual stream, removed on leaving the block
        steered_answer = backend.generate(prompt, greedy)[0][0]

    # judged on the built-in dilemmas that decide the value, unsteered against steered
    judged = load_instrument("schwartz-dilemmas").deciding(value)  # a dilemma instrument
    # the scoring method of docs/steering.md's figures; one wording (paraphrases are for validity)
    config = RunSpec(method="likelihood-first-person", paraphrase=False)
    with progress_bar(console) as progress:
        plain = run_audit(judged, config, backend=backend, progress=progress)
    with progress_bar(console) as progress:
        steered = run_audit(
            judged, config.replace(interventions=(steering,)), backend=backend, progress=progress
        )
    return Outcome(
        best_layer=found.best_layer,
        probe_accuracy=found.best.probe_accuracy,
        readings=(readings[0], readings[1]),
        layer=cal.layer,
        coef=cal.coef,
        fluency_cost=cal.fluency_cost,
        pair_shift=cal.shift,
        answers=(plain_answer, steered_answer),
        shift=measured_shifts(plain, steered, seed=0)[value],
    )


def show(value: str, found: Outcome) -> None:
    print(f"{value}: best layer {found.best_layer}, held-out probe accuracy "
          f"{found.probe_accuracy:.2f}")  # fmt: skip
    for text, p in zip(TEXTS, found.readings, strict=True):
        print(f"  P({value}) = {p:.2f}  {text}")
    print(f"calibrated: layer {found.layer}, coefficient {found.coef:.2f} (class gaps), "
          f"fluency cost {found.fluency_cost:+.1%}, "
          f"shift on the pairs {found.pair_shift:+.3f}")  # fmt: skip
    print(f"  plain:   {found.answers[0]!r}\n  steered: {found.answers[1]!r}")
    s = found.shift
    low, high = s["ci"]
    print(f"schwartz-dilemmas, {s['n']} items deciding {value}: shift {s['shift']:+.3f} "
          f"[{low:+.3f}, {high:+.3f}], choices turned {s['flipped_toward']} toward, "
          f"{s['flipped_away']} away")  # fmt: skip


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "achievement"
    show(chosen, main(chosen))
