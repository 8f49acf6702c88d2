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
    let mut page = head(&report.scenario);
    summary(&mut page, report);
    let markers = markers(report, "");
    page.push_str(&marker_legend(&markers));
    let run = Run::of(report);
    page.push_str(&panel(
        "Nodes by capacity type",
        report.duration_seconds,
        &[
            Series {
                t: &run.t,
                values: &run.total,
                color: "#f28e2b",
                label: "spot",
                fill: true,
                dashed: false,
            },
            Series {
                t: &run.t,
                values: &run.on_demand,
                color: "#4e79a7",
                label: "on-demand",
                fill: true,
                dashed: false,
            },
        ],
        &markers,
        "nodes",
    ));
    page.push_str(&panel(
        "Cost per hour (USD)",
        report.duration_seconds,
        &[Series {
            t: &run.t,
            values: &run.cost,
            color: "#59a14f",
            label: "USD/hour",
            fill: false,
            dashed: false,
        }],
        &markers,
        "$/h",
    ));
    page.push_str(&panel(
        "Pending pods",
        report.duration_seconds,
        &[Series {
            t: &run.t,
            values: &run.pending,
            color: "#e15759",
            label: "pending",
            fill: false,
            dashed: false,
        }],
        &markers,
        "pods",
    ));
    page.push_str("</body></html>\n");
    page
}

/// Which of a run's series a comparison panel plots.
type RunSeries = fn(&Run) -> &[f64];

/// The comparison chart: both runs overlaid on each panel (the default solid, the candidate dashed),
/// each with its own disruption and interruption markers.
pub fn compare_html(base: &Report, candidate: &Report) -> String {
    let mut page = head(&base.scenario);
    let _ = writeln!(
        page,
        "<table><tr><td></td><td><b>default</b> (solid)</td><td><b>candidate</b> (dashed)</td></tr>"
    );
    for (k, a, b) in [
        (
            "provisioner",
            base.provisioner.clone(),
            candidate.provisioner.clone(),
        ),
        (
            "disruption",
            base.disruption.clone(),
            candidate.disruption.clone(),
        ),
        (
            "total cost",
            format!("${:.2}", base.total_cost_usd),
            format!("${:.2}", candidate.total_cost_usd),
        ),
        (
            "pending seconds p50 / p99 / max",
            pending_row(base),
            pending_row(candidate),
        ),
        (
            "disruptions",
            base.disruptions.values().sum::<u64>().to_string(),
            candidate.disruptions.values().sum::<u64>().to_string(),
        ),
    ] {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(k),
            escape(&a),
            escape(&b)
        );
    }
    let _ = writeln!(page, "</table>");
    let mut markers = markers(base, "default: ");
    markers.extend(markers_dashed(candidate));
    page.push_str(&marker_legend(&markers));
    let (a, b) = (Run::of(base), Run::of(candidate));
    let duration = base.duration_seconds.max(candidate.duration_seconds);
    let panels: [(&str, &str, RunSeries); 3] = [
        ("Nodes (all capacity types)", "nodes", |r| &r.total),
        ("Cost per hour (USD)", "$/h", |r| &r.cost),
        ("Pending pods", "pods", |r| &r.pending),
    ];
    for (title, unit, values) in panels {
        let series = [
            Series {
                t: &a.t,
                values: values(&a),
                color: "#4e79a7",
                label: "default",
                fill: false,
                dashed: false,
            },
            Series {
                t: &b.t,
                values: values(&b),
                color: "#f28e2b",
                label: "candidate",
                fill: false,
                dashed: true,
            },
        ];
        page.push_str(&panel(title, duration, &series, &markers, unit));
    }
    page.push_str("</body></html>\n");
    page
}

fn head(name: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kestrel simulate: {name}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}\
table{{border-collapse:collapse;margin-bottom:16px}}td{{padding:2px 12px 2px 0;font-size:13px}}\
svg text{{font-size:11px;fill:#444}}.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}</style>\
</head><body>\n<h1>kestrel simulate — {name}</h1>\n",
        name = escape(name)
    );
    page
}

fn pending_row(report: &Report) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        report.pending_seconds.p50, report.pending_seconds.p99, report.pending_seconds.max
    )
}

fn summary(page: &mut String, report: &Report) {
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
        ("pending seconds p50 / p99 / max", pending_row(report)),
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
}

/// One run's timeline as plotted values.
struct Run {
    t: Vec<f64>,
    on_demand: Vec<f64>,
    total: Vec<f64>,
    cost: Vec<f64>,
    pending: Vec<f64>,
}

impl Run {
    fn of(report: &Report) -> Run {
        let tl = &report.timeline;
        Run {
            t: tl.iter().map(|s| s.seconds as f64).collect(),
            on_demand: tl.iter().map(|s| f64::from(s.on_demand_nodes)).collect(),
            total: tl
                .iter()
                .map(|s| f64::from(s.on_demand_nodes + s.spot_nodes))
                .collect(),
            cost: tl.iter().map(|s| s.cost_per_hour).collect(),
            pending: tl.iter().map(|s| f64::from(s.pending_pods)).collect(),
        }
    }
}

/// A vertical mark on every panel at an instant: a disruption (a node removed for a reason) or a
/// spot interruption warning.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at: f64,
    /// The legend entry and the colour (one per kind).
    pub kind: String,
    pub color: &'static str,
    /// The hover text.
    pub title: String,
    pub dashed: bool,
}

/// The colour of a marker kind (a disruption's reason, or `interruption`).
fn marker_color(kind: &str) -> &'static str {
    match kind {
        "interruption" => "#d62728",
        "spot-interruption" | "scheduled-change" | "capacity-reservation-interruption" => "#ff7f0e",
        "rebalance" => "#bcbd22",
        "empty" => "#17becf",
        "underutilized" => "#9467bd",
        "drifted" => "#8c564b",
        "expired" => "#7f7f7f",
        _ => "#e377c2",
    }
}

/// The disruptions (node terminations with their reason) and spot interruption warnings of a run.
pub fn markers(report: &Report, prefix: &str) -> Vec<Marker> {
    let mut out: Vec<Marker> = report
        .decisions
        .iter()
        .filter(|d| super::report::detail::is_disruption(d))
        .map(|d| Marker {
            at: d.at,
            kind: format!("{prefix}{}", d.reason),
            color: marker_color(&d.reason),
            title: format!(
                "{}{} at {}: {} {}",
                prefix,
                d.reason,
                fmt_time(d.at),
                d.node.as_deref().unwrap_or_default(),
                d.detail
            ),
            dashed: false,
        })
        .collect();
    out.extend(report.interruptions.events.iter().map(|e| Marker {
        at: e.warned_at,
        kind: format!("{prefix}interruption"),
        color: marker_color("interruption"),
        title: format!(
            "{prefix}spot interruption warning at {}: {} (reclaim at {})",
            fmt_time(e.warned_at),
            e.node.as_deref().unwrap_or(&e.instance_id),
            fmt_time(e.reclaim_at)
        ),
        dashed: false,
    }));
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

fn markers_dashed(report: &Report) -> Vec<Marker> {
    markers(report, "candidate: ")
        .into_iter()
        .map(|m| Marker { dashed: true, ..m })
        .collect()
}

fn marker_legend(markers: &[Marker]) -> String {
    let mut kinds: Vec<(&str, &str, bool, usize)> = Vec::new();
    for m in markers {
        match kinds.iter_mut().find(|k| k.0 == m.kind) {
            Some(k) => k.3 += 1,
            None => kinds.push((&m.kind, m.color, m.dashed, 1)),
        }
    }
    if kinds.is_empty() {
        return "<p class=\"legend\">no disruptions or interruptions</p>\n".to_string();
    }
    kinds.sort();
    let mut s = String::from("<p class=\"legend\">markers:");
    for (kind, color, dashed, n) in kinds {
        let style = if dashed { "dashed" } else { "solid" };
        let _ = write!(
            s,
            "<span style=\"background:none;border-left:2px {style} {color};height:14px\"></span>{} ({n})",
            escape(kind)
        );
    }
    s.push_str("</p>\n");
    s
}

struct Series<'a> {
    /// Seconds since the start of each value.
    t: &'a [f64],
    values: &'a [f64],
    color: &'a str,
    label: &'a str,
    /// Filled to the axis (drawn in order, so a stack is drawn total-first).
    fill: bool,
    dashed: bool,
}

fn panel(
    title: &str,
    duration_seconds: i64,
    series: &[Series<'_>],
    markers: &[Marker],
    unit: &str,
) -> String {
    let mut s = String::new();
    let h = PANEL_HEIGHT + TOP + BOTTOM;
    let t_max = series
        .iter()
        .filter_map(|se| se.t.last().copied())
        .fold(duration_seconds as f64, f64::max)
        .max(1.0);
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
        for (i, (&ti, &vi)) in se.t.iter().zip(se.values).enumerate() {
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
                x(se.t[0]),
                se.color
            );
        } else {
            let dash = if se.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"{dash}/>",
                se.color
            );
        }
    }
    // Disruptions and interruptions: a vertical line across the panel, a triangle above it, the
    // details on hover.
    for m in markers {
        let mx = x(m.at.clamp(0.0, t_max));
        let dash = if m.dashed {
            " stroke-dasharray=\"3 3\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<g class=\"marker\"><title>{}</title><line x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1\" stroke-opacity=\"0.7\"{dash}/><path d=\"M{:.1},{:.1} l4,-7 h-8 Z\" fill=\"{}\"/></g>",
            escape(&m.title),
            TOP + PANEL_HEIGHT,
            m.color,
            mx,
            TOP - 1.0,
            m.color
        );
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
