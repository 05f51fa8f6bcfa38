//! BTP 2.0 (RFC 23): the packets that carry ILP over a WebSocket.
//!
//! ```text
//! offset  size   field
//! 0       1      type        1 Response, 2 Error, 6 Message, 7 Transfer
//! 1       4      requestId   UInt32
//! 5       1-3    length      of the body
//! body:   Response, Message: protocolData
//!         Transfer:          amount UInt64, protocolData
//!         Error:             code (3 IA5) name (var-octets) triggeredAt (var-octets,
//!                            GeneralizedTime) data (var-octets) protocolData
//! protocolData: var-uint count, then count × (name var-octets, contentType UInt8, data var-octets)
//! ```
//!
//! Policy (ours, as the JS codec; interledger-rs refuses trailing bytes): a count with a
//! redundant leading zero and bytes after the last entry or after the envelope are accepted
//! and ignored, never emitted.

use super::oer::{self, Reader, Writer};
use super::timestamp;
use super::Error;

/// The longest header [`emit_ilp_header`] writes before the ILP packet bytes.
pub const BTP_HEADER_LEN_MAX: usize = 1 + 4 + 9 + 2 + 4 + 1 + 9;

/// The four BTP 2.0 packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BtpType {
    /// Answers a Message or Transfer.
    Response = 1,
    /// Answers a Message or Transfer that could not be processed.
    Error = 2,
    /// A request; carries ILP Prepares (and, from interledger-rs, Fulfills and Rejects).
    Message = 6,
    /// A settlement request.
    Transfer = 7,
}

impl BtpType {
    /// The type for a type byte, if it is one of the four.
    #[inline]
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(BtpType::Response),
            2 => Some(BtpType::Error),
            6 => Some(BtpType::Message),
            7 => Some(BtpType::Transfer),
            _ => None,
        }
    }

    /// The RFC 23 name.
    pub fn name(self) -> &'static str {
        match self {
            BtpType::Response => "Response",
            BtpType::Error => "Error",
            BtpType::Message => "Message",
            BtpType::Transfer => "Transfer",
        }
    }
}

/// A protocolData content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentType(pub u8);

impl ContentType {
    /// `application/octet-stream` (`ilp`, `auth`).
    pub const OCTET_STREAM: ContentType = ContentType(0);
    /// `text/plain; charset=utf-8` (`auth_username`, `auth_token`).
    pub const TEXT_PLAIN_UTF8: ContentType = ContentType(1);
    /// `application/json`.
    pub const APPLICATION_JSON: ContentType = ContentType(2);
}

/// One protocolData entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolData<'a> {
    /// The sub-protocol name (`ilp`, `auth`, `auth_token`, …).
    pub name: &'a [u8],
    /// How `data` is to be read.
    pub content_type: ContentType,
    /// The entry's bytes.
    pub data: &'a [u8],
}

/// What follows the header, by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtpBody<'a> {
    /// Type 1.
    Response,
    /// Type 2.
    Error {
        /// A BTP error code (not an ILP one), 3 IA5 bytes.
        code: [u8; 3],
        /// The code's name, e.g. `NotAcceptedError`.
        name: &'a [u8],
        /// A GeneralizedTime, as on the wire.
        triggered_at: &'a [u8],
        /// Details, by convention UTF-8 JSON.
        data: &'a [u8],
    },
    /// Type 6.
    Message,
    /// Type 7.
    Transfer {
        /// The additional settled value.
        amount: u64,
    },
}

impl BtpBody<'_> {
    /// The type this body belongs to.
    pub fn btp_type(&self) -> BtpType {
        match self {
            BtpBody::Response => BtpType::Response,
            BtpBody::Error { .. } => BtpType::Error,
            BtpBody::Message => BtpType::Message,
            BtpBody::Transfer { .. } => BtpType::Transfer,
        }
    }
}

/// A checked, borrowed view of a BTP packet.
#[derive(Debug, Clone)]
pub struct Btp<T: AsRef<[u8]>> {
    buffer: T,
    btp_type: BtpType,
    body: usize,
    body_end: usize,
    // Error only: (start, end) of name, triggeredAt and data.
    error_fields: [(usize, usize); 3],
    protocol_data: usize,
    protocol_data_count: usize,
}

const REQUEST_ID: usize = 1;

impl<T: AsRef<[u8]>> Btp<T> {
    /// Checks the BTP packet at the start of `buffer`, every protocolData entry included.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let buf = buffer.as_ref();
        let first = *buf.first().ok_or(Error::EmptyInput)?;
        let btp_type = BtpType::from_byte(first).ok_or(Error::UnknownType)?;
        let mut outer = Reader::new(buf, 1);
        outer.fixed(4)?;
        let len = outer.length()?;
        let mut body = outer.enclosed(len)?;
        let start = body.pos();
        let mut error_fields = [(0, 0); 3];
        match btp_type {
            BtpType::Response | BtpType::Message => {}
            BtpType::Transfer => {
                body.u64()?;
            }
            BtpType::Error => {
                let code = body.fixed(3)?;
                if buf[code].iter().any(|&b| b >= 0x80) {
                    return Err(Error::InvalidErrorCode);
                }
                let name = body.var_octets()?;
                let triggered_at = body.var_octets()?;
                timestamp::parse_generalized(&buf[triggered_at.clone()])?;
                let data = body.var_octets()?;
                error_fields = [
                    (name.start, name.end),
                    (triggered_at.start, triggered_at.end),
                    (data.start, data.end),
                ];
            }
        }
        let count = body.var_uint()?;
        let protocol_data = body.pos();
        let mut seen = 0usize;
        // Each entry takes at least 3 bytes, so the loop ends when the body does.
        while (seen as u64) < count {
            body.var_octets()?;
            body.u8()?;
            body.var_octets()?;
            seen += 1;
        }
        Ok(Btp {
            btp_type,
            body: start,
            body_end: body.end(),
            error_fields,
            protocol_data,
            protocol_data_count: seen,
            buffer,
        })
    }

    /// The packet type.
    #[inline]
    pub fn btp_type(&self) -> BtpType {
        self.btp_type
    }

    /// The request id.
    #[inline]
    pub fn request_id(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([
            b[REQUEST_ID],
            b[REQUEST_ID + 1],
            b[REQUEST_ID + 2],
            b[REQUEST_ID + 3],
        ])
    }

    /// The type-specific fields.
    pub fn body(&self) -> BtpBody<'_> {
        let buf = self.buffer.as_ref();
        match self.btp_type {
            BtpType::Response => BtpBody::Response,
            BtpType::Message => BtpBody::Message,
            BtpType::Transfer => BtpBody::Transfer {
                amount: oer::read_u64(buf, self.body),
            },
            BtpType::Error => {
                let [name, at, data] = self.error_fields;
                BtpBody::Error {
                    code: [buf[self.body], buf[self.body + 1], buf[self.body + 2]],
                    name: &buf[name.0..name.1],
                    triggered_at: &buf[at.0..at.1],
                    data: &buf[data.0..data.1],
                }
            }
        }
    }

    /// The protocolData entries, in order; the first is the primary one.
    #[inline]
    pub fn protocol_data(&self) -> ProtocolDataIter<'_> {
        let buf = &self.buffer.as_ref()[..self.body_end];
        ProtocolDataIter {
            reader: Reader::new(buf, self.protocol_data),
            left: self.protocol_data_count,
        }
    }

    /// How many protocolData entries there are.
    #[inline]
    pub fn protocol_data_count(&self) -> usize {
        self.protocol_data_count
    }

    /// The first entry named `name`.
    #[inline]
    pub fn find(&self, name: &[u8]) -> Option<ProtocolData<'_>> {
        self.protocol_data().find(|entry| entry.name == name)
    }

    /// The ILP packet carried in the `ilp` entry, if any.
    #[inline]
    pub fn ilp(&self) -> Option<&[u8]> {
        self.find(b"ilp").map(|entry| entry.data)
    }

    /// Where the `ilp` entry's data lies in the packet's bytes, if there is one: the range a
    /// caller holding the bytes mutably can rewrite in place.
    pub fn ilp_range(&self) -> Option<core::ops::Range<usize>> {
        let mut entries = self.protocol_data();
        let bytes = &self.buffer.as_ref()[..self.body_end];
        while let Some((name, _, data)) = entries.next_ranges() {
            if &bytes[name] == b"ilp" {
                return Some(data);
            }
        }
        None
    }

    /// The whole packet, without any bytes that followed it.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.body_end]
    }

    /// The fields, for re-emitting; the entries go into `entries`, which must hold
    /// [`protocol_data_count`](Self::protocol_data_count) of them.
    pub fn repr<'a>(&'a self, entries: &'a mut [ProtocolData<'a>]) -> BtpRepr<'a> {
        let mut n = 0;
        for (slot, entry) in entries.iter_mut().zip(self.protocol_data()) {
            *slot = entry;
            n += 1;
        }
        assert_eq!(n, self.protocol_data_count, "entries slice too short");
        BtpRepr {
            request_id: self.request_id(),
            body: self.body(),
            protocol_data: &entries[..n],
        }
    }
}

/// Iterator over checked protocolData entries.
#[derive(Debug, Clone)]
pub struct ProtocolDataIter<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl ProtocolDataIter<'_> {
    /// The next entry's name and data as ranges of the packet's bytes.
    fn next_ranges(
        &mut self,
    ) -> Option<(
        core::ops::Range<usize>,
        ContentType,
        core::ops::Range<usize>,
    )> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The view checked every entry, so these reads succeed; `?` only ends the iteration.
        let name = self.reader.var_octets().ok()?;
        let content_type = ContentType(self.reader.u8().ok()?);
        let data = self.reader.var_octets().ok()?;
        Some((name, content_type, data))
    }
}

impl<'a> Iterator for ProtocolDataIter<'a> {
    type Item = ProtocolData<'a>;

    #[inline]
    fn next(&mut self) -> Option<ProtocolData<'a>> {
        let bytes = self.reader.clone().into_slice();
        let (name, content_type, data) = self.next_ranges()?;
        Some(ProtocolData {
            name: &bytes[name],
            content_type,
            data: &bytes[data],
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The fields of a BTP packet, for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtpRepr<'a> {
    /// The request id.
    pub request_id: u32,
    /// The type and its fields.
    pub body: BtpBody<'a>,
    /// The entries, primary first.
    pub protocol_data: &'a [ProtocolData<'a>],
}

impl BtpRepr<'_> {
    fn body_len(&self) -> usize {
        let head = match self.body {
            BtpBody::Response | BtpBody::Message => 0,
            BtpBody::Transfer { .. } => 8,
            BtpBody::Error {
                name,
                triggered_at,
                data,
                ..
            } => {
                3 + oer::var_octets_len(name.len())
                    + oer::var_octets_len(triggered_at.len())
                    + oer::var_octets_len(data.len())
            }
        };
        let entries: usize = self
            .protocol_data
            .iter()
            .map(|e| oer::var_octets_len(e.name.len()) + 1 + oer::var_octets_len(e.data.len()))
            .sum();
        head + oer::var_uint_len(self.protocol_data.len() as u64) + entries
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        let body = self.body_len();
        5 + oer::length_prefix_len(body) + body
    }

    /// Writes the canonical encoding at the start of `buf` and returns its length.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len), or an Error code is not IA5.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut w = Writer::new(buf);
        w.u8(self.body.btp_type() as u8);
        w.u32(self.request_id);
        w.length(self.body_len());
        match self.body {
            BtpBody::Response | BtpBody::Message => {}
            BtpBody::Transfer { amount } => w.u64(amount),
            BtpBody::Error {
                code,
                name,
                triggered_at,
                data,
            } => {
                assert!(code.iter().all(|&b| b < 0x80), "BTP error code not IA5");
                w.bytes(&code);
                w.var_octets(name);
                w.var_octets(triggered_at);
                w.var_octets(data);
            }
        }
        w.var_uint(self.protocol_data.len() as u64);
        for entry in self.protocol_data {
            w.var_octets(entry.name);
            w.u8(entry.content_type.0);
            w.var_octets(entry.data);
        }
        w.pos()
    }
}

/// Bytes [`emit_ilp_header`] writes for an ILP packet of `ilp_len` bytes.
#[inline]
pub fn ilp_header_len(ilp_len: usize) -> usize {
    let body = ilp_body_len(ilp_len);
    5 + oer::length_prefix_len(body) + body - ilp_len
}

#[inline]
fn ilp_body_len(ilp_len: usize) -> usize {
    2 + 4 + 1 + oer::var_octets_len(ilp_len)
}

/// Writes the header of a BTP packet whose only entry is `ilp` (content type 0) carrying
/// `ilp_len` bytes, which the caller then writes right after the returned length. This is the
/// forwarding path's framing: the ILP bytes are never copied into an intermediate buffer.
#[inline]
pub fn emit_ilp_header(
    buf: &mut [u8],
    btp_type: BtpType,
    request_id: u32,
    ilp_len: usize,
) -> usize {
    let mut w = Writer::new(buf);
    w.u8(btp_type as u8);
    w.u32(request_id);
    w.length(ilp_body_len(ilp_len));
    w.var_uint(1);
    w.var_octets(b"ilp");
    w.u8(ContentType::OCTET_STREAM.0);
    w.length(ilp_len);
    w.pos()
}

const _: () = assert!(BTP_HEADER_LEN_MAX >= 1 + 4 + 3 + 2 + 4 + 1 + 3);

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::test_hex as hex;

    #[test]
    fn response_fixture() {
        let bytes = hex("010000000125010403696c70000003666f6f000362617204626565700104626f6f70046a736f6e02027b7d");
        let p = Btp::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.btp_type(), BtpType::Response);
        assert_eq!(p.request_id(), 1);
        let names: Vec<&[u8]> = p.protocol_data().map(|e| e.name).collect();
        assert_eq!(names, [&b"ilp"[..], b"foo", b"beep", b"json"]);
        assert_eq!(
            p.find(b"beep").unwrap().content_type,
            ContentType::TEXT_PLAIN_UTF8
        );
        assert_eq!(p.ilp(), Some(&[][..]));
        let mut entries = [ProtocolData {
            name: &[],
            content_type: ContentType(0),
            data: &[],
        }; 4];
        let repr = p.repr(&mut entries);
        let mut out = vec![0u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut out), bytes.len());
        assert_eq!(out, bytes);
    }

    #[test]
    fn ilp_header_matches_repr() {
        for ilp_len in [0usize, 35, 76, 120, 200, 300, 41_997] {
            let ilp = vec![0xabu8; ilp_len];
            let entry = [ProtocolData {
                name: b"ilp",
                content_type: ContentType(0),
                data: &ilp,
            }];
            let repr = BtpRepr {
                request_id: 7,
                body: BtpBody::Message,
                protocol_data: &entry,
            };
            let mut expected = vec![0u8; repr.buffer_len()];
            repr.emit(&mut expected);
            let mut out = vec![0u8; BTP_HEADER_LEN_MAX + ilp_len];
            let head = emit_ilp_header(&mut out, BtpType::Message, 7, ilp_len);
            assert_eq!(head, ilp_header_len(ilp_len));
            out[head..head + ilp_len].copy_from_slice(&ilp);
            assert_eq!(&out[..head + ilp_len], &expected[..]);
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(Btp::new_checked(&[][..]).unwrap_err(), Error::EmptyInput);
        assert_eq!(
            Btp::new_checked(&hex("030000000100")[..]).unwrap_err(),
            Error::UnknownType
        );
        assert_eq!(
            Btp::new_checked(&hex("060000")[..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Btp::new_checked(&hex("06000000010100")[..]).unwrap_err(),
            Error::InvalidVarUint
        );
        let missing = hex("060000000106010103696c70");
        assert_eq!(
            Btp::new_checked(&missing[..]).unwrap_err(),
            Error::Truncated
        );
    }
}
