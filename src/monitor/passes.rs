//! The loops behind the monitor's statistics: sums over slices of f32 or f64 data, accumulated
//! in f64.
//!
//! The monitor runs these over every watched gradient, weight and activation each step, so they
//! are most of what watching a step costs. Two things make them fast:
//!
//! * independent accumulators: an f64 addition waits 3–4 cycles for the previous one into the
//!   same register, so a pass that keeps one register of sums spends most of its time waiting.
//!   Each pass here keeps four registers of sums in flight (two per sum where a pass gathers
//!   two).
//! * fused passes: a weight gradient's Σx², Σ|x| and max |x| come out of one pass, and a weight's
//!   Σw² with the update's Σ(w − w₀)² out of another, sharing each element's load and conversion
//!   to f64.
//!
//! On x86-64 they are written with AVX2 intrinsics, chosen at run time (the crate is built for
//! baseline x86-64). Written as plain loops over lane arrays, as `tensor::simd` does, LLVM's
//! vectoriser kept one register of sums, and where one pass gathered two sums it packed one lane
//! of each into a two-lane vector. AVX2 rather than AVX-512: converting f32 to f64 bounds these
//! passes, and on the project's AMD EPYC machine AVX-512 converted no faster (a 4096-element
//! Σx² took 266 ns either way). Elsewhere, and on a CPU without AVX2, portable loops run. Both
//! sum in another order than a sequential loop would, which changes results only by rounding.

use crate::tensor::Element;

#[inline(always)]
fn f<T: Element>(x: T) -> f64 {
    x.to_f64().unwrap_or(f64::NAN)
}

/// `d` as a slice of `E`, when `T` is `E`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn cast<T: Element, E: 'static>(d: &[T]) -> Option<&[E]> {
    use std::any::TypeId;
    (TypeId::of::<T>() == TypeId::of::<E>()).then(|| {
        // SAFETY: `T` and `E` are the same type.
        unsafe { std::slice::from_raw_parts(d.as_ptr().cast::<E>(), d.len()) }
    })
}

/// Returns `$pass` from `x86` run on the slices `$s…` (and the other arguments `$a…`) when the
/// element type is f32 or f64 and the CPU has AVX2 and FMA; otherwise falls through.
macro_rules! try_x86 {
    ($pass:ident($($s:ident),+ $(; $($a:expr),*)?)) => {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(isa) = x86::Avx2::detect() {
                if let ($(Some($s),)+) = ($(cast::<T, f32>($s),)+) {
                    return x86::$pass(isa, $($s),+ $(, $($a),*)?);
                }
                if let ($(Some($s),)+) = ($(cast::<T, f64>($s),)+) {
                    return x86::$pass(isa, $($s),+ $(, $($a),*)?);
                }
            }
        }
    };
}

/// Σx².
pub(crate) fn sum_sq<T: Element>(d: &[T]) -> f64 {
    try_x86!(sum_sq(d));
    portable::sum_map(d, |x| f(x) * f(x))
}

/// Σx.
pub(crate) fn sum<T: Element>(d: &[T]) -> f64 {
    try_x86!(sum(d));
    portable::sum_map(d, f)
}

/// Σ(x − c)².
pub(crate) fn sum_sq_about<T: Element>(d: &[T], c: f64) -> f64 {
    try_x86!(sum_sq_about(d; c));
    portable::sum_map(d, |x| (f(x) - c) * (f(x) - c))
}

/// `(Σx², Σ|x|, max |x|)` in one pass. The maximum skips NaN (the sums report it) and is 0 for
/// an empty slice.
pub(crate) fn moments<T: Element>(d: &[T]) -> (f64, f64, f64) {
    try_x86!(moments(d));
    (
        portable::sum_map(d, |x| f(x) * f(x)),
        portable::sum_map(d, |x| f(x).abs()),
        portable::max_abs(d),
    )
}

/// `(Σa², Σ(a − b)²)` over two slices of one length, in one pass: the norm of a weight after an
/// update and the size of the update.
pub(crate) fn norm_distance_sq<T: Element>(a: &[T], b: &[T]) -> (f64, f64) {
    assert_eq!(
        a.len(),
        b.len(),
        "norm_distance_sq: slices of different lengths"
    );
    try_x86!(norm_distance_sq(a, b));
    (
        portable::sum_map(a, |x| f(x) * f(x)),
        portable::distance_sq(a, b),
    )
}

/// `(Σx, dead features)` of a ReLU's output `d`, a `[rows, features]` buffer: the sum of every
/// element, and how many features (columns) are zero in every row.
///
/// One pass of column sums: a ReLU's outputs are never negative, so a column is all zero
/// exactly when its sum is. When a NaN makes the sum NaN, a second pass counts the columns
/// whose largest value is zero, skipping NaN, as the column sums cannot.
pub(crate) fn relu_sum_dead<T: Element>(d: &[T], features: usize) -> (f64, usize) {
    let features = features.max(1);
    debug_assert_eq!(d.len() % features, 0, "relu_sum_dead: ragged rows");
    let dead_by_max = |d: &[T]| {
        let mut max = vec![T::zero(); features];
        portable::column_max(d, &mut max);
        max.iter().filter(|m| **m <= T::zero()).count()
    };
    let (total, dead) =
        column_sums(d, features).unwrap_or_else(|| (portable::sum_map(d, f), dead_by_max(d)));
    if total.is_nan() {
        (total, dead_by_max(d))
    } else {
        (total, dead)
    }
}

/// `(Σx, columns whose sum is ≤ 0)` from the AVX2 column sums, where the CPU has them.
fn column_sums<T: Element>(d: &[T], features: usize) -> Option<(f64, usize)> {
    #[cfg(target_arch = "x86_64")]
    if let Some(isa) = x86::Avx2::detect() {
        if let Some(d) = cast::<T, f32>(d) {
            return Some(x86::column_sums(isa, d, features));
        }
        if let Some(d) = cast::<T, f64>(d) {
            return Some(x86::column_sums(isa, d, features));
        }
    }
    let _ = (d, features);
    None
}

/// Loops over lane arrays that LLVM vectorises for whatever the build targets.
mod portable {
    use super::f;
    use crate::tensor::Element;

    /// Independent accumulators: eight f64 lanes, four SSE2 registers.
    const LANES: usize = 8;

    /// `Σ g(x)`. The ragged tail is summed after the main loop, in a scalar of its own: updating
    /// single lanes of the accumulator before the loop stopped the vectoriser.
    #[inline(always)]
    pub(super) fn sum_map<T: Element>(d: &[T], g: impl Fn(T) -> f64) -> f64 {
        let mut acc = [0.0f64; LANES];
        let chunks = d.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                acc[i] += g(c[i]);
            }
        }
        let tail: f64 = rest.iter().map(|&x| g(x)).sum();
        acc.iter().sum::<f64>() + tail
    }

    /// max |x|, skipping NaN. A maximum is exact in the element type, so it is taken there.
    pub(super) fn max_abs<T: Element>(d: &[T]) -> f64 {
        const WIDE: usize = 2 * LANES;
        let mut acc = [T::zero(); WIDE];
        let chunks = d.chunks_exact(WIDE);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..WIDE {
                let a = c[i].abs();
                acc[i] = if a > acc[i] { a } else { acc[i] };
            }
        }
        let tail = rest.iter().fold(T::zero(), |m, &x| m.max(x.abs()));
        acc.iter().fold(f(tail), |m, &x| m.max(f(x)))
    }

    /// `Σ(a − b)²`.
    pub(super) fn distance_sq<T: Element>(a: &[T], b: &[T]) -> f64 {
        let mut acc = [0.0f64; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                let d = f(x[i]) - f(y[i]);
                acc[i] += d * d;
            }
        }
        let tail: f64 = ra
            .iter()
            .zip(rb)
            .map(|(&x, &y)| (f(x) - f(y)) * (f(x) - f(y)))
            .sum();
        acc.iter().sum::<f64>() + tail
    }

    #[inline(always)]
    fn column_max_generic<T: Element>(d: &[T], out: &mut [T]) {
        for row in d.chunks_exact(out.len()) {
            for (m, &x) in out.iter_mut().zip(row) {
                // `max` rather than a comparison: LLVM turns a conditional update into masked
                // stores.
                *m = m.max(x);
            }
        }
    }

    /// Per feature (last axis of a `[rows, features]` buffer), the largest value over the rows,
    /// skipping NaN, into `out` (which starts at zero).
    ///
    /// [`column_max_generic`] compiled again for AVX-512 and for AVX2 and chosen at run time:
    /// each column is independent, so LLVM vectorises this one well on its own.
    pub(super) fn column_max<T: Element>(d: &[T], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512<T: Element>(d: &[T], out: &mut [T]) {
                column_max_generic(d, out)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<T: Element>(d: &[T], out: &mut [T]) {
                column_max_generic(d, out)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports every feature `avx512` is compiled for.
                return unsafe { avx512(d, out) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { avx2(d, out) };
            }
        }
        column_max_generic(d, out)
    }
}

/// The passes written with AVX2 intrinsics.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// An element type the registers load from, converting to f64.
    pub(super) trait Src: Copy + Into<f64> + 'static {
        /// Four elements from `p` as f64 lanes.
        ///
        /// # Safety
        /// `p` must point to four readable elements, on a CPU with AVX.
        unsafe fn load4(p: *const Self) -> __m256d;
    }

    impl Src for f32 {
        #[inline(always)]
        unsafe fn load4(p: *const f32) -> __m256d {
            // SAFETY: the caller's contract.
            unsafe { _mm256_cvtps_pd(_mm_loadu_ps(p)) }
        }
    }

    impl Src for f64 {
        #[inline(always)]
        unsafe fn load4(p: *const f64) -> __m256d {
            // SAFETY: the caller's contract.
            unsafe { _mm256_loadu_pd(p) }
        }
    }

    /// A register of f64 lanes. Every method is `unsafe`: it must run on a CPU with the
    /// register's instruction set, inlined into a function compiled for it. The kernels are
    /// written over this trait rather than for [`Y`] directly so that they read as arithmetic.
    pub(super) trait Reg: Copy {
        /// Lanes per register.
        const N: usize;
        unsafe fn zero() -> Self;
        unsafe fn splat(x: f64) -> Self;
        /// [`N`](Reg::N) elements from `p` (see [`Src`]).
        unsafe fn load<E: Src>(p: *const E) -> Self;
        unsafe fn add(self, o: Self) -> Self;
        unsafe fn sub(self, o: Self) -> Self;
        /// `self · o + acc`, rounded once.
        unsafe fn mul_add(self, o: Self, acc: Self) -> Self;
        unsafe fn abs(self) -> Self;
        /// Per lane, `if self > m { self } else { m }`: a NaN in `self` leaves `m`.
        unsafe fn max_into(self, m: Self) -> Self;
        /// The sum of the lanes.
        unsafe fn sum(self) -> f64;
        /// The largest lane (none is NaN).
        unsafe fn max(self) -> f64;
        /// How many lanes are ≤ 0 (NaN is not).
        unsafe fn count_non_positive(self) -> usize;
    }

    /// Four f64 lanes in an AVX2 register.
    #[derive(Clone, Copy)]
    pub(super) struct Y(__m256d);

    // SAFETY (every block below): the trait's contract, that the CPU has the instruction set.
    // SAFETY (every block below): the trait's contract, that the CPU has AVX2 and FMA.
    impl Reg for Y {
        const N: usize = 4;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Y(_mm256_setzero_pd()) }
        }
        #[inline(always)]
        unsafe fn splat(x: f64) -> Self {
            unsafe { Y(_mm256_set1_pd(x)) }
        }
        #[inline(always)]
        unsafe fn load<E: Src>(p: *const E) -> Self {
            unsafe { Y(E::load4(p)) }
        }
        #[inline(always)]
        unsafe fn add(self, o: Self) -> Self {
            unsafe { Y(_mm256_add_pd(self.0, o.0)) }
        }
        #[inline(always)]
        unsafe fn sub(self, o: Self) -> Self {
            unsafe { Y(_mm256_sub_pd(self.0, o.0)) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, o: Self, acc: Self) -> Self {
            unsafe { Y(_mm256_fmadd_pd(self.0, o.0, acc.0)) }
        }
        #[inline(always)]
        unsafe fn abs(self) -> Self {
            unsafe { Y(_mm256_andnot_pd(_mm256_set1_pd(-0.0), self.0)) }
        }
        #[inline(always)]
        unsafe fn max_into(self, m: Self) -> Self {
            unsafe { Y(_mm256_max_pd(self.0, m.0)) }
        }
        #[inline(always)]
        unsafe fn sum(self) -> f64 {
            unsafe {
                let h = _mm_add_pd(
                    _mm256_castpd256_pd128(self.0),
                    _mm256_extractf128_pd(self.0, 1),
                );
                _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)))
            }
        }
        #[inline(always)]
        unsafe fn max(self) -> f64 {
            unsafe {
                let h = _mm_max_pd(
                    _mm256_castpd256_pd128(self.0),
                    _mm256_extractf128_pd(self.0, 1),
                );
                _mm_cvtsd_f64(_mm_max_sd(h, _mm_unpackhi_pd(h, h)))
            }
        }
        #[inline(always)]
        unsafe fn count_non_positive(self) -> usize {
            unsafe {
                let le = _mm256_cmp_pd::<_CMP_LE_OQ>(self.0, _mm256_setzero_pd());
                _mm256_movemask_pd(le).count_ones() as usize
            }
        }
    }

    /// Proof that the CPU has AVX2 and FMA, which the kernels are compiled for: only
    /// [`detect`](Avx2::detect) makes one.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx2(());

    impl Avx2 {
        #[inline]
        pub(super) fn detect() -> Option<Avx2> {
            (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
                .then_some(Avx2(()))
        }
    }

    /// Defines `$name`, which runs `$kernel::<Y, E>` compiled for AVX2 and FMA.
    macro_rules! dispatch {
        ($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $kernel:ident) => {
            pub(super) fn $name<E: Src>(_: Avx2, $($arg: $ty),*) -> $ret {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<E: Src>($($arg: $ty),*) -> $ret {
                    // SAFETY: compiled for AVX2 and FMA, called only where the CPU has them.
                    unsafe { $kernel::<Y, E>($($arg),*) }
                }
                // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA.
                unsafe { avx2($($arg),*) }
            }
        };
    }

    dispatch!(sum_sq(d: &[E]) -> f64 = sum_sq_kernel);
    dispatch!(sum(d: &[E]) -> f64 = sum_kernel);
    dispatch!(sum_sq_about(d: &[E], c: f64) -> f64 = sum_sq_about_kernel);
    dispatch!(moments(d: &[E]) -> (f64, f64, f64) = moments_kernel);
    dispatch!(norm_distance_sq(a: &[E], b: &[E]) -> (f64, f64) = norm_distance_sq_kernel);
    dispatch!(column_sums(d: &[E], features: usize) -> (f64, usize) = column_sums_kernel);

    /// `Σ g(x)` with four registers of sums, `g` mapping a register of elements to the terms
    /// added into `acc` (`g(x, acc)`), `tail` the same for one element.
    ///
    /// # Safety
    /// As for [`Reg`].
    #[inline(always)]
    unsafe fn fold4<V: Reg, E: Src>(
        d: &[E],
        g: impl Fn(V, V) -> V,
        tail: impl Fn(f64) -> f64,
    ) -> f64 {
        let n = d.len();
        let p = d.as_ptr();
        let mut i = 0;
        // SAFETY: every load reads `V::N` elements from index `i + k·V::N`, all below `n`.
        unsafe {
            let (mut a0, mut a1, mut a2, mut a3) = (V::zero(), V::zero(), V::zero(), V::zero());
            while i + 4 * V::N <= n {
                a0 = g(V::load(p.add(i)), a0);
                a1 = g(V::load(p.add(i + V::N)), a1);
                a2 = g(V::load(p.add(i + 2 * V::N)), a2);
                a3 = g(V::load(p.add(i + 3 * V::N)), a3);
                i += 4 * V::N;
            }
            while i + V::N <= n {
                a0 = g(V::load(p.add(i)), a0);
                i += V::N;
            }
            let rest: f64 = d[i..].iter().map(|&x| tail(x.into())).sum();
            a0.add(a1).add(a2.add(a3)).sum() + rest
        }
    }

    #[inline(always)]
    unsafe fn sum_sq_kernel<V: Reg, E: Src>(d: &[E]) -> f64 {
        // SAFETY: the caller's contract.
        unsafe { fold4::<V, E>(d, |x, acc| x.mul_add(x, acc), |x| x * x) }
    }

    #[inline(always)]
    unsafe fn sum_kernel<V: Reg, E: Src>(d: &[E]) -> f64 {
        // SAFETY: the caller's contract.
        unsafe { fold4::<V, E>(d, |x, acc| x.add(acc), |x| x) }
    }

    #[inline(always)]
    unsafe fn sum_sq_about_kernel<V: Reg, E: Src>(d: &[E], c: f64) -> f64 {
        // SAFETY: the caller's contract.
        unsafe {
            let cv = V::splat(c);
            fold4::<V, E>(
                d,
                |x, acc| {
                    let t = x.sub(cv);
                    t.mul_add(t, acc)
                },
                |x| (x - c) * (x - c),
            )
        }
    }

    /// `(Σx², Σ|x|, max |x|)`, two registers of each.
    #[inline(always)]
    unsafe fn moments_kernel<V: Reg, E: Src>(d: &[E]) -> (f64, f64, f64) {
        let n = d.len();
        let p = d.as_ptr();
        let mut i = 0;
        // SAFETY: every load reads `V::N` elements below `n`; the rest is the caller's contract.
        unsafe {
            let (mut s0, mut s1) = (V::zero(), V::zero());
            let (mut a0, mut a1) = (V::zero(), V::zero());
            let (mut m0, mut m1) = (V::zero(), V::zero());
            while i + 2 * V::N <= n {
                let x0 = V::load(p.add(i));
                let x1 = V::load(p.add(i + V::N));
                s0 = x0.mul_add(x0, s0);
                s1 = x1.mul_add(x1, s1);
                let (b0, b1) = (x0.abs(), x1.abs());
                a0 = b0.add(a0);
                a1 = b1.add(a1);
                m0 = b0.max_into(m0);
                m1 = b1.max_into(m1);
                i += 2 * V::N;
            }
            let (mut s, mut a, mut m) = (0.0, 0.0, 0.0f64);
            for &x in &d[i..] {
                let x: f64 = x.into();
                s += x * x;
                a += x.abs();
                m = if x.abs() > m { x.abs() } else { m };
            }
            (
                s0.add(s1).sum() + s,
                a0.add(a1).sum() + a,
                m0.max_into(m1).max().max(m),
            )
        }
    }

    /// `(Σa², Σ(a − b)²)`, two registers of each.
    #[inline(always)]
    unsafe fn norm_distance_sq_kernel<V: Reg, E: Src>(a: &[E], b: &[E]) -> (f64, f64) {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        // SAFETY: every load reads `V::N` elements below `n` from each slice; the rest is the
        // caller's contract.
        unsafe {
            let (mut s0, mut s1) = (V::zero(), V::zero());
            let (mut d0, mut d1) = (V::zero(), V::zero());
            while i + 2 * V::N <= n {
                let x0 = V::load(pa.add(i));
                let x1 = V::load(pa.add(i + V::N));
                let e0 = x0.sub(V::load(pb.add(i)));
                let e1 = x1.sub(V::load(pb.add(i + V::N)));
                s0 = x0.mul_add(x0, s0);
                s1 = x1.mul_add(x1, s1);
                d0 = e0.mul_add(e0, d0);
                d1 = e1.mul_add(e1, d1);
                i += 2 * V::N;
            }
            let (mut s, mut t) = (0.0, 0.0);
            for (&x, &y) in a[i..n].iter().zip(&b[i..n]) {
                let (x, y): (f64, f64) = (x.into(), y.into());
                s += x * x;
                t += (x - y) * (x - y);
            }
            (s0.add(s1).sum() + s, d0.add(d1).sum() + t)
        }
    }

    /// `(Σx, columns whose sum is ≤ 0)` of a `[rows, features]` buffer. The columns go in
    /// strips of four registers, each strip summed down the rows into its own four registers of
    /// sums, which then count the strip's non-positive columns: no buffer of column sums.
    #[inline(always)]
    unsafe fn column_sums_kernel<V: Reg, E: Src>(d: &[E], features: usize) -> (f64, usize) {
        let rows = d.len() / features;
        let p = d.as_ptr();
        let (mut total, mut dead) = (0.0, 0);
        let mut c = 0;
        // SAFETY: every load reads `V::N` elements of row `r` from column `c + k·V::N`, all
        // below `features`, so inside the row; the rest is the caller's contract.
        unsafe {
            while c + 4 * V::N <= features {
                let (mut a0, mut a1, mut a2, mut a3) = (V::zero(), V::zero(), V::zero(), V::zero());
                for r in 0..rows {
                    let q = p.add(r * features + c);
                    a0 = V::load(q).add(a0);
                    a1 = V::load(q.add(V::N)).add(a1);
                    a2 = V::load(q.add(2 * V::N)).add(a2);
                    a3 = V::load(q.add(3 * V::N)).add(a3);
                }
                total += a0.add(a1).add(a2.add(a3)).sum();
                dead += a0.count_non_positive()
                    + a1.count_non_positive()
                    + a2.count_non_positive()
                    + a3.count_non_positive();
                c += 4 * V::N;
            }
            while c + V::N <= features {
                let mut a = V::zero();
                for r in 0..rows {
                    a = V::load(p.add(r * features + c)).add(a);
                }
                total += a.sum();
                dead += a.count_non_positive();
                c += V::N;
            }
        }
        for c in c..features {
            let s: f64 = (0..rows).map(|r| d[r * features + c].into()).sum();
            total += s;
            dead += usize::from(s <= 0.0);
        }
        (total, dead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths around every unroll boundary, values of both signs with a NaN-free spread.
    fn cases<T: Element>() -> Vec<Vec<T>> {
        [
            0,
            1,
            3,
            4,
            7,
            8,
            9,
            15,
            16,
            17,
            31,
            32,
            33,
            63,
            64,
            65,
            100,
            4096 + 5,
        ]
        .iter()
        .map(|&n| {
            (0..n)
                .map(|i| T::of(((i * 7919) % 101) as f64 / 17.0 - 2.9))
                .collect()
        })
        .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
    }

    /// The passes as one implementation computes them.
    struct Impl<T> {
        sum_sq: fn(&[T]) -> f64,
        sum: fn(&[T]) -> f64,
        sum_sq_about: fn(&[T], f64) -> f64,
        moments: fn(&[T]) -> (f64, f64, f64),
        norm_distance_sq: fn(&[T], &[T]) -> (f64, f64),
    }

    /// The portable loops, and what the public functions pick on this CPU (the AVX2 kernels on
    /// an x86-64 CPU that has AVX2).
    fn implementations<T: Element>() -> [(&'static str, Impl<T>); 2] {
        [
            (
                "portable",
                Impl {
                    sum_sq: |d| portable::sum_map(d, |x| f(x) * f(x)),
                    sum: |d| portable::sum_map(d, f),
                    sum_sq_about: |d, c| portable::sum_map(d, |x| (f(x) - c) * (f(x) - c)),
                    moments: |d| {
                        (
                            portable::sum_map(d, |x| f(x) * f(x)),
                            portable::sum_map(d, |x| f(x).abs()),
                            portable::max_abs(d),
                        )
                    },
                    norm_distance_sq: |a, b| {
                        (
                            portable::sum_map(a, |x| f(x) * f(x)),
                            portable::distance_sq(a, b),
                        )
                    },
                },
            ),
            (
                "dispatched",
                Impl {
                    sum_sq,
                    sum,
                    sum_sq_about,
                    moments,
                    norm_distance_sq,
                },
            ),
        ]
    }

    fn check<T: Element>() {
        for (name, imp) in implementations::<T>() {
            check_one(name, &imp);
        }
    }

    fn check_one<T: Element>(name: &str, imp: &Impl<T>) {
        let Impl {
            sum_sq,
            sum,
            sum_sq_about,
            moments,
            norm_distance_sq,
        } = imp;
        for d in cases::<T>() {
            let x: Vec<f64> = d.iter().map(|&v| f(v)).collect();
            let want_sq: f64 = x.iter().map(|v| v * v).sum();
            let want_sum: f64 = x.iter().sum();
            let want_abs: f64 = x.iter().map(|v| v.abs()).sum();
            let want_max = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let want_about: f64 = x.iter().map(|v| (v - 0.3) * (v - 0.3)).sum();
            let at = format!("{name}, {}, n = {}", T::DTYPE, d.len());
            assert!(close(sum_sq(&d), want_sq), "{at}");
            assert!(close(sum(&d), want_sum), "{at}");
            assert!(close(sum_sq_about(&d, 0.3), want_about), "{at}");
            let (s, a, m) = moments(&d);
            assert!(
                close(s, want_sq) && close(a, want_abs) && m == want_max,
                "{at}"
            );
            let b: Vec<T> = d.iter().map(|&v| v * T::of(0.5)).collect();
            let want_dist: f64 = x.iter().map(|v| (v - v * 0.5) * (v - v * 0.5)).sum();
            let (s, t) = norm_distance_sq(&d, &b);
            assert!(close(s, want_sq) && close(t, want_dist), "{at}");
        }
    }

    #[test]
    fn passes_match_plain_sums_at_every_length() {
        check::<f32>();
        check::<f64>();
    }

    #[test]
    fn max_skips_nan_and_sums_report_it() {
        for (name, imp) in implementations::<f32>() {
            for n in [3, 40] {
                let mut d = vec![1.0f32; n];
                d[1] = f32::NAN;
                d[2] = -5.0;
                let (s, a, m) = (imp.moments)(&d);
                assert!(s.is_nan() && a.is_nan(), "{name}");
                assert_eq!(m, 5.0, "{name}");
            }
        }
    }

    /// Column sums give the plain sum and the all-zero columns, for every strip width: widths
    /// around the strips of 16 and 4 columns, some columns never positive.
    fn check_relu<T: Element>() {
        for features in [1, 3, 4, 5, 16, 17, 21, 64, 70] {
            for rows in [1, 2, 7, 64] {
                let d: Vec<T> = (0..rows * features)
                    .map(|i| {
                        let (r, c) = (i / features, i % features);
                        let v = ((i * 7919) % 13) as f64 / 3.0 - 2.0;
                        // Every third column is dead; a few others are zero in most rows.
                        T::of(if c % 3 == 1 || (c % 5 == 0 && r > 0) {
                            0.0
                        } else {
                            v.max(0.0)
                        })
                    })
                    .collect();
                let want_sum: f64 = d.iter().map(|&x| f(x)).sum();
                let want_dead = (0..features)
                    .filter(|&c| (0..rows).all(|r| d[r * features + c] == T::zero()))
                    .count();
                let (total, dead) = relu_sum_dead(&d, features);
                let at = format!("{}, {rows}×{features}", T::DTYPE);
                assert!(close(total, want_sum), "{at}");
                assert_eq!(dead, want_dead, "{at}");
            }
        }
    }

    #[test]
    fn relu_sum_and_dead_columns_in_one_pass() {
        check_relu::<f32>();
        check_relu::<f64>();
        // A NaN: the sum reports it, and the dead columns are still counted, skipping it.
        let d = [0.0f32, 1.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 2.0];
        let (total, dead) = relu_sum_dead(&d, 4);
        assert!(total.is_nan());
        assert_eq!(dead, 2);
        let d = vec![0.0f32; 64 * 64];
        assert_eq!(relu_sum_dead(&d, 64), (0.0, 64));
    }
}
