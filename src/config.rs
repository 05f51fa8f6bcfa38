//! The router's configuration: one TOML file, checked completely at start.
//!
//! [`Config::load`] (or [`Config::from_toml_str`]) reads the file in two steps:
//!
//! 1. **Shape.** serde and `toml` parse the text into private `Raw*` structs that mirror the
//!    file. Every table denies unknown keys, so a misspelt key is an error, never a silently
//!    ignored setting; syntax errors, unknown or missing keys and values of the wrong TOML type
//!    come back as [`ConfigError::Syntax`] with the line and column.
//! 2. **Meaning.** The raw values are checked and turned into the typed, validated [`Config`].
//!    Each failure is a [`ConfigError::Invalid`] naming the key path (`peers[1].asset_scale`,
//!    `rates.EUR`, `limits.tick_ms`; array indices count from 0 in file order), what is wrong
//!    and what is allowed.
//!
//! A [`Config`] can only be built by these checks, so everything derived from it
//! ([`Config::route_table`], [`Config::engine_config`]) cannot fail.
//!
//! # Keys
//!
//! [`EXAMPLE`] is a complete, commented file. In short:
//!
//! | key | type | default | meaning |
//! | --- | --- | --- | --- |
//! | `ilp_address` | string | required | our ILP address |
//! | `spread` | decimal string in `[0, 1)` | `"0"` | fraction kept on each conversion |
//! | `default_route` | peer name | none | next hop for destinations in our scheme that no route matches |
//! | `min_message_window_ms` | integer | 1000 | taken off each hop's expiry; the least time a Prepare must have left |
//! | `max_hold_time_ms` | integer | 30000 | the longest we hold a Prepare |
//! | `listen.btp` | `"ip:port"` | none | where peers dial in (BTP over plain WebSocket) |
//! | `[[peers]]` | tables | none | see [`Peer`] |
//! | `[[routes]]` | tables (`prefix`, `peer`) | none | static routes, see [`Route`] |
//! | `[rates]` | asset code = decimal string | none | value of one whole unit of each asset |
//! | `[limits]` | integers | see [`Limits`] | capacities and timers |
//! | `state.dir` | path | none | durable balances: one memory-mapped ledger file per core (`crate::state`); without it balances live in memory only |
//! | `state.msync_interval_ms` | integer | 1000 | how often the ledger files are synced to disk (bounds a power loss; 0 = never) |
//!
//! Amounts (`max_balance`, `max_packet_amount`) are strings of decimal digits because TOML
//! integers stop at `i64::MAX` and amounts go up to `u64::MAX`.
//!
//! Every peer named `name` is reachable at `<ilp_address>.<name>` and below: unless a route
//! with exactly that prefix is configured, an implicit route to the peer is added.
//!
//! Secrets (`auth_tokens`, `outgoing_token`) are held as [`Secret`], whose `Debug` does not
//! print them, and no error message quotes them.

use core::fmt;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::rate::{Decimal, Rate};
use crate::engine::route::{RouteError, RouteTable};
use crate::engine::{CoreId, EngineConfig, PeerConfig, PeerId};
use crate::wire::{check_address, ADDRESS_LEN_MAX};

/// A complete, commented configuration: two peers in two currencies, a static route and a
/// default route. It parses as is (see the tests).
pub const EXAMPLE: &str = r#"# ilp-router configuration (TOML).
# Every key is shown here; an unknown key anywhere is an error. Amounts are strings of digits.

# Our ILP address. Each peer is also reachable at <ilp_address>.<name> (g.example.router.alice).
ilp_address = "g.example.router"
# Fraction kept on each conversion, as a decimal string: "0.002" keeps 0.2 %. Default "0".
spread = "0.002"
# Destinations in our scheme ("g.") that no route matches go to this peer. Optional.
default_route = "bob"
# Taken off the expiry at each hop; a Prepare with less time left is rejected. Default 1000.
min_message_window_ms = 1000
# The longest we hold a Prepare, whatever its expiry says. Default 30000.
max_hold_time_ms = 30000

[listen]
# Peers dial in here: BTP over plain WebSocket (TLS, if any, terminates in front of the
# router). Optional: without it the router only dials out.
btp = "127.0.0.1:7768"

# Alice dials in. She authenticates with auth_username "alice" (or an empty username) and one
# of her tokens; two tokens let her rotate without downtime.
[[peers]]
name = "alice"
auth_tokens = ["alice-token-2", "alice-token-1"]
relation = "child"                # child | peer | parent
asset_code = "USD"
asset_scale = 9                   # amounts in 10^-9 USD
max_balance = "1000000000000"     # alice may owe us up to 1000 USD (holds included)
max_packet_amount = "10000000000" # at most 10 USD per Prepare; default: no limit

# We dial bob, our upstream.
[[peers]]
name = "bob"
relation = "parent"
asset_code = "EUR"
asset_scale = 6                   # amounts in 10^-6 EUR
max_balance = "500000000"         # bob may owe us up to 500 EUR
btp_url = "ws://127.0.0.1:9000"   # also accepted: btp+ws://...; wss:// needs a TLS proxy
outgoing_token = "router-token-at-bob"
outgoing_username = "router"      # default: empty username
btp_dial = "per_core"             # or "single": one connection, from bob's home core

# Static routes: longest prefix wins, on segment boundaries ("g.bob" matches g.bob.x, not g.bobby).
[[routes]]
prefix = "g.bob"
peer = "bob"

# Value of one whole unit of each asset code, in any common unit. An asset without a price
# can only be forwarded to peers with the same asset code.
[rates]
USD = "1"
EUR = "1.08"

# Capacities and timers; every key is optional (defaults in src/config.rs, `Limits`).
[limits]
connections_per_peer_max = 8
reconnect_max_ms = 30000

# Durable balances: each core keeps its committed balances in a memory-mapped file here, so a
# crash (kill -9) loses nothing. Without [state] balances live in memory only. A relative
# path is relative to the working directory.
[state]
dir = "/var/lib/ilp-router"
# Sync the files to disk this often (bounds what a power loss can lose); 0 = never.
msync_interval_ms = 1000
"#;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a configuration was refused. `Display` gives a message an operator can act on.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not TOML of the expected shape: a syntax error, an unknown or missing key, or a value
    /// of the wrong type. The message comes from the TOML parser and names the key.
    Syntax {
        /// The file, when read by [`Config::load`].
        file: Option<PathBuf>,
        /// Line and column of the problem, both from 1, when the parser knows them.
        at: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// A key's value is well-formed but not acceptable.
    Invalid {
        /// The file, when read by [`Config::load`].
        file: Option<PathBuf>,
        /// The key path, e.g. `peers[1].asset_scale` (indices from 0, in file order).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: None,
            key: key.into(),
            message: message.into(),
        }
    }

    fn syntax(text: &str, error: &toml::de::Error) -> ConfigError {
        let at = error.span().map(|span| line_column(text, span.start));
        let mut message = error.message().trim_end().to_owned();
        // A wrong value's span is the value: name the key written before it on its line.
        if let Some(key) = error.span().and_then(|span| key_before(text, span.start)) {
            if !message.contains(&format!("`{key}`")) {
                message = format!("{key}: {message}");
            }
        }
        ConfigError::Syntax {
            file: None,
            at,
            message,
        }
    }

    fn in_file(mut self, path: &Path) -> ConfigError {
        match &mut self {
            ConfigError::Read { .. } => {}
            ConfigError::Syntax { file, .. } | ConfigError::Invalid { file, .. } => {
                *file = Some(path.to_owned());
            }
        }
        self
    }

    /// The key path of an [`Invalid`](ConfigError::Invalid) value.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Line and column (from 1, column in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The bare key of a `key = value` line, when byte `offset` is in its value.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    bare.then_some(key)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Syntax { file, at, message } => {
                if let Some(file) = file {
                    write!(f, "{}: ", file.display())?;
                }
                if let Some((line, column)) = at {
                    write!(f, "line {line}, column {column}: ")?;
                }
                f.write_str(message)
            }
            ConfigError::Invalid { file, key, message } => {
                if let Some(file) = file {
                    write!(f, "{}: ", file.display())?;
                }
                write!(f, "{key}: {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

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

fn limit_value<T: LimitValue>(key: &str, value: u64, min: u64, max: u64) -> Result<T, ConfigError> {
    let key = format!("limits.{key}");
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

const MIB: u64 = 1 << 20;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// Declares [`Limits`], its `Default`, its raw serde twin and the by-name accessors from one
/// list: `name: type = default, min, max;` with the field's docs.
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
        /// [`Config::set_limit`] (all checks) or [`Limits::set`] (range only).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Limits {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $( $name: $default, )* }
            }
        }

        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawLimits {
            $( $name: Option<u64>, )*
        }

        impl Limits {
            /// Every limit's key, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$( stringify!($name) ),*];

            /// Sets the limit `key` (a key of `[limits]`, e.g. `"tick_ms"`) to `value`, after
            /// checking it against that limit's own range. The checks between limits (and
            /// against `min_message_window_ms`) are [`Config::set_limit`]'s.
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
                    $( stringify!($name) => Some(($min, $max)), )*
                    _ => None,
                }
            }

            fn from_raw(raw: RawLimits) -> Result<Limits, ConfigError> {
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
    pending_per_core_max: usize = 65_536, 1, 1 << 24;
    /// Outstanding requests (BTP messages awaiting a response) per BTP connection; past it
    /// the connection stops reading. Default 4096; 1..=1048576.
    in_flight_per_link_max: usize = 4096, 1, 1 << 20;
    /// Slots in each cross-core ring (messages between two cores). Default 8192;
    /// 1..=16777216.
    ring_capacity: usize = 8192, 1, 1 << 24;
    /// The largest WebSocket frame and BTP packet accepted, in bytes. Below 41997 plus the
    /// BTP framing, ILP packets with the largest `data` are refused. Default 65536;
    /// 64..=16777216 (16 MiB).
    frame_len_max: usize = 65_536, 64, 16 * MIB;
    /// Concurrent BTP connections of one peer (on all cores). Default 64; 1..=`links_max`.
    connections_per_peer_max: usize = 64, 1, 1 << 20;
    /// Connections in all, per core (dialled and accepted, authenticated or not). Default
    /// 4096; 1..=1048576.
    links_max: usize = 4096, 1, 1 << 20;
    /// Milliseconds a new connection has to authenticate before it is closed. Default 10000;
    /// 1..=3600000.
    auth_timeout_ms: u64 = 10_000, 1, HOUR_MS;
    /// Unreadable BTP frames from one connection before it is closed. Default 10;
    /// 1..=1048576.
    bad_frames_max: u32 = 10, 1, 1 << 20;
    /// The expiry wheel's tick, in milliseconds: Prepares expire at most this late. Default 5;
    /// 1..=60000, and at most `min_message_window_ms`.
    tick_ms: u32 = 5, 1, 60_000;
    /// Microseconds an idle core's executor spins before it parks; 0 parks at once (least
    /// CPU, most latency). Default 50; 0..=1000000.
    spin_us: u64 = 50, 0, 1_000_000;
    /// Milliseconds in-flight Prepares get to resolve at shutdown before links close.
    /// Default 5000; 1..=3600000.
    shutdown_grace_ms: u64 = 5000, 1, HOUR_MS;
    /// First delay before redialling a peer we dial, in milliseconds; doubles up to
    /// `reconnect_max_ms`. Default 100; 1..=3600000.
    reconnect_min_ms: u64 = 100, 1, HOUR_MS;
    /// Longest delay between redials, in milliseconds. Default 10000; 1..=86400000, and at
    /// least `reconnect_min_ms`.
    reconnect_max_ms: u64 = 10_000, 1, DAY_MS;
    /// A core that is not a peer's home leases `max_balance / lease_chunk_divisor` (at least
    /// 1) of the peer's balance headroom at a time: larger means fewer lease messages between
    /// cores, smaller means less headroom stranded on idle cores. Default 16; 1..=1048576.
    lease_chunk_divisor: u64 = 16, 1, 1 << 20;
    /// HTTP connections each core keeps to a peer it sends Prepares to over HTTP
    /// (`http_url`). Default 64; 1..=4096.
    http_connections_per_peer_max: usize = 64, 1, 4096;
    /// Requests pipelined on each of those connections (answers come back in order; 1 sends
    /// one request at a time, for servers that do not take pipelined requests). Default 16;
    /// 1..=1024.
    http_requests_per_connection_max: usize = 16, 1, 1024;
}

/// The checks between limits, and against the message window.
fn check_limits(limits: &Limits, min_message_window_ms: u64) -> Result<(), ConfigError> {
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
    if limits.reconnect_min_ms > limits.reconnect_max_ms {
        return Err(ConfigError::invalid(
            "limits.reconnect_min_ms",
            format!(
                "{} is over limits.reconnect_max_ms ({})",
                limits.reconnect_min_ms, limits.reconnect_max_ms
            ),
        ));
    }
    if limits.connections_per_peer_max > limits.links_max {
        return Err(ConfigError::invalid(
            "limits.connections_per_peer_max",
            format!(
                "{} is over limits.links_max ({})",
                limits.connections_per_peer_max, limits.links_max
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ilp_address: String,
    spread: Option<String>,
    default_route: Option<String>,
    min_message_window_ms: Option<u64>,
    max_hold_time_ms: Option<u64>,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    peers: Vec<RawPeer>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    rates: BTreeMap<String, String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    state: RawState,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Option<PathBuf>,
    msync_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    btp: Option<String>,
    http: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    #[serde(default)]
    auth_tokens: Vec<String>,
    relation: String,
    asset_code: String,
    asset_scale: u64,
    max_balance: String,
    max_packet_amount: Option<String>,
    btp_url: Option<String>,
    outgoing_token: Option<String>,
    outgoing_username: Option<String>,
    btp_dial: Option<String>,
    http_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    peer: String,
}

// ---------------------------------------------------------------------------------------------
// Validated form
// ---------------------------------------------------------------------------------------------

/// A secret from the config (a BTP auth token). `Debug` does not print it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret's bytes (as BTP carries them).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Our business relation with a peer: who is upstream of whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// Downstream of us: gets addresses under ours.
    Child,
    /// A sibling.
    Peer,
    /// Upstream of us.
    Parent,
}

impl Relation {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Child => "child",
            Relation::Peer => "peer",
            Relation::Parent => "parent",
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where to dial a peer: `ws://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtpUrl {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request path, from `/` (`/` when the URL had none).
    pub path: String,
}

impl fmt::Display for BtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "ws://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "ws://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// How we dial a peer: set by `btp_url`, `outgoing_token` and `outgoing_username`.
#[derive(Debug, Clone)]
pub struct Dial {
    /// Where.
    pub url: BtpUrl,
    /// The `auth_token` we present.
    pub token: Secret,
    /// The `auth_username` we present (empty by default).
    pub username: String,
    /// `btp_dial = "per_core"` (the default): every core dials its own connection, so
    /// traffic to the peer never crosses cores. `"single"`: only the peer's home core dials
    /// and the other cores hand their Prepares over; for BTP servers that keep one
    /// connection per account and drop the older ones (ilp-plugin-btp, ilp-plugin-mini-accounts).
    pub per_core: bool,
}

/// One `[[peers]]` entry, checked.
///
/// A peer whose `asset_code` has no entry in `[rates]` is allowed, but only same-asset
/// forwarding works for it: a Prepare between it and a peer of another asset code is rejected
/// (T00), because there is no rate. [`Config::warnings`] lists such peers.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its index in every per-peer table.
    pub id: PeerId,
    /// Its name: the BTP `auth_username` it presents, and the last segment of its address.
    pub name: String,
    /// Its ILP address, `<ilp_address>.<name>`.
    pub address: String,
    /// Tokens it may present when it dials in (several, for rotation). A peer that presents
    /// an empty username is identified by its token, so no two peers share one. Empty only
    /// for a peer we dial and that never dials us.
    pub auth_tokens: Vec<Secret>,
    /// Our relation.
    pub relation: Relation,
    /// Its asset code (as in `[rates]`, case-sensitive).
    pub asset_code: String,
    /// Amounts on its links are in units of 10^-scale (`0..=`[`Rate::SCALE_MAX`]).
    pub asset_scale: u8,
    /// How much it may owe us: incoming holds plus posted balance.
    pub max_balance: u64,
    /// The largest amount one Prepare from it may carry (`u64::MAX` by default).
    pub max_packet_amount: u64,
    /// Set when we dial this peer over BTP.
    pub dial: Option<Dial>,
    /// Set when we send this peer its Prepares over HTTP.
    pub http: Option<HttpDial>,
}

/// How we send a peer its Prepares over HTTP (RFC 35): POST to `url`, `Bearer <token>`.
#[derive(Debug, Clone)]
pub struct HttpDial {
    /// Where: host, port and the path, sent verbatim.
    pub url: BtpUrl,
    /// The token after `Bearer ` (verbatim: it may contain `:`).
    pub token: Secret,
}

/// One route: destinations equal to `prefix` or under it (on a segment boundary) go to `peer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The prefix: an ILP address or a bare scheme (`g`, `test`, …).
    pub prefix: String,
    /// The next hop.
    pub peer: PeerId,
    /// Added for a peer's own address (`<ilp_address>.<name>`), not written in `[[routes]]`.
    pub implicit: bool,
}

/// The router's validated configuration; see the module docs.
#[derive(Debug, Clone)]
pub struct Config {
    ilp_address: String,
    spread: Decimal,
    default_route: Option<PeerId>,
    min_message_window_ms: u64,
    max_hold_time_ms: u64,
    listen_btp: Option<SocketAddr>,
    listen_http: Option<SocketAddr>,
    peers: Vec<Peer>,
    peer_ids: HashMap<String, PeerId>,
    routes: Vec<Route>,
    route_table: RouteTable,
    rates: Vec<(String, Decimal)>,
    limits: Limits,
    state: StateConfig,
}

/// `[state]`: where durable balances live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// The directory of the ledger files; `None` keeps balances in memory only.
    pub dir: Option<PathBuf>,
    /// How often the files are synced to disk, in ms; 0 = never (a graceful stop still syncs).
    pub msync_interval_ms: u64,
}

/// The default of `state.msync_interval_ms`.
pub const MSYNC_INTERVAL_MS_DEFAULT: u64 = 1000;

impl Config {
    /// Reads and checks the config file at `path`; every error names the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and checks a config given as TOML text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::syntax(text, &e))?;
        Config::validate(raw)
    }

    /// Our ILP address.
    pub fn ilp_address(&self) -> &str {
        &self.ilp_address
    }

    /// The fraction kept on each conversion, in `[0, 1)`.
    pub fn spread(&self) -> Decimal {
        self.spread
    }

    /// The peer that gets destinations in our scheme that no route matches.
    pub fn default_route(&self) -> Option<PeerId> {
        self.default_route
    }

    /// Taken off each hop's expiry; the least time a Prepare must have left.
    pub fn min_message_window_ms(&self) -> u64 {
        self.min_message_window_ms
    }

    /// The longest we hold a Prepare.
    pub fn max_hold_time_ms(&self) -> u64 {
        self.max_hold_time_ms
    }

    /// Where peers dial in (BTP over WebSocket), if anywhere.
    pub fn listen_btp(&self) -> Option<SocketAddr> {
        self.listen_btp
    }

    /// Where peers POST ILP over HTTP (RFC 35), if anywhere.
    pub fn listen_http(&self) -> Option<SocketAddr> {
        self.listen_http
    }

    /// Every peer, indexed by [`PeerId`].
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The peer `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not one of this config's peers.
    pub fn peer(&self, id: PeerId) -> &Peer {
        &self.peers[id.index()]
    }

    /// The id of the peer named `name`.
    pub fn peer_id(&self, name: &str) -> Option<PeerId> {
        self.peer_ids.get(name).copied()
    }

    /// Every route: those of `[[routes]]` in file order, then the implicit ones.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route table: [`routes`](Self::routes) plus the default route.
    pub fn route_table(&self) -> RouteTable {
        self.route_table.clone()
    }

    /// The price of each asset code (value of one whole unit), sorted by code.
    pub fn rates(&self) -> &[(String, Decimal)] {
        &self.rates
    }

    /// The price of `asset_code`, if `[rates]` has one.
    pub fn rate(&self, asset_code: &str) -> Option<Decimal> {
        self.rates
            .iter()
            .find(|(code, _)| code == asset_code)
            .map(|&(_, price)| price)
    }

    /// Capacities and timers.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Durable balances.
    pub fn state(&self) -> &StateConfig {
        &self.state
    }

    /// Overrides `state.dir` (from `--state-dir`).
    pub fn set_state_dir(&mut self, dir: PathBuf) {
        self.state.dir = Some(dir);
    }

    /// Overrides `state.msync_interval_ms` (from `--msync-interval-ms`).
    pub fn set_msync_interval_ms(&mut self, ms: u64) {
        self.state.msync_interval_ms = ms;
    }

    /// Overrides the limit `key` (e.g. from a CLI flag) with every check of the file: the
    /// limit's range and the checks between limits. On error nothing changes.
    pub fn set_limit(&mut self, key: &str, value: u64) -> Result<(), ConfigError> {
        let mut limits = self.limits.clone();
        limits.set(key, value)?;
        check_limits(&limits, self.min_message_window_ms)?;
        self.limits = limits;
        Ok(())
    }

    /// The core whose balance shard is authoritative for `peer` when `cores` cores run:
    /// peer `i` lives on core `i % cores`.
    ///
    /// # Panics
    ///
    /// If `cores` is 0 or over 65536.
    pub fn home_core(&self, peer: PeerId, cores: usize) -> CoreId {
        assert!(
            (1..=usize::from(u16::MAX) + 1).contains(&cores),
            "{cores} cores"
        );
        let home = u16::try_from(peer.index() % cores).expect("cores <= 65536");
        CoreId(home)
    }

    /// The engine configuration of `core` among `cores` cores. Every core gets the same
    /// peers, routes, prices and home cores; only `core` differs.
    ///
    /// # Panics
    ///
    /// If `cores` is 0 or over 65536, or `core` is not below `cores`.
    pub fn engine_config(&self, core: CoreId, cores: usize) -> EngineConfig {
        assert!(usize::from(core.0) < cores, "core {core:?} of {cores}");
        let divisor = self.limits.lease_chunk_divisor;
        let peers = self
            .peers
            .iter()
            .map(|p| PeerConfig {
                asset_code: p.asset_code.clone(),
                asset_scale: p.asset_scale,
                max_packet_amount: p.max_packet_amount,
                max_balance: p.max_balance,
                home: self.home_core(p.id, cores),
                lease_chunk: (p.max_balance / divisor).max(1),
                posted: 0,
            })
            .collect();
        EngineConfig {
            address: self.ilp_address.as_bytes().to_vec(),
            peers,
            routes: self.route_table(),
            prices: self.rates.clone(),
            spread: self.spread,
            min_message_window_ms: self.min_message_window_ms,
            max_hold_time_ms: self.max_hold_time_ms,
            pending_max: self.limits.pending_per_core_max,
            tick_ms: self.limits.tick_ms,
            core,
            cores,
        }
    }

    /// Things that are allowed but probably not meant, one sentence each, for the log at
    /// start: peers whose asset has no price while other assets are configured.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let several_assets = self.peers.iter().any(|p| {
            self.peers
                .first()
                .is_some_and(|q| q.asset_code != p.asset_code)
        });
        if several_assets {
            for p in &self.peers {
                if self.rate(&p.asset_code).is_none() {
                    warnings.push(format!(
                        "peers[{}] ({}): asset {:?} has no entry in [rates]; only peers with \
                         the same asset code can exchange packets with it",
                        p.id.index(),
                        p.name,
                        p.asset_code
                    ));
                }
            }
        }
        warnings
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        // Our address.
        let ilp_address = raw.ilp_address;
        if check_address(ilp_address.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                "ilp_address",
                format!("{ilp_address:?} is not a valid ILP address: {ADDRESS_HELP}"),
            ));
        }

        // Spread.
        let spread_text = raw.spread.as_deref().unwrap_or("0");
        let spread = Decimal::parse(spread_text).map_err(|e| {
            ConfigError::invalid(
                "spread",
                format!("{spread_text:?} is not a decimal number: {e}"),
            )
        })?;
        // 10^fraction_digits fits u128: fraction_digits <= 38.
        if spread.mantissa() >= 10u128.pow(u32::from(spread.fraction_digits())) {
            return Err(ConfigError::invalid(
                "spread",
                format!(
                    "{spread} is not below 1: it is the fraction kept on each conversion, \
                     in [0, 1) (e.g. \"0.002\" keeps 0.2 %)"
                ),
            ));
        }

        // Timing.
        let min_message_window_ms = raw.min_message_window_ms.unwrap_or(1000);
        let max_hold_time_ms = raw.max_hold_time_ms.unwrap_or(30_000);
        if min_message_window_ms == 0 {
            return Err(ConfigError::invalid(
                "min_message_window_ms",
                "0 is below the minimum 1",
            ));
        }
        if max_hold_time_ms > DAY_MS {
            return Err(ConfigError::invalid(
                "max_hold_time_ms",
                format!("{max_hold_time_ms} is over the maximum {DAY_MS} (one day)"),
            ));
        }
        if min_message_window_ms > max_hold_time_ms {
            return Err(ConfigError::invalid(
                "min_message_window_ms",
                format!(
                    "{min_message_window_ms} is over max_hold_time_ms ({max_hold_time_ms}): \
                     no Prepare could ever be forwarded"
                ),
            ));
        }

        // Limits.
        let limits = Limits::from_raw(raw.limits)?;
        check_limits(&limits, min_message_window_ms)?;

        // Listener.
        let listen_address = |key: &str, text: Option<String>| match text {
            None => Ok(None),
            Some(text) => text.parse::<SocketAddr>().map(Some).map_err(|_| {
                ConfigError::invalid(
                    key,
                    format!(
                        "{text:?} is not an IP address and port, e.g. \"127.0.0.1:7768\" or \
                         \"[::]:7768\" (host names are not resolved)"
                    ),
                )
            }),
        };
        let listen_btp = listen_address("listen.btp", raw.listen.btp)?;
        let listen_http = listen_address("listen.http", raw.listen.http)?;
        if listen_btp.is_some() && listen_btp == listen_http {
            return Err(ConfigError::invalid(
                "listen.http",
                "the same address as listen.btp",
            ));
        }

        // Peers.
        if raw.peers.len() > usize::from(u16::MAX) {
            return Err(ConfigError::invalid(
                "peers",
                format!("{} peers, at most {}", raw.peers.len(), u16::MAX),
            ));
        }
        let mut peers = Vec::with_capacity(raw.peers.len());
        let mut peer_ids: HashMap<String, PeerId> = HashMap::with_capacity(raw.peers.len());
        // Token -> (peer index, token index), to find tokens shared between peers.
        let mut tokens: HashMap<String, (usize, usize)> = HashMap::new();
        for (i, raw_peer) in raw.peers.into_iter().enumerate() {
            let id = PeerId(u16::try_from(i).expect("peer count checked"));
            let listening = listen_btp.is_some() || listen_http.is_some();
            let peer = check_peer(i, id, raw_peer, &ilp_address, listening)?;
            if let Some(&first) = peer_ids.get(&peer.name) {
                return Err(ConfigError::invalid(
                    format!("peers[{i}].name"),
                    format!(
                        "{:?} is already the name of peers[{}]; names must be unique",
                        peer.name,
                        first.index()
                    ),
                ));
            }
            for (j, token) in peer.auth_tokens.iter().enumerate() {
                if let Some(&(other, other_j)) = tokens.get(token.expose()) {
                    let message = if other == i {
                        format!("the same token as peers[{i}].auth_tokens[{other_j}]")
                    } else {
                        format!(
                            "the same token as peers[{other}].auth_tokens[{other_j}]: peers \
                             {:?} and {:?} share a token, but a peer that presents an empty \
                             username is identified by its token, so each token must belong \
                             to one peer",
                            peers.get(other).map_or("", |p: &Peer| p.name.as_str()),
                            peer.name
                        )
                    };
                    return Err(ConfigError::invalid(
                        format!("peers[{i}].auth_tokens[{j}]"),
                        message,
                    ));
                }
                tokens.insert(token.expose().to_owned(), (i, j));
            }
            peer_ids.insert(peer.name.clone(), id);
            peers.push(peer);
        }
        let peer_named = |key: String, name: &str| -> Result<PeerId, ConfigError> {
            peer_ids.get(name).copied().ok_or_else(|| {
                let known: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
                let known = if known.is_empty() {
                    "there are no peers".to_owned()
                } else {
                    format!("the peers are {}", known.join(", "))
                };
                ConfigError::invalid(key, format!("no peer is named {name:?}; {known}"))
            })
        };

        // Routes: the configured ones, then one per peer for its own address.
        let mut routes = Vec::with_capacity(raw.routes.len() + peers.len());
        for (k, route) in raw.routes.into_iter().enumerate() {
            let peer = peer_named(format!("routes[{k}].peer"), &route.peer)?;
            routes.push(Route {
                prefix: route.prefix,
                peer,
                implicit: false,
            });
        }
        let explicit = routes.len();
        for peer in &peers {
            if !routes[..explicit].iter().any(|r| r.prefix == peer.address) {
                routes.push(Route {
                    prefix: peer.address.clone(),
                    peer: peer.id,
                    implicit: true,
                });
            }
        }
        let default_route = match raw.default_route {
            None => None,
            Some(name) => Some(peer_named("default_route".to_owned(), &name)?),
        };
        let route_table = RouteTable::build(
            ilp_address.as_bytes(),
            routes.iter().map(|r| (r.prefix.as_bytes(), r.peer)),
            default_route,
        )
        .map_err(|e| route_error(e, &routes))?;

        // Prices.
        let mut rates = Vec::with_capacity(raw.rates.len());
        for (code, text) in raw.rates {
            let key = format!("rates.{}", toml_key(&code));
            let price = Decimal::parse(&text).map_err(|e| {
                ConfigError::invalid(&key, format!("{text:?} is not a decimal number: {e}"))
            })?;
            if price.is_zero() {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "zero; a price is the value of one whole {code} in a common unit and \
                         must be above 0 (leave the asset out to forward it only to peers of \
                         the same asset)"
                    ),
                ));
            }
            rates.push((code, price));
        }
        check_rates(&peers, &rates, spread)?;

        let state = StateConfig {
            dir: raw.state.dir,
            msync_interval_ms: raw
                .state
                .msync_interval_ms
                .unwrap_or(MSYNC_INTERVAL_MS_DEFAULT),
        };
        if state.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(ConfigError::invalid(
                "state.dir",
                "empty; name a directory, or leave [state] out to keep balances in memory",
            ));
        }

        Ok(Config {
            ilp_address,
            spread,
            default_route,
            min_message_window_ms,
            max_hold_time_ms,
            listen_btp,
            listen_http,
            peers,
            peer_ids,
            routes,
            route_table,
            rates,
            limits,
            state,
        })
    }
}

const ADDRESS_HELP: &str = "write a scheme (g, test, private, example, local, …) and one or \
     more segments of A-Z a-z 0-9 _ ~ -, separated by dots, at most 1023 bytes, e.g. \"g.router\"";

/// Checks one `[[peers]]` entry on its own (uniqueness is the caller's).
fn check_peer(
    i: usize,
    id: PeerId,
    raw: RawPeer,
    ilp_address: &str,
    listening: bool,
) -> Result<Peer, ConfigError> {
    let key = |field: &str| format!("peers[{i}].{field}");

    // Name.
    let name = raw.name;
    if name.is_empty() {
        return Err(ConfigError::invalid(
            key("name"),
            "empty; a peer needs a name of A-Z a-z 0-9 _ ~ - (it is the BTP username it \
             presents and the last segment of its ILP address)",
        ));
    }
    if let Some((at, ch)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '~' | '-')))
    {
        return Err(ConfigError::invalid(
            key("name"),
            format!(
                "{name:?} has {ch:?} at byte {at}; a name may only hold A-Z a-z 0-9 _ ~ - \
                 (it becomes the last segment of the ILP address {ilp_address}.<name>)"
            ),
        ));
    }
    let address = format!("{ilp_address}.{name}");
    if check_address(address.as_bytes()).is_err() {
        return Err(ConfigError::invalid(
            key("name"),
            format!(
                "{name:?} makes the peer's address {} bytes long, over the maximum \
                 {ADDRESS_LEN_MAX}",
                address.len()
            ),
        ));
    }

    // Tokens.
    let mut auth_tokens = Vec::with_capacity(raw.auth_tokens.len());
    for (j, token) in raw.auth_tokens.into_iter().enumerate() {
        if token.is_empty() {
            return Err(ConfigError::invalid(
                format!("peers[{i}].auth_tokens[{j}]"),
                "empty token; remove it or write the token",
            ));
        }
        auth_tokens.push(Secret(token));
    }

    // Relation and asset.
    let relation = match raw.relation.as_str() {
        "child" => Relation::Child,
        "peer" => Relation::Peer,
        "parent" => Relation::Parent,
        other => {
            return Err(ConfigError::invalid(
                key("relation"),
                format!("{other:?} is not one of \"child\", \"peer\", \"parent\""),
            ))
        }
    };
    let asset_code = raw.asset_code;
    if asset_code.is_empty() {
        return Err(ConfigError::invalid(
            key("asset_code"),
            "empty; write the asset's code as in [rates], e.g. \"USD\"",
        ));
    }
    if asset_code.trim() != asset_code {
        return Err(ConfigError::invalid(
            key("asset_code"),
            format!("{asset_code:?} has leading or trailing whitespace"),
        ));
    }
    let asset_scale = match u8::try_from(raw.asset_scale) {
        Ok(scale) if scale <= Rate::SCALE_MAX => scale,
        _ => {
            return Err(ConfigError::invalid(
                key("asset_scale"),
                format!(
                    "{} is over the maximum {}",
                    raw.asset_scale,
                    Rate::SCALE_MAX
                ),
            ))
        }
    };

    // Amounts.
    let max_balance = parse_amount(&key("max_balance"), &raw.max_balance)?;
    let max_packet_amount = match &raw.max_packet_amount {
        None => u64::MAX,
        Some(text) => parse_amount(&key("max_packet_amount"), text)?,
    };

    // Dialling: over BTP (btp_url) or over HTTP (http_url), with outgoing_token.
    let token = |url_key: &str| match raw.outgoing_token.clone() {
        None => Err(ConfigError::invalid(
            key("outgoing_token"),
            format!("required with {url_key}: the token we present to {name:?}"),
        )),
        Some(token) if token.is_empty() => {
            Err(ConfigError::invalid(key("outgoing_token"), "empty token"))
        }
        Some(token) => Ok(Secret(token)),
    };
    let (dial, http) = match (raw.btp_url.as_deref(), raw.http_url.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                key("http_url"),
                "set together with btp_url: a peer we dial has one transport",
            ))
        }
        (None, None) => {
            for (field, set) in [
                ("outgoing_token", raw.outgoing_token.is_some()),
                ("outgoing_username", raw.outgoing_username.is_some()),
                ("btp_dial", raw.btp_dial.is_some()),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        key(field),
                        format!(
                            "set, but neither peers[{i}].btp_url nor peers[{i}].http_url is: it \
                             is only used when we dial the peer"
                        ),
                    ));
                }
            }
            (None, None)
        }
        (None, Some(text)) => {
            for (field, set) in [
                ("outgoing_username", raw.outgoing_username.is_some()),
                ("btp_dial", raw.btp_dial.is_some()),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        key(field),
                        "only used with btp_url, not http_url",
                    ));
                }
            }
            let url = parse_http_url(&key("http_url"), text)?;
            (
                None,
                Some(HttpDial {
                    url,
                    token: token("http_url")?,
                }),
            )
        }
        (Some(text), None) => {
            let url = parse_btp_url(&key("btp_url"), text)?;
            let token = token("btp_url")?;
            let per_core = match raw.btp_dial.as_deref() {
                None | Some("per_core") => true,
                Some("single") => false,
                Some(other) => {
                    return Err(ConfigError::invalid(
                        key("btp_dial"),
                        format!("{other:?}: use \"per_core\" or \"single\""),
                    ))
                }
            };
            let dial = Dial {
                url,
                token,
                username: raw.outgoing_username.clone().unwrap_or_default(),
                per_core,
            };
            (Some(dial), None)
        }
    };
    if dial.is_none() && http.is_none() {
        if auth_tokens.is_empty() {
            return Err(ConfigError::invalid(
                key("auth_tokens"),
                format!(
                    "no token, so {name:?} could never authenticate: give at least one, or \
                     set btp_url for a peer that we dial"
                ),
            ));
        }
        if !listening {
            return Err(ConfigError::invalid(
                key("btp_url"),
                format!(
                    "not set, and listen.btp is not set either, so {name:?} could never \
                     connect: set listen.btp for peers to dial in, or btp_url to dial it"
                ),
            ));
        }
    }

    Ok(Peer {
        id,
        name,
        address,
        auth_tokens,
        relation,
        asset_code,
        asset_scale,
        max_balance,
        max_packet_amount,
        dial,
        http,
    })
}

/// An amount: a string of decimal digits that fits `u64`.
fn parse_amount(key: &str, text: &str) -> Result<u64, ConfigError> {
    const HELP: &str = "write a whole number of the peer's units as a string of digits only \
                        (no sign, spaces, separators, point or exponent), e.g. \"1000000\"";
    if text.is_empty() {
        return Err(ConfigError::invalid(key, format!("empty; {HELP}")));
    }
    if let Some((at, ch)) = text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?} is not a whole number ({ch:?} at byte {at}); {HELP}"),
        ));
    }
    text.parse::<u64>()
        .map_err(|_| ConfigError::invalid(key, format!("{text} is over the maximum {}", u64::MAX)))
}

/// `ws://host:port[/path]`, also with a `btp+` prefix.
/// `http://host:port[/path]` (no TLS: it terminates in front of the router).
fn parse_http_url(key: &str, text: &str) -> Result<BtpUrl, ConfigError> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?}: https:// is not supported: TLS terminates in front of the router; POST to a local TLS proxy at an http:// address"),
        ));
    }
    let Some(rest) = lower
        .starts_with("http://")
        .then(|| &text["http://".len()..])
    else {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?}: not an http:// URL; write http://host:port[/path]"),
        ));
    };
    parse_btp_url(key, &format!("ws://{rest}")).map_err(|e| match e {
        ConfigError::Invalid { file, key, message } => ConfigError::Invalid {
            file,
            key,
            message: message
                .replace(&format!("ws://{rest}"), text)
                .replace("ws://host", "http://host"),
        },
        other => other,
    })
}

fn parse_btp_url(key: &str, text: &str) -> Result<BtpUrl, ConfigError> {
    const FORM: &str = "write ws://host:port[/path]";
    let invalid = |what: String| ConfigError::invalid(key, format!("{text:?}: {what}"));
    let lower = text.to_ascii_lowercase();
    let lower = lower.strip_prefix("btp+").unwrap_or(&lower);
    if lower.starts_with("wss://") {
        return Err(invalid(
            "wss:// is not supported: the router speaks plain WebSocket and TLS terminates in \
             front of it; dial a local TLS proxy (e.g. stunnel or Envoy) at a ws:// address \
             and let it make the wss:// connection"
                .to_owned(),
        ));
    }
    if !lower.starts_with("ws://") {
        return Err(invalid(format!("not a ws:// URL; {FORM}")));
    }
    // The scheme is ASCII, so its length is the same in `text`.
    let rest = &text[text.len() - lower.len() + "ws://".len()..];
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if let Some(ch) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!("the path holds {ch:?}; {FORM}")));
    }
    if authority.contains('@') {
        return Err(invalid(
            "credentials in the URL are not used: put the token in outgoing_token and the \
             username in outgoing_username"
                .to_owned(),
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((ip, port)) = bracketed.split_once("]:") else {
            return Err(invalid(format!(
                "an IPv6 host must be written [addr]:port; {FORM}"
            )));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(invalid(format!("{ip:?} is not an IPv6 address")));
        }
        (ip, port)
    } else {
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(invalid(format!("no port; {FORM}")));
        };
        if host.is_empty() {
            return Err(invalid(format!("no host; {FORM}")));
        }
        if let Some(ch) = host
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(invalid(format!(
                "the host holds {ch:?}; a host is a DNS name, an IPv4 address or [IPv6]"
            )));
        }
        (host, port)
    };
    // Digits only: `u16::from_str` would also take a leading `+`.
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let port = match port.parse::<u16>() {
        Ok(number) if digits && number > 0 => number,
        _ => return Err(invalid(format!("{port:?} is not a port (1..=65535)"))),
    };
    Ok(BtpUrl {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// Maps a route table error to the key of the route at fault.
fn route_error(error: RouteError, routes: &[Route]) -> ConfigError {
    // The index of a route in `routes`, as the key that made it.
    let explicit = routes.iter().take_while(|r| !r.implicit).count();
    let key = |index: usize| {
        if index < explicit {
            format!("routes[{index}].prefix")
        } else {
            format!("peers[{}].name", routes[index].peer.index())
        }
    };
    match error {
        RouteError::InvalidOwnAddress { address } => ConfigError::invalid(
            "ilp_address",
            format!(
                "\"{}\" is not a valid ILP address: {ADDRESS_HELP}",
                address.escape_ascii()
            ),
        ),
        RouteError::InvalidPrefix { index, prefix } => ConfigError::invalid(
            key(index),
            format!(
                "\"{}\" is neither an ILP address nor a bare scheme (g, test, private, \
                 example, local, …): {ADDRESS_HELP}",
                prefix.escape_ascii()
            ),
        ),
        RouteError::DuplicatePrefix {
            first,
            second,
            prefix,
        } => ConfigError::invalid(
            key(second),
            format!(
                "\"{}\" is also the prefix of {}; each prefix may have one route",
                prefix.escape_ascii(),
                key(first).strip_suffix(".prefix").unwrap_or(&key(first))
            ),
        ),
        RouteError::TooManyRoutes { max } => {
            ConfigError::invalid("routes", format!("more than {max} routes"))
        }
    }
}

/// Checks that every pair of peer assets the engine may convert between has an exact rate.
fn check_rates(
    peers: &[Peer],
    rates: &[(String, Decimal)],
    spread: Decimal,
) -> Result<(), ConfigError> {
    let price = |code: &str| rates.iter().find(|(c, _)| c == code).map(|&(_, p)| p);
    // Distinct (code, scale), with the first peer that has it.
    let mut assets: Vec<(&str, u8, usize)> = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        if !assets
            .iter()
            .any(|&(c, s, _)| c == p.asset_code && s == p.asset_scale)
        {
            assets.push((&p.asset_code, p.asset_scale, i));
        }
    }
    for &(code_in, scale_in, peer_in) in &assets {
        for &(code_out, scale_out, peer_out) in &assets {
            let (price_in, price_out, key) = if code_in == code_out {
                (Decimal::ONE, Decimal::ONE, "spread".to_owned())
            } else {
                match (price(code_in), price(code_out)) {
                    (Some(a), Some(b)) => (a, b, format!("rates.{}", toml_key(code_in))),
                    _ => continue,
                }
            };
            if let Err(e) = Rate::new(price_in, scale_in, price_out, scale_out, spread) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "no exact rate from {code_in} at scale {scale_in} (peers[{peer_in}]) \
                         to {code_out} at scale {scale_out} (peers[{peer_out}]) with spread \
                         {spread}: {e}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `code` as a TOML key: bare when it can be, quoted otherwise.
fn toml_key(code: &str) -> String {
    let bare = !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if bare {
        code.to_owned()
    } else {
        format!("{code:?}")
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::engine::Engine;

    /// A small valid config; tests append to it or replace lines in it.
    const BASE: &str = r#"
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:7768"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "parent"
asset_code = "EUR"
asset_scale = 6
max_balance = "2000"
[rates]
USD = "1"
EUR = "1.08"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text)
    }

    /// `BASE` with `from` replaced by `to` (which must occur once).
    fn with(from: &str, to: &str) -> String {
        assert_eq!(
            BASE.matches(from).count(),
            1,
            "{from:?} occurs once in BASE"
        );
        BASE.replacen(from, to, 1)
    }

    /// The error of `text`, which must be refused; also checks the message names `key`.
    #[track_caller]
    fn error(text: &str, key: &str) -> String {
        let e = parse(text).expect_err("must be refused");
        let message = e.to_string();
        assert!(message.contains(key), "{message:?} should name {key:?}");
        message
    }

    #[track_caller]
    fn assert_has(message: &str, part: &str) {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }

    #[test]
    fn state_table() {
        let base = EXAMPLE.split("\n[state]").next().unwrap();
        let config = parse(base).unwrap();
        assert_eq!(config.state().dir, None, "no [state]: balances in memory");
        assert_eq!(config.state().msync_interval_ms, MSYNC_INTERVAL_MS_DEFAULT);
        let config = parse(&format!("{base}\n[state]\ndir = \"s\"\n")).unwrap();
        assert_eq!(config.state().dir, Some(PathBuf::from("s")));
        let mut config = parse(&format!("{base}\n[state]\nmsync_interval_ms = 0\n")).unwrap();
        assert_eq!(
            (config.state().dir.clone(), config.state().msync_interval_ms),
            (None, 0)
        );
        config.set_state_dir(PathBuf::from("t"));
        config.set_msync_interval_ms(5);
        assert_eq!(config.state().dir, Some(PathBuf::from("t")));
        assert_eq!(config.state().msync_interval_ms, 5);
        let error = parse(&format!("{base}\n[state]\ndirectory = \"s\"\n")).unwrap_err();
        assert!(error.to_string().contains("directory"), "{error}");
        let error = parse(&format!("{base}\n[state]\ndir = \"\"\n")).unwrap_err();
        assert!(error.to_string().contains("state.dir"), "{error}");
    }

    #[test]
    fn example_parses() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.ilp_address(), "g.example.router");
        assert_eq!(config.spread(), Decimal::parse("0.002").unwrap());
        assert_eq!(config.listen_btp(), Some("127.0.0.1:7768".parse().unwrap()));
        let alice = config.peer_id("alice").unwrap();
        let bob = config.peer_id("bob").unwrap();
        assert_eq!((alice, bob), (PeerId(0), PeerId(1)));
        assert_eq!(config.default_route(), Some(bob));
        let a = config.peer(alice);
        assert_eq!(a.address, "g.example.router.alice");
        assert_eq!(a.relation, Relation::Child);
        assert_eq!(a.auth_tokens.len(), 2);
        assert_eq!(a.auth_tokens[0].expose(), "alice-token-2");
        assert_eq!(a.max_balance, 1_000_000_000_000);
        assert_eq!(a.max_packet_amount, 10_000_000_000);
        assert!(a.dial.is_none());
        let b = config.peer(bob);
        assert_eq!(b.relation, Relation::Parent);
        assert!(b.auth_tokens.is_empty());
        assert_eq!(b.max_packet_amount, u64::MAX);
        let dial = b.dial.as_ref().unwrap();
        assert_eq!(dial.url.to_string(), "ws://127.0.0.1:9000/");
        assert_eq!(dial.token.expose(), "router-token-at-bob");
        assert_eq!(dial.username, "router");
        assert_eq!(config.rate("EUR"), Some(Decimal::parse("1.08").unwrap()));
        assert_eq!(
            config.state(),
            &StateConfig {
                dir: Some(PathBuf::from("/var/lib/ilp-router")),
                msync_interval_ms: 1000
            }
        );
        assert_eq!(config.limits().connections_per_peer_max, 8);
        assert_eq!(config.limits().reconnect_max_ms, 30_000);
        assert_eq!(config.limits().tick_ms, 5);
        assert!(config.warnings().is_empty());
        let table = config.route_table();
        assert_eq!(table.lookup(b"g.bob.x"), Some(bob));
        assert_eq!(table.lookup(b"g.example.router.alice.x"), Some(alice));
        assert_eq!(table.lookup(b"g.elsewhere"), Some(bob));
        assert_eq!(table.lookup(b"test.elsewhere"), None);
    }

    #[test]
    fn defaults() {
        let config = parse(BASE).unwrap();
        assert!(config.spread().is_zero());
        assert_eq!(config.default_route(), None);
        assert_eq!(config.min_message_window_ms(), 1000);
        assert_eq!(config.max_hold_time_ms(), 30_000);
        assert_eq!(config.limits(), &Limits::default());
        let alice = config.peer(PeerId(0));
        assert_eq!(alice.max_packet_amount, u64::MAX);
        assert!(alice.dial.is_none());
        let limits = Limits::default();
        let expected: [(&str, u64); 16] = [
            ("pending_per_core_max", 65_536),
            ("in_flight_per_link_max", 4096),
            ("ring_capacity", 8192),
            ("frame_len_max", 65_536),
            ("connections_per_peer_max", 64),
            ("links_max", 4096),
            ("auth_timeout_ms", 10_000),
            ("bad_frames_max", 10),
            ("tick_ms", 5),
            ("spin_us", 50),
            ("shutdown_grace_ms", 5000),
            ("reconnect_min_ms", 100),
            ("reconnect_max_ms", 10_000),
            ("lease_chunk_divisor", 16),
            ("http_connections_per_peer_max", 64),
            ("http_requests_per_connection_max", 16),
        ];
        assert_eq!(Limits::KEYS.len(), expected.len());
        for (key, value) in expected {
            assert_eq!(limits.get(key), Some(value), "{key}");
            let (min, max) = Limits::range(key).unwrap();
            assert!(min <= value && value <= max, "{key}");
        }
        check_limits(&limits, 1000).unwrap();
    }

    #[test]
    fn no_peers_is_allowed() {
        let config = parse("ilp_address = \"g.router\"\n").unwrap();
        assert!(config.peers().is_empty());
        assert!(config.route_table().is_empty());
    }

    #[test]
    fn ilp_address_errors() {
        for bad in ["router", "g..router", "g.rou ter", "x.router", "g."] {
            let text = with("\"g.router\"", &format!("{bad:?}"));
            let m = error(&text, "ilp_address: ");
            assert_has(&m, "not a valid ILP address");
        }
    }

    #[test]
    fn spread_errors() {
        let ok = parse(&format!("spread = \"0.002\"\n{BASE}")).unwrap();
        assert_eq!(ok.spread().to_string(), "0.002");
        for bad in ["abc", "-0.1", "1e-3", " 0.1", ""] {
            let m = error(&format!("spread = {bad:?}\n{BASE}"), "spread: ");
            assert_has(&m, "not a decimal number");
        }
        for bad in ["1", "1.0", "2.5"] {
            let m = error(&format!("spread = {bad:?}\n{BASE}"), "spread: ");
            assert_has(&m, "not below 1");
        }
    }

    #[test]
    fn window_and_hold_errors() {
        let m = error(
            &format!("min_message_window_ms = 40000\n{BASE}"),
            "min_message_window_ms: ",
        );
        assert_has(&m, "over max_hold_time_ms (30000)");
        error(
            &format!("min_message_window_ms = 0\n{BASE}"),
            "min_message_window_ms: 0 is below the minimum 1",
        );
        error(
            &format!("max_hold_time_ms = 86400001\n{BASE}"),
            "max_hold_time_ms: 86400001 is over the maximum",
        );
    }

    #[test]
    fn listen_errors() {
        let m = error(
            &with("\"127.0.0.1:7768\"", "\"localhost:7768\""),
            "listen.btp: ",
        );
        assert_has(&m, "not an IP address and port");
        let ok = parse(&with("\"127.0.0.1:7768\"", "\"[::]:7768\"")).unwrap();
        assert_eq!(ok.listen_btp().unwrap().port(), 7768);
    }

    #[test]
    fn peer_name_errors() {
        error(
            &with("name = \"bob\"", "name = \"\""),
            "peers[1].name: empty",
        );
        let m = error(
            &with("name = \"bob\"", "name = \"bo.b\""),
            "peers[1].name: ",
        );
        assert_has(&m, "'.' at byte 2");
        error(&with("name = \"bob\"", "name = \"b b\""), "peers[1].name: ");
        error(&with("name = \"bob\"", "name = \"bøb\""), "peers[1].name: ");
        let long = "a".repeat(1020);
        let m = error(
            &with("name = \"bob\"", &format!("name = \"{long}\"")),
            "peers[1].name: ",
        );
        assert_has(&m, "over the maximum 1023");
        let m = error(
            &with("name = \"bob\"", "name = \"alice\""),
            "peers[1].name: ",
        );
        assert_has(&m, "already the name of peers[0]");
    }

    #[test]
    fn token_errors() {
        let m = error(
            &with("auth_tokens = [\"bob-secret\"]", "auth_tokens = []"),
            "peers[1].auth_tokens: ",
        );
        assert_has(&m, "could never authenticate");
        let m = error(
            &with("auth_tokens = [\"bob-secret\"]\n", ""),
            "peers[1].auth_tokens: ",
        );
        assert_has(&m, "no token");
        error(
            &with("[\"bob-secret\"]", "[\"bob-secret\", \"\"]"),
            "peers[1].auth_tokens[1]: empty token",
        );
        error(
            &with("[\"bob-secret\"]", "[\"bob-secret\", \"bob-secret\"]"),
            "peers[1].auth_tokens[1]: the same token as peers[1].auth_tokens[0]",
        );
    }

    #[test]
    fn duplicate_token_across_peers() {
        let m = error(
            &with("[\"bob-secret\"]", "[\"bob-2\", \"alice-secret\"]"),
            "peers[1].auth_tokens[1]: ",
        );
        assert_has(&m, "peers[0].auth_tokens[0]");
        assert_has(&m, "\"alice\"");
        assert_has(&m, "\"bob\"");
        assert!(!m.contains("alice-secret"), "the token leaks: {m}");
    }

    #[test]
    fn dial_only_peer_needs_no_token() {
        let text = with(
            "auth_tokens = [\"bob-secret\"]\n",
            "btp_url = \"btp+ws://bob.example:9000/ilp\"\noutgoing_token = \"t\"\n",
        );
        let config = parse(&text).unwrap();
        let bob = config.peer(PeerId(1));
        assert!(bob.auth_tokens.is_empty());
        let dial = bob.dial.as_ref().unwrap();
        assert_eq!(
            dial.url,
            BtpUrl {
                host: "bob.example".into(),
                port: 9000,
                path: "/ilp".into()
            }
        );
        assert_eq!(dial.username, "");
    }

    #[test]
    fn peer_without_listener_or_url() {
        let text = with("[listen]\nbtp = \"127.0.0.1:7768\"\n", "");
        let m = error(&text, "peers[0].btp_url: ");
        assert_has(&m, "listen.btp");
    }

    #[test]
    fn relation_and_asset_errors() {
        let m = error(
            &with("relation = \"parent\"", "relation = \"upstream\""),
            "peers[1].relation: ",
        );
        assert_has(&m, "\"child\", \"peer\", \"parent\"");
        error(
            &with("asset_code = \"EUR\"", "asset_code = \"\""),
            "peers[1].asset_code: empty",
        );
        error(
            &with("asset_code = \"EUR\"", "asset_code = \"EUR \""),
            "peers[1].asset_code: ",
        );
        error(
            &with("asset_scale = 6", "asset_scale = 19"),
            "peers[1].asset_scale: 19 is over the maximum 18",
        );
        error(
            &with("asset_scale = 6", "asset_scale = 300"),
            "peers[1].asset_scale: 300 is over the maximum 18",
        );
        parse(&with("asset_scale = 6", "asset_scale = 18")).unwrap();
    }

    #[test]
    fn amount_errors() {
        for bad in [
            "+5", "-5", " 5", "5 ", "1e9", "12a", "1_000", "1.0", "", "０",
        ] {
            let text = with("max_balance = \"2000\"", &format!("max_balance = {bad:?}"));
            error(&text, "peers[1].max_balance: ");
            let text = format!(
                "{}max_packet_amount = {bad:?}\n",
                BASE.split("[rates]").next().unwrap()
            );
            error(&text, "peers[1].max_packet_amount: ");
        }
        let m = error(
            &with("\"2000\"", "\"18446744073709551616\""),
            "peers[1].max_balance: ",
        );
        assert_has(&m, "over the maximum 18446744073709551615");
        let max = parse(&with("\"2000\"", "\"18446744073709551615\"")).unwrap();
        assert_eq!(max.peer(PeerId(1)).max_balance, u64::MAX);
        // An integer instead of a string: a shape error, with the line.
        let m = error(
            &with("\"2000\"", "2000"),
            "line 18, column 15: max_balance: ",
        );
        assert_has(&m, "expected a string");
    }

    #[test]
    fn btp_url_errors() {
        let dial = |url: &str| {
            with(
                "auth_tokens = [\"bob-secret\"]\n",
                &format!("btp_url = {url:?}\noutgoing_token = \"t\"\n"),
            )
        };
        let m = error(&dial("wss://bob.example:443"), "peers[1].btp_url: ");
        assert_has(&m, "TLS terminates in front of");
        let m = error(&dial("btp+wss://bob.example:443"), "peers[1].btp_url: ");
        assert_has(&m, "TLS");
        for (bad, why) in [
            ("http://bob.example:80", "not a ws:// URL"),
            ("ws://bob.example", "no port"),
            ("ws://:9000", "no host"),
            ("ws://bob.example:0", "not a port"),
            ("ws://bob.example:+80", "not a port"),
            ("ws://bob.example:99999", "not a port"),
            ("ws://user:pw@bob.example:80", "credentials"),
            ("ws://bo b:80", "the host holds"),
            ("ws://[::1:80", "[addr]:port"),
            ("ws://[zz]:80", "not an IPv6 address"),
            ("ws://bob:80/a b", "the path holds"),
        ] {
            let m = error(&dial(bad), "peers[1].btp_url: ");
            assert_has(&m, why);
        }
        let config = parse(&dial("ws://[::1]:9000")).unwrap();
        let url = &config.peer(PeerId(1)).dial.as_ref().unwrap().url;
        assert_eq!((url.host.as_str(), url.port), ("::1", 9000));
        assert_eq!(url.to_string(), "ws://[::1]:9000/");
        parse(&dial("WS://bob.example:80/")).unwrap();
    }

    #[test]
    fn http_url_for_peers_we_post_to() {
        let http =
            |text: &str| Config::from_toml_str(&with("auth_tokens = [\"bob-secret\"]\n", text));
        let config = http("http_url = \"http://127.0.0.1:8080/accounts/router/ilp\"\noutgoing_token = \"user:pass\"\n").unwrap();
        let dial = config.peers()[1].http.as_ref().unwrap();
        assert_eq!(
            (
                dial.url.host.as_str(),
                dial.url.port,
                dial.url.path.as_str()
            ),
            ("127.0.0.1", 8080, "/accounts/router/ilp")
        );
        assert_eq!(dial.token.expose(), "user:pass");
        assert!(config.peers()[1].dial.is_none());
        let m = http("http_url = \"http://a:1\"\n").unwrap_err().to_string();
        assert_has(&m, "peers[1].outgoing_token: required with http_url");
        let m = http("http_url = \"https://a:1\"\noutgoing_token = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert_has(&m, "https:// is not supported");
        let m = http("http_url = \"http://a:1\"\nbtp_url = \"ws://a:2\"\noutgoing_token = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert_has(&m, "peers[1].http_url: set together with btp_url");
        let m = http("http_url = \"http://a\"\noutgoing_token = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert_has(&m, "no port");
        let m = http("http_url = \"http://a:1\"\noutgoing_token = \"t\"\nbtp_dial = \"single\"\n")
            .unwrap_err()
            .to_string();
        assert_has(&m, "only used with btp_url");
    }

    #[test]
    fn btp_dial_per_core_or_single() {
        let dial = |text: &str| {
            let config = Config::from_toml_str(&with(
                "auth_tokens = [\"bob-secret\"]\n",
                &format!("btp_url = \"ws://bob:80\"\noutgoing_token = \"t\"\n{text}"),
            ))
            .unwrap();
            config.peers()[1].dial.as_ref().unwrap().per_core
        };
        assert!(dial(""), "per core by default");
        assert!(dial("btp_dial = \"per_core\"\n"));
        assert!(!dial("btp_dial = \"single\"\n"));
        let m = error(
            &with(
                "auth_tokens = [\"bob-secret\"]\n",
                "btp_url = \"ws://bob:80\"\noutgoing_token = \"t\"\nbtp_dial = \"two\"\n",
            ),
            "peers[1].btp_dial: ",
        );
        assert_has(&m, "\"single\"");
        error(
            &with(
                "relation = \"parent\"",
                "relation = \"parent\"\nbtp_dial = \"single\"",
            ),
            "peers[1].btp_dial: ",
        );
    }

    #[test]
    fn outgoing_token_errors() {
        let m = error(
            &with(
                "auth_tokens = [\"bob-secret\"]\n",
                "btp_url = \"ws://bob:80\"\n",
            ),
            "peers[1].outgoing_token: ",
        );
        assert_has(&m, "required with btp_url");
        error(
            &with(
                "auth_tokens = [\"bob-secret\"]\n",
                "btp_url = \"ws://bob:80\"\noutgoing_token = \"\"\n",
            ),
            "peers[1].outgoing_token: empty",
        );
        let m = error(
            &with(
                "relation = \"parent\"",
                "relation = \"parent\"\noutgoing_token = \"t\"",
            ),
            "peers[1].outgoing_token: ",
        );
        assert_has(&m, "nor peers[1].http_url is");
        error(
            &with(
                "relation = \"parent\"",
                "relation = \"parent\"\noutgoing_username = \"r\"",
            ),
            "peers[1].outgoing_username: ",
        );
    }

    #[test]
    fn route_errors() {
        let route = |prefix: &str, peer: &str| {
            format!("{BASE}[[routes]]\nprefix = {prefix:?}\npeer = {peer:?}\n")
        };
        let m = error(&route("g.bob", "carol"), "routes[0].peer: ");
        assert_has(&m, "no peer is named \"carol\"; the peers are alice, bob");
        let m = error(&route("g..bob", "bob"), "routes[0].prefix: ");
        assert_has(&m, "neither an ILP address nor a bare scheme");
        error(&route("bob", "bob"), "routes[0].prefix: ");
        let twice = format!(
            "{}[[routes]]\nprefix = \"g.bob\"\npeer = \"alice\"\n",
            route("g.bob", "bob")
        );
        let m = error(&twice, "routes[1].prefix: ");
        assert_has(&m, "also the prefix of routes[0]");
        // A bare scheme is a valid prefix.
        parse(&route("g", "bob")).unwrap();
    }

    #[test]
    fn default_route_errors() {
        let m = error(
            &format!("default_route = \"carol\"\n{BASE}"),
            "default_route: ",
        );
        assert_has(&m, "no peer is named \"carol\"");
        let ok = parse(&format!("default_route = \"bob\"\n{BASE}")).unwrap();
        assert_eq!(ok.default_route(), Some(PeerId(1)));
        assert_eq!(ok.route_table().lookup(b"g.nowhere"), Some(PeerId(1)));
    }

    #[test]
    fn rate_errors() {
        let m = error(&with("EUR = \"1.08\"", "EUR = \"1,08\""), "rates.EUR: ");
        assert_has(&m, "not a decimal number");
        let m = error(&with("EUR = \"1.08\"", "EUR = \"0.000\""), "rates.EUR: ");
        assert_has(&m, "zero");
        error(
            &with("EUR = \"1.08\"", "\"E R\" = \"-1\""),
            "rates.\"E R\": ",
        );
        // Digits enough that no exact rate fits 128 bits.
        let huge = "1234567890123456789012345678901234567.1";
        let m = error(
            &with("EUR = \"1.08\"", &format!("EUR = \"{huge}\"")),
            "rates.USD: ",
        );
        assert_has(&m, "no exact rate");
    }

    #[test]
    fn peer_without_rate_is_allowed() {
        let config = parse(&with("EUR = \"1.08\"\n", "")).unwrap();
        assert_eq!(config.rate("EUR"), None);
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1);
        assert_has(&warnings[0], "peers[1] (bob)");
        // The engine takes it (and answers T00 between USD and EUR peers).
        let _ = Engine::new(config.engine_config(CoreId(0), 1), 0);
    }

    #[test]
    fn limit_errors() {
        let limits = |body: &str| format!("{BASE}[limits]\n{body}\n");
        error(
            &limits("ring_capacity = 0"),
            "limits.ring_capacity: 0 is below the minimum 1",
        );
        error(
            &limits("frame_len_max = 63"),
            "limits.frame_len_max: 63 is below the minimum 64",
        );
        error(
            &limits("frame_len_max = 16777217"),
            "limits.frame_len_max: 16777217 is over the maximum 16777216",
        );
        let m = error(&limits("tick_ms = 2000"), "limits.tick_ms: ");
        assert_has(&m, "over min_message_window_ms (1000)");
        let m = error(
            &limits("reconnect_min_ms = 20000"),
            "limits.reconnect_min_ms: ",
        );
        assert_has(&m, "over limits.reconnect_max_ms (10000)");
        error(
            &limits("links_max = 10"),
            "limits.connections_per_peer_max: 64 is over limits.links_max (10)",
        );
        // spin_us may be 0: park at once.
        let config = parse(&limits("spin_us = 0\ntick_ms = 1")).unwrap();
        assert_eq!(config.limits().spin_us, 0);
        assert_eq!(config.limits().tick_ms, 1);
        // Negative: a shape error.
        error(&limits("tick_ms = -1"), "line 23, column 11: tick_ms: ");
    }

    #[test]
    fn unknown_keys() {
        let m = error(&format!("colour = \"red\"\n{BASE}"), "colour");
        assert_has(&m, "line 1, column 1");
        assert_has(&m, "unknown field");
        let m = error(
            &with("asset_scale = 6", "asset_scale = 6\nmax_blance = \"1\""),
            "max_blance",
        );
        assert_has(&m, "line 18, column 1:");
        let m = error(&format!("{BASE}[limits]\ntick = 5\n"), "tick");
        assert_has(&m, "line 23, column 1:");
        assert_has(&m, "unknown field");
        error(&with("btp = ", "port = 1\nbtp = "), "port");
        error(
            &format!("{BASE}[[routes]]\nprefix = \"g.x\"\npeer = \"bob\"\nvia = \"x\"\n"),
            "via",
        );
        let m = error(&format!("{BASE}[extra]\n"), "extra");
        assert_has(&m, "line 22, column 2:");
        // A missing key is named too.
        error(
            &with("relation = \"parent\"\n", ""),
            "missing field `relation`",
        );
    }

    #[test]
    fn implicit_routes() {
        let config = parse(BASE).unwrap();
        assert_eq!(
            config.routes(),
            &[
                Route {
                    prefix: "g.router.alice".into(),
                    peer: PeerId(0),
                    implicit: true
                },
                Route {
                    prefix: "g.router.bob".into(),
                    peer: PeerId(1),
                    implicit: true
                },
            ]
        );
        let table = config.route_table();
        assert_eq!(table.lookup(b"g.router.bob"), Some(PeerId(1)));
        assert_eq!(table.lookup(b"g.router.bob.wallet.1"), Some(PeerId(1)));
        assert_eq!(table.lookup(b"g.router.bobby"), None);
        assert_eq!(table.lookup(b"g.router"), None);

        // An explicit route with exactly bob's address wins: no implicit one is added.
        let text = format!("{BASE}[[routes]]\nprefix = \"g.router.bob\"\npeer = \"alice\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.routes().len(), 2);
        assert_eq!(
            config.routes()[0],
            Route {
                prefix: "g.router.bob".into(),
                peer: PeerId(0),
                implicit: false
            }
        );
        assert_eq!(config.routes()[1].prefix, "g.router.alice");
        assert_eq!(
            config.route_table().lookup(b"g.router.bob.x"),
            Some(PeerId(0))
        );

        // A route to something longer does not replace the implicit one.
        let text = format!("{BASE}[[routes]]\nprefix = \"g.router.bob.x\"\npeer = \"alice\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.routes().len(), 3);
        let table = config.route_table();
        assert_eq!(table.lookup(b"g.router.bob.x.y"), Some(PeerId(0)));
        assert_eq!(table.lookup(b"g.router.bob.z"), Some(PeerId(1)));
    }

    #[test]
    fn engine_config_is_consistent() {
        let text = format!(
            "{}{}",
            BASE.replace("[rates]", "[[peers]]\nname = \"carol\"\nauth_tokens = [\"c\"]\nrelation = \"peer\"\nasset_code = \"USD\"\nasset_scale = 2\nmax_balance = \"5\"\n[rates]"),
            "[limits]\npending_per_core_max = 100\ntick_ms = 7\nlease_chunk_divisor = 10\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.peers().len(), 3);
        let cores = 2;
        let engines: Vec<EngineConfig> = (0..cores)
            .map(|c| config.engine_config(CoreId(c as u16), cores))
            .collect();
        for (c, engine) in engines.iter().enumerate() {
            assert_eq!(engine.core, CoreId(c as u16));
            assert_eq!(engine.cores, cores);
            assert_eq!(engine.address, b"g.router");
            assert_eq!(engine.pending_max, 100);
            assert_eq!(engine.tick_ms, 7);
            assert_eq!(engine.min_message_window_ms, 1000);
            assert_eq!(engine.max_hold_time_ms, 30_000);
            assert_eq!(engine.peers, engines[0].peers, "same peers on every core");
            assert_eq!(
                engine.prices,
                vec![
                    ("EUR".to_owned(), Decimal::parse("1.08").unwrap()),
                    ("USD".to_owned(), Decimal::ONE)
                ]
            );
            let homes: Vec<CoreId> = engine.peers.iter().map(|p| p.home).collect();
            assert_eq!(homes, [CoreId(0), CoreId(1), CoreId(0)]);
            for (i, p) in engine.peers.iter().enumerate() {
                assert_eq!(p.home, config.home_core(PeerId(i as u16), cores));
            }
            let chunks: Vec<u64> = engine.peers.iter().map(|p| p.lease_chunk).collect();
            assert_eq!(chunks, [100, 200, 1], "max_balance / 10, at least 1");
            assert_eq!(engine.peers[2].asset_scale, 2);
            assert_eq!(engine.routes.len(), 3);
        }
        // The engine accepts what the config produces.
        for engine in engines {
            let _ = Engine::new(engine, 0);
        }
    }

    #[test]
    fn limits_set() {
        let mut limits = Limits::default();
        limits.set("tick_ms", 10).unwrap();
        assert_eq!(limits.tick_ms, 10);
        limits.set("frame_len_max", 1 << 20).unwrap();
        assert_eq!(limits.frame_len_max, 1 << 20);
        assert_eq!(limits.get("frame_len_max"), Some(1 << 20));
        let e = limits.set("tick", 10).unwrap_err();
        assert_eq!(e.key(), Some("limits.tick"));
        assert_has(&e.to_string(), "no such limit");
        assert_has(&e.to_string(), "tick_ms");
        let e = limits.set("tick_ms", 0).unwrap_err();
        assert_has(&e.to_string(), "limits.tick_ms: 0 is below the minimum 1");
        assert_eq!(limits.tick_ms, 10, "unchanged on error");
        assert_eq!(limits.get("nope"), None);

        // Through the config, the checks between limits apply as well.
        let mut config = parse(BASE).unwrap();
        config.set_limit("reconnect_max_ms", 60_000).unwrap();
        assert_eq!(config.limits().reconnect_max_ms, 60_000);
        let e = config.set_limit("tick_ms", 5000).unwrap_err();
        assert_has(&e.to_string(), "over min_message_window_ms");
        assert_eq!(config.limits().tick_ms, 5, "unchanged on error");
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("ilp-router-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, EXAMPLE).unwrap();
        assert_eq!(Config::load(&good).unwrap().peers().len(), 2);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, with("asset_scale = 6", "asset_scale = 19")).unwrap();
        let m = Config::load(&bad).unwrap_err().to_string();
        assert_has(&m, "bad.toml: peers[1].asset_scale: 19");
        std::fs::write(&bad, "ilp_address = \"g.x\"\nnope = 1\n").unwrap();
        let m = Config::load(&bad).unwrap_err().to_string();
        assert_has(&m, "bad.toml: line 2, column 1: unknown field `nope`");
        let missing = dir.join("missing.toml");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert_has(&e.to_string(), "missing.toml");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = parse(EXAMPLE).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("alice-token"), "{debug}");
        assert!(!debug.contains("router-token-at-bob"), "{debug}");
    }
}
