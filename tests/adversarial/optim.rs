//! Adversarial cases: optimiser parameter groups under schedules, and gradient clipping by
//! every norm type (issue 16, items 14 and 15).
//!
//! * Generated group/schedule configurations (random base rates, groups with their own rate
//!   or a multiple, warm-up lengths and factors, cosine lengths and floors; plateau factors,
//!   patiences and per-group floors) against a direct f64 evaluation of PyTorch's per-group
//!   rule, including the rate each parameter actually moves by; invalid configurations must
//!   be clear errors.
//! * Generated gradients (zeros, huge, tiny and subnormal, NaN, ∞, mixed) through every norm
//!   type against an f64 reference computed another way (log-sum-exp), with the peak memory
//!   of the clipping bounded.
//!
//! Each test prints its tally: inputs tried, clear errors, panics, wrong results.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::f64::consts::PI;
use std::panic::{catch_unwind, AssertUnwindSafe};
use vgrad::nn::{
    clip_grad_norm, clip_grad_norm_p, CosineAnnealingLr, Ctx, Linear, LinearWarmup, LrSchedule,
    LrScheduler, Module, Optimizer, Param, ParamGrads, ParamGroup, PlateauConfig,
    ReduceLrOnPlateau, SequentialLr, Sgd, SgdConfig,
};
use vgrad::{Element, Error, Tape, Tensor};

#[derive(Default, Debug)]
struct Tally {
    tried: usize,
    errors: usize,
    panics: usize,
    wrong: usize,
}

/// `|a − b| ≤ tol·|b|`, NaN equal to NaN, ∞ equal to itself.
fn close(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * b.abs()
}

/// How a generated group sets its rate.
#[derive(Clone, Copy, Debug)]
enum GroupRate {
    Own(f64),
    Scale(f64),
}

/// A warm-up (`w` steps from factor `s`) then a cosine over `t_max` steps to `eta_min`, as
/// PyTorch's SequentialLR([LinearLR, CosineAnnealingLR]) sets one group's rate at step `t` from
/// that group's own base rate (its closed form, written out here independently).
fn pytorch_group_lr(base: f64, t: usize, w: usize, s: f64, t_max: usize, eta_min: f64) -> f64 {
    if t < w {
        base * (s + (1.0 - s) * t as f64 / w as f64)
    } else {
        let c = (PI * (t - w) as f64 / t_max as f64).cos();
        eta_min + (base - eta_min) * (1.0 + c) / 2.0
    }
}

/// A one-layer model with a weight `0.weight` [2, 2] and a bias `0.bias` [2], as `Linear`.
fn model() -> vgrad::nn::Sequential<f64> {
    let w = Tensor::from_vec(vec![0.5, -0.25, 0.125, 1.0], &[2, 2]).unwrap();
    let b = Tensor::vector(&[0.1, -0.2]);
    vgrad::nn::Sequential::new().push(Linear::from_tensors(w, Some(b)).unwrap())
}

/// One plain-SGD step on a fixed batch: returns the parameters before, the gradients and the
/// parameters after, by name.
type Snapshot = Vec<(String, Vec<f64>)>;
fn sgd_step(m: &mut vgrad::nn::Sequential<f64>, opt: &mut dyn Optimizer<f64>) -> [Snapshot; 3] {
    let before: Snapshot = m
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec()))
        .collect();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let x = Tensor::from_vec(vec![1.0, 2.0, -1.0, 0.5], &[2, 2]).unwrap();
    let loss = m.forward(&mut ctx, tape.constant(x)).square().mean();
    let grads = ctx.param_grads(&loss.backward());
    let g: Snapshot = before
        .iter()
        .map(|(n, _)| (n.clone(), grads.get_name(n).unwrap().to_vec()))
        .collect();
    opt.step(m, &grads).unwrap();
    let after = m
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec()))
        .collect();
    [before, g, after]
}

/// Random group/schedule configurations: each group's rate at every step against the direct
/// per-group rule, and the rate each parameter actually moved by in a plain SGD step.
#[test]
fn generated_group_schedules_follow_pytorchs_per_group_rule() {
    let mut rng = StdRng::seed_from_u64(16_14);
    let mut tally = Tally::default();
    let mut steps_checked = 0;
    for _ in 0..300 {
        tally.tried += 1;
        let base = 10f64.powf(rng.random_range(-5.0..0.0));
        // The bias group: its own rate (PyTorch's semantics) or a multiple (tied to the
        // optimiser's rate); the weights of layer 0 in no group.
        let bias = if rng.random_bool(0.7) {
            GroupRate::Own(10f64.powf(rng.random_range(-5.0..0.0)))
        } else {
            GroupRate::Scale(rng.random_range(0.0..5.0))
        };
        let w = rng.random_range(1..6);
        let s = rng.random_range(0.01..=1.0);
        let t_max = rng.random_range(1..12);
        let eta_min = if rng.random_bool(0.2) {
            0.0
        } else {
            10f64.powf(rng.random_range(-6.0..-2.0))
        };
        let group = ParamGroup::matching(|n| n.ends_with("bias"));
        let group = match bias {
            GroupRate::Own(lr) => group.lr(lr),
            GroupRate::Scale(m) => group.lr_scale(m),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<usize, Error> {
            let mut opt = Sgd::<f64>::new(SgdConfig {
                lr: base,
                ..Default::default()
            })?
            .with_group(group)?;
            let schedule = SequentialLr::new(
                vec![
                    Box::new(LinearWarmup::new(s, w)?) as Box<dyn LrSchedule>,
                    Box::new(CosineAnnealingLr::new(t_max, eta_min)?),
                ],
                vec![w],
            )?;
            let mut sched = LrScheduler::new(schedule, &mut opt)?;
            let mut m = model();
            let mut wrong = 0;
            for t in 0..w + 2 * t_max + 1 {
                let lr0 = pytorch_group_lr(base, t, w, s, t_max, eta_min);
                let (expected, bias_lr) = match bias {
                    GroupRate::Own(b) => {
                        let lr = pytorch_group_lr(b, t, w, s, t_max, eta_min);
                        (vec![lr0, lr], lr)
                    }
                    GroupRate::Scale(k) => (vec![lr0], k * lr0),
                };
                let got = opt.group_lrs();
                let rates_ok = got.len() == expected.len()
                    && got.iter().zip(&expected).all(|(a, b)| close(*a, *b, 1e-12));
                // Plain SGD: θ' = θ − lr·g, so each parameter's rate is (θ − θ')/g.
                let [before, g, after] = sgd_step(&mut m, &mut opt);
                let mut moved_ok = true;
                for ((name, b), ((_, g), (_, a))) in before.iter().zip(g.iter().zip(&after)) {
                    let lr = if name.ends_with("bias") { bias_lr } else { lr0 };
                    for ((b, g), a) in b.iter().zip(g).zip(a) {
                        moved_ok &= (b - lr * g - a).abs() <= 1e-15 * (b.abs() + (lr * g).abs());
                    }
                }
                if !(rates_ok && moved_ok) {
                    wrong += 1;
                }
                sched.step(&mut opt)?;
            }
            Ok(wrong)
        }));
        match outcome {
            Ok(Ok(0)) => steps_checked += w + 2 * t_max + 1,
            Ok(Ok(_)) => tally.wrong += 1,
            Ok(Err(_)) => tally.errors += 1,
            Err(_) => tally.panics += 1,
        }
    }
    eprintln!("group schedules: {tally:?}, {steps_checked} steps checked");
    assert_eq!((tally.errors, tally.panics, tally.wrong), (0, 0, 0));
}

/// PyTorch's ReduceLROnPlateau written out directly: every group reduced on its own and
/// floored at its own min_lr.
struct PlateauRef {
    lrs: Vec<f64>,
    min_lrs: Vec<f64>,
    factor: f64,
    patience: usize,
    best: f64,
    bad: usize,
}

impl PlateauRef {
    fn observe(&mut self, metric: f64) {
        // mode min, threshold_mode rel, threshold 1e-4, no cooldown, eps 1e-8.
        if metric < self.best * (1.0 - 1e-4) {
            self.best = metric;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.bad > self.patience {
            for (lr, min) in self.lrs.iter_mut().zip(&self.min_lrs) {
                let new = (*lr * self.factor).max(*min);
                if *lr - new > 1e-8 {
                    *lr = new;
                }
            }
            self.bad = 0;
        }
    }
}

/// Random plateau configurations over an optimiser with 1 to 4 groups with their own rates
/// and per-group floors, against the direct rule; resumed from the state at random points.
#[test]
fn generated_plateaus_reduce_every_group_on_its_own() {
    let mut rng = StdRng::seed_from_u64(16_141);
    let mut tally = Tally::default();
    for _ in 0..300 {
        tally.tried += 1;
        let groups = rng.random_range(0..4);
        let base = 10f64.powf(rng.random_range(-4.0..0.0));
        let own: Vec<f64> = (0..groups)
            .map(|_| 10f64.powf(rng.random_range(-4.0..0.0)))
            .collect();
        let min_lrs: Vec<f64> = (0..=groups)
            .map(|_| 10f64.powf(rng.random_range(-6.0..-1.0)))
            .collect();
        let factor = rng.random_range(0.0..0.99);
        let patience = rng.random_range(0..4);
        let metrics: Vec<f64> = (0..40)
            .map(|_| match rng.random_range(0..10) {
                0 => f64::NAN,
                _ => rng.random_range(0.0..1.0),
            })
            .collect();
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<bool, Error> {
            let mut opt = Sgd::<f64>::new(SgdConfig {
                lr: base,
                ..Default::default()
            })?;
            for (i, &lr) in own.iter().enumerate() {
                opt = opt.with_group(ParamGroup::matching(move |n| n.len() == i).lr(lr))?;
            }
            let cfg = PlateauConfig {
                factor,
                patience,
                ..Default::default()
            };
            let mut plateau =
                ReduceLrOnPlateau::for_optimizer(&opt, cfg)?.with_min_lrs(min_lrs.clone())?;
            let mut reference = PlateauRef {
                lrs: std::iter::once(base).chain(own.iter().copied()).collect(),
                min_lrs: min_lrs.clone(),
                factor,
                patience,
                best: f64::INFINITY,
                bad: 0,
            };
            let mut ok = true;
            for &m in &metrics {
                if rng.random_bool(0.2) {
                    plateau = ReduceLrOnPlateau::from_state(cfg, plateau.state())?;
                }
                plateau.step(m, &mut opt)?;
                reference.observe(m);
                ok &= opt.group_lrs() == reference.lrs;
            }
            Ok(ok)
        }));
        match outcome {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => tally.wrong += 1,
            Ok(Err(_)) => tally.errors += 1,
            Err(_) => tally.panics += 1,
        }
    }
    eprintln!("group plateaus: {tally:?}");
    assert_eq!((tally.errors, tally.panics, tally.wrong), (0, 0, 0));
}

/// Invalid group rates, floors and rate lists: each must be a clear `Error::Config` (never a
/// panic, never accepted), and a rejected list must leave every rate as it was.
#[test]
fn generated_invalid_group_configurations_are_clear_errors() {
    let mut rng = StdRng::seed_from_u64(16_142);
    let bad_values = [-1.0, -1e-300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    let mut tally = Tally::default();
    for i in 0..200 {
        tally.tried += 1;
        let bad = bad_values[rng.random_range(0..bad_values.len())];
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), Error> {
            let opt = Sgd::<f64>::new(SgdConfig::default())?
                .with_group(ParamGroup::matching(|n| n.ends_with("bias")).lr(0.5))?;
            match i % 5 {
                0 => opt
                    .with_group(ParamGroup::matching(|_| true).lr(bad))
                    .map(drop),
                1 => {
                    let mut opt = opt;
                    let r = opt.set_group_lrs(&[0.1, bad]);
                    assert_eq!(
                        opt.group_lrs(),
                        [1e-3, 0.5],
                        "a rejected list changed rates"
                    );
                    r
                }
                2 => {
                    let mut opt = opt;
                    let n = [0, 1, 3, 4][rng.random_range(0..4)];
                    let r = opt.set_group_lrs(&vec![0.1; n]);
                    assert_eq!(
                        opt.group_lrs(),
                        [1e-3, 0.5],
                        "a rejected list changed rates"
                    );
                    r
                }
                3 => ReduceLrOnPlateau::for_optimizer(&opt, PlateauConfig::default())?
                    .with_min_lrs(vec![0.0, bad])
                    .map(drop),
                _ => LrScheduler::with_base_lrs(CosineAnnealingLr::new(3, 0.0)?, vec![0.1, bad])
                    .map(drop),
            }
        }));
        match outcome {
            Ok(Err(Error::Config(_))) => tally.errors += 1,
            Ok(_) => tally.wrong += 1,
            Err(_) => tally.panics += 1,
        }
    }
    eprintln!("invalid group configurations: {tally:?}");
    assert_eq!(tally.errors, tally.tried);
}

/// The p-norm of all values, in f64, computed another way than vgrad: through logarithms,
/// (1/p)·log Σ exp(p·log|x|), which no magnitude overflows or underflows.
fn reference_norm(values: &[f64], p: f64) -> f64 {
    if values.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    if values.iter().any(|x| x.is_infinite()) {
        return f64::INFINITY;
    }
    let logs: Vec<f64> = values
        .iter()
        .filter(|x| **x != 0.0)
        .map(|x| x.abs().ln())
        .collect();
    if logs.is_empty() {
        return 0.0;
    }
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if p.is_infinite() {
        return top.exp();
    }
    let sum: f64 = logs.iter().map(|l| (p * (l - top)).exp()).sum();
    (top + sum.ln() / p).exp()
}

/// A value of one adversarial class, as f64 within `T`'s range.
fn generated<T: Element>(rng: &mut StdRng, class: usize) -> f64 {
    let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let (huge, tiny) = if T::DTYPE == "f32" {
        (1e37, 1e-44) // f32: near the largest finite and among the subnormals
    } else {
        (1e300, 1e-320)
    };
    let x: f64 = match class {
        0 => 0.0,
        1 => huge * rng.random_range(0.1..1.0),
        2 => tiny * rng.random_range(1.0..10.0),
        3 => rng.random_range(-10.0..10.0),
        4 => 10f64.powf(rng.random_range(-30.0..30.0)),
        _ => unreachable!(),
    };
    T::of(sign * x).widen()
}

fn run_clip_cases<T: Element>(seed: u64, tally: &mut Tally, worst: &mut f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let norm_types = [0.5, 1.0, 2.0, 3.0, 7.0, f64::INFINITY];
    for case in 0..600 {
        // One class for the whole case or a mix; a NaN or an infinity planted in some cases.
        let class = rng.random_range(0..6);
        let shapes: Vec<usize> = (0..rng.random_range(1..4))
            .map(|_| rng.random_range(1..40))
            .collect();
        let plant = rng.random_range(0..8);
        let mut grads = ParamGrads::<T>::default();
        let mut params = Vec::new();
        let mut all = Vec::new();
        for (i, &n) in shapes.iter().enumerate() {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    let c = if class == 5 {
                        rng.random_range(0..5)
                    } else {
                        class
                    };
                    generated::<T>(&mut rng, c)
                })
                .collect();
            if i == 0 && plant == 0 {
                v[0] = f64::NAN;
            } else if i == 0 && plant == 1 {
                v[n - 1] = f64::INFINITY;
            }
            all.extend(&v);
            let p = Param::new(Tensor::<T>::zeros(&[n]));
            let t = Tensor::from_vec(v.iter().map(|&x| T::of(x)).collect(), &[n]).unwrap();
            grads.insert(p.id(), format!("p{i}"), t);
            params.push(p);
        }
        let p = norm_types[case % norm_types.len()];
        let max_norm = 10f64.powf(rng.random_range(-3.0..3.0));
        tally.tried += 1;
        let (outcome, peak) = crate::meter::peak_during(|| {
            catch_unwind(AssertUnwindSafe(|| {
                clip_grad_norm_p(&mut grads, max_norm, p)
            }))
        });
        let Ok(total) = outcome else {
            tally.panics += 1;
            continue;
        };
        // Nothing the size of the gradients is allocated: they are clipped where they lie.
        assert!(peak < 16 << 10, "clipping allocated {peak} bytes");
        let want = reference_norm(&all, p);
        // Finite non-zero totals to 1e-12 relative; the p-th powers of 1e-320 subnormals carry
        // fewer digits, as their inputs do.
        let tol = if all.iter().all(|x| *x == 0.0 || x.abs() > 1e-300) {
            1e-12
        } else {
            1e-9
        };
        let total_ok = close(total, want, tol);
        if total_ok && want.is_finite() && want > 0.0 {
            *worst = worst.max((total - want).abs() / want);
        }
        let coef = max_norm / (total + 1e-6);
        let mut grads_ok = true;
        let mut k = 0;
        for param in &params {
            let got = grads.get(param).unwrap().data().to_vec();
            for x in got {
                let original = T::of(all[k]);
                let expected = if coef.is_nan() || coef < 1.0 {
                    original * T::of(coef)
                } else {
                    original
                };
                grads_ok &= x == expected || (x.is_nan() && expected.is_nan());
                k += 1;
            }
        }
        if !(total_ok && grads_ok) {
            tally.wrong += 1;
            eprintln!(
                "{} p={p} class {class} plant {plant}: total {total:e}, reference {want:e}, grads ok {grads_ok}",
                T::DTYPE
            );
        }
    }
}

/// Generated gradients of every class through every norm type, in f32 and f64, against the
/// log-space reference; the gradients scaled by coef exactly when it is below 1 (or NaN).
#[test]
fn generated_gradients_through_every_norm_type_match_an_f64_reference() {
    let mut tally = Tally::default();
    let mut worst = 0.0f64;
    run_clip_cases::<f32>(16_15, &mut tally, &mut worst);
    run_clip_cases::<f64>(16_151, &mut tally, &mut worst);
    eprintln!("clip_grad_norm_p: {tally:?}, worst relative error of a finite total {worst:.2e}");
    assert_eq!((tally.panics, tally.wrong), (0, 0));
}

/// Bad norm types and thresholds: a panic naming the argument, every time, with the gradients
/// untouched; the L2 form is `clip_grad_norm` to the bit.
#[test]
fn generated_bad_norm_types_panic_clearly() {
    let mut rng = StdRng::seed_from_u64(16_152);
    let bad = [0.0, -0.0, -1.0, -2.0, f64::NAN, f64::NEG_INFINITY, -1e-300];
    let mut tally = Tally::default();
    for _ in 0..100 {
        tally.tried += 1;
        let p = bad[rng.random_range(0..bad.len())];
        let param = Param::new(Tensor::<f32>::zeros(&[3]));
        let one = |v: &[f32]| {
            let mut g = ParamGrads::default();
            g.insert(param.id(), "w".into(), Tensor::vector(v));
            g
        };
        let mut grads = one(&[3.0, -4.0, 12.0]);
        let r = catch_unwind(AssertUnwindSafe(|| clip_grad_norm_p(&mut grads, 1.0, p)));
        match r {
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                if msg.contains("norm_type must be > 0") {
                    tally.panics += 1;
                } else {
                    tally.wrong += 1;
                }
            }
            Ok(_) => tally.wrong += 1,
        }
        if grads.get(&param).unwrap().data() != [3.0, -4.0, 12.0] {
            tally.wrong += 1;
        }
        let v: Vec<f32> = (0..3).map(|_| rng.random_range(-10.0..10.0)).collect();
        let (mut grads, mut a) = (one(&v), one(&v));
        let x = rng.random_range(0.0..20.0);
        let l2 = clip_grad_norm(&mut grads, x);
        let l2p = clip_grad_norm_p(&mut a, x, 2.0);
        if l2.to_bits() != l2p.to_bits() {
            tally.wrong += 1;
        }
    }
    eprintln!("bad norm types: {tally:?} (every one a clear panic)");
    assert_eq!((tally.panics, tally.wrong), (tally.tried, 0));
}
