//! A warmed engine forwards 100 000 Prepare→Fulfill round trips (and Rejects, and expiries)
//! without a single heap allocation.

mod common {
    pub(crate) mod alloc;
}

use common::alloc::{allocations_during, CountingAllocator};
use ilp_router::engine::rate::Decimal;
use ilp_router::engine::route::RouteTable;
use ilp_router::engine::{
    CoreId, Decision, Engine, EngineConfig, PeerConfig, PeerId, Reply, REJECT_LEN_MAX,
};
use ilp_router::wire::{Address, FulfillRepr, PrepareRepr};
use sha2::{Digest, Sha256};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const NOW: i64 = 1_900_000_000_000;

/// The config of core `core` of two; alice's home is core 1, bob's core 0.
fn config(core: u16) -> EngineConfig {
    let peer = |code: &str, home: u16| PeerConfig {
        asset_code: code.into(),
        asset_scale: 9,
        max_packet_amount: u64::MAX,
        max_balance: u64::MAX,
        home: CoreId(home),
        lease_chunk: 0,
        posted: 0,
        shared_limit: false,
        packets_per_second: 0,
        amount_per_second: 0,
        ildcp_segment: None,
    };
    let routes = [(&b"g.alice"[..], PeerId(0)), (b"g.bob", PeerId(1))];
    EngineConfig {
        address: b"g.router".to_vec(),
        peers: vec![peer("USD", 1), peer("EUR", 0)],
        routes: RouteTable::build(b"g.router", routes, None).unwrap(),
        groups: Vec::new(),
        prices: vec![
            ("USD".into(), Decimal::ONE),
            ("EUR".into(), Decimal::parse("1.08").unwrap()),
        ],
        spread: Decimal::parse("0.002").unwrap(),
        min_message_window_ms: 1000,
        max_hold_time_ms: 30_000,
        pending_max: 1024,
        pending_per_peer_max: 1024,
        tick_ms: 5,
        core: CoreId(core),
        cores: 2,
    }
}

#[test]
fn forwarding_path_never_allocates() {
    // Core 0 forwards; alice's home is core 1, so her holds run against a lease from it.
    let mut engine = Engine::new(config(0), NOW);
    engine.set_link_up(PeerId(1), true);
    let mut home = Engine::new(config(1), NOW);
    let request = engine.poll_lease().expect("a lease request for alice");
    home.handle_lease(request);
    engine.handle_lease(home.poll_lease().expect("a grant"));

    let fulfillment = [7u8; 32];
    let condition: [u8; 32] = Sha256::digest(fulfillment).into();
    let data = [0x5d; 64];
    let repr = PrepareRepr {
        amount: 1000,
        expires_at: NOW + 20_000,
        execution_condition: &condition,
        destination: Address::new_checked(b"g.bob.wallet.12345").unwrap(),
        data: &data,
    };
    let mut template = vec![0u8; repr.buffer_len()];
    repr.emit(&mut template);
    let mut fulfill = vec![0u8; 128];
    let fulfill_len = FulfillRepr {
        fulfillment: &fulfillment,
        data: &data,
    }
    .emit(&mut fulfill);
    fulfill.truncate(fulfill_len);
    let mut wrong = fulfill.clone();
    wrong[2] ^= 1;
    let mut packet = template.clone();
    let mut reject = [0u8; REJECT_LEN_MAX];
    // The expiry part below uses its own buffers; the closure borrows the ones above.
    let mut unanswered = template.clone();
    let mut timed_out = [0u8; REJECT_LEN_MAX];

    let mut ready_packet: Vec<u8> = Vec::with_capacity(template.len());
    let mut round_trip = |engine: &mut Engine, i: u64, now: i64| {
        packet.copy_from_slice(&template);
        let mut answer = |engine: &mut Engine, slot| {
            let reply = if i % 10 == 9 { &wrong } else { &fulfill };
            match engine.handle_reply(now + 1, slot, reply) {
                Reply::Reject { reason, .. } => black_box(engine.emit_reject(reason, &mut reject)),
                other => black_box(matches!(other, Reply::Fulfill { .. }) as usize),
            };
        };
        let waited = match engine.handle_prepare(now, PeerId(0), u128::from(i), &mut packet) {
            Decision::Forward { slot, .. } => {
                answer(engine, slot);
                false
            }
            Decision::Reject(_) | Decision::PeerConfig | Decision::RouteControl { .. } => false,
            // Until the first grant arrives: the hold waits for it.
            Decision::Wait { .. } => true,
        };
        // Keep alice's lease topped up, as the runtime does between batches.
        while let Some(message) = engine.poll_lease() {
            home.handle_lease(message);
        }
        while let Some(message) = home.poll_lease() {
            engine.handle_lease(message);
        }
        while let Some(ready) = engine.poll_ready(&mut ready_packet) {
            assert!(waited, "only a Prepare that waited comes out of poll_ready");
            match ready.decision {
                Decision::Forward { slot, .. } => answer(engine, slot),
                other => panic!("the grant covers it: {other:?}"),
            }
        }
    };
    // Warm up: every path once.
    for i in 0..1000 {
        round_trip(&mut engine, i, NOW);
    }
    let (_, allocations) = allocations_during(|| {
        for i in 0..100_000u64 {
            round_trip(&mut engine, i, NOW + (i / 1000) as i64);
        }
        // Expiries too: forward and never answer, then let the wheel fire.
        for i in 0..500u64 {
            unanswered.copy_from_slice(&template);
            black_box(engine.handle_prepare(NOW + 200, PeerId(0), u128::from(i), &mut unanswered));
        }
        engine.handle_timeout(NOW + 60_000);
        while let Some(expired) = engine.poll_expired() {
            black_box(engine.emit_reject(expired.reason, &mut timed_out));
        }
    });
    assert_eq!(
        allocations, 0,
        "the forwarding path allocated {allocations} times"
    );
    assert!(
        engine.counters().fulfilled >= 89_000,
        "{:?}",
        engine.counters()
    );
    assert_eq!(engine.counters().expired, 500);
}
