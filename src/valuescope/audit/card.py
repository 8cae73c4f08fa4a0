"""The value card: one self-contained HTML page (inline SVG charts, no scripts, no network).

Cards are drawn from results.json documents, so `compare` can draw any finished runs side by
side. Every text that came from a model, an instrument or a user (items, options, system
prompts, labels) is escaped by the template engine; charts are SVG from matplotlib with
math parsing off, so such text stays text there too.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from valuescope.audit.kinds import CardSection, DiagnosticRow, get_kind
from valuescope.audit.shifts import reach_verdict
from valuescope.errors import UsageError


def _pyplot() -> Any:
    """matplotlib's pyplot, headless, writing text as SVG text with math parsing off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"svg.fonttype": "none", "svg.hashsalt": "valuescope", "text.parse_math": False}
    )
    return plt


def _svg(fig: Any) -> Markup:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    # Inline in HTML: no XML prolog or DOCTYPE, and no metadata block (it holds a timestamp).
    text = re.sub(r"<metadata>.*?</metadata>", "", text[text.find("<svg") :], flags=re.DOTALL)
    return Markup(text)  # matplotlib escapes every text it writes


def run_label(doc: dict[str, Any], fallback: str) -> str:
    """Short name of a run for legends: the label its writer gave it (the steer card's
    "unsteered" and "steered"), else model, then persona/system prompt or steering."""
    if doc.get("label"):
        return str(doc["label"])
    label = str(doc["model"]["name"])
    if doc.get("system"):
        system = str(doc["system"])
        label += f" · “{system[:40]}{'…' if len(system) > 40 else ''}”"
    if doc.get("steering"):
        label += " · steered"
    return label or fallback


def profile_chart(runs: Sequence[dict[str, Any]], labels: Sequence[str]) -> Markup:
    """Dots with 95% CI bars per value, one colour per run; 0.5 marks indifference."""
    plt = _pyplot()
    values = list(runs[0]["values"]) if runs[0].get("values") else list(runs[0]["profile"])
    names = {v: runs[0].get("values", {}).get(v, {}).get("label", v) for v in values}
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(values) + 1.2))
    spread = 0.6 / max(1, len(runs))
    for index, (doc, label) in enumerate(zip(runs, labels, strict=True)):
        offset = (index - (len(runs) - 1) / 2) * spread
        ys, xs, lows, highs = [], [], [], []
        for row, value in enumerate(values):
            entry = doc["profile"].get(value)
            if not entry:
                continue
            lo, hi = entry["ci"] if entry["ci"][0] is not None else (entry["score"],) * 2
            ys.append(len(values) - 1 - row + offset)
            xs.append(entry["score"])
            lows.append(entry["score"] - lo)
            highs.append(hi - entry["score"])
        ax.errorbar(xs, ys, xerr=[lows, highs], fmt="o", capsize=3, label=label)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(values)), [names[v] for v in reversed(values)])
    ax.set_xlim(0, 1)
    ax.set_xlabel("score: P(chooses the option upholding the value), 95% CI")
    if len(runs) > 1:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, frameon=False)
    fig.tight_layout()
    svg = _svg(fig)
    plt.close(fig)
    return svg


def tradeoff_chart(docs: Sequence[dict[str, Any]]) -> Markup | None:
    """For steered runs with a calibration sweep: preference shift against fluency cost, one
    line per value and layer, the chosen setting circled."""
    sweeps = [
        (value, cal)
        for doc in docs
        if doc.get("steering") and doc["steering"].get("calibration")
        for value, cal in doc["steering"]["calibration"].items()
    ]
    if not sweeps:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for value, cal in sweeps:
        for layer in sorted({p["layer"] for p in cal["points"]}):
            points = [p for p in cal["points"] if p["layer"] == layer]
            xs = [100 * p["fluency_cost"] for p in points]
            ys = [p["shift"] for p in points]
            ax.plot(xs, ys, marker="o", label=f"{value} @ layer {layer}")
        ax.scatter([100 * cal["fluency_cost"]], [cal["shift"]], s=160, facecolors="none",
                   edgecolors="black")  # fmt: skip
    budget = next((d["steering"].get("fluency_budget") for d in docs if d.get("steering")), None)
    if budget is not None:
        ax.axvline(100 * budget, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("fluency cost: perplexity increase on neutral text (%)")
    ax.set_ylabel("shift of P(upholding answer), calibration pairs")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    svg = _svg(fig)
    plt.close(fig)
    return svg


def best_of_n_chart(curve: Sequence[dict[str, Any]], measuring: str | None) -> Markup:
    """Best-of-N against its divergence bound: the combined reward of the picks (left axis)
    and, where a measuring detector read them, control success with 95% CI bars (right)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    xs = [p["kl_bound"] for p in curve]
    lines = ax.plot(xs, [p["reward"] for p in curve], marker="o", color="C0",
                    label="combined reward of the picks")  # fmt: skip
    for p in curve:
        ax.annotate(f"N={p['n']}", (p["kl_bound"], p["reward"]), textcoords="offset points",
                    xytext=(4, 6), fontsize=8, color="C0")  # fmt: skip
    ax.margins(0.08, 0.15)  # room for the N labels
    ax.set_xlabel("divergence bound from the model, log N - (N-1)/N (nats)")
    ax.set_ylabel("combined reward (reward detector)", color="C0")
    read = [p for p in curve if p.get("success")]
    if read:
        right = ax.twinx()
        rates, below, above = [], [], []
        for p in read:
            rate, (low, high) = p["success"]["rate"], p["success"]["ci"]
            rates.append(rate)
            below.append(0.0 if low is None else rate - low)  # one answer: no CI
            above.append(0.0 if high is None else high - rate)
        bars = right.errorbar([p["kl_bound"] for p in read], rates, yerr=[below, above],
                              fmt="s--", color="C1", capsize=3,
                              label="control success, 95% CI")  # fmt: skip
        right.set_ylim(-0.02, 1.02)
        right.set_ylabel(f"control success ({measuring or 'measuring detector'})", color="C1")
        lines = [*lines, bars]
    ax.legend(handles=lines, loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8,
              frameon=False, ncol=2)  # fmt: skip
    fig.tight_layout()
    svg = _svg(fig)
    plt.close(fig)
    return svg


def kind_card(doc: dict[str, Any]) -> tuple[list[DiagnosticRow], list[CardSection]]:
    """The validity rows and sections the run's instrument kind draws (none for a kind this
    installation does not know, e.g. a results.json from a plugin not installed here)."""
    try:
        kind = get_kind(str(doc["instrument"]["kind"]))
    except UsageError:
        return [], []
    return kind.card(doc)


def alignment_section(doc: dict[str, Any]) -> CardSection:
    """The reward detector's and the measuring detector's readings of an aligned run, side by
    side, with the alignment's fluency and speed costs (and best-of-n's curve)."""
    record = doc["alignment"]
    labels = {v: info["label"] for v, info in doc.get("values", {}).items()}
    measured = (doc.get("open") or {}).get("signed", {})
    reading = record.get("reward_reading", {})
    rows = [
        {
            "value": v,
            "label": labels.get(v, v),
            "plain": reading.get("plain", {}).get(v),
            "aligned": reading.get("aligned", {}).get(v),
            "measured": (measured.get(v) or {}).get("score"),
        }
        for v in record.get("values", [])
    ]
    measuring = (doc.get("open") or {}).get("detector")
    curve = record.get("best_of_n_curve")
    chart = best_of_n_chart(curve, measuring) if curve else None
    context = {**record, "rows": rows, "measuring": measuring, "chart": chart}
    return CardSection("alignment.html.j2", context)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render_card(
    docs: Sequence[dict[str, Any]],
    title: str | None = None,
    comparison: dict[str, Any] | None = None,
) -> str:
    """HTML of a value card for one run, or a comparison of several (same taxonomy); with
    `comparison` (a comparison.json document), its paired differences too."""
    if not docs:
        raise ValueError("a card needs at least one run")
    labels = [run_label(doc, f"run {i + 1}") for i, doc in enumerate(docs)]
    value_info = docs[0].get("values") or {
        v: {"label": v, "definition": ""} for v in docs[0]["profile"]
    }
    values = [{"id": v, **info} for v, info in value_info.items()]
    env = Environment(
        loader=FileSystemLoader(str(resources.files("valuescope") / "data" / "card")),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals["reach_verdict"] = reach_verdict
    runs = []
    for doc, label in zip(docs, labels, strict=True):
        verdict = str(doc["diagnostics"].get("verdict", ""))
        cls = "bad" if verdict.startswith("not") else "warn" if verdict.startswith("weak") else ""
        rows, sections = kind_card(doc)
        if doc.get("alignment"):
            sections = [*sections, alignment_section(doc)]
        parts = [
            {"template": s.template if s.source is None else env.from_string(s.source),
             "context": s.context}
            for s in sections
        ]  # fmt: skip
        runs.append(
            {"doc": doc, "label": label, "verdict_class": cls, "rows": rows, "sections": parts}
        )
    template = env.get_template("card.html.j2")
    heading = title or (
        f"Value card: {labels[0]}" if len(docs) == 1 else f"Value comparison of {len(docs)} runs"
    )
    return template.render(
        title=heading,
        runs=runs,
        values=values,
        labels={v["id"]: v["label"] for v in values},
        chart=profile_chart(docs, labels),
        tradeoff=tradeoff_chart(docs),
        comparison=comparison,
        fmt=_fmt,
    )


def write_card(
    docs: Sequence[dict[str, Any]],
    path: Path,
    title: str | None = None,
    comparison: dict[str, Any] | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_card(docs, title, comparison), encoding="utf-8")
    return path
