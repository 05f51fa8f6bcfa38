//! Tests of the CCP codec: the shared vectors, invalid input, our limits, truncation.

use super::*;
use crate::wire::{test_hex as unhex, FulfillRepr, Packet};
use serde_json::{json, Value};

fn vectors() -> Vec<Value> {
    let all: Value =
        serde_json::from_str(include_str!("../../tests/vectors/ccp.json")).expect("JSON");
    all["vectors"].as_array().expect("a vectors array").clone()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request in the vectors' JSON form (`decoded.ccp`).
fn json_of(request: &Request) -> Value {
    match request {
        Request::Control(c) => json!({
            "mode": c.mode.as_byte(),
            "lastKnownRoutingTableId": c.last_known_routing_table_id.to_string(),
            "lastKnownEpoch": c.last_known_epoch,
            "features": c.features,
        }),
        Request::Update(u) => json!({
            "routingTableId": u.routing_table_id.to_string(),
            "currentEpochIndex": u.current_epoch_index,
            "fromEpochIndex": u.from_epoch_index,
            "toEpochIndex": u.to_epoch_index,
            "holdDownTime": u.hold_down_time_ms,
            "speaker": u.speaker,
            "newRoutes": u.new_routes.iter().map(|r| json!({
                "prefix": r.prefix,
                "path": r.path,
                "auth": hex(&r.auth),
                "props": r.props.iter().map(|p| json!({
                    "isOptional": p.flags.is_optional(),
                    "isTransitive": p.flags.is_transitive(),
                    "isPartial": p.flags.is_partial(),
                    "isUtf8": p.flags.is_utf8(),
                    "id": p.id,
                    "value": if p.flags.is_utf8() {
                        String::from_utf8(p.value.clone()).expect("UTF-8")
                    } else {
                        hex(&p.value)
                    },
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "withdrawnRoutes": u.withdrawn_routes,
        }),
    }
}

fn to_bytes(request: &Request) -> Vec<u8> {
    match request {
        Request::Control(c) => c.to_bytes(),
        Request::Update(u) => u.to_bytes(),
    }
}

/// Both decoders on a payload, as results that compare.
fn decode_both(payload: &[u8]) -> [Result<Request, Error>; 2] {
    [
        RouteControlRequest::decode(payload).map(Request::Control),
        RouteUpdateRequest::decode(payload).map(Request::Update),
    ]
}

/// The valid CCP payloads of the vectors.
fn valid_payloads() -> Vec<(String, &'static str, Vec<u8>)> {
    vectors()
        .iter()
        .filter(|v| v["valid"] == true && v["payload_hex"].is_string())
        .map(|v| {
            let kind = match v["kind"].as_str() {
                Some("ccp_route_control") => "control",
                _ => "update",
            };
            let name = v["name"].as_str().unwrap().to_owned();
            (name, kind, unhex(v["payload_hex"].as_str().unwrap()))
        })
        .collect()
}

fn decode_kind(kind: &str, payload: &[u8]) -> Result<Request, Error> {
    if kind == "control" {
        RouteControlRequest::decode(payload).map(Request::Control)
    } else {
        RouteUpdateRequest::decode(payload).map(Request::Update)
    }
}

/// An update's payload as written, without the emitter's debug check, for values that
/// break a rule.
fn raw_update(update: &RouteUpdateRequest) -> Vec<u8> {
    let mut out = vec![0u8; update.encoded_len()];
    let len = update.write(&mut out);
    assert_eq!(len, out.len());
    out
}

fn raw_control(control: &RouteControlRequest) -> Vec<u8> {
    let mut out = vec![0u8; control.encoded_len()];
    let len = control.write(&mut out);
    assert_eq!(len, out.len());
    out
}

fn route(prefix: &str) -> Route {
    Route {
        prefix: prefix.into(),
        path: vec!["g.beta".into()],
        auth: [7; AUTH_LEN],
        props: vec![],
    }
}

fn update(new_routes: Vec<Route>, withdrawn: &[&str]) -> RouteUpdateRequest {
    RouteUpdateRequest {
        routing_table_id: RoutingTableId([0x21; ROUTING_TABLE_ID_LEN]),
        current_epoch_index: 9,
        from_epoch_index: 3,
        to_epoch_index: 9,
        hold_down_time_ms: 45_000,
        speaker: "g.alpha".into(),
        new_routes,
        withdrawn_routes: withdrawn.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn control(features: Vec<String>) -> RouteControlRequest {
    RouteControlRequest {
        mode: Mode::Sync,
        last_known_routing_table_id: RoutingTableId([0x3b; ROUTING_TABLE_ID_LEN]),
        last_known_epoch: 52,
        features,
    }
}

#[test]
fn every_vector_decodes_to_its_fields_and_reencodes_byte_for_byte() {
    let mut checked = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let bytes = unhex(v["hex"].as_str().unwrap());
        if v["kind"] == "ccp_response" {
            assert_eq!(&bytes[..], &CCP_RESPONSE[..], "{name}");
            checked += 1;
            continue;
        }
        // Every CCP vector is a well-formed Prepare; the CCP rules apply to its data.
        let prepare = Prepare::new_checked(&bytes[..]).expect(name);
        let decoded = Request::from_prepare(&prepare);
        if v["valid"] == true {
            let request = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(json_of(&request), v["decoded"]["ccp"], "{name}");
            let payload = unhex(v["payload_hex"].as_str().unwrap());
            assert_eq!(prepare.data(), &payload[..], "{name}");
            assert_eq!(to_bytes(&request), payload, "{name}");
            let kind_matches = matches!(
                (&request, v["kind"].as_str().unwrap()),
                (Request::Control(_), "ccp_route_control")
                    | (Request::Update(_), "ccp_route_update")
            );
            assert!(kind_matches, "{name}");
        } else {
            let error = decoded.expect_err(name);
            assert_eq!(
                error.as_str(),
                v["error"].as_str().unwrap(),
                "{name}: {error}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn the_invalid_vectors_name_their_field() {
    let errors: Vec<(String, Error)> = vectors()
        .iter()
        .filter(|v| v["valid"] == false)
        .map(|v| {
            let bytes = unhex(v["hex"].as_str().unwrap());
            let prepare = Prepare::new_checked(&bytes[..]).unwrap();
            let error = Request::from_prepare(&prepare).unwrap_err();
            (v["name"].as_str().unwrap().to_owned(), error)
        })
        .collect();
    let expected = [
        ("route_control_wrong_condition", Error::InvalidCondition),
        ("route_control_mode_2", Error::InvalidMode(2)),
        (
            "route_control_truncated",
            Error::Oer(Field::LastKnownRoutingTableId, wire::Error::Truncated),
        ),
        (
            "route_update_truncated",
            Error::Oer(Field::Auth, wire::Error::Truncated),
        ),
        (
            "route_update_invalid_speaker",
            Error::InvalidAddress(Field::Speaker),
        ),
    ];
    assert_eq!(errors.len(), expected.len());
    for ((name, error), (want_name, want)) in errors.iter().zip(expected) {
        assert_eq!((name.as_str(), *error), (want_name, want));
    }
    assert_eq!(
        Error::InvalidAddress(Field::Speaker).to_string(),
        "speaker: not a valid ILP address"
    );
    assert_eq!(
        Error::Oer(Field::Auth, wire::Error::Truncated).to_string(),
        "newRoutes[].auth: the input ends inside a fixed-size field or a length determinant"
    );
}

#[test]
fn truncation_at_every_offset_is_refused() {
    for (name, kind, payload) in valid_payloads() {
        for len in 0..payload.len() {
            let error = decode_kind(kind, &payload[..len])
                .expect_err(&format!("{name} cut to {len} bytes"));
            let category = error.as_str();
            assert!(
                category == "truncated" || category == "length_overflow",
                "{name} cut to {len} bytes: {error}"
            );
            // The other decoder never panics on it either.
            let _ = decode_both(&payload[..len]);
        }
    }
}

#[test]
fn changed_bytes_never_panic_and_what_is_accepted_reencodes_to_its_input() {
    for (name, _, payload) in valid_payloads() {
        // Every byte of the small ones; the 130-route update is covered by the fuzz target.
        if payload.len() > 512 {
            continue;
        }
        for at in 0..payload.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0x81, 0xff, payload[at] ^ 0x20] {
                let mut changed = payload.clone();
                changed[at] = value;
                for request in decode_both(&changed).into_iter().flatten() {
                    let again = to_bytes(&request);
                    assert_eq!(&changed[..again.len()], &again[..], "{name} [{at}]={value}");
                }
            }
        }
    }
}

#[test]
fn bytes_after_the_last_field_are_ignored_and_never_emitted() {
    for (name, kind, payload) in valid_payloads() {
        let mut longer = payload.clone();
        longer.extend_from_slice(&[0x01, 0x00, 0xff]);
        let request = decode_kind(kind, &longer).expect(&name);
        assert_eq!(Ok(&request), decode_kind(kind, &payload).as_ref(), "{name}");
        assert_eq!(to_bytes(&request), payload, "{name}");
    }
}

#[test]
fn values_round_trip_through_emit() {
    let mut r = route("g.beta.child");
    r.path = vec!["g.beta".into(), "test.gamma".into()];
    r.props = vec![
        Prop {
            flags: PropFlags(PropFlags::OPTIONAL | PropFlags::TRANSITIVE | PropFlags::UTF8),
            id: 1,
            value: b"hello".to_vec(),
        },
        Prop {
            flags: PropFlags(0x4f),
            id: 0xfffe,
            value: vec![0; 200],
        },
    ];
    let u = update(vec![r, route("g")], &["g.gamma", "test"]);
    let bytes = u.to_bytes();
    assert_eq!(bytes.len(), u.encoded_len());
    assert_eq!(RouteUpdateRequest::decode(&bytes), Ok(u.clone()));
    let mut buf = vec![0xa5; bytes.len() + 8];
    assert_eq!(u.emit(&mut buf), bytes.len());
    assert_eq!(&buf[..bytes.len()], &bytes[..]);
    assert!(buf[bytes.len()..].iter().all(|&b| b == 0xa5));

    let c = control(vec!["foo".into(), "é".into(), String::new()]);
    let bytes = c.to_bytes();
    assert_eq!(bytes.len(), c.encoded_len());
    assert_eq!(RouteControlRequest::decode(&bytes), Ok(c));
}

#[test]
fn the_prop_meta_byte_is_kept_whole() {
    let mut r = route("g.beta");
    r.props = vec![Prop {
        flags: PropFlags(0x2f),
        id: 7,
        value: vec![],
    }];
    let bytes = update(vec![r], &[]).to_bytes();
    let decoded = RouteUpdateRequest::decode(&bytes).unwrap();
    let flags = decoded.new_routes[0].props[0].flags;
    assert_eq!(flags, PropFlags(0x2f));
    assert!(flags.is_partial() && !flags.is_optional() && !flags.is_transitive());
    assert!(!flags.is_utf8());
}

#[test]
fn prefixes_are_addresses_or_a_scheme_alone_and_hops_are_addresses() {
    for prefix in ["g", "test", "private", "example", "g.a", "test.b-c_d~e"] {
        let bytes = update(vec![route(prefix)], &[prefix]).to_bytes();
        assert!(RouteUpdateRequest::decode(&bytes).is_ok(), "{prefix}");
    }
    for prefix in ["", "h", "g.", ".g", "g..a", "privates", "g.a b", "G"] {
        let bytes = raw_update(&update(vec![route(prefix)], &[]));
        assert_eq!(
            RouteUpdateRequest::decode(&bytes),
            Err(Error::InvalidAddress(Field::Prefix)),
            "{prefix:?}"
        );
        let bytes = raw_update(&update(vec![], &[prefix]));
        assert_eq!(
            RouteUpdateRequest::decode(&bytes),
            Err(Error::InvalidAddress(Field::WithdrawnRoute)),
            "{prefix:?}"
        );
    }
    let mut bare_hop = route("g.beta");
    bare_hop.path = vec!["g".into()];
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&update(vec![bare_hop], &[]))),
        Err(Error::InvalidAddress(Field::PathHop))
    );
    let mut speaker = update(vec![], &[]);
    speaker.speaker = "g".into();
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&speaker)),
        Err(Error::InvalidAddress(Field::Speaker))
    );
    let long = format!("g.{}", "a".repeat(wire::ADDRESS_LEN_MAX - 2));
    assert!(RouteUpdateRequest::decode(&update(vec![route(&long)], &[]).to_bytes()).is_ok());
    let too_long = format!("{long}a");
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&update(vec![route(&too_long)], &[]))),
        Err(Error::InvalidAddress(Field::Prefix))
    );
}

#[test]
fn our_limits_are_enforced_at_their_edge() {
    // Path.
    let mut r = route("g.beta");
    r.path = vec!["g.hop".into(); PATH_LEN_MAX];
    assert!(RouteUpdateRequest::decode(&update(vec![r.clone()], &[]).to_bytes()).is_ok());
    r.path.push("g.hop".into());
    let over = Error::TooMany {
        field: Field::Path,
        max: PATH_LEN_MAX,
    };
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&update(vec![r], &[]))),
        Err(over)
    );
    // Props, and the size of one.
    let prop = Prop {
        flags: PropFlags(PropFlags::OPTIONAL),
        id: 1,
        value: vec![1; PROP_VALUE_LEN_MAX],
    };
    let mut r = route("g.beta");
    r.props = vec![prop.clone(); PROPS_PER_ROUTE_MAX];
    assert!(RouteUpdateRequest::decode(&update(vec![r.clone()], &[]).to_bytes()).is_ok());
    r.props.push(prop.clone());
    let over = Error::TooMany {
        field: Field::Props,
        max: PROPS_PER_ROUTE_MAX,
    };
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&update(vec![r], &[]))),
        Err(over)
    );
    let mut r = route("g.beta");
    let mut big = prop;
    big.value.push(1);
    r.props = vec![big];
    let over = Error::TooLong {
        field: Field::PropValue,
        max: PROP_VALUE_LEN_MAX,
    };
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&update(vec![r], &[]))),
        Err(over)
    );
    // Routes and withdrawals per update.
    let full = update(vec![route("g.x"); ROUTES_PER_UPDATE_MAX], &[]);
    assert!(RouteUpdateRequest::decode(&full.to_bytes()).is_ok());
    let mut over = full;
    over.new_routes.push(route("g.x"));
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&over)),
        Err(Error::TooMany {
            field: Field::NewRoutes,
            max: ROUTES_PER_UPDATE_MAX
        })
    );
    let full = update(vec![], &["g"; WITHDRAWN_ROUTES_PER_UPDATE_MAX]);
    assert!(RouteUpdateRequest::decode(&full.to_bytes()).is_ok());
    let mut over = full;
    over.withdrawn_routes.push("g".into());
    assert_eq!(
        RouteUpdateRequest::decode(&raw_update(&over)),
        Err(Error::TooMany {
            field: Field::WithdrawnRoutes,
            max: WITHDRAWN_ROUTES_PER_UPDATE_MAX
        })
    );
    // Features, and the size of one.
    let full = control(vec!["f".repeat(FEATURE_LEN_MAX); FEATURES_MAX]);
    assert!(RouteControlRequest::decode(&full.to_bytes()).is_ok());
    let mut over = full.clone();
    over.features.push("f".into());
    assert_eq!(
        RouteControlRequest::decode(&raw_control(&over)),
        Err(Error::TooMany {
            field: Field::Features,
            max: FEATURES_MAX
        })
    );
    let mut over = full;
    over.features[3].push('f');
    assert_eq!(
        RouteControlRequest::decode(&raw_control(&over)),
        Err(Error::TooLong {
            field: Field::Feature,
            max: FEATURE_LEN_MAX
        })
    );
}

#[test]
fn counts_beyond_the_bytes_left_reserve_only_what_the_bytes_could_hold() {
    // A heartbeat whose route count is patched to 800, with one route there.
    let heartbeat = raw_update(&update(vec![], &[]));
    let at = heartbeat.len() - 4;
    assert_eq!(&heartbeat[at..], &[0x01, 0x00, 0x01, 0x00]);
    let one = raw_update(&update(vec![route("g.x")], &[]));
    let mut bytes = heartbeat[..at].to_vec();
    bytes.extend_from_slice(&[0x02, 0x03, 0x20]);
    bytes.extend_from_slice(&one[at + 2..one.len() - 2]);
    assert_eq!(
        RouteUpdateRequest::decode(&bytes),
        Err(Error::Oer(Field::Prefix, wire::Error::Truncated))
    );
    assert_eq!(Decoder::new(&[0; 100]).room(800, ROUTE_LEN_MIN), 2);
    assert_eq!(Decoder::new(&[0; 100]).room(1, ROUTE_LEN_MIN), 1);
    assert_eq!(Decoder::new(&[]).room(16_384, PREFIX_LEN_MIN), 0);
    // A count over the limit is refused as such, whatever follows.
    let mut bytes = heartbeat[..at].to_vec();
    bytes.extend_from_slice(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        RouteUpdateRequest::decode(&bytes),
        Err(Error::TooMany {
            field: Field::NewRoutes,
            max: ROUTES_PER_UPDATE_MAX
        })
    );
    // Withdrawals: 3 announced, one there.
    let mut bytes = heartbeat[..at + 2].to_vec();
    bytes.extend_from_slice(&[0x01, 0x03, 0x01, 0x67]);
    assert_eq!(
        RouteUpdateRequest::decode(&bytes),
        Err(Error::Oer(Field::WithdrawnRoute, wire::Error::Truncated))
    );
}

#[test]
fn non_canonical_forms_are_refused() {
    let start = raw_control(&control(vec![]));
    let head = &start[..start.len() - 2];
    let with = |tail: &[u8]| [head, tail].concat();
    let cases: [(&[u8], Error); 7] = [
        (
            &[0x02, 0x00, 0x00],
            Error::NonCanonicalVarUint(Field::Features),
        ),
        (
            &[0x00],
            Error::Oer(Field::Features, wire::Error::InvalidVarUint),
        ),
        (
            &[0x09, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            Error::Oer(Field::Features, wire::Error::InvalidVarUint),
        ),
        (
            &[0x81, 0x01, 0x00],
            Error::Oer(Field::Features, wire::Error::NonCanonicalLength),
        ),
        (
            &[0x80],
            Error::Oer(Field::Features, wire::Error::IndefiniteLength),
        ),
        (
            &[0x01, 0x01, 0x81, 0x03, b'f', b'o', b'o'],
            Error::Oer(Field::Feature, wire::Error::NonCanonicalLength),
        ),
        (
            &[0x01, 0x01, 0x02, 0xc3, 0x28],
            Error::InvalidUtf8(Field::Feature),
        ),
    ];
    for (tail, error) in cases {
        assert_eq!(
            RouteControlRequest::decode(&with(tail)),
            Err(error),
            "{tail:02x?}"
        );
    }
    assert_eq!(
        RouteControlRequest::decode(&with(&[0x01, 0x00])),
        Ok(control(vec![]))
    );
    // A speaker with a long-form length.
    let heartbeat = raw_update(&update(vec![], &[]));
    let mut bytes = heartbeat[..32].to_vec();
    bytes.extend_from_slice(&[0x81, 0x07]);
    bytes.extend_from_slice(&heartbeat[33..]);
    assert_eq!(
        RouteUpdateRequest::decode(&bytes),
        Err(Error::Oer(Field::Speaker, wire::Error::NonCanonicalLength))
    );
}

#[test]
fn mode_and_routing_table_id() {
    let mut bytes = raw_control(&control(vec![]));
    for (byte, mode) in [(0, Ok(Mode::Idle)), (1, Ok(Mode::Sync))] {
        bytes[0] = byte;
        assert_eq!(RouteControlRequest::decode(&bytes).map(|c| c.mode), mode);
    }
    for byte in [2, 0x80, 0xff] {
        bytes[0] = byte;
        assert_eq!(
            RouteControlRequest::decode(&bytes),
            Err(Error::InvalidMode(byte))
        );
    }
    let id = RoutingTableId([
        0x3b, 0x06, 0x98, 0x22, 0xa7, 0x54, 0x4e, 0x44, 0x8a, 0x60, 0x0f, 0x9f, 0x70, 0x84, 0x14,
        0x4d,
    ]);
    assert_eq!(id.to_string(), "3b069822-a754-4e44-8a60-0f9f7084144d");
    assert_eq!(
        RoutingTableId::default().to_string(),
        "00000000-0000-0000-0000-000000000000"
    );
}

#[test]
fn the_peer_protocol_constants() {
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest(PEER_PROTOCOL_FULFILLMENT).into();
    assert_eq!(digest, PEER_PROTOCOL_CONDITION);
    let repr = FulfillRepr {
        fulfillment: &PEER_PROTOCOL_FULFILLMENT,
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    assert_eq!(out, CCP_RESPONSE);
    let Ok(Packet::Fulfill(fulfill)) = Packet::new_checked(&CCP_RESPONSE[..]) else {
        panic!("CCP_RESPONSE is not a Fulfill");
    };
    assert_eq!(fulfill.fulfillment(), &PEER_PROTOCOL_FULFILLMENT);
    assert!(fulfill.data().is_empty());
    for destination in [CCP_CONTROL_DESTINATION, CCP_UPDATE_DESTINATION] {
        assert!(check_address(destination).is_ok());
    }
}

#[test]
fn from_prepare_checks_destination_then_condition() {
    let payload = control(vec![]).to_bytes();
    let prepare = |destination: &[u8], condition: &[u8; 32]| {
        let repr = wire::PrepareRepr {
            amount: 0,
            expires_at: 0,
            execution_condition: condition,
            destination: wire::Address::new_checked(destination).unwrap(),
            data: &payload,
        };
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut out);
        out
    };
    let from = |bytes: Vec<u8>| Request::from_prepare(&Prepare::new_checked(bytes).unwrap());
    let good = PEER_PROTOCOL_CONDITION;
    let bad = [9u8; 32];
    assert_eq!(
        from(prepare(CCP_CONTROL_DESTINATION, &good)),
        Ok(Request::Control(control(vec![])))
    );
    // The control payload is too short for an update: its own decoder, by destination.
    assert_eq!(
        from(prepare(CCP_UPDATE_DESTINATION, &good)),
        Err(Error::Oer(Field::FromEpochIndex, wire::Error::Truncated))
    );
    for other in [
        &b"peer.config"[..],
        b"peer.route",
        b"peer.route.controls",
        b"g.a",
    ] {
        assert_eq!(from(prepare(other, &good)), Err(Error::NotCcp));
        assert_eq!(from(prepare(other, &bad)), Err(Error::NotCcp));
    }
    assert_eq!(
        from(prepare(CCP_CONTROL_DESTINATION, &bad)),
        Err(Error::InvalidCondition)
    );
}
