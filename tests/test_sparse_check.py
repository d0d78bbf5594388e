"""Label-free convergence checks for sparse (overfitted) fits (issue 21).

A sparse Dirichlet weight prior empties the extra components; their parameters then follow
the prior under a different label in every chain, so a check on the parameters never passes.
These tests compute the label-free quantities by hand, drive the automatic run with synthetic
draws whose labelled parameters cannot converge but whose label-free quantities are iid, and
check that a fit records (and warns on) the check it used.
"""

from __future__ import annotations

import time
import warnings

import arviz as az
import numpy as np
import pytest

import mixtures
from mixtures.analysis.diagnostics import (
    LABEL_FREE_CHECK,
    convergence_table,
    is_sparse,
    sparse_quantities,
    sparse_table,
)
from mixtures.engines.extend import AUTO_DRAWS, PARAMETER_CHECK, run_draws, shortfalls


def _overfitted_draws(rng, chains, n, k=6, filled=3):
    """Draws of a sparse fit: `filled` components with iid weights (their labels differ by
    chain), the others empty with means from a chain-specific place (never mixing)."""
    w = np.zeros((chains, n, k))
    share = rng.dirichlet(np.full(filled, 50.0), size=(chains, n))
    means = np.empty((chains, n, k))
    for c in range(chains):
        labels = rng.permutation(k)[:filled]  # the filled components' labels in this chain
        w[c, :, labels] = share[c].T
        means[c] = 10.0 * c + rng.standard_normal((n, k))  # the empty ones: stuck per chain
        means[c, :, labels] = np.arange(filled)[:, None] + 0.1 * rng.standard_normal((filled, n))
    w += 1e-9  # empty, not exactly 0
    loglik = -100.0 + rng.standard_normal((chains, n))
    return {
        "weights": w,
        "means": means,
        "sigma": np.ones((chains, n, k)),
        "complete_loglik": loglik,
    }


def test_sparse_prior_is_recognised_from_the_spec(y3):
    assert is_sparse(
        mixtures.spec_of(mixtures.full_mixture(y3, 6, priors={"weights": {"a": 1e-5}}))
    )
    assert not is_sparse(mixtures.spec_of(mixtures.full_mixture(y3, 6)))  # Dirichlet(1)
    assert not is_sparse(mixtures.spec_of(mixtures.full_mixture(y3, 1)))


def test_sparse_quantities_by_hand():
    w = np.array([[[0.6, 0.0, 0.395, 0.005], [0.1, 0.5, 0.0, 0.4]]])  # 1 chain, 2 draws
    loglik = np.array([[-3.0, -4.0]])
    q = sparse_quantities(w, loglik)
    np.testing.assert_array_equal(q["filled_components"], [[2.0, 3.0]])
    # most frequent count: a tie between 2 and 3 goes to the smaller (np.argmax of bincount)
    assert sorted(q) == [
        "complete_loglik",
        "filled_components",
        "sorted_weights[0]",
        "sorted_weights[1]",
    ]
    np.testing.assert_array_equal(q["sorted_weights[0]"], [[0.6, 0.5]])
    np.testing.assert_array_equal(q["sorted_weights[1]"], [[0.395, 0.4]])
    np.testing.assert_array_equal(q["complete_loglik"], loglik)


def test_label_free_check_passes_where_the_parameter_check_cannot():
    draws = _overfitted_draws(np.random.default_rng(0), chains=4, n=AUTO_DRAWS)
    problems, _ = shortfalls(draws)
    assert problems and "r_hat" in problems[0]  # the empty components' means never agree
    assert shortfalls(draws, label_free=True) == ([], 1.0)


@pytest.mark.parametrize("label_free", [True, False])
def test_automatic_run_stops_on_the_label_free_check(label_free):
    rng = np.random.default_rng(1)
    calls = []

    def segment(n):
        calls.append(n)
        return _overfitted_draws(rng, 4, n)

    def checked(merged):
        return {name: merged[name] for name in ("weights", "means", "sigma")}

    budget = (1500, 30.0)
    merged, record = run_draws(
        None, segment, checked, t_start=time.perf_counter(), budget=budget, label_free=label_free
    )
    if label_free:
        assert calls == [AUTO_DRAWS]
        assert record["mixtures_draws_reason"] == "diagnostics passed"
        assert record["mixtures_convergence_check"] == LABEL_FREE_CHECK
    else:  # labelled parameters: extended to the budget
        assert sum(calls) == budget[0]
        assert record["mixtures_draws_reason"].startswith("budget spent")
        assert record["mixtures_convergence_check"] == PARAMETER_CHECK


def test_sparse_table_is_the_table_of_the_quantities():
    draws = _overfitted_draws(np.random.default_rng(2), chains=4, n=300)
    idata = az.from_dict(
        posterior={"weights": draws["weights"]},
        sample_stats={"complete_loglik": draws["complete_loglik"]},
    )
    table = sparse_table(idata)
    assert list(table.index) == [
        "sorted_weights[0]",
        "sorted_weights[1]",
        "sorted_weights[2]",
        "complete_loglik",
    ]  # filled_components is constant (3): left out
    top = -np.sort(-draws["weights"], axis=-1)[..., 0]
    assert table.loc["sorted_weights[0]", "r_hat"] == pytest.approx(float(az.rhat(top)))
    assert table.loc["complete_loglik", "ess_bulk"] == pytest.approx(
        float(az.ess(draws["complete_loglik"]))
    )
    idata.posterior.attrs["mixtures_convergence_check"] = LABEL_FREE_CHECK
    assert convergence_table(idata).equals(table)  # and so the warning after sampling


def test_a_sparse_fit_records_and_warns_on_the_label_free_check(y3):
    model = mixtures.full_mixture(y3, 6, priors={"weights": {"a": 1e-5}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = mixtures.sample(model, draws=300, tune=300, chains=2, random_seed=2)
    attrs = idata.posterior.attrs
    assert attrs["mixtures_convergence_check"] == LABEL_FREE_CHECK
    messages = " ".join(str(w.message) for w in caught)
    assert "means[" not in messages and "sigma[" not in messages
    counts = mixtures.effective_components(idata)
    assert float((counts == 3).mean()) > 0.9  # three clusters filled, the rest empty
    plain = mixtures.sample(
        mixtures.full_mixture(y3, 3), draws=50, tune=50, chains=1, random_seed=2, warn=False
    )
    assert plain.posterior.attrs["mixtures_convergence_check"] == PARAMETER_CHECK
