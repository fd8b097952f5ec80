//! Optimisers behind one [`Optimizer`] trait. What they do and how they match PyTorch is
//! documented for users in the [`nn`](crate::nn) module docs ("Optimisers"); the items are
//! used from there (`vgrad::nn::Adam`), this module's path is hidden.
//!
//! # Where things are
//!
//! One file per idea: this one has the [`Optimizer`] trait, [`UpdateStat`] and the checks of
//! hyperparameters; `step.rs` the step every optimiser shares (the shape check, the in-place
//! update, the fused backward step, the update statistics); `groups.rs` the parameter groups;
//! `state.rs` saving and loading state; then one file per optimiser (`sgd.rs`, `adam.rs`,
//! `adamw.rs`, `rmsprop.rs`), each with its hyperparameters, its update rule and its plain
//! `impl Optimizer`, whose methods call the shared functions.

mod adam;
mod adamw;
mod groups;
mod rmsprop;
mod sgd;
mod state;
mod step;

pub use adam::{Adam, AdamConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use groups::ParamGroup;
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};
pub use state::OptimizerState;
// The old names under the old path, as `nn` has them (deprecated aliases).
#[allow(deprecated)]
#[doc(hidden)]
pub use super::renamed::{RMSprop, RMSpropConfig};

use super::module::{Ctx, Module, ParamGrads, ParamId};
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::Element;

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
    /// [`ReduceLrOnPlateau`](crate::nn::ReduceLrOnPlateau) calls this at each step.
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
// Checks of hyperparameters, shared by the constructors, `set_lr` and the loaders.

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

#[cfg(test)]
mod tests;
