//! Curvature of a loss: Hessian-vector products and the top Hessian eigenvalue.
//!
//! The Hessian H of a loss with respect to a network's parameters has as many rows as the
//! network has weights, so it is never formed. What can be computed cheaply is its product with
//! a vector, by differentiating twice ("Pearlmutter's trick"): with g = ∇L recorded on the tape
//! ([`Var::backward_graph`]), H·v = ∇(g · v), one more reverse sweep, at about the cost of two
//! backward passes. Power iteration on those products gives λ_max, the largest eigenvalue: the
//! sharpness of the loss along its most curved direction.
//!
//! Why it matters for training: on a quadratic with top eigenvalue λ_max, gradient descent with
//! learning rate η is stable exactly when η < 2/λ_max; along the top eigenvector each step
//! multiplies the error by (1 − ηλ_max). Real losses are not quadratic and their curvature moves
//! while training (it tends to rise until λ_max ≈ 2/η, the "edge of stability" of Cohen et al.,
//! 2021), so 2/λ_max at one point is a local estimate, not a guarantee; the
//! `examples/learning_rate.rs` example compares it with the rate at which training diverges.
//!
//! Both functions take the loss as a [`Var`] already built on a tape and the parameters as the
//! tape's leaves, so they work for raw leaves and for [`nn`](crate::nn) modules alike (after a
//! forward pass, [`Ctx::bound`](crate::nn::Ctx::bound) lists the parameter leaves).
//!
//! # Example
//!
//! The sharpness of a small network's loss at initialisation:
//!
//! ```
//! use rand::{SeedableRng, rngs::StdRng};
//! use vgrad::curvature::{top_hessian_eigenvalue, PowerIterationConfig};
//! use vgrad::nn::{cross_entropy, Activation, Ctx, Linear, Module, Reduction, Sequential};
//! use vgrad::{data, Tape};
//!
//! let moons = data::two_moons::<f64>(64, 0.1, 0)?;
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut net = Sequential::new()
//!     .push(Linear::new(2, 16, &mut rng)?)
//!     .push(Activation::Tanh)
//!     .push(Linear::new(16, 2, &mut rng)?);
//!
//! let tape = Tape::new();
//! let mut ctx = Ctx::new(&tape);
//! let logits = net.forward(&mut ctx, tape.constant(moons.x.clone()));
//! let loss = cross_entropy(logits, &moons.y, Reduction::Mean);
//! let params: Vec<_> = ctx.bound().into_iter().map(|(_name, _id, var)| var).collect();
//!
//! let top = top_hessian_eigenvalue(loss, &params, &PowerIterationConfig::default())?;
//! assert!(top.eigenvalue > 0.0 && top.eigenvalue.is_finite());
//! println!("λ_max = {:.4}: plain gradient descent is stable here below lr ≈ {:.3}",
//!          top.eigenvalue, 2.0 / top.eigenvalue);
//! # Ok::<(), vgrad::Error>(())
//! ```

use crate::data::SplitMix64;
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::{norm_l2_f64, Element, Tensor};

/// The gradient of a loss recorded on its tape, ready to be differentiated again.
struct GradGraph<'t, T: Element> {
    params: Vec<Var<'t, T>>,
    /// `None` where the loss does not depend on a parameter: its rows of H are zero.
    grads: Vec<Option<Var<'t, T>>>,
}

impl<'t, T: Element> GradGraph<'t, T> {
    #[track_caller]
    fn new(loss: Var<'t, T>, params: &[Var<'t, T>]) -> Self {
        let gg = loss.backward_graph();
        GradGraph {
            params: params.to_vec(),
            grads: params.iter().map(|&p| gg.wrt(p)).collect(),
        }
    }

    /// H·v = ∇(g · v). Each call adds a handful of nodes to the tape (v as constants, the dot
    /// product) and sweeps it once; the recorded gradient is shared by every call.
    #[track_caller]
    fn hvp(&self, v: &[Tensor<T>]) -> Vec<Tensor<T>> {
        assert!(
            v.len() == self.params.len(),
            "hessian_vector_product: {} vectors for {} parameters",
            v.len(),
            self.params.len()
        );
        let mut dot: Option<Var<'t, T>> = None;
        for (i, (p, g)) in self.params.iter().zip(&self.grads).enumerate() {
            let ps = p.shape();
            assert!(
                v[i].shape() == ps.as_slice(),
                "hessian_vector_product: vector {i} of shape {:?} for a parameter of shape {ps:?}",
                v[i].shape()
            );
            if let Some(g) = g {
                let term = (*g * p.tape().constant(v[i].clone())).sum();
                dot = Some(match dot {
                    None => term,
                    Some(d) => d + term,
                });
            }
        }
        let hv = dot.map(|d| d.backward());
        self.params
            .iter()
            .map(|&p| {
                hv.as_ref()
                    .and_then(|h| h.wrt(p))
                    .cloned()
                    .unwrap_or_else(|| Tensor::zeros(&p.shape()))
            })
            .collect()
    }
}

/// The Hessian-vector product H·v of the scalar `loss` with respect to `params`, one tensor per
/// parameter, where `v` holds one tensor of each parameter's shape (all of them together are
/// the vector).
///
/// Computed as ∇(∇L · v): the gradient is recorded on the tape with
/// [`backward_graph`](Var::backward_graph), dotted with `v`, and differentiated once more. A
/// parameter the loss does not depend on gets zeros. To multiply by many vectors, use
/// [`top_hessian_eigenvalue`] or call this on a fresh tape each time: every call records the
/// gradient graph again.
///
/// # Panics
/// If `loss` is not a scalar, `v.len() != params.len()`, or a vector's shape differs from its
/// parameter's; or if a parameter lives on another tape.
///
/// # Example
/// For L(w) = ½ wᵀAw the Hessian is A, so H·v = A·v:
/// ```
/// use vgrad::curvature::hessian_vector_product;
/// use vgrad::{Tape, Tensor};
///
/// let a = Tensor::from_vec(vec![2.0, 1.0, 1.0, 3.0], &[2, 2])?;
/// let tape = Tape::<f64>::new();
/// let w = tape.leaf(Tensor::from_vec(vec![0.5, -1.0], &[2, 1])?);
/// let loss = (w * tape.constant(a).matmul(w)).sum() * 0.5;
/// let v = Tensor::from_vec(vec![1.0, 0.0], &[2, 1])?;
/// let hv = hessian_vector_product(loss, &[w], &[v]);
/// assert!(hv[0].allclose(&Tensor::from_vec(vec![2.0, 1.0], &[2, 1])?, 0.0, 1e-12));
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn hessian_vector_product<'t, T: Element>(
    loss: Var<'t, T>,
    params: &[Var<'t, T>],
    v: &[Tensor<T>],
) -> Vec<Tensor<T>> {
    GradGraph::new(loss, params).hvp(v)
}

/// How [`top_hessian_eigenvalue`] iterates. `Default`: at most 50 products, a relative
/// tolerance of 1e-4, seed 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerIterationConfig {
    /// The most Hessian-vector products to compute in one power-iteration run (default 50).
    pub max_iters: usize,
    /// Stop when the eigenvalue estimate changes by at most this fraction of itself between
    /// two iterations (default 1e-4).
    pub rel_tol: f64,
    /// Seeds the random starting vector (default 0); the same seed gives the same result.
    pub seed: u64,
}

impl Default for PowerIterationConfig {
    fn default() -> Self {
        PowerIterationConfig {
            max_iters: 50,
            rel_tol: 1e-4,
            seed: 0,
        }
    }
}

/// The result of [`top_hessian_eigenvalue`].
#[derive(Clone, Debug)]
pub struct TopEigen<T: Element> {
    /// The estimate of λ_max, the largest eigenvalue: the Rayleigh quotient vᵀHv at the final
    /// vector.
    pub eigenvalue: f64,
    /// The final vector v, one tensor per parameter, of unit norm over all of them together.
    pub eigenvector: Vec<Tensor<T>>,
    /// The Rayleigh quotient vᵀHv after each product, in order (both runs when there were
    /// two; see [`shifted_from`](TopEigen::shifted_from)): the convergence history.
    pub history: Vec<f64>,
    /// Whether the last run met the tolerance before `max_iters`.
    pub converged: bool,
    /// `Some(μ)` when the eigenvalue of largest magnitude, μ, was negative, so that a second run
    /// on H − μI was needed to find the largest one; `None` otherwise.
    pub shifted_from: Option<f64>,
}

/// The largest eigenvalue λ_max of the Hessian of the scalar `loss` with respect to `params`,
/// by power iteration on Hessian-vector products (see [`hessian_vector_product`]).
///
/// Starts from a random unit vector (seeded by `cfg.seed`) and repeats v ← Hv/‖Hv‖, recording
/// the Rayleigh quotient vᵀHv, until it changes by at most `cfg.rel_tol` relative or
/// `cfg.max_iters` products have been computed. The gradient is recorded once; each iteration
/// costs about two backward passes. Norms and dot products are accumulated in `f64`.
///
/// Power iteration finds the eigenvalue of largest *magnitude*. If that one is negative (a
/// saddle more curved downwards than upwards), a second run on H − μI, whose spectrum is
/// shifted to start at 0, finds the largest eigenvalue; [`TopEigen::shifted_from`] records μ.
/// Convergence is slow when the top two eigenvalues are close; [`TopEigen::history`] shows it.
///
/// # Errors
/// [`Error::Config`] if `params` is empty, `cfg.max_iters` is 0, or `cfg.rel_tol` is negative
/// or not finite.
///
/// # Panics
/// If `loss` is not a scalar or a parameter lives on another tape.
///
/// # Example
/// For L(w) = ½ wᵀAw the Hessian is A; here its eigenvalues are 1 and 3:
/// ```
/// use vgrad::curvature::{top_hessian_eigenvalue, PowerIterationConfig};
/// use vgrad::{Tape, Tensor};
///
/// let a = Tensor::from_vec(vec![2.0, 1.0, 1.0, 2.0], &[2, 2])?;
/// let tape = Tape::<f64>::new();
/// let w = tape.leaf(Tensor::from_vec(vec![0.3, 0.7], &[2, 1])?);
/// let loss = (w * tape.constant(a).matmul(w)).sum() * 0.5;
/// let top = top_hessian_eigenvalue(loss, &[w], &PowerIterationConfig::default())?;
/// assert!((top.eigenvalue - 3.0).abs() < 1e-3); // rel_tol 1e-4 on the estimate
/// assert!(top.converged);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn top_hessian_eigenvalue<'t, T: Element>(
    loss: Var<'t, T>,
    params: &[Var<'t, T>],
    cfg: &PowerIterationConfig,
) -> Result<TopEigen<T>> {
    if params.is_empty() {
        return Err(Error::Config(
            "top_hessian_eigenvalue: no parameters to differentiate with respect to".into(),
        ));
    }
    if cfg.max_iters == 0 {
        return Err(Error::Config(
            "power iteration max_iters must be at least 1".into(),
        ));
    }
    if !(cfg.rel_tol.is_finite() && cfg.rel_tol >= 0.0) {
        return Err(Error::Config(format!(
            "power iteration rel_tol must be finite and >= 0, got {}",
            cfg.rel_tol
        )));
    }
    let graph = GradGraph::new(loss, params);
    let mut rng = SplitMix64::new(cfg.seed);
    let start: Vec<Tensor<T>> = params
        .iter()
        .map(|p| Tensor::from_fn(&p.shape(), |_| T::of(rng.normal())))
        .collect();

    let mut history = Vec::new();
    let (mu, v, converged) = power_iteration(&graph, start.clone(), 0.0, cfg, &mut history);
    if mu.is_nan() || mu >= 0.0 {
        return Ok(TopEigen {
            eigenvalue: mu,
            eigenvector: v,
            history,
            converged,
            shifted_from: None,
        });
    }
    // The dominant eigenvalue μ is negative: H − μI has eigenvalues λ − μ ≥ 0, the largest
    // being λ_max − μ, so power iteration on it converges to the top of H's spectrum.
    let (lambda, v, converged) = power_iteration(&graph, start, mu, cfg, &mut history);
    Ok(TopEigen {
        eigenvalue: lambda,
        eigenvector: v,
        history,
        converged,
        shifted_from: Some(mu),
    })
}

/// Power iteration on H − shift·I, recording vᵀHv (unshifted) per product into `history`.
/// Returns the last Rayleigh quotient, the vector it was measured at, and whether the
/// tolerance was met.
fn power_iteration<T: Element>(
    graph: &GradGraph<'_, T>,
    start: Vec<Tensor<T>>,
    shift: f64,
    cfg: &PowerIterationConfig,
    history: &mut Vec<f64>,
) -> (f64, Vec<Tensor<T>>, bool) {
    let mut v = normalised(start).unwrap_or_else(|zero| zero);
    let mut previous: Option<f64> = None;
    let mut measured = Vec::new();
    for _ in 0..cfg.max_iters {
        let hv = graph.hvp(&v);
        let rayleigh = dot(&v, &hv);
        history.push(rayleigh);
        let converged =
            previous.is_some_and(|p| (rayleigh - p).abs() <= cfg.rel_tol * rayleigh.abs());
        if converged {
            return (rayleigh, v, true);
        }
        let w = if shift == 0.0 {
            hv
        } else {
            let s = T::of(shift);
            hv.iter()
                .zip(&v)
                .map(|(h, x)| h.zip_map(x, |h, x| h - s * x))
                .collect()
        };
        match normalised(w) {
            Ok(next) => measured = std::mem::replace(&mut v, next),
            // (H − shift·I)·v = 0: v is an eigenvector, and no other direction is left to follow.
            Err(_) => return (rayleigh, v, true),
        }
        previous = Some(rayleigh);
    }
    // Out of iterations: report the last measured pair (v has moved one step past it).
    (previous.unwrap_or(f64::NAN), measured, false)
}

/// Σᵢ ⟨aᵢ, bᵢ⟩ over all the tensors, in `f64`.
fn dot<T: Element>(a: &[Tensor<T>], b: &[Tensor<T>]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.data().iter().zip(y.data()))
        .map(|(x, y)| x.to_f64().unwrap_or(f64::NAN) * y.to_f64().unwrap_or(f64::NAN))
        .sum()
}

/// The tensors scaled to unit norm over all of them together; `Err` with them unchanged if
/// their norm is zero or not finite.
fn normalised<T: Element>(
    v: Vec<Tensor<T>>,
) -> std::result::Result<Vec<Tensor<T>>, Vec<Tensor<T>>> {
    let norm = norm_l2_f64(v.iter().map(|t| t.norm_l2()));
    if !(norm > 0.0 && norm.is_finite()) {
        return Err(v);
    }
    let inv = T::of(1.0 / norm);
    Ok(v.iter().map(|t| t.scale(inv)).collect())
}
