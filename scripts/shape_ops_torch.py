"""PyTorch's side of `cargo bench --bench shape_ops`: the same permutes (copied to contiguous
memory, `x.permute(..).contiguous()`), softmaxes and reductions on the same values, f32, one
thread (two where named); median of 50 after 5 warm-ups.

    python3 scripts/shape_ops_torch.py
"""
import time

import torch
import torch.nn.functional as F

CASES = [
    ([512, 512], [1, 0]),
    ([1000, 1000], [1, 0]),
    ([1024, 1024], [1, 0]),
    ([2048, 2048], [1, 0]),
    ([256, 4096], [1, 0]),
    ([32, 64, 128, 64], [0, 3, 1, 2]),
    ([32, 64, 128, 64], [0, 2, 1, 3]),
]


def median_us(f):
    for _ in range(5):
        f()
    times = []
    for _ in range(50):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e6


def values(shape):
    """The bench's values: ((i * 7919) % 1000) / 100 - 5 at flat index i."""
    n = torch.Size(shape).numel()
    i = torch.arange(n, dtype=torch.int64)
    return (((i * 7919) % 1000).to(torch.float32) / 100.0 - 5.0).reshape(shape)


def main():
    torch.set_num_threads(1)
    for shape, perm in CASES:
        x = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
        print(f"permute {shape}{perm}: {median_us(lambda: x.permute(perm).contiguous()):.0f} us")
    x, z = values([2048, 2048]), values([64, 512, 64])
    for name, f in [
        ("softmax [2048, 2048] 1", lambda: x.softmax(1)),
        ("log_softmax [2048, 2048] 1", lambda: x.log_softmax(1)),
        ("softmax [2048, 2048] 0", lambda: x.softmax(0)),
        ("softmax [64, 512, 64] 1", lambda: z.softmax(1)),
        ("sum_to [2048, 1]", lambda: x.sum(1, keepdim=True)),
        ("sum_to [1, 2048]", lambda: x.sum(0, keepdim=True)),
        ("sum_axis 1", lambda: x.sum(1)),
        ("max_axis 1", lambda: x.max(1)),
        ("max_axis 0", lambda: x.max(0)),
    ]:
        print(f"{name}: {median_us(f):.0f} us")
    for b, m, k, n in [(256, 16, 16, 16), (64, 64, 64, 64), (32, 128, 64, 128), (8, 512, 512, 512)]:
        x, y = values([b, m, k]), values([b, k, n])
        for threads in [1, 2]:
            torch.set_num_threads(threads)
            print(f"bmm {b}x{m}x{k}x{n} t{threads}: {median_us(lambda: torch.bmm(x, y)):.0f} us")
    torch.set_num_threads(1)
    for n, c in [(4096, 1024), (512, 64)]:
        x, g = values([n, c]), values([n, c]).flip(0)
        gamma = torch.tensor([0.5 + (i % 7) * 0.25 for i in range(c)]).requires_grad_()
        beta = torch.tensor([(i % 5) * 0.1 - 0.2 for i in range(c)]).requires_grad_()

        def forward():
            with torch.no_grad():
                F.layer_norm(x, (c,), gamma, beta, 1e-5)

        def forward_backward():
            xv = x.detach().requires_grad_()
            gamma.grad = beta.grad = None
            F.layer_norm(xv, (c,), gamma, beta, 1e-5).backward(g)

        for threads in [1, 2]:
            torch.set_num_threads(threads)
            print(f"layer_norm forward [{n}, {c}] t{threads}: {median_us(forward):.0f} us")
            print(f"layer_norm forward_backward [{n}, {c}] t{threads}: "
                  f"{median_us(forward_backward):.0f} us")
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
