"""Sphinx configuration: the getting-started page, the executed notebooks, the API reference.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (the notebooks are rendered with
their committed outputs, never re-executed).
"""

import shutil
from pathlib import Path

import mixtures

HERE = Path(__file__).parent

project = "mixtures"
author = "the mixtures developers"
release = version = mixtures.__version__
copyright = "2026, the mixtures developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"
nb_execution_mode = "off"  # the notebooks are executed and committed; the docs only render them
myst_enable_extensions = ["dollarmath"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "pydata_sphinx_theme"
html_title = "mixtures"
html_theme_options = {"navigation_with_keys": False}
suppress_warnings = ["mystnb.unknown_mime_type"]

# The gallery is the notebooks directory, copied in at build time (one copy, one truth).
gallery = HERE / "gallery"
gallery.mkdir(exist_ok=True)
for old in gallery.glob("*.ipynb"):
    old.unlink()
for nb in sorted((HERE.parent / "notebooks").glob("*.ipynb")):
    shutil.copy(nb, gallery / nb.name)
