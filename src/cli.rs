//! Command-line types (clap derive). No logic beyond turning flags into overrides.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// An Interledger (ILPv4) router appliance: thread per core, io_uring sockets, BTP peers.
#[derive(Debug, Parser)]
#[command(name = "ilp-router", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router with a TOML config until SIGTERM or SIGINT.
    Run(Box<RunArgs>),
    /// Validate a config file and print a summary; exit 1 naming the first problem.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
        /// Also list what changes from this (running) config to FILE, each marked as applied
        /// by a reload (`live`) or needing a restart.
        #[arg(long, value_name = "OLD")]
        diff: Option<PathBuf>,
    },
    /// Decode one ILP or BTP packet given in hex and print it as JSON.
    ///
    /// Prints one JSON object on stdout. For bytes that do not decode it prints
    /// {"error":"<category>","detail":"..."} and exits 1.
    Decode {
        /// Which codec to use.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The packet as hex, or `-` to read the hex from stdin.
        hex: String,
    },
    /// Print the durable balance of every peer in a state directory as JSON, also while the
    /// router runs: {"peers":[{"name":…,"posted":"…"}]}, amounts as decimal strings, positive
    /// when the peer owes us. Exits 1 naming the problem if a file is damaged or foreign.
    ///
    /// With `--etcd` instead: the balances of the peers whose limit is shared by several
    /// routers, from the shared store: per peer the sum over routers and each router's
    /// ceiling and last published posted balance.
    Balances {
        /// The router's state directory (`[state] dir`).
        #[arg(long, required_unless_present = "etcd")]
        state_dir: Option<PathBuf>,
        /// The etcd members' client URLs (`[cluster_state] etcd`), comma-separated.
        #[arg(long, value_delimiter = ',', conflicts_with = "state_dir")]
        etcd: Vec<String>,
        /// The key prefix (`[cluster_state] prefix`).
        #[arg(long, default_value = "/ilp-router", requires = "etcd")]
        prefix: String,
    },
    /// Ask a running router's admin API (`[admin]`) and print its answer: JSON, or the
    /// Prometheus text for `metrics`. Exits 1 when the router answers with an error.
    Admin(AdminArgs),
}

/// `ilp-router admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The router's config file: the admin listener and token come from its `[admin]` table.
    #[arg(long, short = 'c', required_unless_present = "url")]
    pub config: Option<PathBuf>,
    /// The admin API's address instead, e.g. `127.0.0.1:7780`.
    #[arg(long, conflicts_with = "config")]
    pub url: Option<String>,
    /// The bearer token with `--url` (or set `ILP_ROUTER_ADMIN_TOKEN`).
    #[arg(long)]
    pub token: Option<String>,
    /// What to ask.
    #[command(subcommand)]
    pub action: AdminAction,
}

/// The admin requests.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// `GET /health`.
    Health,
    /// `GET /ready`.
    Ready,
    /// `GET /metrics` (Prometheus text).
    Metrics,
    /// `GET /peers`.
    Peers,
    /// `GET /routes`.
    Routes,
    /// `GET /routes/explain?destination=…`.
    Explain {
        /// The ILP address to explain.
        destination: String,
    },
    /// `GET /config` (secrets redacted).
    Config,
    /// `POST /peers/{name}/drain`.
    Drain {
        /// The peer's name.
        peer: String,
    },
    /// `POST /peers/{name}/undrain`.
    Undrain {
        /// The peer's name.
        peer: String,
    },
    /// `POST /reload`: read the config file again and apply what can change live.
    Reload,
    /// `POST /peers/{name}/settlements`: record a settlement made outside the router, once
    /// per idempotency key.
    Settle {
        /// The peer's name.
        peer: String,
        /// The amount, in the peer's units.
        #[arg(long)]
        amount: String,
        /// `incoming` (the peer paid us) or `outgoing` (we paid it).
        #[arg(long)]
        direction: String,
        /// The idempotency key: the same key again is applied once.
        #[arg(long)]
        key: String,
    },
}

/// Codecs `decode` knows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// An ILPv4 Prepare, Fulfill or Reject.
    Ilp,
    /// A BTP 2.0 packet.
    Btp,
}

/// `ilp-router run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The TOML config file.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Use the first N CPUs of the process's allowed set (respects taskset and cgroups).
    /// Default: all of them.
    #[arg(long, conflicts_with = "cpu_list")]
    pub cores: Option<usize>,
    /// Use exactly these CPUs, e.g. `0,2-3`.
    #[arg(long)]
    pub cpu_list: Option<String>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Core i listens on the BTP port + i instead of all cores sharing one port
    /// (SO_REUSEPORT). Lets a peer choose the core it lands on.
    #[arg(long)]
    pub btp_port_per_core: bool,
    /// Keep balances durable in memory-mapped files in this directory (overrides
    /// `[state] dir`). Without it balances live in memory only.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Sync the state files to disk every this many ms, off the packet path (overrides
    /// `[state] msync_interval_ms`; 0 = never). Bounds what a power loss can lose.
    #[arg(long)]
    pub msync_interval_ms: Option<u64>,
    /// Overrides of `[limits]` from the config file.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Every capacity and tuning knob of `[limits]`, as flags that override the file.
#[derive(Debug, Default, Args)]
pub struct LimitArgs {
    /// In-flight Prepares per core.
    #[arg(long)]
    pub pending_per_core_max: Option<u64>,
    /// Outstanding requests per BTP connection.
    #[arg(long)]
    pub in_flight_per_link_max: Option<u64>,
    /// Slots of each cross-core ring.
    #[arg(long)]
    pub ring_capacity: Option<u64>,
    /// Largest WebSocket frame / BTP packet accepted, in bytes.
    #[arg(long)]
    pub frame_len_max: Option<u64>,
    /// Connections one peer may hold open at once.
    #[arg(long)]
    pub connections_per_peer_max: Option<u64>,
    /// Connections in all, per core.
    #[arg(long)]
    pub links_max: Option<u64>,
    /// Peer slots, reloads included.
    #[arg(long)]
    pub peers_max: Option<u64>,
    /// Routes kept from one peer's route updates.
    #[arg(long)]
    pub routes_per_peer_max: Option<u64>,
    /// Longest path of a learned route.
    #[arg(long)]
    pub route_path_max: Option<u64>,
    /// Time a new connection has to authenticate, in ms.
    #[arg(long)]
    pub auth_timeout_ms: Option<u64>,
    /// Unreadable BTP frames before a peer is disconnected.
    #[arg(long)]
    pub bad_frames_max: Option<u64>,
    /// Expiry wheel tick, in ms.
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// How long an idle core spins before it parks, in µs.
    #[arg(long)]
    pub spin_us: Option<u64>,
    /// The most a core that has been forwarding keeps polling for the next packet, in µs
    /// (it polls twice the recent gap between packets, at least `--spin-us`).
    #[arg(long)]
    pub spin_max_us: Option<u64>,
    /// At shutdown, how long queued answers get to reach the wire once in-flight Prepares
    /// resolved (by their own expiry at the latest), in ms.
    #[arg(long)]
    pub shutdown_grace_ms: Option<u64>,
    /// First reconnect delay for outgoing links, in ms.
    #[arg(long)]
    pub reconnect_min_ms: Option<u64>,
    /// Longest reconnect delay for outgoing links, in ms.
    #[arg(long)]
    pub reconnect_max_ms: Option<u64>,
    /// A core other than a peer's home leases max_balance / this at a time.
    #[arg(long)]
    pub lease_chunk_divisor: Option<u64>,
    /// HTTP connections per core to each peer we POST to.
    #[arg(long)]
    pub http_connections_per_peer_max: Option<u64>,
    /// Requests pipelined on each of those connections (1: one at a time).
    #[arg(long)]
    pub http_requests_per_connection_max: Option<u64>,
    /// HTTP connections per core opened ahead of need to each peer we POST to.
    #[arg(long)]
    pub http_connections_min: Option<u64>,
    /// One of those connections idle this long is closed (before the server's keep-alive
    /// timeout), in ms.
    #[arg(long)]
    pub http_client_idle_timeout_ms: Option<u64>,
    /// Bytes queued for one connection before it stops being read (closed at twice that).
    #[arg(long)]
    pub link_queue_bytes_max: Option<u64>,
    /// A write that makes no progress this long closes the connection, in ms.
    #[arg(long)]
    pub write_timeout_ms: Option<u64>,
    /// Connections per core not yet authenticated (apart from links_max).
    #[arg(long)]
    pub unauthenticated_max: Option<u64>,
    /// Time one ILP-over-HTTP request may take to arrive, in ms.
    #[arg(long)]
    pub http_request_timeout_ms: Option<u64>,
    /// Idle time before an ILP-over-HTTP connection from a peer is closed, in ms.
    #[arg(long)]
    pub http_idle_timeout_ms: Option<u64>,
    /// Requests one ILP-over-HTTP connection from a peer may have in flight.
    #[arg(long)]
    pub http_pipeline_max: Option<u64>,
    /// Silence on a BTP link before we ping it, in ms.
    #[arg(long)]
    pub btp_ping_interval_ms: Option<u64>,
    /// Silent ping intervals before a BTP link is taken down.
    #[arg(long)]
    pub btp_pings_missed_max: Option<u64>,
    /// Share of a core's in-flight table one peer may fill, in percent.
    #[arg(long)]
    pub pending_per_peer_percent: Option<u64>,
    /// Default per-peer packet rate limit, Prepares per second (0: none).
    #[arg(long)]
    pub peer_packets_per_second: Option<u64>,
    /// Default per-peer amount rate limit, in the peer's units per second (0: none).
    #[arg(long)]
    pub peer_amount_per_second: Option<u64>,
}

impl LimitArgs {
    /// The flags that were given, by their `[limits]` key.
    pub fn overrides(&self) -> Vec<(&'static str, u64)> {
        let all = [
            ("pending_per_core_max", self.pending_per_core_max),
            ("in_flight_per_link_max", self.in_flight_per_link_max),
            ("ring_capacity", self.ring_capacity),
            ("frame_len_max", self.frame_len_max),
            ("connections_per_peer_max", self.connections_per_peer_max),
            ("links_max", self.links_max),
            ("peers_max", self.peers_max),
            ("routes_per_peer_max", self.routes_per_peer_max),
            ("route_path_max", self.route_path_max),
            ("auth_timeout_ms", self.auth_timeout_ms),
            ("bad_frames_max", self.bad_frames_max),
            ("tick_ms", self.tick_ms),
            ("spin_us", self.spin_us),
            ("spin_max_us", self.spin_max_us),
            ("shutdown_grace_ms", self.shutdown_grace_ms),
            ("reconnect_min_ms", self.reconnect_min_ms),
            ("reconnect_max_ms", self.reconnect_max_ms),
            ("lease_chunk_divisor", self.lease_chunk_divisor),
            (
                "http_connections_per_peer_max",
                self.http_connections_per_peer_max,
            ),
            (
                "http_requests_per_connection_max",
                self.http_requests_per_connection_max,
            ),
            ("http_connections_min", self.http_connections_min),
            (
                "http_client_idle_timeout_ms",
                self.http_client_idle_timeout_ms,
            ),
            ("link_queue_bytes_max", self.link_queue_bytes_max),
            ("write_timeout_ms", self.write_timeout_ms),
            ("unauthenticated_max", self.unauthenticated_max),
            ("http_request_timeout_ms", self.http_request_timeout_ms),
            ("http_idle_timeout_ms", self.http_idle_timeout_ms),
            ("http_pipeline_max", self.http_pipeline_max),
            ("btp_ping_interval_ms", self.btp_ping_interval_ms),
            ("btp_pings_missed_max", self.btp_pings_missed_max),
            ("pending_per_peer_percent", self.pending_per_peer_percent),
            ("peer_packets_per_second", self.peer_packets_per_second),
            ("peer_amount_per_second", self.peer_amount_per_second),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()
    }
}

/// Parses a CPU list like `0,2-3` into CPU numbers, in order, without duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let first: usize = first
            .parse()
            .map_err(|_| format!("--cpu-list: {part:?} is not a CPU or range"))?;
        let last: usize = last
            .parse()
            .map_err(|_| format!("--cpu-list: {part:?} is not a CPU or range"))?;
        if last < first || last - first > 4096 {
            return Err(format!("--cpu-list: {part:?} is not an increasing range"));
        }
        for cpu in first..=last {
            if !cpus.contains(&cpu) {
                cpus.push(cpu);
            }
        }
    }
    if cpus.is_empty() {
        return Err("--cpu-list is empty".into());
    }
    Ok(cpus)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("3-3,3").unwrap(), vec![3]);
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn limit_flags_override_by_key() {
        let cli = Cli::parse_from([
            "ilp-router",
            "run",
            "--config",
            "x.toml",
            "--tick-ms",
            "2",
            "--spin-us",
            "0",
        ]);
        let Command::Run(run) = cli.command else {
            panic!("run")
        };
        assert_eq!(run.limits.overrides(), vec![("tick_ms", 2), ("spin_us", 0)]);
    }

    /// Every `[limits]` key has a flag, and the flag reaches that key (a flag missing from
    /// `overrides` used to be accepted and silently ignored).
    #[test]
    fn every_limit_has_a_flag_that_overrides_it() {
        for key in crate::config::Limits::KEYS {
            let flag = format!("--{}", key.replace('_', "-"));
            let cli = Cli::try_parse_from(["ilp-router", "run", "--config", "x.toml", &flag, "7"])
                .unwrap_or_else(|e| panic!("{flag}: {e}"));
            let Command::Run(run) = cli.command else {
                panic!("run")
            };
            assert_eq!(run.limits.overrides(), vec![(*key, 7)], "{flag}");
        }
    }
}
