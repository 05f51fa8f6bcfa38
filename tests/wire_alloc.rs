//! The codec never allocates: parsing (valid or not, arbitrary bytes included), reading every
//! field, iterating protocolData and rewriting in place, under a counting allocator.

mod common {
    pub(crate) mod alloc;
}

use common::alloc::{allocations_during, CountingAllocator};
use ilp_router::decode::parse_hex;
use ilp_router::wire::{Btp, Packet};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn vectors(file: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| parse_hex(v["hex"].as_str().unwrap()).unwrap())
        .collect()
}

/// Reads every field of an ILP packet, so that nothing is left lazily unparsed.
fn touch_ilp(bytes: &[u8]) -> usize {
    match Packet::new_checked(bytes) {
        Ok(Packet::Prepare(p)) => {
            (p.amount() ^ p.expires_at() as u64) as usize % 1024
                + usize::from(p.execution_condition()[0])
                + p.destination().segments().count()
                + p.data().len()
        }
        Ok(Packet::Fulfill(f)) => usize::from(f.fulfillment()[0]) + f.data().len(),
        Ok(Packet::Reject(r)) => {
            usize::from(r.code().0[0])
                + r.triggered_by().map_or(0, |a| a.as_bytes().len())
                + r.message().len()
                + r.data().len()
        }
        Err(e) => e.as_str().len(),
    }
}

fn touch_btp(bytes: &[u8]) -> usize {
    match Btp::new_checked(bytes) {
        Ok(b) => {
            let mut n = b.request_id() as usize % 1024;
            for entry in b.protocol_data() {
                n += entry.name.len() + entry.data.len() + usize::from(entry.content_type.0);
            }
            n + b.ilp().map_or(0, touch_ilp)
        }
        Err(e) => e.as_str().len(),
    }
}

#[test]
fn parsing_and_rewriting_never_allocate() {
    let ilp = vectors("ilp-packets.json");
    let btp = vectors("btp-packets.json");
    // Arbitrary bytes from a fixed xorshift stream, made before counting starts.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<Vec<u8>> = (0..2000)
        .map(|i| {
            (0..(i % 97))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        })
        .collect();
    let mut scratch: Vec<Vec<u8>> = ilp.clone();

    let (sum, allocations) = allocations_during(|| {
        let mut sum = 0usize;
        for bytes in &ilp {
            sum = sum.wrapping_add(touch_ilp(black_box(bytes)));
        }
        for bytes in &btp {
            sum = sum.wrapping_add(touch_btp(black_box(bytes)));
        }
        for bytes in &noise {
            sum = sum.wrapping_add(touch_ilp(bytes) + touch_btp(bytes));
        }
        for bytes in &mut scratch {
            if let Ok(Packet::Prepare(mut p)) = Packet::new_checked(&mut bytes[..]) {
                p.set_amount(p.amount().wrapping_add(1));
                p.set_expires_at(p.expires_at() - 1000);
                sum += p.amount() as usize % 1024;
            }
        }
        sum
    });
    black_box(sum);
    assert_eq!(allocations, 0, "the codec allocated {allocations} times");
}

#[test]
fn the_counter_sees_allocations() {
    let (_, allocations) = allocations_during(|| black_box(vec![1u8; 64]));
    assert!(allocations >= 1, "the counting allocator must notice a Vec");
}
