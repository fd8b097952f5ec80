"""Checkpoint fixtures for tests/checkpoint.rs, and a check that torch loads vgrad's files.

Generate (from the repository root):  python3 tests/golden/ckpt_gen.py
  * mlp.safetensors: torch's own safetensors.torch.save_file(model.state_dict()) of
    nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)) in float32;
  * mlp.json: an input x [5, 4] and the model's output [5, 3];
  * bn.safetensors: the state_dict of nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) after
    three training batches: BatchNorm's running statistics and its int64 num_batches_tracked
    (= 3), the one integer tensor a PyTorch state_dict commonly holds.

Verify (after `cargo test --test checkpoint`, which writes the files):
    python3 tests/golden/ckpt_gen.py --verify target/tmp/vgrad_mlp.safetensors target/tmp/vgrad_mlp.json
  loads a vgrad-written file into the same torch model with load_state_dict (strict) and checks
  that torch reproduces the outputs vgrad computed and recorded in the JSON.
"""

import json
import os
import sys

import torch
from torch import nn
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def generate():
    torch.manual_seed(2024)
    model = mlp()
    x = torch.randn(5, 4)
    with torch.no_grad():
        y = model(x)
    save_file(model.state_dict(), os.path.join(HERE, "mlp.safetensors"))
    with open(os.path.join(HERE, "mlp.json"), "w") as f:
        json.dump(
            {
                "torch_version": torch.__version__,
                "x": {"shape": list(x.shape), "data": x.reshape(-1).tolist()},
                "y": {"shape": list(y.shape), "data": y.reshape(-1).tolist()},
            },
            f,
            indent=1,
        )
        f.write("\n")

    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    bn.train()
    with torch.no_grad():
        for _ in range(3):
            bn(torch.randn(6, 3))
    state = bn.state_dict()
    assert state["1.num_batches_tracked"].dtype == torch.int64
    save_file(state, os.path.join(HERE, "bn.safetensors"))
    print("wrote mlp.safetensors, mlp.json, bn.safetensors")


def verify(st_path, json_path):
    model = mlp()
    model.load_state_dict(load_file(st_path), strict=True)
    with open(json_path) as f:
        doc = json.load(f)
    x = torch.tensor(doc["x"]["data"], dtype=torch.float32).reshape(doc["x"]["shape"])
    expected = torch.tensor(doc["y"]["data"], dtype=torch.float32).reshape(doc["y"]["shape"])
    with torch.no_grad():
        y = model(x)
    diff = (y - expected).abs().max().item()
    assert diff < 1e-5, f"torch and vgrad outputs differ by {diff}"
    print(f"torch loaded {st_path} (strict) and reproduced vgrad's outputs (max diff {diff:.2e})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--verify":
        verify(sys.argv[2], sys.argv[3])
    else:
        generate()
