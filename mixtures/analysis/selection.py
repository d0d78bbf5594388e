r"""How many components: three answers in one call, and how far they agree.

:func:`choose_k` fits the mixture for each ``k`` in a range (one job per ``k`` through
:func:`mixtures.fit_many`'s machinery, so a Dask ``client`` runs them side by side) and
compares them by

(a) the **log marginal likelihood** :math:`\log p(y \mid k)` (:func:`mixtures.log_evidence`:
    bridge sampling from the posterior draws, which does not suffer the tempered path's phase
    transition that can throw stepping-stone off by tens of nats), with its Monte Carlo error;
    under a uniform prior on ``k`` it gives :math:`p(k \mid y)`;
(b) **PSIS-LOO** (:func:`arviz.loo`), the expected log predictive density of a new point,
    with its standard error and Pareto-k diagnostics. On mixtures LOO tends to keep
    improving, or to stay flat, with superfluous components, and its Pareto k is often high
    there (Vehtari et al.); it answers "which k predicts best", not "how many clusters";
(c) the **sparse overfitted mixture** (Rousseau and Mengersen 2011; Malsiner-Walli et al.
    2016): one fit with ``k_max`` components and a Dirichlet(``sparse_alpha``) weight prior
    that empties the components the data do not need; the posterior of the number of
    occupied components estimates ``k``.

The recommendation is the ``k`` of highest marginal likelihood among the fits that pass the
convergence checks (an unconverged fit is run again four times longer first); the sentence
says how much posterior mass it gets, which fits were rerun or left out, and whether LOO and
the sparse fit agree.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

__all__ = ["KChoice", "choose_k"]


class KChoice:
    """The result of :func:`choose_k`.

    Attributes
    ----------
    best : int
        The recommended number of components (highest log marginal likelihood).
    table : pandas.DataFrame
        One row per ``k``: ``log_evidence`` and its ``log_evidence_se``, ``posterior_prob``
        (uniform prior on the ``k`` compared), ``elpd_loo``, ``elpd_loo_se``, ``p_loo``,
        ``pareto_k_bad`` (observations with Pareto k > 0.7), ``sparse_prob`` (posterior
        probability of ``k`` occupied components in the sparse fit), ``evidence_method``,
        ``max_r_hat``, ``converged`` (passed the convergence checks, after a rerun if
        one was needed), ``seconds``.
    certainty : str
        How sure the recommendation is in one phrase (``"sure"``, ``"fairly sure"``,
        ``"not sure"``, ...), the same in :attr:`message` and in the plot's title.
    status : dict
        ``rerun`` (fits run again longer), ``unconverged`` (still failing after that) and
        ``warnings`` (each unconverged fit's convergence warnings).
    fits : dict
        ``k`` -> InferenceData, and ``"sparse"`` -> the sparse fit.
    message : str
        How sure the recommendation is, and why.
    """

    def __init__(self, table, fits, sparse_k, alpha, status: dict | None = None):
        self.table = table
        self.fits = fits
        self.status = status or {"rerun": [], "unconverged": [], "warnings": {}}
        converged = table[table["converged"]] if "converged" in table else table
        candidates = converged if len(converged) else table
        self.best = int(candidates["log_evidence"].idxmax())
        self._sparse_k, self._alpha = sparse_k, alpha
        self.certainty = self._certainty()
        self.message = self._sentence()

    def _certainty(self) -> str:
        """One word for how sure the recommendation is: the message's and the plot's."""
        t = self.table
        if len(t) == 1:
            return "the only k compared"
        if "converged" in t and not t.loc[self.best, "converged"]:
            return "unreliable: no fit converged"
        p = t.loc[self.best, "posterior_prob"]
        return "sure" if p > 0.95 else "fairly sure" if p > 0.75 else "not sure"

    def __repr__(self) -> str:
        return f"KChoice(best={self.best})\n{self.message}"

    def _sentence(self) -> str:
        t, best = self.table, self.best
        p = t.loc[best, "posterior_prob"]
        others = t.drop(index=best)
        parts = []
        if len(others):
            runner = int(others["log_evidence"].idxmax())
            bf = t.loc[best, "log_evidence"] - t.loc[runner, "log_evidence"]
            se = float(np.hypot(t.loc[best, "log_evidence_se"], t.loc[runner, "log_evidence_se"]))
            parts.append(
                f"k = {best}: {self.certainty}. Its marginal likelihood gives it posterior "
                f"probability {p:.2f} under a uniform prior on k in "
                f"{t.index.min()}..{t.index.max()} (log Bayes factor {bf:.1f} +- {se:.1f} "
                f"over k = {runner})."
            )
        else:
            parts.append(f"k = {best} (the only k compared).")
        parts.extend(self._convergence_sentences())
        loo_best = int(t["elpd_loo"].idxmax())
        within = t["elpd_loo"].max() - t["elpd_loo"] <= 2 * t["elpd_loo_se"].fillna(np.inf)
        tied = sorted(int(k) for k in t.index[within])
        if loo_best == best:
            parts.append("PSIS-LOO agrees.")
        elif best in tied:
            parts.append(
                f"PSIS-LOO cannot tell k = {', '.join(map(str, tied))} apart (within 2 se of "
                f"its best, k = {loo_best})."
            )
        else:
            parts.append(f"PSIS-LOO prefers k = {loo_best}.")
        bad = t[t["pareto_k_bad"] > 0]
        if len(bad):
            ks = ", ".join(str(int(k)) for k in bad.index)
            parts.append(
                f"Pareto k > 0.7 for some observations at k = {ks}: LOO is unreliable there"
                + (
                    " (on mixtures it tends to favour the largest k when this happens)."
                    if loo_best == t.index.max()
                    else "."
                )
            )
        if "sparse_prob" in t and t["sparse_prob"].notna().any():
            mode = int(t["sparse_prob"].idxmax())
            mass = t["sparse_prob"].max()
            agree = "agrees" if mode == best else "disagrees"
            parts.append(
                f"The sparse fit (k = {self._sparse_k}, Dirichlet({self._alpha:g}) weights) "
                f"{agree}: {mass:.2f} of its mass on {mode} occupied components."
            )
        return " ".join(parts)

    def _convergence_sentences(self) -> list[str]:
        status, t = self.status, self.table
        parts = []
        if status["rerun"]:
            fixed = [str(n) for n in status["rerun"] if n not in status["unconverged"]]
            parts.append(
                f"Fits {', '.join(map(str, status['rerun']))} failed the convergence checks and "
                "were run again four times longer"
                + (f"; {', '.join(fixed)} then passed." if fixed else ".")
            )
        bad = [k for k in t.index if "converged" in t and not t.loc[k, "converged"]]
        if bad:
            parts.append(
                f"Still unconverged, so left out of the recommendation: k = "
                f"{', '.join(str(int(k)) for k in bad)} ("
                + "; ".join(f"k = {int(k)}: {status['warnings'].get(k, '')}" for k in bad)
                + ")."
            )
        if "mfm_p_K" in t:
            mode = int(t["mfm_p_K_plus"].idxmax())
            parts.append(
                f"The mixture of finite mixtures (one run, uniform prior on K) gives "
                f"p(K = {self.best} | y) = {t.loc[self.best, 'mfm_p_K']:.2f} and most "
                f"probably {mode} filled components."
            )
            unconverged = self.fits["mfm"].posterior.attrs.get("mixtures_mfm_unconverged")
            if unconverged:
                parts.append(
                    f"Its chains fall short of r_hat <= 1.01 / ESS >= 400 on {unconverged}: "
                    "read its probabilities with their errors (mfm_se_K)."
                )
        if "sparse" in status["unconverged"]:
            parts.append("The sparse fit did not converge either: read its answer with care.")
        return parts

    def plot(self, ax=None):
        """Each criterion relative to its best, with 2-se bars; the sparse fit's mass as bars.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 3.4))
        t = self.table
        ks = t.index.to_numpy()
        if "sparse_prob" in t and t["sparse_prob"].notna().any():
            twin = ax.twinx()
            twin.bar(ks, t["sparse_prob"].fillna(0), color="0.85", width=0.5, zorder=0)
            twin.set_ylim(0, 1)
            twin.set_ylabel("sparse fit: P(k occupied)", color="0.4")
            ax.set_zorder(twin.get_zorder() + 1)
            ax.patch.set_visible(False)
        for col, se, label, off in (
            ("log_evidence", "log_evidence_se", "log marginal likelihood", -0.06),
            ("elpd_loo", "elpd_loo_se", "elpd (PSIS-LOO)", 0.06),
        ):
            rel = t[col] - t[col].max()
            ax.errorbar(ks + off, rel, yerr=2 * t[se], marker="o", capsize=3, label=label)
        ax.axvline(self.best, color="k", ls=":", lw=1)
        ax.set_xticks(ks)
        ax.set_xlabel("number of components k")
        ax.set_ylabel("difference from the best (nats)")
        ax.legend(fontsize="small", loc="lower right")
        ax.set_title(f"Choosing k: k = {self.best} ({self.certainty})")
        return ax


def _default_factory(data, family: str = "normal"):
    from mixtures.model.multivariate import mv_mixture
    from mixtures.model.univariate import full_mixture

    if data.ndim == 1:
        return lambda y, k, **kw: full_mixture(y, k, family=family, **kw)
    return lambda X, k, **kw: mv_mixture(X, k, covariance_prior="wishart", family=family, **kw)


def _criteria(idata) -> dict:
    import arviz as az

    from mixtures.analysis.bridge import supports_bridge
    from mixtures.analysis.evidence import log_evidence

    row = {"max_r_hat": np.nan}
    try:
        ev = log_evidence(idata)
        row["log_evidence"], row["log_evidence_se"] = ev.estimate, ev.se
        row["evidence_method"] = "bridge" if supports_bridge(idata)[0] else "stepping-stone"
    except ValueError:
        row["log_evidence"], row["log_evidence_se"], row["evidence_method"] = np.nan, np.nan, ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on high Pareto k: it is in the table
        loo = az.loo(idata, pointwise=True)
    pk = np.asarray(loo.pareto_k)
    row.update(
        elpd_loo=float(loo.elpd_loo),
        elpd_loo_se=float(loo.se),
        p_loo=float(loo.p_loo),
        pareto_k_bad=int(np.sum(pk > 0.7)),
        max_pareto_k=float(np.max(pk)),
    )
    return row


def _postprocess(idata):
    """Run where the fit ran: the criteria, and the occupied-components posterior."""
    from mixtures.analysis.assignments import occupied_components

    row = _criteria(idata)
    row["occupied"] = occupied_components(idata, random_seed=0, max_draws=2000).to_dict()
    return row


def _fit_all(models, arr, entropy, options, run, progressbar, description="Choosing k"):
    """Fit every model (one job each); return their outputs, fits and convergence status."""
    import cloudpickle

    from mixtures.batch import fit_seed, run_jobs

    jobs = [
        (name, arr, fit_seed(entropy, name), f"k={name}", cloudpickle.dumps(model))
        for name, model in models.items()
    ]
    results = run_jobs(
        jobs,
        total=len(jobs),
        options=options,
        n_workers=None,
        progressbar=progressbar,
        postprocess=_postprocess,
        description=description,
        **run,
    )
    if results.failed:
        raise RuntimeError(f"choose_k: fits failed: {json.dumps(results.failed)}")
    table = results.fits.set_index("name")
    outputs = {}
    for name in models:
        out = dict(results.outputs[name])
        out.update(max_r_hat=table.loc[name, "max_r_hat"], seconds=table.loc[name, "seconds"])
        outputs[name] = out
    warned = {name: table.loc[name, "warnings"] for name in models if table.loc[name, "warnings"]}
    status = {"unconverged": list(warned), "warnings": warned}
    return outputs, {name: results[name] for name in models}, status


def _mfm(arr, ks, random_seed, draws, tune, chains, progressbar):
    """One MFM fit with a uniform prior on K in 1..max(ks); its k table (rows `ks`)."""
    from mixtures.analysis.diagnostics import ESS_MIN, RHAT_MAX, label_free_table
    from mixtures.model.mfm import mfm_choice

    pmf = np.full(max(ks), 1.0 / max(ks))
    table, idata = mfm_choice(
        arr, ks, k_prior=pmf, random_seed=random_seed, draws=draws, tune=tune, chains=chains,
        thin=10, progressbar=progressbar, log_likelihood=False, warn=False,
    )  # fmt: skip
    checks = label_free_table(idata)
    bad = checks[
        ~(checks["r_hat"] <= RHAT_MAX)
        | ~(checks["ess_bulk"] >= ESS_MIN)
        | ~(checks["ess_tail"] >= ESS_MIN)
    ]
    idata.posterior.attrs["mixtures_mfm_unconverged"] = ", ".join(bad.index)
    return table, idata


def _table(ks, outputs, status, sparse: bool) -> pd.DataFrame:
    rows = {}
    for k in ks:
        rows[k] = {key: v for key, v in outputs[k].items() if key != "occupied"}
        rows[k]["converged"] = k not in status["unconverged"]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "k"
    logz = table["log_evidence"].to_numpy()
    table["posterior_prob"] = np.exp(logz - np.nanmax(logz)) / np.nansum(
        np.exp(logz - np.nanmax(logz))
    )
    if sparse:
        occupied = {int(m): p for m, p in outputs["sparse"]["occupied"].items()}
        table["sparse_prob"] = [occupied.get(k, 0.0) for k in ks]
    cols = ["log_evidence", "log_evidence_se", "evidence_method", "posterior_prob", "elpd_loo",
            "elpd_loo_se", "p_loo", "pareto_k_bad", "max_pareto_k", "sparse_prob", "max_r_hat",
            "converged", "seconds"]  # fmt: skip
    return table[[c for c in cols if c in table]]


def choose_k(
    data,
    ks=range(1, 6),
    *,
    factory=None,
    sparse: bool = True,
    sparse_k: int | None = None,
    sparse_alpha: float = 0.01,
    tempering="auto",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed=None,
    client=None,
    backend: str = "serial",
    progressbar: bool | None = None,
    rerun: bool = True,
    method: str = "default",
    family: str = "normal",
    **sample_kwargs,
) -> KChoice:
    """Fit a mixture for each k and say how many components the data hold.

    Parameters
    ----------
    data : array-like
        Observations, shape (n,) or (n, n_features) (a DataFrame's columns are features).
    ks : iterable of int, default range(1, 6)
        The numbers of components compared.
    factory : callable, optional
        ``factory(data, k, **kwargs) -> pm.Model``; default :func:`mixtures.full_mixture`
        for one feature, :func:`mixtures.mv_mixture` with ``covariance_prior="wishart"`` for
        several (both sampled by the Gibbs engine, which gives the marginal likelihood).
    sparse : bool, default True
        Also fit the sparse overfitted mixture.
    sparse_k : int, optional
        Its number of components; default ``max(ks) + 2``.
    sparse_alpha : float, default 0.01
        Its Dirichlet concentration (below half the parameters per component, the condition
        under which superfluous components empty).
    tempering : "auto", int or None, default "auto"
        The Gibbs engine's replica exchange (helps the fits mix; the marginal likelihood does
        not need it: it is bridge-sampled from the posterior draws).
    draws, tune, chains : int
        Per fit.
    random_seed : int, optional
    client, backend
        As in :func:`mixtures.fit_many` (default: serial, in this process).
    progressbar : bool, optional
    method : {"default", "mfm"}, default "default"
        ``"mfm"`` also fits a mixture of finite mixtures (:func:`mixtures.mfm_mixture`) once,
        with a uniform prior on K in 1..max(ks), and adds its p(K | y) and p(K+ | y)
        (columns ``mfm_p_K``, ``mfm_p_K_plus``, with Monte Carlo errors). Under that prior
        p(K | y) is the marginal likelihood's ``posterior_prob`` when `ks` is 1..max(ks): two
        independent computations of one quantity.
    family : {"normal", "t"}, default "normal"
        Component family of the default factory: ``"t"`` fits Student-t components with
        sampled degrees of freedom (``full_mixture(..., family="t")``, or
        ``mv_mixture(..., family="t")`` for several features).
    rerun : bool, default True
        Fits that fail the convergence checks (r_hat > 1.01, bulk or tail ESS < 400,
        divergences) are run once more with four times the draws and twice the tuning. Fits
        still unconverged then are left out of the recommendation, and the message says so.
    **sample_kwargs
        Passed to every fit.

    Returns
    -------
    KChoice
        With ``.best``, ``.table``, ``.plot()``, ``.message``, ``.fits``.

    Examples
    --------
    >>> X = mixtures.load_dataset("old_faithful")  # doctest: +SKIP
    >>> choice = mixtures.choose_k(X, range(1, 5), random_seed=1)  # doctest: +SKIP
    >>> choice.best, print(choice.message)  # doctest: +SKIP
    """
    arr, ks = _check_choose_k(data, ks, sparse_alpha, method)
    factory = factory or _default_factory(arr, family)
    sparse_k = max(ks) + 2 if sparse_k is None else int(sparse_k)
    models = {k: factory(arr, k) for k in ks}
    if sparse:
        models["sparse"] = factory(arr, sparse_k, priors={"weights": {"a": sparse_alpha}})
    entropy = int(np.random.default_rng(random_seed).integers(2**62))
    options = {"sampler": "auto", "draws": draws, "tune": tune, "chains": chains}
    options.update(tempering=tempering, log_likelihood=True, **sample_kwargs)
    run = {"client": client, "backend": None if client is not None else backend}
    outputs, fits, status = _fit_and_rerun(models, arr, entropy, options, run, progressbar, rerun)
    table = _table(ks, outputs, status, sparse)
    if method == "mfm":
        mfm_table, fits["mfm"] = _mfm(arr, ks, random_seed, draws, tune, chains, progressbar)
        for column in ("p_K", "se_K", "p_K_plus", "se_K_plus"):
            table[f"mfm_{column}"] = mfm_table[column]
    return KChoice(table, fits, sparse_k if sparse else None, sparse_alpha, status)


def _check_choose_k(data, ks, sparse_alpha, method) -> tuple[np.ndarray, list[int]]:
    """Return :func:`choose_k`'s data as an array ((n,) or (n, d)) and `ks` sorted."""
    from mixtures.model.validation import check_observations

    arr = np.asarray(data.to_numpy() if hasattr(data, "to_numpy") else data, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    arr = check_observations(arr, "data", ndim=1 if arr.ndim == 1 else 2)
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"`ks` should be integers >= 1, but got {ks}")
    if not 0 < sparse_alpha < 1:
        raise ValueError(f"`sparse_alpha` should be in (0, 1), but got {sparse_alpha!r}")
    if method not in ("default", "mfm"):
        raise ValueError(f"`method` should be 'default' or 'mfm', but got {method!r}")
    return arr, ks


def _fit_and_rerun(models, arr, entropy, options, run, progressbar, rerun: bool):
    """Fit every model; with `rerun`, fit the unconverged ones again, four times longer."""
    outputs, fits, status = _fit_all(models, arr, entropy, options, run, progressbar)
    if not (rerun and status["unconverged"]):
        status["rerun"] = []
        return outputs, fits, status
    longer = {**options, "draws": 4 * options["draws"], "tune": 2 * options["tune"]}
    again = {name: models[name] for name in status["unconverged"]}
    more = _fit_all(again, arr, entropy, longer, run, progressbar, "Choosing k (longer)")
    outputs.update(more[0])
    fits.update(more[1])
    status = {"rerun": list(again), "unconverged": more[2]["unconverged"],
              "warnings": {**status["warnings"], **more[2]["warnings"]}}  # fmt: skip
    return outputs, fits, status
