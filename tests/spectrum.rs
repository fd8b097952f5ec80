//! `vgrad::spectrum`: exact Jacobians against finite differences, reverse mode and closed forms
//! (a linear network's Jacobian is the product of its weights; an orthogonal linear stack is an
//! isometry); the Lanczos estimate against the exact spectrum; per-layer spectra; bad input.

use nalgebra::DMatrix;
use proptest::prelude::*;
use std::time::Instant;
use vgrad::forward::{jvp, vjp};
use vgrad::nn::init::Init;
use vgrad::nn::{
    Activation, BatchNorm1d, BatchNormConfig, Ctx, Dropout, Linear, LinearConfig, Module,
    Sequential,
};
use vgrad::spectrum::{
    block_spectra, estimate_spectrum, input_jacobian, jacobian_spectrum, layer_spectra,
    singular_values, LanczosConfig, Spectrum,
};
use vgrad::{Error, Tape, Tensor};

/// A stack of `depth` square linear layers without bias, weights from `init`, each followed by
/// `act` when given.
fn stack(
    width: usize,
    depth: usize,
    init: Init,
    act: Option<Activation<f64>>,
    seed: u64,
) -> Sequential<f64> {
    let mut rng = vgrad::seeded_rng(seed);
    let cfg = LinearConfig::init(init).no_bias();
    let mut net = Sequential::new();
    for _ in 0..depth {
        net = net.push(Linear::with_config(width, width, cfg, &mut rng).unwrap());
        if let Some(a) = act {
            net = net.push(a);
        }
    }
    net
}

fn linear_stack(width: usize, depth: usize, init: Init, seed: u64) -> Sequential<f64> {
    stack(width, depth, init, None, seed)
}

/// `widths[0] → widths[1] → …` with the activation after every layer but the last.
fn mlp(widths: &[usize], act: Activation<f64>, seed: u64) -> Sequential<f64> {
    let mut rng = vgrad::seeded_rng(seed);
    let mut net = Sequential::new();
    for (i, w) in widths.windows(2).enumerate() {
        net = net.push(Linear::new(w[0], w[1], &mut rng).unwrap());
        if i + 2 < widths.len() {
            net = net.push(act);
        }
    }
    net
}

fn gaussian(std: f64) -> Init {
    Init::Normal { mean: 0.0, std }
}

fn point(n: usize, seed: u64) -> Tensor<f64> {
    let mut rng = vgrad::seeded_rng(seed);
    Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor(&[1, n], &mut rng)
    .unwrap()
}

fn to_matrix(t: &Tensor<f64>) -> DMatrix<f64> {
    DMatrix::from_row_slice(t.shape()[0], t.shape()[1], t.data())
}

fn forward_row(net: &mut Sequential<f64>, x: &Tensor<f64>) -> Tensor<f64> {
    let tape = Tape::new();
    net.forward(&mut Ctx::new(&tape), tape.constant(x.clone()))
        .value()
}

/// Central finite differences of the network's output, column by column.
fn fd_jacobian(net: &mut Sequential<f64>, x: &Tensor<f64>, h: f64) -> DMatrix<f64> {
    let n = x.numel();
    let m = forward_row(net, x).numel();
    let mut j = DMatrix::zeros(m, n);
    for c in 0..n {
        let shifted =
            |d: f64| Tensor::from_fn(&[1, n], |k| x.data()[k] + if k == c { d } else { 0.0 });
        let (yp, ym) = (
            forward_row(net, &shifted(h)),
            forward_row(net, &shifted(-h)),
        );
        for r in 0..m {
            j[(r, c)] = (yp.data()[r] - ym.data()[r]) / (2.0 * h);
        }
    }
    j
}

fn max_abs_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    (a - b).abs().max()
}

#[test]
fn linear_network_jacobian_is_the_product_of_its_weights() {
    // Non-square on purpose: 5 → 7 → 3 → 4, with biases (which do not enter J).
    let mut net = mlp(&[5, 7, 3, 4], Activation::Identity, 3);
    let mut product = DMatrix::<f64>::identity(5, 5);
    for l in net
        .children()
        .iter()
        .filter_map(|c| c.as_any().downcast_ref::<Linear<f64>>())
    {
        product = to_matrix(l.weight().value()) * product;
    }
    let j = input_jacobian(&mut net, &point(5, 1)).unwrap();
    assert_eq!(j.shape(), &[4, 5]);
    let err = max_abs_diff(&to_matrix(&j), &product);
    assert!(err < 1e-13, "J differs from W₃W₂W₁ by {err:e}");

    let s = jacobian_spectrum(&mut net, &point(5, 2)).unwrap();
    let want = product.singular_values();
    let mut want: Vec<f64> = want.iter().copied().collect();
    want.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(s.len(), 4);
    for (a, b) in s.singular_values().iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "σ {a} against nalgebra's {b}");
    }
}

#[test]
fn tanh_network_jacobian_matches_finite_differences_and_reverse_mode() {
    let mut net = mlp(&[6, 10, 10, 3], Activation::Tanh, 5);
    let x = point(6, 9);
    let j = to_matrix(&input_jacobian(&mut net, &x).unwrap());
    let fd = fd_jacobian(&mut net, &x, 1e-5);
    let err = max_abs_diff(&j, &fd);
    assert!(err < 1e-8, "J against central differences: {err:e}");

    // Row r of J is Jᵀ·e_r, one VJP each.
    for r in 0..3 {
        let e = Tensor::from_fn(&[1, 3], |k| if k == r { 1.0 } else { 0.0 });
        let (_, row) = vjp(|tape, x| net.forward(&mut Ctx::new(tape), x), &x, &e).unwrap();
        for c in 0..6 {
            let d = (row.data()[c] - j[(r, c)]).abs();
            assert!(
                d < 1e-14,
                "row {r} col {c}: VJP {} vs JVP {}",
                row.data()[c],
                j[(r, c)]
            );
        }
    }
}

#[test]
fn a_vector_input_is_taken_as_one_row_and_f32_models_work() {
    let mut net = mlp(&[3, 4, 2], Activation::Tanh, 0);
    let x = Tensor::vector(&[0.1, -0.2, 0.3]);
    let a = input_jacobian(&mut net, &x).unwrap();
    let b = input_jacobian(&mut net, &Tensor::from_vec(x.to_vec(), &[1, 3]).unwrap()).unwrap();
    assert_eq!(a.data(), b.data());

    let mut rng = vgrad::seeded_rng(0);
    let mut net32 = Sequential::<f32>::new()
        .push(Linear::new(3, 4, &mut rng).unwrap())
        .push(Activation::Tanh);
    let j32 = input_jacobian(&mut net32, &Tensor::vector(&[0.1f32, -0.2, 0.3])).unwrap();
    assert_eq!(j32.shape(), &[4, 3]);
    assert!(j32.all_finite());
}

#[test]
fn orthogonal_linear_stack_is_an_isometry_and_a_gaussian_one_is_not() {
    let (width, depth) = (32, 20);
    let x = point(width, 4);
    let mut orth = linear_stack(width, depth, Init::Orthogonal { gain: 1.0 }, 1);
    let s = jacobian_spectrum(&mut orth, &x).unwrap();
    assert!(
        (s.max() - 1.0).abs() < 1e-12 && (s.min() - 1.0).abs() < 1e-12,
        "orthogonal: σ in [{}, {}]",
        s.min(),
        s.max()
    );
    assert!(s.variance_squared() < 1e-12 && (s.condition() - 1.0).abs() < 1e-11);

    // Gaussian with std 1/√width: χ₁ = 1, so ⟨σ²⟩ stays of order 1, but the spread grows with
    // depth (for a product of L Ginibre matrices it is about L + 1 for large width).
    let mut gauss = linear_stack(width, depth, gaussian(1.0 / (width as f64).sqrt()), 1);
    let g = jacobian_spectrum(&mut gauss, &x).unwrap();
    assert!(g.condition() > 1e3, "Gaussian condition {}", g.condition());
    assert!(
        g.variance_squared() > 1.0,
        "Gaussian var σ² {}",
        g.variance_squared()
    );
    assert!(g.mean_squared() > 0.1 && g.mean_squared() < 10.0);
}

#[test]
fn spectrum_statistics_and_density() {
    let s = Spectrum::from_singular_values(vec![1.0, 3.0, 2.0, 0.0]).unwrap();
    assert_eq!(s.singular_values(), &[3.0, 2.0, 1.0, 0.0]);
    assert_eq!((s.max(), s.min()), (3.0, 0.0));
    assert!((s.mean_squared() - 14.0 / 4.0).abs() < 1e-15);
    // σ² = 9, 4, 1, 0: mean 3.5, variance (30.25 + 0.25 + 6.25 + 12.25)/4.
    assert!((s.variance_squared() - 49.0 / 4.0).abs() < 1e-12);
    assert!(s.condition().is_infinite());

    for log in [false, true] {
        let d = s.density(6, log);
        assert_eq!(d.len(), 6);
        // Widths from the centres: equal on the chosen axis.
        let axis = |v: f64| if log { v.log10() } else { v };
        let w = axis(d[1].0) - axis(d[0].0);
        let total: f64 = d.iter().map(|(_, p)| p * w).sum();
        assert!((total - 1.0).abs() < 1e-12, "log {log}: integral {total}");
    }
    assert!(s.density(0, false).is_empty());
    // On a log axis the axis starts at the SVD's resolution and 0 counts in the first bin.
    assert!((s.resolution() - 4.0 * f64::EPSILON * 3.0).abs() < 1e-30);
    let d = s.density(6, true);
    assert!(
        (d[0].0.log10() - (s.resolution().log10() + (3f64 / s.resolution()).log10() / 12.0)).abs()
            < 1e-12
    );
    let w = d[1].0.log10() - d[0].0.log10();
    assert!((d[0].1 * w - 0.25).abs() < 1e-12);
    // The smoothed density integrates to 1 over a range a few bandwidths wider.
    for log in [false, true] {
        let (lo, hi, bw) = if log {
            (1e-3, 1e3, 0.2)
        } else {
            (-2.0, 5.0, 0.2)
        };
        let d = s.smoothed_density(701, lo, hi, bw, log).unwrap();
        let axis = |v: f64| if log { v.log10() } else { v };
        let step = axis(d[1].0) - axis(d[0].0);
        let total: f64 = d.iter().map(|(_, p)| p * step).sum();
        // On a log axis σ = 0 sits at log₁₀ of the smallest f64, far outside: 3 of 4 values.
        let want = if log { 0.75 } else { 1.0 };
        assert!(
            (total - want).abs() < 1e-3,
            "log {log}: smoothed integral {total}"
        );
    }
    // All values equal: a range is made around them.
    let one = Spectrum::from_singular_values(vec![1.0; 5]).unwrap();
    let d = one.density(3, false);
    let w = d[1].0 - d[0].0;
    assert!((d.iter().map(|(_, p)| p * w).sum::<f64>() - 1.0).abs() < 1e-9);
    // density_in: values outside the range are left out of the integral.
    let d = s.density_in(2, 0.5, 2.5, false).unwrap();
    assert!((d.iter().map(|(_, p)| p * 1.0).sum::<f64>() - 0.5).abs() < 1e-12);
}

#[test]
fn per_layer_spectra_follow_the_children() {
    let mut net = mlp(&[4, 6, 6, 3], Activation::Tanh, 2);
    let x = point(4, 3);
    let layers = layer_spectra(&mut net, &x).unwrap();
    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3", "4"]);
    // A Linear child's spectrum is its weight's.
    let w = net.get::<Linear<f64>>(2).unwrap().weight().value().clone();
    let want = singular_values(&w).unwrap();
    for (a, b) in layers[2].1.singular_values().iter().zip(&want) {
        assert!((a - b).abs() < 1e-13);
    }
    // tanh's is |1 − tanh²(h)| at the input that reaches it: h = first layer's output.
    let h = forward_row(
        &mut Sequential::new().push(net.get::<Linear<f64>>(0).unwrap().clone()),
        &x,
    );
    let mut want: Vec<f64> = h.data().iter().map(|v| 1.0 - v.tanh().powi(2)).collect();
    want.sort_by(|a, b| b.total_cmp(a));
    for (a, b) in layers[1].1.singular_values().iter().zip(&want) {
        assert!((a - b).abs() < 1e-14);
    }

    // Blocks of two: the whole network's Jacobian at the end equals the last block's product.
    let blocks = block_spectra(&mut net, &x, 2).unwrap();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["0-1", "2-3", "4"]);
    let whole = block_spectra(&mut net, &x, 5).unwrap();
    let direct = jacobian_spectrum(&mut net, &x).unwrap();
    assert_eq!(whole[0].1.len(), direct.len());
    for (a, b) in whole[0]
        .1
        .singular_values()
        .iter()
        .zip(direct.singular_values())
    {
        assert!((a - b).abs() < 1e-13);
    }
}

#[test]
fn training_mode_dropout_is_refused_and_eval_mode_is_not() {
    let mut rng = vgrad::seeded_rng(0);
    let mut net = Sequential::<f64>::new()
        .push(Linear::new(8, 8, &mut rng).unwrap())
        .push(Dropout::new(0.5, 1).unwrap());
    let x = point(8, 0);
    assert!(matches!(input_jacobian(&mut net, &x), Err(Error::State(_))));
    net.eval();
    assert!(input_jacobian(&mut net, &x).is_ok());
}

#[test]
fn eval_mode_batchnorm_jacobian_is_its_scale_times_the_weight() {
    // In evaluation, BatchNorm is y = γ(x − μ)/√(v + ε) + β per feature: J = diag(γ/√(v + ε))·W.
    let mut rng = vgrad::seeded_rng(3);
    let lin = Linear::<f64>::new(4, 3, &mut rng).unwrap();
    let (gamma, var) = ([1.5, -0.5, 2.0], [0.5, 2.0, 1.0]);
    let bn = BatchNorm1d::from_tensors(
        BatchNormConfig::default(),
        Some((Tensor::vector(&gamma), Tensor::vector(&[0.1, 0.2, 0.3]))),
        Some((Tensor::vector(&[0.3, -0.1, 0.0]), Tensor::vector(&var))),
    )
    .unwrap();
    let w = lin.weight().value().clone();
    let mut net = Sequential::new().push(lin).push(bn);
    net.eval();
    let j = input_jacobian(&mut net, &point(4, 1)).unwrap();
    for r in 0..3 {
        let scale = gamma[r] / (var[r] + 1e-5f64).sqrt();
        for c in 0..4 {
            let want = scale * w.data()[r * 4 + c];
            assert!((j.data()[r * 4 + c] - want).abs() < 1e-14);
        }
    }
}

#[test]
fn f32_models_are_estimated_too() {
    let mut rng = vgrad::seeded_rng(0);
    let mut net = Sequential::<f32>::new()
        .push(Linear::new(16, 16, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(16, 16, &mut rng).unwrap());
    let x = Tensor::from_fn(&[1, 16], |i| (i as f32 * 0.3).cos());
    let exact = jacobian_spectrum(&mut net, &x).unwrap();
    let cfg = LanczosConfig {
        steps: 16,
        ..LanczosConfig::default()
    };
    let est = estimate_spectrum(&mut net, &x, &cfg).unwrap();
    // f32 products: agreement to f32 precision.
    assert!((est.top - exact.max()).abs() < 1e-5 * exact.max());
    assert!((est.bottom - exact.min()).abs() < 1e-5 * exact.max());
}

#[test]
fn bad_input_is_an_error() {
    let mut net = mlp(&[3, 4, 2], Activation::Tanh, 0);
    for shape in [&[2, 3][..], &[0][..], &[1, 0][..], &[1, 1, 3][..]] {
        let x = Tensor::<f64>::zeros(shape);
        assert!(
            matches!(input_jacobian(&mut net, &x), Err(Error::Shape(_))),
            "shape {shape:?}"
        );
    }
    assert!(matches!(
        singular_values(&Tensor::vector(&[1.0, 2.0])),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        singular_values(&Tensor::zeros(&[0, 3])),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        singular_values(&Tensor::from_vec(vec![1.0, f64::NAN], &[1, 2]).unwrap()),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Spectrum::from_singular_values(vec![]),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Spectrum::from_singular_values(vec![1.0, -0.5]),
        Err(Error::Config(_))
    ));
    let s = Spectrum::from_singular_values(vec![1.0, 2.0]).unwrap();
    for (bins, lo, hi, log) in [
        (0, 0.0, 1.0, false),
        (3, 1.0, 1.0, false),
        (3, 0.0, 1.0, true),
    ] {
        assert!(matches!(
            s.density_in(bins, lo, hi, log),
            Err(Error::Config(_))
        ));
    }
    assert!(matches!(
        block_spectra(&mut net, &point(3, 0), 0),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        layer_spectra(&mut Sequential::<f64>::new(), &point(3, 0)),
        Err(Error::Shape(_))
    ));
}

/// A critical tanh network (σ_w = 1, no bias) of `depth` square layers of `width`.
fn critical_tanh(width: usize, depth: usize, orthogonal: bool, seed: u64) -> Sequential<f64> {
    let init = if orthogonal {
        Init::Orthogonal { gain: 1.0 }
    } else {
        gaussian(1.0 / (width as f64).sqrt())
    };
    stack(width, depth, init, Some(Activation::Tanh), seed)
}

/// Σ |p − q|·width over histogram bins of equal width on the log₁₀ σ axis.
fn l1_log(p: &[(f64, f64)], q: &[(f64, f64)]) -> f64 {
    let w = p[1].0.log10() - p[0].0.log10();
    p.iter().zip(q).map(|(a, b)| (a.1 - b.1).abs() * w).sum()
}

#[test]
fn lanczos_matches_the_exact_spectrum_on_a_64_wide_network() {
    // The figure the issue asks for: exact against estimated on a 64-wide critical tanh
    // network, orthogonal and Gaussian, for several step and probe counts. Printed with
    // --nocapture. Densities on the log₁₀ σ axis: a 16-bin histogram over the exact range, and
    // Gaussian-smoothed (bandwidth 0.1 decade, 400 points over that range ± 1 decade).
    let (width, depth, bins) = (64, 10, 16);
    println!("64-wide tanh, depth {depth}: exact against Lanczos (relative errors; L1 distances)");
    println!("init          k  probes  top       bottom    <σ²>      hist L1  smooth L1  products");
    for orthogonal in [true, false] {
        let mut net = critical_tanh(width, depth, orthogonal, 11);
        let x = point(width, 12);
        let exact = jacobian_spectrum(&mut net, &x).unwrap();
        let (lo, hi) = (exact.min(), exact.max());
        let d_exact = exact.density_in(bins, lo, hi, true).unwrap();
        let (slo, shi, bw) = (lo / 10.0, hi * 10.0, 0.1);
        let s_exact = exact.smoothed_density(400, slo, shi, bw, true).unwrap();
        println!(
            "  exact σ in [{lo:.3e}, {hi:.3e}], <σ²> {:.4}",
            exact.mean_squared()
        );
        // What any f64 method resolves at the bottom: about ε·σ_max (see `bottom`'s docs).
        let floor = 1e-12 * hi;
        for (k, probes) in [(10, 4), (20, 4), (40, 4), (64, 4), (64, 16)] {
            let cfg = LanczosConfig {
                steps: k,
                probes,
                seed: 3,
            };
            let est = estimate_spectrum(&mut net, &x, &cfg).unwrap();
            let top = (est.top - exact.max()).abs() / exact.max();
            let bottom = (est.bottom - exact.min()).abs() / exact.min();
            let ms = (est.mean_squared() - exact.mean_squared()).abs() / exact.mean_squared();
            let l1 = l1_log(&d_exact, &est.density_in(bins, lo, hi, true).unwrap());
            let s_est = est.smoothed_density(400, slo, shi, bw, true).unwrap();
            let sl1 = l1_log(&s_exact, &s_est);
            let name = if orthogonal { "orthogonal" } else { "Gaussian" };
            println!(
                "{name:<10} {k:>4} {probes:>7}  {top:<8.2e}  {bottom:<8.2e}  {ms:<8.2e}  \
                 {l1:>7.3}  {sl1:>9.3}  {:>8}",
                est.products
            );
            assert!(
                est.top <= exact.max() * (1.0 + 1e-10),
                "Ritz values lie inside"
            );
            assert!(est.bottom >= exact.min() - floor);
            if k >= 40 {
                assert!(top < 1e-6, "k = {k}: top σ off by {top:e}");
            }
            if k == width {
                let off = (est.bottom - exact.min()).abs();
                assert!(
                    bottom < 1e-6 || off < floor,
                    "k = n: bottom σ off by {off:e}"
                );
                // The probes are random: ⟨σ²⟩ and the weights carry Hutchinson noise.
                assert!(ms < 0.35, "k = n: ⟨σ²⟩ off by {ms}");
                assert!(
                    l1 < 0.6 && sl1 < 0.6,
                    "k = n: density L1 {l1}, smoothed {sl1}"
                );
            }
        }
    }
}

#[test]
fn lanczos_products_on_one_recording_against_re_recording() {
    // The choice the module documents: JᵀJ·v on one recorded tape (Var::jvp then
    // backward_with) against recording the model again for each JVP and each VJP. Same
    // numbers; the time per product pair is printed.
    let mut net = critical_tanh(64, 20, true, 1);
    let x = point(64, 2);
    let reps = 50;
    let dirs: Vec<Tensor<f64>> = (0..reps).map(|i| point(64, 100 + i as u64)).collect();

    let t0 = Instant::now();
    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    tape.set_grad_enabled(false);
    let y = net.forward(&mut Ctx::new(&tape), xv);
    let one: Vec<Tensor<f64>> = dirs
        .iter()
        .map(|v| {
            let jv = y.jvp(&[xv], std::slice::from_ref(v)).unwrap();
            y.backward_with(jv).wrt(xv).unwrap().clone()
        })
        .collect();
    let t_one = t0.elapsed().as_secs_f64() / reps as f64;

    let t0 = Instant::now();
    let again: Vec<Tensor<f64>> = dirs
        .iter()
        .map(|v| {
            let (_, jv) = jvp(|t, x| net.forward(&mut Ctx::new(t), x), &x, v).unwrap();
            vjp(|t, x| net.forward(&mut Ctx::new(t), x), &x, &jv)
                .unwrap()
                .1
        })
        .collect();
    let t_again = t0.elapsed().as_secs_f64() / reps as f64;
    println!(
        "JᵀJ·v, 64 wide, depth 20: one recording {:.1} µs, re-recorded {:.1} µs per product pair",
        t_one * 1e6,
        t_again * 1e6
    );
    for (a, b) in one.iter().zip(&again) {
        assert!(a.allclose(b, 1e-12, 1e-14));
    }
}

#[test]
fn lanczos_on_a_wide_to_narrow_jacobian_finds_the_null_space() {
    // J is 3 × 8: as a map on ℝ⁸ it has 5 zero singular values.
    let mut net = mlp(&[8, 6, 3], Activation::Tanh, 4);
    let x = point(8, 5);
    let exact = jacobian_spectrum(&mut net, &x).unwrap();
    let est = estimate_spectrum(&mut net, &x, &LanczosConfig::default()).unwrap();
    assert!((est.top - exact.max()).abs() < 1e-10 * exact.max());
    assert!(est.bottom < 1e-8, "bottom {}", est.bottom);
    let again = estimate_spectrum(&mut net, &x, &LanczosConfig::default()).unwrap();
    assert_eq!(est, again, "same seed, same estimate");
    let other = LanczosConfig {
        seed: 1,
        ..LanczosConfig::default()
    };
    assert_ne!(
        est.nodes,
        estimate_spectrum(&mut net, &x, &other).unwrap().nodes
    );
}

#[test]
fn lanczos_bad_configuration_is_an_error() {
    let mut net = mlp(&[3, 4, 2], Activation::Tanh, 0);
    let x = point(3, 0);
    for cfg in [
        LanczosConfig {
            steps: 0,
            ..LanczosConfig::default()
        },
        LanczosConfig {
            probes: 0,
            ..LanczosConfig::default()
        },
    ] {
        assert!(matches!(
            estimate_spectrum(&mut net, &x, &cfg),
            Err(Error::Config(_))
        ));
    }
    let bad = Tensor::<f64>::zeros(&[2, 3]);
    assert!(matches!(
        estimate_spectrum(&mut net, &bad, &LanczosConfig::default()),
        Err(Error::Shape(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any small tanh network: J against central differences, and Σσ² = ‖J‖²_F.
    #[test]
    fn jacobian_matches_finite_differences(
        n_in in 1usize..6, hidden in 1usize..8, n_out in 1usize..5, seed in 0u64..1000,
    ) {
        let mut net = mlp(&[n_in, hidden, n_out], Activation::Tanh, seed);
        let x = point(n_in, seed + 1);
        let j = input_jacobian(&mut net, &x).unwrap();
        let fd = fd_jacobian(&mut net, &x, 1e-5);
        prop_assert!(max_abs_diff(&to_matrix(&j), &fd) < 1e-8);
        let s = jacobian_spectrum(&mut net, &x).unwrap();
        prop_assert_eq!(s.len(), n_in.min(n_out));
        let fro: f64 = j.data().iter().map(|v| v * v).sum();
        let sum_sq: f64 = s.singular_values().iter().map(|v| v * v).sum();
        prop_assert!((fro - sum_sq).abs() <= 1e-12 * fro.max(1.0));
    }

    /// With as many steps as inputs, Lanczos recovers the extreme singular values of any small
    /// tanh network (as a map on ℝⁿ: 0 at the bottom when m < n).
    #[test]
    fn full_lanczos_recovers_the_extremes(
        n_in in 1usize..7, hidden in 1usize..8, n_out in 1usize..7, seed in 0u64..1000,
    ) {
        let mut net = mlp(&[n_in, hidden, n_out], Activation::Tanh, seed);
        let x = point(n_in, seed + 2);
        let exact = jacobian_spectrum(&mut net, &x).unwrap();
        let cfg = LanczosConfig { steps: n_in, probes: 1, seed };
        let est = estimate_spectrum(&mut net, &x, &cfg).unwrap();
        let tol = 1e-9 * exact.max().max(1e-300);
        prop_assert!((est.top - exact.max()).abs() <= tol, "top {} vs {}", est.top, exact.max());
        let bottom = if n_out < n_in || hidden < n_in { 0.0 } else { exact.min() };
        prop_assert!((est.bottom - bottom).abs() <= tol.max(1e-12),
            "bottom {} vs {}", est.bottom, bottom);
        let weights: f64 = est.nodes.iter().map(|(_, w)| w).sum();
        prop_assert!((weights - 1.0).abs() < 1e-12);
    }
}
