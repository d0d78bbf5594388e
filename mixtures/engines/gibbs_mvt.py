"""The Gibbs engine's multivariate Student-t family (``mv_mixture(..., family="t")``).

The multivariate engine (:mod:`mixtures.engines.gibbs_mv`) runs a family other than the
multivariate Normal through the same runner; this module is its registry line there
(``gibbs_mv.FAMILY_HOOKS["mvt"]``). The family's own state (nu and the precision weights), its
prior arrays, records and posterior variables are the univariate t's
(:mod:`mixtures.engines.gibbs_t`); the kernel is :func:`mixtures._kernels_mvt.mvt_run`.
"""

from __future__ import annotations

from mixtures._kernels_mvt import mvt_run
from mixtures.engines.gibbs_t import initial_state, kernel_config, outputs, posterior

__all__ = ["initial_state", "kernel_config", "outputs", "posterior", "run"]

run = mvt_run
