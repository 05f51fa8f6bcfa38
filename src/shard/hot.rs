//! The hot path's sockets, read through an io_uring ring of the core's own rather than
//! glommio's sockets, and the core's adaptive spin.
//!
//! Why (BENCHMARKS.md, "glommio's sockets against io_uring driven directly" and "Where a
//! round trip's time goes"): every pass of glommio's executor cancels and re-arms a
//! preemption timer, arms a throughput timer and flushes its three rings, five to seven
//! `io_uring_enter` calls between a socket turning readable and the task that reads it
//! running, and it issues a `membarrier` before each park. Both are per wake-up, so they are
//! most of a hop at low and medium rates. Here a plaintext BTP link, once its WebSocket
//! handshake is done, is read by one task per core (the *driver*) that stays on the CPU while
//! packets keep coming:
//!
//! - each link has a multishot poll armed on the ring: readiness is a completion in shared
//!   memory, and the poll stays armed. The ring defers its task work (`DEFER_TASKRUN`): a
//!   peer's packet does not interrupt the core's thread to post the completion (an
//!   inter-processor interrupt, in a virtual machine an exit on both sides); the kernel
//!   raises a flag in the ring and the driver, seeing it, posts what waits with one
//!   `io_uring_enter`. (Cooperative task work, `COOP_TASKRUN`, was tried first: a core
//!   parked in glommio's ring then once slept through its packets, BENCHMARKS.md.)
//! - the driver reads a ready socket with `recv` into the link's read buffer and hands the
//!   frames to [`CoreState`](super::core::CoreState) as the link's reader task did
//!   ([`conn::handle_frames`]);
//! - what that queues on a plaintext link is written at once by the flush after each read
//!   batch ([`Core::flush`], a nonblocking `send`:
//!   [`Links::write_inline`](super::links::Links::write_inline)); the link's writer task
//!   (glommio) takes over only what the socket did not take, with its deadline as before.
//!   Flushes elsewhere (the mesh task flushes after every message from another core) wake
//!   the writer tasks as before, which write all that was queued by then in one write;
//! - **adaptive spin**: after a batch the driver keeps polling the ring for twice the recent
//!   longest gap between batches (at least `spin_us`, at most `spin_max_us`; a round trip's
//!   short gap between Prepare and Fulfill does not shorten it), yielding to glommio
//!   every [`YIELD_EVERY`] ([`YIELD_EVERY_IDLE`] while nothing comes) so timers, the core
//!   mesh and the other links' tasks run; past that
//!   it parks: it awaits, through glommio, an eventfd the ring signals on every completion
//!   and on the first task work queued while none waits (so a parked driver is woken).
//!   A core whose packets come every 100 µs never parks between them; an idle core parks
//!   after `spin_max_us` at most. A core that shares its CPU (its thread lost more than a
//!   quarter of 5 ms of running: its CPU clock against the wall clock) spins only
//!   `spin_us` for the next [`CONTENDED_FOR`]: what it would spin is taken from the other
//!   thread.
//!
//! TLS and HTTP links, handshakes, timers and the mesh stay on glommio. The driver reads only;
//! ending a link is the link's own task's work (`conn::finish_link`), woken when the driver
//! stops reading it (end of stream, a read error, a Close, a WebSocket error, the link closed).
//!
//! | bound | value |
//! | --- | --- |
//! | reads of one ready link per visit | [`READS_PER_VISIT`], then the others get their turn |
//! | the ring | [`RING_ENTRIES`] submissions; a full queue is submitted and retried |
//! | staying on the CPU without yielding to glommio | [`YIELD_EVERY`] while packets come, [`YIELD_EVERY_IDLE`] while spinning idle |
//! | spinning while idle | `spin_max_us` after the last batch, then parked |

use super::conn::{self, Frames};
use super::core::LinkId;
use super::io::{unix_ms, Core};
use crate::link::buf::ReadBuf;
use crate::link::websocket::{self as ws, MessageAssembler};
use glommio::channels::local_channel::LocalSender;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Submission queue entries of a core's ring (completions: twice that).
pub(crate) const RING_ENTRIES: u32 = 1024;
/// Reads of one ready link per visit before the other ready links get theirs.
pub(crate) const READS_PER_VISIT: usize = 4;
/// `io_uring_enter` flag: wait for completions, running the task work that posts them first.
const IORING_ENTER_GETEVENTS: u32 = 1;
/// The longest the driver keeps the CPU, while it handles packets, before glommio's tasks
/// get a pass.
pub(crate) const YIELD_EVERY: Duration = Duration::from_micros(50);
/// The same while it spins with nothing to do. Longer: a pass of glommio's executor takes
/// tens of µs here (its timers re-armed, its rings flushed), and a packet that arrives
/// during one waits for it; timers and the core mesh are then served this late at most.
pub(crate) const YIELD_EVERY_IDLE: Duration = Duration::from_micros(250);

type State = Rc<RefCell<Core>>;

/// One link read through the ring.
struct RingLink {
    id: LinkId,
    fd: RawFd,
    /// `user_data` of its poll: the index in the high half, a generation in the low.
    tag: u64,
    buf: ReadBuf,
    decoder: ws::FrameDecoder,
    assembler: MessageAssembler,
    /// Wakes the link's task once the driver stopped reading it.
    done: LocalSender<()>,
    /// The multishot poll is armed.
    armed: bool,
    /// Already in the ready list.
    listed: bool,
    /// Not read until its queue drains to half the cap.
    paused: bool,
    /// Its poll reported the peer's end of stream (or an error): read it to the end
    /// ([`poll_reports_end`]).
    hup: bool,
}

/// A core's ring and the links read through it.
pub(crate) struct HotRing {
    ring: IoUring,
    links: Vec<Option<RingLink>>,
    generation: u32,
    /// Links to visit.
    ready: Vec<u16>,
    /// Reused by `poll`.
    visiting: Vec<u16>,
    resumed: Vec<u16>,
    completions: Vec<(u64, i32, u32)>,
}

impl std::fmt::Debug for HotRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotRing")
            .field("links", &self.links.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

/// The eventfd the ring signals on each completion: what a parked driver waits on, and what
/// the core writes to wake it ([`Core::wake_driver`]).
#[derive(Debug)]
pub struct Wake(OwnedFd);

impl Wake {
    /// Adds one to the eventfd's count: a parked driver wakes.
    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local to a descriptor we own.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// glommio's view of the eventfd, to park on: a read of 8 bytes at 0 waits for a count
    /// and takes it. A duplicate descriptor (glommio closes its own when dropped).
    pub fn glommio_file(&self) -> io::Result<glommio::io::BufferedFile> {
        // SAFETY: dup of a descriptor we own; the file owns the duplicate.
        let dup = unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` is ours and given to the file.
        Ok(unsafe { glommio::io::BufferedFile::from_raw_fd(dup) })
    }
}

/// A ring of `entries` for one thread, with deferred task work where the kernel has it, and
/// an eventfd registered on it: the ring the router's cores read their links through, and
/// the load generator's with `--io ring`.
///
/// Deferred task work: the kernel does not interrupt the thread to post the ring's
/// completions (in a virtual machine, an inter-processor interrupt and an exit for every
/// packet a peer sends); it raises a flag in the ring, which the thread looks at as it spins
/// and answers with one `io_uring_enter` ([`run_task_work`]). A thread parked on the eventfd
/// is still woken: the first task work queued signals the eventfd at once, and the thread
/// runs what is queued before it parks. Kernels before 6.1 refuse the flags; completions then
/// interrupt, as before. The ring must be used from the thread that made it.
pub fn deferred_ring(entries: u32) -> io::Result<(IoUring, Wake)> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(entries)
        .or_else(|_| IoUring::builder().setup_single_issuer().build(entries))?;
    // Blocking on purpose: glommio's read of it must wait for a count, not fail.
    // SAFETY: plain system call; the descriptor is owned at once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned by nobody else.
    let wake = Wake(unsafe { OwnedFd::from_raw_fd(fd) });
    ring.submitter().register_eventfd(fd)?;
    Ok((ring, wake))
}

/// Runs the task work the kernel flagged on `ring` (`IORING_SQ_TASKRUN`), which posts the
/// completions waiting for this thread; nothing when none is flagged.
pub fn run_task_work(ring: &mut IoUring) {
    if ring.submission().taskrun() {
        // SAFETY: nothing to submit and no argument: the call runs the ring's task work and
        // returns at once (min_complete 0).
        let ran = unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(0, 0, IORING_ENTER_GETEVENTS, None)
        };
        if let Err(e) = ran {
            tracing::debug!("ring: running task work: {e}");
        }
    }
}

/// A multishot poll of `fd` for reading, with `user_data`: what a ring reader arms per
/// socket. It asks for the peer's end of stream too (`POLLRDHUP`; errors and hang-ups always
/// come), so that [`poll_reports_end`] can tell it.
pub fn read_poll(fd: RawFd, user_data: u64) -> squeue::Entry {
    let mask = (libc::POLLIN | libc::POLLRDHUP | libc::POLLERR | libc::POLLHUP) as u32;
    opcode::PollAdd::new(types::Fd(fd), mask)
        .multi(true)
        .build()
        .user_data(user_data)
}

/// Whether a [`read_poll`] completion's `result` reports the peer's end of stream (or an
/// error). From then on a short read no longer means an empty socket: the FIN may sit right
/// behind the bytes read (one segment, one readiness) and raise nothing more, so the reader
/// reads the socket until a read returns 0.
pub fn poll_reports_end(result: i32) -> bool {
    result > 0 && result as u32 & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32 != 0
}

impl HotRing {
    /// A ring for this core, and the eventfd registered on it. An error where io_uring or
    /// eventfd is refused; the core then reads every link through glommio.
    pub(crate) fn new() -> io::Result<(HotRing, Wake)> {
        let (ring, wake) = deferred_ring(RING_ENTRIES)?;
        Ok((
            HotRing {
                ring,
                links: Vec::new(),
                generation: 0,
                ready: Vec::new(),
                visiting: Vec::new(),
                resumed: Vec::new(),
                completions: Vec::new(),
            },
            wake,
        ))
    }

    /// Starts reading `id`'s socket `fd` (its stream must stay open until `done` is woken):
    /// the frames already in `buf` are handled at the driver's next pass.
    pub(crate) fn add(
        &mut self,
        id: LinkId,
        fd: RawFd,
        buf: ReadBuf,
        role: ws::Role,
        frame_len_max: usize,
        done: LocalSender<()>,
    ) {
        let index = usize::from(id.index);
        if self.links.len() <= index {
            self.links.resize_with(index + 1, || None);
        }
        self.generation = self.generation.wrapping_add(1);
        let tag = (u64::from(id.index) << 32) | u64::from(self.generation);
        self.links[index] = Some(RingLink {
            id,
            fd,
            tag,
            buf,
            decoder: ws::FrameDecoder::new(role, frame_len_max),
            assembler: MessageAssembler::new(frame_len_max),
            done,
            armed: false,
            listed: true,
            paused: false,
            hup: false,
        });
        self.ready.push(id.index);
        self.arm(id.index);
        let _ = self.ring.submit();
    }

    /// Queues `entry`, submitting what waits when the queue is full. False when the ring
    /// refuses it even then.
    fn push(&mut self, entry: &squeue::Entry) -> bool {
        for _ in 0..4 {
            // SAFETY: every entry we push refers to a socket that stays open until its poll
            // is cancelled (the link's task holds the stream until `done`), or to nothing.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return true;
            }
            if let Err(e) = self.ring.submit() {
                tracing::warn!("hot ring: submit: {e}");
            }
        }
        false
    }

    fn arm(&mut self, index: u16) {
        let Some(link) = self.links[usize::from(index)].as_mut() else {
            return;
        };
        if link.armed {
            return;
        }
        link.armed = true;
        let entry = read_poll(link.fd, link.tag);
        if !self.push(&entry) {
            // Never read again otherwise: the link ends (its requests fail T01).
            tracing::warn!("hot ring: no room for a link's poll; the link is closed");
            self.end(index);
        }
    }

    /// Stops reading a link: its poll is cancelled and its task woken to finish it.
    fn end(&mut self, index: u16) {
        let Some(link) = self.links[usize::from(index)].take() else {
            return;
        };
        if link.armed {
            let entry = opcode::AsyncCancel::new(link.tag)
                .build()
                .user_data(u64::MAX);
            // Not cancelled (the ring refused it): the poll ends with the socket's last
            // reference, and its completions find no link of this tag.
            let _ = self.push(&entry);
        }
        let _ = link.done.try_send(());
    }

    /// Completions waiting (or task work that will post some), or links to visit. The
    /// driver parks only when this is false: task work left queued would not signal the
    /// eventfd again.
    fn has_work(&mut self) -> bool {
        !self.ready.is_empty()
            || !self.ring.completion().is_empty()
            || self.ring.submission().taskrun()
    }

    /// One pass: takes the completions, visits every ready link (reading it and handing its
    /// frames to the core), re-arms polls that ended, submits. Returns how many links it read
    /// bytes from or ended.
    fn pass(&mut self, state: &State) -> usize {
        run_task_work(&mut self.ring);
        self.completions.clear();
        self.completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for i in 0..self.completions.len() {
            let (tag, result, flags) = self.completions[i];
            let index = (tag >> 32) as u16;
            let Some(link) = self
                .links
                .get_mut(usize::from(index))
                .and_then(|l| l.as_mut())
                .filter(|l| l.tag == tag)
            else {
                continue;
            };
            if !cqueue::more(flags) || result < 0 {
                link.armed = false;
            }
            if result < 0 && result != -libc::ECANCELED {
                // A poll the kernel refused would be refused again at each re-arm.
                tracing::debug!(
                    "hot ring: poll failed: {}",
                    io::Error::from_raw_os_error(-result)
                );
                self.end(index);
                continue;
            }
            link.hup |= poll_reports_end(result);
            if !link.listed {
                link.listed = true;
                self.ready.push(index);
            }
        }
        {
            let mut st = state.borrow_mut();
            st.take_ring_resumed(&mut self.resumed);
        }
        for i in 0..self.resumed.len() {
            let index = self.resumed[i];
            if let Some(link) = self
                .links
                .get_mut(usize::from(index))
                .and_then(|l| l.as_mut())
            {
                link.paused = false;
                if !link.listed {
                    link.listed = true;
                    self.ready.push(index);
                }
            }
        }
        std::mem::swap(&mut self.ready, &mut self.visiting);
        let mut worked = 0;
        state.borrow_mut().set_inline_now(true);
        for i in 0..self.visiting.len() {
            let index = self.visiting[i];
            let Some(link) = self
                .links
                .get_mut(usize::from(index))
                .and_then(|l| l.as_mut())
            else {
                continue;
            };
            link.listed = false;
            match visit(state, link) {
                Visit::Quiet => {}
                Visit::Read => worked += 1,
                Visit::More => {
                    worked += 1;
                    link.listed = true;
                    self.ready.push(index);
                }
                Visit::End => {
                    worked += 1;
                    self.end(index);
                    continue;
                }
            }
            if !self.links[usize::from(index)]
                .as_ref()
                .is_some_and(|l| l.paused)
            {
                self.arm(index);
            }
        }
        self.visiting.clear();
        state.borrow_mut().set_inline_now(false);
        if !self.ring.submission().is_empty() {
            let _ = self.ring.submit();
        }
        worked
    }
}

/// What a visit to a ready link found.
enum Visit {
    /// Nothing to read (or paused for room).
    Quiet,
    /// Read until the socket was empty.
    Read,
    /// Read its share of this pass; more may wait in the socket.
    More,
    /// Stop reading it.
    End,
}

/// Reads a link as its reader task would: the frames in its buffer first, the room check,
/// then the socket until it is empty (at most [`READS_PER_VISIT`] reads).
fn visit(state: &State, link: &mut RingLink) -> Visit {
    let now = unix_ms();
    let mut st = state.borrow_mut();
    let half = st.config.limits().link_queue_bytes_max / 2;
    let mut read = false;
    // The last read took less than the room it had: the socket was empty then, and what
    // arrives after it raises the poll again, so no read is spent learning that (EAGAIN).
    // Not once the peer's end of stream was reported ([`poll_reports_end`]).
    let mut drained = false;
    for _ in 0..READS_PER_VISIT {
        let held = match conn::handle_frames(
            &mut st,
            link.id,
            &mut link.buf,
            &link.decoder,
            &mut link.assembler,
            half,
            now,
        ) {
            Frames::Drained => false,
            Frames::Held => true,
            Frames::End => return Visit::End,
        };
        st.flush();
        let Some(l) = st.link_mut(link.id).filter(|l| !l.closing) else {
            return Visit::End;
        };
        if read {
            l.received_at = now;
        }
        if held || l.queued() > half {
            // The peer must read what it is owed first; `Core::flush` lists the link again
            // once the queue drained to half (or the link closes).
            if l.queued() > half {
                l.reader_paused = true;
                st.counters.reads_paused += 1;
                link.paused = true;
                return Visit::Quiet;
            }
            continue;
        }
        if drained {
            return Visit::Read;
        }
        link.buf
            .compact_if_needed(ws::frame_len_hint(link.buf.data()).max(4096));
        let spare = link.buf.spare_mut();
        let spare_len = spare.len();
        // SAFETY: reads into the buffer's spare room, `spare.len()` bytes at most.
        let n = unsafe {
            libc::recv(
                link.fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            drained = (n as usize) < spare_len && !link.hup;
            link.buf.advance(n as usize);
            read = true;
            continue;
        }
        if n == 0 {
            return Visit::End;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                return if read { Visit::Read } else { Visit::Quiet };
            }
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::TimedOut => {
                // The kernel's TCP_USER_TIMEOUT (`conn::limit_socket`).
                conn::count_write_timeout(&mut st, link.id);
                return Visit::End;
            }
            _ => {
                tracing::debug!("link read failed: {e}");
                return Visit::End;
            }
        }
    }
    // Its share is read; the frames of the last read are handled at its next visit.
    Visit::More
}

/// How long a core that lost its CPU to another thread spins no longer than `spin_us`.
pub(crate) const CONTENDED_FOR: Duration = Duration::from_millis(50);
/// The running time over which the CPU a core's thread got is judged.
pub(crate) const CONTENDED_WINDOW: Duration = Duration::from_millis(5);

/// The adaptive spin: how long to keep polling after the last batch. Spinning is for a core
/// that has its CPU to itself: one whose thread lost more than a quarter of
/// [`CONTENDED_WINDOW`] of running (another thread shares the CPU, and every µs spun is
/// taken from it) spins no longer than the minimum for [`CONTENDED_FOR`].
#[derive(Debug)]
pub(crate) struct Spin {
    min: Duration,
    max: Duration,
    /// The recent longest gap between batches (rises at once, decays by eighths), in ns.
    gap_ns: u64,
    last: Option<Instant>,
    /// Spin the minimum only, until then.
    contended_until: Option<Instant>,
    /// Wall clock and thread CPU time at the last look, while running (not across a park).
    looked: Option<(Instant, Duration)>,
    /// Since when the driver has been spinning with nothing to do, if it is.
    idle_since: Option<Instant>,
    /// Spun with nothing to do, not yet taken by [`Spin::take_idle`].
    idle: Duration,
}

impl Spin {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Spin {
            min,
            max: max.max(min),
            gap_ns: 0,
            last: None,
            contended_until: None,
            looked: None,
            idle_since: None,
            idle: Duration::ZERO,
        }
    }

    /// The thread has run `cpu` in all by `now`. Over each [`CONTENDED_WINDOW`] of running
    /// (parks excluded), if it lost more than a quarter of the wall time, the CPU is shared,
    /// and the spin shrinks to the minimum for a while. Brief losses (an interrupt, a helper
    /// thread waking, the host taking a moment) stay under that.
    pub(crate) fn ran(&mut self, now: Instant, cpu: Duration) {
        match self.looked {
            None => self.looked = Some((now, cpu)),
            Some((at, was)) => {
                let wall = now.saturating_duration_since(at);
                if wall < CONTENDED_WINDOW {
                    return;
                }
                if cpu.saturating_sub(was) < wall * 3 / 4 {
                    self.contended_until = Some(now + CONTENDED_FOR);
                }
                self.looked = Some((now, cpu));
            }
        }
    }

    /// The thread parks: the time until it runs again is not lost to another thread.
    pub(crate) fn parked(&mut self) {
        self.looked = None;
    }

    /// A batch was handled at `now`.
    pub(crate) fn worked(&mut self, now: Instant) {
        self.end_idle(now);
        if let Some(last) = self.last {
            let gap = u64::try_from(now.duration_since(last).as_nanos()).unwrap_or(u64::MAX);
            // Gaps longer than the cap say the same (park); clamping keeps one long pause
            // from swamping the average.
            let gap = gap.min(2 * u64::try_from(self.max.as_nanos()).unwrap_or(u64::MAX));
            // The longest recent gap, not the mean: round trips interleave short gaps (a
            // Prepare, its Fulfill) with long ones (the next Prepare), and a mean under the
            // long gap parked the core before every Prepare. A longer gap counts at once; a
            // shorter one pulls the estimate down by an eighth of the difference per batch,
            // so dense traffic still shrinks the window within a few dozen batches.
            self.gap_ns = if gap >= self.gap_ns {
                gap
            } else {
                self.gap_ns - (self.gap_ns - gap) / 8
            };
        }
        self.last = Some(now);
    }

    /// How long after the last batch to keep polling: twice the recent longest gap, within
    /// `[min, max]`.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_nanos(self.gap_ns.saturating_mul(2)).clamp(self.min, self.max)
    }

    /// The driver found nothing at `now` and spins on: idle from then, if not already.
    pub(crate) fn idle_at(&mut self, now: Instant) {
        self.idle_since.get_or_insert(now);
    }

    /// The idle spin, if any, ended at `now` (work came, or the driver yields or parks).
    pub(crate) fn end_idle(&mut self, now: Instant) {
        if let Some(since) = self.idle_since.take() {
            self.idle += now.saturating_duration_since(since);
        }
    }

    /// The time spun with nothing to do since the last call. Part of the core's CPU time
    /// (`ilp_core_busy_seconds_total`) that forwarded nothing: what an operator subtracts to
    /// see how loaded a spinning core is.
    pub(crate) fn take_idle(&mut self) -> Duration {
        std::mem::take(&mut self.idle)
    }

    /// Whether to keep polling at `now`.
    pub(crate) fn keep_spinning(&self, now: Instant) -> bool {
        let window = if self.contended_until.is_some_and(|until| now < until) {
            self.min
        } else {
            self.window()
        };
        self.last
            .is_some_and(|last| now.duration_since(last) < window)
    }
}

/// CPU time of the calling thread so far (zero where unknown).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Adds the idle spin so far to the core's tally (`ilp_core_spin_idle_seconds_total`).
fn count_idle(state: &State, spin: &mut Spin) {
    let idle = spin.take_idle();
    if !idle.is_zero() {
        let ns = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        let mut st = state.borrow_mut();
        st.counters.spin_idle_ns = st.counters.spin_idle_ns.saturating_add(ns);
    }
}

/// Gives the core its ring and starts the driver. `None` where io_uring or eventfd is
/// refused: the core's links are then read through glommio, as TLS links always are.
pub(crate) fn start(
    state: &State,
    limits: &crate::config::Limits,
    core: usize,
) -> Option<glommio::Task<()>> {
    let (ring, wake) = match HotRing::new() {
        Ok(made) => made,
        Err(e) => {
            tracing::warn!(
                core,
                "no ring of its own ({e}): every link is read through glommio"
            );
            return None;
        }
    };
    let ring = Rc::new(RefCell::new(ring));
    let wake = Rc::new(wake);
    state
        .borrow_mut()
        .set_hot(Rc::clone(&ring), Rc::clone(&wake));
    let spin = Spin::new(
        Duration::from_micros(limits.spin_us),
        Duration::from_micros(limits.spin_max_us),
    );
    Some(glommio::spawn_local(drive(
        Rc::clone(state),
        ring,
        wake,
        spin,
    )))
}

/// The driver task of one core: passes over the ring while there is work, spins
/// ([`Spin`]) while packets keep coming, parks on the ring's eventfd when idle. Runs until the
/// core's executor ends.
pub(crate) async fn drive(state: State, hot: Rc<RefCell<HotRing>>, wake: Rc<Wake>, mut spin: Spin) {
    let parked_on = match wake.glommio_file() {
        Ok(file) => file,
        Err(e) => {
            tracing::error!("hot ring: eventfd: {e}; links read through the ring stall");
            return;
        }
    };
    let mut yielded_at = Instant::now();
    let mut worked_since_yield = false;
    loop {
        let worked = hot.borrow_mut().pass(&state);
        let now = Instant::now();
        if worked > 0 {
            spin.worked(now);
            worked_since_yield = true;
        }
        let every = if worked_since_yield {
            YIELD_EVERY
        } else {
            YIELD_EVERY_IDLE
        };
        if now.duration_since(yielded_at) >= every {
            worked_since_yield = false;
            spin.ran(now, thread_cpu());
            spin.end_idle(now);
            count_idle(&state, &mut spin);
            // Out of the task queue, not just behind its other tasks: glommio's reactor then
            // runs (timers, the mesh, other sockets) before this task does again.
            glommio::executor().yield_task_queue_now().await;
            yielded_at = Instant::now();
            continue;
        }
        if worked > 0 || hot.borrow_mut().has_work() || state.borrow().ring_resumed_waiting() {
            continue;
        }
        if spin.keep_spinning(now) {
            spin.idle_at(now);
            std::hint::spin_loop();
            continue;
        }
        spin.end_idle(now);
        count_idle(&state, &mut spin);
        // Idle: park. The eventfd counts every completion posted since it was last read, and
        // the first task work queued after `has_work` found none signals it too, so one that
        // lands between the check above and the read below is not missed.
        state.borrow_mut().set_driver_parked(true);
        spin.parked();
        let woke = parked_on.read_at(0, 8).await;
        state.borrow_mut().set_driver_parked(false);
        if let Err(e) = woke {
            tracing::error!("hot ring: waiting on its eventfd: {e}; polling with a 1 ms sleep");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        yielded_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_spin_counts_only_the_empty_polls() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let mut spin = Spin::new(us(50), us(1000));
        spin.worked(t0);
        // Empty polls from 10 µs to 40 µs, then a batch: 30 µs idle.
        spin.idle_at(t0 + us(10));
        spin.idle_at(t0 + us(25));
        spin.idle_at(t0 + us(40));
        spin.worked(t0 + us(40));
        // Work right away: nothing more.
        spin.worked(t0 + us(45));
        // Empty from 50 µs until the driver yields at 80 µs: 30 µs more; the time in glommio
        // does not count, and the next empty poll starts a new stretch.
        spin.idle_at(t0 + us(50));
        spin.end_idle(t0 + us(80));
        assert_eq!(spin.take_idle(), us(60));
        assert_eq!(spin.take_idle(), Duration::ZERO);
        spin.idle_at(t0 + us(200));
        spin.end_idle(t0 + us(210));
        spin.end_idle(t0 + us(500));
        assert_eq!(spin.take_idle(), us(10));
    }

    #[test]
    fn spin_window_follows_the_gap_within_its_bounds() {
        let t0 = Instant::now();
        let mut spin = Spin::new(Duration::from_micros(50), Duration::from_micros(1000));
        // No batch yet: nothing to spin for.
        assert!(!spin.keep_spinning(t0));
        assert_eq!(spin.window(), Duration::from_micros(50));
        // Batches 100 µs apart: spin twice that.
        for i in 0..64u64 {
            spin.worked(t0 + Duration::from_micros(100 * i));
        }
        let last = t0 + Duration::from_micros(100 * 63);
        assert_eq!(spin.window(), Duration::from_micros(200));
        assert!(spin.keep_spinning(last + Duration::from_micros(150)));
        assert!(!spin.keep_spinning(last + Duration::from_micros(250)));
        // Batches 10 ms apart: capped at the maximum.
        let mut at = last;
        for _ in 0..64 {
            at += Duration::from_millis(10);
            spin.worked(at);
        }
        assert_eq!(spin.window(), Duration::from_micros(1000));
        // Back-to-back batches: at least the minimum.
        for _ in 0..64 {
            at += Duration::from_micros(1);
            spin.worked(at);
        }
        assert_eq!(spin.window(), Duration::from_micros(50));
    }

    #[test]
    fn a_round_trip_every_millisecond_never_parks_the_core() {
        // 1 000 round trips/s through the core: a Prepare batch every millisecond and its
        // Fulfill 30 µs later, so the gaps between batches alternate 30 and 970 µs. The next
        // Prepare must find the core still spinning (a parked core pays a wake-up on it).
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let mut spin = Spin::new(us(50), us(1000));
        for k in 0..200u64 {
            let prepare = t0 + us(1000 * k);
            spin.worked(prepare);
            spin.worked(prepare + us(30));
            if k > 8 {
                assert!(
                    spin.keep_spinning(prepare + us(999)),
                    "round trip {k}: parked before the next Prepare (window {:?})",
                    spin.window()
                );
            }
        }
        // Traffic stops: parked within the maximum.
        let last = t0 + us(1000 * 199 + 30);
        assert!(!spin.keep_spinning(last + us(1001)));
    }

    #[test]
    fn a_core_that_shares_its_cpu_spins_the_minimum_for_a_while() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut spin = Spin::new(Duration::from_micros(50), Duration::from_micros(1000));
        for i in 0..64u64 {
            spin.worked(t0 + Duration::from_micros(100 * i));
        }
        let last = t0 + Duration::from_micros(100 * 63);
        // 4.5 ms of 5: its own CPU (brief losses do not count).
        spin.ran(last, ms(10));
        spin.ran(last + ms(5), ms(10) + Duration::from_micros(4500));
        assert!(spin.keep_spinning(last + Duration::from_micros(150)));
        // 3 ms of 5: another thread had the rest.
        let at = last + ms(10);
        spin.ran(at, Duration::from_micros(17_500));
        spin.worked(at);
        assert!(!spin.keep_spinning(at + Duration::from_micros(150)));
        assert!(spin.keep_spinning(at + Duration::from_micros(40)));
        // A park in between is not lost CPU, and the contention passes.
        let later = at + CONTENDED_FOR;
        spin.parked();
        spin.ran(later, ms(18));
        spin.ran(later + ms(5), ms(23));
        spin.worked(later + ms(5));
        assert!(spin.keep_spinning(later + ms(5) + Duration::from_micros(150)));
    }

    #[test]
    fn a_max_under_the_min_spins_the_min() {
        let spin = Spin::new(Duration::from_micros(50), Duration::ZERO);
        assert_eq!(spin.window(), Duration::from_micros(50));
    }
}
