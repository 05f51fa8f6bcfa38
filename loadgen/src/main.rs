//! `ilp-loadgen`: measures what an ILP connector really forwards.
//!
//! A *sender* connects to the connector as a BTP peer and sends Prepares; a *sink* connects as
//! another peer and fulfills what reaches it. Both roles run in one process by default
//! (`--role send|sink` runs one of them). Thread per core: every `--cpu-list` CPU runs a
//! pinned executor with its share of the connections, its own histograms and counters; they
//! are merged only at the end. Closed loop (a window of Prepares in flight per connection)
//! without `--rate`; open loop with it, latency counted from each Prepare's intended send
//! time.
//!
//! `--transport http` speaks ILP over HTTP instead (RFC 35, synchronous mode): the sender
//! POSTs Prepares to the `--router` URL and the sink serves HTTP on `--sink-listen`.
//!
//! Over 800 lines: the CLI, its validation and the run orchestration of `ilp-loadgen`; splitting
//! the plan and the pacer into their own modules is the load generator's next step.

mod conn;
mod http;
mod report;
mod stats;

use clap::{Parser, ValueEnum};
use conn::{Ring, Role, Setup, Shared as Conn};
use glommio::{LocalExecutorBuilder, Placement};
use ilp_router::id::PeerId;
use ilp_router::link::auth::PeerAuth;
use ilp_router::link::url::{self, BtpUrl, Scheme};
use ilp_router::wire::{check_address, ErrorCode};
use serde_json::{json, Value};
use stats::Stats;
use std::cell::RefCell;
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load generator for ILP connectors: BTP or HTTP sender and sink peers, packets/s and
/// latency.
#[derive(Debug, Parser)]
#[command(name = "ilp-loadgen", version, about)]
struct Cli {
    /// How the peers speak to the connector: BTP over WebSocket, or ILP over HTTP (RFC 35,
    /// synchronous: one POST per Prepare, the Fulfill or Reject in the 200 response).
    #[arg(long, value_enum, default_value_t = Transport::Btp)]
    transport: Transport,
    /// The connector's URL. BTP: its WebSocket URL, e.g. ws://127.0.0.1:7768 (a path is
    /// allowed). HTTP: where the sender POSTs, http://host:port/path (path used verbatim,
    /// default `/`).
    #[arg(long, default_value = "ws://127.0.0.1:7768")]
    router: String,
    /// The sender's credentials, NAME:TOKEN (NAME may be empty). Over HTTP only the token is
    /// sent, as `Authorization: Bearer TOKEN`: everything after the first `:` (so it may
    /// contain `:`).
    #[arg(long, default_value = "alice:alice-secret")]
    sender: String,
    /// The sink's credentials, NAME:TOKEN. Over HTTP the sink requires `Bearer TOKEN` from
    /// whoever POSTs to it (the connector dialling it); with `--direct`, the sender's token.
    #[arg(long, default_value = "bob:bob-secret")]
    sink: String,
    /// HTTP: the address the sink serves ILP over HTTP on (any path, either content type),
    /// e.g. 127.0.0.1:7771; every thread listens on it. Required with `--transport http`
    /// when this process runs the sink, except with `--direct` (a free port then).
    #[arg(long)]
    sink_listen: Option<std::net::SocketAddr>,
    /// Where the Prepares go: an ILP address the connector routes to the sink.
    #[arg(long, default_value = "g.router.bob")]
    destination: String,
    /// How long to send: 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Open loop at this many Prepares per second in all; without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Prepares in flight per sender connection (the cap in open loop too). HTTP: requests
    /// pipelined on each keep-alive connection, answers matched in order. Our sink answers a
    /// pipelined batch at once (`--direct`), but a server that serves a connection's requests
    /// one at a time (the router does) gains nothing from depth: against it use `--window 1`
    /// (or a few) and as many `--connections` as Prepares should be in flight.
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Sender connections, shared out among the threads; BTP: as many sink connections (over
    /// HTTP the connector opens the sink's connections).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// CPUs to run on, e.g. `1` or `2-3` (one pinned thread each). Default: the last CPU.
    #[arg(long)]
    cpu_list: Option<String>,
    /// The amount of every Prepare.
    #[arg(long, default_value_t = 1)]
    amount: u64,
    /// Bytes of data in every Prepare (at least 8: a unique sequence number comes first).
    #[arg(long, default_value_t = 64)]
    data_bytes: usize,
    /// Every Prepare expires this long after it is sent.
    #[arg(long, default_value_t = 30_000)]
    expiry_ms: u64,
    /// Connect the sender straight to the sink, with no connector between: the harness's
    /// ceiling.
    #[arg(long)]
    direct: bool,
    /// Which roles this process plays.
    #[arg(long, value_enum, default_value_t = RoleArg::Both)]
    role: RoleArg,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write a self-contained HTML report (charts) here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// The connector's process id: its CPU time during the run is reported per packet.
    #[arg(long)]
    router_pid: Option<u32>,
    /// Sink: reject this fraction of Prepares (0..1) with `--sink-reject-code`.
    #[arg(long, default_value_t = 0.0)]
    sink_reject_fraction: f64,
    /// Sink: the ILP code of those Rejects.
    #[arg(long, default_value = "F99")]
    sink_reject_code: String,
    /// Sink: answer this fraction (0..1) with a wrong fulfillment.
    #[arg(long, default_value_t = 0.0)]
    sink_wrong_fraction: f64,
    /// Sink: hold every answer this long.
    #[arg(long, default_value_t = 0)]
    sink_delay_ms: u64,
    /// Sender: append the amount (8 bytes, little endian) of every valid Fulfill received to
    /// this file.
    #[arg(long)]
    sender_log: Option<std::path::PathBuf>,
    /// Sink: append the amount (8 bytes, little endian) of every Fulfill sent (with the
    /// right fulfillment) to this file.
    #[arg(long)]
    sink_log: Option<std::path::PathBuf>,
    /// Seed of the fulfillments (sender and sink must agree when run apart).
    #[arg(long, default_value_t = 0x1f2e_3d4c)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Btp,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    Both,
    Send,
    Sink,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and ms, s or m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !(seconds > 0.0 && seconds < 86_400.0) {
        return Err(format!("{text:?}: must be between 0 and a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Sink behaviour.
#[derive(Debug, Clone)]
pub(crate) struct SinkOptions {
    pub(crate) reject_fraction: f64,
    pub(crate) reject_code: ErrorCode,
    pub(crate) wrong_fraction: f64,
    pub(crate) delay_ms: u64,
}

/// What every connection of a thread needs to know.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) start: Instant,
    pub(crate) send_start_ns: u64,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) broken: Arc<AtomicBool>,
    pub(crate) window: usize,
    pub(crate) rate_per_conn: Option<f64>,
    pub(crate) amount: u64,
    pub(crate) data_bytes: usize,
    pub(crate) expiry_ms: u64,
    pub(crate) destination: String,
    pub(crate) sink: SinkOptions,
    pub(crate) sender_log: Option<Rc<conn::FulfillLog>>,
    pub(crate) sink_log: Option<Rc<conn::FulfillLog>>,
}

impl Plan {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// `--router` for BTP: `ws://host:port[/path]` (also `btp+ws://`), with the router's URL
/// parser.
fn parse_url(text: &str) -> Result<BtpUrl, String> {
    url::parse(text, Scheme::Ws, None).map_err(|e| format!("--router {e}"))
}

fn parse_credentials(flag: &str, text: &str) -> Result<(String, String), String> {
    let (name, token) = text
        .split_once(':')
        .ok_or_else(|| format!("--{flag} {text:?}: expected NAME:TOKEN"))?;
    if token.is_empty() {
        return Err(format!("--{flag}: the token is empty"));
    }
    Ok((name.to_owned(), token.to_owned()))
}

fn parse_cpus(text: Option<&str>) -> Result<Vec<usize>, String> {
    let allowed = ilp_router::shard::allowed_cpus();
    let Some(text) = text else {
        return allowed
            .last()
            .map(|&c| vec![c])
            .ok_or_else(|| "cannot read the CPU affinity".to_string());
    };
    let cpus = ilp_router::cli::parse_cpu_list(text)?;
    if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpu-list: CPU {cpu} is not in the allowed set {allowed:?}"
        ));
    }
    Ok(cpus)
}

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

struct ThreadSpec {
    index: usize,
    cpu: usize,
    senders: usize,
    sinks: usize,
}

struct Common {
    cli: Arc<CliShared>,
    /// Threads that finished connecting (or failed to).
    ready: Arc<AtomicUsize>,
    start: Instant,
    stop: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    progress: Arc<Vec<[AtomicU64; 2]>>,
    send_start: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

/// The parts of the command line the threads need.
struct CliShared {
    target: BtpUrl,
    /// `--transport http`: where the sender POSTs (none with `--direct` or without senders).
    http_target: Option<http::HttpTarget>,
    /// `--transport http`: where the sink listens.
    http: bool,
    sink_listen: Option<std::net::SocketAddr>,
    sender: (String, String),
    sink: (String, String),
    destination: String,
    rate_per_conn: Option<f64>,
    window: usize,
    amount: u64,
    data_bytes: usize,
    expiry_ms: u64,
    direct: bool,
    seed: u64,
    sink_options: SinkOptions,
    sender_log: Option<std::path::PathBuf>,
    sink_log: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ilp-loadgen: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<std::process::ExitCode, String> {
    let http = cli.transport == Transport::Http;
    let target = if http {
        BtpUrl {
            host: String::new(),
            port: 0,
            path: String::new(),
        }
    } else {
        parse_url(&cli.router)?
    };
    let sender = parse_credentials("sender", &cli.sender)?;
    let sink = parse_credentials("sink", &cli.sink)?;
    check_address(cli.destination.as_bytes())
        .map_err(|_| format!("--destination {:?} is not an ILP address", cli.destination))?;
    let cpus = parse_cpus(cli.cpu_list.as_deref())?;
    if cli.connections == 0 || cli.window == 0 {
        return Err("--connections and --window must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&cli.sink_reject_fraction)
        || !(0.0..=1.0).contains(&cli.sink_wrong_fraction)
    {
        return Err(
            "--sink-reject-fraction and --sink-wrong-fraction are fractions between 0 and 1".into(),
        );
    }
    let code = cli.sink_reject_code.as_bytes();
    if code.len() != 3 || !code.iter().all(u8::is_ascii_alphanumeric) {
        return Err(format!(
            "--sink-reject-code {:?}: three ASCII letters or digits, like F99",
            cli.sink_reject_code
        ));
    }
    if let Some(rate) = cli.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be positive".into());
        }
    }
    let (with_senders, with_sinks) = match cli.role {
        RoleArg::Both => (true, true),
        RoleArg::Send => (true, false),
        RoleArg::Sink => (false, true),
    };
    if cli.direct && !(with_senders && with_sinks) {
        return Err("--direct runs both roles in this process".into());
    }
    let http_target = if http && with_senders && !cli.direct {
        Some(http::parse_http_url(&cli.router)?)
    } else {
        None
    };
    if http && with_sinks && !cli.direct && cli.sink_listen.is_none() {
        return Err("--transport http: the sink needs --sink-listen ADDRESS:PORT".into());
    }
    if !http && cli.sink_listen.is_some() {
        return Err(
            "--sink-listen is for --transport http (a BTP sink dials the connector)".into(),
        );
    }
    let threads = cpus.len().min(cli.connections.max(1));
    let specs: Vec<ThreadSpec> = (0..threads)
        .map(|i| {
            let share = cli.connections / threads + usize::from(i < cli.connections % threads);
            ThreadSpec {
                index: i,
                cpu: cpus[i],
                senders: if with_senders { share } else { 0 },
                sinks: if with_sinks { share } else { 0 },
            }
        })
        .collect();
    let senders_total: usize = specs.iter().map(|s| s.senders).sum();
    let shared = Arc::new(CliShared {
        target,
        http_target,
        http,
        sink_listen: cli.sink_listen,
        sender,
        sink,
        destination: cli.destination.clone(),
        rate_per_conn: cli.rate.map(|r| r / senders_total.max(1) as f64),
        window: cli.window,
        amount: cli.amount,
        data_bytes: cli.data_bytes,
        expiry_ms: cli.expiry_ms,
        direct: cli.direct,
        seed: cli.seed,
        sink_options: SinkOptions {
            reject_fraction: cli.sink_reject_fraction,
            reject_code: ErrorCode([code[0], code[1], code[2]]),
            wrong_fraction: cli.sink_wrong_fraction,
            delay_ms: cli.sink_delay_ms,
        },
        sender_log: cli.sender_log.clone(),
        sink_log: cli.sink_log.clone(),
    });
    let common = Common {
        cli: shared,
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
        let c = Common {
            cli: Arc::clone(&common.cli),
            ready: Arc::clone(&common.ready),
            start: common.start,
            stop: Arc::clone(&common.stop),
            broken: Arc::clone(&common.broken),
            progress: Arc::clone(&common.progress),
            send_start: Arc::clone(&common.send_start),
            failed: Arc::clone(&common.failed),
        };
        let builder = LocalExecutorBuilder::new(Placement::Fixed(spec.cpu))
            .name(&format!("loadgen-{}", spec.index))
            .spin_before_park(Duration::from_micros(50));
        let handle = builder
            .spawn(move || async move { thread_main(spec, c).await })
            .map_err(|e| format!("executor: {e}"))?;
        handles.push(handle);
    }
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
    let cpu_before = cli.router_pid.and_then(process_cpu_s);
    let started = Instant::now();
    common
        .send_start
        .store(common.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
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
    let mut report = total.to_json(duration_s);
    let cli_json = json!({
        "transport": format!("{:?}", cli.transport).to_lowercase(),
        "sink_listen": cli.sink_listen.map(|a| a.to_string()),
        "router": cli.router, "destination": cli.destination, "duration_s": cli.duration.as_secs_f64(),
        "rate": cli.rate, "window": cli.window, "connections": cli.connections, "amount": cli.amount,
        "data_bytes": cli.data_bytes, "expiry_ms": cli.expiry_ms, "direct": cli.direct,
        "mode": if cli.rate.is_some() { "open-loop" } else { "closed-loop" },
        "role": format!("{:?}", cli.role).to_lowercase(), "cpu_list": cpus,
        "sink_reject_fraction": cli.sink_reject_fraction, "sink_reject_code": cli.sink_reject_code,
        "sink_wrong_fraction": cli.sink_wrong_fraction, "sink_delay_ms": cli.sink_delay_ms,
    });
    let object = report.as_object_mut().expect("an object");
    object.insert("tool".into(), json!("ilp-loadgen"));
    object.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    object.insert("config".into(), cli_json);
    object.insert(
        "ended_early".into(),
        json!(common.broken.load(Ordering::Relaxed)),
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let cpu = after - before;
        object.insert("router_cpu_s".into(), json!(cpu));
        if total.fulfilled > 0 {
            object.insert(
                "router_cpu_us_per_packet".into(),
                json!(cpu * 1e6 / total.fulfilled as f64),
            );
        }
    }
    print_summary(&report);
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).expect("JSON"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.report {
        std::fs::write(path, report::render_html(&report))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if common.failed.load(Ordering::Relaxed) {
        return Ok(std::process::ExitCode::from(1));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_summary(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or("n/a".to_string(), |x| format!("{x:.0}"));
    println!(
        "ilp-loadgen: {} for {:.2} s",
        r["config"]["mode"].as_str().unwrap_or(""),
        r["duration_s"].as_f64().unwrap_or(0.0)
    );
    println!("  sent        {:>12}", r["sent"]);
    println!(
        "  fulfilled   {:>12}   {:.0} /s",
        r["fulfilled"],
        r["pps"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  rejected    {:>12}   {}",
        r["rejected"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>()),
        r["rejected"]
    );
    println!("  timeouts    {:>12}", r["timeouts"]);
    println!(
        "  errors      {:>12}   (bad fulfillments {})",
        r["errors"], r["bad_fulfillments"]
    );
    if r["http_errors"].as_object().is_some_and(|m| !m.is_empty()) {
        println!("  HTTP errors              {}", r["http_errors"]);
    }
    let l = &r["latency_us"];
    println!(
        "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        f(&l["p50"]),
        f(&l["p90"]),
        f(&l["p99"]),
        f(&l["p999"]),
        f(&l["max"])
    );
    if let Some(cpu) = r["router_cpu_us_per_packet"].as_f64() {
        println!(
            "  router CPU  {:.3} µs per packet ({:.2} s in all)",
            cpu,
            r["router_cpu_s"].as_f64().unwrap_or(0.0)
        );
    }
    if r["ended_early"] == Value::Bool(true) {
        println!("  the peer closed a connection: the run ended early");
    }
}

async fn thread_main(spec: ThreadSpec, common: Common) -> Result<Stats, String> {
    let cli = &common.cli;
    let open_log = |path: &Option<std::path::PathBuf>, role: usize| {
        path.as_deref()
            .filter(|_| role > 0)
            .map(|p| conn::FulfillLog::open(p).map(Rc::new))
            .transpose()
    };
    let sender_log = open_log(&cli.sender_log, spec.senders)?;
    let sink_log = open_log(&cli.sink_log, spec.sinks)?;
    let plan = Rc::new(Plan {
        start: common.start,
        send_start_ns: 0,
        stop: Arc::clone(&common.stop),
        broken: Arc::clone(&common.broken),
        window: cli.window,
        rate_per_conn: cli.rate_per_conn,
        amount: cli.amount,
        data_bytes: cli.data_bytes,
        expiry_ms: cli.expiry_ms,
        destination: cli.destination.clone(),
        sink: cli.sink_options.clone(),
        sender_log: sender_log.clone(),
        sink_log: sink_log.clone(),
    });
    let ring = Rc::new(Ring::new(cli.seed));
    let stats = Rc::new(RefCell::new(Stats::new()));
    // HTTP: the connections clients opened to our sink.
    let http_sinks: Rc<RefCell<Vec<http::SinkShared>>> = Rc::new(RefCell::new(Vec::new()));
    let connected = if cli.http {
        connect_all_http(&spec, &common, &plan, &ring, &stats, &http_sinks).await
    } else {
        connect_all(&spec, &common, &plan, &ring, &stats)
            .await
            .map(|conns| conns.into_iter().map(Link::Btp).collect())
    };
    // Report in whether or not we connected, so the main thread can start the clock.
    if let Err(e) = &connected {
        common.failed.store(true, Ordering::Relaxed);
        eprintln!("ilp-loadgen: {e}");
    }
    common.ready.fetch_add(1, Ordering::Relaxed);
    let conns = connected.unwrap_or_default();
    // The clock starts for every thread when the main thread has heard from all of them and
    // stored the start time.
    while common.send_start.load(Ordering::Relaxed) == 0 && !common.stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_micros(100)).await;
    }
    let send_start_ns = common.send_start.load(Ordering::Relaxed);
    let plan = Rc::new(Plan {
        send_start_ns,
        ..clone_plan(&plan)
    });
    for c in &conns {
        c.set_plan(Rc::clone(&plan));
    }
    for c in &conns {
        c.refill();
    }
    let tick = if plan.rate_per_conn.is_some() {
        Duration::from_micros(200)
    } else {
        Duration::from_millis(5)
    };
    while !common.stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(tick).await;
        for c in &conns {
            match c.role() {
                Role::Sender if plan.rate_per_conn.is_some() => c.refill(),
                Role::Sink if plan.sink.delay_ms > 0 => c.release_delayed(),
                _ => {}
            }
        }
        if plan.sink.delay_ms > 0 {
            for s in http_sinks.borrow().iter() {
                s.borrow_mut().release_delayed();
            }
        }
        let s = stats.borrow();
        common.progress[spec.index][0].store(s.sent, Ordering::Relaxed);
        common.progress[spec.index][1].store(s.fulfilled, Ordering::Relaxed);
    }
    // Drain: answers still in flight get a bounded grace, then count as timeouts.
    let grace = Duration::from_millis(cli.expiry_ms.min(3_000) + plan.sink.delay_ms);
    let deadline = Instant::now() + grace;
    let senders: Vec<&Link> = conns.iter().filter(|c| c.role() == Role::Sender).collect();
    conn::wait_until(deadline, || {
        for c in &conns {
            if c.role() == Role::Sink {
                c.release_delayed();
            }
        }
        for s in http_sinks.borrow().iter() {
            s.borrow_mut().release_delayed();
        }
        senders.iter().all(|c| c.outstanding() == 0 || c.closing())
    })
    .await;
    let unanswered: usize = senders.iter().map(|c| c.outstanding()).sum();
    stats.borrow_mut().timeouts += unanswered as u64;
    for c in &conns {
        c.shut();
    }
    for s in http_sinks.borrow().iter() {
        s.borrow_mut().shut();
    }
    glommio::timer::sleep(Duration::from_millis(20)).await;
    for log in sender_log.iter().chain(&sink_log) {
        log.flush()?;
    }
    let stats = stats.borrow().clone();
    Ok(stats)
}

fn clone_plan(p: &Plan) -> Plan {
    Plan {
        start: p.start,
        send_start_ns: p.send_start_ns,
        stop: Arc::clone(&p.stop),
        broken: Arc::clone(&p.broken),
        window: p.window,
        rate_per_conn: p.rate_per_conn,
        amount: p.amount,
        data_bytes: p.data_bytes,
        expiry_ms: p.expiry_ms,
        destination: p.destination.clone(),
        sink: p.sink.clone(),
        sender_log: p.sender_log.clone(),
        sink_log: p.sink_log.clone(),
    }
}

async fn connect_all(
    spec: &ThreadSpec,
    common: &Common,
    plan: &Rc<Plan>,
    ring: &Rc<Ring>,
    stats: &Rc<RefCell<Stats>>,
) -> Result<Vec<Conn>, String> {
    let cli = &common.cli;
    let mut conns = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let sink_target = if cli.direct {
        // The sink listens here; our senders dial it instead of a connector.
        let listener = glommio::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("direct listener: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let auth = Rc::new(PeerAuth::new(&[(
            PeerId(0),
            cli.sender.0.as_str(),
            std::slice::from_ref(&cli.sender.1),
        )]));
        let accepted: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::new()));
        let sinks = spec.sinks;
        {
            let (plan, ring, stats, accepted) = (
                Rc::clone(plan),
                Rc::clone(ring),
                Rc::clone(stats),
                Rc::clone(&accepted),
            );
            glommio::spawn_local(async move {
                for i in 0..sinks {
                    let Ok(stream) = listener.accept().await else {
                        return;
                    };
                    let setup = Setup {
                        role: Role::Sink,
                        id: (spec_id_sink(i)) as u64,
                        username: String::new(),
                        token: String::new(),
                    };
                    if let Ok(c) = conn::accept(
                        Rc::clone(&plan),
                        Rc::clone(&ring),
                        Rc::clone(&stats),
                        setup,
                        stream,
                        Rc::clone(&auth),
                    )
                    .await
                    {
                        accepted.borrow_mut().push(c);
                    }
                }
            })
            .detach();
        }
        let ids = (0..spec.senders).map(|i| (spec.index * 64 + i) as u64);
        let target = BtpUrl {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
        };
        conns.extend(
            dial_many(
                plan,
                ring,
                stats,
                Role::Sender,
                ids,
                &cli.sender,
                &target,
                "direct sender",
            )
            .await?,
        );
        let ok = conn::wait_until(deadline, || {
            accepted.borrow().len() == sinks && accepted.borrow().iter().all(|c| c.borrow().opened)
        })
        .await;
        if !ok {
            return Err("direct: the sink did not accept the sender".into());
        }
        conns.extend(accepted.borrow().iter().cloned());
        return wait_open(conns, deadline).await;
    } else {
        &cli.target
    };
    // Sinks first, so the connector knows where to send before Prepares arrive.
    let ids = (0..spec.sinks).map(|i| (spec.index * 64 + 32 + i) as u64);
    let sinks = dial_many(
        plan,
        ring,
        stats,
        Role::Sink,
        ids,
        &cli.sink,
        sink_target,
        "sink connection",
    )
    .await?;
    let mut all = wait_open(sinks, deadline).await?;
    let ids = (0..spec.senders).map(|i| (spec.index * 64 + i) as u64);
    let senders = dial_many(
        plan,
        ring,
        stats,
        Role::Sender,
        ids,
        &cli.sender,
        &cli.target,
        "sender connection",
    )
    .await?;
    all.extend(wait_open(senders, deadline).await?);
    Ok(all)
}

/// A connection of either transport, as the thread's loop sees it.
#[derive(Clone)]
enum Link {
    Btp(Conn),
    HttpSender(http::SenderShared),
}

impl Link {
    fn role(&self) -> Role {
        match self {
            Link::Btp(c) => c.borrow().role(),
            Link::HttpSender(_) => Role::Sender,
        }
    }

    fn set_plan(&self, plan: Rc<Plan>) {
        match self {
            Link::Btp(c) => c.borrow_mut().set_plan(plan),
            Link::HttpSender(c) => c.borrow_mut().set_plan(plan),
        }
    }

    fn refill(&self) {
        match self {
            Link::Btp(c) => c.borrow_mut().refill(),
            Link::HttpSender(c) => c.borrow_mut().refill(),
        }
    }

    fn release_delayed(&self) {
        if let Link::Btp(c) = self {
            c.borrow_mut().release_delayed();
        }
    }

    fn outstanding(&self) -> usize {
        match self {
            Link::Btp(c) => c.borrow().outstanding(),
            Link::HttpSender(c) => c.borrow().outstanding(),
        }
    }

    fn closing(&self) -> bool {
        match self {
            Link::Btp(c) => c.borrow().closing,
            Link::HttpSender(c) => c.borrow().closing,
        }
    }

    fn shut(&self) {
        match self {
            Link::Btp(c) => c.borrow_mut().shut(),
            Link::HttpSender(c) => c.borrow_mut().shut(),
        }
    }
}

/// `--transport http`: the sink listens (every thread on `--sink-listen`, or with `--direct`
/// and no `--sink-listen` on a free port of its own), then the senders dial the connector's
/// URL, or the sink with `--direct`.
async fn connect_all_http(
    spec: &ThreadSpec,
    common: &Common,
    plan: &Rc<Plan>,
    ring: &Rc<Ring>,
    stats: &Rc<RefCell<Stats>>,
    http_sinks: &Rc<RefCell<Vec<http::SinkShared>>>,
) -> Result<Vec<Link>, String> {
    let cli = &common.cli;
    let mut sink_port = None;
    if spec.sinks > 0 {
        let address = cli
            .sink_listen
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = glommio::net::TcpListener::bind(address)
            .map_err(|e| format!("--sink-listen {address}: {e}"))?;
        sink_port = Some(listener.local_addr().map_err(|e| e.to_string())?.port());
        // With --direct the sink stands in for the connector, so it takes the sender's token.
        let token = if cli.direct {
            &cli.sender.1
        } else {
            &cli.sink.1
        };
        glommio::spawn_local(http::serve(
            listener,
            Rc::clone(plan),
            Rc::clone(ring),
            Rc::clone(stats),
            Rc::from(token.as_bytes()),
            Rc::clone(http_sinks),
        ))
        .detach();
    }
    let target = match (&cli.http_target, sink_port) {
        (Some(target), _) => target.clone(),
        (None, Some(port)) if cli.direct => BtpUrl {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
        },
        _ => return Ok(Vec::new()),
    };
    let target = Rc::new(target);
    let token: Rc<str> = Rc::from(cli.sender.1.as_str());
    let mut senders = Vec::new();
    for i in 0..spec.senders {
        let sender = http::dial(
            Rc::clone(plan),
            Rc::clone(ring),
            Rc::clone(stats),
            (spec.index * 64 + i) as u64,
            Rc::clone(&target),
            Rc::clone(&token),
        )
        .await
        .map_err(|e| format!("sender connection to {}: {e}", target.host_port()))?;
        senders.push(Link::HttpSender(sender));
    }
    Ok(senders)
}

/// Dials one BTP connection per id to `target` with `credentials`.
#[allow(clippy::too_many_arguments)]
async fn dial_many(
    plan: &Rc<Plan>,
    ring: &Rc<Ring>,
    stats: &Rc<RefCell<Stats>>,
    role: Role,
    ids: impl Iterator<Item = u64>,
    credentials: &(String, String),
    target: &BtpUrl,
    what: &str,
) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::new();
    for id in ids {
        let setup = Setup {
            role,
            id,
            username: credentials.0.clone(),
            token: credentials.1.clone(),
        };
        let c = conn::dial(
            Rc::clone(plan),
            Rc::clone(ring),
            Rc::clone(stats),
            setup,
            target,
        )
        .await
        .map_err(|e| format!("{what} to {}: {e}", target.host_port()))?;
        conns.push(c);
    }
    Ok(conns)
}

fn spec_id_sink(i: usize) -> usize {
    1000 + i
}

async fn wait_open(conns: Vec<Conn>, deadline: Instant) -> Result<Vec<Conn>, String> {
    let ok = conn::wait_until(deadline, || {
        conns
            .iter()
            .all(|c| c.borrow().opened || c.borrow().closing)
    })
    .await;
    if !ok {
        return Err("a connection did not authenticate within 10 s".into());
    }
    if conns.iter().any(|c| !c.borrow().opened) {
        return Err(
            "the connector refused our BTP auth (check --sender/--sink credentials)".into(),
        );
    }
    Ok(conns)
}
