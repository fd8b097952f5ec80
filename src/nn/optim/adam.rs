//! Adam, as PyTorch's `torch.optim.Adam`, and the core it shares with [`AdamW`](super::AdamW):
//! the two differ only in where the weight decay goes.

use super::groups::{GroupHyper, Groups};
use super::state::{export_state, import_state, incomplete};
use super::step::{apply, apply_in_backward, lerp, Parts, Rule, Tracker};
use super::{
    check_beta, check_lr, check_nonneg, Optimizer, OptimizerState, ParamGroup, UpdateStat,
};
use crate::error::{Error, Result};
use crate::hash::FastIdMap;
use crate::nn::module::{Ctx, Module, ParamGrads, ParamId};
use crate::tape::Var;
use crate::tensor::update::vectorized;
use crate::tensor::Element;

/// [`Adam`]'s hyperparameters; `Default` is PyTorch's `torch.optim.Adam()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates (β1, β2) of the first and second moment estimates (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to √v̂ for numerical stability (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0). For decoupled decay use [`AdamW`](super::AdamW).
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

#[derive(Debug)]
struct AdamState<T> {
    step: u64,
    m: Vec<T>,
    v: Vec<T>,
}

/// Adam and AdamW differ only in where the weight decay goes.
#[derive(Debug)]
pub(super) struct AdamCore<T: Element> {
    pub(super) lr: f64,
    pub(super) betas: (f64, f64),
    pub(super) eps: f64,
    pub(super) weight_decay: f64,
    decoupled: bool,
    state: FastIdMap<ParamId, AdamState<T>>,
    tracker: Tracker,
    pub(super) groups: Groups,
}

impl<T: Element> AdamCore<T> {
    pub(super) fn new(
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
            vectorized(
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
}

impl<T: Element> Optimizer<T> for AdamCore<T> {
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
        // Checked before `parts`, which counts a step: a refused call changes nothing.
        loss.tape().check_not_consumed("backward_step")?;
        let (tracker, groups, rule) = self.parts();
        apply_in_backward(model, ctx, loss, tracker, groups, rule)
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.lr = lr;
        Ok(())
    }

    fn group_lrs(&self) -> Vec<f64> {
        self.groups.lrs(self.lr)
    }

    fn set_group_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        self.groups.set_lrs(&mut self.lr, lrs)
    }

    fn track_updates(&mut self, on: bool) {
        self.tracker.switch(on);
    }

    fn last_updates(&self) -> &[UpdateStat] {
        self.tracker.stats()
    }

    fn state_dict(&self, model: &dyn Module<T>) -> Result<OptimizerState<T>> {
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

    fn load_state_dict(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
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

    /// Adds a [`ParamGroup`]: other hyperparameters for the parameters it matches.
    ///
    /// # Errors
    /// [`Error::Config`] if its `lr`, `lr_scale` or `weight_decay` is negative or not
    /// finite.
    pub fn with_group(mut self, group: ParamGroup) -> Result<Self> {
        self.0.groups.add(group)?;
        Ok(self)
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::optim::tests::{grads_of, ids, model};

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
}
