//! Tests of the step every optimiser shares, through the public trait; the tests of one
//! optimiser's own state sit in its file.

use super::*;
use crate::nn::{Ctx, Linear, Param, Sequential, Visitor};
use crate::tensor::Tensor;
use crate::Tape;

pub(super) fn model() -> Sequential<f64> {
    let w = Tensor::from_vec(vec![0.5, -0.25, 0.125, 1.0], &[2, 2]).unwrap();
    let b = Tensor::vector(&[0.1, -0.2]);
    Sequential::new().push(Linear::from_tensors(w, Some(b)).unwrap())
}

pub(super) fn grads_of(m: &mut Sequential<f64>) -> ParamGrads<f64> {
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let x = Tensor::from_vec(vec![1.0, 2.0, -1.0, 0.5], &[2, 2]).unwrap();
    let loss = m.forward(&mut ctx, tape.constant(x)).square().mean();
    ctx.param_grads(&loss.backward())
}

pub(super) fn ids(m: &Sequential<f64>) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl Visitor<f64> for Ids {
        fn param(&mut self, _: &str, p: &Param<f64>) {
            self.0.push(p.id());
        }
    }
    let mut ids = Ids(Vec::new());
    m.visit(&mut ids);
    ids.0
}

/// With the tape dropped before the step, plain SGD overwrites the parameter's own buffer;
/// while a clone of the value is alive it builds a new one. Both give the same values.
#[test]
fn every_optimiser_updates_an_unshared_parameter_in_place_with_the_same_result() {
    let w = Tensor::from_fn(&[5, 4], |i| (i as f64 * 0.37).sin());
    let x = Tensor::from_fn(&[3, 4], |i| (i as f64 * 0.11).cos());
    let sgd = |momentum, nesterov| -> Box<dyn Optimizer<f64>> {
        Box::new(
            Sgd::new(SgdConfig {
                lr: 0.5,
                momentum,
                nesterov,
                weight_decay: 0.1,
                ..Default::default()
            })
            .unwrap(),
        )
    };
    type Make = Box<dyn Fn() -> Box<dyn Optimizer<f64>>>;
    let optimisers: Vec<(&str, Make)> = vec![
        ("sgd", Box::new(move || sgd(0.0, false))),
        ("sgd momentum", Box::new(move || sgd(0.9, false))),
        ("sgd nesterov", Box::new(move || sgd(0.9, true))),
        (
            "adam",
            Box::new(|| {
                Box::new(
                    Adam::new(AdamConfig {
                        weight_decay: 0.1,
                        ..Default::default()
                    })
                    .unwrap(),
                )
            }),
        ),
        (
            "adamw",
            Box::new(|| Box::new(AdamW::new(AdamWConfig::default()).unwrap())),
        ),
        (
            "rmsprop centered momentum",
            Box::new(|| {
                Box::new(
                    RmsProp::new(RmsPropConfig {
                        centered: true,
                        momentum: 0.9,
                        weight_decay: 0.1,
                        ..Default::default()
                    })
                    .unwrap(),
                )
            }),
        ),
    ];
    for (name, make) in &optimisers {
        // Two steps, so that the rules with state run their first-step and later paths.
        let run = |keep_clone: bool| {
            let mut lin = Linear::from_tensors(w.clone(), None).unwrap();
            let mut opt = make();
            let mut same_buffer = true;
            for _ in 0..2 {
                let g = {
                    let tape = Tape::new();
                    let mut ctx = Ctx::new(&tape);
                    let loss = lin
                        .forward(&mut ctx, tape.constant(x.clone()))
                        .square()
                        .mean();
                    ctx.param_grads(&loss.backward())
                };
                // `w` itself shares the buffer until the layer's value is detached from it.
                let own = lin.weight().value().map(|v| v);
                lin.weight_mut().set(own);
                let before = lin.weight().value().data().as_ptr();
                let held = keep_clone.then(|| lin.weight().value().clone());
                opt.step(&mut lin, &g).unwrap();
                same_buffer &= lin.weight().value().data().as_ptr() == before;
                if let Some(h) = held {
                    assert!(h.data() != lin.weight().value().data(), "{name}: held copy");
                }
            }
            (same_buffer, lin.weight().value().clone())
        };
        let (same_buffer, in_place) = run(false);
        assert!(same_buffer, "{name}: unshared, updated where it lies");
        let (same_buffer, copied) = run(true);
        assert!(!same_buffer, "{name}: shared, a new buffer");
        for (a, b) in in_place.data().iter().zip(copied.data()) {
            assert!(
                (a - b).abs() <= 1e-15 * b.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
        assert!(
            in_place.data().iter().zip(w.data()).any(|(n, o)| n != o),
            "{name}: it moved"
        );
    }
}

/// Groups with their own rate: listed after the optimiser's own, set all at once or not
/// at all, saved and loaded with the state; groups with a multiple are not listed.
#[test]
fn group_rates_are_listed_set_saved_and_loaded() {
    let make = || {
        AdamW::<f64>::new(AdamWConfig {
            lr: 0.01,
            ..Default::default()
        })
        .unwrap()
        .with_group(ParamGroup::matching(|n| n.ends_with("bias")).lr(0.03))
        .unwrap()
        .with_group(ParamGroup::matching(|n| n.starts_with("0.")).lr_scale(0.5))
        .unwrap()
        .with_group(
            ParamGroup::matching(|_| false)
                .lr(0.2)
                .lr_scale(2.0)
                .lr(0.07),
        )
        .unwrap()
    };
    let mut opt = make();
    assert_eq!(opt.group_lrs(), [0.01, 0.03, 0.07]);
    for bad in [
        &[0.1, 0.2][..],
        &[0.1, -0.2, 0.3],
        &[0.1, 0.2, f64::NAN],
        &[],
    ] {
        let err = opt.set_group_lrs(bad).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert_eq!(
            opt.group_lrs(),
            [0.01, 0.03, 0.07],
            "unchanged after {bad:?}"
        );
    }
    opt.set_group_lrs(&[0.002, 0.004, 0.006]).unwrap();
    assert_eq!(opt.lr(), 0.002);

    // A step uses each parameter's group rate: the bias (own rate 0.004) moves by about
    // 0.004 on Adam's first step, the weight of layer 0 (0.5 x 0.002) by about 0.001.
    let mut m = model();
    let before = m.state_dict();
    let g = grads_of(&mut m);
    opt.step(&mut m, &g).unwrap();
    let after = m.state_dict();
    let moved = |i: usize| after[i].1.sub(&before[i].1).data()[0].abs();
    assert!((moved(1) - 0.004).abs() < 1e-5, "{}", moved(1));
    assert!((moved(0) - 0.001).abs() < 1e-5, "{}", moved(0));

    let state = opt.state_dict(&m).unwrap();
    assert_eq!(state.hyper["lr"], 0.002);
    assert_eq!(state.hyper["group1.lr"], 0.004);
    assert_eq!(state.hyper["group2.lr"], 0.006);
    let mut fresh = make();
    fresh.load_state_dict(&m, &state).unwrap();
    assert_eq!(fresh.group_lrs(), [0.002, 0.004, 0.006]);

    // Another number of groups with their own rate does not load; nor an invalid rate.
    let mut fewer = AdamW::<f64>::new(AdamWConfig::default()).unwrap();
    let err = fewer.load_state_dict(&m, &state).unwrap_err();
    assert!(matches!(err, Error::Format(_)), "{err}");
    assert_eq!(fewer.group_lrs(), [1e-3]);
    let mut bad = state.clone();
    bad.hyper.insert("group2.lr".into(), -1.0);
    let mut fresh = make();
    assert!(matches!(
        fresh.load_state_dict(&m, &bad),
        Err(Error::Config(_))
    ));
    assert_eq!(fresh.group_lrs(), [0.01, 0.03, 0.07]);

    let err = Sgd::<f64>::new(SgdConfig::default())
        .unwrap()
        .with_group(ParamGroup::matching(|_| true).lr(f64::INFINITY))
        .unwrap_err();
    assert!(err.to_string().contains("parameter group lr"), "{err}");
}

#[test]
fn update_stats_only_when_tracked() {
    let mut m = model();
    let g = grads_of(&mut m);
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();
    opt.step(&mut m, &g).unwrap();
    assert!(opt.last_updates().is_empty());
    opt.track_updates(true);
    let before = m.state_dict();
    opt.step(&mut m, &g).unwrap();
    let stats = opt.last_updates();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].name, "0.weight");
    assert_eq!(stats[1].name, "0.bias");
    // Plain SGD moves θ by exactly lr·g.
    let gw = g.get_name("0.weight").unwrap();
    assert!((stats[0].update_norm - 0.1 * gw.norm_l2()).abs() < 1e-12);
    assert!((stats[0].param_norm - before[0].1.norm_l2()).abs() < 1e-15);
    assert!(stats[0].ratio() > 0.0);
}

#[test]
fn configs_are_validated() {
    let bad_sgd = [
        SgdConfig {
            lr: -1.0,
            ..Default::default()
        },
        SgdConfig {
            lr: f64::NAN,
            ..Default::default()
        },
        SgdConfig {
            momentum: -0.1,
            ..Default::default()
        },
        SgdConfig {
            weight_decay: -1e-4,
            ..Default::default()
        },
        SgdConfig {
            momentum: 0.9,
            dampening: 0.1,
            nesterov: true,
            ..Default::default()
        },
    ];
    for c in bad_sgd {
        assert!(matches!(Sgd::<f32>::new(c), Err(Error::Config(_))), "{c:?}");
    }
    for betas in [(1.0, 0.999), (0.9, -0.1), (f64::NAN, 0.9)] {
        let c = AdamConfig {
            betas,
            ..Default::default()
        };
        assert!(Adam::<f32>::new(c).is_err(), "{betas:?}");
    }
    assert!(AdamW::<f32>::new(AdamWConfig {
        eps: -1.0,
        ..Default::default()
    })
    .is_err());
    assert!(RmsProp::<f32>::new(RmsPropConfig {
        alpha: 1.5,
        ..Default::default()
    })
    .is_err());
    let mut opt = Sgd::<f32>::new(SgdConfig::default()).unwrap();
    assert!(opt.set_lr(-0.1).is_err());
    assert!(opt.set_lr(f64::INFINITY).is_err());
    assert_eq!(opt.lr(), 1e-3, "a rejected rate leaves the old one");
    opt.set_lr(0.5).unwrap();
    assert_eq!(opt.lr(), 0.5);
}
