//! Line charts for the examples whose plots are not the monitor's (`isometry`): a row of panels
//! sharing one legend, in the house style of `src/monitor/plot/` (Tableau colours, the same font
//! sizes, light grid, the legend in a column of its own so it never hides a line, log axes
//! labelled `1e-10`, `0.01`, `1`, `100`).
//!
//! Included with `#[path = "common/lines.rs"]` by the examples that need it only: it uses
//! `plotters`, which the examples without the `plot` feature do not have.

// Each example uses a part of this file.
#![allow(dead_code)]

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
pub use plotters::style::RGBColor;
use std::error::Error;

/// Tableau 10, as the monitor's plots use.
pub const COLOURS: [RGBColor; 10] = [
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

/// Black, for a prediction drawn over measurements.
pub const INK: RGBColor = RGBColor(30, 30, 30);

// The monitor's sizes: plotters' SVG backend writes 0.81 of the size asked for.
const TITLE_PX: u32 = 28;
const DESC_PX: u32 = 20;
const TICK_PX: u32 = 18;
const GRID: RGBColor = RGBColor(225, 225, 225);
const LEGEND_W: u32 = 300;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stroke {
    /// A solid line this many pixels wide.
    Solid(u32),
    /// A dashed line this many pixels wide.
    Dashed(u32),
    /// Dots on the points, with a thin line through them.
    Dots,
}

/// One line: its legend entry, its points (in data units, not log10), colour and stroke.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend's text.
    pub name: String,
    /// `(x, y)` points; non-finite or (on a log axis) non-positive values are left out.
    pub points: Vec<(f64, f64)>,
    /// The line's colour.
    pub colour: RGBColor,
    /// How it is drawn.
    pub stroke: Stroke,
}

/// One panel: a title and its series. Series with the same name in several panels share one
/// legend entry.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The panel's title.
    pub title: String,
    /// Its lines.
    pub series: Vec<Series>,
    /// Lines of text, each in its colour, in the panel's top left corner.
    pub notes: Vec<(String, RGBColor)>,
}

/// An axis: its description, log or linear, and an optional fixed range (data units).
#[derive(Clone, Debug)]
pub struct Axis {
    /// The axis's description (" (log scale)" is added to a log axis).
    pub desc: String,
    /// Log10 scale.
    pub log: bool,
    /// A fixed range; `None` fits the data of every panel (one range for all).
    pub range: Option<(f64, f64)>,
}

/// A row of panels with shared axes and one legend.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The chart's title.
    pub title: String,
    /// The x axis of every panel.
    pub x: Axis,
    /// The y axis of every panel.
    pub y: Axis,
    /// The panels, left to right.
    pub panels: Vec<Panel>,
    /// Every panel on the same x range; otherwise each fits its own data (the y range is
    /// always shared, so heights compare across panels).
    pub shared_x: bool,
    /// Width and height in pixels; `None`: 420 per panel plus the legend, by 560.
    pub size: Option<(u32, u32)>,
}

fn font(px: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", px).into_font())
}

/// `10^e` as a tick reads it: `1e-30`, `0.002`, `0.5`, `1`, `20`, `3e5`; between decades (a
/// short axis) the value with two significant digits.
pub fn pow10_label(e: f64) -> String {
    let v = 10f64.powf(e);
    let exp = e.floor();
    let mantissa = v / 10f64.powf(exp);
    let whole = (mantissa - mantissa.round()).abs() < 0.05;
    if (-3.0..=3.0).contains(&exp) {
        let digits = (-exp).max(0.0) as usize + usize::from(!whole);
        format!("{v:.digits$}")
    } else if whole {
        format!("{}e{exp}", mantissa.round())
    } else {
        format!("{mantissa:.1}e{exp}")
    }
}

/// A plain number on a linear axis: no trailing zeros.
fn linear_label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

impl Axis {
    fn to_plot(&self, v: f64) -> Option<f64> {
        match (self.log, v.is_finite()) {
            (true, true) if v > 0.0 => Some(v.log10()),
            (false, true) => Some(v),
            _ => None,
        }
    }

    /// The plotted range (log10 units on a log axis), padded a little on a linear fit.
    fn plot_range(&self, values: impl Iterator<Item = f64>) -> (f64, f64) {
        if let Some((lo, hi)) = self.range {
            let lo = self.to_plot(lo).unwrap_or(0.0);
            let hi = self.to_plot(hi).unwrap_or(lo + 1.0);
            return (lo, hi);
        }
        let (mut lo, mut hi) = values
            .filter_map(|v| self.to_plot(v))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = if self.log {
            0.1 * (hi - lo).max(1.0)
        } else {
            0.05 * (hi - lo).max(1e-9)
        };
        lo -= pad;
        hi += pad;
        if self.log {
            // Whole decades at the ends keep the ticks on round numbers.
            (lo.floor(), hi.ceil())
        } else {
            (lo, hi)
        }
    }

    fn label(&self, v: f64) -> String {
        if self.log {
            pow10_label(v)
        } else {
            linear_label(v)
        }
    }

    fn description(&self) -> String {
        if self.log {
            format!("{} (log scale)", self.desc)
        } else {
            self.desc.clone()
        }
    }
}

/// The chart as an SVG document.
///
/// # Errors
/// When plotters fails to draw (it does not on an SVG string).
pub fn chart_svg(chart: &Chart) -> Result<String, Box<dyn Error>> {
    let n = chart.panels.len().max(1);
    let (w, h) = chart.size.unwrap_or((420 * n as u32 + LEGEND_W, 560));
    let all = || {
        chart
            .panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| &s.points)
    };
    let shared_xr = chart.x.plot_range(all().map(|p| p.0));
    let yr = chart.y.plot_range(all().map(|p| p.1));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&chart.title, font(TITLE_PX))?;
        let (main, side) = root.split_horizontally(w.saturating_sub(LEGEND_W));
        let areas = main.split_evenly((1, n));
        for (k, (area, panel)) in areas.iter().zip(&chart.panels).enumerate() {
            let xr = if chart.shared_x {
                shared_xr
            } else {
                let xs = panel.series.iter().flat_map(|s| &s.points).map(|p| p.0);
                chart.x.plot_range(xs)
            };
            let mut c = ChartBuilder::on(area)
                .caption(&panel.title, font(DESC_PX))
                .margin(12)
                .x_label_area_size(56)
                .y_label_area_size(if k == 0 { 92 } else { 64 })
                .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
            let x_label = |v: &f64| chart.x.label(*v);
            let y_label = |v: &f64| chart.y.label(*v);
            let mut mesh = c.configure_mesh();
            mesh.light_line_style(WHITE)
                .bold_line_style(GRID)
                .x_labels(6)
                .y_labels(8)
                .x_label_formatter(&x_label)
                .y_label_formatter(&y_label)
                .label_style(font(TICK_PX))
                .axis_desc_style(font(TICK_PX))
                .x_desc(chart.x.description());
            if k == 0 {
                mesh.y_desc(chart.y.description());
            }
            mesh.draw()?;
            for s in &panel.series {
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .filter_map(|&(x, y)| Some((chart.x.to_plot(x)?, chart.y.to_plot(y)?)))
                    .collect();
                match s.stroke {
                    Stroke::Solid(px) => {
                        c.draw_series(LineSeries::new(pts, s.colour.stroke_width(px)))?;
                    }
                    Stroke::Dashed(px) => {
                        c.draw_series(DashedLineSeries::new(pts, 9, 6, s.colour.stroke_width(px)))?;
                    }
                    Stroke::Dots => {
                        c.draw_series(LineSeries::new(pts.clone(), s.colour.stroke_width(1)))?;
                        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, s.colour.filled())))?;
                    }
                }
            }
            // `area` draws in its own coordinates; the plotting area's base is the page's.
            let (px, py) = c.plotting_area().get_base_pixel();
            let (ax, ay) = area.get_base_pixel();
            let (x0, y0) = (px - ax, py - ay);
            for (i, (note, colour)) in panel.notes.iter().enumerate() {
                let at = (x0 + 12, y0 + 18 + 24 * i as i32);
                let style = font(TICK_PX).pos(Pos::new(HPos::Left, VPos::Center));
                area.draw(&Text::new(note.clone(), at, style.color(colour)))?;
            }
        }
        // One legend for every panel, in its own column.
        let mut names: Vec<(&str, RGBColor, Stroke)> = Vec::new();
        for s in chart.panels.iter().flat_map(|p| &p.series) {
            if !names.iter().any(|(n, _, _)| *n == s.name) {
                names.push((&s.name, s.colour, s.stroke));
            }
        }
        let left = Pos::new(HPos::Left, VPos::Center);
        for (i, (name, colour, stroke)) in names.into_iter().enumerate() {
            let y = 70 + 30 * i as i32;
            let line = vec![(10, y), (44, y)];
            match stroke {
                Stroke::Solid(px) => {
                    side.draw(&PathElement::new(line, colour.stroke_width(px.max(2))))
                }
                Stroke::Dashed(px) => side
                    .draw(&PathElement::new(
                        vec![(10, y), (22, y)],
                        colour.stroke_width(px.max(2)),
                    ))
                    .and_then(|_| {
                        side.draw(&PathElement::new(
                            vec![(30, y), (44, y)],
                            colour.stroke_width(px.max(2)),
                        ))
                    }),
                Stroke::Dots => side
                    .draw(&PathElement::new(line, colour.stroke_width(1)))
                    .and_then(|_| side.draw(&Circle::new((27, y), 4, colour.filled()))),
            }?;
            side.draw(&Text::new(
                name.to_string(),
                (52, y),
                font(TICK_PX).pos(left),
            ))?;
        }
        root.present()?;
    }
    Ok(svg)
}
