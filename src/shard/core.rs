//! One core's state and everything it does with packets: the glue between the BTP sessions of
//! its links, its engine and the other cores. Synchronous: the I/O tasks in `conn.rs` hand it
//! whole WebSocket messages and flush what it queued on each link.
//!
//! Tags. The engine's tag for an incoming Prepare is `link index << 48 | link generation << 32
//! | BTP request id`, so a reply finds its link (or finds it gone). A BTP session's tag for an
//! outgoing Prepare is the engine's [`SlotId`] when the Prepare came in on this core, or, with
//! the top bit set, the origin core and the slot when another core handed it over.

use super::mesh::CrossMsg;
use super::Shared;
use crate::config::Config;
use crate::engine::{
    Decision, Engine, LeaseMessage, PeerId, RejectReason, Reply, SlotId, REJECT_LEN_MAX,
};
use crate::link::auth::PeerAuth;
use crate::link::btp::{
    AuthEvent, BtpSession, Event, Role as BtpRole, SendError, State, CONTROL_LEN_MAX,
};
use crate::link::websocket::{self as ws, Opcode};
use crate::wire::BTP_HEADER_LEN_MAX;
use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::LocalSender;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const REMOTE_TAG: u64 = 1 << 63;

/// A link's queued output past which forwarding to it answers T03 instead (replies and control
/// frames are always queued: they are bounded by the requests in flight).
const OUT_QUEUED_MAX: usize = 8 << 20;

/// Identifies a link on this core across reuse of its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

/// One connection: a WebSocket carrying BTP, or an HTTP/1.1 connection carrying ILP over HTTP
/// (RFC 35) from a peer.
#[derive(Debug)]
pub(crate) struct Link {
    generation: u16,
    /// BTP links only.
    pub(crate) session: Option<BtpSession>,
    /// HTTP links a peer opened to us only.
    pub(crate) http: Option<HttpLink>,
    /// HTTP links we opened to a peer only: the request in flight (tag, outgoing expiry).
    pub(crate) http_client: Option<HttpClientLink>,
    /// Our WebSocket role: a client masks what it sends.
    client: bool,
    /// The account named by the WebSocket path, if any.
    pub(crate) path_account: Option<String>,
    peer: Option<PeerId>,
    /// Bytes queued for the writer task.
    pub(crate) out: Vec<u8>,
    wake: LocalSender<()>,
    woken: bool,
    /// The link is finished: the writer sends what is queued, then closes the socket.
    pub(crate) closing: bool,
    mask_state: u64,
}

/// Requests one HTTP connection may have in flight (pipelined) before its reader waits.
pub(crate) const HTTP_PIPELINE_MAX: usize = 64;

/// The state of an HTTP link: pipelined requests, answered in request order.
#[derive(Debug)]
pub(crate) struct HttpLink {
    /// The sequence number the next request gets (its tag's request id).
    next: u32,
    /// Requests not yet answered on the wire, oldest first: sequence number, the request's
    /// `Connection` choice, and its answer once it came out of order (whole response bytes).
    pending: VecDeque<(u32, bool, Option<Vec<u8>>)>,
    /// Wakes the connection's reader when answers free room in the pipeline.
    pub(crate) answered: LocalSender<()>,
}

impl HttpLink {
    pub(crate) fn new(answered: LocalSender<()>) -> Self {
        HttpLink {
            next: 0,
            pending: VecDeque::with_capacity(HTTP_PIPELINE_MAX),
            answered,
        }
    }
}

/// An HTTP connection we opened to a peer (`http_url`), pipelining up to
/// `http_requests_per_connection_max` requests; the answers come back in order.
#[derive(Debug)]
pub(crate) struct HttpClientLink {
    pub(crate) peer: PeerId,
    /// The requests in flight, oldest first: tag and the Prepare's outgoing expiry.
    pub(crate) busy: VecDeque<(u64, i64)>,
}

/// One core's HTTP connections to one peer we POST to.
#[derive(Debug, Default)]
pub(crate) struct HttpPool {
    /// The request head up to the `Content-Length` value, made once.
    head: Vec<u8>,
    /// Connections open, in the order they are tried.
    ready: Vec<LinkId>,
    /// Connections open or being opened.
    open: usize,
    /// Prepares waiting for room on a connection: (tag, expiry, bytes).
    backlog: VecDeque<(u64, i64, Vec<u8>)>,
}

/// Tallies of the runtime (the engine keeps its own).
#[derive(Debug, Default, Clone)]
pub(crate) struct RuntimeCounters {
    pub(crate) replies_to_gone_links: u64,
    pub(crate) cross_core_dropped: u64,
    pub(crate) links_refused: u64,
    pub(crate) ws_errors: u64,
}

/// Everything one core owns.
pub(crate) struct CoreState {
    pub(crate) core: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Arc<Config>,
    pub(crate) engine: Engine,
    auth: Rc<PeerAuth>,
    links: Vec<Option<Link>>,
    generations: Vec<u16>,
    free: Vec<u16>,
    peer_links: Vec<Vec<u16>>,
    round_robin: Vec<usize>,
    touched: Vec<u16>,
    mesh: Option<Senders<CrossMsg>>,
    /// Mesh index of each core.
    mesh_index: Vec<usize>,
    lease_backlog: VecDeque<LeaseMessage>,
    pub(crate) draining: bool,
    /// Per peer: the HTTP pool, for peers we POST to.
    http_pools: Vec<Option<HttpPool>>,
    /// HTTP connections to open, for the core's dialler task (packet handling runs inside a
    /// borrow of this state, so it cannot start tasks that use it).
    pub(crate) http_dials: Vec<PeerId>,
    pub(crate) http_dialler: Option<LocalSender<()>>,
    pub(crate) counters: RuntimeCounters,
}

impl std::fmt::Debug for CoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreState")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// Current Unix time in milliseconds: read once per batch, never per packet.
pub(crate) fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

fn incoming_tag(link: LinkId, request_id: u32) -> u64 {
    u64::from(link.index) << 48 | u64::from(link.generation) << 32 | u64::from(request_id)
}

fn split_incoming_tag(tag: u64) -> (LinkId, u32) {
    let link = LinkId {
        index: (tag >> 48) as u16,
        generation: (tag >> 32) as u16,
    };
    (link, tag as u32)
}

fn remote_tag(origin: usize, slot: SlotId) -> u64 {
    REMOTE_TAG
        | (origin as u64 & 0x7f) << 56
        | u64::from(slot.index()) << 32
        | u64::from(slot.generation())
}

fn split_remote_tag(tag: u64) -> (usize, SlotId) {
    let origin = (tag >> 56 & 0x7f) as usize;
    (
        origin,
        SlotId::from_parts((tag >> 32) as u32 & 0x00ff_ffff, tag as u32),
    )
}

impl CoreState {
    pub(crate) fn new(
        core: usize,
        shared: Arc<Shared>,
        config: Arc<Config>,
        engine: Engine,
        auth: Rc<PeerAuth>,
        mesh: Option<Senders<CrossMsg>>,
        mesh_index: Vec<usize>,
    ) -> Self {
        let peers = config.peers().len();
        CoreState {
            core,
            shared,
            engine,
            auth,
            links: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            peer_links: vec![Vec::new(); peers],
            round_robin: vec![0; peers],
            touched: Vec::new(),
            mesh,
            mesh_index,
            lease_backlog: VecDeque::new(),
            draining: false,
            http_pools: config
                .peers()
                .iter()
                .map(|p| {
                    p.http.as_ref().map(|dial| HttpPool {
                        head: crate::link::http::request_head_prefix(
                            &dial.url.path,
                            &format!("{}:{}", dial.url.host, dial.url.port),
                            dial.token.expose(),
                        ),
                        ..HttpPool::default()
                    })
                })
                .collect(),
            http_dials: Vec::new(),
            http_dialler: None,
            counters: RuntimeCounters::default(),
            config,
        }
    }

    /// Registers a new connection; `None` when this core has `links_max` of them.
    pub(crate) fn add_link(
        &mut self,
        session: Option<BtpSession>,
        http: Option<HttpLink>,
        client: bool,
        path_account: Option<String>,
        wake: LocalSender<()>,
    ) -> Option<LinkId> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                if self.links.len() >= self.config.limits().links_max.min(usize::from(u16::MAX)) {
                    self.counters.links_refused += 1;
                    return None;
                }
                self.links.push(None);
                self.generations.push(0);
                (self.links.len() - 1) as u16
            }
        };
        let generation = self.generations[usize::from(index)].wrapping_add(1);
        self.generations[usize::from(index)] = generation;
        let seed = unix_ms() as u64 ^ (u64::from(index) << 40) ^ (self.core as u64) << 56 | 1;
        self.links[usize::from(index)] = Some(Link {
            generation,
            session,
            http,
            http_client: None,
            client,
            path_account,
            peer: None,
            out: Vec::with_capacity(64 * 1024),
            wake,
            woken: false,
            closing: false,
            mask_state: seed,
        });
        Some(LinkId { index, generation })
    }

    pub(crate) fn link(&self, id: LinkId) -> Option<&Link> {
        self.links
            .get(usize::from(id.index))?
            .as_ref()
            .filter(|l| l.generation == id.generation)
    }

    pub(crate) fn link_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.links
            .get_mut(usize::from(id.index))?
            .as_mut()
            .filter(|l| l.generation == id.generation)
    }

    /// Marks the link authenticated as `peer` and makes it eligible to carry Prepares.
    fn open_link(&mut self, id: LinkId, peer: PeerId) -> bool {
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
    pub(crate) fn remove_link(&mut self, id: LinkId) {
        let Some(mut link) = self
            .links
            .get_mut(usize::from(id.index))
            .and_then(Option::take)
        else {
            return;
        };
        if link.generation != id.generation {
            self.links[usize::from(id.index)] = Some(link);
            return;
        }
        self.free.push(id.index);
        let mut abandoned = Vec::new();
        if let Some(session) = link.session.as_mut() {
            session.close();
            while let Some(tag) = session.poll_abandoned() {
                abandoned.push(tag);
            }
        }
        if let Some(peer) = link.peer {
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
        let now = unix_ms();
        for tag in abandoned {
            self.fail_outgoing(now, tag, RejectReason::PeerUnreachable);
        }
    }

    /// Tells the other cores that this core's links changed.
    fn announce_links(&mut self) {
        let me = self.core;
        for core in (0..self.shared.cores).filter(|&c| c != me) {
            // Best effort: a full ring only delays the news until the other core's next tick.
            let _ = self.send_to_core(core, CrossMsg::LinksChanged);
        }
    }

    /// Tells the engine which peers have a link on some core.
    pub(crate) fn refresh_link_state(&mut self) {
        for (i, cores) in self.shared.link_cores.iter().enumerate() {
            // A peer we POST to over HTTP is reachable whenever we can connect: a failed
            // connection answers its Prepares T01.
            let up = cores.load(Ordering::Relaxed) != 0 || self.http_pools[i].is_some();
            self.engine.set_link_up(PeerId(i as u16), up);
        }
    }

    /// Queues a binary frame made of `parts` on a link.
    fn push_frame(&mut self, index: u16, parts: &[&[u8]]) {
        let Some(link) = self.links[usize::from(index)].as_mut() else {
            return;
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mask = link.client.then(|| next_mask(&mut link.mask_state));
        let mut header = [0u8; ws::FRAME_HEADER_LEN_MAX];
        let header_len = ws::write_frame_header(Opcode::Binary, true, len, mask, &mut header);
        link.out.extend_from_slice(&header[..header_len]);
        let start = link.out.len();
        for part in parts {
            link.out.extend_from_slice(part);
        }
        if let Some(mask) = mask {
            ws::apply_mask(&mut link.out[start..], mask, 0);
        }
        if !link.woken {
            link.woken = true;
            self.touched.push(index);
        }
    }

    /// Queues a control frame (ping answer, close) on a link.
    pub(crate) fn push_control(&mut self, id: LinkId, opcode: Opcode, payload: &[u8]) {
        let Some(link) = self.link_mut(id) else {
            return;
        };
        let mask = link.client.then(|| next_mask(&mut link.mask_state));
        let mut frame = [0u8; ws::FRAME_HEADER_LEN_MAX + ws::CONTROL_PAYLOAD_LEN_MAX];
        let n = ws::write_frame(
            opcode,
            true,
            &payload[..payload.len().min(ws::CONTROL_PAYLOAD_LEN_MAX)],
            mask,
            &mut frame,
        );
        link.out.extend_from_slice(&frame[..n]);
        if !link.woken {
            link.woken = true;
            self.touched.push(id.index);
        }
    }

    /// Marks a link finished: its writer flushes and closes the socket.
    pub(crate) fn close_link(&mut self, id: LinkId) {
        if let Some(link) = self.link_mut(id) {
            link.closing = true;
            if !link.woken {
                link.woken = true;
                self.touched.push(id.index);
            }
        }
    }

    /// Wakes the writers of every link that got output since the last flush.
    pub(crate) fn flush(&mut self) {
        for index in std::mem::take(&mut self.touched) {
            if let Some(link) = self.links[usize::from(index)].as_mut() {
                link.woken = false;
                let _ = link.wake.try_send(());
            }
        }
    }

    /// Client links: sends our auth as the first message.
    pub(crate) fn send_auth(&mut self, id: LinkId, username: &[u8], token: &[u8]) {
        let Some(session) = self.link_mut(id).and_then(|l| l.session.as_mut()) else {
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
        let Some(session) = link.session.as_mut() else {
            return;
        };
        let awaiting_server_auth =
            session.role() == BtpRole::Server && session.state() == State::AwaitingAuth;
        if awaiting_server_auth {
            match session.handle_auth(now, &auth, account.as_deref(), message, &mut control) {
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
        let base = message.as_ptr() as usize;
        match event {
            Event::Opened(peer) => {
                if !self.open_link(id, peer) {
                    self.close_link(id);
                }
            }
            Event::Prepare { request_id, ilp } => {
                let start = ilp.as_ptr() as usize - base;
                let end = start + ilp.len();
                self.on_prepare(now, id, request_id, &mut message[start..end]);
            }
            Event::Reply { tag, ilp } => {
                let start = ilp.as_ptr() as usize - base;
                let end = start + ilp.len();
                self.on_reply(now, tag, &message[start..end]);
            }
            Event::ReplyError { tag, code } => {
                // spec/btp.md §4: T00 UnreachableError → T01, anything else → F02.
                let reason = if &code == b"T00" {
                    RejectReason::PeerUnreachable
                } else {
                    RejectReason::Unreachable
                };
                self.fail_outgoing(now, tag, reason);
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
        let tag = incoming_tag(id, request_id);
        if self.draining {
            self.reply_reject(tag, RejectReason::ConnectorBusy);
            return;
        }
        match self.engine.handle_prepare(now, peer, tag, ilp) {
            Decision::Reject(reason) => self.reply_reject(tag, reason),
            Decision::Forward { to, slot, len } => self.forward(now, slot, to, &ilp[..len]),
        }
    }

    fn forward(&mut self, now: i64, slot: SlotId, to: PeerId, packet: &[u8]) {
        let Some(expires_at) = self.engine.pending().get(slot).map(|e| e.expires_at) else {
            return;
        };
        if self.http_pools[to.index()].is_some() {
            if let Err(reason) = self.send_http(to, slot.to_u64(), expires_at, packet) {
                let reply = self.engine.handle_failure(slot, reason);
                self.deliver(now, reply, &[]);
            }
            return;
        }
        if let Some(index) = self.pick_link(to) {
            let tag = slot.to_u64();
            match self.send_prepare(index, tag, expires_at, packet) {
                Ok(()) => {}
                Err(reason) => {
                    let reply = self.engine.handle_failure(slot, reason);
                    self.deliver(now, reply, &[]);
                }
            }
            return;
        }
        let cores = self.shared.link_cores[to.index()].load(Ordering::Relaxed);
        let others = cores & !(1 << self.core);
        if others == 0 {
            let reply = self
                .engine
                .handle_failure(slot, RejectReason::PeerUnreachable);
            self.deliver(now, reply, &[]);
            return;
        }
        // The next core with a link for `to`, after ours, so the load spreads.
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
        if !self.send_to_core(target, message) {
            let reply = self
                .engine
                .handle_failure(slot, RejectReason::ConnectorBusy);
            self.deliver(now, reply, &[]);
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

    /// Writes a Prepare on a local link, registering `tag` for its reply.
    fn send_prepare(
        &mut self,
        index: u16,
        tag: u64,
        expires_at: i64,
        packet: &[u8],
    ) -> Result<(), RejectReason> {
        let Some(link) = self.links[usize::from(index)].as_mut() else {
            return Err(RejectReason::PeerUnreachable);
        };
        if link.out.len() > OUT_QUEUED_MAX || link.closing {
            return Err(RejectReason::ConnectorBusy);
        }
        let Some(session) = link.session.as_mut() else {
            return Err(RejectReason::PeerUnreachable);
        };
        let mut header = [0u8; BTP_HEADER_LEN_MAX];
        match session.write_prepare_header(tag, packet.len(), expires_at, &mut header) {
            Ok(n) => {
                self.push_frame(index, &[&header[..n], packet]);
                Ok(())
            }
            Err(SendError::Busy) => Err(RejectReason::ConnectorBusy),
            Err(SendError::NotOpen) => Err(RejectReason::PeerUnreachable),
        }
    }

    fn on_reply(&mut self, now: i64, tag: u64, ilp: &[u8]) {
        if tag & REMOTE_TAG != 0 {
            let (origin, slot) = split_remote_tag(tag);
            if !self.send_to_core(
                origin,
                CrossMsg::Reply {
                    slot,
                    packet: ilp.to_vec(),
                },
            ) {
                self.counters.cross_core_dropped += 1;
            }
            return;
        }
        let reply = self.engine.handle_reply(now, SlotId::from_u64(tag), ilp);
        self.deliver(now, reply, ilp);
    }

    /// An outgoing request failed below ILP (BTP Error, link gone, purged).
    fn fail_outgoing(&mut self, now: i64, tag: u64, reason: RejectReason) {
        if tag & REMOTE_TAG != 0 {
            let (origin, slot) = split_remote_tag(tag);
            if !self.send_to_core(origin, CrossMsg::Failure { slot, reason }) {
                self.counters.cross_core_dropped += 1;
            }
            return;
        }
        let reply = self.engine.handle_failure(SlotId::from_u64(tag), reason);
        self.deliver(now, reply, &[]);
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

    fn reply_reject(&mut self, tag: u64, reason: RejectReason) {
        let mut reject = [0u8; REJECT_LEN_MAX];
        let n = self.engine.emit_reject(reason, &mut reject);
        self.reply_bytes(tag, &reject[..n]);
    }

    fn reply_bytes(&mut self, tag: u64, ilp: &[u8]) {
        let (id, request_id) = split_incoming_tag(tag);
        let Some(link) = self.link(id).filter(|l| !l.closing) else {
            self.counters.replies_to_gone_links += 1;
            return;
        };
        if link.http.is_some() {
            self.http_answer(id, request_id, ilp);
            return;
        }
        let Some(session) = link.session.as_ref() else {
            return;
        };
        let mut header = [0u8; BTP_HEADER_LEN_MAX];
        let n = session.write_reply_header(request_id, ilp.len(), &mut header);
        self.push_frame(id.index, &[&header[..n], ilp]);
    }

    /// Queues raw bytes (an HTTP head and body) on a link.
    fn push_raw(&mut self, index: u16, parts: &[&[u8]]) {
        let Some(link) = self.links[usize::from(index)].as_mut() else {
            return;
        };
        for part in parts {
            link.out.extend_from_slice(part);
        }
        if !link.woken {
            link.woken = true;
            self.touched.push(index);
        }
    }

    /// Answers HTTP request `seq` on a link with a `200` carrying an ILP reply.
    fn http_answer(&mut self, id: LinkId, seq: u32, ilp: &[u8]) {
        self.http_respond(id, seq, Some(ilp), 200);
    }

    /// Answers HTTP request `seq`: a `200` with `ilp`, or a bodyless `status`. Answers leave in
    /// request order: one that is ready before those ahead of it waits (copied) for them.
    fn http_respond(&mut self, id: LinkId, seq: u32, ilp: Option<&[u8]>, status: u16) {
        let Some(http) = self.link_mut(id).and_then(|l| l.http.as_mut()) else {
            return;
        };
        let Some(position) = http.pending.iter().position(|p| p.0 == seq) else {
            return;
        };
        let keep_alive = http.pending[position].1;
        let mut head = [0u8; crate::link::http::RESPONSE_HEAD_LEN_MAX];
        let n = match ilp {
            Some(ilp) => crate::link::http::write_response(ilp.len(), keep_alive, &mut head),
            None => crate::link::http::write_status(status, keep_alive, &mut head),
        };
        let body = ilp.unwrap_or_default();
        if position > 0 {
            http.pending[position].2 = Some([&head[..n], body].concat());
            return;
        }
        http.pending.pop_front();
        let mut closing = !keep_alive;
        let mut ready = Vec::new();
        while let Some((_, keep_alive, Some(_))) = http.pending.front() {
            closing |= !keep_alive;
            let (_, _, bytes) = http.pending.pop_front().expect("front exists");
            ready.push(bytes.expect("checked"));
        }
        let _ = http.answered.try_send(());
        self.push_raw(id.index, &[&head[..n], body]);
        for bytes in ready {
            self.push_raw(id.index, &[&bytes]);
        }
        if closing {
            self.close_link(id);
        }
    }

    /// Takes one ILP-over-HTTP request from `peer`, or one refused with `refuse` (a status;
    /// the connection then closes once it is answered): a 400 if the body is not a Prepare
    /// (what interledger-rs peers expect, `spec/ilp-over-http.md` §1), else the engine decides
    /// and the answer is written now (a local Reject) or when the reply comes back.
    pub(crate) fn on_http_request(
        &mut self,
        now: i64,
        id: LinkId,
        peer: Option<PeerId>,
        body: &mut [u8],
        keep_alive: bool,
        refuse: Option<u16>,
    ) {
        let Some(http) = self.link_mut(id).and_then(|l| l.http.as_mut()) else {
            return;
        };
        let seq = http.next;
        http.next = http.next.wrapping_add(1);
        let keep_alive = keep_alive && refuse.is_none();
        http.pending.push_back((seq, keep_alive, None));
        match (refuse, peer) {
            (Some(status), _) => self.http_respond(id, seq, None, status),
            (None, None) => self.http_respond(id, seq, None, 401),
            (None, Some(_)) if crate::wire::Prepare::new_checked(&body[..]).is_err() => {
                self.http_respond(id, seq, None, 400)
            }
            (None, Some(peer)) => self.on_prepare_from(now, id, peer, seq, body),
        }
    }

    /// The peer an HTTP request's bearer token (and `/accounts/{name}/ilp` path) names.
    pub(crate) fn authenticate_http(
        &self,
        path_account: Option<&str>,
        token: &[u8],
    ) -> Option<PeerId> {
        self.auth.authenticate(None, path_account, token)
    }

    /// HTTP requests on a link not yet answered on the wire.
    pub(crate) fn http_pending(&self, id: LinkId) -> usize {
        self.link(id)
            .and_then(|l| l.http.as_ref())
            .map_or(0, |h| h.pending.len())
    }

    /// Sends a Prepare to a peer over HTTP: on an open connection of this core's pool with room
    /// in its pipeline, or queued (one more connection is opened while the pool is under
    /// `http_connections_per_peer_max`); T03 when the queue holds as much as the whole pool
    /// could have in flight.
    fn send_http(
        &mut self,
        to: PeerId,
        tag: u64,
        expires_at: i64,
        packet: &[u8],
    ) -> Result<(), RejectReason> {
        let limits = self.config.limits();
        let (max, depth) = (
            limits.http_connections_per_peer_max,
            limits.http_requests_per_connection_max,
        );
        let pool = self.http_pools[to.index()].as_mut().expect("an HTTP peer");
        // Fill the first connection with room before the next: fewer, fuller connections
        // mean fewer and larger writes, and each write to a sleeping peer costs a wake-up.
        let chosen = pool.ready.iter().copied().find(|id| {
            self.links[usize::from(id.index)]
                .as_ref()
                .filter(|l| l.generation == id.generation && !l.closing)
                .and_then(|l| l.http_client.as_ref())
                .is_some_and(|c| c.busy.len() < depth)
        });
        if let Some(id) = chosen {
            self.http_request(id, tag, expires_at, packet);
            return Ok(());
        }
        // The queue holds at most what the pool could have in flight.
        if pool.backlog.len() >= max * depth {
            return Err(RejectReason::ConnectorBusy);
        }
        pool.backlog.push_back((tag, expires_at, packet.to_vec()));
        if pool.open < max {
            pool.open += 1;
            self.http_dials.push(to);
            if let Some(dialler) = &self.http_dialler {
                let _ = dialler.try_send(());
            }
        }
        Ok(())
    }

    /// Writes one POST on a client connection.
    fn http_request(&mut self, id: LinkId, tag: u64, expires_at: i64, packet: &[u8]) {
        let Some(client) = self.link_mut(id).and_then(|l| l.http_client.as_mut()) else {
            return;
        };
        client.busy.push_back((tag, expires_at));
        let peer = client.peer;
        let mut length = [0u8; 24];
        let n = crate::link::http::write_content_length(packet.len(), &mut length);
        // The pool's head is moved out and back so it can be queued beside the link's buffer.
        let Some(pool) = self.http_pools[peer.index()].as_mut() else {
            return;
        };
        let head = std::mem::take(&mut pool.head);
        self.push_raw(id.index, &[&head, &length[..n], packet]);
        if let Some(pool) = self.http_pools[peer.index()].as_mut() {
            pool.head = head;
        }
    }

    /// A client connection is open, or answered: fill its pipeline from the queue.
    pub(crate) fn http_client_ready(&mut self, id: LinkId, peer: PeerId) {
        let depth = self.config.limits().http_requests_per_connection_max;
        let Some(pool) = self.http_pools[peer.index()].as_mut() else {
            return;
        };
        if !pool.ready.contains(&id) {
            pool.ready.push(id);
        }
        loop {
            let in_flight = self
                .link(id)
                .and_then(|l| l.http_client.as_ref())
                .map_or(depth, |c| c.busy.len());
            let pool = self.http_pools[peer.index()].as_mut().expect("checked");
            if in_flight >= depth {
                break;
            }
            let Some((tag, expires_at, packet)) = pool.backlog.pop_front() else {
                break;
            };
            self.http_request(id, tag, expires_at, &packet);
        }
        self.flush();
    }

    /// A client connection could not be opened, or closed: fail its requests and, when no
    /// connection is left to take them, the waiting ones (T01).
    pub(crate) fn http_client_gone(&mut self, now: i64, peer: PeerId, id: Option<LinkId>) {
        let busy: Vec<(u64, i64)> = id
            .and_then(|id| self.link_mut(id))
            .and_then(|l| l.http_client.as_mut())
            .map(|c| c.busy.drain(..).collect())
            .unwrap_or_default();
        let Some(pool) = self.http_pools[peer.index()].as_mut() else {
            return;
        };
        pool.open = pool.open.saturating_sub(1);
        if let Some(id) = id {
            pool.ready.retain(|&i| i != id);
        }
        let orphans: Vec<u64> = if pool.open == 0 {
            pool.backlog.drain(..).map(|(tag, _, _)| tag).collect()
        } else {
            Vec::new()
        };
        for tag in busy.into_iter().map(|(tag, _)| tag).chain(orphans) {
            self.fail_outgoing(now, tag, RejectReason::PeerUnreachable);
        }
        self.flush();
    }

    /// The peer answered the oldest of our POSTs on `id`.
    pub(crate) fn on_http_client_response(
        &mut self,
        now: i64,
        id: LinkId,
        status: u16,
        body: &[u8],
    ) {
        let Some((tag, _)) = self
            .link_mut(id)
            .and_then(|l| l.http_client.as_mut())
            .and_then(|c| c.busy.pop_front())
        else {
            return;
        };
        match crate::link::http::map_response(status) {
            // spec/ilp-over-http.md §1: a 200 whose body is not a Fulfill or Reject is T01.
            crate::link::http::Outcome::Reply
                if crate::wire::Packet::new_checked(body).is_err() =>
            {
                self.fail_outgoing(now, tag, RejectReason::PeerUnreachable)
            }
            crate::link::http::Outcome::Reply => self.on_reply(now, tag, body),
            crate::link::http::Outcome::Fail(reason) => self.fail_outgoing(now, tag, reason),
        }
    }

    /// Takes a message from another core.
    pub(crate) fn on_cross(&mut self, now: i64, message: CrossMsg) {
        match message {
            CrossMsg::Forward {
                origin,
                slot,
                to,
                expires_at,
                packet,
            } => {
                let result = match self.pick_link(to) {
                    Some(index) => {
                        self.send_prepare(index, remote_tag(origin, slot), expires_at, &packet)
                    }
                    None => Err(RejectReason::PeerUnreachable),
                };
                if let Err(reason) = result {
                    if !self.send_to_core(origin, CrossMsg::Failure { slot, reason }) {
                        self.counters.cross_core_dropped += 1;
                    }
                }
            }
            CrossMsg::Reply { slot, packet } => {
                let reply = self.engine.handle_reply(now, slot, &packet);
                self.deliver(now, reply, &packet);
            }
            CrossMsg::Failure { slot, reason } => {
                let reply = self.engine.handle_failure(slot, reason);
                self.deliver(now, reply, &[]);
            }
            CrossMsg::Lease(lease) => self.engine.handle_lease(lease),
            CrossMsg::LinksChanged => self.refresh_link_state(),
        }
    }

    fn send_to_core(&mut self, core: usize, message: CrossMsg) -> bool {
        let Some(mesh) = self.mesh.as_ref() else {
            return false;
        };
        mesh.try_send_to(self.mesh_index[core], message).is_ok()
    }

    /// Periodic work: expiries (R00), session timers, balance leases, link state.
    pub(crate) fn on_tick(&mut self, now: i64) {
        self.engine.handle_timeout(now);
        while let Some(expired) = self.engine.poll_expired() {
            self.reply_reject(expired.tag, expired.reason);
        }
        let mut finished = Vec::new();
        for index in 0..self.links.len() {
            if let Some(link) = self.links[index].as_mut() {
                let expired = link
                    .session
                    .as_mut()
                    .is_some_and(|s| s.handle_timeout(now).auth_expired);
                if expired {
                    finished.push(LinkId {
                        index: index as u16,
                        generation: link.generation,
                    });
                }
            }
        }
        for id in finished {
            tracing::info!(core = self.core, "auth timeout");
            self.close_link(id);
        }
        // An HTTP request cannot be cancelled on its connection: one still unanswered past its
        // Prepare's expiry (the engine has answered R00 by now) closes the connection.
        let stale: Vec<LinkId> = self
            .links
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let l = l.as_ref()?;
                let &(_, expires_at) = l.http_client.as_ref()?.busy.front()?;
                (expires_at < now && !l.closing).then_some(LinkId {
                    index: i as u16,
                    generation: l.generation,
                })
            })
            .collect();
        for id in stale {
            self.close_link(id);
        }
        while let Some(lease) = self.engine.poll_lease() {
            self.lease_backlog.push_back(lease);
        }
        while let Some(lease) = self.lease_backlog.pop_front() {
            let to = usize::from(lease.to.0);
            if !self.send_to_core(to, CrossMsg::Lease(lease)) {
                // Retried next tick: a lease message must never be lost.
                self.lease_backlog.push_front(lease);
                break;
            }
        }
        self.refresh_link_state();
        self.flush();
    }

    /// Links that are still open, for shutdown.
    pub(crate) fn open_links(&self) -> Vec<LinkId> {
        self.links
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l.as_ref().map(|l| LinkId {
                    index: i as u16,
                    generation: l.generation,
                })
            })
            .collect()
    }

    /// True when no link has output waiting.
    pub(crate) fn all_flushed(&self) -> bool {
        self.links.iter().flatten().all(|l| l.out.is_empty())
    }
}

/// A fresh masking key per client frame (xorshift64*; RFC 6455 wants keys a third party cannot
/// predict, which matters for browsers behind proxies, not for router-to-router links).
fn next_mask(state: &mut u64) -> [u8; 4] {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let value = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (value >> 32).to_le_bytes()[..4]
        .try_into()
        .expect("4 bytes")
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let link = LinkId {
            index: 4095,
            generation: 65535,
        };
        assert_eq!(
            split_incoming_tag(incoming_tag(link, u32::MAX)),
            (link, u32::MAX)
        );
        let slot = SlotId::from_parts((1 << 24) - 1, 0x7fff_ffff);
        let tag = remote_tag(127, slot);
        assert_ne!(tag & REMOTE_TAG, 0);
        assert_eq!(split_remote_tag(tag), (127, slot));
        assert_eq!(slot.to_u64() & REMOTE_TAG, 0);
    }
}
