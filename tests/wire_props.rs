//! Property tests for the wire codec: emit then parse returns the same values, arbitrary and
//! mutated bytes never panic, and in-place rewrites keep a Prepare valid.

use ilp_router::wire::{
    timestamp, Address, Btp, BtpBody, BtpRepr, ContentType, ErrorCode, FulfillRepr, Packet,
    PrepareRepr, ProtocolData, RejectRepr,
};
use proptest::collection::vec;
use proptest::prelude::*;

const SCHEMES: [&str; 10] = [
    "g", "private", "example", "peer", "self", "test", "test1", "test2", "test3", "local",
];
const SEGMENT_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-";

/// Valid ILP addresses: a scheme and 1..6 segments of 1..12 characters.
fn address() -> impl Strategy<Value = Vec<u8>> {
    let segment = vec(prop::sample::select(SEGMENT_CHARS), 1..12);
    (prop::sample::select(&SCHEMES[..]), vec(segment, 1..6)).prop_map(|(scheme, segments)| {
        let mut out = scheme.as_bytes().to_vec();
        for s in segments {
            out.push(b'.');
            out.extend_from_slice(&s);
        }
        out
    })
}

fn expiry() -> impl Strategy<Value = i64> {
    timestamp::UNIX_MS_MIN..=timestamp::UNIX_MS_MAX
}

/// Data lengths that cross the 1-, 2- and 3-byte length prefixes.
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..130), vec(any::<u8>(), 250..300)]
}

fn emit_with(len: usize, emit: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    assert_eq!(emit(&mut out), len, "emit wrote buffer_len bytes");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prepare_round_trip(
        amount in any::<u64>(),
        expires_at in expiry(),
        condition in any::<[u8; 32]>(),
        destination in address(),
        data in data(),
    ) {
        let repr = PrepareRepr {
            amount,
            expires_at,
            execution_condition: &condition,
            destination: Address::new_checked(&destination).unwrap(),
            data: &data,
        };
        let bytes = emit_with(repr.buffer_len(), |b| repr.emit(b));
        let Ok(Packet::Prepare(p)) = Packet::new_checked(&bytes[..]) else {
            panic!("emitted Prepare does not parse");
        };
        prop_assert_eq!(p.repr(), repr);
        prop_assert_eq!(p.as_bytes().len(), bytes.len());
    }

    #[test]
    fn fulfill_round_trip(fulfillment in any::<[u8; 32]>(), data in data()) {
        let repr = FulfillRepr { fulfillment: &fulfillment, data: &data };
        let bytes = emit_with(repr.buffer_len(), |b| repr.emit(b));
        let Ok(Packet::Fulfill(f)) = Packet::new_checked(&bytes[..]) else {
            panic!("emitted Fulfill does not parse");
        };
        prop_assert_eq!(f.repr(), repr);
    }

    #[test]
    fn reject_round_trip(
        code in any::<[u8; 3]>().prop_map(|c| c.map(|b| b & 0x7f)),
        triggered_by in prop::option::of(address()),
        message in vec(any::<u8>(), 0..200),
        data in data(),
    ) {
        let repr = RejectRepr {
            code: ErrorCode(code),
            triggered_by: triggered_by.as_deref().map(|a| Address::new_checked(a).unwrap()),
            message: &message,
            data: &data,
        };
        let bytes = emit_with(repr.buffer_len(), |b| repr.emit(b));
        let Ok(Packet::Reject(r)) = Packet::new_checked(&bytes[..]) else {
            panic!("emitted Reject does not parse");
        };
        prop_assert_eq!(r.repr(), repr);
    }

    #[test]
    fn btp_round_trip(
        request_id in any::<u32>(),
        kind in 0u8..4,
        amount in any::<u64>(),
        name in vec(any::<u8>(), 0..20),
        error_data in vec(any::<u8>(), 0..150),
        at in (timestamp::UNIX_MS_MIN..=timestamp::UNIX_MS_MAX),
        entries in vec((vec(any::<u8>(), 0..10), any::<u8>(), vec(any::<u8>(), 0..140)), 0..5),
    ) {
        let triggered_at = timestamp::format_generalized(at);
        let body = match kind {
            0 => BtpBody::Response,
            1 => BtpBody::Message,
            2 => BtpBody::Transfer { amount },
            _ => BtpBody::Error { code: *b"F00", name: &name, triggered_at: &triggered_at, data: &error_data },
        };
        let protocol_data: Vec<ProtocolData<'_>> = entries
            .iter()
            .map(|(n, t, d)| ProtocolData { name: n, content_type: ContentType(*t), data: d })
            .collect();
        let repr = BtpRepr { request_id, body, protocol_data: &protocol_data };
        let bytes = emit_with(repr.buffer_len(), |b| repr.emit(b));
        let parsed = Btp::new_checked(&bytes[..]).expect("emitted BTP parses");
        prop_assert_eq!(parsed.request_id(), request_id);
        prop_assert_eq!(parsed.body(), body);
        prop_assert_eq!(parsed.protocol_data().collect::<Vec<_>>(), protocol_data);
    }

    #[test]
    fn rewrite_keeps_prepare_valid(
        destination in address(),
        data in data(),
        first in expiry(),
        rewrites in vec((any::<u64>(), any::<i64>()), 1..8),
    ) {
        let repr = PrepareRepr {
            amount: 1,
            expires_at: first,
            execution_condition: &[7; 32],
            destination: Address::new_checked(&destination).unwrap(),
            data: &data,
        };
        let mut bytes = emit_with(repr.buffer_len(), |b| repr.emit(b));
        for (amount, expires_at) in rewrites {
            let Ok(Packet::Prepare(mut p)) = Packet::new_checked(&mut bytes[..]) else {
                panic!("rewritten Prepare no longer parses");
            };
            p.set_amount(amount);
            p.set_expires_at(expires_at);
            let clamped = expires_at.clamp(timestamp::UNIX_MS_MIN, timestamp::UNIX_MS_MAX);
            let Ok(Packet::Prepare(again)) = Packet::new_checked(&bytes[..]) else {
                panic!("rewritten Prepare no longer parses");
            };
            prop_assert_eq!(again.amount(), amount);
            prop_assert_eq!(again.expires_at(), clamped);
            prop_assert_eq!(again.destination().as_bytes(), &destination[..]);
            prop_assert_eq!(again.data(), &data[..]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        let _ = Packet::new_checked(&bytes[..]);
        if let Ok(b) = Btp::new_checked(&bytes[..]) {
            prop_assert_eq!(b.protocol_data().count(), b.protocol_data_count());
        }
    }

    /// Mutations of a valid packet reach deeper than random bytes do.
    #[test]
    fn mutated_packets_never_panic(
        at in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let repr = PrepareRepr {
            amount: 107,
            expires_at: 1_513_992_100_549,
            execution_condition: &[0x74; 32],
            destination: Address::new_checked(b"example.alice").unwrap(),
            data: &[0x5d; 40],
        };
        let mut ilp = emit_with(repr.buffer_len(), |b| repr.emit(b));
        let entry = [ProtocolData { name: b"ilp", content_type: ContentType(0), data: &ilp }];
        let btp = BtpRepr { request_id: 9, body: BtpBody::Message, protocol_data: &entry };
        let mut frame = emit_with(btp.buffer_len(), |b| btp.emit(b));
        for (index, value) in &at {
            let i = index.index(ilp.len());
            ilp[i] = *value;
            let j = index.index(frame.len());
            frame[j] = *value;
        }
        let _ = Packet::new_checked(&ilp[..cut.index(ilp.len() + 1)]);
        let _ = Packet::new_checked(&ilp[..]);
        if let Ok(b) = Btp::new_checked(&frame[..cut.index(frame.len() + 1)]) {
            if let Some(inner) = b.ilp() {
                let _ = Packet::new_checked(inner);
            }
        }
    }
}
