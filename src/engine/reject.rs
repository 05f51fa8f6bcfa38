//! Why the engine refuses a Prepare: one small `Copy` enum, mapped to an ILP error code (RFC 27
//! "Error Codes"; each variant says when we use it) and a static message. These are *local*
//! Rejects: we create them and name ourselves in `triggeredBy`. Rejects that come back from a
//! next hop are *relayed* byte for byte and never pass through this type.

use crate::wire::{Address, AmountTooLarge, ErrorCode, RejectRepr};

/// The reason for a Reject the engine creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// F01: the Prepare did not decode.
    InvalidPacket,
    /// F01: a peer-protocol destination without the peer-protocol condition.
    PeerProtocolCondition,
    /// F02: no route, or a destination we never forward (`peer.*`, `self.*`, our own address,
    /// the other network family).
    Unreachable,
    /// F05: the next hop's fulfillment does not hash to the condition.
    WrongCondition,
    /// F08: more than the incoming peer's maximum packet amount (amounts in its units), or the
    /// converted amount does not fit 64 bits (no data then).
    AmountTooLarge(Option<AmountTooLarge>),
    /// T00: no exchange rate between the two assets, or the next hop's reply did not decode.
    Internal,
    /// T01: the route's next hop has no link up.
    PeerUnreachable,
    /// T03: the in-flight table (or a cross-core ring) is full.
    ConnectorBusy,
    /// T04: the hold would take the incoming peer past its maximum balance.
    InsufficientLiquidity,
    /// T05: over a packet rate limit (ours for the incoming peer, or the next hop's: an HTTP
    /// 429).
    RateLimited,
    /// R00: the next hop did not answer before the outgoing expiry.
    TimedOut,
    /// R01: a non-zero amount converted to zero.
    InsufficientSourceAmount,
    /// R02: already expired, or too little time left to subtract our margin.
    InsufficientTimeout,
    /// F00: `peer.config` (ILDCP) from a peer that is not our child (RFC 31: only children
    /// learn their address from us; the JS connector answers F00 too).
    NotAChild,
}

impl RejectReason {
    /// What a BTP Error answering our Prepare means upstream (RFC 23 error codes, our
    /// mapping; the JS connector answers F02 for any): T00 UnreachableError is T01 Peer
    /// Unreachable, any other code F02 Unreachable.
    pub fn from_btp_error(code: &[u8; 3]) -> RejectReason {
        match code {
            b"T00" => RejectReason::PeerUnreachable,
            _ => RejectReason::Unreachable,
        }
    }

    /// What an HTTP status answering our ILP-over-HTTP POST means (RFC 35 client mapping):
    /// `None` for 200, whose body is the ILP reply; 429 T05; 400 and 413 F01 (our request was
    /// refused as malformed or too large); 5xx T00; any other status (401, 403, 404, …) F02.
    pub fn from_http_status(status: u16) -> Option<RejectReason> {
        match status {
            200 => None,
            429 => Some(RejectReason::RateLimited),
            400 | 413 => Some(RejectReason::InvalidPacket),
            500..=599 => Some(RejectReason::Internal),
            _ => Some(RejectReason::Unreachable),
        }
    }

    /// The ILP error code.
    pub fn code(self) -> ErrorCode {
        match self {
            RejectReason::InvalidPacket | RejectReason::PeerProtocolCondition => {
                ErrorCode::F01_INVALID_PACKET
            }
            RejectReason::Unreachable => ErrorCode::F02_UNREACHABLE,
            RejectReason::WrongCondition => ErrorCode::F05_WRONG_CONDITION,
            RejectReason::AmountTooLarge(_) => ErrorCode::F08_AMOUNT_TOO_LARGE,
            RejectReason::Internal => ErrorCode::T00_INTERNAL_ERROR,
            RejectReason::PeerUnreachable => ErrorCode::T01_PEER_UNREACHABLE,
            RejectReason::ConnectorBusy => ErrorCode::T03_CONNECTOR_BUSY,
            RejectReason::InsufficientLiquidity => ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
            RejectReason::RateLimited => ErrorCode::T05_RATE_LIMITED,
            RejectReason::TimedOut => ErrorCode::R00_TRANSFER_TIMED_OUT,
            RejectReason::InsufficientSourceAmount => ErrorCode::R01_INSUFFICIENT_SOURCE_AMOUNT,
            RejectReason::InsufficientTimeout => ErrorCode::R02_INSUFFICIENT_TIMEOUT,
            RejectReason::NotAChild => ErrorCode::F00_BAD_REQUEST,
        }
    }

    /// The message we put in the Reject.
    pub fn message(self) -> &'static [u8] {
        match self {
            RejectReason::InvalidPacket => b"invalid packet",
            RejectReason::PeerProtocolCondition => b"condition must be the peer protocol condition",
            RejectReason::Unreachable => b"no route found",
            RejectReason::WrongCondition => b"fulfillment did not match the condition",
            RejectReason::AmountTooLarge(_) => b"amount too large",
            RejectReason::Internal => b"internal error",
            RejectReason::PeerUnreachable => b"next hop unreachable",
            RejectReason::ConnectorBusy => b"connector busy",
            RejectReason::InsufficientLiquidity => b"exceeded maximum balance",
            RejectReason::RateLimited => b"rate limited",
            RejectReason::TimedOut => b"packet expired",
            RejectReason::InsufficientSourceAmount => b"amount too small to forward",
            RejectReason::InsufficientTimeout => b"insufficient time left to forward",
            RejectReason::NotAChild => b"peer.config is answered for children only",
        }
    }

    /// The `data` of this Reject: the F08 details, or nothing.
    fn data(self) -> ([u8; AmountTooLarge::LEN], usize) {
        match self {
            RejectReason::AmountTooLarge(Some(details)) => {
                (details.to_bytes(), AmountTooLarge::LEN)
            }
            _ => ([0; AmountTooLarge::LEN], 0),
        }
    }

    fn repr<'a>(self, own_address: Address<'a>, data: &'a [u8]) -> RejectRepr<'a> {
        RejectRepr {
            code: self.code(),
            triggered_by: Some(own_address),
            message: self.message(),
            data,
        }
    }

    /// Writes the Reject at the start of `buf`, triggered by `own_address`; returns its length.
    /// The longest one takes [`REJECT_LEN_MAX`] bytes plus the address.
    pub fn emit(self, own_address: Address<'_>, buf: &mut [u8]) -> usize {
        let (data, len) = self.data();
        self.repr(own_address, &data[..len]).emit(buf)
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn emitted_len(self, own_address: Address<'_>) -> usize {
        let (data, len) = self.data();
        self.repr(own_address, &data[..len]).buffer_len()
    }
}

/// Enough for any local Reject with an address of up to 1023 bytes.
pub const REJECT_LEN_MAX: usize = 1 + 3 + 3 + 3 + 1023 + 1 + 64 + 1 + 16;

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::{Packet, ADDRESS_LEN_MAX};

    #[test]
    fn every_reason_emits_a_valid_reject_naming_us() {
        let long = [b"g.".as_slice(), &[b'a'; ADDRESS_LEN_MAX - 2]].concat();
        for address in [&b"g.router"[..], &long] {
            let own = Address::new_checked(address).unwrap();
            for reason in [
                RejectReason::InvalidPacket,
                RejectReason::PeerProtocolCondition,
                RejectReason::Unreachable,
                RejectReason::WrongCondition,
                RejectReason::AmountTooLarge(None),
                RejectReason::AmountTooLarge(Some(AmountTooLarge {
                    received: 1001,
                    maximum: 1000,
                })),
                RejectReason::Internal,
                RejectReason::PeerUnreachable,
                RejectReason::ConnectorBusy,
                RejectReason::InsufficientLiquidity,
                RejectReason::RateLimited,
                RejectReason::TimedOut,
                RejectReason::InsufficientSourceAmount,
                RejectReason::InsufficientTimeout,
            ] {
                let mut buf = [0u8; REJECT_LEN_MAX];
                let n = reason.emit(own, &mut buf);
                assert_eq!(n, reason.emitted_len(own));
                let Ok(Packet::Reject(r)) = Packet::new_checked(&buf[..n]) else {
                    panic!("{reason:?} did not emit a Reject");
                };
                assert_eq!(r.code(), reason.code());
                assert_eq!(r.triggered_by(), Some(own));
                assert!(r.message().len() <= 64);
                match reason {
                    RejectReason::AmountTooLarge(Some(d)) => {
                        assert_eq!(AmountTooLarge::from_bytes(r.data()), Some(d))
                    }
                    _ => assert!(r.data().is_empty()),
                }
            }
        }
    }
}

#[cfg(test)]
mod transport_mappings {
    use super::*;

    #[test]
    fn btp_errors() {
        assert_eq!(
            RejectReason::from_btp_error(b"T00"),
            RejectReason::PeerUnreachable
        );
        assert_eq!(
            RejectReason::from_btp_error(b"F00"),
            RejectReason::Unreachable
        );
        assert_eq!(
            RejectReason::from_btp_error(b"T99"),
            RejectReason::Unreachable
        );
    }

    #[test]
    fn http_statuses() {
        let code = |status| RejectReason::from_http_status(status).map(|r| r.code());
        assert_eq!(code(200), None);
        assert_eq!(code(429), Some(ErrorCode::T05_RATE_LIMITED));
        assert_eq!(code(400), Some(ErrorCode::F01_INVALID_PACKET));
        assert_eq!(code(413), Some(ErrorCode::F01_INVALID_PACKET));
        assert_eq!(code(500), Some(ErrorCode::T00_INTERNAL_ERROR));
        assert_eq!(code(503), Some(ErrorCode::T00_INTERNAL_ERROR));
        for status in [401, 403, 404, 302] {
            assert_eq!(code(status), Some(ErrorCode::F02_UNREACHABLE), "{status}");
        }
    }
}
