//! What a reload would change: [`Config::diff`] lists every difference between the running
//! config and a new one, each marked as applied live or as needing a restart.
//!
//! Live (every core picks the new config up at its next tick, links and Prepares in flight
//! untouched): peers added and removed (a removed one is drained, then its links close; it
//! keeps its slot and balance until the router stops, see [`Config::keep_ids_of`]), routes
//! and `default_route`, groups, `[rates]`, `spread`, a peer's `auth_tokens` (new connections
//! and requests; links already up stay), `max_packet_amount`, and the limits of
//! [`LIVE_LIMITS`]. Everything else (a peer's relation, asset, balance or rate limits or
//! outgoing link, `ilp_address`, timing, `[listen]`, the other `[limits]`, `[state]`,
//! `[admin]`) needs a restart, and a reload that changes
//! any of it is refused as a whole. Peers are matched by name: reordering them changes
//! nothing.

use super::{Config, Peer};

/// The `[limits]` a reload applies. Each is read where it is used, never sized into a table at
/// start: the admission caps when a connection arrives or authenticates (`links_max`,
/// `unauthenticated_max`, `connections_per_peer_max`), the link timers at every tick
/// (`btp_ping_interval_ms`, `btp_pings_missed_max`, `http_client_idle_timeout_ms`), the
/// engine's in-flight share (`pending_per_peer_percent`), and what each new connection is
/// given when it opens (the rest: connections already open keep the values they started
/// with). The others size tables, rings, pools, buffers or rate buckets: a restart.
pub const LIVE_LIMITS: &[&str] = &[
    "links_max",
    "unauthenticated_max",
    "connections_per_peer_max",
    "btp_ping_interval_ms",
    "btp_pings_missed_max",
    "http_client_idle_timeout_ms",
    "pending_per_peer_percent",
    "auth_timeout_ms",
    "bad_frames_max",
    "in_flight_per_link_max",
    "write_timeout_ms",
    "http_request_timeout_ms",
    "http_idle_timeout_ms",
    "http_pipeline_max",
    "routes_per_peer_max",
    "route_path_max",
];

/// One difference between two configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changed, for an operator (`routes: + g.x -> bob`).
    pub what: String,
    /// Whether a reload applies it (else it needs a restart).
    pub live: bool,
}

impl Config {
    /// Every difference from `self` (running) to `new`, in key order.
    pub fn diff(&self, new: &Config) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut restart = |what: String| changes.push(Change { what, live: false });
        if self.ilp_address != new.ilp_address {
            restart(format!(
                "ilp_address: {:?} -> {:?}",
                self.ilp_address, new.ilp_address
            ));
        }
        if (self.min_message_window_ms, self.max_hold_time_ms)
            != (new.min_message_window_ms, new.max_hold_time_ms)
        {
            restart("min_message_window_ms / max_hold_time_ms".into());
        }
        if self.listen != new.listen {
            restart("[listen]".into());
        }
        let mut limits = Vec::new();
        for key in super::Limits::KEYS {
            let (was, now) = (self.limits.get(key), new.limits.get(key));
            if was != now {
                let (was, now) = (was.unwrap_or(0), now.unwrap_or(0));
                limits.push(Change {
                    what: format!("limits.{key}: {was} -> {now}"),
                    live: LIVE_LIMITS.contains(key),
                });
            }
        }
        if self.state != new.state {
            restart("[state]".into());
        }
        if self.cluster_state != new.cluster_state {
            restart("[cluster_state]".into());
        }
        if format!("{:?}", self.admin) != format!("{:?}", new.admin)
            || self
                .admin
                .as_ref()
                .and_then(|a| a.token.as_ref())
                .map(|t| t.expose())
                != new
                    .admin
                    .as_ref()
                    .and_then(|a| a.token.as_ref())
                    .map(|t| t.expose())
        {
            restart("[admin]".into());
        }
        changes.extend(limits);
        if self.tls.digest != new.tls.digest {
            // Taken by new connections; open links keep the keys they agreed.
            changes.push(Change {
                what: "[tls]: certificates, keys, CAs or client certificate pins".into(),
                live: true,
            });
        }
        for peer in new.live_peers() {
            match self.peer_id(&peer.name).map(|id| self.peer(id)) {
                Some(old) => peer_changes(old, peer, &mut changes),
                None => match self.peers.iter().find(|p| p.removed && p.name == peer.name) {
                    Some(old) if fixed(old) == fixed(peer) => changes.push(Change {
                        what: format!(
                            "peers: + {} (back in its slot, with its balance)",
                            peer.name
                        ),
                        live: true,
                    }),
                    Some(_) => changes.push(Change {
                        what: format!(
                            "peers.{}: removed by a reload, back with another relation, asset, \
                             max_balance, rate limits or outgoing link",
                            peer.name
                        ),
                        live: false,
                    }),
                    None => changes.push(Change {
                        what: format!("peers: + {}", peer.name),
                        live: true,
                    }),
                },
            }
        }
        for peer in self.live_peers() {
            if new.peer_id(&peer.name).is_none() {
                changes.push(Change {
                    what: format!(
                        "peers: - {} (drained, then its links close; its balance is kept)",
                        peer.name
                    ),
                    live: true,
                });
            }
        }
        let live = |what: String| Change { what, live: true };
        if self.spread != new.spread {
            changes.push(live(format!("spread: {} -> {}", self.spread, new.spread)));
        }
        for (code, price) in &new.rates {
            match self.rate(code) {
                Some(old) if old == *price => {}
                Some(old) => changes.push(live(format!("rates.{code}: {old} -> {price}"))),
                None => changes.push(live(format!("rates.{code}: + {price}"))),
            }
        }
        for (code, price) in &self.rates {
            if new.rate(code).is_none() {
                changes.push(live(format!("rates.{code}: - {price}")));
            }
        }
        let groups = |c: &Config| {
            c.groups
                .iter()
                .map(|g| (g.name.clone(), format!("{g:?}")))
                .collect::<Vec<_>>()
        };
        let (old_groups, new_groups) = (groups(self), groups(new));
        for (name, shape) in &new_groups {
            match old_groups.iter().find(|(n, _)| n == name) {
                Some((_, old)) if old == shape => {}
                Some(_) => changes.push(live(format!("groups.{name}: changed"))),
                None => changes.push(live(format!("groups.{name}: +"))),
            }
        }
        for (name, _) in &old_groups {
            if !new_groups.iter().any(|(n, _)| n == name) {
                changes.push(live(format!("groups.{name}: -")));
            }
        }
        let routes = |c: &Config| {
            c.routes
                .iter()
                .filter(|r| !r.implicit)
                .map(|r| (r.prefix.clone(), c.hop_name(r.hop)))
                .collect::<Vec<_>>()
        };
        let (old_routes, new_routes) = (routes(self), routes(new));
        for (prefix, hop) in &new_routes {
            match old_routes.iter().find(|(p, _)| p == prefix) {
                Some((_, old)) if old == hop => {}
                Some((_, old)) => changes.push(live(format!("routes: {prefix} {old} -> {hop}"))),
                None => changes.push(live(format!("routes: + {prefix} -> {hop}"))),
            }
        }
        for (prefix, hop) in &old_routes {
            if !new_routes.iter().any(|(p, _)| p == prefix) {
                changes.push(live(format!("routes: - {prefix} -> {hop}")));
            }
        }
        let default = |c: &Config| c.default_route.map(|p| c.peer(p).name.clone());
        if default(self) != default(new) {
            changes.push(live(format!(
                "default_route: {:?} -> {:?}",
                default(self),
                default(new)
            )));
        }
        changes
    }

    /// A route's next hop by name: `peer bob` or `group cluster`.
    fn hop_name(&self, hop: crate::engine::route::Hop) -> String {
        match hop {
            crate::engine::route::Hop::Peer(p) => format!("peer {}", self.peer(p).name),
            crate::engine::route::Hop::Group(g) => format!("group {}", self.groups[g.index()].name),
        }
    }
}

/// What of a peer needs a restart to change: its relation, asset, balance and rate limits, and
/// how we reach it (the secret included).
fn fixed(p: &Peer) -> impl PartialEq {
    (
        p.relation,
        p.asset_code.clone(),
        p.asset_scale,
        p.max_balance,
        p.shared_limit,
        p.max_packets_per_second,
        p.max_amount_per_second,
        format!("{:?}", p.outgoing),
        p.dial()
            .map(|d| d.token.expose().to_owned())
            .or_else(|| p.http().map(|d| d.token.expose().to_owned())),
    )
}

/// The differences of one peer present in both configs.
fn peer_changes(old: &Peer, new: &Peer, changes: &mut Vec<Change>) {
    let name = &old.name;
    let tokens = |p: &Peer| {
        p.auth_tokens
            .iter()
            .map(|t| t.expose().to_owned())
            .collect::<Vec<_>>()
    };
    if tokens(old) != tokens(new) {
        changes.push(Change {
            what: format!("peers.{name}.auth_tokens: rotated"),
            live: true,
        });
    }
    if old.max_packet_amount != new.max_packet_amount {
        changes.push(Change {
            what: format!(
                "peers.{name}.max_packet_amount: {} -> {}",
                old.max_packet_amount, new.max_packet_amount
            ),
            live: true,
        });
    }
    if (old.send_routes, old.receive_routes) != (new.send_routes, new.receive_routes) {
        changes.push(Change {
            what: format!(
                "peers.{name}: send_routes {} -> {}, receive_routes {} -> {}",
                old.send_routes, new.send_routes, old.receive_routes, new.receive_routes
            ),
            live: true,
        });
    }
    if fixed(old) != fixed(new) {
        changes.push(Change {
            what: format!(
                "peers.{name}: relation, asset, max_balance, shared_limit, rate limits or outgoing link"
            ),
            live: false,
        });
    }
}

#[cfg(test)]
mod test {
    use super::*;

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
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000"
[rates]
USD = "1"
"#;

    fn diff(new: &str) -> Vec<Change> {
        let old = Config::from_toml_str(BASE).unwrap();
        old.diff(&Config::from_toml_str(new).unwrap())
    }

    #[test]
    fn routes_groups_rates_tokens_and_packet_limits_are_live() {
        assert!(diff(BASE).is_empty());
        let new = BASE.replace("alice-secret", "alice-new")
            + "[[groups]]\nname = \"g\"\npeers = [\"bob\"]\n\
               [[routes]]\nprefix = \"g.x\"\npeer = \"bob\"\n\
               [[routes]]\nprefix = \"g.y\"\ngroup = \"g\"\n";
        let new = new.replace("USD = \"1\"", "USD = \"1\"\nEUR = \"1.1\"");
        let changes = diff(&new);
        let whats: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
        assert!(changes.iter().all(|c| c.live), "{changes:?}");
        assert!(
            whats.contains(&"peers.alice.auth_tokens: rotated"),
            "{whats:?}"
        );
        assert!(whats.contains(&"routes: + g.x -> peer bob"), "{whats:?}");
        assert!(whats.contains(&"routes: + g.y -> group g"), "{whats:?}");
        assert!(whats.contains(&"groups.g: +"), "{whats:?}");
        assert!(whats.contains(&"rates.EUR: + 1.1"), "{whats:?}");
        // The route exchange switches too.
        let switched = BASE.replacen(
            "relation = \"child\"",
            "relation = \"child\"\nreceive_routes = true",
            1,
        );
        let changes = diff(&switched);
        assert_eq!(
            changes,
            [Change {
                what: "peers.alice: send_routes true -> true, receive_routes false -> true".into(),
                live: true
            }]
        );
    }

    #[test]
    fn peers_added_and_removed_are_live_and_matched_by_name() {
        let changes = diff(&BASE.replacen("name = \"bob\"", "name = \"carol\"", 1));
        let whats: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
        assert!(changes.iter().all(|c| c.live), "{changes:?}");
        assert!(whats.contains(&"peers: + carol"), "{whats:?}");
        assert!(
            whats.iter().any(|w| w.starts_with("peers: - bob (drained")),
            "{whats:?}"
        );
        // The same peers in another order: nothing changes.
        let (alice, rest) = BASE.split_at(BASE.find("[[peers]]").unwrap());
        let (first, second) = rest.split_at(rest[1..].find("[[peers]]").unwrap() + 1);
        let second = second.replace("[rates]\nUSD = \"1\"\n", "");
        let swapped = format!("{alice}{second}{first}[rates]\nUSD = \"1\"\n");
        assert!(diff(&swapped).is_empty(), "{:?}", diff(&swapped));
    }

    #[test]
    fn a_removed_peer_back_with_another_asset_needs_a_restart() {
        let running = Config::from_toml_str(BASE).unwrap();
        let without_bob =
            BASE[..BASE.rfind("[[peers]]").unwrap()].to_owned() + "[rates]\nUSD = \"1\"\n";
        let running = Config::from_toml_str(&without_bob)
            .unwrap()
            .keep_ids_of(&running)
            .unwrap();
        let same = Config::from_toml_str(BASE).unwrap();
        let changes = running.diff(&same);
        assert!(
            changes.iter().all(|c| c.live) && changes[0].what.contains("back in its slot"),
            "{changes:?}"
        );
        let other = Config::from_toml_str(&BASE.replacen(
            "max_balance = \"1000\"\n[rates]",
            "max_balance = \"7\"\n[rates]",
            1,
        ))
        .unwrap();
        let changes = running.diff(&other);
        assert!(
            changes
                .iter()
                .any(|c| !c.live && c.what.starts_with("peers.bob: removed")),
            "{changes:?}"
        );
    }

    #[test]
    fn limits_read_where_they_are_used_are_live_the_others_need_a_restart() {
        let with = |limits: &str| {
            let text = format!("{BASE}[limits]\n{limits}\n");
            Config::from_toml_str(BASE)
                .unwrap()
                .diff(&Config::from_toml_str(&text).unwrap())
        };
        let changes = with("links_max = 100\nbtp_ping_interval_ms = 2000");
        assert_eq!(
            changes,
            [
                Change {
                    what: "limits.links_max: 4096 -> 100".into(),
                    live: true
                },
                Change {
                    what: "limits.btp_ping_interval_ms: 5000 -> 2000".into(),
                    live: true
                },
            ]
        );
        let changes = with("ring_capacity = 16");
        assert!(
            changes.len() == 1 && !changes[0].live && changes[0].what.contains("ring_capacity"),
            "{changes:?}"
        );
        for key in LIVE_LIMITS {
            assert!(super::super::Limits::KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn the_peer_set_assets_and_listeners_need_a_restart() {
        for (from, to, what) in [
            (
                "max_balance = \"1000\"\n[rates]",
                "max_balance = \"5\"\n[rates]",
                "peers.bob",
            ),
            ("127.0.0.1:7768", "127.0.0.1:7769", "[listen]"),
            (
                "ilp_address = \"g.router\"",
                "ilp_address = \"g.other\"",
                "ilp_address",
            ),
        ] {
            let changes = diff(&BASE.replacen(from, to, 1));
            assert!(
                changes.iter().any(|c| !c.live && c.what.starts_with(what)),
                "{from} -> {to}: {changes:?}"
            );
        }
    }
}
