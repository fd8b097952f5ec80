//! The buffer pool as a training loop sees it: memory held from one step to the next.
//!
//! Moved here from a unit test in `tensor/pool.rs`, which built a whole `nn` training loop to
//! check a `tensor` detail; from outside, the pool is seen through the bytes the thread holds,
//! which a counting allocator measures.

use rand::{rngs::StdRng, SeedableRng};
use vgrad::nn::{
    cross_entropy, Activation, BatchNorm1d, Ctx, Linear, Module, Optimizer, Reduction, Residual,
    Sequential, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor};

#[path = "common/meter.rs"]
mod meter;
use meter::held;

/// A training step allocates the same buffers every step, some through the pool and some
/// (BatchNorm's per-channel vectors, once) straight from the allocator: the pool must not grow
/// from one step to the next. It did, by the per-channel vectors, until resbn's f64 run reached
/// 212 MiB after 3,000 steps.
#[test]
fn training_steps_with_batchnorm_do_not_grow_the_pool() {
    let mut rng = StdRng::seed_from_u64(0);
    let (n, w) = (16, 128);
    let branch = Sequential::new()
        .push(Linear::<f64>::new(w, w, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(BatchNorm1d::new(w).unwrap())
        .push(Linear::new(w, w, &mut rng).unwrap());
    let mut model = Sequential::new()
        .push(Residual::new(branch))
        .push(Linear::new(w, 10, &mut rng).unwrap());
    model.train();
    let x = Tensor::from_vec(
        (0..n * w).map(|i| (i as f64 * 0.37).sin()).collect(),
        &[n, w],
    )
    .unwrap();
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.01,
        ..Default::default()
    })
    .unwrap();
    let mut step = || {
        let grads = {
            let tape = Tape::new();
            let mut ctx = Ctx::new(&tape);
            let y = model.forward(&mut ctx, tape.constant(x.clone()));
            let loss = cross_entropy(y, &labels, Reduction::Mean);
            ctx.param_grads(&loss.backward())
        };
        opt.step(&mut model, &grads).unwrap();
    };
    for _ in 0..3 {
        step();
    }
    let settled = held();
    for _ in 0..30 {
        step();
    }
    assert_eq!(held(), settled, "bytes held after 3 steps vs after 33");
}
