"""The polynomial of f64 `log1p` (src/tensor/vmath.rs, `LOG_ATANH` of `impl VFloat for f64`).

`log1p` reduces to ln m, m ∈ [√½, √2), f = m − 1, and writes ln m = 2·atanh(s) = 2s + s·z·P(z)
with s = f/(2 + f), z = s² ≤ z_max = ((√2 − 1)/(√2 + 1))² ≈ 0.0294. The Taylor series gives
P(z) = 2/3 + 2z/5 + 2z²/7 + …; here P is a minimax fit of (2·atanh(s)/s − 2)/z by Lawson's
algorithm (scripts/minimax.py), weighted so that the error minimised is relative to ln m
(an error δ in P moves ln m by s·z·δ, relative z·δ/2). Prints the largest relative error of
s·z·P(z) against ln m with the rounded coefficients, and those coefficients (constant first).

    python3 scripts/fit_log.py [TERMS]   # terms of P, default 7; needs mpmath
    python3 scripts/fit_log.py --check   # the committed coefficients' error

Measured (2026-12-06), after rounding to f64: minimax with 5 terms 3.0e-14, 6 terms 1.9e-16
(over half an ulp), 7 terms 1.8e-18 (committed); the 10-term Taylor series it replaced 1.2e-18.
"""
import re
import sys
from pathlib import Path

import mpmath as mp

from minimax import chebyshev_nodes, fit_rounded, horner, report

ROOT = Path(__file__).parent.parent
Z_MAX = ((mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)) ** 2


def target(z):
    s = mp.sqrt(z)
    return (2 * mp.atanh(s) / s - 2) / z


def relative_error(coeffs):
    """Largest |(2s + s·z·P(z))/ln m − 1| over s in (0, s_max], both signs alike."""
    worst = mp.mpf(0)
    for k in range(1, 4001):
        s = mp.sqrt(Z_MAX) * k / 4000
        z = s * s
        exact = 2 * mp.atanh(s)
        worst = max(worst, abs((2 * s + s * z * horner(coeffs, z)) / exact - 1))
    return worst


def committed():
    src = (ROOT / "src/tensor/vmath.rs").read_text()
    body = src[src.index("impl VFloat for f64"):]
    block = body[body.index("const LOG_ATANH"):]
    block = block[block.index("&[") + 2:block.index("];")]
    values = []
    for item in block.split(","):
        item = item.strip().replace("_", "")
        if not item:
            continue
        if "/" in item:
            a, b = item.split("/")
            values.append(float(a) / float(b))
        else:
            values.append(float(item))
    return values


def main():
    args = sys.argv[1:]
    if args == ["--check"]:
        p = committed()
        print(f"committed, P with {len(p)} terms: relative error {mp.nstr(relative_error(p), 3)}")
        return
    nterms = int(args[0]) if args else 7
    p = fit_rounded(chebyshev_nodes(0, Z_MAX, 200), target, lambda z: z / 2, 0, nterms)
    report(f"P with {nterms} terms: relative error {mp.nstr(relative_error(p), 3)} "
           "(half an ulp: 1.1e-16)", p)


if __name__ == "__main__":
    main()
