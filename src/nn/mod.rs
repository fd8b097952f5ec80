//! Neural-network building blocks on top of the engine: parameters, layers, initialisation.
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
mod linear;
pub mod loss;
mod module;
pub mod optim;
mod residual;
pub mod schedule;
mod sequential;

pub use activation::Activation;
pub use batchnorm::{BatchNorm1d, BatchNormConfig};
pub use checkpoint::{
    load_safetensors, load_safetensors_bytes, save_safetensors, save_safetensors_bytes,
};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use dropout::Dropout;
pub use linear::{Linear, LinearConfig};
pub use loss::{
    binary_cross_entropy_with_logits, cross_entropy, mse_loss, nll_loss, LossTarget, Reduction,
};
pub use module::{
    Ctx, DottedPath, Module, NamedVisitor, Param, ParamGrads, ParamId, Visitor, VisitorMut,
};
pub use optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, RMSprop, RMSpropConfig, Sgd, SgdConfig,
    UpdateStat,
};
pub use residual::{Residual, ResidualConfig};
pub use schedule::{
    CosineAnnealingLR, ExponentialLR, LinearWarmup, LrSchedule, LrScheduler, PlateauConfig,
    PlateauMode, ReduceLROnPlateau, SequentialLR, StepLR, ThresholdMode,
};
pub use sequential::Sequential;
