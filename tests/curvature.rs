//! `vgrad::curvature` against cases whose answer is known: quadratics ½ wᵀAw, whose Hessian is
//! A (built with chosen eigenvalues), and a small tanh network, whose Hessian-vector products
//! are checked against central differences of its gradient.

use vgrad::curvature::{hessian_vector_product, top_hessian_eigenvalue, PowerIterationConfig};
use vgrad::nn::{cross_entropy, Reduction};
use vgrad::{Error, Tape, Tensor, Var};

/// A symmetric n×n matrix with the given eigenvalues: Q·diag(λ)·Qᵀ with Q = I − 2uuᵀ/‖u‖², a
/// Householder reflection, so the eigenvectors are not the coordinate axes.
fn symmetric_with_eigenvalues(eigenvalues: &[f64]) -> Tensor<f64> {
    let n = eigenvalues.len();
    let u: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.37 * i as f64 - 0.05 * (i * i) as f64)
        .collect();
    let uu: f64 = u.iter().map(|x| x * x).sum();
    let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * u[i] * u[j] / uu;
    Tensor::from_fn(&[n, n], |k| {
        let (i, j) = (k / n, k % n);
        (0..n).map(|m| q(i, m) * eigenvalues[m] * q(j, m)).sum()
    })
}

/// ½ wᵀAw, with w split over two leaves (`w[..split]` and `w[split..]`) so that normalising
/// across parameters is exercised.
fn quadratic<'t>(
    tape: &'t Tape<f64>,
    a: &Tensor<f64>,
    w: &[f64],
    split: usize,
) -> [Var<'t, f64>; 3] {
    let n = w.len();
    let w1 = tape.leaf(Tensor::from_vec(w[..split].to_vec(), &[split, 1]).unwrap());
    let w2 = tape.leaf(Tensor::from_vec(w[split..].to_vec(), &[n - split, 1]).unwrap());
    let wv = Var::concat(&[w1, w2], 0);
    let loss = (wv * tape.constant(a.clone()).matmul(wv)).sum() * 0.5;
    [loss, w1, w2]
}

#[test]
fn hvp_of_a_quadratic_is_the_matrix_times_the_vector() {
    let a = symmetric_with_eigenvalues(&[5.0, 3.0, 1.0, 0.5, -0.2, -1.0]);
    let tape = Tape::new();
    let [loss, w1, w2] = quadratic(&tape, &a, &[0.1, -0.4, 0.2, 0.9, -0.3, 0.5], 2);
    let v = [0.3, -1.0, 2.0, 0.0, 0.7, -0.2];
    let hv = hessian_vector_product(
        loss,
        &[w1, w2],
        &[
            Tensor::from_vec(v[..2].to_vec(), &[2, 1]).unwrap(),
            Tensor::from_vec(v[2..].to_vec(), &[4, 1]).unwrap(),
        ],
    );
    let av = a.matmul(&Tensor::from_vec(v.to_vec(), &[6, 1]).unwrap());
    let got: Vec<f64> = hv.iter().flat_map(|t| t.to_vec()).collect();
    for (g, want) in got.iter().zip(av.data()) {
        assert!((g - want).abs() < 1e-12, "{got:?} vs {:?}", av.data());
    }
}

#[test]
fn power_iteration_finds_the_top_eigenvalue_of_a_quadratic() {
    let a = symmetric_with_eigenvalues(&[5.0, 3.0, 1.0, 0.5, -0.2, -1.0]);
    let tape = Tape::new();
    let [loss, w1, w2] = quadratic(&tape, &a, &[0.1, -0.4, 0.2, 0.9, -0.3, 0.5], 3);
    let cfg = PowerIterationConfig {
        max_iters: 200,
        rel_tol: 1e-12,
        seed: 3,
    };
    let top = top_hessian_eigenvalue(loss, &[w1, w2], &cfg).unwrap();
    assert!((top.eigenvalue - 5.0).abs() < 1e-9, "{}", top.eigenvalue);
    assert!(top.converged);
    assert_eq!(top.shifted_from, None);
    assert_eq!(top.history.last().copied(), Some(top.eigenvalue));
    // The eigenvector has unit norm over both parameters and satisfies A·v = 5·v.
    let v: Vec<f64> = top.eigenvector.iter().flat_map(|t| t.to_vec()).collect();
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-12);
    let av = a.matmul(&Tensor::from_vec(v.clone(), &[6, 1]).unwrap());
    for (x, y) in av.data().iter().zip(&v) {
        assert!((x - 5.0 * y).abs() < 1e-5, "{:?} vs 5·{v:?}", av.data());
    }
    // Rayleigh quotients of a symmetric matrix never exceed λ_max, and approach it.
    assert!(top.history.iter().all(|&r| r <= 5.0 + 1e-9));
}

#[test]
fn a_dominant_negative_eigenvalue_is_shifted_away() {
    // |−4| dominates, but the largest eigenvalue is 2.
    let a = symmetric_with_eigenvalues(&[2.0, 1.0, 0.5, -4.0]);
    let tape = Tape::new();
    let [loss, w1, w2] = quadratic(&tape, &a, &[1.0, 2.0, 3.0, 4.0], 1);
    let cfg = PowerIterationConfig {
        max_iters: 500,
        rel_tol: 1e-12,
        seed: 1,
    };
    let top = top_hessian_eigenvalue(loss, &[w1, w2], &cfg).unwrap();
    let mu = top.shifted_from.expect("the first run should find −4");
    assert!((mu + 4.0).abs() < 1e-6, "{mu}");
    assert!((top.eigenvalue - 2.0).abs() < 1e-6, "{}", top.eigenvalue);
    assert!(top.converged);
}

#[test]
fn a_loss_linear_in_the_parameters_has_zero_curvature() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf(Tensor::vector(&[1.0, -2.0, 3.0]));
    let unused = tape.leaf(Tensor::vector(&[7.0]));
    let loss = (w * tape.constant(Tensor::vector(&[0.5, 1.0, 2.0]))).sum();
    let hv = hessian_vector_product(
        loss,
        &[w, unused],
        &[Tensor::vector(&[1.0, 1.0, 1.0]), Tensor::vector(&[1.0])],
    );
    assert_eq!(hv[0].data(), &[0.0, 0.0, 0.0]);
    assert_eq!(hv[1].data(), &[0.0]);
    let top = top_hessian_eigenvalue(loss, &[w, unused], &Default::default()).unwrap();
    assert_eq!(top.eigenvalue, 0.0);
    assert!(top.converged);
}

/// Parameters of a 3-5-4 tanh network: W1 [5, 3], b1 [5], W2 [4, 5], b2 [4].
const SHAPES: [&[usize]; 4] = [&[5, 3], &[5], &[4, 5], &[4]];

fn mlp_params(seed: u64) -> Vec<Tensor<f64>> {
    let mut state = seed;
    let mut next = move || {
        // A small LCG is enough for fixed test inputs.
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    SHAPES
        .iter()
        .map(|s| Tensor::from_fn(s, |_| next()))
        .collect()
}

fn mlp_inputs() -> (Tensor<f64>, Vec<usize>) {
    let x = Tensor::from_fn(&[6, 3], |i| ((i * 7 % 11) as f64 - 5.0) / 4.0);
    (x, vec![0, 3, 1, 2, 1, 0])
}

/// Cross-entropy of tanh(x·W1ᵀ + b1)·W2ᵀ + b2: the fused loss and tanh both differentiated
/// twice.
fn mlp_loss<'t>(tape: &'t Tape<f64>, p: &[Var<'t, f64>]) -> Var<'t, f64> {
    let (x, y) = mlp_inputs();
    let h = (tape.constant(x).matmul_t(p[0], false, true) + p[1]).tanh();
    cross_entropy(h.matmul_t(p[2], false, true) + p[3], &y, Reduction::Mean)
}

fn mlp_grad(params: &[Tensor<f64>]) -> Vec<Tensor<f64>> {
    let tape = Tape::new();
    let p: Vec<_> = params.iter().map(|t| tape.leaf(t.clone())).collect();
    let g = mlp_loss(&tape, &p).backward();
    p.iter().map(|&v| g.wrt(v).unwrap().clone()).collect()
}

#[test]
fn hvp_of_a_tanh_mlp_matches_finite_differences_of_the_gradient() {
    let params = mlp_params(11);
    for seed in [1u64, 2, 3] {
        let v = mlp_params(100 + seed);
        let tape = Tape::new();
        let p: Vec<_> = params.iter().map(|t| tape.leaf(t.clone())).collect();
        let hv = hessian_vector_product(mlp_loss(&tape, &p), &p, &v);

        // (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, error O(ε²).
        let eps = 1e-5;
        let shifted = |sign: f64| -> Vec<Tensor<f64>> {
            params
                .iter()
                .zip(&v)
                .map(|(t, d)| t.zip_map(d, |a, b| a + sign * eps * b))
                .collect()
        };
        let (plus, minus) = (mlp_grad(&shifted(1.0)), mlp_grad(&shifted(-1.0)));
        for (k, (h, (gp, gm))) in hv.iter().zip(plus.iter().zip(&minus)).enumerate() {
            let fd = gp.sub(gm).scale(1.0 / (2.0 * eps));
            assert!(
                h.allclose(&fd, 1e-6, 1e-8),
                "parameter {k}, direction {seed}: HVP {:?} vs finite differences {:?}",
                h.data(),
                fd.data()
            );
        }
    }
}

#[test]
fn the_top_eigenvalue_of_a_tanh_mlp_bounds_every_rayleigh_quotient() {
    let params = mlp_params(11);
    let tape = Tape::new();
    let p: Vec<_> = params.iter().map(|t| tape.leaf(t.clone())).collect();
    let loss = mlp_loss(&tape, &p);
    let cfg = PowerIterationConfig {
        max_iters: 300,
        rel_tol: 1e-10,
        seed: 0,
    };
    let top = top_hessian_eigenvalue(loss, &p, &cfg).unwrap();
    assert!(top.eigenvalue > 0.0 && top.eigenvalue.is_finite());
    // H·v = λ·v for the returned vector.
    let hv = hessian_vector_product(mlp_loss(&tape, &p), &p, &top.eigenvector);
    for (h, v) in hv.iter().zip(&top.eigenvector) {
        assert!(h.allclose(&v.scale(top.eigenvalue), 1e-3, 1e-6));
    }
    // No other direction is more curved: vᵀHv ≤ λ_max for a few random unit vectors.
    for seed in 0..5 {
        let v = mlp_params(1000 + seed);
        let n2: f64 = v.iter().map(|t| t.norm_l2().powi(2)).sum();
        let hv = hessian_vector_product(mlp_loss(&tape, &p), &p, &v);
        let vhv: f64 = hv
            .iter()
            .zip(&v)
            .map(|(a, b)| a.mul(b).data().iter().sum::<f64>())
            .sum();
        assert!(
            vhv / n2 <= top.eigenvalue * (1.0 + 1e-6),
            "{} > {}",
            vhv / n2,
            top.eigenvalue
        );
    }
}

#[test]
fn bad_configurations_are_errors() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf(Tensor::vector(&[1.0]));
    let loss = (w * w).sum();
    let bad = |cfg: PowerIterationConfig, params: &[Var<'_, f64>]| {
        matches!(
            top_hessian_eigenvalue(loss, params, &cfg),
            Err(Error::Config(_))
        )
    };
    let ok = PowerIterationConfig::default();
    assert!(bad(ok, &[]));
    assert!(bad(PowerIterationConfig { max_iters: 0, ..ok }, &[w]));
    assert!(bad(
        PowerIterationConfig {
            rel_tol: -1.0,
            ..ok
        },
        &[w]
    ));
    assert!(bad(
        PowerIterationConfig {
            rel_tol: f64::NAN,
            ..ok
        },
        &[w]
    ));
    // d²(w²)/dw² = 2.
    let top = top_hessian_eigenvalue(loss, &[w], &ok).unwrap();
    assert!((top.eigenvalue - 2.0).abs() < 1e-12);
}

#[test]
#[should_panic(
    expected = "hessian_vector_product: vector 0 of shape [2] for a parameter of shape [3]"
)]
fn a_vector_of_the_wrong_shape_panics() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf(Tensor::vector(&[1.0, 2.0, 3.0]));
    hessian_vector_product((w * w).sum(), &[w], &[Tensor::vector(&[1.0, 1.0])]);
}
