#!/usr/bin/env python3
"""Whether this machine's CPUs are two cores right now, or one core shared.

On the 2-vCPU KVM guests vgrad is benchmarked on, the host sometimes runs both vCPUs on one
physical core (time-sliced, or SMT siblings sharing the FMA units). Then every program's
2-thread step runs about as slowly as its 1-thread step, for minutes at a time, and a
2-thread comparison measures the host's placement, not the programs. Seen in the nineteenth
session: two 256³ matrix products pinned to CPUs 0 and 1 each took 576 µs together against
289 µs alone (2.0×), and a minute later 289 µs together (1.0×).

`sharing()` measures it: the same small single-threaded compute loop (a float32 matrix product
through numpy with one BLAS thread, or a pure-Python loop without numpy) pinned to each CPU
at once, against the fastest CPU alone. About 1.0 means separate cores; about 2.0 means one
core (or one CPU's core shared with another guest: in the same session one pinned product ran
at full speed on CPU 0 while its twin on CPU 1 took twice as long).

    python3 scripts/corun.py            # prints the factor
    python3 scripts/corun.py --watch 10 # every 10 s until interrupted

compare.py and ab.py take `--wait-cores F`: before each 2-thread round they wait (up to
`--wait-max` seconds) until the factor is below F, and record the factor they saw.
"""
import argparse
import os
import subprocess
import sys
import time

# The loop each pinned process times: ~0.1 s of compute on one thread, data in L2.
LOOP = r"""
import time
try:
    import numpy as np
    a = np.random.rand(256, 256).astype(np.float32)
    b = np.random.rand(256, 256).astype(np.float32)
    def work():
        for _ in range(300):
            a @ b
except ImportError:
    def work():
        s = 0.0
        for i in range(1_500_000):
            s += i * 0.5
work()
t = time.perf_counter()
work()
print(time.perf_counter() - t)
"""

ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _timed(cpus):
    env = dict(os.environ, **ONE_THREAD)
    procs = [
        subprocess.Popen(["taskset", "-c", str(c), sys.executable, "-c", LOOP],
                         stdout=subprocess.PIPE, text=True, env=env)
        for c in cpus
    ]
    return [float(p.communicate()[0]) for p in procs]


def sharing(cpus=(0, 1)):
    """The slowest of the loops run on every CPU of `cpus` at once, over the fastest of them
    run alone on each: ~1.0 when they are separate, idle cores, ~2.0 when they share one (with
    each other, or one of them with another guest's busy thread)."""
    return measure(cpus)[0]


def measure(cpus=(0, 1)):
    """`(factor, alone_s, together_s)`: [`sharing`]'s factor and the two times it divides."""
    alone = min(_timed([c])[0] for c in cpus)
    together = max(_timed(cpus))
    return together / alone, alone, together


def wait_for_cores(limit, max_s, log=print, cpus=(0, 1)):
    """Waits (checking every 15 s, at most `max_s` seconds) until `sharing(cpus)` is below
    `limit`; returns the last factor measured."""
    t0 = time.time()
    f = sharing(cpus)
    while f >= limit and time.time() - t0 < max_s:
        log(f"CPUs {cpus} sharing a core (co-run factor {f:.2f} >= {limit}): waiting")
        time.sleep(15)
        f = sharing(cpus)
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watch", type=float, default=None, help="repeat every this many seconds")
    a = ap.parse_args()
    while True:
        f, alone, together = measure()
        print(f"{time.strftime('%H:%M:%S')} co-run factor {f:.2f} (alone {alone * 1e3:.1f} ms, "
              f"together {together * 1e3:.1f} ms)", flush=True)
        if a.watch is None:
            break
        time.sleep(a.watch)


if __name__ == "__main__":
    main()
