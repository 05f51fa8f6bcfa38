//! Codec benchmarks: parse+validate, emit and in-place rewrite of a typical Prepare
//! (destination 20 bytes, data 64 bytes), a Fulfill and a Reject; and the same operations with
//! interledger-rs's `interledger-packet` 0.4 in the same run, so the ratio is side by side.
//!
//! interledger-packet parses from an owned `BytesMut`; building that buffer (a copy) happens in
//! criterion's untimed setup, so only its parse is measured.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ilp_router::wire::{
    Address, ErrorCode, Fulfill, FulfillRepr, Prepare, PrepareRepr, Reject, RejectRepr,
};
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes04::BytesMut;
use interledger_packet as rs;

const DESTINATION: &[u8] = b"g.us.bank.alice.1234";
const DATA: [u8; 64] = [0x5d; 64];
const CONDITION: [u8; 32] = [0x74; 32];
const FULFILLMENT: [u8; 32] = [0xc3; 32];
const EXPIRES_AT_MS: i64 = 1_893_456_000_123; // 2030-01-01T00:00:00.123Z
const TRIGGERED_BY: &[u8] = b"g.us.connector";
const MESSAGE: &[u8] = b"no route found";

fn prepare_repr() -> PrepareRepr<'static> {
    PrepareRepr {
        amount: 1_000_000,
        expires_at: EXPIRES_AT_MS,
        execution_condition: &CONDITION,
        destination: Address::new_checked(DESTINATION).unwrap(),
        data: &DATA,
    }
}

fn fulfill_repr() -> FulfillRepr<'static> {
    FulfillRepr {
        fulfillment: &FULFILLMENT,
        data: &DATA,
    }
}

fn reject_repr() -> RejectRepr<'static> {
    RejectRepr {
        code: ErrorCode::F02_UNREACHABLE,
        triggered_by: Some(Address::new_checked(TRIGGERED_BY).unwrap()),
        message: MESSAGE,
        data: &[],
    }
}

fn emitted(len: usize, emit: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    emit(&mut out);
    out
}

fn expires_at_system_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(EXPIRES_AT_MS as u64)
}

fn prepare(c: &mut Criterion) {
    let repr = prepare_repr();
    let bytes = emitted(repr.buffer_len(), |b| repr.emit(b));
    let rs_destination = rs::Address::try_from(DESTINATION).unwrap();
    // The two encoders agree byte for byte.
    let rs_bytes = BytesMut::from(
        rs::PrepareBuilder {
            amount: 1_000_000,
            expires_at: expires_at_system_time(),
            execution_condition: &CONDITION,
            destination: rs_destination.clone(),
            data: &DATA,
        }
        .build(),
    );
    assert_eq!(&rs_bytes[..], &bytes[..]);

    let mut group = c.benchmark_group("prepare");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse/ilp-router", |b| {
        b.iter(|| {
            let p = Prepare::new_checked(black_box(&bytes[..])).unwrap();
            black_box((p.amount(), p.expires_at(), p.destination().as_bytes().len()))
        })
    });
    group.bench_function("parse/interledger-packet", |b| {
        b.iter_batched(
            || BytesMut::from(&bytes[..]),
            |buf| {
                let p = rs::Prepare::try_from(buf).unwrap();
                black_box((p.amount(), p.expires_at(), p.destination().len()));
                p
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("emit/ilp-router", |b| {
        let mut out = [0u8; 256];
        b.iter(|| black_box(black_box(&repr).emit(&mut out)))
    });
    group.bench_function("emit/interledger-packet", |b| {
        b.iter(|| {
            rs::PrepareBuilder {
                amount: 1_000_000,
                expires_at: expires_at_system_time(),
                execution_condition: &CONDITION,
                destination: rs_destination.clone(),
                data: &DATA,
            }
            .build()
        })
    });
    group.bench_function("rewrite/ilp-router", |b| {
        let mut buf = bytes.clone();
        let mut p = Prepare::new_checked(&mut buf[..]).unwrap();
        let mut expires_at = EXPIRES_AT_MS;
        b.iter(|| {
            expires_at -= 1;
            p.set_amount(black_box(999_000));
            p.set_expires_at(black_box(expires_at));
        })
    });
    group.bench_function("rewrite/interledger-packet", |b| {
        let mut p = rs::Prepare::try_from(BytesMut::from(&bytes[..])).unwrap();
        let mut expires_at = expires_at_system_time();
        b.iter(|| {
            expires_at -= Duration::from_millis(1);
            p.set_amount(black_box(999_000));
            p.set_expires_at(black_box(expires_at));
        })
    });
    group.finish();
}

fn fulfill(c: &mut Criterion) {
    let repr = fulfill_repr();
    let bytes = emitted(repr.buffer_len(), |b| repr.emit(b));
    let mut group = c.benchmark_group("fulfill");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse/ilp-router", |b| {
        b.iter(|| {
            let f = Fulfill::new_checked(black_box(&bytes[..])).unwrap();
            black_box((f.fulfillment()[0], f.data().len()))
        })
    });
    group.bench_function("parse/interledger-packet", |b| {
        b.iter_batched(
            || BytesMut::from(&bytes[..]),
            |buf| {
                let f = rs::Fulfill::try_from(buf).unwrap();
                black_box((f.fulfillment()[0], f.data().len()));
                f
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("emit/ilp-router", |b| {
        let mut out = [0u8; 128];
        b.iter(|| black_box(black_box(&repr).emit(&mut out)))
    });
    group.bench_function("emit/interledger-packet", |b| {
        b.iter(|| {
            rs::FulfillBuilder {
                fulfillment: &FULFILLMENT,
                data: &DATA,
            }
            .build()
        })
    });
    group.finish();
}

fn reject(c: &mut Criterion) {
    let repr = reject_repr();
    let bytes = emitted(repr.buffer_len(), |b| repr.emit(b));
    let rs_triggered_by = rs::Address::try_from(TRIGGERED_BY).unwrap();
    let mut group = c.benchmark_group("reject");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse/ilp-router", |b| {
        b.iter(|| {
            let r = Reject::new_checked(black_box(&bytes[..])).unwrap();
            black_box((
                r.code(),
                r.triggered_by().map(|a| a.as_bytes().len()),
                r.message().len(),
            ))
        })
    });
    group.bench_function("parse/interledger-packet", |b| {
        b.iter_batched(
            || BytesMut::from(&bytes[..]),
            |buf| {
                let r = rs::Reject::try_from(buf).unwrap();
                black_box((
                    r.code(),
                    r.triggered_by().map(|a| a.len()),
                    r.message().len(),
                ));
                r
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("emit/ilp-router", |b| {
        let mut out = [0u8; 128];
        b.iter(|| black_box(black_box(&repr).emit(&mut out)))
    });
    group.bench_function("emit/interledger-packet", |b| {
        b.iter(|| {
            rs::RejectBuilder {
                code: rs::ErrorCode::F02_UNREACHABLE,
                message: MESSAGE,
                triggered_by: Some(&rs_triggered_by),
                data: &[],
            }
            .build()
        })
    });
    group.finish();
}

criterion_group!(benches, prepare, fulfill, reject);
criterion_main!(benches);
