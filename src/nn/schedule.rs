//! Learning-rate schedules: closed forms of PyTorch's `torch.optim.lr_scheduler` classes,
//! documented for users in the [`nn`](crate::nn) module docs ("Learning-rate schedules"); the
//! items are used from there (`vgrad::nn::StepLr`), this module's path is hidden.

use super::optim::Optimizer;
use crate::error::{Error, Result};
use crate::tensor::Element;
use std::f64::consts::PI;
use std::fmt;

// The old names under the old path, as `nn` has them (deprecated aliases).
#[allow(deprecated)]
#[doc(hidden)]
pub use super::renamed::{
    CosineAnnealingLR, ExponentialLR, ReduceLROnPlateau, SequentialLR, StepLR,
};
/// A learning rate as a function of the step (or epoch) count `t`, starting at 0, and the
/// optimiser's base rate.
pub trait LrSchedule: fmt::Debug + Send + Sync {
    /// The rate at step `t` for base rate `base_lr`.
    fn lr(&self, base_lr: f64, t: usize) -> f64;
}

impl<S: LrSchedule + ?Sized> LrSchedule for Box<S> {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        (**self).lr(base_lr, t)
    }
}

fn config_err(msg: String) -> Error {
    Error::Config(msg)
}

fn check_factor(what: &str, x: f64) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(config_err(format!(
            "{what} must be finite and >= 0, got {x}"
        )))
    }
}

/// `base · gamma^⌊t / step_size⌋`: decay by `gamma` every `step_size` steps (PyTorch's
/// `StepLR`).
///
/// # Example
/// ```
/// use vgrad::nn::{LrSchedule, StepLr};
/// let s = StepLr::new(2, 0.5)?;
/// let lrs: Vec<f64> = (0..5).map(|t| s.lr(1.0, t)).collect();
/// assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    step_size: usize,
    gamma: f64,
}

impl StepLr {
    /// Decays by `gamma` every `step_size` steps (PyTorch's default gamma is 0.1).
    ///
    /// # Errors
    /// [`Error::Config`] if `step_size` is 0 or `gamma` is negative or not finite.
    pub fn new(step_size: usize, gamma: f64) -> Result<Self> {
        if step_size == 0 {
            return Err(config_err("StepLR step_size must be at least 1".into()));
        }
        check_factor("StepLR gamma", gamma)?;
        Ok(StepLr { step_size, gamma })
    }
}

impl LrSchedule for StepLr {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        base_lr * self.gamma.powf((t / self.step_size) as f64)
    }
}

/// `base · gammaᵗ` (PyTorch's `ExponentialLR`).
///
/// # Example
/// ```
/// use vgrad::nn::{ExponentialLr, LrSchedule};
/// let s = ExponentialLr::new(0.5)?;
/// assert_eq!(s.lr(2.0, 3), 0.25);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialLr {
    gamma: f64,
}

impl ExponentialLr {
    /// Multiplies the rate by `gamma` every step.
    ///
    /// # Errors
    /// [`Error::Config`] if `gamma` is negative or not finite.
    pub fn new(gamma: f64) -> Result<Self> {
        check_factor("ExponentialLR gamma", gamma)?;
        Ok(ExponentialLr { gamma })
    }
}

impl LrSchedule for ExponentialLr {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        base_lr * self.gamma.powf(t as f64)
    }
}

/// `eta_min + (base − eta_min)·(1 + cos(π·t/t_max))/2`: half a cosine from the base rate
/// down to `eta_min` over `t_max` steps (PyTorch's `CosineAnnealingLR`, closed form).
///
/// Past `t_max` the formula keeps going, so the rate climbs back up over the next `t_max`
/// steps, exactly as PyTorch's scheduler does; stop stepping, or compose with
/// [`SequentialLr`], to hold it.
///
/// # Example
/// ```
/// use vgrad::nn::{CosineAnnealingLr, LrSchedule};
/// let s = CosineAnnealingLr::new(10, 0.0)?;
/// assert_eq!(s.lr(1.0, 0), 1.0);
/// assert!((s.lr(1.0, 5) - 0.5).abs() < 1e-15);
/// assert!(s.lr(1.0, 10).abs() < 1e-15);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingLr {
    t_max: usize,
    eta_min: f64,
}

impl CosineAnnealingLr {
    /// Anneals to `eta_min` (PyTorch's default 0) over `t_max` steps.
    ///
    /// # Errors
    /// [`Error::Config`] if `t_max` is 0 or `eta_min` is negative or not finite.
    pub fn new(t_max: usize, eta_min: f64) -> Result<Self> {
        if t_max == 0 {
            return Err(config_err(
                "CosineAnnealingLR t_max must be at least 1".into(),
            ));
        }
        check_factor("CosineAnnealingLR eta_min", eta_min)?;
        Ok(CosineAnnealingLr { t_max, eta_min })
    }
}

impl LrSchedule for CosineAnnealingLr {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        self.eta_min
            + (base_lr - self.eta_min) * (1.0 + (PI * t as f64 / self.t_max as f64).cos()) / 2.0
    }
}

/// `base · (s + (1 − s)·min(t, n)/n)`: a linear ramp from `s·base` to `base` over `n` warm-up
/// steps, then constant (PyTorch's `LinearLR` with `end_factor = 1`).
///
/// # Example
/// ```
/// use vgrad::nn::{LinearWarmup, LrSchedule};
/// let s = LinearWarmup::new(0.25, 3)?;
/// let lrs: Vec<f64> = (0..5).map(|t| s.lr(1.0, t)).collect();
/// assert_eq!(lrs, [0.25, 0.5, 0.75, 1.0, 1.0]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearWarmup {
    start_factor: f64,
    warmup_steps: usize,
}

impl LinearWarmup {
    /// Ramps from `start_factor · base` to `base` over `warmup_steps` steps (PyTorch's
    /// defaults are 1/3 and 5).
    ///
    /// # Errors
    /// [`Error::Config`] if `start_factor` is not in (0, 1] or `warmup_steps` is 0.
    pub fn new(start_factor: f64, warmup_steps: usize) -> Result<Self> {
        if !(start_factor > 0.0 && start_factor <= 1.0) {
            return Err(config_err(format!(
                "LinearWarmup start_factor must be in (0, 1], got {start_factor}"
            )));
        }
        if warmup_steps == 0 {
            return Err(config_err(
                "LinearWarmup warmup_steps must be at least 1".into(),
            ));
        }
        Ok(LinearWarmup {
            start_factor,
            warmup_steps,
        })
    }
}

impl LrSchedule for LinearWarmup {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        let n = self.warmup_steps;
        base_lr * (self.start_factor + (1.0 - self.start_factor) * t.min(n) as f64 / n as f64)
    }
}

/// Runs schedules one after another: schedule `i + 1` takes over at `milestones[i]`, with its
/// own step count restarting at 0 (PyTorch's `SequentialLR`).
///
/// # Example
/// ```
/// use vgrad::nn::{ExponentialLr, LinearWarmup, LrSchedule, SequentialLr};
/// let s = SequentialLr::new(
///     vec![Box::new(LinearWarmup::new(0.5, 2)?), Box::new(ExponentialLr::new(0.5)?)],
///     vec![2],
/// )?;
/// let lrs: Vec<f64> = (0..5).map(|t| s.lr(1.0, t)).collect();
/// assert_eq!(lrs, [0.5, 0.75, 1.0, 0.5, 0.25]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct SequentialLr {
    schedules: Vec<Box<dyn LrSchedule>>,
    milestones: Vec<usize>,
}

impl SequentialLr {
    /// Chains `schedules`, switching at the given steps.
    ///
    /// # Errors
    /// [`Error::Config`] if there are no schedules, if there is not exactly one milestone fewer
    /// than schedules, or if the milestones are not positive and strictly increasing.
    pub fn new(schedules: Vec<Box<dyn LrSchedule>>, milestones: Vec<usize>) -> Result<Self> {
        if schedules.is_empty() {
            return Err(config_err(
                "SequentialLR needs at least one schedule".into(),
            ));
        }
        if milestones.len() + 1 != schedules.len() {
            return Err(config_err(format!(
                "SequentialLR: {} schedules need {} milestones, got {}",
                schedules.len(),
                schedules.len() - 1,
                milestones.len()
            )));
        }
        let mut prev = 0;
        for &m in &milestones {
            if m <= prev {
                return Err(config_err(format!(
                    "SequentialLR milestones must be positive and strictly increasing, got {milestones:?}"
                )));
            }
            prev = m;
        }
        Ok(SequentialLr {
            schedules,
            milestones,
        })
    }
}

impl LrSchedule for SequentialLr {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        // Index of the active schedule: how many milestones have been reached (bisect_right).
        let i = self.milestones.partition_point(|&m| m <= t);
        let start = if i == 0 { 0 } else { self.milestones[i - 1] };
        self.schedules[i].lr(base_lr, t - start)
    }
}

/// Drives an optimiser's learning rates from a schedule, counting steps.
///
/// Each of the optimiser's rates ([`Optimizer::group_lrs`]: its own, then each parameter
/// group's with its own) has its own base rate, read when the scheduler is built, and is set
/// to `schedule(base, t)` at every step: PyTorch's scheduler, which keeps each parameter
/// group's `initial_lr` and applies the schedule to it. A cosine to `eta_min` therefore takes
/// every group to the same `eta_min`.
///
/// # Example
/// ```
/// use vgrad::nn::{LrScheduler, Optimizer, Sgd, SgdConfig, StepLr};
/// let mut opt = Sgd::<f64>::new(SgdConfig { lr: 1.0, ..Default::default() })?;
/// let mut sched = LrScheduler::new(StepLr::new(2, 0.1)?, &mut opt)?;
/// sched.step(&mut opt)?;
/// assert_eq!(opt.lr(), 1.0);
/// sched.step(&mut opt)?;
/// assert!((opt.lr() - 0.1).abs() < 1e-15);
/// assert_eq!(sched.epoch(), 2);
/// // The same schedule, queried without an optimiser:
/// assert!((sched.lr(4) - 0.01).abs() < 1e-15);
/// # Ok::<(), vgrad::Error>(())
/// ```
///
/// # Example: parameter groups with their own rates
/// ```
/// use vgrad::nn::{AdamW, AdamWConfig, CosineAnnealingLr, LrScheduler, Optimizer, ParamGroup};
/// let biases = ParamGroup::matching(|n| n.ends_with("bias")).lr(0.03);
/// let mut opt = AdamW::<f32>::new(AdamWConfig { lr: 0.01, ..Default::default() })?
///     .with_group(biases)?;
/// let mut sched = LrScheduler::new(CosineAnnealingLr::new(3, 1e-3)?, &mut opt)?;
/// assert_eq!(sched.base_lrs(), [0.01, 0.03]);
/// sched.step(&mut opt)?;
/// let lrs = opt.group_lrs();
/// assert!((lrs[0] - 0.00775).abs() < 1e-15 && (lrs[1] - 0.02275).abs() < 1e-15);
/// for _ in 0..2 {
///     sched.step(&mut opt)?;
/// }
/// // Both at the floor, as in PyTorch (a 3x multiple would be at 3e-3).
/// assert!(opt.group_lrs().iter().all(|lr| (lr - 1e-3).abs() < 1e-15));
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct LrScheduler<S> {
    schedule: S,
    /// One per rate the optimiser lists in `group_lrs`; never empty.
    base_lrs: Vec<f64>,
    epoch: usize,
}

impl<S: LrSchedule> LrScheduler<S> {
    /// Takes the optimiser's current rates ([`Optimizer::group_lrs`]) as the base rates and
    /// sets the rates for step 0, as constructing a PyTorch scheduler does.
    ///
    /// # Errors
    /// [`Error::Config`] if a rate for step 0 is not a valid learning rate (nothing changes).
    pub fn new<T: Element>(schedule: S, opt: &mut dyn Optimizer<T>) -> Result<Self> {
        let s = Self::with_base_lrs(schedule, opt.group_lrs())?;
        opt.set_group_lrs(&s.last_lrs())?;
        Ok(s)
    }

    /// A scheduler for one base rate `base_lr`, not attached to an optimiser; read rates with
    /// [`lr`](Self::lr) and apply them with [`Optimizer::set_lr`]. Stepping an optimiser with
    /// parameter groups of their own rate with it is an error: use
    /// [`with_base_lrs`](Self::with_base_lrs).
    ///
    /// # Errors
    /// [`Error::Config`] if `base_lr` is negative or not finite.
    pub fn with_base_lr(schedule: S, base_lr: f64) -> Result<Self> {
        Self::with_base_lrs(schedule, vec![base_lr])
    }

    /// A scheduler for the base rates `base_lrs`, one per entry of the optimiser's
    /// [`group_lrs`](Optimizer::group_lrs), not attached to an optimiser (to resume a run: see
    /// [`set_epoch`](Self::set_epoch)).
    ///
    /// # Errors
    /// [`Error::Config`] if `base_lrs` is empty or a rate is negative or not finite.
    pub fn with_base_lrs(schedule: S, base_lrs: Vec<f64>) -> Result<Self> {
        if base_lrs.is_empty() {
            return Err(config_err(
                "LrScheduler needs at least one base rate".into(),
            ));
        }
        for &lr in &base_lrs {
            check_factor("base learning rate", lr)?;
        }
        Ok(LrScheduler {
            schedule,
            base_lrs,
            epoch: 0,
        })
    }

    /// The rate at step `t` of the first base rate (the optimiser's own).
    pub fn lr(&self, t: usize) -> f64 {
        self.schedule.lr(self.base_lrs[0], t)
    }

    /// Every rate at step `t`, one per base rate.
    pub fn lrs(&self, t: usize) -> Vec<f64> {
        self.base_lrs
            .iter()
            .map(|&base| self.schedule.lr(base, t))
            .collect()
    }

    /// The first rate at the current step.
    pub fn last_lr(&self) -> f64 {
        self.lr(self.epoch)
    }

    /// Every rate at the current step (PyTorch's `get_last_lr()`).
    pub fn last_lrs(&self) -> Vec<f64> {
        self.lrs(self.epoch)
    }

    /// Steps taken so far.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The first base rate (the optimiser's own).
    pub fn base_lr(&self) -> f64 {
        self.base_lrs[0]
    }

    /// Every base rate (PyTorch's `base_lrs`, each group's `initial_lr`).
    pub fn base_lrs(&self) -> &[f64] {
        &self.base_lrs
    }

    /// Moves the scheduler to step `epoch` without touching an optimiser: to resume a run,
    /// rebuild the scheduler with [`with_base_lrs`](Self::with_base_lrs) and the saved
    /// [`base_lrs`](Self::base_lrs), then set the saved [`epoch`](Self::epoch); the optimiser
    /// loaded with [`load_optimizer`](crate::nn::load_optimizer) already has that step's rates
    /// (its groups' too).
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{LrScheduler, StepLr};
    /// let mut sched = LrScheduler::with_base_lr(StepLr::new(10, 0.5)?, 0.1)?;
    /// sched.set_epoch(25);
    /// assert_eq!(sched.epoch(), 25);
    /// assert!((sched.last_lr() - 0.025).abs() < 1e-15);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn set_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
    }

    /// Advances one step and sets the optimiser's rates; returns the first (the optimiser's
    /// own).
    ///
    /// # Errors
    /// [`Error::Config`] if a new rate is not a valid learning rate, or the optimiser lists
    /// another number of rates than the scheduler has base rates (the step count still
    /// advances; the optimiser keeps its old rates).
    pub fn step<T: Element>(&mut self, opt: &mut dyn Optimizer<T>) -> Result<f64> {
        self.epoch += 1;
        let lrs = self.last_lrs();
        opt.set_group_lrs(&lrs)?;
        Ok(lrs[0])
    }
}

/// Whether a smaller or a larger metric is better (a loss or an accuracy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (default).
    #[default]
    Min,
    /// Higher is better.
    Max,
}

/// How [`ReduceLrOnPlateau`] decides that a metric improved on the best so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Better than `best·(1 ∓ threshold)` (default).
    #[default]
    Rel,
    /// Better than `best ∓ threshold`.
    Abs,
}

/// [`ReduceLrOnPlateau`]'s settings; `Default` is PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlateauConfig {
    /// Minimise or maximise the metric (default `Min`).
    pub mode: PlateauMode,
    /// Multiplies the rate on a plateau (default 0.1).
    pub factor: f64,
    /// Observations without improvement tolerated before reducing (default 10).
    pub patience: usize,
    /// Smallest change that counts as an improvement (default 1e-4).
    pub threshold: f64,
    /// Relative or absolute threshold (default `Rel`).
    pub threshold_mode: ThresholdMode,
    /// Observations to wait after a reduction before counting bad ones again (default 0).
    pub cooldown: usize,
    /// The rate never goes below this (default 0).
    pub min_lr: f64,
    /// A reduction smaller than this is skipped (default 1e-8).
    pub eps: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        PlateauConfig {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// Reduces the rates by `factor` when a metric has not improved for more than `patience`
/// observations (PyTorch's `ReduceLROnPlateau`, same counters and comparisons).
///
/// Each [`observe`](Self::observe): if the metric beats the best by the threshold it becomes
/// the best and the bad count resets, otherwise the bad count grows; during cooldown the bad
/// count is held at 0; once the bad count exceeds `patience` each rate becomes
/// `max(lr·factor, min_lr)` (unless that changes it by less than `eps`) and cooldown starts.
/// A NaN metric never improves.
///
/// It holds one rate per entry of the optimiser's [`group_lrs`](Optimizer::group_lrs) when
/// built with [`for_optimizer`](Self::for_optimizer) (one, the optimiser's own, with
/// [`new`](Self::new)), each reduced on its own and floored at its own `min_lr`
/// ([`with_min_lrs`](Self::with_min_lrs); `cfg.min_lr` for every rate by default), as
/// PyTorch reduces each parameter group's rate.
///
/// # Example
/// ```
/// use vgrad::nn::{Optimizer, PlateauConfig, ReduceLrOnPlateau, Sgd, SgdConfig};
/// let mut opt = Sgd::<f32>::new(SgdConfig { lr: 0.1, ..Default::default() })?;
/// let mut plateau = ReduceLrOnPlateau::new(opt.lr(), PlateauConfig { patience: 1, ..Default::default() })?;
/// for val_loss in [1.0, 0.9, 0.9, 0.9] {
///     plateau.step(val_loss, &mut opt)?;
/// }
/// assert!((opt.lr() - 0.01).abs() < 1e-12); // two observations without improvement
/// # Ok::<(), vgrad::Error>(())
/// ```
///
/// # Example: parameter groups, each with its floor
/// ```
/// use vgrad::nn::{Optimizer, ParamGroup, PlateauConfig, ReduceLrOnPlateau, Sgd, SgdConfig};
/// let head = ParamGroup::matching(|n| n.starts_with("head.")).lr(0.03);
/// let mut opt = Sgd::<f32>::new(SgdConfig { lr: 0.1, ..Default::default() })?.with_group(head)?;
/// let cfg = PlateauConfig { patience: 0, factor: 0.5, ..Default::default() };
/// let mut plateau = ReduceLrOnPlateau::for_optimizer(&opt, cfg)?.with_min_lrs(vec![0.01, 0.02])?;
/// for val_loss in [1.0, 1.0, 1.0] {
///     plateau.step(val_loss, &mut opt)?;
/// }
/// // 0.1 → 0.05 → 0.025; 0.03 → max(0.015, 0.02) = 0.02, then held at its floor.
/// assert_eq!(opt.group_lrs(), [0.025, 0.02]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    cfg: PlateauConfig,
    /// The current rates; never empty.
    lrs: Vec<f64>,
    /// One floor per rate.
    min_lrs: Vec<f64>,
    best: f64,
    num_bad: usize,
    cooldown_counter: usize,
}

impl ReduceLrOnPlateau {
    /// Starts at the one rate `lr` with no best metric yet. For an optimiser with parameter
    /// groups of their own rate use [`for_optimizer`](Self::for_optimizer): stepping one with
    /// this scheduler is an error.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr`, `threshold`, `min_lr` or `eps` is negative or not finite, or
    /// `factor` is not in [0, 1).
    pub fn new(lr: f64, cfg: PlateauConfig) -> Result<Self> {
        Self::with_lrs(vec![lr], cfg)
    }

    /// Starts at the optimiser's current rates ([`Optimizer::group_lrs`]), as PyTorch's
    /// scheduler reads each parameter group's, with no best metric yet.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn for_optimizer<T: Element>(opt: &dyn Optimizer<T>, cfg: PlateauConfig) -> Result<Self> {
        Self::with_lrs(opt.group_lrs(), cfg)
    }

    fn with_lrs(lrs: Vec<f64>, cfg: PlateauConfig) -> Result<Self> {
        if lrs.is_empty() {
            return Err(config_err(
                "ReduceLROnPlateau needs at least one learning rate".into(),
            ));
        }
        for &lr in &lrs {
            check_factor("learning rate", lr)?;
        }
        check_factor("ReduceLROnPlateau threshold", cfg.threshold)?;
        check_factor("ReduceLROnPlateau min_lr", cfg.min_lr)?;
        check_factor("ReduceLROnPlateau eps", cfg.eps)?;
        if !(0.0..1.0).contains(&cfg.factor) {
            return Err(config_err(format!(
                "ReduceLROnPlateau factor must be in [0, 1), got {}",
                cfg.factor
            )));
        }
        Ok(ReduceLrOnPlateau {
            cfg,
            min_lrs: vec![cfg.min_lr; lrs.len()],
            lrs,
            best: match cfg.mode {
                PlateauMode::Min => f64::INFINITY,
                PlateauMode::Max => f64::NEG_INFINITY,
            },
            num_bad: 0,
            cooldown_counter: 0,
        })
    }

    /// One floor per rate instead of `cfg.min_lr` for all (PyTorch's `min_lr` as a list).
    ///
    /// # Errors
    /// [`Error::Config`] if there is not one floor per rate, or a floor is negative or not
    /// finite.
    pub fn with_min_lrs(mut self, min_lrs: Vec<f64>) -> Result<Self> {
        if min_lrs.len() != self.lrs.len() {
            return Err(config_err(format!(
                "ReduceLROnPlateau: expected {} min_lrs (one per learning rate), got {}",
                self.lrs.len(),
                min_lrs.len()
            )));
        }
        for &m in &min_lrs {
            check_factor("ReduceLROnPlateau min_lr", m)?;
        }
        self.min_lrs = min_lrs;
        Ok(self)
    }

    fn is_better(&self, a: f64) -> bool {
        let (best, th) = (self.best, self.cfg.threshold);
        match (self.cfg.mode, self.cfg.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - th),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - th,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (th + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + th,
        }
    }

    /// Records one metric value (typically a validation loss per epoch) and returns the first
    /// rate to use next (the optimiser's own; [`lrs`](Self::lrs) has them all).
    pub fn observe(&mut self, metric: f64) -> f64 {
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad = 0;
        } else {
            self.num_bad += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad = 0;
        }
        if self.num_bad > self.cfg.patience {
            for (lr, &min_lr) in self.lrs.iter_mut().zip(&self.min_lrs) {
                let new_lr = (*lr * self.cfg.factor).max(min_lr);
                if *lr - new_lr > self.cfg.eps {
                    *lr = new_lr;
                }
            }
            self.cooldown_counter = self.cfg.cooldown;
            self.num_bad = 0;
        }
        self.lrs[0]
    }

    /// [`observe`](Self::observe)s the metric and sets the optimiser's rates
    /// ([`Optimizer::set_group_lrs`]); returns the first.
    ///
    /// # Errors
    /// [`Error::Config`] if the optimiser lists another number of rates than the scheduler
    /// holds (it was built with [`new`](Self::new) for an optimiser with parameter groups of
    /// their own rate); the observation still counts.
    pub fn step<T: Element>(&mut self, metric: f64, opt: &mut dyn Optimizer<T>) -> Result<f64> {
        let lr = self.observe(metric);
        opt.set_group_lrs(&self.lrs)?;
        Ok(lr)
    }

    /// The current first rate (the optimiser's own).
    pub fn lr(&self) -> f64 {
        self.lrs[0]
    }

    /// Every current rate, in the order of [`Optimizer::group_lrs`].
    pub fn lrs(&self) -> &[f64] {
        &self.lrs
    }

    /// The best metric seen so far (±∞ before the first observation).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Consecutive observations without improvement.
    pub fn num_bad_epochs(&self) -> usize {
        self.num_bad
    }

    /// What the scheduler carries from one observation to the next: with its configuration,
    /// all a checkpoint needs to resume it ([`from_state`](Self::from_state)).
    pub fn state(&self) -> PlateauState {
        PlateauState {
            lrs: self.lrs.clone(),
            min_lrs: self.min_lrs.clone(),
            best: self.best,
            num_bad_epochs: self.num_bad,
            cooldown_counter: self.cooldown_counter,
        }
    }

    /// A scheduler that continues from `state`, taken with [`state`](Self::state) (PyTorch's
    /// `load_state_dict`): its next observations give the rates the original's would have.
    /// The floors come from `state` (`cfg.min_lr` is not used).
    ///
    /// # Errors
    /// As [`new`](Self::new) and [`with_min_lrs`](Self::with_min_lrs) (for every rate and
    /// floor of `state`), and [`Error::Config`] if `state.best` is NaN (no metric could then
    /// ever improve on it).
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{PlateauConfig, ReduceLrOnPlateau};
    /// let cfg = PlateauConfig { patience: 1, ..Default::default() };
    /// let mut run = ReduceLrOnPlateau::new(0.1, cfg)?;
    /// run.observe(1.0);
    /// run.observe(1.0); // one bad epoch so far
    /// let mut resumed = ReduceLrOnPlateau::from_state(cfg, run.state())?;
    /// assert_eq!(resumed.observe(1.0), run.observe(1.0)); // both reduce now
    /// assert!((resumed.lr() - 0.01).abs() < 1e-15);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn from_state(cfg: PlateauConfig, state: PlateauState) -> Result<Self> {
        if state.best.is_nan() {
            return Err(config_err(
                "ReduceLROnPlateau best metric must not be NaN".to_string(),
            ));
        }
        let mut s = ReduceLrOnPlateau::with_lrs(state.lrs, cfg)?.with_min_lrs(state.min_lrs)?;
        s.best = state.best;
        s.num_bad = state.num_bad_epochs;
        s.cooldown_counter = state.cooldown_counter;
        Ok(s)
    }
}

/// The running state of a [`ReduceLrOnPlateau`], for checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct PlateauState {
    /// The current rates, in the order of [`Optimizer::group_lrs`].
    pub lrs: Vec<f64>,
    /// The floor of each rate.
    pub min_lrs: Vec<f64>,
    /// The best metric so far (±∞ before the first observation).
    pub best: f64,
    /// Consecutive observations without improvement.
    pub num_bad_epochs: usize,
    /// Observations left in the cooldown after the last reduction.
    pub cooldown_counter: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_validated() {
        assert!(StepLr::new(0, 0.1).is_err());
        assert!(StepLr::new(1, f64::NAN).is_err());
        assert!(ExponentialLr::new(-0.5).is_err());
        assert!(CosineAnnealingLr::new(0, 0.0).is_err());
        assert!(CosineAnnealingLr::new(10, -1e-3).is_err());
        assert!(LinearWarmup::new(0.0, 5).is_err());
        assert!(LinearWarmup::new(1.5, 5).is_err());
        assert!(LinearWarmup::new(0.5, 0).is_err());
        let two = || -> Vec<Box<dyn LrSchedule>> {
            vec![
                Box::new(ExponentialLr::new(0.9).unwrap()),
                Box::new(ExponentialLr::new(0.9).unwrap()),
            ]
        };
        assert!(SequentialLr::new(vec![], vec![]).is_err());
        assert!(SequentialLr::new(two(), vec![]).is_err());
        assert!(SequentialLr::new(two(), vec![0]).is_err());
        assert!(SequentialLr::new(two(), vec![3]).is_ok());
        let bad = PlateauConfig {
            factor: 1.0,
            ..Default::default()
        };
        assert!(ReduceLrOnPlateau::new(0.1, bad).is_err());
        assert!(ReduceLrOnPlateau::new(-0.1, PlateauConfig::default()).is_err());
        assert!(LrScheduler::with_base_lr(StepLr::new(1, 0.5).unwrap(), f64::NAN).is_err());
    }

    /// A group with its own rate reaches a schedule's floor as PyTorch's does; a group with a
    /// multiple follows the optimiser's rate, floor included (`m · eta_min`), as documented.
    #[test]
    fn own_rates_share_the_floor_and_multiples_scale_it() {
        use crate::nn::{ParamGroup, Sgd, SgdConfig};
        let mut opt = Sgd::<f64>::new(SgdConfig {
            lr: 0.01,
            ..Default::default()
        })
        .unwrap()
        .with_group(ParamGroup::matching(|n| n.ends_with("bias")).lr(0.03))
        .unwrap()
        .with_group(ParamGroup::matching(|n| n.ends_with("scale")).lr_scale(3.0))
        .unwrap();
        let mut sched =
            LrScheduler::new(CosineAnnealingLr::new(3, 1e-3).unwrap(), &mut opt).unwrap();
        let mut lrs = vec![opt.group_lrs()];
        for _ in 0..3 {
            sched.step(&mut opt).unwrap();
            lrs.push(opt.group_lrs());
        }
        let expected = [
            [0.01, 0.03],
            [0.00775, 0.02275],
            [0.00325, 0.00825],
            [1e-3, 1e-3],
        ];
        for (got, want) in lrs.iter().zip(expected) {
            assert!(
                (got[0] - want[0]).abs() < 1e-15 && (got[1] - want[1]).abs() < 1e-15,
                "{got:?}"
            );
        }
        // The multiple: 3 x the optimiser's rate, 3e-3 at the floor.
        assert!((opt.lr() * 3.0 - 3e-3).abs() < 1e-15);

        // A scheduler for one rate cannot drive an optimiser with two.
        let mut one = LrScheduler::with_base_lr(StepLr::new(1, 0.5).unwrap(), 0.1).unwrap();
        assert!(matches!(one.step(&mut opt), Err(Error::Config(_))));
        assert_eq!(opt.group_lrs(), lrs[3], "unchanged");
        let mut plateau = ReduceLrOnPlateau::new(0.1, PlateauConfig::default()).unwrap();
        assert!(plateau.step(1.0, &mut opt).is_err());
        assert!(plateau.clone().with_min_lrs(vec![0.0, 0.0]).is_err());
        assert!(plateau.with_min_lrs(vec![f64::NAN]).is_err());
        assert!(LrScheduler::with_base_lrs(StepLr::new(1, 0.5).unwrap(), vec![]).is_err());
    }

    #[test]
    fn sequential_switches_at_milestones_with_restarted_count() {
        let s = SequentialLr::new(
            vec![
                Box::new(StepLr::new(100, 0.5).unwrap()),
                Box::new(ExponentialLr::new(0.5).unwrap()),
                Box::new(StepLr::new(1, 0.1).unwrap()),
            ],
            vec![2, 4],
        )
        .unwrap();
        let lrs: Vec<f64> = (0..6).map(|t| s.lr(8.0, t)).collect();
        assert_eq!(lrs, [8.0, 8.0, 8.0, 4.0, 8.0, 0.8]);
    }

    #[test]
    fn plateau_max_mode_and_min_lr() {
        let cfg = PlateauConfig {
            mode: PlateauMode::Max,
            threshold_mode: ThresholdMode::Abs,
            threshold: 0.1,
            patience: 0,
            factor: 0.5,
            min_lr: 0.3,
            ..Default::default()
        };
        let mut p = ReduceLrOnPlateau::new(1.0, cfg).unwrap();
        assert_eq!(p.observe(0.5), 1.0); // first observation improves on −∞
        assert_eq!(p.observe(0.55), 0.5); // not better by 0.1: reduce at once (patience 0)
        assert_eq!(p.observe(0.7), 0.5); // better
        assert_eq!(p.observe(f64::NAN), 0.3); // NaN never improves; clamped at min_lr
        assert_eq!(p.observe(0.0), 0.3); // below eps of change: stays
        assert_eq!(p.best(), 0.7);
    }
}
