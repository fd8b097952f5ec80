#!/usr/bin/env python3
"""A/B two builds of the `peers` benchmark binary on the same machine, in one run.

Rounds alternate the order (base first, then new first, ...), so drift in the machine's speed
falls on both sides; each config's figure is the median over rounds of new ÷ base, taken
round by round. Noise on the 2-core Intel Xeon this was written on: about ±2% on medians of
4+ rounds at 1 thread, more at 2 threads.

    cargo bench --bench peers --no-run      # prints target/release/deps/peers-<hash>
    cp target/release/deps/peers-<hash> /tmp/peers-base   # then change the code, rebuild
    python3 scripts/ab.py /tmp/peers-base target/release/deps/peers-<hash> \\
        --configs b4_w1024_d4_relu,b8_w512_d8_tanh --threads 1,2 --rounds 4 [--f64] [--fused]

The README loop is timed unless `--fused` (the fused `backward_step`); `--config-file`
defaults to benches/holdout.json. `--per-config` runs base and new back to back for each
config (steadier at 2 threads, where the host's slow minutes would otherwise fall on one
side). With `--wait-cores F`, each multi-thread pair first waits
until the CPUs are separate cores on one die (co-run factor below F and a cache line's round
trip below corun.MAX_ROUND_TRIP_NS, see corun.py).
"""
import argparse
import json
import os
import statistics
import subprocess

import corun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the peers binary to compare against")
    ap.add_argument("new", help="the peers binary under test")
    ap.add_argument("--configs", help="comma-separated config names (default: every one)")
    ap.add_argument("--config-file", default=os.path.join(ROOT, "benches", "holdout.json"))
    ap.add_argument("--threads", default="1", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--f64", action="store_true", help="time f64 instead of f32")
    ap.add_argument("--fused", action="store_true", help="time the fused step, not the README loop")
    ap.add_argument("--wait-cores", type=float, default=None,
                    help="before each multi-thread pair, wait until the co-run factor is below this")
    ap.add_argument("--wait-max", type=float, default=600, help="longest wait for --wait-cores, seconds")
    ap.add_argument("--per-config", action="store_true",
                    help="run each config in its own pair of processes, base and new back to back")
    a = ap.parse_args()

    times = {}  # (threads, config) -> {"base": [...], "new": [...]}
    # One process per binary and round for all configs, or with --per-config one per config:
    # base and new then run seconds apart, so a minute in which the host slows the machine
    # (see corun.py) falls on both sides of most pairs.
    if a.per_config:
        names = a.configs.split(",") if a.configs else [
            c["name"] for c in json.load(open(a.config_file))["mlp"]
        ]
        groups = [[n] for n in names]
    else:
        groups = [a.configs.split(",")] if a.configs else [None]
    for t in a.threads.split(","):
        for r in range(a.rounds):
            order = [("base", a.base), ("new", a.new)]
            if r % 2:
                order.reverse()
            for i, (group, (tag, binary)) in enumerate((g, o) for g in groups for o in order):
                if i % 2 == 0 and int(t) > 1 and a.wait_cores is not None:
                    # Before each pair: the host's slow episodes last seconds to minutes.
                    f, rt = corun.wait_for_cores(a.wait_cores, a.wait_max, cpus=tuple(range(int(t))))
                    print(f"t{t} round {r + 1} {','.join(group or ['all'])}: co-run factor "
                          f"{f:.2f}, round trip {rt:.0f} ns", flush=True)
                cmd = [binary, "--threads", t, "--config-file", a.config_file]
                cmd += [] if a.fused else ["--readme"]
                cmd += ["--configs", ",".join(group)] if group else []
                cmd += ["--f64"] if a.f64 else []
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                for line in out.splitlines():
                    try:
                        d = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if d.get("peer") != "vgrad" or "median_ms" not in d:
                        continue
                    times.setdefault((t, d["config"]), {}).setdefault(tag, []).append(d["median_ms"])
    for (t, config), v in sorted(times.items()):
        if "base" in v and "new" in v:
            ratios = [n / b for n, b in zip(v["new"], v["base"])]
            print(
                f"t{t} {config:28s} base {statistics.median(v['base']):9.3f} "
                f"new {statistics.median(v['new']):9.3f} ratio {statistics.median(ratios):.3f}"
            )


if __name__ == "__main__":
    main()
