#!/usr/bin/env python3
"""Regression guard: is this tree slower than the commit BENCHMARKS.md's figures came from?

Builds vgrad's `peers` benchmark twice, once at a base commit (by default the one named on the
`guard-base:` line of BENCHMARKS.md, the commit whose figures that file reports) and once from
the working tree, then runs the two executables alternately, in the same run, on every config of
the shared `configs.json` and `grid.json` (back to back for each config), with the fused step
and README.md's loop, plus the per-op overhead chain. Figures from two runs minutes apart measure the machine's moment as much
as the code (this is a shared 2-core VM), so only ratios taken within one round are compared:
for each config, the median over rounds of (new ms / base ms).

A config is flagged when that median ratio exceeds 1 + --threshold (default 0.05) and every
round agrees (each round's ratio above 1): a change that slows any config by more than 5% is seen
before it lands. The exit code is 1 when anything is flagged.

Usage (from anywhere; paths are found from this file):

  python3 scripts/regress.py                       # base from BENCHMARKS.md, 3 rounds, 1 thread
  python3 scripts/regress.py --base HEAD~1 --rounds 5 --threads 2
  python3 scripts/regress.py --configs deep_relu,grid_mid_gelu --markdown out/regress.md

Builds happen in target/regress/ (a git worktree of the base and its own target directory), so
the tree's own target/ is untouched apart from its bench build.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "bench")


def base_from_benchmarks():
    """The commit on BENCHMARKS.md's `guard-base: <sha>` line."""
    with open(os.path.join(ROOT, "BENCHMARKS.md"), encoding="utf-8") as f:
        m = re.search(r"guard-base:\s*`?([0-9a-f]{7,40})", f.read())
    if not m:
        sys.exit("BENCHMARKS.md has no `guard-base: <commit>` line; pass --base")
    return m.group(1)


def peers_executable(src_dir, target_dir):
    """Builds the `peers` bench of the crate at `src_dir` and returns its executable's path."""
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    out = subprocess.run(
        ["cargo", "bench", "--bench", "peers", "--no-run", "--message-format=json"],
        cwd=src_dir, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"building peers in {src_dir} failed:\n{out.stderr[-3000:]}")
    for line in out.stdout.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "peers" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit(f"no peers executable in the build output of {src_dir}")


def checkout(base):
    """A worktree of `base` in target/regress/base (recreated each time)."""
    wt = os.path.join(ROOT, "target", "regress", "base")
    subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT, capture_output=True)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
    subprocess.run(["git", "worktree", "add", "--detach", wt, base], cwd=ROOT, check=True,
                   capture_output=True)
    return wt


def run(exe, args):
    out = subprocess.run([exe, *args], capture_output=True, text=True)
    if out.returncode != 0 and "unknown argument" in out.stderr:
        return []  # a base from before the flag existed (--readme): no figure to compare
    if out.returncode != 0:
        sys.exit(f"{exe} {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="commit to compare with (default: BENCHMARKS.md's guard-base)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--configs", help="comma-separated config names (default: all)")
    ap.add_argument("--markdown", help="also write the table to this file")
    a = ap.parse_args()

    base = a.base or base_from_benchmarks()
    print(f"base {base}: building", file=sys.stderr, flush=True)
    base_exe = peers_executable(checkout(base), os.path.join(ROOT, "target", "regress", "target"))
    print("working tree: building", file=sys.stderr, flush=True)
    new_exe = peers_executable(ROOT, os.path.join(ROOT, "target"))

    files = [os.path.join(SHARED, "configs.json"), os.path.join(SHARED, "grid.json")]
    wanted = set(a.configs.split(",")) if a.configs else None
    steps = [("fused", []), ("readme", ["--readme"])]
    ratios, times = {}, {}
    for r in range(a.rounds):
        got = {}
        # Alternate which build goes first, so neither always meets the warmer machine.
        order = [("base", base_exe), ("new", new_exe)]
        if r % 2:
            order.reverse()
        # Base and new back to back for each config and step: on a shared VM the host slows
        # the machine for tens of seconds at a time (scripts/corun.py), which one process per
        # build for a whole file let fall on one side of every pair in it.
        for f in files:
            names = [c["name"] for c in json.load(open(f))["mlp"]]
            for name in (n for n in names if wanted is None or n in wanted):
                for step, extra in steps:
                    args = ["--threads", str(a.threads), "--config-file", f,
                            "--configs", name, *extra]
                    for who, exe in order:
                        for line in run(exe, args):
                            got[(line["config"], step, who)] = line["median_ms"]
        for who, exe in order:
            if wanted is None or "overhead" in wanted:
                for line in run(exe, ["--overhead", "--threads", "1"]):
                    if line.get("mode") == "fwd_bwd":
                        got[("overhead (us/op)", "fwd_bwd", who)] = line["us_per_op"]
        for (cfg, step, who), v in got.items():
            times.setdefault((cfg, step, who), []).append(v)
            if who == "new" and (cfg, step, "base") in got:
                ratios.setdefault((cfg, step), []).append(v / got[(cfg, step, "base")])
        print(f"round {r + 1}/{a.rounds} done (load {os.getloadavg()[0]:.2f})",
              file=sys.stderr, flush=True)

    lines = [f"Regression guard: working tree against {base}, {a.threads} thread(s), "
             f"{a.rounds} alternated rounds; flagged when the median ratio > "
             f"{1 + a.threshold:.2f} in a run where every round is slower.", "",
             "| config | step | base | new | new/base (median) | rounds | flag |",
             "|---|---|---|---|---|---|---|"]
    flagged = []
    for key in sorted(ratios):
        rs = ratios[key]
        med = statistics.median(rs)
        bad = med > 1 + a.threshold and all(x > 1 for x in rs)
        if bad:
            flagged.append(key)
        b = statistics.median(times[(*key, "base")])
        n = statistics.median(times[(*key, "new")])
        spread = " ".join(f"{x:.3f}" for x in rs)
        lines.append(f"| {key[0]} | {key[1]} | {b:.3f} | {n:.3f} | {med:.3f} | {spread} | "
                     f"{'SLOWER' if bad else ''} |")
    lines += ["", f"{len(flagged)} flagged" + (": " + ", ".join(f"{c} ({s})" for c, s in flagged)
                                                if flagged else "")]
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(a.markdown)), exist_ok=True)
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    sys.exit(1 if flagged else 0)


if __name__ == "__main__":
    main()
