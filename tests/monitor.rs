//! The gradient monitor: its records against direct computation, layer hooks on nested modules,
//! the diagnosis of the classic deep-network failures, export and plots.
//!
//! The classic cases follow the set-up: 50 `Linear` layers (49 hidden 64 → 64 with an
//! activation after each, then 64 → 10), a batch of 64 N(0, 1) inputs, MSE against N(0, 1)
//! targets, f32, fixed seeds. The figures quoted in comments were measured on these seeds; the
//! assertions leave room around them.

use rand::{rngs::StdRng, SeedableRng};
use std::cell::RefCell;
use std::rc::Rc;
use vgrad::monitor::{
    backward_with_layer_hook, to_csv, Cause, Fix, GradMonitor, LayerKind, MonitorConfig, Verdict,
};
#[cfg(feature = "plot")]
use vgrad::monitor::{
    flow_svg, gradient_flow_svg, heatmap_svg, heatmap_svg_with, heatmaps_svg, log10_range,
    mean_max_svg, FlowLayout, PlotMetric, PlotOptions,
};
#[cfg(feature = "json")]
use vgrad::monitor::{to_json, StepRecord};
use vgrad::nn::init::Init;
use vgrad::nn::{
    mse_loss, Activation, BatchNorm1d, Ctx, LayerNorm, Linear, LinearConfig, Module, Optimizer,
    OutputKind, Param, ParamGrads, Reduction, Residual, ResidualConfig, Sequential, Sgd, SgdConfig,
    Visitor, VisitorMut,
};
use vgrad::{Element, Tape, Tensor, Var};

const WIDTH: usize = 64;
const BATCH: usize = 64;
const DEPTH: usize = 50;

fn xavier() -> Init {
    Init::XavierUniform { gain: 1.0 }
}

fn he_times(k: f64) -> Init {
    Init::Normal {
        mean: 0.0,
        std: k * (2.0 / WIDTH as f64).sqrt(),
    }
}

/// The deep network: `depth` Linear layers, each hidden one followed by `act` (and by a
/// BatchNorm first when `bn`).
fn deep_net(
    depth: usize,
    act: Activation<f32>,
    init: Init,
    bn: bool,
    seed: u64,
) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Sequential::new();
    for i in 0..depth {
        let out = if i + 1 == depth { 10 } else { WIDTH };
        net =
            net.push(Linear::with_config(WIDTH, out, LinearConfig::init(init), &mut rng).unwrap());
        if i + 1 < depth {
            if bn {
                net = net.push(BatchNorm1d::new(WIDTH).unwrap());
            }
            net = net.push(act);
        }
    }
    net
}

fn data(seed: u64) -> (Tensor<f32>, Tensor<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = Init::Normal {
        mean: 0.0,
        std: 1.0,
    };
    (
        n.tensor(&[BATCH, WIDTH], &mut rng).unwrap(),
        n.tensor(&[BATCH, 10], &mut rng).unwrap(),
    )
}

/// Plain SGD by hand, θ ← θ − lr·g: the monitor works with any update, not only `nn::Sgd`.
struct HandSgd<'a, T: Element>(&'a ParamGrads<T>, T);

impl<T: Element> VisitorMut<T> for HandSgd<'_, T> {
    fn param(&mut self, _: &str, p: &mut Param<T>) {
        if let Some(g) = self.0.get(p) {
            p.set(p.value().sub(&g.scale(self.1)));
        }
    }
}

/// Trains `net` for `steps` steps of `nn::Sgd` with the monitor attached by its one line.
fn train(net: &mut Sequential<f32>, steps: usize, lr: f64) -> GradMonitor<f32> {
    let (x, t) = data(7);
    let mut opt = Sgd::new(SgdConfig {
        lr,
        ..SgdConfig::default()
    })
    .unwrap();
    let mut mon = GradMonitor::new(MonitorConfig::default());
    for _ in 0..steps {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let y = net.forward(&mut ctx, tape.constant(x.clone()));
        let loss = mse_loss(y, t.clone(), Reduction::Mean);
        let grads = mon.backward(&ctx, &*net, loss);
        opt.step(net, &grads).unwrap();
    }
    mon.after_update(&*net);
    mon
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

// ---------------------------------------------------------------------------------------------
// The records against direct computation.

#[test]
fn records_match_gradients_outputs_and_updates_computed_directly() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(5, 6, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(6, 3, &mut rng).unwrap())
        .push(Activation::Sigmoid)
        .push(Linear::new(3, 1, &mut rng).unwrap());
    let x = Tensor::from_fn(&[8, 5], |i| ((i * 37 % 11) as f64 - 5.0) / 3.0);

    // Direct computation: an observer of our own keeps every layer output and its gradient.
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    type Seen = Rc<RefCell<Vec<(String, Tensor<f64>, Tensor<f64>)>>>;
    let seen: Seen = Rc::default();
    let sink = seen.clone();
    tape.on_labelled_grad(move |l, v, g| sink.borrow_mut().push((l.into(), v.clone(), g.clone())));
    let loss = net
        .forward(&mut ctx, tape.constant(x.clone()))
        .square()
        .mean();
    let mut mon = GradMonitor::new(MonitorConfig::default());
    let grads = mon.backward(&ctx, &net, loss);
    let step = mon.latest().unwrap().clone();
    assert_eq!(step.loss.unwrap(), loss.value().item());
    let names: Vec<&str> = step.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["0", "2", "4"]);
    assert!(step.layers.iter().all(|l| l.kind == LayerKind::Linear));
    let find = |label: &str| {
        seen.borrow()
            .iter()
            .find(|(l, _, _)| l == label)
            .map(|(_, v, g)| (v.clone(), g.clone()))
            .unwrap()
    };
    for l in &step.layers {
        let w = grads.get_name(&format!("{}.weight", l.name)).unwrap();
        let b = grads.get_name(&format!("{}.bias", l.name)).unwrap();
        assert!(close(l.weight_grad_norm, w.norm_l2(), 1e-12));
        let mean_abs = w.data().iter().map(|v| v.abs()).sum::<f64>() / w.numel() as f64;
        let max_abs = w.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(close(l.weight_grad_mean_abs, mean_abs, 1e-12));
        assert_eq!(l.weight_grad_max_abs, max_abs);
        assert!(close(l.bias_grad_norm.unwrap(), b.norm_l2(), 1e-12));
        let (out, out_grad) = find(&l.name);
        assert!(close(
            l.output_grad_norm.unwrap(),
            out_grad.norm_l2(),
            1e-12
        ));
        // A layer's own output statistics are measured where no activation follows it.
        if l.activation.is_none() {
            let mean = out.data().iter().sum::<f64>() / out.numel() as f64;
            assert!(close(l.output_mean.unwrap(), mean, 1e-9));
        } else {
            assert!(l.output_mean.is_none());
        }
        assert!(close(
            l.grad_to_weight,
            l.weight_grad_norm / l.weight_norm,
            1e-12
        ));
    }
    // Activation statistics come from the activation after each Linear.
    let relu = step.layers[0].activation.as_ref().unwrap();
    assert_eq!((relu.name.as_str(), relu.kind), ("1", Activation::Relu));
    let (a, _) = find("1");
    let (rows, cols) = (a.shape()[0], a.shape()[1]);
    let dead = (0..cols)
        .filter(|&j| (0..rows).all(|i| a.get(&[i, j]) == 0.0))
        .count() as f64
        / cols as f64;
    assert_eq!(relu.dead, Some(dead));
    assert_eq!(relu.saturated, None);
    let m = a.data().iter().sum::<f64>() / a.numel() as f64;
    let sd = (a.data().iter().map(|v| (v - m) * (v - m)).sum::<f64>() / a.numel() as f64).sqrt();
    assert!(close(relu.mean, m, 1e-9) && close(relu.std, sd, 1e-9));
    let sig = step.layers[1].activation.as_ref().unwrap();
    assert_eq!(sig.kind, Activation::Sigmoid);
    assert!(sig.saturated.is_some() && sig.dead.is_none());
    assert!(
        step.layers[2].activation.is_none(),
        "the output layer has none"
    );

    // The update ratio of plain SGD is lr·‖g‖/‖W‖.
    let lr = 0.05;
    net.visit_mut(&mut HandSgd(&grads, lr));
    mon.after_update(&net);
    for l in &mon.latest().unwrap().layers {
        let want = lr * l.weight_grad_norm / l.weight_norm;
        assert!(close(l.update_ratio.unwrap(), want, 1e-9), "{}", l.name);
    }
}

#[test]
fn the_next_backward_fills_in_the_previous_update_and_every_skips_steps() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut net = Sequential::<f32>::new()
        .push(Linear::new(4, 4, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(4, 2, &mut rng).unwrap());
    let x = Tensor::from_fn(&[3, 4], |i| i as f32 * 0.1 - 0.5);
    let mut mon = GradMonitor::new(MonitorConfig {
        every: 2,
        ..MonitorConfig::default()
    });
    for _ in 0..5 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let loss = net
            .forward(&mut ctx, tape.constant(x.clone()))
            .square()
            .mean();
        let g = mon.backward(&ctx, &net, loss);
        assert_eq!(g.len(), 4, "every step still returns all the gradients");
        net.visit_mut(&mut HandSgd(&g, 0.1));
    }
    let recorded: Vec<usize> = mon.steps().iter().map(|s| s.step).collect();
    assert_eq!(recorded, [0, 2, 4]);
    // Steps 0 and 2 had their update measured when the next backward came; step 4 has not yet.
    assert!(mon.steps()[0]
        .layers
        .iter()
        .all(|l| l.update_ratio.is_some()));
    assert!(mon.steps()[1]
        .layers
        .iter()
        .all(|l| l.update_ratio.is_some()));
    assert!(mon.steps()[2]
        .layers
        .iter()
        .all(|l| l.update_ratio.is_none()));
    mon.after_update(&net);
    assert!(mon.steps()[2]
        .layers
        .iter()
        .all(|l| l.update_ratio.unwrap() > 0.0));
}

#[test]
fn monitor_removes_its_observer_so_a_reused_tape_is_not_watched_twice() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(2, 2, &mut rng).unwrap())
        .push(Activation::Relu);
    let mut tape = Tape::new();
    let mut mon = GradMonitor::new(MonitorConfig::default());
    let calls = Rc::new(RefCell::new(0));
    for _ in 0..3 {
        tape.reset();
        let mut ctx = Ctx::new(&tape);
        let loss = net
            .forward(&mut ctx, tape.constant(Tensor::ones(&[1, 2])))
            .sum();
        mon.backward(&ctx, &net, loss);
        // A second backward on the same tape runs with no monitor observer left behind.
        let c = calls.clone();
        let h = tape.on_labelled_grad(move |_, _, _| *c.borrow_mut() += 1);
        let _ = loss.backward();
        tape.remove_hook(h);
    }
    assert_eq!(*calls.borrow(), 3 * 2, "two labelled outputs per backward");
    assert_eq!(mon.steps().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Layer hooks and nested modules.

#[test]
fn layer_hook_sees_outputs_their_gradients_and_parameters_of_nested_layers() {
    let mut rng = StdRng::seed_from_u64(11);
    let block = |rng: &mut StdRng| {
        Residual::new(
            Sequential::new()
                .push(Linear::new(4, 4, rng).unwrap())
                .push(Activation::Relu)
                .push(Linear::new(4, 4, rng).unwrap()),
        )
    };
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(BatchNorm1d::new(4).unwrap())
        .push(block(&mut rng))
        .push(Activation::Tanh)
        .push(Linear::new(4, 1, &mut rng).unwrap());
    let x = Tensor::from_fn(&[6, 3], |i| ((i * 13 % 7) as f64 - 3.0) / 2.0);
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let loss = net.forward(&mut ctx, tape.constant(x)).square().mean();
    let mut seen = Vec::new();
    let grads = backward_with_layer_hook(&ctx, loss, |layer| {
        let params: Vec<String> = layer
            .param_grads
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        if let (Some(o), Some(g)) = (layer.output, layer.output_grad) {
            assert_eq!(o.shape(), g.shape(), "{}", layer.name);
            assert!(g.all_finite());
        }
        seen.push((layer.name.to_string(), params));
    });
    let order: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        order,
        [
            "0",
            "1",
            "2.branch.0",
            "2.branch.1",
            "2.branch.2",
            "2",
            "3",
            "4"
        ]
    );
    assert_eq!(seen[1].1, ["1.bias", "1.weight"], "BatchNorm1d's γ and β");
    assert_eq!(seen[2].1, ["2.branch.0.bias", "2.branch.0.weight"]);
    assert!(seen[5].1.is_empty(), "the residual sum owns no parameter");
    assert_eq!(grads.len(), 10);
}

/// One monitored step of `net` (input `[6, 3]`, loss mean(y²)): the monitor and the gradients.
fn monitored_step(net: &mut Sequential<f64>) -> (GradMonitor<f64>, ParamGrads<f64>) {
    let x = Tensor::from_fn(&[6, 3], |i| ((i * 13 % 7) as f64 - 3.0) / 2.0);
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let loss = net.forward(&mut ctx, tape.constant(x)).square().mean();
    let mut mon = GradMonitor::new(MonitorConfig::default());
    let grads = mon.backward(&ctx, &*net, loss);
    (mon, grads)
}

#[test]
fn layernorm_is_recorded_as_a_normalisation_layer() {
    let mut rng = StdRng::seed_from_u64(13);
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(LayerNorm::new(4).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(4, 1, &mut rng).unwrap());
    let (mon, grads) = monitored_step(&mut net);
    let s = mon.latest().unwrap();
    let ln = s.layer("1").unwrap();
    assert_eq!(ln.kind, LayerKind::Norm);
    // Its ‖∂L/∂γ‖ is the gradient's norm, and it feeds the ReLU.
    let g = grads.get_name("1.weight").unwrap().norm_l2();
    assert!(
        (ln.weight_grad_norm - g).abs() <= 1e-12 * g,
        "{} vs {g}",
        ln.weight_grad_norm
    );
    assert_eq!(ln.activation.as_ref().unwrap().name, "2");
}

#[test]
fn nested_models_group_parameters_by_module_path() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(BatchNorm1d::new(4).unwrap())
        .push(Activation::Relu)
        .push(Residual::new(
            Sequential::new()
                .push(Linear::new(4, 4, &mut rng).unwrap())
                .push(Activation::Tanh)
                .push(Linear::new(4, 4, &mut rng).unwrap()),
        ))
        .push(Linear::new(4, 1, &mut rng).unwrap());
    let (mon, _) = monitored_step(&mut net);
    let s = mon.latest().unwrap();
    let layers: Vec<(&str, LayerKind)> =
        s.layers.iter().map(|l| (l.name.as_str(), l.kind)).collect();
    assert_eq!(
        layers,
        [
            ("0", LayerKind::Linear),
            ("1", LayerKind::Norm),
            ("3.branch.0", LayerKind::Linear),
            ("3.branch.2", LayerKind::Linear),
            ("4", LayerKind::Linear),
        ]
    );
    assert_eq!(s.skip_connections, 1);
    // The Linear before the BatchNorm has no activation of its own; the BatchNorm feeds the ReLU.
    assert!(s.layer("0").unwrap().activation.is_none());
    assert_eq!(s.layer("1").unwrap().activation.as_ref().unwrap().name, "2");
    let tanh = s.layer("3.branch.0").unwrap().activation.as_ref().unwrap();
    assert_eq!(
        (tanh.name.as_str(), tanh.kind),
        ("3.branch.1", Activation::Tanh)
    );
    // The second Linear of the branch ends the block: the residual sum is no activation.
    assert!(s.layer("3.branch.2").unwrap().activation.is_none());
    for l in &s.layers {
        assert!(
            l.weight_grad_norm > 0.0 && l.weight_grad_norm.is_finite(),
            "{}",
            l.name
        );
        assert!(l.output_grad_norm.unwrap() > 0.0, "{}", l.name);
    }
}

// ---------------------------------------------------------------------------------------------
// The classic cases.

#[test]
fn sigmoid_with_xavier_at_depth_50_vanishes() {
    let mut net = deep_net(DEPTH, Activation::Sigmoid, xavier(), false, 1);
    let mon = train(&mut net, 2, 0.01);
    let step0 = &mon.steps()[0];
    let lin: Vec<_> = step0.layers_of(LayerKind::Linear).collect();
    let ratio = lin[0].weight_grad_norm / lin[DEPTH - 1].weight_grad_norm;
    // Measured 1.4e-31: f32 gradients near 1e-31 at the input, kept by the f64 accumulation.
    assert!(ratio > 0.0 && ratio < 1e-25, "ratio {ratio:e}");
    assert!(lin[0].weight_grad_norm > 0.0 && lin[0].weight_grad_norm < 1e-25);

    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::VanishingGradients, "{d}");
    assert!(
        d.affected.len() >= 35 && d.affected[0] == "0",
        "{:?}",
        d.affected
    );
    match &d.causes[0] {
        Cause::SaturatingActivation {
            activation,
            max_derivative,
            layers,
            per_layer,
            ..
        } => {
            assert_eq!(
                (activation.as_str(), *max_derivative, *layers),
                ("sigmoid", 0.25, 49)
            );
            // σ' ≤ 1/4: measured ×0.23 per layer.
            assert!(*per_layer > 0.15 && *per_layer <= 0.26, "{per_layer}");
        }
        c => panic!("expected a saturating activation, got {c:?}"),
    }
    assert_eq!(d.fixes[0], Fix::NonSaturatingActivation);
    let text = d.to_string();
    assert!(text.starts_with("vanishing gradients: "), "{text}");
    assert!(text.contains("sigmoid") && text.contains("Try:"), "{text}");
}

#[test]
fn relu_with_xavier_at_depth_50_loses_the_forward_signal() {
    let mut net = deep_net(DEPTH, Activation::Relu, xavier(), false, 1);
    let mon = train(&mut net, 1, 0.01);
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::VanishingSignal, "{d}");
    let e = &d.evidence;
    // The weight-gradient ratio looks fine (measured 0.74) ...
    let g = e.grad_ratio.unwrap();
    assert!((1e-2..1e2).contains(&g), "grad ratio {g}");
    // ... while the activations' std falls ~(1/√2) per layer: measured 1.9e-7 over 48 layers.
    let f = e.forward_ratio.unwrap();
    assert!(f < 1e-5, "forward ratio {f:e}");
    let per = f.powf(1.0 / 48.0);
    assert!((per - 0.5f64.sqrt()).abs() < 0.06, "per layer {per}");
    match &d.causes[0] {
        Cause::InitShrinksSignal {
            gain, recommended, ..
        } => {
            assert!(
                (gain - 1.0).abs() < 0.05,
                "Xavier on a square layer has gain 1: {gain}"
            );
            assert!((recommended - 2f64.sqrt()).abs() < 1e-12);
        }
        c => panic!("expected the init to shrink the signal, got {c:?}"),
    }
    assert_eq!(d.fixes[0], Fix::HeInit);
    assert!(d.to_string().contains("looks fine"), "{d}");
}

#[test]
fn relu_with_he_at_depth_50_is_healthy() {
    let mut net = deep_net(DEPTH, Activation::Relu, Init::HE_NORMAL, false, 1);
    let mon = train(&mut net, 3, 0.01);
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::Healthy, "{d}");
    assert!(d.causes.is_empty() && d.fixes.is_empty() && d.affected.is_empty());
    let s0 = &mon.steps()[0];
    let lin: Vec<_> = s0.layers_of(LayerKind::Linear).collect();
    let ratio = lin[0].weight_grad_norm / lin[DEPTH - 1].weight_grad_norm;
    assert!((0.1..10.0).contains(&ratio), "measured 0.46: {ratio}");
    let gain = lin[0].weight_gain().unwrap();
    assert!((gain - 2f64.sqrt()).abs() < 0.1, "He gain √2: {gain}");
    // Updates of lr 0.01 are ~1e-3 of the weights, the rule of thumb.
    let u = d.evidence.max_update_ratio.unwrap();
    assert!((1e-4..1e-1).contains(&u), "{u}");
    assert!(d.to_string().starts_with("healthy: "));
}

#[test]
fn he_init_doubled_at_depth_50_explodes_forward_and_backward() {
    let mut net = deep_net(DEPTH, Activation::Relu, he_times(2.0), false, 1);
    let mon = train(&mut net, 1, 0.0);
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::ExplodingGradients, "{d}");
    // Forward std grows ×2 per layer (measured 1.2e14 over 48), the backpropagated signal
    // likewise toward the input (8.1e14), while ‖∂L/∂W‖ stays level (0.42).
    assert!(d.evidence.forward_ratio.unwrap() > 1e10);
    assert!(d.evidence.signal_grad_ratio.unwrap() > 1e10);
    match &d.causes[0] {
        Cause::InitGrowsSignal {
            gain, per_layer, ..
        } => {
            assert!((gain - 2.0 * 2f64.sqrt()).abs() < 0.15, "{gain}");
            assert!((per_layer - 2.0).abs() < 0.2, "{per_layer}");
        }
        c => panic!("expected the init to grow the signal, got {c:?}"),
    }
    assert_eq!(d.fixes[0], Fix::SmallerInit);
}

#[test]
fn standard_normal_weights_overflow_f32_and_explode() {
    // N(0, 1) weights: ×5.6 per layer, the loss is infinite at the first step.
    let mut net = deep_net(
        DEPTH,
        Activation::Relu,
        Init::Normal {
            mean: 0.0,
            std: 1.0,
        },
        false,
        1,
    );
    let mon = train(&mut net, 1, 0.0);
    assert!(!mon.steps()[0].loss.unwrap().is_finite());
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::ExplodingGradients, "{d}");
    assert!(matches!(d.causes[0], Cause::NonFinite { step: 0 }), "{d}");
    assert!(
        d.causes
            .iter()
            .any(|c| matches!(c, Cause::InitGrowsSignal { gain, .. } if (gain - 8.0).abs() < 0.5)),
        "{d}"
    );
}

#[test]
fn too_high_a_learning_rate_explodes() {
    // He init is healthy; lr 1 makes the first update 0.4 of a layer's weights and the loss
    // goes 1.24 → 5.8e6 → NaN.
    let mut net = deep_net(DEPTH, Activation::Relu, Init::HE_NORMAL, false, 1);
    let mon = train(&mut net, 3, 1.0);
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::ExplodingGradients, "{d}");
    match &d.causes[0] {
        Cause::LearningRateTooHigh {
            max_update_ratio,
            loss_before,
            loss_after,
        } => {
            assert!(max_update_ratio.unwrap() > 0.2);
            assert!(loss_after.unwrap() > 100.0 * loss_before.unwrap());
        }
        c => panic!("expected the learning rate, got {c:?}"),
    }
    assert_eq!(
        d.fixes[..2],
        [Fix::LowerLearningRate, Fix::GradientClipping]
    );

    // The same run at lr 0.01 trains.
    let mut net = deep_net(DEPTH, Activation::Relu, Init::HE_NORMAL, false, 1);
    let mon = train(&mut net, 3, 0.01);
    assert_eq!(mon.diagnose().verdict, Verdict::Healthy);
    let losses: Vec<f64> = mon.steps().iter().map(|s| s.loss.unwrap()).collect();
    assert!(losses[2] < losses[0]);
}

#[test]
fn batchnorm_without_skips_at_depth_50_amplifies_gradients_toward_the_input() {
    let mut net = deep_net(DEPTH, Activation::Relu, Init::HE_NORMAL, true, 1);
    let mon = train(&mut net, 1, 0.0);
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::ExplodingGradients, "{d}");
    // The forward signal is normalised (measured std ratio 1.08 with BatchNorm1d) ...
    let f = d.evidence.forward_ratio.unwrap();
    assert!((0.5..2.0).contains(&f), "{f}");
    // ... but ‖∂L/∂W‖ grows toward the input, measured 5.5e3 (‖∂L/∂h‖ 8.9e3).
    assert!(d.evidence.grad_ratio.unwrap() > 1e3);
    match &d.causes[0] {
        Cause::NormalisationWithoutSkips {
            norm_layers,
            per_layer,
        } => {
            assert_eq!(*norm_layers, 49);
            // Mean-field theory: √(π/(π−1)) ≈ 1.21 per layer; measured 1.20.
            assert!((per_layer - 1.21).abs() < 0.05, "{per_layer}");
        }
        c => panic!("expected the normalisation, got {c:?}"),
    }
    assert_eq!(d.fixes[0], Fix::ResidualConnections);
    assert!(d.affected.first().map(String::as_str) == Some("0"));
    // Gradients grow monotonically enough that the first layer is the largest.
    let s = &mon.steps()[0];
    let lin: Vec<f64> = s
        .layers_of(LayerKind::Linear)
        .map(|l| l.weight_grad_norm)
        .collect();
    assert!(lin[0] > 100.0 * lin[DEPTH - 1]);
    // The BatchNorm layers are recorded too, as normalisation layers with their γ, β gradients.
    let bn = s.layers_of(LayerKind::Norm).next().unwrap();
    assert!(bn.bias_grad_norm.unwrap() > 0.0 && bn.activation.as_ref().unwrap().dead.is_some());
}

#[test]
fn residual_connections_cure_the_batchnorm_explosion() {
    // The same 50 Linear layers, BatchNorm and ReLU, but each hidden layer inside a residual
    // block x + f(x): measured ‖∂L/∂W‖ ratio 0.025 and ‖∂L/∂h‖ ratio 3.8 instead of 5.5e3 and 8.9e3.
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = Sequential::<f32>::new();
    for _ in 0..DEPTH - 1 {
        let branch = Sequential::new()
            .push(
                Linear::with_config(WIDTH, WIDTH, LinearConfig::init(Init::HE_NORMAL), &mut rng)
                    .unwrap(),
            )
            .push(BatchNorm1d::new(WIDTH).unwrap())
            .push(Activation::Relu);
        net = net.push(Residual::with_config(branch, ResidualConfig::default()).unwrap());
    }
    net = net.push(
        Linear::with_config(WIDTH, 10, LinearConfig::init(Init::HE_NORMAL), &mut rng).unwrap(),
    );
    let mon = train(&mut net, 1, 0.0);
    let s = &mon.steps()[0];
    assert_eq!(s.skip_connections, DEPTH - 1);
    assert_eq!(s.layers_of(LayerKind::Linear).count(), DEPTH);
    assert_eq!(s.layers[0].name, "0.branch.0");
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::Healthy, "{d}");
    let h = d.evidence.signal_grad_ratio.unwrap();
    assert!((0.1..100.0).contains(&h), "{h}");
}

// ---------------------------------------------------------------------------------------------
// Export and plots.

fn small_run() -> GradMonitor<f32> {
    let mut net = deep_net(4, Activation::Relu, Init::HE_NORMAL, false, 2);
    train(&mut net, 3, 0.01)
}

#[test]
fn csv_has_one_row_per_layer_per_step_and_parses_back() {
    let mon = small_run();
    let csv = to_csv(mon.steps());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 4);
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(header.len(), 21);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (row, line) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        let s = &mon.steps()[row / 4];
        let l = &s.layers[row % 4];
        assert_eq!(cells[col("step")].parse::<usize>().unwrap(), s.step);
        assert_eq!(cells[col("layer")], l.name);
        // Written in shortest round-trip form: parses back to the same f64.
        assert_eq!(
            cells[col("weight_grad_norm")].parse::<f64>().unwrap(),
            l.weight_grad_norm
        );
        assert_eq!(
            cells[col("update_ratio")].parse::<f64>().unwrap(),
            l.update_ratio.unwrap()
        );
    }
    // The output layer has no activation: empty cells.
    let last = lines[4].split(',').collect::<Vec<_>>();
    assert_eq!(last[col("activation_kind")], "");
    assert_eq!(
        lines[1].split(',').nth(col("activation_kind")),
        Some("relu")
    );
}

#[cfg(feature = "json")]
#[test]
fn json_parses_and_non_finite_values_become_null() {
    let mon = small_run();
    let v: serde_json::Value = serde_json::from_str(&mon.to_json()).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let l0 = &steps[0]["layers"][0];
    assert_eq!(l0["name"], "0");
    assert_eq!(l0["kind"], "linear");
    assert_eq!(l0["activation"]["kind"], "relu");
    assert_eq!(
        l0["weight_grad_norm"].as_f64().unwrap(),
        mon.steps()[0].layers[0].weight_grad_norm
    );
    assert!(steps[0]["layers"][3]["activation"].is_null());

    let mut broken: Vec<StepRecord> = mon.steps().to_vec();
    broken[0].loss = Some(f64::NAN);
    broken[0].layers[0].weight_grad_norm = f64::INFINITY;
    broken[0].layers[0].name = "a \"quoted\"\nname".into();
    let v: serde_json::Value = serde_json::from_str(&to_json(&broken)).unwrap();
    assert!(v["steps"][0]["loss"].is_null());
    assert!(v["steps"][0]["layers"][0]["weight_grad_norm"].is_null());
    assert_eq!(v["steps"][0]["layers"][0]["name"], "a \"quoted\"\nname");
    let csv = to_csv(&broken);
    assert!(csv.contains(",NaN,") && csv.contains("\"a \"\"quoted\"\"\nname\""));
}

#[cfg(feature = "plot")]
#[test]
fn plots_are_svg_documents_with_title_legend_and_colour_bar() {
    let mon = small_run();
    let mut sig = deep_net(4, Activation::Sigmoid, xavier(), false, 2);
    let other = train(&mut sig, 1, 0.01);
    let runs = [
        ("ReLU + He", &mon.steps()[0]),
        ("sigmoid + Xavier", &other.steps()[0]),
    ];
    let svg = gradient_flow_svg(&runs, PlotMetric::WeightGradNorm, "Gradient flow").unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for text in [
        "Gradient flow",
        "ReLU + He",
        "sigmoid + Xavier",
        "Linear layer (0 = input side)",
        "log scale",
    ] {
        assert!(svg.contains(text), "missing {text}");
    }
    let heat = heatmap_svg(mon.steps(), PlotMetric::OutputGradNorm, "Heatmap").unwrap();
    assert!(heat.contains("‖∂L/∂h‖") && heat.contains("log scale") && heat.contains("Heatmap"));
    assert!(
        heat.matches("<rect").count() >= 3 * 4 + 200,
        "cells and colour bar"
    );
    // Nothing to plot is an error, not an empty picture.
    assert!(heatmap_svg(&[], PlotMetric::WeightGradNorm, "x").is_err());
    let no_updates = [("x", &mon.steps()[0])];
    let mut s = mon.steps()[0].clone();
    s.layers.iter_mut().for_each(|l| l.update_ratio = None);
    assert!(gradient_flow_svg(&[("x", &s)], PlotMetric::UpdateRatio, "x").is_err());
    assert!(gradient_flow_svg(&no_updates, PlotMetric::UpdateRatio, "x").is_ok());
}

/// Whether an SVG has a `<text>` element reading `s`.
#[cfg(feature = "plot")]
fn has_text(svg: &str, s: &str) -> bool {
    svg.contains(&format!(">\n{s}\n</text>"))
}

/// The hover titles of an SVG, in order.
#[cfg(feature = "plot")]
fn titles(svg: &str) -> Vec<&str> {
    svg.split("<title>")
        .skip(1)
        .filter_map(|t| t.split("</title>").next())
        .collect()
}

#[cfg(feature = "plot")]
#[test]
fn flow_plot_panels_share_axes_and_name_every_layer_on_hover() {
    let mon = small_run();
    let mut sig = deep_net(4, Activation::Sigmoid, xavier(), false, 2);
    let other = train(&mut sig, 1, 0.01);
    let (a, b) = (&mon.steps()[0], &other.steps()[0]);
    let runs = [
        ("one", a),
        ("two", b),
        ("three", a),
        ("four", b),
        ("five", a),
    ];
    let auto = flow_svg(&runs, &PlotOptions::default()).unwrap();
    // Five runs: panels (the subtitle says so), each with its own caption.
    assert!(auto.contains("one panel per network"));
    let overlay = PlotOptions {
        layout: FlowLayout::Overlay,
        ..PlotOptions::default()
    };
    let over = flow_svg(&runs, &overlay).unwrap();
    assert!(!over.contains("one panel per network"));
    for name in ["one", "two", "three", "four", "five"] {
        assert!(has_text(&auto, name) && has_text(&over, name));
    }
    let n = a.layers.len();
    // Overlay: one hover column per layer, listing every run; panels: one per layer per run.
    assert_eq!(titles(&over).len(), n);
    assert_eq!(titles(&auto).len(), 5 * n);
    for (i, l) in a.layers.iter().enumerate() {
        assert!(
            titles(&over)[i].starts_with(&format!("Linear layer {i}"))
                && titles(&over)[i].contains(&l.name),
            "{}",
            titles(&over)[i]
        );
        assert_eq!(titles(&over)[i].matches("‖∂L/∂W‖ = ").count(), 5);
    }
    // Four layers: every one is numbered under the axis (the fourth, 3, too).
    assert!(has_text(&over, "3"));
}

#[cfg(feature = "plot")]
#[test]
fn a_short_log_axis_is_labelled_between_its_decades() {
    let mon = small_run();
    let step = &mon.steps()[0];
    let opts = PlotOptions {
        log10_range: Some((-2.0, -1.0)),
        ..PlotOptions::default()
    };
    let svg = flow_svg(&[("x", step)], &opts).unwrap();
    for tick in ["0.01", "0.02", "0.05", "0.1"] {
        assert!(has_text(&svg, tick), "missing tick {tick}");
    }
    let bad = PlotOptions {
        log10_range: Some((1.0, 1.0)),
        ..PlotOptions::default()
    };
    assert!(flow_svg(&[("x", step)], &bad).is_err());
    assert!(heatmap_svg_with(mon.steps(), &bad).is_err());
    assert!(mean_max_svg(step, &bad).is_err());
}

#[cfg(feature = "plot")]
#[test]
fn heatmaps_share_a_colour_scale_when_asked() {
    let mon = small_run();
    let mut sig = deep_net(4, Activation::Sigmoid, xavier(), false, 2);
    let other = train(&mut sig, 3, 0.01);
    let range = log10_range(
        mon.steps().iter().chain(other.steps()),
        PlotMetric::WeightGradNorm,
    )
    .unwrap();
    // Whole decades around every value of both runs.
    let all = mon.steps().iter().chain(other.steps());
    for v in all.flat_map(|s| s.layers.iter().map(|l| l.weight_grad_norm.log10())) {
        assert!(range.0 <= v && v <= range.1 && range.0 == range.0.floor());
    }
    let opts = PlotOptions {
        log10_range: Some(range),
        ..PlotOptions::default()
    };
    let a = heatmap_svg_with(mon.steps(), &opts).unwrap();
    let b = heatmap_svg_with(other.steps(), &opts).unwrap();
    // The same colour bar in both: the same tick labels.
    let lo = format!("{}", 10f64.powf(range.0));
    let lo = if range.0 < -3.0 {
        format!("1e{}", range.0)
    } else {
        lo
    };
    assert!(has_text(&a, &lo) && has_text(&b, &lo), "no tick {lo}");
    let both = heatmaps_svg(
        &[("relu", mon.steps()), ("sigmoid", other.steps())],
        &PlotOptions::default(),
    )
    .unwrap();
    assert!(has_text(&both, "relu") && has_text(&both, "sigmoid"));
    // One hover per cell: layers × steps of each run.
    let cells = |m: &GradMonitor<f32>| m.steps().len() * m.steps()[0].layers.len();
    assert_eq!(titles(&both).len(), cells(&mon) + cells(&other));
    assert_eq!(log10_range(&[], PlotMetric::WeightGradNorm), None);
}

#[cfg(feature = "plot")]
#[test]
fn mean_max_view_draws_both_bars_for_every_layer() {
    let mon = small_run();
    let step = mon.latest().unwrap();
    let svg = mean_max_svg(step, &PlotOptions::default()).unwrap();
    let t = titles(&svg);
    assert_eq!(t.len(), step.layers.len());
    for (l, t) in step.layers.iter().zip(&t) {
        assert!(t.contains(&format!("max |∂L/∂W| = {:.3e}", l.weight_grad_max_abs)));
        assert!(t.contains(&format!("mean |∂L/∂W| = {:.3e}", l.weight_grad_mean_abs)));
    }
    // No gradient anywhere: nothing for a log axis.
    let mut zero = step.clone();
    for l in &mut zero.layers {
        l.weight_grad_max_abs = 0.0;
        l.weight_grad_mean_abs = 0.0;
    }
    assert!(mean_max_svg(&zero, &PlotOptions::default()).is_err());
}

#[cfg(feature = "plot")]
#[test]
fn write_html_is_atomic_and_refuses_an_empty_monitor() {
    let dir = std::env::temp_dir().join(format!("vgrad-monitor-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.html");
    let empty = GradMonitor::<f32>::new(MonitorConfig::default());
    assert!(matches!(
        empty.write_html(&path),
        Err(vgrad::Error::Config(_))
    ));
    assert!(!path.exists());
    let mon = small_run();
    std::fs::write(&path, "old").unwrap();
    mon.write_html(&path).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // The temporary file was renamed over the old one, not left beside it.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1);
    // A path that names no file is an I/O error, not a panic.
    assert!(matches!(
        mon.write_html(dir.join("..")),
        Err(vgrad::Error::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Layers say what they are.

/// tanh written out from `exp`, so that no tanh op is on the tape: a custom layer that says
/// what it is.
#[derive(Clone, Debug)]
struct HandTanh;

impl Module<f64> for HandTanh {
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, f64>, x: Var<'t, f64>) -> Var<'t, f64> {
        let (e, f) = (x.exp(), (-x).exp());
        ctx.label_as((e - f) / (e + f), OutputKind::Activation(Activation::Tanh))
    }
    fn visit(&self, _: &mut dyn Visitor<f64>) {}
    fn visit_mut(&mut self, _: &mut dyn VisitorMut<f64>) {}
}

#[test]
fn the_monitor_takes_a_layers_word_for_what_it_is_not_the_op_on_the_tape() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(HandTanh)
        .push(Linear::new(4, 1, &mut rng).unwrap());
    let (mon, _) = monitored_step(&mut net);
    let s = mon.latest().unwrap();
    let act = s.layer("0").unwrap().activation.as_ref().unwrap();
    assert_eq!((act.name.as_str(), act.kind), ("1", Activation::Tanh));
    // The statistics of a tanh: a saturated fraction, no dead units.
    assert!(act.saturated.is_some() && act.dead.is_none());
    // The same layer labelled without a kind is the output of a layer like any other.
    #[derive(Clone, Debug)]
    struct Unsaid;
    impl Module<f64> for Unsaid {
        fn forward<'t>(&mut self, ctx: &mut Ctx<'t, f64>, x: Var<'t, f64>) -> Var<'t, f64> {
            ctx.label(x.tanh())
        }
        fn visit(&self, _: &mut dyn Visitor<f64>) {}
        fn visit_mut(&mut self, _: &mut dyn VisitorMut<f64>) {}
    }
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(Unsaid)
        .push(Linear::new(4, 1, &mut rng).unwrap());
    let (mon, _) = monitored_step(&mut net);
    assert!(mon
        .latest()
        .unwrap()
        .layer("0")
        .unwrap()
        .activation
        .is_none());
}

/// The layering the issue asks for, checked on the source: the monitor reads what layers say
/// (`nn::OutputKind`), never the engine's private op enum, and holds no `unsafe` of its own (its
/// vectorised passes live in `tensor::stats`).
#[test]
fn the_monitor_reads_no_engine_internals_and_holds_no_unsafe() {
    let files = [
        ("mod.rs", include_str!("../src/monitor/mod.rs")),
        ("stats.rs", include_str!("../src/monitor/stats.rs")),
        ("diagnose.rs", include_str!("../src/monitor/diagnose.rs")),
        ("export.rs", include_str!("../src/monitor/export.rs")),
        ("plot/mod.rs", include_str!("../src/monitor/plot/mod.rs")),
        ("plot/flow.rs", include_str!("../src/monitor/plot/flow.rs")),
        (
            "plot/heatmap.rs",
            include_str!("../src/monitor/plot/heatmap.rs"),
        ),
        ("html.rs", include_str!("../src/monitor/html.rs")),
    ];
    for (name, src) in files {
        for banned in ["crate::ops", "Op::", "unsafe", "Hasher for"] {
            assert!(
                !src.contains(banned),
                "src/monitor/{name} contains `{banned}`"
            );
        }
    }
}
