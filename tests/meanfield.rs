//! Mean-field predictions (issue 21, item 4): closed forms, golden values from an independent
//! PyTorch computation (`tests/golden/meanfield.json`, from `tests/golden/meanfield_gen.py`),
//! properties, and the predictions against what a deep vgrad network measures.

use proptest::prelude::*;
use serde_json::Value;
use vgrad::meanfield::{critical_sigma_w, expect_normal, MeanField};
use vgrad::nn::init::Dist;
use vgrad::nn::Activation;
use vgrad::{GeluApprox, Tape, Tensor};

const GOLDEN: &str = include_str!("golden/meanfield.json");

fn act(name: &str) -> Activation<f64> {
    match name {
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        "gelu" => Activation::Gelu(GeluApprox::None),
        "gelu_tanh" => Activation::Gelu(GeluApprox::Tanh),
        "silu" => Activation::Silu,
        "softplus" => Activation::softplus(),
        "elu" => Activation::elu(),
        "selu" => Activation::Selu,
        other => panic!("golden fixture names an unknown activation `{other}`"),
    }
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want.abs().max(1e-3),
        "{what}: got {got}, want {want} (rel tol {rel})"
    );
}

#[test]
fn quadrature_matches_gaussian_moments() {
    close(expect_normal(|_| 1.0), 1.0, 1e-14, "E[1]");
    close(expect_normal(|z| z * z), 1.0, 1e-13, "E[z²]");
    close(expect_normal(|z| z.powi(4)), 3.0, 1e-13, "E[z⁴]");
    close(expect_normal(|z| z.powi(8)), 105.0, 1e-12, "E[z⁸]");
    assert!(expect_normal(|z| z.powi(3)).abs() < 1e-14, "odd moment");
    // E[cos z] = e^(−1/2): not a polynomial, so the rule's accuracy beyond its exact degree.
    close(expect_normal(f64::cos), (-0.5f64).exp(), 1e-13, "E[cos z]");
    // E[relu(√q z)²] = q/2: the kink at 0 integrates exactly on the symmetric rule.
    for q in [0.1f64, 1.0, 7.5] {
        close(
            expect_normal(|z| (q.sqrt() * z).max(0.0).powi(2)),
            q / 2.0,
            1e-13,
            "E[relu²]",
        );
    }
}

#[test]
fn relu_closed_forms() {
    for (sw, sb) in [(0.5, 0.0), (1.0, 0.3), (1.2, 0.5), (1.4, 1.0)] {
        let m = MeanField::new(Activation::Relu, sw, sb).unwrap();
        let p = m.predict().unwrap();
        let chi = sw * sw / 2.0;
        close(p.chi1, chi, 1e-12, "relu χ₁ = σ_w²/2");
        close(p.chi_q, chi, 1e-9, "relu χ_q = σ_w²/2");
        let q = if sb == 0.0 {
            0.0
        } else {
            sb * sb / (1.0 - chi)
        };
        // Rounding in V (about 1e-15) moves q* by that over 1 − χ₁.
        let tol = 1e-13 / (1.0 - chi);
        assert!(
            (p.q_star - q).abs() <= tol * q.max(1e-12),
            "q* {} vs {q}",
            p.q_star
        );
        assert_eq!(p.c_star, 1.0, "ReLU is never chaotic");
        close(p.xi_c, -1.0 / chi.ln(), 1e-9, "ξ_c");
        // The arc-cosine kernel (Cho & Saul 2009): E[relu(u₁)relu(u₂)] = q(√(1−c²) + (π − acos c)c)/(2π).
        if sb > 0.0 {
            for c in [-0.5f64, 0.0, 0.3, 0.9] {
                let k = p.q_star * ((1.0 - c * c).sqrt() + (std::f64::consts::PI - c.acos()) * c)
                    / (2.0 * std::f64::consts::PI);
                let want = (sw * sw * k + sb * sb) / p.q_star;
                // The 2-D rule (step 1/8) meets ReLU's kink along a slanted line: O(h²), ~1e-3.
                close(m.correlation_map(c, p.q_star), want, 5e-3, "relu C(c)");
            }
        }
    }
    // Past σ_w = √2 the variance diverges: no fixed point is an error, not a number.
    assert!(MeanField::new(Activation::Relu, 1.5, 0.0)
        .unwrap()
        .predict()
        .is_err());
    assert!(MeanField::new(Activation::Relu, 2f64.sqrt(), 0.1)
        .unwrap()
        .predict()
        .is_err());
    // Exactly at √2 with σ_b = 0 every variance is fixed: q⁰ = 1 stays.
    let p = MeanField::new(Activation::Relu, 2f64.sqrt(), 0.0)
        .unwrap()
        .predict()
        .unwrap();
    close(p.q_star, 1.0, 1e-12, "relu critical q*");
    assert!(p.xi_c.is_infinite());
    close(
        critical_sigma_w(Activation::Relu, 0.0).unwrap(),
        2f64.sqrt(),
        1e-12,
        "relu critical",
    );
    close(
        critical_sigma_w(Activation::Relu, 0.7).unwrap(),
        2f64.sqrt(),
        1e-12,
        "relu critical",
    );
    let leaky = critical_sigma_w(Activation::LeakyRelu(0.2), 0.3).unwrap();
    close(
        leaky,
        (2.0 / 1.04f64).sqrt(),
        1e-12,
        "leaky relu critical √(2/(1+s²))",
    );
}

#[test]
fn identity_closed_forms() {
    let p = MeanField::new(Activation::Identity, 0.8, 0.6)
        .unwrap()
        .predict()
        .unwrap();
    close(p.q_star, 0.36 / (1.0 - 0.64), 1e-12, "linear q*");
    close(p.chi1, 0.64, 1e-13, "linear χ₁");
    close(p.chi_q, 0.64, 1e-9, "linear χ_q");
}

#[test]
fn tanh_at_zero_bias_is_critical_at_one() {
    let sw = critical_sigma_w(Activation::Tanh, 0.0).unwrap();
    // χ₁ − 1 grows only like (σ_w − 1)² on the chaotic side, so rounding (1e-16) limits the
    // root to about 1e-8.
    close(sw, 1.0, 1e-7, "tanh critical σ_w at σ_b = 0");
    // Ordered side: the variance dies out, and χ₁ = σ_w² φ'(0)².
    let p = MeanField::new(Activation::Tanh, 0.9, 0.0)
        .unwrap()
        .predict()
        .unwrap();
    assert_eq!(p.q_star, 0.0);
    close(p.chi1, 0.81, 1e-13, "tanh χ₁ at q* = 0");
    // Chaotic side: a positive fixed point, c* = 0 (odd φ, no bias), χ₁ > 1.
    let p = MeanField::new(Activation::Tanh, 1.5, 0.0)
        .unwrap()
        .predict()
        .unwrap();
    assert!(p.q_star > 0.1 && p.chi1 > 1.0, "{p:?}");
    assert!(p.c_star.abs() < 1e-9, "{p:?}");
}

#[test]
fn golden_points_match_an_independent_computation() {
    let g: Value = serde_json::from_str(GOLDEN).unwrap();
    let points = g["points"].as_array().unwrap();
    assert!(points.len() >= 10);
    for c in points {
        let name = c["act"].as_str().unwrap();
        let (sw, sb) = (
            c["sigma_w"].as_f64().unwrap(),
            c["sigma_b"].as_f64().unwrap(),
        );
        let p = MeanField::new(act(name), sw, sb)
            .unwrap()
            .predict()
            .unwrap();
        let what = |k: &str| format!("{name} σ_w={sw} σ_b={sb}: {k}");
        // ELU and SELU have a kink in φ' at 0, which both rules integrate to about 1e-6.
        let tol: f64 = if matches!(name, "elu" | "selu") {
            2e-5
        } else {
            1e-8
        };
        for (k, got) in [
            ("q_star", p.q_star),
            ("chi1", p.chi1),
            ("chi_q", p.chi_q),
            ("c_star", p.c_star),
            ("chi_c", p.chi_c),
        ] {
            let want = c[k].as_f64().unwrap();
            // χ_q in the fixture is a central difference (error ~1e-10 relative); c* and χ_c
            // come from a 2-D grid of step 1/24.
            let t = if k == "chi_q" || k == "c_star" || k == "chi_c" {
                tol.max(1e-6)
            } else {
                tol
            };
            close(got, want, t, &what(k));
        }
    }
    for c in g["critical"].as_array().unwrap() {
        let name = c["act"].as_str().unwrap();
        let sb = c["sigma_b"].as_f64().unwrap();
        let want = c["sigma_w"].as_f64().unwrap();
        let got = critical_sigma_w(act(name), sb).unwrap();
        close(
            got,
            want,
            1e-7,
            &format!("{name} critical σ_w at σ_b = {sb}"),
        );
        // On the line χ₁ = 1, and the correlation depth scale diverges.
        let p = MeanField::new(act(name), got, sb)
            .unwrap()
            .predict()
            .unwrap();
        close(p.chi1, 1.0, 1e-7, "χ₁ on the critical line");
        assert!(p.xi_c > 1e3, "ξ_c on the critical line: {}", p.xi_c);
    }
}

#[test]
fn invalid_inputs_are_config_errors() {
    for (sw, sb) in [
        (-1.0, 0.0),
        (1.0, -0.1),
        (f64::NAN, 0.0),
        (1.0, f64::INFINITY),
    ] {
        let e = MeanField::new(Activation::Tanh, sw, sb).unwrap_err();
        assert!(matches!(e, vgrad::Error::Config(_)), "{e}");
    }
    assert!(matches!(
        critical_sigma_w(Activation::Tanh, f64::NAN),
        Err(vgrad::Error::Config(_))
    ));
    assert!(MeanField::new(Activation::LeakyRelu(f64::NAN), 1.0, 0.0).is_err());
    let sp = Activation::Softplus {
        beta: 0.0,
        threshold: 20.0,
    };
    assert!(MeanField::new(sp, 1.0, 0.0).is_err());
    let e = MeanField::new(Activation::Relu, 3.0, 0.0)
        .unwrap()
        .predict()
        .unwrap_err();
    assert!(e.to_string().contains("diverges"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// q* satisfies its own equation, and χ₁ is what the definition says at q*.
    #[test]
    fn fixed_point_satisfies_its_equation(u in 0.05f64..1.0, sb in 0.01f64..1.5, k in 0usize..4) {
        let a = [Activation::Tanh, Activation::Sigmoid, Activation::Silu, Activation::elu()][k];
        // SiLU and ELU grow linearly like ReLU: their variance diverges for σ_w ≥ √2.
        let sw = u * if k < 2 { 3.0 } else { 1.4 };
        let m = MeanField::new(a, sw, sb).unwrap();
        let p = m.predict().unwrap();
        prop_assert!((m.variance_map(p.q_star) - p.q_star).abs() <= 1e-12 * p.q_star.max(1e-12));
        prop_assert!((m.chi1_at(p.q_star) - p.chi1).abs() <= 1e-15 * p.chi1.max(1.0));
        prop_assert!((m.correlation_map(p.c_star, p.q_star) - p.c_star).abs() < 1e-9);
        prop_assert!(p.xi_q > 0.0 && p.xi_c > 0.0);
    }

    /// χ₁ grows with σ_w along the fixed-point curve (tanh: more weight variance, more chaos).
    #[test]
    fn chi1_is_monotone_in_sigma_w(sw in 0.2f64..3.0, dsw in 0.01f64..0.5, sb in 0.0f64..1.5) {
        let chi = |sw| {
            let m = MeanField::new(Activation::Tanh, sw, sb).unwrap();
            m.chi1_at(m.fixed_point().unwrap())
        };
        prop_assert!(chi(sw + dsw) > chi(sw));
    }
}

/// One forward and backward pass through a deep, wide tanh network with Gaussian weights
/// N(0, σ_w²/N) and biases N(0, σ_b²): per layer, the norm of the gradient with respect to the
/// pre-activations and their mean square.
fn measure(
    sw: f64,
    sb: f64,
    depth: usize,
    width: usize,
    batch: usize,
    seed: u64,
) -> Vec<(f64, f64)> {
    let mut rng = vgrad::seeded_rng(seed);
    let w_dist = Dist::Normal(0.0, sw / (width as f64).sqrt());
    let b_dist = Dist::Normal(0.0, sb);
    let tape = Tape::<f64>::new();
    let x = Tensor::from_fn(&[batch, width], |_| Dist::Normal(0.0, 1.0).sample(&mut rng));
    let mut a = tape.leaf(x);
    let mut pre = Vec::new();
    for _ in 0..depth {
        let w = Tensor::from_fn(&[width, width], |_| w_dist.sample(&mut rng));
        let b = Tensor::from_fn(&[width], |_| b_dist.sample(&mut rng));
        let h = (a.matmul(tape.constant(w)) + tape.constant(b)).retain_grad();
        pre.push(h);
        a = h.tanh();
    }
    // A random linear read-out, so the gradient entering the last layer is isotropic.
    let r = Tensor::from_fn(&[batch, width], |_| Dist::Normal(0.0, 1.0).sample(&mut rng));
    let loss = (a * tape.constant(r)).sum();
    let grads = loss.backward();
    pre.iter()
        .map(|&h| {
            let g = grads.wrt(h).unwrap();
            let norm = g.data().iter().map(|v| v * v).sum::<f64>().sqrt();
            let v = h.value();
            let ms = v.data().iter().map(|v| v * v).sum::<f64>() / v.data().len() as f64;
            (norm, ms)
        })
        .collect()
}

/// The monitor's quantity, the ratio of gradient norms of consecutive layers, is √χ₁ per layer
/// in both phases; the pre-activations' mean square deep in the network is q*.
#[test]
fn deep_network_measures_the_predictions() {
    const DEPTH: usize = 24;
    const WIDTH: usize = 512;
    const BATCH: usize = 16;
    // Discard the first layers, where the variance is still travelling to q*.
    const SKIP: usize = 6;
    for (sw, sb, phase) in [(0.9, 0.3, "ordered"), (2.0, 0.3, "chaotic")] {
        let p = MeanField::new(Activation::Tanh, sw, sb)
            .unwrap()
            .predict()
            .unwrap();
        assert_eq!(p.chi1 < 1.0, phase == "ordered", "{p:?}");
        let m = measure(sw, sb, DEPTH, WIDTH, BATCH, 21);
        // Geometric mean of the per-layer ratio ‖∂L/∂hˡ‖ / ‖∂L/∂hˡ⁺¹‖ over the deep layers.
        let span = (DEPTH - 1 - SKIP) as f64;
        let ratio = (m[SKIP].0 / m[DEPTH - 1].0).powf(1.0 / span);
        let want = p.chi1.sqrt();
        println!(
            "{phase}: σ_w {sw} σ_b {sb}: measured ratio {ratio:.4}, √χ₁ {want:.4}; q* {:.4}",
            p.q_star
        );
        assert!(
            (ratio - want).abs() < 0.02 * want,
            "{phase}: gradient ratio {ratio} vs √χ₁ {want}"
        );
        let q_meas = m[SKIP..].iter().map(|v| v.1).sum::<f64>() / (DEPTH - SKIP) as f64;
        println!("{phase}: measured q {q_meas:.4}");
        // Finite width (1/N corrections) and one network's sample: 5 %.
        assert!(
            (q_meas - p.q_star).abs() < 0.05 * p.q_star,
            "{phase}: q {q_meas} vs q* {}",
            p.q_star
        );
    }
}
