//! ILP Prepare (type 12), RFC 27.
//!
//! ```text
//! body offset  size   field
//! 0            8      amount              UInt64, rewritten at every hop
//! 8            17     expiresAt           ILP timestamp, rewritten at every hop
//! 25           32     executionCondition
//! 57           1-3+n  destination         var-octet-string, ILP address
//! 57+d         1-3+m  data                var-octet-string, m <= 32767
//! ```

use super::oer::{self, Writer};
use super::packet::{check_envelope, PacketType, DATA_LEN_MAX};
use super::timestamp::{self, ILP_TIMESTAMP_LEN};
use super::{check_address, Address, Error};

/// Bytes in an execution condition (a SHA-256 digest).
pub const CONDITION_LEN: usize = 32;

mod field {
    // Offsets relative to the first body byte.
    pub(super) const AMOUNT: usize = 0;
    pub(super) const EXPIRES_AT: usize = 8;
    pub(super) const CONDITION: usize = 25;
    pub(super) const FIXED_END: usize = 57;
}

/// A checked, borrowed view of an ILP Prepare.
#[derive(Debug, Clone)]
pub struct Prepare<T: AsRef<[u8]>> {
    buffer: T,
    body: usize,
    destination: (usize, usize),
    data: (usize, usize),
    body_end: usize,
    expires_at_ms: i64,
}

impl<T: AsRef<[u8]>> Prepare<T> {
    /// Checks every field of the Prepare at the start of `buffer`. Bytes after the last field,
    /// inside or after the envelope, are accepted and ignored.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let buf = buffer.as_ref();
        let mut body = check_envelope(buf, PacketType::Prepare)?;
        let start = body.pos();
        body.fixed(field::EXPIRES_AT)?;
        let expires_at = body.fixed(ILP_TIMESTAMP_LEN)?;
        let expires_at_ms = timestamp::parse_ilp(&buf[expires_at])?;
        body.fixed(CONDITION_LEN)?;
        let destination = body.var_octets()?;
        check_address(&buf[destination.clone()])?;
        let data = body.var_octets_max(DATA_LEN_MAX, Error::DataTooLong)?;
        let body_end = body.end();
        Ok(Prepare {
            body: start,
            destination: (destination.start, destination.end),
            data: (data.start, data.end),
            body_end,
            expires_at_ms,
            buffer,
        })
    }

    /// The amount, in the units of the link the packet is on.
    #[inline]
    pub fn amount(&self) -> u64 {
        oer::read_u64(self.buffer.as_ref(), self.body + field::AMOUNT)
    }

    /// The expiry, in Unix milliseconds.
    #[inline]
    pub fn expires_at(&self) -> i64 {
        self.expires_at_ms
    }

    /// The expiry as its 17 wire digits.
    #[inline]
    pub fn expires_at_raw(&self) -> &[u8; ILP_TIMESTAMP_LEN] {
        let at = self.body + field::EXPIRES_AT;
        array_at(self.buffer.as_ref(), at)
    }

    /// The execution condition.
    #[inline]
    pub fn execution_condition(&self) -> &[u8; CONDITION_LEN] {
        array_at(self.buffer.as_ref(), self.body + field::CONDITION)
    }

    /// The destination address.
    #[inline]
    pub fn destination(&self) -> Address<'_> {
        Address::new_unchecked(&self.buffer.as_ref()[self.destination.0..self.destination.1])
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

    /// True when the body carries bytes after `data`, which RS-strict peers refuse; such a
    /// packet is re-emitted in canonical form before it is relayed.
    #[inline]
    pub fn has_inner_trailing_bytes(&self) -> bool {
        self.data.1 != self.body_end
    }

    /// The fields, for re-emitting the packet.
    pub fn repr(&self) -> PrepareRepr<'_> {
        PrepareRepr {
            amount: self.amount(),
            expires_at: self.expires_at_ms,
            execution_condition: self.execution_condition(),
            destination: self.destination(),
            data: self.data(),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Prepare<T> {
    /// Rewrites the amount in place.
    #[inline]
    pub fn set_amount(&mut self, amount: u64) {
        let at = self.body + field::AMOUNT;
        self.buffer.as_mut()[at..at + 8].copy_from_slice(&amount.to_be_bytes());
    }

    /// Rewrites the expiry in place, clamped to the years 0000–9999 that the format holds.
    #[inline]
    pub fn set_expires_at(&mut self, unix_ms: i64) {
        let at = self.body + field::EXPIRES_AT;
        let digits = timestamp::format_ilp(unix_ms);
        self.buffer.as_mut()[at..at + ILP_TIMESTAMP_LEN].copy_from_slice(&digits);
        self.expires_at_ms = unix_ms.clamp(timestamp::UNIX_MS_MIN, timestamp::UNIX_MS_MAX);
    }

    /// Drops bytes after `data` inside the envelope by rewriting the envelope length and
    /// moving the body (no allocation), so the packet is canonical again before it is relayed
    /// (RFC 30 lets parsers ignore such bytes; strict interledger-rs peers refuse them).
    /// Returns the new packet length.
    pub fn drop_inner_trailing_bytes(mut self) -> usize {
        let body_len = self.data.1 - self.body;
        let new_body = 1 + oer::length_prefix_len(body_len);
        debug_assert!(
            new_body <= self.body,
            "a shorter body never needs a longer prefix"
        );
        let buf = self.buffer.as_mut();
        buf.copy_within(self.body..self.data.1, new_body);
        Writer::new(&mut buf[1..new_body]).length(body_len);
        new_body + body_len
    }
}

/// The fields of a Prepare, for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareRepr<'a> {
    /// Amount in the link's units.
    pub amount: u64,
    /// Expiry in Unix milliseconds (years 0000–9999).
    pub expires_at: i64,
    /// SHA-256 of the fulfillment.
    pub execution_condition: &'a [u8; CONDITION_LEN],
    /// Destination address.
    pub destination: Address<'a>,
    /// End-to-end data, at most 32 767 bytes.
    pub data: &'a [u8],
}

impl PrepareRepr<'_> {
    fn body_len(&self) -> usize {
        field::FIXED_END
            + oer::var_octets_len(self.destination.as_bytes().len())
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
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len), or `data` is too long.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(
            self.data.len() <= DATA_LEN_MAX,
            "Prepare data over 32767 bytes"
        );
        let mut w = Writer::new(buf);
        w.u8(PacketType::Prepare as u8);
        w.length(self.body_len());
        w.u64(self.amount);
        w.bytes(&timestamp::format_ilp(self.expires_at));
        w.bytes(self.execution_condition);
        w.var_octets(self.destination.as_bytes());
        w.var_octets(self.data);
        w.pos()
    }
}

/// A fixed-size array at `at` of a checked buffer.
#[inline]
pub(crate) fn array_at<const N: usize>(buf: &[u8], at: usize) -> &[u8; N] {
    // The range has exactly N bytes, so the conversion cannot fail; the view's check proved
    // the range is in bounds.
    <&[u8; N]>::try_from(&buf[at..at + N]).expect("N-byte range")
}

#[cfg(test)]
mod test {
    use super::*;

    use crate::wire::test_hex as hex;

    // fixture_ilp_packet_prepare_example01 from the shared vectors.
    fn packet() -> [u8; 106] {
        hex("0c68000000000000006b323031373132323330313231343035343974e1136dc71c9e5f283bec83461cbf1261c4014f72d48f8dd65453a0b84e7de10d6578616d706c652e616c696365205db343fdc41898f6df4202329139dc242dd0f558a811b46b28918fdab37c6cb0").try_into().unwrap()
    }

    #[test]
    fn deconstruct() {
        let p = Prepare::new_checked(packet()).unwrap();
        assert_eq!(p.amount(), 107);
        assert_eq!(p.expires_at_raw(), b"20171223012140549");
        assert_eq!(p.expires_at(), 1_513_992_100_549);
        assert_eq!(p.execution_condition()[0], 0x74);
        assert_eq!(p.destination().as_bytes(), b"example.alice");
        assert_eq!(p.data().len(), 32);
        assert_eq!(p.as_bytes().len(), 106);
        assert!(!p.has_inner_trailing_bytes());
    }

    #[test]
    fn construct() {
        let p = Prepare::new_checked(packet()).unwrap();
        let repr = p.repr();
        assert_eq!(repr.buffer_len(), 106);
        let mut out = [0u8; 106];
        assert_eq!(repr.emit(&mut out), 106);
        assert_eq!(out, packet());
    }

    #[test]
    fn rewrite_in_place() {
        let mut bytes = packet();
        let mut p = Prepare::new_checked(&mut bytes[..]).unwrap();
        p.set_amount(u64::MAX);
        p.set_expires_at(1_513_992_099_549);
        assert_eq!(p.amount(), u64::MAX);
        assert_eq!(p.expires_at_raw(), b"20171223012139549");
        let again = Prepare::new_checked(&bytes[..]).unwrap();
        assert_eq!(again.amount(), u64::MAX);
        assert_eq!(again.expires_at(), 1_513_992_099_549);
        assert_eq!(again.destination().as_bytes(), b"example.alice");
    }

    #[test]
    fn inner_trailing_bytes_are_dropped_in_place() {
        // prepare_inner_trailing_bytes from the shared vectors, and its canonical form.
        let mut bytes = hex("0c4600000000000000073230313731323233303132313430353439111111111111111111111111111111111111111111111111111111111111111105672e612e62036162630000ff");
        let canonical = hex("0c4300000000000000073230313731323233303132313430353439111111111111111111111111111111111111111111111111111111111111111105672e612e6203616263");
        let p = Prepare::new_checked(&mut bytes[..]).unwrap();
        assert!(p.has_inner_trailing_bytes());
        let len = p.drop_inner_trailing_bytes();
        assert_eq!(&bytes[..len], &canonical[..]);
        // A body that shrinks below 128 bytes loses a length byte.
        let data = [9u8; 60];
        let view = Prepare::new_checked(&canonical[..]).unwrap();
        let repr = PrepareRepr {
            data: &data,
            ..view.repr()
        };
        let mut long = vec![0u8; repr.buffer_len() + 70];
        repr.emit(&mut long);
        let body_len = long[1] as usize + 70;
        long[1] = body_len as u8;
        long.insert(1, 0x81);
        long.truncate(3 + body_len);
        let mut expected = vec![0u8; repr.buffer_len()];
        repr.emit(&mut expected);
        let p = Prepare::new_checked(&mut long[..]).unwrap();
        let len = p.drop_inner_trailing_bytes();
        assert_eq!(&long[..len], &expected[..]);
    }

    #[test]
    fn impossible_lengths() {
        let packet = packet();
        for cut in 0..106 {
            assert!(
                Prepare::new_checked(&packet[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            Prepare::new_checked(&packet[..1]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Prepare::new_checked(&packet[..50]).unwrap_err(),
            Error::LengthOverflow
        );
        let mut fulfill = packet;
        fulfill[0] = 13;
        assert_eq!(
            Prepare::new_checked(&fulfill[..]).unwrap_err(),
            Error::UnexpectedType
        );
    }
}
