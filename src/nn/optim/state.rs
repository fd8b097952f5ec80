//! Saving and loading an optimiser's state: [`OptimizerState`], and the shared half of every
//! optimiser's `state_dict` and `load_state_dict` (each optimiser names its hyperparameters and
//! buffers; this file maps them onto the model's parameter names and checks what comes back).

use super::check_lr;
use super::groups::Groups;
use crate::error::{Error, Result};
use crate::hash::FastIdMap;
use crate::nn::module::{DottedPath, Module, Param, ParamId, Visitor};
use crate::tensor::{Element, Tensor};
use std::collections::{BTreeMap, BTreeSet};

/// An optimiser's state in a form that can be saved and loaded: see
/// [`Optimizer::state_dict`](super::Optimizer::state_dict), and [`save_optimizer`](crate::nn::save_optimizer) for the file.
///
/// Names follow PyTorch's: the optimiser's class name, its hyperparameters (except that
/// Adam's `betas` pair is stored as `beta1` and `beta2`), and its buffers (`momentum_buffer`,
/// `exp_avg`, `exp_avg_sq`, `square_avg`, `grad_avg`), each stored under
/// `<parameter>.<buffer>` (for example `0.weight.exp_avg`) with its parameter's shape.
#[derive(Clone, Debug)]
pub struct OptimizerState<T: Element> {
    /// The optimiser that wrote it: `SGD`, `Adam`, `AdamW` or `RMSprop`.
    pub kind: String,
    /// Hyperparameters by name (`lr`, `momentum`, `beta1`, `beta2`, …); switches
    /// (`nesterov`, `centered`) as 0 or 1; `group1.lr`, `group2.lr`, … the current rates of
    /// the parameter groups with their own ([`Optimizer::group_lrs`](super::Optimizer::group_lrs) after the first).
    pub hyper: BTreeMap<String, f64>,
    /// Per-parameter buffers under `<parameter>.<buffer>`.
    pub buffers: BTreeMap<String, Tensor<T>>,
    /// Per-parameter step counts by parameter name (Adam and AdamW, whose bias correction
    /// depends on them).
    pub steps: BTreeMap<String, u64>,
}

/// One of `model`'s parameters as the state maps see it.
struct NamedParam {
    name: String,
    id: ParamId,
    shape: Vec<usize>,
}

/// `model`'s parameters in visiting order.
///
/// # Errors
/// [`Error::Format`] if two share a name (their state could not be told apart in a file).
fn named_params<T: Element>(model: &dyn Module<T>) -> Result<Vec<NamedParam>> {
    struct Collect(DottedPath, Vec<NamedParam>);
    impl<T: Element> Visitor<T> for Collect {
        fn enter(&mut self, name: &str) {
            self.0.enter(name);
        }
        fn exit(&mut self) {
            self.0.exit();
        }
        fn param(&mut self, name: &str, p: &Param<T>) {
            self.1.push(NamedParam {
                name: self.0.full(name),
                id: p.id(),
                shape: p.value().shape().to_vec(),
            });
        }
    }
    let mut c = Collect(DottedPath::default(), Vec::new());
    model.visit(&mut c);
    let mut seen = BTreeSet::new();
    for p in &c.1 {
        if !seen.insert(p.name.as_str()) {
            return Err(Error::Format(format!(
                "the model has two parameters named `{}`",
                p.name
            )));
        }
    }
    Ok(c.1)
}

/// The name under which the state keeps the current rate of the `k`-th group with its own
/// rate (`k` from 1, as in [`Optimizer::group_lrs`](super::Optimizer::group_lrs), whose entry 0 is `lr`).
fn group_lr_key(k: usize) -> String {
    format!("group{k}.lr")
}

/// Builds an [`OptimizerState`]: the hyperparameters, the current rate of each group with its
/// own (`group<k>.lr`, PyTorch keeping each `param_groups[k]["lr"]`), and what `of(id)` lists:
/// the buffers a parameter has under the optimiser's configuration and its step count, or
/// `None` when it has no state yet.
pub(super) fn export_state<'s, T: Element>(
    kind: &str,
    hyper: &[(&str, f64)],
    groups: &Groups,
    model: &dyn Module<T>,
    of: impl Fn(ParamId) -> Option<(Vec<(&'static str, &'s [T])>, Option<u64>)>,
) -> Result<OptimizerState<T>> {
    let own = groups.own_lrs().enumerate();
    let mut state = OptimizerState {
        kind: kind.to_string(),
        hyper: hyper
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .chain(own.map(|(i, lr)| (group_lr_key(i + 1), lr)))
            .collect(),
        buffers: BTreeMap::new(),
        steps: BTreeMap::new(),
    };
    for p in named_params(model)? {
        let Some((buffers, step)) = of(p.id) else {
            continue;
        };
        for (buffer, data) in buffers {
            let t = Tensor::from_vec(data.to_vec(), &p.shape)?;
            state.buffers.insert(format!("{}.{buffer}", p.name), t);
        }
        if let Some(step) = step {
            state.steps.insert(p.name, step);
        }
    }
    Ok(state)
}

/// Each parameter's state read back from an [`OptimizerState`], with its name.
pub(super) type ImportedParams<T> = FastIdMap<ParamId, (String, Imported<T>)>;

/// A parameter's state as read back from an [`OptimizerState`].
pub(super) struct Imported<T> {
    buffers: BTreeMap<&'static str, Vec<T>>,
    pub(super) step: Option<u64>,
}

impl<T> Imported<T> {
    /// The buffer's data, if the state has one of that name.
    pub(super) fn take(&mut self, buffer: &str) -> Option<Vec<T>> {
        self.buffers.remove(buffer)
    }
}

/// What [`import_state`] reads back: the hyperparameters by name, each parameter's state,
/// and the current rates of the groups with their own (checked; for [`Groups::set_own_lrs`]).
pub(super) type ImportedState<'s, T> = (Box<dyn Fn(&str) -> f64 + 's>, ImportedParams<T>, Vec<f64>);

/// Checks `state` against the optimiser (`kind`, the names of its hyperparameters and
/// buffers, its groups with their own rate) and `model`, and returns what it holds (see
/// [`ImportedState`]). Step counts are allowed only when `with_steps`.
pub(super) fn import_state<'s, T: Element>(
    state: &'s OptimizerState<T>,
    kind: &str,
    hyper: &[&str],
    groups: &Groups,
    buffers: &[&'static str],
    with_steps: bool,
    model: &dyn Module<T>,
) -> Result<ImportedState<'s, T>> {
    let bad = |msg: String| Err(Error::Format(format!("{kind} state: {msg}")));
    if state.kind != kind {
        return bad(format!("written by {}, not {kind}", state.kind));
    }
    let group_keys: Vec<String> = (1..=groups.own_lrs().count()).map(group_lr_key).collect();
    let expected: BTreeSet<&str> = hyper
        .iter()
        .copied()
        .chain(group_keys.iter().map(String::as_str))
        .collect();
    let present: BTreeSet<&str> = state.hyper.keys().map(String::as_str).collect();
    if expected != present {
        return bad(format!(
            "hyperparameters {present:?}, expected {expected:?}"
        ));
    }
    let params = named_params(model)?;
    let by_name: BTreeMap<&str, &NamedParam> =
        params.iter().map(|p| (p.name.as_str(), p)).collect();
    // The state read so far for one parameter, created on first use.
    fn entry<'o, T>(out: &'o mut ImportedParams<T>, p: &NamedParam) -> &'o mut Imported<T> {
        let fresh = || {
            let empty = Imported {
                buffers: BTreeMap::new(),
                step: None,
            };
            (p.name.clone(), empty)
        };
        &mut out.entry(p.id).or_insert_with(fresh).1
    }
    let mut out: ImportedParams<T> = FastIdMap::default();
    for (key, t) in &state.buffers {
        // Parameter names have dots in them; buffer names do not.
        let found = key.rsplit_once('.').and_then(|(param, buffer)| {
            let buffer = *buffers.iter().find(|&&b| b == buffer)?;
            Some((by_name.get(param)?, buffer))
        });
        let Some((p, buffer)) = found else {
            return bad(format!(
                "`{key}` is not one of the model's parameters followed by one of {buffers:?}"
            ));
        };
        if t.shape() != p.shape.as_slice() {
            return bad(format!(
                "`{key}` has shape {:?}, its parameter {:?}",
                t.shape(),
                p.shape
            ));
        }
        entry(&mut out, p).buffers.insert(buffer, t.to_vec());
    }
    for (name, &step) in &state.steps {
        let Some(p) = by_name.get(name.as_str()).filter(|_| with_steps) else {
            return bad(format!("unexpected step count for `{name}`"));
        };
        entry(&mut out, p).step = Some(step);
    }
    let group_lrs: Vec<f64> = group_keys.iter().map(|k| state.hyper[k]).collect();
    for &lr in &group_lrs {
        check_lr(lr)?;
    }
    let hyper = Box::new(|name: &str| state.hyper[name]);
    Ok((hyper, out, group_lrs))
}

/// A switch stored as a number: 0 or 1.
pub(super) fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// A switch read back from a number, which must be 0 or 1.
pub(super) fn switch(kind: &str, name: &str, x: f64) -> Result<bool> {
    match x {
        0.0 => Ok(false),
        1.0 => Ok(true),
        _ => Err(Error::Format(format!(
            "{kind} state: `{name}` must be 0 or 1, got {x}"
        ))),
    }
}

/// The error for a parameter whose buffers do not fit the optimiser's configuration.
pub(super) fn incomplete<R>(kind: &str, param: &str, needs: &str) -> Result<R> {
    Err(Error::Format(format!(
        "{kind} state: `{param}` needs exactly {needs} with this configuration"
    )))
}
