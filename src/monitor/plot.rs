//! SVG plots of the records, drawn with `plotters`.
//!
//! Two pictures answer "where do the gradients go":
//!
//! * the **gradient-flow plot** ([`gradient_flow_svg`]): one line per run, a per-layer figure
//!   (‖∂L/∂W‖ by default) against depth on a log scale, so a vanishing network is a line falling
//!   toward the input and a healthy one is flat;
//! * the **heatmap** ([`heatmap_svg`]): layers down, steps across, colour = log10 of the figure,
//!   with a colour bar, to see how the picture changes while training.
//!
//! Text is written as SVG `<text>` elements and rendered by the viewer, so no font is needed to
//! draw; `plotters` only estimates text widths for the layout.

use super::{LayerKind, LayerRecord, StepRecord};
use crate::error::{Error, Result};
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

/// Which per-layer figure a plot shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PlotMetric {
    /// ‖∂L/∂W‖, the weight gradient's norm (the default).
    #[default]
    WeightGradNorm,
    /// ‖∂L/∂h‖, the backpropagated signal at the layer's output.
    OutputGradNorm,
    /// ‖∂L/∂W‖ / ‖W‖.
    GradToWeight,
    /// ‖ΔW‖ / ‖W‖ over the optimiser step.
    UpdateRatio,
    /// Standard deviation of the activation after the layer (or of its output without one).
    ActivationStd,
}

impl PlotMetric {
    /// The figure for one layer, when measured.
    pub fn value(&self, l: &LayerRecord) -> Option<f64> {
        match self {
            PlotMetric::WeightGradNorm => Some(l.weight_grad_norm),
            PlotMetric::OutputGradNorm => l.output_grad_norm,
            PlotMetric::GradToWeight => Some(l.grad_to_weight),
            PlotMetric::UpdateRatio => l.update_ratio,
            PlotMetric::ActivationStd => l.signal_std(),
        }
    }

    /// How the figure is written on an axis.
    pub fn label(&self) -> &'static str {
        match self {
            PlotMetric::WeightGradNorm => "‖∂L/∂W‖",
            PlotMetric::OutputGradNorm => "‖∂L/∂h‖",
            PlotMetric::GradToWeight => "‖∂L/∂W‖ / ‖W‖",
            PlotMetric::UpdateRatio => "‖ΔW‖ / ‖W‖",
            PlotMetric::ActivationStd => "activation std",
        }
    }
}

/// The layers a plot shows: the matrix (`Linear`) layers when there are two or more, so that
/// normalisation layers do not interleave with them; otherwise every layer.
fn plotted_layers(step: &StepRecord) -> Vec<&LayerRecord> {
    let lin: Vec<&LayerRecord> = step.layers_of(LayerKind::Linear).collect();
    if lin.len() >= 2 {
        lin
    } else {
        step.layers.iter().collect()
    }
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("plot: {e}"))
}

/// Distinct, colour-blind-friendly line colours (Tableau 10).
const LINE_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The label of a tick at log10 value `e`: `1e-30` on whole decades, nothing between them.
fn decade_label(e: f64) -> String {
    if (e - e.round()).abs() < 1e-9 {
        format!("1e{}", e.round())
    } else {
        String::new()
    }
}

/// The gradient-flow plot: for each run `(name, step)`, a line of `metric` per layer against
/// depth (0 = the layer nearest the input), on a log-scale y axis, with a legend beside the
/// chart. Values that are zero, negative or not finite cannot sit on a log axis and leave a gap.
///
/// Returns the SVG document; write it with `std::fs::write`.
///
/// # Errors
/// [`Error::Config`] if no run has a positive finite value to plot.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::{gradient_flow_svg, GradMonitor, MonitorConfig, PlotMetric};
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut runs = Vec::new();
/// for act in [Activation::Sigmoid, Activation::Relu] {
///     let mut net = Sequential::<f32>::new();
///     for _ in 0..6 {
///         net = net.push(Linear::new(8, 8, &mut rng)?).push(act);
///     }
///     let mut mon = GradMonitor::new(MonitorConfig::default());
///     let tape = Tape::new();
///     let mut ctx = Ctx::new(&tape);
///     let loss = net.forward(&mut ctx, tape.constant(Tensor::ones(&[4, 8]))).square().mean();
///     mon.backward(&ctx, &net, loss);
///     runs.push((format!("{act:?}"), mon.latest().unwrap().clone()));
/// }
/// let named: Vec<(&str, &_)> = runs.iter().map(|(n, s)| (n.as_str(), s)).collect();
/// let svg = gradient_flow_svg(&named, PlotMetric::WeightGradNorm, "Gradient flow")?;
/// assert!(svg.starts_with("<svg") && svg.contains("Sigmoid()"));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn gradient_flow_svg(
    runs: &[(&str, &StepRecord)],
    metric: PlotMetric,
    title: &str,
) -> Result<String> {
    let series: Vec<(&str, Vec<Option<f64>>)> = runs
        .iter()
        .map(|(name, step)| {
            let ys = plotted_layers(step)
                .iter()
                .map(|l| metric.value(l).filter(|v| v.is_finite() && *v > 0.0))
                .collect();
            (*name, ys)
        })
        .collect();
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().flatten().copied())
        .collect();
    if all.is_empty() {
        return Err(plot_err(format!(
            "no positive finite {} to plot",
            metric.label()
        )));
    }
    // The y axis is linear in log10 of the value, so that every decade gets a labelled tick
    // however many decades the runs span (a sigmoid network spans thirty).
    let lo = all
        .iter()
        .map(|v| v.log10())
        .fold(f64::INFINITY, f64::min)
        .floor();
    let hi = all
        .iter()
        .map(|v| v.log10())
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil()
        .max(lo + 1.0);
    let depth = series.iter().map(|s| s.1.len()).max().unwrap_or(1).max(2);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (main, side) = root.split_horizontally(760);
        let mut chart = ChartBuilder::on(&main)
            .caption(title, ("sans-serif", 24))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..(depth - 1) as f64, lo..hi)
            .map_err(plot_err)?;
        let y_desc = format!("{} (log scale)", metric.label());
        chart
            .configure_mesh()
            .x_desc("layer depth (0 = input side)")
            .y_desc(y_desc)
            .x_labels(depth.min(11))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_labels(((hi - lo) as usize + 1).min(13))
            .y_label_formatter(&|y| decade_label(*y))
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        for (k, (_, ys)) in series.iter().enumerate() {
            let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
            // Break the line at unmeasurable layers instead of drawing across them.
            let mut segment: Vec<(f64, f64)> = Vec::new();
            let mut segments = Vec::new();
            for (i, y) in ys.iter().enumerate() {
                match y {
                    Some(v) => segment.push((i as f64, v.log10())),
                    None => segments.push(std::mem::take(&mut segment)),
                }
            }
            segments.push(segment);
            for seg in segments.into_iter().filter(|s| !s.is_empty()) {
                chart
                    .draw_series(LineSeries::new(seg.clone(), colour.stroke_width(2)))
                    .map_err(plot_err)?;
                chart
                    .draw_series(seg.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    .map_err(plot_err)?;
            }
        }
        // The legend sits beside the chart so it never hides a line.
        side.draw(&Text::new("runs", (10, 60), ("sans-serif", 16).into_font()))
            .map_err(plot_err)?;
        for (k, (name, _)) in series.iter().enumerate() {
            let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
            let y = 90 + 26 * k as i32;
            side.draw(&PathElement::new(
                vec![(10, y), (40, y)],
                colour.stroke_width(3),
            ))
            .map_err(plot_err)?;
            side.draw(&Circle::new((25, y), 3, colour.filled()))
                .map_err(plot_err)?;
            side.draw(&Text::new(
                name.to_string(),
                (48, y - 7),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The heatmap: one row per layer (the input side at the bottom), one column per recorded step,
/// each cell coloured by log10 of `metric` (viridis: dark = small, yellow = large), with a colour
/// bar. Cells with no value, zero or a non-finite value are grey.
///
/// Returns the SVG document.
///
/// # Errors
/// [`Error::Config`] if there is no step or no positive finite value.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::{heatmap_svg, GradMonitor, MonitorConfig, PlotMetric};
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut net = Sequential::<f32>::new()
///     .push(Linear::new(4, 4, &mut rng)?)
///     .push(Activation::Tanh)
///     .push(Linear::new(4, 1, &mut rng)?);
/// let mut mon = GradMonitor::new(MonitorConfig::default());
/// for _ in 0..3 {
///     let tape = Tape::new();
///     let mut ctx = Ctx::new(&tape);
///     let loss = net.forward(&mut ctx, tape.constant(Tensor::ones(&[2, 4]))).square().mean();
///     mon.backward(&ctx, &net, loss);
/// }
/// let svg = heatmap_svg(mon.steps(), PlotMetric::WeightGradNorm, "‖∂L/∂W‖ per layer and step")?;
/// assert!(svg.contains("log10"));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn heatmap_svg(steps: &[StepRecord], metric: PlotMetric, title: &str) -> Result<String> {
    let rows: Vec<Vec<Option<f64>>> = steps
        .iter()
        .map(|s| {
            plotted_layers(s)
                .iter()
                .map(|l| {
                    metric
                        .value(l)
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .map(f64::log10)
                })
                .collect()
        })
        .collect();
    let all: Vec<f64> = rows.iter().flatten().flatten().copied().collect();
    if all.is_empty() {
        return Err(plot_err(format!(
            "no positive finite {} to plot",
            metric.label()
        )));
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).floor();
    let hi = all
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil()
        .max(lo + 1.0);
    let names: Vec<String> = steps
        .last()
        .map(|s| plotted_layers(s).iter().map(|l| l.name.clone()).collect())
        .unwrap_or_default();
    let n_layers = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let n_steps = steps.len().max(1);
    let step_numbers: Vec<usize> = steps.iter().map(|s| s.step).collect();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (main, bar) = root.split_horizontally(820);
        let mut chart = ChartBuilder::on(&main)
            .caption(title, ("sans-serif", 24))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..n_steps as f64, 0f64..n_layers as f64)
            .map_err(plot_err)?;
        let x_fmt = |x: &f64| {
            let i = x.floor() as usize;
            match step_numbers.get(i) {
                Some(s) if (x - x.floor() - 0.5).abs() < 1e-9 => s.to_string(),
                _ => String::new(),
            }
        };
        let y_fmt = |y: &f64| {
            let i = y.floor() as usize;
            match names.get(i) {
                Some(n) if (y - y.floor() - 0.5).abs() < 1e-9 => n.clone(),
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("step")
            .y_desc("layer (input side at the bottom)")
            .x_labels(0)
            .y_labels(0)
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(plot_err)?;
        // Tick labels at cell centres, thinned to about a dozen per axis.
        let every = |n: usize| n.div_ceil(12).max(1);
        let label_font = ("sans-serif", 12).into_font();
        for i in (0..n_steps).step_by(every(n_steps)) {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            main.draw(&Text::new(
                x_fmt(&(i as f64 + 0.5)),
                (px - 4, py + 6),
                label_font.clone(),
            ))
            .map_err(plot_err)?;
        }
        for j in (0..n_layers).step_by(every(n_layers)) {
            let (px, py) = chart.backend_coord(&(0.0, j as f64 + 0.5));
            let text = y_fmt(&(j as f64 + 0.5));
            let w = 7 * text.chars().count() as i32;
            main.draw(&Text::new(text, (px - 8 - w, py - 6), label_font.clone()))
                .map_err(plot_err)?;
        }
        let grey = RGBColor(190, 190, 190);
        chart
            .draw_series(rows.iter().enumerate().flat_map(|(i, row)| {
                (0..n_layers).map(move |j| {
                    let colour = match row.get(j).copied().flatten() {
                        Some(v) => ViridisRGB::get_color_normalized(v, lo, hi),
                        None => grey,
                    };
                    Rectangle::new(
                        [(i as f64, j as f64), (i as f64 + 1.0, j as f64 + 1.0)],
                        colour.filled(),
                    )
                })
            }))
            .map_err(plot_err)?;

        // The colour bar: the same map from lo to hi, labelled in decades.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(62)
            .margin_right(10)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..1.0, lo..hi)
            .map_err(plot_err)?;
        let decades = (hi - lo).round().max(1.0) as usize;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(decades.min(10) + 1)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_err)?;
        let bands = 200;
        cb.draw_series((0..bands).map(|k| {
            let a = lo + (hi - lo) * k as f64 / bands as f64;
            let b = lo + (hi - lo) * (k + 1) as f64 / bands as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                ViridisRGB::get_color_normalized((a + b) / 2.0, lo, hi).filled(),
            )
        }))
        .map_err(plot_err)?;
        bar.draw(&Text::new(
            format!("log10 {}", metric.label()),
            (4, 30),
            ("sans-serif", 14).into_font(),
        ))
        .map_err(plot_err)?;
        bar.draw(&Rectangle::new([(8, 600), (22, 612)], grey.filled()))
            .map_err(plot_err)?;
        bar.draw(&Text::new(
            "0, NaN or none",
            (26, 600),
            ("sans-serif", 12).into_font(),
        ))
        .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}
