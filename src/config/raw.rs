//! The file's shape: serde mirrors of each table, before any meaning is checked.
//!
//! Every table denies unknown keys, so a misspelt key is an error rather than a silently
//! ignored setting. Values are kept as the file wrote them (amounts and decimals as strings,
//! integers as `u64`); [`Config::from_toml_str`](super::Config::from_toml_str) checks them.
//! The `[limits]` twin, `RawLimits`, is declared by the `limits!` table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::limits::RawLimits;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) ilp_address: Option<String>,
    pub(super) spread: Option<String>,
    pub(super) default_route: Option<String>,
    pub(super) min_message_window_ms: Option<u64>,
    pub(super) max_hold_time_ms: Option<u64>,
    #[serde(default)]
    pub(super) listen: RawListen,
    #[serde(default)]
    pub(super) peers: Vec<RawPeer>,
    #[serde(default)]
    pub(super) groups: Vec<RawGroup>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) rates: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) state: RawState,
    pub(super) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(super) tls: RawTls,
    pub(super) cluster_state: Option<RawClusterState>,
}

/// `[cluster_state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClusterState {
    pub(super) etcd: Vec<String>,
    pub(super) box_id: String,
    pub(super) prefix: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) publish_ms: Option<u64>,
    pub(super) idle_ms: Option<u64>,
    pub(super) chunk_divisor: Option<u64>,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_ca_file: Option<PathBuf>,
    pub(super) client_cert_required: Option<bool>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) metrics_token: Option<bool>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) dir: Option<PathBuf>,
    pub(super) msync_interval_ms: Option<u64>,
}

/// `[listen]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) btp: Option<String>,
    pub(super) http: Option<String>,
    pub(super) btp_tls: Option<String>,
    pub(super) http_tls: Option<String>,
}

/// One `[[peers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeer {
    pub(super) name: String,
    #[serde(default)]
    pub(super) auth_tokens: Vec<String>,
    pub(super) relation: String,
    pub(super) asset_code: String,
    pub(super) asset_scale: u64,
    pub(super) max_balance: String,
    pub(super) max_packet_amount: Option<String>,
    pub(super) max_packets_per_second: Option<u64>,
    pub(super) max_amount_per_second: Option<String>,
    pub(super) btp_url: Option<String>,
    pub(super) outgoing_token: Option<String>,
    pub(super) outgoing_username: Option<String>,
    pub(super) btp_dial: Option<String>,
    pub(super) http_url: Option<String>,
    pub(super) send_routes: Option<bool>,
    pub(super) receive_routes: Option<bool>,
    #[serde(default)]
    pub(super) shared_limit: bool,
    #[serde(default)]
    pub(super) client_cert_sha256: Vec<String>,
    pub(super) client_cert_name: Option<String>,
    pub(super) client_cert_file: Option<PathBuf>,
    pub(super) client_key_file: Option<PathBuf>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) prefix: String,
    pub(super) peer: Option<String>,
    pub(super) group: Option<String>,
}

/// One `[[groups]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) name: String,
    pub(super) peers: Vec<String>,
    pub(super) policy: Option<String>,
    pub(super) hash_segments: Option<u64>,
    pub(super) weights: Option<Vec<u64>>,
    pub(super) backend_in_flight_max: Option<u64>,
    pub(super) outlier_window: Option<u64>,
    pub(super) outlier_failure_percent: Option<u64>,
    pub(super) ejection_base_ms: Option<u64>,
    pub(super) ejection_max_ms: Option<u64>,
    pub(super) max_ejection_percent: Option<u64>,
}
