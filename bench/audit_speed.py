"""Audit speed against EleutherAI's lm-evaluation-harness on the same items, model and machine.

Both score the first N two-option items of `schwartz-dilemmas` as a multiple-choice task: one
chat-formatted context per item (the likelihood method's order-free prompt) and the two option
texts as continuations, with identical strings and the same context/continuation split. lm-eval
runs in its own environment (bench/.venv-lmeval, created on first use with torch==2.13.0, our
transformers version and lm-eval[hf]); it is not a valuescope dependency. Also reported: the
same requests with every context run whole (no shared chat opening), the full audit's own rate
(one wording, neutral-prompt calibration included) on its first run, which computes the neutral
priors, and on a later one, which reads them from the cache, and the model's raw forward
throughput as the ceiling.

Run: `.venv/bin/python bench/audit_speed.py [--items 60] [--batch-size 16]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from side_env import side_python

import valuescope.backends.local
from valuescope import Chat, load_backend
from valuescope.audit.dilemma import audit_dilemmas
from valuescope.audit.kinds import RunSpec
from valuescope.audit.scoring import answer_prompt
from valuescope.backends import LoglikelihoodRequest
from valuescope.backends.embedded import embedded_gguf_path
from valuescope.backends.gguf import dequantized_dir
from valuescope.cache import CACHE_ENV
from valuescope.instruments.dilemma import load_dilemmas

HERE = Path(__file__).parent
LMEVAL_VENV = HERE / ".venv-lmeval"
LMEVAL_PIN = "lm-eval[hf]==0.4.13"


def lmeval_python() -> Path:
    """The harness's own environment, with our torch and transformers: only the scorer differs."""
    return side_python(LMEVAL_VENV, LMEVAL_PIN, "lm_eval.models.huggingface", valuescope=False)


def forward_ceiling(backend: object, batch: int = 16, length: int = 128) -> float:
    """Tokens/s of one large batch through the model: the ceiling for any scorer.

    Logits are kept for the last position only: a scorer needs them at the continuation
    tokens, a small share of the sequence, so the transformer body is what bounds it.
    """
    model = backend.model  # type: ignore[attr-defined]
    ids = torch.randint(100, 10_000, (batch, length))
    with torch.inference_mode():
        model(input_ids=ids, logits_to_keep=1)
        started = time.perf_counter()
        for _ in range(3):
            model(input_ids=ids, logits_to_keep=1)
    return 3 * batch * length / (time.perf_counter() - started)


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """`owner.name` (or `owner[name]` for a mapping) set to `value` inside the block."""
    mapping = isinstance(owner, MutableMapping)
    old = owner.get(name) if mapping else getattr(owner, name)
    if mapping:
        owner[name] = value
    else:
        setattr(owner, name, value)
    try:
        yield
    finally:
        if not mapping:
            setattr(owner, name, old)
        elif old is None:
            del owner[name]
        else:
            owner[name] = old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    backend = load_backend("smollm2", batch_size=args.batch_size)
    items = load_dilemmas("schwartz-dilemmas").items[: args.items]
    # lm-eval moves all trailing whitespace of a context (here the chat template's final
    # newline) into the continuation; both scorers get that same split, as raw text, so each
    # number is the same quantity on both sides.
    requests = []
    for item in items:
        rendered = backend.render(Chat(answer_prompt(item.text, None)))  # type: ignore[attr-defined]
        context = rendered.rstrip()
        for option in item.options:
            requests.append(LoglikelihoodRequest(context, rendered[len(context) :] + option.text))
    backend.loglikelihood(requests[:4])  # warm-up
    # Each context whole, as before contexts shared their chat opening: the same run's baseline.
    with patched(valuescope.backends.local, "SHARED_PREFIX", 10**9):
        started = time.perf_counter()
        backend.loglikelihood(requests)
        unshared_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ours = backend.loglikelihood(requests)
    ours_seconds = time.perf_counter() - started

    def audit_seconds() -> tuple[float, int]:
        started = time.perf_counter()
        audit = audit_dilemmas(
            load_dilemmas("schwartz-dilemmas"),
            RunSpec(method="likelihood", limit=args.items, paraphrase=False),
            backend,
        )
        return time.perf_counter() - started, sum(len(r.orders) for r in audit.results)

    # An empty cache folder: the first audit computes the neutral priors, the next reads them.
    with tempfile.TemporaryDirectory() as fresh, patched(os.environ, CACHE_ENV, fresh):
        first_seconds, presentations = audit_seconds()
        later_seconds, _ = audit_seconds()
    ceiling = forward_ceiling(backend)

    python = lmeval_python()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        result = Path(tmp) / "result.json"
        spec.write_text(
            json.dumps(
                {
                    "model_dir": str(dequantized_dir(embedded_gguf_path())),
                    "batch_size": args.batch_size,
                    "requests": [[r.context, r.continuation] for r in requests],
                }
            )
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        subprocess.run(
            [str(python), str(HERE / "lm_eval_child.py"), str(spec), str(result)],
            check=True,
            env=env,
        )
        theirs = json.loads(result.read_text())

    diffs = [abs(a.logprob - b) for a, b in zip(ours, theirs["loglikelihoods"], strict=True)]
    ours_rate = len(items) / ours_seconds
    theirs_rate = len(items) / theirs["seconds"]
    later_rate = len(items) / later_seconds
    report = {
        "benchmark": "audit speed vs lm-evaluation-harness (same items, prompts, model, machine)",
        "command": (
            f".venv/bin/python bench/audit_speed.py --items {args.items} "
            f"--batch-size {args.batch_size}"
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "model": "smollm2 (SmolLM2-135M-Instruct, fp32)",
        "items": len(items),
        "valuescope_items_per_s": round(ours_rate, 2),
        "lm_eval_items_per_s": round(theirs_rate, 2),
        "speedup": round(ours_rate / theirs_rate, 2),
        "max_abs_loglikelihood_diff": max(diffs),
        "valuescope_unshared_items_per_s": round(len(items) / unshared_seconds, 2),
        "full_audit_likelihood_method": {
            "items_per_s": round(later_rate, 2),
            "presentations_per_s": round(presentations / later_seconds, 2),
            "speedup": round(later_rate / theirs_rate, 2),
            "first_run_items_per_s": round(len(items) / first_seconds, 2),
            "first_run_speedup": round(len(items) / first_seconds / theirs_rate, 2),
            "note": (
                "the audit's own path, one wording, neutral-context calibration included: "
                "first_run computes the neutral priors into an empty cache folder, the "
                "other figures are a later run that reads them"
            ),
        },
        "forward_ceiling_tokens_per_s": round(ceiling),
    }
    # Distinct tokens the cache-sharing path runs: each context once, then its continuations.
    pairs = [backend.encode_pair(backend.render(r.context), r.continuation) for r in requests]  # type: ignore[attr-defined]
    distinct = sum(len(c) for c in {p.context for p in pairs}) + sum(
        len(p.continuation) for p in pairs
    )
    report["valuescope_distinct_tokens_per_s"] = round(distinct / ours_seconds)
    report["share_of_ceiling"] = round(distinct / ours_seconds / ceiling, 2)
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    report["loglikelihood_diff"] = {
        "median": float(np.median(diffs)),
        "p90": float(np.quantile(diffs, 0.9)),
        "share_within_1e-3": float(np.mean([d <= 1e-3 for d in diffs])),
        "worst": {
            "request": worst,
            "continuation": requests[worst].continuation,
            "context_tokens": len(pairs[worst].context),
            "continuation_tokens": len(pairs[worst].continuation),
            "valuescope": ours[worst].logprob,
            "lm_eval": theirs["loglikelihoods"][worst],
        },
    }
    out = HERE / "results" / "audit_speed.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
