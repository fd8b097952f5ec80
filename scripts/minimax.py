"""Weighted minimax polynomial fits by Lawson's algorithm, in mpmath's 40-digit arithmetic.

Shared by scripts/fit_erfc.py (f64 erf's erfc polynomial) and scripts/fit_exp.py (f64 exp's
polynomial): least squares on Chebyshev nodes, reweighted towards the minimax solution.
"""
import mpmath as mp

mp.mp.dps = 40


def horner(coeffs, t):
    """Σ coeffs[j]·tʲ (constant term first)."""
    p = mp.mpf(0)
    for c in reversed(coeffs):
        p = p * t + mp.mpf(c)
    return p


def chebyshev_nodes(a, b, n):
    return [(a + b) / 2 + (b - a) / 2 * mp.cos(mp.pi * (k + mp.mpf("0.5")) / n) for k in range(n)]


def lawson(xs, target, weight, shift, nterms, iterations=40):
    """Coefficients (constant first) of p(x − shift) minimising max |weight(x)·(p − target(x))|
    over xs, and that maximum: (error, coefficients)."""
    q = [target(x) for x in xs]
    w = [weight(x) for x in xs]
    t = [x - shift for x in xs]
    lw = [mp.mpf(1)] * len(xs)
    best = None
    for _ in range(iterations):
        a = mp.matrix(nterms, nterms)
        rhs = mp.matrix(nterms, 1)
        for i in range(len(xs)):
            w2 = lw[i] * w[i] ** 2
            pw = [t[i] ** j for j in range(nterms)]
            for j in range(nterms):
                rhs[j] += w2 * pw[j] * q[i]
                for k in range(j, nterms):
                    a[j, k] += w2 * pw[j] * pw[k]
        for j in range(nterms):
            for k in range(j):
                a[j, k] = a[k, j]
        c = mp.lu_solve(a, rhs)
        coeffs = [c[j] for j in range(nterms)]
        err = [abs(w[i] * (horner(coeffs, t[i]) - q[i])) for i in range(len(xs))]
        if best is None or max(err) < best[0]:
            best = (max(err), coeffs)
        total = sum(lw[i] * err[i] for i in range(len(xs)))
        lw = [lw[i] * err[i] / total for i in range(len(xs))]
    return best


def fit_rounded(xs, target, weight, shift, nterms):
    """[`lawson`]'s coefficients rounded to f64, as the Rust source holds them."""
    _, coeffs = lawson(xs, target, weight, shift, nterms)
    return [float(c) for c in coeffs]


def report(header, coeffs):
    """Prints the header, then the coefficients one per line (constant first)."""
    print(header)
    for c in coeffs:
        print(repr(c))
