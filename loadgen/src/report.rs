//! Self-contained HTML report for one `ilp-loadgen` run.
//!
//! [`render_html`] turns the run's JSON report into one page that needs
//! nothing else to display: inline CSS, inline SVG charts, no scripts, no
//! fonts, no links to anything. Every string taken from the JSON is
//! HTML-escaped (destinations and extra config values are user-given), every
//! missing or mistyped optional field renders as "n/a", and the output is a
//! pure function of the input (no render timestamps), so the same report
//! always yields the same bytes.
//!
//! Over 800 lines because the page is one document (styles, charts, tables) whose parts
//! share escaping and layout helpers; the tests are in `report_tests.rs`.

use serde_json::Value;
use std::fmt::Write as _;

/// What a missing or unusable field renders as.
const NA: &str = "n/a";

/// Nines on the latency chart's right edge: the 99.999th percentile.
const MAX_NINES: f64 = 5.0;

/// Timelines with more rows than this are folded into a `<details>`.
const TIMELINE_FOLD_ROWS: usize = 15;

/// Charts draw a marker per point (with a hover tooltip) up to this many
/// points, and full-size ones up to `BIG_MARKERS`.
const MAX_MARKERS: usize = 400;
const BIG_MARKERS: usize = 30;

// Chart geometry, in viewBox units (the SVG scales to the page width).
const CHART_W: f64 = 900.0;
const CHART_H: f64 = 330.0;
const PAD_LEFT: f64 = 70.0;
const PAD_RIGHT: f64 = 70.0;
const PAD_TOP: f64 = 30.0;
const PAD_BOTTOM: f64 = 50.0;

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1f2937; line-height: 1.45;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 16px 40px; }
header h1 { font-size: 1.45rem; margin: 0 0 2px; overflow-wrap: anywhere; }
header .meta { color: #6b7280; font-size: .9rem; overflow-wrap: anywhere; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 14px 18px; margin: 14px 0; }
h2 { font-size: 1.05rem; margin: 0 0 10px; color: #111827; }
.cfg { display: grid; grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); gap: 4px 24px; font-size: .9rem; }
.cfg div { display: flex; gap: 10px; padding: 3px 0; border-bottom: 1px solid #f1f2f4; }
.cfg .k { color: #6b7280; min-width: 110px; }
.cfg .v { overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(165px, 1fr)); gap: 10px; }
.card { border: 1px solid #e5e7eb; border-radius: 6px; padding: 9px 12px; background: #fafbfc; }
.card.main { border-color: #bfdbfe; background: #eff6ff; }
.card .k { font-size: .74rem; color: #6b7280; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 1.3rem; font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.card .d { font-size: .8rem; color: #6b7280; overflow-wrap: anywhere; }
.note { color: #6b7280; font-size: .8rem; margin: 6px 0 0; }
.chartwrap { overflow-x: auto; }
svg.chart { width: 100%; min-width: 560px; height: auto; display: block; }
svg.chart text { font-family: inherit; font-size: 12px; fill: #4b5563; }
svg.chart .title { font-size: 14px; font-weight: 600; fill: #111827; }
svg.chart .grid { stroke: #e5e7eb; stroke-width: 1; }
svg.chart .grid.minor { stroke: #f3f4f6; }
svg.chart .axis { stroke: #9ca3af; stroke-width: 1; }
svg.chart .frame { fill: #fafbfc; stroke: #e5e7eb; }
svg.chart .nodata { font-size: 16px; fill: #9ca3af; }
svg.chart .line { fill: none; stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
.c0 { stroke: #2563eb; fill: #2563eb; }
.c1 { stroke: #dc2626; fill: #dc2626; }
svg.chart .line.c1 { stroke-width: 1.5; stroke-dasharray: 5 4; opacity: .8; }
.c2 { stroke: #0f766e; fill: #0f766e; }
svg.chart text.c1 { fill: #dc2626; }
table.tl { border-collapse: collapse; font-size: .86rem; font-variant-numeric: tabular-nums; width: 100%; }
table.tl th, table.tl td { padding: 4px 10px; text-align: right; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
table.tl th { color: #6b7280; font-weight: 600; background: #fafbfc; position: sticky; top: 0; }
table.tl tr:hover td { background: #f9fafb; }
.tlwrap { overflow-x: auto; }
details summary { cursor: pointer; color: #374151; margin-bottom: 8px; }
.warn { background: #fef3c7; border: 1px solid #fcd34d; color: #78350f; border-radius: 8px; padding: 10px 14px; margin: 14px 0; }
footer { color: #9ca3af; font-size: .78rem; text-align: center; }
"#;

/// Renders the page for one run from its JSON report.
///
/// Never panics on odd input: unknown keys are ignored (extra config keys are
/// listed), missing or mistyped ones render as "n/a".
pub(crate) fn render_html(report: &Value) -> String {
    let mut out = String::with_capacity(48 * 1024);
    let tool = text(report.get("tool")).unwrap_or_else(|| "ilp-loadgen".to_owned());
    let dest = report
        .pointer("/config/destination")
        .and_then(Value::as_str);

    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = write!(out, "<title>{} report", esc(&tool));
    if let Some(d) = dest {
        let _ = write!(out, " \u{2014} {}", esc(d));
    }
    out.push_str("</title>\n<style>");
    out.push_str(STYLE);
    out.push_str(crate::report_sinks::STYLE);
    out.push_str("</style>\n</head>\n<body>\n<main>\n");

    render_header(&mut out, report, &tool);
    if report.get("ended_early").and_then(Value::as_bool) == Some(true) {
        out.push_str(
            "<p class=\"warn\">This run ended early: it stopped before its configured duration.</p>\n",
        );
    }
    render_config(&mut out, report);
    render_headline(&mut out, report);

    out.push_str("<section>\n<h2>Throughput</h2>\n");
    let _ = writeln!(
        out,
        "<div class=\"chartwrap\">{}</div>",
        throughput_chart(report)
    );
    out.push_str("</section>\n");

    out.push_str("<section>\n<h2>Latency percentiles</h2>\n");
    let _ = writeln!(
        out,
        "<div class=\"chartwrap\">{}</div>",
        latency_chart(report)
    );
    out.push_str(
        "<p class=\"note\">x axis on a nines scale (\u{2212}log<sub>10</sub>(1 \u{2212} p)); \
         p100 (the maximum) and anything past p99.999 is drawn at the right edge.</p>\n",
    );
    out.push_str("</section>\n");

    crate::report_sinks::render(&mut out, report);
    render_timeline_table(&mut out, report);

    let _ = writeln!(
        out,
        "<footer>{} {}</footer>",
        esc(&tool),
        text(report.get("version")).map_or_else(String::new, |v| esc(&v)),
    );
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn render_header(out: &mut String, report: &Value, tool: &str) {
    let dest = text(report.pointer("/config/destination")).unwrap_or_else(|| NA.to_owned());
    let _ = writeln!(out, "<header>\n<h1>Load test \u{2192} {}</h1>", esc(&dest));
    let _ = writeln!(
        out,
        "<div class=\"meta\">{} {} \u{00b7} started {} \u{00b7} router {}</div>\n</header>",
        esc(tool),
        text(report.get("version")).map_or_else(|| NA.to_owned(), |v| esc(&v)),
        text(report.get("started_at")).map_or_else(|| NA.to_owned(), |v| esc(&v)),
        text(report.pointer("/config/router")).map_or_else(|| NA.to_owned(), |v| esc(&v)),
    );
}

/// Config keys shown first, in this order, with their labels and units.
const CONFIG_KEYS: &[(&str, &str, &str)] = &[
    ("router", "Router", ""),
    ("transport", "Transport", ""),
    ("tls", "TLS", ""),
    ("destination", "Destination", ""),
    ("mode", "Mode", ""),
    ("rate", "Rate", " packets/s"),
    ("window", "Window", " in flight"),
    ("connections", "Connections", ""),
    ("duration_s", "Duration", " s"),
    ("amount", "Amount", ""),
    ("data_bytes", "Data", " bytes"),
    ("expiry_ms", "Expiry", " ms"),
    ("direct", "Direct", ""),
    ("cpu_list", "CPUs", ""),
];

fn render_config(out: &mut String, report: &Value) {
    let cfg = report.get("config");
    out.push_str("<section>\n<h2>Configuration</h2>\n<div class=\"cfg\">\n");
    for &(key, label, unit) in CONFIG_KEYS {
        let v = cfg.and_then(|c| c.get(key));
        let mut shown = display_value(v);
        if shown != NA && v.is_some_and(Value::is_number) {
            shown.push_str(unit);
        }
        if key == "duration_s" {
            if let Some(measured) = num(report.get("duration_s")) {
                let _ = write!(shown, " (ran {} s)", fmt_num(measured));
            }
        }
        let _ = writeln!(
            out,
            "<div><span class=\"k\">{label}</span><span class=\"v\">{shown}</span></div>"
        );
    }
    if let Some(obj) = cfg.and_then(Value::as_object) {
        for (key, v) in obj {
            if v.is_null() || CONFIG_KEYS.iter().any(|&(k, _, _)| k == key) {
                continue;
            }
            let _ = writeln!(
                out,
                "<div><span class=\"k\">{}</span><span class=\"v\">{}</span></div>",
                esc(&humanize(key)),
                display_value(Some(v))
            );
        }
    }
    out.push_str("</div>\n</section>\n");
}

fn card(out: &mut String, class: &str, key: &str, value: &str, detail: &str) {
    let _ = write!(
        out,
        "<div class=\"card{class}\"><div class=\"k\">{key}</div><div class=\"v\">{value}</div>"
    );
    if !detail.is_empty() {
        let _ = write!(out, "<div class=\"d\">{detail}</div>");
    }
    out.push_str("</div>\n");
}

fn render_headline(out: &mut String, report: &Value) {
    let sent = num(report.get("sent"));
    let fulfilled = num(report.get("fulfilled"));
    out.push_str("<section>\n<h2>Results</h2>\n<div class=\"cards\">\n");

    let pps = num(report.get("pps")).map_or_else(|| NA.to_owned(), fmt_count);
    card(out, " main", "Throughput", &pps, "fulfilled packets / s");

    let share = match (fulfilled, sent) {
        (Some(f), Some(s)) if s > 0.0 => format!("{}% of sent", fmt_pct(f / s * 100.0)),
        _ => String::new(),
    };
    card(out, " main", "Fulfilled", &opt_count(fulfilled), &share);
    card(out, "", "Sent", &opt_count(sent), "");

    let (rejected_total, by_code) = rejected_breakdown(report.get("rejected"));
    let codes = by_code
        .iter()
        .map(|(code, n)| format!("{} {}", esc(code), fmt_count(*n)))
        .collect::<Vec<_>>()
        .join(" \u{00b7} ");
    card(out, "", "Rejected", &opt_count(rejected_total), &codes);
    card(
        out,
        "",
        "Timeouts",
        &opt_count(num(report.get("timeouts"))),
        "",
    );
    let (_, by_status) = rejected_breakdown(report.get("http_errors"));
    let statuses = by_status
        .iter()
        .map(|(status, n)| format!("HTTP {} {}", esc(status), fmt_count(*n)))
        .collect::<Vec<_>>()
        .join(" \u{00b7} ");
    card(
        out,
        "",
        "Errors",
        &opt_count(num(report.get("errors"))),
        &statuses,
    );
    if let Some(bad) = num(report.get("bad_fulfillments")) {
        card(
            out,
            "",
            "Bad fulfillments",
            &fmt_count(bad),
            "wrong preimage",
        );
    }
    if let Some(sunk) = num(report.get("sink_received")).filter(|&n| n > 0.0) {
        card(
            out,
            "",
            "Sink received",
            &fmt_count(sunk),
            "packets at the sink",
        );
    }

    let lat = |k: &str| num(report.pointer(&format!("/latency_us/{k}")));
    let mean = lat("mean").map_or_else(String::new, |m| format!("mean {}", fmt_us(m)));
    card(out, " main", "Latency p50", &opt_us(lat("p50")), &mean);
    let p90 = lat("p90").map_or_else(String::new, |m| format!("p90 {}", fmt_us(m)));
    card(out, "", "Latency p99", &opt_us(lat("p99")), &p90);
    card(out, "", "Latency p99.9", &opt_us(lat("p999")), "");
    card(out, "", "Latency max", &opt_us(lat("max")), "");
    render_send_lateness(out, report);

    let cpu_pp = num(report.get("router_cpu_us_per_packet"));
    let cpu_s = num(report.get("router_cpu_s"));
    if cpu_pp.is_some() || cpu_s.is_some() {
        let detail = cpu_s.map_or_else(String::new, |s| format!("{} s total", fmt_num(s)));
        card(
            out,
            "",
            "Router CPU",
            &opt_us(cpu_pp),
            &format!("per packet \u{00b7} {detail}"),
        );
    }
    out.push_str("</div>\n</section>\n");
}

/// The sender's own lateness (open loop: handed to the socket minus intended time), beside
/// the latency it is part of; a closed-loop run has no intended times.
fn render_send_lateness(out: &mut String, report: &Value) {
    let late = |k: &str| num(report.pointer(&format!("/send_lateness_us/{k}")));
    if report.get("send_lateness_us").is_some_and(Value::is_object) {
        let detail = format!(
            "p99 {} \u{00b7} max {} \u{00b7} sender's own",
            opt_us(late("p99")),
            opt_us(late("max"))
        );
        card(out, "", "Send lateness p50", &opt_us(late("p50")), &detail);
    } else if report.pointer("/config/mode").and_then(Value::as_str) == Some("closed-loop") {
        card(
            out,
            "",
            "Send lateness",
            NA,
            "closed loop: no intended send times",
        );
    }
}

/// Total rejections and the per-code counts, largest first (ties by code).
/// Accepts either an object of code → count or a plain number.
pub(crate) fn rejected_breakdown(v: Option<&Value>) -> (Option<f64>, Vec<(String, f64)>) {
    match v {
        Some(Value::Object(map)) => {
            let mut codes: Vec<(String, f64)> = map
                .iter()
                .map(|(k, v)| (k.clone(), num(Some(v)).unwrap_or(0.0)))
                .collect();
            codes.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            (Some(codes.iter().map(|c| c.1).sum()), codes)
        }
        other => (num(other), Vec::new()),
    }
}

fn render_timeline_table(out: &mut String, report: &Value) {
    let rows = report
        .get("timeline")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    out.push_str("<section>\n<h2>Per-second timeline</h2>\n");
    if rows.is_empty() {
        out.push_str("<p class=\"note\">No timeline data.</p>\n</section>\n");
        return;
    }
    let fold = rows.len() > TIMELINE_FOLD_ROWS;
    if fold {
        let _ = writeln!(
            out,
            "<details>\n<summary>Show all {} seconds</summary>",
            rows.len()
        );
    }
    out.push_str("<div class=\"tlwrap\">\n<table class=\"tl\">\n<thead><tr><th>t (s)</th><th>sent</th><th>fulfilled</th><th>rejected</th><th>p50 (\u{00b5}s)</th><th>p99 (\u{00b5}s)</th></tr></thead>\n<tbody>\n");
    for (i, row) in rows.iter().enumerate() {
        let t = num(row.get("t")).unwrap_or((i + 1) as f64);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fmt_num(t),
            opt_count(num(row.get("sent"))),
            opt_count(num(row.get("fulfilled"))),
            opt_count(rejected_breakdown(row.get("rejected")).0),
            num(row.get("p50_us")).map_or_else(|| NA.to_owned(), fmt_num),
            num(row.get("p99_us")).map_or_else(|| NA.to_owned(), fmt_num),
        );
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    if fold {
        out.push_str("</details>\n");
    }
    out.push_str("</section>\n");
}

// ---------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------

/// One axis, in plot space (log axes hold log10 of the values).
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    min: f64,
    max: f64,
    /// Position in plot space, label, and whether it is a minor tick.
    ticks: Vec<(f64, String, bool)>,
    label: String,
}

/// One line on a chart; `y` in plot space of its axis, `tip` for hovering. A line with an
/// empty `name` has no entry in the chart's legend.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) class: &'static str,
    /// Plotted against the right-hand axis instead of the left one.
    pub(crate) right: bool,
    pub(crate) points: Vec<(f64, f64, String)>,
}

fn throughput_chart(report: &Value) -> String {
    let rows = report
        .get("timeline")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let title = "Fulfilled packets per second";
    if rows.is_empty() {
        return no_data_chart(title, "time since start (s)", "fulfilled / s");
    }
    let mut ok = Vec::with_capacity(rows.len());
    let mut rej = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let t = num(row.get("t")).unwrap_or((i + 1) as f64);
        if let Some(f) = num(row.get("fulfilled")) {
            ok.push((
                t,
                f,
                format!("t={} s: {} fulfilled/s", fmt_num(t), fmt_count(f)),
            ));
        }
        let r = rejected_breakdown(row.get("rejected")).0.unwrap_or(0.0);
        rej.push((
            t,
            r,
            format!("t={} s: {} rejected/s", fmt_num(t), fmt_count(r)),
        ));
    }
    if ok.is_empty() && rej.iter().all(|p| p.1 == 0.0) {
        return no_data_chart(title, "time since start (s)", "fulfilled / s");
    }
    let xs = ok.iter().chain(rej.iter()).map(|p| p.0);
    let (tmin, tmax) = min_max(xs).unwrap_or((0.0, 1.0));
    let x = linear_axis(tmin.min(0.0), tmax, "time since start (s)");
    let ymax = ok.iter().map(|p| p.1).fold(0.0, f64::max);
    let y = linear_axis(0.0, ymax, "fulfilled / s");
    let mut series = vec![Series {
        name: "fulfilled/s".to_owned(),
        class: "c0",
        right: false,
        points: ok,
    }];
    let rej_max = rej.iter().map(|p| p.1).fold(0.0, f64::max);
    let y2 = if rej_max > 0.0 {
        series.push(Series {
            name: "rejected/s (right axis)".to_owned(),
            class: "c1",
            right: true,
            points: rej,
        });
        Some(linear_axis(0.0, rej_max, "rejected / s"))
    } else {
        None
    };
    svg_chart(title, &x, &y, y2.as_ref(), &series)
}

/// The latency curve's points: `latency_curve` if usable, else the
/// percentiles in `latency_us`.
fn latency_points(report: &Value) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = report
        .get("latency_curve")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|pair| {
                    let pair = pair.as_array()?;
                    Some((num(pair.first())?, num(pair.get(1))?))
                })
                .collect()
        })
        .unwrap_or_default();
    if pts.is_empty() {
        for (key, p) in [
            ("p50", 50.0),
            ("p90", 90.0),
            ("p99", 99.0),
            ("p999", 99.9),
            ("max", 100.0),
        ] {
            if let Some(v) = num(report.pointer(&format!("/latency_us/{key}"))) {
                pts.push((p, v));
            }
        }
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn latency_chart(report: &Value) -> String {
    let title = "Latency by percentile";
    let y_label = "latency (\u{00b5}s)";
    let x_label = "percentile";
    let pts = latency_points(report);
    let Some((lo, hi)) = min_max(pts.iter().map(|p| p.1)) else {
        return no_data_chart(title, x_label, y_label);
    };
    let log = lo > 0.0 && hi / lo >= 10.0;
    let y = if log {
        log_axis(lo, hi, y_label)
    } else {
        linear_axis(0.0, hi, y_label)
    };
    let x = nines_axis(x_label);
    let points = pts
        .iter()
        .map(|&(p, v)| {
            let yv = if log { v.log10() } else { v };
            let tip = if p >= 100.0 {
                format!("max: {}", fmt_us(v))
            } else {
                format!("p{}: {}", fmt_pct(p), fmt_us(v))
            };
            (percentile_to_x(p), yv, tip)
        })
        .collect();
    let series = [Series {
        name: "latency".to_owned(),
        class: "c2",
        right: false,
        points,
    }];
    svg_chart(title, &x, &y, None, &series)
}

/// Maps a percentile (0..=100) to the latency chart's x: the number of
/// nines, −log10(1 − p/100), clamped to `0..=MAX_NINES`. So 0 → 0, 90 → 1,
/// 99 → 2, 99.9 → 3, and 100 → `MAX_NINES`. Monotonic non-decreasing;
/// NaN maps to 0.
pub(crate) fn percentile_to_x(p: f64) -> f64 {
    if p.is_nan() || p <= 0.0 {
        return 0.0;
    }
    if p >= 100.0 {
        return MAX_NINES;
    }
    let x = -(1.0 - p / 100.0).log10();
    x.clamp(0.0, MAX_NINES)
}

fn nines_axis(label: &str) -> Axis {
    let names = ["0", "90", "99", "99.9", "99.99", "99.999"];
    Axis {
        min: 0.0,
        max: MAX_NINES,
        ticks: names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as f64, (*n).to_owned(), false))
            .collect(),
        label: label.to_owned(),
    }
}

/// A "nice" step (1, 2 or 5 × 10^k) giving about `target` intervals.
pub(crate) fn nice_step(range: f64, target: f64) -> f64 {
    let raw = range / target;
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A linear axis covering `lo..=hi`, widened to whole ticks.
pub(crate) fn linear_axis(lo: f64, hi: f64, label: &str) -> Axis {
    let (mut lo, mut hi) = (lo, hi);
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi <= lo {
        hi = if lo == 0.0 { 1.0 } else { lo + lo.abs() };
    }
    let step = nice_step(hi - lo, 6.0);
    let min = (lo / step).floor() * step;
    let max = (hi / step).ceil() * step;
    let n = ((max - min) / step).round() as i64;
    let ticks = (0..=n)
        .map(|i| {
            let v = min + i as f64 * step;
            (v, fmt_tick(v), false)
        })
        .collect();
    Axis {
        min,
        max,
        ticks,
        label: label.to_owned(),
    }
}

/// A log10 axis covering `lo..=hi` (both > 0), widened to whole decades;
/// 2× and 5× ticks are added as minor ticks when there are few decades.
pub(crate) fn log_axis(lo: f64, hi: f64, label: &str) -> Axis {
    let lo_d = lo.max(f64::MIN_POSITIVE).log10().floor();
    let mut hi_d = hi.max(f64::MIN_POSITIVE).log10().ceil();
    if hi_d <= lo_d {
        hi_d = lo_d + 1.0;
    }
    let decades = (hi_d - lo_d).round() as i64;
    let mut ticks = Vec::new();
    for d in 0..=decades {
        let e = lo_d + d as f64;
        ticks.push((e, fmt_tick(10f64.powf(e)), false));
        if decades <= 3 && d < decades {
            for m in [2.0f64, 5.0] {
                ticks.push((e + m.log10(), fmt_tick(m * 10f64.powf(e)), true));
            }
        }
    }
    Axis {
        min: lo_d,
        max: hi_d,
        ticks,
        label: label.to_owned(),
    }
}

fn sx(x: &Axis, v: f64) -> f64 {
    let span = (x.max - x.min).max(f64::MIN_POSITIVE);
    PAD_LEFT + (v - x.min) / span * (CHART_W - PAD_LEFT - PAD_RIGHT)
}

fn sy(y: &Axis, v: f64) -> f64 {
    let span = (y.max - y.min).max(f64::MIN_POSITIVE);
    CHART_H - PAD_BOTTOM - (v - y.min) / span * (CHART_H - PAD_TOP - PAD_BOTTOM)
}

fn svg_open(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let _ = writeln!(
        out,
        "<text class=\"title\" x=\"{PAD_LEFT}\" y=\"18\">{}</text>",
        esc(title)
    );
}

fn axis_labels(out: &mut String, x_label: &str, y_label: &str) {
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        (PAD_LEFT + CHART_W - PAD_RIGHT) / 2.0,
        CHART_H - 8.0,
        esc(x_label)
    );
    let cy = (PAD_TOP + CHART_H - PAD_BOTTOM) / 2.0;
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{cy:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {cy:.1})\">{}</text>",
        esc(y_label)
    );
}

/// An empty chart frame saying "no data", same size as a real chart.
pub(crate) fn no_data_chart(title: &str, x_label: &str, y_label: &str) -> String {
    let mut out = String::new();
    svg_open(&mut out, title);
    let _ = writeln!(
        out,
        "<rect class=\"frame\" x=\"{PAD_LEFT}\" y=\"{PAD_TOP}\" width=\"{:.1}\" height=\"{:.1}\"/>",
        CHART_W - PAD_LEFT - PAD_RIGHT,
        CHART_H - PAD_TOP - PAD_BOTTOM
    );
    let _ = writeln!(
        out,
        "<text class=\"nodata\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text>",
        (PAD_LEFT + CHART_W - PAD_RIGHT) / 2.0,
        (PAD_TOP + CHART_H - PAD_BOTTOM) / 2.0
    );
    axis_labels(&mut out, x_label, y_label);
    out.push_str("</svg>\n");
    out
}

pub(crate) fn svg_chart(
    title: &str,
    x: &Axis,
    y: &Axis,
    y2: Option<&Axis>,
    series: &[Series],
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    svg_open(&mut out, title);
    let (left, right) = (PAD_LEFT, CHART_W - PAD_RIGHT);
    let (top, bottom) = (PAD_TOP, CHART_H - PAD_BOTTOM);

    // Horizontal grid and left tick labels.
    for (v, label, minor) in &y.ticks {
        let py = sy(y, *v);
        let class = if *minor { "grid minor" } else { "grid" };
        let _ = writeln!(
            out,
            "<line class=\"{class}\" x1=\"{left}\" x2=\"{right}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>"
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            py + 4.0,
            esc(label)
        );
    }
    // Right axis tick labels (no grid of its own, to keep the chart calm).
    if let Some(y2) = y2 {
        for (v, label, _) in &y2.ticks {
            let py = sy(y2, *v);
            let _ = writeln!(
                out,
                "<text class=\"c1\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                right + 6.0,
                py + 4.0,
                esc(label)
            );
        }
        let cy = (top + bottom) / 2.0;
        let rx = CHART_W - 12.0;
        let _ = writeln!(
            out,
            "<text class=\"c1\" x=\"{rx:.1}\" y=\"{cy:.1}\" text-anchor=\"middle\" transform=\"rotate(90 {rx:.1} {cy:.1})\">{}</text>",
            esc(&y2.label)
        );
    }
    // Vertical ticks and bottom labels.
    for (v, label, _) in &x.ticks {
        let px = sx(x, *v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{top}\" y2=\"{bottom}\"/>"
        );
        let _ = writeln!(
            out,
            "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 18.0,
            esc(label)
        );
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{left}\" x2=\"{right}\" y1=\"{bottom}\" y2=\"{bottom}\"/>"
    );
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{bottom}\"/>"
    );
    axis_labels(&mut out, &x.label, &y.label);

    for s in series {
        let axis = match (s.right, y2) {
            (true, Some(a)) => a,
            _ => y,
        };
        let coords: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|(px, py, _)| (sx(x, *px), sy(axis, *py)))
            .collect();
        if coords.len() > 1 {
            let pts = coords
                .iter()
                .map(|(a, b)| format!("{a:.1},{b:.1}"))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                out,
                "<polyline class=\"line {}\" points=\"{pts}\"/>",
                s.class
            );
        }
        if s.points.len() <= MAX_MARKERS {
            let r = if s.points.len() <= BIG_MARKERS {
                3.0
            } else {
                1.8
            };
            for ((cx, cy), (_, _, tip)) in coords.iter().zip(&s.points) {
                let _ = writeln!(
                    out,
                    "<circle class=\"{}\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{r}\"><title>{}</title></circle>",
                    s.class,
                    esc(tip)
                );
            }
        }
    }

    // Legend, top right, only when there is more than one line.
    if series.len() > 1 {
        let mut lx = right;
        for s in series.iter().rev().filter(|s| !s.name.is_empty()) {
            let w = 28.0 + 6.5 * s.name.chars().count() as f64;
            lx -= w;
            let _ = writeln!(
                out,
                "<line class=\"line {}\" x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"14\" y2=\"14\"/><text x=\"{:.1}\" y=\"18\">{}</text>",
                s.class,
                lx + 16.0,
                lx + 21.0,
                esc(&s.name)
            );
            lx -= 12.0;
        }
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------------------------
// Values and formatting
// ---------------------------------------------------------------------------

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A finite number, if `v` is one.
fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|x| x.is_finite())
}

/// A string field (unescaped), or a number/bool shown as text.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Any JSON value as escaped HTML text; null or missing is "n/a".
fn display_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => NA.to_owned(),
        Some(Value::String(s)) => esc(s),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => fmt_num(x),
            _ => esc(&n.to_string()),
        },
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(Value::Array(a)) if a.is_empty() => "none".to_owned(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| display_value(Some(x)))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other @ Value::Object(_)) => esc(&other.to_string()),
    }
}

/// A config key as a label: "sink_delay_ms" → "Sink delay ms".
fn humanize(key: &str) -> String {
    let spaced = key.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

/// Rounds to an integer and groups thousands: 1234567.4 → "1,234,567".
pub(crate) fn fmt_count(x: f64) -> String {
    let r = x.round();
    let digits = format!("{:.0}", r.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if r < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A readable number: grouped integer from 1000 up, else up to three
/// significant decimals with trailing zeros dropped.
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        return fmt_count(x);
    }
    let s = if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    trim_zeros(&s)
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" {
            "0".to_owned()
        } else {
            t.to_owned()
        }
    } else {
        s.to_owned()
    }
}

/// A percentage with enough decimals to tell 99.95 from 100.
fn fmt_pct(x: f64) -> String {
    trim_zeros(&format!("{x:.3}"))
}

fn fmt_us(x: f64) -> String {
    format!("{} \u{00b5}s", fmt_num(x))
}

fn opt_count(x: Option<f64>) -> String {
    x.map_or_else(|| NA.to_owned(), fmt_count)
}

fn opt_us(x: Option<f64>) -> String {
    x.map_or_else(|| NA.to_owned(), fmt_us)
}

/// Short tick labels: 120000 → "120k", 2500000 → "2.5M", 0.5 → "0.5".
pub(crate) fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{}{suffix}", trim_zeros(&format!("{scaled:.2}")))
}

fn min_max(it: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    it.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod test;
