//! Messages between cores. The full mesh of bounded channels is built once at start-up
//! (glommio's `channel_mesh`, `ring_capacity` slots per pair). The core writes into
//! [`MeshOut`], an outbox per other core, and the runtime drains it into the rings after each
//! batch; `ring_capacity` best-effort messages waiting for one core is back-pressure: the
//! sender answers T03 rather than block or grow.
//!
//! Packets that cross cores are copied into a `Vec` owned by the message. Steady-state traffic
//! stays on one core (peers open a connection per core and the router dials one per core), so
//! this copy is paid only by peers that keep a single connection.

use crate::engine::{LeaseMessage, PeerId, RateMessage, RejectReason, SlotId};

/// One message from a core to another.
#[derive(Debug)]
pub(crate) enum CrossMsg {
    /// Send this Prepare on one of your links to `to`; the answer goes back to `origin`.
    Forward {
        /// The core whose engine holds the slot.
        origin: usize,
        /// The slot on `origin`.
        slot: SlotId,
        /// The next hop.
        to: PeerId,
        /// The outgoing expiry (the link purges its request after it).
        expires_at: i64,
        /// The rewritten Prepare.
        packet: Vec<u8>,
    },
    /// The next hop's Fulfill or Reject for your slot.
    Reply {
        /// The slot on the receiving core.
        slot: SlotId,
        /// The ILP reply as received.
        packet: Vec<u8>,
    },
    /// Your Prepare could not be sent or answered below ILP.
    Failure {
        /// The slot on the receiving core.
        slot: SlotId,
        /// What to answer upstream.
        reason: RejectReason,
    },
    /// Your Prepare could not be sent, and not a byte of it was written: send it elsewhere
    /// or answer it.
    Unsent {
        /// The slot on the receiving core.
        slot: SlotId,
        /// What to answer upstream when it goes nowhere else.
        reason: RejectReason,
        /// Its outgoing expiry.
        expires_at: i64,
        /// The rewritten Prepare, back.
        packet: Vec<u8>,
    },
    /// Balance headroom traffic between shards.
    Lease(LeaseMessage),
    /// Rate-limit token traffic between cores.
    Rate(RateMessage),
    /// A link opened or closed on the sending core: refresh which peers are reachable
    /// (otherwise each core notices within a tick).
    LinksChanged,
}

/// This core's side of the mesh, sans I/O: an outbox per other core that the runtime drains
/// into the rings (`shard/io.rs`) after each batch and at every tick.
#[derive(Debug)]
pub(crate) struct MeshOut {
    /// Per destination core, oldest first. Best-effort messages (forwards, link news) are
    /// refused past `best_effort_max` waiting for that core, which is back-pressure (T03);
    /// messages that must arrive (replies, failures, leases, rate tokens) always wait, bounded
    /// by what can be owed: one reply per Prepare another core handed us (its in-flight
    /// table) plus the bounded lease and rate traffic.
    outbox: Vec<std::collections::VecDeque<Queued>>,
    best_effort_max: usize,
    waiting: usize,
}

#[derive(Debug)]
struct Queued {
    message: CrossMsg,
    reliable: bool,
    /// Already found its ring full once (counted once in `deferred`).
    deferred: bool,
}

/// Why a message could not go into a ring (see [`MeshOut::drain`]).
#[derive(Debug)]
pub(crate) enum Full {
    /// The ring is full: the message comes back, to wait.
    Ring(CrossMsg),
    /// The other core is gone (only at shutdown): the message is dropped.
    Gone,
}

/// What one [`MeshOut::drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Messages that must arrive and found their ring full for the first time.
    pub(crate) deferred: u64,
    /// Messages that must arrive and were dropped: their core is gone.
    pub(crate) dropped: u64,
}

impl MeshOut {
    /// An outbox for `cores` cores; at most `best_effort_max` best-effort messages wait for
    /// one core (`ring_capacity`).
    pub(crate) fn new(cores: usize, best_effort_max: usize) -> Self {
        MeshOut {
            outbox: (0..cores).map(|_| Default::default()).collect(),
            best_effort_max,
            waiting: 0,
        }
    }

    /// Best effort: false when `best_effort_max` messages already wait for `core`.
    pub(crate) fn send(&mut self, core: usize, message: CrossMsg) -> bool {
        let queue = &mut self.outbox[core];
        if queue.len() >= self.best_effort_max {
            return false;
        }
        queue.push_back(Queued {
            message,
            reliable: false,
            deferred: false,
        });
        self.waiting += 1;
        true
    }

    /// A message that must arrive: it waits, in order, until its ring has room.
    pub(crate) fn send_reliably(&mut self, core: usize, message: CrossMsg) {
        self.outbox[core].push_back(Queued {
            message,
            reliable: true,
            deferred: false,
        });
        self.waiting += 1;
    }

    /// Hands what waits to `try_send(core, message)`, in order per core; what finds its ring
    /// full stays for the next drain.
    pub(crate) fn drain(
        &mut self,
        mut try_send: impl FnMut(usize, CrossMsg) -> Result<(), Full>,
    ) -> Drained {
        let mut done = Drained::default();
        if self.waiting == 0 {
            return done;
        }
        for (core, queue) in self.outbox.iter_mut().enumerate() {
            while let Some(mut queued) = queue.pop_front() {
                match try_send(core, queued.message) {
                    Ok(()) => {}
                    Err(Full::Ring(message)) => {
                        if queued.reliable && !queued.deferred {
                            done.deferred += 1;
                        }
                        queued.message = message;
                        queued.deferred = true;
                        queue.push_front(queued);
                        break;
                    }
                    Err(Full::Gone) => done.dropped += u64::from(queued.reliable),
                }
            }
        }
        self.waiting = self.outbox.iter().map(|q| q.len()).sum();
        done
    }

    /// Messages still waiting for room.
    pub(crate) fn backlog_len(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn reply(slot: u32) -> CrossMsg {
        CrossMsg::Reply {
            slot: SlotId::from_parts(slot, 1),
            packet: Vec::new(),
        }
    }

    #[test]
    fn best_effort_is_refused_when_full_and_what_must_arrive_waits_in_order() {
        let mut mesh = MeshOut::new(2, 1);
        assert!(mesh.send(1, CrossMsg::LinksChanged));
        assert!(
            !mesh.send(1, CrossMsg::LinksChanged),
            "one best-effort slot"
        );
        mesh.send_reliably(1, reply(1));
        mesh.send_reliably(1, reply(2));
        assert_eq!(mesh.backlog_len(), 3);
        // A ring with room for one message per drain.
        let mut sent = Vec::new();
        for _ in 0..3 {
            let mut room = 1;
            let drained = mesh.drain(|core, message| {
                if room == 0 {
                    return Err(Full::Ring(message));
                }
                room -= 1;
                sent.push((core, message));
                Ok(())
            });
            assert_eq!(drained.dropped, 0);
        }
        assert_eq!(mesh.backlog_len(), 0);
        let slots: Vec<Option<u32>> = sent
            .iter()
            .map(|(_, m)| match m {
                CrossMsg::Reply { slot, .. } => Some(slot.index()),
                _ => None,
            })
            .collect();
        assert_eq!(slots, [None, Some(1), Some(2)], "in order");
    }

    #[test]
    fn a_deferred_message_is_counted_once_and_a_gone_core_drops_only_what_must_arrive() {
        let mut mesh = MeshOut::new(2, 4);
        mesh.send_reliably(1, reply(1));
        let full = |_: usize, message: CrossMsg| Err(Full::Ring(message));
        assert_eq!(mesh.drain(full).deferred, 1);
        assert_eq!(mesh.drain(full).deferred, 0, "counted once");
        assert!(mesh.send(1, CrossMsg::LinksChanged));
        let drained = mesh.drain(|_, _| Err(Full::Gone));
        assert_eq!(drained.dropped, 1);
        assert_eq!(mesh.backlog_len(), 0);
    }
}
