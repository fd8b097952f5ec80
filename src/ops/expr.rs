//! How an elementwise function is defined once: [`Elementwise`] holds its value and its
//! derivative per element side by side, the derivative written in [`Expr`] so that one
//! expression serves as the fused kernel (on scalars) and as the composed, differentiable form
//! (on the tape, through [`Composed`]). The functions themselves are in `elementwise.rs`.

use super::elementwise::{sigmoid, Erf, Tanh, Unary};
use super::{Algebra, Op};
use crate::tensor::{Element, Tensor};

/// 1 where `cond`, else 0: a mask's entry.
#[inline(always)]
pub(crate) fn step<T: Element>(cond: bool) -> T {
    if cond {
        T::one()
    } else {
        T::zero()
    }
}

/// A unary elementwise function, defined once: its value and its derivative per element, side by
/// side. The value is the body of the forward loop; the derivative, written once in [`Expr`],
/// runs on scalars as the body of the fused backward loop and on the tape as the composed,
/// differentiable expression `create_graph` records. Both loops run under the SIMD dispatch
/// ([`Tensor::map_par`], [`Tensor::zip3_map`]), so each function's own code is compiled for
/// AVX-512 / AVX2 where the CPU has them.
///
/// Implemented by a small `Copy` struct per function, holding its parameters
/// (`elementwise.rs`); the [`Unary`] enum lists them for the tape.
pub(crate) trait Elementwise<T: Element>: Copy + Send + Sync + 'static {
    /// The function's name in panics, anomalies and `Debug` output.
    const NAME: &'static str;

    /// `f(x)` for one element.
    fn f(self, x: T) -> T;

    /// `g·f'(x)`, given the input `x` and the output `y = f(x)` (many derivatives are cheaper,
    /// or only finite, from `y`). Written once for both uses: with `E = T` it is the fused
    /// kernel, one pass over `(g, x, y)`; with `E` a [`Composed`] tape value it is the same
    /// maths recorded op by op, differentiable again. Both evaluate the same expression, so
    /// write it in the order the fused kernel should round in.
    fn df<E: Expr<T>>(self, g: &E, x: &E, y: &E) -> E;

    /// The derivative on the tape. By default [`df`](Elementwise::df) itself; a function
    /// overrides it only where recording that expression as written would go wrong (elu's
    /// masked-out branch overflows into `∞·0 = NaN`), and says why.
    fn df_on_tape<A: Algebra<T>>(self, g: &A, x: &A, y: &A) -> A {
        let wrap = |a: &A| Composed(a.clone());
        self.df(&wrap(g), &wrap(x), &wrap(y)).0
    }

    /// `f` on every element of `x`. By default one vectorised pass of [`f`](Elementwise::f);
    /// a function overrides it to take a shortcut decided once per tensor (`powf` with `p = 2`)
    /// or per block of elements (erf and GELU near 0, through [`Tensor::map_par_easy`]).
    fn forward(self, x: &Tensor<T>) -> Tensor<T> {
        forward_map(self, x)
    }

    /// `g·f'(x)`: the fused kernel on tensors, [`df_on_tape`](Elementwise::df_on_tape) on the
    /// tape. A function overrides it only to pick a case once per tensor (`powf` with `p = 0`).
    fn backward<A: Algebra<T>>(self, g: &A, x: &A, y: &A) -> A {
        pointwise_backward(self, g, x, y)
    }
}

/// [`Elementwise::forward`]'s default: one pass of `f`, split over threads for large tensors.
#[inline(always)]
pub(crate) fn forward_map<T: Element, F: Elementwise<T>>(f: F, x: &Tensor<T>) -> Tensor<T> {
    x.map_par(
        #[inline(always)]
        move |v| f.f(v),
    )
}

/// [`Elementwise::backward`]'s default: the fused kernel `df` on scalars for tensors, the
/// composed expression on the tape.
#[inline(always)]
pub(crate) fn pointwise_backward<T: Element, F: Elementwise<T>, A: Algebra<T>>(
    f: F,
    g: &A,
    x: &A,
    y: &A,
) -> A {
    A::pointwise(
        g,
        x,
        y,
        #[inline(always)]
        move |g, x, y| f.df(&g, &x, &y),
        || f.df_on_tape(g, x, y),
    )
}

/// The vocabulary derivatives are written in, implemented twice: by the element type `T`, where
/// each method is one scalar operation (so a derivative compiles to the fused kernel's loop
/// body), and by [`Composed`], where each records an op on the tape.
///
/// On scalars `exp`, `erf` and `tanh` are the branch-free [`Element::exp_fast`],
/// [`Element::erf_fast`] and [`Element::tanh_fast`] (within 3 ulp, see `tensor/vmath.rs`): a libm
/// call per element would keep the fused loop scalar. On the tape they are the `exp`, `erf` and
/// `tanh` ops, whose kernels use the same functions.
pub(crate) trait Expr<T: Element>: Sized {
    fn add(&self, o: &Self) -> Self;
    fn mul(&self, o: &Self) -> Self;
    fn div(&self, o: &Self) -> Self;
    fn neg(&self) -> Self;
    fn scale(&self, s: T) -> Self;
    fn add_scalar(&self, s: T) -> Self;
    /// `s − self`.
    fn sub_from(&self, s: T) -> Self;
    fn exp(&self) -> Self;
    fn erf(&self) -> Self;
    fn tanh(&self) -> Self;
    fn sigmoid(&self) -> Self;
    fn powf(&self, p: T) -> Self;
    /// `self · c(x)` with `c` a constant of `x` (a sign, a slope): not differentiated.
    fn mul_by(&self, x: &Self, c: impl Fn(T) -> T) -> Self;
    /// `self` where `cond(x)`, else 0 — also where `self` is not finite.
    fn keep(&self, x: &Self, cond: impl Fn(T) -> bool) -> Self;
    /// `a` where `cond(x)`, else `b`.
    fn select(x: &Self, cond: impl Fn(T) -> bool, a: &Self, b: &Self) -> Self;
}

impl<T: Element> Expr<T> for T {
    #[inline(always)]
    fn add(&self, o: &Self) -> Self {
        *self + *o
    }
    #[inline(always)]
    fn mul(&self, o: &Self) -> Self {
        *self * *o
    }
    #[inline(always)]
    fn div(&self, o: &Self) -> Self {
        *self / *o
    }
    #[inline(always)]
    fn neg(&self) -> Self {
        -*self
    }
    #[inline(always)]
    fn scale(&self, s: T) -> Self {
        *self * s
    }
    #[inline(always)]
    fn add_scalar(&self, s: T) -> Self {
        *self + s
    }
    #[inline(always)]
    fn sub_from(&self, s: T) -> Self {
        s - *self
    }
    #[inline(always)]
    fn exp(&self) -> Self {
        self.exp_fast()
    }
    #[inline(always)]
    fn erf(&self) -> Self {
        self.erf_fast()
    }
    #[inline(always)]
    fn tanh(&self) -> Self {
        self.tanh_fast()
    }
    #[inline(always)]
    fn sigmoid(&self) -> Self {
        sigmoid(*self)
    }
    #[inline(always)]
    fn powf(&self, p: T) -> Self {
        num_traits::Float::powf(*self, p)
    }
    #[inline(always)]
    fn mul_by(&self, x: &Self, c: impl Fn(T) -> T) -> Self {
        *self * c(*x)
    }
    #[inline(always)]
    fn keep(&self, x: &Self, cond: impl Fn(T) -> bool) -> Self {
        if cond(*x) {
            *self
        } else {
            T::zero()
        }
    }
    #[inline(always)]
    fn select(x: &Self, cond: impl Fn(T) -> bool, a: &Self, b: &Self) -> Self {
        if cond(*x) {
            *a
        } else {
            *b
        }
    }
}

/// A tape value (a [`Var`] under `create_graph`; any [`Algebra`]) as an [`Expr`]: each method
/// records the op. Conditions on `x` become constant masks taken from its value.
#[derive(Clone)]
pub(crate) struct Composed<A>(pub(crate) A);

impl<T: Element, A: Algebra<T>> Expr<T> for Composed<A> {
    fn add(&self, o: &Self) -> Self {
        Composed(self.0.add(&o.0))
    }
    fn mul(&self, o: &Self) -> Self {
        Composed(self.0.mul(&o.0))
    }
    fn div(&self, o: &Self) -> Self {
        Composed(self.0.div(&o.0))
    }
    fn neg(&self) -> Self {
        Composed(self.0.neg())
    }
    fn scale(&self, s: T) -> Self {
        Composed(self.0.scale(s))
    }
    fn add_scalar(&self, s: T) -> Self {
        Composed(self.0.add_scalar(s))
    }
    fn sub_from(&self, s: T) -> Self {
        Composed(self.0.neg().add_scalar(s))
    }
    fn exp(&self) -> Self {
        Composed(self.0.exp())
    }
    fn erf(&self) -> Self {
        Composed(self.0.unary(&Op::Unary(Unary::Erf(Erf))))
    }
    fn tanh(&self) -> Self {
        Composed(self.0.unary(&Op::Unary(Unary::Tanh(Tanh))))
    }
    fn sigmoid(&self) -> Self {
        Composed(self.0.sigmoid())
    }
    fn powf(&self, p: T) -> Self {
        Composed(self.0.powf(p))
    }
    fn mul_by(&self, x: &Self, c: impl Fn(T) -> T) -> Self {
        Composed(self.0.mul_const(x.0.value().map(c)))
    }
    fn keep(&self, x: &Self, cond: impl Fn(T) -> bool) -> Self {
        Composed(self.0.mul_const(x.0.value().map(|v| step(cond(v)))))
    }
    fn select(x: &Self, cond: impl Fn(T) -> bool, a: &Self, b: &Self) -> Self {
        let xv = x.0.value();
        let on = a.0.mul_const(xv.map(|v| step(cond(v))));
        let off = b.0.mul_const(xv.map(|v| step(!cond(v))));
        Composed(on.add(&off))
    }
}
