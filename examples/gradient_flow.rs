//! Where do a deep network's gradients go? The classic cases, measured, diagnosed and plotted.
//!
//! Builds 50-layer, width-64 networks (sigmoid + Xavier, ReLU + Xavier, ReLU + He, ReLU + He +
//! BatchNorm, and the same in residual blocks), runs one step of each on 64 N(0, 1) inputs with
//! the gradient monitor attached, prints each diagnosis, and writes to the output directory
//! (default `out/gradient_flow`):
//!
//! * `flow.svg` — ‖∂L/∂W‖ per layer against depth, one panel per network on shared axes (the
//!   gradient-flow plot); `backprop.svg` — the same for ‖∂L/∂h‖; `signal.svg` — the
//!   activations' std; `mean_max.svg` — mean and max |∂L/∂W| per layer of the sigmoid network;
//! * `heatmap.svg` — ‖∂L/∂W‖ per layer and step over 40 steps of training the He network;
//!   `heatmap_diverging.svg` — the same network at a learning rate that blows it up, on the
//!   same colour scale;
//! * `training.csv`, `training.json` — the records of the 40-step run, and `report.html`, the
//!   monitor's page for it (diagnosis, plots, every layer; opens offline).
//!
//! ```sh
//! cargo run --release --example gradient_flow
//! cargo run --release --example gradient_flow -- --quick --out DIR
//! cargo run --release --example gradient_flow -- --help
//! ```
//!
//! `--quick` trains the heatmap run for 5 steps instead of 40 (a smoke run).

#[path = "common/mod.rs"]
pub mod common;

use common::Command;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;
use vgrad::monitor::{
    flow_svg, heatmap_svg_with, log10_range, mean_max_svg, write_csv, write_json, write_svg,
    GradMonitor, MonitorConfig, PlotMetric, PlotOptions, StepRecord,
};
use vgrad::nn::init::Init;
use vgrad::nn::{
    mse_loss, Activation, BatchNorm1d, Ctx, Linear, LinearConfig, Module, Optimizer, Reduction,
    Residual, Sequential, Sgd, SgdConfig,
};
use vgrad::{Tape, Tensor};

/// The command line: the shared flags only.
pub const COMMAND: Command = Command {
    name: "gradient_flow",
    about: "the classic 50-layer cases, one step each: diagnoses, gradient-flow plots, heatmaps",
    quick: "a smoke run: the heatmap network trains 5 steps instead of 40",
    writes: Some("the plots and the training records"),
    extra: &[],
};

const DEPTH: usize = 50;
const WIDTH: usize = 64;
const BATCH: usize = 64;

/// How each hidden layer is built.
#[derive(Clone, Copy)]
enum Hidden {
    Plain(Activation<f32>),
    BatchNorm,
    ResidualBatchNorm,
}

fn network(hidden: Hidden, init: Init, seed: u64) -> vgrad::Result<Sequential<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = LinearConfig::init(init);
    let mut net = Sequential::new();
    for _ in 0..DEPTH - 1 {
        let linear = Linear::with_config(WIDTH, WIDTH, cfg, &mut rng)?;
        net = match hidden {
            Hidden::Plain(act) => net.push(linear).push(act),
            Hidden::BatchNorm => net
                .push(linear)
                .push(BatchNorm1d::new(WIDTH)?)
                .push(Activation::Relu),
            Hidden::ResidualBatchNorm => net.push(Residual::new(
                Sequential::new()
                    .push(linear)
                    .push(BatchNorm1d::new(WIDTH)?)
                    .push(Activation::Relu),
            )),
        };
    }
    Ok(net.push(Linear::with_config(WIDTH, 10, cfg, &mut rng)?))
}

fn data() -> vgrad::Result<(Tensor<f32>, Tensor<f32>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let n = Init::Normal {
        mean: 0.0,
        std: 1.0,
    };
    Ok((
        n.tensor(&[BATCH, WIDTH], &mut rng)?,
        n.tensor(&[BATCH, 10], &mut rng)?,
    ))
}

/// `steps` steps of SGD at `lr` with the monitor attached.
fn train(net: &mut Sequential<f32>, steps: usize, lr: f64) -> vgrad::Result<GradMonitor<f32>> {
    let (x, t) = data()?;
    let mut opt = Sgd::new(SgdConfig {
        lr,
        ..SgdConfig::default()
    })?;
    let mut mon = GradMonitor::new(MonitorConfig::default());
    for _ in 0..steps {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let y = net.forward(&mut ctx, tape.constant(x.clone()));
        let loss = mse_loss(y, t.clone(), Reduction::Mean);
        let grads = mon.backward(&ctx, net, loss);
        opt.step(net, &grads)?;
    }
    mon.after_update(net);
    Ok(mon)
}

/// The command line: `--help` prints the usage, a bad argument gives exit code 2, a failed
/// run exit code 1.
pub fn cli(args: impl IntoIterator<Item = String>) -> u8 {
    common::finish(COMMAND.parse(args), |args| {
        let written = run(&args.out, if args.quick { 5 } else { 40 })?;
        println!("{}", common::wrote(&written, &args.out));
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    cli(std::env::args().skip(1)).into()
}

/// A diagnosis under its heading, wrapped to the terminal's 100 columns.
fn print_diagnosis(heading: &str, diagnosis: &vgrad::monitor::Diagnosis) {
    println!(
        "== {heading}\n{}\n",
        common::wrap(&diagnosis.to_string(), common::COLUMNS)
    );
}

/// Runs every case, training the heatmap network for `steps` steps, and returns the files written.
pub fn run(out: &std::path::Path, steps: usize) -> vgrad::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    std::fs::create_dir_all(out).map_err(|source| vgrad::Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut write = |name: &str, text: String| {
        let path = out.join(name);
        write_svg(&text, &path)?;
        files.push(path);
        Ok::<(), vgrad::Error>(())
    };

    let xavier = Init::XavierUniform { gain: 1.0 };
    let cases = [
        (
            "sigmoid + Xavier",
            Hidden::Plain(Activation::Sigmoid),
            xavier,
        ),
        ("ReLU + Xavier", Hidden::Plain(Activation::Relu), xavier),
        (
            "ReLU + He",
            Hidden::Plain(Activation::Relu),
            Init::HE_NORMAL,
        ),
        ("ReLU + He + BatchNorm", Hidden::BatchNorm, Init::HE_NORMAL),
        (
            "... in residual blocks",
            Hidden::ResidualBatchNorm,
            Init::HE_NORMAL,
        ),
    ];
    let mut runs: Vec<(&str, StepRecord)> = Vec::new();
    for (name, hidden, init) in cases {
        let mut net = network(hidden, init, 1)?;
        let mon = train(&mut net, 1, 0.0)?;
        print_diagnosis(name, &mon.diagnose());
        runs.push((name, mon.steps()[0].clone()));
    }
    let named: Vec<(&str, &StepRecord)> = runs.iter().map(|(n, s)| (*n, s)).collect();
    let title = |what: &str| format!("{what} at initialisation: {DEPTH} layers, width {WIDTH}");
    let flow = |metric: PlotMetric, what: &str| {
        let opts = PlotOptions {
            metric,
            title: Some(title(what)),
            ..PlotOptions::default()
        };
        flow_svg(&named, &opts)
    };
    write(
        "flow.svg",
        flow(PlotMetric::WeightGradNorm, "Gradient flow")?,
    )?;
    write(
        "backprop.svg",
        flow(PlotMetric::OutputGradNorm, "Backpropagated signal")?,
    )?;
    write(
        "signal.svg",
        flow(PlotMetric::ActivationStd, "Forward signal")?,
    )?;
    let opts = PlotOptions {
        title: Some(title("Mean and max |∂L/∂W|, sigmoid + Xavier,")),
        ..PlotOptions::default()
    };
    write("mean_max.svg", mean_max_svg(&runs[0].1, &opts)?)?;

    let mut net = network(Hidden::Plain(Activation::Relu), Init::HE_NORMAL, 1)?;
    let mon = train(&mut net, steps, 0.01)?;
    print_diagnosis(
        &format!("{steps} steps of ReLU + He at lr 0.01"),
        &mon.diagnose(),
    );
    let mut diverging = network(Hidden::Plain(Activation::Relu), Init::HE_NORMAL, 1)?;
    let blown = train(&mut diverging, 6, 0.3)?;
    print_diagnosis("ReLU + He at lr 0.3", &blown.diagnose());
    // Both heatmaps on one colour scale, so that a colour is the same value in each.
    let shared = PlotOptions {
        log10_range: log10_range(
            mon.steps().iter().chain(blown.steps()),
            PlotMetric::WeightGradNorm,
        ),
        ..PlotOptions::default()
    };
    let titled = |t: &str| PlotOptions {
        title: Some(t.to_string()),
        ..shared.clone()
    };
    write(
        "heatmap.svg",
        heatmap_svg_with(
            mon.steps(),
            &titled("‖∂L/∂W‖ while training: ReLU + He, lr 0.01"),
        )?,
    )?;
    write(
        "heatmap_diverging.svg",
        heatmap_svg_with(
            blown.steps(),
            &titled("‖∂L/∂W‖ while diverging: ReLU + He, lr 0.3 (grey: NaN)"),
        )?,
    )?;
    write_csv(mon.steps(), out.join("training.csv"))?;
    write_json(mon.steps(), out.join("training.json"))?;
    mon.write_html(out.join("report.html"))?;
    let records = [
        out.join("training.csv"),
        out.join("training.json"),
        out.join("report.html"),
    ];
    files.extend(records);
    Ok(files)
}
