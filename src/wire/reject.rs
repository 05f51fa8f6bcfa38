//! ILP Reject (type 14), RFC 27.
//!
//! ```text
//! body offset  size   field
//! 0            3      code          IA5, every byte < 0x80
//! 3            1-3+t  triggeredBy   var-octet-string: empty, or an ILP address
//! ...          1-3+g  message       var-octet-string, UTF-8 not checked, relayed as is
//! ...          1-3+m  data          var-octet-string, m <= 32767
//! ```

use super::oer::{self, Writer};
use super::packet::{check_envelope, PacketType, DATA_LEN_MAX};
use super::prepare::array_at;
use super::{check_address, Address, Error, ErrorCode};

/// A checked, borrowed view of an ILP Reject.
#[derive(Debug, Clone)]
pub struct Reject<T: AsRef<[u8]>> {
    buffer: T,
    body: usize,
    triggered_by: (usize, usize),
    message: (usize, usize),
    data: (usize, usize),
    body_end: usize,
}

impl<T: AsRef<[u8]>> Reject<T> {
    /// Checks every field of the Reject at the start of `buffer`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let buf = buffer.as_ref();
        let mut body = check_envelope(buf, PacketType::Reject)?;
        let start = body.pos();
        let code = body.fixed(3)?;
        if buf[code].iter().any(|&b| b >= 0x80) {
            return Err(Error::InvalidErrorCode);
        }
        let triggered_by = body.var_octets()?;
        if !triggered_by.is_empty() {
            check_address(&buf[triggered_by.clone()])?;
        }
        let message = body.var_octets()?;
        let data = body.var_octets_max(DATA_LEN_MAX, Error::DataTooLong)?;
        let body_end = body.end();
        Ok(Reject {
            body: start,
            triggered_by: (triggered_by.start, triggered_by.end),
            message: (message.start, message.end),
            data: (data.start, data.end),
            body_end,
            buffer,
        })
    }

    /// The error code.
    #[inline]
    pub fn code(&self) -> ErrorCode {
        ErrorCode(*array_at(self.buffer.as_ref(), self.body))
    }

    /// The address of the node that created the Reject; `None` when the field is empty.
    #[inline]
    pub fn triggered_by(&self) -> Option<Address<'_>> {
        let bytes = &self.buffer.as_ref()[self.triggered_by.0..self.triggered_by.1];
        (!bytes.is_empty()).then(|| Address::new_unchecked(bytes))
    }

    /// The message bytes, meant to be UTF-8 but not checked.
    #[inline]
    pub fn message(&self) -> &[u8] {
        &self.buffer.as_ref()[self.message.0..self.message.1]
    }

    /// The data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[self.data.0..self.data.1]
    }

    /// The whole packet, envelope included, without any bytes that followed it.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.body_end]
    }

    /// True when the body carries bytes after `data`.
    #[inline]
    pub fn has_inner_trailing_bytes(&self) -> bool {
        self.data.1 != self.body_end
    }

    /// The fields, for re-emitting the packet.
    pub fn repr(&self) -> RejectRepr<'_> {
        RejectRepr {
            code: self.code(),
            triggered_by: self.triggered_by(),
            message: self.message(),
            data: self.data(),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The fields of a Reject, for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectRepr<'a> {
    /// The error code; its bytes must be IA5.
    pub code: ErrorCode,
    /// Who created the Reject. A connector always names itself; `None` emits an empty field,
    /// which only re-emitting a received Reject should do.
    pub triggered_by: Option<Address<'a>>,
    /// UTF-8 text. Rejects we create keep it within 8191 bytes; a relayed one is re-emitted as
    /// it came.
    pub message: &'a [u8],
    /// At most 32 767 bytes.
    pub data: &'a [u8],
}

impl RejectRepr<'_> {
    fn triggered_by_bytes(&self) -> &[u8] {
        self.triggered_by.map_or(&[], |a| a.as_bytes())
    }

    fn body_len(&self) -> usize {
        3 + oer::var_octets_len(self.triggered_by_bytes().len())
            + oer::var_octets_len(self.message.len())
            + oer::var_octets_len(self.data.len())
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        let body = self.body_len();
        1 + oer::length_prefix_len(body) + body
    }

    /// Writes the canonical encoding at the start of `buf` and returns its length.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len), the code is not IA5, or
    /// `data` is too long.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(self.code.0.iter().all(|&b| b < 0x80), "error code not IA5");
        assert!(
            self.data.len() <= DATA_LEN_MAX,
            "Reject data over 32767 bytes"
        );
        let mut w = Writer::new(buf);
        w.u8(PacketType::Reject as u8);
        w.length(self.body_len());
        w.bytes(&self.code.0);
        w.var_octets(self.triggered_by_bytes());
        w.var_octets(self.message);
        w.var_octets(self.data);
        w.pos()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::test_hex as hex;

    const EXAMPLE: &str = "0e414630310e6578616d706c652e75732e626f62276d697373696e672064657374696e6174696f6e2e206c65646765723d6578616d706c652e75732e06000000041041";

    #[test]
    fn deconstruct_and_construct() {
        let bytes = hex(EXAMPLE);
        let r = Reject::new_checked(&bytes[..]).unwrap();
        assert_eq!(r.code(), ErrorCode::F01_INVALID_PACKET);
        assert_eq!(r.triggered_by().unwrap().as_bytes(), b"example.us.bob");
        assert_eq!(r.message(), b"missing destination. ledger=example.us.");
        assert_eq!(r.data(), [0, 0, 0, 4, 0x10, 0x41]);
        let mut out = vec![0u8; r.repr().buffer_len()];
        assert_eq!(r.repr().emit(&mut out), bytes.len());
        assert_eq!(out, bytes);
    }

    #[test]
    fn empty_triggered_by_is_valid() {
        let bytes = hex("0e06543030000000");
        let r = Reject::new_checked(&bytes[..]).unwrap();
        assert_eq!(r.triggered_by(), None);
        assert_eq!(r.code(), ErrorCode::T00_INTERNAL_ERROR);
    }

    #[test]
    fn refusals() {
        let non_ia5 = hex("0e0dc39f7806672e636f6e6e016d00");
        assert_eq!(
            Reject::new_checked(&non_ia5[..]).unwrap_err(),
            Error::InvalidErrorCode
        );
        let bad_by = hex("0e154630320e6e6f7420616e2061646472657373016d00");
        assert_eq!(
            Reject::new_checked(&bad_by[..]).unwrap_err(),
            Error::InvalidAddress
        );
        let no_data = hex("0e0c46303206672e636f6e6e016d");
        assert_eq!(
            Reject::new_checked(&no_data[..]).unwrap_err(),
            Error::Truncated
        );
    }
}
