import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import TRUE_MEANS, TRUE_WEIGHTS
from scipy import stats

import mixtures


def test_plot_ppc_lines_and_axes(fitted, y3):
    _, idata = fitted
    ax = mixtures.plot_ppc(idata, num_draws=20, random_seed=0)
    lines = ax.get_lines()
    assert len(lines) == 21
    data_line = lines[-1]
    assert data_line.get_linewidth() == 2 and data_line.get_label() == "data"
    assert all(line.get_linewidth() == 1 for line in lines[:-1])
    grid, dens = data_line.get_data()
    # a density: integrates to ~1 over the grid, which extends past the data on both sides
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=0.01)
    assert grid[0] < y3.min() and grid[-1] > y3.max()
    # and it estimates the generating mixture smoothed by the kernel: the default bandwidth
    # h = 0.5 n^(-1/5) sd(y) widens each component to sqrt(2^2 + h^2)
    h = 0.5 * len(y3) ** -0.2 * y3.std(ddof=1)
    smoothed = np.sqrt(2.0**2 + h**2)
    truth = (TRUE_WEIGHTS * stats.norm.pdf(grid[:, None], TRUE_MEANS, smoothed)).sum(axis=1)
    assert np.abs(dens - truth).max() < 0.15 * truth.max()


def test_plot_ppc_uses_given_axes_and_is_reproducible(fitted):
    _, idata = fitted
    fig, ax = plt.subplots()
    assert mixtures.plot_ppc(idata, num_draws=5, ax=ax, random_seed=1) is ax
    other = mixtures.plot_ppc(idata, num_draws=5, random_seed=1)
    assert len(ax.get_lines()) >= 6  # five draws, the data and the mean at least
    for a, b in zip(ax.get_lines(), other.get_lines(), strict=True):
        np.testing.assert_array_equal(a.get_ydata(), b.get_ydata())
    third = mixtures.plot_ppc(idata, num_draws=5, random_seed=2)  # another seed, other draws
    assert not np.array_equal(ax.get_lines()[0].get_ydata(), third.get_lines()[0].get_ydata())


def test_plot_ppc_needs_predictive(fitted):
    _, idata = fitted
    bare = idata.copy()
    del bare.posterior_predictive
    with pytest.raises(ValueError, match=r"run mixtures.sample_posterior_predictive first"):
        mixtures.plot_ppc(bare)
    with pytest.raises(ValueError, match=r"`num_draws` should be an integer >= 1, but got 0"):
        mixtures.plot_ppc(idata, num_draws=0)
    with pytest.raises(ValueError, match=r"`bw_adjust` should be > 0, but got 0"):
        mixtures.plot_ppc(idata, bw_adjust=0)


def test_every_curve_uses_the_data_bandwidth(fitted, y3):
    _, idata = fitted
    ax = mixtures.plot_ppc(idata, num_draws=3, random_seed=0, bw_adjust=0.7)
    grid, dens = ax.get_lines()[-1].get_data()
    h = 0.7 * len(y3) ** -0.2 * y3.std(ddof=1)
    direct = stats.norm.pdf(grid[:, None], y3, h).mean(axis=1)
    np.testing.assert_allclose(dens, direct, rtol=1e-10)


def test_plot_trace(fitted):
    _, idata = fitted
    axes = mixtures.plot_trace(idata)
    assert axes.shape == (3, 2)
    assert [a.get_title() for a in axes[:, 0]] == ["weights", "means", "sigma"]
    labels = [t.get_text() for t in axes[1, 0].get_legend().get_texts()]
    assert labels == ["component 0", "component 1", "component 2", "chain 0", "chain 1"]
    # colour is the component: the legend's colours are the lines' colours
    line_colors = {matplotlib.colors.to_hex(line.get_color()) for line in axes[1, 0].lines}
    assert line_colors == {matplotlib.colors.to_hex(f"C{j}") for j in range(3)}


def test_plot_trace_gives_each_feature_its_own_row_and_scale():
    import arviz as az

    rng = np.random.default_rng(0)
    means = np.stack([rng.normal([2.0, 4.5], 0.05, size=(2, 200, 2)),
                      rng.normal([55.0, 80.0], 0.5, size=(2, 200, 2))], axis=-1)  # fmt: skip
    post = {"weights": rng.dirichlet([30, 30], size=(2, 200)), "means": means}
    idata = az.from_dict(posterior=post, dims={"weights": ["component"],
                         "means": ["component", "feature"]},
                         coords={"feature": ["eruptions", "waiting"]})  # fmt: skip
    axes = mixtures.plot_trace(idata)
    titles = [a.get_title() for a in axes[:, 0]]
    assert titles == ["weights", "means (eruptions)", "means (waiting)"]
    for row, (lo, hi) in zip(axes[1:], [(1.5, 5.0), (50.0, 85.0)], strict=True):
        left, right = row[0].get_xlim()  # the density panel spans this feature's draws only
        assert lo < left < right < hi
        labels = [t.get_text() for t in row[0].get_legend().get_texts()]
        assert labels[:2] == ["component 0", "component 1"]
