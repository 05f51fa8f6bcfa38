//! Interop with real peers: STREAM payments through the JavaScript reference connector
//! (`ilp-connector` 23) and this router, in both orders, over BTP and over ILP-over-HTTP
//! (`ilp-plugin-http` 1.6) between the two, driven by the Node scripts in
//! `tests/interop/` (see its README); and a mixed topology (one JS connector over ILP over
//! HTTP, one over BTP) paying both ways for 20 rounds with idle gaps; and a group of three JS
//! connector processes behind one route, one of them killed between payments; and ILDCP with
//! the JS client library (`ildcp.js`); and route exchange (CCP) along a chain of two JS
//! connectors with this router between them and no static route (`ccp-chain.js`); and the same
//! kind of payments over TLS only (`tls.js`: `wss://` and `https://` both ways, with
//! certificates this test makes with rcgen). Each script gets the router binary built for this
//! test, runs for at most its limit and prints `PASS …` last when the amounts arrived as the
//! rates say.
//!
//! They need `node` and `tests/interop/node_modules` (`npm ci --prefix tests/interop`). When
//! either is missing a test prints `SKIPPED interop: <reason>` and returns, except under CI
//! (`CI` set), where `.ci/run` installs them and a missing piece is a failure.
//!
//! `ilp_node_over_http` (STREAM payments both ways with interledger-rs's `ilp-node`, over ILP
//! over HTTP) and `ilp_node_route_exchange` (the same over routes learned by CCP) are opt-in:
//! they run only when `ILP_NODE_BIN` names an `ilp-node` binary, which CI does not build (see
//! tests/interop/README.md), and are skipped otherwise, under CI too.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// By `#[path]` rather than `mod common { mod certs; }` as tests/tls.rs has it: rustfmt, given
// this file, would look for that module under tests/interop/ (the scripts' directory).
#[allow(dead_code)]
#[path = "common/certs.rs"]
mod certs;
use certs::Ca;

/// The limit of one `stream-payment.js` run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The limit of the `mixed-topology.js` run: 20 rounds with ten idle gaps of about 6 s take
/// about 70 s, and the script starts no round after 130 s.
const MIXED_TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(240);

/// The limit of the `cluster.js` run: three connector processes and the router start in about
/// 2 s, 18 payments take about 2 s more; the script gives up by itself after 80 s.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(120);

/// The limit of the `ccp-chain.js` run: about 4 s, but a JS connector may refuse the router's
/// first route control request in its connect race, and the router then asks again after 30 s
/// (twice at worst: at the start and when B comes back); the script gives up by itself after
/// 90 s.
const CCP_CHAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The limit of the `tls.js` run: the router and three JS connectors start in about a second,
/// the three payments take a second more.
const TLS_TIMEOUT: Duration = Duration::from_secs(60);

/// The limit of the `ilp-node.js` run: Redis, ilp-node and the router start in about a second,
/// and the two payments take a few more.
const ILP_NODE_TIMEOUT: Duration = Duration::from_secs(90);

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

/// Runs one script to completion (killed after `limit`) and returns its exit success and
/// everything it printed.
fn run_script(args: &[&str], limit: Duration, envs: &[(&str, &OsStr)]) -> Option<(bool, String)> {
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
        .envs(envs.iter().copied())
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
        if started.elapsed() > limit {
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
            "interop: `node {}` did not finish within {limit:?}; its output:\n{output}",
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
    assert_passes(&args, SCRIPT_TIMEOUT);
}

/// Runs a script and asserts that it exited 0 with a last line `PASS …`, which it prints.
fn assert_passes(args: &[&str], limit: Duration) {
    assert_passes_with_env(args, limit, &[]);
}

/// `assert_passes` with more environment variables for the script.
fn assert_passes_with_env(args: &[&str], limit: Duration, envs: &[(&str, &OsStr)]) {
    let Some((success, output)) = run_script(args, limit, envs) else {
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

/// JS connector A ═(ILP over HTTP, both directions)═ router (2 cores) ═(BTP, B dials)═ JS
/// connector B, STREAM payments B→A and A→B in 20 rounds, every 2nd after an idle gap of
/// about 6 s, timed so that the round's first POST to A meets A's server closing our pooled
/// keep-alive connection (Node 20 closes it 5 s + 1 s after its last answer). Each payment
/// gets one STREAM connect attempt; a failed or late one, or a T-class Reject on the way
/// (which STREAM would retry unseen), fails its round.
#[test]
fn mixed_topology_http_and_btp_20_rounds() {
    assert_passes(&["mixed-topology.js"], MIXED_TOPOLOGY_TIMEOUT);
}

/// STREAM sender → router → group `cluster` (policy `hash`) of three JS connector processes
/// that all serve `g.cluster` and dial us over BTP, each with a STREAM receiver sharing one
/// server secret: payments to 9 receiver addresses spread over at least two connectors, one
/// connector is killed (SIGKILL) between payments, and the 9 payments after it all complete
/// on the others, with no T-class Reject once a live connector answers for the dead one's
/// addresses.
#[test]
fn cluster_group_failover() {
    assert_passes(&["cluster.js"], CLUSTER_TIMEOUT);
}

/// ILDCP (RFC 31) with the JS client library that ilp-connector uses: a child of our router
/// learns `g.router.kid` and its asset; a peer that is not a child is refused.
#[test]
fn ildcp_child_learns_its_address_from_the_router() {
    assert_passes(&["ildcp.js"], SCRIPT_TIMEOUT);
}

/// JS connector A (test.a) ═(BTP, A dials)═ router ═(BTP, we dial)═ JS connector B (test.b),
/// `relation = "peer"` on both sides of both links and no static route anywhere: the router
/// learns test.a and test.b over CCP and relays each to the other side. Its `GET /routes` and
/// A's and B's own routing tables must equal what the same chain shows with a JS connector in
/// the router's place; STREAM payments A→B and B→A arrive exactly as the rates say; when B
/// stops, the router withdraws test.b (A drops it too) and a payment towards it fails F02;
/// when B comes back, the route is learned again and payments succeed.
#[test]
fn ccp_chain_routes_learned_through_the_router() {
    assert_passes(&["ccp-chain.js"], CCP_CHAIN_TIMEOUT);
}

/// STREAM sender → router → (ILP over HTTP: we POST to ilp-node's `/accounts/router/ilp`) →
/// interledger-rs `ilp-node` (its STREAM receiver), and ilp-node paying (its SPSP + STREAM
/// client) → (ILP over HTTP: it POSTs to our `[listen] http`) → router → STREAM receiver.
/// Opt-in: it runs only with `ILP_NODE_BIN` naming an `ilp-node` binary (which takes long to
/// build: see tests/interop/README.md) and needs `redis-server` on PATH; without
/// `ILP_NODE_BIN` it is skipped, under CI too.
#[test]
fn ilp_node_over_http() {
    run_ilp_node(&["ilp-node.js"]);
}

/// The same payments as `ilp_node_over_http`, over routes learned by CCP instead of static
/// ones (`ilp-node.js --routes ccp`): our router has no route to `test.irs` and ilp-node's
/// account `router` no ILP address of its own; our router must learn `test.irs` from ilp-node
/// and ilp-node `test.router` from our router before the payments. Opt-in like
/// `ilp_node_over_http`: it runs only with `ILP_NODE_BIN` set (and `redis-server` on PATH).
#[test]
fn ilp_node_route_exchange() {
    run_ilp_node(&["ilp-node.js", "--routes", "ccp"]);
}

/// Runs an `ilp-node.js` script with `ILP_NODE_BIN`, or skips (under CI too) without it;
/// `redis-server` must be on PATH (or named by `REDIS_SERVER`).
fn run_ilp_node(args: &[&str]) {
    let Some(bin) = std::env::var_os("ILP_NODE_BIN") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ilp-node interop: set ILP_NODE_BIN (see tests/interop/README.md)"
        );
        return;
    };
    // The script runs in tests/interop: a relative path is taken from here.
    let bin = std::fs::canonicalize(&bin)
        .unwrap_or_else(|e| panic!("ILP_NODE_BIN={}: {e}", Path::new(&bin).display()));
    let redis = std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
    match Command::new(&redis).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "ilp-node interop: `{} --version` failed ({other:?}): install redis-server \
             (apt-get install redis-server) or set REDIS_SERVER",
            Path::new(&redis).display()
        ),
    }
    assert_passes_with_env(args, ILP_NODE_TIMEOUT, &[("ILP_NODE_BIN", bin.as_os_str())]);
}

/// JS connector A ═(ILP over HTTP over TLS: A POSTs to our `http_tls`, we POST to A's https
/// server)═ router ═(BTP over `wss://`: B dials our `btp_tls`)═ JS connector B, and router
/// ═(BTP over `wss://`: we dial C's wss server)═ JS connector C, our router on TLS listeners
/// only, with `[tls] ca_file` the test CA for what it dials; STREAM payments A→B, B→C, C→A,
/// each crossing two TLS links, checked per packet as the rates say. Every TLS connection the
/// JS side opened to the router must have verified the router's certificate, the router's
/// `ilp_tls_handshakes_total{result="ok"}` must count exactly those, and a plaintext
/// `ws://` and `http://` request to the TLS ports must fail (counted as failed handshakes).
/// The certificates (a CA, the router's and the JS servers' for `localhost` and 127.0.0.1)
/// are made here with rcgen, nothing downloaded; Node trusts the CA via
/// `NODE_EXTRA_CA_CERTS`.
#[test]
fn stream_through_js_connectors_and_router_over_tls() {
    // INTEROP_TLS_CERTS=<dir>: write the certificates there (over files of the same names)
    // and keep them, to run `tls.js` by hand (see tests/interop/README.md).
    let keep = std::env::var_os("INTEROP_TLS_CERTS").map(PathBuf::from);
    let dir = match &keep {
        Some(dir) => dir.clone(),
        None => {
            let dir =
                std::env::temp_dir().join(format!("ilp-router-interop-tls-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            dir
        }
    };
    std::fs::create_dir_all(&dir).expect("create the certificates' directory");
    let _cleanup = RemoveOnDrop(keep.is_none().then(|| dir.clone()));
    // The script runs in tests/interop: a relative path is taken from here.
    let dir = std::fs::canonicalize(&dir).expect("the certificates' directory");
    let ca = Ca::new("ilp-router interop test CA");
    let ca_file = ca.write(&dir, "ca");
    // Our router's certificate and the one the JS connectors' TLS servers present: both for
    // `localhost` and 127.0.0.1, signed by the CA.
    ca.server(&dir, "router");
    ca.server(&dir, "js");
    if keep.is_some() {
        eprintln!(
            "certificates in {}: ca.pem, router.pem/.key, js.pem/.key",
            dir.display()
        );
    }
    assert_passes_with_env(
        &["tls.js"],
        TLS_TIMEOUT,
        &[
            ("INTEROP_TLS_CERTS", dir.as_os_str()),
            ("NODE_EXTRA_CA_CERTS", ca_file.as_os_str()),
        ],
    );
}

/// Removes a directory when dropped, if there is one.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
