//! The ILPv4 envelope (RFC 27 "Type-Length Wrapper"): a type byte, then an OER length-prefixed
//! body. Dispatch to the three views by the type byte.

use super::oer::Reader;
use super::{Error, Fulfill, Prepare, Reject};

/// The longest `data` field of any ILP packet (ASN.1 `OCTET STRING (SIZE (0..32767))`).
pub const DATA_LEN_MAX: usize = 32_767;
/// The longest Reject `message` an encoder may emit (ASN.1).
pub const MESSAGE_LEN_MAX: usize = 8_191;
/// The longest legal ILP packet: a Reject with a 1023-byte `triggeredBy`, an 8191-byte
/// `message` and 32 767 bytes of `data` (the ASN.1 bounds of RFC 27; RFC 15 for addresses).
pub const ILP_PACKET_LEN_MAX: usize = 41_997;

const _: () = {
    use super::oer::var_octets_len;
    use super::ADDRESS_LEN_MAX;
    let reject_body = 3
        + var_octets_len(ADDRESS_LEN_MAX)
        + var_octets_len(MESSAGE_LEN_MAX)
        + var_octets_len(DATA_LEN_MAX);
    assert!(1 + 3 + reject_body == ILP_PACKET_LEN_MAX);
    // A Prepare is never larger than the largest Reject.
    let prepare_body = 8 + 17 + 32 + var_octets_len(ADDRESS_LEN_MAX) + var_octets_len(DATA_LEN_MAX);
    assert!(1 + 3 + prepare_body <= ILP_PACKET_LEN_MAX);
};

/// The three ILPv4 packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Type 12.
    Prepare = 12,
    /// Type 13.
    Fulfill = 13,
    /// Type 14.
    Reject = 14,
}

impl PacketType {
    /// The type for a type byte, if it is one of the three.
    #[inline]
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            12 => Some(PacketType::Prepare),
            13 => Some(PacketType::Fulfill),
            14 => Some(PacketType::Reject),
            _ => None,
        }
    }

    /// The type of the packet in `buf`, from its first byte.
    #[inline]
    pub fn of(buf: &[u8]) -> Result<Self, Error> {
        let first = *buf.first().ok_or(Error::EmptyInput)?;
        PacketType::from_byte(first).ok_or(Error::UnknownType)
    }
}

/// Checks the envelope of a packet of type `expected` and returns a reader over its body.
#[inline]
pub(crate) fn check_envelope(buf: &[u8], expected: PacketType) -> Result<Reader<'_>, Error> {
    if PacketType::of(buf)? != expected {
        return Err(Error::UnexpectedType);
    }
    let mut reader = Reader::new(buf, 1);
    let len = reader.length()?;
    reader.enclosed(len)
}

/// Any ILP packet, dispatched on its type byte.
#[derive(Debug, Clone)]
pub enum Packet<T: AsRef<[u8]>> {
    /// Type 12.
    Prepare(Prepare<T>),
    /// Type 13.
    Fulfill(Fulfill<T>),
    /// Type 14.
    Reject(Reject<T>),
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the packet in `buffer`, whatever its type.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        match PacketType::of(buffer.as_ref())? {
            PacketType::Prepare => Prepare::new_checked(buffer).map(Packet::Prepare),
            PacketType::Fulfill => Fulfill::new_checked(buffer).map(Packet::Fulfill),
            PacketType::Reject => Reject::new_checked(buffer).map(Packet::Reject),
        }
    }

    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Prepare(_) => PacketType::Prepare,
            Packet::Fulfill(_) => PacketType::Fulfill,
            Packet::Reject(_) => PacketType::Reject,
        }
    }
}
