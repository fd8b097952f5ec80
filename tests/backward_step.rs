//! `Optimizer::backward_step`, the optimiser step fused into the backward sweep: it must land
//! where the two calls (`backward`, then `step`) land, update the parameters where they lie, and
//! leave the model whole whatever happens during the sweep.
//!
//! The fused path is also checked against PyTorch's values in `tests/golden_optim.rs`.

use rand::{rngs::StdRng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use vgrad::nn::{
    Activation, Adam, AdamConfig, AdamW, AdamWConfig, BatchNorm1d, Ctx, Linear, Module, Optimizer,
    Residual, RmsProp, RmsPropConfig, Sequential, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor, Var};

/// Linear, tanh, a residual block with BatchNorm, Linear: every kind of parameter the
/// optimisers meet, some used by more than one node.
fn model(seed: u64) -> Sequential<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let block = Sequential::new()
        .push(Linear::new(4, 4, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(BatchNorm1d::new(4).unwrap());
    Sequential::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Residual::new(block))
        .push(Linear::new(4, 2, &mut rng).unwrap())
}

fn batch() -> (Tensor<f64>, Tensor<f64>) {
    let x: Vec<f64> = (0..18).map(|i| ((i * 7) % 11) as f64 / 5.0 - 1.0).collect();
    let y: Vec<f64> = (0..12).map(|i| ((i * 5) % 7) as f64 / 3.0 - 1.0).collect();
    (
        Tensor::from_vec(x, &[6, 3]).unwrap(),
        Tensor::from_vec(y, &[6, 2]).unwrap(),
    )
}

fn loss<'t>(
    net: &mut Sequential<f64>,
    ctx: &mut Ctx<'t, f64>,
    x: &Tensor<f64>,
    y: &Tensor<f64>,
) -> Var<'t, f64> {
    let tape = ctx.tape();
    let pred = net.forward(ctx, tape.constant(x.clone()));
    (pred - tape.constant(y.clone())).square().mean()
}

fn optimisers() -> Vec<(&'static str, Box<dyn Optimizer<f64>>)> {
    vec![
        (
            "sgd",
            Box::new(
                Sgd::new(SgdConfig {
                    lr: 0.1,
                    ..Default::default()
                })
                .unwrap(),
            ),
        ),
        (
            "sgd nesterov wd",
            Box::new(
                Sgd::new(SgdConfig {
                    lr: 0.05,
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 0.01,
                    ..Default::default()
                })
                .unwrap(),
            ),
        ),
        (
            "adam",
            Box::new(
                Adam::new(AdamConfig {
                    lr: 0.01,
                    weight_decay: 0.1,
                    ..Default::default()
                })
                .unwrap(),
            ),
        ),
        (
            "adamw",
            Box::new(AdamW::new(AdamWConfig::default()).unwrap()),
        ),
        (
            "rmsprop centered momentum",
            Box::new(
                RmsProp::new(RmsPropConfig {
                    momentum: 0.5,
                    centered: true,
                    ..Default::default()
                })
                .unwrap(),
            ),
        ),
    ]
}

fn assert_same_state(what: &str, a: &dyn Module<f64>, b: &dyn Module<f64>) {
    for ((name, x), (_, y)) in a.state_dict().iter().zip(b.state_dict()) {
        assert_eq!(x.shape(), y.shape(), "{what} {name}: shape");
        for (i, (p, q)) in x.data().iter().zip(y.data()).enumerate() {
            assert!(
                (p - q).abs() <= 1e-15 * q.abs(),
                "{what} {name}[{i}]: fused {p:e}, two calls {q:e}"
            );
        }
    }
}

#[test]
fn fused_step_lands_where_the_two_calls_land() {
    let (x, y) = batch();
    for ((what, mut fused), (_, mut split)) in optimisers().into_iter().zip(optimisers()) {
        let (mut a, mut b) = (model(1), model(1));
        fused.track_updates(true);
        split.track_updates(true);
        for step in 0..4 {
            let tape = Tape::new();
            let mut ctx = Ctx::new(&tape);
            let l = loss(&mut a, &mut ctx, &x, &y);
            fused.backward_step(&mut a, &ctx, l).unwrap();

            let tape = Tape::new();
            let mut ctx = Ctx::new(&tape);
            let l = loss(&mut b, &mut ctx, &x, &y);
            let grads = ctx.param_grads(&l.backward());
            split.step(&mut b, &grads).unwrap();
            assert_same_state(&format!("{what} step {step}"), &a, &b);

            // The same statistics, listed in update order rather than the model's order.
            let mut fs = fused.last_updates().to_vec();
            fs.sort_by(|p, q| p.name.cmp(&q.name));
            let mut ss = split.last_updates().to_vec();
            ss.sort_by(|p, q| p.name.cmp(&q.name));
            assert_eq!(fs.len(), 8, "{what}: every parameter tracked");
            for (f, s) in fs.iter().zip(&ss) {
                assert_eq!(f.name, s.name);
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
                assert!(close(f.update_norm, s.update_norm), "{what} {}", f.name);
                assert!(close(f.param_norm, s.param_norm), "{what} {}", f.name);
            }
        }
        // Not vacuous: the model moved.
        let start = model(1);
        let moved = a.state_dict()[0].1.data()[0] != start.state_dict()[0].1.data()[0];
        assert!(moved, "{what}: the first weight moved");
    }
}

#[test]
fn parameters_are_updated_where_they_lie_and_the_tape_sees_the_new_values() {
    let (x, y) = batch();
    let mut net = model(2);
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();
    let before: Vec<(String, *const f64, Vec<f64>)> = net
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.data().as_ptr(), t.data().to_vec()))
        .collect();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let l = loss(&mut net, &mut ctx, &x, &y);
    opt.backward_step(&mut net, &ctx, l).unwrap();
    let after = net.named_parameters();
    let bound = ctx.bound();
    assert_eq!(bound.len(), after.len());
    for (name, _, leaf) in &bound {
        let (_, value) = after.iter().find(|(n, _)| n == name).unwrap();
        let (_, ptr, old) = before.iter().find(|(n, ..)| n == name).unwrap();
        assert_eq!(value.data().as_ptr(), *ptr, "{name}: updated in place");
        assert!(value.data() != &old[..], "{name}: changed");
        assert_eq!(
            leaf.value().data(),
            value.data(),
            "{name}: the leaf shows it"
        );
    }
}

#[test]
fn a_panic_during_the_sweep_leaves_the_model_whole() {
    let (x, y) = batch();
    let mut net = model(3);
    let before = net.state_dict();
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let l = loss(&mut net, &mut ctx, &x, &y);
    // A hook on the first layer's weight runs after the layers above were updated.
    let first = ctx.bound()[0].2;
    first.register_hook(|_| panic!("hook failed"));
    let r = catch_unwind(AssertUnwindSafe(|| opt.backward_step(&mut net, &ctx, l)));
    assert!(r.is_err(), "the hook's panic propagates");
    let after = net.state_dict();
    assert_eq!(after.len(), before.len());
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(a.shape(), b.shape(), "{name}: a value, not a placeholder");
    }
    let changed = before
        .iter()
        .zip(&after)
        .filter(|((_, b), (_, a))| a.data() != b.data())
        .count();
    assert!(changed > 0, "the layers above had been updated");
}

#[test]
fn parameters_of_another_module_are_left_alone() {
    let (x, y) = batch();
    let mut rng = StdRng::seed_from_u64(4);
    let mut encoder = Linear::<f64>::new(3, 4, &mut rng).unwrap();
    let mut head = Linear::<f64>::new(4, 2, &mut rng).unwrap();
    let before = (encoder.state_dict(), head.state_dict());
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let h = encoder.forward(&mut ctx, tape.constant(x.clone()));
    let l = (head.forward(&mut ctx, h) - tape.constant(y))
        .square()
        .mean();
    opt.backward_step(&mut head, &ctx, l).unwrap();
    for ((_, b), (_, a)) in before.0.iter().zip(encoder.state_dict()) {
        assert_eq!(a.data(), b.data(), "the encoder is not the model stepped");
    }
    for ((_, b), (_, a)) in before.1.iter().zip(head.state_dict()) {
        assert!(a.data() != b.data(), "the head moved");
    }
}

/// The same layer applied twice: one leaf per parameter, two uses.
fn twice<'t>(
    l: &mut Linear<f64>,
    ctx: &mut Ctx<'t, f64>,
    x: &Tensor<f64>,
    y: &Tensor<f64>,
) -> Var<'t, f64> {
    let tape = ctx.tape();
    let h = l.forward(ctx, tape.constant(x.clone()));
    (l.forward(ctx, h) - tape.constant(y.clone()))
        .square()
        .mean()
}

#[test]
fn a_parameter_used_twice_is_updated_once_with_both_uses_summed() {
    let x = Tensor::from_vec((0..12).map(|i| i as f64 / 6.0 - 1.0).collect(), &[3, 4]).unwrap();
    let y = Tensor::from_vec((0..12).map(|i| (i % 5) as f64 / 2.0).collect(), &[3, 4]).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let (mut a, mut b) = {
        let l = Linear::<f64>::new(4, 4, &mut rng).unwrap();
        (l.clone(), l)
    };
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let (mut fused, mut split) = (Sgd::new(cfg).unwrap(), Sgd::new(cfg).unwrap());
    let start = a.weight().value().clone();
    for step in 0..3 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = twice(&mut a, &mut ctx, &x, &y);
        fused.backward_step(&mut a, &ctx, l).unwrap();

        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = twice(&mut b, &mut ctx, &x, &y);
        split.step(&mut b, &ctx.param_grads(&l.backward())).unwrap();
        assert_same_state(&format!("step {step}"), &a, &b);
    }
    assert!(
        a.weight().value().data() != start.data(),
        "the weight moved"
    );
}
