//! "Predicted at initialisation": before any training step, mean-field theory
//! ([`meanfield`](crate::meanfield)) applied to the model's actual layers says whether the
//! gradients will vanish or explode and by how much, and the input–output Jacobian's spectrum
//! ([`spectrum`](crate::spectrum)) says whether the network is near dynamical isometry. Once a
//! step is recorded, [`InitPrediction::check`] compares the predicted per-layer decay of
//! ‖∂L/∂W‖ with the measured one.
//!
//! The method is described on [`InitPrediction`].

use super::diagnose::{num, Verdict};
use super::stats::{activation_f64, activation_name, norm};
use super::{LayerRecord, StepRecord};
use crate::error::{Error, Result};
use crate::meanfield::{MeanField, Prediction};
use crate::nn::{Activation, Linear, Module, Sequential};
use crate::spectrum::{jacobian_spectrum, Spectrum};
use crate::tensor::{Element, Tensor};
use std::fmt;

/// How a prediction at initialisation is made and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictConfig {
    /// The verdict is vanishing when the predicted ‖∂L/∂h‖ at the first layer is below
    /// `1/change` of the last layer's, exploding when above `change` (default 10: one order of
    /// magnitude over the depth).
    pub change: f64,
    /// The exact Jacobian spectrum is computed when the input has at most this many features
    /// (default 1024; its cost is one batched JVP sweep of that many rows and an SVD).
    pub spectrum_max_width: usize,
    /// The network is called near isometry when the normalised spread of the squared singular
    /// values, `Var(σ²)/⟨σ²⟩²`, is below this (default 0.5; see [`InitPrediction::spread`]).
    /// Measured at depth 50, width 128, σ_w = 1: orthogonal tanh 0.08–0.09, Gaussian tanh
    /// 2.5–5.0, ReLU with He 3.9–6.1.
    pub isometry_spread: f64,
    /// Predicted and measured slopes of log₁₀‖∂L/∂W‖ over depth agree when they differ by at
    /// most `slope_abs + slope_rel·|predicted|` decades per layer (defaults 0.015 and 0.2).
    /// Measured on width-128, depth-50 networks (three seeds each): tanh at σ_w = 0.8, 1 and
    /// 1.5 and sigmoid differ by 0.002–0.006, ReLU with He initialisation by 0.006–0.007 (a
    /// finite-width drift of the log-norm that mean-field, exact only for infinite width, leaves
    /// out); sigmoid's slope is 0.63.
    pub slope_abs: f64,
    /// See [`slope_abs`](PredictConfig::slope_abs).
    pub slope_rel: f64,
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            change: 10.0,
            spectrum_max_width: 1024,
            isometry_spread: 0.5,
            slope_abs: 0.015,
            slope_rel: 0.2,
        }
    }
}

/// The prediction for one `Linear` layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPrediction {
    /// The layer's dotted name, as the monitor's records name it (`"4"`).
    pub name: String,
    /// `fan_in`, the weight's second dimension.
    pub fan_in: usize,
    /// `√(fan_in·mean(W²))`, measured from the weight.
    pub sigma_w: f64,
    /// `√mean(b²)`, measured from the bias (0 without one).
    pub sigma_b: f64,
    /// The activation that follows the layer (`Identity` when none does).
    pub activation: Activation<f64>,
    /// Predicted variance `q` of the layer's outputs (pre-activations).
    pub q: f64,
    /// Predicted mean square of the layer's input (measured from `x` for the first layer).
    pub input_mean_square: f64,
    /// The factor on ‖∂L/∂h‖² from this layer's output back to the previous layer's output:
    /// `σ_w² E[φ'(√q z)²]` with the previous layer's activation and `q`. `None` for the first.
    pub chi1: Option<f64>,
    /// Predicted log₁₀‖∂L/∂h‖ at the layer's output, relative to the last predicted layer's.
    pub log10_output_grad: f64,
    /// Predicted log₁₀‖∂L/∂W‖, relative to the last predicted layer's.
    pub log10_weight_grad: f64,
}

/// What the monitor predicts about a model before training: from mean-field theory applied to
/// its actual layers, and from its input–output Jacobian's spectrum.
///
/// # What is predicted, and how
///
/// The model is read as a chain of `Linear` layers, each optionally followed by one
/// [`Activation`] (children of a [`Sequential`], nested `Sequential`s flattened, named by their
/// dotted paths as the monitor names them). For each `Linear` the weight's actual scale is
/// measured, `σ_w² = fan_in·mean(W²)` and `σ_b² = mean(b²)` (second moments, not variances:
/// the pre-activation variance `q` mean-field propagates is a mean square, and a constant
/// non-zero bias adds its square to it; for the zero-mean initialisations the two agree). The
/// mean square of the input batch `x` starts the forward recursion, and the variance is then
/// propagated layer by layer with each layer's own σ's (so networks whose layers differ are
/// predicted too):
///
/// * `q₁ = σ_w,1²·mean(x²) + σ_b,1²`, `qₗ₊₁ = σ_w,ₗ₊₁²·E[φₗ(√qₗ z)²] + σ_b,ₗ₊₁²`;
/// * `χ₁` of layer `l + 1` is `σ_w,ₗ₊₁²·E[φₗ'(√qₗ z)²]`: the factor by which the backward pass
///   from layer `l + 1`'s output to layer `l`'s multiplies the **squared** norm ‖∂L/∂h‖² (so
///   the norm by `√χ₁`), whatever the widths;
/// * `‖∂L/∂Wₗ‖ ≈ ‖∂L/∂hₗ‖·√(fan_in·E[aₗ₋₁²])`, the outer product of the backpropagated signal
///   and the layer's input (per sample; the batch's cross terms change the constant, not the
///   slope over depth).
///
/// The verdict reads `∏√χ₁`, the predicted ratio of ‖∂L/∂h‖ at the first layer to the last:
/// vanishing below `1/change`, exploding above `change` ([`PredictConfig::change`], default 10:
/// one order of magnitude over the depth, the point at which the first and the last layers
/// want learning rates ten times apart).
///
/// Layers this theory does not describe — [`BatchNorm1d`](crate::nn::BatchNorm1d), residual
/// blocks, `LayerNorm`, `Dropout`, custom modules, an activation that does not follow a
/// `Linear` — are listed as *not predicted* with the reason, and so is everything after the
/// first of them (its input scale is no longer the theory's); the verdict is then
/// [`Verdict::Inconclusive`] rather than a guess. The layers before it keep their per-layer
/// figures.
#[derive(Clone, Debug, PartialEq)]
pub struct InitPrediction {
    /// The monitor's step counter when the prediction was made (0 before any step); the check
    /// reads the first recorded step from there on.
    pub step: usize,
    /// One entry per predicted `Linear` layer, nearest the input first.
    pub layers: Vec<LayerPrediction>,
    /// `(name, reason)` of every layer the theory does not cover.
    pub not_predicted: Vec<(String, String)>,
    /// Vanishing, exploding or healthy; inconclusive when some layer is not predicted or there
    /// are fewer than two `Linear` layers.
    pub verdict: Verdict,
    /// Predicted ‖∂L/∂h‖ at the first layer's output over the last's: `∏√χ₁`.
    pub grad_ratio: Option<f64>,
    /// Predicted ‖∂L/∂W‖ of the first layer over the last's.
    pub weight_grad_ratio: Option<f64>,
    /// Predicted rms of the forward signal after the last hidden layer's activation over that
    /// after the first's (the monitor measures the std ratio,
    /// [`Evidence::forward_ratio`](super::Evidence::forward_ratio)); `None` with fewer than
    /// three layers.
    pub signal_ratio: Option<f64>,
    /// Mean-field's fixed-point prediction for the last hidden layer's activation, σ_w and
    /// σ_b: `q*`, the phase's `χ₁` at `q*`, the depth scale `ξ_c`. `None` with fewer than three
    /// layers or when the variance map diverges.
    pub deep: Option<Prediction>,
    /// The mean squared singular value of the input–output Jacobian that mean-field predicts,
    /// as [`Spectrum::mean_squared`] defines it (`‖J‖²_F / min(n_out, n_in)`):
    /// `n_out·σ_w,1²·∏χ₁ / min(n_out, n_in)`, times the last activation's `E[φ'²]`.
    pub predicted_mean_squared: Option<f64>,
    /// The Jacobian's spectrum at the first row of `x`, when computed.
    pub spectrum: Option<Spectrum>,
    /// Why the spectrum was not computed, when it was not.
    pub spectrum_note: Option<String>,
    /// The configuration the prediction was made and is checked with.
    pub config: PredictConfig,
}

/// Predicted against measured decay of the gradient over depth, at one recorded step.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionCheck {
    /// The recorded step compared.
    pub step: usize,
    /// How many layers the fits span.
    pub layers: usize,
    /// Slope of a least-squares line through the predicted log₁₀‖∂L/∂W‖ against depth, in
    /// decades per layer (positive: the gradient shrinks toward the input).
    pub predicted_slope: f64,
    /// The same fit through the measured ‖∂L/∂W‖.
    pub measured_slope: f64,
    /// The fit through the predicted log₁₀‖∂L/∂h‖ (√χ₁ per layer).
    pub predicted_output_slope: f64,
    /// The fit through the measured ‖∂L/∂h‖, when the step watched the tape.
    pub measured_output_slope: Option<f64>,
    /// The largest allowed difference of the ‖∂L/∂W‖ slopes, in decades per layer.
    pub tolerance: f64,
    /// Whether the ‖∂L/∂W‖ slopes differ by at most `tolerance`.
    pub agrees: bool,
}

/// Predicts, from the model's weights and the input batch `x`, whether its gradients will
/// vanish or explode, and computes its input–output Jacobian's spectrum at `x`'s first row
/// (see [`InitPrediction`] for the method). Nothing in the model changes, though `model` is borrowed
/// mutably because the spectrum runs its forward pass.
///
/// # Errors
/// [`Error::Shape`] if `x` is not a non-empty `[batch, features]` matrix; [`Error::Config`] if
/// a weight or `x` is not finite, or `cfg.change` is not above 1. A spectrum that cannot be
/// computed is not an error: [`InitPrediction::spectrum_note`] says why.
///
/// # Panics
/// If the model panics on `x` (a shape it does not take).
///
/// # Example
/// ```
/// use vgrad::monitor::{predict_init, PredictConfig, Verdict};
/// use vgrad::nn::{Activation, Linear, Sequential};
/// use vgrad::Tensor;
///
/// let mut rng = vgrad::seeded_rng(0);
/// let mut net = Sequential::<f64>::new();
/// for _ in 0..20 {
///     net = net.push(Linear::new(32, 32, &mut rng)?).push(Activation::Sigmoid);
/// }
/// let x = Tensor::from_fn(&[16, 32], |i| ((i * 7919) % 13) as f64 / 6.0 - 1.0);
/// let p = predict_init(&mut net, &x, &PredictConfig::default())?;
/// assert_eq!(p.verdict, Verdict::VanishingGradients); // sigmoid' ≤ 1/4 at every layer
/// assert!(p.grad_ratio.unwrap() < 1e-6);
/// println!("{p}");
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn predict_init<T: Element, M: Module<T> + ?Sized>(
    model: &mut M,
    x: &Tensor<T>,
    cfg: &PredictConfig,
) -> Result<InitPrediction> {
    predict_at(model, x, cfg, 0)
}

pub(crate) fn predict_at<T: Element, M: Module<T> + ?Sized>(
    model: &mut M,
    x: &Tensor<T>,
    cfg: &PredictConfig,
    step: usize,
) -> Result<InitPrediction> {
    let &[batch, n_in] = x.shape() else {
        return Err(Error::Shape(format!(
            "predict_init: x must be [batch, features], got {:?}",
            x.shape()
        )));
    };
    if batch == 0 || n_in == 0 {
        return Err(Error::Shape(format!(
            "predict_init: x {:?} is empty",
            x.shape()
        )));
    }
    if !(cfg.change > 1.0 && cfg.change.is_finite()) {
        return Err(Error::Config(format!(
            "predict_init: change = {} must be finite and above 1",
            cfg.change
        )));
    }
    let x_ms = norm(x).powi(2) / x.numel() as f64;
    if !x_ms.is_finite() {
        return Err(Error::Config(
            "predict_init: x has NaN or infinite entries".into(),
        ));
    }

    let mut items = Vec::new();
    flatten::<T>(model.as_any(), String::new(), &mut items);
    let (pairs, not_predicted) = pair_up(&items)?;
    let mut layers = forward_recursion(&pairs, x_ms)?;
    backward_recursion(&mut layers);

    let complete = not_predicted.is_empty() && layers.len() >= 2;
    let (grad_ratio, weight_grad_ratio) = match (layers.first(), layers.last()) {
        (Some(a), Some(b)) if complete => (
            Some(10f64.powf(a.log10_output_grad - b.log10_output_grad)),
            Some(10f64.powf(a.log10_weight_grad - b.log10_weight_grad)),
        ),
        _ => (None, None),
    };
    let signal_ratio = match &layers[..] {
        [_, second, .., last] if complete => {
            Some((last.input_mean_square / second.input_mean_square).sqrt())
        }
        _ => None,
    };
    let verdict = match grad_ratio {
        // A variance that overflowed on the way: past any threshold.
        _ if layers.iter().any(|l| l.q == f64::INFINITY) => Verdict::ExplodingGradients,
        Some(r) if r.is_nan() => Verdict::Inconclusive,
        None => Verdict::Inconclusive,
        Some(r) if r < 1.0 / cfg.change => Verdict::VanishingGradients,
        Some(r) if r > cfg.change => Verdict::ExplodingGradients,
        Some(_) => Verdict::Healthy,
    };
    let deep = if complete && layers.len() >= 3 {
        let (prev, last_hidden) = (&layers[layers.len() - 3], &layers[layers.len() - 2]);
        MeanField::new(prev.activation, last_hidden.sigma_w, last_hidden.sigma_b)
            .and_then(|m| m.predict())
            .ok()
    } else {
        None
    };
    let predicted_mean_squared = complete.then(|| {
        let (first, last) = (&layers[0], &layers[layers.len() - 1]);
        // E‖J‖²_F = n_out·σ_w,1²·∏χ₁·E[φ_L'²]; `Spectrum::mean_squared` divides by min(m, n).
        let n_out = pairs.last().map_or(1, |p| p.fan_out);
        let chis: f64 = layers.iter().filter_map(|l| l.chi1).product();
        let last_act = MeanField::new(last.activation, 1.0, 0.0).map_or(1.0, |m| m.chi1_at(last.q));
        n_out as f64 / n_out.min(first.fan_in) as f64 * first.sigma_w.powi(2) * chis * last_act
    });

    let (spectrum, spectrum_note) = if !complete {
        (
            None,
            Some(
                "not computed: some layers are not predicted (a BatchNorm1d in training mode \
                  couples the rows the Jacobian is built from)"
                    .to_string(),
            ),
        )
    } else if n_in > cfg.spectrum_max_width {
        (
            None,
            Some(format!(
                "not computed: {n_in} input features exceed spectrum_max_width = {}",
                cfg.spectrum_max_width
            )),
        )
    } else {
        let row = Tensor::from_vec(x.data()[..n_in].to_vec(), &[1, n_in])?;
        match jacobian_spectrum(model, &row) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("not computed: {e}"))),
        }
    };

    Ok(InitPrediction {
        step,
        layers,
        not_predicted,
        verdict,
        grad_ratio,
        weight_grad_ratio,
        signal_ratio,
        deep,
        predicted_mean_squared,
        spectrum,
        spectrum_note,
        config: cfg.clone(),
    })
}

/// One leaf of the model, as the prediction sees it.
enum Item<'m, T: Element> {
    Linear(&'m Linear<T>),
    Activation(Activation<f64>),
    Other(&'static str),
}

/// The model's leaves in forward order with their dotted names; nested `Sequential`s are
/// flattened, every other module is one leaf.
fn flatten<'m, T: Element>(
    any: &'m dyn std::any::Any,
    name: String,
    out: &mut Vec<(String, Item<'m, T>)>,
) {
    if let Some(s) = any.downcast_ref::<Sequential<T>>() {
        for (i, c) in s.children().iter().enumerate() {
            let child = if name.is_empty() {
                i.to_string()
            } else {
                format!("{name}.{i}")
            };
            flatten(c.as_any(), child, out);
        }
    } else if let Some(l) = any.downcast_ref::<Linear<T>>() {
        out.push((name, Item::Linear(l)));
    } else if let Some(a) = any.downcast_ref::<Activation<T>>() {
        out.push((name, Item::Activation(activation_f64(*a))));
    } else {
        out.push((name, Item::Other(kind_name::<T>(any))));
    }
}

/// A person's name for a module mean-field does not cover.
fn kind_name<T: Element>(any: &dyn std::any::Any) -> &'static str {
    use crate::nn::{BatchNorm1d, Dropout, LayerNorm, Residual};
    if any.is::<BatchNorm1d<T>>() {
        "BatchNorm1d"
    } else if any.is::<LayerNorm<T>>() {
        "LayerNorm"
    } else if any.is::<Residual<T>>() {
        "a residual block"
    } else if any.is::<Dropout>() {
        "Dropout"
    } else {
        "a custom module"
    }
}

/// A `Linear` layer's measured scale and the activation after it.
struct Pair {
    name: String,
    fan_in: usize,
    fan_out: usize,
    sigma_w: f64,
    sigma_b: f64,
    activation: Activation<f64>,
}

/// Groups the leaves into `Linear` + activation pairs, up to the first leaf the theory does not
/// cover; that leaf and every later one are returned as not predicted.
type Uncovered = Vec<(String, String)>;
fn pair_up<T: Element>(items: &[(String, Item<'_, T>)]) -> Result<(Vec<Pair>, Uncovered)> {
    let mut pairs: Vec<Pair> = Vec::new();
    let mut open = false; // the last pair still takes an activation
    for (i, (name, item)) in items.iter().enumerate() {
        let reason = match item {
            Item::Linear(l) => {
                let w = l.weight().value();
                let fan_in = l.in_features();
                let sigma_w = (fan_in as f64 * norm(w).powi(2) / w.numel() as f64).sqrt();
                let sigma_b = l
                    .bias()
                    .map_or(0.0, |b| norm(b.value()) / (b.value().numel() as f64).sqrt());
                if !(sigma_w.is_finite() && sigma_b.is_finite()) {
                    return Err(Error::Config(format!(
                        "predict_init: layer {name:?} has NaN or infinite parameters"
                    )));
                }
                pairs.push(Pair {
                    name: name.clone(),
                    fan_in,
                    fan_out: l.out_features(),
                    sigma_w,
                    sigma_b,
                    activation: Activation::Identity,
                });
                open = true;
                continue;
            }
            Item::Activation(a) if open => {
                if let Some(p) = pairs.last_mut() {
                    p.activation = *a;
                }
                open = false;
                continue;
            }
            Item::Activation(a) => format!(
                "a {} activation that does not follow a Linear layer",
                activation_name(a)
            ),
            Item::Other(kind) => format!(
                "{kind}: the mean-field theory of plain fully connected layers does not describe it"
            ),
        };
        let mut uncovered = vec![(name.clone(), reason)];
        uncovered.extend(
            items[i + 1..]
                .iter()
                .map(|(n, _)| (n.clone(), format!("after {name:?}, which is not predicted"))),
        );
        return Ok((pairs, uncovered));
    }
    Ok((pairs, Vec::new()))
}

/// `q`, the input's mean square and `χ₁` of every pair, from the input's mean square.
fn forward_recursion(pairs: &[Pair], x_mean_square: f64) -> Result<Vec<LayerPrediction>> {
    let mut out: Vec<LayerPrediction> = Vec::with_capacity(pairs.len());
    let mut input_ms = x_mean_square;
    for p in pairs {
        let (q, chi1) = match out.last() {
            None => (p.sigma_w.powi(2) * input_ms + p.sigma_b.powi(2), None),
            Some(prev) => {
                let mf = MeanField::new(prev.activation, p.sigma_w, p.sigma_b)?;
                (mf.variance_map(prev.q), Some(mf.chi1_at(prev.q)))
            }
        };
        out.push(LayerPrediction {
            name: p.name.clone(),
            fan_in: p.fan_in,
            sigma_w: p.sigma_w,
            sigma_b: p.sigma_b,
            activation: p.activation,
            q,
            input_mean_square: input_ms,
            chi1,
            log10_output_grad: 0.0,
            log10_weight_grad: 0.0,
        });
        input_ms = MeanField::new(p.activation, 1.0, 0.0)?.variance_map(q);
    }
    Ok(out)
}

/// Fills in the predicted log₁₀‖∂L/∂h‖ and log₁₀‖∂L/∂W‖, relative to the last layer.
fn backward_recursion(layers: &mut [LayerPrediction]) {
    let mut log_h = 0.0;
    for i in (0..layers.len()).rev() {
        layers[i].log10_output_grad = log_h;
        let l = &layers[i];
        layers[i].log10_weight_grad = log_h + 0.5 * (l.fan_in as f64 * l.input_mean_square).log10();
        if let Some(chi) = layers[i].chi1 {
            log_h += 0.5 * chi.log10();
        }
    }
    if let Some(last) = layers.last().map(|l| l.log10_weight_grad) {
        for l in layers.iter_mut() {
            l.log10_weight_grad -= last;
        }
    }
}

/// The least-squares slope of `y` against `0, 1, 2, …`; `None` for fewer than two finite points.
fn slope(y: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<&(f64, f64)> = y.iter().filter(|p| p.1.is_finite()).collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

impl InitPrediction {
    /// The normalised spread of the Jacobian's squared singular values, `Var(σ²)/⟨σ²⟩²`: 0 for
    /// an isometry, of order 1 or more when a few directions carry the gradient and most are
    /// crushed. Scale-free, so it separates orthogonal from Gaussian initialisation whatever
    /// `⟨σ²⟩` is.
    pub fn spread(&self) -> Option<f64> {
        let s = self.spectrum.as_ref()?;
        Some(s.variance_squared() / s.mean_squared().powi(2))
    }

    /// Whether the spectrum shows dynamical isometry (`spread` below
    /// [`PredictConfig::isometry_spread`]); `None` without a spectrum.
    pub fn isometry(&self) -> Option<bool> {
        self.spread().map(|s| s < self.config.isometry_spread)
    }

    /// Orders of magnitude the gradient norm changes over the depth, `log₁₀ ∏√χ₁` (negative:
    /// shrinks toward the input).
    pub fn orders_of_magnitude(&self) -> Option<f64> {
        self.grad_ratio.map(f64::log10)
    }

    /// Compares the prediction with `step`'s measured ‖∂L/∂W‖ (and ‖∂L/∂h‖ when measured):
    /// a least-squares line of log₁₀ of each against depth over the predicted layers the step
    /// recorded, predicted slope against measured. `None` when fewer than two predicted layers
    /// have finite, non-zero measured gradients.
    pub fn check(&self, step: &StepRecord) -> Option<PredictionCheck> {
        let matched: Vec<(f64, &LayerPrediction, &LayerRecord)> = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as f64, p, step.layer(&p.name)?)))
            .collect();
        let log = |x: f64| if x > 0.0 { x.log10() } else { f64::NAN };
        let fit = |f: &dyn Fn(&(f64, &LayerPrediction, &LayerRecord)) -> f64| {
            slope(&matched.iter().map(|m| (m.0, f(m))).collect::<Vec<_>>())
        };
        let measured_slope = fit(&|m| log(m.2.weight_grad_norm))?;
        let predicted_slope = fit(&|m| m.1.log10_weight_grad)?;
        let predicted_output_slope = fit(&|m| m.1.log10_output_grad)?;
        let measured_output_slope = fit(&|m| m.2.output_grad_norm.map_or(f64::NAN, log));
        let tolerance = self.config.slope_abs + self.config.slope_rel * predicted_slope.abs();
        Some(PredictionCheck {
            step: step.step,
            layers: matched.len(),
            predicted_slope,
            measured_slope,
            predicted_output_slope,
            measured_output_slope,
            tolerance,
            agrees: (predicted_slope - measured_slope).abs() <= tolerance,
        })
    }
}

/// A slope in decades per layer as the factor per layer toward the input.
fn toward_input(slope: f64) -> String {
    format!("×{}", num(10f64.powf(-slope)))
}

impl fmt::Display for InitPrediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.layers.len();
        match (self.grad_ratio, self.verdict) {
            (Some(r), v) => {
                let per = r.powf(1.0 / (n - 1).max(1) as f64);
                write!(
                    f,
                    "{v}: ‖∂L/∂h‖ at the first layer is predicted at {} of the last's ({:+.1} \
                     orders of magnitude over {n} layers; √χ₁ ≈ {} per layer on the norm, χ₁ ≈ \
                     {} on its square)",
                    num(r),
                    r.log10(),
                    num(per),
                    num(per * per)
                )?;
                if let Some(w) = self.weight_grad_ratio {
                    write!(f, "; ‖∂L/∂W‖ first/last predicted {}", num(w))?;
                }
                if let Some(s) = self.signal_ratio {
                    write!(f, "; forward signal rms last/first hidden layer {}", num(s))?;
                }
            }
            (None, _) if !self.not_predicted.is_empty() => write!(
                f,
                "inconclusive: {} of the layers are not predicted",
                self.not_predicted.len()
            )?,
            (None, _) => write!(f, "inconclusive: fewer than two Linear layers")?,
        }
        if let Some(d) = &self.deep {
            let phase = if d.chi1 < 1.0 - 1e-3 {
                "ordered"
            } else if d.chi1 > 1.0 + 1e-3 {
                "chaotic"
            } else {
                "critical"
            };
            write!(
                f,
                ". Deep layers: {phase} phase, q* = {}, χ₁ = {}, signals propagate about ξ_c = {} \
                 layers",
                num(d.q_star),
                num(d.chi1),
                num(d.xi_c)
            )?;
        }
        if let Some(s) = &self.spectrum {
            write!(
                f,
                ". Jacobian at the first input: ⟨σ²⟩ = {}",
                num(s.mean_squared())
            )?;
            if let Some(p) = self.predicted_mean_squared {
                write!(f, " (predicted {})", num(p))?;
            }
            write!(
                f,
                ", spread Var(σ²)/⟨σ²⟩² = {}, σ_max/σ_min = {}: {}",
                num(self.spread().unwrap_or(f64::NAN)),
                num(s.condition()),
                if self.isometry() == Some(true) {
                    "near dynamical isometry"
                } else {
                    "far from isometry (a few directions carry the gradient)"
                }
            )?;
        } else if let Some(note) = &self.spectrum_note {
            write!(f, ". Jacobian spectrum {note}")?;
        }
        if !self.not_predicted.is_empty() {
            let shown: Vec<String> = self
                .not_predicted
                .iter()
                .take(4)
                .map(|(n, r)| format!("{n} ({r})"))
                .collect();
            let more = self.not_predicted.len().saturating_sub(4);
            write!(f, ". Not predicted: {}", shown.join("; "))?;
            if more > 0 {
                write!(f, "; and {more} more")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for PredictionCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at step {}, ‖∂L/∂W‖ changes {} per layer toward the input against {} predicted \
             (log-linear fits over {} layers: slopes {:.4} and {:.4} decades per layer, {} within \
             ±{:.4})",
            self.step,
            toward_input(self.measured_slope),
            toward_input(self.predicted_slope),
            self.layers,
            self.measured_slope,
            self.predicted_slope,
            if self.agrees {
                "agreeing"
            } else {
                "NOT agreeing"
            },
            self.tolerance
        )?;
        if let Some(m) = self.measured_output_slope {
            write!(
                f,
                "; ‖∂L/∂h‖ {} per layer against {} predicted",
                toward_input(m),
                toward_input(self.predicted_output_slope)
            )?;
        }
        Ok(())
    }
}
