//! The engine without I/O: a Prepare→Fulfill round trip (parse, route, convert, hold, rewrite
//! in place, then SHA-256 of the fulfillment, post on both sides) and a Prepare→Reject round
//! trip (relay and void), on one core, in packets per second. `same_asset_mmap_ledger` is the
//! first with the balances posted into memory-mapped ledger rows (`ilp_router::state`) instead
//! of plain memory: what durable balances cost on the packet path. `group_4`/`group_64`: the
//! same round trip through a route to a group of 4 or 64 backends (hash policy), against
//! `same_asset`'s single peer: what choosing a backend costs.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ilp_router::engine::group::{Backend, Policy};
use ilp_router::engine::rate::Decimal;
use ilp_router::engine::route::{Hop, RouteTable};
use ilp_router::engine::{
    CoreId, Decision, Engine, EngineConfig, GroupConfig, GroupId, OutlierConfig, PeerConfig,
    PeerId, PostedStore, Reply,
};
use ilp_router::wire::{Address, ErrorCode, FulfillRepr, PrepareRepr, RejectRepr};
use sha2::{Digest, Sha256};
use std::hint::black_box;

const NOW: i64 = 1_900_000_000_000;

fn engine(peers: usize, routes: usize) -> Engine {
    engine_with(peers, routes, None)
}

fn engine_with(peers: usize, routes: usize, store: Option<Box<dyn PostedStore>>) -> Engine {
    engine_full(peers, routes, store, 0)
}

/// `peers` peers, `routes` extra routes, and with `backends` > 0 a route `g.cluster` to a
/// group of that many peers (the last ones).
fn engine_full(
    peers: usize,
    routes: usize,
    store: Option<Box<dyn PostedStore>>,
    backends: usize,
) -> Engine {
    let peer = |code: &str| PeerConfig {
        asset_code: code.into(),
        asset_scale: 9,
        max_packet_amount: u64::MAX,
        max_balance: u64::MAX,
        home: CoreId(0),
        lease_chunk: 0,
        posted: 0,
        shared_limit: false,
        packets_per_second: 0,
        amount_per_second: 0,
        ildcp_segment: None,
    };
    let mut table: Vec<(String, Hop)> = vec![
        ("g.alice".into(), PeerId(0).into()),
        ("g.bob".into(), PeerId(1).into()),
    ];
    table.push(("g.euro".into(), PeerId(2).into()));
    for i in 0..routes {
        table.push((
            format!("g.other{i}.sub"),
            PeerId((3 + i % (peers - 3)) as u16).into(),
        ));
    }
    let mut groups = Vec::new();
    if backends > 0 {
        table.push(("g.cluster".into(), GroupId(0).into()));
        groups.push(GroupConfig {
            name: "cluster".into(),
            backends: (peers - backends..peers)
                .map(|p| Backend {
                    peer: PeerId(p as u16),
                    name: format!("b{p}"),
                    weight: 1,
                })
                .collect(),
            policy: Policy::Hash { hash_segments: 0 },
            outlier: OutlierConfig::default(),
            backend_in_flight_max: 0,
        });
    }
    let mut list = vec![peer("USD"), peer("USD"), peer("EUR")];
    list.extend((3..peers).map(|_| peer("USD")));
    let config = EngineConfig {
        address: b"g.router".to_vec(),
        peers: list,
        routes: RouteTable::build(b"g.router", table, None).unwrap(),
        groups,
        prices: vec![
            ("USD".into(), Decimal::ONE),
            ("EUR".into(), Decimal::parse("1.08").unwrap()),
        ],
        spread: Decimal::ZERO,
        min_message_window_ms: 1000,
        max_hold_time_ms: 30_000,
        pending_max: 4096,
        pending_per_peer_max: 4096,
        tick_ms: 5,
        core: CoreId(0),
        cores: 1,
    };
    let mut engine = match store {
        Some(store) => Engine::with_store(config, NOW, store),
        None => Engine::new(config, NOW),
    };
    for p in 0..peers {
        engine.set_link_up(PeerId(p as u16), true);
    }
    engine
}

struct Packets {
    prepare: Vec<u8>,
    fulfill: Vec<u8>,
    reject: Vec<u8>,
}

fn packets(destination: &[u8]) -> Packets {
    let fulfillment = [7u8; 32];
    let condition: [u8; 32] = Sha256::digest(fulfillment).into();
    let data = [0x5d; 64];
    let repr = PrepareRepr {
        amount: 1_000_000,
        expires_at: NOW + 20_000,
        execution_condition: &condition,
        destination: Address::new_checked(destination).unwrap(),
        data: &data,
    };
    let mut prepare = vec![0u8; repr.buffer_len()];
    repr.emit(&mut prepare);
    let f = FulfillRepr {
        fulfillment: &fulfillment,
        data: &data,
    };
    let mut fulfill = vec![0u8; f.buffer_len()];
    f.emit(&mut fulfill);
    let r = RejectRepr {
        code: ErrorCode::F99_APPLICATION_ERROR,
        triggered_by: Some(Address::new_checked(b"g.bob").unwrap()),
        message: b"no",
        data: &[],
    };
    let mut reject = vec![0u8; r.buffer_len()];
    r.emit(&mut reject);
    Packets {
        prepare,
        fulfill,
        reject,
    }
}

#[inline(never)]
fn round_trip(engine: &mut Engine, buf: &mut [u8], p: &Packets, reply: &[u8], i: u64) -> bool {
    buf.copy_from_slice(&p.prepare);
    match engine.handle_prepare(NOW, PeerId(0), u128::from(i), buf) {
        Decision::Forward { slot, .. } => {
            matches!(
                engine.handle_reply(NOW + 1, slot, reply),
                Reply::Fulfill { .. } | Reply::Relay { .. }
            )
        }
        Decision::Reject(_)
        | Decision::Wait { .. }
        | Decision::PeerConfig
        | Decision::RouteControl { .. } => false,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    for (name, destination) in [
        ("same_asset", &b"g.bob.wallet.12345"[..]),
        ("usd_to_eur", b"g.euro.wallet.1234"),
    ] {
        let p = packets(destination);
        let mut e = engine(16, 10);
        let mut buf = p.prepare.clone();
        let mut i = 0u64;
        group.bench_function(format!("prepare_fulfill/{name}"), |b| {
            b.iter(|| {
                i += 1;
                assert!(round_trip(&mut e, &mut buf, &p, black_box(&p.fulfill), i));
            })
        });
    }
    for backends in [4, 64] {
        let p = packets(b"g.cluster.wallet.12345");
        let mut e = engine_full(3 + backends, 10, None, backends);
        let mut buf = p.prepare.clone();
        let mut i = 0u64;
        group.bench_function(format!("prepare_fulfill/group_{backends}"), |b| {
            b.iter(|| {
                i += 1;
                assert!(round_trip(&mut e, &mut buf, &p, black_box(&p.fulfill), i));
            })
        });
    }
    let p = packets(b"g.bob.wallet.12345");
    let dir = std::env::temp_dir().join(format!("ilp-bench-ledger-{}", std::process::id()));
    let names: Vec<String> = (0..16).map(|i| format!("peer{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut recovered = ilp_router::state::recover(&dir, &names, 1, names.len()).unwrap();
    let mut e = engine_with(16, 10, Some(Box::new(recovered.files.remove(0))));
    let mut buf = p.prepare.clone();
    let mut i = 0u64;
    group.bench_function("prepare_fulfill/same_asset_mmap_ledger", |b| {
        b.iter(|| {
            i += 1;
            assert!(round_trip(&mut e, &mut buf, &p, black_box(&p.fulfill), i));
        })
    });
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
    let mut e = engine(16, 10);
    let mut buf = p.prepare.clone();
    group.bench_function("prepare_reject/same_asset", |b| {
        b.iter(|| {
            i += 1;
            assert!(round_trip(&mut e, &mut buf, &p, black_box(&p.reject), i));
        })
    });
    let mut e = engine(64, 100_000);
    group.bench_function("prepare_fulfill/same_asset_100k_routes", |b| {
        b.iter(|| {
            i += 1;
            assert!(round_trip(&mut e, &mut buf, &p, black_box(&p.fulfill), i));
        })
    });
    group.bench_function("sha256_32_bytes", |b| {
        let fulfillment = [7u8; 32];
        b.iter(|| black_box(Sha256::digest(black_box(fulfillment))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
