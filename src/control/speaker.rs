//! The CCP route speaker, sans I/O: what we tell each peer about our routes, what we learn
//! from each, and the learned forwarding table, following the Adopt column of the spec's
//! control-plane §3.3.
//!
//! - **Ours.** A random routing table id at start, and an epoch that moves by one per change
//!   of what we advertise. Each advertised prefix remembers the epoch of its last change (a
//!   withdrawn one stays as a tombstone), so an update from epoch `a` to `b` carries every
//!   prefix changed in between: the present ones as new routes, the others withdrawn. An
//!   update covers at most [`EPOCHS_PER_UPDATE_MAX`] epochs and fits a Prepare's data.
//! - **Sending** (to children and peers unless configured otherwise): a peer asks with a
//!   Route Control Request in SYNC mode; from then on it gets one update at a time, the next
//!   as soon as the last is fulfilled while it is behind, else a heartbeat every
//!   [`BROADCAST_INTERVAL_MS`]. IDLE stops it. A rejected update is sent again later.
//! - **Receiving** (from parents and peers unless configured otherwise): when a link comes up
//!   we ask with SYNC (a refusal is retried after 1 s, doubling up to 30 s). An update under a new table id drops what that peer told us before; a
//!   gap is refused (F00) and answered with a new SYNC request; an old update is fulfilled and
//!   ignored; the rest is applied, withdrawals first. Routes expire at the update's hold-down
//!   time unless refreshed. A link going down drops what we learned from it.
//! - **Import filters**: a prefix outside our scheme (`g.`), the scheme itself, our own
//!   address or anything under it, a path holding our address, a path longer than the
//!   peer's `path_max`, and routes past the peer's `routes_max` are dropped (counted).
//! - **Best route** per learned prefix: child over peer over parent, then the shorter path,
//!   then the lower peer id. Local prefixes (our address, configured routes) are never
//!   replaced by learned ones; the runtime also lets configured routes win in the table.
//! - **Export**: every route with our address first in its path and its auth hashed (as the JS
//!   connector does; interledger-rs sends its own address with an empty path): a local prefix
//!   to every peer we send to except the peers it leads to; a learned one to every peer but
//!   the one it came from, and never a peer's or parent's route to a parent
//!   (Gao-Rexford). What a peer may not have is withdrawn from its view.
//!
//! The runtime calls [`Speaker::handle_request`], [`Speaker::handle_reply`],
//! [`Speaker::set_link`] and [`Speaker::tick`], sends what [`Speaker::poll_send`] gives, and
//! rebuilds the route table when [`Speaker::take_changed`] says so.
//!
//! Just over 800 lines: the speaker's state machine is one type whose send and receive sides
//! share the epoch log; its tests are in `speaker_tests.rs`.

use super::ccp::{
    Mode, Request, Route, RouteControlRequest, RouteUpdateRequest, RoutingTableId, AUTH_LEN,
    CCP_CONTROL_DESTINATION, CCP_UPDATE_DESTINATION,
};
use crate::id::PeerId;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A heartbeat (an update with no news) goes to each synced peer this often.
pub const BROADCAST_INTERVAL_MS: i64 = 30_000;
/// The hold-down time we send: a receiver may expire our routes this long after our last
/// update.
pub const HOLD_DOWN_MS: u32 = 45_000;
/// Epochs one update covers at most.
pub const EPOCHS_PER_UPDATE_MAX: u32 = 50;
/// A refused or unanswered update is sent again after this long, and a control request after
/// [`CONTROL_RETRY_FIRST_MS`] doubling up to this (a peer may refuse one that arrives before
/// it has registered our link, as the JS connector does).
pub const RETRY_MS: i64 = 30_000;
/// How long we wait for the answer to one of our requests: longer than the runtime's expiry
/// of the Prepare that carries it (60 s at most), after which a link would have failed it.
pub const ANSWER_WAIT_MS: i64 = 65_000;
/// The first retry of a refused control request.
pub const CONTROL_RETRY_FIRST_MS: i64 = 1_000;
/// The most route data one update carries (a Prepare's data is at most 32 767 bytes).
const UPDATE_DATA_MAX: usize = 32_000;
/// Withdrawn prefixes we remember (tombstones); past it the oldest are forgotten, and a peer
/// that is further behind gets our whole table again.
pub const TOMBSTONES_MAX: usize = 65_536;

/// How one peer takes part in the route exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerPeer {
    /// Its relation, for best-route choice and export.
    pub relation: Relation,
    /// We send it our routes when it asks.
    pub send_routes: bool,
    /// We take routes from it.
    pub receive_routes: bool,
    /// The most routes we keep from it.
    pub routes_max: usize,
    /// The longest path we accept from it.
    pub path_max: usize,
}

/// Our relation with a peer, as far as routes care. Ordered by preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relation {
    /// Downstream of us.
    Child,
    /// A sibling.
    Peer,
    /// Upstream of us.
    Parent,
}

/// A prefix we originate: our own address, a configured route's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRoute {
    /// The prefix.
    pub prefix: String,
    /// The peers it leads to (never told about it).
    pub via: Vec<PeerId>,
    /// A group's prefix: it covers what the group's backends advertise under it, which is
    /// then not relayed (the group is advertised once, with us as the next hop).
    pub covers: bool,
}

/// A CCP request for the runtime to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// To whom.
    pub peer: PeerId,
    /// Our id for it: its answer comes back to [`Speaker::handle_reply`] with it.
    pub id: u32,
    /// `peer.route.control` or `peer.route.update`.
    pub destination: &'static [u8],
    /// The CCP payload (the Prepare's data).
    pub payload: Vec<u8>,
}

/// A route we learned, as `GET /routes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The prefix.
    pub prefix: String,
    /// From whom.
    pub peer: PeerId,
    /// Its path as the peer sent it.
    pub path: Vec<String>,
    /// The peer's epoch when we last applied an update of it.
    pub epoch: u32,
    /// Whether it is the route the table uses for this prefix.
    pub best: bool,
}

/// What the speaker has counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeakerCounters {
    /// Requests we answered with a Fulfill.
    pub accepted: u64,
    /// Requests we refused (F00).
    pub refused: u64,
    /// Routes dropped by the import filters or the per-peer limits.
    pub routes_filtered: u64,
    /// Routes expired by hold-down.
    pub routes_expired: u64,
    /// Updates we sent.
    pub updates_sent: u64,
}

#[derive(Debug, Clone)]
struct LearnedRoute {
    path: Vec<String>,
    auth: [u8; AUTH_LEN],
}

#[derive(Debug)]
struct PeerState {
    config: SpeakerPeer,
    up: bool,
    // Sending.
    sync: bool,
    acked_epoch: u32,
    update_in_flight: Option<(u32, u32)>,
    next_update_at: i64,
    /// After a refused update: nothing before this, behind or not.
    update_retry_at: i64,
    // Receiving.
    their_table: Option<RoutingTableId>,
    their_epoch: u32,
    learned: HashMap<String, LearnedRoute>,
    expires_at: i64,
    control_in_flight: Option<u32>,
    control_due_at: Option<i64>,
    /// Control requests refused in a row.
    control_refusals: u32,
}

impl PeerState {
    fn new(config: SpeakerPeer) -> PeerState {
        PeerState {
            config,
            up: false,
            sync: false,
            acked_epoch: 0,
            update_in_flight: None,
            next_update_at: 0,
            update_retry_at: 0,
            their_table: None,
            their_epoch: 0,
            learned: HashMap::new(),
            expires_at: i64::MAX,
            control_in_flight: None,
            control_due_at: None,
            control_refusals: 0,
        }
    }
}

/// One advertised prefix: what we say about it now (`None`: withdrawn) and the epoch of its
/// last change.
#[derive(Debug, Clone)]
struct Advert {
    route: Option<Advertised>,
    changed_at: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Advertised {
    path: Vec<String>,
    auth: [u8; AUTH_LEN],
    /// Where it comes from: a local route (the peers it leads to) or a learned one.
    source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Local(Vec<PeerId>),
    Learned(PeerId),
}

/// The route speaker of one router.
#[derive(Debug)]
pub struct Speaker {
    own: String,
    /// Our scheme with its dot (`g.`): learned prefixes must start with it.
    scheme: String,
    table_id: RoutingTableId,
    secret: [u8; 32],
    epoch: u32,
    /// Tombstones older than this were forgotten: a peer behind it gets everything again.
    horizon: u32,
    peers: Vec<PeerState>,
    local: Vec<LocalRoute>,
    /// The learned forwarding table: prefix -> the peer whose route is best.
    best: BTreeMap<String, PeerId>,
    adverts: HashMap<String, Advert>,
    outbox: VecDeque<Outgoing>,
    next_id: u32,
    /// Our requests in flight: id -> peer.
    /// Our requests in flight: id -> (peer, when we stop waiting for its answer).
    pending: HashMap<u32, (PeerId, i64)>,
    changed: bool,
    counters: SpeakerCounters,
}

impl Speaker {
    /// A speaker for the router at `own` (its ILP address) with routing table id `table_id`
    /// and the secret its local routes' auth is made with (both random at start).
    pub fn new(own: &str, table_id: RoutingTableId, secret: [u8; 32]) -> Speaker {
        let scheme = match own.split_once('.') {
            Some((scheme, _)) => format!("{scheme}."),
            None => format!("{own}."),
        };
        Speaker {
            own: own.to_owned(),
            scheme,
            table_id,
            secret,
            epoch: 0,
            horizon: 0,
            peers: Vec::new(),
            local: Vec::new(),
            best: BTreeMap::new(),
            adverts: HashMap::new(),
            outbox: VecDeque::new(),
            next_id: 1,
            pending: HashMap::new(),
            changed: false,
            counters: SpeakerCounters::default(),
        }
    }

    /// Our routing table id.
    pub fn table_id(&self) -> RoutingTableId {
        self.table_id
    }

    /// Our current epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The counters.
    pub fn counters(&self) -> SpeakerCounters {
        self.counters
    }

    /// Sets the peers (indexed by [`PeerId`]; a slot is never taken away, a removed peer
    /// comes with both switches off). A peer that may no longer send us routes loses what it
    /// sent; one we may no longer send to stops getting updates.
    pub fn set_peers(&mut self, peers: Vec<SpeakerPeer>, now: i64) {
        for (i, config) in peers.into_iter().enumerate() {
            if i == self.peers.len() {
                self.peers.push(PeerState::new(config));
                continue;
            }
            let state = &mut self.peers[i];
            let was = state.config.clone();
            state.config = config;
            let peer = PeerId(i as u16);
            if was.receive_routes && !state.config.receive_routes {
                self.forget(peer);
            } else if !was.receive_routes && state.config.receive_routes && state.up {
                state.control_due_at = Some(now);
            }
            if !self.peers[i].config.send_routes {
                self.peers[i].sync = false;
            }
            if was.relation != self.peers[i].config.relation {
                self.reselect_all();
            }
        }
    }

    /// Sets the prefixes we originate.
    pub fn set_local(&mut self, local: Vec<LocalRoute>) {
        let mut touched: Vec<String> = self.local.iter().map(|l| l.prefix.clone()).collect();
        touched.extend(local.iter().map(|l| l.prefix.clone()));
        self.local = local;
        touched.sort();
        touched.dedup();
        for prefix in touched {
            self.readvertise(&prefix);
        }
    }

    /// A link to `peer` came up or went down.
    pub fn set_link(&mut self, peer: PeerId, up: bool, now: i64) {
        let Some(state) = self.peers.get_mut(peer.index()) else {
            return;
        };
        if state.up == up {
            return;
        }
        state.up = up;
        if up {
            if state.config.receive_routes {
                state.control_due_at = Some(now);
            }
            return;
        }
        // Down: what it told us goes, and it must ask again.
        state.sync = false;
        state.update_in_flight = None;
        state.control_in_flight = None;
        state.control_due_at = None;
        self.pending.retain(|_, (p, _)| *p != peer);
        self.forget(peer);
    }

    /// A `peer.route.control` or `peer.route.update` from `peer`: `Ok` to fulfill, `Err`
    /// with the message of an F00 Reject.
    pub fn handle_request(
        &mut self,
        peer: PeerId,
        request: Request,
        now: i64,
    ) -> Result<(), String> {
        let result = match request {
            Request::Control(control) => self.handle_control(peer, &control, now),
            Request::Update(update) => self.handle_update(peer, update, now),
        };
        match result {
            Ok(()) => self.counters.accepted += 1,
            Err(_) => self.counters.refused += 1,
        }
        result
    }

    fn handle_control(
        &mut self,
        peer: PeerId,
        control: &RouteControlRequest,
        now: i64,
    ) -> Result<(), String> {
        let epoch = self.epoch;
        let table_id = self.table_id;
        let state = self.state(peer)?;
        if !state.config.send_routes {
            return Err("we are not configured to send routes to you".into());
        }
        match control.mode {
            Mode::Sync => {
                state.sync = true;
                state.acked_epoch = if control.last_known_routing_table_id == table_id {
                    control.last_known_epoch.min(epoch)
                } else {
                    0
                };
                state.next_update_at = now;
                // It asked again: no need to wait out an earlier refusal.
                state.update_retry_at = now;
            }
            Mode::Idle => state.sync = false,
        }
        Ok(())
    }

    fn handle_update(
        &mut self,
        peer: PeerId,
        update: RouteUpdateRequest,
        now: i64,
    ) -> Result<(), String> {
        let state = self.state(peer)?;
        if !state.config.receive_routes {
            return Err("we are not configured to receive routes from you".into());
        }
        if state.their_table != Some(update.routing_table_id) {
            // A new table (the peer restarted): what it said before is void.
            state.their_table = Some(update.routing_table_id);
            state.their_epoch = 0;
            self.forget(peer);
        }
        let state = &mut self.peers[peer.index()];
        if update.from_epoch_index > state.their_epoch {
            let message = format!(
                "gap in routing table {}: we are at epoch {}, the update starts at {}",
                update.routing_table_id, state.their_epoch, update.from_epoch_index
            );
            state.control_due_at = Some(now);
            return Err(message);
        }
        state.expires_at = now.saturating_add(i64::from(update.hold_down_time_ms));
        if update.to_epoch_index < state.their_epoch {
            return Ok(());
        }
        state.their_epoch = update.to_epoch_index;
        let mut touched =
            Vec::with_capacity(update.withdrawn_routes.len() + update.new_routes.len());
        for prefix in update.withdrawn_routes {
            if state.learned.remove(&prefix).is_some() {
                touched.push(prefix);
            }
        }
        let (routes_max, path_max) = (state.config.routes_max, state.config.path_max);
        for route in update.new_routes {
            let fits = route.path.len() <= path_max
                && (state.learned.contains_key(&route.prefix) || state.learned.len() < routes_max);
            if !fits || !importable(&self.own, &self.scheme, &route) {
                self.counters.routes_filtered += 1;
                continue;
            }
            let learned = LearnedRoute {
                path: route.path,
                auth: route.auth,
            };
            state.learned.insert(route.prefix.clone(), learned);
            touched.push(route.prefix);
        }
        for prefix in touched {
            self.reselect(&prefix);
        }
        Ok(())
    }

    /// The answer to our request `id`: `fulfilled` or not (a Reject, a failure, an expiry).
    pub fn handle_reply(&mut self, id: u32, fulfilled: bool, now: i64) {
        let Some((peer, _)) = self.pending.remove(&id) else {
            return;
        };
        let state = &mut self.peers[peer.index()];
        if state.control_in_flight == Some(id) {
            state.control_in_flight = None;
            if fulfilled {
                state.control_refusals = 0;
                state.control_due_at = None;
            } else {
                let delay = CONTROL_RETRY_FIRST_MS
                    .saturating_mul(1 << state.control_refusals.min(5))
                    .min(RETRY_MS);
                state.control_refusals += 1;
                state.control_due_at = Some(now + delay);
            }
        } else if let Some((update, to)) = state.update_in_flight {
            if update == id {
                state.update_in_flight = None;
                if fulfilled {
                    state.acked_epoch = state.acked_epoch.max(to);
                } else {
                    state.update_retry_at = now + RETRY_MS;
                }
            }
        }
    }

    /// Periodic work: requests whose answer never came, hold-down expiry, control requests
    /// due, updates owed.
    pub fn tick(&mut self, now: i64) {
        // An answer lost on the way (a core that stopped, a full queue) must not stall a peer:
        // past its deadline a request counts as refused.
        let lost: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, &(_, deadline))| deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in lost {
            self.handle_reply(id, false, now);
        }
        for i in 0..self.peers.len() {
            let peer = PeerId(i as u16);
            let state = &mut self.peers[i];
            if !state.learned.is_empty() && now >= state.expires_at {
                self.counters.routes_expired += state.learned.len() as u64;
                // The peer went quiet: forget its routes and ask again.
                state.their_table = None;
                state.their_epoch = 0;
                state.control_due_at = Some(now);
                self.forget(peer);
            }
            self.send_control_if_due(peer, now);
            self.send_update_if_owed(peer, now);
        }
    }

    /// The next request to send.
    pub fn poll_send(&mut self) -> Option<Outgoing> {
        self.outbox.pop_front()
    }

    /// Whether the learned forwarding table changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The learned forwarding table: each prefix and the peer it goes to.
    pub fn best_routes(&self) -> impl Iterator<Item = (&str, PeerId)> {
        self.best
            .iter()
            .map(|(prefix, &peer)| (prefix.as_str(), peer))
    }

    /// Every route we learned, best or not, sorted by prefix then peer.
    pub fn learned(&self) -> Vec<Learned> {
        let mut all = Vec::new();
        for (i, state) in self.peers.iter().enumerate() {
            let peer = PeerId(i as u16);
            for (prefix, route) in &state.learned {
                all.push(Learned {
                    prefix: prefix.clone(),
                    peer,
                    path: route.path.clone(),
                    epoch: state.their_epoch,
                    best: self.best.get(prefix) == Some(&peer),
                });
            }
        }
        all.sort_by(|a, b| (&a.prefix, a.peer).cmp(&(&b.prefix, b.peer)));
        all
    }

    fn state(&mut self, peer: PeerId) -> Result<&mut PeerState, String> {
        self.peers
            .get_mut(peer.index())
            .ok_or_else(|| "unknown peer".to_owned())
    }

    /// Drops every route learned from `peer`.
    fn forget(&mut self, peer: PeerId) {
        let learned = std::mem::take(&mut self.peers[peer.index()].learned);
        for prefix in learned.keys() {
            self.reselect(prefix);
        }
    }

    fn reselect_all(&mut self) {
        let mut prefixes: Vec<String> = self
            .peers
            .iter()
            .flat_map(|p| p.learned.keys().cloned())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        for prefix in prefixes {
            self.reselect(&prefix);
        }
    }

    /// Chooses the best learned route for `prefix` again, and what we advertise for it.
    fn reselect(&mut self, prefix: &str) {
        let best = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let route = p.learned.get(prefix)?;
                Some((p.config.relation, route.path.len(), i))
            })
            .min()
            .map(|(_, _, i)| PeerId(i as u16));
        let was = match best {
            Some(peer) => self.best.insert(prefix.to_owned(), peer),
            None => self.best.remove(prefix),
        };
        if was != best {
            self.changed = true;
        }
        self.readvertise(prefix);
    }

    /// Sets what we advertise for `prefix` (local first, else the best learned route), and
    /// moves the epoch if that changed.
    fn readvertise(&mut self, prefix: &str) {
        let local = self.local.iter().find(|l| l.prefix == prefix);
        let route = match (local, self.best.get(prefix)) {
            // As the JS connector advertises every route: our address first in the path (so
            // a loop back to us is seen), the auth hashed once more.
            (Some(local), _) => Some(Advertised {
                path: vec![self.own.clone()],
                auth: Sha256::digest(hmac_sha256(&self.secret, prefix.as_bytes())).into(),
                source: Source::Local(local.via.clone()),
            }),
            (None, Some(&peer)) => {
                let learned = &self.peers[peer.index()].learned[prefix];
                let mut path = Vec::with_capacity(learned.path.len() + 1);
                path.push(self.own.clone());
                path.extend(learned.path.iter().cloned());
                Some(Advertised {
                    path,
                    auth: Sha256::digest(learned.auth).into(),
                    source: Source::Learned(peer),
                })
            }
            (None, None) => None,
        };
        let current = self.adverts.get(prefix).and_then(|a| a.route.as_ref());
        if current == route.as_ref() || (current.is_none() && route.is_none()) {
            return;
        }
        self.epoch += 1;
        self.adverts.insert(
            prefix.to_owned(),
            Advert {
                route,
                changed_at: self.epoch,
            },
        );
        self.forget_old_tombstones();
    }

    fn forget_old_tombstones(&mut self) {
        let tombstones = self.adverts.values().filter(|a| a.route.is_none()).count();
        if tombstones <= TOMBSTONES_MAX {
            return;
        }
        let mut ages: Vec<u32> = self
            .adverts
            .values()
            .filter(|a| a.route.is_none())
            .map(|a| a.changed_at)
            .collect();
        ages.sort_unstable();
        let cut = ages[ages.len() - TOMBSTONES_MAX];
        self.adverts
            .retain(|_, a| a.route.is_some() || a.changed_at >= cut);
        self.horizon = self.horizon.max(cut);
    }

    fn next_id(&mut self, peer: PeerId, now: i64) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.pending.insert(id, (peer, now + ANSWER_WAIT_MS));
        id
    }

    fn send_control_if_due(&mut self, peer: PeerId, now: i64) {
        let state = &self.peers[peer.index()];
        let due = state.control_due_at.is_some_and(|at| at <= now);
        if !(state.up && state.config.receive_routes && due && state.control_in_flight.is_none()) {
            return;
        }
        let request = RouteControlRequest {
            mode: Mode::Sync,
            last_known_routing_table_id: state.their_table.unwrap_or(RoutingTableId([0; 16])),
            last_known_epoch: state.their_epoch,
            features: Vec::new(),
        };
        let id = self.next_id(peer, now);
        let state = &mut self.peers[peer.index()];
        state.control_in_flight = Some(id);
        state.control_due_at = None;
        self.outbox.push_back(Outgoing {
            peer,
            id,
            destination: CCP_CONTROL_DESTINATION,
            payload: request.to_bytes(),
        });
    }

    fn send_update_if_owed(&mut self, peer: PeerId, now: i64) {
        let state = &self.peers[peer.index()];
        let owed = state.acked_epoch < self.epoch || now >= state.next_update_at;
        if !(state.up
            && state.sync
            && state.config.send_routes
            && state.update_in_flight.is_none()
            && now >= state.update_retry_at
            && owed)
        {
            return;
        }
        let from = if state.acked_epoch < self.horizon {
            0
        } else {
            state.acked_epoch
        };
        let is_parent = state.config.relation == Relation::Parent;
        let limit = self.epoch.min(from.saturating_add(EPOCHS_PER_UPDATE_MAX));
        let mut changed: Vec<(&String, &Advert)> = self
            .adverts
            .iter()
            .filter(|(_, a)| a.changed_at > from && a.changed_at <= limit)
            .collect();
        changed.sort_by_key(|(_, a)| a.changed_at);
        let mut to = limit;
        let mut size = 0;
        let mut new_routes = Vec::new();
        let mut withdrawn_routes = Vec::new();
        for (prefix, advert) in changed {
            let exported = advert
                .route
                .as_ref()
                .filter(|r| self.exportable(prefix, r, peer, is_parent));
            let route = exported.map(|r| Route {
                prefix: prefix.clone(),
                path: r.path.clone(),
                auth: r.auth,
                props: Vec::new(),
            });
            let len = route.as_ref().map_or(prefix.len() + 3, |r| r.encoded_len());
            if size + len > UPDATE_DATA_MAX && (size > 0 || len > UPDATE_DATA_MAX) {
                if size == 0 {
                    // One route too large for any update: skipped.
                    self.counters.routes_filtered += 1;
                    continue;
                }
                to = advert.changed_at - 1;
                break;
            }
            size += len;
            match route {
                Some(route) => new_routes.push(route),
                None => withdrawn_routes.push(prefix.clone()),
            }
        }
        let update = RouteUpdateRequest {
            routing_table_id: self.table_id,
            current_epoch_index: self.epoch,
            from_epoch_index: from,
            to_epoch_index: to,
            hold_down_time_ms: HOLD_DOWN_MS,
            speaker: self.own.clone(),
            new_routes,
            withdrawn_routes,
        };
        let id = self.next_id(peer, now);
        let state = &mut self.peers[peer.index()];
        state.update_in_flight = Some((id, to));
        state.next_update_at = now + BROADCAST_INTERVAL_MS;
        self.counters.updates_sent += 1;
        self.outbox.push_back(Outgoing {
            peer,
            id,
            destination: CCP_UPDATE_DESTINATION,
            payload: update.to_bytes(),
        });
    }

    /// Whether `route` for `prefix` may be told to `peer`.
    fn exportable(&self, prefix: &str, route: &Advertised, peer: PeerId, to_parent: bool) -> bool {
        match &route.source {
            Source::Local(via) => !via.contains(&peer),
            Source::Learned(from) => {
                let from_relation = self.peers[from.index()].config.relation;
                let covered = self.local.iter().any(|l| {
                    l.covers
                        && prefix
                            .strip_prefix(l.prefix.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                });
                *from != peer && !(to_parent && from_relation != Relation::Child) && !covered
            }
        }
    }
}

/// The import filters: the scheme, our own address, loops.
fn importable(own: &str, scheme: &str, route: &Route) -> bool {
    let prefix = route.prefix.as_str();
    let under_own = prefix == own
        || prefix
            .strip_prefix(own)
            .is_some_and(|rest| rest.starts_with('.'));
    prefix.starts_with(scheme)
        && prefix.len() > scheme.len()
        && !under_own
        && !route.path.iter().any(|hop| hop == own)
        && crate::wire::check_address(prefix.as_bytes()).is_ok()
}

/// HMAC-SHA-256 (RFC 2104) of `message` under a 32-byte `key`.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut inner = Sha256::new();
    let mut outer = Sha256::new();
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    inner.update(ipad);
    inner.update(message);
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
#[path = "speaker_tests.rs"]
mod tests;
