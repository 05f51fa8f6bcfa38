//! The open loop's own timing, on loopback with `--direct`: every open-loop run reports the
//! sender's send lateness (handed to the socket minus intended time) beside its latency, over
//! BTP and over HTTP; a closed-loop run has no intended times and reports none; every thread
//! of a run keeps to its `--cpu-list` (none wakes on a CPU being measured); a `--relay-cpu`
//! run crosses the relay and reports its CPU apart from the harness's. Nothing here
//! asserts on performance: the bounds only catch a field that is missing or nonsense.

mod common;

use common::io_uring_missing;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch file, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!(
            "ilp-loadgen-pacing-{}-{name}.json",
            std::process::id()
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs ilp-loadgen to the end (bounded) and returns its JSON report and its stdout.
fn run_loadgen(args: &[&str], json: &Path) -> (Value, String) {
    let child = Command::new(common::loadgen())
        .args(args)
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed = common::Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = killed.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ilp-loadgen {args:?} did not end within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    std::io::Read::read_to_string(killed.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    std::io::Read::read_to_string(killed.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "ilp-loadgen {args:?} failed: {stderr}");
    let report = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (report, stdout)
}

/// An open-loop `--direct` run reports a sane `send_lateness_us`, and the text summary says it.
fn open_loop_reports_send_lateness(transport: &str, io: &str) {
    let json = Scratch::new(&format!("{transport}-{io}"));
    let (report, stdout) = run_loadgen(
        &[
            "--direct",
            "--transport",
            transport,
            "--io",
            io,
            "--rate",
            "2000",
            "--duration",
            "1s",
            "--connections",
            "2",
        ],
        &json.0,
    );
    assert_eq!(report["config"]["mode"], "open-loop");
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 100, "{report}");
    assert_eq!(report["fulfilled"], report["sent"], "{report}");
    let late = &report["send_lateness_us"];
    let (p50, p99, max) = (
        late["p50"].as_f64().unwrap(),
        late["p99"].as_f64().unwrap(),
        late["max"].as_f64().unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{late}");
    // Generous: a Prepare is meant to go within microseconds of its time; a median a quarter
    // of a second late would be a sender that does not pace at all.
    assert!(p50 < 250_000.0, "{late}");
    let counted = late["count"].as_u64().unwrap();
    assert!(counted > 0 && counted <= sent, "{late} of {sent} sent");
    assert!(stdout.contains("send lateness µs"), "{stdout}");
}

#[test]
fn an_open_loop_run_over_btp_reports_its_send_lateness() {
    if io_uring_missing("an_open_loop_run_over_btp_reports_its_send_lateness") {
        return;
    }
    open_loop_reports_send_lateness("btp", "glommio");
}

#[test]
fn an_open_loop_run_on_the_load_threads_own_ring_answers_all_and_reports_its_lateness() {
    if io_uring_missing(
        "an_open_loop_run_on_the_load_threads_own_ring_answers_all_and_reports_its_lateness",
    ) {
        return;
    }
    // `--io ring`: the sender and the sink it dials are read through the thread's ring and
    // written with `send` at once (src/hot.rs); the pacer's schedule is kept by the ring's
    // driver while it spins.
    open_loop_reports_send_lateness("btp", "ring");
}

#[test]
fn an_open_loop_run_over_http_reports_its_send_lateness() {
    if io_uring_missing("an_open_loop_run_over_http_reports_its_send_lateness") {
        return;
    }
    // `--io ring` applies to BTP only: HTTP keeps glommio's sockets.
    open_loop_reports_send_lateness("http", "ring");
}

#[test]
fn a_closed_loop_run_has_no_send_lateness() {
    if io_uring_missing("a_closed_loop_run_has_no_send_lateness") {
        return;
    }
    let json = Scratch::new("closed");
    let (report, stdout) = run_loadgen(
        &["--direct", "--duration", "500ms", "--connections", "1"],
        &json.0,
    );
    assert_eq!(report["config"]["mode"], "closed-loop");
    assert!(report["fulfilled"].as_u64().unwrap() > 0, "{report}");
    assert!(report.get("send_lateness_us").is_none(), "{report}");
    assert!(
        stdout.contains("closed loop: no intended send times"),
        "{stdout}"
    );
    // Every run reports the harness's own CPU per round trip (what the router is held to).
    let own = report["loadgen_cpu_us_per_packet"].as_f64().unwrap();
    assert!(own > 0.0, "{report}");
    assert!(stdout.contains("ilp-loadgen CPU"), "{stdout}");
}

#[test]
fn every_thread_of_a_run_keeps_to_its_cpu_list() {
    if io_uring_missing("every_thread_of_a_run_keeps_to_its_cpu_list") {
        return;
    }
    // The supervising thread wakes every 20 ms; outside `--cpu-list` it would take a CPU
    // from what is measured (a router's core), so it keeps to the load threads' CPUs too.
    let json = Scratch::new("cpu-list");
    let child = Command::new(common::loadgen())
        .args([
            "--direct",
            "--duration",
            "1500ms",
            "--rate",
            "1000",
            "--cpu-list",
            "0",
        ])
        .args(["--json", json.0.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut killed = common::Killed(child);
    let pid = killed.0.id();
    let allowed = |task: &std::fs::DirEntry| -> String {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    // Past the connect and into the run (it lasts 1.5 s).
    std::thread::sleep(Duration::from_millis(700));
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the run is still going")
        .filter_map(|t| t.ok())
        .collect();
    assert!(tasks.len() >= 2, "a main thread and a load thread");
    for task in &tasks {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        assert_eq!(allowed(task), "0", "thread {} ({})", comm.trim(), pid);
    }
    let status = killed.0.wait().unwrap();
    assert!(status.success());
}

#[test]
fn a_direct_run_through_the_relay_answers_all_and_reports_the_relays_cpu() {
    if io_uring_missing("a_direct_run_through_the_relay_answers_all_and_reports_the_relays_cpu") {
        return;
    }
    // `--relay-cpu`: a thread on a CPU of its own copies the bytes between the sender and
    // the sink (src/relay.rs); every Prepare crosses it and comes back fulfilled, and the
    // report has its CPU (busy a part of it: it spins). No bound on how much: the tests of
    // this file run at once, on the same CPUs.
    let cpus = ilp_router::shard::allowed_cpus();
    assert!(
        cpus.len() >= 2,
        "this test needs two CPUs (the load thread's and the relay's); allowed: {cpus:?}"
    );
    let (load, relay) = (cpus[0].to_string(), cpus[1].to_string());
    let json = Scratch::new("relay");
    let (report, stdout) = run_loadgen(
        &[
            "--direct",
            "--io",
            "ring",
            "--rate",
            "2000",
            "--duration",
            "1s",
            "--connections",
            "1",
            "--cpu-list",
            &load,
            "--relay-cpu",
            &relay,
        ],
        &json.0,
    );
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    assert_eq!(report["fulfilled"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["config"]["relay_cpu"].as_u64(), Some(cpus[1] as u64));
    let cpu = report["relay_cpu_s"].as_f64().unwrap();
    let busy = report["relay_busy_cpu_s"].as_f64().unwrap();
    assert!(
        busy > 0.0 && busy <= cpu,
        "relay CPU {cpu} s, busy {busy} s"
    );
    let own = report["loadgen_cpu_s"].as_f64().unwrap();
    assert!(
        own >= 0.0,
        "the harness's own CPU, the relay's taken out: {own} s"
    );
    assert!(stdout.contains("relay CPU"), "{stdout}");
}

#[test]
fn the_relay_refuses_a_cpu_of_the_load_threads_and_needs_direct() {
    let cpu = ilp_router::shard::allowed_cpus()[0].to_string();
    let run = |args: &[&str]| {
        let out = Command::new(common::loadgen())
            .args(args)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--direct", "--cpu-list", &cpu, "--relay-cpu", &cpu]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("a CPU of its own"), "{stderr}");
    let (code, stderr) = run(&["--relay-cpu", &cpu]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--direct"), "{stderr}");
}
