//! User-defined differentiable ops (PyTorch's `autograd.Function`).

use super::{Algebra, InputGrads, Op};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use smallvec::SmallVec;
use std::sync::Arc;

/// A differentiable op defined outside vgrad: a forward on values and the matching backward.
///
/// Once applied with [`Var::custom`], it behaves like a built-in op on the tape: it is skipped
/// when no input needs a gradient, its hooks and anomalies work the same way, and its backward
/// runs during the sweep.
///
/// Under [`backward_graph`](Var::backward_graph) the gradient it returns is recorded as a
/// constant: a custom op is differentiable once, and contributes no second derivative.
///
/// # Example
/// ```
/// use vgrad::{CustomOp, Tape, Tensor, Var};
/// use std::sync::Arc;
///
/// /// y = x³, with its own backward 3x²·g.
/// struct Cube;
/// impl CustomOp<f64> for Cube {
///     fn name(&self) -> &'static str { "cube" }
///     fn forward(&self, x: &[&Tensor<f64>]) -> Tensor<f64> { x[0].map(|v| v * v * v) }
///     fn backward(&self, x: &[&Tensor<f64>], _y: &Tensor<f64>, g: &Tensor<f64>)
///         -> Vec<Option<Tensor<f64>>> {
///         vec![Some(g.zip_map(x[0], |g, v| 3.0 * v * v * g))]
///     }
/// }
///
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::vector(&[2.0]));
/// let y = Var::custom(Arc::new(Cube), &[x]);
/// let g = y.sum().backward();
/// assert!((g.wrt(x).unwrap().item() - 12.0).abs() < 1e-12);
/// ```
pub trait CustomOp<T: Element> {
    /// The op's name, used in anomalies and debug output.
    fn name(&self) -> &'static str;
    /// The output value from the input values.
    fn forward(&self, inputs: &[&Tensor<T>]) -> Tensor<T>;
    /// Given the inputs, the output and the gradient with respect to the output, the gradient with
    /// respect to each input (same shape as that input), or `None` for an input with no gradient.
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
    ) -> Vec<Option<Tensor<T>>>;

    /// Forward mode ([`Var::jvp`], [`forward::jvp`](crate::forward::jvp)): given the inputs,
    /// the output and each input's tangent (`None` for an input that does not depend on the
    /// variables being differentiated), the output's tangent `Σᵢ Jᵢ·tangentᵢ`, of the output's
    /// shape.
    ///
    /// Provided: returns `None`, and forward mode then builds the tangent from
    /// [`backward`](CustomOp::backward) alone, one call per output element (row `k` of the
    /// Jacobian is `backward` of the `k`-th unit vector), which is exact but costs as many
    /// backward calls as the output has elements. Implement it when the op sits on a path
    /// forward mode runs through often.
    fn jvp(
        &self,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        tangents: &[Option<&Tensor<T>>],
    ) -> Option<Tensor<T>> {
        let _ = (inputs, output, tangents);
        None
    }
}

pub(crate) fn backward<T: Element, A: Algebra<T>>(
    op: &Arc<dyn CustomOp<T>>,
    x: &[&A],
    y: &A,
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    let values: SmallVec<[Tensor<T>; 2]> = x.iter().map(|a| a.value()).collect();
    let refs: SmallVec<[&Tensor<T>; 2]> = values.iter().collect();
    let grads = op.backward(&refs, &y.value(), &g.value());
    assert!(
        grads.len() == x.len(),
        "{}: backward returned {} gradients for {} inputs",
        op.name(),
        grads.len(),
        x.len()
    );
    grads
        .into_iter()
        .zip(x.iter().zip(needs))
        .map(|(gi, (xi, &need))| {
            let gi = gi.filter(|_| need)?;
            assert!(
                gi.shape() == xi.shape().as_slice(),
                "{}: backward returned shape {:?} for an input of shape {:?}",
                op.name(),
                gi.shape(),
                xi.shape()
            );
            Some(g.lift(gi))
        })
        .collect()
}

impl<'t, T: Element> Var<'t, T> {
    /// Applies a user-defined [`CustomOp`] to `inputs`. Derivative: whatever the op's
    /// `backward` returns.
    ///
    /// # Panics
    /// If `inputs` is empty or the tapes differ; during backward, if the op returns the wrong
    /// number or shapes of gradients.
    #[track_caller]
    pub fn custom(op: Arc<dyn CustomOp<T>>, inputs: &[Var<'t, T>]) -> Var<'t, T> {
        assert!(
            !inputs.is_empty(),
            "{}: a custom op needs at least one input",
            op.name()
        );
        for v in &inputs[1..] {
            inputs[0].same_tape(op.name(), v);
        }
        let values: SmallVec<[Tensor<T>; 2]> = inputs.iter().map(|v| v.value()).collect();
        let refs: SmallVec<[&Tensor<T>; 2]> = values.iter().collect();
        let out = op.forward(&refs);
        let ids: SmallVec<[usize; 2]> = inputs.iter().map(|v| v.id).collect();
        inputs[0].record(Op::Custom(op), &ids, out)
    }
}
