//! Criterion benchmarks of the layout moves `Tensor::transpose` and `Tensor::permute` copy
//! through (f32, one thread):
//!
//! ```sh
//! cargo bench --bench layout
//! ```
//!
//! Square transposes whose rows are a multiple of 4 KiB apart (1024, 2048) and not (1000), a
//! wide and a tall one, and a 4-D attention-style permute that moves the contiguous axis: the
//! cases the tiled copy is for. The same moves in PyTorch (`x.t().contiguous()`) for a ratio:
//! `scripts/layout_torch.py`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use vgrad::Tensor;

fn layout(c: &mut Criterion) {
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
}

criterion_group!(benches, layout);
criterion_main!(benches);
