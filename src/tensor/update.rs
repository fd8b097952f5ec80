//! In-place elementwise updates: what the layers above the tensor (the optimisers, gradient
//! clipping) use to overwrite a tensor's elements quickly.
//!
//! Why a file of its own: `nn` used to call `simd::dispatch`, `parallel::for_chunks` and
//! `pool::with_capacity` directly, so a change to how the tensor vectorises, splits work over
//! threads or recycles buffers reached into the optimisers. These four entry points are the
//! whole contract; they run the same kernels as before (the optimiser golden tests hold to the
//! bit), and the modules behind them may change freely.

pub(crate) use super::matmul::add_scaled_product_t;
use super::parallel::for_chunks;
use super::simd::dispatch;
use super::{pool, Element, Tensor};

/// From this many elements [`par_update`] splits its pass over the matrix-product threads (for
/// tests that need a parameter big enough to be split).
#[cfg(test)]
pub(crate) use super::parallel::PARALLEL_MIN_ELEMS;

/// Runs `body`, a loop over slices, compiled for the best instruction set the CPU has (AVX-512,
/// AVX2 with FMA, or the baseline), chosen at run time.
///
/// Pass the body as an `#[inline(always)] move` closure: inlined, the loop is vectorised for
/// each instruction set; `move` copies the scalars it reads into the closure (captured by
/// reference, LLVM reloads them on every element, since the stores through the slices might
/// change them, and the loop stays scalar: plain SGD ran 7x slower).
#[inline(always)]
pub(crate) fn vectorized<R>(body: impl FnOnce() -> R) -> R {
    dispatch(body)
}

/// `θᵢ ← f(θᵢ, gᵢ)` for every element, vectorised, and split over the matrix-product threads
/// when `theta` is large enough (see [`for_chunks`]; each element is still written exactly
/// once, so the result does not depend on the split). For stateless updates (plain
/// SGD); a rule with per-element state writes its own loop inside [`vectorized`].
///
/// Pass `f` as an `#[inline(always)] move` closure, for the reasons given at [`vectorized`].
///
/// # Panics
/// If `grad` is shorter than `theta` (a bug in the caller, which pairs each parameter with its
/// own gradient).
#[inline(always)]
pub(crate) fn par_update<T: Element>(
    theta: &mut [T],
    grad: &[T],
    f: impl Fn(T, T) -> T + Copy + Sync,
) {
    for_chunks(theta, &|s, t| {
        let g = &grad[s..s + t.len()];
        dispatch(
            #[inline(always)]
            move || {
                for (p, &g) in t.iter_mut().zip(g) {
                    *p = f(*p, g);
                }
            },
        )
    });
}

impl<T: Element> Tensor<T> {
    /// Overwrites the elements with `update`, which receives all of them and leaves each one's
    /// new value in its place: where they lie when nothing else shares the buffer (no
    /// allocation, one memory stream fewer), else in a copy (from the buffer pool) that then
    /// becomes this tensor's buffer, so that other tensors sharing the old one keep the old
    /// values. `update` runs once either way, on the same values, so the result is the same to
    /// the bit.
    pub(crate) fn update_in_place(&mut self, update: impl FnOnce(&mut [T])) {
        if let Some(data) = self.data_mut() {
            update(data);
            return;
        }
        let mut new = pool::with_capacity(self.numel());
        new.extend_from_slice(self.data());
        update(&mut new);
        let shape = std::mem::take(&mut self.shape);
        *self = Tensor::from_parts(new, shape);
    }

    /// `x ← f(x)` for every element, vectorised: in place when nothing else shares the buffer,
    /// else into a new buffer (one pass reading the old values, as [`map`](Tensor::map)). For
    /// gradient clipping, where a collected iterator ran scalar: 20% of `clip_grad_norm`'s time.
    pub(crate) fn map_in_place(&mut self, f: impl Fn(T) -> T + Copy) {
        match self.data_mut() {
            Some(d) => dispatch(
                #[inline(always)]
                move || {
                    for x in d {
                        *x = f(*x);
                    }
                },
            ),
            None => *self = self.map(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_in_place_writes_where_it_lies_unless_shared() {
        let mut a = Tensor::from_fn(&[3, 4], |i| i as f64);
        let before = a.data().as_ptr();
        a.update_in_place(|d| d.iter_mut().for_each(|x| *x *= 2.0));
        assert_eq!(a.data().as_ptr(), before, "unshared: same buffer");
        let held = a.clone();
        a.update_in_place(|d| d.iter_mut().for_each(|x| *x += 1.0));
        assert_ne!(
            a.data().as_ptr(),
            held.data().as_ptr(),
            "shared: a new buffer"
        );
        assert_eq!(a.shape(), &[3, 4]);
        assert_eq!(held.data()[5], 10.0, "the other owner keeps the old values");
        assert_eq!(a.data()[5], 11.0);
    }

    #[test]
    fn map_in_place_either_way() {
        let mut a = Tensor::vector(&[1.0f32, -2.0, 3.0]);
        a.map_in_place(|x| x * 2.0);
        assert_eq!(a.data(), &[2.0, -4.0, 6.0]);
        let held = a.clone();
        a.map_in_place(|x| -x);
        assert_eq!(a.data(), &[-2.0, 4.0, -6.0]);
        assert_eq!(held.data(), &[2.0, -4.0, 6.0]);
    }

    #[test]
    fn par_update_touches_every_element_once_above_the_threshold() {
        let n = PARALLEL_MIN_ELEMS + 77;
        let mut theta: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let grad: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
        crate::tensor::set_num_threads(2);
        par_update(&mut theta, &grad, move |p, g| p - 0.5 * g);
        assert!(theta
            .iter()
            .enumerate()
            .all(|(i, &p)| p == i as f64 - 0.5 * (i % 7) as f64));
    }
}
