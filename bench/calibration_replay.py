"""Calibration with and without replay of the blocks below the swept layer (embedded model).

One value's vectors from its own pairs, then `calibrate` twice on the same backend: with replay
(the default) and with every block run (`replay=False`). Reports both times and whether every
sweep point (layer, coefficient, shift, fluency cost) is the same, bit for bit.
Run: `.venv/bin/python bench/calibration_replay.py [value]` (about 6 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from valuescope import load_white_box
from valuescope.steering.calibration import calibrate
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.extract import extract_vectors


def main(value: str = "achievement") -> None:
    backend = load_white_box("smollm2")
    contrast = load_contrast("schwartz").only(value)
    vectors = extract_vectors(backend, contrast)
    seconds, runs = {}, {}
    for replay in (True, False):
        started = time.perf_counter()
        runs[replay] = calibrate(backend, vectors, contrast, value, replay=replay)
        seconds[replay] = round(time.perf_counter() - started, 1)
    fast, plain = runs[True], runs[False]
    report = {
        "benchmark": "calibration with and without replay",
        "command": f".venv/bin/python bench/calibration_replay.py {value}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "model": backend.name,
        "value": value,
        "layers": sorted({p.layer for p in plain.points}),
        "of_layers": len(backend.residual),
        "sweep_points": len(plain.points),
        "seconds_with_replay": seconds[True],
        "seconds_every_block": seconds[False],
        "speedup": round(seconds[False] / seconds[True], 2),
        "replay_status": backend.residual.replay.status,
        "identical_points": fast.points == plain.points,
        "chosen": {
            "layer": fast.layer,
            "coef": fast.coef,
            "shift": fast.shift,
            "fluency_cost": fast.fluency_cost,
        },
        "points": [asdict(p) for p in fast.points],
    }
    out = Path(__file__).parent / "results" / "calibration_replay.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "points"}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:2])
