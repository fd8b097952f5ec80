//! Mean-field predictions of trainability at initialisation: will a deep network's signal and
//! gradient survive its depth?
//!
//! A fully connected network `hˡ = Wˡ φ(hˡ⁻¹) + bˡ` with weights `W_ij ~ N(0, σ_w²/N)` and biases
//! `b_i ~ N(0, σ_b²)`, in the limit of wide layers, has pre-activations that are Gaussian with a
//! variance `qˡ` that evolves deterministically with depth (Poole et al. 2016; Schoenholz, Gilmer,
//! Ganguli & Sohl-Dickstein 2017, "Deep information propagation"). With `Dz` the standard normal
//! measure:
//!
//! * **Variance map** `qˡ⁺¹ = V(qˡ) = σ_w² ∫Dz φ(√qˡ z)² + σ_b²`, which converges to a fixed
//!   point `q*`.
//! * **χ₁ = σ_w² ∫Dz φ'(√q* z)²**, the mean squared singular value of one layer's Jacobian
//!   `∂hˡ⁺¹/∂hˡ`. A backward pass multiplies the squared norm of the gradient by χ₁ per layer,
//!   so the gradient norm by √χ₁: χ₁ < 1 is the *ordered* phase (gradients vanish towards the
//!   input), χ₁ > 1 the *chaotic* phase (they explode), χ₁ = 1 the *edge of chaos*, where deep
//!   networks train.
//! * **Correlation map** of two inputs with correlation `c`, at the fixed variance:
//!   `C(c) = (σ_w² ∫Dz₁Dz₂ φ(u₁)φ(u₂) + σ_b²)/q*` with `u₁ = √q* z₁`,
//!   `u₂ = √q* (c z₁ + √(1−c²) z₂)`. `c = 1` is always a fixed point, stable when χ₁ ≤ 1; in the
//!   chaotic phase the stable fixed point is some `c* < 1`. Its slope there is
//!   `χ_c = σ_w² ∫Dz₁Dz₂ φ'(u₁)φ'(u₂)` (χ_c = χ₁ at `c* = 1`).
//! * **Depth scales** over which the two maps forget their start, Schoenholz et al. eqs. (7)
//!   and (9): `ξ_q = −1/ln χ_q` with `χ_q = V'(q*) = χ₁ + σ_w² ∫Dz φ''(√q* z)φ(√q* z)`, and
//!   `ξ_c = −1/ln χ_c`, which diverges at the edge of chaos. Signals propagate through about
//!   `ξ_c` layers; deeper networks away from criticality do not train (ibid., §4).
//! * **Critical σ_w** for a given σ_b: the root of χ₁ = 1 along the fixed-point curve, the
//!   order-to-chaos line. tanh at σ_b = 0 has it at σ_w = 1 (with q* = 0); ReLU at σ_w = √2
//!   for every σ_b (He initialisation). At criticality, orthogonal weights give tanh networks
//!   dynamical isometry (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid");
//!   see [`orthogonal`](crate::nn::init::orthogonal).
//!
//! The Gaussian integrals are computed by the midpoint rule on a uniform grid of
//! [`QUADRATURE_NODES`] nodes, step 1/32, over `z ∈ [−12, 12]` (product rule in two
//! dimensions). For integrands analytic in a strip around the real axis this converges
//! geometrically, like `e^(−2πd/h)`, and it keeps doing so as `q` grows: tanh's poles sit at
//! distance `d = π/(2√q)` from the axis in `z`, where Gauss–Hermite with 160 nodes (numpy's
//! `hermegauss`) was measured off by 1e-7 at `q = 4` and 2e-4 at `q = 13.6` for `E[tanh(√q z)²]`
//! (this rule: rounding). The grid is symmetric with no node at 0, so `x²·[x > 0]` and `[x > 0]`
//! (ReLU's kink) integrate exactly; a kink in `φ'` away from that symmetry (ELU's) costs
//! O(h²), about 1e-5 relative. Two-dimensional expectations use the product of a coarser rule
//! (step 1/8 on [−10, 10], 160 nodes a side; its error on tanh at `q = 13.6` is about 1e-9, on
//! ReLU's correlation map, whose kink runs across the grid, about 1e-3).
//! The activation's value and derivative are the engine's own scalar definitions, so the predictions describe the
//! functions vgrad's layers compute. `φ''` is never needed: Stein's lemma turns
//! `∫Dz (φ'² + φφ'')(√q z)` into `∫Dz z·φφ'(√q z)/√q`.
//!
//! # Example
//! ```
//! use vgrad::meanfield::{critical_sigma_w, MeanField};
//! use vgrad::nn::Activation;
//!
//! // tanh with σ_b = 0.3: ordered below the critical σ_w, chaotic above.
//! let sw = critical_sigma_w(Activation::Tanh, 0.3)?;
//! let ordered = MeanField::new(Activation::Tanh, 0.8 * sw, 0.3)?.predict()?;
//! let chaotic = MeanField::new(Activation::Tanh, 1.5 * sw, 0.3)?.predict()?;
//! assert!(ordered.chi1 < 1.0 && ordered.c_star == 1.0);
//! assert!(chaotic.chi1 > 1.0 && chaotic.c_star < 1.0);
//! // Gradient norms shrink by √χ₁ per layer towards the input.
//! println!("{:.3} per layer, signals last {:.1} layers", ordered.chi1.sqrt(), ordered.xi_c);
//! # Ok::<(), vgrad::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::nn::Activation;
use crate::ops::elementwise::{
    Elu, Gelu, GeluTanh, LeakyRelu, Relu, Selu, Sigmoid, Silu, Softplus, Tanh, Unary, WithDef,
};
use crate::ops::expr::Elementwise;
use crate::ops::GeluApprox;
use std::sync::OnceLock;

/// Nodes per unit of `z` in the one-dimensional rule (step 1/64).
const STEPS_PER_UNIT: usize = 64;

/// The one-dimensional rule covers `z ∈ [−12, 12]`; the normal density beyond is below 1e-31.
const Z_MAX: usize = 12;

/// How many nodes every one-dimensional expectation uses (1536).
pub const QUADRATURE_NODES: usize = 2 * Z_MAX * STEPS_PER_UNIT;

/// The variance the fixed-point search starts from, `q⁰`: unit-variance pre-activations.
const Q0: f64 = 1.0;

/// Above this variance the variance map is taken to diverge.
const Q_MAX: f64 = 1e100;

/// Below this variance the fixed point is taken to be 0.
const Q_MIN: f64 = 1e-250;

/// The predictions of mean-field theory for one activation, σ_w and σ_b (see the
/// [module docs](self) for the equations).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// σ_w: weights are N(0, σ_w²/fan_in).
    pub sigma_w: f64,
    /// σ_b: biases are N(0, σ_b²).
    pub sigma_b: f64,
    /// `q*`, the fixed point of the variance map that `q⁰ = 1` flows to: the variance of a
    /// pre-activation deep in the network.
    pub q_star: f64,
    /// χ₁ = σ_w² E[φ'(√q* z)²]: the factor per layer on the squared gradient norm (so √χ₁ on
    /// the norm) and the slope of the correlation map at `c = 1`.
    pub chi1: f64,
    /// χ_q = V'(q*), the variance map's slope at its fixed point.
    pub chi_q: f64,
    /// The stable fixed point of the correlation map: 1 when χ₁ ≤ 1, below 1 in the chaotic
    /// phase.
    pub c_star: f64,
    /// χ_c, the correlation map's slope at `c*` (equal to χ₁ when `c* = 1`).
    pub chi_c: f64,
    /// ξ_q = −1/ln χ_q, the depth over which the variance reaches `q*` (∞ if χ_q ≥ 1).
    pub xi_q: f64,
    /// ξ_c = −1/ln χ_c, the depth over which correlations reach `c*`, the depth signals can
    /// travel (∞ at the edge of chaos).
    pub xi_c: f64,
}

/// A mean-field model of a deep fully connected network: an activation with σ_w and σ_b.
///
/// The maps are public for inspection; [`predict`](MeanField::predict) computes everything
/// the [`Prediction`] holds.
#[derive(Clone, Copy, Debug)]
pub struct MeanField {
    phi: Phi,
    sigma_w: f64,
    sigma_b: f64,
}

impl MeanField {
    /// The model of `act` with weights N(0, σ_w²/fan_in) and biases N(0, σ_b²).
    ///
    /// # Errors
    /// [`Error::Config`] when σ_w or σ_b is negative or not finite, or the activation's
    /// parameter is not finite (softplus also needs β > 0).
    ///
    /// # Example
    /// ```
    /// use vgrad::meanfield::MeanField;
    /// use vgrad::nn::Activation;
    /// let p = MeanField::new(Activation::Relu, 2f64.sqrt(), 0.0)?.predict()?;
    /// assert!((p.chi1 - 1.0).abs() < 1e-12); // He initialisation is critical
    /// assert!(MeanField::new(Activation::Relu, -1.0, 0.0).is_err());
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn new(act: Activation<f64>, sigma_w: f64, sigma_b: f64) -> Result<Self> {
        for (name, v) in [("sigma_w", sigma_w), ("sigma_b", sigma_b)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "mean field: {name} = {v} must be finite and >= 0"
                )));
            }
        }
        Ok(MeanField {
            phi: Phi::of(act)?,
            sigma_w,
            sigma_b,
        })
    }

    /// The variance map `V(q) = σ_w² E[φ(√q z)²] + σ_b²`, z ~ N(0, 1): the variance of the next
    /// layer's pre-activations given this layer's. `q` is clamped at 0 from below.
    pub fn variance_map(&self, q: f64) -> f64 {
        let s = q.max(0.0).sqrt();
        let e = expect(|z| {
            let y = self.phi.f(s * z);
            y * y
        });
        self.sigma_w * self.sigma_w * e + self.sigma_b * self.sigma_b
    }

    /// `σ_w² E[φ'(√q z)²]`: χ₁ when `q = q*`. At `q = 0` it is the limit `q → 0⁺`
    /// (σ_w²/2 for ReLU, not relu'(0)² = 0).
    pub fn chi1_at(&self, q: f64) -> f64 {
        let s = positive_sqrt(q);
        let e = expect(|z| {
            let d = self.phi.df(s * z);
            d * d
        });
        self.sigma_w * self.sigma_w * e
    }

    /// The correlation map `C(c)` at variance `q` (in both inputs): the correlation of the next
    /// layer's pre-activations for two inputs whose pre-activations have correlation `c`.
    /// `c` is clamped to [−1, 1]. With `q = 0` the pre-activations are constant and `C = 1`.
    pub fn correlation_map(&self, c: f64, q: f64) -> f64 {
        let sw2 = self.sigma_w * self.sigma_w;
        let sb2 = self.sigma_b * self.sigma_b;
        let next = sw2 * self.pair(c, q, |phi, x| phi.f(x)) + sb2;
        // The variance both inputs reach, V(q), on the same rule: dividing by it (not by q)
        // keeps C(1) = 1 off the fixed point too.
        let v = sw2 * self.pair(1.0, q, |phi, x| phi.f(x)) + sb2;
        if v > 0.0 {
            next / v
        } else {
            1.0
        }
    }

    /// `σ_w² E[φ'(u₁)φ'(u₂)]` for pre-activations of variance `q` and correlation `c`: χ_c at
    /// `(c*, q*)`.
    fn chi_c_at(&self, c: f64, q: f64) -> f64 {
        self.sigma_w * self.sigma_w * self.pair(c, q, |phi, x| phi.df(x))
    }

    /// `E[g(u₁)g(u₂)]` for `u₁ = √q z₁`, `u₂ = √q (c z₁ + √(1−c²) z₂)`, by the product
    /// rule.
    fn pair(&self, c: f64, q: f64, g: impl Fn(&Phi, f64) -> f64) -> f64 {
        let c = c.clamp(-1.0, 1.0);
        let s = q.max(0.0).sqrt();
        let perp = (1.0 - c * c).max(0.0).sqrt();
        let r = coarse_rule();
        let e = |f: &dyn Fn(f64) -> f64| -> f64 {
            r.nodes
                .iter()
                .zip(&r.weights)
                .map(|(&z, &w)| w * f(z))
                .sum()
        };
        e(&|z1| g(&self.phi, s * z1) * e(&|z2| g(&self.phi, s * (c * z1 + perp * z2))))
    }

    /// The fixed point `q*` of the variance map that the iteration from `q⁰ = 1` approaches:
    /// found by stepping from 1 in the direction the map moves (×/÷ 16) until `V(q) − q` changes
    /// sign, then bisecting to full precision. Where every `q` is fixed (ReLU at σ_w = √2,
    /// σ_b = 0; the identity at σ_w = 1, σ_b = 0), `q* = 1`; where the map flows to 0
    /// (σ_b = 0 and φ(0) = 0 in the ordered phase), `q* = 0`.
    ///
    /// # Errors
    /// [`Error::Config`] when the variance grows without bound (no fixed point: ReLU with
    /// σ_w² > 2, or σ_w² = 2 with σ_b > 0).
    pub fn fixed_point(&self) -> Result<f64> {
        // At the start, V(q) − q within the quadrature's rounding (about 1e-14 relative) counts
        // as 0: at ReLU's σ_w = √2, σ_b = 0 every q is fixed, and rounding must not push q* to
        // 0 or ∞. The search itself uses the plain difference.
        let g_raw = |q: f64| self.variance_map(q) - q;
        let g = |q: f64| {
            let v = self.variance_map(q);
            if (v - q).abs() <= 1e-13 * v.abs().max(q) {
                0.0
            } else {
                v - q
            }
        };
        let g0 = g(Q0);
        if g0 == 0.0 {
            return Ok(Q0);
        }
        let (mut lo, mut hi) = if g0 > 0.0 {
            // The variance grows: the fixed point lies above.
            let mut lo = Q0;
            loop {
                let hi = lo * 16.0;
                let gh = g_raw(hi);
                if !(hi <= Q_MAX && gh.is_finite()) {
                    return Err(self.diverges());
                }
                // Below 0 by more than rounding: a map that only grows as fast as q (ReLU at
                // σ_w = √2, σ_b > 0) must not find a fixed point in its rounding at q ~ 1e14.
                if gh < -1e-13 * hi {
                    break (lo, hi);
                }
                lo = hi;
            }
        } else {
            let mut hi = Q0;
            loop {
                let lo = hi / 16.0;
                if lo < Q_MIN {
                    // V(q) < q all the way down: the variance dies out, if V(0) = 0.
                    if self.variance_map(0.0) == 0.0 {
                        return Ok(0.0);
                    }
                    break (0.0, hi);
                }
                if g_raw(lo) >= 0.0 {
                    break (lo, hi);
                }
                hi = lo;
            }
        };
        // g(lo) > 0 > g(hi) (or = 0 at an end): bisection to adjacent floats.
        for _ in 0..2000 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if g_raw(mid) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(0.5 * (lo + hi))
    }

    fn diverges(&self) -> Error {
        Error::Config(format!(
            "mean field: the variance map of {:?} with sigma_w = {}, sigma_b = {} diverges \
             (no fixed point; the network is past the edge of chaos)",
            self.phi, self.sigma_w, self.sigma_b
        ))
    }

    /// `χ_q = V'(q)`, by Stein's lemma `σ_w² E[z φ(√q z) φ'(√q z)]/√q`; at `q = 0` the limit
    /// `q → 0⁺`.
    fn chi_q_at(&self, q: f64) -> f64 {
        let s = positive_sqrt(q);
        let e = expect(|z| z * self.phi.f(s * z) * self.phi.df(s * z));
        self.sigma_w * self.sigma_w * e / s
    }

    /// The stable fixed point of the correlation map at `q`: 1 when χ₁ ≤ 1; otherwise the root
    /// of `C(c) = c` below 1, by bisection between a point just below 1 (where `C(c) < c`,
    /// since the slope at 1 exceeds 1) and 0 (or −1 if `C(0) < 0`).
    fn correlation_fixed_point(&self, q: f64, chi1: f64) -> f64 {
        if chi1 <= 1.0 || q <= 0.0 {
            return 1.0;
        }
        let h = |c: f64| self.correlation_map(c, q) - c;
        let mut hi = 1.0 - 1e-3;
        while h(hi) >= 0.0 && hi < 1.0 - 1e-12 {
            hi = 1.0 - (1.0 - hi) / 16.0;
        }
        if h(hi) >= 0.0 {
            // χ₁ is 1 to rounding: c = 1 is as stable as anything below it.
            return 1.0;
        }
        let mut lo = if h(0.0) >= 0.0 { 0.0 } else { -1.0 };
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if h(mid) >= 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// Every prediction: `q*`, χ₁, χ_q, `c*`, χ_c and the depth scales.
    ///
    /// # Errors
    /// As [`fixed_point`](MeanField::fixed_point): [`Error::Config`] when the variance
    /// diverges.
    ///
    /// # Example
    /// ```
    /// use vgrad::meanfield::MeanField;
    /// use vgrad::nn::Activation;
    /// // ReLU: χ₁ = σ_w²/2 exactly, and q* = σ_b²/(1 − σ_w²/2).
    /// let p = MeanField::new(Activation::Relu, 1.2, 0.5)?.predict()?;
    /// assert!((p.chi1 - 0.72).abs() < 1e-12);
    /// assert!((p.q_star - 0.25 / 0.28).abs() < 1e-12);
    /// assert!((p.xi_c + 1.0 / 0.72f64.ln()).abs() < 1e-9);
    /// # Ok::<(), vgrad::Error>(())
    /// ```
    pub fn predict(&self) -> Result<Prediction> {
        let q_star = self.fixed_point()?;
        let chi1 = self.chi1_at(q_star);
        let chi_q = self.chi_q_at(q_star);
        let c_star = self.correlation_fixed_point(q_star, chi1);
        let chi_c = if c_star == 1.0 {
            chi1
        } else {
            self.chi_c_at(c_star, q_star)
        };
        Ok(Prediction {
            sigma_w: self.sigma_w,
            sigma_b: self.sigma_b,
            q_star,
            chi1,
            chi_q,
            c_star,
            chi_c,
            xi_q: depth_scale(chi_q),
            xi_c: depth_scale(chi_c),
        })
    }
}

/// `√q` for `q > 0`; for `q ≤ 0` the square root of the smallest positive normal float, so
/// that quantities defined as limits `q → 0⁺` get them (the kink of ReLU at 0 is never sampled).
fn positive_sqrt(q: f64) -> f64 {
    q.max(f64::MIN_POSITIVE).sqrt()
}

/// `−1/ln χ`: the depth over which a deviation shrinking by χ per layer falls by `e`; ∞ for
/// χ ≥ 1.
fn depth_scale(chi: f64) -> f64 {
    if chi >= 1.0 {
        f64::INFINITY
    } else {
        -1.0 / chi.ln()
    }
}

/// The σ_w at which χ₁ = 1 for the given σ_b: the order-to-chaos boundary (Schoenholz et al.
/// 2017, Fig. 1). Found by bisection on σ_w between 0 (χ₁ = 0) and the first of 1, 2, 4, …
/// with χ₁ > 1, to adjacent floats; a σ_w whose variance map diverges counts as past the
/// boundary, so for ReLU the answer is √2 for every σ_b.
///
/// # Errors
/// [`Error::Config`] for a negative or non-finite σ_b or activation parameter, or when χ₁
/// stays below 1 up to σ_w = 2²⁰ (an activation with no chaotic phase).
///
/// # Example
/// ```
/// use vgrad::meanfield::critical_sigma_w;
/// use vgrad::nn::Activation;
/// assert!((critical_sigma_w(Activation::Tanh, 0.0)? - 1.0).abs() < 1e-6);
/// assert!((critical_sigma_w(Activation::Relu, 0.5)? - 2f64.sqrt()).abs() < 1e-9);
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn critical_sigma_w(act: Activation<f64>, sigma_b: f64) -> Result<f64> {
    MeanField::new(act, 1.0, sigma_b)?;
    // χ₁ − 1 along the fixed-point curve; divergence is the chaotic side.
    let above = |sw: f64| -> Result<bool> {
        let m = MeanField::new(act, sw, sigma_b)?;
        Ok(match m.fixed_point() {
            Ok(q) => m.chi1_at(q) > 1.0,
            Err(_) => true,
        })
    };
    let mut hi = 1.0;
    while !above(hi)? {
        hi *= 2.0;
        if hi > (1u64 << 20) as f64 {
            return Err(Error::Config(format!(
                "mean field: chi1 stays below 1 for every sigma_w up to 2^20 with sigma_b = \
                 {sigma_b}: no order-to-chaos transition"
            )));
        }
    }
    let mut lo = if hi > 1.0 { hi / 2.0 } else { 0.0 };
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if above(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(0.5 * (lo + hi))
}

/// `E[g(z)]`, z ~ N(0, 1), by the midpoint rule with [`QUADRATURE_NODES`] nodes (see the
/// [module docs](self)).
///
/// # Example
/// ```
/// use vgrad::meanfield::expect_normal;
/// assert!((expect_normal(|z| z * z) - 1.0).abs() < 1e-12);
/// assert!((expect_normal(|z| z.powi(4)) - 3.0).abs() < 1e-11);
/// ```
pub fn expect_normal(g: impl Fn(f64) -> f64) -> f64 {
    expect(g)
}

fn expect(g: impl Fn(f64) -> f64) -> f64 {
    let rule = rule();
    rule.nodes
        .iter()
        .zip(&rule.weights)
        .map(|(&z, &w)| w * g(z))
        .sum()
}

/// Quadrature nodes and weights for the standard normal measure.
struct Rule {
    nodes: Vec<f64>,
    weights: Vec<f64>,
}

/// The one-dimensional rule, computed once: the midpoint rule `zₖ = (k + ½)h` on
/// `[−Z_MAX, Z_MAX]`, weights `e^(−zₖ²/2)` normalised to sum to 1.
fn rule() -> &'static Rule {
    static RULE: OnceLock<Rule> = OnceLock::new();
    RULE.get_or_init(|| midpoint_rule(STEPS_PER_UNIT, Z_MAX))
}

/// The rule each axis of a two-dimensional expectation uses: step 1/8 on [−10, 10].
fn coarse_rule() -> &'static Rule {
    static RULE: OnceLock<Rule> = OnceLock::new();
    RULE.get_or_init(|| midpoint_rule(8, 10))
}

fn midpoint_rule(steps_per_unit: usize, z_max: usize) -> Rule {
    let h = 1.0 / steps_per_unit as f64;
    let half = (z_max * steps_per_unit) as i64;
    let nodes: Vec<f64> = (-half..half).map(|k| (k as f64 + 0.5) * h).collect();
    let raw: Vec<f64> = nodes.iter().map(|z| (-0.5 * z * z).exp()).collect();
    let total: f64 = raw.iter().sum();
    Rule {
        weights: raw.iter().map(|w| w / total).collect(),
        nodes,
    }
}

/// An activation's scalar value and derivative: the engine's own definitions
/// ([`Elementwise`]), evaluated in f64.
#[derive(Clone, Copy)]
struct Phi(Option<Unary<f64>>);

impl std::fmt::Debug for Phi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.map_or("identity", |u| u.name()))
    }
}

impl Phi {
    fn of(act: Activation<f64>) -> Result<Self> {
        let bad = |what: &str, v: f64| {
            Error::Config(format!(
                "mean field: activation parameter {what} = {v} is not valid"
            ))
        };
        let u = match act {
            Activation::Identity => None,
            Activation::Sigmoid => Some(Unary::Sigmoid(Sigmoid)),
            Activation::Tanh => Some(Unary::Tanh(Tanh)),
            Activation::Relu => Some(Unary::Relu(Relu)),
            Activation::LeakyRelu(slope) if slope.is_finite() => {
                Some(Unary::LeakyRelu(LeakyRelu { slope }))
            }
            Activation::LeakyRelu(s) => return Err(bad("negative_slope", s)),
            Activation::Elu(alpha) if alpha.is_finite() => Some(Unary::Elu(Elu { alpha })),
            Activation::Elu(a) => return Err(bad("alpha", a)),
            Activation::Selu => Some(Unary::Selu(Selu)),
            Activation::Gelu(GeluApprox::None) => Some(Unary::Gelu(Gelu)),
            Activation::Gelu(GeluApprox::Tanh) => Some(Unary::GeluTanh(GeluTanh)),
            Activation::Softplus { beta, threshold } => {
                if !(beta.is_finite() && beta > 0.0) {
                    return Err(bad("beta", beta));
                }
                if threshold.is_nan() {
                    return Err(bad("threshold", threshold));
                }
                Some(Unary::Softplus(Softplus { beta, threshold }))
            }
            Activation::Silu => Some(Unary::Silu(Silu)),
        };
        Ok(Phi(u))
    }

    fn f(&self, x: f64) -> f64 {
        self.eval(x).0
    }

    fn df(&self, x: f64) -> f64 {
        self.eval(x).1
    }

    /// `(φ(x), φ'(x))`.
    fn eval(&self, x: f64) -> (f64, f64) {
        struct At(f64);
        impl WithDef<f64> for At {
            type Out = (f64, f64);
            fn run<F: Elementwise<f64>>(self, f: F) -> (f64, f64) {
                let y = f.f(self.0);
                (y, f.df(&1.0, &self.0, &y))
            }
        }
        match self.0 {
            None => (x, 1.0),
            Some(u) => u.with(At(x)),
        }
    }
}
