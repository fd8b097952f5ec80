//! Optimiser state checkpoints: a run saved part-way and resumed from the files follows the
//! uninterrupted run, and a state file that does not fit the optimiser or the model is an
//! error that leaves the optimiser as it was.
//!
//! The reference is independent of the save/load code: the same training run, never
//! interrupted. What the saved buffers mean is checked against PyTorch in `golden_optim.rs`.

// Checkpoints need the `safetensors` feature (on by default).
#![cfg(feature = "safetensors")]

use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;
use vgrad::nn::{
    load_optimizer, load_optimizer_bytes, load_safetensors_bytes, save_optimizer,
    save_optimizer_bytes, save_safetensors_bytes, Activation, Adam, AdamConfig, AdamW, AdamWConfig,
    Ctx, Linear, Module, Optimizer, OptimizerState, ParamGrads, ParamGroup, RmsProp, RmsPropConfig,
    Sequential, Sgd, SgdConfig, UpdateStat,
};
use vgrad::{Element, Error, Tape, Tensor};

fn mlp<T: Element>(seed: u64, hidden: usize) -> Sequential<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .push(Linear::new(3, hidden, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(hidden, 2, &mut rng).unwrap())
}

/// A fixed regression batch.
fn batch<T: Element>() -> (Tensor<T>, Tensor<T>) {
    let x: Vec<T> = (0..18)
        .map(|i| T::of(((i * 7) % 11) as f64 / 5.0 - 1.0))
        .collect();
    let y: Vec<T> = (0..12)
        .map(|i| T::of(((i * 5) % 7) as f64 / 3.0 - 1.0))
        .collect();
    let x = Tensor::from_vec(x, &[6, 3]).unwrap();
    (x, Tensor::from_vec(y, &[6, 2]).unwrap())
}

fn train<T: Element>(model: &mut Sequential<T>, opt: &mut dyn Optimizer<T>, steps: usize) {
    let (x, y) = batch::<T>();
    for _ in 0..steps {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let pred = model.forward(&mut ctx, tape.constant(x.clone()));
        let loss = (pred - tape.constant(y.clone())).square().mean();
        opt.backward_step(model, &ctx, loss).unwrap();
    }
}

fn weights<T: Element>(m: &dyn Module<T>) -> Vec<f64> {
    let to64 = |x: &T| x.to_f64().unwrap();
    m.state_dict()
        .iter()
        .flat_map(|(_, t)| t.data().iter().map(to64).collect::<Vec<_>>())
        .collect()
}

/// Largest |a − b| / (1e-300 + |b|) over the elements.
fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let rel = |(x, y): (&f64, &f64)| (x - y).abs() / (1e-300 + y.abs());
    a.iter().zip(b).map(rel).fold(0.0, f64::max)
}

/// One optimiser configuration, built with the hyperparameters under test, and a default
/// one of the same kind (which the loaded file must overwrite).
struct Case<T: Element> {
    name: &'static str,
    configured: fn() -> Box<dyn Optimizer<T>>,
    default: fn() -> Box<dyn Optimizer<T>>,
}

fn cases<T: Element>() -> Vec<Case<T>> {
    vec![
        Case {
            name: "sgd nesterov + weight decay",
            configured: || {
                let cfg = SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 0.01,
                    ..Default::default()
                };
                Box::new(Sgd::new(cfg).unwrap())
            },
            default: || Box::new(Sgd::new(SgdConfig::default()).unwrap()),
        },
        Case {
            name: "sgd dampening",
            configured: || {
                let cfg = SgdConfig {
                    lr: 0.05,
                    momentum: 0.8,
                    dampening: 0.3,
                    ..Default::default()
                };
                Box::new(Sgd::new(cfg).unwrap())
            },
            default: || Box::new(Sgd::new(SgdConfig::default()).unwrap()),
        },
        Case {
            name: "adam",
            configured: || {
                let cfg = AdamConfig {
                    lr: 0.02,
                    betas: (0.8, 0.95),
                    weight_decay: 0.01,
                    ..Default::default()
                };
                Box::new(Adam::new(cfg).unwrap())
            },
            default: || Box::new(Adam::new(AdamConfig::default()).unwrap()),
        },
        Case {
            name: "adamw",
            configured: || {
                let cfg = AdamWConfig {
                    lr: 0.02,
                    weight_decay: 0.1,
                    ..Default::default()
                };
                Box::new(AdamW::new(cfg).unwrap())
            },
            default: || Box::new(AdamW::new(AdamWConfig::default()).unwrap()),
        },
        Case {
            name: "adamw, no decay for biases, the first layer at a tenth of the rate",
            configured: || {
                let cfg = AdamWConfig {
                    lr: 0.02,
                    weight_decay: 0.1,
                    ..Default::default()
                };
                Box::new(with_groups(AdamW::new(cfg).unwrap()))
            },
            // The groups are code: a resumed run builds them again.
            default: || Box::new(with_groups(AdamW::new(AdamWConfig::default()).unwrap())),
        },
        Case {
            name: "rmsprop centered + momentum",
            configured: || {
                let cfg = RmsPropConfig {
                    lr: 0.01,
                    momentum: 0.5,
                    centered: true,
                    ..Default::default()
                };
                Box::new(RmsProp::new(cfg).unwrap())
            },
            default: || Box::new(RmsProp::new(RmsPropConfig::default()).unwrap()),
        },
        Case {
            name: "rmsprop",
            configured: || {
                let cfg = RmsPropConfig {
                    lr: 0.01,
                    alpha: 0.9,
                    ..Default::default()
                };
                Box::new(RmsProp::new(cfg).unwrap())
            },
            default: || Box::new(RmsProp::new(RmsPropConfig::default()).unwrap()),
        },
    ]
}

fn with_groups<T: Element>(opt: AdamW<T>) -> AdamW<T> {
    let no_decay = ParamGroup::matching(|n| n.ends_with("bias")).weight_decay(0.0);
    let slow = ParamGroup::matching(|n| n.starts_with("0.")).lr_scale(0.1);
    opt.with_group(no_decay).unwrap().with_group(slow).unwrap()
}

/// The weights as raw bits. A resumed run repeats the uninterrupted run's operations in the
/// same order on bit-identical inputs, so the claim is bit-identity, and that is what is
/// compared (as the checkpoint round-trip tests compare bits).
fn weight_bits<T: Element>(m: &dyn Module<T>) -> Vec<u64> {
    weights(m).iter().map(|x| x.to_bits()).collect()
}

/// Trains 3 steps, saves model and optimiser, loads both into a differently initialised
/// model and a default-configured optimiser, trains 3 more; against 6 uninterrupted steps.
/// Also resumes with the model alone (a fresh optimiser), which must not match for these
/// stateful optimisers: the state is what the files carry.
fn resume_case<T: Element>(case: &Case<T>) {
    let mut straight = mlp::<T>(1, 5);
    train(&mut straight, &mut *(case.configured)(), 6);

    let mut first = mlp::<T>(1, 5);
    let mut opt = (case.configured)();
    train(&mut first, &mut *opt, 3);
    let model_bytes = save_safetensors_bytes(&first).unwrap();
    let opt_bytes = save_optimizer_bytes(&*opt, &first).unwrap();

    let mut resumed = mlp::<T>(2, 5);
    load_safetensors_bytes(&mut resumed, &model_bytes).unwrap();
    let mut opt2 = (case.default)();
    load_optimizer_bytes(&mut *opt2, &resumed, &opt_bytes).unwrap();
    assert_eq!(opt2.lr(), opt.lr(), "{}: the file's lr", case.name);
    train(&mut resumed, &mut *opt2, 3);
    let diff = max_rel_diff(&weights(&resumed), &weights(&straight));
    assert!(
        weight_bits(&resumed) == weight_bits(&straight),
        "{}: resumed run off by {diff:e}",
        case.name
    );

    let mut forgetful = mlp::<T>(2, 5);
    load_safetensors_bytes(&mut forgetful, &model_bytes).unwrap();
    train(&mut forgetful, &mut *(case.configured)(), 3);
    let diff = max_rel_diff(&weights(&forgetful), &weights(&straight));
    assert!(
        diff > 1e-4,
        "{}: state made no difference ({diff:e})",
        case.name
    );
}

#[test]
fn resuming_from_saved_state_follows_the_uninterrupted_run_f64() {
    for case in cases::<f64>() {
        resume_case(&case);
    }
}

#[test]
fn resuming_from_saved_state_follows_the_uninterrupted_run_f32() {
    for case in cases::<f32>() {
        resume_case(&case);
    }
}

#[test]
fn state_round_trips_through_a_file_bit_for_bit() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("optim-ckpt-file");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("adam.safetensors");

    let mut model = mlp::<f32>(3, 4);
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    train(&mut model, &mut opt, 2);
    save_optimizer(&opt, &model, &path).unwrap();
    let mut back = Adam::new(AdamConfig::default()).unwrap();
    load_optimizer(&mut back, &model, &path).unwrap();

    let (a, b) = (
        opt.state_dict(&model).unwrap(),
        back.state_dict(&model).unwrap(),
    );
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.hyper, b.hyper);
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.steps.len(), 4, "every parameter has a step count");
    assert_eq!(
        a.buffers.len(),
        8,
        "exp_avg and exp_avg_sq for each parameter"
    );
    assert_eq!(b.buffers.len(), a.buffers.len());
    for ((ka, ta), (kb, tb)) in a.buffers.iter().zip(&b.buffers) {
        assert_eq!(ka, kb);
        assert_eq!(ta.shape(), tb.shape());
        let bits = |t: &Tensor<f32>| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(ta), bits(tb), "{ka}");
    }
    // Only the file is left behind: the temporary one was renamed over it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let missing = dir.join("none.safetensors");
    let err = load_optimizer(&mut back, &model, &missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

/// A trained Adam and its model, and the state it exports.
fn trained_adam() -> (Sequential<f64>, Adam<f64>, OptimizerState<f64>) {
    let mut model = mlp::<f64>(4, 5);
    let mut opt = Adam::new(AdamConfig {
        lr: 0.01,
        ..Default::default()
    })
    .unwrap();
    train(&mut model, &mut opt, 2);
    let state = opt.state_dict(&model).unwrap();
    (model, opt, state)
}

/// Loading `state` into a trained Adam fails with a message containing `needle`, and leaves
/// the optimiser's state and learning rate as they were.
fn assert_rejected(state: &OptimizerState<f64>, needle: &str) {
    let (model, mut opt, before) = trained_adam();
    let err = opt.load_state_dict(&model, state).unwrap_err();
    assert!(err.to_string().contains(needle), "{err}");
    let after = opt.state_dict(&model).unwrap();
    assert_eq!(after.hyper, before.hyper);
    assert_eq!(after.steps, before.steps);
    for ((k, a), (_, b)) in after.buffers.iter().zip(&before.buffers) {
        assert_eq!(a.to_vec(), b.to_vec(), "{k} unchanged");
    }
}

#[test]
fn state_that_does_not_fit_is_an_error_and_changes_nothing() {
    let (_, _, good) = trained_adam();

    let mut s = good.clone();
    s.kind = "AdamW".into();
    assert_rejected(&s, "written by AdamW, not Adam");

    let mut s = good.clone();
    s.hyper.remove("eps");
    assert_rejected(&s, "hyperparameters");

    let mut s = good.clone();
    s.hyper.insert("lr".into(), -1.0);
    assert_rejected(&s, "learning rate must be finite and >= 0");

    let mut s = good.clone();
    s.steps.insert("0.weight".into(), u64::MAX);
    assert_rejected(
        &s,
        "step count 18446744073709551615 for `0.weight` is past 2^53",
    );

    let mut s = good.clone();
    s.steps.remove("0.weight");
    assert_rejected(
        &s,
        "`0.weight` needs exactly exp_avg, exp_avg_sq and a step count",
    );

    let mut s = good.clone();
    let t = s.buffers.remove("2.bias.exp_avg").unwrap();
    s.buffers.insert("7.bias.exp_avg".into(), t);
    assert_rejected(&s, "`7.bias.exp_avg` is not one of the model's parameters");

    let mut s = good.clone();
    s.buffers
        .insert("2.bias.momentum_buffer".into(), Tensor::zeros(&[2]));
    assert_rejected(
        &s,
        "`2.bias.momentum_buffer` is not one of the model's parameters",
    );

    let mut s = good.clone();
    s.buffers
        .insert("2.bias.exp_avg".into(), Tensor::zeros(&[3]));
    assert_rejected(&s, "`2.bias.exp_avg` has shape [3], its parameter [2]");
}

#[test]
fn a_parameter_without_state_starts_fresh() {
    let (model, _, mut state) = trained_adam();
    for key in ["2.bias.exp_avg", "2.bias.exp_avg_sq"] {
        state.buffers.remove(key);
    }
    state.steps.remove("2.bias");
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    opt.load_state_dict(&model, &state).unwrap();
    let back = opt.state_dict(&model).unwrap();
    assert_eq!(back.steps.len(), 3);
    assert!(!back.steps.contains_key("2.bias"));
}

#[test]
fn rmsprop_buffers_must_match_its_configuration() {
    let mut model = mlp::<f64>(5, 3);
    let cfg = RmsPropConfig {
        centered: true,
        ..Default::default()
    };
    let mut opt = RmsProp::new(cfg).unwrap();
    train(&mut model, &mut opt, 1);
    let mut state = opt.state_dict(&model).unwrap();
    assert_eq!(
        state.buffers.len(),
        8,
        "square_avg and grad_avg per parameter"
    );
    state.hyper.insert("centered".into(), 0.0);
    let err = opt.load_state_dict(&model, &state).unwrap_err();
    assert!(
        err.to_string().contains("needs exactly square_avg with"),
        "{err}"
    );
    state.hyper.insert("centered".into(), 0.5);
    let err = opt.load_state_dict(&model, &state).unwrap_err();
    assert!(
        err.to_string().contains("`centered` must be 0 or 1"),
        "{err}"
    );
}

#[test]
fn plain_sgd_has_no_buffers_and_rejects_one() {
    let mut model = mlp::<f64>(6, 3);
    let mut opt = Sgd::new(SgdConfig::default()).unwrap();
    train(&mut model, &mut opt, 1);
    let mut state = opt.state_dict(&model).unwrap();
    assert!(state.buffers.is_empty() && state.steps.is_empty());
    assert_eq!(state.hyper["lr"], 1e-3);
    state
        .buffers
        .insert("0.bias.momentum_buffer".into(), Tensor::zeros(&[3]));
    let err = opt.load_state_dict(&model, &state).unwrap_err();
    assert!(
        err.to_string().contains("needs exactly no momentum_buffer"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_optimiser_state_are_errors() {
    let (model, mut opt, _) = trained_adam();
    let weights = save_safetensors_bytes(&model).unwrap();
    let err = load_optimizer_bytes(&mut opt, &model, &weights).unwrap_err();
    assert!(
        err.to_string().contains("not an optimiser state file"),
        "{err}"
    );

    let bytes = save_optimizer_bytes(&opt, &model).unwrap();
    for len in [0, 7, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let err = load_optimizer_bytes(&mut opt, &model, &bytes[..len]).unwrap_err();
        assert!(matches!(err, Error::Format(_)), "{len} bytes: {err}");
    }
    // The state of another architecture: same names, other shapes.
    let wider = mlp::<f64>(4, 6);
    let err = load_optimizer_bytes(&mut opt, &wider, &bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("`0.bias.exp_avg` has shape [5], its parameter [6]"),
        "{err}"
    );
}

/// An optimiser written outside vgrad that does not implement the state methods.
struct Plain;

impl Optimizer<f64> for Plain {
    fn step(&mut self, _: &mut dyn Module<f64>, _: &ParamGrads<f64>) -> vgrad::Result<()> {
        Ok(())
    }
    fn lr(&self) -> f64 {
        0.0
    }
    fn set_lr(&mut self, _: f64) -> vgrad::Result<()> {
        Ok(())
    }
    fn track_updates(&mut self, _: bool) {}
    fn last_updates(&self) -> &[UpdateStat] {
        &[]
    }
}

#[test]
fn an_optimiser_without_state_support_says_so() {
    let (model, _, state) = trained_adam();
    let err = save_optimizer_bytes(&Plain, &model).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = Plain.load_state_dict(&model, &state).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not implement load_state_dict"),
        "{err}"
    );
}

#[test]
fn parameter_groups_are_validated_and_change_only_their_parameters() {
    let bad = ParamGroup::matching(|_| true).lr_scale(-1.0);
    let err = Sgd::<f64>::new(SgdConfig::default())
        .unwrap()
        .with_group(bad)
        .unwrap_err();
    assert!(
        err.to_string().contains("lr_scale must be finite and >= 0"),
        "{err}"
    );
    let bad = ParamGroup::matching(|_| true).weight_decay(f64::NAN);
    assert!(Adam::<f64>::new(AdamConfig::default())
        .unwrap()
        .with_group(bad)
        .is_err());

    // A group that freezes the biases (rate 0): they stay where they started, the weights move.
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let mut a = mlp::<f64>(7, 4);
    let frozen = ParamGroup::matching(|n| n.ends_with("bias")).lr_scale(0.0);
    train(
        &mut a,
        &mut Sgd::new(cfg).unwrap().with_group(frozen).unwrap(),
        3,
    );
    let start = mlp::<f64>(7, 4);
    for ((name, ta), (_, t0)) in a.state_dict().iter().zip(start.state_dict()) {
        let moved = max_rel_diff(&ta.to_vec(), &t0.to_vec());
        if name.ends_with("bias") {
            assert_eq!(moved, 0.0, "{name} moved");
        } else {
            assert!(moved > 1e-6, "{name} did not move");
        }
    }
}

/// One step of `model` on the fixed batch, its forward pass recorded inside `ctx.scoped(scope)`
/// (as a GAN's generator or a sub-model may be), through `backward_step`.
fn scoped_step(model: &mut Sequential<f64>, opt: &mut dyn Optimizer<f64>, scope: &str) {
    let (x, y) = batch::<f64>();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let pred = ctx.scoped(scope, |ctx| model.forward(ctx, tape.constant(x)));
    let loss = (pred - tape.constant(y)).square().mean();
    opt.backward_step(model, &ctx, loss).unwrap();
}

#[test]
fn groups_follow_the_models_names_in_both_step_forms() {
    let cfg = SgdConfig {
        lr: 0.1,
        ..Default::default()
    };
    let frozen_first = || ParamGroup::matching(|n| n.starts_with("0.")).lr_scale(0.0);
    let start = mlp::<f64>(8, 4);
    let first_layer = |m: &Sequential<f64>| -> Vec<f64> {
        let state = m.state_dict();
        state.iter().take(2).flat_map(|(_, t)| t.to_vec()).collect()
    };

    // Recorded under another scope, the fused step still matches groups by the model's names.
    let mut fused = mlp::<f64>(8, 4);
    let mut opt = Sgd::new(cfg).unwrap().with_group(frozen_first()).unwrap();
    scoped_step(&mut fused, &mut opt, "gen");
    let mut two_calls = mlp::<f64>(8, 4);
    train(
        &mut two_calls,
        &mut Sgd::new(cfg).unwrap().with_group(frozen_first()).unwrap(),
        1,
    );
    assert_eq!(
        max_rel_diff(&first_layer(&fused), &first_layer(&start)),
        0.0
    );
    assert!(max_rel_diff(&weights(&fused), &weights(&two_calls)) <= 1e-15);

    // Wrapped in a container after a step, the model's names change ("0.0.weight",
    // "0.2.weight"): both layers now match "0." and stop moving.
    let mut opt = Sgd::new(cfg).unwrap().with_group(frozen_first()).unwrap();
    let mut model = mlp::<f64>(8, 4);
    train(&mut model, &mut opt, 1);
    let mut wrapped = Sequential::new().push(model);
    let before = weights(&wrapped);
    let (x, y) = batch::<f64>();
    for _ in 0..2 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let pred = wrapped.forward(&mut ctx, tape.constant(x.clone()));
        let loss = (pred - tape.constant(y.clone())).square().mean();
        opt.backward_step(&mut wrapped, &ctx, loss).unwrap();
    }
    assert_eq!(max_rel_diff(&weights(&wrapped), &before), 0.0);
}

/// An optimiser whose state is a given buffer map: what a custom optimiser could export.
struct Exports(std::collections::BTreeMap<String, Tensor<f64>>);

impl Optimizer<f64> for Exports {
    fn step(&mut self, _: &mut dyn Module<f64>, _: &ParamGrads<f64>) -> vgrad::Result<()> {
        Ok(())
    }
    fn lr(&self) -> f64 {
        0.0
    }
    fn set_lr(&mut self, _: f64) -> vgrad::Result<()> {
        Ok(())
    }
    fn track_updates(&mut self, _: bool) {}
    fn last_updates(&self) -> &[UpdateStat] {
        &[]
    }
    fn state_dict(&self, _: &dyn Module<f64>) -> vgrad::Result<OptimizerState<f64>> {
        Ok(OptimizerState {
            kind: "Custom".into(),
            hyper: Default::default(),
            buffers: self.0.clone(),
            steps: Default::default(),
        })
    }
}

#[test]
fn the_reserved_metadata_name_is_refused_at_save() {
    let model = mlp::<f64>(4, 5);
    let buffers = [("__metadata__".to_string(), Tensor::ones(&[2]))];
    let opt = Exports(buffers.into_iter().collect());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("optim-reserved");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for err in [
        save_optimizer_bytes(&opt, &model).unwrap_err(),
        save_optimizer(&opt, &model, dir.join("opt.safetensors")).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Format(_)), "{err:?}");
        assert!(err.to_string().contains("`__metadata__`"), "{err}");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn stale_temp_files_of_the_target_are_removed_by_the_next_save() {
    let (model, opt, _) = trained_adam();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("optim-stale-temps");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let ours = std::process::id();
    let stale = [
        format!(".opt.safetensors.{dead}-2.tmp"),
        format!(".opt.safetensors.{ours}-987654321.tmp"),
    ];
    let kept = [
        format!(".model.safetensors.{dead}-2.tmp"),
        ".opt.safetensors.tmp".to_string(),
    ];
    for name in stale.iter().chain(&kept) {
        std::fs::write(dir.join(name), b"partial").unwrap();
    }
    save_optimizer(&opt, &model, dir.join("opt.safetensors")).unwrap();
    let mut listing: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    let mut expected = kept.to_vec();
    expected.push("opt.safetensors".into());
    expected.sort();
    assert_eq!(listing, expected);
}
