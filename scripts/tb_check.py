#!/usr/bin/env python3
"""Reads vgrad's TensorBoard runs with TensorBoard's own reader and checks them against the
monitor's records (issue 20, item 1). Not part of `cargo test`: it needs Python and
`pip install tensorboard`.

    # the flagship: one run per network under OUT/tensorboard, records in OUT/records.csv
    cargo run --release --example vanishing -- --out out/vanishing
    python3 scripts/tb_check.py out/vanishing/tensorboard --csv out/vanishing/records.csv

    # one run, against the monitor's JSON export (GradMonitor::to_json / monitor::write_json)
    python3 scripts/tb_check.py RUN_DIR --json records.json

With --csv (the example's records.csv, whose first column names the network), each
subdirectory of LOGDIR named like a network is a run; with --json, LOGDIR is the run.

For every recorded step and layer L it checks, through `EventAccumulator` (TensorBoard's reader,
which checks each record's CRC as it loads), that the run has the scalars `loss`,
`grad_norm/L`, `update_ratio/L` (when recorded), `dead_fraction/L` and `saturated_fraction/L`
(when the activation after L has them) at that step with the recorded value (to f32 precision),
and, where the run has histograms, `grad/L` and `activation/L` at that step whose bucket counts
add up to their `num`. It then checks that the run holds no tag or step the records do not
explain (only `lr`, and `loss` at the unwatched steps after the first epoch, are extra). Prints
one line per run and exits non-zero on the first mismatch.
"""

import argparse
import csv
import json
import math
import os
import sys
from collections import defaultdict

from tensorboard.backend.event_processing.event_accumulator import (
    HISTOGRAMS,
    SCALARS,
    EventAccumulator,
)


def num(s):
    return None if s in ("", None) else float(s)


def records_from_csv(path):
    """network -> step -> {"loss": x, "layers": [{name, grad_norm, update_ratio, dead, saturated}]}"""
    runs = defaultdict(dict)
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            rec = runs[row["network"]].setdefault(step, {"loss": num(row["loss"]), "layers": []})
            rec["layers"].append(
                {
                    "name": row["layer"],
                    "grad_norm": num(row["weight_grad_norm"]),
                    "update_ratio": num(row["update_ratio"]),
                    "dead": num(row["activation_dead"]),
                    "saturated": num(row["activation_saturated"]),
                }
            )
    return runs


def records_from_json(path):
    with open(path) as f:
        doc = json.load(f)
    steps = {}
    for s in doc["steps"]:
        layers = []
        for l in s["layers"]:
            a = l["activation"] or {}
            layers.append(
                {
                    "name": l["name"],
                    "grad_norm": l["weight_grad_norm"],
                    "update_ratio": l["update_ratio"],
                    "dead": a.get("dead"),
                    "saturated": a.get("saturated"),
                }
            )
        steps[s["step"]] = {"loss": s["loss"], "layers": layers}
    return steps


def f32_close(a, b):
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + 1e-44


class Mismatch(Exception):
    pass


def check_run(run_dir, steps):
    acc = EventAccumulator(run_dir, size_guidance={SCALARS: 0, HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    histos = {t: {e.step: e.histogram_value for e in acc.Histograms(t)} for t in tags["histograms"]}
    with_histograms = bool(histos)
    seen = defaultdict(set)  # tag -> steps explained by the records
    checked = 0

    def scalar(tag, step, want):
        nonlocal checked
        got = scalars.get(tag, {}).get(step)
        if got is None:
            raise Mismatch(f"{run_dir}: no scalar {tag} at step {step}")
        if not f32_close(got, want):
            raise Mismatch(f"{run_dir}: {tag}@{step} is {got!r}, the records say {want!r}")
        seen[tag].add(step)
        checked += 1

    def histogram(tag, step):
        nonlocal checked
        h = histos.get(tag, {}).get(step)
        if h is None:
            raise Mismatch(f"{run_dir}: no histogram {tag} at step {step}")
        if sum(h.bucket) != h.num or len(h.bucket) != len(h.bucket_limit):
            raise Mismatch(f"{run_dir}: histogram {tag}@{step} does not add up")
        if list(h.bucket_limit) != sorted(h.bucket_limit):
            raise Mismatch(f"{run_dir}: histogram {tag}@{step} limits not increasing")
        seen[tag].add(step)
        checked += 1

    for step, rec in sorted(steps.items()):
        if rec["loss"] is not None:
            scalar("loss", step, rec["loss"])
        for l in rec["layers"]:
            name = l["name"] or "root"
            scalar(f"grad_norm/{name}", step, l["grad_norm"])
            for key, prefix in [
                ("update_ratio", "update_ratio"),
                ("dead", "dead_fraction"),
                ("saturated", "saturated_fraction"),
            ]:
                if l[key] is not None:
                    scalar(f"{prefix}/{name}", step, l[key])
            if with_histograms:
                histogram(f"grad/{name}", step)
                histogram(f"activation/{name}", step)

    # Nothing unexplained: every tag's steps are the recorded ones, but for lr and later losses.
    for tag, by_step in list(scalars.items()) + list(histos.items()):
        if tag == "lr":
            continue
        extra = set(by_step) - seen[tag]
        if tag == "loss":
            extra = {s for s in extra if s <= max(steps)}
        if extra:
            raise Mismatch(f"{run_dir}: {tag} at steps {sorted(extra)[:5]} the records do not have")
    extra_scalars = len(scalars.get("loss", {})) - len(seen["loss"]) + len(scalars.get("lr", {}))
    return checked, len(tags["scalars"]), len(tags["histograms"]), extra_scalars


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("logdir")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--csv", help="the example's records.csv (first column: network)")
    g.add_argument("--json", help="one run's GradMonitor::to_json export")
    args = p.parse_args()
    if args.csv:
        runs = {os.path.join(args.logdir, net): steps for net, steps in records_from_csv(args.csv).items()}
    else:
        runs = {args.logdir: records_from_json(args.json)}
    try:
        total = 0
        for run_dir, steps in sorted(runs.items()):
            if not os.path.isdir(run_dir):
                raise Mismatch(f"{run_dir}: no such run")
            checked, n_scalar_tags, n_histo_tags, extra = check_run(run_dir, steps)
            total += checked
            print(
                f"ok {os.path.basename(run_dir)}: {len(steps)} steps, {n_scalar_tags} scalar tags, "
                f"{n_histo_tags} histogram tags, {checked} values match the records "
                f"(+{extra} lr/loss values beyond them)"
            )
        print(f"all {len(runs)} runs match: {total} values checked")
    except Mismatch as e:
        print(f"MISMATCH {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
