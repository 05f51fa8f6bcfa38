//! The open loop's clock: when each Prepare is meant to go, and a task that wakes for it.
//!
//! `Schedule` is one sender connection's list of intended send times: the k-th Prepare goes at
//! `begin + k × period`, computed from k each time (no drift, whatever the rate). The run's
//! sender connections share the rate evenly and are staggered by a fraction of the period, so
//! together they send at evenly spaced instants rather than in step. A schedule hands out a
//! time only once it is due (`pop_due`): nothing goes early, and a late look hands out exactly
//! what fell due meanwhile, no more.
//!
//! `pace` is the load thread's pacer task. It sends what is due on every connection, then waits
//! for the earliest next intended time. When that time is far it sleeps (the thread may park)
//! until `spin` (`--pacer-spin-us`) before it; a wake-up from a park is late by the kernel's
//! wake-up latency, and the spin absorbs it. When the time is near the thread does not park:
//! its executor is built to spin at least that long before it parks (`run`), polling its
//! timers and its rings, so answers that arrive meanwhile are read at once. The pacer's timer
//! fires `LAST_MILE_NS` before the intended time and the pacer spins the rest of the way on the
//! clock itself: the executor's pass from a fired timer to the task (it polls and rearms its
//! rings, a few system calls, several µs in a virtual machine) is then behind it, and the
//! Prepare goes within a microsecond or so of its time. That spin holds the thread for at most
//! `LAST_MILE_NS`, and every wait ends at least `PASS_MIN_NS` ahead, so the executor polls
//! its rings between any two passes of the pacer, whatever the rate (at a rate faster than
//! those passes, each pass sends what fell due since the last). Sleeps are short naps
//! (`NAP_MAX_NS`). With `--pacer-spin-us 0` the pacer only sleeps.
//!
//! Latency still counts from the intended time. What the sender itself adds is measured as
//! *send lateness*: when the connection's writer hands the Prepare to the socket, minus its
//! intended time (`Stats::on_send_lateness`).

use crate::worker::Link;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One sender connection's intended send times, in ns on the run's clock.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    begin_ns: u64,
    period_ns: f64,
    /// Prepares handed out so far: the next is number `issued`.
    issued: u64,
}

impl Schedule {
    /// Every `period_ns` from `begin_ns`.
    pub(crate) fn new(begin_ns: u64, period_ns: f64) -> Schedule {
        assert!(
            period_ns.is_finite() && period_ns > 0.0,
            "a positive period: checked at start (--rate)"
        );
        Schedule {
            begin_ns,
            period_ns,
            issued: 0,
        }
    }

    /// Sender connection `ordinal` of `senders` (all threads together), each sending
    /// `rate_per_conn` per second from `send_start_ns`: connection j starts j/senders of a
    /// period late, so the run's Prepares are evenly spaced at `rate_per_conn × senders`.
    pub(crate) fn staggered(
        send_start_ns: u64,
        rate_per_conn: f64,
        senders: usize,
        ordinal: usize,
    ) -> Schedule {
        let period_ns = 1e9 / rate_per_conn;
        let offset = period_ns * ordinal as f64 / senders.max(1) as f64;
        Schedule::new(send_start_ns + offset as u64, period_ns)
    }

    /// The intended time of Prepare `k`.
    pub(crate) fn at(&self, k: u64) -> u64 {
        self.begin_ns + (k as f64 * self.period_ns).round() as u64
    }

    /// The intended time of the next Prepare not yet handed out.
    pub(crate) fn next_ns(&self) -> u64 {
        self.at(self.issued)
    }

    /// The next intended time, if it is due at `now_ns` (then it is handed out).
    pub(crate) fn pop_due(&mut self, now_ns: u64) -> Option<u64> {
        let next = self.next_ns();
        (next <= now_ns).then(|| {
            self.issued += 1;
            next
        })
    }
}

/// What the pacer does until the next intended time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Something is due that no connection could take (one is dialling again, or its backlog
    /// is full): pause, then look again.
    Stuck,
    /// Far: sleep until `until_ns` (`spin` before the intended time, or a nap), then look again.
    Sleep { until_ns: u64 },
    /// Near: a timer for `wake_ns` (the executor spins, it does not park), then the pacer spins
    /// on the clock itself until `until_ns`, the intended time.
    Spin { wake_ns: u64, until_ns: u64 },
}

/// How the pacer waits, in ns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    /// Within this of the intended time the thread does not park (`--pacer-spin-us`).
    pub(crate) spin_ns: u64,
    /// Within this of it the pacer task spins on the clock itself (at most `spin_ns`).
    pub(crate) last_mile_ns: u64,
    /// The longest sleep at a time.
    pub(crate) nap_ns: u64,
}

/// The end of the spin that the pacer task spends on the clock itself, not in the executor: more
/// than the executor's pass from a fired timer to the task.
const LAST_MILE_NS: u64 = 20_000;

/// The longest the pacer sleeps at a time. In a virtual machine a CPU that halts for longer
/// than the host's halt polling (KVM polls 200 µs by default) is handed to other work, and
/// getting it back can take milliseconds; short naps keep it. Elsewhere they cost a wake-up
/// every so often.
const NAP_MAX_NS: u64 = 150_000;

/// Every wait ends at least this far ahead, so that the pacer's timer is never ready when it is
/// made and the executor polls its rings (answers come in) between any two passes of the pacer.
const PASS_MIN_NS: u64 = 1_000;

/// How long the pacer pauses when it is stuck.
const STUCK_PAUSE: Duration = Duration::from_micros(100);

impl Pacing {
    /// `--pacer-spin-us`.
    pub(crate) fn new(spin: Duration) -> Pacing {
        let spin_ns = spin.as_nanos() as u64;
        Pacing {
            spin_ns,
            last_mile_ns: spin_ns.min(LAST_MILE_NS),
            nap_ns: NAP_MAX_NS,
        }
    }

    /// How to wait from `now_ns` for the next intended time `next_ns`.
    pub(crate) fn wait(&self, next_ns: u64, now_ns: u64) -> Wait {
        let soonest = now_ns + PASS_MIN_NS;
        if next_ns <= now_ns {
            Wait::Stuck
        } else if next_ns - now_ns > self.spin_ns {
            Wait::Sleep {
                until_ns: (next_ns - self.spin_ns)
                    .min(now_ns + self.nap_ns)
                    .max(soonest),
            }
        } else {
            Wait::Spin {
                wake_ns: next_ns.saturating_sub(self.last_mile_ns).max(soonest),
                until_ns: next_ns,
            }
        }
    }
}

/// The executor's spin before it parks, for a pacer spinning `spin`: long enough that a thread
/// woken up to `spin` early is still spinning at the intended time.
pub(crate) fn executor_spin(spin: Duration) -> Duration {
    (spin + Duration::from_micros(20)).max(Duration::from_micros(50))
}

/// The pacer task of one load thread (open loop): sends every Prepare of `senders` at its
/// intended time until the run stops. `start` is the run's clock.
pub(crate) async fn pace(
    senders: Rc<Vec<Link>>,
    start: Instant,
    pacing: Pacing,
    stop: impl Fn() -> bool,
) {
    let clock = || start.elapsed().as_nanos() as u64;
    let sleep_until = |ns: u64| {
        let at = start + Duration::from_nanos(ns);
        glommio::timer::sleep(at.saturating_duration_since(Instant::now()))
    };
    while !stop() {
        // Whatever is due goes now, on every connection; then the earliest next time.
        let mut next = u64::MAX;
        for c in senders.iter() {
            c.refill();
            if let Some(n) = c.next_send_ns() {
                next = next.min(n);
            }
        }
        if next == u64::MAX {
            return;
        }
        match pacing.wait(next, clock()) {
            Wait::Stuck => glommio::timer::sleep(STUCK_PAUSE).await,
            // Then near (or late, by the wake-up): the next look spins the rest of the way.
            Wait::Sleep { until_ns } => sleep_until(until_ns).await,
            Wait::Spin { wake_ns, until_ns } => {
                sleep_until(wake_ns).await;
                // The executor's pass is behind us: the last of the way on the clock, here.
                while clock() < until_ns {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Pops everything due at `now`.
    fn drain(s: &mut Schedule, now: u64) -> Vec<u64> {
        std::iter::from_fn(|| s.pop_due(now)).collect()
    }

    #[test]
    fn nothing_goes_early_and_a_late_look_gets_only_what_is_due() {
        // 1000/s from t = 5 ms.
        let mut s = Schedule::new(5_000_000, 1e6);
        assert_eq!(drain(&mut s, 0), Vec::<u64>::new());
        assert_eq!(drain(&mut s, 4_999_999), Vec::<u64>::new());
        assert_eq!(drain(&mut s, 5_000_000), [5_000_000]);
        // Not again, and not the next one a nanosecond early.
        assert_eq!(drain(&mut s, 5_999_999), Vec::<u64>::new());
        assert_eq!(s.next_ns(), 6_000_000);
        // A look 3.5 periods late gets the three that fell due, each at its own time, and
        // leaves the fourth for later.
        assert_eq!(drain(&mut s, 8_500_000), [6_000_000, 7_000_000, 8_000_000]);
        assert_eq!(s.next_ns(), 9_000_000);
        // Every time handed out is at or before the clock that handed it out.
        let mut s = Schedule::new(0, 333.0);
        let mut now = 0;
        let mut handed = 0;
        while now < 1_000_000 {
            for t in drain(&mut s, now) {
                assert!(t <= now, "{t} handed out at {now}");
                assert_eq!(t, s.at(handed));
                handed += 1;
            }
            now += 997;
        }
        // Exactly the times in [0, now - 997]: those due at the last look.
        assert_eq!(handed, (now - 997) / 333 + 1);
    }

    #[test]
    fn a_fractional_period_does_not_drift() {
        // 3 per second: the period is 333 333 333.3 ns; Prepare 3 goes at exactly 1 s and
        // Prepare 3 000 at exactly 1 000 s.
        let s = Schedule::new(0, 1e9 / 3.0);
        assert_eq!(s.at(3), 1_000_000_000);
        assert_eq!(s.at(3_000), 1_000_000_000_000);
        // 7 per second over an hour: 25 200 Prepares, the last one due just before 3600 s.
        let mut s = Schedule::new(0, 1e9 / 7.0);
        assert_eq!(drain(&mut s, 3_600_000_000_000 - 1).len(), 25_200);
    }

    #[test]
    fn staggered_connections_interleave_evenly() {
        // 4 connections at 250/s each: together 1000/s, one every millisecond.
        let mut all: Vec<u64> = (0..4)
            .flat_map(|j| {
                let mut s = Schedule::staggered(10_000_000, 250.0, 4, j);
                drain(&mut s, 10_000_000 + 20_000_000 - 1)
            })
            .collect();
        all.sort_unstable();
        let expected: Vec<u64> = (0..20).map(|k| 10_000_000 + k * 1_000_000).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn the_pacer_sleeps_when_far_and_spins_when_near() {
        let pacing = Pacing {
            spin_ns: 80_000,
            last_mile_ns: 20_000,
            nap_ns: 150_000,
        };
        assert_eq!(pacing.wait(1_000, 1_000), Wait::Stuck);
        assert_eq!(pacing.wait(1_000, 5_000), Wait::Stuck);
        // Far: naps, each short, the last one ending where the spin starts.
        assert_eq!(pacing.wait(1_000_000, 0), Wait::Sleep { until_ns: 150_000 });
        assert_eq!(
            pacing.wait(1_000_000, 800_000),
            Wait::Sleep { until_ns: 920_000 }
        );
        // Near: awake from 80 µs before, the pacer itself on the clock for the last 20 µs.
        assert_eq!(
            pacing.wait(1_000_000, 920_000),
            Wait::Spin {
                wake_ns: 980_000,
                until_ns: 1_000_000
            }
        );
        // Nearer than the last mile: still a pass of the executor first.
        assert_eq!(
            pacing.wait(1_000_000, 999_500),
            Wait::Spin {
                wake_ns: 1_000_500,
                until_ns: 1_000_000
            }
        );
        // No spin: sleep to the intended time itself.
        let sleepy = Pacing::new(Duration::ZERO);
        assert_eq!(
            sleepy.wait(1_000_000, 990_000),
            Wait::Sleep {
                until_ns: 1_000_000
            }
        );
        // The executor outspins the pacer.
        assert!(executor_spin(Duration::from_nanos(80_000)) > Duration::from_nanos(80_000));
        assert_eq!(executor_spin(Duration::ZERO), Duration::from_micros(50));
    }

    #[test]
    fn every_wait_yields_to_the_executor_and_none_oversleeps() {
        // Whatever the rate and the clock: a wait always ends ahead of now (the executor polls
        // its rings meanwhile), never sleeps into the spin before the intended time, never
        // parks past it, and the pacer's own spin on the clock is at most the last mile.
        for spin_us in [0, 10, 20, 100, 1000] {
            let pacing = Pacing::new(Duration::from_micros(spin_us));
            for now in [0u64, 999, 1_000_000] {
                for ahead in [
                    1u64, 500, 999, 1_000, 19_999, 20_001, 99_999, 100_001, 5_000_000,
                ] {
                    let next = now + ahead;
                    match pacing.wait(next, now) {
                        Wait::Stuck => panic!("{next} is not due at {now}"),
                        Wait::Sleep { until_ns } => {
                            assert!(until_ns >= now + PASS_MIN_NS);
                            assert!(until_ns <= (next - pacing.spin_ns).max(now + PASS_MIN_NS));
                            assert!(until_ns <= now + NAP_MAX_NS);
                        }
                        Wait::Spin { wake_ns, until_ns } => {
                            assert!(ahead <= pacing.spin_ns);
                            assert_eq!(until_ns, next);
                            assert!(wake_ns >= now + PASS_MIN_NS);
                            assert!(until_ns.saturating_sub(wake_ns) <= LAST_MILE_NS);
                        }
                    }
                }
            }
        }
    }
}
