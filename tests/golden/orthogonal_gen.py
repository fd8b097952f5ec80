#!/usr/bin/env python3
"""The distribution of torch.nn.init.orthogonal_'s matrices (issue 21, item 2), for
`tests/init_orthogonal.rs`.

Regenerate (only needed when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/orthogonal_gen.py    # needs torch; writes tests/golden/orthogonal.json

and commit the script and the JSON together (seeded, so deterministic for a torch version; the
version is recorded).

vgrad's generator is not PyTorch's, so the matrices cannot match bit for bit; their distribution
must. For each shape, DRAWS independent calls of orthogonal_ (float64) give samples of a few
statistics of the matrix flattened to rows x cols: the first and the last diagonal entry, and
for square shapes the trace. The fixture records each statistic's quantiles at
p = 0.01, 0.02, ..., 0.99; the test compares vgrad's empirical CDF at those points with p.
"""

import json
import os

import torch

# One thread: tiny matrices, and the machine it ran on was shared.
torch.set_num_threads(1)
DRAWS = 10000
SHAPES = [[3, 3], [3, 5], [5, 3], [2, 3, 2], [8, 8]]


def main():
    torch.manual_seed(21)
    cases = []
    ps = torch.arange(1, 100, dtype=torch.float64) / 100
    for shape in SHAPES:
        rows = shape[0]
        stats = {"first_diag": [], "last_diag": []}
        if len(shape) == 2 and shape[0] == shape[1]:
            stats["trace"] = []
        k = min(rows, torch.Size(shape).numel() // rows) - 1
        for _ in range(DRAWS):
            w = torch.empty(shape, dtype=torch.float64)
            torch.nn.init.orthogonal_(w)
            m = w.reshape(rows, -1)
            stats["first_diag"].append(m[0, 0].item())
            stats["last_diag"].append(m[k, k].item())
            if "trace" in stats:
                stats["trace"].append(m.trace().item())
        for name, xs in stats.items():
            q = torch.quantile(torch.tensor(xs, dtype=torch.float64), ps)
            cases.append({"shape": shape, "stat": name, "quantiles": q.tolist()})
            print(shape, name, "median", q[49].item())
    header = {
        "generator": "tests/golden/orthogonal_gen.py",
        "torch": torch.__version__,
        "draws": DRAWS,
        "p": ps.tolist(),
    }
    dump = lambda v: json.dumps(v, allow_nan=False)
    lines = [f" {dump(k)}: {dump(v)}," for k, v in header.items()]
    lines.append(' "cases": [')
    lines.append(",\n".join("  " + dump(c) for c in cases))
    lines.append(" ]")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "orthogonal.json")
    with open(path, "w") as f:
        f.write("{\n" + "\n".join(lines) + "\n}\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
