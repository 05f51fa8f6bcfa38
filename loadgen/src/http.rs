//! ILP over HTTP (RFC 35, synchronous mode) for the load generator, with the router's
//! sans-IO codec (`ilp_router::link::http`).
//!
//! The sender is an HTTP/1.1 keep-alive client: every Prepare is one POST to the `--router` URL
//! (path verbatim; `https://` over TLS, redials too) with `Authorization: Bearer <token>`. Requests
//! are *pipelined*: up to `--window` are written on a connection before their answers come back,
//! and answers are matched to requests in order (HTTP/1.1 servers answer in order). `--window 1` is
//! the classic one-request-at-a-time client. A connection the server closes (`Connection: close`,
//! say after a 401) is dialled again: the requests it had written and not seen answered count as
//! errors (they may have reached the server, so they are never sent twice); those still queued,
//! never written, go out again on the new connection. A server that cannot be dialled any more ends
//! the run, like a BTP peer that goes away. A connection with nothing in flight for 4 s is closed
//! and dialled again, before a server's keep-alive timeout can close it under a request.
//!
//! The sink is an HTTP/1.1 server on `--sink-listen` (every thread listens on the same address:
//! glommio sets `SO_REUSEPORT`; with several sinks, sink i on the port plus i − 1): any path, any
//! content type, `Bearer <token>` required (401 and close otherwise); each Prepare is answered as
//! the BTP sink answers it. With `--sink-cert` every accepted connection is TLS (its handshake in
//! the connection's own task, not the accept loop's). A sink taken down (`--sink-down-at`) has its
//! `serve` task and every accepted connection's task cancelled (`Sink::drop_link`): the listener
//! and the sockets close at once.

use crate::conn::{
    self, sender_reply, sink_answer, sink_sent, unix_ms, Ring, BACKLOG_MAX, RING_LEN,
};
use crate::pacer::Schedule;
use crate::plan::{Destinations, Plan};
use crate::sinks::SinkId;
use crate::stats::{SinkAnswer, Stats};
use crate::tls::{self, Stream};
use futures_lite::io::AsyncWriteExt;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpListener;
use glommio::task::JoinHandle;
use ilp_router::link::buf::ReadBuf;
use ilp_router::link::http::{
    parse_request, parse_response, request_head_len, write_request_head, write_response,
    write_status, HEAD_LEN_MAX, RESPONSE_HEAD_LEN_MAX,
};
use ilp_router::link::url::{self, BtpUrl, Scheme};
use ilp_router::wire::{Address, Prepare, PrepareRepr, DATA_LEN_MAX};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The largest body accepted (the largest legal ILP packet is under 33 kB).
const BODY_LEN_MAX: usize = 64 * 1024;
const READ_BUFFER_LEN: usize = 1 << 20;
/// Bytes a read needs free at the end of the buffer (a whole response or request fits).
const READ_ROOM: usize = BODY_LEN_MAX + HEAD_LEN_MAX;

/// Where the sender POSTs: host, port and the request target (verbatim, a query too; `/`
/// when the URL has none).
pub(crate) type HttpTarget = BtpUrl;

/// Parses `http://host[:port][/path]` or `https://…` (port 80, or 443 over TLS, by default)
/// with the router's URL parser.
pub(crate) fn parse_http_url(text: &str) -> Result<HttpTarget, String> {
    let tls = text
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    url::parse(text, Scheme::Http, Some(Scheme::Http.default_port(tls)))
        .map_err(|e| format!("--router {e}"))
}

/// One sender connection: requests written, answers matched in order.
pub(crate) struct Sender {
    plan: Rc<Plan>,
    ring: Rc<Ring>,
    stats: Rc<RefCell<Stats>>,
    target: Rc<HttpTarget>,
    /// The run's TLS client config, for an `https://` target (and its redials).
    tls: Option<tls::Client>,
    host_header: String,
    token: Rc<str>,
    out: Vec<u8>,
    wake: LocalSender<()>,
    woken: bool,
    /// Requests sent and not yet answered, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Requests queued on a connection that closed before they were written: sent again
    /// first, with their sequence numbers and intended times.
    resend: VecDeque<InFlight>,
    /// Bytes the writer took from `out` on this connection: a request whose bytes start at
    /// or after this position was never written.
    taken: u64,
    id: u64,
    next_seq: u64,
    data: Vec<u8>,
    /// Where each request's Prepare goes (`--destinations`), by its sequence number.
    destinations: Destinations,
    packet: Vec<u8>,
    head: Vec<u8>,
    /// Open loop: the intended send times (none in closed loop, and until the send clock
    /// starts).
    schedule: Option<Schedule>,
    /// Open loop: requests due but not yet sent (window full), by intended send time.
    backlog: VecDeque<u64>,
    /// Open loop: the intended times of the requests queued in `out`, until the writer hands
    /// them to the socket and their send lateness is counted.
    queued: Vec<u64>,
    /// A TCP connection is up (false while redialling).
    connected: bool,
    /// The run is over for this connection.
    pub(crate) closing: bool,
}

pub(crate) type SenderShared = Rc<RefCell<Sender>>;

/// Takes out of `in_flight` (oldest first) the requests whose bytes start at or after
/// `taken`, the bytes the writer took: they were never written. Requests go out in order, so
/// those are the newest.
fn unwritten(in_flight: &mut VecDeque<InFlight>, taken: u64) -> Vec<InFlight> {
    let written = in_flight.iter().take_while(|r| r.start < taken).count();
    in_flight.drain(written..).collect()
}

/// A sequence number is the connection's id above bit 40 and its count of requests below.
const SEQ_MASK: u64 = (1 << 40) - 1;

/// One request of a sender connection.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// When it was meant to go (ns since the start): its latency counts from there.
    intended_ns: u64,
    /// Its sequence number (the ring index and the data carry it).
    seq: u64,
    /// Where its bytes start in the connection's output stream.
    start: u64,
}

impl Sender {
    fn since_start_ns(&self) -> u64 {
        self.plan.start.elapsed().as_nanos() as u64
    }

    fn wake(&mut self) {
        if self.woken {
            self.woken = false;
            let _ = self.wake.try_send(());
        }
    }

    /// Writes one POST whose latency counts from `intended_ns`; false when the window is
    /// full or the connection is down.
    fn send_prepare(&mut self, intended_ns: u64, now_ns: u64, now_ms: i64) -> bool {
        if !self.connected || self.in_flight.len() >= self.plan.window {
            return false;
        }
        let seq = self.id << 40 | self.next_seq;
        self.write_post(intended_ns, seq, now_ms);
        self.next_seq += 1;
        self.stats
            .borrow_mut()
            .on_sent((now_ns / 1_000_000_000) as usize);
        true
    }

    /// Queues the POST of request `seq`.
    fn write_post(&mut self, intended_ns: u64, seq: u64, now_ms: i64) {
        let index = (seq as usize) % RING_LEN;
        self.data[..8].copy_from_slice(&seq.to_be_bytes());
        let repr = PrepareRepr {
            amount: self.plan.amount,
            expires_at: now_ms + self.plan.expiry_ms as i64,
            execution_condition: &self.ring.conditions[index],
            // The connection's n-th request, also when it goes again on a new connection.
            destination: Address::new_checked(self.destinations.address(seq & SEQ_MASK))
                .expect("checked at start"),
            data: &self.data,
        };
        self.packet.resize(repr.buffer_len(), 0);
        let len = repr.emit(&mut self.packet);
        self.head.resize(
            request_head_len(&self.target.path, &self.host_header, &self.token, len),
            0,
        );
        let n = write_request_head(
            &self.target.path,
            &self.host_header,
            &self.token,
            len,
            &mut self.head,
        );
        let start = self.taken + self.out.len() as u64;
        self.out.extend_from_slice(&self.head[..n]);
        self.out.extend_from_slice(&self.packet[..len]);
        self.woken = true;
        if self.schedule.is_some() {
            self.queued.push(intended_ns);
        }
        self.in_flight.push_back(InFlight {
            intended_ns,
            seq,
            start,
        });
    }

    /// The connection closed: requests never written wait to go again, the others are lost
    /// (counted as errors unless the run is ending). Returns how many were lost.
    fn connection_closed(&mut self) -> u64 {
        for request in unwritten(&mut self.in_flight, self.taken).into_iter().rev() {
            self.resend.push_front(request);
        }
        let lost = self.in_flight.len() as u64;
        self.in_flight.clear();
        self.out.clear();
        // Those never written are queued (and counted) again when they go.
        self.queued.clear();
        self.taken = 0;
        lost
    }

    /// Keeps the window full (closed loop) or sends what is due (open loop).
    pub(crate) fn refill(&mut self) {
        // Nothing goes out before the send clock starts (the plan then has its start time).
        if !self.connected
            || self.closing
            || self.plan.send_start_ns == 0
            || self.plan.stopping()
            || (self.plan.rate_per_conn.is_some() && self.schedule.is_none())
        {
            return;
        }
        let now = self.since_start_ns();
        let now_ms = unix_ms();
        // Requests a closed connection never wrote go first, as they were.
        while self.in_flight.len() < self.plan.window {
            let Some(again) = self.resend.pop_front() else {
                break;
            };
            self.write_post(again.intended_ns, again.seq, now_ms);
        }
        match &mut self.schedule {
            None => while self.send_prepare(now, now, now_ms) {},
            Some(schedule) => {
                // What is due now, never what is not yet.
                while self.backlog.len() < BACKLOG_MAX {
                    let Some(intended) = schedule.pop_due(now) else {
                        break;
                    };
                    self.backlog.push_back(intended);
                }
                while let Some(&intended) = self.backlog.front() {
                    if !self.send_prepare(intended, now, now_ms) {
                        break;
                    }
                    self.backlog.pop_front();
                }
            }
        }
        self.wake();
    }

    /// One response, for the oldest request in flight.
    fn on_response(&mut self, status: u16, body: &[u8]) {
        let Some(request) = self.in_flight.pop_front() else {
            self.stats.borrow_mut().errors += 1;
            return;
        };
        let (intended, index) = (request.intended_ns, (request.seq as usize) % RING_LEN);
        if status == 200 {
            let now = self.since_start_ns();
            sender_reply(
                &self.plan,
                &self.ring,
                &self.stats,
                now,
                intended,
                index,
                body,
            );
        } else {
            self.stats.borrow_mut().on_http_error(status);
        }
    }

    pub(crate) fn set_plan(&mut self, plan: Rc<Plan>) {
        self.plan = plan;
    }

    /// Open loop: sends on `schedule` from now on.
    pub(crate) fn set_schedule(&mut self, schedule: Schedule) {
        self.schedule = Some(schedule);
    }

    /// Open loop: when the next request is meant to go.
    pub(crate) fn next_send_ns(&self) -> Option<u64> {
        self.schedule.as_ref().map(Schedule::next_ns)
    }

    /// The writer took what was queued: count the send lateness of the requests in it.
    fn handed_over(&mut self) {
        if !self.queued.is_empty() {
            let now = self.since_start_ns();
            self.stats
                .borrow_mut()
                .on_handed_over(now, &mut self.queued);
        }
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn shut(&mut self) {
        self.closing = true;
        self.woken = true;
        self.wake();
    }
}

/// Dials the target and keeps a sender connection running (redialling when the server
/// closes it) until the run ends. Errors only if the first dial fails.
pub(crate) async fn dial(
    plan: Rc<Plan>,
    ring: Rc<Ring>,
    stats: Rc<RefCell<Stats>>,
    id: u64,
    target: Rc<HttpTarget>,
    token: Rc<str>,
    tls: Option<tls::Client>,
) -> io::Result<SenderShared> {
    let stream = tls::dial(&target, tls.as_ref()).await?;
    let (wake, sleep) = local_channel::new_bounded(1);
    let data_len = plan.data_bytes.clamp(8, DATA_LEN_MAX);
    let destinations = Destinations::new(&plan.destination, plan.destinations);
    let sender = Rc::new(RefCell::new(Sender {
        plan,
        ring,
        stats,
        host_header: target.host_port(),
        target,
        tls,
        token,
        out: Vec::with_capacity(256 * 1024),
        wake,
        woken: false,
        in_flight: VecDeque::new(),
        resend: VecDeque::new(),
        taken: 0,
        id,
        next_seq: 0,
        data: vec![0; data_len],
        destinations,
        packet: Vec::with_capacity(4096),
        head: Vec::with_capacity(256),
        schedule: None,
        backlog: VecDeque::new(),
        queued: Vec::new(),
        connected: true,
        closing: false,
    }));
    glommio::spawn_local(run_sender(Rc::clone(&sender), stream, sleep)).detach();
    Ok(sender)
}

async fn run_sender(sender: SenderShared, mut stream: Stream, sleep: LocalReceiver<()>) {
    let mut buf = ReadBuf::new(READ_BUFFER_LEN);
    loop {
        {
            let mut s = sender.borrow_mut();
            s.connected = true;
            s.refill();
        }
        let (reader, writer) = futures_lite::io::split(stream);
        futures_lite::future::zip(
            sender_reads(&sender, reader, &mut buf),
            write_loop(
                &sender,
                writer,
                &sleep,
                |s, batch| {
                    std::mem::swap(&mut s.out, batch);
                    s.taken += batch.len() as u64;
                    s.handed_over();
                },
                |s| !s.connected || s.closing,
            ),
        )
        .await;
        let (plan, target, tls) = {
            let mut s = sender.borrow_mut();
            s.connected = false;
            let lost = s.connection_closed();
            if !s.closing {
                // Written but never answered: the connection went away under them.
                s.stats.borrow_mut().errors += lost;
            }
            if s.closing || s.plan.stopping() {
                return;
            }
            (Rc::clone(&s.plan), Rc::clone(&s.target), s.tls.clone())
        };
        stream = match tls::dial(&target, tls.as_ref()).await {
            Ok(stream) => stream,
            Err(_) => {
                // The server is gone: end the run, keep what was measured.
                if !plan.stopping() {
                    plan.stop.store(true, Ordering::Relaxed);
                    plan.broken.store(true, Ordering::Relaxed);
                }
                return;
            }
        };
    }
}

/// Reads responses until the server closes, says `Connection: close`, or sends garbage.
async fn sender_reads<R: AsyncRead + Unpin>(
    sender: &SenderShared,
    mut reader: R,
    buf: &mut ReadBuf,
) {
    // What a closed connection left unread is no answer to anything on the next one.
    buf.clear();
    'read: loop {
        let mut last = false;
        loop {
            match parse_response(buf.data(), BODY_LEN_MAX) {
                Ok(Some(r)) if buf.len() >= r.head_len + r.body_len => {
                    let body = &buf.data()[r.head_len..r.head_len + r.body_len];
                    sender.borrow_mut().on_response(r.status, body);
                    buf.consume(r.head_len + r.body_len);
                    if !r.keep_alive {
                        last = true;
                        break;
                    }
                }
                Ok(_) => break,
                Err(_) => {
                    let s = sender.borrow();
                    s.stats.borrow_mut().errors += 1;
                    last = true;
                    break;
                }
            }
        }
        {
            let mut s = sender.borrow_mut();
            if last || s.closing {
                break 'read;
            }
            // Answers freed window slots: fill them at once, once per batch.
            s.refill();
        }
        buf.compact_if_needed(READ_ROOM);
        match read_unless_idle(sender, &mut reader, buf).await {
            None | Some(Ok(0) | Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    let mut s = sender.borrow_mut();
    s.connected = false;
    s.woken = true;
    s.wake();
}

/// How long a sender connection may sit with nothing in flight before we close it (and dial a
/// new one): below a server's keep-alive timeout (Node's is 5 s), so that no request is ever
/// written onto a connection the server is just closing. The router does the same
/// (`http_client_idle_timeout_ms`).
const IDLE_CLOSE: Duration = Duration::from_secs(4);

/// One read; `None` when the connection sat with nothing in flight for [`IDLE_CLOSE`].
async fn read_unless_idle<R: AsyncRead + Unpin>(
    sender: &SenderShared,
    reader: &mut R,
    buf: &mut ReadBuf,
) -> Option<io::Result<usize>> {
    let mut read = std::pin::pin!(buf.read_from(reader));
    loop {
        if !sender.borrow().in_flight.is_empty() {
            return Some(read.as_mut().await);
        }
        let idle = async {
            glommio::timer::sleep(IDLE_CLOSE).await;
            None
        };
        let done = futures_lite::future::or(async { Some(read.as_mut().await) }, idle).await;
        match done {
            Some(result) => return Some(result),
            // Still nothing in flight: close it. Else a request went out meanwhile: its
            // answer is what the read waits for.
            None if sender.borrow().in_flight.is_empty() => return None,
            None => {}
        }
    }
}

/// Writes whatever is queued, one write per wake-up, until `done`; then closes the write
/// side.
async fn write_loop<T, W: AsyncWrite + Unpin>(
    conn: &Rc<RefCell<T>>,
    mut writer: W,
    sleep: &LocalReceiver<()>,
    take: impl Fn(&mut T, &mut Vec<u8>),
    done: impl Fn(&T) -> bool,
) {
    ilp_router::shard::write_queued(&mut writer, sleep, |batch| {
        let mut c = conn.borrow_mut();
        take(&mut c, batch);
        done(&c)
    })
    .await;
    let _ = writer.close().await;
}

/// One connection a client (the router, or our own sender with `--direct`) opened to the
/// sink.
pub(crate) struct Sink {
    plan: Rc<Plan>,
    ring: Rc<Ring>,
    stats: Rc<RefCell<Stats>>,
    /// Which of the run's sinks this connection serves.
    sink: SinkId,
    token: Rc<[u8]>,
    out: Vec<u8>,
    wake: LocalSender<()>,
    woken: bool,
    rng: u64,
    /// Answers held back by `--sink-delay-ms`: (due ms since start, bytes, what it answers,
    /// if a packet, close after it).
    delayed: VecDeque<(u64, Vec<u8>, Option<SinkAnswer>, bool)>,
    /// No more requests are read: the last answer closes the connection.
    last_answer: bool,
    /// Everything is written (or the client went away): the connection ends.
    pub(crate) closing: bool,
    /// The connection's task (reads and writes), cancelled by `drop_link`.
    task: Option<JoinHandle<()>>,
}

pub(crate) type SinkShared = Rc<RefCell<Sink>>;

impl Sink {
    fn wake(&mut self) {
        if self.woken {
            self.woken = false;
            let _ = self.wake.try_send(());
        }
    }

    fn now_ms(&self) -> u64 {
        self.plan.start.elapsed().as_millis() as u64
    }

    /// Queues an answer, now or after `--sink-delay-ms` (answers stay in request order).
    fn answer(&mut self, parts: &[&[u8]], answer: Option<SinkAnswer>, close: bool) {
        if close {
            self.last_answer = true;
        }
        if self.plan.sink.delay_ms > 0 {
            let due = self.now_ms() + self.plan.sink.delay_ms;
            self.delayed.push_back((due, parts.concat(), answer, close));
            return;
        }
        for part in parts {
            self.out.extend_from_slice(part);
        }
        self.sent(answer, close);
    }

    fn sent(&mut self, answer: Option<SinkAnswer>, close: bool) {
        if let Some(answer) = answer {
            let second = (self.plan.start.elapsed().as_secs()) as usize;
            sink_sent(&self.plan, &self.stats, self.sink, second, answer);
        }
        self.closing |= close;
        self.woken = true;
    }

    /// Sends the delayed answers that are due.
    pub(crate) fn release_delayed(&mut self) {
        let now = self.now_ms();
        while self.delayed.front().is_some_and(|(due, ..)| *due <= now) {
            let (_, bytes, answer, close) = self.delayed.pop_front().expect("front exists");
            self.out.extend_from_slice(&bytes);
            self.sent(answer, close);
        }
        self.wake();
    }

    fn on_status(&mut self, status: u16) {
        let mut head = [0u8; RESPONSE_HEAD_LEN_MAX];
        let n = write_status(status, false, &mut head);
        self.answer(&[&head[..n]], None, true);
    }

    /// One request's body; the token is already checked.
    fn on_prepare(&mut self, body: &[u8], keep_alive: bool) {
        self.stats.borrow_mut().on_sink_received(self.sink);
        let Ok(prepare) = Prepare::new_checked(body) else {
            self.on_status(400);
            return;
        };
        let mut reply = [0u8; conn::SINK_REPLY_LEN_MAX];
        let (len, answer) =
            sink_answer(&self.plan, &self.ring, &mut self.rng, &prepare, &mut reply);
        let mut head = [0u8; RESPONSE_HEAD_LEN_MAX];
        let n = write_response(len, keep_alive, &mut head);
        self.answer(&[&head[..n], &reply[..len]], Some(answer), !keep_alive);
    }

    pub(crate) fn shut(&mut self) {
        self.closing = true;
        self.woken = true;
        self.wake();
    }

    /// Drops the connection on purpose (`--sink-down-at`): its task is cancelled, so the
    /// socket closes at once and nothing queued or delayed goes out.
    pub(crate) fn drop_link(&mut self) {
        self.closing = true;
        self.delayed.clear();
        if let Some(task) = self.task.take() {
            task.cancel();
        }
    }
}

/// What a sink's listener needs to serve: the thread's plan, ring and counters, which sink
/// it is, the token it requires and its TLS (`--sink-cert`).
#[derive(Debug, Clone)]
pub(crate) struct Serving {
    pub(crate) plan: Rc<Plan>,
    pub(crate) ring: Rc<Ring>,
    pub(crate) stats: Rc<RefCell<Stats>>,
    pub(crate) sink: SinkId,
    pub(crate) token: Rc<[u8]>,
    pub(crate) tls: Option<tls::Server>,
}

/// Accepts connections on `listener` until the run ends; each becomes a connection of sink
/// `serving.sink` in `accepted` (the thread's loop releases their delayed answers, and drops
/// or shuts them).
pub(crate) async fn serve(
    listener: TcpListener,
    serving: Serving,
    accepted: Rc<RefCell<Vec<SinkShared>>>,
) {
    let Serving {
        plan,
        ring,
        stats,
        sink: sink_id,
        token,
        tls,
    } = serving;
    let mut n: u64 = 0;
    while !plan.stopping() {
        let Ok(tcp) = listener.accept().await else {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let (wake, sleep) = local_channel::new_bounded(1);
        n += 1;
        let sink = Rc::new(RefCell::new(Sink {
            plan: Rc::clone(&plan),
            ring: Rc::clone(&ring),
            stats: Rc::clone(&stats),
            sink: sink_id,
            token: Rc::clone(&token),
            out: Vec::with_capacity(64 * 1024),
            wake,
            woken: false,
            rng: n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef,
            delayed: VecDeque::new(),
            last_answer: false,
            closing: false,
            task: None,
        }));
        {
            let mut list = accepted.borrow_mut();
            list.retain(|s| !s.borrow().closing);
            list.push(Rc::clone(&sink));
        }
        let task_sink = Rc::clone(&sink);
        let task_tls = tls.clone();
        let task = glommio::spawn_local(async move {
            let sink = task_sink;
            let Ok(stream) = tls::accept(tcp, task_tls.as_ref()).await else {
                // No TLS session: nothing to answer on it.
                sink.borrow_mut().closing = true;
                return;
            };
            let (reader, writer) = futures_lite::io::split(stream);
            futures_lite::future::zip(
                sink_reads(&sink, reader),
                write_loop(
                    &sink,
                    writer,
                    &sleep,
                    |s, batch| std::mem::swap(&mut s.out, batch),
                    |s| s.closing,
                ),
            )
            .await;
        })
        .detach();
        sink.borrow_mut().task = Some(task);
    }
}

/// Reads requests until the client closes or a request ends the connection.
async fn sink_reads<R: AsyncRead + Unpin>(sink: &SinkShared, mut reader: R) {
    let mut buf = ReadBuf::new(256 * 1024);
    loop {
        {
            let mut s = sink.borrow_mut();
            while !s.last_answer {
                match parse_request(buf.data(), BODY_LEN_MAX) {
                    Ok(Some(r)) if *r.token != *s.token => s.on_status(401),
                    Ok(Some(r)) if buf.len() >= r.head_len + r.body_len => {
                        let body = &buf.data()[r.head_len..r.head_len + r.body_len];
                        s.on_prepare(body, r.keep_alive);
                        buf.consume(r.head_len + r.body_len);
                    }
                    Ok(_) => break,
                    Err(e) => s.on_status(e.status()),
                }
            }
            s.wake();
            if s.last_answer || s.closing {
                return;
            }
        }
        buf.compact_if_needed(READ_ROOM);
        match buf.read_from(&mut reader).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The client went away: nothing more to answer.
    sink.borrow_mut().shut();
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn requests_never_written_are_told_apart_from_those_that_may_have_arrived() {
        let request = |seq, start| InFlight {
            intended_ns: seq * 10,
            seq,
            start,
        };
        // Three POSTs of 100 bytes; the writer took the first two (200 bytes).
        let mut in_flight: VecDeque<InFlight> =
            [request(1, 0), request(2, 100), request(3, 200)].into();
        let again = unwritten(&mut in_flight, 200);
        assert_eq!(again.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(in_flight.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        // The writer took part of the third request's batch: it may be on the wire.
        let mut in_flight: VecDeque<InFlight> = [request(1, 0), request(2, 100)].into();
        assert!(unwritten(&mut in_flight, 101).is_empty());
        assert_eq!(in_flight.len(), 2);
    }
}
