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
