//! Fuzzes `ildcp::parse_reply`, the ILDCP client's reading of its parent's answer (the raw
//! input as the ILP packet).
//!
//! For every input, `parse_reply` must not panic, and must accept exactly when a model written
//! here with `wire` accepts: the input is an ILP Fulfill whose fulfillment is 32 zero bytes,
//! and whose data holds a var-octet-string that is a valid ILP address (RFC 15), a UInt8 and
//! a var-octet-string, in that order (bytes after them are ignored). For what it accepts:
//! - the address passes `check_address` and is exactly the data's first field;
//! - the asset scale is the byte after it, and the asset code the next field (read as UTF-8,
//!   invalid bytes replaced).
#![no_main]

use ilp_router::ildcp::parse_reply;
use ilp_router::wire::oer::Reader;
use ilp_router::wire::{check_address, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = parse_reply(data);
    match (result, model(data)) {
        (Ok(learned), Some((address, scale, code))) => {
            assert!(
                check_address(learned.address.as_bytes()).is_ok(),
                "accepted an invalid address {:?}",
                learned.address
            );
            assert_eq!(learned.address.as_bytes(), &address[..]);
            assert_eq!(learned.asset_scale, scale);
            assert_eq!(learned.asset_code, String::from_utf8_lossy(&code));
        }
        (Err(e), None) => assert!(!e.is_empty(), "an empty error"),
        (Ok(learned), None) => panic!("accepted what the model refuses: {learned:?}"),
        (Err(e), Some(_)) => panic!("refused what the model accepts: {e}"),
    }
});

/// The address, scale and code of an acceptable answer; `None` for any other input.
fn model(data: &[u8]) -> Option<(Vec<u8>, u8, Vec<u8>)> {
    let Ok(Packet::Fulfill(fulfill)) = Packet::new_checked(data) else {
        return None;
    };
    if fulfill.fulfillment() != &[0u8; 32] {
        return None;
    }
    let body = fulfill.data();
    let mut reader = Reader::new(body, 0);
    let address = reader.var_octets().ok()?;
    let scale = reader.u8().ok()?;
    let code = reader.var_octets().ok()?;
    check_address(&body[address.clone()]).ok()?;
    Some((body[address].to_vec(), scale, body[code].to_vec()))
}
