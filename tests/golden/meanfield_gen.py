#!/usr/bin/env python3
"""Golden mean-field predictions (issue 21, item 4) for `tests/meanfield.rs`, computed with
PyTorch's own activations and an integration method independent of vgrad's.

Regenerate (only needed when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/meanfield_gen.py    # needs torch; writes tests/golden/meanfield.json

and commit the script and the JSON together (deterministic; the torch version is recorded).

vgrad integrates with Gauss-Hermite quadrature (Golub-Welsch) and finds fixed points by
bracketing and bisection. Here, to check it by other means:
* Gaussian expectations are the trapezoid rule on a fine uniform grid (spectrally accurate for
  smooth integrands against exp(-z^2/2)); two-dimensional ones on a product grid.
* phi and phi' are PyTorch's functions (torch.tanh, F.gelu, F.silu, F.softplus, F.elu, torch.sigmoid)
  and their autograd derivatives, in float64.
* q* is the limit of iterating the variance map from q = 1 (no root finding); chi_q = V'(q*) is
  a central difference of the map (not Stein's lemma); c* is the limit of iterating the
  correlation map from c = 0.5.
* The critical sigma_w is found by bisection on sigma_w of chi1 - 1, each q* by iteration.

Every case is kept away from the critical line so that the iterations converge geometrically.
"""

import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
# One thread: small tensors, and the machine it ran on was shared.
torch.set_num_threads(1)

ACTS = {
    "tanh": lambda x: torch.tanh(x),
    "sigmoid": lambda x: torch.sigmoid(x),
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": lambda x: F.silu(x),
    "softplus": lambda x: F.softplus(x),
    "elu": lambda x: F.elu(x),
    "selu": lambda x: F.selu(x),
}

# 1-D grid: z in [-30, 30], step 1/128, symmetric with no node at 0 (midpoints): a node at 0
# would weigh SELU's derivative jump (PyTorch takes the left value there) as a full cell.
H1 = 1.0 / 128
Z1 = (torch.arange(-30 * 128, 30 * 128) + 0.5) * H1
W1 = torch.exp(-0.5 * Z1**2) / math.sqrt(2 * math.pi) * H1
# 2-D grid: z in [-9, 9]^2, step 1/24 (exp(-40) is far below the tolerances).
H2 = 1.0 / 24
Z2 = torch.arange(-9 * 24, 9 * 24 + 1) * H2
W2 = torch.exp(-0.5 * Z2**2) / math.sqrt(2 * math.pi) * H2


def phi_dphi(act, x):
    x = x.clone().requires_grad_(True)
    y = ACTS[act](x)
    (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g


def expect1(act, q, which):
    y, d = phi_dphi(act, math.sqrt(q) * Z1)
    v = y if which == 0 else d
    return float((W1 * v * v).sum())


def V(act, sw, sb, q):
    return sw * sw * expect1(act, q, 0) + sb * sb


def q_star(act, sw, sb):
    q = 1.0
    for _ in range(100000):
        nq = V(act, sw, sb, q)
        if abs(nq - q) <= 1e-15 * max(q, 1e-300):
            return nq
        q = nq
    raise RuntimeError(f"q map did not converge for {act} {sw} {sb}")


def expect2(act, q, c, which):
    s = math.sqrt(q)
    z1 = Z2[:, None]
    z2 = Z2[None, :]
    u1 = s * z1.expand(len(Z2), len(Z2))
    u2 = s * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
    a = phi_dphi(act, u1)[which]
    b = phi_dphi(act, u2)[which]
    w = W2[:, None] * W2[None, :]
    return float((w * a * b).sum())


def c_star(act, sw, sb, q):
    c = 0.5
    for _ in range(2000):
        nc = (sw * sw * expect2(act, q, c, 0) + sb * sb) / q
        if abs(nc - c) <= 1e-13:
            return nc
        c = nc
    raise RuntimeError(f"c map did not converge for {act} {sw} {sb}")


def predict(act, sw, sb):
    q = q_star(act, sw, sb)
    chi1 = sw * sw * expect1(act, q, 1)
    h = 1e-5 * q
    chi_q = (V(act, sw, sb, q + h) - V(act, sw, sb, q - h)) / (2 * h)
    out = {"q_star": q, "chi1": chi1, "chi_q": chi_q}
    if chi1 > 1.0:
        c = c_star(act, sw, sb, q)
        out["c_star"] = c
        out["chi_c"] = sw * sw * expect2(act, q, c, 1)
    else:
        out["c_star"] = 1.0
        out["chi_c"] = chi1
    return out


def critical(act, sb):
    def chi1(sw):
        q = q_star(act, sw, sb)
        return sw * sw * expect1(act, q, 1)

    lo, hi = 0.5, 1.0
    while chi1(hi) <= 1.0:
        lo, hi = hi, hi * 2
    while chi1(lo) > 1.0:
        lo /= 2
    for _ in range(45):
        mid = 0.5 * (lo + hi)
        if chi1(mid) > 1.0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


POINTS = [
    ("tanh", 0.8, 0.3),
    ("tanh", 1.3, 0.05),
    ("tanh", 2.5, 0.3),
    ("tanh", 4.0, 1.0),
    ("sigmoid", 2.0, 0.5),
    ("gelu", 1.2, 0.2),
    ("gelu_tanh", 1.2, 0.2),
    ("silu", 1.5, 0.3),
    ("softplus", 0.9, 0.1),
    ("elu", 1.1, 0.2),
    ("selu", 0.7, 0.1),
]
CRITICAL = [("tanh", 0.05), ("tanh", 0.3), ("tanh", 1.0)]


def main():
    cases = []
    for act, sw, sb in POINTS:
        p = predict(act, sw, sb)
        cases.append({"act": act, "sigma_w": sw, "sigma_b": sb, **p})
        print(cases[-1])
    crit = []
    for act, sb in CRITICAL:
        crit.append({"act": act, "sigma_b": sb, "sigma_w": critical(act, sb)})
        print(crit[-1])
    header = {"generator": "tests/golden/meanfield_gen.py", "torch": torch.__version__}
    dump = lambda v: json.dumps(v, allow_nan=False)
    lines = [f" {dump(k)}: {dump(v)}," for k, v in header.items()]
    lines.append(' "points": [')
    lines.append(",\n".join("  " + dump(c) for c in cases))
    lines.append(" ],")
    lines.append(' "critical": [')
    lines.append(",\n".join("  " + dump(c) for c in crit))
    lines.append(" ]")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "meanfield.json")
    with open(path, "w") as f:
        f.write("{\n" + "\n".join(lines) + "\n}\n")
    print(f"wrote {len(cases)} points and {len(crit)} critical values to {path}")


if __name__ == "__main__":
    main()
