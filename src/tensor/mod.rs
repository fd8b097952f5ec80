//! `Tensor<T>`: an immutable, n-dimensional, row-major array with shared storage.
//!
//! A tensor is a shape plus an `Arc`-shared `Vec<T>` buffer, so `clone` is a reference-count
//! increment and the tape can keep every intermediate value without copying it. When the last
//! tensor sharing a buffer is dropped, the buffer is kept for the next tensor of its size on the
//! same thread ([`release_buffers`] frees them). Tensors are always contiguous:
//! a transpose materialises its result, and the one place where a strided view pays — a matmul
//! with a transposed operand — passes the transpose to the GEMM as strides instead
//! (see [`Tensor::matmul_t`]).
//!
//! The methods here compute values only; they never record anything. Differentiable versions of
//! the same operations live on [`Var`](crate::Var).

mod element;
#[cfg(target_arch = "x86_64")]
mod gemm512;
mod kernels;
mod matmul;
pub(crate) mod parallel;
pub(crate) mod pool;
pub(crate) mod simd;
pub(crate) mod stats;
pub(crate) mod update;
pub(crate) mod vmath;

pub use element::Element;
pub(crate) use kernels::broadcast_shapes;
pub use parallel::{num_threads, set_num_threads};
pub use pool::release_buffers;
pub use simd::{flushes_denormals, restore_default_flush, set_flush_denormal};

use crate::error::{Error, Result};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;

/// A tensor shape: one extent per axis, outermost first. Scalars have an empty shape.
pub type Shape = SmallVec<[usize; 4]>;

/// An n-dimensional array of `f32` or `f64`, row-major and contiguous, cheap to clone.
///
/// # Example
/// ```
/// use vgrad::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// let b = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3])?;
/// let c = a.add(&b); // broadcasts [3] over [2, 3]
/// assert_eq!(c.shape(), &[2, 3]);
/// assert_eq!(c.data(), &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
/// # Ok::<(), vgrad::Error>(())
/// ```
pub struct Tensor<T> {
    // `Arc<Vec<T>>` rather than `Arc<[T]>`: kernels fill a `Vec`, and wrapping it costs one small
    // allocation where `Arc<[T]>::from(Vec)` would copy the whole buffer. The `Buffer` wrapper
    // hands the `Vec` to the thread's pool when the last clone is dropped (see `pool`).
    data: Arc<pool::Buffer<T>>,
    shape: Shape,
}

/// A tensor's buffer held weakly, with its shape. The tape keeps a parameter this way once
/// backward is done with it, so that the optimiser, which owns the parameter, can update it in
/// place instead of copying it because the tape shares it.
pub(crate) struct WeakTensor<T> {
    data: std::sync::Weak<pool::Buffer<T>>,
    shape: Shape,
}

impl<T> WeakTensor<T> {
    /// The tensor again, if its buffer still exists unchanged: `None` once every owner dropped
    /// it or one of them wrote to it ([`Tensor::data_mut`] cuts weak handles off).
    pub(crate) fn upgrade(&self) -> Option<Tensor<T>> {
        Some(Tensor {
            data: self.data.upgrade()?,
            shape: self.shape.clone(),
        })
    }
}

// Not derived: `SmallVec`'s `Clone` goes through a generic iterator `collect` (about 60
// instructions for a 2-axis shape, 12% of the per-op overhead benchmark); `from_slice` copies.
impl<T> Clone for Tensor<T> {
    #[inline]
    fn clone(&self) -> Self {
        Tensor {
            data: Arc::clone(&self.data),
            shape: Shape::from_slice(&self.shape),
        }
    }
}

/// The number of elements of `shape`, or `None` when it does not fit a `usize` or a buffer of
/// that many `T`s would exceed `isize::MAX` bytes (the most a Rust allocation may hold).
///
/// An empty shape's nonzero extents must multiply without overflow too: every kernel may take
/// partial products of a shape (rows × columns, outer × inner), and this keeps each of them in
/// range for every tensor that exists.
pub(crate) fn checked_numel<T>(shape: &[usize]) -> Option<usize> {
    let nonzero = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))?;
    let n = if shape.contains(&0) { 0 } else { nonzero };
    let bytes = n.checked_mul(std::mem::size_of::<T>().max(1))?;
    (bytes <= isize::MAX as usize).then_some(n)
}

/// The number of elements of `shape`.
///
/// # Panics
/// Naming `op` and the shape when [`checked_numel`] refuses it: such a shape is a bug in the
/// calling code, as an out-of-range index is.
#[track_caller]
pub(crate) fn numel_of<T>(op: &str, shape: &[usize]) -> usize {
    match checked_numel::<T>(shape) {
        Some(n) => n,
        None => panic!("{op}: shape {shape:?} has more elements than memory can address"),
    }
}

/// [`Error::Alloc`] for a buffer of `n` elements of `T`.
fn alloc_err<T>(shape: &[usize], n: usize) -> Error {
    Error::Alloc {
        shape: shape.to_vec(),
        bytes: n.saturating_mul(std::mem::size_of::<T>()),
    }
}

/// [`Error::Shape`] for a shape whose element count overflows.
fn overflow_err(op: &str, shape: &[usize]) -> Error {
    Error::Shape(format!(
        "{op}: shape {shape:?} has more elements than memory can address"
    ))
}

impl<T: Element> Tensor<T> {
    /// Builds a tensor from a row-major buffer and a shape.
    ///
    /// # Errors
    /// [`Error::Shape`] if the shape's element count overflows; [`Error::LengthMismatch`] if
    /// `data.len()` is not the product of `shape`.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        let expected = checked_numel::<T>(shape).ok_or_else(|| overflow_err("from_vec", shape))?;
        if data.len() != expected {
            return Err(Error::LengthMismatch {
                shape: shape.to_vec(),
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor {
            data: Arc::new(pool::Buffer::new(data)),
            shape: Shape::from_slice(shape),
        })
    }

    /// Builds a tensor by copying a slice; see [`Tensor::from_vec`].
    ///
    /// # Errors
    /// As [`Tensor::from_vec`].
    pub fn from_slice(data: &[T], shape: &[usize]) -> Result<Self> {
        let expected =
            checked_numel::<T>(shape).ok_or_else(|| overflow_err("from_slice", shape))?;
        if data.len() != expected {
            return Err(Error::LengthMismatch {
                shape: shape.to_vec(),
                expected,
                actual: data.len(),
            });
        }
        Self::from_vec(data.to_vec(), shape)
    }

    /// A 1-D tensor holding `data`.
    pub fn vector(data: &[T]) -> Self {
        Tensor {
            data: Arc::new(pool::Buffer::new(data.to_vec())),
            shape: [data.len()].as_slice().into(),
        }
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Tensor {
            data: Arc::new(pool::Buffer::new(vec![value])),
            shape: Shape::new(),
        }
    }

    /// A tensor of the given shape with every element equal to `value`.
    ///
    /// # Panics
    /// If the shape's element count overflows, or its buffer cannot be allocated (a fallible
    /// constructor such as [`Linear::new`](crate::nn::Linear::new) returns an error instead).
    #[track_caller]
    pub fn full(shape: &[usize], value: T) -> Self {
        Self::full_named("full", shape, value)
    }

    /// A tensor of zeros.
    ///
    /// # Panics
    /// As [`Tensor::full`].
    #[track_caller]
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full_named("zeros", shape, T::zero())
    }

    /// A tensor of ones.
    ///
    /// # Panics
    /// As [`Tensor::full`].
    #[track_caller]
    pub fn ones(shape: &[usize]) -> Self {
        Self::full_named("ones", shape, T::one())
    }

    #[track_caller]
    fn full_named(op: &str, shape: &[usize], value: T) -> Self {
        match Self::try_full_named(op, shape, value) {
            Ok(t) => t,
            Err(Error::Shape(msg)) => panic!("{msg}"),
            Err(e) => panic!("{op}: {e}"),
        }
    }

    /// A tensor whose element at flat (row-major) index `i` is `f(i)`.
    ///
    /// # Panics
    /// As [`Tensor::full`].
    #[track_caller]
    pub fn from_fn(shape: &[usize], f: impl FnMut(usize) -> T) -> Self {
        match Self::try_from_fn_named("from_fn", shape, f) {
            Ok(t) => t,
            Err(Error::Shape(msg)) => panic!("{msg}"),
            Err(e) => panic!("from_fn: {e}"),
        }
    }

    /// [`Tensor::full`] for fallible constructors (`op` names the caller in the error): the
    /// buffer is reserved with `try_reserve`, so a size that cannot be allocated is an error
    /// rather than an abort.
    ///
    /// # Errors
    /// [`Error::Shape`] if the element count overflows, [`Error::Alloc`] if the memory is not
    /// there.
    pub(crate) fn try_full_named(op: &str, shape: &[usize], value: T) -> Result<Self> {
        let n = checked_numel::<T>(shape).ok_or_else(|| overflow_err(op, shape))?;
        let mut v = pool::try_with_capacity(n).ok_or_else(|| alloc_err::<T>(shape, n))?;
        v.resize(n, value);
        Ok(Tensor {
            data: Arc::new(pool::Buffer::new(v)),
            shape: Shape::from_slice(shape),
        })
    }

    /// [`Tensor::from_fn`] for fallible constructors; see [`Tensor::try_full_named`].
    ///
    /// # Errors
    /// As [`Tensor::try_full_named`].
    pub(crate) fn try_from_fn_named(
        op: &str,
        shape: &[usize],
        f: impl FnMut(usize) -> T,
    ) -> Result<Self> {
        let n = checked_numel::<T>(shape).ok_or_else(|| overflow_err(op, shape))?;
        let mut v = pool::try_with_capacity(n).ok_or_else(|| alloc_err::<T>(shape, n))?;
        v.extend((0..n).map(f));
        Ok(Tensor {
            data: Arc::new(pool::Buffer::new(v)),
            shape: Shape::from_slice(shape),
        })
    }

    /// Wraps an already-shaped buffer; callers inside the crate guarantee the length.
    #[inline]
    pub(crate) fn from_parts(data: Vec<T>, shape: Shape) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Tensor {
            data: Arc::new(pool::Buffer::new(data)),
            shape,
        }
    }

    /// The shape, outermost axis first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements copied into a `Vec`.
    pub fn to_vec(&self) -> Vec<T> {
        self.data.to_vec()
    }

    /// Mutable access to the elements when this tensor is the only owner of its buffer;
    /// `None` when the buffer is shared. Lets the engine accumulate in place without copying.
    ///
    /// Weak handles ([`WeakTensor`]: what a tape keeps of a parameter after backward) do not
    /// count as sharing: they are cut off, so they can no longer reach the buffer, and a tape that
    /// needs the old value again says so instead of reading the new one.
    pub(crate) fn data_mut(&mut self) -> Option<&mut [T]> {
        if Arc::strong_count(&self.data) != 1 {
            return None;
        }
        // `make_mut` with no other strong owner moves the buffer's header (not its elements) to
        // a fresh allocation and leaves the weak handles dangling; if another thread upgraded
        // one since the count above, it copies instead, which is still correct.
        Some(Arc::make_mut(&mut self.data).as_mut_slice())
    }

    /// How many tensors share this tensor's buffer (itself included).
    pub(crate) fn owners(&self) -> usize {
        Arc::strong_count(&self.data)
    }

    /// A handle that reaches this tensor's buffer only as long as some tensor still owns it
    /// unchanged: see [`WeakTensor::upgrade`].
    pub(crate) fn downgrade(&self) -> WeakTensor<T> {
        WeakTensor {
            data: Arc::downgrade(&self.data),
            shape: self.shape.clone(),
        }
    }

    /// The single element of a one-element tensor (any shape with one element).
    ///
    /// # Panics
    /// If the tensor does not hold exactly one element.
    #[track_caller]
    pub fn item(&self) -> T {
        assert!(
            self.numel() == 1,
            "item: tensor of shape {:?} has {} elements, expected 1",
            self.shape(),
            self.numel()
        );
        self.data[0]
    }

    /// The element at a multi-index.
    ///
    /// # Panics
    /// If the index has the wrong number of axes or is out of bounds.
    #[track_caller]
    pub fn get(&self, index: &[usize]) -> T {
        assert!(
            index.len() == self.ndim() && index.iter().zip(self.shape()).all(|(i, n)| i < n),
            "get: index {index:?} is out of bounds for shape {:?}",
            self.shape()
        );
        let flat = index
            .iter()
            .zip(self.shape())
            .fold(0, |acc, (i, n)| acc * n + i);
        self.data[flat]
    }

    /// Converts every element to another element type.
    pub fn cast<U: Element>(&self) -> Tensor<U> {
        Tensor {
            data: Arc::new(pool::Buffer::new(
                self.data
                    .iter()
                    .map(|x| U::of(x.to_f64().unwrap_or(f64::NAN)))
                    .collect(),
            )),
            shape: Shape::from_slice(&self.shape),
        }
    }

    /// The index of the largest element along `axis`, for every position of the other axes
    /// in row-major order (PyTorch's `argmax(dim)`, flattened): for logits `[N, C]` and
    /// `axis = 1`, the predicted class of each of the N rows. Ties go to the first maximum; a NaN
    /// counts as larger than any number, as in PyTorch.
    ///
    /// # Panics
    /// If `axis` is out of range or the axis is empty.
    ///
    /// # Example
    /// ```
    /// use vgrad::Tensor;
    /// let logits = Tensor::from_vec(vec![0.1f32, 2.0, -1.0, 3.0, 3.0, 0.0], &[2, 3])?;
    /// assert_eq!(logits.argmax(1), [1, 0]);
    /// assert_eq!(logits.argmax(0), [1, 1, 1]);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn argmax(&self, axis: usize) -> Vec<usize> {
        assert!(
            axis < self.ndim(),
            "argmax: axis {axis} out of range for shape {:?}",
            self.shape()
        );
        let n = self.shape[axis];
        assert!(
            n > 0,
            "argmax: axis {axis} of shape {:?} is empty",
            self.shape()
        );
        let outer: usize = self.shape[..axis].iter().product();
        let inner: usize = self.shape[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| self.data[(o * n + k) * inner + i];
                let mut best = 0;
                for k in 1..n {
                    let (x, b) = (at(k), at(best));
                    if !b.is_nan() && (x > b || x.is_nan()) {
                        best = k;
                    }
                }
                out.push(best);
            }
        }
        out
    }

    /// True when every element is finite (no NaN, no ±∞).
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }

    /// The Euclidean norm of all elements, accumulated in `f64` so that tiny gradients
    /// (a deep sigmoid network's are near 1e-32, whose squares underflow `f32`) do not vanish.
    pub fn norm_l2(&self) -> f64 {
        let x = self.data();
        simd::dispatch(
            #[inline(always)]
            move || norm_l2_slice(x),
        )
    }

    /// True when both tensors have the same shape and every pair of elements satisfies
    /// `|a − b| ≤ atol + rtol·|b|` (NumPy's `allclose`).
    pub fn allclose(&self, other: &Tensor<T>, rtol: f64, atol: f64) -> bool {
        self.shape == other.shape
            && self.data.iter().zip(other.data.iter()).all(|(a, b)| {
                let (a, b) = (a.to_f64().unwrap(), b.to_f64().unwrap());
                (a - b).abs() <= atol + rtol * b.abs() || (a == b)
            })
    }
}

/// [`norm_l2_f64`] of a slice, vectorised: the gradient clipping and the monitor take it of
/// every parameter's gradient each step (scalar, it was 80% of `clip_grad_norm`'s time). The
/// squares are summed in sixteen f64 lanes and scaled by the reciprocal of the largest magnitude,
/// so the result can differ from the sequential form in the last bits.
#[inline(always)]
fn norm_l2_slice<T: Element>(x: &[T]) -> f64 {
    // The largest magnitude; NaN compares false and is skipped here (the sum below carries it,
    // and the early return looks for it).
    let larger = |m: T, v: T| {
        let a = v.abs();
        if a > m {
            a
        } else {
            m
        }
    };
    let big = simd::lanes(x, T::zero(), larger)
        .iter()
        .fold(T::zero(), |m, &a| larger(m, a));
    let scale = big.widen();
    if scale == 0.0 || !scale.is_finite() {
        return if x.iter().any(|v| v.is_nan()) {
            f64::NAN
        } else {
            scale
        };
    }
    let inv = 1.0 / scale;
    if inv.is_infinite() {
        // f64 values all below ~5.6e-309 (subnormal): the reciprocal overflows, and every
        // scaled square would be ∞. Rare enough to divide, element by element.
        let sum: f64 = x.iter().map(|v| (v.widen() / scale).powi(2)).sum();
        return scale * sum.sqrt();
    }
    let squares = simd::lanes(x, 0.0f64, move |acc, v| {
        let s = v.widen() * inv;
        acc + s * s
    });
    scale * squares.iter().sum::<f64>().sqrt()
}

/// ‖x‖₂ in f64, scaled by the largest magnitude first so that neither tiny nor huge values
/// underflow or overflow when squared.
pub(crate) fn norm_l2_f64(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let scale = values.clone().fold(0.0f64, |m, x| m.max(x.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return if values.clone().any(|x| x.is_nan()) {
            f64::NAN
        } else {
            scale
        };
    }
    let sum: f64 = values.map(|x| (x / scale) * (x / scale)).sum();
    scale * sum.sqrt()
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?} ", T::DTYPE, self.shape())?;
        fmt::Display::fmt(self, f)
    }
}

/// Prints nested brackets with PyTorch's adaptive number format, eliding the middle of axes
/// longer than 6.
///
/// As `torch`'s printing: when every finite element is an integer, integers with a trailing
/// point (`[1., -2., 3.]`); otherwise four decimals (`0.1235`), unless the nonzero magnitudes
/// span more than a factor of 1000, exceed 1e8 or fall below 1e-4, in which case scientific
/// notation with four decimals and a two-digit exponent (`1.0000e-30`). Elements are
/// right-aligned to a common width. A precision given to the formatter (`{:.2}`) selects fixed
/// notation with that many decimals.
///
/// # Example
/// ```
/// use vgrad::Tensor;
/// assert_eq!(Tensor::vector(&[1.0f32, -2.0, 3.0]).to_string(), "[ 1., -2.,  3.]");
/// assert_eq!(Tensor::vector(&[0.5f64, 0.125]).to_string(), "[0.5000, 0.1250]");
/// assert_eq!(Tensor::vector(&[1e-30f64, 2.0]).to_string(), "[1.0000e-30, 2.0000e+00]");
/// assert_eq!(format!("{:.1}", Tensor::scalar(2.25f32)), "2.2");
/// ```
impl<T: Element> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let style = match f.precision() {
            Some(p) => Style::Fixed(p),
            None => Style::of(&self.data),
        };
        let width = self.data.iter().map(|x| style.format(*x).len()).max();
        let width = width.unwrap_or(0);
        fn rec<T: Element>(
            f: &mut fmt::Formatter<'_>,
            data: &[T],
            shape: &[usize],
            style: Style,
            width: usize,
        ) -> fmt::Result {
            let Some((&n, rest)) = shape.split_first() else {
                return write!(f, "{:>width$}", style.format(data[0]));
            };
            let stride: usize = rest.iter().product();
            write!(f, "[")?;
            let elide = n > 6;
            for i in 0..n {
                if elide && (3..n - 3).contains(&i) {
                    if i == 3 {
                        write!(f, ", ...")?;
                    }
                    continue;
                }
                if i > 0 {
                    write!(f, ", ")?;
                }
                rec(f, &data[i * stride..(i + 1) * stride], rest, style, width)?;
            }
            write!(f, "]")
        }
        rec(f, &self.data, &self.shape, style, width)
    }
}

/// How [`Tensor`]'s `Display` writes numbers (PyTorch's `_Formatter`).
#[derive(Clone, Copy)]
enum Style {
    /// Every finite element is an integer: `3.`.
    Int,
    /// `{:.p}`.
    Fixed(usize),
    /// `1.0000e-30`.
    Sci,
}

impl Style {
    fn of<T: Element>(data: &[T]) -> Style {
        let finite = data.iter().map(|x| x.to_f64().unwrap_or(f64::NAN));
        let finite: Vec<f64> = finite.filter(|x| x.is_finite()).collect();
        let nonzero = finite.iter().map(|x| x.abs()).filter(|&a| a > 0.0);
        let (lo, hi) = nonzero.fold((f64::INFINITY, 0.0f64), |(lo, hi), a| {
            (lo.min(a), hi.max(a))
        });
        if finite.iter().all(|x| x.fract() == 0.0) {
            return if hi > 1e8 { Style::Sci } else { Style::Int };
        }
        if hi / lo > 1000.0 || hi > 1e8 || lo < 1e-4 {
            Style::Sci
        } else {
            Style::Fixed(4)
        }
    }

    fn format<T: Element>(self, x: T) -> String {
        let x = x.to_f64().unwrap_or(f64::NAN);
        if !x.is_finite() {
            return if x.is_nan() {
                "nan".into()
            } else if x > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            };
        }
        match self {
            Style::Int => format!("{x:.0}."),
            Style::Fixed(p) => format!("{x:.p$}"),
            Style::Sci => {
                // Rust writes `2.0000e0`; PyTorch (C's printf) `2.0000e+00`.
                let s = format!("{x:.4e}");
                let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
                let exp: i32 = exp.parse().unwrap_or(0);
                let sign = if exp < 0 { '-' } else { '+' };
                format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
            }
        }
    }
}

#[cfg(test)]
mod norm_tests {
    use super::Tensor;
    use proptest::prelude::*;

    proptest! {
        /// Against the textbook √(Σx²) in f64, on lengths that leave every remainder of the
        /// 16 lanes, in both element types.
        #[test]
        fn norm_l2_matches_the_plain_sum_of_squares(
            v in prop::collection::vec(-1e3f64..1e3, 0..70),
        ) {
            let plain = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let t = Tensor::vector(&v);
            prop_assert!((t.norm_l2() - plain).abs() <= 1e-12 * plain.max(1e-300));
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            let plain32 = v32.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            let n32 = Tensor::vector(&v32).norm_l2();
            prop_assert!((n32 - plain32).abs() <= 1e-12 * plain32.max(1e-300));
        }
    }

    #[test]
    fn norm_l2_neither_underflows_nor_overflows_and_keeps_nan_and_inf() {
        let n = 37;
        let tiny = Tensor::vector(&vec![1e-30f32; n]).norm_l2();
        assert!((tiny / (1e-30f32 as f64 * (n as f64).sqrt()) - 1.0).abs() < 1e-12);
        let huge = Tensor::vector(&vec![1e200f64; n]).norm_l2();
        assert!((huge / (1e200 * (n as f64).sqrt()) - 1.0).abs() < 1e-12);
        let with = |vals: &[f64]| {
            let mut v = vec![0.5; 40];
            for (i, &x) in vals.iter().enumerate() {
                v[7 + 13 * i] = x;
            }
            Tensor::vector(&v).norm_l2()
        };
        assert!(with(&[f64::NAN]).is_nan());
        assert!(with(&[f64::INFINITY, f64::NAN]).is_nan());
        let inf = with(&[f64::NEG_INFINITY]);
        assert!(inf.is_infinite() && inf > 0.0);
        assert!(Tensor::vector(&[0.0, f64::NAN, 0.0]).norm_l2().is_nan());
        assert_eq!(Tensor::<f32>::vector(&[]).norm_l2(), 0.0);
        assert_eq!(Tensor::<f32>::zeros(&[33]).norm_l2(), 0.0);
    }
}
