#!/usr/bin/env python3
"""Golden Jacobians and singular values (issue 21, item 3) for `tests/spectrum.rs`, from PyTorch.

Regenerate (only needed when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/spectrum_gen.py    # needs torch; writes tests/golden/spectrum.json

and commit the script and the JSON together (deterministic; the torch version is recorded).

Each case is a small MLP (nn.Linear layers with the activation named after every layer but the
last) in float64, with weights from torch.manual_seed, one input row x, the Jacobian of the
output with respect to x by torch.func.jacrev (reverse mode: independent of vgrad's forward-mode
construction) and its singular values by torch.linalg.svdvals (LAPACK, not nalgebra).
Weights are written as nested lists in PyTorch's [out, in] layout.
"""

import json
import os

import torch

ACTS = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda h: h}


def case(name, widths, act, seed):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(a, b, dtype=torch.float64) for a, b in zip(widths, widths[1:])]
    x = torch.randn(1, widths[0], dtype=torch.float64)
    phi = ACTS[act]

    def f(v):
        h = v
        for i, layer in enumerate(layers):
            h = layer(h)
            if i + 1 < len(layers):
                h = phi(h)
        return h[0]

    j = torch.func.jacrev(f)(x)[:, 0, :]  # [m, 1, n] -> [m, n]
    return {
        "name": name,
        "activation": act,
        "weights": [l.weight.detach().tolist() for l in layers],
        "biases": [l.bias.detach().tolist() for l in layers],
        "x": x[0].tolist(),
        "jacobian": j.tolist(),
        "singular_values": torch.linalg.svdvals(j).tolist(),
    }


def main():
    cases = [
        case("tanh 6-12-12-4", [6, 12, 12, 4], "tanh", 0),
        case("relu 8-16-16-8", [8, 16, 16, 8], "relu", 1),
        case("tanh 10-10x4-10", [10, 10, 10, 10, 10, 10], "tanh", 2),
        case("linear 5-7-3", [5, 7, 3], "identity", 3),
    ]
    out = {"torch": torch.__version__, "cases": cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spectrum.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
