#!/usr/bin/env python3
"""Compare vgrad's training steps with PyTorch (and optionally candle, burn, JAX and the GEMM
floor) in one run, alternating the programs so drift in the machine's speed cancels within each
pair.

Usage (from anywhere; paths are found from this file):

  python3 scripts/compare.py                              # 1 and 2 threads, vgrad vs torch, 3 rounds
  python3 scripts/compare.py --threads 1 --rounds 5 --configs deep_relu,resbn
  python3 scripts/compare.py --floor --candle --burn --jax --overhead --mem --f64 \\
      --markdown out/compare.md --raw out/compare.jsonl   # everything BENCHMARKS.md quotes
  python3 scripts/compare.py --wait-load 0.5 ...          # first wait (up to --wait-max s) for a quiet machine
  python3 scripts/compare.py --wait-cores 1.3 ...         # before each 2-thread config, wait for two real cores

What it runs (each program prints the JSON lines of ../shared/bench/README.md):

  vgrad   `cargo bench --bench peers` (benches/peers.rs), built once, then its executable is run
          directly: `peers --threads N --configs C`.
  torch   `python3 ../shared/bench/torch_mlp.py --threads N --configs C` (skipped when torch is
          not importable, or with --no-torch).
  candle  (--candle) ../shared/bench/candle_mlp, copied to target/peer-src/ (shared/ is
          read-only and cargo must write a lock file) and built there; RAYON_NUM_THREADS=N.
  burn    (--burn) ../shared/bench/burn_mlp with its flex backend (the faster of its two CPU
          backends here), copied and built like candle; RAYON_NUM_THREADS=N. It implements the
          plain MLP configs only, so resbn has no burn figure.
  jax     (--jax) ../shared/bench/jax_mlp.py, when jax is importable.
  floor   (--floor) `step_gemm --impls gemm` from ../shared/bench/gemm built with
          `--features v4` (AVX-512 kernels, as vgrad's GEMM): the time of a step's matmuls
          alone, a lower bound for any engine on that GEMM.

Every program reads the same config file (vgrad's benches/configs.json, a copy of the shared
one, except JAX which has no --config-file flag and reads the shared one). All get the thread
count through their flag and OMP/MKL/OPENBLAS/RAYON/MATMUL_NUM_THREADS.

How it compares: for each thread count, for each of --rounds rounds, for each config, every
program runs once (its own warm-up, then median over the config's steps); the order of the
programs rotates each round so none always goes first. A ratio (peer ms / vgrad ms, vgrad ms /
floor ms) is taken within each round, between runs seconds apart, and the table shows the
median over rounds of the times and of the ratios.

Targets (issue 6): vgrad faster than every peer at the same thread count (measured peers in
pair; peers not measured here by the issue's reference figures, quiet machine, listed in
REFERENCE below); deep configs <= 1.4x the GEMM floor, mid/wide <= 1.05x; overhead chain
<= 0.2 us/op; peak RSS <= candle's; f64 within 2.2x of f32.

Extras: --overhead (1000-op sigmoid chain, fwd+bwd and no-grad forward, at 1 thread),
--mem (peak RSS by /usr/bin/time -v over the configs.json "memory" runs, 1 thread),
--f64 (vgrad f64 vs f32 at each thread count, from `peers --f64-ratio`: f32 and f64 steps in
alternating blocks within one process), --two-calls (vgrad's step as backward, then Sgd::step,
instead of the update fused into backward), --raw FILE (every JSON line with its round and the
load average), --markdown FILE (the report, also printed).

Never run this while another benchmark runs: the machine has two cores.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import corun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIGS = os.path.join(ROOT, "benches", "configs.json")
CONFIGS = DEFAULT_CONFIGS  # --config-file replaces it (e.g. ../shared/bench/grid.json)

# The figures (median ms per step, this machine kind, quiet), used for peers that are
# not measured in the run. Keyed by thread count, then config, then peer.
REFERENCE = {
    1: {
        "deep_sigmoid": {"torch": 4.2, "candle": 4.0, "jax": 1.55},
        "deep_relu": {"torch": 4.0, "candle": 4.5, "burn": 2.1, "jax": 1.46},
        "mid_relu": {"torch": 6.2, "jax": 4.57},
        "wide_relu": {"torch": 59.0, "jax": 50.6},
        "resbn": {"torch": 6.0, "jax": 4.5},
    },
    2: {
        "deep_sigmoid": {"torch": 4.7},
        "deep_relu": {"torch": 4.3},
        "mid_relu": {"torch": 3.5, "jax": 3.35},
        "wide_relu": {"torch": 35.0, "jax": 28.3},
        "resbn": {"torch": 9.6, "jax": 5.2},
    },
}
# The GEMM floor at one thread, used when --floor is not given.
REFERENCE_FLOOR = {1: {"deep_sigmoid": 0.85, "deep_relu": 0.85, "mid_relu": 4.3, "wide_relu": 53.0, "resbn": 3.0}}
# vgrad / floor limits; resbn has none in the issue.
FLOOR_LIMIT = {"deep_sigmoid": 1.4, "deep_relu": 1.4, "mid_relu": 1.05, "wide_relu": 1.05}
OVERHEAD_TARGET_US = 0.2
# candle's peak RSS from the issue (MiB), used when --candle is not given.
REFERENCE_RSS_MIB = {"deep_sigmoid": 9.0, "wide_relu": 58.0}
F64_LIMIT = 2.2


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load1():
    return os.getloadavg()[0]


def thread_env(n):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS", "MATMUL_NUM_THREADS"):
        env[k] = str(n)
    return env


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def run(cmd, env=None, cwd=None):
    """Runs cmd and returns its JSON lines; raises with its stderr on failure."""
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json_lines(p.stdout)


def cargo_executable(args, target_name, env=None, cwd=None):
    """Builds with cargo (--message-format=json) and returns the executable of target_name."""
    log(f"building {target_name}: cargo {' '.join(args)}")
    p = subprocess.run(["cargo", *args, "--message-format=json-render-diagnostics"], env=env, cwd=cwd,
                       stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"cargo {' '.join(args)} failed")
    exe = None
    for m in json_lines(p.stdout):
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == target_name and m.get("executable"):
            exe = m["executable"]
    if not exe:
        sys.exit(f"cargo built no executable named {target_name}")
    return exe


def writable_copy(src, name):
    """A writable copy of a shared (read-only) cargo project under target/peer-src/."""
    dst = os.path.join(ROOT, "target", "peer-src", name)
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("target"))
    for d, _, files in os.walk(dst):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    return dst


def build_shared_rust(shared, project, build_dir, binary=None, args=()):
    """Builds a writable copy of the shared cargo project `project` (release, with `args`) in
    target/peer-build/`build_dir` and returns the path of its executable `binary` (by default
    the project's name)."""
    src = writable_copy(os.path.join(shared, project), project)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "peer-build", build_dir))
    return cargo_executable(["build", "--release", *args, "--manifest-path", os.path.join(src, "Cargo.toml")],
                            binary or project, env=env)


def importable(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


class Peer:
    """A program that times one config per invocation and prints JSON lines."""

    def __init__(self, name, cmd, env_fn=thread_env, config_flag=True, threads_flag=True):
        self.name, self.cmd, self.env_fn = name, cmd, env_fn
        self.config_flag, self.threads_flag = config_flag, threads_flag

    def argv(self, threads, extra):
        argv = list(self.cmd)
        if self.threads_flag:
            argv += ["--threads", str(threads)]
        if self.config_flag:
            argv += ["--config-file", CONFIGS]
        elif CONFIGS != DEFAULT_CONFIGS:
            # A peer that reads the shared file by default still gets another file by name.
            argv += ["--config-file", CONFIGS]
        return argv + extra

    def run(self, threads, extra):
        return run(self.argv(threads, extra), env=self.env_fn(threads))


def build_peers(a, shared):
    peers = {}
    exe = cargo_executable(["bench", "--bench", "peers", "--no-run"], "peers", cwd=ROOT)
    step = ["--two-calls"] if a.two_calls else (["--readme"] if a.readme else [])
    peers["vgrad"] = Peer("vgrad", [exe] + step)
    if not a.no_torch:
        if importable("torch"):
            peers["torch"] = Peer("torch", [sys.executable, os.path.join(shared, "torch_mlp.py")])
        else:
            log("torch is not importable: running vgrad alone")
    if a.jax:
        if importable("jax"):
            peers["jax"] = Peer("jax", [sys.executable, os.path.join(shared, "jax_mlp.py")], config_flag=False)
        else:
            log("--jax: jax is not importable, skipped")
    if a.candle:
        exe = build_shared_rust(shared, "candle_mlp", "candle")
        # candle takes no --threads flag: RAYON_NUM_THREADS sets its pool and gemm parallelism.
        peers["candle"] = Peer("candle", [exe, "train"], threads_flag=False)
        peers["candle_overhead"] = Peer("candle", [exe, "overhead"], threads_flag=False)
    if a.burn:
        exe = build_shared_rust(shared, "burn_mlp", "burn")
        peers["burn"] = Peer("burn", [exe, "train", "--backend", "flex"], threads_flag=False)
    if a.floor:
        exe = build_shared_rust(shared, "gemm", "gemm", binary="step_gemm", args=["--features", "v4", "--bin", "step_gemm"])
        peers["floor"] = Peer("floor", [exe, "--impls", "gemm"])
    return peers


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=2):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"


class Recorder:
    def __init__(self, path):
        self.lines = []
        self.path = path
        self.loads = []

    def load_now(self):
        """The 1-min load average now, remembered for the report's header."""
        self.loads.append(load1())
        return self.loads[-1]

    def add(self, line, **extra):
        line = dict(line, **extra)
        self.lines.append(line)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")
        return line


def step_args(a):
    out = []
    if a.steps is not None:
        out += ["--steps", str(a.steps)]
    if a.warmup is not None:
        out += ["--warmup", str(a.warmup)]
    return out


def compare_steps(a, peers, names, threads, rec):
    """Rounds of every program on every config; returns {config: {peer: [ms per round]}} and
    the per-round ratios {config: {peer: [peer/vgrad]}} ('floor' as vgrad/floor)."""
    order = [p for p in ("vgrad", "torch", "jax", "candle", "burn", "floor") if p in peers]
    times = {c: {p: [] for p in order} for c in names}
    ratios = {c: {p: [] for p in order if p != "vgrad"} for c in names}
    for r in range(a.rounds):
        rot = order[r % len(order):] + order[: r % len(order)]
        for c in names:
            got = {}
            cores = None
            if threads > 1 and a.wait_cores is not None:
                # The host may run both vCPUs on one core, or on two dies, for seconds to
                # minutes (see corun.py); a 2-thread run then measures that, so wait it out and
                # record what was seen.
                cores = corun.wait_for_cores(a.wait_cores, a.wait_max, log, cpus=tuple(range(threads)))
            for p in rot:
                load = rec.load_now()
                try:
                    lines = peers[p].run(threads, ["--configs", c] + ([] if p == "floor" else step_args(a)))
                except RuntimeError as e:
                    # One failed run (a peer lacking a config, say) should not lose the others.
                    log(f"  {p} failed on {c}: {e}")
                    lines = []
                want = "step_gemm" if p == "floor" else "mlp"
                ms = [l["median_ms"] for l in lines if l.get("bench") == want and l.get("config") == c]
                for l in lines:
                    rec.add(l, round=r, load1=load,
                            **({} if cores is None else {"corun": round(cores[0], 3), "round_trip_ns": round(cores[1])}))
                got[p] = ms[0] if ms else None
                times[c][p].append(got[p])
            seen = "" if cores is None else f" (co-run {cores[0]:.2f}, round trip {cores[1]:.0f} ns)"
            log(f"  threads={threads} round {r + 1}/{a.rounds} {c}{seen}: " + ", ".join(f"{p} {fmt(got[p])}" for p in rot))
            v = got["vgrad"]
            for p in ratios[c]:
                if got[p] and v:
                    ratios[c][p].append(v / got[p] if p == "floor" else got[p] / v)
    return times, ratios


def steps_table(names, threads, times, ratios, floor_measured):
    peers = [p for p in ("torch", "jax", "candle", "burn") if names and p in times[names[0]]]
    head = ["config", "vgrad ms"]
    for p in peers:
        head += [f"{p} ms", f"{p}/vgrad"]
    head += ["floor ms", "vgrad/floor", "fastest peer (issue figures)", "target met?"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in names:
        v = med(times[c]["vgrad"])
        row = [c, fmt(v)]
        why = []
        for p in peers:
            pm, pr = med(times[c][p]), med(ratios[c][p])
            row += [fmt(pm), fmt(pr) + "×" if pr else "—"]
            if pr is not None and pr <= 1.0:
                why.append(f"{p} {fmt(pm)} ms is faster")
        if floor_measured:
            fm, fr = med(times[c]["floor"]), med(ratios[c]["floor"])
        else:
            fm = REFERENCE_FLOOR.get(threads, {}).get(c)
            fr = v / fm if (fm and v) else None
        row += [fmt(fm) + ("" if floor_measured or fm is None else " (issue)"), fmt(fr) + "×" if fr else "—"]
        lim = FLOOR_LIMIT.get(c)
        if lim and fr and fr > lim:
            why.append(f"{fr:.2f}× floor > {lim}×")
        refs = {p: ms for p, ms in REFERENCE.get(threads, {}).get(c, {}).items() if p not in peers}
        if refs:
            best = min(refs, key=refs.get)
            row.append(f"{best} {fmt(refs[best])}")
            if v and refs[best] <= v:
                why.append(f"{best} {fmt(refs[best])} ms (issue) is faster")
        else:
            row.append("—")
        row.append("yes" if not why else "no: " + "; ".join(why))
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def compare_overhead(a, peers, rec):
    order = [p for p in ("vgrad", "torch", "candle_overhead") if p in peers]
    us = {p: {"fwd_bwd": [], "fwd_nograd": []} for p in order}
    for r in range(a.rounds):
        rot = order[r % len(order):] + order[: r % len(order)]
        for p in rot:
            load = rec.load_now()
            for l in peers[p].run(1, ["--overhead"] if p != "candle_overhead" else []):
                rec.add(l, round=r, load1=load)
                if l.get("bench") == "overhead":
                    us[p][l["mode"]].append(l["us_per_op"])
        log(f"  overhead round {r + 1}/{a.rounds}: " + ", ".join(f"{p} {us[p]['fwd_bwd'][-1]:.3f}" for p in rot))
    rows = ["| peer | fwd+bwd µs/op | no-grad fwd µs/op | target ≤ 0.2 µs/op (fwd+bwd) |", "|---|---|---|---|"]
    for p in order:
        fb, fn = med(us[p]["fwd_bwd"]), med(us[p]["fwd_nograd"])
        name = "candle" if p == "candle_overhead" else p
        tgt = ("yes" if fb <= OVERHEAD_TARGET_US else f"no: {fb / OVERHEAD_TARGET_US:.2f}× the target") if p == "vgrad" else ""
        rows.append(f"| {name} | {fb:.3f} | {fn:.3f} | {tgt} |")
    if "candle_overhead" not in peers:
        rows.append("| candle (issue) | 1.5 | — | |")
    return "\n".join(rows)


def peak_rss_kib(cmd, env):
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return int(m.group(1)) if m else None


def compare_memory(a, peers, rec):
    if not os.path.exists("/usr/bin/time"):
        return "(skipped: /usr/bin/time missing; `apt-get install -y time`)"
    cfg = json.load(open(CONFIGS))["memory"]
    order = [p for p in ("vgrad", "torch", "candle") if p in peers]
    rows = ["| config | " + " | ".join(f"{p} MiB" for p in order) + " | candle MiB (issue) | target met? |",
            "|" + "---|" * (len(order) + 3)]
    for c in cfg["configs"]:
        rss = {}
        for p in order:
            argv = peers[p].argv(1, ["--configs", c, "--steps", str(cfg["steps"]), "--warmup", "0", "--mem"])
            rec.load_now()
            kib = peak_rss_kib(argv, thread_env(1))
            rss[p] = kib / 1024 if kib else None
            rec.add({"bench": "peak_rss", "peer": p, "config": c, "threads": 1, "steps": cfg["steps"], "max_rss_kib": kib})
        ref = REFERENCE_RSS_MIB.get(c)
        bound = rss.get("candle") or ref
        v = rss["vgrad"]
        met = "—" if not (bound and v) else ("yes" if v <= bound else f"no: {v / bound:.2f}× candle")
        rows.append(f"| {c} | " + " | ".join(fmt(rss[p], 1) for p in order) + f" | {fmt(ref, 0)} | {met} |")
    return "\n".join(rows)


def compare_f64(a, peers, names, threads, rec):
    """f64 against f32, from vgrad's --f64-ratio runs: each interleaves blocks of f32 and f64
    steps in one process, so both see the same moment of the machine (the f64 step's time
    drifts by up to 15% over seconds on this shared VM, f32's by ~3%)."""
    v = peers["vgrad"]
    ms = {c: {"f32": [], "f64": []} for c in names}
    ratio = {c: [] for c in names}
    for r in range(a.rounds):
        for c in names:
            load = rec.load_now()
            lines = v.run(threads, ["--configs", c, "--f64-ratio"] + step_args(a))
            for l in lines:
                rec.add(l, round=r, load1=load)
            got = [l for l in lines if l.get("bench") == "f64_ratio"][0]
            ms[c]["f32"].append(got["f32_median_ms"])
            ms[c]["f64"].append(got["f64_median_ms"])
            ratio[c].append(got["ratio"])
            log(f"  f64 threads={threads} round {r + 1}/{a.rounds} {c}: f32 {fmt(got['f32_median_ms'])} "
                f"f64 {fmt(got['f64_median_ms'])} ratio {got['ratio']:.3f} "
                f"(blocks p10-p90 {got['block_ratio_p10']:.2f}-{got['block_ratio_p90']:.2f})")
    # The rounds' spread beside the median: one figure alone says less than it seems to.
    rows = ["| config | f32 ms | f64 ms | f64/f32 | rounds' f64/f32 | target ≤ 2.2× |",
            "|---|---|---|---|---|---|"]
    for c in names:
        rt = med(ratio[c])
        spread = f"{min(ratio[c]):.2f}–{max(ratio[c]):.2f}×"
        rows.append(f"| {c} | {fmt(med(ms[c]['f32']))} | {fmt(med(ms[c]['f64']))} | {rt:.2f}× | {spread} | "
                    + ("yes" if rt <= F64_LIMIT else "no") + " |")
    return "\n".join(rows)


def wait_quiet(limit, max_s):
    t0 = time.time()
    while load1() > limit and time.time() - t0 < max_s:
        log(f"load {load1():.2f} > {limit}: waiting")
        time.sleep(15)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=3, help="alternation rounds per config (default 3)")
    ap.add_argument("--configs", default=None, help="comma list of config names (default: all)")
    ap.add_argument("--steps", type=int, default=None, help="override every config's step count")
    ap.add_argument("--warmup", type=int, default=None, help="override every config's warm-up steps")
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "bench"), help="the shared peer benchmarks")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--candle", action="store_true", help="also run candle (builds it once)")
    ap.add_argument("--burn", action="store_true", help="also run burn, flex backend (builds it once)")
    ap.add_argument("--jax", action="store_true", help="also run JAX when importable")
    ap.add_argument("--floor", action="store_true", help="also run the GEMM floor (step_gemm, v4)")
    ap.add_argument("--overhead", action="store_true", help="per-op overhead chain (1 thread)")
    ap.add_argument("--mem", action="store_true", help="peak RSS by /usr/bin/time -v (1 thread)")
    ap.add_argument("--f64", action="store_true", help="vgrad f64 vs f32")
    ap.add_argument("--two-calls", action="store_true", help="vgrad steps as backward, then Sgd::step")
    ap.add_argument("--readme", action="store_true",
                    help="vgrad steps as README.md's loop (backward, then step with the tape alive)")
    ap.add_argument("--config-file", default=None,
                    help="the configs every peer runs (default benches/configs.json; e.g. ../shared/bench/grid.json)")
    ap.add_argument("--no-steps", action="store_true", help="skip the training-step comparison")
    ap.add_argument("--wait-load", type=float, default=None, help="wait until the 1-min load is below this")
    ap.add_argument("--wait-max", type=float, default=600, help="longest wait for --wait-load or --wait-cores, seconds")
    ap.add_argument("--wait-cores", type=float, default=None,
                    help="before each config of a multi-thread round, wait until the co-run factor (scripts/corun.py) is below this "
                         "and the CPUs share a die")
    ap.add_argument("--markdown", default=None, help="also write the report here")
    ap.add_argument("--raw", default=None, help="append every JSON line (with round, load) here")
    a = ap.parse_args()
    if a.config_file:
        global CONFIGS
        CONFIGS = os.path.abspath(a.config_file)

    shared = os.path.abspath(a.shared)
    shared_cfg = os.path.join(shared, "configs.json")
    if CONFIGS == DEFAULT_CONFIGS and os.path.exists(shared_cfg) and json.load(open(shared_cfg)) != json.load(open(CONFIGS)):
        log(f"WARNING: benches/configs.json differs from {shared_cfg}; copy the shared one over")
    all_names = [c["name"] for c in json.load(open(CONFIGS))["mlp"]]
    names = a.configs.split(",") if a.configs else all_names
    threads = [int(t) for t in a.threads.split(",")]
    if a.raw and os.path.dirname(a.raw):
        os.makedirs(os.path.dirname(a.raw), exist_ok=True)

    peers = build_peers(a, shared)
    if a.wait_load is not None:
        wait_quiet(a.wait_load, a.wait_max)
    rec = Recorder(a.raw)
    start = os.getloadavg()
    out = []
    if not a.no_steps:
        for t in threads:
            log(f"training steps at {t} thread(s)")
            times, ratios = compare_steps(a, peers, names, t, rec)
            out.append(f"### Training step, {t} thread{'s' if t > 1 else ''} (median ms per step, {a.rounds} alternated rounds)\n\n"
                       + steps_table(names, t, times, ratios, "floor" in peers))
    if a.overhead:
        log("overhead chain")
        out.append("### Per-op overhead: 1×1 sigmoid chain, 1000 ops, 1 thread\n\n" + compare_overhead(a, peers, rec))
    if a.mem:
        log("peak RSS")
        out.append("### Peak RSS (`/usr/bin/time -v`, 1 thread, the configs.json memory runs)\n\n" + compare_memory(a, peers, rec))
    if a.f64:
        for t in threads:
            log(f"f64 vs f32 at {t} thread(s)")
            out.append(f"### vgrad f64 vs f32, {t} thread{'s' if t > 1 else ''}\n\n" + compare_f64(a, peers, names, t, rec))
    end = os.getloadavg()
    seen = rec.loads or [start[0]]
    header = (f"Load average (1/5/15 min) at start {start[0]:.2f}/{start[1]:.2f}/{start[2]:.2f}, at end "
              f"{end[0]:.2f}/{end[1]:.2f}/{end[2]:.2f}; 1-min load before each timed run: "
              f"min {min(seen):.2f}, median {statistics.median(seen):.2f}, max {max(seen):.2f}.")
    report = header + "\n\n" + "\n\n".join(out) + "\n"
    print(report)
    if a.markdown:
        if os.path.dirname(a.markdown):
            os.makedirs(os.path.dirname(a.markdown), exist_ok=True)
        with open(a.markdown, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
