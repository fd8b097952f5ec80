//! Subnormal floats (issue 18): by default vgrad's own work (backward sweeps, optimiser steps,
//! matrix products, large elementwise kernels) flushes them to zero, so no CPU pays for
//! arithmetic on them, while the caller's own arithmetic keeps IEEE semantics;
//! `set_flush_denormal(false)` keeps them everywhere (PyTorch's default).
//!
//! The setting is process-wide, so everything runs in one test, in order.

use rand::{rngs::StdRng, SeedableRng};
use std::hint::black_box;
use vgrad::nn::{Activation, Ctx, Linear, Module, Optimizer, Sequential, Sgd, SgdConfig};
use vgrad::tensor::{flushes_denormals, restore_default_flush};
use vgrad::{set_flush_denormal, Tape, Tensor};

fn subnormals(xs: &[f32]) -> usize {
    xs.iter().filter(|x| x.is_subnormal()).count()
}

/// `Σ (x·x)·s` for x = 1e-20 on 8,192 elements: the gradient 2·x·s is subnormal for s = 1e-20.
fn tiny_gradient() -> Vec<f32> {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::full(&[8192], 1e-20));
    let l = (x * x).scale(1e-20).sum();
    l.backward().wrt(x).unwrap().data().to_vec()
}

/// x · 1e-20 for x = 1e-20, forward only: subnormal unless flushed.
fn tiny_product() -> Vec<f32> {
    let tape = Tape::<f32>::new();
    let x = tape.constant(Tensor::full(&[8192], 1e-20));
    let y = tape.constant(Tensor::full(&[8192], 1e-20));
    (x * y).value().data().to_vec()
}

/// An 80-layer sigmoid stack: its gradients pass through the subnormal range somewhere
/// around layer 60 from the top (0.25⁶⁶ ≈ 1e-40). Counts the subnormals among the parameter
/// gradients, and among the parameters after an SGD step with a huge learning rate applied to
/// those tiny gradients.
fn deep_sigmoid_subnormals() -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = Sequential::new();
    for _ in 0..80 {
        net = net
            .push(Linear::<f32>::new(16, 16, &mut rng).unwrap())
            .push(Activation::Sigmoid);
    }
    let x = Tensor::from_fn(&[8, 16], |i| ((i * 7) % 13) as f32 / 6.0 - 1.0);
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let y = net.forward(&mut ctx, tape.constant(x));
    let l = y.square().mean();
    let grads = ctx.param_grads(&l.backward());
    let in_grads: usize = grads
        .named()
        .iter()
        .map(|(_, g)| subnormals(g.data()))
        .sum();
    let mut opt = Sgd::new(SgdConfig {
        lr: 1e-3,
        ..Default::default()
    })
    .unwrap();
    opt.step(&mut net, &grads).unwrap();
    let in_params: usize = net
        .named_parameters()
        .iter()
        .map(|(_, p)| subnormals(p.data()))
        .sum();
    (in_grads, in_params)
}

#[test]
fn subnormals_are_flushed_inside_vgrad_only_unless_switched_off() {
    let caller_keeps = || black_box(black_box(1e-39f32) * 1.0) != 0.0;

    // Default: flushed in vgrad's work, kept in the caller's arithmetic.
    assert!(flushes_denormals());
    if cfg!(target_arch = "x86_64") {
        assert!(
            tiny_gradient().iter().all(|&g| g == 0.0),
            "backward flushes"
        );
        assert!(tiny_product().iter().all(|&v| v == 0.0), "forward flushes");
        let (g, p) = deep_sigmoid_subnormals();
        assert_eq!((g, p), (0, 0), "no subnormal gradient or parameter");
    }
    assert!(caller_keeps(), "the caller's own arithmetic is untouched");

    // Off: IEEE subnormals everywhere, as PyTorch by default.
    assert!(set_flush_denormal(false) || !cfg!(target_arch = "x86_64"));
    assert!(!flushes_denormals());
    let g = tiny_gradient();
    assert!(
        g.iter()
            .all(|&g| g.is_subnormal() && (g - 2e-40).abs() < 1e-44),
        "{:e}",
        g[0]
    );
    assert!(tiny_product().iter().all(|&v| v.is_subnormal()));
    let (g, _) = deep_sigmoid_subnormals();
    assert!(
        g > 0,
        "without flushing the deep stack's gradients do pass through subnormals"
    );
    assert!(caller_keeps());

    // On: flushed in the caller's arithmetic too (PyTorch's set_flush_denormal(True)).
    if set_flush_denormal(true) {
        assert!(!caller_keeps());
        assert!(tiny_gradient().iter().all(|&g| g == 0.0));
    }

    restore_default_flush();
    assert!(flushes_denormals());
    assert!(caller_keeps());
}
