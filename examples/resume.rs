//! # Stop a training run and resume it exactly
//!
//! Trains a 64→128→128→10 ReLU network on the bundled handwritten digits with AdamW and a
//! cosine learning-rate schedule, three times from the same initial weights:
//!
//! * **uninterrupted**: every epoch in one go;
//! * **resumed**: half the epochs, then the model and the optimiser are saved
//!   (`save_safetensors`, `save_optimizer`), everything is dropped, a model with *other*
//!   random weights and a default-configured AdamW are built and loaded from the two files,
//!   the schedule is set to the saved epoch, and training carries on;
//! * **weights only**: the same, but only the model is loaded; the optimiser starts fresh.
//!
//! It prints each run's mean training loss per epoch, the largest weight difference from the
//! uninterrupted run and each run's test accuracy. The resumed run is the uninterrupted one,
//! to the bit; the weights-only run is not: AdamW's moment estimates start again from zero, so
//! its first steps after the restart are as large as its very first ones (the loss jumps),
//! and from there it is another run. The data order is a function of the epoch number
//! (`Dataset::batches(batch, epoch)`), so the epoch is all the loop itself must keep.
//!
//! ```text
//! cargo run --release --example resume
//! cargo run --release --example resume -- --quick --out DIR
//! cargo run --release --example resume -- --help
//! ```
//!
//! Writes `model.safetensors` and `optimizer.safetensors` to the output directory (default
//! `out/resume`). `--quick` trains 4 epochs instead of 12 (the test suite runs it that way).

#[path = "common/mod.rs"]
pub mod common;

use common::Command;
use rand::{rngs::StdRng, SeedableRng};
use std::path::Path;
use vgrad::data::{self, Dataset};
use vgrad::nn::{
    cross_entropy, load_optimizer, load_safetensors, save_optimizer, save_safetensors, Activation,
    AdamW, AdamWConfig, CosineAnnealingLr, Ctx, Linear, LrScheduler, Module, Optimizer, Reduction,
    Sequential,
};
use vgrad::Tape;

/// The command line: the shared flags only.
pub const COMMAND: Command = Command {
    name: "resume",
    about: "stop a training run, save model and optimiser, and resume it to the bit",
    quick: "a smoke run: 4 epochs instead of 12",
    writes: Some("the two checkpoint files"),
    extra: &[],
};

const BASE_LR: f64 = 3e-3;
const BATCH: usize = 64;

/// The command line: `--help` prints the usage, a bad argument gives exit code 2, a failed
/// run exit code 1.
pub fn cli(args: impl IntoIterator<Item = String>) -> u8 {
    common::finish(COMMAND.parse(args), |args| {
        report(args.quick, &args.out)?;
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    cli(std::env::args().skip(1)).into()
}

/// Runs the example and prints what it measured.
fn report(quick: bool, out: &Path) -> vgrad::Result<()> {
    let summary = run(if quick { 4 } else { 12 }, out)?;
    println!(
        "mean training loss per epoch (the restart is after epoch {}):",
        summary.resumed_at
    );
    println!("epoch  uninterrupted  resumed   weights only");
    for (e, ((a, b), c)) in summary
        .uninterrupted
        .iter()
        .zip(&summary.resumed)
        .zip(&summary.weights_only)
        .enumerate()
    {
        let mark = if e == summary.resumed_at {
            "  <- restart"
        } else {
            ""
        };
        println!("{:5}  {a:13.6}  {b:8.6}  {c:12.6}{mark}", e + 1);
    }
    println!(
        "largest |ΔW| from the uninterrupted run: resumed {:.1e}, weights only {:.1e}",
        summary.resumed_max_diff, summary.weights_only_max_diff
    );
    let [a, b, c] = summary.test_accuracy.map(|x| 100.0 * x);
    println!("test accuracy: uninterrupted {a:.1}%, resumed {b:.1}%, weights only {c:.1}%");
    let files = [
        out.join("model.safetensors"),
        out.join("optimizer.safetensors"),
    ];
    println!("{}", common::wrote(&files, out));
    Ok(())
}

/// What [`run`] measured: each run's mean training loss per epoch.
pub struct Summary {
    /// Epochs done before the restart.
    pub resumed_at: usize,
    /// The run without a restart.
    pub uninterrupted: Vec<f64>,
    /// Restarted from the saved model and optimiser.
    pub resumed: Vec<f64>,
    /// Restarted from the saved model with a fresh optimiser.
    pub weights_only: Vec<f64>,
    /// Largest absolute weight difference, resumed vs uninterrupted, after the last epoch.
    pub resumed_max_diff: f64,
    /// The same for the weights-only run.
    pub weights_only_max_diff: f64,
    /// Accuracy on the held-out digits: uninterrupted, resumed, weights only.
    pub test_accuracy: [f64; 3],
}

fn model(seed: u64) -> vgrad::Result<Sequential<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(Sequential::new()
        .push(Linear::new(64, 128, &mut rng)?)
        .push(Activation::Relu)
        .push(Linear::new(128, 128, &mut rng)?)
        .push(Activation::Relu)
        .push(Linear::new(128, 10, &mut rng)?))
}

fn optimizer() -> vgrad::Result<AdamW<f32>> {
    AdamW::new(AdamWConfig {
        lr: BASE_LR,
        ..Default::default()
    })
}

/// The whole schedule: cosine from `BASE_LR` to 0 over `epochs`, stepped once per epoch.
fn schedule(epochs: usize) -> vgrad::Result<LrScheduler<CosineAnnealingLr>> {
    LrScheduler::with_base_lr(CosineAnnealingLr::new(epochs, 0.0)?, BASE_LR)
}

/// Trains epochs `from..to` and returns each one's mean training loss. The data order of an
/// epoch depends on its number only.
fn train(
    model: &mut Sequential<f32>,
    opt: &mut dyn Optimizer<f32>,
    sched: &mut LrScheduler<CosineAnnealingLr>,
    data: &Dataset<f32>,
    from: usize,
    to: usize,
) -> vgrad::Result<Vec<f64>> {
    let mut means = Vec::new();
    for epoch in from..to {
        let (mut total, mut batches) = (0.0, 0);
        for (x, y) in data.batches(BATCH, epoch as u64)? {
            let tape = Tape::new();
            let mut ctx = Ctx::new(&tape);
            let logits = model.forward(&mut ctx, tape.constant(x));
            let loss = cross_entropy(logits, &y, Reduction::Mean);
            total += f64::from(loss.value().item());
            batches += 1;
            opt.backward_step(model, &ctx, loss)?;
        }
        means.push(total / batches as f64);
        sched.step(opt)?;
    }
    Ok(means)
}

/// The fraction of `data` the model classifies right (a tie counts for the label).
fn accuracy(model: &mut Sequential<f32>, data: &Dataset<f32>) -> f64 {
    let tape = Tape::new();
    tape.set_grad_enabled(false);
    let logits = model
        .forward(&mut Ctx::new(&tape), tape.constant(data.x.clone()))
        .value();
    let rows = logits.data().chunks(data.classes);
    let correct = rows
        .zip(&data.y)
        .filter(|(row, &y)| row.iter().all(|&z| z <= row[y]))
        .count();
    correct as f64 / data.len() as f64
}

fn max_abs_diff(a: &Sequential<f32>, b: &Sequential<f32>) -> f64 {
    let pairs = a.state_dict().into_iter().zip(b.state_dict());
    pairs
        .flat_map(|((_, x), (_, y))| {
            let d: Vec<f64> = x
                .data()
                .iter()
                .zip(y.data())
                .map(|(p, q)| f64::from((p - q).abs()))
                .collect();
            d
        })
        .fold(0.0, f64::max)
}

/// Runs the three trainings for `epochs` epochs (restarting after half of them), writing the
/// checkpoint files to `out`.
pub fn run(epochs: usize, out: &Path) -> vgrad::Result<Summary> {
    let split = data::digits::<f32>()?;
    let digits = split.train;
    let half = epochs / 2;
    std::fs::create_dir_all(out).map_err(|source| vgrad::Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let (model_file, opt_file) = (
        out.join("model.safetensors"),
        out.join("optimizer.safetensors"),
    );

    let mut straight = model(0)?;
    let (mut opt, mut sched) = (optimizer()?, schedule(epochs)?);
    let uninterrupted = train(&mut straight, &mut opt, &mut sched, &digits, 0, epochs)?;

    // First half, then save. The schedule's position is the epoch count, kept by the loop.
    let mut resumed = {
        let mut first = model(0)?;
        let (mut opt, mut sched) = (optimizer()?, schedule(epochs)?);
        let losses = train(&mut first, &mut opt, &mut sched, &digits, 0, half)?;
        save_safetensors(&first, &model_file)?;
        save_optimizer(&opt, &first, &opt_file)?;
        losses
    };

    // A new process, in effect: other random weights, a default optimiser, both loaded.
    let mut second = model(1)?;
    load_safetensors(&mut second, &model_file)?;
    let mut opt = AdamW::new(AdamWConfig::default())?;
    load_optimizer(&mut opt, &second, &opt_file)?;
    let mut sched = schedule(epochs)?;
    sched.set_epoch(half);
    debug_assert_eq!(opt.lr(), sched.last_lr());
    resumed.extend(train(
        &mut second,
        &mut opt,
        &mut sched,
        &digits,
        half,
        epochs,
    )?);

    // The same restart without the optimiser's state.
    let mut third = model(2)?;
    load_safetensors(&mut third, &model_file)?;
    let mut fresh = optimizer()?;
    let mut sched = schedule(epochs)?;
    sched.set_epoch(half);
    fresh.set_lr(sched.last_lr())?;
    let mut weights_only = resumed[..half].to_vec();
    weights_only.extend(train(
        &mut third, &mut fresh, &mut sched, &digits, half, epochs,
    )?);

    let test_accuracy = [&mut straight, &mut second, &mut third].map(|m| accuracy(m, &split.test));
    Ok(Summary {
        test_accuracy,
        resumed_at: half,
        resumed_max_diff: max_abs_diff(&second, &straight),
        weights_only_max_diff: max_abs_diff(&third, &straight),
        uninterrupted,
        resumed,
        weights_only,
    })
}
