"""Gibbs step methods for PyMC's own loop (user-built compound steps, latent multivariate fits).

Our own engine (:mod:`mixtures.engines.gibbs`) does not use them; PyMC's engine does, for latent
models, and users can combine them with any PyMC step.
"""

from mixtures.engines.steps.assignment import AssignmentGibbs
from mixtures.engines.steps.conjugate import ConjugateMixtureGibbs, MvConjugateGibbs

__all__ = ["AssignmentGibbs", "ConjugateMixtureGibbs", "MvConjugateGibbs"]
