"""PyTorch's side of `cargo bench --bench layout`: the same permutes, copied to contiguous
memory (`x.permute(..).contiguous()`), f32, one thread; median of 50 after 5 warm-ups.

    python3 scripts/layout_torch.py
"""
import time

import torch

CASES = [
    ([512, 512], [1, 0]),
    ([1000, 1000], [1, 0]),
    ([1024, 1024], [1, 0]),
    ([2048, 2048], [1, 0]),
    ([256, 4096], [1, 0]),
    ([32, 64, 128, 64], [0, 3, 1, 2]),
    ([32, 64, 128, 64], [0, 2, 1, 3]),
]


def main():
    torch.set_num_threads(1)
    for shape, perm in CASES:
        x = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
        for _ in range(5):
            x.permute(perm).contiguous()
        times = []
        for _ in range(50):
            t = time.perf_counter()
            x.permute(perm).contiguous()
            times.append(time.perf_counter() - t)
        times.sort()
        print(f"{shape}{perm}: {times[len(times) // 2] * 1e6:.0f} us")


if __name__ == "__main__":
    main()
