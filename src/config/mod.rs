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
//! | `ilp_address` | string | required, unless a parent tells us | our ILP address; left out, the router asks the first `relation = "parent"` peer with a `btp_url` (ILDCP, RFC 31) at start and runs as what it answers |
//! | `spread` | decimal string in `[0, 1)` | `"0"` | fraction kept on each conversion |
//! | `default_route` | peer name | none | next hop for destinations in our scheme that no route matches |
//! | `min_message_window_ms` | integer | 1000 | taken off each hop's expiry; the least time a Prepare must have left |
//! | `max_hold_time_ms` | integer | 30000 | the longest we hold a Prepare |
//! | `listen.btp` | `"ip:port"` | none | where peers dial in (BTP over plain WebSocket) |
//! | `listen.http` | `"ip:port"` | none | where peers POST ILP over HTTP |
//! | `listen.btp_tls`, `listen.http_tls` | `"ip:port"` | none | the same over TLS (`wss://`, `https://`), with `[tls]` |
//! | `[tls]` | paths | none | certificates, keys and CAs: see `tls.rs` |
//! | `[[peers]]` | tables | none | see [`Peer`] |
//! | `[[routes]]` | tables (`prefix`, `peer`) | none | static routes, see [`Route`] |
//! | `[rates]` | asset code = decimal string | none | value of one whole unit of each asset |
//! | `[limits]` | integers | see [`Limits`] | capacities and timers |
//! | `state.dir` | path | none | durable balances: one memory-mapped ledger file per core (`crate::state`); without it balances live in memory only |
//! | `admin.listen` | `"ip:port"` | `127.0.0.1:7780` | the admin API (metrics, health, peers, routes, drains), when `[admin]` is present |
//! | `admin.token` / `admin.token_file` | string / path | none | bearer token of the admin API; required off loopback |
//! | `admin.metrics_token` | bool | false | `/metrics` requires the token too |
//! | `state.msync_interval_ms` | integer | 1000 | how often the ledger files are synced to disk (bounds a power loss; 0 = never) |
//! | `[cluster_state]` | `etcd` URLs, `box_id`, … | none | several routers hold the limits of peers with `shared_limit = true` together, through etcd: see [`ClusterStateConfig`] and `cluster.rs` |
//!
//! Amounts (`max_balance`, `max_packet_amount`) are strings of decimal digits because TOML
//! integers stop at `i64::MAX` and amounts go up to `u64::MAX`.
//!
//! Every peer named `name` is reachable at `<ilp_address>.<name>` and below: unless a route
//! with exactly that prefix is configured, an implicit route to the peer is added.
//!
//! Secrets (`auth_tokens`, `outgoing_token`) are held as [`Secret`], whose `Debug` does not
//! print them, and no error message quotes them.
//!
//! # Layout
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | [`Config`], its accessors, [`Config::engine_config`], loading, [`EXAMPLE`] |
//! | `error.rs` | [`ConfigError`], and the helpers that name keys (`peers[i].field`) |
//! | `limits.rs` | the `limits!` table: [`Limits`], and the checks between limits |
//! | `raw.rs` | the serde `Raw*` structs: the file's shape |
//! | `validate.rs` | `Config::validate`: one check per table or key, in file order |
//! | `peer.rs` | [`Peer`], [`Outgoing`], [`Secret`] and the checks of `[[peers]]` |
//! | `url.rs` | [`BtpUrl`] and the `ws://` / `http://` parsers (and their TLS forms) |
//! | `tls.rs` | [`TlsConfig`]: `[tls]` and the peers' certificate keys, loaded into rustls configs |
//! | `cluster.rs` | [`ClusterStateConfig`]: `[cluster_state]` (limits shared with other routers) |
//! | `tests.rs` | the unit tests |
//!
//! The ceilings of every limit are constants of [`crate::limits`].
//!
//! Not done here: resolving host names (a URL's host is kept as written).

mod cluster;
mod diff;
mod error;
mod group;
mod limits;
mod peer;
mod raw;
mod slots;
mod tls;
mod url;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use self::cluster::ClusterStateConfig;
pub use self::diff::{Change, LIVE_LIMITS};
pub use self::error::ConfigError;
pub use self::group::{Group, GROUPS_MAX};
use self::limits::check_limits;
pub use self::limits::Limits;
pub use self::peer::{Dial, HttpDial, Outgoing, Peer, Relation, Secret};
use self::raw::RawConfig;
pub use self::tls::TlsConfig;
pub use self::url::BtpUrl;
use self::validate::route_error;
use crate::engine::group::Backend;
use crate::engine::rate::Decimal;
use crate::engine::route::{Hop, RouteTable};
use crate::engine::{CoreId, EngineConfig, GroupConfig, PeerConfig, PeerId};

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
# Peers dial in here: BTP over plain WebSocket. Optional: without it the router only dials out.
btp = "127.0.0.1:7768"
# The same over TLS (wss://), and ILP over HTTP in plaintext and over TLS (https://). The TLS
# listeners need [tls] cert_file and key_file (PEM); peers may then be known by their client
# certificates (client_cert_sha256 = ["<hex>"], or client_cert_name with [tls] client_ca_file).
# btp_tls = "0.0.0.0:7443"
# http = "127.0.0.1:7770"
# http_tls = "0.0.0.0:7444"
#
# [tls]
# cert_file = "/etc/ilp-router/router.pem"
# key_file = "/etc/ilp-router/router.key"
# ca_file = "/etc/ilp-router/peers-ca.pem"      # CAs of wss:// / https:// peers we dial
# client_ca_file = "/etc/ilp-router/clients-ca.pem"

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

# Capacities and timers; every key is optional (defaults in src/config/limits.rs, `Limits`).
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

/// One route: destinations equal to `prefix` or under it (on a segment boundary) go to `hop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The prefix: an ILP address or a bare scheme (`g`, `test`, …).
    pub prefix: String,
    /// The next hop: a peer, or a group's backend.
    pub hop: Hop,
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
    listen: Listen,
    peers: Vec<Peer>,
    peer_ids: HashMap<String, PeerId>,
    groups: Vec<Group>,
    routes: Vec<Route>,
    route_table: RouteTable,
    rates: Vec<(String, Decimal)>,
    limits: Limits,
    state: StateConfig,
    admin: Option<AdminConfig>,
    tls: TlsConfig,
    cluster_state: Option<ClusterStateConfig>,
}

/// `[listen]`: where peers connect, in plaintext and over TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listen {
    /// BTP over WebSocket (`ws://`).
    pub btp: Option<SocketAddr>,
    /// ILP over HTTP (`http://`).
    pub http: Option<SocketAddr>,
    /// BTP over WebSocket over TLS (`wss://`).
    pub btp_tls: Option<SocketAddr>,
    /// ILP over HTTP over TLS (`https://`).
    pub http_tls: Option<SocketAddr>,
}

/// `[admin]`: the admin API (metrics, health, peers, routes, drains).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where it listens (default [`ADMIN_LISTEN_DEFAULT`]).
    pub listen: SocketAddr,
    /// The bearer token it requires (every path but `/metrics` and `/health`).
    pub token: Option<Secret>,
    /// `/metrics` requires the token too.
    pub metrics_token: bool,
}

/// The parent a router without `ilp_address` asks for one ([`Config::parent_to_ask`]).
#[derive(Debug, Clone)]
pub struct ParentToAsk {
    /// Its name in the config.
    pub name: String,
    /// Where we dial it.
    pub url: BtpUrl,
    /// The `auth_username` we present.
    pub username: String,
    /// The `auth_token` we present.
    pub token: Secret,
}

/// The default `admin.listen`.
pub const ADMIN_LISTEN_DEFAULT: &str = "127.0.0.1:7780";

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
        Config::from_toml_str_with_address(text, None)
    }

    /// Like [`from_toml_str`](Self::from_toml_str); when the text leaves `ilp_address` out,
    /// `address` (learned from the parent) stands in for it.
    pub fn from_toml_str_with_address(
        text: &str,
        address: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::syntax(text, &e))?;
        if raw.ilp_address.is_none() {
            raw.ilp_address = address.map(str::to_owned);
        }
        Config::validate(raw)
    }

    /// Reads the config file at `path` like [`load`](Self::load), with `address` standing in
    /// for a missing `ilp_address`.
    pub fn load_with_address(path: &Path, address: Option<&str>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str_with_address(&text, address).map_err(|e| e.in_file(path))
    }

    /// When the text leaves `ilp_address` out: the parent to ask for it by ILDCP (RFC 31),
    /// the first peer with `relation = "parent"`, a `btp_url` and an `outgoing_token`.
    /// `None` when the address is set or no such parent exists (validation then says so).
    pub fn parent_to_ask(text: &str) -> Result<Option<ParentToAsk>, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::syntax(text, &e))?;
        if raw.ilp_address.is_some() {
            return Ok(None);
        }
        for (i, peer) in raw.peers.iter().enumerate() {
            let (Some(url), Some(token)) = (&peer.btp_url, &peer.outgoing_token) else {
                continue;
            };
            if peer.relation != "parent" {
                continue;
            }
            return Ok(Some(ParentToAsk {
                name: peer.name.clone(),
                url: url::parse_btp_url(&format!("peers[{i}].btp_url"), url)?,
                username: peer.outgoing_username.clone().unwrap_or_default(),
                token: Secret::new(token.clone()),
            }));
        }
        Ok(None)
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
        self.listen.btp
    }

    /// Where peers POST ILP over HTTP (RFC 35), if anywhere.
    pub fn listen_http(&self) -> Option<SocketAddr> {
        self.listen.http
    }

    /// Every listener address, plaintext and TLS.
    pub fn listen(&self) -> Listen {
        self.listen
    }

    /// The TLS configs: our listeners', which peer a client certificate stands for, and how
    /// we dial each peer over TLS.
    pub fn tls(&self) -> &TlsConfig {
        &self.tls
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

    /// The backend groups, indexed by [`GroupId`](crate::engine::GroupId).
    pub fn groups(&self) -> &[Group] {
        &self.groups
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

    /// The admin API, when `[admin]` is configured.
    pub fn admin(&self) -> Option<&AdminConfig> {
        self.admin.as_ref()
    }

    /// The shared store of limits shared with other routers, when `[cluster_state]` is
    /// configured.
    pub fn cluster_state(&self) -> Option<&ClusterStateConfig> {
        self.cluster_state.as_ref()
    }

    /// Peers (live or removed) whose limit is shared with other routers.
    pub fn shared_peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter().filter(|p| p.shared_limit)
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
                shared_limit: p.shared_limit,
                packets_per_second: p
                    .max_packets_per_second
                    .unwrap_or(self.limits.peer_packets_per_second),
                amount_per_second: p
                    .max_amount_per_second
                    .unwrap_or(self.limits.peer_amount_per_second),
                ildcp_segment: (p.relation == Relation::Child && !p.removed)
                    .then(|| p.name.clone()),
            })
            .collect();
        EngineConfig {
            address: self.ilp_address.as_bytes().to_vec(),
            peers,
            routes: self.route_table(),
            groups: self
                .groups
                .iter()
                .map(|g| GroupConfig {
                    name: g.name.clone(),
                    backends: g
                        .peers
                        .iter()
                        .zip(&g.weights)
                        .map(|(&peer, &weight)| Backend {
                            peer,
                            name: self.peer(peer).name.clone(),
                            weight,
                        })
                        .collect(),
                    policy: g.policy,
                    outlier: g.outlier,
                    // Each core takes its share of the cap, rounded up.
                    backend_in_flight_max: u32::try_from(
                        g.backend_in_flight_max.div_ceil(cores as u64),
                    )
                    .unwrap_or(u32::MAX),
                })
                .collect(),
            prices: self.rates.clone(),
            spread: self.spread,
            min_message_window_ms: self.min_message_window_ms,
            max_hold_time_ms: self.max_hold_time_ms,
            pending_max: self.limits.pending_per_core_max,
            pending_per_peer_max: (self.limits.pending_per_core_max as u128
                * u128::from(self.limits.pending_per_peer_percent)
                / 100)
                .max(1) as usize,
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
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod group_tests;

#[cfg(test)]
mod admin_tests;
