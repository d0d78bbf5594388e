"""Model building: the resolved spec and its priors, the factories, densities and validation.

The factories are univariate (:mod:`~mixtures.model.univariate`), multivariate
(:mod:`~mixtures.model.multivariate`) and the mixture of finite mixtures
(:mod:`~mixtures.model.mfm`, :mod:`~mixtures.model.mfm_mv`); the component log-densities are in
:mod:`~mixtures.model.densities`, and one family object per component family (its weighted
log-density, the names of its parameters) in :mod:`~mixtures.model.components`.
"""
