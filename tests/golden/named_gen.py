"""A PyTorch checkpoint whose module has its own attribute names, for tests/pytorch_names.rs.

Generate (from the repository root):  python3 tests/golden/named_gen.py
  * named.safetensors: the state_dict of
        nn.Sequential(nn.Linear(3, 4), ResBlock(), nn.Linear(4, 2))
    where ResBlock has attributes l1 (Linear 4->4), bn (BatchNorm1d 4), l2 (Linear 4->4) and
    computes x + l2(bn(relu(l1(x)))). Keys: 0.weight, 1.l1.weight, 1.bn.running_mean, ...
    BatchNorm's running statistics come from three training batches.
  * named.json: an input x [5, 3] and the model's output in eval mode [5, 2].
"""

import json
import os

import torch
from torch import nn
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


class ResBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.l2 = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.l2(self.bn(torch.relu(self.l1(x))))


def main():
    torch.manual_seed(19)
    model = nn.Sequential(nn.Linear(3, 4), ResBlock(), nn.Linear(4, 2)).double()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, dtype=torch.float64))
    model.eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    save_file(model.state_dict(), os.path.join(HERE, "named.safetensors"))
    with open(os.path.join(HERE, "named.json"), "w") as f:
        json.dump(
            {
                "torch_version": torch.__version__,
                "keys": sorted(model.state_dict().keys()),
                "x": {"shape": list(x.shape), "data": x.reshape(-1).tolist()},
                "y": {"shape": list(y.shape), "data": y.reshape(-1).tolist()},
            },
            f,
            indent=1,
        )
        f.write("\n")
    print("wrote named.safetensors, named.json")


if __name__ == "__main__":
    main()
