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
//!
//! # Losses
//!
//! Loss functions, as PyTorch's `torch.nn.functional` losses: each takes a prediction `Var` and
//! a target and returns a scalar `Var` to call [`backward`](crate::Var::backward) on.
//!
//! | function | formula per element (then mean or sum) | rule |
//! |---|---|---|
//! | [`mse_loss`] | `(p − y)²` | composed from primitives |
//! | [`l1_loss`] | `\|p − y\|` | composed |
//! | [`huber_loss`] | `½d²` for `\|d\| < δ`, else `δ(\|d\| − ½δ)`, `d = p − y` | composed (a clamp) |
//! | [`smooth_l1_loss`] | `½d²/β` for `\|d\| < β`, else `\|d\| − ½β` | composed (a clamp) |
//! | [`cross_entropy`] | `−log softmax(z)ᵢ[tᵢ]`, per row | fused, `(softmax(z) − onehot(t))/N` |
//! | [`nll_loss`] | `−xᵢ[tᵢ]`, per row | composed (a gather) |
//! | [`binary_cross_entropy_with_logits`] | `max(z, 0) − z·y + log(1 + e^(−\|z\|))` | fused, `σ(z) − y` |
//!
//! The fused rules are differentiable again under
//! [`backward_graph`](crate::Var::backward_graph), like every other op.
//!
//! ## Differences from PyTorch
//! * Reductions are [`Reduction::Mean`] (the default) and [`Reduction::Sum`]; there is no
//!   `reduction="none"` (compose the per-element form from `Var` ops when you need it).
//! * Class-index losses take `[N, C]` inputs only (no `[C]` or `[N, C, d…]` forms), and have no
//!   `weight`, `ignore_index` or `label_smoothing` options; `binary_cross_entropy_with_logits`
//!   has no `weight` or `pos_weight`.
//! * [`mse_loss`] requires equal shapes, where PyTorch broadcasts with a warning (almost always
//!   a bug such as `[N, 1]` against `[N]`).
//!
//! # Optimisers
//!
//! [`Sgd`], [`Adam`], [`AdamW`] and [`RmsProp`], behind one [`Optimizer`] trait.
//!
//! Each follows PyTorch's single-tensor (`foreach=False`) implementation step for step, so a
//! model trained here and one trained in PyTorch from the same weights stay together to
//! rounding (the golden tests in `tests/golden_optim.rs` check three steps of every variant).
//!
//! * State (momentum buffers, moment estimates, step counts) is keyed by [`ParamId`], so one
//!   optimiser serves any module whose parameters it is shown, and a parameter keeps its
//!   state when a checkpoint is loaded into it.
//! * A parameter without a gradient in the [`ParamGrads`] is skipped entirely (its state does
//!   not advance), like PyTorch skipping a parameter whose `grad is None`. Gradients for
//!   parameters the model does not have are ignored, so one backward pass can feed two
//!   optimisers (a generator's and a discriminator's).
//! * Hyperparameters are `f64`; they are rounded to the element type once per step, and the
//!   element-wise maths then runs in `T`, as PyTorch's does in the parameter's dtype.
//! * [`Optimizer::backward_step`] runs backward and the step in one sweep, updating each
//!   parameter as soon as its gradient is complete: the same values, less memory traffic (the
//!   f64 training steps of the benchmarks 3-5% faster) and no set of gradients held at once.
//! * A step overwrites each parameter where it lies when nothing else shares its buffer (a
//!   training loop that dropped its tape, or `backward_step`), and a copy otherwise; either way one vectorised pass
//!   per buffer, with no per-element dynamic dispatch. With [`Optimizer::track_updates`] on, a
//!   step also records ‖Δθ‖ and ‖θ‖ per parameter (it then updates a copy, to keep the old
//!   value, and takes one extra pass over each buffer); off, it costs nothing.
//!
//! * [`ParamGroup`]s give some parameters (chosen by name) another learning rate or weight
//!   decay: PyTorch's parameter groups, for the two hyperparameters they are mostly used for.
//!   A group with its own rate ([`ParamGroup::lr`]) is scheduled as PyTorch schedules a
//!   parameter group (from its own base rate, down to the schedule's own floor); one with a
//!   multiple ([`ParamGroup::lr_scale`]) follows the optimiser's rate.
//!
//! Not implemented: AMSGrad, `maximize`, groups that change other hyperparameters (momentum,
//! betas, eps).
//!
//! # Learning-rate schedules
//!
//! Closed forms of PyTorch's `torch.optim.lr_scheduler` classes.
//!
//! A schedule ([`LrSchedule`]) is a pure function from a base rate and a step count to a rate;
//! it holds no optimiser and no counter, so it can be queried for any step, plotted, or
//! composed ([`SequentialLr`]). [`LrScheduler`] adds the counter and drives an [`Optimizer`]
//! the way PyTorch's scheduler objects do: construction sets the rate for step 0, each
//! [`step`](LrScheduler::step) advances by one. [`ReduceLrOnPlateau`] depends on observed
//! metrics rather than on the step count, so it is a separate, stateful type.
//!
//! Both drive every rate the optimiser lists in [`Optimizer::group_lrs`] (its own, then each
//! [`ParamGroup`] with a rate of its own), each from its own base rate,
//! as PyTorch's schedulers drive each parameter group from its `initial_lr`: a floor
//! (`eta_min`, `min_lr`) is a floor for every group.
//!
//! PyTorch's schedulers update the rate recursively from the previous one; vgrad evaluates the
//! closed forms PyTorch documents (`_get_closed_form_lr`), which agree to rounding (the golden
//! tests compare 30 steps of every schedule with PyTorch's own sequence).
//!
//! ## Example: linear warm-up, then cosine decay
//! ```
//! use vgrad::nn::{CosineAnnealingLr, LinearWarmup, LrScheduler, Optimizer, SequentialLr, Sgd, SgdConfig};
//!
//! let mut opt = Sgd::<f32>::new(SgdConfig { lr: 0.1, ..Default::default() })?;
//! let schedule = SequentialLr::new(
//!     vec![Box::new(LinearWarmup::new(0.1, 5)?), Box::new(CosineAnnealingLr::new(20, 0.0)?)],
//!     vec![5],
//! )?;
//! let mut sched = LrScheduler::new(schedule, &mut opt)?;
//! assert!((opt.lr() - 0.01).abs() < 1e-12); // step 0: base · start_factor
//! for _epoch in 0..5 {
//!     // ... train one epoch with opt ...
//!     sched.step(&mut opt)?;
//! }
//! assert!((opt.lr() - 0.1).abs() < 1e-12); // warm-up done, cosine starts at the base rate
//! # Ok::<(), vgrad::Error>(())
//! ```
//!
//! # Gradient clipping
//!
//! [`clip_grad_norm`] (any p-norm with [`clip_grad_norm_p`]) and [`clip_grad_value`], as PyTorch's
//! `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`: between `backward` and the optimiser's
//! [`step`](Optimizer::step), on the [`ParamGrads`].
//!
//! # Checkpoints
//!
//! Checkpoints in the safetensors format, interchangeable with PyTorch (feature `safetensors`,
//! on by default).
//!
//! A file holds a module's [`state_dict`](Module::state_dict): every parameter and buffer under
//! its dotted PyTorch name (`0.weight`, `blocks.3.bn.running_mean`), row-major, in the layout
//! PyTorch uses (a [`Linear`] weight is `[out, in]`). So
//! `safetensors.torch.save_file(model.state_dict(), path)` in Python writes a file
//! [`load_safetensors`] reads into the same-structured vgrad model, and
//! `model.load_state_dict(safetensors.torch.load_file(path))` reads one vgrad wrote.
//!
//! An optimiser's state (momentum buffers, moment estimates, step counts, hyperparameters) is
//! saved beside the model with [`save_optimizer`] and loaded with [`load_optimizer`], so a
//! training run can stop and resume exactly.
//!
//! ## Dtypes
//! Tensors are written as `T::DTYPE` (`F32` or `F64`). Buffers named `num_batches_tracked`
//! (BatchNorm's counter, an `int64` in PyTorch) are written as `I64` and must hold whole
//! numbers. On load, `F32` and `F64` tensors are both accepted and converted to `T` (F32 → f64
//! is exact, F64 → f32 rounds to nearest), as PyTorch's `load_state_dict` converts; `I64` is
//! accepted for `num_batches_tracked` only. Every other dtype (F16, BF16, integers) is an
//! error.
//!
//! ## Safety of loading
//! A file is untrusted input. Loading never panics and never allocates by a size the header
//! claims: sizes and offsets are checked against the bytes actually present before anything
//! is read. The header is refused past the format's limit (100 MB) and parsed as a stream,
//! keeping only what the model bounds, so refusing any file costs memory within a small
//! multiple of its size. A `num_batches_tracked` is checked at load as saving checks it, so
//! every file that loads can be saved back. It never leaves a model half-loaded either: every tensor is decoded and checked
//! (names, shapes, dtypes) into new buffers first, and the model is changed only when all of
//! them passed.
//!
//! ## Example
//! ```
//! # #[cfg(feature = "safetensors")] {
//! use rand::{SeedableRng, rngs::StdRng};
//! use vgrad::nn::{load_safetensors_bytes, save_safetensors_bytes, Activation, Linear, Module, Sequential};
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let build = |rng: &mut StdRng| -> vgrad::Result<Sequential<f32>> {
//!     Ok(Sequential::new().push(Linear::new(4, 8, rng)?).push(Activation::Tanh).push(Linear::new(8, 3, rng)?))
//! };
//! let trained = build(&mut rng)?;
//! let bytes = save_safetensors_bytes(&trained)?;
//! let mut fresh = build(&mut rng)?; // different random weights
//! load_safetensors_bytes(&mut fresh, &bytes)?;
//! for ((n1, a), (n2, b)) in trained.state_dict().iter().zip(fresh.state_dict()) {
//!     assert_eq!(n1, &n2);
//!     assert_eq!(a.data(), b.data());
//! }
//! # }
//! # Ok::<(), vgrad::Error>(())
//! ```
//!
//! # One path for every item
//!
//! Every item is used from `vgrad::nn` (`vgrad::nn::Adam`, `vgrad::nn::mse_loss`), and only
//! [`init`] is a module of its own, as `torch.nn.init` is. The files behind the items (`optim`,
//! `schedule`, `loss`, `clip`, `checkpoint`) are modules whose paths still resolve, so older code
//! compiles, but are hidden from these docs; names changed to Rust's casing (`RmsProp`, `StepLr`)
//! keep their old spelling as deprecated aliases.

// Every item has one documented path, `nn::X` (see "One path for every item" above). These
// modules were public before, and their paths stay valid so that older code compiles; hidden,
// they no longer double every item in the docs and in editors' completions. (`#[deprecated]`
// on a module does not warn on paths through it, so hiding is as far as a module can go.)
mod activation;
mod batchnorm;
#[cfg(feature = "safetensors")]
#[doc(hidden)]
pub mod checkpoint;
#[doc(hidden)]
pub mod clip;
mod dropout;
pub mod init;
mod layernorm;
mod linear;
#[doc(hidden)]
pub mod loss;
mod metrics;
mod module;
#[doc(hidden)]
pub mod optim;
mod renamed;
mod residual;
#[doc(hidden)]
pub mod schedule;
mod sequential;

pub use activation::Activation;
pub use batchnorm::{BatchNorm1d, BatchNormConfig};
#[cfg(feature = "safetensors")]
#[cfg_attr(docsrs, doc(cfg(feature = "safetensors")))]
pub use checkpoint::{
    load_optimizer, load_optimizer_bytes, load_safetensors, load_safetensors_bytes,
    load_safetensors_bytes_with, load_safetensors_with, rename_keys, save_optimizer,
    save_optimizer_bytes, save_safetensors, save_safetensors_bytes, save_safetensors_bytes_with,
    save_safetensors_with,
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
    Ctx, DottedPath, Module, ModuleBase, NamedVisitor, OutputKind, Param, ParamGrads, ParamId,
    Visitor, VisitorMut,
};
pub use optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, OptimizerState, ParamGroup, RmsProp,
    RmsPropConfig, Sgd, SgdConfig, UpdateStat,
};
#[allow(deprecated)]
#[doc(hidden)]
pub use renamed::{
    CosineAnnealingLR, ExponentialLR, RMSprop, RMSpropConfig, ReduceLROnPlateau, SequentialLR,
    StepLR,
};
pub use residual::{Residual, ResidualConfig};
pub use schedule::{
    CosineAnnealingLr, ExponentialLr, LinearWarmup, LrSchedule, LrScheduler, PlateauConfig,
    PlateauMode, PlateauState, ReduceLrOnPlateau, SequentialLr, StepLr, ThresholdMode,
};
pub use sequential::Sequential;
