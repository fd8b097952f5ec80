//! vgrad's own matrix-product kernel for x86-64 CPUs with AVX-512, in f32 and f64.
//!
//! Why our own: the `gemm` crate reached ~78 GFLOP/s on the 1024-wide training step's products
//! on this Zen 4 core, where MKL and OpenBLAS reach ~98 of the ~113 the FMA units sustain; the
//! products are most of that step's time. The layout follows the classic Goto/BLIS scheme:
//!
//! - `k` is cut into slabs of [`KC`]; for each slab the left operand is copied ("packed") into
//!   panels of [`MR`] rows stored column by column, so the micro-kernel reads it sequentially.
//! - the right operand's slab is packed a block of columns at a time into panels of `NR` columns
//!   (two vectors wide), stored row by row, zero-padded at the right edge. Packing also turns
//!   any strides (transposes) into one sequential layout, so transposes cost nothing later.
//! - the micro-kernel keeps an `MR × NR` tile of the output in 16 vector registers and, for each
//!   of the slab's `kc` steps, loads one panel row of the right operand (two vectors) and
//!   broadcasts `MR` values of the left one: 16 fused multiply-adds per step, enough
//!   independent chains to hide the FMA latency.
//! - loop order: one left panel (MR × KC, 8 KiB in f32) stays in L1 while every right panel of
//!   the block streams past it from L2.
//!
//! - a thin product (at most [`MR`] rows, a batch of up to 8) meets its right operand, a
//!   layer's whole weight, in one row panel: packing would copy it for a single use, so it is
//!   read in place, row by row when row-major (`dY·W`) and as dot products of contiguous runs
//!   when transposed (the forward `x·wᵀ`), with the lanes summed at the end of each run.
//!   Up to two panels of rows read a large transposed operand as dot products too, each block
//!   of its columns met by both while in L2.
//!
//! The output is written in place, so nothing is allocated per call: the packing buffers are
//! per-thread and reused.

use std::cell::Cell;

/// Rows of the output per micro-tile (the broadcast side). 8 divides every batch and width of
/// the shared configs, so their products have no ragged row tiles.
pub(super) const MR: usize = 8;

/// Depth of one packed slab: the left panel (MR × KC) stays in L1 while the right panels stream.
const KC: usize = 256;

/// Bytes of right operand packed at a time: the packed block stays in L2 (1 MiB on Zen 4) while
/// every left panel passes over it.
const B_BLOCK_BYTES: usize = 512 * 1024;

/// Most bytes (k × n elements) of a row-major right operand read in place rather than packed:
/// 512 KiB, half of Zen 4's L2 (f64 256 × 256: 298 vs 304 µs packed).
pub(super) const DIRECT_B_MAX_BYTES: usize = 1 << 19;

/// Most rows of a product whose row-major right operand of ragged width (not a multiple of a
/// tile's two vectors) is read in place rather than packed. Its rows then start off the
/// cache-line grid, so each vector load may straddle two lines, a cost every row panel pays
/// again, where packing is paid once. One product alone, `[m, k]·[k, n]`, 1 thread, f32, in
/// place against packed: 8 × 65 × 65 −35%, 16 × 257 × 257 −25%, 24 × 200 × 200 −19%, 40 × 80 ×
/// 80 −13%, 48 × 200 × 200 −4%, 50 × 100 × 100 −10%, 64 × 100 × 100 −6%; past 64 rows mixed
/// (96 × 100 × 100 −3%, 96 × 200 × 200 +3%, 128 × 100 × 100 level, 512 × 100 × 100 +3 to +10%).
const RAGGED_DIRECT_B_MAX_ROWS: usize = 64;

/// Least depth `k` at which a thin product runs as dot products ([`as_dots`]), where the
/// lanes' final sums, one per output, start to be outweighed. A bound, not a measured optimum:
/// timed alone (1 thread, a 512-wide weight in cache, depths 8 to 96), dot products were 1.8–4×
/// faster than tiles at 1 row and 1.1–2.5× slower at 8; in whole steps, where the weight comes
/// from memory or is ragged, they won at 8 rows too (b8_w512 −36%; a 65-wide stack at batch 8
/// ran 9–11% slower when its products went back to tiles).
const DOT_MIN_DEPTH: usize = 32;

/// Most rows of a product computed as dot products when its right operand is past
/// [`DIRECT_B_MAX_BYTES`] (see [`as_dots`]).
const DOT_MAX_ROWS: usize = 2 * MR;

/// Whether [`f32s::gemm`] / [`f64s::gemm`] compute an `m × k × n` product as dot products: the
/// rows of the left operand and the columns of the right one contiguous (`csa = rsb = 1`, as in
/// the forward `x·wᵀ`), at least [`DOT_MIN_DEPTH`] deep, and at most [`MR`] rows, or at most
/// [`DOT_MAX_ROWS`] against a right operand too large to stay in L2 (below that, packing it
/// once for two row panels was cheaper: 64-wide resbn at batch 16 ran 16% slower as dots).
pub(super) fn as_dots<T>(m: usize, k: usize, n: usize, csa: isize, rsb: isize) -> bool {
    csa == 1
        && rsb == 1
        && k >= DOT_MIN_DEPTH
        && (m <= MR
            || (m <= DOT_MAX_ROWS
                && k.saturating_mul(n).saturating_mul(std::mem::size_of::<T>())
                    > DIRECT_B_MAX_BYTES))
}

/// Least bytes (k × n elements) of a right operand read in place past which each tile asks for
/// the lines [`PREFETCH_PANELS`] panels to its right ahead of use (`_mm_prefetch` into L2). A
/// thin `dY·W` reads such a weight down its rows, two lines per row with the row length as
/// stride, which the hardware prefetchers do not follow; each line was a demand miss. Measured
/// in whole README-loop steps (1 / 2 threads): a 4096-wide 3-deep stack at batch 8 −17% / −13%
/// (f32, 64 MiB weights) and −11% / −11% (f64), a 3072-wide one at batch 4 −27% / −15%; below
/// 32 MiB (weights L3 still serves) it cost up to 8–12% (1024- and 1536-wide layers), so the
/// bound is this CPU's point where reads fall from L3 to memory speed (27 → 20 GB/s from 32 to
/// 64 MiB). That is the Intel Xeon's bound; on other CPUs [`PREFETCH_B_MIN_BYTES_OTHER`].
const PREFETCH_B_MIN_BYTES: usize = 32 << 20;

/// [`PREFETCH_B_MIN_BYTES`] on CPUs other than Intel's. On AMD Zen 4 (L2 1 MiB per core, one
/// 32 MiB L3 shared by the cores and, under a hypervisor, by other guests) the thin stacks'
/// weights are 1–16 MiB each and together pass what L3 keeps, so each weight arrives from
/// memory or a contended L3, and prefetching every in-place weight past L2 paid throughout.
/// README loop, alternated with the 32 MiB bound, 4 rounds, 1 / 2 threads: f64 batch-4
/// 1024-wide ReLU −29% / −17%, batch-16 768-wide SiLU −9% / −16%, batch-10 2000-wide tanh
/// −6% / −13%, batch-8 512-wide tanh −6% / −7%; f32 −4% to −11% at 1 thread, level at 2
/// (0.99–1.02).
const PREFETCH_B_MIN_BYTES_OTHER: usize = 1 << 20;

/// The prefetch bound for this CPU (see [`PREFETCH_B_MIN_BYTES`]).
fn prefetch_b_min_bytes() -> usize {
    if super::matmul::is_intel() {
        PREFETCH_B_MIN_BYTES
    } else {
        PREFETCH_B_MIN_BYTES_OTHER
    }
}

/// How many panels (NR columns each) ahead a prefetching tile asks for. Timed on the 8 × 4096 ×
/// 4096 `dY·W` (criterion, 1 thread; without prefetching f32 7.3 ms, f64 29.9) at 1, 2, 4, 8
/// and 16 panels: f64 34, 18, 14.5, 15.3, 13.4 ms; f32 6.6, 4.7, 4.6, 4.7, 5.1. 4 is the best
/// for both together.
const PREFETCH_PANELS: usize = 4;

/// Output bytes (of one call, `m·n`) from which each tile asks for its output's lines before
/// its multiply-adds ([`prefetch_rows`](f32s)). An output this large cannot have stayed in L2
/// since it was last written, and after a step whose tape outgrew L3 it comes from memory, where
/// a tile's stores would each wait for their line. Below it the lines are mostly still cached
/// and asking would only add instructions. One 2048 × 128 × 128 product (`dY·W`) with its output
/// in memory, 1 thread: f32 −19%, f64 −5%; README loop, 1 thread, 6 rounds: w96_d8_b4096
/// −3 to −5%, w128_d16_b2048 −2 to −4%, w100_d10_b1000 −2%; configs.json level.
const PREFETCH_C_MIN_BYTES: usize = 256 * 1024;

/// Bytes of right-operand columns each chunk of MR rows meets in turn, when there are more.
const DOT_BLOCK_BYTES: usize = 128 * 1024;

/// Whether this CPU can run the kernels in this module.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Takes a thread's packing buffer out of its slot, grown to at least `len` elements past a
/// 64-byte boundary, and returns it with the offset of that boundary; hand it back with
/// [`Cell::set`] when done. (Taken, not borrowed: nothing can observe a half-used buffer.)
fn take_buffer<T: Copy + Default>(
    slot: &'static std::thread::LocalKey<Cell<Vec<T>>>,
    len: usize,
) -> (Vec<T>, usize) {
    let mut v = slot.with(Cell::take);
    let extra = 64 / std::mem::size_of::<T>();
    if v.len() < len + extra {
        v = vec![T::default(); len + extra];
    }
    let off = v.as_ptr().align_offset(64);
    (v, off)
}

/// `dst[j·rows + i] = src[i·cols + j] + bias[i]` for a row-major `rows × cols` f32 or f64
/// matrix `src` (rows and cols multiples of 16): the transpose of a product computed the other
/// way round, with the bias of each source row added as it lands (see `Tensor::linear`).
///
/// # Safety
/// `T` is f32 or f64 and the CPU has AVX-512F; `src` and `dst` hold `rows·cols` elements and
/// `bias` `rows`.
///
/// # Panics
/// If `T` is neither f32 nor f64.
pub(super) unsafe fn transpose_add_rows<T: 'static>(
    src: &[T],
    rows: usize,
    cols: usize,
    bias: Option<&[T]>,
    dst: *mut T,
) {
    use std::any::TypeId;
    // SAFETY: `T` is the type each branch casts to, so the casts are identities; the rest is
    // this fn's contract.
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            transpose_add_rows_f32(cast(src), rows, cols, bias.map(|b| cast(b)), dst.cast());
        } else if TypeId::of::<T>() == TypeId::of::<f64>() {
            transpose_add_rows_f64(cast(src), rows, cols, bias.map(|b| cast(b)), dst.cast());
        } else {
            panic!("transpose_add_rows: f32 or f64 only");
        }
    }
}

/// `s` as a slice of `U`.
///
/// # Safety
/// `T` and `U` are the same type.
unsafe fn cast<T, U>(s: &[T]) -> &[U] {
    // SAFETY: the same type, so the same layout and length.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) }
}

/// [`transpose_add_rows`] for one element type: `$block × $block` register transposes, then
/// the bias of the block's source rows added to each destination row.
macro_rules! transpose_add_rows_for {
    ($name:ident, $t:ty, $block:expr, $transpose:ident, $loadu:ident, $storeu:ident, $add:ident) => {
        /// [`transpose_add_rows`] for one element type.
        ///
        /// # Safety
        /// AVX-512F; `src` and `dst` hold `rows·cols` elements and `bias` `rows`.
        #[target_feature(enable = "avx512f")]
        unsafe fn $name(src: &[$t], rows: usize, cols: usize, bias: Option<&[$t]>, dst: *mut $t) {
            use std::arch::x86_64::*;
            const B: usize = $block;
            debug_assert!(
                rows.is_multiple_of(B) && cols.is_multiple_of(B) && src.len() == rows * cols
            );
            for i0 in (0..rows).step_by(B) {
                for j0 in (0..cols).step_by(B) {
                    // SAFETY: the block's B rows of B and its B destination rows are in bounds.
                    unsafe {
                        $transpose(
                            src.as_ptr().add(i0 * cols + j0),
                            cols as isize,
                            dst.add(j0 * rows + i0),
                            rows,
                        )
                    };
                }
                if let Some(b) = bias {
                    // SAFETY: B bias values from i0, and B destination values per row j.
                    unsafe {
                        let bv = $loadu(b.as_ptr().add(i0));
                        for j in 0..cols {
                            let d = dst.add(j * rows + i0);
                            $storeu(d, $add($loadu(d), bv));
                        }
                    }
                }
            }
        }
    };
}

transpose_add_rows_for!(
    transpose_add_rows_f32,
    f32,
    16,
    transpose16,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_add_ps
);
transpose_add_rows_for!(
    transpose_add_rows_f64,
    f64,
    8,
    transpose8,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_add_pd
);

/// Transposes a 16 × 16 block of f32: row r of the result (written at `dst + r·dst_stride`) is
/// element r of each of the 16 source rows (read at `src + i·src_stride`, 16 contiguous values).
/// Four rounds of two-input shuffles: elements, element pairs, then 128-bit lanes twice.
///
/// Written out register by register: built with `array::from_fn` and computed indices, LLVM
/// kept the blocks in stack arrays and the transpose cost ~1 µs per 64 × 64 panel.
///
/// # Safety
/// AVX-512F; every row read and written is in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(src: *const f32, src_stride: isize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    macro_rules! ld {
        ($i:expr) => {
            _mm512_loadu_ps(src.offset($i * src_stride))
        };
    }
    // Interleave as 64-bit pairs.
    macro_rules! lo64 {
        ($a:expr, $b:expr) => {
            _mm512_castpd_ps(_mm512_unpacklo_pd(
                _mm512_castps_pd($a),
                _mm512_castps_pd($b),
            ))
        };
    }
    macro_rules! hi64 {
        ($a:expr, $b:expr) => {
            _mm512_castpd_ps(_mm512_unpackhi_pd(
                _mm512_castps_pd($a),
                _mm512_castps_pd($b),
            ))
        };
    }
    // SAFETY: this fn's contract: AVX-512F is enabled (its target_feature) and the 16 source
    // rows and the destination rows are in bounds for 16 floats each.
    unsafe {
        let (r0, r1, r2, r3) = (ld!(0), ld!(1), ld!(2), ld!(3));
        let (r4, r5, r6, r7) = (ld!(4), ld!(5), ld!(6), ld!(7));
        let (r8, r9, r10, r11) = (ld!(8), ld!(9), ld!(10), ld!(11));
        let (r12, r13, r14, r15) = (ld!(12), ld!(13), ld!(14), ld!(15));
        // Element interleave of row pairs.
        let (t0, t1) = (_mm512_unpacklo_ps(r0, r1), _mm512_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm512_unpacklo_ps(r2, r3), _mm512_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm512_unpacklo_ps(r4, r5), _mm512_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm512_unpacklo_ps(r6, r7), _mm512_unpackhi_ps(r6, r7));
        let (t8, t9) = (_mm512_unpacklo_ps(r8, r9), _mm512_unpackhi_ps(r8, r9));
        let (t10, t11) = (_mm512_unpacklo_ps(r10, r11), _mm512_unpackhi_ps(r10, r11));
        let (t12, t13) = (_mm512_unpacklo_ps(r12, r13), _mm512_unpackhi_ps(r12, r13));
        let (t14, t15) = (_mm512_unpacklo_ps(r14, r15), _mm512_unpackhi_ps(r14, r15));
        // Pair interleave: u[4q + c] holds, in each 128-bit lane L, column 4L + c of rows
        // 4q..4q + 4.
        let (u0, u1, u2, u3) = (lo64!(t0, t2), hi64!(t0, t2), lo64!(t1, t3), hi64!(t1, t3));
        let (u4, u5, u6, u7) = (lo64!(t4, t6), hi64!(t4, t6), lo64!(t5, t7), hi64!(t5, t7));
        let (u8, u9, u10, u11) = (
            lo64!(t8, t10),
            hi64!(t8, t10),
            lo64!(t9, t11),
            hi64!(t9, t11),
        );
        let (u12, u13, u14, u15) = (
            lo64!(t12, t14),
            hi64!(t12, t14),
            lo64!(t13, t15),
            hi64!(t13, t15),
        );
        // Lanes gathered across row quads: v[c] / v[4 + c] hold columns c, 8 + c / 4 + c,
        // 12 + c of rows 0..8; v[8 + ..] the same for rows 8..16.
        let v0 = _mm512_shuffle_f32x4::<0x88>(u0, u4);
        let v1 = _mm512_shuffle_f32x4::<0x88>(u1, u5);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u2, u6);
        let v3 = _mm512_shuffle_f32x4::<0x88>(u3, u7);
        let v4 = _mm512_shuffle_f32x4::<0xdd>(u0, u4);
        let v5 = _mm512_shuffle_f32x4::<0xdd>(u1, u5);
        let v6 = _mm512_shuffle_f32x4::<0xdd>(u2, u6);
        let v7 = _mm512_shuffle_f32x4::<0xdd>(u3, u7);
        let v8 = _mm512_shuffle_f32x4::<0x88>(u8, u12);
        let v9 = _mm512_shuffle_f32x4::<0x88>(u9, u13);
        let v10 = _mm512_shuffle_f32x4::<0x88>(u10, u14);
        let v11 = _mm512_shuffle_f32x4::<0x88>(u11, u15);
        let v12 = _mm512_shuffle_f32x4::<0xdd>(u8, u12);
        let v13 = _mm512_shuffle_f32x4::<0xdd>(u9, u13);
        let v14 = _mm512_shuffle_f32x4::<0xdd>(u10, u14);
        let v15 = _mm512_shuffle_f32x4::<0xdd>(u11, u15);
        // Column c < 8 is the even lanes of v[c] and v[8 + c]; column 8 + c the odd ones.
        let out = [
            (v0, v8),
            (v1, v9),
            (v2, v10),
            (v3, v11),
            (v4, v12),
            (v5, v13),
            (v6, v14),
            (v7, v15),
        ];
        for (c, (a, b)) in out.into_iter().enumerate() {
            _mm512_storeu_ps(dst.add(c * dst_stride), _mm512_shuffle_f32x4::<0x88>(a, b));
            _mm512_storeu_ps(
                dst.add((c + 8) * dst_stride),
                _mm512_shuffle_f32x4::<0xdd>(a, b),
            );
        }
    }
}

/// Transposes an 8 × 8 block of f64, as [`transpose16`] does for f32 (written out register by
/// register for the same reason).
///
/// # Safety
/// AVX-512F; every row read and written is in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn transpose8(src: *const f64, src_stride: isize, dst: *mut f64, dst_stride: usize) {
    use std::arch::x86_64::*;
    macro_rules! ld {
        ($i:expr) => {
            _mm512_loadu_pd(src.offset($i * src_stride))
        };
    }
    // SAFETY: this fn's contract: AVX-512F is enabled and the 8 source rows and 8
    // destination rows are in bounds for 8 doubles each.
    unsafe {
        let (r0, r1, r2, r3) = (ld!(0), ld!(1), ld!(2), ld!(3));
        let (r4, r5, r6, r7) = (ld!(4), ld!(5), ld!(6), ld!(7));
        // t[2q + c] holds, in lane L, column 2L + c of rows 2q, 2q + 1.
        let (t0, t1) = (_mm512_unpacklo_pd(r0, r1), _mm512_unpackhi_pd(r0, r1));
        let (t2, t3) = (_mm512_unpacklo_pd(r2, r3), _mm512_unpackhi_pd(r2, r3));
        let (t4, t5) = (_mm512_unpacklo_pd(r4, r5), _mm512_unpackhi_pd(r4, r5));
        let (t6, t7) = (_mm512_unpacklo_pd(r6, r7), _mm512_unpackhi_pd(r6, r7));
        // s[4h + c]: columns (c % 2) + 2·(c / 2) and that + 4, of rows 4h..4h + 4.
        let s0 = _mm512_shuffle_f64x2::<0x88>(t0, t2);
        let s1 = _mm512_shuffle_f64x2::<0x88>(t1, t3);
        let s2 = _mm512_shuffle_f64x2::<0xdd>(t0, t2);
        let s3 = _mm512_shuffle_f64x2::<0xdd>(t1, t3);
        let s4 = _mm512_shuffle_f64x2::<0x88>(t4, t6);
        let s5 = _mm512_shuffle_f64x2::<0x88>(t5, t7);
        let s6 = _mm512_shuffle_f64x2::<0xdd>(t4, t6);
        let s7 = _mm512_shuffle_f64x2::<0xdd>(t5, t7);
        // Column c < 4 is the even lanes of s[c] and s[4 + c]; column c + 4 the odd ones.
        for (c, (a, b)) in [(s0, s4), (s1, s5), (s2, s6), (s3, s7)]
            .into_iter()
            .enumerate()
        {
            _mm512_storeu_pd(dst.add(c * dst_stride), _mm512_shuffle_f64x2::<0x88>(a, b));
            _mm512_storeu_pd(
                dst.add((c + 4) * dst_stride),
                _mm512_shuffle_f64x2::<0xdd>(a, b),
            );
        }
    }
}

macro_rules! avx512_gemm {
    (
        $module:ident, $t:ty, $v:ty, $w:expr, $mask:ty,
        $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident, $add:ident, $zero:ident,
        $maskz_loadu:ident, $mask_storeu:ident, $transpose:ident, $reduce:ident,
        $set1_half:ident, $fmadd_half:ident, $zero_half:ident, $widen:ident,
        $narrow:ident
    ) => {
        /// The AVX-512 kernels for one element type; see the module docs.
        pub(super) mod $module {
            use super::{
                prefetch_b_min_bytes, take_buffer, $transpose, B_BLOCK_BYTES, DIRECT_B_MAX_BYTES,
                DOT_BLOCK_BYTES, KC, MR, PREFETCH_C_MIN_BYTES, PREFETCH_PANELS,
                RAGGED_DIRECT_B_MAX_ROWS,
            };
            use std::arch::x86_64::*;
            use std::cell::Cell;

            type T = $t;
            /// Lanes per vector.
            const W: usize = $w;
            /// Columns of the output per micro-tile: two vectors.
            const NR: usize = 2 * W;
            /// Lanes of a half-width (256-bit) vector, for a last panel of at most that many
            /// columns ([`half_tile`]).
            const HALF: usize = W / 2;
            /// Columns of the right operand packed per block.
            const NC: usize = B_BLOCK_BYTES / (KC * std::mem::size_of::<T>()) / NR * NR;

            /// What a tile adds its product to: nothing, the output's current values (later slabs
            /// of k, or accumulation), or a bias row, one value per output column.
            #[derive(Clone, Copy)]
            enum Init {
                Zero,
                LoadC,
                Bias(*const T),
            }

            impl Init {
                /// The same, for the block of columns starting at `col`.
                #[inline(always)]
                fn at(self, col: usize) -> Init {
                    match self {
                        // SAFETY (of the offset): the bias has an entry per output column.
                        Init::Bias(b) => Init::Bias(unsafe { b.add(col) }),
                        other => other,
                    }
                }
            }

            /// Lane masks of the two vectors of a tile row with `cols` ≤ NR valid columns.
            #[inline(always)]
            fn masks(cols: usize) -> ($mask, $mask) {
                (
                    ((1u32 << cols.min(W)) - 1) as $mask,
                    ((1u32 << cols.saturating_sub(W)) - 1) as $mask,
                )
            }

            thread_local! {
                static PACK_A: Cell<Vec<T>> = const { Cell::new(Vec::new()) };
                static PACK_B: Cell<Vec<T>> = const { Cell::new(Vec::new()) };
            }

            /// c[m, n] (row stride `rsc`, unit column stride) = a[m, k] · b[k, n], or += with
            /// `accumulate`, or = a·b + bias (broadcast over rows) when `bias` is not null. Element (i, j) of `a` is at `a + i·rsa + j·csa`, likewise for `b`.
            ///
            /// # Safety
            /// The CPU supports AVX-512F ([`super::available`]); m, n, k > 0; every element the
            /// strides reach is readable; `c` is valid for writes of the m × n block and, with
            /// `accumulate`, initialised; `bias`, unless null, has n readable elements and comes
            /// without `accumulate`; nothing else accesses `c` meanwhile.
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx512f")]
            pub(crate) unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: *const T,
                rsa: isize,
                csa: isize,
                b: *const T,
                rsb: isize,
                csb: isize,
                c: *mut T,
                rsc: usize,
                accumulate: bool,
                bias: *const T,
            ) {
                debug_assert!(
                    !(accumulate && !bias.is_null()),
                    "bias or accumulate, not both"
                );
                if super::as_dots::<T>(m, k, n, csa, rsb) {
                    // SAFETY: the caller's contract, with the layout just checked.
                    return unsafe {
                        dots(
                            m,
                            Thin {
                                k,
                                n,
                                a,
                                rsa,
                                b,
                                csb,
                                c,
                                rsc,
                                accumulate,
                                bias,
                            },
                        )
                    };
                }
                let m_panels = m.div_ceil(MR);
                // A row-major left operand is read in place: its rows are contiguous, so the
                // kernel's broadcasts stream along them, and packing it (an element-by-element
                // transpose) cost more than it saved: 256×1024×1024 5.10 vs 5.34 ms unpacked.
                let direct_a = csa == 1;
                // Likewise a row-major right operand that either stays in L2 or meets a single
                // row panel, which reads each of its elements once: packing it would copy the
                // whole operand for nothing (a thin batch's `dY·W`). A ragged width is read in
                // place only for up to RAGGED_DIRECT_B_MAX_ROWS rows (its last panel with masked
                // loads, see `sweep`).
                let direct_b = csb == 1
                    && (n % NR == 0 || m <= RAGGED_DIRECT_B_MAX_ROWS)
                    && (m <= MR || k * n * std::mem::size_of::<T>() <= DIRECT_B_MAX_BYTES);
                // Read in place, a row-major operand past what L3 keeps is fetched from memory
                // panel by panel, down strided rows the hardware prefetchers do not follow.
                let prefetch_b =
                    direct_b && k * n * std::mem::size_of::<T>() > prefetch_b_min_bytes();
                let prefetch_c = m * n * std::mem::size_of::<T>() >= PREFETCH_C_MIN_BYTES;
                let kc_max = KC.min(k);
                // Blocks of NC columns keep a packed block in L2; read in place there is nothing
                // to keep, and one block as wide as the output lets each row panel stream its
                // rows whole (a lazy SGD update `W += -lr·dYᵀ·X` walked a 3072-wide weight 2 KiB
                // of each row at a time: −12% f32, −19% f64 on that step with full rows).
                let nc_max = if direct_b {
                    n
                } else {
                    NC.min(n.next_multiple_of(NR))
                };
                let (mut abuf, aoff) = take_buffer(&PACK_A, m_panels * MR * kc_max);
                let (mut bbuf, boff) =
                    take_buffer(&PACK_B, if direct_b { 0 } else { nc_max * kc_max });
                // SAFETY: both buffers hold their block plus the alignment offset.
                let (ap, bp) =
                    unsafe { (abuf.as_mut_ptr().add(aoff), bbuf.as_mut_ptr().add(boff)) };
                let mut pc = 0;
                while pc < k {
                    let kc = KC.min(k - pc);
                    // After the first slab every tile adds onto what the earlier slabs wrote.
                    let init = if accumulate || pc > 0 {
                        Init::LoadC
                    } else if bias.is_null() {
                        Init::Zero
                    } else {
                        Init::Bias(bias)
                    };
                    // SAFETY: the caller's contract bounds every read; the buffers were sized
                    // for m_panels·MR·kc and nc·kc elements.
                    let slab = unsafe { a.offset(pc as isize * csa) };
                    let (ars, acs) = if direct_a { (rsa, 1) } else { (1, MR as isize) };
                    if !direct_a {
                        // SAFETY: `slab` starts the caller's m × kc block of A and `ap` was sized for
                        // m_panels·MR·kc elements, so pack_a reads and writes in bounds.
                        unsafe { pack_a(m, kc, slab, rsa, csa, ap) };
                    }
                    let mut jc = 0;
                    while jc < n {
                        let nc = nc_max.min(n - jc);
                        // SAFETY: (pc, jc) is inside B's k × n extent, so the offset stays in the allocation.
                        let bslab = unsafe { b.offset(pc as isize * rsb + jc as isize * csb) };
                        if !direct_b {
                            // SAFETY: the kc × nc block starting at `bslab` is inside B, and `bp` was sized for
                            // nc_max·kc_max elements.
                            unsafe { pack_b(kc, nc, bslab, rsb, csb, bp) };
                        }
                        for ip in 0..m_panels {
                            let rows = MR.min(m - ip * MR);
                            // SAFETY: row panel ip starts inside the slab (ip·MR < m) or inside the packed buffer
                            // (ip·MR·kc < m_panels·MR·kc).
                            let apanel = unsafe {
                                if direct_a {
                                    slab.offset((ip * MR) as isize * rsa)
                                } else {
                                    ap.add(ip * MR * kc) as *const T
                                }
                            };
                            // SAFETY: the row panel lies inside c; the right operand is the
                            // packed block or, read in place, the slab's rows.
                            unsafe {
                                let crow = c.add(ip * MR * rsc + jc);
                                let panel = Panel {
                                    rows,
                                    kc,
                                    nc,
                                    a: apanel,
                                    ars,
                                    acs,
                                    b: if direct_b { bslab } else { bp },
                                    rsb: if direct_b { rsb } else { 0 },
                                    c: crow,
                                    rsc,
                                    init: init.at(jc),
                                    prefetch_c,
                                };
                                match (direct_b, prefetch_b) {
                                    (true, true) => sweep::<true, PREFETCH_PANELS>(panel),
                                    (true, false) => sweep::<true, 0>(panel),
                                    (false, _) => sweep::<false, 0>(panel),
                                }
                            }
                        }
                        jc += nc;
                    }
                    pc += kc;
                }
                PACK_A.with(|s| s.set(abuf));
                PACK_B.with(|s| s.set(bbuf));
            }

            /// A thin product for [`dots`]: `c[i, j] (+)= Σ_p a[i·rsa + p]·b[j·csb + p]`, `k` long.
            #[derive(Clone, Copy)]
            struct Thin {
                k: usize,
                n: usize,
                a: *const T,
                rsa: isize,
                b: *const T,
                csb: isize,
                c: *mut T,
                rsc: usize,
                accumulate: bool,
                bias: *const T,
            }

            /// [`gemm`] for the products [`super::as_dots`] picks: the rows of `a` and the
            /// columns of `b` both contiguous (`csa = rsb = 1`), as in a thin batch's forward
            /// `x·wᵀ`. Every output is the dot product of two contiguous runs, so the right
            /// operand (the whole weight) is read in place, where the tiled path would pack
            /// (transpose) all of it for one or two row panels. Each block of `J` columns
            /// keeps `rows × J` vector sums in registers (fewer rows leave room for more
            /// columns); past MR rows, chunks of MR rows take turns on blocks of columns
            /// small enough to stay in L2.
            ///
            /// # Safety
            /// As [`gemm`], with 1 ≤ m ≤ DOT_MAX_ROWS and that layout.
            #[target_feature(enable = "avx512f")]
            unsafe fn dots(m: usize, t: Thin) {
                // Past MR rows, blocks of columns sized to stay in L2 meet each MR-row chunk.
                let block = if m <= MR {
                    t.n
                } else {
                    (DOT_BLOCK_BYTES / (t.k * std::mem::size_of::<T>())).max(8)
                };
                let mut j0 = 0;
                while j0 < t.n {
                    let nb = block.min(t.n - j0);
                    let mut i0 = 0;
                    while i0 < m {
                        // SAFETY: rows i0.. and columns j0.. are inside the caller's product.
                        let sub = unsafe {
                            Thin {
                                n: nb,
                                a: t.a.offset(i0 as isize * t.rsa),
                                b: t.b.offset(j0 as isize * t.csb),
                                c: t.c.add(i0 * t.rsc + j0),
                                bias: if t.bias.is_null() {
                                    t.bias
                                } else {
                                    t.bias.add(j0)
                                },
                                ..t
                            }
                        };
                        // SAFETY (of each arm): the caller's contract; the arm's row count.
                        unsafe {
                            match (m - i0).min(MR) {
                                1 => dot_rows::<1, 8>(sub),
                                2 => dot_rows::<2, 8>(sub),
                                3 => dot_rows::<3, 6>(sub),
                                4 => dot_rows::<4, 5>(sub),
                                5 => dot_rows::<5, 4>(sub),
                                6 => dot_rows::<6, 4>(sub),
                                7 => dot_rows::<7, 3>(sub),
                                _ => dot_rows::<8, 3>(sub),
                            }
                        }
                        i0 += MR;
                    }
                    j0 += nb;
                }
            }

            /// [`dots`] for exactly `R` rows, `J` columns at a time, then one at a time.
            ///
            /// # Safety
            /// As [`dots`], with m = R.
            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn dot_rows<const R: usize, const J: usize>(t: Thin) {
                let mut j = 0;
                // SAFETY: columns j..j + J (or j) are columns of b and c; the caller's contract.
                unsafe {
                    while j + J <= t.n {
                        store_dots(&dot_block::<R, J>(t, j), t, j);
                        j += J;
                    }
                    while j < t.n {
                        store_dots(&dot_block::<R, 1>(t, j), t, j);
                        j += 1;
                    }
                }
            }

            /// The `R × J` dot products of the rows of `a` with columns `j..j + J` of `b`,
            /// each `k` long: per vector step `J` loads of `b`, `R` of `a` and `R·J`
            /// independent multiply-add chains; the last partial step is masked, the lanes
            /// summed at the end.
            ///
            /// # Safety
            /// AVX-512F; R rows of `a` and columns j..j + J of `b` are in bounds.
            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn dot_block<const R: usize, const J: usize>(t: Thin, j: usize) -> [[T; J]; R] {
                let (k, a, rsa, csb) = (t.k, t.a, t.rsa, t.csb);
                // SAFETY: column j of b is in bounds (the caller's contract).
                let b = unsafe { t.b.offset(j as isize * csb) };
                let mut acc = [[$zero(); J]; R];
                let mut bv = [$zero(); J];
                let mut p = 0;
                // SAFETY: p + W ≤ k, so every full load stays inside its run of k; the masked
                // loads read only the k - p lanes left.
                unsafe {
                    while p + W <= k {
                        for jj in 0..J {
                            bv[jj] = $loadu(b.offset(jj as isize * csb).add(p));
                        }
                        for i in 0..R {
                            let av = $loadu(a.offset(i as isize * rsa).add(p));
                            for jj in 0..J {
                                acc[i][jj] = $fmadd(av, bv[jj], acc[i][jj]);
                            }
                        }
                        p += W;
                    }
                    if p < k {
                        let mask = ((1u32 << (k - p)) - 1) as $mask;
                        for jj in 0..J {
                            bv[jj] = $maskz_loadu(mask, b.offset(jj as isize * csb).add(p));
                        }
                        for i in 0..R {
                            let av = $maskz_loadu(mask, a.offset(i as isize * rsa).add(p));
                            for jj in 0..J {
                                acc[i][jj] = $fmadd(av, bv[jj], acc[i][jj]);
                            }
                        }
                    }
                }
                let mut sums = [[0.0; J]; R];
                for i in 0..R {
                    for jj in 0..J {
                        sums[i][jj] = $reduce(acc[i][jj]);
                    }
                }
                sums
            }

            /// Writes an `R × J` block of dot products at column `j` of the output: added to
            /// what is there with `accumulate`, else to the bias, if any.
            ///
            /// # Safety
            /// The block lies inside c, initialised with `accumulate`; a non-null bias has
            /// columns j..j + J.
            #[inline(always)]
            unsafe fn store_dots<const R: usize, const J: usize>(
                sums: &[[T; J]; R],
                t: Thin,
                j: usize,
            ) {
                for (i, row) in sums.iter().enumerate() {
                    for (jj, &s) in row.iter().enumerate() {
                        // SAFETY: the caller's contract.
                        unsafe {
                            let d = t.c.add(i * t.rsc + j + jj);
                            *d = if t.accumulate {
                                *d + s
                            } else if t.bias.is_null() {
                                s
                            } else {
                                s + *t.bias.add(j + jj)
                            };
                        }
                    }
                }
            }

            /// One row panel of the output and the operands [`sweep`] meets it with: `rows` ≤ MR
            /// rows of `a` (element (i, p) at `a + i·ars + p·acs`), `kc` deep, against `nc`
            /// columns of `b` (packed, or in place with row stride `rsb`), written at `c`.
            #[derive(Clone, Copy)]
            struct Panel {
                rows: usize,
                kc: usize,
                nc: usize,
                a: *const T,
                ars: isize,
                acs: isize,
                b: *const T,
                rsb: isize,
                c: *mut T,
                rsc: usize,
                init: Init,
                /// Whether each tile asks for its output's lines first ([`prefetch_rows`]).
                prefetch_c: bool,
            }

            /// One row panel of the output (`rows` ≤ MR rows, `nc` columns) against every
            /// right panel of the block: `b` is the packed block, or with `DIRECT_B` the
            /// operand's rows in place (row stride `rsb`), prefetched `PF` panels ahead when
            /// `PF > 0`. Generic over the layout so that the packed case keeps its constant
            /// panel stride in the kernel's inner loop.
            ///
            /// # Safety
            /// As [`gemm`]; the panels and the output rows are in bounds.
            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn sweep<const DIRECT_B: bool, const PF: usize>(p: Panel) {
                let brs = if DIRECT_B { p.rsb } else { NR as isize };
                let mut jp = 0;
                while jp < p.nc {
                    let cols = NR.min(p.nc - jp);
                    // SAFETY: the caller's contract.
                    unsafe {
                        let ct = p.c.add(jp);
                        let bp = if DIRECT_B {
                            p.b.add(jp)
                        } else {
                            p.b.add(jp * p.kc)
                        };
                        let t = Tile {
                            kc: p.kc,
                            a: p.a,
                            ars: p.ars,
                            acs: p.acs,
                            b: bp,
                            brs,
                            c: ct,
                            rsc: p.rsc,
                            cols,
                            init: p.init.at(jp),
                            prefetch_c: p.prefetch_c,
                        };
                        // The last panel of a ragged width (100 = 3·32 + 4 in f32) runs on one
                        // vector when its columns fit: half the multiply-adds of a full tile
                        // for lanes that would be masked off anyway; on a 256-bit one when
                        // they fit in that, which Zen 4 issues two per cycle against one
                        // 512-bit (Intel's two FMA ports take either at the same rate).
                        // A ragged last panel loads only its columns: read in place, the lanes
                        // past them lie beyond the row's end (or the operand's).
                        if cols == NR {
                            rows_tile::<PF, NR, false>(p.rows, t)
                        } else if cols > W {
                            rows_tile::<PF, NR, true>(p.rows, t)
                        } else if cols > HALF {
                            rows_tile::<PF, W, true>(p.rows, t)
                        } else {
                            rows_tile::<PF, HALF, true>(p.rows, t)
                        }
                    }
                    jp += NR;
                }
            }

            /// One micro-tile's operands; see [`tile`].
            #[derive(Clone, Copy)]
            struct Tile {
                kc: usize,
                a: *const T,
                ars: isize,
                acs: isize,
                b: *const T,
                brs: isize,
                c: *mut T,
                rsc: usize,
                cols: usize,
                init: Init,
                prefetch_c: bool,
            }

            impl Tile {
                /// Where each of the left panel's first ROWS rows starts. The tiles read them
                /// through these and one running offset, so the rows' addresses are independent
                /// of each other: walking from row to row by `ars` chained ROWS dependent adds
                /// into every step (8 cycles a step, which bound the one-vector tiles). The
                /// pointers pass through `black_box`, once per tile: seeing `a + i·ars`, LLVM
                /// would otherwise rebuild that chain from them (it did, in one of two builds).
                #[inline(always)]
                fn row_starts<const ROWS: usize>(&self) -> [*const T; ROWS] {
                    std::hint::black_box(std::array::from_fn(|i| {
                        self.a.wrapping_offset(i as isize * self.ars)
                    }))
                }
            }

            /// A tile of `rows` ≤ MR rows and `LANES` columns (NR, W or HALF; `t.cols` ≤
            /// LANES): [`tile`] for the first two, [`half_tile`] for HALF, each row count
            /// its own instance. With `MASK` the right operand's rows are read only for their
            /// first `t.cols` lanes (a ragged last panel; `sweep` masks every one).
            ///
            /// # Safety
            /// As [`tile`].
            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn rows_tile<const PF: usize, const LANES: usize, const MASK: bool>(
                rows: usize,
                t: Tile,
            ) {
                // SAFETY: the caller's contract.
                unsafe {
                    match rows {
                        8 => tile::<8, PF, LANES, MASK>(t),
                        7 => tile::<7, PF, LANES, MASK>(t),
                        6 => tile::<6, PF, LANES, MASK>(t),
                        5 => tile::<5, PF, LANES, MASK>(t),
                        4 => tile::<4, PF, LANES, MASK>(t),
                        3 => tile::<3, PF, LANES, MASK>(t),
                        2 => tile::<2, PF, LANES, MASK>(t),
                        _ => tile::<1, PF, LANES, MASK>(t),
                    }
                }
            }

            /// Packs rows 0..m, columns 0..kc of `a` into panels of MR rows, each stored column by
            /// column (`dst[panel][p][i]`), rows past `m` zero.
            ///
            /// # Safety
            /// As [`gemm`]; `dst` holds m.div_ceil(MR)·MR·kc elements.
            #[target_feature(enable = "avx512f")]
            unsafe fn pack_a(
                m: usize,
                kc: usize,
                a: *const T,
                rsa: isize,
                csa: isize,
                dst: *mut T,
            ) {
                for ip in 0..m.div_ceil(MR) {
                    let rows = MR.min(m - ip * MR);
                    // SAFETY: panel ip's destination starts within `dst`, sized by the caller for
                    // ⌈m/MR⌉·MR·kc elements.
                    let d = unsafe { dst.add(ip * MR * kc) };
                    // SAFETY: ip·MR < m, so the panel's first row is a row of A.
                    let src = unsafe { a.offset((ip * MR) as isize * rsa) };
                    // SAFETY: the copies read `rows` rows and kc columns of A from `src` (all inside A by the
                    // caller's contract) and write MR·kc elements from `d` (inside `dst`).
                    unsafe {
                        if rsa == 1 && rows == MR {
                            // A transposed: each column of the panel is contiguous.
                            for p in 0..kc {
                                std::ptr::copy_nonoverlapping(
                                    src.offset(p as isize * csa),
                                    d.add(p * MR),
                                    MR,
                                );
                            }
                        } else {
                            for i in 0..MR {
                                if i < rows {
                                    let row = src.offset(i as isize * rsa);
                                    for p in 0..kc {
                                        *d.add(p * MR + i) = *row.offset(p as isize * csa);
                                    }
                                } else {
                                    for p in 0..kc {
                                        *d.add(p * MR + i) = 0.0;
                                    }
                                }
                            }
                        }
                    }
                }
            }

            /// Packs rows 0..kc, columns 0..nc of `b` into panels of NR columns, each stored row
            /// by row (`dst[panel][p][j]`), columns past `nc` zero.
            ///
            /// # Safety
            /// As [`gemm`]; `dst` holds nc.next_multiple_of(NR)·kc elements.
            #[target_feature(enable = "avx512f")]
            unsafe fn pack_b(
                kc: usize,
                nc: usize,
                b: *const T,
                rsb: isize,
                csb: isize,
                dst: *mut T,
            ) {
                let mut jp = 0;
                while jp < nc {
                    let cols = NR.min(nc - jp);
                    // SAFETY: jp < nc, and `dst` holds ⌈nc/NR⌉·NR·kc elements.
                    let d = unsafe { dst.add(jp * kc) };
                    // SAFETY: jp < nc, so column jp of the block is a column of B.
                    let src = unsafe { b.offset(jp as isize * csb) };
                    // SAFETY: the copies read kc rows and `cols` columns of B from `src` (inside B by the
                    // caller's contract) and write kc·NR elements from `d` (inside `dst`).
                    unsafe {
                        if csb == 1 && cols == NR {
                            // Two vector copies per row: a call to memcpy per 128 bytes was 3%
                            // of the 1024-wide step.
                            for p in 0..kc {
                                let row = src.offset(p as isize * rsb);
                                $storeu(d.add(p * NR), $loadu(row));
                                $storeu(d.add(p * NR + W), $loadu(row.add(W)));
                            }
                        } else if csb == 1 {
                            for p in 0..kc {
                                let row = src.offset(p as isize * rsb);
                                std::ptr::copy_nonoverlapping(row, d.add(p * NR), cols);
                                for j in cols..NR {
                                    *d.add(p * NR + j) = 0.0;
                                }
                            }
                        } else {
                            // B transposed: W × W blocks turned round in registers, then the
                            // ragged rest (and any other strides) element by element.
                            let (full_p, full_j) = if rsb == 1 {
                                (kc / W * W, cols / W * W)
                            } else {
                                (0, 0)
                            };
                            for j0 in (0..full_j).step_by(W) {
                                for p0 in (0..full_p).step_by(W) {
                                    $transpose(
                                        src.offset(j0 as isize * csb + p0 as isize),
                                        csb,
                                        d.add(p0 * NR + j0),
                                        NR,
                                    );
                                }
                                for j in j0..j0 + W {
                                    let col = src.offset(j as isize * csb);
                                    for p in full_p..kc {
                                        *d.add(p * NR + j) = *col.offset(p as isize * rsb);
                                    }
                                }
                            }
                            for j in full_j..NR {
                                if j < cols {
                                    let col = src.offset(j as isize * csb);
                                    for p in 0..kc {
                                        *d.add(p * NR + j) = *col.offset(p as isize * rsb);
                                    }
                                } else {
                                    for p in 0..kc {
                                        *d.add(p * NR + j) = 0.0;
                                    }
                                }
                            }
                        }
                    }
                    jp += NR;
                }
            }

            /// One ROWS × LANES output tile, LANES being NR (two vectors), W (one, for a last
            /// panel of at most W columns) or HALF (handed to [`half_tile`]): c (+)= apanel ·
            /// bpanel over `kc` steps, writing only the first `cols` columns, and with `MASK`
            /// reading only those of the right operand. With `PF > 0` each step also asks for
            /// the right operand's two lines `PF` panels ahead in the same row (see
            /// [`PREFETCH_B_MIN_BYTES`]); a prefetch past the operand's end is harmless.
            ///
            /// # Safety
            /// As [`gemm`]; the panels hold kc steps; the tile lies inside c; `cols` ≤ LANES.
            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn tile<
                const ROWS: usize,
                const PF: usize,
                const LANES: usize,
                const MASK: bool,
            >(
                t: Tile,
            ) {
                if LANES == HALF {
                    // SAFETY: the caller's contract, with `cols` ≤ HALF.
                    return unsafe { half_tile::<ROWS, PF>(t) };
                }
                // Two vectors per row, or one (a constant in each instance).
                let wide = LANES == NR;
                debug_assert!(MASK || wide, "a panel narrower than NR is always masked");
                let Tile {
                    kc,
                    acs,
                    brs,
                    c,
                    rsc,
                    cols,
                    init,
                    ..
                } = t;
                let mut lo = [$zero(); ROWS];
                let mut hi = [$zero(); ROWS];
                let rows = t.row_starts::<ROWS>();
                let (mut off, mut b) = (0isize, t.b);
                let (m0, m1) = masks(cols);
                if t.prefetch_c {
                    prefetch_rows::<ROWS>(c, rsc, LANES);
                }
                for _ in 0..kc {
                    // SAFETY: the macro's target feature (AVX-512F) is enabled; each row pointer walks
                    // kc steps of `acs` and `b` kc steps of `brs` over 2·W lanes, all inside the panels
                    // the caller passed (`b` steps with `wrapping_offset`: after the last step it may
                    // point past a right operand read in place, never to be read).
                    unsafe {
                        // Unmasked only for a full panel (`sweep` masks every narrower one).
                        let (b0, b1) = match (MASK, wide) {
                            (false, _) => ($loadu(b), $loadu(b.add(W))),
                            (true, true) => ($maskz_loadu(m0, b), $maskz_loadu(m1, b.add(W))),
                            (true, false) => ($maskz_loadu(m0, b), $zero()),
                        };
                        if PF > 0 {
                            _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(PF * NR) as *const i8);
                            _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(PF * NR + W) as *const i8);
                        }
                        for i in 0..ROWS {
                            let ai = $set1(*rows[i].offset(off));
                            lo[i] = $fmadd(ai, b0, lo[i]);
                            if wide {
                                hi[i] = $fmadd(ai, b1, hi[i]);
                            }
                        }
                        off += acs;
                        b = b.wrapping_offset(brs);
                    }
                }
                // SAFETY: the caller's contract.
                unsafe { finish::<ROWS>(lo, hi, wide, init, c, rsc, cols) }
            }

            /// One ROWS × HALF output tile, for a last panel of at most HALF columns: as
            /// [`tile`] on 256-bit vectors, finished by [`finish`] on the 512-bit ones they
            /// widen to (the upper lanes, undefined, are masked off with the columns past `cols`).
            ///
            /// # Safety
            /// As [`tile`], with `cols` ≤ HALF.
            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn half_tile<const ROWS: usize, const PF: usize>(t: Tile) {
                let mut acc = [$zero_half(); ROWS];
                let rows = t.row_starts::<ROWS>();
                let (mut off, mut b) = (0isize, t.b);
                let (m0, _) = masks(t.cols);
                if t.prefetch_c {
                    prefetch_rows::<ROWS>(t.c, t.rsc, HALF);
                }
                for _ in 0..t.kc {
                    // SAFETY: as in `tile`, over HALF lanes (inside the panel's NR).
                    unsafe {
                        // Always a last panel, so always masked: read in place, the lanes past
                        // `cols` may lie beyond the operand's end.
                        let b0 = $narrow($maskz_loadu(m0, b));
                        if PF > 0 {
                            _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(PF * NR) as *const i8);
                        }
                        for i in 0..ROWS {
                            let ai = $set1_half(*rows[i].offset(off));
                            acc[i] = $fmadd_half(ai, b0, acc[i]);
                        }
                        off += t.acs;
                        b = b.wrapping_offset(t.brs);
                    }
                }
                let lo = acc.map(|v| $widen(v));
                // SAFETY: the caller's contract; `cols` ≤ HALF masks every lane past the sums.
                unsafe { finish::<ROWS>(lo, [$zero(); ROWS], false, t.init, t.c, t.rsc, t.cols) }
            }

            /// Asks for the lines of a tile's output (ROWS rows of `lanes` columns from `c`)
            /// before its multiply-adds, so that their fetch hides behind the tile's kc steps:
            /// an output buffer last written long ago (a fresh tensor from the pool, after a
            /// step whose tape outgrew L3) is in memory, and each store at the tile's end
            /// would wait for its line. Only for outputs of [`PREFETCH_C_MIN_BYTES`] and more.
            /// A prefetch never faults, so asking past the output is harmless.
            #[inline(always)]
            fn prefetch_rows<const ROWS: usize>(c: *mut T, rsc: usize, lanes: usize) {
                for i in 0..ROWS {
                    let row = c.wrapping_add(i * rsc);
                    // SAFETY: a prefetch reads nothing (SSE, part of x86-64's baseline).
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(row as *const i8);
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(lanes - 1) as *const i8);
                    }
                }
            }

            /// Stores a tile's sums: adds the bias or the output's current values as `init`
            /// says and writes the first `cols` columns of ROWS rows (of two vectors when
            /// `wide`, of one otherwise, `cols` ≤ W then).
            ///
            /// # Safety
            /// As [`tile`]: the CPU has AVX-512F and the tile's `cols` columns of ROWS rows lie
            /// inside c.
            // No target feature of its own, so that it may be inlined always (Rust refuses
            // `inline(always)` with one): its callers have AVX-512F and the intrinsics inline
            // into them. Left to LLVM, it was called out of line once the tiles grew to four
            // kinds (5% of a 200-wide step).
            #[inline(always)]
            unsafe fn finish<const ROWS: usize>(
                mut lo: [$v; ROWS],
                mut hi: [$v; ROWS],
                wide: bool,
                init: Init,
                c: *mut T,
                rsc: usize,
                cols: usize,
            ) {
                // SAFETY: the masked loads and stores touch only the first `cols` lanes of each of the
                // ROWS rows of C (and of `bias`), which the caller's tile bounds guarantee.
                unsafe {
                    if let Init::Bias(bias) = init {
                        let (m0, m1) = masks(cols);
                        let b0 = $maskz_loadu(m0, bias);
                        let b1 = if wide {
                            $maskz_loadu(m1, bias.add(W))
                        } else {
                            $zero()
                        };
                        for i in 0..ROWS {
                            lo[i] = $add(lo[i], b0);
                            hi[i] = $add(hi[i], b1);
                        }
                    }
                    let load_c = matches!(init, Init::LoadC);
                    if !wide {
                        let (m0, _) = masks(cols);
                        for i in 0..ROWS {
                            let row = c.add(i * rsc);
                            if load_c {
                                lo[i] = $add(lo[i], $maskz_loadu(m0, row));
                            }
                            $mask_storeu(row, m0, lo[i]);
                        }
                    } else if cols == NR {
                        for i in 0..ROWS {
                            let row = c.add(i * rsc);
                            if load_c {
                                lo[i] = $add(lo[i], $loadu(row));
                                hi[i] = $add(hi[i], $loadu(row.add(W)));
                            }
                            $storeu(row, lo[i]);
                            $storeu(row.add(W), hi[i]);
                        }
                    } else {
                        let (m0, m1) = masks(cols);
                        for i in 0..ROWS {
                            let row = c.add(i * rsc);
                            if load_c {
                                lo[i] = $add(lo[i], $maskz_loadu(m0, row));
                                hi[i] = $add(hi[i], $maskz_loadu(m1, row.add(W)));
                            }
                            $mask_storeu(row, m0, lo[i]);
                            $mask_storeu(row.add(W), m1, hi[i]);
                        }
                    }
                }
            }
        }
    };
}

avx512_gemm!(
    f32s,
    f32,
    __m512,
    16,
    __mmask16,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_setzero_ps,
    _mm512_maskz_loadu_ps,
    _mm512_mask_storeu_ps,
    transpose16,
    _mm512_reduce_add_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_setzero_ps,
    _mm512_castps256_ps512,
    _mm512_castps512_ps256
);
avx512_gemm!(
    f64s,
    f64,
    __m512d,
    8,
    __mmask8,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_fmadd_pd,
    _mm512_add_pd,
    _mm512_setzero_pd,
    _mm512_maskz_loadu_pd,
    _mm512_mask_storeu_pd,
    transpose8,
    _mm512_reduce_add_pd,
    _mm256_set1_pd,
    _mm256_fmadd_pd,
    _mm256_setzero_pd,
    _mm512_castpd256_pd512,
    _mm512_castpd512_pd256
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Row-major `rows × cols` matrix with arbitrary values in [-1, 1), reproducible from `seed`.
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// One product through the kernel for element type `$t`, checked against the textbook
    /// triple loop in f64. `a` is stored `[m, k]` (or `[k, m]` with `ta`), `b` `[k, n]` (or
    /// `[n, k]` with `tb`); c has row stride `n + pad`, and the padding must stay untouched.
    macro_rules! check {
        ($module:ident, $t:ty, $tol:expr, $m:expr, $k:expr, $n:expr, $ta:expr, $tb:expr, $acc:expr, $pad:expr, $seed:expr) => {{
            let (m, k, n, ta, tb, acc, pad): (usize, usize, usize, bool, bool, bool, usize) =
                ($m, $k, $n, $ta, $tb, $acc, $pad);
            let a64 = values(m * k, $seed);
            let b64 = values(k * n, $seed + 1);
            let c0 = values(m * (n + pad), $seed + 2);
            let a: Vec<$t> = a64.iter().map(|&v| v as $t).collect();
            let b: Vec<$t> = b64.iter().map(|&v| v as $t).collect();
            let mut c: Vec<$t> = c0.iter().map(|&v| v as $t).collect();
            // Half the cases without accumulation add a bias row instead.
            let bias: Option<Vec<$t>> =
                (!acc && $seed % 2 == 0).then(|| values(n, $seed + 3).iter().map(|&v| v as $t).collect());
            let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
            let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
            let rsc = n + pad;
            // SAFETY: the strides stay inside a and b, c holds the m × n block at stride rsc.
            unsafe {
                $module::gemm(m, k, n, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, c.as_mut_ptr(), rsc, acc, bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()))
            };
            for i in 0..m {
                for j in 0..rsc {
                    let got = c[i * rsc + j] as f64;
                    let want = if j >= n {
                        c0[i * rsc + j] as $t as f64
                    } else {
                        let mut s = match (&bias, acc) {
                            (_, true) => c0[i * rsc + j] as $t as f64,
                            (Some(b), false) => b[j] as f64,
                            (None, false) => 0.0,
                        };
                        for p in 0..k {
                            let av = a[(i as isize * rsa + p as isize * csa) as usize] as f64;
                            let bv = b[(p as isize * rsb + j as isize * csb) as usize] as f64;
                            s += av * bv;
                        }
                        s
                    };
                    let tol = $tol * (1.0 + k as f64);
                    prop_assert!(
                        (got - want).abs() <= tol,
                        "{}: m={m} k={k} n={n} ta={ta} tb={tb} acc={acc} bias={} pad={pad}: c[{i}][{j}] = {got}, want {want}",
                        stringify!($t),
                        bias.is_some()
                    );
                }
            }
        }};
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every edge: rows not a multiple of MR, columns not a multiple of a vector or a tile,
        /// depth across slab boundaries, both transposes, accumulation and a padded output.
        #[test]
        fn matches_the_triple_loop(
            m in 1usize..40, k in 1usize..300, n in 1usize..80,
            ta: bool, tb: bool, acc: bool, pad in 0usize..3, seed: u64,
        ) {
            // Not `prop_assume!`: on a CPU without AVX-512 every case would be rejected and
            // proptest fails a test that rejects too many.
            if !available() {
                return Ok(());
            }
            check!(f32s, f32, 1e-5, m, k, n, ta, tb, acc, pad, seed);
            check!(f64s, f64, 1e-13, m, k, n, ta, tb, acc, pad, seed);
        }
    }

    /// Wider than one packed block of the right operand (NC columns), so the block loop runs
    /// more than once, with a ragged last block; and right operands read in place, also wider
    /// than NC.
    #[test]
    fn every_ragged_last_panel_width_matches() -> Result<(), TestCaseError> {
        if !available() {
            eprintln!("no AVX-512 on this CPU: the kernel cannot run here");
            return Ok(());
        }
        // Widths 1 to 2·NR + 1 in f32 (NR = 32): last panels of 1–8 columns take the 256-bit
        // tile, 9–16 the one-vector tile, 17–32 the full one; in f64 (NR = 16) the same at 1–4,
        // 5–8 and 9–16. Rows 13 = 8 + 5 give a full and a short row panel; fresh, accumulating
        // (padded output whose padding must stay) and biased.
        for n in 1..=65 {
            let seed = n as u64;
            check!(f32s, f32, 1e-5, 13, 37, n, false, false, false, 0, 2 * seed);
            check!(
                f32s,
                f32,
                1e-5,
                13,
                37,
                n,
                true,
                true,
                true,
                1,
                2 * seed + 1
            );
            check!(f64s, f64, 1e-13, 13, 37, n, false, true, false, 1, 2 * seed);
            check!(
                f64s,
                f64,
                1e-13,
                13,
                37,
                n,
                true,
                false,
                true,
                0,
                2 * seed + 1
            );
        }
        Ok(())
    }

    #[test]
    fn spans_several_packed_blocks_and_reads_small_operands_in_place() -> Result<(), TestCaseError>
    {
        if !available() {
            eprintln!("no AVX-512 on this CPU: the kernel cannot run here");
            return Ok(());
        }
        // Right operands read in place (row-major, whole panels, small), with padded output.
        check!(f32s, f32, 1e-5, 13, 70, 64, false, false, true, 2, 9);
        check!(f64s, f64, 1e-13, 13, 300, 48, true, false, false, 1, 10);
        // Read in place and wider than NC (one block as wide as the output): a lazy SGD
        // update's shape, many row panels, a few rows of depth, accumulating.
        check!(f32s, f32, 1e-5, 37, 5, 1056, true, false, true, 1, 11);
        check!(f64s, f64, 1e-13, 19, 8, 528, true, false, true, 0, 12);
        for tb in [false, true] {
            check!(f32s, f32, 1e-5, 9, 260, 1100, false, tb, false, 0, 6);
            check!(f64s, f64, 1e-13, 9, 260, 600, true, tb, true, 1, 8);
        }
        Ok(())
    }

    /// Outputs of PREFETCH_C_MIN_BYTES and more, whose tiles ask for their lines first: ragged
    /// rows and last panels of every kind (masked two-vector, one-vector, half-width), so the
    /// requests past a narrow tile's columns and past the output's end are exercised too.
    #[test]
    fn outputs_past_the_prefetch_bound_match() -> Result<(), TestCaseError> {
        if !available() {
            eprintln!("no AVX-512 on this CPU: the kernel cannot run here");
            return Ok(());
        }
        // The narrowest of the widths below, so every case is past the bound.
        const { assert!(301 * 232 * 4 >= PREFETCH_C_MIN_BYTES) };
        const { assert!(203 * 164 * 8 >= PREFETCH_C_MIN_BYTES) };
        // f32 last panels: 250 = 7·32 + 26 (masked, two vectors), 232 = 7·32 + 8 (half),
        // 240 = 7·32 + 16 (one vector); f64: 165 = 10·16 + 5 (one vector), 164 (half).
        let layouts = [
            (false, false, false, 0),
            (true, true, true, 1),
            (false, true, true, 0),
        ];
        for (i, ((n32, n64), (ta, tb, acc, pad))) in [(250, 165), (232, 164), (240, 165)]
            .into_iter()
            .zip(layouts)
            .enumerate()
        {
            let seed = 40 + 8 * i as u64;
            check!(f32s, f32, 1e-5, 301, 20, n32, ta, tb, acc, pad, seed);
            check!(f64s, f64, 1e-13, 203, 20, n64, !ta, tb, !acc, pad, seed + 4);
        }
        Ok(())
    }

    /// Thin products (at most MR rows, or DOT_MAX_ROWS against a large operand) read their
    /// right operand in place: as dot products when it is stored transposed (any depth, with
    /// the masked last step, ragged column blocks, and for more than MR rows, blocks of
    /// columns that each row chunk meets), as rows when row-major and too large to stay in L2
    /// (past DIRECT_B_MAX_BYTES).
    #[test]
    fn thin_products_read_the_right_operand_in_place() -> Result<(), TestCaseError> {
        if !available() {
            eprintln!("no AVX-512 on this CPU: the kernel cannot run here");
            return Ok(());
        }
        assert!(as_dots::<f32>(DOT_MAX_ROWS, 600, 300, 1, 1));
        assert!(!as_dots::<f32>(DOT_MAX_ROWS + 1, 600, 300, 1, 1));
        let mut seed = 20;
        for m in 1..=DOT_MAX_ROWS {
            for (k, n) in [
                (32, 1),
                (33, 7),
                (47, 16),
                (300, 100),
                (1000, 37),
                (600, 300),
            ] {
                for acc in [false, true] {
                    seed += 1;
                    check!(f32s, f32, 1e-5, m, k, n, false, true, acc, 1, seed);
                    check!(f64s, f64, 1e-13, m, k, n, false, true, acc, 0, seed);
                }
            }
            if m > MR {
                continue;
            }
            seed += 1;
            check!(f32s, f32, 1e-5, m, 300, 512, false, false, false, 0, seed);
            check!(f64s, f64, 1e-13, m, 300, 256, true, false, true, 2, seed);
        }
        // Past PREFETCH_B_MIN_BYTES a row-major operand read in place is prefetched panels
        // ahead, to the right edge of each row and beyond it.
        const { assert!(4100 * 2080 * 4 > PREFETCH_B_MIN_BYTES) };
        const { assert!(2100 * 2048 * 8 > PREFETCH_B_MIN_BYTES) };
        check!(f32s, f32, 1e-5, 3, 4100, 2080, false, false, false, 0, 40);
        check!(f64s, f64, 1e-13, 8, 2100, 2048, false, false, true, 1, 41);
        // Between the two CPUs' bounds (prefetched on AMD, not on Intel), with a ragged depth.
        const { assert!(1030 * 1024 * 4 > PREFETCH_B_MIN_BYTES_OTHER) };
        const { assert!(1030 * 1024 * 8 < PREFETCH_B_MIN_BYTES) };
        check!(f32s, f32, 1e-5, 4, 1030, 1024, false, false, false, 0, 42);
        check!(f64s, f64, 1e-13, 5, 1030, 1024, false, false, true, 2, 43);
        Ok(())
    }

    /// Runs an `n × n` register transpose between buffers with the given row strides and checks
    /// every element, and that nothing past the block's columns is written.
    fn check_transpose<T: Copy + PartialEq + std::fmt::Debug + From<u16>>(
        n: usize,
        transpose: unsafe fn(*const T, isize, *mut T, usize),
        src_stride: usize,
        dst_stride: usize,
    ) {
        let src: Vec<T> = (0..n * src_stride).map(|i| T::from(i as u16)).collect();
        let untouched = T::from(u16::MAX);
        let mut dst = vec![untouched; n * dst_stride];
        // SAFETY: n rows of n within both buffers; the caller checked the CPU.
        unsafe {
            transpose(
                src.as_ptr(),
                src_stride as isize,
                dst.as_mut_ptr(),
                dst_stride,
            )
        };
        for r in 0..n {
            for c in 0..dst_stride {
                let want = if c < n {
                    src[c * src_stride + r]
                } else {
                    untouched
                };
                assert_eq!(dst[r * dst_stride + c], want, "{n}×{n}: row {r} column {c}");
            }
        }
    }

    #[test]
    fn register_transposes_turn_blocks_round() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: the transposes cannot run here");
            return;
        }
        // Source rows 20 apart, destination rows 40 apart: the strides are honoured too.
        check_transpose::<f32>(16, transpose16, 20, 40);
        check_transpose::<f64>(8, transpose8, 11, 9);
    }
}
