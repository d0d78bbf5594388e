"""Parameter descriptions shared by the model factories' docstrings (one text each).

A factory's docstring holds a marker such as ``%(labels)s`` on a line of its own; the
decorator :func:`fill_doc` replaces it with the block of :data:`PARAMETERS` of that name,
indented like the marker, so the rendered (numpydoc) docstrings stay complete while each
description is written once, as pandas and xarray do with their shared docs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["PARAMETERS", "fill_doc"]

_DASK = """\
A ``dask.array`` (or dask dataframe column) keeps the data on a Dask cluster: sample with
``mixtures.sample(model, client=client)`` (:mod:`mixtures.model.dask_data`)."""

#: Shared parameter blocks (numpydoc ``name : type`` line, then the indented description).
PARAMETERS = {
    "y": f"""\
y : array-like of shape (n_obs,)
    Observations; must be finite. {_DASK.replace(chr(10), chr(10) + "    ")}""",
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
