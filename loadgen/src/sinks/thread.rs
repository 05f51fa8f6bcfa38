//! One load thread's part of every sink: over BTP the connections it dials for each sink (over TLS
//! to a `wss://` connector), over HTTP the listener it keeps on each sink's address (TLS with
//! `--sink-cert`) and the connections that listener accepted. It opens them, releases their delayed
//! answers, applies the fault schedule to them (see the table in `sinks`), and shuts them at the
//! end. Thread-local: the threads apply the same schedule to their own connections, each on its own
//! tick.
//!
//! A redial or rebind runs as a task of its own and gives up when the sink's `generation`
//! moved on (it went down again meanwhile) or the run stops.

use super::{Change, FaultEvent, SinkId, SinkSpec};
use crate::cli::CliShared;
use crate::conn::{self, Role, Setup, Shared as Conn};
use crate::connect::{wait_open, Opener};
use crate::http::{self, Serving, SinkShared};
use crate::plan::Plan;
use crate::stats::Stats;
use crate::tls;
use crate::worker::ThreadSpec;
use glommio::task::JoinHandle;
use ilp_router::link::url::BtpUrl;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a sink that is back waits between tries (a dial or a bind that failed).
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long a redialled connection has to finish BTP auth before it is tried again.
const OPEN_WITHIN: Duration = Duration::from_secs(5);

/// One sink on this thread.
struct Slot {
    id: SinkId,
    spec: SinkSpec,
    /// Bumped by every change: a redial or rebind begun before the latest change gives up.
    generation: Cell<u32>,
    /// BTP: the connections open now (empty while down).
    btp: RefCell<Vec<Conn>>,
    /// HTTP: the task serving the listener (none while down).
    listener: RefCell<Option<JoinHandle<()>>>,
    /// HTTP: the connections the listener accepted.
    accepted: Rc<RefCell<Vec<SinkShared>>>,
}

impl Slot {
    /// Closes everything the sink has on this thread, at once (`Change::Down`).
    fn take_down(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for c in self.btp.borrow_mut().drain(..) {
            c.borrow_mut().drop_link();
        }
        if let Some(task) = self.listener.borrow_mut().take() {
            task.cancel();
        }
        for s in self.accepted.borrow_mut().drain(..) {
            s.borrow_mut().drop_link();
        }
    }
}

/// Every sink's connections on one thread.
pub(crate) struct ThreadSinks {
    slots: Vec<Rc<Slot>>,
    /// BTP connections each sink keeps on this thread.
    per_sink: usize,
    thread: usize,
    http: bool,
    /// `--direct` over HTTP: the sink takes the sender's token.
    direct_token: Option<String>,
    target: Rc<BtpUrl>,
    /// HTTP: `--sink-cert`, the TLS every listener serves.
    listen_tls: Option<tls::Server>,
    opener: Opener,
    schedule: Vec<FaultEvent>,
    /// The first change of `schedule` not yet applied.
    next_change: usize,
}

impl std::fmt::Debug for ThreadSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadSinks")
            .field("sinks", &self.slots.len())
            .field("per_sink", &self.per_sink)
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

/// A BTP sink connection's id (it seeds the connection's masks and answers): distinct for
/// every thread, sink, connection and redial.
fn conn_id(thread: usize, sink: SinkId, k: usize, generation: u32) -> u64 {
    (1 << 48)
        | (u64::from(generation) << 28)
        | ((sink.index() as u64) << 16)
        | ((thread as u64) << 8)
        | k as u64
}

impl ThreadSinks {
    /// The sinks of `spec`'s thread, none open yet.
    pub(crate) fn new(spec: &ThreadSpec, cli: &CliShared, opener: &Opener) -> ThreadSinks {
        let slots = cli
            .sinks
            .iter()
            .enumerate()
            .map(|(i, sink)| {
                Rc::new(Slot {
                    id: SinkId::new(i),
                    spec: sink.clone(),
                    generation: Cell::new(0),
                    btp: RefCell::new(Vec::new()),
                    listener: RefCell::new(None),
                    accepted: Rc::new(RefCell::new(Vec::new())),
                })
            })
            .collect();
        ThreadSinks {
            slots,
            per_sink: spec.sinks,
            thread: spec.index,
            http: cli.http,
            direct_token: cli.direct.then(|| cli.sender.1.clone()),
            target: Rc::new(cli.target.clone()),
            listen_tls: cli.listen_tls.clone(),
            opener: opener.clone(),
            schedule: cli.faults.clone(),
            next_change: 0,
        }
    }

    fn setup(&self, slot: &Slot, k: usize) -> Setup {
        Setup {
            role: Role::Sink(slot.id),
            id: conn_id(self.thread, slot.id, k, slot.generation.get()),
            username: slot.spec.name.clone(),
            token: slot.spec.token.clone(),
        }
    }

    /// BTP: every sink dials its connections, and they finish auth by `deadline`.
    pub(crate) async fn dial(&self, deadline: Instant) -> Result<(), String> {
        for slot in &self.slots {
            let mut conns = Vec::with_capacity(self.per_sink);
            for k in 0..self.per_sink {
                let c = self
                    .opener
                    .dial(self.setup(slot, k), &self.target)
                    .await
                    .map_err(|e| {
                        format!(
                            "sink {} connection to {}: {e}",
                            slot.spec.name,
                            self.target.host_port()
                        )
                    })?;
                conns.push(c);
            }
            *slot.btp.borrow_mut() = conns;
        }
        for slot in &self.slots {
            let conns = std::mem::take(&mut *slot.btp.borrow_mut());
            let who = format!("sink {}", slot.spec.name);
            *slot.btp.borrow_mut() = wait_open(conns, deadline, &who).await?;
        }
        Ok(())
    }

    /// `--direct` over BTP: the connections our senders opened to the one sink.
    pub(crate) fn adopt(&self, conns: Vec<Conn>) {
        self.slots[0].btp.borrow_mut().extend(conns);
    }

    /// HTTP: every sink listens on its address (with `--direct` and no `--sink-listen`, a free
    /// port). Returns the first sink's port (where `--direct` senders go).
    pub(crate) fn listen(&self) -> Result<u16, String> {
        let mut first = None;
        for slot in &self.slots {
            let address = slot
                .spec
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            let listener = glommio::net::TcpListener::bind(address)
                .map_err(|e| format!("--sink-listen {address} (sink {}): {e}", slot.spec.name))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            first.get_or_insert(port);
            let task = glommio::spawn_local(http::serve(
                listener,
                self.serving(slot),
                Rc::clone(&slot.accepted),
            ))
            .detach();
            *slot.listener.borrow_mut() = Some(task);
        }
        Ok(first.expect("one sink at least"))
    }

    fn serving(&self, slot: &Slot) -> Serving {
        // With --direct the sink stands in for the connector, so it takes the sender's token.
        let token = self.direct_token.as_deref().unwrap_or(&slot.spec.token);
        Serving {
            plan: Rc::clone(&self.opener.plan),
            ring: Rc::clone(&self.opener.ring),
            stats: Rc::clone(&self.opener.stats),
            sink: slot.id,
            token: Rc::from(token.as_bytes()),
            tls: self.listen_tls.clone(),
        }
    }

    /// The send clock started: connections from now on run on `plan`.
    pub(crate) fn set_plan(&mut self, plan: &Rc<Plan>) {
        for slot in &self.slots {
            for c in slot.btp.borrow().iter() {
                c.borrow_mut().set_plan(Rc::clone(plan));
            }
        }
        self.opener.plan = Rc::clone(plan);
    }

    /// Sends the delayed answers that are due, on every connection.
    pub(crate) fn release_delayed(&self) {
        for slot in &self.slots {
            for c in slot.btp.borrow().iter() {
                c.borrow_mut().release_delayed();
            }
            for s in slot.accepted.borrow().iter() {
                s.borrow_mut().release_delayed();
            }
        }
    }

    /// Applies the changes of the schedule due `since_send_start`; each one applied is
    /// recorded in `stats` with that time (a busy thread applies a change late).
    pub(crate) fn apply_faults(&mut self, since_send_start: Duration, stats: &mut Stats) {
        while let Some(&event) = self
            .schedule
            .get(self.next_change)
            .filter(|e| e.at <= since_send_start)
        {
            stats.on_fault_applied(self.next_change, since_send_start);
            self.next_change += 1;
            let slot = Rc::clone(&self.slots[event.sink.index()]);
            match event.change {
                Change::Down => slot.take_down(),
                Change::Up => self.bring_up(&slot),
            }
        }
    }

    /// Starts what brings `slot` back (`Change::Up`): a redial per connection over BTP, a
    /// rebind over HTTP.
    fn bring_up(&self, slot: &Rc<Slot>) {
        slot.generation.set(slot.generation.get().wrapping_add(1));
        let generation = slot.generation.get();
        if self.http {
            let address = slot
                .spec
                .listen
                .expect("checked: faults over HTTP need --sink-listen");
            let serving = self.serving(slot);
            glommio::spawn_local(rebind(Rc::clone(slot), generation, serving, address)).detach();
            return;
        }
        for k in 0..self.per_sink {
            let redial = redial(
                Rc::clone(slot),
                generation,
                self.opener.clone(),
                Rc::clone(&self.target),
                self.setup(slot, k),
            );
            glommio::spawn_local(redial).detach();
        }
    }

    /// The run is over: every connection flushes and closes.
    pub(crate) fn shut(&self) {
        for slot in &self.slots {
            for c in slot.btp.borrow().iter() {
                c.borrow_mut().shut();
            }
            for s in slot.accepted.borrow().iter() {
                s.borrow_mut().shut();
            }
        }
    }
}

/// Dials one connection of a sink that is back, until it opens, the sink goes down again, or
/// the run stops.
async fn redial(slot: Rc<Slot>, generation: u32, opener: Opener, target: Rc<BtpUrl>, setup: Setup) {
    let current = || slot.generation.get() == generation && !opener.plan.stopping();
    while current() {
        let deadline = Instant::now() + OPEN_WITHIN;
        if let Ok(c) = opener.dial(setup.clone(), &target).await {
            conn::wait_until(deadline, || {
                let c = c.borrow();
                c.opened || c.closing
            })
            .await;
            let opened = c.borrow().opened && !c.borrow().closing;
            if opened && current() {
                slot.btp.borrow_mut().push(c);
                return;
            }
            c.borrow_mut().drop_link();
        }
        glommio::timer::sleep(RETRY_PAUSE).await;
    }
}

/// Binds the listener of a sink that is back, until it binds, the sink goes down again, or the
/// run stops.
async fn rebind(slot: Rc<Slot>, generation: u32, serving: Serving, address: SocketAddr) {
    let plan = Rc::clone(&serving.plan);
    while slot.generation.get() == generation && !plan.stopping() {
        if let Ok(listener) = glommio::net::TcpListener::bind(address) {
            let accepted = Rc::clone(&slot.accepted);
            let task = glommio::spawn_local(http::serve(listener, serving, accepted)).detach();
            *slot.listener.borrow_mut() = Some(task);
            return;
        }
        glommio::timer::sleep(RETRY_PAUSE).await;
    }
}
