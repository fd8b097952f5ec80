#!/usr/bin/env python3
"""A golden TensorBoard event file written by PyTorch's SummaryWriter, for vgrad's TensorBoard
writer (issue 20, item 1).

Regenerate (only needed when a case is added or changed; the test itself never runs Python):

    python3 tests/golden/tensorboard_gen.py   # needs torch and tensorboard (pip install tensorboard)

It writes, in tests/golden/tensorboard/:

* events.out.tfevents.golden: the event file PyTorch's `SummaryWriter` writes for the calls below
  (renamed from its time/host/pid name so the test can find it);
* cases.json: the same calls as data — each scalar's tag, step and value, each histogram's tag,
  step and float32 values — in call order, plus the torch and tensorboard versions.

Commit the script and both files together. `tests/tensorboard.rs` makes the same calls through
`vgrad::monitor::TensorBoardWriter` and compares the two files record by record (tags, steps,
scalar values, every histogram field), ignoring wall time, which is all that differs between
runs of this script.

Scalars go through `add_scalar` with its defaults (an old-style `simple_value`, float32),
histograms through `add_histogram` with its defaults (`bins="tensorflow"`: buckets growing by
10% from ±1e-12 to ±1e20, trimmed to the occupied range). The values are deterministic, chosen to
cover: mixed signs, exact zeros, a value on a bucket edge (1e-12), values below 1e-12 (the two
buckets around 0), a wide range (1e-6 to 1e6), a single value, and subnormal-free f32 gradients
as small as a 50-layer sigmoid network's (1e-32, as a scalar).
"""

import json
import math
import os
import shutil
import tempfile

import tensorboard
import torch
from torch.utils.tensorboard import SummaryWriter

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tensorboard")


def f32(values):
    """The values rounded to float32, as the exact doubles JSON stores."""
    return torch.tensor(values, dtype=torch.float32).tolist()


def cases():
    calls = []
    for step in range(3):
        calls.append(("scalar", "loss", step, 2.5 / (step + 1)))
        calls.append(("scalar", "lr", step, 0.1 * 0.5**step))
        calls.append(("scalar", "grad_norm/0", step, 1e-32 * (step + 1)))
        calls.append(("scalar", "grad_norm/blocks.3.bn", step, 12345.678 + step))
        grads = [((i * 37 + step * 11) % 101 - 50) * 1e-3 for i in range(200)]
        grads += [0.0, 0.0, 1e-12, -1e-12]
        calls.append(("histogram", "grad/0", step, f32(grads)))
        acts = [1.0 / (1.0 + math.exp(-((i % 23) - 11) / 3.0 - 0.1 * step)) for i in range(64)]
        calls.append(("histogram", "activation/0", step, f32(acts)))
        tiny = [(-1) ** i * 1e-30 * (i + 1) for i in range(10)]
        calls.append(("histogram", "tiny", step, f32(tiny)))
        wide = [10.0 ** (-6 + 12 * i / 49) * (1 if i % 3 else -1) for i in range(50)]
        calls.append(("histogram", "wide", step, f32(wide)))
        calls.append(("histogram", "single", step, f32([3.0 + step])))
    return calls


def main():
    calls = cases()
    tmp = tempfile.mkdtemp()
    w = SummaryWriter(log_dir=tmp)
    for kind, tag, step, value in calls:
        if kind == "scalar":
            w.add_scalar(tag, value, step)
        else:
            w.add_histogram(tag, torch.tensor(value, dtype=torch.float32), step)
    w.close()
    (name,) = [n for n in os.listdir(tmp) if n.startswith("events.out.tfevents.")]
    os.makedirs(OUT, exist_ok=True)
    shutil.copyfile(os.path.join(tmp, name), os.path.join(OUT, "events.out.tfevents.golden"))
    shutil.rmtree(tmp)
    doc = {
        "torch": torch.__version__,
        "tensorboard": tensorboard.__version__,
        "calls": [
            {"kind": kind, "tag": tag, "step": step, "value" if kind == "scalar" else "values": value}
            for kind, tag, step, value in calls
        ],
    }
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
