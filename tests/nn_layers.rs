//! Layer-level tests: every parameter of every layer receives a gradient (no silent graph
//! breaks), the one place where the maths says it must not, configuration errors, documented
//! panics, Dropout's statistics and reproducibility, Residual's zero-initialisation.

use rand::{rngs::StdRng, SeedableRng};
use std::cell::RefCell;
use vgrad::nn::init::Init;
use vgrad::nn::{
    cross_entropy, mse_loss, nll_loss, Activation, BatchNorm1d, BatchNormConfig, Ctx, Dropout,
    LayerNorm, LayerNormConfig, Linear, LinearConfig, Module, Reduction, Residual, ResidualConfig,
    Sequential,
};
use vgrad::{gradcheck, Error, GeluApprox, GradcheckOptions, Tape, Tensor};

/// A deterministic, irregular input.
fn input(n: usize, d: usize) -> Tensor<f64> {
    Tensor::from_fn(&[n, d], |i| {
        ((i as f64) * 0.618).sin() * 2.0 + 0.1 * (i % 3) as f64
    })
}

/// Runs `model` on `x` with the loss `Σ y ⊙ R` for a fixed irregular `R` (a plain `Σ y` would be
/// blind to BatchNorm, whose normalised output sums to zero), and checks that every parameter
/// receives a finite gradient, non-zero except for the names in `zero`, which must be ~0.
/// Returns the input's gradient.
#[track_caller]
fn check_param_grads(model: &mut dyn Module<f64>, x: Tensor<f64>, zero: &[&str]) -> Tensor<f64> {
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let xv = tape.leaf(x);
    let y = model.forward(&mut ctx, xv);
    let r = Tensor::from_fn(&y.shape(), |i| ((i as f64) * 1.37).cos() + 0.2);
    let grads = (y * tape.constant(r)).sum().backward();
    let pg = ctx.param_grads(&grads);
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        pg.len(),
        names.len(),
        "{model:?}: some parameter was not bound"
    );
    for name in &names {
        let g = pg
            .get_name(name)
            .unwrap_or_else(|| panic!("{model:?}: `{name}` received no gradient"));
        assert!(g.all_finite(), "`{name}`: non-finite gradient {g:?}");
        let norm = g.norm_l2();
        if zero.contains(&name.as_str()) {
            assert!(
                norm < 1e-12,
                "`{name}` should get ~0 gradient, got {norm:e}"
            );
        } else {
            assert!(norm > 1e-8, "`{name}`: zero gradient");
        }
    }
    let gx = grads.wrt(xv).expect("input gradient").clone();
    assert!(
        gx.all_finite() && gx.norm_l2() > 1e-8,
        "input gradient {gx:?}"
    );
    gx
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(3)
}

fn mlp_block(d: usize, h: usize, out: usize, rng: &mut StdRng) -> Sequential<f64> {
    Sequential::new()
        .push(Linear::new(d, h, rng).unwrap())
        .push(Activation::Relu)
        .push(BatchNorm1d::new(h).unwrap())
        .push(Linear::new(h, out, rng).unwrap())
}

#[test]
fn every_parameter_of_every_layer_gets_a_finite_nonzero_gradient() {
    let mut rng = rng();
    let x = input(8, 5);

    check_param_grads(&mut Linear::new(5, 3, &mut rng).unwrap(), x.clone(), &[]);
    let mut no_bias =
        Linear::with_config(5, 3, LinearConfig::default().no_bias(), &mut rng).unwrap();
    check_param_grads(&mut no_bias, x.clone(), &[]);

    // BatchNorm1d in training mode, then in evaluation mode on the running statistics.
    let mut bn = BatchNorm1d::new(5).unwrap();
    check_param_grads(&mut bn, x.clone(), &[]);
    bn.eval();
    check_param_grads(&mut bn, x.clone(), &[]);
    let no_affine = BatchNormConfig {
        affine: false,
        ..Default::default()
    };
    check_param_grads(
        &mut BatchNorm1d::with_config(5, no_affine).unwrap(),
        x.clone(),
        &[],
    );

    // LayerNorm, with and without its affine parameters, on a 3-D input too.
    check_param_grads(&mut LayerNorm::new(5).unwrap(), x.clone(), &[]);
    let bare = LayerNormConfig {
        elementwise_affine: false,
        ..Default::default()
    };
    check_param_grads(
        &mut LayerNorm::with_config(5, bare).unwrap(),
        x.clone(),
        &[],
    );
    check_param_grads(&mut LayerNorm::new(5).unwrap(), x.reshape(&[2, 4, 5]), &[]);

    // Residual blocks: identity skip, and projection with a scaled branch.
    let mut res = Residual::new(mlp_block(5, 7, 5, &mut rng));
    check_param_grads(&mut res, x.clone(), &[]);
    let cfg = ResidualConfig { branch_scale: 0.5 };
    let proj = Linear::with_config(5, 4, LinearConfig::default().no_bias(), &mut rng).unwrap();
    let mut res = Residual::with_config(mlp_block(5, 7, 4, &mut rng), cfg)
        .unwrap()
        .with_projection(proj);
    check_param_grads(&mut res, x.clone(), &[]);

    // Everything in one network, Dropout and every activation included.
    let mut net = Sequential::new().push(Linear::new(5, 6, &mut rng).unwrap());
    for a in [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::leaky_relu(),
        Activation::elu(),
        Activation::Selu,
        Activation::Gelu(GeluApprox::None),
        Activation::Gelu(GeluApprox::Tanh),
        Activation::softplus(),
        Activation::Silu,
    ] {
        net = net.push(a).push(Linear::new(6, 6, &mut rng).unwrap());
    }
    let mut net = net
        .push(Dropout::new(0.2, 1).unwrap())
        .push(BatchNorm1d::new(6).unwrap())
        .push(Activation::Relu)
        .push(Residual::new(mlp_block(6, 4, 6, &mut rng)))
        .push(Linear::new(6, 2, &mut rng).unwrap());
    check_param_grads(&mut net, x.clone(), &[]);
    net.eval();
    check_param_grads(&mut net, x, &[]);
}

/// In training mode BatchNorm subtracts the batch mean of each feature, so a bias added just
/// before it (the same for every row) cancels exactly: the output does not depend on it, and its
/// gradient is zero (up to rounding). In evaluation mode the running mean is a constant, the
/// bias no longer cancels, and it gets a gradient again.
#[test]
fn linear_bias_before_training_batchnorm_gets_zero_gradient() {
    let mut rng = rng();
    let mut net = Sequential::new()
        .push(Linear::new(5, 4, &mut rng).unwrap())
        .push(BatchNorm1d::new(4).unwrap());
    check_param_grads(&mut net, input(8, 5), &["0.bias"]);
    net.eval();
    check_param_grads(&mut net, input(8, 5), &[]);
}

#[test]
fn batchnorm_training_gradient_passes_gradcheck() {
    let mut bn = BatchNorm1d::<f64>::new(3).unwrap();
    bn.weight_mut().unwrap().set(Tensor::vector(&GAMMA));
    bn.bias_mut().unwrap().set(Tensor::vector(&BETA));
    assert_layer_gradcheck(&mut bn);
}

/// Irregular γ and β for the normalisation layers' gradient checks.
const GAMMA: [f64; 3] = [1.5, 0.7, -1.2];
const BETA: [f64; 3] = [0.1, -0.3, 0.2];

/// `gradcheck` of `Σ layer(x) ⊙ r` over a `[4, 3]` input, for a fixed irregular `r`.
fn assert_layer_gradcheck(layer: &mut dyn Module<f64>) {
    let layer = RefCell::new(layer);
    let r = Tensor::from_fn(&[4, 3], |i| ((i as f64) * 1.1).sin());
    let report = gradcheck(
        |v| {
            let tape = v[0].tape();
            let y = layer.borrow_mut().forward(&mut Ctx::new(tape), v[0]);
            (y * tape.constant(r.clone())).sum()
        },
        &[input(4, 3)],
        GradcheckOptions::default(),
    );
    report.assert_passed();
}

#[test]
fn layernorm_gradient_passes_gradcheck_and_needs_no_batch() {
    let mut ln = LayerNorm::<f64>::new(3).unwrap();
    ln.weight_mut().unwrap().set(Tensor::vector(&GAMMA));
    ln.bias_mut().unwrap().set(Tensor::vector(&BETA));
    assert_layer_gradcheck(&mut ln);
    // Each row is normalised on its own: a batch of one gives that row's result.
    let x = input(4, 3);
    let all = forward_value(&mut ln, x.clone());
    let one = forward_value(&mut ln, x.narrow(0, 2, 1));
    assert!(one.allclose(&all.narrow(0, 2, 1), 1e-15, 1e-15));
}

fn forward_value(m: &mut dyn Module<f64>, x: Tensor<f64>) -> Tensor<f64> {
    let tape = Tape::new();
    m.forward(&mut Ctx::new(&tape), tape.constant(x)).value()
}

#[test]
fn layernorm_configuration_errors_and_shape_panic() {
    assert!(LayerNorm::<f32>::new(0).is_err());
    let bad = LayerNormConfig {
        eps: 0.0,
        ..Default::default()
    };
    let err = LayerNorm::<f32>::with_config(4, bad).unwrap_err();
    assert!(err.to_string().contains("eps must be positive"), "{err}");
    let no_bias = LayerNormConfig {
        bias: false,
        ..Default::default()
    };
    let ln = LayerNorm::<f32>::with_config(4, no_bias).unwrap();
    assert!(ln.weight().is_some() && ln.bias().is_none());
    let names: Vec<String> = ln.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight"]);
}

#[test]
#[should_panic(expected = "LayerNorm: expected input of shape [..., 4], got [2, 3]")]
fn layernorm_wrong_width_panics() {
    let mut ln = LayerNorm::<f32>::new(4).unwrap();
    let tape = Tape::new();
    ln.forward(&mut Ctx::new(&tape), tape.constant(Tensor::zeros(&[2, 3])));
}

#[test]
fn batchnorm_momentum_bounds_and_eval_with_one_sample() {
    let x = input(4, 2);
    for momentum in [0.0, 1.0] {
        let cfg = BatchNormConfig {
            momentum,
            ..Default::default()
        };
        let mut bn = BatchNorm1d::<f64>::with_config(2, cfg).unwrap();
        let tape = Tape::new();
        bn.forward(&mut Ctx::new(&tape), tape.constant(x.clone()));
        let mean = x.sum_axis(0, false).scale(0.25);
        let want = if momentum == 0.0 {
            Tensor::zeros(&[2])
        } else {
            mean
        };
        assert!(bn.running_mean().unwrap().allclose(&want, 1e-12, 1e-12));
        assert_eq!(bn.num_batches_tracked(), Some(1));
    }
    // Evaluation normalises each sample on its own: one sample is fine.
    let mut bn = BatchNorm1d::<f64>::new(2).unwrap();
    bn.eval();
    let tape = Tape::new();
    let y = bn.forward(&mut Ctx::new(&tape), tape.constant(input(1, 2)));
    assert!(y.value().all_finite());
    assert_eq!(bn.num_batches_tracked(), Some(0));
}

#[test]
#[should_panic(
    expected = "Expected more than 1 value per channel when training, got input size [1, 3]"
)]
fn batchnorm_training_on_one_sample_panics_like_pytorch() {
    let mut bn = BatchNorm1d::<f32>::new(3).unwrap();
    let tape = Tape::new();
    bn.forward(&mut Ctx::new(&tape), tape.constant(Tensor::ones(&[1, 3])));
}

#[test]
#[should_panic(
    expected = "Expected more than 1 value per channel when training, got input size [1, 3]"
)]
fn batchnorm_without_running_stats_needs_two_samples_in_eval_too() {
    let cfg = BatchNormConfig {
        track_running_stats: false,
        ..Default::default()
    };
    let mut bn = BatchNorm1d::<f32>::with_config(3, cfg).unwrap();
    bn.eval();
    let tape = Tape::new();
    bn.forward(&mut Ctx::new(&tape), tape.constant(Tensor::ones(&[1, 3])));
}

#[test]
#[should_panic(expected = "BatchNorm1d: expected input of shape [N, 3], got [4, 2]")]
fn batchnorm_wrong_width_names_both_shapes() {
    let mut bn = BatchNorm1d::<f32>::new(3).unwrap();
    let tape = Tape::new();
    bn.forward(&mut Ctx::new(&tape), tape.constant(Tensor::ones(&[4, 2])));
}

#[track_caller]
fn assert_config_error<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str) {
    match r {
        Err(Error::Config(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        other => panic!("expected Error::Config containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn bad_configurations_are_errors() {
    let bn = |c: usize, eps: f64, momentum: f64| {
        let cfg = BatchNormConfig {
            eps,
            momentum,
            ..Default::default()
        };
        BatchNorm1d::<f32>::with_config(c, cfg)
    };
    assert_config_error(bn(0, 1e-5, 0.1), "num_features");
    for eps in [0.0, -1e-5, f64::NAN, f64::INFINITY] {
        assert_config_error(bn(4, eps, 0.1), "eps");
    }
    for m in [-0.1, 1.01, f64::NAN] {
        assert_config_error(bn(4, 1e-5, m), "momentum");
    }
    assert!(bn(4, 1e-3, 0.0).is_ok() && bn(4, 1e-3, 1.0).is_ok());

    for p in [-0.1, 1.5, f64::NAN] {
        assert_config_error(Dropout::new(p, 0), "between 0 and 1");
    }
    assert!(Dropout::new(0.0, 0).is_ok() && Dropout::new(1.0, 0).is_ok());

    for s in [f64::NAN, f64::INFINITY] {
        let r = Residual::with_config(Activation::<f32>::Relu, ResidualConfig { branch_scale: s });
        assert_config_error(r.map(|_| ()), "branch_scale");
    }
}

#[test]
fn debug_prints_like_pytorch() {
    let cfg = BatchNormConfig {
        eps: 1e-3,
        momentum: 0.01,
        affine: false,
        track_running_stats: false,
    };
    let bn = BatchNorm1d::<f32>::with_config(64, cfg).unwrap();
    assert_eq!(
        format!("{bn:?}"),
        "BatchNorm1d(64, eps=0.001, momentum=0.01, affine=False, track_running_stats=False)"
    );
    assert_eq!(
        format!("{:?}", Dropout::new(0.1, 0).unwrap()),
        "Dropout(p=0.1, inplace=False)"
    );
    let mut rng = rng();
    let cfg = ResidualConfig { branch_scale: 0.5 };
    let block = Residual::with_config(
        Sequential::<f32>::new()
            .push(Linear::new(4, 4, &mut rng).unwrap())
            .push(Activation::Relu),
        cfg,
    )
    .unwrap()
    .with_projection(Linear::new(4, 4, &mut rng).unwrap());
    let want = "Residual(
  branch_scale=0.5
  (branch): Sequential(
    (0): Linear(in_features=4, out_features=4, bias=True)
    (1): ReLU()
  )
  (proj): Linear(in_features=4, out_features=4, bias=True)
)";
    assert_eq!(format!("{block:?}"), want);
}

// --- Dropout ---------------------------------------------------------------------------------

/// Runs dropout on ones and returns the output and the input's gradient.
fn drop_ones(d: &mut Dropout, n: usize) -> (Tensor<f64>, Tensor<f64>) {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::ones(&[n]));
    let y = d.forward(&mut Ctx::new(&tape), x);
    let g = y.sum().backward().wrt(x).unwrap().clone();
    (y.value(), g)
}

#[test]
fn dropout_drops_a_fraction_p_and_rescales_survivors() {
    let n = 100_000;
    for p in [0.1, 0.5, 0.8] {
        let mut d = Dropout::new(p, 11).unwrap();
        let (y, g) = drop_ones(&mut d, n);
        let keep = 1.0 / (1.0 - p);
        let dropped = y.data().iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        // Binomial: the dropped fraction has standard error √(p(1−p)/n) ≤ 0.0016; allow 5.
        assert!((dropped - p).abs() < 0.008, "p = {p}: dropped {dropped}");
        assert!(y
            .data()
            .iter()
            .all(|&v| v == 0.0 || (v - keep).abs() < 1e-12));
        // Inverted scaling keeps the expectation: the mean stays near 1.
        let mean = y.data().iter().sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.05, "p = {p}: mean {mean}");
        // The derivative is the mask itself: on an input of ones, the output.
        assert!(g.allclose(&y, 0.0, 0.0));
    }
}

#[test]
fn dropout_is_reproducible_from_its_seed() {
    let (a, _) = drop_ones(&mut Dropout::new(0.5, 5).unwrap(), 256);
    let (b, _) = drop_ones(&mut Dropout::new(0.5, 5).unwrap(), 256);
    let (c, _) = drop_ones(&mut Dropout::new(0.5, 6).unwrap(), 256);
    assert_eq!(a.data(), b.data());
    assert_ne!(a.data(), c.data());
    // Successive calls draw fresh masks; reseeding restarts the sequence.
    let mut d = Dropout::new(0.5, 5).unwrap();
    let (first, _) = drop_ones(&mut d, 256);
    let (second, _) = drop_ones(&mut d, 256);
    assert_ne!(first.data(), second.data());
    d.reseed(5);
    assert_eq!(drop_ones(&mut d, 256).0.data(), first.data());
}

#[test]
fn dropout_is_the_identity_in_eval_and_for_p_zero_and_drops_all_for_p_one() {
    let mut d = Dropout::new(0.5, 0).unwrap();
    d.eval();
    let (y, g) = drop_ones(&mut d, 64);
    assert!(y.allclose(&Tensor::ones(&[64]), 0.0, 0.0) && g.allclose(&y, 0.0, 0.0));
    let (y, _) = drop_ones(&mut Dropout::new(0.0, 0).unwrap(), 64);
    assert!(y.allclose(&Tensor::ones(&[64]), 0.0, 0.0));
    let (y, g) = drop_ones(&mut Dropout::new(1.0, 0).unwrap(), 64);
    assert!(y.data().iter().chain(g.data()).all(|&v| v == 0.0));
}

// --- Residual --------------------------------------------------------------------------------

/// After `zero_init_last` the block is the identity, and at the first step only the zeroed
/// layer learns: the gradient reaching the earlier branch layers passes through its zero
/// weight. The input still gets the full identity gradient through the skip.
#[test]
fn zero_init_last_makes_the_identity_and_only_the_last_layer_learns_first() {
    let mut rng = rng();
    let branch = Sequential::new()
        .push(Linear::new(5, 7, &mut rng).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(7, 5, &mut rng).unwrap());
    let mut block = Residual::new(branch);
    assert_eq!(block.zero_init_last().as_deref(), Some("2"));
    let x = input(6, 5);
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let xv = tape.leaf(x.clone());
    let y = block.forward(&mut ctx, xv);
    assert!(y.value().allclose(&x, 0.0, 0.0));
    let grads = y.sum().backward();
    let pg = ctx.param_grads(&grads);
    assert!(grads
        .wrt(xv)
        .unwrap()
        .allclose(&Tensor::ones(&[6, 5]), 0.0, 1e-15));
    assert!(param_norm(&pg, "branch.2.weight") > 1e-3);
    assert!(param_norm(&pg, "branch.2.bias") > 1e-3);
    assert_eq!(param_norm(&pg, "branch.0.weight"), 0.0);
    assert_eq!(param_norm(&pg, "branch.0.bias"), 0.0);

    // A final BatchNorm is the layer zeroed (γ and β), as in torchvision's zero_init_residual;
    // a bare Linear branch is zeroed itself.
    let mut b = Residual::new(mlp_block(4, 4, 4, &mut rng).push(BatchNorm1d::new(4).unwrap()));
    assert_eq!(b.zero_init_last().as_deref(), Some("4"));
    let mut b = Residual::new(Linear::<f64>::new(4, 4, &mut rng).unwrap());
    assert_eq!(b.zero_init_last().as_deref(), Some(""));
    assert!(b.named_parameters().iter().all(|(_, t)| t.norm_l2() == 0.0));
    assert_eq!(
        Residual::new(Activation::<f64>::Relu).zero_init_last(),
        None
    );
}

fn param_norm(pg: &vgrad::nn::ParamGrads<f64>, name: &str) -> f64 {
    pg.get_name(name).expect(name).norm_l2()
}

/// The claim in `Residual`'s docs: with He initialisation each block roughly triples the
/// signal's variance, so a deep residual MLP's activations explode; scaling the branch down or
/// zero-initialising its last layer keeps the stack near the identity.
#[test]
fn deep_residual_stack_explodes_without_branch_scaling() {
    let depth = 30;
    let he = LinearConfig::init(Init::HE_NORMAL);
    let build = |scale: f64, zero: bool| {
        let mut rng = rng();
        let mut net = Sequential::<f64>::new();
        for _ in 0..depth {
            let branch = Sequential::new()
                .push(Linear::with_config(16, 16, he, &mut rng).unwrap())
                .push(Activation::Relu)
                .push(Linear::with_config(16, 16, he, &mut rng).unwrap());
            let cfg = ResidualConfig {
                branch_scale: scale,
            };
            let mut block = Residual::with_config(branch, cfg).unwrap();
            if zero {
                block.zero_init_last();
            }
            net = net.push(block);
        }
        net
    };
    let x = input(32, 16);
    let growth = |mut net: Sequential<f64>| {
        let tape = Tape::new();
        let y = net.forward(&mut Ctx::new(&tape), tape.constant(x.clone()));
        y.value().norm_l2() / x.norm_l2()
    };
    let plain = growth(build(1.0, false));
    let scaled = growth(build(1.0 / (depth as f64).sqrt(), false));
    let zeroed = growth(build(1.0, true));
    assert!(plain > 1e5, "plain stack grew only {plain}x");
    assert!(scaled < 20.0, "scaled stack grew {scaled}x");
    assert!(
        (zeroed - 1.0).abs() < 1e-12,
        "zero-init stack grew {zeroed}x"
    );
}

#[test]
#[should_panic(
    expected = "Residual: skip path of shape [3, 4] and branch output of shape [3, 2] differ"
)]
fn residual_width_change_without_projection_panics() {
    let mut rng = rng();
    let mut block = Residual::new(Linear::<f32>::new(4, 2, &mut rng).unwrap());
    let tape = Tape::new();
    block.forward(&mut Ctx::new(&tape), tape.constant(Tensor::ones(&[3, 4])));
}

// --- Losses: misuse panics and the composition identity ----------------------------------------

#[test]
#[should_panic(
    expected = "cross_entropy: target 3 at row 1 is out of range for input of shape [2, 3] (3 classes)"
)]
fn cross_entropy_target_out_of_range_panics() {
    let tape = Tape::<f32>::new();
    let z = tape.leaf(Tensor::zeros(&[2, 3]));
    cross_entropy(z, &[0, 3], Reduction::Mean);
}

#[test]
#[should_panic(expected = "nll_loss: 3 targets for input of shape [2, 3]")]
fn nll_loss_wrong_number_of_targets_panics() {
    let tape = Tape::<f32>::new();
    nll_loss(
        tape.leaf(Tensor::zeros(&[2, 3])),
        &[0, 1, 2],
        Reduction::Sum,
    );
}

#[test]
#[should_panic(expected = "mse_loss: prediction of shape [4, 1] and target of shape [4] differ")]
fn mse_loss_refuses_to_broadcast() {
    let tape = Tape::<f32>::new();
    mse_loss(
        tape.leaf(Tensor::zeros(&[4, 1])),
        Tensor::zeros(&[4]),
        Reduction::Mean,
    );
}

#[test]
fn nll_of_log_softmax_equals_cross_entropy() {
    let z0 = input(5, 4);
    let t = [3, 0, 1, 1, 2];
    for r in [Reduction::Mean, Reduction::Sum] {
        let tape = Tape::new();
        let z = tape.leaf(z0.clone());
        let a = cross_entropy(z, &t, r);
        let b = nll_loss(z.log_softmax(1), &t, r);
        assert!((a.value().item() - b.value().item()).abs() < 1e-12);
        let (ga, gb) = (a.backward(), b.backward());
        assert!(ga
            .wrt(z)
            .unwrap()
            .allclose(gb.wrt(z).unwrap(), 1e-12, 1e-14));
    }
}

// ---------------------------------------------------------------------------------------------
// Gradient accumulation

/// Gradients of the mean-squared loss of `model` on rows `rows` of `x` against `y`.
fn mean_loss_grads(
    model: &mut Sequential<f64>,
    x: &Tensor<f64>,
    y: &Tensor<f64>,
    rows: std::ops::Range<usize>,
) -> vgrad::nn::ParamGrads<f64> {
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let (start, len) = (rows.start, rows.len());
    let pred = model.forward(&mut ctx, tape.constant(x.narrow(0, start, len)));
    let loss = mse_loss(
        pred,
        tape.constant(y.narrow(0, start, len)),
        Reduction::Mean,
    );
    ctx.param_grads(&loss.backward())
}

#[test]
fn accumulated_micro_batch_gradients_equal_the_full_batch_gradient() {
    // No BatchNorm: its batch statistics make a micro-batch's gradient depend on the others.
    let mut r = rng();
    let mut model = Sequential::new()
        .push(Linear::new(3, 6, &mut r).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(6, 2, &mut r).unwrap());
    let (x, y) = (input(12, 3), input(12, 2).scale(0.5));
    let whole = mean_loss_grads(&mut model, &x, &y, 0..12);
    // Three micro-batches of 4, each with its mean loss: the sum scaled by 1/3.
    let mut acc = vgrad::nn::ParamGrads::default();
    for k in 0..3 {
        acc.accumulate(mean_loss_grads(&mut model, &x, &y, 4 * k..4 * k + 4))
            .unwrap();
    }
    acc.scale(1.0 / 3.0);
    assert_eq!(acc.len(), whole.len());
    for (name, g) in whole.named() {
        let a = acc.get_name(name).unwrap();
        for (p, q) in a.data().iter().zip(g.data()) {
            assert!(
                (p - q).abs() <= 1e-12 * (1.0 + q.abs()),
                "{name}: {p} vs {q}"
            );
        }
    }
}

#[test]
fn accumulating_gradients_of_another_shape_is_an_error_that_adds_nothing() {
    let layer = Linear::<f64>::new(3, 4, &mut rng()).unwrap();
    let (w, b) = (layer.weight().id(), layer.bias().unwrap().id());
    let mut acc = vgrad::nn::ParamGrads::default();
    acc.insert(w, "weight".into(), Tensor::full(&[4, 3], 1.0));
    let mut other = vgrad::nn::ParamGrads::default();
    other.insert(b, "bias".into(), Tensor::full(&[4], 2.0));
    other.insert(w, "weight".into(), Tensor::full(&[5, 3], 1.0));
    let err = acc.accumulate(other).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    assert!(
        err.to_string()
            .contains("`weight` has shape [4, 3] here and [5, 3]"),
        "{err}"
    );
    // Nothing was added, not even the bias that did fit.
    assert_eq!(acc.len(), 1);
    assert_eq!(acc.get_id(w).unwrap().to_vec(), vec![1.0; 12]);
}

#[test]
#[should_panic(expected = "huber_loss: delta must be positive and finite, got 0")]
fn huber_loss_needs_a_positive_delta() {
    let tape = Tape::<f64>::new();
    let p = tape.leaf(Tensor::zeros(&[2]));
    vgrad::nn::huber_loss(p, Tensor::zeros(&[2]), 0.0, Reduction::Mean);
}

#[test]
#[should_panic(expected = "smooth_l1_loss: prediction of shape [2] and target of shape [3] differ")]
fn smooth_l1_loss_shapes_must_match() {
    let tape = Tape::<f64>::new();
    let p = tape.leaf(Tensor::zeros(&[2]));
    vgrad::nn::smooth_l1_loss(p, Tensor::zeros(&[3]), 1.0, Reduction::Mean);
}
