//! `Sequential`: children applied in order, named `0`, `1`, ….

use super::module::{fmt_container, Ctx, Module, Visitor, VisitorMut};
use crate::tape::Var;
use crate::tensor::Element;
use std::fmt;

/// Applies its children in order. Children are named by position, so parameters get PyTorch's
/// `nn.Sequential` names: `0.weight`, `2.bias`, ….
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{Activation, Linear, Module, Sequential};
/// let mut rng = StdRng::seed_from_u64(0);
/// let net = Sequential::<f32>::new()
///     .push(Linear::new(2, 8, &mut rng)?)
///     .push(Activation::Relu)
///     .push(Linear::new(8, 1, &mut rng)?);
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// assert_eq!(net.num_parameters(), 2 * 8 + 8 + 8 + 1);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Sequential<T: Element> {
    children: Vec<Box<dyn Module<T>>>,
    // "0", "1", …: made once, not formatted three times per child per training step (forward,
    // the optimiser's shape check and its update each walk the children by name).
    names: Vec<String>,
}

impl<T: Element> Sequential<T> {
    /// An empty sequence (the identity).
    pub fn new() -> Self {
        Sequential {
            children: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Appends a child; returns `self` for chaining.
    pub fn push(mut self, m: impl Module<T> + 'static) -> Self {
        self.push_boxed(Box::new(m));
        self
    }

    /// Appends an already boxed child.
    pub fn push_boxed(&mut self, m: Box<dyn Module<T>>) {
        self.names.push(self.children.len().to_string());
        self.children.push(m);
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True when there are no children.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The children in order.
    pub fn children(&self) -> &[Box<dyn Module<T>>] {
        &self.children
    }

    /// Mutable access to the children.
    pub fn children_mut(&mut self) -> &mut [Box<dyn Module<T>>] {
        &mut self.children
    }

    /// Child `index` as its concrete type `M`, or `None` when there is no such child or it is
    /// another type (PyTorch's `model[index]`, typed).
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{Activation, Linear, Sequential};
    /// let mut rng = vgrad::seeded_rng(0);
    /// let net = Sequential::<f32>::new()
    ///     .push(Linear::new(2, 8, &mut rng)?)
    ///     .push(Activation::Relu);
    /// let first: &Linear<f32> = net.get(0).expect("a Linear");
    /// assert_eq!(first.out_features(), 8);
    /// assert!(net.get::<Linear<f32>>(1).is_none()); // an Activation
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn get<M: Module<T> + 'static>(&self, index: usize) -> Option<&M> {
        self.children.get(index)?.as_any().downcast_ref()
    }

    /// Child `index` as its concrete type, mutably; see [`get`](Sequential::get).
    pub fn get_mut<M: Module<T> + 'static>(&mut self, index: usize) -> Option<&mut M> {
        self.children.get_mut(index)?.as_any_mut().downcast_mut()
    }
}

impl<T: Element> Module<T> for Sequential<T> {
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let mut h = x;
        for (name, c) in self.names.iter().zip(&mut self.children) {
            h = ctx.scoped(name, |ctx| c.forward(ctx, h));
        }
        h
    }

    fn visit(&self, v: &mut dyn Visitor<T>) {
        for (name, c) in self.names.iter().zip(&self.children) {
            v.enter(name);
            c.visit(v);
            v.exit();
        }
    }

    fn visit_mut(&mut self, v: &mut dyn VisitorMut<T>) {
        for (name, c) in self.names.iter().zip(&mut self.children) {
            v.enter(name);
            c.visit_mut(v);
            v.exit();
        }
    }

    fn set_training(&mut self, training: bool) {
        for c in &mut self.children {
            c.set_training(training);
        }
    }
}

impl<T: Element> fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<(String, &dyn fmt::Debug)> = self
            .names
            .iter()
            .cloned()
            .zip(self.children.iter().map(|c| c as &dyn fmt::Debug))
            .collect();
        fmt_container(f, "Sequential", &kids)
    }
}
