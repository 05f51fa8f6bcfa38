//! `ilp-loadgen --transport http` on loopback, a few seconds each: straight from sender to
//! sink, sender and sink as separate processes (tokens with colons, a wrong token gets 401s),
//! and through the built router (alice POSTs to `[listen] http`, the router dials bob's
//! `http_url`).

mod common;

use common::io_uring_missing;

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ilp-loadgen"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening_on(port) {
        assert!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("ilp-loadgen-http-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs ilp-loadgen to the end (bounded) and returns its JSON report.
fn run_loadgen(args: &[&str], json: &Path) -> Value {
    let mut child = Command::new(loadgen())
        .args(args)
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ilp-loadgen {args:?} did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "ilp-loadgen {args:?} failed: {stderr}");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn rejected(report: &Value, code: &str) -> u64 {
    report["rejected"][code].as_u64().unwrap_or(0)
}

#[test]
fn direct_over_http_fulfills_with_no_errors() {
    if io_uring_missing("direct_over_http_fulfills_with_no_errors") {
        return;
    }
    let dir = Dir::new("direct");
    for window in ["1", "32"] {
        let report = run_loadgen(
            &[
                "--direct",
                "--transport",
                "http",
                "--duration",
                "1s",
                "--connections",
                "2",
                "--window",
                window,
            ],
            &dir.path("direct.json"),
        );
        let fulfilled = report["fulfilled"].as_u64().unwrap();
        assert!(fulfilled > 100, "window {window}: {report}");
        assert_eq!(report["sent"], report["fulfilled"], "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["timeouts"], 0, "{report}");
        assert_eq!(report["http_errors"], serde_json::json!({}), "{report}");
        assert_eq!(report["config"]["transport"], "http");
        assert!(report["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    }
}

/// Open loop at one Prepare per 5 s on one connection: the sender closes its idle
/// connection after 4 s (before a server's keep-alive timeout could) and dials again for the
/// next one, losing nothing.
#[test]
fn an_idle_sender_connection_is_replaced_without_losing_a_request() {
    if io_uring_missing("an_idle_sender_connection_is_replaced_without_losing_a_request") {
        return;
    }
    let dir = Dir::new("idle");
    let report = run_loadgen(
        &[
            "--direct",
            "--transport",
            "http",
            "--duration",
            "11s",
            "--connections",
            "1",
            "--rate",
            "0.2",
        ],
        &dir.path("idle.json"),
    );
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent >= 2, "at least two Prepares, 5 s apart: {report}");
    assert_eq!(report["fulfilled"], report["sent"], "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["timeouts"], 0, "{report}");
}

#[test]
fn a_separate_sink_checks_the_token_and_answers_as_told() {
    if io_uring_missing("a_separate_sink_checks_the_token_and_answers_as_told") {
        return;
    }
    let dir = Dir::new("apart");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let sink = Killed(
        Command::new(loadgen())
            .args([
                "--role",
                "sink",
                "--transport",
                "http",
                "--sink-listen",
                &listen,
                "--sink",
                "bob:tok:with:colons",
                "--sink-reject-fraction",
                "0.2",
                "--sink-reject-code",
                "T42",
                "--duration",
                "20s",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "the sink");
    let url = format!("http://{listen}/accounts/alice/ilp?x=1");
    let sender = |token: &str, name: &str| {
        run_loadgen(
            &[
                "--role",
                "send",
                "--transport",
                "http",
                "--router",
                &url,
                "--sender",
                token,
                "--duration",
                "1s",
                "--connections",
                "1",
                "--window",
                "4",
            ],
            &dir.path(name),
        )
    };
    // The token is everything after the first colon, colons and all.
    let good = sender("alice:tok:with:colons", "good.json");
    let fulfilled = good["fulfilled"].as_u64().unwrap();
    let t42 = rejected(&good, "T42");
    assert!(fulfilled > 100, "{good}");
    assert_eq!(fulfilled + t42, good["sent"].as_u64().unwrap(), "{good}");
    let share = t42 as f64 / (fulfilled + t42) as f64;
    assert!(
        (0.15..0.25).contains(&share),
        "reject share {share}: {good}"
    );
    assert_eq!(good["errors"], 0, "{good}");
    // A wrong token: 401s (the sink closes after each), nothing fulfilled.
    let bad = sender("alice:tok:with", "bad.json");
    assert_eq!(bad["fulfilled"], 0, "{bad}");
    assert!(bad["http_errors"]["401"].as_u64().unwrap_or(0) > 0, "{bad}");
    assert!(bad["errors"].as_u64().unwrap() >= bad["http_errors"]["401"].as_u64().unwrap());
    drop(sink);
}

fn router_binary() -> PathBuf {
    let path = loadgen().with_file_name("ilp-router");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

fn router_config(http: u16, sink: u16) -> String {
    format!(
        r#"
ilp_address = "g.router"
[listen]
http = "127.0.0.1:{http}"
[[peers]]
name = "alice"
auth_tokens = ["alice:secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "18446744073709551615"
[[peers]]
name = "bob"
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
http_url = "http://127.0.0.1:{sink}/bob/ilp"
outgoing_token = "bob:out"
[rates]
USD = "1"
"#
    )
}

#[test]
fn through_the_router_over_http_both_ways() {
    if io_uring_missing("through_the_router_over_http_both_ways") {
        return;
    }
    let dir = Dir::new("router");
    let (http, sink) = (free_port(), free_port());
    let config = dir.path("router.toml");
    std::fs::write(&config, router_config(http, sink)).unwrap();
    // Until the router dials peers over HTTP, it refuses a config with `http_url`.
    let check = Command::new(router_binary())
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    if !check.status.success() {
        eprintln!(
            "SKIPPED through_the_router_over_http_both_ways: this router does not take http_url: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        );
        return;
    }
    let _router = Killed(
        Command::new(router_binary())
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--cores",
                "1",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(http, "the router");
    let url = format!("http://127.0.0.1:{http}/");
    let listen = format!("127.0.0.1:{sink}");
    let report = run_loadgen(
        &[
            "--transport",
            "http",
            "--router",
            &url,
            "--sender",
            "alice:alice:secret",
            "--sink",
            "bob:bob:out",
            "--sink-listen",
            &listen,
            "--destination",
            "g.router.bob",
            "--duration",
            "2s",
            "--connections",
            "1",
            "--window",
            "8",
            "--sink-reject-fraction",
            "0.2",
            "--sink-reject-code",
            "T99",
        ],
        &dir.path("router.json"),
    );
    let fulfilled = report["fulfilled"].as_u64().unwrap();
    let t99 = rejected(&report, "T99");
    assert!(fulfilled > 100, "{report}");
    assert_eq!(
        report["rejected"].as_object().unwrap().len(),
        1,
        "only the sink's code: {report}"
    );
    assert_eq!(
        fulfilled + t99,
        report["sent"].as_u64().unwrap(),
        "{report}"
    );
    let share = t99 as f64 / (fulfilled + t99) as f64;
    assert!(
        (0.15..0.25).contains(&share),
        "reject share {share}: {report}"
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["timeouts"], 0, "{report}");
    assert!(report["sink_received"].as_u64().unwrap() >= fulfilled + t99);
}

/// Whether something listens on the loopback port: a connection that is not to itself (a
/// connect to a free port in the ephemeral range can pick that very port as its source and
/// "succeed", TCP's simultaneous open).
fn listening_on(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}
