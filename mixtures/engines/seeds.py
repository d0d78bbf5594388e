"""Seeds: every engine derives its integer seeds from the user's `random_seed` here.

:func:`mixtures.sample` and the other entry points take ``random_seed`` as an int, a
:class:`numpy.random.Generator` or None, as PyMC does; an engine gets one integer drawn from
it (:func:`one_seed`), and PyMC's loop one integer per chain (:func:`chain_seeds`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEED_BOUND", "chain_seeds", "one_seed"]

#: Integer seeds are drawn from ``[0, SEED_BOUND)``.
SEED_BOUND = 2**30


def one_seed(random_seed) -> int | None:
    """Return one integer seed drawn from `random_seed` (None stays None: fresh entropy).

    Parameters
    ----------
    random_seed : int, numpy.random.Generator or None
        An int or None seeds a new generator; a Generator is drawn from (and advances).

    Returns
    -------
    int or None
        In ``[0, SEED_BOUND)``.

    Examples
    --------
    >>> from mixtures.engines.seeds import one_seed
    >>> one_seed(1) == one_seed(1), one_seed(None)
    (True, None)
    """
    if random_seed is None:
        return None
    return int(np.random.default_rng(random_seed).integers(SEED_BOUND))


def chain_seeds(seed: int | None, chains: int) -> list[int]:
    """Return one integer seed per chain, reproducible from `seed` (None: fresh entropy).

    Parameters
    ----------
    seed : int or None
    chains : int

    Returns
    -------
    list of int
        `chains` seeds in ``[0, SEED_BOUND)``.
    """
    return [int(s) for s in np.random.default_rng(seed).integers(SEED_BOUND, size=chains)]
