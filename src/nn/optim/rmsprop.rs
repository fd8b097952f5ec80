//! RMSprop, as PyTorch's `torch.optim.RMSprop`, with optional momentum and centering.

use super::groups::{GroupHyper, Groups};
use super::state::{export_state, flag, import_state, incomplete, switch};
use super::step::{apply, apply_in_backward, decayed, lerp, Parts, Rule, Tracker};
use super::{check_lr, check_nonneg, Optimizer, OptimizerState, ParamGroup, UpdateStat};
use crate::error::{Error, Result};
use crate::hash::FastIdMap;
use crate::nn::module::{Ctx, Module, ParamGrads, ParamId};
use crate::tape::Var;
use crate::tensor::update::vectorized;
use crate::tensor::Element;

/// [`RmsProp`]'s hyperparameters; `Default` is PyTorch's `torch.optim.RMSprop()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
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

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
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
struct RmsPropState<T> {
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
/// use vgrad::nn::{Optimizer, RmsProp, RmsPropConfig};
/// let opt = RmsProp::<f32>::new(RmsPropConfig { centered: true, momentum: 0.9, ..Default::default() })?;
/// assert_eq!(opt.lr(), 1e-2);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct RmsProp<T: Element> {
    cfg: RmsPropConfig,
    state: FastIdMap<ParamId, RmsPropState<T>>,
    tracker: Tracker,
    groups: Groups,
}

impl<T: Element> RmsProp<T> {
    /// An optimiser with the given hyperparameters.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr`, `eps`, `weight_decay` or `momentum` is negative or not
    /// finite, or `alpha` is outside [0, 1] (PyTorch accepts α > 1, which makes the average
    /// of squares go negative; vgrad rejects it).
    pub fn new(cfg: RmsPropConfig) -> Result<Self> {
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
        Ok(RmsProp {
            cfg,
            state: FastIdMap::default(),
            tracker: Tracker::default(),
            groups: Groups::default(),
        })
    }

    /// The hyperparameters (with the current learning rate).
    pub fn config(&self) -> &RmsPropConfig {
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

impl<T: Element> RmsProp<T> {
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
            let s = state.entry(id).or_insert_with(|| RmsPropState {
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
            vectorized(
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

impl<T: Element> RmsProp<T> {
    /// The name in a state file: PyTorch's class name.
    const KIND: &'static str = "RMSprop";
    const HYPER: [&'static str; 6] = ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"];
}

impl<T: Element> Optimizer<T> for RmsProp<T> {
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
        // Checked before `parts`: a refused call changes nothing.
        loss.tape().check_not_consumed("backward_step")?;
        let (tracker, groups, rule) = self.parts();
        apply_in_backward(model, ctx, loss, tracker, groups, rule)
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.cfg.lr = lr;
        Ok(())
    }

    fn group_lrs(&self) -> Vec<f64> {
        self.groups.lrs(self.cfg.lr)
    }

    fn set_group_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        self.groups.set_lrs(&mut self.cfg.lr, lrs)
    }

    fn track_updates(&mut self, on: bool) {
        self.tracker.switch(on);
    }

    fn last_updates(&self) -> &[UpdateStat] {
        self.tracker.stats()
    }

    fn state_dict(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
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

    fn load_state_dict(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
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
        let cfg = RmsPropConfig {
            lr: h("lr"),
            alpha: h("alpha"),
            eps: h("eps"),
            weight_decay: h("weight_decay"),
            momentum: h("momentum"),
            centered: switch(kind, "centered", h("centered"))?,
        };
        RmsProp::<T>::new(cfg)?;
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
            let fresh = RmsPropState {
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
