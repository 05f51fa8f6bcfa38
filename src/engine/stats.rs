//! Per-peer traffic counters of one core, for the metrics: Prepares, Fulfills, Rejects by
//! code and fulfilled amounts in each direction, and a histogram of the next hop's round-trip
//! time. Plain integers in one array entry per peer, incremented on the packet path (a few
//! adds per packet, no lock, no allocation); the runtime copies them out when the admin side
//! asks. Labels come only from the config's peer names and the fixed code list below, never
//! from an ILP address, so the metrics' cardinality is bounded by the config.

use crate::wire::ErrorCode;

/// Index of the incoming direction: traffic from the peer (its Prepares, our answers to them).
pub const INCOMING: usize = 0;
/// Index of the outgoing direction: traffic to the peer (Prepares we forward, its answers).
pub const OUTGOING: usize = 1;

/// The codes counted by name (RFC 27); any other code counts as [`CODE_OTHER`].
pub const CODES: [ErrorCode; 22] = [
    ErrorCode::F00_BAD_REQUEST,
    ErrorCode::F01_INVALID_PACKET,
    ErrorCode::F02_UNREACHABLE,
    ErrorCode::F03_INVALID_AMOUNT,
    ErrorCode::F04_INSUFFICIENT_DESTINATION_AMOUNT,
    ErrorCode::F05_WRONG_CONDITION,
    ErrorCode::F06_UNEXPECTED_PAYMENT,
    ErrorCode::F07_CANNOT_RECEIVE,
    ErrorCode::F08_AMOUNT_TOO_LARGE,
    ErrorCode::F09_INVALID_PEER_RESPONSE,
    ErrorCode::F99_APPLICATION_ERROR,
    ErrorCode::T00_INTERNAL_ERROR,
    ErrorCode::T01_PEER_UNREACHABLE,
    ErrorCode::T02_PEER_BUSY,
    ErrorCode::T03_CONNECTOR_BUSY,
    ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
    ErrorCode::T05_RATE_LIMITED,
    ErrorCode::T99_APPLICATION_ERROR,
    ErrorCode::R00_TRANSFER_TIMED_OUT,
    ErrorCode::R01_INSUFFICIENT_SOURCE_AMOUNT,
    ErrorCode::R02_INSUFFICIENT_TIMEOUT,
    ErrorCode::R99_APPLICATION_ERROR,
];

/// The slot of codes not in [`CODES`] (label `code="other"`).
pub const CODE_OTHER: usize = CODES.len();

/// Upper bounds of the round-trip buckets, in ms (the engine's clock; a round trip under
/// 1 ms counts in the first). One more bucket counts what is longer than the last.
pub const ROUND_TRIP_BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
];

/// The slot of `code` in a rejects array.
#[inline]
pub fn code_index(code: ErrorCode) -> usize {
    // Known codes are F00–F09, F99, T00–T05, T99, R00–R02, R99.
    let [class, tens, units] = code.0;
    let n = match (tens, units) {
        (b'0', b'0'..=b'9') => usize::from(units - b'0'),
        (b'9', b'9') => 99,
        _ => return CODE_OTHER,
    };
    let index = match (class, n) {
        (b'F', 0..=9) => n,
        (b'F', 99) => 10,
        (b'T', 0..=5) => 11 + n,
        (b'T', 99) => 17,
        (b'R', 0..=2) => 18 + n,
        (b'R', 99) => 21,
        _ => CODE_OTHER,
    };
    debug_assert!(index == CODE_OTHER || CODES[index] == code);
    index
}

/// One peer's counters on one core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Prepares from the peer ([`INCOMING`]); forwarded to it ([`OUTGOING`], a Prepare moved
    /// to another backend before it was written counts for both).
    pub prepares: [u64; 2],
    /// Fulfills we relayed to the peer; Fulfills (valid, in time) it sent us.
    pub fulfills: [u64; 2],
    /// Amounts of those Fulfills, in the peer's units.
    pub amount: [u128; 2],
    /// Rejects we sent the peer (ours and relayed) by code; Rejects it sent us.
    pub rejects: [[u64; CODES.len() + 1]; 2],
    /// Answers from the peer (as next hop) by round-trip time: one count per bucket of
    /// [`ROUND_TRIP_BOUNDS_MS`], then those above the last bound.
    pub round_trip: [u64; ROUND_TRIP_BOUNDS_MS.len() + 1],
    /// The sum of those round trips, ms.
    pub round_trip_sum_ms: u64,
}

impl PeerStats {
    /// Counts an answer from this peer, `ms` after we sent it the Prepare.
    #[inline]
    pub fn round_trip(&mut self, ms: u64) {
        let bucket = ROUND_TRIP_BOUNDS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(ROUND_TRIP_BOUNDS_MS.len());
        self.round_trip[bucket] += 1;
        self.round_trip_sum_ms += ms;
    }

    /// Adds `other` (another core's counters for the same peer).
    pub fn add(&mut self, other: &PeerStats) {
        for d in [INCOMING, OUTGOING] {
            self.prepares[d] += other.prepares[d];
            self.fulfills[d] += other.fulfills[d];
            self.amount[d] += other.amount[d];
            for (a, b) in self.rejects[d].iter_mut().zip(&other.rejects[d]) {
                *a += b;
            }
        }
        for (a, b) in self.round_trip.iter_mut().zip(&other.round_trip) {
            *a += b;
        }
        self.round_trip_sum_ms += other.round_trip_sum_ms;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_known_code_has_its_slot_and_others_share_one() {
        for (i, &code) in CODES.iter().enumerate() {
            assert_eq!(code_index(code), i, "{code:?}");
        }
        for other in [b"F10", b"T06", b"R03", b"X00", b"F9x", b"\0\0\0", b"T98"] {
            assert_eq!(code_index(ErrorCode(*other)), CODE_OTHER);
        }
    }

    #[test]
    fn round_trips_fall_in_their_buckets() {
        let mut stats = PeerStats::default();
        for ms in [0, 1, 2, 3, 30_000, 30_001] {
            stats.round_trip(ms);
        }
        assert_eq!(stats.round_trip[0], 2);
        assert_eq!(stats.round_trip[1], 1);
        assert_eq!(stats.round_trip[2], 1);
        assert_eq!(stats.round_trip[13], 1);
        assert_eq!(stats.round_trip[14], 1);
        assert_eq!(stats.round_trip_sum_ms, 60_007);
        let mut sum = PeerStats::default();
        sum.add(&stats);
        sum.add(&stats);
        assert_eq!(sum.round_trip[0], 4);
    }
}
