"""The detector table: each detector's quality on the validation texts no detector was fitted on.

Per detector and taxonomy: macro AUC, macro F1 at the detector's own threshold, expected
calibration error, sign accuracy and texts/s (with every value's figures), for lexicon, embed,
embed read sentence by sentence, probe:smollm2 and judge:smollm2; and the regularisation
`heads.choose_c` picks for the embed and lexicon heads, against the constants in the code.

The judge asks 60 log-likelihoods per Schwartz text (10 values x 2 orders x 3 answers), so it
reads only the first `--judge-limit` validation texts (default 60; 20 for the docs' figures):
its figures rest on fewer texts than the others'. Finished entries are kept in the results
file and skipped on a rerun (`--redo` measures them again).

Run: `.venv/bin/python bench/detectors.py [--parts lexicon,embed,...] [--taxonomies ...]
[--judge-limit N]`; about an hour on 2 shared cores with `--judge-limit 20`, most of it
the probe (SmolLM2's vectors and activations, 41 min) and the judge (11 min for 20 texts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.detectors import get_detector
from valuescope.detectors.base import Detector
from valuescope.detectors.heads import C_GRID, choose_c
from valuescope.detectors.labelled import LabelledSet, load_labelled
from valuescope.detectors.quality import measure_quality
from valuescope.detectors.sentences import BySentence
from valuescope.progress import progress_bar

RESULTS = Path(__file__).parent / "results" / "detectors.json"
PARTS = (
    "lexicon",
    "embed",
    "embed-sentence",
    "padded",
    "choose-c",
    "probe-smollm2",
    "judge-smollm2",
)
TAXONOMIES = ("schwartz", "moral-foundations")
WIDE_GRID = (0.001, 0.003, *C_GRID)
"""choose_c's own grid widened below, so a choice at its lower end is seen as one."""


def machine() -> str:
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, CPU only, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def build(part: str, taxonomy: str, hook: Any) -> Detector:
    if part == "embed-sentence":
        return BySentence(get_detector("embed", taxonomy, progress=hook))
    name = part.replace("-smollm2", ":smollm2")
    return get_detector(name, taxonomy, progress=hook)


def measured(part: str, labelled: LabelledSet, judge_limit: int) -> dict[str, Any]:
    """One detector's entry: its quality on the validation part and its set-up time."""
    with progress_bar_stderr() as hook:
        started = time.perf_counter()
        detector = build(part, labelled.taxonomy.name, hook)
        made = time.perf_counter() - started
        if part.startswith("judge"):
            labelled = limited(labelled, judge_limit)
        quality = measure_quality(detector, labelled, "validation", hook)
    entry = quality.as_dict()
    entry["set_up_seconds"] = round(made, 1)
    entry["load_average_1min"] = round(os.getloadavg()[0], 2)
    if part.startswith("judge"):
        entry["limit"] = judge_limit
    return entry


def limited(labelled: LabelledSet, n: int) -> LabelledSet:
    """The labelled set with only its first `n` validation texts (fitting texts kept)."""
    kept, seen = [], 0
    for text in labelled.texts:
        if text.split == "validation":
            seen += 1
            if seen > n:
                continue
        kept.append(text)
    return LabelledSet(labelled.taxonomy, tuple(kept), labelled.source, labelled.sha256)


def padded(labelled: LabelledSet) -> LabelledSet:
    """Every validation text followed by two neutral validation texts (labelled with no value),
    labels unchanged: answers where the value-laden sentence is one of three, as in a model's
    longer answers. The validation texts are single sentences, so read whole or by sentence
    they read alike; padded, the two ways differ."""
    from dataclasses import replace

    held = labelled.part("validation").texts
    neutral = [t.text for t in held if not t.upholds and not t.opposes]
    texts = []
    for i, t in enumerate(held):
        others = [n for n in neutral if n != t.text]
        pad = f"{others[i % len(others)]} {others[(i + 1) % len(others)]}"
        texts.append(replace(t, text=f"{t.text} {pad}"))
    return LabelledSet(labelled.taxonomy, tuple(texts), labelled.source, labelled.sha256)


def padded_entries(labelled: LabelledSet) -> dict[str, Any]:
    """embed, whole and by sentence, on the padded validation texts."""
    found: dict[str, Any] = {}
    longer = padded(labelled)
    for part in ("embed", "embed-sentence"):
        with progress_bar_stderr() as hook:
            detector = build(part, labelled.taxonomy.name, hook)
            found[part] = measure_quality(detector, longer, "validation", hook).as_dict()
    found["neutral_texts"] = len(
        [t for t in labelled.part("validation").texts if not t.upholds and not t.opposes]
    )
    return found


def progress_bar_stderr() -> Any:
    from rich.console import Console

    return progress_bar(Console(stderr=True))


def chosen_c(labelled: LabelledSet) -> dict[str, Any]:
    """`choose_c` rerun on the fitting texts for the embed (and, for Schwartz, lexicon) heads."""
    from valuescope.detectors import embed, lexicon

    fit = labelled.part("fit")
    features: dict[str, Any] = {"embed": (embed.embedder(str(embed.bundled_model_dir())), embed.C)}
    if labelled.taxonomy.name == "schwartz":
        features["lexicon"] = (lexicon.LexiconFeatures(labelled.taxonomy), lexicon.C)
    found = {}
    for name, (make_features, constant) in features.items():
        x = np.asarray(make_features(fit.strings(), None), dtype=float)
        started = time.perf_counter()
        found[name] = {
            "chosen": choose_c(x, fit.labels()),
            "grid": list(C_GRID),
            "chosen_wide": choose_c(x, fit.labels(), WIDE_GRID),
            "wide_grid": list(WIDE_GRID),
            "constant": constant,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return found


def applies(part: str, taxonomy: str) -> bool:
    return not (part == "lexicon" and taxonomy != "schwartz")  # pyvalues: Schwartz only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--taxonomies", default=",".join(TAXONOMIES))
    parser.add_argument("--judge-limit", type=int, default=60)
    parser.add_argument("--redo", action="store_true", help="measure finished entries again")
    args = parser.parse_args()
    report: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    report.update(
        benchmark="value detectors on the validation texts",
        command=".venv/bin/python bench/detectors.py --judge-limit " + str(args.judge_limit),
        machine=machine(),
    )
    for taxonomy in args.taxonomies.split(","):
        labelled = load_labelled(taxonomy)
        section = report.setdefault(taxonomy, {"detectors": {}})
        section["validation_texts"] = len(labelled.part("validation").texts)
        section["fit_texts"] = len(labelled.part("fit").texts)
        for part in args.parts.split(","):
            if not applies(part, taxonomy):
                continue
            if part == "choose-c":
                if args.redo or "choose_c" not in section:
                    section["choose_c"] = chosen_c(labelled)
            elif part == "padded":
                if args.redo or "padded" not in section:
                    section["padded"] = padded_entries(labelled)
            elif args.redo or part not in section["detectors"]:
                print(f"== {taxonomy}: {part}", flush=True)
                section["detectors"][part] = measured(part, labelled, args.judge_limit)
                print(json.dumps(section["detectors"][part]["macro"]), flush=True)
            RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
