"""Bayesian Gaussian mixture models on PyMC and ArviZ.

Model factories return plain :class:`pymc.Model` objects, sampling returns
:class:`arviz.InferenceData`, and the summary and plot helpers take either.
"""

import importlib

# `em` is both a module and the function it defines: bind the function now, so that a later
# `import mixtures.em` elsewhere cannot shadow it (em imports NumPy and SciPy only).
from mixtures.em import EMResult, em

#: Public names and the module each lives in; imported on first use (PEP 562), so that
#: ``import mixtures.cli`` (and ``mixtures --help``) does not pay PyMC's import time.
_LAZY = {
    "assignment_probabilities": "mixtures.assignments",
    "coclustering": "mixtures.assignments",
    "occupied_components": "mixtures.assignments",
    "plot_coclustering": "mixtures.assignments",
    "predict": "mixtures.assignments",
    "predict_proba": "mixtures.assignments",
    "KChoice": "mixtures.selection",
    "choose_k": "mixtures.selection",
    "LabelSwitching": "mixtures.labels",
    "label_switching": "mixtures.labels",
    "relabel": "mixtures.labels",
    "FitResults": "mixtures.batch",
    "fit_many": "mixtures.batch",
    "list_datasets": "mixtures.data",
    "load_dataset": "mixtures.data",
    "CompiledMixture": "mixtures.engines",
    "available_samplers": "mixtures.engines",
    "choose_sampler": "mixtures.engines",
    "compile_model": "mixtures.engines",
    "log_evidence": "mixtures.evidence",
    "ConvergenceWarning": "mixtures.inference",
    "fit_advi": "mixtures.inference",
    "sample": "mixtures.inference",
    "sample_posterior_predictive": "mixtures.inference",
    "SamplingInterrupted": "mixtures.interrupt",
    "OrderedGaps": "mixtures.models",
    "full_mixture": "mixtures.models",
    "known_params_mixture": "mixtures.models",
    "shared_sd_mixture": "mixtures.models",
    "OrderedColumn": "mixtures.multivariate",
    "effective_components": "mixtures.multivariate",
    "mv_mixture": "mixtures.multivariate",
    "imputations": "mixtures.missing",
    "plot_ppc": "mixtures.plots",
    "plot_trace": "mixtures.plots",
    "plot_em_history": "mixtures.plots2d",
    "plot_mixture_2d": "mixtures.plots2d",
    "plot_ppc_2d": "mixtures.plots2d",
    "MFMSpec": "mixtures.mfm",
    "k_posterior": "mixtures.mfm",
    "filled_components": "mixtures.mfm",
    "mfm_diagnostics": "mixtures.mfm",
    "mfm_mixture": "mixtures.mfm",
    "plot_k_posterior": "mixtures.mfm",
    "MixtureSpec": "mixtures.spec",
    "Prior": "mixtures.spec",
    "spec_of": "mixtures.spec",
    "AssignmentGibbs": "mixtures.steps",
    "ConjugateMixtureGibbs": "mixtures.steps",
    "MvConjugateGibbs": "mixtures.steps",
    "summary_table": "mixtures.summaries",
}


_SUBMODULES = {
    "assignments", "batch", "calibration", "cli", "data", "diagnostics", "engines", "evidence",
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
