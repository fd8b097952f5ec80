//! Parameters, the `Module` trait, the naming visitor, and the forward context that binds
//! parameters to a tape.

use super::Activation;
use crate::hash::{FastIdMap, IdBuild};
use crate::lazy::LazyGrad;
use crate::spare::Recycled;
use crate::tape::{Gradients, Tape, Var};
use crate::tensor::{Element, Tensor};
use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a layer's labelled output is, in the layer's own words ([`Ctx::label_as`]).
///
/// The tape keeps it beside the label. The gradient monitor reads from it which activation
/// follows a layer and which labelled sums are skip connections: a layer says what it is, and
/// nothing above the engine reads the engine's private record of the op that made a node.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum OutputKind<T: Element> {
    /// The output of an elementwise activation of this kind.
    Activation(Activation<T>),
    /// The sum of a skip path and a branch: a residual connection's output.
    Residual,
}

/// A parameter's stable identity: optimiser state and gradients are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(u64);

static NEXT_PARAM: AtomicU64 = AtomicU64::new(0);

/// A trainable tensor owned by a layer. Parameters live outside any tape: each step binds them
/// to that step's tape as leaves (see [`Ctx::param`]).
///
/// Cloning a `Param` gives a new, independent parameter with a fresh [`ParamId`].
pub struct Param<T: Element> {
    id: ParamId,
    value: Tensor<T>,
}

impl<T: Element> Param<T> {
    /// Wraps a tensor as a new parameter.
    pub fn new(value: Tensor<T>) -> Self {
        Param {
            id: ParamId(NEXT_PARAM.fetch_add(1, Ordering::Relaxed)),
            value,
        }
    }

    /// The identity gradients and optimiser state are keyed by.
    pub fn id(&self) -> ParamId {
        self.id
    }

    /// The current value.
    pub fn value(&self) -> &Tensor<T> {
        &self.value
    }

    /// The value itself, for the optimisers' swaps. Whatever is left in it must have the
    /// parameter's shape by the time anything else can see the parameter.
    pub(crate) fn value_mut(&mut self) -> &mut Tensor<T> {
        &mut self.value
    }

    /// Replaces the value (an optimiser step, a checkpoint load).
    ///
    /// # Panics
    /// If the new value's shape differs: a parameter's shape is fixed by its layer.
    #[track_caller]
    pub fn set(&mut self, value: Tensor<T>) {
        assert!(
            value.shape() == self.value.shape(),
            "Param::set: new value of shape {:?} for a parameter of shape {:?}",
            value.shape(),
            self.value.shape()
        );
        self.value = value;
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.value.numel()
    }
}

impl<T: Element> Clone for Param<T> {
    fn clone(&self) -> Self {
        Param::new(self.value.clone())
    }
}

impl<T: Element> fmt::Debug for Param<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Param#{} {:?}", self.id.0, self.value.shape())
    }
}

/// Walks a module's parameters and buffers read-only. Containers call [`enter`](Visitor::enter)
/// with a child's name before visiting it and [`exit`](Visitor::exit) after, so a visitor can
/// build PyTorch's dotted `state_dict` names (`blocks.3.bn.weight`); [`NamedVisitor`] does this.
pub trait Visitor<T: Element> {
    /// A child module named `name` is about to be visited.
    fn enter(&mut self, _name: &str) {}
    /// The child entered last is done.
    fn exit(&mut self) {}
    /// A trainable parameter with its local name (`"weight"`).
    fn param(&mut self, name: &str, p: &Param<T>);
    /// A non-trainable buffer with its local name (`"running_mean"`).
    fn buffer(&mut self, _name: &str, _b: &Tensor<T>) {}
}

/// Walks a module's parameters and buffers mutably (optimisers, checkpoint loading); same
/// enter/exit protocol as [`Visitor`].
pub trait VisitorMut<T: Element> {
    /// A child module named `name` is about to be visited.
    fn enter(&mut self, _name: &str) {}
    /// The child entered last is done.
    fn exit(&mut self) {}
    /// A trainable parameter with its local name.
    fn param(&mut self, name: &str, p: &mut Param<T>);
    /// A non-trainable buffer with its local name.
    fn buffer(&mut self, _name: &str, _b: &mut Tensor<T>) {}
}

/// A layer or a network of layers.
///
/// `forward` takes `&mut self` because some layers change state while training (BatchNorm's
/// running statistics); whether they do is set explicitly with [`train`](Module::train) and
/// [`eval`](Module::eval).
///
/// A module is `Send + Sync + Clone`: a model can be trained in a spawned thread, served from
/// behind a `Mutex`, or deep-copied (an EMA or target network, the best weights kept in
/// memory). A custom module derives `Clone` and needs nothing more: [`ModuleBase`] is
/// implemented for every `Module + Clone`, which lets a `Box<dyn Module<T>>` be cloned and
/// downcast. A clone's parameters are independent copies with fresh [`ParamId`]s (see
/// [`Param`]'s `Clone`), so an optimiser's per-parameter state does not carry over to it.
pub trait Module<T: Element>: fmt::Debug + Send + Sync + ModuleBase<T> {
    /// Computes the output for input `x`, binding this module's parameters through `ctx`.
    ///
    /// # Panics
    /// When `x`'s shape does not fit the module (a `Linear(4, 2)` given `[8, 3]`): shape
    /// misuse inside the maths, reported by the op that meets it with both shapes.
    #[track_caller]
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T>;

    /// Visits parameters and buffers, children inside `enter`/`exit` pairs.
    fn visit(&self, v: &mut dyn Visitor<T>);

    /// Visits parameters and buffers mutably.
    fn visit_mut(&mut self, v: &mut dyn VisitorMut<T>);

    /// Switches training-mode behaviour on or off; containers forward it to their children.
    fn set_training(&mut self, _training: bool) {}

    /// Training mode (BatchNorm uses batch statistics and updates running ones; Dropout drops).
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Evaluation mode (BatchNorm uses running statistics; Dropout is the identity).
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// Total number of trainable scalars.
    fn num_parameters(&self) -> usize {
        struct Count(usize);
        impl<T: Element> Visitor<T> for Count {
            fn param(&mut self, _: &str, p: &Param<T>) {
                self.0 += p.numel();
            }
        }
        let mut c = Count(0);
        self.visit(&mut c);
        c.0
    }

    /// `(dotted name, value)` of every parameter, in visiting order — the names PyTorch's
    /// `named_parameters()` would give the same structure.
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        self.visit(&mut NamedVisitor::new(
            |name: &str, t: &Tensor<T>, is_param: bool| {
                if is_param {
                    out.push((name.to_string(), t.clone()));
                }
            },
        ));
        out
    }

    /// `(dotted name, value)` of every parameter and buffer: PyTorch's `state_dict()`.
    fn state_dict(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        self.visit(&mut NamedVisitor::new(|name: &str, t: &Tensor<T>, _| {
            out.push((name.to_string(), t.clone()));
        }));
        out
    }
}

/// What every [`Module`] gets for free from being `Clone + 'static`: an object-safe deep copy
/// and downcasting, so `Box<dyn Module<T>>` is `Clone` and a container can hand a child back
/// as its concrete type ([`Sequential::get`](crate::nn::Sequential::get)). Implemented for every
/// `M: Module<T> + Clone + 'static`; never implement it by hand.
pub trait ModuleBase<T: Element> {
    /// A deep copy behind a new box.
    fn clone_boxed(&self) -> Box<dyn Module<T>>;
    /// `self` as `Any`, for downcasting to the concrete layer type.
    fn as_any(&self) -> &dyn Any;
    /// `self` as mutable `Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Element, M: Module<T> + Clone + 'static> ModuleBase<T> for M {
    fn clone_boxed(&self) -> Box<dyn Module<T>> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<T: Element> Clone for Box<dyn Module<T>> {
    fn clone(&self) -> Self {
        (**self).clone_boxed()
    }
}

/// Builds dotted names from enter/exit and hands each parameter or buffer to a closure
/// `f(name, value, is_param)`.
pub struct NamedVisitor<F> {
    path: DottedPath,
    f: F,
}

impl<F> NamedVisitor<F> {
    /// A visitor calling `f(dotted_name, value, is_param)`.
    pub fn new(f: F) -> Self {
        NamedVisitor {
            path: DottedPath::default(),
            f,
        }
    }
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A dotted path (`blocks.3.bn`) built in place by the visitor protocol's `enter`/`exit`, without
/// an allocation per module. Every visitor that needs full names keeps one.
///
/// # Example
/// ```
/// use vgrad::nn::DottedPath;
/// let mut p = DottedPath::default();
/// p.enter("blocks");
/// p.enter("3");
/// assert_eq!(p.full("weight"), "blocks.3.weight");
/// p.exit();
/// assert_eq!(p.as_str(), "blocks");
/// ```
#[derive(Clone, Debug, Default)]
pub struct DottedPath {
    path: String,
    marks: Vec<usize>,
}

impl DottedPath {
    /// Descends into child `name`.
    pub fn enter(&mut self, name: &str) {
        self.marks.push(self.path.len());
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
    }

    /// Returns to the parent of the child entered last.
    pub fn exit(&mut self) {
        let m = self.marks.pop().unwrap_or(0);
        self.path.truncate(m);
    }

    /// The full name of `name` inside the current path.
    pub fn full(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// The current path (`""` at the top).
    pub fn as_str(&self) -> &str {
        &self.path
    }
}

impl<T: Element, F: FnMut(&str, &Tensor<T>, bool)> Visitor<T> for NamedVisitor<F> {
    fn enter(&mut self, name: &str) {
        self.path.enter(name);
    }
    fn exit(&mut self) {
        self.path.exit();
    }
    fn param(&mut self, name: &str, p: &Param<T>) {
        (self.f)(&self.path.full(name), p.value(), true);
    }
    fn buffer(&mut self, name: &str, b: &Tensor<T>) {
        (self.f)(&self.path.full(name), b, false);
    }
}

thread_local! {
    /// How many parameters the [`Ctx`] that bound one last on this thread had bound by then: the
    /// next context's starting size (a training loop binds the same model every step).
    static BOUND_HINT: Cell<usize> = const { Cell::new(0) };
}

/// The forward context: binds parameters to a tape as leaves, once each, and tracks the dotted
/// path of the module being run so layer outputs can be labelled with their names.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{Ctx, Linear, Module};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut layer = Linear::<f32>::new(3, 2, &mut rng)?;
/// let tape = Tape::new();
/// let mut ctx = Ctx::new(&tape);
/// let x = tape.constant(Tensor::ones(&[4, 3]));
/// let loss = layer.forward(&mut ctx, x).square().mean();
/// let grads = ctx.param_grads(&loss.backward());
/// assert_eq!(grads.get(layer.weight()).unwrap().shape(), &[2, 3]);
/// # Ok::<(), vgrad::Error>(())
/// ```
pub struct Ctx<'t, T: Element> {
    tape: &'t Tape<T>,
    path: DottedPath,
    /// Names shared with each step's `ParamGrads` (a reference count, not a copy, per step).
    bound: FastIdMap<ParamId, (Arc<str>, Var<'t, T>)>,
}

impl<'t, T: Element> Ctx<'t, T> {
    /// A context recording on `tape`.
    pub fn new(tape: &'t Tape<T>) -> Self {
        Ctx {
            tape,
            path: DottedPath::default(),
            // Sized for as many parameters as the thread's last context bound: grown from empty,
            // the map was reallocated six times per step of a 100-parameter model.
            bound: FastIdMap::with_capacity_and_hasher(
                BOUND_HINT.with(Cell::get),
                Default::default(),
            ),
        }
    }

    /// The tape this context records on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The dotted path of the module currently running (`""` at the top).
    pub fn path(&self) -> &str {
        self.path.as_str()
    }

    /// Runs `f` inside child scope `name`; containers wrap each child's forward in this, with
    /// the same name their `visit` passes to `enter`.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.enter(name);
        self.tape.enter_scope(self.path.as_str());
        let r = f(self);
        self.path.exit();
        self.tape.enter_scope(self.path.as_str());
        r
    }

    /// Runs child module `m` under the name `name`: `m.forward` inside
    /// [`scoped`](Ctx::scoped)`(name, ..)`, so its parameters and output carry the dotted path
    /// its `visit` gives them (see [`children!`](crate::children)).
    #[track_caller]
    pub fn child<M: Module<T> + ?Sized>(
        &mut self,
        name: &str,
        m: &mut M,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        self.scoped(name, |ctx| m.forward(ctx, x))
    }

    /// The variable for parameter `p`, named `local` within the current scope: a leaf on first
    /// use, the same variable afterwards (so a shared parameter accumulates both uses).
    pub fn param(&mut self, local: &str, p: &Param<T>) -> Var<'t, T> {
        if let Some((_, v)) = self.bound.get(&p.id()) {
            return *v;
        }
        // Built in the path's own buffer: one allocation, the `Arc`'s.
        self.path.enter(local);
        let name: Arc<str> = Arc::from(self.path.as_str());
        self.path.exit();
        let v = self.tape.named_leaf(p.value().clone(), || name.to_string());
        self.bound.insert(p.id(), (name, v));
        let n = self.bound.len();
        BOUND_HINT.with(|h| h.set(n));
        v
    }

    /// Labels `v` with the current path (a layer's output), so tape-level hooks and anomaly
    /// reports can name the layer. At the top level (empty path) nothing is attached.
    pub fn label(&self, v: Var<'t, T>) -> Var<'t, T> {
        match self.path.as_str() {
            "" => v,
            path => v.label(path),
        }
    }

    /// Labels `v` as [`label`](Ctx::label) does and says what it is: an activation labels its
    /// output with its kind, a residual block its sum. Observers of the tape (the gradient
    /// monitor) learn what a layer is from this, never from the op that made the node, so a
    /// custom layer can say it too. At the top level (empty path) nothing is attached.
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{Activation, Ctx, OutputKind};
    /// use vgrad::{Tape, Tensor};
    ///
    /// let tape = Tape::<f32>::new();
    /// let mut ctx = Ctx::new(&tape);
    /// let x = tape.constant(Tensor::ones(&[2, 3]));
    /// // A hand-written tanh that tells the monitor what it is.
    /// let y = ctx.scoped("act", |ctx| {
    ///     let (e, f) = (x.exp(), (-x).exp());
    ///     ctx.label_as((e - f) / (e + f), OutputKind::Activation(Activation::Tanh))
    /// });
    /// assert_eq!(y.label_of().as_deref(), Some("act"));
    /// ```
    pub fn label_as(&self, v: Var<'t, T>, kind: OutputKind<T>) -> Var<'t, T> {
        match self.path.as_str() {
            "" => v,
            path => v.label_as(path, kind),
        }
    }

    /// The bound parameters: `(dotted name, id, variable)`, sorted by name.
    pub fn bound(&self) -> Vec<(String, ParamId, Var<'t, T>)> {
        let mut v: Vec<_> = self
            .bound
            .iter()
            .map(|(id, (name, var))| (name.to_string(), *id, *var))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The bound parameters by the tape id of their leaf: `(leaf id, (parameter id, name))`.
    pub(crate) fn leaves(&self) -> impl Iterator<Item = (usize, (ParamId, &str))> + '_ {
        self.bound
            .iter()
            .map(|(id, (name, var))| (var.id, (*id, &**name)))
    }

    /// Picks the parameters' gradients out of a backward result, keyed by parameter.
    ///
    /// # Panics
    /// If `grads` come from another tape than this context's.
    #[track_caller]
    pub fn param_grads(&self, grads: &Gradients<'_, T>) -> ParamGrads<T> {
        // The last step's map, emptied (see `spare.rs`).
        let mut by_id = Recycled::default();
        by_id.reserve(self.bound.len());
        for (id, (name, var)) in &self.bound {
            // Handed on as the sweep left it: a wide Linear weight's gradient is multiplied out
            // when read, or never, by SGD's step (see `lazy.rs`).
            if let Some(g) = grads.lazy(*var) {
                by_id.insert(*id, (Arc::clone(name), g.clone()));
            }
        }
        ParamGrads { by_id }
    }
}

/// Gradients of a model's parameters, keyed by [`ParamId`] and carrying dotted names.
///
/// A wide Linear layer's weight gradient (batch small next to the layer) may be held as the
/// two factors of `∂L/∂W = Gᵀ·X` and multiplied out on the first read ([`get`](Self::get) and
/// the other accessors); plain SGD's step adds it to the weight without forming it. Reads give
/// the gradient either way. Until then the factors keep the layer's input alive, which a
/// loop that drops its tape before the step pays for in memory (at most the gradient's size
/// again).
pub struct ParamGrads<T: Element> {
    /// Recycled from step to step (see `spare.rs`).
    by_id: Recycled<ParamId, (Arc<str>, LazyGrad<T>), IdBuild>,
}

impl<T: Element> Default for ParamGrads<T> {
    fn default() -> Self {
        ParamGrads {
            by_id: Recycled::default(),
        }
    }
}

impl<T: Element> fmt::Debug for ParamGrads<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.by_id.values().map(|(n, g)| (n, g.shape())).collect();
        names.sort();
        f.debug_map().entries(names).finish()
    }
}

impl<T: Element> ParamGrads<T> {
    /// Adds or replaces the gradient of one parameter.
    pub fn insert(&mut self, id: ParamId, name: String, grad: Tensor<T>) {
        self.by_id
            .insert(id, (Arc::from(name), LazyGrad::dense(grad)));
    }

    /// The gradient of `p`, if it received one.
    pub fn get(&self, p: &Param<T>) -> Option<&Tensor<T>> {
        self.get_id(p.id())
    }

    /// The gradient by parameter id.
    pub fn get_id(&self, id: ParamId) -> Option<&Tensor<T>> {
        self.by_id.get(&id).map(|(_, g)| g.get())
    }

    /// The gradient by parameter id as the sweep left it (for the optimiser's step, which may
    /// use a wide Linear weight's gradient without forming it).
    pub(crate) fn lazy_id(&self, id: ParamId) -> Option<&LazyGrad<T>> {
        self.by_id.get(&id).map(|(_, g)| g)
    }

    /// The gradient of the parameter with this dotted name.
    pub fn get_name(&self, name: &str) -> Option<&Tensor<T>> {
        self.by_id
            .values()
            .find(|(n, _)| &**n == name)
            .map(|(_, g)| g.get())
    }

    /// `(dotted name, gradient)` pairs sorted by name.
    pub fn named(&self) -> Vec<(&str, &Tensor<T>)> {
        let mut v: Vec<_> = self.by_id.values().map(|(n, g)| (&**n, g.get())).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Mutable access to every gradient (for clipping or rescaling), in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Tensor<T>> {
        self.by_id.values_mut().map(|(_, g)| g.get_mut())
    }

    /// Number of gradients.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds `other`'s gradients to these, parameter by parameter, as PyTorch's `.grad` sums
    /// over repeated `backward()` calls; a parameter only `other` has takes its gradient as it
    /// is. This is gradient accumulation: run backward on k micro-batches, accumulate, step
    /// once. With a mean loss per micro-batch, [`scale`](Self::scale) the sum by 1/k (as a
    /// PyTorch loop divides each loss by k) to get the gradient of the mean over all of them.
    /// (A BatchNorm layer in training mode normalises each micro-batch by its own statistics,
    /// so there the result is not the large batch's gradient, in PyTorch as here.)
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) if a parameter's two gradients differ in shape;
    /// nothing is added then.
    ///
    /// # Example
    /// ```
    /// use rand::{SeedableRng, rngs::StdRng};
    /// use vgrad::nn::{Ctx, Linear, Module, ParamGrads};
    /// use vgrad::{Tape, Tensor};
    ///
    /// let mut layer = Linear::<f64>::new(3, 2, &mut StdRng::seed_from_u64(0))?;
    /// let x = Tensor::from_fn(&[4, 3], |i| i as f64 / 7.0);
    /// let mut grads_of = |rows: std::ops::Range<usize>| {
    ///     let tape = Tape::new();
    ///     let mut ctx = Ctx::new(&tape);
    ///     let loss = layer.forward(&mut ctx, tape.constant(x.narrow(0, rows.start, rows.len()))).square().sum();
    ///     ctx.param_grads(&loss.backward())
    /// };
    /// let whole = grads_of(0..4);
    /// let mut acc = ParamGrads::default();
    /// acc.accumulate(grads_of(0..2))?;
    /// acc.accumulate(grads_of(2..4))?;
    /// let (a, b) = (acc.get_name("weight").unwrap(), whole.get_name("weight").unwrap());
    /// assert!(a.data().iter().zip(b.data()).all(|(p, q)| (p - q).abs() < 1e-12));
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn accumulate(&mut self, mut other: ParamGrads<T>) -> crate::Result<()> {
        for (id, (name, g)) in other.by_id.iter() {
            if let Some((_, mine)) = self.by_id.get(id) {
                if mine.shape() != g.shape() {
                    return Err(crate::Error::Shape(format!(
                        "accumulate: gradient of `{name}` has shape {:?} here and {:?} in the other",
                        mine.shape(),
                        g.shape()
                    )));
                }
            }
        }
        for (id, (name, g)) in other.by_id.drain() {
            match self.by_id.get_mut(&id) {
                Some((_, mine)) => {
                    let sum = std::mem::replace(mine.get_mut(), Tensor::zeros(&[0]));
                    *mine = LazyGrad::dense(sum.accumulate(&g.into_tensor()));
                }
                None => {
                    self.by_id.insert(id, (name, g));
                }
            }
        }
        Ok(())
    }

    /// Multiplies every gradient by `factor` (in place where nothing else shares a buffer).
    pub fn scale(&mut self, factor: f64) {
        let s = T::of(factor);
        for (_, g) in self.by_id.values_mut() {
            let g = g.get_mut();
            match g.data_mut() {
                Some(d) => d.iter_mut().for_each(|x| *x *= s),
                None => *g = g.scale(s),
            }
        }
    }

    /// The global L2 norm of all gradients together, accumulated in f64 with scaling so that
    /// tiny (1e-32) or huge values neither underflow nor overflow.
    pub fn total_norm(&self) -> f64 {
        let per: Vec<f64> = self
            .by_id
            .values()
            .map(|(_, g)| g.get().norm_l2())
            .collect();
        crate::tensor::norm_l2_f64(per.iter().copied())
    }
}

/// Formats a container like PyTorch's `print(model)`: `Name(` then one `(child): …` line per
/// child, nested children indented by two spaces, then `)`.
pub(crate) fn fmt_container(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    children: &[(String, &dyn fmt::Debug)],
) -> fmt::Result {
    if children.is_empty() {
        return write!(f, "{name}()");
    }
    writeln!(f, "{name}(")?;
    for (child_name, child) in children {
        let text = format!("{child:?}");
        let indented = text.replace('\n', "\n  ");
        writeln!(f, "  ({child_name}): {indented}")?;
    }
    write!(f, ")")
}
