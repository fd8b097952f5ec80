//! # Vanishing gradients: seen, measured, and fixed
//!
//! ```sh
//! cargo run --release --example vanishing            # the full run, about 8 s once built (release, 2 cores)
//! cargo run --release --example vanishing -- --quick # a smoke run
//! cargo run --release --example vanishing -- --out DIR --epochs 5
//! cargo run --release --example vanishing -- --help
//! ```
//!
//! During backpropagation the gradient that reaches a layer is a product of the derivatives of
//! every layer above it. Sigmoid's derivative is at most 1/4, so through 49 sigmoid layers the
//! product can shrink by up to 4⁴⁹ ≈ 10²⁹: the first layers of a 50-layer sigmoid network receive
//! almost nothing and stop learning. This example trains, from one seed, on the 8×8 handwritten
//! digits bundled with vgrad, a set of 50-layer networks (width 64) that each change one thing —
//! the activation, the initialisation, normalisation, skip connections — and a 2-hidden-layer
//! baseline. For each it prints:
//!
//! * the ratio of the first layer's weight-gradient norm to the last layer's, at step 0 and as a
//!   geometric mean over the first epoch — how much of the learning signal reaches the input;
//! * train and test accuracy at the end, and the time taken;
//! * the gradient monitor's verdict on the first epoch, and under the table its one-line
//!   diagnosis.
//!
//! It writes to the output folder (default `out/vanishing`): `gradient_flow.svg` (per-layer
//! gradient norm against depth at step 0, log scale, one panel per network with the others grey
//! behind), `heatmaps.svg` (layer × step, gradient norm over the first epoch, every network on
//! one colour scale) and the same one network a file (`heatmap_<network>.svg`),
//! `mean_max_sigmoid_xavier.svg` (mean and max |∂L/∂W| per layer at step 0), `report_<network>.html`
//! (the monitor's page for each network: diagnosis, plots, a table of every layer),
//! `records.csv` (every layer at every recorded step of every network), `summary.csv` (the
//! table, at full precision) and `diagnoses.txt` (the monitor's whole diagnosis of each
//! network: affected layers, likely causes, fixes).
//!
//! What to look for, and what the one-line story leaves out:
//!
//! * **sigmoid + Xavier** stays at chance; its first layer's gradient is some thirty orders of
//!   magnitude below the last layer's.
//! * **ReLU + Xavier** has balanced gradient norms, yet its forward signal halves in variance at
//!   every layer, so the last layers see almost constant inputs: the ratio alone can mislead, which
//!   is why the monitor also reads activation statistics.
//! * **ReLU + He** keeps the signal's scale at initialisation, but a plain 50-layer ReLU stack is
//!   still hard to train with plain SGD; Adam copes better, which is why it is used here.
//! * **BatchNorm in a deep net without skips** makes gradients *grow* toward the input (a known
//!   mean-field result, Yang et al. 2019), not vanish.
//! * **A residual MLP** (`residual, ReLU + He`: an input layer, 24 blocks `h + s·W₂·relu(W₁·h)`,
//!   an output layer) trains well, but only with its branches scaled (here s = 1/√24): with
//!   unscaled branches the forward signal grows with every block.
//!
//! Every network uses Adam (lr 1e-3 unless its row says otherwise), batch 64, and the same data
//! order. vgrad flushes subnormal floats to zero inside its own work by default
//! (`vgrad::set_flush_denormal` documents the three settings): the sigmoid network's tiny
//! gradients would otherwise make f32 arithmetic many times slower on some CPUs while computing
//! values below 1e-38 that change no weight.
//!
//! The monitor also writes TensorBoard runs, one per network, to `tensorboard/<network>/` in the
//! output folder: loss, learning rate and per-layer gradient norms, update ratios and dead or
//! saturated fractions as scalars, and per-layer gradient and activation histograms, for the
//! first epoch (the loss and learning rate for every step). Open them with
//! `tensorboard --logdir out/vanishing/tensorboard` (`pip install tensorboard`).

#[path = "common/mod.rs"]
pub mod common;

use common::{Command, Extra, Stop};
use rand::{rngs::StdRng, SeedableRng};
use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use vgrad::data::{digits, Dataset};
use vgrad::monitor::{diagnose, DiagnosisConfig, GradMonitor, MonitorConfig, PlotMetric};
use vgrad::monitor::{flow_svg, heatmap_svg_with, heatmaps_svg, log10_range, mean_max_svg};
use vgrad::monitor::{write_html, write_svg, PlotOptions};
use vgrad::monitor::{StepRecord, TensorBoardWriter, Verdict};
use vgrad::nn::init::{calculate_gain, FanMode, Init, Nonlinearity};
use vgrad::nn::{
    cross_entropy, Activation, Adam, AdamConfig, BatchNorm1d, Ctx, Linear, LinearConfig, Module,
    Optimizer, Reduction, Residual, ResidualConfig, Sequential,
};
use vgrad::Tape;

type F = f32;

/// Width of every hidden layer, and the number of `Linear` layers in the deep networks.
const WIDTH: usize = 64;
const DEPTH: usize = 50;
const SEED: u64 = 0;

/// The command line: the shared flags and `--epochs N`.
pub const COMMAND: Command = Command {
    name: "vanishing",
    about: "50-layer networks on digits: vanishing gradients seen, measured and fixed",
    quick: "a smoke run: two epochs on 256 training digits",
    writes: Some("the plots and CSV files"),
    extra: &[Extra {
        flag: "--epochs",
        value: "N",
        help: "training epochs (default 20; 2 with --quick)",
    }],
};

/// Command-line options.
#[derive(Clone, Debug)]
pub struct Options {
    /// A smoke run: two short epochs on a subset, every code path still exercised.
    pub quick: bool,
    /// Where the plots and CSV files go.
    pub out: PathBuf,
    /// Training epochs (over the 1,437 training digits).
    pub epochs: usize,
}

impl Options {
    /// Parses [`COMMAND`]'s arguments (those after the program's name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, Stop> {
        let args = COMMAND.parse(args)?;
        let epochs = args
            .value("--epochs")?
            .unwrap_or(if args.quick { 2 } else { 20 });
        if epochs == 0 {
            return Err(args.error("--epochs must be at least 1"));
        }
        Ok(Options {
            quick: args.quick,
            out: args.out,
            epochs,
        })
    }
}

/// One network of the comparison: how to build it, and how to train it.
struct Spec {
    name: &'static str,
    build: fn(&mut StdRng) -> vgrad::Result<Sequential<F>>,
    lr: f64,
}

/// What one network did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The network's name.
    pub name: &'static str,
    /// The learning rate Adam used.
    pub lr: f64,
    /// ‖∂L/∂W₁‖ / ‖∂L/∂W_last‖ at step 0.
    pub ratio_step0: f64,
    /// The same ratio, geometric mean over the first epoch.
    pub ratio_epoch1: f64,
    /// Accuracy on the training split after the last epoch.
    pub train_acc: f64,
    /// Accuracy on the test split after the last epoch.
    pub test_acc: f64,
    /// Wall time for the whole training run.
    pub seconds: f64,
    /// The monitor's verdict on the first epoch.
    pub verdict: Verdict,
    /// The first line of the monitor's diagnosis.
    pub diagnosis: String,
    /// The monitor's whole diagnosis.
    pub diagnosis_full: String,
    /// Loss at the first and the last step.
    pub loss: (f64, f64),
}

/// Everything the example measured and wrote.
#[derive(Debug)]
pub struct Summary {
    /// One entry per network, in the order trained.
    pub runs: Vec<RunSummary>,
    /// The files written.
    pub files: Vec<PathBuf>,
}

fn linear(i: usize, o: usize, init: Init, rng: &mut StdRng) -> vgrad::Result<Linear<F>> {
    Linear::with_config(i, o, LinearConfig::init(init), rng)
}

/// A plain stack of `DEPTH` Linear layers, 64 → 64 … → 10, with `act` (and optionally
/// BatchNorm before it) between them.
fn plain(
    act: Activation<F>,
    init: Init,
    bn: bool,
    rng: &mut StdRng,
) -> vgrad::Result<Sequential<F>> {
    let mut net = Sequential::new();
    for _ in 0..DEPTH - 1 {
        net = net.push(linear(WIDTH, WIDTH, init, rng)?);
        if bn {
            net = net.push(BatchNorm1d::new(WIDTH)?);
        }
        net = net.push(act);
    }
    Ok(net.push(linear(WIDTH, 10, Init::XavierUniform { gain: 1.0 }, rng)?))
}

fn xavier(nl: Nonlinearity) -> Init {
    Init::XavierUniform {
        gain: calculate_gain(nl),
    }
}

fn he(nl: Nonlinearity) -> Init {
    Init::KaimingNormal {
        mode: FanMode::FanIn,
        nonlinearity: nl,
    }
}

/// The networks, in the order the story tells them.
fn specs() -> Vec<Spec> {
    use Nonlinearity as N;
    vec![
        Spec {
            name: "sigmoid + Xavier",
            build: |r| plain(Activation::Sigmoid, xavier(N::Sigmoid), false, r),
            lr: 1e-3,
        },
        Spec {
            name: "tanh + Xavier",
            build: |r| plain(Activation::Tanh, xavier(N::Tanh), false, r),
            lr: 1e-3,
        },
        Spec {
            name: "ReLU + Xavier",
            build: |r| plain(Activation::Relu, xavier(N::Linear), false, r),
            lr: 1e-3,
        },
        Spec {
            name: "ReLU + He",
            build: |r| plain(Activation::Relu, he(N::Relu), false, r),
            lr: 1e-3,
        },
        Spec {
            name: "Leaky ReLU + He",
            build: |r| plain(Activation::leaky_relu(), he(N::LeakyRelu(0.01)), false, r),
            lr: 1e-3,
        },
        Spec {
            name: "ELU + He",
            build: |r| plain(Activation::elu(), he(N::Relu), false, r),
            lr: 1e-3,
        },
        Spec {
            name: "sigmoid + BatchNorm",
            build: |r| plain(Activation::Sigmoid, xavier(N::Sigmoid), true, r),
            lr: 1e-3,
        },
        Spec {
            name: "ReLU + He + BatchNorm",
            build: |r| plain(Activation::Relu, he(N::Relu), true, r),
            lr: 1e-3,
        },
        Spec {
            name: "residual, ReLU + He",
            build: residual,
            lr: 1e-3,
        },
        Spec {
            name: "shallow (2 hidden), ReLU",
            build: |r| {
                Ok(Sequential::new()
                    .push(linear(64, WIDTH, he(N::Relu), r)?)
                    .push(Activation::Relu)
                    .push(linear(WIDTH, WIDTH, he(N::Relu), r)?)
                    .push(Activation::Relu)
                    .push(linear(WIDTH, 10, Init::XavierUniform { gain: 1.0 }, r)?))
            },
            lr: 1e-3,
        },
    ]
}

/// 50 Linear layers as input layer, 24 residual blocks `h + s·W₂·relu(W₁·h)` and an output layer.
/// The branch scale s = 1/√24 keeps the forward signal's variance bounded: each block adds
/// roughly s² times the signal's variance, so the sum grows by (1 + 1/24)²⁴ ≈ e rather than 2²⁴.
fn residual(rng: &mut StdRng) -> vgrad::Result<Sequential<F>> {
    let blocks = (DEPTH - 2) / 2;
    let scale = 1.0 / (blocks as f64).sqrt();
    let init = he(Nonlinearity::Relu);
    let mut net = Sequential::new().push(linear(64, WIDTH, init, rng)?);
    for _ in 0..blocks {
        let branch = Sequential::new()
            .push(linear(WIDTH, WIDTH, init, rng)?)
            .push(Activation::Relu)
            .push(linear(WIDTH, WIDTH, init, rng)?);
        net = net.push(Residual::with_config(
            branch,
            ResidualConfig {
                branch_scale: scale,
            },
        )?);
    }
    Ok(net.push(linear(WIDTH, 10, Init::XavierUniform { gain: 1.0 }, rng)?))
}

/// ‖∂L/∂W‖ of the first matrix layer over the last one's.
fn first_last_ratio(step: &StepRecord) -> f64 {
    let mut linear = step
        .layers
        .iter()
        .filter(|l| l.weight_shape.len() == 2)
        .map(|l| l.weight_grad_norm);
    let first = linear.next().unwrap_or(f64::NAN);
    let last = linear.next_back().unwrap_or(f64::NAN);
    first / last
}

/// Fraction of rows whose largest logit is the label's.
fn accuracy(model: &mut Sequential<F>, data: &Dataset<F>) -> f64 {
    model.eval();
    let tape = Tape::new();
    tape.set_grad_enabled(false);
    let logits = model
        .forward(&mut Ctx::new(&tape), tape.constant(data.x.clone()))
        .value();
    model.train();
    let correct = logits
        .data()
        .chunks(data.classes)
        .zip(&data.y)
        .filter(|(row, &y)| row.iter().all(|&z| z <= row[y]))
        .count();
    correct as f64 / data.len() as f64
}

/// Trains one network; records every step of the first epoch with the monitor.
fn train_one(
    spec: &Spec,
    train: &Dataset<F>,
    test: &Dataset<F>,
    opts: &Options,
) -> Result<(RunSummary, Vec<StepRecord>), Box<dyn Error>> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut model = (spec.build)(&mut rng)?;
    let mut opt = Adam::<F>::new(AdamConfig {
        lr: spec.lr,
        ..Default::default()
    })?;
    let mut mon = GradMonitor::new(MonitorConfig {
        histograms: true,
        ..MonitorConfig::default()
    });
    // One TensorBoard run per network, so `tensorboard --logdir OUT/tensorboard` shows them side
    // by side; a fresh directory, not one appended to a previous run's.
    let run_dir = opts.out.join("tensorboard").join(slug(spec.name));
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    mon.attach_tensorboard(TensorBoardWriter::new(&run_dir)?);
    let mut tape = Tape::new();
    let mut losses = Vec::new();
    let batch = 64;
    let bar = common::progress(
        (opts.epochs * train.len().div_ceil(batch)) as u64,
        spec.name,
    );
    for epoch in 0..opts.epochs {
        bar.set_message(format!("epoch {}/{}", epoch + 1, opts.epochs));
        for (x, y) in train.batches(batch, SEED + epoch as u64)? {
            tape.reset();
            let mut ctx = Ctx::new(&tape);
            let logits = model.forward(&mut ctx, tape.constant(x));
            let loss = cross_entropy(logits, &y, Reduction::Mean);
            losses.push(loss.value().item() as f64);
            // The first epoch is watched layer by layer; afterwards the monitor steps aside.
            let grads = if epoch == 0 {
                mon.backward(&ctx, &model, loss)
            } else {
                ctx.param_grads(&loss.backward())
            };
            opt.step(&mut model, &grads)?;
            // The monitor writes the watched steps; the loss goes on after it steps aside.
            let step = losses.len() - 1;
            if let Some(tb) = mon.tensorboard() {
                tb.add_scalar("lr", spec.lr, step)?;
                if epoch > 0 {
                    tb.add_scalar("loss", losses[step], step)?;
                }
            }
            bar.inc(1);
        }
        if epoch == 0 {
            mon.after_update(&model);
        }
    }
    mon.tensorboard_status()?;
    bar.finish_and_clear();
    let steps = mon.steps().to_vec();
    let ratios: Vec<f64> = steps.iter().map(first_last_ratio).collect();
    let log_mean = ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len().max(1) as f64;
    let diagnosis = mon.diagnose();
    let diagnosis_full = diagnosis.to_string();
    let summary = RunSummary {
        name: spec.name,
        lr: spec.lr,
        ratio_step0: ratios.first().copied().unwrap_or(f64::NAN),
        ratio_epoch1: log_mean.exp(),
        train_acc: accuracy(&mut model, train),
        test_acc: accuracy(&mut model, test),
        seconds: start.elapsed().as_secs_f64(),
        verdict: diagnosis.verdict,
        diagnosis: diagnosis_full.lines().next().unwrap_or("").to_string(),
        diagnosis_full,
        loss: (
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
        ),
    };
    Ok((summary, steps))
}

/// A file-name-safe form of a network's name.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The pictures: the flow plot at step 0 (one panel per network), every network's heatmap over
/// the first epoch on one colour scale (together, and one file each), the mean-and-max view of
/// the sigmoid network, and an HTML report per network. Returns the files written.
fn plots(
    out: &std::path::Path,
    first_steps: &[(&str, StepRecord)],
    epochs: &[(&str, Vec<StepRecord>)],
) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files = Vec::new();
    let mut write = |name: String, svg: String| {
        let path = out.join(name);
        write_svg(&svg, &path)?;
        files.push(path);
        Ok::<(), vgrad::Error>(())
    };
    let named: Vec<(&str, &StepRecord)> = first_steps.iter().map(|(n, s)| (*n, s)).collect();
    let title = |t: &str| Some(t.to_string());
    let opts = PlotOptions {
        title: title("Gradient flow at step 0: ‖∂L/∂W‖ per layer, 50-layer networks on digits"),
        ..PlotOptions::default()
    };
    write("gradient_flow.svg".into(), flow_svg(&named, &opts)?)?;
    // One colour scale for every heatmap, so that a colour means the same value in each.
    let shared = log10_range(
        epochs.iter().flat_map(|(_, s)| s),
        PlotMetric::WeightGradNorm,
    );
    let runs: Vec<(&str, &[StepRecord])> = epochs.iter().map(|(n, s)| (*n, s.as_slice())).collect();
    let opts = PlotOptions {
        title: title("‖∂L/∂W‖ per layer and step over the first epoch, one colour scale"),
        log10_range: shared,
        ..PlotOptions::default()
    };
    write("heatmaps.svg".into(), heatmaps_svg(&runs, &opts)?)?;
    for (name, steps) in epochs {
        let opts = PlotOptions {
            title: title(&format!("{name}: ‖∂L/∂W‖, first epoch")),
            log10_range: shared,
            ..PlotOptions::default()
        };
        write(
            format!("heatmap_{}.svg", slug(name)),
            heatmap_svg_with(steps, &opts)?,
        )?;
    }
    if let Some((name, s0)) = first_steps.first() {
        let opts = PlotOptions {
            title: title(&format!("{name} at step 0: mean and max |∂L/∂W| per layer")),
            ..PlotOptions::default()
        };
        write(
            format!("mean_max_{}.svg", slug(name)),
            mean_max_svg(s0, &opts)?,
        )?;
    }
    for (name, steps) in epochs {
        let path = out.join(format!("report_{}.html", slug(name)));
        let d = diagnose(steps, &DiagnosisConfig::default());
        write_html(steps, &d, &format!("{name}: the first epoch"), &path)?;
        files.push(path);
    }
    Ok(files)
}

/// Runs the whole comparison and writes the plots and CSV files.
pub fn run(opts: &Options) -> Result<Summary, Box<dyn Error>> {
    std::fs::create_dir_all(&opts.out)?;
    let split = digits::<F>()?;
    let (train, test) = if opts.quick {
        // A subset keeps the smoke run to a few seconds in a debug build.
        let idx: Vec<usize> = (0..256).collect();
        let (x, y) = split.train.batch(&idx);
        let sub = Dataset {
            x,
            y,
            classes: split.train.classes,
        };
        (sub, split.test)
    } else {
        (split.train, split.test)
    };
    println!(
        "Training {} networks on {} digits ({} test), {} epochs each, from seed {SEED}:",
        specs().len(),
        train.len(),
        test.len(),
        opts.epochs
    );
    let mut runs = Vec::new();
    let mut first_steps = Vec::new();
    let mut files = Vec::new();
    let mut records = String::new();
    let mut epochs = Vec::new();
    for spec in specs() {
        let (summary, steps) = train_one(&spec, &train, &test, opts)?;
        let csv = vgrad::monitor::to_csv(&steps);
        for (i, line) in csv.lines().enumerate() {
            if i == 0 && records.is_empty() {
                writeln!(records, "network,{line}")?;
            } else if i > 0 {
                writeln!(records, "{},{line}", slug(spec.name))?;
            }
        }
        if let Some(s0) = steps.first() {
            first_steps.push((spec.name, s0.clone()));
        }
        epochs.push((spec.name, steps));
        // The run's last line, in a terminal (once its bar is cleared) and in a log alike.
        println!(
            "  {:<24} loss {:>7.4} -> {:<7.4}  test {:5.1}%  {:5.1} s",
            summary.name,
            summary.loss.0,
            summary.loss.1,
            100.0 * summary.test_acc,
            summary.seconds
        );
        runs.push(summary);
    }

    files.splice(0..0, plots(&opts.out, &first_steps, &epochs)?);
    let rec = opts.out.join("records.csv");
    std::fs::write(&rec, records)?;
    files.push(rec);

    let mut table = String::from(
        "network,lr,ratio_step0,ratio_epoch1,train_acc,test_acc,seconds,verdict,diagnosis\n",
    );
    for r in &runs {
        writeln!(
            table,
            "{},{},{:e},{:e},{:.4},{:.4},{:.2},{},\"{}\"",
            r.name,
            r.lr,
            r.ratio_step0,
            r.ratio_epoch1,
            r.train_acc,
            r.test_acc,
            r.seconds,
            r.verdict,
            r.diagnosis.replace('"', "'")
        )?;
    }
    let sum = opts.out.join("summary.csv");
    std::fs::write(&sum, table)?;
    files.push(sum);
    let mut diagnoses = String::new();
    for r in &runs {
        writeln!(diagnoses, "== {}\n{}\n", r.name, r.diagnosis_full)?;
    }
    let diag = opts.out.join("diagnoses.txt");
    std::fs::write(&diag, diagnoses)?;
    files.push(diag);
    Ok(Summary { runs, files })
}

/// The results as a table within [`common::COLUMNS`]: the verdict in the table, each
/// network's one-line diagnosis under it (the whole diagnosis is in `diagnoses.txt`).
pub fn report(summary: &Summary, out: &std::path::Path) -> String {
    let mut t = String::new();
    // Two heading lines keep the columns narrow: the rows stay within 100 columns.
    let _ = writeln!(
        t,
        "{:26}{:^19}  {:^13}{:10}monitor's verdict",
        "", "‖∂L/∂W‖ first/last", "accuracy", ""
    );
    let _ = writeln!(
        t,
        "{:<24}  {:>9} {:>9}  {:>6} {:>6}  {:>6}  (first epoch)",
        "network", "step 0", "epoch 1", "train", "test", "time"
    );
    for r in &summary.runs {
        let _ = writeln!(
            t,
            "{:<24}  {:>9.1e} {:>9.1e}  {:>5.1}% {:>5.1}%  {:>4.1} s  {}",
            r.name,
            r.ratio_step0,
            r.ratio_epoch1,
            100.0 * r.train_acc,
            100.0 * r.test_acc,
            r.seconds,
            r.verdict
        );
    }
    let _ = writeln!(
        t,
        "\n(epoch 1: the geometric mean over the first epoch's steps)\n\nThe monitor's diagnosis \
         of the first epoch:"
    );
    for r in &summary.runs {
        let line = format!("{}: {}", r.name, r.diagnosis);
        let _ = writeln!(t, "  {}", common::indented(&line, 4).trim_start());
    }
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
