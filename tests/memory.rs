//! The router's memory, measured on the router binary (its `VmRSS` from `/proc`), loopback
//! only, every wait bounded. Each test prints its figure (`cargo test --test memory --
//! --nocapture`, in BENCHMARKS.md) and holds it to a generous bound, so that a leak or a
//! table that grows per packet fails:
//!
//! - `rss_per_idle_link`: 1 000 authenticated BTP links that say nothing.
//! - `rss_per_route`: 100 000 configured routes, against none.
//! - `rss_per_in_flight_prepare`: 60 000 Prepares held by a sink that never answers.
//! - `rss_stays_flat_under_load`: round trips for 20 s; RSS at the end against RSS after
//!   the first 5 s.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod common {
    pub(crate) mod peer;
}
use common::peer::{free_port, fulfill_n, io_uring_missing, prepare_n, Peer, Router};
use ilp_router::wire::BtpType;

/// The router's resident set, in KiB.
fn rss_kib(router: &Router) -> u64 {
    let pid = router.child.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// RSS once it stopped moving (two samples 200 ms apart within 64 KiB), at most 3 s.
fn settled_rss(router: &Router) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = rss_kib(router);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_kib(router);
        if now.abs_diff(last) < 64 || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Lets this process (and the router it starts) open `n` more descriptors.
fn raise_fd_limit(n: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid resource and a live local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < n {
            limit.rlim_cur = limit.rlim_max.min(n.max(limit.rlim_cur));
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    assert!(
        limit.rlim_cur >= n,
        "the descriptor limit is {} (hard {}); the test needs {n}",
        limit.rlim_cur,
        limit.rlim_max
    );
}

const PEERS: &str = r#"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000000"
"#;

fn config(port: u16, extra: &str, limits: &str) -> String {
    format!(
        "ilp_address = \"g.router\"\n[listen]\nbtp = \"127.0.0.1:{port}\"\n{PEERS}{extra}\n\
         [rates]\nUSD = \"1\"\n[limits]\n{limits}\n"
    )
}

#[test]
fn rss_per_idle_link() {
    if io_uring_missing("rss_per_idle_link") {
        return;
    }
    const LINKS: usize = 1000;
    raise_fd_limit(2 * LINKS as u64 + 256);
    let port = free_port();
    let limits = "connections_per_peer_max = 2000\nlinks_max = 4096";
    let router = Router::start(&config(port, "", limits), port, &["--cores", "1"]);
    // A few first, so that what every link shares is in the baseline.
    let mut links: Vec<Peer> = (0..8)
        .map(|_| Peer::connect(router.addr(), "alice", "alice-secret").unwrap())
        .collect();
    let before = settled_rss(&router);
    for _ in 0..LINKS {
        links.push(Peer::connect(router.addr(), "alice", "alice-secret").expect("a link"));
    }
    let after = settled_rss(&router);
    let per_link = after.saturating_sub(before) as f64 / LINKS as f64;
    println!(
        "RSS: {before} KiB with 8 links, {after} KiB with {} idle authenticated links: \
         {per_link:.1} KiB per link ({:.1} MiB per 1000)",
        LINKS + 8,
        per_link * 1000.0 / 1024.0
    );
    // A link's buffers are reserved, not touched, until traffic needs them.
    assert!(per_link < 128.0, "{per_link:.1} KiB per idle link");
}

#[test]
fn rss_per_route() {
    if io_uring_missing("rss_per_route") {
        return;
    }
    const ROUTES: usize = 100_000;
    let (a, b) = (free_port(), free_port());
    let none = Router::start(&config(a, "", ""), a, &["--cores", "1"]);
    let mut routes = String::with_capacity(ROUTES * 48);
    for i in 0..ROUTES {
        let peer = if i % 2 == 0 { "alice" } else { "bob" };
        routes.push_str(&format!(
            "[[routes]]\nprefix = \"g.far.r{i}\"\npeer = \"{peer}\"\n"
        ));
    }
    let many = Router::start(&config(b, &routes, ""), b, &["--cores", "1"]);
    let (without, with) = (settled_rss(&none), settled_rss(&many));
    let per_100k = with.saturating_sub(without) as f64 * 100_000.0 / ROUTES as f64;
    println!(
        "RSS: {without} KiB with no routes, {with} KiB with {ROUTES} routes: {:.1} MiB per \
         100 000 routes",
        per_100k / 1024.0
    );
    assert!(
        per_100k < 200.0 * 1024.0,
        "{per_100k:.0} KiB per 100 000 routes"
    );
}

#[test]
fn rss_per_in_flight_prepare() {
    if io_uring_missing("rss_per_in_flight_prepare") {
        return;
    }
    const PREPARES: usize = 60_000;
    let port = free_port();
    let limits = "pending_per_core_max = 65536\npending_per_peer_percent = 100\n\
                  in_flight_per_link_max = 65536\nlink_queue_bytes_max = 67108864";
    let router = Router::start(&config(port, "", limits), port, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    // Bob reads every Prepare and answers none.
    let received = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sink = {
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        let mut bob = bob;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if bob.recv_ilp_within(Duration::from_millis(100)).is_some() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let before = settled_rss(&router);
    let prepare = prepare_n("g.router.bob.x", 1, 60_000, 1);
    for _ in 0..PREPARES {
        alice.send_ilp(&prepare);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < PREPARES {
        assert!(
            Instant::now() < deadline,
            "bob got {} of {PREPARES}",
            received.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = settled_rss(&router);
    stop.store(true, Ordering::Relaxed);
    sink.join().unwrap();
    let per_64k = after.saturating_sub(before) as f64 * 65_536.0 / PREPARES as f64;
    println!(
        "RSS: {before} KiB before, {after} KiB with {PREPARES} Prepares in flight: {:.1} MiB \
         per 65 536 in flight ({:.0} bytes each)",
        per_64k / 1024.0,
        per_64k * 1024.0 / 65_536.0
    );
    assert!(
        per_64k < 128.0 * 1024.0,
        "{per_64k:.0} KiB per 64k in flight"
    );
}

#[test]
fn rss_stays_flat_under_load() {
    if io_uring_missing("rss_stays_flat_under_load") {
        return;
    }
    let port = free_port();
    let router = Router::start(&config(port, "", ""), port, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Bob fulfills everything.
    let sink = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let fulfill = fulfill_n(1);
            while !stop.load(Ordering::Relaxed) {
                if let Some((BtpType::Message, id, _)) =
                    bob.recv_ilp_within(Duration::from_millis(100))
                {
                    bob.send_btp(BtpType::Response, id, &fulfill);
                }
            }
        })
    };
    // Alice keeps 64 Prepares in flight: a burst, then one more per answer.
    let prepare = prepare_n("g.router.bob.x", 1, 30_000, 1);
    for _ in 0..64 {
        alice.send_ilp(&prepare);
    }
    let started = Instant::now();
    let (mut early, mut fulfilled) = (None, 0u64);
    while started.elapsed() < Duration::from_secs(20) {
        let Some(_) = alice.recv_ilp_within(Duration::from_secs(5)) else {
            panic!("an answer within 5 s");
        };
        fulfilled += 1;
        alice.send_ilp(&prepare);
        if early.is_none() && started.elapsed() > Duration::from_secs(5) {
            early = Some((rss_kib(&router), fulfilled));
        }
    }
    let late = rss_kib(&router);
    stop.store(true, Ordering::Relaxed);
    sink.join().unwrap();
    let (early, at) = early.expect("a sample after 5 s");
    let _ = std::io::stdout().flush();
    println!(
        "RSS: {early} KiB after 5 s ({at} round trips), {late} KiB after 20 s ({fulfilled} \
         round trips)"
    );
    assert!(fulfilled > 10_000, "only {fulfilled} round trips");
    let allowed = (early / 20).max(2048);
    assert!(
        late <= early + allowed,
        "RSS grew from {early} to {late} KiB over {} round trips",
        fulfilled - at
    );
}
