//! Weight initialisation, mirroring `torch.nn.init`.
//!
//! Every initialiser draws from an explicit RNG the caller seeds, so a network built from a seed
//! is reproducible bit for bit. Fans follow PyTorch for a weight shaped `[out, in]`:
//! `fan_in = in`, `fan_out = out` (and for more axes, the trailing ones multiply both, as for
//! convolution kernels).

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use rand::{Rng, RngExt};

/// The nonlinearity an initialisation is tuned for (PyTorch's `nonlinearity` argument).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// Identity / no activation: gain 1.
    Linear,
    /// Logistic sigmoid: gain 1.
    Sigmoid,
    /// tanh: gain 5/3.
    Tanh,
    /// ReLU: gain √2.
    Relu,
    /// Leaky ReLU with the given negative slope: gain √(2 / (1 + slope²)).
    LeakyRelu(f64),
    /// SELU: gain 3/4.
    Selu,
}

/// The recommended gain for a nonlinearity (`torch.nn.init.calculate_gain`).
///
/// # Example
/// ```
/// use vgrad::nn::init::{calculate_gain, Nonlinearity};
/// assert!((calculate_gain(Nonlinearity::Relu) - 2f64.sqrt()).abs() < 1e-15);
/// assert!((calculate_gain(Nonlinearity::Tanh) - 5.0 / 3.0).abs() < 1e-15);
/// ```
pub fn calculate_gain(nl: Nonlinearity) -> f64 {
    match nl {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu(s) => (2.0 / (1.0 + s * s)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// Which fan a Kaiming initialisation preserves the variance over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FanMode {
    /// Preserve the variance of activations in the forward pass (PyTorch's default).
    #[default]
    FanIn,
    /// Preserve the variance of gradients in the backward pass.
    FanOut,
}

/// `(fan_in, fan_out)` of a weight shape, as PyTorch computes them.
///
/// # Errors
/// [`Error::Shape`] for shapes with fewer than 2 axes (PyTorch refuses them too), or whose fans
/// overflow.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::Shape(format!(
            "fan in and fan out need at least 2 axes, got {shape:?}"
        )));
    }
    let overflow = || Error::Shape(format!("the fans of shape {shape:?} overflow"));
    let receptive = shape[2..]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let fan_in = shape[1].checked_mul(receptive).ok_or_else(overflow)?;
    let fan_out = shape[0].checked_mul(receptive).ok_or_else(overflow)?;
    Ok((fan_in, fan_out))
}

/// An initialisation scheme. Each variant's doc gives the PyTorch function it mirrors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros (`zeros_`).
    Zeros,
    /// All ones (`ones_`).
    Ones,
    /// Every element equal to the value (`constant_`).
    Constant(f64),
    /// U(low, high) (`uniform_`).
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// N(mean, std²) (`normal_`).
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Glorot: U(−b, b), b = gain·√(6 / (fan_in + fan_out)) (`xavier_uniform_`).
    XavierUniform {
        /// Usually [`calculate_gain`] of the following activation.
        gain: f64,
    },
    /// Glorot: N(0, std²), std = gain·√(2 / (fan_in + fan_out)) (`xavier_normal_`).
    XavierNormal {
        /// Usually [`calculate_gain`] of the following activation.
        gain: f64,
    },
    /// He: U(−b, b), b = gain·√(3 / fan) (`kaiming_uniform_`).
    KaimingUniform {
        /// Which fan to preserve.
        mode: FanMode,
        /// Sets the gain (PyTorch's default is leaky_relu with slope 0, i.e. √2).
        nonlinearity: Nonlinearity,
    },
    /// He: N(0, std²), std = gain / √fan (`kaiming_normal_`).
    KaimingNormal {
        /// Which fan to preserve.
        mode: FanMode,
        /// Sets the gain.
        nonlinearity: Nonlinearity,
    },
    /// LeCun: N(0, 1/fan_in), the init SELU networks are designed for (PyTorch has no
    /// dedicated function; it is `kaiming_normal_(nonlinearity="linear")`).
    LecunNormal,
    /// LeCun: U(−b, b), b = √(3 / fan_in).
    LecunUniform,
    /// `nn.Linear`'s default for both weight and bias: U(±1/√fan_in), where fan_in is the
    /// weight's input width (PyTorch writes it as `kaiming_uniform_(a=√5)`).
    LinearDefault {
        /// The layer's input width.
        fan_in: usize,
    },
}

impl Init {
    /// Kaiming-uniform for ReLU networks with PyTorch's defaults for the rest.
    pub const HE_UNIFORM: Init = Init::KaimingUniform {
        mode: FanMode::FanIn,
        nonlinearity: Nonlinearity::Relu,
    };
    /// Kaiming-normal for ReLU networks.
    pub const HE_NORMAL: Init = Init::KaimingNormal {
        mode: FanMode::FanIn,
        nonlinearity: Nonlinearity::Relu,
    };

    /// The distribution this scheme gives a tensor of `shape`: `Dist::Uniform(low, high)`,
    /// `Dist::Normal(mean, std)` or `Dist::Constant(value)`.
    ///
    /// # Errors
    /// [`Error::Shape`] when a fan-based scheme gets a shape with fewer than 2 axes or a zero
    /// fan; [`Error::Config`] for a negative or non-finite parameter.
    pub fn distribution(&self, shape: &[usize]) -> Result<Dist> {
        let fan = |mode: FanMode| -> Result<f64> {
            let (fi, fo) = fans(shape)?;
            let f = match mode {
                FanMode::FanIn => fi,
                FanMode::FanOut => fo,
            };
            if f == 0 {
                return Err(Error::Shape(format!("zero fan for shape {shape:?}")));
            }
            Ok(f as f64)
        };
        let d = match *self {
            Init::Zeros => Dist::Constant(0.0),
            Init::Ones => Dist::Constant(1.0),
            Init::Constant(v) => Dist::Constant(v),
            Init::Uniform { low, high } => Dist::Uniform(low, high),
            Init::Normal { mean, std } => Dist::Normal(mean, std),
            Init::XavierUniform { gain } => {
                let (fi, fo) = fans(shape)?;
                let b = gain * (6.0 / (fi + fo).max(1) as f64).sqrt();
                Dist::Uniform(-b, b)
            }
            Init::XavierNormal { gain } => {
                let (fi, fo) = fans(shape)?;
                Dist::Normal(0.0, gain * (2.0 / (fi + fo).max(1) as f64).sqrt())
            }
            Init::KaimingUniform { mode, nonlinearity } => {
                let b = calculate_gain(nonlinearity) * (3.0 / fan(mode)?).sqrt();
                Dist::Uniform(-b, b)
            }
            Init::KaimingNormal { mode, nonlinearity } => {
                Dist::Normal(0.0, calculate_gain(nonlinearity) / fan(mode)?.sqrt())
            }
            Init::LecunNormal => Dist::Normal(0.0, 1.0 / fan(FanMode::FanIn)?.sqrt()),
            Init::LecunUniform => {
                let b = (3.0 / fan(FanMode::FanIn)?).sqrt();
                Dist::Uniform(-b, b)
            }
            Init::LinearDefault { fan_in } => {
                if fan_in == 0 {
                    return Err(Error::Shape("Linear with 0 input features".into()));
                }
                let b = 1.0 / (fan_in as f64).sqrt();
                Dist::Uniform(-b, b)
            }
        };
        match d {
            Dist::Uniform(l, h) if !(l.is_finite() && h.is_finite() && l <= h) => {
                Err(Error::Config(format!(
                    "uniform bounds ({l}, {h}) must be finite with low <= high"
                )))
            }
            Dist::Normal(m, s) if !(m.is_finite() && s.is_finite() && s >= 0.0) => {
                Err(Error::Config(format!(
                    "normal mean {m} / std {s} must be finite, std >= 0"
                )))
            }
            Dist::Constant(v) if !v.is_finite() => {
                Err(Error::Config(format!("constant {v} is not finite")))
            }
            d => Ok(d),
        }
    }

    /// A fresh tensor of `shape` drawn from this scheme with `rng`.
    ///
    /// # Errors
    /// As [`Init::distribution`]; [`Error::Alloc`] if the tensor does not fit in memory.
    ///
    /// # Example
    /// ```
    /// use rand::{SeedableRng, rngs::StdRng};
    /// use vgrad::nn::init::Init;
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let w = Init::XavierUniform { gain: 1.0 }.tensor::<f32>(&[64, 64], &mut rng)?;
    /// let bound = (6.0f32 / 128.0).sqrt();
    /// assert!(w.data().iter().all(|v| v.abs() <= bound));
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn tensor<T: Element>(&self, shape: &[usize], rng: &mut impl Rng) -> Result<Tensor<T>> {
        let d = self.distribution(shape)?;
        // Fallible allocation: a layer too large for memory is an error, not an abort.
        Tensor::try_from_fn_named("init", shape, |_| T::of(d.sample(rng)))
    }
}

/// A sampling distribution produced by [`Init::distribution`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    /// U(low, high).
    Uniform(f64, f64),
    /// N(mean, std²).
    Normal(f64, f64),
    /// Always the value.
    Constant(f64),
}

impl Dist {
    /// One draw.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Dist::Uniform(l, h) => l + (h - l) * rng.random::<f64>(),
            Dist::Normal(m, s) => m + s * standard_normal(rng),
            Dist::Constant(v) => v,
        }
    }

    /// The standard deviation of a draw.
    pub fn std(&self) -> f64 {
        match *self {
            Dist::Uniform(l, h) => (h - l) / 12f64.sqrt(),
            Dist::Normal(_, s) => s,
            Dist::Constant(_) => 0.0,
        }
    }
}

/// One N(0, 1) draw by the Box–Muller transform (one of the pair is discarded: simplicity over
/// speed, initialisation is not a hot path).
pub(crate) fn standard_normal(rng: &mut impl Rng) -> f64 {
    // 1 − u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
