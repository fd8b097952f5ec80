//! Reductions: sum and max over everything or one axis; mean is composed from sum.

use super::{Algebra, Op};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use std::sync::Arc;

/// Backward of the reductions: the output gradient broadcast back over the reduced axes, times
/// a selector for max.
pub(crate) fn backward<T: Element, A: Algebra<T>>(op: &Op<T>, x: &A, y: &A, g: &A) -> A {
    let shape = x.shape();
    match op {
        // d Σx = 1 for every element
        Op::SumAll => g.broadcast_to(&shape),
        Op::SumAxis { axis, keepdim } => keep_axis(g, &shape, *axis, *keepdim).broadcast_to(&shape),
        // d max = 1/k on each of the k elements equal to the max (PyTorch's rule for the full
        // reduction), 0 elsewhere. A NaN maximum came from the NaN elements, which `v == m`
        // never selects: match them by NaN-ness instead, or the gradient would vanish (PyTorch
        // splits it among the NaNs too).
        Op::MaxAll => {
            let sel = max_all_selector(&x.value(), y.value().item());
            g.broadcast_to(&shape).mul_const(sel)
        }
        // Along an axis the gradient goes to the index max returned (the first maximum).
        Op::MaxAxis { axis, keepdim, arg } => {
            let sel = one_hot_along(&shape, *axis, arg);
            keep_axis(g, &shape, *axis, *keepdim)
                .broadcast_to(&shape)
                .mul_const(sel)
        }
        _ => unreachable!("reduce::backward called with {}", op.name()),
    }
}

/// `1/k` on each of the `k` elements of `x` equal to its maximum `m` (NaN-ness when `m` is NaN),
/// 0 elsewhere: the row of max()'s Jacobian, shared by backward and forward mode.
pub(crate) fn max_all_selector<T: Element>(x: &Tensor<T>, m: T) -> Tensor<T> {
    let hit = |v: T| if m.is_nan() { v.is_nan() } else { v == m };
    let ties = x.data().iter().filter(|&&v| hit(v)).count().max(1);
    let share = T::one() / T::of(ties as f64);
    x.map(|v| if hit(v) { share } else { T::zero() })
}

/// Restores a reduced axis as extent 1 so the gradient broadcasts back.
fn keep_axis<T: Element, A: Algebra<T>>(g: &A, shape: &[usize], axis: usize, keepdim: bool) -> A {
    if keepdim {
        return g.clone();
    }
    let mut s: smallvec::SmallVec<[usize; 4]> = shape.into();
    s[axis] = 1;
    g.reshape(&s)
}

/// A tensor of `shape` with 1 at `arg[o, i]` along `axis` for each outer/inner position.
pub(crate) fn one_hot_along<T: Element>(shape: &[usize], axis: usize, arg: &[usize]) -> Tensor<T> {
    let inner: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    let mut sel = vec![T::zero(); shape.iter().product()];
    for (pos, &k) in arg.iter().enumerate() {
        let (o, i) = (pos / inner, pos % inner);
        sel[(o * n + k) * inner + i] = T::one();
    }
    Tensor::from_parts(sel, crate::tensor::Shape::from_slice(shape))
}

impl<'t, T: Element> Var<'t, T> {
    /// Sum of all elements, a scalar. Derivative: 1 for every element.
    pub fn sum(self) -> Var<'t, T> {
        let v = self.value_ref().sum_all();
        self.record(Op::SumAll, &[self.id], v)
    }

    /// Sum over `axis`; with `keepdim` the axis stays with extent 1. Derivative: 1 for every
    /// element, i.e. the gradient is broadcast back along `axis`.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn sum_axis(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let v = self.value_ref().sum_axis(axis, keepdim);
        self.record(Op::SumAxis { axis, keepdim }, &[self.id], v)
    }

    /// Mean of all elements; composed as `sum · (1/n)`. Derivative: `1/n` for every element.
    pub fn mean(self) -> Var<'t, T> {
        let n = self.value_ref().numel();
        self.sum().scale(T::one() / T::of(n as f64))
    }

    /// Mean over `axis`; composed as `sum_axis · (1/n)`. Derivative: `1/n` along the axis.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn mean_axis(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        assert!(
            axis < shape.len(),
            "mean: axis {axis} out of range for shape {shape:?}"
        );
        let n = shape[axis];
        self.sum_axis(axis, keepdim)
            .scale(T::one() / T::of(n as f64))
    }

    /// Largest element, a scalar; NaN propagates. Derivative: split evenly among the elements
    /// equal to the maximum (PyTorch's rule for `max()` without a dimension), 0 elsewhere.
    ///
    /// # Panics
    /// If the tensor is empty.
    #[track_caller]
    pub fn max(self) -> Var<'t, T> {
        let v = self.value_ref().max_all();
        self.record(Op::MaxAll, &[self.id], v)
    }

    /// Largest element along `axis`. Derivative: 1 at the first position holding the maximum
    /// (the index PyTorch's `max(dim)` returns), 0 elsewhere.
    ///
    /// # Panics
    /// If `axis` is out of range or empty.
    #[track_caller]
    pub fn max_axis(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let (v, arg) = self.value_ref().max_axis(axis, keepdim);
        let arg: Arc<[usize]> = arg.into();
        self.record(Op::MaxAxis { axis, keepdim, arg }, &[self.id], v)
    }
}
