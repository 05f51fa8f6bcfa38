//! [`CoreState`] driven from unit tests with a virtual clock: no executor, no socket, no wall
//! clock. Each test peer is a client [`BtpSession`] that writes BTP messages into
//! `CoreState::on_message` and reads the WebSocket frames the core queued on its link; what
//! the core sends to other cores is taken from its mesh outbox and handed to the other
//! `CoreState` by [`pump`], and time moves only when a test says so.

use super::core::{Admission, CoreState, LinkId, Transport};
use super::http_pool::client_transport;
use super::links::Signal;
use super::mesh::CrossMsg;
use super::{peer_auth, Shared};
use crate::config::Config;
use crate::engine::{CoreId, Engine, PeerId};
use crate::link::btp::{BtpSession, Event, CONTROL_LEN_MAX};
use crate::link::websocket::{self as ws, Opcode};
use crate::wire::{Address, ErrorCode, FulfillRepr, Packet, PrepareRepr, BTP_HEADER_LEN_MAX};
use sha2::{Digest, Sha256};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The virtual clock's start (Unix ms, 2026-12-02).
const T0: i64 = 1_796_169_600_000;
const FULFILLMENT: [u8; 32] = [7; 32];
const ALICE: PeerId = PeerId(0);
const BOB: PeerId = PeerId(1);

/// The test config: `{bob_extra}` and `{cores}` are filled in.
const CONFIG_TEXT: &str = r#"
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:1"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "peer"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
{bob_extra}
[[routes]]
prefix = "g.bob"
peer = "bob"
[rates]
USD = "1"
[limits]
tick_ms = 5
btp_ping_interval_ms = 10000
btp_pings_missed_max = 2
# {cores} core(s)
"#;

fn config(cores: usize) -> Arc<Config> {
    config_with(cores, "")
}

/// The test config with `bob_extra` added to bob's table (e.g. an `http_url`).
fn config_with(cores: usize, bob_extra: &str) -> Arc<Config> {
    let text = CONFIG_TEXT
        .replace("{bob_extra}", bob_extra)
        .replace("{cores}", &cores.to_string());
    Arc::new(Config::from_toml_str(&text).expect("the test config is valid"))
}

/// `cores` cores sharing one [`Shared`], each with its own engine, as `shard::run` builds
/// them, minus the executors.
fn cores(cores: usize) -> Vec<CoreState> {
    cores_with(config(cores), cores)
}

fn cores_with(config: Arc<Config>, cores: usize) -> Vec<CoreState> {
    let shared = Arc::new(Shared::new(cores, config.limits().peers_max));
    (0..cores)
        .map(|core| {
            let engine = Engine::new(config.engine_config(CoreId(core as u16), cores), T0);
            let auth = Rc::new(peer_auth(&config));
            CoreState::new(core, Arc::clone(&shared), Arc::clone(&config), engine, auth)
        })
        .collect()
}

/// A peer on the far side of one BTP link.
struct TestPeer {
    link: LinkId,
    session: BtpSession,
}

impl TestPeer {
    /// Accepts a connection on `core` and authenticates it as `name`.
    fn connect(core: &mut CoreState, now: i64, peer: PeerId, name: &str) -> TestPeer {
        let link = core
            .add_link(Transport::Handshake, None, Admission::Pending, now)
            .expect("room for a link");
        core.start_btp(now, link, BtpSession::server(now, 5_000, 64, 8), None);
        let mut peer = TestPeer {
            link,
            session: BtpSession::client(now, peer, 5_000, 64, 8),
        };
        let token = format!("{name}-secret");
        let mut auth = vec![0u8; BtpSession::auth_len(name.as_bytes(), token.as_bytes())];
        let n = peer
            .session
            .write_auth(name.as_bytes(), token.as_bytes(), &mut auth);
        core.on_message(now, link, &mut auth[..n]);
        let answers = peer.receive(core, now);
        assert!(matches!(answers[..], [Received::Opened]), "{answers:?}");
        peer
    }

    /// Sends a BTP message carrying `ilp`: a Prepare (with `tag`) or a reply to `request_id`.
    fn send(&mut self, core: &mut CoreState, now: i64, what: Send, ilp: &[u8]) {
        let mut header = [0u8; BTP_HEADER_LEN_MAX];
        let n = match what {
            Send::Prepare { tag, expires_at } => self
                .session
                .write_prepare_header(tag, ilp.len(), expires_at, &mut header)
                .expect("session open"),
            Send::Reply { request_id } => {
                self.session
                    .write_reply_header(request_id, ilp.len(), &mut header)
            }
        };
        let mut message = [&header[..n], ilp].concat();
        core.on_message(now, self.link, &mut message);
    }

    /// What the core queued on this link since the last call, as this peer's session reads it.
    fn receive(&mut self, core: &mut CoreState, now: i64) -> Vec<Received> {
        let link = core.link_mut(self.link).expect("the link is open");
        let mut out = std::mem::take(&mut link.out);
        let decoder = ws::FrameDecoder::new(ws::Role::Client, 1 << 20);
        let mut received = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let frame = decoder
                .decode(&mut out[at..])
                .expect("a valid frame")
                .expect("a whole frame");
            let payload = at + frame.payload.start..at + frame.payload.end;
            at += frame.len;
            if frame.opcode != Opcode::Binary {
                received.push(Received::Control(frame.opcode));
                continue;
            }
            let mut control = [0u8; CONTROL_LEN_MAX];
            let event = self
                .session
                .handle_message(now, &out[payload.clone()], &mut control);
            received.push(match event {
                Event::Opened(_) => Received::Opened,
                Event::Prepare { request_id, ilp } => Received::Prepare {
                    request_id,
                    ilp: out[payload.clone()][ilp].to_vec(),
                },
                Event::Reply { tag, ilp } => Received::Reply {
                    tag,
                    ilp: out[payload.clone()][ilp].to_vec(),
                },
                other => panic!("unexpected {other:?}"),
            });
        }
        received
    }
}

enum Send {
    Prepare { tag: u64, expires_at: i64 },
    Reply { request_id: u32 },
}

#[derive(Debug)]
enum Received {
    Opened,
    Prepare { request_id: u32, ilp: Vec<u8> },
    Reply { tag: u64, ilp: Vec<u8> },
    Control(Opcode),
}

fn prepare(amount: u64, expires_at: i64) -> Vec<u8> {
    let condition: [u8; 32] = Sha256::digest(FULFILLMENT).into();
    let repr = PrepareRepr {
        amount,
        expires_at,
        execution_condition: &condition,
        destination: Address::new_checked(b"g.bob.receiver").expect("valid"),
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn fulfill() -> Vec<u8> {
    let repr = FulfillRepr {
        fulfillment: &FULFILLMENT,
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

/// Whether `bytes` holds `needle`.
fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The reject code of an ILP reply, `None` for a Fulfill.
fn reject_code(ilp: &[u8]) -> Option<ErrorCode> {
    match Packet::new_checked(ilp).expect("a valid reply") {
        Packet::Reject(reject) => Some(reject.code()),
        Packet::Fulfill(_) => None,
        Packet::Prepare(_) => panic!("a Prepare is not a reply"),
    }
}

/// Hands every message waiting in the cores' mesh outboxes to its core, until none waits.
fn pump(cores: &mut [CoreState], now: i64) {
    for _ in 0..100 {
        let mut moved: Vec<(usize, CrossMsg)> = Vec::new();
        for core in cores.iter_mut() {
            core.mesh.drain(|to, message| {
                moved.push((to, message));
                Ok(())
            });
        }
        if moved.is_empty() {
            return;
        }
        for (to, message) in moved {
            cores[to].on_cross(now, message);
        }
    }
    panic!("the cores kept messaging for 100 rounds");
}

#[test]
fn a_prepare_is_forwarded_and_its_fulfill_relayed_and_posted() {
    let mut cores = cores(1);
    let core = &mut cores[0];
    let now = T0;
    let mut alice = TestPeer::connect(core, now, ALICE, "alice");
    let mut bob = TestPeer::connect(core, now, BOB, "bob");
    let expires_at = now + 30_000;
    let what = Send::Prepare { tag: 1, expires_at };
    alice.send(core, now, what, &prepare(500, expires_at));
    let Received::Prepare { request_id, ilp } = bob.receive(core, now).remove(0) else {
        panic!("bob gets the Prepare");
    };
    let forwarded = Packet::new_checked(&ilp[..]).unwrap();
    assert!(matches!(forwarded, Packet::Prepare(p) if p.amount() == 500));
    assert!(
        alice.receive(core, now).is_empty(),
        "no answer before bob's"
    );
    let later = now + 40;
    bob.send(core, later, Send::Reply { request_id }, &fulfill());
    let answers = alice.receive(core, later);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 1, ilp }] if reject_code(ilp).is_none()),
        "alice gets the Fulfill: {answers:?}"
    );
    let ledger = core.engine.ledger();
    assert_eq!(ledger.account(ALICE).posted_local(), 500);
    assert_eq!(ledger.account(BOB).posted_local(), -500);
    // The writer of each link was asked to wake (the outbox the runtime drains).
    let mut signals = Vec::new();
    core.links.take_signals(&mut signals);
    for peer in [&alice, &bob] {
        let bits = signals
            .iter()
            .find(|(i, _)| *i == peer.link.index)
            .map(|s| s.1);
        assert_eq!(bits.map(|b| b & Signal::WRITER), Some(Signal::WRITER));
    }
}

#[test]
fn an_unanswered_prepare_is_rejected_r00_when_the_clock_passes_its_expiry() {
    let mut cores = cores(1);
    let core = &mut cores[0];
    let mut alice = TestPeer::connect(core, T0, ALICE, "alice");
    let mut bob = TestPeer::connect(core, T0, BOB, "bob");
    let expires_at = T0 + 3_000;
    let what = Send::Prepare { tag: 9, expires_at };
    alice.send(core, T0, what, &prepare(100, expires_at));
    let Received::Prepare { request_id, .. } = bob.receive(core, T0).remove(0) else {
        panic!("bob gets the Prepare");
    };
    // Nothing happens while the clock stands before the expiry, however often it ticks.
    for now in (T0..T0 + 1_500).step_by(5) {
        core.on_tick(now);
    }
    assert!(alice.receive(core, T0 + 1_500).is_empty());
    let now = T0 + 3_100;
    core.on_tick(now);
    let answers = alice.receive(core, now);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 9, ilp }]
            if reject_code(ilp) == Some(ErrorCode::R00_TRANSFER_TIMED_OUT)),
        "R00 at the expiry: {answers:?}"
    );
    // Bob's Fulfill after the expiry is never credited, and alice gets nothing more.
    bob.send(core, now + 1, Send::Reply { request_id }, &fulfill());
    assert!(alice.receive(core, now + 1).is_empty());
    assert_eq!(core.engine.ledger().account(ALICE).posted_local(), 0);
    assert_eq!(core.engine.counters().late_replies, 1);
}

#[test]
fn a_silent_link_is_pinged_each_interval_then_taken_down() {
    let mut cores = cores(1);
    let core = &mut cores[0];
    let mut alice = TestPeer::connect(core, T0, ALICE, "alice");
    core.on_tick(T0 + 9_999);
    assert!(alice.receive(core, T0 + 9_999).is_empty(), "not silent yet");
    core.on_tick(T0 + 10_000);
    let answers = alice.receive(core, T0 + 10_000);
    assert!(matches!(answers[..], [Received::Control(Opcode::Ping)]));
    core.on_tick(T0 + 20_000);
    assert!(!core.link(alice.link).unwrap().closing);
    // One interval for the first Ping plus `btp_pings_missed_max` more: half-open.
    core.on_tick(T0 + 30_000);
    assert!(core.link(alice.link).unwrap().closing);
    assert_eq!(core.counters.keepalive_closed, 1);
}

#[test]
fn a_prepare_crosses_to_the_core_with_the_link_and_its_fulfill_comes_back() {
    let mut cores = cores(2);
    let now = T0;
    let mut alice = TestPeer::connect(&mut cores[0], now, ALICE, "alice");
    let mut bob = TestPeer::connect(&mut cores[1], now, BOB, "bob");
    pump(&mut cores, now);
    for core in cores.iter_mut() {
        core.refresh_link_state();
    }
    assert_eq!(
        cores[0].shared.link_cores[usize::from(BOB.0)].load(Ordering::Relaxed),
        0b10
    );
    let expires_at = now + 30_000;
    let what = Send::Prepare { tag: 3, expires_at };
    alice.send(&mut cores[0], now, what, &prepare(700, expires_at));
    // The hold may wait for headroom leased from the other core: the mesh settles it.
    pump(&mut cores, now);
    let Received::Prepare { request_id, .. } = bob.receive(&mut cores[1], now).remove(0) else {
        panic!("bob gets the Prepare on core 1");
    };
    bob.send(
        &mut cores[1],
        now + 5,
        Send::Reply { request_id },
        &fulfill(),
    );
    assert!(
        alice.receive(&mut cores[0], now + 5).is_empty(),
        "still on core 1"
    );
    pump(&mut cores, now + 5);
    let answers = alice.receive(&mut cores[0], now + 5);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 3, ilp }] if reject_code(ilp).is_none()),
        "alice gets the Fulfill through the mesh: {answers:?}"
    );
    let posted: i128 = cores
        .iter()
        .map(|c| c.engine.ledger().account(ALICE).posted_local())
        .sum();
    assert_eq!(posted, 700);
}

/// Bob takes Prepares over HTTP (we POST to him); alice is on BTP.
fn http_core() -> CoreState {
    let bob = "http_url = \"http://127.0.0.1:1/ilp\"\noutgoing_token = \"to-bob\"";
    cores_with(config_with(1, bob), 1).remove(0)
}

/// What the dialler task does: opens the connections the core asked for.
fn open_http(core: &mut CoreState, now: i64) -> Vec<LinkId> {
    let mut opened = Vec::new();
    for peer in std::mem::take(&mut core.http_dials) {
        let id = core
            .add_link(
                client_transport(peer, now),
                None,
                Admission::Authenticated,
                now,
            )
            .expect("room for a link");
        core.http_client_ready(now, id, peer);
        opened.push(id);
    }
    opened
}

/// What the writer task does: takes the queue (its bytes may reach the peer from now on).
fn write_out(core: &mut CoreState, id: LinkId) -> Vec<u8> {
    let mut batch = Vec::new();
    core.links.take(id, &mut batch, usize::MAX);
    batch
}

#[test]
fn a_request_never_written_goes_on_a_fresh_connection_and_one_written_is_never_sent_again() {
    let mut core = http_core();
    let now = T0;
    let mut alice = TestPeer::connect(&mut core, now, ALICE, "alice");
    // `http_connections_min` = 1: a connection is opened ahead of need.
    core.on_tick(now);
    assert_eq!(core.http_dials, [BOB]);
    let first = open_http(&mut core, now)[0];
    let expires_at = now + 30_000;
    // One Prepare answered on it: the connection works.
    alice.send(
        &mut core,
        now,
        Send::Prepare {
            tag: 10,
            expires_at,
        },
        &prepare(1, expires_at),
    );
    assert_eq!(
        write_out(&mut core, first)
            .windows(5)
            .filter(|w| w == b"POST ")
            .count(),
        1
    );
    core.on_http_client_response(now, first, 200, &fulfill());
    // Prepare 11 is written (the writer took it); 12 is still queued when the server closes.
    alice.send(
        &mut core,
        now,
        Send::Prepare {
            tag: 11,
            expires_at,
        },
        &prepare(11, expires_at),
    );
    assert!(holds(&write_out(&mut core, first), b"POST "));
    alice.send(
        &mut core,
        now,
        Send::Prepare {
            tag: 12,
            expires_at,
        },
        &prepare(12, expires_at),
    );
    assert!(holds(&core.link(first).unwrap().out, b"POST "));
    // The server closed: the reader ended, then the writer.
    core.http_client_closing(now, first);
    assert!(
        core.link(first).unwrap().out.is_empty(),
        "12 left the closing connection"
    );
    core.http_client_gone(now, BOB, Some(first));
    core.remove_link(now, first);
    // 11 may have reached bob: never sent again, T01. 12 goes on a fresh connection.
    let second = open_http(&mut core, now);
    assert_eq!(second.len(), 1, "one connection for the waiting request");
    let written = write_out(&mut core, second[0]);
    assert_eq!(written.windows(5).filter(|w| w == b"POST ").count(), 1);
    assert!(holds(&written, &prepare(12, expires_at)[..8]));
    core.on_http_client_response(now, second[0], 200, &fulfill());
    let answers = alice.receive(&mut core, now);
    let codes: Vec<(u64, Option<ErrorCode>)> = answers
        .iter()
        .map(|r| match r {
            Received::Reply { tag, ilp } => (*tag, reject_code(ilp)),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            (10, None),
            (11, Some(ErrorCode::T01_PEER_UNREACHABLE)),
            (12, None)
        ]
    );
}

#[test]
fn an_idle_connection_is_closed_before_the_servers_keep_alive_timeout_and_replaced() {
    let mut core = http_core();
    core.on_tick(T0);
    let id = open_http(&mut core, T0)[0];
    core.on_tick(T0 + 3_999);
    assert!(!core.link(id).unwrap().closing);
    // `http_client_idle_timeout_ms` = 4000, below Node's 5 s.
    core.on_tick(T0 + 4_000);
    assert!(core.link(id).unwrap().closing, "we close it first");
    core.http_client_gone(T0 + 4_001, BOB, Some(id));
    core.remove_link(T0 + 4_001, id);
    assert!(core.http_dials.is_empty(), "nothing waits: no dial at once");
    core.on_tick(T0 + 4_005);
    assert_eq!(core.http_dials, [BOB], "`http_connections_min` again");
}

#[test]
fn a_prepare_fails_t01_only_when_the_peer_cannot_be_reached() {
    let mut core = http_core();
    let now = T0;
    let mut alice = TestPeer::connect(&mut core, now, ALICE, "alice");
    let expires_at = now + 30_000;
    alice.send(
        &mut core,
        now,
        Send::Prepare { tag: 1, expires_at },
        &prepare(5, expires_at),
    );
    assert_eq!(
        core.http_dials,
        [BOB],
        "no connection yet: one is opened for it"
    );
    assert!(
        alice.receive(&mut core, now).is_empty(),
        "it waits for the connect"
    );
    core.http_dials.clear();
    // The connect failed and no connection is left.
    core.http_client_gone(now, BOB, None);
    let answers = alice.receive(&mut core, now);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 1, ilp }]
            if reject_code(ilp) == Some(ErrorCode::T01_PEER_UNREACHABLE)),
        "{answers:?}"
    );
    // The next connection ahead of need waits for the backoff (`reconnect_min_ms` = 100).
    core.on_tick(now + 50);
    assert!(core.http_dials.is_empty());
    core.on_tick(now + 100);
    assert_eq!(core.http_dials, [BOB]);
}

#[test]
fn a_prepare_late_on_an_http_connection_is_answered_r00_not_t01() {
    let mut core = http_core();
    let mut alice = TestPeer::connect(&mut core, T0, ALICE, "alice");
    core.on_tick(T0);
    let id = open_http(&mut core, T0)[0];
    // Off the wheel's 5 ms grid: the wheel answers it up to a tick after its expiry.
    let expires_at = T0 + 3_003;
    let what = Send::Prepare { tag: 7, expires_at };
    alice.send(&mut core, T0, what, &prepare(3, expires_at));
    assert!(holds(&write_out(&mut core, id), b"POST "));
    // The peer never answers. The clock walks past the outgoing expiry (2 s on: the message
    // window is 1 s) a millisecond at a time; the connection closes once its oldest request
    // is stale, and its reader and writer end at once.
    let mut gone = false;
    for now in T0 + 1_990..T0 + 2_100 {
        core.on_tick(now);
        if !gone && core.link(id).is_some_and(|l| l.closing) {
            core.http_client_gone(now, BOB, Some(id));
            core.remove_link(now, id);
            gone = true;
        }
    }
    assert!(gone, "a stale connection closes");
    let answers = alice.receive(&mut core, T0 + 2_100);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 7, ilp }]
            if reject_code(ilp) == Some(ErrorCode::R00_TRANSFER_TIMED_OUT)),
        "one answer, R00: {answers:?}"
    );
}

#[test]
fn no_request_goes_behind_one_past_its_expiry() {
    let mut core = http_core();
    let mut alice = TestPeer::connect(&mut core, T0, ALICE, "alice");
    core.on_tick(T0);
    let id = open_http(&mut core, T0)[0];
    let expires_at = T0 + 3_003;
    let what = Send::Prepare { tag: 1, expires_at };
    alice.send(&mut core, T0, what, &prepare(1, expires_at));
    write_out(&mut core, id);
    // Past the first one's outgoing expiry, before its connection is stale: its answer would
    // come first and nobody needs it, so the next Prepare waits for a fresh connection.
    let now = T0 + 2_006;
    core.on_tick(now);
    let later = now + 30_000;
    let what = Send::Prepare {
        tag: 2,
        expires_at: later,
    };
    alice.send(&mut core, now, what, &prepare(2, later));
    assert!(
        core.link(id).unwrap().out.is_empty(),
        "not behind the late one"
    );
    assert_eq!(core.http_dials, [BOB]);
    let fresh = open_http(&mut core, now)[0];
    assert!(holds(&write_out(&mut core, fresh), &prepare(2, later)[..8]));
}

/// Alice, and a group `cluster` of b1 (over BTP, or over HTTP with `b1_http`) and b2 (BTP),
/// routed at `g.cluster`, on one core.
fn cluster_core(b1_http: bool) -> CoreState {
    let b1_extra = match b1_http {
        true => "http_url = \"http://127.0.0.1:1/ilp\"\noutgoing_token = \"to-b1\"",
        false => "",
    };
    let backend = |name: &str, extra: &str| {
        format!(
            "[[peers]]\nname = \"{name}\"\nauth_tokens = [\"{name}-secret\"]\nrelation = \"peer\"\n\
             asset_code = \"USD\"\nasset_scale = 9\nmax_balance = \"1000000\"\n{extra}\n"
        )
    };
    let text = format!(
        "ilp_address = \"g.router\"\n[listen]\nbtp = \"127.0.0.1:1\"\n\
         [[peers]]\nname = \"alice\"\nauth_tokens = [\"alice-secret\"]\nrelation = \"child\"\n\
         asset_code = \"USD\"\nasset_scale = 9\nmax_balance = \"1000000\"\n{}{}\
         [[groups]]\nname = \"cluster\"\npeers = [\"b1\", \"b2\"]\nhash_segments = 1\n\
         [[routes]]\nprefix = \"g.cluster\"\ngroup = \"cluster\"\n\
         [limits]\ntick_ms = 5\nhttp_connections_min = 0\n",
        backend("b1", b1_extra),
        backend("b2", ""),
    );
    let config = Arc::new(Config::from_toml_str(&text).expect("the test config is valid"));
    cores_with(config, 1).remove(0)
}

const B1: PeerId = PeerId(1);
const B2: PeerId = PeerId(2);

fn prepare_to(destination: &str, amount: u64, expires_at: i64) -> Vec<u8> {
    let condition: [u8; 32] = Sha256::digest(FULFILLMENT).into();
    let repr = PrepareRepr {
        amount,
        expires_at,
        execution_condition: &condition,
        destination: Address::new_checked(destination.as_bytes()).expect("valid"),
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

#[test]
fn a_backend_whose_link_ends_gets_nothing_more_and_what_it_was_sent_is_never_resent() {
    let mut core = cluster_core(false);
    let now = T0;
    let mut alice = TestPeer::connect(&mut core, now, ALICE, "alice");
    let mut b1 = TestPeer::connect(&mut core, now, B1, "b1");
    let mut b2 = TestPeer::connect(&mut core, now, B2, "b2");
    let expires_at = now + 30_000;
    let (mut on_b1, mut on_b2) = (Vec::new(), 0);
    for i in 0..40u64 {
        let what = Send::Prepare { tag: i, expires_at };
        alice.send(
            &mut core,
            now,
            what,
            &prepare_to(&format!("g.cluster.r{i}"), 10, expires_at),
        );
        on_b1.extend(b1.receive(&mut core, now).into_iter().map(|_| i));
        on_b2 += b2.receive(&mut core, now).len();
    }
    assert_eq!(on_b1.len() + on_b2, 40);
    assert!(
        on_b1.len() >= 8 && on_b2 >= 8,
        "{} and {on_b2}",
        on_b1.len()
    );
    // b1 goes away: what it was sent may have reached it, so those fail T01 and nothing of
    // them reaches b2.
    core.remove_link(now, b1.link);
    let answers = alice.receive(&mut core, now);
    assert_eq!(answers.len(), on_b1.len());
    for answer in &answers {
        let Received::Reply { tag, ilp } = answer else {
            panic!("{answer:?}")
        };
        assert!(on_b1.contains(tag));
        assert_eq!(reject_code(ilp), Some(ErrorCode::T01_PEER_UNREACHABLE));
    }
    assert!(b2.receive(&mut core, now).is_empty(), "never sent again");
    // Every receiver goes to b2 now, b1's included.
    for i in 0..40u64 {
        let what = Send::Prepare {
            tag: 100 + i,
            expires_at,
        };
        alice.send(
            &mut core,
            now,
            what,
            &prepare_to(&format!("g.cluster.r{i}"), 10, expires_at),
        );
        assert_eq!(b2.receive(&mut core, now).len(), 1, "r{i}");
    }
    // And with b2 gone too: T01 at once.
    core.remove_link(now, b2.link);
    alice.receive(&mut core, now);
    let what = Send::Prepare {
        tag: 999,
        expires_at,
    };
    alice.send(
        &mut core,
        now,
        what,
        &prepare_to("g.cluster.r1", 10, expires_at),
    );
    let answers = alice.receive(&mut core, now);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 999, ilp }]
            if reject_code(ilp) == Some(ErrorCode::T01_PEER_UNREACHABLE)),
        "{answers:?}"
    );
}

#[test]
fn a_prepare_never_written_to_an_unreachable_backend_goes_to_the_next_one() {
    let mut core = cluster_core(true);
    let now = T0;
    let mut alice = TestPeer::connect(&mut core, now, ALICE, "alice");
    let mut b2 = TestPeer::connect(&mut core, now, B2, "b2");
    let expires_at = now + 30_000;
    // The first receiver whose Prepare waits for a connection to b1 (HTTP, none open yet).
    let mut tag = 0;
    loop {
        tag += 1;
        assert!(tag < 100, "no receiver hashed to b1");
        let what = Send::Prepare { tag, expires_at };
        alice.send(
            &mut core,
            now,
            what,
            &prepare_to(&format!("g.cluster.r{tag}"), 10, expires_at),
        );
        match b2.receive(&mut core, now).pop() {
            Some(Received::Prepare { request_id, .. }) => {
                b2.send(&mut core, now, Send::Reply { request_id }, &fulfill());
                alice.receive(&mut core, now);
            }
            None => break,
            Some(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(core.http_dials, [B1], "a connection is opened for it");
    core.http_dials.clear();
    let posted_b2 = core.engine.ledger().account(B2).posted_local();
    // The connect fails: not a byte of it left, so b2 takes it.
    core.http_client_gone(now, B1, None);
    let Some(Received::Prepare { request_id, .. }) = b2.receive(&mut core, now).pop() else {
        panic!("b2 gets the Prepare b1 could not");
    };
    b2.send(&mut core, now, Send::Reply { request_id }, &fulfill());
    let answers = alice.receive(&mut core, now);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: t, ilp }] if *t == tag && reject_code(ilp).is_none()),
        "{answers:?}"
    );
    assert_eq!(
        core.engine.ledger().account(B2).posted_local(),
        posted_b2 - 10
    );
    assert_eq!(core.engine.ledger().account(B1).posted_local(), 0);
    assert_eq!(core.engine.backends().counters().rerouted, 1);
    // b1 is unreachable now: the same receiver goes straight to b2.
    let what = Send::Prepare {
        tag: 500,
        expires_at,
    };
    alice.send(
        &mut core,
        now,
        what,
        &prepare_to(&format!("g.cluster.r{tag}"), 10, expires_at),
    );
    assert_eq!(b2.receive(&mut core, now).len(), 1);
    assert!(core.http_dials.is_empty());
}

#[test]
fn a_drained_backend_takes_nothing_new_finishes_what_it_has_then_its_links_close() {
    let mut core = cluster_core(false);
    let now = T0;
    let mut alice = TestPeer::connect(&mut core, now, ALICE, "alice");
    let mut b1 = TestPeer::connect(&mut core, now, B1, "b1");
    let mut b2 = TestPeer::connect(&mut core, now, B2, "b2");
    let expires_at = now + 30_000;
    // A receiver on b1, its Prepare left in flight.
    let mut tag = 0;
    let request_id = loop {
        tag += 1;
        assert!(tag < 100, "no receiver hashed to b1");
        let what = Send::Prepare { tag, expires_at };
        alice.send(
            &mut core,
            now,
            what,
            &prepare_to(&format!("g.cluster.r{tag}"), 10, expires_at),
        );
        if let Some(Received::Prepare { request_id, .. }) = b1.receive(&mut core, now).pop() {
            break request_id;
        }
        let Some(Received::Prepare { request_id, .. }) = b2.receive(&mut core, now).pop() else {
            panic!("b1 or b2 gets it");
        };
        b2.send(&mut core, now, Send::Reply { request_id }, &fulfill());
        alice.receive(&mut core, now);
    };
    core.shared.draining[B1.index()].store(true, Ordering::Relaxed);
    core.on_tick(now);
    assert!(core.engine.is_draining(B1));
    // Its receiver goes to b2 now; b1's own Prepares are refused T03.
    let what = Send::Prepare {
        tag: 500,
        expires_at,
    };
    alice.send(
        &mut core,
        now,
        what,
        &prepare_to(&format!("g.cluster.r{tag}"), 10, expires_at),
    );
    assert_eq!(b2.receive(&mut core, now).len(), 1);
    let what = Send::Prepare { tag: 7, expires_at };
    b1.send(
        &mut core,
        now,
        what,
        &prepare_to("g.router.alice", 10, expires_at),
    );
    let answers = b1.receive(&mut core, now);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 7, ilp }]
            if reject_code(ilp) == Some(ErrorCode::T03_CONNECTOR_BUSY)),
        "{answers:?}"
    );
    // What it has in flight still completes, and its link stays until then.
    core.on_tick(now + 5);
    assert!(!core.link(b1.link).unwrap().closing);
    b1.send(&mut core, now + 5, Send::Reply { request_id }, &fulfill());
    let answers = alice.receive(&mut core, now + 5);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: t, ilp }] if *t == tag && reject_code(ilp).is_none()),
        "{answers:?}"
    );
    core.on_tick(now + 10);
    assert!(
        core.link(b1.link).is_none_or(|l| l.closing),
        "closed once idle"
    );
    // The drain ends: b1 may take Prepares again once it has a link.
    core.shared.draining[B1.index()].store(false, Ordering::Relaxed);
    core.on_tick(now + 15);
    assert!(!core.engine.is_draining(B1));
}

#[test]
fn a_child_asking_peer_config_over_btp_gets_its_address() {
    use crate::engine::PEER_PROTOCOL_CONDITION;
    let mut cores = cores(1);
    let core = &mut cores[0];
    let mut alice = TestPeer::connect(core, T0, ALICE, "alice");
    let mut bob = TestPeer::connect(core, T0, BOB, "bob");
    let expires_at = T0 + 60_000;
    let request = || {
        let repr = PrepareRepr {
            amount: 0,
            expires_at,
            execution_condition: &PEER_PROTOCOL_CONDITION,
            destination: Address::new_checked(b"peer.config").expect("valid"),
            data: b"",
        };
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut out);
        out
    };
    alice.send(core, T0, Send::Prepare { tag: 1, expires_at }, &request());
    let answers = alice.receive(core, T0);
    let [Received::Reply { tag: 1, ilp }] = &answers[..] else {
        panic!("{answers:?}")
    };
    let Packet::Fulfill(fulfill) = Packet::new_checked(&ilp[..]).unwrap() else {
        panic!("a Fulfill")
    };
    assert_eq!(fulfill.fulfillment(), &[0u8; 32]);
    // var-octet "g.router.alice", scale 9, var-octet "USD".
    assert_eq!(fulfill.data(), b"\x0eg.router.alice\x09\x03USD");
    // bob is a peer, not a child: F00.
    bob.send(core, T0, Send::Prepare { tag: 2, expires_at }, &request());
    let answers = bob.receive(core, T0);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 2, ilp }]
            if reject_code(ilp) == Some(ErrorCode::F00_BAD_REQUEST)),
        "{answers:?}"
    );
}

#[test]
fn a_peer_added_by_a_reload_works_on_a_core_before_its_home_core_applied_the_reload() {
    let mut cores = cores(2);
    let now = T0;
    let mut bob = TestPeer::connect(&mut cores[0], now, BOB, "bob");
    pump(&mut cores, now);
    let running = Arc::clone(&cores[0].config);
    cores[0]
        .shared
        .config
        .start(Arc::clone(&running), None, None, Default::default());
    // dave, added: slot 2, homed on core 0.
    let text =
        format!(
        "{}\n[[peers]]\nname = \"dave\"\nauth_tokens = [\"dave-secret\"]\nrelation = \"child\"\n\
         asset_code = \"USD\"\nasset_scale = 9\nmax_balance = \"1000000\"\n",
        CONFIG_TEXT.replace("{bob_extra}", "").replace("{cores}", "2")
    );
    let added = Config::from_toml_str(&text)
        .unwrap()
        .keep_ids_of(&running)
        .unwrap();
    let dave = added.peer_id("dave").unwrap();
    assert_eq!(dave, PeerId(2));
    cores[0].shared.config.publish(Arc::new(added));
    // Core 1 applies it at its tick; core 0 has not ticked yet.
    cores[1].on_tick(now);
    assert_eq!(
        cores[0].engine.peer_stats().len(),
        2,
        "core 0 has not applied it"
    );
    let mut dave_link = TestPeer::connect(&mut cores[1], now, dave, "dave");
    let expires_at = now + 30_000;
    let what = Send::Prepare { tag: 9, expires_at };
    dave_link.send(&mut cores[1], now, what, &prepare(600, expires_at));
    // dave's headroom is leased from core 0, which applies the reload when the request
    // (naming slot 2) reaches it; then the Prepare crosses to bob on core 0.
    pump(&mut cores, now);
    assert_eq!(
        cores[0].engine.peer_stats().len(),
        3,
        "applied on the lease request"
    );
    let Received::Prepare { request_id, .. } = bob.receive(&mut cores[0], now).remove(0) else {
        panic!("bob gets dave's Prepare on core 0");
    };
    bob.send(
        &mut cores[0],
        now + 5,
        Send::Reply { request_id },
        &fulfill(),
    );
    pump(&mut cores, now + 5);
    let answers = dave_link.receive(&mut cores[1], now + 5);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 9, ilp }] if reject_code(ilp).is_none()),
        "dave gets the Fulfill: {answers:?}"
    );
    let posted: i128 = cores
        .iter()
        .map(|c| c.engine.ledger().account(dave).posted_local())
        .sum();
    assert_eq!(posted, 600);
}

#[test]
fn a_reload_lowers_connections_per_peer_max_for_the_next_connection() {
    let mut cores = cores(1);
    let now = T0;
    let running = Arc::clone(&cores[0].config);
    let _first = TestPeer::connect(&mut cores[0], now, ALICE, "alice");
    let _second = TestPeer::connect(&mut cores[0], now, ALICE, "alice");
    let text = CONFIG_TEXT
        .replace("{bob_extra}", "")
        .replace("{cores}", "1")
        .replace("tick_ms = 5", "tick_ms = 5\nconnections_per_peer_max = 2");
    let lowered = Config::from_toml_str(&text)
        .unwrap()
        .keep_ids_of(&running)
        .unwrap();
    assert!(running.diff(&lowered).iter().all(|c| c.live));
    cores[0].shared.config.publish(Arc::new(lowered));
    cores[0].on_tick(now);
    // Two are open: a third is refused (its auth gets no answer and the link closes).
    let core = &mut cores[0];
    let link = core
        .add_link(Transport::Handshake, None, Admission::Pending, now)
        .expect("room for a link");
    core.start_btp(now, link, BtpSession::server(now, 5_000, 64, 8), None);
    let mut session = BtpSession::client(now, ALICE, 5_000, 64, 8);
    let mut auth = vec![0u8; BtpSession::auth_len(b"alice", b"alice-secret")];
    let n = session.write_auth(b"alice", b"alice-secret", &mut auth);
    core.on_message(now, link, &mut auth[..n]);
    assert!(
        core.link_mut(link).is_none_or(|l| l.closing),
        "the third connection is closed"
    );
    assert_eq!(
        core.shared.connections[ALICE.index()].load(Ordering::Relaxed),
        2
    );
}

#[test]
fn a_shared_peer_holds_to_the_ceiling_the_cluster_agent_sets_and_reports_its_status() {
    use crate::cluster::agent::Command as AgentCommand;
    let text = CONFIG_TEXT
        .replace("{bob_extra}", "")
        .replace("{cores}", "1")
        .replace(
            "max_balance = \"1000000\"\n[[peers]]",
            "max_balance = \"1000000\"\nshared_limit = true\n[[peers]]",
        )
        + "[cluster_state]\netcd = [\"http://127.0.0.1:1\"]\nbox_id = \"r1\"\n";
    let config = Arc::new(Config::from_toml_str(&text).expect("valid"));
    let mut cores = cores_with(config, 1);
    let core = &mut cores[0];
    let mut now = T0;
    let mut alice = TestPeer::connect(core, now, ALICE, "alice");
    let mut bob = TestPeer::connect(core, now, BOB, "bob");
    let status = |core: &CoreState| core.shared.cluster.statuses(0)[0].1;
    // No ceiling granted yet: T04, and the status says holds were refused.
    let expires_at = now + 30_000;
    alice.send(
        core,
        now,
        Send::Prepare { tag: 1, expires_at },
        &prepare(500, expires_at),
    );
    let answers = alice.receive(core, now);
    assert!(
        matches!(&answers[..], [Received::Reply { tag: 1, ilp }]
            if reject_code(ilp) == Some(ErrorCode::T04_INSUFFICIENT_LIQUIDITY)),
        "{answers:?}"
    );
    now += 5;
    core.on_tick(now);
    let st = status(core);
    assert_eq!((st.seq, st.ceiling, st.used, st.refused), (0, 0, 0, 1));
    // The agent raises the ceiling: applied at the next tick, and the status says so.
    let raise = AgentCommand::Raise {
        peer: ALICE,
        ceiling: 800,
        seq: 1,
    };
    core.shared.cluster.push(0, raise);
    now += 5;
    core.on_tick(now);
    let st = status(core);
    assert_eq!((st.seq, st.ceiling), (1, 800));
    alice.send(
        core,
        now,
        Send::Prepare { tag: 2, expires_at },
        &prepare(500, expires_at),
    );
    let Received::Prepare { request_id, .. } = bob.receive(core, now).remove(0) else {
        panic!("bob gets the Prepare");
    };
    bob.send(core, now, Send::Reply { request_id }, &fulfill());
    assert!(
        matches!(&alice.receive(core, now)[..], [Received::Reply { tag: 2, ilp }] if reject_code(ilp).is_none())
    );
    // 500 posted: 300 left under the ceiling.
    alice.send(
        core,
        now,
        Send::Prepare { tag: 3, expires_at },
        &prepare(301, expires_at),
    );
    let answers = alice.receive(core, now);
    assert!(matches!(&answers[..], [Received::Reply { tag: 3, ilp }]
        if reject_code(ilp) == Some(ErrorCode::T04_INSUFFICIENT_LIQUIDITY)));
    // Lowered to 0: never below what is in use (the 500 posted).
    core.shared.cluster.push(
        0,
        AgentCommand::Lower {
            peer: ALICE,
            target: 0,
            seq: 2,
        },
    );
    now += 5;
    core.on_tick(now);
    let st = status(core);
    assert_eq!(
        (st.seq, st.ceiling, st.used, st.posted, st.held),
        (2, 500, 500, 500, 0)
    );
}
