//! The element types a [`Tensor`](crate::Tensor) may hold: `f32` and `f64`.

use num_traits::{Float, FloatConst, FromPrimitive, ToPrimitive};
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

mod sealed {
    use super::super::pool::{Pool, POOL_F32, POOL_F64};
    use std::cell::RefCell;
    use std::thread::LocalKey;

    // `private_interfaces`: the trait is public only so that `Element` can name it; outside the
    // crate nobody can reach it, let alone call `pool`. `private_bounds`: likewise for
    // `VFloat`, through which `Element`'s vectorised maths is written once for both types.
    #[allow(private_interfaces, private_bounds)]
    pub trait Sealed: Sized + 'static + super::super::vmath::VFloat {
        /// The calling thread's pool of recycled buffers of this type.
        fn pool() -> &'static LocalKey<RefCell<Pool<Self>>>;
    }
    #[allow(private_interfaces)]
    impl Sealed for f32 {
        fn pool() -> &'static LocalKey<RefCell<Pool<Self>>> {
            &POOL_F32
        }
    }
    #[allow(private_interfaces)]
    impl Sealed for f64 {
        fn pool() -> &'static LocalKey<RefCell<Pool<Self>>> {
            &POOL_F64
        }
    }
}

/// A floating-point element type: implemented for `f32` and `f64` only (sealed).
///
/// This is the one generic parameter vgrad's numeric types carry. It bundles the `num-traits`
/// bounds the maths needs with the few things `num-traits` lacks (`erf`, a dtype name).
pub trait Element:
    Float
    + FloatConst
    + FromPrimitive
    + ToPrimitive
    + Debug
    + Display
    + Default
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// The safetensors / NumPy dtype name: `"F32"` or `"F64"`.
    const DTYPE: &'static str;
    /// The error function, erf(x) = 2/√π ∫₀ˣ e^(−t²) dt (from `libm`).
    fn erf(self) -> Self;
    /// Converts from `f64`, rounding to nearest for `f32`.
    fn of(x: f64) -> Self;
    /// Converts to `f64`, exactly. Unlike `ToPrimitive::to_f64` it returns no `Option`, so loops
    /// that widen (the f64 norms) vectorise.
    fn widen(self) -> f64;
    /// `eˣ` computed branch-free so that loops over slices vectorise; within 2 ulp of the
    /// correctly rounded value, NaN in gives NaN out. The engine's `exp`, `sigmoid` and softmax
    /// kernels use it.
    fn exp_fast(self) -> Self;
    /// `eˣ − 1`, accurate near 0, branch-free so that loops over slices vectorise: within 1 ulp
    /// (f32) or 2 ulp (f64) of libm's (measured in `tests/vmath.rs`); `−∞ → −1`, `+∞ → +∞`,
    /// `±0 → ±0`, NaN in gives NaN out. ELU's, SELU's and tanh's kernels use its polynomial
    /// (without the branch for large positive arguments, which theirs never are).
    #[inline(always)]
    fn exp_m1_fast(self) -> Self {
        super::vmath::expm1(self)
    }
    /// `ln(1 + x)`, accurate near 0, branch-free: within 1 ulp of libm's; `−1 → −∞`, below −1
    /// NaN, `+∞ → +∞`, `±0 → ±0`, NaN in gives NaN out. Softplus's kernel uses it.
    #[inline(always)]
    fn ln_1p_fast(self) -> Self {
        super::vmath::log1p(self)
    }
    /// `tanh x`, branch-free: within 2 ulp (f32) or 3 ulp (f64) of libm's; `±∞ → ±1`,
    /// `±0 → ±0`, NaN in gives NaN out. The engine's `tanh` and GELU's tanh form use it.
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        super::vmath::tanh(self)
    }
    /// The error function, branch-free: within 2 ulp of libm's; `±∞ → ±1`, `±0 → ±0`, NaN in
    /// gives NaN out. The engine's `erf` and exact GELU use it; [`erf`](Element::erf) stays
    /// libm's.
    #[inline(always)]
    fn erf_fast(self) -> Self {
        super::vmath::erf(self)
    }
}

impl Element for f32 {
    const DTYPE: &'static str = "F32";
    #[inline]
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        super::simd::exp_f32(self)
    }
}

impl Element for f64 {
    const DTYPE: &'static str = "F64";
    #[inline]
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        super::simd::exp_f64(self)
    }
}
