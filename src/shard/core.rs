//! One core's state and everything it does with packets: the glue between the BTP sessions of
//! its links, its engine and the other cores. Synchronous: the I/O tasks in `conn.rs` hand it
//! whole WebSocket messages and flush what it queued on each link.
//!
//! Tags. The engine's tag for an incoming Prepare is `link index << 64 | link generation << 32
//! | request id` (a [`Tag`], 128 bits), so a reply finds its link (or finds it gone: a link's
//! generation is 32 bits, so an index would have to be reused 2^32 times while one Prepare is
//! in flight before a stale reply could reach the wrong connection). A BTP session's tag for an
//! outgoing Prepare is the engine's [`SlotId`] when the Prepare came in on this core, or, with
//! the top bit set, the origin core and the slot when another core handed it over.

use super::mesh::CrossMsg;
use super::Shared;
use crate::config::Config;
use crate::engine::{Decision, Engine, PeerId, RejectReason, Reply, SlotId, Tag, REJECT_LEN_MAX};
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

/// Whether a new link has authenticated yet. The two kinds are counted apart, each with its
/// own cap (`unauthenticated_max` and `links_max`, per core), so a flood of connections that
/// never authenticate cannot lock out peers that do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Accepted from someone: WebSocket handshake or BTP auth pending, or (HTTP) no
    /// authenticated request yet. Past `unauthenticated_max` it is refused at once.
    Pending,
    /// One we opened ourselves, or already authenticated. Past `links_max` it is refused.
    Authenticated,
}

/// Identifies a link on this core across reuse of its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkId {
    pub(crate) index: u16,
    pub(crate) generation: u32,
}

/// One connection: a WebSocket carrying BTP, or an HTTP/1.1 connection carrying ILP over HTTP
/// (RFC 35) from a peer.
#[derive(Debug)]
pub(crate) struct Link {
    generation: u32,
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
    /// Counted among the authenticated links (`links_max`), else among the unauthenticated
    /// ones (`unauthenticated_max`).
    authenticated: bool,
    /// Bytes the writer took out of `out` and has not finished writing.
    pub(crate) writing: usize,
    /// The reader stopped reading until the queue drains to half of `link_queue_bytes_max`.
    pub(crate) reader_paused: bool,
    /// Wakes the paused reader (the queue drained, or the link is closing).
    pub(crate) resume: Option<LocalSender<()>>,
    /// When the reader last got bytes (Unix ms; the link's creation before that).
    pub(crate) received_at: i64,
    /// When we last sent a keepalive Ping (Unix ms; 0: never).
    pinged_at: i64,
    /// The queue went over `link_queue_bytes_max`: it was dropped, nothing more is queued,
    /// and the link is closing.
    overflowed: bool,
    /// The write deadline ended the link (counted once in `write_timeouts`).
    pub(crate) write_timed_out: bool,
}

impl Link {
    /// Bytes owed to the peer: queued, and taken by the writer but not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.out.len() + self.writing
    }

    /// Wakes the reader if it stopped for the queue to drain.
    pub(crate) fn resume_reader(&mut self) {
        if self.reader_paused {
            self.reader_paused = false;
            if let Some(resume) = &self.resume {
                let _ = resume.try_send(());
            }
        }
    }

    /// Past `max` queued bytes the peer does not read what we send (its reader stopped at half
    /// of it, yet replies kept coming): the queue is dropped, since it would never be read,
    /// and the link closes. True when that happened now.
    fn overflow_if_over(&mut self, max: usize) -> bool {
        if self.overflowed || self.queued() <= max {
            return false;
        }
        self.overflowed = true;
        self.closing = true;
        self.out = Vec::new();
        self.resume_reader();
        true
    }
}

/// The state of an HTTP link: pipelined requests, answered in request order.
#[derive(Debug)]
pub(crate) struct HttpLink {
    /// The sequence number the next request gets (its tag's request id).
    next: u32,
    /// Requests not yet answered on the wire, oldest first.
    pending: VecDeque<HttpOwed>,
    /// By when every Prepare handed to the engine on this link is answered at the latest
    /// (Unix ms): its expiry, or our longest hold if sooner (the engine answers R00 then).
    owed_until_ms: i64,
    /// Wakes the connection's reader when answers free room in the pipeline.
    pub(crate) answered: LocalSender<()>,
}

/// One request of an HTTP link not yet answered on the wire.
#[derive(Debug)]
struct HttpOwed {
    seq: u32,
    /// The connection stays open after its answer.
    keep_alive: bool,
    /// Its answer (whole response bytes) once it came before those ahead of it.
    answer: Option<Vec<u8>>,
}

impl HttpLink {
    /// A link whose reader waits at `pipeline_max` requests in flight (`http_pipeline_max`).
    pub(crate) fn new(answered: LocalSender<()>, pipeline_max: usize) -> Self {
        HttpLink {
            next: 0,
            pending: VecDeque::with_capacity(pipeline_max),
            owed_until_ms: 0,
            answered,
        }
    }

    /// By when the answers still owed come at the latest (Unix ms; meaningless when none is).
    pub(crate) fn owed_until_ms(&self) -> i64 {
        self.owed_until_ms
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
    /// Messages to another core that must arrive but found no ring (the other core stopped).
    pub(crate) cross_core_dropped: u64,
    /// Messages to another core that found its ring full and waited in the backlog.
    pub(crate) cross_core_deferred: u64,
    /// Links refused because this core already had `links_max` authenticated links (at
    /// auth, or when dialling).
    pub(crate) links_refused: u64,
    pub(crate) ws_errors: u64,
    /// Gauge: links counted against `links_max` (authenticated, or opened by us).
    pub(crate) links_authenticated: usize,
    /// Gauge: links counted against `unauthenticated_max` (handshake or auth pending).
    pub(crate) links_unauthenticated: usize,
    /// Connections closed at once because `unauthenticated_max` were already waiting.
    pub(crate) unauthenticated_refused: u64,
    /// Links closed because their queue went over `link_queue_bytes_max`.
    pub(crate) queue_overflows: u64,
    /// Times a link's reader stopped because its queue was over half the cap.
    pub(crate) reads_paused: u64,
    /// Links closed because what we wrote made no progress for `write_timeout_ms`: our
    /// writer's deadline, or the kernel's `TCP_USER_TIMEOUT` (the reader sees `ETIMEDOUT`).
    pub(crate) write_timeouts: u64,
    /// Keepalive Pings sent on silent BTP links.
    pub(crate) keepalive_pings: u64,
    /// BTP links taken down after `btp_pings_missed_max` silent ping intervals.
    pub(crate) keepalive_closed: u64,
    /// ILP-over-HTTP requests answered with an HTTP error instead of an ILP reply (400, 401,
    /// 405, 408 for a request that missed its deadline, 411, 413, 431).
    pub(crate) http_refused: u64,
}

/// Everything one core owns.
pub(crate) struct CoreState {
    pub(crate) core: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Arc<Config>,
    pub(crate) engine: Engine,
    auth: Rc<PeerAuth>,
    links: Vec<Option<Link>>,
    generations: Vec<u32>,
    free: Vec<u16>,
    peer_links: Vec<Vec<u16>>,
    round_robin: Vec<usize>,
    touched: Vec<u16>,
    mesh: Option<Senders<CrossMsg>>,
    /// Mesh index of each core.
    mesh_index: Vec<usize>,
    /// Messages to other cores that must arrive (replies, failures, leases) and found the
    /// ring full: retried at every flush and tick, never dropped. Bounded by what can be owed:
    /// one reply per Prepare another core handed us (its in-flight table) plus the ledger's
    /// bounded lease traffic.
    mesh_backlog: VecDeque<(usize, CrossMsg)>,
    /// Where the engine copies a Prepare whose hold waited (reused).
    ready_packet: Vec<u8>,
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

fn incoming_tag(link: LinkId, request_id: u32) -> Tag {
    u128::from(link.index) << 64 | u128::from(link.generation) << 32 | u128::from(request_id)
}

fn split_incoming_tag(tag: Tag) -> (LinkId, u32) {
    let link = LinkId {
        index: (tag >> 64) as u16,
        generation: (tag >> 32) as u32,
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
            mesh_backlog: VecDeque::new(),
            ready_packet: Vec::new(),
            draining: false,
            http_pools: config
                .peers()
                .iter()
                .map(|p| {
                    p.http().map(|dial| HttpPool {
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

    /// Registers a new connection; `None` (counted) when this core already has
    /// `unauthenticated_max` links pending (`Admission::Pending`) or `links_max` authenticated
    /// ones (`Admission::Authenticated`): the caller closes it at once.
    pub(crate) fn add_link(
        &mut self,
        session: Option<BtpSession>,
        http: Option<HttpLink>,
        client: bool,
        path_account: Option<String>,
        wake: LocalSender<()>,
        admission: Admission,
    ) -> Option<LinkId> {
        let limits = self.config.limits();
        let counters = &mut self.counters;
        match admission {
            Admission::Pending if counters.links_unauthenticated >= limits.unauthenticated_max => {
                counters.unauthenticated_refused += 1;
                return None;
            }
            Admission::Authenticated if counters.links_authenticated >= limits.links_max => {
                counters.links_refused += 1;
                return None;
            }
            Admission::Pending | Admission::Authenticated => {}
        }
        // The table holds both kinds, each within its own cap.
        let capacity = limits
            .links_max
            .saturating_add(limits.unauthenticated_max)
            .min(usize::from(u16::MAX));
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                if self.links.len() >= capacity {
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
        let authenticated = admission == Admission::Authenticated;
        if authenticated {
            self.counters.links_authenticated += 1;
        } else {
            self.counters.links_unauthenticated += 1;
        }
        let now = unix_ms();
        let seed = now as u64 ^ (u64::from(index) << 40) ^ (self.core as u64) << 56 | 1;
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
            authenticated,
            writing: 0,
            reader_paused: false,
            resume: None,
            received_at: now,
            pinged_at: 0,
            overflowed: false,
            write_timed_out: false,
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

    /// Moves a link from the unauthenticated count to the authenticated one; `false`
    /// (counted in `links_refused`) when this core already has `links_max` authenticated
    /// links: the caller closes it. A link already counted as authenticated stays so.
    pub(crate) fn authenticate_link(&mut self, id: LinkId) -> bool {
        let links_max = self.config.limits().links_max;
        let Some(link) = self
            .links
            .get_mut(usize::from(id.index))
            .and_then(Option::as_mut)
            .filter(|l| l.generation == id.generation)
        else {
            return false;
        };
        if link.authenticated {
            return true;
        }
        if self.counters.links_authenticated >= links_max {
            self.counters.links_refused += 1;
            return false;
        }
        link.authenticated = true;
        debug_assert!(self.counters.links_unauthenticated > 0);
        self.counters.links_unauthenticated = self.counters.links_unauthenticated.saturating_sub(1);
        self.counters.links_authenticated += 1;
        true
    }

    /// Marks the link authenticated as `peer` and makes it eligible to carry Prepares.
    fn open_link(&mut self, id: LinkId, peer: PeerId) -> bool {
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
        let count = if link.authenticated {
            &mut self.counters.links_authenticated
        } else {
            &mut self.counters.links_unauthenticated
        };
        debug_assert!(*count > 0);
        *count = count.saturating_sub(1);
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

    /// Queues a binary frame made of `parts` on a link (dropped on a link whose queue
    /// overflowed; an overflow closes the link, see [`Link::overflow_if_over`]).
    fn push_frame(&mut self, index: u16, parts: &[&[u8]]) {
        let queue_max = self.config.limits().link_queue_bytes_max;
        let Some(link) = self.links[usize::from(index)]
            .as_mut()
            .filter(|l| !l.overflowed)
        else {
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
        let overflowed = link.overflow_if_over(queue_max);
        if !link.woken {
            link.woken = true;
            self.touched.push(index);
        }
        if overflowed {
            self.counters.queue_overflows += 1;
            tracing::debug!(core = self.core, "queue over link_queue_bytes_max: closed");
        }
    }

    /// Queues a control frame (ping answer, close) on a link.
    pub(crate) fn push_control(&mut self, id: LinkId, opcode: Opcode, payload: &[u8]) {
        let queue_max = self.config.limits().link_queue_bytes_max;
        let Some(link) = self.link_mut(id).filter(|l| !l.overflowed) else {
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
        let overflowed = link.overflow_if_over(queue_max);
        if !link.woken {
            link.woken = true;
            self.touched.push(id.index);
        }
        if overflowed {
            self.counters.queue_overflows += 1;
            tracing::debug!(core = self.core, "queue over link_queue_bytes_max: closed");
        }
    }

    /// Marks a link finished: its writer flushes and closes the socket.
    pub(crate) fn close_link(&mut self, id: LinkId) {
        if let Some(link) = self.link_mut(id) {
            link.closing = true;
            link.resume_reader();
            if !link.woken {
                link.woken = true;
                self.touched.push(id.index);
            }
        }
    }

    /// Wakes the writers of every link that got output since the last flush.
    pub(crate) fn flush(&mut self) {
        if !self.mesh_backlog.is_empty() {
            self.retry_mesh_backlog();
        }
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
            // Comes out of `drain_ready` once the lease traffic decides it.
            Decision::Wait { .. } => {}
        }
    }

    /// Hands the engine's balance messages to the mesh (a lease message is never lost).
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
                Decision::Forward { to, slot, len } => self.forward(now, slot, to, &packet[..len]),
                Decision::Reject(reason) => self.reply_reject(ready.tag, reason),
                Decision::Wait { .. } => unreachable!("poll_ready decides"),
            }
        }
        self.ready_packet = packet;
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
        // Half the cap: the rest is room for the replies and control frames owed to it.
        if link.queued() > self.config.limits().link_queue_bytes_max / 2 || link.closing {
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
            let packet = ilp.to_vec();
            self.send_reliably(origin, CrossMsg::Reply { slot, packet });
            return;
        }
        let reply = self.engine.handle_reply(now, SlotId::from_u64(tag), ilp);
        self.deliver(now, reply, ilp);
    }

    /// An outgoing request failed below ILP (BTP Error, link gone, purged).
    fn fail_outgoing(&mut self, now: i64, tag: u64, reason: RejectReason) {
        if tag & REMOTE_TAG != 0 {
            let (origin, slot) = split_remote_tag(tag);
            self.send_reliably(origin, CrossMsg::Failure { slot, reason });
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

    fn reply_reject(&mut self, tag: Tag, reason: RejectReason) {
        let mut reject = [0u8; REJECT_LEN_MAX];
        let n = self.engine.emit_reject(reason, &mut reject);
        self.reply_bytes(tag, &reject[..n]);
    }

    fn reply_bytes(&mut self, tag: Tag, ilp: &[u8]) {
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
        let queue_max = self.config.limits().link_queue_bytes_max;
        let Some(link) = self.links[usize::from(index)]
            .as_mut()
            .filter(|l| !l.overflowed)
        else {
            return;
        };
        for part in parts {
            link.out.extend_from_slice(part);
        }
        let overflowed = link.overflow_if_over(queue_max);
        if !link.woken {
            link.woken = true;
            self.touched.push(index);
        }
        if overflowed {
            self.counters.queue_overflows += 1;
            tracing::debug!(core = self.core, "queue over link_queue_bytes_max: closed");
        }
    }

    /// Answers HTTP request `seq` on a link with a `200` carrying an ILP reply.
    fn http_answer(&mut self, id: LinkId, seq: u32, ilp: &[u8]) {
        self.http_respond(id, seq, Some(ilp), 200);
    }

    /// Answers HTTP request `seq`: a `200` with `ilp`, or a bodyless `status`. Answers leave in
    /// request order: one that is ready before those ahead of it waits (copied) for them. The
    /// link closes once an answer that ends the connection is written (the request's
    /// `Connection: close`, or a status that always closes: its head says so too).
    fn http_respond(&mut self, id: LinkId, seq: u32, ilp: Option<&[u8]>, status: u16) {
        let Some(http) = self.link_mut(id).and_then(|l| l.http.as_mut()) else {
            return;
        };
        let Some(position) = http.pending.iter().position(|p| p.seq == seq) else {
            return;
        };
        let closes = ilp.is_none() && crate::link::http::status_closes(status);
        let keep_alive = http.pending[position].keep_alive && !closes;
        http.pending[position].keep_alive = keep_alive;
        let mut head = [0u8; crate::link::http::RESPONSE_HEAD_LEN_MAX];
        let n = match ilp {
            Some(ilp) => crate::link::http::write_response(ilp.len(), keep_alive, &mut head),
            None => crate::link::http::write_status(status, keep_alive, &mut head),
        };
        let body = ilp.unwrap_or_default();
        if position > 0 {
            http.pending[position].answer = Some([&head[..n], body].concat());
            return;
        }
        http.pending.pop_front();
        let mut closing = !keep_alive;
        let mut ready = Vec::new();
        while http.pending.front().is_some_and(|p| p.answer.is_some()) {
            let owed = http.pending.pop_front().expect("front exists");
            closing |= !owed.keep_alive;
            ready.push(owed.answer.expect("checked"));
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

    /// Takes one ILP-over-HTTP request from `peer`; `None` is a refused token (401, decided
    /// from the head: the body is never read, spec server rule 1). `refuse` is a request
    /// refused before that (a status: 400, 405, 408, 411, 413, 431). Either way the connection
    /// closes once the answer is written, after the answers owed to earlier requests. A body
    /// that is not a Prepare gets a 400 and the connection stays (what interledger-rs peers
    /// expect, `spec/ilp-over-http.md` §1); else the engine decides and the answer is written
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
        let hold_ms = i64::try_from(self.config.max_hold_time_ms()).unwrap_or(i64::MAX);
        let Some(http) = self.link_mut(id).and_then(|l| l.http.as_mut()) else {
            return;
        };
        let seq = http.next;
        http.next = http.next.wrapping_add(1);
        let status = match (refuse, peer) {
            (Some(status), _) => Some(status),
            (None, None) => Some(401),
            (None, Some(_)) => match crate::wire::Prepare::new_checked(&body[..]) {
                Ok(prepare) => {
                    let answered_by = prepare.expires_at().min(now.saturating_add(hold_ms));
                    http.owed_until_ms = http.owed_until_ms.max(answered_by);
                    None
                }
                Err(_) => Some(400),
            },
        };
        let keep_alive = keep_alive && refuse.is_none() && peer.is_some();
        http.pending.push_back(HttpOwed {
            seq,
            keep_alive,
            answer: None,
        });
        match (status, peer) {
            (None, Some(peer)) => self.on_prepare_from(now, id, peer, seq, body),
            // `status` is set whenever `peer` is not.
            (status, _) => {
                self.counters.http_refused += 1;
                self.http_respond(id, seq, None, status.unwrap_or(401));
            }
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
                    self.send_reliably(origin, CrossMsg::Failure { slot, reason });
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

    fn send_to_core(&mut self, core: usize, message: CrossMsg) -> bool {
        self.try_send_to_core(core, message).is_ok()
    }

    /// Sends now, or hands the message back when the ring is full (`Err(Some)`); `Err(None)`
    /// when the other core is gone (only at shutdown) or there is no mesh.
    fn try_send_to_core(&mut self, core: usize, message: CrossMsg) -> Result<(), Option<CrossMsg>> {
        use glommio::{GlommioError, ResourceType};
        let Some(mesh) = self.mesh.as_ref() else {
            return Err(None);
        };
        match mesh.try_send_to(self.mesh_index[core], message) {
            Ok(()) => Ok(()),
            Err(GlommioError::WouldBlock(ResourceType::Channel(message))) => Err(Some(message)),
            Err(_) => Err(None),
        }
    }

    /// Sends a message that must arrive (a reply, a failure, a lease): if the ring is full it
    /// waits in the backlog, behind any other message already waiting.
    fn send_reliably(&mut self, core: usize, message: CrossMsg) {
        if !self.mesh_backlog.is_empty() {
            self.mesh_backlog.push_back((core, message));
            return;
        }
        match self.try_send_to_core(core, message) {
            Ok(()) => {}
            Err(Some(message)) => {
                self.counters.cross_core_deferred += 1;
                self.mesh_backlog.push_back((core, message));
            }
            Err(None) => self.counters.cross_core_dropped += 1,
        }
    }

    /// Retries the backlog once, in order; what still finds its ring full stays.
    fn retry_mesh_backlog(&mut self) {
        for _ in 0..self.mesh_backlog.len() {
            let Some((core, message)) = self.mesh_backlog.pop_front() else {
                break;
            };
            match self.try_send_to_core(core, message) {
                Ok(()) => {}
                Err(Some(message)) => self.mesh_backlog.push_back((core, message)),
                Err(None) => self.counters.cross_core_dropped += 1,
            }
        }
    }

    /// Messages to other cores still waiting for room.
    pub(crate) fn mesh_backlog_len(&self) -> usize {
        self.mesh_backlog.len()
    }

    /// Periodic work: expiries (R00), session timers, balance leases, link state.
    pub(crate) fn on_tick(&mut self, now: i64) {
        self.engine.handle_timeout(now);
        while let Some(expired) = self.engine.poll_expired() {
            self.reply_reject(expired.tag, expired.reason);
        }
        // BTP keepalive: a link silent for one interval gets a Ping, one more each interval;
        // silent for `btp_pings_missed_max` intervals after the first Ping (every Ping had a
        // whole interval to be answered) it is taken down as half-open. A paused reader is
        // not silence: its link has over half its cap queued, and the writer's deadline
        // decides whether the peer is alive.
        let limits = self.config.limits();
        let interval_ms = i64::try_from(limits.btp_ping_interval_ms).unwrap_or(i64::MAX / 4);
        let down_ms = interval_ms.saturating_mul(i64::from(limits.btp_pings_missed_max) + 1);
        let mut finished = Vec::new();
        let mut silent = Vec::new();
        let mut dead = Vec::new();
        for index in 0..self.links.len() {
            if let Some(link) = self.links[index].as_mut() {
                let id = LinkId {
                    index: index as u16,
                    generation: link.generation,
                };
                let expired = link
                    .session
                    .as_mut()
                    .is_some_and(|s| s.handle_timeout(now).auth_expired);
                if expired {
                    finished.push(id);
                    continue;
                }
                if link.session.is_none() || link.closing || link.reader_paused {
                    continue;
                }
                let quiet_ms = now.saturating_sub(link.received_at);
                if quiet_ms >= down_ms {
                    dead.push(id);
                } else if quiet_ms >= interval_ms && now - link.pinged_at >= interval_ms {
                    link.pinged_at = now;
                    silent.push(id);
                }
            }
        }
        for id in finished {
            tracing::info!(core = self.core, "auth timeout");
            self.close_link(id);
        }
        for id in silent {
            self.counters.keepalive_pings += 1;
            self.push_control(id, Opcode::Ping, &[]);
        }
        for id in dead {
            tracing::info!(core = self.core, "silent BTP link taken down");
            self.counters.keepalive_closed += 1;
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
        self.send_leases();
        self.drain_ready(now);
        self.retry_mesh_backlog();
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
            index: u16::MAX,
            generation: u32::MAX,
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
