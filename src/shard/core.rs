//! One core's dispatch: link events in, engine decisions out, and the answers back to the
//! links. The rooms it drives each own their state and report what happened:
//!
//! | room | owns |
//! | --- | --- |
//! | `links.rs` | the link table: [`Transport`] per connection, output queues and their caps, admission counts |
//! | `http_pool.rs` | keep-alive pools of ILP-over-HTTP connections to the peers we POST to |
//! | `mesh.rs` | messages to other cores, and the backlog of those that must arrive |
//! | `tag.rs` | the handles a request carries: [`InTag`] for the engine, [`OutTag`] for a link |
//!
//! Sans I/O: it holds no socket, channel or executor handle and reads no clock. The I/O tasks
//! in `conn.rs` and `http.rs` hand it whole WebSocket messages and HTTP requests with `now`;
//! what it wants done outside waits in outboxes (link signals, the mesh, `http_dials`) that
//! `io.rs` drains after each batch. The unit tests in `core_tests.rs` drive it with a virtual
//! clock.
//!
//! Just over 800 lines: one dispatch arm per event kind of every transport; each calls a room
//! or the engine and passes on what it reports (splitting `impl CoreState` would only hide
//! that loop, as ARCHITECTURE.md says).

use super::control::Command;
use super::http_pool::{self, HttpPools};
pub(crate) use super::links::{Admission, BtpLink, HttpLink, Link, LinkId, Transport};
use super::links::{Caps, Links, Refused, Signal};
use super::mesh::{CrossMsg, MeshOut};
use super::report::{self, CoreReport, PeerReport};
use super::tag::{InTag, OutTag};
pub(crate) use super::RuntimeCounters;
use super::Shared;
use crate::cluster::agent::{Command as ClusterCommand, Status as ClusterStatus};
use crate::config::Config;
use crate::engine::{
    CoreId, Decision, Engine, HealthChange, PeerId, RejectReason, Reply, SlotId, Tag,
    REJECT_LEN_MAX,
};
use crate::link::auth::PeerAuth;
use crate::link::btp::{
    AuthEvent, BtpSession, Event, Role as BtpRole, SendError, State, CONTROL_LEN_MAX,
};
use crate::link::websocket::Opcode;
use crate::wire::BTP_HEADER_LEN_MAX;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Everything one core owns.
pub(crate) struct CoreState {
    pub(crate) core: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Arc<Config>,
    pub(crate) engine: Engine,
    auth: Rc<PeerAuth>,
    pub(crate) links: Links,
    /// Per peer: the indices of its open links on this core, and the round-robin cursor.
    peer_links: Vec<Vec<u16>>,
    round_robin: Vec<usize>,
    pub(crate) mesh: MeshOut,
    pools: HttpPools,
    /// Where the engine copies a Prepare whose hold waited (reused).
    ready_packet: Vec<u8>,
    pub(crate) draining: bool,
    /// Outbox: HTTP connections to open, for the core's dialler task.
    pub(crate) http_dials: Vec<PeerId>,
    /// Outbox: BTP peers added by a reload that this core dials (a dialling task each).
    pub(crate) btp_dials: Vec<PeerId>,
    pub(crate) counters: RuntimeCounters,
    /// The last report request answered (see `report.rs`).
    reported: u64,
    /// The config epoch applied (see `reload.rs`).
    config_epoch: u64,
    /// Bumped by every applied reload: credentials cached by HTTP connections before it are
    /// checked again.
    pub(crate) auth_generation: u64,
    /// Per peer: the last cluster agent command applied here (see `cluster.rs`).
    cluster_seq: Vec<u64>,
}

impl std::fmt::Debug for CoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreState")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl CoreState {
    pub(crate) fn new(
        core: usize,
        shared: Arc<Shared>,
        config: Arc<Config>,
        engine: Engine,
        auth: Rc<PeerAuth>,
    ) -> Self {
        let peers = config.peers().len();
        let mesh = MeshOut::new(shared.cores, config.limits().ring_capacity);
        let mut state = CoreState {
            core,
            shared,
            engine,
            auth,
            links: Links::default(),
            peer_links: vec![Vec::new(); peers],
            round_robin: vec![0; peers],
            mesh,
            pools: HttpPools::new(&config),
            ready_packet: Vec::new(),
            draining: false,
            http_dials: Vec::new(),
            btp_dials: Vec::new(),
            counters: RuntimeCounters::default(),
            reported: 0,
            config_epoch: 0,
            auth_generation: 0,
            cluster_seq: Vec::new(),
            config,
        };
        // A peer we POST to is reachable from the start, before the first tick.
        state.refresh_link_state();
        state
    }

    fn queue_max(&self) -> usize {
        self.config.limits().link_queue_bytes_max
    }

    /// A BTP transport for `session`; `client` when we dialled (our frames are masked, the
    /// keys seeded from `now`).
    pub(crate) fn btp_transport(&self, session: BtpSession, client: bool, now: i64) -> Transport {
        let seed = now as u64 ^ (self.core as u64) << 56 ^ 0x9e37_79b9_7f4a_7c15;
        Transport::Btp(BtpLink::new(session, client, seed))
    }

    /// Registers a new connection; `None` (counted) when this core already has
    /// `unauthenticated_max` links pending (`Admission::Pending`) or `links_max` authenticated
    /// ones (`Admission::Authenticated`): the caller closes it at once.
    pub(crate) fn add_link(
        &mut self,
        transport: Transport,
        path_account: Option<String>,
        admission: Admission,
        now: i64,
    ) -> Option<LinkId> {
        let limits = self.config.limits();
        let caps = Caps {
            links_max: limits.links_max,
            unauthenticated_max: limits.unauthenticated_max,
        };
        match self
            .links
            .add(transport, path_account, admission, caps, now)
        {
            Ok(id) => Some(id),
            Err(Refused::Unauthenticated) => {
                self.counters.unauthenticated_refused += 1;
                None
            }
            Err(Refused::Links) => {
                self.counters.links_refused += 1;
                None
            }
        }
    }

    /// The WebSocket upgrade of an accepted link is done: it carries BTP from now on.
    pub(crate) fn start_btp(
        &mut self,
        now: i64,
        id: LinkId,
        session: BtpSession,
        account: Option<String>,
    ) {
        let transport = self.btp_transport(session, false, now);
        if let Some(link) = self.links.get_mut(id) {
            link.transport = transport;
            link.path_account = account;
        }
    }

    /// The link's TLS client certificate stands for `peer` (see `crate::link::tls`): its
    /// auth may leave the token out.
    pub(crate) fn set_cert_peer(&mut self, id: LinkId, peer: Option<PeerId>) {
        if let Some(link) = self.links.get_mut(id) {
            link.cert_peer = peer;
        }
    }

    pub(crate) fn link(&self, id: LinkId) -> Option<&Link> {
        self.links.get(id)
    }

    pub(crate) fn link_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.links.get_mut(id)
    }

    /// Moves a link from the unauthenticated count to the authenticated one; `false`
    /// (counted in `links_refused`) when this core already has `links_max` authenticated
    /// links: the caller closes it. A link already counted as authenticated stays so.
    pub(crate) fn authenticate_link(&mut self, id: LinkId) -> bool {
        let accepted = self.links.authenticate(id, self.config.limits().links_max);
        if !accepted && self.links.get(id).is_some() {
            self.counters.links_refused += 1;
        }
        accepted
    }

    /// Marks the link authenticated as `peer` and makes it eligible to carry Prepares.
    fn open_link(&mut self, id: LinkId, peer: PeerId) -> bool {
        if self.shared.draining[peer.index()].load(Ordering::Relaxed) {
            tracing::info!(core = self.core, peer = %self.config.peer(peer).name, "link refused: the peer is being drained");
            return false;
        }
        if !self.authenticate_link(id) {
            return false;
        }
        let max = self.config.limits().connections_per_peer_max;
        let count = &self.shared.connections[peer.index()];
        if count.fetch_add(1, Ordering::Relaxed) >= max {
            count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if let Some(link) = self.link_mut(id) {
            link.peer = Some(peer);
        }
        self.peer_links[peer.index()].push(id.index);
        self.shared.link_cores[peer.index()].fetch_or(1 << self.core, Ordering::Relaxed);
        self.engine.set_link_up(peer, true);
        self.announce_links();
        tracing::info!(core = self.core, peer = %self.config.peer(peer).name, "link up");
        true
    }

    /// Removes a finished link: its outstanding requests fail with T01 at once.
    pub(crate) fn remove_link(&mut self, now: i64, id: LinkId) {
        let Some(mut link) = self.links.remove(id) else {
            return;
        };
        let mut abandoned = Vec::new();
        if let Some(session) = link.session_mut() {
            report::add_btp(&mut self.counters.btp_closed, session.counters());
            session.close();
            while let Some(tag) = session.poll_abandoned() {
                abandoned.push(tag);
            }
        }
        // A BTP link's peer is set at auth; an HTTP client link's is its pool's.
        if let (Some(peer), Transport::Btp(_)) = (link.peer, &link.transport) {
            let list = &mut self.peer_links[peer.index()];
            list.retain(|&i| i != id.index);
            self.shared.connections[peer.index()].fetch_sub(1, Ordering::Relaxed);
            if list.is_empty() {
                self.shared.link_cores[peer.index()]
                    .fetch_and(!(1 << self.core), Ordering::Relaxed);
            }
            tracing::info!(core = self.core, peer = %self.config.peer(peer).name, "link down");
        }
        self.refresh_link_state();
        self.announce_links();
        for tag in abandoned {
            self.fail_outgoing(now, tag, RejectReason::PeerUnreachable);
        }
    }

    /// Tells the other cores that this core's links changed.
    fn announce_links(&mut self) {
        let me = self.core;
        for core in (0..self.shared.cores).filter(|&c| c != me) {
            // Best effort: a full ring only delays the news until the other core's next tick.
            let _ = self.mesh.send(core, CrossMsg::LinksChanged);
        }
    }

    /// Tells the engine which peers have a link on some core.
    pub(crate) fn refresh_link_state(&mut self) {
        // The shared table has a row for every slot; this core knows the peers it applied.
        let known = self.peer_links.len();
        for (i, cores) in self.shared.link_cores[..known].iter().enumerate() {
            // A peer we POST to over HTTP is reachable whenever we can connect: a failed
            // connection answers its Prepares T01.
            let peer = PeerId(i as u16);
            let up = cores.load(Ordering::Relaxed) != 0 || self.pools.has(peer);
            self.engine.set_link_up(peer, up);
            if self.pools.has(peer) {
                self.engine.set_reachable(peer, self.pools.reachable(peer));
            }
        }
    }

    /// Queues a binary frame made of `parts` on a BTP link.
    fn push_frame(&mut self, index: u16, parts: &[&[u8]]) {
        let queue_max = self.queue_max();
        self.links.push_frame(index, parts, queue_max);
    }

    /// Queues a control frame (ping answer, close) on a BTP link.
    pub(crate) fn push_control(&mut self, id: LinkId, opcode: Opcode, payload: &[u8]) {
        let queue_max = self.queue_max();
        self.links.push_control(id, opcode, payload, queue_max);
    }

    /// Queues raw bytes (an HTTP head and body) on a link.
    fn push_raw(&mut self, index: u16, parts: &[&[u8]]) {
        let queue_max = self.queue_max();
        self.links.push_raw(index, parts, queue_max);
    }

    /// Marks a link finished: its writer flushes and closes the socket.
    pub(crate) fn close_link(&mut self, id: LinkId) {
        self.links.close(id);
    }

    /// Client links: sends our auth as the first message.
    pub(crate) fn send_auth(&mut self, id: LinkId, username: &[u8], token: &[u8]) {
        let Some(session) = self.link_mut(id).and_then(|l| l.session_mut()) else {
            return;
        };
        let mut buf = vec![0u8; BtpSession::auth_len(username, token)];
        let n = session.write_auth(username, token, &mut buf);
        self.push_frame(id.index, &[&buf[..n]]);
    }

    /// Takes one binary WebSocket message from a link.
    pub(crate) fn on_message(&mut self, now: i64, id: LinkId, message: &mut [u8]) {
        let mut control = [0u8; CONTROL_LEN_MAX];
        let auth = Rc::clone(&self.auth);
        let Some(link) = self.link_mut(id) else {
            return;
        };
        let account = link.path_account.clone();
        let cert = link.cert_peer;
        let Some(session) = link.session_mut() else {
            return;
        };
        let awaiting_server_auth =
            session.role() == BtpRole::Server && session.state() == State::AwaitingAuth;
        if awaiting_server_auth {
            let event =
                session.handle_auth(now, &auth, account.as_deref(), cert, message, &mut control);
            match event {
                AuthEvent::Accepted { peer, len } => {
                    if self.open_link(id, peer) {
                        self.push_frame(id.index, &[&control[..len]]);
                    } else {
                        tracing::warn!(core = self.core, peer = %self.config.peer(peer).name, "too many connections");
                        self.close_link(id);
                    }
                }
                AuthEvent::Refused { len } => {
                    tracing::info!(core = self.core, "BTP auth refused");
                    if len > 0 {
                        self.push_frame(id.index, &[&control[..len]]);
                    }
                    self.close_link(id);
                }
            }
            return;
        }
        let event = session.handle_message(now, message, &mut control);
        match event {
            Event::Opened(peer) => {
                if !self.open_link(id, peer) {
                    self.close_link(id);
                }
            }
            Event::Prepare { request_id, ilp } => {
                self.on_prepare(now, id, request_id, &mut message[ilp]);
            }
            Event::Reply { tag, ilp } => self.on_reply(now, tag, &message[ilp]),
            Event::ReplyError { tag, code } => {
                self.fail_outgoing(now, tag, RejectReason::from_btp_error(&code));
            }
            Event::Respond(len) => self.push_frame(id.index, &[&control[..len]]),
            Event::Ignored => {}
            Event::Close => self.close_link(id),
        }
    }

    fn on_prepare(&mut self, now: i64, id: LinkId, request_id: u32, ilp: &mut [u8]) {
        let Some(peer) = self.link(id).and_then(|l| l.peer) else {
            return;
        };
        self.on_prepare_from(now, id, peer, request_id, ilp);
    }

    fn on_prepare_from(
        &mut self,
        now: i64,
        id: LinkId,
        peer: PeerId,
        request_id: u32,
        ilp: &mut [u8],
    ) {
        let tag = InTag {
            link: id,
            request_id,
        }
        .encode();
        if self.draining {
            self.reply_reject(tag, RejectReason::ConnectorBusy);
            return;
        }
        let decision = self.engine.handle_prepare(now, peer, tag, ilp);
        if let Some(http) = self.link_mut(id).and_then(|l| l.http_mut()) {
            // ILP over HTTP: a body the engine could not decode is a 400 (what interledger-rs
            // peers expect, RFC 35 as deployed), and an answer owed comes by the expiry.
            match decision {
                Decision::Reject(RejectReason::InvalidPacket) => {
                    self.counters.http_refused += 1;
                    self.http_respond(id, request_id, None, 400);
                    return;
                }
                Decision::Forward { expires_at, .. } => http.owe_until(expires_at),
                Decision::Wait { slot } => {
                    let expires_at = self.engine.pending().get(slot).map(|e| e.expires_at);
                    let Some(http) = self.link_mut(id).and_then(|l| l.http_mut()) else {
                        return;
                    };
                    http.owe_until(expires_at.unwrap_or(now));
                }
                Decision::RouteControl { expires_at } => http.owe_until(expires_at),
                Decision::Reject(_) | Decision::PeerConfig => {}
            }
        }
        match decision {
            Decision::Reject(reason) => self.reply_reject(tag, reason),
            Decision::Forward {
                to,
                slot,
                len,
                expires_at,
            } => self.forward(now, slot, to, expires_at, &ilp[..len]),
            // Comes out of `drain_ready` once the lease traffic decides it.
            Decision::Wait { .. } => {}
            Decision::PeerConfig => {
                if let Some(reply) = self.engine.peer_config_reply(peer) {
                    self.reply_bytes(tag, &reply);
                }
            }
            // The speaker answers at a later tick (`follow_control`).
            Decision::RouteControl { .. } => {
                if !self.shared.control.request(self.core, tag, peer, ilp) {
                    self.reply_reject(tag, RejectReason::ConnectorBusy);
                }
            }
        }
    }

    /// Does what the route speaker left for this core: answers to CCP requests, and its own
    /// requests to send (on a BTP link of ours to the peer, else over HTTP).
    fn follow_control(&mut self, now: i64) {
        for command in self.shared.control.take(self.core) {
            match command {
                Command::Answer { tag, reply } => self.reply_bytes(tag, &reply),
                Command::Send {
                    peer,
                    id,
                    prepare,
                    expires_at,
                } => {
                    let tag = OutTag::Control(id);
                    let sent = if self.pools.has(peer) {
                        self.send_http(now, peer, tag, expires_at, &prepare)
                    } else {
                        match self.pick_link(peer) {
                            Some(index) => self.send_prepare(index, tag, expires_at, &prepare),
                            None => Err(RejectReason::PeerUnreachable),
                        }
                    };
                    if sent.is_err() {
                        self.shared.control.reply(id, false);
                    }
                }
            }
        }
    }

    /// Hands the engine's balance and rate messages to the mesh (never lost).
    fn send_leases(&mut self) {
        while let Some(lease) = self.engine.poll_lease() {
            self.send_reliably(usize::from(lease.to.0), CrossMsg::Lease(lease));
        }
        while let Some(rate) = self.engine.poll_rate() {
            self.send_reliably(usize::from(rate.to.0), CrossMsg::Rate(rate));
        }
    }

    /// Forwards or refuses the Prepares whose holds waited for headroom and are now decided.
    fn drain_ready(&mut self, now: i64) {
        let mut packet = std::mem::take(&mut self.ready_packet);
        while let Some(ready) = self.engine.poll_ready(&mut packet) {
            match ready.decision {
                Decision::Forward {
                    to,
                    slot,
                    len,
                    expires_at,
                } => self.forward(now, slot, to, expires_at, &packet[..len]),
                Decision::Reject(reason) => self.reply_reject(ready.tag, reason),
                Decision::Wait { .. } | Decision::PeerConfig | Decision::RouteControl { .. } => {
                    unreachable!("poll_ready decides")
                }
            }
        }
        self.ready_packet = packet;
    }

    /// Sends a forwarded Prepare: over HTTP, on a link of ours to `to`, or to another core
    /// that has one. One that cannot be sent (no byte of it left) moves to another backend
    /// when its route leads to a group ([`Engine::reroute`]), else is answered at once.
    fn forward(&mut self, now: i64, slot: SlotId, to: PeerId, expires_at: i64, packet: &[u8]) {
        let mut to = to;
        loop {
            let result = if self.pools.has(to) {
                self.send_http(now, to, OutTag::Local(slot), expires_at, packet)
            } else if let Some(index) = self.pick_link(to) {
                self.send_prepare(index, OutTag::Local(slot), expires_at, packet)
            } else {
                self.hand_over(slot, to, expires_at, packet)
            };
            let Err(reason) = result else {
                return;
            };
            // Bounded: the engine moves a Prepare a few times at most.
            match self.engine.reroute(slot, packet) {
                Some(next) => to = next,
                None => {
                    let reply = self.engine.handle_failure(slot, reason);
                    self.deliver(now, reply, &[]);
                    return;
                }
            }
        }
    }

    /// A Prepare of ours that was never written (another core could not send it, or an HTTP
    /// peer could not be reached before its turn): another backend, or the answer.
    fn resend_unsent(
        &mut self,
        now: i64,
        slot: SlotId,
        reason: RejectReason,
        expires_at: i64,
        packet: &[u8],
    ) {
        match self.engine.reroute(slot, packet) {
            Some(next) => self.forward(now, slot, next, expires_at, packet),
            None => {
                let reply = self.engine.handle_failure(slot, reason);
                self.deliver(now, reply, &[]);
            }
        }
    }

    /// Hands a Prepare to the next core with a link for `to`, after ours (so the load
    /// spreads); T01 when none has one, T03 when its ring is full.
    fn hand_over(
        &mut self,
        slot: SlotId,
        to: PeerId,
        expires_at: i64,
        packet: &[u8],
    ) -> Result<(), RejectReason> {
        let cores = self.shared.link_cores[to.index()].load(Ordering::Relaxed);
        let others = cores & !(1 << self.core);
        if others == 0 {
            return Err(RejectReason::PeerUnreachable);
        }
        let target = (1..=self.shared.cores)
            .map(|k| (self.core + k) % self.shared.cores)
            .find(|&c| others & 1 << c != 0)
            .expect("a bit is set");
        let message = CrossMsg::Forward {
            origin: self.core,
            slot,
            to,
            expires_at,
            packet: packet.to_vec(),
        };
        match self.mesh.send(target, message) {
            true => Ok(()),
            false => Err(RejectReason::ConnectorBusy),
        }
    }

    fn pick_link(&mut self, peer: PeerId) -> Option<u16> {
        let list = &self.peer_links[peer.index()];
        if list.is_empty() {
            return None;
        }
        let rr = &mut self.round_robin[peer.index()];
        *rr = (*rr + 1) % list.len();
        Some(list[*rr])
    }

    /// Writes a Prepare on a local BTP link, registering `tag` for its reply.
    fn send_prepare(
        &mut self,
        index: u16,
        tag: OutTag,
        expires_at: i64,
        packet: &[u8],
    ) -> Result<(), RejectReason> {
        let half = self.queue_max() / 2;
        let Some(id) = self.links.id_at(index) else {
            return Err(RejectReason::PeerUnreachable);
        };
        let link = self.links.get_mut(id).expect("just found");
        // Half the cap: the rest is room for the replies and control frames owed to it.
        if link.queued() > half || link.closing {
            return Err(RejectReason::ConnectorBusy);
        }
        let Some(session) = link.session_mut() else {
            return Err(RejectReason::PeerUnreachable);
        };
        let mut header = [0u8; BTP_HEADER_LEN_MAX];
        match session.write_prepare_header(tag.encode(), packet.len(), expires_at, &mut header) {
            Ok(n) => {
                self.push_frame(index, &[&header[..n], packet]);
                Ok(())
            }
            Err(SendError::Busy) => Err(RejectReason::ConnectorBusy),
            Err(SendError::NotOpen) => Err(RejectReason::PeerUnreachable),
        }
    }

    /// The next hop's Fulfill or Reject for the Prepare with out tag `tag`.
    fn on_reply(&mut self, now: i64, tag: u64, ilp: &[u8]) {
        match OutTag::decode(tag) {
            OutTag::Remote { origin, slot } => {
                let packet = ilp.to_vec();
                self.send_reliably(origin, CrossMsg::Reply { slot, packet });
            }
            OutTag::Local(slot) => {
                let reply = self.engine.handle_reply(now, slot, ilp);
                self.deliver(now, reply, ilp);
            }
            OutTag::Control(id) => {
                let fulfilled = matches!(
                    crate::wire::Packet::new_checked(ilp),
                    Ok(crate::wire::Packet::Fulfill(_))
                );
                self.shared.control.reply(id, fulfilled);
            }
        }
    }

    /// An outgoing request failed below ILP (BTP Error, link gone, purged).
    fn fail_outgoing(&mut self, now: i64, tag: u64, reason: RejectReason) {
        match OutTag::decode(tag) {
            OutTag::Remote { origin, slot } => {
                self.send_reliably(origin, CrossMsg::Failure { slot, reason });
            }
            OutTag::Local(slot) => {
                let reply = self.engine.handle_failure(slot, reason);
                self.deliver(now, reply, &[]);
            }
            OutTag::Control(id) => self.shared.control.reply(id, false),
        }
    }

    /// Sends the engine's verdict on a forwarded Prepare back to its incoming link.
    fn deliver(&mut self, _now: i64, reply: Reply, bytes: &[u8]) {
        match reply {
            Reply::Fulfill { tag, len, .. } | Reply::Relay { tag, len, .. } => {
                self.reply_bytes(tag, &bytes[..len])
            }
            Reply::Reject { tag, reason, .. } => self.reply_reject(tag, reason),
            Reply::Drop => {}
        }
    }

    fn reply_reject(&mut self, tag: Tag, reason: RejectReason) {
        let mut reject = [0u8; REJECT_LEN_MAX];
        let n = self.engine.emit_reject(reason, &mut reject);
        self.reply_bytes(tag, &reject[..n]);
    }

    /// Writes an ILP answer on the link the Prepare came in on, in its transport's form.
    fn reply_bytes(&mut self, tag: Tag, ilp: &[u8]) {
        let InTag {
            link: id,
            request_id,
        } = InTag::decode(tag);
        let Some(link) = self.link(id).filter(|l| !l.closing) else {
            self.counters.replies_to_gone_links += 1;
            return;
        };
        match &link.transport {
            Transport::HttpServer(_) => self.http_answer(id, request_id, ilp),
            Transport::Btp(btp) => {
                let mut header = [0u8; BTP_HEADER_LEN_MAX];
                let n = btp
                    .session
                    .write_reply_header(request_id, ilp.len(), &mut header);
                self.push_frame(id.index, &[&header[..n], ilp]);
            }
            Transport::Handshake | Transport::HttpClient(_) => {}
        }
    }

    /// Answers HTTP request `seq` on a link with a `200` carrying an ILP reply.
    fn http_answer(&mut self, id: LinkId, seq: u32, ilp: &[u8]) {
        self.http_respond(id, seq, Some(ilp), 200);
    }

    /// Answers HTTP request `seq`: a `200` with `ilp`, or a bodyless `status`, in request
    /// order (see [`HttpLink::respond`]); the link closes once an answer that ends the
    /// connection is written.
    fn http_respond(&mut self, id: LinkId, seq: u32, ilp: Option<&[u8]>, status: u16) {
        let Some(http) = self.link_mut(id).and_then(|l| l.http_mut()) else {
            return;
        };
        let Some(out) = http.respond(seq, ilp, status) else {
            return;
        };
        if let Some((head, n)) = out.head {
            self.push_raw(id.index, &[&head[..n], ilp.unwrap_or_default()]);
        }
        for bytes in &out.ready {
            self.push_raw(id.index, &[bytes]);
        }
        self.links.raise(id.index, Signal::ANSWERED);
        if out.closing {
            self.close_link(id);
        }
    }

    /// Takes one ILP-over-HTTP request from `peer`; `None` is a refused token (401, decided
    /// from the head: the body is never read, so an unauthenticated peer costs no body
    /// buffer). `refuse` is a request refused before that (a status: 400, 405, 408, 411, 413, 431). Either way the connection
    /// closes once the answer is written, after the answers owed to earlier requests. A body
    /// that is not a Prepare gets a 400 and the connection stays (what interledger-rs peers
    /// expect; RFC 35 also allows 200 with F01); else the engine decides and the answer is written
    /// now (a local Reject) or when the reply comes back (by the Prepare's expiry).
    pub(crate) fn on_http_request(
        &mut self,
        now: i64,
        id: LinkId,
        peer: Option<PeerId>,
        body: &mut [u8],
        keep_alive: bool,
        refuse: Option<u16>,
    ) {
        let keep_alive = keep_alive && refuse.is_none() && peer.is_some();
        let Some(http) = self.link_mut(id).and_then(|l| l.http_mut()) else {
            return;
        };
        let seq = http.begin(keep_alive);
        match (refuse, peer) {
            // The engine's own decode decides a 400 (`on_prepare_from`).
            (None, Some(peer)) => self.on_prepare_from(now, id, peer, seq, body),
            (status, _) => {
                self.counters.http_refused += 1;
                self.http_respond(id, seq, None, status.unwrap_or(401));
            }
        }
    }

    /// The peer an HTTP request's bearer token (and `/accounts/{name}/ilp` path) names, on a
    /// connection whose TLS client certificate stands for `cert` (see `crate::link::auth`).
    pub(crate) fn authenticate_http(
        &self,
        path_account: Option<&str>,
        token: &[u8],
        cert: Option<PeerId>,
    ) -> Option<PeerId> {
        self.auth
            .authenticate_with_cert(None, path_account, token, cert)
    }

    /// HTTP requests on a link not yet answered on the wire.
    pub(crate) fn http_pending(&self, id: LinkId) -> usize {
        self.link(id)
            .and_then(|l| l.http())
            .map_or(0, |h| h.pending.len())
    }

    /// Sends a Prepare to a peer over HTTP (see `http_pool.rs`); asks the dialler for one
    /// more connection when the pool wants it.
    fn send_http(
        &mut self,
        now: i64,
        to: PeerId,
        tag: OutTag,
        expires_at: i64,
        packet: &[u8],
    ) -> Result<(), RejectReason> {
        let links = &mut self.links;
        let sent = self
            .pools
            .send(links, now, to, tag.encode(), expires_at, packet)?;
        if sent == http_pool::Sent::QueuedDial {
            self.http_dials.push(to);
        }
        Ok(())
    }

    /// A client connection is open, or answered: fill its pipeline from the queue.
    pub(crate) fn http_client_ready(&mut self, now: i64, id: LinkId, peer: PeerId) {
        self.pools.ready(&mut self.links, now, id, peer);
    }

    /// A client connection ends (the server said `Connection: close`, its reader ended, or
    /// it is stale or idle): it takes no more requests, and those it never wrote go to
    /// another connection (see [`HttpPools::retract`]).
    pub(crate) fn http_client_closing(&mut self, now: i64, id: LinkId) {
        for tag in self.pools.retract(&mut self.links, now, id) {
            self.fail_outgoing(now, tag, RejectReason::PeerUnreachable);
        }
        self.close_link(id);
    }

    /// A client connection could not be opened, or closed: its requests in flight fail (T01)
    /// and, when the peer cannot be reached, the waiting ones; or a new connection is asked
    /// for them.
    pub(crate) fn http_client_gone(&mut self, now: i64, peer: PeerId, id: Option<LinkId>) {
        let gone = self.pools.gone(&mut self.links, now, peer, id);
        if gone.dial {
            self.http_dials.push(peer);
        }
        // The peer may be unreachable now: the engine stops choosing it before the Prepares
        // that were never written look for another backend.
        self.refresh_link_state();
        for tag in gone.failed {
            self.fail_outgoing(now, tag, RejectReason::PeerUnreachable);
        }
        let reason = RejectReason::PeerUnreachable;
        for (tag, expires_at, packet) in gone.unsent {
            match OutTag::decode(tag) {
                OutTag::Local(slot) => self.resend_unsent(now, slot, reason, expires_at, &packet),
                OutTag::Control(id) => self.shared.control.reply(id, false),
                OutTag::Remote { origin, slot } => {
                    let message = CrossMsg::Unsent {
                        slot,
                        reason,
                        expires_at,
                        packet,
                    };
                    self.send_reliably(origin, message);
                }
            }
        }
    }

    /// The peer answered the oldest of our POSTs on `id`.
    pub(crate) fn on_http_client_response(
        &mut self,
        now: i64,
        id: LinkId,
        status: u16,
        body: &[u8],
    ) {
        let Some(tag) = self.pools.answered(&mut self.links, now, id) else {
            return;
        };
        match RejectReason::from_http_status(status) {
            Some(reason) => self.fail_outgoing(now, tag, reason),
            // RFC 35 as deployed: a 200 whose body is not a Fulfill or Reject is T01.
            None if crate::wire::Packet::new_checked(body).is_err() => {
                self.fail_outgoing(now, tag, RejectReason::PeerUnreachable)
            }
            None => self.on_reply(now, tag, body),
        }
    }

    /// Takes a message from another core.
    pub(crate) fn on_cross(&mut self, now: i64, message: CrossMsg) {
        // A core that applied a reload may already name a peer it added: apply it here first.
        self.follow_config();
        match message {
            CrossMsg::Forward {
                origin,
                slot,
                to,
                expires_at,
                packet,
            } => {
                let tag = OutTag::Remote { origin, slot };
                let result = match self.pick_link(to) {
                    Some(index) => self.send_prepare(index, tag, expires_at, &packet),
                    None => Err(RejectReason::PeerUnreachable),
                };
                if let Err(reason) = result {
                    // Nothing was written: the origin may send it to another backend.
                    let message = CrossMsg::Unsent {
                        slot,
                        reason,
                        expires_at,
                        packet,
                    };
                    self.send_reliably(origin, message);
                }
            }
            CrossMsg::Unsent {
                slot,
                reason,
                expires_at,
                packet,
            } => self.resend_unsent(now, slot, reason, expires_at, &packet),
            CrossMsg::Reply { slot, packet } => {
                let reply = self.engine.handle_reply(now, slot, &packet);
                self.deliver(now, reply, &packet);
            }
            CrossMsg::Failure { slot, reason } => {
                let reply = self.engine.handle_failure(slot, reason);
                self.deliver(now, reply, &[]);
            }
            CrossMsg::Lease(lease) => {
                self.engine.handle_lease(lease);
                self.send_leases();
                self.drain_ready(now);
            }
            CrossMsg::Rate(message) => {
                self.engine.handle_rate(message, now);
                self.send_leases();
            }
            CrossMsg::LinksChanged => self.refresh_link_state(),
        }
    }

    /// Sends a message that must arrive (a reply, a failure, a lease): if the ring is full it
    /// waits in the backlog.
    fn send_reliably(&mut self, core: usize, message: CrossMsg) {
        self.mesh.send_reliably(core, message);
    }

    /// Messages to other cores still waiting for room.
    pub(crate) fn mesh_backlog_len(&self) -> usize {
        self.mesh.backlog_len()
    }

    /// Periodic work: expiries (R00), session timers and keepalive, stale HTTP requests,
    /// balance leases and rate tokens, link state.
    pub(crate) fn on_tick(&mut self, now: i64) {
        self.engine.handle_timeout(now);
        self.log_health();
        self.follow_config();
        self.follow_drains(now);
        self.follow_control(now);
        self.apply_settlements();
        self.follow_cluster();
        let requested = self.shared.reports.requested();
        if requested > self.reported {
            self.reported = requested;
            let report = self.report(requested);
            self.shared.reports.publish(report);
        }
        while let Some(expired) = self.engine.poll_expired() {
            self.reply_reject(expired.tag, expired.reason);
        }
        self.tick_links(now);
        let draining = &self.shared.draining;
        self.pools.tick(now, &mut self.http_dials, |peer| {
            draining[peer.index()].load(Ordering::Relaxed)
        });
        self.send_leases();
        self.drain_ready(now);
        self.refresh_link_state();
    }

    /// Follows the operator's drains (`Shared::draining`): the engine refuses new Prepares
    /// from and to a drained peer; once none of its Prepares is in flight on this core, its
    /// links here are closed (and not reopened while it stays drained).
    fn follow_drains(&mut self, now: i64) {
        for i in 0..self.config.peers().len() {
            let peer = PeerId(i as u16);
            let wanted = self.shared.draining[i].load(Ordering::Relaxed);
            if wanted != self.engine.is_draining(peer) {
                self.engine.set_draining(peer, wanted);
                let name = &self.config.peer(peer).name;
                match wanted {
                    true => tracing::info!(core = self.core, peer = %name, "draining"),
                    false => tracing::info!(core = self.core, peer = %name, "drain ended"),
                }
            }
            let idle =
                self.engine.pending_of(peer) == 0 && self.engine.backends().in_flight(peer) == 0;
            if !wanted || !idle {
                continue;
            }
            let btp: Vec<LinkId> = self.peer_links[i]
                .iter()
                .filter_map(|&index| self.links.id_at(index))
                .filter(|&id| self.links.get(id).is_some_and(|l| !l.closing))
                .collect();
            for id in btp {
                self.close_link(id);
            }
            for id in self.pools.links_of(peer) {
                self.http_client_closing(now, id);
            }
        }
    }

    /// Applies the config a reload published, if this core has not yet.
    #[inline]
    fn follow_config(&mut self) {
        let epoch = self.shared.config.epoch();
        if epoch > self.config_epoch {
            if let Some((config, routes)) = self.shared.config.published() {
                if !Arc::ptr_eq(&config, &self.config) {
                    self.apply_config(config);
                }
                // The table that goes with it (learned routes included): swapped, not copied.
                self.engine.set_routes(routes);
            }
            self.config_epoch = epoch;
            self.shared.config.applied(self.core, epoch);
        }
    }

    /// Applies a reloaded config (see `reload.rs`): the engine's routes, groups, prices and
    /// packet limits, the peers' tokens for new authentications, and the peers it added
    /// (their tables, HTTP pools and BTP dialling; a removed peer keeps its slot, drained).
    fn apply_config(&mut self, config: Arc<Config>) {
        let cores = self.shared.cores;
        let running = self.peer_links.len();
        let peers = config.peers().len();
        let mut engine_config = config.engine_config(CoreId(self.core as u16), cores);
        for (peer, slot) in config.peers()[running..]
            .iter()
            .zip(&mut engine_config.peers[running..])
        {
            slot.posted = self.shared.config.starting_posted(&peer.name);
            tracing::info!(core = self.core, peer = %peer.name, id = peer.id.index(), "peer added");
        }
        self.engine.reconfigure(engine_config);
        self.peer_links.resize(peers, Vec::new());
        self.round_robin.resize(peers, 0);
        self.pools.add_peers(&config);
        self.btp_dials.extend(
            config.peers()[running..]
                .iter()
                .filter(|p| super::dials_here(&config, p, self.core, cores))
                .map(|p| p.id),
        );
        self.auth = Rc::new(super::peer_auth(&config));
        self.auth_generation += 1;
        self.config = config;
        self.refresh_link_state();
        tracing::debug!(core = self.core, "reloaded config applied");
    }

    /// Applies the settlements the admin side left for peers homed on this core.
    fn apply_settlements(&mut self) {
        let queued = {
            let Ok(mut queue) = self.shared.settlements[self.core].try_lock() else {
                // The admin thread is adding one: next tick.
                return;
            };
            if queue.is_empty() {
                return;
            }
            std::mem::take(&mut *queue)
        };
        for (peer, delta) in queued {
            self.engine.settle(peer, delta);
            tracing::info!(core = self.core, peer = %self.config.peer(peer).name, delta = %delta, "settlement applied");
        }
    }

    /// Applies what the cluster agent asked of the shared peers homed here (their ceilings)
    /// and leaves their statuses for it (see `cluster.rs`).
    fn follow_cluster(&mut self) {
        if self.config.cluster_state().is_none() {
            return;
        }
        for command in self.shared.cluster.take(self.core) {
            let (peer, seq) = match command {
                ClusterCommand::Raise { peer, ceiling, seq } => {
                    self.engine.raise_ceiling(peer, ceiling);
                    (peer, seq)
                }
                ClusterCommand::Lower { peer, target, seq } => {
                    self.engine.lower_ceiling(peer, target);
                    (peer, seq)
                }
            };
            if self.cluster_seq.len() <= peer.index() {
                self.cluster_seq.resize(peer.index() + 1, 0);
            }
            self.cluster_seq[peer.index()] = seq;
        }
        // Written into the core's slot as they are made: nothing allocated per tick.
        self.shared
            .cluster
            .publish(self.core, self.cluster_statuses());
    }

    /// The status of each shared peer homed here.
    pub(crate) fn cluster_statuses(&self) -> impl Iterator<Item = (PeerId, ClusterStatus)> + '_ {
        let ledger = self.engine.ledger();
        self.config
            .shared_peers()
            .filter(|p| ledger.account(p.id).home().0 as usize == self.core)
            .map(|p| {
                let account = ledger.account(p.id);
                let status = ClusterStatus {
                    seq: self.cluster_seq.get(p.id.index()).copied().unwrap_or(0),
                    ceiling: account.ceiling(),
                    used: account.used(),
                    posted: account.posted(),
                    held: account.pending_in() + account.leased(),
                    refused: account.refused(),
                };
                (p.id, status)
            })
    }

    /// This core's report for the admin side (see `report.rs`): a copy of its counters.
    pub(crate) fn report(&self, request: u64) -> CoreReport {
        let engine = &self.engine;
        let backends = engine.backends();
        let peers = (0..self.config.peers().len())
            .map(|i| {
                let peer = PeerId(i as u16);
                let account = engine.ledger().account(peer);
                PeerReport {
                    stats: engine.peer_stats()[i].clone(),
                    posted: account.posted_local(),
                    held: account.pending_in(),
                    in_flight_in: engine.pending_of(peer) as u64,
                    in_flight_out: u64::from(backends.in_flight(peer)),
                    links: self.peer_links[i].len() as u64,
                    link_up: engine.link_up(peer),
                    ejected: backends.is_ejected(peer),
                    draining: engine.is_draining(peer),
                }
            })
            .collect();
        let mut btp = self.counters.btp_closed;
        for (_, link) in self.links.iter() {
            if let Some(session) = link.session() {
                report::add_btp(&mut btp, session.counters());
            }
        }
        CoreReport {
            core: self.core,
            tid: thread_id(),
            request,
            peers,
            engine: engine.counters().clone(),
            health: backends.counters().clone(),
            runtime: self.counters.clone(),
            links: self.links.counters.clone(),
            btp,
            mesh_backlog: self.mesh.backlog_len() as u64,
        }
    }

    /// Logs what changed about the groups' backends (counted by the engine).
    fn log_health(&mut self) {
        while let Some(event) = self.engine.poll_health_event() {
            let peer = &self.config.peer(event.peer).name;
            let group = &self.config.groups()[event.group.index()].name;
            match event.change {
                HealthChange::Ejected { ms, failed, of } => tracing::warn!(
                    core = self.core,
                    group = %group,
                    backend = %peer,
                    "backend ejected for {ms} ms: {failed} of its last {of} answers failed"
                ),
                HealthChange::EjectionRefused { failed, of } => tracing::warn!(
                    core = self.core,
                    group = %group,
                    backend = %peer,
                    "backend not ejected ({failed} of its last {of} answers failed): \
                     max_ejection_percent of the group is ejected already"
                ),
                HealthChange::Returned => tracing::info!(
                    core = self.core,
                    group = %group,
                    backend = %peer,
                    "backend back from ejection"
                ),
            }
        }
    }

    /// The links' timers ([`Links::timers`]): auth deadlines, keepalive, stale requests.
    fn tick_links(&mut self, now: i64) {
        let limits = self.config.limits();
        let interval_ms = i64::try_from(limits.btp_ping_interval_ms).unwrap_or(i64::MAX / 4);
        let http_idle_ms =
            i64::try_from(limits.http_client_idle_timeout_ms).unwrap_or(i64::MAX / 4);
        let missed_max = limits.btp_pings_missed_max;
        // The wheel answers an expired Prepare at most a tick late (engine/pending.rs).
        let expiry_late_ms = 2 * i64::from(limits.tick_ms);
        let due = self
            .links
            .timers(now, interval_ms, missed_max, http_idle_ms, expiry_late_ms);
        for id in due.auth_expired {
            tracing::info!(core = self.core, "auth timeout");
            self.close_link(id);
        }
        for id in due.ping {
            self.counters.keepalive_pings += 1;
            self.push_control(id, Opcode::Ping, &[]);
        }
        for id in due.silent {
            tracing::info!(core = self.core, "silent BTP link taken down");
            self.counters.keepalive_closed += 1;
            self.close_link(id);
        }
        for id in due.stale.into_iter().chain(due.idle) {
            self.http_client_closing(now, id);
        }
    }

    /// Links that are still open, for shutdown.
    pub(crate) fn open_links(&self) -> Vec<LinkId> {
        self.links.iter().map(|(id, _)| id).collect()
    }

    /// True when no link has output waiting.
    pub(crate) fn all_flushed(&self) -> bool {
        self.links.all_flushed()
    }
}

/// The calling thread's id, from `/proc/thread-self` (a link to `<pid>/task/<tid>`); 0 when
/// it cannot be read. Called on the core's thread when it builds a report, not per packet.
fn thread_id() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}
