//! Tests of the HTML report.

use super::*;
use serde_json::json;

fn full() -> Value {
    json!({
        "tool": "ilp-loadgen", "version": "0.1.0",
        "started_at": "2026-11-23T01:45:00Z",
        "config": {"router": "ws://127.0.0.1:7768", "destination": "g.router.bob",
            "duration_s": 10.0, "rate": null, "window": 512, "connections": 2, "amount": 1,
            "data_bytes": 64, "expiry_ms": 30000, "direct": false, "mode": "closed-loop",
            "cpu_list": [1], "extra_note": "extra value", "skipped_key": null},
        "sent": 1_234_567, "fulfilled": 1_234_000, "rejected": {"T04": 12, "F02": 3},
        "timeouts": 5, "errors": 0, "duration_s": 10.02, "pps": 123_150.0,
        "latency_us": {"p50": 210.0, "p90": 350.0, "p99": 800.0, "p999": 1500.0,
            "max": 4200.0, "mean": 240.5},
        "latency_curve": [[0.0, 12.0], [50.0, 210.0], [90.0, 350.0], [99.0, 800.0],
            [99.9, 1500.0], [99.99, 2500.0], [100.0, 4200.0]],
        "timeline": [
            {"t": 1, "sent": 120_000, "fulfilled": 119_800, "rejected": 10, "p50_us": 200.0, "p99_us": 700.0},
            {"t": 2, "sent": 121_000, "fulfilled": 120_900, "rejected": 0, "p50_us": 205.0, "p99_us": 720.0}
        ],
        "router_cpu_s": 4.2, "router_cpu_us_per_packet": 0.34
    })
}

#[test]
fn full_report_has_headline_numbers_and_two_charts() {
    let html = render_html(&full());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for needle in [
        "123,150",
        "1,234,000",
        "1,234,567",
        "T04 12",
        "F02 3",
        "99.954% of sent",
        "210 \u{b5}s",
        "800 \u{b5}s",
        "1,500 \u{b5}s",
        "4,200 \u{b5}s",
        "0.34 \u{b5}s",
        "ws://127.0.0.1:7768",
        "g.router.bob",
        "closed-loop",
        "512 in flight",
        "10 s (ran 10.02 s)",
        "Extra note",
        "extra value",
        "99.999",
        "rejected/s",
    ] {
        assert!(html.contains(needle), "missing {needle:?}");
    }
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(!html.contains("no data"));
    assert!(!html.contains("ended early"));
    assert!(!html.contains("Skipped key"));
    // Self-contained: nothing fetched from anywhere.
    for bad in ["<script", "<link", "src=", "http://", "https://", "url("] {
        assert!(!html.contains(bad), "found {bad:?}");
    }
}

#[test]
fn strings_from_json_are_escaped() {
    let mut r = full();
    r["config"]["destination"] = json!("g.x<script>alert('hi')</script>&\"");
    r["config"]["router"] = json!("<b>r</b>");
    r["config"]["<evil>"] = json!("<i>x</i>");
    r["rejected"] = json!({"<T99>": 1});
    r["started_at"] = json!("<now>");
    let html = render_html(&r);
    assert!(!html.contains("<script"));
    assert!(!html.contains("<b>"));
    assert!(!html.contains("<evil>"));
    assert!(!html.contains("<i>"));
    assert!(!html.contains("<T99>"));
    assert!(!html.contains("<now>"));
    assert!(html.contains("g.x&lt;script&gt;alert(&#39;hi&#39;)&lt;/script&gt;&amp;&quot;"));
    assert!(html.contains("&lt;T99&gt; 1"));
    assert!(html.contains("&lt;evil&gt;"));
}

#[test]
fn minimal_reports_render_without_panic() {
    for r in [
        json!({}),
        Value::Null,
        json!([1, 2]),
        json!({"sent": 10}),
        json!({"config": null, "latency_us": null, "timeline": null, "rejected": null}),
        json!({"config": {"rate": "fast", "window": [1, {"a": 2}]}, "sent": "many",
               "latency_curve": [[1], "x", [50, "y"], null, [90.0, 5.0]],
               "timeline": [{}, 3, {"t": "x", "rejected": {"T04": 1}}],
               "rejected": 7, "pps": -1.0}),
    ] {
        let html = render_html(&r);
        assert!(html.contains("n/a"), "{r}");
        assert_eq!(html.matches("<svg").count(), 2, "{r}");
        assert!(!html.contains("Router CPU"), "{r}");
    }
}

#[test]
fn http_transport_and_statuses_render() {
    let mut r = full();
    r["config"]["transport"] = json!("http");
    r["errors"] = json!(7);
    r["http_errors"] = json!({"401": 5, "503": 2});
    let html = render_html(&r);
    assert!(html.contains("<span class=\"k\">Transport</span><span class=\"v\">http</span>"));
    assert!(html.contains("HTTP 401 5"), "{html}");
    assert!(html.contains("HTTP 503 2"));
}

#[test]
fn rate_and_router_cpu_render_when_present() {
    let mut r = full();
    r["config"]["rate"] = json!(50_000);
    r["config"]["mode"] = json!("open-loop");
    let html = render_html(&r);
    assert!(html.contains("50,000 packets/s"));
    assert!(html.contains("Router CPU"));
    assert!(html.contains("4.2 s total"));
    r["ended_early"] = json!(true);
    r["bad_fulfillments"] = json!(2);
    let html = render_html(&r);
    assert!(html.contains("ended early"));
    assert!(html.contains("Bad fulfillments"));
}

#[test]
fn send_lateness_renders_in_open_loop_and_says_why_not_in_closed_loop() {
    let mut r = full();
    let html = render_html(&r);
    assert!(html.contains("Send lateness"));
    assert!(html.contains("closed loop: no intended send times"));
    r["config"]["mode"] = json!("open-loop");
    r["send_lateness_us"] = json!({"p50": 1.25, "p99": 4.5, "p999": 9.0, "max": 61.0});
    let html = render_html(&r);
    assert!(html.contains("Send lateness p50"));
    assert!(html.contains("1.25 \u{b5}s"), "{html}");
    assert!(html.contains("p99 4.5 \u{b5}s"));
    assert!(html.contains("max 61 \u{b5}s"));
    assert!(!html.contains("closed loop: no intended send times"));
    // Nothing sent: the percentiles are null.
    r["send_lateness_us"] = json!({"p50": null, "p99": null, "max": null});
    assert!(render_html(&r).contains("Send lateness p50"));
}

#[test]
fn empty_timeline_renders_no_data_chart() {
    let mut r = full();
    r["timeline"] = json!([]);
    let html = render_html(&r);
    assert_eq!(html.matches("<svg").count(), 2);
    assert_eq!(html.matches(">no data</text>").count(), 1);
    assert!(html.contains("No timeline data."));

    let html = render_html(&json!({}));
    assert_eq!(html.matches(">no data</text>").count(), 2);
}

#[test]
fn latency_falls_back_to_summary_percentiles() {
    let mut r = full();
    r.as_object_mut().unwrap().remove("latency_curve");
    let html = render_html(&r);
    assert!(!html.contains("no data"));
    assert!(html.contains("p99.9: 1,500 \u{b5}s"));
    assert!(html.contains("max: 4,200 \u{b5}s"));
}

#[test]
fn long_timeline_is_collapsible() {
    let mut r = full();
    r["timeline"] = (1..=60)
        .map(|t| json!({"t": t, "sent": 100, "fulfilled": 99, "rejected": 0}))
        .collect();
    let html = render_html(&r);
    assert!(html.contains("<details>"));
    assert!(html.contains("Show all 60 seconds"));
    // No rejections anywhere: the rejected line and its axis are left out.
    assert!(!html.contains("rejected/s"));
    assert!(!render_html(&full()).contains("<details>"));
}

#[test]
fn percentile_to_x_is_monotonic_and_hits_the_nines() {
    let mut prev = f64::NEG_INFINITY;
    for i in -1000..=101_000 {
        let p = f64::from(i) / 1000.0;
        let x = percentile_to_x(p);
        assert!(x >= prev, "not monotonic at p={p}: {x} < {prev}");
        assert!((0.0..=MAX_NINES).contains(&x));
        prev = x;
    }
    for (p, want) in [
        (0.0, 0.0),
        (90.0, 1.0),
        (99.0, 2.0),
        (99.9, 3.0),
        (99.99, 4.0),
        (99.999, 5.0),
        (100.0, 5.0),
        (-3.0, 0.0),
        (250.0, 5.0),
    ] {
        assert!((percentile_to_x(p) - want).abs() < 1e-6, "p={p}");
    }
    assert_eq!(percentile_to_x(f64::NAN), 0.0);
}

#[test]
fn output_is_deterministic() {
    assert_eq!(render_html(&full()), render_html(&full()));
}

#[test]
fn formatting_helpers() {
    assert_eq!(fmt_count(1_234_567.4), "1,234,567");
    assert_eq!(fmt_count(-1234.0), "-1,234");
    assert_eq!(fmt_count(0.0), "0");
    assert_eq!(fmt_count(999.0), "999");
    assert_eq!(fmt_num(0.34), "0.34");
    assert_eq!(fmt_num(240.5), "240.5");
    assert_eq!(fmt_num(10.0), "10");
    assert_eq!(fmt_num(-0.0001), "0");
    assert_eq!(fmt_tick(120_000.0), "120k");
    assert_eq!(fmt_tick(2_500_000.0), "2.5M");
    assert_eq!(fmt_tick(0.5), "0.5");
    assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

#[test]
fn axes_cover_their_data() {
    let a = linear_axis(0.0, 123_456.0, "y");
    assert_eq!(a.min, 0.0);
    assert!(a.max >= 123_456.0);
    assert!(a.ticks.len() >= 3 && a.ticks.len() <= 12);
    let flat = linear_axis(5.0, 5.0, "y");
    assert!(flat.max > flat.min);
    let l = log_axis(12.0, 4200.0, "y");
    assert_eq!((l.min, l.max), (1.0, 4.0));
    let labels: Vec<&str> = l.ticks.iter().map(|t| t.1.as_str()).collect();
    assert!(labels.contains(&"10") && labels.contains(&"1k") && labels.contains(&"10k"));
    assert_eq!(nice_step(0.0, 5.0), 1.0);
    assert_eq!(nice_step(100.0, 5.0), 20.0);
}
