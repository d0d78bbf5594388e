"""Input checks run once, at the public boundary, before PyMC sees anything.

Every message has the form "`name` should be X, but got Y" so that users (and tests) can
tell at a glance what was expected.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_integer",
    "check_k",
    "check_labels",
    "check_observations",
    "check_positive_vector",
    "check_vector",
]

_MAX_POSITIONS_SHOWN = 10


def _as_numeric_array(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"`{name}` should be numeric, but got dtype {arr.dtype}")
    return arr


def _describe_nonfinite(arr: np.ndarray) -> str:
    """Say how many values are NaN / infinite and where (row indices)."""
    bad = ~np.isfinite(arr)
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(bad.sum()) - n_nan
    rows = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1))
    shown = ", ".join(str(i) for i in rows[:_MAX_POSITIONS_SHOWN])
    more = (
        f" and {rows.size - _MAX_POSITIONS_SHOWN} more" if rows.size > _MAX_POSITIONS_SHOWN else ""
    )
    return f"{n_nan} NaN and {n_inf} infinite value(s) at index {shown}{more}"


def check_observations(y, name: str = "y", *, ndim: int = 1, min_obs: int = 2) -> np.ndarray:
    """Return `y` as a new float64 array after checking it is usable data.

    Parameters
    ----------
    y : array-like
        Observations: shape (n_obs,) when ``ndim=1``, (n_obs, n_features) when ``ndim=2``.
    name : str
        Name used in error messages.
    ndim : {1, 2}
        Required number of dimensions.
    min_obs : int
        Smallest acceptable number of observations.

    Returns
    -------
    numpy.ndarray
        A float64 copy; the caller's object is never modified or aliased.

    Raises
    ------
    ValueError
        Non-numeric data, wrong dimensionality, too few observations, or non-finite values
        (PyMC would silently impute NaN otherwise).
    """
    arr = _as_numeric_array(y, name)
    if arr.ndim != ndim:
        expected = "(n_obs,)" if ndim == 1 else "(n_obs, n_features)"
        hint = ""
        if ndim == 1 and arr.ndim == 2:
            hint = "; a univariate mixture takes one column (use a multivariate model for 2-D data)"
        raise ValueError(
            f"`{name}` should be a {ndim}-D array of shape {expected}, "
            f"but got an array of shape {arr.shape}{hint}"
        )
    if arr.shape[0] < min_obs:
        raise ValueError(
            f"`{name}` should contain at least {min_obs} observations, but got {arr.shape[0]}"
        )
    arr = np.array(arr, dtype=np.float64, copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(
            f"`{name}` should contain only finite values, but got {_describe_nonfinite(arr)}; "
            "drop or impute them explicitly before fitting"
        )
    return arr


def check_integer(value, name: str, minimum: int = 1) -> int:
    """Return `value` as an int after checking it is an integer >= `minimum`.

    The one integer-argument check: "`name` should be an integer >= 1, but got 0" (with
    ``minimum=0``: "a non-negative integer"). Booleans are refused.

    Parameters
    ----------
    value : object
        The argument.
    name : str
        Its name in the message.
    minimum : int, default 1
        Smallest accepted value.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If `value` is not an integer (``numbers.Integral``, not bool) or is below `minimum`.
    """
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not integral or value < minimum:
        what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        shown = int(value) if integral else repr(value)
        raise ValueError(f"`{name}` should be {what}, but got {shown}")
    return int(value)


def check_k(k, n_obs: int) -> int:
    """Check the number of components: an integer between 1 and `n_obs`."""
    k = check_integer(k, "k")
    if k > n_obs:
        raise ValueError(
            f"`k` should be at most the number of observations ({n_obs}), but got k = {k}"
        )
    return k


def check_vector(values, name: str, length: int) -> np.ndarray:
    """Check a finite numeric vector of the given length; return a float64 copy."""
    arr = _as_numeric_array(values, name)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(
            f"`{name}` should have shape ({length},), one value per component, "
            f"but got shape {arr.shape}"
        )
    arr = np.array(arr, dtype=np.float64, copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` should contain only finite values, but got {arr.tolist()}")
    return arr


def check_positive_vector(values, name: str, length: int) -> np.ndarray:
    """Like :func:`check_vector`, and every value must be > 0."""
    arr = check_vector(values, name, length)
    if (arr <= 0).any():
        raise ValueError(f"`{name}` should contain only values > 0, but got {arr.tolist()}")
    return arr


def check_labels(labels, n_obs: int, k: int) -> np.ndarray | None:
    """Known labels of some observations: integers in 0..k-1, and -1 (or NaN) for unknown.

    Returns an int32 array of length `n_obs`, or None when `labels` is None.
    """
    if labels is None:
        return None
    arr = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
    if arr.ndim != 1 or arr.shape[0] != n_obs:
        raise ValueError(
            f"`labels` should have shape ({n_obs},), one per observation (-1 for unknown), "
            f"but got shape {arr.shape}"
        )
    if arr.dtype.kind == "f":
        arr = np.where(np.isnan(arr), -1, arr)
        if np.any(arr != np.round(arr)):
            raise ValueError("`labels` should be integers (or -1 / NaN for unknown)")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"`labels` should be integers, but got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = np.unique(arr[(arr < -1) | (arr >= k)])
    if bad.size:
        raise ValueError(
            f"`labels` should be components 0..{k - 1} or -1 for unknown, but got {bad.tolist()}"
        )
    return arr.astype(np.int32)
