//! `ilp-router decode`: a packet as one JSON object, for people and for acceptance checks.
//!
//! The field names and formats are those of `decoded` in the shared test vectors: amounts as
//! decimal strings, binary fields as lowercase hex, timestamps as ISO-8601 UTC with
//! milliseconds. This is tooling, not the packet path: it allocates freely.

use crate::wire::{timestamp, Btp, BtpBody, Error, Packet};
use serde_json::{json, Map, Value};

/// Which codec to read the bytes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ILPv4 packet.
    Ilp,
    /// A BTP 2.0 packet.
    Btp,
}

/// Decodes `bytes` as `kind` into the vectors' JSON form.
pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Value, Error> {
    match kind {
        Kind::Ilp => ilp_json(bytes),
        Kind::Btp => btp_json(bytes),
    }
}

/// The JSON printed for bytes that do not decode.
pub fn error_json(error: Error) -> Value {
    json!({ "error": error.as_str(), "detail": error.describe() })
}

/// Parses hex text (upper or lower case, surrounding white space ignored).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return Err(format!(
            "hex input has an odd number of digits ({})",
            text.len()
        ));
    }
    let digit = |c: u8, at: usize| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!(
            "not a hex digit at offset {at}: {:?}",
            char::from(c)
        )),
    };
    let raw = text.as_bytes();
    (0..raw.len())
        .step_by(2)
        .map(|i| Ok(digit(raw[i], i)? << 4 | digit(raw[i + 1], i + 1)?))
        .collect()
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn iso(digits: &[u8; timestamp::ILP_TIMESTAMP_LEN]) -> String {
    ascii(&timestamp::iso8601(digits))
}

fn ilp_json(bytes: &[u8]) -> Result<Value, Error> {
    let value = match Packet::new_checked(bytes)? {
        Packet::Prepare(p) => json!({
            "type": 12,
            "amount": p.amount().to_string(),
            "expiresAt": iso(p.expires_at_raw()),
            "expiresAtRaw": ascii(p.expires_at_raw()),
            "executionCondition": to_hex(p.execution_condition()),
            "destination": p.destination().as_str(),
            "data": to_hex(p.data()),
        }),
        Packet::Fulfill(f) => json!({
            "type": 13,
            "fulfillment": to_hex(f.fulfillment()),
            "data": to_hex(f.data()),
        }),
        Packet::Reject(r) => json!({
            "type": 14,
            "code": r.code().as_str(),
            "triggeredBy": r.triggered_by().map_or("", |a| a.as_str()),
            "message": String::from_utf8_lossy(r.message()),
            "messageHex": to_hex(r.message()),
            "data": to_hex(r.data()),
        }),
    };
    Ok(value)
}

fn btp_json(bytes: &[u8]) -> Result<Value, Error> {
    let packet = Btp::new_checked(bytes)?;
    let mut out = Map::new();
    out.insert("type".into(), json!(packet.btp_type() as u8));
    out.insert("typeName".into(), json!(packet.btp_type().name()));
    out.insert("requestId".into(), json!(packet.request_id()));
    match packet.body() {
        BtpBody::Response | BtpBody::Message => {}
        BtpBody::Transfer { amount } => {
            out.insert("amount".into(), json!(amount.to_string()));
        }
        BtpBody::Error {
            code,
            name,
            triggered_at,
            data,
        } => {
            // The view checked the timestamp already; this cannot fail.
            let digits = timestamp::parse_generalized(triggered_at)?;
            out.insert("code".into(), json!(ascii(&code)));
            out.insert("name".into(), json!(ascii(name)));
            out.insert("triggeredAt".into(), json!(iso(&digits)));
            out.insert("triggeredAtRaw".into(), json!(ascii(triggered_at)));
            out.insert("data".into(), json!(String::from_utf8_lossy(data)));
            out.insert("dataHex".into(), json!(to_hex(data)));
        }
    }
    let entries: Vec<Value> = packet
        .protocol_data()
        .map(|e| {
            json!({
                "protocolName": ascii(e.name),
                "contentType": e.content_type.0,
                "data": to_hex(e.data),
            })
        })
        .collect();
    out.insert("protocolData".into(), Value::Array(entries));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(parse_hex(" 0aFf\n").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(to_hex(&[0x0a, 0xff]), "0aff");
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(decode(Kind::Ilp, &[]), Err(Error::EmptyInput));
        assert_eq!(decode(Kind::Btp, &[]), Err(Error::EmptyInput));
    }
}
