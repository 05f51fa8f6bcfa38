//! Peer ids across reloads. A peer's id indexes every per-peer table on every core (links,
//! balances, leases, rate buckets, counters, the rows of the ledger files), so a reload never
//! moves one: [`Config::keep_ids_of`] renumbers a reloaded config so that each peer keeps the
//! id it runs under, gives an added peer the next free slot, and keeps a removed peer's slot
//! as a tombstone ([`Peer::removed`]) until the router stops.

use super::{route_error, Config, ConfigError, Peer};
use crate::engine::route::{Hop, RouteTable};
use crate::engine::PeerId;
use std::collections::HashMap;

impl Config {
    /// This config (freshly loaded, ids in file order) renumbered against `running`:
    ///
    /// - a peer `running` has, removed or not, keeps its id (a removed one that comes back
    ///   takes its old slot, balance and counters);
    /// - a peer `running` has and this config does not becomes a tombstone in its slot:
    ///   [`Peer::removed`], no tokens (it can no longer authenticate), no route or group (this
    ///   config has none for it), drained by the runtime;
    /// - a new peer takes the next slot, in file order.
    ///
    /// Routes, groups, `default_route` and the route table follow the new ids. Refused, naming
    /// `limits.peers_max`, when the slots would outgrow the running `peers_max`.
    pub fn keep_ids_of(mut self, running: &Config) -> Result<Config, ConfigError> {
        let mut fresh: Vec<Option<Peer>> = std::mem::take(&mut self.peers)
            .into_iter()
            .map(Some)
            .collect();
        let index_of: HashMap<String, usize> = fresh
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_ref().expect("all present").name.clone(), i))
            .collect();
        // The new id of the peer at each index of this file.
        let mut moved = vec![PeerId(0); fresh.len()];
        let mut slots: Vec<Peer> = Vec::with_capacity(running.peers.len() + fresh.len());
        for old in &running.peers {
            let peer = match index_of.get(&old.name) {
                Some(&i) => {
                    let mut peer = fresh[i].take().expect("names are unique");
                    moved[i] = old.id;
                    peer.id = old.id;
                    peer
                }
                None => {
                    let mut tombstone = old.clone();
                    tombstone.removed = true;
                    tombstone.auth_tokens.clear();
                    tombstone
                }
            };
            slots.push(peer);
        }
        for (i, peer) in fresh.iter_mut().enumerate() {
            if let Some(mut peer) = peer.take() {
                let id = PeerId(u16::try_from(slots.len()).unwrap_or(u16::MAX));
                moved[i] = id;
                peer.id = id;
                slots.push(peer);
            }
        }
        let max = running.limits.peers_max;
        if slots.len() > max {
            let removed = slots.iter().filter(|p| p.removed).count();
            return Err(ConfigError::invalid(
                "limits.peers_max",
                format!(
                    "{} peer slots are needed ({} configured, {removed} removed since the \
                     router started, which keep theirs until it stops), over limits.peers_max \
                     ({max}); raise it and restart",
                    slots.len(),
                    slots.len() - removed
                ),
            ));
        }
        let remap = |id: PeerId| moved[id.index()];
        for route in &mut self.routes {
            if let Hop::Peer(peer) = route.hop {
                route.hop = Hop::Peer(remap(peer));
            }
        }
        for group in &mut self.groups {
            for peer in &mut group.peers {
                *peer = remap(*peer);
            }
        }
        self.default_route = self.default_route.map(remap);
        self.tls.remap(&moved, slots.len());
        self.peer_ids = slots
            .iter()
            .filter(|p| !p.removed)
            .map(|p| (p.name.clone(), p.id))
            .collect();
        self.peers = slots;
        self.route_table = RouteTable::build(
            self.ilp_address.as_bytes(),
            self.routes.iter().map(|r| (r.prefix.as_bytes(), r.hop)),
            self.default_route,
        )
        .map_err(|e| route_error(e, &self.routes))?;
        Ok(self)
    }

    /// Peers that are configured, not removed by a reload.
    pub fn live_peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter().filter(|p| !p.removed)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn config(peers: &[&str], routes: &[(&str, &str)]) -> Config {
        let mut text = String::from(
            "ilp_address = \"g.router\"\n[listen]\nbtp = \"127.0.0.1:7768\"\n\
             [limits]\npeers_max = 4\n",
        );
        for name in peers {
            text += &format!(
                "[[peers]]\nname = \"{name}\"\nauth_tokens = [\"{name}-secret\"]\n\
                 relation = \"peer\"\nasset_code = \"USD\"\nasset_scale = 9\n\
                 max_balance = \"1000\"\n"
            );
        }
        for (prefix, peer) in routes {
            text += &format!("[[routes]]\nprefix = \"{prefix}\"\npeer = \"{peer}\"\n");
        }
        text += "[[groups]]\nname = \"all\"\npeers = [";
        text += &peers
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        text += "]\n";
        Config::from_toml_str(&text).unwrap()
    }

    fn names(config: &Config) -> Vec<(String, bool)> {
        config
            .peers()
            .iter()
            .map(|p| (p.name.clone(), p.removed))
            .collect()
    }

    #[test]
    fn kept_peers_keep_their_ids_removed_ones_their_slots_and_new_ones_come_last() {
        let running = config(&["alice", "bob", "carol"], &[("g.far", "bob")]);
        let new = config(&["dave", "carol", "alice"], &[("g.far", "carol")])
            .keep_ids_of(&running)
            .unwrap();
        assert_eq!(
            names(&new),
            [
                ("alice".to_owned(), false),
                ("bob".to_owned(), true),
                ("carol".to_owned(), false),
                ("dave".to_owned(), false)
            ]
        );
        for (i, p) in new.peers().iter().enumerate() {
            assert_eq!(p.id.index(), i);
        }
        assert!(
            new.peers()[1].auth_tokens.is_empty(),
            "a tombstone has no token"
        );
        assert_eq!(new.peer_id("bob"), None);
        assert_eq!(new.peer_id("dave"), Some(PeerId(3)));
        assert_eq!(new.peer_id("carol"), Some(PeerId(2)));
        // Routes, groups and the route table follow the ids.
        let far = new.routes().iter().find(|r| r.prefix == "g.far").unwrap();
        assert_eq!(far.hop, Hop::Peer(PeerId(2)));
        assert_eq!(new.route_table().lookup_peer(b"g.far.x"), Some(PeerId(2)));
        assert_eq!(
            new.route_table().lookup_peer(b"g.router.dave.x"),
            Some(PeerId(3))
        );
        assert_eq!(new.route_table().lookup_peer(b"g.router.bob.x"), None);
        let mut group = new.groups()[0].peers.clone();
        group.sort();
        assert_eq!(group, [PeerId(0), PeerId(2), PeerId(3)]);
    }

    #[test]
    fn a_removed_peer_that_returns_takes_its_old_slot() {
        let running = config(&["alice", "bob"], &[]);
        let without = config(&["alice"], &[]).keep_ids_of(&running).unwrap();
        let back = config(&["bob", "alice"], &[])
            .keep_ids_of(&without)
            .unwrap();
        assert_eq!(
            names(&back),
            [("alice".to_owned(), false), ("bob".to_owned(), false)]
        );
        assert_eq!(back.peer_id("bob"), Some(PeerId(1)));
        assert_eq!(back.peers()[1].auth_tokens.len(), 1);
    }

    #[test]
    fn slots_past_peers_max_are_refused_naming_the_key() {
        let running = config(&["a", "b", "c"], &[]);
        let without = config(&["a", "b"], &[]).keep_ids_of(&running).unwrap();
        // a, b, the tombstone of c, and two new ones: five slots, over 4.
        let err = config(&["a", "b", "d", "e"], &[])
            .keep_ids_of(&without)
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.peers_max"), "{err}");
        assert!(err.contains("5 peer slots"), "{err}");
        assert!(config(&["a", "b", "d"], &[]).keep_ids_of(&without).is_ok());
    }
}
