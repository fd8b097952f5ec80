//! CSV and JSON export of the monitor's records.
//!
//! JSON goes through `serde_json` (feature `json`), the same crate that reads checkpoint headers:
//! it escapes names and writes numbers in shortest round-trip form, and a hand-written writer
//! would only repeat it. Numbers in CSV are Rust's shortest round-trip form with an exponent (`1.2345e-32`), which
//! reads back to the same f64. JSON has no NaN or infinity, so non-finite values become `null`
//! there; in CSV they are `NaN`, `inf` and `-inf`, which spreadsheet programs and pandas read.

#[cfg(feature = "json")]
use super::LayerRecord;
use super::StepRecord;
use crate::error::{Error, Result};
use crate::monitor::stats::activation_name;
#[cfg(feature = "json")]
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A finite number, or `null`: JSON has no NaN or infinity.
#[cfg(feature = "json")]
fn num(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite()).map_or(Value::Null, Value::from)
}

#[cfg(feature = "json")]
fn json_layer(l: &LayerRecord) -> Value {
    let activation = l.activation.as_ref().map_or(Value::Null, |a| {
        json!({
            "name": a.name,
            "kind": activation_name(&a.kind),
            "mean": num(Some(a.mean)),
            "std": num(Some(a.std)),
            "saturated": num(a.saturated),
            "dead": num(a.dead),
        })
    });
    json!({
        "name": l.name,
        "kind": l.kind.name(),
        "depth": l.depth,
        "weight_shape": l.weight_shape,
        "weight_grad_norm": num(Some(l.weight_grad_norm)),
        "weight_grad_mean_abs": num(Some(l.weight_grad_mean_abs)),
        "weight_grad_max_abs": num(Some(l.weight_grad_max_abs)),
        "bias_grad_norm": num(l.bias_grad_norm),
        "weight_norm": num(Some(l.weight_norm)),
        "grad_to_weight": num(Some(l.grad_to_weight)),
        "output_grad_norm": num(l.output_grad_norm),
        "output_mean": num(l.output_mean),
        "output_std": num(l.output_std),
        "update_ratio": num(l.update_ratio),
        "activation": activation,
    })
}

/// The records as one JSON document:
/// `{"steps": [{"step", "loss", "skip_connections", "layers": [{"name", "kind", "depth",
/// "weight_shape", "weight_grad_norm", …, "activation": {"name", "kind", "mean", "std",
/// "saturated", "dead"} | null}]}]}`, with the same fields as [`LayerRecord`] and `null` for
/// values not measured or not finite.
#[cfg(feature = "json")]
pub fn to_json(steps: &[StepRecord]) -> String {
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({
                "step": s.step,
                "loss": num(s.loss),
                "skip_connections": s.skip_connections,
                "layers": s.layers.iter().map(json_layer).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "steps": steps }).to_string()
}

/// Writes an SVG made by [`gradient_flow_svg`](crate::monitor::gradient_flow_svg) or
/// [`heatmap_svg`](crate::monitor::heatmap_svg) (or any text) to a file, atomically (as
/// [`write_csv`]).
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
///
/// # Example
/// ```
/// let path = std::env::temp_dir().join(format!("vgrad-doc-{}.svg", std::process::id()));
/// vgrad::monitor::write_svg("<svg xmlns='http://www.w3.org/2000/svg'/>", &path)?;
/// assert!(std::fs::read_to_string(&path).unwrap().starts_with("<svg"));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn write_svg(svg: &str, path: impl AsRef<Path>) -> Result<()> {
    write_file(path.as_ref(), svg)
}

/// Writes `text` to `path` atomically: into a new temporary file beside it, flushed to disk, then
/// renamed over `path`, so a reader (a browser reloading a report, a plot viewer) sees the old
/// file or the new one, never half of one, and a crash leaves no truncated file.
pub(super) fn write_file(path: &Path, text: &str) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(io_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path does not name a file",
        )));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Same directory, so the rename stays on one filesystem; pid and counter make the name
    // unique among concurrent writers, and `create_new` refuses one left by a killed process.
    let tmp = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.{}-{n}.tmp",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(mut f) => {
                let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(io_err(e));
                }
                break tmp;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(e)),
        }
    };
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(e)
    })
}

/// Writes [`to_csv`] to a file, atomically: through a temporary file beside it renamed over
/// `path`, so a reader never sees half a file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
pub fn write_csv(steps: &[StepRecord], path: impl AsRef<Path>) -> Result<()> {
    write_file(path.as_ref(), &to_csv(steps))
}

/// Writes [`to_json`] to a file, atomically (as [`write_csv`]).
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
#[cfg(feature = "json")]
pub fn write_json(steps: &[StepRecord], path: impl AsRef<Path>) -> Result<()> {
    write_file(path.as_ref(), &to_json(steps))
}
