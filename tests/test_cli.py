import matplotlib.image as mpimg
import pytest

from mixtures.cli import main


@pytest.mark.filterwarnings("ignore::mixtures.ConvergenceWarning")  # 200 draws on purpose
def test_demo_prints_table_and_writes_figure(tmp_path, capsys):
    out = tmp_path / "ppc.png"
    nc = tmp_path / "fit.nc"
    code = main(
        [
            "demo",
            "--draws",
            "200",
            "--tune",
            "200",
            "--chains",
            "2",
            "--quiet",
            "--out",
            str(out),
            "--netcdf",
            str(nc),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| means[1] |" in text and "| sigma[2] |" in text
    assert f"PPC figure written to {out}" in text
    assert mpimg.imread(out).shape[0] > 100
    assert nc.stat().st_size > 0
