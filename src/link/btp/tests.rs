//! Tests of the BTP session ([`super::BtpSession`]), in a file of their own so that `btp.rs`
//! holds the session alone.

use super::*;
use crate::wire::{test_hex as hex, BTP_HEADER_LEN_MAX};

const NOW: i64 = 1_551_434_400_123; // 2019-03-01T10:00:00.123Z

fn vector(name: &str) -> Vec<u8> {
    let all: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/vectors/btp-packets.json")).unwrap();
    let found = all["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    hex(found["hex"].as_str().unwrap())
}

/// The `ilp` entry of a vector.
fn vector_ilp(name: &str) -> Vec<u8> {
    let bytes = vector(name);
    let packet = Btp::new_checked(&bytes[..]).unwrap();
    packet.ilp().unwrap().to_vec()
}

fn peers() -> PeerAuth {
    let alice = ["secret-token".to_string()];
    let bob = ["bob_token".to_string()];
    PeerAuth::new(&[
        (PeerId(3), "alice", &alice[..]),
        (PeerId(4), "bob", &bob[..]),
    ])
}

fn server() -> BtpSession {
    BtpSession::server(NOW, 10_000, 8, 3)
}

/// A server session opened for bob (RS-style auth with a path account).
fn open_server() -> BtpSession {
    let mut s = server();
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_interledger_rs_style");
    let event = s.handle_auth(NOW, &peers(), Some("bob"), None, &auth, &mut out);
    assert!(matches!(event, AuthEvent::Accepted { .. }));
    s
}

/// Frames an ILP packet as `btp_type` with one `ilp` entry.
fn frame(btp_type: BtpType, request_id: u32, ilp: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; BTP_HEADER_LEN_MAX + ilp.len()];
    let head = emit_ilp_header(&mut out, btp_type, request_id, ilp.len());
    out[head..head + ilp.len()].copy_from_slice(ilp);
    out.truncate(head + ilp.len());
    out
}

/// Sends a Prepare from `s` with `tag`; returns the frame.
fn send_prepare(s: &mut BtpSession, tag: u64, expires_at: i64) -> Result<Vec<u8>, SendError> {
    let ilp = vector_ilp("message_ilp_prepare");
    let mut out = vec![0u8; BTP_HEADER_LEN_MAX + ilp.len()];
    let head = s.write_prepare_header(tag, ilp.len(), expires_at, &mut out)?;
    out[head..head + ilp.len()].copy_from_slice(&ilp);
    out.truncate(head + ilp.len());
    Ok(out)
}

fn message(request_id: u32, entries: &[ProtocolData<'_>]) -> Vec<u8> {
    let repr = BtpRepr {
        request_id,
        body: BtpBody::Message,
        protocol_data: entries,
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    bytes
}

fn request_id_of(bytes: &[u8]) -> u32 {
    Btp::new_checked(bytes).unwrap().request_id()
}

/// Checks `bytes` is our Error F00 for `request_id` with `data`.
fn assert_error(bytes: &[u8], request_id: u32, data: &[u8]) {
    let packet = Btp::new_checked(bytes).unwrap();
    assert_eq!(packet.request_id(), request_id);
    assert_eq!(packet.protocol_data_count(), 0);
    match packet.body() {
        BtpBody::Error {
            code,
            name,
            triggered_at,
            data: got,
        } => {
            assert_eq!(&code, b"F00");
            assert_eq!(name, b"NotAcceptedError");
            assert_eq!(triggered_at, &timestamp::format_generalized(NOW)[..]);
            assert_eq!(got, data);
        }
        other => panic!("not an Error: {other:?}"),
    }
}

#[test]
fn now_is_the_vector_time() {
    assert_eq!(timestamp::parse_ilp(b"20190301100000123"), Ok(NOW));
}

#[test]
fn server_auth_js_style() {
    let mut s = server();
    assert_eq!(s.state(), State::AwaitingAuth);
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_ilp_plugin_btp_style");
    let event = s.handle_auth(NOW, &peers(), None, None, &auth, &mut out);
    let AuthEvent::Accepted { peer, len } = event else {
        panic!("{event:?}")
    };
    assert_eq!(peer, PeerId(3));
    assert_eq!(&out[..len], &vector("response_auth_ok")[..]);
    assert_eq!(s.state(), State::Open(PeerId(3)));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn server_auth_rs_style_by_token_or_path() {
    let auth = vector("message_auth_interledger_rs_style");
    for path in [None, Some("bob")] {
        let mut s = server();
        let mut out = [0u8; CONTROL_LEN_MAX];
        let event = s.handle_auth(NOW, &peers(), path, None, &auth, &mut out);
        assert_eq!(
            event,
            AuthEvent::Accepted {
                peer: PeerId(4),
                len: 8
            }
        );
        assert_eq!(&out[..8], &hex("0100000007020100")[..]);
        assert_eq!(s.state(), State::Open(PeerId(4)));
    }
    // The path names alice, but the token is bob's.
    let mut s = server();
    let mut out = [0u8; CONTROL_LEN_MAX];
    let event = s.handle_auth(NOW, &peers(), Some("alice"), None, &auth, &mut out);
    assert!(matches!(event, AuthEvent::Refused { .. }));
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn server_auth_empty_token() {
    let auth = vector("message_auth_empty_token");
    let mut s = server();
    let mut out = [0u8; CONTROL_LEN_MAX];
    let AuthEvent::Refused { len } = s.handle_auth(NOW, &peers(), None, None, &auth, &mut out)
    else {
        panic!("accepted an empty token")
    };
    assert_error(&out[..len], 8, br#"{"message":"invalid auth_token"}"#);
    // A peer configured with an empty token (no auth needed) is let in by its path.
    let none = [String::new()];
    let open = PeerAuth::new(&[(PeerId(9), "guest", &none[..])]);
    let mut s = server();
    let event = s.handle_auth(NOW, &open, Some("guest"), None, &auth, &mut out);
    assert!(matches!(
        event,
        AuthEvent::Accepted {
            peer: PeerId(9),
            ..
        }
    ));
}

#[test]
fn server_auth_wrong_token_matches_js_error() {
    let wrong = ["other-token".to_string()];
    let table = PeerAuth::new(&[(PeerId(3), "alice", &wrong[..])]);
    let mut s = server();
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_ilp_plugin_btp_style");
    let AuthEvent::Refused { len } = s.handle_auth(NOW, &table, None, None, &auth, &mut out) else {
        panic!("accepted a wrong token")
    };
    assert_error(
        &out[..len],
        0x1234_abcd,
        br#"{"message":"invalid auth_token"}"#,
    );
    // Byte for byte what ilp-plugin-btp sends.
    assert_eq!(&out[..len], &vector("error_auth_rejected")[..]);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.counters().auth_failures, 1);
    // Closed stays closed.
    let mut buf = [0u8; CONTROL_LEN_MAX];
    assert_eq!(s.handle_message(NOW, &auth, &mut buf), Event::Close);
}

#[test]
fn server_auth_unknown_user() {
    let mut s = server();
    let mut out = [0u8; CONTROL_LEN_MAX];
    // alice's token, but the path names an account that does not exist.
    let auth = vector("message_auth_interledger_rs_style");
    let AuthEvent::Refused { len } =
        s.handle_auth(NOW, &peers(), Some("carol"), None, &auth, &mut out)
    else {
        panic!("accepted an unknown account")
    };
    assert_error(&out[..len], 7, br#"{"message":"invalid auth_token"}"#);
}

#[test]
fn server_auth_wrong_first_packet() {
    let entry = |name: &'static [u8], data: &'static [u8]| ProtocolData {
        name,
        content_type: ContentType::TEXT_PLAIN_UTF8,
        data,
    };
    let auth = ProtocolData {
        name: b"auth",
        content_type: ContentType::OCTET_STREAM,
        data: &[],
    };
    let token = entry(b"auth_token", b"bob_token");
    let cases: [(Vec<u8>, u32, &[u8]); 6] = [
        // An ILP Prepare before auth.
        (vector("message_ilp_prepare"), 1, Refusal::NotAuth.data()),
        // A Response first.
        (
            vector("response_auth_ok"),
            0x1234_abcd,
            Refusal::NotAuth.data(),
        ),
        // A Transfer first.
        (
            vector("transfer_amount_0_no_protocol_data"),
            2,
            Refusal::NotAuth.data(),
        ),
        // `auth_token` primary, `auth` second.
        (message(5, &[token, auth]), 5, Refusal::NotAuth.data()),
        // Duplicate names.
        (
            message(6, &[auth, token, entry(b"auth_token", b"")]),
            6,
            Refusal::DuplicateNames.data(),
        ),
        // No auth_token.
        (
            message(7, &[auth, entry(b"auth_username", b"bob")]),
            7,
            Refusal::MissingToken.data(),
        ),
    ];
    for (bytes, request_id, data) in cases {
        let mut s = server();
        let mut out = [0u8; CONTROL_LEN_MAX];
        let event = s.handle_auth(NOW, &peers(), None, None, &bytes, &mut out);
        let AuthEvent::Refused { len } = event else {
            panic!("{event:?}")
        };
        assert_error(&out[..len], request_id, data);
        assert_eq!(s.state(), State::Closed);
    }
}

#[test]
fn server_auth_too_many_entries() {
    let names: Vec<String> = (0..AUTH_ENTRIES_MAX).map(|i| format!("x{i}")).collect();
    let mut entries = auth_entries(b"", b"bob_token").to_vec();
    entries.extend(names.iter().map(|name| ProtocolData {
        name: name.as_bytes(),
        content_type: ContentType(0),
        data: &[],
    }));
    let repr = BtpRepr {
        request_id: 9,
        body: BtpBody::Message,
        protocol_data: &entries,
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    let mut s = server();
    let mut out = [0u8; CONTROL_LEN_MAX];
    let AuthEvent::Refused { len } = s.handle_auth(NOW, &peers(), None, None, &bytes, &mut out)
    else {
        panic!("accepted")
    };
    assert_error(&out[..len], 9, Refusal::TooManyEntries.data());
    // Exactly AUTH_ENTRIES_MAX is fine.
    let repr = BtpRepr {
        protocol_data: &entries[..AUTH_ENTRIES_MAX],
        ..repr
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    let mut s = server();
    let event = s.handle_auth(NOW, &peers(), None, None, &bytes, &mut out);
    assert!(matches!(
        event,
        AuthEvent::Accepted {
            peer: PeerId(4),
            ..
        }
    ));
}

#[test]
fn server_auth_unreadable_sends_nothing() {
    for bytes in [&[][..], &hex("0600000001")[..], &[0xff; 40][..]] {
        let mut s = server();
        let mut out = [0u8; CONTROL_LEN_MAX];
        let event = s.handle_auth(NOW, &peers(), None, None, bytes, &mut out);
        assert_eq!(event, AuthEvent::Refused { len: 0 });
        assert_eq!(s.state(), State::Closed);
    }
}

#[test]
fn auth_timeout() {
    let mut s = BtpSession::server(1_000, 10_000, 8, 3);
    assert_eq!(s.poll_timeout(), Some(11_000));
    assert_eq!(s.handle_timeout(10_999), Timeout::default());
    assert_eq!(s.state(), State::AwaitingAuth);
    let t = s.handle_timeout(11_000);
    assert!(t.auth_expired);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.poll_timeout(), None);
    // Auth arriving after that gets nothing.
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_interledger_rs_style");
    let event = s.handle_auth(11_001, &peers(), None, None, &auth, &mut out);
    assert_eq!(event, AuthEvent::Refused { len: 0 });
    // The client has a deadline too.
    let mut c = BtpSession::client(1_000, PeerId(1), 5_000, 8, 3);
    assert!(c.handle_timeout(6_000).auth_expired);
    assert_eq!(c.state(), State::Closed);
    // An open session never times out on auth.
    let mut s = open_server();
    assert!(!s.handle_timeout(NOW + 1_000_000).auth_expired);
    assert!(matches!(s.state(), State::Open(_)));
}

/// Client and server sessions after a handshake through `write_auth` and `handle_auth`.
fn pair() -> (BtpSession, BtpSession) {
    let mut client = BtpSession::client(NOW, PeerId(7), 10_000, 8, 3);
    let mut server = server();
    let mut wire = vec![0u8; BtpSession::auth_len(b"alice", b"secret-token")];
    let len = client.write_auth(b"alice", b"secret-token", &mut wire);
    assert_eq!(len, wire.len());
    // The same entries as ilp-plugin-btp sends; only the request id differs.
    assert_eq!(
        &wire[5..],
        &vector("message_auth_ilp_plugin_btp_style")[5..]
    );
    let mut out = [0u8; CONTROL_LEN_MAX];
    let AuthEvent::Accepted { peer, len } =
        server.handle_auth(NOW, &peers(), None, None, &wire, &mut out)
    else {
        panic!("refused")
    };
    assert_eq!(peer, PeerId(3));
    // No ILP may be sent before the Response arrives.
    assert_eq!(send_prepare(&mut client, 1, NOW), Err(SendError::NotOpen));
    let mut buf = [0u8; CONTROL_LEN_MAX];
    assert_eq!(
        client.handle_message(NOW, &out[..len], &mut buf),
        Event::Opened(PeerId(7))
    );
    assert_eq!(client.state(), State::Open(PeerId(7)));
    (client, server)
}

#[test]
fn full_exchange() {
    let (mut client, mut server) = pair();
    let prepare = vector_ilp("message_ilp_prepare");
    let fulfill = vector_ilp("response_ilp_fulfill");
    let reject = vector_ilp("response_ilp_reject");
    let mut buf = [0u8; CONTROL_LEN_MAX];

    // Server -> client Prepare, client -> server Fulfill.
    let wire = send_prepare(&mut server, 0xfeed, NOW + 30_000).unwrap();
    assert_eq!(wire[0], BtpType::Message as u8);
    assert_eq!(server.outstanding(), 1);
    let Event::Prepare { request_id, ilp } = client.handle_message(NOW, &wire, &mut buf) else {
        panic!("no prepare")
    };
    assert_eq!(&wire[ilp], &prepare[..]);
    let mut reply = vec![0u8; BTP_HEADER_LEN_MAX + fulfill.len()];
    let head = client.write_reply_header(request_id, fulfill.len(), &mut reply);
    reply[head..head + fulfill.len()].copy_from_slice(&fulfill);
    reply.truncate(head + fulfill.len());
    assert_eq!(reply[0], BtpType::Response as u8);
    assert_eq!(
        server.handle_message(NOW, &reply, &mut buf),
        Event::Reply {
            tag: 0xfeed,
            ilp: tail(&reply, fulfill.len())
        }
    );
    assert_eq!(server.outstanding(), 0);
    // The same reply again is unexpected now: ignored.
    assert_eq!(server.handle_message(NOW, &reply, &mut buf), Event::Ignored);
    assert_eq!(server.counters().ignored, 1);

    // Client -> server Prepare, server -> client Reject.
    let wire = send_prepare(&mut client, 42, NOW + 30_000).unwrap();
    let Event::Prepare { request_id, ilp } = server.handle_message(NOW, &wire, &mut buf) else {
        panic!("no prepare")
    };
    assert_eq!(&wire[ilp], &prepare[..]);
    let mut reply = vec![0u8; BTP_HEADER_LEN_MAX + reject.len()];
    let head = server.write_reply_header(request_id, reject.len(), &mut reply);
    reply[head..head + reject.len()].copy_from_slice(&reject);
    reply.truncate(head + reject.len());
    assert_eq!(
        client.handle_message(NOW, &reply, &mut buf),
        Event::Reply {
            tag: 42,
            ilp: tail(&reply, reject.len())
        }
    );
    assert_eq!(client.counters().replies, 1);
    assert_eq!(client.counters().prepares, 1);
    assert_eq!(server.counters().replies, 1);
    assert_eq!(server.counters().prepares, 1);
}

#[test]
fn client_auth_refused() {
    // The server's Error for our auth.
    let mut client = BtpSession::client(NOW, PeerId(7), 10_000, 8, 3);
    let mut wire = vec![0u8; 64];
    client.write_auth(b"", b"nope", &mut wire);
    let mut out = [0u8; CONTROL_LEN_MAX];
    let len = write_error(NOW, 1, Refusal::BadToken, &mut out);
    let mut buf = [0u8; CONTROL_LEN_MAX];
    assert_eq!(
        client.handle_message(NOW, &out[..len], &mut buf),
        Event::Close
    );
    assert_eq!(client.state(), State::Closed);
    assert_eq!(client.counters().auth_failures, 1);
    // Anything else first (a Prepare), or a Response to another id.
    for first in [
        vector("message_ilp_prepare"),
        hex("0100000002020100"),
        hex("01"),
    ] {
        let mut client = BtpSession::client(NOW, PeerId(7), 10_000, 8, 3);
        client.write_auth(b"", b"t", &mut wire);
        assert_eq!(client.handle_message(NOW, &first, &mut buf), Event::Close);
        assert_eq!(client.state(), State::Closed);
    }
}

#[test]
fn rs_swapped_types() {
    let (mut client, mut server) = pair();
    let prepare = vector_ilp("message_ilp_prepare");
    let fulfill = vector_ilp("response_ilp_fulfill");
    let mut buf = [0u8; CONTROL_LEN_MAX];
    // interledger-rs sends its Prepare in a Response...
    let wire = frame(BtpType::Response, 0xdead_beef, &prepare);
    assert_eq!(
        server.handle_message(NOW, &wire, &mut buf),
        Event::Prepare {
            request_id: 0xdead_beef,
            ilp: tail(&wire, prepare.len())
        }
    );
    // ...and its Fulfill in a Message.
    let sent = send_prepare(&mut server, 5, NOW + 30_000).unwrap();
    let wire = frame(BtpType::Message, request_id_of(&sent), &fulfill);
    assert_eq!(
        server.handle_message(NOW, &wire, &mut buf),
        Event::Reply {
            tag: 5,
            ilp: tail(&wire, fulfill.len())
        }
    );
    // A Prepare whose id collides with one of ours is still a new request.
    let sent = send_prepare(&mut client, 6, NOW + 30_000).unwrap();
    let wire = frame(BtpType::Message, request_id_of(&sent), &prepare);
    assert!(matches!(
        client.handle_message(NOW, &wire, &mut buf),
        Event::Prepare { .. }
    ));
    assert_eq!(client.outstanding(), 1);
}

#[test]
fn not_ilp_in_an_ilp_entry() {
    let mut s = open_server();
    let mut buf = [0u8; CONTROL_LEN_MAX];
    // Garbage or nothing in a Message: a request the engine answers with F01.
    for ilp in [&[][..], &[0x99, 1, 2][..]] {
        let wire = frame(BtpType::Message, 3, ilp);
        assert_eq!(
            s.handle_message(NOW, &wire, &mut buf),
            Event::Prepare {
                request_id: 3,
                ilp: tail(&wire, ilp.len())
            }
        );
    }
    // Garbage in a Response to one of ours: a reply the engine refuses.
    let sent = send_prepare(&mut s, 11, NOW + 30_000).unwrap();
    let wire = frame(BtpType::Response, request_id_of(&sent), &[0x99]);
    assert_eq!(
        s.handle_message(NOW, &wire, &mut buf),
        Event::Reply {
            tag: 11,
            ilp: tail(&wire, 1)
        }
    );
    // ... and to an unknown id: ignored.
    assert_eq!(s.handle_message(NOW, &wire, &mut buf), Event::Ignored);
}

#[test]
fn reply_for_unknown_id_ignored() {
    let mut s = open_server();
    let mut buf = [0u8; CONTROL_LEN_MAX];
    let fulfill = vector("response_ilp_fulfill");
    let reject = vector("response_ilp_reject");
    let error = vector("error_T00_unreachable");
    let empty = vector("response_auth_ok");
    for bytes in [&fulfill, &reject, &error, &empty] {
        assert_eq!(s.handle_message(NOW, bytes, &mut buf), Event::Ignored);
    }
    assert_eq!(s.counters().ignored, 4);
    // One of ours is outstanding under another id: still ignored, still outstanding.
    s.next_request_id = 100;
    let sent = send_prepare(&mut s, 1, NOW + 30_000).unwrap();
    assert_ne!(request_id_of(&sent), 1);
    assert_eq!(s.handle_message(NOW, &fulfill, &mut buf), Event::Ignored);
    assert_eq!(s.outstanding(), 1);
}

#[test]
fn btp_error_for_my_id() {
    let mut s = open_server();
    let mut buf = [0u8; CONTROL_LEN_MAX];
    let sent = send_prepare(&mut s, 77, NOW + 30_000).unwrap();
    // The T00 vector, re-addressed to our request id.
    let mut error = vector("error_T00_unreachable");
    error[1..5].copy_from_slice(&request_id_of(&sent).to_be_bytes());
    assert_eq!(
        s.handle_message(NOW, &error, &mut buf),
        Event::ReplyError {
            tag: 77,
            code: *b"T00"
        }
    );
    assert_eq!(s.outstanding(), 0);
    assert_eq!(s.handle_message(NOW, &error, &mut buf), Event::Ignored);
    // A Response with no ilp entry for one of ours: F00.
    let sent = send_prepare(&mut s, 78, NOW + 30_000).unwrap();
    let mut empty = vector("response_auth_ok");
    empty[1..5].copy_from_slice(&request_id_of(&sent).to_be_bytes());
    assert_eq!(
        s.handle_message(NOW, &empty, &mut buf),
        Event::ReplyError {
            tag: 78,
            code: *b"F00"
        }
    );
    assert_eq!(s.counters().reply_errors, 2);
}

#[test]
fn message_without_ilp_refused() {
    let mut s = open_server();
    let mut buf = [0u8; CONTROL_LEN_MAX];
    // No entries at all, a second auth, and a custom sub-protocol.
    for (name, request_id) in [
        ("message_empty_protocol_data", 9),
        ("message_auth_interledger_rs_style", 7),
        ("fixture_interledger_rs_message", 2),
    ] {
        let bytes = vector(name);
        let Event::Respond(len) = s.handle_message(NOW, &bytes, &mut buf) else {
            panic!("{name} not refused")
        };
        assert_error(
            &buf[..len],
            request_id,
            br#"{"message":"unsupported protocol"}"#,
        );
    }
    assert!(matches!(s.state(), State::Open(_)));
    assert_eq!(s.counters().refused, 3);
}

#[test]
fn transfer_refused() {
    let mut s = open_server();
    let mut buf = [0u8; CONTROL_LEN_MAX];
    for (name, request_id) in [
        ("transfer_with_claim", 3),
        ("fixture_btp_packet_transfer", 1),
    ] {
        let bytes = vector(name);
        let Event::Respond(len) = s.handle_message(NOW, &bytes, &mut buf) else {
            panic!("{name} not refused")
        };
        assert_error(
            &buf[..len],
            request_id,
            br#"{"message":"transfers are not supported"}"#,
        );
    }
}

#[test]
fn unreadable_frames_close_after_limit() {
    let mut s = open_server(); // bad_frames_max 3
    let mut buf = [0u8; CONTROL_LEN_MAX];
    let bad = vector("protocol_data_count_zero_length");
    assert_eq!(s.handle_message(NOW, &bad, &mut buf), Event::Ignored);
    assert_eq!(s.handle_message(NOW, &[], &mut buf), Event::Ignored);
    // Good traffic in between does not reset the count.
    let ok = vector("message_ilp_prepare");
    assert!(matches!(
        s.handle_message(NOW, &ok, &mut buf),
        Event::Prepare { .. }
    ));
    assert_eq!(
        s.handle_message(NOW, &vector("unknown_type_3"), &mut buf),
        Event::Close
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.counters().unreadable, 3);
    assert_eq!(s.handle_message(NOW, &ok, &mut buf), Event::Close);
}

#[test]
fn every_invalid_vector_is_unreadable_and_silent() {
    let all: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/vectors/btp-packets.json")).unwrap();
    let mut s = BtpSession::server(NOW, 10_000, 8, u32::MAX);
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_interledger_rs_style");
    s.handle_auth(NOW, &peers(), None, None, &auth, &mut out);
    let mut invalid = 0;
    for v in all["vectors"].as_array().unwrap() {
        let bytes = hex(v["hex"].as_str().unwrap());
        let event = s.handle_message(NOW, &bytes, &mut out);
        if v["valid"] == false {
            assert_eq!(event, Event::Ignored, "{}", v["name"]);
            invalid += 1;
        }
    }
    assert_eq!(s.counters().unreadable, invalid);
    assert!(matches!(s.state(), State::Open(_)));
}

#[test]
fn table_fills_and_is_purged() {
    let mut s = BtpSession::server(NOW, 10_000, 4, 3);
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_interledger_rs_style");
    s.handle_auth(NOW, &peers(), None, None, &auth, &mut out);
    let expires_at = NOW + 30_000;
    let ids: Vec<u32> = (0..4)
        .map(|tag| request_id_of(&send_prepare(&mut s, tag, expires_at).unwrap()))
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(s.outstanding(), 4);
    assert_eq!(send_prepare(&mut s, 9, expires_at), Err(SendError::Busy));
    assert_eq!(s.counters().busy, 1);
    // Free id 2 (slot 2): the next id whose slot is free is 6 (5 lives in busy slot 1).
    let mut buf = [0u8; CONTROL_LEN_MAX];
    let fulfill = vector_ilp("response_ilp_fulfill");
    let reply = frame(BtpType::Response, 2, &fulfill);
    assert!(matches!(
        s.handle_message(NOW, &reply, &mut buf),
        Event::Reply { tag: 1, .. }
    ));
    let id = request_id_of(&send_prepare(&mut s, 10, expires_at + 60_000).unwrap());
    assert_eq!(id, 6);
    assert_eq!(send_prepare(&mut s, 11, expires_at), Err(SendError::Busy));
    // Nothing goes before expiry plus grace.
    assert_eq!(s.poll_timeout(), Some(expires_at + PURGE_GRACE_MS));
    assert_eq!(s.handle_timeout(expires_at).purged, 0);
    assert_eq!(s.handle_timeout(expires_at + PURGE_GRACE_MS - 1).purged, 0);
    let t = s.handle_timeout(expires_at + PURGE_GRACE_MS);
    assert_eq!(t.purged, 3);
    assert!(!t.auth_expired);
    assert_eq!(s.outstanding(), 1);
    assert_eq!(s.counters().purged, 3);
    // A late answer to a purged request is ignored; the survivor still matches.
    let late = frame(BtpType::Response, 1, &fulfill);
    assert_eq!(s.handle_message(NOW, &late, &mut buf), Event::Ignored);
    assert_eq!(s.poll_timeout(), Some(expires_at + 60_000 + PURGE_GRACE_MS));
    let reply = frame(BtpType::Response, 6, &fulfill);
    assert!(matches!(
        s.handle_message(NOW, &reply, &mut buf),
        Event::Reply { tag: 10, .. }
    ));
    assert_eq!(s.outstanding(), 0);
    assert_eq!(s.poll_timeout(), None);
    // Room again.
    for tag in 0..4 {
        send_prepare(&mut s, tag, expires_at).unwrap();
    }
    assert_eq!(send_prepare(&mut s, 4, expires_at), Err(SendError::Busy));
}

#[test]
fn in_flight_max_not_a_power_of_two() {
    let mut s = BtpSession::server(NOW, 10_000, 3, 3);
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_interledger_rs_style");
    s.handle_auth(NOW, &peers(), None, None, &auth, &mut out);
    for tag in 0..3 {
        send_prepare(&mut s, tag, NOW).unwrap();
    }
    assert_eq!(send_prepare(&mut s, 3, NOW), Err(SendError::Busy));
}

#[test]
fn request_ids_wrap() {
    let mut s = open_server();
    s.next_request_id = u32::MAX;
    let a = request_id_of(&send_prepare(&mut s, 1, NOW).unwrap());
    let b = request_id_of(&send_prepare(&mut s, 2, NOW).unwrap());
    assert_eq!((a, b), (u32::MAX, 0));
    let mut buf = [0u8; CONTROL_LEN_MAX];
    let fulfill = vector_ilp("response_ilp_fulfill");
    for (id, tag) in [(0, 2), (u32::MAX, 1)] {
        let reply = frame(BtpType::Response, id, &fulfill);
        assert!(matches!(
            s.handle_message(NOW, &reply, &mut buf),
            Event::Reply { tag: t, .. } if t == tag
        ));
    }
}

#[test]
fn abandoned_requests_drain_after_close() {
    let mut s = open_server();
    for tag in [10, 20, 30] {
        send_prepare(&mut s, tag, NOW + 30_000).unwrap();
    }
    assert_eq!(s.poll_abandoned(), None, "not closed yet");
    let mut buf = [0u8; CONTROL_LEN_MAX];
    for _ in 0..3 {
        s.handle_message(NOW, &[], &mut buf);
    }
    assert_eq!(s.state(), State::Closed);
    let mut tags: Vec<u64> = std::iter::from_fn(|| s.poll_abandoned()).collect();
    tags.sort_unstable();
    assert_eq!(tags, [10, 20, 30]);
    assert_eq!(s.outstanding(), 0);
    assert_eq!(send_prepare(&mut s, 1, NOW), Err(SendError::NotOpen));
    // The driver closing it (socket gone) drains the same way.
    let (mut client, _server) = pair();
    send_prepare(&mut client, 5, NOW + 30_000).unwrap();
    client.close();
    assert_eq!(client.state(), State::Closed);
    assert_eq!(client.poll_abandoned(), Some(5));
    assert_eq!(client.poll_abandoned(), None);
    assert_eq!(client.handle_message(NOW, &[], &mut buf), Event::Close);
}

#[test]
fn error_lengths() {
    for refusal in Refusal::ALL {
        let mut out = [0u8; CONTROL_LEN_MAX];
        let len = write_error(NOW, 1, refusal, &mut out);
        assert_eq!(len, error_len(refusal.data().len()));
        assert!(serde_json::from_slice::<serde_json::Value>(refusal.data()).is_ok());
        Btp::new_checked(&out[..len]).unwrap();
    }
}

/// The range of the last `len` bytes of `message`: where a frame built here carries its ILP.
fn tail(message: &[u8], len: usize) -> Range<usize> {
    message.len() - len..message.len()
}

#[test]
fn server_auth_by_client_certificate() {
    // Only the `auth` entry: no token, no username. Refused without a certificate, accepted
    // as the certificate's peer with one.
    let entries = [ProtocolData {
        name: b"auth",
        content_type: ContentType(0),
        data: &[],
    }];
    let repr = BtpRepr {
        request_id: 5,
        body: BtpBody::Message,
        protocol_data: &entries,
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    let mut out = [0u8; CONTROL_LEN_MAX];
    let mut s = server();
    let AuthEvent::Refused { len } = s.handle_auth(NOW, &peers(), None, None, &bytes, &mut out)
    else {
        panic!("accepted without a token or a certificate")
    };
    assert_error(&out[..len], 5, Refusal::MissingToken.data());
    let mut s = server();
    let event = s.handle_auth(NOW, &peers(), None, Some(PeerId(4)), &bytes, &mut out);
    assert!(
        matches!(
            event,
            AuthEvent::Accepted {
                peer: PeerId(4),
                ..
            }
        ),
        "{event:?}"
    );
    // A certificate for bob with alice's name and token: refused.
    let auth = auth_entries(b"alice", b"secret-token");
    let repr = BtpRepr {
        protocol_data: &auth,
        ..repr
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    let mut s = server();
    let event = s.handle_auth(NOW, &peers(), None, Some(PeerId(4)), &bytes, &mut out);
    assert!(matches!(event, AuthEvent::Refused { .. }), "{event:?}");
}

#[test]
fn the_table_of_outstanding_requests_grows_as_it_fills() {
    // An idle session holds a small table; it grows to in_flight_max as requests go out, and
    // every request is still matched by its answer, in any order, across the growth.
    let mut s = BtpSession::server(NOW, 10_000, 1000, 3);
    let mut out = [0u8; CONTROL_LEN_MAX];
    let auth = vector("message_auth_interledger_rs_style");
    s.handle_auth(NOW, &peers(), None, None, &auth, &mut out);
    assert_eq!(s.slots.len(), SLOTS_INITIAL);
    let expires_at = NOW + 30_000;
    let ids: Vec<u32> = (0..1000)
        .map(|tag| request_id_of(&send_prepare(&mut s, tag, expires_at).unwrap()))
        .collect();
    assert_eq!(s.slots.len(), 1024);
    assert_eq!(send_prepare(&mut s, 7777, expires_at), Err(SendError::Busy));
    let fulfill = vector_ilp("response_ilp_fulfill");
    let mut buf = [0u8; CONTROL_LEN_MAX];
    // Every third first, then the rest: each answer finds its request's tag.
    let order = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .chain(ids.iter().enumerate().filter(|(i, _)| i % 3 != 0));
    for (tag, &id) in order {
        let reply = frame(BtpType::Response, id, &fulfill);
        match s.handle_message(NOW, &reply, &mut buf) {
            Event::Reply { tag: got, .. } => assert_eq!(got, tag as u64),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.outstanding(), 0);
}
