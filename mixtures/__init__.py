"""Bayesian Gaussian mixture models on PyMC and ArviZ.

Model factories return plain :class:`pymc.Model` objects, sampling returns
:class:`arviz.InferenceData`, and the summary and plot helpers take either.
"""

from mixtures.data import list_datasets, load_dataset
from mixtures.em import EMResult, em
from mixtures.engines import CompiledMixture, available_samplers, choose_sampler, compile_model
from mixtures.evidence import log_evidence
from mixtures.inference import (
    ConvergenceWarning,
    fit_advi,
    sample,
    sample_posterior_predictive,
)
from mixtures.interrupt import SamplingInterrupted
from mixtures.models import OrderedGaps, full_mixture, known_params_mixture, shared_sd_mixture
from mixtures.multivariate import OrderedColumn, effective_components, mv_mixture
from mixtures.plots import plot_ppc, plot_trace
from mixtures.plots2d import plot_em_history, plot_mixture_2d, plot_ppc_2d
from mixtures.spec import MixtureSpec, Prior, spec_of
from mixtures.steps import AssignmentGibbs, ConjugateMixtureGibbs, MvConjugateGibbs
from mixtures.summaries import summary_table

__version__ = "0.1.0"

__all__ = [
    "AssignmentGibbs",
    "CompiledMixture",
    "ConjugateMixtureGibbs",
    "ConvergenceWarning",
    "EMResult",
    "MixtureSpec",
    "MvConjugateGibbs",
    "OrderedColumn",
    "OrderedGaps",
    "Prior",
    "SamplingInterrupted",
    "available_samplers",
    "choose_sampler",
    "compile_model",
    "effective_components",
    "em",
    "fit_advi",
    "full_mixture",
    "known_params_mixture",
    "list_datasets",
    "load_dataset",
    "log_evidence",
    "mv_mixture",
    "plot_em_history",
    "plot_mixture_2d",
    "plot_ppc",
    "plot_ppc_2d",
    "plot_trace",
    "sample",
    "sample_posterior_predictive",
    "shared_sd_mixture",
    "spec_of",
    "summary_table",
]
