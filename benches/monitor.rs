//! What the gradient monitor costs: one SGD training step of the 50-layer, width-64 ReLU network
//! (He init, batch 64, MSE, f32) bare, with the monitor recording every step, and with it
//! recording every tenth step.
//!
//! Run with `cargo bench --bench monitor`. The target is < 15% overhead for recording
//! every step.
//!
//! Measured on the project's 2-vCPU machine while other builds ran. `MONITOR_PROFILE=compare`
//! (below; 2000 rounds, median wall-clock time per step, three runs): bare 1.26–1.29 ms;
//! recording every step +11.5% to +12.2%, every 10th step +2.0% to +2.4%. The same harness on
//! the monitor before its statistics passes were rewritten (four chains of f64 sums, fused
//! passes): +21%, and +2% to +4%. Re-run on main after merging with the fused Linear (which made
//! the bare step cheaper): bare 1.28–1.30 ms, every step +12.8% and +14.1%, every 10th +2.8% and
//! +3.2% (two runs, 2000 rounds). In instructions (callgrind, `MONITOR_PROFILE=every`, the AVX2
//! path valgrind runs): bare 17.81M per step, every step 19.35M (+8.7%), every 10th step 17.98M
//! (+0.9%); before, 17.85M, 20.08M (+12.5%) and 18.09M (+1.4%).
//!
//! Criterion's runs, one variant after another, moved by up to ±15% between runs here, and the
//! first benchmark of a run tended to read slow: with a second bare benchmark added at the end
//! (an experiment), bare measured 1.41–1.47 ms first and 1.22–1.29 ms last in the same process.
//! Criterion's figures are best compared within one run, with that in mind.
//!
//! Times are the benchmark thread's CPU time (Linux's `/proc/thread-self/schedstat`; wall-clock
//! time elsewhere), with the matmul pool limited to that thread: on a shared two-core machine
//! wall-clock time mostly measures the other tenants.

use criterion::{criterion_group, Criterion};
use rand::{rngs::StdRng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};
use vgrad::monitor::{GradMonitor, MonitorConfig};
use vgrad::nn::init::Init;
use vgrad::nn::VisitorMut;
use vgrad::nn::{Activation, Ctx, Linear, LinearConfig, Module, Param, ParamGrads, Sequential};
use vgrad::{Tape, Tensor};

const DEPTH: usize = 50;
const WIDTH: usize = 64;
const BATCH: usize = 64;
/// Small enough that thousands of benchmark iterations keep the network stable.
const LR: f32 = 1e-4;

fn net() -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = Sequential::new();
    for i in 0..DEPTH {
        let out = if i + 1 == DEPTH { 10 } else { WIDTH };
        let cfg = LinearConfig::init(Init::HE_NORMAL);
        net = net.push(Linear::with_config(WIDTH, out, cfg, &mut rng).unwrap());
        if i + 1 < DEPTH {
            net = net.push(Activation::Relu);
        }
    }
    net
}

fn data() -> (Tensor<f32>, Tensor<f32>) {
    let mut rng = StdRng::seed_from_u64(7);
    let n = Init::Normal {
        mean: 0.0,
        std: 1.0,
    };
    (
        n.tensor(&[BATCH, WIDTH], &mut rng).unwrap(),
        n.tensor(&[BATCH, 10], &mut rng).unwrap(),
    )
}

struct Sgd<'a>(&'a ParamGrads<f32>);

impl VisitorMut<f32> for Sgd<'_> {
    fn param(&mut self, _: &str, p: &mut Param<f32>) {
        if let Some(g) = self.0.get(p) {
            p.set(p.value().sub(&g.scale(LR)));
        }
    }
}

/// One training step; with a monitor, its one line replaces `ctx.param_grads(&loss.backward())`.
fn step(
    net: &mut Sequential<f32>,
    x: &Tensor<f32>,
    t: &Tensor<f32>,
    mon: Option<&mut GradMonitor<f32>>,
) {
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let y = net.forward(&mut ctx, tape.constant(x.clone()));
    let loss = (y - tape.constant(t.clone())).square().mean();
    let grads = match mon {
        Some(mon) => {
            // Keep the history bounded over the benchmark's many iterations.
            if mon.steps().len() >= 1000 {
                mon.clear();
            }
            mon.backward(&ctx, &*net, loss)
        }
        None => ctx.param_grads(&loss.backward()),
    };
    net.visit_mut(&mut Sgd(&grads));
    black_box(&grads);
}

/// CPU time this thread has run, when the OS reports it.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs `f` `iters` times and returns the CPU time it took (wall-clock time without
/// `/proc/thread-self/schedstat`).
fn measure(iters: u64, mut f: impl FnMut()) -> Duration {
    let (cpu0, wall0) = (thread_cpu_time(), Instant::now());
    for _ in 0..iters {
        f();
    }
    match (cpu0, thread_cpu_time()) {
        (Some(a), Some(b)) => b - a,
        _ => wall0.elapsed(),
    }
}

fn bench(c: &mut Criterion) {
    // One thread, so the thread's CPU time is the step's whole cost.
    vgrad::tensor::set_num_threads(1);
    let (x, t) = data();
    let mut g = c.benchmark_group("train_step_50x64_relu_batch64");
    g.sample_size(40);

    let mut bare = net();
    g.bench_function("bare", |b| {
        b.iter_custom(|n| measure(n, || step(&mut bare, &x, &t, None)))
    });

    let mut watched = net();
    let mut mon = GradMonitor::new(MonitorConfig::default());
    g.bench_function("monitor_every_step", |b| {
        b.iter_custom(|n| measure(n, || step(&mut watched, &x, &t, Some(&mut mon))))
    });

    let mut sometimes = net();
    let mut mon10 = GradMonitor::new(MonitorConfig {
        every: 10,
        ..MonitorConfig::default()
    });
    g.bench_function("monitor_every_10th_step", |b| {
        b.iter_custom(|n| measure(n, || step(&mut sometimes, &x, &t, Some(&mut mon10))))
    });

    let mut no_acts = net();
    let mut mon_grads = GradMonitor::new(MonitorConfig {
        activation_stats: false,
        ..MonitorConfig::default()
    });
    g.bench_function("monitor_every_step_no_activation_stats", |b| {
        b.iter_custom(|n| measure(n, || step(&mut no_acts, &x, &t, Some(&mut mon_grads))))
    });
    g.finish();
}

criterion_group!(benches, bench);

/// `MONITOR_PROFILE=bare|every|every10 [MONITOR_STEPS=n]` runs that many steps of one variant
/// and exits, without criterion: a fixed workload for `valgrind --tool=callgrind`, whose
/// instruction counts hold steady on a shared machine where times do not.
///
/// `MONITOR_PROFILE=compare [MONITOR_STEPS=n]` times the three variants interleaved step by
/// step (bare, every step, every 10th step, in an order that rotates each round), so that all
/// three see the same load from the machine's other tenants, and prints each one's median and lower-quartile wall-clock time
/// per step (per ten steps for every 10th step): on a busy machine a steadier comparison than
/// criterion's runs one after the other. The thread's CPU time, which criterion's runs use, is
/// counted in scheduler ticks, too coarse for single steps; the lower quartile leaves out the
/// steps that another process interrupted.
fn profile(variant: &str) {
    vgrad::tensor::set_num_threads(1);
    let steps: usize = std::env::var("MONITOR_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (x, t) = data();
    let monitor = |every| {
        GradMonitor::new(MonitorConfig {
            every,
            ..MonitorConfig::default()
        })
    };
    if variant == "compare" {
        let mut nets = [net(), net(), net()];
        let mut mons = [None, Some(monitor(1)), Some(monitor(10))];
        let mut times: [Vec<f64>; 3] = Default::default();
        let mut tens = 0.0;
        for i in 0..steps {
            for k in (0..3).map(|j| (i + j) % 3) {
                let (net, mon, times) = (&mut nets[k], &mut mons[k], &mut times[k]);
                let start = Instant::now();
                step(net, &x, &t, mon.as_mut());
                let ms = start.elapsed().as_secs_f64() * 1e3;
                if k < 2 {
                    times.push(ms);
                } else {
                    // Every 10th step is recorded: its cost shows over ten steps.
                    tens += ms;
                    if i % 10 == 9 {
                        times.push(tens / 10.0);
                        tens = 0.0;
                    }
                }
            }
        }
        let quantile = |v: &mut Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            v[((v.len() - 1) as f64 * q).round() as usize]
        };
        let [bare, every, every10] =
            times.map(|mut v| (quantile(&mut v, 0.5), quantile(&mut v, 0.25)));
        println!("ms per step, median (lower quartile) over {steps} steps:");
        println!("bare          {:.3} ({:.3})", bare.0, bare.1);
        for (name, (med, q1)) in [("every step   ", every), ("every 10th   ", every10)] {
            println!(
                "{name} {med:.3} ({q1:.3})  {:+.1}% ({:+.1}%)",
                (med / bare.0 - 1.0) * 100.0,
                (q1 / bare.1 - 1.0) * 100.0
            );
        }
        return;
    }
    let mut net = net();
    let every = match variant {
        "bare" => None,
        "every" => Some(1),
        "every10" => Some(10),
        other => panic!("MONITOR_PROFILE={other}: expected bare, every, every10 or compare"),
    };
    let mut mon = every.map(monitor);
    for _ in 0..steps {
        step(&mut net, &x, &t, mon.as_mut());
    }
    black_box(mon.as_ref().map(|m| m.steps().len()));
}

fn main() {
    match std::env::var("MONITOR_PROFILE") {
        Ok(variant) => profile(&variant),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
