"""Writing into a user's folders: whole files or none, with the permissions of a plain open."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write", "deferred_sigint", "plain_mode", "umask", "write_into"]


def umask() -> int:
    """Return the process's umask (without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_mode(directory: bool = False) -> int:
    """Return the mode a plain ``open`` (or ``mkdir``) would give a new file (or folder)."""
    return (0o777 if directory else 0o666) & ~umask()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside `path`, then rename it over `path`.

    The file is whole or absent, never half-written; it gets the permissions a plain ``open``
    would give it (``mkstemp`` makes it 0600).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, plain_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_into(
    folder: Path, write: Callable[[Path], list[str]], stale: Callable[[], set[str]] = set
) -> list[str]:
    """Write a set of files into `folder`, all of them or none; nothing else in it is touched.

    ``write(staging)`` writes the files into a staging folder beside `folder` and returns
    their names. A new `folder` is that staging folder renamed; into an existing one the
    files are renamed one by one, in the order given (Ctrl-C held back for those few
    renames), and then the names ``stale()`` lists that this call did not write are removed.
    An interrupted or failed call leaves `folder` as it was.

    Returns
    -------
    list of str
        The names written.
    """
    folder = Path(folder)
    exists = folder.is_dir()
    parent = folder if exists else folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.staging-"))
    try:
        names = write(staging)
        with deferred_sigint():
            if not exists:
                os.chmod(staging, plain_mode(directory=True))  # mkdtemp makes it 0700
                os.replace(staging, folder)
            else:
                old = stale() - set(names)
                for name in names:
                    os.replace(staging / name, folder / name)
                for name in old:
                    (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


@contextlib.contextmanager
def deferred_sigint() -> Iterator[list]:
    """Hold back Ctrl-C for the block (a few renames); yield a list that records one if it came.

    Only the main thread can install signal handlers; elsewhere the block runs unguarded.
    """
    caught: list = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous)
