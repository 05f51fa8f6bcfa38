//! `ilp-loadgen` against the built router on loopback, a few seconds each: packets flow,
//! rejects are exactly what the sink was told to produce, and a router that dies mid-run
//! still leaves a JSON report.

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ilp-loadgen"))
}

/// The router binary sits beside ours in the same target directory (`cargo test
/// --workspace` builds both).
fn router_binary() -> PathBuf {
    let path = loadgen().with_file_name("ilp-router");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

fn io_uring_available() -> bool {
    io_uring::IoUring::new(8).is_ok()
}

struct Router {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Router {
    fn start(name: &str) -> Router {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("ilp-loadgen-e2e-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tuning/router.toml"
        ))
        .unwrap()
        .replace("127.0.0.1:7768", &format!("127.0.0.1:{port}"));
        std::fs::write(dir.join("router.toml"), config).unwrap();
        let child = Command::new(router_binary())
            .args([
                "run",
                "--config",
                dir.join("router.toml").to_str().unwrap(),
                "--cores",
                "1",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening_on(port) {
            assert!(Instant::now() < deadline, "router did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Router { child, port, dir }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_loadgen(router: &Router, extra: &[&str], name: &str) -> Value {
    let json = router.dir.join(format!("{name}.json"));
    let url = format!("ws://127.0.0.1:{}", router.port);
    let mut args = vec![
        "--router",
        &url,
        "--sender",
        "alice:alice-secret",
        "--sink",
        "bob:bob-secret",
        "--destination",
        "g.router.bob",
        "--connections",
        "1",
        "--window",
        "64",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = Command::new(loadgen()).args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "ilp-loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn packets_flow_and_rejects_are_what_the_sink_was_told() {
    if !io_uring_available() {
        eprintln!("SKIPPED packets_flow_and_rejects_are_what_the_sink_was_told: io_uring is not available");
        return;
    }
    let router = Router::start("flow");
    let report = run_loadgen(
        &router,
        &[
            "--duration",
            "2s",
            "--sink-reject-fraction",
            "0.2",
            "--sink-reject-code",
            "T99",
            "--amount",
            "7",
        ],
        "flow",
    );
    let fulfilled = report["fulfilled"].as_u64().unwrap();
    let sent = report["sent"].as_u64().unwrap();
    let rejected = report["rejected"].as_object().unwrap();
    assert!(fulfilled > 1000, "only {fulfilled} fulfilled: {report}");
    assert_eq!(
        rejected.keys().collect::<Vec<_>>(),
        vec!["T99"],
        "only the sink's code: {report}"
    );
    let t99 = rejected["T99"].as_u64().unwrap();
    assert_eq!(fulfilled + t99, sent, "every Prepare answered: {report}");
    let share = t99 as f64 / sent as f64;
    assert!((0.15..0.25).contains(&share), "reject share {share}");
    assert_eq!(report["timeouts"], 0);
    assert_eq!(report["errors"], 0);
    assert!(report["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert!(!report["timeline"].as_array().unwrap().is_empty());
}

#[test]
fn on_the_load_threads_own_ring_every_prepare_is_answered_closed_and_open_loop() {
    if !io_uring_available() {
        eprintln!("SKIPPED on_the_load_threads_own_ring_every_prepare_is_answered_closed_and_open_loop: io_uring is not available");
        return;
    }
    // `--io ring` through the router: closed loop with a window of 64 (sends the socket
    // refuses are left to the writer task), then open loop; every Prepare gets its answer.
    let router = Router::start("ring");
    for (name, extra) in [
        ("ring-closed", &["--duration", "2s", "--io", "ring"][..]),
        (
            "ring-open",
            &["--duration", "2s", "--io", "ring", "--rate", "5000"][..],
        ),
    ] {
        let report = run_loadgen(&router, extra, name);
        let fulfilled = report["fulfilled"].as_u64().unwrap();
        assert!(
            fulfilled > 1000,
            "{name}: only {fulfilled} fulfilled: {report}"
        );
        assert_eq!(report["sent"], report["fulfilled"], "{name}: {report}");
        assert_eq!(report["timeouts"], 0, "{name}: {report}");
        assert_eq!(report["errors"], 0, "{name}: {report}");
        assert!(
            report["rejected"].as_object().unwrap().is_empty(),
            "{name}: {report}"
        );
    }
}

#[test]
fn wrong_fulfillments_come_back_as_f05() {
    if !io_uring_available() {
        eprintln!("SKIPPED wrong_fulfillments_come_back_as_f05: io_uring is not available");
        return;
    }
    let router = Router::start("wrong");
    let report = run_loadgen(
        &router,
        &[
            "--duration",
            "1s",
            "--sink-wrong-fraction",
            "0.1",
            "--rate",
            "2000",
        ],
        "wrong",
    );
    let rejected = report["rejected"].as_object().unwrap();
    assert!(
        rejected.get("F05").and_then(Value::as_u64).unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(rejected.len(), 1, "{report}");
    assert_eq!(
        report["bad_fulfillments"], 0,
        "the router never relays a wrong fulfillment"
    );
    assert_eq!(report["config"]["mode"], "open-loop");
}

#[test]
fn a_router_that_dies_mid_run_still_leaves_a_report() {
    if !io_uring_available() {
        eprintln!(
            "SKIPPED a_router_that_dies_mid_run_still_leaves_a_report: io_uring is not available"
        );
        return;
    }
    let mut router = Router::start("dies");
    let json = router.dir.join("dies.json");
    let url = format!("ws://127.0.0.1:{}", router.port);
    let mut child = Command::new(loadgen())
        .args([
            "--router",
            &url,
            "--duration",
            "20s",
            "--connections",
            "1",
            "--json",
            json.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Long enough for the first Fulfills even on a loaded machine (tests run in parallel).
    std::thread::sleep(Duration::from_millis(3000));
    router.child.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ilp-loadgen did not end after the router died"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("a JSON report")).unwrap();
    assert_eq!(report["ended_early"], true, "{report}");
    assert!(report["fulfilled"].as_u64().unwrap() > 0);
    let _ = status;
}

/// Whether something listens on the loopback port: a connection that is not to itself (a
/// connect to a free port in the ephemeral range can pick that very port as its source and
/// "succeed", TCP's simultaneous open).
fn listening_on(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}
