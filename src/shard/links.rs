//! The link table of one core: every connection, what it carries ([`Transport`]), its output
//! queue with its cap, and the two admission counts. It decides nothing about packets: it
//! queues bytes, closes links and reports what happened (an overflow, a refusal) to the core,
//! which counts and dispatches.
//!
//! | transport | opened by | carries |
//! | --- | --- | --- |
//! | [`Transport::Handshake`] | a peer, on the BTP port | nothing yet: the WebSocket upgrade is being read |
//! | [`Transport::Btp`] | a peer (after the upgrade) or us (`btp_url`) | BTP over WebSocket (RFC 23) |
//! | [`Transport::HttpServer`] | a peer, on the HTTP port | its ILP-over-HTTP requests (RFC 35), answered in order |
//! | [`Transport::HttpClient`] | us (`http_url`) | our ILP-over-HTTP requests, pipelined |
//!
//! About 830 lines, its unit tests beside it (the code is about 750).
//!
//! Output queue: bytes wait in `out` until the link's writer task takes them. Past half of
//! `link_queue_bytes_max` the reader stops reading (and forwarding to the link is T03); past
//! all of it the peer is not reading what we send, the queue is dropped and the link closes.

use crate::engine::PeerId;
use crate::link::btp::BtpSession;
use crate::link::buf::{write_binary_frame, write_control_frame, MaskRng};
use crate::link::websocket::{self as ws, Opcode};
use std::collections::VecDeque;

/// Identifies a link on this core across reuse of its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkId {
    pub(crate) index: u16,
    pub(crate) generation: u32,
}

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

/// What a connection carries; each step of the core branches on it once.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Accepted on the BTP port, WebSocket upgrade not yet read.
    Handshake,
    /// BTP over WebSocket.
    Btp(BtpLink),
    /// ILP over HTTP from a peer.
    HttpServer(HttpLink),
    /// ILP over HTTP to a peer.
    HttpClient(HttpClientLink),
}

/// A BTP link: its session and, when we dialled, the masking keys of the frames we send
/// (RFC 6455 §5.3).
#[derive(Debug)]
pub(crate) struct BtpLink {
    pub(crate) session: BtpSession,
    mask: Option<MaskRng>,
}

impl BtpLink {
    /// A link that `client` (we dialled) or a peer opened; `seed` starts the mask sequence.
    pub(crate) fn new(session: BtpSession, client: bool, seed: u64) -> Self {
        BtpLink {
            session,
            mask: client.then(|| MaskRng::new(seed)),
        }
    }
}

/// The state of an HTTP link a peer opened: pipelined requests, answered in request order.
#[derive(Debug)]
pub(crate) struct HttpLink {
    /// The sequence number the next request gets (its tag's request id).
    pub(crate) next: u32,
    /// Requests not yet answered on the wire, oldest first.
    pub(crate) pending: VecDeque<HttpOwed>,
    /// By when every Prepare handed to the engine on this link is answered at the latest
    /// (Unix ms): its expiry, or our longest hold if sooner (the engine answers R00 then).
    pub(crate) owed_until_ms: i64,
}

/// One request of an HTTP link not yet answered on the wire.
#[derive(Debug)]
pub(crate) struct HttpOwed {
    pub(crate) seq: u32,
    /// The connection stays open after its answer.
    pub(crate) keep_alive: bool,
    /// Its answer (whole response bytes) once it came before those ahead of it.
    pub(crate) answer: Option<Vec<u8>>,
}

impl HttpLink {
    /// A new link; its reader waits at `http_pipeline_max` requests in flight.
    pub(crate) fn new() -> Self {
        HttpLink {
            next: 0,
            // Grows with what the peer pipelines (at most `http_pipeline_max`): most peers
            // send one request at a time.
            pending: VecDeque::new(),
            owed_until_ms: 0,
        }
    }

    /// By when the answers still owed come at the latest (Unix ms; meaningless when none is).
    pub(crate) fn owed_until_ms(&self) -> i64 {
        self.owed_until_ms
    }

    /// A Prepare handed to the engine is answered by `at` (its outgoing expiry) at the latest.
    pub(crate) fn owe_until(&mut self, at: i64) {
        self.owed_until_ms = self.owed_until_ms.max(at);
    }

    /// A new request: its sequence number (the request id in its tag).
    pub(crate) fn begin(&mut self, keep_alive: bool) -> u32 {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        self.pending.push_back(HttpOwed {
            seq,
            keep_alive,
            answer: None,
        });
        seq
    }

    /// The answer to request `seq`: a `200` with `ilp`, or a bodyless `status`. Answers leave
    /// in request order: one ready before those ahead of it waits (copied) for them. Returns
    /// what can be written now, in order, and whether the connection then ends (a request's
    /// `Connection: close`, or a status that always closes: its head says so too); `None`
    /// for an unknown `seq`. When something can be written, room freed in the pipeline: the
    /// caller raises [`Signal::ANSWERED`] for the reader.
    pub(crate) fn respond(&mut self, seq: u32, ilp: Option<&[u8]>, status: u16) -> Option<Respond> {
        let position = self.pending.iter().position(|p| p.seq == seq)?;
        let closes = ilp.is_none() && crate::link::http::status_closes(status);
        let keep_alive = self.pending[position].keep_alive && !closes;
        self.pending[position].keep_alive = keep_alive;
        let mut head = [0u8; crate::link::http::RESPONSE_HEAD_LEN_MAX];
        let n = match ilp {
            Some(ilp) => crate::link::http::write_response(ilp.len(), keep_alive, &mut head),
            None => crate::link::http::write_status(status, keep_alive, &mut head),
        };
        if position > 0 {
            // Cold path: pipelined answers out of order wait, copied.
            self.pending[position].answer = Some([&head[..n], ilp.unwrap_or_default()].concat());
            return Some(Respond {
                head: None,
                ready: Vec::new(),
                closing: false,
            });
        }
        self.pending.pop_front();
        let mut out = Respond {
            head: Some((head, n)),
            ready: Vec::new(),
            closing: !keep_alive,
        };
        while self.pending.front().is_some_and(|p| p.answer.is_some()) {
            let owed = self.pending.pop_front().expect("front exists");
            out.closing |= !owed.keep_alive;
            out.ready.push(owed.answer.expect("checked"));
        }
        Some(out)
    }
}

/// What [`HttpLink::respond`] lets the core write, in this order.
#[derive(Debug)]
pub(crate) struct Respond {
    /// The head of this answer when it can go now (its body is the caller's `ilp`).
    pub(crate) head: Option<([u8; crate::link::http::RESPONSE_HEAD_LEN_MAX], usize)>,
    /// Whole responses that waited for it, in request order.
    pub(crate) ready: Vec<Vec<u8>>,
    /// The connection ends after them.
    pub(crate) closing: bool,
}

/// An HTTP connection we opened to a peer (`http_url`), pipelining up to
/// `http_requests_per_connection_max` requests; the answers come back in order.
#[derive(Debug)]
pub(crate) struct HttpClientLink {
    pub(crate) peer: PeerId,
    /// The requests in flight, oldest first.
    pub(crate) busy: VecDeque<Posted>,
    /// When a request last went out or an answer last came (Unix ms): with nothing in flight
    /// the connection has been idle since then.
    pub(crate) active_at: i64,
    /// Requests written, and answers received: a connection that closes having answered
    /// none of its requests counts as a failed connect for the pool's backoff.
    pub(crate) posted: u64,
    pub(crate) answered: u64,
}

impl HttpClientLink {
    /// A connection to `peer`, opened at `now`.
    pub(crate) fn new(peer: PeerId, now: i64) -> Self {
        HttpClientLink {
            peer,
            busy: VecDeque::new(),
            active_at: now,
            posted: 0,
            answered: 0,
        }
    }
}

/// One request on an HTTP connection of ours. Its bytes are `[start, end)` of the link's
/// output stream (see [`Link::stream_at`]): while `start` is at or past what the writer took,
/// they are still in `out`, never written, and can go on another connection instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Posted {
    pub(crate) tag: u64,
    /// The Prepare's outgoing expiry (Unix ms).
    pub(crate) expires_at: i64,
    pub(crate) start: u64,
    /// Where the body (the ILP Prepare) starts.
    pub(crate) body: u64,
    pub(crate) end: u64,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Link {
    generation: u32,
    pub(crate) transport: Transport,
    /// The account named by the WebSocket path, if any.
    pub(crate) path_account: Option<String>,
    /// The peer its TLS client certificate stands for, if any (`crate::link::tls`).
    pub(crate) cert_peer: Option<PeerId>,
    /// The peer, once authenticated (BTP) or dialled.
    pub(crate) peer: Option<PeerId>,
    /// Bytes queued for the writer task.
    pub(crate) out: Vec<u8>,
    /// [`Signal`] bits raised and not yet taken by the runtime.
    signals: u8,
    /// The link is finished: the writer sends what is queued, then closes the socket.
    pub(crate) closing: bool,
    /// Counted among the authenticated links (`links_max`), else among the unauthenticated
    /// ones (`unauthenticated_max`).
    authenticated: bool,
    /// Bytes the writer took out of `out` and has not finished writing.
    pub(crate) writing: usize,
    /// Bytes the writer took out of `out` since the link opened.
    taken: u64,
    /// The reader stopped reading until the queue drains to half of `link_queue_bytes_max`;
    /// [`Signal::RESUME`] wakes it (the queue drained, or the link is closing).
    pub(crate) reader_paused: bool,
    /// When the reader last got bytes (Unix ms; the link's creation before that).
    pub(crate) received_at: i64,
    /// When we last sent a keepalive Ping (Unix ms; 0: never).
    pub(crate) pinged_at: i64,
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

    /// The position in the link's output stream (bytes ever queued) where the next queued
    /// byte goes.
    pub(crate) fn stream_at(&self) -> u64 {
        self.taken + self.out.len() as u64
    }

    /// Bytes the writer took since the link opened: every byte of the output stream before
    /// this position may be on the wire, none after it is.
    pub(crate) fn taken(&self) -> u64 {
        self.taken
    }

    /// The BTP session, on a BTP link.
    pub(crate) fn session(&self) -> Option<&BtpSession> {
        match &self.transport {
            Transport::Btp(btp) => Some(&btp.session),
            _ => None,
        }
    }

    /// The BTP session, on a BTP link.
    pub(crate) fn session_mut(&mut self) -> Option<&mut BtpSession> {
        match &mut self.transport {
            Transport::Btp(btp) => Some(&mut btp.session),
            _ => None,
        }
    }

    /// The server state, on an HTTP link a peer opened.
    pub(crate) fn http(&self) -> Option<&HttpLink> {
        match &self.transport {
            Transport::HttpServer(http) => Some(http),
            _ => None,
        }
    }

    /// The server state, on an HTTP link a peer opened.
    pub(crate) fn http_mut(&mut self) -> Option<&mut HttpLink> {
        match &mut self.transport {
            Transport::HttpServer(http) => Some(http),
            _ => None,
        }
    }

    /// The client state, on an HTTP link we opened.
    pub(crate) fn http_client(&self) -> Option<&HttpClientLink> {
        match &self.transport {
            Transport::HttpClient(client) => Some(client),
            _ => None,
        }
    }

    /// The client state, on an HTTP link we opened.
    pub(crate) fn http_client_mut(&mut self) -> Option<&mut HttpClientLink> {
        match &mut self.transport {
            Transport::HttpClient(client) => Some(client),
            _ => None,
        }
    }

    /// Unpauses the reader if it stopped for the queue to drain: true when it did (the
    /// caller raises [`Signal::RESUME`]).
    fn resume_reader(&mut self) -> bool {
        std::mem::take(&mut self.reader_paused)
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
        true
    }
}

/// Links whose timers are due ([`Links::timers`]).
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// BTP links that did not authenticate in time.
    pub(crate) auth_expired: Vec<LinkId>,
    /// Silent BTP links to ping now.
    pub(crate) ping: Vec<LinkId>,
    /// BTP links silent for too long: half-open, to take down.
    pub(crate) silent: Vec<LinkId>,
    /// HTTP connections of ours whose oldest request is past its Prepare's expiry: a request
    /// cannot be cancelled on its connection, so the connection closes (the engine answered
    /// R00 by now).
    pub(crate) stale: Vec<LinkId>,
    /// HTTP connections of ours with nothing in flight for `http_client_idle_timeout_ms`: we
    /// close them before the server's keep-alive timeout does.
    pub(crate) idle: Vec<LinkId>,
}

/// Why [`Links::add`] refused a connection (the caller closes it at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `unauthenticated_max` links are already pending.
    Unauthenticated,
    /// `links_max` links are already authenticated (or the table is full).
    Links,
}

/// Gauges and tallies of the link table.
#[derive(Debug, Default, Clone)]
pub(crate) struct LinkCounters {
    /// Gauge: links counted against `links_max` (authenticated, or opened by us).
    pub(crate) links_authenticated: usize,
    /// Gauge: links counted against `unauthenticated_max` (handshake or auth pending).
    pub(crate) links_unauthenticated: usize,
    /// Links closed because their queue went over `link_queue_bytes_max`.
    pub(crate) queue_overflows: u64,
}

/// Every link of one core, by index; an index is reused under a new generation.
#[derive(Debug, Default)]
pub(crate) struct Links {
    slots: Vec<Option<Link>>,
    generations: Vec<u32>,
    free: Vec<u16>,
    /// Links with a [`Signal`] raised since the last [`take_signals`](Self::take_signals).
    touched: Vec<u16>,
    pub(crate) counters: LinkCounters,
}

/// The caps [`Links::add`] checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) links_max: usize,
    pub(crate) unauthenticated_max: usize,
}

impl Links {
    /// Registers a new connection carrying `transport`, counted as `admission` says.
    pub(crate) fn add(
        &mut self,
        transport: Transport,
        path_account: Option<String>,
        admission: Admission,
        caps: Caps,
        now: i64,
    ) -> Result<LinkId, Refused> {
        let counters = &self.counters;
        match admission {
            Admission::Pending if counters.links_unauthenticated >= caps.unauthenticated_max => {
                return Err(Refused::Unauthenticated)
            }
            Admission::Authenticated if counters.links_authenticated >= caps.links_max => {
                return Err(Refused::Links)
            }
            Admission::Pending | Admission::Authenticated => {}
        }
        // The table holds both kinds, each within its own cap.
        let capacity = caps
            .links_max
            .saturating_add(caps.unauthenticated_max)
            .min(usize::from(u16::MAX));
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() >= capacity => return Err(Refused::Links),
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u16
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
        self.slots[usize::from(index)] = Some(Link {
            generation,
            transport,
            path_account,
            cert_peer: None,
            peer: None,
            // Grows to what the link's traffic needs, once: an idle link holds no queue (a
            // buffer allocated at 64 KiB cost two touched pages, tests/memory.rs).
            out: Vec::new(),
            signals: 0,
            closing: false,
            authenticated,
            writing: 0,
            taken: 0,
            reader_paused: false,
            received_at: now,
            pinged_at: 0,
            overflowed: false,
            write_timed_out: false,
        });
        Ok(LinkId { index, generation })
    }

    pub(crate) fn get(&self, id: LinkId) -> Option<&Link> {
        self.slots
            .get(usize::from(id.index))?
            .as_ref()
            .filter(|l| l.generation == id.generation)
    }

    pub(crate) fn get_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.slots
            .get_mut(usize::from(id.index))?
            .as_mut()
            .filter(|l| l.generation == id.generation)
    }

    /// The link at `index`, whatever its generation (for lists of indices kept per peer).
    pub(crate) fn at(&self, index: u16) -> Option<&Link> {
        self.slots.get(usize::from(index))?.as_ref()
    }

    /// The id of the link at `index`, if one is there.
    pub(crate) fn id_at(&self, index: u16) -> Option<LinkId> {
        let link = self.at(index)?;
        Some(LinkId {
            index,
            generation: link.generation,
        })
    }

    /// Every link, with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (LinkId, &Link)> {
        self.slots.iter().enumerate().filter_map(|(i, l)| {
            let l = l.as_ref()?;
            let id = LinkId {
                index: i as u16,
                generation: l.generation,
            };
            Some((id, l))
        })
    }

    /// Every link, with its id, to change.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (LinkId, &mut Link)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, l)| {
            let l = l.as_mut()?;
            let id = LinkId {
                index: i as u16,
                generation: l.generation,
            };
            Some((id, l))
        })
    }

    /// Moves a link from the unauthenticated count to the authenticated one; `false` when
    /// `links_max` are already authenticated (the caller closes it). A link already counted
    /// as authenticated stays so.
    pub(crate) fn authenticate(&mut self, id: LinkId, links_max: usize) -> bool {
        let authenticated = self.counters.links_authenticated;
        let Some(link) = self.get_mut(id) else {
            return false;
        };
        if link.authenticated {
            return true;
        }
        if authenticated >= links_max {
            return false;
        }
        link.authenticated = true;
        let counters = &mut self.counters;
        debug_assert!(counters.links_unauthenticated > 0);
        counters.links_unauthenticated = counters.links_unauthenticated.saturating_sub(1);
        counters.links_authenticated += 1;
        true
    }

    /// Takes a finished link out of the table; its index is free again.
    pub(crate) fn remove(&mut self, id: LinkId) -> Option<Link> {
        self.get(id)?;
        let link = self.slots[usize::from(id.index)].take()?;
        self.free.push(id.index);
        let count = if link.authenticated {
            &mut self.counters.links_authenticated
        } else {
            &mut self.counters.links_unauthenticated
        };
        debug_assert!(*count > 0);
        *count = count.saturating_sub(1);
        Some(link)
    }

    /// Queues a binary WebSocket frame made of `parts` (masked on a link we dialled) on the
    /// BTP link at `index`. Nothing is queued on a link whose queue overflowed.
    pub(crate) fn push_frame(&mut self, index: u16, parts: &[&[u8]], queue_max: usize) {
        let Some(link) = self.live(index) else {
            return;
        };
        let Transport::Btp(btp) = &mut link.transport else {
            return;
        };
        write_binary_frame(&mut link.out, parts, btp.mask.as_mut());
        self.queued(index, queue_max);
    }

    /// Queues a control frame (a Pong, a Ping, a Close) on a BTP link.
    pub(crate) fn push_control(
        &mut self,
        id: LinkId,
        opcode: Opcode,
        payload: &[u8],
        queue_max: usize,
    ) {
        if self.get(id).is_none() {
            return;
        }
        let Some(link) = self.live(id.index) else {
            return;
        };
        let Transport::Btp(btp) = &mut link.transport else {
            return;
        };
        let payload = &payload[..payload.len().min(ws::CONTROL_PAYLOAD_LEN_MAX)];
        write_control_frame(&mut link.out, opcode, payload, btp.mask.as_mut());
        self.queued(id.index, queue_max);
    }

    /// Queues raw bytes (an HTTP head and body) on a link.
    pub(crate) fn push_raw(&mut self, index: u16, parts: &[&[u8]], queue_max: usize) {
        let Some(link) = self.live(index) else {
            return;
        };
        for part in parts {
            link.out.extend_from_slice(part);
        }
        self.queued(index, queue_max);
    }

    /// Marks a link finished: its writer flushes and closes the socket.
    pub(crate) fn close(&mut self, id: LinkId) {
        if let Some(link) = self.get_mut(id) {
            link.closing = true;
            let resume = link.resume_reader();
            self.raise(id.index, Signal::WRITER | resume_bit(resume));
        }
    }

    /// The writer finished writing what it took last and takes the queue into `batch` (whose
    /// old bytes are all written); a reader paused for room is woken if at most `half` is
    /// still owed. Returns whether the link is closing (`true` when it is gone).
    pub(crate) fn take(&mut self, id: LinkId, batch: &mut Vec<u8>, half: usize) -> bool {
        let Some(link) = self.get_mut(id) else {
            return true;
        };
        std::mem::swap(&mut link.out, batch);
        link.writing = batch.len();
        link.taken += batch.len() as u64;
        let closing = link.closing;
        if link.queued() <= half && link.resume_reader() {
            self.raise(id.index, Signal::RESUME);
        }
        closing
    }

    /// Writes the link's queue at `index` straight to its socket with `send` (a nonblocking
    /// write that returns how much it took), when the writer task holds nothing unwritten and
    /// the link is not closing: the common case of a hop then costs no task wake-up. What
    /// `send` does not take stays queued, in order, for the writer task. Returns
    /// `(wrote everything, resume the paused reader)`; `false` first means the writer task
    /// must be woken (a partial or refused write, a closing link, or one it is busy with).
    pub(crate) fn write_inline(
        &mut self,
        index: u16,
        half: usize,
        send: impl FnOnce(&[u8]) -> std::io::Result<usize>,
    ) -> (bool, bool) {
        let Some(link) = self
            .slots
            .get_mut(usize::from(index))
            .and_then(Option::as_mut)
        else {
            return (true, false);
        };
        if link.closing || link.writing != 0 || link.overflowed {
            return (false, false);
        }
        if link.out.is_empty() {
            return (true, false);
        }
        let sent = send(&link.out).map_or(0, |n| n.min(link.out.len()));
        link.out.drain(..sent);
        link.taken += sent as u64;
        let resume = link.queued() <= half && link.resume_reader();
        (link.out.is_empty(), resume)
    }

    /// Raises `signal` on a link for its I/O tasks (see [`take_signals`](Self::take_signals)).
    pub(crate) fn raise(&mut self, index: u16, signal: u8) {
        if let Some(link) = self
            .slots
            .get_mut(usize::from(index))
            .and_then(|l| l.as_mut())
        {
            if link.signals == 0 {
                self.touched.push(index);
            }
            link.signals |= signal;
        }
    }

    /// The outbox of wake-ups: each link with signals raised since the last call, once, with
    /// its bits (cleared). The runtime wakes the matching tasks; `out` is cleared first.
    pub(crate) fn take_signals(&mut self, out: &mut Vec<(u16, u8)>) {
        out.clear();
        for index in self.touched.drain(..) {
            if let Some(link) = self.slots[usize::from(index)].as_mut() {
                let bits = std::mem::take(&mut link.signals);
                if bits != 0 {
                    out.push((index, bits));
                }
            }
        }
    }

    /// Which links' timers are due at `now`. BTP keepalive: a link silent for one interval
    /// gets a Ping, one more each interval; silent for `missed_max` intervals after the first
    /// Ping (every Ping had a whole interval to be answered) it is half-open. A paused reader
    /// is not silence: its link has over half its cap queued, and the writer's deadline
    /// decides whether the peer is alive. Marks the links it pings.
    /// HTTP connections of ours: one whose oldest request is past its expiry by more than
    /// `expiry_late_ms` (how late the engine's wheel may answer R00) is stale, one with
    /// nothing in flight for `http_idle_ms` is idle.
    pub(crate) fn timers(
        &mut self,
        now: i64,
        interval_ms: i64,
        missed_max: u32,
        http_idle_ms: i64,
        expiry_late_ms: i64,
    ) -> Due {
        let down_ms = interval_ms.saturating_mul(i64::from(missed_max) + 1);
        let mut due = Due::default();
        for (id, link) in self.iter_mut() {
            if let Transport::HttpClient(client) = &link.transport {
                // After the engine's wheel answered it (R00), never before: a request that
                // fails here first would be answered T01.
                let late = client
                    .busy
                    .front()
                    .is_some_and(|p| p.expires_at.saturating_add(expiry_late_ms) < now);
                let idle =
                    client.busy.is_empty() && now.saturating_sub(client.active_at) >= http_idle_ms;
                if late && !link.closing {
                    due.stale.push(id);
                } else if idle && !link.closing {
                    due.idle.push(id);
                }
                continue;
            }
            let Transport::Btp(btp) = &mut link.transport else {
                continue;
            };
            if btp.session.handle_timeout(now).auth_expired {
                due.auth_expired.push(id);
                continue;
            }
            if link.closing || link.reader_paused {
                continue;
            }
            let quiet_ms = now.saturating_sub(link.received_at);
            if quiet_ms >= down_ms {
                due.silent.push(id);
            } else if quiet_ms >= interval_ms && now - link.pinged_at >= interval_ms {
                link.pinged_at = now;
                due.ping.push(id);
            }
        }
        due
    }

    /// True when no link has output waiting.
    pub(crate) fn all_flushed(&self) -> bool {
        self.slots.iter().flatten().all(|l| l.out.is_empty())
    }

    /// The link at `index` if it still takes output.
    fn live(&mut self, index: u16) -> Option<&mut Link> {
        self.slots
            .get_mut(usize::from(index))?
            .as_mut()
            .filter(|l| !l.overflowed)
    }

    /// After output was queued at `index`: the cap, then the writer's wake-up.
    fn queued(&mut self, index: u16, queue_max: usize) {
        let Some(link) = self.slots[usize::from(index)].as_mut() else {
            return;
        };
        let mut signal = Signal::WRITER;
        if link.overflow_if_over(queue_max) {
            self.counters.queue_overflows += 1;
            tracing::debug!("queue over link_queue_bytes_max: closed");
            signal |= resume_bit(link.resume_reader());
        }
        self.raise(index, signal);
    }
}

/// What a link's I/O tasks are woken for: bits of [`Links::take_signals`].
#[derive(Debug)]
pub(crate) struct Signal;

impl Signal {
    /// Output was queued, or the link is closing: the writer has work.
    pub(crate) const WRITER: u8 = 1;
    /// The reader paused for room may read again.
    pub(crate) const RESUME: u8 = 2;
    /// HTTP answers were written: the reader waiting for pipeline room may go on.
    pub(crate) const ANSWERED: u8 = 4;
}

fn resume_bit(resumed: bool) -> u8 {
    if resumed {
        Signal::RESUME
    } else {
        0
    }
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod test;
