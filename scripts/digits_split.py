#!/usr/bin/env python3
"""The train/test split and standardisation of `vgrad::data::digits`, in Python.

An independent re-implementation of the rule documented on `vgrad::data::digits`, so that a
Python script (a PyTorch golden test, say) can train and evaluate on exactly the rows vgrad
uses, and so that the documented rule is checked by a second implementation:
`tests/data.rs` pins the indices this script prints.

    python3 scripts/digits_split.py          # prints a summary of the split

    from digits_split import digits_split    # (train_x, train_y, test_x, test_y, train_index, test_index)
"""

import numpy as np
from sklearn.datasets import load_digits

MASK = (1 << 64) - 1
SEED = 1998
TEST_EVERY = 5


class SplitMix64:
    """The generator in src/data.rs: Vigna's splitmix64.c."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Lemire's unbiased multiply-shift, as `SplitMix64::below`."""
        m = self.next_u64() * n
        if (m & MASK) < n:
            threshold = (-n % (1 << 64)) % n
            while (m & MASK) < threshold:
                m = self.next_u64() * n
        return m >> 64

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def split_indices(labels):
    order = list(range(len(labels)))
    SplitMix64(SEED).shuffle(order)
    order.sort(key=lambda i: labels[i])  # Python's sort is stable, like Rust's sort_by_key
    test = set(order[::TEST_EVERY])
    train_index = [i for i in range(len(labels)) if i not in test]
    test_index = [i for i in range(len(labels)) if i in test]
    return train_index, test_index


def digits_split():
    d = load_digits()
    x, y = d.data.astype(np.float64), d.target
    train_index, test_index = split_indices(y.tolist())
    train = x[train_index]
    mean = train.mean(axis=0)
    std = train.std(axis=0)  # population std (ddof=0)
    scale = np.where(std > 0, std, 1.0)
    return (
        (x[train_index] - mean) / scale,
        y[train_index],
        (x[test_index] - mean) / scale,
        y[test_index],
        train_index,
        test_index,
    )


if __name__ == "__main__":
    train_x, train_y, test_x, test_y, train_index, test_index = digits_split()
    print(f"train {len(train_index)}, test {len(test_index)}")
    print(f"test per class: {np.bincount(test_y).tolist()}")
    print(f"first test rows: {test_index[:10]}")
    print(f"sum of test rows: {sum(test_index)}")
    print(f"test_x[0, :8]: {np.round(test_x[0, :8], 6).tolist()}")
