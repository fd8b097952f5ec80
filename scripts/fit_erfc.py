"""How many terms f64 erf's large-argument polynomial needs (src/tensor/vmath.rs, ERFC_SCALED).

erf(x) = 1 − e^(−x²)·Q(x) for 0.75 ≤ x ≤ 6, with Q(x) = erfc(x)·e^(x²) a polynomial in
t = x − 3.375. An error δ in Q becomes an error e^(−x²)·δ/erf(x) relative to erf, so that is the
weight. This fits Q by Lawson's algorithm (least squares, reweighted towards the minimax
solution), in 40-digit arithmetic, and prints the largest weighted error over the interval and
the coefficients (constant term first).

    python3 scripts/fit_erfc.py [TERMS]      # default 22; needs mpmath (pip install mpmath)
    python3 scripts/fit_erfc.py --check      # the committed coefficients' weighted error

Measured (2026-12-06): 22 terms 3.1e-17, 20 terms 6.3e-16; the committed 22 coefficients (an
earlier weighted least-squares fit) 5.1e-17. Half an ulp of erf near 1 is 5.5e-17, so 22 terms
is the fewest that keep erf within its 2-ulp bound (tests/vmath.rs): the f64 polynomial cannot be
shortened by refitting (BENCHMARKS.md, eighth session).
"""
import re
import sys
from pathlib import Path

import mpmath as mp

from minimax import chebyshev_nodes, fit_rounded, horner, report

A, B, MID = mp.mpf("0.75"), mp.mpf(6), mp.mpf("3.375")
NODES = 500


def scaled_erfc(x):
    return mp.erfc(x) * mp.exp(x * x)


def weight(x):
    return mp.exp(-x * x) / mp.erf(x)


def weighted_error(coeffs, xs):
    """Largest |e^(−x²)/erf(x) · (p(x − MID) − Q(x))| over xs."""
    return max(abs(weight(x) * (horner(coeffs, x - MID) - scaled_erfc(x))) for x in xs)


def committed():
    """ERFC_SCALED of `impl VFloat for f64`, read from vmath.rs."""
    src = (Path(__file__).parent.parent / "src/tensor/vmath.rs").read_text()
    f64_impl = src[src.index("impl VFloat for f64"):]
    block = f64_impl[f64_impl.index("ERFC_SCALED"):]
    block = block[block.index("&[") + 2:block.index("];")]
    return [float(v.replace("_", "")) for v in re.findall(r"-?[\d_.]+e[-+]\d+", block)]


def main():
    grid = [A + (B - A) * k / 2000 for k in range(2001)]
    if sys.argv[1:] == ["--check"]:
        coeffs = committed()
        print(f"committed, {len(coeffs)} terms: weighted error {mp.nstr(weighted_error(coeffs, grid), 3)}")
        return
    nterms = int(sys.argv[1]) if len(sys.argv) > 1 else 22
    coeffs = fit_rounded(chebyshev_nodes(A, B, NODES), scaled_erfc, weight, MID, nterms)
    report(f"{nterms} terms: weighted error {mp.nstr(weighted_error(coeffs, grid), 3)} "
           "(half an ulp of erf near 1: 5.5e-17)", coeffs)


if __name__ == "__main__":
    main()
