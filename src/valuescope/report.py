"""Run outputs: results.json (schema valuescope.results/1) and items.csv."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from . import __version__
from .audit import AuditResult
from .errors import UsageError
from .instrument import Instrument
from .likert import LikertResult, Questionnaire
from .pairwise import OutcomeSet, PairwiseResult
from .profile import Profile

SCHEMA = "valuescope.results/1"


def _clean(value: Any) -> Any:
    """JSON has no NaN: undefined figures are written as null."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _head(
    model: dict[str, Any],
    instrument: Instrument | Questionnaire | OutcomeSet,
    n_items: int,
    method: str,
    system: str | None,
    seed: int,
    profile: Profile,
    steering: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The leading fields every results.json shares, whatever the instrument's kind."""
    taxonomy = instrument.taxonomy
    return {
        "schema": SCHEMA,
        "valuescope": __version__,
        "model": model,
        "instrument": {
            "name": instrument.name,
            "kind": instrument.kind,
            "items": n_items,
            "sha256": instrument.sha256,
            "source": instrument.source,
        },
        "taxonomy": taxonomy.name,
        "values": {v.id: {"label": v.label, "definition": v.definition} for v in taxonomy.values},
        "method": method,
        "system": system,
        "steering": steering,
        "seed": seed,
        "profile": profile.as_dict(),
    }


def results_json(result: AuditResult) -> dict[str, Any]:
    """The results document; everything but `timing` is reproducible from the config.

    `timing` holds what differs between runs of one config: seconds, and for servers the
    request counts (sent, from the cache, retries by cause).
    """
    instrument = result.instrument
    n_items = len(result.results)
    paraphrase = {r.item_id: r for r in result.paraphrase_results}
    by_id = {item.id: item for item in instrument.items}
    items = []
    for r in result.results:
        item = by_id[r.item_id]
        entry: dict[str, Any] = {
            "id": r.item_id,
            "p": list(r.p),
            "orders": [{"order": list(o.order), "p": list(o.p)} for o in r.orders],
            "text": item.text,
            "options": [{"text": o.text, "values": list(o.values)} for o in item.options],
        }
        if r.item_id in paraphrase:
            entry["p_paraphrase"] = list(paraphrase[r.item_id].p)
        items.append(entry)
    model = {
        "spec": result.config.model,
        "name": result.model_name,
        **({"server": result.server} if result.server else {}),
    }
    doc = {
        **_head(
            model,
            instrument,
            n_items,
            result.method,
            result.config.system,
            result.config.seed,
            result.profile,
            result.steering,
        ),
        "profile_paraphrase": (
            result.paraphrase_profile.as_dict() if result.paraphrase_profile else None
        ),
        "ranking": result.ranking.as_dict() if result.ranking else None,
        "diagnostics": {**result.diagnostics.as_dict(), "method_probe": result.method_probe},
        "items": items,
        "timing": {
            "seconds": result.seconds,
            "presentations_per_second": (
                sum(len(r.orders) for r in result.results + result.paraphrase_results)
                / result.seconds
                if result.seconds
                else None
            ),
            **({"requests": result.requests} if result.requests is not None else {}),
        },
    }
    cleaned: dict[str, Any] = _clean(doc)
    return cleaned


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(result: AuditResult, out: Path) -> dict[str, Path]:
    """Write results.json, items.csv and card.html into `out`; returns their paths."""
    from .card import render_card

    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "items": out / "items.csv", "card": out / "card.html"}
    doc = results_json(result)
    _atomic_write(paths["results"], json.dumps(doc, indent=1) + "\n")
    _atomic_write(paths["card"], render_card([doc]))
    by_id = {item.id: item for item in result.instrument.items}
    width = max(len(item.options) for item in result.instrument.items)
    header = ["item_id", "wording", "order", "shown_first"]
    header += [f"p{i}" for i in range(width)] + [f"values{i}" for i in range(width)]
    tmp = paths["items"].with_name(f".items.csv.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in result.results + result.paraphrase_results:
            item = by_id[r.item_id]
            values = ["|".join(o.values) for o in item.options]
            for order in r.orders:
                probs = [f"{p:.6f}" for p in order.p]
                pad = [""] * (width - len(order.p))
                writer.writerow(
                    [
                        r.item_id,
                        r.wording,
                        "-".join(map(str, order.order)),
                        order.order[0],
                        *probs,
                        *pad,
                        *values,
                        *pad,
                    ]
                )
    os.replace(tmp, paths["items"])
    if any(o.answers for r in result.results + result.paraphrase_results for o in r.orders):
        paths["answers"] = out / ANSWERS
        _atomic_write(paths["answers"], _answers_jsonl(result))
    return paths


ANSWERS = "answers.jsonl"


def _answers_jsonl(result: AuditResult) -> str:
    """One line per generated answer: the question as asked, the answer, the option it named."""
    from .scoring import generate_prompt, map_answer, wording_of

    by_id = {item.id: item for item in result.instrument.items}
    lines = []
    for r in result.results + result.paraphrase_results:
        item = by_id[r.item_id]
        words = wording_of(item, r.wording)
        for order in r.orders:
            chat = generate_prompt(item, r.wording, order.order, result.config.system)
            shown = [words.options[i] for i in order.order]
            for sample, answer in enumerate(order.answers):
                slot = map_answer(answer, shown)
                record = {
                    "item_id": r.item_id,
                    "wording": r.wording,
                    "order": list(order.order),
                    "sample": sample,
                    "system": chat.system,
                    "prompt": chat.user,
                    "answer": answer,
                    "option": None if slot is None else order.order[slot],
                    "option_values": [list(o.values) for o in item.options],
                }
                lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def load_answers(directory: Path) -> list[dict[str, Any]]:
    """A run's generated answers (`answers.jsonl`), with a clear error when it has none."""
    path = directory / ANSWERS if directory.is_dir() else directory
    if not path.is_file():
        raise UsageError(
            f"{str(directory)!r} holds no generated answers ({ANSWERS}): only runs with "
            "--method generate keep them; audit with --method generate --out DIR first"
        )
    records = []
    # Not splitlines(): answers may hold U+2028 or U+0085, which JSON leaves unescaped.
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record.get("answer"), str) or not isinstance(
                record.get("prompt"), str
            ):
                raise ValueError("no answer/prompt text")
        except (ValueError, AttributeError) as exc:
            raise UsageError(f"{path}:{number}: not an answer record ({exc})") from None
        records.append(record)
    if not records:
        raise UsageError(
            f"{path}: holds no answers (the run was stopped before its first); rerun the audit "
            "with the same --out to resume it"
        )
    return records


def read_results(directory: Path) -> dict[str, Any]:
    """A run's results.json, with a clear error when the folder holds no finished run."""
    path = directory / "results.json" if directory.is_dir() else directory
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{directory}: no results.json here; is this an audit's --out folder?"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable results.json: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UsageError(f"{path}: schema is not {SCHEMA}")
    return doc


def likert_results_json(result: LikertResult) -> dict[str, Any]:
    """results.json for a Likert questionnaire (same schema; `likert` holds its own figures)."""
    q = result.questionnaire
    by_id = {item.id: item for item in q.items}

    ci_half = [s.ci[0] <= 0.5 <= s.ci[1] for s in result.profile.scores.values()]
    model = {"spec": result.model, "name": result.model_name}
    doc: dict[str, Any] = {
        **_head(
            model,
            q,
            len(result.ratings),
            result.method,
            result.system,
            result.seed,
            result.profile,
        ),
        "profile_paraphrase": None,
        "ranking": None,
        "likert": {
            "scale": "1 = not like me at all ... 6 = very much like me",
            "raw": Profile(result.raw).as_dict(),
            "ipsatized": Profile(result.ipsatized).as_dict(),
            "acquiescence": result.acquiescence,
            "direction_consistency": result.direction_consistency,
            "alpha": result.alpha,
            "panel": result.panel,
            "persona_recovery": result.recovery,
        },
        "diagnostics": {
            "order_consistency": None,
            "position_bias": None,
            "paraphrase_consistency": None,
            "direction_consistency": result.direction_consistency,
            "acquiescence": result.acquiescence,
            "ci_includes_half": sum(ci_half) / len(ci_half) if ci_half else None,
            "verdict": result.verdict,
            "warnings": [],
        },
        "items": [
            {
                "id": r.item_id,
                "text": by_id[r.item_id].text,
                "value": by_id[r.item_id].value,
                "keyed": by_id[r.item_id].keyed,
                "p": list(r.p),
                "p_forward": list(r.forward),
                "p_reverse": list(r.reverse),
                "rating": r.rating,
            }
            for r in result.ratings
        ],
        "timing": {"seconds": result.seconds},
    }
    cleaned: dict[str, Any] = _clean(doc)
    return cleaned


def _write_run(
    doc: dict[str, Any], out: Path, header: list[str], rows: list[list[Any]]
) -> dict[str, Path]:
    """results.json, card.html and items.csv (one row per item) of a finished run."""
    from .card import render_card

    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "items": out / "items.csv", "card": out / "card.html"}
    _atomic_write(paths["results"], json.dumps(doc, indent=1) + "\n")
    _atomic_write(paths["card"], render_card([doc]))
    tmp = paths["items"].with_name(f".items.csv.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, paths["items"])
    return paths


def write_likert_results(result: LikertResult, out: Path) -> dict[str, Path]:
    """results.json, items.csv (one row per statement) and card.html for a questionnaire."""
    doc = likert_results_json(result)
    header = ["item_id", "value", "keyed", "rating", *[f"p{k}" for k in range(1, 7)]]
    rows = [
        [i["id"], i["value"], i["keyed"], f"{i['rating']:.6f}", *[f"{p:.6f}" for p in i["p"]]]
        for i in doc["items"]
    ]
    return _write_run(doc, out, header, rows)


def pairwise_results_json(result: PairwiseResult) -> dict[str, Any]:
    """results.json for a pairwise instrument; `pairwise` holds the fit and its checks."""
    items = result.outcomes.items
    ci_half = [s.ci[0] <= 0.5 <= s.ci[1] for s in result.profile.scores.values()]
    held = set(result.held_out)
    model = {"spec": result.model, "name": result.model_name}
    outcomes = result.outcomes
    doc: dict[str, Any] = {
        **_head(
            model,
            outcomes,
            len(items),
            "choice",
            result.system,
            result.seed,
            result.profile,
        ),
        "profile_paraphrase": None,
        "ranking": None,
        "pairwise": {
            "model": "thurstonian",
            "comparisons": len(result.pairs),
            "held_out": len(result.held_out),
            "heldout_accuracy": result.accuracy,
            "heldout_log_loss": result.log_loss,
            "baseline_log_loss": math.log(2),
            "transitivity_violation_rate": result.transitivity,
            "decisiveness": result.decisiveness,
            "value_utility": Profile(result.value_utility).as_dict(),
            "comparisons_made": [
                {"a": items[i].id, "b": items[j].id, "p_a": pij, "held_out": k in held}
                for k, ((i, j), pij) in enumerate(zip(result.pairs, result.p, strict=True))
            ],
        },
        "diagnostics": {
            "order_consistency": None,
            "position_bias": None,
            "paraphrase_consistency": None,
            "heldout_accuracy": result.accuracy,
            "heldout_log_loss": result.log_loss,
            "transitivity_violation_rate": result.transitivity,
            "decisiveness": result.decisiveness,
            "ci_includes_half": sum(ci_half) / len(ci_half) if ci_half else None,
            "verdict": result.verdict,
            "warnings": [],
        },
        "items": [
            {
                "id": o.id,
                "text": o.text,
                "values": list(o.values),
                "utility": float(result.fit.mu[k]),
                "sd": float(result.fit.sigma[k]),
            }
            for k, o in enumerate(items)
        ],
        "timing": {"seconds": result.seconds},
    }
    cleaned: dict[str, Any] = _clean(doc)
    return cleaned


def write_pairwise_results(result: PairwiseResult, out: Path) -> dict[str, Path]:
    """results.json, items.csv (one row per outcome) and card.html for a pairwise run."""
    doc = pairwise_results_json(result)
    rows = [[i["id"], "|".join(i["values"]), i["utility"], i["sd"]] for i in doc["items"]]
    return _write_run(doc, out, ["item_id", "values", "utility", "sd"], rows)
