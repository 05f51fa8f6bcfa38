//! The built router with BTP peers on loopback: forwarding, every local reject code on the
//! wire, auth, bad frames, a dead next hop, packets crossing cores, graceful shutdown.
//! Bounded: every wait has a deadline (`common::peer::WAIT`).

mod common {
    pub(crate) mod peer;
}

use common::peer::{free_port, free_port_pair, Peer, Router};
use ilp_router::link::websocket::Opcode;
use ilp_router::wire::{
    Address, AmountTooLarge, BtpType, ErrorCode, FulfillRepr, Packet, Prepare, PrepareRepr, Reject,
};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn config(port: u16, extra: &str) -> String {
    let dead = free_port();
    format!(
        r#"
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:{port}"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
max_packet_amount = "300000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
[[peers]]
name = "eve"
auth_tokens = ["eve-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "XYZ"
asset_scale = 9
max_balance = "1000000"
[[peers]]
name = "coarse"
auth_tokens = ["coarse-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 0
max_balance = "1000000"
[[peers]]
name = "far"
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
btp_url = "ws://127.0.0.1:{dead}"
outgoing_token = "far-token"
[[routes]]
prefix = "g.bob"
peer = "bob"
[[routes]]
prefix = "g.eve"
peer = "eve"
[[routes]]
prefix = "g.coarse"
peer = "coarse"
[[routes]]
prefix = "g.far"
peer = "far"
[rates]
USD = "1"
[limits]
tick_ms = 5
bad_frames_max = 3
frame_len_max = 65536
shutdown_grace_ms = 3000
{extra}
"#
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn fulfillment(n: u8) -> [u8; 32] {
    [n; 32]
}

fn prepare(destination: &str, amount: u64, expires_in_ms: i64, n: u8) -> Vec<u8> {
    let condition: [u8; 32] = Sha256::digest(fulfillment(n)).into();
    let repr = PrepareRepr {
        amount,
        expires_at: now_ms() + expires_in_ms,
        execution_condition: &condition,
        destination: Address::new_checked(destination.as_bytes()).unwrap(),
        data: b"integration",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn fulfill(n: u8) -> Vec<u8> {
    let f = fulfillment(n);
    let repr = FulfillRepr {
        fulfillment: &f,
        data: b"thanks",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

/// Sends a Prepare from `peer` and returns the Reject it gets back (asserting it is one).
fn expect_reject(peer: &mut Peer, packet: &[u8]) -> Vec<u8> {
    let id = peer.send_ilp(packet);
    let (kind, reply_id, ilp) = peer.recv_ilp().expect("an answer");
    assert_eq!((kind, reply_id), (BtpType::Response, id));
    assert!(
        Reject::new_checked(&ilp[..]).is_ok(),
        "expected a Reject, got {ilp:02x?}"
    );
    ilp
}

fn code_of(reject: &[u8]) -> ErrorCode {
    let r = Reject::new_checked(reject).unwrap();
    assert_eq!(
        r.triggered_by().map(|a| a.as_bytes().to_vec()),
        Some(b"g.router".to_vec()),
        "local rejects name us"
    );
    r.code()
}

/// Sends a Prepare from `from` to `destination`, lets `to` fulfill it in a BTP packet of
/// `reply_kind`, and checks the Fulfill arrives back as the answer to the right request.
/// `ilp_links{peer}` from the router's admin API on `admin`.
fn links_of(admin: u16, peer: &str) -> Option<u64> {
    let metrics = common::peer::http_get(admin, "/metrics");
    let key = format!("ilp_links{{peer=\"{peer}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

fn round_trip(from: &mut Peer, to: &mut Peer, destination: &str, n: u8, reply_kind: BtpType) {
    let id = from.send_ilp(&prepare(destination, 10, 10_000, n));
    let (_, to_id, _) = to.recv_ilp().expect("the next hop gets the Prepare");
    to.send_btp(reply_kind, to_id, &fulfill(n));
    let (_, reply_id, back) = from.recv_ilp().expect("the Fulfill comes back");
    assert_eq!(reply_id, id);
    assert!(
        matches!(Packet::new_checked(&back[..]), Ok(Packet::Fulfill(_))),
        "round trip {n}"
    );
}

#[test]
fn prepare_reaches_next_hop_and_fulfill_comes_back() {
    if common::peer::io_uring_missing("prepare_reaches_next_hop_and_fulfill_comes_back") {
        return;
    }
    let port = free_port();
    let router = Router::start(&config(port, ""), port, &["--cores", "1"]);
    let mut alice =
        Peer::connect(router.addr(), "alice", "alice-secret").expect("alice authenticates");
    let mut bob =
        Peer::connect(router.addr(), "", "bob-secret").expect("bob authenticates by token alone");
    let packet = prepare("g.bob.wallet", 1000, 10_000, 1);
    let sent_at = now_ms();
    let id = alice.send_ilp(&packet);
    let (kind, bob_id, forwarded) = bob.recv_ilp().expect("bob gets the Prepare");
    assert_eq!(
        kind,
        BtpType::Message,
        "RFC 23: a Prepare travels in a Message"
    );
    let p = Prepare::new_checked(&forwarded[..]).unwrap();
    assert_eq!(p.amount(), 1000);
    assert_eq!(p.destination().as_bytes(), b"g.bob.wallet");
    let original = Prepare::new_checked(&packet[..]).unwrap();
    assert_eq!(
        p.expires_at(),
        original.expires_at() - 1000,
        "one window taken off"
    );
    assert!(p.expires_at() > sent_at);
    let reply = fulfill(1);
    bob.send_btp(BtpType::Response, bob_id, &reply);
    let (kind, reply_id, back) = alice.recv_ilp().expect("alice gets the Fulfill");
    assert_eq!((kind, reply_id), (BtpType::Response, id));
    assert_eq!(back, reply, "the Fulfill is relayed byte for byte");

    // interledger-rs swaps the BTP types: a Fulfill in a Message is still a reply.
    round_trip(&mut alice, &mut bob, "g.bob.wallet", 2, BtpType::Message);
}

#[test]
fn every_local_reject_code_on_the_wire() {
    if common::peer::io_uring_missing("every_local_reject_code_on_the_wire") {
        return;
    }
    let port = free_port();
    let router = Router::start(&config(port, ""), port, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let _eve = Peer::connect(router.addr(), "eve", "eve-secret").unwrap();
    let _coarse = Peer::connect(router.addr(), "coarse", "coarse-secret").unwrap();

    // F01: an ILP packet that does not decode, inside a readable BTP Message.
    let mut garbage = prepare("g.bob.x", 1, 10_000, 1);
    garbage[60] = b' ';
    assert_eq!(
        code_of(&expect_reject(&mut alice, &garbage)),
        ErrorCode::F01_INVALID_PACKET
    );
    // R02: already expired.
    assert_eq!(
        code_of(&expect_reject(&mut alice, &prepare("g.bob.x", 1, -10, 1))),
        ErrorCode::R02_INSUFFICIENT_TIMEOUT
    );
    // F02: no route.
    assert_eq!(
        code_of(&expect_reject(
            &mut alice,
            &prepare("private.x", 1, 10_000, 1)
        )),
        ErrorCode::F02_UNREACHABLE
    );
    // F08 with its data: over alice's max packet amount.
    let reject = expect_reject(&mut alice, &prepare("g.bob.x", 300_001, 10_000, 1));
    assert_eq!(code_of(&reject), ErrorCode::F08_AMOUNT_TOO_LARGE);
    let data =
        AmountTooLarge::from_bytes(Reject::new_checked(&reject[..]).unwrap().data()).unwrap();
    assert_eq!(
        data,
        AmountTooLarge {
            received: 300_001,
            maximum: 300_000
        }
    );
    // T00: no rate for eve's asset.
    assert_eq!(
        code_of(&expect_reject(
            &mut alice,
            &prepare("g.eve.x", 1, 10_000, 1)
        )),
        ErrorCode::T00_INTERNAL_ERROR
    );
    // R01: 999 units at scale 9 are 0 at scale 0.
    assert_eq!(
        code_of(&expect_reject(
            &mut alice,
            &prepare("g.coarse.x", 999, 10_000, 1)
        )),
        ErrorCode::R01_INSUFFICIENT_SOURCE_AMOUNT
    );
    // T01: far's link is down (nothing listens where we dial it).
    assert_eq!(
        code_of(&expect_reject(
            &mut alice,
            &prepare("g.far.x", 1, 10_000, 1)
        )),
        ErrorCode::T01_PEER_UNREACHABLE
    );
    // F05: bob answers with the wrong fulfillment.
    let id = alice.send_ilp(&prepare("g.bob.x", 5, 10_000, 3));
    let (_, bob_id, _) = bob.recv_ilp().unwrap();
    bob.send_btp(BtpType::Response, bob_id, &fulfill(4));
    let (_, reply_id, reject) = alice.recv_ilp().unwrap();
    assert_eq!(reply_id, id);
    assert_eq!(code_of(&reject), ErrorCode::F05_WRONG_CONDITION);
    // T04: three holds of 300 000 fill alice's 1 000 000; the fourth goes over.
    for _ in 0..3 {
        alice.send_ilp(&prepare("g.bob.x", 300_000, 30_000, 5));
        bob.recv_ilp().expect("forwarded while under the limit");
    }
    assert_eq!(
        code_of(&expect_reject(
            &mut alice,
            &prepare("g.bob.x", 300_000, 10_000, 5)
        )),
        ErrorCode::T04_INSUFFICIENT_LIQUIDITY
    );
    // R00: bob never answers; the router does, after the outgoing expiry.
    let started = now_ms();
    let id = alice.send_ilp(&prepare("g.bob.x", 1, 2_200, 6));
    bob.recv_ilp().unwrap();
    let (_, reply_id, reject) = alice.recv_ilp().expect("R00 before the incoming expiry");
    assert_eq!(reply_id, id);
    assert_eq!(code_of(&reject), ErrorCode::R00_TRANSFER_TIMED_OUT);
    let waited = now_ms() - started;
    assert!(
        (1_100..2_200).contains(&waited),
        "answered after {waited} ms"
    );
}

#[test]
fn wrong_token_gets_a_btp_error_and_the_connection_closes() {
    if common::peer::io_uring_missing("wrong_token_gets_a_btp_error_and_the_connection_closes") {
        return;
    }
    let port = free_port();
    let router = Router::start(&config(port, ""), port, &["--cores", "1"]);
    let error = Peer::connect(router.addr(), "alice", "not-alices")
        .err()
        .expect("refused");
    assert_eq!(error, "NotAcceptedError");
    assert_eq!(
        Peer::connect(router.addr(), "nobody", "alice-secret")
            .err()
            .as_deref(),
        Some("NotAcceptedError")
    );
    assert_eq!(
        Peer::connect(router.addr(), "", "nobody-knows")
            .err()
            .as_deref(),
        Some("NotAcceptedError")
    );
    // A Prepare before auth gets nowhere either.
    let mut sneaky = Peer::connect_ws(router.addr(), "/").unwrap();
    sneaky.send_ilp(&prepare("g.bob.x", 1, 10_000, 1));
    let answer = sneaky.recv_message();
    assert!(
        sneaky.closed(),
        "closed after a non-auth first packet (answered {answer:02x?})"
    );
    // The router still serves the right token.
    assert!(Peer::connect(router.addr(), "alice", "alice-secret").is_ok());
}

#[test]
fn garbage_and_oversized_frames_do_not_disturb_another_peer() {
    if common::peer::io_uring_missing("garbage_and_oversized_frames_do_not_disturb_another_peer") {
        return;
    }
    let port = free_port();
    let router = Router::start(&config(port, ""), port, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let mut noisy = Peer::connect(router.addr(), "eve", "eve-secret").unwrap();
    let mut huge = Peer::connect(router.addr(), "coarse", "coarse-secret").unwrap();
    // Unreadable BTP: dropped silently (RFC 23), then the peer is cut off after 3.
    for _ in 0..3 {
        noisy.send_message(b"\x06\xff\xff garbage that is not BTP");
    }
    assert!(
        noisy.closed(),
        "cut off after bad_frames_max unreadable frames"
    );
    // A frame header declaring 1 MiB, over frame_len_max: the connection is failed at once.
    let mut header = [0u8; 14];
    let n = ilp_router::link::websocket::write_frame_header(
        Opcode::Binary,
        true,
        1 << 20,
        Some([1, 2, 3, 4]),
        &mut header,
    );
    huge.send_raw(&header[..n]).unwrap();
    assert!(huge.closed(), "oversized frame closes the connection");
    // Alice and bob never noticed.
    round_trip(&mut alice, &mut bob, "g.bob.x", 9, BtpType::Response);
}

#[test]
fn packets_enter_on_one_core_and_leave_on_the_other() {
    if common::peer::io_uring_missing("packets_enter_on_one_core_and_leave_on_the_other") {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!(
            "SKIPPED packets_enter_on_one_core_and_leave_on_the_other: needs 2 CPUs, have {cpus}"
        );
        return;
    }
    let port = free_port_pair();
    let router = Router::start(
        &config(port, ""),
        port,
        &["--cores", "2", "--btp-port-per-core"],
    );
    let core1 = std::net::SocketAddr::from(([127, 0, 0, 1], port + 1));
    // Homes: alice (peer 0) on core 0, bob (peer 1) on core 1. Each connects to the *other*
    // core, so every hold runs against headroom leased from the home core, and every Prepare
    // crosses to the core where the next hop's link is.
    let mut alice = Peer::connect(core1, "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    // Core 1 learns of bob's link on core 0 by a message from core 0, and gets its first
    // lease of alice's headroom from core 0; until then it answers T01 or T04. Poll with a
    // probe until the Prepare reaches bob.
    let deadline = Instant::now() + common::peer::WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "core 0 never learned of bob's link"
        );
        let id = alice.send_ilp(&prepare("g.bob.x", 1, 10_000, 200));
        match alice.recv_ilp_within(Duration::from_millis(100)) {
            Some((_, reply_id, reject)) => {
                assert_eq!(reply_id, id);
                let code = code_of(&reject);
                let early = [
                    ErrorCode::T01_PEER_UNREACHABLE,
                    ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
                ];
                assert!(early.contains(&code), "probe answered {code}");
            }
            None => {
                let (_, bob_id, _) = bob.recv_ilp().expect("the probe reached bob");
                bob.send_btp(BtpType::Response, bob_id, &fulfill(200));
                assert_eq!(alice.recv_ilp().unwrap().1, id);
                break;
            }
        }
    }
    // Alice's Prepares enter on core 1 and leave on core 0; the Fulfills come back across.
    for n in 0..50u8 {
        round_trip(&mut alice, &mut bob, "g.bob.x", n, BtpType::Response);
    }
    // And the other way: bob's Prepares enter on core 0 and leave on core 1.
    for n in 50..60u8 {
        round_trip(
            &mut bob,
            &mut alice,
            "g.router.alice.x",
            n,
            BtpType::Response,
        );
    }
}

#[test]
fn graceful_shutdown_answers_in_flight_prepares_and_exits_0() {
    if common::peer::io_uring_missing("graceful_shutdown_answers_in_flight_prepares_and_exits_0") {
        return;
    }
    let port = free_port();
    let mut router = Router::start(
        &config(port, ""),
        port,
        &["--cores", "1", "--shutdown-grace-ms", "300"],
    );
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    // Bob never answers: the Prepare resolves at its outgoing expiry (3 s - 1 s window), R00,
    // however short the grace (links stay open for a Fulfill until then: tests/money.rs).
    let id = alice.send_ilp(&prepare("g.bob.x", 1, 3_000, 1));
    bob.recv_ilp().expect("forwarded");
    let status = router.stop().expect("the router exits within the wait");
    assert!(status.success(), "exit status {status:?}");
    let (_, reply_id, reject) = alice.recv_ilp().expect("the in-flight Prepare is answered");
    assert_eq!(reply_id, id);
    assert_eq!(code_of(&reject), ErrorCode::R00_TRANSFER_TIMED_OUT);
    assert!(alice.closed() && bob.closed(), "links closed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer listening"
    );
}

#[test]
fn full_in_flight_table_is_t03_on_the_wire() {
    if common::peer::io_uring_missing("full_in_flight_table_is_t03_on_the_wire") {
        return;
    }
    let port = free_port();
    let router = Router::start(
        &config(port, ""),
        port,
        &[
            "--cores",
            "1",
            "--pending-per-core-max",
            "2",
            // The whole table for alice: this is the table-full path, not a peer's share
            // (tests/money.rs has that).
            "--pending-per-peer-percent",
            "100",
        ],
    );
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    for _ in 0..2 {
        alice.send_ilp(&prepare("g.bob.x", 1, 20_000, 1));
        bob.recv_ilp().expect("forwarded while the table has room");
    }
    assert_eq!(
        code_of(&expect_reject(
            &mut alice,
            &prepare("g.bob.x", 1, 20_000, 1)
        )),
        ErrorCode::T03_CONNECTOR_BUSY
    );
}

#[test]
fn btp_error_from_the_next_hop_becomes_an_ilp_reject() {
    if common::peer::io_uring_missing("btp_error_from_the_next_hop_becomes_an_ilp_reject") {
        return;
    }
    use ilp_router::wire::{timestamp, BtpBody, BtpRepr};
    let port = free_port();
    let router = Router::start(&config(port, ""), port, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    // Our rule (JS answers F02 for all): BTP T00 UnreachableError → ILP T01; others → F02.
    for (btp_code, name, ilp_code) in [
        (
            *b"T00",
            &b"UnreachableError"[..],
            ErrorCode::T01_PEER_UNREACHABLE,
        ),
        (*b"F00", b"NotAcceptedError", ErrorCode::F02_UNREACHABLE),
    ] {
        let id = alice.send_ilp(&prepare("g.bob.x", 3, 10_000, 1));
        let (_, bob_id, _) = bob.recv_ilp().unwrap();
        let at = timestamp::format_generalized(now_ms());
        let body = BtpBody::Error {
            code: btp_code,
            name,
            triggered_at: &at,
            data: b"{}",
        };
        let repr = BtpRepr {
            request_id: bob_id,
            body,
            protocol_data: &[],
        };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut bytes);
        bob.send_message(&bytes);
        let (_, reply_id, reject) = alice.recv_ilp().unwrap();
        assert_eq!(reply_id, id);
        assert_eq!(code_of(&reject), ilp_code);
    }
}

#[test]
fn a_parked_core_wakes_for_every_packet_and_stops_on_sigterm() {
    if common::peer::io_uring_missing("a_parked_core_wakes_for_every_packet_and_stops_on_sigterm") {
        return;
    }
    // No spin at all: the ring's driver parks on its eventfd after every batch, so each
    // Prepare and each Fulfill below must wake it (src/shard/hot.rs: the ring's deferred task
    // work signals the eventfd; a wake-up lost there leaves a link unread for good).
    let port = free_port();
    let mut router = Router::start(
        &config(port, ""),
        port,
        &["--cores", "1", "--spin-us", "0", "--spin-max-us", "0"],
    );
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    for n in 0..40u8 {
        // Long enough for the driver to park (and glommio's executor to sleep) each time.
        std::thread::sleep(Duration::from_millis(15));
        round_trip(&mut alice, &mut bob, "g.bob.x", n, BtpType::Response);
    }
    let status = router
        .stop()
        .expect("the router exits on SIGTERM within the wait");
    assert!(status.success(), "exit status {status:?}");
}

/// The id of the router's first thread whose name starts with `name`.
fn thread_id(pid: u32, name: &str) -> Option<libc::pid_t> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|task| task.ok())
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with(name))
        })?
        .file_name()
        .to_str()?
        .parse()
        .ok()
}

/// The involuntary context switches so far of the router's thread named `name`: the times
/// it gave up the CPU while it could still run (a `sched_yield`, or a preemption).
fn involuntary_switches(pid: u32, name: &str) -> Option<u64> {
    let tid = thread_id(pid, name)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

#[test]
fn an_idle_route_speaker_sleeps_between_its_steps() {
    if common::peer::io_uring_missing("an_idle_route_speaker_sleeps_between_its_steps") {
        return;
    }
    // The route speaker (thread `control`) wakes every 20 ms for its periodic work. Its wait
    // must be one sleep, not a channel receive that spins and yields the CPU a few times
    // before it sleeps: every yield on a core's CPU is a context switch that takes the core
    // off its packets. To see them the speaker shares its CPU with a core that never parks.
    let port = free_port();
    let router = Router::start(
        &config(port, ""),
        port,
        &[
            "--cores",
            "1",
            "--spin-us",
            "1000000",
            "--spin-max-us",
            "1000000",
        ],
    );
    let pid = router.child.as_ref().expect("running").id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (core, speaker) = loop {
        if let (Some(core), Some(speaker)) = (thread_id(pid, "core-"), thread_id(pid, "control")) {
            break (core, speaker);
        }
        assert!(
            Instant::now() < deadline,
            "no core or control thread in the router"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled by sched_getaffinity for the
    // router's core thread (a live tid) and given as it is to the speaker's thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(core, size, &mut set), 0);
        assert_eq!(libc::sched_setaffinity(speaker, size, &set), 0);
    }
    let before = involuntary_switches(pid, "control").expect("the speaker runs");
    let window = Duration::from_secs(2);
    let start = Instant::now();
    std::thread::sleep(window);
    let after = involuntary_switches(pid, "control").expect("the speaker still runs");
    let per_s = (after - before) as f64 / start.elapsed().as_secs_f64();
    eprintln!("the idle speaker gave up its CPU while runnable {per_s:.0} times a second");
    // It sleeps 50 times a second and runs a few µs each time: the odd preemption on a busy
    // host, never a yield per step (about 100 a second when its wait yielded).
    assert!(
        per_s < 25.0,
        "the idle speaker gave up its CPU while runnable {per_s:.0} times a second"
    );
}

/// A `Cpus_allowed_list` ("0-2,5") as CPU numbers.
fn cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap());
    }
    cpus
}

#[test]
fn threads_other_than_the_cores_keep_off_the_cores_cpus() {
    if common::peer::io_uring_missing("threads_other_than_the_cores_keep_off_the_cores_cpus") {
        return;
    }
    // The router's other threads (signals, the route speaker, ...) wake on timers of their
    // own; on a core's CPU each wake-up preempts the core. They run on the other allowed
    // CPUs, and share the cores' only where the cores take them all.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = cpu_list(
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap(),
    );
    let core_cpu = allowed[0];
    let port = free_port();
    let router = Router::start(
        &config(port, ""),
        port,
        &["--cpu-list", &core_cpu.to_string()],
    );
    let pid = router.child.as_ref().expect("running").id();
    let rest: Vec<usize> = allowed.iter().copied().filter(|&c| c != core_cpu).collect();
    let others = if rest.is_empty() {
        vec![core_cpu]
    } else {
        rest
    };
    let mut seen = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        else {
            continue;
        };
        let comm = comm.trim().to_owned();
        let expected = if comm.starts_with("core-") {
            vec![core_cpu]
        } else {
            others.clone()
        };
        assert_eq!(cpu_list(list), expected, "thread {comm}");
        seen.push(comm);
    }
    for name in ["signals", "control", "core-0-"] {
        assert!(
            seen.iter().any(|c| c.starts_with(name)),
            "no thread {name} in {seen:?}"
        );
    }
}

#[test]
fn a_peer_that_closes_right_after_its_fulfill_is_seen_to_go() {
    if common::peer::io_uring_missing("a_peer_that_closes_right_after_its_fulfill_is_seen_to_go") {
        return;
    }
    // A peer that closes its connection the moment it has its Fulfill: the FIN comes right
    // behind the core's `send` that carried the Fulfill, to a driver that parks after every
    // batch (no spin). The core must see the link go at once, from its ring's poll
    // (src/shard/hot.rs), not at the next BTP ping (a minute here). (A bare echo server on
    // the same kind of poll, `benches/uring_echo.rs`, now and then never saw such a FIN.)
    let port = free_port();
    let admin = free_port();
    let extra = format!("btp_ping_interval_ms = 60000\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let mut router = Router::start(
        &config(port, &extra),
        port,
        &["--cores", "1", "--spin-us", "0", "--spin-max-us", "0"],
    );
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let links = |peer: &str| links_of(admin, peer);
    let mut late = Vec::new();
    for n in 0..60u8 {
        let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
        round_trip(&mut alice, &mut bob, "g.bob.x", n, BtpType::Response);
        drop(alice);
        let gone = Instant::now();
        while links("alice") != Some(0) {
            assert!(
                gone.elapsed() < Duration::from_secs(5),
                "round {n}: alice's closed link still open after 5 s (links {:?})",
                links("alice")
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if gone.elapsed() > Duration::from_millis(500) {
            late.push((n, gone.elapsed()));
        }
    }
    assert!(late.is_empty(), "closes seen late: {late:?}");
    let status = router.stop().expect("the router exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_peer_whose_last_message_and_close_come_in_one_segment_is_seen_to_go() {
    if common::peer::io_uring_missing(
        "a_peer_whose_last_message_and_close_come_in_one_segment_is_seen_to_go",
    ) {
        return;
    }
    // The peer's last message and its FIN in one TCP segment (corked, then shut): one
    // readiness on the core's ring, and a read that takes the message comes back short. The
    // end of stream is right behind it and raises no further readiness, so the core must
    // read on to it rather than take the short read for an empty socket, and close the link
    // at once, not at the next BTP ping (a minute here).
    let port = free_port();
    let admin = free_port();
    let extra = format!("btp_ping_interval_ms = 60000\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let mut router = Router::start(&config(port, &extra), port, &["--cores", "1"]);
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let links = |peer: &str| links_of(admin, peer);
    for n in 0..5u8 {
        let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
        alice.cork(true);
        alice.send_ilp(&prepare("g.bob.x", 10, 10_000, n));
        alice.shutdown_write();
        let (_, id, _) = bob.recv_ilp().expect("bob gets alice's last Prepare");
        bob.send_btp(BtpType::Response, id, &fulfill(n));
        let gone = Instant::now();
        while links("alice") != Some(0) {
            assert!(
                gone.elapsed() < Duration::from_secs(5),
                "round {n}: alice's half-closed link still open after 5 s (links {:?})",
                links("alice")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(alice);
    }
    let status = router.stop().expect("the router exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}
