//! Several sinks in one run, and the faults injected into them: a connector cluster seen from
//! the load generator, each sink standing for one backend.
//!
//! # Which sinks
//!
//! | flags | sinks |
//! | --- | --- |
//! | one `--sink NAME:TOKEN` (or its default), no `--sinks` | one sink, `NAME` with `TOKEN` (unchanged from a single-sink run) |
//! | one `--sink NAME:TOKEN`, `--sinks N` | sink i (1-based) is `NAME{i}`; its token is `TOKEN` with `NAME{i}` in place of a leading `NAME` (`bob:bob-secret` gives `bob1:bob1-secret` … `bobN:bobN-secret`), or `TOKEN{i}` when `TOKEN` does not start with `NAME` (`carol:pw` gives `carol1:pw1`); an empty `TOKEN` (BTP with `--client-cert`) stays empty |
//! | `--sink` given k times | k sinks, as written, in order (`--sinks`, if given too, must be k) |
//!
//! Over BTP every sink dials the connector with its own credentials, `--connections`
//! connections each (shared out among the threads like the senders'). Over HTTP sink i serves
//! on `--sink-listen`'s port plus i − 1 (every thread listens on each sink's address).
//!
//! # Faults
//!
//! `--sink-down-at T:I` and `--sink-up-at T:I` (1-based sink, T after the send clock starts,
//! within `--duration`) are checked here into one schedule, sorted by time; every thread then
//! applies it to its own connections (`thread::ThreadSinks`), within a tick of the others:
//!
//! | change | BTP | HTTP |
//! | --- | --- | --- |
//! | down | the sink's connections are closed at once (their tasks cancelled: no answer goes out, nothing more is counted); no redial | its listener closes (new connections are refused) and the connections it accepted are closed at once |
//! | up | it dials again, `--connections` connections, retrying every 250 ms until one opens or the run ends | it listens again (retrying every 250 ms if the bind fails) |
//!
//! A deliberate close never ends the run; a connection the connector closes still does.
//!
//! # Counts
//!
//! Each sink counts the Prepares it received and its answers by kind, an answer when it is
//! queued to go out (after `--sink-delay-ms`); `report_json` writes them, with the Fulfills
//! per second and the down intervals, as the report's `sinks`. An answer queued just before a
//! drop is counted yet never arrives (the connector answers that Prepare T01 instead), so
//! after a `--sink-down-at` the sinks' Fulfills may exceed the sender's by those few.
//!
//! Not done here: the sink's answers (`conn::sink_answer`, shared by both transports) and the
//! counting (`stats::SinkCounts`).

pub(crate) mod thread;

use crate::stats::Stats;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// The most sinks one run plays.
pub(crate) const SINKS_MAX: usize = 256;
/// The most `--destinations` a run spreads its Prepares over.
pub(crate) const DESTINATIONS_MAX: u32 = 1_000_000;

const _: () = assert!(SINKS_MAX <= u16::MAX as usize);

/// A sink of this run: its index in `CliShared::sinks` (0-based; flags and reports say
/// `index + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SinkId(u16);

impl SinkId {
    pub(crate) fn new(index: usize) -> SinkId {
        assert!(index < SINKS_MAX, "sink index {index} over SINKS_MAX");
        SinkId(index as u16)
    }

    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One sink: the peer it plays at the connector, and where it serves over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkSpec {
    pub(crate) name: String,
    pub(crate) token: String,
    /// HTTP: where this sink listens (`--sink-listen` numbered; none over BTP).
    pub(crate) listen: Option<SocketAddr>,
}

/// The sinks from `--sink` (each `(NAME, TOKEN)`, at least one), `--sinks` and
/// `--sink-listen`, by the table in the module docs.
pub(crate) fn specs(
    credentials: &[(String, String)],
    count: Option<usize>,
    listen: Option<SocketAddr>,
) -> Result<Vec<SinkSpec>, String> {
    assert!(!credentials.is_empty(), "--sink has a default");
    if let Some(n) = count {
        if !(1..=SINKS_MAX).contains(&n) {
            return Err(format!("--sinks {n}: between 1 and {SINKS_MAX}"));
        }
    }
    let named: Vec<(String, String)> = match (credentials, count) {
        ([(name, token)], Some(n)) => {
            if name.is_empty() {
                return Err("--sinks numbers the --sink NAME: the name is empty".into());
            }
            (1..=n).map(|i| numbered(name, token, i)).collect()
        }
        (many, Some(n)) if many.len() != n => {
            return Err(format!(
            "--sinks {n} with {} --sink flags: give one --sink to number, or one --sink per sink",
            many.len()
        ))
        }
        (many, _) => many.to_vec(),
    };
    if named.len() > SINKS_MAX {
        return Err(format!("--sink: at most {SINKS_MAX} sinks"));
    }
    for (i, (name, _)) in named.iter().enumerate() {
        if named[..i].iter().any(|(other, _)| other == name) {
            return Err(format!("--sink: the sink name {name:?} is given twice"));
        }
    }
    let last = named.len() - 1;
    if let Some(address) = listen.filter(|_| last > 0) {
        if address.port() == 0 {
            return Err("--sink-listen: several sinks need a port to number from, not 0".into());
        }
        if usize::from(address.port()) + last > usize::from(u16::MAX) {
            return Err(format!(
                "--sink-listen {address}: {} sinks would need ports past 65535",
                last + 1
            ));
        }
    }
    Ok(named
        .into_iter()
        .enumerate()
        .map(|(i, (name, token))| SinkSpec {
            name,
            token,
            listen: listen.map(|a| SocketAddr::new(a.ip(), a.port() + i as u16)),
        })
        .collect())
}

/// Sink `i` (1-based) of `--sinks` from `--sink NAME:TOKEN`.
fn numbered(name: &str, token: &str, i: usize) -> (String, String) {
    let token = match token.strip_prefix(name) {
        // No token (the certificate names the peer): none for any of them.
        _ if token.is_empty() => String::new(),
        Some(rest) => format!("{name}{i}{rest}"),
        None => format!("{token}{i}"),
    };
    (format!("{name}{i}"), token)
}

/// One `--sink-down-at` or `--sink-up-at` as written: a time into the run and a 1-based sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) at: Duration,
    pub(crate) sink: usize,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.at.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s:{}", ms / 1000, self.sink)
        } else {
            write!(f, "{ms}ms:{}", self.sink)
        }
    }
}

/// What a fault does to its sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    Down,
    Up,
}

/// One change of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FaultEvent {
    /// After the send clock starts.
    pub(crate) at: Duration,
    pub(crate) sink: SinkId,
    pub(crate) change: Change,
}

/// Checks `--sink-down-at` and `--sink-up-at` against the run (`sinks` sinks, `duration`)
/// and against each other, and returns them as one schedule sorted by time.
pub(crate) fn schedule(
    downs: &[Fault],
    ups: &[Fault],
    sinks: usize,
    duration: Duration,
) -> Result<Vec<FaultEvent>, String> {
    let flags = downs
        .iter()
        .map(|f| ("--sink-down-at", f, Change::Down))
        .chain(ups.iter().map(|f| ("--sink-up-at", f, Change::Up)));
    let mut events: Vec<(&str, &Fault, Change)> = Vec::new();
    for (flag, fault, change) in flags {
        if !(1..=sinks).contains(&fault.sink) {
            return Err(format!(
                "{flag} {fault}: there is no sink {} (sinks are numbered 1 to {sinks})",
                fault.sink
            ));
        }
        if fault.at >= duration {
            return Err(format!(
                "{flag} {fault}: {:.3} s is not within the run (--duration {:.3} s)",
                fault.at.as_secs_f64(),
                duration.as_secs_f64()
            ));
        }
        events.push((flag, fault, change));
    }
    // Each sink's changes in time order must alternate down, up, down, ….
    events.sort_by_key(|&(_, fault, change)| (fault.sink, fault.at, change));
    for (i, &(flag, fault, change)) in events.iter().enumerate() {
        let before = i
            .checked_sub(1)
            .map(|j| events[j])
            .filter(|&(_, other, _)| other.sink == fault.sink);
        let down_before = before.is_some_and(|(_, _, c)| c == Change::Down);
        if before.is_some_and(|(_, other, _)| other.at == fault.at) {
            return Err(format!(
                "{flag} {fault}: sink {} already changes at that time",
                fault.sink
            ));
        }
        match change {
            Change::Down if down_before => {
                return Err(format!(
                    "{flag} {fault}: sink {} is already down then (bring it back first with --sink-up-at)",
                    fault.sink
                ))
            }
            Change::Up if !down_before => {
                return Err(format!(
                    "{flag} {fault}: sink {} is not down then (an --sink-up-at must come after that sink's --sink-down-at)",
                    fault.sink
                ))
            }
            _ => {}
        }
    }
    let mut schedule: Vec<FaultEvent> = events
        .into_iter()
        .map(|(_, fault, change)| FaultEvent {
            at: fault.at,
            sink: SinkId::new(fault.sink - 1),
            change,
        })
        .collect();
    schedule.sort_by_key(|e| e.at);
    Ok(schedule)
}

/// The times `sink` is down: `(from, until)` after the send clock starts, `None` when it
/// stays down to the end. With `applied` (per schedule index, when the threads applied it:
/// earliest, latest) the times are those at which it was really down on every thread: from the
/// last thread's taking it down to the first thread's bringing it back; else as scheduled.
pub(crate) fn down_intervals(
    schedule: &[FaultEvent],
    applied: &[Option<(Duration, Duration)>],
    sink: SinkId,
) -> Vec<(Duration, Option<Duration>)> {
    let mut intervals: Vec<(Duration, Option<Duration>)> = Vec::new();
    for (i, event) in schedule.iter().enumerate().filter(|(_, e)| e.sink == sink) {
        let when = applied.get(i).copied().flatten();
        match event.change {
            Change::Down => intervals.push((when.map_or(event.at, |(_, last)| last), None)),
            Change::Up => {
                let open = intervals.last_mut().expect("checked: up follows down");
                open.1 = Some(when.map_or(event.at, |(first, _)| first));
            }
        }
    }
    intervals
}

/// The report's `sinks`: one object per sink with its counts, its Fulfills sent per second
/// (`fulfilled_per_s[i]` is second `[i, i + 1)` of the run's clock, the `timeline` row with
/// `t = i + 1`; as long as the timeline) and when it was down on every thread (`from_s`,
/// `until_s` on the same clock, as the threads applied the schedule; `until_s` null when it
/// stayed down). `send_start_s` is where the send clock started
/// on the run's clock.
pub(crate) fn report_json(
    total: &Stats,
    sinks: &[SinkSpec],
    schedule: &[FaultEvent],
    send_start_s: f64,
) -> Value {
    let seconds = total.timeline.len().max(
        total
            .sinks
            .iter()
            .map(|s| s.fulfilled_per_s.len())
            .max()
            .unwrap_or(0),
    );
    let entries: Vec<Value> = sinks
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let counts = total.sinks.get(i).cloned().unwrap_or_default();
            let mut per_s = counts.fulfilled_per_s.clone();
            per_s.resize(seconds, 0);
            let down: Vec<Value> = down_intervals(schedule, &total.faults_applied, SinkId::new(i))
                .into_iter()
                .map(|(from, until)| {
                    json!({
                        "from_s": send_start_s + from.as_secs_f64(),
                        "until_s": until.map(|u| send_start_s + u.as_secs_f64()),
                    })
                })
                .collect();
            json!({
                "name": spec.name,
                "received": counts.received,
                "fulfilled": counts.fulfilled,
                "rejected": counts.rejected,
                "wrong_fulfillments": counts.wrong_fulfillments,
                "fulfilled_per_s": per_s,
                "down": down,
            })
        })
        .collect();
    Value::Array(entries)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::stats::SinkAnswer;

    fn creds(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    fn names(specs: &[SinkSpec]) -> Vec<(String, String)> {
        specs
            .iter()
            .map(|s| (s.name.clone(), s.token.clone()))
            .collect()
    }

    #[test]
    fn one_sink_without_sinks_is_unchanged() {
        let specs = specs(&creds(&[("bob", "bob-secret")]), None, None).unwrap();
        assert_eq!(names(&specs), creds(&[("bob", "bob-secret")]));
        assert_eq!(specs[0].listen, None);
    }

    #[test]
    fn sinks_number_the_name_and_the_token() {
        let specs = specs(&creds(&[("bob", "bob-secret")]), Some(3), None).unwrap();
        assert_eq!(
            names(&specs),
            creds(&[
                ("bob1", "bob1-secret"),
                ("bob2", "bob2-secret"),
                ("bob3", "bob3-secret")
            ])
        );
        let specs = super::specs(&creds(&[("carol", "pw")]), Some(2), None).unwrap();
        assert_eq!(
            names(&specs),
            creds(&[("carol1", "pw1"), ("carol2", "pw2")])
        );
        let specs = super::specs(&creds(&[("bob", "")]), Some(2), None).unwrap();
        assert_eq!(names(&specs), creds(&[("bob1", ""), ("bob2", "")]));
    }

    #[test]
    fn repeated_sinks_are_taken_as_written() {
        let given = creds(&[("x", "a"), ("y", "b")]);
        assert_eq!(names(&specs(&given, None, None).unwrap()), given);
        assert_eq!(names(&specs(&given, Some(2), None).unwrap()), given);
        assert!(specs(&given, Some(3), None)
            .unwrap_err()
            .contains("--sinks 3"));
        let twice = creds(&[("x", "a"), ("x", "b")]);
        assert!(specs(&twice, None, None).unwrap_err().contains("twice"));
    }

    #[test]
    fn http_sinks_listen_on_consecutive_ports() {
        let listen: SocketAddr = "127.0.0.1:7771".parse().unwrap();
        let specs = specs(&creds(&[("bob", "t")]), Some(4), Some(listen)).unwrap();
        let ports: Vec<u16> = specs.iter().map(|s| s.listen.unwrap().port()).collect();
        assert_eq!(ports, [7771, 7772, 7773, 7774]);
        let high: SocketAddr = "127.0.0.1:65534".parse().unwrap();
        assert!(super::specs(&creds(&[("bob", "t")]), Some(3), Some(high))
            .unwrap_err()
            .contains("65535"));
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(super::specs(&creds(&[("bob", "t")]), Some(2), Some(any)).is_err());
        assert!(super::specs(&creds(&[("bob", "t")]), Some(1), Some(any)).is_ok());
    }

    #[test]
    fn sinks_out_of_range_or_unnamed_are_refused() {
        for n in [0, SINKS_MAX + 1] {
            let e = specs(&creds(&[("bob", "t")]), Some(n), None).unwrap_err();
            assert!(e.starts_with("--sinks"), "{e}");
        }
        assert!(specs(&creds(&[("", "t")]), Some(2), None).is_err());
    }

    fn fault(secs: u64, sink: usize) -> Fault {
        Fault {
            at: Duration::from_secs(secs),
            sink,
        }
    }

    const RUN: Duration = Duration::from_secs(10);

    #[test]
    fn a_schedule_is_sorted_by_time() {
        let downs = [fault(5, 2), fault(1, 1), fault(8, 2)];
        let ups = [fault(6, 2), fault(3, 1)];
        let s = schedule(&downs, &ups, 4, RUN).unwrap();
        let got: Vec<(u64, usize, Change)> = s
            .iter()
            .map(|e| (e.at.as_secs(), e.sink.index() + 1, e.change))
            .collect();
        assert_eq!(
            got,
            [
                (1, 1, Change::Down),
                (3, 1, Change::Up),
                (5, 2, Change::Down),
                (6, 2, Change::Up),
                (8, 2, Change::Down)
            ]
        );
        assert_eq!(
            down_intervals(&s, &[], SinkId::new(1)),
            [
                (Duration::from_secs(5), Some(Duration::from_secs(6))),
                (Duration::from_secs(8), None)
            ]
        );
        assert!(down_intervals(&s, &[], SinkId::new(3)).is_empty());
        // Applied late by a busy thread: down from the last thread's taking it down, back
        // from the first thread's bringing it up.
        let ms = Duration::from_millis;
        let mut applied = vec![None; s.len()];
        applied[2] = Some((ms(5_000), ms(5_700)));
        applied[3] = Some((ms(6_200), ms(6_900)));
        assert_eq!(
            down_intervals(&s, &applied, SinkId::new(1)),
            [(ms(5_700), Some(ms(6_200))), (ms(8_000), None)]
        );
    }

    #[test]
    fn bad_schedules_name_the_flag() {
        let cases: [(&[Fault], &[Fault], &str); 7] = [
            (
                &[fault(5, 9)],
                &[],
                "--sink-down-at 5s:9: there is no sink 9",
            ),
            (
                &[fault(5, 0)],
                &[],
                "--sink-down-at 5s:0: there is no sink 0",
            ),
            (
                &[fault(10, 1)],
                &[],
                "--sink-down-at 10s:1: 10.000 s is not within",
            ),
            (&[], &[fault(3, 1)], "--sink-up-at 3s:1: sink 1 is not down"),
            (
                &[fault(5, 1)],
                &[fault(3, 1)],
                "--sink-up-at 3s:1: sink 1 is not down",
            ),
            (
                &[fault(2, 1), fault(4, 1)],
                &[],
                "--sink-down-at 4s:1: sink 1 is already down",
            ),
            (
                &[fault(2, 1)],
                &[fault(2, 1)],
                "--sink-up-at 2s:1: sink 1 already changes",
            ),
        ];
        for (downs, ups, want) in cases {
            let e = schedule(downs, ups, 4, RUN).unwrap_err();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn faults_print_as_written() {
        assert_eq!(fault(5, 2).to_string(), "5s:2");
        let f = Fault {
            at: Duration::from_millis(2500),
            sink: 1,
        };
        assert_eq!(f.to_string(), "2500ms:1");
    }

    #[test]
    fn the_report_has_every_sink_as_long_as_the_timeline() {
        let mut total = Stats::new();
        total.on_sent(0);
        total.on_sent(2);
        total.on_sink_received(SinkId::new(0));
        total.on_sink_answered(SinkId::new(0), 1, SinkAnswer::Fulfilled { amount: 1 });
        let sinks = specs(&creds(&[("bob", "bob-secret")]), Some(2), None).unwrap();
        let schedule = schedule(&[fault(1, 2)], &[fault(2, 2)], 2, RUN).unwrap();
        let j = report_json(&total, &sinks, &schedule, 0.5);
        assert_eq!(j[0]["name"], "bob1");
        assert_eq!(j[0]["fulfilled_per_s"], json!([0, 1, 0]));
        assert_eq!(j[0]["down"], json!([]));
        assert_eq!(j[1]["received"], 0);
        assert_eq!(j[1]["fulfilled_per_s"], json!([0, 0, 0]));
        assert_eq!(j[1]["down"], json!([{"from_s": 1.5, "until_s": 2.5}]));
    }
}
