//! Reading the records in plain words: a verdict, the layers it concerns, the likely causes read
//! from the model and the statistics, and the fixes to try.
//!

use super::predict::{InitPrediction, PredictionCheck};
use super::stats::activation_name;
use super::{LayerKind, LayerRecord, StepRecord};
use crate::nn::init::{calculate_gain, Nonlinearity};
use crate::nn::Activation;
use std::fmt;

/// Thresholds of the diagnosis. The defaults sit between the healthy and the broken networks
/// measured below: the ratio thresholds with a factor 4 of margin or more on every seed, the
/// learning-rate ones as noted on their fields.
///
/// # The classic cases, measured
///
/// The thresholds below were calibrated on 50-layer, width-64 networks (49 hidden layers and a
/// 64 → 10 output layer) fed 64 N(0, 1) inputs, f32, MSE loss against N(0, 1) targets, five
/// seeds each. The figures are at initialisation (step 0):
///
/// | network | first/last ‖∂L/∂W‖ | first/last ‖∂L/∂h‖ | last/first activation std |
/// |---|---|---|---|
/// | sigmoid, Xavier | 6e-32 – 1.4e-31 | 1.3e-31 – 3.0e-31 | 0.57 – 0.62 |
/// | tanh, Xavier | 0.82 – 1.4 | 0.10 – 0.23 | 0.14 – 0.23 |
/// | ReLU, Xavier | 0.74 – 5.8 | 8.7e-9 – 1.1e-7 | 5.2e-9 – 1.9e-7 |
/// | ReLU, He | 0.25 – 0.61 | 0.82 – 13 | 0.40 – 7.2 |
/// | ReLU, He × 2 | 0.42 | 8.1e14 | 1.2e14 |
/// | ReLU, He × 3 or N(0, 1) weights | NaN (loss = ∞) | — | 3.5e22, 5.8e35 |
/// | ReLU, He, `BatchNorm1d`, no skips | 4.3e3 – 5.6e3 | 7.9e3 – 1.2e4 | 1.04 – 1.08 |
/// | the same in residual blocks `x + f(x)` | 0.025 – 0.040 | 3.8 – 5.9 | 1.04 – 1.08 |
///
/// Sigmoid's gradient shrinks ×0.24 per layer (its derivative is at most 0.25); Xavier-initialised
/// ReLU layers halve the forward variance, ×0.72 per layer in std against the predicted 1/√2,
/// and the weight gradients stay level only because a shrinking forward signal multiplies a
/// growing backward one; BatchNorm in a plain ReLU stack amplifies the gradient ×1.19 per layer
/// toward the input, close to the mean-field √(π/(π−1)) ≈ 1.21 (Yang et al., "A Mean Field
/// Theory of Batch Normalization", ICLR 2019).
///
/// Learning rates, on the ReLU + He network for 8 SGD steps and 3 seeds, with the largest
/// per-layer update ratio ‖ΔW‖/‖W‖ of each step: at depth 50, lr 0.01 trains on two seeds
/// (ratios ≤ 0.019, loss 1.24 → 0.91) and diverges on the third, whose initial loss is 71
/// (0.67, then 7.7e7); lr 0.1 trains on one seed (≤ 0.04); lr 0.3 and 1 diverge on every seed
/// (first ratios 0.12 – 67, the loss rising ×4.4 or more, then NaN). At depth 4, lr 0.01 and
/// 0.1 train (≤ 0.098); lr 0.3 trains after a bump (ratios up to 0.49, the loss rising ×1.8 at
/// most, once); lr 1 diverges (0.75 – 0.98, then 2.2 – 9.4, the loss rising ×4.8 – 21).
#[derive(Clone, Debug, PartialEq)]
pub struct DiagnosisConfig {
    /// Vanishing when the first layer's ‖∂L/∂W‖ is below this fraction of the last layer's
    /// (default 1e-3; measured 1e-31 for sigmoid, 0.25 and above for healthy networks).
    pub vanishing_ratio: f64,
    /// Exploding when the first layer's ‖∂L/∂W‖, or the backpropagated signal ‖∂L/∂h‖ at its
    /// output, exceeds the last layer's by this factor (default 1e3; measured ≥ 4.3e3 with
    /// BatchNorm and no skips, ≤ 13 for healthy networks).
    pub exploding_ratio: f64,
    /// The forward signal vanishes when the activation std at the last hidden layer is below this
    /// fraction of the first hidden layer's (default 1e-2; measured ≤ 1.9e-7 for ReLU with Xavier
    /// init, ≥ 0.14 for healthy networks).
    pub signal_vanishing_ratio: f64,
    /// The forward signal explodes when that std ratio exceeds this (default 1e2; measured 1.2e14
    /// for He × 2, ≤ 7.2 for healthy networks).
    pub signal_exploding_ratio: f64,
    /// The loss is diverging when it exceeds this multiple of its lowest earlier value, or stops
    /// being finite (default 4; converging runs measured rises of ×1.8 at most, diverging ones
    /// ×4.4 and more).
    pub loss_rise: f64,
    /// The loss is compared as a trailing mean over this many recorded steps (default 5), so
    /// that one unlucky minibatch is not read as divergence: a residual network on digits,
    /// converging to 97.8% test accuracy, had a single batch's loss jump ×4.03 (0.295 → 1.19)
    /// within its first epoch. A non-finite loss counts at once.
    pub loss_window: usize,
    /// Updates are too large when some layer's ‖ΔW‖/‖W‖ exceeds this (default 1: a step as
    /// large as the weight itself. The rule of thumb for a healthy step is ~1e-3, but small
    /// networks train through far larger ones: converging runs measured up to 0.49, diverging
    /// ones passed 1 by their second step, when the loss usually shows it too).
    pub update_ratio_high: f64,
    /// Saturation is named as a cause when the mean saturated fraction of the saturating
    /// activations exceeds this (default 0.2).
    pub saturated_high: f64,
    /// Dead ReLUs are named as a cause when the mean fraction of dead units exceeds this
    /// (default 0.5; healthy He networks at depth 50 measured 0.24 – 0.36).
    pub dead_high: f64,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        DiagnosisConfig {
            vanishing_ratio: 1e-3,
            exploding_ratio: 1e3,
            signal_vanishing_ratio: 1e-2,
            signal_exploding_ratio: 1e2,
            loss_rise: 4.0,
            loss_window: 5,
            update_ratio_high: 1.0,
            saturated_high: 0.2,
            dead_high: 0.5,
        }
    }
}

/// What the gradients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Gradients reach every layer at comparable scale and the forward signal keeps its spread.
    Healthy,
    /// Gradients shrink toward the input: the first layers barely learn.
    VanishingGradients,
    /// Gradients, the forward signal, the loss or the updates grow without bound (or are already
    /// NaN or infinite).
    ExplodingGradients,
    /// The forward signal dies out with depth: the last layers see nearly constant inputs, even if
    /// the weight gradients look balanced.
    VanishingSignal,
    /// Nothing to judge: no step recorded, or too few layers.
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Healthy => "healthy",
            Verdict::VanishingGradients => "vanishing gradients",
            Verdict::ExplodingGradients => "exploding gradients",
            Verdict::VanishingSignal => "vanishing forward signal",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}

/// A likely cause, with the figures that point to it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Cause {
    /// A loss or gradient stopped being finite at this step.
    NonFinite {
        /// The first step with a non-finite value.
        step: usize,
    },
    /// A bounded activation whose derivative is below 1 sits between many layers.
    SaturatingActivation {
        /// The activation's name (`"sigmoid"`).
        activation: String,
        /// Its largest derivative (0.25 for sigmoid, 1 for tanh).
        max_derivative: f64,
        /// How many layers it follows.
        layers: usize,
        /// Mean fraction of its outputs in the saturated tails.
        saturated: f64,
        /// Measured shrink of ‖∂L/∂W‖ per layer toward the input.
        per_layer: f64,
    },
    /// The weights are too small for the activation: the forward signal shrinks every layer.
    InitShrinksSignal {
        /// Median rms(W)·√fan_in of the matrix layers.
        gain: f64,
        /// The gain that keeps the variance for this activation (`calculate_gain`).
        recommended: f64,
        /// Measured factor on the activation std per layer.
        per_layer: f64,
    },
    /// The weights are too large for the activation: the forward signal (and the backward one)
    /// grows every layer.
    InitGrowsSignal {
        /// Median rms(W)·√fan_in of the matrix layers.
        gain: f64,
        /// The gain that keeps the variance for this activation.
        recommended: f64,
        /// Measured factor per layer (forward std, or backpropagated signal when the forward
        /// one is not measurable).
        per_layer: f64,
    },
    /// Normalisation layers in a deep network without skip connections amplify the gradient on
    /// its way to the input.
    NormalisationWithoutSkips {
        /// How many normalisation layers.
        norm_layers: usize,
        /// Measured growth of ‖∂L/∂h‖ per layer toward the input.
        per_layer: f64,
    },
    /// The optimiser's steps are too large for the weights.
    LearningRateTooHigh {
        /// The largest ‖ΔW‖/‖W‖ seen, if measured.
        max_update_ratio: Option<f64>,
        /// The lowest loss before the rise.
        loss_before: Option<f64>,
        /// The loss when the rise was detected (may be NaN or infinite).
        loss_after: Option<f64>,
    },
    /// Many ReLU units output zero for the whole batch, so their weights get no gradient.
    DeadRelu {
        /// Mean fraction of dead units over the ReLU layers.
        fraction: f64,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::NonFinite { step } => write!(
                f,
                "values stopped being finite at step {step} (turn on Tape::set_detect_anomaly to \
                 find the op)"
            ),
            Cause::SaturatingActivation {
                activation,
                max_derivative,
                layers,
                saturated,
                per_layer,
            } => {
                write!(
                    f,
                    "{activation} at depth: its derivative is at most {max_derivative}, so each of \
                     the {layers} layers it follows can shrink the gradient by that factor \
                     (measured ×{per_layer:.2} per layer)"
                )?;
                if *saturated > 0.0 {
                    write!(
                        f,
                        "; {:.0}% of its outputs are saturated",
                        saturated * 100.0
                    )?;
                }
                Ok(())
            }
            Cause::InitShrinksSignal {
                gain,
                recommended,
                per_layer,
            } => write!(
                f,
                "the initial weights are too small for the activation: gain rms(W)·√fan_in ≈ \
                 {gain:.2} where {recommended:.2} keeps the variance, so the activations' std \
                 shrinks ×{per_layer:.2} per layer"
            ),
            Cause::InitGrowsSignal {
                gain,
                recommended,
                per_layer,
            } => write!(
                f,
                "the initial weights are too large for the activation: gain rms(W)·√fan_in ≈ \
                 {gain:.2} where {recommended:.2} keeps the variance, so the signal grows \
                 ×{per_layer:.2} per layer"
            ),
            Cause::NormalisationWithoutSkips {
                norm_layers,
                per_layer,
            } => write!(
                f,
                "{norm_layers} normalisation layers in a plain network without skip connections: \
                 batch normalisation amplifies the backpropagated gradient at every layer \
                 (measured ×{per_layer:.2} per layer; mean-field theory gives √(π/(π−1)) ≈ 1.21 \
                 for ReLU, Yang et al. 2019)"
            ),
            Cause::LearningRateTooHigh {
                max_update_ratio,
                loss_before,
                loss_after,
            } => {
                write!(f, "the learning rate is too high")?;
                let mut sep = ":";
                if let (Some(a), Some(b)) = (loss_before, loss_after) {
                    write!(f, "{sep} the loss rose from {} to {}", num(*a), num(*b))?;
                    sep = ",";
                }
                if let Some(u) = max_update_ratio {
                    write!(
                        f,
                        "{sep} an update changed a layer's weights by {} of their norm (about \
                         1e-3 is typical)",
                        num(*u)
                    )?;
                }
                Ok(())
            }
            Cause::DeadRelu { fraction } => write!(
                f,
                "{:.0}% of the ReLU units are dead (zero for every sample), and their weights \
                 receive no gradient",
                fraction * 100.0
            ),
        }
    }
}

/// A remedy to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fix {
    /// Replace sigmoid/tanh in hidden layers with ReLU, Leaky ReLU or ELU.
    NonSaturatingActivation,
    /// He (Kaiming) initialisation for ReLU-family activations.
    HeInit,
    /// Xavier (Glorot) initialisation with the activation's gain.
    XavierInit,
    /// Scale the initial weights down to the activation's recommended gain.
    SmallerInit,
    /// Normalise between layers (BatchNorm1d).
    BatchNorm,
    /// Residual connections with a scaled branch.
    ResidualConnections,
    /// A smaller learning rate.
    LowerLearningRate,
    /// Gradient-norm clipping.
    GradientClipping,
    /// Leaky ReLU or ELU, whose units cannot die.
    LeakyActivation,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fix::NonSaturatingActivation => {
                "use ReLU, Leaky ReLU or ELU in the hidden layers instead of a saturating activation"
            }
            Fix::HeInit => {
                "initialise with He/Kaiming (`Init::HE_NORMAL`, std √(2/fan_in)), which keeps a \
                 ReLU layer's forward variance"
            }
            Fix::XavierInit => {
                "initialise with Xavier/Glorot and the activation's gain (`Init::XavierUniform` \
                 with `calculate_gain`)"
            }
            Fix::SmallerInit => {
                "scale the initial weights down to the activation's recommended gain (He for \
                 ReLU, Xavier for tanh)"
            }
            Fix::BatchNorm => "normalise between layers (BatchNorm1d) to restore the signal's scale",
            Fix::ResidualConnections => {
                "add residual connections with a scaled branch (x + α·f(x), α ≈ 1/√depth), so the \
                 gradient has a path that skips the layers"
            }
            Fix::LowerLearningRate => {
                "lower the learning rate (try 10× smaller) until ‖ΔW‖/‖W‖ is near 1e-3"
            }
            Fix::GradientClipping => "clip the gradient norm (PyTorch's clip_grad_norm_)",
            Fix::LeakyActivation => "use Leaky ReLU or ELU so that units cannot die",
        })
    }
}

/// The figures a diagnosis rests on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// The step whose layer profile was read (the latest with finite gradients).
    pub step: Option<usize>,
    /// How many layers the ratios span (the matrix layers when there are two or more).
    pub layers: usize,
    /// ‖∂L/∂W‖ of the first layer over the last layer's.
    pub grad_ratio: Option<f64>,
    /// ‖∂L/∂h‖ at the first layer's output over the last layer's.
    pub signal_grad_ratio: Option<f64>,
    /// Activation std at the last hidden layer over the first hidden layer's.
    pub forward_ratio: Option<f64>,
    /// Median rms(W)·√fan_in of the matrix layers.
    pub weight_gain: Option<f64>,
    /// Mean saturated fraction of the saturating activations.
    pub saturated: Option<f64>,
    /// Mean fraction of dead ReLU units.
    pub dead: Option<f64>,
    /// The largest ‖ΔW‖/‖W‖ over the recorded steps.
    pub max_update_ratio: Option<f64>,
    /// The first and the latest recorded loss.
    pub loss: Option<(f64, f64)>,
}

/// A verdict on the recorded steps, in plain words. `Display` gives a one-line summary, then a
/// paragraph naming the layers, the likely causes and the fixes.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnosis {
    /// What the gradients do.
    pub verdict: Verdict,
    /// The one-line summary after the verdict, with the deciding figure.
    pub summary: String,
    /// The layers concerned, by name, nearest the input first.
    pub affected: Vec<String>,
    /// Likely causes, the most likely first.
    pub causes: Vec<Cause>,
    /// Fixes to try, the most promising first.
    pub fixes: Vec<Fix>,
    /// The figures read.
    pub evidence: Evidence,
    /// What was predicted at initialisation, when a prediction was made
    /// ([`GradMonitor::predict_at_init`](super::GradMonitor::predict_at_init)).
    pub prediction: Option<InitPrediction>,
    /// The prediction checked against the first step recorded after it, once there is one.
    pub check: Option<PredictionCheck>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.verdict, self.summary)?;
        let mut parts = Vec::new();
        if !self.affected.is_empty() {
            parts.push(format!(
                "Layers affected ({}): {}.",
                self.affected.len(),
                list_names(&self.affected)
            ));
        }
        match self.causes.len() {
            0 => {}
            1 => parts.push(format!("Likely cause: {}.", self.causes[0])),
            _ => {
                let c: Vec<String> = self
                    .causes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("({}) {c}", i + 1))
                    .collect();
                parts.push(format!("Likely causes: {}.", c.join("; ")));
            }
        }
        if !self.fixes.is_empty() {
            let x: Vec<String> = self.fixes.iter().map(|x| x.to_string()).collect();
            parts.push(format!("Try: {}.", x.join("; ")));
        }
        if parts.is_empty() {
            parts.push(evidence_line(&self.evidence));
        }
        write!(f, "{}", parts.join(" "))?;
        if let Some(p) = &self.prediction {
            write!(f, "\nPredicted at initialisation: {p}.")?;
        }
        if let Some(c) = &self.check {
            write!(f, "\nPrediction checked: {c}.")?;
        }
        Ok(())
    }
}

fn evidence_line(e: &Evidence) -> String {
    let mut s = format!("Read over {} layers", e.layers);
    if let Some(step) = e.step {
        s.push_str(&format!(" at step {step}"));
    }
    if let Some(u) = e.max_update_ratio {
        s.push_str(&format!("; largest update ratio ‖ΔW‖/‖W‖ {}", num(u)));
    }
    if let Some(d) = e.dead {
        s.push_str(&format!("; {:.0}% dead ReLU units", d * 100.0));
    }
    s.push('.');
    s
}

/// At most eight names, then an ellipsis and the last.
fn list_names(names: &[String]) -> String {
    if names.len() <= 8 {
        return names.join(", ");
    }
    format!("{}, …, {}", names[..6].join(", "), names[names.len() - 1])
}

/// A number for people: three significant figures, in exponent form when far from 1.
pub(super) fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e3).contains(&a) {
        format!("{x:.1e}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    }
}

/// The profile of one step: ratios between the first and last layers.
struct Profile<'a> {
    /// The layers the ratios span.
    layers: Vec<&'a LayerRecord>,
    grad_ratio: Option<f64>,
    signal_grad_ratio: Option<f64>,
    /// Layers with an activation (any kind), depth order.
    hidden: Vec<&'a LayerRecord>,
    forward_ratio: Option<f64>,
}

/// `ratio^(1/steps)`: the average factor per layer.
fn per_layer(ratio: f64, steps: usize) -> f64 {
    ratio.powf(1.0 / steps.max(1) as f64)
}

fn profile(step: &StepRecord) -> Profile<'_> {
    let mut layers: Vec<&LayerRecord> = step.layers_of(LayerKind::Linear).collect();
    if layers.len() < 2 {
        layers = step.layers.iter().collect();
    }
    let (mut grad_ratio, mut signal_grad_ratio) = (None, None);
    if let (Some(a), Some(b)) = (layers.first(), layers.last()) {
        if layers.len() >= 2 {
            grad_ratio = Some(a.weight_grad_norm / b.weight_grad_norm);
            if let (Some(x), Some(y)) = (a.output_grad_norm, b.output_grad_norm) {
                signal_grad_ratio = Some(x / y);
            }
        }
    }
    let hidden: Vec<&LayerRecord> = step
        .layers
        .iter()
        .filter(|l| l.activation.is_some())
        .collect();
    // Without activations, the layers' own outputs stand in, the output layer excluded.
    let signal: Vec<f64> = if hidden.len() >= 2 {
        hidden.iter().filter_map(|l| l.signal_std()).collect()
    } else if layers.len() >= 3 {
        layers[..layers.len() - 1]
            .iter()
            .filter_map(|l| l.output_std)
            .collect()
    } else {
        Vec::new()
    };
    let forward_ratio = match (signal.first(), signal.last()) {
        (Some(&a), Some(&b)) if signal.len() >= 2 => {
            let r = b / a;
            if r.is_finite() {
                Some(r)
            } else {
                // An overflowed last layer: the largest finite spread still shows the growth.
                let m = signal
                    .iter()
                    .copied()
                    .filter(|x| x.is_finite())
                    .fold(0.0, f64::max);
                Some(if m > a { m / a } else { r })
            }
        }
        _ => None,
    };
    Profile {
        layers,
        grad_ratio,
        signal_grad_ratio,
        hidden,
        forward_ratio,
    }
}

fn step_is_finite(s: &StepRecord) -> bool {
    s.loss.is_none_or(f64::is_finite)
        && s.layers.iter().all(|l| {
            l.weight_grad_norm.is_finite() && l.output_grad_norm.is_none_or(f64::is_finite)
        })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The most common hidden activation, its mean saturated and dead fractions.
struct ActSummary {
    kind: Option<Activation<f64>>,
    count: usize,
    saturated: Option<f64>,
    dead: Option<f64>,
}

fn activations(p: &Profile<'_>) -> ActSummary {
    let acts: Vec<_> = p
        .hidden
        .iter()
        .filter_map(|l| l.activation.as_ref())
        .collect();
    let mut best: Option<(Activation<f64>, usize)> = None;
    for a in &acts {
        let n = acts
            .iter()
            .filter(|b| activation_name(&b.kind) == activation_name(&a.kind))
            .count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((a.kind, n));
        }
    }
    let sat: Vec<f64> = acts.iter().filter_map(|a| a.saturated).collect();
    let dead: Vec<f64> = acts.iter().filter_map(|a| a.dead).collect();
    ActSummary {
        kind: best.map(|b| b.0),
        count: best.map_or(0, |b| b.1),
        saturated: mean(&sat),
        dead: mean(&dead),
    }
}

/// The gain that keeps the forward variance for an activation (`calculate_gain`); ReLU's for the
/// smooth ReLU variants, as PyTorch users initialise them.
fn recommended_gain(kind: Option<Activation<f64>>) -> f64 {
    let nl = match kind {
        Some(Activation::Sigmoid) => Nonlinearity::Sigmoid,
        Some(Activation::Tanh) => Nonlinearity::Tanh,
        Some(Activation::LeakyRelu(s)) => Nonlinearity::LeakyRelu(s),
        Some(Activation::Selu) => Nonlinearity::Selu,
        Some(Activation::Identity) | None => Nonlinearity::Linear,
        Some(_) => Nonlinearity::Relu,
    };
    calculate_gain(nl)
}

fn relu_family(kind: Option<Activation<f64>>) -> bool {
    matches!(
        kind,
        Some(
            Activation::Relu
                | Activation::LeakyRelu(_)
                | Activation::Elu(_)
                | Activation::Gelu(_)
                | Activation::Silu
                | Activation::Softplus { .. }
        )
    )
}

/// `x < limit`, counting NaN as beyond every limit: a NaN gradient is a symptom, not a pass.
fn below_or_nan(x: f64, limit: f64) -> bool {
    x.is_nan() || x < limit
}

/// `x > limit`, NaN included.
fn above_or_nan(x: f64, limit: f64) -> bool {
    x.is_nan() || x > limit
}

fn names<'a>(it: impl Iterator<Item = &'a LayerRecord>) -> Vec<String> {
    it.map(|l| l.name.clone()).collect()
}

/// Reads the records of a run and says, in plain words, whether gradients vanish, explode or flow
/// healthily, which layers are concerned, the likely causes and the fixes to try.
///
/// The layer profile is read at the latest step whose gradients are all finite; the loss and the
/// update ratios over every step. In order, the first that holds decides:
///
/// 1. the loss diverges (its trailing mean over [`DiagnosisConfig::loss_window`] steps rises above
///    [`DiagnosisConfig::loss_rise`] × its lowest earlier value, or
///    stops being finite), a gradient is not finite, or an update exceeds
///    [`DiagnosisConfig::update_ratio_high`] — exploding, blamed on the initialisation when the
///    first step already showed growth and on the learning rate otherwise;
/// 2. the forward signal grows past [`DiagnosisConfig::signal_exploding_ratio`] — exploding;
/// 3. the first layer's ‖∂L/∂W‖ or ‖∂L/∂h‖ exceeds the last's by
///    [`DiagnosisConfig::exploding_ratio`] — exploding;
/// 4. the forward signal falls below [`DiagnosisConfig::signal_vanishing_ratio`] — vanishing
///    signal (it comes first because a dying forward signal also starves the gradients);
/// 5. the first layer's ‖∂L/∂W‖ falls below [`DiagnosisConfig::vanishing_ratio`] of the last's —
///    vanishing gradients;
/// 6. otherwise healthy.
pub fn diagnose(steps: &[StepRecord], cfg: &DiagnosisConfig) -> Diagnosis {
    diagnose_with_prediction(steps, cfg, None)
}

/// [`diagnose`], with the finding "predicted at initialisation" added from `prediction`, and,
/// once a step at or after the prediction's is recorded, the prediction checked against the
/// first such step ([`InitPrediction::check`]). The verdict itself is still read from the
/// records alone, so the two can be compared.
pub fn diagnose_with_prediction(
    steps: &[StepRecord],
    cfg: &DiagnosisConfig,
    prediction: Option<&InitPrediction>,
) -> Diagnosis {
    let mut d = diagnose_records(steps, cfg);
    if let Some(p) = prediction {
        d.check = steps
            .iter()
            .find(|s| s.step >= p.step)
            .and_then(|s| p.check(s));
        d.prediction = Some(p.clone());
    }
    d
}

fn diagnose_records(steps: &[StepRecord], cfg: &DiagnosisConfig) -> Diagnosis {
    let mut d = Diagnosis {
        verdict: Verdict::Inconclusive,
        summary: String::new(),
        affected: Vec::new(),
        causes: Vec::new(),
        fixes: Vec::new(),
        evidence: Evidence::default(),
        prediction: None,
        check: None,
    };
    let Some(r) = Reading::of(steps) else {
        d.summary = "no step was recorded".into();
        return d;
    };
    d.evidence = r.evidence();
    // The rules in the order of the list above; the first that holds decides.
    if diverges(&mut d, &r, cfg) {
        return d;
    }
    if r.n < 2 {
        d.summary = "fewer than two layers were recorded".into();
        return d;
    }
    let decided = grows(&mut d, &r, cfg)
        || signal_vanishes(&mut d, &r, cfg)
        || gradients_vanish(&mut d, &r, cfg);
    if !decided {
        healthy(&mut d, &r);
    }
    d
}

/// What every rule reads: the layer profile of the latest finite step, and the losses and
/// update ratios over the run.
struct Reading<'a> {
    steps: &'a [StepRecord],
    first: &'a StepRecord,
    /// The latest step whose gradients are all finite (the first when none is).
    current: &'a StepRecord,
    p: Profile<'a>,
    acts: ActSummary,
    /// Median rms(W)·√fan_in of the layers.
    gain: Option<f64>,
    /// The gain that keeps the variance for the most common activation.
    recommended: f64,
    /// How many layers the profile spans.
    n: usize,
    /// `(step, loss)` of the steps that know their loss.
    losses: Vec<(usize, f64)>,
    /// `(step, layer, ‖ΔW‖/‖W‖)` of every measured update.
    updates: Vec<(usize, &'a LayerRecord, f64)>,
    /// The largest finite update ratio.
    max_update: Option<f64>,
}

impl<'a> Reading<'a> {
    fn of(steps: &'a [StepRecord]) -> Option<Reading<'a>> {
        let first = steps.first()?;
        let current = steps
            .iter()
            .rev()
            .find(|s| step_is_finite(s))
            .unwrap_or(first);
        let p = profile(current);
        let acts = activations(&p);
        let gain = median(p.layers.iter().filter_map(|l| l.weight_gain()).collect());
        let recommended = recommended_gain(acts.kind);
        let n = p.layers.len();
        let losses = steps
            .iter()
            .filter_map(|s| Some((s.step, s.loss?)))
            .collect();
        let updates: Vec<(usize, &LayerRecord, f64)> = steps
            .iter()
            .flat_map(|s| {
                s.layers
                    .iter()
                    .filter_map(move |l| Some((s.step, l, l.update_ratio?)))
            })
            .collect();
        let max_update = largest(updates.iter().map(|u| u.2));
        Some(Reading {
            steps,
            first,
            current,
            p,
            acts,
            gain,
            recommended,
            n,
            losses,
            updates,
            max_update,
        })
    }

    fn evidence(&self) -> Evidence {
        Evidence {
            step: Some(self.current.step),
            layers: self.n,
            grad_ratio: self.p.grad_ratio,
            signal_grad_ratio: self.p.signal_grad_ratio,
            forward_ratio: self.p.forward_ratio,
            weight_gain: self.gain,
            saturated: self.acts.saturated,
            dead: self.acts.dead,
            max_update_ratio: self.max_update,
            loss: self
                .losses
                .first()
                .zip(self.losses.last())
                .map(|(a, b)| (a.1, b.1)),
        }
    }

    /// ‖∂L/∂W‖ of the first layer over the last layer's (NaN when unknown).
    fn grad_ratio(&self) -> f64 {
        self.p.grad_ratio.unwrap_or(f64::NAN)
    }
}

/// The largest finite value, if any.
fn largest(values: impl Iterator<Item = f64>) -> Option<f64> {
    values
        .filter(|x| x.is_finite())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
}

/// `(lowest earlier loss, loss at the rise, step)` of the first step whose trailing mean loss
/// rises above `cfg.loss_rise` × the lowest earlier one, or stops being finite.
fn loss_rise(losses: &[(usize, f64)], cfg: &DiagnosisConfig) -> Option<(f64, f64, usize)> {
    let mut lowest = f64::INFINITY;
    let window = cfg.loss_window.max(1);
    for (i, &(step, l)) in losses.iter().enumerate() {
        let recent = &losses[(i + 1).saturating_sub(window)..=i];
        let smooth = recent.iter().map(|x| x.1).sum::<f64>() / recent.len() as f64;
        if lowest.is_finite() && (!l.is_finite() || smooth > cfg.loss_rise * lowest) {
            return Some((lowest, if l.is_finite() { smooth } else { l }, step));
        }
        lowest = lowest.min(smooth);
    }
    None
}

/// Rule 1, divergence over the run: the loss rises, a value stops being finite or an update is
/// too large. Blamed on the initialisation when the first step already showed growth, on the
/// learning rate otherwise.
fn diverges(d: &mut Diagnosis, r: &Reading<'_>, cfg: &DiagnosisConfig) -> bool {
    let non_finite = r.steps.iter().find(|s| !step_is_finite(s)).map(|s| s.step);
    let rise = loss_rise(&r.losses, cfg);
    let big_updates = r.max_update.is_some_and(|u| u > cfg.update_ratio_high);
    if non_finite.is_none() && rise.is_none() && !big_updates {
        return false;
    }
    d.verdict = Verdict::ExplodingGradients;
    let p0 = profile(r.first);
    let init_grew = !step_is_finite(r.first)
        || p0
            .forward_ratio
            .is_some_and(|x| x > cfg.signal_exploding_ratio)
        || p0.grad_ratio.is_some_and(|x| x > cfg.exploding_ratio)
        || p0
            .signal_grad_ratio
            .is_some_and(|x| x > cfg.exploding_ratio);
    if init_grew {
        // The network was broken before any update: read the first step.
        explain_growth(d, r.first, &p0, cfg, r.gain, r.recommended);
        if let Some(step) = non_finite {
            d.causes.insert(0, Cause::NonFinite { step });
        }
        if d.summary.is_empty() {
            d.summary = format!(
                "the loss or gradients are not finite from step {}",
                r.first.step
            );
        }
    } else {
        blame_learning_rate(d, r, cfg, rise, non_finite);
    }
    true
}

/// Rule 1 when the network was sound at the first step: the learning rate, and the layers whose
/// updates were too large.
fn blame_learning_rate(
    d: &mut Diagnosis,
    r: &Reading<'_>,
    cfg: &DiagnosisConfig,
    rise: Option<(f64, f64, usize)>,
    non_finite: Option<usize>,
) {
    d.summary = match (rise, non_finite) {
        (Some((a, b, s)), _) => {
            format!("the loss rose from {} to {} at step {s}", num(a), num(b))
        }
        (None, Some(s)) => format!("gradients stopped being finite at step {s}"),
        (None, None) => format!(
            "updates change the weights by up to {} of their norm (threshold {:e})",
            num(r.max_update.unwrap_or(f64::NAN)),
            cfg.update_ratio_high
        ),
    };
    // The updates that caused the rise are those made before it; later ones only echo the
    // blow-up.
    let until = rise.map(|x| x.2).or(non_finite).unwrap_or(usize::MAX);
    let before: Vec<&(usize, &LayerRecord, f64)> = r
        .updates
        .iter()
        .filter(|u| u.0 < until && u.2.is_finite())
        .collect();
    d.causes.push(Cause::LearningRateTooHigh {
        max_update_ratio: largest(before.iter().map(|u| u.2)),
        loss_before: rise.map(|x| x.0),
        loss_after: rise.map(|x| x.1),
    });
    if let Some(step) = non_finite {
        d.causes.push(Cause::NonFinite { step });
    }
    d.fixes = vec![Fix::LowerLearningRate, Fix::GradientClipping];
    // The layers whose updates were too large, in depth order; all of them when the loss rose
    // without one standing out.
    let big = |l: &LayerRecord| {
        before
            .iter()
            .any(|u| u.1.name == l.name && u.2 > cfg.update_ratio_high)
    };
    let hit = names(r.p.layers.iter().copied().filter(|l| big(l)));
    d.affected = if hit.is_empty() {
        names(r.p.layers.iter().copied())
    } else {
        hit
    };
}

/// Rules 2 and 3: the forward signal or the gradient grows with depth.
fn grows(d: &mut Diagnosis, r: &Reading<'_>, cfg: &DiagnosisConfig) -> bool {
    let grows =
        r.p.forward_ratio
            .is_some_and(|x| x > cfg.signal_exploding_ratio)
            || r.grad_ratio() > cfg.exploding_ratio
            || r.p
                .signal_grad_ratio
                .is_some_and(|x| x > cfg.exploding_ratio);
    if grows {
        d.verdict = Verdict::ExplodingGradients;
        explain_growth(d, r.current, &r.p, cfg, r.gain, r.recommended);
    }
    grows
}

/// Rule 4: the forward signal dies out. It comes before the vanishing gradients because a dying
/// forward signal also starves the gradients.
fn signal_vanishes(d: &mut Diagnosis, r: &Reading<'_>, cfg: &DiagnosisConfig) -> bool {
    let Some(ratio) =
        r.p.forward_ratio
            .filter(|&x| x < cfg.signal_vanishing_ratio)
    else {
        return false;
    };
    let (p, acts, grad_ratio) = (&r.p, &r.acts, r.grad_ratio());
    d.verdict = Verdict::VanishingSignal;
    let steps_between = p.hidden.len().saturating_sub(1);
    let per = per_layer(ratio, steps_between);
    let tail = if grad_ratio >= cfg.vanishing_ratio {
        format!(
            ", though the first/last ‖∂L/∂W‖ ratio looks fine ({}): the weight gradients are \
             balanced only because a shrinking forward signal multiplies a growing backward one",
            num(grad_ratio)
        )
    } else {
        String::new()
    };
    d.summary = format!(
        "the activations' std falls to {} of the first hidden layer's by the last \
         (×{per:.2} per layer, threshold {:e}){tail}",
        num(ratio),
        cfg.signal_vanishing_ratio
    );
    let first_std = p.hidden[0].signal_std().unwrap_or(f64::NAN);
    d.affected = names(p.hidden.iter().copied().filter(|l| {
        l.signal_std()
            .is_some_and(|s| s < cfg.signal_vanishing_ratio * first_std)
    }));
    d.causes.push(Cause::InitShrinksSignal {
        gain: r.gain.unwrap_or(f64::NAN),
        recommended: r.recommended,
        per_layer: per,
    });
    if grad_ratio < cfg.vanishing_ratio {
        saturating_cause(d, p, acts, cfg, grad_ratio, r.n);
    }
    dead_cause(d, acts, cfg);
    d.fixes.push(if relu_family(acts.kind) {
        Fix::HeInit
    } else {
        Fix::XavierInit
    });
    d.fixes.push(Fix::BatchNorm);
    if acts.dead.is_some_and(|x| x > cfg.dead_high) {
        d.fixes.push(Fix::LeakyActivation);
    }
    true
}

/// Rule 5: the gradients die out toward the input.
fn gradients_vanish(d: &mut Diagnosis, r: &Reading<'_>, cfg: &DiagnosisConfig) -> bool {
    let (p, acts, grad_ratio, n) = (&r.p, &r.acts, r.grad_ratio(), r.n);
    // NaN is no evidence of vanishing.
    let vanishes = grad_ratio < cfg.vanishing_ratio;
    if !vanishes {
        return false;
    }
    d.verdict = Verdict::VanishingGradients;
    let per = per_layer(grad_ratio, n - 1);
    d.summary = format!(
        "the first layer's ‖∂L/∂W‖ is {} of the last layer's (×{per:.2} per layer over {n} \
         layers, threshold {:e})",
        num(grad_ratio),
        cfg.vanishing_ratio
    );
    let last = p.layers[n - 1].weight_grad_norm;
    d.affected = names(
        p.layers
            .iter()
            .copied()
            .filter(|l| below_or_nan(l.weight_grad_norm, cfg.vanishing_ratio * last)),
    );
    let saturating = saturating_cause(d, p, acts, cfg, grad_ratio, n);
    dead_cause(d, acts, cfg);
    if saturating {
        d.fixes.push(Fix::NonSaturatingActivation);
        d.fixes.push(Fix::HeInit);
    } else if relu_family(acts.kind) {
        d.fixes.push(Fix::HeInit);
    } else {
        d.fixes.push(Fix::XavierInit);
    }
    d.fixes.push(Fix::BatchNorm);
    d.fixes.push(Fix::ResidualConnections);
    if acts.dead.is_some_and(|x| x > cfg.dead_high) {
        d.fixes.push(Fix::LeakyActivation);
    }
    true
}

/// Rule 6: none of the above.
fn healthy(d: &mut Diagnosis, r: &Reading<'_>) {
    d.verdict = Verdict::Healthy;
    d.summary = format!(
        "first/last-layer ratio of ‖∂L/∂W‖ {}, of ‖∂L/∂h‖ {}; activation std last/first {} \
         ({} layers, step {})",
        num(r.grad_ratio()),
        r.p.signal_grad_ratio.map_or("n/a".into(), num),
        r.p.forward_ratio.map_or("n/a".into(), num),
        r.n,
        r.current.step
    );
}

/// Names the saturating activation as a cause when there is one; returns whether it did.
fn saturating_cause(
    d: &mut Diagnosis,
    p: &Profile<'_>,
    acts: &ActSummary,
    cfg: &DiagnosisConfig,
    grad_ratio: f64,
    n: usize,
) -> bool {
    let Some(kind) = acts.kind else {
        return false;
    };
    let saturated = acts.saturated.unwrap_or(0.0);
    if !(kind.saturates() || kind.max_derivative() < 1.0) {
        return false;
    }
    // tanh's derivative reaches 1: only saturation makes it shrink gradients.
    if kind.max_derivative() >= 1.0 && saturated <= cfg.saturated_high {
        return false;
    }
    let _ = p;
    d.causes.push(Cause::SaturatingActivation {
        activation: activation_name(&kind).to_string(),
        max_derivative: kind.max_derivative(),
        layers: acts.count,
        saturated,
        per_layer: per_layer(grad_ratio, n - 1),
    });
    true
}

fn dead_cause(d: &mut Diagnosis, acts: &ActSummary, cfg: &DiagnosisConfig) {
    if let Some(f) = acts.dead.filter(|&f| f > cfg.dead_high) {
        d.causes.push(Cause::DeadRelu { fraction: f });
    }
}

/// Fills in an exploding verdict read from one step's profile.
fn explain_growth(
    d: &mut Diagnosis,
    step: &StepRecord,
    p: &Profile<'_>,
    cfg: &DiagnosisConfig,
    gain: Option<f64>,
    recommended: f64,
) {
    let n = p.layers.len();
    let norm_layers = step.layers_of(LayerKind::Norm).count();
    let fwd = p.forward_ratio.filter(|r| r.is_finite());
    let g = p.grad_ratio.filter(|r| r.is_finite());
    let h = p.signal_grad_ratio.filter(|r| r.is_finite());
    let fwd_grows = fwd.is_some_and(|r| r > cfg.signal_exploding_ratio);
    let back = match (g, h) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let back_grows = back.is_some_and(|r| r > cfg.exploding_ratio);

    if fwd_grows {
        let r = fwd.unwrap_or(f64::NAN);
        let per = per_layer(r, p.hidden.len().saturating_sub(1));
        d.summary = format!(
            "the activations' std grows {}× from the first hidden layer to the last (×{per:.2} per \
             layer, threshold {:e})",
            num(r),
            cfg.signal_exploding_ratio
        );
        let first_std = p
            .hidden
            .first()
            .and_then(|l| l.signal_std())
            .unwrap_or(f64::NAN);
        d.affected = names(p.hidden.iter().copied().filter(|l| {
            l.signal_std()
                .is_none_or(|s| above_or_nan(s, cfg.signal_exploding_ratio * first_std))
        }));
        d.causes.push(Cause::InitGrowsSignal {
            gain: gain.unwrap_or(f64::NAN),
            recommended,
            per_layer: per,
        });
        d.fixes = vec![Fix::SmallerInit, Fix::BatchNorm, Fix::GradientClipping];
        return;
    }
    if back_grows || !step_is_finite(step) {
        let r = back.unwrap_or(f64::NAN);
        let per = per_layer(r, n.saturating_sub(1));
        d.summary = format!(
            "the first layer's gradient is {}× the last layer's (‖∂L/∂W‖ ratio {}, ‖∂L/∂h‖ ratio \
             {}; ×{per:.2} per layer over {n} layers, threshold {:e})",
            num(r),
            g.map_or("n/a".into(), num),
            h.map_or("n/a".into(), num),
            cfg.exploding_ratio
        );
        let (lw, lh) = (
            p.layers[n - 1].weight_grad_norm,
            p.layers[n - 1].output_grad_norm,
        );
        d.affected = names(p.layers.iter().copied().filter(|l| {
            above_or_nan(l.weight_grad_norm, cfg.exploding_ratio * lw)
                || matches!((l.output_grad_norm, lh), (Some(x), Some(y)) if above_or_nan(x, cfg.exploding_ratio * y))
        }));
        let per_h = h.map_or(per, |h| per_layer(h, n.saturating_sub(1)));
        if norm_layers > 0 && step.skip_connections == 0 {
            d.causes.push(Cause::NormalisationWithoutSkips {
                norm_layers,
                per_layer: per_h,
            });
            d.fixes = vec![
                Fix::ResidualConnections,
                Fix::GradientClipping,
                Fix::LowerLearningRate,
            ];
        } else {
            d.causes.push(Cause::InitGrowsSignal {
                gain: gain.unwrap_or(f64::NAN),
                recommended,
                per_layer: per_h,
            });
            d.fixes = vec![Fix::SmallerInit, Fix::GradientClipping, Fix::BatchNorm];
        }
    }
}
