//! vgrad's side of the peer comparison: the shared training-step configs and the overhead
//! chain, timed the way `../shared/bench/torch_mlp.py` times them, printing the same JSON lines
//! (`{"bench": "mlp", "peer": "vgrad", …, "median_ms": …}`) so results from every library can be
//! laid side by side. `scripts/compare.py` runs this binary alternately with the peers.
//!
//! ```sh
//! cargo bench --bench peers -- --threads 1                      # every config, one line each
//! cargo bench --bench peers -- --threads 2 --configs deep_relu,resbn --steps 200 --warmup 20
//! cargo bench --bench peers -- --overhead                       # 1000-op sigmoid chain
//! cargo bench --bench peers -- --f64                            # the same steps in f64
//! cargo bench --bench peers -- --f64-ratio --configs mid_relu     # f64/f32, interleaved
//! /usr/bin/time -v target/release/deps/peers-… --configs deep_sigmoid --steps 50 --warmup 0 --mem
//! ```
//!
//! Flags: `--threads N` (matrix-product threads, default 1; also sets `RAYON_NUM_THREADS` for
//! the GEMM's pool), `--configs a,b` (default all), `--steps S` / `--warmup W` (default: the
//! config's), `--overhead`, `--mem` (run the steps and print one `mem_run` line: for peak-RSS
//! runs under `/usr/bin/time -v`), `--f64`, `--two-calls` (backward, then `Sgd::step`, instead
//! of the update fused into backward), `--readme` (README.md's loop: `backward`, then `step`
//! with the tape still alive), `--flush on|off|default` (subnormals: flushed everywhere on the
//! thread, kept everywhere, or vgrad's default of flushing inside its own work), `--f64-ratio` (see below), `--config-file F` (default:
//! the copy compiled in).
//!
//! Timing: `warmup` untimed steps, then each of `steps` steps timed on its own with
//! `Instant`; the line reports the median (and p10/p90/min/mean) in milliseconds.
//!
//! `--f64-ratio` times f32 and f64 in one process, in alternating blocks of [`RATIO_BLOCK`]
//! steps (the first two of each block untimed, to refill the cache after the other type's
//! block), and prints one `f64_ratio` line per config: both medians, their ratio, and the
//! spread of the per-block ratios. On this shared VM the f64 step's time drifts by up to 15%
//! over seconds while f32's barely moves, so two separate runs minutes apart measure the
//! machine's moment as much as the ratio; blocks a tenth of a second apart see the same moment.

mod common;

use common::{chain_fwd_bwd, chain_fwd_nograd, Configs, Stats, StepConfig, StepKind, Trainer};
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::Instant;
use vgrad::{Element, Tensor};

/// Command-line options (see the module docs).
struct Args {
    threads: usize,
    configs: Option<Vec<String>>,
    steps: Option<usize>,
    warmup: Option<usize>,
    overhead: bool,
    mem: bool,
    f64: bool,
    f64_ratio: bool,
    kind: StepKind,
    config_file: Option<String>,
    flush: Option<bool>,
}

fn parse_args() -> Args {
    let mut a = Args {
        threads: 1,
        configs: None,
        steps: None,
        warmup: None,
        overhead: false,
        mem: false,
        f64: false,
        f64_ratio: false,
        kind: StepKind::Fused,
        config_file: None,
        flush: None,
    };
    let mut it = std::env::args().skip(1);
    let usage = "usage: peers [--threads N] [--configs a,b] [--steps S] [--warmup W] \
                 [--overhead] [--mem] [--f64] [--f64-ratio] [--two-calls] [--readme] [--flush on|off|default] [--config-file F]";
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| panic!("{name} needs a value; {usage}"))
        };
        let number = |name: &str, v: String| -> usize {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number; {usage}"))
        };
        match flag.as_str() {
            "--threads" => a.threads = number("--threads", value("--threads")).max(1),
            "--configs" => {
                a.configs = Some(value("--configs").split(',').map(String::from).collect())
            }
            "--steps" => a.steps = Some(number("--steps", value("--steps"))),
            "--warmup" => a.warmup = Some(number("--warmup", value("--warmup"))),
            "--config-file" => a.config_file = Some(value("--config-file")),
            "--overhead" => a.overhead = true,
            "--mem" => a.mem = true,
            "--f64" => a.f64 = true,
            "--f64-ratio" => a.f64_ratio = true,
            "--two-calls" => a.kind = StepKind::TwoCalls,
            "--readme" => a.kind = StepKind::Readme,
            "--flush" => {
                a.flush = match value("--flush").as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    "default" => None,
                    v => panic!("--flush {v:?}: on, off or default; {usage}"),
                }
            }
            // `cargo bench` passes `--bench` to every harness-less bench binary.
            "--bench" => {}
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?}; {usage}"),
        }
    }
    a
}

/// Prints one JSON line, flushed, as `emit` in common.py does.
fn emit(v: Value) {
    println!("{v}");
}

/// `base` with the fields of `stats` added.
fn with_stats(mut base: Value, s: &Stats) -> Value {
    let round4 = |x: f64| (x * 1e4).round() / 1e4;
    let fields = [
        ("median_ms", s.median_ms),
        ("p10_ms", s.p10_ms),
        ("p90_ms", s.p90_ms),
        ("min_ms", s.min_ms),
        ("mean_ms", s.mean_ms),
    ];
    for (k, v) in fields {
        base[k] = json!(round4(v));
    }
    base
}

fn run_config<T: Element>(c: &Configs, cfg: &StepConfig, a: &Args) {
    let mut trainer = Trainer::<T>::new(cfg, c.lr, c.seed);
    trainer.kind = a.kind;
    let warmup = a.warmup.unwrap_or(cfg.warmup);
    let steps = a.steps.unwrap_or(cfg.steps);
    for _ in 0..warmup {
        black_box(trainer.step());
    }
    let mut times = Vec::with_capacity(steps);
    let (mut first, mut last) = (None, None);
    for i in 0..steps {
        let t = Instant::now();
        let loss = black_box(trainer.step());
        times.push(t.elapsed().as_secs_f64());
        if i == 0 {
            first = Some(loss.to_f64().expect("a float converts to f64"));
        }
        last = Some(loss.to_f64().expect("a float converts to f64"));
    }
    if a.mem {
        emit(
            json!({"bench": "mem_run", "peer": "vgrad", "config": cfg.name, "dtype": T::DTYPE.to_lowercase(),
                    "threads": a.threads, "steps": steps, "loss_last": last}),
        );
        return;
    }
    let s = Stats::of(&times);
    let fl = cfg.flops_per_step();
    let mut line = with_stats(
        json!({"bench": "mlp", "peer": "vgrad", "peer_version": env!("CARGO_PKG_VERSION"),
               "config": cfg.name, "dtype": T::DTYPE.to_lowercase(), "threads": a.threads,
               "warmup": warmup, "steps": steps, "step": a.kind.name()}),
        &s,
    );
    line["steps_per_s"] = json!((1e5 / s.median_ms).round() / 100.0);
    line["flops_per_step"] = json!(fl);
    line["gflops"] = json!((fl as f64 / (s.median_ms * 1e-3) / 1e7).round() / 100.0);
    line["loss_first"] = json!(first);
    line["loss_last"] = json!(last);
    emit(line);
}

/// Steps per block in `--f64-ratio` (the first [`RATIO_SKIP`] of each untimed).
const RATIO_BLOCK: usize = 20;
const RATIO_SKIP: usize = 2;

/// Runs one block of [`RATIO_BLOCK`] steps, appends the timed ones' seconds to `times` and
/// returns their median in milliseconds.
fn time_block<T: Element>(t: &mut Trainer<T>, times: &mut Vec<f64>) -> f64 {
    let start = times.len();
    for i in 0..RATIO_BLOCK {
        let s = Instant::now();
        black_box(t.step());
        if i >= RATIO_SKIP {
            times.push(s.elapsed().as_secs_f64());
        }
    }
    Stats::of(&times[start..]).median_ms
}

/// `--f64-ratio`: f32 and f64 steps of one config in alternating blocks (see the module docs).
fn run_ratio(c: &Configs, cfg: &StepConfig, a: &Args) {
    let mut t32 = Trainer::<f32>::new(cfg, c.lr, c.seed);
    let mut t64 = Trainer::<f64>::new(cfg, c.lr, c.seed);
    (t32.kind, t64.kind) = (a.kind, a.kind);
    for _ in 0..a.warmup.unwrap_or(cfg.warmup) {
        black_box(t32.step());
        black_box(t64.step());
    }
    let blocks = a
        .steps
        .unwrap_or(cfg.steps)
        .div_ceil(RATIO_BLOCK - RATIO_SKIP);
    let (mut s32, mut s64, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..blocks {
        let m32 = time_block(&mut t32, &mut s32);
        let m64 = time_block(&mut t64, &mut s64);
        ratios.push(m64 / m32);
    }
    let (m32, m64) = (Stats::of(&s32).median_ms, Stats::of(&s64).median_ms);
    // Stats of the ratios, through the seconds-to-ms scaling Stats applies.
    let r = Stats::of(&ratios.iter().map(|x| x * 1e-3).collect::<Vec<_>>());
    let round3 = |x: f64| (x * 1e3).round() / 1e3;
    emit(
        json!({"bench": "f64_ratio", "peer": "vgrad", "config": cfg.name, "threads": a.threads,
                "step": a.kind.name(), "blocks": blocks, "block_steps": RATIO_BLOCK - RATIO_SKIP,
                "f32_median_ms": round3(m32), "f64_median_ms": round3(m64),
                "ratio": round3(m64 / m32), "block_ratio_p10": round3(r.p10_ms),
                "block_ratio_median": round3(r.median_ms), "block_ratio_p90": round3(r.p90_ms)}),
    );
}

/// One pass of the overhead chain: input, number of ops; returns a value to keep the work alive.
type ChainFn = fn(&Tensor<f32>, usize) -> f32;

fn run_overhead(c: &Configs, a: &Args) {
    let o = &c.overhead;
    let x = Tensor::<f32>::full(&o.shape, 0.5);
    let modes: [(&str, ChainFn); 2] =
        [("fwd_bwd", chain_fwd_bwd), ("fwd_nograd", chain_fwd_nograd)];
    for (mode, f) in modes {
        for _ in 0..o.warmup {
            black_box(f(black_box(&x), o.n_ops));
        }
        let times: Vec<f64> = (0..o.reps)
            .map(|_| {
                let t = Instant::now();
                black_box(f(black_box(&x), o.n_ops));
                t.elapsed().as_secs_f64()
            })
            .collect();
        let s = Stats::of(&times);
        let mut line = with_stats(
            json!({"bench": "overhead", "peer": "vgrad", "peer_version": env!("CARGO_PKG_VERSION"),
                   "name": o.name, "mode": mode, "threads": a.threads, "n_ops": o.n_ops,
                   "reps": o.reps}),
            &s,
        );
        line["us_per_op"] = json!((s.median_ms * 1e6 / o.n_ops as f64).round() / 1e3);
        emit(line);
    }
}

fn main() {
    let a = parse_args();
    vgrad::tensor::set_num_threads(a.threads);
    if let Some(on) = a.flush {
        vgrad::set_flush_denormal(on);
    }
    let c = match &a.config_file {
        Some(path) => Configs::parse(
            &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}")),
        ),
        None => Configs::builtin(),
    };
    if a.overhead {
        run_overhead(&c, &a);
        return;
    }
    let names: Vec<String> = a
        .configs
        .clone()
        .unwrap_or_else(|| c.steps.iter().map(|s| s.name.clone()).collect());
    for n in &names {
        let cfg = c.step(n);
        if a.f64_ratio {
            run_ratio(&c, cfg, &a);
        } else if a.f64 {
            run_config::<f64>(&c, cfg, &a);
        } else {
            run_config::<f32>(&c, cfg, &a);
        }
    }
}
