"""Bayesian Gaussian mixture models on PyMC and ArviZ.

Model factories return plain :class:`pymc.Model` objects, sampling returns
:class:`arviz.InferenceData`, and the summary and plot helpers take either.
"""

import importlib
import sys

import mixtures.analysis.em as _em_module
from mixtures._moved import MovedModules

# `em` is both the function and, before the subpackages, the module `mixtures.em`: bind the
# function here and the old module path to its module now, so that `import mixtures.em` cannot
# rebind the attribute `mixtures.em` to the module (em imports NumPy and SciPy only).
from mixtures.analysis.em import EMResult, em

sys.modules.setdefault("mixtures.em", _em_module)
if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(MovedModules())

#: Public names and the module each lives in; imported on first use (PEP 562), so that
#: ``import mixtures.cli`` (and ``mixtures --help``) does not pay PyMC's import time.
_LAZY = {
    "assignment_probabilities": "mixtures.analysis.assignments",
    "coclustering": "mixtures.analysis.assignments",
    "occupied_components": "mixtures.analysis.assignments",
    "plot_coclustering": "mixtures.analysis.assignments",
    "predict": "mixtures.analysis.assignments",
    "predict_proba": "mixtures.analysis.assignments",
    "KChoice": "mixtures.analysis.selection",
    "choose_k": "mixtures.analysis.selection",
    "LabelSwitching": "mixtures.analysis.labels",
    "label_switching": "mixtures.analysis.labels",
    "relabel": "mixtures.analysis.labels",
    "FitResults": "mixtures.batch",
    "fit_many": "mixtures.batch",
    "list_datasets": "mixtures.data",
    "load_dataset": "mixtures.data",
    "CompiledMixture": "mixtures.engines",
    "available_samplers": "mixtures.engines",
    "choose_sampler": "mixtures.engines",
    "compile_model": "mixtures.engines",
    "log_evidence": "mixtures.analysis.evidence",
    "ConvergenceWarning": "mixtures.engines.sampling",
    "fit_advi": "mixtures.engines.sampling",
    "sample": "mixtures.engines.sampling",
    "sample_posterior_predictive": "mixtures.engines.sampling",
    "SamplingInterrupted": "mixtures.interrupt",
    "OrderedGaps": "mixtures.model.univariate",
    "full_mixture": "mixtures.model.univariate",
    "known_params_mixture": "mixtures.model.univariate",
    "shared_sd_mixture": "mixtures.model.univariate",
    "OrderedColumn": "mixtures.model.multivariate",
    "effective_components": "mixtures.model.multivariate",
    "mv_mixture": "mixtures.model.multivariate",
    "imputations": "mixtures.model.missing",
    "plot_ppc": "mixtures.plots.univariate",
    "plot_trace": "mixtures.plots.univariate",
    "plot_em_history": "mixtures.plots.em",
    "plot_mixture_2d": "mixtures.plots.two_d",
    "plot_ppc_2d": "mixtures.plots.two_d",
    "MFMSpec": "mixtures.model.mfm",
    "k_posterior": "mixtures.model.mfm",
    "filled_components": "mixtures.model.mfm",
    "mfm_diagnostics": "mixtures.model.mfm",
    "mfm_mixture": "mixtures.model.mfm",
    "plot_k_posterior": "mixtures.model.mfm",
    "MixtureSpec": "mixtures.model.spec",
    "Prior": "mixtures.model.spec",
    "spec_of": "mixtures.model.spec",
    "AssignmentGibbs": "mixtures.engines.steps",
    "ConjugateMixtureGibbs": "mixtures.engines.steps",
    "MvConjugateGibbs": "mixtures.engines.steps",
    "summary_table": "mixtures.analysis.summaries",
}


_SUBMODULES = {
    "analysis", "assignments", "batch", "calibration", "cli", "data", "diagnostics", "engines",
    "evidence", "model",
    "inference", "interrupt", "labels", "loglik", "mfm", "models", "multivariate", "plots",
    "plots2d", "progress", "selection", "spec", "steps", "summaries",
}  # fmt: skip


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"mixtures.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mixtures' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__version__ = "0.1.0"

__all__ = [
    "AssignmentGibbs",
    "CompiledMixture",
    "ConjugateMixtureGibbs",
    "ConvergenceWarning",
    "EMResult",
    "FitResults",
    "KChoice",
    "LabelSwitching",
    "MFMSpec",
    "MixtureSpec",
    "MvConjugateGibbs",
    "OrderedColumn",
    "OrderedGaps",
    "Prior",
    "SamplingInterrupted",
    "assignment_probabilities",
    "available_samplers",
    "choose_k",
    "choose_sampler",
    "coclustering",
    "compile_model",
    "effective_components",
    "em",
    "filled_components",
    "fit_advi",
    "fit_many",
    "full_mixture",
    "imputations",
    "k_posterior",
    "known_params_mixture",
    "label_switching",
    "list_datasets",
    "load_dataset",
    "log_evidence",
    "mfm_diagnostics",
    "mfm_mixture",
    "mv_mixture",
    "occupied_components",
    "plot_coclustering",
    "plot_em_history",
    "plot_k_posterior",
    "plot_mixture_2d",
    "plot_ppc",
    "plot_ppc_2d",
    "plot_trace",
    "predict",
    "predict_proba",
    "relabel",
    "sample",
    "sample_posterior_predictive",
    "shared_sd_mixture",
    "spec_of",
    "summary_table",
]
