//! Forward mode: Jacobian-vector products `J·v`, beside reverse mode's `uᵀ·J`.
//!
//! A function is recorded on a tape as usual; then one sweep runs forward over the tape's nodes,
//! in recording order, from the first input on, and gives every node that depends on the inputs
//! a *tangent*: the directional derivative of its value along `v`. Insertion order is a
//! topological order, so the sweep is one loop, as backward is one reverse loop. Each op the
//! tape records has one tangent rule (the table below), applied to plain tensors: no node is
//! recorded, and a JVP costs about one forward pass of the ops it runs through (a `Linear` layer's tangent is
//! one GEMM with the weight, an activation's one elementwise pass). Nodes that do not depend on
//! an input (parameters, constants, masks) get no tangent at all: nothing is allocated for them.
//! A tangent is freed as soon as the last node reading it has been swept.
//!
//! Three ways in:
//!
//! * [`jvp`] (and [`jvp_many`]) records `f` on a new tape and returns `(f(x), J·v)`: the
//!   functional form of `torch.func.jvp`. [`vjp`] is its reverse-mode twin, `(f(x), Jᵀ·u)`.
//! * [`Var::jvp`] sweeps a tape already recorded, with respect to any of its variables: an
//!   [`nn`](crate::nn) model's input, or its weights (the leaves
//!   [`Ctx::bound`](crate::nn::Ctx::bound) lists). The same recording serves any number of
//!   sweeps, and [`Var::backward_with`] on it gives the transposed product: a Jacobian built
//!   column by column, or `JᵀJ·v` as a JVP followed by a VJP, records the model once.
//!
//! Derivatives at kinks are the same subgradients reverse mode uses (which are PyTorch's), so
//! `⟨u, J·v⟩ = ⟨Jᵀ·u, v⟩` holds exactly at kinks too, and the tangents equal
//! `torch.func.jvp`'s (the golden tests compare them).
//!
//! # Tangent rules
//!
//! With `ẋ` the tangent of input `x` (an input without one contributes nothing) and `y` the
//! node's value:
//!
//! | op | tangent `ẏ` |
//! |---|---|
//! | `a + b`, `a + s` | `ȧ + ḃ` (broadcast to `y`'s shape), `ȧ` |
//! | `a · b`, `s · a` | `ȧ·b + a·ḃ`, `s·ȧ` |
//! | unary `f` (`exp`, `tanh`, `relu`, `clamp`, …) | `f'(x)·ẋ`, with the `f'` its op documents (the same one definition backward uses) |
//! | `matmul_t(a, b, ta, tb)` | `op(ȧ)·op(b) + op(a)·op(ḃ)` |
//! | `linear(x, w, b)` | `ẋ·wᵀ + x·ẇᵀ + ḃ` |
//! | `sum`, `sum_axis` | the same sum of `ẋ` |
//! | `max` | the mean of `ẋ` over the elements equal to the maximum (PyTorch's even split) |
//! | `max_axis` | `ẋ` at the index the forward returned (the first maximum) |
//! | `broadcast_to`, `sum_to`, `reshape`, `permute`, `narrow`, `gather_rows`, `scatter_add_rows` | the same op on `ẋ` |
//! | `concat` | the concatenated tangents, zeros for inputs without one |
//! | `softmax` | `y ⊙ (ẋ − Σ y⊙ẋ)` along the axis |
//! | `log_softmax` | `ẋ − Σ softmax(x)⊙ẋ` along the axis |
//! | cross-entropy | `s·Σ (softmax(z) − onehot(t)) ⊙ ż` (`s = 1/N` for the mean) |
//! | BCE with logits | `s·Σ [(σ(z) − y)·ż − z·ẏ]` |
//! | `batch_norm` | `γ·s(ẋ − mean ẋ − x̂·mean(x̂⊙ẋ)) + γ̇·x̂ + β̇`, `x̂ = (x − μ)·s`, `s = 1/√(σ² + ε)` |
//! | [`CustomOp`] | its [`jvp`](CustomOp::jvp); without one, `Σₖ eₖ·⟨backward(eₖ), ẋ⟩` (one backward call per output element) |
//!
//! Composed ops (`-`, `/`, `mean`, `square`, the `nn` losses built from primitives) need no rule
//! of their own.
//!
//! # Example
//! ```
//! use vgrad::forward::jvp;
//! use vgrad::Tensor;
//!
//! // y = tanh(2x) elementwise, so J·v = 2(1 − tanh²(2x))·v.
//! let x = Tensor::<f64>::vector(&[0.1, -0.5, 2.0]);
//! let v = Tensor::vector(&[1.0, 2.0, -1.0]);
//! let (y, jv) = jvp(|_tape, x| (x * 2.0).tanh(), &x, &v)?;
//! for i in 0..3 {
//!     let t = (2.0 * x.data()[i]).tanh();
//!     assert!((y.data()[i] - t).abs() < 1e-15);
//!     assert!((jv.data()[i] - 2.0 * (1.0 - t * t) * v.data()[i]).abs() < 1e-12);
//! }
//! # Ok::<(), vgrad::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::ops::elementwise::sigmoid;
use crate::ops::{loss, norm, reduce, BatchNormSaved, CustomOp, LayerNormSaved, Op};
use crate::tape::{Node, Tape, Var};
use crate::tensor::{Element, Tensor};
use smallvec::SmallVec;
use std::sync::Arc;

/// The value and the Jacobian-vector product `J·v` of `f` at `x` (PyTorch's
/// `torch.func.jvp(f, (x,), (v,))`), in one forward pass plus one tangent sweep.
///
/// `f` receives a new tape and `x` recorded on it as a leaf, and returns the output; it may run
/// any ops, [`nn`](crate::nn) modules included (`Ctx::new(tape)` and `model.forward`).
///
/// # Errors
/// [`Error::Shape`] if `v`'s shape differs from `x`'s (before `f` runs).
///
/// # Panics
/// Whatever `f` panics on, and as [`Var::jvp`] if a custom op's `jvp` returns a wrong shape.
///
/// # Example
/// The tangent of a tanh network along a direction in input space:
/// ```
/// use vgrad::forward::jvp;
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::Tensor;
///
/// let mut rng = vgrad::seeded_rng(0);
/// let mut net = Sequential::<f64>::new()
///     .push(Linear::new(3, 8, &mut rng)?)
///     .push(Activation::Tanh)
///     .push(Linear::new(8, 2, &mut rng)?);
/// let x = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0, 1.0, -0.5], &[2, 3])?;
/// let v = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3])?;
/// let (y, jv) = jvp(|tape, x| net.forward(&mut Ctx::new(tape), x), &x, &v)?;
/// assert_eq!(jv.shape(), y.shape());
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn jvp<T: Element>(
    f: impl for<'t> FnOnce(&'t Tape<T>, Var<'t, T>) -> Var<'t, T>,
    x: &Tensor<T>,
    v: &Tensor<T>,
) -> Result<(Tensor<T>, Tensor<T>)> {
    jvp_many(
        |tape, xs| f(tape, xs[0]),
        std::slice::from_ref(x),
        std::slice::from_ref(v),
    )
}

/// [`jvp`] for a function of several inputs: the value of `f(xs)` and `Σᵢ Jᵢ·vsᵢ`, one tangent
/// per input (`torch.func.jvp(f, xs, vs)`).
///
/// # Errors
/// [`Error::Shape`] if `vs` and `xs` differ in number, or a tangent's shape differs from its
/// input's (before `f` runs).
///
/// # Panics
/// As [`jvp`].
#[track_caller]
pub fn jvp_many<T: Element>(
    f: impl for<'t> FnOnce(&'t Tape<T>, &[Var<'t, T>]) -> Var<'t, T>,
    xs: &[Tensor<T>],
    vs: &[Tensor<T>],
) -> Result<(Tensor<T>, Tensor<T>)> {
    check_directions("jvp", xs.iter().map(|x| x.shape()), vs)?;
    let tape = Tape::new();
    let vars: Vec<Var<'_, T>> = xs.iter().map(|x| tape.leaf(x.clone())).collect();
    let y = f(&tape, &vars);
    let jv = y.jvp(&vars, vs)?;
    Ok((y.value(), jv))
}

/// The value and the vector-Jacobian product `Jᵀ·u` of `f` at `x` (PyTorch's
/// `torch.func.vjp(f, x)` applied to `u`): reverse mode's counterpart of [`jvp`], one forward
/// pass and one backward sweep. For every `v`, `⟨u, J·v⟩ = ⟨Jᵀ·u, v⟩`.
///
/// # Errors
/// [`Error::Shape`] if `u`'s shape differs from the output's.
///
/// # Panics
/// Whatever `f` panics on.
///
/// # Example
/// ```
/// use vgrad::forward::{jvp, vjp};
/// use vgrad::{Tape, Tensor, Var};
///
/// // A function used twice: an `fn` (a closure kept in a variable loses its lifetime generality).
/// fn f<'t>(_: &'t Tape<f64>, x: Var<'t, f64>) -> Var<'t, f64> {
///     x.softmax(0)
/// }
/// let x = Tensor::vector(&[0.3, -1.0, 2.0]);
/// let (u, v) = (Tensor::vector(&[1.0, -2.0, 0.5]), Tensor::vector(&[0.2, 0.1, -0.4]));
/// let (_, jv) = jvp(f, &x, &v)?;
/// let (_, jtu) = vjp(f, &x, &u)?;
/// let dot = |a: &Tensor<f64>, b: &Tensor<f64>| a.mul(b).sum_all().item();
/// assert!((dot(&u, &jv) - dot(&jtu, &v)).abs() < 1e-14);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn vjp<T: Element>(
    f: impl for<'t> FnOnce(&'t Tape<T>, Var<'t, T>) -> Var<'t, T>,
    x: &Tensor<T>,
    u: &Tensor<T>,
) -> Result<(Tensor<T>, Tensor<T>)> {
    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    let y = f(&tape, xv);
    check_directions(
        "vjp",
        std::iter::once(y.shape().as_slice()),
        std::slice::from_ref(u),
    )?;
    tape.check_not_consumed("vjp")?;
    let grads = y.backward_with(u.clone());
    let g = grads
        .wrt(xv)
        .cloned()
        .unwrap_or_else(|| Tensor::zeros(x.shape()));
    Ok((y.value(), g))
}

/// `Err(Error::Shape)` unless there is one direction per shape, each of that shape.
fn check_directions<'a, T: Element>(
    op: &str,
    shapes: impl ExactSizeIterator<Item = &'a [usize]>,
    dirs: &[Tensor<T>],
) -> Result<()> {
    if shapes.len() != dirs.len() {
        return Err(Error::Shape(format!(
            "{op}: {} tangents for {} inputs",
            dirs.len(),
            shapes.len()
        )));
    }
    for (i, (s, d)) in shapes.zip(dirs).enumerate() {
        if s != d.shape() {
            return Err(Error::Shape(format!(
                "{op}: vector {i} has shape {:?} for a value of shape {s:?}",
                d.shape()
            )));
        }
    }
    Ok(())
}

impl<'t, T: Element> Var<'t, T> {
    /// Forward mode on a recorded tape: the tangent of this variable, `Σᵢ (∂self/∂wrtᵢ)·tangentsᵢ`,
    /// by one sweep over the nodes recorded from the first of `wrt` to this one (see the
    /// [module docs](crate::forward) for each op's rule). Nothing is recorded, so the tape can
    /// be swept again with other tangents, or backward.
    ///
    /// Each of `wrt` is taken as an independent variable: a leaf (an input, a parameter), or an
    /// intermediate node whose own dependence on earlier nodes is then ignored. Listing one
    /// variable twice adds its tangents. A result that does not depend on `wrt` has tangent 0.
    /// Hooks do not run (no gradient is computed).
    ///
    /// # Errors
    /// [`Error::Shape`] if `tangents` and `wrt` differ in number or a tangent's shape differs
    /// from its variable's; [`Error::State`] if one of `wrt` needs no gradient (a constant, or
    /// a leaf recorded while gradients were disabled: nothing was recorded for its tangent to
    /// flow through), or an optimiser's `backward_step` consumed the tape.
    ///
    /// # Panics
    /// If one of `wrt` lives on another tape, or a [`CustomOp::jvp`] returns a tangent of the
    /// wrong shape.
    ///
    /// # Example
    /// The directional derivative of a layer's output along a change of its weight:
    /// ```
    /// use vgrad::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
    /// let w = tape.leaf(Tensor::from_vec(vec![0.5, -0.5, 1.0, 1.0], &[2, 2])?);
    /// let y = x.linear(w, None).tanh();
    /// let dw = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0], &[2, 2])?;
    /// let dy = y.jvp(&[w], &[dw])?;
    /// // Only y₀ = tanh(x·w₀ᵀ) moves, at rate (1 − y₀²)·x₀.
    /// let y0 = y.value().data()[0];
    /// assert!((dy.data()[0] - (1.0 - y0 * y0) * 1.0).abs() < 1e-15);
    /// assert_eq!(dy.data()[1], 0.0);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn jvp(self, wrt: &[Var<'t, T>], tangents: &[Tensor<T>]) -> Result<Tensor<T>> {
        for w in wrt {
            self.same_tape("jvp", w);
        }
        let shapes: Vec<_> = wrt.iter().map(|w| w.shape()).collect();
        check_directions("jvp", shapes.iter().map(|s| s.as_slice()), tangents)?;
        self.tape.check_not_consumed("jvp")?;
        if let Some((i, w)) = wrt.iter().enumerate().find(|(_, w)| !w.requires_grad()) {
            return Err(Error::State(format!(
                "jvp: variable {i} (node {}) needs no gradient (a constant, or a leaf recorded \
                 while gradients were disabled), so no op was recorded for its tangent to \
                 flow through",
                w.id
            )));
        }
        let nodes = self.tape.nodes();
        Ok(sweep(&nodes, self.id, wrt, tangents))
    }
}

/// The tangent sweep: nodes `start..=root`, where `start` is the first seeded node.
fn sweep<T: Element>(
    nodes: &[Node<T>],
    root: usize,
    wrt: &[Var<'_, T>],
    tangents: &[Tensor<T>],
) -> Tensor<T> {
    let zeros = || Tensor::zeros(nodes[root].value.shape());
    let Some(start) = wrt.iter().map(|w| w.id).filter(|&i| i <= root).min() else {
        return zeros();
    };
    let len = root - start + 1;
    let mut tan: Vec<Option<Tensor<T>>> = vec![None; len];
    let mut seeded = vec![false; len];
    for (w, v) in wrt.iter().zip(tangents) {
        if w.id > root {
            continue;
        }
        let k = w.id - start;
        seeded[k] = true;
        tan[k] = Some(match tan[k].take() {
            None => v.clone(),
            Some(prev) => prev.add(v),
        });
    }
    // The last node reading each tangent, so that it is freed as soon as that node is swept.
    let mut last = vec![0usize; len];
    for (k, node) in nodes[start..=root].iter().enumerate() {
        for &p in &node.parents {
            if p >= start {
                last[p - start] = k;
            }
        }
    }
    for k in 0..len {
        let node = &nodes[start + k];
        if seeded[k] || !node.requires_grad || node.parents.is_empty() {
            continue;
        }
        let parent_tangents: SmallVec<[Option<&Tensor<T>>; 3]> = node
            .parents
            .iter()
            .map(|&p| p.checked_sub(start).and_then(|j| tan[j].as_ref()))
            .collect();
        if parent_tangents.iter().all(Option::is_none) {
            continue;
        }
        let inputs: SmallVec<[&Tensor<T>; 3]> =
            node.parents.iter().map(|&p| &nodes[p].value).collect();
        let t = tangent(&node.op, &inputs, &node.value, &parent_tangents);
        drop(parent_tangents);
        for &p in &node.parents {
            if p >= start && last[p - start] == k && p != root {
                tan[p - start] = None;
            }
        }
        tan[k] = Some(t);
    }
    tan[len - 1].take().unwrap_or_else(zeros)
}

/// `Σ` of the present terms (at least one).
fn sum_terms<T: Element>(terms: impl IntoIterator<Item = Option<Tensor<T>>>) -> Tensor<T> {
    terms
        .into_iter()
        .flatten()
        .reduce(|acc, t| acc.accumulate(&t))
        .expect("a tangent rule runs only when some input has a tangent")
}

/// `t` broadcast to `shape` (a no-op when it has it already).
fn fit<T: Element>(t: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    if t.shape() == shape {
        t.clone()
    } else {
        t.broadcast_to(shape)
    }
}

/// `Σ a⊙b` accumulated in f64, as the losses' values are.
fn dot<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(&x, &y)| x.widen() * y.widen())
        .sum()
}

/// The one forward-mode dispatch: the tangent of a node with op `op`, inputs `x`, output `y`
/// and input tangents `dx` (at least one present).
fn tangent<T: Element>(
    op: &Op<T>,
    x: &[&Tensor<T>],
    y: &Tensor<T>,
    dx: &[Option<&Tensor<T>>],
) -> Tensor<T> {
    let d0 = || dx[0].expect("a one-input op's input has the tangent");
    let ys = y.shape();
    match op {
        Op::Leaf | Op::Constant => unreachable!("a node without inputs has no tangent rule"),
        Op::Add => sum_terms(dx.iter().map(|d| d.map(|d| fit(d, ys)))),
        // Each product already has the output's (broadcast) shape.
        Op::Mul => sum_terms([dx[0].map(|da| da.mul(x[1])), dx[1].map(|db| x[0].mul(db))]),
        Op::AddScalar(_) => d0().clone(),
        Op::MulScalar(s) => d0().scale(*s),
        // f'(x)·ẋ is the backward rule g·f'(x) with g = ẋ: the derivative each function
        // defines once serves both modes.
        Op::Unary(u) => u.backward(x[0], y, d0()),
        Op::MatMul { ta, tb } => sum_terms([
            dx[0].map(|da| da.matmul_t(x[1], *ta, *tb)),
            dx[1].map(|db| x[0].matmul_t(db, *ta, *tb)),
        ]),
        Op::Linear => {
            let db = dx.get(2).copied().flatten();
            // ẋ·wᵀ + ḃ is one GEMM storing the bias, as in the forward.
            let through_x = dx[0].map(|d| d.linear(x[1], db));
            let bias_only = match (dx[0], db) {
                (None, Some(db)) => Some(fit(db, ys)),
                _ => None,
            };
            sum_terms([through_x, dx[1].map(|dw| x[0].linear(dw, None)), bias_only])
        }
        Op::SumAll => d0().sum_all(),
        Op::SumAxis { axis, keepdim } => d0().sum_axis(*axis, *keepdim),
        Op::MaxAll => {
            let sel = reduce::max_all_selector(x[0], y.item());
            Tensor::scalar(T::of(dot(&sel, d0())))
        }
        Op::MaxAxis { axis, keepdim, arg } => {
            let sel = reduce::one_hot_along(x[0].shape(), *axis, arg);
            d0().mul(&sel).sum_axis(*axis, *keepdim)
        }
        Op::BroadcastTo => d0().broadcast_to(ys),
        Op::SumTo => d0().sum_to(ys),
        Op::Reshape => d0().reshape(ys),
        Op::Permute(p) => d0().permute(p),
        Op::Narrow { axis, start } => d0().narrow(*axis, *start, ys[*axis]),
        Op::GatherRows(idx) => d0().gather_rows(idx),
        Op::ScatterAddRows(idx) => d0().scatter_add_rows(idx, ys[0]),
        Op::Concat { axis } => {
            let parts: SmallVec<[Tensor<T>; 4]> = x
                .iter()
                .zip(dx)
                .map(|(xi, d)| d.cloned().unwrap_or_else(|| Tensor::zeros(xi.shape())))
                .collect();
            let refs: SmallVec<[&Tensor<T>; 4]> = parts.iter().collect();
            Tensor::concat(&refs, *axis)
        }
        // softmax's Jacobian diag(y) − y·yᵀ is symmetric: its JVP is its VJP, one fused pass.
        Op::Softmax { axis } => y.softmax_backward(d0(), *axis, false),
        // log_softmax's is I − 1·softmaxᵀ, not symmetric: ẋ − Σ softmax⊙ẋ along the axis.
        Op::LogSoftmax { axis } => {
            let d = d0();
            let p = y.map(|v| v.exp());
            d.sub(&p.mul(d).sum_axis(*axis, true))
        }
        Op::CrossEntropy { targets, mean } => {
            let s: T = loss::reduction_scale(x[0].shape()[0], *mean);
            let g = x[0].cross_entropy_grad(targets, s);
            Tensor::scalar(T::of(dot(&g, d0())))
        }
        Op::BceWithLogits { mean } => {
            let (z, t) = (x[0], x[1]);
            let s = loss::reduction_scale::<T>(z.numel(), *mean).widen();
            let mut total = 0.0f64;
            if let Some(dz) = dx[0] {
                total += z
                    .data()
                    .iter()
                    .zip(t.data())
                    .zip(dz.data())
                    .map(|((&z, &t), &d)| (sigmoid(z) - t).widen() * d.widen())
                    .sum::<f64>();
            }
            if let Some(dt) = dx[1] {
                total -= dot(z, dt);
            }
            Tensor::scalar(T::of(s * total))
        }
        Op::BatchNorm(saved) => batch_norm_tangent(op, saved, x, dx),
        Op::LayerNorm(saved) => layer_norm_tangent(saved, x, dx),
        Op::Custom(c) => custom_tangent(c, x, y, dx),
    }
}

/// `γ·ẋ̂ + γ̇·x̂ + β̇` for `y = γ·x̂ + β`. The input part, `γ·s(ẋ − mean ẋ − x̂·mean(x̂⊙ẋ))`, is
/// the op's fused backward applied to `ẋ` (the Jacobian of x ↦ x̂ is symmetric).
fn batch_norm_tangent<T: Element>(
    op: &Op<T>,
    saved: &Arc<BatchNormSaved<T>>,
    x: &[&Tensor<T>],
    dx: &[Option<&Tensor<T>>],
) -> Tensor<T> {
    let shape = x[0].shape();
    let through_x = dx[0].map(|d| {
        let mut g = norm::backward(op, x, d, &[true, false, false]);
        g[0].take().expect("asked for the input's part")
    });
    let x_hat = || x[0].sub(&saved.mean).mul(&saved.inv_std);
    sum_terms([
        through_x,
        dx[1].map(|dg| x_hat().mul(dg)),
        dx[2].map(|db| db.broadcast_to(shape)),
    ])
}

/// `γ·ẋ̂ + γ̇·x̂ + β̇` for `y = γ·x̂ + β` over the last axis. The input part is `γ` times the
/// fused backward without γ applied to `ẋ` (the Jacobian of each row's x ↦ x̂ is symmetric;
/// γ varies along the row, so it multiplies after, not inside as for batch norm).
fn layer_norm_tangent<T: Element>(
    saved: &Arc<LayerNormSaved<T>>,
    x: &[&Tensor<T>],
    dx: &[Option<&Tensor<T>>],
) -> Tensor<T> {
    let gamma = saved.gamma.then(|| x[1]);
    let stats = (&saved.mean, &saved.inv_std);
    let through_x = dx[0].map(|d| {
        let t = norm::layer_norm_grads(x[0], d, None, stats, (true, false))
            .0
            .expect("asked for the input gradient");
        match gamma {
            Some(g) => t.mul(g),
            None => t,
        }
    });
    let x_hat = || {
        let [x_hat, _, _] = norm::layer_norm_forward(x[0], None, None, saved.eps);
        x_hat
    };
    let dg = if saved.gamma { dx[1] } else { None };
    let db = if saved.beta {
        dx[1 + usize::from(saved.gamma)]
    } else {
        None
    };
    sum_terms([
        through_x,
        dg.map(|dg| x_hat().mul(dg)),
        db.map(|db| db.broadcast_to(x[0].shape())),
    ])
}

/// A custom op's own `jvp`, or else its Jacobian-vector product from `backward` alone: output
/// element `k` of `J·ẋ` is `⟨Jᵀeₖ, ẋ⟩`, one backward call per output element.
#[track_caller]
fn custom_tangent<T: Element>(
    c: &Arc<dyn CustomOp<T>>,
    x: &[&Tensor<T>],
    y: &Tensor<T>,
    dx: &[Option<&Tensor<T>>],
) -> Tensor<T> {
    if let Some(t) = c.jvp(x, y, dx) {
        assert!(
            t.shape() == y.shape(),
            "{}: jvp returned shape {:?} for an output of shape {:?}",
            c.name(),
            t.shape(),
            y.shape()
        );
        return t;
    }
    let n = y.numel();
    let mut e = vec![T::zero(); n];
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        e[k] = T::one();
        let unit = Tensor::from_vec(e.clone(), y.shape()).expect("the output's own shape");
        e[k] = T::zero();
        let rows = c.backward(x, y, &unit);
        let mut s = 0.0f64;
        for (g, d) in rows.iter().zip(dx) {
            if let (Some(g), Some(d)) = (g, d) {
                assert!(
                    g.shape() == d.shape(),
                    "{}: backward returned shape {:?} for an input of shape {:?}",
                    c.name(),
                    g.shape(),
                    d.shape()
                );
                s += dot(g, d);
            }
        }
        out.push(T::of(s));
    }
    Tensor::from_vec(out, y.shape()).expect("the output's own shape")
}
