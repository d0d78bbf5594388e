"""Convergence checks after sampling, and the up-front check for degenerate data."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np

from mixtures.models import PROPER_AT_ZERO

__all__ = ["ConvergenceWarning", "check_degenerate", "warn_convergence"]

#: Thresholds of Vehtari et al. (2021), as used by PyMC and ArviZ.
RHAT_MAX = 1.01
ESS_BULK_MIN = 400

_PARAMS = ("weights", "means", "sigma")


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics fall short of the usual reliability thresholds."""


def check_degenerate(y: np.ndarray, spec) -> None:
    """Refuse data on which the posterior is improper: too few distinct values for the sds.

    With per-component sds, a component holding two or more tied values alone has a
    likelihood that grows without bound as its sd goes to 0, and under a prior with positive
    density at 0 the posterior is improper (samplers spin there). The case is detected up
    front when the data have fewer than 2 k distinct values (k or fewer for a shared sd), and
    the sd prior is not truncated away from 0 (``sigma_floor``; tied data with at least two
    distinct values get one by default) and does not vanish at 0 itself.

    Raises
    ------
    ValueError
        Naming the cause and what to do.
    """
    if spec is None or spec.family != "normal" or "sigma" not in spec.priors:
        return
    if spec.sigma_floor > 0:  # the sd prior is truncated: the posterior is proper
        return
    prior = spec.priors["sigma"]
    if prior.dist in PROPER_AT_ZERO or (
        prior.dist == "Uniform" and (prior.params["lower"] > 0).all()
    ):
        return
    distinct = np.unique(y).size
    k = spec.k
    limit = k if spec.shared_sd else 2 * k - 1
    if distinct <= limit:
        what = "a shared sd" if spec.shared_sd else "their own sds"
        raise ValueError(
            f"`y` should have more than {limit} distinct values for k = {k} components with "
            f"{what}, but got {distinct}: with tied values an sd can shrink to 0, where the "
            "likelihood grows without bound and the posterior is improper. Use fewer "
            "components, a sigma prior that vanishes at 0 (priors={'sigma': {'dist': "
            "'InverseGamma', 'alpha': 3, 'beta': 1}} or a Uniform with lower > 0), or known "
            "sds (sigma=...)"
        )


def warn_convergence(idata: az.InferenceData) -> list[str]:
    """Warn about parameters with r_hat > 1.01 or bulk ESS < 400, and about divergences.

    Parameters
    ----------
    idata : arviz.InferenceData
        A sampled posterior.

    Returns
    -------
    list of str
        The problems found (empty if none); each is also issued as a
        :class:`ConvergenceWarning`.
    """
    names = [n for n in _PARAMS if n in idata.posterior]
    problems = []
    if names:
        with np.errstate(invalid="ignore", divide="ignore"):  # constant chains give NaN
            diag = az.summary(idata, var_names=names, kind="diagnostics")
        # quantities fixed by construction (weights of a one-component model) have no r_hat
        diag = diag.loc[[not _constant(idata.posterior, label) for label in diag.index]]
        if idata.posterior.sizes["chain"] > 1:
            bad_rhat = diag.index[~(diag["r_hat"] <= RHAT_MAX)].tolist()
            if bad_rhat:
                problems.append(f"r_hat > {RHAT_MAX} for {', '.join(bad_rhat)}")
        bad_ess = diag.index[~(diag["ess_bulk"] >= ESS_BULK_MIN)].tolist()
        if bad_ess:
            problems.append(f"bulk ESS < {ESS_BULK_MIN} for {', '.join(bad_ess)}")
    if "diverging" in idata.sample_stats:
        n_div = int(idata.sample_stats["diverging"].sum())
        if n_div:
            problems.append(f"{n_div} divergent transition(s) after tuning")
    for problem in problems:
        warnings.warn(problem, ConvergenceWarning, stacklevel=3)
    return problems


def _constant(posterior, label: str) -> bool:
    """Whether the scalar `label` (ArviZ's ``name[i]`` spelling) never varies over draws."""
    name, _, rest = label.partition("[")
    var = posterior[name]
    if rest:
        dims = [d for d in var.dims if d not in ("chain", "draw")]
        parts = [p.strip() for p in rest.rstrip("]").split(",")]
        selection = {}
        for dim, part in zip(dims, parts):
            coords = [str(c) for c in var[dim].values]
            selection[dim] = coords.index(part) if part in coords else int(part)
        var = var.isel(selection)
    return bool(np.ptp(var.values) == 0)
