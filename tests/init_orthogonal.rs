//! Orthogonal initialisation (issue 21, item 2): orthogonality to rounding for every kind of
//! shape, gain scaling, errors as PyTorch's, and the Haar distribution, checked by
//! Kolmogorov–Smirnov statistics against exact laws and against PyTorch's own `orthogonal_`
//! (`tests/golden/orthogonal.json`, from `tests/golden/orthogonal_gen.py`).

use nalgebra::DMatrix;
use serde_json::Value;
use vgrad::nn::init::{orthogonal, Dist, Init};
use vgrad::nn::{Linear, LinearConfig};
use vgrad::{Element, Error, Tensor};

const GOLDEN: &str = include_str!("golden/orthogonal.json");

/// `(rows, cols)` as `orthogonal` reads a shape.
fn matrix_dims(shape: &[usize]) -> (usize, usize) {
    let n: usize = shape.iter().product();
    (shape[0], n / shape[0])
}

/// The largest deviation of `WᵀW` (tall) or `WWᵀ` (wide) from `gain²·I`.
fn orthogonality_error<T: Element>(w: &Tensor<T>, gain: f64) -> f64 {
    let (rows, cols) = matrix_dims(w.shape());
    let d: Vec<f64> = w.data().iter().map(|v| v.to_f64().unwrap()).collect();
    let m = DMatrix::from_row_slice(rows, cols, &d);
    let gram = if rows >= cols {
        m.transpose() * &m
    } else {
        &m * m.transpose()
    };
    let k = rows.min(cols);
    let target = DMatrix::<f64>::identity(k, k) * (gain * gain);
    (gram - target).abs().max() / (gain * gain)
}

const SHAPES: [&[usize]; 8] = [
    &[8, 8],
    &[20, 5],
    &[5, 20],
    &[6, 3, 2, 2],
    &[16, 4, 3],
    &[1, 7],
    &[7, 1],
    &[64, 64],
];

#[test]
fn orthogonal_to_rounding_in_f64_and_f32() {
    let mut rng = vgrad::seeded_rng(1);
    for shape in SHAPES {
        for gain in [1.0, 0.5, 5.0 / 3.0, 3.0] {
            let w = orthogonal::<f64>(shape, gain, &mut rng).unwrap();
            assert_eq!(w.shape(), shape);
            let e = orthogonality_error(&w, gain);
            assert!(e < 1e-13, "f64 {shape:?} gain {gain}: error {e}");
            let w = orthogonal::<f32>(shape, gain, &mut rng).unwrap();
            let e = orthogonality_error(&w, gain);
            assert!(e < 1e-5, "f32 {shape:?} gain {gain}: error {e}");
        }
    }
}

#[test]
fn gain_scales_the_same_draw() {
    for shape in SHAPES {
        let one = orthogonal::<f64>(shape, 1.0, &mut vgrad::seeded_rng(5)).unwrap();
        let two = orthogonal::<f64>(shape, 2.5, &mut vgrad::seeded_rng(5)).unwrap();
        for (a, b) in one.data().iter().zip(two.data()) {
            assert!((2.5 * a - b).abs() <= 1e-15 * b.abs().max(1.0), "{shape:?}");
        }
        // A seed is a matrix: reproducible.
        let again = orthogonal::<f64>(shape, 1.0, &mut vgrad::seeded_rng(5)).unwrap();
        assert_eq!(one.data(), again.data());
    }
}

#[test]
fn through_init_and_linear() {
    let mut rng = vgrad::seeded_rng(2);
    let w = Init::Orthogonal { gain: 1.5 }
        .tensor::<f64>(&[12, 30], &mut rng)
        .unwrap();
    assert!(orthogonality_error(&w, 1.5) < 1e-13);
    let lin = Linear::<f64>::with_config(
        30,
        12,
        LinearConfig::init(Init::Orthogonal { gain: 1.0 }),
        &mut rng,
    )
    .unwrap();
    assert!(orthogonality_error(lin.weight().value(), 1.0) < 1e-13);
    // Its elements are not independent: there is no per-element distribution.
    assert!(matches!(
        Init::Orthogonal { gain: 1.0 }.distribution(&[4, 4]),
        Err(Error::Config(_))
    ));
}

#[test]
fn errors_as_pytorch() {
    let mut rng = vgrad::seeded_rng(3);
    // "Only tensors with 2 or more dimensions are supported".
    assert!(matches!(
        orthogonal::<f64>(&[5], 1.0, &mut rng),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        orthogonal::<f64>(&[], 1.0, &mut rng),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        orthogonal::<f64>(&[3, 3], f64::NAN, &mut rng),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        orthogonal::<f64>(&[usize::MAX, 3], 1.0, &mut rng),
        Err(Error::Shape(_))
    ));
    // No elements: PyTorch's no-op, an empty tensor here.
    for shape in [&[0usize, 3][..], &[3, 0], &[2, 0, 4]] {
        let w = orthogonal::<f64>(shape, 1.0, &mut rng).unwrap();
        assert_eq!(w.shape(), shape);
        assert!(w.data().is_empty());
    }
    // A Linear bias is 1-D: PyTorch's error too.
    let cfg = LinearConfig {
        bias_init: Some(Init::Orthogonal { gain: 1.0 }),
        ..LinearConfig::default()
    };
    assert!(Linear::<f64>::with_config(3, 2, cfg, &mut rng).is_err());
}

/// The Kolmogorov–Smirnov distance between a sample and a continuous CDF.
fn ks(mut xs: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// `Q` of the QR factorisation of `a` by Householder reflections in LAPACK's convention
/// (`geqrf`, which `torch.linalg.qr` calls): each reflection maps its column onto
/// `β·e₁` with `β = −sign(α)·‖x‖`, so `R`'s diagonal takes the opposite sign of the pivot and
/// `Q` is not Haar until its columns are multiplied by `sign(diag R)`. nalgebra's QR already
/// returns a non-negative diagonal (its `q()` absorbs the signs), so this is how the test gets
/// the uncorrected factor PyTorch would have.
fn lapack_qr(a: &DMatrix<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
    let (m, n) = a.shape();
    let mut r = a.clone();
    let mut q = DMatrix::<f64>::identity(m, m);
    for j in 0..n.min(m) {
        let x: Vec<f64> = (j..m).map(|i| r[(i, j)]).collect();
        let alpha = x[0];
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        let beta = if alpha >= 0.0 { -norm } else { norm };
        let mut v = x;
        v[0] = alpha - beta;
        let vv: f64 = v.iter().map(|t| t * t).sum();
        // H = I − 2vvᵀ/(vᵀv), applied to r's trailing block from the left and to q from the right.
        for col in j..n {
            let d: f64 = (0..v.len()).map(|i| v[i] * r[(j + i, col)]).sum::<f64>() * 2.0 / vv;
            for i in 0..v.len() {
                r[(j + i, col)] -= d * v[i];
            }
        }
        for row in 0..m {
            let d: f64 = (0..v.len()).map(|i| q[(row, j + i)] * v[i]).sum::<f64>() * 2.0 / vv;
            for i in 0..v.len() {
                q[(row, j + i)] -= d * v[i];
            }
        }
    }
    let k = n.min(m);
    (q.columns(0, k).into_owned(), r.rows(0, k).upper_triangle())
}

/// n × n orthogonal matrices from LAPACK-convention QR of a Gaussian matrix, with or without
/// the sign correction.
fn qr_orthogonal(n: usize, sign_correct: bool, rng: &mut impl vgrad::rand::Rng) -> DMatrix<f64> {
    let a = DMatrix::from_fn(n, n, |_, _| Dist::Normal(0.0, 1.0).sample(rng));
    let (mut q, r) = lapack_qr(&a);
    assert!(
        (&q * &r - &a).abs().max() < 1e-12,
        "the test's QR does not factor its input"
    );
    if sign_correct {
        for j in 0..n {
            if r[(j, j)] < 0.0 {
                q.column_mut(j).neg_mut();
            }
        }
    }
    q
}

/// For Haar-distributed 3 × 3 orthogonal matrices every column is uniform on the sphere S², so
/// (Archimedes) every entry is uniform on [−1, 1]. vgrad's entries pass a KS test against that
/// law; the same QR without the sign correction fails it by a wide margin, and its diagonal is
/// visibly biased.
#[test]
fn haar_entries_are_uniform_and_the_sign_correction_is_what_makes_them_so() {
    const N: usize = 4000;
    // 1.95/√N: the KS critical value at the 0.1 % level.
    let critical = 1.95 / (N as f64).sqrt();
    let uniform = |x: f64| ((x + 1.0) / 2.0).clamp(0.0, 1.0);
    let mut rng = vgrad::seeded_rng(4);
    let draws: Vec<Tensor<f64>> = (0..N)
        .map(|_| orthogonal::<f64>(&[3, 3], 1.0, &mut rng).unwrap())
        .collect();
    for (i, j) in [(0, 0), (1, 1), (2, 2), (0, 2), (2, 1)] {
        let d = ks(draws.iter().map(|w| w.data()[i * 3 + j]).collect(), uniform);
        assert!(d < critical, "vgrad Q[{i}][{j}]: KS {d} >= {critical}");
    }
    let diag_mean = draws
        .iter()
        .map(|w| w.data()[0] + w.data()[4] + w.data()[8])
        .sum::<f64>()
        / (3 * N) as f64;
    // Uniform on [−1, 1] has variance 1/3: the mean of 3N draws has sd 1/√(9N) ≈ 0.005.
    assert!(diag_mean.abs() < 0.025, "diagonal mean {diag_mean}");

    let mut rng = vgrad::seeded_rng(4);
    let raw: Vec<DMatrix<f64>> = (0..N).map(|_| qr_orthogonal(3, false, &mut rng)).collect();
    let d_raw = ks(raw.iter().map(|q| q[(0, 0)]).collect(), uniform);
    let raw_diag_mean = raw.iter().map(|q| q.trace()).sum::<f64>() / (3 * N) as f64;
    println!("without the sign correction: KS {d_raw:.3} (critical {critical:.3}), diagonal mean {raw_diag_mean:.3}");
    assert!(
        d_raw > 10.0 * critical,
        "uncorrected QR looks Haar: KS {d_raw}"
    );
    assert!(
        raw_diag_mean.abs() > 0.2,
        "uncorrected QR's diagonal is unbiased: {raw_diag_mean}"
    );

    // The test's own corrected QR agrees with `orthogonal`'s law (a check on the check).
    let mut rng = vgrad::seeded_rng(6);
    let fixed: Vec<f64> = (0..N)
        .map(|_| qr_orthogonal(3, true, &mut rng)[(0, 0)])
        .collect();
    assert!(ks(fixed, uniform) < critical);
}

/// The trace of a Haar orthogonal matrix of size n ≥ 2 has mean 0 and variance 1 (Diaconis &
/// Shahshahani 1994).
#[test]
fn haar_trace_has_mean_zero_and_variance_one() {
    const N: usize = 3000;
    let mut rng = vgrad::seeded_rng(8);
    let traces: Vec<f64> = (0..N)
        .map(|_| {
            let w = orthogonal::<f64>(&[16, 16], 1.0, &mut rng).unwrap();
            (0..16).map(|i| w.data()[i * 17]).sum()
        })
        .collect();
    let mean = traces.iter().sum::<f64>() / N as f64;
    let var = traces.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (N - 1) as f64;
    // sd of the mean 1/√N ≈ 0.018; of the variance about √(2/N) ≈ 0.026.
    assert!(mean.abs() < 0.08, "trace mean {mean}");
    assert!((var - 1.0).abs() < 0.12, "trace variance {var}");
}

/// vgrad's `orthogonal` against PyTorch's `orthogonal_`, in distribution: for each shape and
/// statistic, vgrad's empirical CDF at PyTorch's percentiles (from 10 000 draws) stays within
/// the KS critical value of the percentile.
#[test]
fn distribution_matches_pytorch() {
    const N: usize = 3000;
    let g: Value = serde_json::from_str(GOLDEN).unwrap();
    let ps: Vec<f64> = g["p"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let torch_draws = g["draws"].as_f64().unwrap();
    // 0.1 % level of a two-sample KS test.
    let critical = 1.95 * (1.0 / N as f64 + 1.0 / torch_draws).sqrt();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let mut rng = vgrad::seeded_rng(9);
    for c in cases {
        let shape: Vec<usize> = c["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let stat = c["stat"].as_str().unwrap();
        let quantiles: Vec<f64> = c["quantiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (rows, cols) = matrix_dims(&shape);
        let k = rows.min(cols) - 1;
        let xs: Vec<f64> = (0..N)
            .map(|_| {
                let w = orthogonal::<f64>(&shape, 1.0, &mut rng).unwrap();
                let m = w.data();
                match stat {
                    "first_diag" => m[0],
                    "last_diag" => m[k * cols + k],
                    "trace" => (0..rows).map(|i| m[i * cols + i]).sum(),
                    other => panic!("golden fixture names an unknown statistic `{other}`"),
                }
            })
            .collect();
        let worst = quantiles
            .iter()
            .zip(&ps)
            .map(|(&q, &p)| (xs.iter().filter(|&&x| x <= q).count() as f64 / N as f64 - p).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < critical,
            "{shape:?} {stat}: CDF distance {worst} >= {critical}"
        );
    }
}
