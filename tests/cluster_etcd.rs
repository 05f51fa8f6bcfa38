//! Several routers sharing one peer's credit limit through a real 3-member etcd cluster on
//! loopback (`[cluster_state]`, `shared_limit = true`), under the faults an operator meets:
//! an etcd member lost, etcd's quorum lost and back, a router killed -9 under load, an
//! operator releasing what the dead router held, the router restarting and reconciling, and
//! both routers exhausting the limit together (one of them on two cores, the peer's Prepares
//! arriving on the core that is not its balance's home: leases between cores under the
//! ceiling etcd grants).
//!
//! Traffic: a sender (alice) multi-homed to both routers, one connection and one Prepare at a
//! time each, and a sink (bob) on each router that fulfils everything; every count is kept by
//! the test. An auditor samples every router's `GET /cluster` and etcd itself throughout and
//! checks, at every sample:
//!
//! - on each router, `used` (posted + held) ≤ the core's ceiling ≤ what etcd grants it;
//! - in etcd, the routers' ceilings add up to at most `max_balance`;
//!
//! which together say that the peer's balance plus its holds on every router never passes
//! `max_balance`. At the end the posted balances published in etcd add up to what the sinks
//! fulfilled (exactly without a kill; within what was in flight at a kill otherwise).
//!
//! `etcd` comes from Debian's `etcd-server`, which `.ci/run` installs: without it these tests
//! print `SKIPPED …` and pass, except under CI (`CI` set), where a missing etcd is a failure.

mod common {
    pub(crate) mod peer;
}
#[path = "common/etcd.rs"]
mod etcd;

use common::peer::{fulfill_n, io_uring_missing, listening_on, prepare_n, Peer};
use ilp_router::cluster::etcd::EtcdClient;
use ilp_router::cluster::read_all;
use ilp_router::wire::{BtpType, ErrorCode, Packet, Prepare, Reject};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PREFIX: &str = "/ilp-router-test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `count` consecutive loopback ports free now.
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let first = free_port();
        if first.checked_add(count).is_some()
            && (1..count).all(|c| TcpListener::bind(("127.0.0.1", first + c)).is_ok())
        {
            return first;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// One router of the front, with its own state directory kept across restarts.
struct RouterBox {
    name: String,
    dir: PathBuf,
    /// Cores; with more than one, core `c` listens on `btp + c` (`--btp-port-per-core`).
    cores: usize,
    btp: u16,
    admin: u16,
    child: Option<Child>,
}

impl RouterBox {
    fn new(name: &str, etcd: &[String], max_balance: u64, chunk_divisor: u64) -> RouterBox {
        RouterBox::with_cores(name, etcd, max_balance, chunk_divisor, 1)
    }

    fn with_cores(
        name: &str,
        etcd: &[String],
        max_balance: u64,
        chunk_divisor: u64,
        cores: usize,
    ) -> RouterBox {
        let dir = std::env::temp_dir().join(format!(
            "ilp-cluster-etcd-{}-{name}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (btp, admin) = (free_ports(cores as u16), free_port());
        let etcd: Vec<String> = etcd.iter().map(|u| format!("{u:?}")).collect();
        let config = format!(
            r#"
ilp_address = "g.front"
[listen]
btp = "127.0.0.1:{btp}"
[admin]
listen = "127.0.0.1:{admin}"
[state]
dir = "{state}"
[cluster_state]
etcd = [{etcd}]
box_id = "{name}"
prefix = "{PREFIX}"
timeout_ms = 300
publish_ms = 200
idle_ms = 1000
chunk_divisor = {chunk_divisor}
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "{max_balance}"
shared_limit = true
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
[rates]
USD = "1"
"#,
            state = dir.join("state").display(),
            etcd = etcd.join(", "),
        );
        std::fs::write(dir.join("router.toml"), config).unwrap();
        let mut router = RouterBox {
            name: name.to_owned(),
            dir,
            cores,
            btp,
            admin,
            child: None,
        };
        router.start();
        router
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let level = std::env::var("ROUTER_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let log =
            std::fs::File::create(self.dir.join(format!("router-{}.log", unix_ms()))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ilp-router"))
            .args([
                "run",
                "--config",
                self.dir.join("router.toml").to_str().unwrap(),
            ])
            .args(["--cores", &self.cores.to_string(), "--log-level", &level])
            .args(if self.cores > 1 {
                &["--btp-port-per-core"][..]
            } else {
                &[]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let ports: Vec<u16> = (0..self.cores as u16).map(|c| self.btp + c).collect();
        while !(ports.iter().all(|&p| listening_on(p)) && listening_on(self.admin)) {
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> SocketAddr {
        self.core_addr(0)
    }

    /// Where core `core` listens.
    fn core_addr(&self, core: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.btp + core as u16))
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and a bounded wait for a clean exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "{} exited with {status}: {}",
                    self.name,
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not stop within 30 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("router-") {
                out += &std::fs::read_to_string(entry.path()).unwrap_or_default();
            }
        }
        out.chars()
            .rev()
            .take(4000)
            .collect::<String>()
            .chars()
            .rev()
            .collect()
    }

    /// alice's entry in `GET /cluster`, or `None` when the router does not answer.
    fn alice(&self) -> Option<Value> {
        let body = admin(self.admin, "GET", "/cluster", "")?.1;
        let value: Value = serde_json::from_str(&body).ok()?;
        value["peers"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "alice")
            .cloned()
    }
}

impl Drop for RouterBox {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One admin request: (status, body), `None` when the router does not answer.
fn admin(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    Some((status, answer.split_once("\r\n\r\n")?.1.to_owned()))
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn amount(v: &Value) -> i128 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an amount: {v}"))
}

/// What the traffic through one router did.
#[derive(Debug, Default)]
struct Tally {
    /// Fulfills the sender received (amounts).
    fulfilled: AtomicU64,
    /// T04 (no headroom) rejects the sender received.
    t04: AtomicU64,
    /// Other rejects or lost answers.
    other: AtomicU64,
    /// Fulfills the sink sent (amounts).
    sink_fulfilled: AtomicU64,
}

/// alice and bob on one router, until `stop`; they reconnect when the router goes away.
struct Traffic {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// alice dials `alice`, bob dials `bob` (the same router; another core of it, perhaps).
    fn start(alice: SocketAddr, bob: SocketAddr, amount: u64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let connect = move |name: &str, stop: &AtomicBool| loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let addr = if name == "alice" { alice } else { bob };
            match Peer::connect(addr, name, &format!("{name}-secret")) {
                Ok(peer) => return Some(peer),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let sink = {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
            std::thread::spawn(move || {
                'connection: while let Some(mut bob) = connect("bob", &stop) {
                    while !stop.load(Ordering::Relaxed) {
                        let Some((kind, id, ilp)) = bob.recv_ilp_within(Duration::from_millis(100))
                        else {
                            if bob.closed_now() {
                                continue 'connection;
                            }
                            continue;
                        };
                        if kind != BtpType::Message {
                            continue;
                        }
                        let Ok(prepare) = Prepare::new_checked(&ilp[..]) else {
                            continue;
                        };
                        bob.send_btp(BtpType::Response, id, &fulfill_n(1));
                        tally
                            .sink_fulfilled
                            .fetch_add(prepare.amount(), Ordering::Relaxed);
                    }
                    return;
                }
            })
        };
        let sender = {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
            std::thread::spawn(move || {
                'connection: while let Some(mut alice) = connect("alice", &stop) {
                    while !stop.load(Ordering::Relaxed) {
                        alice.send_ilp(&prepare_n("g.front.bob", amount, 5000, 1));
                        match alice.recv_ilp_within(Duration::from_secs(6)) {
                            Some((_, _, ilp)) => match Packet::new_checked(&ilp[..]) {
                                Ok(Packet::Fulfill(_)) => {
                                    tally.fulfilled.fetch_add(amount, Ordering::Relaxed);
                                }
                                _ => {
                                    let code = Reject::new_checked(&ilp[..]).ok().map(|r| r.code());
                                    if code == Some(ErrorCode::T04_INSUFFICIENT_LIQUIDITY) {
                                        tally.t04.fetch_add(1, Ordering::Relaxed);
                                        std::thread::sleep(Duration::from_millis(2));
                                    } else {
                                        tally.other.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            },
                            None => {
                                tally.other.fetch_add(1, Ordering::Relaxed);
                                continue 'connection;
                            }
                        }
                    }
                    return;
                }
            })
        };
        Traffic {
            stop,
            tally,
            threads: vec![sink, sender],
        }
    }

    fn fulfilled(&self) -> u64 {
        self.tally.fulfilled.load(Ordering::Relaxed)
    }

    fn finish(mut self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
        Arc::clone(&self.tally)
    }
}

/// Samples the routers and etcd until stopped; panics (in `finish`) on any broken invariant.
struct Auditor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<String>>>,
    samples: Arc<AtomicU64>,
}

impl Auditor {
    fn start(admins: Vec<(String, u16)>, etcd: Vec<String>, max_balance: u64) -> Auditor {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            std::thread::spawn(move || {
                let mut broken = Vec::new();
                let mut client = EtcdClient::new(&etcd, Duration::from_millis(200)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    for (name, port) in &admins {
                        let Some((200, body)) = admin(*port, "GET", "/cluster", "") else {
                            continue;
                        };
                        let Ok(value) = serde_json::from_str::<Value>(&body) else {
                            continue;
                        };
                        let Some(alice) = value["peers"]
                            .as_array()
                            .and_then(|p| p.iter().find(|p| p["name"] == "alice"))
                        else {
                            continue;
                        };
                        if alice["ceiling"].is_null() || alice["reconciled"] != true {
                            continue;
                        }
                        let (used, ceiling, granted) = (
                            amount(&alice["used"]),
                            amount(&alice["ceiling"]),
                            amount(&alice["granted"]),
                        );
                        if !(used <= ceiling && ceiling <= granted) {
                            broken.push(format!(
                                "{name}: used {used}, ceiling {ceiling}, granted {granted}"
                            ));
                        }
                    }
                    if let Ok(records) = read_all(&mut client, PREFIX) {
                        for (peer, record) in records {
                            if record.ceilings() > i128::from(max_balance) {
                                broken.push(format!("etcd {peer}: {record:?}"));
                            }
                        }
                    }
                    samples.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
                broken
            })
        };
        Auditor {
            stop,
            thread: Some(thread),
            samples,
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let broken = self.thread.take().unwrap().join().unwrap();
        assert!(broken.is_empty(), "the invariant broke: {broken:#?}");
        self.samples.load(Ordering::Relaxed)
    }
}

/// alice's record in etcd.
fn record(etcd: &[String]) -> ilp_router::cluster::record::Record {
    let mut client = EtcdClient::new(etcd, Duration::from_secs(2)).unwrap();
    read_all(&mut client, PREFIX)
        .unwrap()
        .into_iter()
        .find(|(name, _)| name == "alice")
        .map(|(_, r)| r)
        .expect("alice's record in etcd")
}

/// Waits (bounded) until `check` holds.
fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the traffic through `traffic` fulfils more within `within`.
fn flows(traffic: &Traffic, within: Duration) -> bool {
    let before = traffic.fulfilled();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if traffic.fulfilled() > before + 100 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Both routers fulfil more within `within`; else the failure names the router and its log.
fn both_flow(fronts: &[(&Traffic, &RouterBox)], within: Duration, what: &str) {
    for (traffic, router) in fronts {
        assert!(
            flows(traffic, within),
            "{} {what}: {}",
            router.name,
            router.log()
        );
    }
}

#[test]
fn a_shared_limit_holds_through_etcd_faults_and_a_router_killed() {
    if io_uring_missing("a_shared_limit_holds_through_etcd_faults_and_a_router_killed") {
        return;
    }
    let Some(mut cluster) = etcd::EtcdCluster::start(3, "the shared-limit fault tests") else {
        return;
    };
    let urls = cluster.client_urls();
    // A large limit taken in small chunks (2000): each router goes back to etcd about every
    // second of this traffic.
    let max_balance = 1_000_000u64;
    let mut r1 = RouterBox::new("r1", &urls, max_balance, 500);
    let mut r2 = RouterBox::new("r2", &urls, max_balance, 500);
    let auditor = Auditor::start(
        vec![("r1".into(), r1.admin), ("r2".into(), r2.admin)],
        urls.clone(),
        max_balance,
    );
    let t1 = Traffic::start(r1.addr(), r1.addr(), 1);
    let t2 = Traffic::start(r2.addr(), r2.addr(), 1);
    both_flow(
        &[(&t1, &r1), (&t2, &r2)],
        Duration::from_secs(10),
        "forwards",
    );

    // One member of three lost (the first each router tries): traffic goes on.
    cluster.stop_member(0);
    let t04 = (
        t1.tally.t04.load(Ordering::Relaxed),
        t2.tally.t04.load(Ordering::Relaxed),
    );
    let granted = amount(&r1.alice().unwrap()["granted"]);
    eventually(
        "r1 takes headroom from the two members left",
        Duration::from_secs(10),
        || r1.alice().is_some_and(|a| amount(&a["granted"]) > granted),
    );
    assert!(flows(&t1, Duration::from_secs(5)) && flows(&t2, Duration::from_secs(5)));
    let t04_after = (
        t1.tally.t04.load(Ordering::Relaxed),
        t2.tally.t04.load(Ordering::Relaxed),
    );
    assert!(
        t04_after.0 - t04.0 < 50 && t04_after.1 - t04.1 < 50,
        "no shortage of headroom with a member lost: {t04:?} -> {t04_after:?}"
    );

    // Quorum lost: each router spends what it holds, then refuses (T04), and grants itself
    // nothing more.
    cluster.stop_member(1);
    let held: Vec<i128> = [&r1, &r2]
        .iter()
        .map(|r| amount(&r.alice().unwrap()["granted"]))
        .collect();
    eventually(
        "traffic stops on both routers (T04)",
        Duration::from_secs(20),
        || !flows(&t1, Duration::from_millis(700)) && !flows(&t2, Duration::from_millis(700)),
    );
    let t04 = t1.tally.t04.load(Ordering::Relaxed);
    eprintln!(
        "quorum lost: held {held:?}, fulfilled {} + {}",
        t1.fulfilled(),
        t2.fulfilled()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        t1.tally.t04.load(Ordering::Relaxed) > t04,
        "refused with T04 meanwhile"
    );
    for (router, held) in [&r1, &r2].iter().zip(&held) {
        let alice = router.alice().unwrap();
        assert!(
            amount(&alice["granted"]) <= *held,
            "{}: more granted without quorum",
            router.name
        );
        assert!(
            amount(&alice["ceiling"]) <= *held,
            "{}: {alice}",
            router.name
        );
        assert!(
            !alice["last_error"].is_null(),
            "{}: the error is shown: {alice}",
            router.name
        );
    }

    // Quorum back: traffic resumes.
    cluster.start_member(1);
    both_flow(
        &[(&t1, &r1), (&t2, &r2)],
        Duration::from_secs(20),
        "resumes",
    );
    cluster.start_member(0);

    // r1 killed -9 under load: what it held stays counted in etcd; r2 carries on.
    r1.kill9();
    let dead = record(&urls).boxes["r1"].clone();
    assert!(
        flows(&t2, Duration::from_secs(5)),
        "r2 carries on with r1 dead"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        record(&urls).boxes["r1"].ceiling,
        dead.ceiling,
        "kept while r1 is dead"
    );

    // An operator releases it through r2's admin API, with a reason; r2 refuses to release
    // itself, and an unknown box or peer is named.
    let release = |body: &str| admin(r2.admin, "POST", "/cluster/release", body).unwrap();
    let (status, text) = release(r#"{"peer":"alice","box":"r2","reason":"x"}"#);
    assert_eq!(status, 400, "{text}");
    let (status, text) = release(r#"{"peer":"alice","box":"r9","reason":"x"}"#);
    assert_eq!(status, 404, "{text}");
    let (status, text) = release(r#"{"peer":"alice","box":"r1","reason":""}"#);
    assert_eq!(status, 400, "{text}");
    let (status, text) = release(r#"{"peer":"alice","box":"r1","reason":"r1 lost (test)"}"#);
    assert_eq!(status, 200, "{text}");
    let released = record(&urls).boxes["r1"].clone();
    assert_eq!(
        released.ceiling, dead.posted,
        "down to its last published posted balance"
    );
    assert_eq!(released.released.as_deref(), Some("r1 lost (test)"));

    // r1 restarts from its own ledger: its entry covers its durable posted balance, never a
    // second share, and it forwards again.
    r1.start();
    eventually("r1 reconciled", Duration::from_secs(10), || {
        r1.alice().is_some_and(|a| a["reconciled"] == true)
    });
    let entry = record(&urls).boxes["r1"].clone();
    assert!(
        entry.released.is_none(),
        "its own write clears the release: {entry:?}"
    );
    assert!(entry.posted >= dead.posted, "{entry:?} {dead:?}");
    assert_eq!(record(&urls).boxes.len(), 2);
    assert!(
        flows(&t1, Duration::from_secs(20)),
        "r1 forwards again: {}",
        r1.log()
    );

    // The end: traffic stops, both routers stop gracefully and publish what they posted.
    let tally1 = t1.finish();
    let tally2 = t2.finish();
    let samples = auditor.finish();
    r1.stop();
    r2.stop();
    let record = record(&urls);
    let sink = tally1.sink_fulfilled.load(Ordering::Relaxed)
        + tally2.sink_fulfilled.load(Ordering::Relaxed);
    let sender =
        tally1.fulfilled.load(Ordering::Relaxed) + tally2.fulfilled.load(Ordering::Relaxed);
    let posted = record.posted();
    eprintln!(
        "fulfilled: sender {sender}, sink {sink}, posted in etcd {posted}; T04 {} + {}; \
         auditor samples {samples}; {record:?}",
        tally1.t04.load(Ordering::Relaxed),
        tally2.t04.load(Ordering::Relaxed)
    );
    // One Prepare was in flight through r1 at the kill: the sink may have fulfilled it and r1
    // posted it (or not) without the sender hearing back.
    assert!(
        i128::from(sender) <= posted && posted <= i128::from(sink) && sink - sender <= 1,
        "posted {posted}, sender {sender}, sink {sink}, {record:?}"
    );
    for (id, entry) in &record.boxes {
        assert_eq!(
            entry.ceiling, entry.posted,
            "{id} gave back its headroom at its stop"
        );
    }
    assert!(samples > 50, "the auditor sampled throughout ({samples})");
}

#[test]
fn two_routers_together_let_a_peer_owe_exactly_its_limit() {
    if io_uring_missing("two_routers_together_let_a_peer_owe_exactly_its_limit") {
        return;
    }
    let Some(cluster) = etcd::EtcdCluster::start(3, "the shared-limit exhaustion test") else {
        return;
    };
    let urls = cluster.client_urls();
    let max_balance = 3000u64;
    // r2 runs two cores, alice on core 1 and bob on core 0: alice's balance is homed on core
    // 0, so core 1 holds her Prepares against headroom leased from core 0, under the ceiling
    // etcd grants r2.
    let r1 = RouterBox::new("r1", &urls, max_balance, 8);
    let r2 = RouterBox::with_cores("r2", &urls, max_balance, 8, 2);
    let auditor = Auditor::start(
        vec![("r1".into(), r1.admin), ("r2".into(), r2.admin)],
        urls.clone(),
        max_balance,
    );
    let t1 = Traffic::start(r1.addr(), r1.addr(), 1);
    let t2 = Traffic::start(r2.core_addr(1), r2.core_addr(0), 1);
    // Both send until neither has fulfilled anything for a while (the limit is spent).
    let fulfilled = Mutex::new((0, Instant::now()));
    eventually("the limit is spent", Duration::from_secs(60), || {
        let now = t1.fulfilled() + t2.fulfilled();
        let mut last = fulfilled.lock().unwrap();
        if now != last.0 {
            *last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(2)
    });
    let (f1, f2) = (t1.fulfilled(), t2.fulfilled());
    let tally1 = t1.finish();
    let tally2 = t2.finish();
    auditor.finish();
    assert_eq!(
        f1 + f2,
        max_balance,
        "r1 {f1} + r2 {f2}: exactly the limit, not twice it"
    );
    assert!(f1 > 0 && f2 > 0, "both routers took part: {f1} {f2}");
    assert!(tally1.t04.load(Ordering::Relaxed) > 0 && tally2.t04.load(Ordering::Relaxed) > 0);
    assert_eq!(
        tally1.sink_fulfilled.load(Ordering::Relaxed)
            + tally2.sink_fulfilled.load(Ordering::Relaxed),
        max_balance
    );
    // The metrics say it too (and are valid exposition text where promtool is installed).
    let (status, metrics) = admin(r1.admin, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    for family in [
        "ilp_cluster_store_txns_total{result=\"ok\"}",
        "ilp_cluster_ceiling{peer=\"alice\"}",
        "ilp_cluster_granted{peer=\"alice\"}",
        "ilp_cluster_balance{peer=\"alice\"}",
        "ilp_cluster_starved_total",
    ] {
        assert!(metrics.contains(family), "{family} in {metrics}");
    }
    if let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        let output = promtool.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (mut r1, mut r2) = (r1, r2);
    r1.stop();
    r2.stop();
    let record = record(&urls);
    assert_eq!(record.posted(), i128::from(max_balance), "{record:?}");
    assert!(record.ceilings() <= i128::from(max_balance));
    // `ilp-router balances --etcd` prints the sum over routers, and each router's entry.
    let output = Command::new(env!("CARGO_BIN_EXE_ilp-router"))
        .args(["balances", "--etcd", &urls.join(","), "--prefix", PREFIX])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let balances: Value = serde_json::from_slice(&output.stdout).unwrap();
    let alice = &balances["peers"][0];
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["posted"], max_balance.to_string());
    assert_eq!(alice["boxes"].as_object().unwrap().len(), 2);
    let output = Command::new(env!("CARGO_BIN_EXE_ilp-router"))
        .args(["balances", "--etcd", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.1:1"));
}
