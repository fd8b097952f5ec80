//! Optimisers: [`Sgd`], [`Adam`], [`AdamW`] and [`RMSprop`], behind one [`Optimizer`] trait.
//!
//! Each follows PyTorch's single-tensor (`foreach=False`) implementation step for step, so a
//! model trained here and one trained in PyTorch from the same weights stay together to
//! rounding (the golden tests in `tests/golden_optim.rs` check three steps of every variant).
//!
//! * State (momentum buffers, moment estimates, step counts) is keyed by [`ParamId`], so one
//!   optimiser serves any module whose parameters it is shown, and a parameter keeps its
//!   state when a checkpoint is loaded into it.
//! * A parameter without a gradient in the [`ParamGrads`] is skipped entirely (its state does
//!   not advance), like PyTorch skipping a parameter whose `grad is None`. Gradients for
//!   parameters the model does not have are ignored, so one backward pass can feed two
//!   optimisers (a generator's and a discriminator's).
//! * Hyperparameters are `f64`; they are rounded to the element type once per step, and the
//!   element-wise maths then runs in `T`, as PyTorch's does in the parameter's dtype.
//! * [`Optimizer::backward_step`] runs backward and the step in one sweep, updating each
//!   parameter as soon as its gradient is complete: the same values, less memory traffic (the
//!   f64 training steps of the benchmarks 3-5% faster) and no set of gradients held at once.
//! * A step overwrites each parameter where it lies when nothing else shares its buffer (a
//!   training loop that dropped its tape, or `backward_step`), and a copy otherwise; either way one vectorised pass
//!   per buffer, with no per-element dynamic dispatch. With [`Optimizer::track_updates`] on, a
//!   step also records ‖Δθ‖ and ‖θ‖ per parameter (it then updates a copy, to keep the old
//!   value, and takes one extra pass over each buffer); off, it costs nothing.
//!
//! * [`ParamGroup`]s give some parameters (chosen by name) another learning rate or weight
//!   decay: PyTorch's parameter groups, for the two hyperparameters they are mostly used for.
//!   A group with its own rate ([`ParamGroup::lr`]) is scheduled as PyTorch schedules a
//!   parameter group (from its own base rate, down to the schedule's own floor); one with a
//!   multiple ([`ParamGroup::lr_scale`]) follows the optimiser's rate.
//!
//! Not implemented: AMSGrad, `maximize`, groups that change other hyperparameters (momentum,
//! betas, eps).

use super::module::{Ctx, DottedPath, Module, Param, ParamGrads, ParamId, Visitor, VisitorMut};
use crate::error::{Error, Result};
use crate::tape::{FastIdMap, Var};
use crate::tensor::simd::dispatch;
use crate::tensor::{norm_l2_f64, Element, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A gradient-descent optimiser over a [`Module`]'s parameters.
///
/// The trait is object safe, so a training loop can hold a `Box<dyn Optimizer<T>>` chosen at
/// run time.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{Adam, AdamConfig, Ctx, Linear, Module, Optimizer};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut model = Linear::<f64>::new(2, 1, &mut rng)?;
/// let mut opt: Box<dyn Optimizer<f64>> =
///     Box::new(Adam::new(AdamConfig { lr: 0.05, ..Default::default() })?);
/// let x = Tensor::from_vec(vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[3, 2])?;
/// let y = Tensor::from_vec(vec![1.0, -1.0, 0.5], &[3, 1])?;
/// let mut losses = Vec::new();
/// for _ in 0..50 {
///     let tape = Tape::new();
///     let mut ctx = Ctx::new(&tape);
///     let pred = model.forward(&mut ctx, tape.constant(x.clone()));
///     let loss = (pred - tape.constant(y.clone())).square().mean();
///     losses.push(loss.value().item());
///     let grads = ctx.param_grads(&loss.backward());
///     opt.step(&mut model, &grads)?;
/// }
/// assert!(losses[49] < 0.1 * losses[0]);
/// # Ok::<(), vgrad::Error>(())
/// ```
pub trait Optimizer<T: Element>: Send {
    /// Updates every parameter of `model` that has a gradient in `grads`.
    ///
    /// # Errors
    /// [`Error::Shape`] if a gradient's shape differs from its parameter's. Shapes are checked
    /// before anything is written, so on error the model and the optimiser state are unchanged.
    fn step(&mut self, model: &mut dyn Module<T>, grads: &ParamGrads<T>) -> Result<()>;

    /// Backward from `loss` and the update of `model`'s parameters bound in `ctx`, in one sweep:
    /// each parameter is updated as soon as its gradient is complete, and the gradient is then
    /// dropped. The parameters end up as after
    /// `self.step(model, &ctx.param_grads(&loss.backward()))`, to the bit, but the update runs
    /// while the gradient and the weight are still in cache, and the gradients are never all
    /// held at once (PyTorch's "optimizer step in backward", done there with
    /// `register_post_accumulate_grad_hook`).
    ///
    /// What it gives up: the gradients are not returned, so whatever needs all of them first
    /// (clipping by the total norm, a gradient report) needs the two calls instead. Parameters
    /// bound in `ctx` that `model` does not have get no update. With
    /// [`track_updates`](Optimizer::track_updates) on, [`last_updates`](Optimizer::last_updates)
    /// lists the parameters in the order they were updated (last layer first). The tape's
    /// leaves for the parameters hold their updated values afterwards.
    ///
    /// The default runs those two calls; every optimiser in this module fuses them.
    ///
    /// # Errors
    /// As [`step`](Optimizer::step); the fused optimisers here return no error (a gradient
    /// from the tape always has its leaf's shape).
    ///
    /// # Panics
    /// If `loss` holds more than one element.
    ///
    /// # Example
    /// ```
    /// use rand::{SeedableRng, rngs::StdRng};
    /// use vgrad::nn::{Ctx, Linear, Module, Optimizer, Sgd, SgdConfig};
    /// use vgrad::{Tape, Tensor};
    ///
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let mut model = Linear::<f64>::new(2, 1, &mut rng)?;
    /// let mut opt = Sgd::new(SgdConfig { lr: 0.1, ..Default::default() })?;
    /// let x = Tensor::from_vec(vec![0.0, 1.0, 1.0, 0.0], &[2, 2])?;
    /// let y = Tensor::from_vec(vec![1.0, -1.0], &[2, 1])?;
    /// let mut losses = Vec::new();
    /// for _ in 0..100 {
    ///     let tape = Tape::new();
    ///     let ctx = &mut Ctx::new(&tape);
    ///     let loss = (model.forward(ctx, tape.constant(x.clone())) - tape.constant(y.clone()))
    ///         .square()
    ///         .mean();
    ///     losses.push(loss.value().item());
    ///     opt.backward_step(&mut model, ctx, loss)?;
    /// }
    /// assert!(losses[99] < 1e-3 * losses[0]);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[track_caller]
    fn backward_step<'t>(
        &mut self,
        model: &mut dyn Module<T>,
        ctx: &Ctx<'t, T>,
        loss: Var<'t, T>,
    ) -> Result<()> {
        loss.tape().check_not_consumed("backward_step")?;
        let grads = ctx.param_grads(&loss.backward());
        self.step(model, &grads)
    }

    /// The current learning rate: the optimiser's own, for every parameter that no
    /// [`ParamGroup`] with its own rate claims (see [`group_lrs`](Optimizer::group_lrs)).
    fn lr(&self) -> f64;

    /// Sets the learning rate used from the next step on (the optimiser's own: see
    /// [`lr`](Optimizer::lr)). Parameter groups with their own rate keep theirs; set those with
    /// [`set_group_lrs`](Optimizer::set_group_lrs), as the schedulers do.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr` is negative or not finite; the old rate is kept.
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// Every learning rate a schedule drives, as PyTorch's
    /// `[g["lr"] for g in opt.param_groups]`: first the optimiser's own
    /// ([`lr`](Optimizer::lr)), then the current rate of each [`ParamGroup`] built with
    /// [`ParamGroup::lr`], in the order the groups were added. Groups without a rate of their
    /// own (a multiple, [`ParamGroup::lr_scale`], or none) are not listed: their rate follows
    /// the first.
    ///
    /// The default, for optimisers without groups, is `vec![self.lr()]`.
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{AdamW, AdamWConfig, Optimizer, ParamGroup};
    /// let biases = ParamGroup::matching(|n| n.ends_with("bias")).lr(0.03);
    /// let no_decay = ParamGroup::matching(|n| n.contains("norm")).weight_decay(0.0);
    /// let mut opt = AdamW::<f32>::new(AdamWConfig { lr: 0.01, ..Default::default() })?
    ///     .with_group(biases)?
    ///     .with_group(no_decay)?;
    /// assert_eq!(opt.group_lrs(), [0.01, 0.03]);
    /// opt.set_group_lrs(&[0.005, 0.02])?;
    /// assert_eq!(opt.lr(), 0.005);
    /// assert!(opt.set_group_lrs(&[0.005]).is_err()); // one rate for two
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    fn group_lrs(&self) -> Vec<f64> {
        vec![self.lr()]
    }

    /// Sets the rates [`group_lrs`](Optimizer::group_lrs) lists, in its order; an
    /// [`LrScheduler`](crate::nn::LrScheduler) or
    /// [`ReduceLROnPlateau`](crate::nn::ReduceLROnPlateau) calls this at each step.
    ///
    /// The default, for optimisers without groups, takes exactly one rate and calls
    /// [`set_lr`](Optimizer::set_lr).
    ///
    /// # Errors
    /// [`Error::Config`] if `lrs` does not hold one rate per entry of `group_lrs`, or one of
    /// them is negative or not finite; then no rate changes.
    fn set_group_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        match lrs {
            [lr] => self.set_lr(*lr),
            _ => Err(lr_count_error(1, lrs.len())),
        }
    }

    /// Turns recording of per-parameter update statistics on or off (off by default).
    fn track_updates(&mut self, on: bool);

    /// Per-parameter statistics of the last step, in the model's visiting order; empty unless
    /// [`track_updates`](Optimizer::track_updates) is on.
    fn last_updates(&self) -> &[UpdateStat];

    /// Everything the optimiser carries from step to step, named after `model`'s parameters:
    /// its hyperparameters (with the current learning rate, and the current rate of each
    /// [`ParamGroup`] with its own as `group<k>.lr`, `k` counting from 1 as in
    /// [`group_lrs`](Optimizer::group_lrs)) and each parameter's buffers and step count.
    /// PyTorch's `optimizer.state_dict()`, keyed by parameter name instead of position;
    /// [`save_optimizer`](crate::nn::save_optimizer) writes it to a file.
    ///
    /// State held for parameters `model` does not have is left out.
    ///
    /// # Errors
    /// [`Error::Config`] from the default, for optimisers that do not implement it (every one
    /// in this module does); [`Error::Format`] if two of `model`'s parameters share a name;
    /// [`Error::Shape`] if a parameter's shape changed since its state was made.
    fn state_dict(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
        let _ = model;
        Err(Error::Config(
            "this optimiser does not implement state_dict".into(),
        ))
    }

    /// Replaces the optimiser's hyperparameters (its groups' current rates included) and
    /// per-parameter state with `state`, mapped onto `model`'s parameters by name: training
    /// then continues exactly as it would have from where `state` was taken (PyTorch's
    /// `load_state_dict`, which also restores the hyperparameters). A parameter without state
    /// in `state` starts fresh, as one the optimiser has not yet stepped.
    ///
    /// # Errors
    /// [`Error::Format`] if `state` comes from another kind of optimiser, names a hyperparameter,
    /// parameter or buffer that does not belong, lacks one that does (a `group<k>.lr` for each
    /// group with its own rate the optimiser was built with, and no more), or holds a buffer
    /// whose shape differs from its parameter's; [`Error::Config`] if its hyperparameters are
    /// invalid (as for the constructor, a group's rate included) or the optimiser does not
    /// implement loading (the default). On error the optimiser is unchanged.
    fn load_state_dict(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
        let _ = (model, state);
        Err(Error::Config(
            "this optimiser does not implement load_state_dict".into(),
        ))
    }
}

/// An optimiser's state in a form that can be saved and loaded: see
/// [`Optimizer::state_dict`], and [`save_optimizer`](crate::nn::save_optimizer) for the file.
///
/// Names follow PyTorch's: the optimiser's class name, its hyperparameters (except that
/// Adam's `betas` pair is stored as `beta1` and `beta2`), and its buffers (`momentum_buffer`,
/// `exp_avg`, `exp_avg_sq`, `square_avg`, `grad_avg`), each stored under
/// `<parameter>.<buffer>` (for example `0.weight.exp_avg`) with its parameter's shape.
#[derive(Clone, Debug)]
pub struct OptimizerState<T: Element> {
    /// The optimiser that wrote it: `SGD`, `Adam`, `AdamW` or `RMSprop`.
    pub kind: String,
    /// Hyperparameters by name (`lr`, `momentum`, `beta1`, `beta2`, …); switches
    /// (`nesterov`, `centered`) as 0 or 1; `group1.lr`, `group2.lr`, … the current rates of
    /// the parameter groups with their own ([`Optimizer::group_lrs`] after the first).
    pub hyper: BTreeMap<String, f64>,
    /// Per-parameter buffers under `<parameter>.<buffer>`.
    pub buffers: BTreeMap<String, Tensor<T>>,
    /// Per-parameter step counts by parameter name (Adam and AdamW, whose bias correction
    /// depends on them).
    pub steps: BTreeMap<String, u64>,
}

/// What one step did to one parameter: the update-to-weight ratio ‖Δθ‖/‖θ‖ a gradient
/// monitor watches (around 1e-3 is the usual healthy range).
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateStat {
    /// The parameter's dotted name, as in [`Module::named_parameters`].
    pub name: String,
    /// The parameter's identity.
    pub id: ParamId,
    /// ‖θ_new − θ_old‖₂, accumulated in `f64`.
    pub update_norm: f64,
    /// ‖θ_old‖₂ (before the step), accumulated in `f64`.
    pub param_norm: f64,
}

impl UpdateStat {
    /// ‖Δθ‖/‖θ‖: `+∞` for a moved all-zero parameter, NaN for an unmoved one.
    pub fn ratio(&self) -> f64 {
        self.update_norm / self.param_norm
    }
}

// ---------------------------------------------------------------------------------------------
// Shared machinery: validation, the shape pre-check, and the visitor that applies an update.

/// The error for a list of learning rates that does not fit the optimiser's groups.
fn lr_count_error(expected: usize, got: usize) -> Error {
    Error::Config(format!(
        "the optimiser has {expected} learning rate(s) (its own, then one per parameter group \
         with its own rate), got {got}"
    ))
}

fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "learning rate must be finite and >= 0, got {lr}"
        )))
    }
}

/// `Ok` when `x` is finite and ≥ 0 (NaN fails too).
fn check_nonneg(what: &str, x: f64) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{what} must be finite and >= 0, got {x}"
        )))
    }
}

fn check_beta(what: &str, x: f64) -> Result<()> {
    if (0.0..1.0).contains(&x) {
        Ok(())
    } else {
        Err(Error::Config(format!("{what} must be in [0, 1), got {x}")))
    }
}

/// The [`Optimizer`] methods every optimiser implements the same way, given the paths (from
/// `self`) of its learning rate and its [`Tracker`]: the steps run the rule its `parts` method
/// returns through [`apply`] or [`apply_in_backward`].
macro_rules! shared_optimizer_methods {
    (lr: $($lr:tt).+, tracker: $($tr:tt).+, groups: $($gr:tt).+) => {
        fn step(&mut self, model: &mut dyn Module<T>, grads: &ParamGrads<T>) -> Result<()> {
            let (tracker, groups, rule) = self.parts();
            apply(model, grads, tracker, groups, rule)
        }
        #[track_caller]
        fn backward_step<'t>(
            &mut self,
            model: &mut dyn Module<T>,
            ctx: &Ctx<'t, T>,
            loss: Var<'t, T>,
        ) -> Result<()> {
            // Checked before `parts`, which may count a step: a refused call changes nothing.
            loss.tape().check_not_consumed("backward_step")?;
            let (tracker, groups, rule) = self.parts();
            apply_in_backward(model, ctx, loss, tracker, groups, rule)
        }
        fn lr(&self) -> f64 {
            self.$($lr).+
        }
        fn set_lr(&mut self, lr: f64) -> Result<()> {
            check_lr(lr)?;
            self.$($lr).+ = lr;
            Ok(())
        }
        fn group_lrs(&self) -> Vec<f64> {
            std::iter::once(self.$($lr).+)
                .chain(self.$($gr).+.own_lrs())
                .collect()
        }
        fn set_group_lrs(&mut self, lrs: &[f64]) -> Result<()> {
            let n = 1 + self.$($gr).+.own_lrs().count();
            if lrs.len() != n {
                return Err(lr_count_error(n, lrs.len()));
            }
            for &lr in lrs {
                check_lr(lr)?;
            }
            self.$($lr).+ = lrs[0];
            self.$($gr).+.set_own_lrs(&lrs[1..]);
            Ok(())
        }
        fn track_updates(&mut self, on: bool) {
            self.$($tr).+.on = on;
            self.$($tr).+.stats.clear();
        }
        fn last_updates(&self) -> &[UpdateStat] {
            &self.$($tr).+.stats
        }
        fn state_dict(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
            self.export_state(model)
        }
        fn load_state_dict(
            &mut self,
            model: &dyn Module<T>,
            state: &OptimizerState<T>,
        ) -> Result<()> {
            self.import_state(model, state)
        }
    };
}

/// An optimiser's update of one parameter: given its id, its group's changes to the
/// hyperparameters and its gradient, overwrite θ with the new value and update the state.
trait Rule<T>: FnMut(ParamId, GroupHyper, &mut [T], &[T]) {}

impl<T, F: FnMut(ParamId, GroupHyper, &mut [T], &[T])> Rule<T> for F {}

/// What an optimiser's `parts` returns: where a step records its statistics, the parameter
/// groups, and the update rule (see [`apply`]) at the current hyperparameters.
type Parts<'a, F> = (&'a mut Tracker, &'a Groups, F);

/// Update statistics, recorded only when switched on.
#[derive(Debug, Default)]
struct Tracker {
    on: bool,
    stats: Vec<UpdateStat>,
}

/// Hyperparameters that differ for some of the parameters: PyTorch's parameter groups, chosen
/// by dotted parameter name. Add them with each optimiser's `with_group`; the first group whose
/// `matches` accepts a parameter's name applies to it, the optimiser's own hyperparameters to
/// every other parameter.
///
/// The usual use is AdamW without weight decay on biases and normalisation weights, or a
/// smaller learning rate for the pretrained layers of a model being fine-tuned.
///
/// A group's learning rate is one of two kinds:
///
/// * Its own, [`lr`](ParamGroup::lr): PyTorch's `{"params": …, "lr": 0.03}`. The group's rate
///   is state of the optimiser, listed by [`Optimizer::group_lrs`] and saved by
///   [`Optimizer::state_dict`]. A schedule drives it from its own base rate, as PyTorch's
///   drives each group from its `initial_lr`: an [`LrScheduler`](crate::nn::LrScheduler) sets it
///   to `schedule(group base, t)`, so a cosine with `eta_min` takes every group to the same
///   `eta_min`, and a [`ReduceLROnPlateau`](crate::nn::ReduceLROnPlateau) multiplies it by its
///   factor and floors it at the group's `min_lr`. Use this to port a PyTorch recipe.
/// * A multiple of the optimiser's rate, [`lr_scale`](ParamGroup::lr_scale): at every step
///   the group's rate is `m ·` [`Optimizer::lr`], whatever set that rate (`set_lr`, a
///   schedule, a plateau). A multiplicative schedule (step, exponential, warm-up, a cosine
///   to 0) then gives the same rates as a group with its own rate `m ·` base; a schedule with
///   a floor does not: a cosine to `eta_min` takes this group to `m · eta_min`, and a
///   plateau's `min_lr` bounds the optimiser's rate, so this group's bottoms out at
///   `m · min_lr`. Unlike a PyTorch group, `lr_scale(0.0)` stays frozen under such a schedule.
///
/// A group that sets neither follows the optimiser's rate (a multiple of 1), which under
/// every schedule is the rate a PyTorch group with the optimiser's base rate gets.
///
/// A parameter's group is looked up by its name at each step, so it follows the model's
/// current structure (a model wrapped in another container between steps gets new names).
///
/// The groups themselves are code, not state: [`Optimizer::state_dict`] saves the optimiser's
/// own hyperparameters and the current rate of each group with its own, and a loaded
/// optimiser keeps the groups it was built with (it must have been built with as many groups
/// with their own rate).
///
/// # Example
/// ```
/// use vgrad::nn::{AdamW, AdamWConfig, Optimizer, ParamGroup};
/// let no_decay = ParamGroup::matching(|name| name.ends_with("bias")).weight_decay(0.0);
/// let head = ParamGroup::matching(|name| name.starts_with("head.")).lr(3e-3);
/// let opt = AdamW::<f32>::new(AdamWConfig::default())?
///     .with_group(no_decay)?
///     .with_group(head)?;
/// assert_eq!(opt.group_lrs(), [1e-3, 3e-3]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone)]
pub struct ParamGroup {
    matches: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
    hyper: GroupHyper,
}

impl ParamGroup {
    /// The parameters whose dotted name (`0.weight`, `blocks.3.bn.bias`) `matches` accepts,
    /// with the optimiser's hyperparameters until changed below.
    pub fn matching(matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        ParamGroup {
            matches: std::sync::Arc::new(matches),
            hyper: GroupHyper::default(),
        }
    }

    /// Their learning rate is `lr`, the group's own: its base rate for a schedule, which then
    /// drives it as PyTorch drives a parameter group's (see [`ParamGroup`]). Replaces an
    /// earlier [`lr_scale`](Self::lr_scale).
    pub fn lr(mut self, lr: f64) -> Self {
        self.hyper.lr = GroupLr::Own(lr);
        self
    }

    /// Their learning rate is the optimiser's current rate times `scale` (default 1), at every
    /// step: under a schedule with a floor it bottoms out at `scale ·` the floor (see
    /// [`ParamGroup`]). Replaces an earlier [`lr`](Self::lr).
    pub fn lr_scale(mut self, scale: f64) -> Self {
        self.hyper.lr = GroupLr::Scale(scale);
        self
    }

    /// Their weight decay is `weight_decay` instead of the optimiser's (L2 for SGD, Adam and
    /// RMSprop, decoupled for AdamW).
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.hyper.weight_decay = Some(weight_decay);
        self
    }
}

impl fmt::Debug for ParamGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ParamGroup");
        match self.hyper.lr {
            GroupLr::Scale(m) => d.field("lr_scale", &m),
            GroupLr::Own(lr) => d.field("lr", &lr),
        };
        d.field("weight_decay", &self.hyper.weight_decay)
            .finish_non_exhaustive()
    }
}

/// A group's learning rate: a multiple of the optimiser's, or its own (its current value,
/// which the schedulers set through [`Optimizer::set_group_lrs`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum GroupLr {
    Scale(f64),
    Own(f64),
}

/// What a group changes for one parameter; the default changes nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
struct GroupHyper {
    lr: GroupLr,
    weight_decay: Option<f64>,
}

impl Default for GroupHyper {
    fn default() -> Self {
        GroupHyper {
            lr: GroupLr::Scale(1.0),
            weight_decay: None,
        }
    }
}

impl GroupHyper {
    /// The learning rate and weight decay for a parameter, from the optimiser's own.
    fn apply(self, lr: f64, weight_decay: f64) -> (f64, f64) {
        let lr = match self.lr {
            GroupLr::Scale(m) => lr * m,
            GroupLr::Own(own) => own,
        };
        (lr, self.weight_decay.unwrap_or(weight_decay))
    }
}

/// An optimiser's parameter groups. A parameter's group is looked up by its name at every
/// step (a few string comparisons per parameter, and only when there are groups), so a model
/// rebuilt or wrapped between steps, whose names change, gets the groups its names now match.
#[derive(Debug, Default)]
struct Groups {
    list: Vec<ParamGroup>,
}

impl Groups {
    fn add(&mut self, group: ParamGroup) -> Result<()> {
        match group.hyper.lr {
            GroupLr::Scale(m) => check_nonneg("parameter group lr_scale", m)?,
            GroupLr::Own(lr) => check_nonneg("parameter group lr", lr)?,
        }
        if let Some(wd) = group.hyper.weight_decay {
            check_nonneg("parameter group weight_decay", wd)?;
        }
        self.list.push(group);
        Ok(())
    }

    /// Whether any parameter can differ (then the step needs the parameters' names).
    fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// The hyperparameter changes for the parameter named `name`: the first matching group's.
    fn of(&self, name: &str) -> GroupHyper {
        self.list
            .iter()
            .find(|g| (g.matches)(name))
            .map_or_else(GroupHyper::default, |g| g.hyper)
    }

    /// The current rates of the groups with their own, in the order added.
    fn own_lrs(&self) -> impl Iterator<Item = f64> + '_ {
        self.list.iter().filter_map(|g| match g.hyper.lr {
            GroupLr::Own(lr) => Some(lr),
            GroupLr::Scale(_) => None,
        })
    }

    /// Sets the rates [`own_lrs`](Self::own_lrs) lists; `lrs` has been checked (one valid rate
    /// per such group).
    fn set_own_lrs(&mut self, lrs: &[f64]) {
        let own = self.list.iter_mut().filter_map(|g| match &mut g.hyper.lr {
            GroupLr::Own(lr) => Some(lr),
            GroupLr::Scale(_) => None,
        });
        for (slot, &lr) in own.zip(lrs) {
            *slot = lr;
        }
    }
}

/// Finds the first gradient whose shape differs from its parameter's.
struct ShapeCheck<'a, T: Element> {
    grads: &'a ParamGrads<T>,
    path: DottedPath,
    error: Option<Error>,
}

impl<T: Element> Visitor<T> for ShapeCheck<'_, T> {
    fn enter(&mut self, name: &str) {
        self.path.enter(name);
    }
    fn exit(&mut self) {
        self.path.exit();
    }
    fn param(&mut self, name: &str, p: &Param<T>) {
        if self.error.is_some() {
            return;
        }
        if let Some(g) = self.grads.get_id(p.id()) {
            if g.shape() != p.value().shape() {
                self.error = Some(Error::Shape(format!(
                    "optimiser step: gradient of shape {:?} for parameter `{}` of shape {:?}",
                    g.shape(),
                    self.path.full(name),
                    p.value().shape()
                )));
            }
        }
    }
}

/// Applies `update(id, θ, g)` to every parameter with a gradient: `update` overwrites θ with its
/// new value and updates the optimiser's state for `id`. A parameter whose buffer nothing else
/// shares (its tape already dropped) is updated where it lies: one memory stream fewer than
/// writing a new buffer, and nothing allocated. A shared buffer, or a step that records
/// statistics for the monitor (they need the old value), updates a copy instead; the arithmetic
/// is the same either way.
struct Apply<'a, T: Element, F> {
    grads: &'a ParamGrads<T>,
    update: F,
    tracker: &'a mut Tracker,
    groups: &'a Groups,
    path: DottedPath,
}

impl<T: Element, F: FnMut(ParamId, GroupHyper, &mut [T], &[T])> VisitorMut<T> for Apply<'_, T, F> {
    fn enter(&mut self, name: &str) {
        // Names are only needed for the statistics and the parameter groups.
        if self.tracker.on || self.groups.any() {
            self.path.enter(name);
        }
    }
    fn exit(&mut self) {
        if self.tracker.on || self.groups.any() {
            self.path.exit();
        }
    }
    fn param(&mut self, name: &str, p: &mut Param<T>) {
        let Some(g) = self.grads.get_id(p.id()) else {
            return;
        };
        let path = &self.path;
        let hyper = if self.groups.any() {
            self.groups.of(&path.full(name))
        } else {
            GroupHyper::default()
        };
        update_tensor(
            p.id(),
            hyper,
            p.value_mut(),
            g.data(),
            || path.full(name),
            self.tracker,
            &mut self.update,
        );
    }
}

/// Updates one parameter's value `theta` with `update` (see [`Apply`]): where it lies when its
/// buffer is not shared and no statistics are recorded, else into a copy that replaces it.
/// `name` is called only for the statistics.
fn update_tensor<T: Element>(
    id: ParamId,
    hyper: GroupHyper,
    theta: &mut Tensor<T>,
    g: &[T],
    name: impl FnOnce() -> String,
    tracker: &mut Tracker,
    update: &mut impl FnMut(ParamId, GroupHyper, &mut [T], &[T]),
) {
    if !tracker.on {
        if let Some(data) = theta.data_mut() {
            update(id, hyper, data, g);
            return;
        }
    }
    let old = &*theta;
    let mut new = crate::tensor::pool::with_capacity(old.numel());
    new.extend_from_slice(old.data());
    update(id, hyper, &mut new, g);
    if tracker.on {
        let to64 = |x: &T| x.to_f64().unwrap_or(f64::NAN);
        let delta = old.data().iter().zip(&new).map(|(a, b)| to64(b) - to64(a));
        tracker.stats.push(UpdateStat {
            name: name(),
            id,
            update_norm: norm_l2_f64(delta),
            param_norm: old.norm_l2(),
        });
    }
    let shape = old.shape().into();
    *theta = Tensor::from_parts(new, shape);
}

/// The step every optimiser shares: check shapes (so an error leaves everything untouched),
/// then apply `update` parameter by parameter (see [`Apply`]). The rules run their loops inside
/// [`dispatch`](crate::tensor::simd::dispatch) over slices: written with per-element `push`
/// outside it, momentum SGD and Adam ran scalar, 27x and 48x plain SGD's time.
fn apply<T: Element>(
    model: &mut dyn Module<T>,
    grads: &ParamGrads<T>,
    tracker: &mut Tracker,
    groups: &Groups,
    update: impl FnMut(ParamId, GroupHyper, &mut [T], &[T]),
) -> Result<()> {
    let mut check = ShapeCheck {
        grads,
        path: DottedPath::default(),
        error: None,
    };
    model.visit(&mut check);
    if let Some(e) = check.error {
        return Err(e);
    }
    tracker.stats.clear();
    model.visit_mut(&mut Apply {
        grads,
        update,
        tracker,
        groups,
        path: DottedPath::default(),
    });
    Ok(())
}

/// The fused step behind [`Optimizer::backward_step`]: backward from `loss`, applying `update`
/// to each parameter of `model` bound in `ctx` as soon as the sweep completes its gradient.
///
/// While the sweep runs, the parameters' values are held here (the model keeps empty
/// placeholders, restored by [`Held`]'s `drop` even if a rule or hook panics) and the tape hands
/// over its reference to each leaf's value before the update: the parameter's buffer is then
/// not shared, and the rule updates it where it lies. The tape's leaf gets the updated value
/// back, as a PyTorch parameter shows its new value after `step()`.
#[track_caller]
fn apply_in_backward<'t, T: Element>(
    model: &mut dyn Module<T>,
    ctx: &Ctx<'t, T>,
    loss: Var<'t, T>,
    tracker: &mut Tracker,
    groups: &Groups,
    mut update: impl FnMut(ParamId, GroupHyper, &mut [T], &[T]),
) -> Result<()> {
    tracker.stats.clear();
    let leaves: FastIdMap<usize, ParamId> =
        ctx.leaves().map(|(leaf, (id, _))| (leaf, id)).collect();
    // The names `step` would see: the model's own paths, not the ones the forward pass was
    // recorded under (`Ctx::scoped` may have prefixed those).
    let names_needed = tracker.on || groups.any();
    let mut held = Held::take(model, leaves.values().copied(), names_needed);
    let swept = loss.backward_leaves(&mut |leaf, grad, value| {
        let Some(&id) = leaves.get(&leaf) else {
            return value;
        };
        let Some(Some(theta)) = held.values.get_mut(&id) else {
            // Bound in `ctx` but not a parameter of `model`: its gradient is dropped.
            return value;
        };
        drop(value);
        let name = held.names.get(&id).map_or("", String::as_str);
        update_tensor(
            id,
            groups.of(name),
            theta,
            grad.data(),
            || name.to_string(),
            tracker,
            &mut update,
        );
        theta.clone()
    });
    swept
}

/// Parameter values taken out of a model for [`apply_in_backward`], put back on drop.
struct Held<'m, T: Element> {
    model: &'m mut dyn Module<T>,
    /// `Some` for each parameter taken out, `None` for an id the model does not have.
    values: FastIdMap<ParamId, Option<Tensor<T>>>,
    /// Each taken parameter's dotted name in the model (as `step` sees it), when `names` was
    /// asked for.
    names: FastIdMap<ParamId, String>,
}

impl<'m, T: Element> Held<'m, T> {
    fn take(model: &'m mut dyn Module<T>, ids: impl Iterator<Item = ParamId>, names: bool) -> Self {
        let mut held = Held {
            model,
            values: ids.map(|id| (id, None)).collect(),
            names: FastIdMap::default(),
        };
        held.model.visit_mut(&mut Swap {
            values: &mut held.values,
            names: names.then_some(&mut held.names),
            path: DottedPath::default(),
            out: true,
        });
        held
    }
}

impl<T: Element> Drop for Held<'_, T> {
    fn drop(&mut self) {
        self.model.visit_mut(&mut Swap {
            values: &mut self.values,
            names: None,
            path: DottedPath::default(),
            out: false,
        });
    }
}

/// Moves the listed parameters' values out of a model (`out`, leaving empty placeholders) or
/// back into it.
struct Swap<'a, T: Element> {
    values: &'a mut FastIdMap<ParamId, Option<Tensor<T>>>,
    /// Where to record the dotted names of the parameters moved out, if anywhere.
    names: Option<&'a mut FastIdMap<ParamId, String>>,
    path: DottedPath,
    out: bool,
}

impl<T: Element> VisitorMut<T> for Swap<'_, T> {
    fn enter(&mut self, name: &str) {
        if self.names.is_some() {
            self.path.enter(name);
        }
    }
    fn exit(&mut self) {
        if self.names.is_some() {
            self.path.exit();
        }
    }
    fn param(&mut self, name: &str, p: &mut Param<T>) {
        let Some(slot) = self.values.get_mut(&p.id()) else {
            return;
        };
        if self.out {
            *slot = Some(std::mem::replace(p.value_mut(), Tensor::zeros(&[0])));
            if let Some(names) = &mut self.names {
                names.insert(p.id(), self.path.full(name));
            }
        } else if let Some(v) = slot.take() {
            *p.value_mut() = v;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Saving and loading state: the shared half of `state_dict` and `load_state_dict`.

/// One of `model`'s parameters as the state maps see it.
struct NamedParam {
    name: String,
    id: ParamId,
    shape: Vec<usize>,
}

/// `model`'s parameters in visiting order.
///
/// # Errors
/// [`Error::Format`] if two share a name (their state could not be told apart in a file).
fn named_params<T: Element>(model: &dyn Module<T>) -> Result<Vec<NamedParam>> {
    struct Collect(DottedPath, Vec<NamedParam>);
    impl<T: Element> Visitor<T> for Collect {
        fn enter(&mut self, name: &str) {
            self.0.enter(name);
        }
        fn exit(&mut self) {
            self.0.exit();
        }
        fn param(&mut self, name: &str, p: &Param<T>) {
            self.1.push(NamedParam {
                name: self.0.full(name),
                id: p.id(),
                shape: p.value().shape().to_vec(),
            });
        }
    }
    let mut c = Collect(DottedPath::default(), Vec::new());
    model.visit(&mut c);
    let mut seen = BTreeSet::new();
    for p in &c.1 {
        if !seen.insert(p.name.as_str()) {
            return Err(Error::Format(format!(
                "the model has two parameters named `{}`",
                p.name
            )));
        }
    }
    Ok(c.1)
}

/// The name under which the state keeps the current rate of the `k`-th group with its own
/// rate (`k` from 1, as in [`Optimizer::group_lrs`], whose entry 0 is `lr`).
fn group_lr_key(k: usize) -> String {
    format!("group{k}.lr")
}

/// Builds an [`OptimizerState`]: the hyperparameters, the current rate of each group with its
/// own (`group<k>.lr`, PyTorch keeping each `param_groups[k]["lr"]`), and what `of(id)` lists:
/// the buffers a parameter has under the optimiser's configuration and its step count, or
/// `None` when it has no state yet.
fn export_state<'s, T: Element>(
    kind: &str,
    hyper: &[(&str, f64)],
    groups: &Groups,
    model: &dyn Module<T>,
    of: impl Fn(ParamId) -> Option<(Vec<(&'static str, &'s [T])>, Option<u64>)>,
) -> Result<OptimizerState<T>> {
    let own = groups.own_lrs().enumerate();
    let mut state = OptimizerState {
        kind: kind.to_string(),
        hyper: hyper
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .chain(own.map(|(i, lr)| (group_lr_key(i + 1), lr)))
            .collect(),
        buffers: BTreeMap::new(),
        steps: BTreeMap::new(),
    };
    for p in named_params(model)? {
        let Some((buffers, step)) = of(p.id) else {
            continue;
        };
        for (buffer, data) in buffers {
            let t = Tensor::from_vec(data.to_vec(), &p.shape)?;
            state.buffers.insert(format!("{}.{buffer}", p.name), t);
        }
        if let Some(step) = step {
            state.steps.insert(p.name, step);
        }
    }
    Ok(state)
}

/// Each parameter's state read back from an [`OptimizerState`], with its name.
type ImportedParams<T> = FastIdMap<ParamId, (String, Imported<T>)>;

/// A parameter's state as read back from an [`OptimizerState`].
struct Imported<T> {
    buffers: BTreeMap<&'static str, Vec<T>>,
    step: Option<u64>,
}

impl<T> Imported<T> {
    /// The buffer's data, if the state has one of that name.
    fn take(&mut self, buffer: &str) -> Option<Vec<T>> {
        self.buffers.remove(buffer)
    }
}

/// What [`import_state`] reads back: the hyperparameters by name, each parameter's state,
/// and the current rates of the groups with their own (checked; for [`Groups::set_own_lrs`]).
type ImportedState<'s, T> = (Box<dyn Fn(&str) -> f64 + 's>, ImportedParams<T>, Vec<f64>);

/// Checks `state` against the optimiser (`kind`, the names of its hyperparameters and
/// buffers, its groups with their own rate) and `model`, and returns what it holds (see
/// [`ImportedState`]). Step counts are allowed only when `with_steps`.
fn import_state<'s, T: Element>(
    state: &'s OptimizerState<T>,
    kind: &str,
    hyper: &[&str],
    groups: &Groups,
    buffers: &[&'static str],
    with_steps: bool,
    model: &dyn Module<T>,
) -> Result<ImportedState<'s, T>> {
    let bad = |msg: String| Err(Error::Format(format!("{kind} state: {msg}")));
    if state.kind != kind {
        return bad(format!("written by {}, not {kind}", state.kind));
    }
    let group_keys: Vec<String> = (1..=groups.own_lrs().count()).map(group_lr_key).collect();
    let expected: BTreeSet<&str> = hyper
        .iter()
        .copied()
        .chain(group_keys.iter().map(String::as_str))
        .collect();
    let present: BTreeSet<&str> = state.hyper.keys().map(String::as_str).collect();
    if expected != present {
        return bad(format!(
            "hyperparameters {present:?}, expected {expected:?}"
        ));
    }
    let params = named_params(model)?;
    let by_name: BTreeMap<&str, &NamedParam> =
        params.iter().map(|p| (p.name.as_str(), p)).collect();
    // The state read so far for one parameter, created on first use.
    fn entry<'o, T>(out: &'o mut ImportedParams<T>, p: &NamedParam) -> &'o mut Imported<T> {
        let fresh = || {
            let empty = Imported {
                buffers: BTreeMap::new(),
                step: None,
            };
            (p.name.clone(), empty)
        };
        &mut out.entry(p.id).or_insert_with(fresh).1
    }
    let mut out: ImportedParams<T> = FastIdMap::default();
    for (key, t) in &state.buffers {
        // Parameter names have dots in them; buffer names do not.
        let found = key.rsplit_once('.').and_then(|(param, buffer)| {
            let buffer = *buffers.iter().find(|&&b| b == buffer)?;
            Some((by_name.get(param)?, buffer))
        });
        let Some((p, buffer)) = found else {
            return bad(format!(
                "`{key}` is not one of the model's parameters followed by one of {buffers:?}"
            ));
        };
        if t.shape() != p.shape.as_slice() {
            return bad(format!(
                "`{key}` has shape {:?}, its parameter {:?}",
                t.shape(),
                p.shape
            ));
        }
        entry(&mut out, p).buffers.insert(buffer, t.to_vec());
    }
    for (name, &step) in &state.steps {
        let Some(p) = by_name.get(name.as_str()).filter(|_| with_steps) else {
            return bad(format!("unexpected step count for `{name}`"));
        };
        entry(&mut out, p).step = Some(step);
    }
    let group_lrs: Vec<f64> = group_keys.iter().map(|k| state.hyper[k]).collect();
    for &lr in &group_lrs {
        check_lr(lr)?;
    }
    let hyper = Box::new(|name: &str| state.hyper[name]);
    Ok((hyper, out, group_lrs))
}

/// A switch stored as a number: 0 or 1.
fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// A switch read back from a number, which must be 0 or 1.
fn switch(kind: &str, name: &str, x: f64) -> Result<bool> {
    match x {
        0.0 => Ok(false),
        1.0 => Ok(true),
        _ => Err(Error::Format(format!(
            "{kind} state: `{name}` must be 0 or 1, got {x}"
        ))),
    }
}

/// The error for a parameter whose buffers do not fit the optimiser's configuration.
fn incomplete<R>(kind: &str, param: &str, needs: &str) -> Result<R> {
    Err(Error::Format(format!(
        "{kind} state: `{param}` needs exactly {needs} with this configuration"
    )))
}

/// g + wd·θ when weight decay is on (L2 decay folded into the gradient), else g.
#[inline(always)]
fn decayed<T: Element>(p: T, g: T, wd: T, on: bool) -> T {
    if on {
        g + wd * p
    } else {
        g
    }
}

/// PyTorch's CPU `lerp(a, b, w)`: two formulas, each exact at its own end.
#[inline]
fn lerp<T: Element>(a: T, b: T, w: T, half: T) -> T {
    if w < half {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}

// ---------------------------------------------------------------------------------------------
// SGD

/// [`Sgd`]'s hyperparameters; `Default` is PyTorch's `torch.optim.SGD()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (default 1e-3, PyTorch's since 2.0).
    pub lr: f64,
    /// Momentum factor μ (default 0: plain SGD).
    pub momentum: f64,
    /// Dampening of the gradient's contribution to the momentum buffer (default 0).
    pub dampening: f64,
    /// Nesterov momentum (default false; needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay,
/// as PyTorch's `torch.optim.SGD`.
///
/// Update rule for each parameter θ with gradient g:
///
/// * g ← g + wd·θ (when `weight_decay` ≠ 0)
/// * with momentum μ ≠ 0: b ← g on the first step, then b ← μ·b + (1 − dampening)·g; and
///   g ← g + μ·b with Nesterov, g ← b without
/// * θ ← θ − lr·g
///
/// With the update monitor off, a parameter whose buffer nothing else shares is updated in place
/// (as by every optimiser here). That is the case when the training loop drops the step's tape
/// before calling [`Optimizer::step`], as PyTorch frees its graph in `backward()`, or calls
/// [`Optimizer::backward_step`]; otherwise the live tape holds each parameter's value, and the
/// update writes a new buffer. Same values either way.
///
/// # Example
/// ```
/// use vgrad::nn::{Optimizer, Sgd, SgdConfig};
/// let opt = Sgd::<f32>::new(SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() })?;
/// assert_eq!(opt.lr(), 0.1);
/// // Nesterov without momentum is rejected, as in PyTorch.
/// assert!(Sgd::<f32>::new(SgdConfig { nesterov: true, ..Default::default() }).is_err());
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct Sgd<T: Element> {
    cfg: SgdConfig,
    momentum_buffers: FastIdMap<ParamId, Vec<T>>,
    tracker: Tracker,
    groups: Groups,
}

impl<T: Element> Sgd<T> {
    /// An optimiser with the given hyperparameters.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr`, `momentum` or `weight_decay` is negative or not finite,
    /// `dampening` is not finite, or `nesterov` is set without `momentum > 0` and
    /// `dampening == 0`.
    pub fn new(cfg: SgdConfig) -> Result<Self> {
        check_lr(cfg.lr)?;
        check_nonneg("SGD momentum", cfg.momentum)?;
        check_nonneg("SGD weight_decay", cfg.weight_decay)?;
        if !cfg.dampening.is_finite() {
            return Err(Error::Config(format!(
                "SGD dampening must be finite, got {}",
                cfg.dampening
            )));
        }
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(Error::Config(
                "Nesterov momentum requires a momentum and zero dampening".into(),
            ));
        }
        Ok(Sgd {
            cfg,
            momentum_buffers: FastIdMap::default(),
            tracker: Tracker::default(),
            groups: Groups::default(),
        })
    }

    /// The hyperparameters (with the current learning rate).
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }

    /// Adds a [`ParamGroup`]: other hyperparameters for the parameters it matches.
    ///
    /// # Errors
    /// [`Error::Config`] if its `lr`, `lr_scale` or `weight_decay` is negative or not
    /// finite.
    pub fn with_group(mut self, group: ParamGroup) -> Result<Self> {
        self.groups.add(group)?;
        Ok(self)
    }
}

impl<T: Element> Sgd<T> {
    /// The statistics a step records into, and its rule (see [`apply`]) at the current
    /// hyperparameters.
    fn parts(&mut self) -> Parts<'_, impl Rule<T> + '_> {
        let c = self.cfg;
        let (mu, one_minus_damp, nesterov) =
            (T::of(c.momentum), T::of(1.0 - c.dampening), c.nesterov);
        let bufs = &mut self.momentum_buffers;
        let rule = move |id: ParamId, hyper: GroupHyper, theta: &mut [T], grad: &[T]| {
            // Every rule's loop runs in a `move` closure inside `dispatch`: the scalars it reads
            // (lr, μ, the weight-decay and Nesterov switches) are copied in. Captured by
            // reference, LLVM reloaded them from memory on every element, since the stores to θ
            // might change them, and the loop stayed scalar (SGD 7x slower). The switches are
            // loop-invariant and become vector selects.
            let (lr, wd) = hyper.apply(c.lr, c.weight_decay);
            let (lr, wd_t, decay_on) = (T::of(lr), T::of(wd), wd != 0.0);
            if c.momentum == 0.0 {
                // No state: large parameters are split over the matrix-product threads.
                crate::tensor::parallel::for_chunks(theta, &|s, t| {
                    let g = &grad[s..s + t.len()];
                    dispatch(
                        #[inline(always)]
                        move || {
                            for (p, &g) in t.iter_mut().zip(g) {
                                *p = *p - lr * decayed(*p, g, wd_t, decay_on);
                            }
                        },
                    )
                });
                return;
            }
            match bufs.get_mut(&id) {
                // First step: the buffer is the (decayed) gradient itself, undamped.
                None => {
                    let mut b = vec![T::zero(); theta.len()];
                    let bs = &mut b[..];
                    dispatch(
                        #[inline(always)]
                        move || {
                            for ((p, &g), b) in theta.iter_mut().zip(grad).zip(bs) {
                                let d = decayed(*p, g, wd_t, decay_on);
                                *b = d;
                                let d = if nesterov { d + mu * d } else { d };
                                *p -= lr * d;
                            }
                        },
                    );
                    bufs.insert(id, b);
                }
                Some(b) => dispatch(
                    #[inline(always)]
                    move || {
                        for ((p, &g), b) in theta.iter_mut().zip(grad).zip(b.iter_mut()) {
                            let d = decayed(*p, g, wd_t, decay_on);
                            *b = *b * mu + one_minus_damp * d;
                            let d = if nesterov { d + mu * *b } else { *b };
                            *p -= lr * d;
                        }
                    },
                ),
            }
        };
        (&mut self.tracker, &self.groups, rule)
    }
}

impl<T: Element> Sgd<T> {
    const KIND: &'static str = "SGD";
    const HYPER: [&'static str; 5] = ["lr", "momentum", "dampening", "nesterov", "weight_decay"];

    fn export_state(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
        let c = &self.cfg;
        let hyper = [
            c.lr,
            c.momentum,
            c.dampening,
            flag(c.nesterov),
            c.weight_decay,
        ];
        let hyper: Vec<_> = Self::HYPER.into_iter().zip(hyper).collect();
        export_state(Self::KIND, &hyper, &self.groups, model, |id| {
            let b = self.momentum_buffers.get(&id)?;
            Some((vec![("momentum_buffer", &b[..])], None))
        })
    }

    fn import_state(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
        let kind = Self::KIND;
        let (h, params, group_lrs) = import_state(
            state,
            kind,
            &Self::HYPER,
            &self.groups,
            &["momentum_buffer"],
            false,
            model,
        )?;
        let cfg = SgdConfig {
            lr: h("lr"),
            momentum: h("momentum"),
            dampening: h("dampening"),
            nesterov: switch(kind, "nesterov", h("nesterov"))?,
            weight_decay: h("weight_decay"),
        };
        Sgd::<T>::new(cfg)?;
        let mut buffers = FastIdMap::default();
        for (id, (name, mut s)) in params {
            // Only parameters with a buffer are listed; plain SGD keeps none.
            match s.take("momentum_buffer") {
                Some(b) if cfg.momentum != 0.0 => buffers.insert(id, b),
                _ => return incomplete(kind, &name, "no momentum_buffer"),
            };
        }
        self.cfg = cfg;
        self.momentum_buffers = buffers;
        self.groups.set_own_lrs(&group_lrs);
        Ok(())
    }
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    shared_optimizer_methods!(lr: cfg.lr, tracker: tracker, groups: groups);
}

// ---------------------------------------------------------------------------------------------
// Adam and AdamW

/// [`Adam`]'s hyperparameters; `Default` is PyTorch's `torch.optim.Adam()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates (β1, β2) of the first and second moment estimates (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to √v̂ for numerical stability (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0). For decoupled decay use [`AdamW`].
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// [`AdamW`]'s hyperparameters; `Default` is PyTorch's `torch.optim.AdamW()` (note the
/// weight decay of 1e-2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates (β1, β2) of the moment estimates (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to √v̂ for numerical stability (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (default 1e-2), applied as θ ← θ·(1 − lr·wd).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

#[derive(Debug)]
struct AdamState<T> {
    step: u64,
    m: Vec<T>,
    v: Vec<T>,
}

/// Adam and AdamW differ only in where the weight decay goes.
#[derive(Debug)]
struct AdamCore<T: Element> {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    state: FastIdMap<ParamId, AdamState<T>>,
    tracker: Tracker,
    groups: Groups,
}

impl<T: Element> AdamCore<T> {
    fn new(
        name: &str,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
    ) -> Result<Self> {
        check_lr(lr)?;
        check_nonneg(&format!("{name} eps"), eps)?;
        check_beta(&format!("{name} beta1"), betas.0)?;
        check_beta(&format!("{name} beta2"), betas.1)?;
        check_nonneg(&format!("{name} weight_decay"), weight_decay)?;
        Ok(AdamCore {
            lr,
            betas,
            eps,
            weight_decay,
            decoupled,
            state: FastIdMap::default(),
            tracker: Tracker::default(),
            groups: Groups::default(),
        })
    }

    /// As [`Sgd`]'s `parts`.
    fn parts(&mut self) -> Parts<'_, impl Rule<T> + '_> {
        let (b1, b2) = self.betas;
        let (base_lr, eps, base_wd, decoupled) =
            (self.lr, self.eps, self.weight_decay, self.decoupled);
        let half = T::of(0.5);
        let w1 = T::of(1.0 - b1);
        let b2_t = T::of(b2);
        let one_minus_b2 = T::of(1.0 - b2);
        let eps_t = T::of(eps);
        let state = &mut self.state;
        let rule = move |id: ParamId, hyper: GroupHyper, theta: &mut [T], grad: &[T]| {
            let (lr, wd) = hyper.apply(base_lr, base_wd);
            let (wd_t, shrink) = (T::of(wd), T::of(1.0 - lr * wd));
            let n = theta.len();
            let s = state.entry(id).or_insert_with(|| AdamState {
                step: 0,
                m: vec![T::zero(); n],
                v: vec![T::zero(); n],
            });
            s.step += 1;
            // Scalars in f64 as PyTorch computes them in Python floats; `powf` and `powf(0.5)`
            // mirror Python's `**`.
            let t = s.step as f64;
            let bias_correction1 = 1.0 - b1.powf(t);
            let bias_correction2 = 1.0 - b2.powf(t);
            let neg_step_size = T::of(-(lr / bias_correction1));
            let bc2_sqrt = T::of(bias_correction2.powf(0.5));
            let (m, v) = (&mut s.m[..n], &mut s.v[..n]);
            dispatch(
                #[inline(always)]
                move || {
                    for (((p, &g), m), v) in theta.iter_mut().zip(grad).zip(m).zip(v) {
                        let (q, g) = match (decoupled, wd != 0.0) {
                            (true, true) => (*p * shrink, g),
                            (false, true) => (*p, g + wd_t * *p),
                            _ => (*p, g),
                        };
                        *m = lerp(*m, g, w1, half);
                        *v = *v * b2_t + one_minus_b2 * g * g;
                        let denom = v.sqrt() / bc2_sqrt + eps_t;
                        *p = q + neg_step_size * (*m / denom);
                    }
                },
            );
        };
        (&mut self.tracker, &self.groups, rule)
    }
}

impl<T: Element> AdamCore<T> {
    const HYPER: [&'static str; 5] = ["lr", "beta1", "beta2", "eps", "weight_decay"];

    fn kind(&self) -> &'static str {
        if self.decoupled {
            "AdamW"
        } else {
            "Adam"
        }
    }

    fn export_state(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
        let (b1, b2) = self.betas;
        let hyper = [self.lr, b1, b2, self.eps, self.weight_decay];
        let hyper: Vec<_> = Self::HYPER.into_iter().zip(hyper).collect();
        export_state(self.kind(), &hyper, &self.groups, model, |id| {
            let s = self.state.get(&id)?;
            Some((
                vec![("exp_avg", &s.m[..]), ("exp_avg_sq", &s.v[..])],
                Some(s.step),
            ))
        })
    }

    fn import_state(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
        let kind = self.kind();
        let buffers = ["exp_avg", "exp_avg_sq"];
        let (h, params, group_lrs) = import_state(
            state,
            kind,
            &Self::HYPER,
            &self.groups,
            &buffers,
            true,
            model,
        )?;
        let betas = (h("beta1"), h("beta2"));
        let fresh = AdamCore::<T>::new(
            kind,
            h("lr"),
            betas,
            h("eps"),
            h("weight_decay"),
            self.decoupled,
        )?;
        let mut moments = FastIdMap::default();
        for (id, (name, mut s)) in params {
            let (Some(m), Some(v), Some(step)) = (s.take("exp_avg"), s.take("exp_avg_sq"), s.step)
            else {
                return incomplete(kind, &name, "exp_avg, exp_avg_sq and a step count");
            };
            // The bias corrections raise β to the step count as an f64, exact up to 2⁵³; a
            // larger count can only come from a corrupted file (and u64::MAX would overflow
            // at the next step).
            if step > 1 << 53 {
                return Err(Error::Format(format!(
                    "{kind} state: step count {step} for `{name}` is past 2^53"
                )));
            }
            moments.insert(id, AdamState { step, m, v });
        }
        *self = AdamCore {
            state: moments,
            tracker: std::mem::take(&mut self.tracker),
            groups: std::mem::take(&mut self.groups),
            ..fresh
        };
        self.groups.set_own_lrs(&group_lrs);
        Ok(())
    }
}

/// Adam (Kingma & Ba) with L2 weight decay, as PyTorch's `torch.optim.Adam`.
///
/// Update rule for each parameter θ with gradient g, at its t-th update (t counts from 1):
///
/// * g ← g + wd·θ (when `weight_decay` ≠ 0)
/// * m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²  (m, v start at 0)
/// * m̂ = m/(1 − β1ᵗ),  v̂ = v/(1 − β2ᵗ)
/// * θ ← θ − lr·m̂/(√v̂ + eps)
///
/// As in PyTorch, the last line is evaluated as θ − (lr/(1 − β1ᵗ))·m/(√v/√(1 − β2ᵗ) + eps).
///
/// # Example
/// ```
/// use vgrad::nn::{Adam, AdamConfig, Optimizer};
/// let opt = Adam::<f32>::new(AdamConfig::default())?;
/// assert_eq!(opt.lr(), 1e-3);
/// assert!(Adam::<f32>::new(AdamConfig { betas: (0.9, 1.0), ..Default::default() }).is_err());
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct Adam<T: Element>(AdamCore<T>);

impl<T: Element> Adam<T> {
    /// An optimiser with the given hyperparameters.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr`, `eps` or `weight_decay` is negative or not finite, or a beta
    /// is outside [0, 1).
    pub fn new(cfg: AdamConfig) -> Result<Self> {
        AdamCore::new("Adam", cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay, false).map(Adam)
    }

    /// The hyperparameters (with the current learning rate).
    pub fn config(&self) -> AdamConfig {
        AdamConfig {
            lr: self.0.lr,
            betas: self.0.betas,
            eps: self.0.eps,
            weight_decay: self.0.weight_decay,
        }
    }
}

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as PyTorch's
/// `torch.optim.AdamW`.
///
/// Update rule for each parameter θ with gradient g, at its t-th update:
///
/// * θ ← θ − lr·wd·θ (computed as θ·(1 − lr·wd), before and independent of the gradient)
/// * m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
/// * θ ← θ − lr·m̂/(√v̂ + eps) with m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ)
///
/// # Example
/// ```
/// use vgrad::nn::{AdamW, AdamWConfig, Optimizer};
/// let opt = AdamW::<f64>::new(AdamWConfig::default())?;
/// assert_eq!(opt.config().weight_decay, 1e-2);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct AdamW<T: Element>(AdamCore<T>);

impl<T: Element> AdamW<T> {
    /// An optimiser with the given hyperparameters.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr`, `eps` or `weight_decay` is negative or not finite, or a beta
    /// is outside [0, 1).
    pub fn new(cfg: AdamWConfig) -> Result<Self> {
        AdamCore::new("AdamW", cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay, true).map(AdamW)
    }

    /// The hyperparameters (with the current learning rate).
    pub fn config(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.0.lr,
            betas: self.0.betas,
            eps: self.0.eps,
            weight_decay: self.0.weight_decay,
        }
    }
}

macro_rules! adam_optimizer {
    ($ty:ident) => {
        impl<T: Element> $ty<T> {
            fn parts(
                &mut self,
            ) -> Parts<'_, impl Rule<T> + '_> {
                self.0.parts()
            }
            fn export_state(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
                self.0.export_state(model)
            }

            /// Adds a [`ParamGroup`]: other hyperparameters for the parameters it matches.
            ///
            /// # Errors
            /// [`Error::Config`] if its `lr`, `lr_scale` or `weight_decay` is negative or
            /// not finite.
            pub fn with_group(mut self, group: ParamGroup) -> Result<Self> {
                self.0.groups.add(group)?;
                Ok(self)
            }
            fn import_state(
                &mut self,
                model: &dyn Module<T>,
                state: &OptimizerState<T>,
            ) -> Result<()> {
                self.0.import_state(model, state)
            }
        }
        impl<T: Element> Optimizer<T> for $ty<T> {
            shared_optimizer_methods!(lr: 0.lr, tracker: 0.tracker, groups: 0.groups);
        }
    };
}
adam_optimizer!(Adam);
adam_optimizer!(AdamW);

// ---------------------------------------------------------------------------------------------
// RMSprop

/// [`RMSprop`]'s hyperparameters; `Default` is PyTorch's `torch.optim.RMSprop()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RMSpropConfig {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average (default 0.99).
    pub alpha: f64,
    /// Added to the root-mean-square for numerical stability (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Divide by an estimate of the gradient's variance instead of its raw second moment
    /// (default false).
    pub centered: bool,
}

impl Default for RMSpropConfig {
    fn default() -> Self {
        RMSpropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

#[derive(Debug)]
struct RMSpropState<T> {
    square_avg: Vec<T>,
    /// Only used when centered.
    grad_avg: Vec<T>,
    /// Only used with momentum.
    buf: Vec<T>,
}

/// RMSprop (Hinton), as PyTorch's `torch.optim.RMSprop`, with optional momentum and centering.
///
/// Update rule for each parameter θ with gradient g (s, ḡ and b start at 0):
///
/// * g ← g + wd·θ (when `weight_decay` ≠ 0)
/// * s ← α·s + (1 − α)·g²
/// * centered: ḡ ← α·ḡ + (1 − α)·g and a = √(s − ḡ²) + eps; otherwise a = √s + eps
/// * with momentum μ > 0: b ← μ·b + g/a and θ ← θ − lr·b; otherwise θ ← θ − lr·g/a
///
/// # Example
/// ```
/// use vgrad::nn::{Optimizer, RMSprop, RMSpropConfig};
/// let opt = RMSprop::<f32>::new(RMSpropConfig { centered: true, momentum: 0.9, ..Default::default() })?;
/// assert_eq!(opt.lr(), 1e-2);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct RMSprop<T: Element> {
    cfg: RMSpropConfig,
    state: FastIdMap<ParamId, RMSpropState<T>>,
    tracker: Tracker,
    groups: Groups,
}

impl<T: Element> RMSprop<T> {
    /// An optimiser with the given hyperparameters.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr`, `eps`, `weight_decay` or `momentum` is negative or not
    /// finite, or `alpha` is outside [0, 1] (PyTorch accepts α > 1, which makes the average
    /// of squares go negative; vgrad rejects it).
    pub fn new(cfg: RMSpropConfig) -> Result<Self> {
        check_lr(cfg.lr)?;
        check_nonneg("RMSprop eps", cfg.eps)?;
        check_nonneg("RMSprop weight_decay", cfg.weight_decay)?;
        check_nonneg("RMSprop momentum", cfg.momentum)?;
        if !(0.0..=1.0).contains(&cfg.alpha) {
            return Err(Error::Config(format!(
                "RMSprop alpha must be in [0, 1], got {}",
                cfg.alpha
            )));
        }
        Ok(RMSprop {
            cfg,
            state: FastIdMap::default(),
            tracker: Tracker::default(),
            groups: Groups::default(),
        })
    }

    /// The hyperparameters (with the current learning rate).
    pub fn config(&self) -> &RMSpropConfig {
        &self.cfg
    }

    /// Adds a [`ParamGroup`]: other hyperparameters for the parameters it matches.
    ///
    /// # Errors
    /// [`Error::Config`] if its `lr`, `lr_scale` or `weight_decay` is negative or not
    /// finite.
    pub fn with_group(mut self, group: ParamGroup) -> Result<Self> {
        self.groups.add(group)?;
        Ok(self)
    }
}

impl<T: Element> RMSprop<T> {
    /// As [`Sgd`]'s `parts`.
    fn parts(&mut self) -> Parts<'_, impl Rule<T> + '_> {
        let c = self.cfg;
        let alpha = T::of(c.alpha);
        let one_minus_alpha = T::of(1.0 - c.alpha);
        let (eps, mu, half) = (T::of(c.eps), T::of(c.momentum), T::of(0.5));
        let use_momentum = c.momentum > 0.0;
        let state = &mut self.state;
        let rule = move |id: ParamId, hyper: GroupHyper, theta: &mut [T], grad: &[T]| {
            let (lr, wd) = hyper.apply(c.lr, c.weight_decay);
            let (neg_lr, wd, decay_on) = (T::of(-lr), T::of(wd), wd != 0.0);
            let n = theta.len();
            let s = state.entry(id).or_insert_with(|| RMSpropState {
                square_avg: vec![T::zero(); n],
                grad_avg: if c.centered {
                    vec![T::zero(); n]
                } else {
                    Vec::new()
                },
                buf: if use_momentum {
                    vec![T::zero(); n]
                } else {
                    Vec::new()
                },
            });
            let sq = &mut s.square_avg[..n];
            let (ga, buf) = (&mut s.grad_avg[..], &mut s.buf[..]);
            // One loop per variant, so that each zips only the state it has.
            dispatch(
                #[inline(always)]
                move || match (c.centered, use_momentum) {
                    (false, false) => {
                        for ((p, &g), sq) in theta.iter_mut().zip(grad).zip(sq) {
                            let g = decayed(*p, g, wd, decay_on);
                            *sq = *sq * alpha + one_minus_alpha * g * g;
                            *p += neg_lr * (g / (sq.sqrt() + eps));
                        }
                    }
                    (false, true) => {
                        let it = theta.iter_mut().zip(grad).zip(sq).zip(&mut buf[..n]);
                        for (((p, &g), sq), b) in it {
                            let g = decayed(*p, g, wd, decay_on);
                            *sq = *sq * alpha + one_minus_alpha * g * g;
                            *b = *b * mu + g / (sq.sqrt() + eps);
                            *p += neg_lr * *b;
                        }
                    }
                    (true, false) => {
                        let it = theta.iter_mut().zip(grad).zip(sq).zip(&mut ga[..n]);
                        for (((p, &g), sq), ga) in it {
                            let g = decayed(*p, g, wd, decay_on);
                            *sq = *sq * alpha + one_minus_alpha * g * g;
                            *ga = lerp(*ga, g, one_minus_alpha, half);
                            let avg = (*sq - *ga * *ga).sqrt() + eps;
                            *p += neg_lr * (g / avg);
                        }
                    }
                    (true, true) => {
                        let it = theta
                            .iter_mut()
                            .zip(grad)
                            .zip(sq)
                            .zip(&mut ga[..n])
                            .zip(&mut buf[..n]);
                        for ((((p, &g), sq), ga), b) in it {
                            let g = decayed(*p, g, wd, decay_on);
                            *sq = *sq * alpha + one_minus_alpha * g * g;
                            *ga = lerp(*ga, g, one_minus_alpha, half);
                            let avg = (*sq - *ga * *ga).sqrt() + eps;
                            *b = *b * mu + g / avg;
                            *p += neg_lr * *b;
                        }
                    }
                },
            );
        };
        (&mut self.tracker, &self.groups, rule)
    }
}

impl<T: Element> RMSprop<T> {
    const KIND: &'static str = "RMSprop";
    const HYPER: [&'static str; 6] = ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"];

    fn export_state(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
        let c = &self.cfg;
        let hyper = [
            c.lr,
            c.alpha,
            c.eps,
            c.weight_decay,
            c.momentum,
            flag(c.centered),
        ];
        let hyper: Vec<_> = Self::HYPER.into_iter().zip(hyper).collect();
        export_state(Self::KIND, &hyper, &self.groups, model, |id| {
            let s = self.state.get(&id)?;
            let mut buffers = vec![("square_avg", &s.square_avg[..])];
            if c.centered {
                buffers.push(("grad_avg", &s.grad_avg[..]));
            }
            if c.momentum > 0.0 {
                buffers.push(("momentum_buffer", &s.buf[..]));
            }
            Some((buffers, None))
        })
    }

    fn import_state(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
        let kind = Self::KIND;
        let buffers = ["square_avg", "grad_avg", "momentum_buffer"];
        let (h, params, group_lrs) = import_state(
            state,
            kind,
            &Self::HYPER,
            &self.groups,
            &buffers,
            false,
            model,
        )?;
        let cfg = RMSpropConfig {
            lr: h("lr"),
            alpha: h("alpha"),
            eps: h("eps"),
            weight_decay: h("weight_decay"),
            momentum: h("momentum"),
            centered: switch(kind, "centered", h("centered"))?,
        };
        RMSprop::<T>::new(cfg)?;
        let use_momentum = cfg.momentum > 0.0;
        let mut averages = FastIdMap::default();
        for (id, (name, mut s)) in params {
            let (sq, ga, buf) = (
                s.take("square_avg"),
                s.take("grad_avg"),
                s.take("momentum_buffer"),
            );
            let Some(square_avg) =
                sq.filter(|_| ga.is_some() == cfg.centered && buf.is_some() == use_momentum)
            else {
                let needs = match (cfg.centered, use_momentum) {
                    (false, false) => "square_avg",
                    (true, false) => "square_avg and grad_avg",
                    (false, true) => "square_avg and momentum_buffer",
                    (true, true) => "square_avg, grad_avg and momentum_buffer",
                };
                return incomplete(kind, &name, needs);
            };
            let fresh = RMSpropState {
                square_avg,
                grad_avg: ga.unwrap_or_default(),
                buf: buf.unwrap_or_default(),
            };
            averages.insert(id, fresh);
        }
        self.cfg = cfg;
        self.state = averages;
        self.groups.set_own_lrs(&group_lrs);
        Ok(())
    }
}

impl<T: Element> Optimizer<T> for RMSprop<T> {
    shared_optimizer_methods!(lr: cfg.lr, tracker: tracker, groups: groups);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Ctx, Linear, Sequential};
    use crate::Tape;

    fn model() -> Sequential<f64> {
        let w = Tensor::from_vec(vec![0.5, -0.25, 0.125, 1.0], &[2, 2]).unwrap();
        let b = Tensor::vector(&[0.1, -0.2]);
        Sequential::new().push(Linear::from_tensors(w, Some(b)).unwrap())
    }

    fn grads_of(m: &mut Sequential<f64>) -> ParamGrads<f64> {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let x = Tensor::from_vec(vec![1.0, 2.0, -1.0, 0.5], &[2, 2]).unwrap();
        let loss = m.forward(&mut ctx, tape.constant(x)).square().mean();
        ctx.param_grads(&loss.backward())
    }

    #[test]
    fn plain_sgd_is_theta_minus_lr_g() {
        let mut m = model();
        let g = grads_of(&mut m);
        let before = m.state_dict();
        let mut opt = Sgd::new(SgdConfig {
            lr: 0.5,
            ..Default::default()
        })
        .unwrap();
        opt.step(&mut m, &g).unwrap();
        for ((name, old), (_, new)) in before.iter().zip(m.state_dict()) {
            let gr = g.get_name(name).unwrap();
            for ((o, n), g) in old.data().iter().zip(new.data()).zip(gr.data()) {
                assert!((n - (o - 0.5 * g)).abs() < 1e-15, "{name}");
            }
        }
    }

    /// A parameter large enough for the update to be split over threads gets every element
    /// updated exactly once, with or without weight decay.
    #[test]
    fn plain_sgd_on_a_large_parameter_split_over_threads() {
        let (rows, cols) = (700, 600); // 420,000 elements, above PARALLEL_MIN_ELEMS
        assert!(rows * cols >= crate::tensor::parallel::PARALLEL_MIN_ELEMS);
        let w = Tensor::from_fn(&[rows, cols], |i| (i as f64 * 0.37).sin());
        let mut m = Sequential::new().push(Linear::from_tensors(w.clone(), None).unwrap());
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let x = Tensor::from_fn(&[3, cols], |i| (i as f64 * 0.11).cos());
        let loss = m.forward(&mut ctx, tape.constant(x)).square().mean();
        let g = ctx.param_grads(&loss.backward());
        let gw = g.get_name("0.weight").unwrap().clone();
        crate::tensor::set_num_threads(2);
        let mut opt = Sgd::new(SgdConfig {
            lr: 0.5,
            weight_decay: 0.1,
            ..Default::default()
        })
        .unwrap();
        opt.step(&mut m, &g).unwrap();
        let new = m.state_dict().remove(0).1;
        for ((o, n), g) in w.data().iter().zip(new.data()).zip(gw.data()) {
            assert!((n - (o - 0.5 * (g + 0.1 * o))).abs() < 1e-15);
        }
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
                        RMSprop::new(RMSpropConfig {
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

    fn ids(m: &Sequential<f64>) -> Vec<ParamId> {
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

    #[test]
    fn parameter_without_gradient_is_skipped_and_gets_no_state() {
        let mut m = model();
        let full = grads_of(&mut m);
        let [w, b] = ids(&m)[..] else { panic!() };
        // Only the weight's gradient, as if the bias were frozen.
        let mut g = ParamGrads::default();
        g.insert(w, "0.weight".into(), full.get_id(w).unwrap().clone());
        let before = m.state_dict();
        let mut opt = Adam::new(AdamConfig::default()).unwrap();
        opt.step(&mut m, &g).unwrap();
        let after = m.state_dict();
        assert_ne!(after[0].1.data(), before[0].1.data());
        assert_eq!(after[1].1.data(), before[1].1.data());
        assert!(opt.0.state.contains_key(&w) && !opt.0.state.contains_key(&b));
        // The bias joins later with its own step count starting at 1: Adam's first step moves
        // every element by about lr (m̂/√v̂ = ±1).
        opt.step(&mut m, &full).unwrap();
        assert_eq!(opt.0.state[&b].step, 1);
        assert_eq!(opt.0.state[&w].step, 2);
        let moved = m.state_dict()[1].1.sub(&after[1].1);
        assert!(
            moved.data().iter().all(|d| (d.abs() - 1e-3).abs() < 1e-9),
            "{moved:?}"
        );
    }

    #[test]
    fn shape_mismatch_is_an_error_and_changes_nothing() {
        let mut m = model();
        let good = grads_of(&mut m);
        let [w, b] = ids(&m)[..] else { panic!() };
        let mut bad = ParamGrads::default();
        bad.insert(w, "0.weight".into(), good.get_id(w).unwrap().clone());
        bad.insert(b, "0.bias".into(), Tensor::zeros(&[3]));
        let before = m.state_dict();
        let mut opt = Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        })
        .unwrap();
        let err = opt.step(&mut m, &bad).unwrap_err();
        assert!(err.to_string().contains("0.bias"), "{err}");
        for ((_, a), (_, b)) in before.iter().zip(m.state_dict()) {
            assert_eq!(a.data(), b.data());
        }
        assert!(opt.momentum_buffers.is_empty());
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
        assert!(RMSprop::<f32>::new(RMSpropConfig {
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
}
