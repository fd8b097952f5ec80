//! Softmax and log-softmax along an axis, stable for extreme logits.

use super::{Algebra, Op};
use crate::tape::Var;
use crate::tensor::Element;

/// Backward of softmax / log_softmax from the output `y`:
/// softmax: `dx = y ⊙ (g − Σ g⊙y)`; log_softmax: `dx = g − eʸ ⊙ Σ g`, sums along `axis`.
pub(crate) fn backward<T: Element, A: Algebra<T>>(axis: usize, log: bool, y: &A, g: &A) -> A {
    let shape = y.shape();
    if log {
        let p = y.exp();
        g.sub(&p.mul(&g.sum_axis(axis, true).broadcast_to(&shape)))
    } else {
        let dot = g.mul(y).sum_axis(axis, true).broadcast_to(&shape);
        y.mul(&g.sub(&dot))
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// `softmax(x)ᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m)` along `axis`, with `m` the maximum, so logits
    /// like `[1000, 0, −1000]` give finite values. Derivative: `∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ)`, applied
    /// as `y ⊙ (g − Σ g⊙y)`.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn softmax(self, axis: usize) -> Var<'t, T> {
        let v = self.value_ref().softmax(axis);
        self.record(Op::Softmax { axis }, &[self.id], v)
    }

    /// `log softmax(x) = x − m − log Σ e^(x − m)` along `axis`, stable for extreme logits.
    /// Derivative: `∂yᵢ/∂xⱼ = δᵢⱼ − softmax(x)ⱼ`, applied as `g − softmax(x) ⊙ Σ g`.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn log_softmax(self, axis: usize) -> Var<'t, T> {
        let v = self.value_ref().log_softmax(axis);
        self.record(Op::LogSoftmax { axis }, &[self.id], v)
    }
}
