//! The control plane at run time: the CCP route speaker ([`Speaker`]) on a thread of its own,
//! never on a core.
//!
//! - A core hands it every CCP request it receives ([`ControlHub::request`], a bounded
//!   channel: when full the request is answered T03) and, at its tick, takes what the speaker
//!   left for it ([`ControlHub::take`]): answers to those requests, and the speaker's own
//!   requests to send on a link to their peer (out tag [`OutTag::Control`]), whose answers
//!   come back the same way ([`ControlHub::reply`]).
//! - The thread follows the running config (peers, relations, switches, what we originate)
//!   and the links (a peer is up while any core has a BTP link to it, or we POST to it), and
//!   when the learned forwarding table changes it publishes a new route table through the
//!   config hub ([`super::reload::ConfigHub::publish_learned`]), which every core swaps in at
//!   its next tick.
//!
//! [`OutTag::Control`]: super::tag::OutTag::Control

use super::Shared;
use crate::config::{Config, Relation as ConfigRelation};
use crate::control::ccp::{Request, RoutingTableId, CCP_RESPONSE};
use crate::control::speaker::{
    Learned, LocalRoute, Relation, Speaker, SpeakerCounters, SpeakerPeer,
};
use crate::engine::route::Hop;
use crate::engine::{PeerId, Tag, PEER_PROTOCOL_CONDITION};
use crate::wire::{Address, ErrorCode, Packet, PrepareRepr, RejectRepr};
use crossbeam::channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// CCP requests waiting for the speaker, all cores together.
const INBOX_MAX: usize = 1024;
/// How long the speaker waits for work before its own periodic work.
const STEP: Duration = Duration::from_millis(20);
/// The expiry of the requests the speaker sends (the references use 60 s), capped by our
/// `max_hold_time_ms`.
const REQUEST_EXPIRY_MS: i64 = 60_000;

/// What a core hands the speaker.
#[derive(Debug)]
pub(crate) enum Event {
    /// A CCP Prepare from `peer`, to answer on `core` with `tag`.
    Request {
        core: usize,
        tag: Tag,
        peer: PeerId,
        prepare: Vec<u8>,
    },
    /// The answer to the speaker's request `id` (`fulfilled` or not).
    Reply { id: u32, fulfilled: bool },
}

/// What the speaker leaves for a core.
#[derive(Debug)]
pub(crate) enum Command {
    /// Answer the request `tag` with these ILP bytes.
    Answer { tag: Tag, reply: Vec<u8> },
    /// Send this Prepare to `peer` with out tag `Control(id)`.
    Send {
        peer: PeerId,
        id: u32,
        prepare: Vec<u8>,
        expires_at: i64,
    },
}

/// The channels between the cores and the speaker, and what the admin side reads.
#[derive(Debug)]
pub(crate) struct ControlHub {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    /// Per core: commands taken at its tick.
    outbox: Vec<Mutex<Vec<Command>>>,
    /// CCP requests answered T03 because the speaker's inbox was full.
    pub(crate) refused_busy: AtomicU64,
    /// The learned routes and the speaker's counters, for `GET /routes` and the metrics.
    pub(crate) view: Mutex<ControlView>,
    /// The speaker's thread, unparked after every event sent to it. It waits with
    /// `park_timeout`, one futex wait per step: a channel's blocking receive spins and calls
    /// `sched_yield` a few times before it sleeps, and each yield on a core's CPU took that
    /// core off its packets (some 340 yields a second from an idle speaker, BENCHMARKS.md).
    speaker: OnceLock<std::thread::Thread>,
}

/// What the admin side shows of the control plane.
#[derive(Debug, Default, Clone)]
pub(crate) struct ControlView {
    pub(crate) learned: Vec<Learned>,
    pub(crate) counters: SpeakerCounters,
    pub(crate) table_id: String,
    pub(crate) epoch: u32,
}

impl ControlHub {
    pub(crate) fn new(cores: usize) -> ControlHub {
        let (tx, rx) = bounded(INBOX_MAX);
        ControlHub {
            tx,
            rx,
            outbox: (0..cores).map(|_| Mutex::new(Vec::new())).collect(),
            refused_busy: AtomicU64::new(0),
            view: Mutex::new(ControlView::default()),
            speaker: OnceLock::new(),
        }
    }

    /// Wakes the speaker for an event just sent (a flag when it is not asleep).
    fn wake(&self) {
        if let Some(thread) = self.speaker.get() {
            thread.unpark();
        }
    }

    /// A core's CCP request for the speaker; `false` when its inbox is full (answer T03).
    pub(crate) fn request(&self, core: usize, tag: Tag, peer: PeerId, prepare: &[u8]) -> bool {
        let event = Event::Request {
            core,
            tag,
            peer,
            prepare: prepare.to_vec(),
        };
        match self.tx.try_send(event) {
            Ok(()) => {
                self.wake();
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.refused_busy.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The answer to the speaker's request `id`. Never lost to a full inbox: the speaker would
    /// wait for it until its retry, so it blocks briefly instead (answers are rare).
    pub(crate) fn reply(&self, id: u32, fulfilled: bool) {
        let _ = self
            .tx
            .send_timeout(Event::Reply { id, fulfilled }, Duration::from_millis(10));
        self.wake();
    }

    /// What the speaker left for `core` (nothing when the speaker holds the lock: next tick).
    pub(crate) fn take(&self, core: usize) -> Vec<Command> {
        match self.outbox[core].try_lock() {
            Ok(mut commands) if !commands.is_empty() => std::mem::take(&mut *commands),
            _ => Vec::new(),
        }
    }

    fn push(&self, core: usize, command: Command) {
        self.outbox[core]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
    }
}

/// Starts the speaker's thread; it stops when the router shuts down.
pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || run(&shared))
}

fn run(shared: &Shared) {
    let Some(mut config) = shared.config.current() else {
        return;
    };
    let (table_id, secret) = random_ids();
    let mut speaker = Speaker::new(config.ilp_address(), RoutingTableId(table_id), secret);
    let now = unix_ms();
    follow_config(&mut speaker, &config, now);
    tracing::info!(table_id = %speaker.table_id(), "route speaker started");
    let hub = &shared.control;
    let _ = hub.speaker.set(std::thread::current());
    while !shared.shutdown.load(Ordering::Relaxed) {
        let mut handled = false;
        loop {
            match hub.rx.try_recv() {
                Ok(event) => {
                    handle(shared, &config, &mut speaker, event);
                    handled = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if !handled {
            // An event sent after the drain above unparks us at once (the token is kept).
            std::thread::park_timeout(STEP);
            while let Ok(event) = hub.rx.try_recv() {
                handle(shared, &config, &mut speaker, event);
            }
        }
        let now = unix_ms();
        if let Some(current) = shared.config.current() {
            if !Arc::ptr_eq(&current, &config) {
                config = current;
                follow_config(&mut speaker, &config, now);
            }
        }
        for (i, peer) in config.peers().iter().enumerate() {
            let up = !peer.removed
                && (shared.link_cores[i].load(Ordering::Relaxed) != 0 || peer.http().is_some());
            speaker.set_link(PeerId(i as u16), up, now);
        }
        speaker.tick(now);
        send_outgoing(shared, &config, &mut speaker, now);
        if speaker.take_changed() {
            let learned: Vec<(String, PeerId)> = speaker
                .best_routes()
                .map(|(prefix, peer)| (prefix.to_owned(), peer))
                .collect();
            let count = learned.len();
            shared.config.publish_learned(learned);
            tracing::info!(routes = count, "learned routes published");
        }
        let mut view = hub.view.lock().unwrap_or_else(|e| e.into_inner());
        if view.epoch != speaker.epoch() || view.counters != speaker.counters() {
            view.learned = speaker.learned();
        }
        view.counters = speaker.counters();
        view.table_id = speaker.table_id().to_string();
        view.epoch = speaker.epoch();
    }
}

/// One event from a core.
fn handle(shared: &Shared, config: &Config, speaker: &mut Speaker, event: Event) {
    let now = unix_ms();
    match event {
        Event::Reply { id, fulfilled } => speaker.handle_reply(id, fulfilled, now),
        Event::Request {
            core,
            tag,
            peer,
            prepare,
        } => {
            let reply = answer(config, speaker, peer, &prepare, now);
            shared.control.push(core, Command::Answer { tag, reply });
        }
    }
}

/// The answer to a CCP Prepare: a Fulfill, or a Reject that names the problem.
fn answer(config: &Config, speaker: &mut Speaker, peer: PeerId, bytes: &[u8], now: i64) -> Vec<u8> {
    let Ok(Packet::Prepare(prepare)) = Packet::new_checked(bytes) else {
        return reject(config, ErrorCode::F01_INVALID_PACKET, "not a Prepare");
    };
    if prepare.expires_at() <= now {
        return reject(config, ErrorCode::R02_INSUFFICIENT_TIMEOUT, "expired");
    }
    let request = match Request::from_prepare(&prepare) {
        Ok(request) => request,
        Err(e) => {
            let code = match *prepare.execution_condition() == PEER_PROTOCOL_CONDITION {
                true => ErrorCode::F00_BAD_REQUEST,
                false => ErrorCode::F01_INVALID_PACKET,
            };
            return reject(config, code, &format!("invalid route request: {e}"));
        }
    };
    match speaker.handle_request(peer, request, now) {
        Ok(()) => CCP_RESPONSE.to_vec(),
        Err(message) => {
            let name = config
                .peers()
                .get(peer.index())
                .map_or("?", |p| p.name.as_str());
            tracing::info!(peer = %name, "route request refused: {message}");
            reject(config, ErrorCode::F00_BAD_REQUEST, &message)
        }
    }
}

fn reject(config: &Config, code: ErrorCode, message: &str) -> Vec<u8> {
    let repr = RejectRepr {
        code,
        triggered_by: Address::new_checked(config.ilp_address().as_bytes()).ok(),
        message: message.as_bytes(),
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

/// Hands each of the speaker's requests to a core that can send it: one with a BTP link to the
/// peer, else the peer's home core (HTTP).
fn send_outgoing(shared: &Shared, config: &Config, speaker: &mut Speaker, now: i64) {
    let expiry =
        REQUEST_EXPIRY_MS.min(i64::try_from(config.max_hold_time_ms()).unwrap_or(i64::MAX));
    while let Some(out) = speaker.poll_send() {
        let links = shared.link_cores[out.peer.index()].load(Ordering::Relaxed);
        let core = match links {
            0 => usize::from(config.home_core(out.peer, shared.cores).0),
            bits => bits.trailing_zeros() as usize,
        };
        let condition = PEER_PROTOCOL_CONDITION;
        let expires_at = now + expiry;
        let Ok(destination) = Address::new_checked(out.destination) else {
            continue;
        };
        let repr = PrepareRepr {
            amount: 0,
            expires_at,
            execution_condition: &condition,
            destination,
            data: &out.payload,
        };
        let mut prepare = vec![0u8; repr.buffer_len()];
        repr.emit(&mut prepare);
        shared.control.push(
            core,
            Command::Send {
                peer: out.peer,
                id: out.id,
                prepare,
                expires_at,
            },
        );
    }
}

/// The speaker's view of the config: each peer's relation and switches, what we originate.
fn follow_config(speaker: &mut Speaker, config: &Config, now: i64) {
    let limits = config.limits();
    let peers = config
        .peers()
        .iter()
        .map(|p| SpeakerPeer {
            relation: match p.relation {
                ConfigRelation::Child => Relation::Child,
                ConfigRelation::Peer => Relation::Peer,
                ConfigRelation::Parent => Relation::Parent,
            },
            send_routes: p.send_routes && !p.removed,
            receive_routes: p.receive_routes && !p.removed,
            routes_max: limits.routes_per_peer_max,
            path_max: limits.route_path_max,
        })
        .collect();
    speaker.set_peers(peers, now);
    // Our address, and each configured route's prefix (a group's once), not told to the
    // peers it leads to. Implicit routes (a peer's own address) are under ours.
    let mut local = vec![LocalRoute {
        prefix: config.ilp_address().to_owned(),
        via: Vec::new(),
        covers: false,
    }];
    for route in config.routes().iter().filter(|r| !r.implicit) {
        let (via, covers) = match route.hop {
            Hop::Peer(peer) => (vec![peer], false),
            Hop::Group(group) => (config.groups()[group.index()].peers.clone(), true),
        };
        local.push(LocalRoute {
            prefix: route.prefix.clone(),
            via,
            covers,
        });
    }
    speaker.set_local(local);
}

/// A random routing table id and route-auth secret, from the kernel.
pub(crate) fn random_ids() -> ([u8; 16], [u8; 32]) {
    use std::io::Read;
    let mut bytes = [0u8; 48];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No /dev/urandom: the clock and the pid, hashed (ids need only be unlikely to repeat).
        use sha2::{Digest, Sha256};
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let a: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
        let b: [u8; 32] = Sha256::digest(a).into();
        bytes[..32].copy_from_slice(&a);
        bytes[32..].copy_from_slice(&b[..16]);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[..16]);
    // A version 4 UUID, as the references make.
    id[6] = id[6] & 0x0f | 0x40;
    id[8] = id[8] & 0x3f | 0x80;
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&bytes[16..]);
    (id, secret)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
