//! CSV and JSON export of the monitor's records.
//!
//! JSON is written by hand rather than through `serde_json`: the records are flat numbers and
//! dotted names, a writer for them is forty lines, and every user of vgrad would otherwise compile
//! serde for a feature most runs never call. The tests parse the output with `serde_json` (a
//! dev-dependency) to keep the hand-written writer honest.
//!
//! Numbers are written in Rust's shortest round-trip form with an exponent (`1.2345e-32`), which
//! reads back to the same f64. JSON has no NaN or infinity, so non-finite values become `null`
//! there; in CSV they are `NaN`, `inf` and `-inf`, which spreadsheet programs and pandas read.

use super::{LayerRecord, StepRecord};
use crate::error::{Error, Result};
use crate::monitor::stats::activation_name;
use std::fmt::Write as _;
use std::path::Path;

/// The CSV header: one row per layer per step, in this column order.
const CSV_COLUMNS: &[&str] = &[
    "step",
    "loss",
    "layer",
    "kind",
    "depth",
    "weight_grad_norm",
    "weight_grad_mean_abs",
    "weight_grad_max_abs",
    "bias_grad_norm",
    "weight_norm",
    "grad_to_weight",
    "output_grad_norm",
    "output_mean",
    "output_std",
    "update_ratio",
    "activation",
    "activation_kind",
    "activation_mean",
    "activation_std",
    "activation_saturated",
    "activation_dead",
];

fn csv_num(out: &mut String, x: Option<f64>) {
    match x {
        None => {}
        Some(v) if v.is_nan() => out.push_str("NaN"),
        Some(v) if v.is_infinite() => out.push_str(if v > 0.0 { "inf" } else { "-inf" }),
        Some(v) => {
            let _ = write!(out, "{v:e}");
        }
    }
}

fn csv_text(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The records as CSV (RFC 4180, `\n` line ends): a header, then one row per layer per step with
/// the columns `step, loss, layer, kind, depth, weight_grad_norm, weight_grad_mean_abs,
/// weight_grad_max_abs, bias_grad_norm, weight_norm, grad_to_weight, output_grad_norm,
/// output_mean, output_std, update_ratio, activation, activation_kind, activation_mean,
/// activation_std, activation_saturated, activation_dead`. A value that was not measured is an
/// empty cell.
pub fn to_csv(steps: &[StepRecord]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for s in steps {
        for l in &s.layers {
            let _ = write!(out, "{},", s.step);
            csv_num(&mut out, s.loss);
            out.push(',');
            csv_text(&mut out, &l.name);
            let _ = write!(out, ",{},{},", l.kind.name(), l.depth);
            let a = l.activation.as_ref();
            let nums = [
                Some(l.weight_grad_norm),
                Some(l.weight_grad_mean_abs),
                Some(l.weight_grad_max_abs),
                l.bias_grad_norm,
                Some(l.weight_norm),
                Some(l.grad_to_weight),
                l.output_grad_norm,
                l.output_mean,
                l.output_std,
                l.update_ratio,
            ];
            for x in nums {
                csv_num(&mut out, x);
                out.push(',');
            }
            csv_text(&mut out, a.map_or("", |a| a.name.as_str()));
            out.push(',');
            out.push_str(a.map_or("", |a| activation_name(&a.kind)));
            for x in [
                a.map(|a| a.mean),
                a.map(|a| a.std),
                a.and_then(|a| a.saturated),
                a.and_then(|a| a.dead),
            ] {
                out.push(',');
                csv_num(&mut out, x);
            }
            out.push('\n');
        }
    }
    out
}

fn json_num(out: &mut String, x: Option<f64>) {
    match x {
        Some(v) if v.is_finite() => {
            let _ = write!(out, "{v:e}");
        }
        _ => out.push_str("null"),
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `"key":` then the value, with a comma before every field but the first.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        json_str(self.out, k);
        self.out.push(':');
        self.out
    }
    fn num(&mut self, k: &str, v: Option<f64>) {
        json_num(self.key(k), v);
    }
    fn str(&mut self, k: &str, v: &str) {
        json_str(self.key(k), v);
    }
    fn close(self) {
        self.out.push('}');
    }
}

fn json_layer(out: &mut String, l: &LayerRecord) {
    let mut o = Obj::open(out);
    o.str("name", &l.name);
    o.str("kind", l.kind.name());
    let _ = write!(o.key("depth"), "{}", l.depth);
    o.num("weight_grad_norm", Some(l.weight_grad_norm));
    o.num("weight_grad_mean_abs", Some(l.weight_grad_mean_abs));
    o.num("weight_grad_max_abs", Some(l.weight_grad_max_abs));
    o.num("bias_grad_norm", l.bias_grad_norm);
    o.num("weight_norm", Some(l.weight_norm));
    o.num("grad_to_weight", Some(l.grad_to_weight));
    o.num("output_grad_norm", l.output_grad_norm);
    o.num("output_mean", l.output_mean);
    o.num("output_std", l.output_std);
    o.num("update_ratio", l.update_ratio);
    match &l.activation {
        None => o.key("activation").push_str("null"),
        Some(a) => {
            let mut ao = Obj::open(o.key("activation"));
            ao.str("name", &a.name);
            ao.str("kind", activation_name(&a.kind));
            ao.num("mean", Some(a.mean));
            ao.num("std", Some(a.std));
            ao.num("saturated", a.saturated);
            ao.num("dead", a.dead);
            ao.close();
        }
    }
    o.close();
}

/// The records as one JSON document:
/// `{"steps": [{"step", "loss", "skip_connections", "layers": [{"name", "kind", "depth",
/// "weight_grad_norm", …, "activation": {"name", "kind", "mean", "std", "saturated", "dead"} |
/// null}]}]}`, with the same fields as [`LayerRecord`] and `null` for values not measured or not
/// finite.
pub fn to_json(steps: &[StepRecord]) -> String {
    let mut out = String::from("{\"steps\":[");
    for (i, s) in steps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut o = Obj::open(&mut out);
        let _ = write!(o.key("step"), "{}", s.step);
        o.num("loss", s.loss);
        let _ = write!(o.key("skip_connections"), "{}", s.skip_connections);
        let layers = o.key("layers");
        layers.push('[');
        for (j, l) in s.layers.iter().enumerate() {
            if j > 0 {
                layers.push(',');
            }
            json_layer(layers, l);
        }
        layers.push(']');
        o.close();
    }
    out.push_str("]}");
    out
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes [`to_csv`] to a file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
pub fn write_csv(steps: &[StepRecord], path: impl AsRef<Path>) -> Result<()> {
    write_file(path.as_ref(), &to_csv(steps))
}

/// Writes [`to_json`] to a file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
pub fn write_json(steps: &[StepRecord], path: impl AsRef<Path>) -> Result<()> {
    write_file(path.as_ref(), &to_json(steps))
}
