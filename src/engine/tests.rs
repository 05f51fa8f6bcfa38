//! Unit tests of the engine: every local reject path, named after the rule it follows
//! (RFC 27's codes, in the check order of `mod.rs`), and the reply paths.

use super::*;
use crate::wire::{ErrorCode, FulfillRepr, PrepareRepr, Reject, RejectRepr};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_900_000_000_000;
const ALICE: PeerId = PeerId(0);
const BOB: PeerId = PeerId(1);
const EURO: PeerId = PeerId(2);
const NORATE: PeerId = PeerId(3);
const COARSE: PeerId = PeerId(4);

fn peer(code: &str, scale: u8, max_balance: u64) -> PeerConfig {
    PeerConfig {
        asset_code: code.into(),
        asset_scale: scale,
        max_packet_amount: 1_000_000,
        max_balance,
        home: CoreId(0),
        lease_chunk: 0,
        posted: 0,
        shared_limit: false,
        packets_per_second: 0,
        amount_per_second: 0,
        ildcp_segment: None,
    }
}

fn config(pending_max: usize) -> EngineConfig {
    let routes = [
        (&b"g.alice"[..], ALICE),
        (b"g.bob", BOB),
        (b"g.euro", EURO),
        (b"g.norate", NORATE),
        (b"g.coarse", COARSE),
    ];
    EngineConfig {
        address: b"g.router".to_vec(),
        peers: vec![
            peer("USD", 9, 10_000_000),
            peer("USD", 9, 10_000_000),
            peer("EUR", 9, 10_000_000),
            peer("XYZ", 9, 10_000_000),
            peer("USD", 0, 10_000_000),
        ],
        routes: RouteTable::build(b"g.router", routes, Some(BOB)).unwrap(),
        groups: Vec::new(),
        prices: vec![
            ("USD".into(), Decimal::ONE),
            ("EUR".into(), Decimal::parse("1.25").unwrap()),
        ],
        spread: Decimal::ZERO,
        min_message_window_ms: 1000,
        max_hold_time_ms: 30_000,
        pending_max,
        pending_per_peer_max: pending_max,
        tick_ms: 5,
        core: CoreId(0),
        cores: 1,
    }
}

fn engine_with(pending_max: usize) -> Engine {
    let mut engine = Engine::new(config(pending_max), NOW);
    for p in 0..5 {
        engine.set_link_up(PeerId(p), true);
    }
    engine
}

fn engine() -> Engine {
    engine_with(64)
}

fn fulfillment(n: u8) -> [u8; 32] {
    [n; 32]
}

fn condition(n: u8) -> [u8; 32] {
    Sha256::digest(fulfillment(n)).into()
}

fn prepare_to(destination: &[u8], amount: u64, expires_at: i64, cond: [u8; 32]) -> Vec<u8> {
    let repr = PrepareRepr {
        amount,
        expires_at,
        execution_condition: &cond,
        destination: Address::new_checked(destination).unwrap(),
        data: b"hello",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn prepare(amount: u64) -> Vec<u8> {
    prepare_to(b"g.bob.wallet", amount, NOW + 10_000, condition(1))
}

fn fulfill(n: u8) -> Vec<u8> {
    let f = fulfillment(n);
    let repr = FulfillRepr {
        fulfillment: &f,
        data: b"ok",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn downstream_reject() -> Vec<u8> {
    let repr = RejectRepr {
        code: ErrorCode(*b"F99"),
        triggered_by: Some(Address::new_checked(b"g.bob").unwrap()),
        message: b"no thanks",
        data: b"app",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn rejected(engine: &mut Engine, from: PeerId, mut packet: Vec<u8>) -> RejectReason {
    match engine.handle_prepare(NOW, from, 7, &mut packet) {
        Decision::Reject(reason) => reason,
        other => panic!("expected a reject, got {other:?}"),
    }
}

fn forwarded(engine: &mut Engine, from: PeerId, packet: &mut [u8]) -> (PeerId, SlotId, usize) {
    match engine.handle_prepare(NOW, from, 7, packet) {
        Decision::Forward { to, slot, len, .. } => (to, slot, len),
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn held(engine: &Engine, peer: PeerId) -> i128 {
    engine.ledger().account(peer).pending_in()
}

fn posted(engine: &Engine, peer: PeerId) -> i128 {
    engine.ledger().account(peer).posted()
}

#[test]
fn forward_rewrites_amount_and_expiry_in_place() {
    let mut e = engine();
    let mut packet = prepare(5000);
    let (to, _slot, len) = forwarded(&mut e, ALICE, &mut packet);
    assert_eq!(to, BOB);
    let out = Prepare::new_checked(&packet[..len]).unwrap();
    assert_eq!(out.amount(), 5000);
    // RFC 27 step 6, as the JS connector: min(in − window, now + max_hold) = NOW + 10 000 − 1000.
    assert_eq!(out.expires_at(), NOW + 9000);
    assert_eq!(out.destination().as_bytes(), b"g.bob.wallet");
    assert_eq!(held(&e, ALICE), 5000);
}

#[test]
fn outgoing_expiry_is_capped_by_max_hold_time() {
    let mut e = engine();
    let mut packet = prepare_to(b"g.bob", 1, NOW + 600_000, condition(1));
    let (_, _, len) = forwarded(&mut e, ALICE, &mut packet);
    assert_eq!(
        Prepare::new_checked(&packet[..len]).unwrap().expires_at(),
        NOW + 30_000
    );
}

#[test]
fn rule_9_undecodable_prepare_is_f01() {
    let mut e = engine();
    let mut bad = prepare(1);
    bad[60] = b'!'; // inside the destination
    let reason = rejected(&mut e, ALICE, bad);
    assert_eq!(reason.code(), ErrorCode::F01_INVALID_PACKET);
    assert_eq!(
        rejected(&mut e, ALICE, fulfill(1)).code(),
        ErrorCode::F01_INVALID_PACKET
    );
    assert_eq!(
        rejected(&mut e, ALICE, vec![]).code(),
        ErrorCode::F01_INVALID_PACKET
    );
}

#[test]
fn rule_2_already_expired_is_r02() {
    let mut e = engine();
    let packet = prepare_to(b"g.bob", 1, NOW, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, packet),
        RejectReason::InsufficientTimeout
    );
}

#[test]
fn rule_2_too_little_time_left_is_r02() {
    let mut e = engine();
    // in − window − now = 999 < window.
    let packet = prepare_to(b"g.bob", 1, NOW + 1999, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, packet).code(),
        ErrorCode::R02_INSUFFICIENT_TIMEOUT
    );
    let mut exactly = prepare_to(b"g.bob", 1, NOW + 2000, condition(1));
    forwarded(&mut e, ALICE, &mut exactly);
}

#[test]
fn rule_4_peer_protocol_destinations_are_never_forwarded() {
    let mut e = engine();
    let wrong = prepare_to(b"peer.config", 0, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, wrong).code(),
        ErrorCode::F01_INVALID_PACKET
    );
    // ILDCP with the right condition is answered to children only (see the RFC 31 test); no
    // peer here is one.
    let right = prepare_to(b"peer.config", 0, NOW + 10_000, PEER_PROTOCOL_CONDITION);
    assert_eq!(
        rejected(&mut e, ALICE, right).code(),
        ErrorCode::F00_BAD_REQUEST
    );
    // CCP with the right condition goes to the control plane, never forwarded.
    let mut ccp = prepare_to(
        b"peer.route.update",
        0,
        NOW + 10_000,
        PEER_PROTOCOL_CONDITION,
    );
    assert_eq!(
        e.handle_prepare(NOW, ALICE, 7, &mut ccp),
        Decision::RouteControl {
            expires_at: NOW + 10_000
        }
    );
    let ccp = prepare_to(b"peer.route.control", 0, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, ccp).code(),
        ErrorCode::F01_INVALID_PACKET
    );
    let other = prepare_to(b"peer.settle", 0, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, other).code(),
        ErrorCode::F02_UNREACHABLE
    );
}

#[test]
fn rule_4_self_and_own_address_are_f02() {
    let mut e = engine();
    let loopback = prepare_to(b"self.x", 1, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, loopback).code(),
        ErrorCode::F02_UNREACHABLE
    );
    let own = prepare_to(b"g.router", 1, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, own).code(),
        ErrorCode::F02_UNREACHABLE
    );
}

#[test]
fn rule_3_live_node_rejects_testnet_destinations() {
    let mut e = engine();
    for destination in [&b"test.bob"[..], b"test1.bob", b"test3.x.y"] {
        let packet = prepare_to(destination, 1, NOW + 10_000, condition(1));
        assert_eq!(
            rejected(&mut e, ALICE, packet).code(),
            ErrorCode::F02_UNREACHABLE
        );
    }
}

#[test]
fn rule_5_over_max_packet_amount_is_f08_with_data() {
    let mut e = engine();
    let reason = rejected(&mut e, ALICE, prepare(1_000_001));
    assert_eq!(reason.code(), ErrorCode::F08_AMOUNT_TOO_LARGE);
    let mut buf = [0u8; REJECT_LEN_MAX];
    let n = e.emit_reject(reason, &mut buf);
    let reject = Reject::new_checked(&buf[..n]).unwrap();
    let data = AmountTooLarge::from_bytes(reject.data()).unwrap();
    assert_eq!(
        data,
        AmountTooLarge {
            received: 1_000_001,
            maximum: 1_000_000
        }
    );
    assert_eq!(reject.triggered_by().unwrap().as_bytes(), b"g.router");
    // Equality passes.
    forwarded(&mut e, ALICE, &mut prepare(1_000_000));
}

#[test]
fn rule_3_no_route_is_f02_and_matches_fall_on_segments() {
    let mut e = engine();
    let foreign = prepare_to(b"private.bob", 1, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, foreign).code(),
        ErrorCode::F02_UNREACHABLE
    );
    // g.euroland is not under g.euro; it takes the default route (bob) because it is g.*.
    let mut bobby = prepare_to(b"g.euroland", 1, NOW + 10_000, condition(1));
    assert_eq!(forwarded(&mut e, ALICE, &mut bobby).0, BOB);
}

#[test]
fn rule_3_next_hop_link_down_is_t01() {
    let mut e = engine();
    e.set_link_up(BOB, false);
    assert_eq!(
        rejected(&mut e, ALICE, prepare(1)).code(),
        ErrorCode::T01_PEER_UNREACHABLE
    );
    assert_eq!(held(&e, ALICE), 0);
}

#[test]
fn rule_6_no_rate_is_t00() {
    let mut e = engine();
    let packet = prepare_to(b"g.norate", 1, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, packet).code(),
        ErrorCode::T00_INTERNAL_ERROR
    );
}

#[test]
fn rule_6_conversion_floors_and_zero_is_r01() {
    let mut e = engine();
    // USD scale 9 → EUR scale 9 at 1 / 1.25: 1000 → 800.
    let mut packet = prepare_to(b"g.euro", 1000, NOW + 10_000, condition(1));
    let (_, _, len) = forwarded(&mut e, ALICE, &mut packet);
    assert_eq!(Prepare::new_checked(&packet[..len]).unwrap().amount(), 800);
    // Scale 9 → scale 0: 999 999 units are less than one dollar: floor is 0.
    let tiny = prepare_to(b"g.coarse", 999_999, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, ALICE, tiny).code(),
        ErrorCode::R01_INSUFFICIENT_SOURCE_AMOUNT
    );
    // A zero amount is forwarded as zero.
    let mut zero = prepare_to(b"g.coarse", 0, NOW + 10_000, condition(1));
    let (_, _, len) = forwarded(&mut e, ALICE, &mut zero);
    assert_eq!(Prepare::new_checked(&zero[..len]).unwrap().amount(), 0);
}

#[test]
fn rule_6_converted_overflow_is_f08_without_data() {
    let mut config = config(8);
    config.peers[COARSE.index()].max_packet_amount = u64::MAX;
    let mut e = Engine::new(config, NOW);
    e.set_link_up(BOB, true);
    // Scale 0 → scale 9 multiplies by 10^9.
    let packet = prepare_to(b"g.bob", u64::MAX / 10, NOW + 10_000, condition(1));
    let reason = rejected(&mut e, COARSE, packet);
    assert_eq!(reason, RejectReason::AmountTooLarge(None));
}

#[test]
fn rule_9_full_table_is_t03() {
    let mut e = engine_with(2);
    forwarded(&mut e, ALICE, &mut prepare(1));
    forwarded(&mut e, ALICE, &mut prepare(1));
    assert_eq!(
        rejected(&mut e, ALICE, prepare(1)).code(),
        ErrorCode::T03_CONNECTOR_BUSY
    );
    assert_eq!(held(&e, ALICE), 2, "the refused Prepare held nothing");
}

#[test]
fn rule_7_hold_past_max_balance_is_t04() {
    let mut config = config(8);
    config.peers[ALICE.index()].max_balance = 1500;
    let mut e = Engine::new(config, NOW);
    e.set_link_up(BOB, true);
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(1000));
    assert_eq!(
        rejected(&mut e, ALICE, prepare(501)).code(),
        ErrorCode::T04_INSUFFICIENT_LIQUIDITY
    );
    forwarded(&mut e, ALICE, &mut prepare(500));
    // Posting keeps the sum: still no room.
    e.handle_reply(NOW + 1, slot, &fulfill(1));
    assert_eq!(posted(&e, ALICE), 1000);
    assert_eq!(
        rejected(&mut e, ALICE, prepare(1)),
        RejectReason::InsufficientLiquidity
    );
}

#[test]
fn rule_8_valid_fulfill_commits_both_sides_and_relays_bytes() {
    let mut e = engine();
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(5000));
    let reply = fulfill(1);
    assert_eq!(
        e.handle_reply(NOW + 5, slot, &reply),
        Reply::Fulfill {
            to: ALICE,
            tag: 7,
            len: reply.len()
        }
    );
    assert_eq!((held(&e, ALICE), posted(&e, ALICE)), (0, 5000));
    assert_eq!(posted(&e, BOB), -5000);
    assert_eq!(e.counters().fulfilled, 1);
    // Exactly one reply: a second one for the same slot is dropped.
    assert_eq!(e.handle_reply(NOW + 6, slot, &reply), Reply::Drop);
    assert_eq!(posted(&e, ALICE), 5000);
}

/// Records the order of the durable stores.
#[derive(Debug)]
struct Recording(std::rc::Rc<std::cell::RefCell<Vec<PeerId>>>);

impl PostedStore for Recording {
    fn load(&self, _: PeerId) -> i128 {
        0
    }
    fn store(&mut self, peer: PeerId, _: i128) {
        self.0.borrow_mut().push(peer);
    }
}

/// A crash between the two stores of a Fulfill must leave what the upstream believes (no
/// Fulfill yet): the outgoing peer's row is written first.
#[test]
fn rule_8_fulfill_stores_the_outgoing_row_before_the_incoming_one() {
    let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut e = Engine::with_store(config(64), NOW, Box::new(Recording(order.clone())));
    for p in 0..5 {
        e.set_link_up(PeerId(p), true);
    }
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(5000));
    assert!(matches!(
        e.handle_reply(NOW + 5, slot, &fulfill(1)),
        Reply::Fulfill { .. }
    ));
    assert_eq!(*order.borrow(), [BOB, ALICE]);
}

/// One peer may fill only its share of the in-flight table; the others keep their room.
#[test]
fn rule_9_a_peer_over_its_share_of_the_table_is_t03() {
    let mut c = config(8);
    c.pending_per_peer_max = 3;
    let mut e = Engine::new(c, NOW);
    for p in 0..5 {
        e.set_link_up(PeerId(p), true);
    }
    let mut slots = Vec::new();
    for _ in 0..3 {
        slots.push(forwarded(&mut e, ALICE, &mut prepare(0)).1);
    }
    assert_eq!(
        rejected(&mut e, ALICE, prepare(0)),
        RejectReason::ConnectorBusy
    );
    assert_eq!(e.pending_of(ALICE), 3);
    forwarded(
        &mut e,
        BOB,
        &mut prepare_to(b"g.alice.x", 0, NOW + 10_000, condition(1)),
    );
    // A slot coming back gives the peer room again.
    e.handle_failure(slots[0], RejectReason::PeerUnreachable);
    forwarded(&mut e, ALICE, &mut prepare(0));
}

/// RFC 18 payment bandwidth: over the packet rate is T05, over the amount rate T04 (RFC 27's
/// T04 is too little balance or bandwidth); one second later the peer may send again.
#[test]
fn rule_2_rate_limits_are_t05_for_packets_and_t04_for_amount() {
    let mut c = config(64);
    c.peers[0].packets_per_second = 3;
    c.peers[1].amount_per_second = 10_000;
    let mut e = Engine::new(c, NOW);
    for p in 0..5 {
        e.set_link_up(PeerId(p), true);
    }
    for _ in 0..3 {
        forwarded(&mut e, ALICE, &mut prepare(1));
    }
    assert_eq!(
        rejected(&mut e, ALICE, prepare(1)),
        RejectReason::RateLimited
    );
    assert_eq!(
        RejectReason::RateLimited.code(),
        ErrorCode::T05_RATE_LIMITED
    );
    forwarded(
        &mut e,
        BOB,
        &mut prepare_to(b"g.alice.x", 6000, NOW + 10_000, condition(1)),
    );
    let over = prepare_to(b"g.alice.x", 5000, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, BOB, over),
        RejectReason::InsufficientLiquidity
    );
    // A second later the buckets are full again.
    let later = NOW + 1000;
    e.handle_timeout(later);
    let mut p = prepare_to(b"g.bob.x", 1, later + 10_000, condition(1));
    assert!(matches!(
        e.handle_prepare(later, ALICE, 8, &mut p),
        Decision::Forward { .. }
    ));
}

#[test]
fn rule_8_wrong_fulfillment_is_f05_and_voids() {
    let mut e = engine();
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(5000));
    let reply = e.handle_reply(NOW + 5, slot, &fulfill(2));
    assert_eq!(
        reply,
        Reply::Reject {
            to: ALICE,
            tag: 7,
            reason: RejectReason::WrongCondition
        }
    );
    assert_eq!(
        RejectReason::WrongCondition.code(),
        ErrorCode::F05_WRONG_CONDITION
    );
    assert_eq!(
        (held(&e, ALICE), posted(&e, ALICE), posted(&e, BOB)),
        (0, 0, 0)
    );
}

#[test]
fn rule_8_downstream_reject_is_relayed_and_voids() {
    let mut e = engine();
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(5000));
    let reject = downstream_reject();
    assert_eq!(
        e.handle_reply(NOW + 5, slot, &reject),
        Reply::Relay {
            to: ALICE,
            tag: 7,
            len: reject.len()
        }
    );
    assert_eq!((held(&e, ALICE), posted(&e, ALICE)), (0, 0));
}

#[test]
fn undecodable_reply_is_t00_and_voids() {
    let mut e = engine();
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(5000));
    let reply = e.handle_reply(NOW + 5, slot, b"\x0d\x05garbage");
    assert_eq!(
        reply,
        Reply::Reject {
            to: ALICE,
            tag: 7,
            reason: RejectReason::Internal
        }
    );
    assert_eq!(held(&e, ALICE), 0);
}

#[test]
fn rule_2_no_answer_by_expiry_is_r00_and_late_replies_are_dropped() {
    let mut e = engine();
    let (_, slot, len) = forwarded(&mut e, ALICE, &mut prepare(5000));
    let _ = len;
    e.handle_timeout(NOW + 8999);
    assert_eq!(e.poll_expired(), None, "never early");
    e.handle_timeout(NOW + 9004);
    let expired = e.poll_expired().expect("expired within a tick");
    assert_eq!(
        (expired.to, expired.tag, expired.reason.code()),
        (ALICE, 7, ErrorCode::R00_TRANSFER_TIMED_OUT)
    );
    assert_eq!(held(&e, ALICE), 0);
    assert_eq!(e.handle_reply(NOW + 9005, slot, &fulfill(1)), Reply::Drop);
    assert_eq!(posted(&e, ALICE), 0, "a late Fulfill is never credited");
    assert_eq!(e.counters().late_replies, 1);
}

#[test]
fn rule_2_reply_at_expiry_before_the_wheel_fires_is_r00() {
    let mut e = engine();
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(5000));
    let reply = e.handle_reply(NOW + 9000, slot, &fulfill(1));
    assert_eq!(
        reply,
        Reply::Reject {
            to: ALICE,
            tag: 7,
            reason: RejectReason::TimedOut
        }
    );
    assert_eq!((held(&e, ALICE), posted(&e, ALICE)), (0, 0));
    e.handle_timeout(NOW + 20_000);
    assert_eq!(e.poll_expired(), None, "answered once only");
}

#[test]
fn failure_of_the_next_hop_answers_once() {
    let mut e = engine();
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(5000));
    let reply = e.handle_failure(slot, RejectReason::PeerUnreachable);
    assert_eq!(
        reply,
        Reply::Reject {
            to: ALICE,
            tag: 7,
            reason: RejectReason::PeerUnreachable
        }
    );
    assert_eq!(
        e.handle_failure(slot, RejectReason::PeerUnreachable),
        Reply::Drop
    );
    assert_eq!(held(&e, ALICE), 0);
}

#[test]
fn rule_7_zero_amounts_skip_the_ledger() {
    let mut config = config(8);
    config.peers[ALICE.index()].max_balance = 0;
    let mut e = Engine::new(config, NOW);
    e.set_link_up(BOB, true);
    let (_, slot, _) = forwarded(&mut e, ALICE, &mut prepare(0));
    assert!(matches!(
        e.handle_reply(NOW + 1, slot, &fulfill(1)),
        Reply::Fulfill { .. }
    ));
    assert_eq!(
        rejected(&mut e, ALICE, prepare(1)),
        RejectReason::InsufficientLiquidity
    );
}

#[test]
fn inner_trailing_bytes_are_not_forwarded() {
    let mut e = engine();
    let mut packet = prepare(10);
    let body_len = packet[1] as usize;
    packet.extend_from_slice(&[0xee, 0xee]);
    packet[1] = (body_len + 2) as u8;
    let (_, _, len) = forwarded(&mut e, ALICE, &mut packet);
    assert_eq!(len, packet.len() - 2);
    let out = Prepare::new_checked(&packet[..len]).unwrap();
    assert!(!out.has_inner_trailing_bytes());
}

#[test]
fn per_peer_stats_count_each_direction_codes_amounts_and_round_trips() {
    use super::stats::{code_index, INCOMING, OUTGOING};
    let mut engine = engine();
    // A Fulfill 3 ms after the forward.
    let mut packet = prepare(500);
    let (_, slot, _) = forwarded(&mut engine, ALICE, &mut packet);
    engine.handle_reply(NOW + 3, slot, &fulfill(1));
    // A relayed F99.
    let mut packet = prepare(7);
    let (_, slot, _) = forwarded(&mut engine, ALICE, &mut packet);
    engine.handle_reply(NOW, slot, &downstream_reject());
    // A local F02, and an expiry (R00).
    rejected(
        &mut engine,
        ALICE,
        prepare_to(b"test.nowhere", 1, NOW + 10_000, condition(1)),
    );
    let mut packet = prepare(9);
    forwarded(&mut engine, ALICE, &mut packet);
    engine.handle_timeout(NOW + 60_000);
    while engine.poll_expired().is_some() {}

    let f99 = code_index(ErrorCode::F99_APPLICATION_ERROR);
    let alice = &engine.peer_stats()[ALICE.index()];
    assert_eq!(alice.prepares, [4, 0]);
    assert_eq!(alice.fulfills, [1, 0]);
    assert_eq!(alice.amount, [500, 0]);
    assert_eq!(alice.rejects[INCOMING][f99], 1);
    assert_eq!(
        alice.rejects[INCOMING][code_index(ErrorCode::F02_UNREACHABLE)],
        1
    );
    assert_eq!(
        alice.rejects[INCOMING][code_index(ErrorCode::R00_TRANSFER_TIMED_OUT)],
        1
    );
    assert_eq!(alice.rejects[INCOMING].iter().sum::<u64>(), 3);
    let bob = &engine.peer_stats()[BOB.index()];
    assert_eq!(bob.prepares, [0, 3]);
    assert_eq!(bob.fulfills, [0, 1]);
    assert_eq!(bob.amount, [0, 500]);
    assert_eq!(bob.rejects[OUTGOING][f99], 1);
    assert_eq!(bob.rejects[OUTGOING].iter().sum::<u64>(), 1);
    // Two answers: 3 ms (bucket ≤ 5) and 0 ms (bucket ≤ 1); the expiry is no answer.
    assert_eq!(bob.round_trip[0], 1);
    assert_eq!(bob.round_trip[2], 1);
    assert_eq!(bob.round_trip_sum_ms, 3);
}

/// The vectors' `ildcp_response_usd_9`: a child `alice` of `g.connector` in USD at scale 9.
const ILDCP_RESPONSE_USD_9: &str = "0d3800000000000000000000000000000000000000000000000000000000000000001711672e636f6e6e6563746f722e616c6963650903555344";
/// The vectors' `ildcp_request_generated` (expires 2100-01-01T00:01:00Z).
const ILDCP_REQUEST: &str = "0c460000000000000000323130303031303130303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f29250b706565722e636f6e66696700";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc31_a_child_asking_peer_config_gets_its_address_and_asset() {
    let mut config = config(64);
    config.address = b"g.connector".to_vec();
    config.routes = RouteTable::build(b"g.connector", [(&b"g.bob"[..], BOB)], None).unwrap();
    config.peers[ALICE.index()].ildcp_segment = Some("alice".into());
    let mut engine = Engine::new(config, NOW);
    let mut request = unhex(ILDCP_REQUEST);
    assert_eq!(
        engine.handle_prepare(NOW, ALICE, 1, &mut request),
        Decision::PeerConfig
    );
    let reply = engine.peer_config_reply(ALICE).expect("a child");
    assert_eq!(&reply[..], &unhex(ILDCP_RESPONSE_USD_9)[..]);
    assert_eq!(engine.counters().peer_config, 1);
    // Not a child: F00, as the JS connector answers (RFC 31 serves children).
    let mut request = unhex(ILDCP_REQUEST);
    assert_eq!(
        engine.handle_prepare(NOW, BOB, 2, &mut request),
        Decision::Reject(RejectReason::NotAChild)
    );
    assert_eq!(RejectReason::NotAChild.code(), ErrorCode::F00_BAD_REQUEST);
    assert!(engine.peer_config_reply(BOB).is_none());
    // Expired: R02, before anything else about it.
    let mut request = unhex(ILDCP_REQUEST);
    assert_eq!(
        engine.handle_prepare(4_200_000_000_000, ALICE, 3, &mut request),
        Decision::Reject(RejectReason::InsufficientTimeout)
    );
    // Without the peer-protocol condition: F01, as before.
    let mut request = prepare_to(b"peer.config", 0, NOW + 10_000, condition(1));
    assert_eq!(
        engine.handle_prepare(NOW, ALICE, 4, &mut request),
        Decision::Reject(RejectReason::PeerProtocolCondition)
    );
}

#[test]
fn a_peer_added_by_a_reload_forwards_holds_and_posts_like_the_others() {
    let mut e = engine();
    let mut grown = config(64);
    let mut dave = peer("USD", 9, 1000);
    dave.posted = 300;
    dave.ildcp_segment = Some("dave".into());
    grown.peers.push(dave);
    let dave = PeerId(5);
    grown.routes =
        RouteTable::build(b"g.router", [(&b"g.bob"[..], BOB), (b"g.dave", dave)], None).unwrap();
    e.reconfigure(grown);
    // Down until its link comes up, like every peer at start.
    assert_eq!(
        rejected(
            &mut e,
            ALICE,
            prepare_to(b"g.dave.x", 1, NOW + 10_000, condition(1))
        )
        .code(),
        ErrorCode::T01_PEER_UNREACHABLE
    );
    e.set_link_up(dave, true);
    let mut packet = prepare_to(b"g.dave.x", 40, NOW + 10_000, condition(1));
    let (to, slot, _) = forwarded(&mut e, ALICE, &mut packet);
    assert_eq!(to, dave);
    e.handle_reply(NOW + 1, slot, &fulfill(1));
    assert_eq!(e.peer_stats()[dave.index()].fulfills[OUTGOING], 1);
    // Its balance started where the reload said (300 of 1000); paying it 40 took that to
    // 260, so 740 more is the most it may hold. And it has its ILDCP answer.
    assert_eq!(posted(&e, dave), 260);
    let mut packet = prepare_to(b"g.bob", 741, NOW + 10_000, condition(1));
    assert_eq!(
        rejected(&mut e, dave, packet.clone()).code(),
        ErrorCode::T04_INSUFFICIENT_LIQUIDITY
    );
    packet = prepare_to(b"g.bob", 740, NOW + 10_000, condition(2));
    let (_, slot, _) = forwarded(&mut e, dave, &mut packet);
    e.handle_reply(NOW + 1, slot, &fulfill(2));
    assert_eq!(posted(&e, dave), 1000);
    assert!(e.peer_config_reply(dave).is_some());
    // The old peers and their routes are as the new config says.
    let mut packet = prepare(5);
    assert_eq!(forwarded(&mut e, ALICE, &mut packet).0, BOB);
}

#[test]
fn a_peer_added_on_a_core_that_is_not_its_home_asks_for_a_lease() {
    let mut two = config(64);
    two.cores = 2;
    let mut e = Engine::new(two.clone(), NOW);
    while e.poll_lease().is_some() {}
    // Slot 5 lives on core 1: this core's shard starts empty and asks core 1 for headroom.
    let mut dave = peer("USD", 9, 1000);
    dave.home = CoreId(1);
    two.peers.push(dave);
    e.reconfigure(two);
    let ask = e.poll_lease().expect("a lease request for the new peer");
    assert_eq!(ask.peer, PeerId(5));
    assert_eq!(ask.to, CoreId(1));
}

#[test]
fn a_route_table_swapped_between_a_prepare_and_its_fulfill_changes_only_new_prepares() {
    let mut e = engine();
    let mut packet = prepare(50);
    let (to, slot, _) = forwarded(&mut e, ALICE, &mut packet);
    assert_eq!(to, BOB);
    // The control plane learned that g.bob is now reached through EURO... and swaps the table
    // while the Prepare is in flight.
    let table = RouteTable::build(b"g.router", [(&b"g.bob"[..], EURO)], None).unwrap();
    e.set_routes(Arc::new(table));
    assert_eq!(
        e.handle_reply(NOW + 1, slot, &fulfill(1)),
        Reply::Fulfill {
            tag: 7,
            to: ALICE,
            len: fulfill(1).len()
        }
    );
    assert_eq!(posted(&e, ALICE), 50);
    let mut packet = prepare_to(b"g.bob.x", 50, NOW + 10_000, condition(2));
    assert_eq!(forwarded(&mut e, ALICE, &mut packet).0, EURO);
}
