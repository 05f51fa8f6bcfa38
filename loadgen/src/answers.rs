//! What the sender and the sink agree on without talking, whatever the transport (BTP in
//! `conn`, ILP over HTTP in `http`): the ring of fulfillments both derive from the run's seed,
//! the sink's answer to a Prepare, the sender's check of a reply, and the logs of valid
//! Fulfills (`--sender-log`, `--sink-log`).

use crate::plan::Plan;
use crate::sinks::SinkId;
use crate::stats::{SinkAnswer, Stats};
use ilp_router::wire::{FulfillRepr, Packet, Prepare, RejectRepr};
use std::cell::RefCell;
use std::io;

/// Fulfillments both roles derive from the run's seed: a Prepare's data starts with a
/// sequence number, and `seq % len` picks its fulfillment, so the sink needs no state shared
/// with the sender.
#[derive(Debug)]
pub(crate) struct Ring {
    pub(crate) fulfillments: Vec<[u8; 32]>,
    pub(crate) conditions: Vec<[u8; 32]>,
}

pub(crate) const RING_LEN: usize = 1 << 14;

impl Ring {
    pub(crate) fn new(seed: u64) -> Ring {
        use sha2::{Digest, Sha256};
        let fulfillments: Vec<[u8; 32]> = (0..RING_LEN as u64)
            .map(|i| {
                let mut h = Sha256::new();
                h.update(seed.to_be_bytes());
                h.update(i.to_be_bytes());
                h.finalize().into()
            })
            .collect();
        let conditions = fulfillments
            .iter()
            .map(|f| Sha256::digest(f).into())
            .collect();
        Ring {
            fulfillments,
            conditions,
        }
    }
}

/// The longest reply a sink sends (a Reject with its message, or a Fulfill).
pub(crate) const SINK_REPLY_LEN_MAX: usize = 1200;

/// A uniform draw in 0..1 from a per-connection generator.
fn random(rng: &mut u64) -> f64 {
    *rng = rng
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*rng >> 11) as f64 / (1u64 << 53) as f64
}

/// The sink's answer to a Prepare, whatever the transport: a Reject for
/// `--sink-reject-fraction`, a wrong fulfillment for `--sink-wrong-fraction`, otherwise the
/// right one from the ring. Returns the reply's length in `reply` and what it is (to count,
/// and for a right Fulfill to log, once it is sent).
pub(crate) fn sink_answer(
    plan: &Plan,
    ring: &Ring,
    rng: &mut u64,
    p: &Prepare<&[u8]>,
    reply: &mut [u8; SINK_REPLY_LEN_MAX],
) -> (usize, SinkAnswer) {
    let data = p.data();
    let seq = data
        .get(..8)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
    let index = (seq as usize) % RING_LEN;
    let roll = random(rng);
    let sink = &plan.sink;
    if roll < sink.reject_fraction {
        let len = RejectRepr {
            code: sink.reject_code,
            triggered_by: Some(p.destination()),
            message: b"rejected by ilp-loadgen sink",
            data: &[],
        }
        .emit(reply);
        return (len, SinkAnswer::Rejected);
    }
    let wrong = roll < sink.reject_fraction + sink.wrong_fraction;
    let fulfillment = &ring.fulfillments[if wrong { (index + 1) % RING_LEN } else { index }];
    let len = FulfillRepr {
        fulfillment,
        data: &[],
    }
    .emit(reply);
    let answer = if wrong {
        SinkAnswer::WrongFulfillment
    } else {
        SinkAnswer::Fulfilled { amount: p.amount() }
    };
    (len, answer)
}

/// A sink's answer went out during `second`: count it for `sink` and, for a right Fulfill,
/// log its amount (`--sink-log`).
pub(crate) fn sink_sent(
    plan: &Plan,
    stats: &RefCell<Stats>,
    sink: SinkId,
    second: usize,
    answer: SinkAnswer,
) {
    stats.borrow_mut().on_sink_answered(sink, second, answer);
    if let (Some(log), SinkAnswer::Fulfilled { amount }) = (&plan.sink_log, answer) {
        log.record(amount);
    }
}

/// The sender's bookkeeping for one reply, whatever the transport: a Fulfill is checked
/// against the ring (`index`) and its latency counted from `intended_ns`; a Reject counts by
/// code; anything else is an error.
pub(crate) fn sender_reply(
    plan: &Plan,
    ring: &Ring,
    stats: &RefCell<Stats>,
    now_ns: u64,
    intended_ns: u64,
    index: usize,
    ilp: &[u8],
) {
    let second = (now_ns / 1_000_000_000) as usize;
    let mut stats = stats.borrow_mut();
    match Packet::new_checked(ilp) {
        Ok(Packet::Fulfill(f)) if *f.fulfillment() == ring.fulfillments[index] => {
            stats.on_fulfilled(second, now_ns.saturating_sub(intended_ns) / 1000);
            if let Some(log) = &plan.sender_log {
                log.record(plan.amount);
            }
        }
        Ok(Packet::Fulfill(_)) => stats.bad_fulfillments += 1,
        Ok(Packet::Reject(r)) => stats.on_rejected(second, r.code().as_str()),
        _ => stats.errors += 1,
    }
}

/// `--sender-log` / `--sink-log`: the amount (`u64`, little endian, 8 bytes) of every valid
/// Fulfill a sender received or a sink sent, appended through a per-thread buffer. The file is
/// opened for appending and the buffer's length is a multiple of 8, so each flush writes whole
/// records even when several threads share the file (and with several sinks, all of them
/// share the one `--sink-log` file). Flushed when the thread ends (the run
/// ends when the connector goes away, so the log outlives a killed connector).
pub(crate) struct FulfillLog {
    path: std::path::PathBuf,
    out: RefCell<io::BufWriter<std::fs::File>>,
    failed: std::cell::Cell<bool>,
}

impl FulfillLog {
    pub(crate) fn open(path: &std::path::Path) -> Result<FulfillLog, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(FulfillLog {
            path: path.to_owned(),
            out: RefCell::new(io::BufWriter::with_capacity(64 * 1024, file)),
            failed: std::cell::Cell::new(false),
        })
    }

    pub(crate) fn record(&self, amount: u64) {
        use std::io::Write;
        if self
            .out
            .borrow_mut()
            .write_all(&amount.to_le_bytes())
            .is_err()
        {
            self.failed.set(true);
        }
    }

    pub(crate) fn flush(&self) -> Result<(), String> {
        use std::io::Write;
        let flushed = self.out.borrow_mut().flush();
        match flushed {
            Ok(()) if !self.failed.get() => Ok(()),
            Ok(()) => Err(format!("{}: a write failed", self.path.display())),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }
}

impl std::fmt::Debug for FulfillLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FulfillLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
