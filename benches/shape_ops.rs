//! Criterion benchmarks of the tensor ops around the products, on shapes larger than the
//! training configs give them (f32, one thread unless named):
//!
//! ```sh
//! cargo bench --bench shape_ops
//! ```
//!
//! - `permute`: square transposes whose rows are a multiple of 4 KiB apart (1024, 2048) and not
//!   (1000), a wide one, and 4-D attention-style permutes, one moving the contiguous axis;
//! - `softmax`: softmax and log-softmax along the last axis of [2048, 2048], along the first,
//!   and along the middle of [64, 512, 64];
//! - `reduce`: `sum_to` a column and a row, `sum_axis` of the last axis, `max_axis` (with the
//!   indices) of the last and the first;
//! - `bmm`: batched products `[b, m, k] · [b, k, n]`, on one thread and two;
//! - `layer_norm`: `Var::layer_norm` with γ and β over the last axis of [4096, 1024] and
//!   [512, 64], forward alone and forward with backward, on one thread and two.
//!
//! The same ops in PyTorch, for a ratio measured in the same sitting:
//! `python3 scripts/shape_ops_torch.py`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use vgrad::{Tape, Tensor};

fn shape_ops(c: &mut Criterion) {
    vgrad::tensor::set_num_threads(1);
    let cases: [(&[usize], &[usize]); 7] = [
        (&[512, 512], &[1, 0]),
        (&[1000, 1000], &[1, 0]),
        (&[1024, 1024], &[1, 0]),
        (&[2048, 2048], &[1, 0]),
        (&[256, 4096], &[1, 0]),
        (&[32, 64, 128, 64], &[0, 3, 1, 2]),
        (&[32, 64, 128, 64], &[0, 2, 1, 3]),
    ];
    let mut group = c.benchmark_group("permute");
    group.sample_size(20);
    for (shape, perm) in cases {
        let n: usize = shape.iter().product();
        let x = Tensor::<f32>::from_fn(shape, |i| i as f32);
        group.throughput(Throughput::Bytes(2 * 4 * n as u64));
        group.bench_function(format!("{shape:?}{perm:?}"), |b| {
            b.iter(|| black_box(x.permute(perm)))
        });
    }
    group.finish();

    let x = Tensor::<f32>::from_fn(&[2048, 2048], |i| ((i * 7919 % 1000) as f32) / 100.0 - 5.0);
    let z = Tensor::<f32>::from_fn(&[64, 512, 64], |i| ((i * 7919 % 1000) as f32) / 100.0 - 5.0);
    let mut group = c.benchmark_group("softmax");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(2 * 4 * x.numel() as u64));
    group.bench_function("softmax/[2048, 2048]/1", |b| {
        b.iter(|| black_box(x.softmax(1)))
    });
    group.bench_function("log_softmax/[2048, 2048]/1", |b| {
        b.iter(|| black_box(x.log_softmax(1)))
    });
    group.bench_function("softmax/[2048, 2048]/0", |b| {
        b.iter(|| black_box(x.softmax(0)))
    });
    group.bench_function("softmax/[64, 512, 64]/1", |b| {
        b.iter(|| black_box(z.softmax(1)))
    });
    group.finish();

    let mut group = c.benchmark_group("reduce");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(4 * x.numel() as u64));
    group.bench_function("sum_to/[2048, 1]", |b| {
        b.iter(|| black_box(x.sum_to(&[2048, 1])))
    });
    group.bench_function("sum_to/[1, 2048]", |b| {
        b.iter(|| black_box(x.sum_to(&[1, 2048])))
    });
    group.bench_function("sum_axis/1", |b| b.iter(|| black_box(x.sum_axis(1, false))));
    group.bench_function("max_axis/1", |b| b.iter(|| black_box(x.max_axis(1, false))));
    group.bench_function("max_axis/0", |b| b.iter(|| black_box(x.max_axis(0, false))));
    group.finish();

    let mut group = c.benchmark_group("bmm");
    group.sample_size(20);
    for (b, m, k, n) in [
        (256, 16, 16, 16),
        (64, 64, 64, 64),
        (32, 128, 64, 128),
        (8, 512, 512, 512),
    ] {
        let x = Tensor::<f32>::from_fn(&[b, m, k], |i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5);
        let y =
            Tensor::<f32>::from_fn(&[b, k, n], |i| ((i * 104_729 % 1000) as f32) / 1000.0 - 0.5);
        group.throughput(Throughput::Elements((2 * b * m * k * n) as u64));
        for threads in [1, 2] {
            vgrad::tensor::set_num_threads(threads);
            group.bench_function(format!("{b}x{m}x{k}x{n}/t{threads}"), |bch| {
                bch.iter(|| black_box(x.matmul(&y)))
            });
        }
        vgrad::tensor::set_num_threads(1);
    }
    group.finish();

    let mut group = c.benchmark_group("layer_norm");
    group.sample_size(20);
    for (n, c) in [(4096, 1024), (512, 64)] {
        let x = Tensor::<f32>::from_fn(&[n, c], |i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5);
        let g = Tensor::<f32>::from_fn(&[n, c], |i| ((i * 7907 % 1000) as f32) / 1000.0 - 0.5);
        let gamma = Tensor::<f32>::from_fn(&[c], |i| 0.5 + (i % 7) as f32 * 0.25);
        let beta = Tensor::<f32>::from_fn(&[c], |i| (i % 5) as f32 * 0.1 - 0.2);
        group.throughput(Throughput::Bytes(2 * 4 * x.numel() as u64));
        for threads in [1, 2] {
            vgrad::tensor::set_num_threads(threads);
            let step = |backward: bool| {
                let tape = Tape::new();
                let (xv, w, b) = (
                    tape.leaf(x.clone()),
                    tape.leaf(gamma.clone()),
                    tape.leaf(beta.clone()),
                );
                let y = xv.layer_norm(Some(w), Some(b), 1e-5);
                if backward {
                    black_box(y.backward_with(g.clone()).wrt(xv).cloned());
                } else {
                    black_box(y.value());
                }
            };
            group.bench_function(format!("forward/[{n}, {c}]/t{threads}"), |bch| {
                bch.iter(|| step(false))
            });
            group.bench_function(format!("forward_backward/[{n}, {c}]/t{threads}"), |bch| {
                bch.iter(|| step(true))
            });
        }
        vgrad::tensor::set_num_threads(1);
    }
    group.finish();
}

criterion_group!(benches, shape_ops);
criterion_main!(benches);
