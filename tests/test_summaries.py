import numpy as np
import pytest

import mixtures


def test_table_columns_rows_and_values(fitted):
    _, idata = fitted
    table = mixtures.summary_table(idata)
    assert list(table.columns) == [
        "mean",
        "sd",
        "hdi_3%",
        "hdi_97%",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    ]
    expected_rows = [f"{v}[{j}]" for v in ("weights", "means", "sigma") for j in range(3)]
    assert table.index.tolist() == expected_rows
    draws = idata.posterior["means"].values.reshape(-1, 3)
    np.testing.assert_allclose(
        table.loc[["means[0]", "means[1]", "means[2]"], "mean"], draws.mean(axis=0), atol=1e-3
    )
    np.testing.assert_allclose(
        table.loc[["means[0]", "means[1]", "means[2]"], "sd"], draws.std(axis=0, ddof=1), atol=1e-3
    )
    # 94% HDI: the narrowest interval holding 94% of the draws (computed here by brute force)
    x = np.sort(draws[:, 0])
    m = int(np.floor(0.94 * len(x)))
    widths = x[m:] - x[: len(x) - m]
    i = int(np.argmin(widths))
    assert table.loc["means[0]", "hdi_3%"] == pytest.approx(x[i], abs=1e-3)
    assert table.loc["means[0]", "hdi_97%"] == pytest.approx(x[i + m], abs=1e-3)


def test_hdi_prob_and_var_names(fitted):
    _, idata = fitted
    table = mixtures.summary_table(idata, var_names=["sigma"], hdi_prob=0.5)
    assert table.index.tolist() == ["sigma[0]", "sigma[1]", "sigma[2]"]
    assert {"hdi_25%", "hdi_75%"} <= set(table.columns)


def test_text_formats(fitted):
    _, idata = fitted
    table = mixtures.summary_table(idata)
    md = mixtures.summary_table(idata, fmt="markdown").splitlines()
    assert md[0].startswith("|  | mean | sd | hdi_3% | hdi_97% |")
    assert set(md[1]) <= set("|-:")
    assert len(md) == 2 + len(table)
    # four significant digits in text; the DataFrame (and CSV) keep full precision
    assert md[2].startswith(f"| weights[0] | {table.iloc[0, 0]:.4g} | {table.iloc[0, 1]:.4g} |")
    assert float(md[2].split("|")[2]) == pytest.approx(table.iloc[0, 0], rel=1e-3)
    csv = mixtures.summary_table(idata, fmt="csv").splitlines()
    assert csv[0] == ",mean,sd,hdi_3%,hdi_97%,mcse_mean,mcse_sd,ess_bulk,ess_tail,r_hat"
    assert csv[4].startswith("means[0],")
    assert float(csv[1].split(",")[1]) == table.iloc[0, 0]  # unrounded
    latex = mixtures.summary_table(idata, fmt="latex")
    assert latex.startswith("\\begin{tabular}{lrrrrrrrrr}")
    assert "hdi\\_3\\%" in latex and "means[0] &" in latex
    assert latex.count("\\\\") == 1 + len(table)


def test_bad_arguments(fitted):
    _, idata = fitted
    with pytest.raises(
        ValueError,
        match=r"`fmt` should be None or one of \['markdown', 'csv', 'latex'\], but got 'html'",
    ):
        mixtures.summary_table(idata, fmt="html")
    with pytest.raises(ValueError, match=r"`hdi_prob` should be in \(0, 1\), but got 94"):
        mixtures.summary_table(idata, hdi_prob=94)
    with pytest.raises(
        ValueError, match=r"`var_names` should name posterior variables .* but got \['p'\]"
    ):
        mixtures.summary_table(idata, var_names=["p"])
