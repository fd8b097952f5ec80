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
    /// A (semi-)orthogonal matrix scaled by `gain` (`orthogonal_`; Saxe et al. 2014): see
    /// [`orthogonal`]. Its elements are not independent draws, so it has no
    /// [`distribution`](Init::distribution); [`tensor`](Init::tensor) builds it.
    Orthogonal {
        /// Scale of the matrix: every singular value equals `gain`.
        gain: f64,
    },
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
    /// fan; [`Error::Config`] for a negative or non-finite parameter, and for
    /// [`Init::Orthogonal`], whose elements have no distribution of their own.
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
            Init::Orthogonal { .. } => {
                return Err(Error::Config(
                    "orthogonal init draws a whole matrix, not independent elements: \
                     build it with Init::tensor or nn::init::orthogonal"
                        .into(),
                ))
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
        if let Init::Orthogonal { gain } = *self {
            return orthogonal(shape, gain, rng);
        }
        let d = self.distribution(shape)?;
        // Fallible allocation: a layer too large for memory is an error, not an abort.
        Tensor::try_from_fn_named("init", shape, |_| T::of(d.sample(rng)))
    }
}

/// A (semi-)orthogonal matrix times `gain`, PyTorch's `torch.nn.init.orthogonal_` (Saxe et
/// al. 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear neural
/// networks").
///
/// The shape is read as a matrix of `rows = shape[0]` and `cols = numel / rows` (trailing axes
/// flattened, as for a convolution kernel). As in PyTorch: draw a `rows × cols` matrix of
/// independent N(0, 1) entries (transposed when `rows < cols`, so the factored matrix is
/// tall), factor it `A = QR` by Householder QR, multiply each column of `Q` by the sign of the
/// matching diagonal entry of `R`, transpose back, and scale by `gain`. The sign correction is
/// what makes `Q` Haar-distributed (uniform over the orthogonal group; Mezzadri 2007,
/// arXiv:math-ph/0609050): without it LAPACK's sign convention (which `torch.linalg.qr` uses)
/// biases `Q`. The result is the one QR factor whose `R` has a positive diagonal, which is what
/// nalgebra's QR returns already; the correction is kept as the definition.
///
/// The result has orthonormal columns times `gain` (`WᵀW = gain²·I`) when `rows ≥ cols`, and
/// orthonormal rows (`WWᵀ = gain²·I`) when `rows < cols`: every singular value is `gain`.
/// vgrad's generator is not PyTorch's, so the matrices differ from PyTorch's for a seed; their
/// distribution is the same. The factorisation runs in f64 whatever `T` is.
///
/// Deviations, on events of probability zero: a zero diagonal entry of `R` counts as positive
/// (PyTorch's `sign(0) = 0` would zero that column).
///
/// # Errors
/// [`Error::Shape`] for fewer than 2 axes (PyTorch raises `ValueError` too) or a shape whose
/// element count overflows; [`Error::Config`] for a non-finite gain; [`Error::Alloc`] if the
/// matrix does not fit in memory. A shape with no elements gives an empty tensor (PyTorch's
/// no-op).
///
/// # Example
/// ```
/// use vgrad::nn::init::orthogonal;
/// let w = orthogonal::<f64>(&[3, 5], 2.0, &mut vgrad::seeded_rng(0))?;
/// // Wide: the rows are orthogonal, each of norm `gain`.
/// let wwt = w.matmul(&w.transpose(0, 1));
/// for i in 0..3 {
///     for j in 0..3 {
///         let want = if i == j { 4.0 } else { 0.0 };
///         assert!((wwt.data()[i * 3 + j] - want).abs() < 1e-12);
///     }
/// }
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn orthogonal<T: Element>(shape: &[usize], gain: f64, rng: &mut impl Rng) -> Result<Tensor<T>> {
    if shape.len() < 2 {
        return Err(Error::Shape(format!(
            "orthogonal init needs at least 2 axes, got {shape:?}"
        )));
    }
    if !gain.is_finite() {
        return Err(Error::Config(format!(
            "orthogonal init: gain {gain} is not finite"
        )));
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::Shape(format!("the element count of {shape:?} overflows")))?;
    if numel == 0 {
        return Tensor::try_from_fn_named("init", shape, |_| T::zero());
    }
    let rows = shape[0];
    let cols = numel / rows;
    let q = haar_columns(rows, cols, rng)?;
    // `q` is max × min with orthonormal columns: the matrix itself when tall, its transpose
    // when wide.
    let at = |i: usize, j: usize| if rows >= cols { q[(i, j)] } else { q[(j, i)] };
    Tensor::try_from_fn_named("init", shape, |k| T::of(gain * at(k / cols, k % cols)))
}

/// `Q`, `max(rows, cols) × min(rows, cols)` with Haar-distributed orthonormal columns, from the
/// N(0, 1) draws PyTorch's `orthogonal_` makes for a `rows × cols` matrix, in its order.
fn haar_columns(rows: usize, cols: usize, rng: &mut impl Rng) -> Result<nalgebra::DMatrix<f64>> {
    let mut draws = Vec::new();
    draws
        .try_reserve_exact(rows * cols)
        .map_err(|_| Error::Alloc {
            shape: vec![rows, cols],
            bytes: rows.saturating_mul(cols).saturating_mul(8),
        })?;
    draws.extend((0..rows * cols).map(|_| standard_normal(rng)));
    // The draws fill `rows × cols` row by row; nalgebra stores column by column, so the same
    // buffer read as a `cols × rows` matrix is the transpose: the tall matrix PyTorch factors
    // when `rows < cols`.
    let flat_t = nalgebra::DMatrix::from_vec(cols, rows, draws);
    let tall = if rows >= cols {
        flat_t.transpose()
    } else {
        flat_t
    };
    let qr = tall.qr();
    // nalgebra 0.35 returns R's diagonal as moduli with the signs folded into Q, so this loop
    // changes nothing today; it states the definition and survives a change of convention.
    let r_diag = qr.r().diagonal();
    let mut q = qr.q();
    for (j, mut col) in q.column_iter_mut().enumerate() {
        if r_diag[j] < 0.0 {
            col.neg_mut();
        }
    }
    Ok(q)
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
