//! # Dynamical isometry: predicting, before training, which deep networks will train
//!
//! ```sh
//! cargo run --release --example isometry            # the full run: 12 s of CPU once built
//! cargo run --release --example isometry -- --quick # a smoke run: shallow networks, one epoch
//! cargo run --release --example isometry -- --out DIR --epochs 4 --seed 1
//! cargo run --release --example isometry -- --help
//! ```
//!
//! A network's input–output Jacobian `J = ∂x^L/∂x⁰` is the product of one Jacobian per layer,
//! `D_l W_l` (`D_l` the diagonal of φ' at layer l). Its squared singular values say how much a
//! backward pass scales the gradient in each direction. Mean-field theory (Schoenholz et al.
//! 2017) predicts their *mean*: `∏ₗ χ₁(qˡ)`, with `χ₁ = σ_w² E[φ'(h)²]` at each layer's
//! pre-activation variance `qˡ`. tanh with σ_w = 1, σ_b = 0 is critical: `qˡ` shrinks like
//! 1/(2l) and χ₁(qˡ) ≈ 1 − 2qˡ tends to 1, so the mean decays only like 1/depth, not
//! exponentially. But the mean is not the whole story: with Gaussian
//! weights the squared singular values spread over more and more decades as depth grows, with
//! orthogonal weights they stay close together — *dynamical isometry* (Saxe et al. 2014;
//! Pennington, Schoenholz & Ganguli 2017). ReLU networks at criticality (He, σ_w² = 2) cannot
//! have it with either initialisation: `D_l` is half zeros.
//!
//! On the 8×8 digits bundled with vgrad (the crate's split: 1,437 train, 360 test,
//! standardised), for fully connected networks of width 64 (`depth` Linear + activation layers,
//! then a Linear readout to the 10 classes; biases start at zero), this example measures, from
//! one seed (`--seed`, default 0):
//!
//! 1. the exact singular values of the body's 64 × 64 Jacobian at initialisation
//!    (`vgrad::spectrum`, built by JVPs), at four test digits, for tanh and ReLU with orthogonal
//!    and Gaussian weights, at several depths: a table and `singular_values.svg`;
//! 2. the squared gradient norm reaching each layer in one backward pass of the loss, against
//!    the mean-field prediction `∏ χ₁` (`vgrad::meanfield`): `gradient_decay.svg`;
//! 3. test accuracy against epochs, SGD with momentum 0.9, batch 64: `accuracy.svg`.
//!
//! It writes to the output folder (default `out/isometry`) the three plots and `spectra.csv`,
//! `gradient_decay.csv` and `accuracy.csv` with every number plotted.
//!
//! The spectra and gradients are computed in f64 (the smallest singular values of a deep
//! Gaussian network are far below f32's resolution); training runs in f32 from the same
//! weights.

#[path = "common/mod.rs"]
pub mod common;
#[path = "common/lines.rs"]
mod lines;

use common::{Command, Extra, Stop};
use lines::{Axis, Chart, Panel, Series, Stroke};
use rand::{rngs::StdRng, SeedableRng};
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vgrad::data::{digits, Dataset};
use vgrad::meanfield::MeanField;
use vgrad::nn::init::Init;
use vgrad::nn::{
    accuracy, cross_entropy, Activation, Ctx, Linear, LinearConfig, Module, Optimizer, Reduction,
    Sequential, Sgd, SgdConfig,
};
use vgrad::spectrum::{input_jacobian, singular_values, Spectrum};
use vgrad::{Element, Tape, Tensor};

/// Training precision.
type F = f32;

/// Width of every hidden layer.
const WIDTH: usize = 64;
/// Test digits at which each Jacobian is taken; their singular values are pooled.
const POINTS: usize = 4;
/// Training digits in the batch whose loss is backpropagated for the gradient-decay plot.
const DECAY_BATCH: usize = 128;
/// The plotted densities spread each singular value as a normal this many decades wide
/// (a kernel density estimate: 256 values over up to 15 decades make a ragged histogram).
const BANDWIDTH: f64 = 0.15;
/// Batch size and momentum of the training comparison, as in the PyTorch reference.
const BATCH: usize = 64;
const MOMENTUM: f64 = 0.9;

/// The command line: the shared flags and `--epochs N`.
pub const COMMAND: Command = Command {
    name: "isometry",
    about: "deep tanh and ReLU networks at criticality: orthogonal against Gaussian weights",
    quick: "a smoke run: depths 4 and 12, one epoch on 256 training digits",
    writes: Some("the plots and CSV files"),
    extra: &[
        Extra {
            flag: "--epochs",
            value: "N",
            help: "training epochs (default 8; 1 with --quick)",
        },
        Extra {
            flag: "--seed",
            value: "S",
            help: "seeds the weights and the order of the training data (default 0)",
        },
    ],
};

/// Command-line options.
#[derive(Clone, Debug)]
pub struct Options {
    /// A smoke run: shallow networks, one short epoch.
    pub quick: bool,
    /// Where the plots and CSV files go.
    pub out: PathBuf,
    /// Training epochs.
    pub epochs: usize,
    /// Seeds the weights and the data order.
    pub seed: u64,
}

impl Options {
    /// Parses [`COMMAND`]'s arguments (those after the program's name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, Stop> {
        let args = COMMAND.parse(args)?;
        let epochs = args
            .value("--epochs")?
            .unwrap_or(if args.quick { 1 } else { 8 });
        if epochs == 0 {
            return Err(args.error("--epochs must be at least 1"));
        }
        let seed = args.value("--seed")?.unwrap_or(0);
        Ok(Options {
            quick: args.quick,
            out: args.out,
            epochs,
            seed,
        })
    }

    /// The depths whose spectra and gradient decay are measured.
    fn depths(&self) -> Vec<usize> {
        if self.quick {
            vec![4, 12]
        } else {
            vec![10, 50, 100, 200]
        }
    }

    /// The training comparison: (depth, learning rate), the reference's pairs.
    fn trainings(&self) -> Vec<(usize, f64)> {
        if self.quick {
            vec![(4, 0.01), (12, 0.002)]
        } else {
            vec![(50, 0.01), (200, 0.002)]
        }
    }
}

/// The activation of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// tanh at σ_w = 1, σ_b = 0 (critical: χ₁ → 1).
    Tanh,
    /// ReLU at σ_w² = 2 (He; critical: χ₁ = 1).
    Relu,
}

/// How the weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// A random orthogonal matrix times σ_w (`Init::Orthogonal`).
    Orthogonal,
    /// Independent N(0, σ_w²/fan_in) entries.
    Gaussian,
}

/// One kind of network: activation and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// The activation.
    pub act: Act,
    /// The weights' distribution.
    pub weights: Weights,
}

/// The four kinds, in the order the plots and tables list them.
pub const KINDS: [Kind; 4] = [
    Kind {
        act: Act::Tanh,
        weights: Weights::Orthogonal,
    },
    Kind {
        act: Act::Tanh,
        weights: Weights::Gaussian,
    },
    Kind {
        act: Act::Relu,
        weights: Weights::Orthogonal,
    },
    Kind {
        act: Act::Relu,
        weights: Weights::Gaussian,
    },
];

impl Kind {
    /// The critical σ_w of the activation (σ_b = 0).
    pub fn sigma_w(self) -> f64 {
        match self.act {
            Act::Tanh => 1.0,
            Act::Relu => std::f64::consts::SQRT_2,
        }
    }

    /// The network's name in tables and legends.
    pub fn name(self) -> &'static str {
        match (self.act, self.weights) {
            (Act::Tanh, Weights::Orthogonal) => "tanh, orthogonal",
            (Act::Tanh, Weights::Gaussian) => "tanh, Gaussian",
            (Act::Relu, Weights::Orthogonal) => "ReLU, orthogonal",
            (Act::Relu, Weights::Gaussian) => "ReLU, Gaussian (He)",
        }
    }

    fn init(self, gain: f64) -> Init {
        match self.weights {
            Weights::Orthogonal => Init::Orthogonal { gain },
            Weights::Gaussian => Init::Normal {
                mean: 0.0,
                std: gain / (WIDTH as f64).sqrt(),
            },
        }
    }

    fn activation<T: Element>(self) -> Activation<T> {
        match self.act {
            Act::Tanh => Activation::Tanh,
            Act::Relu => Activation::Relu,
        }
    }

    /// The colour of this kind in every plot: tanh blue/orange, ReLU green/red.
    fn colour(self) -> lines::RGBColor {
        let i = KINDS.iter().position(|&k| k == self).unwrap_or(0);
        lines::COLOURS[i]
    }

    /// The tanh networks are the comparison; ReLU is drawn thinner, for contrast.
    fn stroke(self) -> Stroke {
        match self.act {
            Act::Tanh => Stroke::Solid(4),
            Act::Relu => Stroke::Solid(2),
        }
    }

    /// The mean-field model of one layer.
    fn mean_field(self) -> vgrad::Result<MeanField> {
        MeanField::new(self.activation(), self.sigma_w(), 0.0)
    }
}

/// `depth` × (Linear 64 → 64, activation): the part whose Jacobian is measured. Biases start
/// at zero (σ_b = 0).
fn body<T: Element>(kind: Kind, depth: usize, rng: &mut StdRng) -> vgrad::Result<Sequential<T>> {
    let cfg = LinearConfig::init(kind.init(kind.sigma_w()));
    let mut net = Sequential::new();
    for _ in 0..depth {
        net = net
            .push(Linear::with_config(WIDTH, WIDTH, cfg, rng)?)
            .push(kind.activation::<T>());
    }
    Ok(net)
}

/// The body, then a Linear readout to the classes (same weights scheme, gain 1). Built from
/// the same seed, its body has the same weights as [`body`]'s.
fn network<T: Element>(
    kind: Kind,
    depth: usize,
    classes: usize,
    seed: u64,
) -> vgrad::Result<Sequential<T>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let net = body(kind, depth, &mut rng)?;
    let cfg = LinearConfig::init(kind.init(1.0));
    Ok(net.push(Linear::with_config(WIDTH, classes, cfg, &mut rng)?))
}

/// Mean of x² over the row's features: with weights of variance σ_w²/fan_in, the first layer's
/// pre-activations have variance q¹ = σ_w² · this.
fn mean_square(row: &[f64]) -> f64 {
    row.iter().map(|v| v * v).sum::<f64>() / row.len().max(1) as f64
}

/// χ₁ at each layer 1..=depth, from the first layer's pre-activation variance `q1`, following
/// the variance map down the network.
fn chi_profile(kind: Kind, q1: f64, depth: usize) -> vgrad::Result<Vec<f64>> {
    let mf = kind.mean_field()?;
    let mut q = q1;
    let mut chis = Vec::with_capacity(depth);
    for _ in 0..depth {
        chis.push(mf.chi1_at(q));
        q = mf.variance_map(q);
    }
    Ok(chis)
}

/// The Jacobian spectrum of one network at initialisation, and the mean-field prediction.
#[derive(Clone, Debug)]
pub struct SpectrumRow {
    /// The network.
    pub kind: Kind,
    /// Its depth (Linear + activation layers before the readout).
    pub depth: usize,
    /// The singular values at every point, pooled (64 per point).
    pub spectrum: Spectrum,
    /// Mean-field prediction of the mean of σ², ∏ χ₁, averaged over the points.
    pub predicted_mean_sq: f64,
}

impl SpectrumRow {
    /// The smallest singular value, or `None` when it is numerically zero: below
    /// [`Spectrum::resolution`], `n·ε·σ_max` (n the pooled count), where an f64 SVD is rounding.
    pub fn resolved_min(&self) -> Option<f64> {
        let s = &self.spectrum;
        (s.min() >= s.resolution()).then(|| s.min())
    }

    /// How many pooled singular values are numerically zero.
    pub fn zeros(&self) -> usize {
        let s = &self.spectrum;
        let floor = s.resolution();
        s.singular_values().iter().filter(|&&v| v < floor).count()
    }
}

fn spectrum_row(
    kind: Kind,
    depth: usize,
    points: &Dataset<f64>,
    seed: u64,
) -> vgrad::Result<SpectrumRow> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = body::<f64>(kind, depth, &mut rng)?;
    let mut pooled = Vec::new();
    let mut predicted = 0.0;
    for row in points.x.data().chunks(WIDTH) {
        let x = Tensor::from_vec(row.to_vec(), &[1, WIDTH])?;
        pooled.extend(singular_values(&input_jacobian(&mut net, &x)?)?);
        let q1 = kind.sigma_w().powi(2) * mean_square(row);
        predicted += chi_profile(kind, q1, depth)?.iter().product::<f64>();
    }
    Ok(SpectrumRow {
        kind,
        depth,
        spectrum: Spectrum::from_singular_values(pooled)?,
        predicted_mean_sq: predicted / points.len() as f64,
    })
}

/// Per-layer squared gradient norms in one backward pass, and their prediction.
#[derive(Clone, Debug)]
pub struct Decay {
    /// The network.
    pub kind: Kind,
    /// Its depth.
    pub depth: usize,
    /// ‖∂L/∂xˡ‖² / ‖∂L/∂x^L‖² for l = 0 (the input) ..= depth (the body's output), xˡ the
    /// output of layer l's activation.
    pub measured: Vec<f64>,
    /// The mean-field prediction of the same ratio, ∏_{k>l} χ₁(qᵏ).
    pub predicted: Vec<f64>,
}

fn decay(kind: Kind, depth: usize, batch: &Dataset<f64>, seed: u64) -> vgrad::Result<Decay> {
    let mut net = network::<f64>(kind, depth, batch.classes, seed)?;
    let tape = Tape::new();
    let mut ctx = Ctx::new(&tape);
    // The input is a leaf so that its gradient is kept; each activation's output is retained.
    let mut h = tape.leaf(batch.x.clone());
    let mut outputs = vec![h];
    for (i, child) in net.children_mut().iter_mut().enumerate() {
        h = ctx.child(&i.to_string(), child.as_mut(), h);
        if i % 2 == 1 {
            outputs.push(h.retain_grad());
        }
    }
    let loss = cross_entropy(h, &batch.y, Reduction::Mean);
    let grads = loss.backward();
    let sq = |v| {
        grads
            .wrt(v)
            .map_or(f64::NAN, |g| g.data().iter().map(|x| x * x).sum::<f64>())
    };
    let norms: Vec<f64> = outputs.iter().map(|&v| sq(v)).collect();
    let top = norms[depth];
    let q1 = batch.x.data().chunks(WIDTH).map(mean_square).sum::<f64>() / batch.len() as f64
        * kind.sigma_w().powi(2);
    let chis = chi_profile(kind, q1, depth)?;
    // predicted[l] = ∏_{k=l+1}^{depth} χ₁(qᵏ); chis[k − 1] is layer k's.
    let mut predicted = vec![1.0; depth + 1];
    for l in (0..depth).rev() {
        predicted[l] = predicted[l + 1] * chis[l];
    }
    Ok(Decay {
        kind,
        depth,
        measured: norms.iter().map(|n| n / top).collect(),
        predicted,
    })
}

/// One training run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The network.
    pub kind: Kind,
    /// Its depth.
    pub depth: usize,
    /// SGD's learning rate.
    pub lr: f64,
    /// Test accuracy at initialisation and after each epoch.
    pub test_acc: Vec<f64>,
    /// Training accuracy after the last epoch.
    pub train_acc: f64,
    /// The last step's loss.
    pub final_loss: f64,
    /// Wall time of the run.
    pub seconds: f64,
}

fn evaluate(model: &mut Sequential<F>, data: &Dataset<F>) -> f64 {
    let tape = Tape::new();
    tape.set_grad_enabled(false);
    let logits = model.forward(&mut Ctx::new(&tape), tape.constant(data.x.clone()));
    accuracy(&logits.value(), &data.y)
}

fn train(
    kind: Kind,
    depth: usize,
    lr: f64,
    train: &Dataset<F>,
    test: &Dataset<F>,
    opts: &Options,
) -> Result<Run, Box<dyn Error>> {
    let epochs = opts.epochs;
    let start = Instant::now();
    let mut model = network::<F>(kind, depth, train.classes, opts.seed)?;
    let mut opt = Sgd::<F>::new(SgdConfig {
        lr,
        momentum: MOMENTUM,
        ..SgdConfig::default()
    })?;
    let label = format!("{}, depth {depth}", kind.name());
    let bar = common::progress((epochs * train.len().div_ceil(BATCH)) as u64, &label);
    let mut test_acc = vec![evaluate(&mut model, test)];
    let mut tape = Tape::new();
    let mut final_loss = f64::NAN;
    for epoch in 0..epochs {
        for (x, y) in train.batches(BATCH, opts.seed + epoch as u64)? {
            tape.reset();
            let mut ctx = Ctx::new(&tape);
            let logits = model.forward(&mut ctx, tape.constant(x));
            let loss = cross_entropy(logits, &y, Reduction::Mean);
            final_loss = f64::from(loss.value().item());
            let grads = ctx.param_grads(&loss.backward());
            opt.step(&mut model, &grads)?;
            bar.inc(1);
        }
        test_acc.push(evaluate(&mut model, test));
        bar.set_message(format!("test {:.1}%", 100.0 * test_acc[epoch + 1]));
    }
    bar.finish_and_clear();
    Ok(Run {
        kind,
        depth,
        lr,
        train_acc: evaluate(&mut model, train),
        test_acc,
        final_loss,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Everything the example measured and wrote.
#[derive(Debug)]
pub struct Summary {
    /// The spectra, by depth then kind.
    pub spectra: Vec<SpectrumRow>,
    /// The gradient decay, by depth then kind.
    pub decays: Vec<Decay>,
    /// The training runs, by depth then kind.
    pub runs: Vec<Run>,
    /// Seconds spent on the spectra and the gradient decay, and on training.
    pub seconds: (f64, f64),
    /// The files written.
    pub files: Vec<PathBuf>,
}

fn depth_title(depth: usize) -> String {
    format!("depth {depth}")
}

fn spectra_chart(spectra: &[SpectrumRow], depths: &[usize]) -> vgrad::Result<Chart> {
    let lo = spectra
        .iter()
        .flat_map(|r| {
            let floor = r.spectrum.resolution();
            r.spectrum
                .singular_values()
                .iter()
                .filter(move |&&v| v >= floor)
        })
        .fold(f64::INFINITY, |a, &v| a.min(v))
        .log10()
        .floor()
        - 1.0;
    let hi = spectra
        .iter()
        .map(|r| r.spectrum.max().log10())
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil();
    let mut panels = Vec::new();
    for &d in depths {
        let mut series = Vec::new();
        let mut notes = Vec::new();
        for r in spectra.iter().filter(|r| r.depth == d) {
            // Numerically zero values are left out of the density (its area is the fraction
            // resolved) and counted in a note instead: at the left edge they dwarfed the rest.
            let zeros = r.zeros();
            if zeros > 0 {
                let n = r.spectrum.len();
                notes.push((
                    format!("{zeros}/{n} ≈ 0: {}", r.kind.name()),
                    r.kind.colour(),
                ));
            }
            let floor = r.spectrum.resolution();
            let resolved: Vec<f64> = r
                .spectrum
                .singular_values()
                .iter()
                .copied()
                .filter(|&v| v >= floor)
                .collect();
            let share = resolved.len() as f64 / r.spectrum.len() as f64;
            let points = match Spectrum::from_singular_values(resolved) {
                Ok(s) => s
                    .smoothed_density(240, 10f64.powf(lo), 10f64.powf(hi), BANDWIDTH, true)?
                    .into_iter()
                    .map(|(x, y)| (x, y * share))
                    .collect(),
                Err(_) => Vec::new(), // all numerically zero
            };
            series.push(Series {
                name: r.kind.name().into(),
                points,
                colour: r.kind.colour(),
                stroke: r.kind.stroke(),
            });
        }
        panels.push(Panel {
            title: depth_title(d),
            series,
            notes,
        });
    }
    Ok(Chart {
        title: "Singular values of the input-output Jacobian at initialisation, width 64".into(),
        x: Axis {
            desc: "singular value σ (≈ 0: below the SVD's resolution)".into(),
            log: true,
            range: Some((10f64.powf(lo), 10f64.powf(hi))),
        },
        y: Axis {
            desc: "density per decade of σ (area: share not ≈ 0)".into(),
            log: false,
            range: None,
        },
        panels,
        size: None,
        shared_x: true,
    })
}

fn decay_chart(decays: &[Decay], depths: &[usize]) -> Chart {
    let panels = depths
        .iter()
        .map(|&d| {
            let mut series: Vec<Series> = decays
                .iter()
                .filter(|r| r.depth == d)
                .map(|r| Series {
                    name: format!("{}: measured", r.kind.name()),
                    points: r
                        .measured
                        .iter()
                        .enumerate()
                        .map(|(l, &v)| (l as f64, v))
                        .collect(),
                    colour: r.kind.colour(),
                    stroke: r.kind.stroke(),
                })
                .collect();
            // The prediction depends on the activation only: one line each, over the measures.
            for act in [Act::Tanh, Act::Relu] {
                if let Some(r) = decays.iter().find(|r| r.depth == d && r.kind.act == act) {
                    series.push(Series {
                        name: match act {
                            Act::Tanh => "tanh: mean field, ∏ χ₁".into(),
                            Act::Relu => "ReLU: mean field, ∏ χ₁ = 1".into(),
                        },
                        points: r
                            .predicted
                            .iter()
                            .enumerate()
                            .map(|(l, &v)| (l as f64, v))
                            .collect(),
                        colour: lines::INK,
                        stroke: match act {
                            Act::Tanh => Stroke::Dashed(2),
                            Act::Relu => Stroke::Dashed(1),
                        },
                    });
                }
            }
            Panel {
                title: depth_title(d),
                series,
                notes: Vec::new(),
            }
        })
        .collect();
    Chart {
        title: "Gradient reaching each layer at initialisation: measured and predicted".into(),
        x: Axis {
            desc: "layer l (0 = input)".into(),
            log: false,
            range: None,
        },
        y: Axis {
            desc: "‖∂L/∂xˡ‖² / ‖∂L/∂x^L‖²".into(),
            log: true,
            range: None,
        },
        panels,
        size: None,
        shared_x: false,
    }
}

fn accuracy_chart(runs: &[Run], trainings: &[(usize, f64)], seed: u64) -> Chart {
    let panels = trainings
        .iter()
        .map(|&(d, lr)| Panel {
            title: format!("depth {d}, lr {lr}"),
            series: runs
                .iter()
                .filter(|r| r.depth == d)
                .map(|r| Series {
                    name: r.kind.name().into(),
                    points: r
                        .test_acc
                        .iter()
                        .enumerate()
                        .map(|(e, &a)| (e as f64, a))
                        .collect(),
                    colour: r.kind.colour(),
                    stroke: match r.kind.act {
                        Act::Tanh => Stroke::Solid(3),
                        Act::Relu => Stroke::Dots,
                    },
                })
                .collect(),
            notes: Vec::new(),
        })
        .collect();
    Chart {
        title: format!("Test accuracy while training: SGD, momentum 0.9, batch 64, seed {seed}"),
        x: Axis {
            desc: "epoch".into(),
            log: false,
            range: None,
        },
        y: Axis {
            desc: "test accuracy".into(),
            log: false,
            range: Some((0.0, 1.0)),
        },
        panels,
        size: Some((420 * trainings.len() as u32 + 300, 560)),
        shared_x: true,
    }
}

fn csvs(summary: &Summary) -> Result<Vec<(&'static str, String)>, std::fmt::Error> {
    let mut spectra =
        String::from("network,depth,mean_sq,var_sq,max,min,predicted_mean_sq,singular_values\n");
    for r in &summary.spectra {
        let s = &r.spectrum;
        let sv: Vec<String> = s
            .singular_values()
            .iter()
            .map(|v| format!("{v:e}"))
            .collect();
        writeln!(
            spectra,
            "\"{}\",{},{:e},{:e},{:e},{:e},{:e},{}",
            r.kind.name(),
            r.depth,
            s.mean_squared(),
            s.variance_squared(),
            s.max(),
            s.min(),
            r.predicted_mean_sq,
            sv.join(" ")
        )?;
    }
    let mut decay = String::from("network,depth,layer,measured,predicted\n");
    for d in &summary.decays {
        for (l, (m, p)) in d.measured.iter().zip(&d.predicted).enumerate() {
            writeln!(decay, "\"{}\",{},{l},{m:e},{p:e}", d.kind.name(), d.depth)?;
        }
    }
    let mut acc = String::from("network,depth,lr,epoch,test_acc\n");
    for r in &summary.runs {
        for (e, a) in r.test_acc.iter().enumerate() {
            writeln!(acc, "\"{}\",{},{},{e},{a:.4}", r.kind.name(), r.depth, r.lr)?;
        }
    }
    Ok(vec![
        ("spectra.csv", spectra),
        ("gradient_decay.csv", decay),
        ("accuracy.csv", acc),
    ])
}

/// Runs the measurements and the training comparison and writes the plots and CSV files.
pub fn run(opts: &Options) -> Result<Summary, Box<dyn Error>> {
    vgrad::set_flush_denormal(true);
    std::fs::create_dir_all(&opts.out)?;
    let depths = opts.depths();
    let trainings = opts.trainings();

    let start = Instant::now();
    let split = digits::<f64>()?;
    let classes = split.train.classes;
    let idx: Vec<usize> = (0..POINTS).collect();
    let (x, y) = split.test.batch(&idx);
    let points = Dataset { x, y, classes };
    let idx: Vec<usize> = (0..DECAY_BATCH).collect();
    let (x, y) = split.train.batch(&idx);
    let decay_batch = Dataset { x, y, classes };
    let mut spectra = Vec::new();
    let mut decays = Vec::new();
    for &d in &depths {
        for kind in KINDS {
            spectra.push(spectrum_row(kind, d, &points, opts.seed)?);
            decays.push(decay(kind, d, &decay_batch, opts.seed)?);
        }
    }
    let analysis = start.elapsed().as_secs_f64();
    println!(
        "Depths {depths:?}: Jacobian spectra at {POINTS} test digits, gradients from one \
         backward pass\nof {DECAY_BATCH} training digits: {analysis:.1} s"
    );

    let start = Instant::now();
    let split = digits::<F>()?;
    let (train_set, test_set) = if opts.quick {
        // A subset keeps the smoke run to a few seconds in a debug build.
        let idx: Vec<usize> = (0..256).collect();
        let (x, y) = split.train.batch(&idx);
        (Dataset { x, y, classes }, split.test)
    } else {
        (split.train, split.test)
    };
    println!(
        "Training on {} digits ({} test), {} epochs, SGD momentum {MOMENTUM}, batch {BATCH}:",
        train_set.len(),
        test_set.len(),
        opts.epochs
    );
    let mut runs = Vec::new();
    for &(d, lr) in &trainings {
        for kind in KINDS {
            let r = train(kind, d, lr, &train_set, &test_set, opts)?;
            println!(
                "  {:<20} depth {:>3}  lr {:<6} test {:5.1}%  {:5.1} s",
                r.kind.name(),
                r.depth,
                r.lr,
                100.0 * r.test_acc.last().copied().unwrap_or(f64::NAN),
                r.seconds
            );
            runs.push(r);
        }
    }
    let training = start.elapsed().as_secs_f64();

    let mut summary = Summary {
        spectra,
        decays,
        runs,
        seconds: (analysis, training),
        files: Vec::new(),
    };
    let mut files = Vec::new();
    for (name, chart) in [
        (
            "singular_values.svg",
            spectra_chart(&summary.spectra, &depths)?,
        ),
        ("gradient_decay.svg", decay_chart(&summary.decays, &depths)),
        (
            "accuracy.svg",
            accuracy_chart(&summary.runs, &trainings, opts.seed),
        ),
    ] {
        let path = opts.out.join(name);
        vgrad::monitor::write_svg(&lines::chart_svg(&chart)?, &path)?;
        files.push(path);
    }
    for (name, text) in csvs(&summary)? {
        let path = opts.out.join(name);
        std::fs::write(&path, text)?;
        files.push(path);
    }
    summary.files = files;
    Ok(summary)
}

/// The results as tables within [`common::COLUMNS`].
pub fn report(summary: &Summary, out: &Path) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Jacobian singular values σ at initialisation ({POINTS} test digits pooled, 64 each):"
    );
    let _ = writeln!(
        t,
        "{:<19} {:>5} {:>8} {:>10} {:>8} {:>6} {:>8} {:>8} {:>7} {:>3}",
        "network",
        "depth",
        "mean σ²",
        "mean field",
        "var σ²",
        "/mean²",
        "max σ",
        "min σ",
        "max/min",
        "≈0"
    );
    for r in &summary.spectra {
        let s = &r.spectrum;
        let (min, cond) = match r.resolved_min() {
            Some(m) => (format!("{m:.2e}"), format!("{:.1e}", s.max() / m)),
            None => (
                format!("<{:.0e}", s.resolution()),
                format!(">{:.0e}", s.max() / s.resolution()),
            ),
        };
        let _ = writeln!(
            t,
            "{:<19} {:>5} {:>8.2e} {:>10.2e} {:>8.2e} {:>6.1} {:>8.2e} {min:>8} {cond:>7} {:>3}",
            r.kind.name(),
            r.depth,
            s.mean_squared(),
            r.predicted_mean_sq,
            s.variance_squared(),
            s.variance_squared() / s.mean_squared().powi(2),
            s.max(),
            r.zeros()
        );
    }
    let _ = writeln!(
        t,
        "(mean field: ∏ χ₁ over the layers; /mean²: var σ² / (mean σ²)², the spread at any \
         scale;\n ≈0: how many of the {} values are below the SVD's resolution, n·ε·max σ)",
        POINTS * WIDTH
    );
    let _ = writeln!(
        t,
        "\nGradient reaching the input, ‖∂L/∂x⁰‖² / ‖∂L/∂x^L‖², one backward pass:"
    );
    let _ = writeln!(
        t,
        "{:<20} {:>5}  {:>10}  {:>10}",
        "network", "depth", "measured", "mean field"
    );
    for d in &summary.decays {
        let _ = writeln!(
            t,
            "{:<20} {:>5}  {:>10.3e}  {:>10.3e}",
            d.kind.name(),
            d.depth,
            d.measured[0],
            d.predicted[0]
        );
    }
    let _ = writeln!(
        t,
        "\nTest accuracy after each epoch (0: at initialisation):"
    );
    let epochs = summary.runs.first().map_or(0, |r| r.test_acc.len());
    let heads: String = (0..epochs).map(|e| format!("{e:>5}")).collect();
    let _ = writeln!(
        t,
        "{:<20} {:>5} {:>6} {heads}  train",
        "network", "depth", "lr"
    );
    for r in &summary.runs {
        let accs: String = r.test_acc.iter().map(|a| format!("{a:>5.2}")).collect();
        let _ = writeln!(
            t,
            "{:<20} {:>5} {:>6} {accs}  {:>5.2}",
            r.kind.name(),
            r.depth,
            r.lr,
            r.train_acc
        );
    }
    let _ = writeln!(
        t,
        "\nTime: {:.1} s for the spectra and gradients, {:.1} s training.",
        summary.seconds.0, summary.seconds.1
    );
    let _ = writeln!(t, "\n{}", common::wrote(&summary.files, out));
    t
}

/// The command line: `--help` prints the usage, a bad argument gives exit code 2, a failed
/// run exit code 1.
pub fn cli(args: impl IntoIterator<Item = String>) -> u8 {
    common::finish(Options::from_args(args), |opts| {
        let summary = run(&opts)?;
        print!("\n{}", report(&summary, &opts.out));
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    cli(std::env::args().skip(1)).into()
}
