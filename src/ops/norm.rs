//! Batch normalisation over the rows of a `[N, C]` input, as one fused op.
//!
//! Why fused: composed from primitives, a training-mode BatchNorm records about a dozen nodes,
//! five of them full `[N, C]` passes forward and more backward; in the residual benchmark
//! (10 blocks, width 128, batch 128) that cost about as much as the blocks' matrix products.
//! The fused op makes two passes forward (statistics, then normalise) and two backward
//! (column sums, then the input gradient). Its rule is tested against the composition and
//! against finite differences; under `create_graph` it runs the composition itself, so second
//! derivatives are exact.

use super::{Algebra, BatchNormSaved, InputGrads, Op};
use crate::tape::Var;
use crate::tensor::simd::dispatch;
use crate::tensor::{pool, Element, Tensor};
use smallvec::smallvec;
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

#[cfg(test)]
mod tests {
    use crate::{gradcheck, GradcheckOptions, Tape, Tensor, Var};

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
