//! `Residual`: a skip connection around a branch, `y = x + scale·f(x)`.

use super::linear::Linear;
use super::module::{
    join, Ctx, DottedPath, Module, NamedVisitor, OutputKind, Param, Visitor, VisitorMut,
};
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::{Element, Tensor};
use std::fmt;

/// How a [`Residual`] block is built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualConfig {
    /// Multiplies the branch output: `y = x + branch_scale·f(x)` (default 1.0). Values below 1
    /// (e.g. `1/√depth` or `0.1`) keep a deep stack of blocks close to the identity at
    /// initialisation; 0 turns the branch off in the forward pass (it then receives no gradient
    /// either). Must be finite.
    pub branch_scale: f64,
}

impl Default for ResidualConfig {
    fn default() -> Self {
        ResidualConfig { branch_scale: 1.0 }
    }
}

/// A residual block: `y = x + s·f(x)`, or `y = P(x) + s·f(x)` with a projection `P` (a
/// [`Linear`]) when the branch changes the width.
///
/// `f` is any module (usually a [`Sequential`](super::Sequential)), `s` is
/// [`ResidualConfig::branch_scale`] (default 1). Children are named `branch` and `proj`, so
/// parameters get the names a PyTorch module with `self.branch = nn.Sequential(...)` and
/// `self.proj = nn.Linear(...)` would give: `branch.0.weight`, `proj.weight`.
///
/// Accepts whatever the branch accepts; the skip path and the branch output must have the same
/// shape. Derivative: `dx = g + s·J_f(x)ᵀg` (or `J_P(x)ᵀg + s·J_f(x)ᵀg`): the identity term
/// carries the gradient past the branch undiminished, which is why deep residual networks train
/// where plain ones starve.
///
/// **Initialise the branch small.** Each block adds its branch's variance to the signal, so a
/// deep stack of residual MLPs with default initialisation grows its activations (and
/// gradients) with depth and diverges. Either scale the branch down with
/// [`ResidualConfig::branch_scale`], or zero the branch's last layer with
/// [`zero_init_last`](Residual::zero_init_last) so every block starts as the identity (the
/// "zero-init residual" / Fixup trick): then, at the first step, only that last layer receives a
/// gradient, and the rest of the branch wakes up once it is non-zero.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Residual, Sequential};
/// use vgrad::{Tape, Tensor};
/// let mut rng = StdRng::seed_from_u64(0);
/// let branch = Sequential::<f64>::new()
///     .push(Linear::new(4, 8, &mut rng)?)
///     .push(Activation::Relu)
///     .push(Linear::new(8, 4, &mut rng)?);
/// let mut block = Residual::new(branch);
/// assert_eq!(block.zero_init_last().as_deref(), Some("2")); // zeroed branch.2.{weight,bias}
/// let names: Vec<String> = block.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["branch.0.weight", "branch.0.bias", "branch.2.weight", "branch.2.bias"]);
///
/// let tape = Tape::new();
/// let x = Tensor::from_fn(&[3, 4], |i| i as f64 * 0.1);
/// let y = block.forward(&mut Ctx::new(&tape), tape.constant(x.clone()));
/// assert!(y.value().allclose(&x, 0.0, 1e-15)); // the identity at initialisation
/// # Ok::<(), vgrad::Error>(())
/// ```
#[derive(Clone)]
pub struct Residual<T: Element> {
    branch: Box<dyn Module<T>>,
    proj: Option<Linear<T>>,
    branch_scale: f64,
}

impl<T: Element> Residual<T> {
    /// `y = x + f(x)` around `branch`.
    pub fn new(branch: impl Module<T> + 'static) -> Self {
        Residual {
            branch: Box::new(branch),
            proj: None,
            branch_scale: 1.0,
        }
    }

    /// A block built from a [`ResidualConfig`].
    ///
    /// # Errors
    /// [`Error::Config`] if `branch_scale` is not finite.
    pub fn with_config(branch: impl Module<T> + 'static, cfg: ResidualConfig) -> Result<Self> {
        if !cfg.branch_scale.is_finite() {
            return Err(Error::Config(format!(
                "Residual: branch_scale must be finite, got {}",
                cfg.branch_scale
            )));
        }
        Ok(Residual {
            branch_scale: cfg.branch_scale,
            ..Self::new(branch)
        })
    }

    /// Replaces the identity skip with a projection, `y = proj(x) + s·f(x)`, for a branch whose
    /// output width differs from its input's. Often built without a bias
    /// (`LinearConfig::default().no_bias()`).
    pub fn with_projection(mut self, proj: Linear<T>) -> Self {
        self.proj = Some(proj);
        self
    }

    /// The branch `f`.
    pub fn branch(&self) -> &dyn Module<T> {
        &*self.branch
    }

    /// Mutable access to the branch.
    pub fn branch_mut(&mut self) -> &mut dyn Module<T> {
        &mut *self.branch
    }

    /// The projection on the skip path, if any.
    pub fn proj(&self) -> Option<&Linear<T>> {
        self.proj.as_ref()
    }

    /// The factor `s` on the branch output.
    pub fn branch_scale(&self) -> f64 {
        self.branch_scale
    }

    /// Zeros the branch's last layer so the block starts as the identity (or the projection):
    /// the parameters `weight` and `bias` of the last child, in visiting order, that has a
    /// `weight` — the last `Linear`, or a final `BatchNorm1d`'s γ and β (torchvision's
    /// `zero_init_residual`). Returns that child's dotted path within the branch (`"3"` for
    /// `branch.3`; `""` when the branch is itself a `Linear`), or `None` when the branch has
    /// no parameter named `weight` and nothing was changed.
    pub fn zero_init_last(&mut self) -> Option<String> {
        let mut last: Option<String> = None;
        self.branch.visit(&mut NamedVisitor::new(
            |name: &str, _: &Tensor<T>, is_param| {
                if is_param && (name == "weight" || name.ends_with(".weight")) {
                    last = Some(name.to_string());
                }
            },
        ));
        let prefix = last?
            .strip_suffix("weight")
            .expect("matched above")
            .trim_end_matches('.')
            .to_string();
        let mut z = ZeroScope {
            path: DottedPath::default(),
            targets: [join(&prefix, "weight"), join(&prefix, "bias")],
        };
        self.branch.visit_mut(&mut z);
        Some(prefix)
    }
}

/// Zeros the parameters whose dotted names are in `targets`.
struct ZeroScope {
    path: DottedPath,
    targets: [String; 2],
}

impl<T: Element> VisitorMut<T> for ZeroScope {
    fn enter(&mut self, name: &str) {
        self.path.enter(name);
    }
    fn exit(&mut self) {
        self.path.exit();
    }
    fn param(&mut self, name: &str, p: &mut Param<T>) {
        if self.targets.contains(&self.path.full(name)) {
            p.set(Tensor::zeros(p.value().shape()));
        }
    }
}

impl<T: Element> Module<T> for Residual<T> {
    /// # Panics
    /// If the skip path (the input, or its projection) and the branch output differ in shape;
    /// and whatever the branch or the projection panic on.
    #[track_caller]
    fn forward<'t>(&mut self, ctx: &mut Ctx<'t, T>, x: Var<'t, T>) -> Var<'t, T> {
        let branch = &mut self.branch;
        let mut fx = ctx.scoped("branch", |ctx| branch.forward(ctx, x));
        if self.branch_scale != 1.0 {
            fx = fx.scale(T::of(self.branch_scale));
        }
        let skip = match &mut self.proj {
            Some(p) => ctx.scoped("proj", |ctx| p.forward(ctx, x)),
            None => x,
        };
        let (ss, fs) = (skip.shape(), fx.shape());
        assert!(
            ss == fs,
            "Residual: skip path of shape {ss:?} and branch output of shape {fs:?} differ; \
             add a projection (Residual::with_projection) when the branch changes the width"
        );
        ctx.label_as(skip + fx, OutputKind::Residual)
    }

    fn visit(&self, v: &mut dyn Visitor<T>) {
        v.enter("branch");
        self.branch.visit(v);
        v.exit();
        if let Some(p) = &self.proj {
            v.enter("proj");
            p.visit(v);
            v.exit();
        }
    }

    fn visit_mut(&mut self, v: &mut dyn VisitorMut<T>) {
        v.enter("branch");
        self.branch.visit_mut(v);
        v.exit();
        if let Some(p) = &mut self.proj {
            v.enter("proj");
            p.visit_mut(v);
            v.exit();
        }
    }

    fn set_training(&mut self, training: bool) {
        self.branch.set_training(training);
    }
}

/// Like PyTorch's `print(model)`: extra settings first, then one line per child.
impl<T: Element> fmt::Debug for Residual<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Residual(")?;
        if self.branch_scale != 1.0 {
            writeln!(
                f,
                "  branch_scale={}",
                super::batchnorm::py_float(self.branch_scale)
            )?;
        }
        let indent = |d: &dyn fmt::Debug| format!("{d:?}").replace('\n', "\n  ");
        writeln!(f, "  (branch): {}", indent(&*self.branch))?;
        if let Some(p) = &self.proj {
            writeln!(f, "  (proj): {}", indent(p))?;
        }
        write!(f, ")")
    }
}
