//! Property tests of forward mode, for every op family, on random shapes and values kept away
//! from kinks. For each op [`check`] verifies, in f64:
//!
//! 1. **adjointness**: `⟨u, J·v⟩ = Σᵢ ⟨(Jᵀ·u)ᵢ, vᵢ⟩` against the existing reverse mode, for
//!    the JVP with respect to all inputs at once (to 1e-10 of the products' magnitude);
//! 2. **finite differences**: `J·v` against the central difference
//!    `(f(x + h·v) − f(x − h·v))/2h`, `h = 1e-6` (gradcheck's tolerances, atol 1e-5, rtol 1e-3);
//! 3. **linearity**: the JVP with respect to all inputs is the sum of the JVPs with respect to
//!    each one alone (each input's tangent flows independently of the others).
//!
//! Directions `v` and `u` are deterministic signed ramps (never zero), different per input.

use proptest::collection::vec;
use proptest::prelude::*;
use std::sync::Arc;
use vgrad::{CustomOp, GeluApprox, Tape, Tensor, Var};

/// Deterministic signed weights of magnitude 0.3..1.3, never zero, so no entry can hide.
fn weights(shape: &[usize], salt: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |i| {
        let m = 0.3 + ((i as f64 + salt) * 0.618_033_988_749_895).fract();
        if i % 2 == 0 {
            m
        } else {
            -m
        }
    })
}

fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
}

fn abs_dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x * y).abs())
        .sum()
}

/// The three checks of the module docs for `f` at `inputs`.
fn check<F>(inputs: &[Tensor<f64>], f: F) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let dirs: Vec<Tensor<f64>> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| weights(x.shape(), 0.37 + 1.7 * i as f64))
        .collect();
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let y = f(&vars);
    let jv = y.jvp(&vars, &dirs).expect("valid tangents");
    let ys = y.shape();
    prop_assert_eq!(jv.shape(), ys.as_slice());

    // 1. ⟨u, Jv⟩ = ⟨Jᵀu, v⟩.
    let u = weights(&y.shape(), 5.3);
    let grads = y.backward_with(u.clone());
    let (mut rhs, mut mag) = (0.0, abs_dot(&u, &jv));
    for (x, v) in vars.iter().zip(&dirs) {
        if let Some(g) = grads.wrt(*x) {
            rhs += dot(g, v);
            mag += abs_dot(g, v);
        }
    }
    let lhs = dot(&u, &jv);
    prop_assert!(
        (lhs - rhs).abs() <= 1e-10 * (1.0 + mag),
        "<u, Jv> = {lhs:e}, <J^T u, v> = {rhs:e}"
    );

    // 2. Central finite differences along v.
    let h = 1e-6;
    let at = |s: f64| {
        let t = Tape::new();
        let shifted: Vec<_> = inputs
            .iter()
            .zip(&dirs)
            .map(|(x, v)| t.constant(x.add(&v.scale(s))))
            .collect();
        f(&shifted).value()
    };
    let fd = at(h).sub(&at(-h)).scale(0.5 / h);
    for (i, (&a, &b)) in jv.data().iter().zip(fd.data()).enumerate() {
        prop_assert!(
            (a - b).abs() <= 1e-5 + 1e-3 * b.abs(),
            "element {i}: JVP {a:e}, finite difference {b:e}"
        );
    }

    // 3. Linearity over the inputs.
    if vars.len() > 1 {
        let mut sum = Tensor::zeros(jv.shape());
        for (x, v) in vars.iter().zip(&dirs) {
            let one = y
                .jvp(&[*x], std::slice::from_ref(v))
                .expect("valid tangent");
            sum = sum.add(&one);
        }
        prop_assert!(
            sum.allclose(&jv, 1e-12, 1e-13),
            "sum of single-input JVPs {sum} vs {jv}"
        );
    }
    Ok(())
}

/// [`check`] for a one-input op.
fn check1<F>(x: &Tensor<f64>, f: F) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    check(std::slice::from_ref(x), |v| f(v[0]))
}

// ---------------------------------------------------------------- strategies

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

/// 1–3 axes of extent 1–4.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..=4, 1..=3)
}

fn tensor<S>(shape: Vec<usize>, elem: S) -> impl Strategy<Value = Tensor<f64>>
where
    S: Strategy<Value = f64> + Clone,
{
    let n: usize = shape.iter().product();
    vec(elem, n).prop_map(move |d| Tensor::from_vec(d, &shape).unwrap())
}

fn any_tensor<S>(elem: S) -> impl Strategy<Value = Tensor<f64>>
where
    S: Strategy<Value = f64> + Clone + 'static,
{
    shape().prop_flat_map(move |s| tensor(s, elem.clone()))
}

/// Magnitude in `lo..hi` with either sign: keeps values away from a kink at 0.
fn signed(lo: f64, hi: f64) -> impl Strategy<Value = f64> + Clone {
    (lo..hi, any::<bool>()).prop_map(|(m, pos)| if pos { m } else { -m })
}

/// A tensor of distinct values at least 0.27 apart, so a maximum is never within a
/// finite-difference step of a tie.
fn distinct_tensor() -> impl Strategy<Value = Tensor<f64>> {
    shape().prop_flat_map(|s| {
        let n: usize = s.iter().product();
        (
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            vec(0.0..0.1, n),
        )
            .prop_map(move |(perm, jit)| {
                let d = perm
                    .iter()
                    .zip(jit)
                    .map(|(&p, j)| (p as f64 - n as f64 / 2.0) * 0.37 + j)
                    .collect();
                Tensor::from_vec(d, &s).unwrap()
            })
    })
}

/// Two tensors whose shapes broadcast together (`[2, 3]`·`[3]`, `[2, 1]`·`[1, 3]`, …).
fn bcast_tensors() -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>)> {
    (vec(1usize..=4, 1..=3), 0usize..=3, vec(any::<bool>(), 6)).prop_flat_map(
        |(full, keep, ones)| {
            let n = full.len();
            let b: Vec<usize> = full[n - keep.min(n)..]
                .iter()
                .zip(&ones)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            let b = if b.is_empty() { vec![1] } else { b };
            (tensor(full, -2.0..2.0), tensor(b, signed(0.5, 2.0)))
        },
    )
}

/// A tensor and one of its axes.
fn with_axis() -> impl Strategy<Value = (Tensor<f64>, usize)> {
    shape().prop_flat_map(|s| {
        let nd = s.len();
        (tensor(s, -3.0..3.0), 0..nd)
    })
}

/// Matrices for `op(a)·op(b)`: `m×k` and `k×n` stored transposed where the flag says.
fn matmul_operands() -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>, bool, bool)> {
    (
        1usize..=4,
        1usize..=4,
        1usize..=4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(m, k, n, ta, tb)| {
            let sa = if ta { vec![k, m] } else { vec![m, k] };
            let sb = if tb { vec![n, k] } else { vec![k, n] };
            (
                tensor(sa, -2.0..2.0),
                tensor(sb, -2.0..2.0),
                Just(ta),
                Just(tb),
            )
        })
}

// ---------------------------------------------------------------- arithmetic and unary maths

proptest! {
    #![proptest_config(config())]

    #[test]
    fn broadcasting_arithmetic((a, b) in bcast_tensors()) {
        check(&[a.clone(), b.clone()], |v| v[0] + v[1])?;
        check(&[a.clone(), b.clone()], |v| v[0] - v[1])?;
        check(&[a.clone(), b.clone()], |v| v[0] * v[1])?;
        check(&[a, b], |v| v[0] / v[1])?;
    }

    #[test]
    fn scalar_arithmetic(x in any_tensor(-3.0..3.0), s in -2.0..2.0f64) {
        check1(&x, |v| v.scale(s))?;
        check1(&x, |v| v.add_scalar(s))?;
        check1(&x, |v| -v * v)?;
    }

    #[test]
    fn smooth_unary(x in any_tensor(-3.0..3.0)) {
        check1(&x, |v| v.exp())?;
        check1(&x, |v| v.erf())?;
        check1(&x, |v| v.sigmoid())?;
        check1(&x, |v| v.tanh())?;
        check1(&x, |v| v.silu())?;
        check1(&x, |v| v.gelu(GeluApprox::None))?;
        check1(&x, |v| v.gelu(GeluApprox::Tanh))?;
        check1(&x, |v| v.softplus(1.5, 20.0))?;
        check1(&x, |v| v.square())?;
    }

    #[test]
    fn positive_domain_unary(x in any_tensor(0.2..4.0), p in -2.0..2.5f64) {
        check1(&x, |v| v.ln())?;
        check1(&x, |v| v.sqrt())?;
        check1(&x, |v| v.powf(p))?;
    }

    #[test]
    fn piecewise_unary_away_from_kinks(x in any_tensor(signed(1e-3, 3.0))) {
        check1(&x, |v| v.relu())?;
        check1(&x, |v| v.abs())?;
        check1(&x, |v| v.leaky_relu(0.05))?;
        check1(&x, |v| v.elu(1.3))?;
        check1(&x, |v| v.selu())?;
        check1(&x, |v| v.clamp(-1.0 - 1e-4, 1.5 + 1e-4))?;
        check1(&x, |v| v.clamp_min(-0.5 - 1e-4))?;
        check1(&x, |v| v.clamp_max(0.5 + 1e-4))?;
    }
}

// ---------------------------------------------------------------- linear algebra

proptest! {
    #![proptest_config(config())]

    #[test]
    fn matmul_every_transpose((a, b, ta, tb) in matmul_operands()) {
        check(&[a, b], |v| v[0].matmul_t(v[1], ta, tb))?;
    }

    #[test]
    fn batched_matmul_broadcasts(
        (a, b) in (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3).prop_flat_map(|(bt, m, k, n)| {
            (tensor(vec![bt, m, k], -2.0..2.0), tensor(vec![k, n], -2.0..2.0))
        })
    ) {
        check(&[a, b], |v| v[0].matmul(v[1]))?;
    }

    #[test]
    fn linear_with_and_without_bias(
        (x, w, b) in (1usize..=4, 1usize..=4, 1usize..=4).prop_flat_map(|(n, i, o)| {
            (tensor(vec![n, i], -2.0..2.0), tensor(vec![o, i], -1.0..1.0), tensor(vec![o], -1.0..1.0))
        })
    ) {
        check(&[x.clone(), w.clone(), b], |v| v[0].linear(v[1], Some(v[2])))?;
        check(&[x, w], |v| v[0].linear(v[1], None))?;
    }
}

// ---------------------------------------------------------------- reductions and shapes

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sums_and_means((x, axis) in with_axis(), keepdim in any::<bool>()) {
        check1(&x, |v| v.sum())?;
        check1(&x, |v| v.mean())?;
        check1(&x, |v| v.sum_axis(axis, keepdim))?;
        check1(&x, |v| v.mean_axis(axis, keepdim))?;
    }

    #[test]
    fn maxima(x in distinct_tensor(), keepdim in any::<bool>()) {
        check1(&x, |v| v.max())?;
        for axis in 0..x.shape().len() {
            check1(&x, |v| v.max_axis(axis, keepdim))?;
        }
    }

    #[test]
    fn shape_moves(x in any_tensor(-3.0..3.0)) {
        let s = x.shape().to_vec();
        let n = x.numel();
        check1(&x, |v| v.reshape(&[n]))?;
        let perm: Vec<usize> = (0..s.len()).rev().collect();
        check1(&x, |v| v.permute(&perm))?;
        let mut big = vec![2];
        big.extend(&s);
        check1(&x, |v| v.broadcast_to(&big))?;
        let mut one = s.clone();
        one[0] = 1;
        check1(&x, |v| v.sum_to(&one))?;
        let len = s[0].div_ceil(2);
        check1(&x, |v| v.narrow(0, s[0] - len, len))?;
        let idx: Vec<usize> = (0..s[0] + 2).map(|i| (i * 7) % s[0]).collect();
        check1(&x, |v| v.gather_rows(&idx))?;
        let to: Vec<usize> = (0..s[0]).map(|i| (i * 5) % 3).collect();
        check1(&x, |v| v.scatter_add_rows(&to, 3))?;
        check(&[x.clone(), x.scale(0.5)], |v| Var::concat(&[v[0], v[1].exp()], s.len() - 1))?;
    }
}

// ---------------------------------------------------------------- softmax, losses, batch norm

proptest! {
    #![proptest_config(config())]

    #[test]
    fn softmax_family((x, axis) in with_axis()) {
        check1(&x, |v| v.softmax(axis))?;
        check1(&x, |v| v.log_softmax(axis))?;
    }

    #[test]
    fn fused_losses(
        (z, t, y) in (1usize..=4, 2usize..=4).prop_flat_map(|(n, c)| {
            (tensor(vec![n, c], -3.0..3.0), vec(0..c, n), tensor(vec![n, c], 0.0..1.0))
        }),
        mean in any::<bool>(),
    ) {
        let red = if mean { vgrad::nn::Reduction::Mean } else { vgrad::nn::Reduction::Sum };
        check1(&z, |v| vgrad::nn::cross_entropy(v, &t, red))?;
        check(&[z, y], |v| vgrad::nn::binary_cross_entropy_with_logits(v[0], v[1], red))?;
    }

    #[test]
    fn batch_norm_with_batch_statistics(
        (x, g, b) in (2usize..=5, 1usize..=4).prop_flat_map(|(n, c)| {
            (tensor(vec![n, c], -2.0..2.0), tensor(vec![c], signed(0.3, 2.0)), tensor(vec![c], -1.0..1.0))
        })
    ) {
        // A column of near-equal values has a variance near ε, where the finite difference is
        // badly conditioned; spread the rows.
        let n = x.shape()[0];
        let x = x.add(&Tensor::from_fn(x.shape(), |i| (i / x.shape()[1]) as f64 * 0.5 - n as f64 * 0.25));
        check(&[x, g, b], |v| v[0].batch_norm(v[1], v[2], 1e-5).0)?;
    }

    #[test]
    fn layer_norm_over_the_last_axis(
        (x, g, b) in (vec(1usize..=3, 0..=2), 2usize..=5).prop_flat_map(|(lead, c)| {
            let mut s = lead;
            s.push(c);
            (tensor(s, -2.0..2.0), tensor(vec![c], signed(0.3, 2.0)), tensor(vec![c], -1.0..1.0))
        }),
        params in 0usize..3,
    ) {
        // Rows spread as for batch norm: a row of near-equal values has a variance near ε.
        let c = *x.shape().last().unwrap();
        let x = x.add(&Tensor::from_fn(x.shape(), |i| (i % c) as f64 * 0.5 - c as f64 * 0.25));
        match params {
            0 => check(&[x, g, b], |v| v[0].layer_norm(Some(v[1]), Some(v[2]), 1e-5))?,
            1 => check(&[x, g], |v| v[0].layer_norm(Some(v[1]), None, 1e-5))?,
            _ => check1(&x, |v| v.layer_norm(None, None, 1e-5))?,
        }
    }
}

// ---------------------------------------------------------------- custom ops and compositions

/// `y = sin(a)·b` with its backward only: forward mode falls back to one backward call per
/// output element.
struct SinTimes;
impl CustomOp<f64> for SinTimes {
    fn name(&self) -> &'static str {
        "sin_times"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> Tensor<f64> {
        x[0].zip_map(x[1], |a, b| a.sin() * b)
    }
    fn backward(
        &self,
        x: &[&Tensor<f64>],
        _y: &Tensor<f64>,
        g: &Tensor<f64>,
    ) -> Vec<Option<Tensor<f64>>> {
        vec![
            Some(g.mul(&x[0].zip_map(x[1], |a, b| a.cos() * b))),
            Some(g.mul(&x[0].map(f64::sin))),
        ]
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn custom_op_without_its_own_jvp(
        (a, b) in shape().prop_flat_map(|s| (tensor(s.clone(), -3.0..3.0), tensor(s, -2.0..2.0)))
    ) {
        check(&[a, b], |v| Var::custom(Arc::new(SinTimes), &[v[0], v[1]]).tanh())?;
    }

    /// A tanh MLP with fan-out (a residual add) and a loss: every rule chained.
    #[test]
    fn mlp_composition(
        (x, w1, w2) in (1usize..=4, 1usize..=4, 1usize..=4).prop_flat_map(|(n, i, h)| {
            (tensor(vec![n, i], -2.0..2.0), tensor(vec![h, i], -1.0..1.0), tensor(vec![h, h], -1.0..1.0))
        })
    ) {
        check(&[x, w1, w2], |v| {
            let h = v[0].linear(v[1], None).tanh();
            let h = h + h.linear(v[2], None).tanh();
            (h.square().sum_axis(1, false) + h.max_axis(1, false)).sum()
        })?;
    }
}
