//! The backends of every group on one core: which can take a Prepare now (link up, not
//! ejected, under its in-flight cap), passive health from the answers they give, and the
//! choice of one for each Prepare routed to a group.
//!
//! Health is per core, like everything the engine keeps, so no lock and no message is needed:
//! each core judges a backend by the Prepares it sent it. A backend leaves its groups' tables
//! when its link goes down, and is *ejected* (Envoy's outlier detection) when, of its last
//! `outlier_window` answered Prepares, more than `outlier_failure_percent` % failed: T00, T01
//! or R00 from it, a reply that did not decode or carried a wrong fulfillment, no answer by the
//! expiry, or its link failing under the request. An ejection lasts `ejection_base_ms` times
//! the number of recent ejections (growing back-off, at most `ejection_max_ms`; the count
//! drops by one for every `ejection_base_ms` a backend stayed in since its last return), and
//! never more than `max_ejection_percent` of a group is ejected at once (at least one backend
//! may be). Changes are counted and queued as [`HealthEvent`]s for the log.

use super::group::{Backend, Group, Policy};

use super::{GroupId, PeerId};
use std::collections::VecDeque;

/// The most answers the outlier window can hold.
pub const OUTLIER_WINDOW_MAX: u32 = 32;

/// Health events kept until the runtime logs them; older ones are dropped (and counted).
const EVENTS_MAX: usize = 256;

/// Passive health settings of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Answers considered (1..=[`OUTLIER_WINDOW_MAX`]); 0 turns ejection off.
    pub window: u32,
    /// Eject when more than this percentage of the window failed.
    pub failure_percent: u32,
    /// The first ejection's length; the n-th recent one lasts n times this.
    pub ejection_base_ms: u64,
    /// The longest ejection.
    pub ejection_max_ms: u64,
    /// The most of a group ejected at once, in percent of its backends (at least one).
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            window: 20,
            failure_percent: 50,
            ejection_base_ms: 5_000,
            ejection_max_ms: 300_000,
            max_ejection_percent: 50,
        }
    }
}

/// One group, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Its name (for the log).
    pub name: String,
    /// Its backends: distinct peers of one asset code and scale, each in no other group.
    pub backends: Vec<Backend>,
    /// How a backend is chosen.
    pub policy: Policy,
    /// Passive health.
    pub outlier: OutlierConfig,
    /// Prepares in flight to each backend on this core before it counts as full; 0: no cap.
    pub backend_in_flight_max: u32,
}

/// What changed about a backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Ejected for `ms`: `failed` of its last `of` answers failed.
    Ejected { ms: u64, failed: u32, of: u32 },
    /// Would have been ejected, but `max_ejection_percent` of its group already is.
    EjectionRefused { failed: u32, of: u32 },
    /// Its ejection ended.
    Returned,
}

/// A health change, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthEvent {
    /// The backend.
    pub peer: PeerId,
    /// Its group.
    pub group: GroupId,
    /// What happened.
    pub change: HealthChange,
}

/// Health counters (this core).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCounters {
    /// Backends ejected.
    pub ejections: u64,
    /// Ejections refused by `max_ejection_percent`.
    pub ejections_refused: u64,
    /// Ejections that ended.
    pub returns: u64,
    /// Prepares sent to a backend other than the group's first choice (it was full).
    pub failovers: u64,
    /// Prepares moved to another backend because the write to theirs failed before a byte
    /// left ([`super::Engine::reroute`]).
    pub rerouted: u64,
    /// Health events dropped before the runtime read them.
    pub events_dropped: u64,
}

/// One backend's health on this core.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    link_up: bool,
    /// Ejected until this time (Unix ms).
    ejected_until: Option<i64>,
    /// Recent ejections: the next one lasts this many plus one base lengths.
    ejections: u32,
    /// When its last ejection ended.
    returned_at: i64,
    /// The last answers, newest in bit 0: 1 failed.
    outcomes: u32,
    /// How many of `outcomes` are real (at most the window).
    seen: u32,
    /// Whether its group's table counts it as up now: the runtime restates link state every
    /// tick, and the table is touched only when this changes.
    in_table: bool,
}

/// No group: the peer is not a backend.
const NO_GROUP: u16 = u16::MAX;

/// The groups and their backends' health on one core.
#[derive(Debug)]
pub struct Backends {
    groups: Vec<Group>,
    configs: Vec<GroupConfig>,
    /// Per peer: its group, or [`NO_GROUP`].
    group_of: Vec<u16>,
    /// Per peer (meaningful for backends only).
    health: Vec<Health>,
    /// Per peer: Prepares in flight to it on this core (every peer, not only backends).
    in_flight: Vec<u32>,
    /// Per peer: the cap on `in_flight` when chosen in a group (`u32::MAX`: none).
    cap: Vec<u32>,
    /// Backends ejected now.
    ejected: Vec<PeerId>,
    events: VecDeque<HealthEvent>,
    counters: HealthCounters,
}

impl Backends {
    /// The groups of `configs` over `peers` peers, every backend down.
    ///
    /// # Panics
    /// When a peer is in two groups, or a group is empty (the config checks both).
    pub fn new(configs: Vec<GroupConfig>, peers: usize) -> Backends {
        let mut group_of = vec![NO_GROUP; peers];
        let mut cap = vec![u32::MAX; peers];
        for (g, config) in configs.iter().enumerate() {
            for backend in &config.backends {
                let slot = &mut group_of[backend.peer.index()];
                assert_eq!(*slot, NO_GROUP, "a peer in two groups");
                *slot = u16::try_from(g).expect("fewer groups than u16::MAX");
                if config.backend_in_flight_max > 0 {
                    cap[backend.peer.index()] = config.backend_in_flight_max;
                }
            }
        }
        Backends {
            groups: configs
                .iter()
                .map(|c| Group::new(c.backends.clone(), c.policy))
                .collect(),
            configs,
            group_of,
            health: vec![Health::default(); peers],
            in_flight: vec![0; peers],
            cap,
            ejected: Vec::new(),
            events: VecDeque::new(),
            counters: HealthCounters::default(),
        }
    }

    /// New groups over `peers` peers, at least as many as before (a reload): the in-flight
    /// counts carry over, as does the health of every peer that is a backend before and after
    /// (its ejection included); link state is set again by the caller.
    pub(super) fn rebuild(&mut self, configs: Vec<GroupConfig>, peers: usize) {
        assert!(peers >= self.in_flight.len(), "peers keep their slots");
        let mut next = Backends::new(configs, peers);
        next.in_flight[..self.in_flight.len()].copy_from_slice(&self.in_flight);
        next.counters = self.counters.clone();
        next.events = std::mem::take(&mut self.events);
        for peer in std::mem::take(&mut self.ejected) {
            if next.group_of[peer.index()] != NO_GROUP {
                next.health[peer.index()] = self.health[peer.index()];
                next.ejected.push(peer);
            }
        }
        for (i, health) in self.health.iter().enumerate() {
            if next.group_of[i] != NO_GROUP && health.ejected_until.is_none() {
                next.health[i].outcomes = health.outcomes;
                next.health[i].seen = health.seen;
                next.health[i].ejections = health.ejections;
                next.health[i].returned_at = health.returned_at;
            }
        }
        // The new tables start with every backend down; the caller restates link state.
        for health in &mut next.health {
            health.in_table = false;
        }
        *self = next;
    }

    /// The group configs.
    pub fn configs(&self) -> &[GroupConfig] {
        &self.configs
    }

    /// The health counters.
    pub fn counters(&self) -> &HealthCounters {
        &self.counters
    }

    /// Prepares in flight to `peer` on this core.
    #[inline]
    pub fn in_flight(&self, peer: PeerId) -> u32 {
        self.in_flight[peer.index()]
    }

    /// Whether `peer` is ejected now.
    pub fn is_ejected(&self, peer: PeerId) -> bool {
        self.health[peer.index()].ejected_until.is_some()
    }

    /// A Prepare was sent (or committed to be sent) to `peer`.
    #[inline]
    pub(super) fn sent(&mut self, peer: PeerId) {
        self.in_flight[peer.index()] += 1;
    }

    /// A Prepare to `peer` was answered (`failed`: see the module docs) or dropped (`None`:
    /// it says nothing about the backend, e.g. it never left).
    #[inline]
    pub(super) fn resolved(&mut self, peer: PeerId, failed: Option<bool>, now: i64) {
        let count = &mut self.in_flight[peer.index()];
        *count = count.saturating_sub(1);
        if let Some(failed) = failed {
            if self.group_of[peer.index()] != NO_GROUP {
                self.record(peer, failed, now);
            }
        }
    }

    /// `peer`'s link is up or down.
    pub(super) fn set_link_up(&mut self, peer: PeerId, up: bool) {
        let group = self.group_of[peer.index()];
        if group == NO_GROUP {
            return;
        }
        let health = &mut self.health[peer.index()];
        health.link_up = up;
        let eligible = up && health.ejected_until.is_none();
        if eligible != health.in_table {
            health.in_table = eligible;
            self.groups[usize::from(group)].set_up(peer, eligible);
        }
    }

    /// The backend of group `group` for a Prepare to `destination` (matched by a prefix of
    /// `prefix_len` bytes), not `avoid`. `Err(true)`: some backend is up but every one is
    /// full (T03); `Err(false)`: none is up (T01).
    #[inline]
    pub(super) fn select(
        &mut self,
        group: GroupId,
        destination: &[u8],
        prefix_len: usize,
        avoid: Option<PeerId>,
    ) -> Result<PeerId, bool> {
        let in_flight = &self.in_flight;
        let cap = &self.cap;
        let full = |p: PeerId| in_flight[p.index()] >= cap[p.index()];
        let chosen = &self.groups[group.index()];
        // The hot path: the hash policy's first choice, usable.
        let first = chosen.first_choice(destination, prefix_len);
        if let Some(peer) = first.filter(|&p| Some(p) != avoid && !full(p)) {
            return Ok(peer);
        }
        let picked = chosen.select(
            destination,
            prefix_len,
            |p| in_flight[p.index()] as usize,
            full,
            avoid,
        );
        match picked {
            Some(peer) => {
                if first.is_some() {
                    self.counters.failovers += 1;
                }
                Ok(peer)
            }
            None => Err(chosen.any_up()),
        }
    }

    /// Counts a reroute.
    pub(super) fn count_reroute(&mut self) {
        self.counters.rerouted += 1;
    }

    /// The group `peer` belongs to.
    pub fn group_of(&self, peer: PeerId) -> Option<GroupId> {
        let g = self.group_of[peer.index()];
        (g != NO_GROUP).then_some(GroupId(g))
    }

    /// Ends the ejections that are over. Call it each tick.
    pub(super) fn tick(&mut self, now: i64) {
        let mut i = 0;
        while i < self.ejected.len() {
            let peer = self.ejected[i];
            let health = &mut self.health[peer.index()];
            match health.ejected_until {
                Some(until) if until > now => i += 1,
                _ => {
                    self.ejected.swap_remove(i);
                    health.ejected_until = None;
                    health.returned_at = now;
                    health.outcomes = 0;
                    health.seen = 0;
                    let up = health.link_up;
                    health.in_table = up;
                    let group = self.group_of[peer.index()];
                    self.groups[usize::from(group)].set_up(peer, up);
                    self.counters.returns += 1;
                    self.event(peer, HealthChange::Returned);
                }
            }
        }
    }

    /// The next health event, for the log.
    pub fn poll_event(&mut self) -> Option<HealthEvent> {
        self.events.pop_front()
    }

    fn record(&mut self, peer: PeerId, failed: bool, now: i64) {
        let group = usize::from(self.group_of[peer.index()]);
        let outlier = self.configs[group].outlier;
        if outlier.window == 0 {
            return;
        }
        let health = &mut self.health[peer.index()];
        health.outcomes = (health.outcomes << 1) | u32::from(failed);
        health.seen = (health.seen + 1).min(outlier.window);
        if !failed || health.ejected_until.is_some() || health.seen < outlier.window {
            return;
        }
        let mask = u32::MAX >> (32 - outlier.window);
        let failures = (health.outcomes & mask).count_ones();
        if u64::from(failures) * 100
            <= u64::from(outlier.failure_percent) * u64::from(outlier.window)
        {
            return;
        }
        let size = self.configs[group].backends.len();
        let allowed = (size * outlier.max_ejection_percent as usize / 100).max(1);
        let ejected_now = self
            .ejected
            .iter()
            .filter(|p| usize::from(self.group_of[p.index()]) == group)
            .count();
        let of = outlier.window;
        if ejected_now >= allowed {
            self.counters.ejections_refused += 1;
            // Start the window afresh, so a refusal is not repeated on every answer.
            let health = &mut self.health[peer.index()];
            health.outcomes = 0;
            health.seen = 0;
            self.event(
                peer,
                HealthChange::EjectionRefused {
                    failed: failures,
                    of,
                },
            );
            return;
        }
        let health = &mut self.health[peer.index()];
        let base = outlier.ejection_base_ms.max(1);
        let healthy_ms = u64::try_from(now.saturating_sub(health.returned_at)).unwrap_or(0);
        let decay = u32::try_from(healthy_ms / base).unwrap_or(u32::MAX);
        health.ejections = health.ejections.saturating_sub(decay).saturating_add(1);
        let ms = base
            .saturating_mul(u64::from(health.ejections))
            .min(outlier.ejection_max_ms.max(base));
        health.ejected_until = Some(now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX / 4)));
        health.in_table = false;
        self.ejected.push(peer);
        self.groups[group].set_up(peer, false);
        self.counters.ejections += 1;
        self.event(
            peer,
            HealthChange::Ejected {
                ms,
                failed: failures,
                of,
            },
        );
    }

    fn event(&mut self, peer: PeerId, change: HealthChange) {
        if self.events.len() == EVENTS_MAX {
            self.events.pop_front();
            self.counters.events_dropped += 1;
        }
        let group = GroupId(self.group_of[peer.index()]);
        self.events.push_back(HealthEvent {
            peer,
            group,
            change,
        });
    }
}
