"""Progress bars for our own loops (rich, which PyMC already depends on), and their default."""

from __future__ import annotations

import contextlib
import os

__all__ = ["default_progressbar", "progress_bar"]


def default_progressbar() -> bool:
    """Progress bars are on unless the environment variable ``MIXTURES_PROGRESSBAR`` is 0."""
    return os.environ.get("MIXTURES_PROGRESSBAR", "1").strip().lower() not in ("0", "false", "no")


class _Bar:
    def __init__(self, progress, task, total):
        self._progress, self._task = progress, task
        self._every = max(1, (total or 0) // 100)
        self._pending = 0

    def advance(self, n: int = 1) -> None:
        self._pending += n
        if self._pending >= self._every and self._progress is not None:
            self._progress.update(self._task, advance=self._pending)
            self._pending = 0


@contextlib.contextmanager
def progress_bar(total: int | None, show: bool, description: str):
    """Yield an object with ``advance()``; draw a rich bar when `show` is true.

    `total` None (a generator of unknown length) draws a count without an end.
    """
    if not show:
        yield _Bar(None, None, total)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        bar = _Bar(progress, task, total)
        yield bar
        if total is not None:
            progress.update(task, completed=total)
