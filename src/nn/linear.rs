//! `Linear`: y = x·Wᵀ + b.

use super::init::Init;
use super::module::{Ctx, Module, Param, Visitor, VisitorMut};
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use rand::Rng;
use std::fmt;

/// How a [`Linear`] layer is built. `Default` is PyTorch's `nn.Linear`: a bias, and weight and
/// bias both drawn from U(±1/√in_features).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinearConfig {
    /// Whether the layer adds a bias (default true).
    pub bias: Option<bool>,
    /// The weight's initialisation; `None` means PyTorch's default.
    pub weight_init: Option<Init>,
    /// The bias's initialisation; `None` means PyTorch's default.
    pub bias_init: Option<Init>,
}

impl LinearConfig {
    /// The default configuration with the given weight initialisation and a zero bias — the
    /// usual pairing with Xavier or He initialisation.
    pub fn init(weight_init: Init) -> Self {
        LinearConfig {
            bias: Some(true),
            weight_init: Some(weight_init),
            bias_init: Some(Init::Zeros),
        }
    }

    /// The same configuration without a bias.
    pub fn no_bias(self) -> Self {
        LinearConfig {
            bias: Some(false),
            ..self
        }
    }
}

/// A fully connected layer, `y = x·Wᵀ + b`, with PyTorch's layout: weight `[out, in]`,
/// bias `[out]`, parameters named `weight` and `bias`.
///
/// Accepts input `[…, in]` (any number of leading axes) and returns `[…, out]`. Derivatives:
/// `dx = g·W`, `dW = gᵀ·x` (summed over leading axes), `db = Σ g` over all but the last axis.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{Ctx, Linear, Module};
/// use vgrad::{Tape, Tensor};
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut fc = Linear::<f32>::new(4, 3, &mut rng)?;
/// let tape = Tape::new();
/// let y = fc.forward(&mut Ctx::new(&tape), tape.constant(Tensor::zeros(&[8, 4])));
/// assert_eq!(y.shape().as_slice(), &[8, 3]);
/// assert_eq!(format!("{fc:?}"), "Linear(in_features=4, out_features=3, bias=True)");
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone)]
pub struct Linear<T: Element> {
    weight: Param<T>,
    bias: Option<Param<T>>,
}

impl<T: Element> Linear<T> {
    /// A layer with PyTorch's default initialisation.
    ///
    /// # Errors
    /// [`Error::Config`] if either width is zero; [`Error::Shape`] or [`Error::Alloc`] if the
    /// weight's size overflows or does not fit in memory.
    pub fn new(in_features: usize, out_features: usize, rng: &mut impl Rng) -> Result<Self> {
        Self::with_config(in_features, out_features, LinearConfig::default(), rng)
    }

    /// A layer built from a [`LinearConfig`].
    ///
    /// # Errors
    /// [`Error::Config`] if either width is zero or an initialisation is invalid;
    /// [`Error::Shape`] or [`Error::Alloc`] if the weight's size overflows or does not fit in
    /// memory.
    pub fn with_config(
        in_features: usize,
        out_features: usize,
        cfg: LinearConfig,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::Config(format!(
                "Linear({in_features}, {out_features}): widths must be positive"
            )));
        }
        let default = Init::LinearDefault {
            fan_in: in_features,
        };
        let weight = cfg
            .weight_init
            .unwrap_or(default)
            .tensor(&[out_features, in_features], rng)?;
        let bias = if cfg.bias.unwrap_or(true) {
            Some(
                cfg.bias_init
                    .unwrap_or(default)
                    .tensor(&[out_features], rng)?,
            )
        } else {
            None
        };
        Self::from_tensors(weight, bias)
    }

    /// A layer with the given weight `[out, in]` and optional bias `[out]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the weight is not 2-D or the bias does not match its rows.
    pub fn from_tensors(weight: Tensor<T>, bias: Option<Tensor<T>>) -> Result<Self> {
        if weight.ndim() != 2 || weight.numel() == 0 {
            return Err(Error::Shape(format!(
                "Linear weight must be a non-empty [out, in] matrix, got {:?}",
                weight.shape()
            )));
        }
        if let Some(b) = &bias {
            if b.shape() != [weight.shape()[0]] {
                return Err(Error::Shape(format!(
                    "Linear bias of shape {:?} does not match weight {:?}",
                    b.shape(),
                    weight.shape()
                )));
            }
        }
        Ok(Linear {
            weight: Param::new(weight),
            bias: bias.map(Param::new),
        })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.value().shape()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.value().shape()[0]
    }

    /// The weight parameter, `[out, in]`.
    pub fn weight(&self) -> &Param<T> {
        &self.weight
    }

    /// The bias parameter, `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<&Param<T>> {
        self.bias.as_ref()
    }

    /// Mutable weight (to rescale or zero an initialisation).
    pub fn weight_mut(&mut self) -> &mut Param<T> {
        &mut self.weight
    }

    /// Mutable bias.
    pub fn bias_mut(&mut self) -> Option<&mut Param<T>> {
        self.bias.as_mut()
    }
}

impl<T: Element> Module<T> for Linear<T> {
    /// # Panics
    /// If the input's last axis is not `in_features` (the message names both shapes).
    #[track_caller]
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let w = ctx.param("weight", &self.weight);
        let b = self.bias.as_ref().map(|b| ctx.param("bias", b));
        ctx.label(x.linear(w, b))
    }

    fn visit(&self, v: &mut dyn Visitor<T>) {
        v.param("weight", &self.weight);
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }

    fn visit_mut(&mut self, v: &mut dyn VisitorMut<T>) {
        v.param("weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
    }
}

impl<T: Element> fmt::Debug for Linear<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Linear(in_features={}, out_features={}, bias={})",
            self.in_features(),
            self.out_features(),
            if self.bias.is_some() { "True" } else { "False" }
        )
    }
}
