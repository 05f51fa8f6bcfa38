//! What a reload would change: [`Config::diff`] lists every difference between the running
//! config and a new one, each marked as applied live or as needing a restart.
//!
//! Live (every core picks the new config up at its next tick, links and Prepares in flight
//! untouched): routes and `default_route`, groups, `[rates]`, `spread`, a peer's
//! `auth_tokens` (new connections and requests; links already up stay) and
//! `max_packet_amount`. Everything else (the peer set, a peer's relation, asset, limits or
//! outgoing link, `ilp_address`, timing, `[listen]`, `[limits]`, `[state]`, `[admin]`) needs
//! a restart today, and a reload that changes any of it is refused as a whole.

use super::{Config, Peer};

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
        if (self.listen_btp, self.listen_http) != (new.listen_btp, new.listen_http) {
            restart("[listen]".into());
        }
        if format!("{:?}", self.limits) != format!("{:?}", new.limits) {
            restart("[limits]".into());
        }
        if self.state != new.state {
            restart("[state]".into());
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
        let names = |c: &Config| c.peers.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        if names(self) != names(new) {
            restart(format!(
                "peers: {:?} -> {:?} (adding or removing peers needs a restart)",
                names(self),
                names(new)
            ));
        } else {
            for (old, new) in self.peers.iter().zip(&new.peers) {
                peer_changes(old, new, &mut changes);
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
    let fixed = |p: &Peer| {
        (
            p.relation,
            p.asset_code.clone(),
            p.asset_scale,
            p.max_balance,
            p.max_packets_per_second,
            p.max_amount_per_second,
            format!("{:?}", p.outgoing),
        )
    };
    let secret = |p: &Peer| {
        p.dial()
            .map(|d| d.token.expose().to_owned())
            .or_else(|| p.http().map(|d| d.token.expose().to_owned()))
    };
    if fixed(old) != fixed(new) || secret(old) != secret(new) {
        changes.push(Change {
            what: format!(
                "peers.{name}: relation, asset, max_balance, rate limits or outgoing link"
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
    }

    #[test]
    fn the_peer_set_assets_and_listeners_need_a_restart() {
        for (from, to, what) in [
            ("name = \"bob\"", "name = \"carol\"", "peers:"),
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
