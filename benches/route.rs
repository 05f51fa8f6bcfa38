//! Route lookup cost against table size: the same mix of destinations against tables of 10,
//! 10 000 and 100 000 static routes. Flat numbers across sizes are the point.
//!
//! Table of `n` routes: for each of `n / 2` peers, `g.peer{p}` and `g.peer{p}.sub{p % 100}`.
//! Destinations (3 to 5 segments, about 20 to 40 bytes), a quarter each:
//! - deep hit: under `g.peer{p}.sub{p % 100}` (the longer key wins),
//! - shallow hit: under `g.peer{p}.sub{other}` (falls back to `g.peer{p}`),
//! - exact hit: `g.peer{p}.sub{p % 100}` itself,
//! - miss: `g.peer{n + k}.…`, no key matches, the default route (own scheme `g`) answers.
//!
//! `miss` runs misses only: the most probes per lookup.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ilp_router::engine::route::RouteTable;
use ilp_router::engine::PeerId;
use ilp_router::wire::check_address;

const SIZES: [usize; 3] = [10, 10_000, 100_000];
/// Destinations per set; a power of two so the index wraps with a mask.
const DESTINATIONS: usize = 1024;

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn build_table(n: usize) -> RouteTable {
    let peers = n / 2;
    let routes = (0..peers).flat_map(|p| {
        [
            (format!("g.peer{p}"), PeerId((2 * p) as u16)),
            (
                format!("g.peer{p}.sub{}", p % 100),
                PeerId((2 * p + 1) as u16),
            ),
        ]
    });
    let table = RouteTable::build(b"g.router", routes, Some(PeerId(u16::MAX))).unwrap();
    assert_eq!(table.len(), n);
    table
}

fn destinations(n: usize, misses_only: bool, seed: u64) -> Vec<Vec<u8>> {
    let peers = n / 2;
    let mut rng = XorShift(seed);
    let tails = ["alice7", "bob", "wallet.carol42", "acct1.x9"];
    (0..DESTINATIONS)
        .map(|_| {
            let p = rng.below(peers);
            let tail = tails[rng.below(tails.len())];
            let kind = if misses_only { 3 } else { rng.below(4) };
            let d = match kind {
                0 => format!("g.peer{p}.sub{}.{tail}", p % 100),
                1 => format!("g.peer{p}.sub{}.{tail}", p % 100 + 100),
                2 => format!("g.peer{p}.sub{}", p % 100),
                _ => format!("g.peer{}.sub{}.{tail}", peers + p, p % 100),
            };
            assert_eq!(check_address(d.as_bytes()), Ok(()), "{d}");
            d.into_bytes()
        })
        .collect()
}

fn route_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let table = build_table(n);
        for (name, misses_only) in [("mixed", false), ("miss", true)] {
            let dests = destinations(n, misses_only, 0x2545_f491_4f6c_dd1d);
            // Sanity: every destination resolves (hits to a peer, misses to the default).
            assert!(dests.iter().all(|d| table.lookup(d).is_some()));
            group.bench_with_input(BenchmarkId::new(name, n), &dests, |b, dests| {
                let mut i = 0usize;
                b.iter(|| {
                    let d = &dests[i & (DESTINATIONS - 1)];
                    i = i.wrapping_add(1);
                    table.lookup(black_box(d))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, route_lookup);
criterion_main!(benches);
