//! The `[limits]` table: one declaration per limit, and the checks between limits.
//!
//! Each line of the `limits!` table gives a limit its docs, type, default and allowed range;
//! the macro derives the [`Limits`] struct, its `Default`, the serde twin `RawLimits`, the key
//! list and the by-name accessors that the CLI flags use. The top of every range is a named
//! constant of [`crate::limits`]; this file also asserts how those ceilings agree with the
//! modules they size (the pending table, BTP sessions, the largest ILP packet).
//!
//! Not here: what the runtime does with a limit (see each field's docs) and CLI parsing
//! (`crate::cli::LimitArgs`, which must have one flag per key).

use serde::Deserialize;

use super::ConfigError;
use crate::limits::{
    AUTH_TIMEOUT_MS_MAX, BAD_FRAMES_MAX, BTP_PINGS_MISSED_MAX, BTP_PING_INTERVAL_MS_MAX,
    CONNECTIONS_PER_PEER_MAX, FRAME_LEN_MAX, HTTP_CONNECTIONS_PER_PEER_MAX,
    HTTP_IDLE_TIMEOUT_MS_MAX, HTTP_PIPELINE_MAX, HTTP_REQUESTS_PER_CONNECTION_MAX,
    HTTP_REQUEST_TIMEOUT_MS_MAX, IN_FLIGHT_PER_LINK_MAX, LEASE_CHUNK_DIVISOR_MAX, LINKS_MAX,
    LINK_QUEUE_BYTES_MAX, MIB, PEERS_MAX, PEER_AMOUNT_PER_SECOND_MAX, PEER_PACKETS_PER_SECOND_MAX,
    PENDING_PER_CORE_MAX, PENDING_PER_PEER_PERCENT_MAX, RECONNECT_MAX_MS_MAX, RECONNECT_MIN_MS_MAX,
    RING_CAPACITY_MAX, ROUTES_PER_PEER_MAX, ROUTE_PATH_MAX, SHUTDOWN_GRACE_MS_MAX, SPIN_US_MAX,
    TICK_MS_MAX, UNAUTHENTICATED_MAX, WRITE_TIMEOUT_MS_MAX,
};

// The ceilings against the modules they size. Asserted here, not in `crate::limits`, because
// that module sits below `engine`, `link` and `wire` and imports none of them.
//
// Slot indices fit 24 bits: the pending table refuses to be built larger.
const _: () = assert!(PENDING_PER_CORE_MAX == crate::engine::PENDING_MAX);
// A BTP session panics on an `in_flight_max` over its own limit.
const _: () = assert!(IN_FLIGHT_PER_LINK_MAX <= crate::link::btp::IN_FLIGHT_MAX_LIMIT);
// At its largest setting `frame_len_max` takes an ILP packet with the largest fields in its
// BTP message.
const _: () =
    assert!(FRAME_LEN_MAX >= crate::wire::ILP_PACKET_LEN_MAX + crate::wire::BTP_HEADER_LEN_MAX);

/// A limit's value type, converted from the `u64` of the file or a CLI flag after the range
/// check.
trait LimitValue: Copy {
    fn from_u64(value: u64) -> Option<Self>;
    fn to_u64(self) -> u64;
}

impl LimitValue for u64 {
    fn from_u64(value: u64) -> Option<Self> {
        Some(value)
    }
    fn to_u64(self) -> u64 {
        self
    }
}

impl LimitValue for u32 {
    fn from_u64(value: u64) -> Option<Self> {
        u32::try_from(value).ok()
    }
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
}

impl LimitValue for usize {
    fn from_u64(value: u64) -> Option<Self> {
        usize::try_from(value).ok()
    }
    fn to_u64(self) -> u64 {
        // usize is at most 64 bits on every supported target.
        u64::try_from(self).unwrap_or(u64::MAX)
    }
}

/// `value` as the limit `key`'s type, if it lies in `min..=max`.
fn limit_value<T: LimitValue>(key: &str, value: u64, min: T, max: T) -> Result<T, ConfigError> {
    let key = format!("limits.{key}");
    let (min, max) = (min.to_u64(), max.to_u64());
    if value < min {
        return Err(ConfigError::invalid(
            key,
            format!("{value} is below the minimum {min} (allowed: {min}..={max})"),
        ));
    }
    if value > max {
        return Err(ConfigError::invalid(
            key,
            format!("{value} is over the maximum {max} (allowed: {min}..={max})"),
        ));
    }
    T::from_u64(value)
        .ok_or_else(|| ConfigError::invalid(key, format!("{value} does not fit this platform")))
}

/// Declares [`Limits`], its `Default`, its raw serde twin and the by-name accessors from one
/// list: `name: type = default, min, max;` with the field's docs. `min` and `max` have the
/// field's type; `max` is a constant of [`crate::limits`].
macro_rules! limits {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty = $default:expr, $min:expr, $max:expr;
    )*) => {
        /// Every capacity and timer of the router: the `[limits]` table.
        ///
        /// All keys are optional; [`Limits::default`] gives the values documented on each
        /// field. Each value must lie in the range given on its field, and together:
        /// `tick_ms <= min_message_window_ms`, `reconnect_min_ms <= reconnect_max_ms` and
        /// `connections_per_peer_max <= links_max`. CLI flags override by name with
        /// [`Config::set_limit`](super::Config::set_limit) (all checks) or [`Limits::set`]
        /// (range only). The top of each range is a constant of [`crate::limits`].
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Limits {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $( $name: $default, )* }
            }
        }

        /// The `[limits]` table as written: every key optional, any `u64`.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawLimits {
            $( $name: Option<u64>, )*
        }

        impl Limits {
            /// Every limit's key, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$( stringify!($name) ),*];

            /// Sets the limit `key` (a key of `[limits]`, e.g. `"tick_ms"`) to `value`, after
            /// checking it against that limit's own range. The checks between limits (and
            /// against `min_message_window_ms`) are
            /// [`Config::set_limit`](super::Config::set_limit)'s.
            pub fn set(&mut self, key: &str, value: u64) -> Result<(), ConfigError> {
                match key {
                    $( stringify!($name) => {
                        self.$name = limit_value(key, value, $min, $max)?;
                        Ok(())
                    } )*
                    _ => Err(ConfigError::invalid(
                        format!("limits.{key}"),
                        format!("no such limit; the limits are: {}", Self::KEYS.join(", ")),
                    )),
                }
            }

            /// The value of the limit `key`, or `None` for an unknown key.
            pub fn get(&self, key: &str) -> Option<u64> {
                match key {
                    $( stringify!($name) => Some(LimitValue::to_u64(self.$name)), )*
                    _ => None,
                }
            }

            /// The allowed range of the limit `key`, inclusive, or `None` for an unknown key.
            pub fn range(key: &str) -> Option<(u64, u64)> {
                match key {
                    $( stringify!($name) => Some((
                        <$ty as LimitValue>::to_u64($min),
                        <$ty as LimitValue>::to_u64($max),
                    )), )*
                    _ => None,
                }
            }

            /// The limits of the file, each checked against its range.
            pub(super) fn from_raw(raw: RawLimits) -> Result<Limits, ConfigError> {
                let mut limits = Limits::default();
                $(
                    if let Some(value) = raw.$name {
                        limits.set(stringify!($name), value)?;
                    }
                )*
                Ok(limits)
            }
        }
    };
}

limits! {
    /// In-flight Prepares per core: the size of each core's pending table. A Prepare that
    /// finds it full is answered T03. Default 65536; 1..=16777216.
    pending_per_core_max: usize = 65_536, 1, PENDING_PER_CORE_MAX;
    /// Outstanding requests (BTP messages awaiting a response) per BTP connection; past it
    /// the connection stops reading. Default 4096; 1..=1048576.
    in_flight_per_link_max: usize = 4096, 1, IN_FLIGHT_PER_LINK_MAX;
    /// Slots in each cross-core ring (messages between two cores). Default 8192;
    /// 1..=16777216.
    ring_capacity: usize = 8192, 1, RING_CAPACITY_MAX;
    /// The largest WebSocket frame and BTP packet accepted, in bytes. Below 41997 plus the
    /// BTP framing, ILP packets with the largest `data` are refused. Default 65536;
    /// 64..=16777216 (16 MiB).
    frame_len_max: usize = 65_536, 64, FRAME_LEN_MAX;
    /// Concurrent BTP connections of one peer (on all cores). Default 64; 1..=`links_max`.
    connections_per_peer_max: usize = 64, 1, CONNECTIONS_PER_PEER_MAX;
    /// Connections in all, per core (dialled and accepted, authenticated or not). Default
    /// 4096; 1..=1048576.
    links_max: usize = 4096, 1, LINKS_MAX;
    /// Milliseconds a new connection has to authenticate before it is closed. Default 10000;
    /// 1..=3600000.
    auth_timeout_ms: u64 = 10_000, 1, AUTH_TIMEOUT_MS_MAX;
    /// Unreadable BTP frames from one connection before it is closed. Default 10;
    /// 1..=1048576.
    bad_frames_max: u32 = 10, 1, BAD_FRAMES_MAX;
    /// The expiry wheel's tick, in milliseconds: Prepares expire at most this late. Default 5;
    /// 1..=60000, and at most `min_message_window_ms`.
    tick_ms: u32 = 5, 1, TICK_MS_MAX;
    /// Microseconds an idle core's executor spins before it parks; 0 parks at once (least
    /// CPU, most latency). Default 50; 0..=1000000.
    spin_us: u64 = 50, 0, SPIN_US_MAX;
    /// Microseconds a core that has been forwarding keeps polling for the next packet before
    /// it parks: it polls for twice the recent longest gap between packets, at least `spin_us` and at
    /// most this. Large enough to cover the gap at a steady rate, a core never parks between
    /// packets (no wake-up on any of them) and parks once they stop; 0 polls `spin_us` only.
    /// A core whose thread loses over a quarter of its CPU to other threads spins `spin_us`
    /// only, for 50 ms; set 0 where router cores share CPUs with busy processes. Default 1000
    /// (rates of 1000/s and up never park); 0..=1000000.
    spin_max_us: u64 = 1000, 0, SPIN_US_MAX;
    /// Milliseconds queued answers get to reach the wire at shutdown, once every in-flight
    /// Prepare has resolved (each by its own expiry at the latest: links stay open for its
    /// Fulfill until then). Default 5000; 1..=3600000.
    shutdown_grace_ms: u64 = 5000, 1, SHUTDOWN_GRACE_MS_MAX;
    /// First delay before redialling a peer we dial, in milliseconds; doubles up to
    /// `reconnect_max_ms`. Default 100; 1..=3600000.
    reconnect_min_ms: u64 = 100, 1, RECONNECT_MIN_MS_MAX;
    /// Longest delay between redials, in milliseconds. Default 10000; 1..=86400000, and at
    /// least `reconnect_min_ms`.
    reconnect_max_ms: u64 = 10_000, 1, RECONNECT_MAX_MS_MAX;
    /// A core that is not a peer's home leases `max_balance / lease_chunk_divisor` (at least
    /// 1) of the peer's balance headroom at a time: larger means fewer lease messages between
    /// cores, smaller means less headroom stranded on idle cores. Default 16; 1..=1048576.
    lease_chunk_divisor: u64 = 16, 1, LEASE_CHUNK_DIVISOR_MAX;
    /// HTTP connections each core keeps to a peer it sends Prepares to over HTTP
    /// (`http_url`). Default 64; 1..=4096.
    http_connections_per_peer_max: usize = 64, 1, HTTP_CONNECTIONS_PER_PEER_MAX;
    /// Requests pipelined on each of those connections (answers come back in order; 1 sends
    /// one request at a time, for servers that do not take pipelined requests). Default 64
    /// (deep pipelines mean fewer, larger writes: see BENCHMARKS.md); 1..=1024.
    http_requests_per_connection_max: usize = 64, 1, HTTP_REQUESTS_PER_CONNECTION_MAX;
    /// HTTP connections each core opens ahead of need to each `http_url` peer and keeps open
    /// (redialling with the `reconnect_*` backoff), so the first Prepare after a quiet spell
    /// finds one. Default 1; 0..=4096, and at most `http_connections_per_peer_max`.
    http_connections_min: usize = 1, 0, HTTP_CONNECTIONS_PER_PEER_MAX;
    /// Milliseconds a connection of ours to an `http_url` peer may sit with no request in
    /// flight before we close it: below the keep-alive timeout of the peer's server (Node's
    /// is 5 s), so that we close an idle connection before the server does, never while a
    /// request is on its way. Default 4000; 100..=86400000.
    http_client_idle_timeout_ms: u64 = 4_000, 100, HTTP_IDLE_TIMEOUT_MS_MAX;
    /// Bytes queued for one connection's writer (replies, pongs, forwarded Prepares) past
    /// which its reader stops reading until the queue halves; a queue that still grows past
    /// this is a peer that does not read, and the connection is closed. Forwarding to a link
    /// queued over half of it answers T03. Default 8388608 (8 MiB); 65536..=1073741824.
    link_queue_bytes_max: usize = 8 * MIB, 65_536, LINK_QUEUE_BYTES_MAX;
    /// Milliseconds a write may make no progress before the connection is closed; also the
    /// socket's `TCP_USER_TIMEOUT`, so unacknowledged data ends a half-open connection.
    /// Default 10000; 100..=3600000.
    write_timeout_ms: u64 = 10_000, 100, WRITE_TIMEOUT_MS_MAX;
    /// Connections per core still in their handshake or not yet authenticated; counted apart
    /// from `links_max`, so a flood of them never locks out authenticated peers. Default 1024;
    /// 1..=1048576.
    unauthenticated_max: usize = 1024, 1, UNAUTHENTICATED_MAX;
    /// Milliseconds one ILP-over-HTTP request may take to arrive, head and body, from its
    /// first byte. Default 10000; 1..=3600000.
    http_request_timeout_ms: u64 = 10_000, 1, HTTP_REQUEST_TIMEOUT_MS_MAX;
    /// Milliseconds an ILP-over-HTTP connection from a peer may sit idle (no request in
    /// flight or arriving) before it is closed. Default 30000; 1..=86400000.
    http_idle_timeout_ms: u64 = 30_000, 1, HTTP_IDLE_TIMEOUT_MS_MAX;
    /// Requests one ILP-over-HTTP connection from a peer may have in flight (pipelined;
    /// answered in request order); past it the connection is not read until an answer frees
    /// room. Answers ready out of order wait, copied, so a connection holds at most this many
    /// replies (as `link_queue_bytes_max` bounds its queue). Default 256; 1..=1024.
    http_pipeline_max: usize = 256, 1, HTTP_PIPELINE_MAX;
    /// Milliseconds of silence on a BTP link after which we send a WebSocket Ping. Default
    /// 5000; 100..=3600000.
    btp_ping_interval_ms: u64 = 5000, 100, BTP_PING_INTERVAL_MS_MAX;
    /// Ping intervals a BTP link may stay silent (no frame at all, Pong included) before it is
    /// taken down as half-open. Default 3; 1..=1000.
    btp_pings_missed_max: u32 = 3, 1, BTP_PINGS_MISSED_MAX;
    /// The share of a core's in-flight table (`pending_per_core_max`) one peer may fill, in
    /// percent; over it the peer's Prepares get T03 and other peers keep their room. Default
    /// 50; 1..=100.
    pending_per_peer_percent: u64 = 50, 1, PENDING_PER_PEER_PERCENT_MAX;
    /// Default packet rate limit of a peer (RFC 18 payment bandwidth), Prepares per second
    /// summed over all cores; over it is T05. A peer's `max_packets_per_second` overrides it.
    /// 0: no limit (default); 0..=1000000000.
    peer_packets_per_second: u64 = 0, 0, PEER_PACKETS_PER_SECOND_MAX;
    /// Default amount rate limit of a peer (RFC 18 throughput), in that peer's own units per
    /// second summed over all cores; over it is T04. A peer's `max_amount_per_second`
    /// overrides it. 0: no limit (default); 0..=18446744073709551615.
    peer_amount_per_second: u64 = 0, 0, PEER_AMOUNT_PER_SECOND_MAX;
    /// Peer slots: the most peers the router can hold from start to stop, those added by a
    /// reload and those a reload removed (a removed peer keeps its slot and balance row until
    /// the next start) counted together. Per-peer tables shared by the cores and the rows of
    /// the ledger files are sized for it at start. Default 1024; 1..=65535.
    peers_max: usize = 1024, 1, PEERS_MAX;
    /// Routes we keep from one peer's route updates (CCP); more are dropped and counted.
    /// Default 10000; 1..=1048576.
    routes_per_peer_max: usize = 10_000, 1, ROUTES_PER_PEER_MAX;
    /// The longest path a learned route may have (hops after its speaker); longer ones are
    /// dropped. Default 32; 1..=256.
    route_path_max: usize = 32, 1, ROUTE_PATH_MAX;
}

/// The checks between limits, and against the message window.
pub(super) fn check_limits(limits: &Limits, min_message_window_ms: u64) -> Result<(), ConfigError> {
    if u64::from(limits.tick_ms) > min_message_window_ms {
        return Err(ConfigError::invalid(
            "limits.tick_ms",
            format!(
                "{} is over min_message_window_ms ({min_message_window_ms}): the expiry wheel \
                 must tick at least once per message window",
                limits.tick_ms
            ),
        ));
    }
    let (l, to_u64) = (limits, |v: usize| v as u64);
    let pairs = [
        (
            "reconnect_min_ms",
            l.reconnect_min_ms,
            "reconnect_max_ms",
            l.reconnect_max_ms,
        ),
        (
            "http_connections_min",
            to_u64(l.http_connections_min),
            "http_connections_per_peer_max",
            to_u64(l.http_connections_per_peer_max),
        ),
        (
            "connections_per_peer_max",
            to_u64(l.connections_per_peer_max),
            "links_max",
            to_u64(l.links_max),
        ),
    ];
    // Each first limit is at most its second.
    for (key, value, bound_key, bound) in pairs {
        if value > bound {
            return Err(ConfigError::invalid(
                format!("limits.{key}"),
                format!("{value} is over limits.{bound_key} ({bound})"),
            ));
        }
    }
    Ok(())
}
