//! The cluster agent, sans I/O: for each peer whose limit is shared with other routers, how
//! much of the limit this router (box) holds in the shared store, and when to take or give
//! back headroom. It reads no clock (every call takes `now_ms`) and talks to the store only
//! through [`Store`], so the tests drive it against an in-memory store that can fail.
//!
//! For each shared peer the agent tracks two ceilings:
//!
//! - `granted`: the ceiling the store holds for this box (its entry in the peer's
//!   [`Record`]);
//! - the *local* ceiling: the one the peer's home core checks holds against, as that core
//!   last reported it in a [`Status`].
//!
//! It keeps `local <= granted` at every instant: a raise is written to the store first and
//! reaches the core after ([`Command::Raise`]); a lowering is made by the core first
//! ([`Command::Lower`], which never goes below what is in use) and written to the store
//! after. The store's compare-and-put keeps the sum of every box's `granted` within
//! `max_balance` whenever one grows. So when the store cannot be reached, the box keeps
//! forwarding on what it holds, then refuses (T04), and never grants itself more.
//!
//! One command per peer is in flight at a time: the agent waits until the core's status
//! carries the command's sequence number before it decides again.

use super::record::{key, BoxEntry, Record};
use crate::id::PeerId;

/// The shared store, as the agent needs it (etcd in the router, memory in tests).
pub trait Store {
    /// The record at `key` and its modification revision (0 when absent).
    fn read(&mut self, key: &str) -> Result<(Option<Record>, i64), String>;
    /// Writes `record` at `key` if its revision is still `revision`: `Ok(false)` when
    /// another writer came first.
    fn write(&mut self, key: &str, record: &Record, revision: i64) -> Result<bool, String>;
}

/// A shared peer, as the config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Its id.
    pub peer: PeerId,
    /// Its name (its key in the store).
    pub name: String,
    /// Its home core, which holds its ceiling.
    pub home: usize,
    /// Its limit, all boxes together.
    pub max_balance: u64,
}

/// What the home core reports of a shared peer at each tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// The last command it applied.
    pub seq: u64,
    /// Its ceiling.
    pub ceiling: i128,
    /// `posted + held`: what the ceiling must cover.
    pub used: i128,
    /// The posted balance (this box's part of the peer's balance).
    pub posted: i128,
    /// Holds on this box (the home core's, and headroom leased to the other cores).
    pub held: i128,
    /// Holds refused for want of headroom so far (a rise says more is wanted now).
    pub refused: u64,
}

/// What the agent asks of a home core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Raise the ceiling to `ceiling` (the store holds it already).
    Raise {
        /// Whose.
        peer: PeerId,
        /// The new ceiling.
        ceiling: i128,
        /// Reported back in [`Status::seq`] once applied.
        seq: u64,
    },
    /// Lower the ceiling towards `target`, not below what is in use.
    Lower {
        /// Whose.
        peer: PeerId,
        /// The ceiling wanted.
        target: i128,
        /// Reported back in [`Status::seq`] once applied.
        seq: u64,
    },
}

/// The agent's settings, from `[cluster_state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// This box's id in the store.
    pub box_id: String,
    /// The key prefix.
    pub prefix: String,
    /// How often posted balances are published.
    pub publish_ms: u64,
    /// Without traffic this long, unused headroom goes back.
    pub idle_ms: u64,
    /// Headroom is taken in chunks of `max_balance / chunk_divisor`.
    pub chunk_divisor: u64,
    /// This process, in every entry it writes (random at each start).
    pub instance: String,
}

/// Tallies, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentCounters {
    /// Transactions written.
    pub txn_ok: u64,
    /// Transactions lost to another writer (retried).
    pub txn_conflict: u64,
    /// Reads or writes that failed (the store unreachable or refusing).
    pub store_errors: u64,
    /// Times more headroom was wanted and the store had none to give.
    pub starved: u64,
}

/// A shared peer as the admin side shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub spec: PeerSpec,
    /// Whether this box has read and written its entry since it started.
    pub reconciled: bool,
    /// The ceiling the store holds for this box.
    pub granted: i128,
    /// The home core's last status.
    pub status: Option<Status>,
    /// The record as last read or written.
    pub record: Option<Record>,
    /// The last error from the store, if the last call failed.
    pub last_error: Option<String>,
}

/// A store call failed (counted, and retried after [`RETRY_MS`]).
#[derive(Debug)]
struct Failed;

/// Pause after a failed store call before the next try.
const RETRY_MS: u64 = 200;
/// Pause after the store had no headroom to give.
const STARVED_MS: u64 = 50;
/// How often the rate of use is estimated.
const RATE_MS: u64 = 100;
/// A box takes enough headroom for this long at the peer's present rate (at least a chunk).
const LEAD_MS: i128 = 500;
/// Compare-and-put attempts in one step.
const ATTEMPTS: usize = 4;

#[derive(Debug)]
struct PeerState {
    spec: PeerSpec,
    chunk: i128,
    reconciled: bool,
    granted: i128,
    /// A lowering made by the core, to be written to the store.
    lowered: Option<i128>,
    status: Option<Status>,
    seq_sent: u64,
    last_used: i128,
    last_refused: u64,
    /// Headroom used per second (an estimate), and where the estimate was last taken.
    rate: i128,
    rate_used: i128,
    rate_ms: u64,
    last_change_ms: u64,
    last_publish_ms: u64,
    published_posted: Option<i128>,
    retry_at_ms: u64,
    last_error: Option<String>,
    record: Option<Record>,
    /// Before reconciling again: lower the core's ceiling to this (a release while running).
    lower_first: Option<i128>,
}

/// The agent: the state of every shared peer.
#[derive(Debug)]
pub struct Agent {
    settings: Settings,
    peers: Vec<PeerState>,
    counters: AgentCounters,
    /// Set when another router writes this box's entries (see `check_own_entry`).
    fenced: Option<String>,
}

impl Agent {
    /// An agent with no peer yet.
    pub fn new(settings: Settings) -> Agent {
        Agent {
            settings,
            peers: Vec::new(),
            counters: AgentCounters::default(),
            fenced: None,
        }
    }

    /// Follows the config: peers not seen before are added (to reconcile first); a peer
    /// already known keeps its state. Peers are never dropped (a removed peer keeps its slot
    /// and its balance, and its entry in the store).
    pub fn follow(&mut self, specs: &[PeerSpec]) {
        for spec in specs {
            if self.peers.iter().any(|p| p.spec.peer == spec.peer) {
                continue;
            }
            let divisor = i128::from(self.settings.chunk_divisor.max(1));
            self.peers.push(PeerState {
                chunk: (i128::from(spec.max_balance) / divisor).max(1),
                spec: spec.clone(),
                reconciled: false,
                granted: 0,
                lowered: None,
                status: None,
                seq_sent: 0,
                last_used: 0,
                last_refused: 0,
                rate: 0,
                rate_used: 0,
                rate_ms: 0,
                last_change_ms: 0,
                last_publish_ms: 0,
                published_posted: None,
                retry_at_ms: 0,
                last_error: None,
                record: None,
                lower_first: None,
            });
        }
    }

    /// The home core's status of `peer`.
    pub fn on_status(&mut self, peer: PeerId, status: Status) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.spec.peer == peer) {
            p.status = Some(status);
        }
    }

    /// One round: for each peer whose last command was applied, reconcile, take headroom,
    /// give it back or publish, as needed. Commands for the home cores go to `out`
    /// (`(core, command)`).
    pub fn step(&mut self, now_ms: u64, store: &mut dyn Store, out: &mut Vec<(usize, Command)>) {
        for index in 0..self.peers.len() {
            self.step_peer(index, now_ms, store, out);
        }
    }

    fn step_peer(
        &mut self,
        index: usize,
        now: u64,
        store: &mut dyn Store,
        out: &mut Vec<(usize, Command)>,
    ) {
        let p = &mut self.peers[index];
        let Some(st) = p.status else { return };
        if p.reconciled && now.saturating_sub(p.rate_ms) >= RATE_MS {
            // How fast the peer uses headroom (what it grows by; an EWMA over RATE_MS periods).
            let grown = (st.used - p.rate_used).max(0);
            let per_s = grown.saturating_mul(1000) / i128::from(now - p.rate_ms);
            p.rate = (p.rate + per_s) / 2;
            p.rate_used = st.used;
            p.rate_ms = now;
        }
        if st.seq != p.seq_sent || now < p.retry_at_ms {
            return;
        }
        if self.fenced.is_some() {
            // Another router has this box_id: spend nothing more than is in use.
            if st.ceiling > st.used {
                let target = st.used;
                self.command(index, |peer, seq| Command::Lower { peer, target, seq }, out);
            }
            return;
        }
        if let Some(target) = p.lower_first.take() {
            self.command(index, |peer, seq| Command::Lower { peer, target, seq }, out);
            return;
        }
        if !p.reconciled {
            self.reconcile(index, now, st, store);
            return;
        }
        if st.used != p.last_used || st.held != 0 || st.refused != p.last_refused {
            p.last_used = st.used;
            p.last_change_ms = now;
        }
        let wanted = st.refused != p.last_refused;
        p.last_refused = st.refused;
        // The core lowered its ceiling: the store is to hold no more than that.
        if st.ceiling < p.granted {
            p.lowered = Some(st.ceiling);
        }
        let idle = now.saturating_sub(p.last_change_ms) >= self.settings.idle_ms;
        let headroom = st.ceiling - st.used;
        let chunk = p.chunk;
        // At least a chunk, and what the peer uses in LEAD_MS at its present rate: a fast peer
        // takes larger pieces, so the store sees a few transactions a second at any rate.
        let want = chunk.max(p.rate.saturating_mul(LEAD_MS) / 1000);
        if wanted || (!idle && headroom < (want / 2).max(1)) {
            self.take(index, now, st, want, store, out);
            return;
        }
        let target = if idle {
            st.used + chunk / 4
        } else if headroom > 3 * want {
            st.used + want
        } else {
            st.ceiling
        };
        if target < st.ceiling {
            self.command(index, |peer, seq| Command::Lower { peer, target, seq }, out);
            return;
        }
        let p = &self.peers[index];
        let publish = p.published_posted != Some(st.posted)
            && now.saturating_sub(p.last_publish_ms) >= self.settings.publish_ms;
        if p.lowered.is_some() || publish {
            // Never below the core's ceiling: that is what holds may reach.
            self.write_own(index, now, st, st.ceiling, store);
        }
    }

    /// Sends the next command of peer `index` to its home core.
    fn command(
        &mut self,
        index: usize,
        make: impl FnOnce(PeerId, u64) -> Command,
        out: &mut Vec<(usize, Command)>,
    ) {
        let p = &mut self.peers[index];
        p.seq_sent += 1;
        let command = make(p.spec.peer, p.seq_sent);
        out.push((p.spec.home, command));
    }

    /// Once after start: this box's entry is set from what the store held for it (a
    /// restarted box takes back what it held, never a second share) and at least what is in
    /// use now (the posted balance recovered from its own ledger).
    fn reconcile(&mut self, index: usize, now: u64, st: Status, store: &mut dyn Store) {
        let box_id = self.settings.box_id.clone();
        let name = self.peers[index].spec.name.clone();
        let max_balance = self.peers[index].spec.max_balance;
        let mut outcome = None;
        let result = self.update(index, now, store, |record| {
            let held = record.boxes.get(&box_id).map(|e| e.ceiling);
            // At least what is in use and what the core may already reach (a reconcile after
            // a release comes after the core came down as far as it could).
            let ceiling = held.unwrap_or(st.used).max(st.used).max(st.ceiling);
            let others = record.ceilings_except(&box_id);
            outcome = Some((held, ceiling, others));
            Some(BoxEntry {
                ceiling,
                posted: st.posted,
                at_ms: now,
                released: None,
                instance: String::new(), // set by `update`
            })
        });
        if let (Ok(true), Some((held, ceiling, others))) = (result, outcome) {
            let p = &mut self.peers[index];
            p.reconciled = true;
            p.granted = ceiling;
            p.last_change_ms = now;
            p.last_used = st.used;
            p.last_refused = st.refused;
            p.rate_used = st.used;
            p.rate_ms = now;
            p.published_posted = Some(st.posted);
            p.last_publish_ms = now;
            tracing::info!(peer = %name, box_id = %box_id, ?held, ceiling = %ceiling,
                posted = %st.posted, others = %others, "shared limit reconciled");
            if others + ceiling > i128::from(max_balance) {
                tracing::warn!(peer = %name, others = %others, ceiling = %ceiling,
                    max_balance, "the boxes together hold more than max_balance (a box's posted \
                    balance passed what was released for it): no box takes more until it is back \
                    within");
            }
        }
    }

    /// Takes more headroom: this box's ceiling becomes `used + want`, or what the other
    /// boxes leave of `max_balance` if less, in one compare-and-put.
    fn take(
        &mut self,
        index: usize,
        now: u64,
        st: Status,
        want: i128,
        store: &mut dyn Store,
        out: &mut Vec<(usize, Command)>,
    ) {
        let box_id = self.settings.box_id.clone();
        let p = &self.peers[index];
        let (max_balance, floor) = (i128::from(p.spec.max_balance), st.ceiling);
        let mut new = None;
        let result = self.update(index, now, store, |record| {
            let room = max_balance - record.ceilings_except(&box_id);
            let ceiling = (st.used + want).min(room).max(floor);
            if ceiling <= floor {
                new = None;
                return None;
            }
            new = Some(ceiling);
            Some(BoxEntry {
                ceiling,
                posted: st.posted,
                at_ms: now,
                released: None,
                instance: String::new(), // set by `update`
            })
        });
        let p = &mut self.peers[index];
        match (result, new) {
            (Ok(true), Some(ceiling)) => {
                p.granted = ceiling;
                p.lowered = None;
                p.published_posted = Some(st.posted);
                p.last_publish_ms = now;
                self.command(
                    index,
                    |peer, seq| Command::Raise { peer, ceiling, seq },
                    out,
                );
            }
            (Ok(_), None) => {
                self.counters.starved += 1;
                p.retry_at_ms = now + STARVED_MS;
            }
            _ => {}
        }
    }

    /// Writes this box's entry: `ceiling` (never above what the store holds for it) and the
    /// posted balance.
    fn write_own(
        &mut self,
        index: usize,
        now: u64,
        st: Status,
        ceiling: i128,
        store: &mut dyn Store,
    ) {
        let result = self.update(index, now, store, |_| {
            Some(BoxEntry {
                ceiling,
                posted: st.posted,
                at_ms: now,
                released: None,
                instance: String::new(), // set by `update`
            })
        });
        if let Ok(true) = result {
            let p = &mut self.peers[index];
            p.granted = ceiling;
            p.lowered = None;
            p.published_posted = Some(st.posted);
            p.last_publish_ms = now;
        }
    }

    /// Read, change this box's entry, compare-and-put; again on a conflict. `change` answers
    /// the new entry, or `None` to write nothing. `Ok(true)`: written; `Ok(false)`: nothing
    /// to write; `Err`: the store failed (counted, retried after a pause) or kept conflicting.
    fn update(
        &mut self,
        index: usize,
        now: u64,
        store: &mut dyn Store,
        mut change: impl FnMut(&Record) -> Option<BoxEntry>,
    ) -> Result<bool, Failed> {
        let box_id = self.settings.box_id.clone();
        let key = key(&self.settings.prefix, &self.peers[index].spec.name);
        let max_balance = self.peers[index].spec.max_balance;
        for _ in 0..ATTEMPTS {
            let read = store.read(&key);
            let (record, revision) = match read {
                Ok(found) => found,
                Err(e) => return Err(self.failed(index, now, e)),
            };
            let mut record = record.unwrap_or_default();
            if let Some(refusal) = self.check_own_entry(index, &record) {
                return Err(self.failed(index, now, refusal));
            }
            let Some(mut entry) = change(&record) else {
                self.peers[index].record = Some(record);
                return Ok(false);
            };
            record.max_balance = max_balance;
            entry.instance.clone_from(&self.settings.instance);
            record.boxes.insert(box_id.clone(), entry);
            match store.write(&key, &record, revision) {
                Ok(true) => {
                    self.counters.txn_ok += 1;
                    let p = &mut self.peers[index];
                    p.record = Some(record);
                    p.last_error = None;
                    return Ok(true);
                }
                Ok(false) => self.counters.txn_conflict += 1,
                Err(e) => return Err(self.failed(index, now, e)),
            }
        }
        Err(self.failed(index, now, "kept losing to other writers".into()))
    }

    /// After this box wrote its entry, only this process may change it (but an operator's
    /// release): another process writing it means a second router runs with this `box_id`;
    /// this one then stops taking headroom for good (it is *fenced*), since the two would
    /// overwrite each other's share. A release while this router runs takes its share from
    /// under it: the core comes down to the released ceiling (or what is in use), and the box
    /// reconciles again. `Some` says why this update does not go ahead.
    fn check_own_entry(&mut self, index: usize, record: &Record) -> Option<String> {
        let box_id = &self.settings.box_id;
        let entry = record.boxes.get(box_id)?;
        let p = &mut self.peers[index];
        if !p.reconciled {
            return None;
        }
        if !entry.instance.is_empty() && entry.instance != self.settings.instance {
            let why = format!(
                "box_id {box_id:?} is written by another router too (instance {}, this one {}): \
                 give every router its own box_id; this one takes no more headroom",
                entry.instance, self.settings.instance
            );
            if self.fenced.is_none() {
                tracing::error!("{why}");
            }
            self.fenced = Some(why.clone());
            return Some(why);
        }
        if let Some(reason) = &entry.released {
            tracing::warn!(peer = %p.spec.name, reason = %reason, ceiling = %entry.ceiling,
                "an operator released this router's share while it runs: coming down to it");
            p.reconciled = false;
            p.lower_first = Some(entry.ceiling);
            return Some(format!("released by an operator while running ({reason})"));
        }
        None
    }

    fn failed(&mut self, index: usize, now: u64, error: String) -> Failed {
        self.counters.store_errors += 1;
        let p = &mut self.peers[index];
        if p.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(peer = %p.spec.name, error = %error, "shared store call failed; \
                forwarding goes on with the headroom held");
        }
        p.last_error = Some(error);
        p.retry_at_ms = now + RETRY_MS;
        Failed
    }

    /// At a graceful stop, once the cores have stopped (the statuses are their last: no hold
    /// can be placed any more): each box entry's ceiling comes down to the posted balance,
    /// which is published.
    pub fn stop(&mut self, now_ms: u64, store: &mut dyn Store) {
        for index in 0..self.peers.len() {
            let p = &self.peers[index];
            let Some(st) = p.status else { continue };
            if !p.reconciled {
                continue;
            }
            let ceiling = st.posted.min(p.granted);
            self.peers[index].retry_at_ms = 0;
            self.write_own(index, now_ms, st, ceiling, store);
        }
    }

    /// Why this box takes no more headroom, if another router writes its entries.
    pub fn fenced(&self) -> Option<&str> {
        self.fenced.as_deref()
    }

    /// The counters.
    pub fn counters(&self) -> AgentCounters {
        self.counters
    }

    /// Every shared peer, for the admin side.
    pub fn view(&self) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|p| PeerView {
                spec: p.spec.clone(),
                reconciled: p.reconciled,
                granted: p.granted.min(p.lowered.unwrap_or(p.granted)),
                status: p.status,
                record: p.record.clone(),
                last_error: p.last_error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
