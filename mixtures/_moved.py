"""The module paths before the subpackages, kept importable (``import mixtures.models`` works).

The package's modules moved into ``model/``, ``engines/``, ``analysis/`` and ``plots/``. A
user's ``from mixtures.models import full_mixture`` or a pickled reference to an old path still
resolves: this finder maps each old dotted path to its new module, on first import, and the
import system then binds the same module object under both names (no second copy). Nothing is
imported early, so ``mixtures --help`` still does not import PyMC.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util

#: Old path -> new path.
MOVED = {
    "mixtures.models": "mixtures.model.univariate",
    "mixtures.multivariate": "mixtures.model.multivariate",
    "mixtures.spec": "mixtures.model.spec",
    "mixtures.families": "mixtures.model.densities",
    "mixtures.mfm": "mixtures.model.mfm",
    "mixtures.mfm_mv": "mixtures.model.mfm_mv",
    "mixtures.mfm_spec": "mixtures.model.mfm_spec",
    "mixtures.inference": "mixtures.engines.sampling",
    "mixtures.steps": "mixtures.engines.steps",
    "mixtures.diagnostics": "mixtures.analysis.diagnostics",
    "mixtures.loglik": "mixtures.analysis.loglik",
    "mixtures.assignments": "mixtures.analysis.assignments",
    "mixtures.labels": "mixtures.analysis.labels",
    "mixtures.evidence": "mixtures.analysis.evidence",
    "mixtures.bridge": "mixtures.analysis.bridge",
    "mixtures.selection": "mixtures.analysis.selection",
    "mixtures.calibration": "mixtures.analysis.calibration",
    "mixtures.summaries": "mixtures.analysis.summaries",
    "mixtures.plots2d": "mixtures.plots.two_d",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve an old module path to the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        """Return a spec for an old path, ``None`` for every other name."""
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        """Return the module at the new path (imported if it was not yet)."""
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        """Nothing to run: the module was executed under its new path."""
