//! `ilp-loadgen` fronting a connector cluster: the built router routes `g.router.cluster` to
//! a group of four backends (`bob1` … `bob4`), all played by one `ilp-loadgen --sinks 4`, on
//! loopback, a few seconds each. Every sink gets a share and the sinks' counts add up to the
//! sender's; a sink taken down (`--sink-down-at`) gets nothing while it is down and traffic
//! again once it is back (`--sink-up-at`), over BTP and over HTTP, while the others keep
//! fulfilling. Nothing here asserts on a timing figure: only on counts, and on which seconds
//! of the per-sink timelines fall inside a down interval.

mod common;

use common::io_uring_missing;

use common::{free_port, loadgen, router_binary, wait_for_port, Killed};
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SINKS: usize = 4;

/// `count` consecutive ports free now, for the HTTP sinks (`--sink-listen` numbers them).
/// Taken below Linux's ephemeral range (32768 and up): there `free_port` and the outgoing
/// connections of the tests running beside this one cannot take them meanwhile, and the
/// router redialling a sink that is down cannot connect to itself (a TCP self-connect, when
/// the port it dials from happens to be the one it dials).
fn free_ports(count: u16) -> u16 {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    for attempt in 0..100u32 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(7919)) % 12_000) as u16;
        let held: Vec<TcpListener> = (base..base + count)
            .filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(count) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// A scratch directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("ilp-loadgen-cluster-{}-{name}", std::process::id()));
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

/// How the router reaches the backends.
enum Backends {
    /// They dial the router's BTP listener.
    Btp,
    /// The router dials backend i at `127.0.0.1:{base + i - 1}`.
    Http { base: u16 },
}

/// alice, `bob1` … `bob4` and the group `cluster` behind `g.router.cluster`. An ejection lasts
/// 200 ms (the default 5 s would outlast these runs) and the router redials a backend soon.
fn router_config(listen: &str, backends: &Backends) -> String {
    let mut config = format!(
        r#"
ilp_address = "g.router"
[listen]
{listen}
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "18446744073709551615"
"#
    );
    for i in 1..=SINKS {
        config.push_str(&format!(
            r#"[[peers]]
name = "bob{i}"
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
"#
        ));
        match backends {
            Backends::Btp => config.push_str(&format!("auth_tokens = [\"bob{i}-secret\"]\n")),
            Backends::Http { base } => config.push_str(&format!(
                "http_url = \"http://127.0.0.1:{}/ilp\"\noutgoing_token = \"bob{i}-secret\"\n",
                usize::from(*base) + i - 1
            )),
        }
    }
    config.push_str(
        r#"[[groups]]
name = "cluster"
peers = ["bob1", "bob2", "bob3", "bob4"]
policy = "hash"
ejection_base_ms = 200
ejection_max_ms = 200
[[routes]]
prefix = "g.router.cluster"
group = "cluster"
[rates]
USD = "1"
[limits]
reconnect_min_ms = 20
reconnect_max_ms = 100
"#,
    );
    config
}

/// Starts the router on `config`, with its balances kept in `dir/state` (the router must
/// take the config: groups are part of it). `Option` for the callers' `let … else`.
fn start_router(dir: &Dir, config: &str, port: u16, _test: &str) -> Option<Killed> {
    let path = dir.path("router.toml");
    std::fs::write(&path, config).unwrap();
    let check = Command::new(router_binary())
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the router refused the test config: {}",
        String::from_utf8_lossy(&check.stderr).trim()
    );
    let router = Killed(
        Command::new(router_binary())
            .args(["run", "--config", path.to_str().unwrap()])
            .args(["--cores", "1", "--log-level", "warn"])
            .args(["--state-dir", dir.path("state").to_str().unwrap()])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "the router");
    Some(router)
}

/// The posted balance of each peer (`ilp-router balances`), by name.
fn balances(dir: &Dir) -> std::collections::HashMap<String, i128> {
    let out = Command::new(router_binary())
        .args([
            "balances",
            "--state-dir",
            dir.path("state").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let posted = p["posted"].as_str().unwrap().parse().unwrap();
            (p["name"].as_str().unwrap().to_owned(), posted)
        })
        .collect()
}

/// After a run with sink 2 taken down and back (amount 1 per Prepare): the router's balances
/// are exact. alice owes what the sender was fulfilled; each backend is owed exactly what
/// its sink fulfilled, except bob2, whose sink also counted Fulfills it queued just before it
/// dropped its connections (those never reached the router: at most `in_flight_max` of
/// them, each answered T01 to the sender, never paid).
fn check_balances(dir: &Dir, report: &Value, in_flight_max: u64, bound_t01: bool) {
    let balances = balances(dir);
    let fulfilled = u(&report["fulfilled"]);
    assert_eq!(balances["alice"], i128::from(fulfilled), "{balances:?}");
    let sinks = report["sinks"].as_array().unwrap();
    let mut owed = 0;
    for (i, s) in sinks.iter().enumerate() {
        let name = format!("bob{}", i + 1);
        let router = -balances[&name];
        let sink = i128::from(u(&s["fulfilled"]));
        owed += router;
        if i == 1 {
            assert!(
                router <= sink && sink - router <= i128::from(in_flight_max),
                "{name}: router {router}, sink {sink}"
            );
        } else {
            assert_eq!(router, sink, "{name}");
        }
    }
    assert_eq!(owed, i128::from(fulfilled), "{balances:?}");
    if bound_t01 {
        let t01 = report["rejected"]["T01"].as_u64().unwrap_or(0);
        assert!(t01 <= in_flight_max, "{t01} T01s: more than were in flight");
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
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ilp-loadgen {args:?} did not end within 40 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "ilp-loadgen {args:?} failed: {stderr}");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

fn per_second(sink: &Value) -> Vec<u64> {
    sink["fulfilled_per_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect()
}

#[test]
fn four_sinks_share_a_group_and_their_counts_add_up() {
    let test = "four_sinks_share_a_group_and_their_counts_add_up";
    if io_uring_missing(test) {
        return;
    }
    let dir = Dir::new("share");
    let port = free_port();
    let listen = format!("btp = \"127.0.0.1:{port}\"");
    let Some(_router) = start_router(&dir, &router_config(&listen, &Backends::Btp), port, test)
    else {
        return;
    };
    let url = format!("ws://127.0.0.1:{port}");
    let report = run_loadgen(
        &[
            "--router",
            &url,
            "--sinks",
            "4",
            "--destinations",
            "1000",
            "--destination",
            "g.router.cluster",
            "--duration",
            "2s",
            "--connections",
            "1",
            "--window",
            "64",
        ],
        &dir.path("share.json"),
    );
    let sinks = report["sinks"].as_array().unwrap();
    let names: Vec<&str> = sinks.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bob1", "bob2", "bob3", "bob4"], "{report}");
    let fulfilled = u(&report["fulfilled"]);
    assert!(fulfilled > 400, "{report}");
    assert_eq!(report["rejected"], serde_json::json!({}), "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let seconds = report["timeline"].as_array().unwrap().len();
    for s in sinks {
        // A quarter would be fair; a tenth is plenty to show every sink had a share.
        assert!(
            u(&s["fulfilled"]) > fulfilled / 10,
            "{}: {report}",
            s["name"]
        );
        assert_eq!(u(&s["received"]), u(&s["fulfilled"]), "{report}");
        assert_eq!(per_second(s).len(), seconds, "{report}");
        assert_eq!(per_second(s).iter().sum::<u64>(), u(&s["fulfilled"]));
        assert_eq!(s["down"], serde_json::json!([]));
    }
    let by_sinks: u64 = sinks.iter().map(|s| u(&s["fulfilled"])).sum();
    assert_eq!(by_sinks, fulfilled, "{report}");
    let received: u64 = sinks.iter().map(|s| u(&s["received"])).sum();
    assert_eq!(received, u(&report["sink_received"]), "{report}");
}

/// Checks a run in which sink 2 was told to go down 1 s after the send clock started and to
/// come back at 4 s: nothing reached it in a second wholly inside the interval it was really
/// down (as the report says: a busy thread applies a change late) while the others kept
/// fulfilling, and it fulfilled again after it came back.
fn check_down_and_back(report: &Value) {
    assert_eq!(report["ended_early"], false, "{report}");
    let sinks = report["sinks"].as_array().unwrap();
    let down = sinks[1]["down"].as_array().unwrap();
    assert_eq!(down.len(), 1, "{report}");
    let from = down[0]["from_s"].as_f64().unwrap();
    let until = down[0]["until_s"].as_f64().unwrap();
    assert!(until > from + 1.5, "{report}");
    let bob2 = per_second(&sinks[1]);
    let totals: Vec<u64> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| u(&row["fulfilled"]))
        .collect();
    // Second k is [k, k + 1) of the run's clock.
    let inside: Vec<usize> = (0..bob2.len())
        .filter(|&k| k as f64 >= from && (k + 1) as f64 <= until)
        .collect();
    assert!(
        !inside.is_empty(),
        "a whole second inside {from}..{until}: {report}"
    );
    for &k in &inside {
        assert_eq!(
            bob2[k], 0,
            "bob2 fulfilled in second {k} while down: {report}"
        );
        assert!(totals[k] > 0, "nothing fulfilled in second {k}: {report}");
        for (i, s) in sinks.iter().enumerate().filter(|&(i, _)| i != 1) {
            assert!(per_second(s)[k] > 0, "sink {} idle in second {k}", i + 1);
        }
    }
    let before: u64 = bob2[..from as usize].iter().sum();
    let after: u64 = bob2[until as usize..].iter().sum();
    assert!(before > 0, "bob2 had a share before it went down: {report}");
    assert!(after > 0, "bob2 got traffic again once back: {report}");
    for (i, s) in sinks.iter().enumerate() {
        assert!(u(&s["fulfilled"]) > 0, "sink {}: {report}", i + 1);
    }
}

#[test]
fn a_btp_sink_taken_down_gets_nothing_until_it_is_back() {
    btp_sink_down_and_back(
        "a_btp_sink_taken_down_gets_nothing_until_it_is_back",
        "glommio",
    );
}

#[test]
fn a_btp_sink_on_the_load_threads_own_ring_taken_down_gets_nothing_until_it_is_back() {
    // `--io ring`: the dropped link leaves the thread's ring (its poll cancelled, its socket
    // closed) and the one dialled again joins it.
    btp_sink_down_and_back(
        "a_btp_sink_on_the_load_threads_own_ring_taken_down_gets_nothing_until_it_is_back",
        "ring",
    );
}

fn btp_sink_down_and_back(test: &str, io: &str) {
    if io_uring_missing(test) {
        return;
    }
    let dir = Dir::new(&format!("btp-down-{io}"));
    let port = free_port();
    let listen = format!("btp = \"127.0.0.1:{port}\"");
    let Some(_router) = start_router(&dir, &router_config(&listen, &Backends::Btp), port, test)
    else {
        return;
    };
    let url = format!("ws://127.0.0.1:{port}");
    let report = run_loadgen(
        &[
            "--router",
            &url,
            "--sinks",
            "4",
            "--destinations",
            "1000",
            "--destination",
            "g.router.cluster",
            "--duration",
            "6s",
            "--connections",
            "1",
            "--window",
            "32",
            "--io",
            io,
            "--sink-down-at",
            "1s:2",
            "--sink-up-at",
            "4s:2",
        ],
        &dir.path("btp-down.json"),
    );
    check_down_and_back(&report);
    // What the router could not deliver while bob2's link was going away is T01, nothing else.
    let rejected = report["rejected"].as_object().unwrap();
    assert!(rejected.keys().all(|code| code == "T01"), "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    // One sender connection with a window of 32: at most 32 were in flight to bob2.
    check_balances(&dir, &report, 32, true);
}

#[test]
fn an_http_sink_taken_down_gets_nothing_until_it_is_back() {
    let test = "an_http_sink_taken_down_gets_nothing_until_it_is_back";
    if io_uring_missing(test) {
        return;
    }
    let dir = Dir::new("http-down");
    let port = free_port();
    let base = free_ports(SINKS as u16);
    let listen = format!("http = \"127.0.0.1:{port}\"");
    let config = router_config(&listen, &Backends::Http { base });
    let Some(_router) = start_router(&dir, &config, port, test) else {
        return;
    };
    let url = format!("http://127.0.0.1:{port}/");
    let sink_listen = format!("127.0.0.1:{base}");
    let report = run_loadgen(
        &[
            "--transport",
            "http",
            "--router",
            &url,
            "--sink-listen",
            &sink_listen,
            "--sinks",
            "4",
            "--destinations",
            "1000",
            "--destination",
            "g.router.cluster",
            "--duration",
            "6s",
            "--connections",
            "2",
            "--window",
            "8",
            "--sink-down-at",
            "1s:2",
            "--sink-up-at",
            "4s:2",
        ],
        &dir.path("http-down.json"),
    );
    check_down_and_back(&report);
    // Over HTTP the router may try a backend before it listens (T01), never anything else.
    let rejected = report["rejected"].as_object().unwrap();
    assert!(rejected.keys().all(|code| code == "T01"), "{report}");
    // Two connections with a window of 8 each: at most 16 in flight to bob2.
    check_balances(&dir, &report, 16, false);
}

#[test]
fn bad_fault_flags_are_refused_naming_the_flag() {
    for (args, want) in [
        (
            &["--sinks", "4", "--sink-down-at", "5s:9"][..],
            "--sink-down-at 5s:9",
        ),
        (
            &["--sinks", "2", "--sink-up-at", "3s:2"][..],
            "--sink-up-at 3s:2",
        ),
        (
            &[
                "--sinks",
                "2",
                "--sink-down-at",
                "4s:1",
                "--sink-up-at",
                "2s:1",
            ][..],
            "--sink-up-at 2s:1",
        ),
        (
            &["--sinks", "2", "--sink-down-at", "20s:1"][..],
            "--sink-down-at 20s:1",
        ),
        (&["--sinks", "2", "--direct"][..], "--direct"),
        (&["--sinks", "300"][..], "--sinks 300"),
        (&["--sink-down-at", "soon"][..], "--sink-down-at"),
    ] {
        let output = Command::new(loadgen())
            .args(["--duration", "10s"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
