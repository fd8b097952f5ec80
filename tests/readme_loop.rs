//! The loop README.md teaches (`backward`, then `Optimizer::step` while the tape is still
//! alive) must update the parameters where they lie, as the fused `backward_step` does, land on
//! the same weights, and never let the tape differentiate through a parameter that changed
//! under it (issue 18: with the tape holding every parameter, each step copied the whole model
//! first).

use rand::{rngs::StdRng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use vgrad::monitor::{GradMonitor, MonitorConfig};
use vgrad::nn::{
    Activation, Adam, AdamConfig, BatchNorm1d, Ctx, Linear, Module, Optimizer, Residual,
    Sequential, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor, Var};

fn model(seed: u64) -> Sequential<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let block = Sequential::new()
        .push(Linear::new(5, 5, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(BatchNorm1d::new(5).unwrap());
    Sequential::new()
        .push(Linear::new(3, 5, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Residual::new(block))
        .push(Linear::new(5, 2, &mut rng).unwrap())
}

fn batch() -> (Tensor<f64>, Tensor<f64>) {
    let x: Vec<f64> = (0..24).map(|i| ((i * 7) % 11) as f64 / 5.0 - 1.0).collect();
    let y: Vec<f64> = (0..16).map(|i| ((i * 5) % 7) as f64 / 3.0 - 1.0).collect();
    (
        Tensor::from_vec(x, &[8, 3]).unwrap(),
        Tensor::from_vec(y, &[8, 2]).unwrap(),
    )
}

fn loss<'t>(net: &mut Sequential<f64>, ctx: &mut Ctx<'t, f64>) -> Var<'t, f64> {
    let (x, y) = batch();
    let tape = ctx.tape();
    let pred = net.forward(ctx, tape.constant(x));
    (pred - tape.constant(y)).square().mean()
}

/// Where each parameter's elements live, by name.
fn addresses(net: &Sequential<f64>) -> Vec<(String, usize)> {
    net.named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.data().as_ptr() as usize))
        .collect()
}

fn adam() -> Adam<f64> {
    Adam::new(AdamConfig {
        lr: 0.01,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn the_readme_loop_updates_parameters_where_they_lie() {
    let mut net = model(1);
    let mut opt = adam();
    let before = addresses(&net);
    for _ in 0..3 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = loss(&mut net, &mut ctx);
        let grads = ctx.param_grads(&l.backward());
        opt.step(&mut net, &grads).unwrap();
        // The tape is alive here, as in README.md, and its loss still reads.
        assert!(l.value().item().is_finite());
    }
    assert_eq!(addresses(&net), before, "no parameter was copied");
}

#[test]
fn the_readme_loop_lands_where_the_fused_step_lands() {
    let (mut a, mut b) = (model(2), model(2));
    let (mut opt_a, mut opt_b) = (adam(), adam());
    for _ in 0..4 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = loss(&mut a, &mut ctx);
        let grads = ctx.param_grads(&l.backward());
        opt_a.step(&mut a, &grads).unwrap();

        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = loss(&mut b, &mut ctx);
        opt_b.backward_step(&mut b, &ctx, l).unwrap();
    }
    let start = model(2).named_parameters();
    for (((name, p), (_, q)), (_, s)) in a
        .named_parameters()
        .iter()
        .zip(b.named_parameters())
        .zip(start)
    {
        assert!(p.data() != s.data(), "{name}: moved");
        for (u, v) in p.data().iter().zip(q.data()) {
            assert!(
                (u - v).abs() <= 1e-14 * v.abs().max(1e-300),
                "{name}: {u} vs {v}"
            );
        }
    }
}

#[test]
fn the_tape_reads_and_differentiates_again_until_the_step() {
    let mut net = model(3);
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let l = loss(&mut net, &mut ctx);
    let first = ctx.param_grads(&l.backward());
    // Values of the parameter leaves read back unchanged, and a second sweep agrees.
    for (name, _, leaf) in ctx.bound() {
        let held = net
            .named_parameters()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1;
        assert_eq!(leaf.value().data(), held.data(), "{name}");
    }
    let second = ctx.param_grads(&l.backward());
    for (name, g) in first.named() {
        assert_eq!(second.get_name(name).unwrap().data(), g.data(), "{name}");
    }
}

#[test]
fn differentiating_through_a_stepped_parameter_is_refused() {
    let mut net = model(4);
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let l = loss(&mut net, &mut ctx);
    let grads = ctx.param_grads(&l.backward());
    opt.step(&mut net, &grads).unwrap();
    let again = catch_unwind(AssertUnwindSafe(|| l.backward()));
    let msg = match again {
        Ok(_) => panic!("a second backward through changed weights must panic"),
        Err(e) => e,
    };
    let msg = msg
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| msg.downcast_ref::<&str>().unwrap().to_string());
    assert!(msg.contains("updated in place"), "{msg}");
    // The leaf's recorded value is gone too, and says so rather than showing stale numbers.
    let leaf = ctx.bound()[0].2;
    assert!(catch_unwind(AssertUnwindSafe(|| leaf.value())).is_err());
}

#[test]
fn a_user_held_copy_keeps_the_old_values() {
    let mut net = model(5);
    let mut opt = adam();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let l = loss(&mut net, &mut ctx);
    // Someone else holds the first parameter's value: the step must not change it under them.
    let leaf = ctx.bound()[0].2;
    let held = leaf.value();
    let snapshot = held.data().to_vec();
    let grads = ctx.param_grads(&l.backward());
    opt.step(&mut net, &grads).unwrap();
    assert_eq!(held.data(), &snapshot[..]);
    assert_eq!(
        leaf.value().data(),
        &snapshot[..],
        "the tape keeps what it recorded"
    );
}

/// The monitor keeps each parameter's old value to measure the update ratio, so its loop
/// copies; it must still work with the tape alive.
#[test]
fn the_monitored_loop_works_with_the_tape_alive() {
    let mut net = model(6);
    let mut opt = adam();
    let mut mon = GradMonitor::new(MonitorConfig::default());
    for _ in 0..2 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = loss(&mut net, &mut ctx);
        let grads = mon.backward(&ctx, &net, l);
        opt.step(&mut net, &grads).unwrap();
        mon.after_update(&net);
        assert!(l.value().item().is_finite());
    }
    assert_eq!(mon.steps().len(), 2);
}
