//! Golden tests against PyTorch for the `nn` layers, losses and initialisers.
//!
//! Provenance: `tests/golden/layers.json` is written by `tests/golden/layers_gen.py` (PyTorch
//! 2.15, float64; the version is recorded in the file's `meta`). Each case holds the inputs,
//! the parameters, an upstream gradient `seed`, PyTorch's output and its gradients for the
//! input and every parameter. Here the same numbers are loaded into vgrad and compared, in f64
//! with a tight tolerance (same maths, different summation order) and in f32 against the f64
//! reference with a looser one (f32 rounding of inputs and arithmetic).

use rand::{rngs::StdRng, SeedableRng};
use serde_json::Value;
use std::sync::OnceLock;
use vgrad::nn::init::{calculate_gain, Dist, FanMode, Init, Nonlinearity};
use vgrad::nn::{
    binary_cross_entropy_with_logits, cross_entropy, huber_loss, l1_loss, mse_loss, nll_loss,
    smooth_l1_loss, Activation, BatchNorm1d, BatchNormConfig, Ctx, LayerNorm, LayerNormConfig,
    Linear, Module, ParamGrads, Reduction, Residual, ResidualConfig, Sequential,
};
use vgrad::{Element, GeluApprox, Tape, Tensor, Var};

fn golden() -> &'static Value {
    static G: OnceLock<Value> = OnceLock::new();
    G.get_or_init(|| {
        serde_json::from_str(include_str!("golden/layers.json")).expect("layers.json parses")
    })
}

fn tensor<T: Element>(v: &Value) -> Tensor<T> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|s| s.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<T> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| T::of(x.as_f64().unwrap()))
        .collect();
    Tensor::from_vec(data, &shape).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn targets(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as usize)
        .collect()
}

fn reduction(v: &Value) -> Reduction {
    match v.as_str().unwrap() {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        r => panic!("unknown reduction {r}"),
    }
}

/// `|got − want| ≤ atol + rtol·|want|` elementwise.
#[derive(Clone, Copy)]
struct Tol {
    rtol: f64,
    atol: f64,
}

/// f64 against f64: only the order of floating-point operations differs (worst seen: 1.6e-13
/// relative, in BatchNorm's input gradient).
const F64: Tol = Tol {
    rtol: 1e-11,
    atol: 1e-13,
};
/// f32 against the f64 reference: inputs rounded to f32 (relative 6e-8) and amplified by the
/// maths' conditioning (BatchNorm subtracts a mean of 100 from a column of spread 1.5 and
/// divides by the standard deviation; GELU's `1 + erf` cancels in the left tail). The worst
/// case seen is 1.2e-6 (BatchNorm outputs, the residual block's first-layer gradients), so
/// this leaves a margin of about 10 while still catching a wrong constant.
const F32: Tol = Tol {
    rtol: 2e-5,
    atol: 5e-6,
};

#[track_caller]
fn check<T: Element>(what: &str, got: &Tensor<T>, want: &Value, tol: Tol) {
    let want = tensor::<f64>(want);
    let got = got.cast::<f64>();
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= tol.atol + tol.rtol * w.abs(),
            "{what}[{i}]: vgrad {g:e}, PyTorch {w:e} (|diff| {err:e}, rtol {}, atol {})",
            tol.rtol,
            tol.atol
        );
    }
}

#[track_caller]
fn check_scalar<T: Element>(what: &str, got: T, want: f64, tol: Tol) {
    let g = Tensor::scalar(got);
    let w = serde_json::json!({"shape": [], "data": [want]});
    check(what, &g, &w, tol);
}

#[track_caller]
fn param_grad<'a, T: Element>(pg: &'a ParamGrads<T>, name: &str) -> &'a Tensor<T> {
    pg.get_name(name)
        .unwrap_or_else(|| panic!("no gradient for parameter `{name}`"))
}

// --- Linear -----------------------------------------------------------------------------------

fn linear<T: Element>(tol: Tol) {
    let c = &golden()["linear"];
    let mut lin =
        Linear::<T>::from_tensors(tensor(&c["weight"]), Some(tensor(&c["bias"]))).unwrap();
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let x = tape.leaf(tensor(&c["x"]));
    let y = lin.forward(&mut ctx, x);
    check("linear y", &y.value(), &c["y"], tol);
    let g = y.backward_with(tensor(&c["seed"]));
    check("linear dx", g.wrt(x).unwrap(), &c["grad"]["x"], tol);
    let pg = ctx.param_grads(&g);
    for p in ["weight", "bias"] {
        check(
            &format!("linear d{p}"),
            param_grad(&pg, p),
            &c["grad"][p],
            tol,
        );
    }
}

#[test]
fn linear_matches_pytorch_f64() {
    linear::<f64>(F64);
}

#[test]
fn linear_matches_pytorch_f32() {
    linear::<f32>(F32);
}

// --- Activations ------------------------------------------------------------------------------

fn activation_of<T: Element>(kind: &str, args: &[f64]) -> Activation<T> {
    match kind {
        "Identity" => Activation::Identity,
        "Sigmoid" => Activation::Sigmoid,
        "Tanh" => Activation::Tanh,
        "Relu" => Activation::Relu,
        "LeakyRelu" => Activation::LeakyRelu(T::of(args[0])),
        "Elu" => Activation::Elu(T::of(args[0])),
        "Selu" => Activation::Selu,
        "GeluNone" => Activation::Gelu(GeluApprox::None),
        "GeluTanh" => Activation::Gelu(GeluApprox::Tanh),
        "Softplus" => Activation::Softplus {
            beta: T::of(args[0]),
            threshold: T::of(args[1]),
        },
        "Silu" => Activation::Silu,
        k => panic!("unknown activation {k}"),
    }
}

fn activations<T: Element>(tol: Tol) {
    for c in golden()["activations"].as_array().unwrap() {
        let args: Vec<f64> = c["args"].as_array().unwrap().iter().map(f).collect();
        let mut act = activation_of::<T>(c["kind"].as_str().unwrap(), &args);
        let name = c["repr"].as_str().unwrap();
        if T::DTYPE == "F64" {
            assert_eq!(format!("{act:?}"), name, "Debug prints like PyTorch");
        }
        let tape = Tape::new();
        let x = tape.leaf(tensor(&c["x"]));
        let y = act.forward(&mut Ctx::new(&tape), x);
        check(&format!("{name} y"), &y.value(), &c["y"], tol);
        let g = y.backward_with(tensor(&c["seed"]));
        check(&format!("{name} dx"), g.wrt(x).unwrap(), &c["dx"], tol);
    }
}

#[test]
fn activations_match_pytorch_including_kinks_and_extremes_f64() {
    activations::<f64>(F64);
}

#[test]
fn activations_match_pytorch_including_kinks_and_extremes_f32() {
    activations::<f32>(F32);
}

// --- BatchNorm1d ------------------------------------------------------------------------------

fn bn_step<T: Element>(bn: &mut BatchNorm1d<T>, step: &Value, what: &str, tol: Tol) {
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    let x = tape.leaf(tensor(&step["x"]));
    let y = bn.forward(&mut ctx, x);
    check(&format!("{what} y"), &y.value(), &step["y"], tol);
    let g = y.backward_with(tensor(&step["seed"]));
    check(&format!("{what} dx"), g.wrt(x).unwrap(), &step["dx"], tol);
    let pg = ctx.param_grads(&g);
    if bn.config().affine {
        check(
            &format!("{what} dweight"),
            param_grad(&pg, "weight"),
            &step["dweight"],
            tol,
        );
        check(
            &format!("{what} dbias"),
            param_grad(&pg, "bias"),
            &step["dbias"],
            tol,
        );
    } else {
        assert!(pg.is_empty());
    }
}

fn batchnorm<T: Element>(tol: Tol) {
    for (k, c) in golden()["batchnorm"].as_array().unwrap().iter().enumerate() {
        let cfg = BatchNormConfig {
            eps: f(&c["eps"]),
            momentum: f(&c["momentum"]),
            affine: c["affine"].as_bool().unwrap(),
            track_running_stats: c["track_running_stats"].as_bool().unwrap(),
        };
        let mut bn =
            BatchNorm1d::<T>::with_config(c["num_features"].as_u64().unwrap() as usize, cfg)
                .unwrap();
        // PyTorch 2.15 added a `bias=` flag to BatchNorm (and its repr); vgrad prints the
        // long-standing form without it, having no separate bias switch: `affine` gives both γ
        // and β, so PyTorch's flag always equals `affine` here.
        let repr = c["repr"].as_str().unwrap();
        let flag = format!(", bias={}", if cfg.affine { "True" } else { "False" });
        assert!(repr.contains(&flag), "{repr}");
        let repr = repr.replace(&flag, "");
        assert_eq!(format!("{bn:?}"), repr);
        if cfg.affine {
            bn.weight_mut().unwrap().set(tensor(&c["weight"]));
            bn.bias_mut().unwrap().set(tensor(&c["bias"]));
        }
        for (i, step) in c["train"].as_array().unwrap().iter().enumerate() {
            bn_step(&mut bn, step, &format!("bn{k} train step {i}"), tol);
        }
        if cfg.track_running_stats {
            // After two steps: running = 0.9·(0.9·init + 0.1·s₁) + 0.1·s₂, unbiased variance.
            let what = format!("bn{k}");
            check(
                &format!("{what} running_mean"),
                bn.running_mean().unwrap(),
                &c["running_mean"],
                tol,
            );
            check(
                &format!("{what} running_var"),
                bn.running_var().unwrap(),
                &c["running_var"],
                tol,
            );
            assert_eq!(bn.num_batches_tracked(), c["num_batches_tracked"].as_u64());
        } else {
            assert!(bn.running_mean().is_none() && bn.num_batches_tracked().is_none());
        }
        bn.eval();
        bn_step(&mut bn, &c["eval"], &format!("bn{k} eval"), tol);
    }
}

#[test]
fn batchnorm1d_train_running_stats_and_eval_match_pytorch_f64() {
    batchnorm::<f64>(F64);
}

#[test]
fn batchnorm1d_train_running_stats_and_eval_match_pytorch_f32() {
    batchnorm::<f32>(F32);
}

// --- LayerNorm ---------------------------------------------------------------------------------

fn layernorm<T: Element>(tol: Tol) {
    let cases = golden()["layernorm"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 5);
    for (k, c) in cases.iter().enumerate() {
        let what = format!("layernorm{k}");
        let cfg = LayerNormConfig {
            eps: f(&c["eps"]),
            elementwise_affine: c["elementwise_affine"].as_bool().unwrap(),
            bias: c["bias"].as_bool().unwrap(),
        };
        let features = c["features"].as_u64().unwrap() as usize;
        let mut ln = LayerNorm::<T>::with_config(features, cfg).unwrap();
        assert_eq!(format!("{ln:?}"), c["repr"].as_str().unwrap());
        if let Some(w) = ln.weight_mut() {
            w.set(tensor(&c["weight"]));
        }
        if let Some(b) = ln.bias_mut() {
            b.set(tensor(&c["bias_value"]));
        }
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let x = tape.leaf(tensor(&c["x"]));
        let y = ln.forward(&mut ctx, x);
        check(&format!("{what} y"), &y.value(), &c["y"], tol);
        let g = y.backward_with(tensor(&c["seed"]));
        check(&format!("{what} dx"), g.wrt(x).unwrap(), &c["dx"], tol);
        let pg = ctx.param_grads(&g);
        let expected = ["weight", "bias"].map(|n| c.get(format!("d{n}")).is_some());
        assert_eq!(pg.len(), expected.iter().filter(|&&e| e).count(), "{what}");
        for (name, present) in ["weight", "bias"].into_iter().zip(expected) {
            if present {
                let want = &c[format!("d{name}")];
                check(&format!("{what} d{name}"), param_grad(&pg, name), want, tol);
            }
        }
    }
}

#[test]
fn layernorm_matches_pytorch_f64() {
    layernorm::<f64>(F64);
}

#[test]
fn layernorm_matches_pytorch_f32() {
    layernorm::<f32>(F32);
}

// --- Residual block ---------------------------------------------------------------------------

fn residual<T: Element>(tol: Tol) {
    for (k, c) in golden()["residual"].as_array().unwrap().iter().enumerate() {
        let p = |name: &str| tensor::<T>(&c["params"][name]);
        let h = c["h"].as_u64().unwrap() as usize;
        let l1 = Linear::from_tensors(p("branch.0.weight"), Some(p("branch.0.bias"))).unwrap();
        let mut bn = BatchNorm1d::new(h).unwrap();
        bn.weight_mut().unwrap().set(p("branch.2.weight"));
        bn.bias_mut().unwrap().set(p("branch.2.bias"));
        let l2 = Linear::from_tensors(p("branch.3.weight"), Some(p("branch.3.bias"))).unwrap();
        let branch = Sequential::new()
            .push(l1)
            .push(Activation::Relu)
            .push(bn)
            .push(l2);
        let cfg = ResidualConfig {
            branch_scale: f(&c["branch_scale"]),
        };
        let mut block = Residual::with_config(branch, cfg).unwrap();
        if !c["out"].is_null() {
            block = block.with_projection(Linear::from_tensors(p("proj.weight"), None).unwrap());
        }
        // Same names, in the same order, as PyTorch's named_parameters() and state_dict().
        let names = |v: &Value| -> Vec<String> {
            let a = v.as_array().unwrap();
            a.iter().map(|n| n.as_str().unwrap().to_string()).collect()
        };
        let ours: Vec<String> = block
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(ours, names(&c["param_names"]));
        let ours: Vec<String> = block.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(ours, names(&c["state_dict_names"]));

        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let x = tape.leaf(tensor(&c["x"]));
        let y = block.forward(&mut ctx, x);
        let what = format!("residual{k}");
        check(&format!("{what} y"), &y.value(), &c["y"], tol);
        let g = y.backward_with(tensor(&c["seed"]));
        check(&format!("{what} dx"), g.wrt(x).unwrap(), &c["dx"], tol);
        let pg = ctx.param_grads(&g);
        for (name, want) in c["grads"].as_object().unwrap() {
            check(&format!("{what} d{name}"), param_grad(&pg, name), want, tol);
        }
        // Buffers after one training step, under PyTorch's state_dict names.
        let state = block.state_dict();
        for (name, want) in c["buffers"].as_object().unwrap() {
            let (_, got) = state
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no buffer `{name}`"));
            check(&format!("{what} {name}"), got, want, tol);
        }
    }
}

#[test]
fn residual_block_matches_pytorch_f64() {
    residual::<f64>(F64);
}

#[test]
fn residual_block_matches_pytorch_f32() {
    residual::<f32>(F32);
}

// --- Losses -----------------------------------------------------------------------------------

fn losses<T: Element>(tol: Tol) {
    let g = golden();
    for c in g["cross_entropy"].as_array().unwrap() {
        let what = format!(
            "cross_entropy {} {}",
            c["name"].as_str().unwrap(),
            c["reduction"]
        );
        let tape = Tape::new();
        let z = tape.leaf(tensor::<T>(&c["logits"]));
        let loss = cross_entropy(z, &targets(&c["targets"]), reduction(&c["reduction"]));
        check_scalar(&what, loss.value().item(), f(&c["loss"]), tol);
        check(
            &format!("{what} grad"),
            loss.backward().wrt(z).unwrap(),
            &c["grad"],
            tol,
        );
    }
    for c in g["nll_loss"].as_array().unwrap() {
        let what = format!("nll_loss {}", c["reduction"]);
        let tape = Tape::new();
        let lp = tape.leaf(tensor::<T>(&c["log_probs"]));
        let loss = nll_loss(lp, &targets(&c["targets"]), reduction(&c["reduction"]));
        check_scalar(&what, loss.value().item(), f(&c["loss"]), tol);
        check(
            &format!("{what} grad"),
            loss.backward().wrt(lp).unwrap(),
            &c["grad"],
            tol,
        );
    }
    for c in g["mse_loss"].as_array().unwrap() {
        let what = format!("mse_loss {}", c["reduction"]);
        let red = reduction(&c["reduction"]);
        regression_case::<T>(&what, c, tol, |p, y| mse_loss(p, y, red));
    }
    for c in g["bce_with_logits"].as_array().unwrap() {
        let what = format!("bce_with_logits {}", c["reduction"]);
        let tape = Tape::new();
        let z = tape.leaf(tensor::<T>(&c["logits"]));
        let y = tape.leaf(tensor::<T>(&c["targets"]));
        let loss = binary_cross_entropy_with_logits(z, y, reduction(&c["reduction"]));
        check_scalar(&what, loss.value().item(), f(&c["loss"]), tol);
        let gr = loss.backward();
        check(
            &format!("{what} dlogits"),
            gr.wrt(z).unwrap(),
            &c["dlogits"],
            tol,
        );
        check(
            &format!("{what} dtargets"),
            gr.wrt(y).unwrap(),
            &c["dtargets"],
            tol,
        );
    }
    let regression = g["regression_losses"].as_array().unwrap();
    assert_eq!(
        regression.len(),
        12,
        "l1, huber ×2, smooth_l1 ×3, each mean and sum"
    );
    for c in regression {
        let name = c["loss_fn"].as_str().unwrap();
        let what = format!("{name}({}) {}", c["param"], c["reduction"]);
        let red = reduction(&c["reduction"]);
        let k = T::of(c["param"].as_f64().unwrap_or(0.0));
        regression_case::<T>(&what, c, tol, |p, y| match name {
            "l1_loss" => l1_loss(p, y, red),
            "huber_loss" => huber_loss(p, y, k, red),
            "smooth_l1_loss" => smooth_l1_loss(p, y, k, red),
            other => panic!("unknown loss {other}"),
        });
    }
}

/// A loss of a prediction and a target against the case's value and both gradients.
fn regression_case<T: Element>(
    what: &str,
    c: &Value,
    tol: Tol,
    loss: impl for<'t> Fn(Var<'t, T>, Var<'t, T>) -> Var<'t, T>,
) {
    let tape = Tape::new();
    let p = tape.leaf(tensor::<T>(&c["pred"]));
    let y = tape.leaf(tensor::<T>(&c["target"]));
    let loss = loss(p, y);
    check_scalar(what, loss.value().item(), f(&c["loss"]), tol);
    let gr = loss.backward();
    check(
        &format!("{what} dpred"),
        gr.wrt(p).unwrap(),
        &c["dpred"],
        tol,
    );
    check(
        &format!("{what} dtarget"),
        gr.wrt(y).unwrap(),
        &c["dtarget"],
        tol,
    );
}

#[test]
fn losses_match_pytorch_including_extreme_logits_f64() {
    losses::<f64>(F64);
}

#[test]
fn losses_match_pytorch_including_extreme_logits_f32() {
    losses::<f32>(F32);
}

// --- Initialisation ---------------------------------------------------------------------------

fn nonlinearity(name: &str, param: f64) -> Nonlinearity {
    match name {
        "linear" => Nonlinearity::Linear,
        "sigmoid" => Nonlinearity::Sigmoid,
        "tanh" => Nonlinearity::Tanh,
        "relu" => Nonlinearity::Relu,
        "leaky_relu" => Nonlinearity::LeakyRelu(param),
        "selu" => Nonlinearity::Selu,
        n => panic!("unknown nonlinearity {n}"),
    }
}

#[test]
fn calculate_gain_matches_pytorch() {
    for c in golden()["gains"].as_array().unwrap() {
        // PyTorch's leaky_relu default slope when no parameter is given is 0.01.
        let param = c["param"].as_f64().unwrap_or(0.01);
        let nl = nonlinearity(c["nonlinearity"].as_str().unwrap(), param);
        let (ours, theirs) = (calculate_gain(nl), f(&c["gain"]));
        assert!(
            (ours - theirs).abs() <= 1e-15 * theirs,
            "{nl:?}: {ours} vs {theirs}"
        );
    }
}

fn init_of(c: &Value) -> Init {
    let a = &c["args"];
    let mode = || match a["mode"].as_str().unwrap() {
        "fan_in" => FanMode::FanIn,
        _ => FanMode::FanOut,
    };
    let nl = || nonlinearity(a["nonlinearity"].as_str().unwrap(), f(&a["a"]));
    match c["name"].as_str().unwrap() {
        "xavier_uniform" => Init::XavierUniform {
            gain: f(&a["gain"]),
        },
        "xavier_normal" => Init::XavierNormal {
            gain: f(&a["gain"]),
        },
        "kaiming_uniform" => Init::KaimingUniform {
            mode: mode(),
            nonlinearity: nl(),
        },
        "kaiming_normal" => Init::KaimingNormal {
            mode: mode(),
            nonlinearity: nl(),
        },
        n if n.starts_with("linear_default") => Init::LinearDefault {
            fan_in: a["fan_in"].as_u64().unwrap() as usize,
        },
        n => panic!("unknown init {n}"),
    }
}

/// Sample mean and (Bessel-corrected, like torch.std) standard deviation.
fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    (m, v.sqrt())
}

/// For each initialiser: vgrad's distribution against PyTorch's formula (computed by PyTorch's
/// own fan and gain helpers), then PyTorch's sample and a vgrad sample of the same shape against
/// that distribution, within statistical tolerance.
#[test]
fn initialisers_match_pytorch_formulas_and_sample_statistics() {
    for c in golden()["init"].as_array().unwrap() {
        let name = format!("{} {}", c["name"].as_str().unwrap(), c["args"]);
        let shape: Vec<usize> = c["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap() as usize)
            .collect();
        let init = init_of(c);
        let want = f(&c["value"]);
        let dist = init.distribution(&shape).unwrap();
        let is_uniform = c["dist"] == "uniform";
        match dist {
            Dist::Uniform(lo, hi) if is_uniform => {
                assert!(
                    (hi - want).abs() <= 1e-12 * want,
                    "{name}: bound {hi} vs {want}"
                );
                assert!(
                    (lo + want).abs() <= 1e-12 * want,
                    "{name}: low {lo} vs -{want}"
                );
            }
            Dist::Normal(m, s) if !is_uniform => {
                assert!(
                    m == 0.0 && (s - want).abs() <= 1e-12 * want,
                    "{name}: std {s}"
                );
            }
            d => panic!("{name}: wrong distribution {d:?}"),
        }

        // Statistical tolerances, about six standard errors: the sample mean's standard error is
        // σ/√n; the sample std's relative standard error is √((κ − 1)/4n) (κ the kurtosis: 1.8
        // for uniform, 3 for normal), below 0.71/√n.
        let n = c["numel"].as_u64().unwrap() as f64;
        let sigma = dist.std();
        let mean_tol = 6.0 * sigma / n.sqrt();
        let std_tol = 6.0 * 0.71 / n.sqrt() * sigma;
        let mut rng = StdRng::seed_from_u64(7);
        let ours = init.tensor::<f64>(&shape, &mut rng).unwrap();
        let (om, os) = mean_std(ours.data());
        let o_max = ours.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let samples = [
            (
                "PyTorch",
                f(&c["sample_mean"]),
                f(&c["sample_std"]),
                f(&c["sample_max_abs"]),
            ),
            ("vgrad", om, os, o_max),
        ];
        for (who, m, s, max_abs) in samples {
            assert!(m.abs() <= mean_tol, "{name}: {who} sample mean {m}");
            assert!(
                (s - sigma).abs() <= std_tol,
                "{name}: {who} sample std {s} vs {sigma}"
            );
            if is_uniform {
                // All within the bound; the largest of n draws falls short of it by about b/n.
                assert!(
                    max_abs <= want,
                    "{name}: {who} max {max_abs} > bound {want}"
                );
                assert!(
                    max_abs >= want * (1.0 - 10.0 / n),
                    "{name}: {who} max {max_abs} far below the bound {want}"
                );
            }
        }
    }
}
