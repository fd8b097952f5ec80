#!/usr/bin/env python3
"""Pairs of 2-thread runs, each classified by where the host put the two vCPUs at the time.

On a shared VM the host sometimes places the two vCPUs on different dies (a cache line's round
trip ~320-340 ns instead of ~60-70, `corun.py`) and now and then on one core (~30 ns), for
seconds to minutes at a time. This loop runs two programs back to back, alternating which goes
first, and prints the round trip before, between and after them, so each figure can be read
against the placement it ran under (a pair with all three readings alike is clean).

    cargo bench --bench peers --no-run      # prints target/release/deps/peers-<hash>
    # vgrad against JAX (both at 2 threads):
    python3 scripts/cross_die.py target/release/deps/peers-<hash> --jax --rounds 40 \\
        --configs w240_d8_b360_leaky_relu,w352_d5_b1200_silu
    # two builds of vgrad against each other:
    python3 scripts/cross_die.py BASE_EXE --against NEW_EXE --rounds 40 --configs ...

The configs come from benches/holdout.json unless --config-file says otherwise; vgrad runs the
README loop. Output lines: time, index, round trips (ns), then per config the first program's
and the second's median ms. `--classify LOG` reads such output back and gives, per config,
program and placement, the runs whose two readings agree (one die 50-120 ns, two dies above
250, one core below 45): how many, and their minimum, median and maximum.
"""
import argparse
import os
import subprocess
import sys
import time

import corun
from compare import json_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def medians(argv, env=None):
    out = subprocess.run(argv, capture_output=True, text=True, env=env).stdout
    return {j["config"]: j["median_ms"] for j in json_lines(out) if "median_ms" in j}


def placement(readings):
    """The placement two round trips (ns) agree on, or None."""
    for name, ok in (("one die", lambda r: 50 < r < 120), ("two dies", lambda r: r > 250),
                     ("one core", lambda r: r < 45)):
        if all(ok(r) for r in readings):
            return name
    return None


def classify(path):
    runs = {}
    for line in open(path):
        t = line.split()
        if line.startswith("#") or len(t) < 9 or t[2] != "rt":
            continue
        i, (r0, r1, r2) = int(t[1]), map(int, t[3:6])
        # Even pairs ran the first program between r0 and r1, odd ones between r1 and r2.
        around = ((r0, r1), (r1, r2)) if i % 2 == 0 else ((r1, r2), (r0, r1))
        for c in range(6, len(t) - 2, 3):
            for which, ms, rr in (("first", t[c + 1], around[0]), ("second", t[c + 2], around[1])):
                where = placement(rr)
                if where and ms != "None":
                    runs.setdefault((t[c], which, where), []).append(float(ms))
    for key in sorted(runs):
        a = sorted(runs[key])
        print(*key, f"{len(a)} runs, min {a[0]:.2f} median {a[len(a) // 2]:.2f} max {a[-1]:.2f} ms")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--classify":
        return classify(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vgrad", help="a peers binary (cargo bench --bench peers --no-run)")
    ap.add_argument("--against", help="a second peers binary to pair with the first")
    ap.add_argument("--jax", action="store_true", help="pair with ../shared/bench/jax_mlp.py")
    ap.add_argument("--configs", required=True)
    ap.add_argument("--config-file", default=os.path.join(ROOT, "benches", "holdout.json"))
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    if bool(a.against) == a.jax:
        sys.exit("give exactly one of --against EXE and --jax")
    common = ["--threads", "2", "--config-file", a.config_file, "--configs", a.configs]
    first = lambda: medians([a.vgrad, "--readme"] + common)
    if a.jax:
        env = dict(os.environ, OMP_NUM_THREADS="2")
        jax = os.path.join(ROOT, "..", "shared", "bench", "jax_mlp.py")
        second = lambda: medians([sys.executable, jax] + common, env)
    else:
        second = lambda: medians([a.against, "--readme"] + common)
    for i in range(a.rounds):
        r0 = corun.round_trip_ns()
        if i % 2 == 0:
            x = first()
            r1 = corun.round_trip_ns()
            y = second()
        else:
            y = second()
            r1 = corun.round_trip_ns()
            x = first()
        r2 = corun.round_trip_ns()
        cells = " ".join(f"{c} {x.get(c)} {y.get(c)}" for c in a.configs.split(","))
        print(time.strftime("%H:%M:%S"), i, "rt", round(r0), round(r1), round(r2), cells, flush=True)


if __name__ == "__main__":
    main()
