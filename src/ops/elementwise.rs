//! Elementwise ops: the unary maths and activations, one block each, and the broadcasting
//! arithmetic with its scalar forms.
//!
//! A unary function's block holds its public [`Var`] method with its doc, then its definition:
//! its value per element and its derivative, written once (see [`Elementwise`]), so that adding
//! a function is one block here plus one line in [`Unary`]'s list.
//!
//! Arithmetic primitives with backward rules: `add`, `mul`, `add_scalar`, `mul_scalar`. `sub`,
//! `div` and `neg` are composed from them and `powf` (`a − b = a + (−1)·b`, `a / b = a · b⁻¹`)
//! and need no rule of their own.
//!
//! Values and subgradients at kinks follow PyTorch: relu'(0) = 0, abs'(0) = 0,
//! leaky_relu'(0) = slope, elu'(0) = α, selu'(0) = λα, softplus returns x with gradient exactly 1
//! where βx > threshold, clamp' = 0 at both bounds.

use super::expr::{forward_map, pointwise_backward, step, Composed, Elementwise, Expr};
use super::{Algebra, InputGrads, Op};
use crate::tape::Var;
use crate::tensor::simd::FlushScope;
use crate::tensor::vmath::{self, expm1_nonpositive};
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

#[inline(always)]
fn c<T: Element>(x: f64) -> T {
    T::of(x)
}

/// Every unary function the tape records, as data: each variant holds its definition (with its
/// parameters). [`Unary::with`] is the one dispatch from a variant to its definition's code.
#[derive(Clone, Copy)]
pub(crate) enum Unary<T: Element> {
    PowF(PowF<T>),
    Exp(Exp),
    Ln(Ln),
    Sqrt(Sqrt),
    Abs(Abs),
    Erf(Erf),
    Sigmoid(Sigmoid),
    Tanh(Tanh),
    Relu(Relu),
    LeakyRelu(LeakyRelu<T>),
    Elu(Elu<T>),
    Selu(Selu),
    Gelu(Gelu),
    GeluTanh(GeluTanh),
    Softplus(Softplus<T>),
    Silu(Silu),
    Clamp(Clamp<T>),
}

/// Something done with an elementwise function, whichever it is: run it forward, backward, or
/// read its name. Generic over the definition, so each use compiles to that function's own loop.
pub(crate) trait WithDef<T: Element> {
    type Out;
    fn run<F: Elementwise<T>>(self, f: F) -> Self::Out;
}

impl<T: Element> Unary<T> {
    /// Hands the variant's definition to `w`.
    #[inline(always)]
    pub(crate) fn with<W: WithDef<T>>(self, w: W) -> W::Out {
        match self {
            Unary::PowF(f) => w.run(f),
            Unary::Exp(f) => w.run(f),
            Unary::Ln(f) => w.run(f),
            Unary::Sqrt(f) => w.run(f),
            Unary::Abs(f) => w.run(f),
            Unary::Erf(f) => w.run(f),
            Unary::Sigmoid(f) => w.run(f),
            Unary::Tanh(f) => w.run(f),
            Unary::Relu(f) => w.run(f),
            Unary::LeakyRelu(f) => w.run(f),
            Unary::Elu(f) => w.run(f),
            Unary::Selu(f) => w.run(f),
            Unary::Gelu(f) => w.run(f),
            Unary::GeluTanh(f) => w.run(f),
            Unary::Softplus(f) => w.run(f),
            Unary::Silu(f) => w.run(f),
            Unary::Clamp(f) => w.run(f),
        }
    }

    /// The function's name in panics, anomalies and `Debug` output.
    pub(crate) fn name(self) -> &'static str {
        struct Name;
        impl<T: Element> WithDef<T> for Name {
            type Out = &'static str;
            fn run<F: Elementwise<T>>(self, _: F) -> &'static str {
                F::NAME
            }
        }
        self.with(Name)
    }

    /// `f(x)` for every element.
    #[inline]
    pub(crate) fn forward(self, x: &Tensor<T>) -> Tensor<T> {
        struct Forward<'a, T: Element>(&'a Tensor<T>);
        impl<T: Element> WithDef<T> for Forward<'_, T> {
            type Out = Tensor<T>;
            #[inline(always)]
            fn run<F: Elementwise<T>>(self, f: F) -> Tensor<T> {
                f.forward(self.0)
            }
        }
        self.with(Forward(x))
    }

    /// `g·f'(x)` for input `x`, output `y` and output gradient `g`: fused on tensors, composed
    /// on the tape.
    #[inline]
    pub(crate) fn backward<A: Algebra<T>>(self, x: &A, y: &A, g: &A) -> A {
        struct Backward<'a, A>(&'a A, &'a A, &'a A);
        impl<T: Element, A: Algebra<T>> WithDef<T> for Backward<'_, A> {
            type Out = A;
            #[inline(always)]
            fn run<F: Elementwise<T>>(self, f: F) -> A {
                let Backward(g, x, y) = self;
                f.backward(g, x, y)
            }
        }
        self.with(Backward(g, x, y))
    }
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

// ---------------------------------------------------------------- powers, exp and logs

impl<'t, T: Element> Var<'t, T> {
    /// `selfᵖ` elementwise. Derivative: `p·selfᵖ⁻¹` (zero everywhere when `p = 0`).
    pub fn powf(self, p: T) -> Var<'t, T> {
        self.elementwise(Unary::PowF(PowF(p)))
    }

    /// `self²`. Derivative: `2·self`.
    pub fn square(self) -> Var<'t, T> {
        self.powf(T::one() + T::one())
    }
}

/// `xᵖ`.
#[derive(Clone, Copy)]
pub(crate) struct PowF<T>(pub(crate) T);

impl<T: Element> Elementwise<T> for PowF<T> {
    const NAME: &'static str = "powf";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x.powf(self.0)
    }
    // d xᵖ = p·xᵖ⁻¹
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        let p = self.0;
        g.scale(p).mul(&x.powf(p - T::one()))
    }
    // Exact small powers skip libm's powf (~165 instructions per element): BatchNorm's
    // variance squares every activation, and powf was 30% of the resbn benchmark.
    fn forward(self, x: &Tensor<T>) -> Tensor<T> {
        let p = self.0;
        if p == T::one() + T::one() {
            forward_map(Square, x)
        } else if p == T::one() {
            x.clone()
        } else {
            forward_map(self, x)
        }
    }
    fn backward<A: Algebra<T>>(self, g: &A, x: &A, y: &A) -> A {
        let p = self.0;
        if p == T::zero() {
            // 0 everywhere, as PyTorch, rather than 0·x⁻¹ = NaN at 0.
            g.scale(T::zero())
        } else if p == T::one() + T::one() {
            Square.backward(g, x, y)
        } else {
            pointwise_backward(self, g, x, y)
        }
    }
}

/// `x²` without powf: [`PowF`]'s fast path for `p = 2`, never recorded under its own name.
#[derive(Clone, Copy)]
struct Square;

impl<T: Element> Elementwise<T> for Square {
    const NAME: &'static str = "powf";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x * x
    }
    // d x² = 2x (in the order p·x of the general rule)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        g.scale(T::one() + T::one()).mul(x)
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// `eˣ`. Derivative: `eˣ`.
    pub fn exp(self) -> Var<'t, T> {
        self.elementwise(Unary::Exp(Exp))
    }
}

/// `eˣ`, through the branch-free [`Element::exp_fast`].
#[derive(Clone, Copy)]
pub(crate) struct Exp;

impl<T: Element> Elementwise<T> for Exp {
    const NAME: &'static str = "exp";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x.exp_fast()
    }
    // d eˣ = eˣ = y
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, _x: &E, y: &E) -> E {
        g.mul(y)
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Natural logarithm. Derivative: `1/x`.
    pub fn ln(self) -> Var<'t, T> {
        self.elementwise(Unary::Ln(Ln))
    }
}

/// `ln x`.
#[derive(Clone, Copy)]
pub(crate) struct Ln;

impl<T: Element> Elementwise<T> for Ln {
    const NAME: &'static str = "ln";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x.ln()
    }
    // d ln x = 1/x
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        g.div(x)
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Square root. Derivative: `1/(2√x)`.
    pub fn sqrt(self) -> Var<'t, T> {
        self.elementwise(Unary::Sqrt(Sqrt))
    }
}

/// `√x`.
#[derive(Clone, Copy)]
pub(crate) struct Sqrt;

impl<T: Element> Elementwise<T> for Sqrt {
    const NAME: &'static str = "sqrt";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x.sqrt()
    }
    // d √x = 1/(2√x) = 1/(2y)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, _x: &E, y: &E) -> E {
        g.scale(c(0.5)).div(y)
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// `|x|`. Derivative: `sign(x)`, taken as 0 at `x = 0` (PyTorch's choice).
    pub fn abs(self) -> Var<'t, T> {
        self.elementwise(Unary::Abs(Abs))
    }
}

/// `|x|`.
#[derive(Clone, Copy)]
pub(crate) struct Abs;

impl<T: Element> Elementwise<T> for Abs {
    const NAME: &'static str = "abs";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x.abs()
    }
    // d |x| = sign(x), with sign(0) = 0
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        g.mul_by(x, |x| {
            if x > T::zero() {
                T::one()
            } else if x < T::zero() {
                -T::one()
            } else {
                T::zero()
            }
        })
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// The error function. Derivative: `2/√π · e^(−x²)`.
    pub fn erf(self) -> Var<'t, T> {
        self.elementwise(Unary::Erf(Erf))
    }
}

/// `erf x`, through the branch-free [`Element::erf_fast`].
#[derive(Clone, Copy)]
pub(crate) struct Erf;

impl<T: Element> Elementwise<T> for Erf {
    const NAME: &'static str = "erf";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x.erf_fast()
    }
    // Where a block of inputs lies within ±0.75, erf's polynomial branch alone (the same bits).
    fn forward(self, x: &Tensor<T>) -> Tensor<T> {
        x.map_par_easy(
            c(vmath::ERF_SMALL_MAX),
            #[inline(always)]
            |v| vmath::erf_small(v),
            #[inline(always)]
            move |v| self.f(v),
        )
    }
    // d erf x = 2/√π · e^(−x²)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        g.scale(T::FRAC_2_SQRT_PI()).mul(&x.neg().mul(x).exp())
    }
}

// ---------------------------------------------------------------- saturating activations

impl<'t, T: Element> Var<'t, T> {
    /// Logistic sigmoid `σ(x) = 1/(1 + e⁻ˣ)`, evaluated without overflow in either tail.
    /// Derivative: `σ(x)(1 − σ(x))`, computed from the output, at most 1/4 (at `x = 0`): the
    /// factor that makes deep sigmoid networks' gradients vanish.
    pub fn sigmoid(self) -> Var<'t, T> {
        self.elementwise(Unary::Sigmoid(Sigmoid))
    }
}

/// `σ(x)`.
#[derive(Clone, Copy)]
pub(crate) struct Sigmoid;

impl<T: Element> Elementwise<T> for Sigmoid {
    const NAME: &'static str = "sigmoid";
    #[inline(always)]
    fn f(self, x: T) -> T {
        sigmoid(x)
    }
    // σ' = σ(1 − σ), from the output so that it stays finite for |x| = 1000
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, _x: &E, y: &E) -> E {
        g.mul(y).mul(&y.sub_from(T::one()))
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Hyperbolic tangent. Derivative: `1 − tanh²(x)`, computed from the output.
    pub fn tanh(self) -> Var<'t, T> {
        self.elementwise(Unary::Tanh(Tanh))
    }
}

/// `tanh x`, through the branch-free [`Element::tanh_fast`].
#[derive(Clone, Copy)]
pub(crate) struct Tanh;

impl<T: Element> Elementwise<T> for Tanh {
    const NAME: &'static str = "tanh";
    #[inline(always)]
    fn f(self, x: T) -> T {
        x.tanh_fast()
    }
    // tanh' = 1 − tanh², from the output
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, _x: &E, y: &E) -> E {
        g.mul(&y.mul(y).sub_from(T::one()))
    }
}

// ---------------------------------------------------------------- rectifiers

impl<'t, T: Element> Var<'t, T> {
    /// `max(x, 0)`. Derivative: 1 for `x > 0`, else 0 (0 at the kink, as PyTorch).
    pub fn relu(self) -> Var<'t, T> {
        self.elementwise(Unary::Relu(Relu))
    }
}

/// `max(x, 0)`.
#[derive(Clone, Copy)]
pub(crate) struct Relu;

impl<T: Element> Elementwise<T> for Relu {
    const NAME: &'static str = "relu";
    // `v <= 0` is false for NaN, so NaN propagates as in PyTorch.
    #[inline(always)]
    fn f(self, v: T) -> T {
        if v <= T::zero() {
            T::zero()
        } else {
            v
        }
    }
    // relu' = [x > 0]; 0 at the kink. Read from the output, where y > 0 exactly when x > 0
    // (NaN in, NaN out: neither is > 0): the layer above has just read y for its weight
    // gradient, so y is in cache, where x was last touched in the forward pass.
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, _x: &E, y: &E) -> E {
        g.keep(y, |y| y > T::zero())
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// `x` for `x > 0`, else `slope·x` (PyTorch's default slope is 0.01). Derivative: 1 for
    /// `x > 0`, else `slope` (`slope` at the kink).
    pub fn leaky_relu(self, slope: T) -> Var<'t, T> {
        self.elementwise(Unary::LeakyRelu(LeakyRelu { slope }))
    }
}

/// `x` for `x > 0`, else `slope·x`.
#[derive(Clone, Copy)]
pub(crate) struct LeakyRelu<T> {
    pub(crate) slope: T,
}

impl<T: Element> Elementwise<T> for LeakyRelu<T> {
    const NAME: &'static str = "leaky_relu";
    #[inline(always)]
    fn f(self, v: T) -> T {
        if v > T::zero() {
            v
        } else {
            v * self.slope
        }
    }
    // leaky_relu' = 1 for x > 0, else slope (slope at the kink)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, y: &E) -> E {
        let s = self.slope;
        // With slope ≥ 0, y > 0 exactly when x > 0 (as for relu, read the output: in cache).
        // A negative slope makes y > 0 for x < 0 too, so then the input decides.
        let by = if s >= T::zero() { y } else { x };
        g.mul_by(by, |v| if v > T::zero() { T::one() } else { s })
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// `x` for `x > 0`, else `α(eˣ − 1)`. Derivative: 1 for `x > 0`, else `α·eˣ` (`α` at the kink).
    pub fn elu(self, alpha: T) -> Var<'t, T> {
        self.elementwise(Unary::Elu(Elu { alpha }))
    }
}

/// `x` for `x > 0`, else `α(eˣ − 1)`.
#[derive(Clone, Copy)]
pub(crate) struct Elu<T> {
    pub(crate) alpha: T,
}

impl<T: Element> Elementwise<T> for Elu<T> {
    const NAME: &'static str = "elu";
    #[inline(always)]
    fn f(self, v: T) -> T {
        if v > T::zero() {
            v
        } else {
            // v ≤ 0 here (or NaN): the cheaper expm1, without its large-argument branch.
            self.alpha * expm1_nonpositive(v)
        }
    }
    // elu' = 1 for x > 0, else α·eˣ (α at the kink)
    // α·eˣ is computed from x, not as y + α: that sum cancels (to exactly 0 once
    // eˣ < ulp(α), i.e. x < −17 in f32, x < −37 in f64), where PyTorch, also working from x,
    // still has the gradient. The same holds for selu below.
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        E::select(x, |x| x > T::zero(), g, &g.scale(self.alpha).mul(&x.exp()))
    }
    fn df_on_tape<A: Algebra<T>>(self, g: &A, x: &A, _y: &A) -> A {
        let pos = x.lift(x.value().map(|v| step(v > T::zero())));
        g.mul(&pos.add(&scaled_exp_below_zero(x, self.alpha)))
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// `λ·elu(x, α)` with PyTorch's λ = 1.0507009873554805, α = 1.6732632423543772.
    /// Derivative: λ for `x > 0`, else `λα·eˣ` (`λα` at the kink).
    pub fn selu(self) -> Var<'t, T> {
        self.elementwise(Unary::Selu(Selu))
    }
}

/// `λ·elu(x, α)`.
#[derive(Clone, Copy)]
pub(crate) struct Selu;

impl<T: Element> Elementwise<T> for Selu {
    const NAME: &'static str = "selu";
    #[inline(always)]
    fn f(self, v: T) -> T {
        let (a, l) = (c::<T>(SELU_ALPHA), c::<T>(SELU_SCALE));
        l * if v > T::zero() {
            v
        } else {
            a * expm1_nonpositive(v)
        }
    }
    // selu' = λ for x > 0, else λα·eˣ (λα at the kink)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        let (l, la) = (c::<T>(SELU_SCALE), c::<T>(SELU_SCALE * SELU_ALPHA));
        E::select(
            x,
            |x| x > T::zero(),
            &g.scale(l),
            &g.scale(la).mul(&x.exp()),
        )
    }
    fn df_on_tape<A: Algebra<T>>(self, g: &A, x: &A, _y: &A) -> A {
        let (l, la) = (c::<T>(SELU_SCALE), c::<T>(SELU_SCALE * SELU_ALPHA));
        let pos = x.lift(x.value().map(|v| if v > T::zero() { l } else { T::zero() }));
        g.mul(&pos.add(&scaled_exp_below_zero(x, la)))
    }
}

/// `c·eˣ` where `x ≤ 0` and 0 elsewhere, as a differentiable expression: elu's and selu's
/// derivative below the kink on the tape, where their one definition does not serve. There the
/// masked-out branch `c·eˣ` would still be computed at every element and overflow for large
/// `x`, and `∞·0 = NaN`; so the exponent is `min(x, 0) = −relu(−x)`, which can neither
/// overflow nor, at `x = +∞`, turn into NaN.
fn scaled_exp_below_zero<T: Element, A: Algebra<T>>(x: &A, c: T) -> A {
    let below = x.value().map(|v| step(v <= T::zero()));
    x.neg()
        .unary(&Op::Unary(Unary::Relu(Relu)))
        .neg()
        .exp()
        .scale(c)
        .mul_const(below)
}

// ---------------------------------------------------------------- smooth rectifiers

impl<'t, T: Element> Var<'t, T> {
    /// GELU, `x·Φ(x)` (exact, through `erf`) or its tanh approximation.
    /// Derivative: `Φ(x) + x·φ(x)` for the exact form; for the tanh form, with
    /// `u = √(2/π)(x + 0.044715x³)`, `½(1 + tanh u) + ½x(1 − tanh²u)·u'`.
    pub fn gelu(self, approx: GeluApprox) -> Var<'t, T> {
        self.elementwise(match approx {
            GeluApprox::None => Unary::Gelu(Gelu),
            GeluApprox::Tanh => Unary::GeluTanh(GeluTanh),
        })
    }
}

/// Below this magnitude GELU's erf argument `x/√2` is within erf's polynomial branch: 1.06/√2 is
/// 0.7495, under [`ERF_SMALL_MAX`](vmath::ERF_SMALL_MAX) by more than rounding can add.
const GELU_SMALL_MAX: f64 = 1.06;

/// Exact GELU, `x·Φ(x)`.
#[derive(Clone, Copy)]
pub(crate) struct Gelu;

impl<T: Element> Elementwise<T> for Gelu {
    const NAME: &'static str = "gelu";
    #[inline(always)]
    fn f(self, v: T) -> T {
        gelu_with(v, |z| z.erf_fast())
    }
    // Where a block of inputs lies within ±1.06 (so that |x/√2| ≤ 0.75), erf's polynomial
    // branch alone (the same bits): a deep GELU stack at PyTorch's default initialisation has
    // nearly all its pre-activations there, and the branch skipped is three quarters of erf's
    // work (grid_deep_gelu: f64 step −15%, f32 −11%).
    fn forward(self, x: &Tensor<T>) -> Tensor<T> {
        x.map_par_easy(
            c(GELU_SMALL_MAX),
            #[inline(always)]
            |v| gelu_with(v, vmath::erf_small),
            #[inline(always)]
            move |v| self.f(v),
        )
    }
    // gelu' = Φ(x) + x·φ(x), with Φ(x) read back from the output as y/x: the kernel then
    // evaluates one exponential, not erf's exponential and two polynomials besides (half the
    // backward's time; f64's erf is 3.9x f32's). The quotient is within 2 ulp of the Φ the
    // forward rounded; where it is 0/0 (x = 0, or |x| so small that y flushes to 0) Φ = ½.
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, y: &E) -> E {
        let cdf = quotient_or_half(y, x);
        g.mul(&cdf.add(&x.mul(&gauss_pdf(x))))
    }
    // On the tape Φ is erf's, as written: y/x would be differentiated as a quotient, which at
    // x = 0 (taken as the constant ½) loses Φ'(0) from the second derivative.
    fn df_on_tape<A: Algebra<T>>(self, g: &A, x: &A, _y: &A) -> A {
        let wrap = |a: &A| Composed(a.clone());
        let (g, x) = (wrap(g), wrap(x));
        let cdf = x
            .scale(T::FRAC_1_SQRT_2())
            .erf()
            .add_scalar(T::one())
            .scale(c(0.5));
        g.mul(&cdf.add(&x.mul(&gauss_pdf(&x)))).0
    }
}

/// `y/x`, and ½ where `|x| ≤ 1e−30` (there the quotient is 0/0, or `y` has flushed to 0): the
/// factor `Φ(x)` of GELU's output or `σ(x)` of SiLU's, read back from the output (both are ½ at
/// 0). Within 2 ulp of the factor the forward rounded.
#[inline(always)]
fn quotient_or_half<T: Element, E: Expr<T>>(y: &E, x: &E) -> E {
    let tiny = c::<T>(1e-30);
    E::select(
        x,
        move |v| v.abs() > tiny,
        &y.div(x),
        &x.scale(T::zero()).add_scalar(c(0.5)),
    )
}

/// `x·Φ(x) = ½x(1 + erf(x/√2))` with the erf given: one expression for both of GELU's forward
/// paths ([`Gelu::f`] and its shortcut), so that they round alike.
#[inline(always)]
fn gelu_with<T: Element>(x: T, erf: impl Fn(T) -> T) -> T {
    c::<T>(0.5) * x * (T::one() + erf(x * T::FRAC_1_SQRT_2()))
}

/// The standard normal density `φ(x) = e^(−x²/2)/√(2π)`.
#[inline(always)]
fn gauss_pdf<T: Element, E: Expr<T>>(x: &E) -> E {
    let inv_sqrt_2pi = T::FRAC_2_SQRT_PI() * T::FRAC_1_SQRT_2() * c::<T>(0.5);
    x.scale(c(-0.5)).mul(x).exp().scale(inv_sqrt_2pi)
}

/// GELU's tanh approximation, `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
#[derive(Clone, Copy)]
pub(crate) struct GeluTanh;

impl<T: Element> Elementwise<T> for GeluTanh {
    const NAME: &'static str = "gelu";
    #[inline(always)]
    fn f(self, v: T) -> T {
        let k = T::FRAC_2_SQRT_PI() * T::FRAC_1_SQRT_2(); // √(2/π)
        let cc = c::<T>(GELU_TANH_C);
        c::<T>(0.5) * v * (T::one() + (k * (v + cc * v * v * v)).tanh_fast())
    }
    // With u = k(x + c·x³), t = tanh u: gelu' = ½(1 + t) + ½x(1 − t²)·k(1 + 3c·x²)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        let k = T::FRAC_2_SQRT_PI() * T::FRAC_1_SQRT_2();
        let cc = c::<T>(GELU_TANH_C);
        let half = c::<T>(0.5);
        let t = x.add(&x.scale(cc).mul(x).mul(x)).scale(k).tanh();
        let du = x
            .scale(c::<T>(3.0) * cc)
            .mul(x)
            .add_scalar(T::one())
            .scale(k);
        let left = t.add_scalar(T::one()).scale(half);
        let right = x.scale(half).mul(&t.mul(&t).sub_from(T::one())).mul(&du);
        g.mul(&left.add(&right))
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// `log(1 + e^(βx))/β`, and `x` itself where `βx > threshold` (PyTorch defaults: β = 1,
    /// threshold = 20). Derivative: `σ(βx)`, and exactly 1 where `βx > threshold`.
    pub fn softplus(self, beta: T, threshold: T) -> Var<'t, T> {
        self.elementwise(Unary::Softplus(Softplus { beta, threshold }))
    }
}

/// `log(1 + e^(βx))/β`, linear above the threshold.
#[derive(Clone, Copy)]
pub(crate) struct Softplus<T> {
    pub(crate) beta: T,
    pub(crate) threshold: T,
}

impl<T: Element> Elementwise<T> for Softplus<T> {
    const NAME: &'static str = "softplus";
    #[inline(always)]
    fn f(self, v: T) -> T {
        if v * self.beta > self.threshold {
            v
        } else {
            (v * self.beta).exp_fast().ln_1p_fast() / self.beta
        }
    }
    // softplus' = σ(βx), and exactly 1 where βx > threshold (the linear region)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        let Softplus { beta, threshold } = self;
        let inner = g.mul(&x.scale(beta).sigmoid());
        E::select(x, |x| x * beta > threshold, g, &inner)
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// SiLU (swish), `x·σ(x)`. Derivative: `σ(x)(1 + x(1 − σ(x)))`.
    pub fn silu(self) -> Var<'t, T> {
        self.elementwise(Unary::Silu(Silu))
    }
}

/// `x·σ(x)`.
#[derive(Clone, Copy)]
pub(crate) struct Silu;

impl<T: Element> Elementwise<T> for Silu {
    const NAME: &'static str = "silu";
    #[inline(always)]
    fn f(self, v: T) -> T {
        v * sigmoid(v)
    }
    // silu' = σ(x)·(1 + x(1 − σ(x))), with σ(x) read back from the output as y/x, as GELU
    // reads Φ: no exponential in the backward kernel, which made SiLU the slowest of the
    // sigmoid family where the kernel's exp is 8 lanes wide (AVX2). The quotient is within
    // 2 ulp of the σ the forward rounded; where it is 0/0 (x = 0, or |x| so small that y
    // flushes to 0) σ = ½. Where σ(x) itself underflows (x < −87 in f32) y carries that
    // underflow, so y/x is the σ recomputing it would give (0 when flushed).
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, y: &E) -> E {
        silu_grad(g, x, &quotient_or_half(y, x))
    }
    // On the tape σ is recomputed from x, as written: y/x would be differentiated as a
    // quotient, which at x = 0 (taken as the constant ½) loses σ'(0) from the second
    // derivative.
    fn df_on_tape<A: Algebra<T>>(self, g: &A, x: &A, _y: &A) -> A {
        let wrap = |a: &A| Composed(a.clone());
        let (g, x) = (wrap(g), wrap(x));
        silu_grad(&g, &x, &x.sigmoid()).0
    }
}

/// `g·σ·(1 + x(1 − σ))`, SiLU's derivative given σ = σ(x): one expression for the fused
/// kernel and the tape, so that they round alike.
#[inline(always)]
fn silu_grad<T: Element, E: Expr<T>>(g: &E, x: &E, s: &E) -> E {
    g.mul(s)
        .mul(&x.mul(&s.sub_from(T::one())).add_scalar(T::one()))
}

// ---------------------------------------------------------------- clamp

impl<'t, T: Element> Var<'t, T> {
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
        self.elementwise(Unary::Clamp(Clamp { min, max }))
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

/// `min(max(x, min), max)`; an infinite bound is no bound.
#[derive(Clone, Copy)]
pub(crate) struct Clamp<T> {
    pub(crate) min: T,
    pub(crate) max: T,
}

impl<T: Element> Elementwise<T> for Clamp<T> {
    const NAME: &'static str = "clamp";
    // The lower bound first, then the upper: with min > max every element becomes max,
    // as in PyTorch. A NaN x passes through both comparisons.
    #[inline(always)]
    fn f(self, v: T) -> T {
        let v = if v < self.min { self.min } else { v };
        if v > self.max {
            self.max
        } else {
            v
        }
    }
    // clamp' = 1 strictly inside the bounds, 0 outside, at a finite bound and at NaN
    // (PyTorch 2.15 passes no gradient at x = min or x = max either)
    #[inline(always)]
    fn df<E: Expr<T>>(self, g: &E, x: &E, _y: &E) -> E {
        let Clamp { min, max } = self;
        g.keep(x, move |v| {
            !v.is_nan()
                && (v > min || min == T::neg_infinity())
                && (v < max || max == T::infinity())
        })
    }
    // A NaN bound gives NaN everywhere; decided once, not per element.
    fn forward(self, x: &Tensor<T>) -> Tensor<T> {
        if self.min.is_nan() || self.max.is_nan() {
            x.map_par(|_| T::nan())
        } else {
            forward_map(self, x)
        }
    }
}

// ---------------------------------------------------------------- arithmetic

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
    /// Records the unary function `u` applied to every element.
    #[inline]
    pub(crate) fn elementwise(self, u: Unary<T>) -> Var<'t, T> {
        let v = {
            let x = self.value_ref();
            // Subnormals flushed on large tensors (see `vgrad::set_flush_denormal`).
            let _flush = FlushScope::for_elems(x.numel());
            u.forward(&x)
        };
        self.record(Op::Unary(u), &[self.id], v)
    }

    /// [`elementwise`](Var::elementwise) for an [`Op::Unary`] (what the tape's
    /// [`Algebra::unary`] hands over).
    pub(crate) fn apply_unary(self, op: Op<T>) -> Var<'t, T> {
        match op {
            Op::Unary(u) => self.elementwise(u),
            other => unreachable!("apply_unary called with {}", other.name()),
        }
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
            let _flush = FlushScope::for_elems(a.numel().max(b.numel()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tape;

    /// GELU's fused backward reads Φ(x) back from the output as y/x: at 0, at values whose
    /// output flushes to 0, far out in both tails and in between it must give Φ(x) + x·φ(x),
    /// here from libm's erf in f64.
    #[test]
    fn gelu_backward_from_the_output() {
        let want = |x: f64| {
            0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
                + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
        };
        let xs = [
            0.0, -0.0, 1e-40, -1e-35, 1e-20, 3e-8, -0.3, 0.7, 1.5, -2.0, 3.1, -5.0, -9.0, 12.0,
            -40.0,
        ];
        for &x in &xs {
            let g = <Gelu as Elementwise<f64>>::df(Gelu, &1.0, &x, &Gelu.f(x));
            assert!(
                (g - want(x)).abs() <= 4e-16 * (1.0 + want(x).abs()),
                "f64 at {x}: {g}"
            );
            let x32 = x as f32;
            let g32 = <Gelu as Elementwise<f32>>::df(Gelu, &1.0, &x32, &Gelu.f(x32));
            let w32 = want(f64::from(x32));
            assert!(
                (f64::from(g32) - w32).abs() <= 4e-7 * (1.0 + w32.abs()),
                "f32 at {x}: {g32} vs {w32}"
            );
        }
    }

    /// SiLU's fused backward reads σ(x) back from the output as y/x: at 0, where the output
    /// flushes to 0 or σ underflows, in both tails and in between it must give
    /// σ(x)(1 + x(1 − σ(x))), here with σ from libm's exp in f64.
    #[test]
    fn silu_backward_from_the_output() {
        let want = |x: f64| {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        };
        let xs = [
            0.0, -0.0, 1e-40, -1e-35, 1e-20, 3e-8, -0.3, 0.7, 1.5, -2.0, 3.1, -5.0, -9.0, 12.0,
            -40.0, 30.0, -88.0, -95.0, 100.0, -700.0, 800.0,
        ];
        // The quotient's 2 ulp of σ are multiplied by x in x(1 − σ).
        let tol = |eps: f64, x: f64| eps * (1.0 + x.abs()) * (1.0 + want(x).abs());
        for &x in &xs {
            let g = <Silu as Elementwise<f64>>::df(Silu, &1.0, &x, &Silu.f(x));
            assert!(
                (g - want(x)).abs() <= tol(4e-16, x),
                "f64 at {x}: {g} vs {}",
                want(x)
            );
            let x32 = x as f32;
            let g32 = <Silu as Elementwise<f32>>::df(Silu, &1.0, &x32, &Silu.f(x32));
            let w32 = want(f64::from(x32));
            assert!(
                (f64::from(g32) - w32).abs() <= tol(4e-7, f64::from(x32)),
                "f32 at {x}: {g32} vs {w32}"
            );
        }
    }

    /// On the tape SiLU's derivative recomputes σ from x, so it differentiates again at 0,
    /// where the fused kernel takes σ = ½ as a constant: silu''(0) = 2σ'(0) = ½.
    #[test]
    fn silu_second_derivative_at_zero() {
        let tape = Tape::new();
        let x = tape.leaf(Tensor::from_slice(&[0.0f64, 1.3], &[2]).unwrap());
        let dx = x.silu().sum().backward_graph().wrt(x).unwrap();
        let grads = dx.sum().backward();
        let h = grads.wrt(x).unwrap();
        let s = 1.0 / (1.0 + (-1.3f64).exp());
        // silu'' = σ'·(2 + x(1 − 2σ)), σ' = σ(1 − σ)
        let want = [0.5, s * (1.0 - s) * (2.0 + 1.3 * (1.0 - 2.0 * s))];
        for (got, want) in h.data().iter().zip(want) {
            assert!((got - want).abs() <= 1e-14, "{got} vs {want}");
        }
    }

    /// erf's and exact GELU's forward passes take erf's polynomial branch alone on blocks of
    /// small inputs: the result must be the scalar function's, bit for bit, on blocks that
    /// are all small (up to each one's limit), on mixed blocks, and at ±0, ±∞ and NaN.
    #[test]
    fn erf_and_gelu_shortcuts_give_the_functions_bits() {
        fn check<T: Element>(limit: f64) {
            let n = 4096 + 13;
            let x = Tensor::<T>::from_fn(&[n], |i| {
                T::of(match i {
                    0 => limit,
                    1 => -limit,
                    2 => -0.0,
                    3 => 1e-30,
                    // One block in eight with a large value or a special one at its start.
                    _ if i % 1024 == 512 => [3.0, f64::INFINITY, f64::NAN, -9.0][i / 1024],
                    // Elsewhere small: within ±limit, varied.
                    _ => limit * (((i * 7919) % 2001) as f64 / 1000.0 - 1.0),
                })
            });
            let same = |a: T, b: T| a == b && a.is_sign_negative() == b.is_sign_negative();
            for (name, y, f) in [
                ("erf", Erf.forward(&x), (|v: T| Erf.f(v)) as fn(T) -> T),
                ("gelu", Gelu.forward(&x), |v: T| Gelu.f(v)),
            ] {
                for (i, (&v, &got)) in x.data().iter().zip(y.data()).enumerate() {
                    let want = f(v);
                    assert!(
                        same(got, want) || (got.is_nan() && want.is_nan()),
                        "{name} {} at {i}: {got:?} vs {want:?} from {v:?}",
                        T::DTYPE
                    );
                }
            }
        }
        for limit in [vmath::ERF_SMALL_MAX, GELU_SMALL_MAX] {
            check::<f32>(limit);
            check::<f64>(limit);
        }
    }

    /// One of every variant of [`Unary`], with parameters away from their special cases. The
    /// exhaustive match makes a new variant fail to compile until it is listed here, and so
    /// checked by the tests below.
    fn every_unary() -> Vec<Unary<f64>> {
        let all = vec![
            Unary::PowF(PowF(1.7)),
            Unary::Exp(Exp),
            Unary::Ln(Ln),
            Unary::Sqrt(Sqrt),
            Unary::Abs(Abs),
            Unary::Erf(Erf),
            Unary::Sigmoid(Sigmoid),
            Unary::Tanh(Tanh),
            Unary::Relu(Relu),
            Unary::LeakyRelu(LeakyRelu { slope: 0.1 }),
            Unary::Elu(Elu { alpha: 1.3 }),
            Unary::Selu(Selu),
            Unary::Gelu(Gelu),
            Unary::GeluTanh(GeluTanh),
            Unary::Softplus(Softplus {
                beta: 2.0,
                threshold: 3.0,
            }),
            Unary::Silu(Silu),
            Unary::Clamp(Clamp {
                min: -0.5,
                max: 1.2,
            }),
        ];
        for u in &all {
            match u {
                Unary::PowF(_)
                | Unary::Exp(_)
                | Unary::Ln(_)
                | Unary::Sqrt(_)
                | Unary::Abs(_)
                | Unary::Erf(_)
                | Unary::Sigmoid(_)
                | Unary::Tanh(_)
                | Unary::Relu(_)
                | Unary::LeakyRelu(_)
                | Unary::Elu(_)
                | Unary::Selu(_)
                | Unary::Gelu(_)
                | Unary::GeluTanh(_)
                | Unary::Softplus(_)
                | Unary::Silu(_)
                | Unary::Clamp(_) => {}
            }
        }
        all
    }

    /// The derivative each definition writes once runs two ways: as the fused kernel on
    /// tensors and as the composed expression on the tape. They must agree for every function
    /// in the list (the property tests check the same through the public methods, against
    /// finite differences too).
    #[test]
    fn every_unary_function_fused_derivative_matches_its_composition() {
        // Positive inputs (ln, sqrt, powf) away from every kink and threshold.
        let xs: Vec<f64> = (0..40).map(|i| 0.05 + 0.083 * i as f64).collect();
        let x = Tensor::from_slice(&xs, &[40]).unwrap();
        let g = Tensor::from_fn(&[40], |i| 1.0 - 0.04 * i as f64);
        for u in every_unary() {
            let y = u.forward(&x);
            let fused = u.backward(&x, &y, &g);
            let tape = Tape::new();
            let (xv, yv, gv) = (
                tape.leaf(x.clone()),
                tape.leaf(y.clone()),
                tape.leaf(g.clone()),
            );
            let composed = u.backward(&xv, &yv, &gv).value();
            for (i, (a, b)) in fused.data().iter().zip(composed.data()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + a.abs()),
                    "{}: fused {a} and composed {b} differ at x = {}",
                    u.name(),
                    xs[i]
                );
            }
            assert!(fused.data().iter().any(|&v| v != 0.0), "{}", u.name());
        }
    }

    /// A recorded node is named after its function, as panics, anomalies and `Debug` report it;
    /// the names are PyTorch's (both GELU forms are `gelu`, `square` is a `powf`).
    #[test]
    fn every_unary_function_records_under_its_name() {
        let names = [
            "powf",
            "exp",
            "ln",
            "sqrt",
            "abs",
            "erf",
            "sigmoid",
            "tanh",
            "relu",
            "leaky_relu",
            "elu",
            "selu",
            "gelu",
            "gelu",
            "softplus",
            "silu",
            "clamp",
        ];
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f64>::from_slice(&[0.5, 1.5], &[2]).unwrap());
        for (u, name) in every_unary().into_iter().zip(names) {
            assert_eq!(u.name(), name);
            assert!(format!("{:?}", x.elementwise(u)).contains(&format!(" {name} ")));
        }
        assert!(format!("{:?}", x.square()).contains(" powf "));
    }
}
