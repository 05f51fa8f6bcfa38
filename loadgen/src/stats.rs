//! Measurements: one set per thread, no lock per sample, merged at the end.
//!
//! Latency is recorded in microseconds in an HdrHistogram (1 µs to 60 s, 3 significant
//! digits). In open-loop runs it counts from each Prepare's *intended* send time, so a stall
//! in the sender or the router shows up as latency instead of disappearing (coordinated
//! omission). A per-second timeline keeps counts and that second's p50/p99.
//!
//! Open-loop runs also record each Prepare's *send lateness*, in nanoseconds: when the
//! sender's writer handed it to the socket, minus its intended send time. It is what the load
//! generator itself adds to every latency figure (see `pacer`). A closed-loop run has no
//! intended times and records none.
//!
//! The sink side counts per sink (`SinkCounts`, indexed by `SinkId`): Prepares received,
//! answers sent by kind, and Fulfills sent per second, on the same clock as the timeline.

use crate::sinks::SinkId;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const LATENCY_MAX_US: u64 = 60_000_000;
const LATENESS_MAX_NS: u64 = LATENCY_MAX_US * 1000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

fn lateness_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENESS_MAX_NS, 3).expect("valid histogram bounds")
}

/// One second of the run.
#[derive(Debug, Clone)]
pub(crate) struct Second {
    pub(crate) sent: u64,
    pub(crate) fulfilled: u64,
    pub(crate) rejected: u64,
    pub(crate) latency: Histogram<u64>,
}

impl Second {
    fn new() -> Self {
        Second {
            sent: 0,
            fulfilled: 0,
            rejected: 0,
            latency: histogram(),
        }
    }
}

/// What a sink answered to one Prepare (counted when the answer is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkAnswer {
    /// A Fulfill with the right fulfillment, for a Prepare of `amount`.
    Fulfilled { amount: u64 },
    /// A Fulfill with a wrong fulfillment (`--sink-wrong-fraction`).
    WrongFulfillment,
    /// A Reject (`--sink-reject-fraction`, or a Prepare that did not decode).
    Rejected,
}

/// One sink's counts on one thread (merged at the end like the rest).
#[derive(Debug, Clone, Default)]
pub(crate) struct SinkCounts {
    pub(crate) received: u64,
    pub(crate) fulfilled: u64,
    pub(crate) wrong_fulfillments: u64,
    pub(crate) rejected: u64,
    /// Right Fulfills sent in each second of the run (index as in `Stats::timeline`).
    pub(crate) fulfilled_per_s: Vec<u64>,
}

/// Everything one thread measured.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub(crate) sent: u64,
    pub(crate) fulfilled: u64,
    pub(crate) rejected: BTreeMap<String, u64>,
    pub(crate) timeouts: u64,
    /// Fulfills whose fulfillment was not the expected preimage (counted, not fulfilled).
    pub(crate) bad_fulfillments: u64,
    /// Replies that did not decode, BTP errors, connection failures.
    pub(crate) errors: u64,
    /// Sink side: Prepares received and answered.
    pub(crate) sink_received: u64,
    /// HTTP transport: responses other than 200, by status (each also counts in `errors`).
    pub(crate) http_errors: BTreeMap<u16, u64>,
    pub(crate) latency: Histogram<u64>,
    /// Open loop: each Prepare's send lateness, in ns.
    pub(crate) send_lateness: Histogram<u64>,
    pub(crate) timeline: Vec<Second>,
    /// Sink side, by `SinkId` (grown on a sink's first Prepare).
    pub(crate) sinks: Vec<SinkCounts>,
    /// By index in the `--sink-down-at`/`--sink-up-at` schedule: when the threads applied
    /// it, on the send clock (earliest, latest); a busy thread applies a change late.
    pub(crate) faults_applied: Vec<Option<(Duration, Duration)>>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            sent: 0,
            fulfilled: 0,
            rejected: BTreeMap::new(),
            timeouts: 0,
            bad_fulfillments: 0,
            errors: 0,
            sink_received: 0,
            http_errors: BTreeMap::new(),
            latency: histogram(),
            send_lateness: lateness_histogram(),
            timeline: Vec::new(),
            sinks: Vec::new(),
            faults_applied: Vec::new(),
        }
    }

    /// This thread applied change `index` of the fault schedule at `at` (send clock).
    pub(crate) fn on_fault_applied(&mut self, index: usize, at: Duration) {
        if self.faults_applied.len() <= index {
            self.faults_applied.resize(index + 1, None);
        }
        let slot = &mut self.faults_applied[index];
        *slot = Some(slot.map_or((at, at), |(a, b)| (a.min(at), b.max(at))));
    }

    fn second(&mut self, second: usize) -> &mut Second {
        if self.timeline.len() <= second {
            self.timeline.resize_with(second + 1, Second::new);
        }
        &mut self.timeline[second]
    }

    /// A Prepare went out during `second` of the run.
    pub(crate) fn on_sent(&mut self, second: usize) {
        self.sent += 1;
        self.second(second).sent += 1;
    }

    /// A valid Fulfill came back `latency_us` after the Prepare's (intended) send time.
    pub(crate) fn on_fulfilled(&mut self, second: usize, latency_us: u64) {
        self.fulfilled += 1;
        let latency_us = latency_us.clamp(1, LATENCY_MAX_US);
        let _ = self.latency.record(latency_us);
        let s = self.second(second);
        s.fulfilled += 1;
        let _ = s.latency.record(latency_us);
    }

    /// Open loop: a Prepare was handed to the socket `lateness_ns` after its intended time.
    pub(crate) fn on_send_lateness(&mut self, lateness_ns: u64) {
        let _ = self.send_lateness.record(lateness_ns.min(LATENESS_MAX_NS));
    }

    /// A writer handed the Prepares `queued` (their intended times, ns) to the socket at
    /// `now_ns`: counts their send lateness and empties `queued`.
    pub(crate) fn on_handed_over(&mut self, now_ns: u64, queued: &mut Vec<u64>) {
        for intended in queued.drain(..) {
            self.on_send_lateness(now_ns.saturating_sub(intended));
        }
    }

    /// A Reject with `code` came back.
    pub(crate) fn on_rejected(&mut self, second: usize, code: &str) {
        match self.rejected.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                self.rejected.insert(code.to_owned(), 1);
            }
        }
        self.second(second).rejected += 1;
    }

    /// An HTTP response with a status other than 200 came back.
    pub(crate) fn on_http_error(&mut self, status: u16) {
        self.errors += 1;
        *self.http_errors.entry(status).or_default() += 1;
    }

    fn sink(&mut self, sink: SinkId) -> &mut SinkCounts {
        let index = sink.index();
        if self.sinks.len() <= index {
            self.sinks.resize_with(index + 1, SinkCounts::default);
        }
        &mut self.sinks[index]
    }

    /// A Prepare reached `sink`.
    pub(crate) fn on_sink_received(&mut self, sink: SinkId) {
        self.sink_received += 1;
        self.sink(sink).received += 1;
    }

    /// `sink` sent `answer` during `second` of the run.
    pub(crate) fn on_sink_answered(&mut self, sink: SinkId, second: usize, answer: SinkAnswer) {
        let counts = self.sink(sink);
        match answer {
            SinkAnswer::Fulfilled { .. } => {
                counts.fulfilled += 1;
                if counts.fulfilled_per_s.len() <= second {
                    counts.fulfilled_per_s.resize(second + 1, 0);
                }
                counts.fulfilled_per_s[second] += 1;
            }
            SinkAnswer::WrongFulfillment => counts.wrong_fulfillments += 1,
            SinkAnswer::Rejected => counts.rejected += 1,
        }
    }

    /// Folds another thread's measurements into these.
    pub(crate) fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.fulfilled += other.fulfilled;
        for (code, n) in &other.rejected {
            *self.rejected.entry(code.clone()).or_default() += n;
        }
        self.timeouts += other.timeouts;
        self.bad_fulfillments += other.bad_fulfillments;
        self.errors += other.errors;
        self.sink_received += other.sink_received;
        for (status, n) in &other.http_errors {
            *self.http_errors.entry(*status).or_default() += n;
        }
        let _ = self.latency.add(&other.latency);
        let _ = self.send_lateness.add(&other.send_lateness);
        for (i, s) in other.timeline.iter().enumerate() {
            let mine = self.second(i);
            mine.sent += s.sent;
            mine.fulfilled += s.fulfilled;
            mine.rejected += s.rejected;
            let _ = mine.latency.add(&s.latency);
        }
        for (i, theirs) in other.sinks.iter().enumerate() {
            let mine = self.sink(SinkId::new(i));
            mine.received += theirs.received;
            mine.fulfilled += theirs.fulfilled;
            mine.wrong_fulfillments += theirs.wrong_fulfillments;
            mine.rejected += theirs.rejected;
            if mine.fulfilled_per_s.len() < theirs.fulfilled_per_s.len() {
                mine.fulfilled_per_s.resize(theirs.fulfilled_per_s.len(), 0);
            }
            for (m, t) in mine.fulfilled_per_s.iter_mut().zip(&theirs.fulfilled_per_s) {
                *m += t;
            }
        }
        for (i, applied) in other.faults_applied.iter().enumerate() {
            if let Some((first, last)) = *applied {
                self.on_fault_applied(i, first);
                self.on_fault_applied(i, last);
            }
        }
    }

    fn percentile(h: &Histogram<u64>, p: f64) -> Option<f64> {
        (!h.is_empty()).then(|| h.value_at_quantile(p / 100.0) as f64)
    }

    /// Open loop: the send lateness in µs (`p50`, `p99`, `p999`, `max`: null when nothing
    /// was sent) and how many Prepares it counts.
    pub(crate) fn send_lateness_json(&self) -> Value {
        let h = &self.send_lateness;
        let us = |ns: u64| {
            if h.is_empty() {
                Value::Null
            } else {
                Value::from(ns as f64 / 1000.0)
            }
        };
        json!({
            "p50": us(h.value_at_quantile(0.5)),
            "p99": us(h.value_at_quantile(0.99)),
            "p999": us(h.value_at_quantile(0.999)),
            "max": us(h.max()),
            "count": h.len(),
        })
    }

    /// The JSON fields measured here (the caller adds config and timing).
    pub(crate) fn to_json(&self, duration_s: f64) -> Value {
        let h = &self.latency;
        let p = |q: f64| Stats::percentile(h, q).map_or(Value::Null, Value::from);
        let curve: Vec<Value> = [
            0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
        ]
        .iter()
        .filter_map(|&q| Stats::percentile(h, q).map(|v| json!([q, v])))
        .collect();
        let timeline: Vec<Value> = self
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "t": i + 1,
                    "sent": s.sent,
                    "fulfilled": s.fulfilled,
                    "rejected": s.rejected,
                    "p50_us": Stats::percentile(&s.latency, 50.0),
                    "p99_us": Stats::percentile(&s.latency, 99.0),
                })
            })
            .collect();
        let pps = if duration_s > 0.0 {
            self.fulfilled as f64 / duration_s
        } else {
            0.0
        };
        json!({
            "sent": self.sent,
            "fulfilled": self.fulfilled,
            "rejected": self.rejected,
            "timeouts": self.timeouts,
            "bad_fulfillments": self.bad_fulfillments,
            "errors": self.errors,
            "sink_received": self.sink_received,
            "http_errors": self
                .http_errors
                .iter()
                .map(|(status, n)| (status.to_string(), Value::from(*n)))
                .collect::<serde_json::Map<String, Value>>(),
            "duration_s": duration_s,
            "pps": pps,
            "latency_us": {
                "p50": p(50.0), "p90": p(90.0), "p99": p(99.0), "p999": p(99.9),
                "max": (!h.is_empty()).then(|| h.max() as f64),
                "mean": (!h.is_empty()).then(|| h.mean()),
            },
            "latency_curve": curve,
            "timeline": timeline,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new();
        a.on_sent(0);
        a.on_fulfilled(0, 100);
        a.on_rejected(1, "T04");
        let mut b = Stats::new();
        b.on_sent(2);
        b.on_fulfilled(2, 300);
        b.on_rejected(2, "T04");
        b.on_rejected(2, "F02");
        b.on_http_error(401);
        a.on_http_error(401);
        a.merge(&b);
        assert_eq!(
            (a.sent, a.fulfilled, a.rejected.values().sum::<u64>()),
            (2, 2, 3)
        );
        assert_eq!(a.rejected["T04"], 2);
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(a.latency.len(), 2);
        let j = a.to_json(2.0);
        assert_eq!(j["pps"], 1.0);
        assert_eq!(j["timeline"][2]["fulfilled"], 1);
        assert_eq!(j["http_errors"]["401"], 2);
        assert_eq!(j["errors"], 2);
        assert!(j["latency_us"]["p50"].as_f64().unwrap() >= 100.0);
    }

    #[test]
    fn merge_adds_the_sinks_second_by_second() {
        let (one, two) = (SinkId::new(0), SinkId::new(1));
        let mut a = Stats::new();
        a.on_sink_received(two);
        a.on_sink_answered(two, 3, SinkAnswer::Fulfilled { amount: 1 });
        let mut b = Stats::new();
        for _ in 0..3 {
            b.on_sink_received(one);
        }
        b.on_sink_answered(one, 0, SinkAnswer::Fulfilled { amount: 1 });
        b.on_sink_answered(one, 1, SinkAnswer::Rejected);
        b.on_sink_answered(one, 1, SinkAnswer::WrongFulfillment);
        b.on_sink_received(two);
        b.on_sink_answered(two, 3, SinkAnswer::Fulfilled { amount: 1 });
        a.merge(&b);
        assert_eq!(a.sink_received, 5);
        assert_eq!(a.sinks.len(), 2);
        let s = &a.sinks[0];
        assert_eq!(
            (s.received, s.fulfilled, s.rejected, s.wrong_fulfillments),
            (3, 1, 1, 1)
        );
        assert_eq!(s.fulfilled_per_s, [1]);
        assert_eq!(a.sinks[1].received, 2);
        assert_eq!(a.sinks[1].fulfilled_per_s, [0, 0, 0, 2]);
    }

    #[test]
    fn empty_stats_have_null_latencies() {
        let j = Stats::new().to_json(1.0);
        assert!(j["latency_us"]["p99"].is_null());
        assert_eq!(j["latency_curve"].as_array().unwrap().len(), 0);
        let l = Stats::new().send_lateness_json();
        assert!(l["p50"].is_null() && l["max"].is_null());
        assert_eq!(l["count"], 0);
    }

    #[test]
    fn send_lateness_merges_and_reads_in_microseconds() {
        let mut a = Stats::new();
        for ns in [0, 1_000, 2_000, 3_000] {
            a.on_send_lateness(ns);
        }
        let mut b = Stats::new();
        b.on_send_lateness(250_000);
        b.on_send_lateness(u64::MAX);
        a.merge(&b);
        let l = a.send_lateness_json();
        assert_eq!(l["count"], 6);
        let (p50, p99, max) = (
            l["p50"].as_f64().unwrap(),
            l["p99"].as_f64().unwrap(),
            l["max"].as_f64().unwrap(),
        );
        assert!((1.99..=2.01).contains(&p50), "{l}");
        assert!(p50 <= p99 && p99 <= max, "{l}");
        // Clamped at a minute, not lost.
        assert!((59.9e6..=60.1e6).contains(&max), "{l}");
    }
}
