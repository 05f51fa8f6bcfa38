//! The plan: what every connection of a thread needs to know to send or to sink — the
//! shared stop flags, the window and rate, the Prepare's shape, the sink's behaviour and the
//! Fulfill logs. Built once per thread by `worker`, read by `conn` and `http`; it holds no
//! sockets and does no I/O.

use crate::conn;
use ilp_router::wire::ErrorCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Sink behaviour.
#[derive(Debug, Clone)]
pub(crate) struct SinkOptions {
    pub(crate) reject_fraction: f64,
    pub(crate) reject_code: ErrorCode,
    pub(crate) wrong_fraction: f64,
    pub(crate) delay_ms: u64,
}

/// What every connection of a thread needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) start: Instant,
    pub(crate) send_start_ns: u64,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) broken: Arc<AtomicBool>,
    pub(crate) window: usize,
    pub(crate) rate_per_conn: Option<f64>,
    pub(crate) amount: u64,
    pub(crate) data_bytes: usize,
    pub(crate) expiry_ms: u64,
    pub(crate) destination: String,
    pub(crate) sink: SinkOptions,
    pub(crate) sender_log: Option<Rc<conn::FulfillLog>>,
    pub(crate) sink_log: Option<Rc<conn::FulfillLog>>,
}

impl Plan {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
