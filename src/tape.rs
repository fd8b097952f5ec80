//! The engine: the tape, its nodes, the `Var` handle, the backward sweep, hooks and anomalies.
//!
//! Read this file top to bottom to know how vgrad differentiates.
//!
//! * A [`Tape`] is an append-only `Vec` of nodes. A node is created after its parents, so the
//!   insertion order is a topological order and backward is one reverse loop over the vector:
//!   no recursion, no visited set, and a 100,000-op chain needs no stack.
//! * A [`Var`] is a `Copy` handle — a tape reference and an index — so expressions read like
//!   maths: `(x.matmul(w) + b).sigmoid()`.
//! * Each node stores its value, the op that made it (a data-only [`Op`] enum) and its parents'
//!   indices. Whether it needs a gradient is decided when it is created: a node none of whose
//!   parents needs a gradient is stored as a constant, with no parents and no backward rule, so
//!   constants and detached values cost nothing in backward.
//! * A node's gradient is complete when the reverse sweep reaches its index, since every consumer
//!   sits later on the tape. That is where gradient hooks fire, once, with the whole value, and
//!   where an intermediate gradient is dropped as soon as its backward rule has used it.
//! * With `create_graph` ([`Var::backward_graph`]) the same backward rules run on `Var`s instead of
//!   `Tensor`s, so the gradient is recorded on the tape and can be differentiated again. Without
//!   it the rules run on plain tensors with fused kernels and nothing is recorded: the cost of
//!   higher-order support is zero when it is not asked for.

use crate::ops::{self, Algebra, InputGrads, Op};
use crate::tensor::simd::FlushScope;
use crate::tensor::{Element, Shape, Tensor, WeakTensor};
use smallvec::SmallVec;
use std::any::Any;
use std::cell::{Cell, Ref, RefCell};

use std::fmt;

use std::sync::Arc;

/// Parents a node keeps inline: three covers every op but concat and custom ops (Linear and
/// BatchNorm take three; with two inline, each of their nodes spilled its parents to the heap).
/// The backward sweep's per-node scratch (`needs`, `inputs`, the input gradients) stays at two
/// inline: at three, moving the larger vectors cost the 1×1 chain 4% (0.189 -> 0.197 µs/op)
/// for no measurable gain on the deep steps.
const INLINE_INPUTS: usize = 3;

/// Parent indices of a node.
pub(crate) type Parents = SmallVec<[usize; INLINE_INPUTS]>;

// The hasher lives in `crate::hash`, below the engine, `nn` and the monitor.
use crate::hash::{FastIdMap, IdBuild};
use crate::lazy::LazyGrad;
use crate::spare::Recycled;

/// A map keyed by node index.
type IdMap<V> = FastIdMap<usize, V>;

pub(crate) struct Node<T: Element> {
    pub(crate) op: Op<T>,
    pub(crate) parents: Parents,
    pub(crate) value: Tensor<T>,
    pub(crate) requires_grad: bool,
    /// A model's parameter (bound by `nn::Ctx::param`): backward hands its buffer back to the
    /// model when done with it (see [`Tape::release`]).
    pub(crate) param: bool,
}

/// What [`Var::backward_leaves`] calls for each leaf: its id, its gradient and its value (taken
/// out of the tape); returns the value to put back.
pub(crate) type LeafFn<'f, T> = dyn FnMut(usize, Tensor<T>, Tensor<T>) -> Tensor<T> + 'f;

/// A gradient hook: sees a node's complete gradient and may return a replacement.
type HookFn<T> = Box<dyn FnMut(&Tensor<T>) -> Option<Tensor<T>>>;

/// Identifies a registered hook so it can be removed with [`Tape::remove_hook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HookHandle {
    node: usize,
    serial: u64,
}

/// A tape-wide observer of labelled nodes' gradients: `(label, node value, gradient)`.
type LabelHookFn<T> = Box<dyn FnMut(&str, &Tensor<T>, &Tensor<T>)>;

#[derive(Default)]
struct Hooks<T: Element> {
    per_node: IdMap<Vec<(u64, HookFn<T>)>>,
    on_labelled: Vec<(u64, LabelHookFn<T>)>,
    next_serial: u64,
    /// Hooks taken out of the maps while they run (so that a hook may register or remove hooks
    /// without a second borrow): their serials, and those removed while they were out.
    running: SmallVec<[u64; 4]>,
    cancelled: SmallVec<[u64; 4]>,
}

impl<T: Element> Hooks<T> {
    fn serial(&mut self) -> u64 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }

    /// Forgets what ran, keeping the hooks that were not cancelled while they ran.
    fn end_run<F>(&mut self, ran: Vec<(u64, F)>) -> Vec<(u64, F)> {
        let cancelled = std::mem::take(&mut self.cancelled);
        self.running.clear();
        ran.into_iter()
            .filter(|(s, _)| !cancelled.contains(s))
            .collect()
    }
}

/// Where an [`Anomaly`] was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The op's forward value was non-finite.
    Forward,
    /// The op's backward rule produced a non-finite gradient for one of its inputs.
    Backward,
}

/// The first op that produced a non-finite value or gradient while anomaly detection was on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// Forward value or backward gradient.
    pub phase: Phase,
    /// The op's name, e.g. `"ln"` or `"matmul"`.
    pub op: &'static str,
    /// Shapes of the op's inputs.
    pub input_shapes: Vec<Vec<usize>>,
    /// Where it happened: a parameter's dotted name (`2.weight`) for the leaf
    /// [`nn::Ctx`](crate::nn::Ctx) bound it to; else the node's own label (see [`Var::label`]);
    /// else the dotted path of the `nn` layer whose forward recorded the op (`2`, or
    /// `3.branch.0`), `None` outside every layer. On a tape used without `nn` (no layer scopes
    /// recorded), the label of the nearest labelled node before it.
    pub label: Option<String>,
    /// The node's index on the tape.
    pub node: usize,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.phase {
            Phase::Forward => "produced a non-finite value",
            Phase::Backward => "produced a non-finite gradient in backward",
        };
        write!(f, "op `{}` (node {}", self.op, self.node)?;
        match (&self.label, self.op) {
            (Some(l), "leaf") => write!(f, ", parameter `{l}`")?,
            (Some(l), _) => write!(f, ", in `{l}`")?,
            (None, _) => {}
        }
        write!(f, ") with inputs {:?} {what}", self.input_shapes)
    }
}

impl std::error::Error for Anomaly {}

/// An append-only record of operations, the owner of every intermediate value.
///
/// Create one per forward/backward pass (or [`reset`](Tape::reset) and reuse one), create inputs
/// with [`leaf`](Tape::leaf) (needs a gradient) or [`constant`](Tape::constant) (does not), and
/// compute with the [`Var`] handles they return.
///
/// # Example
/// ```
/// use vgrad::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::scalar(3.0));
/// let y = x * x + x.exp();
/// let grads = y.backward();
/// // d/dx (x² + eˣ) = 2x + eˣ
/// let want = 2.0 * 3.0 + 3.0f64.exp();
/// assert!((grads.wrt(x).unwrap().item() - want).abs() < 1e-12);
/// ```
pub struct Tape<T: Element> {
    nodes: RefCell<Vec<Node<T>>>,
    labels: RefCell<IdMap<Arc<str>>>,
    /// What the code that labelled a node says it is ([`Var::label_as`]), kept for the tape's
    /// observers and never read by the engine: an `nn` layer's word for what its output is, so
    /// that nothing above the engine needs to know which op made a node.
    label_kinds: RefCell<IdMap<Box<dyn Any>>>,
    retained: RefCell<Vec<usize>>,
    hooks: RefCell<Hooks<T>>,
    grad_enabled: Cell<bool>,
    detect_anomaly: Cell<bool>,
    anomaly: RefCell<Option<Anomaly>>,
    /// While anomaly detection is on: the `nn` scope (a layer's dotted path) entered at each
    /// node index, in tape order, and the dotted names of parameter leaves, so an anomaly names
    /// the layer whose forward recorded it. Nothing is kept while detection is off.
    scopes: RefCell<Vec<(usize, Arc<str>)>>,
    leaf_names: RefCell<IdMap<Arc<str>>>,
    /// Set by the sweep behind `Optimizer::backward_step`, which moves the updated parameters
    /// into their leaves: the recorded values no longer match them, so no later sweep may run.
    consumed: Cell<bool>,
    /// Parameter leaves whose values a plain backward sweep has released (node index, weak
    /// handle), and whether there are any: see [`Tape::release`].
    released: RefCell<Recycled<usize, WeakTensor<T>, IdBuild>>,
    any_released: Cell<bool>,
    /// The empty tensor a released leaf holds until it is restored: one per tape, shared, so
    /// that a release costs no allocation.
    placeholder: std::cell::OnceCell<Tensor<T>>,
    /// How many parameter leaves were bound: the size a sweep's `Gradients` map starts at, so
    /// it is not rehashed as it grows.
    params: Cell<usize>,
}

// The node list of a dropped tape is kept (emptied) for the thread's next tape: a training loop
// builds one tape per step with the same number of nodes, and growing the list again each step
// meant a chain of reallocations (copying every node) and, when the large old list was freed,
// a consolidation pass in malloc: about a tenth of the per-op overhead benchmark's instructions.
//
// The nodes are dropped newest first, so their buffers and allocations are freed in the reverse
// of the order the next tape will ask for them: the buffer pool and malloc's free lists hand out
// the block freed last first, so the next tape's first node gets the first node's old block,
// touched last by the backward sweep. The 1×1 chain: 0.153 → 0.147 µs per op (four alternated
// runs); the training steps are unchanged within noise. In place, not by `pop`: moving each
// node out first made the chain 4% slower instead.
impl<T: Element> Drop for Tape<T> {
    fn drop(&mut self) {
        let mut nodes = std::mem::take(self.nodes.get_mut());
        let len = nodes.len();
        // SAFETY: the length is zeroed first, so the list never drops these nodes again, and
        // each is dropped once, in place (a panicking drop would leak the rest, not free twice).
        unsafe {
            nodes.set_len(0);
            let base = nodes.as_mut_ptr();
            for i in (0..len).rev() {
                std::ptr::drop_in_place(base.add(i));
            }
        }
        crate::spare::put(nodes, MAX_SPARE_NODES, 1);
    }
}

/// Longest node list kept for the thread's next tape.
const MAX_SPARE_NODES: usize = 1 << 16;

impl<T: Element> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tape<{}> {{ nodes: {} }}", T::DTYPE, self.len())
    }
}

impl<T: Element> Tape<T> {
    /// An empty tape with gradients enabled and anomaly detection off.
    pub fn new() -> Self {
        Tape {
            nodes: RefCell::new(crate::spare::take()),
            labels: RefCell::default(),
            label_kinds: RefCell::default(),
            retained: RefCell::default(),
            hooks: RefCell::default(),
            grad_enabled: Cell::new(true),
            detect_anomaly: Cell::new(false),
            anomaly: RefCell::new(None),
            scopes: RefCell::default(),
            leaf_names: RefCell::default(),
            consumed: Cell::new(false),
            released: RefCell::default(),
            any_released: Cell::new(false),
            placeholder: std::cell::OnceCell::new(),
            params: Cell::new(0),
        }
    }

    /// Clears every node, label, retained gradient, hook (per-variable hooks and the
    /// tape-wide observers of [`on_labelled_grad`](Tape::on_labelled_grad) alike) and the
    /// recorded anomaly, keeping the allocated capacity: a reset tape behaves as a new one,
    /// except that the switches ([`set_grad_enabled`](Tape::set_grad_enabled),
    /// [`set_detect_anomaly`](Tape::set_detect_anomaly)) keep their settings. Taking
    /// `&mut self` guarantees that no [`Var`] or [`Gradients`] of the old contents is alive.
    pub fn reset(&mut self) {
        self.nodes.get_mut().clear();
        self.labels.get_mut().clear();
        self.label_kinds.get_mut().clear();
        self.retained.get_mut().clear();
        // The serial counter survives, so a handle from before the reset never removes a hook
        // registered after it.
        let hooks = self.hooks.get_mut();
        *hooks = Hooks {
            next_serial: hooks.next_serial,
            ..Hooks::default()
        };
        *self.anomaly.get_mut() = None;
        self.scopes.get_mut().clear();
        self.leaf_names.get_mut().clear();
        self.consumed.set(false);
        self.released.get_mut().clear();
        self.any_released.set(false);
        self.params.set(0);
    }

    /// Number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A variable whose gradient is wanted (a parameter or an input under study).
    ///
    /// When gradients are disabled ([`set_grad_enabled`](Tape::set_grad_enabled)) this is a
    /// constant instead.
    pub fn leaf(&self, value: Tensor<T>) -> Var<'_, T> {
        let rg = self.grad_enabled.get();
        self.push_node(Op::Leaf, Parents::new(), value, rg)
    }

    /// A value that needs no gradient; ops on constants alone record no backward work.
    pub fn constant(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push_node(Op::Constant, Parents::new(), value, false)
    }

    /// Turns gradient recording on or off (PyTorch's `torch.set_grad_enabled`). While off, every
    /// new node is a constant: evaluation runs at the cost of the forward maths alone.
    pub fn set_grad_enabled(&self, enabled: bool) {
        self.grad_enabled.set(enabled);
    }

    /// Whether new leaves need gradients.
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled.get()
    }

    /// Turns anomaly detection on or off (PyTorch's `detect_anomaly`). While on, every forward
    /// value and every gradient is checked, and the first non-finite one is kept as an
    /// [`Anomaly`] naming the op, its input shapes and its label; read it with
    /// [`anomaly`](Tape::anomaly). Costs one pass over each value.
    pub fn set_detect_anomaly(&self, on: bool) {
        self.detect_anomaly.set(on);
    }

    /// Whether anomaly detection is on.
    pub fn detects_anomalies(&self) -> bool {
        self.detect_anomaly.get()
    }

    /// Notes that the nodes recorded from now on belong to the `nn` scope `path` (a layer's
    /// dotted path, `""` outside every layer); kept only while anomaly detection is on.
    pub(crate) fn enter_scope(&self, path: &str) {
        if self.detect_anomaly.get() {
            let at = self.len();
            let mut scopes = self.scopes.borrow_mut();
            // Entering and leaving an empty layer records two marks at one index: the later wins.
            if scopes.last().is_some_and(|(i, _)| *i == at) {
                scopes.pop();
            }
            scopes.push((at, Arc::from(path)));
        }
    }

    /// A leaf for a parameter whose dotted name is `name()`; the name is kept for anomaly
    /// reports (asked for only while detection is on), before the leaf's value is checked.
    pub(crate) fn named_leaf(&self, value: Tensor<T>, name: impl FnOnce() -> String) -> Var<'_, T> {
        let id = self.len();
        if self.detect_anomaly.get() {
            self.leaf_names.borrow_mut().insert(id, Arc::from(name()));
        }
        let v = self.leaf(value);
        self.nodes.borrow_mut()[id].param = true;
        self.params.set(self.params.get() + 1);
        v
    }

    /// The first anomaly found since detection was switched on, if any.
    pub fn anomaly(&self) -> Option<Anomaly> {
        self.anomaly.borrow().clone()
    }

    /// Registers an observer called during every backward sweep for each node carrying a label
    /// (see [`Var::label`]), with the label, the node's forward value and its complete gradient.
    /// This is the layer-level hook that `nn` and the gradient monitor build on.
    pub fn on_labelled_grad(
        &self,
        f: impl FnMut(&str, &Tensor<T>, &Tensor<T>) + 'static,
    ) -> HookHandle {
        let mut h = self.hooks.borrow_mut();
        let serial = h.serial();
        h.on_labelled.push((serial, Box::new(f)));
        HookHandle {
            node: usize::MAX,
            serial,
        }
    }

    /// Removes a hook registered with [`Var::register_hook`] or [`Tape::on_labelled_grad`].
    /// Returns whether it was still registered. A hook may remove itself (or another) while it
    /// runs, as in PyTorch: a removed hook is not called again, in this sweep or later.
    pub fn remove_hook(&self, handle: HookHandle) -> bool {
        let mut h = self.hooks.borrow_mut();
        if h.running.contains(&handle.serial) {
            if h.cancelled.contains(&handle.serial) {
                return false;
            }
            h.cancelled.push(handle.serial);
            return true;
        }
        if handle.node == usize::MAX {
            let before = h.on_labelled.len();
            h.on_labelled.retain(|(s, _)| *s != handle.serial);
            return h.on_labelled.len() != before;
        }
        let Some(list) = h.per_node.get_mut(&handle.node) else {
            return false;
        };
        let before = list.len();
        list.retain(|(s, _)| *s != handle.serial);
        let removed = list.len() != before;
        if list.is_empty() {
            h.per_node.remove(&handle.node);
        }
        removed
    }

    /// Every labelled node in tape (forward) order: its id, its label, and the kind attached with
    /// [`Var::label_as`] when that is a `K`. The gradient monitor reads from it which layers ran
    /// in which order, and what each labelled output is in its layer's words (`nn::OutputKind`);
    /// the op that made a node stays the engine's business.
    pub(crate) fn labelled_nodes<K: Any + Copy>(&self) -> Vec<(usize, Arc<str>, Option<K>)> {
        let kinds = self.label_kinds.borrow();
        let mut out: Vec<_> = self
            .labels
            .borrow()
            .iter()
            .map(|(&id, l)| {
                let kind = kinds.get(&id).and_then(|k| k.downcast_ref::<K>()).copied();
                (id, l.clone(), kind)
            })
            .collect();
        out.sort_by_key(|e| e.0);
        out
    }

    /// Every node, borrowed, for sweeps that walk the tape outside this file (forward mode's
    /// tangent sweep), with every value a backward sweep released put back first (see
    /// [`release`](Tape::release)). Nothing may record on this tape while the borrow lives.
    ///
    /// # Panics
    /// If a released parameter was changed or dropped since (see [`Var::value`]).
    #[track_caller]
    pub(crate) fn nodes(&self) -> Ref<'_, Vec<Node<T>>> {
        if self.any_released.get() {
            let ids: Vec<usize> = self.released.borrow().keys().copied().collect();
            ids.into_iter().for_each(|id| self.restore(id));
        }
        self.nodes.borrow()
    }

    #[track_caller]
    pub(crate) fn value(&self, id: usize) -> Tensor<T> {
        self.restore(id);
        self.nodes.borrow()[id].value.clone()
    }

    /// Node `id`'s value, borrowed: no reference-count round trip or shape copy, as a clone
    /// would cost (~5% of the 1×1 chain's time per op). Nothing may record on this tape while
    /// the borrow lives, so ops take it for their forward computation only.
    #[track_caller]
    pub(crate) fn value_ref(&self, id: usize) -> Ref<'_, Tensor<T>> {
        self.restore(id);
        Ref::map(self.nodes.borrow(), |n| &n[id].value)
    }

    #[track_caller]
    pub(crate) fn shape(&self, id: usize) -> Shape {
        self.restore(id);
        Shape::from_slice(self.nodes.borrow()[id].value.shape())
    }

    /// Hands parameter leaf `id`'s buffer back to its model: a plain backward sweep calls this
    /// when it reaches the leaf, after which nothing in the sweep reads the value. The tape
    /// keeps a weak handle instead, so an optimiser step while the tape is alive (the loop
    /// README.md teaches) updates the parameter where it lies instead of copying it first: the
    /// copy was a fifth of a wide network's step on some CPUs. Only when the model is the one
    /// other owner: a buffer the tape alone holds, or a user's clone shares, stays as it is.
    ///
    /// Anything that reads the value later gets it back through [`restore`](Tape::restore),
    /// unchanged, or a panic if the parameter was updated or dropped meanwhile: a tape records
    /// values, and differentiating again through a changed one would be silently wrong. This is
    /// PyTorch's rule ("one of the variables needed for gradient computation has been modified
    /// by an inplace operation").
    fn release(&self, id: usize) {
        let mut nodes = self.nodes.borrow_mut();
        let value = &mut nodes[id].value;
        if value.owners() != 2 {
            return;
        }
        let weak = value.downgrade();
        *value = self.placeholder.get_or_init(|| Tensor::zeros(&[0])).clone();
        let mut released = self.released.borrow_mut();
        if released.is_empty() {
            // Every parameter of the model is usually released, once per step: one reservation
            // (usually none: the map is the last tape's, see `spare.rs`).
            released.reserve(self.params.get());
        }
        released.insert(id, weak);
        self.any_released.set(true);
    }

    /// Puts node `id`'s value back if a sweep released it (see [`release`](Tape::release)),
    /// before anything reads it. One flag test when nothing was released.
    ///
    /// # Panics
    /// If the parameter was changed (an optimiser step) or dropped since.
    #[inline]
    #[track_caller]
    fn restore(&self, id: usize) {
        if self.any_released.get() {
            self.restore_released(id);
        }
    }

    #[cold]
    #[track_caller]
    fn restore_released(&self, id: usize) {
        let mut released = self.released.borrow_mut();
        let Some(weak) = released.get(&id) else {
            return;
        };
        // What cannot come back stays listed, so every later read panics too rather than
        // seeing the placeholder.
        let Some(value) = weak.upgrade() else {
            drop(released);
            let name = self.leaf_names.borrow().get(&id).cloned();
            let name = name.map_or_else(String::new, |n| format!(" `{n}`"));
            panic!(
                "parameter{name} (node {id}) was updated in place (by an optimiser step) or \
                 dropped after this tape recorded it, and the tape needs its recorded value: \
                 read values and run every backward before the step, or record a new tape \
                 (PyTorch: \"one of the variables needed for gradient computation has been \
                 modified by an inplace operation\")"
            );
        };
        released.remove(&id);
        self.any_released.set(!released.is_empty());
        self.nodes.borrow_mut()[id].value = value;
    }

    pub(crate) fn requires_grad(&self, id: usize) -> bool {
        self.nodes.borrow()[id].requires_grad
    }

    #[track_caller]
    fn push_node(&self, op: Op<T>, parents: Parents, value: Tensor<T>, rg: bool) -> Var<'_, T> {
        if self.detect_anomaly.get() {
            // The anomaly report reads the parents' shapes.
            parents.iter().for_each(|&p| self.restore(p));
        }
        let mut nodes = self.nodes.borrow_mut();
        let id = nodes.len();
        if self.detect_anomaly.get() && !value.all_finite() {
            let shapes = parents
                .iter()
                .map(|&p| nodes[p].value.shape().to_vec())
                .collect();
            self.note_anomaly(Phase::Forward, op.name(), shapes, id);
        }
        let (op, parents) = if rg {
            (op, parents)
        } else {
            (Op::Constant, Parents::new())
        };
        nodes.push(Node {
            op,
            parents,
            value,
            requires_grad: rg,
            param: false,
        });
        Var { tape: self, id }
    }

    /// Records an op whose value is already computed. The node needs a gradient when any parent
    /// does; otherwise it is stored as a constant with no backward work.
    pub(crate) fn push(&self, op: Op<T>, parents: &[usize], value: Tensor<T>) -> Var<'_, T> {
        let rg = {
            let nodes = self.nodes.borrow();
            parents.iter().any(|&p| nodes[p].requires_grad)
        };
        self.push_node(op, Parents::from_slice(parents), value, rg)
    }

    fn note_anomaly(
        &self,
        phase: Phase,
        op: &'static str,
        input_shapes: Vec<Vec<usize>>,
        node: usize,
    ) {
        let mut slot = self.anomaly.borrow_mut();
        if slot.is_none() {
            *slot = Some(Anomaly {
                phase,
                op,
                input_shapes,
                label: self.blame(node),
                node,
            });
        }
    }

    /// The name an anomaly at `node` is reported under: a parameter leaf's dotted name
    /// (`2.weight`); else the node's own label; else the `nn` layer whose forward recorded it
    /// (none for ops outside every layer, such as the loss). On a tape no `nn` scope was
    /// recorded on (ops written by hand), the closest label recorded before the node.
    fn blame(&self, node: usize) -> Option<String> {
        if let Some(name) = self.leaf_names.borrow().get(&node) {
            return Some(name.to_string());
        }
        let labels = self.labels.borrow();
        if let Some(l) = labels.get(&node) {
            return Some(l.to_string());
        }
        let scopes = self.scopes.borrow();
        if !scopes.is_empty() {
            let after = scopes.partition_point(|(start, _)| *start <= node);
            return after
                .checked_sub(1)
                .map(|i| &scopes[i].1)
                .filter(|path| !path.is_empty())
                .map(|path| path.to_string());
        }
        labels
            .iter()
            .filter(|(&k, _)| k <= node)
            .max_by_key(|(&k, _)| k)
            .map(|(_, v)| v.to_string())
    }

    /// Runs the hooks registered on `id` in registration order, each seeing the gradient the
    /// previous one left, then the labelled-node observers. Returns the replacement, if any hook
    /// made one.
    ///
    /// The hooks are taken out of the tape while they run, so a hook may remove itself or
    /// register others (those run from the next sweep on).
    fn run_hooks(&self, id: usize, g: &Tensor<T>) -> Option<Tensor<T>> {
        let mut replaced: Option<Tensor<T>> = None;
        let taken = {
            let mut h = self.hooks.borrow_mut();
            let taken = h.per_node.remove(&id);
            if let Some(list) = &taken {
                let serials = list.iter().map(|(s, _)| *s);
                h.running.extend(serials.collect::<SmallVec<[u64; 4]>>());
            }
            taken
        };
        if let Some(mut list) = taken {
            for (serial, f) in list.iter_mut() {
                if self.hooks.borrow().cancelled.contains(serial) {
                    continue;
                }
                let current = replaced.as_ref().unwrap_or(g);
                if let Some(r) = f(current) {
                    assert!(
                        r.shape() == g.shape(),
                        "register_hook: hook returned shape {:?} for a gradient of shape {:?}",
                        r.shape(),
                        g.shape()
                    );
                    replaced = Some(r);
                }
            }
            let mut h = self.hooks.borrow_mut();
            let mut kept = h.end_run(list);
            // Hooks registered on this node while its hooks ran come after them.
            if let Some(added) = h.per_node.remove(&id) {
                kept.extend(added);
            }
            if !kept.is_empty() {
                h.per_node.insert(id, kept);
            }
        }
        let label = match self.hooks.borrow().on_labelled.is_empty() {
            true => None,
            false => self.labels.borrow().get(&id).cloned(),
        };
        if let Some(label) = label {
            let mut observers = {
                let mut h = self.hooks.borrow_mut();
                let list = std::mem::take(&mut h.on_labelled);
                let serials = list.iter().map(|(s, _)| *s);
                h.running.extend(serials.collect::<SmallVec<[u64; 4]>>());
                list
            };
            if !observers.is_empty() {
                let value = self.nodes.borrow()[id].value.clone();
                let current = replaced.as_ref().unwrap_or(g);
                for (serial, f) in observers.iter_mut() {
                    if self.hooks.borrow().cancelled.contains(serial) {
                        continue;
                    }
                    f(&label, &value, current);
                }
            }
            let mut h = self.hooks.borrow_mut();
            let mut kept = h.end_run(observers);
            kept.append(&mut h.on_labelled);
            h.on_labelled = kept;
        }
        replaced
    }

    /// Whether an [`Optimizer::backward_step`](crate::nn::Optimizer::backward_step) has swept
    /// this tape, so its graph can no longer be differentiated.
    ///
    /// # Errors
    /// [`Error::State`](crate::Error::State) naming `op` when it has.
    pub(crate) fn check_not_consumed(&self, op: &str) -> crate::Result<()> {
        if self.consumed.get() {
            return Err(crate::Error::State(format!(
                "{op}: this tape's graph was consumed by an earlier backward_step, which moved \
                 the updated parameters into it; record a new forward pass (a new tape, or \
                 Tape::reset) before the next backward"
            )));
        }
        Ok(())
    }

    /// Panics with [`check_not_consumed`](Tape::check_not_consumed)'s message.
    #[track_caller]
    fn assert_not_consumed(&self, op: &str) {
        if let Err(e) = self.check_not_consumed(op) {
            panic!("{e}");
        }
    }

    fn has_hooks(&self) -> bool {
        let h = self.hooks.borrow();
        !h.per_node.is_empty() || !h.on_labelled.is_empty()
    }

    /// Whether node `id`'s gradient is returned to the caller: leaves and retained nodes.
    fn keeps(id: usize, op: &Op<T>, retained: &[usize]) -> bool {
        matches!(op, Op::Leaf) || retained.contains(&id)
    }

    /// A Linear node's weight gradient `Gᵀ·X` kept as its factors (see `lazy.rs`), when the
    /// weight is a leaf (one that needs its gradient: the caller checked) and the factors `G` (`[rows, out]`) and `X` (`[rows, in]`) together hold
    /// at most half as many elements as the product (`[out, in]`): a batch small next to the
    /// layer. Otherwise forming it here, while `G` and `X` are in cache, is cheaper than reading
    /// them back later (measured: deep 64-wide stacks 7% slower deferred).
    fn defer_weight(weight: &Node<T>, inputs: &[&Tensor<T>], g: &Tensor<T>) -> Option<LazyGrad<T>> {
        if !matches!(weight.op, Op::Leaf) {
            return None;
        }
        let (out, inp) = (inputs[1].shape()[0], inputs[1].shape()[1]);
        let rows = g.numel() / out.max(1);
        let factors = rows.saturating_mul(out.saturating_add(inp));
        if rows == 0 || factors > out.saturating_mul(inp) / 2 {
            return None;
        }
        Some(LazyGrad::product(
            g.reshape(&[rows, out]),
            inputs[0].reshape(&[rows, inp]),
        ))
    }

    /// The reverse sweep on plain tensors: fused kernels, nothing recorded.
    ///
    /// With `on_leaf`, a leaf's gradient is handed to it as soon as it is complete instead of
    /// being returned, together with the leaf's value taken out of the tape; what it returns
    /// becomes the leaf's value. A leaf's gradient is complete when the sweep reaches it: every
    /// node that reads it was recorded after it, so has been swept already, and no rule still to
    /// run reads its value.
    fn backward_values(
        &self,
        root: usize,
        seed: Tensor<T>,
        mut on_leaf: Option<&mut LeafFn<'_, T>>,
    ) -> Gradients<'_, T> {
        // Parameters released by an earlier sweep come back as this one needs them; within one
        // sweep a leaf is released only after every node that reads it was visited.
        let stale = self.any_released.get();
        // Subnormals flushed for the whole sweep (see `vgrad::set_flush_denormal`): this is
        // where a vanishing gradient's values fall below 1e-38.
        let _flush = FlushScope::enter();
        let hooks = self.has_hooks();
        let anomaly = self.detect_anomaly.get();
        let retained = self.retained.borrow().clone();
        let mut pending: Vec<Option<Tensor<T>>> = Vec::new();
        pending.resize_with(root + 1, || None);
        pending[root] = Some(seed);
        let mut out = Gradients::new(self);
        out.map.reserve(self.params.get());
        // Wide Linear layers' weight gradients kept as their factors (see `lazy.rs`): only in a
        // plain sweep (the fused step updates each weight as its gradient completes), and only
        // when no hook or anomaly check needs to see the gradient.
        let may_defer = on_leaf.is_none() && !hooks && !anomaly;
        let mut deferred: IdMap<LazyGrad<T>> = IdMap::default();
        for i in (0..=root).rev() {
            let lazy = if deferred.is_empty() {
                None
            } else {
                deferred.remove(&i)
            };
            let mut g = match (pending[i].take(), lazy) {
                (Some(g), None) => g,
                (None, None) => continue,
                // A weight also used outside a Linear layer: its contributions summed.
                (Some(g), Some(lazy)) => g.accumulate(&lazy.into_tensor()),
                // A leaf reached only through its Linear layer: returned unmultiplied.
                (None, Some(lazy)) => {
                    out.map.insert(i, lazy);
                    if self.nodes.borrow()[i].param {
                        self.release(i);
                    }
                    continue;
                }
            };
            // Hooks run with the tape unborrowed, so they may read values and labels.
            if hooks && self.requires_grad(i) {
                if let Some(r) = self.run_hooks(i, &g) {
                    g = r;
                }
            }
            if let Some(f) = on_leaf.as_deref_mut() {
                let mut nodes = self.nodes.borrow_mut();
                let node = &mut nodes[i];
                if node.requires_grad && matches!(node.op, Op::Leaf) {
                    // Taken out, so that the tape's reference does not make the value shared
                    // (an optimiser then updates the parameter's buffer where it lies).
                    let value = std::mem::replace(&mut node.value, Tensor::zeros(&[0]));
                    drop(nodes);
                    let value = f(i, g, value);
                    self.nodes.borrow_mut()[i].value = value;
                    continue;
                }
            }
            if stale {
                let parents = self.nodes.borrow()[i].parents.clone();
                parents.iter().for_each(|&p| self.restore(p));
            }
            let nodes = self.nodes.borrow();
            let node = &nodes[i];
            if !node.requires_grad {
                continue;
            }
            if Self::keeps(i, &node.op, &retained) {
                out.map.insert(i, LazyGrad::dense(g.clone()));
            }
            if node.parents.is_empty() {
                if node.param {
                    drop(nodes);
                    self.release(i);
                }
                continue;
            }
            // Inputs borrowed, not cloned: a clone per input is a reference-count round trip.
            // Both lists filled by one loop of pushes rather than two `collect`s (SmallVec's
            // generic `extend`): 3% of the 1×1 chain's time per op.
            let mut needs = SmallVec::<[bool; 2]>::new();
            let mut inputs = SmallVec::<[&Tensor<T>; 2]>::new();
            for &p in &node.parents {
                needs.push(nodes[p].requires_grad);
                inputs.push(&nodes[p].value);
            }
            if may_defer && matches!(node.op, Op::Linear) && needs[1] {
                let w = node.parents[1];
                if let std::collections::hash_map::Entry::Vacant(slot) = deferred.entry(w) {
                    if let Some(lazy) = Self::defer_weight(&nodes[w], &inputs, &g) {
                        slot.insert(lazy);
                        needs[1] = false;
                    }
                }
            }
            let grads = ops::backward(&node.op, &inputs, &node.value, &g, &needs);
            // The node's own gradient is no longer needed: free it before accumulating, so an
            // input gradient that shared its buffer can be updated in place.
            drop(g);
            self.scatter(&nodes, i, grads, &mut pending, anomaly);
        }
        out
    }

    /// Adds each parent's gradient contribution into its pending slot: the first contribution is
    /// stored as is, later ones are added (in place when the buffer is not shared).
    fn scatter(
        &self,
        nodes: &[Node<T>],
        i: usize,
        grads: InputGrads<Tensor<T>>,
        pending: &mut [Option<Tensor<T>>],
        anomaly: bool,
    ) {
        let parents = &nodes[i].parents;
        for (&p, gp) in parents.iter().zip(grads) {
            let Some(gp) = gp else { continue };
            if anomaly && !gp.all_finite() {
                let shapes = parents
                    .iter()
                    .map(|&q| nodes[q].value.shape().to_vec())
                    .collect();
                self.note_anomaly(Phase::Backward, nodes[i].op.name(), shapes, i);
            }
            pending[p] = Some(match pending[p].take() {
                None => gp,
                Some(prev) => prev.accumulate(&gp),
            });
        }
    }

    /// The reverse sweep on `Var`s: every gradient is itself recorded on this tape.
    fn backward_graph_from<'t>(&'t self, root: usize, seed: Var<'t, T>) -> GraphGradients<'t, T> {
        let _flush = FlushScope::enter();
        let retained = self.retained.borrow().clone();
        let mut pending: Vec<Option<Var<'t, T>>> = vec![None; root + 1];
        pending[root] = Some(seed);
        let mut out = GraphGradients {
            map: IdMap::default(),
            tape: self,
        };
        for i in (0..=root).rev() {
            let Some(mut g) = pending[i].take() else {
                continue;
            };
            let (op, parents, rg) = {
                let nodes = self.nodes.borrow();
                let n = &nodes[i];
                (n.op.clone(), n.parents.clone(), n.requires_grad)
            };
            if !rg {
                continue;
            }
            if self.has_hooks() {
                // Hooks see values; a replacement enters the graph as a constant.
                if let Some(r) = self.run_hooks(i, &g.value()) {
                    g = self.constant(r);
                }
            }
            if Self::keeps(i, &op, &retained) {
                out.map.insert(i, g);
            }
            if parents.is_empty() {
                continue;
            }
            let needs: SmallVec<[bool; 2]> =
                parents.iter().map(|&p| self.requires_grad(p)).collect();
            let inputs: SmallVec<[Var<'_, T>; 2]> =
                parents.iter().map(|&p| Var { tape: self, id: p }).collect();
            let refs: SmallVec<[&Var<'_, T>; 2]> = inputs.iter().collect();
            let y = Var { tape: self, id: i };
            let grads = ops::backward(&op, &refs, &y, &g, &needs);
            for (&p, gp) in parents.iter().zip(grads) {
                let Some(gp) = gp else { continue };
                pending[p] = Some(match pending[p] {
                    None => gp,
                    Some(prev) => prev + gp,
                });
            }
        }
        out
    }
}

/// A handle to a node on a [`Tape`]: `Copy`, so it can be used in expressions freely.
///
/// Arithmetic operators (`+ - * /`, unary `-`, and the same with a scalar on the right) record
/// ops, broadcasting NumPy-style. The rest of the ops are methods, each documenting its
/// derivative.
///
/// # Panics
/// Every op panics if its operands come from two different tapes.
#[derive(Clone, Copy)]
pub struct Var<'t, T: Element> {
    pub(crate) tape: &'t Tape<T>,
    pub(crate) id: usize,
}

impl<T: Element> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tape.restore(self.id);
        let nodes = self.tape.nodes.borrow();
        let n = &nodes[self.id];
        write!(
            f,
            "Var#{} {} {:?}{}",
            self.id,
            n.op.name(),
            n.value.shape(),
            if n.requires_grad { " (grad)" } else { "" }
        )
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// The tape this variable lives on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The node's index on its tape (stable for the tape's lifetime).
    pub fn id(&self) -> usize {
        self.id
    }

    /// The forward value (cheap: shares storage with the tape).
    ///
    /// # Panics
    /// If this is a model parameter's leaf whose value a backward sweep handed back to the
    /// model and an optimiser step has since changed (or the model dropped it): the tape no
    /// longer has the value it recorded. Read parameters from the model instead.
    #[track_caller]
    pub fn value(&self) -> Tensor<T> {
        self.tape.value(self.id)
    }

    /// The value, borrowed from the tape (see [`Tape::value_ref`]): built-in ops compute their
    /// forward from it.
    pub(crate) fn value_ref(&self) -> Ref<'t, Tensor<T>> {
        self.tape.value_ref(self.id)
    }

    /// The value's shape.
    pub fn shape(&self) -> Shape {
        self.tape.shape(self.id)
    }

    /// Whether a gradient will flow to this variable.
    pub fn requires_grad(&self) -> bool {
        self.tape.requires_grad(self.id)
    }

    /// A constant holding the same value: gradients stop here.
    pub fn detach(self) -> Var<'t, T> {
        self.tape.constant(self.value())
    }

    /// Attaches a name to this node: anomalies report it, and tape-level hooks
    /// ([`Tape::on_labelled_grad`]) observe labelled nodes. `nn` layers label their outputs with
    /// their dotted names. Returns `self` for chaining.
    pub fn label(self, name: &str) -> Var<'t, T> {
        self.tape
            .labels
            .borrow_mut()
            .insert(self.id, Arc::from(name));
        self
    }

    /// The label attached with [`Var::label`], if any.
    pub fn label_of(&self) -> Option<String> {
        self.tape
            .labels
            .borrow()
            .get(&self.id)
            .map(|s| s.to_string())
    }

    /// Labels this node as [`label`](Var::label) does and attaches `kind`, what the labeller
    /// says the node is. The engine stores the kind and never reads it; observers of the tape
    /// read it back with [`Tape::labelled_nodes`]. A later plain `label` renames the node and
    /// keeps the kind.
    pub(crate) fn label_as<K: Any>(self, name: &str, kind: K) -> Var<'t, T> {
        self.tape
            .label_kinds
            .borrow_mut()
            .insert(self.id, Box::new(kind));
        self.label(name)
    }

    /// Keeps this intermediate node's gradient in the result of backward (PyTorch's
    /// `retain_grad`). Leaves are always kept.
    pub fn retain_grad(self) -> Var<'t, T> {
        self.tape.retained.borrow_mut().push(self.id);
        self
    }

    /// Registers a hook called once per backward sweep with this variable's complete gradient.
    /// Returning `Some(replacement)` makes the replacement flow on instead (it must have the same
    /// shape); `None` leaves the gradient as it is. Several hooks on one variable run in
    /// registration order, each seeing the gradient the previous one left. Under
    /// [`backward_graph`](Var::backward_graph) a replacement enters the graph as a constant.
    ///
    /// Hooks must not record new ops on the tape while they run.
    ///
    /// # Example
    /// ```
    /// use vgrad::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::vector(&[1.0, 2.0]));
    /// let h = x * 3.0;
    /// h.register_hook(|g| Some(g.scale(10.0))); // scale the gradient flowing through h
    /// let g = h.sum().backward();
    /// assert_eq!(g.wrt(x).unwrap().data(), &[30.0, 30.0]);
    /// ```
    pub fn register_hook(
        &self,
        f: impl FnMut(&Tensor<T>) -> Option<Tensor<T>> + 'static,
    ) -> HookHandle {
        let mut h = self.tape.hooks.borrow_mut();
        let serial = h.serial();
        h.per_node
            .entry(self.id)
            .or_default()
            .push((serial, Box::new(f)));
        HookHandle {
            node: self.id,
            serial,
        }
    }

    /// Reverse-mode gradient of this scalar with respect to every leaf (and every node marked with
    /// [`retain_grad`](Var::retain_grad)). Intermediate gradients are dropped as soon as used.
    ///
    /// # Panics
    /// If this variable holds more than one element (use [`backward_with`](Var::backward_with)),
    /// or an [`Optimizer::backward_step`](crate::nn::Optimizer::backward_step) has already
    /// swept this tape (PyTorch raises on a second backward through a freed graph).
    #[track_caller]
    pub fn backward(self) -> Gradients<'t, T> {
        let shape = self.shape();
        assert!(
            shape.iter().product::<usize>() == 1,
            "backward: output of shape {shape:?} is not a scalar; use backward_with and a seed gradient"
        );
        self.backward_with(Tensor::ones(&shape))
    }

    /// Reverse-mode gradients given the gradient of some downstream scalar with respect to this
    /// variable (the "seed", PyTorch's `grad_outputs`).
    ///
    /// # Panics
    /// If the seed's shape differs from this variable's, or the tape was consumed (see
    /// [`backward`](Var::backward)).
    #[track_caller]
    pub fn backward_with(self, seed: Tensor<T>) -> Gradients<'t, T> {
        self.tape.assert_not_consumed("backward");
        let shape = self.shape();
        assert!(
            seed.shape() == shape.as_slice(),
            "backward: seed of shape {:?} for an output of shape {shape:?}",
            seed.shape()
        );
        self.tape.backward_values(self.id, seed, None)
    }

    /// Backward from this scalar, handing each leaf's gradient to `f` as soon as it is complete
    /// (with the leaf's value, taken out of the tape; `f` returns the value to put back) instead
    /// of collecting the gradients: the sweep behind [`Optimizer::backward_step`].
    ///
    /// # Panics
    /// If this variable holds more than one element.
    ///
    /// [`Optimizer::backward_step`]: crate::nn::Optimizer::backward_step
    ///
    /// # Errors
    /// [`Error::State`](crate::Error::State) if a sweep like this one already ran on the tape;
    /// nothing is called then.
    #[track_caller]
    pub(crate) fn backward_leaves(self, f: &mut LeafFn<'_, T>) -> crate::Result<()> {
        let shape = self.shape();
        assert!(
            shape.iter().product::<usize>() == 1,
            "backward_step: loss of shape {shape:?} is not a scalar"
        );
        self.tape.check_not_consumed("backward_step")?;
        self.tape.consumed.set(true);
        self.tape
            .backward_values(self.id, Tensor::ones(&shape), Some(f));
        Ok(())
    }

    /// Like [`backward`](Var::backward), but every gradient is recorded on the tape as a `Var`
    /// that can itself be differentiated (PyTorch's `create_graph=True`): Hessian-vector
    /// products, gradient penalties, curvature estimates.
    ///
    /// # Panics
    /// If this variable holds more than one element, or the tape was consumed (see
    /// [`backward`](Var::backward)).
    ///
    /// # Example
    /// ```
    /// use vgrad::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(2.0));
    /// let y = x * x * x; // y = x³
    /// let dy = y.backward_graph().wrt(x).unwrap(); // 3x², on the tape
    /// let d2y = dy.backward().wrt(x).unwrap().item(); // 6x
    /// assert!((d2y - 12.0).abs() < 1e-12);
    /// ```
    #[track_caller]
    pub fn backward_graph(self) -> GraphGradients<'t, T> {
        self.tape.assert_not_consumed("backward_graph");
        let shape = self.shape();
        assert!(
            shape.iter().product::<usize>() == 1,
            "backward_graph: output of shape {shape:?} is not a scalar"
        );
        let seed = self.tape.constant(Tensor::ones(&shape));
        self.tape.backward_graph_from(self.id, seed)
    }

    /// Asserts `other` lives on the same tape; every binary op calls this.
    #[track_caller]
    pub(crate) fn same_tape(&self, op: &str, other: &Var<'t, T>) {
        assert!(
            std::ptr::eq(self.tape, other.tape),
            "{op}: the operands belong to two different tapes"
        );
    }

    /// Records `op` applied to `parents` with an already-computed value.
    pub(crate) fn record(&self, op: Op<T>, parents: &[usize], value: Tensor<T>) -> Var<'t, T> {
        self.tape.push(op, parents, value)
    }
}

/// Gradients from [`Var::backward`], keyed by variable.
///
/// They borrow their tape, so they cannot outlive it or survive a [`Tape::reset`]: a node index
/// of a later tape (or of the same tape after a reset) can never be answered with an old
/// step's gradient. The borrow checker refuses it:
///
/// ```compile_fail
/// use vgrad::{Tape, Tensor};
/// let mut tape = Tape::<f32>::new();
/// let old = { let x = tape.leaf(Tensor::scalar(1.0)); (x * x).backward() };
/// tape.reset(); // error: `tape` is still borrowed by `old`
/// let x = tape.leaf(Tensor::scalar(5.0));
/// let _ = old.wrt(x);
/// ```
pub struct Gradients<'t, T: Element> {
    /// Recycled from step to step (see `spare.rs`).
    map: Recycled<usize, LazyGrad<T>, IdBuild>,
    tape: &'t Tape<T>,
}

impl<T: Element> fmt::Debug for Gradients<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.map.keys().collect();
        ids.sort();
        write!(f, "Gradients {{ nodes: {ids:?} }}")
    }
}

impl<'t, T: Element> Gradients<'t, T> {
    fn new(tape: &'t Tape<T>) -> Self {
        Gradients {
            map: Recycled::default(),
            tape,
        }
    }

    /// The gradient with respect to `v`, or `None` if `v` was not reached or is not a leaf
    /// (or a retained node).
    ///
    /// # Panics
    /// If `v` belongs to another tape.
    #[track_caller]
    pub fn wrt(&self, v: Var<'_, T>) -> Option<&Tensor<T>> {
        assert!(
            std::ptr::eq(v.tape, self.tape),
            "wrt: the variable belongs to a different tape than these gradients"
        );
        self.map.get(&v.id).map(LazyGrad::get)
    }

    /// The gradient with respect to `v` as the sweep left it, perhaps not multiplied out yet
    /// (for `Ctx::param_grads`, which hands it on as it is).
    pub(crate) fn lazy(&self, v: Var<'_, T>) -> Option<&LazyGrad<T>> {
        debug_assert!(std::ptr::eq(v.tape, self.tape));
        self.map.get(&v.id)
    }

    /// Removes and returns the gradient with respect to `v` (no copy).
    ///
    /// # Panics
    /// If `v` belongs to another tape.
    #[track_caller]
    pub fn take(&mut self, v: Var<'_, T>) -> Option<Tensor<T>> {
        assert!(
            std::ptr::eq(v.tape, self.tape),
            "take: the variable belongs to a different tape than these gradients"
        );
        self.map.remove(&v.id).map(LazyGrad::into_tensor)
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Gradients from [`Var::backward_graph`]: each is a `Var` on the same tape.
pub struct GraphGradients<'t, T: Element> {
    map: IdMap<Var<'t, T>>,
    tape: &'t Tape<T>,
}

impl<'t, T: Element> GraphGradients<'t, T> {
    /// The gradient with respect to `v` as a differentiable variable.
    ///
    /// # Panics
    /// If `v` belongs to another tape.
    #[track_caller]
    pub fn wrt(&self, v: Var<'t, T>) -> Option<Var<'t, T>> {
        assert!(
            std::ptr::eq(v.tape, self.tape),
            "wrt: the variable belongs to a different tape than these gradients"
        );
        self.map.get(&v.id).copied()
    }
}

/// Backward rules written once against [`Algebra`] run on `Var`s under `create_graph`.
impl<'t, T: Element> Algebra<T> for Var<'t, T> {
    fn shape(&self) -> Shape {
        Var::shape(self)
    }
    fn value(&self) -> Tensor<T> {
        Var::value(self)
    }
    fn lift(&self, t: Tensor<T>) -> Self {
        self.tape.constant(t)
    }
    fn add(&self, o: &Self) -> Self {
        *self + *o
    }
    fn mul(&self, o: &Self) -> Self {
        *self * *o
    }
    fn scale(&self, s: T) -> Self {
        *self * s
    }
    fn add_scalar(&self, s: T) -> Self {
        *self + s
    }
    fn unary(&self, op: &Op<T>) -> Self {
        self.apply_unary(op.clone())
    }
    fn matmul_t(&self, o: &Self, ta: bool, tb: bool) -> Self {
        Var::matmul_t(*self, *o, ta, tb)
    }
    fn sum_to(&self, shape: &[usize]) -> Self {
        Var::sum_to(*self, shape)
    }
    fn broadcast_to(&self, shape: &[usize]) -> Self {
        Var::broadcast_to(*self, shape)
    }
    fn sum_axis(&self, axis: usize, keepdim: bool) -> Self {
        Var::sum_axis(*self, axis, keepdim)
    }
    fn reshape(&self, shape: &[usize]) -> Self {
        Var::reshape(*self, shape)
    }
    fn permute(&self, perm: &[usize]) -> Self {
        Var::permute(*self, perm)
    }
    fn narrow(&self, axis: usize, start: usize, len: usize) -> Self {
        Var::narrow(*self, axis, start, len)
    }
    fn concat(parts: &[Self], axis: usize) -> Self {
        Var::concat(parts, axis)
    }
    fn gather_rows(&self, idx: &Arc<[usize]>) -> Self {
        self.gather_rows_shared(idx.clone())
    }
    fn scatter_add_rows(&self, idx: &Arc<[usize]>, rows: usize) -> Self {
        self.scatter_add_rows_shared(idx.clone(), rows)
    }
    fn pointwise(
        _g: &Self,
        _x: &Self,
        _y: &Self,
        _kernel: impl Fn(T, T, T) -> T + Sync,
        compose: impl FnOnce() -> Self,
    ) -> Self {
        compose()
    }
    fn fork<const N: usize>(
        _kernel: impl FnOnce() -> [Tensor<T>; N],
        compose: impl FnOnce() -> [Self; N],
    ) -> [Self; N] {
        compose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dropped tape frees its nodes newest first, so the buffer pool hands the next tape's
    /// nodes the buffers of the nodes recorded in the same place (the oldest first).
    #[test]
    fn the_next_tape_gets_its_buffers_back_in_recording_order() {
        let x = Tensor::<f64>::ones(&[256]);
        let record = || {
            let tape = Tape::new();
            let v = tape.constant(x.clone());
            let (a, b) = (v.exp(), v.tanh());
            let ptr = |v: Var<'_, f64>| v.value_ref().data().as_ptr();
            (ptr(a), ptr(b))
        };
        let first = record();
        let second = record();
        assert_eq!(second, first, "each node gets its predecessor's buffer");
        assert_ne!(first.0, first.1);
    }

    /// A dropped tape's (emptied) node list is handed to the thread's next tape of the same
    /// element type; a tape of the other type starts with a fresh list.
    #[test]
    fn the_next_tape_reuses_the_dropped_tapes_node_list() {
        let tape = Tape::<f32>::new();
        let mut y = tape.leaf(Tensor::scalar(0.5));
        for _ in 0..300 {
            y = y.sigmoid();
        }
        let cap = tape.nodes.borrow().capacity();
        assert!(cap >= 301);
        drop(tape);
        let other = Tape::<f64>::new();
        assert_eq!(other.nodes.borrow().capacity(), 0, "f64 tape: no f32 list");
        drop(other);
        let again = Tape::<f32>::new();
        assert!(again.is_empty());
        // The f64 tape (capacity 0) was not kept, so the f32 list is still the spare.
        assert_eq!(again.nodes.borrow().capacity(), cap, "recycled");
        let x = again.leaf(Tensor::scalar(2.0f32));
        let g = (x * x).sum().backward();
        assert!((g.wrt(x).unwrap().item() - 4.0).abs() < 1e-6);
    }
}
