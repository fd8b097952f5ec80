//! Batch normalisation over the rows of a `[N, C]` input, and layer normalisation over the
//! last axis (below it), each as one fused op.
//!
//! Why fused: composed from primitives, a training-mode BatchNorm records about a dozen nodes,
//! five of them full `[N, C]` passes forward and more backward; in the residual benchmark
//! (10 blocks, width 128, batch 128) that cost about as much as the blocks' matrix products.
//! The fused op makes two passes forward (statistics, then normalise) and two backward
//! (column sums, then the input gradient). Its rule is tested against the composition and
//! against finite differences; under `create_graph` it runs the composition itself, so second
//! derivatives are exact.

use super::{Algebra, BatchNormSaved, InputGrads, LayerNormSaved, Op};
use crate::tape::Var;
use crate::tensor::parallel::{self, SharedPtr};
use crate::tensor::simd::dispatch;
use crate::tensor::{pool, Element, Shape, Tensor};
use smallvec::{smallvec, SmallVec};
use std::mem::MaybeUninit;
use std::sync::Arc;

/// Column statistics of `[N, C]` data: mean and biased variance, accumulated in T over rows so
/// the inner loop runs along contiguous memory (vectorised over C). Inlined into the callers'
/// `dispatch`, so it is compiled for AVX-512 / AVX2.
#[inline(always)]
fn column_stats<T: Element>(x: &[T], n: usize, c: usize) -> (Vec<T>, Vec<T>) {
    let inv_n = T::one() / T::of(n as f64);
    let mut mean = pool::filled(c, T::zero());
    for row in x.chunks_exact(c) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m *= inv_n);
    // Two-pass variance: Σ(x − μ)² rather than Σx² − Nμ², which cancels badly.
    let mut var = pool::filled(c, T::zero());
    for row in x.chunks_exact(c) {
        for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    var.iter_mut().for_each(|s| *s *= inv_n);
    (mean, var)
}

// The row loops below take their outputs as `&mut` arguments and run inside `dispatch`: written
// with `push` and outside it, the forward ran scalar SSE2 and was 15% of the resbn step.

/// y = γ·(x − μ)·s + β, row by row, for `[N, C]` data with per-column μ, s, γ, β.
#[inline(always)]
fn normalise<T: Element>(
    y: &mut [MaybeUninit<T>],
    x: &[T],
    (mean, inv): (&[T], &[T]),
    (gamma, beta): (&[T], &[T]),
) {
    let c = mean.len();
    for (yrow, xrow) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        let (yrow, xrow) = (&mut yrow[..c], &xrow[..c]);
        let (mean, inv, gamma, beta) = (&mean[..c], &inv[..c], &gamma[..c], &beta[..c]);
        for j in 0..c {
            yrow[j].write((xrow[j] - mean[j]) * inv[j] * gamma[j] + beta[j]);
        }
    }
}

/// dβ += Σₙ g and dγ += Σₙ g·x̂ over the rows of `[N, C]` data, with x̂ = (x − μ)·s recomputed.
#[inline(always)]
fn column_sums<T: Element>(
    (db, dg): (&mut [T], &mut [T]),
    g: &[T],
    x: &[T],
    (mean, inv): (&[T], &[T]),
) {
    let c = db.len();
    let (dg, mean, inv) = (&mut dg[..c], &mean[..c], &inv[..c]);
    for (grow, xrow) in g.chunks_exact(c).zip(x.chunks_exact(c)) {
        let (grow, xrow) = (&grow[..c], &xrow[..c]);
        for j in 0..c {
            db[j] += grow[j];
            dg[j] += grow[j] * ((xrow[j] - mean[j]) * inv[j]);
        }
    }
}

/// dx = k·(N·g − dβ − x̂·dγ) row by row, with k = γ·s/N per column and x̂ = (x − μ)·s.
#[inline(always)]
fn input_grad<T: Element>(
    dx: &mut [MaybeUninit<T>],
    g: &[T],
    x: &[T],
    (mean, inv): (&[T], &[T]),
    (k, db, dg): (&[T], &[T], &[T]),
    nn: T,
) {
    let c = k.len();
    for ((drow, grow), xrow) in dx
        .chunks_exact_mut(c)
        .zip(g.chunks_exact(c))
        .zip(x.chunks_exact(c))
    {
        let (drow, grow, xrow) = (&mut drow[..c], &grow[..c], &xrow[..c]);
        let (k, db, dg) = (&k[..c], &db[..c], &dg[..c]);
        let (mean, inv) = (&mean[..c], &inv[..c]);
        for j in 0..c {
            let h = (xrow[j] - mean[j]) * inv[j];
            drow[j].write(k[j] * (nn * grow[j] - db[j] - h * dg[j]));
        }
    }
}

/// Backward of the fused op. With x̂ the normalised input and `s = 1/√(σ² + ε)`:
/// `dβ = Σₙ g`, `dγ = Σₙ g·x̂`, `dx = γ·s/N · (N·g − dβ − x̂·dγ)`.
pub(crate) fn backward<T: Element, A: Algebra<T>>(
    op: &Op<T>,
    x: &[&A],
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    let Op::BatchNorm(saved) = op else {
        unreachable!("norm::backward called with {}", op.name())
    };
    let BatchNormSaved { eps, mean, inv_std } = &**saved;
    let (xa, gamma) = (x[0], x[1]);
    let shape = xa.shape();
    let (n, c) = (shape[0], shape[1]);
    let [dx, dgamma, dbeta] = A::fork(
        || {
            let (gv, gam, xv) = (g.value(), gamma.value(), xa.value());
            let (gd, xd, mu, s) = (gv.data(), xv.data(), mean.data(), inv_std.data());
            // Per-channel vectors from the pool too: at width 128 an f64 one is 1 KiB, and
            // each such malloc made glibc consolidate its free lists (1.5% of resbn's step).
            let mut db = pool::filled(c, T::zero());
            let mut dg = pool::filled(c, T::zero());
            let nn = T::of(n as f64);
            let mut k = pool::Buffer::new(pool::with_capacity(c));
            k.extend((0..c).map(|j| gam.data()[j] * s[j] / nn));
            let mut dxv = pool::with_capacity(n * c);
            dispatch(
                #[inline(always)]
                || {
                    column_sums((&mut db, &mut dg), gd, xd, (mu, s));
                    input_grad(
                        &mut dxv.spare_capacity_mut()[..n * c],
                        gd,
                        xd,
                        (mu, s),
                        (&k, &db, &dg),
                        nn,
                    );
                },
            );
            // SAFETY: input_grad wrote the first n·c spare slots of `dxv`: it walks their n
            // rows of c (`chunks_exact_mut(c)`) in step with the n rows of `g` and `x`, both
            // [n, c], and writes every column j < c of each row.
            unsafe { dxv.set_len(n * c) };
            [
                Tensor::from_parts(dxv, shape.clone()),
                Tensor::from_parts(dg, [c].as_slice().into()),
                Tensor::from_parts(db, [c].as_slice().into()),
            ]
        },
        || {
            // The same formulas from primitives, recomputing x̂ from x so that the result is
            // differentiable in x as well as in g and γ.
            let inv_n = T::one() / T::of(n as f64);
            let mean = xa.sum_axis(0, true).scale(inv_n);
            let xc = xa.sub(&mean);
            let var = xc.mul(&xc).sum_axis(0, true).scale(inv_n);
            let s = var.add_scalar(*eps).powf(T::of(-0.5));
            let xh = xc.mul(&s);
            let db = g.sum_axis(0, false);
            let dg = g.mul(&xh).sum_axis(0, false);
            let row = |v: &A| v.reshape(&[1, c]);
            let inner = g
                .scale(T::of(n as f64))
                .sub(&row(&db))
                .sub(&xh.mul(&row(&dg)));
            let dx = inner.mul(&row(gamma).mul(&s)).scale(inv_n);
            [dx, dg, db]
        },
    );
    smallvec![
        needs[0].then_some(dx),
        needs[1].then_some(dgamma),
        needs[2].then_some(dbeta)
    ]
}

impl<'t, T: Element> Var<'t, T> {
    /// Batch normalisation of a `[N, C]` input with batch statistics, as in a training step:
    /// `y = γ·(x − μ)/√(σ² + ε) + β` with μ and the biased variance σ² taken over the N rows.
    /// `gamma` and `beta` have shape `[C]`. Returns `y` and the batch mean and biased variance
    /// (both `[C]`, for running estimates).
    ///
    /// Derivative, with `x̂ = (x − μ)/√(σ² + ε)`: `dβ = Σₙ g`, `dγ = Σₙ g·x̂`,
    /// `dx = γ/(N√(σ² + ε)) · (N·g − dβ − x̂·dγ)`.
    ///
    /// # Panics
    /// If `self` is not 2-D, `gamma`/`beta` are not `[C]`, or N < 2 (a variance needs two rows).
    #[track_caller]
    pub fn batch_norm(
        self,
        gamma: Var<'t, T>,
        beta: Var<'t, T>,
        eps: T,
    ) -> (Var<'t, T>, Tensor<T>, Tensor<T>) {
        self.same_tape("batch_norm", &gamma);
        self.same_tape("batch_norm", &beta);
        let shape = self.shape();
        assert!(
            shape.len() == 2,
            "batch_norm: expected a [N, C] input, got {shape:?}"
        );
        let (n, c) = (shape[0], shape[1]);
        let (gs, bs) = (gamma.shape(), beta.shape());
        assert!(
            gs.as_slice() == [c] && bs.as_slice() == [c],
            "batch_norm: input {shape:?} needs gamma and beta of shape [{c}], got {gs:?} and {bs:?}"
        );
        assert!(
            n > 1,
            "batch_norm: expected more than 1 value per channel, got input {shape:?}"
        );
        let xv = self.value();
        let (gv, bv) = (gamma.value(), beta.value());
        let (mean, var) = dispatch(
            #[inline(always)]
            || column_stats(xv.data(), n, c),
        );
        let mut inv = pool::with_capacity(c);
        inv.extend(var.iter().map(|&v| (v + eps).sqrt().recip()));
        let mut y = pool::with_capacity(n * c);
        dispatch(
            #[inline(always)]
            || {
                normalise(
                    &mut y.spare_capacity_mut()[..n * c],
                    xv.data(),
                    (&mean, &inv),
                    (gv.data(), bv.data()),
                )
            },
        );
        // SAFETY: normalise wrote the first n·c spare slots of `y`: it walks their n rows of
        // c (`chunks_exact_mut(c)`) in step with the n rows of the [n, c] input and writes
        // every column j < c of each row.
        unsafe { y.set_len(n * c) };
        // x̂ is not kept: backward recomputes it from the input, which the tape holds anyway.
        // One [N, C] buffer less per layer, and one output stream less here.
        let cs: crate::tensor::Shape = [c].as_slice().into();
        let mean = Tensor::from_parts(mean, cs.clone());
        let op = Op::BatchNorm(Arc::new(BatchNormSaved {
            eps,
            mean: mean.clone(),
            inv_std: Tensor::from_parts(inv, cs.clone()),
        }));
        let out = self.record(
            op,
            &[self.id, gamma.id, beta.id],
            Tensor::from_parts(y, shape),
        );
        (out, mean, Tensor::from_parts(var, cs))
    }
}

// --- Layer normalisation ------------------------------------------------------------------------
//
// Rows of the last axis, each normalised by its own statistics. Fused for the same reason as
// batch normalisation: composed from primitives, a LayerNorm recorded eight nodes and made
// seven full passes forward (a [4096, 1024] f32 forward took 10.4 ms against PyTorch's 2.6).
// Here the forward reads each row three times while it sits in L1 (mean, variance, output)
// and backward twice (two sums, then the input gradient with the column sums); rows are
// independent, so both are cut into blocks of rows over the threads.

/// How many terms each lane of a row sum adds in `T` before widening its
/// partial sum onto an f64 total: the row statistics keep their digits on long rows (as the
/// softmax sums do, `tensor::kernels::WIDEN_EVERY`) while the terms stay eight to an AVX2
/// register.
const LN_WIDEN: usize = 4;

/// How many independent sums a row sum keeps for elements of `T`: four AVX2 registers' worth,
/// 32 f32 or 16 f64. With sixteen f32 lanes (two registers) each add waited for the one before
/// it: a [4096, 1024] f32 forward took 3.7–4.1 ms, with 32 2.6–3.0 (PyTorch 2.8–3.2). The
/// backward's two sums at 32 f64 lanes spilled registers (10% slower than 16).
const fn ln_lanes<T>() -> usize {
    128 / std::mem::size_of::<T>()
}

/// `Σ term(x)` over a row: [`ln_lanes`] lanes of [`LN_WIDEN`] terms in `T`, widened onto f64.
#[inline(always)]
fn widened_sum<T: Element>(x: &[T], term: impl Fn(T) -> T) -> f64 {
    if ln_lanes::<T>() == 32 {
        widened_sum_in::<T, 32>(x, term)
    } else {
        widened_sum_in::<T, 16>(x, term)
    }
}

/// [`widened_sum`] with `L` lanes. The mean's lanes are compiled to full AVX2 registers; the
/// variance's `(x − μ)²` lanes, by perf, only two at a time (LLVM's SLP vectoriser; with 16
/// lanes too), so that pass costs about as much as the output pass: where the forward's next
/// gain is.
#[inline(always)]
fn widened_sum_in<T: Element, const L: usize>(x: &[T], term: impl Fn(T) -> T) -> f64 {
    let mut wide = [0.0f64; L];
    // Whole blocks of `LN_WIDEN` chunks of `L`, then what is left as one shorter block: its
    // whole chunks in lanes too (a row of 64 f32 is two), only the last few one at a time.
    let mut blocks = x.chunks_exact(L * LN_WIDEN);
    for b in &mut blocks {
        add_widened(&mut wide, lane_sums::<T, L>(b, &term));
    }
    let rest = blocks.remainder();
    add_widened(&mut wide, lane_sums::<T, L>(rest, &term));
    let tail: f64 = rest[rest.len() - rest.len() % L..]
        .iter()
        .map(|&v| term(v).widen())
        .sum();
    tree_sum(wide) + tail
}

/// `L` lanes of `Σ term` over the whole chunks of `L` in `x` (at most [`LN_WIDEN`] of them, so
/// each lane adds that many terms in `T`).
#[inline(always)]
fn lane_sums<T: Element, const L: usize>(x: &[T], term: &impl Fn(T) -> T) -> [T; L] {
    let mut acc = [T::zero(); L];
    for c in x.chunks_exact(L) {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += term(v);
        }
    }
    acc
}

/// The sum of f64 lanes as a tree, halving the lanes each step: it vectorises, where a fold
/// over 32 lanes was a chain of 32 dependent adds per row sum, a third of a [512, 64] forward.
#[inline(always)]
fn tree_sum<const L: usize>(mut w: [f64; L]) -> f64 {
    let mut n = L;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            w[i] += w[i + n];
        }
    }
    w[0]
}

/// Adds `T` lanes onto f64 ones.
#[inline(always)]
fn add_widened<T: Element, const L: usize>(wide: &mut [f64; L], lanes: [T; L]) {
    for (w, a) in wide.iter_mut().zip(lanes) {
        *w += a.widen();
    }
}

/// The mean and biased variance of one row, in f64. Two passes in `T` terms (the variance
/// as `Σ(x − μ)²`, which does not cancel); where that overflows `T` (a row of f32 values
/// near 10³⁶ squares past f32's range) the row is summed again with every term in f64, so
/// finite inputs give finite statistics. NaN or ±∞ in the row still give NaN.
#[inline(always)]
fn row_moments<T: Element>(x: &[T]) -> (f64, f64) {
    let c = x.len() as f64;
    let mean = widened_sum(x, |v| v) / c;
    let m = T::of(mean);
    let var = widened_sum(x, |v| (v - m) * (v - m)) / c;
    if var.is_finite() {
        return (mean, var);
    }
    let mean = x.iter().map(|v| v.widen()).sum::<f64>() / c;
    let var = x
        .iter()
        .map(|v| (v.widen() - mean) * (v.widen() - mean))
        .sum::<f64>()
        / c;
    (mean, var)
}

/// `y = (x − μ)·s·γ + β` for one row.
#[inline(always)]
fn ln_normalise_row<T: Element>(
    y: &mut [MaybeUninit<T>],
    x: &[T],
    (m, s): (T, T),
    (gamma, beta): (&[T], &[T]),
) {
    let c = x.len();
    let (y, gamma, beta) = (&mut y[..c], &gamma[..c], &beta[..c]);
    for j in 0..c {
        y[j].write((x[j] - m) * s * gamma[j] + beta[j]);
    }
}

/// Pass 1 of one row's backward: `(Σ h, Σ h·x̂)` in f64, with `h = g·γ` and `x̂ = (x − μ)·s`,
/// summed as [`widened_sum`] does. Both in one loop, each accumulated in a loop of its own
/// inside it: `Σ h` and `Σ h·x̂` added in the same statement were compiled to scalar code
/// (1.3 ms more per [4096, 1024] backward than this).
#[inline(always)]
fn ln_row_sums<T: Element>(g: &[T], x: &[T], gamma: &[T], ms: (T, T)) -> (f64, f64) {
    if ln_lanes::<T>() == 32 {
        ln_row_sums_in::<T, 32>(g, x, gamma, ms)
    } else {
        ln_row_sums_in::<T, 16>(g, x, gamma, ms)
    }
}

/// [`ln_row_sums`] with `L` lanes.
#[inline(always)]
fn ln_row_sums_in<T: Element, const L: usize>(
    g: &[T],
    x: &[T],
    gamma: &[T],
    (m, s): (T, T),
) -> (f64, f64) {
    let n = g.len();
    let (x, gamma) = (&x[..n], &gamma[..n]);
    let (mut wa, mut wb) = ([0.0f64; L], [0.0f64; L]);
    let block = L * LN_WIDEN;
    let (mut gs, mut xs, mut ys) = (
        g.chunks_exact(block),
        x.chunks_exact(block),
        gamma.chunks_exact(block),
    );
    for ((gb, xb), yb) in (&mut gs).zip(&mut xs).zip(&mut ys) {
        let (a, b) = lane_pair_sums::<T, L>(gb, xb, yb, (m, s));
        add_widened(&mut wa, a);
        add_widened(&mut wb, b);
    }
    let (gr, xr, yr) = (gs.remainder(), xs.remainder(), ys.remainder());
    let (a, b) = lane_pair_sums::<T, L>(gr, xr, yr, (m, s));
    add_widened(&mut wa, a);
    add_widened(&mut wb, b);
    let whole = gr.len() - gr.len() % L;
    let (mut ra, mut rb) = (0.0f64, 0.0f64);
    for ((&g, &x), &w) in gr[whole..].iter().zip(&xr[whole..]).zip(&yr[whole..]) {
        ra += (g * w).widen();
        rb += (g * w * ((x - m) * s)).widen();
    }
    (tree_sum(wa) + ra, tree_sum(wb) + rb)
}

/// `L` lanes each of `Σ g·γ` and `Σ g·γ·x̂` over the whole chunks of `L` (at most
/// [`LN_WIDEN`]). A function, not a closure in [`ln_row_sums_in`]: the closure was compiled
/// once outside the run-time dispatch, without AVX2, and took a fifth of a [4096, 1024]
/// backward.
#[inline(always)]
fn lane_pair_sums<T: Element, const L: usize>(
    g: &[T],
    x: &[T],
    gamma: &[T],
    (m, s): (T, T),
) -> ([T; L], [T; L]) {
    let (mut a, mut b) = ([T::zero(); L], [T::zero(); L]);
    for ((gc, xc), yc) in g
        .chunks_exact(L)
        .zip(x.chunks_exact(L))
        .zip(gamma.chunks_exact(L))
    {
        for ((a, &g), &w) in a.iter_mut().zip(gc).zip(yc) {
            *a += g * w;
        }
        for (((b, &g), &w), &x) in b.iter_mut().zip(gc).zip(yc).zip(xc) {
            *b += g * w * ((x - m) * s);
        }
    }
    (a, b)
}

/// Adds one row's terms onto the parameters' column sums: `g·x̂` onto `dg`, `g` onto `db`. A
/// loop of its own: folded into the row sums' blocks, the stores kept the whole loop from
/// vectorising.
#[inline(always)]
fn ln_column_sums<T: Element>((dg, db): (&mut [T], &mut [T]), g: &[T], x: &[T], (m, s): (T, T)) {
    let c = x.len();
    let (dg, db, g) = (&mut dg[..c], &mut db[..c], &g[..c]);
    for j in 0..c {
        dg[j] += g[j] * ((x[j] - m) * s);
        db[j] += g[j];
    }
}

/// Pass 2 of one row's backward: `dx = s·(h − Σh/C − x̂·Σ(h·x̂)/C)`; with `COLS`, also adds the
/// row's terms onto the parameters' column sums, `g·x̂` onto `dg` and `g` onto `db` (in this
/// loop rather than one of their own: one pass over the row less).
#[inline(always)]
fn ln_input_grad_row<T: Element, const COLS: bool>(
    dx: &mut [MaybeUninit<T>],
    (g, x, gamma): (&[T], &[T], &[T]),
    (m, s): (T, T),
    (mean_h, mean_hx): (T, T),
    (dg, db): (&mut [T], &mut [T]),
) {
    let c = x.len();
    let (dx, g, gamma) = (&mut dx[..c], &g[..c], &gamma[..c]);
    if COLS {
        let (dg, db) = (&mut dg[..c], &mut db[..c]);
        for j in 0..c {
            let xh = (x[j] - m) * s;
            dx[j].write(s * (g[j] * gamma[j] - mean_h - xh * mean_hx));
            dg[j] += g[j] * xh;
            db[j] += g[j];
        }
    } else {
        for j in 0..c {
            let xh = (x[j] - m) * s;
            dx[j].write(s * (g[j] * gamma[j] - mean_h - xh * mean_hx));
        }
    }
}

/// A `[C]` parameter's values, or `C` copies of `fill` where the layer has none.
fn param_or<T: Element>(p: Option<&Tensor<T>>, c: usize, fill: T) -> Tensor<T> {
    match p {
        Some(p) => p.clone(),
        None => Tensor::from_parts(pool::filled(c, fill), [c].as_slice().into()),
    }
}

/// The rows of the last axis: `(rows, C)`.
fn rows_of(shape: &[usize]) -> (usize, usize) {
    let c = *shape
        .last()
        .expect("layer_norm: a 0-d input has no axis to normalise");
    (shape[..shape.len() - 1].iter().product(), c)
}

/// The fused forward: `y = (x − μ)·s·γ + β` over the last axis, and each row's μ and
/// `s = 1/√(σ² + ε)` (`[rows]`, what backward recomputes x̂ from). Missing γ is 1, β 0.
pub(crate) fn layer_norm_forward<T: Element>(
    x: &Tensor<T>,
    gamma: Option<&Tensor<T>>,
    beta: Option<&Tensor<T>>,
    eps: T,
) -> [Tensor<T>; 3] {
    let (rows, c) = rows_of(x.shape());
    let (gamma, beta) = (param_or(gamma, c, T::one()), param_or(beta, c, T::zero()));
    let (mut y, mut mean, mut inv) = (
        pool::with_capacity(rows * c),
        pool::with_capacity(rows),
        pool::with_capacity(rows),
    );
    let yp = SharedPtr(y.spare_capacity_mut().as_mut_ptr());
    let mp = SharedPtr(mean.spare_capacity_mut().as_mut_ptr());
    let ip = SharedPtr(inv.spare_capacity_mut().as_mut_ptr());
    let (xd, gd, bd) = (x.data(), gamma.data(), beta.data());
    let eps = eps.widen();
    parallel::for_row_blocks(rows, parallel::row_blocks(rows, c), &|_, r| {
        // SAFETY: the blocks' row ranges are disjoint and within 0..rows (`for_row_blocks`),
        // and the three buffers have room for rows·c, rows and rows elements.
        let (ys, ms, is) = unsafe {
            (
                std::slice::from_raw_parts_mut(yp.get().add(r.start * c), r.len() * c),
                std::slice::from_raw_parts_mut(mp.get().add(r.start), r.len()),
                std::slice::from_raw_parts_mut(ip.get().add(r.start), r.len()),
            )
        };
        let xs = &xd[r.start * c..r.end * c];
        dispatch(
            #[inline(always)]
            || {
                for (i, (xr, yr)) in xs
                    .chunks_exact(c.max(1))
                    .zip(ys.chunks_exact_mut(c.max(1)))
                    .enumerate()
                {
                    let (mu, var) = row_moments(xr);
                    let (m, s) = (T::of(mu), T::of(1.0 / (var + eps).sqrt()));
                    ms[i].write(m);
                    is[i].write(s);
                    ln_normalise_row(yr, xr, (m, s), (gd, bd));
                }
            },
        );
        if c == 0 {
            for (m, s) in ms.iter_mut().zip(is.iter_mut()) {
                m.write(T::nan());
                s.write(T::nan());
            }
        }
    });
    // SAFETY: the blocks cover 0..rows; each row of c outputs was written by
    // ln_normalise_row (all c slots) and its mean and scale by the loop (or, for c = 0, by
    // the fill after it).
    unsafe {
        y.set_len(rows * c);
        mean.set_len(rows);
        inv.set_len(rows);
    }
    let rs: Shape = [rows].as_slice().into();
    [
        Tensor::from_parts(y, x.shape().into()),
        Tensor::from_parts(mean, rs.clone()),
        Tensor::from_parts(inv, rs),
    ]
}

/// The fused backward of [`layer_norm_forward`] for output gradient `g`: the input gradient
/// (when `want_dx`) and the column sums `[Σ g·x̂, Σ g]` (when `want_cols`), each summed over
/// every row. Missing γ is 1.
pub(crate) fn layer_norm_grads<T: Element>(
    x: &Tensor<T>,
    g: &Tensor<T>,
    gamma: Option<&Tensor<T>>,
    (mean, inv): (&Tensor<T>, &Tensor<T>),
    (want_dx, want_cols): (bool, bool),
) -> (Option<Tensor<T>>, Option<[Tensor<T>; 2]>) {
    let (rows, c) = rows_of(x.shape());
    let gamma = param_or(gamma, c, T::one());
    let blocks = parallel::row_blocks(rows, c);
    let mut dx = pool::with_capacity(if want_dx { rows * c } else { 0 });
    // Each block adds its rows' column sums onto its own [dγ | dβ] row, summed in block order
    // below: deterministic for a given thread count.
    let mut partial = pool::filled(if want_cols { blocks * 2 * c } else { 0 }, T::zero());
    let dp = SharedPtr(dx.spare_capacity_mut().as_mut_ptr());
    let pp = SharedPtr(partial.as_mut_ptr());
    let (xd, gd, gam, md, sd) = (x.data(), g.data(), gamma.data(), mean.data(), inv.data());
    let inv_c = 1.0 / c as f64;
    parallel::for_row_blocks(rows, blocks, &|b, r| {
        // SAFETY: the blocks' row ranges are disjoint and within 0..rows, and each block has
        // its own 2c partial sums; the buffers have room for rows·c and blocks·2c elements
        // when asked for (and are not touched otherwise).
        let (dxs, cols) = unsafe {
            (
                if want_dx {
                    std::slice::from_raw_parts_mut(dp.get().add(r.start * c), r.len() * c)
                } else {
                    &mut []
                },
                if want_cols {
                    std::slice::from_raw_parts_mut(pp.get().add(b * 2 * c), 2 * c)
                } else {
                    &mut []
                },
            )
        };
        let (xs, gs) = (&xd[r.start * c..r.end * c], &gd[r.start * c..r.end * c]);
        let (ms, ss) = (&md[r.clone()], &sd[r.clone()]);
        dispatch(
            #[inline(always)]
            || {
                let (dg, db) = cols.split_at_mut(if want_cols { c } else { 0 });
                for (i, (xr, gr)) in xs
                    .chunks_exact(c.max(1))
                    .zip(gs.chunks_exact(c.max(1)))
                    .enumerate()
                {
                    let ms_i = (ms[i], ss[i]);
                    match (want_dx, want_cols) {
                        (true, _) => {
                            let dxr = &mut dxs[i * c..(i + 1) * c];
                            let (sh, shx) = ln_row_sums(gr, xr, gam, ms_i);
                            let means = (T::of(sh * inv_c), T::of(shx * inv_c));
                            let rows = (gr, xr, gam);
                            if want_cols {
                                let cols = (&mut *dg, &mut *db);
                                ln_input_grad_row::<T, true>(dxr, rows, ms_i, means, cols);
                            } else {
                                let cols = (&mut [][..], &mut [][..]);
                                ln_input_grad_row::<T, false>(dxr, rows, ms_i, means, cols);
                            }
                        }
                        (false, true) => ln_column_sums((&mut *dg, &mut *db), gr, xr, ms_i),
                        (false, false) => {}
                    }
                }
            },
        );
    });
    let dx = want_dx.then(|| {
        // SAFETY: the blocks cover 0..rows, and ln_input_grad_row wrote all c slots of each.
        unsafe { dx.set_len(rows * c) };
        Tensor::from_parts(dx, x.shape().into())
    });
    let cols = want_cols.then(|| {
        let (mut dg, mut db) = (pool::filled(c, T::zero()), pool::filled(c, T::zero()));
        for p in partial.chunks_exact(2 * c.max(1)) {
            let (pg, pb) = p.split_at(c);
            for (d, &v) in dg.iter_mut().zip(pg) {
                *d += v;
            }
            for (d, &v) in db.iter_mut().zip(pb) {
                *d += v;
            }
        }
        let cs: Shape = [c].as_slice().into();
        [
            Tensor::from_parts(dg, cs.clone()),
            Tensor::from_parts(db, cs),
        ]
    });
    (dx, cols)
}

/// Backward of the fused layer norm. Inputs are `x`, then γ and β where the op has them.
pub(crate) fn layer_norm_backward<T: Element, A: Algebra<T>>(
    op: &Op<T>,
    x: &[&A],
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    let Op::LayerNorm(saved) = op else {
        unreachable!("norm::layer_norm_backward called with {}", op.name())
    };
    let LayerNormSaved {
        eps,
        mean,
        inv_std,
        gamma: has_gamma,
        beta: has_beta,
    } = &**saved;
    let xa = x[0];
    let gamma = has_gamma.then(|| x[1]);
    let shape = xa.shape();
    let (rows, c) = rows_of(&shape);
    let want_dx = needs[0];
    let want_dg = *has_gamma && needs[1];
    let want_db = *has_beta && needs[1 + usize::from(*has_gamma)];
    let [dx, dgamma, dbeta] = A::fork(
        || {
            let gv = gamma.map(|gm| gm.value());
            let (dx, cols) = layer_norm_grads(
                &xa.value(),
                &g.value(),
                gv.as_ref(),
                (mean, inv_std),
                (want_dx, want_dg || want_db),
            );
            let none = || Tensor::zeros(&[0]);
            let [dg, db] = cols.unwrap_or_else(|| [none(), none()]);
            [dx.unwrap_or_else(none), dg, db]
        },
        || {
            // The same formulas from primitives, recomputing the statistics from x so that
            // the result is differentiable in x as well as in g and γ.
            let axis = shape.len() - 1;
            let inv_c = T::one() / T::of(c as f64);
            let mean = xa.sum_axis(axis, true).scale(inv_c);
            let xc = xa.sub(&mean);
            let var = xc.mul(&xc).sum_axis(axis, true).scale(inv_c);
            let s = var.add_scalar(*eps).powf(T::of(-0.5));
            let xh = xc.mul(&s);
            let h = gamma.map_or_else(|| g.clone(), |gm| g.mul(gm));
            let mean_h = h.sum_axis(axis, true).scale(inv_c);
            let mean_hx = h.mul(&xh).sum_axis(axis, true).scale(inv_c);
            let dx = h.sub(&mean_h).sub(&xh.mul(&mean_hx)).mul(&s);
            let dg = g.mul(&xh).reshape(&[rows, c]).sum_axis(0, false);
            let db = g.reshape(&[rows, c]).sum_axis(0, false);
            [dx, dg, db]
        },
    );
    let mut out = smallvec![want_dx.then_some(dx)];
    if *has_gamma {
        out.push(want_dg.then_some(dgamma));
    }
    if *has_beta {
        out.push(want_db.then_some(dbeta));
    }
    out
}

impl<'t, T: Element> Var<'t, T> {
    /// Layer normalisation over the last axis (PyTorch's `F.layer_norm(x, (C,), γ, β, ε)`):
    /// `y = (x − μ)/√(σ² + ε) · γ + β`, with μ and the *biased* variance σ² taken over the `C`
    /// elements of each row of the last axis. `gamma` and `beta` are `[C]`; a missing one is
    /// 1 (or 0). One fused node; the statistics are summed in f64 (see `DESIGN.md`).
    ///
    /// Derivative, with `x̂ = (x − μ)/√(σ² + ε)`, `h = g·γ` and means over each row:
    /// `dx = (h − mean(h) − x̂·mean(h·x̂))/√(σ² + ε)`; `dγ = Σ g·x̂` and `dβ = Σ g`, summed over
    /// every row. Under [`backward_graph`](Var::backward_graph) the rule runs composed from
    /// primitives, so second derivatives are exact.
    ///
    /// # Panics
    /// If `self` is 0-d, `gamma` or `beta` is not `[C]`, or they belong to another tape.
    ///
    /// # Example
    /// ```
    /// use vgrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 3.0, 10.0, -10.0], &[2, 2])?);
    /// let y = x.layer_norm(None, None, 1e-5);
    /// // Each row normalised to mean 0 and (biased) variance ≈ 1: ±1 up to ε.
    /// assert!(y.value().allclose(&Tensor::from_vec(vec![-1.0, 1.0, 1.0, -1.0], &[2, 2])?, 1e-4, 0.0));
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn layer_norm(
        self,
        gamma: Option<Var<'t, T>>,
        beta: Option<Var<'t, T>>,
        eps: T,
    ) -> Var<'t, T> {
        let shape = self.shape();
        assert!(
            !shape.is_empty(),
            "layer_norm: a 0-d input has no axis to normalise"
        );
        let c = shape[shape.len() - 1];
        let mut parents: SmallVec<[usize; 3]> = smallvec![self.id];
        for (name, p) in [("gamma", gamma), ("beta", beta)] {
            if let Some(p) = p {
                self.same_tape("layer_norm", &p);
                let ps = p.shape();
                assert!(
                    ps.as_slice() == [c],
                    "layer_norm: input {shape:?} needs {name} of shape [{c}], got {ps:?}"
                );
                parents.push(p.id);
            }
        }
        let (gv, bv) = (gamma.map(|p| p.value()), beta.map(|p| p.value()));
        let [y, mean, inv_std] = layer_norm_forward(&self.value(), gv.as_ref(), bv.as_ref(), eps);
        let op = Op::LayerNorm(Arc::new(LayerNormSaved {
            eps,
            mean,
            inv_std,
            gamma: gamma.is_some(),
            beta: beta.is_some(),
        }));
        self.record(op, &parents, y)
    }
}

#[cfg(test)]
mod tests {
    use crate::{gradcheck, Element, GradcheckOptions, Tape, Tensor, Var};

    fn inputs() -> [Tensor<f64>; 3] {
        [
            Tensor::from_fn(&[5, 3], |i| ((i * 7 % 11) as f64 * 0.37).sin() * 2.0 + 0.3),
            Tensor::vector(&[1.5, -0.7, 0.2]),
            Tensor::vector(&[0.1, 0.0, -2.0]),
        ]
    }

    /// The textbook composition from primitives: the reference the fused op must match.
    fn composed<'t>(x: Var<'t, f64>, g: Var<'t, f64>, b: Var<'t, f64>) -> Var<'t, f64> {
        let mean = x.mean_axis(0, true);
        let xc = x - mean;
        let var = xc.square().mean_axis(0, true);
        xc * (var + 1e-5).powf(-0.5) * g + b
    }

    #[test]
    fn fused_matches_composition_in_value_and_gradient() {
        let [x0, g0, b0] = inputs();
        let w = Tensor::from_fn(&[5, 3], |i| (i as f64 * 0.9).cos());
        let run = |fused: bool| {
            let tape = Tape::new();
            let (x, g, b) = (
                tape.leaf(x0.clone()),
                tape.leaf(g0.clone()),
                tape.leaf(b0.clone()),
            );
            let y = if fused {
                x.batch_norm(g, b, 1e-5).0
            } else {
                composed(x, g, b)
            };
            let loss = (y * tape.constant(w.clone())).sum();
            let gr = loss.backward();
            [
                y.value(),
                gr.wrt(x).unwrap().clone(),
                gr.wrt(g).unwrap().clone(),
                gr.wrt(b).unwrap().clone(),
            ]
        };
        for (f, c) in run(true).iter().zip(run(false).iter()) {
            assert!(f.allclose(c, 1e-10, 1e-12), "fused {f} vs composed {c}");
        }
    }

    #[test]
    fn passes_gradcheck_and_double_backward() {
        let w = Tensor::from_fn(&[5, 3], |i| (i as f64 * 0.9).cos());
        let r = gradcheck(
            |v| {
                (v[0].batch_norm(v[1], v[2], 1e-5).0 * v[0].tape().constant(w.clone()))
                    .tanh()
                    .sum()
            },
            &inputs(),
            GradcheckOptions::default(),
        );
        r.assert_passed();
        // Second order: differentiate Σ c·∂L/∂x, built under create_graph.
        let c = Tensor::from_fn(&[5, 3], |i| (i as f64 * 0.4).sin());
        let r2 = gradcheck(
            |v| {
                let t = v[0].tape();
                // gradcheck evaluates with constants; a zero leaf gives the graph a variable
                // to differentiate with respect to, and ∂L/∂d = ∂L/∂x.
                let d = t.leaf(Tensor::zeros(&[5, 3]));
                let x = v[0] + d;
                let loss = (x.batch_norm(v[1], v[2], 1e-5).0 * t.constant(w.clone()))
                    .tanh()
                    .sum();
                let dx = loss.backward_graph().wrt(d).unwrap();
                (dx * t.constant(c.clone())).sum()
            },
            &inputs(),
            GradcheckOptions::default(),
        );
        r2.assert_passed();
    }

    /// Layer norm's y, dx, dγ, dβ from the definitions, every step in f64.
    fn layer_norm_reference(
        x: &Tensor<f64>,
        g: &Tensor<f64>,
        (gamma, beta): (&[f64], &[f64]),
        eps: f64,
    ) -> [Vec<f64>; 4] {
        let c = *x.shape().last().unwrap();
        let (mut y, mut dx) = (vec![], vec![]);
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        for (xr, gr) in x.data().chunks_exact(c).zip(g.data().chunks_exact(c)) {
            let mu = xr.iter().sum::<f64>() / c as f64;
            let var = xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / c as f64;
            let s = 1.0 / (var + eps).sqrt();
            let xh: Vec<f64> = xr.iter().map(|v| (v - mu) * s).collect();
            let h: Vec<f64> = gr.iter().zip(gamma).map(|(g, w)| g * w).collect();
            let mh = h.iter().sum::<f64>() / c as f64;
            let mhx = h.iter().zip(&xh).map(|(h, x)| h * x).sum::<f64>() / c as f64;
            for j in 0..c {
                y.push(xh[j] * gamma[j] + beta[j]);
                dx.push(s * (h[j] - mh - xh[j] * mhx));
                dg[j] += gr[j] * xh[j];
                db[j] += gr[j];
            }
        }
        [y, dx, dg, db]
    }

    /// The fused layer norm against its definition in f64: rows shorter and longer than the
    /// kernel's 64-value blocks with every kind of remainder, rows of one value, no rows, a
    /// row offset far from its spread, f32 rows whose squares overflow f32, and enough rows
    /// to be cut into blocks over two threads (the column sums then add per-block partials).
    #[test]
    fn layer_norm_matches_its_definition_on_long_rows_and_threads() {
        fn check<T: Element>(shape: &[usize], scale: f64, offset: f64, threads: usize, tol: f64) {
            let c = *shape.last().unwrap();
            // Rounded to T first: the reference then measures the computation, not the input.
            let x64 = Tensor::from_fn(shape, |i| {
                ((i * 7919 % 1013) as f64 / 506.0 - 1.0) * scale + offset
            })
            .cast::<T>()
            .cast::<f64>();
            let g64 = Tensor::from_fn(shape, |i| (i * 104_729 % 97) as f64 / 48.0 - 1.0);
            let gamma: Vec<f64> = (0..c).map(|j| 0.5 + (j % 7) as f64 * 0.25).collect();
            let beta: Vec<f64> = (0..c).map(|j| (j % 5) as f64 * 0.1 - 0.2).collect();
            let want = layer_norm_reference(&x64, &g64, (&gamma, &beta), 1e-5);
            let before = crate::tensor::num_threads();
            crate::tensor::set_num_threads(threads);
            let tape = Tape::<T>::new();
            let x = tape.leaf(x64.cast());
            let (w, b) = (
                tape.leaf(Tensor::vector(&gamma).cast()),
                tape.leaf(Tensor::vector(&beta).cast()),
            );
            let y = x.layer_norm(Some(w), Some(b), T::of(1e-5));
            let grads = y.backward_with(g64.cast());
            crate::tensor::set_num_threads(before);
            let got = [
                y.value(),
                grads.wrt(x).unwrap().clone(),
                grads.wrt(w).unwrap().clone(),
                grads.wrt(b).unwrap().clone(),
            ];
            for (name, (got, want)) in ["y", "dx", "dgamma", "dbeta"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_eq!(got.numel(), want.len(), "{name} {shape:?}");
                let top = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                for (i, (&a, &b)) in got.data().iter().zip(want).enumerate() {
                    assert!(
                        (a.widen() - b).abs() <= tol * top,
                        "{name}[{i}] of {shape:?} (scale {scale}, offset {offset}, {threads} threads): {} vs {b}",
                        a.widen()
                    );
                }
            }
        }
        for threads in [1, 2] {
            for shape in [
                &[3, 1000][..],
                &[2, 2, 64],
                &[4, 65],
                &[5, 127],
                &[3, 31],
                &[7, 1],
                &[0, 8],
                &[600, 512],
            ] {
                check::<f64>(shape, 1.0, 0.5, threads, 1e-12);
                check::<f32>(shape, 1.0, 0.5, threads, 2e-5);
            }
            // Rows far from zero for their spread: the error grows with offset / spread
            // (10⁶ and 10⁴ here), as in any float layer norm.
            check::<f64>(&[4, 300], 1e-2, 1e4, threads, 1e-8);
            check::<f32>(&[4, 300], 1e-2, 1e2, threads, 5e-3);
            check::<f32>(&[3, 200], 1e36, 0.0, threads, 2e-5);
        }
    }

    #[test]
    #[should_panic(expected = "batch_norm: expected more than 1 value per channel")]
    fn one_row_panics() {
        let tape = Tape::<f32>::new();
        let _ = tape.leaf(Tensor::zeros(&[1, 3])).batch_norm(
            tape.leaf(Tensor::ones(&[3])),
            tape.leaf(Tensor::zeros(&[3])),
            1e-5,
        );
    }
}
