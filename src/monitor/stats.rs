//! One-pass statistics of tensors, accumulated in f64.
//!
//! The monitor runs these on every watched gradient and activation, so each is a single pass with
//! no allocation. Norms square in f64, which cannot underflow for f32 data (the smallest f32
//! squared is ~1e-90) nor overflow (the largest squared is ~1e77); for f64 data whose squares leave
//! f64's range the scaled [`Tensor::norm_l2`] takes over.

use crate::nn::Activation;
use crate::ops::Op;
use crate::tensor::{Element, Tensor};

/// Sums gathered in one pass over a tensor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Moments {
    pub(crate) n: usize,
    pub(crate) sum_sq: f64,
    pub(crate) sum_abs: f64,
    pub(crate) max_abs: f64,
}

impl Moments {
    pub(crate) fn of<T: Element>(t: &Tensor<T>) -> Moments {
        let mut m = Moments {
            n: t.numel(),
            ..Moments::default()
        };
        let mut nan = false;
        for &x in t.data() {
            let x = x.to_f64().unwrap_or(f64::NAN);
            let a = x.abs();
            m.sum_abs += a;
            m.sum_sq += x * x;
            // `max` ignores NaN, so remember it separately: a NaN gradient must show as NaN.
            nan |= x.is_nan();
            m.max_abs = m.max_abs.max(a);
        }
        if nan {
            m.max_abs = f64::NAN;
        }
        m
    }

    /// ‖x‖₂, falling back to the scaled norm when the f64 sum of squares left f64's range.
    pub(crate) fn norm<T: Element>(&self, t: &Tensor<T>) -> f64 {
        let underflowed = self.sum_sq < 1e-280 && self.max_abs > 0.0;
        let overflowed = self.sum_sq.is_infinite() && self.max_abs.is_finite();
        if underflowed || overflowed {
            t.norm_l2()
        } else {
            self.sum_sq.sqrt()
        }
    }

    pub(crate) fn mean_abs(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum_abs / self.n as f64
        }
    }
}

/// ‖a − b‖₂ / ‖b‖₂ for two tensors of one shape: the relative size of an update, with `b` the
/// value before it.
pub(crate) fn relative_change<T: Element>(after: &Tensor<T>, before: &Tensor<T>) -> f64 {
    if after.shape() != before.shape() {
        return f64::NAN;
    }
    let (mut d2, mut b2) = (0.0f64, 0.0f64);
    for (&a, &b) in after.data().iter().zip(before.data()) {
        let (a, b) = (
            a.to_f64().unwrap_or(f64::NAN),
            b.to_f64().unwrap_or(f64::NAN),
        );
        d2 += (a - b) * (a - b);
        b2 += b * b;
    }
    d2.sqrt() / b2.sqrt()
}

/// Mean, standard deviation and the activation-specific fractions of one layer output.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ValueStats {
    pub(crate) mean: f64,
    pub(crate) std: f64,
    pub(crate) saturated: Option<f64>,
    pub(crate) dead: Option<f64>,
}

/// The activation an op applies, if it is one of [`Activation`]'s kinds.
pub(crate) fn activation_of<T: Element>(op: &Op<T>) -> Option<Activation<T>> {
    Some(match op {
        Op::Sigmoid => Activation::Sigmoid,
        Op::Tanh => Activation::Tanh,
        Op::Relu => Activation::Relu,
        Op::LeakyRelu(s) => Activation::LeakyRelu(*s),
        Op::Elu(a) => Activation::Elu(*a),
        Op::Selu => Activation::Selu,
        Op::Gelu(g) => Activation::Gelu(*g),
        Op::Softplus { beta, threshold } => Activation::Softplus {
            beta: *beta,
            threshold: *threshold,
        },
        Op::Silu => Activation::Silu,
        _ => return None,
    })
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
    let n = v.numel();
    if n == 0 {
        return ValueStats::default();
    }
    let data = v.data();
    // Shifting by the first element keeps E[x²] − E[x]² accurate when the mean dwarfs the spread
    // (a saturated sigmoid sits near 1 with a tiny std).
    let shift = data[0].to_f64().unwrap_or(0.0);
    let (mut s, mut s2) = (0.0f64, 0.0f64);
    for &x in data {
        let d = x.to_f64().unwrap_or(f64::NAN) - shift;
        s += d;
        s2 += d * d;
    }
    let nf = n as f64;
    let mean_d = s / nf;
    let var = (s2 / nf - mean_d * mean_d).max(0.0);
    let mut out = ValueStats {
        mean: shift + mean_d,
        std: var.sqrt(),
        saturated: None,
        dead: None,
    };
    let count = |pred: &dyn Fn(f64) -> bool| {
        data.iter()
            .filter(|x| pred(x.to_f64().unwrap_or(f64::NAN)))
            .count() as f64
            / nf
    };
    match kind {
        Some(Activation::Sigmoid) => {
            out.saturated = Some(count(&|y| y < margin || y > 1.0 - margin));
        }
        Some(Activation::Tanh) => {
            out.saturated = Some(count(&|y| y.abs() > 1.0 - margin));
        }
        Some(Activation::Relu) => {
            let features = v.shape().last().copied().unwrap_or(1).max(1);
            let mut alive = vec![false; features];
            for (i, &x) in data.iter().enumerate() {
                if x > T::zero() {
                    alive[i % features] = true;
                }
            }
            let dead = alive.iter().filter(|a| !**a).count();
            out.dead = Some(dead as f64 / features as f64);
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
        let m = Moments::of(&t);
        assert!((m.norm(&t) / 1e-29 - 1.0).abs() < 1e-6);
        let t = Tensor::<f64>::full(&[4], 1e-200);
        assert!((Moments::of(&t).norm(&t) / 2e-200 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn nan_shows_in_every_moment() {
        let t = Tensor::<f32>::vector(&[1.0, f32::NAN]);
        let m = Moments::of(&t);
        assert!(m.norm(&t).is_nan() && m.max_abs.is_nan());
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
