//! The running router: one pinned glommio executor per selected CPU, each owning an engine,
//! its sockets, its links and its timers; cores talk only through a mesh of bounded channels.
//!
//! What is shared between cores, and is never written per packet: the config (read-only),
//! per-peer bitmasks of which cores have a link to the peer and per-peer connection counts
//! (written when a link opens or closes), and the shutdown flag.

pub(crate) mod cluster;
mod conn;
pub(crate) mod control;
mod core;
#[cfg(test)]
mod core_tests;
mod flush;
mod hot;
mod http;
mod http_pool;
mod io;
mod links;
mod mesh;
pub(crate) mod reload;
pub(crate) mod report;
mod stream;
mod tag;

pub use flush::write_queued;
pub use hot::{deferred_ring, poll_reports_end, read_poll, run_task_work, Wake};
pub use io::keep_thread_to;

use self::core::CoreState;
use self::io::{unix_ms, Core};
use crate::config::Config;
use crate::engine::{CoreId, Engine, PeerId};
use crate::link::auth::PeerAuth;
use crate::state::CoreFile;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use mesh::CrossMsg;
use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How to run: which CPUs, and the listener layout.
#[derive(Clone)]
pub struct RunOptions {
    /// One executor per CPU, pinned, in this order (core i runs on `cpus[i]`).
    pub cpus: Vec<usize>,
    /// Core i listens on the BTP port + i instead of sharing the port (SO_REUSEPORT).
    pub btp_port_per_core: bool,
    /// The config file, read again on SIGHUP and `POST /reload`.
    pub config_path: Option<std::path::PathBuf>,
    /// The command-line overrides, applied again to a reloaded config.
    pub overrides: Option<Overrides>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("cpus", &self.cpus)
            .field("btp_port_per_core", &self.btp_port_per_core)
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

pub use reload::Overrides;

/// Why the router could not run.
#[derive(Debug)]
pub enum RunError {
    /// A CPU selection problem (named).
    Cpus(String),
    /// A core failed to start (bind, executor).
    Start(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Cpus(m) => write!(f, "CPU selection: {m}"),
            RunError::Start(m) => write!(f, "start-up failed: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

/// State every core can read.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cores: usize,
    /// Per peer: bit c is set while core c has a link to the peer.
    pub(crate) link_cores: Vec<AtomicU64>,
    /// Per peer: open connections on all cores.
    pub(crate) connections: Vec<AtomicUsize>,
    pub(crate) shutdown: AtomicBool,
    /// At shutdown: bit c is set while core c still has Prepares in flight or messages for
    /// other cores waiting; links stay open until every bit is clear.
    pub(crate) busy_cores: AtomicU64,
    /// Each core's index in the channel mesh.
    mesh_ids: Vec<AtomicUsize>,
    /// Cores that failed to start.
    failed: AtomicUsize,
    /// Reports for the admin side, built when it asks.
    pub(crate) reports: report::ReportHub,
    /// Per peer: drained by the operator (`POST /peers/{name}/drain`); each core follows at
    /// its next tick.
    pub(crate) draining: Vec<AtomicBool>,
    /// Cores whose listeners are bound; the last one tells systemd the router is ready.
    started: AtomicUsize,
    /// Per core: settlements (peer, delta) for peers homed there, applied at its next tick.
    pub(crate) settlements: Vec<std::sync::Mutex<Vec<(PeerId, i128)>>>,
    /// The running config and reloads.
    pub(crate) config: reload::ConfigHub,
    /// The control plane (CCP): requests from the cores, its answers and requests for them.
    pub(crate) control: control::ControlHub,
    /// Limits shared with other routers: the agent's commands and the cores' statuses.
    pub(crate) cluster: cluster::ClusterHub,
}

impl Shared {
    /// The state of `cores` cores (1..=64) serving `peers` peers, before any link.
    fn new(cores: usize, peers: usize) -> Self {
        Shared {
            cores,
            link_cores: (0..peers).map(|_| AtomicU64::new(0)).collect(),
            connections: (0..peers).map(|_| AtomicUsize::new(0)).collect(),
            shutdown: AtomicBool::new(false),
            busy_cores: AtomicU64::new(u64::MAX >> (64 - cores)),
            mesh_ids: (0..cores).map(|_| AtomicUsize::new(usize::MAX)).collect(),
            failed: AtomicUsize::new(0),
            reports: report::ReportHub::new(cores),
            draining: (0..peers).map(|_| AtomicBool::new(false)).collect(),
            started: AtomicUsize::new(0),
            settlements: (0..cores)
                .map(|_| std::sync::Mutex::new(Vec::new()))
                .collect(),
            config: reload::ConfigHub::new(cores),
            control: control::ControlHub::new(cores),
            cluster: cluster::ClusterHub::new(cores),
        }
    }
}

/// Tallies of the runtime (the engine keeps its own).
#[derive(Debug, Default, Clone)]
pub(crate) struct RuntimeCounters {
    pub(crate) replies_to_gone_links: u64,
    /// Messages to another core that must arrive but found no ring (the other core stopped).
    pub(crate) cross_core_dropped: u64,
    /// Messages to another core that found its ring full and waited in the backlog.
    pub(crate) cross_core_deferred: u64,
    /// Links refused because this core already had `links_max` authenticated links (at
    /// auth, or when dialling).
    pub(crate) links_refused: u64,
    pub(crate) ws_errors: u64,
    /// Connections closed at once because `unauthenticated_max` were already waiting.
    pub(crate) unauthenticated_refused: u64,
    /// Times a link's reader stopped because its queue was over half the cap.
    pub(crate) reads_paused: u64,
    /// Nanoseconds the ring driver spun with nothing to do (`hot::Spin::take_idle`).
    pub(crate) spin_idle_ns: u64,
    /// Links closed because what we wrote made no progress for `write_timeout_ms`: our
    /// writer's deadline, or the kernel's `TCP_USER_TIMEOUT` (the reader sees `ETIMEDOUT`).
    pub(crate) write_timeouts: u64,
    /// Keepalive Pings sent on silent BTP links.
    pub(crate) keepalive_pings: u64,
    /// BTP links taken down after `btp_pings_missed_max` silent ping intervals.
    pub(crate) keepalive_closed: u64,
    /// ILP-over-HTTP requests answered with an HTTP error instead of an ILP reply (400, 401,
    /// 405, 408 for a request that missed its deadline, 411, 413, 431).
    pub(crate) http_refused: u64,
    /// ILP-over-HTTP requests refused with 401 (no or a wrong token).
    pub(crate) http_auth_failures: u64,
    /// TLS handshakes done on our listeners.
    pub(crate) tls_handshakes: u64,
    /// TLS handshakes on our listeners that failed for any reason but a client certificate:
    /// not TLS, a protocol error, the peer gone, the deadline.
    pub(crate) tls_handshake_failures: u64,
    /// Client certificates refused at the handshake (the reason is logged).
    pub(crate) tls_cert_refusals: u64,
    /// TLS handshakes of connections we dialled that failed (the server's certificate, or
    /// anything else).
    pub(crate) tls_dial_failures: u64,
    /// BTP session tallies of the links closed on this core.
    pub(crate) btp_closed: crate::link::btp::Counters,
}

/// The CPUs the process may run on (its affinity mask, so `taskset` and cgroups count).
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Picks the CPUs: `cpu_list` exactly (each must be allowed), or the first `cores` allowed
/// ones, or all allowed ones.
pub fn select_cpus(
    cores: Option<usize>,
    cpu_list: Option<&[usize]>,
) -> Result<Vec<usize>, RunError> {
    let allowed = allowed_cpus();
    if allowed.is_empty() {
        return Err(RunError::Cpus(
            "cannot read the process's CPU affinity".into(),
        ));
    }
    let cpus = match (cores, cpu_list) {
        (_, Some(list)) => {
            if let Some(cpu) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(RunError::Cpus(format!(
                    "CPU {cpu} is not in the allowed set {allowed:?}"
                )));
            }
            list.to_vec()
        }
        (Some(n), None) => {
            if n == 0 || n > allowed.len() {
                return Err(RunError::Cpus(format!(
                    "--cores {n}: the process may use {} CPUs ({allowed:?})",
                    allowed.len()
                )));
            }
            allowed[..n].to_vec()
        }
        (None, None) => allowed,
    };
    if cpus.len() > 64 {
        return Err(RunError::Cpus(format!(
            "{} CPUs selected; at most 64 are supported",
            cpus.len()
        )));
    }
    Ok(cpus)
}

/// Runs the router until SIGTERM or SIGINT, then shuts down gracefully.
pub fn run(config: Config, options: RunOptions) -> Result<(), RunError> {
    let cores = options.cpus.len();
    assert!(
        (1..=64).contains(&cores),
        "select_cpus bounds the core count"
    );
    // Every per-peer table shared by the cores has a row for each slot a reload may fill.
    let shared = Arc::new(Shared::new(cores, config.limits().peers_max));
    let mut state = open_state(&config, cores)?;
    // Settlements are journalled apart from the ledger rows: add them to what was recovered.
    let journal = match &config.state().dir {
        Some(dir) => crate::settlements::Journal::open(dir).map_err(RunError::Start)?,
        None => crate::settlements::Journal::in_memory(),
    };
    for (posted, peer) in state.posted.iter_mut().zip(config.peers()) {
        *posted += journal.sum(&peer.name);
    }
    // What the state and the journal hold for names not configured: a reload may add them.
    let mut slots = reload::Slots {
        state: config.state().dir.clone().zip(state.epoch),
        ..reload::Slots::default()
    };
    for (name, posted) in std::mem::take(&mut state.removed) {
        slots.carried_rows.insert(name.clone(), posted);
        *slots.carried.entry(name).or_default() += posted;
    }
    for (name, sum) in journal.sums() {
        if config.peer_id(name).is_none() {
            *slots.carried.entry(name.to_owned()).or_default() += sum;
        }
    }
    let mut journal = Some(journal);
    let posted = Arc::new(std::mem::take(&mut state.posted));
    let config = Arc::new(config);
    shared.config.start(
        Arc::clone(&config),
        options.config_path.clone(),
        options.overrides.clone(),
        slots,
    );
    // The threads other than the cores' (signals, the route speaker, the admin API, the
    // ledger sync, the cluster agent) wake on their own timers: on a core's CPU each wake-up
    // would take the core off its packets, so they run on the other allowed CPUs, if any.
    match io::keep_off(&allowed_cpus(), &options.cpus) {
        Some(rest) => tracing::info!(cpus = ?rest, "threads other than the cores run here"),
        None => tracing::info!("the cores take every allowed CPU; other threads share them"),
    }
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| RunError::Start(format!("signal handlers: {e}")))?;
    let handle = signals.handle();
    {
        let shared = Arc::clone(&shared);
        let mut signals = signals;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == signal_hook::consts::SIGHUP {
                        tracing::info!("SIGHUP: reloading the config");
                        notify_systemd(crate::notify::reloading(), "RELOADING=1");
                        let _ = shared.config.reload(&shared.draining);
                        notify_systemd(crate::notify::ready(), "READY=1");
                        continue;
                    }
                    tracing::info!(signal, "shutting down");
                    notify_systemd(crate::notify::stopping(), "STOPPING=1");
                    shared.shutdown.store(true, Ordering::Relaxed);
                    break;
                }
            })
            .map_err(|e| RunError::Start(format!("signal thread: {e}")))?;
    }
    let mesh =
        (cores > 1).then(|| MeshBuilder::<CrossMsg, _>::full(cores, config.limits().ring_capacity));
    let spin = Duration::from_micros(config.limits().spin_us);
    let mut threads = Vec::new();
    let flusher_stop = Arc::new(AtomicBool::new(false));
    let flusher = match state.sync.take() {
        Some(paths) => {
            let interval = match config.state().msync_interval_ms {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            };
            let thread = crate::state::spawn_flusher(paths, interval, Arc::clone(&flusher_stop))
                .map_err(|e| RunError::Start(format!("ledger sync thread: {e}")))?;
            Some(thread)
        }
        None => None,
    };
    // The admin API, on threads of its own; stopped when `run` returns.
    // The route speaker (CCP), on a thread of its own; it stops at shutdown.
    let speaker = control::spawn(Arc::clone(&shared))
        .map_err(|e| RunError::Start(format!("control thread: {e}")))?;
    // The cluster agent (limits shared with other routers through etcd), when configured.
    let agent = cluster::spawn(Arc::clone(&shared), &config)
        .map_err(|e| RunError::Start(format!("cluster_state: {e}")))?;
    let _admin = match config.admin() {
        Some(admin) => {
            let mut server = crate::admin::AdminServerConfig::new(admin.listen);
            server.token = admin.token.as_ref().map(|t| t.expose().to_owned());
            server.metrics_token = admin.metrics_token;
            let api = crate::admin::api::RouterAdmin::new(
                Arc::clone(&config),
                Arc::clone(&shared),
                Arc::clone(&server.counters),
                journal.take().expect("taken once"),
            );
            let handler: crate::admin::Handler = Arc::new(move |request| api.handle(request));
            let server = crate::admin::spawn(server, handler)
                .map_err(|e| RunError::Start(format!("admin.listen {}: {e}", admin.listen)))?;
            tracing::info!(address = %server.local_addr(), "admin API listening");
            Some(server)
        }
        None => None,
    };
    for (core, &cpu) in options.cpus.iter().enumerate() {
        let shared = Arc::clone(&shared);
        let config = Arc::clone(&config);
        let posted = Arc::clone(&posted);
        let file = state.files.get_mut(core).and_then(Option::take);
        let mesh = mesh.clone();
        let per_core = options.btp_port_per_core;
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("core-{core}"))
            .spin_before_park(spin);
        let thread = builder
            .spawn(move || async move {
                let start = CoreStart {
                    core,
                    posted,
                    file,
                    btp_port_per_core: per_core,
                };
                if let Err(e) = core_main(start, Arc::clone(&shared), config, mesh).await {
                    tracing::error!(core, "{e}");
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    shared.shutdown.store(true, Ordering::Relaxed);
                    notify_systemd(crate::notify::stopping(), "STOPPING=1");
                }
            })
            .map_err(|e| RunError::Start(format!("executor on CPU {cpu}: {e}")))?;
        threads.push(thread);
    }
    for (core, thread) in threads.into_iter().enumerate() {
        // An executor that could not start (e.g. io_uring refused for want of locked memory)
        // ends its thread with an error: that is a failed start, never a clean exit.
        if let Err(e) = thread.join() {
            tracing::error!(
                core,
                "executor failed: {e} (io_uring needs locked memory: see tuning/README.md)"
            );
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.shutdown.store(true, Ordering::Relaxed);
        }
    }
    shared.shutdown.store(true, Ordering::Relaxed);
    let _ = speaker.join();
    if let Some(agent) = agent {
        let _ = agent.join();
    }
    // A last sync of the ledger files after every core has stopped.
    flusher_stop.store(true, Ordering::Relaxed);
    if let Some(flusher) = flusher {
        let _ = flusher.join();
    }
    handle.close();
    match shared.failed.load(Ordering::Relaxed) {
        0 => Ok(()),
        n => Err(RunError::Start(format!("{n} core(s) failed; see the log"))),
    }
}

/// Logs a failed notification to systemd (the router runs on without it).
fn notify_systemd(result: std::io::Result<()>, what: &str) {
    if let Err(e) = result {
        tracing::warn!("telling systemd {what}: {e}");
    }
}

/// The state a run starts from.
struct OpenState {
    /// Per core, its mapped ledger file (none without a state directory).
    files: Vec<Option<CoreFile>>,
    /// The recovered posted balance of each configured peer.
    posted: Vec<i128>,
    /// The balances of peers the state holds and the config does not.
    removed: Vec<(String, i128)>,
    /// The epoch of the ledger files.
    epoch: Option<u64>,
    /// The files the sync thread keeps on disk.
    sync: Option<Vec<std::path::PathBuf>>,
    /// Held until `run` returns: no second router on the same directory.
    _lock: Option<crate::state::DirLock>,
}

/// Recovers the state directory, if there is one.
fn open_state(config: &Config, cores: usize) -> Result<OpenState, RunError> {
    let peers = config.peers().len();
    let Some(dir) = config.state().dir.as_deref() else {
        tracing::warn!(
            "no state directory ([state] dir or --state-dir): balances live in memory only and \
             are lost when the router stops"
        );
        return Ok(OpenState {
            files: (0..cores).map(|_| None).collect(),
            posted: vec![0; peers],
            removed: Vec::new(),
            epoch: None,
            sync: None,
            _lock: None,
        });
    };
    let names: Vec<&str> = config.peers().iter().map(|p| p.name.as_str()).collect();
    let recovered = crate::state::recover(dir, &names, cores, config.limits().peers_max)
        .map_err(|e| RunError::Start(format!("state: {e}")))?;
    for (name, posted) in names.iter().zip(&recovered.posted) {
        tracing::info!(peer = name, posted = %posted, "recovered balance");
    }
    for (name, posted) in &recovered.removed {
        if *posted == 0 {
            continue;
        }
        tracing::warn!(
            peer = name,
            posted = %posted,
            "the state holds a peer the config no longer has; its row is kept"
        );
    }
    for path in &recovered.stale {
        tracing::info!(path = %path.display(), "removed a state file already folded");
    }
    tracing::info!(dir = %dir.display(), cores, "durable balances");
    let paths = recovered
        .files
        .iter()
        .map(|f| f.path().to_owned())
        .collect();
    Ok(OpenState {
        files: recovered.files.into_iter().map(Some).collect(),
        posted: recovered.posted,
        removed: recovered.removed,
        epoch: Some(recovered.epoch),
        sync: Some(paths),
        _lock: Some(recovered.lock),
    })
}

/// What one core starts with.
struct CoreStart {
    core: usize,
    /// The recovered posted balance of each peer.
    posted: Arc<Vec<i128>>,
    /// This core's ledger file, when balances are durable.
    file: Option<CoreFile>,
    btp_port_per_core: bool,
}

async fn core_main(
    start: CoreStart,
    shared: Arc<Shared>,
    config: Arc<Config>,
    mesh: Option<MeshBuilder<CrossMsg, glommio::channels::channel_mesh::Full>>,
) -> Result<(), String> {
    let CoreStart {
        core,
        posted,
        file,
        btp_port_per_core,
    } = start;
    let cores = shared.cores;
    // The channel mesh, and which mesh index each core got.
    let (senders, receivers) = match mesh {
        Some(mesh) => {
            let (senders, receivers) = mesh
                .join()
                .await
                .map_err(|e| format!("joining the core mesh: {e}"))?;
            shared.mesh_ids[core].store(senders.peer_id(), Ordering::Relaxed);
            while shared
                .mesh_ids
                .iter()
                .any(|m| m.load(Ordering::Relaxed) == usize::MAX)
            {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            (Some(senders), Some(receivers))
        }
        None => (None, None),
    };
    let mesh_index: Vec<usize> = shared
        .mesh_ids
        .iter()
        .map(|m| m.load(Ordering::Relaxed))
        .collect();
    let now = unix_ms();
    let mut engine_config = config.engine_config(CoreId(core as u16), cores);
    for (peer, &posted) in engine_config.peers.iter_mut().zip(posted.iter()) {
        peer.posted = posted;
    }
    let engine = match file {
        Some(file) => Engine::with_store(engine_config, now, Box::new(file)),
        None => Engine::new(engine_config, now),
    };
    let auth = Rc::new(peer_auth(&config));
    let state = CoreState::new(core, Arc::clone(&shared), Arc::clone(&config), engine, auth);
    let state = Rc::new(RefCell::new(Core::new(state, senders, mesh_index)));

    let mut tasks = Vec::new();
    // Plaintext BTP links are read through a ring of the core's own, where it can have one.
    tasks.extend(hot::start(&state, config.limits(), core));
    {
        // Opens the HTTP connections packet handling asks for.
        let (wake, woken) = glommio::channels::local_channel::new_bounded(1);
        state.borrow_mut().set_dialler(wake);
        let state = Rc::clone(&state);
        tasks.push(glommio::spawn_local(async move {
            while woken.recv().await.is_some() {
                let peers = std::mem::take(&mut state.borrow_mut().http_dials);
                for peer in peers {
                    glommio::spawn_local(http::dial_http(Rc::clone(&state), peer)).detach();
                }
                // BTP peers a reload added: dialled until the core stops, like those of the
                // start.
                let peers = std::mem::take(&mut state.borrow_mut().btp_dials);
                for peer in peers {
                    glommio::spawn_local(conn::dial(Rc::clone(&state), peer)).detach();
                }
            }
        }));
    }
    if let Some(mut receivers) = receivers {
        for (_, stream) in receivers.streams() {
            let state = Rc::clone(&state);
            tasks.push(glommio::spawn_local(async move {
                while let Some(message) = stream.recv().await {
                    let mut st = state.borrow_mut();
                    st.on_cross(unix_ms(), message);
                    st.flush();
                }
            }));
        }
    }
    // Plaintext and TLS listeners of both transports; `tls` says which the serve task runs.
    let listen = config.listen();
    let layout = [
        (listen.btp, false, "BTP peers", Serve::Btp),
        (listen.http, false, "ILP over HTTP", Serve::Http),
        (listen.btp_tls, true, "BTP peers over TLS", Serve::Btp),
        (listen.http_tls, true, "ILP over HTTPS", Serve::Http),
    ];
    let mut listeners = Vec::new();
    for (address, tls, what, serve) in layout {
        let Some(address) = address else { continue };
        let (listener, address) = bind(address, core, btp_port_per_core, what)?;
        listeners.push(glommio::spawn_local(accept_loop(
            Rc::clone(&state),
            listener,
            address,
            move |state, stream| serve.run(state, stream, tls),
        )));
    }
    if shared.started.fetch_add(1, Ordering::AcqRel) + 1 == cores {
        tracing::info!("every core is listening");
        notify_systemd(crate::notify::ready(), "READY=1");
    }
    for peer in config
        .peers()
        .iter()
        .filter(|p| dials_here(&config, p, core, cores))
    {
        tasks.push(glommio::spawn_local(conn::dial(Rc::clone(&state), peer.id)));
    }

    // The clock: expiries, session timers, leases; and shutdown.
    let tick = Duration::from_millis(u64::from(config.limits().tick_ms));
    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(tick).await;
        state.borrow_mut().tick();
    }
    drop(listeners);
    shutdown(&state, &config).await;
    if config.cluster_state().is_some() {
        final_cluster_status(&state, &shared, tick).await;
    }
    drop(tasks);
    let st = state.borrow();
    tracing::info!(core, counters = ?st.engine.counters(), runtime = ?st.counters, health = ?st.engine.backends().counters(), links = ?st.links.counters, "core stopped");
    Ok(())
}

/// Whether `core` dials `peer` over BTP: on every core with `per_core`, else on its home.
pub(crate) fn dials_here(
    config: &Config,
    peer: &crate::config::Peer,
    core: usize,
    cores: usize,
) -> bool {
    peer.dial()
        .is_some_and(|d| d.per_core || config.home_core(peer.id, cores).0 as usize == core)
}

/// Every peer's names and tokens, for authenticating BTP links and HTTP requests.
fn peer_auth(config: &Config) -> PeerAuth {
    let tokens: Vec<Vec<String>> = config
        .peers()
        .iter()
        .map(|p| {
            p.auth_tokens
                .iter()
                .map(|t| t.expose().to_owned())
                .collect()
        })
        .collect();
    let entries: Vec<(PeerId, &str, &[String])> = config
        .peers()
        .iter()
        .zip(&tokens)
        .map(|(p, t)| (p.id, p.name.as_str(), t.as_slice()))
        .collect();
    let mut auth = PeerAuth::new(&entries);
    auth.require_certs(config.tls().identities.peers());
    auth
}

/// What a listener serves.
#[derive(Clone, Copy)]
enum Serve {
    Btp,
    Http,
}

impl Serve {
    /// Serves one accepted connection (over TLS when `tls`).
    fn run(
        self,
        state: Rc<RefCell<Core>>,
        stream: glommio::net::TcpStream,
        tls: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        match self {
            Serve::Btp => Box::pin(conn::serve_accepted(state, stream, tls)),
            Serve::Http => Box::pin(http::serve_http(state, stream, tls)),
        }
    }
}

/// Binds a listener for `core` (SO_REUSEPORT, or port + core with `--btp-port-per-core`).
fn bind(
    mut address: SocketAddr,
    core: usize,
    port_per_core: bool,
    what: &str,
) -> Result<(glommio::net::TcpListener, SocketAddr), String> {
    if port_per_core {
        let port = u16::try_from(usize::from(address.port()) + core)
            .map_err(|_| format!("{address}: port + core {core} is over 65535"))?;
        address.set_port(port);
    }
    let listener =
        glommio::net::TcpListener::bind(address).map_err(|e| format!("bind {address}: {e}"))?;
    tracing::info!(core, %address, "listening for {what}");
    Ok((listener, address))
}

/// Accepts connections and serves each with `serve` on this core.
async fn accept_loop<F, Fut>(
    state: Rc<RefCell<Core>>,
    listener: glommio::net::TcpListener,
    address: SocketAddr,
    serve: F,
) where
    F: Fn(Rc<RefCell<Core>>, glommio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve(Rc::clone(&state), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(%address, "accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// At a stop with shared limits: once every core has stopped forwarding, wait a few ticks
/// (the mesh tasks still run, so the last lease reports between cores land), then leave the
/// final statuses for the cluster agent.
async fn final_cluster_status(state: &Rc<RefCell<Core>>, shared: &Shared, tick: Duration) {
    shared.cluster.quiet.fetch_add(1, Ordering::AcqRel);
    let deadline = unix_ms() + 2000;
    while shared.cluster.quiet.load(Ordering::Acquire) < shared.cores && unix_ms() < deadline {
        glommio::timer::sleep(tick).await;
    }
    for _ in 0..3 {
        glommio::timer::sleep(tick).await;
    }
    let st = state.borrow();
    let statuses = st.cluster_statuses().collect();
    shared.cluster.publish_final(st.core, statuses);
}

/// Stop taking Prepares (T03), keep every link open while any core has Prepares in flight,
/// so each resolves by its own expiry (a valid Fulfill that comes before it is committed and
/// relayed, RFC 27: a Prepare is answered by its expiry), then flush for at most
/// `shutdown_grace_ms` and close every link.
async fn shutdown(state: &Rc<RefCell<Core>>, config: &Config) {
    let limits = config.limits();
    let tick = Duration::from_millis(u64::from(limits.tick_ms));
    // Every in-flight Prepare expires within max_hold_time_ms; the wheel fires a tick late.
    let expiry_bound_ms = config.max_hold_time_ms() + 4 * u64::from(limits.tick_ms) + 1000;
    let deadline = unix_ms() + i64::try_from(expiry_bound_ms).unwrap_or(i64::MAX / 4);
    let (core, shared) = {
        let mut st = state.borrow_mut();
        st.draining = true;
        (st.core, Arc::clone(&st.shared))
    };
    loop {
        {
            let mut st = state.borrow_mut();
            st.tick();
            let busy = !st.engine.pending().is_empty() || st.mesh_backlog_len() > 0;
            if busy {
                shared.busy_cores.fetch_or(1 << core, Ordering::Relaxed);
            } else {
                shared.busy_cores.fetch_and(!(1 << core), Ordering::Relaxed);
            }
        }
        if shared.busy_cores.load(Ordering::Relaxed) == 0 || unix_ms() >= deadline {
            break;
        }
        glommio::timer::sleep(tick).await;
    }
    let flush_deadline =
        unix_ms() + i64::try_from(limits.shutdown_grace_ms).unwrap_or(i64::MAX / 4);
    while !state.borrow().all_flushed() && unix_ms() < flush_deadline {
        glommio::timer::sleep(tick).await;
    }
    {
        let mut st = state.borrow_mut();
        for id in st.open_links() {
            // A WebSocket Close (1001, going away) on BTP links; HTTP connections just close.
            if st.link(id).is_some_and(|l| l.session().is_some()) {
                st.push_control(
                    id,
                    crate::link::websocket::Opcode::Close,
                    &1001u16.to_be_bytes(),
                );
            }
            st.close_link(id);
        }
        st.flush();
    }
    let close_deadline = unix_ms() + 500;
    while !state.borrow().open_links().is_empty() && unix_ms() < close_deadline {
        glommio::timer::sleep(tick).await;
    }
}
