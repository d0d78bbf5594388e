"""Numba kernels: the Gibbs engine's whole iteration, and the scale priors' log-densities.

One iteration of replica r (chain x temperature) is a fused pass over the data that draws every
assignment from its exact (tempered) conditional and accumulates counts and the sums of
``d`` and ``d**2``, ``d = y - mu_old[z]`` (centred on the current means, so the sum of squares
about the new means has no cancellation); then exact draws of the weights and means, a
Metropolis move of the sds, and, per chain, replica exchange between adjacent temperatures.

The sweeps go over the points in blocks (``_BLOCK``, ``_MV_BLOCK``), each step a loop over the
block that LLVM turns into SIMD code (Numba has no vectorised ``math.exp`` here, so the loops
hold plain arithmetic, comparisons and selects only, on contiguous views): the K log-weights per
point, their maximum, :func:`exp_rough` (a branch-free exponential to 2e-9; the rare points whose
draw it could change are redrawn with the full-precision :func:`exp`), the counter-based uniform,
the pick as a count of comparisons with the cumulative sums, and the per-component sums as masked
per-lane accumulations. The sweep kernels are compiled with ``fastmath={"contract"}`` (FMA
contraction only: every other IEEE rule holds, so ``inf``/``nan`` behave and nothing is
reassociated). The threaded sweeps run the serial kernel (``nogil``) on ranges of the points on
a pool of Python threads.

Random numbers: every replica (and every chain's swap move) owns a SplitMix64 stream in a
``uint64`` state, so results do not depend on threads. The sweep's uniforms are counter-based
(SplitMix64 of a per-sweep key and the observation index), so the serial and the threaded sweep
give identical draws. Kernels are cached on disk (``cache=True``).

State: a run's fixed part (priors, switches, thresholds) is a :class:`KernelConfig` (univariate)
or :class:`MvKernelConfig`, the arrays it updates a :class:`ChainState` or
:class:`MvChainState`, the incomplete rows of multivariate data a :class:`MissingRows` (named
tuples: Numba reads a field as it indexes a plain tuple). The t family adds
:class:`mixtures._kernels_t.TConfig` and :class:`~mixtures._kernels_t.TState`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, types, vectorize
from numba.extending import intrinsic

from mixtures.model.prior_codes import SCALE_CODES

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S12 = np.uint64(12)
_ONE_BITS = np.uint64(0x3FF0000000000000)  # the bits of 1.0
_TWO53 = 1.0 / 9007199254740992.0
# joint draws tried for ordered means at beta = 1 (the recorded replica); a tempered replica,
# whose wide conditional is ordered about 1 time in k!, tries once (measured: 0.50 against
# 0.30 us per replica and iteration at k = 3), then takes the Metropolis steps, which leave
# its conditional invariant just the same
_JOINT_TRIES = 5
_LOG_2PI = math.log(2.0 * math.pi)
_RW_STEP = 0.7
_BLOCK = 256  # points per block of the sweep
# lanes of the sweep's accumulators (a power of two): zeroed and added up once per replica
# and range, which at a few hundred points per replica is not negligible
_LANES = 32
_MV_BLOCK = 64  # of the multivariate sweep (its lane accumulators hold k d (d + 1) / 2 sums)
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # 0x3FE62E42FEE00000: n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.9082149292705877e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer
_TINY_SHIFT = 64
_TINY_SCALE = 2.0**-64
_EXP_MAX = 709.782712893384  # log of the largest float64
_LN2 = 0.6931471805599453
_ROUGH_MIN = -708.0  # below it exp_rough gives 0
_ROUGH_TOL = 2.0**-26  # the sweep's exact fallback band, relative to the total (exp_rough: 2e-9)


# --------------------------------------------------------------------------- the kernels' state
# What a run holds, in named tuples (Numba compiles attribute access to a field read, as
# indexing a plain tuple): a *config* that stays fixed during a run (priors, switches,
# thresholds) and a *chain state* of arrays the kernels update in place. ``n_rep`` replicas =
# chains x temperatures; replica r of chain ch sits at rung ``temp_of[r]``, and
# ``rep_at[ch, t]`` is the replica at rung t of chain ch (the last rung, beta = 1, is stored).


class KernelConfig(NamedTuple):
    """What stays fixed during a univariate run (:func:`run`, :func:`relocate`).

    Attributes
    ----------
    weight_conc : ndarray of shape (k,)
        Concentrations of the Dirichlet prior of the weights.
    mean_loc, mean_scale : ndarray of shape (k,)
        The Normal prior of the means, N(mean_loc, mean_scale**2) (ones when the means are
        known).
    sd_code : int
        The sd prior's scale family (:data:`mixtures.model.prior_codes.SCALE_CODES`; -1
        when the sds are known).
    sd_p0, sd_p1 : ndarray of shape (k,)
        The sd prior's parameters, in the order of the table (``sd_p1`` unused by
        one-parameter families).
    sd_floor : float
        The sd prior's truncation: a proposed sd at or below it is rejected.
    collapse_at : float
        An sd below this stops the run (the likelihood is unbounded on tied values).
    means_free, sd_free : bool
        Whether the means, the sds are sampled (False: known, kept as given).
    shared_sd : bool
        One sd for every component.
    ordered : bool
        The means increase with the component index.
    store_z : bool
        Record the cold replicas' assignments.
    moves : bool
        Run the relocation move (:func:`relocate`) after every iteration.
    exchangeable : bool
        The prior is the same for every component, so the move may sort the components.
    """

    weight_conc: np.ndarray
    mean_loc: np.ndarray
    mean_scale: np.ndarray
    sd_code: int
    sd_p0: np.ndarray
    sd_p1: np.ndarray
    sd_floor: float
    collapse_at: float
    means_free: bool
    sd_free: bool
    shared_sd: bool
    ordered: bool
    store_z: bool
    moves: bool = False
    exchangeable: bool = False


class ChainState(NamedTuple):
    """The arrays a univariate run updates in place (continued across calls).

    Attributes
    ----------
    logw, mu, sd : ndarray of shape (n_rep, k)
        Every replica's log weights, means and sds (a shared sd repeated over k).
    z : ndarray of int8 or int32, shape (n_rep, n_obs)
        Every replica's assignments.
    state : ndarray of uint64, shape (n_rep,)
        Every replica's random stream (SplitMix64 state).
    swap_state : ndarray of uint64, shape (chains,)
        Every chain's random stream of the replica exchange.
    temp_of : ndarray of int64, shape (n_rep,)
        The rung each replica is at.
    rep_at : ndarray of int64, shape (chains, n_temps)
        The replica at each rung of each chain.
    betas : ndarray of shape (n_temps,)
        The inverse temperatures, increasing to 1.
    swap_tries, swap_accepts : ndarray of int64, shape (max(n_temps - 1, 1),)
        Swap attempts and acceptances between rungs t and t + 1 (for the ladder's adaptation).
    fixed : ndarray of int32, shape (n_obs,)
        Known labels; -1 where unknown.
    """

    logw: np.ndarray
    mu: np.ndarray
    sd: np.ndarray
    z: np.ndarray
    state: np.ndarray
    swap_state: np.ndarray
    temp_of: np.ndarray
    rep_at: np.ndarray
    betas: np.ndarray
    swap_tries: np.ndarray
    swap_accepts: np.ndarray
    fixed: np.ndarray


class MvKernelConfig(NamedTuple):
    """What stays fixed during a multivariate run (:func:`mv_run`, :func:`mv_run_missing`).

    Attributes
    ----------
    weight_conc : ndarray of shape (k,)
        Concentrations of the Dirichlet prior of the weights.
    mean_loc, mean_scale : ndarray of shape (k, d)
        The Normal prior of the means, independent per feature.
    wishart_nu : float
        Degrees of freedom of the Wishart prior of every precision, Wishart(nu, psi^-1)
        (the covariance is inverse-Wishart(nu, psi)).
    wishart_psi : ndarray of shape (d, d)
        Its scale matrix.
    ordered_by : int
        The feature along which the means increase with the component index; -1: none.
    store_z : bool
        Record the cold replicas' assignments.
    """

    weight_conc: np.ndarray
    mean_loc: np.ndarray
    mean_scale: np.ndarray
    wishart_nu: float
    wishart_psi: np.ndarray
    ordered_by: int
    store_z: bool


class MvChainState(NamedTuple):
    """The arrays a multivariate run updates in place (see :class:`ChainState`).

    Attributes
    ----------
    logw : ndarray of shape (n_rep, k)
    mu : ndarray of shape (n_rep, k, d)
    fac : ndarray of shape (n_rep, k, d, d)
        Factors F of the precisions, Lambda = F F^T (not triangular: :func:`_mv_precision`
        keeps F = U^-T A).
    logdet : ndarray of shape (n_rep, k)
        log |Lambda| of every component.
    z, state, swap_state, temp_of, rep_at, betas, swap_tries, swap_accepts, fixed
        As in :class:`ChainState`.
    """

    logw: np.ndarray
    mu: np.ndarray
    fac: np.ndarray
    logdet: np.ndarray
    z: np.ndarray
    state: np.ndarray
    swap_state: np.ndarray
    temp_of: np.ndarray
    rep_at: np.ndarray
    betas: np.ndarray
    swap_tries: np.ndarray
    swap_accepts: np.ndarray
    fixed: np.ndarray


class MissingRows(NamedTuple):
    """The incomplete rows of a multivariate run (:func:`mv_run_missing`), grouped by pattern.

    Built by :func:`mixtures.engines.gibbs_mv.missing_rows`. The rows of missingness pattern p
    are the incomplete rows ``starts[p]`` to ``starts[p + 1] - 1``.

    Attributes
    ----------
    xo : ndarray of shape (d, n_inc)
        By feature (struct of arrays): row i's observed cells, in the order of its pattern's
        observed features, in ``xo[:n_o[p], i]``; the rest zero (the log-weights of the
        observed marginal run over every feature, with zero factors past ``n_o[p]``).
    xc : ndarray of shape (n_rep, d, n_inc)
        The completed rows in every replica, by feature (updated in place).
    starts : ndarray of int64, shape (n_pat + 1,)
        Where each pattern's rows start, then the number of incomplete rows.
    pats : ndarray of int64, shape (n_pat, d)
        Per pattern the observed features, then the missing ones.
    n_o : ndarray of int64, shape (n_pat,)
        Per pattern the number of observed features.
    ref_mean, ref_var : ndarray of shape (d,)
        The reference density of the missing cells (independent Normals per feature).
    conditional : bool
        Draw the missing cells from their conditional given the observed cells (False only
        in the calibration test's negative control, see :func:`_pattern_tables`).
    """

    xo: np.ndarray
    xc: np.ndarray
    starts: np.ndarray
    pats: np.ndarray
    n_o: np.ndarray
    ref_mean: np.ndarray
    ref_var: np.ndarray
    conditional: bool


_HALF_NORMAL = SCALE_CODES["HalfNormal"]
_HALF_CAUCHY = SCALE_CODES["HalfCauchy"]
_HALF_STUDENT_T = SCALE_CODES["HalfStudentT"]
_EXPONENTIAL = SCALE_CODES["Exponential"]
_GAMMA = SCALE_CODES["Gamma"]
_INVERSE_GAMMA = SCALE_CODES["InverseGamma"]
_LOG_NORMAL = SCALE_CODES["LogNormal"]
_UNIFORM = SCALE_CODES["Uniform"]


def _scale_logpdf(code, x, p0, p1):
    """Unnormalised log-density of scale family `code` at `x` > 0 (parameters p0, p1).

    `code` is the family's entry in :data:`mixtures.model.prior_codes.SCALE_CODES`, `p0` and
    `p1` its parameters in the order listed there (``p1`` unused by one-parameter families).
    One definition, compiled twice: :func:`scale_logpdf` for the Gibbs kernels below and
    :func:`scale_logpdf_ufunc` for NumPy arrays (:class:`mixtures.model.spec.PriorFamily`). It lives
    in this file because Numba's on-disk cache checks only the file of a cached function, so a
    kernel and everything it calls must change together (the codes are compiled in as
    constants: after changing the table, touch this file).
    """
    if not x > 0.0:
        return -np.inf
    if code == _HALF_NORMAL:  # (sigma)
        return -0.5 * (x / p0) ** 2
    if code == _HALF_CAUCHY:  # (beta)
        return -np.log1p((x / p0) ** 2)
    if code == _HALF_STUDENT_T:  # (nu, sigma)
        return -0.5 * (p0 + 1.0) * np.log1p((x / p1) ** 2 / p0)
    if code == _EXPONENTIAL:  # (lam)
        return -p0 * x
    if code == _GAMMA:  # (alpha, beta)
        return (p0 - 1.0) * np.log(x) - p1 * x
    if code == _INVERSE_GAMMA:  # (alpha, beta)
        return -(p0 + 1.0) * np.log(x) - p1 / x
    if code == _LOG_NORMAL:  # (mu, sigma)
        return -np.log(x) - 0.5 * ((np.log(x) - p0) / p1) ** 2
    if code == _UNIFORM:  # (lower, upper)
        return 0.0 if p0 < x < p1 else -np.inf
    return np.nan


scale_logpdf = njit(cache=True)(_scale_logpdf)
scale_logpdf_ufunc = vectorize(["float64(int64, float64, float64, float64)"], cache=True)(
    _scale_logpdf
)


@intrinsic
def _as_int(typingctx, x):
    """Return the bits of a float64 as an int64 (an LLVM bitcast: free, and vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@intrinsic
def _as_float(typingctx, x):
    """Return the float64 whose bits are the int64 `x` (an LLVM bitcast)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@njit(inline="always")
def _mix(x):
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@njit(inline="always")
def _counter_uniform(key, i):
    """Return a uniform on [0, 1) from (key, i): the sweep's counter-based draws."""
    h = _mix(key + np.uint64(i + 1) * _GOLDEN)
    # (h >> 11) * 2**-53, converted through the bits (a vectorisable conversion): the top 52
    # bits as the mantissa of a number in [1, 2), and the 53rd as a select
    high = _as_float(np.int64((h >> _S12) | _ONE_BITS)) - 1.0
    return high + (_TWO53 if (h >> _S11) & np.uint64(1) else 0.0)


@njit(inline="always", fastmath={"contract"})
def exp(x):
    """Return e**x in plain arithmetic, so that a loop calling it vectorises.

    Numba's ``math.exp`` is a call per value (no SVML here); this is the same function as
    branch-free arithmetic: ``x = n ln 2 + r`` with ``|r| <= ln 2 / 2`` (n read off the bits of
    ``x / ln 2 + 1.5 * 2**52``, ln 2 split in two so that ``r`` is exact), a polynomial for
    ``e**r`` (degree 11, near-minimax: truncation 3e-18), and ``2**n`` added to the exponent
    bits. Results in the subnormal range are scaled by 2**-64 after the bit addition so that
    they round once (gradual underflow); below -745.13 the result is 0, above 709.78 it is inf.
    Relative error < 4e-16 over the normal range. Only FMA contraction is allowed
    (``fastmath={"contract"}``): reassociation would cancel the rounding trick.
    """
    xc = min(max(x, -746.0), 710.0)
    t = xc * _INV_LN2 + _ROUND
    nf = t - _ROUND  # the nearest integer to x / ln 2
    r = (xc - nf * _LN2_HI) - nf * _LN2_LO
    # near-minimax polynomial of e**r on [-ln 2 / 2, ln 2 / 2], degree 11 (Chebyshev fit,
    # mpmath.chebyfit; truncation error 3e-18), by Horner's rule
    p = r * 2.5110037605963777e-08 + 2.763263963904103e-07
    p = p * r + 2.755724091857897e-06
    p = p * r + 2.4801485482328494e-05
    p = p * r + 0.00019841269890047113
    p = p * r + 0.0013888888952314775
    p = p * r + 0.008333333333319601
    p = p * r + 0.0416666666664881
    p = p * r + 0.1666666666666668
    p = p * r + 0.5000000000000019
    p = p * r + 1.0
    p = p * r + 1.0
    tiny = xc < -708.0
    shift = _as_int(t) + (_TINY_SHIFT if tiny else 0)  # the low bits of t hold n
    v = _as_float(_as_int(p) + (shift << 52)) * (_TINY_SCALE if tiny else 1.0)
    v = np.inf if x > _EXP_MAX else v
    return v if x == x else x


@njit(inline="always", fastmath={"contract"})
def exp_rough(x):
    """Return e**x for x <= 0 to a relative error < 2e-9: half the work of :func:`exp`.

    The same range reduction (one FMA with ln 2: for x >= -708 the error of ``r`` is < 3e-14)
    and a degree-6 polynomial of ``e**r`` (a fit of the relative error at Chebyshev nodes:
    1.9e-9 on [-ln 2 / 2, ln 2 / 2]). Below -708 it gives 0 (an absolute error < 3e-308); nan
    gives nan; x > 0 is not handled. The sweep uses it for its first pass and redoes with
    :func:`exp` every point whose draw it could change (see :func:`_block_pick`).
    """
    xc = max(x, _ROUGH_MIN)
    t = xc * _INV_LN2 + _ROUND
    nf = t - _ROUND
    r = xc - nf * _LN2
    p = r * 0.0013829420623491697 + 0.008374771520204938
    p = p * r + 0.04166835803253591
    p = p * r + 0.1666642083211705
    p = p * r + 0.49999991493038903
    p = p * r + 1.000000036125899
    p = p * r + 1.0000000005920202
    v = _as_float(_as_int(p) + (_as_int(t) << 52))
    return v if x >= _ROUGH_MIN else (0.0 if x < _ROUGH_MIN else x)


@njit(cache=True, nogil=True, fastmath={"contract"})
def exp_array(x, out):
    """Write :func:`exp` of every value of the 1-D array `x` into `out` (a vectorised loop)."""
    for i in range(x.shape[0]):
        out[i] = exp(x[i])


@njit(inline="always")
def _next(state, r):
    """Advance stream r of `state`; return 64 random bits."""
    state[r] += _GOLDEN
    return _mix(state[r])


@njit(inline="always")
def _uniform(state, r):
    """Return a uniform on (0, 1) from stream r."""
    return (np.float64(_next(state, r) >> _S11) + 0.5) * _TWO53


@njit(inline="always")
def _normal(state, r):
    """Return a standard Normal (Box-Muller) from stream r."""
    u1 = _uniform(state, r)
    u2 = _uniform(state, r)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE_EXP = np.int64(0x3FF0000000000000)
_SQRT2 = 1.4142135623730951
_TWO_PI = 2.0 * math.pi


@njit(inline="always", fastmath={"contract"})
def log_unit(x):
    """Return log(x) for a normal float64 0 < x <= 1 in plain arithmetic (vectorisable).

    ``x = 2**e m`` with m in [sqrt(1/2), sqrt(2)) read off the bits; ``log m = 2 atanh f``,
    ``f = (m - 1) / (m + 1)``, ``|f| < 0.172``, by its series to f**21 (truncation < 1e-18,
    relative); ``e ln 2`` with ln 2 split in two. Zero, subnormals, negative numbers, inf and
    nan are not handled (the Normals' uniforms are >= 2**-53).
    """
    bits = _as_int(x)
    m = _as_float((bits & _MANTISSA) | _ONE_EXP)  # [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = np.float64((bits >> 52) - 1023 + (1 if big else 0))
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    p = f2 * 0.047619047619047616 + 0.05263157894736842
    p = p * f2 + 0.058823529411764705
    p = p * f2 + 0.06666666666666667
    p = p * f2 + 0.07692307692307693
    p = p * f2 + 0.09090909090909091
    p = p * f2 + 0.1111111111111111
    p = p * f2 + 0.14285714285714285
    p = p * f2 + 0.2
    p = p * f2 + 0.3333333333333333
    return e * _LN2_HI + (e * _LN2_LO + 2.0 * f * (p * f2 + 1.0))


@njit(inline="always", fastmath={"contract"})
def cos_sin_turn(u):
    """Return (cos 2 pi u, sin 2 pi u) for 0 <= u <= 1 in plain arithmetic (vectorisable).

    ``u`` less its nearest quarter turn q / 4 (exact) leaves an angle x in [-pi/4, pi/4]; the
    Taylor series of cos x to x**16 and of sin x to x**15 (truncation < 5e-17, relative); the
    quarter turns rotate the pair (products with 0 and +-1: exact).
    """
    t = u - ((u + _ROUND) - _ROUND)  # [-1/2, 1/2]
    qf = (4.0 * t + _ROUND) - _ROUND
    x = _TWO_PI * (t - 0.25 * qf)
    x2 = x * x
    c = x2 * 4.779477332387385e-14 - 1.1470745597729725e-11
    c = c * x2 + 2.08767569878681e-09
    c = c * x2 - 2.755731922398589e-07
    c = c * x2 + 2.48015873015873e-05
    c = c * x2 - 0.001388888888888889
    c = c * x2 + 0.041666666666666664
    c = c * x2 - 0.5
    c = c * x2 + 1.0
    s = x2 * -7.647163731819816e-13 + 1.6059043836821613e-10
    s = s * x2 - 2.505210838544172e-08
    s = s * x2 + 2.7557319223985893e-06
    s = s * x2 - 0.0001984126984126984
    s = s * x2 + 0.008333333333333333
    s = s * x2 - 0.16666666666666666
    s = x + x * x2 * s
    q = np.int64(qf) & 3  # the turn by q quarters, (cos, sin) -> (ca c + sb s, ca s - sb c)
    odd, half = q & 1, q & 2  # in integers: selects here keep LLVM from vectorising
    ca = np.float64((1 - odd) * (1 - half))
    sb = np.float64(odd * (half - 1))
    return ca * c + sb * s, ca * s - sb * c


@njit(inline="always", fastmath={"contract"})
def _fill_normals(state, r, out, count):
    """Write ``count`` standard Normals (Box-Muller, both coordinates) from stream r into `out`.

    ``out`` holds at least ``count + 1`` values. The uniforms are those that successive
    :func:`_uniform` calls would give (SplitMix64 is a counter: call t mixes state + t x the
    golden gamma), here computed without a carried dependence so that the loop vectorises; the
    stream advances by two per pair.
    """
    pairs = (count + 1) // 2
    base = state[r]
    for t in range(pairs):
        h1 = _mix(base + np.uint64(2 * t + 1) * _GOLDEN)
        h2 = _mix(base + np.uint64(2 * t + 2) * _GOLDEN)
        u1 = (np.float64(h1 >> _S11) + 0.5) * _TWO53
        u2 = (np.float64(h2 >> _S11) + 0.5) * _TWO53
        rad = math.sqrt(-2.0 * log_unit(u1))
        c, s = cos_sin_turn(u2)
        out[t] = rad * c
        out[pairs + t] = rad * s
    state[r] = base + np.uint64(2 * pairs) * _GOLDEN


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def normals_array(state, r, out):
    """Fill the 1-D array `out` (even length) with standard Normals from stream r of `state`."""
    _fill_normals(state, r, out, out.shape[0])


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def log_cos_sin_array(u, out):
    """Write log u, cos 2 pi u, sin 2 pi u of the 1-D array `u` into the rows of `out` (3, n)."""
    for i in range(u.shape[0]):
        out[0, i] = log_unit(u[i])
        c, s = cos_sin_turn(u[i])
        out[1, i] = c
        out[2, i] = s


@njit
def _log_gamma(shape, state, r):
    """Log of a Gamma(shape, 1) draw (Marsaglia-Tsang; exact in logs for tiny shapes)."""
    boost = 0.0
    if shape < 1.0:
        boost = math.log(_uniform(state, r)) / shape
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:  # acceptance >= 0.95 per try
        x = _normal(state, r)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(_uniform(state, r)) < 0.5 * x * x + d - d * v + d * math.log(v):
            return math.log(d * v) + boost


@njit(inline="always")
def _block_logits(yb, r, a, c, mu, lp, top):
    """Log-weights ``lp[j, b]`` of the block's points ``yb`` in replica r; ``top[b]`` their max."""
    k, m = a.shape[1], yb.shape[0]
    for j in range(k):
        aj, cj, mj = a[r, j], c[r, j], mu[r, j]
        row = lp[j]
        for b in range(m):
            d = yb[b] - mj
            row[b] = aj + cj * d * d
    block_max(lp, top, k, m)


@njit(inline="always")
def block_max(lp, top, k, m):
    """Set ``top[b]`` to the largest of the log-weights ``lp[0..k-1, b]``, for b < m."""
    row = lp[0]
    for b in range(m):
        top[b] = row[b]
    for j in range(1, k):
        row = lp[j]
        for b in range(m):
            top[b] = max(top[b], row[b])


@njit(inline="always")
def _block_pick(fb, zb, i0, key, lp, top, tot, u, pick):
    """Draw the components of a block of points; return how many assignments changed.

    ``fb``: the points' known labels (-1: unknown); ``zb``: their assignments; ``i0``: the
    global index of the first (the uniforms' counter). ``lp`` has 2 k rows: on entry rows
    0..k-1 hold the log-weights, rows k..2k-1 are scratch for the cumulative exponentials.
    The pick is the number of cumulative sums (but the last) <= the uniform times the total:
    the first j with ``u < cumsum[j]``, without a branch.

    The exponentials are :func:`exp_rough` (relative error < 2e-9): a point's draw can differ
    from the one with :func:`exp` only if the uniform times the total lies within 2 x 2.1e-9
    of a cumulative sum (relative to the total, which is >= 1). Points within ``_ROUGH_TOL``
    (1.5e-8, about 3.5 times that band; nan counts as near) are drawn again with :func:`exp`,
    one at a time, so every draw is the one of the full-precision kernel (about 6e-8 of the
    points at k = 3 take that path).
    """
    k, m = lp.shape[0] // 2, zb.shape[0]
    for b in range(m):
        tot[b] = 0.0
    for j in range(k):
        row, cum = lp[j], lp[k + j]
        for b in range(m):
            tot[b] += exp_rough(row[b] - top[b])
            cum[b] = tot[b]
    for b in range(m):
        u[b] = _counter_uniform(key, i0 + b) * tot[b]
        pick[b] = 0
    near = 0
    for j in range(k - 1):
        cum = lp[k + j]
        for b in range(m):
            ub, cb, tb = u[b], cum[b], tot[b]
            pick[b] += 1 if ub >= cb else 0
            near += 0 if abs(ub - cb) > _ROUGH_TOL * tb else 1
    if near:
        _exact_picks(m, i0, key, lp, top, tot, u, pick)
    changed = 0
    for b in range(m):
        known = fb[b]
        p = known if known >= 0 else pick[b]
        changed += 1 if zb[b] != p else 0
        zb[b] = p
        pick[b] = p
    return changed


@njit(inline="always")
def _exact_picks(m, i0, key, lp, top, tot, u, pick):
    """Redraw with :func:`exp` the `m` points of a block whose rough draw was within the band."""
    k = lp.shape[0] // 2
    for b in range(m):
        near = False
        for j in range(k - 1):
            near |= not abs(u[b] - lp[k + j, b]) > _ROUGH_TOL * tot[b]
        if not near:
            continue
        t = 0.0
        for j in range(k):
            t += exp(lp[j, b] - top[b])
            lp[k + j, b] = t
        ub = _counter_uniform(key, i0 + b) * t
        p = 0
        for j in range(k - 1):
            p += 1 if ub >= lp[k + j, b] else 0
        pick[b] = p


@njit(inline="always")
def _block_sums(yb, r, mu, pick, acc_n, acc_1, acc_2):
    """Add the block's points to their components' lane accumulators (masked).

    Point b goes to lane ``b % lanes`` (``lanes = acc_n.shape[1]``): the block in chunks of
    `lanes` points, each chunk a vectorised loop over the lanes.
    """
    k, m, lanes = acc_n.shape[0], yb.shape[0], acc_n.shape[1]
    for j in range(k):
        mj = mu[r, j]
        cn, c1, c2 = acc_n[j], acc_1[j], acc_2[j]
        for b0 in range(0, m, lanes):
            yc, pc = yb[b0 : b0 + lanes], pick[b0 : min(m, b0 + lanes)]
            for b in range(pc.shape[0]):
                d = yc[b] - mj
                hit = pc[b] == j
                cn[b] += 1.0 if hit else 0.0
                c1[b] += d if hit else 0.0
                c2[b] += d * d if hit else 0.0


@njit(inline="always")
def _sweep_range(y, fixed, lo, hi, r, a, c, mu, key, z, n, s1, s2, work):
    """Sweep observations lo..hi-1 of replica r; return how many assignments changed.

    ``fixed[i] >= 0`` is a known label: observation i stays in that component. The points go
    in blocks of ``_BLOCK``, each step a loop over the block that LLVM vectorises (plain
    arithmetic, comparisons and selects on contiguous views). The sums of ``d`` and ``d**2``
    are kept per lane and added up once at the end of the range.
    """
    lp, top, tot, u, pick, acc_n, acc_1, acc_2 = work
    k = a.shape[1]
    lanes = pow2_at_least(min(acc_n.shape[1], hi - lo))
    for j in range(k):
        for b in range(lanes):
            acc_n[j, b] = 0.0
            acc_1[j, b] = 0.0
            acc_2[j, b] = 0.0
    changed = 0
    for i0 in range(lo, hi, top.shape[0]):
        i1 = min(i0 + top.shape[0], hi)
        yb = y[i0:i1]
        _block_logits(yb, r, a, c, mu, lp, top)
        changed += _block_pick(fixed[i0:i1], z[r, i0:i1], i0, key, lp, top, tot, u, pick)
        _block_sums(yb, r, mu, pick, acc_n, acc_1, acc_2)
    for j in range(k):
        n[r, j] += lane_total(acc_n[j], lanes)
        s1[r, j] += lane_total(acc_1[j], lanes)
        s2[r, j] += lane_total(acc_2[j], lanes)
    return changed


@njit(inline="always")
def pow2_at_least(m):
    """Return the smallest power of two >= `m` (1 for m <= 1)."""
    p = 1
    while p < m:
        p *= 2
    return p


@njit(inline="always")
def lane_total(row, lanes):
    """Return the sum of ``row[:lanes]`` (`lanes` a power of two), added by halving.

    Overwrites ``row``. Each halving step adds the upper half onto the lower: independent
    additions, which LLVM vectorises. A running sum over the lanes is a chain of dependent
    additions (about 4 cycles each): at a few hundred points per replica it cost more than
    the rest of the sweep (measured: 20.7 ns per point at N = 215 against 8.1 at N = 1e6).
    """
    step = lanes // 2
    while step >= 1:
        for b in range(step):
            row[b] += row[b + step]
        step //= 2
    return row[0]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _sweep_part(y, fixed, lo, hi, a, c, mu, keys, z, n, s1, s2, changed):
    """Sweep observations lo..hi-1 of every replica: add to the sums, set ``changed``.

    The unit of work of :func:`sweep` and of each thread of :func:`sweep_threaded`.
    """
    work = _sweep_work(a.shape[1])
    for r in range(a.shape[0]):
        changed[r] = _sweep_range(y, fixed, lo, hi, r, a, c, mu, keys[r], z, n, s1, s2, work)


@njit(inline="always")
def _sweep_work(k):
    """Scratch of one sweep: a block's log-weights and picks, and the lane accumulators."""
    size = _BLOCK
    return (
        np.empty((2 * k, size)),  # log-weights, then cumulative sums (_block_pick)
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size, dtype=np.int64),
        np.empty((k, _LANES)),
        np.empty((k, _LANES)),
        np.empty((k, _LANES)),
    )


def sweep_threaded(y, fixed, a, c, mu, keys, z, n, s1, s2, changed, n_blocks):
    """As :func:`sweep`, with the observations split into `n_blocks` ranges run on threads.

    The draws are those of :func:`sweep` (the uniforms are keyed by the global index); the
    sums differ from it only in the order of the floating-point additions.
    """
    with ThreadPoolExecutor(get_num_threads()) as pool:
        _sweep_on(pool, y, fixed, a, c, mu, keys, z, n, s1, s2, changed, n_blocks)


def _sweep_on(pool, y, fixed, a, c, mu, keys, z, n, s1, s2, changed, n_blocks):
    """Run :func:`sweep_threaded` on the Python threads of `pool`.

    The kernel has ``nogil=True``, so the ranges run in parallel, each the serial kernel's
    vectorised code. Inlined into a ``prange`` body the block loops were not vectorised, and
    OpenMP's threads spun between sweeps (2x the CPU time on a shared machine).
    """
    n_obs = y.shape[0]
    size = max(1, -(-n_obs // n_blocks))
    sums = np.zeros((n_blocks, 3) + a.shape)
    counts = np.zeros((n_blocks, a.shape[0]), dtype=np.int64)
    jobs = [
        pool.submit(
            _sweep_part, y, fixed, lo, min(n_obs, lo + size), a, c, mu, keys, z, *sums[b], counts[b]
        )
        for b, lo in enumerate(range(0, n_obs, size))
    ]
    for job in jobs:
        job.result()
    n[:], s1[:], s2[:] = sums.sum(axis=0)
    changed[:] = counts.sum(axis=0)


@njit
def _update_means(r, beta, mu, sd, n, s1, m0, s0, ordered, state, mean, std, prop):
    """Exact conditional draw of replica r's means (ordered: joint rejection, then MH).

    Ordered means are drawn jointly from their unordered conditional until ordered (at most
    ``_JOINT_TRIES`` times at beta = 1, once at beta < 1), else moved by Metropolis steps that
    leave the ordered conditional invariant.
    """
    k = mu.shape[1]
    for j in range(k):
        prec = 1.0 / (s0[j] * s0[j]) + beta * n[r, j] / (sd[r, j] * sd[r, j])
        mean[j] = (
            m0[j] / (s0[j] * s0[j]) + beta * (s1[r, j] + n[r, j] * mu[r, j]) / (sd[r, j] * sd[r, j])
        ) / prec
        std[j] = 1.0 / math.sqrt(prec)
    for _ in range((_JOINT_TRIES if beta >= 1.0 else 1) if ordered else 1):
        ok = True
        for j in range(k):
            prop[j] = mean[j] + std[j] * _normal(state, r)
            if ordered and j > 0 and prop[j] <= prop[j - 1]:
                ok = False
        if ok:
            for j in range(k):
                mu[r, j] = prop[j]
            return
    # one-at-a-time random-walk Metropolis within the neighbours: leaves the ordered
    # conditional invariant, in bounded time
    for j in range(k):
        x = mu[r, j] + std[j] * _normal(state, r)
        if (j > 0 and x <= mu[r, j - 1]) or (j < k - 1 and x >= mu[r, j + 1]):
            continue
        zx = (x - mean[j]) / std[j]
        zc = (mu[r, j] - mean[j]) / std[j]
        if math.log(_uniform(state, r)) < 0.5 * (zc * zc - zx * zx):
            mu[r, j] = x


@njit
def _update_sigma(r, beta, sd, n, ss, prior, shared, floor, state):
    """Metropolis-within-Gibbs for replica r's sds; returns the fraction accepted.

    ``n``: the counts per component (n_rep, k); ``ss`` (k,): replica r's sums of squares
    about the current means; ``prior`` = (code, p0, p1): the sd prior's scale family and
    parameters (:func:`scale_logpdf`); ``shared``: one sd for all; ``floor``: a proposal at or
    below it is rejected.
    """
    code, p0, p1 = prior
    k = sd.shape[1]
    m = 1 if shared else k
    accepted = 0.0
    for j in range(m):
        if shared:
            cnt, sq = 0.0, 0.0
            for i in range(k):
                cnt += n[r, i]
                sq += ss[i]
        else:
            cnt, sq = n[r, j], ss[j]
        bn, bs = beta * cnt, beta * sq
        cur = sd[r, j]
        if bn >= 2.0 and bs > 0.0:
            # independence proposal from the likelihood's Gamma kernel in the precision:
            # accepted with the prior ratio alone
            tau = math.exp(_log_gamma(0.5 * bn - 0.5, state, r)) / (0.5 * bs)
            prop = 1.0 / math.sqrt(tau)
            log_ratio = scale_logpdf(code, prop, p0[j], p1[j]) - scale_logpdf(
                code, cur, p0[j], p1[j]
            )
        else:  # random walk on log sd
            prop = cur * math.exp(_RW_STEP * _normal(state, r))
            log_ratio = scale_logpdf(code, prop, p0[j], p1[j]) - scale_logpdf(
                code, cur, p0[j], p1[j]
            )
            log_ratio += -bn * math.log(prop / cur) - 0.5 * bs * (
                1.0 / (prop * prop) - 1.0 / (cur * cur)
            )
            log_ratio += math.log(prop / cur)
        if prop > floor and math.log(_uniform(state, r)) < log_ratio:
            cur = prop
            accepted += 1.0
        if shared:
            for i in range(k):
                sd[r, i] = cur
        else:
            sd[r, j] = cur
    return accepted / m


@njit(cache=True, nogil=True)
def _prepare(chain, a, c, keys):
    """Logit coefficients of every replica's sweep (:func:`sweep`), and its random keys."""
    logw, sd, state, temp_of, betas = chain.logw, chain.sd, chain.state, chain.temp_of, chain.betas
    n_rep, k = sd.shape
    for r in range(n_rep):
        beta = betas[temp_of[r]]
        for j in range(k):
            a[r, j] = logw[r, j] - beta * math.log(sd[r, j])
            c[r, j] = -0.5 * beta / (sd[r, j] * sd[r, j])
        keys[r] = _next(state, r)


@njit(cache=True, nogil=True, fastmath={"contract"})
def sweep(y, fixed, a, c, mu, keys, z, n, s1, s2, changed):
    """Draw every replica's assignments from their exact (tempered) conditionals; one thread.

    Parameters
    ----------
    y : ndarray of shape (n_obs,)
    fixed : ndarray of int32, shape (n_obs,)
        Known labels; -1 where unknown.
    a, c : ndarray of shape (n_rep, k)
        Replica r's log-weight of component j at y is ``a[r, j] + c[r, j] * (y - mu[r, j])**2``:
        ``a = log w - beta log sd``, ``c = -beta / (2 sd**2)`` at inverse temperature beta.
    mu : ndarray of shape (n_rep, k)
    keys : ndarray of uint64, shape (n_rep,)
        This sweep's random key of each replica; the uniform of point i is a hash of (key, i).
    z : ndarray of int8 or int32, shape (n_rep, n_obs)
        Assignments, overwritten by the draws.
    n, s1, s2 : ndarray of shape (n_rep, k)
        Output: per component the count and the sums of ``d`` and ``d**2``, ``d = y - mu``.
    changed : ndarray of int64, shape (n_rep,)
        Output: how many assignments changed.
    """
    n[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    _sweep_part(y, fixed, 0, y.shape[0], a, c, mu, keys, z, n, s1, s2, changed)


_sweep_serial = sweep  # the name tests/test_gibbs.py uses


@njit(inline="always")
def _update_weights(r, logw, prior_a, n, state, logg):
    """Weights | z ~ Dirichlet(a + n), as normalised log-Gammas (exact for tiny a)."""
    k = logw.shape[1]
    top = -np.inf
    for j in range(k):
        logg[j] = _log_gamma(prior_a[j] + n[r, j], state, r)
        top = max(top, logg[j])
    total = 0.0
    for j in range(k):
        total += math.exp(logg[j] - top)
    for j in range(k):
        logw[r, j] = logg[j] - top - math.log(total)


@njit
def _exchange(it, d, chain, loglik, changed, stats):
    """Even-odd replica exchange between adjacent temperatures, per chain; record its stats.

    ``chain``: a :class:`ChainState` or :class:`MvChainState` (its ladder fields are read,
    and ``temp_of``, ``rep_at`` and the swap counts updated); ``loglik`` (n_rep,): each
    replica's complete-data log-likelihood; ``changed`` (n_rep,): its changed assignments;
    ``stats``: the records (n_changed, complete_loglik, tempered_loglik, swap_accept, ...),
    written at draw ``d`` when ``d >= 0``.
    """
    swap_state, temp_of, rep_at, betas = (
        chain.swap_state,
        chain.temp_of,
        chain.rep_at,
        chain.betas,
    )
    swap_tries, swap_accepts = chain.swap_tries, chain.swap_accepts
    st_changed, st_tll, st_swap = stats[0], stats[2], stats[3]
    chains, n_temps = rep_at.shape
    for ch in range(chains):
        cold_before = rep_at[ch, n_temps - 1]
        if d >= 0:
            st_changed[ch, d] = changed[cold_before]
            for t in range(n_temps):
                st_tll[ch, d, t] = loglik[rep_at[ch, t]]
        for t in range(it % 2, n_temps - 1, 2):
            lo_r, hi_r = rep_at[ch, t], rep_at[ch, t + 1]
            log_alpha = (betas[t] - betas[t + 1]) * (loglik[hi_r] - loglik[lo_r])
            ok = math.log(_uniform(swap_state, ch)) < log_alpha
            swap_tries[t] += 1
            if ok:
                swap_accepts[t] += 1
                rep_at[ch, t], rep_at[ch, t + 1] = hi_r, lo_r
                temp_of[hi_r], temp_of[lo_r] = t, t + 1
            if d >= 0:
                st_swap[ch, d, t] = 1.0 if ok else 0.0


@njit(cache=True, nogil=True)
def normal_work(k):
    """Scratch of :func:`update_normal`: six arrays of shape (k,)."""
    return (np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k))


@njit(inline="always")  # called per replica: no call with the state tuples
def update_normal(r, beta, config, chain, counts, wsum, wsum1, wsum2, work):
    """Draw replica r's weights, means and sds given its sweep's sums; return (ok, accepted).

    ``config``: a :class:`KernelConfig`; ``chain``: a :class:`ChainState` (``logw``, ``mu``,
    ``sd`` of replica r updated). ``counts`` (n_rep, k): the points per component; ``wsum``,
    ``wsum1``, ``wsum2`` (n_rep, k): per component the sums of the points' precision weights,
    of weight x d and of weight x d**2, ``d = y - mu`` about the means before this update
    (Normal components: weights 1, so the count and the sums of d and d**2). Leaves in
    ``work[0]`` the weighted sums of squares about the new means. ``ok`` is False if an sd
    fell below ``config.collapse_at``; ``accepted`` is the fraction of sd moves accepted.
    """
    ss, mean, std, prop, logg, old = work
    logw, mu, sd, state = chain.logw, chain.mu, chain.sd, chain.state
    k = mu.shape[1]
    _update_weights(r, logw, config.weight_conc, counts, state, logg)
    if config.means_free:
        for j in range(k):
            old[j] = mu[r, j]  # the sums are centred on the old means
        loc, scale = config.mean_loc, config.mean_scale
        _update_means(
            r, beta, mu, sd, wsum, wsum1, loc, scale, config.ordered, state, mean, std, prop
        )
        for j in range(k):
            shift = old[j] - mu[r, j]
            ss[j] = wsum2[r, j] + 2.0 * shift * wsum1[r, j] + wsum[r, j] * shift * shift
    else:
        for j in range(k):
            ss[j] = wsum2[r, j]
    if not config.sd_free:
        return True, 0.0
    accepted = _update_sigma(
        r,
        beta,
        sd,
        counts,
        ss,
        (config.sd_code, config.sd_p0, config.sd_p1),
        config.shared_sd,
        config.sd_floor,
        state,
    )
    for j in range(k):
        if sd[r, j] < config.collapse_at:
            return False, accepted
    return True, accepted


@njit(inline="always")  # called per replica: no call with the state tuples
def record_normal(d, config, chain, out, stats, loglik, sigacc):
    """Store the cold replicas' weights, means, sds (and assignments) as draw `d`.

    ``out`` = (weights, means, sds (chains, draws, k), assignments (chains, draws or 0,
    n_obs)); ``stats`` as in :func:`_exchange`, with the sd acceptance last.
    """
    out_w, out_mu, out_sd, out_z = out
    st_cll, st_sigacc = stats[1], stats[4]
    logw, mu, sd, z, rep_at = chain.logw, chain.mu, chain.sd, chain.z, chain.rep_at
    chains, n_temps = rep_at.shape
    for ch in range(chains):
        cold = rep_at[ch, n_temps - 1]
        for j in range(mu.shape[1]):
            out_w[ch, d, j] = math.exp(logw[cold, j])
            out_mu[ch, d, j] = mu[cold, j]
            out_sd[ch, d, j] = sd[cold, j]
        st_cll[ch, d] = loglik[cold]
        st_sigacc[ch, d] = sigacc[cold]
        if config.store_z:
            for i in range(z.shape[1]):
                out_z[ch, d, i] = z[cold, i]


@njit(cache=True, nogil=True)
def _after_sweep(it, tune, config, chain, out, stats, n, s1, s2, changed):
    """Parameter updates, replica exchange and recording, after the sweep of iteration `it`.

    ``config``, ``chain``: a :class:`KernelConfig` and a :class:`ChainState`; ``out``,
    ``stats``: the records (:func:`record_normal`), written from iteration `tune` on; ``n``,
    ``s1``, ``s2`` (n_rep, k): the sweep's counts and sums of d and d**2 per component,
    ``d = y - mu``; ``changed`` (n_rep,): its changed assignments. Returns False if an sd
    fell below the collapse threshold.
    """
    n_rep, k = chain.mu.shape
    sd = chain.sd
    loglik = np.empty(n_rep)
    sigacc = np.zeros(n_rep)
    work = normal_work(k)
    ss = work[0]
    for r in range(n_rep):
        beta = chain.betas[chain.temp_of[r]]
        ok, accepted = update_normal(r, beta, config, chain, n, n, s1, s2, work)
        sigacc[r] = accepted
        if not ok:
            return False
        ll = 0.0
        for j in range(k):
            ll -= n[r, j] * (math.log(sd[r, j]) + 0.5 * _LOG_2PI) + ss[j] / (2.0 * sd[r, j] ** 2)
        loglik[r] = ll
    d = it - tune
    _exchange(it, d, chain, loglik, changed, stats)
    if d >= 0:
        record_normal(d, config, chain, out, stats, loglik, sigacc)
    return True


@njit(cache=True, nogil=True)
def sweep_scratch(n_rep, k):
    """Return the arrays one iteration of :func:`run` fills: ``(a, c, keys, n, s1, s2, changed)``.

    ``a``, ``c`` (n_rep, k): the sweep's logit coefficients (:func:`sweep`); ``keys``
    (n_rep,): its random keys; ``n``, ``s1``, ``s2`` (n_rep, k): its counts and sums;
    ``changed`` (n_rep,): its changed assignments.
    """
    return (
        np.empty((n_rep, k)),
        np.empty((n_rep, k)),
        np.empty(n_rep, dtype=np.uint64),
        np.zeros((n_rep, k)),
        np.zeros((n_rep, k)),
        np.zeros((n_rep, k)),
        np.zeros(n_rep, dtype=np.int64),
    )


@njit(cache=True, nogil=True)
def _finish_iteration(y, it, tune, config, chain, out, stats, n, s1, s2, changed):
    """Everything of iteration `it` after its sweep; return False if an sd collapsed."""
    if not _after_sweep(it, tune, config, chain, out, stats, n, s1, s2, changed):
        return False
    if config.moves:
        relocate(y, config, chain)
    return True


@njit(cache=True, nogil=True)
def sweep_blocks(y, fixed, a, c, mu, keys, z, n, s1, s2, changed, n_blocks, part):
    """As :func:`sweep`, the observations in `n_blocks` ranges one after the other.

    Each range's sums are formed apart (in ``part`` = (n, s1, s2, changed) scratch of the
    same shapes) and added in the order of the ranges, as :func:`sweep_threaded` adds its
    threads' sums: so a run's draws do not depend on whether its ranges ran on threads or
    its chains did (:mod:`mixtures.engines.chain_threads`). With one range this is
    :func:`sweep`.
    """
    n_obs = y.shape[0]
    size = max(1, -(-n_obs // n_blocks))
    clear_sums((n, s1, s2, changed))
    for lo in range(0, n_obs, size):
        clear_sums(part)
        _sweep_part(y, fixed, lo, min(n_obs, lo + size), a, c, mu, keys, z, *part)
        add_sums((n, s1, s2, changed), part)


@njit(inline="always")
def clear_sums(sums):
    """Zero a sweep's ``sums`` = (counts, sums, sums of squares, changed assignments)."""
    n, s1, s2, changed = sums
    n[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    changed[:] = 0


@njit(inline="always")
def add_sums(sums, part):
    """Add a range's ``part`` = (n, s1, s2, changed) onto the run's `sums`, in place."""
    n, s1, s2, changed = sums
    pn, p1, p2, pc = part
    n += pn
    s1 += p1
    s2 += p2
    changed += pc


@njit(cache=True, nogil=True)
def run(y, it0, it1, tune, config, chain, out, stats, n_blocks=1):
    """Run iterations it0..it1-1 of every replica on one thread; record from `tune` on.

    Parameters
    ----------
    y : ndarray of shape (n_obs,)
    it0, it1, tune : int
    config : KernelConfig
        The priors, switches and thresholds (see :class:`KernelConfig`).
    chain : ChainState
        The replicas' parameters, assignments, random streams and ladder, updated in place
        so that a run continues across calls (progress bar, Ctrl-C).
    out : tuple of ndarray
        ``(weights, means, sds, assignments)`` records (:func:`record_normal`).
    stats : tuple of ndarray
        ``(n_changed, complete_loglik, tempered_loglik, swap_accept, sigma_accept)`` records.
    n_blocks : int
        The sweep's ranges (:func:`sweep_blocks`): 1 below the size at which the sweep would
        run on threads, else the threaded sweep's count, so that the draws are those of
        :func:`run_threaded`.

    Returns
    -------
    int
        The iteration at which an sd collapsed, or -1.
    """
    a, c, keys, n, s1, s2, changed = sweep_scratch(chain.mu.shape[0], chain.mu.shape[1])
    part = (np.empty_like(n), np.empty_like(s1), np.empty_like(s2), np.empty_like(changed))
    for it in range(it0, it1):
        _prepare(chain, a, c, keys)
        if n_blocks == 1:
            sweep(y, chain.fixed, a, c, chain.mu, keys, chain.z, n, s1, s2, changed)
        else:
            sums = (n, s1, s2, changed)
            sweep_blocks(y, chain.fixed, a, c, chain.mu, keys, chain.z, *sums, n_blocks, part)
        if not _finish_iteration(y, it, tune, config, chain, out, stats, n, s1, s2, changed):
            return it
    return -1


def run_threaded(y, it0, it1, tune, config, chain, out, stats, n_blocks):
    """As :func:`run`, with each sweep split over threads (large N).

    Driven from Python, the sweep's ranges on a pool of Python threads (:func:`sweep_threaded`);
    at this N one Python call per iteration is negligible.
    """
    a, c, keys, n, s1, s2, changed = sweep_scratch(chain.mu.shape[0], chain.mu.shape[1])
    with ThreadPoolExecutor(get_num_threads()) as pool:
        for it in range(it0, it1):
            _prepare(chain, a, c, keys)
            _sweep_on(
                pool, y, chain.fixed, a, c, chain.mu, keys, chain.z, n, s1, s2, changed, n_blocks
            )
            if not _finish_iteration(y, it, tune, config, chain, out, stats, n, s1, s2, changed):
                return it
    return -1


# --------------------------------------------------------------------------- moves between modes
# A relocation move for the univariate sampler (issue 20): an almost empty component jumps to
# a new place in one step, where the single-site sweep would need it to pass through the other
# components' clusters. It lives in this file because the cached `run` calls it (Numba's disk
# cache checks the file of the cached function only).
_SMALL_WEIGHT = 0.5  # a component is a candidate when its weight is below _SMALL_WEIGHT / k


@njit
def mixture_loglik_change(y, r, j, new_mu, logw, mu, sd):
    """Return the change of the marginal log-likelihood of replica r if ``mu[r, j]`` = `new_mu`.

    The marginal log-likelihood is ``sum_i log sum_l w_l N(y_i | mu_l, sd_l)`` (the
    assignments summed out); per point, the other components' terms are added apart, so a
    point that component j alone explains loses no precision.
    """
    k = mu.shape[1]
    base, sdv = np.empty(k), np.empty(k)
    for m in range(k):
        sdv[m] = sd[r, m] if sd.shape[1] == k else sd[r, 0]  # (n_rep, 1): a shared sd
        base[m] = logw[r, m] - math.log(sdv[m])
    c = -0.5 / (sdv[j] * sdv[j])
    delta = 0.0
    for i in range(y.shape[0]):
        top = base[j] + c * (y[i] - new_mu) ** 2
        cur = base[j] + c * (y[i] - mu[r, j]) ** 2
        top = max(top, cur)
        for m in range(k):
            if m != j:
                top = max(top, base[m] - 0.5 * ((y[i] - mu[r, m]) / sdv[m]) ** 2)
        rest = 0.0
        for m in range(k):
            if m != j:
                rest += math.exp(base[m] - 0.5 * ((y[i] - mu[r, m]) / sdv[m]) ** 2 - top)
        new = rest + math.exp(base[j] + c * (y[i] - new_mu) ** 2 - top)
        old = rest + math.exp(cur - top)
        delta += math.log(new) - math.log(old) if new > 0.0 else -np.inf
    return delta


@njit(inline="always")
def _sort_replica(r, j, logw, mu, sd):
    """Move component j of replica r to its place in the order of the means (insertion).

    A shared sd (`sd` of shape ``(n_rep, 1)``) stays where it is.
    """
    k = mu.shape[1]
    own_sd = sd.shape[1] == k
    while j > 0 and mu[r, j] < mu[r, j - 1]:
        for arr in (logw, mu):
            arr[r, j], arr[r, j - 1] = arr[r, j - 1], arr[r, j]
        if own_sd:
            sd[r, j], sd[r, j - 1] = sd[r, j - 1], sd[r, j]
        j -= 1
    while j < k - 1 and mu[r, j] > mu[r, j + 1]:
        for arr in (logw, mu):
            arr[r, j], arr[r, j + 1] = arr[r, j + 1], arr[r, j]
        if own_sd:
            sd[r, j], sd[r, j + 1] = sd[r, j + 1], sd[r, j]
        j += 1


@njit(cache=True, nogil=True)
def relocate(y, config, chain):
    """One relocation move per chain (its beta = 1 replica); return how many were accepted.

    Only the replica at the top of the ladder moves (its last rung is 1 by construction), so
    the target is the untempered posterior; the tempered replicas keep theirs, unmoved.

    Leaves the marginal posterior of the parameters, p(w, mu, sd | y) with the assignments
    summed out, invariant; the sweep that follows draws the assignments from their conditional,
    so the joint posterior is invariant too. A component whose weight is below
    ``_SMALL_WEIGHT / k`` is picked uniformly among such (the weights do not change, so the
    reverse move picks it with the same probability); its mean is proposed from its prior
    N(m0_j, s0_j) and accepted with the likelihood ratio (prior and proposal cancel).
    ``config.exchangeable`` (the same prior for every component): the components are then
    sorted by their means, which keeps the ordered posterior invariant (it is the exchangeable
    one restricted to the order). Otherwise an ordered model rejects a proposal that breaks
    the order. ``config``: a :class:`KernelConfig` (its mean prior, ``ordered`` and
    ``exchangeable``); ``chain``: a :class:`ChainState`.
    """
    logw, mu, sd, state, rep_at = chain.logw, chain.mu, chain.sd, chain.state, chain.rep_at
    rep, jump, x, log_u = relocation_proposals(
        logw, mu, state, rep_at, config.mean_loc, config.mean_scale, config.ordered,
        config.exchangeable,
    )  # fmt: skip
    delta = relocation_change(y, rep, jump, x, logw, mu, sd)
    return relocation_accept(rep, jump, x, log_u, delta, logw, mu, sd, config.ordered)


@njit(cache=True, nogil=True)
def relocation_proposals(logw, mu, state, rep_at, m0, s0, ordered, exchangeable):
    """Draw the proposals of :func:`relocate`, one per chain, as it draws them.

    Returns ``(rep, j, x, log_u)`` (length ``chains``): the chain's beta = 1 replica, the
    component that jumps (-1: no proposal this iteration), its proposed mean and the log of
    the acceptance uniform. The data enter only through the log-likelihood change, so a
    driver whose data are spread over workers (:mod:`mixtures.engines.distributed`) sums
    :func:`mixture_loglik_change` over its chunks and calls :func:`relocation_accept`: the
    same random numbers, hence the same draws, as :func:`relocate` in one process.
    """
    chains, n_temps = rep_at.shape
    k = mu.shape[1]
    small = math.log(_SMALL_WEIGHT / k)
    rep = np.empty(chains, dtype=np.int64)
    jump = np.full(chains, -1, dtype=np.int64)
    x = np.zeros(chains)
    log_u = np.zeros(chains)
    for ch in range(chains):
        r = rep_at[ch, n_temps - 1]
        rep[ch] = r
        count = 0
        for m in range(k):
            count += 1 if logw[r, m] < small else 0
        if count == 0:
            continue
        pick = min(int(_uniform(state, r) * count), count - 1)
        j = 0
        for m in range(k):
            if logw[r, m] < small:
                if pick == 0:
                    j = m
                pick -= 1
        x[ch] = m0[j] + s0[j] * _normal(state, r)
        if ordered and not exchangeable:
            if (j > 0 and x[ch] <= mu[r, j - 1]) or (j < k - 1 and x[ch] >= mu[r, j + 1]):
                continue
        jump[ch] = j
        log_u[ch] = math.log(_uniform(state, r))
    return rep, jump, x, log_u


@njit(cache=True, nogil=True)
def relocation_change(y, rep, jump, x, logw, mu, sd):
    """Return each chain's log-likelihood change by its proposal on the rows `y` (0: none)."""
    delta = np.zeros(rep.size)
    for ch in range(rep.size):
        if jump[ch] >= 0:
            delta[ch] = mixture_loglik_change(y, rep[ch], jump[ch], x[ch], logw, mu, sd)
    return delta


@njit(cache=True, nogil=True)
def relocation_accept(rep, jump, x, log_u, delta, logw, mu, sd, ordered):
    """Accept or reject the proposals given their summed log-likelihood changes `delta`."""
    accepted = 0
    for ch in range(rep.size):
        r, j = rep[ch], jump[ch]
        if j >= 0 and log_u[ch] < delta[ch]:
            mu[r, j] = x[ch]
            accepted += 1
            if ordered:
                _sort_replica(r, j, logw, mu, sd)
    return accepted


# --------------------------------------------------------------------------- multivariate
# State of replica r: log weights logw[r] (k,), means mu[r] (k, d), and per component a factor
# F of the precision, Lambda = F F^T (k, d, d), with logdet[r] = log |Lambda| (k,). The prior
# is semi-conjugate: means ~ N(m0, diag(s0^2)), Lambda ~ Wishart(nu, psi^-1), i.e. the
# covariance is inverse-Wishart(nu, psi).


@njit(inline="always")
def _cholesky(a, out):
    """Lower Cholesky factor of the small SPD matrix `a` into `out`."""
    d = a.shape[0]
    for i in range(d):
        for j in range(i + 1):
            acc = a[i, j]
            for m in range(j):
                acc -= out[i, m] * out[j, m]
            if i == j:
                out[i, i] = math.sqrt(max(acc, 1e-300))
            else:
                out[i, j] = acc / out[j, j]
        for j in range(i + 1, d):
            out[i, j] = 0.0


@njit(inline="always")
def _solve_lower(low, b, out):
    """Solve low @ out = b (forward substitution)."""
    d = low.shape[0]
    for i in range(d):
        acc = b[i]
        for m in range(i):
            acc -= low[i, m] * out[m]
        out[i] = acc / low[i, i]


@njit(inline="always")
def _solve_upper_t(low, b, out):
    """Solve low.T @ out = b (back substitution on the transpose of a lower factor)."""
    d = low.shape[0]
    for i in range(d - 1, -1, -1):
        acc = b[i]
        for m in range(i + 1, d):
            acc -= low[m, i] * out[m]
        out[i] = acc / low[i, i]


@njit(inline="always")
def block_maha(xt, s, e, r, mu, fac, maha, u):
    """``maha[j, b] = |F_j^T (x_b - mu_j)|^2`` for the points in columns s..e-1 of ``xt``.

    Replica r's precision factors F_j (``fac``; F = U^-T A is not triangular, so every row
    counts), column by column; ``u`` is scratch of the block's length.
    """
    k, d, m = mu.shape[1], mu.shape[2], e - s
    for j in range(k):
        out = maha[j]
        for b in range(m):
            out[b] = 0.0
        for col in range(d):  # u = (F^T (x - mu))_col
            for b in range(m):
                u[b] = 0.0
            for row in range(d):
                f, mj = fac[r, j, row, col], mu[r, j, row]
                xr = xt[row, s:e]
                for b in range(m):
                    u[b] += f * (xr[b] - mj)
            for b in range(m):
                out[b] += u[b] * u[b]


@njit(inline="always")
def _mv_block_logits(xt, s, e, r, a, beta, mu, fac, lp, top, u):
    """Log-weights ``lp[j, b]`` of the points in columns s..e-1 of ``xt`` (by feature), replica r.

    ``a_j - beta / 2 |F_j^T (x - mu_j)|^2`` (:func:`block_maha`); ``u`` is scratch;
    ``top[b]`` the maximum over j.
    """
    k, m = mu.shape[1], e - s
    half = -0.5 * beta[r]
    block_maha(xt, s, e, r, mu, fac, lp, u)
    for j in range(k):
        out, aj = lp[j], a[r, j]
        for b in range(m):
            out[b] = aj + half * out[b]
    block_max(lp, top, k, m)


@njit(inline="always")
def _mv_block_sums(xt, s, e, r, mu, pick, acc_n, acc_1, acc_2):
    """Add a block's points to their components' lane accumulators: count, d, d d^T (lower)."""
    k, d, m = mu.shape[1], mu.shape[2], e - s
    for j in range(k):
        cn = acc_n[j]
        for b in range(m):
            cn[b] += 1.0 if pick[b] == j else 0.0
        for row in range(d):
            xr, mr = xt[row, s:e], mu[r, j, row]
            c1 = acc_1[j, row]
            for b in range(m):
                c1[b] += xr[b] - mr if pick[b] == j else 0.0
            for col in range(row + 1):
                xc, mc = xt[col, s:e], mu[r, j, col]
                c2 = acc_2[j, row, col]
                for b in range(m):
                    c2[b] += (xr[b] - mr) * (xc[b] - mc) if pick[b] == j else 0.0


@njit(inline="always")
def _mv_sweep_range(xt, fixed, lo, hi, r, a, beta, mu, fac, key, z, n, s1, s2, work):
    """Sweep observations lo..hi-1 of replica r (blocks, as the univariate sweep).

    ``xt`` holds the points lo..hi-1 by feature, shape (d, hi - lo).
    """
    lp, top, tot, u, pick, acc_n, acc_1, acc_2 = work
    size = top.shape[0]
    width = pow2_at_least(min(size, hi - lo))
    acc_n[:, :width] = 0.0
    acc_1[:, :, :width] = 0.0
    acc_2[:, :, :, :width] = 0.0
    changed = 0
    for i0 in range(lo, hi, size):
        i1 = min(i0 + size, hi)
        _mv_block_logits(xt, i0 - lo, i1 - lo, r, a, beta, mu, fac, lp, top, u)
        changed += _block_pick(fixed[i0:i1], z[r, i0:i1], i0, key, lp, top, tot, u, pick)
        _mv_block_sums(xt, i0 - lo, i1 - lo, r, mu, pick, acc_n, acc_1, acc_2)
    _mv_lane_totals(r, width, acc_n, acc_1, acc_2, n, s1, s2)
    return changed


@njit(inline="always")
def _mv_lane_totals(r, width, acc_n, acc_1, acc_2, n, s1, s2):
    """Add the lane accumulators' first `width` lanes to replica r's count and sums.

    `width` is a power of two (:func:`lane_total`).
    """
    k, d = acc_1.shape[0], acc_1.shape[1]
    for j in range(k):
        n[r, j] += lane_total(acc_n[j], width)
        for row in range(d):
            s1[r, j, row] += lane_total(acc_1[j, row], width)
            for col in range(row + 1):
                acc = lane_total(acc_2[j, row, col], width)
                s2[r, j, row, col] += acc
                if col < row:
                    s2[r, j, col, row] += acc


@njit(cache=True, nogil=True, fastmath={"contract"})
def _mv_sweep_part(x, fixed, lo, hi, a, beta, mu, fac, keys, z, n, s1, s2, changed):
    """Sweep observations lo..hi-1 of every replica: add to the sums, set ``changed``."""
    k, d = mu.shape[1], mu.shape[2]
    xt = np.ascontiguousarray(x[lo:hi].T)  # by feature: contiguous rows for the block loops
    size = _MV_BLOCK
    work = (
        np.empty((2 * k, size)),  # log-weights, then cumulative sums (_block_pick)
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size, dtype=np.int64),
        np.empty((k, size)),
        np.empty((k, d, size)),
        np.empty((k, d, d, size)),
    )
    for r in range(a.shape[0]):
        changed[r] = _mv_sweep_range(
            xt, fixed, lo, hi, r, a, beta, mu, fac, keys[r], z, n, s1, s2, work
        )


@njit(cache=True, nogil=True)
def _mv_sweep_serial(x, fixed, a, beta, mu, fac, keys, z, n, s1, s2, changed):
    n[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    _mv_sweep_part(x, fixed, 0, x.shape[0], a, beta, mu, fac, keys, z, n, s1, s2, changed)


def _mv_sweep_on(pool, x, fixed, a, beta, mu, fac, keys, z, n, s1, s2, changed, n_blocks):
    """Run the multivariate sweep with the observations split into `n_blocks` ranges on `pool`."""
    n_obs = x.shape[0]
    size = max(1, -(-n_obs // n_blocks))
    bn = np.zeros((n_blocks,) + n.shape)
    b1 = np.zeros((n_blocks,) + s1.shape)
    b2 = np.zeros((n_blocks,) + s2.shape)
    bc = np.zeros((n_blocks,) + changed.shape, dtype=np.int64)
    jobs = [
        pool.submit(
            _mv_sweep_part,
            *(x, fixed, lo, min(n_obs, lo + size), a, beta, mu, fac, keys, z),
            *(bn[b], b1[b], b2[b], bc[b]),
        )
        for b, lo in enumerate(range(0, n_obs, size))
    ]
    for job in jobs:
        job.result()
    n[:], s1[:], s2[:] = bn.sum(axis=0), b1.sum(axis=0), b2.sum(axis=0)
    changed[:] = bc.sum(axis=0)


@njit(cache=True, nogil=True)
def _mv_prepare(chain, a, beta, keys):
    """Every replica's logit constants ``a``, inverse temperature ``beta`` and sweep key.

    ``chain``: an :class:`MvChainState`; ``a`` (n_rep, k) = log w + beta / 2 log |Lambda|.
    """
    logw, logdet, state, temp_of, betas = (
        chain.logw,
        chain.logdet,
        chain.state,
        chain.temp_of,
        chain.betas,
    )
    n_rep, k = logw.shape
    for r in range(n_rep):
        beta[r] = betas[temp_of[r]]
        for j in range(k):
            a[r, j] = logw[r, j] + 0.5 * beta[r] * logdet[r, j]
        keys[r] = _next(state, r)


@njit(inline="always")
def _precision_entry(fac, r, j, row, col):
    """Entry (row, col) of replica r's precision Lambda_j = F_j F_j^T."""
    acc = 0.0
    for m in range(fac.shape[3]):
        acc += fac[r, j, row, m] * fac[r, j, col, m]
    return acc


@njit
def _mv_means(r, beta, mu, fac, n, s1, m0, s0, ordered_by, state, work):
    """Exact conditional draws of replica r's means given the precisions.

    Per component: precision P = diag(1/s0^2) + beta n Lambda, mean P^-1 (m0/s0^2 + beta
    Lambda sum x). With ``ordered_by >= 0`` the components must increase along that feature:
    independence proposals from these conditionals, accepted when the order holds (exact, as
    the target is the conditional restricted to the order).
    """
    k, d = mu.shape[1], mu.shape[2]
    lam, chol_p, mean, tmp, eps, prop = work
    for j in range(k):
        for row in range(d):
            for col in range(d):
                lam[row, col] = _precision_entry(fac, r, j, row, col)
        for row in range(d):  # b = m0 / s0^2 + beta Lambda (s1 + n mu_old)
            acc = 0.0
            for col in range(d):
                acc += lam[row, col] * (s1[r, j, col] + n[r, j] * mu[r, j, col])
            tmp[row] = m0[j, row] / s0[j, row] ** 2 + beta * acc
        for row in range(d):
            for col in range(d):
                lam[row, col] *= beta * n[r, j]
            lam[row, row] += 1.0 / s0[j, row] ** 2
        _cholesky(lam, chol_p[j])
        _solve_lower(chol_p[j], tmp, eps)
        _solve_upper_t(chol_p[j], eps, mean[j])
    tries = 5 if ordered_by >= 0 else 1
    for _ in range(tries):  # all components jointly
        for j in range(k):
            for row in range(d):
                eps[row] = _normal(state, r)
            _solve_upper_t(chol_p[j], eps, tmp)
            for row in range(d):
                prop[j, row] = mean[j, row] + tmp[row]
        ok = True
        if ordered_by >= 0:
            for j in range(1, k):
                if prop[j, ordered_by] <= prop[j - 1, ordered_by]:
                    ok = False
        if ok:
            for j in range(k):
                for row in range(d):
                    mu[r, j, row] = prop[j, row]
            return
    for j in range(k):  # one component at a time, between its neighbours
        for _ in range(5):
            for row in range(d):
                eps[row] = _normal(state, r)
            _solve_upper_t(chol_p[j], eps, tmp)
            v = mean[j, ordered_by] + tmp[ordered_by]
            below = j == 0 or v > mu[r, j - 1, ordered_by]
            above = j == k - 1 or v < mu[r, j + 1, ordered_by]
            if below and above:
                for row in range(d):
                    mu[r, j, row] = mean[j, row] + tmp[row]
                break


@njit
def _mv_precision(r, j, beta, fac, logdet, n, scatter, nu, psi, state, work):
    """Draw Lambda_j ~ Wishart(nu + beta n, (psi + beta S)^-1) by Bartlett's decomposition.

    With M = psi + beta S = U U^T (U lower), Lambda = U^-T A A^T U^-1 for A lower triangular
    with A_ii^2 ~ chi^2(nu + beta n - i) and A_il ~ N(0, 1) below the diagonal; the factor
    F = U^-T A is kept, and log |Lambda| = 2 sum log A_ii - 2 sum log U_ii.
    """
    m_mat, u_mat, a_mat, col_in, col_out = work
    d = psi.shape[0]
    for row in range(d):
        for col in range(d):
            m_mat[row, col] = psi[row, col] + beta * scatter[row, col]
    _cholesky(m_mat, u_mat)
    dof = nu + beta * n
    logdet_val = 0.0
    for row in range(d):
        for col in range(d):
            if col == row:
                a_mat[row, col] = math.sqrt(2.0 * math.exp(_log_gamma(0.5 * (dof - row), state, r)))
                logdet_val += 2.0 * math.log(a_mat[row, col]) - 2.0 * math.log(u_mat[row, row])
            elif col < row:
                a_mat[row, col] = _normal(state, r)
            else:
                a_mat[row, col] = 0.0
    for col in range(d):  # F[:, col] solves U^T f = A[:, col]
        for row in range(d):
            col_in[row] = a_mat[row, col]
        _solve_upper_t(u_mat, col_in, col_out)
        for row in range(d):
            fac[r, j, row, col] = col_out[row]
    logdet[r, j] = logdet_val


@njit(cache=True, nogil=True)
def _mv_work(k, d):
    """Scratch of :func:`_mv_update`."""
    mean_work = (
        np.empty((d, d)),
        np.empty((k, d, d)),
        np.empty((k, d)),
        np.empty(d),
        np.empty(d),
        np.empty((k, d)),
    )
    prec_work = (np.empty((d, d)), np.empty((d, d)), np.empty((d, d)), np.empty(d), np.empty(d))
    return np.empty(k), np.empty((k, d)), np.empty((d, d)), mean_work, prec_work


@njit(inline="always")
def _scatter_about(r, j, old, mu, n, s1, s2, scatter):
    """Component j's scatter about its new mean, from the sums about the old one ``old[j]``."""
    d = mu.shape[2]
    for row in range(d):
        sh_r = old[j, row] - mu[r, j, row]
        for col in range(d):
            sh_c = old[j, col] - mu[r, j, col]
            scatter[row, col] = (
                s2[r, j, row, col]
                + sh_r * s1[r, j, col]
                + s1[r, j, row] * sh_c
                + n[r, j] * sh_r * sh_c
            )


@njit(inline="always")  # called per replica: no call with the state tuples
def _mv_update(r, beta, config, chain, n, wsum, s1, s2, work):
    """Draw replica r's weights, means and precisions; return its complete-data log-likelihood.

    ``config``, ``chain``: an :class:`MvKernelConfig` and an :class:`MvChainState`; ``n``
    (n_rep, k): the rows per component; ``wsum`` (n_rep, k), ``s1`` (n_rep, k, d), ``s2``
    (n_rep, k, d, d): per component the sums of the rows' precision weights, of weight x
    ``(x - mu)`` and of weight x their outer products, about the means before this update
    (Normal components: weights 1, so ``wsum`` is ``n``; t components: the scale mixture's
    weights, :mod:`mixtures._kernels_mvt`). The log-likelihood is ``sum_i log N(x_i | mu,
    Sigma / w_i)`` without the weights' own ``d / 2 sum log w_i``.
    """
    logg, old, scatter, mean_work, prec_work = work
    logw, mu, fac, logdet, state = chain.logw, chain.mu, chain.fac, chain.logdet, chain.state
    k, d = mu.shape[1], mu.shape[2]
    _update_weights(r, logw, config.weight_conc, n, state, logg)
    for j in range(k):
        for row in range(d):
            old[j, row] = mu[r, j, row]
    loc, scale = config.mean_loc, config.mean_scale
    _mv_means(r, beta, mu, fac, wsum, s1, loc, scale, config.ordered_by, state, mean_work)
    nu, psi = config.wishart_nu, config.wishart_psi
    ll = 0.0
    for j in range(k):
        _scatter_about(r, j, old, mu, wsum, s1, s2, scatter)
        _mv_precision(r, j, beta, fac, logdet, n[r, j], scatter, nu, psi, state, prec_work)
        trace = 0.0  # tr(Lambda S)
        for row in range(d):
            for col in range(d):
                trace += _precision_entry(fac, r, j, row, col) * scatter[row, col]
        ll += n[r, j] * (0.5 * logdet[r, j] - 0.5 * d * _LOG_2PI) - 0.5 * trace
    return ll


@njit(inline="always")  # called per replica: no call with the state tuples
def _mv_record(dd, config, chain, out, stats, loglik):
    """Store the cold replicas' weights, means, precisions (and assignments) as draw `dd`."""
    out_w, out_mu, out_lam, out_z = out
    st_cll = stats[1]
    logw, mu, fac, z, rep_at = chain.logw, chain.mu, chain.fac, chain.z, chain.rep_at
    chains, n_temps = rep_at.shape
    k, d = mu.shape[1], mu.shape[2]
    for ch in range(chains):
        cold = rep_at[ch, n_temps - 1]
        st_cll[ch, dd] = loglik[cold]
        for j in range(k):
            out_w[ch, dd, j] = math.exp(logw[cold, j])
            for row in range(d):
                out_mu[ch, dd, j, row] = mu[cold, j, row]
                for col in range(d):
                    out_lam[ch, dd, j, row, col] = _precision_entry(fac, cold, j, row, col)
        if config.store_z:
            for i in range(z.shape[1]):
                out_z[ch, dd, i] = z[cold, i]


@njit(cache=True, nogil=True)
def _mv_after_sweep(it, tune, config, chain, out, stats, n, s1, s2, changed, shift):
    """Draw the parameters given the sums, exchange replicas, store the cold draws.

    ``config``, ``chain``: an :class:`MvKernelConfig` and an :class:`MvChainState`; ``out`` =
    (weights, means, precisions, assignments) records, ``stats`` = (n_changed,
    complete_loglik, tempered_loglik, swap_accept), written from iteration `tune` on; ``n``,
    ``s1``, ``s2``: the sweep's sums (:func:`_mv_update`); ``changed`` (n_rep,): its changed
    assignments. ``shift[r]`` is subtracted from replica r's complete-data log-likelihood
    before the exchange (the missing cells' reference density, :func:`mv_run_missing`; zeros
    otherwise).
    """
    n_rep, k, d = chain.mu.shape
    loglik = np.empty(n_rep)
    work = _mv_work(k, d)
    for r in range(n_rep):
        beta = chain.betas[chain.temp_of[r]]
        loglik[r] = _mv_update(r, beta, config, chain, n, n, s1, s2, work) - shift[r]
    dd = it - tune
    _exchange(it, dd, chain, loglik, changed, stats)
    if dd >= 0:
        _mv_record(dd, config, chain, out, stats, loglik)


@njit(cache=True, nogil=True)
def mv_sweep_scratch(n_rep, k, d):
    """Return the arrays one multivariate iteration fills.

    ``(a, beta, keys, n, s1, s2, changed, shift)``: the logit constants (n_rep, k), inverse
    temperatures (n_rep,) and keys (:func:`_mv_prepare`); the sweep's counts (n_rep, k), sums
    (n_rep, k, d), scatter sums (n_rep, k, d, d) and changed assignments (n_rep,); the
    log-likelihood shifts (n_rep,) (:func:`_mv_after_sweep`), zero.
    """
    return (
        np.empty((n_rep, k)),
        np.empty(n_rep),
        np.empty(n_rep, dtype=np.uint64),
        np.zeros((n_rep, k)),
        np.zeros((n_rep, k, d)),
        np.zeros((n_rep, k, d, d)),
        np.zeros(n_rep, dtype=np.int64),
        np.zeros(n_rep),
    )


@njit(cache=True, nogil=True)
def _mv_sweep_blocks(x, fixed, a, beta, mu, fac, keys, z, sums, n_blocks, part):
    """As :func:`_mv_sweep_serial`, in `n_blocks` ranges whose sums are added in order.

    ``sums`` = (n, s1, s2, changed) and ``part`` scratch of the same shapes; the draws are
    those of the sweep on threads (:func:`_mv_sweep_on`), see :func:`sweep_blocks`.
    """
    n_obs = x.shape[0]
    size = max(1, -(-n_obs // n_blocks))
    clear_sums(sums)
    for lo in range(0, n_obs, size):
        clear_sums(part)
        hi = min(n_obs, lo + size)
        _mv_sweep_part(x, fixed, lo, hi, a, beta, mu, fac, keys, z, *part)
        add_sums(sums, part)


@njit(cache=True, nogil=True)
def mv_run(x, it0, it1, tune, config, chain, out, stats, n_blocks=1):
    """Run iterations of the multivariate sampler on one thread (see :func:`run`).

    ``x`` (n_obs, d): the data; ``config``: an :class:`MvKernelConfig`; ``chain``: an
    :class:`MvChainState`, updated in place; ``out`` = (weights, means, precisions,
    assignments) and ``stats`` = (n_changed, complete_loglik, tempered_loglik, swap_accept):
    the records; ``n_blocks``: the sweep's ranges (1, or the threaded sweep's count at large
    N: the draws are then those of :func:`mv_run_threaded`).
    """
    a, beta, keys, n, s1, s2, changed, shift = mv_sweep_scratch(*chain.mu.shape)
    part = (np.empty_like(n), np.empty_like(s1), np.empty_like(s2), np.empty_like(changed))
    for it in range(it0, it1):
        _mv_prepare(chain, a, beta, keys)
        if n_blocks == 1:
            _mv_sweep_serial(
                x, chain.fixed, a, beta, chain.mu, chain.fac, keys, chain.z, n, s1, s2, changed
            )
        else:
            params = (a, beta, chain.mu, chain.fac, keys, chain.z)
            _mv_sweep_blocks(x, chain.fixed, *params, (n, s1, s2, changed), n_blocks, part)
        _mv_after_sweep(it, tune, config, chain, out, stats, n, s1, s2, changed, shift)


def mv_run_threaded(x, it0, it1, tune, config, chain, out, stats, n_blocks):
    """As :func:`mv_run`, each sweep split over threads (driven from Python).

    See :func:`run_threaded` for why this loop is not compiled: the sweep's ranges run on a pool
    of Python threads.
    """

    def finish(it, scratch):
        _, _, _, n, s1, s2, changed, shift = scratch
        _mv_after_sweep(it, tune, config, chain, out, stats, n, s1, s2, changed, shift)

    _mv_threaded(x, it0, it1, chain, n_blocks, finish)


def _mv_threaded(x, it0, it1, chain, n_blocks, finish):
    """Run iterations it0..it1-1: the keys, the sweep on threads, then ``finish(it, scratch)``.

    ``scratch``: the arrays of :func:`mv_sweep_scratch`, filled by the sweep.
    """
    scratch = mv_sweep_scratch(*chain.mu.shape)
    a, beta, keys, n, s1, s2, changed, _ = scratch
    sums = (n, s1, s2, changed)
    with ThreadPoolExecutor(get_num_threads()) as pool:
        for it in range(it0, it1):
            _mv_prepare(chain, a, beta, keys)
            params = (a, beta, chain.mu, chain.fac, keys)
            _mv_sweep_on(pool, x, chain.fixed, *params, chain.z, *sums, n_blocks)
            finish(it, scratch)


# --------------------------------------------------------------------------- iteration pieces
# Public names for drivers that run the sweep elsewhere (mixtures.engines.distributed sweeps
# chunks of the data on Dask workers and does the rest of each iteration in the client), so
# that they call the very functions `run` and `mv_run` call.
prepare = _prepare
sweep_part = _sweep_part
after_sweep = _after_sweep
mv_prepare = _mv_prepare
mv_sweep_part = _mv_sweep_part
mv_after_sweep = _mv_after_sweep


def chain_state(kind, params: dict, replicas: tuple, betas: np.ndarray, fixed: np.ndarray):
    """Return a run's starting :class:`ChainState` or :class:`MvChainState` (`kind`).

    `params`: the parameter arrays by field name (``logw``, ``mu`` and ``sd``, or ``fac``
    and ``logdet``); `replicas` = (z, state, swap_state, temp_of, rep_at), as
    :func:`mixtures.engines.tempering.replica_state` returns them; `betas`: the ladder;
    `fixed`: the known labels. The swap counts start at zero.
    """
    z, state, swap_state, temp_of, rep_at = replicas
    n_tries = max(betas.size - 1, 1)
    return kind(
        **params,
        z=z,
        state=state,
        swap_state=swap_state,
        temp_of=temp_of,
        rep_at=rep_at,
        betas=betas,
        swap_tries=np.zeros(n_tries, np.int64),
        swap_accepts=np.zeros(n_tries, np.int64),
        fixed=fixed,
    )


def scale_prior(prior, k: int) -> tuple:
    """Return ``(code, p0, p1)`` of a scale prior for the kernels (:func:`scale_logpdf`).

    `prior` is a resolved :class:`mixtures.model.spec.Prior` of a scale family (its
    ``family.code`` and its ``params`` in the family's order); the parameters are broadcast to
    shape (k,), and ``p1`` is zeros for a one-parameter family.
    """
    values = [np.broadcast_to(v, (k,)) for v in prior.params.values()]
    p0 = np.ascontiguousarray(values[0], dtype=float)
    p1 = np.ascontiguousarray(values[1] if len(values) > 1 else np.zeros(k), dtype=float)
    return prior.family.code, p0, p1


def offset_keys(keys: np.ndarray, offset: int) -> np.ndarray:
    """Return the sweep keys that make points 0, 1, ... of a chunk draw as points offset, ...

    The uniform of point i is a hash of ``key + (i + 1) * golden`` (:func:`_counter_uniform`),
    so with ``key + offset * golden`` (mod 2**64) the local index j of a chunk that starts at
    global index `offset` gets the uniform of the global index ``offset + j``: a chunk swept
    on its own draws exactly what the whole sweep draws for it.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the kernels' does
        return keys + np.uint64(offset) * _GOLDEN


# --------------------------------------------------------------------------- public names
# The building blocks a component family's kernel module reuses (``mixtures._kernels_t``): the
# bit casts, the random streams (counter-based and per replica), the block pick, the conjugate
# updates of the weights, means and sds, and replica exchange.
as_int = _as_int
as_float = _as_float
counter_uniform = _counter_uniform
next_bits = _next
uniform = _uniform
normal = _normal
log_gamma = _log_gamma
block_pick = _block_pick
update_weights = _update_weights
update_means = _update_means
update_sigma = _update_sigma
exchange = _exchange
LOG_2PI = _LOG_2PI
BLOCK = _BLOCK
LANES = _LANES
# ... and the multivariate ones (``mixtures._kernels_mvt``): the block's Mahalanobis distances
# (:func:`block_maha`, public above), the weights', means' and precisions' draws from weighted
# sums, their scratch, the records.
MV_BLOCK = _MV_BLOCK
mv_update = _mv_update
mv_work = _mv_work
mv_record = _mv_record


# --------------------------------------------------------------------------- missing cells
# Rows with missing cells (see mixtures.model.missing). Replica r at inverse temperature beta
# targets p(theta) p(z | w) prod_i N(x_i | mu_zi, Sigma_zi)^beta prod_i h_i(x_i,mis)^(1 - beta),
# with x_i the completed row and h_i a fixed Normal reference density of the row's missing cells
# (independent, the observed cells' column means and variances): proper at every beta, equal to
# the posterior (missing cells augmented) at beta = 1, and the parameters' conditionals stay
# those of the complete-data sweep. At beta = 1 the assignment of an incomplete row is drawn
# from the observed cells' marginal, then its missing cells from their conditional Normal
# given the observed ones and that component (one blocked draw); at beta < 1 the assignment
# given the completed row, then the missing cells from N(.)^beta h^(1 - beta) (Gaussian).
#
# The incomplete rows are grouped by missingness pattern (:class:`MissingRows`), so per
# pattern and component the factors of both conditionals are computed once per iteration
# (:func:`_pattern_tables`), and the rows of a pattern are swept in blocks as the complete rows
# are: the log-weights (:func:`_mv_block_logits` on the observed cells with the observed
# marginal's factor), the pick (:func:`_block_pick`), the missing cells as an affine map of the
# observed cells and standard Normals (:func:`_block_draw`), and the lane sums.


@njit(inline="always")
def _mv_covariances(r, fac, sig, lam, low, col_in, col_out):
    """Covariances Sigma_j = (F_j F_j^T)^-1 of replica r into ``sig`` (k, d, d)."""
    k, d = fac.shape[1], fac.shape[2]
    for j in range(k):
        for row in range(d):
            for col in range(d):
                lam[row, col] = _precision_entry(fac, r, j, row, col)
        _cholesky(lam, low)
        for col in range(d):  # column col of Lambda^-1 solves L L^T s = e_col
            for row in range(d):
                col_in[row] = 1.0 if row == col else 0.0
            _solve_lower(low, col_in, col_out)
            _solve_upper_t(low, col_out, col_in)
            for row in range(d):
                sig[j, row, col] = col_in[row]


@njit(inline="always")
def _observed_tables(p, j, r, sig, mu, pats, n_o, tables, work):
    """Tabulate pattern p's observed marginal, component j: G = L^-T (L = chol Sigma_oo), mu_o.

    ``|G^T (x_o - mu_o)|^2`` is the Mahalanobis term of the marginal; returns log |Sigma_oo|.
    ``work[1][:do, :do]`` keeps L.
    """
    gfac, muo = tables[0], tables[1]
    sub, low, _, v1, v2 = work
    do = n_o[p]
    oi = pats[p, :do]
    for a in range(do):
        muo[p, j, a] = mu[r, j, oi[a]]
        for b in range(do):
            sub[a, b] = sig[j, oi[a], oi[b]]
    lo = low[:do, :do]
    _cholesky(sub[:do, :do], lo)
    logdet = 0.0
    for a in range(do):
        logdet += 2.0 * math.log(lo[a, a])
        for b in range(do):
            v1[b] = 1.0 if a == b else 0.0
        _solve_lower(lo, v1[:do], v2[:do])  # column a of L^-1
        for b in range(do):
            gfac[p, j, a, b] = v2[b]  # G[a, b] = (L^-1)[b, a]
    return logdet


@njit(inline="always")
def _tempered_map(p, j, beta, mi, dm, ref_mean, ref_var, tables, work):
    """Turn (c0 = mu_m, A = B, T = chol S) into the map of the tempered conditional (beta < 1).

    P = beta S^-1 + (1 - beta) V^-1; E = beta P^-1 S^-1; A = E B; c0 = E mu_m + (1 - beta)
    P^-1 V^-1 ref_mean; T = L_P^-T (T T^T = P^-1). ``work[1][:dm, :dm]`` holds chol S on entry.
    """
    amat, c0, tmat = tables[2], tables[3], tables[4]
    sub, low, inv, v1, v2 = work
    do = amat.shape[3] - dm
    for b in range(dm):  # S^-1 by columns
        for a in range(dm):
            v1[a] = 1.0 if a == b else 0.0
        _solve_lower(low[:dm, :dm], v1[:dm], v2[:dm])
        _solve_upper_t(low[:dm, :dm], v2[:dm], v1[:dm])
        for a in range(dm):
            inv[a, b] = v1[a]
    for a in range(dm):
        for b in range(dm):
            sub[a, b] = beta * inv[a, b]
        sub[a, a] += (1.0 - beta) / ref_var[mi[a]]
    lp_ = low[:dm, :dm]
    _cholesky(sub[:dm, :dm], lp_)
    for c in range(dm):  # E by columns (into sub), and T = L_P^-T
        for a in range(dm):
            v1[a] = beta * inv[a, c]
        _solve_lower(lp_, v1[:dm], v2[:dm])
        _solve_upper_t(lp_, v2[:dm], v1[:dm])
        for a in range(dm):
            sub[a, c] = v1[a]
            v2[a] = 1.0 if a == c else 0.0
        _solve_upper_t(lp_, v2[:dm], v1[:dm])
        for a in range(dm):
            tmat[p, j, a, c] = v1[a]
    for a in range(dm):  # A = E B (into inv first), c0 = E c0 + P^-1 (1 - beta) V^-1 ref
        for b in range(do):
            acc = 0.0
            for c in range(dm):
                acc += sub[a, c] * amat[p, j, c, b]
            inv[a, b] = acc
        v1[a] = (1.0 - beta) * ref_mean[mi[a]] / ref_var[mi[a]]
    _solve_lower(lp_, v1[:dm], v2[:dm])
    _solve_upper_t(lp_, v2[:dm], v1[:dm])
    for a in range(dm):
        acc = v1[a]
        for c in range(dm):
            acc += sub[a, c] * c0[p, j, c]
        v2[a] = acc
    for a in range(dm):
        c0[p, j, a] = v2[a]
        for b in range(do):
            amat[p, j, a, b] = inv[a, b]


@njit
def _pattern_tables(p, j, r, beta, sig, mu, miss, tables, work):
    """Pattern p, component j of replica r: the logits' factor and the missing cells' draw.

    With o, m the pattern's observed and missing features: the observed marginal
    (:func:`_observed_tables`); B = Sigma_mo Sigma_oo^-1 and S = Sigma_mm - B Sigma_om, the
    missing cells' conditional N(mu_m + B (x_o - mu_o), S); they are drawn as
    ``c0 + A (x_o - mu_o) + T eps``, eps ~ N(0, I): at beta = 1 c0 = mu_m, A = B, T = chol S,
    else the map of the tempered conditional (:func:`_tempered_map`). ``miss.conditional``
    False (tests only: the negative control of the calibration test) sets B = 0, S = Sigma_mm
    (the component's marginal). Returns log |Sigma_oo|.
    """
    pats, n_o = miss.pats, miss.n_o
    amat, c0, tmat = tables[2], tables[3], tables[4]
    sub, low, _, v1, v2 = work
    d = sig.shape[1]
    do = n_o[p]
    dm = d - do
    oi, mi = pats[p, :do], pats[p, do:]
    logdet = _observed_tables(p, j, r, sig, mu, pats, n_o, tables, work)
    lo = low[:do, :do]
    for a in range(dm):  # row a of B solves Sigma_oo b = Sigma_o,m[a]
        for b in range(do):
            v1[b] = sig[j, oi[b], mi[a]]
        _solve_lower(lo, v1[:do], v2[:do])
        _solve_upper_t(lo, v2[:do], v1[:do])
        for b in range(do):
            amat[p, j, a, b] = v1[b] if miss.conditional else 0.0
        c0[p, j, a] = mu[r, j, mi[a]]
    for a in range(dm):
        for b in range(dm):
            acc = sig[j, mi[a], mi[b]]
            for c in range(do):
                acc -= amat[p, j, a, c] * sig[j, oi[c], mi[b]]
            sub[a, b] = acc
    _cholesky(sub[:dm, :dm], low[:dm, :dm])
    if beta >= 1.0:
        for a in range(dm):
            for b in range(dm):
                tmat[p, j, a, b] = low[a, b]
    else:
        _tempered_map(p, j, beta, mi, dm, miss.ref_mean, miss.ref_var, tables, work)
    return logdet


@njit(inline="always")
def _block_draw(p, r, s, e, miss, tables, pick, eps, val, xb, state):
    """Draw the missing cells of the pattern-p rows s..e-1 (components ``pick``) into ``xc``.

    Per row ``c0 + A (x_o - mu_o) + T eps`` of its component (:func:`_pattern_tables`), as
    masked per-lane selects over the components. Returns log h of the draws (up to the
    constant, added once per sweep).
    """
    xo, xc, pats, n_o, ref_mean, ref_var = (
        miss.xo,
        miss.xc,
        miss.pats,
        miss.n_o,
        miss.ref_mean,
        miss.ref_var,
    )
    muo, amat, c0, tmat = tables[1], tables[2], tables[3], tables[4]
    k, d, m = muo.shape[1], xo.shape[0], e - s
    do = n_o[p]
    dm = d - do
    _fill_normals(state, r, eps, dm * m)
    log_h = 0.0
    t, out = val[0], val[1]
    for a in range(dm):
        for j in range(k):
            base = c0[p, j, a]
            for b in range(m):
                t[b] = base
            for c in range(do):
                coef, mc, xr = amat[p, j, a, c], muo[p, j, c], xo[c, s:e]
                for b in range(m):
                    t[b] += coef * (xr[b] - mc)
            for c in range(dm):
                coef, er = tmat[p, j, a, c], eps[c * m : (c + 1) * m]
                for b in range(m):
                    t[b] += coef * er[b]
            for b in range(m):
                out[b] = t[b] if pick[b] == j else out[b]
        f = pats[p, do + a]
        dest, rm, row = xc[r, f, s:e], ref_mean[f], xb[f]
        acc = 0.0
        for b in range(m):
            row[b] = out[b]
            dv = out[b] - rm
            acc += dv * dv
        for b in range(m):
            dest[b] = row[b]
        log_h -= 0.5 * acc / ref_var[f]
    for c in range(do):  # the observed cells, for the sums
        row, src = xb[pats[p, c]], xo[c, s:e]
        for b in range(m):
            row[b] = src[b]
    return log_h


@njit(inline="always")
def _missing_constants(r, beta, miss, logw, mu, fac, work):
    """Per pattern and component the tables of the draws, and the log-weight constants."""
    sig, tables, cst, setup_work, cov_work = work[0], work[1], work[2], work[3], work[4]
    _mv_covariances(r, fac, sig, cov_work[0], cov_work[1], cov_work[2], cov_work[3])
    for p in range(miss.pats.shape[0]):
        for j in range(fac.shape[1]):
            logdet = _pattern_tables(p, j, r, beta, sig, mu, miss, tables, setup_work)
            cst[p, j] = logw[r, j] - 0.5 * logdet


@njit(inline="always")
def _reference_constant(miss):
    """Log of the normalising constants of h over every incomplete row's missing cells."""
    pats, n_o, starts, ref_var = miss.pats, miss.n_o, miss.starts, miss.ref_var
    out = 0.0
    for p in range(pats.shape[0]):
        per_row = 0.0
        for m in range(n_o[p], pats.shape[1]):
            per_row -= 0.5 * math.log(2.0 * math.pi * ref_var[pats[p, m]])
        out += (starts[p + 1] - starts[p]) * per_row
    return out


@njit(inline="always")
def _missing_block(k, d):
    """Return the block arrays of :func:`mv_missing_sweep`.

    Allocated in the sweep itself, as :func:`_mv_sweep_part` does: LLVM then knows that they
    alias nothing, which the block loops need to vectorise.
    """
    size = _MV_BLOCK
    return (
        np.empty((2 * k, size)),  # log-weights, then cumulative sums (_block_pick)
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size, dtype=np.int64),
        np.empty((k, size)),
        np.empty((k, d, size)),
        np.empty((k, d, d, size)),
        np.empty(d * size + 1),  # the standard Normals
        np.empty((2, size)),  # a component's draws, the picked ones
        np.empty(1),  # the logits' beta
        np.empty((d, size)),  # the completed rows of the block
    )


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def mv_missing_sweep(r, beta, key, n_c, miss, logw, a, mu, fac, z, fixed, n, s1, s2, state, work):
    """Sweep the incomplete rows of replica r: assignments, missing cells, and their sums.

    ``miss``: a :class:`MissingRows`. Incomplete row i is observation ``n_c + i`` of ``z``
    (n_rep, n_obs) and ``fixed`` (n_obs,) (known labels, -1: unknown). ``logw``, ``a``
    (n_rep, k): the log weights and the logit constants (:func:`_mv_prepare`); ``mu``, ``fac``:
    the means and precision factors; ``key``: the sweep's key of the counter-based uniforms
    (of observation ``n_c + i``, as the complete rows' sweep); ``state``: the replicas' random
    streams (the Normals of the missing cells); ``work``: :func:`missing_work`. Adds to ``n``,
    ``s1``, ``s2`` (centred on the current means, as the complete rows' sweep); returns
    (changed, log h of the draws).
    """
    xo, starts = miss.xo, miss.starts
    tables, cst = work[1], work[2]
    lp, top, tot, u, pick, acc_n, acc_1, acc_2, eps, val, tb, xb = _missing_block(
        mu.shape[1], xo.shape[0]
    )
    _missing_constants(r, beta, miss, logw, mu, fac, work)
    size = top.shape[0]
    width = pow2_at_least(min(size, xo.shape[1]))
    acc_n[:, :width] = 0.0
    acc_1[:, :, :width] = 0.0
    acc_2[:, :, :, :width] = 0.0
    xcr = miss.xc[r]
    tb[0] = beta
    ones = np.ones(cst.shape[0])
    changed, log_h = 0, _reference_constant(miss)
    for p in range(starts.shape[0] - 1):
        for s in range(starts[p], starts[p + 1], size):
            e = min(s + size, starts[p + 1])
            if beta >= 1.0:  # the observed cells' marginal (G, mu_o, xo are 0 past n_o[p])
                _mv_block_logits(xo, s, e, p, cst, ones, tables[1], tables[0], lp, top, u)
            else:  # the completed row
                _mv_block_logits(xcr, s, e, 0, a[r:], tb, mu[r:], fac[r:], lp, top, u)
            i0, i1 = n_c + s, n_c + e
            changed += _block_pick(fixed[i0:i1], z[r, i0:i1], i0, key, lp, top, tot, u, pick)
            log_h += _block_draw(p, r, s, e, miss, tables, pick, eps, val, xb, state)
            _mv_block_sums(xb, 0, e - s, r, mu, pick, acc_n, acc_1, acc_2)
    _mv_lane_totals(r, width, acc_n, acc_1, acc_2, n, s1, s2)
    return changed, log_h


@njit(cache=True, nogil=True)
def missing_work(n_pat, k, d):
    """Scratch arrays of :func:`mv_missing_sweep`.

    ``(sig, tables, cst, setup, cov)``: the covariances (k, d, d); per pattern and component
    the tables G, mu_o, A, c0, T (:func:`_pattern_tables`) and the log-weight constants
    (n_pat, k); the tables' and the covariances' scratch.
    """
    tables = (
        np.zeros((n_pat, k, d, d)),
        np.zeros((n_pat, k, d)),
        np.zeros((n_pat, k, d, d)),
        np.zeros((n_pat, k, d)),
        np.zeros((n_pat, k, d, d)),
    )
    setup = (np.empty((d, d)), np.zeros((d, d)), np.empty((d, d)), np.empty(d), np.empty(d))
    cov = (np.empty((d, d)), np.empty((d, d)), np.empty(d), np.empty(d))
    return np.empty((k, d, d)), tables, np.empty((n_pat, k)), setup, cov


@njit(cache=True, nogil=True)
def _missing_pass(n_c, miss, chain, scratch, work):
    """Every replica's incomplete rows after the complete rows' sweep (see mv_missing_sweep).

    ``scratch``: :func:`mv_sweep_scratch`'s arrays; their last, ``shift``, receives each
    replica's log h of the missing cells' draws.
    """
    a, beta, keys, n, s1, s2, changed, log_h = scratch
    logw, mu, fac, z, fixed, state = (
        chain.logw,
        chain.mu,
        chain.fac,
        chain.z,
        chain.fixed,
        chain.state,
    )
    for r in range(mu.shape[0]):
        c, h = mv_missing_sweep(
            r, beta[r], keys[r], n_c, miss, logw, a, mu, fac, z, fixed, n, s1, s2, state, work
        )
        changed[r] += c
        log_h[r] = h


@njit(cache=True, nogil=True)
def _store_missing(it, tune, chain, miss, cells, out_imp):
    """Store the cold replicas' draws of the missing cells (``cells`` = (row, feature) pairs)."""
    dd = it - tune
    if dd < 0:
        return
    xc, rep_at = miss.xc, chain.rep_at
    n_temps = rep_at.shape[1]
    for ch in range(rep_at.shape[0]):
        cold = rep_at[ch, n_temps - 1]
        for c in range(cells.shape[0]):
            out_imp[ch, dd, c] = xc[cold, cells[c, 1], cells[c, 0]]


@njit(cache=True, nogil=True)
def _missing_finish(it, tune, n_c, config, chain, out, stats, miss, imputed, scratch, work):
    """Run iteration `it` after the complete rows' sweep: the incomplete rows, then the rest.

    ``imputed`` = (cells, out_imp) (:func:`mv_run_missing`).
    """
    a, beta, keys, n, s1, s2, changed, log_h = scratch
    _missing_pass(n_c, miss, chain, scratch, work)
    _mv_after_sweep(it, tune, config, chain, out, stats, n, s1, s2, changed, log_h)
    _store_missing(it, tune, chain, miss, imputed[0], imputed[1])


@njit(cache=True, nogil=True)
def mv_run_missing(x, it0, it1, tune, config, chain, out, stats, miss, cells, out_imp):
    """As :func:`mv_run` for data with missing cells.

    ``x`` holds the complete rows (the observations 0..n_c-1); ``miss`` the incomplete ones
    (a :class:`MissingRows`); ``out_imp`` (chains, draws, n_cells) receives the cold
    replicas' draws of the missing cells ``cells`` (index into the incomplete rows, feature).
    """
    scratch = mv_sweep_scratch(*chain.mu.shape)
    a, beta, keys, n, s1, s2, changed, _ = scratch
    work = missing_work(miss.pats.shape[0], chain.mu.shape[1], chain.mu.shape[2])
    for it in range(it0, it1):
        _mv_prepare(chain, a, beta, keys)
        _mv_sweep_serial(
            x, chain.fixed, a, beta, chain.mu, chain.fac, keys, chain.z, n, s1, s2, changed
        )
        _missing_finish(
            it, tune, x.shape[0], config, chain, out, stats, miss, (cells, out_imp), scratch, work
        )


def mv_run_missing_threaded(
    x, it0, it1, tune, config, chain, out, stats, miss, cells, out_imp, n_blocks
):
    """As :func:`mv_run_missing`, the complete rows' sweep split over threads."""
    work = missing_work(miss.pats.shape[0], chain.mu.shape[1], chain.mu.shape[2])
    imputed = (cells, out_imp)

    def finish(it, scratch):
        n_c = x.shape[0]
        _missing_finish(it, tune, n_c, config, chain, out, stats, miss, imputed, scratch, work)

    _mv_threaded(x, it0, it1, chain, n_blocks, finish)
