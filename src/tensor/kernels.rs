//! Value kernels on [`Tensor`]: broadcasting, elementwise maps, reductions and shape moves.
//!
//! Every kernel is generic over the element and over the closure it applies, so each call site
//! compiles to its own loop: no per-element dynamic dispatch.

use super::pool::{filled, filled_by};
use super::simd::dispatch;
use super::{Element, Shape, Tensor};
use smallvec::smallvec;
use std::mem::MaybeUninit;

/// The NumPy broadcast of two shapes.
///
/// # Panics
/// With `op` and both shapes when an axis differs and neither extent is 1.
#[track_caller]
pub fn broadcast_shapes(op: &str, a: &[usize], b: &[usize]) -> Shape {
    let n = a.len().max(b.len());
    let mut out: Shape = smallvec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => panic!("{op}: shapes {a:?} and {b:?} cannot be broadcast together"),
        };
    }
    // Extents of 0 and 2⁶³ broadcast to a shape whose count overflows.
    super::numel_of::<f64>(op, &out);
    out
}

/// Row-major strides of `shape`, laid against `out` (right-aligned), with stride 0 on every axis
/// where `shape` is broadcast.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Shape {
    let mut strides: Shape = smallvec![0; out.len()];
    let mut s = 1;
    for (i, &d) in shape.iter().enumerate().rev() {
        let j = i + out.len() - shape.len();
        strides[j] = if d == 1 { 0 } else { s };
        s *= d;
    }
    strides
}

/// Walks the output of shape `out` row by row (innermost axis), calling
/// `f(out_offset, in_offsets, in_inner_strides, row_len)` where each input's offset and inner
/// stride come from its (possibly zero) strides. Works for any number of inputs up to 2.
/// Inlined, with an `#[inline(always)]` callback, so that inside [`dispatch`] the row loops get
/// the dispatched instruction set.
#[inline(always)]
fn for_each_row<const N: usize>(
    out: &[usize],
    strides: [&[usize]; N],
    mut f: impl FnMut(usize, [usize; N], [usize; N], usize),
) {
    let numel: usize = out.iter().product();
    if numel == 0 {
        return;
    }
    if out.is_empty() {
        f(0, [0; N], [0; N], 1);
        return;
    }
    let nd = out.len();
    let inner = out[nd - 1];
    let inner_strides = strides.map(|s| s[nd - 1]);
    let mut idx: Shape = smallvec![0; nd];
    let mut offs = [0usize; N];
    let mut o = 0;
    while o < numel {
        f(o, offs, inner_strides, inner);
        o += inner;
        // Odometer increment over the outer axes, updating each input offset incrementally.
        let mut ax = nd - 1;
        while ax > 0 {
            ax -= 1;
            idx[ax] += 1;
            for k in 0..N {
                offs[k] += strides[k][ax];
            }
            if idx[ax] < out[ax] {
                break;
            }
            for k in 0..N {
                offs[k] -= strides[k][ax] * out[ax];
            }
            idx[ax] = 0;
        }
    }
}

/// Side of the square tiles [`permute_tiled`] copies through: 16 values of f32 fill one 64-byte
/// cache line, so each tile reads 16 whole lines and writes 16.
const PERMUTE_TILE: usize = 16;

/// Side of the square blocks of tiles [`permute_tiled`] finishes one at a time, so that the
/// pages a block reads and writes (a line in each of 256 input and 256 output rows) stay in the
/// TLB. Without blocks a 2048 × 2048 f32 transpose took 10–13 ms on AMD Zen 3; with blocks of
/// 64, 128, 256 and 512, 8.4–8.9, 6.6–10.7, 4.7–6.0 and 4.7–9.9 ms (PyTorch's 5.3–6.9).
const PERMUTE_BLOCK: usize = 256;

/// The permute of `src` into `dst` (the whole output), writing every slot, when output axis
/// `j`, not the last, is the input's contiguous axis: `strides` are the input strides of each output
/// axis, so `strides[j] == 1`. For every index of the other axes the two innermost moves form a
/// matrix transpose, `P = out[j]` by `Q = out[last]`, copied a [`PERMUTE_TILE`]-square tile at a
/// time: read down `Q` input rows a line each, write along `P` output rows a line each. Every
/// line is then used whole as it arrives, rather than needing 16 lines of a column to stay in
/// L1 until the next output row, which rows a multiple of 4 KiB apart never do (they all fall in
/// one cache set). A 2048 × 2048 f32 transpose 30 → 4.7–6.0 ms on AMD Zen 3 (PyTorch 5.3–6.9).
fn permute_tiled<T: Element>(
    src: &[T],
    out: &[usize],
    strides: &[usize],
    j: usize,
    dst: &mut [MaybeUninit<T>],
) {
    let nd = out.len();
    let (p_len, q_len, q_stride) = (out[j], out[nd - 1], strides[nd - 1]);
    // Output (row-major) strides, and the outer shape with the two tiled axes cut to 1.
    let mut out_strides: Shape = smallvec![0; nd];
    let mut s = 1;
    for ax in (0..nd).rev() {
        out_strides[ax] = s;
        s *= out[ax];
    }
    let p_out = out_strides[j];
    let mut outer: Shape = out.into();
    outer[j] = 1;
    outer[nd - 1] = 1;
    let mut tile = [[T::zero(); PERMUTE_TILE]; PERMUTE_TILE];
    // Tile corners (p0, q0), block by block.
    let corners =
        |len: usize, block: usize| (block..len.min(block + PERMUTE_BLOCK)).step_by(PERMUTE_TILE);
    for_each_row(&outer, [strides, &out_strides], |_, [ib, ob], _, _| {
        for qb in (0..q_len).step_by(PERMUTE_BLOCK) {
            for pb in (0..p_len).step_by(PERMUTE_BLOCK) {
                for q0 in corners(q_len, qb) {
                    let qn = PERMUTE_TILE.min(q_len - q0);
                    for p0 in corners(p_len, pb) {
                        let pn = PERMUTE_TILE.min(p_len - p0);
                        for q in 0..qn {
                            let row = &src[ib + (q0 + q) * q_stride + p0..][..pn];
                            for (p, &v) in row.iter().enumerate() {
                                tile[p][q] = v;
                            }
                        }
                        for (p, values) in tile.iter().enumerate().take(pn) {
                            let row = &mut dst[ob + (p0 + p) * p_out + q0..][..qn];
                            for (d, &v) in row.iter_mut().zip(values) {
                                d.write(v);
                            }
                        }
                    }
                }
            }
        }
    });
    // The outer walk visits every index of the axes other than `j` and the last, and for each
    // the tiles cover `0..out[j]` × `0..out[last]`: each output position is written once.
}

/// Splits `shape` around `axis` into (outer, n, inner) extents.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

// The elementwise loops take their output as a `&mut` argument: inlined, it keeps its
// no-alias guarantee, so a value the closure captures by reference (`one` in σ' = y(1 − y)) is
// loaded once and the loop vectorises. Written inline over a recycled `Vec`, LLVM had to assume
// each store might change that value: σ's backward ran scalar, 8% of a deep sigmoid step.

/// Σ x in sixteen lanes ([`lanes`](super::simd::lanes)), then the lanes; inlined into the
/// callers' `dispatch`.
#[inline(always)]
fn lane_sum<T: Element>(x: &[T]) -> T {
    super::simd::lanes(x, T::zero(), |a, v| a + v)
        .iter()
        .fold(T::zero(), |s, &a| s + a)
}

/// A recycled buffer of `len` elements written whole by `body` inside the run-time dispatch
/// ([`dispatch`]; not run for an empty tensor): the softmax family's outputs, never zero-filled
/// first. `body` must write every slot, and be an `#[inline(always)]` closure, as for
/// `dispatch`.
#[inline(always)]
fn written_in_dispatch<T: Element>(len: usize, body: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    filled_by(len, |dst| {
        if !dst.is_empty() {
            dispatch(
                #[inline(always)]
                move || body(dst),
            );
        }
    })
}

/// A recycled buffer of `rows` rows of `n` elements, written by `body(rows, out)` over blocks
/// of whole rows (`out` holds the block's rows), each inside the run-time dispatch, on up to
/// [`num_threads`](super::num_threads) threads where [`row_blocks`](super::parallel::row_blocks)
/// cuts the work: the softmax family along the last axis, whose rows are independent. `body`
/// must write every slot of its block and be an `#[inline(always)]` closure.
#[inline(always)]
fn written_by_rows<T: Element>(
    rows: usize,
    n: usize,
    body: impl Fn(std::ops::Range<usize>, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    filled_by(rows * n, |dst| {
        let base = super::parallel::SharedPtr(dst.as_mut_ptr());
        let blocks = super::parallel::row_blocks(rows, n);
        super::parallel::for_row_blocks(rows, blocks, &|_, r| {
            // SAFETY: the blocks' row ranges are disjoint and within 0..rows, and `dst` holds
            // rows · n slots.
            let block =
                unsafe { std::slice::from_raw_parts_mut(base.get().add(r.start * n), r.len() * n) };
            if !block.is_empty() {
                dispatch(
                    #[inline(always)]
                    || body(r, block),
                );
            }
        });
    })
}

/// out[i] = f(a[i]).
#[inline(always)]
fn write1<T: Copy>(out: &mut [MaybeUninit<T>], a: &[T], f: &impl Fn(T) -> T) {
    for (o, &x) in out.iter_mut().zip(a) {
        o.write(f(x));
    }
}

/// How many bytes of input [`write1_easy`] decides for at once: eight AVX-512 vectors (64 f64 or
/// 128 f32). Long enough that a mispredicted branch (~20 cycles) is small beside a block's
/// work, short enough that a few hard elements do not send much easy work down the slow path.
const EASY_BLOCK_BYTES: usize = 512;

/// The longest run of blocks [`write1_easy`] computes with `f` without testing them.
const EASY_MAX_SKIP: usize = 16;

/// out[i] = f(a[i]), or `fast(a[i])` over each block of [`EASY_BLOCK_BYTES`] that all have
/// `|a[i]| ≤ limit` (NaN never does).
///
/// The test is a second pass over the block's input, about 4% of GELU's time in f64, paid in
/// vain where blocks are hard. So after a hard block the next run of blocks goes to `f`
/// untested, the run doubling (up to [`EASY_MAX_SKIP`]) while the blocks stay hard and
/// starting again from one after an easy block: a tensor without easy blocks tests about one
/// block in sixteen, one with them loses at most a run's worth. A run is one loop, so `f`'s
/// constants (a polynomial's coefficients) stay in registers across it.
#[inline(always)]
fn write1_easy<T: Element>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    (limit, fast): (T, &impl Fn(T) -> T),
    f: &impl Fn(T) -> T,
) {
    let n = out.len().min(a.len());
    let block = EASY_BLOCK_BYTES / std::mem::size_of::<T>();
    let blocks = n / block;
    // `untested`: how many blocks after the next hard one go to `f` untested. `written`: the
    // output up to here is done.
    let (mut b, mut untested, mut written) = (0, 0, 0);
    while b < blocks {
        let s = b * block;
        let x = &a[s..s + block];
        // A fold, not `all`, which stops early and so stays a scalar loop.
        if x.iter().fold(true, |easy, &v| easy & (v.abs() <= limit)) {
            write1(&mut out[s..s + block], x, fast);
            untested = 0;
            b += 1;
            written = s + block;
        } else {
            b = (b + 1 + untested).min(blocks);
            // The tail that makes no whole block joins a run that reaches it.
            written = if b == blocks { n } else { b * block };
            write1(&mut out[s..written], &a[s..written], f);
            untested = (2 * untested).clamp(1, EASY_MAX_SKIP);
        }
    }
    write1(&mut out[written..n], &a[written..n], f);
}

/// out[i] = f(a[i], b[i]).
#[inline(always)]
fn write2<T: Copy>(out: &mut [MaybeUninit<T>], a: &[T], b: &[T], f: &impl Fn(T, T) -> T) {
    let n = out.len().min(a.len()).min(b.len());
    for i in 0..n {
        out[i].write(f(a[i], b[i]));
    }
}

/// out[i] = f(a[i], b[i], c[i]).
#[inline(always)]
fn write3<T: Copy>(
    out: &mut [MaybeUninit<T>],
    (a, b, c): (&[T], &[T], &[T]),
    f: &impl Fn(T, T, T) -> T,
) {
    let n = out.len().min(a.len()).min(b.len()).min(c.len());
    for i in 0..n {
        out[i].write(f(a[i], b[i], c[i]));
    }
}

/// A recycled buffer of `n` elements written by `fill(start, chunk)` over disjoint chunks, in
/// parallel when [`for_chunks`](super::parallel::for_chunks) finds `n` large enough (from
/// [`PARALLEL_MIN_ELEMS`](super::parallel::PARALLEL_MIN_ELEMS) while a helper is awake).
/// `fill` must write every element of its chunk. Below the threshold, or on one thread, `fill`
/// is called directly, not through `for_chunks`' `dyn Fn`: the 1×1 ops of the per-op overhead
/// benchmark take this path.
#[inline(always)]
fn filled_in_chunks<T: Element>(
    n: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut out = super::pool::with_capacity(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    if n < super::parallel::PARALLEL_MIN_ELEMS || super::num_threads() <= 1 {
        fill(0, dst);
    } else {
        super::parallel::for_chunks(dst, &fill);
    }
    // SAFETY: `dst` is the first n spare slots of `out`'s capacity. Both branches hand all of
    // it to `fill` (whole, or in disjoint chunks that `for_chunks` makes cover it), and each
    // `fill` in this file (`map_par`, `zip3_map`) writes every slot of its chunk: write1 and
    // write3 zip the chunk with input slices cut to the chunk's own length. So all n slots
    // hold values.
    unsafe { out.set_len(n) };
    out
}

impl<T: Element> Tensor<T> {
    /// Applies `f` to every element.
    #[inline]
    pub fn map(&self, f: impl Fn(T) -> T) -> Tensor<T> {
        let n = self.numel();
        let mut out = super::pool::with_capacity(n);
        // An explicit loop inside the run-time dispatch, so that it is compiled for AVX-512 /
        // AVX2 (sigmoid's forward was 17% of a deep sigmoid step when this ran baseline SSE2).
        // `move`: the body owns `f`, so what `f` holds by value is loaded once (see
        // [`Tensor::zip3_map`]); a caller's closure should itself be `move` for its scalars.
        let (dst, src) = (&mut out.spare_capacity_mut()[..n], &self.data[..n]);
        dispatch(
            #[inline(always)]
            move || write1(dst, src, &f),
        );
        // SAFETY: write1 wrote the first n spare slots of `out`: it zips them with
        // `self.data[..n]`, which holds n elements (n is the element count).
        unsafe { out.set_len(n) };
        Tensor::from_parts(out, Shape::from_slice(&self.shape))
    }

    /// Applies `f` elementwise to two tensors of the same shape.
    ///
    /// # Panics
    /// If the shapes differ (no broadcasting; see [`Tensor::zip_broadcast`]).
    #[track_caller]
    pub fn zip_map(&self, other: &Tensor<T>, f: impl Fn(T, T) -> T) -> Tensor<T> {
        assert!(
            self.shape == other.shape,
            "zip_map: shapes {:?} and {:?} differ",
            self.shape(),
            other.shape()
        );
        let n = self.numel();
        let mut out = super::pool::with_capacity(n);
        let (dst, a, b) = (
            &mut out.spare_capacity_mut()[..n],
            &self.data[..n],
            &other.data[..n],
        );
        dispatch(
            #[inline(always)]
            move || write2(dst, a, b, &f),
        );
        // SAFETY: write2 wrote the first n spare slots of `out`: it writes min(n, n, n) of
        // them, both inputs being cut to n elements (the shapes are equal, checked above).
        unsafe { out.set_len(n) };
        Tensor::from_parts(out, Shape::from_slice(&self.shape))
    }

    /// Applies `f` elementwise to three tensors of the same shape (used by fused backward
    /// kernels such as `g · σ'(x)`).
    #[track_caller]
    pub(crate) fn zip3_map(
        &self,
        b: &Tensor<T>,
        c: &Tensor<T>,
        f: impl Fn(T, T, T) -> T + Sync + Copy,
    ) -> Tensor<T> {
        assert!(
            self.shape == b.shape && b.shape == c.shape,
            "zip3_map: shapes {:?}, {:?} and {:?} differ",
            self.shape(),
            b.shape(),
            c.shape()
        );
        let (x, y, z) = (&self.data[..], &b.data[..], &c.data[..]);
        let out = filled_in_chunks(
            self.numel(),
            #[inline(always)]
            |s, o| {
                let e = s + o.len();
                // `move`: the body gets its own copy of `f`, so the parameters `f` holds (a
                // slope, a bound) are loaded once; through a reference LLVM must reload them
                // after every store to `o`, and the loop stays scalar (leaky ReLU's was).
                dispatch(
                    #[inline(always)]
                    move || write3(o, (&x[s..e], &y[s..e], &z[s..e]), &f),
                )
            },
        );
        Tensor::from_parts(out, Shape::from_slice(&self.shape))
    }

    /// [`map_par`](Tensor::map_par) with a shortcut: where every element of a block has
    /// `|x| ≤ limit`, `fast` is applied instead of `f`. Vectorised code evaluates every branch
    /// of `f` at every element, so a function whose cheap branch covers most inputs (erf near
    /// 0) pays for the expensive one everywhere; testing a block first skips it where no
    /// element needs it. `fast(x)` must equal `f(x)` wherever `|x| ≤ limit`.
    pub(crate) fn map_par_easy(
        &self,
        limit: T,
        fast: impl Fn(T) -> T + Sync + Copy,
        f: impl Fn(T) -> T + Sync + Copy,
    ) -> Tensor<T> {
        self.written_par(
            #[inline(always)]
            move |o, x| write1_easy(o, x, (limit, &fast), &f),
        )
    }

    /// [`Tensor::map`] for the engine's own `Sync` closures: a large tensor
    /// ([`PARALLEL_MIN_ELEMS`](super::parallel::PARALLEL_MIN_ELEMS) elements or more) is split
    /// over the matrix-product threads.
    /// `f` is `Copy` so that each chunk's loop holds its own copy (see [`Tensor::zip3_map`]).
    pub(crate) fn map_par(&self, f: impl Fn(T) -> T + Sync + Copy) -> Tensor<T> {
        self.written_par(
            #[inline(always)]
            move |o, x| write1(o, x, &f),
        )
    }

    /// A tensor of this shape whose chunks `write(out, x)` fills from the matching chunks of
    /// this one's elements, under the SIMD dispatch, split over threads when large.
    #[inline(always)]
    fn written_par(&self, write: impl Fn(&mut [MaybeUninit<T>], &[T]) + Sync + Copy) -> Tensor<T> {
        let x = &self.data[..];
        let out = filled_in_chunks(
            self.numel(),
            #[inline(always)]
            |s, o| {
                let e = s + o.len();
                dispatch(
                    #[inline(always)]
                    move || write(o, &x[s..e]),
                )
            },
        );
        Tensor::from_parts(out, Shape::from_slice(&self.shape))
    }

    /// Applies `f` elementwise with NumPy broadcasting; `op` names the operation in panics.
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    #[track_caller]
    pub fn zip_broadcast(&self, other: &Tensor<T>, op: &str, f: impl Fn(T, T) -> T) -> Tensor<T> {
        if self.shape == other.shape {
            return self.zip_map(other, f);
        }
        let out = broadcast_shapes(op, &self.shape, &other.shape);
        if other.numel() == 1 && out == self.shape {
            let b = other.data[0];
            return self.map(move |a| f(a, b));
        }
        if self.numel() == 1 && out == other.shape {
            let a = self.data[0];
            return other.map(move |b| f(a, b));
        }
        let sa = broadcast_strides(&self.shape, &out);
        let sb = broadcast_strides(&other.shape, &out);
        // Rows are visited in output order, so each is appended: no zero-fill to overwrite.
        // `broadcast_shapes` checked the count.
        let mut buf = super::pool::with_capacity(out.iter().product());
        let (a, b) = (&self.data[..], &other.data[..]);
        dispatch(
            #[inline(always)]
            || {
                for_each_row(
                    &out,
                    [&sa, &sb],
                    #[inline(always)]
                    |_, [oa, ob], [ia, ib], n| match (ia, ib) {
                        (1, 1) => buf.extend(
                            a[oa..oa + n]
                                .iter()
                                .zip(&b[ob..ob + n])
                                .map(|(&x, &y)| f(x, y)),
                        ),
                        (1, 0) => {
                            let y = b[ob];
                            buf.extend(a[oa..oa + n].iter().map(|&x| f(x, y)));
                        }
                        (0, 1) => {
                            let x = a[oa];
                            buf.extend(b[ob..ob + n].iter().map(|&y| f(x, y)));
                        }
                        _ => buf.extend((0..n).map(|i| f(a[oa + i * ia], b[ob + i * ib]))),
                    },
                )
            },
        );
        Tensor::from_parts(buf, out)
    }

    /// Elementwise `self + other` with broadcasting.
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    #[track_caller]
    pub fn add(&self, other: &Tensor<T>) -> Tensor<T> {
        self.zip_broadcast(other, "add", |a, b| a + b)
    }

    /// Elementwise `self − other` with broadcasting.
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    #[track_caller]
    pub fn sub(&self, other: &Tensor<T>) -> Tensor<T> {
        self.zip_broadcast(other, "sub", |a, b| a - b)
    }

    /// Elementwise `self · other` with broadcasting.
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    #[track_caller]
    pub fn mul(&self, other: &Tensor<T>) -> Tensor<T> {
        self.zip_broadcast(other, "mul", |a, b| a * b)
    }

    /// Elementwise `self / other` with broadcasting.
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    #[track_caller]
    pub fn div(&self, other: &Tensor<T>) -> Tensor<T> {
        self.zip_broadcast(other, "div", |a, b| a / b)
    }

    /// `self · s` for a scalar `s`.
    pub fn scale(&self, s: T) -> Tensor<T> {
        self.map(move |x| x * s)
    }

    /// `self + s` for a scalar `s`.
    pub fn add_scalar(&self, s: T) -> Tensor<T> {
        self.map(move |x| x + s)
    }

    /// Adds `other` into `self` in place when this tensor owns its buffer, otherwise allocates.
    /// Shapes must match exactly. This is how the backward sweep accumulates fan-out.
    #[track_caller]
    pub(crate) fn accumulate(mut self, other: &Tensor<T>) -> Tensor<T> {
        assert!(
            self.shape == other.shape,
            "accumulate: gradient shapes {:?} and {:?} differ",
            self.shape(),
            other.shape()
        );
        if let Some(d) = self.data_mut() {
            // Inside the dispatch, or this fan-out sum (every residual block's skip) runs as SSE2.
            dispatch(
                #[inline(always)]
                || {
                    for (x, &y) in d.iter_mut().zip(other.data.iter()) {
                        *x += y;
                    }
                },
            );
            return self;
        }
        self.zip_map(other, |a, b| a + b)
    }

    /// Returns the same data under a new shape with the same number of elements.
    ///
    /// # Panics
    /// If the element counts differ.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Tensor<T> {
        assert!(
            super::checked_numel::<T>(shape) == Some(self.numel()),
            "reshape: cannot reshape {:?} ({} elements) to {:?}",
            self.shape(),
            self.numel(),
            shape
        );
        Tensor {
            data: self.data.clone(),
            shape: Shape::from_slice(shape),
        }
    }

    /// Repeats this tensor along broadcast axes to `shape` (NumPy rules).
    ///
    /// # Panics
    /// If this tensor's shape does not broadcast to `shape`.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor<T> {
        let ok = self.ndim() <= shape.len()
            && self
                .shape
                .iter()
                .rev()
                .zip(shape.iter().rev())
                .all(|(&a, &b)| a == b || a == 1);
        assert!(
            ok,
            "broadcast_to: shape {:?} cannot be broadcast to {:?}",
            self.shape(),
            shape
        );
        if self.shape() == shape {
            return self.clone();
        }
        let n = super::numel_of::<T>("broadcast_to", shape);
        if self.numel() == 1 {
            return Tensor::full(shape, self.data[0]);
        }
        let s = broadcast_strides(&self.shape, shape);
        let mut buf = super::pool::with_capacity(n);
        let src = &self.data[..];
        for_each_row(shape, [&s], |_, [oi], [is], n| {
            if is == 1 {
                buf.extend_from_slice(&src[oi..oi + n]);
            } else {
                buf.extend(std::iter::repeat_n(src[oi], n));
            }
        });
        Tensor::from_parts(buf, Shape::from_slice(shape))
    }

    /// Sums over the axes along which `shape` was broadcast to give this tensor's shape: the
    /// adjoint of [`Tensor::broadcast_to`], and how every broadcasting op's backward reduces.
    ///
    /// # Panics
    /// If `shape` does not broadcast to this tensor's shape.
    #[track_caller]
    pub fn sum_to(&self, shape: &[usize]) -> Tensor<T> {
        if self.shape() == shape {
            return self.clone();
        }
        let ok = shape.len() <= self.ndim()
            && shape
                .iter()
                .rev()
                .zip(self.shape.iter().rev())
                .all(|(&a, &b)| a == b || a == 1);
        assert!(
            ok,
            "sum_to: shape {:?} cannot be reduced to {:?}",
            self.shape(),
            shape
        );
        let s = broadcast_strides(shape, &self.shape);
        let mut acc = filled(shape.iter().product(), T::zero());
        let src = &self.data[..];
        dispatch(
            #[inline(always)]
            || {
                for_each_row(
                    &self.shape,
                    [&s],
                    #[inline(always)]
                    |o, [oi], [is], n| {
                        let row = &src[o..o + n];
                        if is == 1 {
                            for (a, &x) in acc[oi..oi + n].iter_mut().zip(row) {
                                *a += x;
                            }
                        } else {
                            // In lanes: one running sum does not vectorise (a [2048, 2048] →
                            // [2048, 1] reduction took 4.0 ms, now 0.7, PyTorch's 0.6).
                            acc[oi] += if n < SHORT_ROW {
                                row.iter().copied().sum::<T>()
                            } else {
                                lane_sum(row)
                            };
                        }
                    },
                )
            },
        );
        Tensor::from_parts(acc, Shape::from_slice(shape))
    }

    /// Sum of all elements, as a scalar (shape `[]`) tensor. Summed in sixteen lanes inside the
    /// run-time dispatch: one running sum cannot vectorise (859 vs 55 µs per million f32
    /// elements here); the lanes round differently, usually better.
    pub fn sum_all(&self) -> Tensor<T> {
        let x = &self.data[..];
        Tensor::scalar(dispatch(
            #[inline(always)]
            move || lane_sum(x),
        ))
    }

    /// Sum over one axis; with `keepdim` the axis stays with extent 1.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn sum_axis(&self, axis: usize, keepdim: bool) -> Tensor<T> {
        check_axis("sum", self.shape(), axis);
        let (outer, n, inner) = split_at_axis(&self.shape, axis);
        let mut out = filled(outer * inner, T::zero());
        let (src, dst) = (&self.data[..], &mut out[..]);
        dispatch(
            #[inline(always)]
            move || {
                if dst.is_empty() {
                    return;
                }
                if inner == 1 {
                    // The last axis: each output is one contiguous row.
                    for (d, row) in dst.iter_mut().zip(src.chunks_exact(n.max(1))) {
                        *d = lane_sum(row);
                    }
                    return;
                }
                // Rows of `inner` values added onto the output row: vectorised over `inner`.
                for (o, dst) in dst.chunks_exact_mut(inner).enumerate() {
                    for k in 0..n {
                        let row = &src[(o * n + k) * inner..(o * n + k + 1) * inner];
                        for (d, &x) in dst.iter_mut().zip(row) {
                            *d += x;
                        }
                    }
                }
            },
        );
        Tensor::from_parts(out, reduced_shape(&self.shape, axis, keepdim))
    }

    /// Largest element, as a scalar tensor. NaN propagates.
    ///
    /// # Panics
    /// If the tensor is empty.
    #[track_caller]
    pub fn max_all(&self) -> Tensor<T> {
        assert!(
            self.numel() > 0,
            "max: empty tensor of shape {:?}",
            self.shape()
        );
        Tensor::scalar(self.data.iter().copied().fold(T::neg_infinity(), nan_max))
    }

    /// Largest element along one axis and the index of its first occurrence.
    /// NaN propagates (and its index is returned).
    ///
    /// # Panics
    /// If `axis` is out of range or has extent 0.
    #[track_caller]
    pub fn max_axis(&self, axis: usize, keepdim: bool) -> (Tensor<T>, Vec<usize>) {
        check_axis("max", self.shape(), axis);
        let (outer, n, inner) = split_at_axis(&self.shape, axis);
        assert!(
            n > 0,
            "max: axis {axis} of shape {:?} is empty",
            self.shape()
        );
        let mut best = filled(outer * inner, T::neg_infinity());
        let mut arg = vec![0usize; outer * inner];
        if inner == 1 {
            // The last axis: each row's maximum in lanes, then the first place it occurs. One
            // branchy pass tracking the index took 8.8 ms on [2048, 2048] f32 (PyTorch 5.7).
            let rows = self.data.chunks_exact(n);
            dispatch(
                #[inline(always)]
                || {
                    for ((row, b), a) in rows.zip(best.iter_mut()).zip(arg.iter_mut()) {
                        (*b, *a) = row_max_arg(row);
                    }
                },
            );
            return (
                Tensor::from_parts(best, reduced_shape(&self.shape, axis, keepdim)),
                arg,
            );
        }
        for o in 0..outer {
            for k in 0..n {
                let src = &self.data[(o * n + k) * inner..(o * n + k + 1) * inner];
                for (i, &x) in src.iter().enumerate() {
                    let b = &mut best[o * inner + i];
                    if (x > *b || x.is_nan()) && !b.is_nan() || k == 0 {
                        *b = x;
                        arg[o * inner + i] = k;
                    }
                }
            }
        }
        (
            Tensor::from_parts(best, reduced_shape(&self.shape, axis, keepdim)),
            arg,
        )
    }

    /// Swaps two axes, copying into a contiguous result.
    ///
    /// # Panics
    /// If either axis is out of range.
    #[track_caller]
    pub fn transpose(&self, a0: usize, a1: usize) -> Tensor<T> {
        let nd = self.ndim();
        assert!(
            a0 < nd && a1 < nd,
            "transpose: axes ({a0}, {a1}) out of range for shape {:?}",
            self.shape()
        );
        let mut perm: Shape = (0..nd).collect();
        perm.swap(a0, a1);
        self.permute(&perm)
    }

    /// Reorders the axes: axis `i` of the result is axis `perm[i]` of `self`.
    ///
    /// # Panics
    /// If `perm` is not a permutation of `0..ndim`.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor<T> {
        let nd = self.ndim();
        let mut seen = vec![false; nd];
        let valid = perm.len() == nd
            && perm
                .iter()
                .all(|&p| p < nd && !std::mem::replace(&mut seen[p], true));
        assert!(
            valid,
            "permute: {perm:?} is not a permutation of the axes of {:?}",
            self.shape()
        );
        let in_strides = broadcast_strides(&self.shape, &self.shape);
        let out_shape: Shape = perm.iter().map(|&p| self.shape[p]).collect();
        let strides: Shape = perm.iter().map(|&p| in_strides[p]).collect();
        let src = &self.data[..];
        // The input's contiguous axis, if it moves away from the end: then each output row
        // reads one value per input row, and going down a column of a large matrix misses the
        // cache on every read (rows a multiple of 4 KiB apart also share one cache set), so the
        // copy goes through square tiles instead.
        let moved = perm.iter().position(|&p| p + 1 == nd);
        if let Some(j) = moved.filter(|&j| j + 1 < nd && self.shape[nd - 1] > 1) {
            let buf = filled_by(self.numel(), |dst| {
                permute_tiled(src, &out_shape, &strides, j, dst)
            });
            return Tensor::from_parts(buf, out_shape);
        }
        let mut buf = super::pool::with_capacity(self.numel());
        for_each_row(&out_shape, [&strides], |_, [oi], [is], n| {
            if is == 1 {
                buf.extend_from_slice(&src[oi..oi + n]);
            } else {
                buf.extend((0..n).map(|i| src[oi + i * is]));
            }
        });
        Tensor::from_parts(buf, out_shape)
    }

    /// Joins tensors along `axis`; all other extents must agree.
    ///
    /// # Panics
    /// If `parts` is empty, `axis` is out of range, or the other extents differ.
    #[track_caller]
    pub fn concat(parts: &[&Tensor<T>], axis: usize) -> Tensor<T> {
        assert!(!parts.is_empty(), "concat: no tensors given");
        let first = parts[0].shape();
        check_axis("concat", first, axis);
        for p in parts {
            let same = p.ndim() == first.len()
                && p.shape()
                    .iter()
                    .zip(first)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            assert!(
                same,
                "concat: shapes {:?} and {:?} differ outside axis {axis}",
                first,
                p.shape()
            );
        }
        let total = parts
            .iter()
            .try_fold(0usize, |acc, p| acc.checked_add(p.shape()[axis]));
        let mut shape: Shape = first.into();
        shape[axis] =
            total.unwrap_or_else(|| panic!("concat: the extents along axis {axis} overflow"));
        let n = super::numel_of::<T>("concat", &shape);
        let (outer, _, inner) = split_at_axis(&shape, axis);
        let mut buf = super::pool::with_capacity(n);
        for o in 0..outer {
            for p in parts {
                let block = p.shape()[axis] * inner;
                buf.extend_from_slice(&p.data[o * block..(o + 1) * block]);
            }
        }
        Tensor::from_parts(buf, shape)
    }

    /// The slice `start..start + len` along `axis`.
    ///
    /// # Panics
    /// If the axis or the range is out of bounds.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Tensor<T> {
        check_axis("narrow", self.shape(), axis);
        assert!(
            start
                .checked_add(len)
                .is_some_and(|end| end <= self.shape[axis]),
            "narrow: range {start}..{start}+{len} exceeds axis {axis} of shape {:?}",
            self.shape()
        );
        let (outer, n, inner) = split_at_axis(&self.shape, axis);
        let mut buf = super::pool::with_capacity(outer * len * inner);
        for o in 0..outer {
            buf.extend_from_slice(
                &self.data[(o * n + start) * inner..(o * n + start + len) * inner],
            );
        }
        let mut shape = Shape::from_slice(&self.shape);
        shape[axis] = len;
        Tensor::from_parts(buf, shape)
    }

    /// Rows (slices along axis 0) picked by index: `out[i] = self[indices[i]]`.
    ///
    /// # Panics
    /// If the tensor is 0-dimensional or an index is out of range.
    #[track_caller]
    pub fn gather_rows(&self, indices: &[usize]) -> Tensor<T> {
        assert!(self.ndim() >= 1, "gather: cannot index rows of a scalar");
        let rows = self.shape[0];
        let row: usize = self.shape[1..].iter().product();
        let mut buf = super::pool::with_capacity(indices.len() * row);
        for &i in indices {
            assert!(
                i < rows,
                "gather: index {i} out of range for shape {:?}",
                self.shape()
            );
            buf.extend_from_slice(&self.data[i * row..(i + 1) * row]);
        }
        let mut shape = Shape::from_slice(&self.shape);
        shape[0] = indices.len();
        Tensor::from_parts(buf, shape)
    }

    /// The adjoint of [`Tensor::gather_rows`]: a tensor with `rows` rows, zero except that row
    /// `indices[i]` accumulates `self[i]`.
    ///
    /// # Panics
    /// If `indices.len()` differs from the number of rows or an index is `>= rows`.
    #[track_caller]
    pub fn scatter_add_rows(&self, indices: &[usize], rows: usize) -> Tensor<T> {
        assert!(
            self.ndim() >= 1 && self.shape[0] == indices.len(),
            "scatter_add: {} indices for shape {:?}",
            indices.len(),
            self.shape()
        );
        let row: usize = self.shape[1..].iter().product();
        let mut out_shape = Shape::from_slice(&self.shape);
        out_shape[0] = rows;
        let mut buf = filled(super::numel_of::<T>("scatter_add", &out_shape), T::zero());
        for (k, &i) in indices.iter().enumerate() {
            assert!(
                i < rows,
                "scatter_add: index {i} out of range for {rows} rows"
            );
            for (d, &x) in buf[i * row..(i + 1) * row]
                .iter_mut()
                .zip(&self.data[k * row..(k + 1) * row])
            {
                *d += x;
            }
        }
        let mut shape = Shape::from_slice(&self.shape);
        shape[0] = rows;
        Tensor::from_parts(buf, shape)
    }

    /// Softmax along `axis`: `e^(x − m) / Σ e^(x − m)` with `m` the maximum along the axis, so
    /// the result is invariant to a common shift of the logits (see [`log_softmax`](Self::log_softmax)
    /// for why and how, and for non-finite inputs).
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn softmax(&self, axis: usize) -> Tensor<T> {
        self.softmax_impl(axis, false)
    }

    /// log(softmax) along `axis`, computed as PyTorch does: `(x − m) − log Σ e^(x − m)`, `m`
    /// the maximum along the axis.
    ///
    /// Shift-invariant: `x − m` is exact for logits near each other however large they are
    /// (Sterbenz), and the log-sum-exp is never added back to `m` (`x − (m + log Σ)` rounds
    /// `log Σ` to the spacing of `m`: `log_softmax([1e7; 3])` came out as −1, not −1.0986, in
    /// f32). The sum of exponentials is accumulated in sixteen f64 lanes, so a long row keeps its
    /// digits (a million f32 logits used to sum to 1.00068 after softmax).
    ///
    /// Non-finite inputs follow PyTorch 2.15: an entry of −∞ gets probability 0 (log −∞) while
    /// the row has a finite maximum; a row holding NaN or +∞, or only −∞, is NaN throughout.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Tensor<T> {
        self.softmax_impl(axis, true)
    }

    #[track_caller]
    fn softmax_impl(&self, axis: usize, log: bool) -> Tensor<T> {
        check_axis(
            if log { "log_softmax" } else { "softmax" },
            self.shape(),
            axis,
        );
        let (outer, n, inner) = split_at_axis(&self.shape, axis);
        let src = &self.data[..];
        // Not zero-filled first: that pass was 12–15% of a large softmax. The rows (`n` long)
        // or the strided blocks (`n · inner`) cover the tensor, and both row functions write
        // every slot of theirs.
        let out = if inner == 1 {
            written_by_rows(
                outer,
                n,
                #[inline(always)]
                move |r, dst| {
                    let src = &src[r.start * n..r.end * n];
                    for (x, y) in src.chunks_exact(n).zip(dst.chunks_exact_mut(n)) {
                        softmax_row(x, y, log);
                    }
                },
            )
        } else {
            written_in_dispatch(
                self.numel(),
                #[inline(always)]
                move |dst| softmax_strided(src, dst, outer, n, inner, log),
            )
        };
        Tensor::from_parts(out, Shape::from_slice(&self.shape))
    }

    /// The backward of softmax (`log == false`) or log-softmax along `axis`, from the output
    /// `self` and its gradient `g`: `y ⊙ (g − Σ g⊙y)`, or `g − eʸ ⊙ Σ g`. One fused pass per
    /// row; the sums are accumulated in f64 lanes like the forward's.
    pub(crate) fn softmax_backward(&self, g: &Tensor<T>, axis: usize, log: bool) -> Tensor<T> {
        debug_assert_eq!(self.shape(), g.shape());
        let (outer, n, inner) = split_at_axis(&self.shape, axis);
        let (y, g) = (&self.data[..], &g.data[..]);
        // The rows (`n` long) or blocks (`n · inner`) cover the tensor, and both row functions
        // write every slot of theirs.
        let out = if inner == 1 {
            written_by_rows(
                outer,
                n,
                #[inline(always)]
                move |r, dst| {
                    let rows = r.start * n..r.end * n;
                    let (y, g) = (&y[rows.clone()], &g[rows]);
                    for ((y, g), d) in y
                        .chunks_exact(n)
                        .zip(g.chunks_exact(n))
                        .zip(dst.chunks_exact_mut(n))
                    {
                        softmax_backward_row(y, g, d, log);
                    }
                },
            )
        } else {
            written_in_dispatch(
                self.numel(),
                #[inline(always)]
                move |dst| softmax_backward_strided(y, g, dst, outer, n, inner, log),
            )
        };
        Tensor::from_parts(out, Shape::from_slice(&self.shape))
    }

    /// The softmax cross-entropy of logits `self` (`[N, C]`, targets already checked) against
    /// class indices: `Σᵢ −log_softmax(zᵢ)[tᵢ]`, divided by `N` when `mean`. Each term is
    /// rounded like PyTorch's log-softmax entry, `(z − m) − log Σ e^(z − m)`; the terms are
    /// added in f64.
    pub(crate) fn cross_entropy_value(&self, targets: &[usize], mean: bool) -> T {
        let (n, c) = (self.shape[0], self.shape[1]);
        let z = &self.data[..];
        let total = dispatch(
            #[inline(always)]
            move || {
                let mut total = 0.0f64;
                if c > 0 {
                    for (row, &t) in z.chunks_exact(c).zip(targets) {
                        let m = row_max(row);
                        let lse: T = log_sum(exp_sum(row, m));
                        total -= ((row[t] - m) - lse).widen();
                    }
                }
                total
            },
        );
        T::of(if mean { total / n as f64 } else { total })
    }

    /// The gradient of [`cross_entropy_value`](Self::cross_entropy_value) times `gs` (the
    /// incoming gradient with the reduction's scale): `gs·(softmax(z) − onehot(t))`, one pass
    /// per row, no one-hot tensor.
    pub(crate) fn cross_entropy_grad(&self, targets: &[usize], gs: T) -> Tensor<T> {
        let c = self.shape[1];
        let z = &self.data[..];
        // The rows of `c` cover the tensor, and `exp_store_sum` writes each slot of its row.
        let out = written_by_rows(
            self.shape[0],
            c,
            #[inline(always)]
            move |r, dst| {
                let (z, targets) = (&z[r.start * c..r.end * c], &targets[r]);
                for ((row, d), &t) in z.chunks_exact(c).zip(dst.chunks_exact_mut(c)).zip(targets) {
                    let m = row_max(row);
                    let (d, sum) = exp_store_sum(row, m, d);
                    let inv = T::of(1.0 / sum);
                    let scale = inv * gs;
                    for v in d.iter_mut() {
                        *v *= scale;
                    }
                    d[t] -= gs;
                }
            },
        );
        Tensor::from_parts(out, Shape::from_slice(&self.shape))
    }
}

// Softmax rows. The maximum skips NaN (a plain `>` vectorises; NaN's own way through is the
// sum: `NaN − m` is NaN, so the row's sum and then every entry are NaN, as in PyTorch). The
// shift is not special-cased for a non-finite maximum: `−∞ − (−∞)` and `∞ − ∞` are NaN, which
// is PyTorch's answer for rows of only −∞ and for rows holding +∞ (checked against 2.15).

/// The largest element of a row, NaN skipped; −∞ for an empty or all-NaN row.
#[inline(always)]
fn row_max<T: Element>(x: &[T]) -> T {
    let larger = |a: T, v: T| if v > a { v } else { a };
    if x.len() < SHORT_ROW {
        return x.iter().fold(T::neg_infinity(), |a, &v| larger(a, v));
    }
    super::simd::lanes(x, T::neg_infinity(), larger)
        .iter()
        .fold(T::neg_infinity(), |a, &v| larger(a, v))
}

/// Rows shorter than this take plain loops with one accumulator: the sixteen lanes cost more
/// to set up and fold than a short row takes (a [64, 10] cross-entropy step was 17% slower
/// with lanes everywhere), and one f64 accumulator over a few terms is as accurate.
const SHORT_ROW: usize = 32;

/// `log Σ e^(x − m)` from the sum `s`, in `T`: `log1p(s − 1)`. `s − 1` is exact (Sterbenz for
/// `s ≤ 2`), so a row dominated by its maximum keeps the relative accuracy of its tiny log-sum
/// (where `log` of `s` rounded to f32 would not), and the logarithm is `T`'s (cheaper than f64's
/// in f32). `s` is ≥ 1 (the maximum contributes e⁰ = 1 exactly) or NaN.
#[inline(always)]
fn log_sum<T: Element>(s: f64) -> T {
    T::of(s - 1.0).ln_1p()
}

/// `Σ e^(x − m)`, accumulated as in [`exp_store_sum`], the exponentials stored a stretch of
/// [`EXP_STRETCH`] at a time in a buffer on the stack.
#[inline(always)]
fn exp_sum<T: Element>(x: &[T], m: T) -> f64 {
    if x.len() < SHORT_ROW {
        return x.iter().map(|&v| (v - m).exp_fast().widen()).sum();
    }
    // A plain loop: a closure here (`map`) was not inlined into the dispatched body and ran
    // the exponentials without AVX2, 20 times slower.
    let mut buf = [MaybeUninit::<T>::uninit(); EXP_STRETCH];
    let mut s = 0.0;
    for c in x.chunks(EXP_STRETCH) {
        s += exp_store_sum(c, m, &mut buf[..c.len()]).1;
    }
    s
}

/// How many values [`exp_sum`] exponentiates into its stack buffer at once (1 KiB of f32).
const EXP_STRETCH: usize = 256;

/// How many values each of [`exp_store_sum`]'s sixteen lanes adds in `T` before widening the
/// lane's sum to f64: four, so a lane's `T` sum of terms in `[0, 1]` is off by at most three
/// roundings of `T` (2·10⁻⁷ in f32), however long the row. The exponentials stay in `T` (8 f32
/// to an AVX2 register); widening each one before adding (the earlier way) ran them 4 to a
/// register and spilled the f64 lanes to the stack: a [2048, 2048] f32 softmax took 8.3 ms
/// against PyTorch's 5.4.
const WIDEN_EVERY: usize = 4;

/// Writes `e^(x − m)` into `out` (as long as `x`), and returns it, now initialised, with their
/// sum: sixteen lanes, each adding
/// [`WIDEN_EVERY`] terms in `T` before it widens them onto an f64 total, so the sum of a long
/// row keeps its digits (a million f32 logits once summed to 1.00068 after softmax, in one
/// `T` accumulator).
#[inline(always)]
fn exp_store_sum<'o, T: Element>(
    x: &[T],
    m: T,
    out: &'o mut [MaybeUninit<T>],
) -> (&'o mut [T], f64) {
    assert_eq!(x.len(), out.len(), "exp_store_sum: row and output differ");
    if x.len() < SHORT_ROW {
        let mut s = 0.0f64;
        for (o, &v) in out.iter_mut().zip(x) {
            let e = (v - m).exp_fast();
            o.write(e);
            s += e.widen();
        }
        // SAFETY: `out` is as long as `x`, and the loop wrote each of its slots.
        return (unsafe { assume_init(out) }, s);
    }
    const BLOCK: usize = 16 * WIDEN_EVERY;
    let mut wide = [0.0f64; 16];
    let mut xs = x.chunks_exact(BLOCK);
    let mut os = out.chunks_exact_mut(BLOCK);
    for (xb, ob) in (&mut xs).zip(&mut os) {
        let mut acc = [T::zero(); 16];
        for (c, o) in xb.chunks_exact(16).zip(ob.chunks_exact_mut(16)) {
            for ((a, d), &v) in acc.iter_mut().zip(o).zip(c) {
                let e = (v - m).exp_fast();
                d.write(e);
                *a += e;
            }
        }
        for (w, &a) in wide.iter_mut().zip(&acc) {
            *w += a.widen();
        }
    }
    for (i, (d, &v)) in os
        .into_remainder()
        .iter_mut()
        .zip(xs.remainder())
        .enumerate()
    {
        let e = (v - m).exp_fast();
        d.write(e);
        wide[i % 16] += e.widen();
    }
    // SAFETY: `out` is as long as `x`; the blocks and then the remainder wrote every slot.
    (unsafe { assume_init(out) }, wide.iter().sum())
}

/// `out`, every slot of which has been written, as values.
///
/// # Safety
/// Each element of `out` must be initialised.
#[inline(always)]
unsafe fn assume_init<T>(out: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller vouches for every element.
    unsafe { &mut *(out as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Softmax or log-softmax of one contiguous row into `out`.
#[inline(always)]
fn softmax_row<T: Element>(x: &[T], out: &mut [MaybeUninit<T>], log: bool) {
    let m = row_max(x);
    if log {
        let lse: T = log_sum(exp_sum(x, m));
        for (o, &v) in out.iter_mut().zip(x) {
            o.write((v - m) - lse);
        }
    } else {
        let (out, sum) = exp_store_sum(x, m, out);
        // The sum is ≥ 1 (the maximum contributes e⁰) or NaN, so its reciprocal is finite.
        let inv = T::of(1.0 / sum);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// Softmax or log-softmax along an axis that is not the last: `outer` blocks of `n` rows of
/// `inner` values, reduced across the rows, vectorised along them.
#[inline(always)]
fn softmax_strided<T: Element>(
    src: &[T],
    dst: &mut [MaybeUninit<T>],
    outer: usize,
    n: usize,
    inner: usize,
    log: bool,
) {
    let mut m = vec![T::neg_infinity(); inner];
    let mut s = vec![0.0f64; inner];
    let mut k_t = vec![T::zero(); inner];
    let block = n * inner;
    for o in 0..outer {
        let (x, y) = (
            &src[o * block..(o + 1) * block],
            &mut dst[o * block..(o + 1) * block],
        );
        m.fill(T::neg_infinity());
        for row in x.chunks_exact(inner) {
            for (mi, &v) in m.iter_mut().zip(row) {
                if v > *mi {
                    *mi = v;
                }
            }
        }
        s.fill(0.0);
        for (row, out) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
            for (((si, o), &v), &mi) in s.iter_mut().zip(out.iter_mut()).zip(row).zip(&m) {
                let e = (v - mi).exp_fast();
                o.write(e);
                *si += e.widen();
            }
        }
        // SAFETY: the rows of `inner` values cover the block (`n · inner` long), and the loop
        // above wrote each of their slots.
        let y = unsafe { assume_init(y) };
        if log {
            for (k, &si) in k_t.iter_mut().zip(&s) {
                *k = log_sum(si);
            }
            for (row, out) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
                for (((o, &v), &mi), &l) in out.iter_mut().zip(row).zip(&m).zip(&k_t) {
                    *o = (v - mi) - l;
                }
            }
        } else {
            for (k, &si) in k_t.iter_mut().zip(&s) {
                *k = T::of(1.0 / si);
            }
            for out in y.chunks_exact_mut(inner) {
                for (o, &inv) in out.iter_mut().zip(&k_t) {
                    *o *= inv;
                }
            }
        }
    }
}

/// One contiguous row of [`Tensor::softmax_backward`].
#[inline(always)]
fn softmax_backward_row<T: Element>(y: &[T], g: &[T], out: &mut [MaybeUninit<T>], log: bool) {
    let short = y.len() < SHORT_ROW;
    if log {
        let sg = T::of(if short {
            g.iter().map(|v| v.widen()).sum()
        } else {
            super::simd::lanes(g, 0.0f64, |a, v| a + v.widen())
                .iter()
                .sum()
        });
        for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
            o.write(g - y.exp_fast() * sg);
        }
    } else if short {
        let dot = T::of(y.iter().zip(g).map(|(y, g)| y.widen() * g.widen()).sum());
        for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
            o.write(y * (g - dot));
        }
    } else {
        let mut acc = [0.0f64; 16];
        let mut ys = y.chunks_exact(16);
        let mut gs = g.chunks_exact(16);
        for (yc, gc) in (&mut ys).zip(&mut gs) {
            for ((a, &y), &g) in acc.iter_mut().zip(yc).zip(gc) {
                *a += y.widen() * g.widen();
            }
        }
        for ((a, &y), &g) in acc.iter_mut().zip(ys.remainder()).zip(gs.remainder()) {
            *a += y.widen() * g.widen();
        }
        let dot = T::of(acc.iter().sum());
        for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
            o.write(y * (g - dot));
        }
    }
}

/// [`Tensor::softmax_backward`] along an axis that is not the last (see [`softmax_strided`]).
#[inline(always)]
fn softmax_backward_strided<T: Element>(
    y: &[T],
    g: &[T],
    dst: &mut [MaybeUninit<T>],
    outer: usize,
    n: usize,
    inner: usize,
    log: bool,
) {
    let mut acc = vec![0.0f64; inner];
    let mut k_t = vec![T::zero(); inner];
    let block = n * inner;
    for o in 0..outer {
        let r = o * block..(o + 1) * block;
        let (y, g, d) = (&y[r.clone()], &g[r.clone()], &mut dst[r]);
        acc.fill(0.0);
        for (yr, gr) in y.chunks_exact(inner).zip(g.chunks_exact(inner)) {
            for ((a, &yv), &gv) in acc.iter_mut().zip(yr).zip(gr) {
                *a += if log {
                    gv.widen()
                } else {
                    yv.widen() * gv.widen()
                };
            }
        }
        for (k, &a) in k_t.iter_mut().zip(&acc) {
            *k = T::of(a);
        }
        for ((yr, gr), dr) in y
            .chunks_exact(inner)
            .zip(g.chunks_exact(inner))
            .zip(d.chunks_exact_mut(inner))
        {
            for (((dv, &yv), &gv), &k) in dr.iter_mut().zip(yr).zip(gr).zip(&k_t) {
                dv.write(if log {
                    gv - yv.exp_fast() * k
                } else {
                    yv * (gv - k)
                });
            }
        }
    }
}

/// The largest element of a non-empty row and the index of its first occurrence; the first
/// NaN and its index if there is one. The maximum is found in sixteen lanes (a NaN, once in a
/// lane, stays: `nan_max`), then the row is searched sixteen values at a time.
#[inline(always)]
fn row_max_arg<T: Element>(row: &[T]) -> (T, usize) {
    let m = super::simd::lanes(row, T::neg_infinity(), nan_max)
        .into_iter()
        .fold(T::neg_infinity(), nan_max);
    let hit = |v: T| if m.is_nan() { v.is_nan() } else { v == m };
    for (i, c) in row.chunks(16).enumerate() {
        if c.iter().fold(false, |f, &v| f | hit(v)) {
            let at = i * 16
                + c.iter()
                    .position(|&v| hit(v))
                    .expect("a value here matched");
            // The element itself: of −0 and +0 (equal) the first one's sign, as a scan gives.
            return (row[at], at);
        }
    }
    unreachable!("the maximum {m:?} of a non-empty row occurs in it")
}

/// The larger of two values, NaN if either is. Once the accumulator `a` is NaN it is kept, so a
/// fold yields NaN whenever any element is NaN (it used to hand back `b` there, so
/// `max_all([1, NaN, 2])` returned 2: the NaN was dropped by the next element).
#[inline]
fn nan_max<T: Element>(a: T, b: T) -> T {
    if a.is_nan() {
        a
    } else if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

#[track_caller]
fn check_axis(op: &str, shape: &[usize], axis: usize) {
    assert!(
        axis < shape.len(),
        "{op}: axis {axis} out of range for shape {shape:?}"
    );
}

pub(crate) fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Shape {
    let mut s: Shape = shape.into();
    if keepdim {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Sums against a plain f64 loop, over every axis of a 3-D tensor whose extents leave
        /// every remainder of the sixteen lanes (and include empty axes).
        #[test]
        fn sums_match_a_plain_loop(
            (d0, d1, d2) in (0usize..4, 0usize..40, 0usize..20),
            seed in 0u64..1000,
        ) {
            let n = d0 * d1 * d2;
            let v: Vec<f32> = (0..n)
                .map(|i| (((i as u64 * 2654435761 + seed) % 2001) as f32 - 1000.0) / 7.0)
                .collect();
            let t = Tensor::from_vec(v.clone(), &[d0, d1, d2]).unwrap();
            let plain: f64 = v.iter().map(|&x| f64::from(x)).sum();
            let tol = |want: f64| 1e-5 * (1.0 + want.abs() + n as f64);
            let got = f64::from(t.sum_all().item());
            prop_assert!((got - plain).abs() <= tol(plain), "sum_all {got} vs {plain}");
            let dims = [d0, d1, d2];
            for axis in 0..3 {
                let s = t.sum_axis(axis, false);
                for o in 0..dims[..axis].iter().product::<usize>() {
                    for i in 0..dims[axis + 1..].iter().product::<usize>() {
                        let inner: usize = dims[axis + 1..].iter().product();
                        let want: f64 = (0..dims[axis])
                            .map(|k| f64::from(v[(o * dims[axis] + k) * inner + i]))
                            .sum();
                        let got = f64::from(s.data()[o * inner + i]);
                        prop_assert!((got - want).abs() <= tol(want), "axis {axis}: {got} vs {want}");
                    }
                }
            }
        }
    }

    /// Tensors large enough to be split over threads: every element is computed exactly once,
    /// from its own inputs (checked against a plain loop, so a chunk written twice, skipped or
    /// offset would show).
    #[test]
    fn large_elementwise_ops_split_over_threads_cover_every_element() {
        let n = crate::tensor::parallel::PARALLEL_MIN_ELEMS + 77;
        crate::tensor::set_num_threads(2);
        let x = Tensor::<f64>::from_fn(&[n], |i| (i as f64 * 0.37).sin());
        let y = Tensor::<f64>::from_fn(&[n], |i| (i as f64 * 0.11).cos());
        let z = Tensor::<f64>::from_fn(&[n], |i| i as f64);
        let m = x.map_par(|v| 2.0 * v + 1.0);
        let t = x.zip3_map(&y, &z, |a, b, c| a * b - c);
        for i in 0..n {
            let (a, b, c) = (x.data()[i], y.data()[i], z.data()[i]);
            assert!(
                (m.data()[i] - (2.0 * a + 1.0)).abs() < 1e-12,
                "map_par at {i}"
            );
            assert!((t.data()[i] - (a * b - c)).abs() < 1e-9, "zip3_map at {i}");
        }
    }

    use super::*;

    fn t(data: &[f64], shape: &[usize]) -> Tensor<f64> {
        Tensor::from_slice(data, shape).unwrap()
    }

    #[test]
    fn broadcast_add_and_sum_to_are_adjoint() {
        let a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let b = t(&[10., 20.], &[2, 1]);
        let c = a.add(&b);
        assert_eq!(c.data(), &[11., 12., 13., 24., 25., 26.]);
        let g = Tensor::<f64>::ones(&[2, 3]).sum_to(&[2, 1]);
        assert_eq!(g.data(), &[3., 3.]);
        assert_eq!(
            Tensor::<f64>::ones(&[4, 2, 3]).sum_to(&[3]).data(),
            &[8., 8., 8.]
        );
    }

    #[test]
    fn permute_and_transpose() {
        let a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        assert_eq!(a.transpose(0, 1).data(), &[1., 4., 2., 5., 3., 6.]);
        let b = Tensor::<f64>::from_fn(&[2, 3, 4], |i| i as f64);
        let p = b.permute(&[2, 0, 1]);
        assert_eq!(p.shape(), &[4, 2, 3]);
        assert_eq!(p.get(&[3, 1, 2]), b.get(&[1, 2, 3]));
    }

    /// Every permutation of shapes that take both copy paths (the input's contiguous axis kept
    /// last, or moved and copied in tiles), with extents below, at and past a tile (16) and a
    /// block (256), and extents of 1, against the definition out[i] = in[i∘perm⁻¹] read with
    /// `get`. Values are distinct, so a misplaced or unwritten element fails.
    #[test]
    fn permute_matches_its_definition_on_every_path() {
        fn permutations(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut all = vec![];
            for p in permutations(n - 1) {
                for at in 0..n {
                    let mut q = p.clone();
                    q.insert(at, n - 1);
                    all.push(q);
                }
            }
            all
        }
        let shapes: [&[usize]; 8] = [
            &[17, 33],
            &[16, 16],
            &[300, 270],
            &[1, 40],
            &[40, 1],
            &[3, 1, 18, 35],
            &[2, 17, 5],
            &[5, 1, 1],
        ];
        for shape in shapes {
            let a = Tensor::<f64>::from_fn(shape, |i| i as f64);
            for perm in permutations(shape.len()) {
                let p = a.permute(&perm);
                let want: Vec<usize> = perm.iter().map(|&ax| shape[ax]).collect();
                assert_eq!(p.shape(), &want[..], "{shape:?} {perm:?}");
                let mut idx = vec![0; shape.len()];
                for (flat, &v) in p.data().iter().enumerate() {
                    let mut rest = flat;
                    for ax in (0..want.len()).rev() {
                        idx[perm[ax]] = rest % want[ax];
                        rest /= want[ax];
                    }
                    assert_eq!(v, a.get(&idx), "{shape:?} {perm:?} at {flat}");
                }
            }
        }
        // f32, whose tile is one cache line, through transpose.
        let b = Tensor::<f32>::from_fn(&[70, 19], |i| i as f32);
        let bt = b.transpose(0, 1);
        for i in 0..70 {
            for j in 0..19 {
                assert_eq!(bt.get(&[j, i]), b.get(&[i, j]));
            }
        }
    }

    #[test]
    fn max_axis_first_occurrence() {
        let a = t(&[1., 5., 5., 2., 0., 7.], &[2, 3]);
        let (m, arg) = a.max_axis(1, false);
        assert_eq!(m.data(), &[5., 7.]);
        assert_eq!(arg, vec![1, 2]);
    }

    /// `max_axis` along the last axis (lanes, then a search) and along the first (a scan per
    /// column) against a plain scan: the first maximum, ties, the first NaN, rows of only −∞,
    /// −0 before +0, rows shorter and longer than the 16 lanes, the maximum in the remainder.
    #[test]
    fn max_axis_matches_a_scan_on_either_axis() {
        fn scan(row: &[f32]) -> (f32, usize) {
            let mut best = (row[0], 0);
            for (i, &v) in row.iter().enumerate().skip(1) {
                if !best.0.is_nan() && (v > best.0 || v.is_nan()) {
                    best = (v, i);
                }
            }
            best
        }
        for n in [1usize, 3, 16, 17, 40, 100] {
            let rows = 9;
            let mut x: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 37 % 23) as f32) - 11.0)
                .collect();
            x[n - 1] = 50.0; // row 0: the maximum last (in the remainder when n % 16 != 0)
            if n > 2 {
                x[n + 1] = 50.0; // row 1: a tie, first one wins
                x[n + n - 1] = 50.0;
                x[2 * n + 2] = f32::NAN; // row 2: NaN wins, the first one
                x[2 * n + n - 1] = f32::NAN;
            }
            x[3 * n..4 * n].fill(f32::NEG_INFINITY); // row 3: only −∞
            x[4 * n..5 * n].fill(-1.0); // row 4: −0 before +0 as the maximum
            x[5 * n - 1] = 0.0;
            x[4 * n + n / 2] = -0.0;
            let a = Tensor::from_vec(x.clone(), &[rows, n]).unwrap();
            let (m, arg) = a.max_axis(1, false);
            let (mt, argt) = a.transpose(0, 1).max_axis(0, false);
            for r in 0..rows {
                let (v, i) = scan(&x[r * n..(r + 1) * n]);
                for (got, at, path) in [
                    (m.data()[r], arg[r], "last"),
                    (mt.data()[r], argt[r], "first"),
                ] {
                    assert_eq!(at, i, "n={n} row {r} ({path} axis)");
                    assert!(
                        got.to_bits() == v.to_bits() || (got.is_nan() && v.is_nan()),
                        "n={n} row {r} ({path} axis): {got} vs {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_extreme_logits_are_finite() {
        let a = t(&[1000., 0., -1000.], &[1, 3]);
        let ls = a.log_softmax(1);
        assert!(ls.all_finite());
        assert!((ls.data()[0]).abs() < 1e-12);
        assert!((ls.data()[1] + 1000.).abs() < 1e-9);
    }

    /// Softmax, log-softmax and the cross-entropy gradient on rows long enough for the blocked
    /// sums (and the stack stretches of `exp_sum`), with lengths that leave every kind of
    /// remainder (31 short, 32, 63, 64, 65, 257, 1000), in f32 and f64, against the definition
    /// computed here in f64 with `f64::exp`; and the backward of softmax and log-softmax. Along
    /// the last axis and along a middle one.
    #[test]
    fn softmax_family_on_long_rows_matches_the_definition() {
        fn check<T: Element>(tol: f64) {
            // (row length, rows, threads): short and long rows with every remainder, and two
            // large enough (2¹⁸ values) to be cut into blocks of rows over two threads.
            let mut cases: Vec<(usize, usize, usize)> =
                [31, 32, 63, 64, 65, 257, 1000].map(|n| (n, 3, 1)).to_vec();
            cases.extend([(1000, 300, 2), (257, 1100, 2)]);
            for (n, rows, threads) in cases {
                let before = crate::tensor::num_threads();
                crate::tensor::set_num_threads(threads);
                let x = Tensor::<T>::from_fn(&[rows, n], |i| {
                    T::of(((i * 7919 % 997) as f64) / 97.0 - 5.0)
                });
                let xs: Vec<f64> = x.data().iter().map(|v| v.widen()).collect();
                let targets: Vec<usize> = (0..rows).map(|r| (r * 13) % n).collect();
                let (sm, lsm) = (x.softmax(1), x.log_softmax(1));
                let grad = x.cross_entropy_grad(&targets, T::of(0.5));
                // The same values along axis 1 of [rows, n, 1, 2] with the last axis doubled.
                let x3 = Tensor::<T>::from_fn(&[rows, n, 2], |i| x.data()[i / 2]);
                let sm3 = x3.softmax(1);
                // Backward of each from an incoming gradient `up`, both axes.
                let up =
                    Tensor::<T>::from_fn(&[rows, n], |i| T::of(((i * 31 % 19) as f64) / 9.0 - 1.0));
                let up3 = Tensor::<T>::from_fn(&[rows, n, 2], |i| up.data()[i / 2]);
                let (dsm, dlsm) = (
                    sm.softmax_backward(&up, 1, false),
                    lsm.softmax_backward(&up, 1, true),
                );
                let (dsm3, dlsm3) = (
                    sm3.softmax_backward(&up3, 1, false),
                    x3.log_softmax(1).softmax_backward(&up3, 1, true),
                );
                crate::tensor::set_num_threads(before);
                for r in 0..rows {
                    let row = &xs[r * n..(r + 1) * n];
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = row.iter().map(|v| (v - m).exp()).sum();
                    let ups: Vec<f64> = up.data()[r * n..(r + 1) * n]
                        .iter()
                        .map(|v| v.widen())
                        .collect();
                    let up_sum: f64 = ups.iter().sum();
                    let up_dot: f64 = row
                        .iter()
                        .zip(&ups)
                        .map(|(v, u)| (v - m).exp() / sum * u)
                        .sum();
                    for (j, &v) in row.iter().enumerate() {
                        let p = (v - m).exp() / sum;
                        let lp = (v - m) - sum.ln();
                        let g = 0.5 * (p - if j == targets[r] { 1.0 } else { 0.0 });
                        let at = r * n + j;
                        let close = |got: T, want: f64| {
                            (got.widen() - want).abs() <= tol * (want.abs() + 1e-3)
                        };
                        assert!(close(sm.data()[at], p), "softmax n={n} ({r}, {j})");
                        assert!(close(lsm.data()[at], lp), "log_softmax n={n} ({r}, {j})");
                        assert!(
                            close(grad.data()[at], g),
                            "cross-entropy grad n={n} ({r}, {j})"
                        );
                        // y ⊙ (u − Σ u⊙y), and u − softmax ⊙ Σ u; terms cancel, so to the row's scale.
                        let (ds, dl) = (p * (ups[j] - up_dot), ups[j] - p * up_sum);
                        let near = |got: T, want: f64| (got.widen() - want).abs() <= tol * 10.0;
                        assert!(
                            near(dsm.data()[at], ds),
                            "softmax backward n={n} ({r}, {j})"
                        );
                        assert!(
                            near(dlsm.data()[at], dl),
                            "log_softmax backward n={n} ({r}, {j})"
                        );
                        for k in 0..2 {
                            assert!(
                                close(sm3.data()[2 * at + k], p),
                                "softmax axis 1 n={n} ({r}, {j}, {k})"
                            );
                            assert!(
                                near(dsm3.data()[2 * at + k], ds),
                                "softmax backward axis 1 n={n}"
                            );
                            assert!(
                                near(dlsm3.data()[2 * at + k], dl),
                                "log_softmax backward axis 1 n={n}"
                            );
                        }
                    }
                }
            }
        }
        check::<f32>(1e-5);
        check::<f64>(1e-12);
    }

    /// `sum_to` onto a column (each output the sum of one contiguous row, short rows summed
    /// directly, long ones in lanes) and onto a row, against plain f64 sums.
    #[test]
    fn sum_to_a_column_or_a_row_matches_plain_sums() {
        for n in [1usize, 5, 31, 32, 100, 1000] {
            let m = 7;
            let x = Tensor::<f32>::from_fn(&[m, n], |i| ((i * 31 % 17) as f32) / 8.0 - 1.0);
            let col = x.sum_to(&[m, 1]);
            let row = x.sum_to(&[n]);
            let v = |r: usize, c: usize| f64::from(x.data()[r * n + c]);
            for r in 0..m {
                let want: f64 = (0..n).map(|c| v(r, c)).sum();
                assert!(
                    (f64::from(col.data()[r]) - want).abs() < 1e-4,
                    "n={n} row {r}"
                );
            }
            for c in 0..n {
                let want: f64 = (0..m).map(|r| v(r, c)).sum();
                assert!(
                    (f64::from(row.data()[c]) - want).abs() < 1e-4,
                    "n={n} column {c}"
                );
            }
        }
    }

    #[test]
    fn concat_narrow_gather_scatter() {
        let a = t(&[1., 2., 3., 4.], &[2, 2]);
        let b = t(&[5., 6.], &[2, 1]);
        let c = Tensor::concat(&[&a, &b], 1);
        assert_eq!(c.data(), &[1., 2., 5., 3., 4., 6.]);
        assert_eq!(c.narrow(1, 1, 2).data(), &[2., 5., 4., 6.]);
        let g = a.gather_rows(&[1, 1, 0]);
        assert_eq!(g.data(), &[3., 4., 3., 4., 1., 2.]);
        assert_eq!(g.scatter_add_rows(&[1, 1, 0], 2).data(), &[1., 2., 6., 8.]);
    }

    #[test]
    #[should_panic(expected = "add: shapes [2, 3] and [4] cannot be broadcast together")]
    fn broadcast_mismatch_panics_with_both_shapes() {
        let _ = Tensor::<f32>::zeros(&[2, 3]).add(&Tensor::zeros(&[4]));
    }

    /// `map_par_easy` never takes `fast` on a block with an element past the limit (just past
    /// it, a NaN, an ∞) nor on the tail that makes no whole block, takes it on every block of
    /// an all-easy tensor, and gives up at most a run of blocks after hard ones. Here `fast`
    /// and `f` disagree on purpose (−x and x), so the output shows which ran where. Both
    /// types, tensors shorter than a block, and ones large enough to be split over threads.
    #[test]
    fn map_par_easy_takes_the_shortcut_on_whole_easy_blocks_only() {
        fn check<T: Element>() {
            let block = EASY_BLOCK_BYTES / std::mem::size_of::<T>();
            let limit = T::of(0.5);
            let marks = [T::of(0.5000001), T::of(-3.0), T::nan(), T::neg_infinity()];
            // Blocks 0..20 and 61 hard (a mark at a place varying with the block), the rest
            // easy; repeated every 72 blocks.
            let hard_at = |b: usize| {
                let b = b % 72;
                (b < 20 || b == 61).then_some(((b * 29) % block, marks[b % 4]))
            };
            let par_blocks = crate::tensor::parallel::PARALLEL_MIN_ELEMS / block;
            for (blocks, tail, mixed) in [(0, 5, false), (3, 0, false), (9, 7, false)]
                .into_iter()
                .chain([(72, 5, true), (73, 0, true), (par_blocks + 72, 9, true)])
            {
                crate::tensor::set_num_threads(2);
                let n = blocks * block + tail;
                // Never 0, so that −x and x differ.
                let small = |i: usize| T::of(((i * 37) % 100 + 1) as f64 / 101.0 - 0.5);
                let x = Tensor::<T>::from_fn(&[n], |i| match hard_at(i / block) {
                    Some((j, mark)) if mixed && i % block == j && i < blocks * block => mark,
                    _ => small(i),
                });
                let y = x.map_par_easy(limit, |v| -v, |v| v);
                let label = format!("{} n {n}", T::DTYPE);
                // Whether block b took `fast`; every element of it must agree (NaN says nothing).
                let took_fast = |b: usize| {
                    let pairs = (b * block..(b + 1) * block)
                        .map(|i| (x.data()[i], y.data()[i]))
                        .filter(|(_, y)| !y.is_nan());
                    let negated: Vec<bool> = pairs.map(|(x, y)| y == -x).collect();
                    assert!(
                        negated.iter().all(|&v| v == negated[0]),
                        "{label}: block {b} mixed"
                    );
                    negated[0]
                };
                for i in blocks * block..n {
                    assert!(y.data()[i] == x.data()[i], "{label}: tail at {i}");
                }
                for b in 0..blocks {
                    let fast = took_fast(b);
                    if hard_at(b).is_some() && mixed {
                        assert!(!fast, "{label}: hard block {b} took fast");
                    } else {
                        // After the long hard stretch (blocks 0..20) up to EASY_MAX_SKIP easy
                        // blocks may go untested; after the lone hard block 61, none.
                        let may_skip = mixed && b % 72 < 20 + 1 + EASY_MAX_SKIP;
                        assert!(fast || may_skip, "{label}: easy block {b} took f");
                    }
                }
            }
        }
        check::<f32>();
        check::<f64>();
    }
}
