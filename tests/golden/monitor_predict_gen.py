#!/usr/bin/env python3
"""Golden figures for `tests/monitor_predict.rs` (issue 21, item 5: the monitor's prediction at
initialisation), from PyTorch, by means independent of vgrad's.

Regenerate (only when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/monitor_predict_gen.py   # needs torch; writes tests/golden/monitor_predict.json

and commit the script and the JSON together (deterministic; the torch version is recorded).

For each case (activation, sigma_w; depth 50, width 128, a 128 -> 10 output layer, no biases,
weights N(0, sigma_w^2/128), inputs and MSE targets N(0, 1), batch 64) it writes:
* `grad_ratio`: the mean-field product of sqrt(chi1) over the depth, the predicted ratio of
  ||dL/dh|| at the first Linear layer's output to the last's, at the nominal sigma_w, with q
  iterated from q1 = sigma_w^2 (unit-variance inputs). Gaussian expectations by the midpoint rule
  on z in [-30, 30], step 1/128, with PyTorch's activation and its autograd derivative (vgrad
  uses its own activations and a different grid).
* `slope_w`, `slope_h`: measured in PyTorch (float32) over `SEEDS` networks: the mean and the
  standard deviation of the least-squares slope of log10 ||dL/dW|| and of log10 ||dL/dh|| (the
  gradient at each Linear layer's output) against the layer's index, in decades per layer.
"""

import json
import math
import os

import torch

torch.set_num_threads(1)

DEPTH, WIDTH, OUT, BATCH, SEEDS = 50, 128, 10, 64, 5
ACTS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
CASES = [("tanh", 0.8), ("tanh", 1.0), ("tanh", 1.5), ("sigmoid", 1.0), ("relu", math.sqrt(2))]

H = 1.0 / 128
Z = ((torch.arange(-30 * 128, 30 * 128) + 0.5) * H).double()
W = torch.exp(-0.5 * Z**2) / math.sqrt(2 * math.pi) * H


def moments(act, q):
    """E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2]."""
    x = (math.sqrt(q) * Z).clone().requires_grad_(True)
    y = ACTS[act](x)
    (d,) = torch.autograd.grad(y.sum(), x)
    return float((W * y.detach() ** 2).sum()), float((W * d**2).sum())


def grad_ratio(act, sw):
    q = sw * sw  # first layer: unit-variance inputs
    log_ratio = 0.0
    for _ in range(DEPTH - 1):
        m2, d2 = moments(act, q)
        log_ratio += 0.5 * math.log(sw * sw * d2)
        q = sw * sw * m2
    return math.exp(log_ratio)


def slope(y):
    x = torch.arange(len(y), dtype=torch.float64)
    y = torch.tensor(y, dtype=torch.float64)
    xm, ym = x.mean(), y.mean()
    return float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())


def measured(act, sw):
    sw_, sh_ = [], []
    for seed in range(SEEDS):
        g = torch.Generator().manual_seed(seed)
        layers = []
        for i in range(DEPTH):
            out = OUT if i + 1 == DEPTH else WIDTH
            layers.append(torch.randn(out, WIDTH, generator=g) * (sw / math.sqrt(WIDTH)))
        ws = [w.requires_grad_(True) for w in layers]
        x = torch.randn(BATCH, WIDTH, generator=g)
        t = torch.randn(BATCH, OUT, generator=g)
        h, outs = x, []
        for i, w in enumerate(ws):
            z = h @ w.T
            z.retain_grad()
            outs.append(z)
            h = ACTS[act](z) if i + 1 < DEPTH else z
        torch.nn.functional.mse_loss(h, t).backward()
        sw_.append(slope([math.log10(w.grad.double().norm()) for w in ws]))
        sh_.append(slope([math.log10(z.grad.double().norm()) for z in outs]))

    def stats(v):
        v = torch.tensor(v, dtype=torch.float64)
        return {"mean": float(v.mean()), "std": float(v.std())}

    return stats(sw_), stats(sh_)


cases = []
for act, sw in CASES:
    slope_w, slope_h = measured(act, sw)
    cases.append(
        {
            "activation": act,
            "sigma_w": sw,
            "grad_ratio": grad_ratio(act, sw),
            "slope_w": slope_w,
            "slope_h": slope_h,
        }
    )
    print(cases[-1])

out = {
    "generator": "tests/golden/monitor_predict_gen.py",
    "torch": torch.__version__,
    "depth": DEPTH,
    "width": WIDTH,
    "out": OUT,
    "batch": BATCH,
    "seeds": SEEDS,
    "cases": cases,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitor_predict.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
