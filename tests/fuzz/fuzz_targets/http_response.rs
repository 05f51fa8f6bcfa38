//! Fuzzes `parse_response`, the ILP-over-HTTP client's response-head parser, with the default
//! body limit (65 536, the router's `frame_len_max`) and a small one (64).
//!
//! For every input:
//! - `Ok(None)` only with fewer than `HEAD_LEN_MAX` bytes;
//! - an error stays the same error with bytes appended (the head decides it);
//! - under the small limit the answer is the same, except that an accepted response with a
//!   body over 64 bytes is `BodyTooLarge`.
//!
//! For an accepted response:
//! - `head_len` is at most the input and `HEAD_LEN_MAX` ("the largest request or response head
//!   accepted"), and `body_len` at most the limit; the status has 3 digits;
//! - the same response comes from just the head (the body is not needed) and from the input
//!   with bytes appended; one byte less than the head is `Ok(None)`;
//! - `map_response` follows the policy: 200 a reply, 429 T05 (rate limited), 400/413 F01
//!   (invalid packet), 5xx T00 (internal), anything else F02 (unreachable);
//! - what our server would write, `write_response` for its body length and keep-alive and
//!   `write_status` for its status, is at most `RESPONSE_HEAD_LEN_MAX` bytes and parses back to
//!   exactly that (`write_status` closes for 401, 405, 408, 411, 413 and 431 whatever
//!   keep-alive says, and `status_closes` says so).
#![no_main]

use ilp_router::engine::RejectReason;
use ilp_router::link::http::{
    map_response, parse_response, status_closes, write_response, write_status, HttpError, Outcome,
    Response, HEAD_LEN_MAX, RESPONSE_HEAD_LEN_MAX,
};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 65_536;
const SMALL_LIMIT: usize = 64;

/// Appended to check that what follows a head changes nothing: another pipelined response.
const TAIL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!";

fuzz_target!(|data: &[u8]| {
    let result = parse_response(data, LIMIT);
    let small = parse_response(data, SMALL_LIMIT);
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
                    parse_response(&longer, LIMIT),
                    Err(e),
                    "error changed with bytes appended"
                );
            }
            assert_eq!(small, Err(e), "limit {SMALL_LIMIT} differs from {LIMIT}");
            assert!(
                !matches!(e, HttpError::MethodNotAllowed | HttpError::Unauthorized),
                "a request-only error for a response: {e:?}"
            );
        }
        Ok(Some(response)) => {
            if response.body_len <= SMALL_LIMIT {
                assert_eq!(small, Ok(Some(response)));
            } else {
                assert_eq!(small, Err(HttpError::BodyTooLarge));
            }
            check_response(data, &response);
        }
    }
});

fn check_response(data: &[u8], response: &Response) {
    let head_len = response.head_len;
    assert!(
        head_len >= 1 && head_len <= data.len(),
        "head_len {head_len}"
    );
    assert!(
        head_len <= HEAD_LEN_MAX,
        "head over HEAD_LEN_MAX accepted: {head_len} bytes"
    );
    assert!(response.body_len <= LIMIT);
    assert!(response.status <= 999, "status {}", response.status);
    let head = &data[..head_len];
    assert!(head.ends_with(b"\n"), "head does not end a line");

    assert_eq!(
        parse_response(head, LIMIT),
        Ok(Some(*response)),
        "head alone"
    );
    let longer = [data, TAIL].concat();
    assert_eq!(
        parse_response(&longer, LIMIT),
        Ok(Some(*response)),
        "bytes appended"
    );
    assert_eq!(
        parse_response(&head[..head_len - 1], LIMIT),
        Ok(None),
        "one byte short of the head"
    );

    let want = match response.status {
        200 => Outcome::Reply,
        429 => Outcome::Fail(RejectReason::RateLimited),
        400 | 413 => Outcome::Fail(RejectReason::InvalidPacket),
        500..=599 => Outcome::Fail(RejectReason::Internal),
        _ => Outcome::Fail(RejectReason::Unreachable),
    };
    assert_eq!(map_response(response.status), want);

    // What our server writes parses back to exactly what it means.
    let mut out = [0u8; RESPONSE_HEAD_LEN_MAX];
    let n = write_response(response.body_len, response.keep_alive, &mut out);
    assert_eq!(
        parse_response(&out[..n], LIMIT),
        Ok(Some(Response {
            status: 200,
            head_len: n,
            body_len: response.body_len,
            keep_alive: response.keep_alive,
        })),
        "write_response"
    );
    if response.status >= 100 {
        let closes = matches!(response.status, 401 | 405 | 408 | 411 | 413 | 431);
        assert_eq!(status_closes(response.status), closes, "status_closes");
        let mut out = [0u8; RESPONSE_HEAD_LEN_MAX];
        let n = write_status(response.status, response.keep_alive, &mut out);
        assert_eq!(
            parse_response(&out[..n], LIMIT),
            Ok(Some(Response {
                status: response.status,
                head_len: n,
                body_len: 0,
                keep_alive: response.keep_alive && !closes,
            })),
            "write_status"
        );
    }
}
