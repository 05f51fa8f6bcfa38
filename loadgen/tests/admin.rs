//! The router's admin API against real traffic from `ilp-loadgen`, on loopback: the metrics
//! equal the load generator's counts exactly, `promtool check metrics` accepts them, a real
//! `prometheus` server scrapes them and its query API returns the fulfilled count, the JSON
//! endpoints answer (and refuse without the token), and a drained peer takes nothing new.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package, which `.ci/run`
//! installs: without them these checks print `SKIPPED …` and pass, except under CI (`CI`
//! set), where a missing one is a failure.

mod common;

use common::{free_port, loadgen, router_binary, wait_for_port, Killed};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-test-token";

/// A tool from the `prometheus` package, or `None` (skipped outside CI).
fn tool(name: &str) -> Option<PathBuf> {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (found, std::env::var_os("CI").is_some()) {
        (true, _) => Some(PathBuf::from(name)),
        (false, true) => {
            panic!("{name} is missing under CI: .ci/run installs the prometheus package")
        }
        (false, false) => {
            eprintln!(
                "SKIPPED {name} checks: {name} is not installed (apt-get install prometheus)"
            );
            None
        }
    }
}

struct Router {
    child: Killed,
    btp: u16,
    admin: u16,
    dir: PathBuf,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Router {
    /// `tuning/router.toml` with an admin listener and a token, on free ports.
    fn start(name: &str) -> Router {
        Router::start_with(name, "")
    }

    /// The same, with `extra` (more peers, routes) appended to the config.
    fn start_with(name: &str, extra: &str) -> Router {
        let btp = free_port();
        let admin = free_port();
        let dir = std::env::temp_dir().join(format!("ilp-admin-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tuning/router.toml"
        ))
        .unwrap()
        .replace("127.0.0.1:7768", &format!("127.0.0.1:{btp}"))
            + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"{TOKEN}\"\n")
            + &format!("\n[state]\ndir = \"{}\"\n", dir.join("state").display())
            + extra;
        std::fs::write(dir.join("router.toml"), config).unwrap();
        let child = Router::spawn(&dir);
        wait_for_port(btp, "the router");
        wait_for_port(admin, "the admin API");
        Router {
            child,
            btp,
            admin,
            dir,
        }
    }

    fn spawn(dir: &std::path::Path) -> Killed {
        let child = Command::new(router_binary())
            .args(["run", "--config", dir.join("router.toml").to_str().unwrap()])
            .args(["--cores", "1", "--log-level", "warn"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Killed(child)
    }

    /// Kills the router (SIGKILL) and starts it again on the same config and state.
    fn crash_and_restart(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        self.child = Router::spawn(&self.dir);
        wait_for_port(self.btp, "the router");
        wait_for_port(self.admin, "the admin API");
    }

    /// Runs the load generator closed loop for `duration` and returns its JSON report.
    fn load(&self, duration: &str) -> Value {
        self.load_as(duration, "both")
    }

    /// The same, playing `role` (`both`, `send`).
    fn load_as(&self, duration: &str, role: &str) -> Value {
        let json = self.dir.join("report.json");
        let url = format!("ws://127.0.0.1:{}", self.btp);
        let status = Command::new(loadgen())
            .args([
                "--router",
                &url,
                "--duration",
                duration,
                "--connections",
                "1",
            ])
            .args(["--role", role])
            .args([
                "--window",
                "16",
                "--amount",
                "3",
                "--json",
                json.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
    }

    /// A sink-only load generator (bob), running until it is closed or killed.
    fn sink(&self) -> Killed {
        let url = format!("ws://127.0.0.1:{}", self.btp);
        Killed(
            Command::new(loadgen())
                .args(["--router", &url, "--role", "sink", "--duration", "60s"])
                .args(["--connections", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

/// bob's entry in `GET /peers`.
fn bob(router: &Router) -> Value {
    let (_, peers) = request(router.admin, "GET", "/peers", Some(TOKEN));
    let peers: Value = serde_json::from_str(&peers).unwrap();
    peers["peers"][1].clone()
}

/// Waits (bounded) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request to the admin API: (status, body).
fn request(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    request_with(port, method, path, token, "")
}

/// One request with a body.
fn request_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The value of the sample `series` (name and labels exactly as written) in `metrics`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_equal_the_load_generators_counts_and_promtool_accepts_them() {
    let router = Router::start("metrics");
    let report = router.load("1s");
    let fulfilled = report["fulfilled"].as_u64().unwrap();
    assert!(fulfilled > 0, "{report}");
    let (status, metrics) = request(router.admin, "GET", "/metrics", None);
    assert_eq!(status, 200, "{metrics}");
    let count = |s: &str| sample(&metrics, s) as u64;
    assert_eq!(
        count(r#"ilp_fulfills_total{peer="alice",direction="incoming"}"#),
        fulfilled
    );
    assert_eq!(
        count(r#"ilp_fulfills_total{peer="bob",direction="outgoing"}"#),
        fulfilled
    );
    assert_eq!(
        count(r#"ilp_prepares_total{peer="alice",direction="incoming"}"#),
        fulfilled
    );
    assert_eq!(
        count(r#"ilp_amount_total{peer="alice",direction="incoming"}"#),
        3 * fulfilled
    );
    assert_eq!(
        count(r#"ilp_amount_total{peer="bob",direction="outgoing"}"#),
        3 * fulfilled
    );
    assert_eq!(count(r#"ilp_balance{peer="alice"}"#), 3 * fulfilled);
    assert_eq!(
        sample(&metrics, r#"ilp_balance{peer="bob"}"#),
        -3.0 * fulfilled as f64
    );
    assert_eq!(
        count(r#"ilp_in_flight{peer="alice",direction="incoming"}"#),
        0
    );
    assert_eq!(
        count(r#"ilp_round_trip_seconds_count{peer="bob"}"#),
        fulfilled
    );
    assert_eq!(
        count(r#"ilp_link_up{peer="bob"}"#),
        0,
        "the sink left with the run"
    );
    assert!(
        !metrics.contains("g.router"),
        "no ILP address is ever a label"
    );
    assert!(
        metrics.contains("ilp_core_busy_seconds_total{core=\"0\"}"),
        "{metrics}"
    );
    // The ring driver spins (`spin_us`, 50 µs by default) after every batch before it parks:
    // some of the core's CPU time was idle spin, and never more than all of it.
    let busy = sample(&metrics, r#"ilp_core_busy_seconds_total{core="0"}"#);
    let idle = sample(&metrics, r#"ilp_core_spin_idle_seconds_total{core="0"}"#);
    assert!(idle > 0.0 && idle <= busy, "idle spin {idle} s of {busy} s");
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_real_prometheus_scrapes_the_fulfilled_count() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let router = Router::start("scrape");
    let report = router.load("1s");
    let fulfilled = report["fulfilled"].as_u64().unwrap();
    let web = free_port();
    let config = router.dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ilp-router\n    \
             static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            router.admin
        ),
    )
    .unwrap();
    let _server = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                router.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(web, "prometheus");
    let query =
        "/api/v1/query?query=ilp_fulfills_total%7Bpeer%3D%22bob%22%2Cdirection%3D%22outgoing%22%7D";
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let (status, body) = request(web, "GET", query, None);
        if status == 200 {
            let json: Value = serde_json::from_str(&body).unwrap();
            if let Some(value) = json["data"]["result"][0]["value"][1].as_str() {
                break value.parse::<u64>().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "prometheus never had the sample");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(seen, fulfilled);
}

#[test]
fn the_json_endpoints_answer_with_the_token_and_refuse_without() {
    let router = Router::start("json");
    let (status, _) = request(router.admin, "GET", "/health", None);
    assert_eq!(status, 200);
    assert_eq!(request(router.admin, "GET", "/peers", None).0, 401);
    assert_eq!(request(router.admin, "GET", "/peers", Some("wrong")).0, 401);
    let get = |path: &str| {
        let (status, body) = request(router.admin, "GET", path, Some(TOKEN));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    assert_eq!(get("/ready")["ready"], true);
    let peers = get("/peers");
    assert_eq!(peers["peers"][0]["name"], "alice");
    assert_eq!(peers["peers"][1]["asset_code"], "USD");
    let routes = get("/routes");
    assert!(routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["peer"] == "bob"));
    let explain = get("/routes/explain?destination=g.router.bob.wallet");
    assert_eq!(explain["peer"], "bob");
    assert_eq!(explain["prefix"], "g.router.bob");
    let config = get("/config");
    assert!(
        !config.to_string().contains("alice-secret"),
        "secrets redacted"
    );
    assert!(!config.to_string().contains(TOKEN), "secrets redacted");
    assert_eq!(request(router.admin, "GET", "/nothing", Some(TOKEN)).0, 404);
    // The same through `ilp-router admin`, with the config or with --url and --token.
    let cli = |args: &[&str]| {
        Command::new(router_binary())
            .arg("admin")
            .args(args)
            .output()
            .unwrap()
    };
    let config = router.dir.join("router.toml");
    let out = cli(&["--config", config.to_str().unwrap(), "peers"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peers: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(peers["peers"][1]["name"], "bob");
    let url = format!("127.0.0.1:{}", router.admin);
    let out = cli(&[
        "--url",
        &url,
        "--token",
        TOKEN,
        "explain",
        "g.router.alice.x",
    ]);
    let explain: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(explain["peer"], "alice");
    let out = cli(&["--url", &url, "--token", "wrong", "routes"]);
    assert!(!out.status.success(), "a refused request exits 1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    assert_eq!(
        request(router.admin, "POST", "/peers/zed/drain", Some(TOKEN)).0,
        404
    );
}

#[test]
fn a_drained_peer_takes_nothing_new_its_links_close_and_it_comes_back_when_undrained() {
    let router = Router::start("drain");
    let mut sink = router.sink();
    eventually("bob's link is up", || bob(&router)["link_up"] == true);
    let report = router.load_as("300ms", "send");
    assert!(report["fulfilled"].as_u64().unwrap() > 0, "{report}");
    let (status, body) = request(router.admin, "POST", "/peers/bob/drain", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    // Nothing is in flight: its link closes at the next tick, and the sink sees it go.
    eventually("bob's link closed", || sink.0.try_wait().unwrap().is_some());
    assert_eq!(bob(&router)["draining"], true);
    assert_eq!(bob(&router)["links_per_core"][0], 0);
    // A reconnect is refused while it is drained; Prepares to it are T01.
    let mut again = router.sink();
    eventually("the reconnect refused", || {
        again.0.try_wait().unwrap().is_some()
    });
    let report = router.load_as("300ms", "send");
    assert_eq!(report["fulfilled"], 0, "{report}");
    assert!(report["rejected"]["T01"].as_u64().unwrap() > 0, "{report}");
    let (status, _) = request(router.admin, "POST", "/peers/bob/undrain", Some(TOKEN));
    assert_eq!(status, 200);
    assert_eq!(bob(&router)["draining"], false);
    let _sink = router.sink();
    eventually("bob's link is up again", || bob(&router)["link_up"] == true);
    let report = router.load_as("300ms", "send");
    assert!(report["fulfilled"].as_u64().unwrap() > 0, "{report}");
    drop(sink);
}

#[test]
fn a_settlement_applies_once_per_key_across_a_crash_and_restart() {
    let mut router = Router::start("settle");
    let settle = |router: &Router, key: &str, amount: &str| {
        let body = format!(
            r#"{{"amount": "{amount}", "direction": "incoming", "idempotency_key": "{key}"}}"#
        );
        request_with(
            router.admin,
            "POST",
            "/peers/alice/settlements",
            Some(TOKEN),
            &body,
        )
    };
    let posted = |router: &Router| {
        let (_, peers) = request(router.admin, "GET", "/peers", Some(TOKEN));
        let peers: Value = serde_json::from_str(&peers).unwrap();
        peers["peers"][0]["posted"]
            .as_str()
            .unwrap()
            .parse::<i128>()
            .unwrap()
    };
    // Traffic first: alice owes 3 per Fulfill.
    let fulfilled = i128::from(router.load("300ms")["fulfilled"].as_u64().unwrap());
    assert_eq!(posted(&router), 3 * fulfilled);
    let (status, body) = settle(&router, "k1", "100");
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        settle(&router, "k1", "100").0,
        200,
        "a duplicate is answered, not applied"
    );
    assert_eq!(
        settle(&router, "k1", "101").0,
        409,
        "a key reused for another settlement"
    );
    assert_eq!(settle(&router, "", "1").0, 400);
    assert_eq!(settle(&router, "k2", "1.5").0, 400);
    let (status, _) = request_with(
        router.admin,
        "POST",
        "/peers/alice/settlements",
        Some(TOKEN),
        "{}",
    );
    assert_eq!(status, 400);
    eventually("applied", || posted(&router) == 3 * fulfilled - 100);
    router.crash_and_restart();
    assert_eq!(
        posted(&router),
        3 * fulfilled - 100,
        "once, after the crash too"
    );
    assert_eq!(settle(&router, "k1", "100").0, 200);
    assert_eq!(posted(&router), 3 * fulfilled - 100);
    // From a shell: we paid alice 5.
    let config = router.dir.join("router.toml");
    let out = Command::new(router_binary())
        .args([
            "admin",
            "--config",
            config.to_str().unwrap(),
            "settle",
            "alice",
        ])
        .args(["--amount", "5", "--direction", "outgoing", "--key", "k3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the shell's settlement applied", || {
        posted(&router) == 3 * fulfilled - 95
    });
    let out = Command::new(router_binary())
        .args([
            "balances",
            "--state-dir",
            router.dir.join("state").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let balances: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(balances["peers"][0]["name"], "alice");
    assert_eq!(
        balances["peers"][0]["posted"],
        (3 * fulfilled - 95).to_string()
    );
}

#[test]
fn a_reload_under_load_applies_routes_and_tokens_without_a_reject() {
    let router = Router::start("reload");
    let config_path = router.dir.join("router.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let json = router.dir.join("reload-load.json");
    let url = format!("ws://127.0.0.1:{}", router.btp);
    let load = Killed(
        Command::new(loadgen())
            .args(["--router", &url, "--duration", "3s", "--connections", "1"])
            .args(["--window", "16", "--json", json.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    // A route added, a token rotated in, a packet limit raised: all live.
    let changed = original
        .replace("[\"alice-secret\"]", "[\"alice-secret\", \"alice-next\"]")
        .replace(
            "max_packet_amount = \"1000000000\"",
            "max_packet_amount = \"2000000000\"",
        )
        + "\n[[routes]]\nprefix = \"g.router.extra\"\npeer = \"bob\"\n";
    std::fs::write(&config_path, &changed).unwrap();
    let (status, body) = request(router.admin, "POST", "/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let changes = answer["changes"].to_string();
    assert!(
        changes.contains("routes: + g.router.extra -> peer bob"),
        "{changes}"
    );
    assert!(
        changes.contains("peers.alice.auth_tokens: rotated"),
        "{changes}"
    );
    // A config that does not validate: refused, naming the key; the running one stays.
    std::fs::write(
        &config_path,
        changed.replace("relation = \"child\"", "relation = \"cousin\""),
    )
    .unwrap();
    let (status, body) = request(router.admin, "POST", "/reload", Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("peers[0].relation"), "{body}");
    // One that needs a restart (a peer's credit limit): refused whole.
    let more = changed.replace(
        "max_balance = \"1000000000000\"",
        "max_balance = \"2000000000000\"",
    );
    assert_ne!(more, changed);
    std::fs::write(&config_path, more).unwrap();
    let (status, body) = request(router.admin, "POST", "/reload", Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("need a restart"), "{body}");
    // The run saw no reject and no error.
    all_fulfilled(load, &json);
    let (_, explain) = request(
        router.admin,
        "GET",
        "/routes/explain?destination=g.router.extra.x",
        Some(TOKEN),
    );
    assert!(
        explain.contains("\"prefix\":\"g.router.extra\""),
        "{explain}"
    );
    let (_, metrics) = request(router.admin, "GET", "/metrics", None);
    assert_eq!(
        sample(&metrics, r#"ilp_reloads_total{result="applied"}"#),
        1.0
    );
    assert_eq!(
        sample(&metrics, r#"ilp_reloads_total{result="refused"}"#),
        2.0
    );
    // SIGHUP reloads too: the extra route goes away.
    std::fs::write(&config_path, &original).unwrap();
    let kill = Command::new("kill")
        .args(["-HUP", &router.child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    eventually("the SIGHUP reload applied", || {
        let (_, explain) = request(
            router.admin,
            "GET",
            "/routes/explain?destination=g.router.extra.x",
            Some(TOKEN),
        );
        explain.contains("\"route\":null")
    });
    // check-config --diff says what a reload would do.
    let out = Command::new(router_binary())
        .args(["check-config", "--diff", config_path.to_str().unwrap()])
        .arg(router.dir.join("router.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no changes");
}

/// Waits (bounded) for the load generator `load` to end, and checks its report at `json`:
/// something fulfilled, no reject, no error.
fn all_fulfilled(mut load: Killed, json: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the load generator did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    no_reject_or_error(&report);
}

/// Checks that a load generator's `report` fulfilled something with no reject and no error;
/// returns how many it fulfilled.
fn no_reject_or_error(report: &Value) -> u64 {
    let fulfilled = report["fulfilled"].as_u64().unwrap();
    assert!(fulfilled > 0, "{report}");
    assert_eq!(report["rejected"], serde_json::json!({}), "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    fulfilled
}

/// A `[[peers]]` entry like bob's, named `name` (token `<name>-secret`).
fn peer_entry(name: &str) -> String {
    format!(
        "\n[[peers]]\nname = \"{name}\"\nauth_tokens = [\"{name}-secret\"]\nrelation = \"child\"\n\
         asset_code = \"USD\"\nasset_scale = 9\nmax_balance = \"1000000000000\"\n"
    )
}

/// A peer's entry in `GET /peers`.
fn peer_json(router: &Router, name: &str) -> Value {
    let (_, peers) = request(router.admin, "GET", "/peers", Some(TOKEN));
    let peers: Value = serde_json::from_str(&peers).unwrap();
    peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {name} in {peers}"))
}

#[test]
fn a_reload_under_load_adds_a_peer_and_a_route_and_removes_another() {
    let mut router = Router::start_with("peers", &peer_entry("carol"));
    let config_path = router.dir.join("router.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let url = format!("ws://127.0.0.1:{}", router.btp);
    // Unaffected traffic, alice to bob, all through the reload.
    let json = router.dir.join("steady.json");
    let steady = Killed(
        Command::new(loadgen())
            .args(["--router", &url, "--duration", "4s", "--connections", "1"])
            .args(["--window", "16", "--json", json.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // carol is connected (a sink) when the reload removes her.
    let carol = Killed(
        Command::new(loadgen())
            .args(["--router", &url, "--role", "sink", "--duration", "60s"])
            .args(["--sink", "carol:carol-secret", "--connections", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("carol's link is up", || {
        peer_json(&router, "carol")["link_up"] == true
    });
    std::thread::sleep(Duration::from_millis(500));
    let without_carol = original.replace(&peer_entry("carol"), "");
    let changed = without_carol.clone()
        + &peer_entry("dave")
        + "\n[[routes]]\nprefix = \"g.far\"\npeer = \"dave\"\n";
    std::fs::write(&config_path, &changed).unwrap();
    let (status, body) = request(router.admin, "POST", "/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    for change in [
        "peers: + dave",
        "peers: - carol",
        "routes: + g.far -> peer dave",
    ] {
        assert!(body.contains(change), "{change}: {body}");
    }
    // carol: removed, drained, her link closed (and she cannot authenticate again).
    eventually("carol's links closed", || {
        let carol = peer_json(&router, "carol");
        carol["removed"] == true
            && carol["draining"] == true
            && carol["links_per_core"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n == 0)
    });
    drop(carol);
    // dave: a sink and a sender to the new route, while the steady load still runs.
    let dave_json = router.dir.join("dave.json");
    let status = Command::new(loadgen())
        .args(["--router", &url, "--duration", "1s", "--connections", "1"])
        .args(["--sink", "dave:dave-secret", "--destination", "g.far.dave"])
        .args(["--window", "16", "--amount", "3"])
        .args(["--json", dave_json.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let dave: Value = serde_json::from_str(&std::fs::read_to_string(&dave_json).unwrap()).unwrap();
    let paid = no_reject_or_error(&dave);
    // The unaffected traffic saw no reject and no error.
    all_fulfilled(steady, &json);
    // dave's metrics and balance are exact: every Prepare to him was fulfilled, 3 each.
    let (_, metrics) = request(router.admin, "GET", "/metrics", None);
    assert_eq!(
        sample(
            &metrics,
            r#"ilp_fulfills_total{peer="dave",direction="outgoing"}"#
        ),
        paid as f64
    );
    let owed = -3 * paid as i128;
    assert_eq!(peer_json(&router, "dave")["posted"], owed.to_string());
    // A crash: dave's balance was in a row named while running, and survives it.
    router.crash_and_restart();
    assert_eq!(peer_json(&router, "dave")["posted"], owed.to_string());
    let (_, peers) = request(router.admin, "GET", "/peers", Some(TOKEN));
    assert!(!peers.contains("\"carol\""), "{peers}");
}
