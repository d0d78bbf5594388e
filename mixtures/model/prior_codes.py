"""The integer codes of the scale-prior families, shared by the spec and the Numba kernels.

A kernel cannot hold a Python object, so a scale prior (of the component sds, or of the
Student-t degrees of freedom) reaches it as a code and two parameter arrays: the code picks
the log-density in :func:`mixtures._kernels.scale_logpdf`, and
:data:`mixtures.model.spec.SCALE_FAMILIES` gives each family its code from this table. This
module imports nothing, so describing a model does not load Numba and the kernels do not load
PyMC. Adding a scale family is one entry here, one branch in ``scale_logpdf`` and one entry in
the spec's table.
"""

__all__ = ["FIXED", "SCALE_CODES"]

#: No prior: the parameter is known (fixed) and the kernel does not move it.
FIXED = -1

#: Scale family name -> its code in the kernels; parameters in the order of the family's
#: ``params`` (at most two: ``p0``, ``p1``).
SCALE_CODES = {
    "HalfNormal": 0,  # (sigma)
    "HalfCauchy": 1,  # (beta)
    "HalfStudentT": 2,  # (nu, sigma)
    "Exponential": 3,  # (lam)
    "Gamma": 4,  # (alpha, beta)
    "InverseGamma": 5,  # (alpha, beta)
    "LogNormal": 6,  # (mu, sigma)
    "Uniform": 7,  # (lower, upper)
}
