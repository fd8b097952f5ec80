//! Gradient clipping, as PyTorch's `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.

use super::module::ParamGrads;
use crate::tensor::{norm_l2_f64, Element};

/// Rescales all gradients together so that their global L2 norm is at most `max_norm`, and
/// returns the norm they had before: [`clip_grad_norm_p`] with `norm_type` 2, PyTorch's
/// default.
///
/// As PyTorch: total = ‖all gradients concatenated‖₂; coef = max_norm/(total + 1e-6); every
/// gradient is multiplied by coef when coef < 1 and left alone otherwise. The total is
/// accumulated in `f64` with scaling (so f32 gradients near 1e-32 do not underflow to a zero
/// norm), in name order so that the result does not depend on hash-map order; PyTorch
/// accumulates in the gradients' dtype, so for f32 the returned norm can differ from
/// PyTorch's in the last digits. A non-finite total makes coef NaN or 0 and, as in PyTorch
/// (with its default `error_if_nonfinite=False`), is applied anyway: check the returned total.
///
/// # Panics
/// If `max_norm` is negative or NaN: a threshold fixed by the program, not by its data.
///
/// # Example
/// ```
/// use vgrad::nn::{clip_grad_norm, Param, ParamGrads};
/// use vgrad::Tensor;
/// let p = Param::new(Tensor::<f32>::zeros(&[2]));
/// let mut grads = ParamGrads::default();
/// grads.insert(p.id(), "w".into(), Tensor::vector(&[3.0, 4.0]));
/// let total = clip_grad_norm(&mut grads, 1.0);
/// assert_eq!(total, 5.0);
/// let g = grads.get(&p).unwrap();
/// assert!((g.norm_l2() - 1.0).abs() < 1e-6);
/// ```
#[track_caller]
pub fn clip_grad_norm<T: Element>(grads: &mut ParamGrads<T>, max_norm: f64) -> f64 {
    clip_grad_norm_p(grads, max_norm, 2.0)
}

/// Rescales all gradients together so that their global `norm_type`-norm is at most
/// `max_norm`, and returns the norm they had before (PyTorch's
/// `clip_grad_norm_(parameters, max_norm, norm_type)`).
///
/// total = (Σ |g|ᵖ)^(1/p) over every element of every gradient, p = `norm_type`, or the
/// largest |g| for `f64::INFINITY`; then, as [`clip_grad_norm`], coef = max_norm/(total +
/// 1e-6) is applied when it is below 1 (or NaN). A `norm_type` in (0, 1) gives PyTorch's
/// value too, though it is not a norm (no triangle inequality). The total is accumulated in
/// `f64` in name order, scaled by the largest |g| first so that neither huge nor tiny
/// gradients overflow or underflow when raised to the power p; p = 2 takes
/// [`clip_grad_norm`]'s path, to the bit. A NaN gradient makes the total NaN (for every p,
/// infinity included), which is applied, as in PyTorch; an infinite one makes it ∞ and the
/// gradients zero (∞ times zero, NaN, where it was infinite).
///
/// # Panics
/// If `max_norm` is negative or NaN, or `norm_type` is NaN or not positive: values fixed by
/// the program, not by its data. (PyTorch accepts p ≤ 0 and NaN, but none of them measures
/// size: with p = 0 it counts the gradients that are not all zero, a negative p gives 0 as
/// soon as one element is 0, so nothing is ever clipped, and NaN clips everything to NaN.)
///
/// # Example
/// ```
/// use vgrad::nn::{clip_grad_norm_p, Param, ParamGrads};
/// use vgrad::Tensor;
/// let p = Param::new(Tensor::<f64>::zeros(&[3]));
/// let mut grads = ParamGrads::default();
/// grads.insert(p.id(), "w".into(), Tensor::vector(&[3.0, -4.0, 1.0]));
/// // The largest magnitude, 4, brought down to 2: every gradient halves.
/// let total = clip_grad_norm_p(&mut grads, 2.0, f64::INFINITY);
/// assert_eq!(total, 4.0);
/// let g = grads.get(&p).unwrap().data().to_vec();
/// assert!((g[1] + 2.0).abs() < 1e-6);
/// // The L1 norm, 4 now, is below 5: nothing changes.
/// assert!((clip_grad_norm_p(&mut grads, 5.0, 1.0) - 4.0).abs() < 1e-6);
/// ```
#[track_caller]
pub fn clip_grad_norm_p<T: Element>(
    grads: &mut ParamGrads<T>,
    max_norm: f64,
    norm_type: f64,
) -> f64 {
    assert!(
        max_norm >= 0.0,
        "clip_grad_norm: max_norm must be >= 0, got {max_norm}"
    );
    assert!(
        norm_type > 0.0,
        "clip_grad_norm: norm_type must be > 0 (or infinity), got {norm_type:?}"
    );
    let total = total_norm(grads, norm_type);
    let coef = max_norm / (total + 1e-6);
    // A NaN coefficient is applied too, as PyTorch's clamp propagates it.
    if coef.is_nan() || coef < 1.0 {
        let c = T::of(coef);
        for g in grads.values_mut() {
            g.map_in_place(move |x| x * c);
        }
    }
    total
}

/// The `p`-norm of all gradients concatenated, in `f64`, in name order (`p > 0`).
fn total_norm<T: Element>(grads: &ParamGrads<T>, p: f64) -> f64 {
    let named = grads.named();
    if p == 2.0 {
        // The path clip_grad_norm always took: per-gradient norms, then the norm of those.
        let per_param: Vec<f64> = named.iter().map(|(_, g)| g.norm_l2()).collect();
        return norm_l2_f64(per_param.iter().copied());
    }
    let all = || {
        named
            .iter()
            .flat_map(|(_, g)| g.data().iter().map(|x| x.widen()))
    };
    // The largest magnitude, NaN if there is one (a NaN total, as PyTorch's for every p).
    let mut big = 0.0f64;
    for x in all() {
        let a = x.abs();
        if a.is_nan() {
            return f64::NAN;
        }
        big = big.max(a);
    }
    if p == f64::INFINITY || big == 0.0 || big == f64::INFINITY {
        return big;
    }
    // Divided rather than multiplied by 1/big: for f64 subnormals 1/big overflows.
    let sum: f64 = all().map(|x| (x.abs() / big).powf(p)).sum();
    big * sum.powf(1.0 / p)
}

/// Clamps every gradient element to `[-clip, clip]` (PyTorch's `clip_grad_value_`). NaN
/// elements stay NaN.
///
/// # Panics
/// If `clip` is negative or NaN.
///
/// # Example
/// ```
/// use vgrad::nn::{clip_grad_value, Param, ParamGrads};
/// use vgrad::Tensor;
/// let p = Param::new(Tensor::<f64>::zeros(&[3]));
/// let mut grads = ParamGrads::default();
/// grads.insert(p.id(), "w".into(), Tensor::vector(&[-2.0, 0.5, 7.0]));
/// clip_grad_value(&mut grads, 1.0);
/// assert_eq!(grads.get(&p).unwrap().data(), &[-1.0, 0.5, 1.0]);
/// ```
#[track_caller]
pub fn clip_grad_value<T: Element>(grads: &mut ParamGrads<T>, clip: f64) {
    assert!(
        clip >= 0.0,
        "clip_grad_value: clip must be >= 0, got {clip}"
    );
    let (lo, hi) = (T::of(-clip), T::of(clip));
    for g in grads.values_mut() {
        // Comparisons rather than `clamp` so NaN passes through, as in PyTorch.
        g.map_in_place(move |x| {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Param;
    use crate::tensor::Tensor;

    fn grads(values: &[&[f32]]) -> (Vec<Param<f32>>, ParamGrads<f32>) {
        let mut out = ParamGrads::default();
        let params: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = Param::new(Tensor::zeros(&[v.len()]));
                out.insert(p.id(), format!("p{i}"), Tensor::vector(v));
                p
            })
            .collect();
        (params, out)
    }

    #[test]
    fn below_the_threshold_nothing_changes() {
        let (ps, mut g) = grads(&[&[0.3, 0.4], &[0.0]]);
        let total = clip_grad_norm(&mut g, 1.0);
        assert!((total - 0.5).abs() < 1e-7);
        assert_eq!(g.get(&ps[0]).unwrap().data(), &[0.3, 0.4]);
    }

    #[test]
    fn tiny_gradients_keep_a_nonzero_norm() {
        // Squares of 1e-30 underflow f32; the f64, scaled accumulation keeps them.
        let (_, mut g) = grads(&[&[1e-30, 1e-30], &[1e-30]]);
        let total = clip_grad_norm(&mut g, 1.0);
        assert!(
            (total / (3f64.sqrt() * 1e-30) - 1.0).abs() < 1e-6,
            "{total}"
        );
    }

    #[test]
    fn nan_propagates_like_pytorch() {
        let (ps, mut g) = grads(&[&[f32::NAN, 1.0]]);
        assert!(clip_grad_norm(&mut g, 1.0).is_nan());
        assert!(g.get(&ps[0]).unwrap().data()[1].is_nan());
        let (ps, mut g) = grads(&[&[f32::NAN, 3.0]]);
        clip_grad_value(&mut g, 1.0);
        let d = g.get(&ps[0]).unwrap().data().to_vec();
        assert!(d[0].is_nan() && d[1] == 1.0);
    }

    /// (Σ|g|ᵖ)^(1/p) over every element, or max |g|, computed directly in f64.
    fn direct(values: &[&[f32]], p: f64) -> f64 {
        let all = values
            .iter()
            .flat_map(|v| v.iter())
            .map(|&x| f64::from(x).abs());
        if p.is_infinite() {
            all.fold(0.0, f64::max)
        } else {
            all.map(|a| a.powf(p)).sum::<f64>().powf(1.0 / p)
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// The returned total against the direct f64 formula, for every norm type, with the
        /// gradients scaled by the coefficient exactly when it is below 1.
        #[test]
        fn total_norm_matches_a_direct_f64_computation(
            a in proptest::collection::vec(-100.0f32..100.0, 1..20),
            b in proptest::collection::vec(-1.0f32..1.0, 0..5),
            p in proptest::sample::select(vec![0.5, 1.0, 1.5, 2.0, 3.0, 7.0, f64::INFINITY]),
            max_norm in 0.0f64..200.0,
        ) {
            let (ps, mut g) = grads(&[&a, &b]);
            let total = clip_grad_norm_p(&mut g, max_norm, p);
            let want = direct(&[&a, &b], p);
            proptest::prop_assert!((total - want).abs() <= 1e-12 * want, "{total} vs {want}");
            let coef = max_norm / (total + 1e-6);
            let out = g.get(&ps[0]).unwrap().data().to_vec();
            for (x, y) in a.iter().zip(&out) {
                let expected = if coef < 1.0 { *x * coef as f32 } else { *x };
                proptest::prop_assert_eq!(*y, expected);
            }
        }
    }

    #[test]
    fn l2_through_either_function_is_the_same_to_the_bit() {
        let v: &[f32] = &[1e-3, -7.5, 0.0, 3.25, 1e6];
        let (_, mut g) = grads(&[v, &[2.0, -1e-20]]);
        let (_, mut h) = grads(&[v, &[2.0, -1e-20]]);
        let a = clip_grad_norm(&mut g, 1.0);
        let b = clip_grad_norm_p(&mut h, 1.0, 2.0);
        assert_eq!(a.to_bits(), b.to_bits());
    }

    #[test]
    fn bad_norm_types_panic() {
        for p in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            let r = std::panic::catch_unwind(|| {
                let (_, mut g) = grads(&[&[1.0]]);
                clip_grad_norm_p(&mut g, 1.0, p)
            });
            let msg = r.unwrap_err();
            let msg = msg.downcast_ref::<String>().unwrap();
            assert!(msg.contains("norm_type must be > 0"), "{p}: {msg}");
        }
    }

    #[test]
    #[should_panic(expected = "max_norm must be >= 0")]
    fn negative_max_norm_panics() {
        let (_, mut g) = grads(&[&[1.0]]);
        clip_grad_norm(&mut g, -1.0);
    }
}
