//! Fuzzes `Packet::new_checked`, the ILPv4 decoder (Prepare, Fulfill, Reject).
//!
//! Every input the decoder accepts must also satisfy:
//! - the view covers no more than the input (`as_bytes().len() <= data.len()`);
//! - `repr().emit` writes exactly `repr().buffer_len()` bytes and nothing past them;
//! - those bytes parse again, as the same type, to the same fields, with no trailing bytes;
//! - emitting the re-parsed packet gives the same bytes again (a fixed point);
//! - the re-emission equals the packet's own bytes when its body has nothing after `data`
//!   (the decoder accepts canonical lengths only, and timestamps round-trip), and is shorter
//!   when it has;
//! - for a Prepare, `drop_inner_trailing_bytes` on a mutable copy leaves exactly the canonical
//!   re-emission at the start of the buffer;
//! - for a Prepare, `set_amount` / `set_expires_at` on a mutable copy leave a packet that
//!   parses to the new values (the expiry clamped to years 0000-9999), with every other byte
//!   unchanged.
#![no_main]

use ilp_router::wire::timestamp::{format_ilp, UNIX_MS_MAX, UNIX_MS_MIN};
use ilp_router::wire::{Fulfill, Packet, Prepare, Reject};
use libfuzzer_sys::fuzz_target;

/// Bytes after `buffer_len()` that `emit` must leave alone.
const GUARD: usize = 16;
const GUARD_BYTE: u8 = 0xa5;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    match packet {
        Packet::Prepare(p) => check_prepare(&p, data),
        Packet::Fulfill(f) => check_fulfill(&f, data),
        Packet::Reject(r) => check_reject(&r, data),
    }
});

/// Calls `emit` on a buffer of `len` bytes plus a guard and checks it wrote exactly `len`.
fn emit_exact(len: usize, emit: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut out = vec![GUARD_BYTE; len + GUARD];
    let written = emit(&mut out);
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

/// Checks shared by the three types: `own` is the view's `as_bytes()`, `emitted` its
/// canonical re-emission.
fn check_lengths(data: &[u8], own: &[u8], inner_trailing: bool, emitted: &[u8]) {
    assert!(own.len() <= data.len(), "view longer than its input");
    assert_eq!(
        own,
        &data[..own.len()],
        "as_bytes is not a prefix of the input"
    );
    if inner_trailing {
        assert!(
            emitted.len() < own.len(),
            "re-emission not shorter than a body with trailing bytes"
        );
    } else {
        assert_eq!(emitted, own, "canonical input not reproduced byte for byte");
    }
}

fn reparse(emitted: &[u8]) -> Packet<&[u8]> {
    match Packet::new_checked(emitted) {
        Ok(packet) => packet,
        Err(e) => panic!("re-emitted packet refused: {e}"),
    }
}

fn check_prepare(p: &Prepare<&[u8]>, data: &[u8]) {
    let repr = p.repr();
    let emitted = emit_exact(repr.buffer_len(), |buf| repr.emit(buf));
    check_lengths(data, p.as_bytes(), p.has_inner_trailing_bytes(), &emitted);

    let Packet::Prepare(q) = reparse(&emitted) else {
        panic!("a Prepare re-parsed as another type");
    };
    assert_eq!(q.amount(), p.amount());
    assert_eq!(q.expires_at(), p.expires_at());
    assert_eq!(q.expires_at_raw(), p.expires_at_raw());
    assert_eq!(q.execution_condition(), p.execution_condition());
    assert_eq!(q.destination(), p.destination());
    assert_eq!(q.data(), p.data());
    assert_eq!(q.as_bytes().len(), emitted.len());
    assert!(!q.has_inner_trailing_bytes());
    assert_eq!(q.repr(), repr);
    let again = emit_exact(q.repr().buffer_len(), |buf| q.repr().emit(buf));
    assert_eq!(again, emitted, "re-emission is not a fixed point");

    // What the engine does before relaying: make the packet canonical in place.
    let mut copy = data.to_vec();
    let view = Prepare::new_checked(&mut copy[..]).expect("copy of a Prepare");
    let len = view.drop_inner_trailing_bytes();
    assert_eq!(
        &copy[..len],
        &emitted[..],
        "drop_inner_trailing_bytes differs from the canonical emission"
    );

    check_rewrite(p, data);
}

/// Rewrites amount and expiry in place on copies of the input and re-parses them.
fn check_rewrite(p: &Prepare<&[u8]>, data: &[u8]) {
    let end = p.as_bytes().len();
    // The body starts after the type byte and the length determinant; amount (8 bytes) and
    // expiresAt (17 bytes) are its first 25 bytes.
    let body = 2 + if data[1] & 0x80 != 0 {
        usize::from(data[1] & 0x7f)
    } else {
        0
    };
    let fixed = body..body + 25;

    let mut cases = vec![
        (u64::MAX, i64::MAX),
        (0, i64::MIN),
        (p.amount() ^ 1, UNIX_MS_MIN),
        (p.amount().wrapping_add(1), UNIX_MS_MAX),
        (p.amount(), p.expires_at().wrapping_sub(1)),
    ];
    // Bytes after the packet are ignored by the decoder, so let the fuzzer choose the values
    // through them.
    let extra = &data[end..];
    if extra.len() >= 16 {
        let amount = u64::from_be_bytes(extra[..8].try_into().unwrap());
        let expires_at = i64::from_be_bytes(extra[8..16].try_into().unwrap());
        cases.push((amount, expires_at));
    }

    for (amount, expires_at) in cases {
        let want = expires_at.clamp(UNIX_MS_MIN, UNIX_MS_MAX);
        let mut copy = data.to_vec();
        {
            let mut view = Prepare::new_checked(&mut copy[..]).expect("copy of a Prepare");
            view.set_amount(amount);
            view.set_expires_at(expires_at);
            assert_eq!(view.amount(), amount);
            assert_eq!(view.expires_at(), want);
            assert_eq!(view.expires_at_raw(), &format_ilp(want));
        }
        let q = match Prepare::new_checked(&copy[..]) {
            Ok(q) => q,
            Err(e) => panic!(
                "Prepare refused after set_amount({amount}) / set_expires_at({expires_at}): {e}"
            ),
        };
        assert_eq!(q.amount(), amount);
        assert_eq!(
            q.expires_at(),
            want,
            "expiry does not round-trip through the wire"
        );
        assert_eq!(q.execution_condition(), p.execution_condition());
        assert_eq!(q.destination(), p.destination());
        assert_eq!(q.data(), p.data());
        assert_eq!(q.as_bytes().len(), end);
        assert_eq!(copy[..fixed.start], data[..fixed.start]);
        assert_eq!(
            copy[fixed.end..],
            data[fixed.end..],
            "rewrite touched other bytes"
        );
    }
}

fn check_fulfill(f: &Fulfill<&[u8]>, data: &[u8]) {
    let repr = f.repr();
    let emitted = emit_exact(repr.buffer_len(), |buf| repr.emit(buf));
    check_lengths(data, f.as_bytes(), f.has_inner_trailing_bytes(), &emitted);

    let Packet::Fulfill(g) = reparse(&emitted) else {
        panic!("a Fulfill re-parsed as another type");
    };
    assert_eq!(g.fulfillment(), f.fulfillment());
    assert_eq!(g.data(), f.data());
    assert_eq!(g.as_bytes().len(), emitted.len());
    assert!(!g.has_inner_trailing_bytes());
    assert_eq!(g.repr(), repr);
    let again = emit_exact(g.repr().buffer_len(), |buf| g.repr().emit(buf));
    assert_eq!(again, emitted, "re-emission is not a fixed point");
}

fn check_reject(r: &Reject<&[u8]>, data: &[u8]) {
    let repr = r.repr();
    let emitted = emit_exact(repr.buffer_len(), |buf| repr.emit(buf));
    check_lengths(data, r.as_bytes(), r.has_inner_trailing_bytes(), &emitted);

    let Packet::Reject(s) = reparse(&emitted) else {
        panic!("a Reject re-parsed as another type");
    };
    assert_eq!(s.code(), r.code());
    assert_eq!(s.triggered_by(), r.triggered_by());
    assert_eq!(s.message(), r.message());
    assert_eq!(s.data(), r.data());
    assert_eq!(s.as_bytes().len(), emitted.len());
    assert!(!s.has_inner_trailing_bytes());
    assert_eq!(s.repr(), repr);
    let again = emit_exact(s.repr().buffer_len(), |buf| s.repr().emit(buf));
    assert_eq!(again, emitted, "re-emission is not a fixed point");
}
