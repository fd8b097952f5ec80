#!/usr/bin/env python3
"""PyTorch's side of `cargo bench --bench optim`: one optimiser step over mid_relu's parameters
(7 x Linear(256, 256) + Linear(256, 10), 463,114 parameters, f32), and one clip_grad_norm_; one
thread, fixed gradients, default (foreach) implementations. Prints the median time per step of
15 batches of 100 steps.

  python3 scripts/torch_optim_step.py
"""
import statistics
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(0)
params = []
for out_f, in_f in [(256, 256)] * 7 + [(10, 256)]:
    params.append(torch.nn.Parameter(torch.randn(out_f, in_f) * 0.05))
    params.append(torch.nn.Parameter(torch.zeros(out_f)))
for p in params:
    p.grad = torch.randn_like(p) * 1e-3
print("parameters:", sum(p.numel() for p in params))
optimisers = [
    ("sgd", lambda: torch.optim.SGD(params, lr=1e-3)),
    ("sgd_momentum", lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9)),
    ("adam", lambda: torch.optim.Adam(params)),
    ("adamw", lambda: torch.optim.AdamW(params)),
    ("rmsprop", lambda: torch.optim.RMSprop(params)),
    # vgrad's adamw_groups: no weight decay on biases, the output layer's weight at 3e-3.
    ("adamw_groups", lambda: torch.optim.AdamW([
        {"params": params[0:-2:2]},
        {"params": params[1::2], "weight_decay": 0.0},
        {"params": [params[-2]], "lr": 3e-3},
    ])),
]
for name, make in optimisers:
    opt = make()
    for _ in range(50):
        opt.step()
    times = []
    for _ in range(15):
        t = time.perf_counter()
        for _ in range(100):
            opt.step()
        times.append((time.perf_counter() - t) / 100)
    print(f"{name} {statistics.median(times) * 1e6:.1f} us")

# Gradient clipping over the same gradients (max_norm half the norm, so every gradient is scaled).
total = torch.nn.utils.clip_grad_norm_(params, float("inf")).item()
for _ in range(50):
    torch.nn.utils.clip_grad_norm_(params, total * 0.5)
times = []
for _ in range(15):
    t = time.perf_counter()
    for _ in range(100):
        torch.nn.utils.clip_grad_norm_(params, total * 0.5)
    times.append((time.perf_counter() - t) / 100)
print(f"clip_grad_norm {statistics.median(times) * 1e6:.1f} us")
