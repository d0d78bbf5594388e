"""Parameter descriptions shared by docstrings (the factories', fit_many's; one text each).

A function's docstring holds a marker such as ``%(labels)s`` on a line of its own; the
decorator :func:`fill_doc` replaces it with the block of :data:`PARAMETERS` of that name,
indented like the marker, so the rendered (numpydoc) docstrings stay complete while each
description is written once, as pandas and xarray do with their shared docs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["PARAMETERS", "fill_doc"]

#: Shared parameter blocks (numpydoc ``name : type`` line, then the indented description).
PARAMETERS = {
    "y": """\
y : array-like of shape (n_obs,)
    Observations; must be finite. A ``dask.array`` (or dask dataframe column) keeps the
    data on a Dask cluster: sample with ``mixtures.sample(model, client=client)``
    (:mod:`mixtures.model.dask_data`).""",
    "X": """\
X : array-like or pandas.DataFrame of shape (n_obs, n_features)
    Observations. Missing cells are NaN (see `missing`); every other value must be
    finite. A DataFrame's column names become the ``feature`` coords. A ``dask.array``
    (or dask dataframe columns) keeps the data on a Dask cluster: sample with
    ``mixtures.sample(model, client=client)`` (:mod:`mixtures.model.dask_data`); missing
    cells are not supported there.""",
    "covariance": """\
covariance : {"full", "diag", "tied"}, default "full"
    Per-component full covariances; diagonal per-component covariances (HalfNormal sds);
    or one full covariance shared by all components (LKJ(eta) correlations and
    HalfNormal sds).""",
    "ordered_by": """\
ordered_by : int or None, default 0
    Identify the components by ordering their means along this feature (across
    components, see :class:`OrderedColumn`); None leaves them exchangeable (e.g. with a
    stick-breaking prior, whose order already identifies them).""",
    "mfm_k": """\
k_prior : str, dict or array-like, default "bnb"
    The prior on K: a name of :data:`K_PRIORS` (``"bnb"``: K - 1 ~ BNB(1, 4, 3), the
    recommendation of Frühwirth-Schnatter et al. 2021; ``"poisson"``: K - 1 ~
    Poisson(3); ``"geometric"``; ``"uniform"``), a dict ``{"dist": "poisson", "mu": 2}``,
    or an array: the pmf of K = 1, ..., len(k_prior).
gamma : float, default 1.0
    Dirichlet parameter of the weights given K.
dynamic : bool, default False
    Dirichlet(gamma / K) weights (dynamic MFM).
k_max : int, optional
    Truncation of a named prior on K (default 30; the prior is renormalised on 1..k_max).""",
    "mv_priors": """\
priors : dict, optional
    Overrides of :func:`default_mv_priors`: ``weights`` (``{"a": ...}`` for the Dirichlet,
    e.g. the BayesPy example's ``{"a": 1e-5}``, or ``{"dist": "StickBreaking", "alpha":
    ...}`` for a truncated stick-breaking prior), ``means`` (``mu``, ``sigma``, per
    feature), and with the Wishart prior ``wishart`` (``nu`` > d - 1, ``psi``: a
    positive-definite (d, d) matrix or its diagonal), with the LKJ prior ``sigma`` (the
    HalfNormal scale of the sds, per feature) and ``corr`` (``eta``). Merged and checked
    by :func:`mixtures.model.spec.resolve_priors`.""",
    "k": """\
k : int
    Number of components, 1 <= k <= n_obs.""",
    "marginalized": """\
marginalized : bool, default True
    Sum the assignments out; if False, keep them as the variable ``assignment``.""",
    "sigma_floor": """\
sigma_floor : "auto" or float, default "auto"
    Truncate the sd prior below this value. ``"auto"`` uses :func:`tie_floor`: the sd of
    rounding (resolution / sqrt(12)) when the data have ties, none otherwise (and none
    under an InverseGamma or LogNormal prior, which keep the posterior proper). Recorded
    in the spec; 0 turns it off.""",
    "labels": """\
labels : array-like of int, optional
    Known components of some observations (-1 or NaN for unknown): observed, not
    sampled. With ordered means, label j is the j-th smallest mean.""",
    "family": """\
family : {"normal", "t"}, default "normal"
    Component family. ``"t"``: each component a Student-t with location ``means``, scale
    ``sigma`` and degrees of freedom ``nu`` (robust to outliers; see
    :mod:`mixtures.model.densities`). The marginalised model uses ``pm.StudentT``
    components; the Gibbs engine samples the scale-mixture representation (a Gamma
    precision weight per observation).""",
    "nu": """\
nu : float, array-like of shape (k,) or None
    The t family's degrees of freedom: fixed (one number for all components or one per
    component, stored as data ``nu``), or None (default) to sample one per component
    under ``priors["nu"]`` (default Gamma(2, 0.1), :data:`NU_PRIOR`).""",
    "covariance_prior": """\
covariance_prior : {"auto", "wishart", "lkj"}, default "auto"
    The prior of the full covariances. ``"wishart"``: an inverse-Wishart prior on each
    covariance (BayesPy's Gaussian-Wishart choice and scikit-learn's
    ``BayesianGaussianMixture``'s, with independent means), conjugate given the means,
    so the whole model runs on our Gibbs engine: seconds per fit. ``"lkj"``: LKJ(eta)
    correlations and HalfNormal sds, which have no exact update and go to NUTS: minutes
    per fit (a K = 3 fit of the 272 ``old_faithful`` rows did not finish in half an
    hour). ``"auto"`` takes the Wishart prior for ``covariance="full"`` and the
    LKJ / HalfNormal priors for ``"tied"`` and ``"diag"``, for which there is no
    Wishart model (asking for one is an error); see
    :data:`DEFAULT_COVARIANCE_PRIOR`. Prefer the LKJ prior when you want to set priors
    on the sds and the correlations separately (a HalfNormal scale per feature, eta),
    e.g. with few observations per component, where the inverse-Wishart's coupling of
    scales and correlations matters; prefer the Wishart for speed, many components (a
    sparse K = 10 fit) and many refits.""",
    "missing": """\
missing : {"model", "refuse"}, default "model"
    ``"model"``: NaN cells are missing at random. Each row's likelihood is the mixture
    density of its observed cells (grouped by missingness pattern); rows with no observed
    cell are refused. The Gibbs engine also draws the missing cells from their conditional
    Normal given the row's observed cells and its component, and stores the draws (see
    :func:`mixtures.imputations`). The default, because dropping incomplete rows throws
    away their observed cells and biases the fit unless the rows are missing completely
    at random, and filling cells with a mean shrinks the covariances; data without NaN
    give the same model either way. ``"refuse"``: NaN is an error (drop or impute
    yourself).""",
}

#: Parameters of the runs of many fits (:func:`mixtures.fit_many` and ``run_jobs``).
PARAMETERS.update(
    {
        "fits_execution": """\
client : dask.distributed.Client, optional
    Run on this cluster. Workers should have one thread each (several work, with one
    compiled model per thread).
backend : {"serial", "processes"}, optional
    Without `client`: ``"processes"`` starts a ``LocalCluster`` of single-threaded worker
    processes for this call; ``"serial"`` fits in this process. Default: serial for fewer
    than 16 data sets (or one CPU), where starting the workers costs more than they win
    back (measured: ``bench/many_fits.py``), processes otherwise.
n_workers : int, optional
    Workers of the ``"processes"`` backend; default: the CPU count.""",
        "fits_storage": """\
results_dir : str or path, optional
    Write each fit as it finishes (``fits/<name>.json``, ``fits/<name>.nc``) and the
    combined ``summary.csv``; a second call with the same directory resumes: fits already
    recorded are not re-run (failed ones neither, unless `retry_failed`).
save_idata : bool, default True
    With `results_dir`: write each fit's InferenceData (read back lazily).
retry_failed : bool, default False
    On resume, re-run fits recorded as failed.""",
        "fits_sampling": """\
sampler : str, default "auto"
    The engine (see :func:`mixtures.sample`).
draws, tune, chains : int
    Per fit. ``draws=None`` / ``tune=None`` (the default): as in :func:`mixtures.sample`,
    the Gibbs engine runs each fit until its diagnostics pass (within a budget).
random_seed : int, optional
    Seeds every fit (from this and the data set's name). Without it a fresh seed is drawn
    and recorded in ``results_dir/run.json``, so a resumed run stays reproducible.""",
        "fits_sample_kwargs": """\
**sample_kwargs
    Passed to every fit (e.g. ``tempering=``). ``log_likelihood`` defaults to False here:
    the pointwise log-likelihood is chains x draws x N values per fit (7 MB at N = 215),
    which every fit would ship back and write; pass ``log_likelihood=True`` for LOO.""",
        "fits_hooks": """\
progressbar : bool, optional
    A bar over fits; default on unless ``MIXTURES_PROGRESSBAR=0``.
postprocess : callable, optional
    ``postprocess(idata) -> object``, run where the fit ran; its (picklable, small) result
    is kept in ``.outputs`` (and in the JSON record when JSON-able). Use it to return a
    reduction instead of whole posteriors.
callback : callable, optional
    ``callback(record)`` after each fit is recorded (name, status, seconds, error, ...).""",
    }
)

_MARKER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(func: Callable) -> Callable:
    """Replace each ``%(name)s`` line of `func`'s docstring by the block ``PARAMETERS[name]``.

    Raises KeyError for a marker that names no block (at import, so a typo cannot ship).
    """

    def block(match: re.Match) -> str:
        indent = match["indent"]
        return "\n".join(
            indent + line if line else line for line in PARAMETERS[match["name"]].splitlines()
        )

    func.__doc__ = _MARKER.sub(block, func.__doc__)
    return func
