"""One Ctrl-C stops a whole run, and a partial run is never returned as a complete one.

PyMC's sequential sampler catches ``KeyboardInterrupt`` per chain, so each Ctrl-C ends only
the current chain and the next one starts; it then returns the partial trace. Here a run that
was interrupted raises :class:`SamplingInterrupted` (a ``KeyboardInterrupt``) saying how far it
got; nothing drawn is returned.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["SamplingInterrupted", "stop_on_interrupt"]


class SamplingInterrupted(KeyboardInterrupt):
    """Sampling was interrupted (Ctrl-C); the draws were discarded."""


class _Flag:
    def __init__(self):
        self.raised = False

    def callback(self, *args, **kwargs):
        """PyMC ``callback``: end every remaining chain at its first draw once interrupted."""
        if self.raised:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_interrupt(what: str):
    """Run a sampler so that one Ctrl-C stops all of it and raises :class:`SamplingInterrupted`.

    Yields a flag object whose ``callback`` is to be passed to :func:`pymc.sample`.
    """
    flag = _Flag()
    previous = None
    if threading.current_thread() is threading.main_thread():

        def handler(signum, frame):
            flag.raised = True
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, handler)
    message = (
        f"{what} was interrupted (Ctrl-C); the partial draws were discarded, nothing is returned"
    )
    try:
        yield flag
    except BaseException as err:
        if isinstance(err, SamplingInterrupted):
            raise
        if flag.raised or isinstance(err, KeyboardInterrupt):
            raise SamplingInterrupted(message) from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if flag.raised:  # PyMC swallowed the interrupt and returned a partial trace
        raise SamplingInterrupted(message)
