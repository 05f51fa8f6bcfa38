//! The run, from the main thread: validate the command line, start one pinned executor per
//! CPU (`worker::thread_main`), start the clock when every thread has connected, print the
//! progress line while the run lasts, stop, join the threads and merge their counters, then
//! write the summary and the reports. Exit status: 0 when every thread ran, 1 when one
//! failed (to connect, or on the way); an `Err` (a bad command line, an executor that cannot
//! start, a report that cannot be written) is printed by `main`, with status 2.

use crate::cli::Cli;
use crate::pacer;
use crate::relay;
use crate::report;
use crate::sinks;
use crate::stats::Stats;
use crate::summary;
use crate::worker::{thread_main, Common};
use glommio::{LocalExecutorBuilder, Placement};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far ahead of now the send clock starts.
const SEND_LEAD: Duration = Duration::from_millis(2);

/// CPU time of all threads of `pid`, in seconds (from /proc, nanosecond resolution).
fn process_cpu_s(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns: u64 = 0;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(ns as f64 / 1e9)
}

/// Keeps this (the supervising) thread on the load threads' CPUs: it wakes every 20 ms, and
/// anywhere else its wake-ups would take the CPU from what is measured (a router's core
/// spinning on the other CPUs, seen preempted by it in a sched_switch trace). Best effort:
/// the run goes on where the kernel refuses.
fn keep_to(cpus: &[usize]) {
    if let Err(e) = ilp_router::shard::keep_thread_to(cpus) {
        eprintln!("ilp-loadgen: could not keep its main thread on CPUs {cpus:?}: {e}");
    }
}

/// Runs the load the command line asks for; `Err` is a message for status 2.
pub(crate) fn run(cli: Cli) -> Result<ExitCode, String> {
    let validated = cli.validate()?;
    let cpus = validated.cpus;
    let specs = validated.specs;
    let threads = specs.len();
    let plays_sinks = specs.iter().any(|s| s.sinks > 0);
    // An idle executor spins this long before it parks: open loop, at least as long as the
    // pacer spins before each send (see `pacer`).
    let spin = if validated.shared.rate_per_conn.is_some() {
        pacer::executor_spin(validated.shared.pacer_spin)
    } else {
        Duration::from_micros(50)
    };
    let common = Common {
        cli: Arc::new(validated.shared),
        ready: Arc::new(AtomicUsize::new(0)),
        start: Instant::now(),
        stop: Arc::new(AtomicBool::new(false)),
        broken: Arc::new(AtomicBool::new(false)),
        progress: Arc::new(
            (0..threads)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        ),
        send_start: Arc::new(AtomicU64::new(0)),
        failed: Arc::new(AtomicBool::new(false)),
    };
    let mut handles = Vec::new();
    for spec in specs {
        let c = common.clone();
        let builder = LocalExecutorBuilder::new(Placement::Fixed(spec.cpu))
            .name(&format!("loadgen-{}", spec.index))
            .spin_before_park(spin);
        let handle = builder
            .spawn(move || async move { thread_main(spec, c).await })
            .map_err(|e| format!("executor: {e}"))?;
        handles.push(handle);
    }
    keep_to(&cpus);
    // Everyone connected (or failed): start the clock. A thread whose executor could not
    // start never reports, so the wait is bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    while common.ready.load(Ordering::Relaxed) < threads {
        if Instant::now() > deadline {
            eprintln!("ilp-loadgen: not every thread connected within 20 s");
            common.failed.store(true, Ordering::Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if common.failed.load(Ordering::Relaxed) {
        common.stop.store(true, Ordering::Relaxed);
    }
    // The send clock starts a little ahead, so that every thread (they look every 100 µs)
    // knows of it before it comes: the first Prepares are not late.
    let started = Instant::now() + SEND_LEAD;
    common.send_start.store(
        (started - common.start).as_nanos() as u64,
        Ordering::Relaxed,
    );
    std::thread::sleep(started.saturating_duration_since(Instant::now()));
    let cpu_before = cli.router_pid.and_then(process_cpu_s);
    let own_before = process_cpu_s(std::process::id());
    let relay_before = relay::cpu_s();
    let live = std::io::stderr().is_terminal();
    let mut last_print = Instant::now();
    while started.elapsed() < cli.duration && !common.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if live && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let sent: u64 = common
                .progress
                .iter()
                .map(|p| p[0].load(Ordering::Relaxed))
                .sum();
            let fulfilled: u64 = common
                .progress
                .iter()
                .map(|p| p[1].load(Ordering::Relaxed))
                .sum();
            let t = started.elapsed().as_secs_f64();
            eprint!(
                "\r{t:6.1}s  sent {sent:>12}  fulfilled {fulfilled:>12}  {:>10.0} /s   ",
                fulfilled as f64 / t
            );
        }
    }
    let duration_s = started.elapsed().as_secs_f64();
    let cpu_after = cli.router_pid.and_then(process_cpu_s);
    let own_after = process_cpu_s(std::process::id());
    let relay_after = relay::cpu_s();
    common.stop.store(true, Ordering::Relaxed);
    if live {
        eprintln!();
    }
    let mut total = Stats::new();
    for handle in handles {
        match handle.join() {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(e)) => {
                eprintln!("ilp-loadgen: {e}");
                common.failed.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!(
                    "ilp-loadgen: a thread failed: {e} (io_uring needs locked memory: ulimit -l)"
                );
                common.failed.store(true, Ordering::Relaxed);
            }
        }
    }
    if let Some(Err(e)) = relay::finish() {
        eprintln!("ilp-loadgen: --relay-cpu: the relay failed: {e}");
        common.failed.store(true, Ordering::Relaxed);
    }
    let router_cpu_s = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| after - before);
    // The relay is a thread of this process, but its CPU is the hop's, not the harness's.
    let relay_cpu_s = relay_before
        .zip(relay_after)
        .map(|(before, after)| (after.0 - before.0, after.1 - before.1));
    let own_cpu_s = own_before
        .zip(own_after)
        .map(|(before, after)| after - before - relay_cpu_s.map_or(0.0, |r| r.0));
    // Where the send clock started on the clock of the timelines.
    let send_start_s = common.send_start.load(Ordering::Relaxed) as f64 / 1e9;
    let shared = &common.cli;
    let sinks = plays_sinks
        .then(|| sinks::report_json(&total, &shared.sinks, &shared.faults, send_start_s));
    let report = summary::report_json(
        &total,
        duration_s,
        cli.config_json(&cpus, shared.sinks.len(), shared.tls),
        common.broken.load(Ordering::Relaxed),
        summary::Cpu {
            router_s: router_cpu_s,
            relay_s: relay_cpu_s.map(|r| r.0),
            relay_busy_s: relay_cpu_s.map(|r| r.1),
            own_s: own_cpu_s,
        },
        sinks,
    );
    summary::print_summary(&report);
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).expect("JSON"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.report {
        std::fs::write(path, report::render_html(&report))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if common.failed.load(Ordering::Relaxed) {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
