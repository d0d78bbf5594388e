"""Imputations of deleted cells on three_clusters_2d: ours against the alternatives (issue 23).

For each deletion seed, 30% of the cells of three_clusters_2d (600 rows, 2 columns) are
deleted, never a whole row, by one of two mechanisms:

- ``mcar``: cells independently at random (missing completely at random), 30% in expectation;
- ``mar``: each row's second or first cell (chosen at random) is deleted with a probability
  that rises with the row's *other*, observed cell (a logistic in its standardised value;
  missing at random in Rubin's sense, not completely at random), tuned to ~30% of the cells.

Four imputations of the deleted cells are compared by RMSE against the true values:

- ``ours``: the posterior mean of the cell's draws (``mv_mixture`` with missing cells, Gibbs);
- ``complete_case``: a Gaussian mixture fitted by EM to the complete rows only (scikit-learn,
  5 restarts), then the cell's conditional mean given the row's observed cell;
- ``mean``: the column mean of the observed cells;
- ``oracle``: the conditional mean under the *true* generating parameters: what any method
  would give with the parameters known exactly, so the bound on how much better than the
  complete-case fit an imputation can be (the rest of the error is the cell's own
  conditional spread, which no method removes).

Run: ``python bench/imputation.py [--seeds 10]``; writes ``bench/imputation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.special import expit, logsumexp
from scipy.stats import multivariate_normal

os.environ.setdefault("MIXTURES_PROGRESSBAR", "0")

import mixtures  # noqa: E402
from mixtures.data import THREE_CLUSTERS_2D  # noqa: E402

HERE = Path(__file__).parent


def delete_mcar(X, share, rng):
    """Delete `share` of the cells of 2-column `X` at random, never a whole row.

    Each cell goes with probability p, and a row that lost both gets one back (the rule of
    tests/test_missing.py); p = 1 - sqrt(1 - 2 share) makes the expected share `share`.
    """
    X = np.array(X, dtype=float)
    gone = rng.random(X.shape) < 1.0 - np.sqrt(1.0 - 2.0 * share)
    gone[gone.all(axis=1), rng.integers(X.shape[1])] = False
    X[gone] = np.nan
    return X


def delete_mar(X, share, rng):
    """Delete one cell of some rows with a probability that depends on the other cell."""
    X = np.array(X, dtype=float)
    n, d = X.shape
    col = rng.integers(d, size=n)  # the cell that may go
    other = X[np.arange(n), 1 - col]
    zscore = (other - other.mean()) / other.std()
    # logistic in the observed cell; the intercept chosen so that `share` of all cells go
    grid = np.linspace(-6, 3, 2001)
    target = share * d  # deleted cells per row
    shift = grid[np.argmin([abs(expit(g + 1.5 * zscore).mean() - target) for g in grid])]
    gone = rng.random(n) < expit(shift + 1.5 * zscore)
    X[np.flatnonzero(gone), col[gone]] = np.nan
    return X


def conditional_fill(Xm, weights, means, covs):
    """Each missing cell's conditional mean given its row's observed cells (mixture)."""
    fill = Xm.copy()
    gone = np.isnan(Xm)
    for i in np.flatnonzero(gone.any(axis=1)):
        o, m = ~gone[i], gone[i]
        logp = np.array(
            [
                np.log(weights[j])
                + multivariate_normal(means[j][o], covs[j][np.ix_(o, o)]).logpdf(Xm[i, o])
                for j in range(len(weights))
            ]
        )
        r = np.exp(logp - logsumexp(logp))
        cond = [
            means[j][m]
            + covs[j][np.ix_(m, o)] @ np.linalg.solve(covs[j][np.ix_(o, o)], Xm[i, o] - means[j][o])
            for j in range(len(weights))
        ]
        fill[i, m] = r @ np.array(cond)
    return fill[gone]


def one(X, Xm, seed):
    """Return the four RMSEs for one deleted data set."""
    from sklearn.mixture import GaussianMixture

    gone = np.isnan(Xm)
    truth = X[gone]
    rmse = lambda v: float(np.sqrt(np.mean((v - truth) ** 2)))  # noqa: E731
    t0 = time.perf_counter()
    idata = mixtures.sample(
        mixtures.mv_mixture(Xm, 3), draws=500, chains=2, random_seed=seed, warn=False,
        progressbar=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    ours = mixtures.imputations(idata)["mean"].to_numpy()
    cc = GaussianMixture(3, n_init=5, random_state=0).fit(Xm[~gone.any(axis=1)])
    k = len(THREE_CLUSTERS_2D["means"])
    return {
        "ours": rmse(ours),
        "complete_case": rmse(conditional_fill(Xm, cc.weights_, cc.means_, cc.covariances_)),
        "mean": rmse(np.broadcast_to(np.nanmean(Xm, axis=0), X.shape)[gone]),
        "oracle": rmse(
            conditional_fill(
                Xm, np.full(k, 1 / k), THREE_CLUSTERS_2D["means"], THREE_CLUSTERS_2D["covariances"]
            )
        ),
        "share_deleted": float(gone.mean()),
        "complete_rows": int((~gone.any(axis=1)).sum()),
        "fit_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
    results = {}
    for mech, delete in (("mcar", delete_mcar), ("mar", delete_mar)):
        rows = [one(X, delete(X, 0.3, np.random.default_rng(s)), s) for s in range(args.seeds)]
        results[mech] = rows
        table = {key: np.array([r[key] for r in rows]) for key in rows[0]}
        diff = table["ours"] - table["complete_case"]
        print(
            f"{mech}: {args.seeds} deletions, {table['share_deleted'].mean():.1%} of cells, "
            f"{table['complete_rows'].mean():.0f} complete rows of 600; mean RMSE "
            + ", ".join(
                f"{key} {table[key].mean():.4f}"
                for key in ("ours", "complete_case", "mean", "oracle")
            )
            + f"; ours - complete_case {diff.mean():+.4f} +- {diff.std(ddof=1) / np.sqrt(diff.size):.4f}"
            f" (ours lower in {(diff < 0).sum()} of {diff.size}); complete_case - oracle "
            f"{(table['complete_case'] - table['oracle']).mean():+.4f}"
        )
    out = HERE / "imputation.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
