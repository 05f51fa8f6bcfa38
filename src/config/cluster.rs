//! `[cluster_state]`: several routers in front of one cluster share the credit limits of the
//! peers marked `shared_limit = true`, through an etcd cluster (`crate::cluster`).
//!
//! ```toml
//! [cluster_state]
//! etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]
//! box_id = "r1"              # this router's name in the shared store: unique per router
//! prefix = "/ilp-router"     # where the records live (one key per shared peer)
//! timeout_ms = 500           # one etcd call, per member tried
//! publish_ms = 1000          # how often this router's posted balances are published
//! idle_ms = 2000             # a peer without traffic this long gives its headroom back
//! chunk_divisor = 8          # headroom is taken in chunks of max_balance / chunk_divisor
//! ```

use super::raw::RawClusterState;
use super::ConfigError;
use crate::cluster::etcd::parse_endpoint;

/// `[cluster_state]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStateConfig {
    /// The etcd members' client URLs (`http://host:port`).
    pub etcd: Vec<String>,
    /// This router's name in the store.
    pub box_id: String,
    /// The key prefix (no trailing `/`).
    pub prefix: String,
    /// One etcd call's limit per member tried, in ms.
    pub timeout_ms: u64,
    /// How often posted balances are published, in ms.
    pub publish_ms: u64,
    /// Without traffic this long, a peer's unused headroom goes back to the store, in ms.
    pub idle_ms: u64,
    /// Headroom is taken in chunks of `max_balance / chunk_divisor` (at least 1).
    pub chunk_divisor: u64,
}

/// Members at most in `etcd`.
const MEMBERS_MAX: usize = 16;

pub(super) fn check_cluster_state(raw: RawClusterState) -> Result<ClusterStateConfig, ConfigError> {
    if raw.etcd.is_empty() {
        return Err(ConfigError::invalid(
            "cluster_state.etcd",
            "empty; list the client URLs of the etcd members, e.g. [\"http://127.0.0.1:2379\"]",
        ));
    }
    if raw.etcd.len() > MEMBERS_MAX {
        return Err(ConfigError::invalid(
            "cluster_state.etcd",
            format!("{} URLs, at most {MEMBERS_MAX}", raw.etcd.len()),
        ));
    }
    for (i, url) in raw.etcd.iter().enumerate() {
        parse_endpoint(url)
            .map_err(|e| ConfigError::invalid(format!("cluster_state.etcd[{i}]"), e))?;
    }
    let box_id = raw.box_id;
    let good = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if box_id.is_empty() || box_id.len() > 64 || !box_id.chars().all(good) {
        return Err(ConfigError::invalid(
            "cluster_state.box_id",
            format!(
                "{box_id:?}: 1 to 64 of A-Z a-z 0-9 _ - . (this router's name in the shared \
                 store; every router sharing the store needs its own)"
            ),
        ));
    }
    let prefix = raw.prefix.unwrap_or_else(|| "/ilp-router".to_owned());
    let prefix = prefix.trim_end_matches('/').to_owned();
    if prefix.is_empty() || prefix.len() > 200 || prefix.chars().any(|c| c.is_control()) {
        return Err(ConfigError::invalid(
            "cluster_state.prefix",
            "1 to 200 printable characters, e.g. \"/ilp-router\"",
        ));
    }
    let ms = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| {
        let v = value.unwrap_or(default);
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::invalid(
                format!("cluster_state.{key}"),
                format!("{v}, must be {min}..={max}"),
            ))
        }
    };
    Ok(ClusterStateConfig {
        etcd: raw.etcd,
        box_id,
        prefix,
        timeout_ms: ms("timeout_ms", raw.timeout_ms, 500, 10, 60_000)?,
        publish_ms: ms("publish_ms", raw.publish_ms, 1000, 10, 3_600_000)?,
        idle_ms: ms("idle_ms", raw.idle_ms, 2000, 10, 3_600_000)?,
        chunk_divisor: ms("chunk_divisor", raw.chunk_divisor, 8, 1, 1 << 20)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const PEERS: &str = r#"
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
shared_limit = true
[rates]
USD = "1"
"#;

    const CLUSTER: &str = r#"
[cluster_state]
etcd = ["http://127.0.0.1:2379", "http://localhost:2381"]
box_id = "r1"
"#;

    fn error(text: &str) -> String {
        Config::from_toml_str(text)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn cluster_state_with_its_defaults() {
        let config = Config::from_toml_str(&format!("{PEERS}{CLUSTER}")).unwrap();
        let cluster = config.cluster_state().unwrap();
        assert_eq!(cluster.box_id, "r1");
        assert_eq!(cluster.prefix, "/ilp-router");
        assert_eq!(
            (
                cluster.timeout_ms,
                cluster.publish_ms,
                cluster.idle_ms,
                cluster.chunk_divisor
            ),
            (500, 1000, 2000, 8)
        );
        let names: Vec<&str> = config.shared_peers().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alice"]);
    }

    #[test]
    fn each_mistake_names_its_key() {
        let e = error(PEERS);
        assert!(
            e.contains("peers[0].shared_limit") && e.contains("[cluster_state]"),
            "{e}"
        );
        let bad = |from: &str, to: &str| error(&format!("{PEERS}{}", CLUSTER.replace(from, to)));
        let e = bad("http://127.0.0.1:2379", "https://127.0.0.1:2379");
        assert!(
            e.contains("cluster_state.etcd[0]") && e.contains("https"),
            "{e}"
        );
        let e = bad("\"http://localhost:2381\"", "\"localhost:2381\"");
        assert!(e.contains("cluster_state.etcd[1]"), "{e}");
        let e = bad(
            r#"["http://127.0.0.1:2379", "http://localhost:2381"]"#,
            "[]",
        );
        assert!(e.contains("cluster_state.etcd: empty"), "{e}");
        let e = bad("\"r1\"", "\"r 1\"");
        assert!(e.contains("cluster_state.box_id"), "{e}");
        let e = error(&format!("{PEERS}{CLUSTER}chunk_divisor = 0\n"));
        assert!(e.contains("cluster_state.chunk_divisor"), "{e}");
        let e = error(&format!("{PEERS}{CLUSTER}prefix = \"/\"\n"));
        assert!(e.contains("cluster_state.prefix"), "{e}");
        let e = error(&format!("{PEERS}{CLUSTER}etcd_timeout = 5\n"));
        assert!(e.contains("etcd_timeout"), "{e}");
    }

    #[test]
    fn shared_limits_change_only_with_a_restart() {
        let running = Config::from_toml_str(&format!("{PEERS}{CLUSTER}")).unwrap();
        let restart = |text: String| {
            let changes = running.diff(&Config::from_toml_str(&text).unwrap());
            assert!(changes.iter().any(|c| !c.live), "{changes:?}");
        };
        restart(format!("{PEERS}{}", CLUSTER.replace("\"r1\"", "\"r2\"")));
        let unshared = PEERS.replace("shared_limit = true", "shared_limit = false");
        restart(format!("{unshared}{CLUSTER}"));
        let same = running.diff(&Config::from_toml_str(&format!("{PEERS}{CLUSTER}")).unwrap());
        assert!(same.iter().all(|c| c.live), "{same:?}");
    }
}
