//! One self-contained HTML report of a monitor's records: the diagnosis in words, the flow
//! plot, the mean-and-max view, the heatmap and a table of every layer, with per-layer values
//! on hover. Everything is inline (SVG, CSS, a few lines of script), so the file opens offline in
//! any browser and can be mailed or attached to a bug report as it is.

use super::plot::{flow_svg, heatmap_svg_with, mean_max_svg, FlowLayout, PlotOptions};
use super::{Diagnosis, StepRecord};
use crate::error::{Error, Result};
use crate::monitor::stats::activation_name;
use std::fmt::Write as _;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;\
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #ddd}\
.meta{color:#555}.verdict{font-size:1.15em;font-weight:600}\
.figure svg{max-width:100%;height:auto;display:block}.note{color:#666;font-size:.92em}\
table{border-collapse:collapse;font-size:.9em;font-variant-numeric:tabular-nums}\
th,td{border-bottom:1px solid #e4e4e4;padding:.25em .6em;text-align:right;white-space:nowrap}\
th{background:#f4f4f4}td.name,th.name{text-align:left}\
tbody tr:hover{background:#fff6d5}.wide{overflow-x:auto}.vgrad-hover rect:hover{fill-opacity:.12}";

/// Records `window.onerror` before anything else runs, and after loading writes into the page
/// how many layer rows it has: a headless browser's dump of the DOM then tells a test whether the
/// page loaded, ran and shows every layer.
const HEAD_SCRIPT: &str = "window.vgradErrors=[];window.addEventListener('error',function(e){\
window.vgradErrors.push(String(e.message));});";
const TAIL_SCRIPT: &str = "(function(){var rows=document.querySelectorAll('#layers tbody tr');\
var s=document.getElementById('vgrad-status');s.setAttribute('data-layers',String(rows.length));\
s.setAttribute('data-errors',String(window.vgradErrors.length));\
s.textContent='loaded: '+rows.length+' layers, '+window.vgradErrors.length+' script errors';})();";

fn esc(s: &str) -> String {
    super::plot::xml_escape(s)
}

fn num(v: Option<f64>) -> String {
    match v {
        None => String::new(),
        Some(v) if v.is_finite() => format!("{v:.3e}"),
        Some(v) => v.to_string(),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{:.1}%", 100.0 * v))
}

/// A figure, or a note saying why there is none (a run whose gradients are all zero has no
/// log-scale picture, but its report is still worth reading).
fn figure(out: &mut String, heading: &str, caption: &str, svg: Result<String>) {
    let _ = write!(out, "<h2>{}</h2>\n<div class=\"figure\">", esc(heading));
    match svg {
        Ok(svg) => out.push_str(&svg),
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"note\">Nothing to draw: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    let _ = writeln!(out, "</div>\n<p class=\"note\">{}</p>", esc(caption));
}

/// The report of `steps` as one HTML document: a heading with `title`, the diagnosis in words,
/// the gradient-flow plot at the first and the last recorded step, the mean-and-max view and
/// the table of every layer at the last step, and the ‖∂L/∂W‖ heatmap over every step. Hovering
/// over a layer in any plot shows its name and values. The document needs no network, fonts or
/// files beside it.
///
/// # Errors
/// [`Error::Config`] if `steps` is empty.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::{diagnose, html_report, DiagnosisConfig, GradMonitor, MonitorConfig};
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut net = Sequential::<f32>::new()
///     .push(Linear::new(4, 8, &mut rng)?)
///     .push(Activation::Tanh)
///     .push(Linear::new(8, 1, &mut rng)?);
/// let mut mon = GradMonitor::new(MonitorConfig::default());
/// let tape = Tape::new();
/// let mut ctx = Ctx::new(&tape);
/// let loss = net.forward(&mut ctx, tape.constant(Tensor::ones(&[2, 4]))).square().mean();
/// mon.backward(&ctx, &net, loss);
/// let d = diagnose(mon.steps(), &DiagnosisConfig::default());
/// let html = html_report(mon.steps(), &d, "Two layers")?;
/// assert!(html.starts_with("<!DOCTYPE html>") && !html.contains("src=\""));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn html_report(steps: &[StepRecord], diagnosis: &Diagnosis, title: &str) -> Result<String> {
    let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
        return Err(Error::Config(
            "html report: no steps recorded; call GradMonitor::backward first".into(),
        ));
    };
    let mut out = String::with_capacity(1 << 16);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<script>{HEAD_SCRIPT}</script>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{t}</h1>\n",
        t = esc(title)
    );
    let loss = |s: &StepRecord| s.loss.map_or("not recorded".into(), |l| format!("{l:.4e}"));
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} recorded steps (step {} to {}), {} layers. Loss {} at step {}, {} at \
         step {}. Written by vgrad's gradient monitor. <span id=\"vgrad-status\"></span></p>",
        steps.len(),
        first.step,
        last.step,
        last.layers.len(),
        loss(first),
        first.step,
        loss(last),
        last.step
    );

    out.push_str("<h2>Diagnosis</h2>\n");
    let _ = writeln!(
        out,
        "<p class=\"verdict\">{}: {}</p>",
        esc(&diagnosis.verdict.to_string()),
        esc(&diagnosis.summary)
    );
    if !diagnosis.affected.is_empty() {
        let _ = writeln!(
            out,
            "<p>Layers affected ({}): {}.</p>",
            diagnosis.affected.len(),
            esc(&diagnosis.affected.join(", "))
        );
    }
    for (heading, items) in [
        (
            "Likely causes",
            diagnosis
                .causes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
        ),
        (
            "Try",
            diagnosis.fixes.iter().map(|f| f.to_string()).collect(),
        ),
    ] {
        if !items.is_empty() {
            let _ = write!(out, "<p>{heading}:</p>\n<ol>\n");
            for i in items {
                let _ = writeln!(out, "<li>{}</li>", esc(&i));
            }
            out.push_str("</ol>\n");
        }
    }

    prediction_section(&mut out, steps, diagnosis);

    let first_name = format!("step {}", first.step);
    let last_name = format!("step {}", last.step);
    let mut runs = vec![(first_name.as_str(), first)];
    if steps.len() > 1 {
        runs.push((last_name.as_str(), last));
    }
    let overlay = PlotOptions {
        layout: FlowLayout::Overlay,
        size: Some((1000, 600)),
        ..PlotOptions::default()
    };
    figure(
        &mut out,
        "Gradient flow",
        "‖∂L/∂W‖ per layer against depth, log scale, at the first and the last recorded step. \
         A line falling toward the input (left) is a vanishing gradient; one rising is exploding. \
         Hover over a layer for its values.",
        flow_svg(&runs, &overlay),
    );
    figure(
        &mut out,
        "Mean and max |∂L/∂W|",
        &format!(
            "Each layer's mean and largest weight-gradient entry at step {}, log scale.",
            last.step
        ),
        mean_max_svg(last, &PlotOptions::default()),
    );
    figure(
        &mut out,
        "‖∂L/∂W‖ per layer and step",
        "Each cell one layer at one recorded step; the colour is ‖∂L/∂W‖ on a log scale. \
         Hover over a cell for its value.",
        heatmap_svg_with(steps, &PlotOptions::default()),
    );

    let _ = writeln!(
        out,
        "<h2>Layers at step {}</h2>\n<div class=\"wide\"><table id=\"layers\">\n<thead><tr><th>depth</th>\
         <th class=\"name\">layer</th><th class=\"name\">kind</th><th class=\"name\">shape</th>\
         <th>‖∂L/∂W‖</th><th>mean |∂L/∂W|</th><th>max |∂L/∂W|</th><th>‖∂L/∂h‖</th>\
         <th>‖∂L/∂W‖/‖W‖</th><th>‖ΔW‖/‖W‖</th><th class=\"name\">activation</th>\
         <th>signal std</th><th>saturated</th><th>dead</th></tr></thead>\n<tbody>",
        last.step
    );
    for l in &last.layers {
        let a = l.activation.as_ref();
        let shape: Vec<String> = l.weight_shape.iter().map(usize::to_string).collect();
        let _ = writeln!(
            out,
            "<tr title=\"{name}: ‖∂L/∂W‖ = {g}\"><td>{}</td><td class=\"name\">{name}</td>\
             <td class=\"name\">{}</td><td class=\"name\">[{}]</td><td>{g}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"name\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            l.depth,
            l.kind.name(),
            shape.join(", "),
            num(Some(l.weight_grad_mean_abs)),
            num(Some(l.weight_grad_max_abs)),
            num(l.output_grad_norm),
            num(Some(l.grad_to_weight)),
            num(l.update_ratio),
            a.map_or(String::new(), |a| format!(
                "{} ({})",
                activation_name(&a.kind),
                esc(&a.name)
            )),
            num(l.signal_std()),
            pct(a.and_then(|a| a.saturated)),
            pct(a.and_then(|a| a.dead)),
            name = esc(&l.name),
            g = num(Some(l.weight_grad_norm)),
        );
    }
    let _ = write!(
        out,
        "</tbody>\n</table></div>\n<p class=\"note\">Empty cells: not measured at this step. The CSV and \
         JSON exports hold every step.</p>\n<script>{TAIL_SCRIPT}</script>\n</body>\n</html>\n"
    );
    Ok(out)
}

/// The "Predicted at initialisation" section: the finding, its check, and the predicted
/// per-layer figures next to the measured ones at the step the check read (both relative to the
/// last layer, in decades).
fn prediction_section(out: &mut String, steps: &[StepRecord], diagnosis: &Diagnosis) {
    let Some(p) = &diagnosis.prediction else {
        return;
    };
    out.push_str("<h2>Predicted at initialisation</h2>\n");
    let _ = writeln!(out, "<p class=\"verdict\">{}</p>", esc(&p.to_string()));
    if let Some(c) = &diagnosis.check {
        let _ = writeln!(
            out,
            "<p>Checked against the measured flow: {}.</p>",
            esc(&c.to_string())
        );
    }
    let measured = diagnosis
        .check
        .as_ref()
        .and_then(|c| steps.iter().find(|s| s.step == c.step));
    let last = p.layers.last().and_then(|l| measured?.layer(&l.name));
    let rel = |x: Option<f64>, of: Option<f64>| match (x, of) {
        (Some(x), Some(y)) if x > 0.0 && y > 0.0 => format!("{:+.2}", (x / y).log10()),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "<div class=\"wide\"><table id=\"prediction\">\n<thead><tr><th class=\"name\">layer</th>\
         <th>σ_w</th><th>σ_b</th><th class=\"name\">activation</th><th>q</th><th>χ₁</th>\
         <th>√χ₁</th><th>log₁₀‖∂L/∂h‖ predicted</th><th>measured</th>\
         <th>log₁₀‖∂L/∂W‖ predicted</th><th>measured</th></tr></thead>\n<tbody>"
    );
    for l in &p.layers {
        let m = measured.and_then(|s| s.layer(&l.name));
        let _ = writeln!(
            out,
            "<tr><td class=\"name\">{}</td><td>{:.3}</td><td>{:.3}</td><td class=\"name\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{:+.2}</td><td>{}</td><td>{:+.2}</td><td>{}</td></tr>",
            esc(&l.name),
            l.sigma_w,
            l.sigma_b,
            activation_name(&l.activation),
            num(Some(l.q)),
            num(l.chi1),
            num(l.chi1.map(f64::sqrt)),
            l.log10_output_grad,
            rel(
                m.and_then(|m| m.output_grad_norm),
                last.and_then(|m| m.output_grad_norm)
            ),
            l.log10_weight_grad,
            rel(
                m.map(|m| m.weight_grad_norm),
                last.map(|m| m.weight_grad_norm)
            ),
        );
    }
    out.push_str("</tbody>\n</table></div>\n");
    if !p.not_predicted.is_empty() {
        out.push_str("<p>Not predicted:</p>\n<ul>\n");
        for (name, reason) in &p.not_predicted {
            let _ = writeln!(out, "<li>{}: {}</li>", esc(name), esc(reason));
        }
        out.push_str("</ul>\n");
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">Mean-field theory applied to each layer's measured σ_w² = fan_in·mean(W²) \
         and σ_b² = mean(b²): χ₁ multiplies the squared gradient norm per layer, √χ₁ the norm. \
         Gradient norms are relative to the last layer, in decades (log₁₀).</p>"
    );
}

/// Writes [`html_report`] to a file, atomically (see [`write_csv`](super::write_csv)).
///
/// # Errors
/// [`Error::Config`] if `steps` is empty; [`Error::Io`] if the file cannot be written.
pub fn write_html(
    steps: &[StepRecord],
    diagnosis: &Diagnosis,
    title: &str,
    path: impl AsRef<std::path::Path>,
) -> Result<()> {
    super::export::write_file(path.as_ref(), &html_report(steps, diagnosis, title)?)
}
