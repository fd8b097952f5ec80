//! Adversarial cases: the softmax family at shifted and extreme logits (issue 16, items 4 and 5).
//!
//! A seeded loop generates logits — random shapes and axes, a random common offset up to 1e38
//! in magnitude, spreads from 1e-3 to 1e30, −∞ entries, rows of +∞, NaN or only −∞, and long
//! rows — and runs them through every op of the family: softmax and log_softmax (any axis), the
//! fused cross-entropy (mean and sum) and nll_loss after log_softmax, values and gradients, in
//! f32 and f64, through `backward` (the fused kernels) and `backward_graph` (the composed rules).
//!
//! The reference is computed here in f64 from the same inputs by the shift-invariant formula,
//! `d = x − max`, `p = eᵈ/Σeᵈ`, `log p = d − log Σeᵈ`. Each error is measured in units of the
//! dtype's epsilon times the answer's own condition: `x − max` is rounded once, so an entry's
//! exponential carries a relative error of about `|d|/2` ulps, and the row sum carries those of
//! its terms (`cond` below). An error of a few units is a few ulps of the shift-invariant answer;
//! the f32 sum of `1e4` shifted into the log-sum-exp was about 4000 units, the sequential f32
//! row sum of long rows hundreds. Non-finite answers must match exactly (NaN rows as PyTorch).

use std::panic::{catch_unwind, AssertUnwindSafe};
use vgrad::nn::loss::{cross_entropy, nll_loss, Reduction};
use vgrad::{Element, Tape, Tensor};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn sign(&mut self) -> f64 {
        if self.next() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Logits within ±8 of a common offset of any magnitude up to 1e38.
    Shifted,
    /// Spreads from 1e-3 to 1e30 around an offset.
    Spread,
    /// Some entries −∞ (masked), the rest shifted.
    Masked,
    /// Some rows only −∞, or holding +∞ or NaN: NaN throughout, as in PyTorch.
    NonFinite,
    /// One or a few rows of up to 20 000 entries.
    Long,
}
const CLASSES: [Class; 5] = [
    Class::Shifted,
    Class::Spread,
    Class::Masked,
    Class::NonFinite,
    Class::Long,
];

struct Input {
    shape: Vec<usize>,
    axis: usize,
    /// Values representable in f32 (so the f32 and f64 runs see the same numbers).
    data: Vec<f64>,
}

fn generate(rng: &mut Rng, class: Class) -> Input {
    let shape: Vec<usize> = if class == Class::Long {
        vec![1 + rng.below(3), 1000 + rng.below(19_000)]
    } else {
        (0..1 + rng.below(3)).map(|_| 1 + rng.below(7)).collect()
    };
    let axis = if class == Class::Long {
        1
    } else {
        rng.below(shape.len())
    };
    let n: usize = shape.iter().product();
    // |offset| = 10^U(−1, 38.5), capped below f32::MAX, sometimes exactly 0.
    let offset = if rng.below(8) == 0 {
        0.0
    } else {
        rng.sign() * 10f64.powf(rng.unit() * 39.5 - 1.0).min(3.0e38)
    };
    let spread = match class {
        Class::Spread => 10f64.powf(rng.unit() * 33.0 - 3.0),
        _ => 8.0,
    };
    let mut data: Vec<f64> = (0..n)
        .map(|_| {
            let v = offset + spread * (2.0 * rng.unit() - 1.0);
            // Stay finite in f32: a spread beyond the offset's headroom is clipped.
            (v.clamp(-3.4e38, 3.4e38) as f32) as f64
        })
        .collect();
    match class {
        Class::Masked => {
            for v in data.iter_mut() {
                if rng.below(4) == 0 {
                    *v = f64::NEG_INFINITY;
                }
            }
        }
        Class::NonFinite => {
            for v in data.iter_mut() {
                match rng.below(10) {
                    0 => *v = f64::INFINITY,
                    1 => *v = f64::NAN,
                    2..=4 => *v = f64::NEG_INFINITY,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Input { shape, axis, data }
}

/// The f64 reference of one row: probabilities, log-probabilities, the shifts `d = x − max`,
/// and `cond`: the ulps of relative error the row sum may carry, Σ pⱼ(2 + |dⱼ|/2) over the
/// entries below the maximum (the maximum contributes e⁰ = 1 exactly).
struct RowRef {
    p: Vec<f64>,
    y: Vec<f64>,
    d: Vec<f64>,
    cond: f64,
}

fn row_ref(x: &[f64]) -> RowRef {
    let m = x
        .iter()
        .fold(f64::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    if !m.is_finite() || x.iter().any(|v| v.is_nan()) {
        let nan = vec![f64::NAN; x.len()];
        return RowRef {
            p: nan.clone(),
            y: nan.clone(),
            d: nan,
            cond: f64::NAN,
        };
    }
    let d: Vec<f64> = x.iter().map(|v| v - m).collect();
    let s = fsum(d.iter().map(|v| v.exp()));
    let lse = s.ln();
    let p: Vec<f64> = d.iter().map(|v| v.exp() / s).collect();
    let y: Vec<f64> = d.iter().map(|v| v - lse).collect();
    let cond = d
        .iter()
        .zip(&p)
        .filter(|(d, p)| **d != 0.0 && **p != 0.0)
        .map(|(d, p)| p * (2.0 + d.abs() / 2.0))
        .sum();
    RowRef { p, y, d, cond }
}

/// Σ x, compensated (Neumaier): the reference's sums must beat vgrad's f64 lanes on long rows.
/// Infinities and NaN give the plain sum's answer (the compensation would turn ∞ into NaN).
fn fsum(x: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c, mut plain) = (0.0f64, 0.0f64, 0.0f64);
    for v in x {
        plain += v;
        let t = s + v;
        c += if s.abs() >= v.abs() {
            (s - t) + v
        } else {
            (v - t) + s
        };
        s = t;
    }
    if plain.is_finite() {
        s + c
    } else {
        plain
    }
}

/// `a·b`, with 0·∞ = 0 (an entry of probability 0 contributes no error whatever its shift).
fn mulz(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        0.0
    } else {
        a * b
    }
}

/// Worst error of one op so far, in units of `eps × condition`, and where it occurred.
#[derive(Default)]
struct Worst {
    units: f64,
    rel: f64,
    at: String,
}

#[derive(Default)]
struct Tally {
    tried: usize,
    panics: usize,
    wrong: usize,
    worst: Worst,
}

const LIMIT: f64 = 8.0;

/// Checks one number. `bound` is in absolute terms for one unit (eps × condition); a tiny floor
/// covers subnormal results. Non-finite expectations (after rounding to `T`) must match exactly.
fn check<T: Element>(t: &mut Tally, got: f64, want: f64, unit: f64, what: impl Fn() -> String) {
    let want_t = T::of(want).widen();
    let units = if !want_t.is_finite() || !got.is_finite() {
        if got == want_t || (got.is_nan() && want_t.is_nan()) {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        let floor = 4.0 * T::min_positive_value().widen();
        (got - want).abs() / (T::epsilon().widen() * unit + floor)
    };
    if units > LIMIT || units.is_nan() {
        t.wrong += 1;
    }
    if units > t.worst.units || (units.is_nan() && !t.worst.units.is_nan()) {
        let rel = (got - want).abs() / want.abs().max(T::min_positive_value().widen());
        t.worst = Worst {
            units,
            rel,
            at: format!("{}: got {got:e}, want {want:e}", what()),
        };
    }
}

/// (outer, n, inner) around `axis`, and the flat index of element `k` of row `(o, i)`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// Seeds: signed weights of magnitude 0.3..1.3, exact in f32.
fn weights(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| ((0.3 + rng.unit()) as f32 as f64) * rng.sign())
        .collect()
}

/// Runs softmax or log_softmax of `inp` in `T` and checks the value and the gradient for seed
/// `w`, through `backward` and `backward_graph`.
fn check_softmax<T: Element>(
    inp: &Input,
    w: &[f64],
    log: bool,
    value: &mut Tally,
    grad: &mut Tally,
    graph: &mut Tally,
) {
    let (outer, n, inner) = split(&inp.shape, inp.axis);
    let x = Tensor::from_vec(inp.data.clone(), &inp.shape).unwrap();
    let ws = Tensor::from_vec(w.to_vec(), &inp.shape).unwrap();
    let run = |graph: bool| {
        let tape = Tape::<T>::new();
        let v = tape.leaf(x.cast());
        let y = if log {
            v.log_softmax(inp.axis)
        } else {
            v.softmax(inp.axis)
        };
        let g = if graph {
            let l = (y * tape.constant(ws.cast())).sum();
            l.backward_graph().wrt(v).unwrap().value()
        } else {
            y.backward_with(ws.cast()).wrt(v).unwrap().clone()
        };
        (y.value().cast::<f64>(), g.cast::<f64>())
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| (run(false), run(true))));
    let Ok(((yv, gv), (_, gg))) = outcome else {
        value.panics += 1;
        return;
    };
    let name = if log { "log_softmax" } else { "softmax" };
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let row: Vec<f64> = (0..n).map(|k| inp.data[at(k)]).collect();
            let r = row_ref(&row);
            let wr: Vec<f64> = (0..n).map(|k| w[at(k)]).collect();
            // Relative error (ulps) of each probability: its own shift, the sum's, two roundings.
            let pe: Vec<f64> = r.d.iter().map(|d| 4.0 + d.abs() / 2.0 + r.cond).collect();
            let dot = fsum(wr.iter().zip(&r.p).map(|(w, p)| w * p));
            let dot_err: f64 = wr
                .iter()
                .zip(&r.p)
                .zip(&pe)
                .map(|((w, p), e)| mulz(w.abs() * p, *e))
                .sum::<f64>()
                + dot.abs();
            let sw = fsum(wr.iter().copied());
            for k in 0..n {
                let (p, y) = (r.p[k], r.y[k]);
                let what = || {
                    format!(
                        "{name} {:?} axis {} row ({o},{i}) k {k}",
                        inp.shape, inp.axis
                    )
                };
                value.tried += 1;
                grad.tried += 1;
                graph.tried += 1;
                let (want, unit, gwant, gunit) = if log {
                    // y = d − log Σ: the shift's rounding plus the sum's, no cancellation.
                    let gw = wr[k] - p * sw;
                    let gu = wr[k].abs() + mulz(p, (pe[k] + y.abs()) * sw.abs());
                    (y, y.abs() + r.cond + 1.0, gw, gu)
                } else {
                    let gw = p * (wr[k] - dot);
                    let gu = mulz(p, pe[k] * (wr[k] - dot).abs() + dot_err + wr[k].abs());
                    (p, mulz(p, pe[k]), gw, gu)
                };
                check::<T>(value, yv.data()[at(k)], want, unit, what);
                check::<T>(grad, gv.data()[at(k)], gwant, gunit, what);
                check::<T>(graph, gg.data()[at(k)], gwant, gunit, what);
            }
        }
    }
}

/// The fused cross-entropy (`nll == false`) or nll_loss after log_softmax of `inp` seen as
/// `[N, C]` (C = last extent), value and gradient, mean and sum.
fn check_loss<T: Element>(
    inp: &Input,
    targets: &[usize],
    nll: bool,
    mean: bool,
    value: &mut Tally,
    grad: &mut Tally,
    graph: &mut Tally,
) {
    let c = *inp.shape.last().unwrap();
    let n = inp.data.len() / c;
    let x = Tensor::from_vec(inp.data.clone(), &[n, c]).unwrap();
    let red = if mean {
        Reduction::Mean
    } else {
        Reduction::Sum
    };
    let run = |graph: bool| {
        let tape = Tape::<T>::new();
        let v = tape.leaf(x.cast());
        let l = if nll {
            nll_loss(v.log_softmax(1), targets, red)
        } else {
            cross_entropy(v, targets, red)
        };
        let g = if graph {
            l.backward_graph().wrt(v).unwrap().value()
        } else {
            l.backward().wrt(v).unwrap().clone()
        };
        (l.value().item().widen(), g.cast::<f64>())
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| (run(false), run(true))));
    let Ok(((lv, gv), (_, gg))) = outcome else {
        value.panics += 1;
        return;
    };
    let name = match (nll, mean) {
        (false, true) => "cross_entropy mean",
        (false, false) => "cross_entropy sum",
        (true, true) => "nll_loss(log_softmax) mean",
        (true, false) => "nll_loss(log_softmax) sum",
    };
    let s = if mean { 1.0 / n as f64 } else { 1.0 };
    let (mut terms, mut unit) = (Vec::new(), 0.0);
    value.tried += 1;
    for (i, &t) in targets.iter().enumerate() {
        let r = row_ref(&inp.data[i * c..(i + 1) * c]);
        terms.push(-s * r.y[t]);
        unit += s * (r.y[t].abs() + r.cond + 1.0);
        for k in 0..c {
            grad.tried += 1;
            graph.tried += 1;
            let p = r.p[k];
            let onehot = if k == t { 1.0 } else { 0.0 };
            let gw = s * (p - onehot);
            let pe = 4.0 + r.d[k].abs() / 2.0 + r.cond + r.y[k].abs();
            let gu = s * (mulz(p, pe) + (p - onehot).abs());
            let what = || format!("{name} grad [{n}, {c}] row {i} k {k}");
            check::<T>(grad, gv.data()[i * c + k], gw, gu, what);
            check::<T>(graph, gg.data()[i * c + k], gw, gu, what);
        }
    }
    check::<T>(value, lv, fsum(terms), unit, || {
        format!("{name} [{n}, {c}]")
    });
}

/// Per-op tallies: value, gradient through `backward`, gradient through `backward_graph`.
#[derive(Default)]
struct OpTallies {
    value: Tally,
    grad: Tally,
    graph: Tally,
}

const OPS: [&str; 6] = [
    "softmax",
    "log_softmax",
    "cross_entropy mean",
    "cross_entropy sum",
    "nll_loss(log_softmax) mean",
    "nll_loss(log_softmax) sum",
];

fn run_all<T: Element>(cases_per_class: usize, seed: u64) -> Vec<(Class, Vec<OpTallies>, usize)> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for class in CLASSES {
        let mut tallies: Vec<OpTallies> = (0..OPS.len()).map(|_| OpTallies::default()).collect();
        let mut peak_max = 0;
        let cases = if class == Class::Long {
            cases_per_class / 20
        } else {
            cases_per_class
        };
        for _ in 0..cases {
            let inp = generate(&mut rng, class);
            let w = weights(&mut rng, inp.data.len());
            let c = *inp.shape.last().unwrap();
            let targets: Vec<usize> = (0..inp.data.len() / c).map(|_| rng.below(c)).collect();
            let ((), peak) = crate::meter::peak_during(|| {
                for (j, t) in tallies.iter_mut().enumerate() {
                    let OpTallies { value, grad, graph } = t;
                    match j {
                        0 | 1 => check_softmax::<T>(&inp, &w, j == 1, value, grad, graph),
                        _ => {
                            check_loss::<T>(&inp, &targets, j >= 4, j % 2 == 0, value, grad, graph)
                        }
                    }
                }
            });
            // Bounded: a handful of tensors of the input's size per run (inputs, outputs,
            // gradients, the graph's intermediates), f64 copies for the comparison.
            let bound = (1 << 20) + 200 * 8 * inp.data.len();
            assert!(
                peak <= bound,
                "{class:?} {:?}: peak {peak} bytes",
                inp.shape
            );
            peak_max = peak_max.max(peak);
        }
        out.push((class, tallies, peak_max));
    }
    out
}

fn report_and_assert<T: Element>(results: &[(Class, Vec<OpTallies>, usize)]) {
    let mut bad = Vec::new();
    for (class, tallies, peak) in results {
        eprintln!("[{}] {class:?}: peak {} KiB", T::DTYPE, peak / 1024);
        for (op, t) in OPS.iter().zip(tallies) {
            for (kind, t) in [
                ("value", &t.value),
                ("grad", &t.grad),
                ("graph grad", &t.graph),
            ] {
                eprintln!(
                    "  {op:28} {kind:10} tried {:7} panics {} wrong {} worst {:.2} units (rel {:.1e}) {}",
                    t.tried, t.panics, t.wrong, t.worst.units, t.worst.rel, t.worst.at
                );
                if t.panics > 0 || t.wrong > 0 {
                    bad.push(format!(
                        "[{}] {class:?} {op} {kind}: {} panics, {} wrong; worst {:.2} units at {}",
                        T::DTYPE,
                        t.panics,
                        t.wrong,
                        t.worst.units,
                        t.worst.at
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn softmax_family_is_shift_invariant_to_a_few_ulps_in_f32() {
    let results = run_all::<f32>(300, 0x5eed_0016_0004_0005);
    report_and_assert::<f32>(&results);
}

#[test]
fn softmax_family_is_shift_invariant_to_a_few_ulps_in_f64() {
    let results = run_all::<f64>(300, 0x5eed_0016_0004_0006);
    report_and_assert::<f64>(&results);
}
