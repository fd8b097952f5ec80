//! Losses with fused rules: softmax cross-entropy and binary cross-entropy with logits.
//!
//! Both are fused for the numbers, not for speed:
//!
//! * **Cross-entropy.** Composed, `−log_softmax(z)[t]` is already stable (log_softmax subtracts
//!   the row max), but it records a `[N, C]` log-probability node and a gather for every step
//!   of a classifier. The fused op records one scalar node and its rule is the textbook
//!   `(softmax(z) − onehot(t))/N`, computed from the stable softmax of the value. Its value is
//!   PyTorch's, term by term: `−[(z_t − m) − log Σ e^(z − m)]` per row (shift-invariant: the
//!   log-sum-exp is never added back to the row max `m`), the terms added in f64.
//! * **Binary cross-entropy with logits.** The stable form `max(z, 0) − z·y + log(1 + e^(−|z|))`
//!   composed from `relu`, `abs` and `softplus` has the right value everywhere but the wrong
//!   gradient at exactly `z = 0`: relu'(0) = 0 and abs'(0) = 0 drop the kinks' halves that
//!   cancel in the true derivative, leaving `−y` instead of `σ(0) − y = ½ − y`. A zero-initialised
//!   output layer puts every logit at 0, so that case is the common one. The fused rule is the
//!   exact `σ(z) − y` everywhere.
//!
//! Both rules are written against [`Algebra`]: on tensors they take one fused pass, under
//! `create_graph` they take a composed, differentiable expression (tested against each other).

use super::elementwise::sigmoid;
use super::{Algebra, InputGrads, Op};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use smallvec::smallvec;
use std::sync::Arc;

/// `1/n` for a mean, `1` for a sum.
pub(crate) fn reduction_scale<T: Element>(n: usize, mean: bool) -> T {
    if mean {
        T::one() / T::of(n as f64)
    } else {
        T::one()
    }
}

/// Backward of the fused losses. `g` is the (scalar) gradient of the loss.
pub(crate) fn backward<T: Element, A: Algebra<T>>(
    op: &Op<T>,
    x: &[&A],
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    match op {
        // d/dz [lse(z) − z_t] = softmax(z) − onehot(t), per row, times the reduction's scale.
        Op::CrossEntropy { targets, mean } => {
            smallvec![Some(cross_entropy_backward(x[0], g, targets, *mean))]
        }
        // d/dz [max(z,0) − z·y + log(1 + e^(−|z|))] = σ(z) − y, and d/dy = −z.
        Op::BceWithLogits { mean } => {
            let (z, y) = (x[0], x[1]);
            let shape = z.shape();
            let s: T = reduction_scale(shape.iter().product(), *mean);
            let gb = g.broadcast_to(&shape);
            smallvec![
                needs[0].then(|| A::pointwise(
                    &gb,
                    z,
                    y,
                    |g, z, y| g * s * (sigmoid(z) - y),
                    || gb.mul(&z.sigmoid().sub(y)).scale(s),
                )),
                needs[1].then(|| gb.mul(z).scale(-s)),
            ]
        }
        _ => unreachable!("loss::backward called with {}", op.name()),
    }
}

/// `g·s·(softmax(z) − onehot)` for logits `z` of shape `[N, C]`.
fn cross_entropy_backward<T: Element, A: Algebra<T>>(
    z: &A,
    g: &A,
    targets: &Arc<[usize]>,
    mean: bool,
) -> A {
    let shape = z.shape();
    let s: T = reduction_scale(shape[0], mean);
    // On tensors one fused pass per row: the shift-invariant softmax of the value, scaled, minus
    // the scale at the target. Under create_graph, softmax composed from primitives so that the
    // gradient can be differentiated again.
    let [dz] = A::fork(
        || [z.value().cross_entropy_grad(targets, g.value().item() * s)],
        || {
            let onehot = z.lift(one_hot(&shape, targets));
            let gb = g.broadcast_to(&shape);
            [gb.mul(&softmax_composed(z).sub(&onehot)).scale(s)]
        },
    );
    dz
}

/// Softmax along axis 1 from `Algebra` primitives: `e^(z − m) / Σ e^(z − m)`.
fn softmax_composed<T: Element, A: Algebra<T>>(z: &A) -> A {
    let shape = z.shape();
    // The row max enters as a constant: softmax is invariant to the shift, so the derivative
    // through it is exactly zero and treating it as constant loses nothing.
    let (m, _) = z.value().max_axis(1, true);
    let e = z.sub(&z.lift(m).broadcast_to(&shape)).exp();
    e.div(&e.sum_axis(1, true).broadcast_to(&shape))
}

/// `[N, C]` with a 1 at `(i, targets[i])`.
fn one_hot<T: Element>(shape: &[usize], targets: &[usize]) -> Tensor<T> {
    let c = shape[1];
    let mut buf = vec![T::zero(); shape[0] * c];
    for (i, &t) in targets.iter().enumerate() {
        buf[i * c + t] = T::one();
    }
    Tensor::from_parts(buf, crate::tensor::Shape::from_slice(shape))
}

/// Checks class-index targets against an input of shape `[N, C]`; `op` names the caller.
///
/// # Panics
/// If the input is not 2-D, the number of targets is not `N`, or a target is `>= C`.
#[track_caller]
pub(crate) fn check_class_targets(op: &str, shape: &[usize], targets: &[usize]) {
    assert!(
        shape.len() == 2,
        "{op}: expected input of shape [N, C], got {shape:?}"
    );
    assert!(
        targets.len() == shape[0],
        "{op}: {} targets for input of shape {shape:?}",
        targets.len()
    );
    if let Some((i, &t)) = targets.iter().enumerate().find(|(_, &t)| t >= shape[1]) {
        panic!(
            "{op}: target {t} at row {i} is out of range for input of shape {shape:?} ({} classes)",
            shape[1]
        );
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Fused softmax cross-entropy of logits `[N, C]` against class indices, summed or averaged
    /// over the batch. Public as `nn::cross_entropy`.
    #[track_caller]
    pub(crate) fn cross_entropy_fused(self, targets: &[usize], mean: bool) -> Var<'t, T> {
        let z = self.value();
        check_class_targets("cross_entropy", z.shape(), targets);
        let v = Tensor::scalar(z.cross_entropy_value(targets, mean));
        let op = Op::CrossEntropy {
            targets: targets.into(),
            mean,
        };
        self.record(op, &[self.id], v)
    }

    /// Fused binary cross-entropy of logits against targets of the same shape, summed or
    /// averaged over all elements. Public as `nn::binary_cross_entropy_with_logits`.
    #[track_caller]
    pub(crate) fn bce_with_logits_fused(self, y: Var<'t, T>, mean: bool) -> Var<'t, T> {
        const OP: &str = "binary_cross_entropy_with_logits";
        self.same_tape(OP, &y);
        let (z, yv) = (self.value(), y.value());
        assert!(
            z.shape() == yv.shape(),
            "{OP}: logits of shape {:?} and targets of shape {:?} differ",
            z.shape(),
            yv.shape()
        );
        let zero = T::zero();
        // The terms are added in f64: a sequential sum in f32 drifts on large batches.
        let total: f64 = z
            .data()
            .iter()
            .zip(yv.data())
            .map(|(&z, &y)| (z.max(zero) - z * y + (-z.abs()).exp().ln_1p()).widen())
            .sum();
        let n = z.numel() as f64;
        let v = Tensor::scalar(T::of(if mean { total / n } else { total }));
        self.record(Op::BceWithLogits { mean }, &[self.id, y.id], v)
    }
}

#[cfg(test)]
mod tests {
    use crate::{gradcheck, GradcheckOptions, Tape, Tensor, Var};

    fn logits() -> Tensor<f64> {
        Tensor::from_fn(&[4, 5], |i| ((i as f64) * 0.77).sin() * 3.0)
    }
    const TARGETS: [usize; 4] = [1, 0, 4, 2];

    /// `−Σ log_softmax(z)[i, t_i]`, gathered from the flattened log-probabilities.
    fn composed<'t>(z: Var<'t, f64>, targets: &[usize], mean: bool) -> Var<'t, f64> {
        let (n, c) = (z.shape()[0], z.shape()[1]);
        let idx: Vec<usize> = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| i * c + t)
            .collect();
        let picked = z
            .log_softmax(1)
            .reshape(&[n * c, 1])
            .gather_rows(&idx)
            .sum();
        picked.scale(if mean { -1.0 / n as f64 } else { -1.0 })
    }

    #[test]
    fn fused_cross_entropy_matches_composition() {
        for mean in [true, false] {
            let tape = Tape::new();
            let z = tape.leaf(logits());
            let fused = z.cross_entropy_fused(&TARGETS, mean);
            let comp = composed(z, &TARGETS, mean);
            assert!((fused.value().item() - comp.value().item()).abs() < 1e-12);
            let gf = fused.backward().wrt(z).unwrap().clone();
            let gc = comp.backward().wrt(z).unwrap().clone();
            assert!(gf.allclose(&gc, 1e-12, 1e-14), "{gf:?} vs {gc:?}");
        }
    }

    #[test]
    fn cross_entropy_passes_gradcheck() {
        for mean in [true, false] {
            gradcheck(
                |v| v[0].cross_entropy_fused(&TARGETS, mean),
                &[logits()],
                GradcheckOptions::default(),
            )
            .assert_passed();
        }
    }

    #[test]
    fn cross_entropy_is_finite_for_extreme_logits() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::from_vec(vec![1000.0, 0.0, -1000.0], &[1, 3]).unwrap());
        let loss = z.cross_entropy_fused(&[2], true);
        // lse = 1000 exactly (e^−1000 and e^−2000 vanish), so the loss is 1000 − (−1000).
        assert!((loss.value().item() - 2000.0).abs() < 1e-9);
        let g = loss.backward().wrt(z).unwrap().clone();
        assert!(g.allclose(
            &Tensor::vector(&[1.0, 0.0, -1.0]).reshape(&[1, 3]),
            0.0,
            1e-12
        ));
    }

    /// Under create_graph the composed rule must give the same gradient as the fused kernel, and
    /// its derivative (a Hessian-vector product) must match finite differences of the gradient.
    #[test]
    fn cross_entropy_double_backward() {
        let z0 = logits();
        let v = Tensor::from_fn(&[4, 5], |i| ((i as f64) * 1.3).cos());
        let grad_at = |z: &Tensor<f64>| {
            let tape = Tape::new();
            let zv = tape.leaf(z.clone());
            zv.cross_entropy_fused(&TARGETS, true)
                .backward()
                .wrt(zv)
                .unwrap()
                .clone()
        };
        let tape = Tape::new();
        let z = tape.leaf(z0.clone());
        let g = z
            .cross_entropy_fused(&TARGETS, true)
            .backward_graph()
            .wrt(z)
            .unwrap();
        assert!(g.value().allclose(&grad_at(&z0), 1e-12, 1e-14));
        let hv = (g * tape.constant(v.clone()))
            .sum()
            .backward()
            .wrt(z)
            .unwrap()
            .clone();
        let eps = 1e-5;
        let fd = grad_at(&z0.add(&v.scale(eps)))
            .sub(&grad_at(&z0.sub(&v.scale(eps))))
            .scale(0.5 / eps);
        assert!(hv.allclose(&fd, 1e-6, 1e-8), "{hv:?} vs {fd:?}");
    }

    /// Issue 16: the per-element (per-row) terms were added sequentially in the element type; over
    /// 2²⁰ f32 terms the mean drifted by 0.78% (BCE) and 0.65% (cross-entropy). Added in f64
    /// now.
    #[test]
    fn large_batch_means_do_not_drift_in_f32() {
        let n = 1 << 20;
        let tape = Tape::<f32>::new();
        let z = tape.leaf(Tensor::from_vec(vec![-0.5f32; n], &[n]).unwrap());
        let y = tape.constant(Tensor::zeros(&[n]));
        let bce = f64::from(z.bce_with_logits_fused(y, true).value().item());
        let want = (-0.5f64).exp().ln_1p();
        assert!((bce - want).abs() < 1e-6 * want, "{bce} vs {want}");
        let logits = tape.leaf(Tensor::from_vec(vec![0.0f32; 2 * n], &[n, 2]).unwrap());
        let ce = logits.cross_entropy_fused(&vec![1; n], true).value().item();
        let want = 2f64.ln();
        assert!((f64::from(ce) - want).abs() < 1e-6 * want, "{ce} vs {want}");
    }

    fn bce_inputs() -> [Tensor<f64>; 2] {
        let z = Tensor::from_fn(&[3, 4], |i| ((i as f64) * 0.91).sin() * 4.0);
        let y = Tensor::from_fn(&[3, 4], |i| ((i as f64) * 0.37).cos().abs());
        [z, y]
    }

    #[test]
    fn bce_with_logits_passes_gradcheck_in_both_inputs() {
        for mean in [true, false] {
            gradcheck(
                |v| v[0].bce_with_logits_fused(v[1], mean),
                &bce_inputs(),
                GradcheckOptions::default(),
            )
            .assert_passed();
        }
    }

    #[test]
    fn bce_with_logits_gradient_at_zero_is_sigmoid_minus_target() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::vector(&[0.0, 0.0]));
        let y = tape.constant(Tensor::vector(&[0.0, 1.0]));
        let g = z.bce_with_logits_fused(y, false).backward();
        let g = g.wrt(z).unwrap();
        assert!(
            g.allclose(&Tensor::vector(&[0.5, -0.5]), 0.0, 1e-15),
            "{g:?}"
        );
    }

    #[test]
    fn bce_with_logits_graph_gradient_equals_plain_and_differentiates_again() {
        let [z0, y0] = bce_inputs();
        let tape = Tape::new();
        let z = tape.leaf(z0.clone());
        let y = tape.leaf(y0.clone());
        let loss = z.bce_with_logits_fused(y, true);
        let plain = loss.backward();
        let graph = loss.backward_graph();
        for v in [z, y] {
            let (a, b) = (plain.wrt(v).unwrap(), graph.wrt(v).unwrap().value());
            assert!(a.allclose(&b, 1e-12, 1e-15));
        }
        // d/dz Σ dL/dz = Σ σ'(z)/n: the composed rule is differentiable in z.
        let n = z0.numel() as f64;
        let h = graph.wrt(z).unwrap().sum().backward();
        let want = z0.map(|v| {
            let s = 1.0 / (1.0 + (-v).exp());
            s * (1.0 - s) / n
        });
        assert!(h.wrt(z).unwrap().allclose(&want, 1e-10, 1e-14));
    }
}
