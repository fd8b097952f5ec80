//! Criterion benchmarks of the matrix products inside the shared configs' training steps, each
//! through vgrad (`Tensor::matmul_t`: its own AVX-512 kernel where the CPU has one) and through
//! the `gemm` crate called directly with the same strides, in the same run. This is the evidence
//! for src/tensor/gemm512.rs: the crate is vgrad's fallback, and the GEMM-only "floor" of
//! `scripts/compare.py` is measured with it.
//!
//! ```sh
//! cargo bench --bench gemm                 # every shape, f32 and f64 (about a minute)
//! cargo bench --bench gemm -- f32/256      # the 1024-wide step's products in f32
//! cargo bench --bench gemm -- gemm_cold    # mid_relu's products with operands out of cache
//! ```
//!
//! One thread (`set_num_threads(1)` and `Parallelism::None`). Throughput is reported in
//! elements, where one element is one multiply-add: GFLOP/s = 2 × Melem/s / 1000.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use vgrad::{Element, Tensor};

/// One product `op(a)[m, k] · op(b)[k, n]` and where it occurs.
struct Shape {
    what: &'static str,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
}

/// A hidden layer of width `w` at batch `b` runs three products per step: the forward x·Wᵀ, the
/// input gradient dY·W and the weight gradient dYᵀ·X.
fn layer(batch: usize, w: usize) -> [Shape; 3] {
    [
        Shape {
            what: "forward x·wT",
            m: batch,
            n: w,
            k: w,
            ta: false,
            tb: true,
        },
        Shape {
            what: "input grad dy·w",
            m: batch,
            n: w,
            k: w,
            ta: false,
            tb: false,
        },
        Shape {
            what: "weight grad dyT·x",
            m: w,
            n: w,
            k: batch,
            ta: true,
            tb: false,
        },
    ]
}

impl Shape {
    /// The left and right operands, stored transposed where the product reads them so, with
    /// values from `seed` and `seed + 1`.
    fn operands<T: Element>(&self, seed: usize) -> (Tensor<T>, Tensor<T>) {
        let Shape {
            m, n, k, ta, tb, ..
        } = *self;
        let a_shape = if ta { [k, m] } else { [m, k] };
        let b_shape = if tb { [n, k] } else { [k, n] };
        (
            Tensor::from_vec(values(m * k, seed), &a_shape).unwrap(),
            Tensor::from_vec(values(k * n, seed + 1), &b_shape).unwrap(),
        )
    }

    /// A benchmark group named `{prefix}/{m}x{n}x{k} {what}`, counting multiply-adds.
    fn group<'c>(
        &self,
        c: &'c mut Criterion,
        prefix: &str,
    ) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
        let Shape { m, n, k, what, .. } = *self;
        let mut group = c.benchmark_group(format!("{prefix}/{m}x{n}x{k} {what}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .throughput(Throughput::Elements((m * n * k) as u64));
        group
    }
}

fn values<T: Element>(len: usize, seed: usize) -> Vec<T> {
    (0..len)
        .map(|i| T::of(((i * 7 + seed) % 13) as f64 * 0.1 - 0.6))
        .collect()
}

fn bench_shapes(c: &mut Criterion) {
    vgrad::tensor::set_num_threads(1);
    bench_dtype::<f32>(c);
    bench_dtype::<f64>(c);
}

fn bench_dtype<T: Element>(c: &mut Criterion) {
    let dtype = T::DTYPE.to_lowercase();
    // (batch, width) of deep_*, resbn, mid_relu and wide_relu, then three thin batches (the
    // hold-outs b2_w256_d6_relu and b8_w512_d8_tanh's shapes, the latter twice as wide, and a
    // 4096-wide layer whose 64 MiB f32 weight comes from memory every time).
    for (batch, w) in [
        (64, 64),
        (128, 128),
        (128, 256),
        (256, 1024),
        (2, 256),
        (8, 1024),
        (8, 4096),
    ] {
        for s in layer(batch, w) {
            let Shape {
                m, n, k, ta, tb, ..
            } = s;
            let (a, b) = s.operands::<T>(1);
            let mut group = s.group(c, &format!("gemm/{dtype}"));
            group.bench_function("vgrad", |bch| {
                bch.iter(|| black_box(a.matmul_t(&b, ta, tb)))
            });
            let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
            let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
            group.bench_function("gemm crate", |bch| {
                bch.iter(|| {
                    let mut out = Vec::<T>::with_capacity(m * n);
                    // SAFETY: the strides stay inside a and b; out has room for m × n and is
                    // not read (read_dst = false), then every element is written.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            out.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            a.data().as_ptr(),
                            csa,
                            rsa,
                            b.data().as_ptr(),
                            csb,
                            rsb,
                            T::zero(),
                            T::one(),
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                        out.set_len(m * n);
                    }
                    black_box(out)
                })
            });
            group.finish();
        }
    }
    bench_cold::<T>(c);
}

/// Operand sets cycled through by [`bench_cold`]: 24 sets of mid_relu's operands are 18 MiB in
/// f32 and 36 in f64, more than this machine's 32 MiB L3, so every product starts from memory.
const COLD_SETS: usize = 24;

/// mid_relu's three products with operands that are not in cache, as inside a training step,
/// where each product's operands were last touched a layer or a step earlier: each iteration
/// takes the next of [`COLD_SETS`] operand sets. Hot (above) they run at 2.0× f32's time in f64;
/// cold, f64 lost more (BENCHMARKS.md, "Where mid_relu's f64 step goes").
fn bench_cold<T: Element>(c: &mut Criterion) {
    let dtype = T::DTYPE.to_lowercase();
    for s in layer(128, 256) {
        let (ta, tb) = (s.ta, s.tb);
        let sets: Vec<_> = (0..COLD_SETS).map(|i| s.operands::<T>(2 * i)).collect();
        let mut group = s.group(c, &format!("gemm_cold/{dtype}"));
        let mut next = 0;
        group.bench_function("vgrad", |bch| {
            bch.iter(|| {
                let (a, b) = &sets[next % COLD_SETS];
                next += 1;
                black_box(a.matmul_t(b, ta, tb))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_shapes);
criterion_main!(benches);
