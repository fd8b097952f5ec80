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

The other slow mode is the two vCPUs on different dies (chiplets) of the host. Independent
loops run at full speed then, so the co-run factor stays at 1.0, but every cache line one
thread writes and the other reads crosses between the dies: `round_trip_ns()` bounces one line
between two pinned threads (scripts/pingpong.rs), about 60 ns on one die of the Zen 4 guest
and about 320 ns across. Seen in the nineteenth session, alternating runs: vgrad's 2-thread
step of a 240-wide stack at batch 360 took 4.6-4.9 ms whenever the round trip was 60-66 ns and
6.8-7.1 ms whenever it was 317-343 ns, in episodes of seconds to minutes.

compare.py and ab.py take `--wait-cores F`: before each 2-thread config (compare.py) or pair
of builds (ab.py) they wait (up to `--wait-max` seconds) until the factor is below F and the
round trip below MAX_ROUND_TRIP_NS, and record both as they saw them.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINGPONG_SRC = os.path.join(ROOT, "scripts", "pingpong.rs")
PINGPONG_EXE = os.path.join(ROOT, "target", "corun", "pingpong")
# A cache line's round trip between the two CPUs past which they are taken to sit on different
# dies: about 60 ns on one die of the Zen 4 guest, about 320 ns across.
MAX_ROUND_TRIP_NS = 150

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


def round_trip_ns(cpus=(0, 1)):
    """A cache line's round trip between the first two CPUs of `cpus`, in ns (scripts/pingpong.rs,
    built with rustc on first use)."""
    if not os.path.exists(PINGPONG_EXE) or os.path.getmtime(PINGPONG_EXE) < os.path.getmtime(PINGPONG_SRC):
        os.makedirs(os.path.dirname(PINGPONG_EXE), exist_ok=True)
        subprocess.run(["rustc", "--edition", "2021", "-O", PINGPONG_SRC, "-o", PINGPONG_EXE], check=True)
    out = subprocess.run([PINGPONG_EXE, str(cpus[0]), str(cpus[1])], capture_output=True, text=True, check=True)
    return float(out.stdout)


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


def wait_for_cores(limit, max_s, log=print, cpus=(0, 1), max_rt=MAX_ROUND_TRIP_NS):
    """Waits (checking every 5 s, at most `max_s` seconds) until `sharing(cpus)` is below
    `limit` and a cache line's round trip between the first two CPUs is below `max_rt` ns;
    returns the last `(co-run factor, round trip ns)` measured."""
    t0 = time.time()
    while True:
        f = sharing(cpus)
        rt = round_trip_ns(cpus) if len(cpus) > 1 else 0.0
        if (f < limit and rt < max_rt) or time.time() - t0 >= max_s:
            return f, rt
        log(f"CPUs {cpus}: co-run factor {f:.2f} (limit {limit}), round trip {rt:.0f} ns "
            f"(limit {max_rt}): waiting")
        time.sleep(5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watch", type=float, default=None, help="repeat every this many seconds")
    a = ap.parse_args()
    while True:
        f, alone, together = measure()
        print(f"{time.strftime('%H:%M:%S')} co-run factor {f:.2f} (alone {alone * 1e3:.1f} ms, "
              f"together {together * 1e3:.1f} ms), round trip {round_trip_ns():.0f} ns", flush=True)
        if a.watch is None:
            break
        time.sleep(a.watch)


if __name__ == "__main__":
    main()
