//! What each core tells the admin side: a [`CoreReport`] (its counters, and per peer its
//! traffic, balance part, holds, in-flight counts and link state), built only when asked.
//!
//! The admin thread raises [`ReportHub::request`]; each core, at its next tick, sees the
//! request number above the last one it answered, builds a report and swaps it into its slot
//! (a mutex held for a pointer swap, on the tick, never on the packet path); the admin thread
//! waits until every core's slot holds an answer to its request, or a deadline. So nothing is
//! copied while nobody reads the metrics, and a scrape costs each core one report.

use super::links::LinkCounters;
use super::RuntimeCounters;
use crate::engine::stats::PeerStats;
use crate::engine::{Counters, HealthCounters};
use crate::link::btp::Counters as BtpCounters;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One peer, as one core sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerReport {
    /// Traffic counters.
    pub(crate) stats: PeerStats,
    /// This core's part of the peer's posted balance (the §7 sign: positive, it owes us).
    pub(crate) posted: i128,
    /// Holds on this core (its Prepares in flight here).
    pub(crate) held: i128,
    /// Prepares from the peer in flight on this core.
    pub(crate) in_flight_in: u64,
    /// Prepares to the peer in flight on this core.
    pub(crate) in_flight_out: u64,
    /// Its links on this core.
    pub(crate) links: u64,
    /// Whether this core's engine may send it Prepares (a link on some core, or an HTTP peer
    /// that can be reached).
    pub(crate) link_up: bool,
    /// Ejected from its group on this core.
    pub(crate) ejected: bool,
    /// New Prepares from and to it are refused (`POST /peers/{name}/drain`).
    pub(crate) draining: bool,
}

/// One core's report.
#[derive(Debug, Clone, Default)]
pub(crate) struct CoreReport {
    /// The core.
    pub(crate) core: usize,
    /// Its thread id (for its CPU time in `/proc/self/task/<tid>/schedstat`).
    pub(crate) tid: i32,
    /// The answer to this request number.
    pub(crate) request: u64,
    /// Per peer, by `PeerId`.
    pub(crate) peers: Vec<PeerReport>,
    /// The engine's counters.
    pub(crate) engine: Counters,
    /// Backend health counters.
    pub(crate) health: HealthCounters,
    /// The runtime's counters.
    pub(crate) runtime: RuntimeCounters,
    /// Link gauges and overflows.
    pub(crate) links: LinkCounters,
    /// BTP session tallies, closed links and open ones together.
    pub(crate) btp: BtpCounters,
    /// Messages for other cores waiting for room.
    pub(crate) mesh_backlog: u64,
}

/// Where cores leave their reports for the admin side.
#[derive(Debug)]
pub(crate) struct ReportHub {
    requested: AtomicU64,
    slots: Vec<Mutex<Option<Arc<CoreReport>>>>,
}

impl ReportHub {
    /// A hub for `cores` cores.
    pub(crate) fn new(cores: usize) -> ReportHub {
        ReportHub {
            requested: AtomicU64::new(0),
            slots: (0..cores).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The latest request number (cores compare it with the last they answered).
    #[inline]
    pub(crate) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Leaves `report` in its core's slot.
    pub(crate) fn publish(&self, report: CoreReport) {
        let core = report.core;
        let report = Arc::new(report);
        // A poisoned slot only means a reader panicked; the report is still good.
        let mut slot = self.slots[core].lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(report);
    }

    /// Asks every core for a report and waits up to `deadline` for them. Returns what each
    /// core published last (`None` for a core that never did); a core that did not answer
    /// in time gives its previous report, older than this request (see
    /// [`CoreReport::request`]).
    pub(crate) fn collect(&self, deadline: Duration) -> Vec<Option<Arc<CoreReport>>> {
        let request = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let start = Instant::now();
        loop {
            let reports = self.latest();
            let answered = reports
                .iter()
                .all(|r| r.as_ref().is_some_and(|r| r.request >= request));
            if answered || start.elapsed() >= deadline {
                return reports;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// What each core published last.
    pub(crate) fn latest(&self) -> Vec<Option<Arc<CoreReport>>> {
        self.slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}

/// Adds BTP session tallies.
pub(crate) fn add_btp(total: &mut BtpCounters, more: &BtpCounters) {
    total.unreadable += more.unreadable;
    total.ignored += more.ignored;
    total.auth_failures += more.auth_failures;
    total.prepares += more.prepares;
    total.replies += more.replies;
    total.reply_errors += more.reply_errors;
    total.refused += more.refused;
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn collect_waits_for_every_core_then_gives_the_latest() {
        let hub = Arc::new(ReportHub::new(2));
        assert!(hub.latest().iter().all(Option::is_none));
        // Nobody answers: the deadline returns what there is.
        let reports = hub.collect(Duration::from_millis(5));
        assert!(reports.iter().all(Option::is_none));
        let cores: Vec<_> = (0..2)
            .map(|core| {
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || {
                    let mut answered = 0;
                    for _ in 0..2000 {
                        let wanted = hub.requested();
                        if wanted > answered {
                            hub.publish(CoreReport {
                                core,
                                request: wanted,
                                ..CoreReport::default()
                            });
                            answered = wanted;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        let reports = hub.collect(Duration::from_secs(10));
        assert_eq!(reports.len(), 2);
        for (core, report) in reports.iter().enumerate() {
            let report = report.as_ref().expect("answered");
            assert_eq!(report.core, core);
            assert_eq!(report.request, 2);
        }
        for c in cores {
            c.join().unwrap();
        }
    }
}
