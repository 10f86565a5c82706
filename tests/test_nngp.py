"""EP against closed forms and scipy's Genz integral, and its P_B summing to one over all functions;
its tilted moments against a high-precision reference, its guards and its per-function failures."""
import itertools
from decimal import Decimal, localcontext

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import log_ndtr

from study import nngp
from study.encoding import bits_to_hex
from study.tasks import boolean_inputs, make_task, target_table


@pytest.fixture(scope="module")
def K128(net7):
    """NNGP kernel of the default 7-40-40-1 network on all 128 Boolean inputs."""
    return nngp.nngp_kernel(net7, boolean_inputs(7))


def task_kernel(net, task):
    return nngp.nngp_kernel(net, np.concatenate([task.x_train, task.x_test]))


def orthant2(rho):
    """P(z1 > 0, z2 > 0) for unit variances and correlation rho (Sheppard)."""
    return 0.25 + np.arcsin(rho) / (2 * np.pi)


def orthant3(C):
    """P(z > 0) in 3-D from the correlations: 1/8 + (sum of arcsin rho_ij) / (4 pi)."""
    return 1 / 8 + (np.arcsin(C[0, 1]) + np.arcsin(C[0, 2]) + np.arcsin(C[1, 2])) / (4 * np.pi)


def test_ep_and_scipy_against_closed_forms():
    # One site and independent sites: EP is exact, whatever the scale and signs.
    assert abs(nngp.ep_log_orthant(np.array([[3.0]]), [-1]) + np.log(2)) < 1e-12
    assert abs(nngp.ep_log_orthant(np.diag([1.0, 2, 3, 4, 5, 6]), [1, -1, 1, 1, -1, -1]) + 6 * np.log(2)) < 1e-10
    # 2-D. Measured EP error |log EP - log exact|: 0.0018 at |rho| <= 0.5, 0.030 at 0.9,
    # 0.048 at 0.95, 0.11 as rho -> 1 (EP underestimates positive and overestimates negative rho).
    for rho, ep_tol in [(-0.95, 0.06), (-0.5, 0.003), (0.0, 1e-12), (0.3, 0.003), (0.5, 0.003), (0.95, 0.06)]:
        exact = np.log(orthant2(rho))
        K = np.array([[2.0, 2 * rho], [2 * rho, 2.0]])
        assert abs(nngp.orthant_log_prob_scipy(K, [1, 1]) - exact) < 1e-3
        assert abs(nngp.orthant_log_prob_scipy(K, [1, -1]) - np.log(orthant2(-rho))) < 1e-3
        assert abs(nngp.ep_log_orthant(K, [True, True]) - exact) < ep_tol
    # 3-D on random correlation matrices (signs folded into the correlations).
    # Measured max EP error over 200 such matrices: 0.076.
    rng = np.random.default_rng(0)
    for _ in range(5):
        B = rng.normal(size=(3, 4))
        s = rng.choice([-1, 1], 3)
        C = nngp.correlation(B @ B.T, 0.0)
        exact = np.log(orthant3(C * np.outer(s, s)))
        assert abs(nngp.orthant_log_prob_scipy(B @ B.T, s) - exact) < 1e-3
        assert abs(nngp.ep_log_orthant(B @ B.T, s) - exact) < 0.1


@pytest.mark.parametrize("kind", ["random_spd", "nngp"])
def test_ep_matches_scipy_orthant_probability(kind, K128):
    """Measured max |log EP - log scipy| over 40 cases per dimension d = 2..10 (scipy to 1e-3
    relative): random SPD C = BB^T with B of shape (d, 2d): 0.038 (0.011 - 0.038 by d);
    NNGP kernel on random subsets of the 128 inputs, random signs: 0.026; majority labels:
    0.034 (0.005 - 0.034, growing slowly with d). log P reached -12.5 in these cases."""
    rng = np.random.default_rng({"random_spd": 1, "nngp": 2}[kind])
    majority = target_table("majority", 7)
    worst = 0.0
    for d in range(2, 11):
        for rep in range(3):
            if kind == "random_spd":
                B = rng.normal(size=(d, 2 * d))
                K, s = B @ B.T, rng.choice([-1, 1], d)
            else:
                idx = rng.choice(128, d, replace=False)
                K = K128[np.ix_(idx, idx)]
                s = np.where(majority[idx], 1, -1) if rep == 0 else rng.choice([-1, 1], d)
            reference = nngp.orthant_log_prob_scipy(K, s, rel_err=1e-3)
            ep = nngp.ep_log_orthant(K, s)
            worst = max(worst, abs(ep - reference))
            # Parallel damped sweeps reach the same fixed point as sequential ones.
            assert abs(nngp.ep_log_orthant(K, s, parallel=True, damping=0.5) - ep) < 1e-6
    assert worst < 0.05, worst
    assert K128.dtype == np.float64 and np.allclose(K128, K128.T)


def test_ep_refuses_bad_input_and_reports_non_convergence(K128):
    idx = np.arange(0, 128, 20)
    with pytest.raises(nngp.EPNotConverged, match="did not converge"):
        nngp.ep_log_orthant(K128[np.ix_(idx, idx)], np.ones(len(idx)), max_sweeps=1)
    with pytest.raises(ValueError, match="0/1"):
        nngp.ep_log_orthant(K128[:3, :3], np.array([0, 1, 1]))


@pytest.mark.parametrize("m, n_E, seed", [(5, 4, 1), (20, 6, 3)])
def test_ep_pb_sums_to_one_over_all_functions(net7, m, n_E, seed):
    """sum_f P_B(f|S) = 1 exactly; EP's two log-normalisers are approximated separately, so the
    sum measures EP's self-consistency. Measured sums - 1: -0.0018 (5, 4) and -0.0110 (20, 6);
    six cases up to |S| = 64, |E| = 8 were all within -0.0123."""
    task = make_task(7, "majority", m, n_E, seed)
    K = task_kernel(net7, task)
    f_FxE = np.array(list(itertools.product([False, True], repeat=n_E)))
    log_pb_F = nngp.ep_log_pb_many(K, task.y_train, f_FxE).log_pb
    assert abs(np.exp(log_pb_F).sum() - 1) < 0.03
    # The warm-started batch equals the one-at-a-time EP, and hex input equals bool input.
    assert abs(log_pb_F[5] - nngp.ep_log_pb(K, task.y_train, f_FxE[5])) < 1e-6
    hexes = [bits_to_hex(f) for f in f_FxE[[0, 5]]]
    np.testing.assert_allclose(nngp.ep_log_pb_many(K, task.y_train, hexes).log_pb, log_pb_F[[0, 5]], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Tilted moments far in the tail, against a high-precision reference


def _decimal_pi() -> Decimal:
    """pi to the current decimal precision (the recipe in the decimal module's documentation)."""
    with localcontext() as ctx:
        ctx.prec += 2
        last, t, s, n, na, d, da = 0, Decimal(3), Decimal(3), 1, 0, 0, 24
        while s != last:
            last = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
    return +s


def reference_ratios(u: float) -> np.ndarray:
    """r = phi(u)/Phi(u), u + r, 1 - r(u + r) and 1 + u(u + r) in decimal arithmetic (mpmath is
    not installed). Phi(u)/phi(u) = 1/(2 phi(u)) + S(-u) with the all-positive series
    S(a) = sum_n a^(2n+1)/(2n+1)!! = int_0^a phi / phi(a); for u < 0 the two terms cancel to
    about u^2/(2 ln 10) digits, so the working precision is that many digits plus 40."""
    with localcontext() as ctx:
        ctx.prec = int(0.22 * u * u) + 40
        U, a = Decimal(u), -Decimal(u)  # exact: the float's binary value
        phi = (-(U * U) / 2).exp() / (2 * _decimal_pi()).sqrt()
        term = series = a
        n = 0
        while term != 0 and (n < 5 or abs(term) > abs(series) * Decimal(10) ** -ctx.prec):
            n += 1
            term = term * a * a / (2 * n + 1)
            series += term
        r = 1 / (1 / (2 * phi) - series)
        u_plus_r = U + r
        return np.array([float(r), float(u_plus_r), float(1 - r * u_plus_r), float(1 + U * u_plus_r)])


def asymptotic_ratios(u: float) -> np.ndarray:
    """The same four from the asymptotic series in a = -u (r = a + 1/a - 2/a^3 + ..., coefficients
    from inverting Phi(-a)/phi(a) ~ sum_n (-1)^n (2n-1)!! / a^(2n+1)): the first omitted terms
    are below 1e-15 relative for a >= 100."""
    a = -u
    u_plus_r = 1 / a - 2 / a**3 + 10 / a**5 - 74 / a**7 + 706 / a**9
    shrink = 1 / a**2 - 6 / a**4 + 50 / a**6 - 518 / a**8 + 6354 / a**10
    w = 2 / a**2 - 10 / a**4 + 74 / a**6 - 706 / a**8 + 8162 / a**10
    return np.array([a + u_plus_r, u_plus_r, shrink, w])


def naive_ratios(u: float) -> np.ndarray:
    """The closed forms nngp used for every u before the continued fraction (the regression to catch)."""
    r = np.exp(-0.5 * u**2 - 0.5 * np.log(2 * np.pi) - log_ndtr(u))
    u_plus_r = max(u + r, 0.0)
    return np.array([r, u_plus_r, max(1 - r * u_plus_r, 1e-300), 1 + u * u_plus_r])


def test_tilted_moments_match_a_high_precision_reference():
    """Measured max relative error of the four ratios over 2400 u in [-40, 8]: 1.2e-13, at
    u = -2.42 (the closed forms just above the switch at -2.5); below it <= 1e-14. The closed
    forms alone err by 5.6e-11 at u = -10, 3.6e-9 at -20, 7.3e-8 at -30 and 4e-2 at -300."""
    switch = nngp._STABLE_BELOW
    # The reference is right: closed forms at u = 0, the asymptotic series at u = -40 (5 terms
    # leave 1e-11 there).
    at_zero = [np.sqrt(2 / np.pi), np.sqrt(2 / np.pi), 1 - 2 / np.pi, 1]
    np.testing.assert_allclose(reference_ratios(0.0), at_zero, rtol=1e-15)
    np.testing.assert_allclose(reference_ratios(-40.0), asymptotic_ratios(-40.0), rtol=1e-10)

    below_switch, above_switch = np.nextafter(switch, -np.inf), np.nextafter(switch, np.inf)
    u_U = np.unique(np.concatenate([np.linspace(-40, 8, 241), np.linspace(switch - 0.5, switch + 0.5, 41),
                                    [below_switch, above_switch, -10, -20, -30]]))
    reference_Ux4 = np.array([reference_ratios(u) for u in u_U])
    got_Ux4 = np.stack(nngp._truncation_ratios(u_U), axis=1)
    np.testing.assert_allclose(got_Ux4, reference_Ux4, rtol=1e-12, atol=0)
    # The sequential sweep calls it with scalars: the same numbers.
    ratios_at = lambda u: np.array(nngp._truncation_ratios(np.array([u]))).ravel()  # noqa: E731
    for u, row in zip(u_U[::10], got_Ux4[::10]):
        assert np.array_equal(np.array(nngp._truncation_ratios(np.float64(u))), row)
    # Continuous across the switch: the two branches at neighbouring floats agree.
    np.testing.assert_allclose(ratios_at(below_switch), ratios_at(switch), rtol=1e-12)
    # Far beyond the grid, against the asymptotic series.
    for u in [-100.0, -300.0, -1e3, -1e4, -1e6, -1e8]:
        np.testing.assert_allclose(ratios_at(u), asymptotic_ratios(u), rtol=1e-13)
    # The site parameters tau, nu built from them (cavity variance 2, so mu_cav = u sqrt 2).
    r, u_plus_r, shrink, w = reference_Ux4.T
    tau_U, nu_U, _ = nngp._tilted_sites(np.ones_like(u_U), u_U * np.sqrt(2.0), np.full_like(u_U, 2.0))
    np.testing.assert_allclose(tau_U, r * u_plus_r / (2.0 * shrink), rtol=1e-12, atol=0)
    np.testing.assert_allclose(nu_U, r * w / (np.sqrt(2.0) * shrink), rtol=1e-12, atol=0)
    # The closed forms alone fail this test: 1 - r(u + r) is off by far more than the tolerance
    # at u = -30 and useless at u = -300.
    shrink_error = lambda u, ref: abs(naive_ratios(u)[2] / ref[2] - 1)  # noqa: E731
    assert shrink_error(-30.0, reference_ratios(-30.0)) > 1e-9
    assert shrink_error(-300.0, asymptotic_ratios(-300.0)) > 1e-3


def one_factor_orthant(n: int, rho: float):
    """Correlation and signs of z_0 > 0 and z_i < 0 for z_i = rho z_0 + sqrt(1 - rho^2) e_i,
    i = 1..n, and the exact log P = log int_0^inf phi(x) Phi(-k x)^n dx, k = rho / sqrt(1 - rho^2)."""
    C = np.full((n + 1, n + 1), rho**2)
    C[0, :] = C[:, 0] = rho
    np.fill_diagonal(C, 1.0)
    s = -np.ones(n + 1)
    s[0] = 1.0
    k = rho / np.sqrt(1 - rho**2)
    integrand = lambda x: np.exp(-0.5 * x * x - 0.5 * np.log(2 * np.pi) + n * log_ndtr(-k * x))  # noqa: E731
    cut = 10 / (k * np.sqrt(n))  # the mass sits within a few 1/(k sqrt(n)) of 0
    p = sum(quad(integrand, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
            for lo, hi in [(0, cut), (cut, np.inf)])
    return C, s, np.log(p)


def test_ep_with_cavities_far_in_the_tail(monkeypatch):
    """n = 100 sites each pushing z_0 below 0 while site 0 wants it above: site 0's cavity sits
    at u = -10.3 (-1.9 is the most a 2-D orthant reaches, even at correlation -1 + 1e-10).
    EP's measured error against the 1-D integral: 2e-5."""
    C, s, exact = one_factor_orthant(100, 0.99)
    tilted = nngp._tilted_sites
    u_min = [np.inf]

    def recording(s_N, mu_cav_N, var_cav_N):
        u_min[0] = min(u_min[0], float(np.min(s_N * mu_cav_N / np.sqrt(var_cav_N))))
        return tilted(s_N, mu_cav_N, var_cav_N)

    monkeypatch.setattr(nngp, "_tilted_sites", recording)
    log_p = nngp.ep_log_orthant(C, s, jitter=0.0)
    assert u_min[0] < -10, u_min[0]
    assert np.isfinite(log_p) and abs(log_p - exact) < 1e-3, (log_p, exact)


# ---------------------------------------------------------------------------------------------
# Guards and per-function failures


def test_cavity_guard_names_the_site_of_a_broken_warm_start(monkeypatch):
    """A warm start with tau = 1e20 at site 1: Sigma_11 ~ 1e-20 is lost to rounding and
    1/Sigma_11 - tau_1 = -1e20 (measured; before the guard this ended in scipy's 'array must not
    contain infs or NaNs' from the next Cholesky)."""
    rng = np.random.default_rng(0)
    B = rng.normal(size=(4, 8))
    C, s = nngp.correlation(B @ B.T, 1e-6), np.array([1.0, -1, 1, 1])
    tau0, nu0 = np.array([0.0, 1e20, 0, 0]), np.zeros(4)
    for parallel, damping in [(False, 1.0), (True, 0.5)]:
        with pytest.raises(nngp.EPNumericalError, match=r"cavity of site 1 .*= -1\.000e\+20") as err:
            nngp._ep_fit(C, s, parallel=parallel, damping=damping, tol=1e-8, max_sweeps=200,
                         tau0_N=tau0, nu0_N=nu0)
        assert isinstance(err.value, nngp.EPFailed) and not isinstance(err.value, nngp.EPNotConverged)
    # Ordinary starts never trip it: flat sites, and a warm start at the fixed point (one sweep).
    opts = dict(parallel=False, damping=1.0, tol=1e-8, max_sweeps=200)
    log_Z, tau, nu, _ = nngp._ep_fit(C, s, **opts)
    log_Z_warm, _, _, sweeps = nngp._ep_fit(C, s, tau0_N=tau, nu0_N=nu, **opts)
    assert sweeps == 1 and abs(log_Z_warm - log_Z) < 1e-10
    # A log Z that is not finite is a numerical error too, not a number.
    monkeypatch.setattr(nngp, "_ep_log_z", lambda *args: float("nan"))
    with pytest.raises(nngp.EPNumericalError, match="log Z is nan"):
        nngp._ep_fit(C, s, **opts)


def test_ep_log_pb_many_reports_failures_per_function(net7):
    """Measured sweeps at (m, |E|) = (10, 4): 9 for S, 9-11 for the functions; max_sweeps = 10
    leaves one function unconverged while S converges."""
    task = make_task(7, "majority", 10, 4, 0)
    K = task_kernel(net7, task)
    f_FxE = np.array(list(itertools.product([False, True], repeat=4)))
    normal = nngp.ep_log_pb_many(K, task.y_train, f_FxE)
    assert isinstance(normal, nngp.EPScores) and np.all(normal.status == "converged")
    assert np.all(np.isfinite(normal.log_pb)) and normal.sweeps.min() >= 1
    capped = nngp.ep_log_pb_many(K, task.y_train, f_FxE, max_sweeps=10)
    ok_F = normal.sweeps <= 10
    assert 0 < (~ok_F).sum() < len(ok_F)
    np.testing.assert_array_equal(capped.status, np.where(ok_F, "converged", "not_converged"))
    np.testing.assert_array_equal(capped.log_pb[ok_F], normal.log_pb[ok_F])
    assert np.all(np.isnan(capped.log_pb[~ok_F])) and np.all(capped.sweeps[~ok_F] == 0)
    np.testing.assert_array_equal(capped.sweeps[ok_F], normal.sweeps[ok_F])
    # EP on S alone failing leaves nothing to score: that still raises.
    with pytest.raises(nngp.EPNotConverged, match="did not converge"):
        nngp.ep_log_pb_many(K, task.y_train, f_FxE, max_sweeps=8)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the divisions by Sigma_ii = 0 that the guard reports
def test_ep_log_pb_many_records_numerical_errors():
    """The last input of E duplicates the first of S (label +1) and jitter = 0: a function giving
    it -1 has P_B = 0 exactly, and EP's site precisions grow until rounding breaks it (measured:
    Sigma_ii = 0 after ~10 sweeps); the other functions are scored as usual."""
    rng = np.random.default_rng(0)
    B = rng.normal(size=(6, 12))
    X = np.concatenate([B, B[:1]])
    y_S = np.array([1, -1, 1, 1, -1])
    f_FxE = np.array(list(itertools.product([False, True], repeat=2)))
    scores = nngp.ep_log_pb_many(X @ X.T, y_S, f_FxE, jitter=0.0)
    ok_F = f_FxE[:, 1]
    np.testing.assert_array_equal(scores.status, np.where(ok_F, "converged", "numerical_error"))
    assert np.all(np.isnan(scores.log_pb[~ok_F])) and np.all(scores.sweeps[~ok_F] == 0)
    for k in np.flatnonzero(ok_F):
        assert abs(scores.log_pb[k] - nngp.ep_log_pb(X @ X.T, y_S, f_FxE[k], jitter=0.0)) < 1e-6
