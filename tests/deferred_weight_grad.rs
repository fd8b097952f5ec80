//! A wide Linear layer's weight gradient is kept as its factors `Gᵀ·X` after a plain backward
//! sweep, formed only when read, and never formed by plain SGD, which adds `−lr·Gᵀ·X` to the
//! weight in one product (src/lazy.rs). Whatever reads it, it must be the gradient: checked
//! against a triple loop and central differences, and every optimiser must land where the
//! fused step and the formed gradient land.

use rand::{rngs::StdRng, SeedableRng};
use vgrad::nn::{
    clip_grad_norm, Activation, Adam, AdamConfig, Ctx, Linear, Module, Optimizer, ParamGrads,
    Sequential, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor, Var};

/// Deterministic values in [-1, 1).
fn values(n: usize, salt: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i * 37 + salt * 101) % 97) as f64) / 48.5 - 1.0)
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// `L = Σ (x·Wᵀ + b) ⊙ C` has `∂L/∂W = Cᵀ·x`: a triple loop is the reference.
#[test]
fn gradient_kept_as_factors_is_the_product() {
    let (rows, inp, out) = (3, 40, 30); // 3·70 ≤ 1200/2: kept as factors
    let x = Tensor::from_vec(values(rows * inp, 1), &[rows, inp]).unwrap();
    let w0 = Tensor::from_vec(values(out * inp, 2), &[out, inp]).unwrap();
    let c = Tensor::from_vec(values(rows * out, 3), &[rows, out]).unwrap();
    let mut want = vec![0.0; out * inp];
    for i in 0..out {
        for j in 0..inp {
            want[i * inp + j] = (0..rows)
                .map(|r| c.data()[r * out + i] * x.data()[r * inp + j])
                .sum();
        }
    }
    let tape = Tape::new();
    let w = tape.leaf(w0);
    let b = tape.leaf(Tensor::zeros(&[out]));
    let loss = (tape.constant(x).linear(w, Some(b)) * tape.constant(c)).sum();
    let mut grads = loss.backward();
    let read = grads.wrt(w).expect("w has a gradient");
    assert_eq!(read.shape(), &[out, inp]);
    assert!(max_diff(read.data(), &want) < 1e-12);
    let taken = grads.take(w).expect("w has a gradient");
    assert!(max_diff(taken.data(), &want) < 1e-12);
}

/// Two Linear nodes sharing `w`, then a penalty on `w`.
fn penalised<'t>(tape: &'t Tape<f64>, x: &Tensor<f64>, w: Var<'t, f64>) -> Var<'t, f64> {
    let h = tape.constant(x.clone()).linear(w, None).tanh();
    let y = h.linear(w, None);
    y.square().sum() + w.square().sum() * 0.1
}

/// A weight used by two Linear nodes and by a penalty: the deferred product, the dense product
/// and the penalty's gradient are summed. Central differences are the reference.
#[test]
fn shared_and_penalised_weight_sums_every_use() {
    let (rows, n) = (2, 24);
    let x = Tensor::from_vec(values(rows * n, 4), &[rows, n]).unwrap();
    let w0 = Tensor::from_vec(values(n * n, 5).iter().map(|v| v * 0.2).collect(), &[n, n]).unwrap();
    let tape = Tape::new();
    let w = tape.leaf(w0.clone());
    let grads = penalised(&tape, &x, w).backward();
    let got = grads.wrt(w).expect("w has a gradient").data().to_vec();
    let eps = 1e-6;
    for k in [0, 7, 100, 333, n * n - 1] {
        let at = |d: f64| {
            let mut v = w0.data().to_vec();
            v[k] += d;
            let tape = Tape::new();
            let w = tape.leaf(Tensor::from_vec(v, &[n, n]).unwrap());
            penalised(&tape, &x, w).value().item()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!(
            (got[k] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
            "element {k}: backward {} vs central difference {fd}",
            got[k]
        );
    }
}

/// Layers wide enough for their weight gradients to be kept as factors (the last one is not).
fn wide(seed: u64) -> Sequential<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .push(Linear::new(48, 40, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(40, 36, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(36, 5, &mut rng).unwrap())
}

fn loss<'t>(net: &mut Sequential<f64>, ctx: &mut Ctx<'t, f64>) -> Var<'t, f64> {
    let tape = ctx.tape();
    let x = Tensor::from_vec(values(4 * 48, 6), &[4, 48]).unwrap();
    let y = Tensor::from_vec(values(4 * 5, 7), &[4, 5]).unwrap();
    let pred = net.forward(ctx, tape.constant(x));
    (pred - tape.constant(y)).square().mean()
}

#[derive(Clone, Copy)]
enum Loop {
    /// `backward`, then `step`: the factors reach the optimiser.
    Readme,
    /// The same, with every gradient read (so formed) before the step.
    Formed,
    /// `backward_step`: each gradient formed in the sweep.
    Fused,
}

fn train(opt: &mut dyn Optimizer<f64>, how: Loop) -> Vec<(String, Tensor<f64>)> {
    let mut net = wide(0);
    for _ in 0..3 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = loss(&mut net, &mut ctx);
        match how {
            Loop::Fused => opt.backward_step(&mut net, &ctx, l).unwrap(),
            Loop::Readme | Loop::Formed => {
                let grads = ctx.param_grads(&l.backward());
                if let Loop::Formed = how {
                    assert_eq!(grads.named().len(), 6);
                }
                opt.step(&mut net, &grads).unwrap();
            }
        }
    }
    net.named_parameters()
}

fn same_weights(a: &[(String, Tensor<f64>)], b: &[(String, Tensor<f64>)]) {
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let d = max_diff(ta.data(), tb.data());
        assert!(d < 1e-12, "{na}: {d:e} apart");
    }
}

#[test]
fn plain_sgd_from_factors_lands_where_the_formed_gradient_does() {
    let sgd = || {
        Sgd::new(SgdConfig {
            lr: 0.1,
            ..Default::default()
        })
        .unwrap()
    };
    let readme = train(&mut sgd(), Loop::Readme);
    let initial = wide(0).named_parameters();
    assert!(
        max_diff(readme[0].1.data(), initial[0].1.data()) > 1e-4,
        "the step moved nothing"
    );
    same_weights(&readme, &train(&mut sgd(), Loop::Formed));
    same_weights(&readme, &train(&mut sgd(), Loop::Fused));
}

#[test]
fn stateful_optimisers_form_the_gradient() {
    let momentum = || {
        Sgd::new(SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-3,
            ..Default::default()
        })
        .unwrap()
    };
    same_weights(
        &train(&mut momentum(), Loop::Readme),
        &train(&mut momentum(), Loop::Fused),
    );
    let adam = || {
        Adam::new(AdamConfig {
            lr: 0.01,
            ..Default::default()
        })
        .unwrap()
    };
    same_weights(
        &train(&mut adam(), Loop::Readme),
        &train(&mut adam(), Loop::Fused),
    );
}

/// Clipping, scaling and accumulation write the gradients: they form them first.
#[test]
fn writers_form_the_factors() {
    let grads_of = |net: &mut Sequential<f64>| -> ParamGrads<f64> {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let l = loss(net, &mut ctx);
        ctx.param_grads(&l.backward())
    };
    let mut net = wide(1);
    let formed: Vec<Vec<f64>> = {
        let g = grads_of(&mut net);
        g.named().iter().map(|(_, t)| t.data().to_vec()).collect()
    };
    let mut clipped = grads_of(&mut net);
    let norm = clip_grad_norm(&mut clipped, 1e-3);
    assert!(
        norm > 1e-3,
        "the clip must bite for this test to mean anything"
    );
    for ((_, t), f) in clipped.named().iter().zip(&formed) {
        let want: Vec<f64> = f.iter().map(|v| v * 1e-3 / (norm + 1e-6)).collect();
        assert!(max_diff(t.data(), &want) < 1e-15);
    }
    let mut acc = grads_of(&mut net);
    acc.accumulate(grads_of(&mut net)).unwrap();
    for ((_, t), f) in acc.named().iter().zip(&formed) {
        let want: Vec<f64> = f.iter().map(|v| 2.0 * v).collect();
        assert!(max_diff(t.data(), &want) < 1e-12);
    }
}

/// The product added in place, split over two threads and in f32, against f64.
#[test]
fn sgd_from_factors_in_f32_on_two_threads() {
    let (rows, n) = (16, 512);
    let x64 = Tensor::from_vec(values(rows * n, 8), &[rows, n]).unwrap();
    let w64 =
        Tensor::from_vec(values(n * n, 9).iter().map(|v| v * 0.05).collect(), &[n, n]).unwrap();
    fn step<T: vgrad::tensor::Element>(x: Tensor<T>, w: Tensor<T>) -> Vec<f64> {
        let mut layer = Linear::from_tensors(w, None).unwrap();
        let mut opt = Sgd::new(SgdConfig {
            lr: 0.5,
            ..Default::default()
        })
        .unwrap();
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let y = layer.forward(&mut ctx, tape.constant(x));
        let grads = ctx.param_grads(&y.tanh().sum().backward());
        opt.step(&mut layer, &grads).unwrap();
        layer.weight().value().cast::<f64>().data().to_vec()
    }
    // The reference by hand: y = x·Wᵀ, G = 1 − tanh²y, W − 0.5·Gᵀ·x.
    let (x, w) = (x64.data(), w64.data());
    let mut g = vec![0.0; rows * n];
    for r in 0..rows {
        for i in 0..n {
            let y: f64 = (0..n).map(|j| x[r * n + j] * w[i * n + j]).sum();
            g[r * n + i] = 1.0 - y.tanh().powi(2);
        }
    }
    let mut want = w.to_vec();
    for i in 0..n {
        for j in 0..n {
            want[i * n + j] -= 0.5 * (0..rows).map(|r| g[r * n + i] * x[r * n + j]).sum::<f64>();
        }
    }
    vgrad::tensor::set_num_threads(2);
    let got = step(x64.cast::<f32>(), w64.cast::<f32>());
    let got64 = step(x64.clone(), w64.clone());
    vgrad::tensor::set_num_threads(1);
    assert!(
        max_diff(&got64, &want) < 1e-12,
        "{:e}",
        max_diff(&got64, &want)
    );
    assert!(max_diff(&got, w64.data()) > 1e-3);
    assert!(max_diff(&got, &want) < 2e-5, "{:e}", max_diff(&got, &want));
}
