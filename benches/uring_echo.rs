//! glommio's sockets against io_uring driven directly, for the same work: a TCP echo of
//! 64-byte messages on loopback, the socket half of the router's hot path (a message is
//! received, handed on, and sent). Every server runs one pinned thread that spins 50 µs
//! before it parks (the router's default `spin_us`); the clients run on another CPU.
//!
//! - **glommio**: a `LocalExecutor` and a task per connection that reads into a buffer and
//!   writes what it read (`glommio::net::TcpStream`, as the router's links do).
//! - **io_uring**: the `io-uring` crate on one ring: a multishot receive per connection that
//!   stays armed, into a ring of provided buffers; each message is sent from the buffer it
//!   arrived in (a `Send` entry, submitted with the next wait), and the buffer goes back to the
//!   ring when its send completes.
//! - **poll**: the router's hot path (`src/shard/hot.rs`): a multishot poll per connection that
//!   stays armed, then `recv` and `send` system calls; the thread spins on the completion queue
//!   without entering the kernel.
//! - **poll, cooperative**: the same on a ring set up with `COOP_TASKRUN | TASKRUN_FLAG`: a
//!   completion does not interrupt the spinning thread (in a virtual machine, an
//!   inter-processor interrupt per message); the thread enters the kernel when the ring's flag
//!   says task work waits. It parks on its own ring. (The router cannot use this yet: it parks
//!   through glommio's ring, and a thread asleep there is not woken for this ring's task
//!   work; see BENCHMARKS.md.)
//! - **poll, deferred**: the same on a ring with `DEFER_TASKRUN | TASKRUN_FLAG`, the router's
//!   (the task work waits until the thread asks for completions).
//! - **receive, then `send`**: a multishot receive into provided buffers (the data comes with
//!   the completion, no `recv` call), each message sent at once with a `send` call from its
//!   buffer; on a plain and on a deferred ring.
//!
//! A park on the ring lasts 100 ms at most. One that ran out and then finds completions
//! counts as a wake-up missed (the completion, or the task work that posts it, was there and
//! the thread slept on); after one that ran out with nothing the server looks at each
//! connection for its end (a peek that reads 0 bytes) and counts a connection whose client
//! had closed with no completion saying so. Both are "ends or wake-ups missed". On Linux 6.18
//! in a virtual machine, with a park that had no time limit, the poll servers now and then
//! slept on through the end of a client that closed the moment it had its last answer.
//!
//! Three loads each: one connection with one message in flight (round trip time), one
//! connection at a fixed 10 000 messages/s, and 4 connections each writing 32 messages at once
//! and reading them back (throughput: the server is the busy side). Reported: messages/s, round trip p50/p99, the server's CPU time per message
//! (its thread's CPU clock), for io_uring its `io_uring_enter` calls per message (glommio's
//! are not visible from here; `strace -c` counts them), and the ends not reported.
//!
//!     cargo bench --bench uring_echo -- [--seconds 3] [--server-cpu 0] [--client-cpu 1]
//!         [--rounds 1] [--only "Poll { ring: Defer }|RecvSend"]

use io_uring::{cqueue, opcode, types, IoUring};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MESSAGE: usize = 64;
const SPIN: Duration = Duration::from_micros(50);
/// `io_uring_enter` flag: wait for (and first run the task work of) completions.
const IORING_ENTER_GETEVENTS: u32 = 1;

#[derive(Debug, Clone, Copy)]
enum Server {
    Glommio,
    Uring,
    /// The router's hot path (`src/shard/hot.rs`): a multishot poll per connection, then
    /// `recv` and `send` system calls; spins on the completion queue without entering the
    /// kernel. `ring`: how its task work reaches the thread.
    Poll {
        ring: Ring,
    },
    /// A multishot receive per connection into provided buffers (the data comes with the
    /// completion: no `recv` call), each message sent at once with a `send` system call from
    /// the buffer it arrived in, which then goes straight back to the ring.
    RecvSend {
        ring: Ring,
    },
}

/// How a ring's task work reaches the thread that spins on it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ring {
    /// An interrupt per completion (the default).
    Plain,
    /// `COOP_TASKRUN | TASKRUN_FLAG`: no interrupt; the flag says when to enter the kernel.
    Coop,
    /// `DEFER_TASKRUN | TASKRUN_FLAG` (the router's): the task work waits until the thread
    /// asks for completions.
    Defer,
}

impl Ring {
    fn build(self) -> IoUring {
        let mut builder = IoUring::builder();
        match self {
            Ring::Plain => {}
            Ring::Coop => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            Ring::Defer => {
                builder
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
            }
        }
        builder.build(1024).expect("io_uring")
    }

    /// Runs the ring's waiting task work when its flag says some waits; true if it did.
    fn run_task_work(self, ring: &mut IoUring) -> bool {
        if self == Ring::Plain || !ring.submission().taskrun() {
            return false;
        }
        // SAFETY: no submissions, no argument: runs the ring's task work and returns.
        unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(0, 0, IORING_ENTER_GETEVENTS, None)
        }
        .unwrap();
        true
    }
}

#[derive(Debug, Clone, Copy)]
enum Load {
    /// One connection, one message in flight.
    PingPong,
    /// One connection, messages sent at this rate.
    Rate(u32),
    /// Connections × messages in flight on each.
    Window(usize, usize),
}

impl Load {
    fn connections(self) -> usize {
        match self {
            Load::PingPong | Load::Rate(_) => 1,
            Load::Window(connections, _) => connections,
        }
    }

    fn name(self) -> String {
        match self {
            Load::PingPong => "1 connection, 1 in flight".into(),
            Load::Rate(rate) => format!("1 connection, {rate}/s"),
            Load::Window(c, w) => format!("{c} connections x {w} at once"),
        }
    }
}

/// What the server thread reports when every connection has closed.
struct ServerEnd {
    cpu: Duration,
    enters: Option<u64>,
    /// Connections whose end no completion reported ([`Open::sweep`]), and parks that ran
    /// out with completions there ([`Open::unwoken`]).
    missed: u64,
}

fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to this live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn pin(cpu: usize) {
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu }),
        "cannot pin to CPU {cpu}"
    );
}

/// Starts a server for `connections` connections; returns its address and its end.
fn start_server(
    server: Server,
    connections: usize,
    cpu: usize,
) -> (SocketAddr, mpsc::Receiver<ServerEnd>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (end_tx, end_rx) = mpsc::channel();
    match server {
        Server::Glommio => {
            std::thread::spawn(move || {
                let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
                    .spin_before_park(SPIN)
                    .make()
                    .expect("glommio executor");
                executor.run(async move {
                    let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    let start = thread_cpu();
                    let mut tasks = Vec::new();
                    for _ in 0..connections {
                        let stream = listener.accept().await.unwrap();
                        stream.set_nodelay(true).unwrap();
                        tasks.push(glommio::spawn_local(glommio_echo(stream)));
                    }
                    for task in tasks {
                        task.await;
                    }
                    let _ = end_tx.send(ServerEnd {
                        cpu: thread_cpu() - start,
                        enters: None,
                        missed: 0,
                    });
                });
            });
        }
        Server::Uring | Server::Poll { .. } | Server::RecvSend { .. } => {
            std::thread::spawn(move || {
                pin(cpu);
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let streams: Vec<TcpStream> = (0..connections)
                    .map(|_| {
                        let (s, _) = listener.accept().unwrap();
                        s.set_nodelay(true).unwrap();
                        s.set_nonblocking(true).unwrap();
                        s
                    })
                    .collect();
                let start = thread_cpu();
                let (enters, missed) = match server {
                    Server::Poll { ring } => poll_echo(&streams, ring),
                    Server::RecvSend { ring } => recv_send_echo(&streams, ring),
                    _ => uring_echo(&streams),
                };
                let _ = end_tx.send(ServerEnd {
                    cpu: thread_cpu() - start,
                    enters: Some(enters),
                    missed,
                });
            });
        }
    }
    (addr_rx.recv().unwrap(), end_rx)
}

async fn glommio_echo(mut stream: glommio::net::TcpStream) {
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Provided buffers: how many, and their size.
const BUFFERS: u16 = 256;
const BUFFER_LEN: usize = 4096;
const GROUP: u16 = 0;
/// `user_data` of a receive: the connection index. Of a send: this bit, the buffer id (bits
/// 48..63), the offset sent from (32..48), the length (16..32) and the connection (0..16).
const SEND: u64 = 1 << 63;

fn send_data(i: usize, bid: u16, offset: u32, len: u32) -> u64 {
    SEND | u64::from(bid) << 48 | u64::from(offset) << 32 | u64::from(len) << 16 | i as u64
}

/// The ring of provided buffers: page-aligned entries and the buffers behind them.
struct BufRing {
    entries: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    memory: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring) -> BufRing {
        let layout = std::alloc::Layout::from_size_align(
            usize::from(BUFFERS) * size_of::<types::BufRingEntry>(),
            4096,
        )
        .unwrap();
        // SAFETY: a non-zero size; zeroed, as the kernel expects a fresh ring.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        assert!(!entries.is_null());
        let mut ring_buffers = BufRing {
            entries,
            layout,
            memory: vec![0u8; usize::from(BUFFERS) * BUFFER_LEN],
            tail: 0,
        };
        // SAFETY: the entries stay allocated (and unmoved) until the ring is dropped, after the
        // io_uring that uses them.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0)
                .expect("register_buf_ring (kernel 5.19 or later)");
        }
        for bid in 0..BUFFERS {
            ring_buffers.give(bid);
        }
        ring_buffers
    }

    fn buffer(&self, bid: u16) -> *const u8 {
        self.memory[usize::from(bid) * BUFFER_LEN..].as_ptr()
    }

    /// Hands buffer `bid` (back) to the kernel.
    fn give(&mut self, bid: u16) {
        let index = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `index` is within the ring; the kernel reads the entry only once the tail
        // passes it, which the release store below publishes.
        unsafe {
            let entry = &mut *self.entries.add(index);
            entry.set_addr(self.buffer(bid) as u64);
            entry.set_len(BUFFER_LEN as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.entries).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) }
    }
}

/// A multishot receive on connection `i`'s socket `fd`, into the provided buffers.
fn recv_multi(i: usize, fd: i32) -> io_uring::squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), GROUP)
        .build()
        .user_data(i as u64)
}

/// Queues `entry` for every connection.
fn push_each(
    ring: &mut IoUring,
    streams: &[TcpStream],
    entry: impl Fn(usize, i32) -> io_uring::squeue::Entry,
) {
    for (i, s) in streams.iter().enumerate() {
        // SAFETY: the entry refers to a socket that outlives the ring's use of it.
        unsafe { ring.submission().push(&entry(i, s.as_raw_fd())).unwrap() };
    }
}

/// The io_uring echo loop; returns its `io_uring_enter` calls.
fn uring_echo(streams: &[TcpStream]) -> (u64, u64) {
    let mut ring = IoUring::new(1024).expect("io_uring");
    let mut buffers = BufRing::new(&ring);
    let mut enters = 0u64;
    let recv = recv_multi;
    push_each(&mut ring, streams, recv);
    let mut open = Open::new(streams.len());
    let mut completions = Vec::with_capacity(1024);
    while open.left > 0 {
        // Spin on the completion queue for SPIN before waiting in the kernel.
        enters += 1;
        ring.submit().unwrap();
        let spin_until = Instant::now() + SPIN;
        while ring.completion().is_empty() && Instant::now() < spin_until {
            std::hint::spin_loop();
        }
        let timed_out = take_completions(&mut ring, &mut enters, &mut completions);
        open.after_park(timed_out, &completions, streams);
        for &(data, result, flags) in &completions {
            let i = (data & 0xffff) as usize;
            let fd = streams[i].as_raw_fd();
            if data & SEND != 0 {
                let bid = ((data >> 48) & 0x7fff) as u16;
                let (offset, len) = (
                    ((data >> 32) & 0xffff) as u32,
                    ((data >> 16) & 0xffff) as u32,
                );
                let sent = offset + result.max(0) as u32;
                if result > 0 && sent < len {
                    // A short send: the rest from the same buffer.
                    let entry = opcode::Send::new(
                        types::Fd(fd),
                        // SAFETY: within the buffer, which stays out of the ring until sent.
                        unsafe { buffers.buffer(bid).add(sent as usize) },
                        len - sent,
                    )
                    .build()
                    .user_data(send_data(i, bid, sent, len));
                    // SAFETY: as above.
                    unsafe { ring.submission().push(&entry).unwrap() };
                } else {
                    buffers.give(bid);
                }
                continue;
            }
            if result <= 0 {
                if result == -libc::ENOBUFS {
                    // The buffers ran out (all in flight): receive again.
                    // SAFETY: as above.
                    unsafe { ring.submission().push(&recv(i, fd)).unwrap() };
                    continue;
                }
                open.close(i);
                continue;
            }
            let bid = cqueue::buffer_select(flags).expect("a provided buffer");
            let len = result as u32;
            let entry = opcode::Send::new(types::Fd(fd), buffers.buffer(bid), len)
                .build()
                .user_data(send_data(i, bid, 0, len));
            // SAFETY: the buffer stays out of the ring until its send completes.
            unsafe { ring.submission().push(&entry).unwrap() };
            if !cqueue::more(flags) {
                // SAFETY: as above.
                unsafe { ring.submission().push(&recv(i, fd)).unwrap() };
            }
        }
    }
    (enters, open.missed + open.unwoken)
}

/// Parks on the ring when the spin found nothing (100 ms at most), then takes its
/// completions. Returns whether the park ran out (ETIME): then the completions taken, if any,
/// were there without waking the thread.
fn take_completions(
    ring: &mut IoUring,
    enters: &mut u64,
    completions: &mut Vec<(u64, i32, u32)>,
) -> bool {
    let mut timed_out = false;
    if ring.completion().is_empty() {
        *enters += 1;
        let wait = types::Timespec::new().nsec(100_000_000);
        let args = types::SubmitArgs::new().timespec(&wait);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => timed_out = true,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
    }
    completions.clear();
    completions.extend(
        ring.completion()
            .map(|c| (c.user_data(), c.result(), c.flags())),
    );
    timed_out
}

/// Spins on the completion queue for [`SPIN`] (running the task work the ring flags), then
/// parks if it found nothing; as [`take_completions`].
fn spin_then_take(
    ring: &mut IoUring,
    kind: Ring,
    enters: &mut u64,
    completions: &mut Vec<(u64, i32, u32)>,
) -> bool {
    let spin_until = Instant::now() + SPIN;
    loop {
        if kind.run_task_work(ring) {
            *enters += 1;
        }
        if !ring.completion().is_empty() || Instant::now() >= spin_until {
            break;
        }
        std::hint::spin_loop();
    }
    take_completions(ring, enters, completions)
}

/// The server's connections still open, and the ends its poll did not report.
struct Open {
    closed: Vec<bool>,
    left: usize,
    /// Connections found at their end (the client closed) by [`Open::sweep`] after a park
    /// ran out: the FIN came, and no completion said so.
    missed: u64,
    /// Parks that ran out (100 ms) and then had completions: posted (or posted by the wait's
    /// own task work as it returned) without the sleeping thread being woken.
    unwoken: u64,
}

impl Open {
    fn new(n: usize) -> Open {
        Open {
            closed: vec![false; n],
            left: n,
            missed: 0,
            unwoken: 0,
        }
    }

    fn close(&mut self, i: usize) {
        if !std::mem::replace(&mut self.closed[i], true) {
            self.left -= 1;
        }
    }

    /// After a park: one that ran out finds the ends no completion reported, or counts the
    /// completions it found as a wake-up missed.
    fn after_park(
        &mut self,
        timed_out: bool,
        completions: &[(u64, i32, u32)],
        streams: &[TcpStream],
    ) {
        if timed_out {
            if completions.is_empty() {
                self.sweep(streams);
            } else {
                self.unwoken += 1;
            }
        }
    }

    /// After 100 ms with no completion: a connection whose client has closed is closed here
    /// (and counted), where its completion never came.
    fn sweep(&mut self, streams: &[TcpStream]) {
        for (i, s) in streams.iter().enumerate() {
            let mut byte = 0u8;
            // SAFETY: peeks at most one byte into a live local.
            let n = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    (&mut byte as *mut u8).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n == 0 && !self.closed[i] {
                self.missed += 1;
                self.close(i);
            }
        }
    }
}

/// The poll-then-read echo loop (the router's model); returns its `io_uring_enter` calls.
fn poll_echo(streams: &[TcpStream], kind: Ring) -> (u64, u64) {
    let mut ring = kind.build();
    let mut enters = 0u64;
    let poll = |i: usize, fd: i32| {
        opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(i as u64)
    };
    for (i, s) in streams.iter().enumerate() {
        // SAFETY: the entry refers to a socket that outlives the ring's use of it.
        unsafe { ring.submission().push(&poll(i, s.as_raw_fd())).unwrap() };
    }
    enters += 1;
    ring.submit().unwrap();
    let mut open = Open::new(streams.len());
    let mut buf = vec![0u8; 4096];
    let mut completions = Vec::with_capacity(1024);
    while open.left > 0 {
        let timed_out = spin_then_take(&mut ring, kind, &mut enters, &mut completions);
        open.after_park(timed_out, &completions, streams);
        for &(i, result, flags) in &completions {
            let i = i as usize;
            let fd = streams[i].as_raw_fd();
            if result < 0 {
                open.close(i);
                continue;
            }
            // SAFETY: reads into our buffer, its length at most.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n == 0 {
                open.close(i);
                continue;
            }
            if n > 0 {
                let mut sent = 0;
                while sent < n as usize {
                    // SAFETY: sends from our buffer, within what was read.
                    let m = unsafe {
                        libc::send(
                            fd,
                            buf[sent..].as_ptr().cast(),
                            n as usize - sent,
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    if m <= 0 {
                        break;
                    }
                    sent += m as usize;
                }
            }
            if !cqueue::more(flags) {
                // SAFETY: as above.
                unsafe { ring.submission().push(&poll(i, fd)).unwrap() };
                enters += 1;
                ring.submit().unwrap();
            }
        }
    }
    (enters, open.missed + open.unwoken)
}

/// Multishot receive into provided buffers, `send` calls at once; returns its
/// `io_uring_enter` calls.
fn recv_send_echo(streams: &[TcpStream], kind: Ring) -> (u64, u64) {
    let mut ring = kind.build();
    let mut buffers = BufRing::new(&ring);
    let mut enters = 0u64;
    let recv = recv_multi;
    push_each(&mut ring, streams, recv);
    enters += 1;
    ring.submit().unwrap();
    let mut open = Open::new(streams.len());
    let mut completions = Vec::with_capacity(1024);
    while open.left > 0 {
        let timed_out = spin_then_take(&mut ring, kind, &mut enters, &mut completions);
        open.after_park(timed_out, &completions, streams);
        let mut resubmit = false;
        for &(i, result, flags) in &completions {
            let i = i as usize;
            let fd = streams[i].as_raw_fd();
            if result <= 0 {
                if result == -libc::ENOBUFS {
                    // SAFETY: as above.
                    unsafe { ring.submission().push(&recv(i, fd)).unwrap() };
                    resubmit = true;
                    continue;
                }
                open.close(i);
                continue;
            }
            let bid = cqueue::buffer_select(flags).expect("a provided buffer");
            let mut sent = 0;
            while sent < result as usize {
                // SAFETY: sends from the provided buffer, within what was received; the
                // buffer is out of the kernel's hands until `give` below.
                let m = unsafe {
                    libc::send(
                        fd,
                        buffers.buffer(bid).add(sent).cast(),
                        result as usize - sent,
                        libc::MSG_NOSIGNAL,
                    )
                };
                if m <= 0 {
                    break;
                }
                sent += m as usize;
            }
            buffers.give(bid);
            if !cqueue::more(flags) {
                // SAFETY: as above.
                unsafe { ring.submission().push(&recv(i, fd)).unwrap() };
                resubmit = true;
            }
        }
        if resubmit {
            enters += 1;
            ring.submit().unwrap();
        }
    }
    (enters, open.missed + open.unwoken)
}

/// Runs `load` against `addr` for `seconds`; returns (messages, round trips in ns).
fn client(addr: SocketAddr, load: Load, seconds: u64, cpu: usize) -> (u64, Vec<u64>) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..load.connections())
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                pin(cpu);
                let mut stream = stream;
                let out = [7u8; MESSAGE];
                let mut back = [0u8; MESSAGE];
                let mut rtts = Vec::new();
                let mut count = 0u64;
                match load {
                    Load::PingPong | Load::Rate(_) => {
                        let interval = match load {
                            Load::Rate(rate) => Duration::from_secs(1) / rate,
                            _ => Duration::ZERO,
                        };
                        let mut next = Instant::now();
                        while Instant::now() < deadline {
                            while Instant::now() < next {
                                std::hint::spin_loop();
                            }
                            next += interval;
                            let sent = Instant::now();
                            stream.write_all(&out).unwrap();
                            stream.read_exact(&mut back).unwrap();
                            rtts.push(sent.elapsed().as_nanos() as u64);
                            count += 1;
                        }
                    }
                    Load::Window(_, window) => {
                        // `window` messages written at once and read back at once: the
                        // client's system calls per message shrink, so the server is the
                        // side that is busy.
                        let out = vec![7u8; MESSAGE * window];
                        let mut back = vec![0u8; MESSAGE * window];
                        while Instant::now() < deadline {
                            stream.write_all(&out).unwrap();
                            stream.read_exact(&mut back).unwrap();
                            count += window as u64;
                        }
                    }
                }
                (count, rtts)
            })
        })
        .collect();
    let mut total = 0;
    let mut all = Vec::new();
    for t in threads {
        let (count, rtts) = t.join().unwrap();
        total += count;
        all.extend(rtts);
    }
    (total, all)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let mut seconds = 3u64;
    let mut server_cpu = 0usize;
    let mut client_cpu = 1usize;
    let mut only: Option<String> = None;
    let mut rounds = 1usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--seconds" => seconds = value().expect("--seconds N") as u64,
            "--server-cpu" => server_cpu = value().expect("--server-cpu N"),
            "--client-cpu" => client_cpu = value().expect("--client-cpu N"),
            "--only" => only = Some(args.get(i + 1).expect("--only WORDS").clone()),
            "--rounds" => rounds = value().expect("--rounds N"),
            _ => {
                i += 1; // `cargo bench` adds --bench
                continue;
            }
        }
        i += 2;
    }
    if IoUring::new(8).is_err() {
        eprintln!("uring_echo: io_uring is not available here");
        return;
    }
    println!(
        "| server | load | messages/s | p50 µs | p99 µs | server CPU µs/message | io_uring_enter/message | ends or wake-ups missed |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for load in [Load::PingPong, Load::Rate(10_000), Load::Window(4, 32)]
        .into_iter()
        .flat_map(|load| std::iter::repeat_n(load, rounds))
    {
        for server in [
            Server::Glommio,
            Server::Uring,
            Server::Poll { ring: Ring::Plain },
            Server::Poll { ring: Ring::Coop },
            Server::Poll { ring: Ring::Defer },
            Server::RecvSend { ring: Ring::Plain },
            Server::RecvSend { ring: Ring::Defer },
        ] {
            // `--only "Poll { ring: Defer }|RecvSend"`: the servers and loads whose names
            // contain one of the words.
            let name = format!("{server:?} {}", load.name());
            if only
                .as_deref()
                .is_some_and(|o| !o.split('|').any(|w| name.contains(w)))
            {
                continue;
            }
            let (addr, end) = start_server(server, load.connections(), server_cpu);
            let (messages, mut rtts) = client(addr, load, seconds, client_cpu);
            let end = end
                .recv_timeout(Duration::from_secs(600))
                .expect("server ended");
            rtts.sort_unstable();
            let per = |d: f64| d / messages.max(1) as f64;
            println!(
                "| {server:?} | {} | {:.0} | {:.1} | {:.1} | {:.3} | {} | {} |",
                load.name(),
                messages as f64 / seconds as f64,
                percentile(&rtts, 0.5),
                percentile(&rtts, 0.99),
                per(end.cpu.as_secs_f64() * 1e6),
                end.enters
                    .map_or("–".to_owned(), |e| format!("{:.2}", per(e as f64))),
                end.missed,
            );
        }
    }
}
