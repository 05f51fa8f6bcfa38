//! RFC 6455 §5 framing, sans-IO: frame types and errors, the decoder ([`FrameDecoder`],
//! [`frame_len_hint`], [`apply_mask`]) and the writers ([`write_frame_header`],
//! [`write_frame`], [`write_close`], [`write_ping`], [`write_pong`]). See the parent module for
//! the contract; [`super::message`] turns frames into messages, and
//! [`crate::link::buf::write_binary_frame`] appends whole frames to a link's queue.

use core::fmt;
use core::ops::Range;

use super::{CLOSE_REASON_LEN_MAX, CONTROL_PAYLOAD_LEN_MAX};

// ---------------------------------------------------------------------------------------------
// Frames: types and errors
// ---------------------------------------------------------------------------------------------

/// Which end of the connection we are; decides the masking rule (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We accepted the connection: incoming frames must be masked, ours are not.
    Server,
    /// We dialled: incoming frames must not be masked, ours must be.
    Client,
}

/// The frame opcodes RFC 6455 defines. Any other value is [`WsError::UnknownOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Continues a fragmented text or binary message.
    Continuation = 0x0,
    /// UTF-8 text; BTP does not use it.
    Text = 0x1,
    /// Binary data; every BTP packet is one binary message.
    Binary = 0x2,
    /// Close (control).
    Close = 0x8,
    /// Ping (control); answered by a pong with the same payload.
    Ping = 0x9,
    /// Pong (control).
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for the low 4 bits of a frame's first byte, if defined.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// Close, ping and pong: never fragmented, payload at most 125 bytes.
    pub const fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: going away (shutdown, restart).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type we do not accept (a link may send it for text messages).
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1007: payload inconsistent with its type (never produced here: no UTF-8 checks).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation (e.g. authentication failed).
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: message too big.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1011: internal error.
    pub const INTERNAL_ERROR: Self = Self(1011);

    /// May this code appear in a close frame: 1000–1003, 1007–1014 (RFC 6455 and the IANA
    /// registry) or 3000–4999 (registered and private use). 1005, 1006 and 1015 are for reports
    /// only.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A broken framing rule. The connection is failed: send a close with
/// [`close_code`](Self::close_code), then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsError {
    /// An RSV bit is set; we negotiate no extension that would define it.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// Server: a client frame without a mask.
    UnmaskedFrame,
    /// Client: a server frame with a mask.
    MaskedFrame,
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with a payload over 125 bytes.
    ControlTooLong,
    /// A 64-bit payload length with the most significant bit set.
    InvalidLength,
    /// A frame payload over the decoder's `frame_len_max`, refused from its header.
    FrameTooLong,
    /// A message over the assembler's `message_len_max`.
    MessageTooLong,
    /// A continuation frame with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A close payload of exactly one byte.
    InvalidClosePayload,
    /// A close code that may not be sent.
    InvalidCloseCode(u16),
}

impl WsError {
    /// The close code to fail the connection with: 1009 for the two size limits, 1002 otherwise.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::FrameTooLong | Self::MessageTooLong => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits => f.write_str("reserved bits set"),
            Self::UnknownOpcode(opcode) => write!(f, "unknown opcode {opcode:#x}"),
            Self::UnmaskedFrame => f.write_str("client frame not masked"),
            Self::MaskedFrame => f.write_str("server frame masked"),
            Self::FragmentedControl => f.write_str("fragmented control frame"),
            Self::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::InvalidLength => f.write_str("64-bit payload length with the top bit set"),
            Self::FrameTooLong => f.write_str("frame payload over the frame limit"),
            Self::MessageTooLong => f.write_str("message over the message limit"),
            Self::UnexpectedContinuation => f.write_str("continuation frame without a message"),
            Self::ExpectedContinuation => f.write_str("new data frame inside a fragmented message"),
            Self::InvalidClosePayload => f.write_str("close payload of one byte"),
            Self::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
        }?;
        write!(f, " (close {})", self.close_code().0)
    }
}

impl std::error::Error for WsError {}

// ---------------------------------------------------------------------------------------------
// Frames in
// ---------------------------------------------------------------------------------------------

/// One decoded frame. Its payload has been unmasked in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Last frame of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: Opcode,
    /// Where the payload is, in the buffer given to [`FrameDecoder::decode`].
    pub payload: Range<usize>,
    /// Bytes the frame takes from the front of that buffer, header included.
    pub len: usize,
}

/// Reads frames and enforces RFC 6455 §5 for one [`Role`]. Stateless apart from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    role: Role,
    frame_len_max: usize,
}

impl FrameDecoder {
    /// A decoder for `role` refusing frame payloads over `frame_len_max` bytes.
    pub const fn new(role: Role, frame_len_max: usize) -> Self {
        Self {
            role,
            frame_len_max,
        }
    }

    /// Our role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The largest frame payload accepted.
    pub const fn frame_len_max(&self) -> usize {
        self.frame_len_max
    }

    /// Reads the frame at the front of `buf`.
    ///
    /// `Ok(None)`: the frame is not all there yet; read more (see [`frame_len_hint`]) and call
    /// again with the same bytes at the front. Every rule that the header alone decides,
    /// including `frame_len_max`, is checked as soon as the header is in, before the payload.
    ///
    /// `Ok(Some(frame))`: the payload at `frame.payload` has been unmasked in place. The caller
    /// must now consume `frame.len` bytes; decoding the same bytes again would unmask them
    /// twice.
    pub fn decode(&self, buf: &mut [u8]) -> Result<Option<Frame>, WsError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(WsError::UnknownOpcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(WsError::UnmaskedFrame),
            (Role::Client, true) => return Err(WsError::MaskedFrame),
            _ => {}
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(WsError::FragmentedControl);
            }
            if usize::from(len7) > CONTROL_PAYLOAD_LEN_MAX {
                return Err(WsError::ControlTooLong);
            }
        }

        let (length_len, payload_len) = match len7 {
            126 => match buf.get(2..4) {
                Some(&[hi, lo]) => (2, u64::from(u16::from_be_bytes([hi, lo]))),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(&[a, b, c, d, e, f, g, h]) => {
                    let len = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
                    if len >> 63 != 0 {
                        return Err(WsError::InvalidLength);
                    }
                    (8, len)
                }
                _ => return Ok(None),
            },
            len => (0, u64::from(len)),
        };
        let payload_len = usize::try_from(payload_len)
            .ok()
            .filter(|&len| len <= self.frame_len_max)
            .ok_or(WsError::FrameTooLong)?;
        let mask_at: usize = 2 + length_len;
        let header_len = mask_at + if masked { 4 } else { 0 };
        let len = header_len
            .checked_add(payload_len)
            .ok_or(WsError::FrameTooLong)?;
        if buf.len() < len {
            return Ok(None);
        }

        // Validated; from here nothing can fail.
        if masked {
            let mut mask = [0; 4];
            mask.copy_from_slice(&buf[mask_at..header_len]);
            apply_mask(&mut buf[header_len..len], mask, 0);
        }
        Ok(Some(Frame {
            fin,
            opcode,
            payload: header_len..len,
            len,
        }))
    }
}

/// A lower bound on the length of the frame at the front of `buf`, header included, from what
/// has arrived: 2 before the first two bytes, then the header length, then header plus payload
/// (saturating). Meant for after `decode` returned `Ok(None)`: if the hint exceeds the room
/// left in the read buffer, move the partial frame to the front first.
pub fn frame_len_hint(buf: &[u8]) -> usize {
    let [_, b1, ..] = *buf else {
        return 2;
    };
    let length_len = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + length_len + if b1 & 0x80 != 0 { 4 } else { 0 };
    let payload_len = match (b1 & 0x7f, buf.get(2..2 + length_len)) {
        (126, Some(&[hi, lo])) => u64::from(u16::from_be_bytes([hi, lo])),
        (127, Some(&[a, b, c, d, e, f, g, h])) => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        (len, _) if len < 126 => u64::from(len),
        _ => return header_len,
    };
    header_len.saturating_add(usize::try_from(payload_len).unwrap_or(usize::MAX))
}

/// XORs `payload` with the masking key (RFC 6455 §5.3), in place, 16 bytes at a time (one
/// vector register), then 8, then bytes.
///
/// `offset` is the position of `payload[0]` within the frame's payload, so a payload can be
/// masked in pieces (`apply_mask(&mut p[..k], m, 0); apply_mask(&mut p[k..], m, k)`). Masking
/// twice with the same key and offset restores the bytes.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    // The key as it falls from `offset` on, repeated: each 4-byte lane of a word holds the
    // same bytes in the same order, whatever the byte order.
    let o = offset % 4;
    let rotated = [
        mask[o],
        mask[(o + 1) % 4],
        mask[(o + 2) % 4],
        mask[(o + 3) % 4],
    ];
    let key128 =
        u128::from(u32::from_ne_bytes(rotated)) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
    let key = key128.to_ne_bytes();
    let mut chunks = payload.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let word = u128::from_ne_bytes(chunk.try_into().expect("16 bytes"));
        chunk.copy_from_slice(&(word ^ key128).to_ne_bytes());
    }
    // What is left starts at a multiple of 16, the tail at a multiple of 8: the key (period 4)
    // lines up again at both.
    let rest = chunks.into_remainder();
    let (eight, tail) = rest.split_at_mut(rest.len() & !7);
    if let Ok(word) = <&mut [u8; 8]>::try_from(eight) {
        let key64 = u64::from_ne_bytes(key[..8].try_into().expect("8 bytes"));
        *word = (u64::from_ne_bytes(*word) ^ key64).to_ne_bytes();
    }
    for (byte, k) in tail.iter_mut().zip(key) {
        *byte ^= k;
    }
}

// ---------------------------------------------------------------------------------------------
// Frames out
// ---------------------------------------------------------------------------------------------

/// Length of the header [`write_frame_header`] writes: minimal length encoding, plus 4 if
/// masked. At most [`FRAME_HEADER_LEN_MAX`](super::FRAME_HEADER_LEN_MAX).
pub const fn frame_header_len(payload_len: usize, masked: bool) -> usize {
    let length_len = if payload_len < 126 {
        0
    } else if payload_len <= 0xffff {
        2
    } else {
        8
    };
    2 + length_len + if masked { 4 } else { 0 }
}

/// Writes a frame header into `out`; returns its length ([`frame_header_len`]). The payload goes
/// right after it; a client (which must mask) then calls [`apply_mask`] on the payload with the
/// same `mask` and offset 0. `mask` must be fresh random bytes per frame for a client, `None`
/// for a server.
///
/// # Panics
///
/// If `out` is shorter than the header, or for a control opcode with `fin` unset or
/// `payload_len` over 125.
pub fn write_frame_header(
    opcode: Opcode,
    fin: bool,
    payload_len: usize,
    mask: Option<[u8; 4]>,
    out: &mut [u8],
) -> usize {
    if opcode.is_control() {
        assert!(fin, "control frames cannot be fragmented");
        assert!(
            payload_len <= CONTROL_PAYLOAD_LEN_MAX,
            "control payload over 125 bytes"
        );
    }
    let header_len = frame_header_len(payload_len, mask.is_some());
    assert!(
        out.len() >= header_len,
        "websocket: output buffer too small"
    );
    out[0] = (if fin { 0x80 } else { 0 }) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mask_at = if payload_len < 126 {
        // Fits in 7 bits: the branch condition.
        out[1] = mask_bit | payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        // usize is at most 64 bits on every target Rust supports.
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    };
    if let Some(mask) = mask {
        out[mask_at..mask_at + 4].copy_from_slice(&mask);
    }
    header_len
}

/// Writes a whole frame (header, payload copied, masked if `mask` is given) into `out`; returns
/// its length. For control frames and tests; data frames on the hot path should place the
/// payload once and use [`write_frame_header`].
///
/// # Panics
///
/// As [`write_frame_header`], and if `out` cannot hold the payload too.
pub fn write_frame(
    opcode: Opcode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut [u8],
) -> usize {
    let header_len = write_frame_header(opcode, fin, payload.len(), mask, out);
    let len = header_len + payload.len();
    assert!(out.len() >= len, "websocket: output buffer too small");
    out[header_len..len].copy_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[header_len..len], mask, 0);
    }
    len
}

/// Writes a close frame with `code` and `reason`; returns its length (at most 131).
///
/// # Panics
///
/// If `code` may not be sent ([`CloseCode::is_sendable`]), if `reason` is over
/// [`CLOSE_REASON_LEN_MAX`] bytes, or if `out` is too short.
pub fn write_close(code: CloseCode, reason: &[u8], mask: Option<[u8; 4]>, out: &mut [u8]) -> usize {
    assert!(code.is_sendable(), "close code {} may not be sent", code.0);
    assert!(
        reason.len() <= CLOSE_REASON_LEN_MAX,
        "close reason over 123 bytes"
    );
    let payload_len = 2 + reason.len();
    let header_len = write_frame_header(Opcode::Close, true, payload_len, mask, out);
    let len = header_len + payload_len;
    assert!(out.len() >= len, "websocket: output buffer too small");
    out[header_len..header_len + 2].copy_from_slice(&code.0.to_be_bytes());
    out[header_len + 2..len].copy_from_slice(reason);
    if let Some(mask) = mask {
        apply_mask(&mut out[header_len..len], mask, 0);
    }
    len
}

/// Writes a ping frame; returns its length.
///
/// # Panics
///
/// If `payload` is over 125 bytes or `out` is too short.
pub fn write_ping(payload: &[u8], mask: Option<[u8; 4]>, out: &mut [u8]) -> usize {
    write_frame(Opcode::Ping, true, payload, mask, out)
}

/// Writes a pong frame, e.g. echoing a [`Message::Ping`](super::Message::Ping) payload; returns
/// its length.
///
/// # Panics
///
/// If `payload` is over 125 bytes or `out` is too short.
pub fn write_pong(payload: &[u8], mask: Option<[u8; 4]>, out: &mut [u8]) -> usize {
    write_frame(Opcode::Pong, true, payload, mask, out)
}

#[cfg(test)]
mod test {
    use super::super::test_support::*;
    use super::super::FRAME_HEADER_LEN_MAX;
    use super::*;

    // ---- frames: RFC 6455 §5.7 ------------------------------------------------------------

    #[test]
    fn rfc_unmasked_hello() {
        let mut buf = HELLO_UNMASKED;
        let frame = client().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                fin: true,
                opcode: Opcode::Text,
                payload: 2..7,
                len: 7
            }
        );
        assert_eq!(&buf[frame.payload], b"Hello");
        let mut out = [0; 16];
        let len = write_frame(Opcode::Text, true, b"Hello", None, &mut out);
        assert_eq!(out[..len], HELLO_UNMASKED);
    }

    #[test]
    fn rfc_masked_hello() {
        let mut buf = HELLO_MASKED;
        let frame = server().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                fin: true,
                opcode: Opcode::Text,
                payload: 6..11,
                len: 11
            }
        );
        assert_eq!(&buf[frame.payload], b"Hello");
        let mut out = [0; 16];
        let len = write_frame(
            Opcode::Text,
            true,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
            &mut out,
        );
        assert_eq!(out[..len], HELLO_MASKED);
    }

    #[test]
    fn rfc_fragmented_hello() {
        let stream = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(decode_all(Role::Client, &stream).unwrap(), [Event::Text]);
        // The same fragments as binary are reassembled.
        let stream = [0x02, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_all(Role::Client, &stream).unwrap(),
            [Event::Binary(b"Hello".to_vec())]
        );
    }

    #[test]
    fn rfc_ping_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all(Role::Client, &ping).unwrap(),
            [Event::Ping(b"Hello".to_vec())]
        );
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(Role::Server, &pong).unwrap(),
            [Event::Pong(b"Hello".to_vec())]
        );
        let mut out = [0; 16];
        let len = write_ping(b"Hello", None, &mut out);
        assert_eq!(out[..len], ping);
        let len = write_pong(b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]), &mut out);
        assert_eq!(out[..len], pong);
    }

    #[test]
    fn rfc_256_bytes_and_64_kib() {
        let mut out = [0; FRAME_HEADER_LEN_MAX];
        let len = write_frame_header(Opcode::Binary, true, 256, None, &mut out);
        assert_eq!(out[..len], [0x82, 0x7e, 0x01, 0x00]);
        let mut frame = out[..len].to_vec();
        frame.extend((0..256).map(|i| i as u8));
        let events = decode_all(Role::Client, &frame).unwrap();
        assert_eq!(events, [Event::Binary((0..256).map(|i| i as u8).collect())]);

        let len = write_frame_header(Opcode::Binary, true, 65_536, None, &mut out);
        assert_eq!(out[..len], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut frame = out[..len].to_vec();
        frame.resize(len + 65_536, 0xab);
        let decoder = FrameDecoder::new(Role::Client, 65_536);
        let decoded = decoder.decode(&mut frame).unwrap().unwrap();
        assert_eq!(decoded.payload, 10..65_546);
        assert_eq!(decoded.len, frame.len());
        // One byte short is incomplete, and the hint says exactly how much is needed.
        assert_eq!(decoder.decode(&mut frame[..65_545]), Ok(None));
        assert_eq!(frame_len_hint(&frame[..3]), 10);
        assert_eq!(frame_len_hint(&frame[..10]), 65_546);

        // The boundaries of the minimal encoding.
        for (payload_len, header_len) in [(125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            assert_eq!(frame_header_len(payload_len, false), header_len);
            assert_eq!(frame_header_len(payload_len, true), header_len + 4);
            assert_eq!(
                write_frame_header(Opcode::Binary, true, payload_len, None, &mut out),
                header_len
            );
        }
        assert_eq!(frame_header_len(usize::MAX, true), FRAME_HEADER_LEN_MAX);
    }

    #[test]
    fn non_minimal_lengths_accepted() {
        // "Hello" with a 16-bit and with a 64-bit length.
        let mut buf = [0x82, 0x7e, 0x00, 0x05, b'H', b'e', b'l', b'l', b'o'];
        let frame = client().decode(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[frame.payload], b"Hello");
        let mut buf = [
            0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x05, b'H', b'e', b'l', b'l', b'o',
        ];
        let frame = client().decode(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[frame.payload], b"Hello");
    }

    // ---- frames: rule checks --------------------------------------------------------------

    #[test]
    fn role_checks() {
        let mut buf = HELLO_UNMASKED;
        assert_eq!(server().decode(&mut buf), Err(WsError::UnmaskedFrame));
        let mut buf = HELLO_MASKED;
        assert_eq!(client().decode(&mut buf), Err(WsError::MaskedFrame));
        // Decided from the first two bytes.
        assert_eq!(
            server().decode(&mut [0x82, 0x00]),
            Err(WsError::UnmaskedFrame)
        );
        assert_eq!(
            client().decode(&mut [0x82, 0x80]),
            Err(WsError::MaskedFrame)
        );
        assert_eq!(
            WsError::UnmaskedFrame.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn header_rule_checks() {
        let c = client();
        assert_eq!(c.decode(&mut []), Ok(None));
        assert_eq!(c.decode(&mut [0x82]), Ok(None));
        assert_eq!(c.decode(&mut [0xc2, 0x00]), Err(WsError::ReservedBits));
        assert_eq!(c.decode(&mut [0xa2, 0x00]), Err(WsError::ReservedBits));
        assert_eq!(c.decode(&mut [0x92, 0x00]), Err(WsError::ReservedBits));
        for opcode in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                c.decode(&mut [0x80 | opcode, 0x00]),
                Err(WsError::UnknownOpcode(opcode))
            );
        }
        assert_eq!(c.decode(&mut [0x09, 0x00]), Err(WsError::FragmentedControl));
        assert_eq!(c.decode(&mut [0x08, 0x00]), Err(WsError::FragmentedControl));
        assert_eq!(c.decode(&mut [0x89, 0x7e]), Err(WsError::ControlTooLong));
        assert_eq!(c.decode(&mut [0x8a, 0x7f]), Err(WsError::ControlTooLong));
        assert_eq!(c.decode(&mut [0x89, 0x7d]), Ok(None));
        let mut top_bit = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(c.decode(&mut top_bit), Err(WsError::InvalidLength));
        assert_eq!(c.decode(&mut top_bit[..9]), Ok(None));
    }

    #[test]
    fn oversize_frame_refused_from_header() {
        let decoder = FrameDecoder::new(Role::Server, 1000);
        // 1001 bytes announced, masked, no payload yet.
        let mut header = [0x82, 0xfe, 0x03, 0xe9, 1, 2, 3, 4];
        assert_eq!(decoder.decode(&mut header[..3]), Ok(None));
        assert_eq!(decoder.decode(&mut header[..4]), Err(WsError::FrameTooLong));
        assert_eq!(
            WsError::FrameTooLong.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
        let mut huge = [0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decoder.decode(&mut huge), Err(WsError::FrameTooLong));
        let mut at_limit = [0x82, 0xfe, 0x03, 0xe8, 1, 2, 3, 4];
        assert_eq!(decoder.decode(&mut at_limit), Ok(None));
        assert_eq!(frame_len_hint(&at_limit), 8 + 1000);
        // Even with frame_len_max at usize::MAX the length arithmetic cannot overflow.
        let decoder = FrameDecoder::new(Role::Client, usize::MAX);
        let mut max = [0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decoder.decode(&mut max), Ok(None));
    }

    // ---- masking --------------------------------------------------------------------------

    #[test]
    fn apply_mask_matches_bytewise_in_pieces() {
        let mut rng = Rng(0x5eed_0001);
        for len in 0..80 {
            let original = rng.bytes(len);
            let mask = rng.mask();
            let expected: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            let mut whole = original.clone();
            apply_mask(&mut whole, mask, 0);
            assert_eq!(whole, expected);
            for split in 0..=len {
                let mut pieces = original.clone();
                let (head, tail) = pieces.split_at_mut(split);
                apply_mask(head, mask, 0);
                apply_mask(tail, mask, split);
                assert_eq!(pieces, expected, "len {len} split {split}");
            }
            apply_mask(&mut whole, mask, 0);
            assert_eq!(whole, original);
        }
    }
}
