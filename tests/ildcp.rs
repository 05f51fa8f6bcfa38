//! A router started without `ilp_address` learns it from its parent (ILDCP, RFC 31) before it
//! starts: here the parent is another `ilp-router`, whose child the first one is.

use std::time::{Duration, Instant};

#[allow(dead_code)]
mod common {
    pub(crate) mod peer;
}
use common::peer::{free_port, http_get as get, io_uring_missing, Router};

#[test]
fn a_router_without_an_address_learns_it_from_its_parent() {
    if io_uring_missing("a_router_without_an_address_learns_it_from_its_parent") {
        return;
    }
    let (parent_port, child_port, admin) = (free_port(), free_port(), free_port());
    let parent = format!(
        r#"
ilp_address = "g.parent"
[listen]
btp = "127.0.0.1:{parent_port}"
[[peers]]
name = "kid"
auth_tokens = ["kid-secret"]
relation = "child"
asset_code = "EUR"
asset_scale = 6
max_balance = "1000"
[rates]
EUR = "1"
"#
    );
    let child = format!(
        r#"
# no ilp_address: the parent tells us
[listen]
btp = "127.0.0.1:{child_port}"
[admin]
listen = "127.0.0.1:{admin}"
[[peers]]
name = "up"
relation = "parent"
asset_code = "EUR"
asset_scale = 6
max_balance = "1000"
btp_url = "ws://127.0.0.1:{parent_port}"
outgoing_token = "kid-secret"
outgoing_username = "kid"
btp_dial = "single"
[rates]
EUR = "1"
"#
    );
    // The child first, while the parent is not there yet: it waits and asks again.
    let child_started = Instant::now();
    let child_router =
        std::thread::spawn(move || Router::start(&child, child_port, &["--cores", "1"]));
    std::thread::sleep(Duration::from_millis(300));
    let _parent = Router::start(&parent, parent_port, &["--cores", "1"]);
    let _child = child_router.join().unwrap();
    assert!(child_started.elapsed() < Duration::from_secs(10));
    let config = get(admin, "/config");
    assert!(
        config.contains(r#""ilp_address":"g.parent.kid""#),
        "{config}"
    );
}
