//! Interop with real peers: STREAM payments through the JavaScript reference connector
//! (`ilp-connector` 23) and this router, in both orders, over BTP and over ILP-over-HTTP
//! (`ilp-plugin-http` 1.6) between the two, driven by the Node scripts in
//! `tests/interop/` (see its README). Each script gets the router binary built for this test,
//! runs for at most `SCRIPT_TIMEOUT` and prints `PASS …` last when the amounts arrived as the
//! rates say.
//!
//! They need `node` and `tests/interop/node_modules` (`npm ci --prefix tests/interop`). When
//! either is missing a test prints `SKIPPED interop: <reason>` and returns, except under CI
//! (`CI` set), where `.ci/run` installs them and a missing piece is a failure.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// `None` when everything needed is there, or the reason it is not.
fn missing_prerequisite() -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Some(format!("`node --version` exited with {}", out.status)),
        Err(e) => return Some(format!("node is not installed ({e})")),
    }
    // ilp-plugin-http came later: an older install lacks it.
    for package in ["ilp-connector", "ilp-plugin-http"] {
        if !interop_dir().join("node_modules").join(package).is_dir() {
            return Some(format!(
                "tests/interop/node_modules/{package} is missing: run `npm ci --prefix tests/interop`"
            ));
        }
    }
    None
}

/// Runs one script to completion (killed after `SCRIPT_TIMEOUT`) and returns its exit success
/// and everything it printed.
fn run_script(args: &[&str]) -> Option<(bool, String)> {
    if let Some(reason) = missing_prerequisite() {
        if std::env::var_os("CI").is_some() {
            panic!("interop: {reason} (CI installs it: see .ci/run)");
        }
        // Written to stderr directly, past the test harness's capture, so it is always seen.
        let _ = writeln!(std::io::stderr(), "SKIPPED interop: {reason}");
        return None;
    }
    let log_path = std::env::temp_dir().join(format!(
        "ilp-router-interop-{}-{}.log",
        std::process::id(),
        args.join("_").replace(['-', '/'], "")
    ));
    let log = File::create(&log_path).expect("create the script's log file");
    let mut child = Command::new("node")
        .args(args)
        .current_dir(interop_dir())
        .env("ILP_ROUTER_BIN", env!("CARGO_BIN_EXE_ilp-router"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file"))
        .stderr(log)
        .spawn()
        .expect("start node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    match status {
        Some(status) => Some((status.success(), output)),
        None => panic!(
            "interop: `node {}` did not finish within {SCRIPT_TIMEOUT:?}; its output:\n{output}",
            args.join(" ")
        ),
    }
}

fn stream_payment(topology: &str, transport: &str) {
    let args = [
        "stream-payment.js",
        "--topology",
        topology,
        "--transport",
        transport,
    ];
    let Some((success, output)) = run_script(&args) else {
        return;
    };
    let pass = output
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| line.starts_with("PASS "));
    assert!(
        success && pass,
        "interop: `node {}` failed; its output:\n{output}",
        args.join(" ")
    );
    let summary = output.lines().rfind(|l| l.starts_with("PASS ")).unwrap();
    eprintln!("{summary}");
}

/// STREAM sender → JS connector → (BTP, the connector dials us) → router → STREAM receiver.
#[test]
fn stream_through_js_connector_then_router_over_btp() {
    stream_payment("js-first", "btp");
}

/// STREAM sender → router → (BTP, we dial the connector) → JS connector → STREAM receiver.
#[test]
fn stream_through_router_then_js_connector_over_btp() {
    stream_payment("router-first", "btp");
}

/// STREAM sender → JS connector → (ILP over HTTP: the connector POSTs to our `[listen] http`)
/// → router → STREAM receiver.
#[test]
fn js_first_http() {
    stream_payment("js-first", "http");
}

/// STREAM sender → router → (ILP over HTTP: we POST to the connector's `ilp-plugin-http`
/// server, our `http_url`) → JS connector → STREAM receiver.
#[test]
fn router_first_http() {
    stream_payment("router-first", "http");
}
