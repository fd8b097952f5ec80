//! Softmax and log-softmax along an axis, stable for extreme logits.

use super::{Algebra, Op};
use crate::tape::Var;
use crate::tensor::Element;

/// Backward of softmax / log_softmax from the output `y`:
/// softmax: `dx = y ⊙ (g − Σ g⊙y)`; log_softmax: `dx = g − eʸ ⊙ Σ g`, sums along `axis`.
///
/// Both depend on the logits only through `y`, which the forward computes shift-invariantly, so
/// the rules are shift-invariant too: on tensors one fused pass with the sums in f64 lanes
/// (`Tensor::softmax_backward`), under `create_graph` the same formulas composed from
/// primitives so that they can be differentiated again.
pub(crate) fn backward<T: Element, A: Algebra<T>>(axis: usize, log: bool, y: &A, g: &A) -> A {
    let [dx] = A::fork(
        || [y.value().softmax_backward(&g.value(), axis, log)],
        || {
            let shape = y.shape();
            [if log {
                let p = y.exp();
                g.sub(&p.mul(&g.sum_axis(axis, true).broadcast_to(&shape)))
            } else {
                let dot = g.mul(y).sum_axis(axis, true).broadcast_to(&shape);
                y.mul(&g.sub(&dot))
            }]
        },
    );
    dx
}

impl<'t, T: Element> Var<'t, T> {
    /// `softmax(x)ᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m)` along `axis`, with `m` the maximum, so logits
    /// like `[1000, 0, −1000]` give finite values and a common shift of the logits (`1e7`,
    /// `3e38`) changes nothing. Derivative: `∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ)`, applied as
    /// `y ⊙ (g − Σ g⊙y)`. Non-finite logits as in PyTorch: see
    /// [`Tensor::log_softmax`](crate::Tensor::log_softmax).
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn softmax(self, axis: usize) -> Var<'t, T> {
        let v = self.value_ref().softmax(axis);
        self.record(Op::Softmax { axis }, &[self.id], v)
    }

    /// `log softmax(x) = (x − m) − log Σ e^(x − m)` along `axis`, stable for extreme logits and
    /// shift-invariant like PyTorch's (the log-sum-exp is never added back to `m`, which in f32
    /// rounded `log_softmax([1e7; 3])` to −1; see
    /// [`Tensor::log_softmax`](crate::Tensor::log_softmax)). Derivative:
    /// `∂yᵢ/∂xⱼ = δᵢⱼ − softmax(x)ⱼ`, applied as `g − softmax(x) ⊙ Σ g`.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn log_softmax(self, axis: usize) -> Var<'t, T> {
        let v = self.value_ref().log_softmax(axis);
        self.record(Op::LogSoftmax { axis }, &[self.id], v)
    }
}
