//! Messages between cores. The full mesh of bounded channels is built once at start-up
//! (glommio's `channel_mesh`, `ring_capacity` slots per pair); a full channel is back-pressure:
//! the sender answers T03 rather than block or grow.
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
    /// Balance headroom traffic between shards.
    Lease(LeaseMessage),
    /// Rate-limit token traffic between cores.
    Rate(RateMessage),
    /// A link opened or closed on the sending core: refresh which peers are reachable
    /// (otherwise each core notices within a tick).
    LinksChanged,
}

/// This core's side of the mesh: sends, and keeps what must arrive until it can.
pub(crate) struct MeshOut {
    senders: Option<glommio::channels::channel_mesh::Senders<CrossMsg>>,
    /// Mesh index of each core.
    index: Vec<usize>,
    /// Messages that must arrive (replies, failures, leases, rate tokens) and found the ring
    /// full: retried at every flush and tick, never dropped. Bounded by what can be owed: one
    /// reply per Prepare another core handed us (its in-flight table) plus the bounded lease
    /// and rate traffic.
    backlog: std::collections::VecDeque<(usize, CrossMsg)>,
}

impl std::fmt::Debug for MeshOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshOut")
            .field("backlog", &self.backlog.len())
            .finish_non_exhaustive()
    }
}

/// What became of a message [`MeshOut::send_reliably`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// In the ring.
    Now,
    /// Waiting in the backlog for room.
    Deferred,
    /// The other core is gone (only at shutdown) or there is no mesh: dropped.
    Dropped,
}

impl MeshOut {
    pub(crate) fn new(
        senders: Option<glommio::channels::channel_mesh::Senders<CrossMsg>>,
        index: Vec<usize>,
    ) -> Self {
        MeshOut {
            senders,
            index,
            backlog: std::collections::VecDeque::new(),
        }
    }

    /// Sends now, or hands the message back when the ring is full (`Err(Some)`); `Err(None)`
    /// when the other core is gone or there is no mesh.
    fn try_send(&self, core: usize, message: CrossMsg) -> Result<(), Option<CrossMsg>> {
        use glommio::{GlommioError, ResourceType};
        let Some(senders) = self.senders.as_ref() else {
            return Err(None);
        };
        match senders.try_send_to(self.index[core], message) {
            Ok(()) => Ok(()),
            Err(GlommioError::WouldBlock(ResourceType::Channel(message))) => Err(Some(message)),
            Err(_) => Err(None),
        }
    }

    /// Best effort: false when the ring is full (the news can wait for a tick).
    pub(crate) fn send(&self, core: usize, message: CrossMsg) -> bool {
        self.try_send(core, message).is_ok()
    }

    /// Sends a message that must arrive: if the ring is full it waits in the backlog, behind
    /// any other message already waiting.
    pub(crate) fn send_reliably(&mut self, core: usize, message: CrossMsg) -> Sent {
        if !self.backlog.is_empty() {
            self.backlog.push_back((core, message));
            return Sent::Deferred;
        }
        match self.try_send(core, message) {
            Ok(()) => Sent::Now,
            Err(Some(message)) => {
                self.backlog.push_back((core, message));
                Sent::Deferred
            }
            Err(None) => Sent::Dropped,
        }
    }

    /// Retries the backlog once, in order; what still finds its ring full stays. Returns how
    /// many were dropped (their core is gone).
    pub(crate) fn retry(&mut self) -> u64 {
        let mut dropped = 0;
        for _ in 0..self.backlog.len() {
            let Some((core, message)) = self.backlog.pop_front() else {
                break;
            };
            match self.try_send(core, message) {
                Ok(()) => {}
                Err(Some(message)) => self.backlog.push_back((core, message)),
                Err(None) => dropped += 1,
            }
        }
        dropped
    }

    /// Messages still waiting for room.
    pub(crate) fn backlog_len(&self) -> usize {
        self.backlog.len()
    }
}
