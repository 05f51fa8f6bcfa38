//! Fuzzes the RFC 6455 opening handshake: `parse_upgrade_request` (server) and
//! `parse_upgrade_response` (client, with the RFC's sample nonce "the sample nonce", whose
//! accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`), both on every input.
//!
//! For both parsers:
//! - `Ok(None)` only while no `\r\n\r\n` has arrived and fewer than `HANDSHAKE_LEN_MAX` bytes
//!   have; `TooLarge` only when `HANDSHAKE_LEN_MAX` bytes have arrived without one;
//! - an error stays the same error with bytes appended, and an accepted head is accepted
//!   again, equal, from just its own bytes and with bytes appended (frames may follow it);
//! - an accepted head's length ends at the first `\r\n\r\n`, is at most the input and
//!   `HANDSHAKE_LEN_MAX`, and one byte less is `Ok(None)`;
//! - every server error's `write_answer` (the same bytes as `write_http_error` with its status
//!   and reason) fits `HANDSHAKE_ANSWER_LEN_MAX`, and the client parser reads it as
//!   `UnexpectedStatus` of that status.
//!
//! For an accepted request: the path starts with `/` and is visible ASCII, `header()` finds
//! the same Host and key (a header that must appear once) and version 13, the key is 22
//! base64 characters and `==`, `account_from_path` is the segment of `/accounts/{name}/ilp/btp`,
//! and the 101 from `write_upgrade_response` has the key's accept value (and is accepted by
//! the client parser when the key is the canonical base64 of a nonce). When the Host is
//! visible ASCII, a request written by `write_upgrade_request` with that host, path and the
//! key's 16 bytes as nonce parses back to them, with `key_from_nonce(nonce)`, and the 101 for
//! it is accepted with that nonce and refused (`AcceptMismatch`) with another.
//!
//! For an accepted response: the status line is `HTTP/1.1 101`, and another nonce gets
//! `AcceptMismatch`.
#![no_main]

use ilp_router::link::websocket::{
    accept_key, key_from_nonce, parse_upgrade_request, parse_upgrade_response, upgrade_request_len,
    write_http_error, write_upgrade_request, write_upgrade_response, HandshakeError,
    HANDSHAKE_ANSWER_LEN_MAX, HANDSHAKE_LEN_MAX, KEY_LEN, NONCE_LEN, UPGRADE_RESPONSE_LEN,
};
use libfuzzer_sys::fuzz_target;

const SAMPLE_NONCE: &[u8; NONCE_LEN] = b"the sample nonce";

/// Appended to check that bytes after the head change nothing (a masked binary frame).
const TAIL: &[u8] = b"\x82\x83\x01\x02\x03\x04\x01\x02\x03\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let terminator = data[..data.len().min(HANDSHAKE_LEN_MAX)]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4);
    server(data, terminator);
    client(data, terminator);
});

/// The head's length is fixed by the first `\r\n\r\n` within `HANDSHAKE_LEN_MAX` bytes.
fn check_incomplete_or_too_large<T: std::fmt::Debug>(
    data: &[u8],
    terminator: Option<usize>,
    result: &Result<Option<T>, HandshakeError>,
) {
    match result {
        Ok(None) => assert!(
            terminator.is_none() && data.len() < HANDSHAKE_LEN_MAX,
            "Ok(None) with a complete head or {} bytes",
            data.len()
        ),
        Err(HandshakeError::TooLarge) => assert!(
            terminator.is_none() && data.len() >= HANDSHAKE_LEN_MAX,
            "TooLarge with a complete head or {} bytes",
            data.len()
        ),
        _ => assert!(
            terminator.is_some(),
            "a result before the head is complete: {result:?}"
        ),
    }
}

fn server(data: &[u8], terminator: Option<usize>) {
    let result = parse_upgrade_request(data);
    check_incomplete_or_too_large(data, terminator, &result);
    let request = match result {
        Ok(None) => return,
        Err(e) => {
            let longer = [data, TAIL].concat();
            assert_eq!(
                parse_upgrade_request(&longer),
                Err(e),
                "error changed with bytes appended"
            );
            check_http_error(e);
            return;
        }
        Ok(Some(request)) => request,
    };
    let len = request.len();
    assert_eq!(
        Some(len),
        terminator,
        "len is not the end of the first \\r\\n\\r\\n"
    );
    assert!(len <= data.len() && len <= HANDSHAKE_LEN_MAX);
    assert!(!request.is_empty());
    let head = &data[..len];
    assert_eq!(parse_upgrade_request(head), Ok(Some(request)), "head alone");
    let longer = [head, TAIL].concat();
    assert_eq!(
        parse_upgrade_request(&longer),
        Ok(Some(request)),
        "head with a frame after it"
    );
    assert_eq!(
        parse_upgrade_request(&head[..len - 1]),
        Ok(None),
        "one byte short"
    );

    let within = |s: &[u8]| {
        let range = head.as_ptr_range();
        s.is_empty() || (range.contains(&s.as_ptr()) && s.as_ptr_range().end <= range.end)
    };
    let path = request.path();
    assert!(
        path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic()),
        "path {path:?}"
    );
    assert!(head.starts_with(b"GET ") && head[4..].starts_with(path.as_bytes()));
    let host = request.host();
    let key = request.key();
    assert!(
        within(path.as_bytes()) && within(host) && within(key),
        "views outside the head"
    );
    assert_eq!(host, host.trim_ascii(), "host not trimmed");
    assert_eq!(request.header("Host"), Some(host));
    assert_eq!(request.header("sec-websocket-key"), Some(&key[..]));
    assert_eq!(request.header("SEC-WEBSOCKET-VERSION"), Some(&b"13"[..]));
    assert!(
        key[..KEY_LEN - 2]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            && key.ends_with(b"=="),
        "key {key:?}"
    );
    if let Some(name) = request.account_from_path() {
        assert!(!name.is_empty() && !name.contains('/'));
        let bare = path.split_once('?').map_or(path, |(p, _)| p);
        assert_eq!(bare, format!("/accounts/{name}/ilp/btp"));
    }

    // The 101 for this key.
    let mut response = [0u8; UPGRADE_RESPONSE_LEN + 8];
    let n = write_upgrade_response(key, &mut response);
    assert_eq!(n, UPGRADE_RESPONSE_LEN);
    assert!(response.starts_with(b"HTTP/1.1 101 "));
    let accept = accept_key(key);
    assert!(response[..n].windows(accept.len()).any(|w| w == accept));
    let nonce = base64_16(key);
    if key_from_nonce(&nonce) == *key {
        assert_eq!(parse_upgrade_response(&response[..n], &nonce), Ok(Some(n)));
    }

    // The client side of the same handshake: our request for this host and path.
    if let Ok(host) = std::str::from_utf8(host) {
        // (Our request spells its headers out; it may not fit where a terse one did.)
        if !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_graphic())
            && upgrade_request_len(host, path) <= HANDSHAKE_LEN_MAX
        {
            client_round_trip(host, path, &nonce);
        }
    }
}

fn client_round_trip(host: &str, path: &str, nonce: &[u8; NONCE_LEN]) {
    let want = upgrade_request_len(host, path);
    let mut out = vec![0xa5u8; want + 16];
    let n = write_upgrade_request(host, path, nonce, &mut out);
    assert_eq!(n, want, "upgrade_request_len");
    assert!(
        out[n..].iter().all(|&b| b == 0xa5),
        "wrote past the request"
    );
    let request = match parse_upgrade_request(&out) {
        Ok(Some(request)) => request,
        other => panic!("our own request refused: {other:?}"),
    };
    assert_eq!(request.len(), n);
    assert_eq!(request.path(), path);
    assert_eq!(request.host(), host.as_bytes());
    assert_eq!(request.key(), &key_from_nonce(nonce));

    let mut response = [0u8; UPGRADE_RESPONSE_LEN];
    let n = write_upgrade_response(request.key(), &mut response);
    assert_eq!(parse_upgrade_response(&response[..n], nonce), Ok(Some(n)));
    let longer = [&response[..n], TAIL].concat();
    assert_eq!(parse_upgrade_response(&longer, nonce), Ok(Some(n)));
    let mut other = *nonce;
    other[usize::from(nonce[0]) % NONCE_LEN] ^= 1;
    assert_eq!(
        parse_upgrade_response(&response[..n], &other),
        Err(HandshakeError::AcceptMismatch)
    );
}

/// What a server answers for `e` is an HTTP answer the client parser reads as that status.
fn check_http_error(e: HandshakeError) {
    let status = e.status();
    assert!(
        matches!(status, 400 | 426 | 431),
        "status {status} for {e:?}"
    );
    let mut out = [0u8; HANDSHAKE_ANSWER_LEN_MAX];
    let n = e.write_answer(&mut out);
    assert!(
        n <= 82 + e.reason().len(),
        "answer longer than write_http_error documents"
    );
    let mut again = [0u8; 256];
    let m = write_http_error(status, e.reason(), &mut again);
    assert_eq!(
        &out[..n],
        &again[..m],
        "write_answer differs from write_http_error"
    );
    assert_eq!(
        parse_upgrade_response(&out[..n], SAMPLE_NONCE),
        Err(HandshakeError::UnexpectedStatus(status)),
        "{}",
        String::from_utf8_lossy(&out[..n])
    );
    assert!(!e.to_string().is_empty());
}

fn client(data: &[u8], terminator: Option<usize>) {
    let result = parse_upgrade_response(data, SAMPLE_NONCE);
    check_incomplete_or_too_large(data, terminator, &result);
    let len = match result {
        Ok(None) => return,
        Err(e) => {
            let longer = [data, TAIL].concat();
            assert_eq!(
                parse_upgrade_response(&longer, SAMPLE_NONCE),
                Err(e),
                "error changed with bytes appended"
            );
            if let HandshakeError::UnexpectedStatus(status) = e {
                assert_ne!(status, 101);
                assert!(status <= 999);
            }
            return;
        }
        Ok(Some(len)) => len,
    };
    assert_eq!(
        Some(len),
        terminator,
        "len is not the end of the first \\r\\n\\r\\n"
    );
    assert!(len <= data.len() && len <= HANDSHAKE_LEN_MAX);
    assert!(
        data.starts_with(b"HTTP/1.1 101"),
        "accepted a status other than 101"
    );
    let head = &data[..len];
    assert_eq!(
        parse_upgrade_response(head, SAMPLE_NONCE),
        Ok(Some(len)),
        "head alone"
    );
    let longer = [head, TAIL].concat();
    assert_eq!(parse_upgrade_response(&longer, SAMPLE_NONCE), Ok(Some(len)));
    assert_eq!(
        parse_upgrade_response(&head[..len - 1], SAMPLE_NONCE),
        Ok(None)
    );
    let mut other = *SAMPLE_NONCE;
    other[0] ^= 1;
    assert_eq!(
        parse_upgrade_response(head, &other),
        Err(HandshakeError::AcceptMismatch),
        "accepted with another nonce"
    );
    // The same head is no request.
    assert!(parse_upgrade_request(head).is_err());
}

/// The 16 bytes a 24-character key encodes (the 4 unused bits of its last data character are
/// dropped, so the key need not be the canonical encoding of the result).
fn base64_16(key: &[u8; KEY_LEN]) -> [u8; NONCE_LEN] {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    }
    let mut out = [0u8; NONCE_LEN];
    // Five groups of 4 characters are 15 bytes; the sixth, `XY==`, is one more.
    for (group, bytes) in key.chunks(4).zip(out.chunks_mut(3)) {
        let n = group.iter().fold(0u32, |n, &c| (n << 6) | sextet(c));
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (n >> (16 - 8 * i)) as u8;
        }
    }
    out
}
