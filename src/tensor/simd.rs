//! Vectorisable maths and the run-time dispatch that compiles elementwise loops for the CPU at
//! hand.
//!
//! Why: profiling a 50-layer sigmoid training step showed 31% of all instructions in libm's scalar
//! `expf`, called once per element. The `exp` here is branch-free arithmetic on the float's bits,
//! so a loop over a slice vectorises; and [`map_slice`]-style helpers compile the loop body three
//! times (AVX-512, AVX2+FMA, baseline SSE2) and pick one at run time, so the same binary uses
//! 16-wide f32 lanes where the CPU has them and still runs where it does not.

use std::sync::atomic::{AtomicBool, Ordering};

/// `eˣ` for `f32`, branch-free. Max error about 1 ulp against a correctly rounded result for
/// arguments in the normal range; overflows to +∞ above ~88.72, flushes below ~−103.97 through
/// subnormals to 0; NaN in, NaN out.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let (p, ni) = exp_f32_parts(x.clamp(-104.0, 89.0));
    // 2ⁿ as two factors, 2^⌊n/2⌋·2^(n−⌊n/2⌋), so that each stays a normal float even where eˣ
    // itself is subnormal or overflows.
    let n1 = ni >> 1;
    let y = p * pow2_f32(n1) * pow2_f32(ni - n1);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `eˣ` for `f32` where the caller knows `x ∈ [−87, 88]` (so `eˣ` is a normal float) and not
/// NaN: [`exp_f32`] without the clamp, the second scale factor and the NaN select, about a
/// fifth fewer operations. Outside that range the result is garbage.
#[inline(always)]
pub(crate) fn exp_f32_normal(x: f32) -> f32 {
    let (p, ni) = exp_f32_parts(x);
    p * pow2_f32(ni)
}

/// `(p, n)` with `eˣ = p·2ⁿ`, `p = e^r`, `x = n·ln2 + r`, `|r| ≤ ln2/2`, for `|x| ≤ 104`.
#[inline(always)]
fn exp_f32_parts(x: f32) -> (f32, i32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for |n| < 2⁸.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let k = x.mul_add(LOG2E, MAGIC);
    let n = k - MAGIC;
    // n·LN2_HI is exact, so the first multiply-add is too; the second rounds once.
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // Taylor polynomial to degree 7 on |r| ≤ ln2/2: truncation error < 5e-9, below half an ulp.
    // Horner in `mul_add`: one FMA per step inside `dispatch` (written `p·r + c`, Rust keeps a
    // multiply and a dependent add: twice the operations and the latency).
    const C: [f32; 8] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    let mut p = C[7];
    for &c in C[..7].iter().rev() {
        p = p.mul_add(r, c);
    }
    (p, k.to_bits() as i32 - MAGIC.to_bits() as i32)
}

/// `2ⁿ` for `n` in the normal exponent range, from bits.
#[inline(always)]
fn pow2_f32(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// `eˣ` for `f64`, branch-free. Max error about 1 ulp in the normal range; +∞ above ~709.78,
/// through subnormals to 0 below ~−745.13; NaN in, NaN out.
#[inline(always)]
pub(crate) fn exp_f64(x: f64) -> f64 {
    let (p, ni) = exp_f64_parts(x.clamp(-746.0, 710.0));
    let n1 = ni >> 1;
    let y = p * pow2_f64(n1) * pow2_f64(ni - n1);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `eˣ` for `f64` where the caller knows `x ∈ [−708, 709]` (so `eˣ` is a normal float) and not
/// NaN: [`exp_f64`] without the clamp, the second scale factor and the NaN select. Outside that
/// range the result is garbage.
#[inline(always)]
pub(crate) fn exp_f64_normal(x: f64) -> f64 {
    let (p, ni) = exp_f64_parts(x);
    p * pow2_f64(ni)
}

/// `(p, n)` with `eˣ = p·2ⁿ`, `p = e^r`, `x = n·ln2 + r`, `|r| ≤ ln2/2`, for `|x| ≤ 746`.
#[inline(always)]
fn exp_f64_parts(x: f64) -> (f64, i64) {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: n·LN2_HI is exact for |n| < 2²⁰.
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1.5·2⁵²
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    let k = x.mul_add(LOG2E, MAGIC);
    let n = k - MAGIC;
    // n·LN2_HI is exact, so the first multiply-add is too; the second rounds once.
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // 1 + r + r²·q(r), q a degree-9 minimax fit of (eʳ − 1 − r)/r² weighted to eʳ's relative
    // error on |r| ≤ ln2/2 (scripts/fit_exp.py): 1.1e-17 with these rounded coefficients, a
    // tenth of an ulp, two multiply-adds fewer than the degree-13 Taylor polynomial it replaced
    // (5e-18); f64 sigmoid's forward is mostly this polynomial.
    const C: [f64; 12] = [
        1.0,
        1.0,
        0.500_000_000_000_001_1,
        0.166_666_666_666_664_13,
        0.041_666_666_666_530_25,
        0.008_333_333_333_494_335,
        0.001_388_888_894_360_135,
        0.000_198_412_695_067_901_64,
        2.480_149_313_264_769_8e-5,
        2.755_758_624_818_923e-6,
        2.763_023_510_421_109e-7,
        2.500_008_006_264_192_2e-8,
    ];
    let mut p = C[11];
    for &c in C[..11].iter().rev() {
        p = p.mul_add(r, c);
    }
    (p, k.to_bits() as i64 - MAGIC.to_bits() as i64)
}

/// `2ⁿ` for `n` in the normal exponent range, from bits.
#[inline(always)]
fn pow2_f64(n: i64) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// Folds `x` into sixteen independent accumulators, element `i` into lane `i % 16`, and returns
/// the lanes for the caller to combine. One running accumulator is a chain of dependent
/// operations that cannot vectorise; sixteen fill a vector register (two in f64), so a reduction
/// inlined into [`dispatch`] runs at the speed of memory. The sums built on it (`sum_all`, the
/// last-axis `sum_axis`, `norm_l2`) therefore round differently from a sequential sum, usually
/// for the better.
#[inline(always)]
pub(crate) fn lanes<T: Copy, A: Copy>(x: &[T], zero: A, add: impl Fn(A, T) -> A) -> [A; 16] {
    let mut acc = [zero; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = add(*a, v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a = add(*a, v);
    }
    acc
}

/// Compiles `body` three times — for AVX-512, for AVX2 with FMA, and for the baseline — and runs
/// the best one the CPU supports. `body` must be a loop over slices; inlined into each
/// `#[target_feature]` function, it is vectorised for that instruction set.
///
/// Pass the body as an `#[inline(always)]` closure. Without the attribute LLVM may keep a large
/// body (sigmoid's exp polynomial) as a separate function compiled for the baseline, and every
/// branch of the dispatch then runs the same SSE2 code: that was 23% of a deep sigmoid step.
#[inline(always)]
pub(crate) fn dispatch<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        // Safe functions (target_feature 1.1): only calling them is unsafe, where the features
        // are not known to be present.
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        fn avx512<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        // Each detection is a load of a cached bit set. AVX2 and FMA are tested for the AVX-512
        // build too, although every AVX-512 CPU has them: a virtual machine may hide them.
        let avx2_fma = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2_fma
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: `avx512` is compiled for avx512f, avx512dq, avx2 and fma, and the run-time
            // checks just found all four on this CPU.
            return unsafe { avx512(body) };
        }
        if avx2_fma {
            // SAFETY: `avx2` is compiled for avx2 and fma, and the run-time checks just found
            // both on this CPU.
            return unsafe { avx2(body) };
        }
    }
    body()
}

/// Whether vgrad's own work flushes subnormal floats to zero (see [`set_flush_denormal`]).
static FLUSH_IN_KERNELS: AtomicBool = AtomicBool::new(true);

/// FTZ (bit 15) flushes subnormal results to zero; DAZ (bit 6) reads subnormal inputs as zero.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

/// Sets how subnormal ("denormal") floats are treated, like PyTorch's
/// `torch.set_flush_denormal`. Returns `true` when the CPU supports flushing (x86-64: the FTZ
/// and DAZ bits of MXCSR), `false` otherwise (nothing changes).
///
/// Three states:
/// - **By default** (never called) vgrad flushes subnormals to zero *inside its own work only*:
///   the backward sweep, the optimiser step, the matrix products and the elementwise kernels
///   on large tensors set FTZ/DAZ on entry and restore the caller's setting on exit, and their
///   helper threads follow. The caller's own arithmetic between vgrad calls is untouched.
///   This deviates from PyTorch (which keeps subnormals unless asked) and matches JAX/XLA on CPU.
/// - `set_flush_denormal(true)`: flushing everywhere on the calling thread as well (PyTorch's
///   meaning), and in vgrad's work on every thread.
/// - `set_flush_denormal(false)`: IEEE subnormals everywhere (PyTorch's default): vgrad's work on
///   every thread keeps them, and the calling thread's FTZ/DAZ bits are cleared.
///
/// Why flushing is the default: a deep sigmoid network's gradients shrink by up to 4× per
/// layer; once they fall below ~1.2e−38 (f32) every operation on them can take a hundred cycles
/// on some CPUs (Intel's microcode assists), and a training step slows by up to an order of
/// magnitude while computing values below 1e−38 that change no weight. Flushed, the values
/// that would be subnormal are zero: a gradient that small reads as "vanished" in the monitor,
/// which is what it is. Only f32 values below 1.18e−38 (f64: 2.2e−308) are affected.
///
/// # Example
/// ```
/// // Flushing on the calling thread too: a subnormal product reads as zero.
/// let supported = vgrad::set_flush_denormal(true);
/// if supported {
///     let tiny = std::hint::black_box(1e-39f32); // subnormal
///     assert_eq!(std::hint::black_box(tiny * 1.0), 0.0);
/// }
/// // Back to IEEE arithmetic here and in vgrad's kernels (PyTorch's default).
/// vgrad::set_flush_denormal(false);
/// assert!(!vgrad::tensor::flushes_denormals());
/// # vgrad::tensor::restore_default_flush();
/// ```
pub fn set_flush_denormal(on: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        FLUSH_IN_KERNELS.store(on, Ordering::Relaxed);
        set_flush_denormal_this_thread(on);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = on;
        false
    }
}

/// Whether vgrad's own work flushes subnormals (`true` unless [`set_flush_denormal`]`(false)`
/// was called; always `false` off x86-64).
pub fn flushes_denormals() -> bool {
    cfg!(target_arch = "x86_64") && FLUSH_IN_KERNELS.load(Ordering::Relaxed)
}

/// Puts the default back: vgrad's work flushes subnormals, the calling thread's own arithmetic
/// keeps them (its FTZ/DAZ bits are cleared). Undoes [`set_flush_denormal`] in either direction.
pub fn restore_default_flush() {
    FLUSH_IN_KERNELS.store(true, Ordering::Relaxed);
    set_flush_denormal_this_thread(false);
}

/// FTZ/DAZ on for the calling thread until dropped, then the thread's previous setting back:
/// what vgrad's entry points hold while they work (see [`set_flush_denormal`]). Free when
/// flushing is off or already on (one load of MXCSR); about 15 ns when it switches, so the
/// per-element kernels take one only on large tensors ([`FLUSH_MIN_ELEMS`]).
#[must_use]
pub(crate) struct FlushScope {
    #[cfg(target_arch = "x86_64")]
    restore: Option<u32>,
}

/// Elementwise kernels on fewer elements take no [`FlushScope`]: switching costs more than a
/// few hundred subnormal operations could.
pub(crate) const FLUSH_MIN_ELEMS: usize = 4096;

impl FlushScope {
    /// Flushing on, if vgrad's work flushes (the default).
    #[inline]
    pub(crate) fn enter() -> FlushScope {
        #[cfg(target_arch = "x86_64")]
        {
            if !FLUSH_IN_KERNELS.load(Ordering::Relaxed) {
                return FlushScope { restore: None };
            }
            let csr = read_mxcsr();
            if csr & FTZ_DAZ == FTZ_DAZ {
                return FlushScope { restore: None };
            }
            write_mxcsr(csr | FTZ_DAZ);
            FlushScope { restore: Some(csr) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushScope {}
    }

    /// [`enter`](FlushScope::enter) for a kernel over `n` elements: nothing below
    /// [`FLUSH_MIN_ELEMS`].
    #[inline]
    pub(crate) fn for_elems(n: usize) -> Option<FlushScope> {
        (n >= FLUSH_MIN_ELEMS).then(FlushScope::enter)
    }
}

impl Drop for FlushScope {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(csr) = self.restore {
            write_mxcsr(csr);
        }
    }
}

/// Whether FTZ/DAZ is on for the calling thread.
pub(crate) fn flush_denormal_this_thread() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        read_mxcsr() & (1 << 15) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Sets FTZ/DAZ for the calling thread (a no-op off x86-64).
pub(crate) fn set_flush_denormal_this_thread(on: bool) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = on;
    #[cfg(target_arch = "x86_64")]
    {
        let csr = read_mxcsr();
        write_mxcsr(if on { csr | FTZ_DAZ } else { csr & !FTZ_DAZ });
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn read_mxcsr() -> u32 {
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr writes the 4 bytes of a live local and touches nothing else.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn write_mxcsr(csr: u32) {
    // SAFETY: ldmxcsr reads the 4 bytes of a live local into the SSE control register; every
    // value written is one read from it with only the FTZ/DAZ bits changed, so no reserved bit
    // is set (which would fault).
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp_diff_f64(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn exp_f64_matches_libm_within_two_ulp() {
        let mut worst = 0;
        let mut x = -745.0f64;
        while x < 709.7 {
            let (a, b) = (exp_f64(x), x.exp());
            if b > f64::MIN_POSITIVE {
                worst = worst.max(ulp_diff_f64(a, b));
            } else {
                assert!(
                    (a - b).abs() <= 2.0 * 4.9e-324 * 2.0,
                    "subnormal exp({x}) {a} vs {b}"
                );
            }
            x += 0.0137;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        for x in [-1e-300, 0.0, 1e-300, 1e-8, -1e-8, 0.5, -0.5, 1.0] {
            assert!(ulp_diff_f64(exp_f64(x), x.exp()) <= 2, "x = {x}");
        }
    }

    #[test]
    fn exp_f32_matches_libm_within_two_ulp() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.7 {
            let (a, b) = (exp_f32(x), x.exp());
            worst = worst.max((a.to_bits() as i32 - b.to_bits() as i32).unsigned_abs());
            x += 0.00731;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    /// The unclamped exponentials agree with the general ones bit for bit over the range they
    /// promise (`erf` relies on it for `−x²`).
    #[test]
    fn exp_normal_is_exp_where_the_result_is_normal() {
        let mut x = -708.0f64;
        while x <= 709.0 {
            assert_eq!(exp_f64_normal(x).to_bits(), exp_f64(x).to_bits(), "{x}");
            x += 0.0173;
        }
        let mut x = -87.0f32;
        while x <= 88.0 {
            assert_eq!(exp_f32_normal(x).to_bits(), exp_f32(x).to_bits(), "{x}");
            x += 0.00377;
        }
    }

    #[test]
    fn exp_special_values() {
        assert_eq!(exp_f64(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp_f64(f64::NEG_INFINITY), 0.0);
        assert!(exp_f64(f64::NAN).is_nan());
        assert_eq!(exp_f64(710.0), f64::INFINITY);
        assert_eq!(exp_f64(-800.0), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(-200.0), 0.0);
        // Subnormal results are produced, not flushed.
        let tiny = exp_f32(-100.0);
        assert!(tiny > 0.0 && tiny < f32::MIN_POSITIVE);
        assert!(((tiny - (-100.0f32).exp()) / tiny).abs() < 1e-3);
    }

    #[test]
    fn dispatch_runs_the_body() {
        let v: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let s = dispatch(
            #[inline(always)]
            || v.iter().map(|&x| exp_f32(-x)).sum::<f32>(),
        );
        let want: f32 = v.iter().map(|&x| (-x).exp()).sum();
        assert!((s - want).abs() < 1e-5);
    }
}
