//! Heatmaps: layers up, steps across, colour = the figure on a log scale.

use super::{
    anchored, font, log_ticks, plot_err, plotted_layers, pow10_label, value_text, with_hovers,
    Hover, LayerAxis, PlotMetric, PlotOptions, DESC_PX, MISSING, SMALL_PX, TICK_PX, TITLE_PX,
};
use crate::error::Result;
use crate::monitor::StepRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

/// The smallest and largest log10 of `metric` over every layer of `steps`, widened to whole
/// decades: pass it as [`PlotOptions::log10_range`] to give several heatmaps (or flow plots) one
/// scale. `None` when no value is positive and finite.
///
/// # Example
/// ```
/// use vgrad::monitor::{log10_range, PlotMetric};
/// assert_eq!(log10_range(&[], PlotMetric::WeightGradNorm), None);
/// ```
pub fn log10_range<'a>(
    steps: impl IntoIterator<Item = &'a StepRecord>,
    metric: PlotMetric,
) -> Option<(f64, f64)> {
    let opts = PlotOptions {
        metric,
        ..PlotOptions::default()
    };
    let values = steps
        .into_iter()
        .flat_map(|s| {
            plotted_layers(s)
                .into_iter()
                .filter_map(|l| metric.plottable(l))
        })
        .map(f64::log10)
        .collect::<Vec<_>>();
    opts.range(values.into_iter()).ok()
}

/// The heatmap of one network: one row per plotted layer (the input side at the bottom, rows
/// numbered as the flow plot numbers layers, and named when at most
/// [`NAMED_LAYERS`](super::NAMED_LAYERS)), one column per recorded step, each cell coloured by
/// `opts.metric` on a log scale (viridis: dark = small, yellow = large) with a colour bar.
/// Cells with no value, zero or a non-finite value are grey. The colour scale covers the data
/// unless `opts.log10_range` fixes it. Hovering over a cell in a browser shows its layer, step
/// and value.
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) if there is no positive finite value, or
/// `opts.log10_range` is not finite with `lo < hi`.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::{heatmap_svg_with, GradMonitor, MonitorConfig, PlotOptions};
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
/// // A colour scale from 1e-6 to 10, shared with other heatmaps drawn with the same options.
/// let opts = PlotOptions { log10_range: Some((-6.0, 1.0)), ..PlotOptions::default() };
/// let svg = heatmap_svg_with(mon.steps(), &opts)?;
/// assert!(svg.contains("1e-6") && svg.contains("<title>"));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn heatmap_svg_with(steps: &[StepRecord], opts: &PlotOptions) -> Result<String> {
    heatmaps(&[("", steps)], opts, false)
}

/// Several networks' heatmaps side by side under one colour scale, so that their colours
/// compare: one panel per `(name, steps)` (laid out as [`flow_svg`](super::flow_svg)'s panels),
/// each as [`heatmap_svg_with`] draws it, with one colour bar. The scale covers every network's
/// values unless `opts.log10_range` fixes it.
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) if no network has a positive finite value, or
/// `opts.log10_range` is not finite with `lo < hi`.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::{heatmaps_svg, GradMonitor, MonitorConfig, PlotOptions};
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut records = Vec::new();
/// for act in [Activation::Sigmoid, Activation::Relu] {
///     let mut net = Sequential::<f32>::new()
///         .push(Linear::new(4, 4, &mut rng)?)
///         .push(act)
///         .push(Linear::new(4, 1, &mut rng)?);
///     let mut mon = GradMonitor::new(MonitorConfig::default());
///     for _ in 0..3 {
///         let tape = Tape::new();
///         let mut ctx = Ctx::new(&tape);
///         let loss = net.forward(&mut ctx, tape.constant(Tensor::ones(&[2, 4]))).square().mean();
///         mon.backward(&ctx, &net, loss);
///     }
///     records.push((format!("{act:?}"), mon.steps().to_vec()));
/// }
/// let runs: Vec<(&str, &[_])> = records.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
/// let svg = heatmaps_svg(&runs, &PlotOptions::default())?;
/// assert!(svg.contains("Sigmoid()") && svg.contains("ReLU()"));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn heatmaps_svg(runs: &[(&str, &[StepRecord])], opts: &PlotOptions) -> Result<String> {
    heatmaps(runs, opts, true)
}

fn heatmaps(runs: &[(&str, &[StepRecord])], opts: &PlotOptions, grid: bool) -> Result<String> {
    let metric = opts.metric;
    let range = opts.range(
        runs.iter()
            .flat_map(|(_, steps)| steps.iter())
            .flat_map(|s| {
                plotted_layers(s)
                    .into_iter()
                    .filter_map(|l| metric.plottable(l))
            })
            .map(f64::log10),
    )?;
    let n = runs.len().max(1);
    let cols = match n {
        1..=4 => n,
        5 | 6 | 9 => 3,
        7 | 8 => 4,
        _ => 5,
    };
    let rows = n.div_ceil(cols);
    let title = opts.title_or(|| format!("{} per layer and step", metric.label()));
    let axis_of = |steps: &[StepRecord]| steps.last().map(LayerAxis::of);
    let room = runs
        .iter()
        .filter_map(|(_, s)| axis_of(s))
        .map(|a| y_room(&a, grid))
        .max()
        .unwrap_or(60);
    let (w, h) = opts.size.unwrap_or(if grid {
        (1300, 90 + 290 * rows as u32)
    } else {
        (940 + room, 640)
    });
    let mut hovers = Vec::new();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (head, body) = root.split_vertically(56);
        head.draw(&Text::new(
            title,
            (w as i32 / 2, 14),
            anchored(TITLE_PX, HPos::Center, VPos::Top),
        ))
        .map_err(plot_err)?;
        let (body, bar) = body.split_horizontally(w.saturating_sub(150));
        let (body, foot) = if grid {
            let (b, f) = body.split_vertically(h.saturating_sub(56 + 34));
            (b, Some(f))
        } else {
            (body, None)
        };
        let cells = body.split_evenly((rows, cols));
        for ((name, steps), cell) in runs.iter().zip(&cells) {
            if let Some(axis) = axis_of(steps) {
                let panel = Panel {
                    name,
                    steps,
                    axis: &axis,
                    metric,
                    range,
                    grid,
                    room,
                };
                panel.draw(&root, cell, &mut hovers)?;
            }
        }
        if let Some(foot) = foot {
            let (fw, _) = foot.dim_in_pixel();
            let axis = runs.iter().filter_map(|(_, s)| axis_of(s)).next();
            let desc = format!(
                "step across; {} up (0 = input side, at the bottom)",
                axis.as_ref().map_or("layer", LayerAxis::title_short)
            );
            foot.draw(&Text::new(
                desc,
                (fw as i32 / 2, 6),
                anchored(DESC_PX, HPos::Center, VPos::Top),
            ))
            .map_err(plot_err)?;
        }
        colour_bar(&bar, metric, range)?;
        root.present().map_err(plot_err)?;
    }
    Ok(with_hovers(svg, &hovers))
}

/// Room left of a heatmap for its layer labels (and, alone, its rotated axis title), so that the
/// title never overlaps the labels.
fn y_room(axis: &LayerAxis, grid: bool) -> u32 {
    if grid {
        return 44;
    }
    let (named, ticks) = axis.ticks(12);
    let chars = ticks
        .iter()
        .map(|&i| {
            if named {
                axis.describe(i).chars().count()
            } else {
                i.to_string().chars().count()
            }
        })
        .max()
        .unwrap_or(1);
    40 + 9 * chars.min(30) as u32
}

struct Panel<'a> {
    name: &'a str,
    steps: &'a [StepRecord],
    axis: &'a LayerAxis,
    metric: PlotMetric,
    range: (f64, f64),
    grid: bool,
    room: u32,
}

impl Panel<'_> {
    fn draw(&self, root: &Area, area: &Area, hovers: &mut Vec<Hover>) -> Result<()> {
        let (lo, hi) = self.range;
        let n_layers = self.axis.len().max(1);
        let n_steps = self.steps.len().max(1);
        let mut builder = ChartBuilder::on(area);
        builder
            .margin(10)
            .x_label_area_size(if self.grid { 26 } else { 56 })
            .y_label_area_size(self.room);
        if self.grid {
            builder.caption(self.name, ("sans-serif", DESC_PX));
        }
        let mut chart = builder
            .build_cartesian_2d(0f64..n_steps as f64, 0f64..n_layers as f64)
            .map_err(plot_err)?;
        let mut mesh = chart.configure_mesh();
        mesh.disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .axis_desc_style(("sans-serif", DESC_PX));
        if !self.grid {
            mesh.x_desc("step").y_desc(self.axis.title());
        }
        mesh.draw().map_err(plot_err)?;

        let cells = self.steps.iter().enumerate().flat_map(|(i, s)| {
            plotted_layers(s)
                .into_iter()
                .enumerate()
                .map(move |(j, l)| (i, s.step, j, self.metric.plottable(l)))
        });
        for (i, step, j, v) in cells {
            let colour = match v {
                Some(v) => ViridisRGB::get_color_normalized(v.log10().clamp(lo, hi), lo, hi),
                None => MISSING,
            };
            let a = chart.backend_coord(&(i as f64, j as f64));
            let b = chart.backend_coord(&(i as f64 + 1.0, j as f64 + 1.0));
            root.draw(&Rectangle::new([a, b], colour.filled()))
                .map_err(plot_err)?;
            let prefix = if self.grid {
                format!("{}\n", self.name)
            } else {
                String::new()
            };
            hovers.push(Hover {
                rect: (a.0, a.1, b.0, b.1),
                text: format!(
                    "{prefix}step {step}, {} {}\n{} = {}",
                    self.axis.title_short(),
                    self.axis.describe(j),
                    self.metric.label(),
                    value_text(v)
                ),
            });
        }

        let tick = if self.grid { SMALL_PX } else { TICK_PX };
        for i in super::thinned(n_steps, if self.grid { 5 } else { 10 }) {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let step = self.steps.get(i).map_or(i, |s| s.step);
            root.draw(&Text::new(
                step.to_string(),
                (x, y + 4),
                anchored(tick, HPos::Center, VPos::Top),
            ))
            .map_err(plot_err)?;
        }
        let (named, ticks) = self.axis.ticks(if self.grid { 6 } else { 12 });
        let ticks = if self.grid && named {
            super::thinned(n_layers, 6)
        } else {
            ticks
        };
        for j in ticks {
            let (x, y) = chart.backend_coord(&(0.0, j as f64 + 0.5));
            let text = if named && !self.grid {
                self.axis.describe(j)
            } else {
                j.to_string()
            };
            root.draw(&Text::new(
                text,
                (x - 6, y),
                anchored(tick, HPos::Right, VPos::Center),
            ))
            .map_err(plot_err)?;
        }
        Ok(())
    }
}

/// The colour bar: the map from `lo` to `hi` with its ticks labelled as the flow plot's, and the
/// grey of missing values.
fn colour_bar(area: &Area, metric: PlotMetric, (lo, hi): (f64, f64)) -> Result<()> {
    let (_, h) = area.dim_in_pixel();
    let mut cb = ChartBuilder::on(area)
        .margin_top(50)
        .margin_bottom(90)
        .margin_right(70)
        .margin_left(10)
        .build_cartesian_2d(0f64..1.0, lo..hi)
        .map_err(plot_err)?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .disable_y_axis()
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
    let ticks = log_ticks(lo, hi);
    let ticks: Vec<f64> = if ticks.len() > 12 {
        ticks.into_iter().step_by(2).collect()
    } else {
        ticks
    };
    // The chart's coordinates are the picture's; the area draws relative to its own corner.
    let (bx, by) = area.get_base_pixel();
    for t in ticks {
        let (x, y) = cb.backend_coord(&(1.0, t));
        let (x, y) = (x - bx, y - by);
        area.draw(&PathElement::new(vec![(x, y), (x + 5, y)], BLACK))
            .map_err(plot_err)?;
        area.draw(&Text::new(
            pow10_label(t),
            (x + 8, y),
            anchored(TICK_PX, HPos::Left, VPos::Center),
        ))
        .map_err(plot_err)?;
    }
    area.draw(&Text::new(metric.label(), (10, 16), font(DESC_PX)))
        .map_err(plot_err)?;
    area.draw(&Text::new(
        "(log scale)",
        (10, 34),
        font(SMALL_PX).pos(Pos::new(HPos::Left, VPos::Top)),
    ))
    .map_err(plot_err)?;
    let y = h as i32 - 70;
    area.draw(&Rectangle::new([(10, y), (26, y + 14)], MISSING.filled()))
        .map_err(plot_err)?;
    area.draw(&Text::new(
        "0, NaN or",
        (32, y + 7),
        anchored(SMALL_PX, HPos::Left, VPos::Center),
    ))
    .map_err(plot_err)?;
    area.draw(&Text::new(
        "not measured",
        (32, y + 25),
        anchored(SMALL_PX, HPos::Left, VPos::Center),
    ))
    .map_err(plot_err)?;
    Ok(())
}
