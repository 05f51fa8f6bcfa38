//! Wire formats: ILPv4 packets (RFC 27), BTP 2.0 (RFC 23) and the OER pieces they are made of
//! (RFC 30).
//!
//! # Contract
//!
//! A packet view such as [`Prepare<T>`] wraps any `T: AsRef<[u8]>`. `new_checked` validates
//! every field once, left to right, and records the offsets of the variable-length fields; the
//! first rule broken is the [`Error`] returned. After that the accessors cannot fail, never
//! allocate and never copy. A view over `T: AsMut<[u8]>` also rewrites the fixed-width fields
//! (`amount`, `expiresAt`) in place, which is all a connector changes when it forwards.
//!
//! The `*Repr` types build packets into a caller-supplied buffer, for the packets we originate
//! (local Rejects, auth, tests and the load generator). They are never needed to forward.
//!
//! # Decoder policy
//!
//! Ours, stricter than RFC 27 requires (it lets decoders accept non-canonical OER): canonical
//! lengths only (RFC 30); bytes after the last field, inside or after the envelope, are
//! accepted and ignored (RFC 30 "Extensibility"), and never emitted; addresses (RFC 15) and
//! timestamps (RFC 30) are checked strictly; `data` is at most 32 767 bytes (the ASN.1 bound).
//!
//! # Non-goals
//!
//! No ILDCP, CCP or STREAM payloads here (they belong to the control plane), no I/O, no clock,
//! and no decoding into owned structs.

mod address;
mod btp;
mod error_code;
mod fulfill;
pub mod oer;
mod packet;
mod prepare;
mod reject;
pub mod timestamp;

pub use address::{check_address, Address, Segments, ADDRESS_LEN_MAX, ADDRESS_LEN_MIN};
pub use btp::{
    emit_ilp_header, ilp_header_len, Btp, BtpBody, BtpRepr, BtpType, ContentType, ProtocolData,
    ProtocolDataIter, BTP_HEADER_LEN_MAX,
};
pub use error_code::{AmountTooLarge, ErrorClass, ErrorCode};
pub use fulfill::{Fulfill, FulfillRepr, FULFILLMENT_LEN};
pub use packet::{Packet, PacketType, DATA_LEN_MAX, ILP_PACKET_LEN_MAX, MESSAGE_LEN_MAX};
pub use prepare::{Prepare, PrepareRepr, CONDITION_LEN};
pub use reject::{Reject, RejectRepr};

use core::fmt;

/// Why bytes were refused. The names are the categories of the shared test vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Zero-length input.
    EmptyInput,
    /// The input ends inside a fixed-size field, or before a required length byte.
    Truncated,
    /// A length determinant declares more bytes than remain in the enclosing field.
    LengthOverflow,
    /// The type byte is not one of the defined types.
    UnknownType,
    /// A defined type, but not the one the caller asked to view.
    UnexpectedType,
    /// Long form used for a length ≤ 127, or long form with a leading zero byte.
    NonCanonicalLength,
    /// The length byte is `0x80`.
    IndefiniteLength,
    /// Length-of-length greater than 8.
    LengthTooLarge,
    /// An ILP address breaks the RFC 15 grammar or its length limit.
    InvalidAddress,
    /// An ILP timestamp or a BTP GeneralizedTime breaks RFC 30.
    InvalidTimestamp,
    /// ILP `data` longer than 32 767 bytes.
    DataTooLong,
    /// An error-code byte that is not IA5 (≥ 0x80).
    InvalidErrorCode,
    /// A var-uint of length 0 or wider than 8 bytes.
    InvalidVarUint,
}

impl Error {
    /// The category name used by the shared vectors and by `ilp-router decode`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::EmptyInput => "empty_input",
            Error::Truncated => "truncated",
            Error::LengthOverflow => "length_overflow",
            Error::UnknownType => "unknown_type",
            Error::UnexpectedType => "unexpected_type",
            Error::NonCanonicalLength => "non_canonical_length",
            Error::IndefiniteLength => "indefinite_length",
            Error::LengthTooLarge => "length_too_large",
            Error::InvalidAddress => "invalid_address",
            Error::InvalidTimestamp => "invalid_timestamp",
            Error::DataTooLong => "data_too_long",
            Error::InvalidErrorCode => "invalid_error_code",
            Error::InvalidVarUint => "invalid_var_uint",
        }
    }

    /// A one-line explanation for people, used as the `detail` of `ilp-router decode`.
    pub const fn describe(self) -> &'static str {
        match self {
            Error::EmptyInput => "the input is empty",
            Error::Truncated => "the input ends inside a fixed-size field or a length determinant",
            Error::LengthOverflow => "a length determinant declares more bytes than remain",
            Error::UnknownType => "the type byte is not a defined packet type",
            Error::UnexpectedType => "the packet is of another type than the one expected",
            Error::NonCanonicalLength => "a length determinant is not in its shortest form",
            Error::IndefiniteLength => "the indefinite length form (0x80) is not allowed",
            Error::LengthTooLarge => "a length determinant has more than 8 length bytes",
            Error::InvalidAddress => "an ILP address breaks the RFC 15 grammar or length limit",
            Error::InvalidTimestamp => "a timestamp breaks the RFC 30 format or ranges",
            Error::DataTooLong => "the data field is longer than 32767 bytes",
            Error::InvalidErrorCode => "an error code byte is not 7-bit IA5",
            Error::InvalidVarUint => "a var-uint has length 0 or more than 8 bytes",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.as_str(), self.describe())
    }
}

impl std::error::Error for Error {}

/// Decodes lowercase or uppercase hex, for unit tests.
#[cfg(test)]
pub(crate) fn test_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}
