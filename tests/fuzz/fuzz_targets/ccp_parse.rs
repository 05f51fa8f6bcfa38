//! Fuzzes the CCP decoders: `RouteControlRequest::decode` and `RouteUpdateRequest::decode` on
//! the raw input as a payload, and `Request::from_prepare` when the input is an ILP Prepare.
//!
//! Every payload a decoder accepts must also satisfy:
//! - `to_bytes()` is `encoded_len()` bytes, and `emit` writes exactly those bytes and nothing
//!   past them;
//! - those bytes are the start of the input: the encoding is canonical (the decoder takes
//!   canonical lengths and counts only and keeps every byte it reads; only bytes after the
//!   last field are dropped);
//! - they decode to the same value, and encoding that gives the same bytes (a fixed point);
//! - the input with bytes appended decodes to the same value.
//!
//! For an input that is a Prepare, `Request::from_prepare` refuses it with `NotCcp` unless
//! the destination is exactly `peer.route.control` or `peer.route.update`, then with
//! `InvalidCondition` unless the condition is the peer-protocol one, and otherwise gives what
//! that destination's decoder gives for the Prepare's data.
#![no_main]

use ilp_router::control::ccp::{
    Error, Request, RouteControlRequest, RouteUpdateRequest, CCP_CONTROL_DESTINATION,
    CCP_UPDATE_DESTINATION,
};
use ilp_router::engine::PEER_PROTOCOL_CONDITION;
use ilp_router::wire::Prepare;
use libfuzzer_sys::fuzz_target;

/// Bytes after `encoded_len()` that `emit` must leave alone.
const GUARD: usize = 16;
const GUARD_BYTE: u8 = 0xa5;

/// What the two payload types share, for one set of checks.
trait Payload: Sized + PartialEq + core::fmt::Debug {
    fn decode(bytes: &[u8]) -> Result<Self, Error>;
    fn encoded_len(&self) -> usize;
    fn emit(&self, buf: &mut [u8]) -> usize;
    fn to_bytes(&self) -> Vec<u8>;
}

impl Payload for RouteControlRequest {
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        RouteControlRequest::decode(bytes)
    }
    fn encoded_len(&self) -> usize {
        RouteControlRequest::encoded_len(self)
    }
    fn emit(&self, buf: &mut [u8]) -> usize {
        RouteControlRequest::emit(self, buf)
    }
    fn to_bytes(&self) -> Vec<u8> {
        RouteControlRequest::to_bytes(self)
    }
}

impl Payload for RouteUpdateRequest {
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        RouteUpdateRequest::decode(bytes)
    }
    fn encoded_len(&self) -> usize {
        RouteUpdateRequest::encoded_len(self)
    }
    fn emit(&self, buf: &mut [u8]) -> usize {
        RouteUpdateRequest::emit(self, buf)
    }
    fn to_bytes(&self) -> Vec<u8> {
        RouteUpdateRequest::to_bytes(self)
    }
}

fuzz_target!(|data: &[u8]| {
    check::<RouteControlRequest>(data);
    check::<RouteUpdateRequest>(data);
    if let Ok(prepare) = Prepare::new_checked(data) {
        check_prepare(&prepare);
    }
});

fn check<P: Payload>(data: &[u8]) {
    let Ok(value) = P::decode(data) else {
        return;
    };
    let len = value.encoded_len();
    let bytes = value.to_bytes();
    assert_eq!(bytes.len(), len, "to_bytes is not encoded_len long");
    assert!(len <= data.len(), "encoding longer than its input");
    assert_eq!(
        &data[..len],
        &bytes[..],
        "encoding is not the start of its input"
    );

    let mut out = vec![GUARD_BYTE; len + GUARD];
    assert_eq!(value.emit(&mut out), len, "emit wrote another length");
    assert!(
        out[len..].iter().all(|&b| b == GUARD_BYTE),
        "emit wrote past encoded_len"
    );
    assert_eq!(&out[..len], &bytes[..], "emit and to_bytes differ");

    let again = P::decode(&bytes).unwrap_or_else(|e| panic!("own encoding refused: {e}"));
    assert_eq!(again, value, "own encoding decodes to another value");
    assert_eq!(again.to_bytes(), bytes, "encoding is not a fixed point");

    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0x01, 0x00, 0xff, 0x80]);
    assert_eq!(
        P::decode(&longer).as_ref(),
        Ok(&value),
        "bytes after the last field changed the value"
    );
}

fn check_prepare(prepare: &Prepare<&[u8]>) {
    let result = Request::from_prepare(prepare);
    let destination = prepare.destination().as_bytes();
    if destination != CCP_CONTROL_DESTINATION && destination != CCP_UPDATE_DESTINATION {
        assert_eq!(result, Err(Error::NotCcp));
    } else if *prepare.execution_condition() != PEER_PROTOCOL_CONDITION {
        assert_eq!(result, Err(Error::InvalidCondition));
    } else if destination == CCP_CONTROL_DESTINATION {
        let direct = RouteControlRequest::decode(prepare.data()).map(Request::Control);
        assert_eq!(result, direct);
    } else {
        let direct = RouteUpdateRequest::decode(prepare.data()).map(Request::Update);
        assert_eq!(result, direct);
    }
}
