//! A wide Linear layer's weight gradient kept as its two factors until something reads it.
//!
//! `∂L/∂W = Gᵀ·X` is the one gradient of a plain backward sweep that nothing later in the
//! sweep reads. When the batch is small next to the layer (`G` and `X` together hold at most
//! half as many elements as `W`), multiplying it out there writes a buffer the size of the
//! weight that the optimiser reads back after the whole sweep, from memory: on a 1000-wide
//! layer with a batch of 32, that buffer's traffic is a third of the step's. Kept as `(G, X)`
//! (both alive anyway: `X` on the tape, `G` just computed), the product is formed only when read,
//! and plain SGD never forms it: `opt.step` adds `−lr·Gᵀ·X` to the weight in one GEMM. See
//! DESIGN.md, "A wide layer's ∂L/∂W kept as its factors".

use crate::tensor::{Element, Tensor};
use std::sync::OnceLock;

/// A gradient held either as a tensor or as the factors of `Gᵀ·X`, multiplied out on the first
/// read that keeps it ([`get`](Self::get)); [`with_data`](Self::with_data) multiplies it into
/// a temporary instead, for a reader that uses it once.
///
/// An enum rather than a `OnceLock` for every gradient: setting a `OnceLock` (also in its
/// `Clone`) takes `Once`'s slow path, an atomic exchange per gradient, twice per parameter and
/// step in the README loop, for the dense gradients that never needed it.
#[derive(Clone)]
pub(crate) enum LazyGrad<T: Element> {
    /// Multiplied out (or given as a tensor).
    Dense(Tensor<T>),
    /// The factors, boxed: a map of gradients holds mostly dense ones, a tensor's size each.
    Product(Box<Factors<T>>),
}

/// `G` (`[rows, out]`) and `X` (`[rows, in]`) with the product's shape `[out, in]`, and the
/// product once a reader formed it.
#[derive(Clone)]
pub(crate) struct Factors<T: Element> {
    value: OnceLock<Tensor<T>>,
    g: Tensor<T>,
    x: Tensor<T>,
    shape: [usize; 2],
}

impl<T: Element> LazyGrad<T> {
    /// A gradient already multiplied out.
    pub(crate) fn dense(t: Tensor<T>) -> Self {
        LazyGrad::Dense(t)
    }

    /// The gradient `gᵀ·x`, not formed yet; `g` is `[rows, out]`, `x` is `[rows, in]`.
    pub(crate) fn product(g: Tensor<T>, x: Tensor<T>) -> Self {
        debug_assert!(g.shape().len() == 2 && x.shape().len() == 2);
        debug_assert_eq!(g.shape()[0], x.shape()[0]);
        let shape = [g.shape()[1], x.shape()[1]];
        LazyGrad::Product(Box::new(Factors {
            value: OnceLock::new(),
            g,
            x,
            shape,
        }))
    }

    /// The shape of the gradient, without forming it.
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            LazyGrad::Dense(t) => t.shape(),
            LazyGrad::Product(f) => &f.shape,
        }
    }

    /// `(G, X)` while the product has not been formed.
    pub(crate) fn factors(&self) -> Option<(&Tensor<T>, &Tensor<T>)> {
        match self {
            LazyGrad::Product(f) if f.value.get().is_none() => Some((&f.g, &f.x)),
            _ => None,
        }
    }

    /// The gradient, formed on the first call and kept.
    pub(crate) fn get(&self) -> &Tensor<T> {
        match self {
            LazyGrad::Dense(t) => t,
            LazyGrad::Product(f) => f.value.get_or_init(|| form(&f.g, &f.x)),
        }
    }

    /// The gradient for writing: formed if it was not, and the factors dropped.
    pub(crate) fn get_mut(&mut self) -> &mut Tensor<T> {
        if let LazyGrad::Product(f) = self {
            let t = f.value.take().unwrap_or_else(|| form(&f.g, &f.x));
            *self = LazyGrad::Dense(t);
        }
        match self {
            LazyGrad::Dense(t) => t,
            LazyGrad::Product(_) => unreachable!("made dense just above"),
        }
    }

    /// The gradient as a tensor, formed if it was not.
    pub(crate) fn into_tensor(self) -> Tensor<T> {
        match self {
            LazyGrad::Dense(t) => t,
            LazyGrad::Product(f) => {
                let Factors { value, g, x, .. } = *f;
                value.into_inner().unwrap_or_else(|| form(&g, &x))
            }
        }
    }

    /// Calls `f` with the gradient's elements: the kept tensor's if it was formed, otherwise a
    /// product formed for this call only, into a recycled buffer that goes back to the pool
    /// when `f` returns.
    pub(crate) fn with_data<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        match self {
            LazyGrad::Dense(t) => f(t.data()),
            LazyGrad::Product(p) => match p.value.get() {
                Some(t) => f(t.data()),
                None => f(form(&p.g, &p.x).data()),
            },
        }
    }
}

/// `gᵀ·x`, `linear_backward`'s `d weight`.
fn form<T: Element>(g: &Tensor<T>, x: &Tensor<T>) -> Tensor<T> {
    g.matmul_t(x, true, false)
}
