//! Evaluation metrics computed from values, outside the tape.

use crate::tensor::{Element, Tensor};

/// The fraction of rows of `logits` (`[N, C]`, or any scores whose largest entry is the
/// prediction) whose largest entry is at the row's target class: classification accuracy in
/// `[0, 1]`. An empty batch has accuracy 0. Ties go to the first class, as
/// [`Tensor::argmax`] breaks them.
///
/// # Panics
/// If `logits` is not 2-D or `targets.len()` differs from its number of rows.
///
/// # Example
/// ```
/// use vgrad::nn::accuracy;
/// use vgrad::Tensor;
/// let logits = Tensor::from_vec(vec![2.0f32, 0.1, 0.3, 0.9, 1.0, 5.0], &[3, 2])?;
/// assert!((accuracy(&logits, &[0, 1, 0]) - 2.0 / 3.0).abs() < 1e-12);
/// # Ok::<(), vgrad::Error>(())
/// ```
#[track_caller]
pub fn accuracy<T: Element>(logits: &Tensor<T>, targets: &[usize]) -> f64 {
    assert!(
        logits.ndim() == 2 && logits.shape()[0] == targets.len(),
        "accuracy: logits of shape {:?} for {} targets",
        logits.shape(),
        targets.len()
    );
    if targets.is_empty() {
        return 0.0;
    }
    let hits = logits
        .argmax(1)
        .iter()
        .zip(targets)
        .filter(|(p, t)| p == t)
        .count();
    hits as f64 / targets.len() as f64
}
