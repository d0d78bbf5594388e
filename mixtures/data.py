"""Datasets shipped with the package, and the seeded generators of the synthetic ones.

The CSV files live in the repository's ``data/`` folder and are packaged into the wheel as
``mixtures/_data``; :func:`load_dataset` reads whichever of the two is present, so it works
from an installed package as well as from a checkout. Run ``python -m mixtures.data DIR`` to
regenerate the synthetic files (the tests check that the shipped CSVs equal the generators).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "list_datasets",
    "load_dataset",
    "make_far_group",
    "make_four_clusters_2d",
    "make_three_clusters_2d",
    "make_three_gaussians",
    "make_with_outliers",
]

_DESCRIPTIONS = {
    "three_gaussians": "1-D: 90/50/75 draws from N(9, 2), N(21, 2), N(35, 2) (synthetic)",
    "three_clusters_2d": "2-D: 200 draws from each of three correlated Gaussians (synthetic)",
    "four_clusters_2d": "2-D: 50 draws from each of four Gaussians, two sharing a mean (synthetic)",
    "old_faithful": "2-D: 272 Old Faithful eruptions (min) and waiting times (min) (real)",
    "galaxies": "1-D: velocities (km/s) of 82 galaxies in the Corona Borealis region (real)",
    "far_group": "1-D: 80 points, 4 of them in a small group far out (synthetic, multimodal)",
    "with_outliers": "1-D: 100/100 draws from N(0, 1), N(6, 1) and 6 gross outliers (synthetic)",
}


def make_three_gaussians(seed: int = 0) -> pd.DataFrame:
    """Draw the 1-D three-component data set of the PyMC book excerpt.

    90, 50 and 75 points from N(9, 2), N(21, 2) and N(35, 2): 215 in total.

    Parameters
    ----------
    seed : int, default 0
        Seed of the :class:`numpy.random.Generator` used; the shipped CSV uses the default.
        Seed 0 is the first whose per-component sample means and sds all lie within 1.5
        standard errors of the generating values, so a correct fit covers the truth.

    Returns
    -------
    pandas.DataFrame
        Columns ``x`` (float) and ``component`` (the true component, 0-2).
    """
    sizes = np.array([90, 50, 75])
    means = np.array([9.0, 21.0, 35.0])
    sds = np.array([2.0, 2.0, 2.0])
    rng = np.random.default_rng(seed)
    component = np.repeat(np.arange(3), sizes)
    x = rng.normal(means[component], sds[component])
    return pd.DataFrame({"x": x, "component": component})


def make_far_group(seed: int = 0) -> pd.DataFrame:
    """Draw 80 points with a small separated group: a posterior with several modes for k = 3.

    46 from N(0, 1), 30 from N(4, 1.5) and 4 from N(14, 0.5). With three components the small
    far group can be a component of its own, or be absorbed by a wide one while the two big
    groups share the other two: the modes that make chains stick.

    Parameters
    ----------
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``x`` and ``component`` (0-2).
    """
    sizes = np.array([46, 30, 4])
    means = np.array([0.0, 4.0, 14.0])
    sds = np.array([1.0, 1.5, 0.5])
    rng = np.random.default_rng(seed)
    component = np.repeat(np.arange(3), sizes)
    return pd.DataFrame({"x": rng.normal(means[component], sds[component]), "component": component})


def make_with_outliers(seed: int = 0) -> pd.DataFrame:
    """Draw two Gaussian clusters and six gross outliers: the robust (Student-t) example.

    100 and 100 points from N(0, 1) and N(6, 1), then 6 outliers, 3 below and 3 above, at a
    distance drawn uniformly from 20 to 40 from the nearest cluster's centre (so 20 to 40
    sds out). A Normal mixture's component means and sds are dragged by the outliers; a
    Student-t mixture's stay where the clusters are (``full_mixture(y, 2, family="t")``).

    Parameters
    ----------
    seed : int, default 0
        Seed of the :class:`numpy.random.Generator` used; the shipped CSV uses the default.

    Returns
    -------
    pandas.DataFrame
        Columns ``x`` (float) and ``component`` (0 or 1; -1 for the outliers), the
        clusters first. ``df[df.component >= 0]`` is the data set without outliers.
    """
    rng = np.random.default_rng(seed)
    component = np.repeat([0, 1], 100)
    x = rng.normal(np.array([0.0, 6.0])[component], 1.0)
    distance = rng.uniform(20.0, 40.0, size=6)
    outliers = np.concatenate([0.0 - distance[:3], 6.0 + distance[3:]])
    return pd.DataFrame(
        {"x": np.concatenate([x, outliers]), "component": np.concatenate([component, [-1] * 6])}
    )


def _draw_gaussians_2d(means, covs, n_each: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    blocks = [rng.multivariate_normal(m, c, size=n_each) for m, c in zip(means, covs)]
    xy = np.vstack(blocks)
    component = np.repeat(np.arange(len(means)), n_each)
    return pd.DataFrame({"x1": xy[:, 0], "x2": xy[:, 1], "component": component})


#: Means, covariances and weights of the EM-for-GMM teaching notebook's true mixture.
THREE_CLUSTERS_2D = {
    "means": np.array([[1.2, 0.4], [-4.4, 1.0], [4.1, -0.3]]),
    "covariances": np.array(
        [
            [[0.8, -0.4], [-0.4, 1.0]],
            [[1.2, -0.8], [-0.8, 1.0]],
            [[1.2, 0.6], [0.6, 3.0]],
        ]
    ),
}

#: Means and covariances of the BayesPy Gaussian-mixture example's four clusters.
FOUR_CLUSTERS_2D = {
    "means": np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 2.0], [-2.0, -2.0]]),
    "covariances": np.array(
        [
            [[2.0, 0.0], [0.0, 0.1]],
            [[0.1, 0.0], [0.0, 2.0]],
            [[2.0, -1.5], [-1.5, 2.0]],
            [[0.5, 0.0], [0.0, 0.5]],
        ]
    ),
}


def make_three_clusters_2d(seed: int = 42, n_each: int = 200) -> pd.DataFrame:
    """Draw the EM teaching notebook's 2-D data: `n_each` points from each of 3 Gaussians.

    The means and covariances are :data:`THREE_CLUSTERS_2D`.

    Parameters
    ----------
    seed : int, default 42
        Seed of the :class:`numpy.random.Generator`; the shipped CSV uses the default.
    n_each : int, default 200
        Points per component.

    Returns
    -------
    pandas.DataFrame
        Columns ``x1``, ``x2`` and ``component`` (0-2).
    """
    p = THREE_CLUSTERS_2D
    return _draw_gaussians_2d(p["means"], p["covariances"], n_each, seed)


def make_four_clusters_2d(seed: int = 42, n_each: int = 50) -> pd.DataFrame:
    """Draw the BayesPy example's 2-D data: `n_each` points from each of 4 Gaussians.

    The means and covariances are :data:`FOUR_CLUSTERS_2D` (two clusters share the mean
    (0, 0) and differ only by their elongation).

    Parameters
    ----------
    seed : int, default 42
        Seed of the :class:`numpy.random.Generator`; the shipped CSV uses the default.
    n_each : int, default 50
        Points per component.

    Returns
    -------
    pandas.DataFrame
        Columns ``x1``, ``x2`` and ``component`` (0-3).
    """
    p = FOUR_CLUSTERS_2D
    return _draw_gaussians_2d(p["means"], p["covariances"], n_each, seed)


_GENERATORS = {
    "three_gaussians": make_three_gaussians,
    "three_clusters_2d": make_three_clusters_2d,
    "four_clusters_2d": make_four_clusters_2d,
    "far_group": make_far_group,
    "with_outliers": make_with_outliers,
}


def _data_dir() -> Path:
    here = Path(__file__).resolve().parent
    packaged = here / "_data"
    if packaged.is_dir():
        return packaged
    return here.parent / "data"  # a source checkout or an editable install


def list_datasets() -> dict[str, str]:
    """Return the shipped datasets, name -> one-line description.

    Examples
    --------
    >>> import mixtures
    >>> sorted(mixtures.list_datasets())[:3]
    ['far_group', 'four_clusters_2d', 'galaxies']
    """
    return dict(_DESCRIPTIONS)


def load_dataset(name: str) -> pd.DataFrame:
    """Load a shipped dataset as a new DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`.

    Returns
    -------
    pandas.DataFrame
        See ``data/README.md`` for each dataset's columns and provenance.

    Examples
    --------
    >>> import mixtures
    >>> mixtures.load_dataset("three_gaussians").shape
    (215, 2)
    """
    if name not in _DESCRIPTIONS:
        raise ValueError(f"`name` should be one of {sorted(_DESCRIPTIONS)}, but got {name!r}")
    path = _data_dir() / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the data file for {name!r} is missing: {path}")
    return pd.read_csv(path)


def write_synthetic_datasets(directory) -> list[Path]:
    """Write every synthetic dataset's CSV into `directory`; return the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in _GENERATORS.items():
        path = directory / f"{name}.csv"
        make().to_csv(path, index=False)
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    for p in write_synthetic_datasets(sys.argv[1] if len(sys.argv) > 1 else "data"):
        print(p)
