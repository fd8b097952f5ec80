"""The polynomials of f64 `exp` (src/tensor/simd.rs, `exp_f64_parts`) and `expm1`
(src/tensor/vmath.rs, `EXPM1_POLY` of `impl VFloat for f64`).

With x = n·ln2 + r, |r| ≤ ln2/2, both evaluate eʳ = 1 + r + r²·q(r) (expm1 without the 1): q is
fitted to (eʳ − 1 − r)/r² by Lawson's algorithm (scripts/minimax.py), weighted so that the
error minimised is relative to the result: r²/eʳ for exp, r²/|expm1 r| for expm1. Prints the
largest relative error of the rounded polynomial and the coefficients of q (constant first).

    python3 scripts/fit_exp.py [--expm1] [TERMS]   # terms of q, default 10; needs mpmath
    python3 scripts/fit_exp.py [--expm1] --check   # the committed coefficients' error

Measured (2026-12-06), q with 10 terms (degree 11 in r) after rounding to f64: exp 1.1e-17
(the degree-13 Taylor polynomial it replaced: 5e-18, two multiply-adds more), expm1 3.5e-17
(Taylor's 13 terms: three more); 9 terms: expm1 1.4e-15, over half an ulp (1.1e-16).
"""
import re
import sys
from pathlib import Path

import mpmath as mp

from minimax import chebyshev_nodes, fit_rounded, horner, report

H = mp.log(2) / 2
ROOT = Path(__file__).parent.parent


def result(r, expm1):
    return mp.expm1(r) if expm1 else mp.exp(r)


def relative_error(q_coeffs, expm1):
    """Largest |(1 + r + r²·q(r))/eʳ − 1| (or the same for expm1) over |r| ≤ ln2/2."""
    grid = [-H + 2 * H * k / 4000 for k in range(4001) if k != 2000]
    lead = 0 if expm1 else 1
    return max(abs((lead + r + r * r * horner(q_coeffs, r)) / result(r, expm1) - 1) for r in grid)


def numbers(block):
    return [float(v.replace("_", "")) for v in re.findall(r"-?[\d_.]+(?:e[-+]\d+)?", block)]


def committed(expm1):
    """The coefficients of q in the source."""
    if expm1:
        src = (ROOT / "src/tensor/vmath.rs").read_text()
        body = src[src.index("impl VFloat for f64"):]
        block = body[body.index("const EXPM1_POLY"):]
        return numbers(block[block.index("&[") + 2:block.index("];")])
    src = (ROOT / "src/tensor/simd.rs").read_text()
    body = src[src.index("fn exp_f64_parts"):]
    block = body[body.index("const C"):]
    values = numbers(block[block.index("= [") + 3:block.index("];")])
    assert values[:2] == [1.0, 1.0], values[:2]
    return values[2:]


def main():
    args = sys.argv[1:]
    expm1 = "--expm1" in args
    args = [a for a in args if a != "--expm1"]
    name = "expm1" if expm1 else "exp"
    if args == ["--check"]:
        q = committed(expm1)
        print(f"committed {name}, q with {len(q)} terms: relative error "
              f"{mp.nstr(relative_error(q, expm1), 3)}")
        return
    nterms = int(args[0]) if args else 10
    q = fit_rounded(
        chebyshev_nodes(-H, H, 300),
        lambda r: (mp.exp(r) - 1 - r) / (r * r),
        lambda r: r * r / abs(result(r, expm1)),
        0,
        nterms,
    )
    report(f"{name}, q with {nterms} terms: relative error {mp.nstr(relative_error(q, expm1), 3)} "
           "(half an ulp: 1.1e-16)", q)


if __name__ == "__main__":
    main()
