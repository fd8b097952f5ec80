#!/usr/bin/env python3
"""Golden Jacobian-vector products of vgrad's ops, computed by PyTorch's forward mode
(`torch.func.jvp`) in float64 and in float32.

Regenerate (only needed when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/jvp_gen.py        # needs torch; writes tests/golden/jvp.json beside it

and commit the script and the JSON together (the output is deterministic; the torch version used
is recorded in the JSON). `tests/jvp.rs` reads the JSON.

Each case names a vgrad op (the names of `tests/golden/ops_gen.py`, plus the losses, batch norm,
linear, layer norm and a whole MLP), its parameters, the inputs (float64 numbers), one tangent per input or
null for an input held fixed, and PyTorch's output value and output tangent twice: under "f64"
computed in float64, under "f32" computed from the same inputs and tangents rounded to float32.
The cases concentrate on the kinks (relu, abs, leaky_relu at 0, clamp at its bounds, max ties),
where the tangent is a choice of subgradient and must be PyTorch's.
"""

import json
import math
import os

import torch
import torch.nn.functional as F
from torch.func import jvp

CASES = []


def num(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def enc(x):
    x = x.detach()
    return {"shape": list(x.shape), "data": [num(v) for v in x.reshape(-1).tolist()]}


def ramp(shape, start, step=0.25):
    """start, start + step, … with alternating sign, shaped `shape`."""
    n = math.prod(shape)
    return torch.tensor([(start + step * i) * (-1) ** i for i in range(n)],
                        dtype=torch.float64).reshape(shape)


def run(fn, xs, tangents, dtype):
    xs = [x.to(dtype) for x in xs]
    wrt = [i for i, t in enumerate(tangents) if t is not None]

    def partial(*ws):
        args = list(xs)
        for k, i in enumerate(wrt):
            args[i] = ws[k]
        return fn(*args)

    y, ty = jvp(partial, tuple(xs[i] for i in wrt), tuple(tangents[i].to(dtype) for i in wrt))
    return {"value": enc(y.to(torch.float64)), "tangent": enc(ty.to(torch.float64))}


def case(name, op, inputs, fn, params=None, tangents=None, f32=True):
    """Records `fn(*inputs)` and its JVP. `tangents`: one per input (None = held fixed); by
    default every input gets a ramp (0.5, −0.75, 1.0, … shifted per input), so that no two
    entries move alike."""
    xs = [torch.tensor(x, dtype=torch.float64) if not torch.is_tensor(x) else x.to(torch.float64)
          for x in inputs]
    if tangents is None:
        tangents = ["ramp"] * len(xs)
    ts = []
    for k, (x, t) in enumerate(zip(xs, tangents)):
        if t is None:
            ts.append(None)
        elif isinstance(t, str) and t == "ramp":
            ts.append(ramp(x.shape, 0.5 + 0.3 * k))
        elif isinstance(t, str) and t == "ones":
            ts.append(torch.ones_like(x))
        else:
            ts.append(torch.tensor(t, dtype=torch.float64).reshape(x.shape))
    rec = {
        "name": name,
        "op": op,
        "params": params or {},
        "inputs": [enc(x) for x in xs],
        "tangents": [enc(t) if t is not None else None for t in ts],
        "f64": run(fn, xs, ts, torch.float64),
    }
    if f32:
        rec["f32"] = run(fn, xs, ts, torch.float32)
    CASES.append(rec)


# --------------------------------------------------------------------------- kinks
# x = 0 exactly (and −0 and tiny neighbours) with a tangent of ones: the recorded tangent is the
# derivative itself, PyTorch's forward-mode choice of subgradient.
KINK = [-2.0, -1e-30, -0.0, 0.0, 1e-30, 2.0]
case("relu_kink", "relu", [KINK], torch.relu, tangents=["ones"])
case("abs_kink", "abs", [KINK], torch.abs, tangents=["ones"])
case("leaky_relu_kink", "leaky_relu", [KINK], lambda x: F.leaky_relu(x, 0.01), {"slope": 0.01},
     tangents=["ones"])
case("elu_kink", "elu", [KINK], lambda x: F.elu(x, 1.3), {"alpha": 1.3}, tangents=["ones"])
case("selu_kink", "selu", [KINK], F.selu, tangents=["ones"])
BOUNDS = [-3.0, -1.0 - 1e-12, -1.0, -0.5, 0.0, 0.75, 1.0, 1.0 + 1e-12, 4.0]
case("clamp_bounds", "clamp", [BOUNDS], lambda x: torch.clamp(x, -1.0, 1.0),
     {"min": -1.0, "max": 1.0}, tangents=["ones"])
case("clamp_min_bound", "clamp_min", [BOUNDS], lambda x: torch.clamp(x, min=0.0), {"min": 0.0},
     tangents=["ones"])
case("clamp_max_bound", "clamp_max", [BOUNDS], lambda x: torch.clamp(x, max=0.75),
     {"max": 0.75}, tangents=["ones"])
case("softplus_threshold", "softplus", [[-3.0, 0.0, 19.9, 20.0, 20.1]],
     lambda x: F.softplus(x, 1.0, 20.0), {"beta": 1.0, "threshold": 20.0}, tangents=["ones"])
case("softplus_beta2", "softplus", [[-3.0, 0.0, 0.9, 1.0, 1.1, 3.0]],
     lambda x: F.softplus(x, 2.0, 2.0), {"beta": 2.0, "threshold": 2.0})

# --------------------------------------------------------------------------- smooth unary maths
SMOOTH = [-2.5, -0.7, 0.0, 0.3, 1.9]
POS = [1e-3, 0.3, 1.0, 2.5, 100.0]
case("exp", "exp", [SMOOTH], torch.exp)
case("ln", "ln", [POS], torch.log)
case("sqrt", "sqrt", [POS], torch.sqrt)
case("erf", "erf", [SMOOTH], torch.erf)
case("square", "square", [SMOOTH], torch.square)
case("powf_1.5", "powf", [POS], lambda x: torch.pow(x, 1.5), {"p": 1.5})
case("powf_-1", "powf", [POS], lambda x: torch.pow(x, -1.0), {"p": -1.0})
case("powf_0", "powf", [[-1.0, 0.0, 2.0]], lambda x: torch.pow(x, 0.0), {"p": 0.0})
case("neg", "neg", [SMOOTH], torch.neg)
case("scale", "scale", [SMOOTH], lambda x: x * -1.7, {"s": -1.7})
case("add_scalar", "add_scalar", [SMOOTH], lambda x: x + 0.3, {"s": 0.3})
case("sigmoid", "sigmoid", [SMOOTH + [-1000.0, 1000.0]], torch.sigmoid)
case("tanh", "tanh", [SMOOTH + [-1000.0, 1000.0]], torch.tanh)
case("relu", "relu", [SMOOTH], torch.relu)
case("leaky_relu", "leaky_relu", [SMOOTH], lambda x: F.leaky_relu(x, 0.2), {"slope": 0.2})
case("elu", "elu", [SMOOTH], lambda x: F.elu(x, 1.0), {"alpha": 1.0})
case("selu", "selu", [SMOOTH], F.selu)
case("silu", "silu", [SMOOTH], F.silu)
case("gelu_exact", "gelu", [SMOOTH], F.gelu, {"approximate": "none"})
case("gelu_tanh", "gelu", [SMOOTH], lambda x: F.gelu(x, approximate="tanh"),
     {"approximate": "tanh"})
case("softplus", "softplus", [SMOOTH], F.softplus, {"beta": 1.0, "threshold": 20.0})

# --------------------------------------------------------------------------- broadcasting arithmetic
A23 = [[0.5, -1.0, 2.0], [1.5, 0.25, -3.0]]
B3 = [1.0, -2.0, 0.5]
for op, fn in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("div", torch.div)):
    case(f"{op}_2x3_3", op, [A23, B3], fn)
    case(f"{op}_2x3_3_wrt_a", op, [A23, B3], fn, tangents=["ramp", None])
    case(f"{op}_2x3_3_wrt_b", op, [A23, B3], fn, tangents=[None, "ramp"])
case("mul_col_row", "mul", [[[1.0], [-2.0]], [[0.5, 3.0, -1.0]]], torch.mul)

# --------------------------------------------------------------------------- matmul and linear
A = ramp([3, 4], 0.3, 0.2)
B = ramp([4, 2], -0.4, 0.15)
for ta in (False, True):
    for tb in (False, True):
        a = A.T.contiguous() if ta else A
        b = B.T.contiguous() if tb else B
        fn = (lambda x, y, ta=ta, tb=tb: (x.mT if ta else x) @ (y.mT if tb else y))
        case(f"matmul_t_{int(ta)}{int(tb)}", "matmul_t", [a, b], fn, {"ta": ta, "tb": tb})
case("matmul_batched_broadcast", "matmul_t", [ramp([2, 3, 4], 0.1, 0.05), B],
     lambda x, y: x @ y, {"ta": False, "tb": False})
case("matmul_wrt_b", "matmul_t", [A, B], lambda x, y: x @ y, {"ta": False, "tb": False},
     tangents=[None, "ramp"])
X = ramp([4, 3], 0.2, 0.1)
W = ramp([5, 3], -0.3, 0.07)
BIAS = ramp([5], 0.1, 0.2)
case("linear_bias", "linear", [X, W, BIAS], F.linear)
case("linear_no_bias", "linear", [X, W], F.linear)
case("linear_wrt_x", "linear", [X, W, BIAS], F.linear, tangents=["ramp", None, None])
case("linear_wrt_w", "linear", [X, W, BIAS], F.linear, tangents=[None, "ramp", None])
case("linear_wrt_b", "linear", [X, W, BIAS], F.linear, tangents=[None, None, "ramp"])
case("linear_batched", "linear", [ramp([2, 4, 3], 0.2, 0.05), W, BIAS], F.linear)

# --------------------------------------------------------------------------- reductions
R = ramp([3, 4], 0.5)
case("sum", "sum", [R], torch.sum)
case("sum_axis0", "sum_axis", [R], lambda x: x.sum(0), {"axis": 0, "keepdim": False})
case("sum_axis1_keep", "sum_axis", [R], lambda x: x.sum(1, keepdim=True),
     {"axis": 1, "keepdim": True})
case("mean", "mean", [R], torch.mean)
case("mean_axis1", "mean_axis", [R], lambda x: x.mean(1), {"axis": 1, "keepdim": False})
# Ties: max() takes the mean of the tied elements' tangents; max(dim) the tangent at its index.
TIES = [[1.0, 3.0, 3.0, -2.0], [3.0, 0.5, 3.0, 0.5], [-1.0, -1.0, -1.0, -1.0]]
case("max_ties", "max", [TIES], torch.max)
case("max_unique", "max", [R], torch.max)
case("max_axis1_ties", "max_axis", [TIES], lambda x: x.max(1).values,
     {"axis": 1, "keepdim": False})
case("max_axis0_ties_keep", "max_axis", [TIES], lambda x: x.max(0, keepdim=True).values,
     {"axis": 0, "keepdim": True})

# --------------------------------------------------------------------------- shape ops
S = ramp([2, 3], 0.5)
case("broadcast_to", "broadcast_to", [[[1.0], [-2.0]]], lambda x: x.expand(2, 3),
     {"shape": [2, 3]})
case("sum_to", "sum_to", [S], lambda x: x.sum(0, keepdim=True), {"shape": [1, 3]})
case("reshape", "reshape", [S], lambda x: x.reshape(3, 2), {"shape": [3, 2]})
case("permute", "permute", [ramp([2, 3, 4], 0.1)], lambda x: x.permute(2, 0, 1),
     {"perm": [2, 0, 1]})
case("transpose", "transpose", [S], lambda x: x.transpose(0, 1), {"a0": 0, "a1": 1})
case("concat", "concat", [S, ramp([1, 3], 2.0)], lambda a, b: torch.cat([a, b], 0), {"axis": 0})
case("concat_one_tangent", "concat", [S, ramp([2, 1], 2.0)], lambda a, b: torch.cat([a, b], 1),
     {"axis": 1}, tangents=[None, "ramp"])
case("narrow", "narrow", [ramp([4, 3], 0.5)], lambda x: x.narrow(0, 1, 2),
     {"axis": 0, "start": 1, "len": 2})
case("gather_rows", "gather_rows", [ramp([4, 2], 0.5)],
     lambda x: x.index_select(0, torch.tensor([2, 0, 2, 3])), {"indices": [2, 0, 2, 3]})
case("scatter_add_rows", "scatter_add_rows", [ramp([4, 2], 0.5)],
     lambda x: torch.zeros(3, 2, dtype=x.dtype).index_add(0, torch.tensor([2, 0, 2, 1]), x),
     {"indices": [2, 0, 2, 1], "rows": 3})

# --------------------------------------------------------------------------- softmax family and losses
Z = ramp([3, 4], 0.4, 0.3)
case("softmax_axis1", "softmax", [Z], lambda x: torch.softmax(x, 1), {"axis": 1})
case("softmax_axis0", "softmax", [Z], lambda x: torch.softmax(x, 0), {"axis": 0})
case("log_softmax_axis1", "log_softmax", [Z], lambda x: torch.log_softmax(x, 1), {"axis": 1})
case("log_softmax_axis0", "log_softmax", [Z], lambda x: torch.log_softmax(x, 0), {"axis": 0})
case("softmax_extreme", "softmax", [[[1000.0, 0.0, -1000.0]]], lambda x: torch.softmax(x, 1),
     {"axis": 1})
case("log_softmax_extreme", "log_softmax", [[[1000.0, 0.0, -1000.0]]],
     lambda x: torch.log_softmax(x, 1), {"axis": 1})
T3 = [1, 0, 3]
for red in ("mean", "sum"):
    case(f"cross_entropy_{red}", "cross_entropy", [Z],
         lambda x, r=red: F.cross_entropy(x, torch.tensor(T3), reduction=r),
         {"targets": T3, "reduction": red})
    case(f"bce_with_logits_{red}", "bce_with_logits",
         [[[0.0, -1.5, 2.0], [0.3, 0.0, -4.0]], [[0.0, 1.0, 0.25], [1.0, 0.5, 0.0]]],
         lambda z, y, r=red: F.binary_cross_entropy_with_logits(z, y, reduction=r),
         {"reduction": red})
case("bce_with_logits_wrt_logits", "bce_with_logits",
     [[[0.0, -1.5, 2.0], [0.3, 0.0, -4.0]], [[0.0, 1.0, 0.25], [1.0, 0.5, 0.0]]],
     lambda z, y: F.binary_cross_entropy_with_logits(z, y), {"reduction": "mean"},
     tangents=["ramp", None])

# --------------------------------------------------------------------------- batch norm (train mode)
XB = ramp([5, 3], 0.3, 0.37)
G = torch.tensor([1.5, -0.7, 0.2], dtype=torch.float64)
BB = torch.tensor([0.1, 0.0, -2.0], dtype=torch.float64)


def bn(x, g, b):
    return F.batch_norm(x, None, None, g, b, training=True, eps=1e-5)


case("batch_norm", "batch_norm", [XB, G, BB], bn, {"eps": 1e-5})
case("batch_norm_wrt_x", "batch_norm", [XB, G, BB], bn, {"eps": 1e-5},
     tangents=["ramp", None, None])
case("batch_norm_wrt_gamma", "batch_norm", [XB, G, BB], bn, {"eps": 1e-5},
     tangents=[None, "ramp", None])

# --------------------------------------------------------------------------- layer norm
# Over the last axis of a [2, 3, 5] input whose rows mix scales and offsets; with γ and β, γ
# only, and neither.
XL = ramp([2, 3, 5], 0.3, 0.41) + torch.tensor([0.0, -5.0, 2.0, 30.0, 0.3], dtype=torch.float64)
GL = torch.tensor([1.5, -0.7, 0.2, 1.0, 2.5], dtype=torch.float64)
BL = torch.tensor([0.1, 0.0, -2.0, 0.5, 1.0], dtype=torch.float64)


def ln(x, g=None, b=None):
    return F.layer_norm(x, (5,), g, b, eps=1e-5)


case("layer_norm", "layer_norm", [XL, GL, BL], ln, {"eps": 1e-5})
case("layer_norm_wrt_x", "layer_norm", [XL, GL, BL], ln, {"eps": 1e-5},
     tangents=["ramp", None, None])
case("layer_norm_wrt_gamma", "layer_norm", [XL, GL, BL], ln, {"eps": 1e-5},
     tangents=[None, "ramp", None])
case("layer_norm_gamma_only", "layer_norm", [XL, GL], ln, {"eps": 1e-5})
case("layer_norm_bare", "layer_norm", [XL], ln, {"eps": 1e-5})

# --------------------------------------------------------------------------- a whole MLP
# 3 → 8 → 8 → 2 with tanh, PyTorch's Linear layout: w.r.t. the input, and w.r.t. the middle
# layer's weight (what a Jacobian over parameters is built from).
torch.manual_seed(0)
MX = torch.randn(4, 3, dtype=torch.float64)
MW = [torch.randn(8, 3, dtype=torch.float64) / 3 ** 0.5, torch.randn(8, dtype=torch.float64) * 0.1,
      torch.randn(8, 8, dtype=torch.float64) / 8 ** 0.5, torch.randn(8, dtype=torch.float64) * 0.1,
      torch.randn(2, 8, dtype=torch.float64) / 8 ** 0.5, torch.randn(2, dtype=torch.float64) * 0.1]


def mlp(x, w1, b1, w2, b2, w3, b3):
    h = torch.tanh(F.linear(x, w1, b1))
    h = torch.tanh(F.linear(h, w2, b2))
    return F.linear(h, w3, b3)


case("mlp_wrt_input", "mlp", [MX] + MW, mlp, tangents=["ramp"] + [None] * 6)
case("mlp_wrt_weight", "mlp", [MX] + MW, mlp,
     tangents=[None, None, None, "ramp", None, None, None])
case("mlp_wrt_all", "mlp", [MX] + MW, mlp)

out = {
    "generator": "tests/golden/jvp_gen.py",
    "torch": torch.__version__,
    "cases": CASES,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jvp.json")
with open(path, "w") as f:
    f.write("{\n")
    f.write(f' "generator": {json.dumps(out["generator"])},\n')
    f.write(f' "torch": {json.dumps(out["torch"])},\n')
    f.write(' "cases": [\n')
    f.write(",\n".join("  " + json.dumps(c) for c in CASES))
    f.write("\n ]\n}\n")
print(f"wrote {len(CASES)} cases to {path}")
