//! The gradient-flow plot (overlay or small multiples) and the mean-and-max view.

use super::{
    anchored, draw_layer_ticks, draw_log_ticks, font, layer_tick_room, log_ticks, plot_err,
    plotted_layers, value_text, with_hovers, FlowLayout, Hover, LayerAxis, PlotOptions, DESC_PX,
    LINE_COLOURS, NAMED_LAYERS, SMALL_PX, TICK_PX, TITLE_PX,
};
use crate::error::Result;
use crate::monitor::StepRecord;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

/// One network's values, layer by layer (`None`: not on a log axis).
struct Run<'s> {
    name: &'s str,
    axis: LayerAxis,
    ys: Vec<Option<f64>>,
}

/// Where a chart sits and what its axes say.
struct Frame<'t> {
    caption: &'t str,
    caption_px: u32,
    x_room: u32,
    y_room: u32,
    x_desc: &'t str,
    y_desc: &'t str,
}

/// A chart over layers `0..n` (x) and log10 values `lo..hi` (y), with its axes' lines and
/// titles; tick labels are drawn by the caller.
fn layer_chart<'a, 'b>(
    area: &'a Area<'b>,
    frame: &Frame,
    n: usize,
    (lo, hi): (f64, f64),
) -> Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(frame.caption, ("sans-serif", frame.caption_px))
        .margin(12)
        .x_label_area_size(frame.x_room)
        .y_label_area_size(frame.y_room)
        .build_cartesian_2d(-0.5..n.max(1) as f64 - 0.5, lo..hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_desc(frame.x_desc)
        .y_desc(frame.y_desc)
        .axis_desc_style(("sans-serif", DESC_PX))
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// The grid lines and labels of the log axis, and the layer numbers (with names when few).
fn draw_axes(
    root: &Area,
    chart: &Chart,
    axis: &LayerAxis,
    ticks: &[f64],
    max_x: usize,
    names: bool,
) -> Result<()> {
    let (x0, x1) = (chart.x_range().start, chart.x_range().end);
    draw_log_ticks(root, ticks, true, |t| {
        (chart.backend_coord(&(x0, t)), chart.backend_coord(&(x1, t)))
    })?;
    let bottom = chart.y_range().start;
    draw_layer_ticks(root, axis, max_x, names, |i| {
        chart.backend_coord(&(i as f64, bottom))
    })
}

/// Draws a marker of shape `k % 4` (circle, triangle, square, diamond) at a pixel.
fn draw_marker(root: &Area, k: usize, (x, y): (i32, i32), colour: RGBColor, r: i32) -> Result<()> {
    let style = colour.filled();
    let res = match k % 4 {
        0 => root.draw(&Circle::new((x, y), r, style)),
        1 => root.draw(&Polygon::new(
            vec![(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)],
            style,
        )),
        2 => root.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], style)),
        _ => root.draw(&Polygon::new(
            vec![
                (x, y - r - 1),
                (x + r + 1, y),
                (x, y + r + 1),
                (x - r - 1, y),
            ],
            style,
        )),
    };
    res.map_err(plot_err)
}

/// A run's line, broken at layers that have no value, optionally with markers of shape `k`.
fn draw_run(
    root: &Area,
    chart: &Chart,
    ys: &[Option<f64>],
    style: ShapeStyle,
    marker: Option<(usize, RGBColor)>,
) -> Result<()> {
    let mut segment: Vec<(i32, i32)> = Vec::new();
    let mut segments = Vec::new();
    for (i, y) in ys.iter().enumerate() {
        match y {
            Some(v) => segment.push(chart.backend_coord(&(i as f64, v.log10()))),
            None => segments.push(std::mem::take(&mut segment)),
        }
    }
    segments.push(segment);
    for seg in segments.into_iter().filter(|s| !s.is_empty()) {
        root.draw(&PathElement::new(seg.clone(), style))
            .map_err(plot_err)?;
        if let Some((k, colour)) = marker {
            for p in seg {
                draw_marker(root, k, p, colour, 3)?;
            }
        }
    }
    Ok(())
}

/// The hover column of layer `i`: the plot's full height, one layer wide.
fn column(chart: &Chart, i: usize) -> (i32, i32, i32, i32) {
    let (lo, hi) = (chart.y_range().start, chart.y_range().end);
    let (x0, y0) = chart.backend_coord(&(i as f64 - 0.5, hi));
    let (x1, y1) = chart.backend_coord(&(i as f64 + 0.5, lo));
    (x0, y0, x1, y1)
}

/// The gradient-flow plot: for each run `(name, step)`, `opts.metric` per layer against depth
/// (0 = the layer nearest the input) on a log axis with a labelled tick at every decade (or at
/// 1, 2 and 5 within each when the runs span two decades or less). With up to four runs (or
/// [`FlowLayout::Overlay`]) they share one chart, told apart by colour and marker, the legend
/// beside the chart; with more (or [`FlowLayout::Panels`]) each run gets a panel on the same
/// axes, the others faint grey behind it. The layer axis is numbered in plotted layers and names
/// them when there are at most [`NAMED_LAYERS`](super::NAMED_LAYERS); hovering over a layer in
/// a browser shows its name and values. Values that are zero, negative or not finite cannot sit
/// on a log axis and leave a gap.
///
/// Returns the SVG document; write it with [`write_svg`](crate::monitor::write_svg).
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) if `runs` has no positive finite value to plot, or
/// `opts.log10_range` is not finite with `lo < hi`.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::{flow_svg, FlowLayout, GradMonitor, MonitorConfig, PlotOptions};
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut runs = Vec::new();
/// for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu] {
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
/// let opts = PlotOptions { layout: FlowLayout::Panels, ..PlotOptions::default() };
/// let svg = flow_svg(&named, &opts)?;
/// assert!(svg.starts_with("<svg") && svg.contains("Tanh()") && svg.contains("<title>"));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn flow_svg(runs: &[(&str, &StepRecord)], opts: &PlotOptions) -> Result<String> {
    let metric = opts.metric;
    let runs: Vec<Run> = runs
        .iter()
        .map(|(name, step)| Run {
            name,
            axis: LayerAxis::of(step),
            ys: plotted_layers(step)
                .iter()
                .map(|l| metric.plottable(l))
                .collect(),
        })
        .collect();
    let range = opts.range(
        runs.iter()
            .flat_map(|r| r.ys.iter().flatten().map(|v| v.log10())),
    )?;
    let axis = LayerAxis::longest_of(runs.iter().map(|r| &r.axis));
    let title = opts.title_or(|| format!("Gradient flow: {} per layer", metric.label()));
    let panels = match opts.layout {
        FlowLayout::Auto => runs.len() > 4,
        FlowLayout::Overlay => false,
        FlowLayout::Panels => true,
    };
    let (svg, hovers) = if panels {
        flow_panels(&runs, &axis, range, &title, opts)?
    } else {
        flow_overlay(&runs, &axis, range, &title, opts)?
    };
    Ok(with_hovers(svg, &hovers))
}

fn y_desc(opts: &PlotOptions) -> String {
    format!("{} (log scale)", opts.metric.label())
}

fn flow_overlay(
    runs: &[Run],
    axis: &LayerAxis,
    range: (f64, f64),
    title: &str,
    opts: &PlotOptions,
) -> Result<(String, Vec<Hover>)> {
    let (w, h) = opts.size.unwrap_or((1000, 560 + layer_tick_room(axis)));
    let mut hovers = Vec::new();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (main, side) = root.split_horizontally(w.saturating_sub(230));
        let y_desc = y_desc(opts);
        let frame = Frame {
            caption: title,
            caption_px: TITLE_PX,
            x_room: layer_tick_room(axis),
            y_room: 84,
            x_desc: axis.title(),
            y_desc: &y_desc,
        };
        let chart = layer_chart(&main, &frame, axis.len(), range)?;
        draw_axes(&root, &chart, axis, &log_ticks(range.0, range.1), 11, true)?;
        for (k, run) in runs.iter().enumerate() {
            let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
            draw_run(
                &root,
                &chart,
                &run.ys,
                colour.stroke_width(2),
                Some((k, colour)),
            )?;
        }
        for i in 0..axis.len() {
            let mut text = format!("{} {}", axis.title_short(), axis.describe(i));
            for run in runs {
                let v = run.ys.get(i).copied().flatten();
                text.push_str(&format!(
                    "\n{}: {} = {}",
                    run.name,
                    opts.metric.label(),
                    value_text(v)
                ));
            }
            hovers.push(Hover {
                rect: column(&chart, i),
                text,
            });
        }
        // The legend sits beside the chart so it never hides a line.
        let (sx, _) = side.get_base_pixel();
        side.draw(&Text::new("runs", (10, 64), font(DESC_PX)))
            .map_err(plot_err)?;
        for (k, run) in runs.iter().enumerate() {
            let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
            let y = 96 + 28 * k as i32;
            root.draw(&PathElement::new(
                vec![(sx + 10, y), (sx + 40, y)],
                colour.stroke_width(3),
            ))
            .map_err(plot_err)?;
            draw_marker(&root, k, (sx + 25, y), colour, 4)?;
            root.draw(&Text::new(
                run.name.to_string(),
                (sx + 48, y),
                anchored(TICK_PX, HPos::Left, VPos::Center),
            ))
            .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok((svg, hovers))
}

fn flow_panels(
    runs: &[Run],
    axis: &LayerAxis,
    range: (f64, f64),
    title: &str,
    opts: &PlotOptions,
) -> Result<(String, Vec<Hover>)> {
    let n = runs.len().max(1);
    let cols = match n {
        1..=4 => n,
        5 | 6 | 9 => 3,
        7 | 8 => 4,
        _ => 5,
    };
    let rows = n.div_ceil(cols);
    let (w, h) = opts.size.unwrap_or((1300, 110 + 300 * rows as u32));
    let ticks = log_ticks(range.0, range.1);
    let thin: Vec<f64> = if ticks.len() > 7 {
        ticks.iter().copied().step_by(2).collect()
    } else {
        ticks
    };
    let mut hovers = Vec::new();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (head, body) = root.split_vertically(70);
        let (body, foot) = body.split_vertically(h.saturating_sub(70 + 40));
        let (left, grid) = body.split_horizontally(36);
        head.draw(&Text::new(
            title.to_string(),
            (w as i32 / 2, 12),
            anchored(TITLE_PX, HPos::Center, VPos::Top),
        ))
        .map_err(plot_err)?;
        head.draw(&Text::new(
            "one panel per network on shared axes; grey: the other networks",
            (w as i32 / 2, 46),
            anchored(SMALL_PX, HPos::Center, VPos::Top).color(&RGBColor(90, 90, 90)),
        ))
        .map_err(plot_err)?;
        let (lw, lh) = left.dim_in_pixel();
        left.draw(&Text::new(
            y_desc(opts),
            (lw as i32 / 2, lh as i32 / 2),
            font(DESC_PX).transform(FontTransform::Rotate270).pos(
                plotters::style::text_anchor::Pos::new(HPos::Center, VPos::Center),
            ),
        ))
        .map_err(plot_err)?;
        let (fw, _) = foot.dim_in_pixel();
        foot.draw(&Text::new(
            axis.title(),
            (fw as i32 / 2, 8),
            anchored(DESC_PX, HPos::Center, VPos::Top),
        ))
        .map_err(plot_err)?;
        let cells = grid.split_evenly((rows, cols));
        for (k, (run, cell)) in runs.iter().zip(&cells).enumerate() {
            let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
            let frame = Frame {
                caption: run.name,
                caption_px: DESC_PX,
                x_room: 30,
                y_room: 58,
                x_desc: "",
                y_desc: "",
            };
            let chart = layer_chart(cell, &frame, axis.len(), range)?;
            // Names under each panel's ticks would crowd a small panel: numbers only there,
            // the names are in the hover text.
            draw_axes(&root, &chart, axis, &thin, 5, false)?;
            for (j, other) in runs.iter().enumerate() {
                if j != k {
                    draw_run(
                        &root,
                        &chart,
                        &other.ys,
                        RGBColor(205, 205, 205).stroke_width(1),
                        None,
                    )?;
                }
            }
            // A short network's few points get markers, so that it shows beside deep ones.
            let marker = (run.ys.len() <= NAMED_LAYERS).then_some((0, colour));
            draw_run(&root, &chart, &run.ys, colour.stroke_width(3), marker)?;
            for i in 0..run.ys.len() {
                let text = format!(
                    "{}\n{} {}: {} = {}",
                    run.name,
                    run.axis.title_short(),
                    run.axis.describe(i),
                    opts.metric.label(),
                    value_text(run.ys[i])
                );
                hovers.push(Hover {
                    rect: column(&chart, i),
                    text,
                });
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok((svg, hovers))
}

/// Mean and max |∂L/∂W| per layer at one step as bars on a log axis (max light and wide, mean
/// dark and narrow), the picture of the `plot_grad_flow` function PyTorch users share, whose
/// linear axis shows a vanishing network as a row of empty bars. A layer whose gradient is
/// exactly zero gets a red cross on the axis. `opts.metric` is not used.
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) if no layer has a positive finite gradient, or
/// `opts.log10_range` is not finite with `lo < hi`.
///
/// # Example
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use vgrad::monitor::{mean_max_svg, GradMonitor, MonitorConfig, PlotOptions};
/// use vgrad::nn::{Activation, Ctx, Linear, Module, Sequential};
/// use vgrad::{Tape, Tensor};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut net = Sequential::<f32>::new()
///     .push(Linear::new(4, 8, &mut rng)?)
///     .push(Activation::Sigmoid)
///     .push(Linear::new(8, 1, &mut rng)?);
/// let mut mon = GradMonitor::new(MonitorConfig::default());
/// let tape = Tape::new();
/// let mut ctx = Ctx::new(&tape);
/// let loss = net.forward(&mut ctx, tape.constant(Tensor::ones(&[2, 4]))).square().mean();
/// mon.backward(&ctx, &net, loss);
/// let svg = mean_max_svg(mon.latest().unwrap(), &PlotOptions::default())?;
/// assert!(svg.contains("max |∂L/∂W|") && svg.contains("mean |∂L/∂W|"));
/// # Ok::<(), vgrad::Error>(())
/// ```
pub fn mean_max_svg(step: &StepRecord, opts: &PlotOptions) -> Result<String> {
    let layers = plotted_layers(step);
    let axis = LayerAxis::of(step);
    let pos = |v: f64| Some(v).filter(|v| v.is_finite() && *v > 0.0);
    let maxes: Vec<Option<f64>> = layers.iter().map(|l| pos(l.weight_grad_max_abs)).collect();
    let means: Vec<Option<f64>> = layers.iter().map(|l| pos(l.weight_grad_mean_abs)).collect();
    let mut range_opts = opts.clone();
    range_opts.title = None;
    let range = range_opts
        .range(maxes.iter().chain(&means).flatten().map(|v| v.log10()))
        .map_err(|_| plot_err("no positive finite |∂L/∂W| to plot"))?;
    if opts.log10_range.is_some() {
        opts.range(std::iter::empty())?;
    }
    let title = opts.title_or(|| format!("Mean and max |∂L/∂W| per layer, step {}", step.step));
    let (w, h) = opts.size.unwrap_or((1000, 540 + layer_tick_room(&axis)));
    let light = RGBColor(158, 202, 225);
    let dark = RGBColor(31, 119, 180);
    let mut hovers = Vec::new();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (main, side) = root.split_horizontally(w.saturating_sub(200));
        let frame = Frame {
            caption: &title,
            caption_px: TITLE_PX,
            x_room: layer_tick_room(&axis),
            y_room: 84,
            x_desc: axis.title(),
            y_desc: "|∂L/∂W| (log scale)",
        };
        let chart = layer_chart(&main, &frame, axis.len(), range)?;
        draw_axes(&root, &chart, &axis, &log_ticks(range.0, range.1), 11, true)?;
        let bar = |i: usize, v: f64, half: f64, colour: RGBColor| {
            let a = chart.backend_coord(&(i as f64 - half, range.0));
            let b = chart.backend_coord(&(i as f64 + half, v.log10().clamp(range.0, range.1)));
            root.draw(&Rectangle::new([a, b], colour.filled()))
                .map_err(plot_err)
        };
        for (i, l) in layers.iter().enumerate() {
            if let Some(v) = maxes[i] {
                bar(i, v, 0.42, light)?;
            }
            if let Some(v) = means[i] {
                bar(i, v, 0.22, dark)?;
            }
            if l.weight_grad_max_abs == 0.0 {
                let (x, y) = chart.backend_coord(&(i as f64, range.0));
                root.draw(&Cross::new(
                    (x, y - 6),
                    5,
                    RGBColor(214, 39, 40).stroke_width(2),
                ))
                .map_err(plot_err)?;
            }
            let text = format!(
                "{} {}\nmax |∂L/∂W| = {}\nmean |∂L/∂W| = {}\n‖∂L/∂W‖ = {}",
                axis.title_short(),
                axis.describe(i),
                value_text(Some(l.weight_grad_max_abs)),
                value_text(Some(l.weight_grad_mean_abs)),
                value_text(Some(l.weight_grad_norm)),
            );
            hovers.push(Hover {
                rect: column(&chart, i),
                text,
            });
        }
        let (sx, _) = side.get_base_pixel();
        for (k, (label, colour)) in [("max |∂L/∂W|", light), ("mean |∂L/∂W|", dark)]
            .into_iter()
            .enumerate()
        {
            let y = 80 + 30 * k as i32;
            root.draw(&Rectangle::new(
                [(sx + 10, y - 8), (sx + 34, y + 8)],
                colour.filled(),
            ))
            .map_err(plot_err)?;
            root.draw(&Text::new(
                label,
                (sx + 42, y),
                anchored(TICK_PX, HPos::Left, VPos::Center),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Cross::new(
            (sx + 22, 140),
            5,
            RGBColor(214, 39, 40).stroke_width(2),
        ))
        .map_err(plot_err)?;
        root.draw(&Text::new(
            "zero gradient",
            (sx + 42, 140),
            anchored(TICK_PX, HPos::Left, VPos::Center),
        ))
        .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(with_hovers(svg, &hovers))
}
