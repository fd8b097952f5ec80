//! Stochastic gradient descent, as PyTorch's `torch.optim.SGD`: plain, with momentum, with
//! Nesterov momentum, and with L2 weight decay.

use super::groups::{GroupHyper, Groups};
use super::state::{export_state, flag, import_state, incomplete, switch};
use super::step::{apply_in_backward, apply_linear, decayed, Parts, Rule, Tracker};
use super::{check_lr, check_nonneg, Optimizer, OptimizerState, ParamGroup, UpdateStat};
use crate::error::{Error, Result};
use crate::hash::FastIdMap;
use crate::nn::module::{Ctx, Module, ParamGrads, ParamId};
use crate::tape::Var;
use crate::tensor::update::{par_update, vectorized};
use crate::tensor::Element;

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
            // Every rule's loop runs in a `move` closure inside `vectorized`: the scalars it reads
            // (lr, μ, the weight-decay and Nesterov switches) are copied in. Captured by
            // reference, LLVM reloaded them from memory on every element, since the stores to θ
            // might change them, and the loop stayed scalar (SGD 7x slower). The switches are
            // loop-invariant and become vector selects.
            let (lr, wd) = hyper.apply(c.lr, c.weight_decay);
            let (lr, wd_t, decay_on) = (T::of(lr), T::of(wd), wd != 0.0);
            if c.momentum == 0.0 {
                // No state: large parameters are split over the matrix-product threads.
                par_update(
                    theta,
                    grad,
                    #[inline(always)]
                    move |p, g| p - lr * decayed(p, g, wd_t, decay_on),
                );
                return;
            }
            match bufs.get_mut(&id) {
                // First step: the buffer is the (decayed) gradient itself, undamped.
                None => {
                    let mut b = vec![T::zero(); theta.len()];
                    let bs = &mut b[..];
                    vectorized(
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
                Some(b) => vectorized(
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
    /// The name in a state file: PyTorch's class name.
    const KIND: &'static str = "SGD";
    const HYPER: [&'static str; 5] = ["lr", "momentum", "dampening", "nesterov", "weight_decay"];
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn step(&mut self, model: &mut dyn Module<T>, grads: &ParamGrads<T>) -> Result<()> {
        let c = self.cfg;
        // Without momentum or weight decay the step is θ − lr·g: a wide Linear weight's
        // gradient, kept as factors, is then added as a product and never formed.
        let linear = move |hyper: GroupHyper| {
            let (lr, wd) = hyper.apply(c.lr, c.weight_decay);
            (c.momentum == 0.0 && wd == 0.0).then_some(-lr)
        };
        let (tracker, groups, rule) = self.parts();
        apply_linear(model, grads, tracker, groups, rule, Some(&linear))
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

    fn load_state_dict(&mut self, model: &dyn Module<T>, state: &OptimizerState<T>) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::optim::tests::{grads_of, ids, model};
    use crate::nn::{Ctx, Linear, Sequential};
    use crate::tensor::Tensor;
    use crate::Tape;

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
        assert!(rows * cols >= crate::tensor::update::PARALLEL_MIN_ELEMS);
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
}
