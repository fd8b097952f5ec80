#!/usr/bin/env python3
"""Writes data/digits.bin, the 8x8 digits that `vgrad::data::digits` embeds.

Source: scikit-learn's copy of the test partition of the UCI "Optical Recognition of
Handwritten Digits" data set (E. Alpaydin and C. Kaynak, 1998, CC BY 4.0); see data/README.md.

Layout (all integers little-endian):

    offset  size  field
    0       8     magic b"VGDIGIT1" (the trailing "1" is the format version)
    8       4     u32 number of samples, n
    12      2     u16 features per sample, f (64: the 8x8 image, row-major)
    14      2     u16 number of classes, c (10)
    16      n*(f+1)  per sample: f pixel bytes (u8, 0..=16), then 1 label byte (u8, < c)

Samples keep scikit-learn's order. The output is byte-for-byte deterministic, so rerunning
the script must leave `git status` clean.

Usage: python3 scripts/make_digits.py [output path, default data/digits.bin]
"""

import hashlib
import struct
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

MAGIC = b"VGDIGIT1"
MAX_PIXEL = 16


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "data" / "digits.bin"

    digits = load_digits()
    x, y = digits.data, digits.target
    n, f = x.shape
    c = int(y.max()) + 1

    # The file stores bytes, so refuse anything that would not survive the cast unchanged.
    if not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() > MAX_PIXEL:
        sys.exit("pixels are not integers in 0..=16")
    if y.min() < 0 or sorted(set(y.tolist())) != list(range(c)):
        sys.exit("labels are not 0..c-1 with every class present")

    header = MAGIC + struct.pack("<IHH", n, f, c)
    records = np.concatenate([x.astype(np.uint8), y.astype(np.uint8)[:, None]], axis=1)
    blob = header + records.tobytes(order="C")
    assert len(blob) == 16 + n * (f + 1)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    print(f"wrote {out}: {n} samples, {f} features, {c} classes, {len(blob)} bytes")
    print(f"class counts: {np.bincount(y).tolist()}")
    print(f"sha256: {hashlib.sha256(blob).hexdigest()}")


if __name__ == "__main__":
    main()
