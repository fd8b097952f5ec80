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
use std::sync::OnceLock;

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

/// The distribution of a tensor's values in TensorBoard's form (its `HistogramProto`): counts
/// in buckets whose edges grow by 10% from ±10⁻¹² to ±10²⁰, with 0 an edge — the edges PyTorch's
/// `SummaryWriter.add_histogram` uses by default (`bins="tensorflow"`), trimmed the same way to
/// the buckets from the first to the last that holds a value, plus an empty one on the left, so
/// that TensorBoard shows vgrad's histograms as it shows PyTorch's.
///
/// Bucket `i` counts the values in `[bucket_limit[i - 1], bucket_limit[i])` (the last edge of
/// all, about 10²⁰, belongs to the last bucket), as `numpy.histogram` counts them. Values
/// outside ±10²⁰, NaN and infinities fall in no bucket but still count in `num`, and make
/// `min`/`max`/`sum` what they make them.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Smallest value (NaN if any value is NaN).
    pub min: f64,
    /// Largest value (NaN if any value is NaN).
    pub max: f64,
    /// How many values.
    pub num: usize,
    /// Σx, in f64.
    pub sum: f64,
    /// Σx², in f64.
    pub sum_squares: f64,
    /// The right edge of each bucket, increasing.
    pub bucket_limit: Vec<f64>,
    /// How many values fell in each bucket.
    pub bucket: Vec<u64>,
}

/// The default bucket edges of PyTorch's `SummaryWriter` (from TensorFlow's histogram.cc),
/// built the way it builds them — 10⁻¹² multiplied by 1.1 in f64 until it reaches 10²⁰,
/// mirrored, with 0 between — so that they are the same f64s, bit for bit.
fn default_edges() -> &'static [f64] {
    static EDGES: OnceLock<Vec<f64>> = OnceLock::new();
    EDGES.get_or_init(|| {
        let mut pos = Vec::new();
        let mut v = 1e-12;
        while v < 1e20 {
            pos.push(v);
            v *= 1.1;
        }
        let mut edges: Vec<f64> = pos.iter().rev().map(|v| -v).collect();
        edges.push(0.0);
        edges.extend(pos);
        edges
    })
}

/// The bucket of a finite `x` among `edges` (bucket `i` is `[edges[i], edges[i + 1])`, the last
/// one closed), or `None` outside them. A first guess from the logarithm (the positive edges are
/// 10⁻¹²·1.1ʲ, up to rounding), corrected by comparing with the edges themselves, so the
/// answer is exactly the bucket a search would find, in a few comparisons instead of eleven.
fn bucket_of(edges: &[f64], x: f64) -> Option<usize> {
    let last = edges.len() - 1;
    if !(edges[0]..=edges[last]).contains(&x) {
        return None;
    }
    if x == edges[last] {
        return Some(last - 1);
    }
    let zero = last / 2;
    let guess = if x == 0.0 {
        zero
    } else {
        // ln(1.1) = 0.09531…; an offset from the zero edge, clamped inside the table.
        let j = ((x.abs() / 1e-12).ln() / 0.095_310_179_804_324_87).floor();
        let j = if j.is_finite() {
            j.clamp(-1.0, zero as f64)
        } else {
            -1.0
        } as isize;
        let k = if x > 0.0 {
            zero as isize + 1 + j
        } else {
            zero as isize - 2 - j
        };
        k.clamp(0, last as isize - 1) as usize
    };
    let mut k = guess;
    while edges[k] > x {
        k -= 1;
    }
    while edges[k + 1] <= x {
        k += 1;
    }
    Some(k)
}

impl Histogram {
    /// The histogram of `values` with PyTorch's default TensorBoard buckets (see [`Histogram`]);
    /// `None` when no value falls in a bucket (no values, or only NaN and infinities), where
    /// PyTorch raises an error.
    ///
    /// # Example
    /// ```
    /// use vgrad::monitor::Histogram;
    ///
    /// let h = Histogram::of(&[0.5f32, -0.25, 0.5, 2.0]).unwrap();
    /// assert_eq!((h.num, h.min, h.max, h.sum), (4, -0.25, 2.0, 2.75));
    /// assert_eq!(h.bucket.iter().sum::<u64>(), 4);
    /// assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
    /// ```
    pub fn of<T: Element>(values: &[T]) -> Option<Histogram> {
        let edges = default_edges();
        let mut counts = vec![0u64; edges.len() - 1];
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut nan = false;
        for &v in values {
            let x = v.to_f64().unwrap_or(f64::NAN);
            nan |= x.is_nan();
            min = min.min(x);
            max = max.max(x);
            if let Some(k) = bucket_of(edges, x) {
                counts[k] += 1;
            }
        }
        let first = counts.iter().position(|&c| c > 0)?;
        let last = counts.iter().rposition(|&c| c > 0)?;
        // TensorBoard keeps only right edges; an empty bucket before the first full one carries
        // the left edge of the distribution (PyTorch's make_histogram does the same).
        let (bucket, bucket_limit) = if first > 0 {
            (
                counts[first - 1..=last].to_vec(),
                edges[first..=last + 1].to_vec(),
            )
        } else {
            let mut b = vec![0];
            b.extend_from_slice(&counts[..=last]);
            (b, edges[..=last + 1].to_vec())
        };
        if nan {
            (min, max) = (f64::NAN, f64::NAN);
        }
        Some(Histogram {
            min,
            max,
            num: values.len(),
            sum: sum(values),
            sum_squares: sum_sq(values),
            bucket_limit,
            bucket,
        })
    }
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
    fn the_guessed_bucket_is_the_searched_one() {
        let edges = default_edges();
        // The edges as PyTorch builds them: 774 on each side of 0, from 1e-12 up to 1e20.
        assert_eq!(edges.len(), 2 * 774 + 1);
        assert_eq!(edges[775], 1e-12);
        assert!(edges.windows(2).all(|w| w[0] < w[1]));
        let searched = |x: f64| {
            let k = edges.partition_point(|&e| e <= x);
            match k {
                0 => None,
                k if k == edges.len() => (x == edges[k - 1]).then_some(k - 2),
                k => Some(k - 1),
            }
        };
        // Every edge, its neighbours one ulp away, points in between, and values outside.
        let mut xs = vec![0.0, -0.0, 1e-300, -1e-300, 1e21, -1e21, 5e-13, -5e-13];
        for &e in edges {
            xs.extend([e, e.next_up(), e.next_down(), e * 1.05]);
        }
        for x in xs {
            assert_eq!(bucket_of(edges, x), searched(x), "{x:e}");
        }
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
