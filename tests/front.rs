//! Two routers as one front (the same ILP address, the same peers): a packet that arrives at
//! the box its receiver is not connected to still reaches the receiver, through the other
//! box. Each router routes the receiver's prefix to a group of two: the receiver itself, and
//! the other router (a BTP peer it dials); while the receiver has no link here, the group
//! fails over to the other router. Loopback only; every wait is bounded.

mod common {
    pub(crate) mod peer;
}

use common::peer::{free_port, fulfill_n, io_uring_missing, prepare_n, Peer, Router};
use ilp_router::wire::{BtpType, Packet};
use std::time::{Duration, Instant};

/// One box of the front: alice and bob may connect to it; `other` is the other box, which it
/// dials (`dial`) or which dials it.
fn config(port: u16, me: &str, other: &str, other_port: u16, dial: bool) -> String {
    let link = if dial {
        format!("btp_url = \"ws://127.0.0.1:{other_port}\"\noutgoing_token = \"{me}-secret\"")
    } else {
        format!("auth_tokens = [\"{other}-secret\"]")
    };
    format!(
        r#"
ilp_address = "g.front"
[listen]
btp = "127.0.0.1:{port}"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000"
[[peers]]
name = "{other}"
{link}
relation = "peer"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000"
send_routes = false
receive_routes = false
[[groups]]
name = "bob-anywhere"
peers = ["bob", "{other}"]
weights = [1000, 1]
[[routes]]
prefix = "g.front.bob"
group = "bob-anywhere"
[rates]
USD = "1"
"#
    )
}

/// alice sends one Prepare to bob through `alice`'s box; `bob` (wherever he is connected)
/// fulfils it. True when alice got the Fulfill.
fn pay(alice: &mut Peer, bob: &mut Peer, n: u8) -> bool {
    alice.send_ilp(&prepare_n("g.front.bob.x", 10, 5000, n));
    if let Some((BtpType::Message, id, _)) = bob.recv_ilp_within(Duration::from_secs(2)) {
        bob.send_btp(BtpType::Response, id, &fulfill_n(n));
    }
    matches!(
        alice.recv_ilp_within(Duration::from_secs(5)),
        Some((_, _, ilp)) if matches!(Packet::new_checked(&ilp[..]), Ok(Packet::Fulfill(_)))
    )
}

#[test]
fn a_packet_at_the_box_its_receiver_is_not_on_goes_through_the_other() {
    if io_uring_missing("a_packet_at_the_box_its_receiver_is_not_on_goes_through_the_other") {
        return;
    }
    let (p1, p2) = (free_port(), free_port());
    let r2 = Router::start(&config(p2, "r2", "r1", p1, false), p2, &[]);
    let r1 = Router::start(&config(p1, "r1", "r2", p2, true), p1, &[]);
    // bob is connected to r2 only; alice to r1 only.
    let mut bob = Peer::connect(r2.addr(), "bob", "bob-secret").unwrap();
    let mut alice = Peer::connect(r1.addr(), "alice", "alice-secret").unwrap();
    // r1 dials r2 in the background: the first payments may find that link not yet up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pay(&mut alice, &mut bob, 1) {
        assert!(Instant::now() < deadline, "r1 never reached bob through r2");
    }
    for n in 2..=20 {
        assert!(pay(&mut alice, &mut bob, n), "payment {n} through r2");
    }
    // bob connects to r1 too: payments go to him directly (his weight), all fulfilled.
    let mut bob_on_r1 = Peer::connect(r1.addr(), "bob", "bob-secret").unwrap();
    let mut direct = 0;
    for n in 21..=40 {
        alice.send_ilp(&prepare_n("g.front.bob.x", 10, 5000, n));
        let mut answered = false;
        for (peer, on_r1) in [(&mut bob_on_r1, true), (&mut bob, false)] {
            if let Some((BtpType::Message, id, _)) =
                peer.recv_ilp_within(Duration::from_millis(300))
            {
                peer.send_btp(BtpType::Response, id, &fulfill_n(n));
                direct += usize::from(on_r1);
                answered = true;
                break;
            }
        }
        assert!(answered, "payment {n} reached bob");
        let reply = alice
            .recv_ilp_within(Duration::from_secs(5))
            .expect("an answer");
        assert!(matches!(
            Packet::new_checked(&reply.2[..]),
            Ok(Packet::Fulfill(_))
        ));
    }
    assert!(
        direct >= 15,
        "most go to bob on r1 directly once he is there ({direct} of 20)"
    );
}
