"""Figures, univariate and two-dimensional; every plot takes ``ax=`` and returns its axes.

Univariate: the posterior predictive KDE overlay and the trace. Two-dimensional: the fitted
ellipses and the 2-D predictive density. EM: its optimisation history.
"""

from mixtures.plots.em import plot_em_history
from mixtures.plots.two_d import PPC_2D_MAX_POINTS, plot_mixture_2d, plot_ppc_2d
from mixtures.plots.univariate import PPC_MAX_POINTS, plot_ppc, plot_trace

__all__ = [
    "PPC_2D_MAX_POINTS",
    "PPC_MAX_POINTS",
    "plot_em_history",
    "plot_mixture_2d",
    "plot_ppc",
    "plot_ppc_2d",
    "plot_trace",
]
