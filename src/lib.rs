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
//! * **Forward mode** — [`forward::jvp`] and [`Var::jvp`] give Jacobian-vector products `J·v`
//!   by one tangent sweep forward over the tape (about the cost of a forward pass), beside
//!   reverse mode's `Jᵀ·u` ([`forward::vjp`], [`Var::backward_with`]).
//! * **Spectra** — [`spectrum`]: the singular values of a model's input–output Jacobian at a
//!   point (exact by JVPs and an SVD, or estimated by Lanczos through JVP + VJP), and layer
//!   by layer: how close a network is to dynamical isometry.
//! * **Hooks** — [`Var::register_hook`] sees (and may replace) a variable's complete gradient;
//!   [`Tape::on_labelled_grad`] sees every labelled node's value and gradient, which is how
//!   per-layer gradient magnitudes are observed.
//! * **Checking** — [`gradcheck`] compares reverse-mode gradients with central differences, with
//!   PyTorch's defaults; [`Tape::set_detect_anomaly`] names the first op that produced a NaN or
//!   infinity.
//! * **[`CustomOp`]** — your own differentiable op with its forward and backward.
//! * **[`nn`]** — parameters, layers with PyTorch's names, layouts and defaults, initialisation
//!   (orthogonal included).
//! * **[`meanfield`]** — whether a deep network will train, predicted before training: the
//!   fixed-point variance, χ₁ (the per-layer gradient factor), the depth scales and the
//!   order-to-chaos σ_w of mean-field theory.
//!
//! ## Features
//!
//! The dependencies a program may not want sit behind features, all on by default:
//!
//! | feature | enables | adds |
//! |---|---|---|
//! | `plot` | SVG plots of the monitor's records: `monitor::gradient_flow_svg`, `monitor::heatmap_svg`, `monitor::PlotMetric` | `plotters` |
//! | `safetensors` | checkpoints in the safetensors format: `nn::save_safetensors`, `nn::load_safetensors` (and their `_bytes` and `_with` forms), `nn::rename_keys`, and the optimiser's files, `nn::save_optimizer`, `nn::load_optimizer` (and `_bytes`) | `safetensors`, `serde`, `serde_json` |
//! | `json` | the monitor's JSON export: `monitor::to_json`, `monitor::write_json`, `GradMonitor::to_json` | `serde_json` |
//!
//! With `default-features = false` everything else stays: the engine, every layer, loss,
//! optimiser and schedule, an optimiser's state in memory
//! ([`Optimizer::state_dict`](nn::Optimizer::state_dict) and
//! [`load_state_dict`](nn::Optimizer::load_state_dict)), and the monitor's records, diagnosis
//! and CSV export.
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
// docs.rs builds with `--cfg docsrs` (Cargo.toml's `package.metadata.docs.rs`) and marks each
// item a feature gates.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod curvature;
pub mod data;
pub mod error;
pub mod forward;
mod gradcheck;
mod hash;
mod lazy;
pub mod meanfield;
pub mod monitor;
pub mod nn;
mod ops;
mod spare;
pub mod spectrum;
mod tape;
pub mod tensor;

pub use error::{Error, Result};
pub use gradcheck::{gradcheck, GradcheckOptions, GradcheckReport, JacobianEntry};
pub use ops::{CustomOp, GeluApprox};
pub use tape::{Anomaly, Gradients, GraphGradients, HookHandle, Phase, Tape, Var};
pub use tensor::{num_threads, set_num_threads};
pub use tensor::{set_flush_denormal, Element, Shape, Tensor};

/// The `rand` crate vgrad's constructors take generators from (`&mut impl rand::Rng`).
///
/// Constructors such as [`Linear::new`](nn::Linear::new) take a generator of *this* `rand`
/// (0.10). A program that depends on another `rand` version gets a trait error that names no
/// version ("`DerefMut` is not implemented for `StdRng`"); using `vgrad::rand` (or
/// [`seeded_rng`]) instead avoids the mismatch.
pub use rand;

/// Writes the visiting methods of a [`Module`](nn::Module) whose children are named fields:
/// `visit`, `visit_mut` and `set_training`, each child under its field's name, so parameter
/// names are PyTorch's for a module with the same attributes (`l1.weight`, `bn.running_mean`).
/// Use it inside the `impl Module<T> for ..` block, naming the element type and the fields;
/// write `forward` yourself, running each child with [`Ctx::child`](nn::Ctx::child).
///
/// # Example
/// A residual block as PyTorch users write it (`self.l1`, `self.bn`, `self.l2`):
/// ```
/// use vgrad::nn::{BatchNorm1d, Ctx, Linear, Module};
/// use vgrad::{Element, Var};
///
/// #[derive(Clone, Debug)]
/// struct ResBlock<T: Element> {
///     l1: Linear<T>,
///     bn: BatchNorm1d<T>,
///     l2: Linear<T>,
/// }
///
/// impl<T: Element> Module<T> for ResBlock<T> {
///     fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
///         let h = ctx.child("l1", &mut self.l1, x).relu();
///         let h = ctx.child("bn", &mut self.bn, h);
///         x + ctx.child("l2", &mut self.l2, h)
///     }
///     vgrad::children!(T; l1, bn, l2);
/// }
///
/// let mut rng = vgrad::seeded_rng(0);
/// let block = ResBlock::<f32> {
///     l1: Linear::new(4, 4, &mut rng)?,
///     bn: BatchNorm1d::new(4)?,
///     l2: Linear::new(4, 4, &mut rng)?,
/// };
/// let names: Vec<String> = block.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names[..3], ["l1.weight", "l1.bias", "bn.weight"]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[macro_export]
macro_rules! children {
    ($t:ty; $($field:ident),+ $(,)?) => {
        fn visit(&self, v: &mut dyn $crate::nn::Visitor<$t>) {
            $(
                v.enter(stringify!($field));
                $crate::nn::Module::<$t>::visit(&self.$field, v);
                v.exit();
            )+
        }
        fn visit_mut(&mut self, v: &mut dyn $crate::nn::VisitorMut<$t>) {
            $(
                v.enter(stringify!($field));
                $crate::nn::Module::<$t>::visit_mut(&mut self.$field, v);
                v.exit();
            )+
        }
        fn set_training(&mut self, training: bool) {
            $( $crate::nn::Module::<$t>::set_training(&mut self.$field, training); )+
        }
    };
}

// The README's Rust blocks run as doctests, so its quickstart cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A seeded generator of the `rand` vgrad uses: the seed-only path for reproducible
/// initialisation, with no `rand` dependency of your own.
///
/// # Example
/// ```
/// use vgrad::nn::Linear;
/// let a = Linear::<f32>::new(3, 2, &mut vgrad::seeded_rng(7))?;
/// let b = Linear::<f32>::new(3, 2, &mut vgrad::seeded_rng(7))?;
/// assert_eq!(a.weight().value().data(), b.weight().value().data());
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn seeded_rng(seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(seed)
}
