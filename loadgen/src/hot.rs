//! `--io ring`: the load thread's plaintext BTP connections read through an io_uring ring of
//! the thread's own and written with `send` at once (`Conn::send_inline`), as the router's
//! cores read and write theirs (`ilp_router::shard`'s hot path), instead of glommio's
//! sockets.
//!
//! Why: a message read through glommio's sockets costs a pass of its reactor (timers re-armed,
//! its rings flushed; BENCHMARKS.md, "glommio's sockets against io_uring driven directly":
//! tens of µs per message in a virtual machine). Through a router the load generator waits
//! for two messages per round trip, the sink's Prepare and the sender's Fulfill, both sent
//! from another CPU; with `--direct` both come from its own thread, in the same pass. So
//! glommio's cost lands in the figure through the router and hardly in the floor, and the
//! latency over `--direct` overstates the router's share.
//!
//! One driver task per load thread, started with its first connection:
//!
//! - each connection has a multishot poll armed on the ring (deferred task work: a message
//!   does not interrupt the thread, `ilp_router::shard::deferred_ring`); a ready socket is
//!   read with `recv` until it is empty and its messages are handed to the connection;
//! - it sends what the pacer's schedule says is due (`Conn::refill`) as soon as it is due:
//!   the pacer task does the same when the driver is parked;
//! - it spins while any answer is awaited or a send is due within the spin (`--pacer-spin-us`),
//!   yielding to glommio every [`YIELD_EVERY`] (the pacer, the writer tasks, housekeeping);
//!   otherwise it parks on the ring's eventfd. A send made while it is parked signals the
//!   eventfd, so it is up before the answer comes;
//! - a connection that closes (`shut`, `drop_link`) or whose reading ends leaves the ring at
//!   the next pass; the driver ends when its last connection has left.
//!
//! | bound | value |
//! | --- | --- |
//! | the ring | [`RING_ENTRIES`] submissions |
//! | reads of one ready connection per pass | [`READS_PER_PASS`] |
//! | staying on the CPU without yielding to glommio | [`YIELD_EVERY`] |

use crate::conn::{Frames, Reader, Shared};
use io_uring::{cqueue, opcode, IoUring};
use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Submission queue entries of a thread's ring.
const RING_ENTRIES: u32 = 256;
/// Reads of one ready connection per pass.
const READS_PER_PASS: usize = 4;
/// The longest the driver keeps the CPU before glommio's tasks get a pass.
const YIELD_EVERY: Duration = Duration::from_micros(500);

/// One connection read through the ring.
struct Link {
    conn: Shared,
    fd: RawFd,
    /// `user_data` of its poll: the slot in the high half, a generation in the low.
    tag: u64,
    /// Holds the socket open (with the writer task's half) until the link leaves.
    _reader: Reader,
    reading: Frames,
    armed: bool,
    ready: bool,
    /// Its poll reported the peer's end of stream (or an error): it is read until a read
    /// returns 0 (`ilp_router::shard::poll_reports_end`).
    hup: bool,
    /// Its poll failed: it leaves the ring.
    failed: bool,
}

/// A thread's ring and the connections read through it.
struct Driver {
    ring: IoUring,
    links: Vec<Option<Link>>,
    generation: u32,
    completions: Vec<(u64, i32, u32)>,
    /// Spin this long before a send is due.
    spin: Duration,
}

/// What the thread's connections (and `unpark`) see of its driver.
struct Handle {
    driver: Rc<RefCell<Driver>>,
    wake: ilp_router::shard::Wake,
    parked: Cell<bool>,
}

thread_local! {
    static HANDLE: RefCell<Option<Rc<Handle>>> = const { RefCell::new(None) };
}

/// Reads `conn` through this thread's ring from now on (starting the driver with the first
/// connection). Gives the reader back when the thread can have no ring.
pub(crate) fn adopt(
    conn: &Shared,
    fd: RawFd,
    reader: Reader,
    reading: Frames,
    spin: Duration,
) -> Result<(), (Reader, Frames)> {
    let handle = HANDLE.with(|h| h.borrow().clone());
    let handle = match handle {
        Some(handle) => handle,
        None => {
            let (ring, wake) = match ilp_router::shard::deferred_ring(RING_ENTRIES) {
                Ok(made) => made,
                Err(e) => {
                    eprintln!("ilp-loadgen: --io ring: no ring on this thread ({e}): glommio reads its connections");
                    return Err((reader, reading));
                }
            };
            let handle = Rc::new(Handle {
                driver: Rc::new(RefCell::new(Driver {
                    ring,
                    links: Vec::new(),
                    generation: 0,
                    completions: Vec::new(),
                    spin,
                })),
                wake,
                parked: Cell::new(false),
            });
            HANDLE.with(|h| *h.borrow_mut() = Some(Rc::clone(&handle)));
            handle
        }
    };
    let first = handle.driver.borrow().links.iter().all(Option::is_none);
    let mut driver = handle.driver.borrow_mut();
    let slot = match driver.links.iter().position(Option::is_none) {
        Some(slot) => slot,
        None => {
            driver.links.push(None);
            driver.links.len() - 1
        }
    };
    driver.generation = driver.generation.wrapping_add(1);
    let tag = (slot as u64) << 32 | u64::from(driver.generation);
    driver.links[slot] = Some(Link {
        conn: Rc::clone(conn),
        fd,
        tag,
        _reader: reader,
        reading,
        armed: false,
        // The frames already read (after the handshake) are handled at the next pass.
        ready: true,
        hup: false,
        failed: false,
    });
    drop(driver);
    if first {
        // After the link is in: the task may run at once, and ends when it finds none.
        glommio::spawn_local(drive(Rc::clone(&handle))).detach();
    } else {
        unpark();
    }
    Ok(())
}

/// Wakes this thread's driver if it is parked (an answer is coming, or a link is leaving).
pub(crate) fn unpark() {
    HANDLE.with(|h| {
        if let Some(handle) = h.borrow().as_ref() {
            if handle.parked.get() {
                handle.parked.set(false);
                handle.wake.signal();
            }
        }
    });
}

/// What one pass found.
struct Pass {
    /// Read, sent or ended something.
    worked: bool,
    /// Answers awaited, or a send due within the spin: keep spinning.
    busy: bool,
    /// Connections still read through the ring.
    live: usize,
}

impl Driver {
    fn pass(&mut self) -> Pass {
        ilp_router::shard::run_task_work(&mut self.ring);
        self.completions.clear();
        self.completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut worked = false;
        for i in 0..self.completions.len() {
            let (tag, result, flags) = self.completions[i];
            let Some(link) = self
                .links
                .get_mut((tag >> 32) as usize)
                .and_then(Option::as_mut)
                .filter(|l| l.tag == tag)
            else {
                continue;
            };
            if !cqueue::more(flags) || result < 0 {
                link.armed = false;
            }
            // A poll the kernel refused would be refused again at each re-arm: the link ends.
            link.failed |= result < 0 && result != -libc::ECANCELED;
            link.hup |= ilp_router::shard::poll_reports_end(result);
            link.ready = true;
        }
        let mut busy = false;
        let mut live = 0;
        for slot in 0..self.links.len() {
            let Some(link) = self.links[slot].as_mut() else {
                continue;
            };
            // Closed by us (`shut`, `drop_link`): the writer (if any) closes the socket.
            let closed = link.conn.borrow().closing;
            let ended = !closed
                && (link.failed
                    || link.ready && {
                        link.ready = false;
                        worked = true;
                        !read(link)
                    });
            if closed || ended {
                worked = true;
                self.leave(slot, ended);
                continue;
            }
            live += 1;
            let mut c = link.conn.borrow_mut();
            let now_ns = c.since_start_ns();
            if c.next_send_ns().is_some_and(|at| at <= now_ns) {
                c.refill();
                worked = true;
            }
            busy |= c.outstanding() > 0
                || c.next_send_ns()
                    .is_some_and(|at| at <= now_ns + self.spin.as_nanos() as u64);
            drop(c);
            if !link.armed {
                link.armed = true;
                let entry = ilp_router::shard::read_poll(link.fd, link.tag);
                // SAFETY: the poll refers to a socket this link holds open until the poll is
                // cancelled (`leave`).
                if unsafe { self.ring.submission().push(&entry) }.is_err() {
                    let _ = self.ring.submit();
                    link.armed = false;
                }
            }
        }
        if !self.ring.submission().is_empty() {
            let _ = self.ring.submit();
        }
        Pass { worked, busy, live }
    }

    /// The link leaves the ring: its poll is cancelled and its read half dropped; when its
    /// reading `ended` (not closed by us), its connection is told.
    fn leave(&mut self, slot: usize, ended: bool) {
        let Some(link) = self.links[slot].take() else {
            return;
        };
        if link.armed {
            let cancel = opcode::AsyncCancel::new(link.tag)
                .build()
                .user_data(u64::MAX);
            for _ in 0..2 {
                // SAFETY: a cancellation refers to no memory.
                if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
                    break;
                }
                // A full queue: submit it and try again. Not cancelled at all, the poll ends
                // with the ring (the driver's last link leaving drops it).
                let _ = self.ring.submit();
            }
        }
        if ended {
            link.conn.borrow_mut().reader_ended();
        }
    }

    /// When a parked driver must be up again: `spin` before the earliest next send.
    fn next_wake(&self) -> Option<Instant> {
        self.links
            .iter()
            .flatten()
            .filter_map(|l| {
                let c = l.conn.borrow();
                let at = c.next_send_ns()?;
                let now = c.since_start_ns();
                let ahead = at
                    .saturating_sub(now)
                    .saturating_sub(self.spin.as_nanos() as u64);
                Some(Instant::now() + Duration::from_nanos(ahead))
            })
            .min()
    }

    fn has_work(&mut self) -> bool {
        !self.ring.completion().is_empty() || self.ring.submission().taskrun()
    }
}

/// Reads a ready link until its socket is empty ([`READS_PER_PASS`] reads at most) and hands
/// its messages to the connection. False when reading ends.
fn read(link: &mut Link) -> bool {
    if !link.reading.handle(&link.conn) {
        return false;
    }
    for _ in 0..READS_PER_PASS {
        link.reading.make_room();
        let spare = link.reading.buf.spare_mut();
        let room = spare.len();
        // SAFETY: reads into the buffer's spare room, its length at most.
        let n = unsafe { libc::recv(link.fd, spare.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) };
        if n == 0 {
            return false;
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            );
        }
        link.reading.buf.advance(n as usize);
        if !link.reading.handle(&link.conn) {
            return false;
        }
        if (n as usize) < room && !link.hup {
            // The socket was emptied; what comes next raises the poll again.
            return true;
        }
    }
    // More may wait: the next pass reads on.
    link.ready = true;
    true
}

/// The driver task of one load thread: passes while there is work, spins while answers are
/// awaited or a send is near, parks on the ring's eventfd otherwise; ends with the thread's
/// last connection.
async fn drive(handle: Rc<Handle>) {
    let parked_on = match handle.wake.glommio_file() {
        Ok(file) => file,
        Err(e) => {
            eprintln!("ilp-loadgen: --io ring: eventfd: {e}; its connections are not read");
            return;
        }
    };
    let mut yielded_at = Instant::now();
    let mut pending = None;
    loop {
        let pass = handle.driver.borrow_mut().pass();
        if pass.live == 0 {
            break;
        }
        let now = Instant::now();
        if now.duration_since(yielded_at) >= YIELD_EVERY {
            glommio::executor().yield_task_queue_now().await;
            yielded_at = Instant::now();
            continue;
        }
        if pass.worked || pass.busy || handle.driver.borrow_mut().has_work() {
            std::hint::spin_loop();
            continue;
        }
        // Idle: park until the ring signals its eventfd (it counts every completion posted
        // since it was last read, and the first task work queued signals it, so one that
        // lands after the check above is not missed; a send made meanwhile signals it too,
        // `unpark`), or until the next send is `spin` away: from then on this task spins and
        // sends on time, where a wake-up of the executor would come late. The read stays
        // pending across wake-ups by the timer: a read dropped unfinished could take a count
        // meant for the next park.
        let wake_at = handle.driver.borrow().next_wake();
        let read = pending.get_or_insert_with(|| Box::pin(parked_on.read_at(0, 8)));
        handle.parked.set(true);
        let woke = match wake_at {
            Some(at) => {
                let timer = async {
                    glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                    None
                };
                futures_lite::future::or(async { Some(read.await) }, timer).await
            }
            None => Some(read.await),
        };
        handle.parked.set(false);
        if let Some(woke) = woke {
            pending = None;
            if let Err(e) = woke {
                eprintln!("ilp-loadgen: --io ring: waiting on its eventfd: {e}");
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
        yielded_at = Instant::now();
    }
    HANDLE.with(|h| {
        if h.borrow()
            .as_ref()
            .is_some_and(|current| Rc::ptr_eq(current, &handle))
        {
            *h.borrow_mut() = None;
        }
    });
}
