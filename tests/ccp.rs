//! Two routers exchange routes by CCP and nothing else: `g.a` and `g.b` are peers with no
//! static route to each other's prefix. A Prepare from a child of `g.a` to a child of `g.b`
//! crosses both on the learned route; when `g.b` goes away `g.a` withdraws it (F02), and when
//! `g.b` comes back the route is learned again. Loopback only, every wait bounded.

use std::time::{Duration, Instant};

#[allow(dead_code)]
mod common {
    pub(crate) mod peer;
}
use common::peer::{
    free_port, fulfill_n, http_get as get, io_uring_missing, prepare_n, Peer, Router,
};
use ilp_router::wire::{BtpType, ErrorCode, Packet};
use serde_json::Value;

/// The learned routes `GET /routes` shows: (prefix, peer, used).
fn learned(admin: u16) -> Vec<(String, String, bool)> {
    let routes: Value = serde_json::from_str(&get(admin, "/routes")).unwrap();
    routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "learned")
        .map(|r| {
            (
                r["prefix"].as_str().unwrap().to_owned(),
                r["peer"].as_str().unwrap().to_owned(),
                r["used"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const PEER_BLOCK: &str = r#"
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
"#;

fn router_a(port: u16, admin: u16) -> String {
    format!(
        r#"
ilp_address = "g.a"
[listen]
btp = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
{PEER_BLOCK}
[[peers]]
name = "b"
auth_tokens = ["b-secret"]
relation = "peer"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
[rates]
USD = "1"
"#
    )
}

fn router_b(port: u16, a_port: u16, admin: u16) -> String {
    format!(
        r#"
ilp_address = "g.b"
[listen]
btp = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
{PEER_BLOCK}
[[peers]]
name = "a"
relation = "peer"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
btp_url = "ws://127.0.0.1:{a_port}"
outgoing_username = "b"
outgoing_token = "b-secret"
[limits]
reconnect_max_ms = 200
[rates]
USD = "1"
"#
    )
}

#[test]
fn routes_learned_by_ccp_carry_payments_and_are_withdrawn_when_the_peer_goes() {
    if io_uring_missing("routes_learned_by_ccp_carry_payments_and_are_withdrawn_when_the_peer_goes")
    {
        return;
    }
    let (a_port, b_port, a_admin, b_admin) = (free_port(), free_port(), free_port(), free_port());
    let a = Router::start(&router_a(a_port, a_admin), a_port, &["--cores", "2"]);
    let mut b = Router::start(
        &router_b(b_port, a_port, b_admin),
        b_port,
        &["--cores", "1"],
    );
    // Each learns the other's address from the other, and nothing else.
    eventually("g.a learns g.b", || {
        learned(a_admin) == [("g.b".to_owned(), "b".to_owned(), true)]
    });
    eventually("g.b learns g.a", || {
        learned(b_admin) == [("g.a".to_owned(), "a".to_owned(), true)]
    });
    let explain = get(a_admin, "/routes/explain?destination=g.b.bob.x");
    assert!(explain.contains(r#""source":"learned""#), "{explain}");
    // A payment over the learned routes: alice (child of g.a) to bob (child of g.b).
    let mut alice = Peer::connect(a.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(b.addr(), "bob", "bob-secret").unwrap();
    let id = alice.send_ilp(&prepare_n("g.b.bob.x", 100, 10_000, 1));
    let (_, bob_id, forwarded) = bob.recv_ilp().expect("bob gets the Prepare");
    let Ok(Packet::Prepare(p)) = Packet::new_checked(&forwarded[..]) else {
        panic!("a Prepare");
    };
    assert_eq!(p.destination().as_bytes(), b"g.b.bob.x");
    bob.send_btp(BtpType::Response, bob_id, &fulfill_n(1));
    let (_, reply_id, back) = alice.recv_ilp().expect("alice gets the Fulfill");
    assert_eq!(reply_id, id);
    assert!(matches!(
        Packet::new_checked(&back[..]),
        Ok(Packet::Fulfill(_))
    ));
    // g.b goes: its link to g.a closes, g.a withdraws what it learned, and the same Prepare
    // finds no route.
    b.stop();
    eventually("g.a withdraws g.b", || learned(a_admin).is_empty());
    // `/routes` shows the table as published; each core takes it at its next tick, and until
    // then a Prepare on the old route finds the peer's link gone (T01).
    let mut n = 1u8;
    eventually("a Prepare to g.b is F02", || {
        n = n.wrapping_add(1);
        let id = alice.send_ilp(&prepare_n("g.b.bob.x", 100, 10_000, n));
        let (_, reply_id, back) = alice.recv_ilp().expect("a Reject");
        assert_eq!(reply_id, id);
        let Ok(Packet::Reject(reject)) = Packet::new_checked(&back[..]) else {
            panic!("a Reject");
        };
        match reject.code() {
            ErrorCode::F02_UNREACHABLE => true,
            ErrorCode::T01_PEER_UNREACHABLE => false,
            other => panic!("F02 or, before the core takes the new table, T01: {other:?}"),
        }
    });
    // g.b is back (a new routing table id): learned again.
    let _b = Router::start(
        &router_b(b_port, a_port, b_admin),
        b_port,
        &["--cores", "1"],
    );
    eventually("g.a learns g.b again", || {
        learned(a_admin) == [("g.b".to_owned(), "b".to_owned(), true)]
    });
    let metrics = get(a_admin, "/metrics");
    assert!(metrics.contains("ilp_routes_learned 1"), "{metrics}");
    drop(a);
}
