//! RFC 6455 WebSocket, sans-IO: the opening handshake and the framing that carries BTP.
//!
//! # Contract
//!
//! Nothing here reads a socket, a clock or an RNG. The driver owns the read buffer, feeds it in,
//! and writes out what these functions put into caller-supplied output slices. After start-up
//! nothing allocates: [`MessageAssembler::new`] allocates its reassembly buffer once, per link.
//!
//! - **Handshake, server:** [`parse_upgrade_request`] on the bytes read so far returns `Ok(None)`
//!   until the header block (ending in `\r\n\r\n`) is complete, then the validated
//!   [`UpgradeRequest`], whose [`len`](UpgradeRequest::len) is where WebSocket frames start in
//!   the same buffer. Answer with [`write_upgrade_response`], or refuse with
//!   [`HandshakeError::write_answer`] (its status, `Connection: close`) and close.
//! - **Handshake, client:** [`write_upgrade_request`] with a fresh random 16-byte nonce, then
//!   [`parse_upgrade_response`] with the same nonce. The server may send frames right behind its
//!   `101`, so frames start at the returned length, not at the next read.
//! - **Frames in:** [`FrameDecoder::decode`] reads one frame from the front of the buffer and
//!   unmasks its payload in place (so it must be called once per frame: the caller advances by
//!   [`Frame::len`] before calling again). [`MessageAssembler::handle_frame`] turns frames into
//!   [`Message`]s; an unfragmented binary frame is handed back as a slice of the read buffer
//!   (zero-copy, mutable so the engine can rewrite a Prepare in place); only fragmented messages
//!   are copied into the assembler.
//! - **Frames out:** [`write_frame_header`] writes a header into the bytes in front of a payload
//!   the caller has already placed, and a client then masks the payload in place with
//!   [`apply_mask`]. [`write_close`], [`write_ping`] and [`write_pong`] write whole control frames.
//! - **Errors:** a peer's bytes never panic. They become a [`HandshakeError`] (answer with an
//!   HTTP error and close) or a [`WsError`] (send [`write_close`] with
//!   [`WsError::close_code`], then close). Functions panic only on caller bugs (an output buffer
//!   too small, a control payload over 125 bytes, a frame range that is not from this buffer),
//!   each documented under `# Panics`.
//!
//! # Layout
//!
//! | file | what it owns |
//! | --- | --- |
//! | `mod.rs` | this contract, the limits, the re-exports (every item is used as `websocket::…`) |
//! | `handshake.rs` | §4: [`parse_upgrade_request`], [`parse_upgrade_response`] and their writers, on [`crate::link::http1`] |
//! | `frame.rs` | §5: [`FrameDecoder`], [`frame_len_hint`], [`apply_mask`], the frame writers |
//! | `message.rs` | §5.4–5.5: [`MessageAssembler`] and [`Message`] |
//!
//! Each file keeps its tests beside its code; the helpers they share are in `mod.rs`.
//!
//! # Driving it from a read buffer
//!
//! The read buffer must hold one whole frame: size it at least `FRAME_HEADER_LEN_MAX +
//! frame_len_max`. After each read, decode frames from the front until `Ok(None)`, then move the
//! unread tail to the front (or, if [`frame_len_hint`] says the next frame does not fit in the
//! space left, move it before the next read). [`crate::link::buf::ReadBuf`] does the
//! bookkeeping, and [`crate::link::buf::write_binary_frame`] the sending side.
//!
//! ```
//! use ilp_router::link::websocket::{FrameDecoder, Message, MessageAssembler, Role};
//!
//! let decoder = FrameDecoder::new(Role::Server, 65_536);
//! let mut assembler = MessageAssembler::new(65_536);
//! // RFC 6455 §5.7: a masked text frame "Hello", then a masked binary frame [1, 2, 3].
//! let mut read_buf = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
//!                         0x82, 0x83, 0, 0, 0, 0, 1, 2, 3];
//! let mut start = 0;
//! let mut binary = Vec::new();
//! while let Some(frame) = decoder.decode(&mut read_buf[start..]).expect("well formed") {
//!     let consumed = frame.len;
//!     match assembler.handle_frame(&mut read_buf[start..], &frame).expect("well formed") {
//!         Message::Binary(bytes) => binary.extend_from_slice(bytes), // hand to BTP
//!         Message::Text | Message::Fragment | Message::Pong(_) => {}
//!         Message::Ping(_payload) => {}  // write_pong(payload, ...)
//!         Message::Close(_close) => break, // write_close(close.reply_code(), ...), then shut down
//!     }
//!     start += consumed;
//! }
//! assert_eq!(binary, [1, 2, 3]);
//! read_buf.drain(..start); // keep a partial frame for the next read
//! ```
//!
//! # Supported
//!
//! HTTP/1.1 `GET` upgrade with `Sec-WebSocket-Version: 13`; any request path (`/` for
//! ilp-plugin-btp, `/accounts/{name}/ilp/btp` for interledger-rs, see
//! [`UpgradeRequest::account_from_path`]); binary and text data frames, fragmentation, ping, pong
//! and close; both roles with the RFC's masking rules. BTP puts every packet in exactly one binary
//! message (as ilp-plugin-btp and interledger-rs do); text messages are reported as
//! [`Message::Text`] without their content, so that the link can ignore them as interledger-rs
//! does.
//!
//! # Parsing choices
//!
//! - Non-minimal payload-length encodings (a 16-bit length ≤ 125, a 64-bit length ≤ 65 535) are
//!   accepted: the RFC says senders MUST use the minimal form, but refusing it buys nothing. We
//!   always emit the minimal form.
//! - The handshake key must be 24 characters, 22 from the base64 alphabet followed by `==`; the
//!   4 unused bits of the last character are not checked.
//! - The head is read by httparse ([`crate::link::http1`]) with `\r\n` line ends only: a bare
//!   `\r` or `\n`, or a blank line before the request line, is malformed.
//! - Header names are case-insensitive; `Upgrade` and `Connection` are comma lists and may be
//!   repeated; `Host`, `Sec-WebSocket-Key` and `Sec-WebSocket-Version` must appear exactly once.
//!   Obsolete line folding and control characters in a header are refused. Only origin-form
//!   request targets (`/…`) are accepted.
//! - Close frames: a 1-byte payload or a code that may not be sent (RFC 6455 §7.4: not 1000–1003,
//!   1007–1014 or 3000–4999) is a protocol error. The reason is handed over as bytes and not
//!   checked for UTF-8, and text payloads are not checked either, so close code 1007 is never
//!   produced.
//!
//! # Non-goals
//!
//! No extensions (permessage-deflate is offered by the `ws` npm client; we never accept it, which
//! the RFC allows), no subprotocols (BTP uses none), no TLS (`btp+wss://` terminates in front of
//! the router), no HTTP beyond the upgrade (no keep-alive, no bodies, no redirects), no `Origin`
//! policy, and no sockets, timers or keep-alive pings: the link decides when to ping and when
//! a closing handshake has taken too long.

mod frame;
mod handshake;
mod message;

pub use self::frame::{
    apply_mask, frame_header_len, frame_len_hint, write_close, write_frame, write_frame_header,
    write_ping, write_pong, CloseCode, Frame, FrameDecoder, Opcode, Role, WsError,
};
pub use self::handshake::{
    accept_key, key_from_nonce, parse_upgrade_request, parse_upgrade_response, upgrade_request_len,
    write_http_error, write_upgrade_request, write_upgrade_response, HandshakeError,
    UpgradeRequest, HANDSHAKE_ANSWER_LEN_MAX, UPGRADE_RESPONSE_LEN,
};
pub use self::message::{Close, Message, MessageAssembler};

use crate::wire::{BTP_HEADER_LEN_MAX, ILP_PACKET_LEN_MAX};

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// The longest HTTP header block (request or response, with its final `\r\n\r\n`) we accept.
pub const HANDSHAKE_LEN_MAX: usize = 8192;

/// Length of a `Sec-WebSocket-Key` value: base64 of 16 bytes.
pub const KEY_LEN: usize = 24;

/// Length of the client's raw nonce, before base64.
pub const NONCE_LEN: usize = 16;

/// Length of a `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1.
pub const ACCEPT_LEN: usize = 28;

/// The longest frame header: 2 bytes, a 64-bit extended length and a 4-byte mask.
pub const FRAME_HEADER_LEN_MAX: usize = 2 + 8 + 4;

/// The longest payload of a close, ping or pong frame.
pub const CONTROL_PAYLOAD_LEN_MAX: usize = 125;

/// The longest close reason: a control payload less the 2-byte code.
pub const CLOSE_REASON_LEN_MAX: usize = CONTROL_PAYLOAD_LEN_MAX - 2;

/// Default cap on a reassembled message: 64 KiB, configurable (BTP sets none; the largest legal
/// ILP packet is 41 997 bytes).
pub const MESSAGE_LEN_MAX_DEFAULT: usize = 65_536;

/// Default cap on one frame's payload. Same as the message cap: BTP sends one frame per packet.
pub const FRAME_LEN_MAX_DEFAULT: usize = MESSAGE_LEN_MAX_DEFAULT;

/// The largest BTP message that carries the largest legal ILP packet must fit by default.
const _: () = assert!(MESSAGE_LEN_MAX_DEFAULT >= BTP_HEADER_LEN_MAX + ILP_PACKET_LEN_MAX);
const _: () = assert!(FRAME_LEN_MAX_DEFAULT <= MESSAGE_LEN_MAX_DEFAULT);

/// Helpers the tests of every part share.
#[cfg(test)]
mod test_support {
    use super::*;

    // ---- helpers ------------------------------------------------------------------------

    /// Seeded xorshift64: reproducible, no extra crates.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        pub(super) fn mask(&mut self) -> [u8; 4] {
            (self.next() as u32).to_le_bytes()
        }

        pub(super) fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// A message with owned bytes, for comparing runs.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Event {
        Binary(Vec<u8>),
        Text,
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, Vec<u8>),
    }

    /// Decodes every complete frame at the front of `buf`, drops the consumed bytes, and
    /// returns how many frames were decoded.
    pub(super) fn drain(
        decoder: &FrameDecoder,
        assembler: &mut MessageAssembler,
        buf: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Result<usize, WsError> {
        let mut start = 0;
        let mut frames = 0;
        while let Some(frame) = decoder.decode(&mut buf[start..])? {
            frames += 1;
            let consumed = frame.len;
            match assembler.handle_frame(&mut buf[start..], &frame)? {
                Message::Binary(bytes) => events.push(Event::Binary(bytes.to_vec())),
                Message::Text => events.push(Event::Text),
                Message::Fragment => {}
                Message::Ping(bytes) => events.push(Event::Ping(bytes.to_vec())),
                Message::Pong(bytes) => events.push(Event::Pong(bytes.to_vec())),
                Message::Close(close) => {
                    events.push(Event::Close(close.code.map(|c| c.0), close.reason.to_vec()))
                }
            }
            start += consumed;
        }
        if start < buf.len() {
            assert!(frame_len_hint(&buf[start..]) > buf.len() - start);
        }
        buf.drain(..start);
        Ok(frames)
    }

    pub(super) fn decode_all(role: Role, bytes: &[u8]) -> Result<Vec<Event>, WsError> {
        let decoder = FrameDecoder::new(role, 1 << 20);
        let mut assembler = MessageAssembler::new(1 << 20);
        let mut buf = bytes.to_vec();
        let mut events = Vec::new();
        drain(&decoder, &mut assembler, &mut buf, &mut events)?;
        assert!(buf.is_empty(), "leftover bytes");
        Ok(events)
    }

    pub(super) fn server() -> FrameDecoder {
        FrameDecoder::new(Role::Server, FRAME_LEN_MAX_DEFAULT)
    }

    pub(super) fn client() -> FrameDecoder {
        FrameDecoder::new(Role::Client, FRAME_LEN_MAX_DEFAULT)
    }

    pub(super) const HELLO_UNMASKED: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    pub(super) const HELLO_MASKED: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    pub(super) fn frame_bytes(
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) -> Vec<u8> {
        let mut out = vec![0; FRAME_HEADER_LEN_MAX + payload.len()];
        let len = write_frame(opcode, fin, payload, mask, &mut out);
        out.truncate(len);
        out
    }

    /// What interledger-rs's BTP client (tokio-tungstenite) sends for
    /// `btp+ws://127.0.0.1:7768/accounts/alice/ilp/btp`.
    pub(super) const INTERLEDGER_RS_REQUEST: &[u8] = b"GET /accounts/alice/ilp/btp HTTP/1.1\r\n\
        Host: 127.0.0.1:7768\r\n\
        Connection: Upgrade\r\n\
        Upgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
        Authorization: Bearer alice:secret\r\n\r\n";
}

#[cfg(test)]
mod test {
    use super::test_support::*;
    use super::*;

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Rng(0x5eed_0004);
        let handshake_seed = INTERLEDGER_RS_REQUEST;
        for round in 0..20_000 {
            // Frames: random bytes, biased towards plausible first bytes.
            let len = rng.below(40);
            let mut bytes = rng.bytes(len);
            if let Some(first) = bytes.first_mut() {
                if round % 2 == 0 {
                    *first &= 0x8f;
                }
            }
            for role in [Role::Server, Role::Client] {
                let decoder = FrameDecoder::new(role, 16);
                let mut assembler = MessageAssembler::new(16);
                let mut buf = bytes.clone();
                let mut events = Vec::new();
                let _ = drain(&decoder, &mut assembler, &mut buf, &mut events);
                let _ = frame_len_hint(&bytes);
            }
            // Handshakes: a real request with a few bytes flipped.
            let mut request = handshake_seed.to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(request.len());
                request[at] = rng.next() as u8;
            }
            let _ = parse_upgrade_request(&request);
            let _ = parse_upgrade_response(&request, &[0; NONCE_LEN]);
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            WsError::UnknownOpcode(3).to_string(),
            "unknown opcode 0x3 (close 1002)"
        );
        assert_eq!(
            HandshakeError::DuplicateHeader("Host").to_string(),
            "header Host appears more than once"
        );
    }
}
