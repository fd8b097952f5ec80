//! `BatchNorm1d`: per-feature normalisation with batch statistics in training and running
//! statistics in evaluation.

use super::module::{Ctx, Module, Param, Visitor, VisitorMut};
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use std::fmt;

/// How a [`BatchNorm1d`] is built; `Default` is PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root (default `1e-5`); must be positive.
    pub eps: f64,
    /// Weight of the newest batch in the running statistics (default `0.1`); in `[0, 1]`.
    /// PyTorch's `momentum=None` (a cumulative average) is not supported.
    pub momentum: f64,
    /// Whether the layer has a learnable scale `weight` (γ, initially 1) and shift `bias`
    /// (β, initially 0). Default true.
    pub affine: bool,
    /// Whether the layer keeps running statistics for evaluation (default true). Without them it
    /// normalises with batch statistics in evaluation too, and has no buffers.
    pub track_running_stats: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
            track_running_stats: true,
        }
    }
}

/// Batch normalisation over the feature axis of a `[N, C]` input (PyTorch's `nn.BatchNorm1d`
/// for 2-D input):
///
/// `y = (x − μ)/√(σ² + ε) · γ + β`, per feature (column).
///
/// * **Training** ([`train`](Module::train), the initial mode): μ and σ² are the batch mean and
///   the *biased* batch variance (divided by `N`). With `track_running_stats`, each forward then
///   updates `running = (1 − momentum)·running + momentum·stat`, using the *unbiased* variance
///   (divided by `N − 1`) for `running_var`, and adds 1 to `num_batches_tracked`.
/// * **Evaluation** ([`eval`](Module::eval)): μ and σ² are the running statistics (constants), so
///   each sample is normalised independently of the batch. Without `track_running_stats` the
///   batch statistics are used in evaluation too.
///
/// Derivative: in evaluation, `dx = g·γ/√(σ² + ε)`. In training the statistics depend on the
/// whole batch, and with `x̂ = (x − μ)/√(σ² + ε)` the gradient is
/// `dx = γ/√(σ² + ε) · (g − mean(g) − x̂·mean(g·x̂))` (means over the batch), which removes any
/// component of `g` constant across the batch: a `Linear` bias right before a training-mode
/// BatchNorm therefore receives zero gradient. `dγ = Σ g·x̂`, `dβ = Σ g`.
///
/// With batch statistics the layer is one fused op ([`Var::batch_norm`](crate::Var::batch_norm):
/// two passes forward, two backward), whose rule is written over the same algebra as every
/// primitive's, so its gradient is also differentiable again under
/// [`backward_graph`](crate::Var::backward_graph); with running statistics it is composed
/// from primitives.
///
/// Parameters `weight` `[C]` and `bias` `[C]` (with `affine`); buffers `running_mean` `[C]`
/// (zeros), `running_var` `[C]` (ones) and `num_batches_tracked` (with
/// `track_running_stats`), in PyTorch's `state_dict` order. `num_batches_tracked` is a
/// scalar tensor of the element type, where PyTorch stores an `i64`: checkpoint code converts
/// it (exact up to 2²⁴ batches in `f32`).
///
/// # Example
/// ```
/// use vgrad::nn::{BatchNorm1d, Ctx, Module};
/// use vgrad::{Tape, Tensor};
/// let mut bn = BatchNorm1d::<f64>::new(2)?;
/// assert_eq!(
///     format!("{bn:?}"),
///     "BatchNorm1d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
/// );
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?);
/// let y = bn.forward(&mut Ctx::new(&tape), x);
/// // Each column normalised to mean 0 and (biased) variance ≈ 1: ±1 up to ε.
/// assert!(y.value().allclose(&Tensor::from_vec(vec![-1.0, -1.0, 1.0, 1.0], &[2, 2])?, 1e-4, 0.0));
/// // The running statistics moved 10% of the way towards the batch's (unbiased variance 2, 200).
/// let rm = bn.running_mean().unwrap();
/// assert!(rm.allclose(&Tensor::vector(&[0.2, 2.0]), 1e-12, 0.0));
/// assert!(bn.running_var().unwrap().allclose(&Tensor::vector(&[1.1, 20.9]), 1e-12, 0.0));
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone)]
pub struct BatchNorm1d<T: Element> {
    num_features: usize,
    cfg: BatchNormConfig,
    weight: Option<Param<T>>,
    bias: Option<Param<T>>,
    running: Option<RunningStats<T>>,
    training: bool,
}

#[derive(Clone)]
struct RunningStats<T: Element> {
    mean: Tensor<T>,
    var: Tensor<T>,
    num_batches_tracked: Tensor<T>,
}

impl<T: Element> BatchNorm1d<T> {
    /// A layer over `num_features` features with PyTorch's defaults, in training mode.
    ///
    /// # Errors
    /// [`Error::Config`] if `num_features` is zero; [`Error::Alloc`] if it does not fit in
    /// memory.
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_config(num_features, BatchNormConfig::default())
    }

    /// A layer built from a [`BatchNormConfig`], in training mode.
    ///
    /// # Errors
    /// [`Error::Config`] if `num_features` is zero, `eps` is not a positive finite number, or
    /// `momentum` is outside `[0, 1]`; [`Error::Alloc`] if the parameters do not fit in memory.
    pub fn with_config(num_features: usize, cfg: BatchNormConfig) -> Result<Self> {
        check_size_and_eps("BatchNorm1d", "num_features", num_features, cfg.eps)?;
        if !(0.0..=1.0).contains(&cfg.momentum) {
            return Err(Error::Config(format!(
                "BatchNorm1d: momentum must be in [0, 1], got {}",
                cfg.momentum
            )));
        }
        let c = [num_features];
        // Allocated fallibly: a size too large for memory is an error, not an abort.
        let full = |v: T| Tensor::try_full_named("BatchNorm1d", &c, v);
        let (weight, bias) = match cfg.affine {
            true => (
                Some(Param::new(full(T::one())?)),
                Some(Param::new(full(T::zero())?)),
            ),
            false => (None, None),
        };
        let running = match cfg.track_running_stats {
            true => Some(RunningStats {
                mean: full(T::zero())?,
                var: full(T::one())?,
                num_batches_tracked: Tensor::scalar(T::zero()),
            }),
            false => None,
        };
        Ok(BatchNorm1d {
            num_features,
            cfg,
            weight,
            bias,
            running,
            training: true,
        })
    }

    /// Number of features `C`.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// The configuration the layer was built with.
    pub fn config(&self) -> BatchNormConfig {
        self.cfg
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The scale γ, `[C]`, if the layer is affine.
    pub fn weight(&self) -> Option<&Param<T>> {
        self.weight.as_ref()
    }

    /// The shift β, `[C]`, if the layer is affine.
    pub fn bias(&self) -> Option<&Param<T>> {
        self.bias.as_ref()
    }

    /// Mutable γ (to load weights or zero-initialise it).
    pub fn weight_mut(&mut self) -> Option<&mut Param<T>> {
        self.weight.as_mut()
    }

    /// Mutable β.
    pub fn bias_mut(&mut self) -> Option<&mut Param<T>> {
        self.bias.as_mut()
    }

    /// The running mean, `[C]`, if the layer tracks running statistics.
    pub fn running_mean(&self) -> Option<&Tensor<T>> {
        self.running.as_ref().map(|r| &r.mean)
    }

    /// The running (unbiased) variance, `[C]`, if the layer tracks running statistics.
    pub fn running_var(&self) -> Option<&Tensor<T>> {
        self.running.as_ref().map(|r| &r.var)
    }

    /// Replaces the running statistics (e.g. estimates made elsewhere), keeping the batch count.
    ///
    /// # Errors
    /// [`Error::Config`] if the layer does not track running statistics; [`Error::Shape`] if
    /// either tensor is not `[C]`. Nothing changes then.
    pub fn set_running_stats(&mut self, mean: Tensor<T>, var: Tensor<T>) -> Result<()> {
        let c = self.num_features;
        for (what, t) in [("running_mean", &mean), ("running_var", &var)] {
            if t.shape() != [c] {
                return Err(Error::Shape(format!(
                    "BatchNorm1d({c}): {what} of shape {:?}, expected [{c}]",
                    t.shape()
                )));
            }
        }
        let Some(r) = &mut self.running else {
            return Err(Error::Config(
                "BatchNorm1d: this layer does not track running statistics".into(),
            ));
        };
        r.mean = mean;
        r.var = var;
        Ok(())
    }

    /// A layer built from existing tensors, in training mode: γ and β (`[C]` each, both or
    /// neither, as `cfg.affine` says) and, when `cfg.track_running_stats`, the running mean and
    /// variance (`[C]` each); `C` is taken from them.
    ///
    /// # Errors
    /// [`Error::Config`] if the tensors given do not match `cfg` (affine parameters missing or
    /// unexpected, running statistics missing or unexpected) or `cfg` itself is invalid;
    /// [`Error::Shape`] if a tensor is not 1-D or their lengths differ.
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{BatchNorm1d, BatchNormConfig};
    /// use vgrad::Tensor;
    /// let bn = BatchNorm1d::<f32>::from_tensors(
    ///     BatchNormConfig::default(),
    ///     Some((Tensor::vector(&[1.0, 2.0]), Tensor::vector(&[0.0, 0.5]))),
    ///     Some((Tensor::vector(&[0.1, 0.2]), Tensor::vector(&[1.5, 0.9]))),
    /// )?;
    /// assert_eq!(bn.num_features(), 2);
    /// assert_eq!(bn.running_var().unwrap().data(), &[1.5, 0.9]);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn from_tensors(
        cfg: BatchNormConfig,
        affine: Option<(Tensor<T>, Tensor<T>)>,
        running: Option<(Tensor<T>, Tensor<T>)>,
    ) -> Result<Self> {
        if affine.is_some() != cfg.affine || running.is_some() != cfg.track_running_stats {
            return Err(Error::Config(format!(
                "BatchNorm1d::from_tensors: affine {} and running statistics {} given for a \
                 config with affine = {} and track_running_stats = {}",
                affine.is_some(),
                running.is_some(),
                cfg.affine,
                cfg.track_running_stats
            )));
        }
        let all: Vec<&Tensor<T>> = affine
            .iter()
            .chain(&running)
            .flat_map(|(a, b)| [a, b])
            .collect();
        let Some(first) = all.first() else {
            return Err(Error::Config(
                "BatchNorm1d::from_tensors: no tensor gives the number of features".into(),
            ));
        };
        let c = first.numel();
        if let Some(bad) = all.iter().find(|t| t.shape() != [c]) {
            return Err(Error::Shape(format!(
                "BatchNorm1d::from_tensors: tensors must all be [{c}], got {:?}",
                bad.shape()
            )));
        }
        let mut layer = Self::with_config(c, cfg)?;
        if let Some((w, b)) = affine {
            layer.weight = Some(Param::new(w));
            layer.bias = Some(Param::new(b));
        }
        if let Some((m, v)) = running {
            layer.set_running_stats(m, v)?;
        }
        Ok(layer)
    }

    /// How many training batches have updated the running statistics.
    pub fn num_batches_tracked(&self) -> Option<u64> {
        self.running
            .as_ref()
            .and_then(|r| r.num_batches_tracked.item().to_u64())
    }

    /// Blends the batch statistics into the running ones (values only, nothing recorded).
    fn update_running(&mut self, mean: &Tensor<T>, biased_var: &Tensor<T>, n: usize) {
        let Some(r) = &mut self.running else { return };
        let m = T::of(self.cfg.momentum);
        let keep = T::one() - m;
        // The running variance estimates the population variance, hence Bessel's correction.
        let bessel = T::of(n as f64 / (n - 1) as f64);
        r.mean = r.mean.zip_map(mean, |r, s| keep * r + m * s);
        r.var = r.var.zip_map(biased_var, |r, s| keep * r + m * s * bessel);
        r.num_batches_tracked = r.num_batches_tracked.map(|k| k + T::one());
    }
}

impl<T: Element> Module<T> for BatchNorm1d<T> {
    /// # Panics
    /// * If the input is not `[N, C]` with this layer's `C` (the message names both).
    /// * If batch statistics are needed (training, or no running statistics) and `N ≤ 1`, with
    ///   PyTorch's message: "Expected more than 1 value per channel when training, got input
    ///   size [1, C]". A `forward` cannot return `Result`, and a one-sample batch has no
    ///   variance, so this is a misuse like a shape mismatch.
    #[track_caller]
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let shape = x.shape();
        assert!(
            shape.len() == 2 && shape[1] == self.num_features,
            "BatchNorm1d: expected input of shape [N, {}], got {shape:?}",
            self.num_features
        );
        let eps = T::of(self.cfg.eps);
        let tape = ctx.tape();
        let c = self.num_features;
        let gamma = match &self.weight {
            Some(w) => ctx.param("weight", w),
            None => tape.constant(Tensor::ones(&[c])),
        };
        let beta = match &self.bias {
            Some(b) => ctx.param("bias", b),
            None => tape.constant(Tensor::zeros(&[c])),
        };
        let y = match (&self.running, self.training) {
            // Evaluation with running statistics: constants, so each row is normalised alone.
            (Some(r), false) => {
                let inv_std = r.var.map(|v| (v + eps).sqrt().recip());
                let xhat = (x - tape.constant(r.mean.clone())) * tape.constant(inv_std);
                match (&self.weight, &self.bias) {
                    (None, None) => xhat,
                    _ => xhat * gamma + beta,
                }
            }
            _ => {
                let n = shape[0];
                if n <= 1 {
                    panic!(
                        "Expected more than 1 value per channel when training, got input size {shape:?}"
                    );
                }
                // One fused op (two passes each way) instead of a dozen primitive nodes.
                let (y, mean, var) = x.batch_norm(gamma, beta, eps);
                if self.training {
                    self.update_running(&mean, &var, n);
                }
                y
            }
        };
        ctx.label(y)
    }

    fn visit(&self, v: &mut dyn Visitor<T>) {
        if let Some(w) = &self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
        if let Some(r) = &self.running {
            v.buffer("running_mean", &r.mean);
            v.buffer("running_var", &r.var);
            v.buffer("num_batches_tracked", &r.num_batches_tracked);
        }
    }

    fn visit_mut(&mut self, v: &mut dyn VisitorMut<T>) {
        if let Some(w) = &mut self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
        if let Some(r) = &mut self.running {
            v.buffer("running_mean", &mut r.mean);
            v.buffer("running_var", &mut r.var);
            v.buffer("num_batches_tracked", &mut r.num_batches_tracked);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl<T: Element> fmt::Debug for BatchNorm1d<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BatchNorm1d({}, eps={}, momentum={}, affine={}, track_running_stats={})",
            self.num_features,
            py_float(self.cfg.eps),
            py_float(self.cfg.momentum),
            py_bool(self.cfg.affine),
            py_bool(self.cfg.track_running_stats)
        )
    }
}

/// The checks every normalisation layer makes of its size and `eps`.
pub(crate) fn check_size_and_eps(layer: &str, size: &str, n: usize, eps: f64) -> Result<()> {
    if n == 0 {
        return Err(Error::Config(format!(
            "{layer}: {size} must be positive, got 0"
        )));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::Config(format!(
            "{layer}: eps must be positive and finite, got {eps}"
        )));
    }
    Ok(())
}

/// `True` / `False`, as Python prints them.
pub(crate) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// A float as Python's `repr` prints it, so `Debug` output matches PyTorch's `print(model)`:
/// shortest round-trip digits, `1e-05` rather than `0.00001`, `1.0` rather than `1`.
pub(crate) fn py_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Python switches to scientific notation outside 1e-4 <= |x| < 1e16.
    let sci = format!("{x:e}"); // shortest round-trip mantissa, e.g. "1e-5", "1.5e-7"
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    if (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::py_float;

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1e-5, "1e-05"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123.25, "123.25"),
            (0.0, "0.0"),
            (0.001, "0.001"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float(x), want, "{x}");
        }
    }
}
