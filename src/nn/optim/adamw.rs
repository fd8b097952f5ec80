//! AdamW, as PyTorch's `torch.optim.AdamW`: Adam with decoupled weight decay, on the core in
//! `adam.rs`.

use super::adam::AdamCore;
use super::{Optimizer, OptimizerState, ParamGroup, UpdateStat};
use crate::error::Result;
use crate::nn::module::{Ctx, Module, ParamGrads};
use crate::tape::Var;
use crate::tensor::Element;

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
    /// [`Error::Config`](crate::Error::Config) if `lr`, `eps` or `weight_decay` is negative or not finite, or a beta
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

    /// Adds a [`ParamGroup`]: other hyperparameters for the parameters it matches.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if its `lr`, `lr_scale` or `weight_decay` is negative or not
    /// finite.
    pub fn with_group(mut self, group: ParamGroup) -> Result<Self> {
        self.0.groups.add(group)?;
        Ok(self)
    }
}

impl<T: Element> Optimizer<T> for AdamW<T> {
    fn step(&mut self, model: &mut dyn Module<T>, grads: &ParamGrads<T>) -> Result<()> {
        self.0.step(model, grads)
    }

    #[track_caller]
    fn backward_step<'t>(
        &mut self,
        model: &mut dyn Module<T>,
        ctx: &Ctx<'t, T>,
        loss: Var<'t, T>,
    ) -> Result<()> {
        self.0.backward_step(model, ctx, loss)
    }

    fn lr(&self) -> f64 {
        self.0.lr()
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.0.set_lr(lr)
    }

    fn group_lrs(&self) -> Vec<f64> {
        self.0.group_lrs()
    }

    fn set_group_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        self.0.set_group_lrs(lrs)
    }

    fn track_updates(&mut self, on: bool) {
        self.0.track_updates(on);
    }

    fn last_updates(&self) -> &[UpdateStat] {
        self.0.last_updates()
    }

    fn state_dict(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
        self.0.state_dict(model)
    }

    fn load_state_dict(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
        self.0.load_state_dict(model, state)
    }
}
