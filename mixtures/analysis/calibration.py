r"""Simulation-based calibration (SBC) of the univariate models, on :func:`mixtures.fit_many`.

For each simulation: draw the parameters from the model's resolved prior with NumPy (an
independent simulator, not PyMC's), simulate a data set, refit the model, and record the rank
of each true parameter among thinned posterior draws. If the sampler is calibrated the ranks
are uniform (Talts et al. 2018). Uniformity is tested per parameter by the simultaneous
ECDF band of Säilynoja, Bürkner and Vehtari (2022) and by a chi-square test on binned ranks,
both at a family-wise level (Bonferroni over the parameters).

Ordered means are drawn as sorted i.i.d. draws of their prior (the order statistics, which is
what PyMC's ordered transform on i.i.d. priors is). Unordered models need a sampler that
visits every labelling for their per-label ranks to be uniform; use ordered models here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mixtures.model.validation import check_integer

__all__ = ["SBCResult", "ecdf_band", "sbc", "simulate"]


# ------------------------------------------------------------------------------- simulator
def _draw_prior(prior, rng, floor: float = 0.0) -> np.ndarray:
    """One draw of a resolved prior, with NumPy/SciPy (truncated below `floor`)."""
    params = {k: np.asarray(v) for k, v in prior.params.items()}
    if prior.dist == "Dirichlet":
        return rng.dirichlet(params["a"])
    if prior.dist == "Normal":
        return rng.normal(params["mu"], params["sigma"])
    if prior.dist == "StudentT":
        shape = np.broadcast(params["mu"], params["sigma"], params["nu"]).shape
        return params["mu"] + params["sigma"] * rng.standard_t(params["nu"], size=shape)
    dist = prior.scipy()  # the scale families (HalfNormal, Gamma, ...)
    shape = np.broadcast(*params.values()).shape
    out = np.asarray(dist.rvs(size=shape, random_state=rng), dtype=float)
    while floor > 0 and np.any(out <= floor):  # the truncated prior, by rejection
        redo = out <= floor
        out[redo] = np.asarray(dist.rvs(size=shape, random_state=rng), dtype=float)[redo]
    return out


def simulate(spec, n_obs: int, rng) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw parameters from a univariate spec's prior, then a data set of `n_obs` points.

    Parameters
    ----------
    spec : MixtureSpec
        A univariate spec (:func:`mixtures.spec_of`).
    n_obs : int
    rng : numpy.random.Generator

    Returns
    -------
    (dict, numpy.ndarray)
        The true free parameters (``weights``, ``means``, ``sigma`` as the spec has them) and
        the simulated observations.
    """
    if not spec.univariate:
        raise ValueError(
            f"`spec` should be univariate (family 'normal' or 't'), but got {spec.family!r}"
        )
    k = spec.k
    truth = {"weights": _draw_prior(spec.priors["weights"], rng)}
    if "means" in spec.known:
        means = np.asarray(spec.known["means"])
    else:
        means = _draw_prior(spec.priors["means"], rng)
        if spec.ordered:
            means = np.sort(means)
        truth["means"] = means
    if "sigma" in spec.known:
        sigma = np.asarray(spec.known["sigma"])
    else:
        sigma = _draw_prior(spec.priors["sigma"], rng, spec.sigma_floor)
        truth["sigma"] = sigma
    sd = np.broadcast_to(sigma, (k,))
    z = rng.choice(k, size=n_obs, p=truth["weights"])
    if spec.family != "t":
        return truth, rng.normal(means[z], sd[z])
    if "nu" in spec.known:
        nu = np.asarray(spec.known["nu"])
    else:
        nu = truth["nu"] = _draw_prior(spec.priors["nu"], rng)
    return truth, means[z] + sd[z] * rng.standard_t(nu[z])


def _scalars(truth: dict) -> dict[str, float]:
    out = {}
    for name, value in truth.items():
        value = np.atleast_1d(value)
        if value.size == 1 and name == "sigma":
            out["sigma"] = float(value[0])
        else:
            out.update({f"{name}[{j}]": float(v) for j, v in enumerate(value)})
    return out


def _thinned(idata, n_ranks: int) -> dict[str, list[float]]:
    """Postprocess on the worker: `n_ranks` evenly spaced draws of every scalar parameter."""
    post = idata.posterior
    out = {}
    for name in ("weights", "means", "sigma", "nu"):
        if name not in post:
            continue
        arr = post[name].stack(sample=("chain", "draw")).transpose("sample", ...).values
        idx = np.linspace(0, arr.shape[0] - 1, n_ranks).round().astype(int)
        arr = arr[idx].reshape(n_ranks, -1)
        if arr.shape[1] == 1 and "component" not in post[name].dims:
            out[name] = arr[:, 0].tolist()
        else:
            out.update({f"{name}[{j}]": arr[:, j].tolist() for j in range(arr.shape[1])})
    if "diverging" in idata.sample_stats:
        out["_divergences"] = int(idata.sample_stats["diverging"].sum())
    return out


# ---------------------------------------------------------------------------- uniformity
@functools.lru_cache(maxsize=64)
def _adjusted_gamma(n: int, n_eval: int, alpha: float, n_sim: int = 2000, seed: int = 0):
    """Pointwise level whose pointwise binomial bands hold simultaneously with 1 - alpha.

    Säilynoja et al. (2022), the simulation method: the alpha-quantile over uniform samples
    of the smallest two-sided binomial tail probability along the ECDF.
    """
    rng = np.random.default_rng(seed)
    z = np.arange(1, n_eval) / n_eval
    u = np.sort(rng.uniform(size=(n_sim, n)), axis=1)
    counts = np.stack([np.searchsorted(row, z, side="right") for row in u])
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    gamma = 2 * np.minimum(lower, upper).min(axis=1)
    return float(np.quantile(gamma, alpha))


def ecdf_band(n: int, n_eval: int, alpha: float = 0.05):
    """Simultaneous 1 - `alpha` band for the ECDF of `n` uniform values at ``z = i / n_eval``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``z`` and the lower and upper bounds of the ECDF there.
    """
    gamma = _adjusted_gamma(int(n), int(n_eval), float(alpha))
    z = np.arange(1, n_eval) / n_eval
    lo = stats.binom.ppf(gamma / 2, n, z) / n
    hi = stats.binom.ppf(1 - gamma / 2, n, z) / n
    return z, lo, hi


def _fraction_ranks(ranks: np.ndarray, n_ranks: int) -> np.ndarray:
    return (ranks + 0.5) / (n_ranks + 1)


# -------------------------------------------------------------------------------- results
@dataclass
class SBCResult:
    """Ranks of the true parameters among thinned posterior draws, and their tests.

    Attributes
    ----------
    ranks : pandas.DataFrame
        One row per simulation, one column per scalar parameter; values 0..`n_ranks`.
    n_ranks : int
        Thinned draws per fit (ranks take ``n_ranks + 1`` values).
    fits : pandas.DataFrame
        :attr:`mixtures.FitResults.fits` of the refits (status, max r_hat, seconds, ...).
    level : float
        Family-wise level of the tests.
    """

    ranks: pd.DataFrame
    n_ranks: int
    fits: pd.DataFrame
    level: float = 0.01
    divergences: np.ndarray | None = None

    def tests(self, n_bins: int = 10) -> pd.DataFrame:
        """Per parameter: chi-square p-value (binned ranks) and whether the ECDF stays in band.

        Both at the family-wise `level` (Bonferroni over the parameters).
        """
        n, m = self.ranks.shape
        alpha = self.level / m
        n_eval = min(n, self.n_ranks + 1)
        z, lo, hi = ecdf_band(n, n_eval, alpha)
        rows = {}
        for name in self.ranks:
            r = self.ranks[name].to_numpy()
            bins = np.floor(r * n_bins / (self.n_ranks + 1)).astype(int)
            counts = np.bincount(bins, minlength=n_bins)
            p_chi2 = stats.chisquare(counts).pvalue
            ecdf = np.searchsorted(np.sort(_fraction_ranks(r, self.n_ranks)), z, side="right") / n
            inside = bool(np.all((ecdf >= lo) & (ecdf <= hi)))
            rows[name] = {"chi2_p": p_chi2, "chi2_pass": p_chi2 > alpha, "ecdf_in_band": inside}
        return pd.DataFrame(rows).T

    @property
    def passed(self) -> bool:
        """Whether every parameter's ECDF stays inside its simultaneous band."""
        return bool(self.tests()["ecdf_in_band"].all())

    @property
    def rates(self) -> dict[str, float]:
        """Share of fits that failed, had r_hat > 1.01, or had any divergence."""
        fits = self.fits
        ok = fits["status"] == "ok"
        div = self.divergences if self.divergences is not None else np.zeros(int(ok.sum()))
        return {
            "failed": float((~ok).mean()),
            "r_hat_above_1.01": float((fits.loc[ok, "max_r_hat"] > 1.01).mean()),
            "any_divergence": float((np.asarray(div) > 0).mean()) if len(div) else 0.0,
        }

    def plot_ranks(self, *, n_bins: int = 10, axes=None):
        """Rank histograms, one panel per parameter, with the 99% band of a uniform bin count."""
        import matplotlib.pyplot as plt

        names = list(self.ranks)
        if axes is None:
            _, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.4), squeeze=False)
            axes = axes[0]
        n = len(self.ranks)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / n_bins)
        for ax, name in zip(axes, names, strict=False):
            ax.axhspan(lo, hi, color="0.85", zorder=0)
            ax.hist(self.ranks[name], bins=n_bins, range=(0, self.n_ranks + 1), color="C0")
            ax.set_title(name)
            ax.set_yticks([])
            ax.set_xlabel("rank")
        return axes

    def plot_ecdf(self, *, ax=None):
        """ECDF minus the uniform CDF of each parameter's ranks, in the simultaneous band."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        n, m = self.ranks.shape
        z, lo, hi = ecdf_band(n, min(n, self.n_ranks + 1), self.level / m)
        ax.fill_between(z, lo - z, hi - z, step="mid", color="0.85", label="simultaneous band")
        for name in self.ranks:
            u = np.sort(_fraction_ranks(self.ranks[name].to_numpy(), self.n_ranks))
            ecdf = np.searchsorted(u, z, side="right") / n
            ax.step(z, ecdf - z, where="mid", label=name)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("fractional rank")
        ax.set_ylabel("ECDF - uniform")
        ax.legend(fontsize="small", ncols=2)
        return ax


# ---------------------------------------------------------------------------------- driver
def sbc(
    model,
    *,
    n_sims: int = 100,
    n_obs: int | None = None,
    fit_model=None,
    n_ranks: int = 99,
    draws: int = 500,
    tune: int = 300,
    chains: int = 2,
    level: float = 0.01,
    random_seed=None,
    client=None,
    backend: str = "serial",
    progressbar: bool | None = None,
    **sample_kwargs,
) -> SBCResult:
    """Simulation-based calibration of a univariate model (and its sampler).

    Parameters
    ----------
    model : pymc.Model
        A univariate model from a `mixtures` factory: its resolved prior generates the
        simulations (and, without `fit_model`, the fits).
    n_sims : int, default 100
        Simulated data sets.
    n_obs : int, optional
        Observations per data set; default: as many as the model was built on.
    fit_model : pymc.Model, optional
        Fit with this model instead (a negative control: a different prior must fail).
    n_ranks : int, default 99
        Thinned posterior draws per fit; ranks take ``n_ranks + 1`` values.
    draws, tune, chains : int
        Per fit; ``chains * draws`` should be well above `n_ranks`.
    level : float, default 0.01
        Family-wise level of the uniformity tests.
    random_seed : int, optional
    client, backend
        As in :func:`mixtures.fit_many` (default: serial, in this process).
    progressbar : bool, optional
    **sample_kwargs
        Passed to each fit (e.g. ``tempering=None``, ``sampler="pymc"``).

    Returns
    -------
    SBCResult
    """
    spec = _check_sbc(model, n_sims, n_ranks, chains * draws)
    n_obs = int(spec.built_on.get("n_obs", 100)) if n_obs is None else int(n_obs)
    rng = np.random.default_rng(random_seed)
    truths, datasets = _simulations(spec, n_sims, n_obs, rng)
    run = {"client": client, "backend": None if client is not None else backend,
           "draws": draws, "tune": tune, "chains": chains, "progressbar": progressbar}  # fmt: skip
    fit = fit_model if fit_model is not None else model
    fits = _fit_simulations(fit, datasets, n_ranks, int(rng.integers(2**31)), run, sample_kwargs)
    ranks, divergences = _ranks(truths, fits.outputs)
    return SBCResult(ranks, n_ranks, fits.fits, level, divergences)


def _check_sbc(model, n_sims, n_ranks: int, n_draws: int):
    """Return `model`'s spec, after checking what :func:`sbc` needs."""
    from mixtures.model.spec import spec_of

    spec = spec_of(model)
    if not spec.univariate:
        raise ValueError("`model` should be univariate: SBC here covers the univariate factories")
    check_integer(n_sims, "n_sims", minimum=10)
    if n_draws < n_ranks:
        raise ValueError(f"`chains * draws` should be >= n_ranks = {n_ranks}, but got {n_draws}")
    return spec


def _simulations(spec, n_sims: int, n_obs: int, rng) -> tuple[list[dict], list[np.ndarray]]:
    """Return `n_sims` true parameter sets (as scalars) and the data sets drawn from them."""
    truths, datasets = [], []
    for _ in range(n_sims):
        truth, y = simulate(spec, n_obs, rng)
        truths.append(_scalars(truth))
        datasets.append(y)
    return truths, datasets


def _fit_simulations(model, datasets, n_ranks: int, seed: int, run: dict, sample_kwargs: dict):
    """Fit `model` to every data set (:func:`mixtures.fit_many`), keeping thinned draws."""
    from mixtures.batch import fit_many

    sample_kwargs = {"log_likelihood": False, **sample_kwargs}
    return fit_many(
        model,
        datasets,
        **run,
        random_seed=seed,
        postprocess=functools.partial(_thinned, n_ranks=n_ranks),
        **sample_kwargs,
    )


def _ranks(truths: list[dict], outputs: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """Return each fitted simulation's ranks of the truth (a row) and its divergence counts."""
    names = list(truths[0])
    rows, divergences = [], []
    for i, truth in enumerate(truths):
        if i not in outputs:
            continue
        draws_i = outputs[i]
        rows.append({p: int(np.sum(np.asarray(draws_i[p]) < truth[p])) for p in names})
        divergences.append(draws_i.get("_divergences", 0))
    return pd.DataFrame(rows, columns=names), np.asarray(divergences)
