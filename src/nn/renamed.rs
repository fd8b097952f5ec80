//! The names items had before the crate settled on one casing rule (Rust's: an acronym is one
//! word, `RmsProp`, `StepLr`; see DESIGN.md, "One path and one casing for every item"), kept
//! as deprecated aliases so that code written against them still compiles, with a warning that
//! names the new one. Hidden from the documentation; to be removed in a later release.
//!
//! Saved optimiser state is not affected: files name the optimiser by PyTorch's class name
//! (`RMSprop`), which is data, not a Rust name.

use super::{
    CosineAnnealingLr, ExponentialLr, ReduceLrOnPlateau, RmsProp, RmsPropConfig, SequentialLr,
    StepLr,
};

/// Renamed [`RmsProp`].
#[deprecated(note = "renamed `RmsProp` (Rust's casing: an acronym is one word)")]
pub type RMSprop<T> = RmsProp<T>;

/// Renamed [`RmsPropConfig`].
#[deprecated(note = "renamed `RmsPropConfig` (Rust's casing: an acronym is one word)")]
pub type RMSpropConfig = RmsPropConfig;

/// Renamed [`StepLr`].
#[deprecated(note = "renamed `StepLr` (Rust's casing: an acronym is one word)")]
pub type StepLR = StepLr;

/// Renamed [`ExponentialLr`].
#[deprecated(note = "renamed `ExponentialLr` (Rust's casing: an acronym is one word)")]
pub type ExponentialLR = ExponentialLr;

/// Renamed [`CosineAnnealingLr`].
#[deprecated(note = "renamed `CosineAnnealingLr` (Rust's casing: an acronym is one word)")]
pub type CosineAnnealingLR = CosineAnnealingLr;

/// Renamed [`SequentialLr`].
#[deprecated(note = "renamed `SequentialLr` (Rust's casing: an acronym is one word)")]
pub type SequentialLR = SequentialLr;

/// Renamed [`ReduceLrOnPlateau`].
#[deprecated(note = "renamed `ReduceLrOnPlateau` (Rust's casing: an acronym is one word)")]
pub type ReduceLROnPlateau = ReduceLrOnPlateau;

#[cfg(test)]
mod tests {
    /// Code written against the old names still compiles and builds the same thing.
    #[test]
    #[allow(deprecated)]
    fn old_names_still_work() {
        use super::*;
        use crate::nn::{LrSchedule, Optimizer, PlateauConfig};
        let opt = RMSprop::<f32>::new(RMSpropConfig {
            momentum: 0.9,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(opt.lr(), 1e-2);
        let s = SequentialLR::new(
            vec![
                Box::new(StepLR::new(2, 0.5).unwrap()),
                Box::new(ExponentialLR::new(0.5).unwrap()),
                Box::new(CosineAnnealingLR::new(4, 0.0).unwrap()),
            ],
            vec![3, 5],
        )
        .unwrap();
        assert_eq!(s.lr(1.0, 2), 0.5);
        let p = ReduceLROnPlateau::new(0.1, PlateauConfig::default()).unwrap();
        assert_eq!(p.lr(), 0.1);
        // The old module paths too (hidden, one path in the docs).
        let _: crate::nn::optim::RMSprop<f64> =
            crate::nn::optim::RMSprop::new(Default::default()).unwrap();
        let _ = crate::nn::schedule::StepLR::new(1, 0.5).unwrap();
    }
}
