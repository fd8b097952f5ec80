//! SVG plots of the records, drawn with `plotters`.
//!
//! Three pictures answer "where do the gradients go":
//!
//! * the **gradient-flow plot** ([`flow_svg`]): a per-layer figure (‖∂L/∂W‖ by default)
//!   against depth on a log scale, so a vanishing network is a line falling toward the input and
//!   a healthy one is flat. Up to four networks share one chart; more get one small panel each
//!   on a shared axis, the other networks drawn faintly grey behind, so no run hides another;
//! * the **heatmap** ([`heatmap_svg_with`], and [`heatmaps_svg`] for several networks under one
//!   colour scale): layers up, steps across, colour = the figure on a log scale;
//! * the **mean-and-max view** ([`mean_max_svg`]): mean and max |∂L/∂W| per layer as bars on a
//!   log axis, the picture of PyTorch forum's `plot_grad_flow`, which a linear axis flattens.
//!
//! Every layer axis counts the same unit, the position among the plotted layers (the `Linear`
//! layers when there are two or more, as in [`StepRecord::layers_of`]), and names each layer
//! under its number when there are at most [`NAMED_LAYERS`]. Each layer's values are in an SVG
//! `<title>`, which a browser shows on hover.
//!
//! Text is written as SVG `<text>` elements and rendered by the viewer, so no font is needed to
//! draw; `plotters` only estimates text widths for the layout.

mod flow;
mod heatmap;

pub use flow::{flow_svg, mean_max_svg};
pub use heatmap::{heatmap_svg_with, heatmaps_svg, log10_range};

use super::{LayerKind, LayerRecord, StepRecord};
use crate::error::{Error, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

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

    /// The figure when it can sit on a log axis: positive and finite.
    fn plottable(&self, l: &LayerRecord) -> Option<f64> {
        self.value(l).filter(|v| v.is_finite() && *v > 0.0)
    }
}

/// How [`flow_svg`] lays out several networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FlowLayout {
    /// One chart for up to four networks, one panel each for more (the default): beyond four
    /// lines, runs that behave alike lie on top of each other and hide one another.
    #[default]
    Auto,
    /// Every network in one chart, told apart by colour and marker shape.
    Overlay,
    /// One small panel per network on shared axes (small multiples), the other networks in
    /// faint grey behind each.
    Panels,
}

/// How a plot is drawn. `PlotOptions::default()` gives the picture meant for a reader; set only
/// what differs.
///
/// # Example
/// ```
/// use vgrad::monitor::{FlowLayout, PlotMetric, PlotOptions};
///
/// let opts = PlotOptions {
///     metric: PlotMetric::OutputGradNorm,
///     title: Some("Backpropagated signal".into()),
///     layout: FlowLayout::Panels,
///     ..PlotOptions::default()
/// };
/// assert_eq!(opts.log10_range, None); // the range of the data
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlotOptions {
    /// The per-layer figure (default ‖∂L/∂W‖; [`mean_max_svg`] always shows mean and max
    /// |∂L/∂W|).
    pub metric: PlotMetric,
    /// The caption; `None` writes one from the metric.
    pub title: Option<String>,
    /// Overlay or small multiples, for [`flow_svg`].
    pub layout: FlowLayout,
    /// The value axis (or colour scale) as `(lo, hi)` in log10 units, e.g. `(-30.0, 1.0)` for
    /// 1e-30 to 10. `None` (the default) fits the data to whole decades. Give two heatmaps the
    /// same range, for example from [`log10_range`] over both, and their colours compare.
    pub log10_range: Option<(f64, f64)>,
    /// The picture's size in pixels; `None` chooses one that fits the layout.
    pub size: Option<(u32, u32)>,
}

/// A layer axis names its layers (under their numbers) when it has at most this many.
pub const NAMED_LAYERS: usize = 16;

/// The gradient-flow plot of `runs` with [`PlotOptions::default`] apart from `metric` and
/// `title`: the short form of [`flow_svg`].
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
    flow_svg(runs, &PlotOptions::titled(metric, title))
}

/// The heatmap of `steps` with [`PlotOptions::default`] apart from `metric` and `title`: the
/// short form of [`heatmap_svg_with`].
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
/// assert!(svg.contains("log scale"));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn heatmap_svg(steps: &[StepRecord], metric: PlotMetric, title: &str) -> Result<String> {
    heatmap_svg_with(steps, &PlotOptions::titled(metric, title))
}

impl PlotOptions {
    fn titled(metric: PlotMetric, title: &str) -> PlotOptions {
        PlotOptions {
            metric,
            title: Some(title.to_string()),
            ..PlotOptions::default()
        }
    }

    fn title_or(&self, default: impl FnOnce() -> String) -> String {
        self.title.clone().unwrap_or_else(default)
    }

    /// The value range: the one asked for, else the data's, widened to whole decades.
    fn range(&self, log10s: impl Iterator<Item = f64>) -> Result<(f64, f64)> {
        if let Some((lo, hi)) = self.log10_range {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(plot_err(format!(
                    "log10_range ({lo}, {hi}) must be finite with lo < hi"
                )));
            }
            return Ok((lo, hi));
        }
        let (lo, hi) = log10s.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if lo > hi {
            return Err(plot_err(format!(
                "no positive finite {} to plot",
                self.metric.label()
            )));
        }
        Ok((lo.floor(), hi.ceil().max(lo.floor() + 1.0)))
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

/// Font sizes, the same in every plot: tick text a reader can read at the picture's own size.
/// `plotters`' SVG backend writes 0.81 of the size asked for (24 becomes `font-size="19.35"`),
/// so tick text is 14.5 px on the page, titles 22.6 px.
const TITLE_PX: u32 = 28;
const DESC_PX: u32 = 20;
const TICK_PX: u32 = 18;
const SMALL_PX: u32 = 16;
const GRID: RGBColor = RGBColor(225, 225, 225);
const MISSING: RGBColor = RGBColor(190, 190, 190);

fn font(px: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", px).into_font())
}

fn anchored(px: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    font(px).pos(Pos::new(h, v))
}

/// `10^e` for a log10 value `e`, as a tick reads it: `1e-30`, `2e-3`, `0.5`, `1`, `20`.
fn pow10_label(e: f64) -> String {
    let v = 10f64.powf(e);
    let exp = e.floor();
    let mantissa = (v / 10f64.powf(exp)).round();
    if (-3.0..=3.0).contains(&exp) {
        let x = mantissa * 10f64.powf(exp);
        let digits = (-exp).max(0.0) as usize;
        format!("{x:.digits$}")
    } else {
        format!("{mantissa}e{exp}")
    }
}

/// A value in a hover text: three significant digits.
fn value_text(v: Option<f64>) -> String {
    v.map_or_else(|| "not measured".to_string(), |v| format!("{v:.3e}"))
}

/// The ticks of a log axis from `lo` to `hi` (log10 units): 1, 2 and 5 in each decade when the
/// axis spans at most two, every decade up to a dozen, else every n-th decade.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    let mut out = Vec::new();
    let (first, last) = (lo.floor() as i32, hi.ceil() as i32);
    if span <= 2.0 {
        for d in first..=last {
            for m in [1.0f64, 2.0, 5.0] {
                let e = f64::from(d) + m.log10();
                if e >= lo - 1e-9 && e <= hi + 1e-9 {
                    out.push(e);
                }
            }
        }
    } else {
        let every = ((span / 12.0).ceil() as i32).max(1);
        let every = [1, 2, 5, 10, 20, 50]
            .into_iter()
            .find(|&n| n >= every)
            .unwrap_or(every);
        for d in first..=last {
            if d.rem_euclid(every) == 0 && f64::from(d) >= lo - 1e-9 && f64::from(d) <= hi + 1e-9 {
                out.push(f64::from(d));
            }
        }
    }
    out
}

/// About `max` evenly spaced positions out of `n`, on multiples of 1, 2, 5, 10, ….
fn thinned(n: usize, max: usize) -> Vec<usize> {
    let every = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000]
        .into_iter()
        .find(|&k| n.div_ceil(k) <= max)
        .unwrap_or_else(|| n.div_ceil(max));
    (0..n).step_by(every).collect()
}

/// The layer axis of a plot: the names of the plotted layers, and what they are.
struct LayerAxis {
    names: Vec<String>,
    linear: bool,
}

impl LayerAxis {
    fn of(step: &StepRecord) -> LayerAxis {
        let layers = plotted_layers(step);
        LayerAxis {
            linear: layers.len() >= 2 && layers.iter().all(|l| l.kind == LayerKind::Linear),
            names: layers.iter().map(|l| l.name.clone()).collect(),
        }
    }

    /// The longest of several axes.
    fn longest_of<'a>(axes: impl Iterator<Item = &'a LayerAxis>) -> LayerAxis {
        axes.max_by_key(|a| a.names.len()).map_or(
            LayerAxis {
                names: Vec::new(),
                linear: false,
            },
            |a| LayerAxis {
                names: a.names.clone(),
                linear: a.linear,
            },
        )
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    /// `"Linear layer"` or `"layer"`, before a number in a hover text.
    fn title_short(&self) -> &'static str {
        if self.linear {
            "Linear layer"
        } else {
            "layer"
        }
    }

    /// The axis title: what the numbers count, and, when the ticks carry names, that they do.
    fn title(&self) -> &'static str {
        match (self.linear, self.len() <= NAMED_LAYERS) {
            (true, true) => "Linear layer (0 = input side) · its name",
            (true, false) => "Linear layer (0 = input side)",
            (false, true) => "layer (0 = input side) · its name",
            (false, false) => "layer (0 = input side)",
        }
    }

    /// Whether tick labels carry names, and the ticks.
    fn ticks(&self, max: usize) -> (bool, Vec<usize>) {
        if self.len() <= NAMED_LAYERS {
            (true, (0..self.len()).collect())
        } else {
            (false, thinned(self.len(), max))
        }
    }

    /// `"3 · blocks.2.fc"`: the layer's number and its name (in a `Sequential`, its index
    /// among all modules, `"3 · 6"`).
    fn describe(&self, i: usize) -> String {
        match self.names.get(i) {
            Some(n) => format!("{i} · {n}"),
            None => i.to_string(),
        }
    }

    /// The longest name, in characters: how much room rotated names need.
    fn name_chars(&self) -> usize {
        self.names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
    }
}

/// A region of the picture with a text a browser shows on hover.
struct Hover {
    rect: (i32, i32, i32, i32),
    text: String,
}

pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Adds the hover regions on top of the drawing: invisible rectangles whose `<title>` a browser
/// shows as a tooltip. `plotters` has no element with a title, so they are written here.
fn with_hovers(mut svg: String, hovers: &[Hover]) -> String {
    let Some(end) = svg.rfind("</svg>") else {
        return svg;
    };
    let mut layer = String::from("<g class=\"vgrad-hover\" fill=\"#000\" fill-opacity=\"0\">\n");
    for h in hovers {
        let (x0, y0, x1, y1) = h.rect;
        let _ = writeln!(
            layer,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            x0.min(x1),
            y0.min(y1),
            (x1 - x0).abs().max(1),
            (y1 - y0).abs().max(1),
            xml_escape(&h.text)
        );
    }
    layer.push_str("</g>\n");
    svg.insert_str(end, &layer);
    svg
}

/// Draws the layer numbers (and names, when few and `names`) under an x axis from `chart`'s layer
/// coordinate `x` at pixel row `y`. Long names are turned upright so that they never overlap.
fn draw_layer_ticks<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    axis: &LayerAxis,
    max: usize,
    names: bool,
    at: impl Fn(usize) -> (i32, i32),
) -> Result<()> {
    let (named, ticks) = axis.ticks(max);
    let named = named && names;
    let rotate = named && axis.name_chars() > 4;
    for i in ticks {
        let (x, y) = at(i);
        root.draw(&Text::new(
            i.to_string(),
            (x, y + 4),
            anchored(TICK_PX, HPos::Center, VPos::Top),
        ))
        .map_err(plot_err)?;
        let Some(name) = axis.names.get(i).filter(|_| named) else {
            continue;
        };
        let style = if rotate {
            font(SMALL_PX)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Right, VPos::Center))
        } else {
            anchored(SMALL_PX, HPos::Center, VPos::Top)
        };
        root.draw(&Text::new(
            name.clone(),
            (x, y + 24),
            style.color(&RGBColor(90, 90, 90)),
        ))
        .map_err(plot_err)?;
    }
    Ok(())
}

/// Room under an x layer axis for its numbers, names and title.
fn layer_tick_room(axis: &LayerAxis) -> u32 {
    let (named, _) = axis.ticks(12);
    let has_names = named
        && axis
            .names
            .iter()
            .enumerate()
            .any(|(i, n)| *n != i.to_string());
    match (has_names, axis.name_chars() > 4) {
        (false, _) => 52,
        (true, false) => 70,
        (true, true) => 56 + 8 * axis.name_chars().min(24) as u32,
    }
}

/// Draws a log axis's tick labels and grid lines: plotters' mesh chooses ticks for a linear
/// axis, and the log axis needs its own (every decade, or 1-2-5 within few).
fn draw_log_ticks<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    ticks: &[f64],
    labels: bool,
    at: impl Fn(f64) -> ((i32, i32), (i32, i32)),
) -> Result<()> {
    for &t in ticks {
        let ((x0, y), (x1, _)) = at(t);
        root.draw(&PathElement::new(vec![(x0, y), (x1, y)], GRID))
            .map_err(plot_err)?;
        if labels {
            root.draw(&Text::new(
                pow10_label(t),
                (x0 - 6, y),
                anchored(TICK_PX, HPos::Right, VPos::Center),
            ))
            .map_err(plot_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow10_labels_read_as_numbers() {
        assert_eq!(pow10_label(-30.0), "1e-30");
        assert_eq!(pow10_label(0.0), "1");
        assert_eq!(pow10_label(1.0), "10");
        assert_eq!(pow10_label(-1.0), "0.1");
        assert_eq!(pow10_label(2f64.log10() - 3.0), "0.002");
        assert_eq!(pow10_label(2f64.log10() - 4.0), "2e-4");
        assert_eq!(pow10_label(5f64.log10() - 1.0), "0.5");
    }

    #[test]
    fn log_ticks_label_more_than_the_ends_of_a_short_axis() {
        // One decade: 1, 2, 5 and 10, not just the two ends.
        assert_eq!(log_ticks(-2.0, -1.0).len(), 4);
        // Thirty decades: every fifth, about seven labels.
        let t = log_ticks(-31.0, 1.0);
        assert!((6..=12).contains(&t.len()), "{t:?}");
        assert!(t.iter().all(|e| (e - e.round()).abs() < 1e-9));
    }

    #[test]
    fn thinned_keeps_about_max() {
        assert_eq!(thinned(50, 11), (0..50).step_by(5).collect::<Vec<_>>());
        assert_eq!(thinned(3, 11), vec![0, 1, 2]);
    }

    #[test]
    fn hovers_go_inside_the_svg_escaped() {
        let svg = with_hovers(
            "<svg></svg>\n".into(),
            &[Hover {
                rect: (5, 5, 1, 1),
                text: "a<b".into(),
            }],
        );
        assert!(
            svg.contains("<rect x=\"1\" y=\"1\" width=\"4\" height=\"4\"><title>a&lt;b</title>")
        );
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
