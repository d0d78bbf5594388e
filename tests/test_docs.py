"""The documentation site builds with warnings as errors, without executing the notebooks."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (out / "api.html").read_text()
    for name in ("fit_many", "choose_k", "relabel", "assignment_probabilities", "full_mixture"):
        assert name in api
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = (out / "gallery" / f"{nb.stem}.html").read_text()
        assert "<img" in page, nb.stem  # the committed figures are rendered
    page = (out / "getting_started.html").read_text()
    assert "demo" in page and "pytest" in page  # the README's two commands (highlighted)
