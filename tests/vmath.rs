//! Accuracy of the vectorisable maths behind the activations (`Element::exp_m1_fast`,
//! `ln_1p_fast`, `tanh_fast`, `erf_fast`), in ulps, over millions of inputs: a stride through
//! every bit pattern (so every binade, subnormals and the range ends included) plus a fine
//! linear sweep of the range activations live in, and the special values one by one.
//!
//! References: for f32, the f64 function of the same input rounded to f32 (its own error is
//! 2⁻²⁹ of an f32 ulp); for f64, Rust's `f64` methods (the platform libm) and `libm::erf`, each
//! within 1 ulp of the true value, so the bounds below hold against the true value to 1 ulp
//! more. Distances are counted in representable numbers between the two results, which is also
//! right for subnormal results.

use vgrad::Element;

/// Position of `x` in the ordered sequence of f64 values (negative values below positive).
fn ord64(x: f64) -> i128 {
    let b = x.to_bits() as i64;
    i128::from(if b < 0 { i64::MIN - b } else { b })
}

/// Ulps between `a` and `b` (0 when both are NaN, the maximum when only one is).
fn ulps64(a: f64, b: f64) -> u128 {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => 0,
        (false, false) => (ord64(a) - ord64(b)).unsigned_abs(),
        _ => u128::MAX,
    }
}

fn ulps32(a: f32, b: f32) -> u128 {
    // Widening is exact and keeps the order, but f64 has 2²⁹ values per f32 ulp.
    let ord = |x: f32| {
        let b = x.to_bits() as i32;
        i64::from(if b < 0 { i32::MIN - b } else { b })
    };
    match (a.is_nan(), b.is_nan()) {
        (true, true) => 0,
        (false, false) => u128::from((ord(a) - ord(b)).unsigned_abs()),
        _ => u128::MAX,
    }
}

/// Inputs: every `stride`-th bit pattern of the type (both signs), plus `[-lim, lim]` in
/// 200 001 even steps.
fn inputs_f32(lim: f32) -> impl Iterator<Item = f32> {
    let stride = 1021u64;
    (0..(1u64 << 32) / stride)
        .map(move |i| f32::from_bits((i * stride) as u32))
        .chain((0..=200_000).map(move |i| -lim + 2.0 * lim * i as f32 / 200_000.0))
}

fn inputs_f64(lim: f64) -> impl Iterator<Item = f64> {
    let n = 3_000_000u64;
    let stride = u64::MAX / n;
    (0..n)
        .map(move |i| f64::from_bits(i * stride))
        .chain((0..=200_000).map(move |i| -lim + 2.0 * lim * i as f64 / 200_000.0))
}

/// Worst error of `fast` against `reference` over `xs`, with the input where it occurs.
fn worst<T: Copy>(
    xs: impl Iterator<Item = T>,
    fast: impl Fn(T) -> T,
    reference: impl Fn(T) -> T,
    ulps: impl Fn(T, T) -> u128,
) -> (u128, Option<T>) {
    let mut w = (0, None);
    for x in xs {
        let e = ulps(fast(x), reference(x));
        if e > w.0 {
            w = (e, Some(x));
        }
    }
    w
}

/// Checks one function in both types against its bounds, printing what it measured.
#[allow(clippy::too_many_arguments)]
fn check(
    name: &str,
    lim: f64,
    fast32: impl Fn(f32) -> f32,
    ref64_for32: impl Fn(f64) -> f64,
    max32: u128,
    fast64: impl Fn(f64) -> f64,
    ref64: impl Fn(f64) -> f64,
    max64: u128,
) {
    let (e32, at32) = worst(
        inputs_f32(lim as f32),
        fast32,
        |x| ref64_for32(f64::from(x)) as f32,
        ulps32,
    );
    let (e64, at64) = worst(inputs_f64(lim), fast64, ref64, ulps64);
    println!("{name}: f32 {e32} ulp (at {at32:?}), f64 {e64} ulp (at {at64:?})");
    assert!(e32 <= max32, "{name} f32: {e32} ulp at {at32:?}");
    assert!(e64 <= max64, "{name} f64: {e64} ulp at {at64:?}");
}

#[test]
fn exp_m1_fast_within_one_ulp_f32_two_f64() {
    check(
        "expm1",
        40.0,
        f32::exp_m1_fast,
        f64::exp_m1,
        1,
        f64::exp_m1_fast,
        f64::exp_m1,
        2,
    );
}

#[test]
fn ln_1p_fast_within_one_ulp() {
    check(
        "log1p",
        10.0,
        f32::ln_1p_fast,
        f64::ln_1p,
        1,
        f64::ln_1p_fast,
        f64::ln_1p,
        1,
    );
}

#[test]
fn tanh_fast_within_two_ulp_f32_three_f64() {
    check(
        "tanh",
        12.0,
        f32::tanh_fast,
        f64::tanh,
        2,
        f64::tanh_fast,
        f64::tanh,
        3,
    );
}

#[test]
fn erf_fast_within_two_ulp() {
    check(
        "erf",
        7.0,
        f32::erf_fast,
        libm::erf,
        2,
        f64::erf_fast,
        libm::erf,
        2,
    );
}

/// C99 / PyTorch special values, exactly (these are exact claims, not roundings).
#[test]
fn special_values_are_exact() {
    fn both<T: Element>() {
        let (inf, nan, one, zero) = (T::infinity(), T::nan(), T::one(), T::zero());
        assert_eq!(inf.tanh_fast(), one);
        assert_eq!((-inf).tanh_fast(), -one);
        assert_eq!(inf.erf_fast(), one);
        assert_eq!((-inf).erf_fast(), -one);
        assert_eq!((-inf).exp_m1_fast(), -one);
        assert_eq!(inf.exp_m1_fast(), inf);
        assert_eq!(inf.ln_1p_fast(), inf);
        assert_eq!((-one).ln_1p_fast(), -inf);
        assert!((-one - one).ln_1p_fast().is_nan());
        assert!((-inf).ln_1p_fast().is_nan());
        for f in [T::tanh_fast, T::erf_fast, T::exp_m1_fast, T::ln_1p_fast] {
            assert!(f(nan).is_nan());
            assert!(f(zero) == zero && f(zero).is_sign_positive());
            assert!(f(-zero) == zero && f(-zero).is_sign_negative());
            // The smallest subnormal: each of these is x to first order (erf: 1.128x).
            let tiny = T::min_positive_value() * T::epsilon();
            let y = f(tiny);
            assert!(y > zero && y < tiny + tiny, "{y:?}");
        }
        // Saturation and overflow, not NaN, at the far ends.
        assert_eq!(T::max_value().tanh_fast(), one);
        assert_eq!(T::min_value().erf_fast(), -one);
        assert_eq!(T::max_value().exp_m1_fast(), inf);
        assert_eq!(T::min_value().exp_m1_fast(), -one);
        let big = T::max_value().ln_1p_fast();
        assert!(big.is_finite() && big > T::of(88.0));
    }
    both::<f32>();
    both::<f64>();
}
