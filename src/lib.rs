//! # vgrad
//!
//! Reverse-mode automatic differentiation over n-dimensional tensors, a small neural-network
//! library on top, and the instruments to see where a network's gradients go.
//!
//! ```
//! use rand::{SeedableRng, rngs::StdRng};
//! use vgrad::nn::{Activation, Ctx, Linear, Module, Param, ParamGrads, Sequential, VisitorMut};
//! use vgrad::{Tape, Tensor};
//!
//! // XOR, the classic: a 2-16-1 tanh network trained by plain gradient descent.
//! let x = Tensor::from_vec(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[4, 2])?;
//! let y = Tensor::from_vec(vec![0., 1., 1., 0.], &[4, 1])?;
//! let mut rng = StdRng::seed_from_u64(7);
//! let mut net = Sequential::<f64>::new()
//!     .push(Linear::new(2, 16, &mut rng)?)
//!     .push(Activation::Tanh)
//!     .push(Linear::new(16, 1, &mut rng)?);
//!
//! // A minimal optimiser: θ ← θ − lr·g for every parameter that received a gradient.
//! struct Sgd<'a>(&'a ParamGrads<f64>, f64);
//! impl VisitorMut<f64> for Sgd<'_> {
//!     fn param(&mut self, _name: &str, p: &mut Param<f64>) {
//!         if let Some(g) = self.0.get(p) {
//!             let lr = self.1;
//!             p.set(p.value().zip_map(g, |w, g| w - lr * g));
//!         }
//!     }
//! }
//!
//! let mut loss_value = f64::INFINITY;
//! for _ in 0..500 {
//!     let tape = Tape::new();
//!     let mut ctx = Ctx::new(&tape);
//!     let pred = net.forward(&mut ctx, tape.constant(x.clone()));
//!     let loss = (pred - tape.constant(y.clone())).square().mean();
//!     loss_value = loss.value().item();
//!     let grads = ctx.param_grads(&loss.backward());
//!     net.visit_mut(&mut Sgd(&grads, 0.1)); // lr 0.5 would exceed 2/λ_max here and diverge
//! }
//! assert!(loss_value < 0.01, "XOR not learned: loss {loss_value}");
//! # Ok::<(), vgrad::Error>(())
//! ```
//!
//! ## The pieces
//!
//! * **[`Tensor<T>`]** — an n-dimensional, row-major array of `f32` or `f64` ([`Element`]),
//!   cheap to clone (shared storage). Its methods compute values only: broadcasting arithmetic,
//!   [`matmul`](Tensor::matmul) through an AVX-512/AVX2 GEMM, reductions, shape moves.
//! * **[`Tape`] and [`Var`]** — the engine. A tape records operations in order; a `Var` is a
//!   `Copy` handle to one recorded value, so expressions read like maths:
//!   `(x.matmul(w) + b).sigmoid()`. [`Var::backward`] sweeps the tape once in reverse and returns
//!   [`Gradients`], queried with [`wrt`](Gradients::wrt). Every op's documentation states its
//!   derivative; values and subgradients at kinks follow PyTorch.
//! * **Higher order** — [`Var::backward_graph`] records the gradient itself on the tape, so it
//!   can be differentiated again (Hessian-vector products, curvature). It costs nothing when
//!   not used.
//! * **Hooks** — [`Var::register_hook`] sees (and may replace) a variable's complete gradient;
//!   [`Tape::on_labelled_grad`] sees every labelled node's value and gradient, which is how
//!   per-layer gradient magnitudes are observed.
//! * **Checking** — [`gradcheck`] compares reverse-mode gradients with central differences, with
//!   PyTorch's defaults; [`Tape::set_detect_anomaly`] names the first op that produced a NaN or
//!   infinity.
//! * **[`CustomOp`]** — your own differentiable op with its forward and backward.
//! * **[`nn`]** — parameters, layers with PyTorch's names, layouts and defaults, initialisation.
//!
//! ## Errors and panics
//!
//! One error type, [`Error`]. Anything that depends on input the program does not control —
//! building a tensor from data, configuring a layer or optimiser, reading a file — returns
//! [`Result`]. Shape misuse inside the maths (adding `[2, 3]` to `[4]`) is a bug in the calling
//! code and panics, like indexing a slice out of bounds, with a message naming the op and both
//! shapes; each such function documents it under `# Panics`.
//!
//! ## What vgrad does not do
//!
//! No GPU, no convolutions or recurrent layers, no general strided views (transposes are copied,
//! except inside matmul where they are free), no complex numbers, no distributed training. A tape
//! belongs to one thread; parallelism lives inside the matrix kernels.
#![deny(missing_docs)]

pub mod curvature;
pub mod data;
pub mod error;
mod gradcheck;
pub mod monitor;
pub mod nn;
mod ops;
mod tape;
pub mod tensor;

pub use error::{Error, Result};
pub use gradcheck::{gradcheck, GradcheckOptions, GradcheckReport, JacobianEntry};
pub use ops::{CustomOp, GeluApprox};
pub use tape::{Anomaly, Gradients, GraphGradients, HookHandle, Phase, Tape, Var};
pub use tensor::{set_flush_denormal, Element, Shape, Tensor};
