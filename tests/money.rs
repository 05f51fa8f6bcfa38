//! Money safety through the built router: replies that cross cores are never lost, a Prepare
//! of any amount up to the peer's headroom is accepted on every core, shutdown lets in-flight
//! Prepares resolve by their own expiry, and one peer cannot fill the in-flight table.
//! Loopback only; every wait is bounded (`common::peer::WAIT`).

mod common {
    pub(crate) mod peer;
}

use common::peer::{free_port, free_port_pair, Peer, Router};
use ilp_router::wire::{Address, BtpType, ErrorCode, FulfillRepr, Packet, PrepareRepr, Reject};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn config(port: u16, alice_max: &str, extra: &str) -> String {
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
max_balance = "{alice_max}"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "{alice_max}"
[[peers]]
name = "carol"
auth_tokens = ["carol-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000"
[[routes]]
prefix = "g.bob"
peer = "bob"
[rates]
USD = "1"
[limits]
tick_ms = 5
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

fn prepare(destination: &str, amount: u64, expires_in_ms: i64, n: u32) -> Vec<u8> {
    let condition: [u8; 32] = Sha256::digest(fulfillment(n)).into();
    let repr = PrepareRepr {
        amount,
        expires_at: now_ms() + expires_in_ms,
        execution_condition: &condition,
        destination: Address::new_checked(destination.as_bytes()).unwrap(),
        data: &n.to_be_bytes(),
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn fulfillment(n: u32) -> [u8; 32] {
    let mut f = [7u8; 32];
    f[..4].copy_from_slice(&n.to_be_bytes());
    f
}

fn fulfill(n: u32) -> Vec<u8> {
    let f = fulfillment(n);
    let repr = FulfillRepr {
        fulfillment: &f,
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn is_fulfill(ilp: &[u8]) -> bool {
    matches!(Packet::new_checked(ilp), Ok(Packet::Fulfill(_)))
}

fn reject_code(ilp: &[u8]) -> Option<ErrorCode> {
    Reject::new_checked(ilp).ok().map(|r| r.code())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn core_addr(port: u16, core: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port + core as u16))
}

/// Sends a Prepare of `amount` from `from` to `g.bob…`, lets `to` fulfill it, and returns the
/// answer `from` got (a Fulfill, or a local Reject without reaching `to`).
fn pay(from: &mut Peer, to: &mut Peer, destination: &str, amount: u64, n: u32) -> Vec<u8> {
    let id = from.send_ilp(&prepare(destination, amount, 10_000, n));
    loop {
        if let Some((_, reply_id, ilp)) = from.recv_ilp_within(Duration::from_millis(20)) {
            assert_eq!(reply_id, id, "the answer to our Prepare");
            return ilp;
        }
        if let Some((_, to_id, _)) = to.recv_ilp_within(Duration::from_millis(20)) {
            to.send_btp(BtpType::Response, to_id, &fulfill(n));
            let (_, reply_id, ilp) = from.recv_ilp().expect("the Fulfill comes back");
            assert_eq!(reply_id, id);
            return ilp;
        }
    }
}

/// Waits until a 1-unit probe from `from` reaches `to` (links announced across cores).
fn warm_up(from: &mut Peer, to: &mut Peer, destination: &str) {
    let deadline = Instant::now() + common::peer::WAIT;
    let mut n = 1_000_000;
    loop {
        assert!(Instant::now() < deadline, "the route never came up");
        n += 1;
        if is_fulfill(&pay(from, to, destination, 1, n)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue: a Fulfill (or Reject) coming back on another core was dropped when the ring to the
/// origin core was full, so the next hop was paid and the upstream told R00. With a ring of
/// one slot, every Prepare must still get exactly the answer the next hop gave.
#[test]
fn replies_crossing_a_full_ring_are_never_dropped() {
    if common::peer::io_uring_missing("replies_crossing_a_full_ring_are_never_dropped") {
        return;
    }
    if cpus() < 2 {
        eprintln!("SKIPPED replies_crossing_a_full_ring_are_never_dropped: needs 2 CPUs");
        return;
    }
    let port = free_port_pair();
    let router = Router::start(
        &config(port, "1000000000", "ring_capacity = 1"),
        port,
        &["--cores", "2", "--btp-port-per-core"],
    );
    // Alice's single link is on core 1, bob's on core 0: every Prepare crosses to core 0 and
    // every answer crosses back.
    let mut alice = Peer::connect(core_addr(router.port, 1), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    warm_up(&mut alice, &mut bob, "g.bob.x");
    const N: u32 = 400;
    for round in 0..5u32 {
        let mut ids = std::collections::HashMap::new();
        for n in 0..N {
            let id = alice.send_ilp(&prepare("g.bob.x", 1, 5_000, round * N + n));
            ids.insert(id, round * N + n);
        }
        // Bob answers everything that reached him, in one burst: the ring back overflows.
        let mut fulfilled_by_bob = 0;
        while let Some((_, bob_id, ilp)) = bob.recv_ilp_within(Duration::from_millis(300)) {
            let p = ilp_router::wire::Prepare::new_checked(&ilp[..]).unwrap();
            let n = u32::from_be_bytes(p.data().try_into().expect("n in the data"));
            bob.send_btp(BtpType::Response, bob_id, &fulfill(n));
            fulfilled_by_bob += 1;
        }
        let mut fulfilled = 0;
        let mut busy = 0;
        for _ in 0..N {
            let (_, id, ilp) = alice.recv_ilp().expect("every Prepare is answered");
            assert!(ids.remove(&id).is_some(), "one answer per Prepare");
            if is_fulfill(&ilp) {
                fulfilled += 1;
            } else {
                let code = reject_code(&ilp);
                assert_eq!(
                    code,
                    Some(ErrorCode::T03_CONNECTOR_BUSY),
                    "only a full ring refuses"
                );
                busy += 1;
            }
        }
        assert_eq!(
            fulfilled, fulfilled_by_bob,
            "round {round}: bob fulfilled {fulfilled_by_bob}, alice got {fulfilled} Fulfills \
             ({busy} T03)"
        );
    }
}

/// Issue: with `max_balance = 1000` a Prepare of 100 entering on a core that is not the
/// peer's home was refused T04 (a hold could only use the leased chunk, 1000/16). A Prepare of
/// the whole limit must be fulfilled on every core, one after the other.
#[test]
fn a_prepare_of_the_whole_limit_is_fulfilled_on_every_core() {
    if common::peer::io_uring_missing("a_prepare_of_the_whole_limit_is_fulfilled_on_every_core") {
        return;
    }
    let cores = cpus().min(4);
    let port = if cores > 1 {
        free_port_pair()
    } else {
        free_port()
    };
    if cores > 2 {
        // Ports port..port+cores must be free; free_port_pair checks two. Try anyway.
        eprintln!(
            "note: {cores} cores; ports {port}..{} assumed free",
            port + cores as u16
        );
    }
    let cores_arg = cores.to_string();
    let router = Router::start(
        &config(port, "1000", ""),
        port,
        &["--cores", &cores_arg, "--btp-port-per-core"],
    );
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let mut n = 0;
    for core in (0..cores).rev().chain(0..cores) {
        let mut alice =
            Peer::connect(core_addr(router.port, core), "alice", "alice-secret").unwrap();
        warm_up(&mut alice, &mut bob, "g.bob.x");
        // Alice owes the 1 of the probe now; pay it back so that she has exactly 1000.
        n += 1;
        let back = pay(&mut bob, &mut alice, "g.router.alice.x", 1, n);
        assert!(
            is_fulfill(&back),
            "bob pays alice back: {:?}",
            reject_code(&back)
        );
        n += 1;
        let answer = pay(&mut alice, &mut bob, "g.bob.x", 1000, n);
        assert!(
            is_fulfill(&answer),
            "1000 on core {core} of {cores}: {:?}",
            reject_code(&answer)
        );
        // Now she owes 1000: nothing more fits, on any core.
        n += 1;
        let over = pay(&mut alice, &mut bob, "g.bob.x", 1, n);
        assert_eq!(
            reject_code(&over),
            Some(ErrorCode::T04_INSUFFICIENT_LIQUIDITY)
        );
        // Bob pays her 1000 back (through the router): her headroom is whole again.
        n += 1;
        let back = pay(&mut bob, &mut alice, "g.router.alice.x", 1000, n);
        assert!(
            is_fulfill(&back),
            "bob pays alice back: {:?}",
            reject_code(&back)
        );
    }
}

/// Issue: at shutdown, after `shutdown_grace_ms`, everything in flight was answered R00 and a
/// Fulfill arriving later (still before the Prepare's expiry) was ignored: the next hop paid,
/// the upstream told R00. In-flight Prepares must resolve by their own expiry.
#[test]
fn shutdown_relays_a_fulfill_that_arrives_after_the_grace_but_before_expiry() {
    if common::peer::io_uring_missing(
        "shutdown_relays_a_fulfill_that_arrives_after_the_grace_but_before_expiry",
    ) {
        return;
    }
    let port = free_port();
    let mut router = Router::start(
        &config(port, "1000000", ""),
        port,
        &["--cores", "1", "--shutdown-grace-ms", "200"],
    );
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let id = alice.send_ilp(&prepare("g.bob.x", 5, 6_000, 1));
    let (_, bob_id, _) = bob.recv_ilp().expect("forwarded");
    let pid = router.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // New Prepares are refused at once while the old one is still in flight.
    std::thread::sleep(Duration::from_millis(800));
    let refused = alice.send_ilp(&prepare("g.bob.x", 5, 6_000, 2));
    let (_, reply_id, ilp) = alice.recv_ilp().expect("a new Prepare is answered");
    assert_eq!(reply_id, refused);
    assert!(reject_code(&ilp).is_some(), "refused during shutdown");
    // Well past the grace, but before the outgoing expiry (about 5 s): bob fulfills.
    bob.send_btp(BtpType::Response, bob_id, &fulfill(1));
    let (_, reply_id, ilp) = alice.recv_ilp().expect("the Fulfill is relayed");
    assert_eq!(reply_id, id);
    assert!(
        is_fulfill(&ilp),
        "got {:?} instead of the Fulfill",
        reject_code(&ilp)
    );
    let status = router.stop().expect("the router exits");
    assert!(status.success(), "exit status {status:?}");
}

/// Issue: one peer could fill a core's whole in-flight table (zero-amount Prepares skip the
/// hold), and every other peer then got T03. A peer gets at most its share.
#[test]
fn one_peer_cannot_fill_the_in_flight_table() {
    if common::peer::io_uring_missing("one_peer_cannot_fill_the_in_flight_table") {
        return;
    }
    let port = free_port();
    let router = Router::start(
        &config(
            port,
            "1000000",
            "pending_per_core_max = 100\npending_per_peer_percent = 50",
        ),
        port,
        &["--cores", "1"],
    );
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let mut carol = Peer::connect(router.addr(), "carol", "carol-secret").unwrap();
    // Alice floods zero-amount Prepares that bob never answers.
    for n in 0..150 {
        alice.send_ilp(&prepare("g.bob.x", 0, 5_000, n));
    }
    let mut forwarded = 0;
    while bob.recv_ilp_within(Duration::from_millis(300)).is_some() {
        forwarded += 1;
    }
    assert_eq!(forwarded, 50, "alice's share of 100 slots");
    let mut busy = 0;
    while let Some((_, _, ilp)) = alice.recv_ilp_within(Duration::from_millis(300)) {
        assert_eq!(reject_code(&ilp), Some(ErrorCode::T03_CONNECTOR_BUSY));
        busy += 1;
    }
    assert_eq!(busy, 100);
    // Carol still gets through.
    let answer = pay(&mut carol, &mut bob, "g.bob.y", 10, 9999);
    assert!(is_fulfill(&answer), "carol: {:?}", reject_code(&answer));
}

/// RFC 18 payment bandwidth, through the binary: alice may send 20 Prepares a second; a burst
/// of 60 gets 20 through and T05 for the rest, and bob (no limit) is not affected.
#[test]
fn a_peer_over_its_packet_rate_gets_t05() {
    if common::peer::io_uring_missing("a_peer_over_its_packet_rate_gets_t05") {
        return;
    }
    let port = free_port();
    let config = config(port, "1000000", "").replace(
        "max_balance = \"1000000\"\n[[peers]]\nname = \"bob\"",
        "max_balance = \"1000000\"\nmax_packets_per_second = 20\n[[peers]]\nname = \"bob\"",
    );
    assert!(config.contains("max_packets_per_second = 20"));
    let router = Router::start(&config, port, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    for n in 0..60 {
        alice.send_ilp(&prepare("g.bob.x", 1, 5_000, n));
    }
    let mut forwarded = 0;
    while let Some((_, bob_id, ilp)) = bob.recv_ilp_within(Duration::from_millis(300)) {
        let p = ilp_router::wire::Prepare::new_checked(&ilp[..]).unwrap();
        let n = u32::from_be_bytes(p.data().try_into().unwrap());
        bob.send_btp(BtpType::Response, bob_id, &fulfill(n));
        forwarded += 1;
    }
    let (mut fulfilled, mut limited) = (0, 0);
    for _ in 0..60 {
        let (_, _, ilp) = alice.recv_ilp().expect("every Prepare is answered");
        if is_fulfill(&ilp) {
            fulfilled += 1;
        } else {
            assert_eq!(reject_code(&ilp), Some(ErrorCode::T05_RATE_LIMITED));
            limited += 1;
        }
    }
    // The burst is one second's worth; sending 60 takes far less than the second that
    // would add 20 more.
    assert!(
        (20..=25).contains(&fulfilled),
        "{fulfilled} fulfilled, {limited} T05"
    );
    assert_eq!(fulfilled, forwarded);
    // Bob has no limit.
    for n in 100..160 {
        let answer = pay(&mut bob, &mut alice, "g.router.alice.x", 1, n);
        assert!(is_fulfill(&answer), "bob: {:?}", reject_code(&answer));
    }
}
