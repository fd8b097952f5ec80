//! Matrix product: `C = op(A)·op(B)` where `op` optionally transposes the last two axes.
//!
//! Backward, for `C = A·B`: `dA = G·Bᵀ`, `dB = Aᵀ·G`. With transposed operands the same identities
//! are rearranged so that every product is again one GEMM call with transposes as strides —
//! no transposed copy is ever made. Leading batch axes broadcast; their gradients are summed
//! back to each operand's own shape.
//!
//! [`Var::linear`] fuses a layer's `x·wᵀ + b` into one node: the GEMM adds the bias as it first
//! stores each output tile, so the output is written once and the tape holds one node and one
//! buffer per layer instead of two.

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

/// Gradients of `y = x·wᵀ (+ b)` with `x: [.., in]`, `w: [out, in]`, `b: [out]`, `g: [.., out]`:
/// `dx = g·w`, `dw = gᵀ·x` (over all leading axes folded into rows), `db = Σ_rows g`.
pub(crate) fn linear_backward<T: Element, A: Algebra<T>>(
    x: &[&A],
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    let (xs, ws) = (x[0].shape(), x[1].shape());
    let (out, inp) = (ws[0], ws[1]);
    let rows = xs[..xs.len() - 1].iter().product::<usize>();
    let g2 = g.reshape(&[rows, out]);
    let mut grads: InputGrads<A> = smallvec![
        needs[0].then(|| g2.matmul_t(x[1], false, false).reshape(&xs)),
        needs[1].then(|| g2.matmul_t(&x[0].reshape(&[rows, inp]), true, false)),
    ];
    if x.len() == 3 {
        grads.push(needs[2].then(|| g2.sum_to(&[out])));
    }
    grads
}

impl<'t, T: Element> Var<'t, T> {
    /// A fully connected layer's product `self·weightᵀ + bias` as one node, for `self` of shape
    /// `[.., in]`, `weight` `[out, in]` (PyTorch's layout) and `bias` `[out]`; the result is
    /// `[.., out]`. Same values as `self.matmul_t(weight, false, true) + bias`, computed in one
    /// GEMM that adds the bias as it stores the product.
    ///
    /// Derivative: `d self = G·weight`, `d weight = Gᵀ·self` (leading axes folded into rows),
    /// `d bias = Σ_rows G`.
    ///
    /// # Example
    /// ```
    /// use vgrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
    /// let w = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?);
    /// let b = tape.leaf(Tensor::vector(&[0.5, 0.5, 0.5]));
    /// let y = x.linear(w, Some(b));
    /// assert_eq!(y.value().data(), &[1.5, 2.5, 3.5]);
    /// let grads = y.sum().backward();
    /// assert_eq!(grads.wrt(b).unwrap().data(), &[1.0, 1.0, 1.0]);
    /// assert_eq!(grads.wrt(x).unwrap().data(), &[2.0, 2.0]);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    ///
    /// # Panics
    /// If `self` has no axes, `weight` is not 2-D, the inner extents differ or `bias` is not
    /// `[out]`; the message names the shapes.
    #[track_caller]
    pub fn linear(self, weight: Var<'t, T>, bias: Option<Var<'t, T>>) -> Var<'t, T> {
        self.same_tape("linear", &weight);
        if let Some(b) = &bias {
            self.same_tape("linear", b);
        }
        let v = self
            .value()
            .linear(&weight.value(), bias.map(|b| b.value()).as_ref());
        match bias {
            Some(b) => self.record(Op::Linear, &[self.id, weight.id, b.id], v),
            None => self.record(Op::Linear, &[self.id, weight.id], v),
        }
    }

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
        let v = self.value_ref().matmul_t(&other.value_ref(), ta, tb);
        self.record(Op::MatMul { ta, tb }, &[self.id, other.id], v)
    }
}
