//! Vectorisable `expm1`, `log1p`, `tanh` and `erf` for `f32` and `f64`: the transcendental
//! functions the activations need, written once, generically, as branch-free arithmetic.
//!
//! Why: a loop that calls libm (`tanhf`, `erff`, `expm1`) is a scalar call per element, which
//! LLVM cannot vectorise; tanh, ELU and GELU steps ran 1.3–2.9× behind JAX for that alone.
//! Here every branch is computed and the result chosen with a select (a blend), and nothing is
//! called, so a loop inlined into [`dispatch`](super::simd::dispatch) runs on 16 (f32) or 8 (f64)
//! lanes. `exp` is [`simd`](super::simd)'s.
//!
//! Accuracy, measured by `tests/vmath.rs` over about 7 million inputs per function and type (a
//! stride through every bit pattern, so every binade, subnormals and both range ends, plus a
//! fine sweep of the range activations use). Against the f64 result rounded to f32 for f32, and
//! against the platform's libm (itself within 1 ulp) for f64:
//!
//! | function | f32 max error | f64 max error (vs libm) |
//! |---|---|---|
//! | `expm1` | 1 ulp | 2 ulp |
//! | `log1p` | 1 ulp | 1 ulp |
//! | `tanh` | 2 ulp | 3 ulp |
//! | `erf` | 2 ulp | 2 ulp |
//!
//! Special values follow C99 and PyTorch: `tanh(±∞) = ±1`, `erf(±∞) = ±1`, `expm1(−∞) = −1`,
//! `expm1(+∞) = +∞`, `log1p(−1) = −∞`, `log1p(x < −1) = NaN`, `±0` keeps its sign, NaN in gives
//! NaN out. Subnormal inputs and results are computed, not flushed (unless the thread asked for
//! [`set_flush_denormal`](super::simd::set_flush_denormal)).

use super::simd::{exp_f32, exp_f32_normal, exp_f64, exp_f64_normal};
use num_traits::Float;

/// What the generic functions below need from `f32` and `f64` beyond [`Float`]: `exp`, exact
/// powers of two from the float's bits, and the per-type constants (polynomial lengths differ,
/// since f64 needs about twice the terms).
pub(crate) trait VFloat: Float {
    /// `eˣ`, branch-free ([`exp_f32`], [`exp_f64`]).
    fn vexp(self) -> Self;
    /// `eˣ` for an `x` known to give a normal result and not NaN ([`exp_f32_normal`],
    /// [`exp_f64_normal`]): cheaper, garbage outside that range.
    fn vexp_normal(self) -> Self;
    /// `2ⁿ` for an integral `n` inside the normal exponent range, built from bits.
    fn pow2i(n: Self) -> Self;
    /// `(k, m)` with `u = 2ᵏ·m` and `m ∈ [√½, √2)`, for a positive normal `u`.
    fn split_exponent(u: Self) -> (Self, Self);
    /// `of(x)`: an `f64` constant in this type (folded at compile time).
    fn c(x: f64) -> Self;
    /// 1.5·2^(mantissa bits): adding it rounds to an integer.
    const MAGIC: f64;
    /// ln 2 split so that `n·LN2_HI` is exact for every `n` used here.
    const LN2_HI: f64;
    /// `ln 2 − LN2_HI`.
    const LN2_LO: f64;
    /// Above this, `expm1(x) = eˣ` to within rounding (`eˣ > 2^(mantissa bits + 2)`); below its
    /// negative, `expm1(x) = −1`.
    const EXPM1_LIMIT: f64;
    /// `(expm1(r) − r)/r²` as a polynomial on `|r| ≤ ln2/2`: Taylor's `1/k!`, `k = 2, 3, …`
    /// (f32), a minimax fit (f64).
    const EXPM1_POLY: &'static [f64];
    /// `2/(2j + 1)` for `j = 1, 2, …`: of `log(1 + f) = 2 atanh s`, `s = f/(2 + f)`.
    const LOG_ATANH: &'static [f64];
    /// `erf(x)/x` as a polynomial in `x²` on `|x| ≤ ERF_SMALL_MAX` (a Chebyshev fit).
    const ERF_SMALL: &'static [f64];
    /// `erfc(x)·e^(x²)` as a polynomial in `x − ERFC_MID` on `[ERF_SMALL_MAX, ERF_ONE]` (a
    /// least-squares fit weighted by `e^(−x²)/erf x`, i.e. by its share of erf's error;
    /// `scripts/fit_erfc.py` checks it and shows f64 needs all 22 terms).
    const ERFC_SCALED: &'static [f64];
    /// The centre of [`ERFC_SCALED`](VFloat::ERFC_SCALED)'s interval.
    const ERFC_MID: f64;
    /// From here on `erf(x)` rounds to 1.
    const ERF_ONE: f64;
}

/// 1.5·2²³ and 1.5·2⁵²: adding one rounds a float to an integer held in its low mantissa bits.
const MAGIC_F32: f32 = 12_582_912.0;
const MAGIC_F64: f64 = 6_755_399_441_055_744.0;

impl VFloat for f32 {
    #[inline(always)]
    fn vexp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn vexp_normal(self) -> Self {
        exp_f32_normal(self)
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        // The integer from the low mantissa bits of n + MAGIC, not `n as i32`: float-to-int
        // casts saturate, and the fix-ups cost a blend or (f64 without AVX-512) a scalar loop.
        let ni = (n + MAGIC_F32).to_bits() as i32 - MAGIC_F32.to_bits() as i32;
        f32::from_bits(((ni + 127) as u32) << 23)
    }
    #[inline(always)]
    fn split_exponent(u: Self) -> (Self, Self) {
        // Shift by the bits of √½ so that mantissas from √½ up land in the next exponent.
        let ix = u.to_bits().wrapping_add(0x3f80_0000 - 0x3f35_04f3);
        let k = (ix >> 23) as i32 - 127;
        let m = f32::from_bits((ix & 0x007f_ffff) + 0x3f35_04f3);
        // k as a float through MAGIC's bits, the reverse of `pow2i`.
        let kf = f32::from_bits((MAGIC_F32.to_bits() as i32 + k) as u32) - MAGIC_F32;
        (kf, m)
    }
    #[inline(always)]
    fn c(x: f64) -> Self {
        x as f32
    }
    const MAGIC: f64 = MAGIC_F32 as f64;
    const LN2_HI: f64 = 0.693_359_375;
    const LN2_LO: f64 = -2.121_944_400_546_905_8e-4;
    const EXPM1_LIMIT: f64 = 30.0;
    const EXPM1_POLY: &'static [f64] = &[
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40_320.0,
    ];
    const LOG_ATANH: &'static [f64] = &[2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0, 2.0 / 9.0];
    const ERF_SMALL: &'static [f64] = &[
        1.128_379_166e+00,
        -3.761_261_947e-01,
        1.128_338_654e-01,
        -2.683_511_457e-02,
        5.115_332_113e-03,
        -6.756_479_569e-04,
    ];
    const ERFC_SCALED: &'static [f64] = &[
        2.205_055_119e-01,
        -8.098_442_204e-02,
        2.815_964_471e-02,
        -9.344_776_789e-03,
        3.140_744_657e-03,
        -7.008_120_877e-04,
        2.737_889_016e-04,
        -2.729_686_527e-04,
        -1.375_978_374e-04,
        -5.082_094_909e-05,
    ];
    const ERFC_MID: f64 = 2.375;
    const ERF_ONE: f64 = 4.0;
}

impl VFloat for f64 {
    #[inline(always)]
    fn vexp(self) -> Self {
        exp_f64(self)
    }
    #[inline(always)]
    fn vexp_normal(self) -> Self {
        exp_f64_normal(self)
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        let ni = (n + MAGIC_F64).to_bits() as i64 - MAGIC_F64.to_bits() as i64;
        f64::from_bits(((ni + 1023) as u64) << 52)
    }
    #[inline(always)]
    fn split_exponent(u: Self) -> (Self, Self) {
        let ix = u
            .to_bits()
            .wrapping_add(0x3ff0_0000_0000_0000 - 0x3fe6_a09e_667f_3bcd);
        let k = (ix >> 52) as i64 - 1023;
        let m = f64::from_bits((ix & 0x000f_ffff_ffff_ffff) + 0x3fe6_a09e_667f_3bcd);
        let kf = f64::from_bits((MAGIC_F64.to_bits() as i64 + k) as u64) - MAGIC_F64;
        (kf, m)
    }
    #[inline(always)]
    fn c(x: f64) -> Self {
        x
    }
    const MAGIC: f64 = MAGIC_F64;
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const EXPM1_LIMIT: f64 = 40.0;
    // A degree-9 minimax fit, not the Taylor series (13 terms): 3.5e-17 relative to expm1 on
    // |r| ≤ ln2/2 with the rounded coefficients (`scripts/fit_exp.py --expm1`).
    const EXPM1_POLY: &'static [f64] = &[
        0.500_000_000_000_000_6,
        0.166_666_666_666_665_88,
        0.041_666_666_666_576_82,
        0.008_333_333_333_389_505,
        0.001_388_888_893_154_158_5,
        0.000_198_412_697_190_901_6,
        2.480_150_530_421_104_3e-5,
        2.755_740_749_461_010_4e-6,
        2.762_602_498_064_724e-7,
        2.505_377_960_261_849_3e-8,
    ];
    // A 7-term minimax fit (`scripts/fit_log.py`), 1.8e-18 relative to ln m with the rounded
    // coefficients, where the 10-term Taylor series it replaced (2/3, 2/5, …, 2/21) gave 1.2e-18:
    // three multiply-adds fewer, both far below half an ulp (1.1e-16).
    const LOG_ATANH: &'static [f64] = &[
        0.666_666_666_666_673_4,
        0.399_999_999_994_146_2,
        0.285_714_287_423_979_64,
        0.222_221_985_722_580_5,
        0.181_835_643_692_572_24,
        0.153_140_495_454_101_27,
        0.147_959_590_107_238_86,
    ];
    const ERF_SMALL: &'static [f64] = &[
        // The fit's constant term, erf'(0) = 2/√π, to the last bit.
        std::f64::consts::FRAC_2_SQRT_PI,
        -3.761_263_890_318_371_5e-01,
        1.128_379_167_095_259_6e-01,
        -2.686_617_064_442_848_5e-02,
        5.223_977_615_420_539e-03,
        -8.548_326_188_759_752e-04,
        1.205_528_956_754_170_6e-04,
        -1.492_419_630_556_961_7e-05,
        1.643_068_417_974_155e-06,
        -1.594_006_685_466_171_7e-07,
        1.147_249_970_109_469_1e-08,
    ];
    const ERFC_SCALED: &'static [f64] = &[
        1.606_310_681_282_484_3e-01,
        -4.411_945_720_982_93e-02,
        1.172_790_000_606_787_3e-02,
        -3.025_197_152_133_325_8e-03,
        7.589_281_492_398_897e-04,
        -1.855_248_835_146_843e-04,
        4.427_018_853_864_961e-05,
        -1.030_481_971_838_517_2e-05,
        2.370_405_036_458_657_6e-06,
        -5.369_071_631_560_743e-07,
        8.713_788_342_495_59e-08,
        -4.500_896_116_511_102e-08,
        6.477_564_883_182_882e-09,
        1.077_494_020_639_155_1e-08,
        8.701_621_513_992_156e-09,
        1.930_104_101_903_101e-09,
        -8.876_746_720_409_782e-10,
        -9.053_548_085_973_563e-10,
        -3.520_525_943_154_494_4e-10,
        -7.793_785_607_712_099e-11,
        -9.669_586_464_490_601e-12,
        -5.412_481_527_171_059e-13,
    ];
    const ERFC_MID: f64 = 3.375;
    const ERF_ONE: f64 = 6.0;
}

/// `c₀ + x·(c₁ + x·(c₂ + …))`. The coefficients are constants, so after inlining the loop
/// unrolls into a chain of fused multiply-adds (one instruction each inside
/// [`dispatch`](super::simd::dispatch); see `exp_f32`).
#[inline(always)]
fn horner<F: VFloat>(x: F, c: &[f64]) -> F {
    let mut p = F::c(c[c.len() - 1]);
    for &k in c[..c.len() - 1].iter().rev() {
        p = p.mul_add(x, F::c(k));
    }
    p
}

/// `a` where `cond`, else `b`: written as a branch, compiled to a blend (both sides are
/// computed anyway).
#[inline(always)]
fn select<F: Copy>(cond: bool, a: F, b: F) -> F {
    if cond {
        a
    } else {
        b
    }
}

/// `eˣ − 1`, accurate near 0 where `eˣ − 1` cancels. With `x = n·ln2 + r`, `|r| ≤ ln2/2`:
/// `expm1(x) = 2ⁿ·expm1(r) + (2ⁿ − 1)`, where `2ⁿ − 1` is exact and `expm1(r)` a Taylor
/// polynomial.
#[inline(always)]
pub(crate) fn expm1<F: VFloat>(x: F) -> F {
    let limit = F::c(F::EXPM1_LIMIT);
    let y = expm1_within_limit(x.max(-limit).min(limit));
    // Past the limit the −1 is below rounding (and eˣ overflows to ∞ on its own); ±0 and NaN
    // come back as they went in (`max`/`min` would have turned NaN into a bound).
    let y = select(x > limit, x.vexp(), y);
    select(x == F::zero() || x.is_nan(), x, y)
}

/// [`expm1`] for `x ≤ 0` or NaN: ELU's, SELU's and tanh's arguments (positive `x` count as 0).
/// It skips `expm1`'s exponential for large positive `x`, which a select computes at every
/// element (both sides of a select are): about 40% of `expm1`'s work.
#[inline(always)]
pub(crate) fn expm1_nonpositive<F: VFloat>(x: F) -> F {
    // The upper clamp keeps the discarded side of ELU's select (x > 0) finite and cheap.
    let y = expm1_within_limit(x.max(F::c(-F::EXPM1_LIMIT)).min(F::zero()));
    // ±0 keeps its sign; NaN, which `max` turned into the bound, comes back.
    select(x == F::zero() || x.is_nan(), x, y)
}

/// [`expm1`] for `|x| ≤ EXPM1_LIMIT` (not NaN): the polynomial alone.
#[inline(always)]
fn expm1_within_limit<F: VFloat>(x: F) -> F {
    let magic = F::c(F::MAGIC);
    let n = x.mul_add(F::c(std::f64::consts::LOG2_E), magic) - magic;
    let r = (-n).mul_add(F::c(F::LN2_LO), (-n).mul_add(F::c(F::LN2_HI), x));
    // r + r²·q rather than r·(1 + r·q'): one rounding less on the leading term.
    let p = r + r * r * horner(r, F::EXPM1_POLY);
    let s = F::pow2i(n);
    s * p + (s - F::one())
}

/// `ln(1 + x)`, accurate near 0. `u = 1 + x` is rounded; its rounding error `e` is recovered
/// exactly (Fast2Sum) and added back as `e/u`. `ln u = k·ln2 + ln m` with `m ∈ [√½, √2)`, and
/// `ln m = 2 atanh(f/(2 + f))`, `f = m − 1`, arranged so the large terms `f − f²/2` are exact.
#[inline(always)]
pub(crate) fn log1p<F: VFloat>(x: F) -> F {
    let one = F::one();
    let u = one + x;
    let e = select(x.abs() >= one, (x - u) + one, (one - u) + x);
    // 1 + x is never subnormal: for x near −1 it is exact and at least one ulp of 1.
    let (k, m) = F::split_exponent(select(u > F::zero(), u, one));
    let f = m - one;
    let s = f / (F::c(2.0) + f);
    let z = s * s;
    let hfsq = F::c(0.5) * f * f;
    let r = z * horner(z, F::LOG_ATANH);
    let lo = k * F::c(F::LN2_LO) + e / u;
    let y = k * F::c(F::LN2_HI) - ((hfsq - (s * (hfsq + r) + lo)) - f);
    // Above ~2^24 (f32) the correction e/u is below rounding and ∞ gives ∞ through u.
    let y = select(u == F::infinity(), u, y);
    let y = select(x == -one, F::neg_infinity(), y);
    let y = select(x < -one, F::nan(), y);
    select(x == F::zero() || x.is_nan(), x, y)
}

/// `tanh x = −expm1(−2|x|)/(2 + expm1(−2|x|))` with the sign of `x`: no cancellation anywhere
/// (the denominator lies in [1, 2]), and ±1 once `expm1` reaches −1.
#[inline(always)]
pub(crate) fn tanh<F: VFloat>(x: F) -> F {
    let em = expm1_nonpositive(F::c(-2.0) * x.abs());
    let t = -em / (F::c(2.0) + em);
    // copysign is a bit operation (keeps −0 and the sign of ±∞; NaN stays NaN).
    t.copysign(x)
}

/// The error function: `x·P(x²)` for `|x| ≤ 0.75`, `1 − e^(−x²)·Q(|x|)` beyond (up to where it
/// rounds to 1), with the sign of `x`.
#[inline(always)]
pub(crate) fn erf<F: VFloat>(x: F) -> F {
    let ax = x.abs();
    let small = erf_small_abs(ax);
    let xl = ax.max(F::c(ERF_SMALL_MAX)).min(F::c(F::ERF_ONE));
    // −xl² ∈ [−ERF_ONE², −0.56]: eˣ is normal there, so the cheaper exponential serves.
    let large =
        F::one() - (-(xl * xl)).vexp_normal() * horner(xl - F::c(F::ERFC_MID), F::ERFC_SCALED);
    let y = select(ax <= F::c(ERF_SMALL_MAX), small, large).copysign(x);
    select(x.is_nan(), x, y)
}

/// Where erf switches from its Taylor-like polynomial ([`erf_small`]) to `1 − erfc`:
/// erf(0.75) = 0.71, so `1 − erfc` loses less than a bit to cancellation past it.
pub(crate) const ERF_SMALL_MAX: f64 = 0.75;

/// [`erf`] for `|x| ≤` [`ERF_SMALL_MAX`]: its polynomial branch alone, the same bits, at about a
/// quarter of the cost (f64: 11 terms against 11 + 22 and an exponential).
#[inline(always)]
pub(crate) fn erf_small<F: VFloat>(x: F) -> F {
    erf_small_abs(x.abs()).copysign(x)
}

/// `erf |x|` for `|x| ≤ 0.75`: `|x|·P(x²)`.
#[inline(always)]
fn erf_small_abs<F: VFloat>(ax: F) -> F {
    ax * horner(ax * ax, F::ERF_SMALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_values() {
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f64::NEG_INFINITY), -1.0);
        assert!(tanh(-0.0f32).is_sign_negative());
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1(f64::INFINITY), f64::INFINITY);
        assert_eq!(log1p(-1.0f64), f64::NEG_INFINITY);
        assert!(log1p(-2.0f32).is_nan());
        assert_eq!(log1p(f32::INFINITY), f32::INFINITY);
        for v in [
            tanh(f64::NAN),
            erf(f64::NAN),
            expm1(f64::NAN),
            log1p(f64::NAN),
        ] {
            assert!(v.is_nan());
        }
    }

    /// The shortcut ELU, SELU and tanh take must be the general `expm1` wherever it applies,
    /// bit for bit (same polynomial, same reduction), including −0, −∞ and NaN.
    #[test]
    fn expm1_nonpositive_is_expm1_below_zero() {
        let mut x = -60.0f64;
        while x <= 0.0 {
            assert_eq!(
                expm1_nonpositive(x).to_bits(),
                expm1(x).to_bits(),
                "f64 {x}"
            );
            let xf = x as f32;
            assert_eq!(
                expm1_nonpositive(xf).to_bits(),
                expm1(xf).to_bits(),
                "f32 {xf}"
            );
            x += 0.000_731;
        }
        for x in [-0.0f64, -1e-300, -5e-324, f64::NEG_INFINITY, -f64::MAX] {
            assert_eq!(expm1_nonpositive(x).to_bits(), expm1(x).to_bits(), "{x}");
        }
        assert!(expm1_nonpositive(f32::NAN).is_nan());
        assert!(expm1_nonpositive(-0.0f32).is_sign_negative());
        // Positive arguments (the discarded side of ELU's select) stay finite.
        assert_eq!(expm1_nonpositive(1e30f32), 0.0);
    }

    /// The shortcut erf and GELU take on blocks of small inputs must be erf itself, bit for
    /// bit, everywhere up to and including ±ERF_SMALL_MAX, ±0 and subnormals among them.
    #[test]
    fn erf_small_is_erf_up_to_its_limit() {
        let mut x = -ERF_SMALL_MAX;
        while x <= ERF_SMALL_MAX {
            assert_eq!(erf_small(x).to_bits(), erf(x).to_bits(), "f64 {x}");
            let xf = x as f32;
            assert_eq!(erf_small(xf).to_bits(), erf(xf).to_bits(), "f32 {xf}");
            x += 0.000_137;
        }
        for x in [
            ERF_SMALL_MAX,
            -ERF_SMALL_MAX,
            0.0,
            -0.0,
            1e-310,
            -5e-324,
            1e-20,
        ] {
            assert_eq!(erf_small(x).to_bits(), erf(x).to_bits(), "f64 {x}");
            let xf = x as f32;
            assert_eq!(erf_small(xf).to_bits(), erf(xf).to_bits(), "f32 {xf}");
        }
    }
}
