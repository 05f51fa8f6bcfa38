//! Durable balances through the built binary: a damaged state file stops the router at start
//! (and `balances`) with an error naming the file; a running router lists every configured
//! peer in `balances` and keeps a second router off its state directory. Bounded waits.

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn router() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ilp-router"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ilp-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/router.toml"))
            .unwrap()
            .replace("127.0.0.1:7768", &format!("127.0.0.1:{port}"));
    let path = dir.join(format!("router-{port}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

fn spawn_router(config: &Path, state: &Path) -> Child {
    router()
        .args(["run", "--cores", "1", "--log-level", "warn", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit on its own, within `WAIT`.
fn exit_output(mut child: Child) -> Output {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the router did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn balances(state: &Path) -> Output {
    router()
        .args(["balances", "--state-dir"])
        .arg(state)
        .output()
        .unwrap()
}

#[test]
fn a_damaged_state_file_is_refused_at_start_and_by_balances() {
    let dir = TempDir::new("damaged");
    let state = dir.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let file = state.join("core-0.ledger");
    std::fs::write(
        &file,
        b"not a ledger file, but long enough to hold a whole header, surely",
    )
    .unwrap();
    let before = std::fs::read(&file).unwrap();
    // Recovery runs before any core starts, so this needs no io_uring.
    let config = write_config(&dir.0, free_port());
    let output = exit_output(spawn_router(&config, &state));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("core-0.ledger"), "{stderr}");
    assert!(stderr.contains("bad magic"), "{stderr}");
    let output = balances(&state);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("core-0.ledger") && stderr.contains("bad magic"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "never reset");
}

#[test]
fn balances_of_a_directory_that_does_not_exist_is_an_error() {
    let dir = TempDir::new("missing");
    let output = balances(&dir.0.join("nowhere"));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nowhere"));
}

#[test]
fn a_running_router_lists_every_peer_and_keeps_a_second_router_out() {
    if io_uring::IoUring::new(8).is_err() {
        eprintln!("SKIPPED a_running_router_lists_every_peer_and_keeps_a_second_router_out: io_uring is not available");
        return;
    }
    let dir = TempDir::new("running");
    let state = dir.0.join("state");
    let port = free_port();
    let mut first = spawn_router(&write_config(&dir.0, port), &state);
    let deadline = Instant::now() + WAIT;
    while !listening_on(port) {
        assert!(first.try_wait().unwrap().is_none(), "the router exited");
        assert!(Instant::now() < deadline, "the router did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = balances(&state);
    assert!(output.status.success());
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json.to_string(),
        r#"{"peers":[{"name":"alice","posted":"0"},{"name":"bob","posted":"0"}]}"#
    );
    let second = spawn_router(&write_config(&dir.0, free_port()), &state);
    let output = exit_output(second);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another router is running"), "{stderr}");
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    let output = exit_output(first);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether something listens on the loopback port: a connection that is not to itself (a
/// connect to a free port in the ephemeral range can pick that very port as its source and
/// "succeed", TCP's simultaneous open).
fn listening_on(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}
