//! Criterion benchmarks of every activation on its own: the forward pass, and forward plus the
//! fused backward kernel, on `[64, 64]` and `[128, 256]` in f32 and f64. Criterion's throughput
//! line reads as elements per second; divide by 10⁹ for elements/ns.
//!
//! ```sh
//! cargo bench --bench activations                    # everything (about two minutes)
//! cargo bench --bench activations -- gelu/f32        # one activation and dtype
//! cargo bench --bench activations -- --save-baseline before   # then, after a change:
//! cargo bench --bench activations -- --baseline before
//! ```
//!
//! `forward` applies the activation to a constant (no gradient recorded; GELU's also on inputs
//! within ±1, `forward_near_zero`); `fwd_bwd` applies it
//! to a leaf and runs `backward_with` a seed of ones, so it times the forward, the fused
//! `g·f'(x)` kernel and the tape's fixed cost (a new tape per iteration, seeding).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use std::hint::black_box;
use std::time::Duration;
use vgrad::nn::Activation;
use vgrad::{Element, GeluApprox, Tape, Tensor};

/// Every `Activation` variant, with PyTorch's default parameters, and its name in the report.
fn activations<T: Element>() -> Vec<(&'static str, Activation<T>)> {
    vec![
        ("identity", Activation::Identity),
        ("sigmoid", Activation::Sigmoid),
        ("tanh", Activation::Tanh),
        ("relu", Activation::Relu),
        ("leaky_relu", Activation::leaky_relu()),
        ("elu", Activation::elu()),
        ("selu", Activation::Selu),
        ("gelu", Activation::Gelu(GeluApprox::None)),
        ("gelu_tanh", Activation::Gelu(GeluApprox::Tanh)),
        ("softplus", Activation::softplus()),
        ("silu", Activation::Silu),
    ]
}

fn bench_dtype<T: Element>(c: &mut Criterion) {
    let dtype = T::DTYPE.to_lowercase();
    for shape in [[64usize, 64], [128, 256]] {
        let n = shape[0] * shape[1];
        // Inputs over [−6, 6]: both branches of every rectifier, both tails of the saturating
        // functions, no overflow.
        let x = Tensor::<T>::from_fn(&shape, |i| {
            T::of(((i * 7919) % n) as f64 / n as f64 * 12.0 - 6.0)
        });
        let seed = Tensor::<T>::from_fn(&shape, |_| T::one());
        for (name, act) in activations::<T>() {
            let mut group = short_group(c, format!("activations/{name}/{dtype}"), n);
            let label = format!("{}x{}", shape[0], shape[1]);
            group.bench_function(format!("forward/{label}"), |b| {
                b.iter(|| {
                    let tape = Tape::new();
                    let y = act.apply(tape.constant(x.clone()));
                    black_box(y.value());
                })
            });
            group.bench_function(format!("fwd_bwd/{label}"), |b| {
                b.iter(|| {
                    let tape = Tape::new();
                    let v = tape.leaf(x.clone());
                    let g = act.apply(v).backward_with(seed.clone());
                    black_box(g.wrt(v).map(|t| t.numel()));
                })
            });
            group.finish();
        }
    }
    bench_near_zero::<T>(c);
}

/// Exact GELU's forward on inputs within ±1, where a deep GELU stack at PyTorch's default
/// initialisation keeps nearly all its pre-activations: whole blocks take erf's polynomial
/// branch alone (`Tensor::map_par_easy`). The [−6, 6] inputs above have no such block.
fn bench_near_zero<T: Element>(c: &mut Criterion) {
    let shape = [128usize, 256];
    let n = shape[0] * shape[1];
    let x = Tensor::<T>::from_fn(&shape, |i| {
        T::of(((i * 7919) % n) as f64 / n as f64 * 2.0 - 1.0)
    });
    let act = Activation::<T>::Gelu(GeluApprox::None);
    let mut group = short_group(
        c,
        format!("activations/gelu/{}", T::DTYPE.to_lowercase()),
        n,
    );
    group.bench_function("forward_near_zero/128x256", |b| {
        b.iter(|| {
            let tape = Tape::new();
            let y = act.apply(tape.constant(x.clone()));
            black_box(y.value());
        })
    });
    group.finish();
}

/// A group timed briefly (the kernels take microseconds), reporting elements per second.
fn short_group(c: &mut Criterion, name: String, n: usize) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600))
        .throughput(Throughput::Elements(n as u64));
    group
}

fn all(c: &mut Criterion) {
    vgrad::tensor::set_num_threads(1);
    bench_dtype::<f32>(c);
    bench_dtype::<f64>(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
