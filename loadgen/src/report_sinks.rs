//! The HTML report's section on the sinks, drawn from the JSON report's `sinks`
//! (`sinks::report_json`): a table of every sink's counts and down times, a chart of Fulfills
//! sent per second with one line per sink, and (up to `TABLE_SINKS_MAX` sinks) the same
//! numbers second by second, the seconds a sink was down shaded.
//!
//! Shown only when the run played several sinks or took one down; a single sink's line would
//! repeat the throughput chart. Like `report`, it never panics on odd input and escapes every
//! string it takes from the JSON. It draws with `report`'s chart code; its only style is
//! `STYLE` (the line colours and the shading), which `report` adds to the page's.

use crate::report::{esc, fmt_count, fmt_num, linear_axis, no_data_chart, svg_chart, Series};
use serde_json::Value;
use std::fmt::Write as _;

/// The lines' colours, one class each, reused in turn past ten sinks.
const COLOURS: [&str; 10] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];

/// Style for this section, appended to the page's.
pub(crate) const STYLE: &str = r#"
.k0 { stroke: #2563eb; fill: #2563eb; background: #2563eb; }
.k1 { stroke: #dc2626; fill: #dc2626; background: #dc2626; }
.k2 { stroke: #0f766e; fill: #0f766e; background: #0f766e; }
.k3 { stroke: #d97706; fill: #d97706; background: #d97706; }
.k4 { stroke: #7c3aed; fill: #7c3aed; background: #7c3aed; }
.k5 { stroke: #0891b2; fill: #0891b2; background: #0891b2; }
.k6 { stroke: #be185d; fill: #be185d; background: #be185d; }
.k7 { stroke: #4d7c0f; fill: #4d7c0f; background: #4d7c0f; }
.k8 { stroke: #78716c; fill: #78716c; background: #78716c; }
.k9 { stroke: #1e3a8a; fill: #1e3a8a; background: #1e3a8a; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .82rem; margin: 6px 0 0; }
.legend .sw { display: inline-block; width: 14px; height: 3px; margin-right: 5px; vertical-align: middle; }
table.tl td.down { background: #fee2e2; color: #991b1b; }
"#;

/// The per-second table is drawn up to this many sinks (one column each).
const TABLE_SINKS_MAX: usize = 16;
/// Per-second tables with more rows than this are folded into a `<details>`.
const FOLD_ROWS: usize = 15;

/// One sink as the report has it.
struct Sink<'a> {
    name: String,
    entry: &'a Value,
    per_s: Vec<f64>,
    /// `(from_s, until_s)` on the timeline's clock; `until_s` infinite when it stayed down.
    down: Vec<(f64, f64)>,
}

fn count(v: Option<&Value>) -> String {
    v.and_then(Value::as_f64)
        .filter(|x| x.is_finite())
        .map_or_else(|| "n/a".to_owned(), fmt_count)
}

fn sinks(report: &Value) -> Vec<Sink<'_>> {
    let list = report
        .get("sinks")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    list.iter()
        .enumerate()
        .map(|(i, entry)| Sink {
            name: entry
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("sink {}", i + 1), str::to_owned),
            entry,
            per_s: entry
                .get("fulfilled_per_s")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_f64().filter(|x| x.is_finite()).unwrap_or(0.0))
                        .collect()
                })
                .unwrap_or_default(),
            down: entry
                .get("down")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|d| {
                            let from = d.get("from_s")?.as_f64()?;
                            let until = d
                                .get("until_s")
                                .and_then(Value::as_f64)
                                .unwrap_or(f64::INFINITY);
                            Some((from, until))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Appends the sinks' section to `out`, when the run played several sinks or took one down.
pub(crate) fn render(out: &mut String, report: &Value) {
    let sinks = sinks(report);
    if sinks.len() < 2 && sinks.iter().all(|s| s.down.is_empty()) {
        return;
    }
    out.push_str("<section>\n<h2>Sinks</h2>\n");
    render_counts(out, &sinks);
    let _ = writeln!(out, "<div class=\"chartwrap\">{}</div>", chart(&sinks));
    out.push_str("<div class=\"legend\">");
    for (i, s) in sinks.iter().enumerate() {
        let _ = write!(
            out,
            "<span><span class=\"sw {}\"></span>{}</span>",
            COLOURS[i % COLOURS.len()],
            esc(&s.name)
        );
    }
    out.push_str("</div>\n");
    if sinks.len() <= TABLE_SINKS_MAX {
        render_seconds(out, &sinks);
    }
    out.push_str("</section>\n");
}

fn render_counts(out: &mut String, sinks: &[Sink<'_>]) {
    let total: f64 = sinks
        .iter()
        .filter_map(|s| s.entry.get("fulfilled").and_then(Value::as_f64))
        .sum();
    out.push_str("<div class=\"tlwrap\">\n<table class=\"tl\">\n<thead><tr><th>sink</th><th>received</th><th>fulfilled</th><th>share</th><th>rejected</th><th>wrong fulfillments</th><th>down (s since start)</th></tr></thead>\n<tbody>\n");
    for s in sinks {
        let fulfilled = s.entry.get("fulfilled").and_then(Value::as_f64);
        let share = match fulfilled {
            Some(f) if total > 0.0 => format!("{}%", fmt_num(f / total * 100.0)),
            _ => "n/a".to_owned(),
        };
        let down = s
            .down
            .iter()
            .map(|&(from, until)| {
                if until.is_finite() {
                    format!("{}\u{2013}{}", fmt_num(from), fmt_num(until))
                } else {
                    format!("from {}", fmt_num(from))
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{share}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            count(s.entry.get("received")),
            count(s.entry.get("fulfilled")),
            count(s.entry.get("rejected")),
            count(s.entry.get("wrong_fulfillments")),
            if down.is_empty() { "\u{2014}".to_owned() } else { down },
        );
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

fn chart(sinks: &[Sink<'_>]) -> String {
    let title = "Fulfilled per second, by sink";
    let (x_label, y_label) = ("time since start (s)", "fulfilled / s");
    let seconds = sinks.iter().map(|s| s.per_s.len()).max().unwrap_or(0);
    if seconds == 0 {
        return no_data_chart(title, x_label, y_label);
    }
    let ymax = sinks
        .iter()
        .flat_map(|s| s.per_s.iter().copied())
        .fold(0.0, f64::max);
    let x = linear_axis(0.0, seconds as f64, x_label);
    let y = linear_axis(0.0, ymax, y_label);
    let series: Vec<Series> = sinks
        .iter()
        .enumerate()
        .map(|(i, s)| Series {
            // Named in the HTML legend below the chart, which wraps however many there are.
            name: String::new(),
            class: COLOURS[i % COLOURS.len()],
            right: false,
            points: s
                .per_s
                .iter()
                .enumerate()
                .map(|(k, &f)| {
                    let t = (k + 1) as f64;
                    let tip = format!("{} t={} s: {} fulfilled/s", s.name, t, fmt_count(f));
                    (t, f, tip)
                })
                .collect(),
        })
        .collect();
    svg_chart(title, &x, &y, None, &series)
}

/// Whether `sink` was down at any time in second `[k, k + 1)`.
fn down_in(sink: &Sink<'_>, k: usize) -> bool {
    let (start, end) = (k as f64, (k + 1) as f64);
    sink.down
        .iter()
        .any(|&(from, until)| from < end && until > start)
}

fn render_seconds(out: &mut String, sinks: &[Sink<'_>]) {
    let seconds = sinks.iter().map(|s| s.per_s.len()).max().unwrap_or(0);
    if seconds == 0 {
        return;
    }
    let fold = seconds > FOLD_ROWS;
    if fold {
        let _ = writeln!(
            out,
            "<details>\n<summary>Fulfilled per second by sink: all {seconds} seconds</summary>"
        );
    }
    out.push_str("<div class=\"tlwrap\">\n<table class=\"tl\">\n<thead><tr><th>t (s)</th>");
    for s in sinks {
        let _ = write!(out, "<th>{}</th>", esc(&s.name));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for k in 0..seconds {
        let _ = write!(out, "<tr><td>{}</td>", k + 1);
        for s in sinks {
            let n = s.per_s.get(k).copied().unwrap_or(0.0);
            if down_in(s, k) {
                let _ = write!(
                    out,
                    "<td class=\"down\" title=\"down in this second\">{}</td>",
                    fmt_count(n)
                );
            } else {
                let _ = write!(out, "<td>{}</td>", fmt_count(n));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    if fold {
        out.push_str("</details>\n");
    }
    out.push_str(
        "<p class=\"note\">Seconds count from the start of the run, as in the timeline; a \
         shaded cell is a second in which that sink was down.</p>\n",
    );
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn report(sinks: Value) -> Value {
        json!({"sinks": sinks})
    }

    #[test]
    fn one_sink_that_stayed_up_draws_nothing() {
        let mut out = String::new();
        render(
            &mut out,
            &report(json!([{"name": "bob", "fulfilled": 5, "fulfilled_per_s": [5], "down": []}])),
        );
        assert!(out.is_empty());
        render(&mut out, &json!({}));
        assert!(out.is_empty());
    }

    #[test]
    fn several_sinks_get_a_line_each_and_down_seconds_are_shaded() {
        let r = report(json!([
            {"name": "bob1", "received": 30, "fulfilled": 30, "rejected": 0,
             "wrong_fulfillments": 0, "fulfilled_per_s": [10, 10, 10], "down": []},
            {"name": "bob2", "received": 10, "fulfilled": 10, "rejected": 0,
             "wrong_fulfillments": 0, "fulfilled_per_s": [10, 0, 0],
             "down": [{"from_s": 1.02, "until_s": null}]}
        ]));
        let mut out = String::new();
        render(&mut out, &r);
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("class=\"line k0\""));
        assert!(out.contains("class=\"line k1\""));
        assert!(out.contains("bob2 t=2 s: 0 fulfilled/s"));
        assert!(out.contains("from 1.02"));
        assert!(out.contains("75%"));
        // bob2 is down in seconds 2 and 3 (t = 2, 3), not in the first.
        assert_eq!(out.matches("class=\"down\"").count(), 2);
    }

    #[test]
    fn names_are_escaped_and_odd_values_do_not_panic() {
        let r = report(json!([
            {"name": "<b>x</b>", "fulfilled_per_s": "no"},
            {"fulfilled": "many", "down": [{"from_s": "x"}, 3]},
            7
        ]));
        let mut out = String::new();
        render(&mut out, &r);
        assert!(!out.contains("<b>x"));
        assert!(out.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(out.contains("sink 2"));
        assert!(out.contains("no data"));
    }
}
