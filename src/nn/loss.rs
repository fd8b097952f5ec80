//! Loss functions, as PyTorch's `torch.nn.functional` losses, documented for users (a table of
//! them, and where they differ from PyTorch) in the [`nn`](crate::nn) module docs ("Losses");
//! the items are used from there (`vgrad::nn::mse_loss`), this module's path is hidden.

use crate::ops::loss::check_class_targets;
use crate::tape::{Tape, Var};
use crate::tensor::{Element, Tensor};

/// How a loss combines its per-element terms (PyTorch's `reduction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// The average: over all elements for element-wise losses, over the batch (`N`) for
    /// class-index losses. PyTorch's default.
    #[default]
    Mean,
    /// The sum.
    Sum,
}

impl Reduction {
    fn is_mean(self) -> bool {
        self == Reduction::Mean
    }

    fn apply<'t, T: Element>(self, per_element: Var<'t, T>) -> Var<'t, T> {
        match self {
            Reduction::Mean => per_element.mean(),
            Reduction::Sum => per_element.sum(),
        }
    }
}

/// A loss target: a [`Var`] (whose gradient is then computed too, as in PyTorch when the
/// target requires grad) or a [`Tensor`] (entered on the prediction's tape as a constant).
pub trait LossTarget<'t, T: Element> {
    /// The target as a variable on `tape`.
    fn into_var(self, tape: &'t Tape<T>) -> Var<'t, T>;
}

impl<'t, T: Element> LossTarget<'t, T> for Var<'t, T> {
    fn into_var(self, _tape: &'t Tape<T>) -> Var<'t, T> {
        self
    }
}

impl<'t, T: Element> LossTarget<'t, T> for Tensor<T> {
    fn into_var(self, tape: &'t Tape<T>) -> Var<'t, T> {
        tape.constant(self)
    }
}

impl<'t, T: Element> LossTarget<'t, T> for &Tensor<T> {
    fn into_var(self, tape: &'t Tape<T>) -> Var<'t, T> {
        tape.constant(self.clone())
    }
}

/// Mean squared error, `mean((p − y)²)` (or the sum), composed from `sub`, `square` and a
/// reduction.
///
/// Derivative: `2(p − y)/n` with respect to `p` for the mean (`n` the number of elements),
/// `2(p − y)` for the sum; the negation of that with respect to `y`.
///
/// # Panics
/// If the shapes differ (PyTorch would broadcast; see the [module docs](self)) or the target is
/// a `Var` on another tape.
///
/// # Example
/// ```
/// use vgrad::nn::{mse_loss, Reduction};
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let p = tape.leaf(Tensor::vector(&[1.0, 2.0]));
/// let loss = mse_loss(p, Tensor::vector(&[0.0, 4.0]), Reduction::Mean);
/// assert!((loss.value().item() - 2.5).abs() < 1e-12); // (1 + 4) / 2
/// let g = loss.backward();
/// assert_eq!(g.wrt(p).unwrap().data(), &[1.0, -2.0]); // 2(p − y)/2
/// ```
#[track_caller]
pub fn mse_loss<'t, T: Element>(
    pred: Var<'t, T>,
    target: impl LossTarget<'t, T>,
    reduction: Reduction,
) -> Var<'t, T> {
    let (pred, target) = regression_operands("mse_loss", pred, target);
    reduction.apply((pred - target).square())
}

/// Checks a regression loss's operands: same tape, same shape.
#[track_caller]
fn regression_operands<'t, T: Element>(
    name: &str,
    pred: Var<'t, T>,
    target: impl LossTarget<'t, T>,
) -> (Var<'t, T>, Var<'t, T>) {
    let target = target.into_var(pred.tape());
    pred.same_tape(name, &target);
    let (ps, ts) = (pred.shape(), target.shape());
    assert!(
        ps == ts,
        "{name}: prediction of shape {ps:?} and target of shape {ts:?} differ"
    );
    (pred, target)
}

/// Mean absolute error, `mean(|p − y|)` (or the sum), composed from `sub`, `abs` and a
/// reduction.
///
/// Derivative: `sign(p − y)/n` with respect to `p` for the mean, `sign(p − y)` for the sum
/// (0 where `p = y`, as PyTorch's); the negation with respect to `y`.
///
/// # Panics
/// As [`mse_loss`].
///
/// # Example
/// ```
/// use vgrad::nn::{l1_loss, Reduction};
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let p = tape.leaf(Tensor::vector(&[1.0, 2.0, 3.0]));
/// let loss = l1_loss(p, Tensor::vector(&[0.0, 4.0, 3.0]), Reduction::Sum);
/// assert_eq!(loss.value().item(), 3.0);
/// assert_eq!(loss.backward().wrt(p).unwrap().data(), &[1.0, -1.0, 0.0]);
/// ```
#[track_caller]
pub fn l1_loss<'t, T: Element>(
    pred: Var<'t, T>,
    target: impl LossTarget<'t, T>,
    reduction: Reduction,
) -> Var<'t, T> {
    let (pred, target) = regression_operands("l1_loss", pred, target);
    reduction.apply((pred - target).abs())
}

/// `½q² + δ(a − q)` with `a = |d|` and `q = min(a, δ)`: Huber's function of the residual
/// `d`, composed so that its derivative is PyTorch's everywhere, `d` inside and `±δ` outside,
/// including at `|d| = δ` and (through `abs`) 0 at `d = 0`.
fn huber<'t, T: Element>(d: Var<'t, T>, delta: T) -> Var<'t, T> {
    let a = d.abs();
    let q = a.clamp_max(delta);
    q.square().scale(T::of(0.5)) + (a - q).scale(delta)
}

#[track_caller]
fn check_positive<T: Element>(name: &str, what: &str, x: T) {
    assert!(
        x > T::zero() && x.is_finite(),
        "{name}: {what} must be positive and finite, got {}",
        x.to_f64().unwrap_or(f64::NAN)
    );
}

/// Huber loss with threshold `delta` (PyTorch's `huber_loss`, default `delta = 1`): per
/// element `½d²` where `|d| < δ` and `δ(|d| − ½δ)` elsewhere, with `d = p − y`; then the mean
/// or the sum. Quadratic near the target, linear (so robust to outliers) far from it.
///
/// Derivative with respect to `p`: `d` where `|d| ≤ δ`, `δ·sign(d)` elsewhere (divided by the
/// element count for the mean); the negation with respect to `y`.
///
/// # Panics
/// As [`mse_loss`], and if `delta` is not positive and finite (PyTorch also rejects
/// `delta ≤ 0`).
///
/// # Example
/// ```
/// use vgrad::nn::{huber_loss, Reduction};
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let p = tape.leaf(Tensor::vector(&[0.5, 3.0]));
/// let loss = huber_loss(p, Tensor::vector(&[0.0, 0.0]), 1.0, Reduction::Sum);
/// assert!((loss.value().item() - (0.125 + 2.5)).abs() < 1e-12);
/// assert_eq!(loss.backward().wrt(p).unwrap().data(), &[0.5, 1.0]);
/// ```
#[track_caller]
pub fn huber_loss<'t, T: Element>(
    pred: Var<'t, T>,
    target: impl LossTarget<'t, T>,
    delta: T,
    reduction: Reduction,
) -> Var<'t, T> {
    check_positive("huber_loss", "delta", delta);
    let (pred, target) = regression_operands("huber_loss", pred, target);
    reduction.apply(huber(pred - target, delta))
}

/// Smooth L1 loss with threshold `beta` (PyTorch's `smooth_l1_loss`, default `beta = 1`): per
/// element `½d²/β` where `|d| < β` and `|d| − ½β` elsewhere, with `d = p − y`; `beta = 0` is
/// [`l1_loss`]. It is [`huber_loss`] divided by `β`.
///
/// Derivative with respect to `p`: `d/β` where `|d| ≤ β`, `sign(d)` elsewhere (divided by the
/// element count for the mean); the negation with respect to `y`.
///
/// # Panics
/// As [`mse_loss`], and if `beta` is negative or not finite (PyTorch also rejects `beta < 0`).
///
/// # Example
/// ```
/// use vgrad::nn::{smooth_l1_loss, Reduction};
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let p = tape.leaf(Tensor::vector(&[0.25, -2.0]));
/// let loss = smooth_l1_loss(p, Tensor::vector(&[0.0, 0.0]), 0.5, Reduction::Sum);
/// assert!((loss.value().item() - (0.0625 + 1.75)).abs() < 1e-12);
/// assert_eq!(loss.backward().wrt(p).unwrap().data(), &[0.5, -1.0]);
/// ```
#[track_caller]
pub fn smooth_l1_loss<'t, T: Element>(
    pred: Var<'t, T>,
    target: impl LossTarget<'t, T>,
    beta: T,
    reduction: Reduction,
) -> Var<'t, T> {
    if beta == T::zero() {
        return l1_loss(pred, target, reduction);
    }
    check_positive("smooth_l1_loss", "beta", beta);
    let (pred, target) = regression_operands("smooth_l1_loss", pred, target);
    reduction.apply(huber(pred - target, beta).scale(T::one() / beta))
}

/// Softmax cross-entropy of logits `[N, C]` against class indices `targets` (one per row, each
/// `< C`): `−(1/N) Σᵢ log softmax(zᵢ)[tᵢ]` for the mean, without the `1/N` for the sum.
///
/// A fused op: the value is computed from the stable log-softmax (the row max is subtracted, so
/// logits like `[1000, 0, −1000]` give finite values and gradients), and the rule is
/// `(softmax(z) − onehot(t))/N` (no `/N` for the sum), the same as differentiating the
/// composition `−log_softmax(z)[t]`.
///
/// # Panics
/// If the logits are not 2-D, `targets.len() != N`, or a target is `>= C`; the message names
/// `cross_entropy`, the offending target and the logits' shape.
///
/// # Example
/// ```
/// use vgrad::nn::{cross_entropy, Reduction};
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let z = tape.leaf(Tensor::from_vec(vec![1000.0, 0.0, -1000.0], &[1, 3])?);
/// let loss = cross_entropy(z, &[2], Reduction::Mean);
/// assert!((loss.value().item() - 2000.0).abs() < 1e-9);
/// let g = loss.backward();
/// assert!(g.wrt(z).unwrap().allclose(&Tensor::from_vec(vec![1.0, 0.0, -1.0], &[1, 3])?, 0.0, 1e-12));
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn cross_entropy<'t, T: Element>(
    logits: Var<'t, T>,
    targets: &[usize],
    reduction: Reduction,
) -> Var<'t, T> {
    logits.cross_entropy_fused(targets, reduction.is_mean())
}

/// Negative log-likelihood of log-probabilities `[N, C]` (usually a
/// [`log_softmax`](crate::Var::log_softmax) output) against class indices:
/// `−(1/N) Σᵢ xᵢ[tᵢ]` for the mean, without the `1/N` for the sum.
///
/// Composed: the picked entries are gathered from the flattened input and summed. Derivative:
/// `−1/N` (or `−1`) at each `(i, tᵢ)`, zero elsewhere. `nll_loss(z.log_softmax(1), t, r)`
/// equals [`cross_entropy`]`(z, t, r)`.
///
/// # Panics
/// If the input is not 2-D, `targets.len() != N`, or a target is `>= C`.
///
/// # Example
/// ```
/// use vgrad::nn::{nll_loss, Reduction};
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let lp = tape.leaf(Tensor::from_vec(vec![-0.5, -1.0, -2.0, -0.1], &[2, 2])?);
/// let loss = nll_loss(lp, &[1, 0], Reduction::Sum);
/// assert!((loss.value().item() - 3.0).abs() < 1e-12); // 1.0 + 2.0
/// assert_eq!(loss.backward().wrt(lp).unwrap().data(), &[0.0, -1.0, -1.0, 0.0]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn nll_loss<'t, T: Element>(
    log_probs: Var<'t, T>,
    targets: &[usize],
    reduction: Reduction,
) -> Var<'t, T> {
    let shape = log_probs.shape();
    check_class_targets("nll_loss", &shape, targets);
    let (n, c) = (shape[0], shape[1]);
    let idx: Vec<usize> = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| i * c + t)
        .collect();
    let picked = log_probs.reshape(&[n * c, 1]).gather_rows(&idx).sum();
    let s = match reduction {
        Reduction::Mean => -T::one() / T::of(n as f64),
        Reduction::Sum => -T::one(),
    };
    picked.scale(s)
}

/// Binary cross-entropy of logits `z` against targets `y ∈ [0, 1]` of the same shape, averaged
/// (or summed) over all elements, in the stable form
/// `max(z, 0) − z·y + log(1 + e^(−|z|))`, which equals `−[y·log σ(z) + (1 − y)·log(1 − σ(z))]`
/// without ever evaluating `log 0` or `exp` of a large number.
///
/// A fused op. Derivatives (times `1/n` for the mean): `σ(z) − y` with respect to `z`, exact at
/// `z = 0` (the composition of `relu`, `abs` and `softplus` would give `−y` there), and `−z`
/// with respect to `y` when the target is a `Var` that needs a gradient.
///
/// # Panics
/// If the shapes differ or the target is a `Var` on another tape.
///
/// # Example
/// ```
/// use vgrad::nn::{binary_cross_entropy_with_logits, Reduction};
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let z = tape.leaf(Tensor::vector(&[0.0, 1000.0, -1000.0]));
/// let loss = binary_cross_entropy_with_logits(z, Tensor::vector(&[1.0, 1.0, 0.0]), Reduction::Sum);
/// assert!((loss.value().item() - 2f64.ln()).abs() < 1e-12); // only z = 0 costs log 2
/// let g = loss.backward();
/// assert!(g.wrt(z).unwrap().allclose(&Tensor::vector(&[-0.5, 0.0, 0.0]), 0.0, 1e-12));
/// ```
#[track_caller]
pub fn binary_cross_entropy_with_logits<'t, T: Element>(
    logits: Var<'t, T>,
    targets: impl LossTarget<'t, T>,
    reduction: Reduction,
) -> Var<'t, T> {
    let y = targets.into_var(logits.tape());
    logits.bce_with_logits_fused(y, reduction.is_mean())
}
