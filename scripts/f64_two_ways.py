#!/usr/bin/env python3
"""f64 ÷ f32 measured two ways in one run: `peers --f64-ratio` (f32 and f64 in alternating
blocks of steps inside one process) and f32 and f64 as separate processes, round by round.

Written to check whether sharing one process (both models' buffers and weights resident, the
cache refilled at every switch) biases the in-process ratio; on the AMD EPYC it did not beyond
the noise (`benches/results/amd-2026-12-07/s20-f64-two-ways.txt`).

    cargo bench --bench peers --no-run      # prints target/release/deps/peers-<hash>
    python3 scripts/f64_two_ways.py target/release/deps/peers-<hash> resbn,mid_relu 4
"""
import statistics
import subprocess
import sys

from compare import json_lines


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, cfgs, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])

    def run(args):
        out = subprocess.run([binary, "--threads", "1", "--readme", "--configs", ",".join(cfgs)] + args,
                             capture_output=True, text=True, check=True).stdout
        return json_lines(out)

    alt = {c: [] for c in cfgs}
    sep = {c: [] for c in cfgs}
    for r in range(rounds):
        for j in run(["--f64-ratio"]):
            alt[j["config"]].append(j["ratio"])
        # Separate processes, f32 first in even rounds and f64 first in odd ones.
        order = [[], ["--f64"]] if r % 2 == 0 else [["--f64"], []]
        got = {}
        for o in order:
            for j in run(o):
                got[(j["config"], j["dtype"])] = j["median_ms"]
        for c in cfgs:
            sep[c].append(got[(c, "f64")] / got[(c, "f32")])
        print(r, {c: (alt[c][-1], round(sep[c][-1], 3)) for c in cfgs}, flush=True)
    for c in cfgs:
        print(c, "alternated blocks median", round(statistics.median(alt[c]), 3),
              "separate processes median", round(statistics.median(sep[c]), 3))


if __name__ == "__main__":
    main()
