"""Child of bench/audit_speed.py, run inside bench/.venv-lmeval: times lm-eval's HFLM.

Reads {"model_dir", "batch_size", "requests": [[context, continuation], ...]} from argv[1],
writes {"seconds", "loglikelihoods"} to argv[2]. Not part of the valuescope package.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(torch.get_num_threads())
    lm = HFLM(
        pretrained=spec["model_dir"], batch_size=spec["batch_size"], device="cpu", dtype="float32"
    )
    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=(ctx, cont), idx=i)
        for i, (ctx, cont) in enumerate(spec["requests"])
    ]
    lm.loglikelihood(instances[:4], disable_tqdm=True)  # warm-up
    started = time.perf_counter()
    results = lm.loglikelihood(instances, disable_tqdm=True)
    seconds = time.perf_counter() - started
    with open(sys.argv[2], "w") as handle:
        json.dump({"seconds": seconds, "loglikelihoods": [float(r[0]) for r in results]}, handle)


if __name__ == "__main__":
    main()
