//! The step every optimiser shares: the shape check that makes a failed step change nothing,
//! the visitor that hands each parameter and its gradient to the optimiser's update rule
//! (in place when the parameter's buffer is not shared), the fused step inside backward, and
//! the update statistics. Each optimiser contributes only its rule: a closure over its
//! hyperparameters and state, returned by its `parts` method.

use super::groups::{GroupHyper, Groups};
use super::UpdateStat;
use crate::error::{Error, Result};
use crate::hash::FastIdMap;
use crate::nn::module::{Ctx, DottedPath, Module, Param, ParamGrads, ParamId, Visitor, VisitorMut};
use crate::tape::Var;
use crate::tensor::simd::FlushScope;
use crate::tensor::update::add_scaled_product_t;
use crate::tensor::{norm_l2_f64, Element, Tensor};

/// An optimiser's update of one parameter: given its id, its group's changes to the
/// hyperparameters and its gradient, overwrite θ with the new value and update the state.
pub(super) trait Rule<T>: FnMut(ParamId, GroupHyper, &mut [T], &[T]) {}

impl<T, F: FnMut(ParamId, GroupHyper, &mut [T], &[T])> Rule<T> for F {}

/// What an optimiser's `parts` returns: where a step records its statistics, the parameter
/// groups, and the update rule (see [`apply`]) at the current hyperparameters.
pub(super) type Parts<'a, F> = (&'a mut Tracker, &'a Groups, F);

/// Update statistics, recorded only when switched on.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    on: bool,
    stats: Vec<UpdateStat>,
}

impl Tracker {
    /// [`Optimizer::track_updates`](super::Optimizer::track_updates): switches recording on or
    /// off and forgets the last step's statistics.
    pub(super) fn switch(&mut self, on: bool) {
        self.on = on;
        self.stats.clear();
    }

    /// The last step's statistics ([`Optimizer::last_updates`](super::Optimizer::last_updates)).
    pub(super) fn stats(&self) -> &[UpdateStat] {
        &self.stats
    }
}

/// Finds the first gradient whose shape differs from its parameter's.
struct ShapeCheck<'a, T: Element> {
    grads: &'a ParamGrads<T>,
    path: DottedPath,
    error: Option<Error>,
}

impl<T: Element> Visitor<T> for ShapeCheck<'_, T> {
    fn enter(&mut self, name: &str) {
        self.path.enter(name);
    }
    fn exit(&mut self) {
        self.path.exit();
    }
    fn param(&mut self, name: &str, p: &Param<T>) {
        if self.error.is_some() {
            return;
        }
        // The shape without forming a wide Linear weight's product (see `lazy.rs`).
        if let Some(g) = self.grads.lazy_id(p.id()) {
            if g.shape() != p.value().shape() {
                self.error = Some(Error::Shape(format!(
                    "optimiser step: gradient of shape {:?} for parameter `{}` of shape {:?}",
                    g.shape(),
                    self.path.full(name),
                    p.value().shape()
                )));
            }
        }
    }
}

/// Applies `update(id, θ, g)` to every parameter with a gradient: `update` overwrites θ with its
/// new value and updates the optimiser's state for `id`. A parameter whose buffer nothing else
/// shares (its tape already dropped) is updated where it lies: one memory stream fewer than
/// writing a new buffer, and nothing allocated. A shared buffer, or a step that records
/// statistics for the monitor (they need the old value), updates a copy instead; the arithmetic
/// is the same either way.
struct Apply<'a, T: Element, F> {
    grads: &'a ParamGrads<T>,
    update: F,
    linear: Option<&'a Linear>,
    tracker: &'a mut Tracker,
    groups: &'a Groups,
    path: DottedPath,
}

impl<T: Element, F: FnMut(ParamId, GroupHyper, &mut [T], &[T])> VisitorMut<T> for Apply<'_, T, F> {
    fn enter(&mut self, name: &str) {
        // Names are only needed for the statistics and the parameter groups.
        if self.tracker.on || self.groups.any() {
            self.path.enter(name);
        }
    }
    fn exit(&mut self) {
        if self.tracker.on || self.groups.any() {
            self.path.exit();
        }
    }
    fn param(&mut self, name: &str, p: &mut Param<T>) {
        let Some(g) = self.grads.lazy_id(p.id()) else {
            return;
        };
        let path = &self.path;
        let hyper = if self.groups.any() {
            self.groups.of(&path.full(name))
        } else {
            GroupHyper::default()
        };
        // A wide Linear weight's gradient, kept as its factors: plain SGD adds −lr·Gᵀ·X to the
        // weight in one product; any other rule gets it formed into a recycled buffer.
        if let (Some((gf, xf)), false) = (g.factors(), self.tracker.on) {
            if let Some(alpha) = self.linear.and_then(|f| f(hyper)) {
                p.value_mut()
                    .update_in_place(|theta| add_scaled_product_t(theta, gf, xf, T::of(alpha)));
                return;
            }
        }
        g.with_data(|g| {
            update_tensor(
                p.id(),
                hyper,
                p.value_mut(),
                g,
                || path.full(name),
                self.tracker,
                &mut self.update,
            )
        });
    }
}

/// Updates one parameter's value `theta` with `update` (see [`Apply`]): where it lies when its
/// buffer is not shared and no statistics are recorded, else into a copy that replaces it.
/// `name` is called only for the statistics.
fn update_tensor<T: Element>(
    id: ParamId,
    hyper: GroupHyper,
    theta: &mut Tensor<T>,
    g: &[T],
    name: impl FnOnce() -> String,
    tracker: &mut Tracker,
    update: &mut impl FnMut(ParamId, GroupHyper, &mut [T], &[T]),
) {
    if !tracker.on {
        theta.update_in_place(|data| update(id, hyper, data, g));
        return;
    }
    // Holding the old value shares the buffer, so the update writes a copy.
    let old = theta.clone();
    theta.update_in_place(|data| update(id, hyper, data, g));
    let to64 = |x: &T| x.to_f64().unwrap_or(f64::NAN);
    let delta = old
        .data()
        .iter()
        .zip(theta.data())
        .map(|(a, b)| to64(b) - to64(a));
    tracker.stats.push(UpdateStat {
        name: name(),
        id,
        update_norm: norm_l2_f64(delta),
        param_norm: old.norm_l2(),
    });
}

/// The step every optimiser shares: check shapes (so an error leaves everything untouched),
/// then apply `update` parameter by parameter (see [`Apply`]). The rules run their loops inside
/// [`vectorized`](crate::tensor::update::vectorized) over slices: written with per-element `push`
/// outside it, momentum SGD and Adam ran scalar, 27x and 48x plain SGD's time.
pub(super) fn apply<T: Element>(
    model: &mut dyn Module<T>,
    grads: &ParamGrads<T>,
    tracker: &mut Tracker,
    groups: &Groups,
    update: impl FnMut(ParamId, GroupHyper, &mut [T], &[T]),
) -> Result<()> {
    apply_linear(model, grads, tracker, groups, update, None)
}

/// For a rule whose whole update is `θ ← θ + α·g` (plain SGD): α for a parameter in a group,
/// or `None` where that group's update is anything else (weight decay).
pub(super) type Linear = dyn Fn(GroupHyper) -> Option<f64>;

/// [`apply`] for a rule that is, in some groups, `θ ← θ + α·g` (see [`Linear`]): a gradient
/// kept as factors (`lazy.rs`) is then added to the weight as a product, never formed.
pub(super) fn apply_linear<T: Element>(
    model: &mut dyn Module<T>,
    grads: &ParamGrads<T>,
    tracker: &mut Tracker,
    groups: &Groups,
    update: impl FnMut(ParamId, GroupHyper, &mut [T], &[T]),
    linear: Option<&Linear>,
) -> Result<()> {
    // Subnormals flushed while updating (see `vgrad::set_flush_denormal`).
    let _flush = FlushScope::enter();
    let mut check = ShapeCheck {
        grads,
        path: DottedPath::default(),
        error: None,
    };
    model.visit(&mut check);
    if let Some(e) = check.error {
        return Err(e);
    }
    tracker.stats.clear();
    model.visit_mut(&mut Apply {
        grads,
        update,
        linear,
        tracker,
        groups,
        path: DottedPath::default(),
    });
    Ok(())
}

/// The fused step behind [`Optimizer::backward_step`]: backward from `loss`, applying `update`
/// to each parameter of `model` bound in `ctx` as soon as the sweep completes its gradient.
///
/// While the sweep runs, the parameters' values are held here (the model keeps empty
/// placeholders, restored by [`Held`]'s `drop` even if a rule or hook panics) and the tape hands
/// over its reference to each leaf's value before the update: the parameter's buffer is then
/// not shared, and the rule updates it where it lies. The tape's leaf gets the updated value
/// back, as a PyTorch parameter shows its new value after `step()`.
#[track_caller]
pub(super) fn apply_in_backward<'t, T: Element>(
    model: &mut dyn Module<T>,
    ctx: &Ctx<'t, T>,
    loss: Var<'t, T>,
    tracker: &mut Tracker,
    groups: &Groups,
    mut update: impl FnMut(ParamId, GroupHyper, &mut [T], &[T]),
) -> Result<()> {
    // Subnormals flushed while updating (see `vgrad::set_flush_denormal`).
    let _flush = FlushScope::enter();
    tracker.stats.clear();
    let leaves: FastIdMap<usize, ParamId> =
        ctx.leaves().map(|(leaf, (id, _))| (leaf, id)).collect();
    // The names `step` would see: the model's own paths, not the ones the forward pass was
    // recorded under (`Ctx::scoped` may have prefixed those).
    let names_needed = tracker.on || groups.any();
    let mut held = Held::take(model, leaves.values().copied(), names_needed);
    let swept = loss.backward_leaves(&mut |leaf, grad, value| {
        let Some(&id) = leaves.get(&leaf) else {
            return value;
        };
        let Some(Some(theta)) = held.values.get_mut(&id) else {
            // Bound in `ctx` but not a parameter of `model`: its gradient is dropped.
            return value;
        };
        drop(value);
        let name = held.names.get(&id).map_or("", String::as_str);
        update_tensor(
            id,
            groups.of(name),
            theta,
            grad.data(),
            || name.to_string(),
            tracker,
            &mut update,
        );
        theta.clone()
    });
    swept
}

/// Parameter values taken out of a model for [`apply_in_backward`], put back on drop.
struct Held<'m, T: Element> {
    model: &'m mut dyn Module<T>,
    /// `Some` for each parameter taken out, `None` for an id the model does not have.
    values: FastIdMap<ParamId, Option<Tensor<T>>>,
    /// Each taken parameter's dotted name in the model (as `step` sees it), when `names` was
    /// asked for.
    names: FastIdMap<ParamId, String>,
}

impl<'m, T: Element> Held<'m, T> {
    fn take(model: &'m mut dyn Module<T>, ids: impl Iterator<Item = ParamId>, names: bool) -> Self {
        let mut held = Held {
            model,
            values: ids.map(|id| (id, None)).collect(),
            names: FastIdMap::default(),
        };
        held.model.visit_mut(&mut Swap {
            values: &mut held.values,
            names: names.then_some(&mut held.names),
            path: DottedPath::default(),
            out: true,
        });
        held
    }
}

impl<T: Element> Drop for Held<'_, T> {
    fn drop(&mut self) {
        self.model.visit_mut(&mut Swap {
            values: &mut self.values,
            names: None,
            path: DottedPath::default(),
            out: false,
        });
    }
}

/// Moves the listed parameters' values out of a model (`out`, leaving empty placeholders) or
/// back into it.
struct Swap<'a, T: Element> {
    values: &'a mut FastIdMap<ParamId, Option<Tensor<T>>>,
    /// Where to record the dotted names of the parameters moved out, if anywhere.
    names: Option<&'a mut FastIdMap<ParamId, String>>,
    path: DottedPath,
    out: bool,
}

impl<T: Element> VisitorMut<T> for Swap<'_, T> {
    fn enter(&mut self, name: &str) {
        if self.names.is_some() {
            self.path.enter(name);
        }
    }
    fn exit(&mut self) {
        if self.names.is_some() {
            self.path.exit();
        }
    }
    fn param(&mut self, name: &str, p: &mut Param<T>) {
        let Some(slot) = self.values.get_mut(&p.id()) else {
            return;
        };
        if self.out {
            *slot = Some(std::mem::replace(p.value_mut(), Tensor::zeros(&[0])));
            if let Some(names) = &mut self.names {
                names.insert(p.id(), self.path.full(name));
            }
        } else if let Some(v) = slot.take() {
            *p.value_mut() = v;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Elementwise maths the rules share.

#[inline(always)]
pub(super) fn decayed<T: Element>(p: T, g: T, wd: T, on: bool) -> T {
    if on {
        g + wd * p
    } else {
        g
    }
}

/// PyTorch's CPU `lerp(a, b, w)`: two formulas, each exact at its own end.
#[inline]
pub(super) fn lerp<T: Element>(a: T, b: T, w: T, half: T) -> T {
    if w < half {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}
