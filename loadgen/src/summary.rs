//! The end of a run on paper: `report_json` assembles the JSON report (the merged counters
//! and histograms, the sender's own send lateness in open loop, the command line, whether the
//! run ended early, the CPU time of the connector, of the relay and of this process, the
//! per-sink counts of `sinks::report_json`)
//! and `print_summary` prints its few lines on stdout (a line per sink when there are
//! several, or one went down). `--json` writes the same object; `report::render_html` draws
//! it.

use crate::stats::Stats;
use serde_json::{json, Value};

/// CPU time over the send window, in seconds, where it was measured.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cpu {
    /// The connector's (`--router-pid`, when given and readable).
    pub(crate) router_s: Option<f64>,
    /// The relay thread's (`--relay-cpu`).
    pub(crate) relay_s: Option<f64>,
    /// Of which in passes that moved bytes (the rest: spinning with nothing to do).
    pub(crate) relay_busy_s: Option<f64>,
    /// This process's, the relay's excluded.
    pub(crate) own_s: Option<f64>,
}

/// The JSON report of a run of `duration_s` seconds; `config` is the command line
/// (`Cli::config_json`), `cpu` what the connector, the relay and this process spent;
/// `sinks` the per-sink section, when this process played the sinks.
pub(crate) fn report_json(
    total: &Stats,
    duration_s: f64,
    config: Value,
    ended_early: bool,
    cpu: Cpu,
    sinks: Option<Value>,
) -> Value {
    let mut report = total.to_json(duration_s);
    let open_loop = config["mode"] == "open-loop";
    let object = report.as_object_mut().expect("an object");
    // Only the open loop has intended send times to be late for.
    if open_loop {
        object.insert("send_lateness_us".into(), total.send_lateness_json());
    }
    object.insert("tool".into(), json!("ilp-loadgen"));
    object.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    object.insert("config".into(), config);
    object.insert("ended_early".into(), json!(ended_early));
    if let Some(sinks) = sinks {
        object.insert("sinks".into(), sinks);
    }
    // The harness's own cost (`loadgen`): this process's CPU over the send window per
    // Fulfill (a round trip: in `both` it sent, forwarded nothing, answered as the sink and
    // read the answer).
    for (name, seconds) in [
        ("router", cpu.router_s),
        ("relay", cpu.relay_s),
        ("relay_busy", cpu.relay_busy_s),
        ("loadgen", cpu.own_s),
    ] {
        let Some(seconds) = seconds else { continue };
        object.insert(format!("{name}_cpu_s"), json!(seconds));
        if total.fulfilled > 0 {
            object.insert(
                format!("{name}_cpu_us_per_packet"),
                json!(seconds * 1e6 / total.fulfilled as f64),
            );
        }
    }
    report
}

/// Prints the report's summary on stdout: the header (mode, duration, transport, TLS or
/// not), counts, rate, latency percentiles, send lateness, router CPU.
pub(crate) fn print_summary(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or("n/a".to_string(), |x| format!("{x:.0}"));
    let tls = if r["config"]["tls"] == Value::Bool(true) {
        "TLS"
    } else {
        "no TLS"
    };
    println!(
        "ilp-loadgen: {} for {:.2} s ({}, {tls})",
        r["config"]["mode"].as_str().unwrap_or(""),
        r["duration_s"].as_f64().unwrap_or(0.0),
        r["config"]["transport"].as_str().unwrap_or("?")
    );
    println!("  sent        {:>12}", r["sent"]);
    println!(
        "  fulfilled   {:>12}   {:.0} /s",
        r["fulfilled"],
        r["pps"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  rejected    {:>12}   {}",
        r["rejected"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>()),
        r["rejected"]
    );
    println!("  timeouts    {:>12}", r["timeouts"]);
    println!(
        "  errors      {:>12}   (bad fulfillments {})",
        r["errors"], r["bad_fulfillments"]
    );
    if r["http_errors"].as_object().is_some_and(|m| !m.is_empty()) {
        println!("  HTTP errors              {}", r["http_errors"]);
    }
    let l = &r["latency_us"];
    println!(
        "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        f(&l["p50"]),
        f(&l["p90"]),
        f(&l["p99"]),
        f(&l["p999"]),
        f(&l["max"])
    );
    let s = &r["send_lateness_us"];
    if s.is_object() {
        let g = |v: &Value| v.as_f64().map_or("n/a".to_string(), |x| format!("{x:.1}"));
        println!(
            "  send lateness µs  p50 {}  p99 {}  max {}   (handed to the socket − intended time)",
            g(&s["p50"]),
            g(&s["p99"]),
            g(&s["max"])
        );
    } else {
        println!("  send lateness     n/a (closed loop: no intended send times)");
    }
    if let Some(cpu) = r["router_cpu_us_per_packet"].as_f64() {
        println!(
            "  router CPU  {:.3} µs per packet ({:.2} s in all)",
            cpu,
            r["router_cpu_s"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(cpu) = r["relay_cpu_us_per_packet"].as_f64() {
        println!(
            "  relay CPU  {:.3} µs per packet ({:.2} s in all; busy {:.3} µs per packet, the \
             rest spinning idle; a hop that only copies bytes)",
            cpu,
            r["relay_cpu_s"].as_f64().unwrap_or(0.0),
            r["relay_busy_cpu_us_per_packet"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(cpu) = r["loadgen_cpu_us_per_packet"].as_f64() {
        println!(
            "  ilp-loadgen CPU  {:.3} µs per packet ({:.2} s in all)",
            cpu,
            r["loadgen_cpu_s"].as_f64().unwrap_or(0.0)
        );
    }
    print_sinks(r);
    if r["ended_early"] == Value::Bool(true) {
        println!("  the peer closed a connection: the run ended early");
    }
}

/// A line per sink, when there are several or one went down.
fn print_sinks(r: &Value) {
    let Some(sinks) = r["sinks"].as_array() else {
        return;
    };
    let faults = sinks
        .iter()
        .any(|s| s["down"].as_array().is_some_and(|d| !d.is_empty()));
    if sinks.len() < 2 && !faults {
        return;
    }
    let width = sinks
        .iter()
        .filter_map(|s| s["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    for s in sinks {
        let mut line = format!(
            "  sink {:<width$}  received {:>10}  fulfilled {:>10}  rejected {:>8}",
            s["name"].as_str().unwrap_or("?"),
            s["received"],
            s["fulfilled"],
            s["rejected"]
        );
        for down in s["down"].as_array().into_iter().flatten() {
            let from = down["from_s"].as_f64().unwrap_or(0.0);
            match down["until_s"].as_f64() {
                Some(until) => line.push_str(&format!("  down {from:.1}–{until:.1} s")),
                None => line.push_str(&format!("  down from {from:.1} s")),
            }
        }
        println!("{line}");
    }
}
