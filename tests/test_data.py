import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixtures
from mixtures import data as mdata

GENERATED = {
    "three_gaussians": mdata.make_three_gaussians,
    "three_clusters_2d": mdata.make_three_clusters_2d,
    "four_clusters_2d": mdata.make_four_clusters_2d,
    "far_group": mdata.make_far_group,
    "with_outliers": mdata.make_with_outliers,
}


def test_list_datasets_names():
    assert set(mixtures.list_datasets()) == {
        "three_gaussians",
        "three_clusters_2d",
        "four_clusters_2d",
        "galaxies",
        "far_group",
        "old_faithful",
        "with_outliers",
    }


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_shipped_csv_equals_generator(name):
    # equal up to the last bits: the generators multiply by a covariance factor, and BLAS kernels
    # differ in rounding between CPUs (1.8e-15 on an AVX2 machine against the shipped file)
    pd.testing.assert_frame_equal(
        mixtures.load_dataset(name), GENERATED[name](), check_exact=False, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    ("name", "shape", "columns", "counts"),
    [
        ("three_gaussians", (215, 2), ["x", "component"], [90, 50, 75]),
        ("three_clusters_2d", (600, 3), ["x1", "x2", "component"], [200, 200, 200]),
        ("four_clusters_2d", (200, 3), ["x1", "x2", "component"], [50, 50, 50, 50]),
        ("with_outliers", (206, 2), ["x", "component"], [6, 100, 100]),
    ],
)
def test_synthetic_layout(name, shape, columns, counts):
    df = mixtures.load_dataset(name)
    assert df.shape == shape
    assert list(df.columns) == columns
    assert df["component"].value_counts().sort_index().tolist() == counts


def test_three_gaussians_matches_its_generating_law():
    df = mixtures.load_dataset("three_gaussians")
    stats = df.groupby("component")["x"].agg(["mean", "std", "size"])
    se = 2 / np.sqrt(stats["size"].to_numpy())
    np.testing.assert_array_less(np.abs(stats["mean"].to_numpy() - [9, 21, 35]), 3 * se)


def test_galaxies_is_the_r_dataset():
    v = mixtures.load_dataset("galaxies")["velocity"]
    assert v.shape == (82,)
    # MASS::galaxies as documented: mean 20828.17, range 9172-34279
    assert abs(v.mean() - 20828.17) < 0.01
    assert (v.min(), v.max()) == (9172, 34279)


def test_old_faithful_is_the_r_dataset():
    df = mixtures.load_dataset("old_faithful")
    assert df.shape == (272, 2)
    assert list(df.columns) == ["eruptions", "waiting"]
    # Published summaries of R's datasets::faithful.
    assert df["eruptions"].mean() == pytest.approx(3.487783, abs=1e-6)
    assert df["waiting"].mean() == pytest.approx(70.897059, abs=1e-6)
    assert (df["eruptions"].min(), df["eruptions"].max()) == (1.6, 5.1)
    assert (df["waiting"].min(), df["waiting"].max()) == (43, 96)
    assert df.iloc[0].tolist() == [3.6, 79]


def test_load_returns_a_fresh_frame():
    a = mixtures.load_dataset("three_gaussians")
    a.loc[0, "x"] = -1e9
    assert mixtures.load_dataset("three_gaussians").loc[0, "x"] != -1e9


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"`name` should be one of \[.*'old_faithful'.*\], but got 'faithful'"
    ):
        mixtures.load_dataset("faithful")


def test_generators_are_seeded():
    a, b = mdata.make_four_clusters_2d(seed=3), mdata.make_four_clusters_2d(seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not mdata.make_four_clusters_2d(seed=4).equals(a)


def test_wheel_ships_the_data(tmp_path):
    root = Path(mdata.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("mixtures-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in mixtures.list_datasets():
        assert f"mixtures/_data/{name}.csv" in names
