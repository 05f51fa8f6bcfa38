//! ILP Fulfill (type 13), RFC 27.
//!
//! ```text
//! body offset  size   field
//! 0            32     fulfillment   SHA-256(fulfillment) = the Prepare's condition
//! 32           1-3+m  data          var-octet-string, m <= 32767
//! ```

use super::oer::{self, Writer};
use super::packet::{check_envelope, PacketType, DATA_LEN_MAX};
use super::prepare::array_at;
use super::Error;

/// Bytes in a fulfillment (the preimage of the condition).
pub const FULFILLMENT_LEN: usize = 32;

/// A checked, borrowed view of an ILP Fulfill.
#[derive(Debug, Clone)]
pub struct Fulfill<T: AsRef<[u8]>> {
    buffer: T,
    body: usize,
    data: (usize, usize),
    body_end: usize,
}

impl<T: AsRef<[u8]>> Fulfill<T> {
    /// Checks every field of the Fulfill at the start of `buffer`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let buf = buffer.as_ref();
        let mut body = check_envelope(buf, PacketType::Fulfill)?;
        let start = body.pos();
        body.fixed(FULFILLMENT_LEN)?;
        let data = body.var_octets_max(DATA_LEN_MAX, Error::DataTooLong)?;
        let body_end = body.end();
        Ok(Fulfill {
            body: start,
            data: (data.start, data.end),
            body_end,
            buffer,
        })
    }

    /// The fulfillment.
    #[inline]
    pub fn fulfillment(&self) -> &[u8; FULFILLMENT_LEN] {
        array_at(self.buffer.as_ref(), self.body)
    }

    /// The end-to-end data.
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
    pub fn repr(&self) -> FulfillRepr<'_> {
        FulfillRepr {
            fulfillment: self.fulfillment(),
            data: self.data(),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The fields of a Fulfill, for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FulfillRepr<'a> {
    /// The preimage of the condition.
    pub fulfillment: &'a [u8; FULFILLMENT_LEN],
    /// End-to-end data, at most 32 767 bytes.
    pub data: &'a [u8],
}

impl FulfillRepr<'_> {
    fn body_len(&self) -> usize {
        FULFILLMENT_LEN + oer::var_octets_len(self.data.len())
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        let body = self.body_len();
        1 + oer::length_prefix_len(body) + body
    }

    /// Writes the canonical encoding at the start of `buf` and returns its length.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len), or `data` is too long.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(
            self.data.len() <= DATA_LEN_MAX,
            "Fulfill data over 32767 bytes"
        );
        let mut w = Writer::new(buf);
        w.u8(PacketType::Fulfill as u8);
        w.length(self.body_len());
        w.bytes(self.fulfillment);
        w.var_octets(self.data);
        w.pos()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::test_hex as hex;

    #[test]
    fn peer_protocol_fulfill() {
        let bytes = hex(&format!("0d21{}00", "00".repeat(32)));
        let f = Fulfill::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.fulfillment(), &[0u8; 32]);
        assert!(f.data().is_empty());
        let mut out = vec![0u8; f.repr().buffer_len()];
        f.repr().emit(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn impossible_lengths() {
        let bytes = hex(&format!("0d22{}0107", "11".repeat(32)));
        assert!(Fulfill::new_checked(&bytes[..]).is_ok());
        for cut in 0..bytes.len() {
            assert!(Fulfill::new_checked(&bytes[..cut]).is_err());
        }
        let short = hex(&format!("0d1f{}", "01".repeat(31)));
        assert_eq!(
            Fulfill::new_checked(&short[..]).unwrap_err(),
            Error::Truncated
        );
    }
}
