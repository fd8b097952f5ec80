#!/usr/bin/env python3
"""Generates tests/golden/layers.json: PyTorch reference values for vgrad's nn layers, losses and
initialisers, read by tests/golden_layers.rs (which never needs Python).

Run from the repository root:  python3 tests/golden/layers_gen.py

Everything is computed in float64. Each layer case records the inputs, the parameters, an
upstream gradient `seed` (the backward pass is `y.backward(seed)`, i.e. the gradient of
sum(y * seed)), the output and the gradients of the input and of every parameter, so the Rust
side loads the same numbers and compares both directions. Tensors are {"shape": [...],
"data": [...]}, data row-major; Python's json writes floats with repr, which round-trips.
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
DT = torch.float64


def t(x):
    x = x.detach().to(DT)
    return {"shape": list(x.shape), "data": x.reshape(-1).tolist()}


def randn(*shape):
    return torch.randn(*shape, dtype=DT)


# --- Linear ---------------------------------------------------------------------------------

def linear_case():
    lin = nn.Linear(3, 5).to(DT)
    x = randn(4, 3).requires_grad_()
    seed = randn(4, 5)
    y = lin(x)
    y.backward(seed)
    return {
        "x": t(x), "weight": t(lin.weight), "bias": t(lin.bias), "seed": t(seed), "y": t(y),
        "grad": {"x": t(x.grad), "weight": t(lin.weight.grad), "bias": t(lin.bias.grad)},
    }


# --- Activations ----------------------------------------------------------------------------

# Kinks (0), tiny values either side, the softplus thresholds, and extremes that must stay
# finite (sigmoid and tanh at ±1000).
ACT_X = [-1000.0, -30.0, -5.0, -1.5, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 1.5, 2.4, 2.6,
         5.0, 19.9, 20.1, 30.0, 1000.0]

ACTIVATIONS = [
    # (vgrad variant, its arguments, the torch module)
    ("Identity", [], nn.Identity()),
    ("Sigmoid", [], nn.Sigmoid()),
    ("Tanh", [], nn.Tanh()),
    ("Relu", [], nn.ReLU()),
    ("LeakyRelu", [0.01], nn.LeakyReLU()),
    ("LeakyRelu", [0.2], nn.LeakyReLU(0.2)),
    ("Elu", [1.0], nn.ELU()),
    ("Elu", [0.5], nn.ELU(0.5)),
    ("Selu", [], nn.SELU()),
    ("GeluNone", [], nn.GELU()),
    ("GeluTanh", [], nn.GELU(approximate="tanh")),
    ("Softplus", [1.0, 20.0], nn.Softplus()),
    ("Softplus", [2.0, 5.0], nn.Softplus(beta=2.0, threshold=5.0)),
    ("Silu", [], nn.SiLU()),
]


def activation_cases():
    out = []
    seed = randn(len(ACT_X))
    for kind, args, mod in ACTIVATIONS:
        x = torch.tensor(ACT_X, dtype=DT, requires_grad=True)
        y = mod(x)
        y.backward(seed)
        out.append({"kind": kind, "args": args, "repr": repr(mod), "x": t(x), "seed": t(seed),
                    "y": t(y), "dx": t(x.grad)})
    return out


# --- BatchNorm1d ----------------------------------------------------------------------------

def bn_step(bn, x, seed):
    x = x.clone().requires_grad_()
    bn.zero_grad()
    y = bn(x)
    y.backward(seed)
    step = {"x": t(x), "seed": t(seed), "y": t(y), "dx": t(x.grad)}
    if bn.affine:
        step["dweight"] = t(bn.weight.grad)
        step["dbias"] = t(bn.bias.grad)
    return step


def batchnorm_case(c, eps, momentum, affine, track, n=6):
    bn = nn.BatchNorm1d(c, eps=eps, momentum=momentum, affine=affine,
                        track_running_stats=track).to(DT)
    case = {"num_features": c, "eps": eps, "momentum": momentum, "affine": affine,
            "track_running_stats": track, "repr": repr(bn)}
    if affine:
        with torch.no_grad():
            bn.weight.copy_(1.0 + 0.5 * randn(c))
            bn.bias.copy_(0.3 * randn(c))
        case["weight"] = t(bn.weight)
        case["bias"] = t(bn.bias)
    # Columns on very different scales and offsets, so normalisation does real work.
    scales = torch.tensor([1.0, 10.0, 0.1, 3.0, 0.5][:c], dtype=DT)
    offsets = torch.tensor([0.0, -5.0, 2.0, 100.0, 0.3][:c], dtype=DT)
    bn.train()
    train = []
    for _ in range(2):
        train.append(bn_step(bn, randn(n, c) * scales + offsets, randn(n, c)))
    case["train"] = train
    if track:
        case["running_mean"] = t(bn.running_mean)
        case["running_var"] = t(bn.running_var)
        case["num_batches_tracked"] = int(bn.num_batches_tracked)
    bn.eval()
    case["eval"] = bn_step(bn, randn(n - 1, c) * scales + offsets, randn(n - 1, c))
    return case


# --- Residual block (the benchmark's: x + l2(bn(relu(l1(x))))) -----------------------------

class Block(nn.Module):
    def __init__(self, d, h, out=None, scale=1.0):
        super().__init__()
        self.scale = scale
        self.branch = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.BatchNorm1d(h),
                                    nn.Linear(h, out or d))
        self.proj = nn.Linear(d, out, bias=False) if out else None

    def forward(self, x):
        skip = self.proj(x) if self.proj is not None else x
        return skip + self.scale * self.branch(x)


def residual_case(d, h, out, scale, n=8):
    blk = Block(d, h, out, scale).to(DT)
    with torch.no_grad():
        bn = blk.branch[2]
        bn.weight.copy_(1.0 + 0.5 * randn(h))
        bn.bias.copy_(0.3 * randn(h))
    blk.train()
    x = randn(n, d).requires_grad_()
    seed = randn(n, out or d)
    y = blk(x)
    y.backward(seed)
    return {
        "d": d, "h": h, "out": out, "branch_scale": scale,
        # JSON objects are unordered (serde_json sorts keys), so the order is recorded too.
        "param_names": [k for k, _ in blk.named_parameters()],
        "state_dict_names": list(blk.state_dict().keys()),
        "params": {k: t(v) for k, v in blk.named_parameters()},
        "x": t(x), "seed": t(seed), "y": t(y), "dx": t(x.grad),
        "grads": {k: t(v.grad) for k, v in blk.named_parameters()},
        "buffers": {k: t(v) for k, v in blk.named_buffers()},
    }


# --- Losses ---------------------------------------------------------------------------------

def ce_cases():
    extreme = torch.tensor([[1000.0, 0.0, -1000.0],
                            [0.0, 1000.0, -1000.0],
                            [-1000.0, -1000.0, 1000.0],
                            [1000.0, 1000.0, -1000.0]], dtype=DT)
    cases = [("extreme", extreme, [2, 1, 0, 0]), ("random", 2.0 * randn(5, 7), [0, 6, 3, 3, 1])]
    out = []
    for name, z0, targets in cases:
        for red in ["mean", "sum"]:
            z = z0.clone().requires_grad_()
            loss = F.cross_entropy(z, torch.tensor(targets), reduction=red)
            loss.backward()
            out.append({"name": name, "reduction": red, "logits": t(z), "targets": targets,
                        "loss": loss.item(), "grad": t(z.grad)})
    return out


def nll_cases():
    lp0 = F.log_softmax(randn(4, 5), dim=1)
    targets = [4, 0, 2, 2]
    out = []
    for red in ["mean", "sum"]:
        lp = lp0.clone().requires_grad_()
        loss = F.nll_loss(lp, torch.tensor(targets), reduction=red)
        loss.backward()
        out.append({"reduction": red, "log_probs": t(lp), "targets": targets,
                    "loss": loss.item(), "grad": t(lp.grad)})
    return out


def mse_cases():
    p0, y0 = randn(3, 4), randn(3, 4)
    out = []
    for red in ["mean", "sum"]:
        p, y = p0.clone().requires_grad_(), y0.clone().requires_grad_()
        loss = F.mse_loss(p, y, reduction=red)
        loss.backward()
        out.append({"reduction": red, "pred": t(p), "target": t(y), "loss": loss.item(),
                    "dpred": t(p.grad), "dtarget": t(y.grad)})
    return out


def bce_cases():
    z0 = torch.tensor([[0.0, 1000.0, -1000.0, 30.0],
                       [-30.0, 1e-3, -1e-3, 2.5],
                       [-0.7, 0.0, 4.0, -3.0]], dtype=DT)
    # Hard labels, soft labels, and a hard label the logit gets badly wrong (y = 0 at z = 1000
    # costs 1000).
    y0 = torch.tensor([[1.0, 0.0, 0.0, 1.0],
                       [0.3, 0.5, 1.0, 0.9],
                       [0.0, 0.0, 1.0, 0.2]], dtype=DT)
    out = []
    for red in ["mean", "sum"]:
        z, y = z0.clone().requires_grad_(), y0.clone().requires_grad_()
        loss = F.binary_cross_entropy_with_logits(z, y, reduction=red)
        loss.backward()
        out.append({"reduction": red, "logits": t(z), "targets": t(y), "loss": loss.item(),
                    "dlogits": t(z.grad), "dtargets": t(y.grad)})
    return out


def layernorm_cases():
    # Own generator, so the cases before these keep their random streams.
    g = torch.Generator().manual_seed(7)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=DT)
    out = []
    for shape, eps, affine, bias in [((2, 3, 5), 1e-5, True, True), ((6, 4), 1e-3, True, False),
                                     ((4, 3), 1e-5, False, False), ((1, 5), 1e-5, True, True),
                                     # Rows long enough for the fused kernel's lanes, and a
                                     # remainder past them (300 = 4·64 + 44).
                                     ((2, 3, 300), 1e-5, True, True)]:
        c = shape[-1]
        ln = nn.LayerNorm(c, eps=eps, elementwise_affine=affine, bias=bias).to(DT)
        case = {"features": c, "eps": eps, "elementwise_affine": affine, "bias": bias,
                "repr": repr(ln)}
        if affine:
            with torch.no_grad():
                ln.weight.copy_(1.0 + 0.5 * rnd(c))
                if bias:
                    ln.bias.copy_(0.3 * rnd(c))
            case["weight"] = t(ln.weight)
            if bias:
                case["bias_value"] = t(ln.bias)
        # Features on different scales and offsets within a sample.
        scale = torch.tensor([1.0, 10.0, 0.1, 3.0, 0.5], dtype=DT).repeat(c // 5 + 1)[:c]
        offset = torch.tensor([0.0, -5.0, 2.0, 100.0, 0.3], dtype=DT).repeat(c // 5 + 1)[:c]
        x = (rnd(*shape) * scale + offset).requires_grad_()
        seed = rnd(*shape)
        y = ln(x)
        y.backward(seed)
        case.update({"x": t(x), "seed": t(seed), "y": t(y), "dx": t(x.grad)})
        if affine:
            case["dweight"] = t(ln.weight.grad)
            if bias:
                case["dbias"] = t(ln.bias.grad)
        out.append(case)
    return out


def regression_cases():
    # Fixed values (no random draws, so the other cases' streams are untouched): residuals
    # d = p - y of exactly 0, exactly +-1, +-0.5 and +-2 (the thresholds used below), and some
    # in between and beyond.
    p0 = torch.tensor([[0.0, 1.0, -1.0, 0.5], [2.5, -0.25, 3.0, 0.7], [-2.0, 1.5, 0.1, -4.0]],
                      dtype=DT)
    y0 = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.0, 1.2], [0.0, 1.5, 0.3, -1.0]],
                      dtype=DT)
    losses = [
        ("l1_loss", None, lambda p, y, red, _: F.l1_loss(p, y, reduction=red)),
        ("huber_loss", 1.0, lambda p, y, red, k: F.huber_loss(p, y, reduction=red, delta=k)),
        ("huber_loss", 0.5, lambda p, y, red, k: F.huber_loss(p, y, reduction=red, delta=k)),
        ("smooth_l1_loss", 1.0, lambda p, y, red, k: F.smooth_l1_loss(p, y, reduction=red, beta=k)),
        ("smooth_l1_loss", 0.5, lambda p, y, red, k: F.smooth_l1_loss(p, y, reduction=red, beta=k)),
        ("smooth_l1_loss", 0.0, lambda p, y, red, k: F.smooth_l1_loss(p, y, reduction=red, beta=k)),
    ]
    out = []
    for name, k, fn in losses:
        for red in ["mean", "sum"]:
            p, y = p0.clone().requires_grad_(), y0.clone().requires_grad_()
            loss = fn(p, y, red, k)
            loss.backward()
            out.append({"loss_fn": name, "param": k, "reduction": red, "pred": t(p),
                        "target": t(y), "loss": loss.item(), "dpred": t(p.grad),
                        "dtarget": t(y.grad)})
    return out


# --- Initialisation -------------------------------------------------------------------------

def gains():
    cases = [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
             ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]
    return [{"nonlinearity": nl, "param": p, "gain": nn.init.calculate_gain(nl, p)}
            for nl, p in cases]


def init_cases():
    """For each initialiser: PyTorch's own bound or std (computed with its fan and gain helpers,
    the way its source does) and the sample statistics of a large tensor it initialised."""
    I = nn.init
    fan = I._calculate_correct_fan
    cases = []

    def add(name, shape, fn, dist, value, **args):
        w = torch.empty(*shape, dtype=DT)
        fn(w)
        cases.append({"name": name, "shape": list(shape), "args": args, "dist": dist,
                      "value": value, "sample_mean": w.mean().item(),
                      "sample_std": w.std().item(), "sample_max_abs": w.abs().max().item(),
                      "numel": w.numel()})

    shape = (256, 512)
    fi, fo = I._calculate_fan_in_and_fan_out(torch.empty(*shape))
    for g in [1.0, I.calculate_gain("tanh")]:
        add("xavier_uniform", shape, lambda w: I.xavier_uniform_(w, gain=g), "uniform",
            g * math.sqrt(6.0 / (fi + fo)), gain=g)
    add("xavier_normal", shape, lambda w: I.xavier_normal_(w, gain=1.0), "normal",
        math.sqrt(2.0 / (fi + fo)), gain=1.0)
    ref = torch.empty(*shape)
    # kaiming_uniform_'s defaults: a = 0, mode fan_in, nonlinearity leaky_relu, i.e. gain √2.
    add("kaiming_uniform", shape, lambda w: I.kaiming_uniform_(w), "uniform",
        I.calculate_gain("leaky_relu", 0) * math.sqrt(3.0 / fan(ref, "fan_in")),
        mode="fan_in", nonlinearity="leaky_relu", a=0.0)
    add("kaiming_uniform", shape,
        lambda w: I.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu"), "uniform",
        I.calculate_gain("relu") * math.sqrt(3.0 / fan(ref, "fan_out")),
        mode="fan_out", nonlinearity="relu", a=0.0)
    add("kaiming_normal", shape, lambda w: I.kaiming_normal_(w, nonlinearity="relu"), "normal",
        I.calculate_gain("relu") / math.sqrt(fan(ref, "fan_in")),
        mode="fan_in", nonlinearity="relu", a=0.0)
    add("kaiming_normal", shape,
        lambda w: I.kaiming_normal_(w, a=0.2, mode="fan_out", nonlinearity="leaky_relu"),
        "normal", I.calculate_gain("leaky_relu", 0.2) / math.sqrt(fan(ref, "fan_out")),
        mode="fan_out", nonlinearity="leaky_relu", a=0.2)
    conv = (32, 16, 3, 3)  # fans multiply by the receptive field: fan_in = 16·9
    add("kaiming_uniform", conv, lambda w: I.kaiming_uniform_(w, nonlinearity="relu"),
        "uniform", I.calculate_gain("relu") * math.sqrt(3.0 / fan(torch.empty(*conv), "fan_in")),
        mode="fan_in", nonlinearity="relu", a=0.0)

    # nn.Linear's own reset_parameters: kaiming_uniform_(a=√5) for the weight, i.e.
    # U(±1/√fan_in), and U(±1/√fan_in) for the bias.
    lin = nn.Linear(512, 256).to(DT)
    for pname, p in [("weight", lin.weight), ("bias", lin.bias)]:
        cases.append({"name": "linear_default_" + pname, "shape": list(p.shape),
                      "args": {"fan_in": 512}, "dist": "uniform",
                      "value": I.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3.0 / 512),
                      "sample_mean": p.mean().item(), "sample_std": p.std().item(),
                      "sample_max_abs": p.abs().max().item(), "numel": p.numel()})
    return cases


def main():
    golden = {
        "meta": {"torch": torch.__version__, "dtype": "float64",
                 "generator": "tests/golden/layers_gen.py"},
        "linear": linear_case(),
        "activations": activation_cases(),
        "batchnorm": [
            batchnorm_case(4, 1e-5, 0.1, True, True),
            batchnorm_case(3, 1e-3, 0.5, True, True),
            batchnorm_case(5, 1e-5, 0.1, False, False),
        ],
        "residual": [residual_case(6, 10, None, 1.0), residual_case(6, 10, 4, 0.5)],
        "cross_entropy": ce_cases(),
        "nll_loss": nll_cases(),
        "mse_loss": mse_cases(),
        "bce_with_logits": bce_cases(),
        "gains": gains(),
        "init": init_cases(),
        "regression_losses": regression_cases(),
        "layernorm": layernorm_cases(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers.json")
    with open(path, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
