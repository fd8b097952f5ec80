//! `Dropout`: random zeroing with inverted scaling in training, the identity in evaluation.

use super::batchnorm::py_float;
use super::module::{Ctx, Module, Visitor, VisitorMut};
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use rand::{rngs::ChaCha12Rng, RngExt, SeedableRng};
use std::fmt;

/// Dropout (PyTorch's `nn.Dropout`): in training, each element is zeroed with probability `p`
/// and the survivors are scaled by `1/(1 − p)`, so the expected output equals the input
/// ("inverted" dropout); in evaluation the layer is the identity and costs nothing.
///
/// `y = x ⊙ m`, with `mᵢ = 1/(1 − p)` with probability `1 − p` and `0` otherwise, drawn
/// independently per element and per forward call. Accepts any shape. Derivative: the same
/// mask, `dx = g ⊙ m`. With `p = 1` every element is dropped (output and gradient zero, as in
/// PyTorch).
///
/// The layer owns a seeded generator (ChaCha12, the generator behind `rand`'s `StdRng`, with
/// the same stream for the same seed), so a run is reproducible from its seed. A clone
/// continues the same stream: it draws the masks the original would draw next.
/// In evaluation mode the input is returned unchanged (and keeps the label of the layer that
/// made it).
///
/// # Example
/// ```
/// use vgrad::nn::{Ctx, Dropout, Module};
/// use vgrad::{Tape, Tensor};
/// let mut drop = Dropout::new(0.5, 42)?;
/// assert_eq!(format!("{drop:?}"), "Dropout(p=0.5, inplace=False)");
/// let tape = Tape::<f32>::new();
/// let x = tape.constant(Tensor::ones(&[1000]));
/// let y = drop.forward(&mut Ctx::new(&tape), x).value();
/// // Survivors are scaled to 2 = 1/(1 − p); about half survive.
/// assert!(y.data().iter().all(|&v| v == 0.0 || v == 2.0));
/// let kept = y.data().iter().filter(|&&v| v > 0.0).count();
/// assert!((400..600).contains(&kept));
/// drop.eval();
/// let z = drop.forward(&mut Ctx::new(&tape), x);
/// assert_eq!(z.id(), x.id()); // the identity: nothing is recorded
/// # Ok::<(), vgrad::Error>(())
/// ```
pub struct Dropout {
    p: f64,
    training: bool,
    // `StdRng` is ChaCha12 behind a type that is not `Clone` (rand 0.10); the generator itself
    // is used so a cloned layer continues the same stream (same seeds, same masks as before).
    rng: ChaCha12Rng,
}

/// A copy that draws the same masks from here on: the generator's seed, stream and position.
impl Clone for Dropout {
    fn clone(&self) -> Self {
        let mut rng = ChaCha12Rng::from_seed(self.rng.get_seed());
        rng.set_stream(self.rng.get_stream());
        rng.set_word_pos(self.rng.get_word_pos());
        Dropout {
            p: self.p,
            training: self.training,
            rng,
        }
    }
}

impl Dropout {
    /// A dropout layer with drop probability `p`, its generator seeded with `seed`, in
    /// training mode.
    ///
    /// # Errors
    /// [`Error::Config`] if `p` is not in `[0, 1]` (PyTorch's check).
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Config(format!(
                "Dropout: probability has to be between 0 and 1, but got {p}"
            )));
        }
        Ok(Dropout {
            p,
            training: true,
            rng: ChaCha12Rng::seed_from_u64(seed),
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Training mode: drop and rescale. (The same as [`Module::train`], callable without naming
    /// the element type, since `Dropout` is a module for every element type.)
    pub fn train(&mut self) {
        self.training = true;
    }

    /// Evaluation mode: the identity. (The same as [`Module::eval`].)
    pub fn eval(&mut self) {
        self.training = false;
    }

    /// Restarts the generator from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha12Rng::seed_from_u64(seed);
    }
}

impl<T: Element> Module<T> for Dropout {
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        // Labelling the unchanged input would overwrite the label of the layer that made it.
        if !self.training || self.p == 0.0 {
            return x;
        }
        let keep = T::of(1.0 / (1.0 - self.p)); // +∞ for p = 1, but then nothing is kept
        let p = self.p;
        let rng = &mut self.rng;
        // `random` is uniform on [0, 1), so p = 1 drops every element.
        let mask = Tensor::from_fn(&x.shape(), |_| {
            if rng.random::<f64>() < p {
                T::zero()
            } else {
                keep
            }
        });
        ctx.label(x * ctx.tape().constant(mask))
    }

    fn visit(&self, _v: &mut dyn Visitor<T>) {}

    fn visit_mut(&mut self, _v: &mut dyn VisitorMut<T>) {}

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl fmt::Debug for Dropout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dropout(p={}, inplace=False)", py_float(self.p))
    }
}
