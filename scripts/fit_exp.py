"""The polynomial of f64 `exp` (src/tensor/simd.rs, `exp_f64_parts`).

With x = n·ln2 + r, |r| ≤ ln2/2, eʳ = 1 + r + r²·q(r): q is fitted to (eʳ − 1 − r)/r² weighted by
r²/eʳ (an error δ in q is an error r²δ/eʳ relative to eʳ), by Lawson's algorithm
(scripts/minimax.py). Prints the largest relative error of the rounded polynomial and the
coefficients of q (constant first).

    python3 scripts/fit_exp.py [TERMS]   # terms of q, default 10; needs mpmath
    python3 scripts/fit_exp.py --check   # the committed coefficients' relative error

Measured (2026-12-06): q with 10 terms (eʳ to degree 11) 1.1e-17 after rounding the
coefficients to f64, a tenth of an ulp; the degree-13 Taylor polynomial it replaced had 5e-18
and two multiply-adds more.
"""
import re
import sys
from pathlib import Path

import mpmath as mp

from minimax import chebyshev_nodes, horner, lawson

H = mp.log(2) / 2


def relative_error(q_coeffs):
    """Largest |(1 + r + r²·q(r))/eʳ − 1| on a fine grid over |r| ≤ ln2/2."""
    grid = [-H + 2 * H * k / 4000 for k in range(4001)]
    return max(abs((1 + r + r * r * horner(q_coeffs, r)) / mp.exp(r) - 1) for r in grid)


def committed():
    """C[2..] of `exp_f64_parts`, read from simd.rs."""
    src = (Path(__file__).parent.parent / "src/tensor/simd.rs").read_text()
    body = src[src.index("fn exp_f64_parts"):]
    block = body[body.index("const C"):]
    block = block[block.index("= [") + 3:block.index("];")]
    values = [float(v.replace("_", "")) for v in re.findall(r"-?[\d_.]+(?:e[-+]\d+)?", block)]
    assert values[:2] == [1.0, 1.0], values[:2]
    return values[2:]


def main():
    if sys.argv[1:] == ["--check"]:
        q = committed()
        print(f"committed, eʳ to degree {len(q) + 1}: relative error {mp.nstr(relative_error(q), 3)}")
        return
    nterms = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    _, q = lawson(
        chebyshev_nodes(-H, H, 300),
        lambda r: (mp.exp(r) - 1 - r) / (r * r),
        lambda r: r * r / mp.exp(r),
        0,
        nterms,
    )
    q = [float(c) for c in q]
    print(f"q with {nterms} terms: relative error {mp.nstr(relative_error(q), 3)} (half an ulp: 1.1e-16)")
    for c in q:
        print(repr(c))


if __name__ == "__main__":
    main()
