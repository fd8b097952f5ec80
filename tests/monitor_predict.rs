//! "Predicted at initialisation" (issue 21 item 5): the monitor's mean-field prediction of the
//! gradient's decay over depth, its verdict, and its check against the measured first step.

use serde_json::Value;
use vgrad::monitor::{
    predict_init, GradMonitor, InitPrediction, MonitorConfig, PredictConfig, PredictionCheck,
    Verdict,
};
use vgrad::nn::init::Init;
use vgrad::nn::Sequential;
use vgrad::nn::{
    mse_loss, Activation, BatchNorm1d, Ctx, Linear, LinearConfig, Module, Reduction, Residual,
};
use vgrad::{Tape, Tensor};

const GOLDEN: &str = include_str!("golden/monitor_predict.json");

const WIDTH: usize = 128;
const BATCH: usize = 64;
const OUT: usize = 10;

/// A deep MLP: `depth` Linear layers (the last WIDTH → OUT), `act` after every hidden one,
/// weights N(0, σ_w²/fan_in) (or orthogonal with gain σ_w), no bias.
fn mlp(
    depth: usize,
    act: Activation<f32>,
    init: impl Fn(f64) -> Init,
    sigma_w: f64,
    seed: u64,
) -> Sequential<f32> {
    let mut rng = vgrad::seeded_rng(seed);
    let mut net = Sequential::new();
    for i in 0..depth {
        let out = if i + 1 == depth { OUT } else { WIDTH };
        let cfg = LinearConfig::init(init(sigma_w)).no_bias();
        net = net.push(Linear::with_config(WIDTH, out, cfg, &mut rng).unwrap());
        if i + 1 < depth {
            net = net.push(act);
        }
    }
    net
}

fn gaussian(sigma_w: f64) -> Init {
    Init::Normal {
        mean: 0.0,
        std: sigma_w / (WIDTH as f64).sqrt(),
    }
}

/// N(0, 1) data.
fn data(seed: u64, rows: usize, cols: usize) -> Tensor<f32> {
    let normal = Init::Normal {
        mean: 0.0,
        std: 1.0,
    };
    normal
        .tensor(&[rows, cols], &mut vgrad::seeded_rng(seed))
        .unwrap()
}

/// Predicts, then records one step, and returns the monitor.
fn predict_and_step(net: &mut Sequential<f32>) -> GradMonitor<f32> {
    let mut mon = GradMonitor::new(MonitorConfig::default());
    mon.predict_at_init(net, &data(1, BATCH, WIDTH)).unwrap();
    step(&mut mon, net);
    mon
}

/// Records one MSE step of `net` on the tests' batch.
fn step(mon: &mut GradMonitor<f32>, net: &mut Sequential<f32>) {
    let x = data(1, BATCH, WIDTH);
    let y = data(2, BATCH, OUT);
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let loss = mse_loss(net.forward(&mut ctx, tape.constant(x)), y, Reduction::Mean);
    mon.backward(&ctx, &*net, loss);
}

/// The prediction and its check against the first step, for a depth-50 network.
fn predicted_and_checked(
    act: Activation<f32>,
    init: impl Fn(f64) -> Init,
    sigma_w: f64,
    seed: u64,
) -> (InitPrediction, PredictionCheck, String, Option<f64>) {
    let mut net = mlp(DEPTH, act, init, sigma_w, seed);
    let mon = predict_and_step(&mut net);
    let d = mon.diagnose();
    let check = d
        .check
        .clone()
        .expect("a step was recorded after the prediction");
    let text = d.to_string();
    (
        d.prediction.expect("predicted"),
        check,
        text,
        d.evidence.forward_ratio,
    )
}

const DEPTH: usize = 50;

/// The golden cases: `(activation, σ_w, fixture)`, the fixture from PyTorch.
fn golden() -> Vec<(Activation<f32>, f64, Value)> {
    let g: Value = serde_json::from_str(GOLDEN).unwrap();
    assert_eq!(g["depth"], DEPTH as u64);
    assert_eq!(g["width"], WIDTH as u64);
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let act = match c["activation"].as_str().unwrap() {
                "tanh" => Activation::Tanh,
                "sigmoid" => Activation::Sigmoid,
                "relu" => Activation::Relu,
                a => panic!("unknown activation {a}"),
            };
            (act, c["sigma_w"].as_f64().unwrap(), c.clone())
        })
        .collect()
}

/// Deep networks with Gaussian weights on both sides of the edge of chaos, sigmoid and ReLU
/// with He's σ_w: the verdict follows ∏√χ₁ over the depth, which matches PyTorch's mean-field
/// recursion (`grad_ratio`), and the predicted slope of log₁₀‖∂L/∂W‖ over depth matches both
/// the slope vgrad's monitor measures at the first step and the one PyTorch measures on its own
/// networks (mean over five seeds).
#[test]
fn predictions_against_pytorch_and_the_first_step() {
    let expected = |act: Activation<f32>, sigma_w: f64| match (act, sigma_w) {
        (Activation::Tanh, s) if s < 0.9 => Verdict::VanishingGradients,
        (Activation::Tanh, s) if s > 1.2 => Verdict::ExplodingGradients,
        (Activation::Sigmoid, _) => Verdict::VanishingGradients,
        _ => Verdict::Healthy,
    };
    for (act, sigma_w, golden) in golden() {
        let ratio = golden["grad_ratio"].as_f64().unwrap();
        let torch_slope = golden["slope_w"]["mean"].as_f64().unwrap();
        let torch_h_slope = golden["slope_h"]["mean"].as_f64().unwrap();
        for seed in 0..2 {
            let (p, c, text, forward) = predicted_and_checked(act, gaussian, sigma_w, seed);
            let case = format!("{act:?} σ_w = {sigma_w}, seed {seed}");
            assert_eq!(p.verdict, expected(act, sigma_w), "{case}:\n{text}");
            // The realised σ_w differs from the nominal by ~0.5% (16 384 draws a layer), which
            // compounds over 49 layers.
            let r = p.grad_ratio.unwrap();
            assert!(
                (r.log10() - ratio.log10()).abs() < 0.15,
                "{case}: predicted ratio {r}, PyTorch's recursion {ratio}"
            );
            assert_eq!(c.layers, DEPTH);
            assert!(c.agrees, "{case}: {c}");
            assert!(
                (c.predicted_slope - torch_slope).abs() <= c.tolerance,
                "{case}: predicted slope {} against PyTorch's measured {torch_slope}",
                c.predicted_slope
            );
            // ‖∂L/∂h‖ changes by √χ₁ per layer: vgrad's measurement and PyTorch's follow.
            let h = c.measured_output_slope.unwrap();
            for measured in [h, torch_h_slope] {
                assert!(
                    (measured - c.predicted_output_slope).abs() < 0.015,
                    "{case}: ‖∂L/∂h‖ slope {measured} against {} predicted",
                    c.predicted_output_slope
                );
            }
            assert!(text.contains("Predicted at initialisation: "), "{text}");
            assert!(text.contains("Prediction checked: at step 0"), "{text}");
            // tanh keeps the signal centred, so the measured std ratio is the rms ratio.
            if act == Activation::Tanh {
                let (pred, meas) = (p.signal_ratio.unwrap(), forward.unwrap());
                assert!(
                    (pred.log10() - meas.log10()).abs() < 0.05,
                    "{case}: forward signal ratio {meas} against {pred} predicted"
                );
            }
            // Gaussian weights: far from isometry.
            assert_eq!(p.isometry(), Some(false), "{text}");
        }
    }
}

/// Per layer, χ₁ is the factor on the squared gradient norm: in the ordered phase with σ_b = 0
/// the variance flows to 0 and χ₁ → σ_w²·tanh'(0)² = σ_w².
#[test]
fn chi1_per_layer_tends_to_sigma_w_squared() {
    let mut net = mlp(DEPTH, Activation::Tanh, gaussian, 0.8, 0);
    let p = predict_init(&mut net, &data(1, BATCH, WIDTH), &PredictConfig::default()).unwrap();
    assert_eq!(p.layers.len(), DEPTH);
    assert!(p.layers[0].chi1.is_none());
    let deep = &p.layers[DEPTH - 2];
    let sw2 = deep.sigma_w * deep.sigma_w;
    assert!((deep.sigma_w - 0.8).abs() < 0.02, "σ_w {}", deep.sigma_w);
    assert!(
        (deep.chi1.unwrap() - sw2).abs() < 1e-3 * sw2,
        "{:?}",
        deep.chi1
    );
    assert!(p.deep.unwrap().chi1 < 1.0);
}

/// ReLU with He initialisation (`Init::HE_NORMAL`, which reads its fan from the weight) is
/// critical at every depth: healthy, predicted flat, the first step agreeing.
#[test]
fn relu_with_he_is_healthy() {
    for seed in 0..2 {
        let (p, c, text, _) =
            predicted_and_checked(Activation::Relu, |_| Init::HE_NORMAL, 0.0, seed);
        assert_eq!(p.verdict, Verdict::Healthy, "{text}");
        assert!((p.grad_ratio.unwrap() - 1.0).abs() < 0.15, "{text}");
        assert!(c.predicted_slope.abs() < 1e-3 && c.agrees, "{c}");
    }
}

/// Orthogonal weights at criticality give tanh networks dynamical isometry; the spread of σ²
/// tells them from Gaussian ones with the same σ_w.
#[test]
fn orthogonal_tanh_is_near_isometry() {
    let orth = |g| Init::Orthogonal { gain: g };
    let (p, c, text, _) = predicted_and_checked(Activation::Tanh, orth, 1.0, 0);
    assert_eq!(p.isometry(), Some(true), "{text}");
    assert!(p.spread().unwrap() < 0.2, "{text}");
    assert!(text.contains("near dynamical isometry"), "{text}");
    assert!(c.agrees, "{c}");
    let (g, _, _, _) = predicted_and_checked(Activation::Tanh, gaussian, 1.0, 0);
    assert!(g.spread().unwrap() > 10.0 * p.spread().unwrap());
}

/// BatchNorm is outside the theory: its layers (and those after the first) are listed as not
/// predicted, the verdict is inconclusive, and no spectrum is attempted.
#[test]
fn batchnorm_is_not_predicted() {
    let mut rng = vgrad::seeded_rng(3);
    let mut net = Sequential::<f32>::new();
    for _ in 0..4 {
        net = net
            .push(
                Linear::with_config(WIDTH, WIDTH, LinearConfig::init(Init::HE_NORMAL), &mut rng)
                    .unwrap(),
            )
            .push(BatchNorm1d::new(WIDTH).unwrap())
            .push(Activation::Relu);
    }
    net = net.push(Linear::new(WIDTH, OUT, &mut rng).unwrap());
    let mon = predict_and_step(&mut net);
    let p = mon.prediction().unwrap();
    assert_eq!(p.verdict, Verdict::Inconclusive);
    assert_eq!(p.not_predicted[0].0, "1");
    assert!(
        p.not_predicted[0].1.starts_with("BatchNorm1d"),
        "{:?}",
        p.not_predicted
    );
    let names: Vec<&str> = p.not_predicted.iter().map(|n| n.0.as_str()).collect();
    for bn in ["1", "4", "7", "10"] {
        assert!(names.contains(&bn), "{names:?}");
    }
    // Only the Linear layer before the first BatchNorm is predicted.
    assert_eq!(p.layers.len(), 1);
    assert!(p.grad_ratio.is_none() && p.spectrum.is_none() && p.spectrum_note.is_some());
    let text = mon.diagnose().to_string();
    assert!(text.contains("Not predicted: 1 (BatchNorm1d"), "{text}");
    assert!(text.contains("inconclusive"), "{text}");
}

/// A residual block is outside the theory too, and so is an activation with no Linear before
/// it; the layers before them keep their figures.
#[test]
fn residual_blocks_are_not_predicted() {
    let mut rng = vgrad::seeded_rng(4);
    let branch = Sequential::<f32>::new()
        .push(Linear::new(WIDTH, WIDTH, &mut rng).unwrap())
        .push(Activation::Tanh);
    let mut net = Sequential::<f32>::new()
        .push(Linear::new(WIDTH, WIDTH, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(WIDTH, WIDTH, &mut rng).unwrap())
        .push(Residual::new(branch))
        .push(Linear::new(WIDTH, OUT, &mut rng).unwrap());
    let p = predict_init(&mut net, &data(1, BATCH, WIDTH), &PredictConfig::default()).unwrap();
    assert_eq!(p.verdict, Verdict::Inconclusive);
    assert_eq!(p.layers.len(), 2);
    assert_eq!(p.not_predicted[0].0, "3");
    assert!(
        p.not_predicted[0].1.starts_with("a residual block"),
        "{:?}",
        p.not_predicted
    );
    assert_eq!(
        p.not_predicted.len(),
        2,
        "the block, then the output layer after it"
    );
    // Linear::new's U(±1/√fan_in) weights: σ_w² = fan_in·(1/(3·fan_in)) = 1/3.
    assert!(
        (p.layers[0].sigma_w - (1.0f64 / 3.0).sqrt()).abs() < 0.01,
        "{:?}",
        p.layers[0]
    );
    assert!(p.layers[1].chi1.is_some());

    let mut rng = vgrad::seeded_rng(5);
    let mut starts_with_act = Sequential::<f32>::new()
        .push(Activation::Tanh)
        .push(Linear::new(WIDTH, OUT, &mut rng).unwrap());
    let p = predict_init(
        &mut starts_with_act,
        &data(1, 4, WIDTH),
        &PredictConfig::default(),
    )
    .unwrap();
    assert!(p.layers.is_empty() && p.not_predicted[0].1.contains("does not follow a Linear"));
}

/// The check can fail: a prediction for one network, checked against another's step.
#[test]
fn check_flags_a_wrong_prediction() {
    let mut ordered = mlp(DEPTH, Activation::Tanh, gaussian, 1.0, 0);
    let mut sigmoid = mlp(DEPTH, Activation::Sigmoid, gaussian, 1.0, 0);
    let mut mon = GradMonitor::new(MonitorConfig::default());
    mon.predict_at_init(&mut ordered, &data(1, BATCH, WIDTH))
        .unwrap();
    step(&mut mon, &mut sigmoid);
    let c = mon.diagnose().check.unwrap();
    assert!(!c.agrees, "{c}");
    assert!(mon.diagnose().to_string().contains("NOT agreeing"));
}

/// Before any step the diagnosis already carries the prediction; the HTML report shows it.
#[test]
fn diagnosis_before_training_and_html() {
    let mut net = mlp(10, Activation::Tanh, gaussian, 0.5, 0);
    let mut mon = GradMonitor::new(MonitorConfig::default());
    mon.predict_at_init(&mut net, &data(1, BATCH, WIDTH))
        .unwrap();
    let d = mon.diagnose();
    assert_eq!(d.verdict, Verdict::Inconclusive);
    assert!(d.check.is_none());
    assert_eq!(
        d.prediction.as_ref().unwrap().verdict,
        Verdict::VanishingGradients
    );
    assert!(d
        .to_string()
        .contains("Predicted at initialisation: vanishing gradients"));
    step(&mut mon, &mut net);
    #[cfg(feature = "plot")]
    {
        let html = mon.to_html().unwrap();
        assert!(html.contains("<h2>Predicted at initialisation</h2>"));
        assert_eq!(
            html.matches("<tr><td class=\"name\">").count(),
            10,
            "one prediction row a layer"
        );
        assert!(html.contains("Checked against the measured flow"));
    }
}

#[test]
fn bad_input_is_an_error() {
    let mut net = mlp(3, Activation::Tanh, gaussian, 1.0, 0);
    let cfg = PredictConfig::default();
    assert!(predict_init(&mut net, &Tensor::<f32>::zeros(&[WIDTH]), &cfg).is_err());
    assert!(predict_init(&mut net, &Tensor::<f32>::zeros(&[0, WIDTH]), &cfg).is_err());
    let bad = PredictConfig {
        change: 1.0,
        ..cfg.clone()
    };
    assert!(predict_init(&mut net, &data(1, 4, WIDTH), &bad).is_err());
    let nan = Tensor::from_fn(&[2, WIDTH], |_| f32::NAN);
    assert!(predict_init(&mut net, &nan, &cfg).is_err());
}
