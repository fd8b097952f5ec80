//! Matrix product: `C = op(A)·op(B)` where `op` optionally transposes the last two axes.
//!
//! Backward, for `C = A·B`: `dA = G·Bᵀ`, `dB = Aᵀ·G`. With transposed operands the same identities
//! are rearranged so that every product is again one GEMM call with transposes as strides —
//! no transposed copy is ever made. Leading batch axes broadcast; their gradients are summed
//! back to each operand's own shape.

use super::{Algebra, InputGrads, Op};
use crate::tape::Var;
use crate::tensor::Element;
use smallvec::smallvec;

pub(crate) fn backward<T: Element, A: Algebra<T>>(
    a: &A,
    b: &A,
    g: &A,
    ta: bool,
    tb: bool,
    needs: &[bool],
) -> InputGrads<A> {
    let (sa, sb) = (a.shape(), b.shape());
    // A stack of matrices times one matrix: fold the stack into rows, so dB is one GEMM
    // ([k, B·m]·[B·m, n]) rather than B GEMMs and a sum.
    if sb.len() == 2 && sa.len() > 2 && !ta {
        let k = sa[sa.len() - 1];
        let rows = sa[..sa.len() - 1].iter().product::<usize>();
        let n = g.shape()[g.shape().len() - 1];
        let a2 = a.reshape(&[rows, k]);
        let g2 = g.reshape(&[rows, n]);
        let mut out = backward(&a2, b, &g2, ta, tb, needs);
        if let Some(ga) = out[0].take() {
            out[0] = Some(ga.reshape(&sa));
        }
        return out;
    }
    // For C = op(A)·op(B):
    //   op(A) = A  ⇒ dA = G·op(B)ᵀ          op(A) = Aᵀ ⇒ dA = op(B)·Gᵀ
    //   op(B) = B  ⇒ dB = op(A)ᵀ·G          op(B) = Bᵀ ⇒ dB = Gᵀ·op(A)
    let ga = needs[0].then(|| {
        let full = if ta {
            b.matmul_t(g, tb, true)
        } else {
            g.matmul_t(b, false, !tb)
        };
        full.sum_to(&sa)
    });
    let gb = needs[1].then(|| {
        let full = if tb {
            g.matmul_t(a, true, ta)
        } else {
            a.matmul_t(g, !ta, false)
        };
        full.sum_to(&sb)
    });
    smallvec![ga, gb]
}

impl<'t, T: Element> Var<'t, T> {
    /// Matrix product `self · other` (2-D, or batched with broadcasting leading axes).
    /// Derivative: `dA = G·Bᵀ`, `dB = Aᵀ·G`, with batch axes summed back to each operand's shape.
    ///
    /// # Panics
    /// If an operand has fewer than 2 axes, the inner dimensions differ or the batch axes do not
    /// broadcast; the message names both shapes.
    #[track_caller]
    pub fn matmul(self, other: Var<'t, T>) -> Var<'t, T> {
        self.matmul_t(other, false, false)
    }

    /// `op(self) · op(other)`, where `op` transposes the last two axes when its flag is set —
    /// passed to the GEMM as strides, never copied. `x.matmul_t(w, false, true)` is PyTorch's
    /// `x @ w.T`, the product inside `Linear`.
    ///
    /// # Panics
    /// As [`Var::matmul`].
    #[track_caller]
    pub fn matmul_t(self, other: Var<'t, T>, ta: bool, tb: bool) -> Var<'t, T> {
        self.same_tape("matmul", &other);
        let v = self.value().matmul_t(&other.value(), ta, tb);
        self.record(Op::MatMul { ta, tb }, &[self.id, other.id], v)
    }
}
