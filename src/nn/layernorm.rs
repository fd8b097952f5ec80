//! `LayerNorm`: per-sample normalisation over the feature axis.

use super::batchnorm::{check_size_and_eps, py_bool, py_float};
use super::module::{Ctx, Module, Param, Visitor, VisitorMut};
use crate::error::Result;
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use std::fmt;

/// How a [`LayerNorm`] is built; `Default` is PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormConfig {
    /// Added to the variance before the square root (default `1e-5`); must be positive.
    pub eps: f64,
    /// Whether the layer has a learnable scale `weight` (γ, initially 1). Default true.
    pub elementwise_affine: bool,
    /// Whether it also has a learnable shift `bias` (β, initially 0); only with
    /// `elementwise_affine`. Default true.
    pub bias: bool,
}

impl Default for LayerNormConfig {
    fn default() -> Self {
        LayerNormConfig {
            eps: 1e-5,
            elementwise_affine: true,
            bias: true,
        }
    }
}

/// Layer normalisation over the last axis of a `[…, C]` input (PyTorch's `nn.LayerNorm(C)`):
///
/// `y = (x − μ)/√(σ² + ε) · γ + β`, with μ and the *biased* variance σ² taken over the `C`
/// features of each sample (each row of a `[N, C]` input).
///
/// Unlike [`BatchNorm1d`](super::BatchNorm1d) it normalises each sample by its own statistics,
/// so it behaves the same in training and evaluation, keeps no running statistics, and works
/// with a batch of one.
///
/// Derivative, with `x̂ = (x − μ)/√(σ² + ε)`, `h = g·γ` and means over the features of one
/// sample: `dx = (h − mean(h) − x̂·mean(h·x̂))/√(σ² + ε)`; `dγ = Σ g·x̂` and `dβ = Σ g`, summed
/// over every sample. One fused node, [`Var::layer_norm`](crate::Var::layer_norm); its
/// gradient is differentiable again under [`backward_graph`](crate::Var::backward_graph).
///
/// Parameters `weight` `[C]` and `bias` `[C]`, as PyTorch names them. Deviation: PyTorch's
/// `normalized_shape` may span several trailing axes; here it is the last axis only.
///
/// # Example
/// ```
/// use vgrad::nn::{Ctx, LayerNorm, Module};
/// use vgrad::{Tape, Tensor};
/// let mut ln = LayerNorm::<f64>::new(2)?;
/// assert_eq!(format!("{ln:?}"), "LayerNorm((2,), eps=1e-05, elementwise_affine=True, bias=True)");
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from_vec(vec![1.0, 3.0, 10.0, -10.0], &[2, 2])?);
/// let y = ln.forward(&mut Ctx::new(&tape), x);
/// // Each row normalised to mean 0 and (biased) variance ≈ 1: ±1 up to ε.
/// assert!(y.value().allclose(&Tensor::from_vec(vec![-1.0, 1.0, 1.0, -1.0], &[2, 2])?, 1e-4, 0.0));
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone)]
pub struct LayerNorm<T: Element> {
    features: usize,
    cfg: LayerNormConfig,
    weight: Option<Param<T>>,
    bias: Option<Param<T>>,
}

impl<T: Element> LayerNorm<T> {
    /// A layer over the last axis, of `features` elements, with PyTorch's defaults.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if `features` is zero;
    /// [`Error::Alloc`](crate::Error::Alloc) if it does not fit in memory.
    pub fn new(features: usize) -> Result<Self> {
        Self::with_config(features, LayerNormConfig::default())
    }

    /// A layer built from a [`LayerNormConfig`].
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if `features` is zero or `eps` is not a positive
    /// finite number; [`Error::Alloc`](crate::Error::Alloc) if the parameters do not fit in
    /// memory.
    pub fn with_config(features: usize, cfg: LayerNormConfig) -> Result<Self> {
        check_size_and_eps("LayerNorm", "features", features, cfg.eps)?;
        let c = [features];
        let affine = cfg.elementwise_affine;
        // Allocated fallibly: a size too large for memory is an error, not an abort.
        let full = |v: T| Tensor::try_full_named("LayerNorm", &c, v).map(Param::new);
        let weight = if affine { Some(full(T::one())?) } else { None };
        let bias = if affine && cfg.bias {
            Some(full(T::zero())?)
        } else {
            None
        };
        Ok(LayerNorm {
            features,
            cfg,
            weight,
            bias,
        })
    }

    /// The size `C` of the normalised axis.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The configuration.
    pub fn config(&self) -> LayerNormConfig {
        self.cfg
    }

    /// The scale γ, if the layer has one.
    pub fn weight(&self) -> Option<&Param<T>> {
        self.weight.as_ref()
    }

    /// The shift β, if the layer has one.
    pub fn bias(&self) -> Option<&Param<T>> {
        self.bias.as_ref()
    }

    /// Mutable access to the scale γ (to set it).
    pub fn weight_mut(&mut self) -> Option<&mut Param<T>> {
        self.weight.as_mut()
    }

    /// Mutable access to the shift β (to set it).
    pub fn bias_mut(&mut self) -> Option<&mut Param<T>> {
        self.bias.as_mut()
    }
}

impl<T: Element> Module<T> for LayerNorm<T> {
    /// # Panics
    /// If the input's last axis is not this layer's `C` (the message names both).
    #[track_caller]
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let shape = x.shape();
        assert!(
            shape.last() == Some(&self.features),
            "LayerNorm: expected input of shape [..., {}], got {shape:?}",
            self.features
        );
        let w = self.weight.as_ref().map(|w| ctx.param("weight", w));
        let b = self.bias.as_ref().map(|b| ctx.param("bias", b));
        let y = x.layer_norm(w, b, T::of(self.cfg.eps));
        ctx.label(y)
    }

    fn visit(&self, v: &mut dyn Visitor<T>) {
        if let Some(w) = &self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }

    fn visit_mut(&mut self, v: &mut dyn VisitorMut<T>) {
        if let Some(w) = &mut self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
    }
}

impl<T: Element> fmt::Debug for LayerNorm<T> {
    /// As PyTorch 2.15 prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LayerNorm(({},), eps={}, elementwise_affine={}, bias={})",
            self.features,
            py_float(self.cfg.eps),
            py_bool(self.cfg.elementwise_affine),
            py_bool(self.bias.is_some())
        )
    }
}
