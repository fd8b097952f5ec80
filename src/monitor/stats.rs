//! Statistics of tensors, accumulated in f64.
//!
//! The monitor runs these on every watched gradient, weight and activation, each a pass or two
//! with no allocation (the loops are in `tensor::stats`, beside the other vectorised kernels). Norms square in f64, which
//! cannot underflow for f32 data (the smallest f32 squared is ~1e-90) nor overflow (the largest
//! squared is ~1e77); for f64 data whose squares leave f64's range the scaled
//! [`Tensor::norm_l2`] takes over.

use crate::nn::Activation;
use crate::tensor::stats::{moments, norm_distance_sq, relu_sum_dead, sum, sum_sq, sum_sq_about};
use crate::tensor::{Element, Tensor};

/// ‖x‖₂ from an f64 sum of squares, or the scaled norm when that sum left f64's range (f64
/// data only: tiny values whose squares underflow, or huge ones whose squares overflow).
fn norm_from<T: Element>(sum_sq: f64, t: &Tensor<T>) -> f64 {
    if sum_sq.is_finite() && (sum_sq >= 1e-280 || sum_sq == 0.0 && T::DTYPE == "F32") {
        sum_sq.sqrt()
    } else {
        t.norm_l2()
    }
}

/// ‖x‖₂ accumulated in f64.
pub(crate) fn norm<T: Element>(t: &Tensor<T>) -> f64 {
    norm_from(sum_sq(t.data()), t)
}

/// Norm, mean and max of |x| gathered in one pass over a tensor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Moments {
    pub(crate) norm: f64,
    pub(crate) mean_abs: f64,
    /// Largest |x|; NaN when any element is NaN.
    pub(crate) max_abs: f64,
}

impl Moments {
    pub(crate) fn of<T: Element>(t: &Tensor<T>) -> Moments {
        let d = t.data();
        let (total_sq, total_abs, max) = moments(d);
        let n = d.len().max(1) as f64;
        Moments {
            norm: norm_from(total_sq, t),
            mean_abs: total_abs / n,
            // The comparisons skip NaN; the sum does not, so it tells.
            max_abs: if total_abs.is_nan() { f64::NAN } else { max },
        }
    }
}

/// `(‖after‖₂, ‖after − before‖₂)` for two tensors of one shape (the distance NaN if the shapes
/// differ): a weight's norm and the size of the update that made it, `before` being the value
/// before the update.
pub(crate) fn norm_and_distance<T: Element>(after: &Tensor<T>, before: &Tensor<T>) -> (f64, f64) {
    if after.shape() != before.shape() {
        return (norm(after), f64::NAN);
    }
    let (total_sq, dist_sq) = norm_distance_sq(after.data(), before.data());
    (norm_from(total_sq, after), dist_sq.sqrt())
}

/// Mean, standard deviation and the activation-specific fractions of one layer output.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ValueStats {
    pub(crate) mean: f64,
    pub(crate) std: f64,
    pub(crate) saturated: Option<f64>,
    pub(crate) dead: Option<f64>,
    /// The activation the value came out of, if it is one.
    pub(crate) kind: Option<Activation<f64>>,
}

/// The same activation with f64 parameters, for records that do not carry the element type.
pub(crate) fn activation_f64<T: Element>(a: Activation<T>) -> Activation<f64> {
    let f = |x: T| x.to_f64().unwrap_or(f64::NAN);
    match a {
        Activation::Identity => Activation::Identity,
        Activation::Sigmoid => Activation::Sigmoid,
        Activation::Tanh => Activation::Tanh,
        Activation::Relu => Activation::Relu,
        Activation::LeakyRelu(s) => Activation::LeakyRelu(f(s)),
        Activation::Elu(a) => Activation::Elu(f(a)),
        Activation::Selu => Activation::Selu,
        Activation::Gelu(g) => Activation::Gelu(g),
        Activation::Softplus { beta, threshold } => Activation::Softplus {
            beta: f(beta),
            threshold: f(threshold),
        },
        Activation::Silu => Activation::Silu,
    }
}

/// A short lower-case name for an activation kind (`"relu"`), used in exports and diagnoses.
pub(crate) fn activation_name(a: &Activation<f64>) -> &'static str {
    match a {
        Activation::Identity => "identity",
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
        Activation::Relu => "relu",
        Activation::LeakyRelu(_) => "leaky_relu",
        Activation::Elu(_) => "elu",
        Activation::Selu => "selu",
        Activation::Gelu(_) => "gelu",
        Activation::Softplus { .. } => "softplus",
        Activation::Silu => "silu",
    }
}

/// Statistics of a layer output `v` (shape `[…, features]`), the fractions only for the kinds
/// they mean something for:
///
/// * saturated — sigmoid outputs within `margin` of 0 or 1, tanh outputs with |y| > 1 − margin,
///   where the derivative is below ~`margin`;
/// * dead — ReLU units (last-axis features) that are zero for every sample in the batch, so no
///   gradient reaches their weights this step.
pub(crate) fn value_stats<T: Element>(
    v: &Tensor<T>,
    kind: Option<&Activation<T>>,
    margin: f64,
) -> ValueStats {
    let data = v.data();
    let n = data.len();
    if n == 0 {
        return ValueStats::default();
    }
    // Two passes, the mean first: exact even when the mean dwarfs the spread (a saturated sigmoid
    // sits near 1 with a tiny std), where E[x²] − E[x]² would cancel. A ReLU's dead units come
    // out of the first pass.
    let nf = n as f64;
    let features = v.shape().last().copied().unwrap_or(1).max(1);
    let (total, dead) = match kind {
        Some(Activation::Relu) => {
            let (total, dead) = relu_sum_dead(data, features);
            (total, Some(dead as f64 / features as f64))
        }
        _ => (sum(data), None),
    };
    let mean = total / nf;
    let var = sum_sq_about(data, mean) / nf;
    let mut out = ValueStats {
        mean,
        std: var.sqrt(),
        saturated: None,
        dead,
        kind: kind.map(|k| activation_f64(*k)),
    };
    // Counted in the element type: the thresholds are exact enough at 0.01 for f32.
    let count = |pred: fn(T, T) -> bool, m: T| data.iter().filter(|&&x| pred(x, m)).count();
    let m = T::of(margin);
    match kind {
        Some(Activation::Sigmoid) => {
            let c = count(|y, m| y < m || y > T::one() - m, m);
            out.saturated = Some(c as f64 / nf);
        }
        Some(Activation::Tanh) => {
            let c = count(|y, m| y.abs() > T::one() - m, m);
            out.saturated = Some(c as f64 / nf);
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_of_tiny_f32_gradients_does_not_underflow() {
        let t = Tensor::<f32>::full(&[100], 1e-30);
        assert!((norm(&t) / 1e-29 - 1.0).abs() < 1e-6);
        assert!((Moments::of(&t).norm / 1e-29 - 1.0).abs() < 1e-6);
        let t = Tensor::<f64>::full(&[4], 1e-200);
        assert!((norm(&t) / 2e-200 - 1.0).abs() < 1e-12);
        let t = Tensor::<f64>::full(&[4], 1e200);
        assert!((norm(&t) / 2e200 - 1.0).abs() < 1e-12);
        assert_eq!(norm(&Tensor::<f32>::zeros(&[3])), 0.0);
        // Lengths that are not a multiple of the lane count.
        let t = Tensor::<f32>::from_fn(&[13], |i| i as f32);
        let want = (0..13).map(|i| (i * i) as f64).sum::<f64>().sqrt();
        assert!((norm(&t) - want).abs() < 1e-12);
        let m = Moments::of(&t);
        assert_eq!(m.max_abs, 12.0);
        assert!((m.mean_abs - 6.0).abs() < 1e-12);
    }

    #[test]
    fn nan_shows_in_every_moment() {
        let t = Tensor::<f32>::vector(&[1.0, f32::NAN]);
        let m = Moments::of(&t);
        assert!(m.norm.is_nan() && m.max_abs.is_nan() && norm(&t).is_nan());
    }

    #[test]
    fn relu_dead_units_are_columns_zero_for_every_sample() {
        // 3 samples × 4 units; unit 1 and unit 3 never fire.
        let v = Tensor::<f32>::from_vec(
            vec![1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.5, 0.0, 3.0, 0.0, 0.0, 0.0],
            &[3, 4],
        )
        .unwrap();
        let s = value_stats(&v, Some(&Activation::Relu), 0.01);
        assert_eq!(s.dead, Some(0.5));
        assert_eq!(s.saturated, None);
    }

    #[test]
    fn sigmoid_and_tanh_saturation_use_their_bounds() {
        let v = Tensor::<f64>::vector(&[0.005, 0.5, 0.995, 0.98]);
        let s = value_stats(&v, Some(&Activation::Sigmoid), 0.01);
        assert_eq!(s.saturated, Some(0.5));
        let v = Tensor::<f64>::vector(&[-0.999, 0.0, 0.995, 0.5]);
        let s = value_stats(&v, Some(&Activation::Tanh), 0.01);
        assert_eq!(s.saturated, Some(0.5));
        // The shifted accumulation keeps a tiny spread around a large mean.
        let v = Tensor::<f64>::vector(&[1.0 - 1e-9, 1.0 + 1e-9]);
        let s = value_stats(&v, None, 0.01);
        assert!((s.std / 1e-9 - 1.0).abs() < 1e-6 && (s.mean - 1.0).abs() < 1e-15);
    }
}
