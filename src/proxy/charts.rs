//! Charts for the status page, drawn as inline SVG: no script, no external file, nothing
//! fetched, so the page still works as one self-contained document on a projector or
//! behind a strict firewall. Pure functions from numbers to SVG text; what to draw (which
//! counters, over which minutes) is `status`'s.
//!
//! Two kinds: a line chart (series over evenly spaced times, with gaps where a value is
//! missing) and a bar chart (series side by side over categories). Every chart has the same
//! size, a title, a vertical scale from 0 to a round number, and a legend. Text that could
//! come from configuration (series names such as backend addresses) is escaped as markup.

use std::fmt::Write;

use crate::http::html::escape_html;

/// Width of a chart, in CSS pixels (two fit side by side on a 1280-pixel screen).
const WIDTH: f64 = 560.0;
/// Height of a chart, in CSS pixels.
const HEIGHT: f64 = 250.0;
/// Room left of the plot for the vertical scale's labels, in pixels.
const LEFT: f64 = 58.0;
/// Room right of the plot, in pixels.
const RIGHT: f64 = 14.0;
/// Room above the plot for the title, in pixels.
const TOP: f64 = 34.0;
/// Room below the plot for the horizontal labels and two rows of legend, in pixels.
const BOTTOM: f64 = 74.0;
/// Height of one row of the legend, in pixels.
const LEGEND_ROW: f64 = 17.0;
/// Horizontal room per character of a legend entry, in pixels (12 px sans-serif).
const LEGEND_CHAR: f64 = 7.0;
/// Colours of the series, in order (repeated when there are more series).
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One named series of values; None is a gap (a line chart does not draw it).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Shown in the legend (escaped).
    pub name: String,
    /// One value per time step (line chart) or per category (bar chart).
    pub values: Vec<Option<f64>>,
}

/// The vertical scale: from 0 to `max` (or to a round number above the largest value), its
/// labels followed by `unit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale<'a> {
    /// A fixed top (100 for percentages), or None to fit the data.
    pub max: Option<f64>,
    /// Written after each label: `/s`, `%`, or nothing.
    pub unit: &'a str,
}

/// A line chart of `series` over evenly spaced times, `from` and `to` labelling the left
/// and right ends of the time axis (`-5 min`, `now`).
pub fn line_chart(
    title: &str,
    series: &[Series],
    scale: Scale,
    (from, to): (&str, &str),
) -> String {
    let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let top = top_of(series, scale);
    let mut svg = open(title, series, top, scale.unit);
    let x = |i: usize| LEFT + plot_width() * i as f64 / steps.saturating_sub(1).max(1) as f64;
    for (s, colour) in series.iter().zip(PALETTE.iter().cycle()) {
        for run in runs(&s.values) {
            let points: Vec<String> = run
                .iter()
                .map(|&(i, v)| format!("{:.1},{:.1}", x(i), y_of(v, top)))
                .collect();
            if let [single] = points.as_slice() {
                let (cx, cy) = single.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    svg,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"2.5\" fill=\"{colour}\"/>"
                );
            } else {
                let _ = write!(
                    svg,
                    "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                    points.join(" ")
                );
            }
        }
    }
    let base = TOP + plot_height() + 16.0;
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"{base}\">{}</text><text x=\"{}\" y=\"{base}\" \
         text-anchor=\"end\">{}</text>",
        escape_html(from),
        WIDTH - RIGHT,
        escape_html(to)
    );
    close(svg, series)
}

/// A bar chart: for each of `categories`, one bar per series, side by side.
pub fn bar_chart(title: &str, categories: &[String], series: &[Series], scale: Scale) -> String {
    let top = top_of(series, scale);
    let mut svg = open(title, series, top, scale.unit);
    let group = plot_width() / categories.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    for (c, category) in categories.iter().enumerate() {
        let left = LEFT + group * c as f64 + group * 0.1;
        for (k, (s, colour)) in series.iter().zip(PALETTE.iter().cycle()).enumerate() {
            let Some(Some(v)) = s.values.get(c).copied() else {
                continue;
            };
            let y = y_of(v, top);
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\">\
                 <title>{}: {} ({})</title></rect>",
                left + bar * k as f64,
                bar.max(1.0),
                TOP + plot_height() - y,
                escape_html(&s.name),
                number(v),
                escape_html(category),
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
            LEFT + group * (c as f64 + 0.5),
            TOP + plot_height() + 14.0,
            escape_html(category)
        );
    }
    close(svg, series)
}

/// The chart's opening: the `<svg>` element, its title, and the scale's grid and labels.
fn open(title: &str, series: &[Series], top: f64, unit: &str) -> String {
    let title = escape_html(title);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" \
         font-size=\"12\" role=\"img\" aria-label=\"{title}\"><title>{title}</title>\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{title}</text>"
    );
    for fraction in [0.0, 0.5, 1.0] {
        let y = y_of(top * fraction, top);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ccc\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            number(top * fraction),
            escape_html(unit)
        );
    }
    if series.iter().all(|s| s.values.iter().all(Option::is_none)) {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">no data yet</text>",
            LEFT + plot_width() / 2.0,
            TOP + plot_height() / 2.0
        );
    }
    svg
}

/// The chart's legend (in rows as wide as the plot) and end.
fn close(mut svg: String, series: &[Series]) -> String {
    let mut x = LEFT;
    let mut y = TOP + plot_height() + 36.0;
    for (s, colour) in series.iter().zip(PALETTE.iter().cycle()) {
        let width = 28.0 + LEGEND_CHAR * s.name.chars().count() as f64;
        if x > LEFT && x + width > WIDTH - RIGHT {
            x = LEFT;
            y += LEGEND_ROW;
        }
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 10.0,
            x + 16.0,
            escape_html(&s.name)
        );
        x += width;
    }
    svg.push_str("</svg>");
    svg
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

/// The top of the scale: the fixed one, or the round number at or above the largest value.
fn top_of(series: &[Series], scale: Scale) -> f64 {
    scale.max.unwrap_or_else(|| {
        let largest = series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0_f64, |a, &b| a.max(b));
        round_up(largest)
    })
}

/// The vertical position of `value` on a scale from 0 to `top` (clamped to the plot).
fn y_of(value: f64, top: f64) -> f64 {
    let fraction = if top > 0.0 { value / top } else { 0.0 };
    TOP + plot_height() * (1.0 - fraction.clamp(0.0, 1.0))
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `value` (1 for 0 or
/// less), so the scale's labels are round.
pub fn round_up(value: f64) -> f64 {
    if value.is_nan() || value <= 0.0 || value.is_infinite() {
        return 1.0;
    }
    let power = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|&candidate| candidate >= value * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// `n` with at most two decimals and no trailing zeros: `2`, `0.5`, `12.25`.
fn number(n: f64) -> String {
    let text = format!("{n:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The runs of consecutive present values, each value with its index: the pieces of a line
/// between gaps.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut runs = vec![Vec::new()];
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(v) => runs.last_mut().expect("never empty").push((i, *v)),
            None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
            None => {}
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, values: &[Option<f64>]) -> Series {
        Series {
            name: name.to_string(),
            values: values.to_vec(),
        }
    }

    const PER_SECOND: Scale = Scale {
        max: None,
        unit: "/s",
    };

    #[test]
    fn scales_end_on_round_numbers() {
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(0.3), 0.5);
        assert_eq!(round_up(1.0), 1.0);
        assert_eq!(round_up(1.2), 2.0);
        assert_eq!(round_up(7.0), 10.0);
        assert_eq!(round_up(10.0), 10.0);
        assert_eq!(round_up(4_200.0), 5_000.0);
        assert_eq!(round_up(f64::NAN), 1.0);
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(2500.0), "2500");
    }

    #[test]
    fn a_line_is_drawn_through_its_points_and_broken_at_gaps() {
        let svg = line_chart(
            "Requests per second",
            &[series("a", &[None, Some(0.0), Some(2.0), None, Some(1.0)])],
            PER_SECOND,
            ("-20 s", "now"),
        );
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>"));
        // Five steps over the plot's 488 px: x = 58, 180, 302, 424, 546; top of scale 2.
        assert!(
            svg.contains("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"180.0,176.0 302.0,34.0\"/>"),
            "{svg}"
        );
        assert!(
            svg.contains("<circle cx=\"546.0\" cy=\"105.0\" r=\"2.5\""),
            "{svg}"
        );
        assert!(
            svg.contains(">2/s</text>") && svg.contains(">1/s</text>"),
            "{svg}"
        );
        assert!(svg.contains(">-20 s</text>") && svg.contains(">now</text>"));
        assert!(svg.contains("<title>Requests per second</title>"));
        assert!(!svg.contains("no data yet"));
    }

    #[test]
    fn bars_stand_side_by_side_per_category() {
        let categories = ["1ms".to_string(), "+Inf".to_string()];
        let svg = bar_chart(
            "Latency",
            &categories,
            &[
                series("a", &[Some(5.0), Some(0.0)]),
                series("b", &[Some(2.5), None]),
            ],
            Scale {
                max: None,
                unit: "",
            },
        );
        // Two groups of 244 px; bars of 97.6 px; a's 5 reaches the top (y 34).
        assert!(svg.contains("<rect x=\"82.4\" y=\"34.0\" width=\"97.6\" height=\"142.0\" fill=\"#1f77b4\"><title>a: 5 (1ms)</title>"), "{svg}");
        assert!(svg.contains("<rect x=\"180.0\" y=\"105.0\" width=\"97.6\" height=\"71.0\" fill=\"#d62728\"><title>b: 2.5 (1ms)</title>"), "{svg}");
        assert!(svg.contains("<title>a: 0 (+Inf)</title>"));
        assert!(!svg.contains("b: 0 (+Inf)"), "a missing value draws no bar");
        assert!(svg.contains(">+Inf</text>"));
    }

    #[test]
    fn names_and_titles_are_escaped_and_there_is_no_script() {
        let evil = series("<script>alert(1)</script>\"&", &[Some(1.0)]);
        let svg = line_chart(
            "a <b> title",
            std::slice::from_ref(&evil),
            PER_SECOND,
            ("<", ">"),
        );
        let bars = bar_chart("t", &["<x>".to_string()], &[evil], PER_SECOND);
        for svg in [svg, bars] {
            assert!(!svg.contains("<script"), "{svg}");
            assert!(
                svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;"),
                "{svg}"
            );
        }
    }

    #[test]
    fn an_empty_chart_says_so_and_a_fixed_scale_is_kept() {
        let svg = line_chart(
            "Cache hit ratio",
            &[series("hit ratio", &[None, None])],
            Scale {
                max: Some(100.0),
                unit: "%",
            },
            ("-5 min", "now"),
        );
        assert!(svg.contains("no data yet"), "{svg}");
        assert!(
            svg.contains(">100%</text>") && svg.contains(">50%</text>"),
            "{svg}"
        );
        assert!(!svg.contains("<polyline") && !svg.contains("<circle"));
    }

    #[test]
    fn a_long_legend_goes_on_to_a_second_row() {
        let names = [
            "127.0.0.1:38081",
            "127.0.0.1:38082",
            "127.0.0.1:38083",
            "no backend",
        ];
        let many: Vec<Series> = names.iter().map(|n| series(n, &[Some(1.0)])).collect();
        let svg = line_chart("t", &many, PER_SECOND, ("a", "b"));
        // Entries of 133 px from x 58: three fit before 546, the fourth starts a row.
        assert!(
            svg.contains("<text x=\"340.0\" y=\"212.0\">127.0.0.1:38083</text>"),
            "{svg}"
        );
        assert!(
            svg.contains("<text x=\"74.0\" y=\"229.0\">no backend</text>"),
            "{svg}"
        );
    }

    #[test]
    fn runs_split_at_gaps() {
        let runs = runs(&[Some(1.0), None, None, Some(2.0), Some(3.0), None]);
        assert_eq!(runs, vec![vec![(0, 1.0)], vec![(3, 2.0), (4, 3.0)]]);
    }
}
