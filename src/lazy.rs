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
#[derive(Clone)]
pub(crate) struct LazyGrad<T: Element> {
    /// The product, once formed (or the gradient as given).
    value: OnceLock<Tensor<T>>,
    /// `G` (`[rows, out]`), `X` (`[rows, in]`) and the product's shape `[out, in]`, while the
    /// product is not formed.
    factors: Option<(Tensor<T>, Tensor<T>, [usize; 2])>,
}

impl<T: Element> LazyGrad<T> {
    /// A gradient already multiplied out.
    pub(crate) fn dense(t: Tensor<T>) -> Self {
        LazyGrad {
            value: OnceLock::from(t),
            factors: None,
        }
    }

    /// The gradient `gᵀ·x`, not formed yet; `g` is `[rows, out]`, `x` is `[rows, in]`.
    pub(crate) fn product(g: Tensor<T>, x: Tensor<T>) -> Self {
        debug_assert!(g.shape().len() == 2 && x.shape().len() == 2);
        debug_assert_eq!(g.shape()[0], x.shape()[0]);
        let shape = [g.shape()[1], x.shape()[1]];
        LazyGrad {
            value: OnceLock::new(),
            factors: Some((g, x, shape)),
        }
    }

    /// The shape of the gradient, without forming it.
    pub(crate) fn shape(&self) -> &[usize] {
        match (self.value.get(), &self.factors) {
            (Some(t), _) => t.shape(),
            (None, Some((_, _, shape))) => shape,
            (None, None) => unreachable!("a LazyGrad holds a value or its factors"),
        }
    }

    /// `(G, X)` while the product has not been formed.
    pub(crate) fn factors(&self) -> Option<(&Tensor<T>, &Tensor<T>)> {
        match (self.value.get(), &self.factors) {
            (None, Some((g, x, _))) => Some((g, x)),
            _ => None,
        }
    }

    /// The gradient, formed on the first call and kept.
    pub(crate) fn get(&self) -> &Tensor<T> {
        self.value.get_or_init(|| self.form())
    }

    /// The gradient for writing: formed if it was not, and the factors dropped.
    pub(crate) fn get_mut(&mut self) -> &mut Tensor<T> {
        if self.value.get().is_none() {
            let t = self.form();
            self.value = OnceLock::from(t);
        }
        self.factors = None;
        self.value.get_mut().expect("formed just above")
    }

    /// The gradient as a tensor, formed if it was not.
    pub(crate) fn into_tensor(mut self) -> Tensor<T> {
        match self.value.take() {
            Some(t) => t,
            None => self.form(),
        }
    }

    /// Calls `f` with the gradient's elements: the kept tensor's if it was formed, otherwise a
    /// product formed for this call only, into a recycled buffer that goes back to the pool
    /// when `f` returns.
    pub(crate) fn with_data<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        match self.value.get() {
            Some(t) => f(t.data()),
            None => f(self.form().data()),
        }
    }

    /// `gᵀ·x`, `linear_backward`'s `d weight`.
    fn form(&self) -> Tensor<T> {
        let (g, x, _) = self
            .factors
            .as_ref()
            .expect("a LazyGrad without a value holds its factors");
        g.matmul_t(x, true, false)
    }
}
