"""Progress bars for our own loops (rich, which PyMC already depends on), and their default."""

from __future__ import annotations

import contextlib
import os
import sys
import time

__all__ = ["LineProgress", "default_progressbar", "progress_bar", "stderr_is_terminal"]

#: Seconds between two progress lines where stderr is not a terminal.
LINE_EVERY = 10.0


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (rich draws bars there; elsewhere we print lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """Progress as a line on stderr every `every` seconds: for logs, CI jobs, notebook logs.

    Rich draws nothing useful where stderr is not a terminal; a long run would print nothing
    for minutes. ``advance(n)`` counts; a line ``"<description>: 40% (400/1000), 12 s"`` is
    printed at most every `every` seconds, and once at the end (:meth:`close`).
    """

    def __init__(self, total: int | None, description: str, every: float | None = None):
        self.total, self.description = total, description
        self.every = LINE_EVERY if every is None else every
        self.done = 0
        self._start = self._last = time.perf_counter()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self._start
        if self.total:
            share = f"{self.done / self.total:.0%} ({self.done}/{self.total})"
        else:
            share = str(self.done)
        return f"{self.description}: {share}, {elapsed:.0f} s"

    def advance(self, n: int = 1) -> None:
        """Count `n` more steps; print a line if `every` seconds have passed."""
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            print(self._line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        """Print the final line."""
        print(self._line(), file=sys.stderr, flush=True)


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
    """Yield an object with ``advance()``; show progress when `show` is true.

    A rich bar on a terminal; elsewhere (a log file, a CI job) a line every
    :data:`LINE_EVERY` seconds (:class:`LineProgress`). `total` None (a generator of unknown
    length) counts without an end.
    """
    if not show:
        yield _Bar(None, None, total)
        return
    if not stderr_is_terminal():
        lines = LineProgress(total, description)
        yield lines
        lines.close()
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
