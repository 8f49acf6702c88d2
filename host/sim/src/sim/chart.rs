//! The timeline chart: a self-contained HTML page with inline SVG (no scripts, no external assets).
//!
//! Three panels over virtual time: nodes by capacity type (stacked), cost per hour, pending pods.

use std::fmt::Write as _;

use super::report::Report;

const WIDTH: f64 = 1100.0;
const PANEL_HEIGHT: f64 = 200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 30.0;

pub fn html(report: &Report) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kestrel simulate: {name}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}\
table{{border-collapse:collapse;margin-bottom:16px}}td{{padding:2px 12px 2px 0;font-size:13px}}\
svg text{{font-size:11px;fill:#444}}.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}</style>\
</head><body>\n<h1>kestrel simulate — {name}</h1>\n",
        name = escape(&report.scenario)
    );
    let _ = writeln!(page, "<table>");
    let short_lived = format!(
        "nodes that ran under {} minutes",
        super::report::SHORT_LIVED_MINUTES
    );
    for (k, v) in [
        ("seed", report.seed.to_string()),
        ("provisioner", report.provisioner.clone()),
        ("disruption", report.disruption.clone()),
        ("total cost", format!("${:.2}", report.total_cost_usd)),
        (
            "node-hours on-demand / spot",
            format!(
                "{:.1} / {:.1}",
                report.node_hours.on_demand, report.node_hours.spot
            ),
        ),
        (
            "pending seconds p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1}",
                report.pending_seconds.p50, report.pending_seconds.p99, report.pending_seconds.max
            ),
        ),
        (
            "pods rescheduled after eviction",
            report.pods_rescheduled.to_string(),
        ),
        (
            short_lived.as_str(),
            format!(
                "{} of {} terminated",
                report.node_lifetimes.short_lived, report.node_lifetimes.terminated
            ),
        ),
        (
            "interruptions handled",
            report.interruptions.handled.to_string(),
        ),
    ] {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td><b>{}</b></td></tr>",
            escape(k),
            escape(&v)
        );
    }
    let _ = writeln!(page, "</table>");
    let t: Vec<f64> = report.timeline.iter().map(|s| s.seconds as f64).collect();
    let od: Vec<f64> = report
        .timeline
        .iter()
        .map(|s| f64::from(s.on_demand_nodes))
        .collect();
    let total: Vec<f64> = report
        .timeline
        .iter()
        .map(|s| f64::from(s.on_demand_nodes + s.spot_nodes))
        .collect();
    let cost: Vec<f64> = report.timeline.iter().map(|s| s.cost_per_hour).collect();
    let pending: Vec<f64> = report
        .timeline
        .iter()
        .map(|s| f64::from(s.pending_pods))
        .collect();
    page.push_str(&panel(
        "Nodes by capacity type",
        &t,
        &[
            Series {
                values: &total,
                color: "#f28e2b",
                label: "spot",
                fill: true,
            },
            Series {
                values: &od,
                color: "#4e79a7",
                label: "on-demand",
                fill: true,
            },
        ],
        "nodes",
    ));
    page.push_str(&panel(
        "Cost per hour (USD)",
        &t,
        &[Series {
            values: &cost,
            color: "#59a14f",
            label: "USD/hour",
            fill: false,
        }],
        "$/h",
    ));
    page.push_str(&panel(
        "Pending pods",
        &t,
        &[Series {
            values: &pending,
            color: "#e15759",
            label: "pending",
            fill: false,
        }],
        "pods",
    ));
    page.push_str("</body></html>\n");
    page
}

struct Series<'a> {
    values: &'a [f64],
    color: &'a str,
    label: &'a str,
    /// Filled to the axis (drawn in order, so a stack is drawn total-first).
    fill: bool,
}

fn panel(title: &str, t: &[f64], series: &[Series<'_>], unit: &str) -> String {
    let mut s = String::new();
    let h = PANEL_HEIGHT + TOP + BOTTOM;
    let t_max = t.last().copied().unwrap_or(1.0).max(1.0);
    let mut y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    );
    // Counts get whole-number grid lines (four intervals).
    if unit != "$/h" {
        y_max = (y_max / 4.0).ceil() * 4.0;
    }
    let x = |v: f64| LEFT + (WIDTH - LEFT - RIGHT) * v / t_max;
    let y = |v: f64| TOP + PANEL_HEIGHT - PANEL_HEIGHT * v / y_max;
    let _ = write!(s, "<h3>{}</h3><div class=\"legend\">", escape(title));
    for se in series {
        let _ = write!(
            s,
            "<span style=\"background:{}\"></span>{}",
            se.color,
            escape(se.label)
        );
    }
    let _ = writeln!(s, "</div>");
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\">"
    );
    // Grid and axes.
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            fmt_axis(v, unit)
        );
    }
    // Round time ticks (1 min .. 6 h apart), at most 12 of them.
    let step = [
        60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0,
    ]
    .into_iter()
    .find(|step| t_max / step <= 12.0)
    .unwrap_or(43200.0);
    let ticks = (t_max / step).floor() as i32;
    for i in 0..=ticks {
        let v = step * f64::from(i);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(v),
            TOP + PANEL_HEIGHT + 18.0,
            fmt_time(v)
        );
    }
    for se in series {
        if se.values.is_empty() {
            continue;
        }
        // Step lines: a value holds until the next sample.
        let mut d = String::new();
        for (i, (&ti, &vi)) in t.iter().zip(se.values).enumerate() {
            if i == 0 {
                let _ = write!(d, "M{:.1},{:.1}", x(ti), y(vi));
            } else {
                let _ = write!(d, " H{:.1} V{:.1}", x(ti), y(vi));
            }
        }
        if se.fill {
            let _ = writeln!(
                s,
                "<path d=\"{d} V{:.1} H{:.1} Z\" fill=\"{}\" fill-opacity=\"0.85\" stroke=\"none\"/>",
                y(0.0),
                x(t[0]),
                se.color
            );
        } else {
            let _ = writeln!(
                s,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"/>",
                se.color
            );
        }
    }
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#888\"/><line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/></svg>",
        TOP + PANEL_HEIGHT,
        WIDTH - RIGHT,
        TOP + PANEL_HEIGHT,
        TOP + PANEL_HEIGHT
    );
    s
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_axis(v: f64, unit: &str) -> String {
    if unit == "$/h" {
        format!("${v:.2}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_time(seconds: f64) -> String {
    let s = seconds as i64;
    format!("{}:{:02}", s / 3600, (s % 3600) / 60)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
