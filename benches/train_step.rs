//! Criterion benchmarks of one full training step on each shared config (f32 and f64), and of
//! the per-op overhead chain. For regression tracking while optimising the engine:
//!
//! ```sh
//! cargo bench --bench train_step                         # everything (about a minute and a half)
//! cargo bench --bench train_step -- deep_relu           # one config, both dtypes
//! cargo bench --bench train_step -- --save-baseline before   # then, after a change:
//! cargo bench --bench train_step -- --baseline before
//! ```
//!
//! Runs at one matrix-product thread (set `VGRAD_BENCH_THREADS=2` for two), since that is the
//! comparison that is cleanest on a shared 2-core machine. Sample counts are small (10 samples,
//! each a fixed number of steps) so the whole suite stays short; for the figures quoted against
//! PyTorch use `scripts/compare.py`, which alternates vgrad and the peers in one run.

mod common;

use common::{chain_fwd_bwd, chain_fwd_nograd, Configs, StepConfig, Trainer};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::time::Duration;
use vgrad::{Element, Tensor};

/// Threads for the matrix products, from `VGRAD_BENCH_THREADS` (default 1).
fn threads() -> usize {
    std::env::var("VGRAD_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn bench_step<T: Element>(c: &mut Criterion, cfgs: &Configs, cfg: &StepConfig) {
    let mut trainer = Trainer::<T>::new(cfg, cfgs.lr, cfgs.seed);
    let dtype = T::DTYPE.to_lowercase();
    let mut group = c.benchmark_group(format!("train_step/{}", cfg.name));
    // Flat sampling: every sample runs the same number of steps, so a 60 ms step does not
    // push criterion's linear ramp (1, 2, …, 10 iterations) past the time budget.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        // The peers' FLOP count (6·batch·Σ in·out): criterion's "thrpt" line then reads as
        // FLOP/s, though it labels them elements.
        .throughput(Throughput::Elements(cfg.flops_per_step()));
    group.bench_function(dtype, |b| b.iter(|| black_box(trainer.step())));
    group.finish();
}

fn train_steps(c: &mut Criterion) {
    let n = threads();
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    vgrad::tensor::set_num_threads(n);
    let cfgs = Configs::builtin();
    for cfg in &cfgs.steps {
        bench_step::<f32>(c, &cfgs, cfg);
        bench_step::<f64>(c, &cfgs, cfg);
    }
}

fn overhead(c: &mut Criterion) {
    let o = Configs::builtin().overhead;
    let x = Tensor::<f32>::full(&o.shape, 0.5);
    let mut group = c.benchmark_group(format!("overhead/{}", o.name));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        // Reported per op: criterion's "thrpt" line is then ops per second.
        .throughput(Throughput::Elements(o.n_ops as u64));
    group.bench_function("fwd_bwd", |b| {
        b.iter(|| chain_fwd_bwd(black_box(&x), o.n_ops))
    });
    group.bench_function("fwd_nograd", |b| {
        b.iter(|| chain_fwd_nograd(black_box(&x), o.n_ops))
    });
    group.finish();
}

criterion_group!(benches, train_steps, overhead);
criterion_main!(benches);
