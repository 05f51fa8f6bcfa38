//! Every hard maximum of the router, once, with the compile-time facts that tie them together.
//!
//! The `[limits]` table (`config::Limits`) lets the operator pick each capacity and timer
//! inside a range; the top of each range is declared here, named after its key:
//! `frame_len_max` may be set up to [`FRAME_LEN_MAX`], `tick_ms` up to [`TICK_MS_MAX`]. The
//! other fixed maxima of a configuration ([`PEERS_MAX`], [`MAX_HOLD_TIME_MS_MAX`]) live here
//! too. Each constant has the type of the value it bounds, so the `limits!` table cannot pair
//! a `u32` limit with a `usize` ceiling.
//!
//! Contract: this module sits at the bottom of the crate with `wire` and imports nothing from
//! it, so the assertions here relate only its own constants. A maximum that must agree with
//! another module's constant (`engine::PENDING_MAX`, `link::btp::IN_FLIGHT_MAX_LIMIT`, the
//! largest ILP packet) is asserted in `config::limits`, which sits above those modules.
//!
//! Not here: defaults and minimums (the `limits!` table's, one line per limit with its docs),
//! and the values in force (`Config::limits`).

// ---------------------------------------------------------------------------------------------
// Units
// ---------------------------------------------------------------------------------------------

/// One mebibyte, in bytes.
pub const MIB: usize = 1 << 20;

/// One hour, in milliseconds.
pub const HOUR_MS: u64 = 3_600_000;

/// One day, in milliseconds.
pub const DAY_MS: u64 = 24 * HOUR_MS;

// ---------------------------------------------------------------------------------------------
// The configuration outside `[limits]`
// ---------------------------------------------------------------------------------------------

/// Peers in one configuration: a peer's id is a `u16` index.
pub const PEERS_MAX: usize = u16::MAX as usize;

/// The longest `max_hold_time_ms`: one day.
pub const MAX_HOLD_TIME_MS_MAX: u64 = DAY_MS;

// ---------------------------------------------------------------------------------------------
// The ceilings of `[limits]`, in the table's order
// ---------------------------------------------------------------------------------------------

/// `pending_per_core_max`: slot indices fit 24 bits, so a tag packs a slot with its core.
pub const PENDING_PER_CORE_MAX: usize = 1 << 24;

/// `in_flight_per_link_max`: the most outstanding requests a BTP session takes.
pub const IN_FLIGHT_PER_LINK_MAX: usize = 1 << 20;

/// `ring_capacity`: slots of one cross-core ring.
pub const RING_CAPACITY_MAX: usize = 1 << 24;

/// `frame_len_max`: the largest WebSocket frame and BTP packet, in bytes (16 MiB).
pub const FRAME_LEN_MAX: usize = 16 * MIB;

/// `links_max`: connections per core.
pub const LINKS_MAX: usize = 1 << 20;

/// `routes_per_peer_max`: routes learned from one peer (CCP).
pub const ROUTES_PER_PEER_MAX: usize = 1 << 20;

/// `route_path_max`: the longest path of a learned route.
pub const ROUTE_PATH_MAX: usize = 256;

/// `connections_per_peer_max`: never more than a core may hold in all.
pub const CONNECTIONS_PER_PEER_MAX: usize = LINKS_MAX;

/// `auth_timeout_ms`: one hour.
pub const AUTH_TIMEOUT_MS_MAX: u64 = HOUR_MS;

/// `bad_frames_max`: unreadable BTP frames tolerated on one connection.
pub const BAD_FRAMES_MAX: u32 = 1 << 20;

/// `tick_ms`: the coarsest expiry wheel, one minute.
pub const TICK_MS_MAX: u32 = 60_000;

/// `spin_us`: one second of spinning before an idle core parks.
pub const SPIN_US_MAX: u64 = 1_000_000;

/// `shutdown_grace_ms`: one hour.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = HOUR_MS;

/// `reconnect_min_ms`: one hour.
pub const RECONNECT_MIN_MS_MAX: u64 = HOUR_MS;

/// `reconnect_max_ms`: one day.
pub const RECONNECT_MAX_MS_MAX: u64 = DAY_MS;

/// `lease_chunk_divisor`: the smallest lease is `max_balance / 2^20`.
pub const LEASE_CHUNK_DIVISOR_MAX: u64 = 1 << 20;

/// `http_connections_per_peer_max`: HTTP connections per core to one `http_url` peer.
pub const HTTP_CONNECTIONS_PER_PEER_MAX: usize = 4096;

/// `http_requests_per_connection_max`: requests pipelined on one connection we opened.
pub const HTTP_REQUESTS_PER_CONNECTION_MAX: usize = 1024;

/// `link_queue_bytes_max`: bytes queued for one connection's writer (1 GiB).
pub const LINK_QUEUE_BYTES_MAX: usize = 1 << 30;

/// `write_timeout_ms`: one hour.
pub const WRITE_TIMEOUT_MS_MAX: u64 = HOUR_MS;

/// `unauthenticated_max`: connections per core not yet authenticated.
pub const UNAUTHENTICATED_MAX: usize = 1 << 20;

/// `http_request_timeout_ms`: one hour.
pub const HTTP_REQUEST_TIMEOUT_MS_MAX: u64 = HOUR_MS;

/// `http_idle_timeout_ms`: one day.
pub const HTTP_IDLE_TIMEOUT_MS_MAX: u64 = DAY_MS;

/// `http_pipeline_max`: requests one HTTP connection from a peer may have in flight.
pub const HTTP_PIPELINE_MAX: usize = 1024;

/// `btp_ping_interval_ms`: one hour.
pub const BTP_PING_INTERVAL_MS_MAX: u64 = HOUR_MS;

/// `btp_pings_missed_max`: silent ping intervals before a BTP link is taken down.
pub const BTP_PINGS_MISSED_MAX: u32 = 1000;

/// `pending_per_peer_percent`: a peer may fill at most the whole in-flight table.
pub const PENDING_PER_PEER_PERCENT_MAX: u64 = 100;

/// `peer_packets_per_second`: Prepares per second of one peer, all cores together.
pub const PEER_PACKETS_PER_SECOND_MAX: u64 = 1_000_000_000;

/// `peer_amount_per_second`: amount per second of one peer, in its units (any u64).
pub const PEER_AMOUNT_PER_SECOND_MAX: u64 = u64::MAX;

// ---------------------------------------------------------------------------------------------
// How they relate
// ---------------------------------------------------------------------------------------------

// `connections_per_peer_max <= links_max` is checked between the two values, so the top of
// one range must be reachable under the top of the other.
const _: () = assert!(CONNECTIONS_PER_PEER_MAX <= LINKS_MAX);
// `reconnect_min_ms <= reconnect_max_ms` likewise.
const _: () = assert!(RECONNECT_MIN_MS_MAX <= RECONNECT_MAX_MS_MAX);
// `tick_ms <= min_message_window_ms <= max_hold_time_ms`: the coarsest tick fits the longest
// hold.
const _: () = assert!(TICK_MS_MAX as u64 <= MAX_HOLD_TIME_MS_MAX);
// A peer's share of the in-flight table is at most all of it: the per-peer cap the engine
// gets never exceeds `pending_per_core_max`.
const _: () = assert!(PENDING_PER_PEER_PERCENT_MAX <= 100);
