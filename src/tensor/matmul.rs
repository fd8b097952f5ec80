//! Matrix products, with transposes passed as strides. On x86-64 CPUs with AVX-512 they run on
//! vgrad's own kernel ([`super::gemm512`]) where it is the faster one (see [`own_kernel_for`]);
//! elsewhere, and for outputs narrower than 16 columns, on the `gemm` crate.
//!
//! Why `gemm` as the fallback: on the shared benchmark configs it beat `matrixmultiply` on four
//! of five training steps at one thread (deep 64-wide stacks 0.85 vs 1.06 ms, resbn 2.82 vs
//! 3.54 ms), and it selects AVX-512 / AVX2 / scalar kernels at run time, so one binary runs
//! everywhere.

use super::kernels::broadcast_shapes;
use super::parallel::SharedPtr;
use super::pool::filled_by;
use super::simd::FlushScope;
use super::{Element, Shape, Tensor};
use std::mem::MaybeUninit;

/// Below this many multiply-adds a product runs on one thread: splitting smaller work costs more
/// in synchronisation than it saves. With the helper threads, 2²⁰ (resbn's 128³ products are
/// split: 2.7-3.5 ms vs 3.6-3.8 ms at 2 threads; the 64³ products of the deep configs are not)
/// beat rayon's 2²², and since the hand-off got cheaper (a spinning helper, elementwise passes
/// split too) 2¹⁹ beats 2²⁰: narrow stacks at large batches, whose products are 2¹⁹–2²⁰
/// multiply-adds, had left the second core idle for the whole step. README loop, 2 threads,
/// AMD Zen 4, 4 rounds alternated: 20 wide 60 deep at batch 2500 −41%, 24 wide at batch 1024
/// −33%, 32 wide at batch 512 and 48 wide at 400 −29%, 56 wide 40 deep at batch 256 −29%,
/// 16 wide at batch 2048 −24%, 96 wide 16 deep at batch 96 −22%; configs.json level. 2¹⁸
/// splits the deep configs' 64³ products: +65% on the 64-wide sigmoid and tanh stacks.
const PARALLEL_MIN_MACS: usize = 1 << 19;

/// On Intel CPUs, the largest f32 product (in multiply-adds) that runs on vgrad's own kernel.
/// 2¹⁸ is the 64 × 64 × 64 product of the deep 64-wide configs.
const OWN_MAX_MACS_INTEL: usize = 1 << 18;

/// On Intel, f32 products at least this large with a side of at most [`THIN_SIDE`] run on our
/// kernel after all: a batch of 32 or 64 against a 512- to 2048-wide layer. There the crate
/// packs the wide operand for a few rows and ours, which packs it faster, ran whole README-loop
/// steps 3-15% faster (1000-wide GELU at batch 32: 4.5 against 5.4 ms; 512-wide SiLU at batch
/// 64: 3.6 against 3.8), while at 100 × 100 × 50 the crate still won (0.27 against 0.30 ms).
/// In f64 the two kernels measured level on those steps' weight gradients, so there the
/// thin side is the rows or the output columns, not the depth: the thin-batch forward
/// `(w·xᵀ)ᵀ` ([`linear_by_transpose`], which needs our kernel to read the weight in place)
/// and a batch's `x·wᵀ` and `dY·W`, where the crate's 32-row micro-tiles leave lanes empty on
/// batches such as 24 (README loop, f64, alternated, 5 rounds, 1 / 2 threads: batch-24
/// 1024-wide ReLU −20% / −21%, batch-32 1000-wide GELU −1% / −11%, the rest level).
const OWN_MIN_MACS_THIN_INTEL: usize = 1 << 24;

/// See [`OWN_MIN_MACS_THIN_INTEL`].
const THIN_SIDE: usize = 64;

/// [`OWN_MIN_MACS_THIN_INTEL`] for an f64 product computed fresh (not accumulated) whose row
/// count, at most [`THIN_SIDE`], is no multiple of [`CRATE_F64_TILE_ROWS`]: the crate's
/// largest f64 micro-tile is 32 rows (4 vectors of 8), so a batch of 16 or 40 runs partly on
/// its narrower edge tiles, where ours has 8-row tiles throughout. README loop, f64,
/// alternated, 5-6 rounds, 1 / 2 threads, two runs: batch-40 512-wide GELU −20 to −21% /
/// −19 to −25% (its forward and `dY·W`, 10.5 M multiply-adds each), batch-16 768-wide SiLU
/// +1 to +2% / −10% to level (its `dY·W`; noise is ±5% / ±10% there). Batches of 64 and 256
/// against 384- and 64-wide layers stay on the crate: moving them measured +1–3%; moving the
/// accumulating weight updates too measured level.
const OWN_MIN_MACS_THIN_INTEL_F64_RAGGED: usize = 1 << 23;

/// Rows of the `gemm` crate's largest f64 micro-tile with AVX-512 (see above).
const CRATE_F64_TILE_ROWS: usize = 32;

/// [`OWN_MIN_MACS_THIN_INTEL`] for an f32 product whose right operand is stored transposed:
/// the forward `x·wᵀ`, where the crate packs (transposes) the weight element by element and
/// ours by 16 × 16 register transposes. README loop, alternated, 4 rounds, 1 / 2 threads:
/// batch-40 512-wide GELU 2.90 → 2.49 / 2.18 → 1.85 ms (had been 5% behind JAX at 1 thread);
/// level (+2% / −3% over 8 rounds) on the other hold-out it moves, 784 inputs into 64 wide at
/// batch 256. Lowering the threshold for every layout instead made that shape 10% slower.
const OWN_MIN_MACS_THIN_INTEL_TRANSPOSED: usize = 1 << 23;

/// Products with at most this many rows run on vgrad's kernel at every size: a batch of up
/// to 8 against a layer's weight. With so few rows one row panel meets the weight, so our
/// kernel reads it in place, as dot products for the forward `x·wᵀ` or as rows for `dY·W`,
/// where packing (the crate's, or ours before) copied all of it for a single use. README
/// loop, Intel Xeon, alternated, 1 / 2 threads: batch-4 1024-wide ReLU 4.08 → 1.67 / 2.26 →
/// 1.10 ms, batch-8 512-wide tanh 2.23 → 1.40 / 1.80 → 1.18 ms, batch-2 256-wide ReLU −37% /
/// −33%; f64 batch-8 4096-wide GELU −15% / −17%. The weight gradient `dYᵀ·x` of such a batch
/// is only `k ≤ 8` deep but not thin in this sense: writing its fresh `[out, in]` output, the
/// crate was faster (1024 × 1024 × 8: 277 against 343 µs in f32, 494 against 630 in f64);
/// added onto the weight instead (plain SGD's update from the gradient's factors, `lazy.rs`),
/// ours was: f64 README loop, 1 / 2 threads, 4096-wide GELU at batch 8 −6% / −2%, 1024-wide
/// ReLU at batch 4 −6% / −2% (f32 level to −5%).
/// Up to 16 rows, a forward product that reads as dot products (`reads_as_dots`: the weight
/// past L2) runs on ours too: batch-16 768-wide SiLU −19% / −6% in f32, level in f64, where
/// moving that batch's `dY·W` to ours as well was 9% slower.
const THIN_ROWS: usize = 8;

/// The same for f64, where our kernel held its lead up to larger products (a 50 × 100 × 100
/// product's step: 0.66 ms on ours, 0.77 on the crate's) and lost above (mid_relu: 5.8 vs 4.9).
const OWN_MAX_MACS_INTEL_F64: usize = 1 << 20;

/// Which kernel runs an `m × k × n` product on an AVX-512 CPU: vgrad's own (true) or the `gemm`
/// crate's x86-v4 kernels (false). Measured, not reasoned: ours was tuned on AMD Zen 4, where it
/// beat the crate on every training step measured, and runs every product there. On an Intel
/// Xeon (Sapphire/Emerald Rapids class) the crate's kernels are faster on the larger products:
/// `cargo bench --bench gemm`, one thread, the crate is 10–16% faster on the backward products
/// `dY·W` and `dYᵀ·X` from 128 × 128 × 128 up, ours 6% faster on the forward `x·Wᵀ` at widths
/// that are multiples of 32, and whole training steps ran 5–18% faster with the crate on every
/// config whose products exceed 2¹⁸ multiply-adds (odd widths included), 5–8% slower on the
/// 32- and 64-wide deep stacks (BENCHMARKS.md). So on Intel ours runs the products up to
/// [`OWN_MAX_MACS_INTEL`] (f32) or [`OWN_MAX_MACS_INTEL_F64`] (f64) multiply-adds, the crate the
/// rest, except thin products (one side at most 64, [`OWN_MIN_MACS_THIN_INTEL`], or
/// [`OWN_MIN_MACS_THIN_INTEL_TRANSPOSED`] for a transposed right operand, or
/// [`OWN_MIN_MACS_THIN_INTEL_F64_RAGGED`] for an f64 batch the crate's tiles fit badly; at most
/// [`THIN_ROWS`] rows, any size; those read as dot products, `reads_as_dots`; and, with
/// `accumulate`, those at most [`THIN_ROWS`] deep). `csa` and `rsb` are the left operand's
/// column stride and the right one's row stride. Splitting every product by operand layout
/// measured no better; only these layout rules did. The environment variable
/// `VGRAD_GEMM=own` or `VGRAD_GEMM=crate`, read once, overrides the choice everywhere (for
/// measuring it on another CPU).
fn own_kernel_for<T>(
    m: usize,
    k: usize,
    n: usize,
    csa: isize,
    rsb: isize,
    accumulate: bool,
) -> bool {
    use std::sync::OnceLock;
    #[derive(Clone, Copy, PartialEq)]
    enum Choice {
        Own,
        Crate,
        Intel,
    }
    static CHOICE: OnceLock<Choice> = OnceLock::new();
    let choice = *CHOICE.get_or_init(|| match std::env::var("VGRAD_GEMM").as_deref() {
        Ok("own") => Choice::Own,
        Ok("crate") => Choice::Crate,
        _ if is_intel() => Choice::Intel,
        _ => Choice::Own,
    });
    match choice {
        Choice::Own => true,
        Choice::Crate => false,
        Choice::Intel => {
            let is_f64 = std::mem::size_of::<T>() == 8;
            let macs = m.saturating_mul(k).saturating_mul(n);
            // In f64 a thin side is the rows or the output columns, not the depth (see
            // OWN_MIN_MACS_THIN_INTEL).
            let (limit, thin_side) = if is_f64 {
                (OWN_MAX_MACS_INTEL_F64, m.min(n))
            } else {
                (OWN_MAX_MACS_INTEL, m.min(k).min(n))
            };
            let thin_min = if !is_f64 && rsb == 1 {
                // A transposed right operand (the forward `x·wᵀ`) is where our packing, by
                // register transposes, gains most, so its thin products move over sooner.
                OWN_MIN_MACS_THIN_INTEL_TRANSPOSED
            } else if is_f64
                && !accumulate
                && m <= THIN_SIDE
                && !m.is_multiple_of(CRATE_F64_TILE_ROWS)
            {
                OWN_MIN_MACS_THIN_INTEL_F64_RAGGED
            } else {
                OWN_MIN_MACS_THIN_INTEL
            };
            let thin = thin_side <= THIN_SIDE && macs >= thin_min;
            macs <= limit
                || thin
                || m <= THIN_ROWS
                || reads_as_dots::<T>(m, k, n, csa, rsb)
                || (accumulate && k <= THIN_ROWS)
        }
    }
}

/// Whether vgrad's kernel would compute this product as dot products (`gemm512::as_dots`), so
/// reading its right operand in place; never off x86-64.
// T picks the kernel's lane count on x86-64 only.
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(clippy::extra_unused_type_parameters)
)]
fn reads_as_dots<T>(m: usize, k: usize, n: usize, csa: isize, rsb: isize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::gemm512::as_dots::<T>(m, k, n, csa, rsb)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, k, n, csa, rsb);
        false
    }
}

/// Whether the CPU's vendor string is Intel's: the kernels' measured choices differ between
/// Intel and AMD (here and in `gemm512`). Read once: under a hypervisor CPUID traps, costing
/// microseconds per call.
pub(super) fn is_intel() -> bool {
    use std::sync::OnceLock;
    static INTEL: OnceLock<bool> = OnceLock::new();
    *INTEL.get_or_init(vendor_is_intel)
}

/// [`is_intel`], asked of the CPU.
fn vendor_is_intel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 0 returns the vendor string in EBX, EDX, ECX ("Genu", "ineI", "ntel").
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        let id = unsafe { std::arch::x86_64::__cpuid(0) };
        id.ebx == u32::from_le_bytes(*b"Genu")
            && id.edx == u32::from_le_bytes(*b"ineI")
            && id.ecx == u32::from_le_bytes(*b"ntel")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One row-major matrix operand: element (i, j) lives at `base + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct Operand<'a, T> {
    data: &'a [T],
    rs: isize,
    cs: isize,
}

/// Rows (not the longer side) of a product vgrad's kernel splits between threads when its left
/// operand is stored transposed (`csa ≠ 1`, a weight gradient `dYᵀ·X` or SGD's update
/// `W += −lr·dYᵀ·X` from its factors): a column block needs all of that operand, which the
/// kernel packs, so each thread would pack and stream the whole of it. With rows, each packs
/// its own part, and the right operand (`X`, row-major) is read in place or packed by plain
/// vector copies. Only where every thread still gets a block (`m ≥ 16` per thread), and not on
/// Intel CPUs, where it was not measured (there our kernel runs only the smaller products).
/// AMD Zen 4, 2 threads, one product alone (f32 / f64): `[1024, 256]ᵀ · [256, 1024]` −5% /
/// level, `256 × 128 × 256` −7 to −15% / −7%, `512 × 64 × 512` −15% / −8%, `64 × 32 × 512`
/// −12 to −21% / −21%, `256 × 128 × 784` −6% / −3%, `512 × 256 × 1024` level; README loop,
/// 1024-wide ReLU at batch 256 (its update is the square product) −6%. Except where a row
/// block would read a large right operand in place ([`ROW_SPLIT_B_BAND`]).
fn rows_for_packed_lhs<T>(m: usize, k: usize, n: usize, csa: isize, threads: usize) -> bool {
    let b_bytes = k.saturating_mul(n).saturating_mul(std::mem::size_of::<T>());
    csa != 1 && m >= 16 * threads && !ROW_SPLIT_B_BAND.contains(&b_bytes) && !is_intel()
}

/// Bytes of the right operand for which [`rows_for_packed_lhs`] keeps column blocks: past half
/// of Zen 4's 1 MiB L2 and still read in place by the kernel (up to its 512 KiB bound), each
/// row block would hold all of it in L2 while the output streams through. README loop, 2
/// threads, alternated, rows against columns: 2048-wide ReLU at batch 64 (512 KiB) +5%, +5%,
/// +6%, +13% in four runs; at batch 32 (256 KiB) −3%; 1500-wide at batch 33 (198 KiB) −22% and
/// −40%, 3000-wide at batch 16 −7% and −15%, the 1024-wide update at batch 256 (1 MiB, packed)
/// −6%. Built from the kernel's in-place bound, so the two cannot drift apart; empty off x86-64,
/// where vgrad's kernel does not run.
#[cfg(target_arch = "x86_64")]
const ROW_SPLIT_B_BAND: std::ops::RangeInclusive<usize> =
    super::gemm512::DIRECT_B_MAX_BYTES / 2 + 1..=super::gemm512::DIRECT_B_MAX_BYTES;
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::reversed_empty_ranges)]
const ROW_SPLIT_B_BAND: std::ops::RangeInclusive<usize> = 1..=0;

/// Rows per unit when vgrad's kernel splits a product's rows between threads: its row panels
/// ([`gemm512::MR`](super::gemm512) rows). Edges at multiples of it give no block a ragged
/// panel the whole product would not have had, and balance the shares to a panel: 200 rows
/// split 104 / 96, where the 16 of column splits gave 112 / 88. Weight gradients `dYᵀ·X` alone,
/// 2 threads, best of many, f32 / f64: 200 × 96 × 200 −6 to −10% / −10 to −13%, 450 × 333 ×
/// 450 −5% / −3 to −15%, 300 × 256 × 300 level / −4%; README loop level (6–8 rounds).
#[cfg(target_arch = "x86_64")]
const OWN_ROW_UNIT: usize = super::gemm512::MR;
/// Off x86-64 vgrad's kernel never runs (`own` is always false), so this is never used.
#[cfg(not(target_arch = "x86_64"))]
const OWN_ROW_UNIT: usize = 16;

/// dst[m, n] (row-major, contiguous) = lhs[m, k] · rhs[k, n] on at most `threads` threads (a
/// product too small for them runs on the caller alone), writing every element of `dst`;
/// with `accumulate`, dst += lhs · rhs instead; with a `bias` (n values, not with `accumulate`),
/// dst = lhs · rhs + bias in every row, the bias added as each output tile is first stored.
/// Without `accumulate`, `dst` may be uninitialised: the GEMM is told not to read it, so output
/// buffers are never zero-filled first (that memset was 9% of a deep network's training step).
///
/// # Safety
/// With `accumulate`, every element of `dst` must be initialised.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    lhs: Operand<'_, T>,
    rhs: Operand<'_, T>,
    dst: &mut [MaybeUninit<T>],
    accumulate: bool,
    bias: Option<&[T]>,
    threads: usize,
) {
    debug_assert_eq!(dst.len(), m * n);
    debug_assert!(bias.is_none_or(|b| b.len() == n && !accumulate));
    let bias_ptr = bias.map_or(std::ptr::null(), <[T]>::as_ptr);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_exact_mut(n) {
                for (d, j) in row.iter_mut().zip(0..) {
                    d.write(bias.map_or(T::zero(), |b| b[j]));
                }
            }
        }
        return;
    }
    let own = own_kernel_for::<T>(m, k, n, lhs.cs, rhs.rs, accumulate);
    if threads <= 1 || m * n * k < PARALLEL_MIN_MACS {
        // SAFETY: as in `gemm_block`; the whole product is one block.
        unsafe {
            gemm_block(
                m,
                k,
                n,
                lhs.data.as_ptr(),
                lhs,
                rhs.data.as_ptr(),
                rhs,
                dst.as_mut_ptr() as *mut T,
                n,
                accumulate,
                bias_ptr,
                own,
            )
        };
        return;
    }
    if own && splits_depth(m, k, n, threads) {
        // SAFETY: the caller's contract.
        return unsafe { gemm_by_depth([m, k, n], lhs, rhs, dst, accumulate, bias_ptr, threads) };
    }
    // Cut the output into blocks along its longer side, so each block repacks the smaller
    // operand (a column block needs all of lhs, a row block all of rhs), except where
    // [`rows_for_packed_lhs`] says otherwise. One block per thread:
    // with vgrad's kernel, every extra block repacks an operand, and two per thread were 2-4%
    // slower on the 2-thread steps; a block a helper has not started is still taken back by the
    // caller (`parallel::run`). Block edges are multiples of 16, the AVX-512 f32 lane count, so
    // no block ends in a ragged kernel tile that the whole product would not have had; rows on
    // vgrad's kernel need only multiples of its row panel ([`OWN_ROW_UNIT`]).
    let by_cols = n >= m && !(own && rows_for_packed_lhs::<T>(m, k, n, lhs.cs, threads));
    let extent = if by_cols { n } else { m };
    let unit = if own && !by_cols { OWN_ROW_UNIT } else { 16 };
    let chunk = extent.div_ceil(threads).next_multiple_of(unit);
    let parts = extent.div_ceil(chunk);
    let [out, lp, rp, bp] = shared_ptrs(dst, lhs, rhs, bias_ptr);
    super::parallel::run(parts, threads, &|part| {
        let lo = part * chunk;
        let len = chunk.min(extent - lo);
        // SAFETY (also what SharedPtr asks): blocks are disjoint ranges of rows or columns of
        // dst, the operands are only read, every pointer offset stays
        // inside its operand (lo < extent), and dst outlives `run`, which returns only when every
        // block is written.
        unsafe {
            if by_cols {
                gemm_block(
                    m,
                    k,
                    len,
                    lp.get(),
                    lhs,
                    rp.get().offset(lo as isize * rhs.cs),
                    rhs,
                    out.get().add(lo),
                    n,
                    accumulate,
                    if bp.get().is_null() {
                        bp.get()
                    } else {
                        bp.get().add(lo)
                    },
                    own,
                )
            } else {
                gemm_block(
                    len,
                    k,
                    n,
                    lp.get().offset(lo as isize * lhs.rs),
                    lhs,
                    rp.get(),
                    rhs,
                    out.get().add(lo * n),
                    n,
                    accumulate,
                    bp.get(),
                    own,
                )
            }
        }
    });
}

/// The output's, the operands' and the bias's pointers, to be shared with the helper threads.
fn shared_ptrs<T>(
    dst: &mut [MaybeUninit<T>],
    lhs: Operand<'_, T>,
    rhs: Operand<'_, T>,
    bias: *const T,
) -> [SharedPtr<T>; 4] {
    [
        SharedPtr(dst.as_mut_ptr() as *mut T),
        SharedPtr(lhs.data.as_ptr() as *mut T),
        SharedPtr(rhs.data.as_ptr() as *mut T),
        SharedPtr(bias as *mut T),
    ]
}

/// Depth per thread, as a multiple of the output's longer side, from which a product on
/// vgrad's kernel is cut along k rather than into blocks of the output ([`gemm_by_depth`]).
/// AMD Zen 4, 2 threads, one product alone, best of many (f32 / f64), depth against blocks:
/// `[200, 800]·[800, 200]` with the left operand transposed (a weight gradient) −10% / −8%,
/// `128 × 1024 × 128` −9% / −6%, `64 × 3072 × 256` −5% / −8% (and −5% / −5% with the right
/// operand transposed instead, a forward `x·wᵀ`), `96 × 4096 × 96` −5% / −15%,
/// `200 × 2000 × 200` −11% / −8%; at shares of about 2× the longer side level (`256 × 1000 ×
/// 256`, `256 × 512 × 256`), and at 1× slower (`128³` +45%, `256³` +6%, `512³` +10%: each
/// thread's partial tiles add as many loads and stores of the output as they save packing).
const DEPTH_SPLIT_MIN_RATIO: usize = 2;

/// Whether [`gemm_into`] cuts this product along k: a weight gradient `dYᵀ·X` (or SGD's update
/// `W += −lr·dYᵀ·X`) over a batch many times the layer's width. Cut into blocks of rows or
/// columns, every thread would pack one whole factor (k × n or m × k) for a small share of
/// the output.
fn splits_depth(m: usize, k: usize, n: usize, threads: usize) -> bool {
    k >= DEPTH_SPLIT_MIN_RATIO * threads * m.max(n)
}

/// [`gemm_into`] on `threads` threads, each taking a consecutive share of k: the first adds its
/// partial product to `dst` as `gemm_into` would the whole (accumulating, with the bias, or
/// fresh), the others write theirs to scratch matrices that are then added onto `dst`. Each
/// thread packs only its share of both factors, and the shares are equal to an element. The
/// sum is associated differently from one thread's (the shares' partial sums added last), so
/// results may differ between thread counts in the last bits, as PyTorch's do.
///
/// # Safety
/// As [`gemm_into`]; m, n, k > 0.
unsafe fn gemm_by_depth<T: Element>(
    [m, k, n]: [usize; 3],
    lhs: Operand<'_, T>,
    rhs: Operand<'_, T>,
    dst: &mut [MaybeUninit<T>],
    accumulate: bool,
    bias: *const T,
    threads: usize,
) {
    let chunk = k.div_ceil(threads);
    let parts = k.div_ceil(chunk);
    let mn = m * n;
    let mut scratch = super::pool::with_capacity::<T>(mn * (parts - 1));
    let sp = SharedPtr(scratch.spare_capacity_mut().as_mut_ptr() as *mut T);
    let [out, lp, rp, bp] = shared_ptrs(dst, lhs, rhs, bias);
    super::parallel::run(parts, threads, &|part| {
        let lo = part * chunk;
        let len = chunk.min(k - lo);
        // SAFETY (also what SharedPtr asks): each part writes its own matrix (dst, or its m × n
        // share of the scratch, which holds (parts − 1)·m·n elements), the operands are only
        // read and `lo` < k keeps both offsets inside them; dst and the scratch outlive `run`.
        unsafe {
            let (c, acc, b) = if part == 0 {
                (out.get(), accumulate, bp.get() as *const T)
            } else {
                (sp.get().add((part - 1) * mn), false, std::ptr::null())
            };
            gemm_block(
                m,
                len,
                n,
                lp.get().offset(lo as isize * lhs.cs),
                lhs,
                rp.get().offset(lo as isize * rhs.rs),
                rhs,
                c,
                n,
                acc,
                b,
                true,
            )
        }
    });
    // SAFETY: `run` returned, so every part wrote its whole matrix: dst is initialised, and so
    // are the scratch's (parts − 1)·m·n elements.
    let dst = unsafe {
        scratch.set_len(mn * (parts - 1));
        std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut T, mn)
    };
    super::simd::dispatch(|| {
        for share in scratch.chunks_exact(mn) {
            for (d, &s) in dst.iter_mut().zip(share) {
                *d += s;
            }
        }
    });
}

/// dst[m, n] (row stride `dst_rs`, column stride 1) = lhs[m, k] · rhs[k, n] (or += with
/// `accumulate`, or + the row `bias` when that is not null) on one thread, where `lhs_ptr`/`rhs_ptr` point at element (0, 0) of the block
/// and the operands give its strides. `own` is [`own_kernel_for`]'s choice for the whole product
/// (so the blocks of one product all run on the same kernel).
///
/// # Safety
/// Every element the strides reach from the pointers must lie inside its operand's slice, dst
/// must be valid for writes of the m × n block (and initialised, with `accumulate`) and not
/// accessed concurrently by anything else.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    lhs_ptr: *const T,
    lhs: Operand<'_, T>,
    rhs_ptr: *const T,
    rhs: Operand<'_, T>,
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    bias: *const T,
    own: bool,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = own;
    // vgrad's own AVX-512 kernel where the CPU has it, except for outputs narrower than one
    // f32 vector (a network's last layer), where its 32-wide tiles would be mostly padding: the
    // `gemm` crate was 2× faster on the 1024-wide step's [256, 1024] · [1024, 10]. A thin batch
    // keeps ours at any width: its forward products are dot products, not tiles.
    #[cfg(target_arch = "x86_64")]
    if own && (n >= 16 || m <= THIN_ROWS) && super::gemm512::available() {
        use std::any::TypeId;
        // SAFETY (of each call): the caller's contract is the kernel's; m, n, k > 0 (gemm_into
        // returns early otherwise) and the CPU has AVX-512F. The casts are identities: T is the
        // type checked.
        macro_rules! own_kernel {
            ($t:ty, $module:ident) => {
                if TypeId::of::<T>() == TypeId::of::<$t>() {
                    return unsafe {
                        super::gemm512::$module::gemm(
                            m,
                            k,
                            n,
                            lhs_ptr as *const $t,
                            lhs.rs,
                            lhs.cs,
                            rhs_ptr as *const $t,
                            rhs.rs,
                            rhs.cs,
                            dst as *mut $t,
                            dst_rs,
                            accumulate,
                            bias as *const $t,
                        )
                    };
                }
            };
        }
        own_kernel!(f32, f32s);
        own_kernel!(f64, f64s);
    }
    // The crate takes no bias: pre-fill the block's rows with it and accumulate onto them.
    let accumulate = if bias.is_null() {
        accumulate
    } else {
        for i in 0..m {
            // SAFETY: row i of the block is inside dst (the caller's contract) and the bias
            // has n entries; the rows do not overlap the bias.
            unsafe { std::ptr::copy_nonoverlapping(bias, dst.add(i * dst_rs), n) };
        }
        true
    };
    // SAFETY: the caller's contract; without `accumulate`, read_dst = false so dst's prior
    // contents are never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs_ptr,
            lhs.cs,
            lhs.rs,
            rhs_ptr,
            rhs.cs,
            rhs.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

impl<T: Element> Tensor<T> {
    /// Matrix product `self · other`; see [`Tensor::matmul_t`].
    ///
    /// # Panics
    /// As [`Tensor::matmul_t`].
    #[track_caller]
    pub fn matmul(&self, other: &Tensor<T>) -> Tensor<T> {
        self.matmul_t(other, false, false)
    }

    /// Matrix product `op(self) · op(other)` where `op` transposes the last two axes when the
    /// matching flag is set. The transpose is passed to the GEMM as strides, never copied.
    ///
    /// Both operands need at least 2 axes; leading (batch) axes broadcast NumPy-style, so
    /// `[b, m, k] · [k, n]` applies one matrix to every batch entry.
    ///
    /// # Panics
    /// If an operand has fewer than 2 axes, the inner extents differ, or the batch axes do not
    /// broadcast. The message names the op and both shapes.
    #[track_caller]
    pub fn matmul_t(&self, other: &Tensor<T>, ta: bool, tb: bool) -> Tensor<T> {
        // Subnormals flushed in the product and its helper threads (see `set_flush_denormal`);
        // the product of the two sizes stands in for the work, so a 1×1 product pays nothing.
        let _flush = FlushScope::for_elems(self.numel().saturating_mul(other.numel()));
        let (a, b) = (self.shape(), other.shape());
        assert!(
            a.len() >= 2 && b.len() >= 2,
            "matmul: {a:?} x {b:?}: both operands need at least 2 axes"
        );
        let (ar, ac) = (a[a.len() - 2], a[a.len() - 1]);
        let (br, bc) = (b[b.len() - 2], b[b.len() - 1]);
        let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if tb { (bc, br) } else { (br, bc) };
        assert!(
            k == k2,
            "matmul: {a:?}{} x {b:?}{}: inner dimensions differ ({k} vs {k2})",
            if ta { "ᵀ" } else { "" },
            if tb { "ᵀ" } else { "" }
        );
        let lhs_strides = if ta { (1, m as isize) } else { (k as isize, 1) };
        let rhs_strides = if tb { (1, k as isize) } else { (n as isize, 1) };
        {
            // The output's count is not bounded by the inputs' memory (empty inner extents, or
            // two tall operands): checked once, so no kernel sizes a buffer by a wrapped count.
            let mut out = broadcast_shapes("matmul", &a[..a.len() - 2], &b[..b.len() - 2]);
            out.extend_from_slice(&[m, n]);
            super::numel_of::<T>("matmul", &out);
        }

        // Fast path: no batch axes on the right, and a left operand whose batch axes fold into
        // its rows (row-major, not transposed): one GEMM of [B·m, k] · [k, n].
        if b.len() == 2 && (a.len() == 2 || !ta) {
            let rows = self.numel() / k.max(1);
            let rows = if k == 0 {
                a[..a.len() - 1].iter().product()
            } else {
                rows
            };
            let lhs = Operand {
                data: self.data(),
                rs: lhs_strides.0,
                cs: lhs_strides.1,
            };
            let rhs = Operand {
                data: other.data(),
                rs: rhs_strides.0,
                cs: rhs_strides.1,
            };
            let out = if matmul_by_transpose::<T>(rows, k, n, rhs_strides) {
                product_via_transpose(lhs, rhs, rows, k, n, None)
            } else {
                // SAFETY: not accumulating, so dst may be uninitialised.
                filled_by(rows * n, |dst| unsafe {
                    gemm_into(rows, k, n, lhs, rhs, dst, false, None, super::num_threads())
                })
            };
            let mut shape: Shape = a[..a.len() - 2].into();
            shape.extend_from_slice(&[m, n]);
            return Tensor::from_parts(out, shape);
        }

        let batch = broadcast_shapes("matmul", &a[..a.len() - 2], &b[..b.len() - 2]);
        let nb: usize = batch.iter().product();
        let (sa, sb) = (ar * ac, br * bc);
        let a_off = batch_offsets(&a[..a.len() - 2], &batch, sa);
        let b_off = batch_offsets(&b[..b.len() - 2], &batch, sb);
        let mn = m * n;
        // Product i of the batch into its `m × n` slot of `out`, on `threads` threads.
        let product = |i: usize, out: &mut [MaybeUninit<T>], threads: usize| {
            // SAFETY: not accumulating, so dst may be uninitialised.
            unsafe {
                gemm_into(
                    m,
                    k,
                    n,
                    Operand {
                        data: &self.data()[a_off[i]..a_off[i] + sa],
                        rs: lhs_strides.0,
                        cs: lhs_strides.1,
                    },
                    Operand {
                        data: &other.data()[b_off[i]..b_off[i] + sb],
                        rs: rhs_strides.0,
                        cs: rhs_strides.1,
                    },
                    out,
                    false,
                    None,
                    threads,
                )
            };
        };
        let threads = super::num_threads();
        let out = filled_by(nb * mn, |out| {
            // The batch's products shared out whole, each on one thread: products too small
            // to split (64 × 64 × 64) otherwise ran one after another on one core, and larger
            // ones split each pay a hand-off and a repacked operand per block. Two threads, AMD
            // Zen 3, batch × m × k × n, before → after (PyTorch): 64 × 64³ 0.60 → 0.27 ms
            // (0.41), 32 × 128 × 64 × 128 1.20 → 0.48 (0.61), 8 × 512³ 20.6 → 12.9 (16.6).
            // Large products still split one by one where whole ones would leave a thread idle
            // for long (3 of 512³ on 2 threads).
            let small = m * n * k < PARALLEL_MIN_MACS;
            let balanced = nb.is_multiple_of(threads) || nb >= 4 * threads;
            if threads > 1
                && nb > 1
                && mn > 0
                && nb * mn * k >= PARALLEL_MIN_MACS
                && (small || balanced)
            {
                let pieces = nb.min(4 * threads);
                let per = nb.div_ceil(pieces);
                let pieces = nb.div_ceil(per);
                let base = SharedPtr(out.as_mut_ptr());
                super::parallel::run(pieces, threads, &|piece| {
                    for i in piece * per..nb.min((piece + 1) * per) {
                        // SAFETY: each batch index belongs to one piece and each piece runs
                        // once, so the `m × n` slots are disjoint and inside `out` (i < nb);
                        // `out` outlives `run`.
                        let slot =
                            unsafe { std::slice::from_raw_parts_mut(base.get().add(i * mn), mn) };
                        product(i, slot, 1);
                    }
                });
            } else {
                for (i, slot) in out.chunks_exact_mut(mn.max(1)).enumerate().take(nb) {
                    product(i, slot, threads);
                }
            }
        });
        let mut shape = batch;
        shape.extend_from_slice(&[m, n]);
        Tensor::from_parts(out, shape)
    }
}

impl<T: Element> Tensor<T> {
    /// `self·weightᵀ + bias` for `self` `[.., in]`, `weight` `[out, in]`, `bias` `[out]`: one
    /// GEMM that adds the bias as it first stores each output tile; see
    /// [`Var::linear`](crate::Var::linear).
    ///
    /// # Panics
    /// If `self` has no axes, `weight` is not 2-D, the inner extents differ or `bias` is not
    /// `[out]`; the message names the shapes.
    #[track_caller]
    pub fn linear(&self, weight: &Tensor<T>, bias: Option<&Tensor<T>>) -> Tensor<T> {
        let _flush = FlushScope::for_elems(self.numel().saturating_mul(weight.numel()));
        let (xs, ws) = (self.shape(), weight.shape());
        assert!(
            !xs.is_empty() && ws.len() == 2 && xs[xs.len() - 1] == ws[1],
            "linear: input {xs:?} x weight {ws:?}: need input [.., in] and weight [out, in]"
        );
        let (out, k) = (ws[0], ws[1]);
        if let Some(b) = bias {
            assert!(
                b.shape() == [out],
                "linear: weight {ws:?} with bias {:?}: the bias must be [{out}]",
                b.shape()
            );
        }
        let rows = xs[..xs.len() - 1].iter().product::<usize>();
        let bias = bias.map(|b| b.data());
        let data = if linear_by_transpose::<T>(rows, k, out) {
            linear_via_transpose(self.data(), weight.data(), bias, rows, k, out)
        } else {
            let lhs = Operand {
                data: self.data(),
                rs: k as isize,
                cs: 1,
            };
            // wᵀ as strides: element (p, j) of wᵀ is w[j, p].
            let rhs = Operand {
                data: weight.data(),
                rs: 1,
                cs: k as isize,
            };
            filled_by(rows * out, |dst| {
                // SAFETY: not accumulating, so dst may be uninitialised; the bias has `out` values.
                unsafe {
                    gemm_into(
                        rows,
                        k,
                        out,
                        lhs,
                        rhs,
                        dst,
                        false,
                        bias,
                        super::num_threads(),
                    )
                }
            })
        };
        let mut shape: Shape = xs[..xs.len() - 1].into();
        shape.push(out);
        Tensor::from_parts(data, shape)
    }
}

/// Whether `Tensor::linear` computes a `rows × k` input times a `[out, k]` weight as
/// `(w·xᵀ)ᵀ` ([`linear_via_transpose`]): `x·wᵀ` has the kernel pack (transpose) the whole
/// weight, 1 MiB for a 512-wide layer, for only a few row panels to reuse; `w·xᵀ` reads the
/// row-major weight as its left operand and packs only the small `xᵀ`.
///
/// On vgrad's AVX-512 kernel: f32 or f64, a thin batch (at most [`THIN_SIDE`] rows, both
/// extents multiples of 16) and at least [`OWN_MIN_MACS_THIN_INTEL`] multiply-adds. README
/// loop, Intel Xeon, 1 thread, alternated: batch-64 512-wide SiLU 3.87 → 3.49 ms, batch-64
/// 2048-wide ReLU 21.9 → 20.9 ms. f64, README loop, alternated (median of 8 rounds at 1 thread
/// / 5 at 2): batch-64 512-wide SiLU −8% / −7%, batch-64 2048-wide ReLU −8% / −8%. Measured
/// on Intel only; on AMD, where ours runs every product, it applies too, unmeasured (the same
/// packing is saved there, and Zen 4's L2 is half the size).
///
/// On the `gemm` crate's kernels (an x86-64 CPU without AVX-512): from 2 to [`THIN_SIDE`] rows
/// against a weight past [`CRATE_TRANSPOSE_MIN_WEIGHT_BYTES`], and up to twice that many past
/// [`CRATE_TRANSPOSE_MIN_WEIGHT_BYTES_TALL`], any extents (the crate's one-row
/// product is a matrix-vector loop either way). The crate's packing of a transposed weight is
/// slow: one product alone, f32, 1 thread, AMD Zen 3, `x·wᵀ` against `w·xᵀ`: 8 × 1024 × 1024
/// 1.72 against 0.36 ms, 24 × 1024 × 1024 1.50 against 0.73; at 100 to 300 rows level
/// (100 × 768 × 768, 200 × 1200 × 1200, 300 × 640 × 640). Not off x86-64, where it was not
/// measured.
// T picks the kernel's lane count on x86-64 only.
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(clippy::extra_unused_type_parameters)
)]
fn linear_by_transpose<T: Element>(rows: usize, k: usize, out: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !super::gemm512::available() {
            let weight_bytes = k
                .saturating_mul(out)
                .saturating_mul(std::mem::size_of::<T>());
            return rows >= 2
                && weight_bytes >= CRATE_TRANSPOSE_MIN_WEIGHT_BYTES
                && (rows <= THIN_SIDE
                    || (rows <= 2 * THIN_SIDE
                        && weight_bytes >= CRATE_TRANSPOSE_MIN_WEIGHT_BYTES_TALL));
        }
        (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            || std::any::TypeId::of::<T>() == std::any::TypeId::of::<f64>())
            && rows <= THIN_SIDE
            && rows.is_multiple_of(16)
            && out.is_multiple_of(16)
            && rows.saturating_mul(k).saturating_mul(out) >= OWN_MIN_MACS_THIN_INTEL
            && own_kernel_for::<T>(out, k, rows, 1, 1, false)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, k, out);
        false
    }
}

/// Least bytes of weight for which [`linear_by_transpose`] computes a thin batch's `x·wᵀ` as
/// `(w·xᵀ)ᵀ` on the `gemm` crate's kernels: half a MiB, Zen 3's L2. A smaller weight is packed
/// from cache, and the extra pass back cost more than it saved. `Tensor::linear` with a bias
/// alone, f32, 1 thread, AMD Zen 3, median µs of three runs each, `x·wᵀ` against `(w·xᵀ)ᵀ`:
/// 2 × 4000 × 4000 11,950 against 10,000, 64 × 2048 × 2048 10,300 against 7,240, 64 × 512 × 512
/// 579 against 438, 48 × 448 × 448 (784 KiB) 283 against 220; 64 × 256 × 256 (256 KiB) level;
/// 50 × 200 × 200 76 against 89, 64 × 64 × 64 11 against 16. README loop, alternated, 6
/// rounds: batch-5 640-wide ELU −18%, batch-24 1024-wide ReLU −15%, batch-50 200-wide sigmoid
/// +12% (its 160 KiB weights, now below the bound).
#[cfg(target_arch = "x86_64")]
const CRATE_TRANSPOSE_MIN_WEIGHT_BYTES: usize = 1 << 19;

/// [`CRATE_TRANSPOSE_MIN_WEIGHT_BYTES`] for batches of 65 to 128 rows: 4 MiB, a 1024-wide f32
/// layer. `Tensor::linear` alone, f32, 1 thread, AMD Zen 3, median µs of three runs each,
/// `x·wᵀ` against `(w·xᵀ)ᵀ`: 80 × 2048 × 2048 13,600 against 10,900, 128 × 2048 × 2048 17,400
/// against 14,500, 96 × 1024 × 1024 4,180 against 3,340; below 4 MiB level or slower (100 × 768
/// × 768 1,850 against 1,860, 100 × 600 × 600 1,030 against 1,230). README loop, alternated, 4
/// rounds, 1 / 2 threads: 1536-wide tanh at batch 80 −6 / −4%, 1536-wide ELU at batch 96 −3 /
/// −4%, 1024-wide ReLU at batch 128 −4% / level.
#[cfg(target_arch = "x86_64")]
const CRATE_TRANSPOSE_MIN_WEIGHT_BYTES_TALL: usize = 4 << 20;

/// Whether `Tensor::matmul_t` computes a thin `[rows, k] · [k, n]` as `(bᵀ·aᵀ)ᵀ`
/// ([`product_via_transpose`]): on the `gemm` crate's kernels (x86-64 without AVX-512), from
/// [`CRATE_THIN_ROWS`] rows, the right operand row-major (`rhs_strides` = `(n, 1)`: a Linear
/// input gradient `dY·W`, or `x.matmul(w)`), at least [`CRATE_TRANSPOSE_MIN_WEIGHT_BYTES_TALL`]
/// of it, and its rows a multiple of [`CRATE_ALIASING_STRIDE_BYTES`] apart.
///
/// Why: the crate packs the right operand in panels of a few columns, walking each panel down
/// the rows; rows 2 KiB apart (or a multiple) fall into the same few cache sets, so each line
/// is evicted before the next panels use the rest of it. Swapped, that operand is the left one
/// and is read along its rows. One product alone, 1 thread, AMD Zen 3, median µs, `a·b`
/// against `(bᵀ·aᵀ)ᵀ`: f32 8 × 2048 × 2048 5,600 against 2,300, 32 × 2048 × 2048 11,500
/// against 4,400, 16 × 1024 × 1024 770 against 500, 48 × 2560 × 2560 19,100 against 11,900,
/// 32 × 1536 × 1536 3,900 against 2,200; f64 8 × 1024 × 1024 2,350 against 850, 32 × 2048 ×
/// 2048 30,800 against 15,000; at 2 threads f32 32 × 2048 × 2048 5,000 against 2,300. Outside
/// the bounds level or slower: rows apart by other strides (8 × 1792 × 1792, 10 × 2000 × 2000,
/// 12 × 1800 × 1800: 0.9–1.35×), fewer rows (6 × 1024 × 1024 f32 1.8×, 4 × 2048 × 2048 1.4×),
/// more (56 and 64 × 2048 × 2048 1.0–1.2×: the crate packs once for more row panels), smaller
/// operands (8 × 512 × 512 1.2×).
// T picks the element size on x86-64 only.
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(clippy::extra_unused_type_parameters)
)]
fn matmul_by_transpose<T: Element>(
    rows: usize,
    k: usize,
    n: usize,
    rhs_strides: (isize, isize),
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let size = std::mem::size_of::<T>();
        !super::gemm512::available()
            && (CRATE_THIN_ROWS..=THIN_SIDE_ALIASED).contains(&rows)
            && rhs_strides == (n as isize, 1)
            && (n * size).is_multiple_of(CRATE_ALIASING_STRIDE_BYTES)
            && k.saturating_mul(n).saturating_mul(size) >= CRATE_TRANSPOSE_MIN_WEIGHT_BYTES_TALL
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, k, n, rhs_strides);
        false
    }
}

/// Fewest rows for [`matmul_by_transpose`]: below 8 the crate's own small-batch path is the
/// faster (6 × 1024 × 1024 f32 266 against 470 µs).
#[cfg(target_arch = "x86_64")]
const CRATE_THIN_ROWS: usize = 8;

/// Most rows for [`matmul_by_transpose`]: 48, three of the crate's 16-row panels; at 56 and 64
/// rows the product as written measured level or faster.
#[cfg(target_arch = "x86_64")]
const THIN_SIDE_ALIASED: usize = 48;

/// Row strides of a right operand, in bytes, at which the crate's packing meets cache-set
/// aliasing ([`matmul_by_transpose`]): multiples of 2 KiB (512 f32 columns, 256 f64).
#[cfg(target_arch = "x86_64")]
const CRATE_ALIASING_STRIDE_BYTES: usize = 2048;

/// `x·wᵀ + b` for row-major `x` `[rows, k]`, `w` `[out, k]` and `b` `[out]`, computed as
/// `yᵀ = w·xᵀ` (the weight read as the row-major left operand) and transposed back with the
/// bias added as each value lands ([`product_via_transpose`]).
///
/// # Panics
/// If the slices do not have those extents, or as [`product_via_transpose`].
fn linear_via_transpose<T: Element>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    rows: usize,
    k: usize,
    out: usize,
) -> Vec<T> {
    assert!(
        x.len() == rows * k && w.len() == out * k && bias.is_none_or(|b| b.len() == out),
        "linear_via_transpose: x {} values, w {}, for [{rows}, {k}] x [{out}, {k}]",
        x.len(),
        w.len()
    );
    let lhs = Operand {
        data: x,
        rs: k as isize,
        cs: 1,
    };
    // wᵀ as strides: element (p, j) of wᵀ is w[j, p].
    let rhs = Operand {
        data: w,
        rs: 1,
        cs: k as isize,
    };
    product_via_transpose(lhs, rhs, rows, k, out, bias)
}

/// `a·b (+ bias)` for `a` `[m, k]` and `b` `[k, n]` (any strides), computed as
/// `(bᵀ·aᵀ)ᵀ`: the product with its operands swapped, as strides, then transposed back with
/// the bias (one value per column `j < n`) added as each value lands, by 16 × 16 register
/// transposes on AVX-512, else by [`transpose_add_bias`]. For the thin products where the
/// kernels handle the swapped layout better ([`linear_by_transpose`],
/// [`matmul_by_transpose`]).
///
/// # Panics
/// On a CPU with AVX-512F, unless `T` is f32 or f64 and `m` and `n` are multiples of 16
/// (the callers' rules check it first).
fn product_via_transpose<T: Element>(
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[T]>,
) -> Vec<T> {
    // Element (j, p) of bᵀ is b's (p, j): the same data with the strides swapped.
    let bt = Operand {
        data: b.data,
        rs: b.cs,
        cs: b.rs,
    };
    let at = Operand {
        data: a.data,
        rs: a.cs,
        cs: a.rs,
    };
    let yt = filled_by(n * m, |dst| {
        // SAFETY: not accumulating, so dst may be uninitialised; no bias.
        unsafe { gemm_into(n, k, m, bt, at, dst, false, None, super::num_threads()) }
    });
    #[cfg(target_arch = "x86_64")]
    let avx512 = super::gemm512::available();
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    let y = if avx512 {
        #[cfg(target_arch = "x86_64")]
        {
            let is = |id| std::any::TypeId::of::<T>() == id;
            assert!(
                (is(std::any::TypeId::of::<f32>()) || is(std::any::TypeId::of::<f64>()))
                    && m.is_multiple_of(16)
                    && n.is_multiple_of(16),
                "product_via_transpose: f32 or f64 on AVX-512, extents multiples of 16"
            );
            let mut y: Vec<T> = super::pool::with_capacity(m * n);
            // SAFETY: T is f32 or f64 (asserted) and the CPU has AVX-512F; `yt` holds n·m
            // values, the bias `n`, and `y` has room for the m·n values the transpose writes,
            // every one of them (both extents are multiples of 16, so of its 16 × 16 and 8 × 8
            // blocks).
            unsafe {
                super::gemm512::transpose_add_rows(&yt, n, m, bias, y.as_mut_ptr());
                y.set_len(m * n);
            }
            y
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no AVX-512 off x86-64")
    } else {
        filled_by(m * n, |dst| transpose_add_bias(&yt, n, m, bias, dst))
    };
    // Back to the pool for the next step's product of the same size.
    drop(super::pool::Buffer::new(yt));
    y
}

/// `dst[i·out + j] = src[j·rows + i] + bias[j]` for the row-major `out × rows` matrix `src`:
/// the thin `(w·xᵀ)` transposed back, writing every element of `dst` (`rows·out` of them). Row
/// by row of `dst`, so its writes are sequential and the reads step by `rows` values, at most
/// 2 · [`THIN_SIDE`]: each line of `src` read serves the next rows of `dst` from L1.
fn transpose_add_bias<T: Element>(
    src: &[T],
    out: usize,
    rows: usize,
    bias: Option<&[T]>,
    dst: &mut [MaybeUninit<T>],
) {
    debug_assert!(src.len() == out * rows && dst.len() == out * rows);
    for (i, row) in dst.chunks_exact_mut(out).enumerate() {
        let column = src[i..].iter().step_by(rows);
        match bias {
            Some(b) => {
                for ((d, &v), &bj) in row.iter_mut().zip(column).zip(b) {
                    d.write(v + bj);
                }
            }
            None => {
                for (d, &v) in row.iter_mut().zip(column) {
                    d.write(v);
                }
            }
        }
    }
}

/// `dst += α·gᵀ·x` for `g` of shape `[rows, out]`, `x` `[rows, inp]` and `dst` the row-major
/// `[out, inp]` matrix: a Linear weight's whole plain-SGD step (α = −lr) from its gradient's
/// factors, without forming the gradient (see `lazy.rs`). α scales the smaller factor, copied
/// into a recycled buffer; the product accumulates onto `dst` in the GEMM's own stores.
///
/// # Panics
/// If the shapes do not match (a bug in the caller, which pairs a weight with its own factors).
pub(crate) fn add_scaled_product_t<T: Element>(
    dst: &mut [T],
    g: &Tensor<T>,
    x: &Tensor<T>,
    alpha: T,
) {
    let (gsh, xsh) = (g.shape(), x.shape());
    assert!(
        gsh.len() == 2 && xsh.len() == 2 && gsh[0] == xsh[0] && dst.len() == gsh[1] * xsh[1],
        "add_scaled_product_t: factors {:?}, {:?} for a weight of {} elements",
        g.shape(),
        x.shape(),
        dst.len()
    );
    let (rows, out, inp) = (gsh[0], gsh[1], xsh[1]);
    let _flush = FlushScope::for_elems(dst.len());
    let (gs, xs);
    let (g, x) = if out <= inp {
        gs = g.scale(alpha);
        (gs.data(), x.data())
    } else {
        xs = x.scale(alpha);
        (g.data(), xs.data())
    };
    // gᵀ: element (i, r) of the [out, rows] left operand is g[r, i].
    let lhs = Operand {
        data: g,
        rs: 1,
        cs: out as isize,
    };
    let rhs = Operand {
        data: x,
        rs: inp as isize,
        cs: 1,
    };
    // SAFETY: accumulating reads `dst`, which is initialised (a `&mut [T]`); `MaybeUninit<T>`
    // has `T`'s layout, and the GEMM writes only values of `T` into it.
    let dst = unsafe {
        std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut MaybeUninit<T>, dst.len())
    };
    // SAFETY: every element of `dst` is initialised, as accumulation requires.
    unsafe {
        gemm_into(
            out,
            rows,
            inp,
            lhs,
            rhs,
            dst,
            true,
            None,
            super::num_threads(),
        )
    };
}

/// Element offset of each matrix of an operand with batch shape `own` within the broadcast batch
/// shape `full`, in row-major order of `full`.
fn batch_offsets(own: &[usize], full: &[usize], mat: usize) -> Vec<usize> {
    let nb: usize = full.iter().product();
    let pad = full.len() - own.len();
    let mut strides = vec![0usize; full.len()];
    let mut s = mat;
    for i in (0..own.len()).rev() {
        strides[i + pad] = if own[i] == 1 { 0 } else { s };
        s *= own[i];
    }
    (0..nb)
        .map(|mut flat| {
            let mut off = 0;
            for ax in (0..full.len()).rev() {
                off += (flat % full[ax]) * strides[ax];
                flat /= full[ax];
            }
            off
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An f64 reference tensor in the element type under test.
    fn cast<T: Element>(t: &Tensor<f64>) -> Tensor<T> {
        let v: Vec<T> = t.data().iter().map(|&v| T::from(v).unwrap()).collect();
        Tensor::from_vec(v, t.shape()).unwrap()
    }

    /// Textbook triple loop, the independent reference.
    fn naive(a: &Tensor<f64>, b: &Tensor<f64>) -> Vec<f64> {
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a.data()[i * k + p] * b.data()[p * n + j];
                }
            }
        }
        c
    }

    /// `x·wᵀ + b` computed as `(w·xᵀ)ᵀ` and transposed back with the bias, f32 and f64:
    /// against a triple loop in f64, on thin batches (16, 32 and 64 rows), an odd inner extent, 48- to
    /// 528-wide outputs (one to 33 blocks of the 16 × 16 transpose), with and without a bias,
    /// and one product large enough to be split over threads; without AVX-512 (the `gemm` crate
    /// and [`transpose_add_bias`]), ragged extents from 2 rows and a depth of 1.
    /// Called directly, whatever the policy would choose on this CPU.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn linear_via_transpose_matches_naive() {
        let cases: &[(usize, usize, usize, bool)] = if crate::tensor::gemm512::available() {
            &[
                (16, 37, 48, true),
                (32, 130, 528, false),
                (64, 64, 48, true),
                // 2²³ multiply-adds: split over threads where the test runs with more than one.
                (64, 256, 512, true),
            ]
        } else {
            // The crate's kernels and `transpose_add_bias`: any extents.
            &[
                (2, 37, 48, true),
                (5, 130, 33, false),
                (17, 64, 100, true),
                (64, 1, 7, true),
                (64, 256, 512, true),
            ]
        };
        for &(rows, k, out, with_bias) in cases {
            let x = Tensor::<f64>::from_fn(&[rows, k], |i| ((i * 7919) % 101) as f64 / 50.0 - 1.0);
            let w = Tensor::<f64>::from_fn(&[out, k], |i| ((i * 104729) % 97) as f64 / 48.0 - 1.0);
            let b: Vec<f64> = (0..out).map(|j| j as f64 / out as f64 - 0.5).collect();
            let mut want = naive(&x, &w.transpose(0, 1));
            if with_bias {
                for (i, v) in want.iter_mut().enumerate() {
                    *v += b[i % out];
                }
            }
            let f = |t: &Tensor<f64>| t.data().iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            let got32 =
                linear_via_transpose(&f(&x), &f(&w), with_bias.then_some(&b32[..]), rows, k, out);
            let got64 = linear_via_transpose(
                x.data(),
                w.data(),
                with_bias.then_some(&b[..]),
                rows,
                k,
                out,
            );
            let got32: Vec<f64> = got32.into_iter().map(f64::from).collect();
            for (got, tol, ty) in [(got32, 1e-4, "f32"), (got64, 1e-12, "f64")] {
                assert_eq!(got.len(), rows * out);
                for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() <= tol * (1.0 + e.abs()),
                        "{ty} {rows}x{k}x{out} at ({}, {}): {g} vs {e}",
                        i / out,
                        i % out
                    );
                }
            }
        }
    }

    /// `transpose_add_bias` against its definition, with and without a bias, from 1 × 1 to
    /// ragged extents, on any CPU (it is the crate path's pass back from `(w·xᵀ)`).
    #[test]
    fn transpose_add_bias_transposes() {
        for &(out, rows) in &[(1, 1), (1, 5), (7, 1), (33, 17), (100, 64)] {
            let src: Vec<f64> = (0..out * rows).map(|i| i as f64 * 0.5 - 3.0).collect();
            let bias: Vec<f64> = (0..out).map(|j| j as f64 * 10.0).collect();
            for b in [None, Some(&bias[..])] {
                let got = filled_by(rows * out, |d| transpose_add_bias(&src, out, rows, b, d));
                for i in 0..rows {
                    for j in 0..out {
                        let want = src[j * rows + i] + b.map_or(0.0, |b| b[j]);
                        assert!(
                            (got[i * out + j] - want).abs() < 1e-12,
                            "{out}x{rows} ({i}, {j})"
                        );
                    }
                }
            }
        }
    }

    /// The policy. On vgrad's AVX-512 kernel: f32 and f64 alike, thin batches in multiples of
    /// 16, outputs in multiples of 16, and products of at least 2²⁴ multiply-adds. On the
    /// `gemm` crate's: 2 to 64 rows, any extents, weights of at least 512 KiB (4 MiB from 65 to
    /// 128 rows).
    #[test]
    fn linear_by_transpose_only_for_thin_batches() {
        #[cfg(target_arch = "x86_64")]
        if !crate::tensor::gemm512::available() {
            assert!(linear_by_transpose::<f32>(40, 1024, 1024));
            assert!(linear_by_transpose::<f32>(64, 1024, 1000));
            assert!(linear_by_transpose::<f32>(2, 512, 256));
            assert!(linear_by_transpose::<f64>(64, 256, 256));
            assert!(!linear_by_transpose::<f32>(64, 256, 256));
            assert!(linear_by_transpose::<f32>(128, 1024, 1024));
            assert!(!linear_by_transpose::<f32>(128, 1024, 1000));
            assert!(!linear_by_transpose::<f32>(100, 768, 768));
            assert!(!linear_by_transpose::<f32>(129, 2048, 2048));
            assert!(!linear_by_transpose::<f32>(1, 4096, 4096));
            assert!(!linear_by_transpose::<f64>(64, 64, 64));
            return;
        }
        assert_eq!(
            linear_by_transpose::<f64>(64, 512, 512),
            linear_by_transpose::<f32>(64, 512, 512)
        );
        assert!(!linear_by_transpose::<f64>(128, 512, 512));
        assert!(!linear_by_transpose::<f64>(64, 64, 64));
        assert!(!linear_by_transpose::<f32>(128, 512, 512));
        assert!(!linear_by_transpose::<f32>(40, 1024, 1024));
        assert!(!linear_by_transpose::<f32>(64, 64, 64));
        assert!(!linear_by_transpose::<f32>(64, 1024, 1000));
    }

    /// The thin `a·b` rule: on the `gemm` crate's kernels only, 8 to 48 rows, a row-major right
    /// operand of at least 4 MiB whose rows are a multiple of 2 KiB apart; never on AVX-512.
    #[test]
    fn matmul_by_transpose_only_for_aliased_thin_products() {
        let row_major = |n: usize| (n as isize, 1);
        #[cfg(target_arch = "x86_64")]
        if !crate::tensor::gemm512::available() {
            assert!(matmul_by_transpose::<f32>(8, 1024, 1024, row_major(1024)));
            assert!(matmul_by_transpose::<f32>(48, 2048, 2560, row_major(2560)));
            assert!(matmul_by_transpose::<f32>(13, 4096, 512, row_major(512)));
            assert!(matmul_by_transpose::<f64>(32, 1024, 768, row_major(768)));
            // Other strides, too few or too many rows, too small, or not row-major.
            assert!(!matmul_by_transpose::<f32>(8, 2000, 2000, row_major(2000)));
            assert!(!matmul_by_transpose::<f32>(8, 1792, 1792, row_major(1792)));
            assert!(!matmul_by_transpose::<f32>(7, 2048, 2048, row_major(2048)));
            assert!(!matmul_by_transpose::<f32>(49, 2048, 2048, row_major(2048)));
            assert!(!matmul_by_transpose::<f32>(16, 512, 512, row_major(512)));
            assert!(!matmul_by_transpose::<f32>(16, 2048, 2048, (1, 2048)));
            assert!(!matmul_by_transpose::<f64>(16, 256, 256, row_major(256)));
            return;
        }
        for rows in [8, 16, 48] {
            assert!(!matmul_by_transpose::<f32>(
                rows,
                2048,
                2048,
                row_major(2048)
            ));
            assert!(!matmul_by_transpose::<f64>(
                rows,
                2048,
                2048,
                row_major(2048)
            ));
        }
    }

    /// `product_via_transpose` against the naive product, with and without a bias, for
    /// operands stored either way (a transposed left operand, a row-major right one), and
    /// `matmul` where its rule sends the product there (a batch folded into the rows too).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn products_via_transpose_match_naive() {
        let avx512 = crate::tensor::gemm512::available();
        // On AVX-512 the pass back needs extents in multiples of 16.
        let cases: &[(usize, usize, usize)] = if avx512 {
            &[(16, 40, 32), (48, 512, 64)]
        } else {
            &[(1, 1, 1), (8, 37, 5), (13, 130, 33), (48, 512, 64)]
        };
        for &(m, k, n) in cases {
            let a = Tensor::<f64>::from_fn(&[m, k], |i| ((i * 7919) % 101) as f64 / 50.0 - 1.0);
            let b = Tensor::<f64>::from_fn(&[k, n], |i| ((i * 104729) % 97) as f64 / 48.0 - 1.0);
            let at = a.transpose(0, 1);
            let bias: Vec<f64> = (0..n).map(|j| j as f64 / 7.0 - 1.0).collect();
            let plain = naive(&a, &b);
            for (a_t, with_bias) in [(false, false), (true, true)] {
                let lhs = if a_t {
                    Operand {
                        data: at.data(),
                        rs: 1,
                        cs: m as isize,
                    }
                } else {
                    Operand {
                        data: a.data(),
                        rs: k as isize,
                        cs: 1,
                    }
                };
                let rhs = Operand {
                    data: b.data(),
                    rs: n as isize,
                    cs: 1,
                };
                let got = product_via_transpose(lhs, rhs, m, k, n, with_bias.then_some(&bias[..]));
                assert_eq!(got.len(), m * n);
                for (i, (&g, &e)) in got.iter().zip(&plain).enumerate() {
                    let e = e + if with_bias { bias[i % n] } else { 0.0 };
                    assert!(
                        (g - e).abs() <= 1e-12 * (1.0 + e.abs()),
                        "{m}x{k}x{n} transposed lhs {a_t} at {i}: {g} vs {e}"
                    );
                }
            }
        }
        // Through `matmul`, in the rule's range on the crate's kernels (elsewhere the usual
        // kernels, against the same reference): 8 and 24 rows (as [2, 12, k]) times a
        // [4096, 512] row-major operand, f32 and f64.
        let b = Tensor::<f64>::from_fn(&[4096, 512], |i| ((i * 104729) % 97) as f64 / 48.0 - 1.0);
        for rows in [8usize, 24] {
            let a =
                Tensor::<f64>::from_fn(&[rows, 4096], |i| ((i * 7919) % 101) as f64 / 50.0 - 1.0);
            let want = naive(&a, &b);
            let a3 = a.reshape(&[2, rows / 2, 4096]);
            let got64 = a3.matmul(&b);
            assert_eq!(got64.shape(), &[2, rows / 2, 512]);
            let got32 = cast::<f32>(&a3).matmul(&cast::<f32>(&b));
            for (i, &e) in want.iter().enumerate() {
                let (g64, g32) = (got64.data()[i], f64::from(got32.data()[i]));
                assert!(
                    (g64 - e).abs() <= 1e-10 * (1.0 + e.abs()),
                    "f64 {rows} rows at {i}: {g64} vs {e}"
                );
                assert!(
                    (g32 - e).abs() <= 2e-3 * (1.0 + e.abs()),
                    "f32 {rows} rows at {i}: {g32} vs {e}"
                );
            }
        }
    }

    /// Thin products (at most 8 rows: a small batch's forward and input gradient) run on
    /// vgrad's kernel at any size, in f32 and f64, unless overridden.
    #[test]
    fn thin_products_run_on_our_kernel() {
        if std::env::var_os("VGRAD_GEMM").is_some() {
            eprintln!("VGRAD_GEMM is set: the choice is overridden");
            return;
        }
        for (m, k, n) in [(8, 4096, 4096), (1, 1024, 1000), (5, 2048, 300)] {
            for (csa, rsb) in [(1, 1), (1, n as isize)] {
                assert!(
                    own_kernel_for::<f32>(m, k, n, csa, rsb, false),
                    "f32 {m}×{k}×{n}"
                );
                assert!(
                    own_kernel_for::<f64>(m, k, n, csa, rsb, false),
                    "f64 {m}×{k}×{n}"
                );
            }
        }
        // f64 batches the crate's 32-row tiles fit badly, from 2^23 multiply-adds.
        for (m, k, n) in [(40, 512, 512), (16, 768, 768)] {
            for (csa, rsb) in [(1, 1), (1, n as isize)] {
                assert!(
                    own_kernel_for::<f64>(m, k, n, csa, rsb, false),
                    "f64 {m}×{k}×{n}"
                );
            }
        }
    }

    /// Both kernels the per-CPU choice can pick (`own_kernel_for`) give the product to
    /// rounding, whichever one this CPU would choose, on products above the Intel f32 threshold:
    /// row-major and transposed operands, a bias, accumulation, a ragged batch of 100 rows, f32
    /// and f64. Compared with a triple loop in f64.
    #[test]
    fn both_kernels_match_naive_on_large_products() {
        fn check<T: Element>(tol: f64) {
            for &(m, k, n, lhs_t, rhs_t, with_bias, accumulate) in &[
                (100, 96, 80, false, true, true, false),
                (64, 100, 112, true, false, false, true),
                (72, 130, 48, false, false, false, false),
            ] {
                let a = Tensor::<f64>::from_fn(&[m, k], |i| ((i * 7919) % 101) as f64 / 50.0 - 1.0);
                let b =
                    Tensor::<f64>::from_fn(&[k, n], |i| ((i * 104729) % 97) as f64 / 48.0 - 1.0);
                let bias: Vec<f64> = (0..n).map(|j| j as f64 / n as f64 - 0.5).collect();
                let start: Vec<f64> = (0..m * n).map(|i| (i % 13) as f64 * 0.1).collect();
                let mut want = naive(&a, &b);
                for (i, w) in want.iter_mut().enumerate() {
                    if with_bias {
                        *w += bias[i % n];
                    }
                    if accumulate {
                        *w += start[i];
                    }
                }
                let cast =
                    |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x).unwrap()).collect() };
                // Operands laid out as the transposes say: stored as Aᵀ / Bᵀ, read through strides.
                let (a_store, a_rs, a_cs) = if lhs_t {
                    (cast(a.transpose(0, 1).data()), 1, m as isize)
                } else {
                    (cast(a.data()), k as isize, 1)
                };
                let (b_store, b_rs, b_cs) = if rhs_t {
                    (cast(b.transpose(0, 1).data()), 1, k as isize)
                } else {
                    (cast(b.data()), n as isize, 1)
                };
                let bias_t = cast(&bias);
                for own in [true, false] {
                    let mut dst = cast(&start);
                    let lhs = Operand {
                        data: &a_store,
                        rs: a_rs,
                        cs: a_cs,
                    };
                    let rhs = Operand {
                        data: &b_store,
                        rs: b_rs,
                        cs: b_cs,
                    };
                    // SAFETY: every offset the strides reach is inside its operand, dst holds
                    // m × n initialised values, and the bias n.
                    unsafe {
                        gemm_block(
                            m,
                            k,
                            n,
                            a_store.as_ptr(),
                            lhs,
                            b_store.as_ptr(),
                            rhs,
                            dst.as_mut_ptr(),
                            n,
                            accumulate,
                            if with_bias {
                                bias_t.as_ptr()
                            } else {
                                std::ptr::null()
                            },
                            own,
                        )
                    };
                    for (i, (got, want)) in dst.iter().zip(&want).enumerate() {
                        let got = got.to_f64().unwrap();
                        assert!(
                            (got - want).abs() <= tol * (1.0 + want.abs()),
                            "own kernel {own}, ({m}, {k}, {n}), element {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
        check::<f32>(1e-4);
        check::<f64>(1e-12);
    }

    /// Products of 2¹⁹ to 2²⁰ multiply-adds, split over 2 threads since the bound came down to
    /// 2¹⁹: narrow stacks at large batches (20 and 24 wide, so ragged tiles; 2500 and 1100 rows,
    /// so uneven row blocks), as `x·w`, as a Linear forward `x·wᵀ + b`, and as the weight
    /// gradient `gᵀ·x`, f32 and f64, against a triple loop in f64.
    #[test]
    fn products_just_past_the_thread_bound_match_naive() {
        fn check<T: Element>(tol: f64) {
            for &(m, k) in &[(2500, 20), (1100, 24)] {
                assert!((PARALLEL_MIN_MACS..1 << 20).contains(&(m * k * k)));
                let x = Tensor::<f64>::from_fn(&[m, k], |i| ((i * 7919) % 103) as f64 / 51.0 - 1.0);
                let w = Tensor::<f64>::from_fn(&[k, k], |i| ((i * 31) % 89) as f64 / 44.0 - 1.0);
                let bias = Tensor::<f64>::from_fn(&[k], |i| i as f64 / 8.0 - 1.0);
                let wt = Tensor::<f64>::from_fn(&[k, k], |i| w.data()[(i % k) * k + i / k]);
                let xt = Tensor::<f64>::from_fn(&[k, m], |i| x.data()[(i % m) * k + i / m]);
                let (xw, xwt, xtx) = (naive(&x, &w), naive(&x, &wt), naive(&xt, &x));
                let (xc, wc, bc) = (cast::<T>(&x), cast::<T>(&w), cast::<T>(&bias));
                let before = crate::tensor::num_threads();
                crate::tensor::set_num_threads(2);
                let plain = xc.matmul_t(&wc, false, false);
                let forward = xc.linear(&wc, Some(&bc));
                let grad = xc.matmul_t(&xc, true, false);
                crate::tensor::set_num_threads(before);
                let bias_at = |i: usize| bias.data()[i % k];
                let close = |got: &[T], want: &[f64], bias: bool, what: &str| {
                    assert_eq!(got.len(), want.len(), "{what}");
                    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                        let w = w + if bias { bias_at(i) } else { 0.0 };
                        let g = g.to_f64().unwrap();
                        assert!(
                            (g - w).abs() < tol * (1.0 + w.abs()),
                            "{m}x{k} {what} [{i}]: {g} vs {w}"
                        );
                    }
                };
                close(plain.data(), &xw, false, "x·w");
                close(forward.data(), &xwt, true, "x·wᵀ + b");
                close(grad.data(), &xtx, false, "xᵀ·x");
            }
        }
        check::<f32>(1e-3);
        check::<f64>(1e-11);
    }

    /// Products deep enough to be cut along k (`gemm_by_depth`), on 2 and 3 threads (one and
    /// two scratch shares; k odd, so the shares differ): a fresh weight gradient `dYᵀ·X`, SGD's
    /// accumulating update, and a Linear forward `x·wᵀ + b` with its bias, f32 and f64, against
    /// a triple loop in f64.
    #[test]
    fn depth_split_matches_naive() {
        fn check<T: Element>(tol: f64) {
            let (m, k, n) = (96, 1201, 40);
            // g stored as [k, m] (the left operand is its transpose) and x [k, n]; for the
            // forward, the batch is gᵀ ([m, k]) and the weight xᵀ ([n, k]).
            let g = Tensor::<f64>::from_fn(&[k, m], |i| ((i * 7919) % 103) as f64 / 51.0 - 1.0);
            let x = Tensor::<f64>::from_fn(&[k, n], |i| ((i * 104_729) % 97) as f64 / 48.0 - 1.0);
            let w0 = Tensor::<f64>::from_fn(&[m, n], |i| ((i * 31) % 89) as f64 / 44.0 - 1.0);
            let bias = Tensor::<f64>::from_fn(&[n], |i| i as f64 / 8.0 - 2.0);
            let gt = Tensor::<f64>::from_fn(&[m, k], |i| g.data()[(i % k) * m + i / k]);
            let xt = Tensor::<f64>::from_fn(&[n, k], |i| x.data()[(i % k) * n + i / k]);
            let want = naive(&gt, &x);
            let (gc, xc, gtc, xtc, bc) = (
                cast::<T>(&g),
                cast::<T>(&x),
                cast::<T>(&gt),
                cast::<T>(&xt),
                cast::<T>(&bias),
            );
            assert!(!linear_by_transpose::<T>(m, k, n));
            for threads in [2, 3] {
                assert!(splits_depth(m, k, n, threads));
                let before = crate::tensor::num_threads();
                crate::tensor::set_num_threads(threads);
                let fresh = gc.matmul_t(&xc, true, false);
                let mut updated: Vec<T> = cast::<T>(&w0).data().to_vec();
                add_scaled_product_t(&mut updated, &gc, &xc, T::from(-0.5).unwrap());
                let forward = gtc.linear(&xtc, Some(&bc));
                crate::tensor::set_num_threads(before);
                assert_eq!((fresh.shape(), forward.shape()), (&[m, n][..], &[m, n][..]));
                for i in 0..m * n {
                    let scale = 1.0 + want[i].abs();
                    let close = |got: T, want: f64, what: &str| {
                        let got = got.to_f64().unwrap();
                        assert!(
                            (got - want).abs() < tol * scale,
                            "{threads} threads, {what} [{i}]: {got} vs {want}"
                        );
                    };
                    close(fresh.data()[i], want[i], "fresh");
                    close(updated[i], w0.data()[i] - 0.5 * want[i], "update");
                    close(forward.data()[i], want[i] + bias.data()[i % n], "forward");
                }
            }
        }
        check::<f32>(1e-3);
        check::<f64>(1e-11);
    }

    /// A transposed left operand (`dYᵀ·X`) large enough to be split over 2 threads, cut into
    /// row blocks on AMD (`rows_for_packed_lhs`), column blocks elsewhere: fresh products and
    /// SGD's accumulating update, f32 and f64, against a triple loop in f64. Rows that do not
    /// divide evenly (40 → blocks of 24 and 16, 200 → 104 and 96, edges at the kernel's row
    /// panels), square (the tie the rule decides) and wide; and the band of right operands that
    /// keeps columns.
    #[test]
    fn transposed_left_operand_split_over_threads_matches_naive() {
        fn check<T: Element>(tol: f64) {
            // Right operands under 256 KiB in both dtypes, so split by rows on AMD.
            for &(m, k, n) in &[
                (40, 200, 140),
                (64, 200, 96),
                (200, 120, 150),
                (300, 96, 300),
                (96, 48, 544),
            ] {
                assert!(m * k * n >= PARALLEL_MIN_MACS && !splits_depth(m, k, n, 2));
                assert_eq!(
                    rows_for_packed_lhs::<T>(m, k, n, m as isize, 2),
                    !is_intel()
                );
                // Stored as [k, m]: the left operand is its transpose, column stride m.
                let g = Tensor::<f64>::from_fn(&[k, m], |i| ((i * 7919) % 103) as f64 / 51.0 - 1.0);
                let x =
                    Tensor::<f64>::from_fn(&[k, n], |i| ((i * 104_729) % 97) as f64 / 48.0 - 1.0);
                let w = Tensor::<f64>::from_fn(&[m, n], |i| ((i * 31) % 89) as f64 / 44.0 - 1.0);
                let gt = Tensor::<f64>::from_fn(&[m, k], |i| g.data()[(i % k) * m + i / k]);
                let want = naive(&gt, &x);
                let (gc, xc) = (cast::<T>(&g), cast::<T>(&x));
                let before = crate::tensor::num_threads();
                crate::tensor::set_num_threads(2);
                let fresh = gc.matmul_t(&xc, true, false);
                let mut updated: Vec<T> = cast::<T>(&w).data().to_vec();
                add_scaled_product_t(&mut updated, &gc, &xc, T::from(-0.5).unwrap());
                crate::tensor::set_num_threads(before);
                assert_eq!(fresh.shape(), &[m, n]);
                for i in 0..m * n {
                    let (f, u) = (
                        fresh.data()[i].to_f64().unwrap(),
                        updated[i].to_f64().unwrap(),
                    );
                    let scale = 1.0 + want[i].abs();
                    assert!(
                        (f - want[i]).abs() < tol * scale,
                        "{m}x{k}x{n} [{i}]: {f} vs {}",
                        want[i]
                    );
                    let u_want = w.data()[i] - 0.5 * want[i];
                    assert!(
                        (u - u_want).abs() < tol * scale,
                        "{m}x{k}x{n} [{i}] update: {u} vs {u_want}"
                    );
                }
            }
        }
        check::<f32>(1e-3);
        check::<f64>(1e-11);
        // A 2048-wide layer's update at batch 64 (a 512 KiB right operand) stays in columns.
        assert!(!rows_for_packed_lhs::<f32>(2048, 64, 2048, 2048, 2));
    }

    /// Batched products on two threads, shared out whole across the batch (`nb·m·n·k` at least
    /// PARALLEL_MIN_MACS) and not (too small), broadcast batch axes (one operand's batch of 1
    /// reused), a batch that does not divide into the pieces, transposed operands, f32 and
    /// f64: each matrix of the result against a triple loop in f64.
    #[test]
    fn batched_products_shared_over_threads_match_naive() {
        fn check<T: Element>(tol: f64) {
            // (left batch, right batch, m, k, n, ta, tb)
            type Case<'a> = (&'a [usize], &'a [usize], usize, usize, usize, bool, bool);
            let cases: &[Case] = &[
                (&[37], &[37], 24, 40, 24, false, false),
                (&[5, 3], &[1, 3], 33, 64, 20, false, true),
                (&[9], &[9], 40, 72, 48, true, false),
                (&[3], &[3], 4, 5, 6, false, false),
                (&[2, 1], &[1, 13], 16, 48, 40, true, true),
            ];
            for &(ba, bb, m, k, n, ta, tb) in cases {
                let shape = |batch: &[usize], r: usize, c: usize| {
                    let mut s = batch.to_vec();
                    s.extend([r, c]);
                    s
                };
                let (ar, ac) = if ta { (k, m) } else { (m, k) };
                let (br, bc) = if tb { (n, k) } else { (k, n) };
                let a = Tensor::<f64>::from_fn(&shape(ba, ar, ac), |i| {
                    ((i * 7919) % 103) as f64 / 51.0 - 1.0
                });
                let b = Tensor::<f64>::from_fn(&shape(bb, br, bc), |i| {
                    ((i * 104_729) % 97) as f64 / 48.0 - 1.0
                });
                let before = crate::tensor::num_threads();
                crate::tensor::set_num_threads(2);
                let c = cast::<T>(&a).matmul_t(&cast::<T>(&b), ta, tb);
                crate::tensor::set_num_threads(before);
                let batch: Vec<usize> = ba.iter().zip(bb).map(|(&x, &y)| x.max(y)).collect();
                assert_eq!(c.shape(), &shape(&batch, m, n)[..]);
                let matrix = |t: &Tensor<f64>,
                              own: &[usize],
                              at: &[usize],
                              r: usize,
                              cc: usize,
                              trans: bool| {
                    // The operand's matrix for the broadcast batch index `at`, untransposed.
                    let flat = own
                        .iter()
                        .zip(at)
                        .fold(0, |f, (&e, &i)| f * e + if e == 1 { 0 } else { i });
                    let data = &t.data()[flat * r * cc..(flat + 1) * r * cc];
                    let (rows, cols) = if trans { (cc, r) } else { (r, cc) };
                    Tensor::<f64>::from_fn(&[rows, cols], |i| {
                        let (p, q) = (i / cols, i % cols);
                        if trans {
                            data[q * cc + p]
                        } else {
                            data[i]
                        }
                    })
                };
                let nb: usize = batch.iter().product();
                for flat in 0..nb {
                    let mut at = vec![0; batch.len()];
                    let mut rest = flat;
                    for ax in (0..batch.len()).rev() {
                        at[ax] = rest % batch[ax];
                        rest /= batch[ax];
                    }
                    let want = naive(
                        &matrix(&a, ba, &at, ar, ac, ta),
                        &matrix(&b, bb, &at, br, bc, tb),
                    );
                    for (i, w) in want.iter().enumerate() {
                        let got = c.data()[flat * m * n + i].to_f64().unwrap();
                        assert!(
                            (got - w).abs() < tol * (1.0 + w.abs()),
                            "{ba:?}x{bb:?} {m}x{k}x{n} ta={ta} tb={tb} matrix {flat} [{i}]: {got} vs {w}"
                        );
                    }
                }
            }
        }
        check::<f32>(1e-3);
        check::<f64>(1e-11);
    }

    #[test]
    fn transposed_operands_match_naive() {
        let a = Tensor::<f64>::from_fn(&[3, 4], |i| (i as f64).sin());
        let b = Tensor::<f64>::from_fn(&[4, 5], |i| (i as f64 * 0.7).cos());
        let want = naive(&a, &b);
        let at = a.transpose(0, 1);
        let bt = b.transpose(0, 1);
        for (x, y, ta, tb) in [
            (&a, &b, false, false),
            (&at, &b, true, false),
            (&a, &bt, false, true),
            (&at, &bt, true, true),
        ] {
            let c = x.matmul_t(y, ta, tb);
            assert_eq!(c.shape(), &[3, 5]);
            for (p, q) in c.data().iter().zip(&want) {
                assert!((p - q).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn batched_broadcasts() {
        let a = Tensor::<f64>::from_fn(&[2, 3, 4], |i| i as f64 * 0.1);
        let b = Tensor::<f64>::from_fn(&[4, 2], |i| 1.0 - i as f64 * 0.05);
        let c = a.matmul(&b);
        assert_eq!(c.shape(), &[2, 3, 2]);
        let second = naive(&a.narrow(0, 1, 1).reshape(&[3, 4]), &b);
        for (p, q) in c.data()[6..].iter().zip(&second) {
            assert!((p - q).abs() < 1e-12);
        }
        let b3 = Tensor::<f64>::from_fn(&[1, 4, 2], |i| i as f64);
        let at = a.transpose(1, 2);
        let c2 = at.matmul_t(&b3, true, false);
        let c3 = a.matmul(&b3.reshape(&[4, 2]));
        assert!(c2.allclose(&c3, 1e-12, 1e-12));
    }

    #[test]
    #[should_panic(expected = "matmul: [2, 3] x [4, 5]: inner dimensions differ")]
    fn inner_mismatch_names_both_shapes() {
        let _ = Tensor::<f32>::zeros(&[2, 3]).matmul(&Tensor::zeros(&[4, 5]));
    }
}
