//! The runtime side of one core: the glommio handles and the clock that [`CoreState`] does
//! not hold. `CoreState` is sans I/O (quinn-proto's `Connection` is the model): every call
//! takes `now`, and what it wants done outside (wake a link's writer or reader, send to
//! another core, open an HTTP connection) waits in its outboxes. [`Core`] pairs the state with
//! the handles and drains those outboxes in [`Core::flush`], which the I/O tasks call after
//! each batch.
//!
//! | outbox | drained into |
//! | --- | --- |
//! | `Links::take_signals` | a plaintext link's queue written at once (`Links::write_inline`), else its writer's wake-up; its reader's (room freed, HTTP answers written), or for a link read through the core's ring ([`super::hot`]) a visit of the driver |
//! | `MeshOut::drain` | the rings of the channel mesh; what finds a ring full waits for the next flush |
//! | `CoreState::http_dials` | the core's dialler task |

use super::core::{Admission, CoreState, LinkId, Transport};
use super::hot::{HotRing, Wake};
use super::links::Signal;
use super::mesh::{CrossMsg, Full};
use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::LocalSender;
use glommio::{GlommioError, ResourceType};
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;
use std::rc::Rc;

/// Keeps the calling thread, and every thread it starts from now on (they inherit its mask),
/// to `cpus` (numbers at or past `CPU_SETSIZE` are left out). The load generator keeps its
/// supervising thread to its load threads' CPUs with it.
pub fn keep_thread_to(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET gets indices below
    // CPU_SETSIZE only; sched_setaffinity(0, ..) reads the set for the calling thread.
    let done = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Keeps the calling thread and those it starts off the cores' CPUs: on the CPUs it may use
/// but `cores`, when there are any. Returns that set, or `None` when the cores take every
/// allowed CPU (or the kernel refused), where the other threads go on sharing the cores'.
pub(crate) fn keep_off(allowed: &[usize], cores: &[usize]) -> Option<Vec<usize>> {
    let rest: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| !cores.contains(c) && *c < libc::CPU_SETSIZE as usize)
        .collect();
    if rest.is_empty() {
        return None;
    }
    keep_thread_to(&rest).ok().map(|()| rest)
}

/// Current Unix time in milliseconds: read once per batch, never per packet.
pub(crate) fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A nonblocking `send` of `bytes` on `fd` (no SIGPIPE): how many the socket took.
fn send_now(fd: RawFd, bytes: &[u8]) -> std::io::Result<usize> {
    // SAFETY: reads `bytes.len()` bytes from a live slice; `fd` is a socket its link's task
    // keeps open until the link is removed, which clears `inline` first.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One core: its sans-IO state and the handles its outboxes drain into. Derefs to the state.
#[derive(Debug)]
pub(crate) struct Core {
    state: CoreState,
    io: CoreIo,
}

struct CoreIo {
    mesh: Option<Senders<CrossMsg>>,
    /// Mesh index of each core.
    mesh_index: Vec<usize>,
    /// By link index: the tasks to wake. Cleared when the link is removed, which ends a
    /// writer waiting for work.
    links: Vec<LinkIo>,
    dialler: Option<LocalSender<()>>,
    /// Reused by `flush`.
    signals: Vec<(u16, u8)>,
    /// The core's ring for plaintext BTP links, and what wakes its driver.
    hot: Option<(Rc<RefCell<HotRing>>, Rc<Wake>)>,
    /// Links read through the ring that may read again (room freed, or closing).
    ring_resumed: Vec<u16>,
    /// The driver waits on its eventfd: what lists a link for it must wake it.
    driver_parked: bool,
    /// Flushes write plaintext queues at once (the ring driver's, after each read batch);
    /// others wake the writer tasks, which then write everything queued by the time they
    /// run in one write (the mesh task flushes after every message).
    inline_now: bool,
}

impl CoreIo {
    /// Wakes the ring driver if it is parked (a link was listed for it).
    fn wake_driver(&self) {
        if self.driver_parked {
            if let Some((_, wake)) = &self.hot {
                wake.signal();
            }
        }
    }
}

impl std::fmt::Debug for CoreIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreIo")
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct LinkIo {
    writer: Option<LocalSender<()>>,
    /// A BTP reader paused for room, or an HTTP reader waiting for its pipeline.
    reader: Option<LocalSender<()>>,
    /// A plaintext link's socket: what is queued is written to it at once
    /// ([`Links::write_inline`](super::links::Links::write_inline)).
    inline: Option<RawFd>,
    /// Read by the core's ring driver ([`super::hot`]) rather than a reader task.
    ring: bool,
}

impl Deref for Core {
    type Target = CoreState;
    fn deref(&self) -> &CoreState {
        &self.state
    }
}

impl DerefMut for Core {
    fn deref_mut(&mut self) -> &mut CoreState {
        &mut self.state
    }
}

impl Core {
    pub(crate) fn new(
        state: CoreState,
        mesh: Option<Senders<CrossMsg>>,
        mesh_index: Vec<usize>,
    ) -> Self {
        Core {
            state,
            io: CoreIo {
                mesh,
                mesh_index,
                links: Vec::new(),
                dialler: None,
                signals: Vec::new(),
                hot: None,
                ring_resumed: Vec::new(),
                driver_parked: false,
                inline_now: false,
            },
        }
    }

    /// Registers a new connection ([`CoreState::add_link`]) whose writer waits on `writer`.
    pub(crate) fn add_link(
        &mut self,
        transport: Transport,
        path_account: Option<String>,
        writer: LocalSender<()>,
        admission: Admission,
    ) -> Option<LinkId> {
        let id = self
            .state
            .add_link(transport, path_account, admission, unix_ms())?;
        let index = usize::from(id.index);
        if self.io.links.len() <= index {
            self.io.links.resize_with(index + 1, LinkIo::default);
        }
        self.io.links[index] = LinkIo {
            writer: Some(writer),
            ..LinkIo::default()
        };
        Some(id)
    }

    /// The link's reader waits on `reader` for room (BTP) or for answers (HTTP).
    pub(crate) fn set_reader(&mut self, id: LinkId, reader: LocalSender<()>) {
        if self.state.link(id).is_some() {
            self.io.links[usize::from(id.index)].reader = Some(reader);
        }
    }

    /// What is queued on this plaintext link is written to `fd` at once, where the socket
    /// takes it (the writer task writes the rest).
    pub(crate) fn set_inline(&mut self, id: LinkId, fd: RawFd) {
        if self.state.link(id).is_some() {
            self.io.links[usize::from(id.index)].inline = Some(fd);
        }
    }

    /// The link is read by the core's ring driver: its resumes go to the driver.
    pub(crate) fn set_ring_reader(&mut self, id: LinkId) {
        if self.state.link(id).is_some() {
            self.io.links[usize::from(id.index)].ring = true;
        }
    }

    /// The core's ring, and what wakes its driver.
    pub(crate) fn set_hot(&mut self, hot: Rc<RefCell<HotRing>>, wake: Rc<Wake>) {
        self.io.hot = Some((hot, wake));
    }

    /// The core's ring, where it has one.
    pub(crate) fn hot(&self) -> Option<Rc<RefCell<HotRing>>> {
        self.io.hot.as_ref().map(|(hot, _)| Rc::clone(hot))
    }

    /// Moves the ring links that may read again into `out` (cleared first).
    pub(crate) fn take_ring_resumed(&mut self, out: &mut Vec<u16>) {
        out.clear();
        std::mem::swap(out, &mut self.io.ring_resumed);
    }

    /// Ring links wait to be visited.
    pub(crate) fn ring_resumed_waiting(&self) -> bool {
        !self.io.ring_resumed.is_empty()
    }

    /// Whether flushes write plaintext queues at once (`true` while the ring driver runs a
    /// pass) or leave them to the writer tasks.
    pub(crate) fn set_inline_now(&mut self, now: bool) {
        self.io.inline_now = now;
    }

    /// The driver parks (`true`) or runs again.
    pub(crate) fn set_driver_parked(&mut self, parked: bool) {
        self.io.driver_parked = parked;
    }

    /// Wakes the ring driver if it is parked.
    pub(crate) fn wake_driver(&self) {
        self.io.wake_driver();
    }

    /// The task that opens the HTTP connections packet handling asks for.
    pub(crate) fn set_dialler(&mut self, dialler: LocalSender<()>) {
        self.io.dialler = Some(dialler);
    }

    /// Removes a finished link ([`CoreState::remove_link`]) and drops its wake-ups.
    pub(crate) fn remove_link(&mut self, id: LinkId) {
        if self.state.link(id).is_none() {
            return;
        }
        self.state.remove_link(unix_ms(), id);
        self.io.links[usize::from(id.index)] = LinkIo::default();
    }

    /// Periodic work ([`CoreState::on_tick`]) at the current time, then a flush.
    pub(crate) fn tick(&mut self) {
        self.state.on_tick(unix_ms());
        self.flush();
    }

    /// Drains the state's outboxes: wakes the tasks of every link signalled, sends what waits
    /// for other cores (what finds a ring full waits for the next flush), and wakes the
    /// dialler when connections are wanted.
    pub(crate) fn flush(&mut self) {
        let io = &mut self.io;
        let half = self.state.config.limits().link_queue_bytes_max / 2;
        self.state.links.take_signals(&mut io.signals);
        let mut listed = false;
        for &(index, bits) in &io.signals {
            let Some(link) = io.links.get(usize::from(index)) else {
                continue;
            };
            let mut bits = bits;
            if bits & Signal::WRITER != 0 {
                if let Some(fd) = link.inline.filter(|_| io.inline_now) {
                    let (written, resume) = self
                        .state
                        .links
                        .write_inline(index, half, |b| send_now(fd, b));
                    if written {
                        bits &= !Signal::WRITER;
                    }
                    if resume {
                        bits |= Signal::RESUME;
                    }
                }
                if bits & Signal::WRITER != 0 {
                    if let Some(writer) = &link.writer {
                        let _ = writer.try_send(());
                    }
                }
            }
            if bits & (Signal::RESUME | Signal::ANSWERED) != 0 {
                if link.ring {
                    io.ring_resumed.push(index);
                    listed = true;
                } else if let Some(reader) = &link.reader {
                    let _ = reader.try_send(());
                }
            }
        }
        if listed {
            io.wake_driver();
        }
        let (senders, mesh_index) = (&io.mesh, &io.mesh_index);
        let drained = self.state.mesh.drain(|core, message| {
            let Some(senders) = senders else {
                return Err(Full::Gone);
            };
            match senders.try_send_to(mesh_index[core], message) {
                Ok(()) => Ok(()),
                Err(GlommioError::WouldBlock(ResourceType::Channel(message))) => {
                    Err(Full::Ring(message))
                }
                Err(_) => Err(Full::Gone),
            }
        });
        self.state.counters.cross_core_deferred += drained.deferred;
        self.state.counters.cross_core_dropped += drained.dropped;
        if !self.state.http_dials.is_empty() || !self.state.btp_dials.is_empty() {
            if let Some(dialler) = &io.dialler {
                let _ = dialler.try_send(());
            }
        }
    }
}
