//! Fuzzes `Btp::new_checked`, the BTP 2.0 decoder.
//!
//! Every input the decoder accepts must also satisfy:
//! - the view covers no more than the input (`as_bytes().len() <= data.len()`);
//! - `protocol_data()` yields exactly `protocol_data_count()` entries, and `ilp()` is the
//!   first entry named `ilp`;
//! - `repr(&mut entries).emit` writes exactly `buffer_len()` bytes and nothing past them, and
//!   never more than the packet's own bytes (the decoder accepts and drops a count with a
//!   redundant leading zero and bytes after the last entry; everything else is canonical);
//! - those bytes parse again to the same type, request id, body and entries;
//! - emitting the re-parsed packet gives the same bytes again (a fixed point).
#![no_main]

use ilp_router::wire::{Btp, ContentType, ProtocolData};
use libfuzzer_sys::fuzz_target;

/// Bytes after `buffer_len()` that `emit` must leave alone.
const GUARD: usize = 16;
const GUARD_BYTE: u8 = 0xa5;

const EMPTY: ProtocolData<'static> = ProtocolData {
    name: &[],
    content_type: ContentType(0),
    data: &[],
};

fuzz_target!(|data: &[u8]| {
    let Ok(btp) = Btp::new_checked(data) else {
        return;
    };
    let own = btp.as_bytes();
    assert!(own.len() <= data.len(), "view longer than its input");
    assert_eq!(
        own,
        &data[..own.len()],
        "as_bytes is not a prefix of the input"
    );

    let listed: Vec<ProtocolData<'_>> = btp.protocol_data().collect();
    assert_eq!(listed.len(), btp.protocol_data_count());
    assert_eq!(btp.protocol_data().count(), btp.protocol_data_count());
    assert_eq!(
        btp.protocol_data().size_hint(),
        (listed.len(), Some(listed.len()))
    );
    let first_ilp = listed.iter().find(|e| e.name == b"ilp").map(|e| e.data);
    assert_eq!(btp.ilp(), first_ilp);

    let emitted = emit(&btp);
    assert!(
        emitted.len() <= own.len(),
        "canonical re-emission longer than the packet"
    );

    let again = match Btp::new_checked(&emitted[..]) {
        Ok(again) => again,
        Err(e) => panic!("re-emitted BTP packet refused: {e}"),
    };
    assert_eq!(again.btp_type(), btp.btp_type());
    assert_eq!(again.request_id(), btp.request_id());
    assert_eq!(again.body(), btp.body());
    assert_eq!(again.protocol_data_count(), btp.protocol_data_count());
    let relisted: Vec<ProtocolData<'_>> = again.protocol_data().collect();
    assert_eq!(relisted, listed);
    assert_eq!(again.as_bytes().len(), emitted.len());

    assert_eq!(emit(&again), emitted, "re-emission is not a fixed point");
});

/// Emits `btp` through its repr into a buffer of `buffer_len()` plus a guard.
fn emit(btp: &Btp<&[u8]>) -> Vec<u8> {
    let mut entries = vec![EMPTY; btp.protocol_data_count()];
    let repr = btp.repr(&mut entries);
    let len = repr.buffer_len();
    let mut out = vec![GUARD_BYTE; len + GUARD];
    let written = repr.emit(&mut out);
    assert_eq!(
        written, len,
        "emit wrote a different length than buffer_len"
    );
    assert!(
        out[len..].iter().all(|&b| b == GUARD_BYTE),
        "emit wrote past buffer_len"
    );
    out.truncate(len);
    out
}
