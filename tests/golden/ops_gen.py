#!/usr/bin/env python3
"""Golden values and gradients of vgrad's ops, computed by PyTorch in float64.

Regenerate (only needed when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/ops_gen.py        # needs torch; writes tests/golden/ops.json beside it

and commit the script and the JSON together (the output is deterministic; the torch version used
is recorded in the JSON). `tests/golden_ops.rs` reads the JSON.

Each case names a vgrad op and its parameters, gives the inputs, a seed (the gradient of some
downstream scalar with respect to the op's output, i.e. `y.backward(seed)` in PyTorch and
`y.backward_with(seed)` in vgrad), PyTorch's output value and input gradients, and a second-order
record: directions `dirs` and the gradient of Σₖ dirsₖ ⊙ gradₖ (a Hessian-vector product, through
create_graph). The cases concentrate on what random property tests avoid: kinks, ties, saturating
and extreme inputs, thresholds, exact zeros, NaN and infinities (written as the strings "nan",
"inf", "-inf", since JSON has no such numbers).
"""

import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

CASES = []


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def num(v):
    """JSON has no NaN or infinities: those are written as the strings "nan", "inf", "-inf"."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def enc(x):
    x = x.detach()
    if x._is_zerotensor():  # some double backwards (abs) return storage-less "zero tensors"
        x = torch.zeros(x.shape)
    return {"shape": list(x.shape), "data": [num(v) for v in x.reshape(-1).tolist()]}


def ramp(shape, start):
    """start, start + 0.25, start + 0.5, … with alternating sign, shaped `shape`."""
    n = math.prod(shape)
    return torch.tensor([(start + 0.25 * i) * (-1) ** i for i in range(n)]).reshape(shape)


def case(name, op, inputs, fn, params=None, seed=None, rtol=1e-12, atol=1e-14, f32=True,
         second_order=True):
    """Records `fn(*inputs)` and its gradients for seed `seed` (default: a ramp 1, 1.25, 1.5, …
    with alternating sign, so that no two output elements are weighted alike)."""
    xs = [t(x).requires_grad_(True) if not torch.is_tensor(x) else x.detach().clone().requires_grad_(True)
          for x in inputs]
    y = fn(*xs)
    if seed is None:
        seed = ramp(y.shape, 1.0)
    elif seed == "ones":
        seed = torch.ones_like(y)
    else:
        seed = t(seed).reshape(y.shape)
    gs = torch.autograd.grad(y, xs, seed, create_graph=True, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(x) for g, x in zip(gs, xs)]
    # Second order: the gradient of Σₖ dirₖ ⊙ gradₖ, i.e. the Hessian of seed·y applied to dirs.
    dirs = [ramp(x.shape, 0.5 + 0.3 * k) for k, x in enumerate(xs)]
    terms = [(g * d).sum() for g, d in zip(gs, dirs) if g is not None and g.requires_grad]
    hvp = [None] * len(xs)
    if terms:
        hvp = list(torch.autograd.grad(sum(terms), xs, allow_unused=True))
    hvp = [h if h is not None else torch.zeros_like(x) for h, x in zip(hvp, xs)]
    CASES.append({
        "name": name,
        "op": op,
        "params": params or {},
        "inputs": [enc(x) for x in xs],
        "seed": enc(seed),
        "value": enc(y),
        "grads": [enc(g) for g in grads],
        "dirs": [enc(d) for d in dirs],
        "hvp": [enc(h) for h in hvp] if second_order else None,
        "rtol": rtol,
        "atol": atol,
        "f32": f32,
    })


# --------------------------------------------------------------------------- kinks
# x = 0 exactly (and −0, and tiny neighbours on either side) for the piecewise ops. Seed of ones, so
# the recorded gradient is the derivative itself: relu'(0) = 0, abs'(0) = 0, leaky'(0) = slope,
# elu'(0) = α, selu'(0) = λα.
KINK = [-2.0, -1e-30, -0.0, 0.0, 1e-30, 2.0]  # ±1e-30: tiny yet normal in f32 too
case("relu_kink", "relu", [KINK], torch.relu, seed="ones")
case("abs_kink", "abs", [KINK], torch.abs, seed="ones")
case("leaky_relu_kink", "leaky_relu", [KINK], lambda x: F.leaky_relu(x, 0.01),
     {"slope": 0.01}, seed="ones")
case("elu_kink", "elu", [KINK], lambda x: F.elu(x, 1.0), {"alpha": 1.0}, seed="ones")
case("elu_alpha_kink", "elu", [KINK], lambda x: F.elu(x, 0.5), {"alpha": 0.5}, seed="ones")
case("selu_kink", "selu", [KINK], F.selu, seed="ones")
case("softplus_zero", "softplus", [[-1000.0, -20.0, -1.0, 0.0, 1.0]],
     lambda x: F.softplus(x, 1.0, 20.0), {"beta": 1.0, "threshold": 20.0}, seed="ones")
case("gelu_exact_kink", "gelu", [[-3.0, -1.0, -0.0, 0.0, 0.5, 3.0]], F.gelu,
     {"approximate": "none"}, seed="ones", rtol=1e-10)
case("gelu_tanh_kink", "gelu", [[-3.0, -1.0, -0.0, 0.0, 0.5, 3.0]],
     lambda x: F.gelu(x, approximate="tanh"), {"approximate": "tanh"}, seed="ones", rtol=1e-10)

# clamp: values at and beside both bounds (PyTorch passes no gradient at x = min or x = max),
# one-sided forms, min > max (every element becomes max, no gradient), and NaN / infinities.
BOUNDS = [-3.0, -1.0 - 1e-12, -1.0, -0.5, 0.0, 0.75, 1.0, 1.0 + 1e-12, 4.0]
case("clamp_bounds", "clamp", [BOUNDS], lambda x: torch.clamp(x, -1.0, 1.0),
     {"min": -1.0, "max": 1.0}, seed="ones")
case("clamp_ramp_seed", "clamp", [[-2.0, -0.25, 0.5, 2.0]], lambda x: torch.clamp(x, -0.5, 1.5),
     {"min": -0.5, "max": 1.5})
case("clamp_min", "clamp_min", [BOUNDS], lambda x: torch.clamp(x, min=0.0), {"min": 0.0},
     seed="ones")
case("clamp_max", "clamp_max", [BOUNDS], lambda x: torch.clamp(x, max=0.75), {"max": 0.75},
     seed="ones")
case("clamp_min_above_max", "clamp", [[-2.0, 0.5, 1.5, 3.0]], lambda x: torch.clamp(x, 2.0, 1.0),
     {"min": 2.0, "max": 1.0}, seed="ones")

# Tails of ELU/SELU: the derivative α·eˣ must keep its relative accuracy for very negative x
# (computed as y + α it cancels to 0 once eˣ < ulp(α)). Relative tolerance only.
TAIL = [-100.0, -40.0, -20.0, -16.0, -10.0, -5.0]
case("elu_negative_tail", "elu", [TAIL], lambda x: F.elu(x, 1.0), {"alpha": 1.0},
     seed="ones", rtol=1e-12, atol=0.0)
case("selu_negative_tail", "selu", [TAIL], F.selu, seed="ones", rtol=1e-12, atol=0.0)

# --------------------------------------------------------------------------- saturation
EXTREME = [-1000.0, -100.0, -50.0, -1.0, 0.0, 1.0, 50.0, 100.0, 1000.0]
case("sigmoid_extremes", "sigmoid", [EXTREME], torch.sigmoid, seed="ones", atol=1e-300)
case("tanh_extremes", "tanh", [EXTREME], torch.tanh, seed="ones", atol=1e-300)
case("silu_extremes", "silu", [EXTREME], F.silu, seed="ones", atol=1e-300)
case("gelu_exact_extremes", "gelu", [[-1000.0, -50.0, 50.0, 1000.0]], F.gelu,
     {"approximate": "none"}, seed="ones", atol=1e-300)
case("gelu_tanh_extremes", "gelu", [[-1000.0, -50.0, 50.0, 1000.0]],
     lambda x: F.gelu(x, approximate="tanh"), {"approximate": "tanh"}, seed="ones", atol=1e-300)
case("erf_extremes", "erf", [[-1000.0, -6.0, -0.5, 0.0, 0.5, 6.0, 1000.0]], torch.erf,
     seed="ones", rtol=1e-10, atol=1e-300)

# --------------------------------------------------------------------------- softplus threshold
# βx just below, at and just above the threshold: at βx = 20 PyTorch still takes the log1p
# branch (the test is βx > threshold), above it returns x with gradient exactly 1.
# No second-order record for these: at βx = threshold exactly PyTorch's double backward masks
# with βx < threshold and returns 0, although its first derivative there is σ(βx) from the log1p
# branch; vgrad differentiates its own first derivative and gives β·σ'(βx) (2.06e-9 at x = 20,
# β = 1; 0.197 at x = 1 with threshold 1).
for beta in (1.0, 2.0):
    xs = [v / beta for v in (19.9, 20.0, 20.1)]
    case(f"softplus_threshold_beta{beta:g}", "softplus", [xs],
         lambda x, b=beta: F.softplus(x, b, 20.0), {"beta": beta, "threshold": 20.0}, seed="ones",
         second_order=False)
case("softplus_small_threshold", "softplus", [[-3.0, 0.0, 0.9, 1.0, 1.1, 3.0]],
     lambda x: F.softplus(x, 1.0, 1.0), {"beta": 1.0, "threshold": 1.0}, seed="ones",
     second_order=False)
case("softplus_near_threshold_second_order", "softplus", [[19.9, 20.1, 0.9, 1.1]],
     lambda x: F.softplus(x, 1.0, 20.0), {"beta": 1.0, "threshold": 20.0}, seed="ones")
case("softplus_beta_half", "softplus", [[-3.0, 0.0, 10.0, 39.9, 40.1]],
     lambda x: F.softplus(x, 0.5, 20.0), {"beta": 0.5, "threshold": 20.0}, seed="ones")

# --------------------------------------------------------------------------- smooth unary maths
SMOOTH = [-2.5, -0.7, 0.0, 0.3, 1.9]
POS = [1e-3, 0.3, 1.0, 2.5, 100.0]
case("exp", "exp", [SMOOTH], torch.exp)
# e^700 overflows f32, so this one is checked in f64 only.
case("exp_extremes", "exp", [[-745.0, -700.0, 700.0, 709.0]], torch.exp, atol=1e-320, f32=False)
case("ln", "ln", [POS], torch.log)
case("sqrt", "sqrt", [POS], torch.sqrt)
case("erf", "erf", [SMOOTH], torch.erf, rtol=1e-10)
case("square", "square", [SMOOTH], torch.square)
case("neg", "neg", [SMOOTH], torch.neg)
case("scale", "scale", [SMOOTH], lambda x: x * -1.7, {"s": -1.7})
case("add_scalar", "add_scalar", [SMOOTH], lambda x: x + 0.3, {"s": 0.3})
case("silu", "silu", [SMOOTH], F.silu)
case("gelu_exact", "gelu", [SMOOTH], F.gelu, {"approximate": "none"}, rtol=1e-10)
case("gelu_tanh", "gelu", [SMOOTH], lambda x: F.gelu(x, approximate="tanh"),
     {"approximate": "tanh"}, rtol=1e-10)

# powf: p = 0 at x = 0 gives value 1 and gradient 0 (not 0·0⁻¹ = NaN); p = 2 at 0 gives 0, 0;
# p = 1 at 0 gives gradient 1·0⁰ = 1. Integer powers of negative bases are real.
for p in (0.0, 1.0, 2.0, 3.0):
    case(f"powf_{p:g}_with_zero", "powf", [[-1.5, -0.0, 0.0, 0.5, 2.0]],
         lambda x, p=p: torch.pow(x, p), {"p": p}, seed="ones")
for p in (-2.0, -1.0, -0.5, 0.5, 1.5, 2.5):
    case(f"powf_{p:g}", "powf", [[0.1, 0.5, 1.0, 3.0]], lambda x, p=p: torch.pow(x, p), {"p": p},
         rtol=1e-12)
case("powf_negative_base_integer", "powf", [[-3.0, -0.5, 0.5]],
     lambda x: torch.pow(x, -1.0), {"p": -1.0})

# --------------------------------------------------------------------------- broadcasting arithmetic
A23 = [[0.5, -1.0, 2.0], [1.5, 0.25, -3.0]]
case("add_2x3_3", "add", [A23, [1.0, -2.0, 0.5]], torch.add)
case("sub_2x1_1x3", "sub", [[[0.5], [-1.5]], [[1.0, 2.0, -3.0]]], torch.sub)
case("mul_2x3_1", "mul", [A23, [-2.0]], torch.mul)
case("mul_scalar0d_2x3", "mul", [-1.5, A23], torch.mul)
case("div_2x3_2x1", "div", [A23, [[2.0], [-0.5]]], torch.div, rtol=1e-12)
case("div_3_2x3", "div", [[1.0, -2.0, 4.0], A23], torch.div, rtol=1e-12)
case("add_3x1x2_4x1", "add", [[[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]],
                              [[0.1], [0.2], [0.3], [0.4]]], torch.add)

# --------------------------------------------------------------------------- matmul
g = torch.Generator().manual_seed(7)


def rnd(*shape):
    return torch.randn(*shape, generator=g)


def mm(ta, tb):
    return lambda a, b: (a.mT if ta else a) @ (b.mT if tb else b)


for ta in (False, True):
    for tb in (False, True):
        a = rnd(4, 3) if ta else rnd(3, 4)
        b = rnd(2, 4) if tb else rnd(4, 2)
        case(f"matmul_ta{int(ta)}_tb{int(tb)}", "matmul_t", [a, b], mm(ta, tb),
             {"ta": ta, "tb": tb}, rtol=1e-12, atol=1e-13)
# A stack times a matrix (one GEMM over folded rows), with and without transposes.
for ta, tb in ((False, False), (False, True), (True, False), (True, True)):
    a = rnd(2, 4, 3) if ta else rnd(2, 3, 4)
    b = rnd(5, 4) if tb else rnd(4, 5)
    case(f"matmul_stack_x_matrix_ta{int(ta)}_tb{int(tb)}", "matmul_t", [a, b], mm(ta, tb),
         {"ta": ta, "tb": tb}, rtol=1e-12, atol=1e-13)
# A matrix times a stack, and batch axes that broadcast against each other.
case("matmul_matrix_x_stack", "matmul_t", [rnd(3, 4), rnd(2, 4, 5)], mm(False, False),
     {"ta": False, "tb": False}, rtol=1e-12, atol=1e-13)
case("matmul_batch_broadcast", "matmul_t", [rnd(2, 1, 3, 4), rnd(3, 4, 2)], mm(False, False),
     {"ta": False, "tb": False}, rtol=1e-12, atol=1e-13)
case("matmul_batch_broadcast_t", "matmul_t", [rnd(1, 3, 4, 3), rnd(2, 1, 2, 4)], mm(True, True),
     {"ta": True, "tb": True}, rtol=1e-12, atol=1e-13)

# --------------------------------------------------------------------------- reductions
X234 = rnd(2, 3, 4)
case("sum_all", "sum", [X234], torch.sum, seed=[1.5])
case("mean_all", "mean", [X234], torch.mean, seed=[-2.0])
for axis in range(3):
    for keepdim in (False, True):
        case(f"sum_axis{axis}_keep{int(keepdim)}", "sum_axis", [X234],
             lambda x, a=axis, k=keepdim: x.sum(a, keepdim=k), {"axis": axis, "keepdim": keepdim})
        case(f"mean_axis{axis}_keep{int(keepdim)}", "mean_axis", [X234],
             lambda x, a=axis, k=keepdim: x.mean(a, keepdim=k), {"axis": axis, "keepdim": keepdim})

# max: the full reduction splits the gradient evenly among ties; max along an axis gives all of
# it to the index torch returns (the first maximum).
TIES = [[1.0, 3.0, 3.0, -1.0], [3.0, 2.0, 2.0, 0.0], [-5.0, -5.0, -5.0, -5.0]]
case("max_all_ties", "max", [TIES], torch.max, seed=[2.0])
case("max_all_unique", "max", [[[0.5, 7.0], [-2.0, 6.5]]], torch.max, seed=[1.0])
for axis in (0, 1):
    for keepdim in (False, True):
        case(f"max_axis{axis}_keep{int(keepdim)}_ties", "max_axis", [TIES],
             lambda x, a=axis, k=keepdim: torch.max(x, a, keepdim=k)[0],
             {"axis": axis, "keepdim": keepdim})

# --------------------------------------------------------------------------- softmax
LOGITS = [[1000.0, 0.0, -1000.0], [2.0, 2.0, 2.0], [1.0, 3.0, 3.0], [-1000.0, -1000.0, 5.0]]
for axis in (0, 1):
    case(f"softmax_axis{axis}", "softmax", [LOGITS], lambda x, a=axis: torch.softmax(x, a),
         {"axis": axis}, rtol=1e-12, atol=1e-15)
    case(f"log_softmax_axis{axis}", "log_softmax", [LOGITS],
         lambda x, a=axis: torch.log_softmax(x, a), {"axis": axis}, rtol=1e-12, atol=1e-12)
case("softmax_3d_axis1", "softmax", [rnd(2, 3, 2)], lambda x: torch.softmax(x, 1), {"axis": 1},
     rtol=1e-12, atol=1e-15)
case("log_softmax_3d_axis2", "log_softmax", [rnd(2, 2, 3)], lambda x: torch.log_softmax(x, 2),
     {"axis": 2}, rtol=1e-12, atol=1e-14)

# --------------------------------------------------------------------------- non-finite inputs
# ±∞ everywhere, NaN where PyTorch's convention is vgrad's too, 0 where the derivative is
# infinite. Known differences, left out here (NaN inputs only): PyTorch's relu'(NaN) = 1 and
# elu'(NaN) = 1, selu'(NaN) = λ (its backward tests `x <= 0` or the output, and NaN fails the
# test); vgrad gives relu'(NaN) = 0 and NaN for elu/selu.
NAN, INF = float("nan"), float("inf")
NONFINITE = [
    ("relu", torch.relu, {}, [-INF, INF]),
    ("abs", torch.abs, {}, [NAN, -INF, INF]),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.01), {"slope": 0.01}, [NAN, -INF, INF]),
    ("elu", lambda x: F.elu(x, 0.5), {"alpha": 0.5}, [-INF, INF]),
    ("selu", F.selu, {}, [-INF, INF]),
    ("sigmoid", torch.sigmoid, {}, [NAN, -INF, INF]),
    ("tanh", torch.tanh, {}, [NAN, -INF, INF]),
    ("softplus", lambda x: F.softplus(x, 1.0, 20.0), {"beta": 1.0, "threshold": 20.0},
     [NAN, -INF, INF]),
    ("silu", F.silu, {}, [NAN, -INF, INF]),
    ("exp", torch.exp, {}, [NAN, -INF, INF]),
    ("ln", torch.log, {}, [NAN, -INF, INF, 0.0, -1.0]),
    ("sqrt", torch.sqrt, {}, [NAN, -INF, INF, 0.0, -1.0]),
    ("erf", torch.erf, {}, [NAN, -INF, INF]),
    ("clamp", lambda x: torch.clamp(x, -1.0, 1.0), {"min": -1.0, "max": 1.0}, [NAN, -INF, INF]),
    ("clamp_min", lambda x: torch.clamp(x, min=0.0), {"min": 0.0}, [NAN, -INF, INF]),
    ("clamp_max", lambda x: torch.clamp(x, max=0.0), {"max": 0.0}, [NAN, -INF, INF]),
]
for op, fn, params, xs in NONFINITE:
    case(f"{op}_nonfinite", op, [xs], fn, params, seed="ones")
for approx in ("none", "tanh"):
    case(f"gelu_{approx}_nonfinite", "gelu", [[NAN, -INF, INF]],
         lambda x, a=approx: F.gelu(x, approximate=a), {"approximate": approx}, seed="ones")
# PyTorch evaluates pow(x, 0.5) as sqrt(x), so pow(−∞, 0.5) = NaN (C's pow, vgrad's: +∞) and
# its gradient at −0 is 0.5/sqrt(−0) = −∞ (vgrad: 0.5·pow(−0, −0.5) = +∞); those two inputs are
# left out of the p = 0.5 case.
for p in (0.0, 0.5, 2.0, -1.0):
    xs = [NAN, INF, 0.0] if p == 0.5 else [NAN, -INF, INF, 0.0, -0.0]
    case(f"powf_{p:g}_nonfinite", "powf", [xs], lambda x, p=p: torch.pow(x, p), {"p": p},
         seed="ones")
# max: NaN propagates, and the gradient goes to the NaN (split among NaNs for the full
# reduction, to the first NaN along an axis).
case("max_all_nan", "max", [[[1.0, NAN, 3.0], [NAN, 2.0, 0.0]]], torch.max, seed=[1.0])
case("max_axis_nan", "max_axis", [[[1.0, NAN, 3.0], [NAN, 2.0, NAN], [0.0, 2.0, -1.0]]],
     lambda x: torch.max(x, 1)[0], {"axis": 1, "keepdim": False})
case("max_all_inf", "max", [[-INF, INF, 1.0, INF]], torch.max, seed=[1.0])
# −∞ logits get probability 0 and gradient 0; a row of only −∞ is NaN in both libraries.
MASKED = [[-INF, 0.0, 1.0], [-INF, -INF, 2.0], [-INF, -INF, -INF]]
case("softmax_masked", "softmax", [MASKED], lambda x: torch.softmax(x, 1), {"axis": 1},
     rtol=1e-12, atol=1e-15)
case("log_softmax_masked", "log_softmax", [MASKED], lambda x: torch.log_softmax(x, 1),
     {"axis": 1}, rtol=1e-12, atol=1e-15)
# A NaN logit makes its whole row NaN; other rows are unaffected.
NAN_ROW = [[1.0, NAN, 2.0], [0.5, -0.5, 3.0]]
case("softmax_nan_row", "softmax", [NAN_ROW], lambda x: torch.softmax(x, 1), {"axis": 1},
     rtol=1e-12, atol=1e-15)
case("log_softmax_nan_row", "log_softmax", [NAN_ROW], lambda x: torch.log_softmax(x, 1),
     {"axis": 1}, rtol=1e-12, atol=1e-15)

# --------------------------------------------------------------------------- shape ops
case("broadcast_to", "broadcast_to", [[[1.0], [2.0]]], lambda x: x.broadcast_to(3, 2, 4),
     {"shape": [3, 2, 4]})
case("sum_to", "sum_to", [rnd(3, 2, 4)], lambda x: x.sum_to_size(2, 1), {"shape": [2, 1]})
case("reshape", "reshape", [X234], lambda x: x.reshape(4, 6), {"shape": [4, 6]})
case("permute", "permute", [X234], lambda x: x.permute(2, 0, 1), {"perm": [2, 0, 1]})
case("transpose", "transpose", [X234], lambda x: x.transpose(0, 2), {"a0": 0, "a1": 2})
case("concat_axis0", "concat", [rnd(1, 3), rnd(2, 3)], lambda a, b: torch.cat([a, b], 0),
     {"axis": 0})
case("concat_axis1_three", "concat", [rnd(2, 1, 2), rnd(2, 3, 2), rnd(2, 2, 2)],
     lambda a, b, c: torch.cat([a, b, c], 1), {"axis": 1})
case("narrow_middle", "narrow", [X234], lambda x: x.narrow(2, 1, 2),
     {"axis": 2, "start": 1, "len": 2})
case("narrow_head", "narrow", [X234], lambda x: x.narrow(1, 0, 1),
     {"axis": 1, "start": 0, "len": 1})
case("narrow_tail", "narrow", [X234], lambda x: x.narrow(0, 1, 1),
     {"axis": 0, "start": 1, "len": 1})
IDX = [2, 0, 2, 2, 1]
case("gather_rows_repeats", "gather_rows", [rnd(4, 3)],
     lambda x: x.index_select(0, torch.tensor(IDX)), {"indices": IDX})
case("scatter_add_rows_repeats", "scatter_add_rows", [rnd(5, 2)],
     lambda x: torch.zeros(4, 2).index_add(0, torch.tensor(IDX), x), {"indices": IDX, "rows": 4})


def main():
    header = {"generator": "tests/golden/ops_gen.py", "torch": torch.__version__,
              "dtype": "float64"}
    # allow_nan=False: JSON has no NaN/Infinity; `num` has turned those into strings already.
    dump = lambda v: json.dumps(v, allow_nan=False)
    # One case per line, so that a regenerated fixture diffs case by case.
    lines = [f' {dump(k)}: {dump(v)},' for k, v in header.items()]
    lines.append(' "cases": [')
    lines.append(",\n".join("  " + dump(c) for c in CASES))
    lines.append(" ]")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops.json")
    with open(path, "w") as f:
        f.write("{\n" + "\n".join(lines) + "\n}\n")
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main()
