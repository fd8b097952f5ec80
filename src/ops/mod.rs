//! Ops: the data-only [`Op`] enum, the one backward dispatch, and the [`Algebra`] the backward
//! rules are written in.
//!
//! Each family file (`matmul`, `reduce`, `shape`, `softmax`, `loss`, `norm`, `custom`, and
//! `elementwise` for its arithmetic) holds its backward rules first and below them the methods
//! on [`Var`](crate::Var) that compute the forward value and record the node (`norm` starts with
//! its row kernels). The unary functions in `elementwise` go further: one block per function
//! holds its public method, its value per element and its derivative, written once (the
//! [`Elementwise`](expr::Elementwise) trait, in `expr`); a new activation is one such block plus
//! one line in the list [`Unary`](elementwise::Unary).
//!
//! A backward rule is written once, generically over [`Algebra`], which both [`Tensor`] and
//! [`Var`](crate::Var) implement. The ordinary sweep runs it on tensors, where
//! [`Algebra::pointwise`] takes the fused kernel; `create_graph` runs it on `Var`s, where the
//! same call takes the composed expression, so the gradient is itself differentiable. Tests run
//! both and compare them, which checks every fused kernel against its composition. A unary
//! function's derivative goes one step further still: the fused kernel and the composition are
//! the same expression, evaluated on scalars or recorded on the tape.

pub(crate) mod custom;
pub(crate) mod elementwise;
pub(crate) mod expr;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod reduce;
pub(crate) mod shape;
pub(crate) mod softmax;

pub use custom::CustomOp;
pub use elementwise::GeluApprox;

use crate::tensor::{Element, Shape, Tensor};
use elementwise::Unary;
use smallvec::SmallVec;
use std::sync::Arc;

/// What produced a node. Data only: parents are stored on the node, values on the tape.
#[derive(Clone)]
pub(crate) enum Op<T: Element> {
    /// A variable that needs a gradient.
    Leaf,
    /// A value that needs none (also every op whose inputs need none).
    Constant,
    // Elementwise binary, broadcasting.
    Add,
    Mul,
    // Elementwise with a scalar.
    AddScalar(T),
    MulScalar(T),
    /// Every unary function (`exp`, `sigmoid`, `powf`, ...), with its parameters.
    Unary(Unary<T>),
    // Linear algebra.
    MatMul {
        ta: bool,
        tb: bool,
    },
    /// `x·wᵀ (+ b)`: inputs `[x, w]` or `[x, w, b]`.
    Linear,
    // Reductions.
    SumAll,
    SumAxis {
        axis: usize,
        keepdim: bool,
    },
    MaxAll,
    MaxAxis {
        axis: usize,
        keepdim: bool,
        arg: Arc<[usize]>,
    },
    // Shape.
    BroadcastTo,
    SumTo,
    Reshape,
    Permute(Arc<[usize]>),
    Concat {
        axis: usize,
    },
    Narrow {
        axis: usize,
        start: usize,
    },
    GatherRows(Arc<[usize]>),
    ScatterAddRows(Arc<[usize]>),
    // Normalised exponentials.
    Softmax {
        axis: usize,
    },
    LogSoftmax {
        axis: usize,
    },
    // Fused losses (mean or sum over the batch).
    CrossEntropy {
        targets: Arc<[usize]>,
        mean: bool,
    },
    BceWithLogits {
        mean: bool,
    },
    // Batch normalisation with batch statistics. Behind a pointer, as every payload wider than
    // two words: each node stores an `Op`, and the 1×1 chain moves a node per op.
    BatchNorm(Arc<BatchNormSaved<T>>),
    /// Layer normalisation over the last axis: inputs `x`, then γ and β where present.
    LayerNorm(Arc<LayerNormSaved<T>>),
    // User-defined.
    Custom(Arc<dyn CustomOp<T>>),
}

/// What batch normalisation keeps for backward: the batch mean and 1/√(σ² + ε). Backward
/// recomputes x̂ from the input, as PyTorch saves x, mean and invstd.
pub(crate) struct BatchNormSaved<T> {
    pub(crate) eps: T,
    pub(crate) mean: Tensor<T>,
    pub(crate) inv_std: Tensor<T>,
}

/// What layer normalisation keeps for backward: each row's mean and 1/√(σ² + ε) (`[rows]`),
/// and which of γ and β are inputs. Backward recomputes x̂ from the input.
pub(crate) struct LayerNormSaved<T> {
    pub(crate) eps: T,
    pub(crate) mean: Tensor<T>,
    pub(crate) inv_std: Tensor<T>,
    pub(crate) gamma: bool,
    pub(crate) beta: bool,
}

impl<T: Element> Op<T> {
    /// The op's name in panics, anomalies and `Debug` output.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Leaf => "leaf",
            Op::Constant => "constant",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::AddScalar(_) => "add_scalar",
            Op::MulScalar(_) => "mul_scalar",
            Op::Unary(u) => u.name(),
            Op::MatMul { .. } => "matmul",
            Op::Linear => "linear",
            Op::SumAll | Op::SumAxis { .. } => "sum",
            Op::MaxAll | Op::MaxAxis { .. } => "max",
            Op::BroadcastTo => "broadcast_to",
            Op::SumTo => "sum_to",
            Op::Reshape => "reshape",
            Op::Permute(_) => "permute",
            Op::Concat { .. } => "concat",
            Op::Narrow { .. } => "narrow",
            Op::GatherRows(_) => "gather",
            Op::ScatterAddRows(_) => "scatter_add",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::BceWithLogits { .. } => "binary_cross_entropy_with_logits",
            Op::BatchNorm(_) => "batch_norm",
            Op::LayerNorm(_) => "layer_norm",
            Op::Custom(c) => c.name(),
        }
    }
}

/// Input gradients from one backward rule, `None` where an input needs no gradient.
pub(crate) type InputGrads<A> = SmallVec<[Option<A>; 2]>;

/// The operations backward rules are written in. Implemented by [`Tensor`] (values, fused
/// kernels) and by [`Var`](crate::Var) (recorded, differentiable again).
pub(crate) trait Algebra<T: Element>: Clone + Sized {
    fn shape(&self) -> Shape;
    /// The underlying value (for masks and other constants derived from it).
    fn value(&self) -> Tensor<T>;
    /// Wraps a value as a constant of the same kind as `self`.
    fn lift(&self, t: Tensor<T>) -> Self;
    fn add(&self, o: &Self) -> Self;
    fn mul(&self, o: &Self) -> Self;
    fn scale(&self, s: T) -> Self;
    fn add_scalar(&self, s: T) -> Self;
    fn neg(&self) -> Self {
        self.scale(-T::one())
    }
    fn sub(&self, o: &Self) -> Self {
        self.add(&o.neg())
    }
    fn div(&self, o: &Self) -> Self {
        self.mul(&o.powf(-T::one()))
    }
    /// Applies a unary elementwise function (an [`Op::Unary`]).
    fn unary(&self, op: &Op<T>) -> Self;
    fn exp(&self) -> Self {
        self.unary(&Op::Unary(Unary::Exp(elementwise::Exp)))
    }
    fn sigmoid(&self) -> Self {
        self.unary(&Op::Unary(Unary::Sigmoid(elementwise::Sigmoid)))
    }
    fn powf(&self, p: T) -> Self {
        self.unary(&Op::Unary(Unary::PowF(elementwise::PowF(p))))
    }
    fn matmul_t(&self, o: &Self, ta: bool, tb: bool) -> Self;
    fn sum_to(&self, shape: &[usize]) -> Self;
    fn broadcast_to(&self, shape: &[usize]) -> Self;
    fn sum_axis(&self, axis: usize, keepdim: bool) -> Self;
    fn reshape(&self, shape: &[usize]) -> Self;
    fn permute(&self, perm: &[usize]) -> Self;
    fn narrow(&self, axis: usize, start: usize, len: usize) -> Self;
    fn concat(parts: &[Self], axis: usize) -> Self;
    fn gather_rows(&self, idx: &Arc<[usize]>) -> Self;
    fn scatter_add_rows(&self, idx: &Arc<[usize]>, rows: usize) -> Self;
    /// `g · f'(x)` for an elementwise op with output `y`: on tensors the fused one-pass `kernel`
    /// `(g, x, y) ↦ g·f'(x)`, on `Var`s the differentiable `compose`d expression. `kernel` is
    /// `Copy` so that the vectorised loop can hold its own copy of the parameters it captures.
    fn pointwise(
        g: &Self,
        x: &Self,
        y: &Self,
        kernel: impl Fn(T, T, T) -> T + Sync + Copy,
        compose: impl FnOnce() -> Self,
    ) -> Self;
    /// Multiplies by a constant derived from this operand's value (a mask, a selector).
    fn mul_const(&self, c: Tensor<T>) -> Self {
        self.mul(&self.lift(c))
    }
    /// The general form of [`pointwise`](Algebra::pointwise) for rules that are more than
    /// elementwise (reductions, several outputs): on tensors, the fused `kernel` on values; on
    /// `Var`s, the differentiable `compose`d expression.
    fn fork<const N: usize>(
        kernel: impl FnOnce() -> [Tensor<T>; N],
        compose: impl FnOnce() -> [Self; N],
    ) -> [Self; N];
}

impl<T: Element> Algebra<T> for Tensor<T> {
    fn shape(&self) -> Shape {
        Tensor::shape(self).into()
    }
    fn value(&self) -> Tensor<T> {
        self.clone()
    }
    fn lift(&self, t: Tensor<T>) -> Self {
        t
    }
    fn add(&self, o: &Self) -> Self {
        Tensor::add(self, o)
    }
    fn mul(&self, o: &Self) -> Self {
        Tensor::mul(self, o)
    }
    fn scale(&self, s: T) -> Self {
        Tensor::scale(self, s)
    }
    fn add_scalar(&self, s: T) -> Self {
        Tensor::add_scalar(self, s)
    }
    fn neg(&self) -> Self {
        self.map(|x| -x)
    }
    fn sub(&self, o: &Self) -> Self {
        Tensor::sub(self, o)
    }
    fn div(&self, o: &Self) -> Self {
        Tensor::div(self, o)
    }
    fn unary(&self, op: &Op<T>) -> Self {
        match op {
            Op::Unary(u) => u.forward(self),
            _ => unreachable!("Algebra::unary called with {}", op.name()),
        }
    }
    fn matmul_t(&self, o: &Self, ta: bool, tb: bool) -> Self {
        Tensor::matmul_t(self, o, ta, tb)
    }
    fn sum_to(&self, shape: &[usize]) -> Self {
        Tensor::sum_to(self, shape)
    }
    fn broadcast_to(&self, shape: &[usize]) -> Self {
        Tensor::broadcast_to(self, shape)
    }
    fn sum_axis(&self, axis: usize, keepdim: bool) -> Self {
        Tensor::sum_axis(self, axis, keepdim)
    }
    fn reshape(&self, shape: &[usize]) -> Self {
        Tensor::reshape(self, shape)
    }
    fn permute(&self, perm: &[usize]) -> Self {
        Tensor::permute(self, perm)
    }
    fn narrow(&self, axis: usize, start: usize, len: usize) -> Self {
        Tensor::narrow(self, axis, start, len)
    }
    fn concat(parts: &[Self], axis: usize) -> Self {
        let refs: SmallVec<[&Tensor<T>; 4]> = parts.iter().collect();
        Tensor::concat(&refs, axis)
    }
    fn gather_rows(&self, idx: &Arc<[usize]>) -> Self {
        Tensor::gather_rows(self, idx)
    }
    fn scatter_add_rows(&self, idx: &Arc<[usize]>, rows: usize) -> Self {
        Tensor::scatter_add_rows(self, idx, rows)
    }
    fn pointwise(
        g: &Self,
        x: &Self,
        y: &Self,
        kernel: impl Fn(T, T, T) -> T + Sync + Copy,
        _compose: impl FnOnce() -> Self,
    ) -> Self {
        g.zip3_map(x, y, kernel)
    }
    fn mul_const(&self, c: Tensor<T>) -> Self {
        Tensor::mul(self, &c)
    }
    fn fork<const N: usize>(
        kernel: impl FnOnce() -> [Tensor<T>; N],
        _compose: impl FnOnce() -> [Self; N],
    ) -> [Self; N] {
        kernel()
    }
}

/// The one backward dispatch: gradients of node `op` with inputs `x`, output `y` and output
/// gradient `g`, computed only for inputs whose `needs` flag is set.
pub(crate) fn backward<T: Element, A: Algebra<T>>(
    op: &Op<T>,
    x: &[&A],
    y: &A,
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    match op {
        Op::Leaf | Op::Constant => InputGrads::new(),
        Op::Add | Op::Mul | Op::AddScalar(_) | Op::MulScalar(_) => {
            elementwise::binary_backward(op, x, g, needs)
        }
        Op::Unary(u) => smallvec::smallvec![Some(u.backward(x[0], y, g))],
        Op::MatMul { ta, tb } => matmul::backward(x[0], x[1], g, *ta, *tb, needs),
        Op::Linear => matmul::linear_backward(x, g, needs),
        Op::SumAll | Op::SumAxis { .. } | Op::MaxAll | Op::MaxAxis { .. } => {
            smallvec::smallvec![Some(reduce::backward(op, x[0], y, g))]
        }
        Op::BroadcastTo
        | Op::SumTo
        | Op::Reshape
        | Op::Permute(_)
        | Op::Concat { .. }
        | Op::Narrow { .. }
        | Op::GatherRows(_)
        | Op::ScatterAddRows(_) => shape::backward(op, x, g, needs),
        Op::Softmax { axis } => smallvec::smallvec![Some(softmax::backward(*axis, false, y, g))],
        Op::LogSoftmax { axis } => smallvec::smallvec![Some(softmax::backward(*axis, true, y, g))],
        Op::CrossEntropy { .. } | Op::BceWithLogits { .. } => loss::backward(op, x, g, needs),
        Op::BatchNorm(_) => norm::backward(op, x, g, needs),
        Op::LayerNorm(_) => norm::layer_norm_backward(op, x, g, needs),
        Op::Custom(c) => custom::backward(c, x, y, g, needs),
    }
}

#[cfg(test)]
mod tests {
    use super::Op;

    /// Every node stores an `Op`, and the 1×1 chain of the per-op overhead benchmark moves a
    /// node per op: folding the unary functions into `Op::Unary` kept it at four words.
    #[test]
    fn an_op_stays_four_words() {
        assert!(std::mem::size_of::<Op<f64>>() <= 32);
        assert!(std::mem::size_of::<Op<f32>>() <= 32);
    }
}
