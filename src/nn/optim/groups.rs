//! Parameter groups: other hyperparameters (learning rate, weight decay) for the parameters
//! whose names a group matches, as PyTorch's `param_groups`.

use super::{check_lr, check_nonneg, lr_count_error};
use crate::error::Result;
use std::fmt;

/// Hyperparameters that differ for some of the parameters: PyTorch's parameter groups, chosen
/// by dotted parameter name. Add them with each optimiser's `with_group`; the first group whose
/// `matches` accepts a parameter's name applies to it, the optimiser's own hyperparameters to
/// every other parameter.
///
/// The usual use is AdamW without weight decay on biases and normalisation weights, or a
/// smaller learning rate for the pretrained layers of a model being fine-tuned.
///
/// A group's learning rate is one of two kinds:
///
/// * Its own, [`lr`](ParamGroup::lr): PyTorch's `{"params": …, "lr": 0.03}`. The group's rate
///   is state of the optimiser, listed by [`Optimizer::group_lrs`](super::Optimizer::group_lrs) and saved by
///   [`Optimizer::state_dict`](super::Optimizer::state_dict). A schedule drives it from its own base rate, as PyTorch's
///   drives each group from its `initial_lr`: an [`LrScheduler`](crate::nn::LrScheduler) sets it
///   to `schedule(group base, t)`, so a cosine with `eta_min` takes every group to the same
///   `eta_min`, and a [`ReduceLrOnPlateau`](crate::nn::ReduceLrOnPlateau) multiplies it by its
///   factor and floors it at the group's `min_lr`. Use this to port a PyTorch recipe.
/// * A multiple of the optimiser's rate, [`lr_scale`](ParamGroup::lr_scale): at every step
///   the group's rate is `m ·` [`Optimizer::lr`](super::Optimizer::lr), whatever set that rate (`set_lr`, a
///   schedule, a plateau). A multiplicative schedule (step, exponential, warm-up, a cosine
///   to 0) then gives the same rates as a group with its own rate `m ·` base; a schedule with
///   a floor does not: a cosine to `eta_min` takes this group to `m · eta_min`, and a
///   plateau's `min_lr` bounds the optimiser's rate, so this group's bottoms out at
///   `m · min_lr`. Unlike a PyTorch group, `lr_scale(0.0)` stays frozen under such a schedule.
///
/// A group that sets neither follows the optimiser's rate (a multiple of 1), which under
/// every schedule is the rate a PyTorch group with the optimiser's base rate gets.
///
/// A parameter's group is looked up by its name at each step, so it follows the model's
/// current structure (a model wrapped in another container between steps gets new names).
///
/// The groups themselves are code, not state: [`Optimizer::state_dict`](super::Optimizer::state_dict) saves the optimiser's
/// own hyperparameters and the current rate of each group with its own, and a loaded
/// optimiser keeps the groups it was built with (it must have been built with as many groups
/// with their own rate).
///
/// # Example
/// ```
/// use vgrad::nn::{AdamW, AdamWConfig, Optimizer, ParamGroup};
/// let no_decay = ParamGroup::matching(|name| name.ends_with("bias")).weight_decay(0.0);
/// let head = ParamGroup::matching(|name| name.starts_with("head.")).lr(3e-3);
/// let opt = AdamW::<f32>::new(AdamWConfig::default())?
///     .with_group(no_decay)?
///     .with_group(head)?;
/// assert_eq!(opt.group_lrs(), [1e-3, 3e-3]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone)]
pub struct ParamGroup {
    matches: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
    hyper: GroupHyper,
}

impl ParamGroup {
    /// The parameters whose dotted name (`0.weight`, `blocks.3.bn.bias`) `matches` accepts,
    /// with the optimiser's hyperparameters until changed below.
    pub fn matching(matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        ParamGroup {
            matches: std::sync::Arc::new(matches),
            hyper: GroupHyper::default(),
        }
    }

    /// Their learning rate is `lr`, the group's own: its base rate for a schedule, which then
    /// drives it as PyTorch drives a parameter group's (see [`ParamGroup`]). Replaces an
    /// earlier [`lr_scale`](Self::lr_scale).
    pub fn lr(mut self, lr: f64) -> Self {
        self.hyper.lr = GroupLr::Own(lr);
        self
    }

    /// Their learning rate is the optimiser's current rate times `scale` (default 1), at every
    /// step: under a schedule with a floor it bottoms out at `scale ·` the floor (see
    /// [`ParamGroup`]). Replaces an earlier [`lr`](Self::lr).
    pub fn lr_scale(mut self, scale: f64) -> Self {
        self.hyper.lr = GroupLr::Scale(scale);
        self
    }

    /// Their weight decay is `weight_decay` instead of the optimiser's (L2 for SGD, Adam and
    /// RMSprop, decoupled for AdamW).
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.hyper.weight_decay = Some(weight_decay);
        self
    }
}

impl fmt::Debug for ParamGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ParamGroup");
        match self.hyper.lr {
            GroupLr::Scale(m) => d.field("lr_scale", &m),
            GroupLr::Own(lr) => d.field("lr", &lr),
        };
        d.field("weight_decay", &self.hyper.weight_decay)
            .finish_non_exhaustive()
    }
}

/// A group's learning rate: a multiple of the optimiser's, or its own (its current value,
/// which the schedulers set through [`Optimizer::set_group_lrs`](super::Optimizer::set_group_lrs)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum GroupLr {
    Scale(f64),
    Own(f64),
}

/// What a group changes for one parameter; the default changes nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct GroupHyper {
    lr: GroupLr,
    weight_decay: Option<f64>,
}

impl Default for GroupHyper {
    fn default() -> Self {
        GroupHyper {
            lr: GroupLr::Scale(1.0),
            weight_decay: None,
        }
    }
}

impl GroupHyper {
    /// The learning rate and weight decay for a parameter, from the optimiser's own.
    pub(super) fn apply(self, lr: f64, weight_decay: f64) -> (f64, f64) {
        let lr = match self.lr {
            GroupLr::Scale(m) => lr * m,
            GroupLr::Own(own) => own,
        };
        (lr, self.weight_decay.unwrap_or(weight_decay))
    }
}

/// An optimiser's parameter groups. A parameter's group is looked up by its name at every
/// step (a few string comparisons per parameter, and only when there are groups), so a model
/// rebuilt or wrapped between steps, whose names change, gets the groups its names now match.
#[derive(Debug, Default)]
pub(super) struct Groups {
    list: Vec<ParamGroup>,
}

impl Groups {
    pub(super) fn add(&mut self, group: ParamGroup) -> Result<()> {
        match group.hyper.lr {
            GroupLr::Scale(m) => check_nonneg("parameter group lr_scale", m)?,
            GroupLr::Own(lr) => check_nonneg("parameter group lr", lr)?,
        }
        if let Some(wd) = group.hyper.weight_decay {
            check_nonneg("parameter group weight_decay", wd)?;
        }
        self.list.push(group);
        Ok(())
    }

    /// Whether any parameter can differ (then the step needs the parameters' names).
    pub(super) fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// The hyperparameter changes for the parameter named `name`: the first matching group's.
    pub(super) fn of(&self, name: &str) -> GroupHyper {
        self.list
            .iter()
            .find(|g| (g.matches)(name))
            .map_or_else(GroupHyper::default, |g| g.hyper)
    }

    /// The current rates of the groups with their own, in the order added.
    pub(super) fn own_lrs(&self) -> impl Iterator<Item = f64> + '_ {
        self.list.iter().filter_map(|g| match g.hyper.lr {
            GroupLr::Own(lr) => Some(lr),
            GroupLr::Scale(_) => None,
        })
    }

    /// Sets the rates [`own_lrs`](Self::own_lrs) lists; `lrs` has been checked (one valid rate
    /// per such group).
    pub(super) fn set_own_lrs(&mut self, lrs: &[f64]) {
        let own = self.list.iter_mut().filter_map(|g| match &mut g.hyper.lr {
            GroupLr::Own(lr) => Some(lr),
            GroupLr::Scale(_) => None,
        });
        for (slot, &lr) in own.zip(lrs) {
            *slot = lr;
        }
    }

    /// Every rate a schedule drives, given the optimiser's own `lr`: `lr`, then the current
    /// rate of each group with its own ([`Optimizer::group_lrs`](super::Optimizer::group_lrs)).
    pub(super) fn lrs(&self, lr: f64) -> Vec<f64> {
        std::iter::once(lr).chain(self.own_lrs()).collect()
    }

    /// Sets the rates [`lrs`](Self::lrs) lists: the first into `lr`, the rest into the groups
    /// with their own ([`Optimizer::set_group_lrs`](super::Optimizer::set_group_lrs)).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if `lrs` does not hold one rate per entry, or
    /// one is negative or not finite; then nothing changes.
    pub(super) fn set_lrs(&mut self, lr: &mut f64, lrs: &[f64]) -> Result<()> {
        let n = 1 + self.own_lrs().count();
        if lrs.len() != n {
            return Err(lr_count_error(n, lrs.len()));
        }
        for &lr in lrs {
            check_lr(lr)?;
        }
        *lr = lrs[0];
        self.set_own_lrs(&lrs[1..]);
        Ok(())
    }
}
