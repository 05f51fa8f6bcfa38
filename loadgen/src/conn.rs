//! One BTP connection of the load generator, as a sender (alice) or a sink (bob), over a
//! WebSocket we dialled or (for `--direct`) accepted, on plain TCP or TLS (`tls::Stream`).
//!
//! Each connection has a reader task (a batch of frames per read) and a writer task (one write
//! per wake-up of everything queued), like the router's links. A sink's connection can be
//! dropped on purpose (`Conn::drop_link`, for `--sink-down-at`): both tasks are cancelled, so
//! the socket closes at once and the run goes on. With `--io ring` a plaintext connection has
//! no reader task: the thread's ring reads it (`hot`, through [`Frames`]) and what it queues
//! goes out at once (`Conn::send_inline`); the writer task takes what the socket refused.
//!
//! What both roles answer and check, on any transport (the fulfillment ring, the sink's
//! answer, the sender's check, the Fulfill logs), is in `answers`.

pub(crate) use crate::answers::{
    sender_reply, sink_answer, sink_sent, FulfillLog, Ring, RING_LEN, SINK_REPLY_LEN_MAX,
};
use crate::pacer::Schedule;
use crate::plan::{Destinations, Plan};
use crate::sinks::SinkId;
use crate::stats::{SinkAnswer, Stats};
use crate::tls::{self, Stream};
use futures_lite::io::AsyncWriteExt;
use futures_lite::AsyncWrite;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::task::JoinHandle;
use ilp_router::id::PeerId;
use ilp_router::link::auth::PeerAuth;
use ilp_router::link::btp::{AuthEvent, BtpSession, Event, State, CONTROL_LEN_MAX};
use ilp_router::link::buf::{
    write_binary_frame, write_control_frame, HeadReadError, MaskRng, ReadBuf,
};
use ilp_router::link::url::BtpUrl;
use ilp_router::link::websocket::{self as ws, Message, MessageAssembler, Opcode};
use ilp_router::wire::{
    Address, ErrorCode, Prepare, PrepareRepr, RejectRepr, BTP_HEADER_LEN_MAX, DATA_LEN_MAX,
};
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Open loop: the most Prepares a sender connection keeps due but unsent (its window full);
/// past it, the schedule waits.
pub(crate) const BACKLOG_MAX: usize = 1 << 20;

/// What a connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Sender,
    /// One of the run's sinks.
    Sink(SinkId),
}

/// One connection's state, shared by its reader and writer tasks (same thread).
pub(crate) struct Conn {
    role: Role,
    session: BtpSession,
    /// Masking keys for our frames: only when we dialled (RFC 6455 §5.3).
    mask: Option<MaskRng>,
    out: Vec<u8>,
    wake: LocalSender<()>,
    woken: bool,
    pub(crate) closing: bool,
    plan: Rc<Plan>,
    ring: Rc<Ring>,
    stats: Rc<RefCell<Stats>>,
    /// Sender: sequence numbers are `id << 40 | n`.
    id: u64,
    next_seq: u64,
    /// Sender: the data of every Prepare (a sequence number, then zeros) and a buffer to
    /// encode Prepares in, both made once.
    data: Vec<u8>,
    /// Sender: where each Prepare goes (`--destinations`).
    destinations: Destinations,
    packet: Vec<u8>,
    /// Sender, open loop: the intended send times (none in closed loop, and until the send
    /// clock starts).
    schedule: Option<Schedule>,
    /// Sender, open loop: Prepares due but not yet sent (window full), oldest first, by
    /// intended send time (ns since start).
    backlog: std::collections::VecDeque<u64>,
    /// Sender, open loop: the intended times of the Prepares queued in `out`, until the
    /// writer hands them to the socket and their send lateness is counted.
    queued: Vec<u64>,
    /// Sink: replies held back by `--sink-delay-ms` (due ms since start, bytes), each with
    /// what it is, counted (and logged) once it is sent.
    delayed: std::collections::VecDeque<(u64, Vec<u8>, SinkAnswer)>,
    rng: u64,
    /// The reader and writer tasks, cancelled by `drop_link`.
    io: Vec<JoinHandle<()>>,
    /// `--io ring`: the socket, read by the thread's ring driver (`hot`) and written here
    /// with `send` at once; the writer task takes only what the socket refused.
    hot_fd: Option<std::os::fd::RawFd>,
    /// The writer task holds bytes it has not finished writing: nothing may be sent around
    /// it.
    writing: bool,
    pub(crate) opened: bool,
    pub(crate) failed: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("role", &self.role)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub(crate) type Shared = Rc<RefCell<Conn>>;

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Conn {
    pub(crate) fn since_start_ns(&self) -> u64 {
        self.plan.start.elapsed().as_nanos() as u64
    }

    fn second(&self, at_ns: u64) -> usize {
        (at_ns / 1_000_000_000) as usize
    }

    /// Queues a binary frame made of `parts`.
    fn push_frame(&mut self, parts: &[&[u8]]) {
        write_binary_frame(&mut self.out, parts, self.mask.as_mut());
        self.woken = true;
    }

    /// Queues the answer to a ping.
    fn push_pong(&mut self, payload: &[u8]) {
        write_control_frame(&mut self.out, Opcode::Pong, payload, self.mask.as_mut());
        self.woken = true;
    }

    fn wake(&mut self) {
        if self.woken {
            self.woken = false;
            if self.send_inline() {
                return;
            }
            let _ = self.wake.try_send(());
        }
    }

    /// `--io ring`: sends what is queued at once with a nonblocking `send`, unless the writer
    /// task is in the middle of a write or the connection is closing (the writer closes it).
    /// True when nothing is left for the writer.
    fn send_inline(&mut self) -> bool {
        let Some(fd) = self.hot_fd else {
            return false;
        };
        if self.writing || self.closing {
            return false;
        }
        if self.out.is_empty() {
            return true;
        }
        // Handed to the socket now (as the writer task counts it when it takes a batch).
        let now = self.since_start_ns();
        // SAFETY: sends from our buffer, its length at most.
        let n = unsafe {
            libc::send(
                fd,
                self.out.as_ptr().cast(),
                self.out.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n <= 0 {
            return false;
        }
        self.out.drain(..n as usize);
        // An answer will come: the ring's driver must be up to read it.
        crate::hot::unpark();
        if !self.out.is_empty() {
            return false;
        }
        if !self.queued.is_empty() {
            self.stats
                .borrow_mut()
                .on_handed_over(now, &mut self.queued);
        }
        true
    }

    /// Sender: sends one Prepare whose latency counts from `intended_ns`; false when the
    /// window is full.
    fn send_prepare(&mut self, intended_ns: u64, now_ns: u64, now_ms: i64) -> bool {
        if self.session.outstanding() >= self.plan.window {
            return false;
        }
        let seq = self.id << 40 | self.next_seq;
        let index = (seq as usize) % RING_LEN;
        // Buffers made once per connection: data (sequence number first, then zeros) and the
        // encoded Prepare.
        self.data[..8].copy_from_slice(&seq.to_be_bytes());
        let expires_at = now_ms + self.plan.expiry_ms as i64;
        let ring = Rc::clone(&self.ring);
        let repr = PrepareRepr {
            amount: self.plan.amount,
            expires_at,
            execution_condition: &ring.conditions[index],
            destination: Address::new_checked(self.destinations.address(self.next_seq))
                .expect("checked at start"),
            data: &self.data,
        };
        let mut packet = std::mem::take(&mut self.packet);
        packet.resize(repr.buffer_len(), 0);
        let len = repr.emit(&mut packet);
        let tag = intended_ns << 16 | index as u64;
        let mut header = [0u8; BTP_HEADER_LEN_MAX];
        let sent = match self
            .session
            .write_prepare_header(tag, len, expires_at, &mut header)
        {
            Ok(n) => {
                self.next_seq += 1;
                self.push_frame(&[&header[..n], &packet[..len]]);
                if self.schedule.is_some() {
                    self.queued.push(intended_ns);
                }
                self.stats.borrow_mut().on_sent(self.second(now_ns));
                true
            }
            Err(_) => false,
        };
        self.packet = packet;
        sent
    }

    /// Sender: keeps the window full (closed loop) or sends what is due (open loop).
    pub(crate) fn refill(&mut self) {
        // Nothing goes out before the send clock starts (the plan then has its start time).
        if self.role != Role::Sender
            || !self.opened
            || self.plan.send_start_ns == 0
            || self.plan.stopping()
            || (self.plan.rate_per_conn.is_some() && self.schedule.is_none())
        {
            return;
        }
        let now = self.since_start_ns();
        match &mut self.schedule {
            None => {
                let now_ms = unix_ms();
                while self.send_prepare(now, now, now_ms) {}
            }
            Some(schedule) => {
                // What is due now, never what is not yet.
                while self.backlog.len() < BACKLOG_MAX {
                    let Some(intended) = schedule.pop_due(now) else {
                        break;
                    };
                    self.backlog.push_back(intended);
                }
                let now_ms = unix_ms();
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

    /// Open loop: sends on `schedule` from now on.
    pub(crate) fn set_schedule(&mut self, schedule: Schedule) {
        self.schedule = Some(schedule);
    }

    /// Open loop: when the next Prepare is meant to go.
    pub(crate) fn next_send_ns(&self) -> Option<u64> {
        self.schedule.as_ref().map(Schedule::next_ns)
    }

    /// The writer took what was queued: count the send lateness of the Prepares in it.
    fn handed_over(&mut self) {
        if !self.queued.is_empty() {
            let now = self.since_start_ns();
            self.stats
                .borrow_mut()
                .on_handed_over(now, &mut self.queued);
        }
    }

    /// Takes one binary message.
    fn on_message(&mut self, message: &[u8], auth: Option<&PeerAuth>) {
        let mut control = [0u8; CONTROL_LEN_MAX];
        let now_ms = unix_ms();
        if let Some(auth) = auth.filter(|_| self.session.state() == State::AwaitingAuth) {
            match self
                .session
                // No client certificate stands for a peer here: the direct sink asks for none.
                .handle_auth(now_ms, auth, None, None, message, &mut control)
            {
                AuthEvent::Accepted { len, .. } => {
                    self.opened = true;
                    self.push_frame(&[&control[..len]]);
                }
                AuthEvent::Refused { len } => {
                    if len > 0 {
                        self.push_frame(&[&control[..len]]);
                    }
                    self.closing = true;
                }
            }
            return;
        }
        match self.session.handle_message(now_ms, message, &mut control) {
            Event::Opened(_) => self.opened = true,
            Event::Prepare { request_id, ilp } => self.on_prepare(request_id, &message[ilp]),
            Event::Reply { tag, ilp } => self.on_reply(tag, &message[ilp]),
            Event::ReplyError { .. } => self.stats.borrow_mut().errors += 1,
            Event::Respond(len) => self.push_frame(&[&control[..len]]),
            Event::Ignored => {}
            Event::Close => {
                self.failed = !self.opened;
                self.closing = true;
            }
        }
    }

    fn on_reply(&mut self, tag: u64, ilp: &[u8]) {
        let now = self.since_start_ns();
        let index = (tag & 0xffff) as usize;
        sender_reply(
            &self.plan,
            &self.ring,
            &self.stats,
            now,
            tag >> 16,
            index,
            ilp,
        );
    }

    fn on_prepare(&mut self, request_id: u32, ilp: &[u8]) {
        match self.role {
            Role::Sink(sink) => self.stats.borrow_mut().on_sink_received(sink),
            // Not for us to receive; answered all the same, counted only in `sink_received`.
            Role::Sender => self.stats.borrow_mut().sink_received += 1,
        }
        let mut reply = [0u8; SINK_REPLY_LEN_MAX];
        // Counted (and a right Fulfill logged) when the reply is sent.
        let (len, answer) = match Prepare::new_checked(ilp) {
            Ok(p) => sink_answer(&self.plan, &self.ring, &mut self.rng, &p, &mut reply),
            Err(_) => (
                RejectRepr {
                    code: ErrorCode::F01_INVALID_PACKET,
                    triggered_by: None,
                    message: b"",
                    data: &[],
                }
                .emit(&mut reply),
                SinkAnswer::Rejected,
            ),
        };
        let mut header = [0u8; BTP_HEADER_LEN_MAX];
        let n = self
            .session
            .write_reply_header(request_id, len, &mut header);
        if self.plan.sink.delay_ms > 0 {
            let due = self.since_start_ns() / 1_000_000 + self.plan.sink.delay_ms;
            let mut bytes = header[..n].to_vec();
            bytes.extend_from_slice(&reply[..len]);
            self.delayed.push_back((due, bytes, answer));
        } else {
            self.answer_sent(answer);
            self.push_frame(&[&header[..n], &reply[..len]]);
        }
    }

    fn answer_sent(&self, answer: SinkAnswer) {
        if let Role::Sink(sink) = self.role {
            let second = self.second(self.since_start_ns());
            sink_sent(&self.plan, &self.stats, sink, second, answer);
        }
    }

    /// Sink: sends the delayed replies that are due.
    pub(crate) fn release_delayed(&mut self) {
        let now_ms = self.since_start_ns() / 1_000_000;
        while self.delayed.front().is_some_and(|(due, ..)| *due <= now_ms) {
            let (_, bytes, answer) = self.delayed.pop_front().expect("front exists");
            self.answer_sent(answer);
            self.push_frame(&[&bytes]);
        }
        self.wake();
    }

    /// Replaces the plan (once the send clock has started).
    pub(crate) fn set_plan(&mut self, plan: Rc<Plan>) {
        self.plan = plan;
    }

    /// Ends the connection: the writer flushes and closes.
    pub(crate) fn shut(&mut self) {
        self.closing = true;
        self.woken = true;
        self.wake();
    }

    /// Drops the connection on purpose (`--sink-down-at`): its reader and writer tasks are
    /// cancelled, so the socket closes at once, nothing queued or delayed goes out and nothing
    /// more is counted; the run goes on.
    pub(crate) fn drop_link(&mut self) {
        self.closing = true;
        self.delayed.clear();
        for task in self.io.drain(..) {
            task.cancel();
        }
        if self.hot_fd.is_some() {
            // The ring's driver holds the read half: it lets go at its next pass.
            crate::hot::unpark();
        }
    }

    /// The reading side ended (end of stream, an error, a Close, a bad frame): the writer
    /// closes, and a run that is not stopping stops (the peer went away mid-run: keep what
    /// was measured).
    pub(crate) fn reader_ended(&mut self) {
        self.closing = true;
        self.woken = true;
        self.wake();
        if !self.plan.stopping() {
            self.plan.stop.store(true, Ordering::Relaxed);
            self.plan.broken.store(true, Ordering::Relaxed);
        }
    }

    /// Requests still waiting for an answer.
    pub(crate) fn outstanding(&self) -> usize {
        self.session.outstanding()
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }
}

/// Parameters of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) role: Role,
    pub(crate) id: u64,
    pub(crate) username: String,
    pub(crate) token: String,
}

fn read_buffer_len() -> usize {
    1 << 20
}

/// The handshake's end as the error a dial or an accept reports.
fn handshake_failed(error: HeadReadError<ws::HandshakeError>) -> io::Error {
    match error {
        HeadReadError::Io(e) => e,
        HeadReadError::Refused(e) => io::Error::other(e.to_string()),
        HeadReadError::Full => io::Error::other("handshake too long"),
    }
}

/// Dials `url` as a WebSocket client (over TLS with `tls` for `wss://`) and runs a BTP
/// connection on it until the run ends or the peer closes. Returns the connection once it is
/// open (authenticated), or an error.
pub(crate) async fn dial(
    plan: Rc<Plan>,
    ring: Rc<Ring>,
    stats: Rc<RefCell<Stats>>,
    setup: Setup,
    url: &BtpUrl,
    tls: Option<&tls::Client>,
) -> io::Result<Shared> {
    let hostport = url.host_port();
    let mut stream = tls::dial(url, tls).await?;
    let nonce: [u8; ws::NONCE_LEN] =
        (setup.id as u128 ^ 0x5a5a_1234_9876_fedc_0123_4567_89ab_cdef).to_le_bytes();
    let mut request = vec![0u8; ws::upgrade_request_len(&hostport, &url.path)];
    let n = ws::write_upgrade_request(&hostport, &url.path, &nonce, &mut request);
    stream.write_all(&request[..n]).await?;
    let mut buf = ReadBuf::new(read_buffer_len());
    let header_len = buf
        .read_head(&mut stream, ws::HANDSHAKE_LEN_MAX, |b| {
            ws::parse_upgrade_response(b, &nonce)
        })
        .await
        .map_err(handshake_failed)?;
    // Frames may follow the 101 in the same read.
    buf.consume(header_len);
    let session = BtpSession::client(unix_ms(), PeerId(0), 10_000, plan.window.max(1), 16);
    let (conn, sleep) = new_conn(plan, ring, stats, &setup, session, true);
    {
        let mut c = conn.borrow_mut();
        let mut auth =
            vec![0u8; BtpSession::auth_len(setup.username.as_bytes(), setup.token.as_bytes())];
        let n = c
            .session
            .write_auth(setup.username.as_bytes(), setup.token.as_bytes(), &mut auth);
        c.push_frame(&[&auth[..n]]);
    }
    let io = start_io(Rc::clone(&conn), sleep, stream, buf, ws::Role::Client, None);
    conn.borrow_mut().io = io;
    Ok(conn)
}

/// Serves a connection the sender opened to us (`--direct`; TLS already set up by
/// `tls::accept` when the sink has `--sink-cert`): we are the WebSocket server and check the
/// sender's BTP auth.
pub(crate) async fn accept(
    plan: Rc<Plan>,
    ring: Rc<Ring>,
    stats: Rc<RefCell<Stats>>,
    setup: Setup,
    mut stream: Stream,
    auth: Rc<PeerAuth>,
) -> io::Result<Shared> {
    let mut buf = ReadBuf::new(read_buffer_len());
    let (header_len, key) = buf
        .read_head(&mut stream, ws::HANDSHAKE_LEN_MAX, |b| {
            ws::parse_upgrade_request(b).map(|r| r.map(|r| (r.len(), *r.key())))
        })
        .await
        .map_err(handshake_failed)?;
    let mut response = [0u8; ws::UPGRADE_RESPONSE_LEN];
    let n = ws::write_upgrade_response(&key, &mut response);
    stream.write_all(&response[..n]).await?;
    // Frames may follow the request in the same read.
    buf.consume(header_len);
    let session = BtpSession::server(unix_ms(), 10_000, 16, 16);
    let (conn, sleep) = new_conn(plan, ring, stats, &setup, session, false);
    let io = start_io(
        Rc::clone(&conn),
        sleep,
        stream,
        buf,
        ws::Role::Server,
        Some(auth),
    );
    conn.borrow_mut().io = io;
    Ok(conn)
}

fn new_conn(
    plan: Rc<Plan>,
    ring: Rc<Ring>,
    stats: Rc<RefCell<Stats>>,
    setup: &Setup,
    session: BtpSession,
    client: bool,
) -> (Shared, LocalReceiver<()>) {
    let (wake, sleep) = local_channel::new_bounded(1);
    let data_len = plan.data_bytes.clamp(8, DATA_LEN_MAX);
    let destinations = Destinations::new(&plan.destination, plan.destinations);
    let conn = Rc::new(RefCell::new(Conn {
        role: setup.role,
        session,
        mask: client.then(|| MaskRng::new(setup.id.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
        out: Vec::with_capacity(256 * 1024),
        wake,
        woken: false,
        closing: false,
        plan,
        ring,
        stats,
        id: setup.id,
        next_seq: 0,
        data: vec![0; data_len],
        destinations,
        packet: Vec::with_capacity(4096),
        schedule: None,
        backlog: std::collections::VecDeque::new(),
        queued: Vec::new(),
        delayed: std::collections::VecDeque::new(),
        rng: setup.id ^ 0xdead_beef,
        io: Vec::new(),
        hot_fd: None,
        writing: false,
        opened: false,
        failed: false,
    }));
    (conn, sleep)
}

fn start_io(
    conn: Shared,
    sleep: LocalReceiver<()>,
    stream: Stream,
    buf: ReadBuf,
    role: ws::Role,
    auth: Option<Rc<PeerAuth>>,
) -> Vec<JoinHandle<()>> {
    let ring_spin = conn.borrow().plan.ring_spin;
    let fd = match (&stream, ring_spin) {
        (ilp_router::link::tls::MaybeTls::Plain(tcp), Some(_)) => {
            Some(std::os::fd::AsRawFd::as_raw_fd(tcp))
        }
        _ => None,
    };
    let (reader, writer) = futures_lite::io::split(stream);
    let writer = glommio::spawn_local(write_loop(Rc::clone(&conn), writer, sleep)).detach();
    if let (Some(fd), Some(spin)) = (fd, ring_spin) {
        conn.borrow_mut().hot_fd = Some(fd);
        let reading = Frames::new(role, buf, auth);
        match crate::hot::adopt(&conn, fd, Box::new(reader), reading, spin) {
            Ok(()) => return vec![writer],
            Err((reader, reading)) => {
                // No ring on this thread (io_uring refused): glommio reads it.
                conn.borrow_mut().hot_fd = None;
                let reader = glommio::spawn_local(read_loop(conn, reader, reading)).detach();
                return vec![writer, reader];
            }
        }
    }
    let reading = Frames::new(role, buf, auth);
    vec![
        writer,
        glommio::spawn_local(read_loop(conn, Box::new(reader), reading)).detach(),
    ]
}

/// The read half of a connection's stream (the write half is the writer task's).
pub(crate) type Reader = Box<futures_lite::io::ReadHalf<Stream>>;

/// A connection's reading state: the bytes read, and the frames and messages they make.
pub(crate) struct Frames {
    pub(crate) buf: ReadBuf,
    decoder: ws::FrameDecoder,
    assembler: MessageAssembler,
    auth: Option<Rc<PeerAuth>>,
}

impl Frames {
    fn new(role: ws::Role, buf: ReadBuf, auth: Option<Rc<PeerAuth>>) -> Frames {
        Frames {
            buf,
            decoder: ws::FrameDecoder::new(role, 1 << 20),
            assembler: MessageAssembler::new(1 << 20),
            auth,
        }
    }

    /// Hands every whole message in the buffer to the connection, then sends what they
    /// queued (or wakes the writer). False when the connection must stop reading: a bad
    /// frame, a Close, or the connection closing.
    pub(crate) fn handle(&mut self, conn: &Shared) -> bool {
        loop {
            let frame = match self.decoder.decode(self.buf.data_mut()) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return false,
            };
            let len = frame.len;
            match self.assembler.handle_frame(self.buf.data_mut(), &frame) {
                Ok(Message::Binary(bytes)) => {
                    conn.borrow_mut().on_message(bytes, self.auth.as_deref());
                }
                Ok(Message::Ping(p)) => conn.borrow_mut().push_pong(p),
                Ok(Message::Close(_)) | Err(_) => return false,
                Ok(_) => {}
            }
            self.buf.consume(len);
        }
        let mut c = conn.borrow_mut();
        // Answers freed window slots: fill them now, once per batch (closed loop), or send
        // what is already due (open loop), rather than wait for the pacer's next tick.
        c.refill();
        c.wake();
        !c.closing
    }

    /// Makes room for the rest of a partial frame, and for a read worth making.
    pub(crate) fn make_room(&mut self) {
        self.buf
            .compact_if_needed(ws::frame_len_hint(self.buf.data()).max(64 * 1024));
    }
}

async fn read_loop(conn: Shared, mut reader: Reader, mut reading: Frames) {
    while reading.handle(&conn) {
        reading.make_room();
        match reading.buf.read_from(&mut reader).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    conn.borrow_mut().reader_ended();
}

async fn write_loop<W: AsyncWrite + Unpin>(conn: Shared, mut writer: W, sleep: LocalReceiver<()>) {
    ilp_router::shard::write_queued(&mut writer, &sleep, |batch| {
        let mut c = conn.borrow_mut();
        // Called again only once the last batch is written.
        std::mem::swap(&mut c.out, batch);
        c.writing = !batch.is_empty();
        c.handed_over();
        c.closing
    })
    .await;
    let _ = writer.close().await;
}

/// Waits (bounded) until `done` holds, checking every millisecond.
pub(crate) async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    true
}
