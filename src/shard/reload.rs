//! Reloading the config while the router runs (`SIGHUP`, `POST /reload`): read and check the
//! file, refuse it whole if anything in it needs a restart ([`Config::diff`]), keep every
//! peer's id ([`Config::keep_ids_of`]), name the ledger rows of added peers (synced, before
//! they can post), drain removed peers, then publish it for the cores, each of which applies
//! it at its next tick or before a message from a core that already has
//! (`CoreState::follow_config`), and wait until they have. Links and Prepares in flight are
//! untouched.
//!
//! One reload runs at a time. A refused reload leaves the running config as it was, and is
//! logged and counted like an applied one.

use crate::config::{Change, Config, ConfigError};
use crate::engine::route::{Hop, RouteTable};
use crate::engine::PeerId;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `run` applied to the file's config (command-line overrides), applied again to each
/// reloaded one.
pub type Overrides = Arc<dyn Fn(&mut Config) -> Result<(), ConfigError> + Send + Sync>;

/// How long a reload waits for every core to apply it.
const APPLY_DEADLINE: Duration = Duration::from_secs(5);

/// The running config, and reloads.
pub(crate) struct ConfigHub {
    /// The running config and the route table the cores use with it (its routes plus those
    /// the control plane learned), published together.
    current: Mutex<Option<(Arc<Config>, Arc<RouteTable>)>>,
    /// The learned routes (prefix, peer) the control plane published last.
    learned: Mutex<Vec<(String, PeerId)>>,
    /// Bumped by every applied reload; each core applies up to it.
    epoch: AtomicU64,
    /// Per core: the epoch it applied.
    applied: Vec<AtomicU64>,
    source: Mutex<Option<(PathBuf, Option<Overrides>)>>,
    /// One reload at a time.
    running: Mutex<()>,
    /// Where added peers get their ledger rows, and the balances they start from.
    slots: Mutex<Slots>,
    /// Reloads applied and refused.
    pub(crate) reloads: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// What a peer added by a reload starts from.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// The state directory and the epoch of its files (rows are named in `rows.log`).
    pub(crate) state: Option<(PathBuf, u64)>,
    /// Balances the state and the settlement journal hold for names not configured at start,
    /// rows and settlements together: an added peer of that name starts from it.
    pub(crate) carried: HashMap<String, i128>,
    /// Of those, what the ledger rows hold (the rest is in the settlement journal).
    pub(crate) carried_rows: HashMap<String, i128>,
}

impl std::fmt::Debug for ConfigHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHub")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl ConfigHub {
    pub(crate) fn new(cores: usize) -> ConfigHub {
        ConfigHub {
            current: Mutex::new(None),
            learned: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
            applied: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            source: Mutex::new(None),
            running: Mutex::new(()),
            slots: Mutex::new(Slots::default()),
            reloads: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Sets the running config, where a reload reads the next one, and what added peers start
    /// from.
    pub(crate) fn start(
        &self,
        config: Arc<Config>,
        path: Option<PathBuf>,
        overrides: Option<Overrides>,
        slots: Slots,
    ) {
        let routes = Arc::new(config.route_table());
        *lock(&self.current) = Some((config, routes));
        *lock(&self.source) = path.map(|p| (p, overrides));
        *lock(&self.slots) = slots;
    }

    /// The posted balance a peer named `name` starts from when a reload adds it: what the
    /// state and the settlement journal hold for that name from before the start.
    pub(crate) fn starting_posted(&self, name: &str) -> i128 {
        lock(&self.slots).carried.get(name).copied().unwrap_or(0)
    }

    /// What the ledger rows of other slots hold for `name` from before the start (part of the
    /// durable balance of a peer a reload added under that name).
    pub(crate) fn carried_rows(&self, name: &str) -> i128 {
        lock(&self.slots)
            .carried_rows
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// The running config (`None` before `start`).
    pub(crate) fn current(&self) -> Option<Arc<Config>> {
        lock(&self.current)
            .as_ref()
            .map(|(config, _)| Arc::clone(config))
    }

    /// The running config and its route table.
    pub(crate) fn published(&self) -> Option<(Arc<Config>, Arc<RouteTable>)> {
        lock(&self.current).clone()
    }

    /// Publishes the routes the control plane learned: a new table (the config's routes
    /// first) for the cores to swap in at their next tick. Returns its epoch.
    pub(crate) fn publish_learned(&self, learned: Vec<(String, PeerId)>) -> u64 {
        let _one = lock(&self.running);
        let Some((config, _)) = self.published() else {
            return self.epoch();
        };
        let routes = Arc::new(merged_routes(&config, &learned));
        *lock(&self.learned) = learned;
        *lock(&self.current) = Some((config, routes));
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Publishes `config` as a reload would, without reading a file or waiting for the cores.
    #[cfg(test)]
    pub(crate) fn publish(&self, config: Arc<Config>) {
        let routes = Arc::new(merged_routes(&config, &lock(&self.learned)));
        *lock(&self.current) = Some((config, routes));
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The latest epoch.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A core applied `epoch`.
    pub(crate) fn applied(&self, core: usize, epoch: u64) {
        self.applied[core].store(epoch, Ordering::Release);
    }

    /// Reads the file again and applies it; returns what changed, or why nothing did (the
    /// config error names its key). `draining` is the operator's per-slot drain flags: a
    /// removed peer is drained, one that comes back is not.
    pub(crate) fn reload(&self, draining: &[AtomicBool]) -> Result<Vec<Change>, String> {
        let _one = lock(&self.running);
        let result = self.try_reload(draining);
        match &result {
            Ok(changes) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(changes = changes.len(), "config reloaded");
                for change in changes {
                    tracing::info!("  {}", change.what);
                }
            }
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("config reload refused, the running config stays: {e}");
            }
        }
        result
    }

    fn try_reload(&self, draining: &[AtomicBool]) -> Result<Vec<Change>, String> {
        let (path, overrides) = lock(&self.source)
            .clone()
            .ok_or("the router was started without a config file to reload")?;
        let old = self.current().ok_or("the router has not started")?;
        // A file without ilp_address keeps the address learned from the parent at start.
        let mut new =
            Config::load_with_address(&path, Some(old.ilp_address())).map_err(|e| e.to_string())?;
        if let Some(overrides) = overrides {
            overrides(&mut new).map_err(|e| e.to_string())?;
        }
        let changes = old.diff(&new);
        let restart: Vec<&str> = changes
            .iter()
            .filter(|c| !c.live)
            .map(|c| c.what.as_str())
            .collect();
        if !restart.is_empty() {
            return Err(format!(
                "these changes need a restart: {}",
                restart.join("; ")
            ));
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        let new = new.keep_ids_of(&old).map_err(|e| e.to_string())?;
        if new.peers().len() > draining.len() {
            return Err(format!(
                "{} peer slots, but the router started with room for {}",
                new.peers().len(),
                draining.len()
            ));
        }
        if let Some((dir, epoch)) = &lock(&self.slots).state {
            for peer in &new.peers()[old.peers().len()..] {
                crate::state::name_row(dir, *epoch, peer.id.index(), &peer.name)
                    .map_err(|e| format!("naming the ledger row of peer {:?}: {e}", peer.name))?;
            }
        }
        for (old_peer, peer) in old.peers().iter().zip(new.peers()) {
            match (old_peer.removed, peer.removed) {
                (false, true) => draining[peer.id.index()].store(true, Ordering::Relaxed),
                (true, false) => draining[peer.id.index()].store(false, Ordering::Relaxed),
                _ => {}
            }
        }
        let routes = Arc::new(merged_routes(&new, &lock(&self.learned)));
        *lock(&self.current) = Some((Arc::new(new), routes));
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let start = Instant::now();
        while self
            .applied
            .iter()
            .any(|a| a.load(Ordering::Acquire) < epoch)
        {
            if start.elapsed() > APPLY_DEADLINE {
                return Err("published, but not every core applied it within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(changes)
    }
}

/// The route table of `config` with the `learned` routes added: a configured route wins over
/// a learned one for the same prefix, and a learned route to a removed peer is left out.
pub(crate) fn merged_routes(config: &Config, learned: &[(String, PeerId)]) -> RouteTable {
    if learned.is_empty() {
        return config.route_table();
    }
    let configured: std::collections::HashSet<&str> =
        config.routes().iter().map(|r| r.prefix.as_str()).collect();
    let usable = learned.iter().filter(|(prefix, peer)| {
        !configured.contains(prefix.as_str())
            && config.peers().get(peer.index()).is_some_and(|p| !p.removed)
    });
    let routes = config
        .routes()
        .iter()
        .map(|r| (r.prefix.as_bytes(), r.hop))
        .chain(usable.map(|(prefix, peer)| (prefix.as_bytes(), Hop::Peer(*peer))));
    match RouteTable::build(
        config.ilp_address().as_bytes(),
        routes,
        config.default_route(),
    ) {
        Ok(table) => table,
        Err(e) => {
            // Learned prefixes are checked when they arrive; keep the configured table.
            tracing::warn!("learned routes left out of the route table: {e}");
            config.route_table()
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
