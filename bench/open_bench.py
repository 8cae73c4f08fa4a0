"""Open instruments on the embedded model: answer speed, and the figures of the closing note.

    python bench/open_bench.py speed [--prompts 32]
        valuescope's answering path (the open kind's `generate_answers`: per-row seeded
        sampling, KV cache) against transformers' own batched `model.generate` with the same
        prompts, batch, temperature, token limit and samples, alternated in one process.
    python bench/open_bench.py figures --open RUN --dilemmas RUN [--validate DIR]
        The default audit's profile, diagnostics and wall time; the rank correlation of its
        profile with the dilemma profile (95% CI: both instruments' items resampled); persona
        recovery from `valuescope validate -i schwartz-open` next to the dilemmas'.

Both merge into bench/results/open.json (docs/results/open.md prints it).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "open.json"


def _merge(part: str, data: dict[str, Any]) -> None:
    doc = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    doc[part] = data
    doc["machine"] = f"{platform.machine()}, {__import__('os').cpu_count()} cores, CPU only"
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")


def speed(prompts: int, rounds: int) -> dict[str, Any]:
    import torch

    from valuescope.audit.answers import MAX_NEW_TOKENS, SAMPLES, TEMPERATURE, generate_answers
    from valuescope.audit.kinds import RunSpec, load_instrument
    from valuescope.backends import load_backend
    from valuescope.backends.base import Chat

    backend: Any = load_backend("smollm2")
    items = load_instrument("schwartz-open").items[:prompts]
    spec = RunSpec(samples=SAMPLES)
    per_call = max(1, (backend.batch_size * 8) // SAMPLES)
    tokenizer = backend.tokenizer
    tokenizer.padding_side = "left"
    texts = [backend.render(Chat(item.text)) for item in items]

    def ours() -> tuple[int, int]:
        answers = generate_answers(backend, items, spec, False, None, None)
        return len(answers), sum(len(tokenizer(a.text)["input_ids"]) for a in answers)

    def plain() -> tuple[int, int]:
        count = tokens = 0
        torch.manual_seed(0)
        for start in range(0, len(texts), per_call):
            batch = tokenizer(
                texts[start : start + per_call],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            with torch.inference_mode():
                out = backend.model.generate(
                    **batch,
                    do_sample=True,
                    temperature=TEMPERATURE,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=MAX_NEW_TOKENS,
                    num_return_sequences=SAMPLES,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            for row in new:
                kept = row[row != (tokenizer.pad_token_id or tokenizer.eos_token_id)]
                tokens += len(kept)
                count += 1
        return count, tokens

    timings: dict[str, list[dict[str, float]]] = {"valuescope": [], "transformers": []}
    for _ in range(rounds):
        for name, run in (("valuescope", ours), ("transformers", plain)):
            started = time.perf_counter()
            answers, tokens = run()
            seconds = time.perf_counter() - started
            timings[name].append(
                {
                    "seconds": seconds,
                    "answers": answers,
                    "tokens": tokens,
                    "answers_per_second": answers / seconds,
                    "tokens_per_second": tokens / seconds,
                }
            )
    best = {n: max(t, key=lambda r: r["tokens_per_second"]) for n, t in timings.items()}
    return {
        "prompts": prompts,
        "samples": SAMPLES,
        "temperature": TEMPERATURE,
        "max_new_tokens": MAX_NEW_TOKENS,
        "batch_prompts": per_call,
        "rounds": timings,
        "best": best,
        "ratio_tokens_per_second": best["valuescope"]["tokens_per_second"]
        / best["transformers"]["tokens_per_second"],
        "ratio_answers_per_second": best["valuescope"]["answers_per_second"]
        / best["transformers"]["answers_per_second"],
        "command": f"python bench/open_bench.py speed --prompts {prompts} --rounds {rounds}",
    }


def _item_means(evidence: dict[str, dict[str, float]], picked: list[str]) -> dict[str, float]:
    found = {}
    for value, scores in evidence.items():
        data = [scores[i] for i in picked if i in scores]
        if data:
            found[value] = float(np.mean(data))
    return found


def rank_correlation(a: dict[str, Any], b: dict[str, Any], n_boot: int = 2000) -> dict[str, Any]:
    """Spearman correlation of two runs' profiles over their common values, with a bootstrap
    CI that resamples each run's items (the profile is the mean of its item scores)."""
    from scipy.stats import spearmanr

    from valuescope.audit.kinds import get_kind

    ea = get_kind(a["instrument"]["kind"]).evidence(a)
    eb = get_kind(b["instrument"]["kind"]).evidence(b)
    ids_a = sorted({i for s in ea.values() for i in s})
    ids_b = sorted({i for s in eb.values() for i in s})
    values = sorted(set(ea) & set(eb))

    def rho(pa: list[str], pb: list[str]) -> float:
        ma, mb = _item_means(ea, pa), _item_means(eb, pb)
        common = [v for v in values if v in ma and v in mb]
        return float(spearmanr([ma[v] for v in common], [mb[v] for v in common]).statistic)

    point = rho(ids_a, ids_b)
    rng = np.random.default_rng(0)
    boots = [
        rho(list(rng.choice(ids_a, len(ids_a))), list(rng.choice(ids_b, len(ids_b))))
        for _ in range(n_boot)
    ]
    boots = [r for r in boots if np.isfinite(r)]
    return {
        "rho": point,
        "ci": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
        "values": len(values),
    }


def figures(open_run: Path, dilemmas: Path, validate: Path | None) -> dict[str, Any]:
    from valuescope.audit.results import read_results

    doc = read_results(open_run)
    dil = read_results(dilemmas)
    found: dict[str, Any] = {
        "audit": {
            "prompts": doc["instrument"]["items"],
            "samples": doc["open"]["samples"],
            "signed": doc["open"]["signed"],
            "answers": doc["open"]["answers"],
            "diagnostics": {
                k: doc["diagnostics"][k]
                for k in (
                    "degenerate_rate",
                    "cut_off_rate",
                    "detector_agreement",
                    "sample_stability",
                    "paraphrase_agreement",
                    "verdict",
                )
            },
        },
        "dilemmas": {"method": dil["method"], "profile": dil["profile"]},
        "rank_correlation_with_dilemmas": rank_correlation(doc, dil),
    }
    if validate is not None:
        found["persona_recovery"] = json.loads((validate / "validation.json").read_text())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--prompts", type=int, default=32)
    s.add_argument("--rounds", type=int, default=2)
    f = sub.add_parser("figures")
    f.add_argument("--open", type=Path, required=True)
    f.add_argument("--dilemmas", type=Path, required=True)
    f.add_argument("--validate", type=Path)
    args = parser.parse_args()
    if args.part == "speed":
        _merge("speed", speed(args.prompts, args.rounds))
    else:
        _merge("figures", figures(args.open, args.dilemmas, args.validate))
    print(json.dumps(json.loads(RESULTS.read_text())[args.part], indent=1)[:3000])


if __name__ == "__main__":
    main()
