"""Progress bars with items/s and ETA for long runs (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

ProgressHook = Callable[[str, int, int], None]
"""Called as (phase description, units done now, total units of the phase): the one progress
type of every long run (audits, extraction, training, calibration)."""


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} items/s" if speed else "  ... items/s", style="cyan")


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressHook]:
    """A hook for `run_audit`: one bar per phase (method · wording)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console, transient=False) as bar:

        def hook(phase: str, advance: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            elif bar.tasks[tasks[phase]].total != total:  # the method probe's phase grows
                bar.update(tasks[phase], total=total)
            if advance:
                bar.advance(tasks[phase], advance)

        yield hook
