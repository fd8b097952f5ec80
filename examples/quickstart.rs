//! # Quickstart: train a small network
//!
//! A 2→32→32→2 ReLU network learns to tell apart two interleaving half moons, trained with Adam
//! on the softmax cross-entropy. You will see the whole training loop vgrad asks you to write:
//! a fresh [`Tape`] per step, a forward pass through a [`Ctx`] that binds the model's
//! parameters to that tape, `backward`, and an optimiser step.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! `--quick` trains for fewer steps (the test suite runs it that way); `--help` says so. It
//! writes no files, so unlike the other examples it takes no `--out`.

#[path = "common/mod.rs"]
pub mod common;

use common::Command;
use vgrad::nn::{accuracy, cross_entropy, Activation, Adam, AdamConfig, Ctx, Linear, Module};
use vgrad::nn::{Optimizer, Reduction, Sequential};
use vgrad::{data, Tape};

/// The command line: `--quick` and `--help` only, since nothing is written.
pub const COMMAND: Command = Command {
    name: "quickstart",
    about: "the smallest complete training loop: a small MLP learns two moons",
    quick: "a smoke run: 60 steps instead of 200",
    writes: None,
    extra: &[],
};

/// The command line: `--help` prints the usage, a bad argument gives exit code 2, a failed
/// run exit code 1.
pub fn cli(args: impl IntoIterator<Item = String>) -> u8 {
    common::finish(COMMAND.parse(args), |args| {
        let accuracy = train(if args.quick { 60 } else { 200 })?;
        println!("test accuracy: {:.1}%", 100.0 * accuracy);
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    cli(std::env::args().skip(1)).into()
}

/// Trains for `steps` full-batch steps and returns the accuracy on a held-out set.
pub fn train(steps: usize) -> vgrad::Result<f64> {
    let train = data::two_moons::<f32>(512, 0.1, 0)?;
    let test = data::two_moons::<f32>(512, 0.1, 1)?; // same shape, new points
    let mut rng = vgrad::seeded_rng(0); // a seeded generator of the `rand` vgrad uses
    let mut model = Sequential::new()
        .push(Linear::new(2, 32, &mut rng)?)
        .push(Activation::Relu)
        .push(Linear::new(32, 32, &mut rng)?)
        .push(Activation::Relu)
        .push(Linear::new(32, 2, &mut rng)?);
    let mut opt = Adam::new(AdamConfig {
        lr: 0.01,
        ..Default::default()
    })?;

    for step in 0..steps {
        // A tape records one forward pass; the next step starts a new one.
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let logits = model.forward(&mut ctx, tape.constant(train.x.clone()));
        let loss = cross_entropy(logits, &train.y, Reduction::Mean);
        let grads = ctx.param_grads(&loss.backward());
        opt.step(&mut model, &grads)?;
        if step % 20 == 0 || step + 1 == steps {
            println!("step {step:3}  loss {:.4}", loss.value().item());
        }
    }

    // Evaluation on the held-out points: with gradients off, the tape records values only.
    let tape = Tape::new();
    tape.set_grad_enabled(false);
    let logits = model
        .forward(&mut Ctx::new(&tape), tape.constant(test.x.clone()))
        .value();
    Ok(accuracy(&logits, &test.y))
}
