//! Where a network's gradients go: layer hooks, a gradient monitor, a diagnosis in plain words,
//! CSV/JSON export and SVG plots.
//!
//! # Layers, as the monitor sees them
//!
//! `nn` layers label their outputs on the tape with their dotted names (`"3"`,
//! `"blocks.2.branch.0"`), and parameters carry the same names (`"3.weight"`). The monitor groups
//! parameters by module path: every path that owns parameters is one *layer* (a `Linear`, a
//! `BatchNorm1d`, a custom module), its record keyed by that path. For each layer it reads
//!
//! * from the parameter gradients: ‖∂L/∂W‖, mean |∂L/∂W|, max |∂L/∂W| and ‖∂L/∂b‖, where `W` is
//!   the parameter named `weight` (or the layer's first parameter when it has none) and `b` the
//!   one named `bias`;
//! * from the layer's labelled output, during backward: the backpropagated signal ‖∂L/∂h‖ at
//!   that output, and the output's mean and standard deviation;
//! * from the activation that follows it (the next output on the tape that its layer labelled as
//!   an activation, [`OutputKind::Activation`](crate::nn::OutputKind), before another layer's
//!   output — in a `Sequential`, the `Activation` at index i + 1): mean, std, the fraction of saturated units (sigmoid within 0.01 of 0 or 1, |tanh| > 0.99) and the fraction
//!   of dead ReLU units (zero for every sample of the batch);
//! * from the model before and after an optimiser step: ‖ΔW‖/‖W‖.
//!
//! Every norm and statistic accumulates in f64: a 50-layer sigmoid network has f32 gradients
//! near 1e-32, whose squares underflow f32.
//!
//! # One line per step
//!
//! [`GradMonitor::backward`] replaces `ctx.param_grads(&loss.backward())`. It watches the tape
//! during backward, records the step, and compares the weights to those it saw at the previous
//! step, which fills in the update ratio of the optimiser step in between — so a training loop
//! changes by one line, and the optimiser need not know about the monitor.
//!
//! ```
//! use rand::{SeedableRng, rngs::StdRng};
//! use vgrad::monitor::{GradMonitor, MonitorConfig, Verdict};
//! use vgrad::nn::{init::Init, mse_loss, Activation, Ctx, Linear, LinearConfig, Module};
//! use vgrad::nn::{Optimizer, Reduction, Sequential, Sgd, SgdConfig};
//! use vgrad::{Tape, Tensor};
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut net = Sequential::<f32>::new();
//! for _ in 0..8 {
//!     net = net
//!         .push(Linear::with_config(16, 16, LinearConfig::init(Init::HE_NORMAL), &mut rng)?)
//!         .push(Activation::Relu);
//! }
//! let x = Tensor::from_fn(&[32, 16], |i| ((i * 7919) % 17) as f32 / 8.0 - 1.0);
//! let y = Tensor::from_fn(&[32, 16], |i| ((i * 31) % 5) as f32 / 4.0);
//! let mut opt = Sgd::new(SgdConfig { lr: 0.01, ..SgdConfig::default() })?;
//!
//! let mut mon = GradMonitor::new(MonitorConfig::default());
//! for _ in 0..3 {
//!     let tape = Tape::new();
//!     let mut ctx = Ctx::new(&tape);
//!     let loss = mse_loss(net.forward(&mut ctx, tape.constant(x.clone())), y.clone(), Reduction::Mean);
//!     let grads = mon.backward(&ctx, &net, loss); // the one line, instead of ctx.param_grads(&loss.backward())
//!     opt.step(&mut net, &grads)?; // any optimiser, or a hand-written update
//! }
//! mon.after_update(&net); // the last step's update ratio (earlier ones were filled in already)
//!
//! let step = mon.latest().unwrap();
//! assert_eq!(step.layers.len(), 8);
//! assert_eq!(step.layers[0].name, "0");
//! assert!(step.layers.iter().all(|l| l.update_ratio.is_some()));
//! let d = mon.diagnose();
//! println!("{d}"); // a one-line verdict, then a paragraph of causes and fixes
//! assert_eq!(d.verdict, Verdict::Healthy);
//! # Ok::<(), vgrad::Error>(())
//! ```
//!
//! Optimisers can report their own update statistics (`Optimizer::track_updates`); the monitor
//! measures the update from the weights instead, so that it works the same with any optimiser
//! and with updates written by hand.
//!
//! # Cost
//!
//! The tape skips all hook work when no hook is registered, so a model trained without a monitor
//! pays nothing. With [`MonitorConfig::every`] above 1 the monitor watches only every n-th step
//! and the steps in between run bare.
//!
//! A watched step reads each layer's tensors five times — the weight gradient, the weight with
//! its value at the previous step, the gradient at the output, and the activation twice (its
//! mean, then its spread about the mean) — each pass accumulating in f64 with several sums in
//! flight (AVX2 where the CPU has it). The `monitor` benchmark measures the overhead on a
//! 50-layer, width-64 ReLU network with a batch of 64: on the project's 2-vCPU machine, watching
//! every step adds 12–14% to a 1.3 ms training step (+8.7% in instructions), and watching
//! every 10th step about 2–3%.

mod diagnose;
mod export;
#[cfg(feature = "plot")]
mod html;
#[cfg(feature = "plot")]
mod plot;
mod predict;
mod stats;
#[cfg(feature = "tensorboard")]
mod tensorboard;

pub use diagnose::diagnose_with_prediction;
pub use diagnose::{diagnose, Cause, Diagnosis, DiagnosisConfig, Evidence, Fix, Verdict};
#[cfg(feature = "plot")]
#[cfg_attr(docsrs, doc(cfg(feature = "plot")))]
pub use html::{html_report, write_html};
#[cfg(feature = "plot")]
#[cfg_attr(docsrs, doc(cfg(feature = "plot")))]
pub use plot::{
    flow_svg, gradient_flow_svg, heatmap_svg, heatmap_svg_with, heatmaps_svg, log10_range,
    mean_max_svg, FlowLayout, PlotMetric, PlotOptions, NAMED_LAYERS,
};
pub use predict::{predict_init, InitPrediction, LayerPrediction, PredictConfig, PredictionCheck};
#[cfg(feature = "tensorboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "tensorboard")))]
pub use tensorboard::TensorBoardWriter;

use crate::hash::{FastIdMap, FastIdSet};
use crate::nn::Visitor;
use crate::nn::{Activation, Ctx, DottedPath, Module, OutputKind, Param, ParamGrads, ParamId};
use crate::tape::{HookHandle, Tape, Var};
use crate::tensor::{Element, Tensor};
pub use stats::Histogram;
use stats::{norm, norm_and_distance, value_stats, Moments, ValueStats};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// How a [`GradMonitor`] records.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorConfig {
    /// Record every n-th step, starting with the first (default 1: every step). Steps in between
    /// run backward with no hook registered, at no cost.
    pub every: usize,
    /// Whether to compute activation statistics (mean, std, saturation, dead units) from the
    /// layer outputs (default true).
    pub activation_stats: bool,
    /// How close to its bounds a saturating activation's output must be to count as saturated
    /// (default 0.01: sigmoid outputs within 0.01 of 0 or 1, |tanh| > 0.99, where the derivative
    /// is below 0.01 and 0.02 respectively).
    pub saturation_margin: f64,
    /// The thresholds [`GradMonitor::diagnose`] uses.
    pub diagnosis: DiagnosisConfig,
    /// Whether to keep a [`Histogram`] of each layer's weight gradient and of its activation (or
    /// its output, where no activation follows) at every recorded step, for TensorBoard's
    /// histogram and distribution views (default false: a histogram is one more pass over each
    /// tensor, with a logarithm per element). Activation histograms come with the activation
    /// statistics, so they also need [`activation_stats`](MonitorConfig::activation_stats).
    pub histograms: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            every: 1,
            activation_stats: true,
            saturation_margin: 0.01,
            diagnosis: DiagnosisConfig::default(),
            histograms: false,
        }
    }
}

/// What kind of layer a parameter group is, read from the shape of its main parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// A 2-D weight: a `Linear` layer (or anything else holding a matrix).
    Linear,
    /// A 1-D weight: the affine scale of a normalisation layer (`BatchNorm1d`, `LayerNorm`).
    Norm,
    /// Any other shape.
    Other,
}

impl LayerKind {
    fn of(main_param_ndim: usize) -> LayerKind {
        match main_param_ndim {
            2 => LayerKind::Linear,
            1 => LayerKind::Norm,
            _ => LayerKind::Other,
        }
    }

    /// A short lower-case name (`"linear"`), as written in exports.
    pub fn name(&self) -> &'static str {
        match self {
            LayerKind::Linear => "linear",
            LayerKind::Norm => "norm",
            LayerKind::Other => "other",
        }
    }
}

/// Statistics of the activation that follows a layer, over one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationStats {
    /// The activation's dotted name (`"1"` after the `Linear` named `"0"` in a `Sequential`).
    pub name: String,
    /// Which activation it is, as the layer said when it labelled its output
    /// ([`Ctx::label_as`]).
    pub kind: Activation<f64>,
    /// Mean of the outputs.
    pub mean: f64,
    /// Standard deviation of the outputs (population, over every element).
    pub std: f64,
    /// Fraction of outputs in the flat tails of a saturating activation (sigmoid within the
    /// margin of 0 or 1, |tanh| > 1 − margin); `None` for kinds that do not saturate.
    pub saturated: Option<f64>,
    /// Fraction of ReLU units (features) that are zero for every sample of the batch; `None` for
    /// other kinds.
    pub dead: Option<f64>,
    /// The outputs' distribution, when [`MonitorConfig::histograms`] is on.
    pub histogram: Option<Histogram>,
}

/// One layer at one step.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRecord {
    /// The module path owning the parameters (`"4"`, `"blocks.3.bn"`; `""` for parameters of the
    /// top-level module itself).
    pub name: String,
    /// What the layer is, from its main parameter's shape.
    pub kind: LayerKind,
    /// Position among the recorded layers, in parameter-visiting order (forward order for a
    /// `Sequential`): 0 is nearest the input.
    pub depth: usize,
    /// Shape of the main parameter `W` (`[out, in]` for a `Linear`).
    pub weight_shape: Vec<usize>,
    /// ‖∂L/∂W‖₂ (0 when no gradient reached the weight).
    pub weight_grad_norm: f64,
    /// Mean of |∂L/∂W|.
    pub weight_grad_mean_abs: f64,
    /// Largest |∂L/∂W|.
    pub weight_grad_max_abs: f64,
    /// ‖∂L/∂b‖₂, when the layer has a bias.
    pub bias_grad_norm: Option<f64>,
    /// ‖W‖₂.
    pub weight_norm: f64,
    /// ‖∂L/∂W‖ / ‖W‖: how large a plain SGD step is relative to the weight, per unit of learning
    /// rate.
    pub grad_to_weight: f64,
    /// ‖∂L/∂h‖₂, the backpropagated signal at the layer's labelled output; `None` when the step
    /// was recorded without watching the tape or the layer does not label its output.
    pub output_grad_norm: Option<f64>,
    /// Mean of the layer's output, measured when no activation follows it (the output layer, a
    /// layer feeding a normalisation); the activation's statistics describe the others.
    pub output_mean: Option<f64>,
    /// Standard deviation of the layer's output, measured when no activation follows it.
    pub output_std: Option<f64>,
    /// ‖ΔW‖ / ‖W‖ over the optimiser step that followed this step's backward; `None` until the
    /// monitor has seen the model after the step.
    pub update_ratio: Option<f64>,
    /// Statistics of the activation that follows the layer, if any.
    pub activation: Option<ActivationStats>,
    /// The distribution of ∂L/∂W's elements, when [`MonitorConfig::histograms`] is on and a
    /// gradient reached the weight.
    pub weight_grad_histogram: Option<Histogram>,
    /// The distribution of the layer's output, when [`MonitorConfig::histograms`] is on and no
    /// activation follows the layer (as for [`output_mean`](LayerRecord::output_mean)).
    pub output_histogram: Option<Histogram>,
}

impl LayerRecord {
    /// The weight's scale relative to its fan-in, rms(W)·√fan_in: the `gain` of the
    /// initialisation that would give it (1 for Xavier/LeCun on a square layer, √2 for He).
    /// `None` unless the weight is a matrix.
    pub fn weight_gain(&self) -> Option<f64> {
        let [out, fan_in] = self.weight_shape[..] else {
            return None;
        };
        let rms = self.weight_norm / ((out * fan_in) as f64).sqrt();
        Some(rms * (fan_in as f64).sqrt())
    }

    /// The forward signal's spread after this layer: its activation's std, or its own output's
    /// std when no activation follows.
    pub fn signal_std(&self) -> Option<f64> {
        self.activation.as_ref().map(|a| a.std).or(self.output_std)
    }
}

/// Everything recorded at one training step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// The step's index (counting every call to [`GradMonitor::backward`], recorded or not).
    pub step: usize,
    /// The loss, when known.
    pub loss: Option<f64>,
    /// One record per layer, nearest the input first.
    pub layers: Vec<LayerRecord>,
    /// How many labelled sums that are not layers of their own (residual connections) the forward
    /// pass ran; the diagnosis reads "plain network" from zero.
    pub skip_connections: usize,
}

impl StepRecord {
    /// The layers of one kind, in depth order.
    pub fn layers_of(&self, kind: LayerKind) -> impl Iterator<Item = &LayerRecord> {
        self.layers.iter().filter(move |l| l.kind == kind)
    }

    /// The record of the layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerRecord> {
        self.layers.iter().find(|l| l.name == name)
    }
}

/// What the observer keeps of one labelled node.
#[derive(Clone, Copy, Debug, Default)]
struct NodeStats {
    grad_norm: Option<f64>,
    value: Option<ValueStats>,
}

/// A labelled node as the forward pass left it, and what its layer said it is.
struct Labelled<T: Element> {
    label: Arc<str>,
    activation: Option<Activation<T>>,
    /// A residual block's sum.
    is_skip: bool,
}

/// What the observer computes for one label: only what a record will use, since a step of a
/// small network is short and every pass over a layer's output shows in it.
#[derive(Clone, Copy)]
struct Need<T: Element> {
    /// A layer's output: ‖∂L/∂h‖.
    grad: bool,
    /// A layer's output or the activation after one: mean, std and the kind's fractions.
    value: bool,
    kind: Option<Activation<T>>,
}

/// One labelled node the observer measures.
struct Slot<T: Element> {
    label: Arc<str>,
    need: Need<T>,
    /// For a layer's output: the slot of the activation that follows it.
    follower: Option<usize>,
    /// What backward showed, once it reached the node.
    stats: Option<NodeStats>,
    /// The value's distribution, when the monitor keeps histograms.
    histogram: Option<Histogram>,
}

/// The labelled nodes the observer measures, shared between it and [`GradMonitor::record`]:
/// one lookup by label per node during backward, none per node afterwards.
#[derive(Default)]
struct Observed<T: Element> {
    /// Label → index in `slots`.
    index: FastIdMap<Arc<str>, usize>,
    slots: Vec<Slot<T>>,
}

impl<T: Element> Observed<T> {
    /// The slot for `label`, made with `need` if there is none yet.
    fn slot(&mut self, label: &Arc<str>, need: Need<T>) -> usize {
        let next = self.slots.len();
        let i = *self.index.entry(label.clone()).or_insert(next);
        if i == next {
            self.slots.push(Slot {
                label: label.clone(),
                need,
                follower: None,
                stats: None,
                histogram: None,
            });
        }
        i
    }
}

/// The state between [`GradMonitor::watch`] and [`GradMonitor::record`].
struct Watch<T: Element> {
    /// Labelled sums that are not layers: skip connections.
    skip_connections: usize,
    // Shared with the tape's observer during a watched backward. A mutex rather than a
    // `RefCell`, so the monitor is `Send` (a model and its monitor can train in a spawned
    // thread); the lock is uncontended, one per labelled node of a watched step.
    observed: Arc<Mutex<Observed<T>>>,
}

/// Records per-layer gradient statistics step by step and explains them.
///
/// Attach it with one line per step ([`backward`](GradMonitor::backward)); see the
/// [module docs](self) for a full loop. For a loop that runs backward itself (gradient
/// accumulation, a custom seed), call [`watch`](GradMonitor::watch) before backward and
/// [`record`](GradMonitor::record) after.
pub struct GradMonitor<T: Element> {
    config: MonitorConfig,
    steps: Vec<StepRecord>,
    next_step: usize,
    watch: Option<Watch<T>>,
    /// The main weight of each layer of the last recorded step (in the order of its records), to
    /// measure the update after it. Tensors share storage, so this is a reference count per
    /// layer, not a copy.
    snapshot: Option<Vec<Tensor<T>>>,
    /// What [`predict_at_init`](GradMonitor::predict_at_init) predicted.
    prediction: Option<InitPrediction>,
    /// Where recorded steps are written as they are recorded, if anywhere.
    #[cfg(feature = "tensorboard")]
    tensorboard: Option<tensorboard::Attached>,
}

impl<T: Element> std::fmt::Debug for GradMonitor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradMonitor")
            .field("config", &self.config)
            .field("steps_recorded", &self.steps.len())
            .field("next_step", &self.next_step)
            .finish()
    }
}

impl<T: Element> GradMonitor<T> {
    /// A monitor with nothing recorded yet.
    pub fn new(config: MonitorConfig) -> Self {
        GradMonitor {
            config,
            steps: Vec::new(),
            next_step: 0,
            watch: None,
            snapshot: None,
            prediction: None,
            #[cfg(feature = "tensorboard")]
            tensorboard: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Every recorded step, oldest first.
    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }

    /// The most recent recorded step.
    pub fn latest(&self) -> Option<&StepRecord> {
        self.steps.last()
    }

    /// Forgets every record (the step counter goes on).
    pub fn clear(&mut self) {
        self.steps.clear();
        self.snapshot = None;
    }

    /// Whether the next call to [`backward`](GradMonitor::backward) records (see
    /// [`MonitorConfig::every`]).
    pub fn is_due(&self) -> bool {
        self.next_step.is_multiple_of(self.config.every.max(1))
    }

    /// Runs `loss.backward()` and returns the parameters' gradients, as
    /// `ctx.param_grads(&loss.backward())` would, recording the step on the way when it is due.
    ///
    /// Before that it compares the model's weights with those seen at the previous recorded step,
    /// which gives the previous step's update ratio ‖ΔW‖/‖W‖ (the optimiser ran in between).
    ///
    /// # Panics
    /// If `loss` is not a scalar, as [`Var::backward`] does.
    #[track_caller]
    pub fn backward<'t, M: Module<T> + ?Sized>(
        &mut self,
        ctx: &Ctx<'t, T>,
        model: &M,
        loss: Var<'t, T>,
    ) -> ParamGrads<T> {
        if !self.is_due() {
            if self.snapshot.is_some() {
                let _ = self.update_from(&param_groups(model));
            }
            self.next_step += 1;
            return ctx.param_grads(&loss.backward());
        }
        // The model's parameters are walked once per step, for all three uses.
        let groups = param_groups(model);
        let weight_norms = self.update_from(&groups);
        let tape = ctx.tape();
        let handle = self.watch_groups(tape, &groups);
        let grads = loss.backward();
        tape.remove_hook(handle);
        let grads = ctx.param_grads(&grads);
        let value = loss.value();
        let loss = (value.numel() == 1).then(|| value.item().to_f64().unwrap_or(f64::NAN));
        self.record_groups(groups, weight_norms, &grads, loss);
        grads
    }

    /// Starts watching `tape`, on which `model` has just run its forward pass: call before
    /// backward. During backward the monitor sees each layer output's value and complete
    /// gradient, and the activation after it.
    ///
    /// Returns the observer's handle: remove it with [`Tape::remove_hook`] to run another
    /// backward on the same tape unwatched; a tape dropped or [`reset`](Tape::reset) after the
    /// step needs nothing more (a reset removes every observer).
    pub fn watch<M: Module<T> + ?Sized>(&mut self, tape: &Tape<T>, model: &M) -> HookHandle {
        self.watch_groups(tape, &param_groups(model))
    }

    fn watch_groups(&mut self, tape: &Tape<T>, groups: &[Group<T>]) -> HookHandle {
        let nodes: Vec<Labelled<T>> = tape
            .labelled_nodes::<OutputKind<T>>()
            .into_iter()
            .map(|(_, label, kind)| Labelled {
                label,
                activation: match kind {
                    Some(OutputKind::Activation(a)) => Some(a),
                    _ => None,
                },
                is_skip: matches!(kind, Some(OutputKind::Residual)),
            })
            .collect();
        let mut layers: FastIdSet<&str> = FastIdSet::default();
        layers.reserve(groups.len());
        layers.extend(groups.iter().map(|g| g.path.as_str()));
        let want_values = self.config.activation_stats;
        let mut observed = Observed::<T>::default();
        observed.index.reserve(2 * layers.len());
        observed.slots.reserve(2 * layers.len());
        for (i, n) in nodes.iter().enumerate() {
            if !layers.contains(&*n.label) {
                continue;
            }
            let follower = following_activation(&nodes, i, &layers);
            // A layer's own output statistics are what the activation after it shows, shifted
            // and squashed: measured only where no activation follows (an output layer, a layer
            // before a normalisation), which keeps the cost of a watched step down.
            let need = Need {
                grad: true,
                value: want_values && follower.is_none_or(|a| std::ptr::eq(a, n)),
                kind: n.activation,
            };
            // A layer run twice (shared weights): its last call decides what is measured.
            let own = observed.slot(&n.label, need);
            observed.slots[own].need = need;
            if let Some(a) = follower {
                let need = Need {
                    grad: false,
                    value: false,
                    kind: a.activation,
                };
                let after = observed.slot(&a.label, need);
                observed.slots[after].need.value |= want_values;
                observed.slots[own].follower = Some(after);
            }
        }
        let skip_connections = nodes
            .iter()
            .filter(|n| n.is_skip && !layers.contains(&*n.label))
            .count();

        let observed = Arc::new(Mutex::new(observed));
        let sink = observed.clone();
        let margin = self.config.saturation_margin;
        let histograms = self.config.histograms;
        let handle = tape.on_labelled_grad(move |label, value, grad| {
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            let Some(&i) = sink.index.get(label) else {
                return;
            };
            let slot = &mut sink.slots[i];
            let grad_norm = slot.need.grad.then(|| norm(grad));
            match slot.stats.as_mut() {
                // A layer run twice (shared weights): combine the gradient norms in quadrature,
                // keep the statistics of the last call (backward sees it first).
                Some(prev) => {
                    if let (Some(p), Some(n)) = (prev.grad_norm.as_mut(), grad_norm) {
                        *p = p.hypot(n);
                    }
                }
                None => {
                    let need = slot.need;
                    if histograms && need.value {
                        slot.histogram = Histogram::of(value.data());
                    }
                    let value = need
                        .value
                        .then(|| value_stats(value, need.kind.as_ref(), margin));
                    slot.stats = Some(NodeStats { grad_norm, value });
                }
            }
        });
        self.watch = Some(Watch {
            skip_connections,
            observed,
        });
        handle
    }

    /// Records one step from the model (its weights as they were during backward) and its
    /// parameter gradients; `loss` is optional. Output gradients and activation statistics come
    /// from the tape passed to [`watch`](GradMonitor::watch) before backward, if any.
    pub fn record<M: Module<T> + ?Sized>(
        &mut self,
        model: &M,
        grads: &ParamGrads<T>,
        loss: Option<f64>,
    ) -> &StepRecord {
        let groups = param_groups(model);
        let weight_norms = self.update_from(&groups);
        self.record_groups(groups, weight_norms, grads, loss)
    }

    /// Records one step; `weight_norms[i]` is ‖W‖ of `groups[i]` when [`update_from`] measured
    /// it already.
    ///
    /// [`update_from`]: GradMonitor::update_from
    fn record_groups(
        &mut self,
        groups: Vec<Group<T>>,
        weight_norms: Vec<Option<f64>>,
        grads: &ParamGrads<T>,
        loss: Option<f64>,
    ) -> &StepRecord {
        let watch = self.watch.take();
        let skip_connections = watch.as_ref().map_or(0, |w| w.skip_connections);
        let mut observed = watch
            .map(|w| std::mem::take(&mut *w.observed.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default();
        let histograms = self.config.histograms;

        let mut layers = Vec::with_capacity(groups.len());
        let mut snapshot = Vec::with_capacity(groups.len());
        for (depth, g) in groups.into_iter().enumerate() {
            let (_, main_id, main) = &g.main;
            let main_grad = grads.get_id(*main_id);
            let (wn, wmean, wmax) = match main_grad {
                Some(t) => {
                    let m = Moments::of(t);
                    (m.norm, m.mean_abs, m.max_abs)
                }
                None => (0.0, 0.0, 0.0),
            };
            let weight_grad_histogram = main_grad
                .filter(|_| histograms)
                .and_then(|t| Histogram::of(t.data()));
            let bias_grad_norm = g
                .bias
                .as_ref()
                .map(|(id, _)| grads.get_id(*id).map_or(0.0, |t| norm(t)));
            let weight_norm = match weight_norms.get(depth) {
                Some(&Some(n)) => n,
                _ => norm(main),
            };
            let own_slot = observed.index.get(g.path.as_str()).copied();
            let own = own_slot
                .and_then(|i| observed.slots[i].stats)
                .unwrap_or_default();
            let output_histogram = own_slot
                .filter(|_| own.value.is_some())
                .and_then(|i| observed.slots[i].histogram.take());
            let activation = own_slot
                .and_then(|i| observed.slots[i].follower)
                .and_then(|i| {
                    let slot = &mut observed.slots[i];
                    let v = slot.stats?.value?;
                    let kind = v.kind?;
                    Some(ActivationStats {
                        name: String::from(&*slot.label),
                        kind,
                        mean: v.mean,
                        std: v.std,
                        saturated: v.saturated,
                        dead: v.dead,
                        histogram: slot.histogram.take(),
                    })
                });
            layers.push(LayerRecord {
                name: g.path,
                kind: LayerKind::of(main.ndim()),
                depth,
                weight_shape: main.shape().to_vec(),
                weight_grad_norm: wn,
                weight_grad_mean_abs: wmean,
                weight_grad_max_abs: wmax,
                bias_grad_norm,
                weight_norm,
                grad_to_weight: wn / weight_norm,
                output_grad_norm: own.grad_norm,
                output_mean: own.value.map(|v| v.mean),
                output_std: own.value.map(|v| v.std),
                update_ratio: None,
                activation,
                weight_grad_histogram,
                output_histogram,
            });
            snapshot.push(g.main.2);
        }
        self.snapshot = Some(snapshot);
        self.steps.push(StepRecord {
            step: self.next_step,
            loss,
            layers,
            skip_connections,
        });
        self.next_step += 1;
        let step = self.steps.last().expect("just pushed");
        #[cfg(feature = "tensorboard")]
        if let Some(tb) = &mut self.tensorboard {
            tb.write(|w| w.write_step(step));
        }
        step
    }

    /// Fills in the latest step's update ratios ‖ΔW‖/‖W‖ by comparing `model`'s weights with
    /// those recorded at that step. Call it after the optimiser step; [`backward`] does it for
    /// the previous step automatically, so only the last step of a run needs it. Does nothing
    /// when there is no step waiting for its update.
    ///
    /// [`backward`]: GradMonitor::backward
    pub fn after_update<M: Module<T> + ?Sized>(&mut self, model: &M) {
        if self.snapshot.is_some() {
            let _ = self.update_from(&param_groups(model));
        }
    }

    /// Fills in the latest step's update ratios from the weights `now`, and returns ‖W‖ of each
    /// of `now`'s groups that it measured on the way (one pass over the old and new weights
    /// gives both), for the record of the step about to be taken.
    fn update_from(&mut self, now: &[Group<T>]) -> Vec<Option<f64>> {
        let mut norms = vec![None; now.len()];
        let Some(before) = self.snapshot.take() else {
            return norms;
        };
        let Some(step) = self.steps.last_mut() else {
            return norms;
        };
        // The same model gives the same layers in the same order; match by name otherwise.
        let find_now = |i: usize, name: &str| match now.get(i) {
            Some(g) if g.path == name => Some(i),
            _ => now.iter().position(|g| g.path == name),
        };
        // The snapshot holds the weights this record's layers' ‖W‖ were measured on, in order.
        for (i, (layer, b)) in step.layers.iter_mut().zip(&before).enumerate() {
            if let Some(j) = find_now(i, &layer.name) {
                let (norm, dist) = norm_and_distance(&now[j].main.2, b);
                layer.update_ratio = Some(dist / layer.weight_norm);
                norms[j] = Some(norm);
            }
        }
        #[cfg(feature = "tensorboard")]
        if let Some(tb) = &mut self.tensorboard {
            tb.write(|w| w.write_update_ratios(step));
        }
        norms
    }

    /// Reads the records in plain words, with the thresholds of this monitor's
    /// [`MonitorConfig::diagnosis`].
    pub fn diagnose(&self) -> Diagnosis {
        diagnose_with_prediction(
            &self.steps,
            &self.config.diagnosis,
            self.prediction.as_ref(),
        )
    }

    /// Predicts, before training, whether `model`'s gradients will vanish or explode and by how
    /// much, from mean-field theory applied to its actual layers and the Jacobian's spectrum at
    /// the first row of `x` (see [`predict_init`], with [`PredictConfig::default`]). The
    /// prediction is kept: [`diagnose`](GradMonitor::diagnose) reports it and, once a step is
    /// recorded, checks it against the measured per-layer decay of ‖∂L/∂W‖.
    ///
    /// # Errors
    /// As [`predict_init`].
    ///
    /// # Panics
    /// If the model panics on `x`.
    ///
    /// # Example
    /// ```
    /// use vgrad::monitor::{GradMonitor, MonitorConfig, Verdict};
    /// use vgrad::nn::{init::Init, Activation, Ctx, Linear, LinearConfig, Module, Sequential};
    /// use vgrad::{Tape, Tensor};
    ///
    /// let mut rng = vgrad::seeded_rng(0);
    /// let mut net = Sequential::<f64>::new();
    /// for _ in 0..10 {
    ///     let cfg = LinearConfig::init(Init::HE_NORMAL).no_bias();
    ///     net = net.push(Linear::with_config(32, 32, cfg, &mut rng)?).push(Activation::Relu);
    /// }
    /// let x = Tensor::from_fn(&[16, 32], |i| ((i * 7919) % 13) as f64 / 6.0 - 1.0);
    /// let mut mon = GradMonitor::new(MonitorConfig::default());
    /// let p = mon.predict_at_init(&mut net, &x)?;
    /// assert_eq!(p.verdict, Verdict::Healthy); // He init: χ₁ = 1 at every layer
    /// let tape = Tape::new();
    /// let mut ctx = Ctx::new(&tape);
    /// let loss = net.forward(&mut ctx, tape.constant(x)).square().mean();
    /// mon.backward(&ctx, &net, loss);
    /// let d = mon.diagnose();
    /// assert!(d.check.is_some()); // predicted against measured, at step 0
    /// println!("{d}");
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn predict_at_init<M: Module<T> + ?Sized>(
        &mut self,
        model: &mut M,
        x: &Tensor<T>,
    ) -> crate::Result<&InitPrediction> {
        let p = predict::predict_at(model, x, &PredictConfig::default(), self.next_step)?;
        Ok(self.prediction.insert(p))
    }

    /// The prediction made by [`predict_at_init`](GradMonitor::predict_at_init), if any.
    pub fn prediction(&self) -> Option<&InitPrediction> {
        self.prediction.as_ref()
    }

    /// Keeps `prediction` (from [`predict_init`] with a configuration of your own) as this
    /// monitor's prediction at initialisation.
    pub fn set_prediction(&mut self, prediction: InitPrediction) {
        self.prediction = Some(prediction);
    }

    /// Writes every step recorded from now on to `writer`, as it is recorded (see
    /// [`TensorBoardWriter::write_step`]), and each step's update ratios once they are known
    /// (at the next step's backward, or [`after_update`](GradMonitor::after_update) for the
    /// last). Replaces any writer attached before. Turn on [`MonitorConfig::histograms`] for the
    /// gradient and activation histograms.
    ///
    /// [`backward`](GradMonitor::backward) has no `Result`: a failed write is kept for
    /// [`tensorboard_status`](GradMonitor::tensorboard_status), and nothing more is written to
    /// that writer.
    ///
    /// # Example
    /// ```
    /// use rand::{SeedableRng, rngs::StdRng};
    /// use vgrad::monitor::{GradMonitor, MonitorConfig, TensorBoardWriter};
    /// use vgrad::nn::{mse_loss, Activation, Ctx, Linear, Module, Reduction, Sequential};
    /// use vgrad::{Tape, Tensor};
    ///
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let mut net = Sequential::<f32>::new()
    ///     .push(Linear::new(4, 8, &mut rng)?)
    ///     .push(Activation::Relu)
    ///     .push(Linear::new(8, 1, &mut rng)?);
    /// let dir = std::env::temp_dir().join(format!("vgrad-doc-attach-{}", std::process::id()));
    /// let mut mon = GradMonitor::new(MonitorConfig { histograms: true, ..MonitorConfig::default() });
    /// mon.attach_tensorboard(TensorBoardWriter::new(&dir)?);
    /// for step in 0..2 {
    ///     let tape = Tape::new();
    ///     let mut ctx = Ctx::new(&tape);
    ///     let out = net.forward(&mut ctx, tape.constant(Tensor::ones(&[3, 4])));
    ///     let loss = mse_loss(out, Tensor::zeros(&[3, 1]), Reduction::Mean);
    ///     let _grads = mon.backward(&ctx, &net, loss); // writes loss, grad_norm/0, grad/0, …
    ///     if let Some(tb) = mon.tensorboard() {
    ///         tb.add_scalar("lr", 0.01, step)?; // values of your own, beside the monitor's
    ///     }
    ///     mon.tensorboard_status()?; // a failed write, if there was one
    /// }
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[cfg(feature = "tensorboard")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tensorboard")))]
    pub fn attach_tensorboard(&mut self, writer: TensorBoardWriter) {
        self.tensorboard = Some(tensorboard::Attached::new(writer));
    }

    /// The attached writer, to add values of your own (a learning rate) to the same run.
    #[cfg(feature = "tensorboard")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tensorboard")))]
    pub fn tensorboard(&mut self) -> Option<&mut TensorBoardWriter> {
        self.tensorboard.as_mut().map(|t| &mut t.writer)
    }

    /// Whether the attached writer's writes have all succeeded.
    ///
    /// # Errors
    /// The error of the first write that failed ([`Error::Io`](crate::Error::Io), naming the
    /// file), returned once; the monitor writes nothing more to that writer afterwards.
    #[cfg(feature = "tensorboard")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tensorboard")))]
    pub fn tensorboard_status(&mut self) -> crate::Result<()> {
        match self.tensorboard.as_mut().and_then(|t| t.error.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The records as CSV, one row per layer per step (see [`to_csv`]).
    pub fn to_csv(&self) -> String {
        export::to_csv(&self.steps)
    }

    /// The records as JSON (see [`to_json`]).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn to_json(&self) -> String {
        export::to_json(&self.steps)
    }

    /// The records and this monitor's diagnosis as one self-contained HTML page (see
    /// [`html_report`]).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if no step has been recorded.
    #[cfg(feature = "plot")]
    #[cfg_attr(docsrs, doc(cfg(feature = "plot")))]
    pub fn to_html(&self) -> crate::Result<String> {
        html_report(&self.steps, &self.diagnose(), "Gradient report")
    }

    /// Writes [`GradMonitor::to_html`] to a file, atomically: a page that opens offline in any
    /// browser, with the diagnosis, the flow plot, the heatmap and a table of every layer, and
    /// per-layer values on hover.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if no step has been recorded;
    /// [`Error::Io`](crate::Error::Io) if the file cannot be written.
    ///
    /// # Example
    /// ```
    /// use rand::{SeedableRng, rngs::StdRng};
    /// use vgrad::monitor::{GradMonitor, MonitorConfig};
    /// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
    /// use vgrad::{Tape, Tensor};
    ///
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let mut net = Sequential::<f32>::new()
    ///     .push(Linear::new(4, 8, &mut rng)?)
    ///     .push(Activation::Relu)
    ///     .push(Linear::new(8, 1, &mut rng)?);
    /// let mut mon = GradMonitor::new(MonitorConfig::default());
    /// let tape = Tape::new();
    /// let mut ctx = Ctx::new(&tape);
    /// let loss = net.forward(&mut ctx, tape.constant(Tensor::ones(&[2, 4]))).square().mean();
    /// mon.backward(&ctx, &net, loss);
    /// let path = std::env::temp_dir().join(format!("vgrad-doc-{}.html", std::process::id()));
    /// mon.write_html(&path)?;
    /// assert!(std::fs::read_to_string(&path).unwrap().contains("<table id=\"layers\">"));
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[cfg(feature = "plot")]
    #[cfg_attr(docsrs, doc(cfg(feature = "plot")))]
    pub fn write_html(&self, path: impl AsRef<std::path::Path>) -> crate::Result<()> {
        export::write_file(path.as_ref(), &self.to_html()?)
    }
}

pub use export::{to_csv, write_csv, write_svg};
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub use export::{to_json, write_json};

/// The first labelled activation after `nodes[i]` (or `nodes[i]` itself when the layer ends in
/// one), stopping at the next layer's output: the activation a layer feeds.
fn following_activation<'a, T: Element>(
    nodes: &'a [Labelled<T>],
    i: usize,
    layers: &FastIdSet<&str>,
) -> Option<&'a Labelled<T>> {
    if nodes[i].activation.is_some() {
        return Some(&nodes[i]);
    }
    for n in &nodes[i + 1..] {
        if layers.contains(&*n.label) {
            return None;
        }
        if n.activation.is_some() {
            return Some(n);
        }
    }
    None
}

/// A module path and the parameters it owns directly.
struct Group<T: Element> {
    path: String,
    /// `(local name, id, value)` of `weight`, or of the first parameter when there is no
    /// `weight`.
    main: (Local, ParamId, Tensor<T>),
    bias: Option<(ParamId, Tensor<T>)>,
}

/// A parameter's local name, as far as grouping cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Local {
    Weight,
    Bias,
    Other,
}

impl Local {
    fn of(name: &str) -> Local {
        match name {
            "weight" => Local::Weight,
            "bias" => Local::Bias,
            _ => Local::Other,
        }
    }
}

/// Parameters grouped by module path, in visiting order. A visitor of its own rather than
/// `named_parameters`: it keeps each parameter's id (gradients are looked up by id, not by
/// formatted name) and reads one path string per module instead of one name per parameter.
fn param_groups<T: Element, M: Module<T> + ?Sized>(model: &M) -> Vec<Group<T>> {
    struct Grouper<T: Element> {
        path: DottedPath,
        groups: Vec<Group<T>>,
        /// Path → index in `groups`, for a module whose parameters are not visited together.
        index: FastIdMap<String, usize>,
    }
    impl<T: Element> Visitor<T> for Grouper<T> {
        fn enter(&mut self, name: &str) {
            self.path.enter(name);
        }
        fn exit(&mut self) {
            self.path.exit();
        }
        fn param(&mut self, local: &str, p: &Param<T>) {
            let local = Local::of(local);
            let value = p.value().clone();
            let path = self.path.as_str();
            // A module's parameters are visited together, so the group is nearly always the
            // last one.
            let found = match self.groups.last() {
                Some(g) if g.path == path => Some(self.groups.len() - 1),
                _ => self.index.get(path).copied(),
            };
            match found {
                Some(i) => {
                    let g = &mut self.groups[i];
                    if local == Local::Weight && g.main.0 != Local::Weight {
                        g.main = (local, p.id(), value);
                    } else if local == Local::Bias {
                        g.bias = Some((p.id(), value));
                    }
                }
                None => {
                    self.index.insert(path.to_string(), self.groups.len());
                    self.groups.push(Group {
                        path: path.to_string(),
                        bias: (local == Local::Bias).then(|| (p.id(), value.clone())),
                        main: (local, p.id(), value),
                    });
                }
            }
        }
    }
    let mut v = Grouper {
        path: DottedPath::default(),
        groups: Vec::new(),
        index: FastIdMap::default(),
    };
    model.visit(&mut v);
    // A group whose only parameter is its bias keeps it as its main parameter, not twice.
    for g in &mut v.groups {
        if g.main.0 == Local::Bias {
            g.bias = None;
        }
    }
    v.groups
}

/// `"a.b.weight"` → `("a.b", "weight")`; a top-level `"weight"` → `("", "weight")`.
fn split_path(name: &str) -> (&str, &str) {
    name.rsplit_once('.').unwrap_or(("", name))
}

/// What a layer hook sees of one layer, after the whole backward pass.
#[derive(Debug)]
pub struct LayerView<'a, T: Element> {
    /// The layer's dotted name.
    pub name: &'a str,
    /// The layer's forward output, when the layer labels it.
    pub output: Option<&'a Tensor<T>>,
    /// The complete gradient of the loss with respect to that output.
    pub output_grad: Option<&'a Tensor<T>>,
    /// `(dotted name, gradient)` of the parameters the layer owns directly.
    pub param_grads: Vec<(&'a str, &'a Tensor<T>)>,
}

/// Runs backward and calls `hook` once per layer, nearest the input first, with the layer's
/// forward output, the gradient with respect to it and the gradients of its parameters —
/// PyTorch's module backward hooks, for every layer at once. Returns the parameter gradients as
/// `ctx.param_grads(&loss.backward())` would.
///
/// A *layer* here is any labelled output (every `nn` layer labels its output with its dotted
/// name, activations included) and any module path owning parameters. The outputs and their
/// gradients are kept until backward ends (shared buffers, not copies), so the hook can see
/// everything about a layer together.
///
/// # Panics
/// If `loss` is not a scalar, as [`Var::backward`] does.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::backward_with_layer_hook;
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(1);
/// let mut net = Sequential::<f64>::new()
///     .push(Linear::new(3, 4, &mut rng)?)
///     .push(Activation::Tanh)
///     .push(Linear::new(4, 1, &mut rng)?);
/// let tape = Tape::new();
/// let mut ctx = Ctx::new(&tape);
/// let loss = net.forward(&mut ctx, tape.constant(Tensor::ones(&[5, 3]))).square().mean();
/// let mut seen = Vec::new();
/// backward_with_layer_hook(&ctx, loss, |layer| {
///     seen.push((layer.name.to_string(), layer.param_grads.len(), layer.output_grad.is_some()));
/// });
/// assert_eq!(seen, [("0".into(), 2, true), ("1".into(), 0, true), ("2".into(), 2, true)]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn backward_with_layer_hook<'t, T: Element>(
    ctx: &Ctx<'t, T>,
    loss: Var<'t, T>,
    mut hook: impl FnMut(&LayerView<'_, T>),
) -> ParamGrads<T> {
    type Seen<T> = Rc<RefCell<HashMap<String, (Tensor<T>, Tensor<T>)>>>;
    let tape = ctx.tape();
    let seen: Seen<T> = Rc::default();
    let sink = seen.clone();
    let handle = tape.on_labelled_grad(move |label, value, grad| {
        // A layer run twice keeps its last call (backward reaches it first).
        sink.borrow_mut()
            .entry(label.to_string())
            .or_insert_with(|| (value.clone(), grad.clone()));
    });
    let grads = loss.backward();
    tape.remove_hook(handle);
    let param_grads = ctx.param_grads(&grads);

    // Order layers by where they start on the tape: a layer's parameters are bound (as leaves)
    // when it first runs, and its output is labelled when it ends.
    let mut start: HashMap<String, usize> = HashMap::new();
    for (id, label, _) in tape.labelled_nodes::<()>() {
        start.entry(label.to_string()).or_insert(id);
    }
    for (name, _, var) in ctx.bound() {
        let path = split_path(&name).0.to_string();
        let e = start.entry(path).or_insert(var.id());
        *e = (*e).min(var.id());
    }
    let mut order: Vec<(usize, String)> = start.into_iter().map(|(k, v)| (v, k)).collect();
    order.sort();
    let named = param_grads.named();
    let seen = seen.borrow();
    for (_, name) in &order {
        let captured = seen.get(name);
        let view = LayerView {
            name,
            output: captured.map(|c| &c.0),
            output_grad: captured.map(|c| &c.1),
            param_grads: named
                .iter()
                .filter(|(n, _)| split_path(n).0 == name)
                .map(|(n, g)| (*n, *g))
                .collect(),
        };
        hook(&view);
    }
    drop(seen);
    param_grads
}
