//! Statistics passes over a slice, accumulated in f64: Σx, Σx², Σ(x − c)², the fused
//! `(Σx², Σ|x|, max |x|)` and `(Σa², Σ(a − b)²)`, and a ReLU output's sum with its dead columns.
//!
//! The gradient monitor runs these over every watched gradient, weight and activation each step,
//! so they are most of what watching a step costs. Three decisions make them fast and exact:
//!
//! * **Sixteen independent sums.** An f64 addition waits 3–4 cycles for the previous one into
//!   the same register, so a pass with one chain of sums spends most of its time waiting. Each
//!   pass here folds element `i` into lane `i % 16` of a `[f64; 16]` (four AVX2 registers, two
//!   AVX-512 ones); the fused passes, which gather two or three sums per element, use eight lanes
//!   per sum.
//! * **Fused passes.** A weight gradient's Σx², Σ|x| and max |x| come out of one pass, and a
//!   weight's Σw² with its update's Σ(w − w₀)² out of another, sharing each element's load and
//!   conversion to f64.
//! * **One order, written down.** Every pass is a plain loop over lane arrays, compiled again
//!   for AVX2 and chosen at run time the way every kernel in `tensor` is (a closure inlined into
//!   a `#[target_feature]` function, as in [`dispatch`](super::simd::dispatch); see [`avx2`]
//!   for why not AVX-512). Rust never reassociates floating-point arithmetic, so the loop's
//!   order of additions — lanes, then the fixed tree in [`reduce16`] — *is* the result: every
//!   build gives the same bits (a test checks it). The order is the one the monitor's
//!   hand-written AVX2 intrinsics had, so moving the passes here changed no statistic.
//!
//! Squares accumulate with a fused multiply-add (rounded once) where the CPU has FMA, as those
//! intrinsics did; on an x86-64 CPU without AVX2 and FMA the same loops run with a separate
//! multiply and add, since there `f64::mul_add` is a call into libm's software fallback.
//!
//! The loops vectorise at `opt-level = 3` (release and bench builds), where LLVM's SLP
//! vectoriser packs the sixteen lanes into registers; the test profile's `opt-level = 2` runs
//! them as sixteen scalar chains, with the same results.

use super::simd::dispatch;
use super::Element;

/// Lanes of the unfused passes (Σx, Σx², Σ(x − c)², the column sums).
const LANES: usize = 16;
/// Lanes per sum of the fused passes, which gather two or three sums per element.
const HALF: usize = 8;

#[inline(always)]
fn f<T: Element>(x: T) -> f64 {
    x.to_f64().unwrap_or(f64::NAN)
}

/// `a·b + c`: fused, rounded once, when `FMA`; otherwise a multiply and an add.
#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Whether `f64::mul_add` is one instruction in the passes' vector build: on x86-64 with AVX2
/// and FMA (the [`avx2`] build), and on targets built with FMA (every aarch64 CPU has it).
#[inline]
fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        cfg!(any(target_arch = "aarch64", target_feature = "fma"))
    }
}

/// `body` (a loop over slices, passed as an `#[inline(always)]` closure) compiled for AVX2 and
/// FMA, as [`dispatch`]'s AVX2 build is; `None`, without running it, where [`has_fma`] says no.
/// On other architectures `body` runs as the target was built, where that has FMA.
///
/// Why not [`dispatch`] itself, which picks AVX-512 on this project's AMD EPYC: the order of
/// the sums is fixed at sixteen lanes (it is the result), and sixteen f64 lanes fill four AVX2
/// registers — four chains of additions in flight — but only two AVX-512 ones. Measured there
/// (release build, 4096 f32), Σx took 556 ns through `dispatch` against 280 ns here, and
/// `(Σa², Σ(a − b)²)` 2.1 µs against 0.56 µs; converting f32 to f64 bounds these passes, and
/// AVX-512 converts no faster.
#[inline(always)]
fn avx2<R>(body: impl FnOnce() -> R) -> Option<R> {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn build<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        if has_fma() {
            // SAFETY: `build` is compiled for AVX2 and FMA, and the CPU has both (checked just
            // above); it runs `body` and nothing else.
            return Some(unsafe { build(body) });
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        has_fma().then(body)
    }
}

/// Runs `pass::<T, true>` in the AVX2 build ([`avx2`]) where the CPU has FMA, `pass::<T, false>`
/// in the baseline build elsewhere: `$pass` is a kernel generic over `<T, const FMA: bool>`.
macro_rules! run {
    ($pass:ident::<$t:ty>($($arg:expr),*)) => {
        match avx2(
            #[inline(always)]
            || $pass::<$t, true>($($arg),*),
        ) {
            Some(r) => r,
            None => $pass::<$t, false>($($arg),*),
        }
    };
}

/// The sum of sixteen lanes in a fixed tree: lane `j` of four 4-lane groups first,
/// `(g₀ + g₁) + (g₂ + g₃)`, then the four results as `(l₀ + l₂) + (l₁ + l₃)` — the order of the
/// AVX2 horizontal sum the monitor's passes were first written with.
#[inline(always)]
fn reduce16(a: &[f64; LANES]) -> f64 {
    let l: [f64; 4] = std::array::from_fn(|j| (a[j] + a[4 + j]) + (a[8 + j] + a[12 + j]));
    (l[0] + l[2]) + (l[1] + l[3])
}

/// The sum of eight lanes in the same tree: `(a[j] + a[4 + j])`, then `(l₀ + l₂) + (l₁ + l₃)`.
#[inline(always)]
fn reduce8(a: &[f64; HALF]) -> f64 {
    let l: [f64; 4] = std::array::from_fn(|j| a[j] + a[4 + j]);
    (l[0] + l[2]) + (l[1] + l[3])
}

/// The lanes a pass returns from its vector build, summed by the caller in the fixed tree of
/// [`reduce16`] / [`reduce8`]. Summing them inside the build made LLVM's SLP vectoriser match
/// the tree's pairs and keep the lanes two to a register (half speed); returned, they are four
/// full AVX2 registers stored once.
type Lanes16 = ([f64; LANES], f64);

/// `Σ` of `g(x, acc)` folded into sixteen lanes; the elements left over after the last full
/// chunk of 16 go four at a time into lanes 0–3, the last one to three through `tail`, summed
/// on their own. Returns the lanes and that tail sum.
#[inline(always)]
fn fold16<T: Element>(d: &[T], g: impl Fn(f64, f64) -> f64, tail: impl Fn(f64) -> f64) -> Lanes16 {
    let mut acc = [0.0f64; LANES];
    let chunks = d.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            acc[k] = g(f(c[k]), acc[k]);
        }
    }
    let fours = rest.chunks_exact(4);
    let last = fours.remainder();
    for c in fours {
        for k in 0..4 {
            acc[k] = g(f(c[k]), acc[k]);
        }
    }
    (acc, last.iter().map(|&x| tail(f(x))).sum())
}

/// The total of [`fold16`]'s lanes and tail.
fn total16((acc, rest): Lanes16) -> f64 {
    reduce16(&acc) + rest
}

#[inline(always)]
fn sum_sq_pass<T: Element, const FMA: bool>(d: &[T]) -> Lanes16 {
    fold16(d, |x, acc| madd::<FMA>(x, x, acc), |x| x * x)
}

#[inline(always)]
fn sum_pass<T: Element, const FMA: bool>(d: &[T]) -> Lanes16 {
    fold16(d, |x, acc| x + acc, |x| x)
}

#[inline(always)]
fn sum_sq_about_pass<T: Element, const FMA: bool>(d: &[T], c: f64) -> Lanes16 {
    fold16(
        d,
        |x, acc| {
            let t = x - c;
            madd::<FMA>(t, t, acc)
        },
        |x| (x - c) * (x - c),
    )
}

/// Σx².
pub(crate) fn sum_sq<T: Element>(d: &[T]) -> f64 {
    total16(run!(sum_sq_pass::<T>(d)))
}

/// Σx.
pub(crate) fn sum<T: Element>(d: &[T]) -> f64 {
    total16(run!(sum_pass::<T>(d)))
}

/// Σ(x − c)².
pub(crate) fn sum_sq_about<T: Element>(d: &[T], c: f64) -> f64 {
    total16(run!(sum_sq_about_pass::<T>(d, c)))
}

/// Eight lanes each of Σx², Σ|x| and max |x|, and the same three over the tail.
type MomentLanes = ([[f64; HALF]; 3], [f64; 3]);

#[inline(always)]
fn moments_pass<T: Element, const FMA: bool>(d: &[T]) -> MomentLanes {
    let (mut s, mut a, mut m) = ([0.0f64; HALF], [0.0f64; HALF], [0.0f64; HALF]);
    let chunks = d.chunks_exact(HALF);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..HALF {
            let x = f(c[k]);
            s[k] = madd::<FMA>(x, x, s[k]);
            let b = x.abs();
            a[k] += b;
            // A comparison, not `f64::max`: a NaN leaves the lane as it was.
            m[k] = if b > m[k] { b } else { m[k] };
        }
    }
    let (mut st, mut at, mut mt) = (0.0, 0.0, 0.0f64);
    for &x in rest {
        let x = f(x);
        st += x * x;
        at += x.abs();
        mt = if x.abs() > mt { x.abs() } else { mt };
    }
    ([s, a, m], [st, at, mt])
}

/// `(Σx², Σ|x|, max |x|)` in one pass. The maximum skips NaN (the sums report it) and is 0 for
/// an empty slice.
pub(crate) fn moments<T: Element>(d: &[T]) -> (f64, f64, f64) {
    let ([s, a, m], [st, at, mt]) = run!(moments_pass::<T>(d));
    // No lane holds a NaN, so the largest is exact whatever the order.
    let max = m.iter().fold(mt, |acc, &x| if x > acc { x } else { acc });
    (reduce8(&s) + st, reduce8(&a) + at, max)
}

/// Eight lanes each of Σa² and Σ(a − b)², and the same two over the tail.
type DistanceLanes = ([[f64; HALF]; 2], [f64; 2]);

#[inline(always)]
fn norm_distance_sq_pass<T: Element, const FMA: bool>(a: &[T], b: &[T]) -> DistanceLanes {
    let (mut s, mut t) = ([0.0f64; HALF], [0.0f64; HALF]);
    let (ca, cb) = (a.chunks_exact(HALF), b.chunks_exact(HALF));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..HALF {
            let (x, y) = (f(x[k]), f(y[k]));
            let e = x - y;
            s[k] = madd::<FMA>(x, x, s[k]);
            t[k] = madd::<FMA>(e, e, t[k]);
        }
    }
    let (mut st, mut tt) = (0.0, 0.0);
    for (&x, &y) in ra.iter().zip(rb) {
        let (x, y) = (f(x), f(y));
        st += x * x;
        tt += (x - y) * (x - y);
    }
    ([s, t], [st, tt])
}

/// `(Σa², Σ(a − b)²)` over two slices of one length, in one pass: the norm of a weight after an
/// update and the size of the update.
///
/// # Panics
/// If the slices differ in length.
#[track_caller]
pub(crate) fn norm_distance_sq<T: Element>(a: &[T], b: &[T]) -> (f64, f64) {
    assert_eq!(
        a.len(),
        b.len(),
        "norm_distance_sq: slices of different lengths"
    );
    let ([s, t], [st, tt]) = run!(norm_distance_sq_pass::<T>(a, b));
    (reduce8(&s) + st, reduce8(&t) + tt)
}

/// `(Σx, columns whose sum is ≤ 0)` of a `[rows, features]` buffer. The columns go in strips of
/// sixteen, each strip summed down the rows into its own sixteen lanes, which then count the
/// strip's non-positive columns: no buffer of column sums. Strips of four, then single columns,
/// take the rest.
#[inline(always)]
fn column_sums_pass<T: Element, const FMA: bool>(d: &[T], features: usize) -> (f64, usize) {
    let rows = d.len() / features;
    let (mut total, mut dead) = (0.0, 0);
    let mut c = 0;
    while c + LANES <= features {
        let mut acc = [0.0f64; LANES];
        for row in d.chunks_exact(features).take(rows) {
            let strip = &row[c..c + LANES];
            for k in 0..LANES {
                acc[k] += f(strip[k]);
            }
        }
        total += reduce16(&acc);
        dead += acc.iter().filter(|&&s| s <= 0.0).count();
        c += LANES;
    }
    while c + 4 <= features {
        let mut acc = [0.0f64; 4];
        for row in d.chunks_exact(features).take(rows) {
            let strip = &row[c..c + 4];
            for k in 0..4 {
                acc[k] += f(strip[k]);
            }
        }
        total += (acc[0] + acc[2]) + (acc[1] + acc[3]);
        dead += acc.iter().filter(|&&s| s <= 0.0).count();
        c += 4;
    }
    for c in c..features {
        let s: f64 = (0..rows).map(|r| f(d[r * features + c])).sum();
        total += s;
        dead += usize::from(s <= 0.0);
    }
    (total, dead)
}

/// Per feature (last axis of a `[rows, features]` buffer), the largest value over the rows,
/// skipping NaN, into `out` (which starts at zero).
#[inline(always)]
fn column_max<T: Element>(d: &[T], out: &mut [T]) {
    for row in d.chunks_exact(out.len()) {
        for (m, &x) in out.iter_mut().zip(row) {
            // `max` rather than a comparison: LLVM turns a conditional update into masked
            // stores.
            *m = m.max(x);
        }
    }
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
    let (total, dead) = run!(column_sums_pass::<T>(d, features));
    if !total.is_nan() {
        return (total, dead);
    }
    let mut max = vec![T::zero(); features];
    dispatch(
        #[inline(always)]
        || column_max(d, &mut max),
    );
    (total, max.iter().filter(|m| **m <= T::zero()).count())
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
            19,
            20,
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

    fn check<T: Element>() {
        for d in cases::<T>() {
            let x: Vec<f64> = d.iter().map(|&v| f(v)).collect();
            let want_sq: f64 = x.iter().map(|v| v * v).sum();
            let want_sum: f64 = x.iter().sum();
            let want_abs: f64 = x.iter().map(|v| v.abs()).sum();
            let want_max = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let want_about: f64 = x.iter().map(|v| (v - 0.3) * (v - 0.3)).sum();
            let at = format!("{}, n = {}", T::DTYPE, d.len());
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

    /// The claim the monitor's reproducibility rests on: the order of the additions is the
    /// source's, so the AVX2 build gives the same bits as the same loop compiled for the
    /// baseline and called directly, and as the AVX-512 build.
    fn same_bits_as_baseline<T: Element>() {
        if !has_fma() {
            return;
        }
        let bits = |x: f64| x.to_bits();
        let wide = |x: Lanes16| bits(total16(x));
        for d in cases::<T>() {
            let at = format!("{}, n = {}", T::DTYPE, d.len());
            let b: Vec<T> = d.iter().map(|&v| v * T::of(0.75) + T::of(0.1)).collect();
            // The AVX2 build, the baseline build (libm's fma) and the AVX-512 one.
            assert_eq!(bits(sum_sq(&d)), wide(sum_sq_pass::<T, true>(&d)), "{at}");
            let avx512 = dispatch(
                #[inline(always)]
                || sum_sq_pass::<T, true>(&d),
            );
            assert_eq!(bits(sum_sq(&d)), wide(avx512), "{at}");
            assert_eq!(bits(sum(&d)), wide(sum_pass::<T, true>(&d)), "{at}");
            assert_eq!(
                bits(sum_sq_about(&d, 0.3)),
                wide(sum_sq_about_pass::<T, true>(&d, 0.3)),
                "{at}"
            );
            let ([s, a, m], [st, at_, mt]) = moments_pass::<T, true>(&d);
            let max = m.iter().fold(mt, |acc, &x| if x > acc { x } else { acc });
            let got = moments(&d);
            assert_eq!(
                [bits(got.0), bits(got.1), bits(got.2)],
                [bits(reduce8(&s) + st), bits(reduce8(&a) + at_), bits(max)],
                "{at}"
            );
            let ([s, t], [st, tt]) = norm_distance_sq_pass::<T, true>(&d, &b);
            let got = norm_distance_sq(&d, &b);
            assert_eq!(
                [bits(got.0), bits(got.1)],
                [bits(reduce8(&s) + st), bits(reduce8(&t) + tt)],
                "{at}"
            );
            for features in [1, 4, 5, 16, 21] {
                let rows = d.len() / features;
                let d = &d[..rows * features];
                let (m, n) = (
                    run!(column_sums_pass::<T>(d, features)),
                    column_sums_pass::<T, true>(d, features),
                );
                assert_eq!((bits(m.0), m.1), (bits(n.0), n.1), "{at}, {features}");
            }
        }
    }

    #[test]
    fn dispatched_passes_give_the_baseline_bits() {
        same_bits_as_baseline::<f32>();
        same_bits_as_baseline::<f64>();
    }

    /// The reduction tree, spelled out on lanes whose sums round differently in another order.
    #[test]
    fn lanes_reduce_in_the_documented_tree() {
        let mut a = [0.0f64; LANES];
        for (i, x) in a.iter_mut().enumerate() {
            *x = if i % 3 == 0 { 1e16 } else { 1.0 + i as f64 };
        }
        let l: Vec<f64> = (0..4)
            .map(|j| (a[j] + a[4 + j]) + (a[8 + j] + a[12 + j]))
            .collect();
        assert_eq!(
            reduce16(&a).to_bits(),
            ((l[0] + l[2]) + (l[1] + l[3])).to_bits()
        );
        let d: Vec<f64> = a.to_vec();
        assert_eq!(sum(&d).to_bits(), reduce16(&a).to_bits());
    }

    #[test]
    fn max_skips_nan_and_sums_report_it() {
        for n in [3, 40] {
            let mut d = vec![1.0f32; n];
            d[1] = f32::NAN;
            d[2] = -5.0;
            let (s, a, m) = moments(&d);
            assert!(s.is_nan() && a.is_nan());
            assert_eq!(m, 5.0);
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
