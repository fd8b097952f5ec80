#!/usr/bin/env python3
"""Golden values and gradients of vgrad's softmax family at shifted and extreme logits, computed by
PyTorch in float32 AND float64 (issue 16, item 4: shift invariance).

Regenerate (only needed when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/softmax_gen.py    # needs torch; writes tests/golden/softmax.json beside it

and commit the script and the JSON together (the output is deterministic; the torch version used
is recorded in the JSON). `tests/golden_ops.rs` reads the JSON.

Unlike ops.json (float64 only, f32 checked against it at a loose tolerance), each case here is
computed by PyTorch in the case's own dtype: an f32 case's inputs are f32 numbers and its expected
values are PyTorch's f32 results, so vgrad's f32 must be as shift-invariant as PyTorch's. The
inputs are a few base rows plus a common offset (0, 1e4, 1e7, 1e15, 3e38, −1e7, −3e38), computed
in float64 and rounded once to the dtype. Ops: softmax and log_softmax along an axis, the fused
cross_entropy (mean and sum), and nll_loss after log_softmax (mean and sum). Each case records
the value, the input gradient for a seed, and (float64 cases with finite inputs) a Hessian-vector
product through create_graph. An f32 case also records `value_f64`/`grad_f64`: PyTorch in float64
on the same f32 inputs, the near-exact answer for them. Non-finite numbers are written as "nan", "inf", "-inf".
"""

import json
import math
import os

import torch
import torch.nn.functional as F

CASES = []
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def num(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def enc(x):
    x = x.detach().to(torch.float64)
    return {"shape": list(x.shape), "data": [num(v) for v in x.reshape(-1).tolist()]}


def ramp(shape, start, dtype):
    n = math.prod(shape)
    return torch.tensor([(start + 0.25 * i) * (-1) ** i for i in range(n)],
                        dtype=dtype).reshape(shape)


def apply(op, params, x):
    if op == "softmax":
        return torch.softmax(x, params["axis"])
    if op == "log_softmax":
        return torch.log_softmax(x, params["axis"])
    t = torch.tensor(params["targets"])
    if op == "cross_entropy":
        return F.cross_entropy(x, t, reduction=params["reduction"])
    if op == "nll_log_softmax":
        return F.nll_loss(torch.log_softmax(x, 1), t, reduction=params["reduction"])
    raise ValueError(op)


def case(name, op, rows, params, dtypes=("float32", "float64"), offset=0.0):
    for dn in dtypes:
        dt = DTYPES[dn]
        # The offset is added in float64 and the sum rounded once to the case's dtype.
        x64 = torch.tensor(rows, dtype=torch.float64) + offset
        x = x64.to(dt).requires_grad_(True)
        y = apply(op, params, x)
        seed = torch.full_like(y, 0.7) if y.dim() == 0 else ramp(y.shape, 1.0, dt)
        (g,) = torch.autograd.grad(y, x, seed, create_graph=True)
        rec = {"name": f"{name}_{dn}", "op": op, "params": params, "dtype": dn,
               "input": enc(x), "seed": enc(seed), "value": enc(y), "grad": enc(g)}
        if dn == "float32":
            # The same f32 inputs and seed in float64: the answer vgrad's f32 is held to at a
            # few ulps (PyTorch's own f32 may be further from it; it is checked more loosely).
            x64 = x.detach().to(torch.float64).requires_grad_(True)
            y64 = apply(op, params, x64)
            (g64,) = torch.autograd.grad(y64, x64, seed.to(torch.float64))
            rec["value_f64"] = enc(y64)
            rec["grad_f64"] = enc(g64)
        if dn == "float64" and bool(torch.isfinite(x).all()) and g.requires_grad:
            d = ramp(x.shape, 0.5, dt)
            (h,) = torch.autograd.grad((g * d).sum(), x)
            rec["dir"] = enc(d)
            rec["hvp"] = enc(h)
        CASES.append(rec)


# Base rows: distinct, tied and constant logits, with spreads representable at every offset up to
# 1e7 in f32 (multiples of 1, |x| ≤ 8) and at 1e15 in f64 (multiples of 0.25).
BASE = [[0.5, -1.0, 2.0, 0.25], [3.0, 3.0, -2.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
INTS = [[1.0, -1.0, 2.0, 0.0], [3.0, 3.0, -2.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
TARGETS = [2, 0, 3]
OFFSETS = [("0", 0.0), ("1e4", 1e4), ("1e7", 1e7), ("1e15", 1e15), ("3e38", 3e38),
           ("m1e7", -1e7), ("m3e38", -3e38)]
for tag, off in OFFSETS:
    rows = INTS if abs(off) >= 1e7 else BASE
    for axis in (0, 1):
        case(f"softmax_off{tag}_axis{axis}", "softmax", rows, {"axis": axis}, offset=off)
        case(f"log_softmax_off{tag}_axis{axis}", "log_softmax", rows, {"axis": axis}, offset=off)
    for red in ("mean", "sum"):
        p = {"targets": TARGETS, "reduction": red}
        case(f"cross_entropy_{red}_off{tag}", "cross_entropy", rows, p, offset=off)
        case(f"nll_log_softmax_{red}_off{tag}", "nll_log_softmax", rows, p, offset=off)

# A 3-D input along its middle axis (the strided kernels), shifted.
X3 = [[[0.5, -1.0], [2.0, 0.25], [1.0, 1.0]], [[-3.0, 4.0], [0.0, 0.0], [2.5, -0.5]]]
for tag, off in [("0", 0.0), ("1e4", 1e4), ("m1e7", -1e7)]:
    case(f"softmax_3d_off{tag}_axis1", "softmax", X3, {"axis": 1}, offset=off)
    case(f"log_softmax_3d_off{tag}_axis1", "log_softmax", X3, {"axis": 1}, offset=off)

# The reproducers.
case("log_softmax_1e7_repro", "log_softmax", [[1e7, 1e7, 1e7]], {"axis": 1})
case("nll_log_softmax_3e38_repro", "nll_log_softmax", [[3e38, 3e38]],
     {"targets": [0], "reduction": "mean"})
case("cross_entropy_3e38_repro", "cross_entropy", [[3e38, 3e38]],
     {"targets": [0], "reduction": "mean"})

# −∞ entries (masked logits) beside large finite ones; targets on a finite and on a −∞ entry.
INF, NAN = float("inf"), float("nan")
MASKED = [[-INF, 1e7, 1e7 + 1.0, 1e7 - 3.0], [-INF, -INF, 5.0, 5.0], [2.0, -INF, 0.0, 1.0]]
for axis in (0, 1):
    case(f"softmax_masked_axis{axis}", "softmax", MASKED, {"axis": axis})
    case(f"log_softmax_masked_axis{axis}", "log_softmax", MASKED, {"axis": axis})
for red in ("mean", "sum"):
    p = {"targets": [2, 3, 0], "reduction": red}
    case(f"cross_entropy_masked_{red}", "cross_entropy", MASKED, p)
    case(f"nll_log_softmax_masked_{red}", "nll_log_softmax", MASKED, p)
case("cross_entropy_target_at_minus_inf", "cross_entropy", MASKED,
     {"targets": [0, 1, 1], "reduction": "sum"})

# Mixed huge and tiny magnitudes in one row (differences overflow to −∞ in f32).
MIXED = [[3e38, -3e38, 0.0, 1e-30], [1e30, -1e-30, 1e20, 1e30], [1e-30, -1e-30, 0.0, 1e-38]]
for axis in (0, 1):
    case(f"softmax_mixed_axis{axis}", "softmax", MIXED, {"axis": axis})
    case(f"log_softmax_mixed_axis{axis}", "log_softmax", MIXED, {"axis": axis})
for red in ("mean", "sum"):
    p = {"targets": [1, 2, 3], "reduction": red}
    case(f"cross_entropy_mixed_{red}", "cross_entropy", MIXED, p)
    case(f"nll_log_softmax_mixed_{red}", "nll_log_softmax", MIXED, p)

# Rows PyTorch makes NaN throughout: only −∞, a +∞, a NaN; the last row stays finite.
NONFINITE = [[-INF, -INF, -INF], [INF, 1.0, 2.0], [NAN, 0.0, 1.0], [0.0, 1.0, 2.0]]
case("softmax_nonfinite_rows", "softmax", NONFINITE, {"axis": 1})
case("log_softmax_nonfinite_rows", "log_softmax", NONFINITE, {"axis": 1})
case("cross_entropy_nonfinite_rows", "cross_entropy", NONFINITE,
     {"targets": [0, 1, 2, 2], "reduction": "sum"})


def main():
    header = {"generator": "tests/golden/softmax_gen.py", "torch": torch.__version__}
    dump = lambda v: json.dumps(v, allow_nan=False)
    lines = [f' {dump(k)}: {dump(v)},' for k, v in header.items()]
    lines.append(' "cases": [')
    lines.append(",\n".join("  " + dump(c) for c in CASES))
    lines.append(" ]")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "softmax.json")
    with open(path, "w") as f:
        f.write("{\n" + "\n".join(lines) + "\n}\n")
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main()
