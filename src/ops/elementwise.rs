//! Elementwise ops: broadcasting arithmetic, scalar forms and the unary maths and activations.
//!
//! Primitives with backward rules: `add`, `mul`, `add_scalar`, `mul_scalar`, `powf` and the
//! unary functions. `sub`, `div` and `neg` are composed from them (`a − b = a + (−1)·b`,
//! `a / b = a · b⁻¹`) and need no rule of their own.
//!
//! Values and subgradients at kinks follow PyTorch: relu'(0) = 0, abs'(0) = 0,
//! leaky_relu'(0) = slope, elu'(0) = α, selu'(0) = λα, softplus returns x with gradient exactly 1
//! where βx > threshold, clamp' = 0 at both bounds.

use super::{Algebra, InputGrads, Op};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use smallvec::smallvec;
use std::ops;

/// Which form of GELU to compute (PyTorch's `approximate` argument).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluApprox {
    /// The exact form `x·Φ(x)` with Φ the standard normal CDF, through `erf` (PyTorch's default).
    #[default]
    None,
    /// The tanh approximation `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    Tanh,
}

/// SELU's constants, to PyTorch's precision.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_2;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
const GELU_TANH_C: f64 = 0.044_715;

#[inline]
fn c<T: Element>(x: f64) -> T {
    T::of(x)
}

/// Logistic sigmoid that only ever evaluates `e^(−|x|) ≤ 1`, so it is finite and accurate in
/// both tails (σ(−1000) = 0, σ(1000) = 1, σ(−100) ≈ 3.7e−44 in f64 without cancellation).
/// Branch-free (the final choice compiles to a blend), so loops over it vectorise.
#[inline(always)]
pub(crate) fn sigmoid<T: Element>(x: T) -> T {
    let e = (-x.abs()).exp_fast();
    let s = T::one() / (T::one() + e); // σ(|x|)
    if x >= T::zero() {
        s
    } else {
        e * s // σ(−|x|) = e/(1 + e)
    }
}

#[inline]
fn step<T: Element>(cond: bool) -> T {
    if cond {
        T::one()
    } else {
        T::zero()
    }
}

/// Forward values of every unary op, also used by the `Tensor` side of [`Algebra::unary`].
pub(crate) fn unary_forward<T: Element>(op: &Op<T>, x: &Tensor<T>) -> Tensor<T> {
    match *op {
        // Exact small powers skip libm's powf (~165 instructions per element): BatchNorm's
        // variance squares every activation, and powf was 30% of the resbn benchmark.
        Op::PowF(p) if p == T::one() + T::one() => x.map_par(|v| v * v),
        Op::PowF(p) if p == T::one() => x.clone(),
        Op::PowF(p) => x.map_par(|v| v.powf(p)),
        Op::Exp => x.map_par(T::exp_fast),
        Op::Ln => x.map_par(T::ln),
        Op::Sqrt => x.map_par(T::sqrt),
        Op::Abs => x.map_par(T::abs),
        Op::Erf => x.map_par(T::erf),
        Op::Sigmoid => x.map_par(sigmoid),
        Op::Tanh => x.map_par(T::tanh),
        // `v <= 0` is false for NaN, so NaN propagates as in PyTorch.
        Op::Relu => x.map_par(|v| if v <= T::zero() { T::zero() } else { v }),
        Op::LeakyRelu(s) => x.map_par(|v| if v > T::zero() { v } else { v * s }),
        Op::Elu(a) => x.map_par(|v| if v > T::zero() { v } else { a * v.exp_m1() }),
        Op::Selu => {
            let (a, l) = (c::<T>(SELU_ALPHA), c::<T>(SELU_SCALE));
            x.map_par(|v| l * if v > T::zero() { v } else { a * v.exp_m1() })
        }
        Op::Gelu(GeluApprox::None) => {
            let r = T::FRAC_1_SQRT_2();
            x.map_par(|v| c::<T>(0.5) * v * (T::one() + (v * r).erf()))
        }
        Op::Gelu(GeluApprox::Tanh) => {
            let k = T::FRAC_2_SQRT_PI() * T::FRAC_1_SQRT_2(); // √(2/π)
            let cc = c::<T>(GELU_TANH_C);
            x.map_par(|v| c::<T>(0.5) * v * (T::one() + (k * (v + cc * v * v * v)).tanh()))
        }
        Op::Softplus { beta, threshold } => x.map_par(|v| {
            if v * beta > threshold {
                v
            } else {
                (v * beta).exp().ln_1p() / beta
            }
        }),
        Op::Silu => x.map_par(|v| v * sigmoid(v)),
        // The lower bound first, then the upper: with min > max every element becomes max,
        // as in PyTorch. A NaN x passes through both comparisons; a NaN bound gives NaN.
        Op::Clamp { min, max } if min.is_nan() || max.is_nan() => x.map_par(|_| T::nan()),
        Op::Clamp { min, max } => x.map_par(|v| {
            let v = if v < min { min } else { v };
            if v > max {
                max
            } else {
                v
            }
        }),
        _ => unreachable!("unary_forward called with non-unary op {}", op.name()),
    }
}

/// `g · f'(x)` for each unary op: the fused kernel `(g, x, y)` first, the composed,
/// differentiable expression second.
pub(crate) fn unary_backward<T: Element, A: Algebra<T>>(op: &Op<T>, x: &A, y: &A, g: &A) -> A {
    let one = T::one();
    let zero = T::zero();
    match *op {
        // d xᵖ = p·xᵖ⁻¹ (p = 0 gives 0 everywhere, as PyTorch, rather than 0·x⁻¹ = NaN at 0).
        Op::PowF(p) if p == zero => g.scale(zero),
        // d x² = 2x, without powf (see unary_forward)
        Op::PowF(p) if p == one + one => {
            A::pointwise(g, x, y, |g, x, _| g * p * x, || g.mul(&x.scale(p)))
        }
        Op::PowF(p) => A::pointwise(
            g,
            x,
            y,
            |g, x, _| g * p * x.powf(p - one),
            || g.mul(&x.unary(&Op::PowF(p - one)).scale(p)),
        ),
        // d eˣ = eˣ = y
        Op::Exp => A::pointwise(g, x, y, |g, _, y| g * y, || g.mul(y)),
        // d ln x = 1/x
        Op::Ln => A::pointwise(g, x, y, |g, x, _| g / x, || g.div(x)),
        // d √x = 1/(2√x) = 1/(2y)
        Op::Sqrt => A::pointwise(
            g,
            x,
            y,
            |g, _, y| g * c::<T>(0.5) / y,
            || g.div(y).scale(c(0.5)),
        ),
        // d |x| = sign(x), with sign(0) = 0
        Op::Abs => {
            let sign = |x: T| {
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    zero
                }
            };
            A::pointwise(
                g,
                x,
                y,
                |g, x, _| g * sign(x),
                || g.mul_const(x.value().map(sign)),
            )
        }
        // d erf x = 2/√π · e^(−x²)
        Op::Erf => {
            let k = T::FRAC_2_SQRT_PI();
            A::pointwise(
                g,
                x,
                y,
                |g, x, _| g * k * (-x * x).exp(),
                || g.mul(&x.mul(x).neg().unary(&Op::Exp).scale(k)),
            )
        }
        // σ' = σ(1 − σ), from the output so that it stays finite for |x| = 1000
        Op::Sigmoid => A::pointwise(
            g,
            x,
            y,
            |g, _, y| g * y * (one - y),
            || g.mul(&y.sub(&y.mul(y))),
        ),
        // tanh' = 1 − tanh², from the output
        Op::Tanh => A::pointwise(
            g,
            x,
            y,
            |g, _, y| g * (one - y * y),
            || g.mul(&y.mul(y).neg().add_scalar(one)),
        ),
        // relu' = [x > 0]; 0 at the kink
        Op::Relu => A::pointwise(
            g,
            x,
            y,
            |g, x, _| if x > zero { g } else { zero },
            || g.mul_const(x.value().map(|v| step(v > zero))),
        ),
        // leaky_relu' = 1 for x > 0, else slope (slope at the kink)
        Op::LeakyRelu(s) => A::pointwise(
            g,
            x,
            y,
            |g, x, _| if x > zero { g } else { g * s },
            || g.mul_const(x.value().map(|v| if v > zero { one } else { s })),
        ),
        // elu' = 1 for x > 0, else α·eˣ (α at the kink)
        // α·eˣ is computed from x, not as y + α: that sum cancels (to exactly 0 once
        // eˣ < ulp(α), i.e. x < −17 in f32, x < −37 in f64), where PyTorch, also working from x,
        // still has the gradient. The same holds for selu below.
        Op::Elu(a) => A::pointwise(
            g,
            x,
            y,
            |g, x, _| if x > zero { g } else { g * a * x.exp() },
            || {
                let pos = x.lift(x.value().map(|v| step(v > zero)));
                g.mul(&pos.add(&scaled_exp_below_zero(x, a)))
            },
        ),
        // selu' = λ for x > 0, else λα·eˣ (λα at the kink)
        Op::Selu => {
            let l = c::<T>(SELU_SCALE);
            let la = c::<T>(SELU_SCALE * SELU_ALPHA);
            A::pointwise(
                g,
                x,
                y,
                |g, x, _| if x > zero { g * l } else { g * la * x.exp() },
                || {
                    let pos = x.lift(x.value().map(|v| if v > zero { l } else { zero }));
                    g.mul(&pos.add(&scaled_exp_below_zero(x, la)))
                },
            )
        }
        // gelu' = Φ(x) + x·φ(x)
        Op::Gelu(GeluApprox::None) => {
            let r = T::FRAC_1_SQRT_2();
            let inv_sqrt_2pi = T::FRAC_2_SQRT_PI() * T::FRAC_1_SQRT_2() * c::<T>(0.5);
            A::pointwise(
                g,
                x,
                y,
                |g, x, _| {
                    let cdf = c::<T>(0.5) * (one + (x * r).erf());
                    let pdf = (-c::<T>(0.5) * x * x).exp() * inv_sqrt_2pi;
                    g * (cdf + x * pdf)
                },
                || {
                    let cdf = x.scale(r).unary(&Op::Erf).add_scalar(one).scale(c(0.5));
                    let pdf = x.mul(x).scale(c(-0.5)).unary(&Op::Exp).scale(inv_sqrt_2pi);
                    g.mul(&cdf.add(&x.mul(&pdf)))
                },
            )
        }
        // With u = k(x + c·x³), t = tanh u: gelu' = ½(1 + t) + ½x(1 − t²)·k(1 + 3c·x²)
        Op::Gelu(GeluApprox::Tanh) => {
            let k = T::FRAC_2_SQRT_PI() * T::FRAC_1_SQRT_2();
            let cc = c::<T>(GELU_TANH_C);
            let half = c::<T>(0.5);
            A::pointwise(
                g,
                x,
                y,
                |g, x, _| {
                    let t = (k * (x + cc * x * x * x)).tanh();
                    let du = k * (one + c::<T>(3.0) * cc * x * x);
                    g * (half * (one + t) + half * x * (one - t * t) * du)
                },
                || {
                    let x2 = x.mul(x);
                    let t = x.add(&x2.mul(x).scale(cc)).scale(k).unary(&Op::Tanh);
                    let du = x2.scale(c::<T>(3.0) * cc * k).add_scalar(k);
                    let left = t.add_scalar(one).scale(half);
                    let right = x.mul(&t.mul(&t).neg().add_scalar(one)).mul(&du).scale(half);
                    g.mul(&left.add(&right))
                },
            )
        }
        // softplus' = σ(βx), and exactly 1 where βx > threshold (the linear region)
        Op::Softplus { beta, threshold } => A::pointwise(
            g,
            x,
            y,
            |g, x, _| {
                if x * beta > threshold {
                    g
                } else {
                    g * sigmoid(x * beta)
                }
            },
            || {
                let xv = x.value();
                let above = x.lift(xv.map(|v| step(v * beta > threshold)));
                let below = x
                    .scale(beta)
                    .unary(&Op::Sigmoid)
                    .mul_const(xv.map(|v| step(v * beta <= threshold)));
                g.mul(&above.add(&below))
            },
        ),
        // silu' = σ(x)·(1 + x(1 − σ(x)))
        Op::Silu => A::pointwise(
            g,
            x,
            y,
            |g, x, _| {
                let s = sigmoid(x);
                g * s * (one + x * (one - s))
            },
            || {
                let s = x.unary(&Op::Sigmoid);
                g.mul(&s.mul(&x.mul(&s.neg().add_scalar(one)).add_scalar(one)))
            },
        ),
        // clamp' = 1 strictly inside the bounds, 0 outside, at a finite bound and at NaN
        // (PyTorch 2.15 passes no gradient at x = min or x = max either)
        Op::Clamp { min, max } => {
            let inside = move |v: T| {
                !v.is_nan()
                    && (v > min || min == T::neg_infinity())
                    && (v < max || max == T::infinity())
            };
            A::pointwise(
                g,
                x,
                y,
                move |g, x, _| if inside(x) { g } else { zero },
                || g.mul_const(x.value().map(|v| step(inside(v)))),
            )
        }
        _ => unreachable!("unary_backward called with non-unary op {}", op.name()),
    }
}

/// `c·eˣ` where `x ≤ 0` and 0 elsewhere, as a differentiable expression (elu's and selu's
/// derivative below the kink). The exponent is `min(x, 0) = −relu(−x)`, so the masked-out
/// positive entries can neither overflow nor, at `x = +∞`, turn into `∞·0 = NaN`.
fn scaled_exp_below_zero<T: Element, A: Algebra<T>>(x: &A, c: T) -> A {
    let below = x.value().map(|v| step(v <= T::zero()));
    x.neg()
        .unary(&Op::Relu)
        .neg()
        .unary(&Op::Exp)
        .scale(c)
        .mul_const(below)
}

/// Backward of the broadcasting binary ops and the scalar forms: each input receives the output
/// gradient (times the other factor for `mul`), summed over the axes it was broadcast along.
pub(crate) fn binary_backward<T: Element, A: Algebra<T>>(
    op: &Op<T>,
    x: &[&A],
    g: &A,
    needs: &[bool],
) -> InputGrads<A> {
    match *op {
        // d(a + b) = da + db
        Op::Add => smallvec![
            needs[0].then(|| g.sum_to(&x[0].shape())),
            needs[1].then(|| g.sum_to(&x[1].shape())),
        ],
        // d(a·b) = b·da + a·db
        Op::Mul => smallvec![
            needs[0].then(|| g.mul(x[1]).sum_to(&x[0].shape())),
            needs[1].then(|| g.mul(x[0]).sum_to(&x[1].shape())),
        ],
        // d(a + s) = da
        Op::AddScalar(_) => smallvec![Some(g.clone())],
        // d(s·a) = s·da
        Op::MulScalar(s) => smallvec![Some(g.scale(s))],
        _ => unreachable!("binary_backward called with {}", op.name()),
    }
}

impl<'t, T: Element> Var<'t, T> {
    pub(crate) fn apply_unary(self, op: Op<T>) -> Var<'t, T> {
        let v = unary_forward(&op, &self.value_ref());
        self.record(op, &[self.id], v)
    }

    /// The checks a composed binary op (`-`, `/`) makes before its parts run, so that a misuse
    /// is reported under the op the caller wrote, not the primitive it is built from.
    #[track_caller]
    fn check_operands(&self, op: &str, other: &Var<'t, T>) {
        self.same_tape(op, other);
        crate::tensor::broadcast_shapes(op, &self.shape(), &other.shape());
    }

    #[track_caller]
    fn binary(self, other: Var<'t, T>, op: Op<T>) -> Var<'t, T> {
        self.same_tape(op.name(), &other);
        let v = {
            let (a, b) = (self.value_ref(), other.value_ref());
            match op {
                Op::Add => a.add(&b),
                _ => a.mul(&b),
            }
        };
        self.record(op, &[self.id, other.id], v)
    }

    /// `s · self`. Derivative: `s`.
    pub fn scale(self, s: T) -> Var<'t, T> {
        let v = self.value_ref().scale(s);
        self.record(Op::MulScalar(s), &[self.id], v)
    }

    /// `self + s`. Derivative: 1.
    pub fn add_scalar(self, s: T) -> Var<'t, T> {
        let v = self.value_ref().add_scalar(s);
        self.record(Op::AddScalar(s), &[self.id], v)
    }

    /// `selfᵖ` elementwise. Derivative: `p·selfᵖ⁻¹` (zero everywhere when `p = 0`).
    pub fn powf(self, p: T) -> Var<'t, T> {
        self.apply_unary(Op::PowF(p))
    }

    /// `self²`. Derivative: `2·self`.
    pub fn square(self) -> Var<'t, T> {
        self.powf(T::one() + T::one())
    }

    /// `eˣ`. Derivative: `eˣ`.
    pub fn exp(self) -> Var<'t, T> {
        self.apply_unary(Op::Exp)
    }

    /// Natural logarithm. Derivative: `1/x`.
    pub fn ln(self) -> Var<'t, T> {
        self.apply_unary(Op::Ln)
    }

    /// Square root. Derivative: `1/(2√x)`.
    pub fn sqrt(self) -> Var<'t, T> {
        self.apply_unary(Op::Sqrt)
    }

    /// `|x|`. Derivative: `sign(x)`, taken as 0 at `x = 0` (PyTorch's choice).
    pub fn abs(self) -> Var<'t, T> {
        self.apply_unary(Op::Abs)
    }

    /// The error function. Derivative: `2/√π · e^(−x²)`.
    pub fn erf(self) -> Var<'t, T> {
        self.apply_unary(Op::Erf)
    }

    /// Logistic sigmoid `σ(x) = 1/(1 + e⁻ˣ)`, evaluated without overflow in either tail.
    /// Derivative: `σ(x)(1 − σ(x))`, computed from the output, at most 1/4 (at `x = 0`): the
    /// factor that makes deep sigmoid networks' gradients vanish.
    pub fn sigmoid(self) -> Var<'t, T> {
        self.apply_unary(Op::Sigmoid)
    }

    /// Hyperbolic tangent. Derivative: `1 − tanh²(x)`, computed from the output.
    pub fn tanh(self) -> Var<'t, T> {
        self.apply_unary(Op::Tanh)
    }

    /// `max(x, 0)`. Derivative: 1 for `x > 0`, else 0 (0 at the kink, as PyTorch).
    pub fn relu(self) -> Var<'t, T> {
        self.apply_unary(Op::Relu)
    }

    /// `x` for `x > 0`, else `slope·x` (PyTorch's default slope is 0.01). Derivative: 1 for
    /// `x > 0`, else `slope` (`slope` at the kink).
    pub fn leaky_relu(self, slope: T) -> Var<'t, T> {
        self.apply_unary(Op::LeakyRelu(slope))
    }

    /// `x` for `x > 0`, else `α(eˣ − 1)`. Derivative: 1 for `x > 0`, else `α·eˣ` (`α` at the kink).
    pub fn elu(self, alpha: T) -> Var<'t, T> {
        self.apply_unary(Op::Elu(alpha))
    }

    /// `λ·elu(x, α)` with PyTorch's λ = 1.0507009873554805, α = 1.6732632423543772.
    /// Derivative: λ for `x > 0`, else `λα·eˣ` (`λα` at the kink).
    pub fn selu(self) -> Var<'t, T> {
        self.apply_unary(Op::Selu)
    }

    /// GELU, `x·Φ(x)` (exact, through `erf`) or its tanh approximation.
    /// Derivative: `Φ(x) + x·φ(x)` for the exact form; for the tanh form, with
    /// `u = √(2/π)(x + 0.044715x³)`, `½(1 + tanh u) + ½x(1 − tanh²u)·u'`.
    pub fn gelu(self, approx: GeluApprox) -> Var<'t, T> {
        self.apply_unary(Op::Gelu(approx))
    }

    /// `log(1 + e^(βx))/β`, and `x` itself where `βx > threshold` (PyTorch defaults: β = 1,
    /// threshold = 20). Derivative: `σ(βx)`, and exactly 1 where `βx > threshold`.
    pub fn softplus(self, beta: T, threshold: T) -> Var<'t, T> {
        self.apply_unary(Op::Softplus { beta, threshold })
    }

    /// SiLU (swish), `x·σ(x)`. Derivative: `σ(x)(1 + x(1 − σ(x)))`.
    pub fn silu(self) -> Var<'t, T> {
        self.apply_unary(Op::Silu)
    }

    /// `min(max(x, min), max)`, PyTorch's `clamp`: with `min > max` every element becomes
    /// `max`; a NaN element stays NaN; a NaN bound makes every element NaN. An infinite bound
    /// is no bound ([`clamp_min`](Var::clamp_min), [`clamp_max`](Var::clamp_max)).
    /// Derivative: 1 where `min < x < max`, else 0, also at `x = min`, at `x = max` and at
    /// NaN (as PyTorch 2.15's, measured; `relu` is `clamp_min(0)` there too). Deviation: at an
    /// infinite `x` equal to an infinite bound (`clamp(0, ∞)` at `x = ∞`) the derivative is 1,
    /// where PyTorch, which keeps the bound, gives 0; its one-sided forms give 1 as here.
    ///
    /// # Example
    /// ```
    /// use vgrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::vector(&[-2.0, 0.0, 0.5, 1.0, 3.0]));
    /// let y = x.clamp(0.0, 1.0);
    /// assert_eq!(y.value().to_vec(), [0.0, 0.0, 0.5, 1.0, 1.0]);
    /// let g = y.sum().backward();
    /// assert_eq!(g.wrt(x).unwrap().to_vec(), [0.0, 0.0, 1.0, 0.0, 0.0]);
    /// ```
    pub fn clamp(self, min: T, max: T) -> Var<'t, T> {
        self.apply_unary(Op::Clamp { min, max })
    }

    /// `max(x, min)`: [`clamp`](Var::clamp) with no upper bound. Derivative: 1 where `x > min`,
    /// else 0.
    pub fn clamp_min(self, min: T) -> Var<'t, T> {
        self.clamp(min, T::infinity())
    }

    /// `min(x, max)`: [`clamp`](Var::clamp) with no lower bound. Derivative: 1 where `x < max`,
    /// else 0.
    pub fn clamp_max(self, max: T) -> Var<'t, T> {
        self.clamp(T::neg_infinity(), max)
    }
}

/// `a + b`, broadcasting. Derivative: 1 with respect to each operand, summed over the axes it
/// was broadcast along.
///
/// # Panics
/// If the shapes do not broadcast (the message names both) or the tapes differ.
impl<'t, T: Element> ops::Add for Var<'t, T> {
    type Output = Var<'t, T>;
    #[track_caller]
    fn add(self, rhs: Var<'t, T>) -> Var<'t, T> {
        self.binary(rhs, Op::Add)
    }
}

/// `a − b`, broadcasting; composed as `a + (−1)·b`.
///
/// # Panics
/// As for `+`.
impl<'t, T: Element> ops::Sub for Var<'t, T> {
    type Output = Var<'t, T>;
    #[track_caller]
    fn sub(self, rhs: Var<'t, T>) -> Var<'t, T> {
        self.check_operands("sub", &rhs);
        self + rhs.scale(-T::one())
    }
}

/// `a · b` elementwise, broadcasting. Derivative: `b` with respect to `a`, `a` with respect to
/// `b`, each summed over the axes it was broadcast along.
///
/// # Panics
/// As for `+`.
impl<'t, T: Element> ops::Mul for Var<'t, T> {
    type Output = Var<'t, T>;
    #[track_caller]
    fn mul(self, rhs: Var<'t, T>) -> Var<'t, T> {
        self.binary(rhs, Op::Mul)
    }
}

/// `a / b`, broadcasting; composed as `a · b⁻¹`.
///
/// # Panics
/// As for `+`.
impl<'t, T: Element> ops::Div for Var<'t, T> {
    type Output = Var<'t, T>;
    #[track_caller]
    fn div(self, rhs: Var<'t, T>) -> Var<'t, T> {
        self.check_operands("div", &rhs);
        self * rhs.powf(-T::one())
    }
}

impl<'t, T: Element> ops::Add<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn add(self, s: T) -> Var<'t, T> {
        self.add_scalar(s)
    }
}

impl<'t, T: Element> ops::Sub<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn sub(self, s: T) -> Var<'t, T> {
        self.add_scalar(-s)
    }
}

impl<'t, T: Element> ops::Mul<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn mul(self, s: T) -> Var<'t, T> {
        self.scale(s)
    }
}

impl<'t, T: Element> ops::Div<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn div(self, s: T) -> Var<'t, T> {
        self.scale(s.recip())
    }
}

/// `−a`. Derivative: −1.
impl<'t, T: Element> ops::Neg for Var<'t, T> {
    type Output = Var<'t, T>;
    fn neg(self) -> Var<'t, T> {
        self.scale(-T::one())
    }
}

macro_rules! scalar_lhs_ops {
    ($($t:ty),*) => {$(
        impl<'t> ops::Add<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn add(self, v: Var<'t, $t>) -> Var<'t, $t> { v.add_scalar(self) }
        }
        impl<'t> ops::Sub<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn sub(self, v: Var<'t, $t>) -> Var<'t, $t> { v.scale(-1.0).add_scalar(self) }
        }
        impl<'t> ops::Mul<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn mul(self, v: Var<'t, $t>) -> Var<'t, $t> { v.scale(self) }
        }
        impl<'t> ops::Div<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn div(self, v: Var<'t, $t>) -> Var<'t, $t> { v.powf(-1.0).scale(self) }
        }
    )*};
}
scalar_lhs_ops!(f32, f64);
