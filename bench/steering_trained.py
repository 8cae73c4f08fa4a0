"""The steering bench's parts for trained directions (`vectors --method optimized`): measured
like `success` at the trained layer, and trained again at other strengths (`radius`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from steering_common import extract, pairs_of, part_success, save, trained_file

from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.extract import VectorSet
from valuescope.vectors.optimize import Training


def trained_entry(vectors: VectorSet, value: str) -> dict[str, Any]:
    vv = vectors[value]
    return {"layer": vv.best_layer, "accuracy": vv.best.accuracy,
            **vectors.extra["optimized"][value]}  # fmt: skip


def trained_alone(backend: Any, value: str, results: dict[str, Any], runs: Path) -> VectorSet:
    """One value's trained direction, trained on that value's pairs alone (the same split and
    layer choice as in the all-values file): what `--values` trains when there is no
    all-values file, so a slow model can be measured a few values at a time."""
    path = runs / "vectors-optimized" / f"{value}.safetensors"
    done = results.setdefault("vectors_optimized_alone", {})
    if value in done and path.exists():
        return VectorSet.load(path)
    vectors = extract(backend, pairs_of(value), "optimized")
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors.save(path)
    done[value] = {"seconds": round(vectors.seconds, 1), "training": vectors.extra["training"],
                   **trained_entry(vectors, value)}  # fmt: skip
    save(results)
    return vectors


def part_optimized(backend: Any, values: list[str], results: dict[str, Any], runs: Path,
                   gated: bool = False, subset: bool = False) -> None:  # fmt: skip
    """Trained directions (`--method optimized`): extraction time, then the success measurement
    calibrated at the trained layer only, against mean-diff's shift from `success`; with
    `gated`, the same with gated steering (`gated_optimized`). With `subset` (`--values`, or
    any model but the embedded one) and no all-values file yet, each value is trained alone
    (`vectors_optimized_alone`) and measured before the next is trained."""
    path = runs / "vectors-optimized.safetensors"
    whole: VectorSet | None = None
    if "vectors_optimized" in results and path.exists():
        whole = VectorSet.load(path)
    elif not subset:
        whole = extract(backend, load_contrast("schwartz"), "optimized")
        whole.save(path)
        results["vectors_optimized"] = {
            "seconds": round(whole.seconds, 1),
            "training": whole.extra["training"],
            "values": {v: trained_entry(whole, v) for v in whole.values},
        }
        save(results)
    for value in values:
        trained = whole if whole is not None else trained_alone(backend, value, results, runs)
        path = trained_file(results, runs, value)
        part_success(backend, trained, [value], results, "success_optimized",
                     runs / "optimized", best_only=True, vec_path=path)  # fmt: skip
        if gated:
            part_success(backend, trained, [value], results, "gated_optimized",
                         runs / "gated-optimized", mode="gated", best_only=True,
                         vec_path=path)  # fmt: skip
    for value in values:
        ours = results["success_optimized"][value]
        before = results.get("success", {}).get(value)
        if before:
            ours["mean_diff_shift"] = before["instrument"]["shift"]
    save(results)


RADII = (0.25, 0.5, 2.0, 4.0)


def part_radius(backend: Any, values: list[str], results: dict[str, Any], runs: Path) -> None:
    """Does training the direction nearer the strength it is used at (calibration lands at 2-8
    class gaps) move the instrument more? Each radius trains the value alone (same split)."""
    done = results.setdefault("radius", {})
    for value in values:
        sub = pairs_of(value)
        for radius in RADII:
            key = f"{value}@{radius:g}"
            if key in done:
                continue
            started = time.perf_counter()
            vectors = extract(backend, sub, "optimized", Training(radius=radius))
            scratch = f"radius_{key}"  # part_success saves as it goes; moved below
            part_success(backend, vectors, [value], results, scratch, runs / "radius" / key,
                         best_only=True)  # fmt: skip
            measured = results.pop(scratch)[value]
            done[key] = {"value": value, "radius": radius, **measured,
                         "training": vectors.extra["optimized"][value],
                         "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
            save(results)
            print("radius", key, json.dumps(done[key]), flush=True)
