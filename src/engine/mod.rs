//! The sans-IO forwarding engine: events in, decisions out; no sockets, no executor, no clock.
//!
//! One [`Engine`] runs per core. The runtime feeds it what arrives and carries out what it
//! decides; `now` (Unix milliseconds) is always an argument.
//!
//! | event | call | result |
//! | --- | --- | --- |
//! | a Prepare from a peer | [`Engine::handle_prepare`] | [`Decision`]: forward the (rewritten in place) packet, or reply with a local Reject |
//! | the next hop's Fulfill or Reject | [`Engine::handle_reply`] | [`Reply`] for the incoming peer: relay the bytes, a local Reject, or nothing |
//! | the next hop failed (link down, BTP Error) | [`Engine::handle_failure`] | [`Reply`] |
//! | time passes | [`Engine::handle_timeout`], then [`Engine::poll_expired`] | R00 replies for Prepares whose next hop did not answer |
//! | balance lease traffic between cores | [`Engine::handle_lease`] / [`Engine::poll_lease`] | [`LeaseMessage`]s |
//!
//! Every Prepare gets exactly one answer: a Reject from `handle_prepare`, or later exactly one
//! [`Reply`] or expiry for its [`SlotId`]. Nothing reaches a balance unless a Fulfill whose
//! SHA-256 matches the condition came back before the outgoing expiry.
//!
//! The checks run in our order (RFC 27 leaves it open, and the reference connectors differ):
//! decode, rate limits, incoming expiry, special destinations, max packet amount, route, link,
//! exchange rate, outgoing expiry, table space, balance hold. Every check that can fail runs
//! before the hold; after the hold nothing can fail.
//!
//! `peer.config` (ILDCP, RFC 31) from a child is answered here ([`Decision::PeerConfig`]:
//! its address, asset code and scale, a Fulfill made once at start). Non-goals here: CCP
//! (`peer.route.*`, answered F02 until the control plane speaks it), settlement, and I/O.
//!
//! This file holds the Prepare path (`check_and_hold`, in check order, top to bottom);
//! `reply.rs` the answer path (replies, failures, expiries); the tests are in `tests.rs`.

pub mod backends;
mod counters;
pub mod group;
mod ledger;
mod limiter;
mod peer_tables;
mod pending;
pub mod rate;
mod reject;
mod reply;
pub mod route;
pub mod stats;
#[cfg(test)]
pub(crate) mod test_rng;

pub use ledger::{
    Account, AccountConfig, HoldResult, LeaseKind, LeaseMessage, Ledger, MemoryStore, PostedStore,
    Resolved, IDLE_TICKS, WAITERS_MAX,
};
pub use limiter::{
    Limiter, RateConfig, RateKind, RateMessage, Tokens, Verdict, CHUNKS_PER_SECOND, IDLE_RETURN_MS,
};
pub use pending::{InFlight, Pending, SlotId, PENDING_MAX};
pub use reject::{RejectReason, REJECT_LEN_MAX};
pub use reply::{Expired, Reply};

pub use backends::{
    Backends, GroupConfig, HealthChange, HealthCounters, HealthEvent, OutlierConfig,
};
pub use counters::Counters;

/// Re-exported from [`crate::id`], where they live.
pub use crate::id::{CoreId, GroupId, PeerId};

use crate::wire::{Address, AmountTooLarge, Prepare};
use peer_tables::{peer_config_replies, Rates};
use rate::{ConvertError, Decimal};
use route::{Hop, RouteTable};
use stats::{code_index, PeerStats, INCOMING, OUTGOING};
use std::collections::HashMap;
use std::sync::Arc;

/// The runtime's handle for an incoming request, opaque to the engine (the runtime packs a
/// link index, a 32-bit link generation and a request id into it).
pub type Tag = u128;

/// SHA-256 of 32 zero bytes: the condition of peer-protocol requests (ILDCP, CCP).
pub const PEER_PROTOCOL_CONDITION: [u8; 32] = [
    0x66, 0x68, 0x7a, 0xad, 0xf8, 0x62, 0xbd, 0x77, 0x6c, 0x8f, 0xc1, 0x8b, 0x8e, 0x9f, 0x8e, 0x20,
    0x08, 0x97, 0x14, 0x85, 0x6e, 0xe2, 0x33, 0xb3, 0x90, 0x2a, 0x59, 0x1d, 0x0d, 0x5f, 0x29, 0x25,
];

/// One peer, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's asset code (`USD`, …); prices come from [`EngineConfig::prices`].
    pub asset_code: String,
    /// Amounts on this peer's link are in units of 10^-scale (0..=18).
    pub asset_scale: u8,
    /// The largest amount one Prepare from this peer may carry (inclusive).
    pub max_packet_amount: u64,
    /// How much the peer may owe us, holds included.
    pub max_balance: u64,
    /// The core whose balance shard is authoritative for this peer.
    pub home: CoreId,
    /// Headroom leased to other cores at a time; 0 picks `max_balance / 16`.
    pub lease_chunk: u64,
    /// The posted balance at start (recovered balances; else 0).
    pub posted: i128,
    /// `max_balance` is shared with other routers: the home shard holds to the ceiling the
    /// cluster agent sets (see `ledger`, "Limits shared by several routers").
    pub shared_limit: bool,
    /// Prepares per second the peer may send, all cores together (RFC 18); 0: no limit.
    pub packets_per_second: u64,
    /// Amount per second (its units) its Prepares may carry, all cores together; 0: no limit.
    pub amount_per_second: u64,
    /// A child's address segment: it may ask `peer.config` (ILDCP, RFC 31) and is told
    /// `<our address>.<segment>`. `None` for parents and peers (answered F00).
    pub ildcp_segment: Option<String>,
}

/// Everything one core's engine needs; built and validated by the config loader.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Our ILP address (in `triggeredBy` of every local Reject).
    pub address: Vec<u8>,
    /// Peers, indexed by [`PeerId`].
    pub peers: Vec<PeerConfig>,
    /// Routes (an immutable snapshot).
    pub routes: RouteTable,
    /// Backend groups, indexed by [`GroupId`] (routes may lead to one).
    pub groups: Vec<GroupConfig>,
    /// Value of one whole unit of each asset code, in a common unit.
    pub prices: Vec<(String, Decimal)>,
    /// The fraction kept on each conversion.
    pub spread: Decimal,
    /// Time taken off each hop's expiry, and the least time a Prepare must have left.
    pub min_message_window_ms: u64,
    /// The longest we hold a Prepare: the outgoing expiry is at most `now` plus this.
    pub max_hold_time_ms: u64,
    /// In-flight Prepares per core.
    pub pending_max: usize,
    /// In-flight Prepares per core from one peer (its share of `pending_max`; T03 over it).
    pub pending_per_peer_max: usize,
    /// The expiry wheel's tick.
    pub tick_ms: u32,
    /// This core.
    pub core: CoreId,
    /// How many cores run an engine.
    pub cores: usize,
}

/// What to do with a Prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the first `len` bytes of the (rewritten) packet to `to`, and hand its reply to the
    /// engine with `slot`.
    Forward {
        /// The next hop.
        to: PeerId,
        /// The in-flight entry.
        slot: SlotId,
        /// Bytes to send.
        len: usize,
        /// The outgoing expiry written into the packet (Unix ms): the link purges its request
        /// after it.
        expires_at: i64,
    },
    /// Answer the incoming peer with this local Reject ([`Engine::emit_reject`]).
    Reject(RejectReason),
    /// Nothing yet: the hold waits for balance headroom from other cores. The engine kept a
    /// copy of the rewritten packet; the decision comes out of [`Engine::poll_ready`].
    Wait {
        /// The in-flight entry.
        slot: SlotId,
    },
    /// A child asked `peer.config` (ILDCP): answer with [`Engine::peer_config_reply`].
    PeerConfig,
    /// A CCP request (`peer.route.control` or `peer.route.update`): the control plane
    /// answers it, by `expires_at` at the latest.
    RouteControl {
        /// The Prepare's expiry.
        expires_at: i64,
    },
}

/// A Prepare whose hold waited ([`Decision::Wait`]) and is now decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The runtime's handle for the incoming request.
    pub tag: Tag,
    /// [`Decision::Forward`] (send the first `len` bytes [`Engine::poll_ready`] wrote) or
    /// [`Decision::Reject`] (T04).
    pub decision: Decision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    Live,
    Test,
    Other,
}

fn network_of(scheme: &[u8]) -> Network {
    match scheme {
        b"g" => Network::Live,
        b"test" | b"test1" | b"test2" | b"test3" => Network::Test,
        _ => Network::Other,
    }
}

/// One core's forwarding engine.
#[derive(Debug)]
pub struct Engine {
    address: Box<[u8]>,
    network: Network,
    peers: Vec<PeerConfig>,
    links_up: Vec<bool>,
    /// Peers being drained: no new Prepares from them (T03) or to them (T01).
    draining: Vec<bool>,
    /// Peers the runtime knows cannot be reached now (an HTTP peer whose connect failed):
    /// still tried on a route of their own, skipped by their group.
    unreachable: Vec<bool>,
    routes: Arc<RouteTable>,
    /// Groups, their backends' health and the Prepares in flight to each peer.
    backends: Backends,
    /// The latest `now` seen by `handle_timeout` or `handle_reply` (for the calls without one).
    clock: i64,
    rates: Rates,
    window_ms: i64,
    max_hold_ms: i64,
    pending: Pending,
    /// In-flight Prepares by incoming peer, and the most one peer may have.
    pending_by_peer: Vec<u32>,
    pending_per_peer_max: u32,
    /// Rewritten Prepares whose hold waits, by slot (at most `WAITERS_MAX`; sized at start).
    parked: HashMap<u64, Vec<u8>>,
    /// Buffers of resolved parked Prepares, reused: after warm-up a wait allocates nothing.
    spare: Vec<Vec<u8>>,
    ledger: Ledger,
    limiter: Limiter,
    counters: Counters,
    /// Per-peer traffic counters (the metrics).
    stats: Vec<PeerStats>,
    /// Per peer: the ILDCP answer (a Fulfill), made once; `None` for peers that are not
    /// children.
    peer_config: Vec<Option<Arc<[u8]>>>,
}

impl Engine {
    /// An engine for `config.core`, starting at `now`. Every link starts down
    /// ([`set_link_up`](Self::set_link_up)).
    pub fn new(config: EngineConfig, now: i64) -> Self {
        let store = MemoryStore(vec![0; config.peers.len()]);
        Engine::with_store(config, now, Box::new(store))
    }

    /// Like [`new`](Self::new), with this core's committed balances kept in `store` (see
    /// [`Ledger`]'s Durability section): a post reaches it before `handle_reply` returns.
    pub fn with_store(config: EngineConfig, now: i64, store: Box<dyn PostedStore>) -> Self {
        let own =
            Address::new_checked(&config.address).expect("the config loader checks our address");
        assert!(
            config.peers.len() <= usize::from(u16::MAX),
            "too many peers"
        );
        assert!(
            config.min_message_window_ms <= config.max_hold_time_ms,
            "window over max hold"
        );
        let network = network_of(own.scheme());
        let accounts: Vec<AccountConfig> = config
            .peers
            .iter()
            .map(|p| AccountConfig {
                home: p.home,
                max_balance: p.max_balance,
                lease_chunk: p.lease_chunk,
                posted: p.posted,
                shared: p.shared_limit,
            })
            .collect();
        let rates: Vec<RateConfig> = config
            .peers
            .iter()
            .map(|p| RateConfig {
                home: p.home,
                packets_per_second: p.packets_per_second,
                amount_per_second: p.amount_per_second,
            })
            .collect();
        let horizon_ms = config.max_hold_time_ms + u64::from(config.tick_ms);
        Engine {
            address: config.address.clone().into_boxed_slice(),
            network,
            links_up: vec![false; config.peers.len()],
            draining: vec![false; config.peers.len()],
            unreachable: vec![false; config.peers.len()],
            rates: Rates::new(&config.peers, &config.prices, config.spread),
            routes: Arc::new(config.routes),
            backends: Backends::new(config.groups, config.peers.len()),
            clock: now,
            window_ms: i64::try_from(config.min_message_window_ms).expect("window fits i64"),
            max_hold_ms: i64::try_from(config.max_hold_time_ms).expect("max hold fits i64"),
            pending: Pending::new(config.pending_max, config.tick_ms, horizon_ms, now),
            pending_by_peer: vec![0; config.peers.len()],
            pending_per_peer_max: u32::try_from(config.pending_per_peer_max.max(1))
                .unwrap_or(u32::MAX),
            parked: HashMap::with_capacity(WAITERS_MAX),
            spare: Vec::new(),
            ledger: Ledger::with_store(config.core, config.cores, &accounts, store),
            limiter: Limiter::new(config.core, config.cores, &rates, now),
            counters: Counters::default(),
            stats: vec![PeerStats::default(); config.peers.len()],
            peer_config: peer_config_replies(&config.address, &config.peers),
            peers: config.peers,
        }
    }

    /// Our ILP address.
    pub fn address(&self) -> Address<'_> {
        Address::new_checked(&self.address).expect("checked at start")
    }

    /// Marks whether `peer` has a link that can take Prepares now (T01 otherwise).
    pub fn set_link_up(&mut self, peer: PeerId, up: bool) {
        self.links_up[peer.index()] = up;
        self.refresh_backend(peer);
    }

    /// Marks whether `peer` can be reached as far as the runtime knows (an HTTP peer whose
    /// last connect failed cannot, until a connection opens). A group skips such a backend;
    /// a route to the peer alone still sends it Prepares (its connect is tried again).
    pub fn set_reachable(&mut self, peer: PeerId, reachable: bool) {
        self.unreachable[peer.index()] = !reachable;
        self.refresh_backend(peer);
    }

    /// Tells the peer's group (if any) whether it can take Prepares.
    fn refresh_backend(&mut self, peer: PeerId) {
        let i = peer.index();
        let usable = self.links_up[i] && !self.unreachable[i] && !self.draining[i];
        self.backends.set_link_up(peer, usable);
    }

    /// Drains `peer` (or ends its drain): while draining, new Prepares from it are refused
    /// T03 and new Prepares to it T01 (a group's other backends take its share); those in
    /// flight resolve as usual.
    pub fn set_draining(&mut self, peer: PeerId, draining: bool) {
        self.draining[peer.index()] = draining;
        self.refresh_backend(peer);
    }

    /// Whether `peer` is being drained.
    pub fn is_draining(&self, peer: PeerId) -> bool {
        self.draining[peer.index()]
    }

    /// Whether `peer` has a link that can take Prepares now.
    pub fn link_up(&self, peer: PeerId) -> bool {
        self.links_up[peer.index()]
    }

    /// The groups, their backends' health and the Prepares in flight to each peer.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Applies a settlement made outside the router to `peer`'s posted balance (call it on
    /// the peer's home core; see `crate::settlements`).
    pub fn settle(&mut self, peer: PeerId, delta: i128) {
        self.ledger.settle(peer, delta);
    }

    /// Raises the ceiling of a peer whose limit is shared with other routers (home core only;
    /// see `ledger`, "Limits shared by several routers").
    pub fn raise_ceiling(&mut self, peer: PeerId, ceiling: i128) {
        self.ledger.raise_ceiling(peer, ceiling);
    }

    /// Lowers that ceiling towards `target`, never below what is in use; returns the new one.
    pub fn lower_ceiling(&mut self, peer: PeerId, target: i128) -> i128 {
        self.ledger.lower_ceiling(peer, target)
    }

    /// The next change of a backend's health, for the log.
    pub fn poll_health_event(&mut self) -> Option<HealthEvent> {
        self.backends.poll_event()
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Per-peer traffic counters, indexed by [`PeerId`].
    pub fn peer_stats(&self) -> &[PeerStats] {
        &self.stats
    }

    /// This core's balance shards.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The in-flight table.
    pub fn pending(&self) -> &Pending {
        &self.pending
    }

    /// Swaps in a new route table snapshot (from the control plane, between batches): one
    /// table shared by every core, never copied.
    pub fn set_routes(&mut self, routes: Arc<RouteTable>) {
        self.routes = routes;
    }

    /// Applies a reloaded config: routes, groups, prices and spread, the share of the
    /// in-flight table one peer may fill, each peer's `max_packet_amount` and ILDCP answer, and the peers added after the last slot (a peer
    /// never leaves its slot: a removed one stays, drained by the runtime). Prepares in
    /// flight, balances, leases, rate buckets and link state are untouched; the in-flight
    /// counts and health of backends carry over. An added peer starts like one configured at
    /// start: link down, balance `posted` on its home core, leases and rate tokens asked for.
    ///
    /// # Panics
    /// When `config` has fewer peers than the engine.
    pub fn reconfigure(&mut self, config: EngineConfig) {
        assert!(
            config.peers.len() >= self.peers.len(),
            "peers keep their slots: {} configured, {} running",
            config.peers.len(),
            self.peers.len()
        );
        for peer in &config.peers[self.peers.len()..] {
            self.add_peer(peer.clone(), config.cores);
        }
        self.rates = Rates::new(&config.peers, &config.prices, config.spread);
        self.routes = Arc::new(config.routes);
        self.backends.rebuild(config.groups, self.peers.len());
        self.peer_config = peer_config_replies(&config.address, &config.peers);
        self.pending_per_peer_max =
            u32::try_from(config.pending_per_peer_max.max(1)).unwrap_or(u32::MAX);
        for (i, peer) in config.peers.into_iter().enumerate() {
            self.peers[i].max_packet_amount = peer.max_packet_amount;
            self.refresh_backend(PeerId(i as u16));
        }
    }

    /// Grows every per-peer table by one peer, `peer`.
    fn add_peer(&mut self, peer: PeerConfig, cores: usize) {
        let account = AccountConfig {
            home: peer.home,
            max_balance: peer.max_balance,
            lease_chunk: peer.lease_chunk,
            posted: peer.posted,
            shared: peer.shared_limit,
        };
        let rate = RateConfig {
            home: peer.home,
            packets_per_second: peer.packets_per_second,
            amount_per_second: peer.amount_per_second,
        };
        let id = self.ledger.add_account(&account);
        let limited = self.limiter.add_peer(cores, &rate, self.clock);
        debug_assert_eq!(id, limited);
        debug_assert_eq!(id.index(), self.peers.len());
        self.links_up.push(false);
        self.draining.push(false);
        self.unreachable.push(false);
        self.pending_by_peer.push(0);
        self.stats.push(PeerStats::default());
        self.peers.push(peer);
    }

    /// The ILDCP answer for `peer` (after [`Decision::PeerConfig`]): a Fulfill with the
    /// peer-protocol fulfillment whose data is its address, asset scale and asset code. Made
    /// once at start; this clones a reference.
    pub fn peer_config_reply(&self, peer: PeerId) -> Option<Arc<[u8]>> {
        self.peer_config[peer.index()].clone()
    }

    /// Writes the local Reject for `reason` into `buf` (at least [`REJECT_LEN_MAX`] bytes);
    /// returns its length.
    pub fn emit_reject(&self, reason: RejectReason, buf: &mut [u8]) -> usize {
        reason.emit(self.address(), buf)
    }

    /// Decides what happens to a Prepare that arrived from `from`. On [`Decision::Forward`]
    /// the amount and expiry in `packet` have been rewritten in place.
    #[inline]
    pub fn handle_prepare(
        &mut self,
        now: i64,
        from: PeerId,
        tag: Tag,
        packet: &mut [u8],
    ) -> Decision {
        self.counters.prepares += 1;
        self.stats[from.index()].prepares[INCOMING] += 1;
        match self.check_and_hold(now, from, tag, packet) {
            Ok(decision) => {
                match decision {
                    Decision::Forward { to, .. } => {
                        self.counters.forwarded += 1;
                        self.stats[to.index()].prepares[OUTGOING] += 1;
                    }
                    Decision::PeerConfig => {
                        self.counters.peer_config += 1;
                        self.stats[from.index()].fulfills[INCOMING] += 1;
                    }
                    Decision::Reject(_) | Decision::Wait { .. } | Decision::RouteControl { .. } => {
                    }
                }
                decision
            }
            Err(reason) => {
                self.counters.local_rejects[Counters::reject_index(reason)] += 1;
                self.stats[from.index()].rejects[INCOMING][code_index(reason.code())] += 1;
                Decision::Reject(reason)
            }
        }
    }

    fn check_and_hold(
        &mut self,
        now: i64,
        from: PeerId,
        tag: Tag,
        packet: &mut [u8],
    ) -> Result<Decision, RejectReason> {
        // (1) decode
        let mut prepare =
            Prepare::new_checked(&mut *packet).map_err(|_| RejectReason::InvalidPacket)?;
        // (2) payment bandwidth (RFC 18): packets over the rate T05, amount over it T04 (in
        // RFC 27, T04 is too little balance or bandwidth). Tokens spent here stay spent whatever
        // a later check decides, as in both reference connectors.
        if self.limiter.is_limited(from) {
            match self.limiter.admit(from, prepare.amount(), now) {
                Verdict::Admit => {}
                Verdict::TooManyPackets => return Err(RejectReason::RateLimited),
                Verdict::TooMuchAmount => return Err(RejectReason::InsufficientLiquidity),
            }
        }
        // A peer being drained sends nothing new (T03: retry later, elsewhere).
        if self.draining[from.index()] {
            return Err(RejectReason::ConnectorBusy);
        }
        // (3) incoming expiry
        let expires_in = prepare.expires_at();
        if expires_in <= now {
            return Err(RejectReason::InsufficientTimeout);
        }
        // (4) destinations we never forward; ILDCP (RFC 31) is answered here, to children
        // only, and CCP goes to the control plane
        if let Some(decision) = self.check_destination(from, &prepare)? {
            return Ok(decision);
        }
        // (5) max packet amount, in the incoming peer's units
        let amount_in = prepare.amount();
        let peer_in = &self.peers[from.index()];
        if amount_in > peer_in.max_packet_amount {
            let details = AmountTooLarge {
                received: amount_in,
                maximum: peer_in.max_packet_amount,
            };
            return Err(RejectReason::AmountTooLarge(Some(details)));
        }
        // (6) route, and a link to send it on: the peer's, or a group's backend that is up,
        // not ejected and not full (T01 when none is up, T03 when all are full).
        let destination = prepare.destination().as_bytes();
        let matched = self
            .routes
            .lookup_match(destination)
            .ok_or(RejectReason::Unreachable)?;
        let to = match matched.hop {
            Hop::Peer(to) if self.links_up[to.index()] && !self.draining[to.index()] => to,
            Hop::Peer(_) => return Err(RejectReason::PeerUnreachable),
            Hop::Group(group) => self
                .backends
                .select(group, destination, matched.prefix_len, None)
                .map_err(|any_up| match any_up {
                    true => RejectReason::ConnectorBusy,
                    false => RejectReason::PeerUnreachable,
                })?,
        };
        // (7) convert
        let rate = self.rates.get(from, to).ok_or(RejectReason::Internal)?;
        let amount_out = rate.convert(amount_in).map_err(|e| match e {
            ConvertError::TooSmall => RejectReason::InsufficientSourceAmount,
            ConvertError::Overflow => RejectReason::AmountTooLarge(None),
        })?;
        // (8) outgoing expiry
        let expires_out = (expires_in - self.window_ms).min(now.saturating_add(self.max_hold_ms));
        if expires_out - now < self.window_ms {
            return Err(RejectReason::InsufficientTimeout);
        }
        // (9) a slot within the peer's share, then (10) the hold: the last checks.
        if self.pending_by_peer[from.index()] >= self.pending_per_peer_max {
            return Err(RejectReason::ConnectorBusy);
        }
        let entry = InFlight {
            from,
            to,
            tag,
            amount_in,
            amount_out,
            condition: *prepare.execution_condition(),
            expires_at: expires_out,
            waiting: false,
            reroutes: 0,
            sent_at: now,
        };
        let slot = self
            .pending
            .insert(entry)
            .ok_or(RejectReason::ConnectorBusy)?;
        let held = match amount_in {
            0 => HoldResult::Held,
            _ => self.ledger.hold_or_wait(from, amount_in, slot.to_u64()),
        };
        if held == HoldResult::Refused {
            self.pending.remove(slot);
            return Err(RejectReason::InsufficientLiquidity);
        }
        // Commit point: nothing below can fail.
        self.pending_by_peer[from.index()] += 1;
        self.backends.sent(to);
        prepare.set_amount(amount_out);
        prepare.set_expires_at(expires_out);
        let len = if prepare.has_inner_trailing_bytes() {
            prepare.drop_inner_trailing_bytes()
        } else {
            prepare.as_bytes().len()
        };
        if held == HoldResult::Wait {
            // Cold path (a hold larger than this core's headroom): keep a copy to send later.
            self.counters.waited += 1;
            self.pending.get_mut(slot).expect("just inserted").waiting = true;
            let mut copy = self.spare.pop().unwrap_or_default();
            copy.clear();
            copy.extend_from_slice(&packet[..len]);
            self.parked.insert(slot.to_u64(), copy);
            return Ok(Decision::Wait { slot });
        }
        Ok(Decision::Forward {
            to,
            slot,
            len,
            expires_at: expires_out,
        })
    }

    /// The next Prepare whose waiting hold ended: forward it (its rewritten bytes are copied
    /// into `packet`), or answer T04. Call it after [`handle_lease`](Self::handle_lease) until
    /// it returns `None`.
    pub fn poll_ready(&mut self, packet: &mut Vec<u8>) -> Option<Ready> {
        while let Some(resolved) = self.ledger.poll_resolved() {
            let slot = SlotId::from_u64(resolved.token);
            let parked = self.parked.remove(&resolved.token);
            let entry = self.pending.get(slot).copied();
            let (Some(parked), Some(entry)) = (parked, entry.filter(|e| e.waiting)) else {
                // The Prepare expired while it waited: a hold placed for it goes at once.
                if resolved.held {
                    self.ledger.void_hold(resolved.peer, resolved.amount);
                }
                continue;
            };
            packet.clear();
            packet.extend_from_slice(&parked);
            if self.spare.len() < WAITERS_MAX {
                self.spare.push(parked);
            }
            if resolved.held {
                let entry = self.pending.get_mut(slot).expect("checked");
                entry.waiting = false;
                entry.sent_at = self.clock;
                self.counters.forwarded += 1;
                self.stats[entry.to.index()].prepares[OUTGOING] += 1;
                return Some(Ready {
                    tag: entry.tag,
                    decision: Decision::Forward {
                        to: entry.to,
                        slot,
                        len: packet.len(),
                        expires_at: entry.expires_at,
                    },
                });
            }
            self.pending.remove(slot);
            self.pending_by_peer[entry.from.index()] -= 1;
            self.backends.resolved(entry.to, None, self.clock);
            let reason = RejectReason::InsufficientLiquidity;
            self.counters.local_rejects[Counters::reject_index(reason)] += 1;
            self.stats[entry.from.index()].rejects[INCOMING][code_index(reason.code())] += 1;
            return Some(Ready {
                tag: entry.tag,
                decision: Decision::Reject(reason),
            });
        }
        None
    }

    /// `peer.*`, `self.*`, our own address and the other network family are never forwarded
    /// (RFC 15; RFC 34 "Special Addresses"). F01 for `peer.config`/`peer.route` without the
    /// peer-protocol condition, as the JS connector; F02 for the rest.
    #[inline]
    fn check_destination<T: AsRef<[u8]>>(
        &self,
        from: PeerId,
        prepare: &Prepare<T>,
    ) -> Result<Option<Decision>, RejectReason> {
        let destination = prepare.destination();
        let scheme = destination.scheme();
        if scheme == b"peer" {
            let bytes = destination.as_bytes();
            let peer_protocol = *prepare.execution_condition() == PEER_PROTOCOL_CONDITION;
            if bytes == b"peer.config" && peer_protocol {
                return match self.peer_config[from.index()] {
                    Some(_) => Ok(Some(Decision::PeerConfig)),
                    None => Err(RejectReason::NotAChild),
                };
            }
            if (bytes == b"peer.route.control" || bytes == b"peer.route.update") && peer_protocol {
                // The control plane checks the rest.
                return Ok(Some(Decision::RouteControl {
                    expires_at: prepare.expires_at(),
                }));
            }
            let served =
                destination.has_prefix(b"peer.config") || destination.has_prefix(b"peer.route");
            if served && !peer_protocol {
                return Err(RejectReason::PeerProtocolCondition);
            }
            // Other peer protocols (peer.settle, …) are not served: F02.
            return Err(RejectReason::Unreachable);
        }
        if scheme == b"self" || destination.as_bytes() == &*self.address {
            return Err(RejectReason::Unreachable);
        }
        let network = network_of(scheme);
        let crosses = matches!(
            (self.network, network),
            (Network::Live, Network::Test) | (Network::Test, Network::Live)
        );
        if crosses {
            return Err(RejectReason::Unreachable);
        }
        Ok(None)
    }

    /// Advances the clock: files expired Prepares for [`poll_expired`](Self::poll_expired)
    /// and lets the balance shards report to their home cores. Call it at least once per tick.
    pub fn handle_timeout(&mut self, now: i64) {
        self.clock = now;
        self.backends.tick(now);
        self.pending.expire(now);
        self.ledger.handle_tick();
        self.limiter.handle_tick(now);
    }

    /// Takes a rate-limit message from another core.
    pub fn handle_rate(&mut self, message: RateMessage, now: i64) {
        self.limiter.handle_message(message, now);
    }

    /// The next rate-limit message for another core.
    pub fn poll_rate(&mut self) -> Option<RateMessage> {
        self.limiter.poll_message()
    }

    /// The Prepare in `slot` could not be written to its next hop, and no byte of it left:
    /// when its route leads to a group, it moves to the next backend in the destination's
    /// order (up, not ejected, not full, not the one that failed). Returns the new next hop,
    /// to which the caller sends `packet` (the rewritten Prepare, unchanged: a group's
    /// backends share one asset); `None` when there is none (or after a few moves), and the
    /// caller answers it with [`handle_failure`](Self::handle_failure) as before.
    ///
    /// Never call it for a Prepare of which any byte may have reached the next hop: that one
    /// is resolved only by its answer or its expiry (no double payment).
    pub fn reroute(&mut self, slot: SlotId, packet: &[u8]) -> Option<PeerId> {
        const REROUTES_MAX: u8 = 3;
        let entry = *self.pending.get(slot).filter(|e| !e.waiting)?;
        if entry.reroutes >= REROUTES_MAX {
            return None;
        }
        let prepare = Prepare::new_checked(packet).ok()?;
        let destination = prepare.destination().as_bytes();
        let matched = self.routes.lookup_match(destination)?;
        let Hop::Group(group) = matched.hop else {
            return None;
        };
        if self.backends.group_of(entry.to) != Some(group) {
            return None;
        }
        let to = self
            .backends
            .select(group, destination, matched.prefix_len, Some(entry.to))
            .ok()?;
        // The failed write counts against the backend it was meant for.
        self.backends.resolved(entry.to, Some(true), self.clock);
        self.backends.sent(to);
        self.backends.count_reroute();
        self.stats[to.index()].prepares[OUTGOING] += 1;
        let moved = self.pending.get_mut(slot).expect("found above");
        moved.to = to;
        moved.reroutes += 1;
        Some(to)
    }

    /// In-flight Prepares from `peer` on this core.
    pub fn pending_of(&self, peer: PeerId) -> usize {
        self.pending_by_peer[peer.index()] as usize
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn next_timeout(&self) -> i64 {
        self.pending.next_tick_at()
    }

    /// Takes a balance message from another core.
    pub fn handle_lease(&mut self, message: LeaseMessage) {
        self.ledger.handle_lease(message);
    }

    /// The next balance message for another core.
    pub fn poll_lease(&mut self) -> Option<LeaseMessage> {
        self.ledger.poll_lease()
    }
}

/// The peer-protocol fulfillment (32 zero bytes) hashes to [`PEER_PROTOCOL_CONDITION`].
#[cfg(test)]
#[test]
fn peer_protocol_condition_is_sha256_of_zeros() {
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest([0u8; 32]).into();
    assert_eq!(digest, PEER_PROTOCOL_CONDITION);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod group_tests;
