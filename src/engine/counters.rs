//! The engine's own tallies, read by the runtime for the log and the metrics.

use super::RejectReason;

/// Counters, read by the control plane for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Prepares handed to [`Engine::handle_prepare`].
    pub prepares: u64,
    /// Prepares forwarded.
    pub forwarded: u64,
    /// Valid, timely Fulfills relayed.
    pub fulfilled: u64,
    /// Rejects from next hops relayed.
    pub relayed_rejects: u64,
    /// Local Rejects by code index (see [`Counters::reject_index`]).
    pub local_rejects: [u64; 14],
    /// Replies that came after the slot expired or for unknown slots: dropped, never credited.
    pub late_replies: u64,
    /// Fulfills whose hash did not match (answered F05).
    pub wrong_fulfillments: u64,
    /// Replies that did not decode (answered T00).
    pub invalid_replies: u64,
    /// Prepares expired on the wheel (answered R00).
    pub expired: u64,
    /// Prepares whose hold waited for headroom from other cores.
    pub waited: u64,
    /// `peer.config` requests (ILDCP) answered.
    pub peer_config: u64,
}

impl Counters {
    /// The index of `reason` in [`Counters::local_rejects`].
    pub fn reject_index(reason: RejectReason) -> usize {
        match reason {
            RejectReason::InvalidPacket => 0,
            RejectReason::PeerProtocolCondition => 1,
            RejectReason::Unreachable => 2,
            RejectReason::WrongCondition => 3,
            RejectReason::AmountTooLarge(_) => 4,
            RejectReason::Internal => 5,
            RejectReason::PeerUnreachable => 6,
            RejectReason::ConnectorBusy => 7,
            RejectReason::InsufficientLiquidity => 8,
            RejectReason::TimedOut => 9,
            RejectReason::InsufficientSourceAmount => 10,
            RejectReason::InsufficientTimeout => 11,
            RejectReason::RateLimited => 12,
            RejectReason::NotAChild => 13,
        }
    }
}
