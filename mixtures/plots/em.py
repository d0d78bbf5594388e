"""EM's figure: the negative log-likelihood against the iteration (any number of features)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mixtures.analysis.em import EMResult

__all__ = ["plot_em_history"]


def plot_em_history(result: EMResult, *, ax=None, log_scale: bool = False):
    """Plot EM's negative log-likelihood against the iteration (0 = the start).

    Parameters
    ----------
    result : EMResult
        From :func:`mixtures.em`.
    ax : matplotlib.axes.Axes, optional
    log_scale : bool, default False
        Log y axis (as in the teaching notebook), if every value is positive.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not isinstance(result, EMResult):
        raise ValueError(f"`result` should be an EMResult, but got {type(result).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    nll = result.nll_history
    ax.plot(np.arange(nll.size), nll, "o-", ms=3)
    if log_scale and (nll > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="EM iteration", ylabel="negative log-likelihood")
    status = "converged" if result.converged else "not converged"
    ax.set_title(f"EM: {status} after {result.n_iter} iterations")
    return ax
