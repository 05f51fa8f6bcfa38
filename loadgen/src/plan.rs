//! The plan: what every connection of a thread needs to know to send or to sink — the
//! shared stop flags, the window and rate, the Prepare's shape, the sink's behaviour and the
//! Fulfill logs. Built once per thread by `worker`, read by `conn` and `http`; it holds no
//! sockets and does no I/O. `Destinations` writes each Prepare's address (`--destinations`).

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
    /// `--destinations N`: Prepares go to `destination.0` … `destination.{N-1}`.
    pub(crate) destinations: Option<u32>,
    pub(crate) sink: SinkOptions,
    pub(crate) sender_log: Option<Rc<conn::FulfillLog>>,
    pub(crate) sink_log: Option<Rc<conn::FulfillLog>>,
    /// `--io ring`: plaintext BTP connections go through the thread's ring (`hot`), which
    /// spins this long before a send and while answers are awaited.
    pub(crate) ring_spin: Option<std::time::Duration>,
}

impl Plan {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Where a sender connection's Prepares go: `--destination` as is, or with `--destinations N`
/// its n-th Prepare goes to `<destination>.{n % N}`, so each connection walks every
/// destination in turn. The address is written into one buffer per connection, made once.
#[derive(Debug)]
pub(crate) struct Destinations {
    buf: Vec<u8>,
    base_len: usize,
    count: Option<u32>,
}

/// Room for `.` and the digits of the largest `u32`.
const SUFFIX_LEN_MAX: usize = 11;

impl Destinations {
    pub(crate) fn new(base: &str, count: Option<u32>) -> Destinations {
        assert!(
            count != Some(0),
            "checked at start: --destinations is at least 1"
        );
        let mut buf = Vec::with_capacity(base.len() + SUFFIX_LEN_MAX);
        buf.extend_from_slice(base.as_bytes());
        Destinations {
            buf,
            base_len: base.len(),
            count,
        }
    }

    /// The address of the connection's `n`-th Prepare.
    pub(crate) fn address(&mut self, n: u64) -> &[u8] {
        let Some(count) = self.count else {
            return &self.buf;
        };
        let mut k = n % u64::from(count);
        let mut digits = [0u8; SUFFIX_LEN_MAX - 1];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (k % 10) as u8;
            k /= 10;
            if k == 0 {
                break;
            }
        }
        self.buf.truncate(self.base_len);
        self.buf.push(b'.');
        self.buf.extend_from_slice(&digits[at..]);
        &self.buf
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn destinations_walk_every_suffix_in_turn() {
        let mut single = Destinations::new("g.router.bob", None);
        assert_eq!(single.address(7), b"g.router.bob");
        let mut d = Destinations::new("g.router.bob", Some(12));
        let got: Vec<String> = [0, 1, 9, 10, 11, 12, 25]
            .iter()
            .map(|&n| String::from_utf8(d.address(n).to_vec()).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "g.router.bob.0",
                "g.router.bob.1",
                "g.router.bob.9",
                "g.router.bob.10",
                "g.router.bob.11",
                "g.router.bob.0",
                "g.router.bob.1"
            ]
        );
        let mut big = Destinations::new("g.x", Some(u32::MAX));
        assert_eq!(big.address(u64::from(u32::MAX) - 1), b"g.x.4294967294");
    }
}
