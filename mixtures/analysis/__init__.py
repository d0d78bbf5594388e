"""Analysis of fits: what a user asks of a posterior once it is sampled.

The pointwise log-likelihood, assignments and prediction, label switching and relabelling, the
evidence (bridge sampling, stepping-stone), the choice of K, calibration (SBC), summaries,
convergence diagnostics and the EM baseline.
"""
