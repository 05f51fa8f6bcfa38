//! Unit tests of routes that lead to a group: selection on the packet path, link state,
//! in-flight caps, reroutes of Prepares that were never written, and passive health.

use super::backends::{GroupConfig, HealthChange, OutlierConfig};
use super::group::{Backend, Policy};
use super::*;
use crate::wire::{ErrorCode, FulfillRepr, PrepareRepr, RejectRepr};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_900_000_000_000;
const ALICE: PeerId = PeerId(0);
/// `cluster`: hash over b1..b4 (peers 1..=4).
const CLUSTER: [PeerId; 4] = [PeerId(1), PeerId(2), PeerId(3), PeerId(4)];
/// `spread`: least in flight over b5, b6 (peers 5, 6), two in flight each at most.
const SPREAD: [PeerId; 2] = [PeerId(5), PeerId(6)];
const DIRECT: PeerId = PeerId(7);

fn peer() -> PeerConfig {
    PeerConfig {
        asset_code: "USD".into(),
        asset_scale: 9,
        max_packet_amount: 1_000_000,
        max_balance: 1_000_000_000,
        home: CoreId(0),
        lease_chunk: 0,
        posted: 0,
        shared_limit: false,
        packets_per_second: 0,
        amount_per_second: 0,
        ildcp_segment: None,
    }
}

fn group(name: &str, peers: &[PeerId], policy: Policy, cap: u32) -> GroupConfig {
    GroupConfig {
        name: name.into(),
        backends: peers
            .iter()
            .map(|&peer| Backend {
                peer,
                name: format!("b{}", peer.0),
                weight: 1,
            })
            .collect(),
        policy,
        outlier: OutlierConfig::default(),
        backend_in_flight_max: cap,
    }
}

fn engine_with(cluster_cap: u32) -> Engine {
    let routes = [
        (&b"g.cluster"[..], Hop::Group(GroupId(0))),
        (b"g.spread", Hop::Group(GroupId(1))),
        (b"g.direct", Hop::Peer(DIRECT)),
    ];
    let config = EngineConfig {
        address: b"g.router".to_vec(),
        peers: vec![peer(); 8],
        routes: RouteTable::build(b"g.router", routes, None).unwrap(),
        groups: vec![
            group(
                "cluster",
                &CLUSTER,
                Policy::Hash { hash_segments: 1 },
                cluster_cap,
            ),
            group("spread", &SPREAD, Policy::LeastInFlight, 2),
        ],
        prices: Vec::new(),
        spread: Decimal::ZERO,
        min_message_window_ms: 1000,
        max_hold_time_ms: 30_000,
        pending_max: 4096,
        pending_per_peer_max: 4096,
        tick_ms: 5,
        core: CoreId(0),
        cores: 1,
    };
    let mut engine = Engine::new(config, NOW);
    for p in 0..8 {
        engine.set_link_up(PeerId(p), true);
    }
    engine
}

fn engine() -> Engine {
    engine_with(0)
}

const FULFILLMENT: [u8; 32] = [9; 32];

fn prepare_to(destination: &str, amount: u64) -> Vec<u8> {
    let condition: [u8; 32] = Sha256::digest(FULFILLMENT).into();
    let repr = PrepareRepr {
        amount,
        expires_at: NOW + 10_000,
        execution_condition: &condition,
        destination: Address::new_checked(destination.as_bytes()).unwrap(),
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn reject(code: &[u8; 3]) -> Vec<u8> {
    let repr = RejectRepr {
        code: ErrorCode(*code),
        triggered_by: None,
        message: b"",
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn fulfill() -> Vec<u8> {
    let repr = FulfillRepr {
        fulfillment: &FULFILLMENT,
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn send(
    engine: &mut Engine,
    now: i64,
    destination: &str,
) -> Result<(PeerId, SlotId), RejectReason> {
    let mut packet = prepare_to(destination, 10);
    match engine.handle_prepare(now, ALICE, 1, &mut packet) {
        Decision::Forward { to, slot, .. } => Ok((to, slot)),
        Decision::Reject(reason) => Err(reason),
        Decision::Wait { .. } | Decision::PeerConfig | Decision::RouteControl { .. } => {
            panic!("no waits with one core")
        }
    }
}

fn position(peers: &[PeerId], peer: PeerId) -> usize {
    peers.iter().position(|&p| p == peer).expect("a backend")
}

#[test]
fn prepares_spread_over_the_backends_and_each_receiver_sticks_to_one() {
    let mut engine = engine();
    let mut counts = [0usize; 4];
    for i in 0..1000 {
        let (to, slot) = send(&mut engine, NOW, &format!("g.cluster.r{i}")).unwrap();
        counts[position(&CLUSTER, to)] += 1;
        engine.handle_reply(NOW, slot, &reject(b"F99"));
        // hash_segments = 1: everything under one receiver goes to the same backend.
        let (again, slot) = send(&mut engine, NOW, &format!("g.cluster.r{i}.conn.7")).unwrap();
        assert_eq!(again, to);
        engine.handle_reply(NOW, slot, &reject(b"F99"));
    }
    assert!(counts.iter().all(|c| (225..=275).contains(c)), "{counts:?}");
    assert_eq!(engine.backends().in_flight(CLUSTER[0]), 0);
}

#[test]
fn a_backend_down_gets_nothing_and_every_backend_down_is_t01_at_once() {
    let mut engine = engine();
    engine.set_link_up(CLUSTER[1], false);
    for i in 0..200 {
        let (to, slot) = send(&mut engine, NOW, &format!("g.cluster.r{i}")).unwrap();
        assert_ne!(to, CLUSTER[1]);
        engine.handle_reply(NOW, slot, &reject(b"F99"));
    }
    for &b in &CLUSTER {
        engine.set_link_up(b, false);
    }
    assert_eq!(
        send(&mut engine, NOW, "g.cluster.r1"),
        Err(RejectReason::PeerUnreachable)
    );
    engine.set_link_up(CLUSTER[2], true);
    assert_eq!(
        send(&mut engine, NOW, "g.cluster.r1").map(|(to, _)| to),
        Ok(CLUSTER[2])
    );
}

#[test]
fn least_in_flight_spreads_and_a_full_group_is_t03() {
    let mut engine = engine();
    let mut slots = Vec::new();
    for _ in 0..4 {
        slots.push(send(&mut engine, NOW, "g.spread.x").unwrap());
    }
    let on = |peer| slots.iter().filter(|(to, _)| *to == peer).count();
    assert_eq!((on(SPREAD[0]), on(SPREAD[1])), (2, 2));
    // Both at their cap of two.
    assert_eq!(
        send(&mut engine, NOW, "g.spread.x"),
        Err(RejectReason::ConnectorBusy)
    );
    engine.handle_reply(NOW, slots[0].1, &fulfill());
    assert_eq!(
        send(&mut engine, NOW, "g.spread.x").map(|(to, _)| to),
        Ok(slots[0].0)
    );
}

#[test]
fn a_backend_at_its_cap_fails_over_to_the_receivers_second_choice() {
    let mut engine = engine_with(1);
    let (first, _) = send(&mut engine, NOW, "g.cluster.r1").unwrap();
    let (second, _) = send(&mut engine, NOW, "g.cluster.r1.b").unwrap();
    assert_ne!(first, second);
    assert_eq!(engine.backends().counters().failovers, 1);
}

#[test]
fn a_prepare_never_written_moves_to_another_backend_and_its_fulfill_posts_there() {
    let mut engine = engine();
    let mut packet = prepare_to("g.cluster.r5", 10);
    let Decision::Forward { to, slot, len, .. } = engine.handle_prepare(NOW, ALICE, 1, &mut packet)
    else {
        panic!("forwarded")
    };
    let next = engine
        .reroute(slot, &packet[..len])
        .expect("another backend");
    assert_ne!(next, to);
    assert_eq!(engine.pending().get(slot).unwrap().to, next);
    assert_eq!(engine.backends().in_flight(to), 0);
    assert_eq!(engine.backends().in_flight(next), 1);
    assert!(matches!(
        engine.handle_reply(NOW, slot, &fulfill()),
        Reply::Fulfill { .. }
    ));
    assert_eq!(engine.ledger().account(next).posted(), -10);
    assert_eq!(engine.ledger().account(to).posted(), 0);
    assert_eq!(engine.ledger().account(ALICE).posted(), 10);
    assert_eq!(engine.backends().counters().rerouted, 1);

    // A direct route has nowhere else to go; a move is bounded.
    let mut packet = prepare_to("g.direct.x", 10);
    let Decision::Forward { slot, len, .. } = engine.handle_prepare(NOW, ALICE, 1, &mut packet)
    else {
        panic!("forwarded")
    };
    assert_eq!(engine.reroute(slot, &packet[..len]), None);
    let mut packet = prepare_to("g.cluster.r6", 10);
    let Decision::Forward { slot, len, .. } = engine.handle_prepare(NOW, ALICE, 1, &mut packet)
    else {
        panic!("forwarded")
    };
    let moves = (0..10)
        .take_while(|_| engine.reroute(slot, &packet[..len]).is_some())
        .count();
    assert_eq!(moves, 3);
}

/// Sends Prepares to receivers until `n` went to `backend` (or it is ejected), answering
/// those with `code` and the others with F99.
fn answer_backend(engine: &mut Engine, now: i64, backend: PeerId, n: usize, code: &[u8; 3]) {
    let mut done = 0;
    for i in 0.. {
        if done == n || engine.backends().is_ejected(backend) {
            break;
        }
        match send(engine, now, &format!("g.cluster.r{i}")) {
            Ok((to, slot)) if to == backend => {
                engine.handle_reply(now, slot, &reject(code));
                done += 1;
            }
            Ok((_, slot)) => {
                engine.handle_reply(now, slot, &reject(b"F99"));
            }
            Err(reason) => panic!("{reason:?}"),
        }
        assert!(i < 100_000, "{backend:?} never chosen");
    }
}

#[test]
fn a_mostly_failing_backend_is_ejected_with_a_growing_back_off() {
    let mut engine = engine();
    let b = CLUSTER[2];
    // Ten of the last twenty failed: not more than half, so it stays.
    answer_backend(&mut engine, NOW, b, 10, b"F99");
    answer_backend(&mut engine, NOW, b, 10, b"T01");
    assert!(!engine.backends().is_ejected(b));
    answer_backend(&mut engine, NOW, b, 1, b"R00");
    assert!(engine.backends().is_ejected(b));
    let event = engine.poll_health_event().expect("an event");
    assert_eq!(event.peer, b);
    assert_eq!(
        event.change,
        HealthChange::Ejected {
            ms: 5_000,
            failed: 11,
            of: 20
        }
    );
    for i in 0..300 {
        let (to, slot) = send(&mut engine, NOW, &format!("g.cluster.r{i}")).unwrap();
        assert_ne!(to, b, "never an ejected backend");
        engine.handle_reply(NOW, slot, &fulfill());
    }
    engine.handle_timeout(NOW + 4_999);
    assert!(engine.backends().is_ejected(b));
    engine.handle_timeout(NOW + 5_000);
    assert!(!engine.backends().is_ejected(b));
    assert_eq!(
        engine.poll_health_event().unwrap().change,
        HealthChange::Returned
    );
    // Failing again at once: twice as long.
    let now = NOW + 5_000;
    answer_backend(&mut engine, now, b, 20, b"T00");
    assert_eq!(
        engine.poll_health_event().unwrap().change,
        HealthChange::Ejected {
            ms: 10_000,
            failed: 20,
            of: 20
        }
    );
    engine.handle_timeout(now + 9_999);
    assert!(engine.backends().is_ejected(b));
    engine.handle_timeout(now + 10_000);
    assert!(!engine.backends().is_ejected(b));
    let counters = engine.backends().counters();
    assert_eq!((counters.ejections, counters.returns), (2, 2));
}

#[test]
fn no_more_than_max_ejection_percent_of_a_group_is_ejected() {
    let mut engine = engine();
    for &b in &CLUSTER {
        answer_backend(&mut engine, NOW, b, 20, b"T01");
    }
    let ejected = CLUSTER
        .iter()
        .filter(|&&b| engine.backends().is_ejected(b))
        .count();
    // 50 % of four.
    assert_eq!(ejected, 2);
    assert_eq!(engine.backends().counters().ejections_refused, 2);
}

#[test]
fn expiries_and_link_failures_count_against_a_backend() {
    let mut engine = engine();
    let b = CLUSTER[0];
    let mut slots = Vec::new();
    for i in 0.. {
        let (to, slot) = send(&mut engine, NOW, &format!("g.cluster.r{i}")).unwrap();
        if to == b {
            slots.push(slot);
            if slots.len() == 21 {
                break;
            }
        } else {
            engine.handle_reply(NOW, slot, &fulfill());
        }
    }
    for &slot in &slots[..10] {
        engine.handle_failure(slot, RejectReason::PeerUnreachable);
    }
    assert!(!engine.backends().is_ejected(b));
    engine.handle_timeout(NOW + 20_000);
    while engine.poll_expired().is_some() {}
    assert!(engine.backends().is_ejected(b));
    assert_eq!(engine.backends().in_flight(b), 0);
}
