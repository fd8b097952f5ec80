//! Neural-network building blocks on top of the engine: parameters, layers, initialisation.
//!
//! # Quickstart
//!
//! A 2→32→32→2 ReLU network learns to separate two interleaving half moons, trained with Adam
//! on the softmax cross-entropy: the whole training loop. Each step records a forward pass on a
//! fresh [`Tape`](crate::Tape), through a [`Ctx`] that binds the model's parameters to it;
//! `backward` gives the gradients and the optimiser applies them
//! ([`Optimizer::backward_step`] does both in one sweep when the loop needs nothing from the
//! gradients themselves). The same program is `examples/quickstart.rs`
//! (`cargo run --release --example quickstart`).
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! use vgrad::nn::{cross_entropy, Activation, Adam, AdamConfig, Ctx, Linear, Module, Optimizer};
//! use vgrad::nn::{Reduction, Sequential};
//! use vgrad::{data, Tape};
//!
//! let train = data::two_moons::<f32>(512, 0.1, 0)?;
//! let test = data::two_moons::<f32>(512, 0.1, 1)?; // same shape, new points
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut model = Sequential::new()
//!     .push(Linear::new(2, 32, &mut rng)?)
//!     .push(Activation::Relu)
//!     .push(Linear::new(32, 32, &mut rng)?)
//!     .push(Activation::Relu)
//!     .push(Linear::new(32, 2, &mut rng)?);
//! let mut opt = Adam::new(AdamConfig { lr: 0.01, ..Default::default() })?;
//!
//! for step in 0..200 {
//!     let tape = Tape::new();
//!     let mut ctx = Ctx::new(&tape);
//!     let logits = model.forward(&mut ctx, tape.constant(train.x.clone()));
//!     let loss = cross_entropy(logits, &train.y, Reduction::Mean);
//!     let grads = ctx.param_grads(&loss.backward());
//!     opt.step(&mut model, &grads)?;
//!     if step % 50 == 0 {
//!         println!("step {step:3}  loss {:.4}", loss.value().item());
//!     }
//! }
//!
//! // Evaluation on the held-out points: with gradients off, the tape records values only.
//! let tape = Tape::new();
//! tape.set_grad_enabled(false);
//! let logits = model.forward(&mut Ctx::new(&tape), tape.constant(test.x.clone())).value();
//! let rows = logits.data().chunks(test.classes);
//! let correct = rows.zip(&test.y).filter(|(row, &y)| row.iter().all(|&z| z <= row[y])).count();
//! let accuracy = correct as f64 / test.len() as f64;
//! assert!(accuracy >= 0.95, "test accuracy {accuracy}");
//! # Ok::<(), vgrad::Error>(())
//! ```
//!
//! # How the pieces fit
//!
//! The engine knows nothing of `nn`; `nn` only uses the engine. Parameters live in layers,
//! outside any tape; each step a [`Ctx`] binds them to that step's tape as leaves, names them
//! with PyTorch's dotted `state_dict` paths, and labels every layer's output with its path so
//! hooks can observe gradients layer by layer.
//!
//! # Example
//! ```
//! use rand::{SeedableRng, rngs::StdRng};
//! use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
//! use vgrad::{Tape, Tensor};
//!
//! let mut rng = StdRng::seed_from_u64(42);
//! let mut net = Sequential::<f32>::new()
//!     .push(Linear::new(2, 16, &mut rng)?)
//!     .push(Activation::Tanh)
//!     .push(Linear::new(16, 1, &mut rng)?);
//! let x = Tensor::from_vec(vec![0.0, 1.0, 1.0, 0.0], &[2, 2])?;
//! let tape = Tape::new();
//! let mut ctx = Ctx::new(&tape);
//! let y = net.forward(&mut ctx, tape.constant(x));
//! let grads = ctx.param_grads(&y.square().mean().backward());
//! assert_eq!(grads.len(), 4); // every parameter received a gradient
//! # Ok::<(), vgrad::Error>(())
//! ```

mod activation;
mod batchnorm;
pub mod checkpoint;
pub mod clip;
mod dropout;
pub mod init;
mod layernorm;
mod linear;
pub mod loss;
mod metrics;
mod module;
pub mod optim;
mod residual;
pub mod schedule;
mod sequential;

pub use activation::Activation;
pub use batchnorm::{BatchNorm1d, BatchNormConfig};
pub use checkpoint::{
    load_optimizer, load_optimizer_bytes, load_safetensors, load_safetensors_bytes,
    load_safetensors_bytes_with, load_safetensors_with, save_optimizer, save_optimizer_bytes,
    save_safetensors, save_safetensors_bytes, save_safetensors_bytes_with, save_safetensors_with,
};
pub use clip::{clip_grad_norm, clip_grad_norm_p, clip_grad_value};
pub use dropout::Dropout;
pub use layernorm::{LayerNorm, LayerNormConfig};
pub use linear::{Linear, LinearConfig};
pub use loss::{
    binary_cross_entropy_with_logits, cross_entropy, huber_loss, l1_loss, mse_loss, nll_loss,
    smooth_l1_loss, LossTarget, Reduction,
};
pub use metrics::accuracy;
pub use module::{
    Ctx, DottedPath, Module, ModuleBase, NamedVisitor, Param, ParamGrads, ParamId, Visitor,
    VisitorMut,
};
pub use optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, OptimizerState, ParamGroup, RMSprop,
    RMSpropConfig, Sgd, SgdConfig, UpdateStat,
};
pub use residual::{Residual, ResidualConfig};
pub use schedule::{
    CosineAnnealingLR, ExponentialLR, LinearWarmup, LrSchedule, LrScheduler, PlateauConfig,
    PlateauMode, PlateauState, ReduceLROnPlateau, SequentialLR, StepLR, ThresholdMode,
};
pub use sequential::Sequential;
