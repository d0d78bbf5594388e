"""Bayesian Gaussian mixture models on PyMC and ArviZ.

Model factories return plain :class:`pymc.Model` objects, sampling returns
:class:`arviz.InferenceData`, and the summary and plot helpers take either.
"""

from mixtures.assignments import AssignmentGibbs
from mixtures.conjugate import ConjugateMixtureGibbs
from mixtures.data import list_datasets, load_dataset
from mixtures.engines import CompiledMixture, available_samplers, choose_sampler, compile_model
from mixtures.inference import ConvergenceWarning, sample, sample_posterior_predictive
from mixtures.models import OrderedGaps, full_mixture, known_params_mixture, shared_sd_mixture
from mixtures.plots import plot_ppc, plot_trace
from mixtures.summaries import summary_table

__version__ = "0.1.0"

__all__ = [
    "AssignmentGibbs",
    "CompiledMixture",
    "ConjugateMixtureGibbs",
    "ConvergenceWarning",
    "OrderedGaps",
    "available_samplers",
    "choose_sampler",
    "compile_model",
    "full_mixture",
    "known_params_mixture",
    "list_datasets",
    "load_dataset",
    "plot_ppc",
    "plot_trace",
    "sample",
    "sample_posterior_predictive",
    "shared_sd_mixture",
    "summary_table",
]
