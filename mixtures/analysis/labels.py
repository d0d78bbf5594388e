r"""Label switching: detect it, and relabel draws so that a component keeps its meaning.

A mixture's likelihood is the same under any permutation of the component labels, so an
unordered fit can label the same cluster 0 in one chain and 2 in another (or change labels
within a chain, as tempered samplers do on purpose). Label-dependent summaries (``means[0]``,
its r_hat, assignment probabilities) are then meaningless until every draw is permuted to a
common labelling. Two standard algorithms choose one permutation per draw, each a linear
assignment problem (:func:`scipy.optimize.linear_sum_assignment`), as R's ``label.switching``
package implements them (Papastamoulis 2016):

``"stephens"`` (Stephens 2000)
    Minimises the Kullback-Leibler divergence between each draw's allocation probabilities
    (responsibilities) and their running average, iterating to a fixed point; starts from the
    responsibilities of the pivot draw (the draw of highest log-likelihood).
``"ecr"`` (Papastamoulis and Iliopoulos 2010, equivalence classes representatives)
    Permutes each draw's allocation to agree with the pivot's allocation on as many
    observations as possible. Latent fits use their sampled allocations; marginalised fits the
    most probable component of each observation per draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from mixtures.analysis.assignments import check_fit, component_logdensity, flat_draws

__all__ = ["LabelSwitching", "exchangeable", "label_switching", "relabel", "relabel_permutations"]

_METHODS = ("stephens", "ecr")


def _responsibilities_and_loglik(idata):
    resp, loglik = [], []
    for _, logd in component_logdensity(idata):
        norm = logsumexp(logd, axis=-1, keepdims=True)
        loglik.append(norm[..., 0].sum(axis=1))
        resp.append(np.exp(logd - norm))
    return np.concatenate(resp), np.concatenate(loglik)


# the cost of giving a component the label of one whose fixed values differ: above any sum of
# the algorithms' costs (at most ~700 per observation and label), small enough to keep theirs
_BARRED = 1e12


def exchangeable(idata) -> np.ndarray:
    """Which components may take each other's labels: ``(k, k)`` bool, ``[j, l]``.

    Components are exchangeable when every fixed per-component value (the
    ``constant_data`` variables with a ``component`` dimension: known means and sds, a fixed
    nu given per component) is the same for both. Components that differ in one are
    identified by it: no permutation may swap them, or the sampled parameters would be paired
    with another component's fixed ones.
    """
    k = idata.posterior.sizes["component"]
    allowed = np.ones((k, k), dtype=bool)
    if "constant_data" not in idata.groups():
        return allowed
    for da in idata.constant_data.data_vars.values():
        if "component" in da.dims:
            v = da.transpose("component", ...).values.reshape(k, -1)
            allowed &= (v[:, None, :] == v[None, :, :]).all(axis=-1)
    return allowed


def _stephens(p: np.ndarray, pivot: int, allowed, max_iter: int = 100) -> np.ndarray:
    """perms[s, j]: the draw's old component that becomes label j (Stephens' KL algorithm)."""
    n_draws, _, k = p.shape
    logp = np.log(np.clip(p, 1e-300, None))
    entropy_term = (p * logp).sum(axis=1)  # (S, k): sum_i p_il log p_il
    q = p[pivot]
    perms = None
    barred = np.where(allowed, 0.0, _BARRED)
    for _ in range(max_iter):
        logq = np.log(np.clip(q, 1e-300, None))
        # cost[s, j, l] = sum_i p_sil (log p_sil - log q_ij): old component l as new label j
        cost = entropy_term[:, None, :] - np.einsum("ij,sil->sjl", logq, p) + barred
        new = np.empty((n_draws, k), dtype=int)
        for s in range(n_draws):
            rows, cols = linear_sum_assignment(cost[s])
            new[s, rows] = cols
        if perms is not None and np.array_equal(new, perms):
            break
        perms = new
        q = np.take_along_axis(p, perms[:, None, :], axis=2).mean(axis=0)
    return perms


def _ecr(z: np.ndarray, pivot_z: np.ndarray, k: int, allowed) -> np.ndarray:
    """perms[s, j]: the draw's old component that becomes label j (ECR algorithm)."""
    n_draws = z.shape[0]
    perms = np.empty((n_draws, k), dtype=int)
    pivot_onehot = np.eye(k)[pivot_z]  # (n, k)
    barred = np.where(allowed, 0.0, _BARRED)  # symmetric: [old l, new j] as [j, l]
    for s in range(n_draws):
        agree = np.eye(k)[z[s]].T @ pivot_onehot  # [old l, new j]: points agreeing
        rows, cols = linear_sum_assignment(barred - agree)
        perms[s, cols] = rows
    return perms


def relabel_permutations(idata, method: str = "stephens") -> np.ndarray:
    """One permutation per draw that makes the labels consistent.

    Parameters
    ----------
    idata : arviz.InferenceData
    method : {"stephens", "ecr"}

    Returns
    -------
    numpy.ndarray of shape (chain, draw, k)
        ``perm[c, d, j]`` is the component of draw (c, d) that gets label ``j``.
    """
    check_fit(idata)
    if method not in _METHODS:
        raise ValueError(f"`method` should be one of {list(_METHODS)}, but got {method!r}")
    post = idata.posterior
    chains, draws, k = post.sizes["chain"], post.sizes["draw"], post.sizes["component"]
    resp, loglik = _responsibilities_and_loglik(idata)
    pivot = int(np.argmax(loglik))
    allowed = exchangeable(idata)
    if method == "stephens":
        perms = _stephens(resp, pivot, allowed)
    else:
        if "assignment" in post:
            z = flat_draws(post["assignment"]).astype(int)
        else:
            z = resp.argmax(axis=-1)
        perms = _ecr(z, z[pivot], k, allowed)
    perms = perms.reshape(chains, draws, k)
    # a canonical order of the new labels: increasing posterior mean of (the first feature
    # of) the means, when they are sampled and every component is exchangeable with every
    # other (labels tied to fixed values stay where those values are)
    if "means" in post and "component" in post["means"].dims and allowed.all():
        mu = post["means"].transpose("chain", "draw", "component", ...).values
        mu = mu.reshape(chains, draws, k, -1)[..., 0]
        order = np.argsort(np.take_along_axis(mu, perms, axis=2).mean(axis=(0, 1)))
        perms = perms[..., order]
    return perms


def relabel(idata, method: str = "stephens"):
    """Return a copy of a fit with every draw's components permuted to common labels.

    Every draw is matched on its own, so draws that sit between overlapping components are
    permuted too, even where :func:`label_switching` finds no switching (it reports their
    share as ``permuted_share``); the posterior sds of the component parameters then shrink
    a little.

    Every posterior variable with a ``component`` dimension is permuted, and the sampled
    ``assignment`` values are mapped through the same permutation; the permutations are kept
    as ``sample_stats["relabel_permutation"]``. Components that differ in a fixed value (known
    means or sds, a fixed nu given per component: see :func:`exchangeable`) are identified by
    it and never swapped. Label-free quantities (log-likelihood,
    predictive draws, co-clustering) are unchanged. Variables named per component (the
    LKJ model's ``chol_cov_0``, ``chol_cov_1``, ...) are dropped: their permuted values are in
    ``chol_cov``.

    Parameters
    ----------
    idata : arviz.InferenceData
    method : {"stephens", "ecr"}, default "stephens"

    Returns
    -------
    arviz.InferenceData
    """
    perms = relabel_permutations(idata, method)
    out = idata.copy()
    post = out.posterior
    k = perms.shape[-1]
    per_component = [
        v for v in post.data_vars if any(v.startswith(f"{base}_") for base in ("chol_cov",))
    ]
    post = post.drop_vars(per_component)
    for name, da in post.data_vars.items():
        if "component" in da.dims and name != "assignment":
            arr = da.transpose("chain", "draw", "component", ...).values
            idx = perms.reshape(perms.shape + (1,) * (arr.ndim - 3))
            new = np.take_along_axis(arr, np.broadcast_to(idx, arr.shape), axis=2)
            post[name] = (da.transpose("chain", "draw", "component", ...).dims, new)
            post[name] = post[name].transpose(*da.dims)
    if "assignment" in post:
        inverse = np.argsort(perms, axis=-1)  # old component -> new label
        z = post["assignment"].transpose("chain", "draw", ...).values.astype(int)
        mapped = np.take_along_axis(inverse, z, axis=-1)
        post["assignment"] = (post["assignment"].transpose("chain", "draw", ...).dims, mapped)
    post.attrs = {**idata.posterior.attrs, "mixtures_relabelled": method}
    out.posterior = post
    if "sample_stats" in out.groups():
        stats = out.sample_stats.copy()
    else:  # e.g. ADVI's draws
        stats = xr.Dataset(coords={"chain": post["chain"].values, "draw": post["draw"].values})
    stats["relabel_permutation"] = (("chain", "draw", "relabel_component"), perms)
    stats = stats.assign_coords(relabel_component=np.arange(k))
    if "sample_stats" in out.groups():
        out.sample_stats = stats
    else:
        out.add_groups(sample_stats=stats)
    return out


@dataclass
class LabelSwitching:
    """What :func:`label_switching` found.

    Attributes
    ----------
    switched : bool
        Whether some chains, or stretches of draws, use permuted labels, or labels change
        within chains (a chain's most common labelling covers less than 1 - `tolerance` of
        its draws).
    chains : pandas.DataFrame
        Per chain: its dominant permutation relative to the common labels, the share of its
        draws that use it, and whether it differs from the first chain's.
    stretches : pandas.DataFrame
        Runs of at least `min_run` consecutive draws whose permutation differs from their
        chain's dominant one: chain, first and last draw, permutation.
    permuted_share : float
        Share of all draws that :func:`relabel` would permute (any permutation other than
        the identity), isolated draws included. It is positive with no switching at all when
        components overlap: a draw that sits between two components is matched to the other
        labels, and relabelling those draws narrows the posterior sds of the component
        parameters although no chain switched.

    Notes
    -----
    ``switched`` answers "do whole chains or long stretches use other labels?" (what makes
    r_hat and summaries meaningless); ``permuted_share`` answers "how many draws would
    :func:`relabel` change?". The first can be False while the second is a few percent.
    """

    switched: bool
    chains: pd.DataFrame
    stretches: pd.DataFrame
    tolerance: float = 0.05
    permuted_share: float = 0.0

    def _isolated(self) -> str:
        if self.permuted_share == 0:
            return ""
        return (
            f" {self.permuted_share:.1%} of the draws are matched to other labels by "
            "mixtures.relabel one by one (draws between overlapping components); relabelling "
            "changes those draws, so the components' posterior sds can shrink after it."
        )

    def __str__(self) -> str:
        if not self.switched:
            return (
                "No label switching: no chain and no stretch of draws uses other labels, and "
                f"each chain keeps its labels on at least {1 - self.tolerance:.0%} of its "
                "draws." + self._isolated()
            )
        parts = []
        moved = self.chains[self.chains["permuted"]]
        if len(moved):
            parts.append(
                f"chains {moved.index.tolist()} use labels permuted with respect to chain "
                f"{self.chains.index[0]}"
            )
        if len(self.stretches):
            parts.append(f"{len(self.stretches)} stretches of draws switch labels within a chain")
        low = self.chains["share"].min()
        if low < 1 - self.tolerance:
            parts.append(
                f"labels change within chains (a chain's most common labelling covers "
                f"{low:.0%} to {self.chains['share'].max():.0%} of its draws)"
            )
        return (
            "Label switching: " + "; ".join(parts) + ". Use mixtures.relabel(idata)."
            + self._isolated()
        )


def label_switching(
    idata, *, method: str = "stephens", min_run: int | None = None, tolerance: float = 0.05
):
    """Detect chains, or stretches of draws, whose labels are permuted with respect to others.

    Runs the relabelling algorithm (:func:`relabel_permutations`) and reads its permutations:
    a chain whose dominant permutation differs from the first chain's uses other labels; a
    run of `min_run` or more consecutive draws with another permutation is a switch within a
    chain. Isolated draws matched to other labels (up to `tolerance` of a chain) are not
    switching; their share is reported as ``permuted_share``, and :func:`relabel` does
    permute them, so a fit with "no label switching" can still change a little when
    relabelled (see :class:`LabelSwitching`).

    Parameters
    ----------
    idata : arviz.InferenceData
    method : {"stephens", "ecr"}, default "stephens"
    min_run : int, optional
        Shortest stretch reported; default max(20, 5% of the draws per chain).
    tolerance : float, default 0.05
        Share of a chain's draws that may use other labellings (single draws between
        overlapping components) before the labels count as changing within the chain.

    Returns
    -------
    LabelSwitching
    """
    perms = relabel_permutations(idata, method)
    chains, draws, _ = perms.shape
    min_run = max(20, draws // 20) if min_run is None else int(min_run)
    rows, stretches = [], []
    for c in range(chains):
        keys, counts = np.unique(perms[c], axis=0, return_counts=True)
        dominant = keys[np.argmax(counts)]
        rows.append({"chain": c, "permutation": tuple(int(v) for v in dominant),
                     "share": counts.max() / draws})  # fmt: skip
        other = np.any(perms[c] != dominant, axis=1)
        start = None
        for d in range(draws + 1):
            if d < draws and other[d] and start is None:
                start = d
            elif (d == draws or not other[d]) and start is not None:
                if d - start >= min_run:
                    perm = tuple(int(v) for v in perms[c, start])
                    stretches.append(
                        {"chain": c, "first_draw": start, "last_draw": d - 1, "permutation": perm}
                    )
                start = None
    table = pd.DataFrame(rows).set_index("chain")
    table["permuted"] = [p != table["permutation"].iloc[0] for p in table["permutation"]]
    stretch_table = pd.DataFrame(
        stretches, columns=["chain", "first_draw", "last_draw", "permutation"]
    )
    within = table["share"].min() < 1 - tolerance
    switched = bool(table["permuted"].any() or len(stretch_table) or within)
    moved = float(np.mean(np.any(perms != np.arange(perms.shape[-1]), axis=-1)))
    return LabelSwitching(switched, table, stretch_table, tolerance, moved)
