//! Gradient checking against central finite differences (PyTorch's `gradcheck`).

use crate::tape::{Tape, Var};
use crate::tensor::Tensor;
use std::fmt;

/// Tolerances and step for [`gradcheck`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradcheckOptions {
    /// Finite-difference step: each input element is evaluated at `x ± eps`.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance, against the numerical value.
    pub rtol: f64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
        }
    }
}

/// One Jacobian entry: ∂ output\[`output`\] / ∂ inputs\[`input`\]\[`index`\].
#[derive(Clone, Debug, PartialEq)]
pub struct JacobianEntry {
    /// Which input tensor.
    pub input: usize,
    /// The element's multi-index within that input.
    pub index: Vec<usize>,
    /// The output element's flat index.
    pub output: usize,
    /// From reverse-mode autodiff.
    pub analytic: f64,
    /// From central differences.
    pub numeric: f64,
}

/// The outcome of [`gradcheck`]: whether every Jacobian entry agreed, and the worst entry.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    /// True when every entry satisfies `|analytic − numeric| ≤ atol + rtol·|numeric|`.
    pub passed: bool,
    /// The entry with the largest violation (or, when all pass, the smallest margin).
    pub worst: Option<JacobianEntry>,
    /// Number of Jacobian entries compared.
    pub entries: usize,
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed { "passed" } else { "FAILED" };
        write!(
            f,
            "gradcheck {verdict} on {} Jacobian entries",
            self.entries
        )?;
        if let Some(w) = &self.worst {
            write!(
                f,
                "; worst: d out[{}] / d input {}{:?}: analytic {:.10e}, numeric {:.10e} (diff {:.3e})",
                w.output,
                w.input,
                w.index,
                w.analytic,
                w.numeric,
                (w.analytic - w.numeric).abs()
            )?;
        }
        Ok(())
    }
}

impl GradcheckReport {
    /// Panics with the report when the check failed; convenient in tests.
    ///
    /// # Panics
    /// If `passed` is false.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.passed, "{self}");
    }
}

/// Compares the reverse-mode Jacobian of `f` at `inputs` with central finite differences.
///
/// `f` receives the inputs as leaves on a fresh tape and returns any output. Every output element
/// is differentiated (one backward pass each) against every input element (two forward
/// evaluations each), so keep the tensors small. Use `f64`: `f32` central differences cannot
/// resolve PyTorch's default tolerances.
///
/// # Example
/// ```
/// use vgrad::{gradcheck, GradcheckOptions, Tensor};
/// let x = Tensor::from_vec(vec![0.3, -1.2, 2.0], &[3])?;
/// let report = gradcheck(|v| (v[0] * v[0]).tanh().sum(), &[x], GradcheckOptions::default());
/// assert!(report.passed, "{report}");
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn gradcheck<F>(f: F, inputs: &[Tensor<f64>], opts: GradcheckOptions) -> GradcheckReport
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let eval = |xs: &[Tensor<f64>]| -> Tensor<f64> {
        let tape = Tape::new();
        let vars: Vec<_> = xs.iter().map(|x| tape.constant(x.clone())).collect();
        f(&vars).value()
    };
    // Analytic Jacobian: row `o` from one backward pass seeded with the one-hot of output `o`.
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&vars);
    let out_shape = out.shape();
    let n_out: usize = out_shape.iter().product();
    let mut analytic: Vec<Vec<Vec<f64>>> = Vec::with_capacity(n_out); // [out][input][elem]
    for o in 0..n_out {
        let seed = Tensor::from_fn(&out_shape, |i| if i == o { 1.0 } else { 0.0 });
        let grads = out.backward_with(seed);
        analytic.push(
            vars.iter()
                .zip(inputs)
                .map(|(v, x)| match grads.wrt(*v) {
                    Some(g) => g.to_vec(),
                    None => vec![0.0; x.numel()],
                })
                .collect(),
        );
    }

    let mut worst: Option<(f64, JacobianEntry)> = None;
    let mut passed = true;
    let mut entries = 0;
    for (i, x) in inputs.iter().enumerate() {
        for e in 0..x.numel() {
            let mut shifted = inputs.to_vec();
            let probe = |delta: f64, shifted: &mut Vec<Tensor<f64>>| {
                let mut d = x.to_vec();
                d[e] += delta;
                shifted[i] = Tensor::from_vec(d, x.shape()).expect("same shape");
                eval(shifted)
            };
            let plus = probe(opts.eps, &mut shifted);
            let minus = probe(-opts.eps, &mut shifted);
            for (o, row) in analytic.iter().enumerate() {
                let numeric = (plus.data()[o] - minus.data()[o]) / (2.0 * opts.eps);
                let a = row[i][e];
                let allowed = opts.atol + opts.rtol * numeric.abs();
                let excess = (a - numeric).abs() - allowed;
                let ok = excess <= 0.0 || a == numeric;
                passed &= ok;
                entries += 1;
                if worst
                    .as_ref()
                    .is_none_or(|(w, _)| excess > *w || excess.is_nan())
                {
                    worst = Some((
                        if excess.is_nan() {
                            f64::INFINITY
                        } else {
                            excess
                        },
                        JacobianEntry {
                            input: i,
                            index: unravel(e, x.shape()),
                            output: o,
                            analytic: a,
                            numeric,
                        },
                    ));
                }
            }
        }
    }
    GradcheckReport {
        passed,
        worst: worst.map(|(_, w)| w),
        entries,
    }
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for ax in (0..shape.len()).rev() {
        idx[ax] = flat % shape[ax];
        flat /= shape[ax];
    }
    idx
}
