#!/usr/bin/env python3
"""vgrad against itself: the same step in different modes, alternated in one run (issue 18).

Usage (from anywhere; stdlib only):

  python3 scripts/modes.py                                   # configs.json, 1 thread, 5 rounds
  python3 scripts/modes.py --config-file ../shared/bench/grid.json --threads 1,2 --rounds 3
  python3 scripts/modes.py --markdown out/modes.md --raw out/modes.jsonl

The modes (each one `peers` invocation, benches/peers.rs):

  fused     `Optimizer::backward_step`: the update inside backward (what compare.py times)
  readme    README.md's loop: `backward`, then `opt.step` while the tape is alive
  fused+ftz the fused step with `set_flush_denormal(true)` for the whole process
  readme+ftz
  fused-ftz the fused step with flushing off everywhere (`--flush off`): what subnormals cost

It answers two questions with ratios taken within a round (modes seconds apart), median over
rounds: is the README loop as fast as the fused step (readme / fused, target <= 1.05), and is
vgrad's default (flushing scoped to its own kernels) as fast as flushing everywhere
(fused / fused+ftz and readme / readme+ftz, target <= 1.10).

Never run this while another benchmark runs: the machine has two cores.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the same build and run helpers as the peer comparison)

MODES = {
    "fused": [],
    "readme": ["--readme"],
    "fused+ftz": ["--flush", "on"],
    "readme+ftz": ["--readme", "--flush", "on"],
    "fused-ftz": ["--flush", "off"],
}
RATIOS = [("readme", "fused", 1.05), ("fused", "fused+ftz", 1.10), ("readme", "readme+ftz", 1.10),
          ("fused-ftz", "fused", None)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1", help="comma list of thread counts (default 1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--configs", default=None, help="comma list of config names (default: all)")
    ap.add_argument("--config-file", default=compare.DEFAULT_CONFIGS)
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of modes (default: all)")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--raw", default=None)
    a = ap.parse_args()
    cfg_file = os.path.abspath(a.config_file)
    names = a.configs.split(",") if a.configs else [c["name"] for c in compare.json.load(open(cfg_file))["mlp"]]
    modes = a.modes.split(",")
    exe = compare.cargo_executable(["bench", "--bench", "peers", "--no-run"], "peers", cwd=compare.ROOT)
    rec = compare.Recorder(a.raw)
    out = [f"vgrad step modes, {cfg_file}, {a.rounds} rounds, modes rotated each round; "
           f"median ms per step (ratios within a round, median over rounds)", ""]
    for threads in [int(t) for t in a.threads.split(",")]:
        times = {c: {m: [] for m in modes} for c in names}
        for r in range(a.rounds):
            rot = modes[r % len(modes):] + modes[: r % len(modes)]
            for c in names:
                for m in rot:
                    load = rec.load_now()
                    argv = [exe, "--threads", str(threads), "--config-file", cfg_file, "--configs", c, *MODES[m]]
                    lines = compare.run(argv, env=compare.thread_env(threads))
                    ms = [l["median_ms"] for l in lines if l.get("bench") == "mlp" and l.get("config") == c]
                    for l in lines:
                        rec.add(l, mode=m, round=r, load1=load)
                    times[c][m].append(ms[0] if ms else None)
                compare.log(f"  threads={threads} round {r + 1}/{a.rounds} {c}: "
                            + ", ".join(f"{m} {compare.fmt(times[c][m][-1])}" for m in rot))
        ratios = [(x, y, t) for x, y, t in RATIOS if x in modes and y in modes]
        out.append(f"{threads} thread(s):")
        out.append("")
        out.append("| config | " + " | ".join(modes) + " | " + " | ".join(f"{x} ÷ {y}" for x, y, _ in ratios) + " |")
        out.append("|---|" + "---|" * (len(modes) + len(ratios)))
        for c in names:
            cells = [compare.fmt(compare.med(times[c][m])) for m in modes]
            for x, y, target in ratios:
                rs = [p / q for p, q in zip(times[c][x], times[c][y]) if p and q]
                v = compare.med(rs)
                flag = "" if target is None or v is None or v <= target else " **over**"
                cells.append(f"{v:.3f}{flag}" if v is not None else "—")
            out.append(f"| {c} | " + " | ".join(cells) + " |")
        out.append("")
    loads = rec.loads
    out.append(f"1-min load before the runs: {min(loads):.2f}–{max(loads):.2f} (median {compare.med(loads):.2f})")
    text = "\n".join(out)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
