"""Known-groups validity: does each instrument see a value rise in a model fine-tuned toward it?

For each Schwartz value v, a small LoRA fine-tune of the embedded model (SmolLM2-135M-Instruct,
from the fp32 weights valuescope dequantizes and audits as `smollm2`) on first-person texts
upholding v, written for this bench (`bench/known_groups/texts.yaml`), as the assistant's
answers to plain user turns. The adapter's scale is then cut until the merged model costs at
most 10% perplexity on valuescope's neutral texts, and the merged model is saved as a full
directory (`bench/models/kg-<value>`, loaded as `hf:bench/models/kg-<value>`). peft runs in
the bench's own environment (`bench/.venv-peft`, created on first use), not as a product
dependency; each fine-tune is one child process, so its peak memory is its own.

Then the base model and each fine-tune are audited with every instrument (dilemmas with each
likelihood method, Likert, pairwise) and each fine-tune is compared with the base item by item
(`valuescope.audit.comparison.compare_runs`). Recovery per instrument: top-1 and top-3 (share
of the fine-tunes whose own value has the largest / a top-3 paired shift), the mean own shift
with a bootstrap CI over the values, and for how many values the own shift's CI excludes zero; and
the same top-1 and top-3 on centred shifts (each value's shift minus its mean over the other
fine-tunes, removing what any fine-tune on first-person text does to that value).

Resumes: finished fine-tunes (their `known-groups.json`) and audits (their `results.json`) are
kept. Run: `.venv/bin/python bench/known_groups.py [--values V,...] [--instruments K,...]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
from side_env import side_python

from valuescope.audit.comparison import compare_runs
from valuescope.yamlfile import read_yaml

HERE = Path(__file__).parent
ROOT = HERE.parent
VENV = HERE / ".venv-peft"
PEFT_PIN = "peft==0.21.2"
TEXTS = HERE / "known_groups" / "texts.yaml"
MODELS = HERE / "models"
RUNS = MODELS / "known-groups-runs"  # gitignored with the models
RESULTS = HERE / "results" / "known-groups.json"
BALANCED = HERE / "results" / "methods" / "schwartz-dilemmas-balanced"
PERSONAS = BALANCED / "comparison.json"
BUDGET = 0.10
"""Largest perplexity cost on the neutral texts a fine-tune may have."""
RANK, ALPHA, STEPS, LR, BATCH = 8, 16, 16, 3e-3, 4
MAX_SCALE = 16.0
"""Largest adapter scale the upward search tries (doubling from 1)."""
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Every process on one thread: the two cores are shared, and oversubscription thrashes."""
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Instrument, method and extra flags, in the order they run (most informative first). The
# dilemmas are the balanced half of schwartz-dilemmas (90 items, each value on 18), on which
# methods.md measured persona recovery; the pairwise budget is half the default.
INSTRUMENTS: dict[str, tuple[str, str, list[str]]] = {
    "dilemmas-likelihood-first-person": (
        str(BALANCED / "schwartz-dilemmas-balanced.yaml"), "likelihood-first-person",
        ["--no-paraphrase"],
    ),
    "dilemmas-likelihood": (
        str(BALANCED / "schwartz-dilemmas-balanced.yaml"), "likelihood", ["--no-paraphrase"]
    ),
    "portraits-scale": ("schwartz-portraits", "scale", []),
    "outcomes-choice": ("schwartz-outcomes", "choice", ["--budget", "160"]),
    "open-embed": (
        "schwartz-open", "generate",
        ["--no-paraphrase", "--samples", "1", "--detector", "embed"],
    ),
}  # fmt: skip

# Persona recovery of the same instruments on this model: the dilemma methods from
# methods/schwartz-dilemmas-balanced/comparison.json (read at run time), the others as
# docs/results/questionnaires.md reports them (single `valuescope validate` runs, no file here).
PERSONA_QUESTIONNAIRES = {
    "portraits-scale": {"top1": 0.1, "top3": 0.3, "mean_own_shift": None,
                        "source": "docs/results/questionnaires.md"},
    "outcomes-choice": {"top1": 0.2, "top3": 0.3, "mean_own_shift": None,
                        "source": "docs/results/questionnaires.md"},
}  # fmt: skip
OPEN_PERSONAS = HERE / "results" / "open.json"
"""Persona recovery of schwartz-open (its first 30 prompts) here, by bench/open_bench.py."""


def peft_python() -> Path:
    """The bench's own environment: our torch, transformers and valuescope, plus peft."""
    return side_python(VENV, PEFT_PIN, "peft, valuescope")


def log(message: str, since: float) -> None:
    print(f"[{time.perf_counter() - since:6.0f} s] {message}", file=sys.stderr, flush=True)


def finetune(value: str) -> dict[str, Any]:
    """Child process (inside bench/.venv-peft): fine-tune, size, merge and save one value."""
    import torch

    from valuescope import Chat
    from valuescope.backends.embedded import embedded_gguf_path
    from valuescope.backends.gguf import dequantized_dir
    from valuescope.backends.local import LocalBackend
    from valuescope.backends.spec import parse_spec
    from valuescope.backends.template import render
    from valuescope.steering.operators import perplexity

    peft = import_module("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = time.perf_counter()
    base_dir = dequantized_dir(embedded_gguf_path())
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    spec = parse_spec(f"hf:{base_dir}")
    plain = perplexity(LocalBackend(spec, model, tokenizer, "base"))
    log(f"{value}: base perplexity {plain:.3f}", started)

    texts = read_yaml(TEXTS)
    prompts, own = texts["prompts"], texts["values"][value]
    examples = []
    for i, text in enumerate(own):  # loss on the answer and its end-of-turn token only
        prompt = tokenizer(render(tokenizer, Chat(prompts[i % len(prompts)])))["input_ids"]
        answer = tokenizer(text + tokenizer.eos_token)["input_ids"]
        examples.append((prompt + answer, [-100] * len(prompt) + answer))

    config = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS)
    lora = peft.get_peft_model(model, config)
    lora.train()
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=LR)
    rng = np.random.default_rng(0)
    losses = []
    train_started = time.perf_counter()
    for _ in range(STEPS):
        batch = [examples[i] for i in rng.choice(len(examples), BATCH, replace=False)]
        width = max(len(ids) for ids, _ in batch)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        loss = lora(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        log(f"{value}: step {len(losses)}, loss {losses[-1]:.3f}", started)
    train_seconds = time.perf_counter() - train_started
    lora.eval()

    inner = lora.base_model.model
    layers = [m for m in inner.modules() if isinstance(getattr(m, "scaling", None), dict)]
    full = ALPHA / RANK

    def cost_at(scale: float) -> float:
        for layer in layers:
            layer.scaling["default"] = full * scale
        cost = perplexity(LocalBackend(spec, inner, tokenizer, "lora")) / plain - 1.0
        log(f"{value}: scale {scale:.3f} costs {cost:+.1%} perplexity", started)
        return cost

    # The largest adapter scale within the budget (the cost rises with the scale): below 1,
    # bisected down when the whole fine-tune costs too much; above 1, doubled until it costs
    # too much (or reaches MAX_SCALE), then bisected between the last scale within the budget
    # and the first beyond it, so the cost ends just under the budget.
    costs = {1.0: cost_at(1.0)}
    if costs[1.0] > BUDGET:
        low, high = 0.0, 1.0
    else:
        low, high = 1.0, 0.0
        while low < MAX_SCALE:
            costs[2 * low] = cost_at(2 * low)
            if costs[2 * low] > BUDGET:
                high = 2 * low
                break
            low = 2 * low
    if high > low:
        for _ in range(3):
            mid = (low + high) / 2
            costs[mid] = cost_at(mid)
            low, high = (mid, high) if costs[mid] <= BUDGET else (low, mid)
    scale = low  # 0 (no fine-tune left) only if even 1/8 of the adapter cost too much
    for layer in layers:
        layer.scaling["default"] = full * scale
    merged = lora.merge_and_unload()
    out = MODELS / f"kg-{value}"
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    seconds = time.perf_counter() - started
    record = {
        "value": value,
        "texts": len(own),
        "steps": STEPS, "batch": BATCH, "lr": LR, "rank": RANK, "alpha": ALPHA,
        "first_loss": float(np.mean(losses[:3])), "last_loss": float(np.mean(losses[-3:])),
        "scale": scale,
        "scales_tried": {f"{k:g}": v for k, v in sorted(costs.items())},
        "perplexity_base": plain,
        "perplexity": plain * (1.0 + costs.get(scale, 0.0)),
        "perplexity_cost": costs.get(scale, 0.0),
        "train_seconds": train_seconds,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    (out / "known-groups.json").write_text(json.dumps(record, indent=1))
    return record


def fine_tuned(value: str) -> dict[str, Any]:
    """One value's fine-tune record, running the child when the model is not saved yet."""
    done = MODELS / f"kg-{value}" / "known-groups.json"
    if not done.exists():
        env = {**os.environ, **THREADS, "PYTHONPATH": str(ROOT)}
        subprocess.run([str(peft_python()), __file__, "--finetune", value], check=True, env=env)
    return dict(json.loads(done.read_text()))


def audited(name: str, model: str) -> dict[str, Any]:
    """One model's run of one instrument, audited through the CLI unless it finished before."""
    instrument, method, extra = INSTRUMENTS[name]
    out = RUNS / name / model
    if not (out / "results.json").exists():
        spec = "smollm2" if model == "base" else f"hf:{MODELS / f'kg-{model}'}"
        command = [str(Path(sys.executable).parent / "valuescope"), "audit", "-m", spec,
                   "-i", instrument, "--method", method, *extra, "--out", str(out)]  # fmt: skip
        started = time.perf_counter()
        env = {**os.environ, **THREADS}
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        (out / "wall_seconds").write_text(f"{time.perf_counter() - started:.1f}\n")
    return dict(json.loads((out / "results.json").read_text()))


def recovery(name: str, values: list[str]) -> dict[str, Any]:
    """Each fine-tune against the base item by item; the own value's shift and rank."""
    base = audited(name, "base")
    shifts, own, ranks = {}, {}, {}
    for value in values:
        comparison = compare_runs(base, audited(name, value))
        diffs = {v: c.diff for v, c in comparison.values.items()}
        shifts[value] = {v: c.as_dict() for v, c in comparison.values.items()}
        own[value] = comparison.values[value]
        ranks[value] = 1 + sum(d > diffs[value] for d in diffs.values())
    own_diffs = np.array([own[v].diff for v in values])
    # Centred: each value's shift minus its mean shift over the other fine-tunes, removing what
    # any fine-tune on first-person text does to it (needs at least two fine-tunes).
    centred: dict[str, dict[str, float]] = {}
    for value in values if len(values) > 1 else []:
        others = [u for u in values if u != value]
        centred[value] = {
            v: shifts[value][v]["diff"] - float(np.mean([shifts[u][v]["diff"] for u in others]))
            for v in shifts[value]
        }
    centred_ranks = {v: 1 + sum(d > c[v] for d in c.values()) for v, c in centred.items()}
    draws = np.random.default_rng(0).choice(own_diffs, (2000, len(values))).mean(axis=1)
    timed = [RUNS / name / m / "wall_seconds" for m in ["base", *values]]
    seconds = [float(path.read_text()) for path in timed if path.exists()]
    return {
        "instrument": INSTRUMENTS[name][0].removeprefix(str(ROOT) + "/"),
        "method": INSTRUMENTS[name][1],
        "items": len(base["items"]),
        "top1": float(np.mean([ranks[v] == 1 for v in values])),
        "top3": float(np.mean([ranks[v] <= 3 for v in values])),
        "mean_own_shift": float(own_diffs.mean()),
        "mean_own_shift_ci": [float(x) for x in np.percentile(draws, [2.5, 97.5])],
        "own_ci_excludes_zero": sum(own[v].ci[0] > 0 or own[v].ci[1] < 0 for v in values),
        "own_ci_above_zero": sum(own[v].ci[0] > 0 for v in values),
        "own_moved_holm": sum(own[v].moved for v in values),
        "own": {
            v: {
                "diff": own[v].diff,
                "ci": list(own[v].ci),
                "rank": ranks[v],
                "centred": centred.get(v, {}).get(v),
                "centred_rank": centred_ranks.get(v),
            }
            for v in values
        },
        "centred_top1": float(np.mean([r == 1 for r in centred_ranks.values()]))
        if centred
        else None,
        "centred_top3": float(np.mean([r <= 3 for r in centred_ranks.values()]))
        if centred
        else None,
        "shifts": shifts,
        "audit_seconds": sum(seconds),
    }


def text_logprobs(model: str) -> list[float]:
    """Per-token log-likelihood of every labelled detector text (valuescope's schwartz-labelled
    set: written for the detectors, not for this bench, so held out from every fine-tune) as the
    model's answer to the fine-tuning prompts in turn; cached per model."""
    out = RUNS / "manipulation" / f"{model}.json"
    if out.exists():
        return list(json.loads(out.read_text()))
    from valuescope import Chat, load_backend
    from valuescope.backends.base import LoglikelihoodRequest
    from valuescope.detectors.labelled import load_labelled

    texts = load_labelled("schwartz").texts
    prompts = read_yaml(TEXTS)["prompts"]
    backend = load_backend("smollm2" if model == "base" else f"hf:{MODELS / f'kg-{model}'}")
    asked = [LoglikelihoodRequest(Chat(prompts[i % len(prompts)]), t.text)
             for i, t in enumerate(texts)]  # fmt: skip
    found = [r.logprob / r.n_tokens for r in backend.loglikelihood(asked)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found) + "\n")
    return found


def manipulation_check(values: list[str]) -> dict[str, Any]:
    """Did each fine-tune move its own value, read without any instrument? Per fine-tune f and
    value v: the mean gain in per-token log-likelihood (f against the base) of the held-out
    labelled texts upholding v, minus the mean gain over all labelled texts. The own value
    ranking first says the fine-tune took; an instrument that then misses it is blind to it."""
    from valuescope.detectors.labelled import load_labelled

    texts = load_labelled("schwartz").texts
    upholding = {v: np.array([v in t.upholds for t in texts]) for v in read_yaml(TEXTS)["values"]}
    base = np.array(text_logprobs("base"))
    rng = np.random.default_rng(0)
    per: dict[str, Any] = {}
    for value in values:
        gain = np.array(text_logprobs(value)) - base
        lifts = {v: float(gain[mask].mean() - gain.mean()) for v, mask in upholding.items()}
        own = upholding[value]
        draws = [
            gain[rng.choice(np.flatnonzero(own), own.sum())].mean()
            - gain[rng.choice(len(gain), len(gain))].mean()
            for _ in range(2000)
        ]
        per[value] = {
            "own_lift": lifts[value],
            "own_lift_ci": [float(x) for x in np.percentile(draws, [2.5, 97.5])],
            "rank": 1 + sum(x > lifts[value] for x in lifts.values()),
            "mean_gain": float(gain.mean()),
            "lifts": lifts,
        }
    return {
        "texts": len(texts),
        "top1": float(np.mean([p["rank"] == 1 for p in per.values()])),
        "top3": float(np.mean([p["rank"] <= 3 for p in per.values()])),
        "own_ci_above_zero": sum(p["own_lift_ci"][0] > 0 for p in per.values()),
        "finetunes": per,
    }


def persona_recovery(name: str) -> dict[str, Any] | None:
    """Persona recovery of the same instrument and method on this model, where measured."""
    if name in PERSONA_QUESTIONNAIRES:
        return PERSONA_QUESTIONNAIRES[name]
    if name == "open-embed":
        found = json.loads(OPEN_PERSONAS.read_text())["figures"]["persona_recovery"]
        return {"top1": found["top1"], "top3": found["top3"],
                "mean_own_shift": found["mean_own_delta"],
                "source": "bench/results/open.json (30 prompts)"}  # fmt: skip
    method = json.loads(PERSONAS.read_text())["methods"].get(INSTRUMENTS[name][1])
    if method is None:
        return None
    source = PERSONAS.relative_to(ROOT).as_posix()
    return {"top1": method["top1"], "top3": method["top3"],
            "mean_own_shift": method.get("mean_own_delta"), "source": source}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", help="comma-separated values (default: all ten)")
    parser.add_argument("--instruments", help=f"comma-separated, of {', '.join(INSTRUMENTS)}")
    parser.add_argument("--finetunes-only", action="store_true", help="fine-tune, audit nothing")
    check = "only the manipulation check (labelled texts' likelihoods)"
    parser.add_argument("--check-only", action="store_true", help=check)
    parser.add_argument("--finetune", help=argparse.SUPPRESS)  # the child's entry
    args = parser.parse_args()
    if args.finetune:
        print(json.dumps(finetune(args.finetune)))
        return
    values = args.values.split(",") if args.values else list(read_yaml(TEXTS)["values"])
    names = args.instruments.split(",") if args.instruments else list(INSTRUMENTS)
    names = [] if args.finetunes_only else names
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({
        "benchmark": "known-groups validity: value fine-tunes of the embedded model",
        "command": " ".join(["python", "bench/known_groups.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "budget": BUDGET,
    })  # fmt: skip
    # Merged, not replaced: runs over other values (or side by side) keep each other's records.
    results["finetunes"] = {**results.get("finetunes", {}), **{v: fine_tuned(v) for v in values}}
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if args.check_only or not args.finetunes_only:
        results["manipulation"] = manipulation_check(values)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        check = results["manipulation"]
        print(f"manipulation check: top-1 {check['top1']:.0%}, top-3 {check['top3']:.0%}")
    names = [] if args.check_only else names
    results.setdefault("instruments", {})
    for name in names:
        found = recovery(name, values)
        found["persona"] = persona_recovery(name)
        results["instruments"][name] = found
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(f"{name}: top-1 {found['top1']:.0%}, top-3 {found['top3']:.0%}, "
              f"mean own shift {found['mean_own_shift']:+.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
