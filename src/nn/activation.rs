//! Activation layers: one enum, since an activation has no parameters, only a kind.

use super::module::{Ctx, Module, OutputKind, Visitor, VisitorMut};
use crate::ops::GeluApprox;
use crate::tape::Var;
use crate::tensor::Element;
use std::fmt;

/// An elementwise activation as a layer. Each variant applies the [`Var`] method of the same name,
/// whose doc states the function and its derivative; defaults match PyTorch.
///
/// # Example
/// ```
/// use vgrad::nn::Activation;
/// let a = Activation::<f32>::leaky_relu();
/// assert_eq!(format!("{a:?}"), "LeakyReLU(negative_slope=0.01)");
/// assert!(Activation::<f32>::Sigmoid.saturates());
/// ```
#[derive(Clone, Copy, PartialEq)]
pub enum Activation<T: Element> {
    /// `x` unchanged.
    Identity,
    /// Logistic sigmoid (derivative ≤ 1/4).
    Sigmoid,
    /// tanh (derivative ≤ 1).
    Tanh,
    /// max(x, 0).
    Relu,
    /// Leaky ReLU with the given negative slope (PyTorch's default 0.01).
    LeakyRelu(T),
    /// ELU with the given α (PyTorch's default 1.0).
    Elu(T),
    /// SELU.
    Selu,
    /// GELU, exact or tanh-approximated.
    Gelu(GeluApprox),
    /// Softplus with β and threshold (PyTorch's defaults 1 and 20).
    Softplus {
        /// β.
        beta: T,
        /// Above `β·x > threshold` the function is linear.
        threshold: T,
    },
    /// SiLU / swish.
    Silu,
}

impl<T: Element> Activation<T> {
    /// Leaky ReLU with PyTorch's default slope, 0.01.
    pub fn leaky_relu() -> Self {
        Activation::LeakyRelu(T::of(0.01))
    }

    /// ELU with PyTorch's default α = 1.
    pub fn elu() -> Self {
        Activation::Elu(T::one())
    }

    /// Softplus with PyTorch's defaults β = 1, threshold = 20.
    pub fn softplus() -> Self {
        Activation::Softplus {
            beta: T::one(),
            threshold: T::of(20.0),
        }
    }

    /// Applies the activation.
    pub fn apply<'t>(&self, x: Var<'t, T>) -> Var<'t, T> {
        match *self {
            Activation::Identity => x,
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => x.leaky_relu(s),
            Activation::Elu(a) => x.elu(a),
            Activation::Selu => x.selu(),
            Activation::Gelu(g) => x.gelu(g),
            Activation::Softplus { beta, threshold } => x.softplus(beta, threshold),
            Activation::Silu => x.silu(),
        }
    }

    /// Whether the activation is bounded with a derivative that vanishes at both ends (sigmoid,
    /// tanh): the kind that starves deep networks of gradient.
    pub fn saturates(&self) -> bool {
        matches!(self, Activation::Sigmoid | Activation::Tanh)
    }

    /// The largest value of the derivative over the real line.
    pub fn max_derivative(&self) -> f64 {
        match *self {
            Activation::Sigmoid => 0.25,
            Activation::Selu => 1.050_700_987_355_480_5 * 1.673_263_242_354_377_2,
            Activation::Gelu(_) => 1.129,
            Activation::Silu => 1.0998,
            Activation::LeakyRelu(s) => s.to_f64().unwrap_or(1.0).abs().max(1.0),
            Activation::Elu(a) => a.to_f64().unwrap_or(1.0).abs().max(1.0),
            _ => 1.0,
        }
    }
}

impl<T: Element> Module<T> for Activation<T> {
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        // Identity returns its input node itself; labelling it would rename the previous
        // layer's output.
        if let Activation::Identity = self {
            return x;
        }
        // The output says which activation made it: the gradient monitor reads the kind from
        // here, not from the op on the tape.
        ctx.label_as(self.apply(x), OutputKind::Activation(*self))
    }
    fn visit(&self, _v: &mut dyn Visitor<T>) {}
    fn visit_mut(&mut self, _v: &mut dyn VisitorMut<T>) {}
}

impl<T: Element> fmt::Debug for Activation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Identity => write!(f, "Identity()"),
            Activation::Sigmoid => write!(f, "Sigmoid()"),
            Activation::Tanh => write!(f, "Tanh()"),
            Activation::Relu => write!(f, "ReLU()"),
            Activation::LeakyRelu(s) => write!(f, "LeakyReLU(negative_slope={s})"),
            Activation::Elu(a) => write!(f, "ELU(alpha={a:?})"),
            Activation::Selu => write!(f, "SELU()"),
            Activation::Gelu(GeluApprox::None) => write!(f, "GELU(approximate='none')"),
            Activation::Gelu(GeluApprox::Tanh) => write!(f, "GELU(approximate='tanh')"),
            Activation::Softplus { beta, threshold } => {
                write!(f, "Softplus(beta={beta:?}, threshold={threshold:?})")
            }
            Activation::Silu => write!(f, "SiLU()"),
        }
    }
}
