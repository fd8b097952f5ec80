//! Learning-rate schedules: closed forms of PyTorch's `torch.optim.lr_scheduler` classes.
//!
//! A schedule ([`LrSchedule`]) is a pure function from a base rate and a step count to a rate;
//! it holds no optimiser and no counter, so it can be queried for any step, plotted, or
//! composed ([`SequentialLR`]). [`LrScheduler`] adds the counter and drives an [`Optimizer`]
//! the way PyTorch's scheduler objects do: construction sets the rate for step 0, each
//! [`step`](LrScheduler::step) advances by one. [`ReduceLROnPlateau`] depends on observed
//! metrics rather than on the step count, so it is a separate, stateful type.
//!
//! PyTorch's schedulers update the rate recursively from the previous one; vgrad evaluates the
//! closed forms PyTorch documents (`_get_closed_form_lr`), which agree to rounding (the golden
//! tests compare 30 steps of every schedule with PyTorch's own sequence).
//!
//! # Example: linear warm-up, then cosine decay
//! ```
//! use vgrad::nn::{CosineAnnealingLR, LinearWarmup, LrScheduler, Optimizer, SequentialLR, Sgd, SgdConfig};
//!
//! let mut opt = Sgd::<f32>::new(SgdConfig { lr: 0.1, ..Default::default() })?;
//! let schedule = SequentialLR::new(
//!     vec![Box::new(LinearWarmup::new(0.1, 5)?), Box::new(CosineAnnealingLR::new(20, 0.0)?)],
//!     vec![5],
//! )?;
//! let mut sched = LrScheduler::new(schedule, &mut opt)?;
//! assert!((opt.lr() - 0.01).abs() < 1e-12); // step 0: base · start_factor
//! for _epoch in 0..5 {
//!     // ... train one epoch with opt ...
//!     sched.step(&mut opt)?;
//! }
//! assert!((opt.lr() - 0.1).abs() < 1e-12); // warm-up done, cosine starts at the base rate
//! # Ok::<(), vgrad::Error>(())
//! ```

use super::optim::Optimizer;
use crate::error::{Error, Result};
use crate::tensor::Element;
use std::f64::consts::PI;
use std::fmt;

/// A learning rate as a function of the step (or epoch) count `t`, starting at 0, and the
/// optimiser's base rate.
pub trait LrSchedule: fmt::Debug {
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
/// use vgrad::nn::{LrSchedule, StepLR};
/// let s = StepLR::new(2, 0.5)?;
/// let lrs: Vec<f64> = (0..5).map(|t| s.lr(1.0, t)).collect();
/// assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLR {
    step_size: usize,
    gamma: f64,
}

impl StepLR {
    /// Decays by `gamma` every `step_size` steps (PyTorch's default gamma is 0.1).
    ///
    /// # Errors
    /// [`Error::Config`] if `step_size` is 0 or `gamma` is negative or not finite.
    pub fn new(step_size: usize, gamma: f64) -> Result<Self> {
        if step_size == 0 {
            return Err(config_err("StepLR step_size must be at least 1".into()));
        }
        check_factor("StepLR gamma", gamma)?;
        Ok(StepLR { step_size, gamma })
    }
}

impl LrSchedule for StepLR {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        base_lr * self.gamma.powf((t / self.step_size) as f64)
    }
}

/// `base · gammaᵗ` (PyTorch's `ExponentialLR`).
///
/// # Example
/// ```
/// use vgrad::nn::{ExponentialLR, LrSchedule};
/// let s = ExponentialLR::new(0.5)?;
/// assert_eq!(s.lr(2.0, 3), 0.25);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialLR {
    gamma: f64,
}

impl ExponentialLR {
    /// Multiplies the rate by `gamma` every step.
    ///
    /// # Errors
    /// [`Error::Config`] if `gamma` is negative or not finite.
    pub fn new(gamma: f64) -> Result<Self> {
        check_factor("ExponentialLR gamma", gamma)?;
        Ok(ExponentialLR { gamma })
    }
}

impl LrSchedule for ExponentialLR {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        base_lr * self.gamma.powf(t as f64)
    }
}

/// `eta_min + (base − eta_min)·(1 + cos(π·t/t_max))/2`: half a cosine from the base rate
/// down to `eta_min` over `t_max` steps (PyTorch's `CosineAnnealingLR`, closed form).
///
/// Past `t_max` the formula keeps going, so the rate climbs back up over the next `t_max`
/// steps, exactly as PyTorch's scheduler does; stop stepping, or compose with
/// [`SequentialLR`], to hold it.
///
/// # Example
/// ```
/// use vgrad::nn::{CosineAnnealingLR, LrSchedule};
/// let s = CosineAnnealingLR::new(10, 0.0)?;
/// assert_eq!(s.lr(1.0, 0), 1.0);
/// assert!((s.lr(1.0, 5) - 0.5).abs() < 1e-15);
/// assert!(s.lr(1.0, 10).abs() < 1e-15);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingLR {
    t_max: usize,
    eta_min: f64,
}

impl CosineAnnealingLR {
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
        Ok(CosineAnnealingLR { t_max, eta_min })
    }
}

impl LrSchedule for CosineAnnealingLR {
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
/// use vgrad::nn::{ExponentialLR, LinearWarmup, LrSchedule, SequentialLR};
/// let s = SequentialLR::new(
///     vec![Box::new(LinearWarmup::new(0.5, 2)?), Box::new(ExponentialLR::new(0.5)?)],
///     vec![2],
/// )?;
/// let lrs: Vec<f64> = (0..5).map(|t| s.lr(1.0, t)).collect();
/// assert_eq!(lrs, [0.5, 0.75, 1.0, 0.5, 0.25]);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct SequentialLR {
    schedules: Vec<Box<dyn LrSchedule>>,
    milestones: Vec<usize>,
}

impl SequentialLR {
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
        Ok(SequentialLR {
            schedules,
            milestones,
        })
    }
}

impl LrSchedule for SequentialLR {
    fn lr(&self, base_lr: f64, t: usize) -> f64 {
        // Index of the active schedule: how many milestones have been reached (bisect_right).
        let i = self.milestones.partition_point(|&m| m <= t);
        let start = if i == 0 { 0 } else { self.milestones[i - 1] };
        self.schedules[i].lr(base_lr, t - start)
    }
}

/// Drives an optimiser's learning rate from a schedule, counting steps.
///
/// # Example
/// ```
/// use vgrad::nn::{LrScheduler, Optimizer, Sgd, SgdConfig, StepLR};
/// let mut opt = Sgd::<f64>::new(SgdConfig { lr: 1.0, ..Default::default() })?;
/// let mut sched = LrScheduler::new(StepLR::new(2, 0.1)?, &mut opt)?;
/// sched.step(&mut opt)?;
/// assert_eq!(opt.lr(), 1.0);
/// sched.step(&mut opt)?;
/// assert!((opt.lr() - 0.1).abs() < 1e-15);
/// assert_eq!(sched.epoch(), 2);
/// // The same schedule, queried without an optimiser:
/// assert!((sched.lr(4) - 0.01).abs() < 1e-15);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Debug)]
pub struct LrScheduler<S> {
    schedule: S,
    base_lr: f64,
    epoch: usize,
}

impl<S: LrSchedule> LrScheduler<S> {
    /// Takes the optimiser's current rate as the base rate and sets the rate for step 0, as
    /// constructing a PyTorch scheduler does.
    ///
    /// # Errors
    /// [`Error::Config`] if the schedule's rate for step 0 is not a valid learning rate.
    pub fn new<T: Element>(schedule: S, opt: &mut dyn Optimizer<T>) -> Result<Self> {
        let s = Self::with_base_lr(schedule, opt.lr())?;
        opt.set_lr(s.last_lr())?;
        Ok(s)
    }

    /// A scheduler for base rate `base_lr`, not attached to an optimiser; read rates with
    /// [`lr`](Self::lr) and apply them with [`Optimizer::set_lr`].
    ///
    /// # Errors
    /// [`Error::Config`] if `base_lr` is negative or not finite.
    pub fn with_base_lr(schedule: S, base_lr: f64) -> Result<Self> {
        check_factor("base learning rate", base_lr)?;
        Ok(LrScheduler {
            schedule,
            base_lr,
            epoch: 0,
        })
    }

    /// The rate at step `t`.
    pub fn lr(&self, t: usize) -> f64 {
        self.schedule.lr(self.base_lr, t)
    }

    /// The rate at the current step.
    pub fn last_lr(&self) -> f64 {
        self.lr(self.epoch)
    }

    /// Steps taken so far.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The base rate.
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }

    /// Moves the scheduler to step `epoch` without touching an optimiser: to resume a run,
    /// rebuild the scheduler with [`with_base_lr`](Self::with_base_lr) and the saved
    /// [`base_lr`](Self::base_lr), then set the saved [`epoch`](Self::epoch); the optimiser
    /// loaded with [`load_optimizer`](crate::nn::load_optimizer) already has that step's rate.
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{LrScheduler, StepLR};
    /// let mut sched = LrScheduler::with_base_lr(StepLR::new(10, 0.5)?, 0.1)?;
    /// sched.set_epoch(25);
    /// assert_eq!(sched.epoch(), 25);
    /// assert!((sched.last_lr() - 0.025).abs() < 1e-15);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn set_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
    }

    /// Advances one step and sets the optimiser's rate; returns the new rate.
    ///
    /// # Errors
    /// [`Error::Config`] if the new rate is not a valid learning rate (the step count still
    /// advances; the optimiser keeps its old rate).
    pub fn step<T: Element>(&mut self, opt: &mut dyn Optimizer<T>) -> Result<f64> {
        self.epoch += 1;
        let lr = self.last_lr();
        opt.set_lr(lr)?;
        Ok(lr)
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

/// How [`ReduceLROnPlateau`] decides that a metric improved on the best so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Better than `best·(1 ∓ threshold)` (default).
    #[default]
    Rel,
    /// Better than `best ∓ threshold`.
    Abs,
}

/// [`ReduceLROnPlateau`]'s settings; `Default` is PyTorch's.
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

/// Reduces the rate by `factor` when a metric has not improved for more than `patience`
/// observations (PyTorch's `ReduceLROnPlateau`, same counters and comparisons).
///
/// Each [`observe`](Self::observe): if the metric beats the best by the threshold it becomes
/// the best and the bad count resets, otherwise the bad count grows; during cooldown the bad
/// count is held at 0; once the bad count exceeds `patience` the rate becomes
/// `max(lr·factor, min_lr)` (unless that changes it by less than `eps`) and cooldown starts.
/// A NaN metric never improves.
///
/// # Example
/// ```
/// use vgrad::nn::{Optimizer, PlateauConfig, ReduceLROnPlateau, Sgd, SgdConfig};
/// let mut opt = Sgd::<f32>::new(SgdConfig { lr: 0.1, ..Default::default() })?;
/// let mut plateau = ReduceLROnPlateau::new(opt.lr(), PlateauConfig { patience: 1, ..Default::default() })?;
/// for val_loss in [1.0, 0.9, 0.9, 0.9] {
///     plateau.step(val_loss, &mut opt)?;
/// }
/// assert!((opt.lr() - 0.01).abs() < 1e-12); // two observations without improvement
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    cfg: PlateauConfig,
    lr: f64,
    best: f64,
    num_bad: usize,
    cooldown_counter: usize,
}

impl ReduceLROnPlateau {
    /// Starts at rate `lr` with no best metric yet.
    ///
    /// # Errors
    /// [`Error::Config`] if `lr`, `threshold`, `min_lr` or `eps` is negative or not finite, or
    /// `factor` is not in [0, 1).
    pub fn new(lr: f64, cfg: PlateauConfig) -> Result<Self> {
        check_factor("learning rate", lr)?;
        check_factor("ReduceLROnPlateau threshold", cfg.threshold)?;
        check_factor("ReduceLROnPlateau min_lr", cfg.min_lr)?;
        check_factor("ReduceLROnPlateau eps", cfg.eps)?;
        if !(0.0..1.0).contains(&cfg.factor) {
            return Err(config_err(format!(
                "ReduceLROnPlateau factor must be in [0, 1), got {}",
                cfg.factor
            )));
        }
        Ok(ReduceLROnPlateau {
            cfg,
            lr,
            best: match cfg.mode {
                PlateauMode::Min => f64::INFINITY,
                PlateauMode::Max => f64::NEG_INFINITY,
            },
            num_bad: 0,
            cooldown_counter: 0,
        })
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

    /// Records one metric value (typically a validation loss per epoch) and returns the rate
    /// to use next.
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
            let new_lr = (self.lr * self.cfg.factor).max(self.cfg.min_lr);
            if self.lr - new_lr > self.cfg.eps {
                self.lr = new_lr;
            }
            self.cooldown_counter = self.cfg.cooldown;
            self.num_bad = 0;
        }
        self.lr
    }

    /// [`observe`](Self::observe)s the metric and sets the optimiser's rate; returns it.
    ///
    /// # Errors
    /// Only what [`Optimizer::set_lr`] returns, which a valid configuration never triggers.
    pub fn step<T: Element>(&mut self, metric: f64, opt: &mut dyn Optimizer<T>) -> Result<f64> {
        let lr = self.observe(metric);
        opt.set_lr(lr)?;
        Ok(lr)
    }

    /// The current rate.
    pub fn lr(&self) -> f64 {
        self.lr
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
            lr: self.lr,
            best: self.best,
            num_bad_epochs: self.num_bad,
            cooldown_counter: self.cooldown_counter,
        }
    }

    /// A scheduler that continues from `state`, taken with [`state`](Self::state) (PyTorch's
    /// `load_state_dict`): its next observations give the rates the original's would have.
    ///
    /// # Errors
    /// As [`new`](Self::new), and [`Error::Config`] if `state.best` is NaN (no metric could
    /// then ever improve on it).
    ///
    /// # Example
    /// ```
    /// use vgrad::nn::{PlateauConfig, ReduceLROnPlateau};
    /// let cfg = PlateauConfig { patience: 1, ..Default::default() };
    /// let mut run = ReduceLROnPlateau::new(0.1, cfg)?;
    /// run.observe(1.0);
    /// run.observe(1.0); // one bad epoch so far
    /// let mut resumed = ReduceLROnPlateau::from_state(cfg, run.state())?;
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
        let mut s = ReduceLROnPlateau::new(state.lr, cfg)?;
        s.best = state.best;
        s.num_bad = state.num_bad_epochs;
        s.cooldown_counter = state.cooldown_counter;
        Ok(s)
    }
}

/// The running state of a [`ReduceLROnPlateau`], for checkpoints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlateauState {
    /// The current rate.
    pub lr: f64,
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
        assert!(StepLR::new(0, 0.1).is_err());
        assert!(StepLR::new(1, f64::NAN).is_err());
        assert!(ExponentialLR::new(-0.5).is_err());
        assert!(CosineAnnealingLR::new(0, 0.0).is_err());
        assert!(CosineAnnealingLR::new(10, -1e-3).is_err());
        assert!(LinearWarmup::new(0.0, 5).is_err());
        assert!(LinearWarmup::new(1.5, 5).is_err());
        assert!(LinearWarmup::new(0.5, 0).is_err());
        let two = || -> Vec<Box<dyn LrSchedule>> {
            vec![
                Box::new(ExponentialLR::new(0.9).unwrap()),
                Box::new(ExponentialLR::new(0.9).unwrap()),
            ]
        };
        assert!(SequentialLR::new(vec![], vec![]).is_err());
        assert!(SequentialLR::new(two(), vec![]).is_err());
        assert!(SequentialLR::new(two(), vec![0]).is_err());
        assert!(SequentialLR::new(two(), vec![3]).is_ok());
        let bad = PlateauConfig {
            factor: 1.0,
            ..Default::default()
        };
        assert!(ReduceLROnPlateau::new(0.1, bad).is_err());
        assert!(ReduceLROnPlateau::new(-0.1, PlateauConfig::default()).is_err());
        assert!(LrScheduler::with_base_lr(StepLR::new(1, 0.5).unwrap(), f64::NAN).is_err());
    }

    #[test]
    fn sequential_switches_at_milestones_with_restarted_count() {
        let s = SequentialLR::new(
            vec![
                Box::new(StepLR::new(100, 0.5).unwrap()),
                Box::new(ExponentialLR::new(0.5).unwrap()),
                Box::new(StepLR::new(1, 0.1).unwrap()),
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
        let mut p = ReduceLROnPlateau::new(1.0, cfg).unwrap();
        assert_eq!(p.observe(0.5), 1.0); // first observation improves on −∞
        assert_eq!(p.observe(0.55), 0.5); // not better by 0.1: reduce at once (patience 0)
        assert_eq!(p.observe(0.7), 0.5); // better
        assert_eq!(p.observe(f64::NAN), 0.3); // NaN never improves; clamped at min_lr
        assert_eq!(p.observe(0.0), 0.3); // below eps of change: stays
        assert_eq!(p.best(), 0.7);
    }
}
