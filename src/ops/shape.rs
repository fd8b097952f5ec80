//! Shape ops: broadcast and its adjoint, reshape, permute, concat and narrow, row gather and its
//! adjoint. Each backward rule is the op's adjoint, so the rules pair up:
//! broadcast ↔ sum_to, concat ↔ narrow, gather ↔ scatter_add.

use super::{Algebra, InputGrads, Op};
use crate::tape::Var;
use crate::tensor::{Element, Shape, Tensor};
use smallvec::SmallVec;
use std::sync::Arc;

pub(crate) fn backward<T: Element, A: Algebra<T>>(
    op: &Op<T>,
    x: &[&A],
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    let one = |a: A| -> InputGrads<A> { smallvec::smallvec![Some(a)] };
    match op {
        Op::BroadcastTo => one(g.sum_to(&x[0].shape())),
        Op::SumTo => one(g.broadcast_to(&x[0].shape())),
        Op::Reshape => one(g.reshape(&x[0].shape())),
        Op::Permute(p) => {
            let mut inv = vec![0; p.len()];
            for (i, &a) in p.iter().enumerate() {
                inv[a] = i;
            }
            one(g.permute(&inv))
        }
        Op::Concat { axis } => {
            let mut start = 0;
            x.iter()
                .zip(needs)
                .map(|(xi, &need)| {
                    let len = xi.shape()[*axis];
                    let gi = need.then(|| g.narrow(*axis, start, len));
                    start += len;
                    gi
                })
                .collect()
        }
        Op::Narrow { axis, start } => {
            // The adjoint of a slice: the gradient placed back between zero blocks.
            let full = x[0].shape();
            let len = g.shape()[*axis];
            let zeros = |n: usize| {
                let mut s: Shape = full.clone();
                s[*axis] = n;
                g.lift(Tensor::zeros(&s))
            };
            let mut parts: SmallVec<[A; 3]> = SmallVec::new();
            if *start > 0 {
                parts.push(zeros(*start));
            }
            parts.push(g.clone());
            if start + len < full[*axis] {
                parts.push(zeros(full[*axis] - start - len));
            }
            one(if parts.len() == 1 {
                g.clone()
            } else {
                A::concat(&parts, *axis)
            })
        }
        Op::GatherRows(idx) => one(g.scatter_add_rows(idx, x[0].shape()[0])),
        Op::ScatterAddRows(idx) => one(g.gather_rows(idx)),
        _ => unreachable!("shape::backward called with {}", op.name()),
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Repeats along broadcast axes to `shape`. Derivative: the adjoint, a sum over those axes.
    ///
    /// # Panics
    /// If this shape does not broadcast to `shape`.
    #[track_caller]
    pub fn broadcast_to(self, shape: &[usize]) -> Var<'t, T> {
        if self.shape().as_slice() == shape {
            return self;
        }
        let v = self.value_ref().broadcast_to(shape);
        self.record(Op::BroadcastTo, &[self.id], v)
    }

    /// Sums over the axes along which `shape` broadcasts to this shape. Derivative: the adjoint,
    /// a broadcast back.
    ///
    /// # Panics
    /// If `shape` does not broadcast to this shape.
    #[track_caller]
    pub fn sum_to(self, shape: &[usize]) -> Var<'t, T> {
        if self.shape().as_slice() == shape {
            return self;
        }
        let v = self.value_ref().sum_to(shape);
        self.record(Op::SumTo, &[self.id], v)
    }

    /// The same elements under a new shape. Derivative: the gradient reshaped back.
    ///
    /// # Panics
    /// If the element counts differ.
    #[track_caller]
    pub fn reshape(self, shape: &[usize]) -> Var<'t, T> {
        let v = self.value_ref().reshape(shape);
        self.record(Op::Reshape, &[self.id], v)
    }

    /// Reorders axes (axis `i` of the result is axis `perm[i]`). Derivative: the inverse
    /// permutation of the gradient.
    ///
    /// # Panics
    /// If `perm` is not a permutation of the axes.
    #[track_caller]
    pub fn permute(self, perm: &[usize]) -> Var<'t, T> {
        let v = self.value_ref().permute(perm);
        self.record(Op::Permute(perm.into()), &[self.id], v)
    }

    /// Swaps two axes. Derivative: the same swap of the gradient.
    ///
    /// # Panics
    /// If an axis is out of range.
    #[track_caller]
    pub fn transpose(self, a0: usize, a1: usize) -> Var<'t, T> {
        let nd = self.shape().len();
        assert!(
            a0 < nd && a1 < nd,
            "transpose: axes ({a0}, {a1}) out of range for shape {:?}",
            self.shape()
        );
        let mut perm: SmallVec<[usize; 4]> = (0..nd).collect();
        perm.swap(a0, a1);
        self.permute(&perm)
    }

    /// Joins variables along `axis`. Derivative: each input receives its slice of the gradient.
    ///
    /// # Panics
    /// If `parts` is empty, the tapes differ, or the shapes disagree outside `axis`.
    #[track_caller]
    pub fn concat(parts: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
        assert!(!parts.is_empty(), "concat: no variables given");
        let first = parts[0];
        for p in &parts[1..] {
            first.same_tape("concat", p);
        }
        let values: SmallVec<[Tensor<T>; 4]> = parts.iter().map(|p| p.value()).collect();
        let refs: SmallVec<[&Tensor<T>; 4]> = values.iter().collect();
        let v = Tensor::concat(&refs, axis);
        let ids: SmallVec<[usize; 4]> = parts.iter().map(|p| p.id).collect();
        first.record(Op::Concat { axis }, &ids, v)
    }

    /// The slice `start..start + len` along `axis`. Derivative: the gradient placed back in
    /// that slice, zero elsewhere.
    ///
    /// # Panics
    /// If the axis or range is out of bounds.
    #[track_caller]
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Var<'t, T> {
        let v = self.value_ref().narrow(axis, start, len);
        self.record(Op::Narrow { axis, start }, &[self.id], v)
    }

    /// Rows (axis 0) picked by index, repeats allowed: `out[i] = self[indices[i]]` (PyTorch's
    /// `index_select(0, …)`, an embedding lookup). Derivative: each row's gradient is added back
    /// to the row it came from.
    ///
    /// # Panics
    /// If an index is out of range.
    #[track_caller]
    pub fn gather_rows(self, indices: &[usize]) -> Var<'t, T> {
        self.gather_rows_shared(indices.into())
    }

    #[track_caller]
    pub(crate) fn gather_rows_shared(self, idx: Arc<[usize]>) -> Var<'t, T> {
        let v = self.value_ref().gather_rows(&idx);
        self.record(Op::GatherRows(idx), &[self.id], v)
    }

    /// A `rows`-row tensor, zero except that row `indices[i]` accumulates `self[i]`
    /// (PyTorch's `index_add`). Derivative: the gradient's rows gathered by `indices`.
    ///
    /// # Panics
    /// If `indices.len()` differs from the number of rows or an index is `>= rows`.
    #[track_caller]
    pub fn scatter_add_rows(self, indices: &[usize], rows: usize) -> Var<'t, T> {
        self.scatter_add_rows_shared(indices.into(), rows)
    }

    #[track_caller]
    pub(crate) fn scatter_add_rows_shared(self, idx: Arc<[usize]>, rows: usize) -> Var<'t, T> {
        let v = self.value_ref().scatter_add_rows(&idx, rows);
        self.record(Op::ScatterAddRows(idx), &[self.id], v)
    }
}
