"""The package layout: old module paths still import, and to the same module objects."""

import importlib
import subprocess
import sys

import pytest

import mixtures
from mixtures._moved import MOVED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_module_path_is_the_new_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_paths_keep_their_public_names_and_em_stays_the_function():
    from mixtures.inference import sample
    from mixtures.models import full_mixture
    from mixtures.plots2d import plot_mixture_2d

    assert sample is mixtures.sample and full_mixture is mixtures.full_mixture
    assert plot_mixture_2d is mixtures.plot_mixture_2d
    em_module = importlib.import_module("mixtures.em")  # the old module path
    assert em_module is importlib.import_module("mixtures.analysis.em")
    assert callable(mixtures.em) and mixtures.em.__name__ == "em"  # not rebound to the module
    assert mixtures.plots.plot_ppc is mixtures.plot_ppc


def test_the_command_line_and_old_paths_do_not_import_pymc_early():
    code = "import mixtures, mixtures.cli, sys; print('pymc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
