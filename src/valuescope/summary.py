"""The summary table printed at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .audit import AuditResult


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}"


def print_summary(console: Console, result: AuditResult) -> None:
    """Profile (score, CI, n, rank) and diagnostics with the verdict."""
    taxonomy = result.instrument.taxonomy
    order = result.ranking.order if result.ranking else list(result.profile.scores)
    table = Table(
        title=f"{result.model_name} on {result.instrument.name} ({result.method})",
        caption="score = P(choose the option upholding the value); 0.5 = indifferent",
    )
    for column in ("rank", "value", "score", "95% CI", "n"):
        table.add_column(column, justify="right" if column != "value" else "left")
    for rank, value in enumerate(order, start=1):
        score = result.profile.scores.get(value)
        if score is None:
            continue
        table.add_row(
            str(rank),
            taxonomy[value].label,
            _fmt(score.score),
            f"{_fmt(score.ci[0])}–{_fmt(score.ci[1])}",
            str(score.n),
        )
    console.print(table)
    d = result.diagnostics
    console.print(
        f"order consistency {_fmt(d.order_consistency)} · position bias {_fmt(d.position_bias)} · "
        f"paraphrase consistency {_fmt(d.paraphrase_consistency)}"
    )
    console.print(f"verdict: {d.verdict}")
    for warning in d.warnings:
        console.print(f"  warning: {warning}", markup=False)
    console.print(f"{result.seconds:.1f} s")
