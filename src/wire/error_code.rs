//! ILP error codes (RFC 27 §"Error Codes") and the F08 data layout.

use core::fmt;

/// A three-byte IA5 ILP error code. Codes we do not know are legal and relayed unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub [u8; 3]);

/// What a sender should do about a rejected packet, from the code's first letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `F`: do not retry unchanged.
    Final,
    /// `T`: retry the same packet later.
    Temporary,
    /// `R`: retry with more amount or time margin.
    Relative,
    /// Any other first letter.
    Unknown(u8),
}

macro_rules! codes {
    ($($name:ident = $bytes:literal, $text:literal;)*) => {
        impl ErrorCode {
            $(
                #[doc = $text]
                pub const $name: ErrorCode = ErrorCode(*$bytes);
            )*

            /// The RFC 27 name of a known code.
            pub fn name(self) -> Option<&'static str> {
                match &self.0 {
                    $($bytes => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    F00_BAD_REQUEST = b"F00", "Bad Request";
    F01_INVALID_PACKET = b"F01", "Invalid Packet";
    F02_UNREACHABLE = b"F02", "Unreachable";
    F03_INVALID_AMOUNT = b"F03", "Invalid Amount";
    F04_INSUFFICIENT_DESTINATION_AMOUNT = b"F04", "Insufficient Destination Amount";
    F05_WRONG_CONDITION = b"F05", "Wrong Condition";
    F06_UNEXPECTED_PAYMENT = b"F06", "Unexpected Payment";
    F07_CANNOT_RECEIVE = b"F07", "Cannot Receive";
    F08_AMOUNT_TOO_LARGE = b"F08", "Amount Too Large";
    F09_INVALID_PEER_RESPONSE = b"F09", "Invalid Peer Response";
    F99_APPLICATION_ERROR = b"F99", "Application Error";
    T00_INTERNAL_ERROR = b"T00", "Internal Error";
    T01_PEER_UNREACHABLE = b"T01", "Peer Unreachable";
    T02_PEER_BUSY = b"T02", "Peer Busy";
    T03_CONNECTOR_BUSY = b"T03", "Connector Busy";
    T04_INSUFFICIENT_LIQUIDITY = b"T04", "Insufficient Liquidity";
    T05_RATE_LIMITED = b"T05", "Rate Limited";
    T99_APPLICATION_ERROR = b"T99", "Application Error";
    R00_TRANSFER_TIMED_OUT = b"R00", "Transfer Timed Out";
    R01_INSUFFICIENT_SOURCE_AMOUNT = b"R01", "Insufficient Source Amount";
    R02_INSUFFICIENT_TIMEOUT = b"R02", "Insufficient Timeout";
    R99_APPLICATION_ERROR = b"R99", "Application Error";
}

impl ErrorCode {
    /// The class given by the first letter.
    pub fn class(self) -> ErrorClass {
        match self.0[0] {
            b'F' => ErrorClass::Final,
            b'T' => ErrorClass::Temporary,
            b'R' => ErrorClass::Relative,
            other => ErrorClass::Unknown(other),
        }
    }

    /// The three code bytes.
    pub fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    /// The code as text; codes are IA5 once a view has checked them.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode({})", self.as_str())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The data of an F08 Amount Too Large reject (ASN.1 `AmountTooLargeErrorData`): two UInt64,
/// in the units of the link the rejected Prepare arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AmountTooLarge {
    /// The amount the rejecting connector received.
    pub received: u64,
    /// The largest amount it would forward, inclusive.
    pub maximum: u64,
}

impl AmountTooLarge {
    /// Bytes in the encoded form.
    pub const LEN: usize = 16;

    /// The 16-byte encoding.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.received.to_be_bytes());
        out[8..].copy_from_slice(&self.maximum.to_be_bytes());
        out
    }

    /// Reads the first 16 bytes and ignores any after them; `None` when there are fewer
    /// (some connectors send an empty F08, which senders should tolerate).
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let data = data.get(..Self::LEN)?;
        Some(AmountTooLarge {
            received: super::oer::read_u64(data, 0),
            maximum: super::oer::read_u64(data, 8),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn classes_and_names() {
        assert_eq!(ErrorCode::F02_UNREACHABLE.class(), ErrorClass::Final);
        assert_eq!(
            ErrorCode::T04_INSUFFICIENT_LIQUIDITY.class(),
            ErrorClass::Temporary
        );
        assert_eq!(
            ErrorCode::R02_INSUFFICIENT_TIMEOUT.class(),
            ErrorClass::Relative
        );
        assert_eq!(ErrorCode(*b"X42").class(), ErrorClass::Unknown(b'X'));
        assert_eq!(
            ErrorCode::F08_AMOUNT_TOO_LARGE.name(),
            Some("Amount Too Large")
        );
        assert_eq!(ErrorCode(*b"X42").name(), None);
    }

    #[test]
    fn f08_data() {
        let data = AmountTooLarge {
            received: 1001,
            maximum: 1000,
        };
        let bytes = data.to_bytes();
        assert_eq!(bytes, *b"\0\0\0\0\0\0\x03\xe9\0\0\0\0\0\0\x03\xe8");
        assert_eq!(AmountTooLarge::from_bytes(&bytes), Some(data));
        let mut longer = bytes.to_vec();
        longer.push(7);
        assert_eq!(AmountTooLarge::from_bytes(&longer), Some(data));
        assert_eq!(AmountTooLarge::from_bytes(&bytes[..15]), None);
    }
}
