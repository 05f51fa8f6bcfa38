//! `--relay-cpu`: with `--direct`, a hop that only copies bytes between the sender and the
//! sink: one thread on a CPU of its own accepts the senders' TCP connections, dials the sink
//! for each and copies whatever either side sends to the other, spinning (as a router's core
//! does while packets come).
//!
//! Why: the latency a router adds over `--direct` includes what any hop costs on this machine
//! (two more TCP sends and receives per round trip, a second CPU to cross, that CPU's
//! stalls), none of which the router's code can remove. The same run through this relay
//! measures that part alone: the router's own share is its figure less the relay's, and the
//! relay's busy CPU per round trip (`relay_busy_cpu_us_per_packet`, the time of its passes
//! that found something) is what copying alone costs here (counted otherwise than the
//! router's, from its idle spin). BENCHMARKS.md, "A hop that only copies bytes".
//!
//! It reads readiness as the router's cores do: a multishot poll per socket on an io_uring
//! ring of its own with deferred task work (`ilp_router::shard::deferred_ring`), looked at
//! as it spins; a ready socket is read with nonblocking `recv` until a read comes back short,
//! and what it read is written at once with `send`. So the relay is the router's hot path
//! with nothing between the read and the write. What a socket does not take waits in that
//! direction's buffer, and that direction reads nothing more until it is written: a slow
//! reader slows its writer, nothing grows. End of stream on one side is passed on as a
//! shutdown of the other's writing; an error closes both.
//!
//! | bound | value |
//! | --- | --- |
//! | connections relayed at once | [`PAIRS_MAX`] (more are closed at accept) |
//! | reads of one ready socket per pass | [`READS_PER_PASS`], fewer when one is short or the other side is full |
//! | bytes held per direction | [`CHUNK`] (one read) |
//! | the ring | [`RING_ENTRIES`] submissions; a full queue is submitted and retried |
//! | spinning | always, until the run ends (`finish`) |

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ilp_router::shard::read_poll;
use io_uring::{cqueue, opcode, squeue, IoUring};

/// Connections relayed at once.
pub(crate) const PAIRS_MAX: usize = 64;
/// The most one read takes, and so the most a direction holds.
const CHUNK: usize = 64 * 1024;
/// Reads of one ready socket per pass (a stream that fills every read leaves room for the
/// others).
const READS_PER_PASS: usize = 4;
/// Submission queue entries of the relay's ring.
const RING_ENTRIES: u32 = 256;
/// `user_data` of the listener's poll (a pair's are `generation << 8 | side`).
const LISTENER: u64 = u64::MAX;
/// `user_data` of a cancellation.
const CANCEL: u64 = u64::MAX - 1;

/// The run's relay: its thread, and what `run` reads of it.
pub(crate) struct Relay {
    /// Where the senders dial.
    pub(crate) addr: SocketAddr,
    /// The relay thread's id (its CPU time: `/proc/self/task/TID/schedstat`); 0 until known.
    tid: Arc<AtomicI32>,
    /// Nanoseconds spent in passes that moved bytes (the rest of its CPU time is spinning
    /// with nothing to do).
    busy_ns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<io::Result<u64>>>>,
}

/// The process's one relay (`--relay-cpu` takes one load thread).
static RELAY: Mutex<Option<Arc<Relay>>> = Mutex::new(None);

/// Starts the relay on `cpu`, forwarding every connection to `to`: it listens on a free
/// loopback port (`Relay::addr`) before this returns.
pub(crate) fn start(cpu: usize, to: SocketAddr) -> io::Result<Arc<Relay>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tid = Arc::new(AtomicI32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let busy_ns = Arc::new(AtomicU64::new(0));
    let thread = {
        let (tid, stop, busy) = (Arc::clone(&tid), Arc::clone(&stop), Arc::clone(&busy_ns));
        std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
                ilp_router::shard::keep_thread_to(&[cpu])?;
                relay(&listener, to, &stop, &busy)
            })?
    };
    let relay = Arc::new(Relay {
        addr,
        tid,
        busy_ns,
        stop,
        thread: Mutex::new(Some(thread)),
    });
    *RELAY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&relay));
    Ok(relay)
}

/// What the process's relay thread has spent so far, in seconds: its CPU time, and the part
/// of it spent in passes that moved bytes (busy, as against spinning idle); `None` without a
/// relay (or before its thread started).
pub(crate) fn cpu_s() -> Option<(f64, f64)> {
    let relay = RELAY.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
    let tid = relay.tid.load(Ordering::Relaxed);
    if tid == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    let busy = relay.busy_ns.load(Ordering::Relaxed);
    Some((ns as f64 / 1e9, busy as f64 / 1e9))
}

/// Stops the process's relay, if it has one, and waits for its thread: `Err` says why the
/// relay failed (its CPU refused, its listener broken); `Ok` the bytes it copied.
pub(crate) fn finish() -> Option<io::Result<u64>> {
    let relay = RELAY.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    relay.stop.store(true, Ordering::Relaxed);
    let thread = relay
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()?;
    Some(
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the relay thread panicked"))),
    )
}

/// One direction of a relayed connection.
struct Flow {
    /// Read but not yet written: `held[sent..]`.
    held: Vec<u8>,
    sent: usize,
    /// Its source may have more to read (its poll fired, and no read since came back short).
    ready: bool,
    /// Its source's poll reported the end of stream (or an error): read until a read returns
    /// 0 (`ilp_router::shard::poll_reports_end`).
    hup: bool,
    /// The reading side ended (its end of stream was passed on) or failed.
    done: bool,
}

/// A sender's connection (`a`) and the relay's to the sink (`b`).
struct Pair {
    a: TcpStream,
    b: TcpStream,
    /// a → b, b → a.
    flows: [Flow; 2],
    /// Its polls' `user_data`: `tag | side` (a 0, b 1).
    tag: u64,
    /// Which side's poll is armed.
    armed: [bool; 2],
    failed: bool,
}

impl Pair {
    fn fd(&self, side: usize) -> i32 {
        if side == 0 {
            self.a.as_raw_fd()
        } else {
            self.b.as_raw_fd()
        }
    }

    fn over(&self) -> bool {
        self.failed || self.flows[0].done && self.flows[1].done
    }
}

/// Pushes `entry`, submitting a full queue first; false when there is still no room.
fn push(ring: &mut IoUring, entry: &squeue::Entry) -> bool {
    for _ in 0..2 {
        // SAFETY: every entry pushed here is a poll of a socket held open until its poll is
        // cancelled, or a cancellation, which refers to no memory.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return true;
        }
        let _ = ring.submit();
    }
    false
}

/// Spins until `stop`: accepts, dials `to` for each, copies; adds the time of every pass
/// that found something to `busy` (ns). Returns the bytes copied.
fn relay(
    listener: &TcpListener,
    to: SocketAddr,
    stop: &AtomicBool,
    busy: &AtomicU64,
) -> io::Result<u64> {
    let (mut ring, _wake) = ilp_router::shard::deferred_ring(RING_ENTRIES)?;
    let mut pairs: Vec<Pair> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0u64;
    let mut generation = 0u64;
    let mut listener_armed = false;
    let mut events: Vec<(u64, i32, u32)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let pass = Instant::now();
        if !listener_armed {
            listener_armed = push(&mut ring, &read_poll(listener.as_raw_fd(), LISTENER));
        }
        ilp_router::shard::run_task_work(&mut ring);
        events.clear();
        events.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut worked = !events.is_empty();
        for &(tag, result, flags) in &events {
            if tag == CANCEL {
                continue;
            }
            if tag == LISTENER {
                listener_armed &= cqueue::more(flags) && result >= 0;
                if result < 0 && result != -libc::ECANCELED {
                    return Err(io::Error::from_raw_os_error(-result));
                }
                accept(listener, to, &mut pairs, &mut generation)?;
                continue;
            }
            let side = (tag & 1) as usize;
            let Some(pair) = pairs.iter_mut().find(|p| p.tag == tag & !0xff) else {
                continue;
            };
            if !cqueue::more(flags) || result < 0 {
                pair.armed[side] = false;
            }
            pair.failed |= result < 0 && result != -libc::ECANCELED;
            pair.flows[side].ready = true;
            pair.flows[side].hup |= ilp_router::shard::poll_reports_end(result);
        }
        for pair in &mut pairs {
            let before = copied;
            copied += pump(pair, 0, &mut buf);
            copied += pump(pair, 1, &mut buf);
            worked |= copied > before;
            for side in 0..2 {
                if !pair.armed[side] && !pair.over() && !pair.flows[side].done {
                    pair.armed[side] =
                        push(&mut ring, &read_poll(pair.fd(side), pair.tag | side as u64));
                }
            }
        }
        for pair in pairs.iter().filter(|p| p.over()) {
            for side in 0..2 {
                if pair.armed[side] {
                    let cancel = opcode::AsyncCancel::new(pair.tag | side as u64)
                        .build()
                        .user_data(CANCEL);
                    // Not cancelled (a full queue twice), the poll ends with the ring.
                    push(&mut ring, &cancel);
                }
            }
        }
        pairs.retain(|p| !p.over());
        if !ring.submission().is_empty() {
            let _ = ring.submit();
        }
        if worked {
            busy.fetch_add(pass.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
    Ok(copied)
}

/// Takes every waiting connection: dials `to` for each (over the limit, or when the dial
/// fails, the connection is closed: its sender sees the end of stream).
fn accept(
    listener: &TcpListener,
    to: SocketAddr,
    pairs: &mut Vec<Pair>,
    generation: &mut u64,
) -> io::Result<()> {
    loop {
        let a = match listener.accept() {
            Ok((a, _)) => a,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A connection reset before it was accepted, too many files: not the
            // listener's end; its poll fires again for the next.
            Err(e) if e.raw_os_error() != Some(libc::EBADF) => {
                eprintln!("ilp-loadgen: relay: accept: {e}");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if pairs.len() >= PAIRS_MAX {
            eprintln!("ilp-loadgen: relay: {PAIRS_MAX} connections relayed already; one closed");
            continue;
        }
        let b = match TcpStream::connect(to) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("ilp-loadgen: relay: dialling the sink at {to}: {e}");
                continue;
            }
        };
        for s in [&a, &b] {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
        }
        let flow = || Flow {
            held: Vec::with_capacity(CHUNK),
            sent: 0,
            ready: true,
            hup: false,
            done: false,
        };
        *generation += 1;
        pairs.push(Pair {
            a,
            b,
            flows: [flow(), flow()],
            tag: *generation << 8,
            armed: [false; 2],
            failed: false,
        });
    }
}

/// Moves what direction `d` (0: a → b, 1: b → a) holds, then, when its source is ready and
/// nothing is held, reads it and writes what came. Returns the bytes written.
fn pump(pair: &mut Pair, d: usize, buf: &mut [u8]) -> u64 {
    let (src, dst) = if d == 0 {
        (&pair.a, &pair.b)
    } else {
        (&pair.b, &pair.a)
    };
    let flow = &mut pair.flows[d];
    let mut written = 0u64;
    // Each turn writes what is held, then reads once more: the last turn only writes.
    for turn in 0..=READS_PER_PASS {
        while flow.sent < flow.held.len() {
            let rest = &flow.held[flow.sent..];
            // SAFETY: writes from `rest`, `rest.len()` bytes at most.
            let n = unsafe {
                libc::send(
                    dst.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                flow.sent += n as usize;
                written += n as u64;
                continue;
            }
            let e = io::Error::last_os_error();
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                pair.failed = true;
            }
            // The rest waits for the next pass: nothing more is read meanwhile.
            return written;
        }
        if flow.done || !flow.ready || turn == READS_PER_PASS {
            return written;
        }
        flow.held.clear();
        flow.sent = 0;
        // SAFETY: reads into `buf`, `buf.len()` bytes at most.
        let n = unsafe {
            libc::recv(
                src.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => {
                flow.done = true;
                let _ = dst.shutdown(Shutdown::Write);
                return written;
            }
            n if n > 0 => {
                // A short read emptied the socket; what comes next fires its poll again.
                flow.ready = n as usize == buf.len() || flow.hup;
                flow.held.extend_from_slice(&buf[..n as usize]);
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => flow.ready = false,
                    io::ErrorKind::Interrupted => {}
                    _ => pair.failed = true,
                }
                return written;
            }
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// A server that answers every connection by echoing what it reads, upper-cased, until
    /// the end of stream, then closes.
    fn upper_echo() -> SocketAddr {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in server.incoming() {
                let Ok(mut s) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                buf[..n].make_ascii_uppercase();
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn a_cpu() -> usize {
        *ilp_router::shard::allowed_cpus()
            .last()
            .expect("an allowed CPU")
    }

    /// Bytes go both ways through the relay, in order, a large write included (more than
    /// one chunk, so the held bytes and the back-pressure are exercised); the end of stream
    /// is passed on; the relay counts what it copied and stops when told.
    #[test]
    fn copies_both_ways_passes_on_the_end_and_stops() {
        let relay = start(a_cpu(), upper_echo()).unwrap();
        let mut c = TcpStream::connect(relay.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"prepare").unwrap();
        let mut got = [0u8; 7];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"PREPARE");
        let big: Vec<u8> = (0..3 * CHUNK + 17).map(|i| b'a' + (i % 26) as u8).collect();
        let writer = {
            let mut w = c.try_clone().unwrap();
            let big = big.clone();
            std::thread::spawn(move || {
                w.write_all(&big).unwrap();
                w.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back, big.to_ascii_uppercase());
        let (cpu, busy) = cpu_s().expect("the relay thread's CPU time");
        assert!(
            cpu > 0.0 && busy > 0.0 && busy < cpu,
            "cpu {cpu} s, busy {busy} s"
        );
        let copied = finish().expect("a relay").unwrap();
        assert_eq!(copied, 2 * (7 + big.len() as u64));
        assert!(finish().is_none(), "finished once");
    }
}
