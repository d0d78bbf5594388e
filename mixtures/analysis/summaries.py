"""Summary tables of a fitted mixture, as a DataFrame or as markdown / CSV / LaTeX text."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["correlations", "summary_posterior", "summary_table"]

#: The parameters a summary (and the convergence check) covers by default.
DEFAULT_VARS = ("weights", "means", "sigma", "nu", "correlation")
_FORMATS = ("markdown", "csv", "latex")


def summary_table(idata, *, var_names=None, hdi_prob: float = 0.94, fmt: str | None = None):
    """Tabulate posterior mean, sd, HDI, MCSE, bulk / tail ESS and r_hat.

    Rows are labelled by parameter and component, e.g. ``means[0]`` (components are numbered
    in increasing order of their means when the model is ordered).

    Parameters
    ----------
    idata : arviz.InferenceData
        A sampled posterior.
    var_names : list of str, optional
        Variables to tabulate; default: those of ``weights``, ``means``, ``sigma`` (and a t
        family's ``nu``) that are in the posterior and, for multivariate models,
        ``correlation`` (one row per component and pair of features, from ``chol_cov``: see
        :func:`correlations`). The assignments are left out: one row per observation is no
        summary.
    hdi_prob : float, default 0.94
        Mass of the highest-density interval, in (0, 1).
    fmt : {None, "markdown", "csv", "latex"}
        None returns the DataFrame; otherwise the table as text in that format.

    Returns
    -------
    pandas.DataFrame or str
        Columns ``mean, sd, hdi_3%, hdi_97%, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat``
        (the HDI labels follow `hdi_prob`).

    Examples
    --------
    >>> import mixtures
    >>> table = mixtures.summary_table(idata)  # doctest: +SKIP
    >>> print(mixtures.summary_table(idata, fmt="markdown"))  # doctest: +SKIP
    """
    if not 0 < hdi_prob < 1:
        raise ValueError(f"`hdi_prob` should be in (0, 1), but got {hdi_prob}")
    if fmt is not None and fmt not in _FORMATS:
        raise ValueError(f"`fmt` should be None or one of {list(_FORMATS)}, but got {fmt!r}")
    posterior = summary_posterior(idata)
    if var_names is None:
        var_names = [v for v in DEFAULT_VARS if v in posterior]
    else:
        var_names = list(var_names)
        missing = [v for v in var_names if v not in posterior]
        if missing:
            raise ValueError(
                f"`var_names` should name posterior variables {list(posterior.data_vars)}, "
                f"but got {missing}"
            )
    # full precision in the DataFrame (and CSV); significant digits in the text formats, so
    # data in units of 1e-9 do not print as 0.000
    table = az.summary(
        posterior, var_names=var_names, hdi_prob=hdi_prob, kind="all", round_to="none"
    )
    if fmt is None:
        return table
    if fmt == "csv":
        return table.to_csv()
    if fmt == "markdown":
        return _to_markdown(table)
    return _to_latex(table)


def correlations(posterior: xr.Dataset) -> xr.DataArray | None:
    """Return the correlations of each component's features, one per pair, from ``chol_cov``.

    Parameters
    ----------
    posterior : xarray.Dataset
        A multivariate model's posterior (with ``chol_cov``, dims ``component``, ``feature``,
        ``feature_bis``).

    Returns
    -------
    xarray.DataArray or None
        Dims (chain, draw, component, pair), the pair named ``"a~b"`` after the features;
        None for univariate posteriors, one feature, or covariances that are diagonal by
        construction (every correlation exactly 0).
    """
    if "chol_cov" not in posterior or posterior.sizes.get("feature", 1) < 2:
        return None
    chol = posterior["chol_cov"].transpose("chain", "draw", "component", "feature", "feature_bis")
    cov = np.einsum("...ij,...kj->...ik", chol.values, chol.values)
    sd = np.sqrt(np.einsum("...ii->...i", cov))
    corr = cov / (sd[..., :, None] * sd[..., None, :])
    names = [str(f) for f in posterior["feature"].values]
    rows, cols = np.triu_indices(len(names), k=1)
    values = corr[..., rows, cols]
    if not np.any(values):
        return None
    return xr.DataArray(
        values,
        dims=("chain", "draw", "component", "pair"),
        coords={
            "chain": chol["chain"],
            "draw": chol["draw"],
            "component": chol["component"],
            "pair": [f"{names[i]}~{names[j]}" for i, j in zip(rows, cols, strict=True)],
        },
        name="correlation",
    )


def summary_posterior(idata) -> xr.Dataset:
    """Return the posterior with the derived ``correlation`` added (multivariate models)."""
    posterior = idata.posterior
    corr = correlations(posterior)
    if corr is None or "correlation" in posterior:
        return posterior
    return posterior.assign(correlation=corr)


def _significant(value: float, digits: int = 4) -> str:
    """Format with four significant digits (whole numbers from 10,000 on)."""
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 10**digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["", *map(str, table.columns)]
    rows = [[str(idx), *map(_significant, row)] for idx, row in zip(table.index, table.values)]
    return header, rows


def _to_markdown(table: pd.DataFrame) -> str:
    header, rows = _cells(table)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    for char in ("&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


def _to_latex(table: pd.DataFrame) -> str:
    header, rows = _cells(table)
    lines = [
        "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        "\\hline",
        " & ".join(_latex_escape(h) for h in header) + " \\\\",
        "\\hline",
        *(" & ".join(_latex_escape(c) for c in r) + " \\\\" for r in rows),
        "\\hline",
        "\\end{tabular}",
    ]
    return "\n".join(lines)
