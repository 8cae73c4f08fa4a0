"""The end of a run on the console: the kind's summary, then what every run shares."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.text import Text

from valuescope.audit.kinds import RunResult, intervention_records


def print_summary(console: Console, result: RunResult) -> None:
    """The kind's table and figures, the interventions, the server's figures and the time.

    Every text that came from a user or a model is printed as plain text, never as markup.
    """
    for part in result.summary():
        console.print(part)
    steering = intervention_records(result.spec).get("steering")
    if steering is not None:
        terms = ", ".join(f"{t['value']}@{t['layer']}={t['coef']:+g}" for t in steering["terms"])
        cost = steering.get("fluency_cost")
        console.print(
            Text(
                f"steering ({steering['mode']}): {terms} · fluency cost "
                + ("n/a" if cost is None else f"{cost:+.1%}")
                + " perplexity on neutral text"
            )
        )
    if result.requests is not None and result.server is not None:
        caps = result.server["capabilities"]
        offered = [name for name, ok in caps.items() if ok is True]
        stats = result.requests
        causes = ", ".join(f"{k} {v}" for k, v in stats["retry_causes"].items())
        console.print(
            Text(
                f"server: offers {', '.join(offered) or 'plain chat only'}; requests: "
                f"{stats['sent']} sent, {stats['cached']} from the cache, {stats['retries']} "
                f"retries{f' ({causes})' if causes else ''}, {stats['tokens']:,} tokens"
            )
        )
        if caps.get("echo_note"):
            console.print(Text(f"server: echo not used: {caps['echo_note']}"))
    console.print(f"{result.seconds:.1f} s")


def print_paths(console: Console, paths: Mapping[str, Path]) -> None:
    """Where the run's files went, one per line, names aligned."""
    width = max(len(name) for name in paths) + 1
    for name, path in paths.items():
        console.print(Text(f"{name + ':':<{width}} {path}"))
