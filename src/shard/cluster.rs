//! Limits shared with other routers at run time: the cluster agent (`crate::cluster::agent`)
//! on a thread of its own with its etcd client, never on a core.
//!
//! - At each tick, the home core of every shared peer applies what the agent left for it
//!   ([`ClusterHub::take`]: raise or lower the peer's ceiling) and leaves the peer's status
//!   ([`ClusterHub::publish`]); a slot per core, overwritten, so nothing grows.
//! - The thread wakes every [`STEP`], hands the statuses to the agent, runs its step (the
//!   etcd calls, which may block up to the configured timeout per member: only this thread
//!   waits) and queues its commands.
//! - At a graceful stop the cores, once every one has stopped forwarding and the last lease
//!   reports have crossed between them, publish a final status; the agent then writes each
//!   shared peer's ceiling down to its posted balance and publishes it.

use super::Shared;
use crate::cluster::agent::{Agent, AgentCounters, Command, PeerSpec, PeerView, Settings, Status};
use crate::cluster::etcd::EtcdClient;
use crate::cluster::EtcdStore;
use crate::config::Config;
use crate::id::PeerId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the agent runs.
pub(crate) const STEP: Duration = Duration::from_millis(20);
/// The longest the agent waits for the cores' final statuses at a stop.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// The channels between the cores and the agent, and what the admin side reads.
#[derive(Debug)]
pub(crate) struct ClusterHub {
    /// Per core: commands taken at its tick.
    commands: Vec<Mutex<Vec<Command>>>,
    /// Per core: the statuses of the shared peers homed there, at its last tick.
    statuses: Vec<Mutex<Vec<(PeerId, Status)>>>,
    /// Cores that have stopped forwarding (at a stop).
    pub(crate) quiet: AtomicUsize,
    /// Cores that published their final status.
    finished: AtomicUsize,
    /// What `GET /cluster` and the metrics show.
    pub(crate) view: Mutex<ClusterView>,
}

/// What the admin side shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterView {
    /// This box's id.
    pub(crate) box_id: String,
    /// The member in use.
    pub(crate) endpoint: String,
    /// The agent's counters.
    pub(crate) counters: AgentCounters,
    /// HTTP requests made to etcd.
    pub(crate) requests: u64,
    /// Every shared peer.
    pub(crate) peers: Vec<PeerView>,
    /// Why this router takes no more headroom (another router writes its entries).
    pub(crate) fenced: Option<String>,
}

impl ClusterHub {
    pub(crate) fn new(cores: usize) -> ClusterHub {
        ClusterHub {
            commands: (0..cores).map(|_| Mutex::new(Vec::new())).collect(),
            statuses: (0..cores).map(|_| Mutex::new(Vec::new())).collect(),
            quiet: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            view: Mutex::new(ClusterView::default()),
        }
    }

    /// What the agent left for `core` (nothing while the agent holds the lock: next tick).
    pub(crate) fn take(&self, core: usize) -> Vec<Command> {
        match self.commands[core].try_lock() {
            Ok(mut commands) if !commands.is_empty() => std::mem::take(&mut *commands),
            _ => Vec::new(),
        }
    }

    /// `core`'s statuses of the shared peers homed there (skipped while the agent reads: the
    /// next tick writes them again).
    pub(crate) fn publish(&self, core: usize, statuses: impl Iterator<Item = (PeerId, Status)>) {
        if let Ok(mut slot) = self.statuses[core].try_lock() {
            slot.clear();
            slot.extend(statuses);
        }
    }

    /// `core`'s final statuses, at a stop (waits for the lock).
    pub(crate) fn publish_final(&self, core: usize, statuses: Vec<(PeerId, Status)>) {
        *self.statuses[core]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = statuses;
        self.finished.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn push(&self, core: usize, command: Command) {
        self.commands[core]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
    }

    /// `core`'s statuses as it last left them.
    pub(super) fn statuses(&self, core: usize) -> Vec<(PeerId, Status)> {
        self.statuses[core]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn read_statuses(&self, agent: &mut Agent) {
        for core in 0..self.statuses.len() {
            for (peer, status) in self.statuses(core) {
                agent.on_status(peer, status);
            }
        }
    }
}

/// The shared peers of `config` with their home cores.
fn specs(config: &Config, cores: usize) -> Vec<PeerSpec> {
    config
        .shared_peers()
        .map(|p| PeerSpec {
            peer: p.id,
            name: p.name.clone(),
            home: usize::from(config.home_core(p.id, cores).0),
            max_balance: p.max_balance,
        })
        .collect()
}

/// Starts the agent's thread when `[cluster_state]` is configured.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    config: &Config,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(cluster) = config.cluster_state() else {
        return Ok(None);
    };
    let client = EtcdClient::new(&cluster.etcd, Duration::from_millis(cluster.timeout_ms))
        .map_err(std::io::Error::other)?;
    let settings = Settings {
        box_id: cluster.box_id.clone(),
        prefix: cluster.prefix.clone(),
        publish_ms: cluster.publish_ms,
        idle_ms: cluster.idle_ms,
        chunk_divisor: cluster.chunk_divisor,
        // This process in every entry it writes: another router given the same box_id is
        // found out (see the agent's `check_own_entry`).
        instance: super::control::random_ids().0[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    };
    let thread = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || run(&shared, settings, EtcdStore(client)))?;
    Ok(Some(thread))
}

fn run(shared: &Shared, settings: Settings, mut store: EtcdStore) {
    let hub = &shared.cluster;
    let mut agent = Agent::new(settings.clone());
    let mut config = shared.config.current();
    if let Some(config) = &config {
        agent.follow(&specs(config, shared.cores));
    }
    tracing::info!(box_id = %settings.box_id, endpoint = %store.0.endpoint(), "cluster agent started");
    let mut out = Vec::new();
    while !shared.shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(STEP);
        if let Some(current) = shared.config.current() {
            if !config.as_ref().is_some_and(|c| Arc::ptr_eq(c, &current)) {
                agent.follow(&specs(&current, shared.cores));
                config = Some(current);
            }
        }
        hub.read_statuses(&mut agent);
        agent.step(unix_ms(), &mut store, &mut out);
        for (core, command) in out.drain(..) {
            hub.push(core, command);
        }
        show(hub, &agent, &settings, &store);
    }
    // The stop: wait for every core's final status, then give back what is not posted.
    let deadline = Instant::now() + STOP_WAIT;
    while hub.finished.load(Ordering::Acquire) < shared.cores && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if hub.finished.load(Ordering::Acquire) < shared.cores {
        tracing::warn!(
            "cores did not all report at the stop: the shared store keeps this box's \
            ceilings as they are (they are released when it restarts)"
        );
        return;
    }
    hub.read_statuses(&mut agent);
    agent.stop(unix_ms(), &mut store);
    show(hub, &agent, &settings, &store);
    tracing::info!(counters = ?agent.counters(), "cluster agent stopped");
}

fn show(hub: &ClusterHub, agent: &Agent, settings: &Settings, store: &EtcdStore) {
    let mut view = hub.view.lock().unwrap_or_else(|e| e.into_inner());
    view.box_id.clone_from(&settings.box_id);
    view.endpoint = store.0.endpoint();
    view.counters = agent.counters();
    view.requests = store.0.requests();
    view.peers = agent.view();
    view.fenced = agent.fenced().map(str::to_owned);
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
