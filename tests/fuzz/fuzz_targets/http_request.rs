//! Fuzzes `parse_request`, the ILP-over-HTTP server's request-head parser, with the default
//! body limit (65 536, the router's `frame_len_max`) and a small one (64).
//!
//! For every input:
//! - `Ok(None)` only with fewer than `HEAD_LEN_MAX` bytes;
//! - an error stays the same error with bytes appended (the head decides it);
//! - the limits are monotonic: under the small limit the answer is the same, except that an
//!   accepted request, or one refused only for its token, with a body over 64 bytes is
//!   `BodyTooLarge` (the body check comes before the token check, so a 413 goes out first);
//! - every refusal's status, written by `write_status` with and without keep-alive, is read
//!   back by `parse_response` as that status with an empty body, closing the connection when
//!   asked to and for every status but 400 (`status_closes`: the request was not read whole).
//!
//! For an accepted request:
//! - `head_len` is at most the input and `HEAD_LEN_MAX`, and `body_len` at most the limit;
//! - path and token lie inside the head; the token is non-empty and trimmed;
//! - the same request comes from just the head (the body is not needed), and from the input
//!   with bytes appended (pipelining); one byte less than the head is `Ok(None)`;
//! - `account_from_path` is the segment of `/accounts/{name}/ilp`;
//! - `write_request_head` with its path, token and body length (when the token is UTF-8)
//!   writes `request_head_len` bytes, equal to `request_head_prefix` plus
//!   `write_content_length`, that parse back to the same path, token and body length, with
//!   keep-alive and `head_len` the bytes written.
#![no_main]

use ilp_router::link::http::{
    parse_request, parse_response, request_head_len, request_head_prefix, status_closes,
    write_content_length, write_request_head, write_status, HttpError, Request, Response,
    HEAD_LEN_MAX, RESPONSE_HEAD_LEN_MAX,
};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 65_536;
const SMALL_LIMIT: usize = 64;

/// Appended to check that what follows a head changes nothing: another pipelined request.
const TAIL: &[u8] = b"POST / HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 1\r\n\r\n!";

fuzz_target!(|data: &[u8]| {
    let result = parse_request(data, LIMIT);
    let small = parse_request(data, SMALL_LIMIT);
    match result {
        Ok(None) => {
            assert!(
                data.len() < HEAD_LEN_MAX,
                "Ok(None) with {} bytes",
                data.len()
            );
            assert_eq!(small, Ok(None));
        }
        Err(e) => {
            // Decided by the head, except a head still incomplete after HEAD_LEN_MAX bytes,
            // which appended bytes may complete (past HEAD_LEN_MAX) or break.
            if data.len() < HEAD_LEN_MAX {
                let longer = [data, TAIL].concat();
                assert_eq!(
                    parse_request(&longer, LIMIT),
                    Err(e),
                    "error changed with bytes appended"
                );
            }
            assert!(
                small == Err(e)
                    || (e == HttpError::Unauthorized && small == Err(HttpError::BodyTooLarge)),
                "limit {SMALL_LIMIT} gave {small:?} where {LIMIT} gave {e:?}"
            );
            check_status(e);
        }
        Ok(Some(request)) => {
            if request.body_len <= SMALL_LIMIT {
                assert_eq!(small, Ok(Some(request)));
            } else {
                assert_eq!(small, Err(HttpError::BodyTooLarge));
            }
            check_request(data, &request);
        }
    }
});

fn check_request(data: &[u8], request: &Request<'_>) {
    let head_len = request.head_len;
    assert!(
        head_len >= 1 && head_len <= data.len(),
        "head_len {head_len}"
    );
    assert!(head_len <= HEAD_LEN_MAX, "head over HEAD_LEN_MAX accepted");
    assert!(request.body_len <= LIMIT);
    let head = &data[..head_len];
    assert!(head.ends_with(b"\n"), "head does not end a line");

    let within = |s: &[u8]| {
        let range = head.as_ptr_range();
        s.is_empty() || (range.contains(&s.as_ptr()) && s.as_ptr_range().end <= range.end)
    };
    assert!(within(request.path.as_bytes()), "path outside the head");
    assert!(within(request.token), "token outside the head");
    assert!(!request.token.is_empty(), "empty token accepted");
    assert_eq!(
        request.token,
        request.token.trim_ascii(),
        "token not trimmed"
    );

    assert_eq!(parse_request(head, LIMIT), Ok(Some(*request)), "head alone");
    let longer = [data, TAIL].concat();
    assert_eq!(
        parse_request(&longer, LIMIT),
        Ok(Some(*request)),
        "bytes appended"
    );
    assert_eq!(
        parse_request(&head[..head_len - 1], LIMIT),
        Ok(None),
        "one byte short of the head"
    );

    if let Some(name) = request.account_from_path() {
        assert!(!name.is_empty() && !name.contains('/'));
        let bare = request
            .path
            .split_once('?')
            .map_or(request.path, |(p, _)| p);
        assert_eq!(bare, format!("/accounts/{name}/ilp"));
    }

    // What our client would send for the same path, token and body length.
    let Ok(token) = std::str::from_utf8(request.token) else {
        return;
    };
    let host = "peer.example:8080";
    let len = request_head_len(request.path, host, token, request.body_len);
    if len > HEAD_LEN_MAX {
        // Our head spells out Host, Content-Type and Accept; a terse one near the limit
        // leaves no room for them.
        return;
    }
    let mut out = vec![0xa5u8; len + 16];
    let n = write_request_head(request.path, host, token, request.body_len, &mut out);
    assert_eq!(n, len, "request_head_len");
    assert!(out[n..].iter().all(|&b| b == 0xa5), "wrote past the head");
    let mut length = [0u8; 24];
    let m = write_content_length(request.body_len, &mut length);
    assert_eq!(
        [
            request_head_prefix(request.path, host, token),
            length[..m].to_vec()
        ]
        .concat(),
        &out[..n],
        "prefix + content length differs from the whole head"
    );
    match parse_request(&out[..n], LIMIT) {
        Ok(Some(again)) => assert_eq!(
            again,
            Request {
                path: request.path,
                token: request.token,
                head_len: n,
                body_len: request.body_len,
                keep_alive: true,
            }
        ),
        other => panic!(
            "our own request head refused: {other:?}\n{}",
            String::from_utf8_lossy(&out[..n])
        ),
    }
}

/// The answer a server writes for `e` is read back as that status, and it closes the
/// connection when asked to or when the request was not read whole (all but 400).
fn check_status(e: HttpError) {
    let status = e.status();
    assert_eq!(
        status_closes(status),
        status != 400,
        "status_closes({status})"
    );
    for keep_alive in [false, true] {
        let mut out = [0u8; RESPONSE_HEAD_LEN_MAX];
        let n = write_status(status, keep_alive, &mut out);
        assert_eq!(
            parse_response(&out[..n], LIMIT),
            Ok(Some(Response {
                status,
                head_len: n,
                body_len: 0,
                keep_alive: keep_alive && !status_closes(status),
            })),
            "{}",
            String::from_utf8_lossy(&out[..n])
        );
    }
}
