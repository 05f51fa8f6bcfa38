//! A writer of the Prometheus text exposition format, version 0.0.4, into a caller's `String`.
//!
//! The format is the one `GET /metrics` answers with (content type
//! `text/plain; version=0.0.4; charset=utf-8`, see [`CONTENT_TYPE`]). A scrape renders every
//! metric once, so the writer appends straight into one buffer: no per-sample `String`, no
//! `format!`, no map of families. Keep the `String` between scrapes (`clear()` it) and a
//! warmed-up scrape allocates only the writer's own two small buffers (the current family's
//! name and the offsets of the names already written).
//!
//! # Contract
//!
//! | call | writes |
//! | --- | --- |
//! | [`Exposition::family`] | `# HELP name help` and `# TYPE name kind`, and makes `name` the current family |
//! | [`Exposition::sample`] | `name{labels} value` of the current counter or gauge |
//! | [`Exposition::histogram`] | `name_bucket{labels,le="…"}` per bound and for `+Inf`, `name_sum`, `name_count` |
//! | [`Exposition::counter`], [`Exposition::gauge`] | a family with one unlabelled sample |
//!
//! - **Families are never interleaved.** Samples can only be written to the current family,
//!   and opening a family whose name was already opened by this writer panics: write each
//!   family's samples together, then move on. (Samples of one family with the same label set
//!   twice are not detected: that is the caller's bug, and Prometheus reports it.)
//! - **Names** (metric and label) are the program's own constants and are checked with
//!   `assert!`: metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
//!   `[a-zA-Z_][a-zA-Z0-9_]*`, a counter's name ends in `_total` (the 0.0.4 convention:
//!   the `TYPE` line and the sample carry the same full name), and a histogram's labels do
//!   not include `le`. A bad name is a programmer error, never data.
//! - **Label values and HELP text** may be anything (peer names come from the config):
//!   label values escape `\` as `\\`, `"` as `\"` and a newline as `\n`; HELP text escapes
//!   `\` and newlines.
//! - **Numbers**: integers ([`Value::U64`], [`Value::I64`]) are written exactly, in decimal.
//!   Floats are written as `+Inf`, `-Inf`, `NaN`, an integral float below 2^53 without a
//!   fraction or exponent (`3`, not `3.0` or `3e0`), others in shortest round-trip form,
//!   with an exponent (`1.5e-7`, `2e21`) only outside `[1e-5, 1e21)` — every form Go's
//!   `strconv.ParseFloat`, and so Prometheus, reads.
//!
//! # Non-goals
//!
//! Summaries, timestamps, exemplars, OpenMetrics, and parsing. Histograms are written from
//! counts the caller keeps; this module holds no metric state.

use core::fmt::Write as _;

/// The content type of the 0.0.4 text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `TYPE` of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up (resets on restart); the name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted into buckets, with `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: integers are written exactly, floats as described in the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// An unsigned integer (counts, bytes).
    U64(u64),
    /// A signed integer (balances).
    I64(i64),
    /// A float (seconds, ratios).
    F64(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::U64(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U64(u64::from(v))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        // usize is at most 64 bits on every target this router builds for.
        Value::U64(v as u64)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I64(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}

/// A histogram's counts, one per finite bucket bound plus one for `+Inf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counts<'c> {
    /// Observations at or below each bound (non-decreasing); the last is the total count.
    Cumulative(&'c [u64]),
    /// Observations in each bucket alone (above the previous bound, at or below this one);
    /// the last counts those above every bound.
    PerBucket(&'c [u64]),
}

/// Labels of one sample: `(name, value)` pairs, written in the order given.
pub type Labels<'l> = [(&'l str, &'l str)];

/// Appends metric families to a `String` (see the module docs for the contract).
#[derive(Debug)]
pub struct Exposition<'o> {
    out: &'o mut String,
    /// The current family's name (a buffer reused from family to family) and kind.
    name: String,
    kind: Option<Kind>,
    /// `(offset, len)` of every family name written so far, as found in `out`: to refuse a
    /// family opened twice without copying names.
    opened: Vec<(usize, usize)>,
}

impl<'o> Exposition<'o> {
    /// A writer that appends to `out` (which may already hold text).
    pub fn new(out: &'o mut String) -> Self {
        Exposition {
            out,
            name: String::new(),
            kind: None,
            opened: Vec::new(),
        }
    }

    /// Starts family `name`: writes its `HELP` and `TYPE` lines. Every sample written until
    /// the next call belongs to it.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid metric name, a counter's name does not end in `_total`, or a
    /// family of this name was already opened by this writer.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        assert!(is_metric_name(name), "bad metric name {name:?}");
        assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name:?} must end in _total"
        );
        let out = &*self.out;
        let twice = self
            .opened
            .iter()
            .any(|&(at, len)| out.get(at..at + len) == Some(name));
        assert!(!twice, "metric family {name:?} opened twice");
        self.out.push_str("# HELP ");
        let name_at = self.out.len();
        self.out.push_str(name);
        self.out.push(' ');
        push_escaped(self.out, help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
        self.opened.push((name_at, name.len()));
        self.name.clear();
        self.name.push_str(name);
        self.kind = Some(kind);
    }

    /// Writes one sample of the current counter or gauge family.
    ///
    /// # Panics
    ///
    /// With no current family, when it is a histogram, or on a bad label name.
    pub fn sample(&mut self, labels: &Labels<'_>, value: impl Into<Value>) {
        let kind = self.kind.expect("sample() before family()");
        assert!(
            kind != Kind::Histogram,
            "sample() on a histogram family: use histogram()"
        );
        self.series("", labels, None);
        push_value(self.out, value.into());
        self.out.push('\n');
    }

    /// Writes one histogram of the current histogram family: a cumulative `_bucket` line per
    /// bound in `bounds` (finite, strictly increasing) and one for `le="+Inf"`, then `_sum`
    /// (`sum`, the total of the observations) and `_count` (the `+Inf` bucket).
    ///
    /// `counts` holds `bounds.len() + 1` counts. Per-bucket counts are summed (saturating);
    /// cumulative counts that decrease (a racy read of counters) are raised to the previous
    /// count so the output stays cumulative.
    ///
    /// # Panics
    ///
    /// With no current family or when it is not a histogram, on a bad label name or an
    /// `le` label, on bounds that are not finite and strictly increasing, or when `counts`
    /// has the wrong length.
    pub fn histogram(
        &mut self,
        labels: &Labels<'_>,
        bounds: &[f64],
        counts: Counts<'_>,
        sum: impl Into<Value>,
    ) {
        let kind = self.kind.expect("histogram() before family()");
        assert!(
            kind == Kind::Histogram,
            "histogram() on a family that is not a histogram"
        );
        assert!(
            labels.iter().all(|&(name, _)| name != "le"),
            "a histogram's labels may not include le"
        );
        assert!(
            bounds.iter().all(|b| b.is_finite()),
            "bounds must be finite"
        );
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "bounds must be strictly increasing"
        );
        let (Counts::Cumulative(raw) | Counts::PerBucket(raw)) = counts;
        assert_eq!(
            raw.len(),
            bounds.len() + 1,
            "one count per bound, plus +Inf"
        );
        let mut cumulative = 0u64;
        for (i, &count) in raw.iter().enumerate() {
            cumulative = match counts {
                Counts::Cumulative(_) => cumulative.max(count),
                Counts::PerBucket(_) => cumulative.saturating_add(count),
            };
            let le = bounds
                .get(i)
                .map_or(Value::F64(f64::INFINITY), |&b| Value::F64(b));
            self.series("_bucket", labels, Some(le));
            push_value(self.out, Value::U64(cumulative));
            self.out.push('\n');
        }
        self.series("_sum", labels, None);
        push_value(self.out, sum.into());
        self.out.push('\n');
        self.series("_count", labels, None);
        push_value(self.out, Value::U64(cumulative));
        self.out.push('\n');
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: impl Into<Value>) {
        self.family(name, help, Kind::Counter);
        self.sample(&[], value);
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Into<Value>) {
        self.family(name, help, Kind::Gauge);
        self.sample(&[], value);
    }

    /// Writes `name{suffix}{labels,le="…"} ` (the braces only when there are labels).
    fn series(&mut self, suffix: &str, labels: &Labels<'_>, le: Option<Value>) {
        self.out.push_str(&self.name);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            for (i, &(name, value)) in labels.iter().enumerate() {
                assert!(is_label_name(name), "bad label name {name:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(name);
                self.out.push_str("=\"");
                push_escaped(self.out, value, true);
                self.out.push('"');
            }
            if let Some(le) = le {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str("le=\"");
                push_value(self.out, le);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Appends `text` with `\` and newlines escaped, and `"` too for a label value.
fn push_escaped(out: &mut String, text: &str, label_value: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (label_value && c == '"');
    let mut rest = text;
    while let Some(at) = rest.find(special) {
        out.push_str(&rest[..at]);
        // `at` is the index of an ASCII character, so `at + 1` is a char boundary.
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            _ => "\\\"",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Appends a value in a form Prometheus reads (see the module docs).
fn push_value(out: &mut String, value: Value) {
    // Writing to a String cannot fail.
    let _ = match value {
        Value::U64(v) => write!(out, "{v}"),
        Value::I64(v) => write!(out, "{v}"),
        Value::F64(v) if v.is_nan() => write!(out, "NaN"),
        Value::F64(v) if v == f64::INFINITY => write!(out, "+Inf"),
        Value::F64(v) if v == f64::NEG_INFINITY => write!(out, "-Inf"),
        // Integral and exact in an i64: no fraction, no exponent (`-0.0` becomes `0`).
        Value::F64(v) if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 => {
            write!(out, "{}", v as i64)
        }
        Value::F64(v) if v.abs() >= 1e-5 && v.abs() < 1e21 => write!(out, "{v}"),
        Value::F64(v) => write!(out, "{v:e}"),
    };
}

#[cfg(test)]
mod test {
    use super::*;

    fn render(f: impl FnOnce(&mut Exposition<'_>)) -> String {
        let mut out = String::new();
        f(&mut Exposition::new(&mut out));
        out
    }

    #[test]
    fn counter_with_labels() {
        let text = render(|w| {
            w.family("ilp_prepares_total", "Prepares handled.", Kind::Counter);
            w.sample(&[("peer", "alice"), ("direction", "incoming")], 3u64);
            w.sample(&[("peer", "bob"), ("direction", "outgoing")], 0u64);
        });
        assert_eq!(
            text,
            "# HELP ilp_prepares_total Prepares handled.\n\
             # TYPE ilp_prepares_total counter\n\
             ilp_prepares_total{peer=\"alice\",direction=\"incoming\"} 3\n\
             ilp_prepares_total{peer=\"bob\",direction=\"outgoing\"} 0\n"
        );
    }

    #[test]
    fn gauge_without_labels_and_integers() {
        let text = render(|w| {
            w.gauge("ilp_balance", "Balance.", -42i64);
            w.gauge("ilp_links", "Links.", 7usize);
            w.counter("ilp_big_total", "Big.", u64::MAX);
        });
        assert_eq!(
            text,
            "# HELP ilp_balance Balance.\n# TYPE ilp_balance gauge\nilp_balance -42\n\
             # HELP ilp_links Links.\n# TYPE ilp_links gauge\nilp_links 7\n\
             # HELP ilp_big_total Big.\n# TYPE ilp_big_total counter\n\
             ilp_big_total 18446744073709551615\n"
        );
    }

    #[test]
    fn escaping_of_label_values_and_help() {
        let text = render(|w| {
            w.family("x_total", "a \\ b\nc \"q\"", Kind::Counter);
            w.sample(&[("peer", "a\\b\"c\nd")], 1u64);
            w.sample(&[("peer", "ünïcode")], 2u64);
        });
        assert_eq!(
            text,
            "# HELP x_total a \\\\ b\\nc \"q\"\n\
             # TYPE x_total counter\n\
             x_total{peer=\"a\\\\b\\\"c\\nd\"} 1\n\
             x_total{peer=\"ünïcode\"} 2\n"
        );
    }

    #[test]
    fn floats() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (3.0, "3"),
            (-3.0, "-3"),
            (1e15, "1000000000000000"),
            (9_007_199_254_740_991.0, "9007199254740991"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (1e20, "100000000000000000000"),
            (1e21, "1e21"),
            (1.5e300, "1.5e300"),
            (0.25, "0.25"),
            (0.005, "0.005"),
            (1e-5, "0.00001"),
            (1.5e-7, "1.5e-7"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for &(v, want) in cases {
            let mut out = String::new();
            push_value(&mut out, Value::F64(v));
            assert_eq!(out, want, "{v:?}");
            // Round trip: what we write reads back as the same number.
            if v.is_finite() {
                assert_eq!(out.parse::<f64>().ok(), Some(v), "{out}");
            }
        }
    }

    #[test]
    fn histogram_cumulative_and_per_bucket_agree() {
        let bounds = [0.005, 0.01, 1.0];
        let cumulative = render(|w| {
            w.family("ilp_latency_seconds", "Latency.", Kind::Histogram);
            w.histogram(
                &[("peer", "alice")],
                &bounds,
                Counts::Cumulative(&[1, 3, 3, 4]),
                2.5,
            );
        });
        let per_bucket = render(|w| {
            w.family("ilp_latency_seconds", "Latency.", Kind::Histogram);
            w.histogram(
                &[("peer", "alice")],
                &bounds,
                Counts::PerBucket(&[1, 2, 0, 1]),
                2.5,
            );
        });
        let want = "# HELP ilp_latency_seconds Latency.\n\
             # TYPE ilp_latency_seconds histogram\n\
             ilp_latency_seconds_bucket{peer=\"alice\",le=\"0.005\"} 1\n\
             ilp_latency_seconds_bucket{peer=\"alice\",le=\"0.01\"} 3\n\
             ilp_latency_seconds_bucket{peer=\"alice\",le=\"1\"} 3\n\
             ilp_latency_seconds_bucket{peer=\"alice\",le=\"+Inf\"} 4\n\
             ilp_latency_seconds_sum{peer=\"alice\"} 2.5\n\
             ilp_latency_seconds_count{peer=\"alice\"} 4\n";
        assert_eq!(cumulative, want);
        assert_eq!(per_bucket, want);
    }

    #[test]
    fn histogram_without_labels_or_bounds() {
        let text = render(|w| {
            w.family("h", "H.", Kind::Histogram);
            w.histogram(&[], &[], Counts::PerBucket(&[5]), 10u64);
        });
        assert_eq!(
            text,
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 5\nh_sum 10\nh_count 5\n"
        );
    }

    #[test]
    fn histogram_counts_saturate_and_stay_cumulative() {
        let text = render(|w| {
            w.family("h", "H.", Kind::Histogram);
            w.histogram(&[], &[1.0], Counts::PerBucket(&[u64::MAX, 1]), 0u64);
            w.histogram(&[("a", "b")], &[1.0], Counts::Cumulative(&[5, 4]), 0u64);
        });
        assert!(text.contains("h_bucket{le=\"+Inf\"} 18446744073709551615\n"));
        assert!(text
            .contains("h_bucket{a=\"b\",le=\"+Inf\"} 5\nh_sum{a=\"b\"} 0\nh_count{a=\"b\"} 5\n"));
    }

    #[test]
    fn appends_to_existing_text() {
        let mut out = String::from("# preamble\n");
        let mut w = Exposition::new(&mut out);
        w.gauge("g", "G.", 1u64);
        assert_eq!(out, "# preamble\n# HELP g G.\n# TYPE g gauge\ng 1\n");
    }

    #[test]
    #[should_panic(expected = "opened twice")]
    fn family_twice_panics() {
        render(|w| {
            w.gauge("a", "A.", 1u64);
            w.gauge("b", "B.", 1u64);
            w.gauge("a", "A.", 2u64);
        });
    }

    #[test]
    fn prefix_names_are_distinct_families() {
        let text = render(|w| {
            w.gauge("a", "A.", 1u64);
            w.gauge("a_b", "A.", 1u64);
            w.gauge("ab", "A.", 1u64);
        });
        assert_eq!(text.matches("# TYPE").count(), 3);
    }

    #[test]
    #[should_panic(expected = "must end in _total")]
    fn counter_without_total_panics() {
        render(|w| w.family("ilp_prepares", "x", Kind::Counter));
    }

    #[test]
    #[should_panic(expected = "bad metric name")]
    fn bad_metric_name_panics() {
        render(|w| w.family("9lives", "x", Kind::Gauge));
    }

    #[test]
    #[should_panic(expected = "bad label name")]
    fn bad_label_name_panics() {
        render(|w| {
            w.family("g", "x", Kind::Gauge);
            w.sample(&[("a-b", "v")], 1u64);
        });
    }

    #[test]
    #[should_panic(expected = "use histogram()")]
    fn sample_on_histogram_panics() {
        render(|w| {
            w.family("h", "x", Kind::Histogram);
            w.sample(&[], 1u64);
        });
    }

    #[test]
    #[should_panic(expected = "le")]
    fn le_label_on_histogram_panics() {
        render(|w| {
            w.family("h", "x", Kind::Histogram);
            w.histogram(&[("le", "1")], &[], Counts::PerBucket(&[1]), 0u64);
        });
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn unsorted_bounds_panic() {
        render(|w| {
            w.family("h", "x", Kind::Histogram);
            w.histogram(&[], &[2.0, 1.0], Counts::PerBucket(&[1, 1, 1]), 0u64);
        });
    }

    #[test]
    #[should_panic(expected = "one count per bound")]
    fn wrong_count_length_panics() {
        render(|w| {
            w.family("h", "x", Kind::Histogram);
            w.histogram(&[], &[1.0], Counts::PerBucket(&[1]), 0u64);
        });
    }
}
