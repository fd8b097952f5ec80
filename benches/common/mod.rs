//! What both benchmark targets share: the configs, the models, the data and the training step.
//!
//! `benches/configs.json` is a copy of `../shared/bench/configs.json`, the file every peer
//! benchmark (PyTorch, JAX, candle, burn, the GEMM floor) reads, kept here so the crate's
//! benchmarks build and run without the shared folder. If the two ever differ, the shared one
//! is the reference: copy it over again (`scripts/compare.py` warns when they differ).
//!
//! Every model is built through vgrad's public API exactly as `torch_mlp.py` builds it:
//!
//! * `mlp`: `depth` Linear layers (`in → width → … → width → out`) with the activation between
//!   them and none after the last;
//! * `resbn`: `Linear(in, width)`, then `blocks` × `h ← h + l2(bn(relu(l1(h))))` with BatchNorm
//!   in training mode, then `Linear(width, out)`.
//!
//! All Linear layers have a bias and PyTorch's default initialisation. One training step is what
//! a vgrad user writes: a fresh tape, forward, loss (MSE or cross-entropy, mean), then backward
//! and the SGD update with the config's learning rate, by default in one sweep
//! (`Optimizer::backward_step`, each layer updated as soon as its gradient is complete) or, with
//! [`StepKind::TwoCalls`], as `backward` then `Sgd::step`. Both give the same weights. Gradients
//! are fresh each step (vgrad returns them as a value), which is PyTorch's
//! `zero_grad(set_to_none=True)`.

// Each bench target uses a different subset of these helpers.
#![allow(dead_code)]

use rand::{rngs::StdRng, RngExt, SeedableRng};
use serde_json::Value;
use vgrad::nn::init::Init;
use vgrad::nn::{cross_entropy, mse_loss, Reduction};
use vgrad::nn::{
    Activation, BatchNorm1d, Ctx, Linear, Module, Optimizer, Residual, Sequential, Sgd, SgdConfig,
};
use vgrad::{Element, Tape, Tensor};

/// The config file compiled into the benchmarks (a copy of the shared one; see the module docs).
pub const CONFIGS_JSON: &str = include_str!("../configs.json");

/// The architecture of a training-step config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A plain stack of `depth` Linear layers.
    Mlp { depth: usize },
    /// Residual blocks with BatchNorm.
    ResBn { blocks: usize },
}

/// The loss a config trains with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Mean squared error against N(0, 1) targets.
    Mse,
    /// Softmax cross-entropy against uniform labels in `[0, out)`.
    CrossEntropy,
}

/// One training-step config (an entry of `"mlp"` in configs.json).
#[derive(Clone, Debug)]
pub struct StepConfig {
    pub name: String,
    pub kind: Kind,
    pub input: usize,
    pub width: usize,
    pub out: usize,
    pub batch: usize,
    pub act: String,
    pub loss: LossKind,
    pub warmup: usize,
    pub steps: usize,
}

/// The per-op overhead chain: `n_ops` sigmoids on a tensor of `shape`.
#[derive(Clone, Debug)]
pub struct OverheadConfig {
    pub name: String,
    pub n_ops: usize,
    pub shape: Vec<usize>,
    pub warmup: usize,
    pub reps: usize,
}

/// The whole config file.
#[derive(Clone, Debug)]
pub struct Configs {
    pub lr: f64,
    pub seed: u64,
    pub steps: Vec<StepConfig>,
    pub overhead: OverheadConfig,
    /// The configs whose peak memory is measured, and how many steps those runs take.
    pub memory_configs: Vec<String>,
    pub memory_steps: usize,
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    let f = &v[key];
    assert!(!f.is_null(), "configs.json: missing field {key:?} in {v}");
    f
}

fn uint(v: &Value, key: &str) -> usize {
    field(v, key)
        .as_u64()
        .unwrap_or_else(|| panic!("configs.json: {key:?} is not a non-negative integer in {v}"))
        as usize
}

fn string(v: &Value, key: &str) -> String {
    field(v, key)
        .as_str()
        .unwrap_or_else(|| panic!("configs.json: {key:?} is not a string in {v}"))
        .to_string()
}

impl Configs {
    /// Parses the text of a configs.json. Panics with the offending field on a malformed file:
    /// a benchmark cannot do anything useful with half a config.
    pub fn parse(text: &str) -> Configs {
        let c: Value = serde_json::from_str(text).expect("configs.json is not valid JSON");
        let steps = field(&c, "mlp")
            .as_array()
            .expect("configs.json: \"mlp\" is not a list")
            .iter()
            .map(|s| StepConfig {
                name: string(s, "name"),
                kind: match string(s, "kind").as_str() {
                    "mlp" => Kind::Mlp {
                        depth: uint(s, "depth"),
                    },
                    "resbn" => Kind::ResBn {
                        blocks: uint(s, "blocks"),
                    },
                    k => panic!("configs.json: unknown kind {k:?}"),
                },
                input: uint(s, "in"),
                width: uint(s, "width"),
                out: uint(s, "out"),
                batch: uint(s, "batch"),
                act: string(s, "act"),
                loss: match string(s, "loss").as_str() {
                    "mse" => LossKind::Mse,
                    "ce" => LossKind::CrossEntropy,
                    l => panic!("configs.json: unknown loss {l:?}"),
                },
                warmup: uint(s, "warmup"),
                steps: uint(s, "steps"),
            })
            .collect();
        let o = field(&c, "overhead");
        let m = field(&c, "memory");
        Configs {
            lr: field(&c, "lr").as_f64().expect("configs.json: lr"),
            seed: field(&c, "seed").as_u64().expect("configs.json: seed"),
            steps,
            overhead: OverheadConfig {
                name: string(o, "name"),
                n_ops: uint(o, "n_ops"),
                shape: field(o, "shape")
                    .as_array()
                    .expect("configs.json: overhead.shape")
                    .iter()
                    .map(|d| d.as_u64().expect("configs.json: overhead.shape") as usize)
                    .collect(),
                warmup: uint(o, "warmup"),
                reps: uint(o, "reps"),
            },
            memory_configs: field(m, "configs")
                .as_array()
                .expect("configs.json: memory.configs")
                .iter()
                .map(|n| {
                    n.as_str()
                        .expect("configs.json: memory.configs")
                        .to_string()
                })
                .collect(),
            memory_steps: uint(m, "steps"),
        }
    }

    /// The configs compiled into the benchmarks.
    pub fn builtin() -> Configs {
        Configs::parse(CONFIGS_JSON)
    }

    /// The config called `name`.
    pub fn step(&self, name: &str) -> &StepConfig {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| {
                let known: Vec<_> = self.steps.iter().map(|s| s.name.as_str()).collect();
                panic!("no config {name:?}; known: {known:?}")
            })
    }
}

impl StepConfig {
    /// `(in, out)` of every Linear layer, in order (as `linear_shapes` in common.py).
    pub fn linear_shapes(&self) -> Vec<(usize, usize)> {
        match self.kind {
            Kind::Mlp { depth } => {
                let mut dims = vec![self.input];
                dims.extend(std::iter::repeat_n(self.width, depth - 1));
                dims.push(self.out);
                dims.windows(2).map(|w| (w[0], w[1])).collect()
            }
            Kind::ResBn { blocks } => {
                let w = self.width;
                let mut v = vec![(self.input, w)];
                v.extend(std::iter::repeat_n((w, w), 2 * blocks));
                v.push((w, self.out));
                v
            }
        }
    }

    /// The FLOP count every peer reports: 6·batch·Σ in·out (2 forward + 4 backward per
    /// multiply-add); activations, loss, BatchNorm and SGD are ignored.
    pub fn flops_per_step(&self) -> u64 {
        let macs: usize = self.linear_shapes().iter().map(|(a, b)| a * b).sum();
        6 * (self.batch * macs) as u64
    }
}

fn activation<T: Element>(name: &str) -> Activation<T> {
    match name {
        "sigmoid" => Activation::Sigmoid,
        "relu" => Activation::Relu,
        "tanh" => Activation::Tanh,
        // PyTorch's defaults, as torch_mlp.py builds them (grid.json).
        "leaky_relu" => Activation::leaky_relu(),
        "elu" => Activation::elu(),
        "gelu" => Activation::Gelu(vgrad::GeluApprox::None),
        "silu" => Activation::Silu,
        "softplus" => Activation::softplus(),
        a => panic!("configs.json: unknown activation {a:?}"),
    }
}

/// The model of a config, as `build` in torch_mlp.py builds it.
pub fn build_model<T: Element>(cfg: &StepConfig, rng: &mut StdRng) -> Sequential<T> {
    let linear = |i: usize, o: usize, rng: &mut StdRng| {
        Linear::<T>::new(i, o, rng).expect("config widths are positive")
    };
    let mut net = Sequential::new();
    match cfg.kind {
        Kind::Mlp { .. } => {
            let shapes = cfg.linear_shapes();
            let last = shapes.len() - 1;
            for (i, &(a, b)) in shapes.iter().enumerate() {
                net = net.push(linear(a, b, rng));
                if i < last {
                    net = net.push(activation::<T>(&cfg.act));
                }
            }
        }
        Kind::ResBn { blocks } => {
            let w = cfg.width;
            net = net.push(linear(cfg.input, w, rng));
            for _ in 0..blocks {
                let branch = Sequential::new()
                    .push(linear(w, w, rng))
                    .push(Activation::Relu)
                    .push(BatchNorm1d::new(w).expect("width is positive"))
                    .push(linear(w, w, rng));
                net = net.push(Residual::new(branch));
            }
            net = net.push(linear(w, cfg.out, rng));
        }
    }
    net.train();
    net
}

/// What the loss compares the prediction with.
pub enum Target<T: Element> {
    /// Regression targets `[batch, out]`.
    Mse(Tensor<T>),
    /// Class labels, one per row.
    Labels(Vec<usize>),
}

/// How a training step runs backward and the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepKind {
    /// `Optimizer::backward_step`: each parameter updated during the backward sweep.
    Fused,
    /// `backward`, then `Optimizer::step` over the collected gradients (PyTorch's order), the
    /// tape dropped in between.
    TwoCalls,
    /// The loop README.md teaches: `backward`, then `Optimizer::step` while the tape is still
    /// alive (the loss is read after the update).
    Readme,
}

impl StepKind {
    /// The name the benchmark lines carry.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Fused => "fused",
            StepKind::TwoCalls => "two_calls",
            StepKind::Readme => "readme",
        }
    }
}

/// A model, its optimiser and the fixed batch it trains on: everything one step needs.
pub struct Trainer<T: Element> {
    pub model: Sequential<T>,
    pub opt: Sgd<T>,
    pub x: Tensor<T>,
    pub target: Target<T>,
    pub kind: StepKind,
}

impl<T: Element> Trainer<T> {
    /// The model and data of `cfg`, drawn from the file's seed: the weights first, then
    /// x ~ N(0, 1), then the targets (N(0, 1) for MSE, uniform labels for cross-entropy).
    pub fn new(cfg: &StepConfig, lr: f64, seed: u64) -> Trainer<T> {
        let mut rng = StdRng::seed_from_u64(seed);
        let model = build_model::<T>(cfg, &mut rng);
        let normal = Init::Normal {
            mean: 0.0,
            std: 1.0,
        };
        let x = normal
            .tensor::<T>(&[cfg.batch, cfg.input], &mut rng)
            .expect("N(0, 1) is a valid distribution");
        let target = match cfg.loss {
            LossKind::Mse => Target::Mse(
                normal
                    .tensor::<T>(&[cfg.batch, cfg.out], &mut rng)
                    .expect("N(0, 1) is a valid distribution"),
            ),
            LossKind::CrossEntropy => Target::Labels(
                (0..cfg.batch)
                    .map(|_| rng.random_range(0..cfg.out))
                    .collect(),
            ),
        };
        let opt = Sgd::new(SgdConfig {
            lr,
            ..Default::default()
        })
        .expect("configs.json: lr must be finite and non-negative");
        Trainer {
            model,
            opt,
            x,
            target,
            kind: StepKind::Fused,
        }
    }

    /// One training step; returns the loss before the update. With [`StepKind::TwoCalls`] the
    /// tape lives only until the gradients are out, as PyTorch frees its graph in `backward()`:
    /// the update then runs with the activations' buffers already back in the pool.
    pub fn step(&mut self) -> T {
        if self.kind == StepKind::Readme {
            return self.readme_step();
        }
        let (value, grads) = {
            let tape = Tape::new();
            let mut ctx = Ctx::new(&tape);
            let pred = self.model.forward(&mut ctx, tape.constant(self.x.clone()));
            let loss = match &self.target {
                Target::Mse(y) => mse_loss(pred, y, Reduction::Mean),
                Target::Labels(t) => cross_entropy(pred, t, Reduction::Mean),
            };
            let value = loss.value().item();
            if self.kind == StepKind::Fused {
                self.opt
                    .backward_step(&mut self.model, &ctx, loss)
                    .expect("the fused SGD step returns no error");
                return value;
            }
            (value, ctx.param_grads(&loss.backward()))
        };
        self.opt
            .step(&mut self.model, &grads)
            .expect("every gradient has its parameter's shape");
        value
    }

    /// One step as README.md writes it: the tape lives until the end of the step, so the
    /// update runs while the tape still holds the parameters it recorded.
    fn readme_step(&mut self) -> T {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let pred = self.model.forward(&mut ctx, tape.constant(self.x.clone()));
        let loss = match &self.target {
            Target::Mse(y) => mse_loss(pred, y, Reduction::Mean),
            Target::Labels(t) => cross_entropy(pred, t, Reduction::Mean),
        };
        let grads = ctx.param_grads(&loss.backward());
        self.opt
            .step(&mut self.model, &grads)
            .expect("every gradient has its parameter's shape");
        loss.value().item()
    }
}

/// The overhead chain with gradients: a leaf `x`, `n_ops` sigmoids, `sum`, backward, and the
/// gradient of `x` read back (as `fwd_bwd` in torch_mlp.py). A fresh tape per pass, as in a
/// training loop. Returns `dy/dx` so the work cannot be optimised away.
pub fn chain_fwd_bwd(x: &Tensor<f32>, n_ops: usize) -> f32 {
    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    let mut y = xv;
    for _ in 0..n_ops {
        y = y.sigmoid();
    }
    let grads = y.sum().backward();
    grads.wrt(xv).expect("x is a leaf on the chain").data()[0]
}

/// The same chain forward only, with gradient recording off (`torch.no_grad()`).
pub fn chain_fwd_nograd(x: &Tensor<f32>, n_ops: usize) -> f32 {
    let tape = Tape::new();
    tape.set_grad_enabled(false);
    let mut y = tape.leaf(x.clone());
    for _ in 0..n_ops {
        y = y.sigmoid();
    }
    y.value().data()[0]
}

/// Summary statistics of per-step times, computed as `stats_ms` in common.py does (the median
/// of an even count is the mean of the middle two; p10/p90 are the elements at ⌊0.1·(n−1)⌋ and
/// ⌊0.9·(n−1)⌋ of the sorted list).
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
}

impl Stats {
    /// Statistics of `times_s` (seconds); panics on an empty list.
    pub fn of(times_s: &[f64]) -> Stats {
        assert!(!times_s.is_empty(), "no timings to summarise");
        let mut t: Vec<f64> = times_s.iter().map(|s| s * 1e3).collect();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let median_ms = if n % 2 == 1 {
            t[n / 2]
        } else {
            0.5 * (t[n / 2 - 1] + t[n / 2])
        };
        let at = |q: f64| t[(q * (n - 1) as f64) as usize];
        Stats {
            median_ms,
            p10_ms: at(0.1),
            p90_ms: at(0.9),
            min_ms: t[0],
            mean_ms: t.iter().sum::<f64>() / n as f64,
        }
    }
}
