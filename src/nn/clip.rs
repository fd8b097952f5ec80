//! Gradient clipping, as PyTorch's `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.

use super::module::ParamGrads;
use crate::tensor::simd::dispatch;
use crate::tensor::{norm_l2_f64, Element, Tensor};

/// Rescales all gradients together so that their global L2 norm is at most `max_norm`, and
/// returns the norm they had before.
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
    assert!(
        max_norm >= 0.0,
        "clip_grad_norm: max_norm must be >= 0, got {max_norm}"
    );
    let per_param: Vec<f64> = grads.named().iter().map(|(_, g)| g.norm_l2()).collect();
    let total = norm_l2_f64(per_param.iter().copied());
    let coef = max_norm / (total + 1e-6);
    // A NaN coefficient is applied too, as PyTorch's clamp propagates it.
    if coef.is_nan() || coef < 1.0 {
        let c = T::of(coef);
        for g in grads.values_mut() {
            update(g, move |x| x * c);
        }
    }
    total
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
        update(g, move |x| {
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

/// Applies `f` to every element of `g`: in place when nothing else shares the gradient's
/// buffer, else into a new tensor. Either way the loop runs inside the run-time dispatch (a
/// collected iterator ran scalar: 20% of `clip_grad_norm`'s time).
fn update<T: Element>(g: &mut Tensor<T>, f: impl Fn(T) -> T + Copy) {
    match g.data_mut() {
        Some(d) => dispatch(
            #[inline(always)]
            move || {
                for x in d {
                    *x = f(*x);
                }
            },
        ),
        None => *g = g.map(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Param;

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

    #[test]
    #[should_panic(expected = "max_norm must be >= 0")]
    fn negative_max_norm_panics() {
        let (_, mut g) = grads(&[&[1.0]]);
        clip_grad_norm(&mut g, -1.0);
    }
}
